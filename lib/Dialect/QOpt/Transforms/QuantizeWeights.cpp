//===- QuantizeWeights.cpp - Quantize the linear layers' weights ----------===//
//
// `qoptc --quantize SPEC`: the float weights of the selected linear layers
// are quantized at compile time into a format of the dialect and stored
// packed; the float originals are dropped when nothing else reads them.
//
//===----------------------------------------------------------------------===//

#include "qopt/Dialect/QOpt/Transforms/LoraTargets.h"
#include "qopt/Dialect/QOpt/Transforms/Passes.h"
#include "qopt/Dialect/QOpt/Transforms/QuantScales.h"
#include "qopt/Dialect/QOpt/Transforms/Weights.h"
#include "qopt/Support/QuantFormats.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/IR/Builders.h"
#include "mlir/IR/BuiltinOps.h"
#include "llvm/Support/Format.h"
#include "llvm/Support/FormatVariadic.h"
#include "llvm/Support/MathExtras.h"

#include <cmath>

namespace mlir::qopt {
#define GEN_PASS_DEF_QOPTQUANTIZEWEIGHTSPASS
#include "qopt/Dialect/QOpt/Transforms/Passes.h.inc"
} // namespace mlir::qopt

using namespace mlir;
using namespace mlir::qopt;
namespace dense = ::qopt::dense;

std::optional<std::string>
mlir::qopt::checkQuantizeSpec(const QuantizeSpec &spec) {
  StringRef fmt(spec.format);
  const std::string &format = spec.format;
  bool blockwise = fmt == "nf4" || fmt == "fp4";
  bool fp8 = fmt == "fp8-e4m3" || fmt == "fp8-e5m2";
  bool mx = fmt == "mxfp4", nv = fmt == "nvfp4";
  unsigned bits = 0;
  if (fmt.consume_front("int") &&
      (fmt.getAsInteger(10, bits) || bits < 2 || bits > 8))
    return "format 'int" + fmt.str() +
           "' is not supported (int2 to int8: 2 to 8 bits)";
  if (!blockwise && !bits && !fp8 && !mx && !nv)
    return "unknown format '" + format +
           "' (nf4, fp4, int2 to int8, fp8-e4m3, fp8-e5m2, mxfp4, nvfp4)";
  if (fp8 && (spec.group != 0 || spec.asym || spec.mse || spec.block != 0 ||
              spec.doubleQuant))
    return format + " takes one scale per tensor, or per-channel";
  if ((mx || nv) && (spec.group != 0 || spec.asym || spec.mse ||
                     spec.block != 0 || spec.doubleQuant || spec.perChannel))
    return format + " takes no options: its blocks of " +
           std::to_string(mx ? ::qopt::kMXFP4Block : ::qopt::kNVFP4Block) +
           " and their scales are fixed by the format";
  if (spec.perChannel && blockwise)
    return std::string("'per-channel' is for integer and fp8 formats");
  if (spec.perChannel && spec.group != 0)
    return std::string("'per-channel' and 'group' exclude each other");
  if (blockwise && (spec.group != 0 || spec.asym))
    return "'group' and 'asym' are for integer formats; " + format +
           " has one absmax per 'block'";
  if (!blockwise && spec.doubleQuant)
    return std::string("'double-quant' is for nf4 and fp4 (QLoRA's double "
                       "quantization of the block absmax)");
  if (!blockwise && spec.block != 0)
    return std::string(
        "'block' is for nf4 and fp4; integer formats take 'group'");
  if (spec.block < 0 || spec.group < 0)
    return std::string("'block' and 'group' must not be negative");
  if (blockwise && spec.mse)
    return "clip=mse is for integer formats (" + format +
           " scales by the block absmax, as bitsandbytes does)";
  return std::nullopt;
}

std::optional<std::string> mlir::qopt::parseQuantizeSpec(StringRef text,
                                                         QuantizeSpec &spec) {
  auto [format, rest] = text.split(':');
  spec = QuantizeSpec();
  spec.format = format.str();
  SmallVector<StringRef> items;
  if (!rest.empty())
    rest.split(items, ',');
  for (StringRef item : items) {
    auto [key, value] = item.split('=');
    int64_t number = 0;
    bool hasValue = item.contains('=');
    if (hasValue && key != "clip" && value.getAsInteger(10, number))
      return "'" + item.str() + "': " + key.str() + " takes an integer";
    if (key == "block" && hasValue)
      spec.block = number;
    else if (key == "group" && hasValue)
      spec.group = number;
    else if (key == "clip" && (value == "minmax" || value == "mse"))
      spec.mse = value == "mse";
    else if (key == "double-quant" && !hasValue)
      spec.doubleQuant = true;
    else if (key == "asym" && !hasValue)
      spec.asym = true;
    else if (key == "sym" && !hasValue)
      spec.asym = false;
    else if (key == "per-channel" && !hasValue) {
      spec.group = 0;
      spec.perChannel = true;
    } else
      return "unknown option '" + item.str() +
             "' (block=N, double-quant, group=N, per-channel, sym, asym, "
             "clip=minmax|mse)";
  }
  return checkQuantizeSpec(spec);
}

QuantizedWeight mlir::qopt::quantizeMatrix(MLIRContext *ctx,
                                           const QuantizeSpec &spec,
                                           const dense::Matrix &w) {
  StringRef fmt(spec.format);
  QuantizedWeight q;
  q.n = w.rows;
  q.k = w.cols;
  if (fmt == "fp8-e4m3" || fmt == "fp8-e5m2") {
    // One scale for the tensor (or per output channel), absmax / the
    // format's largest value, codes rounded to nearest even.
    bool e4m3 = fmt == "fp8-e4m3";
    auto kind = e4m3 ? ::qopt::SmallFloatKind::F8E4M3FN
                     : ::qopt::SmallFloatKind::F8E5M2;
    q.format = FloatFormatAttr::get(ctx, e4m3 ? Type(Float8E4M3FNType::get(ctx))
                                              : Type(Float8E5M2Type::get(ctx)));
    int64_t rows = spec.perChannel ? q.n : 1, cols = q.n * q.k / rows;
    if (spec.perChannel) {
      q.granularity = PerChannelAttr::get(ctx, 0);
      q.scaleShape = {q.n};
    } else {
      q.granularity = PerTensorAttr::get(ctx);
      q.scaleShape = {};
    }
    q.codes.resize(q.n * q.k);
    q.scales.resize(rows);
    ::qopt::floatQuantizeRows(kind, w.data.data(), rows, cols, q.codes.data(),
                              q.scales.data());
  } else if (fmt == "mxfp4" || fmt == "nvfp4") {
    // E2M1 codes in blocks of 32 / 16 along K.
    bool mx = fmt == "mxfp4";
    int64_t size = mx ? ::qopt::kMXFP4Block : ::qopt::kNVFP4Block;
    int64_t groups = llvm::divideCeil(q.k, size);
    q.format = FloatFormatAttr::get(ctx, Float4E2M1FNType::get(ctx));
    q.granularity = PerGroupAttr::get(ctx, 1, size);
    q.scaleShape = {q.n, groups};
    q.codes.resize(q.n * q.k);
    q.scaleCodes.resize(q.n * groups);
    if (mx) {
      q.e8m0Scales = true;
      ::qopt::mxfp4Quantize(w.data.data(), q.n, q.k, q.codes.data(),
                            q.scaleCodes.data());
    } else {
      q.e4m3Scales = true;
      q.globalScale = ::qopt::nvfp4Quantize(
          w.data.data(), q.n, q.k, q.codes.data(), q.scaleCodes.data());
    }
  } else if (fmt == "nf4" || fmt == "fp4") {
    int64_t blockSize = spec.block ? spec.block : 64; // bitsandbytes' default
    int64_t n = q.n * q.k, blocks = llvm::divideCeil(n, blockSize);
    q.format = fmt == "nf4"
                   ? QuantFormatAttrInterface(NF4FormatAttr::get(ctx))
                   : QuantFormatAttrInterface(BnbFP4FormatAttr::get(ctx));
    q.granularity = PerBlockAttr::get(ctx, blockSize);
    q.scaleShape = {blocks};
    q.scaleSuffix = ".absmax";
    q.codes.resize(n);
    q.scales.resize(blocks);
    (fmt == "nf4" ? ::qopt::nf4QuantizeBlockwise
                  : ::qopt::fp4QuantizeBlockwise)(
        w.data.data(), n, blockSize, q.codes.data(), q.scales.data());
    if (spec.doubleQuant) {
      q.doubleQuantized = true;
      q.nestedBlock = 256;
      q.scaleCodes.resize(blocks);
      q.nestedAbsmax.resize(llvm::divideCeil(blocks, 256));
      q.offset = ::qopt::doubleQuantizeAbsmax(q.scales.data(), blocks, 256,
                                              q.scaleCodes.data(),
                                              q.nestedAbsmax.data());
    }
  } else {
    unsigned bits = spec.intBits();
    int64_t size = spec.group ? std::min<int64_t>(spec.group, q.k) : q.k;
    int64_t groups = llvm::divideCeil(q.k, size);
    q.format = IntFormatAttr::get(ctx, bits, /*isSigned=*/!spec.asym,
                                  /*zeroPoint=*/spec.asym);
    if (spec.group)
      q.granularity = PerGroupAttr::get(ctx, 1, size);
    else
      q.granularity = PerChannelAttr::get(ctx, 0);
    q.scaleShape = spec.group ? SmallVector<int64_t>{q.n, groups}
                              : SmallVector<int64_t>{q.n};
    q.codes.resize(q.n * q.k);
    q.scales.resize(q.n * groups);
    if (spec.asym)
      q.zeroPoints.resize(q.n * groups);
    ::qopt::intQuantizeGroups(w.data.data(), q.n, q.k, size, bits, spec.asym,
                              spec.mse ? ::qopt::ClipSearch::MSE
                                       : ::qopt::ClipSearch::MinMax,
                              q.codes.data(), q.scales.data(),
                              spec.asym ? q.zeroPoints.data() : nullptr);
  }
  return q;
}

FailureOr<QuantizeSpec> mlir::qopt::specOfType(QTensorType type,
                                               std::string &why) {
  QuantFormatAttrInterface format = type.getFormat();
  GranularityAttrInterface g = type.getGranularity();
  Type scales = type.getScaleType();
  auto nested = dyn_cast<QTensorType>(scales);
  QuantizeSpec spec;
  auto layout = [&] {
    std::string text;
    llvm::raw_string_ostream os(text);
    os << type;
    return text;
  };
  if (type.getRank() != 2) {
    why = "a quantized weight of rank " + std::to_string(type.getRank());
    return failure();
  }
  if (isa<NF4FormatAttr, BnbFP4FormatAttr>(format)) {
    auto block = dyn_cast<PerBlockAttr>(g);
    bool dq = nested && isa<Dynamic8FormatAttr>(nested.getFormat()) &&
              nested.getOffset() &&
              isa<PerBlockAttr>(nested.getGranularity()) &&
              cast<PerBlockAttr>(nested.getGranularity()).getSize() == 256 &&
              nested.getScaleType().isF32();
    if (block && (scales.isF32() || dq)) {
      spec.format = isa<NF4FormatAttr>(format) ? "nf4" : "fp4";
      spec.block = block.getSize();
      spec.doubleQuant = dq;
      return spec;
    }
  } else if (auto i = dyn_cast<IntFormatAttr>(format)) {
    unsigned bits = i.getBits();
    bool asym = !i.getIsSigned() && i.getZeroPoint();
    bool sym = i.getIsSigned() && !i.getZeroPoint();
    auto channel = dyn_cast<PerChannelAttr>(g);
    auto group = dyn_cast<PerGroupAttr>(g);
    if ((asym || sym) && bits >= 2 && scales.isF32() &&
        ((channel && channel.getAxis() == 0) ||
         (group && group.getAxis() == 1))) {
      spec.format = "int" + std::to_string(bits);
      spec.asym = asym;
      spec.group = group ? group.getSize() : 0;
      return spec;
    }
  } else if (auto f = dyn_cast<FloatFormatAttr>(format)) {
    Type t = f.getType();
    auto channel = dyn_cast<PerChannelAttr>(g);
    auto group = dyn_cast<PerGroupAttr>(g);
    if (isa<Float8E4M3FNType, Float8E5M2Type>(t) && scales.isF32() &&
        (isa<PerTensorAttr>(g) || (channel && channel.getAxis() == 0))) {
      spec.format = isa<Float8E4M3FNType>(t) ? "fp8-e4m3" : "fp8-e5m2";
      spec.perChannel = bool(channel);
      return spec;
    }
    if (isa<Float4E2M1FNType>(t) && group && group.getAxis() == 1) {
      if (group.getSize() == ::qopt::kMXFP4Block &&
          isa<Float8E8M0FNUType>(scales)) {
        spec.format = "mxfp4";
        return spec;
      }
      if (group.getSize() == ::qopt::kNVFP4Block && nested &&
          isa<PerTensorAttr>(nested.getGranularity()) &&
          nested.getScaleType().isF32() && !nested.getOffset()) {
        auto inner = dyn_cast<FloatFormatAttr>(nested.getFormat());
        if (inner && isa<Float8E4M3FNType>(inner.getType())) {
          spec.format = "nvfp4";
          return spec;
        }
      }
    }
  }
  why = "the layout " + layout() + " has no quantizer";
  return failure();
}

/// The index, in the row-major scales, of the scale of element (r, c) of
/// a rank-`rank` quantized tensor with `cols` columns and granularity `g`.
static int64_t scaleIndexAt(GranularityAttrInterface g, int64_t rank,
                            int64_t cols, int64_t r, int64_t c) {
  if (auto ch = dyn_cast<PerChannelAttr>(g))
    return rank == 2 && ch.getAxis() == 0 ? r : c;
  if (auto grp = dyn_cast<PerGroupAttr>(g)) {
    if (rank == 1)
      return c / grp.getSize();
    if (grp.getAxis() == 1)
      return r * llvm::divideCeil(cols, grp.getSize()) + c / grp.getSize();
    return (r / grp.getSize()) * cols + c;
  }
  if (auto block = dyn_cast<PerBlockAttr>(g))
    return (r * cols + c) / block.getSize();
  if (isa<PerTokenAttr>(g))
    return r;
  return 0; // per tensor
}

dense::Matrix mlir::qopt::dequantizeMatrix(const QuantizedWeight &w) {
  MLIRContext *ctx = w.format.getContext();
  // The scales as the lowering decodes them.
  std::vector<float> scales = w.scales;
  if (w.doubleQuantized) {
    ArrayRef<float> table = codebookOf(Dynamic8FormatAttr::get(ctx));
    scales.resize(w.scaleCodes.size());
    for (size_t i = 0; i < scales.size(); ++i)
      scales[i] =
          table[w.scaleCodes[i]] * w.nestedAbsmax[i / w.nestedBlock] + w.offset;
  } else if (w.e4m3Scales || w.e8m0Scales) {
    ArrayRef<float> table =
        decodedTable(w.e4m3Scales ? ::qopt::SmallFloatKind::F8E4M3FN
                                  : ::qopt::SmallFloatKind::F8E8M0FNU);
    scales.resize(w.scaleCodes.size());
    for (size_t i = 0; i < scales.size(); ++i)
      scales[i] = w.e4m3Scales ? table[w.scaleCodes[i]] * w.globalScale
                               : table[w.scaleCodes[i]];
  }
  ArrayRef<float> table = codebookOf(w.format);
  auto intFormat = dyn_cast<IntFormatAttr>(w.format);
  bool isSigned = intFormat && intFormat.getIsSigned();
  unsigned bits = w.format.getStorageBits();
  dense::Matrix out(w.n, w.k);
  for (int64_t r = 0; r < w.n; ++r)
    for (int64_t c = 0; c < w.k; ++c) {
      int64_t si = scaleIndexAt(w.granularity, 2, w.k, r, c);
      uint8_t code = w.codes[r * w.k + c];
      float value;
      if (!table.empty())
        value = table[code];
      else if (isSigned)
        value = float(::qopt::signExtend(code, bits));
      else
        value = float(int32_t(code) -
                      (w.zeroPoints.empty() ? 0 : int32_t(w.zeroPoints[si])));
      out.at(r, c) = value * scales[si];
    }
  return out;
}

double mlir::qopt::storedBits(const QuantizedWeight &w) {
  double bits = double(w.n) *
                double(::qopt::packedRowBytes(w.k, w.format.getStorageBits())) *
                8;
  int64_t scales = 1;
  for (int64_t d : w.scaleShape)
    scales *= d;
  if (w.doubleQuantized)
    bits += double(scales) * 8 + double(w.nestedAbsmax.size()) * 32 + 32;
  else if (w.e4m3Scales)
    bits += double(scales) * 8 + 32;
  else if (w.e8m0Scales)
    bits += double(scales) * 8;
  else
    bits += double(scales) * 32;
  return bits + double(w.zeroPoints.size()) * 8;
}

std::optional<std::vector<size_t>>
mlir::qopt::chooseUnderBudget(ArrayRef<std::vector<BudgetChoice>> layers,
                              double budget) {
  // Each layer's lower convex hull of (cost, error), as indices by cost: a
  // choice off it is never the best use of its bits.
  std::vector<std::vector<size_t>> hulls;
  double spent = 0;
  for (const std::vector<BudgetChoice> &choices : layers) {
    std::vector<size_t> order(choices.size());
    for (size_t i = 0; i < order.size(); ++i)
      order[i] = i;
    llvm::stable_sort(order, [&](size_t a, size_t b) {
      return choices[a].cost < choices[b].cost ||
             (choices[a].cost == choices[b].cost &&
              choices[a].error < choices[b].error);
    });
    std::vector<size_t> hull;
    for (size_t i : order) {
      const BudgetChoice &c = choices[i];
      if (!hull.empty() && c.error >= choices[hull.back()].error)
        continue;
      while (hull.size() >= 2) {
        const BudgetChoice &a = choices[hull[hull.size() - 2]],
                           &b = choices[hull.back()];
        // Drop b when a→c saves at least as much per bit as a→b.
        if ((a.error - b.error) * (c.cost - a.cost) <=
            (a.error - c.error) * (b.cost - a.cost))
          hull.pop_back();
        else
          break;
      }
      hull.push_back(i);
    }
    spent += choices[hull.front()].cost;
    hulls.push_back(std::move(hull));
  }
  if (spent > budget)
    return std::nullopt;
  std::vector<size_t> at(layers.size(), 0);
  while (true) {
    std::optional<size_t> best;
    double bestGain = 0;
    for (size_t l = 0; l < layers.size(); ++l) {
      if (at[l] + 1 >= hulls[l].size())
        continue;
      const BudgetChoice &now = layers[l][hulls[l][at[l]]],
                         &next = layers[l][hulls[l][at[l] + 1]];
      if (spent - now.cost + next.cost > budget)
        continue;
      double gain = (now.error - next.error) / (next.cost - now.cost);
      if (!best || gain > bestGain) {
        best = l;
        bestGain = gain;
      }
    }
    if (!best)
      break;
    size_t l = *best;
    spent +=
        layers[l][hulls[l][at[l] + 1]].cost - layers[l][hulls[l][at[l]]].cost;
    ++at[l];
  }
  std::vector<size_t> chosen(layers.size());
  for (size_t l = 0; l < layers.size(); ++l)
    chosen[l] = hulls[l][at[l]];
  return chosen;
}

FailureOr<dense::Matrix>
mlir::qopt::dequantizeKnown(WeightReader &reader, Value q, SymbolTable &symbols,
                            Operation *user, std::string &why,
                            SmallVectorImpl<Operation *> *visited) {
  auto type = cast<QTensorType>(q.getType());
  auto assemble = q.getDefiningOp<AssembleOp>();
  if (!assemble) {
    why = "is not assembled from parameters";
    return failure();
  }
  if (visited)
    visited->push_back(assemble);
  int64_t rank = type.getRank();
  if (rank < 1 || rank > 2 ||
      llvm::any_of(type.getShape(), ShapedType::isDynamic)) {
    why = "is not a quantized matrix or vector of static shape";
    return failure();
  }
  auto bytesOf = [&](Value v) -> FailureOr<std::vector<char>> {
    auto load = v.getDefiningOp<LoadParamOp>();
    ParamOp param = load ? symbols.lookup<ParamOp>(load.getName()) : ParamOp();
    if (!param) {
      why = "is not assembled from parameters";
      return failure();
    }
    if (visited)
      visited->push_back(load);
    return reader.readBytes(param, user);
  };
  // The scales, flat in the row-major order of their shape.
  std::vector<float> scales;
  Value s = assemble.getScales();
  if (isa<QTensorType>(s.getType())) {
    FailureOr<dense::Matrix> m =
        dequantizeKnown(reader, s, symbols, user, why, visited);
    if (failed(m))
      return failure();
    scales = std::move(m->data);
  } else if (auto cast = s.getDefiningOp<arith::BitcastOp>()) {
    FailureOr<std::vector<char>> b = bytesOf(cast.getIn());
    if (failed(b))
      return failure();
    if (visited)
      visited->push_back(cast);
    std::optional<::qopt::SmallFloatKind> kind =
        smallFloatKindOf(type.getScaleType());
    if (!kind) {
      why = "has narrow-float scales of a type qopt does not decode";
      return failure();
    }
    ArrayRef<float> decoded = decodedTable(*kind);
    for (char c : *b)
      scales.push_back(decoded[uint8_t(c)]);
  } else {
    FailureOr<dense::Matrix> m =
        reader.evaluate(s, symbols, user, why, visited);
    if (failed(m))
      return failure();
    scales = std::move(m->data);
  }
  float offset = 0.0f;
  if (Value o = assemble.getOffset()) {
    FailureOr<dense::Matrix> m =
        reader.evaluate(o, symbols, user, why, visited);
    if (failed(m))
      return failure();
    offset = m->data.at(0);
  }
  std::vector<char> zeroPoints;
  if (Value z = assemble.getZeroPoints()) {
    FailureOr<std::vector<char>> b = bytesOf(z);
    if (failed(b))
      return failure();
    zeroPoints = std::move(*b);
  }
  FailureOr<std::vector<char>> data = bytesOf(assemble.getData());
  if (failed(data))
    return failure();

  QuantFormatAttrInterface format = type.getFormat();
  unsigned bits = format.getStorageBits();
  int64_t rows = rank == 2 ? type.getShape()[0] : 1;
  int64_t cols = type.getShape().back();
  int64_t rowBytes = ::qopt::packedRowBytes(cols, bits);
  GranularityAttrInterface g = type.getGranularity();
  int64_t scaleCount = 1;
  for (int64_t d : type.getScaleShape())
    scaleCount *= d;
  if (int64_t(data->size()) != rows * rowBytes ||
      int64_t(scales.size()) != scaleCount ||
      (!zeroPoints.empty() && int64_t(zeroPoints.size()) != scaleCount)) {
    why = "has parts whose sizes do not fit its type";
    return failure();
  }
  ArrayRef<float> table = codebookOf(format);
  auto intFormat = dyn_cast<IntFormatAttr>(format);
  bool isSigned = intFormat && intFormat.getIsSigned();
  auto scaleIndex = [&](int64_t r, int64_t c) {
    return scaleIndexAt(g, rank, cols, r, c);
  };
  dense::Matrix out(rows, cols);
  std::vector<uint8_t> codes(cols);
  for (int64_t r = 0; r < rows; ++r) {
    ::qopt::unpackBits(reinterpret_cast<const uint8_t *>(data->data()) +
                           r * rowBytes,
                       cols, bits, codes.data());
    for (int64_t c = 0; c < cols; ++c) {
      int64_t si = scaleIndex(r, c);
      float value;
      if (!table.empty()) {
        value = table[codes[c]];
      } else {
        int32_t code =
            isSigned ? ::qopt::signExtend(codes[c], bits) : int32_t(codes[c]);
        int32_t zp = 0;
        if (!zeroPoints.empty())
          zp = isSigned ? int32_t(int8_t(zeroPoints[si]))
                        : int32_t(uint8_t(zeroPoints[si]));
        value = float(code - zp);
      }
      out.at(r, c) = value * scales[si] + offset;
    }
  }
  return out;
}

namespace {

/// The widths `--budget-bits` chooses from.
constexpr unsigned kBudgetWidths[] = {2, 3, 4, 5, 6, 8};

/// The stored bits and squared error of `w` quantized as `spec` with
/// `bits`-bit codes, each element's weighted by `fisher` when given.
BudgetChoice measure(MLIRContext *ctx, const QuantizeSpec &spec,
                     const dense::Matrix &w, unsigned bits,
                     ArrayRef<float> fisher) {
  QuantizeSpec s = spec;
  s.format = "int" + std::to_string(bits);
  QuantizedWeight q = quantizeMatrix(ctx, s, w);
  dense::Matrix d = dequantizeMatrix(q);
  double error = 0;
  for (size_t i = 0; i < d.data.size(); ++i) {
    double e = double(d.data[i]) - w.data[i];
    error += (fisher.empty() ? 1.0 : double(fisher[i])) * e * e;
  }
  return {storedBits(q), error};
}

struct QOptQuantizeWeightsPass
    : mlir::qopt::impl::QOptQuantizeWeightsPassBase<QOptQuantizeWeightsPass> {
  using Base::Base;

  /// `--budget-bits`: measures every selected layer at each integer width,
  /// then picks widths greedily (the upgrade with the most error saved per
  /// stored bit first, over each layer's lower convex hull) until the
  /// budget is spent; prints the choice as a table on stderr.
  template <typename ForEach>
  LogicalResult chooseWidths(const QuantizeSpec &spec, ForEach forEachWeight,
                             llvm::StringMap<unsigned> &widths) {
    ModuleOp module = getOperation();
    StringRef fmt(spec.format);
    if (!fmt.starts_with("int")) {
      emitError(module.getLoc())
          << "qopt-quantize-weights: 'budget-bits' chooses integer widths: "
             "give an integer format (int4:group=128,asym …), not "
          << spec.format;
      return failure();
    }
    struct Layer {
      std::string name;
      int64_t rows, cols;
      std::vector<BudgetChoice> choices; // one per kBudgetWidths
      double norm2;                      // ‖W‖²
      size_t at = 0;
    };
    std::vector<Layer> layers;
    double weights = 0;
    // Fisher diagonals weighting the error, by layer.
    std::optional<LayerStatsFile> fisherFile;
    auto fisherError = [&]() {
      return emitError(module.getLoc())
             << "qopt-quantize-weights: fisher '" << fisher << "': ";
    };
    std::string why;
    if (!fisher.empty() && !(fisherFile = LayerStatsFile::read(fisher, why)))
      return fisherError() << why;
    if (failed(forEachWeight([&](StringRef name, LinearOp,
                                 const dense::Matrix &w) -> LogicalResult {
          std::vector<float> f;
          if (fisherFile) {
            std::optional<std::vector<float>> values = fisherFile->values(
                (name + ".weight").str(), name, {w.rows, w.cols}, why);
            if (!values)
              return fisherError() << why;
            f = std::move(*values);
          }
          std::vector<BudgetChoice> all;
          for (unsigned bits : kBudgetWidths)
            all.push_back(measure(&getContext(), spec, w, bits, f));
          double norm2 = 0;
          for (size_t i = 0; i < w.data.size(); ++i)
            norm2 += (f.empty() ? 1.0 : double(f[i])) * double(w.data[i]) *
                     w.data[i];
          layers.push_back({name.str(), w.rows, w.cols, all, norm2});
          weights += double(w.rows) * double(w.cols);
          return success();
        })))
      return failure();
    if (layers.empty())
      return success(); // the caller reports that nothing was selected
    std::vector<std::vector<BudgetChoice>> choices;
    for (const Layer &l : layers)
      choices.push_back(l.choices);
    std::optional<std::vector<size_t>> chosen =
        chooseUnderBudget(choices, budgetBits * weights);
    if (!chosen) {
      double least = 0;
      for (const Layer &l : layers)
        least += l.choices.front().cost;
      emitError(module.getLoc())
          << "qopt-quantize-weights: a budget of "
          << llvm::formatv("{0:f2}", double(budgetBits))
          << " bits per weight is below the narrowest choice ("
          << llvm::formatv("{0:f3}", least / weights)
          << " bits per weight with 2-bit codes and their scales)";
      return failure();
    }
    for (size_t i = 0; i < layers.size(); ++i)
      layers[i].at = (*chosen)[i];
    llvm::raw_ostream &os = llvm::errs();
    os << "qopt-quantize-weights: integer widths for a budget of "
       << llvm::formatv("{0:f2}", double(budgetBits)) << " bits per weight ("
       << spec.format.substr(0, 3) << "K"
       << (spec.group ? ":group=" + std::to_string(spec.group) : "")
       << (spec.asym ? ",asym" : "")
       << (fisher.empty() ? "" : ", Fisher-weighted errors") << "):\n"
       << llvm::left_justify("module", 40) << llvm::left_justify("shape", 12)
       << llvm::left_justify("bits", 6) << llvm::left_justify("bits/weight", 13)
       << "relative error\n";
    double total = 0;
    for (const Layer &l : layers) {
      const BudgetChoice &c = l.choices[l.at];
      widths[l.name] = kBudgetWidths[l.at];
      total += c.cost;
      os << llvm::left_justify(l.name, 40)
         << llvm::left_justify(
                (std::to_string(l.rows) + "x" + std::to_string(l.cols)), 12)
         << llvm::left_justify(std::to_string(kBudgetWidths[l.at]), 6)
         << llvm::left_justify(
                llvm::formatv("{0:f3}", c.cost / (double(l.rows) * l.cols))
                    .str(),
                13)
         << llvm::formatv("{0:e2}",
                          l.norm2 > 0 ? std::sqrt(c.error / l.norm2) : 0.0)
         << "\n";
    }
    os << "total: " << llvm::formatv("{0:f3}", total / weights)
       << " bits per weight (budget "
       << llvm::formatv("{0:f2}", double(budgetBits)) << ")\n";
    return success();
  }

  void runOnOperation() override {
    ModuleOp module = getOperation();
    auto fail = [&](const Twine &message) {
      emitError(module.getLoc()) << "qopt-quantize-weights: " << message;
      signalPassFailure();
    };
    if (clip != "minmax" && clip != "mse")
      return fail("clip '" + clip + "' is not minmax or mse");
    QuantizeSpec spec;
    spec.format = format;
    spec.block = block;
    spec.doubleQuant = doubleQuant;
    spec.group = group;
    spec.asym = asym;
    spec.mse = clip == "mse";
    spec.perChannel = perChannel;
    if (std::optional<std::string> why = checkQuantizeSpec(spec))
      return fail(*why);
    if (budgetBits < 0 || !std::isfinite(budgetBits))
      return fail("'budget-bits' must be a positive number of bits per "
                  "weight");
    if (!fisher.empty() && budgetBits == 0.0)
      return fail("'fisher' weights the error budget-bits minimises: give "
                  "budget-bits");

    std::vector<LinearLayer> layers = collectLinearLayers(module);
    llvm::Expected<LoraTargets> selected = selectWeightLayers(
        std::vector<std::string>(targetModules.begin(), targetModules.end()),
        std::vector<std::string>(excludeModules.begin(), excludeModules.end()),
        layers);
    if (!selected)
      return fail(llvm::toString(selected.takeError()));

    SymbolTable symbols(module);
    WeightReader reader(modelDir);
    SmallVector<Operation *> maybeDead;
    llvm::StringSet<> before = paramNames(module);
    int64_t alreadyQuantized = 0;
    // Calls `step` on each selected layer whose float weight is known at
    // compile time, with that weight; fails with an error emitted.
    auto forEachWeight = [&](auto step) -> LogicalResult {
      alreadyQuantized = 0;
      for (const LinearLayer &layer : layers) {
        if (layer.name.empty() || !selected->matches(layer.name))
          continue;
        auto linear = dyn_cast<LinearOp>(layer.op);
        if (!linear)
          continue; // adapters own their base weight: quantize before them
        Value weight = linear.getWeight();
        if (isa<QTensorType>(weight.getType())) {
          ++alreadyQuantized; // a QDQ export, a checkpoint
          continue;
        }
        // Weights given at run time, and ones training updates (a frozen
        // quantized copy would go stale).
        if (auto load = weight.getDefiningOp<LoadParamOp>()) {
          auto param = symbols.lookup<ParamOp>(load.getName());
          if (param && (!param.getInitialValue() || param.isMutable())) {
            if (targetModules.empty())
              continue;
            fail("the weight of '" + layer.name + "' is " +
                 (param.isMutable() ? "trainable or state"
                                    : "given at run time") +
                 ": only frozen weights known at compile time are "
                 "quantized");
            return failure();
          }
        }
        std::string why;
        FailureOr<dense::Matrix> w =
            reader.evaluate(weight, symbols, linear, why);
        if (failed(w)) {
          if (why.empty())
            return failure();
          if (targetModules.empty())
            continue; // the default selection skips weights given at run time
          fail("the weight of '" + layer.name + "' " + why +
               ": only weights known at compile time are quantized");
          return failure();
        }
        if (!llvm::all_of(w->data, [](float v) { return std::isfinite(v); })) {
          fail("the weight of '" + layer.name +
               "' holds NaN or infinite values");
          return failure();
        }
        if (failed(step(layer.name, linear, *w)))
          return failure();
      }
      return success();
    };

    // With a budget, each layer's integer width: measured first, chosen
    // for the least total squared error within the budget.
    llvm::StringMap<unsigned> widths;
    if (budgetBits != 0.0) {
      if (failed(chooseWidths(spec, forEachWeight, widths)))
        return signalPassFailure();
    }
    int64_t count = 0;
    if (failed(forEachWeight(
            [&](StringRef name, LinearOp linear, const dense::Matrix &w) {
              QuantizeSpec layerSpec = spec;
              if (auto it = widths.find(name); it != widths.end())
                layerSpec.format = "int" + std::to_string(it->second);
              Value weight = linear.getWeight();
              Value packed = createQuantizedWeight(
                  symbols, linear, (name + ".weight").str(),
                  quantizeMatrix(&getContext(), layerSpec, w));
              if (!packed)
                return failure();
              if (Operation *old = weight.getDefiningOp())
                maybeDead.push_back(old);
              linear.getWeightMutable().assign(packed);
              ++count;
              return success();
            })))
      return signalPassFailure();
    if (count == 0 && alreadyQuantized == 0)
      return fail("no linear layer with a weight known at compile time "
                  "matches the selection");
    if (count == 0)
      emitWarning(module.getLoc())
          << "qopt-quantize-weights: every selected layer is already "
             "quantized (a quantized export or checkpoint): nothing to do";
    eraseDeadOps(maybeDead, symbols);
    restoreParamNames(module, before, symbols);
  }
};

} // namespace
