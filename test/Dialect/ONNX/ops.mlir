// RUN: qopt-opt %s | FileCheck %s
// Round trip: the printed form parses to the same IR, also in generic form.
// RUN: qopt-opt %s | qopt-opt | FileCheck %s
// RUN: qopt-opt %s --mlir-print-op-generic | qopt-opt | FileCheck %s

// CHECK-LABEL: func.func @onnx_staging
func.func @onnx_staging(%x: tensor<?x4xf32>, %w: tensor<8x4xf32>) -> (tensor<?x8xf32>, tensor<?x4xf32>) {
  // CHECK: %[[NONE:.*]] = onnx.none
  %none = onnx.none
  // CHECK: onnx.node "Gemm" opset 13 (%{{.*}}, %{{.*}}) {alpha = 5.000000e-01 : f32, transB = 1 : i64} : (tensor<?x4xf32>, tensor<8x4xf32>) -> tensor<?x8xf32>
  %0 = onnx.node "Gemm" opset 13 (%x, %w) {alpha = 0.5 : f32, transB = 1 : i64} : (tensor<?x4xf32>, tensor<8x4xf32>) -> tensor<?x8xf32>
  // CHECK: onnx.node "Clip" domain "com.example" opset 2 (%{{.*}}, %[[NONE]]) {} metadata {pkg.torch.onnx.name_scopes = "['', 'act']"} : (tensor<?x4xf32>, none) -> tensor<?x4xf32>
  %1 = onnx.node "Clip" domain "com.example" opset 2 (%x, %none) {} metadata {pkg.torch.onnx.name_scopes = "['', 'act']"} : (tensor<?x4xf32>, none) -> tensor<?x4xf32>
  return %0, %1 : tensor<?x8xf32>, tensor<?x4xf32>
}

// CHECK-LABEL: module attributes {onnx.ir_version = 8 : i64, onnx.opset_import = {ai.onnx = 17 : i64}, onnx.producer = "pytorch 2.9"}
module attributes {onnx.ir_version = 8 : i64, onnx.opset_import = {ai.onnx = 17 : i64}, onnx.producer = "pytorch 2.9"} {
}
