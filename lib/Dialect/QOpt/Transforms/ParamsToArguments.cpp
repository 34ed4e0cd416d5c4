//===- ParamsToArguments.cpp - Runtime-provided parameters as arguments ---===//

#include "qopt/Dialect/QOpt/Transforms/Passes.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/BuiltinOps.h"

namespace mlir::qopt {
#define GEN_PASS_DEF_QOPTPARAMSTOARGUMENTSPASS
#include "qopt/Dialect/QOpt/Transforms/Passes.h.inc"
} // namespace mlir::qopt

using namespace mlir;
using namespace mlir::qopt;

namespace {
struct QOptParamsToArgumentsPass
    : qopt::impl::QOptParamsToArgumentsPassBase<QOptParamsToArgumentsPass> {
  void runOnOperation() override {
    ModuleOp module = getOperation();
    // Reads nothing uses (left by conversions that took the data) go first.
    module.walk([](LoadParamOp load) {
      if (load->use_empty())
        load.erase();
    });
    SymbolTableCollection symbols;
    func::FuncOp entry;
    llvm::MapVector<ParamOp, SmallVector<LoadParamOp>> reads;
    WalkResult walk = module.walk([&](LoadParamOp load) {
      // Inline data stays in the code, except for unsigned integers, which
      // no constant op can hold: the runtime passes those too.
      if (ElementsAttr data = load.getInlineData(&symbols)) {
        auto integer = dyn_cast<IntegerType>(data.getElementType());
        if (!integer || integer.isSignless())
          return WalkResult::advance();
      }
      auto param =
          symbols.lookupNearestSymbolFrom<ParamOp>(load, load.getNameAttr());
      if (!param) // the verifier reports it
        return WalkResult::interrupt();
      auto func = load->getParentOfType<func::FuncOp>();
      if (!func || !func.isPublic() || (entry && func != entry)) {
        load.emitError("parameter @")
            << param.getSymName() << " is read outside the entry function"
            << (entry ? " @" + entry.getSymName().str() : std::string())
            << ": runtime-provided parameters must all be read by one "
               "public function";
        return WalkResult::interrupt();
      }
      entry = func;
      reads[param].push_back(load);
      return WalkResult::advance();
    });
    if (walk.wasInterrupted())
      return signalPassFailure();
    auto eraseUnused = [&] {
      for (auto param : llvm::make_early_inc_range(module.getOps<ParamOp>()))
        if (SymbolTable::symbolKnownUseEmpty(param, module))
          param.erase();
    };
    if (!entry) // every parameter is inline: nothing to pass
      return eraseUnused();

    // Declaration order, so the argument order does not depend on uses.
    SmallVector<ParamOp> params;
    for (auto param : module.getOps<ParamOp>())
      if (reads.count(param))
        params.push_back(param);

    Builder b(&getContext());
    Block &body = entry.getBody().front();
    for (ParamOp param : params) {
      unsigned index = entry.getNumArguments();
      SmallVector<NamedAttribute> attrs = {
          b.getNamedAttr(QOptDialect::ParamAttrHelper::getNameStr(),
                         b.getStringAttr(param.getSymName())),
          b.getNamedAttr("bufferization.writable", b.getBoolAttr(false))};
      if (auto external = dyn_cast_if_present<ExternalDataAttr>(
              param.getInitialValueAttr()))
        attrs.push_back(b.getNamedAttr(
            QOptDialect::ExternalAttrHelper::getNameStr(), external));
      else if (auto inlineData = dyn_cast_if_present<ElementsAttr>(
                   param.getInitialValueAttr()))
        attrs.push_back(b.getNamedAttr(
            QOptDialect::InlineAttrHelper::getNameStr(), inlineData));
      if (failed(entry.insertArgument(index, param.getTensorType(),
                                      b.getDictionaryAttr(attrs),
                                      param.getLoc())))
        return signalPassFailure();
      for (LoadParamOp load : reads[param]) {
        load.replaceAllUsesWith(body.getArgument(index));
        load.erase();
      }
    }
    // Parameters nobody reads any more (these, and unused ones) go too.
    eraseUnused();
  }
};
} // namespace
