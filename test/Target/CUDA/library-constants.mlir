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

// The Hadamard transforms' H_base (operand 5) is read on the host, packed
// into the launch: it stays the host constant (a device copy would be
// written by a queued kernel the host does not wait for); its constant
// signs (operand 4) are copied as any other.
// CHECK-LABEL: func.func @hadamard_base
// CHECK: %[[H:.*]] = memref.get_global @base12 : memref<12x12xi8>
// CHECK: %[[HV:.*]] = memref.cast %[[H]]
// CHECK: %[[S:.*]] = memref.alloc(%{{.*}}) : memref<?xf32>
// CHECK: linalg.copy ins(%{{.*}} : memref<?xf32, strided<[?], offset: ?>>) outs(%[[S]] : memref<?xf32>)
// CHECK: %[[SV:.*]] = memref.cast %[[S]]
// CHECK: call @qopt_cuda_hadamard(%{{.*}}, %{{.*}}, %{{.*}}, %arg0, %[[SV]], %[[HV]], %arg1)
// CHECK: %[[S2:.*]] = memref.alloc(%{{.*}}) : memref<?xf32>
// CHECK: linalg.copy ins(%{{.*}} : memref<?xf32, strided<[?], offset: ?>>) outs(%[[S2]] : memref<?xf32>)
// CHECK: %[[SV2:.*]] = memref.cast %[[S2]]
// CHECK: call @qopt_cuda_hadamard_quant(%{{.*}}, %{{.*}}, %{{.*}}, %arg0, %[[SV2]], %[[HV]], %arg1,
memref.global "private" constant @base12 : memref<12x12xi8> = dense<1>
memref.global "private" constant @signs24 : memref<24xf32> = dense<1.0>
func.func private @qopt_cuda_hadamard(i64, i64, f64, memref<?x?xf32, strided<[?, ?], offset: ?>>, memref<?xf32, strided<[?], offset: ?>>, memref<?x?xi8, strided<[?, ?], offset: ?>>, memref<?x?xf32, strided<[?, ?], offset: ?>>)
func.func private @qopt_cuda_hadamard_quant(i64, i64, f64, memref<?x?xf32, strided<[?, ?], offset: ?>>, memref<?xf32, strided<[?], offset: ?>>, memref<?x?xi8, strided<[?, ?], offset: ?>>, memref<?x?xf32, strided<[?, ?], offset: ?>>, index, index, index, index, index, index)
func.func @hadamard_base(%x: memref<?x?xf32, strided<[?, ?], offset: ?>>, %y: memref<?x?xf32, strided<[?, ?], offset: ?>>, %p: index) {
  %flags = arith.constant 1 : i64
  %n = arith.constant 24 : i64
  %scale = arith.constant 0.2 : f64
  %h = memref.get_global @base12 : memref<12x12xi8>
  %hv = memref.cast %h : memref<12x12xi8> to memref<?x?xi8, strided<[?, ?], offset: ?>>
  %s = memref.get_global @signs24 : memref<24xf32>
  %sv = memref.cast %s : memref<24xf32> to memref<?xf32, strided<[?], offset: ?>>
  call @qopt_cuda_hadamard(%flags, %n, %scale, %x, %sv, %hv, %y) : (i64, i64, f64, memref<?x?xf32, strided<[?, ?], offset: ?>>, memref<?xf32, strided<[?], offset: ?>>, memref<?x?xi8, strided<[?, ?], offset: ?>>, memref<?x?xf32, strided<[?, ?], offset: ?>>) -> ()
  call @qopt_cuda_hadamard_quant(%flags, %n, %scale, %x, %sv, %hv, %y, %p, %p, %p, %p, %p, %p) : (i64, i64, f64, memref<?x?xf32, strided<[?, ?], offset: ?>>, memref<?xf32, strided<[?], offset: ?>>, memref<?x?xi8, strided<[?, ?], offset: ?>>, memref<?x?xf32, strided<[?, ?], offset: ?>>, index, index, index, index, index, index) -> ()
  return
}
