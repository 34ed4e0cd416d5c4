//===- QuantScales.cpp - Quantization scales computed in the IR -----------===//

#include "qopt/Dialect/QOpt/Transforms/QuantScales.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"

#include <array>
#include <limits>
#include <vector>

using namespace mlir;
using namespace mlir::qopt;

Value mlir::qopt::createReduction(OpBuilder &b, Location loc, Value x,
                                  ArrayRef<int64_t> dims, ReductionKind kind) {
  SmallVector<OpFoldResult> sizes;
  for (auto [d, size] : llvm::enumerate(tensor::getMixedSizes(b, loc, x)))
    if (!llvm::is_contained(dims, int64_t(d)))
      sizes.push_back(size);
  Type f32 = b.getF32Type();
  double identity = kind == ReductionKind::AbsMax ? 0.0
                    : kind == ReductionKind::Min
                        ? std::numeric_limits<double>::infinity()
                        : -std::numeric_limits<double>::infinity();
  Value init = tensor::EmptyOp::create(b, loc, sizes, f32);
  Value start = arith::ConstantOp::create(b, loc, b.getF32FloatAttr(identity));
  Value fill = linalg::FillOp::create(b, loc, start, init).getResult(0);
  return linalg::ReduceOp::create(
             b, loc, ValueRange{x}, ValueRange{fill}, dims,
             [&](OpBuilder &nb, Location l, ValueRange a) {
               Value v = a[0];
               if (!v.getType().isF32())
                 v = arith::ExtFOp::create(nb, l, nb.getF32Type(), v);
               Value r;
               if (kind == ReductionKind::AbsMax) // NaNs ignored, as fmax
                 r = arith::MaxNumFOp::create(nb, l, a[1],
                                              math::AbsFOp::create(nb, l, v));
               else if (kind == ReductionKind::Min)
                 r = arith::MinimumFOp::create(nb, l, a[1], v);
               else
                 r = arith::MaximumFOp::create(nb, l, a[1], v);
               linalg::YieldOp::create(nb, l, r);
             })
      .getResult(0);
}

/// An elementwise f32 map over same-shaped tensors.
static Value mapF32(OpBuilder &b, Location loc, ValueRange inputs,
                    function_ref<Value(OpBuilder &, Location, ValueRange)> fn) {
  int64_t rank = cast<RankedTensorType>(inputs[0].getType()).getRank();
  Value init = tensor::EmptyOp::create(
      b, loc, tensor::getMixedSizes(b, loc, inputs[0]), b.getF32Type());
  SmallVector<AffineMap> maps(inputs.size() + 1,
                              b.getMultiDimIdentityMap(rank));
  SmallVector<utils::IteratorType> par(rank, utils::IteratorType::parallel);
  return linalg::GenericOp::create(
             b, loc, init.getType(), inputs, init, maps, par,
             [&](OpBuilder &nb, Location l, ValueRange a) {
               linalg::YieldOp::create(nb, l, fn(nb, l, a.drop_back()));
             })
      .getResult(0);
}

std::pair<Value, Value> mlir::qopt::createQuantScales(OpBuilder &b,
                                                      Location loc, Value x,
                                                      ArrayRef<int64_t> dims,
                                                      double largest,
                                                      bool zeroPoint) {
  auto c = [](OpBuilder &nb, Location l, double v) {
    return arith::ConstantOp::create(nb, l, nb.getF32FloatAttr(v)).getResult();
  };
  auto orOne = [&](OpBuilder &nb, Location l, Value s) {
    Value zero = arith::CmpFOp::create(nb, l, arith::CmpFPredicate::OEQ, s,
                                       c(nb, l, 0.0));
    return arith::SelectOp::create(nb, l, zero, c(nb, l, 1.0), s).getResult();
  };
  if (!zeroPoint) {
    Value absmax = createReduction(b, loc, x, dims, ReductionKind::AbsMax);
    return {mapF32(b, loc, absmax,
                   [&](OpBuilder &nb, Location l, ValueRange a) {
                     return orOne(
                         nb, l,
                         arith::DivFOp::create(nb, l, a[0], c(nb, l, largest)));
                   }),
            Value()};
  }
  Value lo = createReduction(b, loc, x, dims, ReductionKind::Min);
  Value hi = createReduction(b, loc, x, dims, ReductionKind::Max);
  Value scale =
      mapF32(b, loc, {lo, hi}, [&](OpBuilder &nb, Location l, ValueRange a) {
        Value l0 = arith::MinimumFOp::create(nb, l, a[0], c(nb, l, 0.0));
        Value h0 = arith::MaximumFOp::create(nb, l, a[1], c(nb, l, 0.0));
        return orOne(nb, l,
                     arith::DivFOp::create(nb, l,
                                           arith::SubFOp::create(nb, l, h0, l0),
                                           c(nb, l, largest)));
      });
  Value zp =
      mapF32(b, loc, {lo, scale}, [&](OpBuilder &nb, Location l, ValueRange a) {
        Value l0 = arith::MinimumFOp::create(nb, l, a[0], c(nb, l, 0.0));
        Value z = math::RoundEvenOp::create(
            nb, l,
            arith::DivFOp::create(nb, l, arith::NegFOp::create(nb, l, l0),
                                  a[1]));
        z = arith::MaximumFOp::create(nb, l, z, c(nb, l, 0.0));
        return arith::MinimumFOp::create(nb, l, z, c(nb, l, largest))
            .getResult();
      });
  return {scale, zp};
}

std::optional<::qopt::SmallFloatKind> mlir::qopt::smallFloatKindOf(Type t) {
  if (isa<Float8E4M3FNType>(t))
    return ::qopt::SmallFloatKind::F8E4M3FN;
  if (isa<Float8E5M2Type>(t))
    return ::qopt::SmallFloatKind::F8E5M2;
  if (isa<Float8E8M0FNUType>(t))
    return ::qopt::SmallFloatKind::F8E8M0FNU;
  if (isa<Float4E2M1FNType>(t))
    return ::qopt::SmallFloatKind::F4E2M1FN;
  return std::nullopt;
}

ArrayRef<float> mlir::qopt::decodedTable(::qopt::SmallFloatKind kind) {
  static const std::array<std::vector<float>, 4> tables = [] {
    std::array<std::vector<float>, 4> t;
    for (int k = 0; k < 4; ++k) {
      auto kind = static_cast<::qopt::SmallFloatKind>(k);
      for (unsigned c = 0; c < (1u << ::qopt::smallFloatBits(kind)); ++c)
        t[k].push_back(::qopt::smallFloatDecode(kind, static_cast<uint8_t>(c)));
    }
    return t;
  }();
  return tables[static_cast<int>(kind)];
}

ArrayRef<float> mlir::qopt::codebookOf(QuantFormatAttrInterface format) {
  if (auto f = dyn_cast<FloatFormatAttr>(format)) {
    std::optional<::qopt::SmallFloatKind> kind = smallFloatKindOf(f.getType());
    if (!kind || *kind == ::qopt::SmallFloatKind::F8E8M0FNU)
      return {};
    return decodedTable(*kind);
  }
  if (isa<NF4FormatAttr>(format))
    return ::qopt::nf4CodeTable();
  if (isa<BnbFP4FormatAttr>(format))
    return ::qopt::fp4CodeTable();
  if (isa<Dynamic8FormatAttr>(format))
    return ::qopt::dynamicCodeTable();
  return {};
}
