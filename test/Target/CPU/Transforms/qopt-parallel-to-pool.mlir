// RUN: qopt-opt %s --split-input-file --qopt-parallel-to-pool | FileCheck %s

// A 1-D loop: its body becomes @scale_parallel over a range of iterations,
// its captures (two memrefs, a scalar) travel in one struct allocated in
// the entry block, and the call passes the iteration count and the work
// (iterations times the inner loop's 8).
// CHECK-LABEL: func.func private @scale_parallel(
// CHECK-SAME: %[[CTX:.*]]: !llvm.ptr, %[[BEGIN:.*]]: i64, %[[END:.*]]: i64)
// CHECK: %[[S:.*]] = llvm.load %[[CTX]] : !llvm.ptr -> !llvm.struct<(struct<(ptr, ptr, i64, array<2 x i64>, array<2 x i64>)>, f32, struct<(ptr, ptr, i64, array<2 x i64>, array<2 x i64>)>)>
// CHECK: %[[F0:.*]] = llvm.extractvalue %[[S]][0]
// CHECK: %[[M:.*]] = builtin.unrealized_conversion_cast %[[F0]] : {{.*}} to memref<?x8xf32>
// CHECK: %[[SC:.*]] = llvm.extractvalue %[[S]][1]
// CHECK: %[[F2:.*]] = llvm.extractvalue %[[S]][2]
// CHECK: %[[OUT:.*]] = builtin.unrealized_conversion_cast %[[F2]] : {{.*}} to memref<?x8xf32, strided<[16, 1], offset: ?>>
// CHECK: %[[B:.*]] = arith.index_cast %[[BEGIN]] : i64 to index
// CHECK: %[[E:.*]] = arith.index_cast %[[END]] : i64 to index
// CHECK: scf.for %[[K:.*]] = %[[B]] to %[[E]]
// CHECK: scf.for %[[J:.*]] =
// CHECK: memref.load %[[M]][%{{.*}}, %[[J]]]
// CHECK: arith.mulf %{{.*}}, %[[SC]]
// CHECK: memref.store %{{.*}}, %[[OUT]][%{{.*}}, %[[J]]]
// CHECK-LABEL: func.func @scale(
// CHECK-SAME: %[[A0:[^:]*]]: memref<?x8xf32>, %[[A1:[^:]*]]: f32, %[[A2:[^:]*]]: memref
// CHECK: %[[BOX:.*]] = llvm.alloca %{{.*}} x !llvm.struct<(struct<(ptr, ptr, i64, array<2 x i64>, array<2 x i64>)>, f32, struct<(ptr, ptr, i64, array<2 x i64>, array<2 x i64>)>)>
// CHECK: %[[DIM:.*]] = memref.dim %[[A0]]
// CHECK: %[[N:.*]] = arith.maxsi %[[DIM]], %{{.*}} : index
// CHECK: %[[D0:.*]] = builtin.unrealized_conversion_cast %[[A0]] : memref<?x8xf32> to !llvm.struct
// CHECK: %[[P0:.*]] = llvm.insertvalue %[[D0]], %{{.*}}[0]
// CHECK: %[[P1:.*]] = llvm.insertvalue %[[A1]], %[[P0]][1]
// CHECK: %[[D2:.*]] = builtin.unrealized_conversion_cast %[[A2]]
// CHECK: %[[P2:.*]] = llvm.insertvalue %[[D2]], %[[P1]][2]
// CHECK: llvm.store %[[P2]], %[[BOX]]
// CHECK: %[[WORK:.*]] = arith.muli %[[N]], %c8{{.*}} : index
// CHECK: %[[FN:.*]] = constant @scale_parallel : (!llvm.ptr, i64, i64) -> ()
// CHECK: %[[N64:.*]] = arith.index_cast %[[N]] : index to i64
// CHECK: %[[W64:.*]] = arith.index_cast %[[WORK]] : index to i64
// CHECK: call @qopt_kernel_parallel_for(%[[FN]], %[[BOX]], %[[N64]], %[[W64]])
// CHECK-NOT: scf.parallel
// CHECK: func.func private @qopt_kernel_parallel_for((!llvm.ptr, i64, i64) -> (), !llvm.ptr, i64, i64)
func.func @scale(%m: memref<?x8xf32>, %s: f32, %out: memref<?x8xf32, strided<[16, 1], offset: ?>>) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c8 = arith.constant 8 : index
  %n = memref.dim %m, %c0 : memref<?x8xf32>
  scf.parallel (%i) = (%c0) to (%n) step (%c1) {
    scf.for %j = %c0 to %c8 step %c1 {
      %v = memref.load %m[%i, %j] : memref<?x8xf32>
      %w = arith.mulf %v, %s : f32
      memref.store %w, %out[%i, %j] : memref<?x8xf32, strided<[16, 1], offset: ?>>
    }
    scf.reduce
  }
  return
}

// -----

// Two dimensions, the second with a run-time bound and a lower bound and
// step of 2: one combined index, split by the second's trip count (which
// travels as an i64) into the two induction variables.
// CHECK-LABEL: func.func private @two_parallel(
// CHECK: %[[S:.*]] = llvm.load
// CHECK: %[[T2:.*]] = llvm.extractvalue %[[S]][2] : !llvm.struct<(f32, struct<{{.*}}>, i64)>
// CHECK: %[[TRIPS:.*]] = arith.index_cast %[[T2]] : i64 to index
// CHECK: scf.for %[[K:.*]] = 
// CHECK: %[[R:.*]] = arith.remui %[[K]], %[[TRIPS]]
// CHECK: %[[Q:.*]] = arith.divui %[[K]], %[[TRIPS]]
// CHECK: %[[J0:.*]] = arith.muli %[[R]], %c2
// CHECK: %[[J:.*]] = arith.addi %c2{{.*}}, %[[J0]]
// CHECK: %[[I0:.*]] = arith.muli %[[Q]], %c1
// CHECK: %[[I:.*]] = arith.addi %c0{{.*}}, %[[I0]]
// CHECK: memref.store %{{.*}}, %{{.*}}[%[[I]], %[[J]]]
// CHECK-LABEL: func.func @two(
// CHECK: %[[NJ:.*]] = arith.maxsi
// CHECK: %[[N:.*]] = arith.muli %[[NJ]], %c4
// CHECK: call @qopt_kernel_parallel_for
func.func @two(%m: memref<4x?xf32>, %v: f32) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c2 = arith.constant 2 : index
  %c4 = arith.constant 4 : index
  %n = memref.dim %m, %c1 : memref<4x?xf32>
  scf.parallel (%i, %j) = (%c0, %c2) to (%c4, %n) step (%c1, %c2) {
    memref.store %v, %m[%i, %j] : memref<4x?xf32>
    scf.reduce
  }
  return
}

// -----

// Loops that stay on the calling thread: a check (its failure unwinds the
// entry on that thread) and a call inside the body.
// CHECK-LABEL: func.func @stays(
// CHECK-NOT: qopt_kernel_parallel_for
// CHECK: scf.parallel
// CHECK: cf.assert
// CHECK: scf.parallel
// CHECK: call @f
// CHECK-NOT: qopt_kernel_parallel_for
func.func private @f(f32)
func.func @stays(%m: memref<4xf32>, %i: memref<4xindex>) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c4 = arith.constant 4 : index
  scf.parallel (%k) = (%c0) to (%c4) step (%c1) {
    %x = memref.load %i[%k] : memref<4xindex>
    %ok = arith.cmpi ult, %x, %c4 : index
    cf.assert %ok, "index out of range"
    scf.reduce
  }
  scf.parallel (%k) = (%c0) to (%c4) step (%c1) {
    %x = memref.load %m[%k] : memref<4xf32>
    func.call @f(%x) : (f32) -> ()
    scf.reduce
  }
  return
}
