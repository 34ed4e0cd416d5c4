//===- TrainStep.cpp - Loss, gradients and optimizer as one entry ---------===//
//
// Turns a model's entry (inputs, parameters) -> (logits, ...) into a
// training entry: labels as a new input, the loss built on the logits, its
// gradients (Autodiff.h) and the optimizer's update of every trainable
// parameter and of its state, returned as parameter updates the runtime
// commits after the run (the trainable-state ABI).
//
//===----------------------------------------------------------------------===//

#include "qopt/Training/Passes.h"

#include "qopt/Conversion/Utils/LinalgBuilders.h"
#include "qopt/Dialect/QOpt/IR/QOpt.h"
#include "qopt/Training/ActivationMemory.h"
#include "qopt/Training/Autodiff.h"
#include "qopt/Training/Optimizer.h"

#include "mlir/Dialect/Linalg/Transforms/Transforms.h"
#include "mlir/Transforms/GreedyPatternRewriteDriver.h"
#include "llvm/ADT/StringExtras.h"
#include "llvm/ADT/StringSet.h"
#include "llvm/Support/FormatVariadic.h"

#include <cmath>

namespace mlir::qopt {
#define GEN_PASS_DEF_QOPTBUILDTRAINSTEPPASS
#include "qopt/Training/Passes.h.inc"
} // namespace mlir::qopt

using namespace mlir;
using namespace mlir::qopt;

namespace {

//===----------------------------------------------------------------------===//
// Losses
//===----------------------------------------------------------------------===//

Value f32(OpBuilder &b, Location loc, double v) {
  return arith::ConstantOp::create(b, loc, b.getF32FloatAttr(v));
}

/// Sum of cross-entropies of `logits` [..., V] (any float type, computed in
/// f32) against integer `labels` [...], positions labelled `ignore` left
/// out, divided by the number of positions counted: torch's
/// cross_entropy(reduction="mean", ignore_index=-100). 0/0 (nothing
/// counted) is NaN, as in torch.
Value crossEntropy(OpBuilder &b, Location loc, Value logits, Value labels) {
  auto type = cast<RankedTensorType>(logits.getType());
  int64_t rank = type.getRank();
  int64_t axis = rank - 1;
  // Row max, for a stable log-sum-exp.
  Value max = createTrailingReduction(
      b, loc, logits, axis, false, {}, -INFINITY,
      [](OpBuilder &nb, Location l, ValueRange a) -> Value {
        return arith::MaximumFOp::create(nb, l, castToF32(nb, l, a[0]), a[1]);
      });
  // The log-sum-exp does not depend on its shift: no gradient.
  max.getDefiningOp()->setAttr(kNoGradientAttr, b.getUnitAttr());
  Value sumExp = createTrailingReduction(
      b, loc, logits, axis, false, {max}, 0.0,
      [](OpBuilder &nb, Location l, ValueRange a) -> Value {
        Value d = arith::SubFOp::create(nb, l, castToF32(nb, l, a[0]), a[1]);
        return arith::AddFOp::create(nb, l, a[2],
                                     math::ExpOp::create(nb, l, d));
      });
  // The logit of the label: a sum over V of the one matching position.
  Value picked = createTrailingReduction(
      b, loc, logits, axis, false, {labels}, 0.0,
      [&](OpBuilder &nb, Location l, ValueRange a) -> Value {
        Value v = linalg::IndexOp::create(nb, l, axis);
        Value label =
            arith::IndexCastOp::create(nb, l, nb.getIndexType(), a[1]);
        Value hit =
            arith::CmpIOp::create(nb, l, arith::CmpIPredicate::eq, v, label);
        Value term = arith::SelectOp::create(nb, l, hit, castToF32(nb, l, a[0]),
                                             f32(nb, l, 0.0));
        return arith::AddFOp::create(nb, l, a[2], term);
      });
  // Per position: counted ? max + log(sumExp) - picked : 0, summed; and
  // the count.
  SmallVector<AffineMap> rowMaps(
      4, b.getMultiDimIdentityMap(axis)); // labels, max, sumExp, picked
  auto scalarMap = AffineMap::get(axis, 0, b.getContext());
  SmallVector<utils::IteratorType> reduceAll(axis,
                                             utils::IteratorType::reduction);
  Value zeroSum = createFilledTensor(b, loc, {}, b.getF32Type(), 0.0);
  SmallVector<AffineMap> maps = rowMaps;
  maps.push_back(scalarMap);
  Value total =
      linalg::GenericOp::create(
          b, loc, zeroSum.getType(), ValueRange{labels, max, sumExp, picked},
          ValueRange{zeroSum}, maps, reduceAll,
          [&](OpBuilder &nb, Location l, ValueRange a) {
            Value ignore = arith::ConstantOp::create(
                nb, l, nb.getIntegerAttr(a[0].getType(), -100));
            Value counted = arith::CmpIOp::create(
                nb, l, arith::CmpIPredicate::ne, a[0], ignore);
            Value lse = arith::AddFOp::create(nb, l, a[1],
                                              math::LogOp::create(nb, l, a[2]));
            Value nll = arith::SubFOp::create(nb, l, lse, a[3]);
            Value term =
                arith::SelectOp::create(nb, l, counted, nll, f32(nb, l, 0.0));
            linalg::YieldOp::create(
                nb, l, arith::AddFOp::create(nb, l, a[4], term).getResult());
          })
          .getResult(0);
  Value count =
      linalg::GenericOp::create(
          b, loc, zeroSum.getType(), ValueRange{labels}, ValueRange{zeroSum},
          ArrayRef<AffineMap>{rowMaps[0], scalarMap}, reduceAll,
          [&](OpBuilder &nb, Location l, ValueRange a) {
            Value ignore = arith::ConstantOp::create(
                nb, l, nb.getIntegerAttr(a[0].getType(), -100));
            Value counted = arith::CmpIOp::create(
                nb, l, arith::CmpIPredicate::ne, a[0], ignore);
            Value one = arith::SelectOp::create(nb, l, counted, f32(nb, l, 1.0),
                                                f32(nb, l, 0.0));
            linalg::YieldOp::create(
                nb, l, arith::AddFOp::create(nb, l, a[1], one).getResult());
          })
          .getResult(0);
  return createElementwise(
      b, loc, total, {total, count},
      {AffineMap::get(0, 0, b.getContext()),
       AffineMap::get(0, 0, b.getContext())},
      [](OpBuilder &nb, Location l, ValueRange a) -> Value {
        return arith::DivFOp::create(nb, l, a[0], a[1]);
      });
}

/// Causal-LM loss as transformers computes it: logits [B, S, V] at
/// positions 0 … S-2 against labels [B, S] at 1 … S-1.
Value causalLMLoss(OpBuilder &b, Location loc, Value logits, Value labels) {
  SmallVector<OpFoldResult> sizes = tensor::getMixedSizes(b, loc, logits);
  OpFoldResult shifted;
  if (std::optional<int64_t> seq = getConstantIntValue(sizes[1])) {
    shifted = b.getIndexAttr(*seq - 1);
  } else {
    Value one = arith::ConstantIndexOp::create(b, loc, 1);
    shifted =
        arith::SubIOp::create(
            b, loc, getValueOrCreateConstantIndexOp(b, loc, sizes[1]), one)
            .getResult();
  }
  auto slice = [&](Value v, ArrayRef<OpFoldResult> offsets,
                   ArrayRef<OpFoldResult> sliceSizes) -> Value {
    SmallVector<OpFoldResult> strides(offsets.size(), b.getIndexAttr(1));
    return tensor::ExtractSliceOp::create(b, loc, v, offsets, sliceSizes,
                                          strides);
  };
  Value z =
      slice(logits, {b.getIndexAttr(0), b.getIndexAttr(0), b.getIndexAttr(0)},
            {sizes[0], shifted, sizes[2]});
  Value y = slice(labels, {b.getIndexAttr(0), b.getIndexAttr(1)},
                  {sizes[0], shifted});
  return crossEntropy(b, loc, z, y);
}

/// The product of `sizes` (elements, or positions), as f32.
Value countF32(OpBuilder &b, Location loc, ArrayRef<OpFoldResult> sizes) {
  Value n = arith::ConstantIndexOp::create(b, loc, 1);
  for (OpFoldResult size : sizes)
    n = arith::MulIOp::create(b, loc, n,
                              getValueOrCreateConstantIndexOp(b, loc, size));
  return arith::UIToFPOp::create(
      b, loc, b.getF32Type(),
      arith::IndexCastUIOp::create(b, loc, b.getI64Type(), n));
}

/// mean((output - target)^2), as torch's mse_loss.
Value mseLoss(OpBuilder &b, Location loc, Value output, Value target) {
  int64_t rank = cast<RankedTensorType>(output.getType()).getRank();
  Value zero = createFilledTensor(b, loc, {}, b.getF32Type(), 0.0);
  SmallVector<AffineMap> maps = {b.getMultiDimIdentityMap(rank),
                                 b.getMultiDimIdentityMap(rank),
                                 AffineMap::get(rank, 0, b.getContext())};
  SmallVector<utils::IteratorType> reduceAll(rank,
                                             utils::IteratorType::reduction);
  Value total =
      linalg::GenericOp::create(
          b, loc, zero.getType(), ValueRange{output, target}, ValueRange{zero},
          maps, reduceAll,
          [](OpBuilder &nb, Location l, ValueRange a) {
            Value d = arith::SubFOp::create(nb, l, castToF32(nb, l, a[0]),
                                            castToF32(nb, l, a[1]));
            Value sq = arith::MulFOp::create(nb, l, d, d);
            linalg::YieldOp::create(
                nb, l, arith::AddFOp::create(nb, l, a[2], sq).getResult());
          })
          .getResult(0);
  Value count = countF32(b, loc, tensor::getMixedSizes(b, loc, output));
  return createElementwise(
      b, loc, total, {total}, {AffineMap::get(0, 0, b.getContext())},
      [&](OpBuilder &nb, Location l, ValueRange a) -> Value {
        return arith::DivFOp::create(nb, l, a[0], count);
      });
}

/// Knowledge distillation: T² · KL(softmax(teacher / T) ‖ softmax(student /
/// T)) summed over the last dimension and averaged over the positions (all
/// leading dimensions) — torch's kl_div(log_softmax(s / T), softmax(t / T),
/// reduction="batchmean") on the logits flattened to [positions, V], times
/// T², as distillation recipes write it.
Value klDistillLoss(OpBuilder &b, Location loc, Value student, Value teacher,
                    double temperature) {
  int64_t rank = cast<RankedTensorType>(student.getType()).getRank();
  int64_t axis = rank - 1;
  double invT = 1.0 / temperature;
  // Row max and sum of exp of z / T, for a log-softmax.
  auto rowStats = [&](Value z) -> std::pair<Value, Value> {
    Value max = createTrailingReduction(
        b, loc, z, axis, false, {}, -INFINITY,
        [&](OpBuilder &nb, Location l, ValueRange a) -> Value {
          Value v = arith::MulFOp::create(nb, l, castToF32(nb, l, a[0]),
                                          f32(nb, l, invT));
          return arith::MaximumFOp::create(nb, l, v, a[1]);
        });
    // The log-softmax does not depend on its shift: no gradient.
    max.getDefiningOp()->setAttr(kNoGradientAttr, b.getUnitAttr());
    Value sum = createTrailingReduction(
        b, loc, z, axis, false, {max}, 0.0,
        [&](OpBuilder &nb, Location l, ValueRange a) -> Value {
          Value v = arith::MulFOp::create(nb, l, castToF32(nb, l, a[0]),
                                          f32(nb, l, invT));
          Value e =
              math::ExpOp::create(nb, l, arith::SubFOp::create(nb, l, v, a[1]));
          return arith::AddFOp::create(nb, l, a[2], e);
        });
    return {max, sum};
  };
  auto [maxS, sumS] = rowStats(student);
  auto [maxT, sumT] = rowStats(teacher);
  AffineMap id = b.getMultiDimIdentityMap(rank);
  SmallVector<AffineExpr> rowExprs;
  for (int64_t d = 0; d < axis; ++d)
    rowExprs.push_back(b.getAffineDimExpr(d));
  AffineMap row = AffineMap::get(rank, 0, rowExprs, b.getContext());
  Value zero = createFilledTensor(b, loc, {}, b.getF32Type(), 0.0);
  SmallVector<utils::IteratorType> reduceAll(rank,
                                             utils::IteratorType::reduction);
  Value total =
      linalg::GenericOp::create(
          b, loc, zero.getType(),
          ValueRange{student, teacher, maxS, sumS, maxT, sumT},
          ValueRange{zero},
          ArrayRef<AffineMap>{id, id, row, row, row, row,
                              AffineMap::get(rank, 0, b.getContext())},
          reduceAll,
          [&](OpBuilder &nb, Location l, ValueRange a) {
            auto logSoftmax = [&](Value x, Value max, Value sum) -> Value {
              Value v = arith::MulFOp::create(nb, l, castToF32(nb, l, x),
                                              f32(nb, l, invT));
              return arith::SubFOp::create(nb, l,
                                           arith::SubFOp::create(nb, l, v, max),
                                           math::LogOp::create(nb, l, sum));
            };
            Value ls = logSoftmax(a[0], a[2], a[3]);
            Value lt = logSoftmax(a[1], a[4], a[5]);
            Value pt = math::ExpOp::create(nb, l, lt);
            Value term = arith::MulFOp::create(
                nb, l, pt, arith::SubFOp::create(nb, l, lt, ls));
            linalg::YieldOp::create(
                nb, l, arith::AddFOp::create(nb, l, a[6], term).getResult());
          })
          .getResult(0);
  Value count = countF32(
      b, loc, ArrayRef(tensor::getMixedSizes(b, loc, student)).drop_back());
  Value scale = arith::DivFOp::create(
      b, loc, f32(b, loc, temperature * temperature), count);
  return createElementwise(
      b, loc, total, {total}, {AffineMap::get(0, 0, b.getContext())},
      [&](OpBuilder &nb, Location l, ValueRange a) -> Value {
        return arith::MulFOp::create(nb, l, a[0], scale);
      });
}

//===----------------------------------------------------------------------===//
// The pass
//===----------------------------------------------------------------------===//

struct QOptBuildTrainStepPass
    : qopt::impl::QOptBuildTrainStepPassBase<QOptBuildTrainStepPass> {
  using Base::Base;
  void runOnOperation() override;

private:
  LogicalResult build(func::FuncOp func, StringRef kind,
                      const OptimizerSpec &spec, bool accumulating);
  LogicalResult report(func::FuncOp func, Operation *firstBackward,
                       unsigned recomputed);

  llvm::StringMap<int64_t> sizes;
};

/// The index of the first parameter argument (inputs come before).
unsigned firstParameter(func::FuncOp func) {
  for (unsigned i = 0; i < func.getNumArguments(); ++i)
    if (func.getArgAttr(i, QOptDialect::ParamAttrHelper::getNameStr()) ||
        func.getArgAttr(i, QOptDialect::RngKeyAttrHelper::getNameStr()))
      return i;
  return func.getNumArguments();
}

/// Where optimizer state goes: after the parameters, before the key.
unsigned stateIndex(func::FuncOp func) {
  unsigned n = func.getNumArguments();
  if (n && func.getArgAttr(n - 1, QOptDialect::RngKeyAttrHelper::getNameStr()))
    return n - 1;
  return n;
}

/// What identifies an argument across entries: its parameter or input name.
std::string argumentKey(func::FuncOp func, unsigned i) {
  if (auto p = func.getArgAttrOfType<StringAttr>(
          i, QOptDialect::ParamAttrHelper::getNameStr()))
    return "param:" + p.str();
  if (func.getArgAttr(i, QOptDialect::RngKeyAttrHelper::getNameStr()))
    return "rng";
  if (auto n = func.getArgAttrOfType<StringAttr>(
          i, QOptDialect::NameAttrHelper::getNameStr()))
    return "input:" + n.str();
  return "input#" + std::to_string(i);
}

/// Training-mode dropout (loops marked kDropoutAttr, masks from
/// qopt.random_key): an evaluation entry runs without it, as inference
/// does; the others read the run's key, the entry's last argument (added
/// where the model had none), which the runtime advances after every run.
LogicalResult resolveDropout(func::FuncOp func, StringRef kind) {
  if (kind == "eval") {
    SmallVector<linalg::GenericOp> drops;
    func.walk([&](linalg::GenericOp op) {
      if (op->hasAttr(kDropoutAttr))
        drops.push_back(op);
    });
    for (linalg::GenericOp op : drops) {
      op.getResult(0).replaceAllUsesWith(op.getDpsInputs()[0]);
      op.erase();
    }
  }
  // What only the dropped loops read (their random numbers) goes too.
  Block &block = func.getBody().front();
  for (Operation &op : llvm::make_early_inc_range(llvm::reverse(block)))
    if (isOpTriviallyDead(&op))
      op.erase();
  SmallVector<RandomKeyOp> keys;
  func.walk([&](RandomKeyOp op) { keys.push_back(op); });
  if (keys.empty())
    return success();
  unsigned n = func.getNumArguments();
  if (n == 0 ||
      !func.getArgAttr(n - 1, QOptDialect::RngKeyAttrHelper::getNameStr())) {
    if (failed(func.insertArgument(n, keys.front().getType(),
                                   getRandomKeyArgAttrs(func.getContext()),
                                   keys.front().getLoc())))
      return failure();
    n = func.getNumArguments();
  }
  for (RandomKeyOp key : keys) {
    key.getResult().replaceAllUsesWith(func.getArgument(n - 1));
    key.erase();
  }
  return success();
}

/// Gives every function the arguments of the one with the most (the train
/// step's optimizer state), in its order.
LogicalResult alignArguments(ArrayRef<func::FuncOp> funcs) {
  func::FuncOp widest = funcs.front();
  for (func::FuncOp f : funcs)
    if (f.getNumArguments() > widest.getNumArguments())
      widest = f;
  for (func::FuncOp f : funcs) {
    if (f == widest)
      continue;
    for (unsigned i = 0; i < widest.getNumArguments(); ++i) {
      std::string key = argumentKey(widest, i);
      if (i < f.getNumArguments() && argumentKey(f, i) == key)
        continue;
      if (failed(f.insertArgument(i, widest.getArgument(i).getType(),
                                  widest.getArgAttrDict(i), f.getLoc())))
        return failure();
    }
    if (f.getNumArguments() != widest.getNumArguments())
      return f.emitError("qopt-build-train-step: internal error: the "
                         "entries' arguments differ");
  }
  return success();
}

//===----------------------------------------------------------------------===//
// Gradient accumulation
//===----------------------------------------------------------------------===//

/// Adds the accumulation state to `func` — `optimizer.accumulated` (int64,
/// micro-batches summed so far) and `<param>.grad_accum` per trainable
/// parameter, zero at first — and returns its updates. The accumulate
/// entry adds this batch's gradients (`applying` false); the train step
/// (`applying` true) replaces `grads` by the mean over the accumulated
/// micro-batches and this one, and empties the state.
LogicalResult accumulateGradients(OpBuilder &b, Location loc, func::FuncOp func,
                                  bool applying, ArrayRef<std::string> names,
                                  MutableArrayRef<Value> grads,
                                  SmallVectorImpl<ParameterUpdate> &updates) {
  unsigned index = stateIndex(func);
  auto i64Scalar = RankedTensorType::get({}, b.getI64Type());
  Value countState = addStateParameter(b, func, index++,
                                       "optimizer.accumulated", i64Scalar, loc);
  if (!countState)
    return failure();
  Value count = tensor::ExtractOp::create(b, loc, countState, ValueRange{});
  Value next = arith::AddIOp::create(
      b, loc, count, arith::ConstantOp::create(b, loc, b.getI64IntegerAttr(1)));
  Value newCount =
      applying ? arith::ConstantOp::create(b, loc, b.getI64IntegerAttr(0))
                     .getResult()
               : next;
  updates.push_back({"optimizer.accumulated",
                     tensor::FromElementsOp::create(b, loc, i64Scalar,
                                                    ValueRange{newCount})});
  // The train step's divisor: the micro-batches summed and its own.
  Value micro =
      applying
          ? arith::SIToFPOp::create(b, loc, b.getF32Type(), next).getResult()
          : Value();
  for (auto [name, grad] : llvm::zip(names, grads)) {
    auto type = cast<RankedTensorType>(grad.getType());
    Value sum =
        addStateParameter(b, func, index++, name + ".grad_accum", type, loc);
    if (!sum)
      return failure();
    int64_t rank = type.getRank();
    SmallVector<AffineMap> maps(2, b.getMultiDimIdentityMap(rank));
    Value total = createElementwise(
        b, loc, grad, {sum, grad}, maps,
        [&](OpBuilder &nb, Location l, ValueRange a) -> Value {
          Value added = arith::AddFOp::create(nb, l, a[0], a[1]);
          if (!applying)
            return added;
          return arith::DivFOp::create(
              nb, l, added,
              arith::TruncFOp::create(nb, l, a[0].getType(), micro));
        });
    if (applying) {
      grad = total;
      total = createFilledTensor(b, loc, tensor::getMixedSizes(b, loc, sum),
                                 type.getElementType(), 0.0);
    }
    updates.push_back({name + ".grad_accum", total});
  }
  return success();
}

void QOptBuildTrainStepPass::runOnOperation() {
  llvm::Expected<OptimizerSpec> spec = parseOptimizerSpec(optimizer);
  if (!spec) {
    getOperation().emitError()
        << "qopt-build-train-step: " << llvm::toString(spec.takeError());
    return signalPassFailure();
  }
  func::FuncOp model;
  for (auto func : getOperation().getOps<func::FuncOp>())
    if (func.isPublic() && !func.isExternal()) {
      if (model) {
        func.emitError("qopt-build-train-step: the module has more than one "
                       "entry function");
        return signalPassFailure();
      }
      model = func;
    }
  if (!model) {
    getOperation().emitError("qopt-build-train-step: no entry function");
    return signalPassFailure();
  }
  SmallVector<StringRef> kinds;
  StringRef(entry).split(kinds, ',', -1, /*KeepEmpty=*/false);
  llvm::StringSet<> seen;
  for (StringRef &kind : kinds) {
    kind = kind.trim();
    if (kind != "train" && kind != "eval" && kind != "gradients" &&
        kind != "accumulate") {
      model.emitError() << "qopt-build-train-step: entry '" << kind
                        << "' is not one of train, eval, gradients, "
                           "accumulate";
      return signalPassFailure();
    }
    if (!seen.insert(kind).second) {
      model.emitError() << "qopt-build-train-step: entry '" << kind
                        << "' is named twice";
      return signalPassFailure();
    }
  }
  if (kinds.empty()) {
    model.emitError("qopt-build-train-step: no entry to build");
    return signalPassFailure();
  }
  SmallVector<StringRef> sizeItems;
  StringRef(activationSizes).split(sizeItems, ',', -1, /*KeepEmpty=*/false);
  for (StringRef item : sizeItems) {
    auto [name, value] = item.trim().split('=');
    int64_t size;
    if (name.trim().empty() || value.trim().getAsInteger(10, size) ||
        size < 0) {
      model.emitError() << "qopt-build-train-step: activation-sizes: '"
                        << item.trim()
                        << "' is not NAME=SIZE (a size of 0 or more)";
      return signalPassFailure();
    }
    sizes[name.trim()] = size;
  }
  bool accumulating = seen.contains("accumulate");
  if (accumulating && !seen.contains("train")) {
    model.emitError("qopt-build-train-step: entry 'accumulate' needs 'train' "
                    "(the step that applies the accumulated gradients)");
    return signalPassFailure();
  }
  // One function per entry, each built on a copy of the model, named as
  // the runtime and Python know them.
  SmallVector<func::FuncOp> built;
  for (StringRef kind : kinds) {
    func::FuncOp f = model.clone();
    getOperation().getBody()->push_back(f);
    f.setSymName(kind == "train"        ? "train_step"
                 : kind == "eval"       ? "eval_step"
                 : kind == "accumulate" ? "accumulate_step"
                                        : "gradients");
    if (failed(build(f, kind, *spec, accumulating)))
      return signalPassFailure();
    built.push_back(f);
  }
  model.erase();
  // Every entry takes the same arguments (the runtime passes them all):
  // the optimizer state the train step added goes to the others too.
  if (failed(alignArguments(built)))
    return signalPassFailure();
  RewritePatternSet patterns(&getContext());
  linalg::populateEraseUnusedOperandsAndResultsPatterns(patterns);
  if (failed(applyPatternsGreedily(getOperation(), std::move(patterns))))
    return signalPassFailure();
}

LogicalResult QOptBuildTrainStepPass::build(func::FuncOp func, StringRef kind,
                                            const OptimizerSpec &spec,
                                            bool accumulating) {
  MLIRContext *ctx = func.getContext();
  StringRef nameAttr = QOptDialect::NameAttrHelper::getNameStr();
  StringRef paramAttr = QOptDialect::ParamAttrHelper::getNameStr();
  if (!func.getBody().hasOneBlock())
    return func.emitError("qopt-build-train-step: the entry must have one "
                          "block");
  if (schedule != "constant" && schedule != "linear" && schedule != "cosine")
    return func.emitError() << "qopt-build-train-step: schedule '" << schedule
                            << "' is not one of constant, linear, cosine";
  if (schedule != "constant" && totalSteps <= warmupSteps)
    return func.emitError() << "qopt-build-train-step: schedule '" << schedule
                            << "' needs total-steps greater than "
                               "warmup-steps";
  if (warmupSteps < 0 || maxGradNorm < 0)
    return func.emitError("qopt-build-train-step: warmup-steps and "
                          "max-grad-norm must not be negative");
  if (func.getNumResults() == 0)
    return func.emitError("qopt-build-train-step: the model has no output");
  if (failed(resolveDropout(func, kind)))
    return failure();
  auto ret = cast<func::ReturnOp>(func.getBody().front().getTerminator());
  Value output = ret.getOperand(0);
  auto outType = dyn_cast<RankedTensorType>(output.getType());
  if (!outType || !isa<FloatType>(outType.getElementType()))
    return func.emitError() << "qopt-build-train-step: the model's first "
                               "output must be float logits, not "
                            << output.getType();

  // The target: labels for the cross-entropies, a tensor like the output
  // for MSE. A new input after the model's.
  Location loc = func.getLoc();
  RankedTensorType targetType;
  StringRef targetName = "labels";
  Builder builder(ctx);
  if (loss == "causal-lm") {
    if (outType.getRank() != 3)
      return func.emitError() << "qopt-build-train-step: loss causal-lm "
                                 "needs logits [batch, seq, vocab], not "
                              << outType;
    targetType = RankedTensorType::get(outType.getShape().drop_back(),
                                       builder.getI64Type());
  } else if (loss == "seq-cls") {
    if (outType.getRank() != 2)
      return func.emitError() << "qopt-build-train-step: loss seq-cls needs "
                                 "logits [batch, classes], not "
                              << outType;
    targetType = RankedTensorType::get(outType.getShape().drop_back(),
                                       builder.getI64Type());
  } else if (loss == "mse") {
    targetType = outType;
    targetName = "targets";
  } else if (loss == "kl-distill") {
    if (!(temperature > 0))
      return func.emitError() << "qopt-build-train-step: temperature must be "
                                 "positive, not "
                              << temperature;
    targetType = outType;
    targetName = "teacher_logits";
  } else {
    return func.emitError() << "qopt-build-train-step: unknown loss '" << loss
                            << "' (causal-lm, seq-cls, mse, kl-distill)";
  }
  unsigned targetIndex = firstParameter(func);
  SmallVector<NamedAttribute> targetAttrs = {
      builder.getNamedAttr(nameAttr, builder.getStringAttr(targetName))};
  // Dynamic dimensions keep the names the output's dimensions have (the
  // runtime checks equally named sizes against each other), else those of
  // the model's first input.
  ArrayAttr names = func.getResultAttrOfType<ArrayAttr>(
      0, QOptDialect::DimNamesAttrHelper::getNameStr());
  if (!names && targetIndex > 0)
    names = func.getArgAttrOfType<ArrayAttr>(
        0, QOptDialect::DimNamesAttrHelper::getNameStr());
  if (names && names.size() >= (size_t)targetType.getRank())
    targetAttrs.push_back(
        builder.getNamedAttr(QOptDialect::DimNamesAttrHelper::getNameStr(),
                             builder.getArrayAttr(names.getValue().take_front(
                                 targetType.getRank()))));
  if (failed(func.insertArgument(targetIndex, targetType,
                                 builder.getDictionaryAttr(targetAttrs), loc)))
    return failure();
  Value target = func.getArgument(targetIndex);

  OpBuilder b(ret);
  Value lossValue = loss == "causal-lm" ? causalLMLoss(b, loc, output, target)
                    : loss == "seq-cls" ? crossEntropy(b, loc, output, target)
                    : loss == "kl-distill"
                        ? klDistillLoss(b, loc, output, target, temperature)
                        : mseLoss(b, loc, output, target);

  Operation *firstBackward = nullptr;
  unsigned recomputed = 0;
  SmallVector<Value> results = {lossValue};
  SmallVector<DictionaryAttr> resultAttrs = {builder.getDictionaryAttr(
      {builder.getNamedAttr(nameAttr, builder.getStringAttr("loss"))})};
  if (kind == "eval") {
    ret->setOperands(results);
  } else {
    SmallVector<Value> wrt;
    SmallVector<std::string> names;
    for (unsigned i = 0; i < func.getNumArguments(); ++i)
      if (func.getArgAttr(i, QOptDialect::TrainableAttrHelper::getNameStr())) {
        wrt.push_back(func.getArgument(i));
        names.push_back(
            func.getArgAttrOfType<StringAttr>(i, paramAttr).getValue().str());
      }
    if (wrt.empty())
      return func.emitError("qopt-build-train-step: the model has no "
                            "trainable parameter (load an adapter with "
                            "--train, or insert one)");
    Operation *lastForward = ret->getPrevNode();
    FailureOr<SmallVector<Value>> grads = buildGradients(func, lossValue, wrt);
    if (failed(grads))
      return failure();
    firstBackward = lastForward->getNextNode();
    if (gradientCheckpointing) {
      recomputed = recomputeSegments(func, firstBackward);
      if (!recomputed)
        func.emitWarning("qopt-build-train-step: gradient checkpointing "
                         "found no residual stream (qopt.residual_add) to "
                         "cut the model at: every activation is kept");
    }
    SmallVector<ParameterUpdate> updates;
    auto addUpdate = [&](const ParameterUpdate &update) {
      results.push_back(update.value);
      resultAttrs.push_back(builder.getDictionaryAttr({builder.getNamedAttr(
          paramAttr, builder.getStringAttr(update.param))}));
    };
    if (kind == "gradients") {
      for (auto [name, grad] : llvm::zip(names, *grads)) {
        results.push_back(grad);
        resultAttrs.push_back(builder.getDictionaryAttr({builder.getNamedAttr(
            nameAttr, builder.getStringAttr("grad." + name))}));
      }
    } else if (accumulating &&
               failed(accumulateGradients(b, loc, func, kind == "train", names,
                                          *grads, updates))) {
      return failure();
    }
    for (const ParameterUpdate &update : updates)
      addUpdate(update);
    if (kind == "train") {
      OptimizerBuilder opt(b, loc, spec, schedule, warmupSteps, totalSteps,
                           maxGradNorm);
      FailureOr<SmallVector<ParameterUpdate>> updates =
          opt.build(func, stateIndex(func), wrt, names, *grads);
      if (failed(updates))
        return failure();
      for (const ParameterUpdate &update : *updates)
        addUpdate(update);
    }
  }
  ret->setOperands(results);
  func.setFunctionType(FunctionType::get(ctx, func.getArgumentTypes(),
                                         ValueRange(results).getTypes()));
  func.setAllResultAttrs(resultAttrs);
  if (activationReport)
    return report(func, firstBackward, recomputed);
  return success();
}

/// `bytes` in MiB, and exactly.
static std::string formatBytes(uint64_t bytes) {
  return llvm::formatv("{0:F1} MiB ({1} bytes)", bytes / 1048576.0, bytes)
      .str();
}

LogicalResult QOptBuildTrainStepPass::report(func::FuncOp func,
                                             Operation *firstBackward,
                                             unsigned recomputed) {
  FailureOr<ActivationMemory> memory =
      estimateActivationMemory(func, firstBackward, sizes);
  if (failed(memory))
    return failure();
  InFlightDiagnostic remark = func.emitRemark();
  remark << "activation memory of " << func.getSymName();
  if (!activationSizes.empty())
    remark << " at " << activationSizes;
  remark << ": peak " << formatBytes(memory->peakBytes);
  if (firstBackward)
    remark << ", of which the forward keeps for the backward "
           << formatBytes(memory->keptBytes);
  if (firstBackward && gradientCheckpointing)
    remark << "; gradient checkpointing recomputes " << recomputed << " ops";
  return success();
}

} // namespace
