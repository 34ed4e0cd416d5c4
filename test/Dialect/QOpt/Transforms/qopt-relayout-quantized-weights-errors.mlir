// RUN: rm -rf %t && mkdir -p %t && printf '\001\002\003\004' > %t/short.bin
// RUN: qopt-opt %s -split-input-file -verify-diagnostics --qopt-relayout-quantized-weights=model-dir=%t

// Codes that cannot be read are an error naming the parameter.
func.func @missing_file(%x: tensor<1x3xf32>) -> tensor<1x2xf32> {
  %w = qopt.load_param @wx : tensor<3x2xi8>
  %ws = qopt.load_param @ws : tensor<2xf32>
  %q = qopt.assemble %w, %ws : (tensor<3x2xi8>, tensor<2xf32>) -> !qopt.qtensor<3x2, #qopt.int<8>, #qopt.per_channel<1>, scales = f32>
  %d = qopt.dequantize %q : !qopt.qtensor<3x2, #qopt.int<8>, #qopt.per_channel<1>, scales = f32> -> tensor<3x2xf32>
  %e = tensor.empty() : tensor<2x3xf32>
  %t = linalg.transpose ins(%d : tensor<3x2xf32>) outs(%e : tensor<2x3xf32>) permutation = [1, 0]
  // expected-error-re @+1 {{parameter @wx cannot be read: '{{.*}}absent.bin': No such file or directory}}
  %y = qopt.linear %x, %t : (tensor<1x3xf32>, tensor<2x3xf32>) -> tensor<1x2xf32>
  return %y : tensor<1x2xf32>
}
qopt.param @wx : tensor<3x2xi8> = #qopt.external<"absent.bin", offset = 0, length = 6>
qopt.param @ws : tensor<2xf32> = dense<1.0> : tensor<2xf32>

// -----

// A file shorter than the parameter.
func.func @short_file(%x: tensor<1x3xf32>) -> tensor<1x2xf32> {
  %w = qopt.load_param @wx : tensor<3x2xi8>
  %ws = qopt.load_param @ws : tensor<2xf32>
  %q = qopt.assemble %w, %ws : (tensor<3x2xi8>, tensor<2xf32>) -> !qopt.qtensor<3x2, #qopt.int<8>, #qopt.per_channel<1>, scales = f32>
  %d = qopt.dequantize %q : !qopt.qtensor<3x2, #qopt.int<8>, #qopt.per_channel<1>, scales = f32> -> tensor<3x2xf32>
  %e = tensor.empty() : tensor<2x3xf32>
  %t = linalg.transpose ins(%d : tensor<3x2xf32>) outs(%e : tensor<2x3xf32>) permutation = [1, 0]
  // expected-error-re @+1 {{parameter @wx cannot be read: '{{.*}}short.bin' is shorter than the parameter}}
  %y = qopt.linear %x, %t : (tensor<1x3xf32>, tensor<2x3xf32>) -> tensor<1x2xf32>
  return %y : tensor<1x2xf32>
}
qopt.param @wx : tensor<3x2xi8> = #qopt.external<"short.bin", offset = 0, length = 6>
qopt.param @ws : tensor<2xf32> = dense<1.0> : tensor<2xf32>
