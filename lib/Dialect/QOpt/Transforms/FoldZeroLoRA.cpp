//===- FoldZeroLoRA.cpp - Drop LoRA branches that are zero ----------------===//

#include "qopt/Dialect/QOpt/Transforms/Passes.h"

#include "mlir/IR/Matchers.h"
#include "mlir/IR/PatternMatch.h"
#include "mlir/Transforms/GreedyPatternRewriteDriver.h"

namespace mlir::qopt {
#define GEN_PASS_DEF_QOPTFOLDZEROLORAPASS
#include "qopt/Dialect/QOpt/Transforms/Passes.h.inc"
} // namespace mlir::qopt

using namespace mlir;
using namespace mlir::qopt;

namespace {

/// Whether `attr` is all zeros (splat or not).
bool isZeroElements(Attribute attr) {
  auto elements = dyn_cast_or_null<DenseElementsAttr>(attr);
  if (!elements || !isa<FloatType>(elements.getElementType()))
    return false;
  if (elements.isSplat())
    return elements.getSplatValue<APFloat>().isZero();
  return llvm::all_of(elements.getValues<APFloat>(),
                      [](const APFloat &v) { return v.isZero(); });
}

/// Whether `value` is known to be all zeros: a constant, or a parameter
/// whose inline data is zero (trainable ones only if allowed).
bool isKnownZero(Value value, bool includeTrainable) {
  Attribute constant;
  if (matchPattern(value, m_Constant(&constant)))
    return isZeroElements(constant);
  auto load = value.getDefiningOp<LoadParamOp>();
  if (!load)
    return false;
  auto param =
      SymbolTable::lookupNearestSymbolFrom<ParamOp>(load, load.getNameAttr());
  // A state parameter changes at run time whatever the option says.
  if (!param || param.getState() || (param.getTrainable() && !includeTrainable))
    return false;
  return isZeroElements(load.getInlineData());
}

struct FoldZeroLoRA : OpRewritePattern<LoRAOp> {
  FoldZeroLoRA(MLIRContext *context, bool includeTrainable)
      : OpRewritePattern(context), includeTrainable(includeTrainable) {}

  LogicalResult matchAndRewrite(LoRAOp op,
                                PatternRewriter &rewriter) const override {
    if (op.getMagnitude())
      return rewriter.notifyMatchFailure(
          op, "DoRA rescales rows even with a zero branch");
    bool zero = isKnownZero(op.getLoraB(), includeTrainable) ||
                (op.getGate() && isKnownZero(op.getGate(), includeTrainable));
    if (!zero)
      return rewriter.notifyMatchFailure(op, "branch not known to be zero");
    rewriter.replaceOpWithNewOp<LinearOp>(op, op.getType(), op.getInput(),
                                          op.getWeight(), op.getBias(),
                                          op.getModuleAttr());
    return success();
  }

  bool includeTrainable;
};

struct QOptFoldZeroLoRAPass
    : qopt::impl::QOptFoldZeroLoRAPassBase<QOptFoldZeroLoRAPass> {
  using Base::Base;

  void runOnOperation() override {
    RewritePatternSet patterns(&getContext());
    populateFoldZeroLoRAPatterns(patterns, includeTrainable);
    if (failed(applyPatternsGreedily(getOperation(), std::move(patterns))))
      signalPassFailure();
  }
};

} // namespace

void mlir::qopt::populateFoldZeroLoRAPatterns(RewritePatternSet &patterns,
                                              bool includeTrainable) {
  patterns.add<FoldZeroLoRA>(patterns.getContext(), includeTrainable);
}
