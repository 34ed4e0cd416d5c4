// RUN: qopt-opt %s -split-input-file -verify-diagnostics --qopt-merge-lora="keep-adapter=true requantize=true"

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

// -----

// A branch kept over a re-quantized weight could not be taken out again.
qopt.param @d : tensor<4x8xi8> = dense<1> : tensor<4x8xi8>
qopt.param @s : tensor<4xf32> = dense<0.5> : tensor<4xf32>
!q8 = !qopt.qtensor<4x8, #qopt.int<8>, #qopt.per_channel<0>, scales = f32>
func.func @requantized(%x: tensor<?x8xf32>) -> tensor<?x4xf32> {
  %d = qopt.load_param @d : tensor<4x8xi8>
  %s = qopt.load_param @s : tensor<4xf32>
  %q = qopt.assemble %d, %s : (tensor<4x8xi8>, tensor<4xf32>) -> !q8
  %a = arith.constant dense<1.0> : tensor<1x8xf32>
  %b = arith.constant dense<0.5> : tensor<4x1xf32>
  // expected-error @+1 {{cannot keep the adapter of module 'fc' merged into a re-quantized weight (unmerging would not restore the base weight)}}
  %y = qopt.lora %x, %q, %a, %b alpha = 1.0 module "fc" : (tensor<?x8xf32>, !q8, tensor<1x8xf32>, tensor<4x1xf32>) -> tensor<?x4xf32>
  return %y : tensor<?x4xf32>
}
