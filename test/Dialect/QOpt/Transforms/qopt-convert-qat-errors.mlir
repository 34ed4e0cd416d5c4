// RUN: qopt-opt %s -split-input-file -verify-diagnostics --qopt-convert-qat

// LSQ+ offsets trained off the integer grid cannot be packed.
qopt.param @w : tensor<2x4xf32> = dense<1.0> : tensor<2x4xf32>
qopt.param trainable @s : tensor<2xf32> = dense<0.5> : tensor<2xf32>
qopt.param trainable @z : tensor<2xf32> = dense<[3.0, 7.5]> : tensor<2xf32>
func.func @fractional_offset(%x: tensor<3x4xf32>) -> tensor<3x2xf32> {
  %w = qopt.load_param @w : tensor<2x4xf32>
  %s = qopt.load_param @s : tensor<2xf32>
  %z = qopt.load_param @z : tensor<2xf32>
  // expected-error @+1 {{qopt-convert-qat: the learned offsets of "fc" are not integer codes in [0, 15]: they cannot be packed as zero points}}
  %q = qopt.lsq %w scale %s zero_point %z format(#qopt.int<4, unsigned, zero_point>) granularity(#qopt.per_channel<0>) {qopt.qat_spec = "int4:asym"} : (tensor<2x4xf32>, tensor<2xf32>, tensor<2xf32>) -> tensor<2x4xf32>
  %y = qopt.linear %x, %q module "fc" : (tensor<3x4xf32>, tensor<2x4xf32>) -> tensor<3x2xf32>
  return %y : tensor<3x2xf32>
}

// -----

// A marked fake-quant that is not a linear layer's weight.
func.func @not_a_weight(%x: tensor<3x4xf32>, %s: tensor<3xf32>) -> tensor<3x4xf32> {
  // expected-error @+1 {{qopt-convert-qat: a weight fake-quant that is not one linear layer's weight}}
  %q = qopt.fake_quant %x scale %s format(#qopt.int<8>) granularity(#qopt.per_channel<0>) {qopt.qat_spec = "int8"} : (tensor<3x4xf32>, tensor<3xf32>) -> tensor<3x4xf32>
  return %q : tensor<3x4xf32>
}

// -----

// A weight given at run time.
func.func @runtime_weight(%x: tensor<3x4xf32>, %w: tensor<2x4xf32>, %s: tensor<2xf32>) -> tensor<3x2xf32> {
  %q = qopt.fake_quant %w scale %s format(#qopt.int<8>) granularity(#qopt.per_channel<0>) {qopt.qat_spec = "int8"} : (tensor<2x4xf32>, tensor<2xf32>) -> tensor<2x4xf32>
  // expected-error @+1 {{qopt-convert-qat: the weight of "fc" is not a parameter with data or a constant: only values known at compile time are packed}}
  %y = qopt.linear %x, %q module "fc" : (tensor<3x4xf32>, tensor<2x4xf32>) -> tensor<3x2xf32>
  return %y : tensor<3x2xf32>
}

// -----

// A spec that is not a weight fake-quant's.
func.func @bad_spec(%x: tensor<3x4xf32>, %w: tensor<2x4xf32>, %s: tensor<2xf32>) -> tensor<3x2xf32> {
  // expected-error @+1 {{qopt-convert-qat: 'qopt.qat_spec' is not a weight fake-quant spec: "nf5"}}
  %q = qopt.fake_quant %w scale %s format(#qopt.int<8>) granularity(#qopt.per_channel<0>) {qopt.qat_spec = "nf5"} : (tensor<2x4xf32>, tensor<2xf32>) -> tensor<2x4xf32>
  %y = qopt.linear %x, %q module "fc" : (tensor<3x4xf32>, tensor<2x4xf32>) -> tensor<3x2xf32>
  return %y : tensor<3x2xf32>
}
