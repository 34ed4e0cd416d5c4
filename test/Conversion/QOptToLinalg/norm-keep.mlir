// RUN: qopt-opt %s -split-input-file --convert-qopt-to-linalg="keep-norms=true" | FileCheck %s
// keep-norms (qoptc's train step for the CUDA target) leaves each norm the
// library's kernels take (f32, over the last axis) whole, for
// qopt-build-train-step to differentiate into qopt.norm_grad; what they do
// not take is lowered to linalg as ever.

// CHECK-LABEL: func.func @kept
// CHECK: qopt.rms_norm %arg0, %arg1
// CHECK: qopt.layer_norm
// CHECK-NOT: linalg.generic
func.func @kept(%x: tensor<2x?x8xf32>, %g: tensor<8xf32>) -> tensor<2x?x8xf32> {
  %h = qopt.rms_norm %x, %g : (tensor<2x?x8xf32>, tensor<8xf32>) -> tensor<2x?x8xf32>
  %y = qopt.layer_norm %h, %g, %g : (tensor<2x?x8xf32>, tensor<8xf32>, tensor<8xf32>) -> tensor<2x?x8xf32>
  return %y : tensor<2x?x8xf32>
}

// -----

// bf16 data and a norm over two trailing axes are lowered.
// CHECK-LABEL: func.func @lowered
// CHECK-NOT: qopt.rms_norm
// CHECK-NOT: qopt.layer_norm
// CHECK: math.sqrt
func.func @lowered(%x: tensor<2x8xbf16>, %g: tensor<8xbf16>, %z: tensor<2x4x8xf32>, %gz: tensor<4x8xf32>) -> (tensor<2x8xbf16>, tensor<2x4x8xf32>) {
  %y = qopt.rms_norm %x, %g : (tensor<2x8xbf16>, tensor<8xbf16>) -> tensor<2x8xbf16>
  %w = qopt.layer_norm %z, %gz axis = 1 : (tensor<2x4x8xf32>, tensor<4x8xf32>) -> tensor<2x4x8xf32>
  return %y, %w : tensor<2x8xbf16>, tensor<2x4x8xf32>
}
