// RUN: qopt-opt %s --qopt-lower-to-cpu | FileCheck %s
// RUN: not qopt-opt %s --qopt-lower-to-cpu="allow-unsupported=maybe" 2>&1 | FileCheck %s --check-prefix=BADOPT
// The named pipeline takes imported ONNX all the way to the LLVM dialect.

// CHECK: llvm.func @main
// CHECK-NOT: qopt.
// CHECK-NOT: linalg.
// CHECK: llvm.fadd
// BADOPT: allow-unsupported
func.func @main(%x: tensor<?x4xf32>, %b: tensor<4xf32>) -> tensor<?x4xf32> {
  %0 = onnx.node "Add" opset 17 (%x, %b) {} : (tensor<?x4xf32>, tensor<4xf32>) -> tensor<?x4xf32>
  %1 = onnx.node "Relu" opset 17 (%0) {} : (tensor<?x4xf32>) -> tensor<?x4xf32>
  return %1 : tensor<?x4xf32>
}
