// RUN: qopt-opt %s -split-input-file -verify-diagnostics --qopt-merge-lora

// Factors given at run time (adapter slots) cannot be merged.
qopt.param @w : tensor<3x2xf32> = dense<1.0> : tensor<3x2xf32>
func.func @runtime_factor(%x: tensor<?x2xf32>, %a: tensor<1x2xf32>) -> tensor<?x3xf32> {
  %w = qopt.load_param @w : tensor<3x2xf32>
  %b = arith.constant dense<0.5> : tensor<3x1xf32>
  // expected-error @+1 {{cannot merge the adapter of module 'q_proj': its lora_a is not a parameter with data or a constant}}
  %y = qopt.lora %x, %w, %a, %b alpha = 1.0 module "q_proj" : (tensor<?x2xf32>, tensor<3x2xf32>, tensor<1x2xf32>, tensor<3x1xf32>) -> tensor<?x3xf32>
  return %y : tensor<?x3xf32>
}

// -----

// A parameter without data.
qopt.param @w : tensor<3x2xf32>
func.func @no_data(%x: tensor<?x2xf32>) -> tensor<?x3xf32> {
  %w = qopt.load_param @w : tensor<3x2xf32>
  %a = arith.constant dense<1.0> : tensor<1x2xf32>
  %b = arith.constant dense<0.5> : tensor<3x1xf32>
  // expected-error @+1 {{parameter @w has no data (it is given at run time)}}
  %y = qopt.lora %x, %w, %a, %b alpha = 1.0 : (tensor<?x2xf32>, tensor<3x2xf32>, tensor<1x2xf32>, tensor<3x1xf32>) -> tensor<?x3xf32>
  return %y : tensor<?x3xf32>
}

// -----

// The base weight's file is missing.
qopt.param @w : tensor<3x2xf32> = #qopt.external<"missing-weights.bin", offset = 0, length = 24>
func.func @missing_file(%x: tensor<?x2xf32>) -> tensor<?x3xf32> {
  %w = qopt.load_param @w : tensor<3x2xf32>
  %a = arith.constant dense<1.0> : tensor<1x2xf32>
  %b = arith.constant dense<0.5> : tensor<3x1xf32>
  // expected-error @+1 {{parameter @w cannot be read: 'missing-weights.bin': No such file or directory}}
  %y = qopt.lora %x, %w, %a, %b alpha = 1.0 module "fc" : (tensor<?x2xf32>, tensor<3x2xf32>, tensor<1x2xf32>, tensor<3x1xf32>) -> tensor<?x3xf32>
  return %y : tensor<?x3xf32>
}

// -----

// QLoRA: the base weight is quantized, and re-quantizing was not asked for.
func.func @quantized(%x: tensor<?x64xf32>, %q: !qopt.qtensor<8x64, #qopt.nf4, #qopt.per_block<64>, scales = f32>) -> tensor<?x8xf32> {
  %a = arith.constant dense<1.0> : tensor<1x64xf32>
  %b = arith.constant dense<0.5> : tensor<8x1xf32>
  // expected-error @+1 {{cannot merge the adapter of module 'mlp.up_proj' into its quantized base weight without quantizing the sum again, which loses precision: ask for it with requantize=true (qoptc --merge --requantize), which reports the error per layer, or dequantize the weight first}}
  %y = qopt.lora %x, %q, %a, %b alpha = 1.0 module "mlp.up_proj" : (tensor<?x64xf32>, !qopt.qtensor<8x64, #qopt.nf4, #qopt.per_block<64>, scales = f32>, tensor<1x64xf32>, tensor<8x1xf32>) -> tensor<?x8xf32>
  return %y : tensor<?x8xf32>
}

