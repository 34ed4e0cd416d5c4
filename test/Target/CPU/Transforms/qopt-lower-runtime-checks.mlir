// RUN: qopt-opt %s --qopt-lower-runtime-checks | FileCheck %s
// Each cf.assert becomes a call of the kernel library's
// qopt_kernel_check_failed with its message when the condition is false;
// equal messages share one private constant.

// CHECK-DAG: llvm.mlir.global private constant @[[ADD:qopt_check_message[_0-9]*]]("node 'a' (Add, opset 14): sizes differ\00")
// CHECK-DAG: llvm.mlir.global private constant @[[GATHER:qopt_check_message[_0-9]*]]("node 'g' (Gather, opset 13): an index is out of range\00")
// CHECK-DAG: func.func private @qopt_kernel_check_failed(!llvm.ptr)
// CHECK-LABEL: func.func @f(
// CHECK-SAME: %[[A:.*]]: i1, %[[B:.*]]: i1)
// CHECK-NOT: cf.assert
// CHECK: %[[NOT_A:.*]] = arith.xori %[[A]], %{{.*}} : i1
// CHECK: scf.if %[[NOT_A]] {
// CHECK:   %[[M0:.*]] = llvm.mlir.addressof @[[GATHER]] : !llvm.ptr
// CHECK:   func.call @qopt_kernel_check_failed(%[[M0]]) : (!llvm.ptr) -> ()
// CHECK: }
// CHECK: %[[NOT_B:.*]] = arith.xori %[[B]], %{{.*}} : i1
// CHECK: scf.if %[[NOT_B]] {
// CHECK:   llvm.mlir.addressof @[[GATHER]] : !llvm.ptr
// CHECK: scf.if %{{.*}} {
// CHECK:   llvm.mlir.addressof @[[ADD]] : !llvm.ptr
// CHECK-NOT: cf.assert
// CHECK: return
func.func @f(%a: i1, %b: i1) {
  cf.assert %a, "node 'g' (Gather, opset 13): an index is out of range"
  cf.assert %b, "node 'g' (Gather, opset 13): an index is out of range"
  cf.assert %b, "node 'a' (Add, opset 14): sizes differ"
  return
}

// A module without checks is left alone (no declaration added).
// RUN: echo 'func.func @g() { return }' | qopt-opt --qopt-lower-runtime-checks | FileCheck %s --check-prefix=NONE
// NONE-NOT: qopt_kernel_check_failed
// NONE: func.func @g()
