// RUN: qopt-opt %s --split-input-file --qopt-device-checks | FileCheck %s
// RUN: qopt-opt %s --split-input-file --pass-pipeline='builtin.module(qopt-device-checks,func.func(qopt-serial-to-gpu))' | FileCheck %s --check-prefix=KERNEL

// An index check (min / max of the ids, then two comparisons) becomes a
// store of its code into the status word, recomputed where it stood; the
// host loop that computed it is gone, and qopt-serial-to-gpu runs the copy
// as a one-thread kernel. A shape check stays an assertion.

// CHECK: module attributes {qopt.device_checks = ["node 'g' (Gather, opset 13): an index into axis 0 is out of range (valid: -8 to 7)"]}
// CHECK-LABEL: func.func @gather(
// CHECK-SAME: %[[IDS:.*]]: memref<?xi64>, %{{.*}}: memref<8x4xf32>, %[[STATUS:.*]]: memref<1xi32> {qopt.check_status})
// CHECK: %[[ZERO:.*]] = arith.constant 0 : i32
// CHECK: memref.store %[[ZERO]], %[[STATUS]][%{{.*}}] : memref<1xi32>
// CHECK-NOT: scf.for
// CHECK: %[[LO:.*]] = memref.alloca() : memref<i64>
// CHECK: %[[HI:.*]] = memref.alloca() : memref<i64>
// CHECK: scf.for
// CHECK:   memref.load %[[IDS]]
// CHECK:   memref.store %{{.*}}, %[[LO]][]
// CHECK:   memref.store %{{.*}}, %[[HI]][]
// CHECK: %[[OK:.*]] = arith.andi
// CHECK: %[[BAD:.*]] = arith.xori %[[OK]], %true
// CHECK: scf.if %[[BAD]] {
// CHECK:   %[[CUR:.*]] = memref.load %[[STATUS]]
// CHECK:   %[[FIRST:.*]] = arith.cmpi eq, %[[CUR]]
// CHECK:   scf.if %[[FIRST]] {
// CHECK:     %[[CODE:.*]] = arith.constant 1 : i32
// CHECK:     memref.store %[[CODE]], %[[STATUS]]
// CHECK-NOT: scf.for
// CHECK-NOT: cf.assert {{.*}}Gather
// CHECK: cf.assert %{{.*}}, "node 'g' (Gather, opset 13): the shape check"
// CHECK: return

// KERNEL-LABEL: func.func @gather(
// KERNEL: scf.parallel
// KERNEL:   memref.alloca() : memref<i64>
// KERNEL:   scf.for
// KERNEL:   scf.if
// KERNEL: cf.assert
func.func @gather(%ids: memref<?xi64>, %table: memref<8x4xf32>) -> memref<?x4xf32> {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c4 = arith.constant 4 : index
  %c8 = arith.constant 8 : index
  %cm8 = arith.constant -8 : index
  %max = arith.constant 9223372036854775807 : i64
  %min = arith.constant -9223372036854775808 : i64
  %lo = memref.alloca() : memref<i64>
  %hi = memref.alloca() : memref<i64>
  memref.store %max, %lo[] : memref<i64>
  memref.store %min, %hi[] : memref<i64>
  %n = memref.dim %ids, %c0 : memref<?xi64>
  scf.for %i = %c0 to %n step %c1 {
    %v = memref.load %ids[%i] : memref<?xi64>
    %a = memref.load %lo[] : memref<i64>
    %b = memref.load %hi[] : memref<i64>
    %x = arith.minsi %v, %a : i64
    %y = arith.maxsi %v, %b : i64
    memref.store %x, %lo[] : memref<i64>
    memref.store %y, %hi[] : memref<i64>
  }
  %l = memref.load %lo[] : memref<i64>
  %h = memref.load %hi[] : memref<i64>
  %li = arith.index_cast %l : i64 to index
  %hj = arith.index_cast %h : i64 to index
  %ok1 = arith.cmpi sge, %li, %cm8 : index
  %ok2 = arith.cmpi slt, %hj, %c8 : index
  %ok = arith.andi %ok1, %ok2 : i1
  cf.assert %ok, "node 'g' (Gather, opset 13): an index into axis 0 is out of range (valid: -8 to 7)" {qopt.data_check}
  %shape = arith.cmpi sgt, %n, %c0 : index
  cf.assert %shape, "node 'g' (Gather, opset 13): the shape check"
  %out = memref.alloc(%n) : memref<?x4xf32>
  scf.parallel (%i, %j) = (%c0, %c0) to (%n, %c4) step (%c1, %c1) {
    %v = memref.load %ids[%i] : memref<?xi64>
    %r = arith.index_cast %v : i64 to index
    %w = memref.load %table[%r, %j] : memref<8x4xf32>
    memref.store %w, %out[%i, %j] : memref<?x4xf32>
    scf.reduce
  }
  return %out : memref<?x4xf32>
}

// -----

// Two checks sharing the stack buffer their minimum starts from, the second
// reducing into it in place (as bufferization leaves a CSE'd fill): each
// copy replays the stores before its own check only. Every public function
// takes the status word; a private one is left alone.

// CHECK: module attributes {qopt.device_checks = ["first", "second"]}
// CHECK-LABEL: func.func private @helper(%{{.*}}: memref<?xi64>)
// CHECK-NEXT: return
// CHECK-LABEL: func.func @shared(
// CHECK-SAME: %[[A:[^:]*]]: memref<?xi64>, %[[B:[^:]*]]: memref<?xi64>, %[[S:.*]]: memref<1xi32> {qopt.check_status})
// CHECK: memref.store %{{.*}}, %[[S]]
// CHECK: %[[INIT1:.*]] = memref.alloca() : memref<i64>
// CHECK: memref.store %{{.*}}, %[[INIT1]][]
// CHECK: %[[ACC1:.*]] = memref.alloca() : memref<i64>
// CHECK: %[[V1:.*]] = memref.load %[[INIT1]][]
// CHECK: memref.store %[[V1]], %[[ACC1]][]
// CHECK: scf.for
// CHECK:   memref.load %[[A]]
// CHECK-NOT: memref.load %[[B]]
// CHECK: arith.constant 1 : i32
// CHECK: %[[INIT2:.*]] = memref.alloca() : memref<i64>
// CHECK: memref.store %{{.*}}, %[[INIT2]][]
// CHECK: scf.for
// CHECK-NOT: memref.load %[[A]]
// CHECK:   memref.load %[[B]]
// CHECK:   memref.store %{{.*}}, %[[INIT2]][]
// CHECK: arith.constant 2 : i32
// CHECK-NOT: scf.for
// CHECK: return
// CHECK-LABEL: func.func @other(
// CHECK-SAME: %{{.*}}: memref<1xi32> {qopt.check_status})
func.func private @helper(%a: memref<?xi64>) {
  return
}
func.func @shared(%a: memref<?xi64>, %b: memref<?xi64>) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c9 = arith.constant 9 : i64
  %max = arith.constant 9223372036854775807 : i64
  %init = memref.alloca() : memref<i64>
  memref.store %max, %init[] : memref<i64>
  %acc = memref.alloca() : memref<i64>
  %v0 = memref.load %init[] : memref<i64>
  memref.store %v0, %acc[] : memref<i64>
  %n = memref.dim %a, %c0 : memref<?xi64>
  scf.for %i = %c0 to %n step %c1 {
    %v = memref.load %a[%i] : memref<?xi64>
    %m = memref.load %acc[] : memref<i64>
    %x = arith.minsi %v, %m : i64
    memref.store %x, %acc[] : memref<i64>
  }
  %r1 = memref.load %acc[] : memref<i64>
  %ok1 = arith.cmpi slt, %r1, %c9 : i64
  cf.assert %ok1, "first" {qopt.data_check}
  %k = memref.dim %b, %c0 : memref<?xi64>
  scf.for %i = %c0 to %k step %c1 {
    %v = memref.load %b[%i] : memref<?xi64>
    %m = memref.load %init[] : memref<i64>
    %x = arith.minsi %v, %m : i64
    memref.store %x, %init[] : memref<i64>
  }
  %r2 = memref.load %init[] : memref<i64>
  %ok2 = arith.cmpi slt, %r2, %c9 : i64
  cf.assert %ok2, "second" {qopt.data_check}
  call @helper(%a) : (memref<?xi64>) -> ()
  return
}
func.func @other(%a: memref<?xi64>, %b: memref<?xi64>) {
  return
}

// -----

// A condition computed through a call stays a host assertion; with nothing
// moved, no status word is added.

// CHECK-NOT: qopt.device_checks
// CHECK-LABEL: func.func @opaque(
// CHECK-SAME: %{{.*}}: memref<?xi64>)
// CHECK: call @count
// CHECK: cf.assert %{{.*}}, "through a call"
func.func private @count(memref<?xi64>) -> i64
func.func @opaque(%a: memref<?xi64>) {
  %c9 = arith.constant 9 : i64
  %n = call @count(%a) : (memref<?xi64>) -> i64
  %ok = arith.cmpi slt, %n, %c9 : i64
  cf.assert %ok, "through a call" {qopt.data_check}
  return
}

// -----

// After bufferization the accumulators are heap buffers (deallocated after
// their last load): the copy keeps them on the stack, and the originals go
// with their loop. A small buffer the function returns (a step counter's
// new value) keeps its store.

// CHECK-LABEL: func.func @heap(
// CHECK-SAME: %[[IDS:[^:]*]]: memref<?xi64>, %[[S:.*]]: memref<1xi32> {qopt.check_status}) -> memref<i64>
// CHECK: memref.store %{{.*}}, %[[S]]
// CHECK: %[[STEP:.*]] = memref.alloc() : memref<i64>
// CHECK: memref.store %{{.*}}, %[[STEP]][]
// CHECK-NOT: scf.for
// CHECK: %[[ACC:.*]] = memref.alloca() {alignment = 64 : i64} : memref<i64>
// CHECK: scf.for
// CHECK:   memref.load %[[IDS]]
// CHECK:   memref.store %{{.*}}, %[[ACC]][]
// CHECK: scf.if
// CHECK-NOT: scf.for
// CHECK-NOT: memref.dealloc
// CHECK: return %[[STEP]]
func.func @heap(%ids: memref<?xi64>) -> memref<i64> {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c9 = arith.constant 9 : i64
  %one = arith.constant 1 : i64
  %step = memref.alloc() : memref<i64>
  memref.store %one, %step[] : memref<i64>
  %acc = memref.alloc() {alignment = 64 : i64} : memref<i64>
  memref.store %c9, %acc[] : memref<i64>
  %n = memref.dim %ids, %c0 : memref<?xi64>
  scf.for %i = %c0 to %n step %c1 {
    %v = memref.load %ids[%i] : memref<?xi64>
    %m = memref.load %acc[] : memref<i64>
    %x = arith.maxsi %v, %m : i64
    memref.store %x, %acc[] : memref<i64>
  }
  %r = memref.load %acc[] : memref<i64>
  memref.dealloc %acc : memref<i64>
  %ok = arith.cmpi sle, %r, %c9 : i64
  cf.assert %ok, "too large" {qopt.data_check}
  return %step : memref<i64>
}

// -----

// The copy would read the ids where the check stands: a store into them
// between the reduction and the check keeps the check on the host.

// CHECK: module attributes {qopt.device_checks = ["after"]}
// CHECK-LABEL: func.func @written(
// CHECK-SAME: %{{.*}}: memref<?xi64>, %{{.*}}: memref<1xi32> {qopt.check_status})
// CHECK: scf.for
// CHECK: memref.store %{{.*}}, %arg0
// CHECK: cf.assert %{{.*}}, "written between" {qopt.data_check}
// CHECK-NOT: cf.assert
// CHECK: arith.constant 1 : i32
// CHECK: return
func.func @written(%ids: memref<?xi64>) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c9 = arith.constant 9 : i64
  %acc = memref.alloca() : memref<i64>
  memref.store %c9, %acc[] : memref<i64>
  %n = memref.dim %ids, %c0 : memref<?xi64>
  scf.for %i = %c0 to %n step %c1 {
    %v = memref.load %ids[%i] : memref<?xi64>
    %m = memref.load %acc[] : memref<i64>
    %x = arith.maxsi %v, %m : i64
    memref.store %x, %acc[] : memref<i64>
  }
  memref.store %c9, %ids[%c0] : memref<?xi64>
  %r = memref.load %acc[] : memref<i64>
  %ok = arith.cmpi sle, %r, %c9 : i64
  cf.assert %ok, "written between" {qopt.data_check}
  // (A check the copy can make, after the store.)
  %v0 = memref.load %ids[%c1] : memref<?xi64>
  %ok2 = arith.cmpi sle, %v0, %c9 : i64
  cf.assert %ok2, "after" {qopt.data_check}
  return
}

// -----

// A public function the module calls: its callers would have to pass the
// status word; every check stays on the host.

// CHECK-NOT: qopt.device_checks
// CHECK-LABEL: func.func @callee(
// CHECK-SAME: %{{.*}}: memref<?xi64>)
// CHECK: cf.assert %{{.*}}, "in a callee" {qopt.data_check}
func.func @callee(%ids: memref<?xi64>) {
  %c0 = arith.constant 0 : index
  %c9 = arith.constant 9 : i64
  %v = memref.load %ids[%c0] : memref<?xi64>
  %ok = arith.cmpi sle, %v, %c9 : i64
  cf.assert %ok, "in a callee" {qopt.data_check}
  return
}
func.func @calls(%ids: memref<?xi64>) {
  call @callee(%ids) : (memref<?xi64>) -> ()
  return
}
