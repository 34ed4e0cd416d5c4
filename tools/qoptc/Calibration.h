//===- Calibration.h - Run a probe of the model on calibration data -*- C++
//-*-===//
//
// Data-driven adapter initialisations need what each layer sees: qoptc
// compiles a probe of the model that returns those inputs, runs it through
// the runtime over the calibration batches, and reduces them. It lives in
// the tool because the pipelines do not link the runtime.
//
//===----------------------------------------------------------------------===//

#ifndef QOPT_TOOLS_QOPTC_CALIBRATION_H
#define QOPT_TOOLS_QOPTC_CALIBRATION_H

#include "qopt/Target/CPU/CPUTarget.h"

#include "mlir/IR/BuiltinOps.h"

namespace mlir::qopt {

struct PeftLoraConfig;

/// EVA (PEFT's get_eva_state_dict) for the layers `config` targets in
/// `module` (graph IR after the front end; left unchanged): compiles a
/// probe in `workDir`, runs it over the batches of `batchSize` samples of
/// the .npz `dataPath` (at most `maxPasses` times), and writes each layer's
/// components (rank × in-features, after rank redistribution) to the
/// safetensors file `statePath`, for qopt-insert-lora's `eva-state`. Errors
/// name the file, array or layer at fault.
LogicalResult computeEvaState(ModuleOp module, const PeftLoraConfig &config,
                              StringRef dataPath, int64_t batchSize,
                              int64_t maxPasses, const CPUTargetOptions &target,
                              StringRef workDir, StringRef statePath);

/// LoRA-GA (PEFT's preprocess_loraga): the mean gradient of the causal-LM
/// loss with respect to the weight of every layer `config` targets, over
/// the batches of `batchSize` samples of the .npz `dataPath` (labels from
/// its `labels` array, else the input ids, -100 where the attention mask
/// is 0), from a probe compiled in `workDir`; written per module (out ×
/// in) to the safetensors file `statePath`, for qopt-insert-lora's
/// `loraga-state` (or `lorasb-state`: LoRA-SB starts from the same
/// estimate).
LogicalResult computeLoraGaState(ModuleOp module, const PeftLoraConfig &config,
                                 StringRef dataPath, int64_t batchSize,
                                 const CPUTargetOptions &target,
                                 StringRef workDir, StringRef statePath);

/// computeEvaState or computeLoraGaState (LoRA-GA, LoRA-SB), as
/// `config`'s init_lora_weights asks.
LogicalResult computeCalibrationState(ModuleOp module,
                                      const PeftLoraConfig &config,
                                      StringRef dataPath, int64_t batchSize,
                                      int64_t maxPasses,
                                      const CPUTargetOptions &target,
                                      StringRef workDir, StringRef statePath);

} // namespace mlir::qopt

#endif // QOPT_TOOLS_QOPTC_CALIBRATION_H
