//===- ParamsToArguments.cpp - Runtime-provided parameters as arguments ---===//

#include "qopt/Dialect/QOpt/Transforms/Passes.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/Builders.h"
#include "mlir/IR/BuiltinOps.h"

namespace mlir::qopt {
#define GEN_PASS_DEF_QOPTPARAMSTOARGUMENTSPASS
#include "qopt/Dialect/QOpt/Transforms/Passes.h.inc"
} // namespace mlir::qopt

using namespace mlir;
using namespace mlir::qopt;

namespace {

/// Whether a read of `param` stays in the code: inline data of a frozen
/// parameter in a type constants can hold (not unsigned integers, not
/// resource blobs, which the target writes into the weights file).
bool staysInCode(ParamOp param) {
  if (param.isMutable())
    return false;
  auto data =
      dyn_cast_if_present<DenseElementsAttr>(param.getInitialValueAttr());
  if (!data)
    return false;
  auto integer = dyn_cast<IntegerType>(data.getElementType());
  return !integer || integer.isSignless();
}

struct QOptParamsToArgumentsPass
    : qopt::impl::QOptParamsToArgumentsPassBase<QOptParamsToArgumentsPass> {
  void runOnOperation() override;

private:
  /// The one public function that may touch run-time state; sets `entry`.
  LogicalResult claimEntry(Operation *op, StringRef what);
  LogicalResult forwardStores();

  func::FuncOp entry;
};

LogicalResult QOptParamsToArgumentsPass::claimEntry(Operation *op,
                                                    StringRef what) {
  auto func = op->getParentOfType<func::FuncOp>();
  if (!func || !func.isPublic() || (entry && func != entry)) {
    op->emitError() << what << " outside the entry function"
                    << (entry ? " @" + entry.getSymName().str() : std::string())
                    << ": run-time parameters and keys must all be used by "
                       "one public function";
    return failure();
  }
  entry = func;
  return success();
}

/// Within the entry's body, a read after a store of the same parameter
/// reads the stored value; stores elsewhere are refused.
LogicalResult QOptParamsToArgumentsPass::forwardStores() {
  bool any = false;
  WalkResult walk = getOperation().walk([&](StoreParamOp store) {
    if (failed(claimEntry(store, "qopt.store_param")))
      return WalkResult::interrupt();
    if (store->getParentOp() != entry || !entry.getBody().hasOneBlock()) {
      store.emitError("qopt.store_param must be in the body of a "
                      "single-block entry function, not in a nested region");
      return WalkResult::interrupt();
    }
    any = true;
    return WalkResult::advance();
  });
  if (walk.wasInterrupted())
    return failure();
  if (!any)
    return success();
  llvm::StringMap<Value> stored;
  for (Operation &op : entry.getBody().front()) {
    if (auto store = dyn_cast<StoreParamOp>(op)) {
      stored[store.getName()] = store.getValue();
      continue;
    }
    // Reads in this op, nested regions included.
    op.walk([&](LoadParamOp load) {
      if (Value value = stored.lookup(load.getName()))
        load.replaceAllUsesWith(value);
    });
  }
  return success();
}

void QOptParamsToArgumentsPass::runOnOperation() {
  ModuleOp module = getOperation();
  if (failed(forwardStores()))
    return signalPassFailure();
  // Reads nothing uses (left by conversions that took the data, or
  // forwarded stores) go first.
  module.walk([](LoadParamOp load) {
    if (load->use_empty())
      load.erase();
  });
  SymbolTableCollection symbols;
  llvm::MapVector<ParamOp, SmallVector<LoadParamOp>> reads;
  llvm::MapVector<ParamOp, StoreParamOp> stores; // the last one wins
  SmallVector<Operation *> keys;
  WalkResult walk = module.walk([&](Operation *op) {
    if (isa<RandomKeyOp>(op)) {
      if (failed(claimEntry(op, "qopt.random_key")))
        return WalkResult::interrupt();
      keys.push_back(op);
      return WalkResult::advance();
    }
    auto load = dyn_cast<LoadParamOp>(op);
    auto store = dyn_cast<StoreParamOp>(op);
    if (!load && !store)
      return WalkResult::advance();
    auto param = symbols.lookupNearestSymbolFrom<ParamOp>(
        op, load ? load.getNameAttr() : store.getNameAttr());
    if (!param) // the verifier reports it
      return WalkResult::interrupt();
    if (store) {
      stores[param] = store;
      return WalkResult::advance();
    }
    if (staysInCode(param))
      return WalkResult::advance();
    if (failed(claimEntry(
            load, ("parameter @" + param.getSymName() + " is read").str())))
      return WalkResult::interrupt();
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

  // Declaration order, so the argument order does not depend on uses; a
  // mutable parameter is passed when it is read or written (the runtime
  // holds it either way).
  SmallVector<ParamOp> params;
  for (auto param : module.getOps<ParamOp>())
    if (reads.count(param) || stores.count(param))
      params.push_back(param);

  Builder b(&getContext());
  Block &body = entry.getBody().front();
  for (ParamOp param : params) {
    unsigned index = entry.getNumArguments();
    SmallVector<NamedAttribute> attrs = {
        b.getNamedAttr(QOptDialect::ParamAttrHelper::getNameStr(),
                       b.getStringAttr(param.getSymName())),
        b.getNamedAttr("bufferization.writable", b.getBoolAttr(false))};
    if (param.getTrainable())
      attrs.push_back(b.getNamedAttr(
          QOptDialect::TrainableAttrHelper::getNameStr(), b.getUnitAttr()));
    if (param.getState())
      attrs.push_back(b.getNamedAttr(QOptDialect::StateAttrHelper::getNameStr(),
                                     b.getUnitAttr()));
    if (auto external =
            dyn_cast_if_present<ExternalDataAttr>(param.getInitialValueAttr()))
      attrs.push_back(b.getNamedAttr(
          QOptDialect::ExternalAttrHelper::getNameStr(), external));
    else if (auto inlineData =
                 dyn_cast_if_present<ElementsAttr>(param.getInitialValueAttr()))
      attrs.push_back(b.getNamedAttr(
          QOptDialect::InlineAttrHelper::getNameStr(), inlineData));
    if (failed(entry.insertArgument(index, param.getTensorType(),
                                    b.getDictionaryAttr(attrs),
                                    param.getLoc())))
      return signalPassFailure();
    for (LoadParamOp load : reads.lookup(param)) {
      load.replaceAllUsesWith(body.getArgument(index));
      load.erase();
    }
  }
  if (!keys.empty()) {
    unsigned index = entry.getNumArguments();
    auto keyType = RankedTensorType::get({2}, b.getI64Type());
    if (failed(entry.insertArgument(index, keyType,
                                    getRandomKeyArgAttrs(&getContext()),
                                    keys.front()->getLoc())))
      return signalPassFailure();
    for (Operation *key : keys) {
      key->getResult(0).replaceAllUsesWith(body.getArgument(index));
      key->erase();
    }
  }
  // Stored values become results after the model's outputs.
  if (!stores.empty()) {
    auto ret = cast<func::ReturnOp>(body.getTerminator());
    SmallVector<Value> operands(ret.getOperands());
    for (auto &[param, store] : stores) {
      unsigned index = entry.getNumResults();
      if (failed(entry.insertResult(
              index, param.getTensorType(),
              b.getDictionaryAttr(
                  {b.getNamedAttr(QOptDialect::ParamAttrHelper::getNameStr(),
                                  b.getStringAttr(param.getSymName()))}))))
        return signalPassFailure();
      operands.push_back(store.getValue());
    }
    ret->setOperands(operands);
    module.walk([](StoreParamOp store) { store.erase(); });
  }
  // Parameters nobody reads any more (these, and unused ones) go too.
  eraseUnused();
}

} // namespace
