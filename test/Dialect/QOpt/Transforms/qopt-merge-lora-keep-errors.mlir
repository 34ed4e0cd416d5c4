// RUN: qopt-opt %s -split-input-file -verify-diagnostics --qopt-merge-lora=keep-adapter=true

// DoRA cannot stay merged: unmerging would need the row norms.
qopt.param @w : tensor<3x2xf32> = dense<1.0> : tensor<3x2xf32>
func.func @dora(%x: tensor<?x2xf32>) -> tensor<?x3xf32> {
  %w = qopt.load_param @w : tensor<3x2xf32>
  %a = arith.constant dense<1.0> : tensor<1x2xf32>
  %b = arith.constant dense<0.5> : tensor<3x1xf32>
  %m = arith.constant dense<2.0> : tensor<3xf32>
  // expected-error @+1 {{cannot merge the DoRA adapter of module 'v_proj' and keep it (unmerging would need the row norms; use keep-adapter=false)}}
  %y = qopt.lora %x, %w, %a, %b magnitude(%m) alpha = 1.0 module "v_proj" : (tensor<?x2xf32>, tensor<3x2xf32>, tensor<1x2xf32>, tensor<3x1xf32>, tensor<3xf32>) -> tensor<?x3xf32>
  return %y : tensor<?x3xf32>
}

