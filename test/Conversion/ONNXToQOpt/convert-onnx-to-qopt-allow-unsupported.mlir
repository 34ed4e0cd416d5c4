// RUN: qopt-opt %s --convert-onnx-to-qopt="allow-unsupported=true" | FileCheck %s
// Nodes without a handler stay for inspection; the others convert.

// CHECK-LABEL: func.func @mixed
// CHECK: %[[R:.*]] = linalg.generic
// CHECK: onnx.node "Frobnicate" opset 17 (%[[R]])
func.func @mixed(%x: tensor<2xf32>) -> tensor<2xf32> {
  %0 = onnx.node "Relu" opset 17 (%x) {} : (tensor<2xf32>) -> tensor<2xf32>
  %1 = onnx.node "Frobnicate" opset 17 (%0) {} : (tensor<2xf32>) -> tensor<2xf32>
  return %1 : tensor<2xf32>
}
