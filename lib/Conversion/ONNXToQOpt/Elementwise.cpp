//===- Elementwise.cpp - ONNX elementwise operators -----------------------===//
//
// Unary and n-ary (broadcasting) arithmetic, comparisons, logical ops, Where,
// Clip, Cast/CastLike, Identity, Dropout, IsNaN/IsInf and the activations
// (Relu, Sigmoid, Gelu, LeakyRelu, ...): mostly one linalg.generic each.
//
//===----------------------------------------------------------------------===//

#include "Patterns.h"

#include <cmath>
#include <limits>

using namespace mlir;
using namespace mlir::qopt;
using namespace mlir::qopt::onnx;

namespace {

using ScalarFn = function_ref<Value(OpBuilder &, Location, ValueRange)>;

Type elementTypeOf(Value v) {
  return cast<ShapedType>(v.getType()).getElementType();
}

/// Unsigned integer element types need conversions that arith (signless)
/// does not express; they are refused until handled.
LogicalResult checkElementTypes(ONNXNodeOp op, ValueRange inputs) {
  for (Value v : inputs) {
    if (!isa<RankedTensorType>(v.getType()))
      return nodeError(op) << "needs ranked tensors, got " << v.getType();
    Type t = elementTypeOf(v);
    if (t.isUnsignedInteger() || t.isSignedInteger())
      return nodeError(op) << "element type " << t << " is not supported yet";
    if (!t.isIntOrFloat())
      return nodeError(op) << "element type " << t << " is not supported";
  }
  return success();
}

/// Builds `fn` over all present inputs, result element type `resultType`
/// (defaults to the first input's).
LogicalResult elementwise(ONNXNodeOp op, OpBuilder &b,
                          SmallVectorImpl<Value> &results, ScalarFn fn,
                          Type resultType = {}) {
  SmallVector<Value> inputs;
  for (Value v : op.getInputs())
    if (!isa<NoneType>(v.getType()))
      inputs.push_back(v);
  if (inputs.empty())
    return nodeError(op) << "has no inputs";
  if (failed(checkElementTypes(op, inputs)))
    return failure();
  if (!resultType)
    resultType = elementTypeOf(inputs.front());
  FailureOr<Value> result = buildElementwise(op, b, inputs, resultType, fn);
  if (failed(result))
    return failure();
  results.push_back(*result);
  for (unsigned i = 1; i < op.getNumResults(); ++i)
    results.push_back(Value());
  return success();
}

bool isFloat(Value v) { return isa<FloatType>(v.getType()); }

//===----------------------------------------------------------------------===//
// Unary
//===----------------------------------------------------------------------===//

template <typename FloatOp>
LogicalResult floatUnary(ONNXNodeOp op, OpBuilder &b,
                         SmallVectorImpl<Value> &results) {
  if (!isa<FloatType>(elementTypeOf(op.getInputs()[0])))
    return nodeError(op) << "needs a float input, got "
                         << elementTypeOf(op.getInputs()[0]);
  return elementwise(op, b, results,
                     [](OpBuilder &nb, Location loc, ValueRange a) -> Value {
                       return FloatOp::create(nb, loc, a[0]);
                     });
}

LogicalResult convertRelu(ONNXNodeOp op, OpBuilder &b,
                          SmallVectorImpl<Value> &results) {
  return elementwise(op, b, results,
                     [](OpBuilder &nb, Location loc, ValueRange a) -> Value {
                       Value zero = scalarConstant(nb, loc, a[0].getType(), 0);
                       if (isFloat(a[0]))
                         return arith::MaximumFOp::create(nb, loc, a[0], zero);
                       return arith::MaxSIOp::create(nb, loc, a[0], zero);
                     });
}

LogicalResult convertNeg(ONNXNodeOp op, OpBuilder &b,
                         SmallVectorImpl<Value> &results) {
  return elementwise(
      op, b, results, [](OpBuilder &nb, Location loc, ValueRange a) -> Value {
        if (isFloat(a[0]))
          return arith::NegFOp::create(nb, loc, a[0]);
        return arith::SubIOp::create(
            nb, loc, scalarConstant(nb, loc, a[0].getType(), 0), a[0]);
      });
}

LogicalResult convertAbs(ONNXNodeOp op, OpBuilder &b,
                         SmallVectorImpl<Value> &results) {
  return elementwise(op, b, results,
                     [](OpBuilder &nb, Location loc, ValueRange a) -> Value {
                       if (isFloat(a[0]))
                         return math::AbsFOp::create(nb, loc, a[0]);
                       return math::AbsIOp::create(nb, loc, a[0]);
                     });
}

LogicalResult convertSigmoid(ONNXNodeOp op, OpBuilder &b,
                             SmallVectorImpl<Value> &results) {
  return elementwise(
      op, b, results, [](OpBuilder &nb, Location loc, ValueRange a) -> Value {
        // 1 / (1 + exp(-x))
        Value one = scalarConstant(nb, loc, a[0].getType(), 1);
        Value e =
            math::ExpOp::create(nb, loc, arith::NegFOp::create(nb, loc, a[0]));
        return arith::DivFOp::create(nb, loc, one,
                                     arith::AddFOp::create(nb, loc, one, e));
      });
}

LogicalResult convertReciprocal(ONNXNodeOp op, OpBuilder &b,
                                SmallVectorImpl<Value> &results) {
  return elementwise(
      op, b, results, [](OpBuilder &nb, Location loc, ValueRange a) -> Value {
        return arith::DivFOp::create(
            nb, loc, scalarConstant(nb, loc, a[0].getType(), 1), a[0]);
      });
}

LogicalResult convertNot(ONNXNodeOp op, OpBuilder &b,
                         SmallVectorImpl<Value> &results) {
  return elementwise(
      op, b, results, [](OpBuilder &nb, Location loc, ValueRange a) -> Value {
        return arith::XOrIOp::create(
            nb, loc, a[0], scalarConstant(nb, loc, a[0].getType(), 1));
      });
}

LogicalResult convertIdentity(ONNXNodeOp op, OpBuilder &b,
                              SmallVectorImpl<Value> &results) {
  results.push_back(op.getInputs()[0]);
  return success();
}

/// Dropout in inference: the input, and an all-true mask if asked for.
LogicalResult convertDropout(ONNXNodeOp op, OpBuilder &b,
                             SmallVectorImpl<Value> &results) {
  Value trainingMode = getInput(op, 2);
  std::optional<SmallVector<int64_t>> training = getConstantInts(trainingMode);
  if (trainingMode && (!training || (*training)[0] != 0))
    return nodeError(op) << "training_mode must be a constant false: only "
                            "inference dropout is supported";
  results.push_back(op.getInputs()[0]);
  if (op.getNumResults() > 1) {
    if (op.getResult(1).use_empty()) {
      results.push_back(Value());
    } else {
      Value x = op.getInputs()[0];
      FailureOr<Value> mask = buildElementwise(
          op, b, x, b.getI1Type(),
          [](OpBuilder &nb, Location loc, ValueRange) -> Value {
            return scalarConstant(nb, loc, nb.getI1Type(), 1);
          });
      if (failed(mask))
        return failure();
      results.push_back(*mask);
    }
  }
  return success();
}

/// IsNaN: x != x. IsInf: |x| == inf, restricted by detect_negative /
/// detect_positive.
LogicalResult convertIsNaN(ONNXNodeOp op, OpBuilder &b,
                           SmallVectorImpl<Value> &results) {
  if (!isa<FloatType>(elementTypeOf(op.getInputs()[0])))
    return nodeError(op) << "needs a float input";
  return elementwise(
      op, b, results,
      [](OpBuilder &nb, Location loc, ValueRange a) -> Value {
        return arith::CmpFOp::create(nb, loc, arith::CmpFPredicate::UNO, a[0],
                                     a[0]);
      },
      b.getI1Type());
}

LogicalResult convertIsInf(ONNXNodeOp op, OpBuilder &b,
                           SmallVectorImpl<Value> &results) {
  if (!isa<FloatType>(elementTypeOf(op.getInputs()[0])))
    return nodeError(op) << "needs a float input";
  bool negative = getIntAttr(op, "detect_negative", 1) != 0;
  bool positive = getIntAttr(op, "detect_positive", 1) != 0;
  return elementwise(
      op, b, results,
      [&](OpBuilder &nb, Location loc, ValueRange a) -> Value {
        Type t = a[0].getType();
        double inf = std::numeric_limits<double>::infinity();
        Value isPos =
            arith::CmpFOp::create(nb, loc, arith::CmpFPredicate::OEQ, a[0],
                                  scalarConstant(nb, loc, t, inf));
        Value isNeg =
            arith::CmpFOp::create(nb, loc, arith::CmpFPredicate::OEQ, a[0],
                                  scalarConstant(nb, loc, t, -inf));
        Value no = scalarConstant(nb, loc, nb.getI1Type(), 0);
        return arith::OrIOp::create(nb, loc, positive ? isPos : no,
                                    negative ? isNeg : no);
      },
      b.getI1Type());
}

LogicalResult convertLeakyRelu(ONNXNodeOp op, OpBuilder &b,
                               SmallVectorImpl<Value> &results) {
  double alpha = getFloatAttr(op, "alpha", 0.01);
  return elementwise(
      op, b, results, [&](OpBuilder &nb, Location loc, ValueRange a) -> Value {
        Type t = a[0].getType();
        Value zero = scalarConstant(nb, loc, t, 0);
        Value neg = arith::CmpFOp::create(nb, loc, arith::CmpFPredicate::OLT,
                                          a[0], zero);
        Value scaled = arith::MulFOp::create(nb, loc, a[0],
                                             scalarConstant(nb, loc, t, alpha));
        return arith::SelectOp::create(nb, loc, neg, scaled, a[0]);
      });
}

LogicalResult convertHardSigmoid(ONNXNodeOp op, OpBuilder &b,
                                 SmallVectorImpl<Value> &results) {
  double alpha = getFloatAttr(op, "alpha", 0.2);
  double beta = getFloatAttr(op, "beta", 0.5);
  return elementwise(
      op, b, results, [&](OpBuilder &nb, Location loc, ValueRange a) -> Value {
        // max(0, min(1, alpha * x + beta))
        Type t = a[0].getType();
        Value v = arith::AddFOp::create(
            nb, loc,
            arith::MulFOp::create(nb, loc, a[0],
                                  scalarConstant(nb, loc, t, alpha)),
            scalarConstant(nb, loc, t, beta));
        v = arith::MinimumFOp::create(nb, loc, v,
                                      scalarConstant(nb, loc, t, 1));
        return arith::MaximumFOp::create(nb, loc, v,
                                         scalarConstant(nb, loc, t, 0));
      });
}

LogicalResult convertSoftplus(ONNXNodeOp op, OpBuilder &b,
                              SmallVectorImpl<Value> &results) {
  return elementwise(
      op, b, results, [](OpBuilder &nb, Location loc, ValueRange a) -> Value {
        // log(1 + exp(x)) = max(x, 0) + log1p(exp(-|x|)), without overflow.
        Type t = a[0].getType();
        Value absX = math::AbsFOp::create(nb, loc, a[0]);
        Value tail = math::Log1pOp::create(
            nb, loc,
            math::ExpOp::create(nb, loc, arith::NegFOp::create(nb, loc, absX)));
        Value pos = arith::MaximumFOp::create(nb, loc, a[0],
                                              scalarConstant(nb, loc, t, 0));
        return arith::AddFOp::create(nb, loc, pos, tail);
      });
}

LogicalResult convertGelu(ONNXNodeOp op, OpBuilder &b,
                          SmallVectorImpl<Value> &results) {
  StringRef approximate = getStringAttr(op, "approximate", "none");
  if (approximate != "none" && approximate != "tanh")
    return nodeError(op) << "approximate must be 'none' or 'tanh', got '"
                         << approximate << "'";
  Value x = op.getInputs()[0];
  auto type = rankedType(x);
  if (!type || !isa<FloatType>(type.getElementType()))
    return nodeError(op) << "needs a ranked float input";
  // The QOpt op, so that later passes see the activation (its lowering
  // defines the arithmetic).
  results.push_back(GeluOp::create(b, op.getLoc(), x.getType(), x,
                                   b.getStringAttr(approximate)));
  return success();
}

//===----------------------------------------------------------------------===//
// Binary and n-ary
//===----------------------------------------------------------------------===//

LogicalResult sameElementTypes(ONNXNodeOp op) {
  Type first;
  for (Value v : op.getInputs()) {
    if (isa<NoneType>(v.getType()))
      continue;
    Type t = cast<ShapedType>(v.getType()).getElementType();
    if (first && t != first)
      return nodeError(op) << "inputs have different element types (" << first
                           << " and " << t << ")";
    first = t;
  }
  return success();
}

template <typename FOp, typename IOp>
LogicalResult arithBinary(ONNXNodeOp op, OpBuilder &b,
                          SmallVectorImpl<Value> &results) {
  if (failed(sameElementTypes(op)))
    return failure();
  return elementwise(op, b, results,
                     [](OpBuilder &nb, Location loc, ValueRange a) -> Value {
                       if (isFloat(a[0]))
                         return FOp::create(nb, loc, a[0], a[1]);
                       return IOp::create(nb, loc, a[0], a[1]);
                     });
}

/// Max, Min, Sum, Mean: folds over any number of inputs.
template <typename FOp, typename IOp>
LogicalResult variadic(ONNXNodeOp op, OpBuilder &b,
                       SmallVectorImpl<Value> &results, bool mean = false) {
  if (failed(sameElementTypes(op)))
    return failure();
  return elementwise(
      op, b, results, [&](OpBuilder &nb, Location loc, ValueRange a) -> Value {
        Value acc = a[0];
        for (Value v : a.drop_front())
          acc = isFloat(acc) ? Value(FOp::create(nb, loc, acc, v))
                             : Value(IOp::create(nb, loc, acc, v));
        if (mean)
          acc = arith::DivFOp::create(
              nb, loc, acc,
              scalarConstant(nb, loc, acc.getType(),
                             static_cast<double>(a.size())));
        return acc;
      });
}

LogicalResult convertMax(ONNXNodeOp op, OpBuilder &b,
                         SmallVectorImpl<Value> &results) {
  return variadic<arith::MaximumFOp, arith::MaxSIOp>(op, b, results);
}
LogicalResult convertMin(ONNXNodeOp op, OpBuilder &b,
                         SmallVectorImpl<Value> &results) {
  return variadic<arith::MinimumFOp, arith::MinSIOp>(op, b, results);
}
LogicalResult convertSum(ONNXNodeOp op, OpBuilder &b,
                         SmallVectorImpl<Value> &results) {
  return variadic<arith::AddFOp, arith::AddIOp>(op, b, results);
}
LogicalResult convertMean(ONNXNodeOp op, OpBuilder &b,
                          SmallVectorImpl<Value> &results) {
  return variadic<arith::AddFOp, arith::AddIOp>(op, b, results, true);
}

LogicalResult convertPow(ONNXNodeOp op, OpBuilder &b,
                         SmallVectorImpl<Value> &results) {
  Type base = elementTypeOf(op.getInputs()[0]);
  if (!isa<FloatType>(base))
    return nodeError(op) << "integer base " << base << " is not supported yet";
  return elementwise(
      op, b, results, [](OpBuilder &nb, Location loc, ValueRange a) -> Value {
        Value exponent = castScalar(nb, loc, a[1], a[0].getType());
        return math::PowFOp::create(nb, loc, a[0], exponent);
      });
}

LogicalResult convertMod(ONNXNodeOp op, OpBuilder &b,
                         SmallVectorImpl<Value> &results) {
  bool fmod = getIntAttr(op, "fmod", 0) != 0;
  if (failed(sameElementTypes(op)))
    return failure();
  if (isa<FloatType>(elementTypeOf(op.getInputs()[0])) && !fmod)
    return nodeError(op) << "float inputs need fmod = 1";
  return elementwise(
      op, b, results, [&](OpBuilder &nb, Location loc, ValueRange a) -> Value {
        if (isFloat(a[0]))
          return arith::RemFOp::create(nb, loc, a[0], a[1]);
        if (fmod) // sign of the dividend, as C's %
          return arith::RemSIOp::create(nb, loc, a[0], a[1]);
        // Python's %: the sign of the divisor.
        Value r = arith::RemSIOp::create(nb, loc, a[0], a[1]);
        Value zero = scalarConstant(nb, loc, a[0].getType(), 0);
        Value rNeg =
            arith::CmpIOp::create(nb, loc, arith::CmpIPredicate::slt, r, zero);
        Value bNeg = arith::CmpIOp::create(nb, loc, arith::CmpIPredicate::slt,
                                           a[1], zero);
        Value nonZero =
            arith::CmpIOp::create(nb, loc, arith::CmpIPredicate::ne, r, zero);
        Value differ = arith::XOrIOp::create(nb, loc, rNeg, bNeg);
        Value fix = arith::AndIOp::create(nb, loc, differ, nonZero);
        return arith::SelectOp::create(
            nb, loc, fix, arith::AddIOp::create(nb, loc, r, a[1]), r);
      });
}

template <arith::CmpFPredicate FPred, arith::CmpIPredicate IPred>
LogicalResult compare(ONNXNodeOp op, OpBuilder &b,
                      SmallVectorImpl<Value> &results) {
  if (failed(sameElementTypes(op)))
    return failure();
  return elementwise(
      op, b, results,
      [](OpBuilder &nb, Location loc, ValueRange a) -> Value {
        if (isFloat(a[0]))
          return arith::CmpFOp::create(nb, loc, FPred, a[0], a[1]);
        return arith::CmpIOp::create(nb, loc, IPred, a[0], a[1]);
      },
      b.getI1Type());
}

template <typename LogicOp>
LogicalResult logical(ONNXNodeOp op, OpBuilder &b,
                      SmallVectorImpl<Value> &results) {
  return elementwise(op, b, results,
                     [](OpBuilder &nb, Location loc, ValueRange a) -> Value {
                       return LogicOp::create(nb, loc, a[0], a[1]);
                     });
}

LogicalResult convertWhere(ONNXNodeOp op, OpBuilder &b,
                           SmallVectorImpl<Value> &results) {
  if (op.getInputs().size() != 3)
    return nodeError(op) << "expects 3 inputs";
  Type t = elementTypeOf(op.getInputs()[1]);
  if (t != elementTypeOf(op.getInputs()[2]))
    return nodeError(op) << "X and Y have different element types";
  return elementwise(
      op, b, results,
      [](OpBuilder &nb, Location loc, ValueRange a) -> Value {
        return arith::SelectOp::create(nb, loc, a[0], a[1], a[2]);
      },
      t);
}

LogicalResult convertClip(ONNXNodeOp op, OpBuilder &b,
                          SmallVectorImpl<Value> &results) {
  Value x = op.getInputs()[0], lo = getInput(op, 1), hi = getInput(op, 2);
  SmallVector<Value> inputs = {x};
  if (lo)
    inputs.push_back(lo);
  if (hi)
    inputs.push_back(hi);
  if (failed(checkElementTypes(op, inputs)))
    return failure();
  FailureOr<Value> result = buildElementwise(
      op, b, inputs, elementTypeOf(x),
      [&](OpBuilder &nb, Location loc, ValueRange a) -> Value {
        Value v = a[0];
        unsigned next = 1;
        if (lo)
          v = isFloat(v) ? Value(arith::MaximumFOp::create(nb, loc, v, a[next]))
                         : Value(arith::MaxSIOp::create(nb, loc, v, a[next]));
        if (lo)
          ++next;
        if (hi)
          v = isFloat(v) ? Value(arith::MinimumFOp::create(nb, loc, v, a[next]))
                         : Value(arith::MinSIOp::create(nb, loc, v, a[next]));
        return v;
      });
  if (failed(result))
    return failure();
  results.push_back(*result);
  return success();
}

/// The builtin type of ONNX TensorProto.DataType `to` for Cast.
Type castTarget(OpBuilder &b, int64_t to) {
  switch (to) {
  case 1:
    return b.getF32Type();
  case 3:
    return b.getIntegerType(8);
  case 5:
    return b.getIntegerType(16);
  case 6:
    return b.getI32Type();
  case 7:
    return b.getI64Type();
  case 9:
    return b.getI1Type();
  case 10:
    return b.getF16Type();
  case 11:
    return b.getF64Type();
  case 16:
    return b.getBF16Type();
  default:
    return {};
  }
}

LogicalResult castTo(ONNXNodeOp op, OpBuilder &b,
                     SmallVectorImpl<Value> &results, Type to) {
  Value x = op.getInputs()[0];
  if (failed(checkElementTypes(op, x)))
    return failure();
  if (elementTypeOf(x) == to) { // a no-op (exports cast i64 to i64)
    results.push_back(x);
    return success();
  }
  FailureOr<Value> result = buildElementwise(
      op, b, x, to, [&](OpBuilder &nb, Location loc, ValueRange a) -> Value {
        return castScalar(nb, loc, a[0], to);
      });
  if (failed(result))
    return failure();
  results.push_back(*result);
  return success();
}

LogicalResult convertCast(ONNXNodeOp op, OpBuilder &b,
                          SmallVectorImpl<Value> &results) {
  int64_t to = getIntAttr(op, "to", 0);
  Type target = castTarget(b, to);
  if (!target)
    return nodeError(op) << "cast to ONNX type " << to
                         << " is not supported yet";
  return castTo(op, b, results, target);
}

LogicalResult convertCastLike(ONNXNodeOp op, OpBuilder &b,
                              SmallVectorImpl<Value> &results) {
  Type target = elementTypeOf(op.getInputs()[1]);
  if (!target.isSignlessIntOrFloat())
    return nodeError(op) << "cast to " << target << " is not supported yet";
  return castTo(op, b, results, target);
}

const HandlerEntry kHandlers[] = {
    {"", "Relu", 6, convertRelu},
    {"", "Sigmoid", 6, convertSigmoid},
    {"", "Tanh", 6, floatUnary<math::TanhOp>},
    {"", "Exp", 6, floatUnary<math::ExpOp>},
    {"", "Log", 6, floatUnary<math::LogOp>},
    {"", "Sqrt", 6, floatUnary<math::SqrtOp>},
    {"", "Erf", 9, floatUnary<math::ErfOp>},
    {"", "Floor", 6, floatUnary<math::FloorOp>},
    {"", "Ceil", 6, floatUnary<math::CeilOp>},
    {"", "Sin", 7, floatUnary<math::SinOp>},
    {"", "Cos", 7, floatUnary<math::CosOp>},
    {"", "Neg", 6, convertNeg},
    {"", "Abs", 6, convertAbs},
    {"", "Reciprocal", 6, convertReciprocal},
    {"", "Not", 1, convertNot},
    {"", "IsNaN", 9, convertIsNaN},
    {"", "IsInf", 10, convertIsInf},
    {"", "Identity", 1, convertIdentity},
    {"", "Dropout", 12, convertDropout},
    {"", "LeakyRelu", 6, convertLeakyRelu},
    {"", "HardSigmoid", 6, convertHardSigmoid},
    {"", "Softplus", 1, convertSoftplus},
    {"", "Gelu", 20, convertGelu},
    {"", "Add", 7, arithBinary<arith::AddFOp, arith::AddIOp>},
    {"", "Sub", 7, arithBinary<arith::SubFOp, arith::SubIOp>},
    {"", "Mul", 7, arithBinary<arith::MulFOp, arith::MulIOp>},
    {"", "Div", 7, arithBinary<arith::DivFOp, arith::DivSIOp>},
    {"", "Pow", 7, convertPow},
    {"", "Mod", 10, convertMod},
    {"", "Max", 8, convertMax},
    {"", "Min", 8, convertMin},
    {"", "Sum", 8, convertSum},
    {"", "Mean", 8, convertMean},
    {"", "Equal", 7,
     compare<arith::CmpFPredicate::OEQ, arith::CmpIPredicate::eq>},
    {"", "Less", 7,
     compare<arith::CmpFPredicate::OLT, arith::CmpIPredicate::slt>},
    {"", "LessOrEqual", 12,
     compare<arith::CmpFPredicate::OLE, arith::CmpIPredicate::sle>},
    {"", "Greater", 7,
     compare<arith::CmpFPredicate::OGT, arith::CmpIPredicate::sgt>},
    {"", "GreaterOrEqual", 12,
     compare<arith::CmpFPredicate::OGE, arith::CmpIPredicate::sge>},
    {"", "And", 7, logical<arith::AndIOp>},
    {"", "Or", 7, logical<arith::OrIOp>},
    {"", "Xor", 7, logical<arith::XOrIOp>},
    {"", "Where", 9, convertWhere},
    {"", "Clip", 11, convertClip},
    {"", "Cast", 6, convertCast},
    {"", "CastLike", 15, convertCastLike},
};

} // namespace

ArrayRef<HandlerEntry> mlir::qopt::onnx::getElementwiseHandlers() {
  return kHandlers;
}
