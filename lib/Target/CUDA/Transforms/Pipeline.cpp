//===- Pipeline.cpp - The CUDA target's code-generation pipeline ----------===//

#include "qopt/Target/CUDA/Pipeline.h"

#include "qopt/Target/CPU/Pipeline.h"
#include "qopt/Target/CPU/Transforms/Passes.h"
#include "qopt/Target/CUDA/Transforms/Passes.h"

#include "mlir/Conversion/Passes.h"
#include "mlir/Dialect/GPU/Transforms/Passes.h"
#include "mlir/Dialect/Linalg/Passes.h"
#include "mlir/Dialect/SCF/Transforms/Passes.h"
#include "mlir/Pass/PassManager.h"
#include "mlir/Pass/PassRegistry.h"
#include "mlir/Transforms/Passes.h"

using namespace mlir;

void mlir::qopt::buildCUDACodegenPipeline(OpPassManager &pm,
                                          const CUDACodegenOptions &options) {
  // qopt.attention (and a train step's qopt.attention_grad),
  // qopt.hadamard and the norms: the library's kernels.
  LibraryLowering lowering;
  if (options.library) {
    std::string suffix = options.emulate ? "_emulated" : "";
    lowering.attention = "qopt_cuda_attention" + suffix;
    lowering.hadamard = "qopt_cuda_hadamard" + suffix;
    lowering.norm = "qopt_cuda_norm" + suffix;
  }
  buildBufferizePipeline(pm, lowering);
  if (options.library) {
    QOptLinalgToBLASPassOptions library;
    library.cudaQLinear =
        options.emulate ? "qopt_cuda_qlinear_emulated" : "qopt_cuda_qlinear";
    library.cudaQLinearLoRA = options.emulate
                                  ? "qopt_cuda_qlinear_lora_emulated"
                                  : "qopt_cuda_qlinear_lora";
    // (`high` / `medium`: the GEMM's tensor-core entries; quantized calls
    // say so in their flags.)
    MatmulPrecision precision = options.matmulPrecision;
    library.cudaSgemm = (Twine("qopt_cuda_sgemm") +
                         (precision == MatmulPrecision::Medium ? "_bf16"
                          : precision == MatmulPrecision::High ? "_tf32"
                                                               : "") +
                         (options.emulate ? "_emulated" : ""))
                            .str();
    library.cudaMatmulPrecision = matmulPrecisionName(precision).str();
    // Per-token activations quantized once per quantizer, in the norm
    // before them where there is one.
    library.cudaQuantizeRows = options.emulate
                                   ? "qopt_cuda_quantize_rows_emulated"
                                   : "qopt_cuda_quantize_rows";
    library.cudaNorm = lowering.norm;
    library.cudaHadamard = lowering.hadamard;
    library.cudaHadamardQuant = options.emulate
                                    ? "qopt_cuda_hadamard_quant_emulated"
                                    : "qopt_cuda_hadamard_quant";
    library.cudaNormQuant = options.emulate ? "qopt_cuda_norm_quant_emulated"
                                            : "qopt_cuda_norm_quant";
    // A train step's AdamW: every parameter in one launch.
    library.cudaAdamW =
        options.emulate ? "qopt_cuda_adamw_emulated" : "qopt_cuda_adamw";
    pm.addPass(createQOptLinalgToBLASPass(library));
  }
  pm.addNestedPass<func::FuncOp>(createQOptMemRefCopyToLinalgPass());
  pm.addPass(createConvertLinalgToParallelLoopsPass());
  // One parallel loop per nest, all its dimensions parallel (one thread
  // per output element; reductions are loops inside the thread).
  QOptSerializeNestedParallelPassOptions serialize;
  serialize.lastDimSequential = false;
  pm.addPass(createQOptSerializeNestedParallelPass(serialize));
  // Neighbouring nests over the same space become one kernel where each
  // element's iteration reads only what its own iterations wrote (a
  // reduction's zero initialization, the reduction, its elementwise
  // consumer: one launch instead of three).
  // (CSE first: the loops' bounds must be the same values; independent
  // loops over the same space are moved next to each other.)
  pm.addNestedPass<func::FuncOp>(createCSEPass());
  pm.addNestedPass<func::FuncOp>(createQOptGroupParallelLoopsPass());
  pm.addNestedPass<func::FuncOp>(createParallelLoopFusionPass());
  // Index range checks are made on the device (a status word the runtime
  // reads after the run). Small loops whose results only the host reads
  // (shape values) run on the host, and host code on device memory (a loss's
  // sum over tokens, a mean, the step counter) in one-thread kernels behind the
  // others: the host need not wait for the GPU in either.
  pm.addPass(createQOptDeviceChecksPass());
  pm.addNestedPass<func::FuncOp>(createQOptSmallLoopsToHostPass());
  pm.addNestedPass<func::FuncOp>(createQOptSerialToGPUPass());
  QOptParallelToGPUPassOptions toGPU;
  toGPU.blockSize = options.blockSize;
  pm.addNestedPass<func::FuncOp>(createQOptParallelToGPUPass(toGPU));
  pm.addPass(createCanonicalizerPass());
  if (options.emulate) {
    pm.addNestedPass<func::FuncOp>(createQOptGPULaunchToLoopsPass());
    buildHostToLLVMPipeline(pm);
    return;
  }
  pm.addPass(createGpuKernelOutliningPass());
  pm.addPass(createQOptGPUHostSyncPass());
  pm.addPass(createQOptMergeGPUModulesPass());
  GpuNVVMAttachTargetOptions target;
  target.chip = options.chip;
  // PTX ISA 8.0 (CUDA 12): the oldest that sm_90 accepts.
  target.features = "+ptx80";
  target.optLevel = 3;
  pm.addPass(createGpuNVVMAttachTarget(target));
  OpPassManager &kernels = pm.nest<gpu::GPUModuleOp>();
  kernels.addPass(createLowerAffinePass());
  kernels.addPass(createSCFToControlFlowPass());
  kernels.addPass(createConvertGpuOpsToNVVMOps());
  kernels.addPass(createCanonicalizerPass());
  kernels.addPass(createCSEPass());
  kernels.addPass(createReconcileUnrealizedCastsPass());
  GpuModuleToBinaryPassOptions binary;
  binary.compilationTarget = "isa";
  binary.toolkitPath = options.toolkit;
  pm.addPass(createGpuModuleToBinaryPass(binary));
  buildHostToLLVMPipeline(pm, [](OpPassManager &host) {
    host.addPass(createGpuToLLVMConversionPass());
  });
}

void mlir::qopt::registerCUDACodegenPipeline() {
  PassPipelineRegistration<CUDACodegenOptions>(
      "qopt-cuda-codegen",
      "Lower graph IR (QOpt and upstream ops on tensors, parameters as entry "
      "arguments) to host code in the LLVM dialect that launches GPU kernels "
      "(PTX in a gpu.binary)",
      buildCUDACodegenPipeline);
}
