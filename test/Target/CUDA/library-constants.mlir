// RUN: qopt-opt %s --qopt-memref-copy-to-linalg | FileCheck %s
// A kernel-library call's constant operand (host memory on the CUDA
// target) is copied into a fresh buffer, by a loop nest (a kernel), before
// the call and freed after it; other operands and other callees are left
// alone.
// CHECK-LABEL: func.func @norm_constant_gamma
// CHECK: %[[G:.*]] = memref.get_global @gamma : memref<8xf32>
// CHECK: %[[GV:.*]] = memref.cast %[[G]] : memref<8xf32> to memref<?xf32, strided<[?], offset: ?>>
// CHECK: %[[COPY:.*]] = memref.alloc(%{{.*}}) : memref<?xf32>
// CHECK: linalg.copy ins(%[[GV]] : memref<?xf32, strided<[?], offset: ?>>) outs(%[[COPY]] : memref<?xf32>)
// CHECK: %[[ARG:.*]] = memref.cast %[[COPY]] : memref<?xf32> to memref<?xf32, strided<[?], offset: ?>>
// CHECK: call @qopt_cuda_norm(%{{.*}}, %{{.*}}, %arg0, %[[ARG]], %[[ARG2:.*]], %arg1)
// CHECK-NEXT: memref.dealloc %{{.*}}
// CHECK-NEXT: memref.dealloc %[[COPY]]
// CHECK: call @host_function(%[[GV]])
memref.global "private" constant @gamma : memref<8xf32> = dense<1.0>
func.func private @qopt_cuda_norm(i64, f64, memref<?x?xf32, strided<[?, ?], offset: ?>>, memref<?xf32, strided<[?], offset: ?>>, memref<?xf32, strided<[?], offset: ?>>, memref<?x?xf32, strided<[?, ?], offset: ?>>)
func.func private @host_function(memref<?xf32, strided<[?], offset: ?>>)
func.func @norm_constant_gamma(%x: memref<?x?xf32, strided<[?, ?], offset: ?>>, %y: memref<?x?xf32, strided<[?, ?], offset: ?>>) {
  %flags = arith.constant 0 : i64
  %eps = arith.constant 1.0e-5 : f64
  %g = memref.get_global @gamma : memref<8xf32>
  %gv = memref.cast %g : memref<8xf32> to memref<?xf32, strided<[?], offset: ?>>
  call @qopt_cuda_norm(%flags, %eps, %x, %gv, %gv, %y) : (i64, f64, memref<?x?xf32, strided<[?, ?], offset: ?>>, memref<?xf32, strided<[?], offset: ?>>, memref<?xf32, strided<[?], offset: ?>>, memref<?x?xf32, strided<[?, ?], offset: ?>>) -> ()
  call @host_function(%gv) : (memref<?xf32, strided<[?], offset: ?>>) -> ()
  return
}
