//===- Pipelines.cpp - qopt's named pass pipelines ------------------------===//

#include "qopt/Pipelines/Pipelines.h"

#include "qopt/Conversion/Passes.h"

#include "mlir/Conversion/Passes.h"
#include "mlir/Dialect/Bufferization/Transforms/Passes.h"
#include "mlir/Dialect/Linalg/Passes.h"
#include "mlir/Dialect/MemRef/Transforms/Passes.h"
#include "mlir/Pass/PassManager.h"
#include "mlir/Pass/PassRegistry.h"
#include "mlir/Transforms/Passes.h"

using namespace mlir;

void mlir::qopt::buildQOptCPUPipeline(OpPassManager &pm,
                                      const CPUPipelineOptions &options) {
  pm.addPass(createQOptRaiseONNXPass());
  ConvertONNXToQOptPassOptions onnx;
  onnx.allowUnsupported = options.allowUnsupported;
  pm.addPass(createConvertONNXToQOptPass(onnx));
  pm.addPass(createQOptMaterializeParamsPass());
  pm.addPass(createConvertQOptToLinalgPass());
  pm.addPass(createCanonicalizerPass());
  pm.addPass(createConvertElementwiseToLinalgPass());
  bufferization::OneShotBufferizePassOptions bufferize;
  bufferize.bufferizeFunctionBoundaries = true;
  pm.addPass(bufferization::createOneShotBufferizePass(bufferize));
  pm.addPass(createConvertLinalgToLoopsPass());
  pm.addPass(createSCFToControlFlowPass());
  pm.addPass(memref::createExpandStridedMetadataPass());
  pm.addPass(createLowerAffinePass());
  pm.addPass(createConvertMathToLibmPass());
  pm.addPass(createFinalizeMemRefToLLVMConversionPass());
  pm.addPass(createConvertToLLVMPass());
  pm.addPass(createReconcileUnrealizedCastsPass());
}

void mlir::qopt::registerQOptPipelines() {
  PassPipelineRegistration<CPUPipelineOptions>(
      "qopt-lower-to-cpu",
      "Lower imported ONNX / QOpt graph IR to the LLVM dialect for the CPU",
      buildQOptCPUPipeline);
}
