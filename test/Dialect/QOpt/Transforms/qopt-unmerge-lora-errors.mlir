// RUN: qopt-opt %s -split-input-file -verify-diagnostics --qopt-unmerge-lora

// An unmarked branch is left alone, even with factors given at run time.
qopt.param @w : tensor<3x2xf32> = dense<1.0> : tensor<3x2xf32>
func.func @not_merged(%x: tensor<?x2xf32>, %a: tensor<1x2xf32>) -> tensor<?x3xf32> {
  %w = qopt.load_param @w : tensor<3x2xf32>
  %b = arith.constant dense<0.5> : tensor<3x1xf32>
  %y = qopt.lora %x, %w, %a, %b alpha = 1.0 module "fc" : (tensor<?x2xf32>, tensor<3x2xf32>, tensor<1x2xf32>, tensor<3x1xf32>) -> tensor<?x3xf32>
  return %y : tensor<?x3xf32>
}

// -----

// A merged branch whose factor is given at run time cannot be taken out.
qopt.param @w : tensor<3x2xf32> = dense<1.0> : tensor<3x2xf32>
func.func @runtime_factor(%x: tensor<?x2xf32>, %a: tensor<1x2xf32>) -> tensor<?x3xf32> {
  %w = qopt.load_param @w : tensor<3x2xf32>
  %b = arith.constant dense<0.5> : tensor<3x1xf32>
  // expected-error @+1 {{cannot unmerge the adapter of module 'q_proj': its lora_a is not a parameter with data or a constant}}
  %y = qopt.lora %x, %w, %a, %b alpha = 1.0 module "q_proj" merged : (tensor<?x2xf32>, tensor<3x2xf32>, tensor<1x2xf32>, tensor<3x1xf32>) -> tensor<?x3xf32>
  return %y : tensor<?x3xf32>
}

// -----

// A merged weight without data.
qopt.param @w : tensor<3x2xf32>
func.func @no_data(%x: tensor<?x2xf32>) -> tensor<?x3xf32> {
  %w = qopt.load_param @w : tensor<3x2xf32>
  %a = arith.constant dense<1.0> : tensor<1x2xf32>
  %b = arith.constant dense<0.5> : tensor<3x1xf32>
  // expected-error @+1 {{parameter @w has no data (it is given at run time)}}
  %y = qopt.lora %x, %w, %a, %b alpha = 1.0 merged : (tensor<?x2xf32>, tensor<3x2xf32>, tensor<1x2xf32>, tensor<3x1xf32>) -> tensor<?x3xf32>
  return %y : tensor<?x3xf32>
}
