// RUN: qopt-opt %s --pass-pipeline="builtin.module(convert-qopt-to-linalg{training-dropout=true keep-attention=true},cse,canonicalize,convert-elementwise-to-linalg,qopt-build-train-step{entry=gradients},qopt-cuda-codegen{emulate=true library=true})" | FileCheck %s
// The CUDA target's train step (qoptc --train --target cuda): the
// attention stays whole through the differentiation, and both its forward
// and its gradient become one call each of the kernel library's fused
// kernels (here their CPU emulation): no [B, H, S, L] scores or
// probabilities are stored for the backward.
// CHECK-LABEL: llvm.func @gradients
// CHECK: llvm.call @qopt_cuda_attention_emulated(
// CHECK: llvm.call @qopt_cuda_attention_emulated_backward(
// CHECK-NOT: llvm.call @qopt_cuda_attention
// CHECK: llvm.return
func.func @model(%x: tensor<2x3x8xf32> {qopt.name = "x", qopt.dim_names = ["batch", "seq", ""]},
                 %w: tensor<8x8xf32> {qopt.param = "w", qopt.trainable}) -> (tensor<2x3x8xf32> {qopt.name = "logits"}) {
  %h = qopt.linear %x, %w : (tensor<2x3x8xf32>, tensor<8x8xf32>) -> tensor<2x3x8xf32>
  %q = tensor.expand_shape %h [[0, 1], [2], [3]] output_shape [2, 1, 3, 8] : tensor<2x3x8xf32> into tensor<2x1x3x8xf32>
  %y = qopt.attention %q, %q, %q causal : (tensor<2x1x3x8xf32>, tensor<2x1x3x8xf32>, tensor<2x1x3x8xf32>) -> tensor<2x1x3x8xf32>
  %l = tensor.collapse_shape %y [[0, 1], [2], [3]] : tensor<2x1x3x8xf32> into tensor<2x3x8xf32>
  return %l : tensor<2x3x8xf32>
}
