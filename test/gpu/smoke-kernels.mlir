// Two kernels written directly in the gpu dialect: the first check that MLIR 22's
// NVPTX path (convert-gpu-to-nvvm, libdevice, gpu-module-to-binary) and the CUDA
// toolkit's ptxas accept what qopt will generate, before the CUDA back end exists.
// scripts/gpu-artifacts.sh builds them into PTX and a cubin that
// test/gpu/driver_smoke.c loads through the CUDA driver API on a GPU machine.
//
// RUN: qopt-opt %s --pass-pipeline="builtin.module(nvvm-attach-target{chip=sm_90 features=+ptx80 O=3}, gpu.module(convert-scf-to-cf, convert-gpu-to-nvvm, canonicalize, cse, reconcile-unrealized-casts), gpu-module-to-binary{format=isa})" -o %t.mlir
// RUN: FileCheck %s < %t.mlir
// With the CUDA toolkit (lit sets CUDA_ROOT), libdevice is linked in and ptxas
// assembles the PTX.
// RUN: %if ptxas %{ %python %qopt_src_root/scripts/extract-gpu-object.py assembly %t.ptx < %t.mlir %}
// RUN: %if ptxas %{ FileCheck %s --check-prefix=PTX < %t.ptx %}
// RUN: %if ptxas %{ %ptxas -arch=sm_90 -O3 -v %t.ptx -o %t.cubin 2>&1 | FileCheck %s --check-prefix=PTXAS %}
// CHECK: gpu.binary @kernels
// CHECK-SAME: .target sm_90
// CHECK-SAME: .visible .entry swiglu
// CHECK-SAME: .visible .entry rmsnorm
// CHECK-SAME: shfl.sync.bfly.b32
// PTX: .entry swiglu
// PTX-NOT: __nv_expf
// PTX: ex2.approx
// PTX: .entry rmsnorm
// PTX-NOT: __nv_rsqrtf
// PTX: rsqrt.approx
// Neither kernel may spill (the hot kernels of the CUDA target must not).
// PTXAS-DAG: Compiling entry function 'rmsnorm' for 'sm_90'
// PTXAS-DAG: Compiling entry function 'swiglu' for 'sm_90'
// PTXAS-NOT: {{[1-9][0-9]*}} bytes spill

module attributes {gpu.container_module} {
  gpu.module @kernels {
    // o[i] = silu(x[i]) * y[i], one thread per element.
    gpu.func @swiglu(%x: memref<?xf32>, %y: memref<?xf32>, %o: memref<?xf32>,
                     %n: index) kernel {
      %bid = gpu.block_id x
      %bdim = gpu.block_dim x
      %tid = gpu.thread_id x
      %base = arith.muli %bid, %bdim : index
      %i = arith.addi %base, %tid : index
      %inside = arith.cmpi ult, %i, %n : index
      scf.if %inside {
        %a = memref.load %x[%i] : memref<?xf32>
        %b = memref.load %y[%i] : memref<?xf32>
        %one = arith.constant 1.0 : f32
        %neg = arith.negf %a : f32
        %e = math.exp %neg : f32
        %den = arith.addf %one, %e : f32
        %silu = arith.divf %a, %den : f32
        %r = arith.mulf %silu, %b : f32
        memref.store %r, %o[%i] : memref<?xf32>
      }
      gpu.return
    }

    // One warp (32 threads) per row: o[r, :] = x[r, :] * rsqrt(mean(x[r, :]^2) + eps) * w.
    gpu.func @rmsnorm(%x: memref<?x?xf32>, %w: memref<?xf32>, %o: memref<?x?xf32>,
                      %eps: f32) kernel {
      %row = gpu.block_id x
      %lane = gpu.thread_id x
      %c1 = arith.constant 1 : index
      %c32 = arith.constant 32 : index
      %zero = arith.constant 0.0 : f32
      %cols = memref.dim %x, %c1 : memref<?x?xf32>
      %part = scf.for %j = %lane to %cols step %c32 iter_args(%acc = %zero) -> (f32) {
        %v = memref.load %x[%row, %j] : memref<?x?xf32>
        %sq = arith.mulf %v, %v : f32
        %next = arith.addf %acc, %sq : f32
        scf.yield %next : f32
      }
      %w32 = arith.constant 32 : i32
      %o16 = arith.constant 16 : i32
      %o8 = arith.constant 8 : i32
      %o4 = arith.constant 4 : i32
      %o2 = arith.constant 2 : i32
      %o1 = arith.constant 1 : i32
      %s16, %v16 = gpu.shuffle xor %part, %o16, %w32 : f32
      %a16 = arith.addf %part, %s16 : f32
      %s8, %v8 = gpu.shuffle xor %a16, %o8, %w32 : f32
      %a8 = arith.addf %a16, %s8 : f32
      %s4, %v4 = gpu.shuffle xor %a8, %o4, %w32 : f32
      %a4 = arith.addf %a8, %s4 : f32
      %s2, %v2 = gpu.shuffle xor %a4, %o2, %w32 : f32
      %a2 = arith.addf %a4, %s2 : f32
      %s1, %v1 = gpu.shuffle xor %a2, %o1, %w32 : f32
      %total = arith.addf %a2, %s1 : f32
      %colsi = arith.index_cast %cols : index to i64
      %colsf = arith.uitofp %colsi : i64 to f32
      %mean = arith.divf %total, %colsf : f32
      %shifted = arith.addf %mean, %eps : f32
      %scale = math.rsqrt %shifted : f32
      scf.for %j = %lane to %cols step %c32 {
        %v = memref.load %x[%row, %j] : memref<?x?xf32>
        %g = memref.load %w[%j] : memref<?xf32>
        %n = arith.mulf %v, %scale : f32
        %r = arith.mulf %n, %g : f32
        memref.store %r, %o[%row, %j] : memref<?x?xf32>
      }
      gpu.return
    }
  }
}
