// RUN: qopt-opt %s --qopt-materialize-params | FileCheck %s
// Inline parameters become constants (and their declarations go once
// nothing reads them); parameters stored in files stay for the runtime.

// CHECK-NOT: qopt.param @inline
// CHECK: qopt.param @external : tensor<4xf32> = #qopt.external<"w.bin", offset = 0, length = 16>
// CHECK-LABEL: func.func @main
// CHECK: %[[C:.*]] = arith.constant dense<[1.000000e+00, 2.000000e+00]> : tensor<2xf32>
// CHECK: %[[E:.*]] = qopt.load_param @external : tensor<4xf32>
// CHECK: return %[[C]], %[[E]]
qopt.param @inline : tensor<2xf32> = dense<[1.0, 2.0]> : tensor<2xf32>
qopt.param @external : tensor<4xf32> = #qopt.external<"w.bin", offset = 0, length = 16>
func.func @main() -> (tensor<2xf32>, tensor<4xf32>) {
  %0 = qopt.load_param @inline : tensor<2xf32>
  %1 = qopt.load_param @external : tensor<4xf32>
  return %0, %1 : tensor<2xf32>, tensor<4xf32>
}
