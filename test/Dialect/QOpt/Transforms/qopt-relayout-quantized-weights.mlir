// RUN: rm -rf %t && mkdir -p %t && printf '\001\002\003\004\005\006' > %t/w.bin
// RUN: qopt-opt %s -split-input-file --qopt-relayout-quantized-weights=model-dir=%t | FileCheck %s

// QDQ linear layer: the K×N int8 codes (3×2: rows [1 2] [3 4] [5 6]) are
// stored N×K ([1 3 5] [2 4 6]) under the layer's name and the layer takes
// the quantized weight; the K×N codes are gone, the scales shared.
// CHECK-LABEL: func.func @qdq
// CHECK: %[[S:.*]] = qopt.load_param @ws : tensor<2xf32>
// CHECK: %[[C:.*]] = qopt.load_param @layers.0.fc.weight : tensor<2x3xi8>
// CHECK: %[[Q:.*]] = qopt.assemble %[[C]], %[[S]] : (tensor<2x3xi8>, tensor<2xf32>) -> !qopt.qtensor<2x3, #qopt.int<8>, #qopt.per_channel<0>, scales = f32>
// CHECK: qopt.linear %{{.*}}, %[[Q]] module "layers.0.fc" : (tensor<?x3xf32>, !qopt.qtensor<2x3, #qopt.int<8>, #qopt.per_channel<0>, scales = f32>) -> tensor<?x2xf32>
// CHECK-NOT: qopt.dequantize
// CHECK-NOT: @w :
// CHECK: qopt.param @ws : tensor<2xf32>
// CHECK: qopt.param @layers.0.fc.weight : tensor<2x3xi8> = dense_resource<[[BLOB:.*]]> : tensor<2x3xi8>
// CHECK: [[BLOB]]: "0x{{[0-9A-F]+}}010305020406"
func.func @qdq(%x: tensor<?x3xf32>) -> tensor<?x2xf32> {
  %w = qopt.load_param @w : tensor<3x2xi8>
  %ws = qopt.load_param @ws : tensor<2xf32>
  %q = qopt.assemble %w, %ws : (tensor<3x2xi8>, tensor<2xf32>) -> !qopt.qtensor<3x2, #qopt.int<8>, #qopt.per_channel<1>, scales = f32>
  %d = qopt.dequantize %q : !qopt.qtensor<3x2, #qopt.int<8>, #qopt.per_channel<1>, scales = f32> -> tensor<3x2xf32>
  %e = tensor.empty() : tensor<2x3xf32>
  %t = linalg.transpose ins(%d : tensor<3x2xf32>) outs(%e : tensor<2x3xf32>) permutation = [1, 0]
  %y = qopt.linear %x, %t module "layers.0.fc" : (tensor<?x3xf32>, tensor<2x3xf32>) -> tensor<?x2xf32>
  return %y : tensor<?x2xf32>
}
qopt.param @w : tensor<3x2xi8> = dense<[[1, 2], [3, 4], [5, 6]]> : tensor<3x2xi8>
qopt.param @ws : tensor<2xf32> = dense<[0.5, 0.25]> : tensor<2xf32>

// -----

// Two layers reading one weight share one N×K copy (named after the codes
// when the layers have no module path); zero points stay shared too. A
// reader of the K×N dequantized weight keeps the original codes.
// CHECK-LABEL: func.func @shared
// CHECK: %[[C:.*]] = qopt.load_param @w.nk : tensor<2x4xi8>
// CHECK: %[[Q:.*]] = qopt.assemble %[[C]], %{{.*}} zero_points %{{.*}} : (tensor<2x4xi8>, tensor<2xf32>, tensor<2xi8>) -> !qopt.qtensor<2x4, #qopt.int<8, unsigned, zero_point>, #qopt.per_channel<0>, scales = f32>
// CHECK: qopt.linear %{{.*}}, %[[Q]] :
// CHECK: qopt.lora %{{.*}}, %[[Q]], %{{.*}}, %{{.*}} alpha
// CHECK: qopt.param @w : tensor<4x2xi8>
// CHECK: qopt.param @w.nk : tensor<2x4xi8>
func.func @shared(%x: tensor<1x4xf32>, %a: tensor<1x4xf32>, %b: tensor<2x1xf32>) -> (tensor<1x2xf32>, tensor<1x2xf32>, tensor<4x2xf32>) {
  %w = qopt.load_param @w : tensor<4x2xi8>
  %ws = qopt.load_param @ws : tensor<2xf32>
  %wz = qopt.load_param @wz : tensor<2xi8>
  %q = qopt.assemble %w, %ws zero_points %wz : (tensor<4x2xi8>, tensor<2xf32>, tensor<2xi8>) -> !qopt.qtensor<4x2, #qopt.int<8, unsigned, zero_point>, #qopt.per_channel<1>, scales = f32>
  %d = qopt.dequantize %q : !qopt.qtensor<4x2, #qopt.int<8, unsigned, zero_point>, #qopt.per_channel<1>, scales = f32> -> tensor<4x2xf32>
  %e = tensor.empty() : tensor<2x4xf32>
  %t = linalg.transpose ins(%d : tensor<4x2xf32>) outs(%e : tensor<2x4xf32>) permutation = [1, 0]
  %y = qopt.linear %x, %t : (tensor<1x4xf32>, tensor<2x4xf32>) -> tensor<1x2xf32>
  %z = qopt.lora %x, %t, %a, %b alpha = 1.0 : (tensor<1x4xf32>, tensor<2x4xf32>, tensor<1x4xf32>, tensor<2x1xf32>) -> tensor<1x2xf32>
  return %y, %z, %d : tensor<1x2xf32>, tensor<1x2xf32>, tensor<4x2xf32>
}
qopt.param @w : tensor<4x2xi8> = dense<7> : tensor<4x2xi8>
qopt.param @ws : tensor<2xf32> = dense<1.0> : tensor<2xf32>
qopt.param @wz : tensor<2xi8> = dense<3> : tensor<2xi8>

// -----

// Codes given at run time cannot be transposed at compile time: the
// layer keeps the transpose.
// CHECK-LABEL: func.func @runtime_codes
// CHECK: linalg.transpose
// CHECK: qopt.linear %{{.*}}, %{{.*}} : (tensor<1x3xf32>, tensor<2x3xf32>)
func.func @runtime_codes(%x: tensor<1x3xf32>) -> tensor<1x2xf32> {
  %w = qopt.load_param @w : tensor<3x2xi8>
  %ws = qopt.load_param @ws : tensor<2xf32>
  %q = qopt.assemble %w, %ws : (tensor<3x2xi8>, tensor<2xf32>) -> !qopt.qtensor<3x2, #qopt.int<8>, #qopt.per_channel<1>, scales = f32>
  %d = qopt.dequantize %q : !qopt.qtensor<3x2, #qopt.int<8>, #qopt.per_channel<1>, scales = f32> -> tensor<3x2xf32>
  %e = tensor.empty() : tensor<2x3xf32>
  %t = linalg.transpose ins(%d : tensor<3x2xf32>) outs(%e : tensor<2x3xf32>) permutation = [1, 0]
  %y = qopt.linear %x, %t : (tensor<1x3xf32>, tensor<2x3xf32>) -> tensor<1x2xf32>
  return %y : tensor<1x2xf32>
}
qopt.param @w : tensor<3x2xi8>
qopt.param @ws : tensor<2xf32> = dense<1.0> : tensor<2xf32>

// -----

// Codes in a file (#qopt.external in model-dir) are read from it.
// CHECK-LABEL: func.func @external
// CHECK: qopt.load_param @wx.nk : tensor<2x3xi8>
// CHECK: qopt.param @wx.nk : tensor<2x3xi8> = dense_resource<[[BLOB:.*]]> : tensor<2x3xi8>
// CHECK: [[BLOB]]: "0x{{[0-9A-F]+}}010305020406"
func.func @external(%x: tensor<1x3xf32>) -> tensor<1x2xf32> {
  %w = qopt.load_param @wx : tensor<3x2xi8>
  %ws = qopt.load_param @ws : tensor<2xf32>
  %q = qopt.assemble %w, %ws : (tensor<3x2xi8>, tensor<2xf32>) -> !qopt.qtensor<3x2, #qopt.int<8>, #qopt.per_channel<1>, scales = f32>
  %d = qopt.dequantize %q : !qopt.qtensor<3x2, #qopt.int<8>, #qopt.per_channel<1>, scales = f32> -> tensor<3x2xf32>
  %e = tensor.empty() : tensor<2x3xf32>
  %t = linalg.transpose ins(%d : tensor<3x2xf32>) outs(%e : tensor<2x3xf32>) permutation = [1, 0]
  %y = qopt.linear %x, %t : (tensor<1x3xf32>, tensor<2x3xf32>) -> tensor<1x2xf32>
  return %y : tensor<1x2xf32>
}
qopt.param @wx : tensor<3x2xi8> = #qopt.external<"w.bin", offset = 0, length = 6>
qopt.param @ws : tensor<2xf32> = dense<1.0> : tensor<2xf32>

// -----

// Codes training writes (a trainable or state parameter) would go stale in a
// frozen copy: the layer keeps the transpose.
// CHECK-LABEL: func.func @mutable_codes
// CHECK: linalg.transpose
// CHECK-NOT: .nk
func.func @mutable_codes(%x: tensor<1x3xf32>) -> tensor<1x2xf32> {
  %w = qopt.load_param @wm : tensor<3x2xi8>
  %ws = qopt.load_param @ws : tensor<2xf32>
  %q = qopt.assemble %w, %ws : (tensor<3x2xi8>, tensor<2xf32>) -> !qopt.qtensor<3x2, #qopt.int<8>, #qopt.per_channel<1>, scales = f32>
  %d = qopt.dequantize %q : !qopt.qtensor<3x2, #qopt.int<8>, #qopt.per_channel<1>, scales = f32> -> tensor<3x2xf32>
  %e = tensor.empty() : tensor<2x3xf32>
  %t = linalg.transpose ins(%d : tensor<3x2xf32>) outs(%e : tensor<2x3xf32>) permutation = [1, 0]
  %y = qopt.linear %x, %t : (tensor<1x3xf32>, tensor<2x3xf32>) -> tensor<1x2xf32>
  return %y : tensor<1x2xf32>
}
qopt.param state @wm : tensor<3x2xi8> = dense<1> : tensor<3x2xi8>
qopt.param @ws : tensor<2xf32> = dense<1.0> : tensor<2xf32>
