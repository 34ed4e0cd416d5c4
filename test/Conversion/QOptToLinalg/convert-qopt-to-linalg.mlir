// RUN: qopt-opt %s -split-input-file --convert-qopt-to-linalg | FileCheck %s
// Numerics of these lowerings are checked against the ONNX reference
// outputs (LayerNormalization, RMSNormalization) by test/e2e/node-tests.test.

// RMSNorm of bf16 data: statistics in f32, normalised value cast back, then
// scaled by gamma.
// CHECK-LABEL: func.func @rms_norm_bf16
// CHECK: linalg.generic {{.*}}iterator_types = ["parallel", "reduction"]
// CHECK: arith.extf %{{.*}} : bf16 to f32
// CHECK: arith.mulf {{.*}} : f32
// CHECK: arith.divf
// CHECK: linalg.generic {{.*}}iterator_types = ["parallel", "parallel"]
// CHECK: math.sqrt
// CHECK: arith.truncf %{{.*}} : f32 to bf16
// CHECK: arith.mulf {{.*}} : bf16
// CHECK-NOT: qopt.rms_norm
func.func @rms_norm_bf16(%x: tensor<?x8xbf16>, %g: tensor<8xbf16>) -> tensor<?x8xbf16> {
  %0 = qopt.rms_norm %x, %g : (tensor<?x8xbf16>, tensor<8xbf16>) -> tensor<?x8xbf16>
  return %0 : tensor<?x8xbf16>
}

// -----

// LayerNorm: two reductions (mean, then variance around it).
// CHECK-LABEL: func.func @layer_norm
// CHECK-COUNT-2: iterator_types = ["parallel", "reduction", "reduction"]
// CHECK: arith.subf
// CHECK: math.sqrt
// CHECK: arith.addf
// CHECK-NOT: qopt.layer_norm
func.func @layer_norm(%x: tensor<2x3x4xf32>, %g: tensor<3x4xf32>, %b: tensor<3x4xf32>) -> tensor<2x3x4xf32> {
  %0 = qopt.layer_norm %x, %g, %b axis = 1 : (tensor<2x3x4xf32>, tensor<3x4xf32>, tensor<3x4xf32>) -> tensor<2x3x4xf32>
  return %0 : tensor<2x3x4xf32>
}

// -----

// Linear with bias: the bias initialises the accumulator; W is read as
// (n, k).
// CHECK-DAG: #[[X:.*]] = affine_map<(d0, d1, d2) -> (d0, d2)>
// CHECK-DAG: #[[W:.*]] = affine_map<(d0, d1, d2) -> (d1, d2)>
// CHECK-DAG: #[[Y:.*]] = affine_map<(d0, d1, d2) -> (d0, d1)>
// CHECK-LABEL: func.func @linear
// CHECK: linalg.generic
// CHECK: linalg.generic {indexing_maps = [#[[X]], #[[W]], #[[Y]]], iterator_types = ["parallel", "parallel", "reduction"]}
func.func @linear(%x: tensor<?x4xf32>, %w: tensor<8x4xf32>, %b: tensor<8xf32>) -> tensor<?x8xf32> {
  %0 = qopt.linear %x, %w, %b : (tensor<?x4xf32>, tensor<8x4xf32>, tensor<8xf32>) -> tensor<?x8xf32>
  return %0 : tensor<?x8xf32>
}

// -----

// A quantized weight is dequantized from its storage (codes unpacked with a
// shift), then multiplied.
// CHECK-LABEL: func.func @linear_quantized
// CHECK: %[[D:.*]], %[[S:.*]] = qopt.disassemble %{{.*}} : !qopt.qtensor<8x64, #qopt.nf4, #qopt.per_block<64>, scales = f32> -> tensor<8x32xi8>, tensor<8xf32>
// CHECK: linalg.generic {{.*}} ins(%[[D]], %[[S]] : tensor<8x32xi8>, tensor<8xf32>)
// CHECK: arith.shrui
// CHECK: arith.select
// CHECK-NOT: qopt.linear
func.func @linear_quantized(%x: tensor<2x64xf32>, %w: !qopt.qtensor<8x64, #qopt.nf4, #qopt.per_block<64>, scales = f32>) -> tensor<2x8xf32> {
  %0 = qopt.linear %x, %w : (tensor<2x64xf32>, !qopt.qtensor<8x64, #qopt.nf4, #qopt.per_block<64>, scales = f32>) -> tensor<2x8xf32>
  return %0 : tensor<2x8xf32>
}

// -----

// CHECK-LABEL: func.func @smooth
// CHECK: linalg.generic
// CHECK: arith.divf
func.func @smooth(%x: tensor<2x4xf32>, %s: tensor<4xf32>) -> tensor<2x4xf32> {
  %0 = qopt.smooth %x, %s : (tensor<2x4xf32>, tensor<4xf32>) -> tensor<2x4xf32>
  return %0 : tensor<2x4xf32>
}

// -----

// Double-quantized scales are not lowered yet: the op stays.
// CHECK-LABEL: func.func @dequantize_double
// CHECK: qopt.dequantize
func.func @dequantize_double(%q: !qopt.qtensor<4x64, #qopt.nf4, #qopt.per_block<64>, scales = !qopt.qtensor<4, #qopt.int<8>, #qopt.per_block<256>, scales = f32, offset>>) -> tensor<4x64xf32> {
  %0 = qopt.dequantize %q : !qopt.qtensor<4x64, #qopt.nf4, #qopt.per_block<64>, scales = !qopt.qtensor<4, #qopt.int<8>, #qopt.per_block<256>, scales = f32, offset>> -> tensor<4x64xf32>
  return %0 : tensor<4x64xf32>
}

// -----

// Hadamard orders m * 2^k need the tabulated matrices: not lowered yet.
// CHECK-LABEL: func.func @hadamard_12
// CHECK: qopt.hadamard
func.func @hadamard_12(%x: tensor<2x12xf32>) -> tensor<2x12xf32> {
  %0 = qopt.hadamard %x : (tensor<2x12xf32>) -> tensor<2x12xf32>
  return %0 : tensor<2x12xf32>
}

// -----

// A power of two: log2(n) butterfly stages, then the 1/sqrt(n) scaling.
// CHECK-LABEL: func.func @hadamard_8
// CHECK-COUNT-3: tensor.extract
// CHECK-NOT: qopt.hadamard
func.func @hadamard_8(%x: tensor<2x8xf32>) -> tensor<2x8xf32> {
  %0 = qopt.hadamard %x : (tensor<2x8xf32>) -> tensor<2x8xf32>
  return %0 : tensor<2x8xf32>
}
