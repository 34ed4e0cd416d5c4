//===- Pipelines.h - Whole-model pipelines ----------------------*- C++ -*-===//
//
// The stages a model goes through, assembled: front end (ONNX staging ops
// to QOpt and upstream ops) -> graph (QOpt transforms) -> target code
// generation. Tools call these; targets never include them.
//
//===----------------------------------------------------------------------===//

#ifndef QOPT_PIPELINES_PIPELINES_H
#define QOPT_PIPELINES_PIPELINES_H

#include "qopt/Target/CPU/CPUTarget.h"
#include "qopt/Target/CPU/Pipeline.h"
#include "qopt/Target/CUDA/Pipeline.h"
#include "qopt/Training/Passes.h"

#include "mlir/IR/BuiltinOps.h"
#include "mlir/Pass/PassOptions.h"

#include <functional>
#include <string>
#include <vector>

namespace mlir {
class OpPassManager;
namespace qopt {
struct PeftLoraConfig;

/// Front end: raising of decomposed layers, then conversion of every
/// `onnx.node` (left in place with `allowUnsupported`).
void buildONNXFrontEndPipeline(OpPassManager &pm, bool allowUnsupported);

/// Graph stage before a target: inline parameters as constants, the
/// remaining ones as arguments of the entry function (what the runtime
/// passes in).
void buildGraphPipeline(OpPassManager &pm);

struct CPUPipelineOptions : public CPUCodegenOptionsBase<CPUPipelineOptions> {
  PassOptions::Option<bool> allowUnsupported{
      *this, "allow-unsupported",
      llvm::cl::desc("Leave ONNX nodes that cannot be converted (the "
                     "pipeline then fails when lowering them)"),
      llvm::cl::init(false)};
};

/// Front end, graph stage and CPU code generation: from imported ONNX (or
/// QOpt graph IR) to the LLVM dialect (`qopt-lower-to-cpu`).
void buildQOptCPUPipeline(OpPassManager &pm, const CPUPipelineOptions &options);

struct CUDAPipelineOptions
    : public CUDACodegenOptionsBase<CUDAPipelineOptions> {
  PassOptions::Option<bool> allowUnsupported{
      *this, "allow-unsupported",
      llvm::cl::desc("Leave ONNX nodes that cannot be converted (the "
                     "pipeline then fails when lowering them)"),
      llvm::cl::init(false)};
};

/// Front end, graph stage and CUDA code generation: from imported ONNX (or
/// QOpt graph IR) to host code in the LLVM dialect launching PTX kernels
/// (`qopt-lower-to-cuda`).
void buildQOptCUDAPipeline(OpPassManager &pm,
                           const CUDAPipelineOptions &options);

struct ModelCompileOptions {
  bool allowUnsupported = false;
  /// A PEFT adapter folder to load onto the model (qopt-load-adapter).
  /// A safetensors checkpoint whose weights replace the model's
  /// (qopt-load-weights; bitsandbytes 4-bit layers stay quantized).
  std::string weightsPath;
  /// `qoptc --quantize` (nf4:block=64,double-quant, int4:group=128,asym,
  /// int8:per-channel, …): the selected layers' weights quantized at
  /// compile time (qopt-quantize-weights), after weightsPath and before
  /// adapters.
  std::string quantizeSpec;
  /// The layers quantizeSpec applies to, as PEFT's target_modules (empty:
  /// all-linear, the output head left out).
  std::vector<std::string> quantizeModules;
  /// `qoptc --quantize-activations` (int8:per-token, int4:per-token,
  /// int8:per-tensor,static, …): the layers quantizeModules selects
  /// quantize their inputs so (qopt-insert-fake-quant), after quantizeSpec
  /// and before adapters. Dynamic per-token quantizers before integer
  /// weights run in integers on the CPU.
  std::string quantizeActivations;
  /// With an integer quantizeSpec: per-layer widths within this many bits
  /// per weight (0: off).
  double budgetBits = 0.0;
  /// Fisher diagonals (safetensors) weighting budgetBits' error.
  std::string budgetFisher;
  std::string adapterDir;
  /// A PEFT adapter_config.json whose fresh adapters to insert
  /// (qopt-insert-lora).
  std::string loraConfigPath;
  /// The adapter config as JSON text (a recipe's `adapter`), read instead
  /// of the file at loraConfigPath, which then only names it in messages.
  std::string loraConfigJson;
  /// A PEFT adapter_config.json whose layers get run-time adapter slots
  /// (qopt-insert-lora slots=true).
  std::string loraSlotsPath;
  /// Write the adapters in PEFT's format to this folder (qopt-save-adapter),
  /// before any merge.
  std::string saveAdapterDir;
  /// Merge the adapters into the base weights (qopt-merge-lora).
  bool mergeAdapter = false;
  /// Merge into quantized base weights by quantizing the sum again.
  bool requantizeMerged = false;
  /// A textual pass pipeline run on the module after adapters and merges,
  /// before the graph pipeline (`qoptc --graph-passes`).
  std::string graphPasses;
  /// Calibration data (.npz: arrays named after the model's inputs, first
  /// dimension = samples; `labels` optional) for data-driven adapter
  /// initialisations (EVA, LoRA-GA), or for graph passes that read
  /// activation statistics (also .jsonl samples, or a .qstats file).
  std::string calibrationDataPath;
  /// Samples per calibration batch (PEFT's data loader batch size).
  int64_t calibrationBatchSize = 1;
  /// Passes over the calibration batches before EVA gives up.
  int64_t calibrationMaxPasses = 100;
  /// Computes a data-driven init's per-layer state (qopt-insert-lora's
  /// eva-state or loraga-state file `statePath`, as `config`'s
  /// init_lora_weights asks) for the layers `config` targets in `module`
  /// (after the front end) from the calibration data, with `workDir` for a
  /// probe. The tool supplies it: it runs the model through the runtime,
  /// which the pipelines do not link.
  std::function<LogicalResult(ModuleOp module, const PeftLoraConfig &config,
                              StringRef dataPath, int64_t batchSize,
                              int64_t maxPasses, const CPUTargetOptions &target,
                              StringRef workDir, StringRef statePath)>
      calibrator;
  /// Computes the activation statistics (a .qstats file at `statsPath`)
  /// that graph passes such as qopt-smooth read, from the samples at
  /// `dataPath`, with `workDir` for a probe. Supplied by the tool, as
  /// `calibrator` is.
  std::function<LogicalResult(ModuleOp module, StringRef dataPath,
                              int64_t batchSize, const CPUTargetOptions &target,
                              StringRef workDir, StringRef statsPath)>
      statsCalibrator;
  /// Compile a training entry (`qoptc --train`): loaded adapters become
  /// trainable, and after the QOpt lowering qopt-build-train-step adds the
  /// loss, its gradients and the optimizer step.
  bool train = false;
  /// qopt-build-train-step's options: loss, optimizer, entries (train,
  /// eval, gradients), schedule, warm-up / total steps, clipping,
  /// temperature.
  QOptBuildTrainStepPassOptions trainStep;
  /// Where to print the IR after the graph stage ("" = never).
  std::string dumpGraphIR;
  /// `qoptc --export-onnx`: write the model after its graph passes as
  /// ONNX here (the original model is `modelPath`); `exportContrib` allows
  /// onnxruntime's com.microsoft operators. Without an output library the
  /// compilation stops there.
  std::string exportONNXPath;
  std::string modelPath;
  bool exportContrib = true;
  /// Print how long each step took to stderr.
  bool timing = false;
};

/// What qoptc does for `--target cpu`: runs the front end and the graph
/// stage on `module` (as qopt-translate --import-onnx produces it), then
/// hands it to the CPU target, which writes the library, weights and
/// manifest. On failure no output file is left behind.
LogicalResult compileModelForCPU(ModuleOp module,
                                 const ModelCompileOptions &options,
                                 const CPUTargetOptions &target);

/// Registers `qopt-lower-to-cpu`, `qopt-lower-to-cuda` and the targets'
/// `qopt-cpu-codegen` and `qopt-cuda-codegen` for qopt-opt.
void registerQOptPipelines();

} // namespace qopt
} // namespace mlir

#endif // QOPT_PIPELINES_PIPELINES_H
