// RUN: qopt-opt %s --pass-pipeline='builtin.module(func.func(qopt-parallel-to-gpu))' --split-input-file --verify-diagnostics | FileCheck %s

// A 2-D loop with constant bounds: one launch of one block of 64 threads
// (6*10 iterations, fewer than a block of 256: rounded up to whole warps);
// each thread takes the combined index (the last dimension
// fastest) in 32-bit arithmetic, threads past the end do nothing, and a
// loop with no iterations launches nothing.
// CHECK-LABEL: func.func @static
// CHECK: arith.ceildivui
// CHECK: %[[N1:.*]] = arith.ceildivui %{{.*}}, %{{.*}} : index
// CHECK: %[[TOTAL:.*]] = arith.muli %{{.*}}, %[[N1]] : index
// CHECK: %[[NONEMPTY:.*]] = arith.cmpi ugt, %[[TOTAL]], %{{.*}} : index
// CHECK: scf.if %[[NONEMPTY]] {
// CHECK: %[[C64:.*]] = arith.constant 64 : index
// CHECK: %[[GRID:.*]] = arith.ceildivui %[[TOTAL]], %[[C64]]
// CHECK: gpu.launch blocks(%[[BX:.*]], %{{.*}}, %{{.*}}) in (%{{.*}} = %[[GRID]], %{{.*}} = %{{.*}}, %{{.*}} = %{{.*}}) threads(%[[TX:.*]], %{{.*}}, %{{.*}}) in (%{{.*}} = %[[C64]],
// CHECK: %[[MUL:.*]] = arith.muli %[[BX]], %[[C64]]
// CHECK: %[[LIN:.*]] = arith.addi %[[MUL]], %[[TX]]
// CHECK: %[[IN:.*]] = arith.cmpi ult, %[[LIN]], %[[TOTAL]]
// CHECK: scf.if %[[IN]] {
// CHECK: %[[L32:.*]] = arith.index_castui %[[LIN]] : index to i32
// CHECK: %[[N32:.*]] = arith.index_castui %[[N1]] : index to i32
// CHECK: %[[J:.*]] = arith.remui %[[L32]], %[[N32]] : i32
// CHECK: %[[I:.*]] = arith.divui %[[L32]], %[[N32]] : i32
// CHECK: %[[JX:.*]] = arith.index_castui %[[J]] : i32 to index
// CHECK: %[[JS:.*]] = arith.muli %[[JX]], %{{.*}} : index
// CHECK: %[[JV:.*]] = arith.addi %{{.*}}, %[[JS]] : index
// CHECK: %[[IX:.*]] = arith.index_castui %[[I]] : i32 to index
// CHECK: %[[IS:.*]] = arith.muli %[[IX]], %{{.*}} : index
// CHECK: %[[IV:.*]] = arith.addi %{{.*}}, %[[IS]] : index
// CHECK: memref.store %{{.*}}, %{{.*}}[%[[IV]], %[[JV]]] : memref<6x10xf32>
// CHECK: gpu.terminator
// CHECK-NOT: scf.parallel
func.func @static(%out: memref<6x10xf32>, %v: f32) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c6 = arith.constant 6 : index
  %c10 = arith.constant 10 : index
  scf.parallel (%i, %j) = (%c0, %c0) to (%c6, %c10) step (%c1, %c1) {
    memref.store %v, %out[%i, %j] : memref<6x10xf32>
    scf.reduce
  }
  return
}

// -----

// Dynamic bounds, a lower bound and a step: 64-bit indices, i = lb + k*step;
// a constant tensor the kernel reads is read inside the launch.
// CHECK-LABEL: func.func @dynamic
// CHECK-SAME: %[[OUT:.*]]: memref<?xf32>, %[[LB:.*]]: index, %[[UB:.*]]: index
// CHECK: gpu.launch
// CHECK-NEXT: %[[G:.*]] = memref.get_global @table : memref<4xf32>
// CHECK: scf.if
// CHECK-NOT: index_castui
// CHECK: %[[K:.*]] = arith.muli %{{.*}}, %c3 : index
// CHECK: %[[IV:.*]] = arith.addi %[[LB]], %[[K]] : index
// CHECK: memref.load %[[G]]
// CHECK: memref.store %{{.*}}, %[[OUT]][%[[IV]]]
memref.global "private" constant @table : memref<4xf32> = dense<[1.0, 2.0, 3.0, 4.0]>
func.func @dynamic(%out: memref<?xf32>, %lb: index, %ub: index) {
  %c0 = arith.constant 0 : index
  %c3 = arith.constant 3 : index
  %g = memref.get_global @table : memref<4xf32>
  scf.parallel (%i) = (%lb) to (%ub) step (%c3) {
    %v = memref.load %g[%c0] : memref<4xf32>
    memref.store %v, %out[%i] : memref<?xf32>
    scf.reduce
  }
  return
}

// -----

// A view of a constant made on the host is rebuilt in the kernel from the
// kernel's own copy of the global.
// CHECK-LABEL: func.func @view
// CHECK: gpu.launch
// CHECK-NEXT: %[[G:.*]] = memref.get_global @rows : memref<2x4xf32>
// CHECK-NEXT: %[[V:.*]] = memref.subview %[[G]][1, 0] [1, 4] [1, 1]
// CHECK: memref.load %[[V]]
memref.global "private" constant @rows : memref<2x4xf32> = dense<1.0>
func.func @view(%out: memref<4xf32>) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c4 = arith.constant 4 : index
  %g = memref.get_global @rows : memref<2x4xf32>
  %v = memref.subview %g[1, 0] [1, 4] [1, 1] : memref<2x4xf32> to memref<4xf32, strided<[1], offset: 4>>
  scf.parallel (%i) = (%c0) to (%c4) step (%c1) {
    %x = memref.load %v[%i] : memref<4xf32, strided<[1], offset: 4>>
    memref.store %x, %out[%i] : memref<4xf32>
    scf.reduce
  }
  return
}

// -----

func.func @nested(%out: memref<4x4xf32>, %v: f32) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c4 = arith.constant 4 : index
  // expected-error @below {{qopt-parallel-to-gpu: nested scf.parallel (run qopt-serialize-nested-parallel first)}}
  scf.parallel (%i) = (%c0) to (%c4) step (%c1) {
    scf.parallel (%j) = (%c0) to (%c4) step (%c1) {
      memref.store %v, %out[%i, %j] : memref<4x4xf32>
      scf.reduce
    }
    scf.reduce
  }
  return
}

// -----

func.func @reduction(%in: memref<4xf32>) -> f32 {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c4 = arith.constant 4 : index
  %zero = arith.constant 0.0 : f32
  // expected-error @below {{qopt-parallel-to-gpu: an scf.parallel with reductions}}
  %sum = scf.parallel (%i) = (%c0) to (%c4) step (%c1) init (%zero) -> f32 {
    %v = memref.load %in[%i] : memref<4xf32>
    scf.reduce(%v : f32) {
    ^bb0(%a: f32, %b: f32):
      %s = arith.addf %a, %b : f32
      scf.reduce.return %s : f32
    }
  }
  return %sum : f32
}

// -----

func.func @check_in_loop(%out: memref<4xf32>, %v: f32, %ok: i1) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c4 = arith.constant 4 : index
  scf.parallel (%i) = (%c0) to (%c4) step (%c1) {
    // expected-error @below {{qopt-parallel-to-gpu: a run-time check inside a loop nest cannot run in a GPU kernel}}
    cf.assert %ok, "bad"
    memref.store %v, %out[%i] : memref<4xf32>
    scf.reduce
  }
  return
}

// -----

// Scalars the host computes from an argument nothing writes (the random
// key's words, for dropout's streams) are read in the kernel: the load and
// what the kernel uses of it move into the launch. An argument the
// function writes is read on the host, where it stands.
// CHECK-LABEL: func.func @key_words(
// CHECK-SAME: %[[KEY:[^:]*]]: memref<2xi64>, %[[OUT:[^:]*]]: memref<4xi32>, %[[W:[^:]*]]: memref<2xi64>)
// CHECK: %[[HOST:.*]] = memref.load %[[W]]
// CHECK: memref.store %{{.*}}, %[[W]]
// CHECK: %[[U:.*]] = arith.trunci %[[HOST]] : i64 to i32
// CHECK: gpu.launch
// CHECK:   %[[K:.*]] = memref.load %[[KEY]][%{{.*}}] : memref<2xi64>
// CHECK:   %[[HI:.*]] = arith.shrui %[[K]]
// CHECK:   %[[T:.*]] = arith.trunci %[[HI]] : i64 to i32
// CHECK:   arith.addi %[[T]], %[[U]]
func.func @key_words(%key: memref<2xi64>, %out: memref<4xi32>, %w: memref<2xi64>) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c4 = arith.constant 4 : index
  %c32 = arith.constant 32 : i64
  %k = memref.load %key[%c0] : memref<2xi64>
  %hi = arith.shrui %k, %c32 : i64
  %t = arith.trunci %hi : i64 to i32
  %h = memref.load %w[%c0] : memref<2xi64>
  memref.store %c32, %w[%c1] : memref<2xi64>
  %u = arith.trunci %h : i64 to i32
  scf.parallel (%i) = (%c0) to (%c4) step (%c1) {
    %s = arith.addi %t, %u : i32
    memref.store %s, %out[%i] : memref<4xi32>
    scf.reduce
  }
  return
}
