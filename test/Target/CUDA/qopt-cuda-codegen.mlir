// The CUDA target's own pipeline: graph IR to host code in the LLVM dialect
// that launches kernels, the kernels as PTX in one gpu.binary; ptxas
// assembles that PTX for every architecture without spills. With
// emulate=true the same kernels run as CPU loops.
// REQUIRES: ptxas
// RUN: qopt-opt %s --qopt-cuda-codegen | FileCheck %s
// RUN: qopt-opt %s --qopt-cuda-codegen | %python %S/Inputs/extract_ptx.py > %t.ptx
// RUN: FileCheck %s --check-prefix=PTX < %t.ptx
// RUN: %ptxas -arch=sm_80 -v %t.ptx -o %t.80.cubin 2>&1 | FileCheck %s --check-prefix=PTXAS
// RUN: %ptxas -arch=sm_90 -v %t.ptx -o %t.90.cubin 2>&1 | FileCheck %s --check-prefix=PTXAS
// RUN: qopt-opt %s --qopt-cuda-codegen=emulate=true | FileCheck %s --check-prefix=EMU

// Host code: every loop nest a launch of the one kernel module; buffers
// through aligned_alloc (the kernel library's allocator, which a CUDA
// model points at its GPU memory pool). Its host code touches only host
// memory: @f may replay as a CUDA graph.
// CHECK: module attributes {gpu.container_module, qopt.cuda_graphs = [@f]}
// CHECK-NOT: qopt.
// CHECK-NOT: linalg.
// CHECK-NOT: scf.parallel
// CHECK-DAG: llvm.func @aligned_alloc(i64, i64) -> !llvm.ptr
// CHECK: llvm.func @f(
// CHECK: gpu.launch_func {{ *}}@qopt_kernels::@f_kernel blocks in
// CHECK: gpu.launch_func {{ *}}@qopt_kernels::@f_kernel_0 blocks in
// CHECK: gpu.binary @qopt_kernels {{ *}}[#gpu.object<#nvvm.target<O = 3, chip = "sm_80", features = "+ptx80">, properties = {{.*}}, assembly = "

// PTX: .version 8.0
// PTX: .target sm_80
// PTX: .visible .entry f_kernel(
// PTX: .maxntid 256, 1, 1
// PTX: .visible .entry f_kernel_0(
// silu's exp from libdevice, linked in
// PTX-NOT: .extern .func __nv_expf

// PTXAS-NOT: bytes spill
// PTXAS: Compiling entry function 'f_kernel
// PTXAS: 0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
// PTXAS: Compiling entry function 'f_kernel
// PTXAS: 0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads

// EMU-NOT: gpu.
// EMU: llvm.func @f(
// EMU-NOT: gpu.
func.func @f(%x: tensor<?x8xf32>, %w: tensor<4x8xf32>) -> tensor<?x4xf32> {
  %0 = qopt.silu %x : tensor<?x8xf32>
  %1 = qopt.linear %0, %w : (tensor<?x8xf32>, tensor<4x8xf32>) -> tensor<?x4xf32>
  return %1 : tensor<?x4xf32>
}
