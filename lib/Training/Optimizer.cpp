//===- Optimizer.cpp - Optimizer steps built into a train entry -----------===//

#include "qopt/Training/Optimizer.h"

#include "qopt/Conversion/Utils/LinalgBuilders.h"
#include "qopt/Dialect/QOpt/IR/QOpt.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"

#include <cmath>

using namespace mlir;
using namespace mlir::qopt;

//===----------------------------------------------------------------------===//
// Optimizer specs
//===----------------------------------------------------------------------===//

llvm::Expected<OptimizerSpec> mlir::qopt::parseOptimizerSpec(StringRef text) {
  auto fail = [&](const Twine &why) {
    return llvm::createStringError("optimizer '" + text + "': " + why);
  };
  OptimizerSpec spec;
  auto [kind, rest] = text.split(':');
  kind = kind.trim();
  if (kind == "adamw") {
    spec.kind = OptimizerSpec::AdamW;
  } else if (kind == "sgd") {
    spec.kind = OptimizerSpec::SGD;
    spec.weightDecay = 0.0;
  } else {
    return fail("unknown optimizer '" + kind + "' (adamw, sgd)");
  }
  SmallVector<StringRef> items;
  rest.split(items, ',', -1, /*KeepEmpty=*/false);
  for (StringRef item : items) {
    auto [key, value] = item.split('=');
    key = key.trim();
    value = value.trim();
    auto number = [&](double &out) -> llvm::Error {
      if (value.getAsDouble(out) || !std::isfinite(out))
        return fail("'" + key + "' must be a number, not '" + value + "'");
      return llvm::Error::success();
    };
    llvm::Error err = llvm::Error::success();
    if (key == "lr") {
      err = number(spec.lr);
      if (!err && spec.lr < 0)
        err = fail("'lr' must not be negative");
    } else if (key == "weight_decay") {
      err = number(spec.weightDecay);
      if (!err && spec.weightDecay < 0)
        err = fail("'weight_decay' must not be negative");
    } else if (key == "betas" && spec.kind == OptimizerSpec::AdamW) {
      auto [b1, b2] = value.split('/');
      if (b1.trim().getAsDouble(spec.beta1) ||
          b2.trim().getAsDouble(spec.beta2) ||
          !(spec.beta1 >= 0 && spec.beta1 < 1) ||
          !(spec.beta2 >= 0 && spec.beta2 < 1))
        err = fail("'betas' must be two numbers in [0, 1) as B1/B2, not '" +
                   value + "'");
    } else if (key == "eps" && spec.kind == OptimizerSpec::AdamW) {
      err = number(spec.eps);
      if (!err && spec.eps < 0)
        err = fail("'eps' must not be negative");
    } else if (key == "momentum" && spec.kind == OptimizerSpec::SGD) {
      err = number(spec.momentum);
    } else if (key == "dampening" && spec.kind == OptimizerSpec::SGD) {
      err = number(spec.dampening);
    } else if (key == "nesterov" && spec.kind == OptimizerSpec::SGD) {
      if (value != "true" && value != "false")
        err = fail("'nesterov' must be true or false");
      spec.nesterov = value == "true";
    } else {
      err = fail("unknown key '" + key + "' for " + kind + " (" +
                 (spec.kind == OptimizerSpec::AdamW
                      ? "lr, betas, eps, weight_decay"
                      : "lr, momentum, dampening, nesterov, weight_decay") +
                 ")");
    }
    if (err)
      return std::move(err);
  }
  if (spec.nesterov && (spec.momentum <= 0 || spec.dampening != 0))
    return fail("nesterov needs a momentum and zero dampening (as torch)");
  return spec;
}

//===----------------------------------------------------------------------===//
// The step
//===----------------------------------------------------------------------===//

namespace {
Value f64(OpBuilder &b, Location loc, double v) {
  return arith::ConstantOp::create(b, loc, b.getF64FloatAttr(v));
}
Value toF32(OpBuilder &b, Location loc, Value v) {
  return arith::TruncFOp::create(b, loc, b.getF32Type(), v);
}
} // namespace

Value mlir::qopt::addStateParameter(OpBuilder &b, func::FuncOp func,
                                    unsigned index, StringRef name,
                                    RankedTensorType type, Location loc) {
  Attribute zero = isa<FloatType>(type.getElementType())
                       ? Attribute(b.getFloatAttr(type.getElementType(), 0.0))
                       : Attribute(b.getIntegerAttr(type.getElementType(), 0));
  NamedAttribute attrs[] = {
      b.getNamedAttr(QOptDialect::ParamAttrHelper::getNameStr(),
                     b.getStringAttr(name)),
      b.getNamedAttr(QOptDialect::StateAttrHelper::getNameStr(),
                     b.getUnitAttr()),
      b.getNamedAttr(QOptDialect::InlineAttrHelper::getNameStr(),
                     DenseElementsAttr::get(type, zero)),
      b.getNamedAttr("bufferization.writable", b.getBoolAttr(false))};
  if (failed(func.insertArgument(index, type, b.getDictionaryAttr(attrs), loc)))
    return {};
  return func.getArgument(index);
}

/// The schedule's factor at scheduler count s = step - 1 (transformers'
/// schedulers step after the optimizer: the first step uses lambda(0)).
Value OptimizerBuilder::learningRate(Value step) {
  Value s = arith::SubFOp::create(b, loc, step, f64(b, loc, 1.0));
  double w = double(warmupSteps), t = double(totalSteps);
  Value base = f64(b, loc, spec.lr);
  Value factor = f64(b, loc, 1.0);
  if (schedule == "linear") {
    Value left = arith::SubFOp::create(b, loc, f64(b, loc, t), s);
    factor =
        arith::DivFOp::create(b, loc, left, f64(b, loc, std::max(1.0, t - w)));
    factor = arith::MaximumFOp::create(b, loc, factor, f64(b, loc, 0.0));
  } else if (schedule == "cosine") {
    Value progress = arith::DivFOp::create(
        b, loc, arith::SubFOp::create(b, loc, s, f64(b, loc, w)),
        f64(b, loc, std::max(1.0, t - w)));
    Value angle = arith::MulFOp::create(b, loc, progress, f64(b, loc, M_PI));
    Value cosine = math::CosOp::create(b, loc, angle);
    factor = arith::MulFOp::create(
        b, loc, f64(b, loc, 0.5),
        arith::AddFOp::create(b, loc, f64(b, loc, 1.0), cosine));
    factor = arith::MaximumFOp::create(b, loc, factor, f64(b, loc, 0.0));
  }
  if (warmupSteps > 0) {
    Value warm =
        arith::DivFOp::create(b, loc, s, f64(b, loc, std::max(1.0, w)));
    Value warming = arith::CmpFOp::create(b, loc, arith::CmpFPredicate::OLT, s,
                                          f64(b, loc, w));
    factor = arith::SelectOp::create(b, loc, warming, warm, factor);
  }
  return arith::MulFOp::create(b, loc, base, factor);
}

FailureOr<SmallVector<ParameterUpdate>>
OptimizerBuilder::build(func::FuncOp func, unsigned stateIndex,
                        ArrayRef<Value> params, ArrayRef<std::string> names,
                        ArrayRef<Value> grads) {
  SmallVector<ParameterUpdate> updates;
  auto addState = [&](StringRef name, RankedTensorType type) -> Value {
    return addStateParameter(b, func, stateIndex++, name, type, loc);
  };
  auto i64Scalar = RankedTensorType::get({}, b.getI64Type());
  Value stepState = addState("optimizer.step", i64Scalar);
  if (!stepState)
    return failure();
  // t = step + 1, and the scalar factors, in f64 as torch's Python floats.
  Value oldStep = tensor::ExtractOp::create(b, loc, stepState, ValueRange{});
  Value step = arith::AddIOp::create(
      b, loc, oldStep,
      arith::ConstantOp::create(b, loc, b.getI64IntegerAttr(1)));
  updates.push_back(
      {"optimizer.step",
       tensor::FromElementsOp::create(b, loc, i64Scalar, ValueRange{step})});
  Value t = arith::SIToFPOp::create(b, loc, b.getF64Type(), step);
  Value lr = learningRate(t);

  // Global-norm clipping: every gradient scaled by min(1, max / (norm +
  // 1e-6)), torch's clip_grad_norm_.
  Value clip;
  if (maxGradNorm > 0) {
    Value sumSq = f64(b, loc, 0.0);
    for (Value g : grads) {
      Value sq = createTrailingReduction(
          b, loc, g, 0, false, {}, 0.0,
          [](OpBuilder &nb, Location l, ValueRange a) -> Value {
            Value x = castToF32(nb, l, a[0]);
            return arith::AddFOp::create(nb, l, a[1],
                                         arith::MulFOp::create(nb, l, x, x));
          });
      Value v = tensor::ExtractOp::create(b, loc, sq, ValueRange{});
      sumSq = arith::AddFOp::create(
          b, loc, sumSq, arith::ExtFOp::create(b, loc, b.getF64Type(), v));
    }
    Value norm = math::SqrtOp::create(b, loc, sumSq);
    Value coef = arith::DivFOp::create(
        b, loc, f64(b, loc, maxGradNorm),
        arith::AddFOp::create(b, loc, norm, f64(b, loc, 1e-6)));
    clip = toF32(b, loc,
                 arith::MinimumFOp::create(b, loc, coef, f64(b, loc, 1.0)));
  }

  for (auto [param, name, grad] : llvm::zip(params, names, grads)) {
    auto type = cast<RankedTensorType>(param.getType());
    if (!type.getElementType().isF32())
      return func.emitError() << "qopt-build-train-step: trainable parameter '"
                              << name << "' is " << type
                              << "; the optimizer updates f32 parameters "
                                 "(bf16 / f16 master copies are not built "
                                 "yet)";
    int64_t rank = type.getRank();
    AffineMap id = b.getMultiDimIdentityMap(rank);
    SmallVector<utils::IteratorType> par(rank, utils::IteratorType::parallel);
    SmallVector<OpFoldResult> sizes = tensor::getMixedSizes(b, loc, param);
    auto empty = [&] {
      return tensor::EmptyOp::create(b, loc, sizes, b.getF32Type()).getResult();
    };
    if (spec.kind == OptimizerSpec::AdamW) {
      Value m = addState(name + ".exp_avg", type);
      Value v = addState(name + ".exp_avg_sq", type);
      if (!m || !v)
        return failure();
      Value bc1 = arith::SubFOp::create(
          b, loc, f64(b, loc, 1.0),
          math::PowFOp::create(b, loc, f64(b, loc, spec.beta1), t));
      Value bc2 = arith::SubFOp::create(
          b, loc, f64(b, loc, 1.0),
          math::PowFOp::create(b, loc, f64(b, loc, spec.beta2), t));
      Value stepSize = toF32(b, loc, arith::DivFOp::create(b, loc, lr, bc1));
      Value bc2Sqrt = toF32(b, loc, math::SqrtOp::create(b, loc, bc2));
      Value decay = toF32(b, loc,
                          arith::SubFOp::create(
                              b, loc, f64(b, loc, 1.0),
                              arith::MulFOp::create(
                                  b, loc, lr, f64(b, loc, spec.weightDecay))));
      auto adam = linalg::GenericOp::create(
          b, loc, TypeRange{type, type, type}, ValueRange{param, grad, m, v},
          ValueRange{empty(), empty(), empty()}, SmallVector<AffineMap>(7, id),
          par, [&](OpBuilder &nb, Location l, ValueRange a) {
            auto c = [&](double x) {
              return arith::ConstantOp::create(nb, l, nb.getF32FloatAttr(x))
                  .getResult();
            };
            Value p = a[0], g = a[1], mOld = a[2], vOld = a[3];
            if (clip)
              g = arith::MulFOp::create(nb, l, g, clip);
            if (spec.weightDecay != 0)
              p = arith::MulFOp::create(nb, l, p, decay);
            // exp_avg.lerp_(grad, 1 - beta1)
            Value mNew = arith::AddFOp::create(
                nb, l, mOld,
                arith::MulFOp::create(nb, l, c(1.0 - spec.beta1),
                                      arith::SubFOp::create(nb, l, g, mOld)));
            // exp_avg_sq.mul_(beta2).addcmul_(grad, grad, 1 - beta2)
            Value vNew = arith::AddFOp::create(
                nb, l, arith::MulFOp::create(nb, l, vOld, c(spec.beta2)),
                arith::MulFOp::create(nb, l, arith::MulFOp::create(nb, l, g, g),
                                      c(1.0 - spec.beta2)));
            Value denom = arith::AddFOp::create(
                nb, l,
                arith::DivFOp::create(nb, l, math::SqrtOp::create(nb, l, vNew),
                                      bc2Sqrt),
                c(spec.eps));
            Value pNew = arith::SubFOp::create(
                nb, l, p,
                arith::MulFOp::create(
                    nb, l, stepSize,
                    arith::DivFOp::create(nb, l, mNew, denom)));
            linalg::YieldOp::create(nb, l, ValueRange{pNew, mNew, vNew});
          });
      // (The CUDA target updates every parameter so marked in one launch of
      // the kernel library's multi-tensor AdamW: qopt-linalg-to-blas
      // matches the body above exactly.)
      adam->setAttr("qopt.adamw", b.getUnitAttr());
      updates.push_back({name, adam.getResult(0)});
      updates.push_back({name + ".exp_avg", adam.getResult(1)});
      updates.push_back({name + ".exp_avg_sq", adam.getResult(2)});
      continue;
    }
    // SGD, torch's single-tensor form.
    Value lr32 = toF32(b, loc, lr);
    Value buf;
    if (spec.momentum != 0) {
      buf = addState(name + ".momentum_buffer", type);
      if (!buf)
        return failure();
    }
    Value first = arith::CmpIOp::create(
        b, loc, arith::CmpIPredicate::eq, step,
        arith::ConstantOp::create(b, loc, b.getI64IntegerAttr(1)));
    SmallVector<Value> ins = {param, grad};
    SmallVector<Value> outs = {empty()};
    SmallVector<Type> types = {type};
    if (buf) {
      ins.push_back(buf);
      outs.push_back(empty());
      types.push_back(type);
    }
    auto sgd = linalg::GenericOp::create(
        b, loc, types, ins, outs,
        SmallVector<AffineMap>(ins.size() + outs.size(), id), par,
        [&](OpBuilder &nb, Location l, ValueRange a) {
          auto c = [&](double x) {
            return arith::ConstantOp::create(nb, l, nb.getF32FloatAttr(x))
                .getResult();
          };
          Value p = a[0], g = a[1];
          if (clip)
            g = arith::MulFOp::create(nb, l, g, clip);
          if (spec.weightDecay != 0)
            g = arith::AddFOp::create(
                nb, l, g, arith::MulFOp::create(nb, l, p, c(spec.weightDecay)));
          SmallVector<Value> yields;
          Value bufNew;
          if (buf) {
            Value later = arith::AddFOp::create(
                nb, l, arith::MulFOp::create(nb, l, a[2], c(spec.momentum)),
                arith::MulFOp::create(nb, l, g, c(1.0 - spec.dampening)));
            // The first step's buffer is the gradient itself.
            bufNew = arith::SelectOp::create(nb, l, first, g, later);
            g = spec.nesterov ? arith::AddFOp::create(
                                    nb, l, g,
                                    arith::MulFOp::create(nb, l, bufNew,
                                                          c(spec.momentum)))
                                    .getResult()
                              : bufNew;
          }
          yields.push_back(arith::SubFOp::create(
              nb, l, p, arith::MulFOp::create(nb, l, g, lr32)));
          if (buf)
            yields.push_back(bufNew);
          linalg::YieldOp::create(nb, l, yields);
        });
    updates.push_back({name, sgd.getResult(0)});
    if (buf)
      updates.push_back({name + ".momentum_buffer", sgd.getResult(1)});
  }
  return updates;
}
