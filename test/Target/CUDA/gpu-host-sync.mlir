// RUN: qopt-opt %s --qopt-gpu-host-sync | FileCheck %s

// The host waits before it touches memory a kernel may use, once per
// stretch of launches; stack buffers and constants need no wait, and small
// host-only buffers move to the stack. A function waits before it returns.
// CHECK-LABEL: func.func @entry
// CHECK-NEXT: %[[C0:.*]] = arith.constant 0 : index
// CHECK-NEXT: arith.constant 1 : index
// CHECK-NEXT: %[[SHAPE:.*]] = memref.alloca() {alignment = 64 : i64} : memref<1xindex>
// CHECK-NEXT: memref.store %{{.*}}, %[[SHAPE]][%[[C0]]]
// CHECK-NEXT: memref.load %arg0[%[[C0]]]
// CHECK-NEXT: gpu.launch_func {{ *}}@k::@k
// CHECK-NEXT: gpu.launch_func {{ *}}@k::@k
// CHECK-NEXT: memref.reshape %arg0(%[[SHAPE]])
// CHECK-NEXT: memref.get_global @table
// CHECK-NEXT: memref.load %{{.*}}[%[[C0]]] : memref<2xf32>
// CHECK-NEXT: call @qopt_cuda_host_sync() : () -> ()
// CHECK-NEXT: memref.load %arg0[%[[C0]]]
// CHECK-NEXT: memref.store
// CHECK-NEXT: scf.for
// CHECK-NEXT: func.call @qopt_cuda_host_sync() : () -> ()
// CHECK-NEXT: memref.load %arg0
// CHECK-NEXT: }
// CHECK-NEXT: gpu.launch_func {{ *}}@k::@k
// CHECK-NEXT: call @qopt_cuda_host_sync() : () -> ()
// CHECK-NEXT: return
// CHECK-NOT: memref.dealloc
module attributes {gpu.container_module} {
  gpu.module @k {
    gpu.func @k() kernel {
      gpu.return
    }
  }
  memref.global "private" constant @table : memref<2xf32> = dense<[1.0, 2.0]>
  func.func @entry(%arg0: memref<4xf32>, %n: index) {
    %c0 = arith.constant 0 : index
    %c1 = arith.constant 1 : index
    %shape = memref.alloc() {alignment = 64 : i64} : memref<1xindex>
    memref.store %n, %shape[%c0] : memref<1xindex>
    %a = memref.load %arg0[%c0] : memref<4xf32>
    gpu.launch_func @k::@k blocks in (%c1, %c1, %c1) threads in (%c1, %c1, %c1)
    gpu.launch_func @k::@k blocks in (%c1, %c1, %c1) threads in (%c1, %c1, %c1)
    %r = memref.reshape %arg0(%shape) : (memref<4xf32>, memref<1xindex>) -> memref<?xf32>
    %g = memref.get_global @table : memref<2xf32>
    %t = memref.load %g[%c0] : memref<2xf32>
    %b = memref.load %arg0[%c0] : memref<4xf32>
    memref.store %t, %arg0[%c1] : memref<4xf32>
    scf.for %i = %c0 to %n step %c1 {
      %x = memref.load %arg0[%c0] : memref<4xf32>
    }
    gpu.launch_func @k::@k blocks in (%c1, %c1, %c1) threads in (%c1, %c1, %c1)
    memref.dealloc %shape : memref<1xindex>
    return
  }

  // The kernel library's entries queue launches like gpu.launch_func: no
  // wait before them, one before the host reads after them; other external
  // calls are host code that may read memory.
  // CHECK-LABEL: func.func @library
  // CHECK-NEXT: call @qopt_cuda_sgemm
  // CHECK-NEXT: call @qopt_cuda_qlinear
  // CHECK-NEXT: call @qopt_cuda_host_sync() : () -> ()
  // CHECK-NEXT: call @host_work
  // CHECK-NEXT: call @qopt_cuda_sgemm
  // CHECK-NEXT: call @qopt_cuda_adamw
  // CHECK-NEXT: call @qopt_cuda_host_sync() : () -> ()
  // CHECK-NEXT: return
  func.func private @qopt_cuda_sgemm(index)
  func.func private @qopt_cuda_qlinear(index)
  func.func private @qopt_cuda_adamw(index)
  func.func private @host_work(index)
  func.func @library(%p: index) {
    call @qopt_cuda_sgemm(%p) : (index) -> ()
    call @qopt_cuda_qlinear(%p) : (index) -> ()
    call @host_work(%p) : (index) -> ()
    call @qopt_cuda_sgemm(%p) : (index) -> ()
    call @qopt_cuda_adamw(%p) : (index) -> ()
    return
  }

  // A later block of a public function may start with launches queued.
  // CHECK-LABEL: func.func @blocks
  // CHECK: ^bb1:
  // CHECK-NEXT: call @qopt_cuda_host_sync() : () -> ()
  // CHECK-NEXT: memref.load
  // CHECK: func.func private @qopt_cuda_host_sync()
  func.func @blocks(%arg0: memref<4xf32>) -> f32 {
    %c0 = arith.constant 0 : index
    %c1 = arith.constant 1 : index
    gpu.launch_func @k::@k blocks in (%c1, %c1, %c1) threads in (%c1, %c1, %c1)
    cf.br ^bb1
  ^bb1:
    %x = memref.load %arg0[%c0] : memref<4xf32>
    return %x : f32
  }
}
