// RUN: qopt-opt %s --pass-pipeline="builtin.module(convert-qopt-to-linalg{training-dropout=true keep-norms=true},cse,canonicalize,convert-elementwise-to-linalg,qopt-build-train-step{entry=gradients},qopt-cuda-codegen{emulate=true library=true})" | FileCheck %s
// The CUDA target's train step (qoptc --train --target cuda): the norms
// stay whole through the differentiation, and both their forward and their
// gradient become one call each of the kernel library's kernels (here
// their CPU emulation).
// CHECK-LABEL: llvm.func @gradients
// CHECK: llvm.call @qopt_cuda_norm_emulated(
// CHECK: llvm.call @qopt_cuda_norm_emulated_backward(
// CHECK-NOT: llvm.call @qopt_cuda_norm
// CHECK: llvm.return
func.func @model(%x: tensor<2x3x8xf32> {qopt.name = "x", qopt.dim_names = ["batch", "seq", ""]},
                 %w: tensor<8x8xf32> {qopt.param = "w", qopt.trainable},
                 %g: tensor<8xf32> {qopt.param = "g"}) -> (tensor<2x3x8xf32> {qopt.name = "logits"}) {
  %h = qopt.linear %x, %w : (tensor<2x3x8xf32>, tensor<8x8xf32>) -> tensor<2x3x8xf32>
  %y = qopt.rms_norm %h, %g : (tensor<2x3x8xf32>, tensor<8xf32>) -> tensor<2x3x8xf32>
  return %y : tensor<2x3x8xf32>
}
