// The CPU target's own pipeline: graph IR (QOpt ops on tensors) to the LLVM
// dialect, without the front end. With blas=true the linear layer's product
// calls the kernel library.
// RUN: qopt-opt %s --qopt-cpu-codegen | FileCheck %s --check-prefixes=CHECK,LOOPS
// RUN: qopt-opt %s --qopt-cpu-codegen=blas=true | FileCheck %s --check-prefixes=CHECK,BLAS

// CHECK-NOT: qopt.
// CHECK-NOT: linalg.
// CHECK-DAG: llvm.func @aligned_alloc(i64, i64) -> !llvm.ptr
// CHECK-DAG: llvm.func @free(!llvm.ptr)
// CHECK: llvm.func @f(
// LOOPS-NOT: qopt_kernel_sgemm
// BLAS: llvm.call @qopt_kernel_sgemm(
// BLAS: llvm.func @qopt_kernel_sgemm(
func.func @f(%x: tensor<?x8xf32>, %w: tensor<4x8xf32>) -> tensor<?x4xf32> {
  %0 = qopt.silu %x : tensor<?x8xf32>
  %1 = qopt.linear %0, %w : (tensor<?x8xf32>, tensor<4x8xf32>) -> tensor<?x4xf32>
  return %1 : tensor<?x4xf32>
}
