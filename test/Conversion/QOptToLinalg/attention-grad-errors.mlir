// RUN: qopt-opt %s -split-input-file --convert-qopt-to-linalg -verify-diagnostics
// RUN: qopt-opt %s -split-input-file --convert-qopt-to-linalg="attention-library=attn" -verify-diagnostics

// qopt.attention_grad has only the library's form: without it (or for
// operands its kernels do not take) it is an error naming why.
func.func @no_library(%q: tensor<1x2x3x8xf16>, %dy: tensor<1x2x3x8xf16>) -> tensor<1x2x3x8xf16> {
  // expected-error @+1 {{'qopt.attention_grad' could not be lowered to linalg: it has only a kernel library's form (attention-library, for f32 operands and head sizes up to 128); elsewhere attention is differentiated in its linalg form}}
  %dq, %dk, %dv = qopt.attention_grad %q, %q, %q output(%dy, %dy) scale = 0.5 : (tensor<1x2x3x8xf16>, tensor<1x2x3x8xf16>, tensor<1x2x3x8xf16>, tensor<1x2x3x8xf16>, tensor<1x2x3x8xf16>) -> (tensor<1x2x3x8xf16>, tensor<1x2x3x8xf16>, tensor<1x2x3x8xf16>)
  return %dq : tensor<1x2x3x8xf16>
}

// -----

func.func @wrong_gradient_type(%q: tensor<1x2x3x8xf32>) -> tensor<1x2x3x8xf32> {
  // expected-error @+1 {{each gradient must have its operand's type}}
  %dq, %dk, %dv = qopt.attention_grad %q, %q, %q output(%q, %q) scale = 0.5 : (tensor<1x2x3x8xf32>, tensor<1x2x3x8xf32>, tensor<1x2x3x8xf32>, tensor<1x2x3x8xf32>, tensor<1x2x3x8xf32>) -> (tensor<1x2x3x8xf32>, tensor<1x2x4x8xf32>, tensor<1x2x3x8xf32>)
  return %dq : tensor<1x2x3x8xf32>
}
