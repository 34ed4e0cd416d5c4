//===- Index.cpp - ONNX gather and scatter operators ----------------------===//
//
// Gather, GatherElements, GatherND, ScatterND and ScatterElements; indices
// are checked against the data (now when constant, else at run time).
//
//===----------------------------------------------------------------------===//

#include "Patterns.h"

#include "qopt/Conversion/Utils/LinalgBuilders.h"

#include "mlir/Dialect/Arith/Utils/Utils.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Utils/StaticValueUtils.h"

using namespace mlir;
using namespace mlir::qopt;
using namespace mlir::qopt::onnx;

namespace {

//===----------------------------------------------------------------------===//
// Gather, GatherElements
//===----------------------------------------------------------------------===//

LogicalResult convertGather(ONNXNodeOp op, OpBuilder &b,
                            SmallVectorImpl<Value> &results) {
  Location loc = op.getLoc();
  Value data = op.getInputs()[0], indices = op.getInputs()[1];
  auto dataType = rankedType(data), indexType = rankedType(indices);
  if (!dataType || !indexType ||
      !indexType.getElementType().isSignlessInteger())
    return nodeError(op) << "needs ranked data and integer indices";
  FailureOr<int64_t> axis =
      normalizeAxis(op, getIntAttr(op, "axis", 0), dataType.getRank());
  if (failed(axis))
    return failure();
  int64_t q = indexType.getRank();
  // Shape arithmetic (Shape → Gather(i) → …): constant indices into a small
  // 1-D tensor give its elements as scalars, which later shape computations
  // and broadcasts can follow back to the tensor dimensions they measure.
  if (dataType.getRank() == 1 && dataType.hasStaticShape() &&
      dataType.getDimSize(0) <= 16 && indexType.hasStaticShape() &&
      indexType.getNumElements() <= 16) {
    if (std::optional<SmallVector<int64_t>> c = getConstantInts(indices)) {
      int64_t n = dataType.getDimSize(0);
      SmallVector<Value> elements;
      for (int64_t v : *c) {
        if (v < -n || v >= n)
          return nodeError(op)
                 << "an index into axis 0 is " << v
                 << ", out of range (valid: " << -n << " to " << n - 1 << ")";
        Value at = arith::ConstantIndexOp::create(b, loc, v < 0 ? v + n : v);
        elements.push_back(tensor::ExtractOp::create(b, loc, data, at));
      }
      results.push_back(tensor::FromElementsOp::create(
          b, loc,
          RankedTensorType::get(indexType.getShape(),
                                dataType.getElementType()),
          elements));
      return success();
    }
  }
  SmallVector<OpFoldResult> dataSizes = tensor::getMixedSizes(b, loc, data);
  SmallVector<OpFoldResult> indexSizes = tensor::getMixedSizes(b, loc, indices);
  // out[i_0..i_{axis-1}, j_0..j_{q-1}, k...] = data[i..., idx[j...], k...]
  SmallVector<OpFoldResult> outSizes(dataSizes.begin(),
                                     dataSizes.begin() + *axis);
  llvm::append_range(outSizes, indexSizes);
  outSizes.append(dataSizes.begin() + *axis + 1, dataSizes.end());
  int64_t outRank = outSizes.size();
  SmallVector<AffineExpr> indexExprs;
  for (int64_t j = 0; j < q; ++j)
    indexExprs.push_back(b.getAffineDimExpr(*axis + j));
  SmallVector<AffineMap> maps = {
      AffineMap::get(outRank, 0, indexExprs, b.getContext()),
      b.getMultiDimIdentityMap(outRank)};
  Value init =
      tensor::EmptyOp::create(b, loc, outSizes, dataType.getElementType());
  Value axisSize = indexValue(b, loc, dataSizes[*axis]);
  if (failed(checkIndices(op, b, indices, axisSize,
                          "an index into axis " + Twine(*axis))))
    return failure();
  SmallVector<utils::IteratorType> par(outRank, utils::IteratorType::parallel);
  Value result = linalg::GenericOp::create(
                     b, loc, init.getType(), indices, init, maps, par,
                     [&](OpBuilder &nb, Location l, ValueRange args) {
                       Value idx = createWrappedIndex(nb, l, args[0], axisSize);
                       SmallVector<Value> coords;
                       for (int64_t d = 0; d < *axis; ++d)
                         coords.push_back(linalg::IndexOp::create(nb, l, d));
                       coords.push_back(idx);
                       for (int64_t d = *axis + q; d < outRank; ++d)
                         coords.push_back(linalg::IndexOp::create(nb, l, d));
                       Value v = tensor::ExtractOp::create(nb, l, data, coords);
                       linalg::YieldOp::create(nb, l, v);
                     })
                     .getResult(0);
  results.push_back(result);
  return success();
}

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
  SmallVector<OpFoldResult> dataSizes = tensor::getMixedSizes(b, loc, data);
  SmallVector<OpFoldResult> indexSizes = tensor::getMixedSizes(b, loc, indices);
  Value axisSize = getValueOrCreateConstantIndexOp(b, loc, dataSizes[*axis]);
  if (failed(checkIndices(op, b, indices, axisSize,
                          "an index into axis " + Twine(*axis))))
    return failure();
  // Along the other axes the indices' positions address the data directly.
  if (failed(checkSizesWithin(op, b, indexSizes, dataSizes, *axis)))
    return failure();
  Value init =
      tensor::EmptyOp::create(b, loc, indexSizes, dType.getElementType());
  SmallVector<AffineMap> maps(2, b.getMultiDimIdentityMap(rank));
  SmallVector<utils::IteratorType> par(rank, utils::IteratorType::parallel);
  results.push_back(
      linalg::GenericOp::create(
          b, loc, init.getType(), indices, init, maps, par,
          [&](OpBuilder &nb, Location l, ValueRange a) {
            Value idx = createWrappedIndex(nb, l, a[0], axisSize);
            SmallVector<Value> coords;
            for (int64_t d = 0; d < rank; ++d)
              coords.push_back(
                  d == *axis ? idx : Value(linalg::IndexOp::create(nb, l, d)));
            linalg::YieldOp::create(
                nb, l,
                tensor::ExtractOp::create(nb, l, data, coords).getResult());
          })
          .getResult(0));
  return success();
}

//===----------------------------------------------------------------------===//
// GatherND, ScatterND, ScatterElements
//===----------------------------------------------------------------------===//

/// Checks every index tuple `indices[..., c]` against the data dimension it
/// addresses (`dataSizes[first + c]`) for c < k.
LogicalResult checkIndexTuples(ONNXNodeOp op, OpBuilder &b, Value indices,
                               ArrayRef<OpFoldResult> dataSizes, int64_t first,
                               int64_t k) {
  Location loc = op.getLoc();
  auto type = cast<RankedTensorType>(indices.getType());
  int64_t q = type.getRank();
  SmallVector<OpFoldResult> sizes = tensor::getMixedSizes(b, loc, indices);
  for (int64_t c = 0; c < k; ++c) {
    Value component = indices;
    if (k > 1) {
      SmallVector<OpFoldResult> offsets(q, b.getIndexAttr(0)),
          strides(q, b.getIndexAttr(1)), partSizes(sizes);
      offsets[q - 1] = b.getIndexAttr(c);
      partSizes[q - 1] = b.getIndexAttr(1);
      component = tensor::ExtractSliceOp::create(b, loc, indices, offsets,
                                                 partSizes, strides);
    }
    if (failed(checkIndices(
            op, b, component,
            getValueOrCreateConstantIndexOp(b, loc, dataSizes[first + c]),
            "an index into axis " + Twine(first + c))))
      return failure();
  }
  return success();
}

/// Leading dimensions of the indices that must equal the data's
/// (GatherND's batch_dims).
LogicalResult checkEqualSizes(ONNXNodeOp op, OpBuilder &b,
                              ArrayRef<OpFoldResult> a,
                              ArrayRef<OpFoldResult> c, StringRef what) {
  Location loc = op.getLoc();
  for (auto [d, pair] : llvm::enumerate(llvm::zip(a, c))) {
    auto [x, y] = pair;
    std::optional<int64_t> sx = getConstantIntValue(x),
                           sy = getConstantIntValue(y);
    if (sx && sy) {
      if (*sx != *sy)
        return nodeError(op) << what << ": dimension " << d << " is " << *sx
                             << " in one and " << *sy << " in the other";
      continue;
    }
    emitCheck(op, b,
              arith::CmpIOp::create(b, loc, arith::CmpIPredicate::eq,
                                    getValueOrCreateConstantIndexOp(b, loc, x),
                                    getValueOrCreateConstantIndexOp(b, loc, y)),
              what + ": dimension " + Twine(d) + " differs");
  }
  return success();
}

LogicalResult convertGatherND(ONNXNodeOp op, OpBuilder &b,
                              SmallVectorImpl<Value> &results) {
  Location loc = op.getLoc();
  Value data = op.getInputs()[0], indices = op.getInputs()[1];
  auto dType = rankedType(data), iType = rankedType(indices);
  if (!dType || !iType || !iType.getElementType().isSignlessInteger(64))
    return nodeError(op) << "needs ranked data and int64 indices";
  int64_t r = dType.getRank(), q = iType.getRank();
  int64_t batch = getIntAttr(op, "batch_dims", 0);
  if (q < 1 || r < 1 || batch < 0 || batch >= std::min(q, r))
    return nodeError(op) << "batch_dims " << batch
                         << " must be less than the ranks of the data (" << r
                         << ") and the indices (" << q << ")";
  if (iType.isDynamicDim(q - 1))
    return nodeError(op) << "the last dimension of the indices must be static";
  int64_t k = iType.getDimSize(q - 1);
  if (k < 1 || k > r - batch)
    return nodeError(op) << "index tuples of length " << k
                         << " do not fit data of rank " << r
                         << " with batch_dims " << batch;
  SmallVector<OpFoldResult> dataSizes = tensor::getMixedSizes(b, loc, data);
  SmallVector<OpFoldResult> indexSizes = tensor::getMixedSizes(b, loc, indices);
  if (failed(checkEqualSizes(op, b, ArrayRef(indexSizes).take_front(batch),
                             ArrayRef(dataSizes).take_front(batch),
                             "the batch dimensions of data and indices")) ||
      failed(checkIndexTuples(op, b, indices, dataSizes, batch, k)))
    return failure();
  // out[i_0..i_{q-2}, j...] = data[i_0..i_{batch-1}, idx[i, 0..k-1], j...]
  SmallVector<OpFoldResult> outSizes(indexSizes.begin(), indexSizes.end() - 1);
  outSizes.append(dataSizes.begin() + batch + k, dataSizes.end());
  int64_t outRank = outSizes.size();
  Value init =
      tensor::EmptyOp::create(b, loc, outSizes, dType.getElementType());
  SmallVector<utils::IteratorType> par(outRank, utils::IteratorType::parallel);
  results.push_back(
      linalg::GenericOp::create(
          b, loc, init.getType(), ValueRange{}, init,
          {b.getMultiDimIdentityMap(outRank)}, par,
          [&](OpBuilder &nb, Location l, ValueRange) {
            SmallVector<Value> outer, coords;
            for (int64_t d = 0; d < q - 1; ++d)
              outer.push_back(linalg::IndexOp::create(nb, l, d));
            for (int64_t d = 0; d < batch; ++d)
              coords.push_back(outer[d]);
            for (int64_t c = 0; c < k; ++c) {
              SmallVector<Value> at(outer);
              at.push_back(arith::ConstantIndexOp::create(nb, l, c));
              Value v = arith::IndexCastOp::create(
                  nb, l, nb.getIndexType(),
                  tensor::ExtractOp::create(nb, l, indices, at));
              coords.push_back(
                  createWrappedIndex(nb, l, v,
                                     getValueOrCreateConstantIndexOp(
                                         nb, l, dataSizes[batch + c])));
            }
            for (int64_t d = q - 1; d < outRank; ++d)
              coords.push_back(linalg::IndexOp::create(nb, l, d));
            linalg::YieldOp::create(
                nb, l,
                tensor::ExtractOp::create(nb, l, data, coords).getResult());
          })
          .getResult(0));
  return success();
}

/// The scalar combination ScatterND / ScatterElements apply.
using Combine = Value (*)(OpBuilder &, Location, Value, Value);

template <typename FloatOp, typename IntOp>
Value combine(OpBuilder &b, Location loc, Value old, Value update) {
  if (isa<FloatType>(old.getType()))
    return FloatOp::create(b, loc, old, update);
  return IntOp::create(b, loc, old, update);
}

Value replace(OpBuilder &, Location, Value, Value update) { return update; }

FailureOr<Combine> scatterReduction(ONNXNodeOp op) {
  StringRef reduction = getStringAttr(op, "reduction", "none");
  if (reduction == "none")
    return Combine(replace);
  if (reduction == "add")
    return Combine(combine<arith::AddFOp, arith::AddIOp>);
  if (reduction == "mul")
    return Combine(combine<arith::MulFOp, arith::MulIOp>);
  if (reduction == "max")
    return Combine(combine<arith::MaximumFOp, arith::MaxSIOp>);
  if (reduction == "min")
    return Combine(combine<arith::MinimumFOp, arith::MinSIOp>);
  return (nodeError(op) << "reduction '" << reduction << "' is not one of "
                        << "none, add, mul, max, min",
          failure());
}

/// A sequential loop nest over `sizes` that threads `init` through
/// tensor.insert: `body(ivs, current)` returns the updated tensor. Writes
/// happen in index order, so duplicate indices resolve as ONNX's reference
/// does (the last wins, or every update is reduced).
Value scatterLoops(
    OpBuilder &b, Location loc, ArrayRef<OpFoldResult> sizes, Value init,
    function_ref<Value(OpBuilder &, Location, ValueRange, Value)> body) {
  SmallVector<Value> lbs, ubs, steps;
  for (OpFoldResult s : sizes) {
    lbs.push_back(arith::ConstantIndexOp::create(b, loc, 0));
    ubs.push_back(getValueOrCreateConstantIndexOp(b, loc, s));
    steps.push_back(arith::ConstantIndexOp::create(b, loc, 1));
  }
  scf::LoopNest nest =
      scf::buildLoopNest(b, loc, lbs, ubs, steps, ValueRange{init},
                         [&](OpBuilder &nb, Location l, ValueRange ivs,
                             ValueRange args) -> scf::ValueVector {
                           return {body(nb, l, ivs, args[0])};
                         });
  return nest.results.front();
}

LogicalResult convertScatterND(ONNXNodeOp op, OpBuilder &b,
                               SmallVectorImpl<Value> &results) {
  Location loc = op.getLoc();
  Value data = op.getInputs()[0], indices = op.getInputs()[1],
        updates = op.getInputs()[2];
  auto dType = rankedType(data), iType = rankedType(indices),
       uType = rankedType(updates);
  if (!dType || !iType || !uType ||
      !iType.getElementType().isSignlessInteger(64) ||
      uType.getElementType() != dType.getElementType())
    return nodeError(op) << "needs ranked data, int64 indices and updates of "
                            "the data's element type";
  int64_t r = dType.getRank(), q = iType.getRank();
  if (q < 1 || iType.isDynamicDim(q - 1))
    return nodeError(op) << "the last dimension of the indices must be static";
  int64_t k = iType.getDimSize(q - 1);
  if (k < 1 || k > r)
    return nodeError(op) << "index tuples of length " << k
                         << " do not fit data of rank " << r;
  if (uType.getRank() != q - 1 + r - k)
    return nodeError(op) << "updates have rank " << uType.getRank()
                         << ", expected " << q - 1 + r - k;
  auto combine = scatterReduction(op);
  if (failed(combine))
    return failure();
  SmallVector<OpFoldResult> dataSizes = tensor::getMixedSizes(b, loc, data);
  SmallVector<OpFoldResult> indexSizes = tensor::getMixedSizes(b, loc, indices);
  SmallVector<OpFoldResult> updateSizes =
      tensor::getMixedSizes(b, loc, updates);
  SmallVector<OpFoldResult> expected(indexSizes.begin(), indexSizes.end() - 1);
  expected.append(dataSizes.begin() + k, dataSizes.end());
  if (failed(checkEqualSizes(op, b, updateSizes, expected,
                             "the updates' shape and indices.shape[:-1] + "
                             "data.shape[k:]")) ||
      failed(checkIndexTuples(op, b, indices, dataSizes, 0, k)))
    return failure();
  results.push_back(scatterLoops(
      b, loc, updateSizes, data,
      [&](OpBuilder &nb, Location l, ValueRange ivs, Value current) -> Value {
        SmallVector<Value> coords;
        SmallVector<Value> outer(ivs.take_front(q - 1));
        for (int64_t c = 0; c < k; ++c) {
          SmallVector<Value> at(outer);
          at.push_back(arith::ConstantIndexOp::create(nb, l, c));
          Value v = arith::IndexCastOp::create(
              nb, l, nb.getIndexType(),
              tensor::ExtractOp::create(nb, l, indices, at));
          coords.push_back(createWrappedIndex(
              nb, l, v, getValueOrCreateConstantIndexOp(nb, l, dataSizes[c])));
        }
        llvm::append_range(coords, ivs.drop_front(q - 1));
        Value update = tensor::ExtractOp::create(nb, l, updates, ivs);
        Value old = tensor::ExtractOp::create(nb, l, current, coords);
        return tensor::InsertOp::create(nb, l, (*combine)(nb, l, old, update),
                                        current, coords);
      }));
  return success();
}

LogicalResult convertScatterElements(ONNXNodeOp op, OpBuilder &b,
                                     SmallVectorImpl<Value> &results) {
  Location loc = op.getLoc();
  Value data = op.getInputs()[0], indices = op.getInputs()[1],
        updates = op.getInputs()[2];
  auto dType = rankedType(data), iType = rankedType(indices),
       uType = rankedType(updates);
  if (!dType || !iType || !uType ||
      !iType.getElementType().isSignlessInteger() ||
      iType.getRank() != dType.getRank() ||
      uType.getRank() != dType.getRank() ||
      uType.getElementType() != dType.getElementType())
    return nodeError(op) << "needs data, integer indices and updates of one "
                            "rank (updates of the data's element type)";
  int64_t rank = dType.getRank();
  FailureOr<int64_t> axis = normalizeAxis(op, getIntAttr(op, "axis", 0), rank);
  if (failed(axis))
    return failure();
  auto combine = scatterReduction(op);
  if (failed(combine))
    return failure();
  SmallVector<OpFoldResult> dataSizes = tensor::getMixedSizes(b, loc, data);
  SmallVector<OpFoldResult> indexSizes = tensor::getMixedSizes(b, loc, indices);
  SmallVector<OpFoldResult> updateSizes =
      tensor::getMixedSizes(b, loc, updates);
  Value axisSize = getValueOrCreateConstantIndexOp(b, loc, dataSizes[*axis]);
  if (failed(checkEqualSizes(op, b, updateSizes, indexSizes,
                             "the shapes of indices and updates")) ||
      failed(checkIndices(op, b, indices, axisSize,
                          "an index into axis " + Twine(*axis))) ||
      failed(checkSizesWithin(op, b, indexSizes, dataSizes, *axis)))
    return failure();
  results.push_back(scatterLoops(
      b, loc, indexSizes, data,
      [&](OpBuilder &nb, Location l, ValueRange ivs, Value current) -> Value {
        SmallVector<Value> coords(ivs);
        Value v = arith::IndexCastOp::create(
            nb, l, nb.getIndexType(),
            tensor::ExtractOp::create(nb, l, indices, ivs));
        coords[*axis] = createWrappedIndex(nb, l, v, axisSize);
        Value update = tensor::ExtractOp::create(nb, l, updates, ivs);
        Value old = tensor::ExtractOp::create(nb, l, current, coords);
        return tensor::InsertOp::create(nb, l, (*combine)(nb, l, old, update),
                                        current, coords);
      }));
  return success();
}

const HandlerEntry kHandlers[] = {
    {"", "Gather", 13, convertGather},
    {"", "GatherElements", 13, convertGatherElements},
    {"", "GatherND", 11, convertGatherND},
    {"", "ScatterND", 11, convertScatterND},
    {"", "ScatterElements", 11, convertScatterElements},
};

} // namespace

ArrayRef<HandlerEntry> mlir::qopt::onnx::getIndexHandlers() {
  return kHandlers;
}
