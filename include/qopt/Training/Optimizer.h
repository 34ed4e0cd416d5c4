//===- Optimizer.h - Optimizer steps built into a train entry -*- C++ -*-===//

#ifndef QOPT_TRAINING_OPTIMIZER_H
#define QOPT_TRAINING_OPTIMIZER_H

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/Builders.h"
#include "llvm/Support/Error.h"

#include <string>

namespace mlir::qopt {

/// An optimizer as `qoptc --optimizer` spells it:
/// "adamw:lr=1e-3,betas=0.9/0.999,eps=1e-8,weight_decay=0.01" or
/// "sgd:lr=0.1,momentum=0.9,dampening=0,nesterov=false,weight_decay=0".
/// Defaults are torch.optim's (AdamW's weight decay 0.01).
struct OptimizerSpec {
  enum Kind { AdamW, SGD } kind = AdamW;
  double lr = 1e-3;
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
  double weightDecay = 0.01;
  double momentum = 0.0, dampening = 0.0;
  bool nesterov = false;
};
llvm::Expected<OptimizerSpec> parseOptimizerSpec(StringRef text);

/// The new value of one mutable parameter (a trainable one or optimizer
/// state), returned by the train entry as its update.
struct ParameterUpdate {
  std::string param;
  Value value;
};

/// Adds a state parameter `name` of `type` to `func` at argument `index`:
/// zero at first, inline in the library, updated by the entries that
/// return it (optimizer moments, accumulated gradients). Null on failure.
Value addStateParameter(OpBuilder &b, func::FuncOp func, unsigned index,
                        StringRef name, RankedTensorType type, Location loc);

/// Builds one optimizer step (torch.optim's arithmetic, in f32 with the
/// scalar factors in f64 as torch's Python floats) over every trainable
/// parameter, with a learning-rate schedule (transformers' constant /
/// linear / cosine with warm-up) and global-norm clipping.
class OptimizerBuilder {
public:
  OptimizerBuilder(OpBuilder &b, Location loc, const OptimizerSpec &spec,
                   StringRef schedule, int64_t warmupSteps, int64_t totalSteps,
                   double maxGradNorm)
      : b(b), loc(loc), spec(spec), schedule(schedule.str()),
        warmupSteps(warmupSteps), totalSteps(totalSteps),
        maxGradNorm(maxGradNorm) {}

  /// Adds the optimizer state to `func` as state parameters at argument
  /// `stateIndex` (`optimizer.step`, then `<param>.exp_avg` /
  /// `<param>.exp_avg_sq` for AdamW or `<param>.momentum_buffer` for SGD
  /// with momentum, all zero at first) and returns every update.
  FailureOr<SmallVector<ParameterUpdate>>
  build(func::FuncOp func, unsigned stateIndex, ArrayRef<Value> params,
        ArrayRef<std::string> names, ArrayRef<Value> grads);

private:
  Value learningRate(Value step);

  OpBuilder &b;
  Location loc;
  OptimizerSpec spec;
  std::string schedule;
  int64_t warmupSteps, totalSteps;
  double maxGradNorm;
};

} // namespace mlir::qopt

#endif // QOPT_TRAINING_OPTIMIZER_H
