// RUN: qopt-opt %s -split-input-file -verify-diagnostics
// Every verifier error of the ONNX staging ops.

func.func @f(%x: tensor<2xf32>) -> tensor<2xf32> {
  // expected-error@+1 {{'onnx.node' op needs an ONNX operator type}}
  %0 = onnx.node "" opset 13 (%x) {} : (tensor<2xf32>) -> tensor<2xf32>
  return %0 : tensor<2xf32>
}

// -----

func.func @f(%x: tensor<2xf32>) -> tensor<2xf32> {
  // expected-error@+1 {{'onnx.node' op opset must be positive, got 0}}
  %0 = onnx.node "Relu" opset 0 (%x) {} : (tensor<2xf32>) -> tensor<2xf32>
  return %0 : tensor<2xf32>
}

