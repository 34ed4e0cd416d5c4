//===- MaterializeParams.cpp - Inline parameters as constants -------------===//

#include "qopt/Conversion/Passes.h"

#include "mlir/IR/BuiltinOps.h"

namespace mlir::qopt {
#define GEN_PASS_DEF_QOPTMATERIALIZEPARAMSPASS
#include "qopt/Conversion/Passes.h.inc"
} // namespace mlir::qopt

using namespace mlir;
using namespace mlir::qopt;

namespace {
struct QOptMaterializeParamsPass
    : qopt::impl::QOptMaterializeParamsPassBase<QOptMaterializeParamsPass> {
  void runOnOperation() override {
    SymbolTableCollection symbols;
    getOperation().walk([&](LoadParamOp load) {
      ElementsAttr data = load.getInlineData(&symbols);
      if (!data)
        return;
      OpBuilder b(load);
      Value constant = arith::ConstantOp::create(b, load.getLoc(), data);
      load.replaceAllUsesWith(constant);
      load.erase();
    });
    // Inline parameters nothing reads any more are gone with their reads.
    ModuleOp module = getOperation();
    for (auto param : llvm::make_early_inc_range(module.getOps<ParamOp>()))
      if (param.getInitialValue() &&
          isa<ElementsAttr>(*param.getInitialValue()) &&
          SymbolTable::symbolKnownUseEmpty(param, module))
        param.erase();
  }
};
} // namespace
