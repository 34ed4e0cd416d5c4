// RUN: qopt-opt %s -split-input-file -verify-diagnostics --qopt-merge-lora="requantize=true"

// Re-quantizing merges: a quantized weight that is not assembled from
// parameters, a layout without a quantizer, scales computed at run time.

func.func @argument(%x: tensor<?x64xf32>, %q: !qopt.qtensor<8x64, #qopt.nf4, #qopt.per_block<64>, scales = f32>) -> tensor<?x8xf32> {
  %a = arith.constant dense<1.0> : tensor<1x64xf32>
  %b = arith.constant dense<0.5> : tensor<8x1xf32>
  // expected-error @+1 {{cannot merge the adapter of module 'mlp.up_proj': its quantized base weight is not assembled from parameters}}
  %y = qopt.lora %x, %q, %a, %b alpha = 1.0 module "mlp.up_proj" : (tensor<?x64xf32>, !qopt.qtensor<8x64, #qopt.nf4, #qopt.per_block<64>, scales = f32>, tensor<1x64xf32>, tensor<8x1xf32>) -> tensor<?x8xf32>
  return %y : tensor<?x8xf32>
}

// -----

!q3 = !qopt.qtensor<4x8, #qopt.int<4>, #qopt.per_block<16>, scales = f32>
func.func @int4_per_block(%x: tensor<?x8xf32>, %q: !q3) -> tensor<?x4xf32> {
  %a = arith.constant dense<1.0> : tensor<1x8xf32>
  %b = arith.constant dense<0.5> : tensor<4x1xf32>
  // expected-error @+1 {{cannot re-quantize the merged weight of module 'fc': the layout !qopt.qtensor<4x8, #qopt.int<4>, #qopt.per_block<16>, scales = f32> has no quantizer}}
  %y = qopt.lora %x, %q, %a, %b alpha = 1.0 module "fc" : (tensor<?x8xf32>, !q3, tensor<1x8xf32>, tensor<4x1xf32>) -> tensor<?x4xf32>
  return %y : tensor<?x4xf32>
}

// -----

qopt.param @w : tensor<4x4xi8> = dense<1> : tensor<4x4xi8>
!q4 = !qopt.qtensor<4x8, #qopt.int<4>, #qopt.per_channel<0>, scales = f32>
func.func @computed_scales(%x: tensor<?x8xf32>, %s: tensor<4xf32>) -> tensor<?x4xf32> {
  %d = qopt.load_param @w : tensor<4x4xi8>
  %q = qopt.assemble %d, %s : (tensor<4x4xi8>, tensor<4xf32>) -> !q4
  %a = arith.constant dense<1.0> : tensor<1x8xf32>
  %b = arith.constant dense<0.5> : tensor<4x1xf32>
  // expected-error @+1 {{cannot merge the adapter of module 'fc': its quantized base weight is not a parameter with data or a constant}}
  %y = qopt.lora %x, %q, %a, %b alpha = 1.0 module "fc" : (tensor<?x8xf32>, !q4, tensor<1x8xf32>, tensor<4x1xf32>) -> tensor<?x4xf32>
  return %y : tensor<?x4xf32>
}
