// RUN: qopt-opt %s --pass-pipeline='builtin.module(func.func(qopt-group-parallel-loops))' | FileCheck %s
// RUN: qopt-opt %s --pass-pipeline='builtin.module(func.func(qopt-group-parallel-loops,scf-parallel-loop-fusion))' | FileCheck %s --check-prefix=FUSED

// Parameter updates in turn, shapes alternating (4 and 8), each writing a
// buffer allocated just before it: the second 4-loop moves up behind the
// first with its allocation, then the two fuse; so do the 8-loops.
// CHECK-LABEL: func.func @updates
// CHECK: %[[A:.*]] = memref.alloc() : memref<4xf32>
// CHECK: %[[C:.*]] = memref.alloc() : memref<4xf32>
// CHECK: scf.parallel {{.*}} to (%c4)
// CHECK: memref.store {{.*}}, %[[A]]
// CHECK: scf.parallel {{.*}} to (%c4)
// CHECK: memref.store {{.*}}, %[[C]]
// CHECK: scf.parallel {{.*}} to (%c8)
// CHECK: scf.parallel {{.*}} to (%c8)
// FUSED-LABEL: func.func @updates
// FUSED-COUNT-2: scf.parallel
// FUSED-NOT: scf.parallel
// FUSED-LABEL: func.func @reads_between
func.func @updates(%p0: memref<4xf32>, %p1: memref<8xf32>, %p2: memref<4xf32>,
                   %p3: memref<8xf32>) -> (memref<4xf32>, memref<8xf32>, memref<4xf32>, memref<8xf32>) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c4 = arith.constant 4 : index
  %c8 = arith.constant 8 : index
  %two = arith.constant 2.0 : f32
  %a = memref.alloc() : memref<4xf32>
  scf.parallel (%i) = (%c0) to (%c4) step (%c1) {
    %v = memref.load %p0[%i] : memref<4xf32>
    %w = arith.mulf %v, %two : f32
    memref.store %w, %a[%i] : memref<4xf32>
    scf.reduce
  }
  %b = memref.alloc() : memref<8xf32>
  scf.parallel (%i) = (%c0) to (%c8) step (%c1) {
    %v = memref.load %p1[%i] : memref<8xf32>
    %w = arith.mulf %v, %two : f32
    memref.store %w, %b[%i] : memref<8xf32>
    scf.reduce
  }
  %c = memref.alloc() : memref<4xf32>
  scf.parallel (%i) = (%c0) to (%c4) step (%c1) {
    %v = memref.load %p2[%i] : memref<4xf32>
    %w = arith.mulf %v, %two : f32
    memref.store %w, %c[%i] : memref<4xf32>
    scf.reduce
  }
  %d = memref.alloc() : memref<8xf32>
  scf.parallel (%i) = (%c0) to (%c8) step (%c1) {
    %v = memref.load %p3[%i] : memref<8xf32>
    %w = arith.mulf %v, %two : f32
    memref.store %w, %d[%i] : memref<8xf32>
    scf.reduce
  }
  return %a, %b, %c, %d : memref<4xf32>, memref<8xf32>, memref<4xf32>, memref<8xf32>
}

// Not moved: the second 4-loop reads what the 8-loop it would pass writes
// (@reads_between), writes an argument the 8-loop reads, which may be the
// same memory as its own (@writes_argument), or uses a size computed in
// between (@size_between); nor across a call (@call_between).
// CHECK-LABEL: func.func @reads_between
// CHECK: to (%c4)
// CHECK: to (%c8)
// CHECK: to (%c4)
// CHECK-LABEL: func.func @writes_argument
// CHECK: to (%c4)
// CHECK: to (%c8)
// CHECK: to (%c4)
// CHECK-LABEL: func.func @size_between
// CHECK: to (%c4)
// CHECK: to (%c8)
// CHECK: to (%c4)
// CHECK-LABEL: func.func @call_between
// CHECK: to (%c4)
// CHECK: call @touch
// CHECK: to (%c4)
func.func @reads_between(%p0: memref<4xf32>, %p1: memref<8xf32>) -> memref<4xf32> {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c4 = arith.constant 4 : index
  %c8 = arith.constant 8 : index
  %a = memref.alloc() : memref<4xf32>
  scf.parallel (%i) = (%c0) to (%c4) step (%c1) {
    %v = memref.load %p0[%i] : memref<4xf32>
    memref.store %v, %a[%i] : memref<4xf32>
    scf.reduce
  }
  %b = memref.alloc() : memref<8xf32>
  scf.parallel (%i) = (%c0) to (%c8) step (%c1) {
    %v = memref.load %p1[%i] : memref<8xf32>
    memref.store %v, %b[%i] : memref<8xf32>
    scf.reduce
  }
  scf.parallel (%i) = (%c0) to (%c4) step (%c1) {
    %v = memref.load %b[%i] : memref<8xf32>
    memref.store %v, %a[%i] : memref<4xf32>
    scf.reduce
  }
  memref.dealloc %b : memref<8xf32>
  return %a : memref<4xf32>
}
func.func @writes_argument(%p0: memref<4xf32>, %p1: memref<8xf32>, %q: memref<4xf32>) -> memref<8xf32> {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c4 = arith.constant 4 : index
  %c8 = arith.constant 8 : index
  %a = memref.alloc() : memref<4xf32>
  scf.parallel (%i) = (%c0) to (%c4) step (%c1) {
    %v = memref.load %p0[%i] : memref<4xf32>
    memref.store %v, %a[%i] : memref<4xf32>
    scf.reduce
  }
  %b = memref.alloc() : memref<8xf32>
  scf.parallel (%i) = (%c0) to (%c8) step (%c1) {
    %v = memref.load %p1[%i] : memref<8xf32>
    memref.store %v, %b[%i] : memref<8xf32>
    scf.reduce
  }
  scf.parallel (%i) = (%c0) to (%c4) step (%c1) {
    %v = memref.load %a[%i] : memref<4xf32>
    memref.store %v, %q[%i] : memref<4xf32>
    scf.reduce
  }
  memref.dealloc %a : memref<4xf32>
  return %b : memref<8xf32>
}
func.func @size_between(%p0: memref<4xf32>, %p1: memref<8xf32>, %n: index) -> memref<?xf32> {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c4 = arith.constant 4 : index
  %c8 = arith.constant 8 : index
  %a = memref.alloc() : memref<4xf32>
  scf.parallel (%i) = (%c0) to (%c4) step (%c1) {
    %v = memref.load %p0[%i] : memref<4xf32>
    memref.store %v, %a[%i] : memref<4xf32>
    scf.reduce
  }
  %b = memref.alloc() : memref<8xf32>
  scf.parallel (%i) = (%c0) to (%c8) step (%c1) {
    %v = memref.load %p1[%i] : memref<8xf32>
    memref.store %v, %b[%i] : memref<8xf32>
    scf.reduce
  }
  %m = arith.addi %n, %c4 : index
  %c = memref.alloc(%m) : memref<?xf32>
  scf.parallel (%i) = (%c0) to (%c4) step (%c1) {
    %v = memref.load %p0[%i] : memref<4xf32>
    memref.store %v, %c[%i] : memref<?xf32>
    scf.reduce
  }
  memref.dealloc %a : memref<4xf32>
  memref.dealloc %b : memref<8xf32>
  return %c : memref<?xf32>
}
func.func private @touch(memref<4xf32>)
func.func @call_between(%p0: memref<4xf32>) -> (memref<4xf32>, memref<4xf32>) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c4 = arith.constant 4 : index
  %a = memref.alloc() : memref<4xf32>
  scf.parallel (%i) = (%c0) to (%c4) step (%c1) {
    %v = memref.load %p0[%i] : memref<4xf32>
    memref.store %v, %a[%i] : memref<4xf32>
    scf.reduce
  }
  call @touch(%a) : (memref<4xf32>) -> ()
  %b = memref.alloc() : memref<4xf32>
  scf.parallel (%i) = (%c0) to (%c4) step (%c1) {
    %v = memref.load %a[%i] : memref<4xf32>
    memref.store %v, %b[%i] : memref<4xf32>
    scf.reduce
  }
  return %a, %b : memref<4xf32>, memref<4xf32>
}
