//===- Pipeline.cpp - The CPU target's code-generation pipeline -----------===//

#include "qopt/Target/CPU/Pipeline.h"

#include "qopt/Conversion/QOptToLinalg/Passes.h"
#include "qopt/Target/CPU/Transforms/Passes.h"

#include "mlir/Conversion/Passes.h"
#include "mlir/Dialect/Bufferization/Pipelines/Passes.h"
#include "mlir/Dialect/Bufferization/Transforms/Passes.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/Linalg/Passes.h"
#include "mlir/Dialect/MemRef/Transforms/Passes.h"
#include "mlir/Pass/PassManager.h"
#include "mlir/Pass/PassRegistry.h"
#include "mlir/Transforms/Passes.h"

using namespace mlir;

void mlir::qopt::buildLowerToLinalgPipeline(OpPassManager &pm,
                                            bool trainingDropout,
                                            const LibraryLowering &library) {
  ConvertQOptToLinalgPassOptions lower;
  lower.trainingDropout = trainingDropout;
  lower.attentionLibrary = library.attention;
  lower.hadamardLibrary = library.hadamard;
  lower.normLibrary = library.norm;
  lower.keepAttention = library.keepAttention;
  lower.keepNorms = library.keepNorms;
  pm.addPass(createConvertQOptToLinalgPass(lower));
  // CSE first: equal sizes become one value, so the run-time broadcasts
  // and checks the conversion could not decide fold away.
  pm.addPass(createCSEPass());
  pm.addPass(createCanonicalizerPass());
  pm.addPass(createConvertElementwiseToLinalgPass());
}

void mlir::qopt::buildBufferizePipeline(OpPassManager &pm,
                                        const LibraryLowering &library) {
  buildLowerToLinalgPipeline(pm, /*trainingDropout=*/false, library);
  // One loop nest per chain of elementwise ops instead of a buffer each.
  pm.addPass(createQOptFuseElementwisePass());
  // After fusion, which folds constant operands (pow's exponent) into the
  // loop bodies where the rewrites can see them.
  pm.addPass(createQOptCPUMathPass());
  pm.addPass(createCanonicalizerPass());
  bufferization::OneShotBufferizePassOptions bufferize;
  bufferize.bufferizeFunctionBoundaries = true;
  // Plain row-major results, so the runtime can hand them out as arrays.
  bufferize.functionBoundaryTypeConversion =
      bufferization::LayoutMapOption::IdentityLayoutMap;
  // Loops carry new values (a layer's output, a quantized weight chosen per
  // step) in fresh buffers.
  bufferize.allowReturnAllocsFromLoops = true;
  pm.addPass(bufferization::createOneShotBufferizePass(bufferize));
  // Frees every intermediate buffer; returned buffers belong to the caller
  // (copied when they would alias an argument or a constant).
  bufferization::buildBufferDeallocationPipeline(pm);
  // The pipeline frees at the end of the block; each buffer is freed after
  // its last use instead (views included), or a function's peak memory
  // would be the sum of all its intermediates (a train step's too).
  pm.addNestedPass<func::FuncOp>(
      bufferization::createOptimizeAllocationLivenessPass());
  pm.addPass(createConvertBufferizationToMemRefPass()); // clones
}

void mlir::qopt::buildHostToLLVMPipeline(
    OpPassManager &pm, llvm::function_ref<void(OpPassManager &)> beforeLLVM) {
  // Failed run-time checks return an error status instead of aborting.
  pm.addPass(createQOptLowerRuntimeChecksPass());
  pm.addPass(createSCFToControlFlowPass());
  pm.addPass(memref::createExpandStridedMetadataPass());
  pm.addPass(createLowerAffinePass());
  // LLVM intrinsics where they exist (fma, exp, sqrt … vectorize); libm
  // calls only for the rest.
  pm.addPass(createConvertMathToLLVMPass());
  pm.addPass(createConvertMathToLibmPass());
  // aligned_alloc: a buffer's aligned pointer is the one free() takes, so
  // the runtime can hand results to the caller without a copy.
  FinalizeMemRefToLLVMConversionPassOptions memrefToLLVM;
  memrefToLLVM.useAlignedAlloc = true;
  pm.addPass(createFinalizeMemRefToLLVMConversionPass(memrefToLLVM));
  if (beforeLLVM)
    beforeLLVM(pm);
  pm.addPass(createConvertToLLVMPass());
  pm.addPass(createReconcileUnrealizedCastsPass());
}

void mlir::qopt::buildCPUCodegenPipeline(OpPassManager &pm,
                                         const CPUCodegenOptions &options) {
  buildBufferizePipeline(pm);
  if (options.blas) {
    QOptLinalgToBLASPassOptions blas;
    blas.int8Activations = options.int8Activations;
    pm.addPass(createQOptLinalgToBLASPass(blas));
  }
  if (options.parallel) {
    pm.addPass(createConvertLinalgToParallelLoopsPass());
    pm.addPass(createQOptSerializeNestedParallelPass());
    pm.addPass(createQOptParallelToPoolPass());
  } else {
    pm.addPass(createConvertLinalgToLoopsPass());
  }
  buildHostToLLVMPipeline(pm);
}

void mlir::qopt::registerCPUCodegenPipeline() {
  PassPipelineRegistration<CPUCodegenOptions>(
      "qopt-cpu-codegen",
      "Lower graph IR (QOpt and upstream ops on tensors, parameters as entry "
      "arguments) to the LLVM dialect for the CPU",
      buildCPUCodegenPipeline);
}
