//===- AppendGradients.cpp - Gradients of a loss as extra results ---------===//

#include "qopt/Training/Passes.h"

#include "qopt/Dialect/QOpt/IR/QOpt.h"
#include "qopt/Training/Autodiff.h"

#include "mlir/Dialect/Linalg/Transforms/Transforms.h"
#include "mlir/Transforms/GreedyPatternRewriteDriver.h"

namespace mlir::qopt {
#define GEN_PASS_DEF_QOPTAPPENDGRADIENTSPASS
#include "qopt/Training/Passes.h.inc"
} // namespace mlir::qopt

using namespace mlir;
using namespace mlir::qopt;

namespace {

/// The name a gradient result takes after its argument.
std::string argumentName(func::FuncOp func, unsigned i) {
  for (StringRef attr : {QOptDialect::ParamAttrHelper::getNameStr(),
                         QOptDialect::NameAttrHelper::getNameStr()})
    if (auto name = func.getArgAttrOfType<StringAttr>(i, attr))
      return name.str();
  return "arg" + std::to_string(i);
}

struct QOptAppendGradientsPass
    : qopt::impl::QOptAppendGradientsPassBase<QOptAppendGradientsPass> {
  void runOnOperation() override {
    MLIRContext *ctx = &getContext();
    for (auto func : getOperation().getOps<func::FuncOp>()) {
      if (func.isExternal())
        continue;
      SmallVector<Value> wrt;
      SmallVector<unsigned> indices;
      for (unsigned i = 0; i < func.getNumArguments(); ++i)
        if (func.getArgAttr(i,
                            QOptDialect::TrainableAttrHelper::getNameStr())) {
          wrt.push_back(func.getArgument(i));
          indices.push_back(i);
        }
      if (wrt.empty())
        continue;
      if (func.getNumResults() == 0) {
        func.emitError("a function with trainable arguments must return the "
                       "loss as its first result");
        return signalPassFailure();
      }
      auto ret = cast<func::ReturnOp>(func.getBody().front().getTerminator());
      FailureOr<SmallVector<Value>> grads =
          buildGradients(func, ret.getOperand(0), wrt);
      if (failed(grads))
        return signalPassFailure();
      SmallVector<Value> operands(ret.getOperands());
      for (auto [i, grad] : llvm::zip(indices, *grads)) {
        auto name = StringAttr::get(ctx, "grad." + argumentName(func, i));
        if (failed(func.insertResult(
                func.getNumResults(), grad.getType(),
                DictionaryAttr::get(
                    ctx,
                    {NamedAttribute(
                        StringAttr::get(
                            ctx, QOptDialect::NameAttrHelper::getNameStr()),
                        name)}))))
          return signalPassFailure();
        operands.push_back(grad);
      }
      ret->setOperands(operands);
    }
    // Adjoint loops read only the operands their bodies still use.
    RewritePatternSet patterns(ctx);
    linalg::populateEraseUnusedOperandsAndResultsPatterns(patterns);
    if (failed(applyPatternsGreedily(getOperation(), std::move(patterns))))
      return signalPassFailure();
  }
};

} // namespace
