//===- LinalgBuilders.h - linalg builders the conversions share -*- C++ -*-===//
//
// The tensor-level building blocks both conversions need (ONNX nodes and
// QOpt ops lower to the same reductions and contractions): filled
// destinations, multiply-accumulate contractions, reductions over the
// trailing dimensions, row statistics and normalisation, elementwise maps.
// One place, so a fix or a faster form reaches both.
//
//===----------------------------------------------------------------------===//

#ifndef QOPT_CONVERSION_UTILS_LINALGBUILDERS_H
#define QOPT_CONVERSION_UTILS_LINALGBUILDERS_H

#include "mlir/Dialect/Utils/StructuredOpsUtils.h"
#include "mlir/IR/AffineMap.h"
#include "mlir/IR/Builders.h"
#include "mlir/IR/OpDefinition.h"

namespace mlir::qopt {

/// A tensor of `sizes` and `element` type filled with `value` (tensor.empty
/// + linalg.fill).
Value createFilledTensor(OpBuilder &b, Location loc,
                         ArrayRef<OpFoldResult> sizes, Type element,
                         double value);

/// A float scalar converted to f32 (extended or truncated), and back.
Value castToF32(OpBuilder &b, Location loc, Value v);
Value castFromF32(OpBuilder &b, Location loc, Value v, Type t);

/// Softmax's f32 steps without subnormal results: exp(v), 0 where it would
/// be below the smallest normal float; and v, 0 where |v| is below it.
/// Subnormals change a probability by < 1.2e-38 but cost a microcode assist
/// per operation on Intel cores (libm's underflow path, the next product's
/// FMAs): attention's P·V ran 10x slower on them.
Value createExpFlushed(OpBuilder &b, Location loc, Value v);
Value createFlushSubnormal(OpBuilder &b, Location loc, Value v);

/// The multiply-accumulate body acc + a * b, with the operands converted to
/// the accumulator's type first (floats or integers).
void buildMulAddBody(OpBuilder &b, Location loc, ValueRange args);

/// A product `init += lhs * rhs` over `maps` (lhs, rhs, init) and
/// `iterators`, as a named op so that it stays recognisable until code
/// generation: `linalg.matmul` or `linalg.batch_matmul` in their plain
/// forms, `linalg.contract` for other float products whose maps are
/// projected permutations (transposed, batched, broadcast operands); a
/// `linalg.generic` with buildMulAddBody otherwise (integers, constant
/// indices).
Value createMulAddContraction(OpBuilder &b, Location loc, Value lhs, Value rhs,
                              Value init, ArrayRef<AffineMap> maps,
                              ArrayRef<utils::IteratorType> iterators);

/// y[..., n] = sum_k x[..., k] * w[n, k] (+ init): the product of a linear
/// layer, accumulated into `init` (zeros of x's element type when null).
Value createContractLast(OpBuilder &b, Location loc, Value x, Value w,
                         Value init);

/// An f32 reduction of `x` over its dimensions from `axis` on, starting at
/// `initValue`; `extra` tensors are read per kept row (shape of the leading
/// dims, or with size-1 trailing dims when `keepDims`). `body` gets
/// (x element, extra elements..., accumulator) and returns the new
/// accumulator. With `keepDims` the result keeps the reduced dims as 1.
Value createTrailingReduction(
    OpBuilder &b, Location loc, Value x, int64_t axis, bool keepDims,
    ValueRange extra, double initValue,
    function_ref<Value(OpBuilder &, Location, ValueRange)> body);

/// f32 statistics over the dims from `axis` on: sum(f(x)) / count, with `f`
/// given the f32 element and the leading-dims statistics in `previous`.
Value createRowMean(
    OpBuilder &b, Location loc, Value x, int64_t axis, ValueRange previous,
    function_ref<Value(OpBuilder &, Location, Value, ValueRange)> f);

/// y = T(norm(x_f32, stats)) * gamma (+ beta), elementwise: the last step of
/// LayerNorm / RMSNorm, with statistics per leading-dims row and gamma/beta
/// over the dims from `axis` on.
Value createNormalizedRows(
    OpBuilder &b, Location loc, Value x, int64_t axis, ValueRange stats,
    Value gamma, Value beta,
    function_ref<Value(OpBuilder &, Location, Value, ValueRange)> norm);

/// An elementwise linalg.generic shaped like `like` over `inputs` read
/// through `inputMaps`, body `fn`.
Value createElementwise(
    OpBuilder &b, Location loc, Value like, ValueRange inputs,
    ArrayRef<AffineMap> inputMaps,
    function_ref<Value(OpBuilder &, Location, ValueRange)> fn);

/// Whether every integer of `indices` lies in [-size, size) (negative
/// indices count from the end): one min/max pass, then two comparisons.
/// `readsData` (when given) is set when the answer depends on the indices'
/// values, not only on their shape (a Range's ends): a check a GPU target
/// makes on the device (`qopt.data_check`).
Value createIndicesInRange(OpBuilder &b, Location loc, Value indices,
                           Value size, bool *readsData = nullptr);

/// The integer (or index) `index` as an index into a dimension of `size`,
/// a negative one counting from the end, clamped into [0, size): a gather
/// stays inside its table even where a range check made on the device
/// lets an index through (the run then fails after it).
Value createWrappedIndex(OpBuilder &b, Location loc, Value index, Value size);

/// softmax(x) (or log-softmax) along `axis`, stable: exp(x - max) / sum,
/// each step rounded to the element type as the ONNX reference computes
/// it, the sum accumulated in f32. The late lowering of `linalg.softmax`
/// and ONNX's LogSoftmax. `safe`: a row of -inf only gives 0 (not NaN),
/// through finite steps only (max taken as 0, sum as 1), so that its
/// gradient is 0 too.
Value createSoftmax(OpBuilder &b, Location loc, Value x, int64_t axis, bool log,
                    bool safe = false);

} // namespace mlir::qopt

#endif // QOPT_CONVERSION_UTILS_LINALGBUILDERS_H
