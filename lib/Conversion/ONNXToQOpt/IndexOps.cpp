//===- IndexOps.cpp - ONNX GatherElements, Tile, CumSum, Einsum, ... ------===//

#include "Patterns.h"

#include "mlir/Dialect/Arith/Utils/Utils.h"
#include "mlir/Dialect/Utils/StaticValueUtils.h"

using namespace mlir;
using namespace mlir::qopt;
using namespace mlir::qopt::onnx;

namespace {

LogicalResult convertGatherElements(ONNXNodeOp op, OpBuilder &b,
                                    SmallVectorImpl<Value> &results) {
  Location loc = op.getLoc();
  Value data = op.getInputs()[0], indices = op.getInputs()[1];
  auto dType = rankedType(data), iType = rankedType(indices);
  if (!dType || !iType || dType.getRank() != iType.getRank() ||
      !iType.getElementType().isSignlessInteger())
    return nodeError(op) << "needs data and integer indices of the same rank";
  int64_t rank = dType.getRank();
  FailureOr<int64_t> axis = normalizeAxis(op, getIntAttr(op, "axis", 0), rank);
  if (failed(axis))
    return failure();
  Value axisSize = getValueOrCreateConstantIndexOp(
      b, loc, tensor::getMixedSizes(b, loc, data)[*axis]);
  Value init = tensor::EmptyOp::create(b, loc, tensor::getMixedSizes(b, loc, indices),
                                       dType.getElementType());
  SmallVector<AffineMap> maps(2, b.getMultiDimIdentityMap(rank));
  SmallVector<utils::IteratorType> par(rank, utils::IteratorType::parallel);
  results.push_back(
      linalg::GenericOp::create(
          b, loc, init.getType(), indices, init, maps, par,
          [&](OpBuilder &nb, Location l, ValueRange a) {
            Value idx = arith::IndexCastOp::create(nb, l, nb.getIndexType(), a[0]);
            Value zero = arith::ConstantIndexOp::create(nb, l, 0);
            Value neg = arith::CmpIOp::create(nb, l, arith::CmpIPredicate::slt, idx, zero);
            idx = arith::SelectOp::create(nb, l, neg,
                                          arith::AddIOp::create(nb, l, idx, axisSize), idx);
            SmallVector<Value> coords;
            for (int64_t d = 0; d < rank; ++d)
              coords.push_back(d == *axis ? idx
                                          : Value(linalg::IndexOp::create(nb, l, d)));
            linalg::YieldOp::create(
                nb, l, tensor::ExtractOp::create(nb, l, data, coords).getResult());
          })
          .getResult(0));
  return success();
}

LogicalResult convertTile(ONNXNodeOp op, OpBuilder &b,
                          SmallVectorImpl<Value> &results) {
  Location loc = op.getLoc();
  Value x = op.getInputs()[0];
  auto type = rankedType(x);
  std::optional<SmallVector<int64_t>> repeats = getConstantInts(op.getInputs()[1]);
  if (!type || !repeats || (int64_t)repeats->size() != type.getRank())
    return nodeError(op) << "needs a ranked input and constant repeats, one "
                            "per dimension";
  int64_t rank = type.getRank();
  SmallVector<OpFoldResult> sizes = tensor::getMixedSizes(b, loc, x), out;
  for (int64_t d = 0; d < rank; ++d) {
    if ((*repeats)[d] < 0)
      return nodeError(op) << "repeats must be non-negative";
    if (std::optional<int64_t> c = getConstantIntValue(sizes[d]))
      out.push_back(b.getIndexAttr(*c * (*repeats)[d]));
    else
      out.push_back(arith::MulIOp::create(
                        b, loc, cast<Value>(sizes[d]),
                        arith::ConstantIndexOp::create(b, loc, (*repeats)[d]))
                        .getResult());
  }
  Value init = tensor::EmptyOp::create(b, loc, out, type.getElementType());
  SmallVector<utils::IteratorType> par(rank, utils::IteratorType::parallel);
  results.push_back(
      linalg::GenericOp::create(
          b, loc, init.getType(), ValueRange{}, init,
          {b.getMultiDimIdentityMap(rank)}, par,
          [&](OpBuilder &nb, Location l, ValueRange) {
            SmallVector<Value> coords;
            for (int64_t d = 0; d < rank; ++d)
              coords.push_back(arith::RemUIOp::create(
                  nb, l, linalg::IndexOp::create(nb, l, d),
                  getValueOrCreateConstantIndexOp(nb, l, sizes[d])));
            linalg::YieldOp::create(
                nb, l, tensor::ExtractOp::create(nb, l, x, coords).getResult());
          })
          .getResult(0));
  return success();
}

LogicalResult convertCumSum(ONNXNodeOp op, OpBuilder &b,
                            SmallVectorImpl<Value> &results) {
  Location loc = op.getLoc();
  Value x = op.getInputs()[0];
  auto type = rankedType(x);
  std::optional<SmallVector<int64_t>> axisC = getConstantInts(op.getInputs()[1]);
  if (!type || !axisC || axisC->size() != 1)
    return nodeError(op) << "needs a ranked input and a constant axis";
  int64_t rank = type.getRank();
  FailureOr<int64_t> axis = normalizeAxis(op, (*axisC)[0], rank);
  if (failed(axis))
    return failure();
  bool exclusive = getIntAttr(op, "exclusive", 0) != 0;
  bool reverse = getIntAttr(op, "reverse", 0) != 0;
  // y[..., i, ...] = sum over j of x[..., j, ...] with j < i (or <=; or >
  // for reverse): a reduction over a second copy of the axis, masked.
  SmallVector<OpFoldResult> sizes = tensor::getMixedSizes(b, loc, x);
  int64_t loops = rank + 1;
  SmallVector<AffineExpr> xExprs, outExprs;
  for (int64_t d = 0; d < rank; ++d) {
    outExprs.push_back(b.getAffineDimExpr(d));
    xExprs.push_back(d == *axis ? b.getAffineDimExpr(rank) : b.getAffineDimExpr(d));
  }
  Type element = type.getElementType();
  Value init = linalg::FillOp::create(
                   b, loc, scalarConstant(b, loc, element, 0),
                   tensor::EmptyOp::create(b, loc, sizes, element).getResult())
                   .getResult(0);
  SmallVector<utils::IteratorType> iterators(rank, utils::IteratorType::parallel);
  iterators.push_back(utils::IteratorType::reduction);
  MLIRContext *ctx = b.getContext();
  results.push_back(
      linalg::GenericOp::create(
          b, loc, init.getType(), x, init,
          {AffineMap::get(loops, 0, xExprs, ctx), AffineMap::get(loops, 0, outExprs, ctx)},
          iterators,
          [&](OpBuilder &nb, Location l, ValueRange a) {
            Value i = linalg::IndexOp::create(nb, l, *axis);
            Value j = linalg::IndexOp::create(nb, l, rank);
            arith::CmpIPredicate pred =
                reverse ? (exclusive ? arith::CmpIPredicate::ugt : arith::CmpIPredicate::uge)
                        : (exclusive ? arith::CmpIPredicate::ult : arith::CmpIPredicate::ule);
            Value take = arith::CmpIOp::create(nb, l, pred, j, i);
            Value zero = scalarConstant(nb, l, element, 0);
            Value v = arith::SelectOp::create(nb, l, take, a[0], zero);
            Value r = isa<FloatType>(element)
                          ? Value(arith::AddFOp::create(nb, l, a[1], v))
                          : Value(arith::AddIOp::create(nb, l, a[1], v));
            linalg::YieldOp::create(nb, l, r);
          })
          .getResult(0));
  return success();
}

/// Einsum without ellipses or repeated letters within one operand: one
/// linalg.generic, letters missing from the output summed.
LogicalResult convertEinsum(ONNXNodeOp op, OpBuilder &b,
                            SmallVectorImpl<Value> &results) {
  Location loc = op.getLoc();
  std::string eq = getStringAttr(op, "equation", "").str();
  eq.erase(std::remove(eq.begin(), eq.end(), ' '), eq.end());
  size_t arrow = eq.find("->");
  if (arrow == std::string::npos || eq.find("...") != std::string::npos)
    return nodeError(op) << "only explicit equations (with '->', without "
                            "'...') are supported";
  SmallVector<StringRef> terms;
  StringRef(eq).substr(0, arrow).split(terms, ',');
  StringRef output = StringRef(eq).substr(arrow + 2);
  if (terms.size() != op.getInputs().size())
    return nodeError(op) << "equation has " << terms.size() << " operands, the "
                         << "node " << op.getInputs().size();
  std::string letters;
  for (StringRef t : terms)
    for (char c : t)
      if (letters.find(c) == std::string::npos)
        letters.push_back(c);
  // Output letters first (parallel), then the summed ones.
  std::string order(output.str());
  for (char c : letters)
    if (order.find(c) == std::string::npos)
      order.push_back(c);
  int64_t loops = order.size();
  auto dimOf = [&](char c) { return b.getAffineDimExpr(order.find(c)); };
  SmallVector<AffineMap> maps;
  SmallVector<OpFoldResult> letterSize(loops);
  Type element;
  for (auto [t, v] : llvm::zip(terms, op.getInputs())) {
    auto type = rankedType(v);
    if (!type || (int64_t)t.size() != type.getRank())
      return nodeError(op) << "operand '" << t << "' does not match its rank";
    element = type.getElementType();
    SmallVector<AffineExpr> exprs;
    SmallVector<OpFoldResult> sizes = tensor::getMixedSizes(b, loc, v);
    for (auto [i, c] : llvm::enumerate(t)) {
      if (t.count(c) != 1)
        return nodeError(op) << "repeated letters (diagonals) are not supported";
      exprs.push_back(dimOf(c));
      letterSize[order.find(c)] = sizes[i];
    }
    maps.push_back(AffineMap::get(loops, 0, exprs, b.getContext()));
  }
  SmallVector<AffineExpr> outExprs;
  SmallVector<OpFoldResult> outSizes;
  for (char c : output) {
    if (letters.find(c) == std::string::npos)
      return nodeError(op) << "output letter '" << c << "' is in no operand";
    outExprs.push_back(dimOf(c));
    outSizes.push_back(letterSize[order.find(c)]);
  }
  maps.push_back(AffineMap::get(loops, 0, outExprs, b.getContext()));
  SmallVector<utils::IteratorType> iterators(output.size(),
                                             utils::IteratorType::parallel);
  iterators.append(loops - output.size(), utils::IteratorType::reduction);
  Value init = linalg::FillOp::create(
                   b, loc, scalarConstant(b, loc, element, 0),
                   tensor::EmptyOp::create(b, loc, outSizes, element).getResult())
                   .getResult(0);
  bool isFloat = isa<FloatType>(element);
  results.push_back(
      linalg::GenericOp::create(
          b, loc, init.getType(), op.getInputs(), init, maps, iterators,
          [&](OpBuilder &nb, Location l, ValueRange a) {
            Value p = a[0];
            for (Value v : a.drop_front().drop_back())
              p = isFloat ? Value(arith::MulFOp::create(nb, l, p, v))
                          : Value(arith::MulIOp::create(nb, l, p, v));
            Value r = isFloat ? Value(arith::AddFOp::create(nb, l, a.back(), p))
                              : Value(arith::AddIOp::create(nb, l, a.back(), p));
            linalg::YieldOp::create(nb, l, r);
          })
          .getResult(0));
  return success();
}

/// com.microsoft SkipLayerNormalization: LayerNorm(x + skip (+ bias)).
LogicalResult convertSkipLayerNorm(ONNXNodeOp op, OpBuilder &b,
                                   SmallVectorImpl<Value> &results) {
  Location loc = op.getLoc();
  Value x = op.getInputs()[0], skip = getInput(op, 1);
  Value gamma = getInput(op, 2), beta = getInput(op, 3), bias = getInput(op, 4);
  auto type = rankedType(x);
  if (!type || !skip || !gamma || !isa<FloatType>(type.getElementType()))
    return nodeError(op) << "needs float input, skip and gamma";
  for (unsigned i = 1; i < op.getNumResults(); ++i)
    if (i != 3 && !op.getResult(i).use_empty())
      return nodeError(op) << "only the output and the input+skip sum may "
                              "be used";
  SmallVector<Value> terms = {x, skip};
  if (bias)
    terms.push_back(bias);
  FailureOr<Value> sum = buildElementwise(
      op, b, terms, type.getElementType(),
      [](OpBuilder &nb, Location l, ValueRange a) {
        Value s = a[0];
        for (Value v : a.drop_front())
          s = arith::AddFOp::create(nb, l, s, v);
        return s;
      });
  if (failed(sum))
    return failure();
  auto sumType = cast<RankedTensorType>(sum->getType());
  double eps = getFloatAttr(op, "epsilon", 1e-12);
  if (rankedType(gamma).getRank() != 1 || (beta && rankedType(beta).getRank() != 1))
    return nodeError(op) << "gamma and beta must be 1-D";
  Value y = LayerNormOp::create(b, loc, sumType, *sum, gamma, beta,
                                b.getF64FloatAttr(eps), b.getI64IntegerAttr(-1));
  results.push_back(y);
  for (unsigned i = 1; i < op.getNumResults(); ++i)
    results.push_back(i == 3 ? *sum : Value());
  return success();
}

const HandlerEntry kHandlers[] = {
    {"", "GatherElements", 13, convertGatherElements},
    {"", "Tile", 13, convertTile},
    {"", "CumSum", 14, convertCumSum},
    {"", "Einsum", 12, convertEinsum},
    {"com.microsoft", "SkipLayerNormalization", 1, convertSkipLayerNorm},
};

} // namespace

ArrayRef<HandlerEntry> mlir::qopt::onnx::getIndexHandlers() { return kHandlers; }
