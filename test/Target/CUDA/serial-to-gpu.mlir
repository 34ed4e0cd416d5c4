// RUN: qopt-opt %s --split-input-file --pass-pipeline='builtin.module(func.func(qopt-serial-to-gpu))' | FileCheck %s
// RUN: qopt-opt %s --split-input-file --pass-pipeline='builtin.module(func.func(qopt-serial-to-gpu,qopt-parallel-to-gpu))' | FileCheck %s --check-prefix=LAUNCH

// A masked mean over tokens, as a train step's loss lowers: the sum and the
// count reduced into 0-d buffers by sequential loops, then divided. The
// whole run (the allocations before it, the token buffer's deallocation
// after it) is one one-iteration parallel loop, whose kernel a later
// parallel loop (the loss's gradient) reads behind: the host never reads
// the tokens, the sum or the count.
// CHECK-LABEL: func.func @masked_mean
// CHECK: %[[COUNT:.*]] = memref.alloc() : memref<f32>
// CHECK-NEXT: %[[SUM:.*]] = memref.alloc() : memref<f32>
// CHECK-NEXT: %[[LOSS:.*]] = memref.alloc() : memref<f32>
// CHECK: scf.parallel (%{{.*}}) = (%[[Z:.*]]) to (%[[O:.*]]) step (%[[O]]) {
// CHECK: memref.store %{{.*}}, %[[COUNT]][] : memref<f32>
// CHECK: scf.for
// CHECK: scf.for
// CHECK: math.log
// CHECK: scf.for
// CHECK: scf.for
// CHECK: arith.divf
// CHECK: memref.store %{{.*}}, %[[LOSS]][] : memref<f32>
// CHECK: arith.divf
// CHECK: memref.store %{{.*}}, %[[COUNT]][] : memref<f32>
// CHECK-NEXT: scf.reduce
// CHECK-NEXT: }
// CHECK-NEXT: memref.dealloc %arg1
// CHECK-NEXT: memref.dealloc %[[SUM]]
// CHECK-NEXT: scf.parallel
// CHECK: return %[[LOSS]]
// One thread's kernel: a warp, one block.
// LAUNCH-LABEL: func.func @masked_mean
// LAUNCH: %[[W:.*]] = arith.constant 32 : index
// LAUNCH: gpu.launch blocks({{.*}}) in ({{.*}}) threads(%[[TX:.*]], %{{.*}}, %{{.*}}) in (%{{.*}} = %[[W]],
// LAUNCH: math.log
// LAUNCH: gpu.launch
// LAUNCH-NOT: scf.parallel
func.func @masked_mean(%labels: memref<?x?xi64>, %nll: memref<?x?xf32>, %grad: memref<?x?xf32>) -> memref<f32> {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %zero = arith.constant 0.0 : f32
  %one = arith.constant 1.0 : f32
  %ignore = arith.constant -100 : i64
  %b = memref.dim %labels, %c0 : memref<?x?xi64>
  %s = memref.dim %labels, %c1 : memref<?x?xi64>
  %count = memref.alloc() : memref<f32>
  memref.store %zero, %count[] : memref<f32>
  %sum = memref.alloc() : memref<f32>
  %init = memref.load %count[] : memref<f32>
  memref.store %init, %sum[] : memref<f32>
  scf.for %i = %c0 to %b step %c1 {
    scf.for %j = %c0 to %s step %c1 {
      %l = memref.load %labels[%i, %j] : memref<?x?xi64>
      %x = memref.load %nll[%i, %j] : memref<?x?xf32>
      %acc = memref.load %sum[] : memref<f32>
      %keep = arith.cmpi ne, %l, %ignore : i64
      %log = math.log %x : f32
      %v = arith.select %keep, %log, %zero : f32
      %n = arith.addf %acc, %v : f32
      memref.store %n, %sum[] : memref<f32>
    }
  }
  memref.dealloc %nll : memref<?x?xf32>
  scf.for %i = %c0 to %b step %c1 {
    scf.for %j = %c0 to %s step %c1 {
      %l = memref.load %labels[%i, %j] : memref<?x?xi64>
      %acc = memref.load %count[] : memref<f32>
      %keep = arith.cmpi ne, %l, %ignore : i64
      %v = arith.select %keep, %one, %zero : f32
      %n = arith.addf %acc, %v : f32
      memref.store %n, %count[] : memref<f32>
    }
  }
  %loss = memref.alloc() : memref<f32>
  %t = memref.load %sum[] : memref<f32>
  %c = memref.load %count[] : memref<f32>
  %mean = arith.divf %t, %c : f32
  memref.store %mean, %loss[] : memref<f32>
  memref.dealloc %sum : memref<f32>
  %c2 = memref.load %count[] : memref<f32>
  %inv = arith.divf %one, %c2 : f32
  memref.store %inv, %count[] : memref<f32>
  scf.parallel (%i, %j) = (%c0, %c0) to (%b, %s) step (%c1, %c1) {
    %w = memref.load %count[] : memref<f32>
    memref.store %w, %grad[%i, %j] : memref<?x?xf32>
    scf.reduce
  }
  memref.dealloc %count : memref<f32>
  return %loss : memref<f32>
}

// -----

// An optimizer's scalars: the step counter read, incremented and stored,
// and the bias corrections computed from it into the buffer a library call
// reads. One kernel; the call stays.
// CHECK-LABEL: func.func @step_scalars
// CHECK: %[[NEXT:.*]] = memref.alloc() : memref<i64>
// CHECK-NEXT: %[[STEP:.*]] = memref.alloc() : memref<4xf32>
// CHECK: scf.parallel
// CHECK: memref.load %arg0[]
// CHECK: memref.store %{{.*}}, %[[NEXT]][]
// CHECK: math.powf
// CHECK: math.sqrt
// CHECK: memref.store %{{.*}}, %[[STEP]][%c3]
// CHECK-NEXT: scf.reduce
// CHECK: call @qopt_cuda_adamw_like(%[[STEP]])
func.func private @qopt_cuda_adamw_like(memref<4xf32>)
func.func @step_scalars(%counter: memref<i64>) -> memref<i64> {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c2 = arith.constant 2 : index
  %c3 = arith.constant 3 : index
  %one = arith.constant 1 : i64
  %b1 = arith.constant 0.9 : f64
  %b2 = arith.constant 0.999 : f64
  %fone = arith.constant 1.0 : f64
  %lr = arith.constant 1.0e-3 : f64
  %unit = arith.constant 1.0 : f32
  %s = memref.load %counter[] : memref<i64>
  %n = arith.addi %s, %one : i64
  %next = memref.alloc() : memref<i64>
  memref.store %n, %next[] : memref<i64>
  %t = arith.sitofp %n : i64 to f64
  %p1 = math.powf %b1, %t : f64
  %bc1 = arith.subf %fone, %p1 : f64
  %p2 = math.powf %b2, %t : f64
  %bc2 = arith.subf %fone, %p2 : f64
  %size = arith.divf %lr, %bc1 : f64
  %size32 = arith.truncf %size : f64 to f32
  %root = math.sqrt %bc2 : f64
  %root32 = arith.truncf %root : f64 to f32
  %step = memref.alloc() : memref<4xf32>
  memref.store %size32, %step[%c0] : memref<4xf32>
  memref.store %root32, %step[%c1] : memref<4xf32>
  memref.store %unit, %step[%c2] : memref<4xf32>
  memref.store %unit, %step[%c3] : memref<4xf32>
  call @qopt_cuda_adamw_like(%step) : (memref<4xf32>) -> ()
  memref.dealloc %step : memref<4xf32>
  return %next : memref<i64>
}

// -----

// A run-time check's minimum and maximum: the host reads them for its
// assertion, so the loop that computes them into stack buffers stays on
// the host (qopt-gpu-host-sync waits before it).
// CHECK-LABEL: func.func @range_check
// CHECK-NOT: scf.parallel
// CHECK: cf.assert
func.func @range_check(%ids: memref<?xi64>) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %max = arith.constant 9223372036854775807 : i64
  %min = arith.constant -9223372036854775808 : i64
  %limit = arith.constant 50 : i64
  %lo = memref.alloca() : memref<i64>
  %hi = memref.alloca() : memref<i64>
  memref.store %max, %lo[] : memref<i64>
  memref.store %min, %hi[] : memref<i64>
  %n = memref.dim %ids, %c0 : memref<?xi64>
  scf.for %i = %c0 to %n step %c1 {
    %x = memref.load %ids[%i] : memref<?xi64>
    %a = memref.load %lo[] : memref<i64>
    %b = memref.load %hi[] : memref<i64>
    %a2 = arith.minsi %x, %a : i64
    %b2 = arith.maxsi %x, %b : i64
    memref.store %a2, %lo[] : memref<i64>
    memref.store %b2, %hi[] : memref<i64>
  }
  %h = memref.load %hi[] : memref<i64>
  %ok = arith.cmpi slt, %h, %limit : i64
  cf.assert %ok, "an id is out of range"
  return
}

// -----

// Buffers only host code uses stay on the host: a reshape's shape, flags
// passed to a host function (the deallocation helper) through a cast, and
// a loop that only fills a stack buffer of its own with constants.
// CHECK-LABEL: func.func @host_buffers
// CHECK-NOT: scf.parallel
// CHECK: return
func.func private @host_helper(memref<?xi1>)
func.func @host_buffers(%x: memref<?xf32>) -> memref<?x?xf32> {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c2 = arith.constant 2 : index
  %true = arith.constant true
  %shape = memref.alloc() : memref<2xindex>
  memref.store %c1, %shape[%c0] : memref<2xindex>
  %n = memref.dim %x, %c0 : memref<?xf32>
  memref.store %n, %shape[%c1] : memref<2xindex>
  %r = memref.reshape %x(%shape) : (memref<?xf32>, memref<2xindex>) -> memref<?x?xf32>
  memref.dealloc %shape : memref<2xindex>
  %flags = memref.alloc() : memref<2xi1>
  memref.store %true, %flags[%c0] : memref<2xi1>
  memref.store %true, %flags[%c1] : memref<2xi1>
  %cast = memref.cast %flags : memref<2xi1> to memref<?xi1>
  call @host_helper(%cast) : (memref<?xi1>) -> ()
  memref.dealloc %flags : memref<2xi1>
  %own = memref.alloca() : memref<4xindex>
  scf.for %i = %c0 to %c2 step %c1 {
    memref.store %i, %own[%i] : memref<4xindex>
  }
  return %r : memref<?x?xf32>
}

// -----

// A value the host uses cuts the run where it is computed: the norm's
// square root goes to a call as a scalar, so the sum of squares before it
// stays on the host; the store of its result after the call is a run of
// its own.
// CHECK-LABEL: func.func @scalar_to_host
// CHECK-NOT: scf.parallel
// CHECK: call @take
// CHECK: scf.parallel
// CHECK-NEXT: memref.store
// CHECK-NEXT: scf.reduce
func.func private @take(f32)
func.func @scalar_to_host(%g: memref<8xf32>, %out: memref<f32>) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c8 = arith.constant 8 : index
  %zero = arith.constant 0.0 : f32
  %acc = memref.alloc() : memref<f32>
  memref.store %zero, %acc[] : memref<f32>
  scf.for %i = %c0 to %c8 step %c1 {
    %x = memref.load %g[%i] : memref<8xf32>
    %a = memref.load %acc[] : memref<f32>
    %xx = arith.mulf %x, %x : f32
    %s = arith.addf %a, %xx : f32
    memref.store %s, %acc[] : memref<f32>
  }
  %t = memref.load %acc[] : memref<f32>
  %norm = math.sqrt %t : f32
  call @take(%norm) : (f32) -> ()
  memref.store %norm, %out[] : memref<f32>
  memref.dealloc %acc : memref<f32>
  return
}

// -----

// Nested host blocks are processed too (a run-time broadcast's branch);
// a private function is not (its callers' memory is unknown: the
// deallocation helper's arrays are on the host's stack).
// CHECK-LABEL: func.func private @helper
// CHECK-NOT: scf.parallel
// CHECK-LABEL: func.func @nested
// CHECK: scf.if
// CHECK: scf.parallel
// CHECK-NEXT: memref.store
// CHECK-NEXT: scf.reduce
// CHECK: call @helper
func.func private @helper(%flags: memref<?xi1>) {
  %c0 = arith.constant 0 : index
  %true = arith.constant true
  memref.store %true, %flags[%c0] : memref<?xi1>
  return
}
func.func @nested(%x: memref<4xf32>, %c: i1) {
  %c0 = arith.constant 0 : index
  %one = arith.constant 1.0 : f32
  scf.if %c {
    memref.store %one, %x[%c0] : memref<4xf32>
    %flags = memref.alloca() : memref<1xi1>
    %cast = memref.cast %flags : memref<1xi1> to memref<?xi1>
    func.call @helper(%cast) : (memref<?xi1>) -> ()
  }
  return
}

// -----

// A stack buffer of the run's own moves into the kernel only when it is
// small (a kernel's stack is): 64 elements do, 65 do not (only the store
// of what the host read from it into device memory runs on the GPU).
// CHECK-LABEL: func.func @stack_sizes
// CHECK: scf.parallel
// CHECK-NEXT: memref.alloca() : memref<64xf32>
// CHECK: scf.reduce
// CHECK: %[[L:.*]] = memref.alloca() : memref<65xf32>
// CHECK-NEXT: memref.store %{{.*}}, %[[L]]
// CHECK-NEXT: memref.load %[[L]]
// CHECK: scf.parallel
// CHECK-NEXT: memref.store %{{.*}}, %arg0[]
func.func @stack_sizes(%x: memref<f32>) {
  %c0 = arith.constant 0 : index
  %one = arith.constant 1.0 : f32
  %small = memref.alloca() : memref<64xf32>
  memref.store %one, %small[%c0] : memref<64xf32>
  %a = memref.load %small[%c0] : memref<64xf32>
  memref.store %a, %x[] : memref<f32>
  func.call @barrier() : () -> ()
  %large = memref.alloca() : memref<65xf32>
  memref.store %one, %large[%c0] : memref<65xf32>
  %b = memref.load %large[%c0] : memref<65xf32>
  memref.store %b, %x[] : memref<f32>
  return
}
func.func private @barrier()

// -----

// A buffer only runs load and store (a zero two reductions start from, the
// second of which accumulates into it) passes between their kernels in
// device memory: both runs move, on either side of a library call.
// CHECK-LABEL: func.func @shared_zero
// CHECK: %[[Z:.*]] = memref.alloc() : memref<f32>
// CHECK: scf.parallel
// CHECK: memref.store %{{.*}}, %[[Z]][]
// CHECK: scf.reduce
// CHECK: call @qopt_cuda_sgemm
// CHECK: scf.parallel
// CHECK: scf.for
// CHECK: memref.load %[[Z]][]
// CHECK: math.sqrt
// CHECK: memref.store %{{.*}}, %arg1[]
// CHECK: scf.reduce
// CHECK: return
func.func private @qopt_cuda_sgemm(index)
func.func @shared_zero(%g: memref<8xf32>, %norm: memref<f32>, %p: index) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c8 = arith.constant 8 : index
  %zero = arith.constant 0.0 : f32
  %z = memref.alloc() : memref<f32>
  memref.store %zero, %z[] : memref<f32>
  call @qopt_cuda_sgemm(%p) : (index) -> ()
  scf.for %i = %c0 to %c8 step %c1 {
    %x = memref.load %g[%i] : memref<8xf32>
    %a = memref.load %z[] : memref<f32>
    %xx = arith.mulf %x, %x : f32
    %s = arith.addf %a, %xx : f32
    memref.store %s, %z[] : memref<f32>
  }
  %t = memref.load %z[] : memref<f32>
  %r = math.sqrt %t : f32
  memref.store %r, %norm[] : memref<f32>
  memref.dealloc %z : memref<f32>
  return
}
