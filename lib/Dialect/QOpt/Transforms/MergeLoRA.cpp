//===- MergeLoRA.cpp - Merge LoRA branches into base weights --------------===//
//
// PEFT's merge_and_unload at compile time: the branch's product is added to
// the base weight (DoRA: then rescaled row by row) in a new parameter.
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

namespace mlir::qopt {
#define GEN_PASS_DEF_QOPTMERGELORAPASS
#include "qopt/Dialect/QOpt/Transforms/Passes.h.inc"
} // namespace mlir::qopt

using namespace mlir;
using namespace mlir::qopt;
namespace dense = ::qopt::dense;

namespace {

class Merger {
public:
  Merger(ModuleOp module, StringRef modelDir)
      : module(module), symbols(module), reader(modelDir) {}

  LogicalResult merge(LoRAOp op);
  /// Removes what the merges left unread and gives the new weights their
  /// preferred names where those became free.
  void cleanUp();

private:
  std::string layer(LoRAOp op) {
    return op.getModuleAttr() ? "module '" + op.getModule()->str() + "'"
                              : std::string("this layer");
  }
  FailureOr<dense::Matrix> evaluate(Value value, StringRef what, LoRAOp op);

  ModuleOp module;
  SymbolTable symbols;
  WeightReader reader;
  SmallVector<Operation *> maybeDead;
  SmallVector<std::pair<ParamOp, std::string>> renames;
};

/// The value of `value` at compile time (WeightReader::evaluate), with an
/// error naming the layer and the operand otherwise.
FailureOr<dense::Matrix> Merger::evaluate(Value value, StringRef what,
                                          LoRAOp op) {
  std::string why;
  FailureOr<dense::Matrix> m =
      reader.evaluate(value, symbols, op, why, &maybeDead);
  if (failed(m) && !why.empty())
    return op.emitError() << "cannot merge the adapter of " << layer(op)
                          << ": its " << what << " " << why;
  return m;
}

LogicalResult Merger::merge(LoRAOp op) {
  auto weightType = dyn_cast<RankedTensorType>(op.getWeight().getType());
  if (!weightType)
    return op.emitError() << "cannot merge the adapter of " << layer(op)
                          << " into its quantized base weight (dequantize "
                             "it first)";
  FailureOr<dense::Matrix> w = evaluate(op.getWeight(), "base weight", op);
  if (failed(w))
    return failure();
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
  double alpha = op.getAlpha().convertToDouble();
  double scale = op.getScaling() == LoRAScaling::RsLoRA
                     ? alpha / std::sqrt(double(rank))
                     : alpha / double(rank);
  dense::gemm(false, false, float(scale), *b, right, 1.0f, *w);
  if (Value magnitude = op.getMagnitude()) {
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

  std::string preferred = op.getModuleAttr()
                              ? op.getModule()->str() + ".weight"
                              : std::string("merged_lora.weight");
  // The preferred name is often the base weight's, which is only free once
  // that is gone: until then the new one has a suffix (cleanUp renames).
  ParamOp param =
      createFloatParam(symbols, op.getLoc(), preferred, weightType, w->data);
  if (!param)
    return failure();
  renames.emplace_back(param, preferred);
  OpBuilder builder(op);
  Value merged =
      LoadParamOp::create(builder, op.getLoc(), weightType, param.getSymName());
  auto linear =
      LinearOp::create(builder, op.getLoc(), op.getType(), op.getInput(),
                       merged, op.getBias(), op.getModuleAttr());
  op.replaceAllUsesWith(linear.getResult());
  op.erase();
  return success();
}

void Merger::cleanUp() {
  eraseDeadOps(maybeDead);
  for (auto param : llvm::make_early_inc_range(module.getOps<ParamOp>()))
    if (SymbolTable::symbolKnownUseEmpty(param, module)) {
      symbols.erase(param);
    }
  for (auto &[param, name] : renames)
    if (!symbols.lookup(name))
      (void)symbols.rename(param, name);
}

struct QOptMergeLoRAPass
    : mlir::qopt::impl::QOptMergeLoRAPassBase<QOptMergeLoRAPass> {
  using Base::Base;

  void runOnOperation() override {
    SmallVector<LoRAOp> ops;
    getOperation().walk([&](LoRAOp op) { ops.push_back(op); });
    if (ops.empty())
      return;
    Merger merger(getOperation(), modelDir);
    bool failedAny = false;
    for (LoRAOp op : ops)
      failedAny |= failed(merger.merge(op));
    if (failedAny)
      return signalPassFailure();
    merger.cleanUp();
  }
};

} // namespace
