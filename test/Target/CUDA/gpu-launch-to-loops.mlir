// RUN: qopt-opt %s --pass-pipeline='builtin.module(func.func(qopt-gpu-launch-to-loops))' --split-input-file --verify-diagnostics | FileCheck %s

// Loops over the grid (z, y, x) and then the block (z, y, x); the block and
// thread indices are the induction variables, the sizes the launch's.
// CHECK-LABEL: func.func @launch
// CHECK-SAME: %[[OUT:.*]]: memref<?xindex>, %[[GRID:.*]]: index
// CHECK: %[[C0:.*]] = arith.constant 0 : index
// CHECK: %[[C1:.*]] = arith.constant 1 : index
// CHECK: scf.for %{{.*}} = %[[C0]] to %[[C1_:.*]] step %[[C1]] {
// CHECK: scf.for %{{.*}} = %[[C0]] to %{{.*}} step %[[C1]] {
// CHECK: scf.for %[[BX:.*]] = %[[C0]] to %[[GRID]] step %[[C1]] {
// CHECK: scf.for %{{.*}} = %[[C0]] to %{{.*}} step %[[C1]] {
// CHECK: scf.for %{{.*}} = %[[C0]] to %{{.*}} step %[[C1]] {
// CHECK: scf.for %[[TX:.*]] = %[[C0]] to %[[C32:.*]] step %[[C1]] {
// CHECK: %[[M:.*]] = arith.muli %[[BX]], %[[C32]]
// CHECK: %[[I:.*]] = arith.addi %[[M]], %[[TX]]
// CHECK: memref.store %[[I]], %[[OUT]][%[[I]]]
// CHECK-NOT: gpu.
func.func @launch(%out: memref<?xindex>, %grid: index) {
  %c1 = arith.constant 1 : index
  %c32 = arith.constant 32 : index
  gpu.launch blocks(%bx, %by, %bz) in (%gx = %grid, %gy = %c1, %gz = %c1)
             threads(%tx, %ty, %tz) in (%sx = %c32, %sy = %c1, %sz = %c1) {
    %m = arith.muli %bx, %sx : index
    %i = arith.addi %m, %tx : index
    memref.store %i, %out[%i] : memref<?xindex>
    gpu.terminator
  }
  return
}

// -----

func.func @barrier(%out: memref<32xf32>, %v: f32) {
  %c1 = arith.constant 1 : index
  %c32 = arith.constant 32 : index
  // expected-error @below {{qopt-gpu-launch-to-loops: a kernel whose threads communicate cannot run as loops}}
  gpu.launch blocks(%bx, %by, %bz) in (%gx = %c1, %gy = %c1, %gz = %c1)
             threads(%tx, %ty, %tz) in (%sx = %c32, %sy = %c1, %sz = %c1) {
    memref.store %v, %out[%tx] : memref<32xf32>
    gpu.barrier
    gpu.terminator
  }
  return
}
