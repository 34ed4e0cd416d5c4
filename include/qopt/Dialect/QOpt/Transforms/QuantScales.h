//===- QuantScales.h - Quantization scales computed in the IR ---*- C++ -*-===//
//
// The scales (and zero points) of a tensor computed by linalg reductions in
// the IR, with the formulas qopt's compile-time quantizers use: what
// fake-quant insertion (at every forward pass) and the lowering of
// `qopt.quantize` (at run time) build. Also the code values of the
// dialect's formats, which compile-time dequantization and the lowering
// share.
//
//===----------------------------------------------------------------------===//

#ifndef QOPT_DIALECT_QOPT_TRANSFORMS_QUANTSCALES_H
#define QOPT_DIALECT_QOPT_TRANSFORMS_QUANTSCALES_H

#include "qopt/Dialect/QOpt/IR/QOpt.h"
#include "qopt/Support/QuantFormats.h"

#include "mlir/IR/Builders.h"

#include <optional>

#include <utility>

namespace mlir::qopt {

/// `x` (any float type) reduced over `dims` (sorted) to f32: the largest
/// magnitude, the minimum or the maximum.
enum class ReductionKind { AbsMax, Min, Max };
Value createReduction(OpBuilder &b, Location loc, Value x,
                      ArrayRef<int64_t> dims, ReductionKind kind);

/// The quantization scales (and zero points, f32) of `x`, one per element
/// of `x` reduced over `dims`, as qopt's compile-time quantizers compute
/// them: without zero points absmax / `largest` (1 for all zeros); with
/// them (unsigned codes 0…`largest`) over the range widened to include 0,
/// (max − min) / largest (1 for all zeros), zero point clamp(round(−min /
/// s), 0, largest).
std::pair<Value, Value> createQuantScales(OpBuilder &b, Location loc, Value x,
                                          ArrayRef<int64_t> dims,
                                          double largest, bool zeroPoint);

/// The Support kind of a small float type (f8E4M3FN, f8E5M2, f8E8M0FNU,
/// f4E2M1FN), if it is one.
std::optional<::qopt::SmallFloatKind> smallFloatKindOf(Type t);

/// Every code of a small float decoded (NaN codes included), built once
/// (thread-safely: passes may run on several functions at a time).
ArrayRef<float> decodedTable(::qopt::SmallFloatKind kind);

/// The code values of a codebook format (NF4, bitsandbytes' FP4 and 8-bit
/// dynamic, FP8 / FP4 E2M1 codes), indexed by code; empty for the others.
ArrayRef<float> codebookOf(QuantFormatAttrInterface format);

} // namespace mlir::qopt

#endif // QOPT_DIALECT_QOPT_TRANSFORMS_QUANTSCALES_H
