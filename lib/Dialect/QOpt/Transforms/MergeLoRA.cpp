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
#include "llvm/Support/Format.h"
#include "llvm/Support/FormatVariadic.h"

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

/// One re-quantized merge, for the report.
struct RequantizedLayer {
  std::string module, format;
  /// ‖ΔW‖ / ‖W‖, ‖Q(W + ΔW) − (W + ΔW)‖ / ‖W + ΔW‖, and the share of ΔW
  /// the re-quantized weight keeps: 1 − ‖(Q(W + ΔW) − W) − ΔW‖ / ‖ΔW‖.
  double update, error, kept;
};

class Merger {
public:
  Merger(ModuleOp module, StringRef modelDir, bool requantize = false)
      : symbols(module), reader(modelDir), requantize(requantize),
        before(paramNames(module)) {}

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
  /// The re-quantized merges, in the order they happened.
  ArrayRef<RequantizedLayer> requantized() const { return report; }

private:
  template <typename OpT> LogicalResult mergeImpl(OpT op, bool keepAdapter);
  /// Merges into a quantized base weight: dequantized, the branch added,
  /// quantized again in the same layout.
  LogicalResult mergeQuantized(LoRAOp op, bool keepAdapter);
  /// DoRA: rescales each row of `w` to the magnitude vector's entry.
  LogicalResult applyMagnitude(LoRAOp op, dense::Matrix &w);
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
  bool requantize;
  llvm::StringSet<> before;
  SmallVector<Operation *> maybeDead;
  SmallVector<std::pair<ParamOp, std::string>> renames;
  std::vector<RequantizedLayer> report;
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
  if (!isa<RankedTensorType>(op.getWeight().getType())) {
    if constexpr (linear)
      return mergeQuantized(op, keepAdapter);
    return op.emitError() << "cannot merge the adapter of " << layer(op)
                          << " into its quantized " << what
                          << " (dequantize it first)";
  }
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
  if constexpr (linear)
    if (magnitude && failed(applyMagnitude(op, *w)))
      return failure();
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

LogicalResult Merger::applyMagnitude(LoRAOp op, dense::Matrix &w) {
  FailureOr<dense::Matrix> m = evaluate(op.getMagnitude(), "magnitude", op);
  if (failed(m))
    return failure();
  std::vector<float> norms = dense::rowNorms(w);
  for (int64_t i = 0; i < w.rows; ++i) {
    float factor = m->data[i] / norms[i];
    for (int64_t j = 0; j < w.cols; ++j)
      w.at(i, j) *= factor;
  }
  return success();
}

LogicalResult Merger::mergeQuantized(LoRAOp op, bool keepAdapter) {
  auto type = cast<QTensorType>(op.getWeight().getType());
  if (!requantize)
    return op.emitError()
           << "cannot merge the adapter of " << layer(op)
           << " into its quantized base weight without quantizing the sum "
              "again, which loses precision: ask for it with "
              "requantize=true (qoptc --merge --requantize), which reports "
              "the error per layer, or dequantize the weight first";
  if (keepAdapter)
    return op.emitError() << "cannot keep the adapter of " << layer(op)
                          << " merged into a re-quantized weight "
                             "(unmerging would not restore the base weight)";
  std::string why;
  FailureOr<QuantizeSpec> spec = specOfType(type, why);
  if (failed(spec))
    return op.emitError() << "cannot re-quantize the merged weight of "
                          << layer(op) << ": " << why;
  FailureOr<dense::Matrix> base =
      dequantizeKnown(reader, op.getWeight(), symbols, op, why, &maybeDead);
  if (failed(base)) {
    if (why.empty())
      return failure();
    return op.emitError() << "cannot merge the adapter of " << layer(op)
                          << ": its quantized base weight " << why;
  }
  dense::Matrix w = *base;
  if (failed(addBranch(op, w, 1.0f)) ||
      (op.getMagnitude() && failed(applyMagnitude(op, w))))
    return failure();
  auto module = op->getAttrOfType<StringAttr>("module");
  Value packed = createQuantizedWeight(
      symbols, op,
      module ? module.str() + ".weight" : std::string("merged_lora.weight"),
      quantizeMatrix(op.getContext(), *spec, w));
  if (!packed)
    return failure();
  // The report: the re-quantized weight read back as the lowering will.
  FailureOr<dense::Matrix> back =
      dequantizeKnown(reader, packed, symbols, op, why);
  if (failed(back))
    return op.emitError() << "cannot read back the re-quantized weight of "
                          << layer(op) << ": " << why;
  double baseNorm = 0, update = 0, mergedNorm = 0, error = 0, lost = 0;
  for (size_t i = 0; i < w.data.size(); ++i) {
    double b = base->data[i], m = w.data[i], q = back->data[i];
    baseNorm += b * b;
    update += (m - b) * (m - b);
    mergedNorm += m * m;
    error += (q - m) * (q - m);
    lost += ((q - b) - (m - b)) * ((q - b) - (m - b));
  }
  auto ratio = [](double num, double den) {
    return den > 0 ? std::sqrt(num / den) : 0.0;
  };
  report.push_back({module ? module.str() : std::string("?"), spec->format,
                    ratio(update, baseNorm), ratio(error, mergedNorm),
                    update > 0 ? 1.0 - ratio(lost, update) : 1.0});
  unload(op, packed);
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
  restoreParamNames(cast<ModuleOp>(symbols.getOp()), before, symbols);
}

/// Runs `step` on every qopt.lora and qopt.lora_embedding that `select`
/// accepts (given whether the op is merged), then cleans up.
template <typename Select, typename Step>
LogicalResult forEachLoRA(ModuleOp module, StringRef modelDir, Select select,
                          Step step, bool requantize = false,
                          llvm::raw_ostream *reportTo = nullptr) {
  SmallVector<Operation *> ops;
  module.walk([&](Operation *op) {
    if (isa<LoRAOp, LoRAEmbeddingOp>(op) && select(op->hasAttr("merged")))
      ops.push_back(op);
  });
  if (ops.empty())
    return success();
  Merger merger(module, modelDir, requantize);
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
  if (reportTo && !merger.requantized().empty()) {
    llvm::raw_ostream &os = *reportTo;
    os << "qopt-merge-lora: adapters merged into quantized weights, "
          "quantized again (relative Frobenius norms):\n"
       << llvm::left_justify("module", 40) << llvm::left_justify("format", 10)
       << llvm::left_justify("update", 12) << llvm::left_justify("error", 12)
       << "update kept\n";
    for (const RequantizedLayer &l : merger.requantized())
      os << llvm::left_justify(l.module, 40) << llvm::left_justify(l.format, 10)
         << llvm::left_justify(llvm::formatv("{0:e2}", l.update).str(), 12)
         << llvm::left_justify(llvm::formatv("{0:e2}", l.error).str(), 12)
         << llvm::formatv("{0:f1}%", 100.0 * l.kept) << "\n";
  }
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
            },
            requantize, &llvm::errs())))
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
