// RUN: qopt-opt %s -split-input-file --qopt-linalg-to-blas="cuda-adamw=qopt_cuda_adamw" | FileCheck %s
// A train step's AdamW loop nests (OptimizerBuilder's, marked qopt.adamw)
// that share a step become one call of the library's multi-tensor AdamW at
// the last of them: the count, flags (1: decay, 2: clipping), the step's
// scalars, the body's constants, then a [count, 8] table on the stack
// (each parameter's seven buffers and its elements); the gradients' frees
// move after the call. Numerics: unittests/Runtime/CUDAAdamWTest.cpp,
// test/e2e/cuda-target.test.

// Three parameters (one of them dynamic), weight decay and clipping.
// CHECK-LABEL: func.func @three
// CHECK-NOT: linalg.generic
// The step's scalars in device memory, stored where the first nest was
// (qopt-serial-to-gpu then stores them in a kernel).
// CHECK: %[[S:.*]] = memref.alloc() {alignment = 64 : i64} : memref<4xf32>
// CHECK: memref.store %arg21, %[[S]][%c0]
// CHECK: memref.store %arg22, %[[S]][%c1]
// CHECK: memref.store %arg23, %[[S]][%c2]
// CHECK: memref.store %arg24, %[[S]][%c3]
// CHECK: %[[T:.*]] = memref.alloca() : memref<3x8xi64>
// CHECK-COUNT-24: memref.store
// CHECK: %[[SV:.*]] = memref.cast %[[S]] : memref<4xf32> to memref<?xf32, strided<[?], offset: ?>>
// CHECK: %[[TV:.*]] = memref.cast %[[T]] : memref<3x8xi64> to memref<?x?xi64, strided<[?, ?], offset: ?>>
// CHECK: call @qopt_cuda_adamw(%c3_i64, %c3_i64{{.*}}, %[[SV]], %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}, %[[TV]])
// CHECK-NEXT: memref.dealloc %[[S]]
// CHECK-DAG: memref.dealloc %arg1
// CHECK-DAG: memref.dealloc %arg8
// CHECK: return
func.func @three(%p0: memref<4x8xf32>, %g0: memref<4x8xf32>, %m0: memref<4x8xf32>, %v0: memref<4x8xf32>, %po0: memref<4x8xf32>, %mo0: memref<4x8xf32>, %vo0: memref<4x8xf32>,
    %p1: memref<16xf32>, %g1: memref<16xf32>, %m1: memref<16xf32>, %v1: memref<16xf32>, %po1: memref<16xf32>, %mo1: memref<16xf32>, %vo1: memref<16xf32>,
    %p2: memref<?x4xf32>, %g2: memref<?x4xf32>, %m2: memref<?x4xf32>, %v2: memref<?x4xf32>, %po2: memref<?x4xf32>, %mo2: memref<?x4xf32>, %vo2: memref<?x4xf32>,
    %step: f32, %bc2: f32, %decay: f32, %clip: f32) {
  %c1 = arith.constant 1.000000e-01 : f32
  %b2 = arith.constant 9.990000e-01 : f32
  %c2 = arith.constant 1.000000e-03 : f32
  %eps = arith.constant 9.99999993E-9 : f32
  linalg.generic {indexing_maps = [affine_map<(d0, d1) -> (d0, d1)>, affine_map<(d0, d1) -> (d0, d1)>, affine_map<(d0, d1) -> (d0, d1)>, affine_map<(d0, d1) -> (d0, d1)>, affine_map<(d0, d1) -> (d0, d1)>, affine_map<(d0, d1) -> (d0, d1)>, affine_map<(d0, d1) -> (d0, d1)>], iterator_types = ["parallel", "parallel"]}
      ins(%p0, %g0, %m0, %v0 : memref<4x8xf32>, memref<4x8xf32>, memref<4x8xf32>, memref<4x8xf32>) outs(%po0, %mo0, %vo0 : memref<4x8xf32>, memref<4x8xf32>, memref<4x8xf32>) attrs = {qopt.adamw} {
  ^bb0(%p: f32, %g: f32, %m: f32, %v: f32, %o0: f32, %o1: f32, %o2: f32):
    %gc = arith.mulf %g, %clip : f32
    %pd = arith.mulf %p, %decay : f32
    %d = arith.subf %gc, %m : f32
    %e = arith.mulf %d, %c1 : f32
    %mn = arith.addf %m, %e : f32
    %f = arith.mulf %v, %b2 : f32
    %gg = arith.mulf %gc, %gc : f32
    %h = arith.mulf %gg, %c2 : f32
    %vn = arith.addf %f, %h : f32
    %s = math.sqrt %vn : f32
    %q = arith.divf %s, %bc2 : f32
    %den = arith.addf %q, %eps : f32
    %r = arith.divf %mn, %den : f32
    %u = arith.mulf %step, %r : f32
    %pn = arith.subf %pd, %u : f32
    linalg.yield %pn, %mn, %vn : f32, f32, f32
  }
  memref.dealloc %g0 : memref<4x8xf32>
  linalg.generic {indexing_maps = [affine_map<(d0) -> (d0)>, affine_map<(d0) -> (d0)>, affine_map<(d0) -> (d0)>, affine_map<(d0) -> (d0)>, affine_map<(d0) -> (d0)>, affine_map<(d0) -> (d0)>, affine_map<(d0) -> (d0)>], iterator_types = ["parallel"]}
      ins(%p1, %g1, %m1, %v1 : memref<16xf32>, memref<16xf32>, memref<16xf32>, memref<16xf32>) outs(%po1, %mo1, %vo1 : memref<16xf32>, memref<16xf32>, memref<16xf32>) attrs = {qopt.adamw} {
  ^bb0(%p: f32, %g: f32, %m: f32, %v: f32, %o0: f32, %o1: f32, %o2: f32):
    %gc = arith.mulf %g, %clip : f32
    %pd = arith.mulf %p, %decay : f32
    %d = arith.subf %gc, %m : f32
    %e = arith.mulf %d, %c1 : f32
    %mn = arith.addf %m, %e : f32
    %f = arith.mulf %v, %b2 : f32
    %gg = arith.mulf %gc, %gc : f32
    %h = arith.mulf %gg, %c2 : f32
    %vn = arith.addf %f, %h : f32
    %s = math.sqrt %vn : f32
    %q = arith.divf %s, %bc2 : f32
    %den = arith.addf %q, %eps : f32
    %r = arith.divf %mn, %den : f32
    %u = arith.mulf %step, %r : f32
    %pn = arith.subf %pd, %u : f32
    linalg.yield %pn, %mn, %vn : f32, f32, f32
  }
  memref.dealloc %g1 : memref<16xf32>
  linalg.generic {indexing_maps = [affine_map<(d0, d1) -> (d0, d1)>, affine_map<(d0, d1) -> (d0, d1)>, affine_map<(d0, d1) -> (d0, d1)>, affine_map<(d0, d1) -> (d0, d1)>, affine_map<(d0, d1) -> (d0, d1)>, affine_map<(d0, d1) -> (d0, d1)>, affine_map<(d0, d1) -> (d0, d1)>], iterator_types = ["parallel", "parallel"]}
      ins(%p2, %g2, %m2, %v2 : memref<?x4xf32>, memref<?x4xf32>, memref<?x4xf32>, memref<?x4xf32>) outs(%po2, %mo2, %vo2 : memref<?x4xf32>, memref<?x4xf32>, memref<?x4xf32>) attrs = {qopt.adamw} {
  ^bb0(%p: f32, %g: f32, %m: f32, %v: f32, %o0: f32, %o1: f32, %o2: f32):
    %gc = arith.mulf %g, %clip : f32
    %pd = arith.mulf %p, %decay : f32
    %d = arith.subf %gc, %m : f32
    %e = arith.mulf %d, %c1 : f32
    %mn = arith.addf %m, %e : f32
    %f = arith.mulf %v, %b2 : f32
    %gg = arith.mulf %gc, %gc : f32
    %h = arith.mulf %gg, %c2 : f32
    %vn = arith.addf %f, %h : f32
    %s = math.sqrt %vn : f32
    %q = arith.divf %s, %bc2 : f32
    %den = arith.addf %q, %eps : f32
    %r = arith.divf %mn, %den : f32
    %u = arith.mulf %step, %r : f32
    %pn = arith.subf %pd, %u : f32
    linalg.yield %pn, %mn, %vn : f32, f32, f32
  }
  return
}
// -----

// The first parameter's gradient buffer, an argument (not an allocation of
// this block, which would be replaced: @reused_gradient below), is the
// second nest's output: the first cannot wait for the others, so two
// calls for the step. A nest of another step is a call of
// its own; one that is not exactly the formula (an extra op, fast-math
// flags, no mark) keeps its loop nest.
// CHECK-LABEL: func.func @runs
// CHECK: memref.store %arg42, %[[S1:.*]][%c0
// CHECK: call @qopt_cuda_adamw(%c1_i64, %c1_i64
// CHECK: memref.store %arg42, %[[S2:.*]][%c0
// CHECK: call @qopt_cuda_adamw(%c2_i64, %c1_i64
// CHECK: memref.store %arg43, %[[S3:.*]][%c0
// CHECK: call @qopt_cuda_adamw(%c1_i64{{.*}}, %c1_i64
// CHECK-COUNT-3: linalg.generic
// CHECK-NOT: call @qopt_cuda_adamw
// CHECK: return
func.func @runs(%p0: memref<8xf32>, %g0: memref<8xf32>, %m0: memref<8xf32>, %v0: memref<8xf32>, %po0: memref<8xf32>, %mo0: memref<8xf32>, %vo0: memref<8xf32>,
    %p1: memref<8xf32>, %g1: memref<8xf32>, %m1: memref<8xf32>, %v1: memref<8xf32>, %po1: memref<8xf32>, %mo1: memref<8xf32>, %vo1: memref<8xf32>,
    %p2: memref<8xf32>, %g2: memref<8xf32>, %m2: memref<8xf32>, %v2: memref<8xf32>, %po2: memref<8xf32>, %mo2: memref<8xf32>, %vo2: memref<8xf32>,
    %p3: memref<8xf32>, %g3: memref<8xf32>, %m3: memref<8xf32>, %v3: memref<8xf32>, %po3: memref<8xf32>, %mo3: memref<8xf32>, %vo3: memref<8xf32>,
    %p4: memref<8xf32>, %g4: memref<8xf32>, %m4: memref<8xf32>, %v4: memref<8xf32>, %po4: memref<8xf32>, %mo4: memref<8xf32>, %vo4: memref<8xf32>,
    %p5: memref<8xf32>, %g5: memref<8xf32>, %m5: memref<8xf32>, %v5: memref<8xf32>, %po5: memref<8xf32>, %mo5: memref<8xf32>, %vo5: memref<8xf32>,
    %step: f32, %step2: f32, %bc2: f32, %decay: f32) {
  %c1 = arith.constant 1.000000e-01 : f32
  %b2 = arith.constant 9.990000e-01 : f32
  %c2 = arith.constant 1.000000e-03 : f32
  %eps = arith.constant 9.99999993E-9 : f32
  linalg.generic {indexing_maps = [affine_map<(d0) -> (d0)>, affine_map<(d0) -> (d0)>, affine_map<(d0) -> (d0)>, affine_map<(d0) -> (d0)>, affine_map<(d0) -> (d0)>, affine_map<(d0) -> (d0)>, affine_map<(d0) -> (d0)>], iterator_types = ["parallel"]}
      ins(%p0, %g0, %m0, %v0 : memref<8xf32>, memref<8xf32>, memref<8xf32>, memref<8xf32>) outs(%po0, %mo0, %vo0 : memref<8xf32>, memref<8xf32>, memref<8xf32>) attrs = {qopt.adamw} {
  ^bb0(%p: f32, %g: f32, %m: f32, %v: f32, %o0: f32, %o1: f32, %o2: f32):
    %pd = arith.mulf %p, %decay : f32
    %d = arith.subf %g, %m : f32
    %e = arith.mulf %d, %c1 : f32
    %mn = arith.addf %m, %e : f32
    %f = arith.mulf %v, %b2 : f32
    %gg = arith.mulf %g, %g : f32
    %h = arith.mulf %gg, %c2 : f32
    %vn = arith.addf %f, %h : f32
    %s = math.sqrt %vn : f32
    %q = arith.divf %s, %bc2 : f32
    %den = arith.addf %q, %eps : f32
    %r = arith.divf %mn, %den : f32
    %u = arith.mulf %step, %r : f32
    %pn = arith.subf %pd, %u : f32
    linalg.yield %pn, %mn, %vn : f32, f32, f32
  }
  linalg.generic {indexing_maps = [affine_map<(d0) -> (d0)>, affine_map<(d0) -> (d0)>, affine_map<(d0) -> (d0)>, affine_map<(d0) -> (d0)>, affine_map<(d0) -> (d0)>, affine_map<(d0) -> (d0)>, affine_map<(d0) -> (d0)>], iterator_types = ["parallel"]}
      ins(%p1, %g1, %m1, %v1 : memref<8xf32>, memref<8xf32>, memref<8xf32>, memref<8xf32>) outs(%g0, %mo1, %vo1 : memref<8xf32>, memref<8xf32>, memref<8xf32>) attrs = {qopt.adamw} {
  ^bb0(%p: f32, %g: f32, %m: f32, %v: f32, %o0: f32, %o1: f32, %o2: f32):
    %pd = arith.mulf %p, %decay : f32
    %d = arith.subf %g, %m : f32
    %e = arith.mulf %d, %c1 : f32
    %mn = arith.addf %m, %e : f32
    %f = arith.mulf %v, %b2 : f32
    %gg = arith.mulf %g, %g : f32
    %h = arith.mulf %gg, %c2 : f32
    %vn = arith.addf %f, %h : f32
    %s = math.sqrt %vn : f32
    %q = arith.divf %s, %bc2 : f32
    %den = arith.addf %q, %eps : f32
    %r = arith.divf %mn, %den : f32
    %u = arith.mulf %step, %r : f32
    %pn = arith.subf %pd, %u : f32
    linalg.yield %pn, %mn, %vn : f32, f32, f32
  }
  linalg.generic {indexing_maps = [affine_map<(d0) -> (d0)>, affine_map<(d0) -> (d0)>, affine_map<(d0) -> (d0)>, affine_map<(d0) -> (d0)>, affine_map<(d0) -> (d0)>, affine_map<(d0) -> (d0)>, affine_map<(d0) -> (d0)>], iterator_types = ["parallel"]}
      ins(%p2, %g2, %m2, %v2 : memref<8xf32>, memref<8xf32>, memref<8xf32>, memref<8xf32>) outs(%po2, %mo2, %vo2 : memref<8xf32>, memref<8xf32>, memref<8xf32>) attrs = {qopt.adamw} {
  ^bb0(%p: f32, %g: f32, %m: f32, %v: f32, %o0: f32, %o1: f32, %o2: f32):
    %pd = arith.mulf %p, %decay : f32
    %d = arith.subf %g, %m : f32
    %e = arith.mulf %d, %c1 : f32
    %mn = arith.addf %m, %e : f32
    %f = arith.mulf %v, %b2 : f32
    %gg = arith.mulf %g, %g : f32
    %h = arith.mulf %gg, %c2 : f32
    %vn = arith.addf %f, %h : f32
    %s = math.sqrt %vn : f32
    %q = arith.divf %s, %bc2 : f32
    %den = arith.addf %q, %eps : f32
    %r = arith.divf %mn, %den : f32
    %u = arith.mulf %step, %r : f32
    %pn = arith.subf %pd, %u : f32
    linalg.yield %pn, %mn, %vn : f32, f32, f32
  }
  linalg.generic {indexing_maps = [affine_map<(d0) -> (d0)>, affine_map<(d0) -> (d0)>, affine_map<(d0) -> (d0)>, affine_map<(d0) -> (d0)>, affine_map<(d0) -> (d0)>, affine_map<(d0) -> (d0)>, affine_map<(d0) -> (d0)>], iterator_types = ["parallel"]}
      ins(%p3, %g3, %m3, %v3 : memref<8xf32>, memref<8xf32>, memref<8xf32>, memref<8xf32>) outs(%po3, %mo3, %vo3 : memref<8xf32>, memref<8xf32>, memref<8xf32>) attrs = {qopt.adamw} {
  ^bb0(%p: f32, %g: f32, %m: f32, %v: f32, %o0: f32, %o1: f32, %o2: f32):
    %pd = arith.mulf %p, %decay : f32
    %d = arith.subf %g, %m : f32
    %e = arith.mulf %d, %c1 : f32
    %mn = arith.addf %m, %e : f32
    %f = arith.mulf %v, %b2 : f32
    %gg = arith.mulf %g, %g : f32
    %h = arith.mulf %gg, %c2 : f32
    %vn = arith.addf %f, %h : f32
    %s = math.sqrt %vn : f32
    %q = arith.divf %s, %bc2 : f32
    %den = arith.addf %q, %eps : f32
    %r = arith.divf %mn, %den : f32
    %u = arith.mulf %step2, %r : f32
    %pn = arith.subf %pd, %u : f32
    linalg.yield %pn, %mn, %vn : f32, f32, f32
  }
  linalg.generic {indexing_maps = [affine_map<(d0) -> (d0)>, affine_map<(d0) -> (d0)>, affine_map<(d0) -> (d0)>, affine_map<(d0) -> (d0)>, affine_map<(d0) -> (d0)>, affine_map<(d0) -> (d0)>, affine_map<(d0) -> (d0)>], iterator_types = ["parallel"]}
      ins(%p4, %g4, %m4, %v4 : memref<8xf32>, memref<8xf32>, memref<8xf32>, memref<8xf32>) outs(%po4, %mo4, %vo4 : memref<8xf32>, memref<8xf32>, memref<8xf32>) attrs = {qopt.adamw} {
  ^bb0(%p: f32, %g: f32, %m: f32, %v: f32, %o0: f32, %o1: f32, %o2: f32):
    %pd = arith.mulf %p, %decay : f32
    %d = arith.subf %g, %m : f32
    %e = arith.mulf %d, %c1 : f32
    %mn = arith.addf %m, %e : f32
    %f = arith.mulf %v, %b2 : f32
    %gg = arith.mulf %g, %g : f32
    %h = arith.mulf %gg, %c2 : f32
    %vn = arith.addf %f, %h : f32
    %s = math.sqrt %vn : f32
    %q = arith.divf %s, %bc2 : f32
    %den = arith.addf %q, %eps : f32
    %r = arith.divf %mn, %den : f32
    %u = arith.mulf %step, %r : f32
    %pn = arith.subf %pd, %u : f32
    %pn2 = arith.negf %pn : f32
    linalg.yield %pn2, %mn, %vn : f32, f32, f32
  }
  linalg.generic {indexing_maps = [affine_map<(d0) -> (d0)>, affine_map<(d0) -> (d0)>, affine_map<(d0) -> (d0)>, affine_map<(d0) -> (d0)>, affine_map<(d0) -> (d0)>, affine_map<(d0) -> (d0)>, affine_map<(d0) -> (d0)>], iterator_types = ["parallel"]}
      ins(%p5, %g5, %m5, %v5 : memref<8xf32>, memref<8xf32>, memref<8xf32>, memref<8xf32>) outs(%po5, %mo5, %vo5 : memref<8xf32>, memref<8xf32>, memref<8xf32>) attrs = {qopt.adamw} {
  ^bb0(%p: f32, %g: f32, %m: f32, %v: f32, %o0: f32, %o1: f32, %o2: f32):
    %pd = arith.mulf %p, %decay : f32
    %d = arith.subf %g, %m : f32
    %e = arith.mulf %d, %c1 : f32
    %mn = arith.addf %m, %e fastmath<contract> : f32
    %f = arith.mulf %v, %b2 : f32
    %gg = arith.mulf %g, %g : f32
    %h = arith.mulf %gg, %c2 : f32
    %vn = arith.addf %f, %h : f32
    %s = math.sqrt %vn : f32
    %q = arith.divf %s, %bc2 : f32
    %den = arith.addf %q, %eps : f32
    %r = arith.divf %mn, %den : f32
    %u = arith.mulf %step, %r : f32
    %pn = arith.subf %pd, %u : f32
    linalg.yield %pn, %mn, %vn : f32, f32, f32
  }
  linalg.generic {indexing_maps = [affine_map<(d0) -> (d0)>, affine_map<(d0) -> (d0)>, affine_map<(d0) -> (d0)>, affine_map<(d0) -> (d0)>, affine_map<(d0) -> (d0)>, affine_map<(d0) -> (d0)>, affine_map<(d0) -> (d0)>], iterator_types = ["parallel"]}
      ins(%p5, %g0, %m0, %v0 : memref<8xf32>, memref<8xf32>, memref<8xf32>, memref<8xf32>) outs(%po5, %mo0, %vo0 : memref<8xf32>, memref<8xf32>, memref<8xf32>) {
  ^bb0(%p: f32, %g: f32, %m: f32, %v: f32, %o0: f32, %o1: f32, %o2: f32):
    %pd = arith.mulf %p, %decay : f32
    %d = arith.subf %g, %m : f32
    %e = arith.mulf %d, %c1 : f32
    %mn = arith.addf %m, %e : f32
    %f = arith.mulf %v, %b2 : f32
    %gg = arith.mulf %g, %g : f32
    %h = arith.mulf %gg, %c2 : f32
    %vn = arith.addf %f, %h : f32
    %s = math.sqrt %vn : f32
    %q = arith.divf %s, %bc2 : f32
    %den = arith.addf %q, %eps : f32
    %r = arith.divf %mn, %den : f32
    %u = arith.mulf %step, %r : f32
    %pn = arith.subf %pd, %u : f32
    linalg.yield %pn, %mn, %vn : f32, f32, f32
  }
  return
}

// -----

// A constant gradient (host memory, which the library's kernel cannot
// read) keeps the loop nest.
// CHECK-LABEL: func.func @constant_gradient
// CHECK-NOT: call @qopt_cuda_adamw
// CHECK: linalg.generic
memref.global "private" constant @grad : memref<8xf32> = dense<1.0>
func.func @constant_gradient(%p0: memref<8xf32>, %m0: memref<8xf32>, %v0: memref<8xf32>, %po0: memref<8xf32>, %mo0: memref<8xf32>, %vo0: memref<8xf32>,
    %step: f32, %bc2: f32, %decay: f32) {
  %g0 = memref.get_global @grad : memref<8xf32>
  %c1 = arith.constant 1.000000e-01 : f32
  %b2 = arith.constant 9.990000e-01 : f32
  %c2 = arith.constant 1.000000e-03 : f32
  %eps = arith.constant 9.99999993E-9 : f32
  linalg.generic {indexing_maps = [affine_map<(d0) -> (d0)>, affine_map<(d0) -> (d0)>, affine_map<(d0) -> (d0)>, affine_map<(d0) -> (d0)>, affine_map<(d0) -> (d0)>, affine_map<(d0) -> (d0)>, affine_map<(d0) -> (d0)>], iterator_types = ["parallel"]}
      ins(%p0, %g0, %m0, %v0 : memref<8xf32>, memref<8xf32>, memref<8xf32>, memref<8xf32>) outs(%po0, %mo0, %vo0 : memref<8xf32>, memref<8xf32>, memref<8xf32>) attrs = {qopt.adamw} {
  ^bb0(%p: f32, %g: f32, %m: f32, %v: f32, %o0: f32, %o1: f32, %o2: f32):
    %pd = arith.mulf %p, %decay : f32
    %d = arith.subf %g, %m : f32
    %e = arith.mulf %d, %c1 : f32
    %mn = arith.addf %m, %e : f32
    %f = arith.mulf %v, %b2 : f32
    %gg = arith.mulf %g, %g : f32
    %h = arith.mulf %gg, %c2 : f32
    %vn = arith.addf %f, %h : f32
    %s = math.sqrt %vn : f32
    %q = arith.divf %s, %bc2 : f32
    %den = arith.addf %q, %eps : f32
    %r = arith.divf %mn, %den : f32
    %u = arith.mulf %step, %r : f32
    %pn = arith.subf %pd, %u : f32
    linalg.yield %pn, %mn, %vn : f32, f32, f32
  }
  return
}

// -----

// Bufferization gave the second update's new value the first one's dead
// gradient buffer: the second gets a fresh buffer (which the later copy
// reads), the gradient is freed after the call, and one call takes both.
// CHECK-LABEL: func.func @reused_gradient
// CHECK: %[[G:.*]] = memref.alloc() : memref<8xf32>
// CHECK: linalg.fill {{.*}} outs(%[[G]] : memref<8xf32>)
// CHECK: %[[FRESH:.*]] = memref.alloc() : memref<8xf32>
// CHECK-NOT: linalg.generic
// CHECK: call @qopt_cuda_adamw(%c2_i64,
// CHECK-NEXT: memref.dealloc %{{.*}} : memref<4xf32>
// CHECK-NEXT: memref.dealloc %[[G]]
// CHECK-NEXT: memref.copy %[[FRESH]], %arg12
// CHECK-NEXT: memref.dealloc %[[FRESH]]
func.func @reused_gradient(%p0: memref<8xf32>, %m0: memref<8xf32>, %v0: memref<8xf32>, %po0: memref<8xf32>, %mo0: memref<8xf32>, %vo0: memref<8xf32>,
    %p1: memref<8xf32>, %g1: memref<8xf32>, %m1: memref<8xf32>, %v1: memref<8xf32>, %mo1: memref<8xf32>, %vo1: memref<8xf32>,
    %out: memref<8xf32>, %step: f32, %bc2: f32, %decay: f32) {
  %c1 = arith.constant 1.000000e-01 : f32
  %b2 = arith.constant 9.990000e-01 : f32
  %c2 = arith.constant 1.000000e-03 : f32
  %eps = arith.constant 9.99999993E-9 : f32
  %g0 = memref.alloc() : memref<8xf32>
  linalg.fill ins(%c1 : f32) outs(%g0 : memref<8xf32>)
  linalg.generic {indexing_maps = [affine_map<(d0) -> (d0)>, affine_map<(d0) -> (d0)>, affine_map<(d0) -> (d0)>, affine_map<(d0) -> (d0)>, affine_map<(d0) -> (d0)>, affine_map<(d0) -> (d0)>, affine_map<(d0) -> (d0)>], iterator_types = ["parallel"]}
      ins(%p0, %g0, %m0, %v0 : memref<8xf32>, memref<8xf32>, memref<8xf32>, memref<8xf32>) outs(%po0, %mo0, %vo0 : memref<8xf32>, memref<8xf32>, memref<8xf32>) attrs = {qopt.adamw} {
  ^bb0(%p: f32, %g: f32, %m: f32, %v: f32, %o0: f32, %o1: f32, %o2: f32):
    %pd = arith.mulf %p, %decay : f32
    %d = arith.subf %g, %m : f32
    %e = arith.mulf %d, %c1 : f32
    %mn = arith.addf %m, %e : f32
    %f = arith.mulf %v, %b2 : f32
    %gg = arith.mulf %g, %g : f32
    %h = arith.mulf %gg, %c2 : f32
    %vn = arith.addf %f, %h : f32
    %s = math.sqrt %vn : f32
    %q = arith.divf %s, %bc2 : f32
    %den = arith.addf %q, %eps : f32
    %r = arith.divf %mn, %den : f32
    %u = arith.mulf %step, %r : f32
    %pn = arith.subf %pd, %u : f32
    linalg.yield %pn, %mn, %vn : f32, f32, f32
  }
  linalg.generic {indexing_maps = [affine_map<(d0) -> (d0)>, affine_map<(d0) -> (d0)>, affine_map<(d0) -> (d0)>, affine_map<(d0) -> (d0)>, affine_map<(d0) -> (d0)>, affine_map<(d0) -> (d0)>, affine_map<(d0) -> (d0)>], iterator_types = ["parallel"]}
      ins(%p1, %g1, %m1, %v1 : memref<8xf32>, memref<8xf32>, memref<8xf32>, memref<8xf32>) outs(%g0, %mo1, %vo1 : memref<8xf32>, memref<8xf32>, memref<8xf32>) attrs = {qopt.adamw} {
  ^bb0(%p: f32, %g: f32, %m: f32, %v: f32, %o0: f32, %o1: f32, %o2: f32):
    %pd = arith.mulf %p, %decay : f32
    %d = arith.subf %g, %m : f32
    %e = arith.mulf %d, %c1 : f32
    %mn = arith.addf %m, %e : f32
    %f = arith.mulf %v, %b2 : f32
    %gg = arith.mulf %g, %g : f32
    %h = arith.mulf %gg, %c2 : f32
    %vn = arith.addf %f, %h : f32
    %s = math.sqrt %vn : f32
    %q = arith.divf %s, %bc2 : f32
    %den = arith.addf %q, %eps : f32
    %r = arith.divf %mn, %den : f32
    %u = arith.mulf %step, %r : f32
    %pn = arith.subf %pd, %u : f32
    linalg.yield %pn, %mn, %vn : f32, f32, f32
  }
  memref.copy %g0, %out : memref<8xf32> to memref<8xf32>
  memref.dealloc %g0 : memref<8xf32>
  return
}

// -----

// Two parameters read one gradient allocation and the second writes its new
// value over it in place: no fresh buffer (the second reads it), so the
// first cannot wait for the second: two calls.
// CHECK-LABEL: func.func @shared_gradient
// CHECK: %[[G:.*]] = memref.alloc() : memref<8xf32>
// CHECK-NOT: memref.alloc() : memref<8xf32>
// CHECK: call @qopt_cuda_adamw(%c1_i64,
// CHECK: call @qopt_cuda_adamw(%c1_i64
// CHECK: memref.copy %[[G]], %arg12
func.func @shared_gradient(%p0: memref<8xf32>, %m0: memref<8xf32>, %v0: memref<8xf32>, %po0: memref<8xf32>, %mo0: memref<8xf32>, %vo0: memref<8xf32>,
    %p1: memref<8xf32>, %g1: memref<8xf32>, %m1: memref<8xf32>, %v1: memref<8xf32>, %mo1: memref<8xf32>, %vo1: memref<8xf32>,
    %out: memref<8xf32>, %step: f32, %bc2: f32, %decay: f32) {
  %c1 = arith.constant 1.000000e-01 : f32
  %b2 = arith.constant 9.990000e-01 : f32
  %c2 = arith.constant 1.000000e-03 : f32
  %eps = arith.constant 9.99999993E-9 : f32
  %g0 = memref.alloc() : memref<8xf32>
  linalg.fill ins(%c1 : f32) outs(%g0 : memref<8xf32>)
  linalg.generic {indexing_maps = [affine_map<(d0) -> (d0)>, affine_map<(d0) -> (d0)>, affine_map<(d0) -> (d0)>, affine_map<(d0) -> (d0)>, affine_map<(d0) -> (d0)>, affine_map<(d0) -> (d0)>, affine_map<(d0) -> (d0)>], iterator_types = ["parallel"]}
      ins(%p0, %g0, %m0, %v0 : memref<8xf32>, memref<8xf32>, memref<8xf32>, memref<8xf32>) outs(%po0, %mo0, %vo0 : memref<8xf32>, memref<8xf32>, memref<8xf32>) attrs = {qopt.adamw} {
  ^bb0(%p: f32, %g: f32, %m: f32, %v: f32, %o0: f32, %o1: f32, %o2: f32):
    %pd = arith.mulf %p, %decay : f32
    %d = arith.subf %g, %m : f32
    %e = arith.mulf %d, %c1 : f32
    %mn = arith.addf %m, %e : f32
    %f = arith.mulf %v, %b2 : f32
    %gg = arith.mulf %g, %g : f32
    %h = arith.mulf %gg, %c2 : f32
    %vn = arith.addf %f, %h : f32
    %s = math.sqrt %vn : f32
    %q = arith.divf %s, %bc2 : f32
    %den = arith.addf %q, %eps : f32
    %r = arith.divf %mn, %den : f32
    %u = arith.mulf %step, %r : f32
    %pn = arith.subf %pd, %u : f32
    linalg.yield %pn, %mn, %vn : f32, f32, f32
  }
  linalg.generic {indexing_maps = [affine_map<(d0) -> (d0)>, affine_map<(d0) -> (d0)>, affine_map<(d0) -> (d0)>, affine_map<(d0) -> (d0)>, affine_map<(d0) -> (d0)>, affine_map<(d0) -> (d0)>, affine_map<(d0) -> (d0)>], iterator_types = ["parallel"]}
      ins(%p1, %g0, %m1, %v1 : memref<8xf32>, memref<8xf32>, memref<8xf32>, memref<8xf32>) outs(%g0, %mo1, %vo1 : memref<8xf32>, memref<8xf32>, memref<8xf32>) attrs = {qopt.adamw} {
  ^bb0(%p: f32, %g: f32, %m: f32, %v: f32, %o0: f32, %o1: f32, %o2: f32):
    %pd = arith.mulf %p, %decay : f32
    %d = arith.subf %g, %m : f32
    %e = arith.mulf %d, %c1 : f32
    %mn = arith.addf %m, %e : f32
    %f = arith.mulf %v, %b2 : f32
    %gg = arith.mulf %g, %g : f32
    %h = arith.mulf %gg, %c2 : f32
    %vn = arith.addf %f, %h : f32
    %s = math.sqrt %vn : f32
    %q = arith.divf %s, %bc2 : f32
    %den = arith.addf %q, %eps : f32
    %r = arith.divf %mn, %den : f32
    %u = arith.mulf %step, %r : f32
    %pn = arith.subf %pd, %u : f32
    linalg.yield %pn, %mn, %vn : f32, f32, f32
  }
  memref.copy %g0, %out : memref<8xf32> to memref<8xf32>
  memref.dealloc %g0 : memref<8xf32>
  return
}
