//===- QTensorConversion.cpp - !qopt.qtensor to its storage --------------===//

#include "qopt/Conversion/QOptToLinalg/QTensorConversion.h"

#include "mlir/Dialect/ControlFlow/IR/ControlFlowOps.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/Func/Transforms/FuncConversions.h"
#include "mlir/Dialect/SCF/Transforms/Patterns.h"

using namespace mlir;
using namespace mlir::qopt;

void mlir::qopt::appendStorageTypes(QTensorType type,
                                    SmallVectorImpl<Type> &types) {
  types.push_back(type.getDataType());
  if (auto nested = dyn_cast<QTensorType>(type.getScaleType()))
    appendStorageTypes(nested, types);
  else
    types.push_back(type.getScalesType());
  if (RankedTensorType zp = type.getZeroPointsType())
    types.push_back(zp);
  if (RankedTensorType offset = type.getOffsetType())
    types.push_back(offset);
}

/// How many storage values a value of type `t` stands for.
static size_t storageCount(Type t) {
  auto q = dyn_cast<QTensorType>(t);
  if (!q)
    return 1;
  SmallVector<Type> types;
  appendStorageTypes(q, types);
  return types.size();
}

QTensorTypeConverter::QTensorTypeConverter() {
  addConversion([](Type t) { return t; });
  addConversion([](QTensorType t, SmallVectorImpl<Type> &types) {
    appendStorageTypes(t, types);
    return success();
  });
}

namespace {

/// The quantized tensor is its operands.
struct DecomposeAssemble : OpConversionPattern<AssembleOp> {
  using OpConversionPattern::OpConversionPattern;
  LogicalResult
  matchAndRewrite(AssembleOp op, OneToNOpAdaptor adaptor,
                  ConversionPatternRewriter &rewriter) const override {
    SmallVector<Value> storage;
    for (ValueRange part : adaptor.getOperands())
      llvm::append_range(storage, part);
    rewriter.replaceOpWithMultiple(op, {storage});
    return success();
  }
};

/// The parts are the quantized tensor's storage, in order; a nested
/// quantized scale takes its own storage values.
struct DecomposeDisassemble : OpConversionPattern<DisassembleOp> {
  using OpConversionPattern::OpConversionPattern;
  LogicalResult
  matchAndRewrite(DisassembleOp op, OneToNOpAdaptor adaptor,
                  ConversionPatternRewriter &rewriter) const override {
    ValueRange storage = adaptor.getInput();
    SmallVector<SmallVector<Value>> parts;
    size_t next = 0;
    for (Value result : op->getResults()) {
      size_t n = storageCount(result.getType());
      if (next + n > storage.size())
        return rewriter.notifyMatchFailure(op, "storage does not match");
      parts.emplace_back(storage.slice(next, n));
      next += n;
    }
    if (next != storage.size())
      return rewriter.notifyMatchFailure(op, "storage does not match");
    rewriter.replaceOpWithMultiple(op, std::move(parts));
    return success();
  }
};

/// A function's signature and every block of its body (upstream's pattern
/// converts the entry block only). A 1:1 argument or result keeps its
/// attributes; the storage of a quantized one gets none.
struct ConvertFuncSignature : OpConversionPattern<func::FuncOp> {
  using OpConversionPattern::OpConversionPattern;
  LogicalResult
  matchAndRewrite(func::FuncOp f, OpAdaptor,
                  ConversionPatternRewriter &rewriter) const override {
    const TypeConverter &converter = *getTypeConverter();
    FunctionType type = f.getFunctionType();
    TypeConverter::SignatureConversion signature(type.getNumInputs());
    SmallVector<Type> results;
    SmallVector<Attribute> argAttrs, resultAttrs;
    for (auto [i, t] : llvm::enumerate(type.getInputs())) {
      SmallVector<Type> converted;
      if (failed(converter.convertType(t, converted)))
        return failure();
      signature.addInputs(i, converted);
      for (size_t j = 0; j < converted.size(); ++j)
        argAttrs.push_back(converted.size() == 1
                               ? Attribute(f.getArgAttrDict(i))
                               : Attribute());
    }
    for (auto [i, t] : llvm::enumerate(type.getResults())) {
      size_t before = results.size();
      if (failed(converter.convertType(t, results)))
        return failure();
      for (size_t j = before; j < results.size(); ++j)
        resultAttrs.push_back(results.size() - before == 1
                                  ? Attribute(f.getResultAttrDict(i))
                                  : Attribute());
    }
    if (!f.isExternal() && failed(rewriter.convertRegionTypes(
                               &f.getBody(), converter, &signature)))
      return failure();
    auto empty = [&](SmallVector<Attribute> &attrs) {
      for (Attribute &a : attrs)
        if (!a)
          a = DictionaryAttr::get(getContext());
      return ArrayAttr::get(getContext(), attrs);
    };
    rewriter.modifyOpInPlace(f, [&] {
      f.setType(FunctionType::get(getContext(), signature.getConvertedTypes(),
                                  results));
      if (f.getArgAttrs())
        f.setArgAttrsAttr(empty(argAttrs));
      if (f.getResAttrs())
        f.setResAttrsAttr(empty(resultAttrs));
    });
    return success();
  }
};

/// Branches forward the storage of a quantized successor operand (upstream's
/// pattern converts 1:1 only).
struct ConvertBranchOperands : OpInterfaceConversionPattern<BranchOpInterface> {
  using OpInterfaceConversionPattern::OpInterfaceConversionPattern;
  LogicalResult
  matchAndRewrite(BranchOpInterface op, ArrayRef<ValueRange> operands,
                  ConversionPatternRewriter &rewriter) const override {
    SmallVector<SmallVector<Value>> forwarded;
    SmallVector<bool> isForwarded(op->getNumOperands(), false);
    for (unsigned i = 0; i < op->getNumSuccessors(); ++i) {
      OperandRange range = op.getSuccessorOperands(i).getForwardedOperands();
      SmallVector<Value> &values = forwarded.emplace_back();
      for (OpOperand &use : op->getOpOperands()) {
        unsigned index = use.getOperandNumber();
        if (range.empty() || index < range.getBeginOperandIndex() ||
            index >= range.getBeginOperandIndex() + range.size())
          continue;
        isForwarded[index] = true;
        llvm::append_range(values, operands[index]);
      }
    }
    for (unsigned index = 0; index < op->getNumOperands(); ++index)
      if (!isForwarded[index] && operands[index].size() != 1)
        return rewriter.notifyMatchFailure(op, "a quantized branch condition");
    rewriter.modifyOpInPlace(op, [&] {
      for (unsigned index = 0; index < op->getNumOperands(); ++index)
        if (!isForwarded[index])
          op->setOperand(index, operands[index].front());
      for (unsigned i = 0; i < op->getNumSuccessors(); ++i)
        op.getSuccessorOperands(i).getMutableForwardedOperands().assign(
            forwarded[i]);
    });
    return success();
  }
};

} // namespace

void mlir::qopt::populateQTensorDecompositionPatterns(
    const TypeConverter &converter, RewritePatternSet &patterns,
    ConversionTarget &target) {
  MLIRContext *ctx = patterns.getContext();
  patterns.add<DecomposeAssemble, DecomposeDisassemble, ConvertFuncSignature>(
      converter, ctx);
  populateCallOpTypeConversionPattern(patterns, converter);
  populateReturnOpTypeConversionPattern(patterns, converter);
  patterns.add<ConvertBranchOperands>(converter, ctx);
  scf::populateSCFStructuralTypeConversionsAndLegality(converter, patterns,
                                                       target);
  target.addIllegalOp<AssembleOp, DisassembleOp>();
  target.addDynamicallyLegalOp<func::FuncOp>([&converter](func::FuncOp f) {
    return converter.isSignatureLegal(f.getFunctionType()) &&
           converter.isLegal(&f.getBody());
  });
  target.addDynamicallyLegalOp<func::CallOp, func::ReturnOp>(
      [&converter](Operation *op) { return converter.isLegal(op); });
  target.markUnknownOpDynamicallyLegal(
      [&converter](Operation *op) { return converter.isLegal(op); });
}
