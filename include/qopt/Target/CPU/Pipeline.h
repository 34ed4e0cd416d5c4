//===- Pipeline.h - The CPU target's code-generation pipeline ---*- C++ -*-===//
//
// From graph IR (QOpt + upstream ops on tensors, parameters as entry
// arguments) to the LLVM dialect. Only the target's own stage: the front
// end and the graph passes are assembled one level up (qopt/Pipelines).
//
//===----------------------------------------------------------------------===//

#ifndef QOPT_TARGET_CPU_PIPELINE_H
#define QOPT_TARGET_CPU_PIPELINE_H

#include "mlir/Pass/PassOptions.h"
#include "llvm/ADT/STLFunctionalExtras.h"

namespace mlir {
class OpPassManager;
namespace qopt {

/// The options of CPU code generation, declared once for every pipeline
/// that ends in it (`Derived` is the pipeline's own options struct).
template <typename Derived>
struct CPUCodegenOptionsBase : public PassPipelineOptions<Derived> {
  mlir::detail::PassOptions::Option<bool> blas{
      *this, "blas",
      llvm::cl::desc("Call the CPU kernel library (qopt_kernel_sgemm, "
                     "OpenBLAS) for f32 matrix products instead of emitting "
                     "loops; the program must then be linked with "
                     "libqopt_kernels_cpu"),
      llvm::cl::init(false)};
  mlir::detail::PassOptions::Option<bool> int8Activations{
      *this, "int8-activations",
      llvm::cl::desc("Quantized weights' products quantize their "
                     "activations to int8 per block of 32 and use integer "
                     "dot products (AVX-512 VNNI; with `blas`)"),
      llvm::cl::init(false)};
  mlir::detail::PassOptions::Option<bool> parallel{
      *this, "parallel",
      llvm::cl::desc("Run the outer parallel loops of every loop nest on "
                     "the CPU kernel library's thread pool "
                     "(qopt_kernel_parallel_for; qoptc sets it unless "
                     "--parallel=false)"),
      llvm::cl::init(false)};
};

struct CPUCodegenOptions : public CPUCodegenOptionsBase<CPUCodegenOptions> {};

/// The QOpt reference lowering to linalg / tensor on tensors (what training
/// differentiates), with CSE and canonicalization, and tensor arith as
/// linalg: the first passes of the code-generation pipeline. With
/// `trainingDropout`, adapters apply their dropout (the train step's forward).
/// `library`: convert-qopt-to-linalg's options for kernel-library calls
/// (the CUDA target's fused kernels).
struct LibraryLowering {
  std::string attention; // attention-library
  std::string hadamard;  // hadamard-library
  std::string norm;      // norm-library
  bool keepAttention = false;
  bool keepNorms = false;
};
void buildLowerToLinalgPipeline(OpPassManager &pm, bool trainingDropout = false,
                                const LibraryLowering &library = {});

/// The QOpt reference lowering, elementwise fusion and bufferization with
/// buffer deallocation (results are owned by the caller): linalg on
/// memrefs, where the CPU and CUDA targets part.
void buildBufferizePipeline(OpPassManager &pm,
                            const LibraryLowering &library = {});

/// Host code (loops, memrefs, run-time checks) to the LLVM dialect;
/// `beforeLLVM` adds a target's own conversions (gpu-to-llvm) before the
/// final conversion to LLVM.
void buildHostToLLVMPipeline(
    OpPassManager &pm,
    llvm::function_ref<void(OpPassManager &)> beforeLLVM = nullptr);

/// buildBufferizePipeline, optional kernel-library calls for matrix
/// products, loops, run-time checks, LLVM.
void buildCPUCodegenPipeline(OpPassManager &pm,
                             const CPUCodegenOptions &options);

/// Registers `qopt-cpu-codegen` for qopt-opt.
void registerCPUCodegenPipeline();

} // namespace qopt
} // namespace mlir

#endif // QOPT_TARGET_CPU_PIPELINE_H
