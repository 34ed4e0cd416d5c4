// RUN: qopt-opt %s -split-input-file --convert-qopt-to-linalg="keep-attention=true" | FileCheck %s
// keep-attention (qoptc's train step for the CUDA target) leaves each
// qopt.attention the library's kernels take whole, for
// qopt-build-train-step to differentiate into qopt.attention_grad; what
// they do not take is lowered to linalg as ever.

// CHECK-LABEL: func.func @kept
// CHECK: qopt.attention %arg0, %arg0, %arg0 causal
// CHECK-NOT: linalg.generic
func.func @kept(%q: tensor<1x2x3x8xf32>) -> tensor<1x2x3x8xf32> {
  %y = qopt.attention %q, %q, %q causal : (tensor<1x2x3x8xf32>, tensor<1x2x3x8xf32>, tensor<1x2x3x8xf32>) -> tensor<1x2x3x8xf32>
  return %y : tensor<1x2x3x8xf32>
}

// -----

// CHECK-LABEL: func.func @lowered
// CHECK-NOT: qopt.attention
// CHECK: math.exp
func.func @lowered(%q: tensor<1x2x3x8xf16>) -> tensor<1x2x3x8xf16> {
  %y = qopt.attention %q, %q, %q : (tensor<1x2x3x8xf16>, tensor<1x2x3x8xf16>, tensor<1x2x3x8xf16>) -> tensor<1x2x3x8xf16>
  return %y : tensor<1x2x3x8xf16>
}
