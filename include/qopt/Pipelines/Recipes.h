//===- Recipes.h - Named compression / fine-tuning pipelines ----*- C++ -*-===//
//
// A recipe is a YAML file naming what `qoptc` does to a model: graph passes
// (outlier passes first), weight quantization, a PEFT adapter config, and
// the flags code generation needs. qopt ships one per method in recipes/
// (built into the tools); a user's own file works the same way.
//
//   name: qlora
//   summary: NF4 weights with double quantization, LoRA on every linear layer
//   paper: Dettmers et al., QLoRA ... arXiv:2305.14314
//   quantize: nf4:block=64,double-quant
//   adapter: {r: 16, lora_alpha: 32, lora_dropout: 0.05, target_modules:
//   all-linear}
//
//===----------------------------------------------------------------------===//

#ifndef QOPT_PIPELINES_RECIPES_H
#define QOPT_PIPELINES_RECIPES_H

#include "qopt/Dialect/QOpt/Transforms/Passes.h"

#include "mlir/IR/MLIRContext.h"
#include "llvm/ADT/SmallVector.h"
#include "llvm/Support/Error.h"

#include <optional>

#include <string>
#include <vector>

namespace mlir::qopt {

struct Recipe {
  std::string name, summary, paper;
  /// Graph passes (a textual pipeline; the leading outlier passes run
  /// before quantization, the rest after adapters).
  std::string graphPasses;
  /// `qoptc --quantize` spec, and the layers it applies to.
  std::string quantize;
  std::vector<std::string> quantizeModules;
  /// `qoptc --quantize-activations` spec (int8:per-token, …).
  std::string quantizeActivations;
  /// A PEFT LoraConfig as JSON (adapter_config.json's keys); empty: none.
  std::string adapterJson;
  /// Whether the recipe needs --calibration-data.
  bool calibration = false;
  /// `qoptc --int8-activations`.
  bool int8Activations = false;
};

/// The names of the recipes built into the tools, sorted.
std::vector<std::string> builtinRecipeNames();

/// The recipe `nameOrPath`: a built-in name, or a YAML file (a path ending
/// in .yaml / .yml). Unknown names, unknown keys, values of the wrong kind
/// and malformed YAML are errors naming the file, line and key.
llvm::Expected<Recipe> loadRecipe(llvm::StringRef nameOrPath);

/// The recipe's passes in the order qoptc runs them, as a textual pass
/// pipeline (`builtin.module(...)`); options whose values only qoptc
/// supplies (the model's folder, calibration statistics) are left out.
llvm::Expected<std::string> recipePipeline(const Recipe &recipe,
                                           MLIRContext *context);

/// The top-level elements of a textual pass pipeline (commas inside
/// options' braces do not split).
llvm::SmallVector<std::string> splitPipeline(llvm::StringRef text);

/// The pass name of a pipeline element (`qopt-smooth{alpha=0.5}`).
llvm::StringRef pipelinePassName(llvm::StringRef element);

/// A pipeline split into its leading outlier passes (qopt-smooth,
/// qopt-rotate, qopt-svdquant: they rewrite float weights, so qoptc runs
/// them before quantization and adapters) and the rest.
std::pair<std::string, std::string>
splitOutlierPasses(llvm::StringRef pipeline);

/// qopt-quantize-weights' options for a `--quantize` spec and the layers it
/// applies to; the message says what is wrong with the spec.
/// qopt-insert-fake-quant's options for `qoptc --quantize-activations SPEC`
/// on the layers `modules` selects (--quantize's selection; empty: its
/// default).
QOptInsertFakeQuantPassOptions
activationQuantOptions(llvm::StringRef spec,
                       llvm::ArrayRef<std::string> modules);

std::optional<std::string>
quantizeWeightsOptions(llvm::StringRef spec,
                       llvm::ArrayRef<std::string> modules,
                       QOptQuantizeWeightsPassOptions &options);

} // namespace mlir::qopt

#endif // QOPT_PIPELINES_RECIPES_H
