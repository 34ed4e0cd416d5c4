// RUN: qopt-opt %s -split-input-file -verify-diagnostics --qopt-params-to-arguments | FileCheck %s

// Parameters in files become trailing entry arguments (declaration order),
// read-only; inline ones and their reads are left alone.
// CHECK-NOT: qopt.param @w
// CHECK: qopt.param @small
// CHECK-LABEL: func.func @main
// CHECK-SAME: (%[[X:.*]]: tensor<2x4xf32>, %[[W:.*]]: tensor<4x3xf32> {bufferization.writable = false, qopt.external = #qopt.external<"m.onnx", offset = 0, length = 48>, qopt.param = "w"}, %[[V:.*]]: tensor<3xf32> {bufferization.writable = false, qopt.param = "v"})
// CHECK: qopt.load_param @small
// CHECK: return %[[X]], %[[W]], %[[V]]
qopt.param @w : tensor<4x3xf32> = #qopt.external<"m.onnx", offset = 0, length = 48>
qopt.param @small : tensor<2xf32> = dense<[1.0, 2.0]> : tensor<2xf32>
qopt.param trainable @v : tensor<3xf32>
func.func @main(%x: tensor<2x4xf32>) -> (tensor<2x4xf32>, tensor<4x3xf32>, tensor<3xf32>, tensor<2xf32>) {
  %v = qopt.load_param @v : tensor<3xf32>
  %w = qopt.load_param @w : tensor<4x3xf32>
  %s = qopt.load_param @small : tensor<2xf32>
  return %x, %w, %v, %s : tensor<2x4xf32>, tensor<4x3xf32>, tensor<3xf32>, tensor<2xf32>
}

// -----

qopt.param @w : tensor<4xf32> = #qopt.external<"m.onnx", offset = 0, length = 16>
func.func @main() -> tensor<4xf32> {
  %w = qopt.load_param @w : tensor<4xf32>
  return %w : tensor<4xf32>
}
func.func @other() -> tensor<4xf32> {
  // expected-error @+1 {{parameter @w is read outside the entry function @main: runtime-provided parameters must all be read by one public function}}
  %w = qopt.load_param @w : tensor<4xf32>
  return %w : tensor<4xf32>
}
