//===- MergeLoRA.cpp - Merge LoRA branches into base weights --------------===//
//
// PEFT's merge_and_unload / merge_adapter / unmerge_adapter at compile time:
// the branch's product is added to (or taken out of) the base weight, DoRA's
// then rescaled row by row, in a new parameter.
//
//===----------------------------------------------------------------------===//

#include "qopt/Dialect/QOpt/Transforms/Passes.h"
#include "qopt/Dialect/QOpt/Transforms/Weights.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/IR/Builders.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/Transforms/RegionUtils.h"

#include <cmath>
#include <type_traits>

namespace mlir::qopt {
#define GEN_PASS_DEF_QOPTMERGELORAPASS
#define GEN_PASS_DEF_QOPTUNMERGELORAPASS
#include "qopt/Dialect/QOpt/Transforms/Passes.h.inc"
} // namespace mlir::qopt

using namespace mlir;
using namespace mlir::qopt;
namespace dense = ::qopt::dense;

namespace {

class Merger {
public:
  Merger(ModuleOp module, StringRef modelDir)
      : symbols(module), reader(modelDir) {}

  /// Merges the branch into the weight; with `keepAdapter` the branch stays,
  /// marked merged (PEFT's merge_adapter), else it goes (merge_and_unload).
  /// (A lora.Embedding's table gains scale · Aᵀ · Bᵀ.)
  LogicalResult merge(LoRAOp op, bool keepAdapter) {
    return mergeImpl(op, keepAdapter);
  }
  LogicalResult merge(LoRAEmbeddingOp op, bool keepAdapter) {
    return mergeImpl(op, keepAdapter);
  }
  /// Takes a merged branch back out of its weight (PEFT's unmerge_adapter).
  LogicalResult unmerge(LoRAOp op) { return unmergeImpl(op); }
  LogicalResult unmerge(LoRAEmbeddingOp op) { return unmergeImpl(op); }
  /// Removes what the merges left unread and gives the new weights their
  /// preferred names where those became free.
  void cleanUp();

private:
  template <typename OpT> LogicalResult mergeImpl(OpT op, bool keepAdapter);
  template <typename OpT> LogicalResult unmergeImpl(OpT op);
  std::string layer(Operation *op) {
    auto module = op->getAttrOfType<StringAttr>("module");
    return module ? "module '" + module.str() + "'" : std::string("this layer");
  }
  FailureOr<dense::Matrix> evaluate(Value value, StringRef what, Operation *op);
  LogicalResult addBranch(LoRAOp op, dense::Matrix &w, float sign);
  LogicalResult addBranch(LoRAEmbeddingOp op, dense::Matrix &w, float sign);
  /// A new parameter `<module>.weight` holding `w`, loaded before `op`,
  /// whose operand `weight` it replaces.
  Value newWeight(Operation *op, Value weight, const dense::Matrix &w);
  /// Replaces `op` by a linear layer (a lookup) on `weight`.
  void unload(LoRAOp op, Value weight);
  void unload(LoRAEmbeddingOp op, Value weight);

  SymbolTable symbols;
  WeightReader reader;
  SmallVector<Operation *> maybeDead;
  SmallVector<std::pair<ParamOp, std::string>> renames;
};

/// The value of `value` at compile time (WeightReader::evaluate), with an
/// error naming the layer and the operand otherwise.
FailureOr<dense::Matrix> Merger::evaluate(Value value, StringRef what,
                                          Operation *op) {
  std::string why;
  FailureOr<dense::Matrix> m =
      reader.evaluate(value, symbols, op, why, &maybeDead);
  if (failed(m) && !why.empty())
    return op->emitError() << "cannot "
                           << (op->hasAttr("merged") ? "unmerge" : "merge")
                           << " the adapter of " << layer(op) << ": its "
                           << what << " " << why;
  return m;
}

/// Adds sign · scale · B · M · diag(g) · A to `w`.
LogicalResult Merger::addBranch(LoRAOp op, dense::Matrix &w, float sign) {
  FailureOr<dense::Matrix> a = evaluate(op.getLoraA(), "lora_a", op);
  FailureOr<dense::Matrix> b = evaluate(op.getLoraB(), "lora_b", op);
  if (failed(a) || failed(b))
    return failure();
  int64_t rank = a->rows;
  // z = A x, then gate, then middle: the product the branch applies is
  // B · M · diag(g) · A.
  dense::Matrix right = *a;
  if (Value gate = op.getGate()) {
    FailureOr<dense::Matrix> g = evaluate(gate, "gate", op);
    if (failed(g))
      return failure();
    for (int64_t i = 0; i < rank; ++i)
      for (int64_t j = 0; j < right.cols; ++j)
        right.at(i, j) *= g->data[i];
  }
  if (Value middle = op.getMiddle()) {
    FailureOr<dense::Matrix> m = evaluate(middle, "middle", op);
    if (failed(m))
      return failure();
    right = dense::matmul(*m, right);
  }
  dense::gemm(false, false, sign * float(op.getScale()), *b, right, 1.0f, w);
  return success();
}

Value Merger::newWeight(Operation *op, Value weight, const dense::Matrix &w) {
  auto weightType = cast<RankedTensorType>(weight.getType());
  auto module = op->getAttrOfType<StringAttr>("module");
  std::string preferred =
      module ? module.str() + ".weight" : std::string("merged_lora.weight");
  // The preferred name is often the old weight's, which is only free once
  // that is gone: until then the new one has a suffix (cleanUp renames).
  ParamOp param =
      createFloatParam(symbols, op->getLoc(), preferred, weightType, w.data);
  if (!param)
    return Value();
  renames.emplace_back(param, preferred);
  OpBuilder builder(op);
  return LoadParamOp::create(builder, op->getLoc(), weightType,
                             param.getSymName());
}

/// The merge both kinds of branch share; DoRA's rescaling is the linear
/// layer's alone.
template <typename OpT>
LogicalResult Merger::mergeImpl(OpT op, bool keepAdapter) {
  constexpr bool linear = std::is_same_v<OpT, LoRAOp>;
  StringRef what = linear ? "base weight" : "table";
  if (op.getMerged()) {
    if (!keepAdapter)
      unload(op, op.getWeight());
    return success();
  }
  if (!isa<RankedTensorType>(op.getWeight().getType()))
    return op.emitError() << "cannot merge the adapter of " << layer(op)
                          << " into its quantized " << what
                          << " (dequantize it first)";
  Value magnitude;
  if constexpr (linear)
    magnitude = op.getMagnitude();
  if (keepAdapter && magnitude)
    return op.emitError() << "cannot merge the DoRA adapter of " << layer(op)
                          << " and keep it (unmerging would need the row "
                             "norms; use keep-adapter=false)";
  FailureOr<dense::Matrix> w = evaluate(op.getWeight(), what, op);
  if (failed(w) || failed(addBranch(op, *w, 1.0f)))
    return failure();
  if (magnitude) {
    FailureOr<dense::Matrix> m = evaluate(magnitude, "magnitude", op);
    if (failed(m))
      return failure();
    std::vector<float> norms = dense::rowNorms(*w);
    for (int64_t i = 0; i < w->rows; ++i) {
      float factor = m->data[i] / norms[i];
      for (int64_t j = 0; j < w->cols; ++j)
        w->at(i, j) *= factor;
    }
  }
  Value merged = newWeight(op, op.getWeight(), *w);
  if (!merged)
    return failure();
  if (!keepAdapter) {
    unload(op, merged);
    return success();
  }
  op.getWeightMutable().assign(merged);
  op.setMerged(true);
  return success();
}

template <typename OpT> LogicalResult Merger::unmergeImpl(OpT op) {
  constexpr bool linear = std::is_same_v<OpT, LoRAOp>;
  FailureOr<dense::Matrix> w =
      evaluate(op.getWeight(), linear ? "merged weight" : "merged table", op);
  if (failed(w) || failed(addBranch(op, *w, -1.0f)))
    return failure();
  Value base = newWeight(op, op.getWeight(), *w);
  if (!base)
    return failure();
  op.getWeightMutable().assign(base);
  op.setMerged(false);
  return success();
}

void Merger::unload(LoRAOp op, Value weight) {
  OpBuilder builder(op);
  auto linear =
      LinearOp::create(builder, op.getLoc(), op.getType(), op.getInput(),
                       weight, op.getBias(), op.getModuleAttr());
  // The factors go with the branch: cleanUp removes what nothing reads.
  for (Value factor : {op.getLoraA(), op.getLoraB(), op.getMagnitude(),
                       op.getMiddle(), op.getGate()})
    if (Operation *def = factor ? factor.getDefiningOp() : nullptr)
      maybeDead.push_back(def);
  op.replaceAllUsesWith(linear.getResult());
  op.erase();
}

/// Adds sign · scale · Aᵀ · Bᵀ (V×D) to the table `w`.
LogicalResult Merger::addBranch(LoRAEmbeddingOp op, dense::Matrix &w,
                                float sign) {
  FailureOr<dense::Matrix> a = evaluate(op.getLoraA(), "lora_a", op);
  FailureOr<dense::Matrix> b = evaluate(op.getLoraB(), "lora_b", op);
  if (failed(a) || failed(b))
    return failure();
  dense::gemm(true, true, sign * float(op.getScale()), *a, *b, 1.0f, w);
  return success();
}

void Merger::unload(LoRAEmbeddingOp op, Value weight) {
  OpBuilder builder(op);
  auto lookup = EmbeddingOp::create(builder, op.getLoc(), op.getType(),
                                    op.getIds(), weight, op.getModuleAttr());
  for (Value factor : {op.getLoraA(), op.getLoraB()})
    if (Operation *def = factor.getDefiningOp())
      maybeDead.push_back(def);
  op.replaceAllUsesWith(lookup.getResult());
  op.erase();
}

void Merger::cleanUp() {
  eraseDeadOps(maybeDead, symbols);
  for (auto &[param, name] : renames)
    if (!symbols.lookup(name))
      (void)symbols.rename(param, name);
}

/// Runs `step` on every qopt.lora and qopt.lora_embedding that `select`
/// accepts (given whether the op is merged), then cleans up.
template <typename Select, typename Step>
LogicalResult forEachLoRA(ModuleOp module, StringRef modelDir, Select select,
                          Step step) {
  SmallVector<Operation *> ops;
  module.walk([&](Operation *op) {
    if (isa<LoRAOp, LoRAEmbeddingOp>(op) && select(op->hasAttr("merged")))
      ops.push_back(op);
  });
  if (ops.empty())
    return success();
  Merger merger(module, modelDir);
  bool failedAny = false;
  for (Operation *op : ops) {
    if (auto lora = dyn_cast<LoRAOp>(op))
      failedAny |= failed(step(merger, lora));
    else
      failedAny |= failed(step(merger, cast<LoRAEmbeddingOp>(op)));
  }
  if (failedAny)
    return failure();
  merger.cleanUp();
  return success();
}

struct QOptMergeLoRAPass
    : mlir::qopt::impl::QOptMergeLoRAPassBase<QOptMergeLoRAPass> {
  using Base::Base;

  void runOnOperation() override {
    if (failed(forEachLoRA(
            getOperation(), modelDir, [](bool) { return true; },
            [&](Merger &merger, auto op) {
              return merger.merge(op, keepAdapter);
            })))
      signalPassFailure();
  }
};

struct QOptUnmergeLoRAPass
    : mlir::qopt::impl::QOptUnmergeLoRAPassBase<QOptUnmergeLoRAPass> {
  using Base::Base;

  void runOnOperation() override {
    if (failed(forEachLoRA(
            getOperation(), modelDir, [](bool merged) { return merged; },
            [](Merger &merger, auto op) { return merger.unmerge(op); })))
      signalPassFailure();
  }
};

} // namespace
