//===- LinearAlgebra.cpp - ONNX MatMul, Gemm and Einsum -------------------===//
//
// MatMul (numpy broadcasting, through buildMatMul, which MatMulInteger
// shares), Gemm and Einsum: one contraction linalg.generic each, narrow
// floats accumulated in f32.
//
//===----------------------------------------------------------------------===//

#include "Patterns.h"
#include "qopt/Conversion/Utils/LinalgBuilders.h"

#include "mlir/Dialect/Arith/Utils/Utils.h"
#include "mlir/Dialect/Utils/StaticValueUtils.h"

using namespace mlir;
using namespace mlir::qopt;
using namespace mlir::qopt::onnx;

//===----------------------------------------------------------------------===//
// MatMul / Gemm
//===----------------------------------------------------------------------===//

/// `v` without the dimensions `exprs` index with the constant 0 (size-1
/// dimensions that numpy broadcasting expands), and `exprs` without them.
static Value dropBroadcastUnitDims(OpBuilder &b, Location loc, Value v,
                                   SmallVectorImpl<AffineExpr> &exprs) {
  auto type = cast<RankedTensorType>(v.getType());
  SmallVector<int64_t> shape;
  SmallVector<AffineExpr> kept;
  for (auto [d, e] : llvm::enumerate(exprs))
    if (!isa<AffineConstantExpr>(e)) {
      shape.push_back(type.getDimSize(d));
      kept.push_back(e);
    }
  if (kept.size() == exprs.size())
    return v;
  SmallVector<OpFoldResult> offsets(type.getRank(), b.getIndexAttr(0));
  SmallVector<OpFoldResult> strides(type.getRank(), b.getIndexAttr(1));
  SmallVector<OpFoldResult> sizes = tensor::getMixedSizes(b, loc, v);
  exprs.assign(kept.begin(), kept.end());
  return tensor::ExtractSliceOp::create(
      b, loc, RankedTensorType::get(shape, type.getElementType()), v, offsets,
      sizes, strides);
}

LogicalResult mlir::qopt::onnx::buildMatMul(ONNXNodeOp op, OpBuilder &b,
                                            Value lhs, Value rhs,
                                            SmallVectorImpl<Value> &results) {
  Location loc = op.getLoc();
  auto lhsType = rankedType(lhs), rhsType = rankedType(rhs);
  if (!lhsType || !rhsType)
    return nodeError(op) << "needs ranked inputs";
  Type element = lhsType.getElementType();
  if (element != rhsType.getElementType() || !element.isSignlessIntOrFloat())
    return nodeError(op) << "needs inputs of one signless element type";
  // numpy: a 1-D operand is a row (lhs) or column (rhs) vector, removed
  // from the result again.
  bool lhsVector = lhsType.getRank() == 1, rhsVector = rhsType.getRank() == 1;
  if (lhsVector) {
    SmallVector<OpFoldResult> sizes = {b.getIndexAttr(1)};
    llvm::append_range(sizes, tensor::getMixedSizes(b, loc, lhs));
    lhs = reshapeTo(b, loc, lhs, sizes);
  }
  if (rhsVector) {
    SmallVector<OpFoldResult> sizes = tensor::getMixedSizes(b, loc, rhs);
    sizes.push_back(b.getIndexAttr(1));
    rhs = reshapeTo(b, loc, rhs, sizes);
  }
  lhsType = rankedType(lhs);
  rhsType = rankedType(rhs);
  int64_t lhsBatch = lhsType.getRank() - 2, rhsBatch = rhsType.getRank() - 2;
  int64_t batch = std::max(lhsBatch, rhsBatch);
  SmallVector<OpFoldResult> lhsSizes = tensor::getMixedSizes(b, loc, lhs);
  SmallVector<OpFoldResult> rhsSizes = tensor::getMixedSizes(b, loc, rhs);
  if (!ShapedType::isDynamic(lhsType.getDimSize(lhsBatch + 1)) &&
      !ShapedType::isDynamic(rhsType.getDimSize(rhsBatch)) &&
      lhsType.getDimSize(lhsBatch + 1) != rhsType.getDimSize(rhsBatch))
    return nodeError(op) << "inner dimensions differ: "
                         << lhsType.getDimSize(lhsBatch + 1) << " vs "
                         << rhsType.getDimSize(rhsBatch);
  // The inner dimensions must agree at run time too.
  if ((lhsType.isDynamicDim(lhsBatch + 1) || rhsType.isDynamicDim(rhsBatch)) &&
      sizeSource(lhs, lhsBatch + 1) != sizeSource(rhs, rhsBatch))
    emitEqualSizes(op, b, lhsSizes[lhsBatch + 1], rhsSizes[rhsBatch],
                   "inner dimensions differ");
  // Batch dimensions the types cannot decide broadcast as the run says
  // (as for elementwise operands): checked, then expanded where 1.
  for (int64_t d = 0; d < batch; ++d) {
    int64_t li = d - (batch - lhsBatch), ri = d - (batch - rhsBatch);
    if (li < 0 || ri < 0)
      continue;
    int64_t ls = lhsType.getDimSize(li), rs = rhsType.getDimSize(ri);
    if (ls == 1 || rs == 1 ||
        (!ShapedType::isDynamic(ls) && !ShapedType::isDynamic(rs)) ||
        sizeSource(lhs, li) == sizeSource(rhs, ri))
      continue;
    Value l = getValueOrCreateConstantIndexOp(b, loc, lhsSizes[li]);
    Value r = getValueOrCreateConstantIndexOp(b, loc, rhsSizes[ri]);
    Value one = arith::ConstantIndexOp::create(b, loc, 1);
    Value out = !ShapedType::isDynamic(ls) ? l
                : !ShapedType::isDynamic(rs)
                    ? r
                    : Value(arith::SelectOp::create(
                          b, loc,
                          arith::CmpIOp::create(
                              b, loc, arith::CmpIPredicate::eq, l, one),
                          r, l));
    emitCheck(op, b,
              arith::AndIOp::create(b, loc, isSizeOrOne(b, loc, l, out),
                                    isSizeOrOne(b, loc, r, out)),
              "batch dimension " + Twine(d) + " cannot be broadcast");
    if (ShapedType::isDynamic(ls))
      lhs = expandAtRunTime(b, loc, lhs, li, out);
    if (ShapedType::isDynamic(rs))
      rhs = expandAtRunTime(b, loc, rhs, ri, out);
    lhsSizes[li] = rhsSizes[ri] = out;
  }
  // Loops: batch..., m, n, k.
  int64_t numLoops = batch + 3;
  SmallVector<OpFoldResult> outSizes;
  SmallVector<AffineExpr> lhsExprs, rhsExprs, outExprs;
  for (int64_t d = 0; d < batch; ++d) {
    int64_t li = d - (batch - lhsBatch), ri = d - (batch - rhsBatch);
    int64_t ls = li >= 0 ? lhsType.getDimSize(li) : 1;
    int64_t rs = ri >= 0 ? rhsType.getDimSize(ri) : 1;
    if (ls != 1 && rs != 1 && !ShapedType::isDynamic(ls) &&
        !ShapedType::isDynamic(rs) && ls != rs)
      return nodeError(op) << "batch dimensions cannot be broadcast: " << ls
                           << " vs " << rs;
    bool useLhs = li >= 0 && ls != 1;
    outSizes.push_back(useLhs ? lhsSizes[li]
                              : (ri >= 0 ? rhsSizes[ri] : b.getIndexAttr(1)));
    bool outIsOne = !useLhs && !(ri >= 0 && rs != 1);
    if (li >= 0)
      lhsExprs.push_back(ls == 1 && !outIsOne ? b.getAffineConstantExpr(0)
                                              : b.getAffineDimExpr(d));
    if (ri >= 0)
      rhsExprs.push_back(rs == 1 && !outIsOne ? b.getAffineConstantExpr(0)
                                              : b.getAffineDimExpr(d));
    outExprs.push_back(b.getAffineDimExpr(d));
  }
  AffineExpr m = b.getAffineDimExpr(batch), n = b.getAffineDimExpr(batch + 1),
             k = b.getAffineDimExpr(batch + 2);
  lhsExprs.append({m, k});
  rhsExprs.append({k, n});
  outExprs.append({m, n});
  outSizes.push_back(lhsSizes[lhsBatch]);
  outSizes.push_back(rhsSizes[rhsBatch + 1]);
  // A named product broadcasts by leaving a loop out of an operand's map:
  // size-1 batch dimensions the other operand broadcasts are sliced away.
  lhs = dropBroadcastUnitDims(b, loc, lhs, lhsExprs);
  rhs = dropBroadcastUnitDims(b, loc, rhs, rhsExprs);
  MLIRContext *ctx = b.getContext();
  SmallVector<AffineMap> maps = {AffineMap::get(numLoops, 0, lhsExprs, ctx),
                                 AffineMap::get(numLoops, 0, rhsExprs, ctx),
                                 AffineMap::get(numLoops, 0, outExprs, ctx)};
  SmallVector<utils::IteratorType> iterators(numLoops - 1,
                                             utils::IteratorType::parallel);
  iterators.push_back(utils::IteratorType::reduction);
  Value init =
      createFilledTensor(b, loc, outSizes, accumulatorType(b, element), 0);
  Value result =
      createMulAddContraction(b, loc, lhs, rhs, init, maps, iterators);
  result = fromAccumulator(b, loc, result, element);
  if (lhsVector || rhsVector) {
    SmallVector<OpFoldResult> sizes(outSizes.begin(), outSizes.end() - 2);
    if (!lhsVector)
      sizes.push_back(outSizes[batch]);
    if (!rhsVector)
      sizes.push_back(outSizes[batch + 1]);
    result = reshapeTo(b, loc, result, sizes);
  }
  results.push_back(result);
  return success();
}

namespace {

LogicalResult convertMatMul(ONNXNodeOp op, OpBuilder &b,
                            SmallVectorImpl<Value> &results) {
  return buildMatMul(op, b, op.getInputs()[0], op.getInputs()[1], results);
}

LogicalResult convertGemm(ONNXNodeOp op, OpBuilder &b,
                          SmallVectorImpl<Value> &results) {
  Location loc = op.getLoc();
  Value a = op.getInputs()[0], w = op.getInputs()[1], c = getInput(op, 2);
  auto aType = rankedType(a), wType = rankedType(w);
  if (!aType || !wType || aType.getRank() != 2 || wType.getRank() != 2)
    return nodeError(op) << "needs 2-D A and B";
  Type element = aType.getElementType();
  if (!isa<FloatType>(element) || wType.getElementType() != element)
    return nodeError(op) << "needs float A and B of one element type";
  bool transA = getIntAttr(op, "transA", 0),
       transB = getIntAttr(op, "transB", 0);
  double alpha = getFloatAttr(op, "alpha", 1.0),
         beta = getFloatAttr(op, "beta", 1.0);
  SmallVector<OpFoldResult> aSizes = tensor::getMixedSizes(b, loc, a),
                            wSizes = tensor::getMixedSizes(b, loc, w);
  OpFoldResult mSize = aSizes[transA ? 1 : 0], nSize = wSizes[transB ? 0 : 1];
  // K of A and of B: the loop runs over one of them.
  int64_t aK = aType.getDimSize(transA ? 0 : 1),
          bK = wType.getDimSize(transB ? 1 : 0);
  if (!ShapedType::isDynamic(aK) && !ShapedType::isDynamic(bK) && aK != bK)
    return nodeError(op) << "inner dimensions differ: " << aK << " vs " << bK;
  if ((ShapedType::isDynamic(aK) || ShapedType::isDynamic(bK)) &&
      sizeSource(a, transA ? 0 : 1) != sizeSource(w, transB ? 1 : 0))
    emitEqualSizes(op, b, aSizes[transA ? 0 : 1], wSizes[transB ? 1 : 0],
                   "inner dimensions differ");
  AffineExpr m = b.getAffineDimExpr(0), n = b.getAffineDimExpr(1),
             k = b.getAffineDimExpr(2);
  MLIRContext *ctx = b.getContext();
  SmallVector<AffineMap> maps = {
      AffineMap::get(3, 0,
                     transA ? ArrayRef<AffineExpr>{k, m}
                            : ArrayRef<AffineExpr>{m, k},
                     ctx),
      AffineMap::get(3, 0,
                     transB ? ArrayRef<AffineExpr>{n, k}
                            : ArrayRef<AffineExpr>{k, n},
                     ctx),
      AffineMap::get(3, 0, {m, n}, ctx)};
  SmallVector<utils::IteratorType> iterators = {utils::IteratorType::parallel,
                                                utils::IteratorType::parallel,
                                                utils::IteratorType::reduction};
  Value init = createFilledTensor(b, loc, {mSize, nSize},
                                  accumulatorType(b, element), 0);
  Value product = createMulAddContraction(b, loc, a, w, init, maps, iterators);
  product = fromAccumulator(b, loc, product, element);
  if (alpha == 1.0 && (!c || beta == 0.0)) {
    results.push_back(product);
    return success();
  }
  SmallVector<Value> inputs = {product};
  if (c && beta != 0.0)
    inputs.push_back(c);
  FailureOr<Value> result = buildElementwise(
      op, b, inputs, element,
      [&](OpBuilder &nb, Location l, ValueRange args) -> Value {
        Value v = args[0];
        if (alpha != 1.0)
          v = arith::MulFOp::create(nb, l, v,
                                    scalarConstant(nb, l, element, alpha));
        if (args.size() > 1) {
          Value cv = args[1];
          if (beta != 1.0)
            cv = arith::MulFOp::create(nb, l, cv,
                                       scalarConstant(nb, l, element, beta));
          v = arith::AddFOp::create(nb, l, v, cv);
        }
        return v;
      });
  if (failed(result))
    return failure();
  results.push_back(*result);
  return success();
}

//===----------------------------------------------------------------------===//
// Einsum
//===----------------------------------------------------------------------===//

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
        return nodeError(op)
               << "repeated letters (diagonals) are not supported";
      exprs.push_back(dimOf(c));
      // A letter shared between operands names one size: refused when the
      // types differ, checked when they leave it open.
      OpFoldResult &known = letterSize[order.find(c)];
      if (known) {
        std::optional<int64_t> x = getConstantIntValue(known),
                               y = getConstantIntValue(sizes[i]);
        if (x && y && *x != *y)
          return nodeError(op)
                 << "label '" << c << "' has sizes " << *x << " and " << *y;
        if (!x || !y)
          emitEqualSizes(op, b, known, sizes[i],
                         "label '" + Twine(c) + "' has different sizes");
      }
      known = sizes[i];
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
  Value init =
      linalg::FillOp::create(
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
            Value r = isFloat
                          ? Value(arith::AddFOp::create(nb, l, a.back(), p))
                          : Value(arith::AddIOp::create(nb, l, a.back(), p));
            linalg::YieldOp::create(nb, l, r);
          })
          .getResult(0));
  return success();
}

const HandlerEntry kHandlers[] = {
    {"", "MatMul", 13, convertMatMul},
    {"", "Gemm", 13, convertGemm},
    {"", "Einsum", 12, convertEinsum},
};

} // namespace

ArrayRef<HandlerEntry> mlir::qopt::onnx::getLinearAlgebraHandlers() {
  return kHandlers;
}
