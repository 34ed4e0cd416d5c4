//===- MaterializeParams.cpp - Inline parameters as constants -------------===//

#include "qopt/Dialect/QOpt/Transforms/Passes.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/BuiltinOps.h"

namespace mlir::qopt {
#define GEN_PASS_DEF_QOPTMATERIALIZEPARAMSPASS
#include "qopt/Dialect/QOpt/Transforms/Passes.h.inc"
} // namespace mlir::qopt

using namespace mlir;
using namespace mlir::qopt;

static bool isSignlessOrFloat(Type t) {
  auto integer = dyn_cast<IntegerType>(t);
  return !integer || integer.isSignless();
}

namespace {
struct QOptMaterializeParamsPass
    : qopt::impl::QOptMaterializeParamsPassBase<QOptMaterializeParamsPass> {
  void runOnOperation() override {
    SymbolTableCollection symbols;
    getOperation().walk([&](LoadParamOp load) {
      // Mutable parameters change between runs, and resource blobs
      // (weights passes computed) go into the weights file rather than the
      // code: both stay parameters.
      auto param =
          symbols.lookupNearestSymbolFrom<ParamOp>(load, load.getNameAttr());
      if (!param || param.isMutable())
        return;
      auto data =
          dyn_cast_if_present<DenseElementsAttr>(param.getInitialValueAttr());
      // arith.constant takes signless integers only: unsigned parameters
      // stay parameters (the runtime passes them; qopt-params-to-arguments).
      if (!data || !isSignlessOrFloat(data.getElementType()))
        return;
      OpBuilder b(load);
      Value constant = arith::ConstantOp::create(b, load.getLoc(), data);
      load.replaceAllUsesWith(constant);
      load.erase();
    });
    // Inline parameters nothing reads any more are gone with their reads.
    ModuleOp module = getOperation();
    for (auto param : llvm::make_early_inc_range(module.getOps<ParamOp>()))
      if (!param.isMutable() && param.getInitialValue() &&
          isa<DenseElementsAttr>(*param.getInitialValue()) &&
          isSignlessOrFloat(param.getTensorType().getElementType()) &&
          SymbolTable::symbolKnownUseEmpty(param, module))
        param.erase();
  }
};
} // namespace
