// RUN: qopt-opt %s --split-input-file --pass-pipeline='builtin.module(func.func(qopt-small-loops-to-host))' | FileCheck %s
// RUN: qopt-opt %s --split-input-file --pass-pipeline='builtin.module(func.func(qopt-small-loops-to-host,qopt-serial-to-gpu))' | FileCheck %s --check-prefix=SERIAL

// A Concat of shape values, as an export's Reshape computes its sizes: one
// loop of one iteration per part, into views of a buffer the host then
// reads. The loops run on the host (the second reads what the first
// wrote; a chain of such buffers is the host's too), and
// qopt-serial-to-gpu leaves them there.
// CHECK-LABEL: func.func @shape_concat
// CHECK-NOT: scf.parallel
// CHECK: scf.for
// CHECK: memref.store
// CHECK: scf.for
// CHECK: scf.for
// CHECK: memref.reshape
// SERIAL-LABEL: func.func @shape_concat
// SERIAL-NOT: scf.parallel
// SERIAL: memref.reshape
memref.global "private" constant @two : memref<1xi64> = dense<2>
func.func @shape_concat(%x: memref<?x8xf32>) -> memref<?x?xf32> {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c2 = arith.constant 2 : index
  %g = memref.get_global @two : memref<1xi64>
  %n = memref.dim %x, %c0 : memref<?x8xf32>
  %ni = arith.index_cast %n : index to i64
  %a = memref.alloc() : memref<1xi64>
  memref.store %ni, %a[%c0] : memref<1xi64>
  %buf = memref.alloc() : memref<2xi64>
  %s0 = memref.subview %buf[0] [1] [1] : memref<2xi64> to memref<1xi64, strided<[1]>>
  scf.parallel (%i) = (%c0) to (%c1) step (%c1) {
    %v = memref.load %a[%i] : memref<1xi64>
    memref.store %v, %s0[%i] : memref<1xi64, strided<[1]>>
    scf.reduce
  }
  %s1 = memref.subview %buf[1] [1] [1] : memref<2xi64> to memref<1xi64, strided<[1], offset: 1>>
  scf.parallel (%i) = (%c0) to (%c1) step (%c1) {
    %v = memref.load %g[%i] : memref<1xi64>
    memref.store %v, %s1[%i] : memref<1xi64, strided<[1], offset: 1>>
    scf.reduce
  }
  // A second stage reading the first's buffer: the host's too.
  %twice = memref.alloc() : memref<2xi64>
  scf.parallel (%i) = (%c0) to (%c2) step (%c1) {
    %v = memref.load %buf[%i] : memref<2xi64>
    %w = arith.addi %v, %v : i64
    memref.store %w, %twice[%i] : memref<2xi64>
    scf.reduce
  }
  %r0 = memref.load %twice[%c0] : memref<2xi64>
  %r1 = memref.load %twice[%c1] : memref<2xi64>
  %i0 = arith.index_cast %r0 : i64 to index
  %i1 = arith.index_cast %r1 : i64 to index
  %shape = memref.alloc() : memref<2xindex>
  memref.store %i0, %shape[%c0] : memref<2xindex>
  memref.store %i1, %shape[%c1] : memref<2xindex>
  %flat = memref.collapse_shape %x [[0, 1]] : memref<?x8xf32> into memref<?xf32>
  %r = memref.reshape %flat(%shape) : (memref<?xf32>, memref<2xindex>) -> memref<?x?xf32>
  memref.dealloc %a : memref<1xi64>
  memref.dealloc %buf : memref<2xi64>
  memref.dealloc %twice : memref<2xi64>
  memref.dealloc %shape : memref<2xindex>
  return %r : memref<?x?xf32>
}

// -----

// Loops stay kernels when a kernel reads what they write (here another
// parallel loop, too large for the host), when they have more than 64
// iterations, or sizes unknown at compile time.
// CHECK-LABEL: func.func @kernels
// CHECK: scf.parallel (%{{.*}}) = (%c0) to (%c4)
// CHECK: scf.parallel (%{{.*}}) = (%c0) to (%c100)
// CHECK: scf.parallel (%{{.*}}) = (%c0) to (%c65)
// CHECK: scf.parallel (%{{.*}}) = (%c0) to (%arg1)
// CHECK-NOT: scf.for
func.func @kernels(%x: memref<100xf32>, %n: index) -> f32 {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c4 = arith.constant 4 : index
  %c65 = arith.constant 65 : index
  %c100 = arith.constant 100 : index
  %one = arith.constant 1.0 : f32
  %t = memref.alloc() : memref<4xf32>
  scf.parallel (%i) = (%c0) to (%c4) step (%c1) {
    memref.store %one, %t[%i] : memref<4xf32>
    scf.reduce
  }
  scf.parallel (%i) = (%c0) to (%c100) step (%c1) {
    %j = arith.remui %i, %c4 : index
    %v = memref.load %t[%j] : memref<4xf32>
    memref.store %v, %x[%i] : memref<100xf32>
    scf.reduce
  }
  %big = memref.alloc() : memref<65xf32>
  scf.parallel (%i) = (%c0) to (%c65) step (%c1) {
    memref.store %one, %big[%i] : memref<65xf32>
    scf.reduce
  }
  %dyn = memref.alloc() : memref<4xf32>
  scf.parallel (%i) = (%c0) to (%n) step (%c1) {
    memref.store %one, %dyn[%c0] : memref<4xf32>
    scf.reduce
  }
  %a = memref.load %big[%c0] : memref<65xf32>
  %b = memref.load %dyn[%c0] : memref<4xf32>
  %s = arith.addf %a, %b : f32
  memref.dealloc %t : memref<4xf32>
  memref.dealloc %big : memref<65xf32>
  memref.dealloc %dyn : memref<4xf32>
  return %s : f32
}

// -----

// A chain: the first loop's buffer is read only by the second, which
// writes an argument (device memory): both stay kernels. A loop over 8 x 8
// iterations runs on the host, 5 x 13 do not; neither does one with a
// stack buffer of its own (a sequential loop would keep one per
// iteration).
// CHECK-LABEL: func.func @chain
// CHECK: scf.parallel (%{{.*}}) = (%c0) to (%c2)
// CHECK: scf.parallel (%{{.*}}) = (%c0) to (%c2)
// CHECK: scf.for %{{.*}} = %c0 to %c8
// CHECK-NEXT: scf.for %{{.*}} = %c0 to %c8
// CHECK: scf.parallel (%{{.*}}, %{{.*}}) = (%c0, %c0) to (%c5, %c13)
// CHECK: scf.parallel (%{{.*}}) = (%c0) to (%c2)
// CHECK-NEXT: memref.alloca
func.func @chain(%out: memref<2xi64>) -> i64 {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c2 = arith.constant 2 : index
  %c5 = arith.constant 5 : index
  %c8 = arith.constant 8 : index
  %c13 = arith.constant 13 : index
  %seven = arith.constant 7 : i64
  %a = memref.alloc() : memref<2xi64>
  scf.parallel (%i) = (%c0) to (%c2) step (%c1) {
    memref.store %seven, %a[%i] : memref<2xi64>
    scf.reduce
  }
  scf.parallel (%i) = (%c0) to (%c2) step (%c1) {
    %v = memref.load %a[%i] : memref<2xi64>
    memref.store %v, %out[%i] : memref<2xi64>
    scf.reduce
  }
  %square = memref.alloc() : memref<8x8xi64>
  scf.parallel (%i, %j) = (%c0, %c0) to (%c8, %c8) step (%c1, %c1) {
    memref.store %seven, %square[%i, %j] : memref<8x8xi64>
    scf.reduce
  }
  %wide = memref.alloc() : memref<5x13xi64>
  scf.parallel (%i, %j) = (%c0, %c0) to (%c5, %c13) step (%c1, %c1) {
    memref.store %seven, %wide[%i, %j] : memref<5x13xi64>
    scf.reduce
  }
  %b = memref.alloc() : memref<2xi64>
  scf.parallel (%i) = (%c0) to (%c2) step (%c1) {
    %t = memref.alloca() : memref<1xi64>
    memref.store %seven, %t[%c0] : memref<1xi64>
    %v = memref.load %t[%c0] : memref<1xi64>
    memref.store %v, %b[%i] : memref<2xi64>
    scf.reduce
  }
  %x = memref.load %square[%c1, %c1] : memref<8x8xi64>
  %y = memref.load %wide[%c1, %c1] : memref<5x13xi64>
  %z = memref.load %b[%c1] : memref<2xi64>
  %s = arith.addi %x, %y : i64
  %r = arith.addi %s, %z : i64
  memref.dealloc %a : memref<2xi64>
  memref.dealloc %square : memref<8x8xi64>
  memref.dealloc %wide : memref<5x13xi64>
  memref.dealloc %b : memref<2xi64>
  return %r : i64
}
