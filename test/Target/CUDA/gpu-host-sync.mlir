// RUN: qopt-opt %s --qopt-gpu-host-sync | FileCheck %s

// The host waits before it touches memory a kernel may use, once per
// stretch of launches; stack buffers and constants need no wait, and small
// host-only buffers move to the stack. A function waits before it returns.
// The module lists the public functions whose host code touches only host
// memory (CUDA graphs may replay them): @view_buffers, whose buffer moves
// to the stack; the others read their arguments or device buffers on the
// host, or call host code.
// CHECK: module attributes {gpu.container_module, qopt.cuda_graphs = [@view_buffers]}
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
  func.func @blocks(%arg0: memref<4xf32>) -> f32 {
    %c0 = arith.constant 0 : index
    %c1 = arith.constant 1 : index
    gpu.launch_func @w::@w blocks in (%c1, %c1, %c1) threads in (%c1, %c1, %c1) args(%arg0 : memref<4xf32>)
    cf.br ^bb1
  ^bb1:
    %x = memref.load %arg0[%c0] : memref<4xf32>
    return %x : f32
  }

  // Arguments nothing writes (the model's inputs) are only read by kernels:
  // the host reads them, and views of them, without waiting (a run-time
  // check of token ids). An argument a kernel writes through a view, one
  // whose address a library call takes, or one the host writes is waited
  // for.
  // CHECK-LABEL: func.func @inputs
  // CHECK: gpu.launch_func {{ *}}@r::@r
  // CHECK-NEXT: memref.load %arg0
  // CHECK-NEXT: memref.subview %arg0
  // CHECK-NEXT: memref.load %subview
  // CHECK-NEXT: call @qopt_cuda_host_sync() : () -> ()
  // CHECK-NEXT: memref.load %arg1
  // CHECK-NEXT: gpu.launch_func {{ *}}@r::@r
  // CHECK-NEXT: call @qopt_cuda_host_sync() : () -> ()
  // CHECK-NEXT: memref.load %arg2
  // CHECK-NEXT: memref.extract_aligned_pointer_as_index %arg2
  // CHECK-NEXT: call @qopt_cuda_sgemm
  // CHECK-NEXT: gpu.launch_func {{ *}}@r::@r
  // CHECK-NEXT: call @qopt_cuda_host_sync() : () -> ()
  // CHECK-NEXT: memref.load %arg3
  // CHECK-NEXT: memref.store
  // CHECK-NEXT: return
  func.func @inputs(%ids: memref<4xi64>, %out: memref<4xf32>, %lib: memref<4xf32>, %host: memref<4xf32>) {
    %c0 = arith.constant 0 : index
    %c1 = arith.constant 1 : index
    %f = arith.constant 2.0 : f32
    %sub = memref.subview %out[1] [3] [1] : memref<4xf32> to memref<3xf32, strided<[1], offset: 1>>
    gpu.launch_func @w::@w3 blocks in (%c1, %c1, %c1) threads in (%c1, %c1, %c1) args(%sub : memref<3xf32, strided<[1], offset: 1>>)
    gpu.launch_func @r::@r blocks in (%c1, %c1, %c1) threads in (%c1, %c1, %c1) args(%ids : memref<4xi64>)
    %a = memref.load %ids[%c0] : memref<4xi64>
    %v = memref.subview %ids[1] [2] [1] : memref<4xi64> to memref<2xi64, strided<[1], offset: 1>>
    %b = memref.load %v[%c0] : memref<2xi64, strided<[1], offset: 1>>
    %x = memref.load %out[%c0] : memref<4xf32>
    gpu.launch_func @r::@r blocks in (%c1, %c1, %c1) threads in (%c1, %c1, %c1) args(%ids : memref<4xi64>)
    %y = memref.load %lib[%c0] : memref<4xf32>
    %p = memref.extract_aligned_pointer_as_index %lib : memref<4xf32> -> index
    call @qopt_cuda_sgemm(%p) : (index) -> ()
    gpu.launch_func @r::@r blocks in (%c1, %c1, %c1) threads in (%c1, %c1, %c1) args(%ids : memref<4xi64>)
    %z = memref.load %host[%c0] : memref<4xf32>
    memref.store %f, %host[%c1] : memref<4xf32>
    return
  }
  // A small buffer only the host uses, through views too (shape values
  // gathered into parts of one buffer), moves to the stack: the host
  // writes and reads it without waiting.
  // CHECK-LABEL: func.func @view_buffers
  // CHECK: %[[B:.*]] = memref.alloca() : memref<2xi64>
  // CHECK-NEXT: gpu.launch_func
  // CHECK-NEXT: memref.subview %[[B]]
  // CHECK-NEXT: memref.store
  // CHECK-NEXT: memref.load %[[B]]
  // CHECK-NEXT: call @qopt_cuda_host_sync() : () -> ()
  // CHECK-NEXT: return
  func.func @view_buffers(%n: i64) -> i64 {
    %c0 = arith.constant 0 : index
    %c1 = arith.constant 1 : index
    %b = memref.alloc() : memref<2xi64>
    gpu.launch_func @k::@k blocks in (%c1, %c1, %c1) threads in (%c1, %c1, %c1)
    %s = memref.subview %b[1] [1] [1] : memref<2xi64> to memref<1xi64, strided<[1], offset: 1>>
    memref.store %n, %s[%c0] : memref<1xi64, strided<[1], offset: 1>>
    %x = memref.load %b[%c1] : memref<2xi64>
    memref.dealloc %b : memref<2xi64>
    return %x : i64
  }
  // A buffer a kernel uses through a view stays device memory, and the
  // host waits before reading it.
  // CHECK-LABEL: func.func @view_to_kernel
  // CHECK: memref.alloc() : memref<2xf32>
  // CHECK: gpu.launch_func
  // CHECK-NEXT: call @qopt_cuda_host_sync() : () -> ()
  // CHECK-NEXT: memref.load
  func.func @view_to_kernel() -> f32 {
    %c0 = arith.constant 0 : index
    %c1 = arith.constant 1 : index
    %b = memref.alloc() : memref<2xf32>
    %s4 = memref.subview %b[0] [1] [1] : memref<2xf32> to memref<1xf32, strided<[1]>>
    gpu.launch_func @w::@w1 blocks in (%c1, %c1, %c1) threads in (%c1, %c1, %c1) args(%s4 : memref<1xf32, strided<[1]>>)
    %x = memref.load %b[%c1] : memref<2xf32>
    memref.dealloc %b : memref<2xf32>
    return %x : f32
  }

  // A public function another one calls may be passed one buffer twice:
  // its arguments are waited for even where it writes none of them.
  // CHECK-LABEL: func.func @called
  // CHECK: gpu.launch_func
  // CHECK-NEXT: call @qopt_cuda_host_sync() : () -> ()
  // CHECK-NEXT: memref.load %arg0
  // CHECK: func.func private @qopt_cuda_host_sync()
  func.func @called(%ids: memref<4xi64>) -> i64 {
    %c0 = arith.constant 0 : index
    %c1 = arith.constant 1 : index
    gpu.launch_func @r::@r blocks in (%c1, %c1, %c1) threads in (%c1, %c1, %c1) args(%ids : memref<4xi64>)
    %x = memref.load %ids[%c0] : memref<4xi64>
    return %x : i64
  }
  func.func @caller(%ids: memref<4xi64>) -> i64 {
    %x = call @called(%ids) : (memref<4xi64>) -> i64
    return %x : i64
  }
  gpu.module @w {
    gpu.func @w(%m: memref<4xf32>) kernel {
      %c0 = arith.constant 0 : index
      %f = arith.constant 1.0 : f32
      memref.store %f, %m[%c0] : memref<4xf32>
      gpu.return
    }
    gpu.func @w1(%m: memref<1xf32, strided<[1]>>) kernel {
      %c0 = arith.constant 0 : index
      %f = arith.constant 1.0 : f32
      memref.store %f, %m[%c0] : memref<1xf32, strided<[1]>>
      gpu.return
    }
    gpu.func @w3(%m: memref<3xf32, strided<[1], offset: 1>>) kernel {
      %c0 = arith.constant 0 : index
      %f = arith.constant 1.0 : f32
      %v = memref.subview %m[1] [2] [1] : memref<3xf32, strided<[1], offset: 1>> to memref<2xf32, strided<[1], offset: 2>>
      memref.store %f, %v[%c0] : memref<2xf32, strided<[1], offset: 2>>
      gpu.return
    }
  }
  gpu.module @r {
    gpu.func @r(%m: memref<4xi64>) kernel {
      %c0 = arith.constant 0 : index
      %x = memref.load %m[%c0] : memref<4xi64>
      gpu.return
    }
  }
}
