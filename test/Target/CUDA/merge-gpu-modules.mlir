// RUN: qopt-opt %s --qopt-merge-gpu-modules | FileCheck %s

// Two outlined kernels of the same name and their copies of one global
// become one module: the second kernel is renamed, its launch follows, and
// the global is kept once.
// CHECK: gpu.module @qopt_kernels
// CHECK-DAG: memref.global "private" constant @table
// CHECK-DAG: gpu.func @k() kernel
// CHECK-DAG: gpu.func @[[K2:k_[0-9]+]]() kernel
// CHECK-NOT: gpu.module
// CHECK: func.func @host
// CHECK: gpu.launch_func @qopt_kernels::@k blocks
// CHECK: gpu.launch_func @qopt_kernels::@[[K2]] blocks
module attributes {gpu.container_module} {
  gpu.module @a {
    memref.global "private" constant @table : memref<2xf32> = dense<[1.0, 2.0]>
    gpu.func @k() kernel {
      %g = memref.get_global @table : memref<2xf32>
      gpu.return
    }
  }
  gpu.module @b {
    memref.global "private" constant @table : memref<2xf32> = dense<[1.0, 2.0]>
    gpu.func @k() kernel {
      %g = memref.get_global @table : memref<2xf32>
      gpu.return
    }
  }
  func.func @host() {
    %c1 = arith.constant 1 : index
    gpu.launch_func @a::@k blocks in (%c1, %c1, %c1) threads in (%c1, %c1, %c1)
    gpu.launch_func @b::@k blocks in (%c1, %c1, %c1) threads in (%c1, %c1, %c1)
    return
  }
}
