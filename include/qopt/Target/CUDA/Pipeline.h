//===- Pipeline.h - The CUDA target's code-generation pipeline --*- C++ -*-===//
//
// From graph IR to host code in the LLVM dialect that launches GPU kernels,
// with the kernels as PTX in a gpu.binary (qoptc turns it into cubins).
// The graph is lowered and bufferized as for the CPU; every loop nest then
// becomes one kernel launch over its iterations.
//
//===----------------------------------------------------------------------===//

#ifndef QOPT_TARGET_CUDA_PIPELINE_H
#define QOPT_TARGET_CUDA_PIPELINE_H

#include "mlir/Pass/PassOptions.h"

#include <optional>

namespace mlir {
class OpPassManager;
namespace qopt {

/// How the kernel library's GEMM multiplies f32 operands, named after
/// torch.set_float32_matmul_precision: `highest`, f32 on the CUDA cores
/// (the CPU target's numerics); `high`, rounded to tf32 and `medium`, to
/// bf16, multiplied on the tensor cores with f32 accumulators.
enum class MatmulPrecision { Highest, High, Medium };

/// The precision's name (qoptc's and the options' value), and back.
inline llvm::StringRef matmulPrecisionName(MatmulPrecision p) {
  return p == MatmulPrecision::Medium ? "medium"
         : p == MatmulPrecision::High ? "high"
                                      : "highest";
}
inline std::optional<MatmulPrecision>
parseMatmulPrecision(llvm::StringRef name) {
  for (MatmulPrecision p : {MatmulPrecision::Highest, MatmulPrecision::High,
                            MatmulPrecision::Medium})
    if (name == matmulPrecisionName(p))
      return p;
  return std::nullopt;
}

/// The options of CUDA code generation, declared once for every pipeline
/// that ends in it.
template <typename Derived>
struct CUDACodegenOptionsBase : public PassPipelineOptions<Derived> {
  mlir::detail::PassOptions::Option<std::string> chip{
      *this, "chip",
      llvm::cl::desc("The PTX target: the oldest architecture the kernels "
                     "run on (ptxas compiles the PTX for each newer one)"),
      llvm::cl::init("sm_80")};
  mlir::detail::PassOptions::Option<std::string> toolkit{
      *this, "toolkit",
      llvm::cl::desc("CUDA toolkit folder whose nvvm/libdevice the kernels' "
                     "math functions link (default: $CUDA_ROOT, else "
                     "/usr/local/cuda)"),
      llvm::cl::init("")};
  mlir::detail::PassOptions::Option<unsigned> blockSize{
      *this, "block-size",
      llvm::cl::desc("Threads per block of the generated kernels"),
      llvm::cl::init(256)};
  mlir::detail::PassOptions::Option<bool> library{
      *this, "library",
      llvm::cl::desc("Matrix products call the CUDA kernel library "
                     "(quantized ones qopt_cuda_qlinear, with a LoRA "
                     "branch added qopt_cuda_qlinear_lora, f32 ones "
                     "qopt_cuda_sgemm; with emulate, their CPU emulations) "
                     "instead of becoming generated kernels; the model must "
                     "then be linked with libqopt_cuda_library"),
      llvm::cl::init(false)};
  mlir::detail::PassOptions::Option<MatmulPrecision> matmulPrecision{
      *this, "matmul-precision",
      llvm::cl::desc("With library: how the library's GEMM multiplies (the "
                     "products of more than 16 rows through a quantized "
                     "weight, and every f32 product it takes); decode's "
                     "GEMV and the attention stay f32"),
      llvm::cl::values(
          clEnumValN(MatmulPrecision::Highest, "highest",
                     "f32 on the CUDA cores (the CPU target's numerics)"),
          clEnumValN(MatmulPrecision::High, "high",
                     "operands rounded to tf32, tensor cores (mma.sync), "
                     "f32 accumulators"),
          clEnumValN(MatmulPrecision::Medium, "medium",
                     "operands rounded to bf16, tensor cores (mma.sync), "
                     "f32 accumulators")),
      llvm::cl::init(MatmulPrecision::Highest)};
  mlir::detail::PassOptions::Option<bool> emulate{
      *this, "emulate",
      llvm::cl::desc("Run the kernels on the CPU as loops over their blocks "
                     "and threads (qopt-gpu-launch-to-loops) instead of "
                     "compiling them for a GPU: tests the kernels' index "
                     "arithmetic without one"),
      llvm::cl::init(false)};
};

struct CUDACodegenOptions : public CUDACodegenOptionsBase<CUDACodegenOptions> {
};

/// Bufferization as for the CPU, one kernel per loop nest, kernels outlined
/// into one gpu.module and lowered to NVVM and PTX; host code to LLVM with
/// the launches as calls of the mgpu* runtime functions (which the CUDA
/// host library implements over the driver API).
void buildCUDACodegenPipeline(OpPassManager &pm,
                              const CUDACodegenOptions &options);

/// Registers `qopt-cuda-codegen` for qopt-opt.
void registerCUDACodegenPipeline();

} // namespace qopt
} // namespace mlir

#endif // QOPT_TARGET_CUDA_PIPELINE_H
