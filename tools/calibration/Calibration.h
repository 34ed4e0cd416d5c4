//===- Calibration.h - Run a probe of the model on calibration data -*- C++
//-*-===//
//
// Data-driven adapter initialisations need what each layer sees: qoptc
// compiles a probe of the model that returns those inputs, runs it through
// the runtime over the calibration batches, and reduces them. It lives in
// the tool because the pipelines do not link the runtime.
//
//===----------------------------------------------------------------------===//

#ifndef QOPT_TOOLS_CALIBRATION_CALIBRATION_H
#define QOPT_TOOLS_CALIBRATION_CALIBRATION_H

#include "qopt/Support/DenseMath.h"
#include "qopt/Target/CPU/CPUTarget.h"

#include "mlir/IR/BuiltinOps.h"

#include <string>
#include <vector>

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

/// The empirical Fisher diagonal of each weight of `modules` (each an f32
/// linear layer): the mean over the batches of `batchSize` samples of the
/// .npz `dataPath` of the squared gradient of the causal-LM loss (labels
/// from `labels`, else the input ids masked by `attention_mask`), from a
/// probe compiled in `workDir`. With batches of one sample, the mean of
/// per-sample squared gradients. Errors name `optionName` and the file.
LogicalResult
computeFisherDiagonals(ModuleOp module, ArrayRef<std::string> modules,
                       StringRef optionName, StringRef dataPath,
                       int64_t batchSize, const CPUTargetOptions &target,
                       StringRef workDir, std::vector<std::string> &names,
                       std::vector<::qopt::dense::Matrix> &diagonals);

/// What computeActivationStats records, and how it names itself.
struct ActivationStatsOptions {
  /// Samples per run of the probe (.npz data; a .jsonl runs one line a
  /// time).
  int64_t batchSize = 1;
  /// PEFT target_modules-style selection; empty: every named linear layer,
  /// the output head included.
  std::vector<std::string> modules;
  /// Also keep each layer's first keepRows input rows (tokens the attention
  /// mask keeps) as `<module>.input_rows`.
  int64_t keepRows = 0;
  /// Also record each layer's Fisher diagonal as `<module>.weight` (the
  /// weight's shape: what --fisher options read); .npz data only.
  bool fisher = false;
  /// A progress bar on stderr (when it is a terminal), and a summary line.
  bool progress = true;
  bool summary = true;
  /// How messages name the tool and its options.
  std::string toolName = "qoptc";
  std::string optionName = "--calibration-data";
  std::string batchSizeOption = "--calibration-batch-size";
};

/// Runs a probe of `module` (graph IR after the front end; left unchanged),
/// compiled in `workDir`, over the samples of `dataPath` (.npz: arrays
/// named after the model's inputs, first dimension = samples, `labels`
/// ignored; .jsonl: one object of the inputs per line, without the sample
/// dimension) and writes each selected linear layer's per-channel input
/// absmax (`<module>.input_absmax`, over the tokens an `attention_mask`
/// keeps) to the safetensors file `statsPath` (a .qstats file), whole or
/// not at all. Errors name the file, line, array or layer at fault.
LogicalResult computeActivationStats(ModuleOp module, StringRef dataPath,
                                     const ActivationStatsOptions &options,
                                     const CPUTargetOptions &target,
                                     StringRef workDir, StringRef statsPath);

} // namespace mlir::qopt

#endif // QOPT_TOOLS_CALIBRATION_CALIBRATION_H
