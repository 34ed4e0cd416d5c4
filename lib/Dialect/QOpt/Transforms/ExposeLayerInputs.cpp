//===- ExposeLayerInputs.cpp - Return the inputs of linear layers ---------===//

#include "qopt/Dialect/QOpt/IR/QOpt.h"
#include "qopt/Dialect/QOpt/Transforms/LoraTargets.h"
#include "qopt/Dialect/QOpt/Transforms/Passes.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/Builders.h"
#include "llvm/ADT/StringMap.h"

namespace mlir::qopt {
#define GEN_PASS_DEF_QOPTEXPOSELAYERINPUTSPASS
#include "qopt/Dialect/QOpt/Transforms/Passes.h.inc"
} // namespace mlir::qopt

using namespace mlir;
using namespace mlir::qopt;

namespace {

struct QOptExposeLayerInputsPass
    : mlir::qopt::impl::QOptExposeLayerInputsPassBase<
          QOptExposeLayerInputsPass> {
  using Base::Base;

  void runOnOperation() override {
    ModuleOp module = getOperation();
    auto error = [&]() {
      return mlir::emitError(module.getLoc()) << "qopt-expose-layer-inputs: ";
    };
    if (modules.empty())
      return error() << "modules names no layer", signalPassFailure();
    func::FuncOp entry;
    for (auto func : module.getOps<func::FuncOp>())
      if (func.isPublic() && !func.isExternal())
        entry = func;
    if (!entry)
      return error() << "the model has no entry function", signalPassFailure();
    llvm::StringMap<Value> inputs;
    for (const LinearLayer &layer : collectLinearLayers(module))
      if (!layer.name.empty() && layer.op->getParentOp() == entry)
        inputs.try_emplace(layer.name,
                           cast<LinearLikeOpInterface>(layer.op).getInput());
    SmallVector<Value> results;
    for (const std::string &name : modules) {
      Value input = inputs.lookup(name);
      if (!input)
        return error() << "no linear layer of the entry function is module '"
                       << name << "'",
               signalPassFailure();
      results.push_back(input);
    }
    auto ret = cast<func::ReturnOp>(entry.getBody().back().getTerminator());
    OpBuilder builder(ret);
    func::ReturnOp::create(builder, ret.getLoc(), results);
    ret.erase();
    SmallVector<Type> types;
    SmallVector<DictionaryAttr> attrs;
    for (auto [name, value] : llvm::zip(modules, results)) {
      types.push_back(value.getType());
      attrs.push_back(builder.getDictionaryAttr(
          builder.getNamedAttr(QOptDialect::NameAttrHelper::getNameStr(),
                               builder.getStringAttr(name))));
    }
    entry.setFunctionType(
        builder.getFunctionType(entry.getArgumentTypes(), types));
    entry.setAllResultAttrs(attrs);
  }
};

} // namespace
