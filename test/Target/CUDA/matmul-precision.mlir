// `qopt-cuda-codegen{matmul-precision=medium}` (qoptc
// --cuda-matmul-precision=medium): the f32 products call the library
// GEMM's bf16 tensor-core entries (here their CPU emulation); `high` its
// tf32 ones; `highest`, the default, the f32 ones. Another value is an
// error naming it.
// RUN: qopt-opt %s --pass-pipeline="builtin.module(convert-qopt-to-linalg,cse,canonicalize,convert-elementwise-to-linalg,qopt-cuda-codegen{emulate=true library=true matmul-precision=medium})" | FileCheck %s
// RUN: qopt-opt %s --pass-pipeline="builtin.module(convert-qopt-to-linalg,cse,canonicalize,convert-elementwise-to-linalg,qopt-cuda-codegen{emulate=true library=true matmul-precision=high})" | FileCheck %s --check-prefix=HIGH
// RUN: qopt-opt %s --pass-pipeline="builtin.module(convert-qopt-to-linalg,cse,canonicalize,convert-elementwise-to-linalg,qopt-cuda-codegen{emulate=true library=true})" | FileCheck %s --check-prefix=HIGHEST
// RUN: not qopt-opt %s --pass-pipeline="builtin.module(qopt-cuda-codegen{library=true matmul-precision=low})" 2>&1 | FileCheck %s --check-prefix=BAD
// CHECK-LABEL: llvm.func @model
// CHECK: llvm.call @qopt_cuda_sgemm_bf16_emulated_overwrite(
// CHECK-NOT: llvm.call @qopt_cuda_sgemm_emulated
// CHECK: llvm.return
// HIGH-LABEL: llvm.func @model
// HIGH: llvm.call @qopt_cuda_sgemm_tf32_emulated_overwrite(
// HIGH: llvm.return
// HIGHEST-LABEL: llvm.func @model
// HIGHEST: llvm.call @qopt_cuda_sgemm_emulated_overwrite(
// HIGHEST-NOT: {{bf16|tf32}}
// HIGHEST: llvm.return
// BAD: for the --matmul-precision option: Cannot find option named 'low'!
// BAD: error: failed to add `qopt-cuda-codegen` with options `library=true matmul-precision=low`
func.func @model(%x: tensor<2x3x8xf32> {qopt.name = "x"},
                 %w: tensor<16x8xf32> {qopt.param = "w"}) -> (tensor<2x3x16xf32> {qopt.name = "y"}) {
  %y = qopt.linear %x, %w : (tensor<2x3x8xf32>, tensor<16x8xf32>) -> tensor<2x3x16xf32>
  return %y : tensor<2x3x16xf32>
}
