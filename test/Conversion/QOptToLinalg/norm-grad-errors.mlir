// RUN: qopt-opt %s -split-input-file --convert-qopt-to-linalg -verify-diagnostics
// RUN: qopt-opt %s -split-input-file --convert-qopt-to-linalg="norm-library=norm" -verify-diagnostics

// qopt.norm_grad has only the library's form: without it (or for data its
// kernels do not take) it is an error naming why.
func.func @no_library(%x: tensor<2x8xf16>, %g: tensor<8xf16>) -> tensor<2x8xf16> {
  // expected-error @+1 {{'qopt.norm_grad' could not be lowered to linalg: it has only a kernel library's form (norm-library, for f32 data); elsewhere norms are differentiated in their linalg form}}
  %dx, %dg, %db = qopt.norm_grad %x, %g, %x epsilon = 1.0e-06 : (tensor<2x8xf16>, tensor<8xf16>, tensor<2x8xf16>) -> (tensor<2x8xf16>, tensor<8xf16>, tensor<8xf16>)
  return %dx : tensor<2x8xf16>
}

// -----

func.func @wrong_gamma(%x: tensor<2x8xf32>, %g: tensor<4xf32>) -> tensor<2x8xf32> {
  // expected-error @+1 {{gamma must have the size of the input's last axis: 4 vs 8}}
  %dx, %dg, %db = qopt.norm_grad %x, %g, %x epsilon = 1.0e-06 : (tensor<2x8xf32>, tensor<4xf32>, tensor<2x8xf32>) -> (tensor<2x8xf32>, tensor<4xf32>, tensor<4xf32>)
  return %dx : tensor<2x8xf32>
}

// -----

func.func @negative_epsilon(%x: tensor<2x8xf32>, %g: tensor<8xf32>) -> tensor<2x8xf32> {
  // expected-error @+1 {{epsilon must be non-negative and finite, got -1}}
  %dx, %dg, %db = qopt.norm_grad %x, %g, %x epsilon = -1.0 : (tensor<2x8xf32>, tensor<8xf32>, tensor<2x8xf32>) -> (tensor<2x8xf32>, tensor<8xf32>, tensor<8xf32>)
  return %dx : tensor<2x8xf32>
}

// -----

func.func @wrong_gradient_type(%x: tensor<2x8xf32>, %g: tensor<8xf32>) -> tensor<3x8xf32> {
  // expected-error @+1 {{all of {input, output_grad, input_grad} have same type}}
  %dx, %dg, %db = qopt.norm_grad %x, %g, %x epsilon = 1.0e-06 : (tensor<2x8xf32>, tensor<8xf32>, tensor<2x8xf32>) -> (tensor<3x8xf32>, tensor<8xf32>, tensor<8xf32>)
  return %dx : tensor<3x8xf32>
}
