// RUN: qopt-opt %s --split-input-file --qopt-gpu-host-sync | FileCheck %s

// bufferization-lower-deallocations' helper reads and writes only the
// arrays it is given (base addresses, ownership flags), never the buffers
// they name: where those arrays are host-only (small allocations whose only
// users are stores, loads and casts to the helper, moved to the stack), the
// helper's call, its body and the reads of its results need no wait after
// a launch; the return still waits.
// CHECK-LABEL: func.func @host_arrays
// CHECK: gpu.launch_func
// CHECK-NOT: qopt_cuda_host_sync
// CHECK: call @dealloc_helper
// CHECK-NOT: qopt_cuda_host_sync
// CHECK: memref.load %[[OUT:.*]][%{{.*}}] : memref<2xi1>
// CHECK: call @qopt_cuda_host_sync() : () -> ()
// CHECK-NEXT: return
// CHECK-LABEL: func.func private @dealloc_helper
// CHECK-NOT: qopt_cuda_host_sync
// CHECK: return
module attributes {gpu.container_module} {
  gpu.module @k {
    gpu.func @k() kernel {
      gpu.return
    }
  }
  func.func @host_arrays(%arg0: memref<4xf32>, %arg1: memref<4xf32>, %c: i1) -> i1 {
    %c0 = arith.constant 0 : index
    %c1 = arith.constant 1 : index
    gpu.launch_func @k::@k blocks in (%c1, %c1, %c1) threads in (%c1, %c1, %c1)
    %ptrs = memref.alloc() : memref<2xindex>
    %conds = memref.alloc() : memref<2xi1>
    %out = memref.alloc() : memref<2xi1>
    %p0 = memref.extract_aligned_pointer_as_index %arg0 : memref<4xf32> -> index
    %p1 = memref.extract_aligned_pointer_as_index %arg1 : memref<4xf32> -> index
    memref.store %p0, %ptrs[%c0] : memref<2xindex>
    memref.store %p1, %ptrs[%c1] : memref<2xindex>
    memref.store %c, %conds[%c0] : memref<2xi1>
    memref.store %c, %conds[%c1] : memref<2xi1>
    %a = memref.cast %ptrs : memref<2xindex> to memref<?xindex>
    %b = memref.cast %conds : memref<2xi1> to memref<?xi1>
    %o = memref.cast %out : memref<2xi1> to memref<?xi1>
    call @dealloc_helper(%a, %b, %o) : (memref<?xindex>, memref<?xi1>, memref<?xi1>) -> ()
    %r = memref.load %out[%c0] : memref<2xi1>
    memref.dealloc %ptrs : memref<2xindex>
    memref.dealloc %conds : memref<2xi1>
    memref.dealloc %out : memref<2xi1>
    return %r : i1
  }
  func.func private @dealloc_helper(%arg0: memref<?xindex>, %arg1: memref<?xi1>, %arg2: memref<?xi1>) {
    %c0 = arith.constant 0 : index
    %c1 = arith.constant 1 : index
    %dim = memref.dim %arg0, %c0 : memref<?xindex>
    scf.for %i = %c0 to %dim step %c1 {
      %p = memref.load %arg0[%i] : memref<?xindex>
      %f = memref.load %arg1[%i] : memref<?xi1>
      memref.store %f, %arg2[%i] : memref<?xi1>
    }
    return
  }
}

// -----

// A helper given device memory (a function argument) by one of its callers
// is host code like any other: waits before its call and in its body.
// CHECK-LABEL: func.func @device_array
// CHECK: gpu.launch_func
// CHECK-NEXT: call @qopt_cuda_host_sync() : () -> ()
// CHECK-NEXT: call @dealloc_helper
// CHECK-LABEL: func.func private @dealloc_helper
// CHECK: scf.for
// CHECK-NEXT: func.call @qopt_cuda_host_sync() : () -> ()
// CHECK-NEXT: memref.load
module attributes {gpu.container_module} {
  gpu.module @k {
    gpu.func @k() kernel {
      gpu.return
    }
  }
  func.func @device_array(%flags: memref<?xi1>, %ptrs: memref<?xindex>) {
    %c1 = arith.constant 1 : index
    gpu.launch_func @k::@k blocks in (%c1, %c1, %c1) threads in (%c1, %c1, %c1)
    call @dealloc_helper(%ptrs, %flags, %flags) : (memref<?xindex>, memref<?xi1>, memref<?xi1>) -> ()
    return
  }
  func.func private @dealloc_helper(%arg0: memref<?xindex>, %arg1: memref<?xi1>, %arg2: memref<?xi1>) {
    %c0 = arith.constant 0 : index
    %c1 = arith.constant 1 : index
    %dim = memref.dim %arg0, %c0 : memref<?xindex>
    scf.for %i = %c0 to %dim step %c1 {
      %p = memref.load %arg0[%i] : memref<?xindex>
      %f = memref.load %arg1[%i] : memref<?xi1>
      memref.store %f, %arg2[%i] : memref<?xi1>
    }
    return
  }
}
