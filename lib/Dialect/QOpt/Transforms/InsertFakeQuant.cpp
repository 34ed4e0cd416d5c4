//===- InsertFakeQuant.cpp - Quantization-aware training: prepare, convert
//-===//
//
// torchao's prepare/convert contract for QAT: `qopt-insert-fake-quant`
// simulates a quantized deployment in float (weights and layer inputs pass
// through `qopt.fake_quant` with scales computed from the tensor itself at
// every forward pass), and `qopt-convert-qat` replaces each weight's
// fake-quant by the packed weight of the same spec, whose dequantized values
// are bit for bit the fake-quant forward's.
//
//===----------------------------------------------------------------------===//

#include "qopt/Dialect/QOpt/IR/QOptMarkers.h"
#include "qopt/Dialect/QOpt/Transforms/LoraTargets.h"
#include "qopt/Dialect/QOpt/Transforms/Passes.h"
#include "qopt/Dialect/QOpt/Transforms/QuantScales.h"
#include "qopt/Dialect/QOpt/Transforms/Weights.h"
#include "qopt/Support/QuantFormats.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/Builders.h"
#include "mlir/IR/BuiltinOps.h"

namespace mlir::qopt {
#define GEN_PASS_DEF_QOPTINSERTFAKEQUANTPASS
#define GEN_PASS_DEF_QOPTCONVERTQATPASS
#define GEN_PASS_DEF_QOPTINSERTLSQPASS
#include "qopt/Dialect/QOpt/Transforms/Passes.h.inc"
} // namespace mlir::qopt

using namespace mlir;
using namespace mlir::qopt;
namespace dense = ::qopt::dense;

namespace {

/// The discardable attribute naming the spec of a weight fake-quant, which
/// qopt-convert-qat packs.
constexpr StringLiteral kQATSpec = "qopt.qat_spec";

/// A fake-quant spec: `intK[:group=N|per-channel][,asym|sym]` or
/// `fp8-e4m3|fp8-e5m2[:per-channel]` for weights, `…:per-token |
/// per-tensor` for activations.
struct FakeQuantSpec {
  QuantizeSpec quant;
  bool perToken = false;
  bool perTensor = false;
  /// Activations: one scale fixed at compile time from calibration.
  bool isStatic = false;
};

/// Parses `text`; `activations` allows per-token / per-tensor and refuses
/// groups. Returns a message on error.
std::optional<std::string> parseSpec(StringRef text, bool activations,
                                     FakeQuantSpec &spec) {
  auto [format, rest] = text.split(':');
  spec.quant.format = format.str();
  bool isInt = format.starts_with("int");
  bool bnb = format == "nf4" || format == "fp4";
  if (!isInt && !bnb && format != "fp8-e4m3" && format != "fp8-e5m2")
    return "format '" + format.str() +
           "' has no fake quantizer here (int2 to int8, fp8-e4m3, fp8-e5m2, "
           "nf4, fp4)";
  if (bnb && activations)
    return "nf4 and fp4 are weight formats (bitsandbytes' blocks of the "
           "flattened weight)";
  SmallVector<StringRef> items;
  if (!rest.empty())
    rest.split(items, ',');
  for (StringRef item : items) {
    auto [key, value] = item.split('=');
    int64_t number = 0;
    if (key == "group" && !activations && item.contains('=') &&
        !value.getAsInteger(10, number) && number > 0 && isInt)
      spec.quant.group = number;
    else if (key == "block" && bnb && item.contains('=') &&
             !value.getAsInteger(10, number) && number > 0)
      spec.quant.block = number;
    else if (key == "double-quant" && bnb)
      return std::string(
          "double-quant is not simulated: QLoRA's codes use the unquantized "
          "absmax and its values the double-quantized one, which one "
          "fake-quant cannot express (fake-quantize without it)");
    else if (key == "asym" && !item.contains('=') && isInt)
      spec.quant.asym = true;
    else if (key == "sym" && !item.contains('='))
      spec.quant.asym = false;
    else if (key == "per-channel" && !activations && !item.contains('='))
      spec.quant.perChannel = true;
    else if (key == "per-token" && activations && !item.contains('='))
      spec.perToken = true;
    else if (key == "per-tensor" && !item.contains('='))
      spec.perTensor = true;
    else if (key == "static" && activations && !item.contains('='))
      spec.isStatic = true;
    else
      return "unknown option '" + item.str() + "' for " + format.str() +
             (activations ? " activations (per-token, per-tensor, static, "
                            "sym, asym)"
              : bnb       ? " weights (block=N)"
                          : " weights (group=N, per-channel, per-tensor, "
                            "sym, asym)");
  }
  if (std::optional<std::string> why = checkQuantizeSpec(spec.quant))
    return why;
  if (activations && spec.perToken == spec.perTensor)
    return std::string("activations take per-token or per-tensor scales");
  if (spec.isStatic && (spec.perToken || spec.quant.asym))
    return std::string("static activation scales are symmetric and "
                       "per-tensor (one absmax per layer from calibration)");
  if (!activations && spec.perTensor && isInt)
    return std::string("integer weights take per-channel or group=N scales");
  // Integer weights default to one scale per output channel; bitsandbytes'
  // formats to its blocks of 64.
  if (!activations && isInt && !spec.quant.group && !spec.perTensor)
    spec.quant.perChannel = true;
  if (bnb && !spec.quant.block)
    spec.quant.block = 64;
  return std::nullopt;
}

QuantFormatAttrInterface formatOf(MLIRContext *ctx, const QuantizeSpec &q) {
  StringRef f(q.format);
  if (f == "nf4")
    return NF4FormatAttr::get(ctx);
  if (f == "fp4")
    return BnbFP4FormatAttr::get(ctx);
  if (f == "fp8-e4m3")
    return FloatFormatAttr::get(ctx, Float8E4M3FNType::get(ctx));
  if (f == "fp8-e5m2")
    return FloatFormatAttr::get(ctx, Float8E5M2Type::get(ctx));
  return IntFormatAttr::get(ctx, q.intBits(), /*isSigned=*/!q.asym,
                            /*zeroPoint=*/q.asym);
}

/// Scales (and zero points) of `grouped` reduced over `dims`, as the
/// compile-time quantizers compute them for `format`.
std::pair<Value, Value> scalesOf(OpBuilder &b, Location loc, Value grouped,
                                 ArrayRef<int64_t> dims,
                                 QuantFormatAttrInterface format) {
  auto intFormat = dyn_cast<IntFormatAttr>(format);
  double largest = intFormat
                       ? double(intFormat.getQMax())
                       : cast<FloatFormatAttr>(format).getMaxRepresentable();
  return createQuantScales(b, loc, grouped, dims, largest,
                           intFormat && intFormat.getZeroPoint());
}

struct QOptInsertFakeQuantPass
    : mlir::qopt::impl::QOptInsertFakeQuantPassBase<QOptInsertFakeQuantPass> {
  using Base::Base;

  void runOnOperation() override {
    ModuleOp module = getOperation();
    MLIRContext *ctx = &getContext();
    auto fail = [&](const Twine &message) {
      emitError(module.getLoc()) << "qopt-insert-fake-quant: " << message;
      signalPassFailure();
    };
    FakeQuantSpec w, a;
    if (weights.empty() && activations.empty())
      return fail("nothing to insert: give 'weights' and/or 'activations'");
    if (!weights.empty())
      if (std::optional<std::string> why = parseSpec(weights, false, w))
        return fail("weights '" + weights + "': " + *why);
    if (!activations.empty())
      if (std::optional<std::string> why = parseSpec(activations, true, a))
        return fail("activations '" + activations + "': " + *why);

    // Static activation scales: each layer's input absmax from a
    // calibration file.
    std::optional<LayerStatsFile> stats;
    if (a.isStatic && activationStats.empty())
      if (auto attr = module->getAttrOfType<StringAttr>(kCalibrationStatsAttr))
        activationStats = attr.str();
    if (a.isStatic) {
      if (activationStats.empty())
        return fail(
            "static activation scales need activation-stats=FILE (a "
            "safetensors file with each layer's <module>.input_absmax, as "
            "qopt-calibrate writes) or qoptc --calibration-data");
      std::string why;
      stats = LayerStatsFile::read(activationStats, why);
      if (!stats)
        return fail("activation-stats '" + activationStats + "': " + why);
    } else if (!activationStats.empty()) {
      return fail("activation-stats is read for static activation scales "
                  "(activations=int8:per-tensor,static)");
    }
    std::vector<LinearLayer> layers = collectLinearLayers(module);
    llvm::Expected<LoraTargets> selected = selectWeightLayers(
        std::vector<std::string>(targetModules.begin(), targetModules.end()),
        std::vector<std::string>(excludeModules.begin(), excludeModules.end()),
        layers);
    if (!selected)
      return fail(llvm::toString(selected.takeError()));
    SymbolTable symbols(module);
    int64_t count = 0;
    for (const LinearLayer &layer : layers) {
      auto linear = dyn_cast<LinearOp>(layer.op);
      if (!linear || layer.name.empty() || !selected->matches(layer.name))
        continue;
      OpBuilder b(linear);
      Location loc = linear.getLoc();
      if (!weights.empty()) {
        auto type = dyn_cast<RankedTensorType>(linear.getWeight().getType());
        if (!type)
          return fail("the weight of '" + layer.name +
                      "' is quantized already");
        if (!type.hasStaticShape())
          return fail("the weight of '" + layer.name + "' has a dynamic shape");
        int64_t n = type.getDimSize(0), k = type.getDimSize(1);
        QuantFormatAttrInterface format = formatOf(ctx, w.quant);
        Value x = linear.getWeight(), grouped = x;
        GranularityAttrInterface granularity;
        SmallVector<int64_t> dims;
        Value scale, zp;
        if (w.quant.block) {
          // bitsandbytes: one absmax per block of the flattened weight.
          int64_t size = w.quant.block;
          if ((n * k) % size)
            return fail("the weight of '" + layer.name + "' has " +
                        Twine(n * k) +
                        " elements, not a multiple of the "
                        "block size " +
                        Twine(size));
          Value flat = tensor::CollapseShapeOp::create(
              b, loc, RankedTensorType::get({n * k}, type.getElementType()), x,
              SmallVector<ReassociationIndices>{{0, 1}});
          grouped = tensor::ExpandShapeOp::create(
              b, loc,
              RankedTensorType::get({n * k / size, size},
                                    type.getElementType()),
              flat, SmallVector<ReassociationIndices>{{0, 1}});
          scale = createReduction(b, loc, grouped, {1}, ReductionKind::AbsMax);
          granularity = PerBlockAttr::get(ctx, size);
        } else if (w.quant.group) {
          int64_t g = w.quant.group;
          if (k % g)
            return fail("the weight of '" + layer.name + "' has " + Twine(k) +
                        " input features, not a multiple of the "
                        "group size " +
                        Twine(g));
          grouped = tensor::ExpandShapeOp::create(
              b, loc,
              RankedTensorType::get({n, k / g, g}, type.getElementType()), x,
              SmallVector<ReassociationIndices>{{0}, {1, 2}});
          dims = {2};
          granularity = PerGroupAttr::get(ctx, 1, g);
        } else if (w.quant.perChannel) {
          dims = {1};
          granularity = PerChannelAttr::get(ctx, 0);
        } else {
          dims = {0, 1};
          granularity = PerTensorAttr::get(ctx);
        }
        if (!scale)
          std::tie(scale, zp) = scalesOf(b, loc, grouped, dims, format);
        auto fq = FakeQuantOp::create(b, loc, type, x, scale, zp, format,
                                      granularity);
        std::string spec = weights;
        fq->setAttr(kQATSpec, b.getStringAttr(spec));
        linear.getWeightMutable().assign(fq.getResult());
      }
      if (!activations.empty()) {
        Value x = linear.getInput();
        auto type = cast<RankedTensorType>(x.getType());
        int64_t rank = type.getRank();
        QuantFormatAttrInterface format = formatOf(ctx, a.quant);
        SmallVector<int64_t> dims;
        GranularityAttrInterface granularity;
        if (a.perToken) {
          dims = {rank - 1};
          granularity = PerTokenAttr::get(ctx);
        } else {
          for (int64_t d = 0; d < rank; ++d)
            dims.push_back(d);
          granularity = PerTensorAttr::get(ctx);
        }
        Value scale, zp;
        if (a.isStatic) {
          FailureOr<Value> fixed =
              staticScale(b, loc, layer.name, format, *stats, symbols);
          if (failed(fixed))
            return signalPassFailure();
          scale = *fixed;
        } else {
          std::tie(scale, zp) = scalesOf(b, loc, x, dims, format);
        }
        auto fq = FakeQuantOp::create(b, loc, type, x, scale, zp, format,
                                      granularity);
        // Scales max|x| / qmax computed from x as it runs: the CPU target
        // may run the product in integers instead (kPerTokenQuantAttr).
        if (!a.isStatic)
          fq->setAttr(kDynamicScalesAttr, b.getUnitAttr());
        linear.getInputMutable().assign(fq.getResult());
      }
      ++count;
    }
    if (count == 0)
      return fail("no linear layer matches the selection");
  }

  /// The frozen per-tensor scale `<layer>.input_scale` = absmax / the
  /// format's largest value (1 for an all-zero input), the absmax the
  /// largest of the layer's `<layer>.input_absmax` in `stats` (per tensor
  /// or per channel); read before `b`'s point.
  FailureOr<Value> staticScale(OpBuilder &b, Location loc, StringRef layer,
                               QuantFormatAttrInterface format,
                               LayerStatsFile &stats, SymbolTable &symbols) {
    auto error = [&]() {
      return emitError(getOperation().getLoc())
             << "qopt-insert-fake-quant: activation-stats '" << activationStats
             << "': ";
    };
    std::string why;
    std::optional<std::vector<float>> values =
        stats.values((layer + ".input_absmax").str(), layer, {}, why);
    if (!values)
      return error() << why, failure();
    if (values->empty())
      return error() << "the input absmax of '" << layer << "' is empty",
             failure();
    float absmax = *llvm::max_element(*values);
    auto intFormat = dyn_cast<IntFormatAttr>(format);
    double largest = intFormat
                         ? double(intFormat.getQMax())
                         : cast<FloatFormatAttr>(format).getMaxRepresentable();
    float scale = absmax > 0 ? float(absmax / largest) : 1.0f;
    auto type = RankedTensorType::get({}, b.getF32Type());
    ParamOp param =
        createFloatParam(symbols, loc, (layer + ".input_scale").str(), type,
                         ArrayRef<float>(scale));
    if (!param)
      return failure();
    return LoadParamOp::create(b, loc, type, param.getSymName()).getResult();
  }
};

/// Replaces `q`'s codes by those of `w` on the given steps (and float
/// offsets): clamp(round(w / s) + zp), as qopt.lsq's forward rounds.
void requantizeWithSteps(QuantizedWeight &q, const dense::Matrix &w,
                         ArrayRef<float> steps, ArrayRef<float> offsets,
                         const QuantizeSpec &spec) {
  unsigned bits = spec.intBits();
  int64_t qmin = ::qopt::intFormatMin(bits, !spec.asym);
  int64_t qmax = ::qopt::intFormatMax(bits, !spec.asym);
  int64_t size = spec.group ? std::min<int64_t>(spec.group, w.cols) : w.cols;
  int64_t groups = llvm::divideCeil(w.cols, size);
  for (int64_t r = 0; r < w.rows; ++r)
    for (int64_t c = 0; c < w.cols; ++c) {
      int64_t g = r * groups + c / size;
      float zp = offsets.empty() ? 0.0f : offsets[g];
      float v = std::nearbyint(w.at(r, c) / steps[g]) + zp;
      int64_t code = std::clamp<int64_t>(int64_t(v), qmin, qmax);
      q.codes[r * w.cols + c] = uint8_t(code & ((1 << bits) - 1));
    }
  q.scales.assign(steps.begin(), steps.end());
  for (size_t i = 0; i < offsets.size(); ++i)
    q.zeroPoints[i] = uint8_t(int64_t(offsets[i]));
}

/// L4Q's merged weight W + scale·(B·A) of `lora`, built before it from
/// named linalg ops (which WeightReader::evaluate reads back at compile
/// time); the ops created are appended to `created`.
Value createMergedWeight(LoRAOp lora, SmallVectorImpl<Operation *> &created) {
  OpBuilder b(lora);
  Location loc = lora.getLoc();
  auto type = cast<RankedTensorType>(lora.getWeight().getType());
  Type element = type.getElementType();
  auto track = [&](Operation *op) {
    created.push_back(op);
    return op->getResult(0);
  };
  Value empty =
      track(tensor::EmptyOp::create(b, loc, type.getShape(), element));
  Value zero =
      track(arith::ConstantOp::create(b, loc, b.getFloatAttr(element, 0.0)));
  Value init = track(linalg::FillOp::create(b, loc, zero, empty));
  Value ba = track(linalg::MatmulOp::create(
      b, loc, TypeRange{type}, ValueRange{lora.getLoraB(), lora.getLoraA()},
      ValueRange{init}));
  Value scale = track(arith::ConstantOp::create(
      b, loc,
      DenseElementsAttr::get(type, b.getFloatAttr(element, lora.getScale()))));
  Value scaled = track(linalg::MulOp::create(
      b, loc, TypeRange{type}, ValueRange{ba, scale}, ValueRange{empty}));
  return track(linalg::AddOp::create(b, loc, TypeRange{type},
                                     ValueRange{lora.getWeight(), scaled},
                                     ValueRange{empty}));
}

struct QOptInsertLSQPass
    : mlir::qopt::impl::QOptInsertLSQPassBase<QOptInsertLSQPass> {
  using Base::Base;

  void runOnOperation() override {
    ModuleOp module = getOperation();
    MLIRContext *ctx = &getContext();
    auto fail = [&](const Twine &message) {
      emitError(module.getLoc()) << "qopt-insert-lsq: " << message;
      signalPassFailure();
    };
    FakeQuantSpec w;
    if (std::optional<std::string> why = parseSpec(weights, false, w))
      return fail("weights '" + weights + "': " + *why);
    if (!StringRef(w.quant.format).starts_with("int"))
      return fail("weights '" + weights +
                  "': learned steps are for integer formats");
    if (peqa && l4q)
      return fail("'peqa' and 'l4q' exclude each other (PEQA trains the "
                  "scales of frozen codes, L4Q the weight and its adapter)");
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
    unsigned bits = w.quant.intBits();
    double qp = double(::qopt::intFormatMax(bits, !w.quant.asym));
    int64_t count = 0;
    for (const LinearLayer &layer : layers) {
      if (layer.name.empty() || !selected->matches(layer.name))
        continue;
      auto linear = dyn_cast<LinearOp>(layer.op);
      auto lora = dyn_cast<LoRAOp>(layer.op);
      if (l4q && !lora) {
        if (targetModules.empty())
          continue; // L4Q adapts the layers that have a branch
        return fail("l4q: '" + layer.name +
                    "' has no LoRA branch (give --adapter or --lora-config)");
      }
      if (!l4q && !linear)
        continue;
      Value weight = l4q ? lora.getWeight() : linear.getWeight();
      if (isa<QTensorType>(weight.getType()))
        return fail("the weight of '" + layer.name + "' is quantized already");
      SmallVector<Operation *> merge;
      if (l4q) {
        if (lora.getMagnitude() || lora.getMiddle() || lora.getGate() ||
            lora.getMerged())
          return fail("l4q: the branch of '" + layer.name + "' is " +
                      (lora.getMagnitude() ? "DoRA"
                       : lora.getMerged() ? "merged"
                                          : "not plain LoRA (middle or gate)") +
                      "; L4Q quantizes W + scale·B·A");
        // W must be a frozen, static weight (L4Q trains the factors).
        auto wType = cast<RankedTensorType>(weight.getType());
        bool mutableW = false;
        if (auto load = weight.getDefiningOp<LoadParamOp>())
          if (auto param = symbols.lookup<ParamOp>(load.getName()))
            mutableW = param.isMutable();
        if (!wType.hasStaticShape() || mutableW) {
          if (targetModules.empty())
            continue;
          return fail("l4q: the weight of '" + layer.name + "' is " +
                      (mutableW ? "trainable or state" : "dynamically shaped") +
                      ": L4Q quantizes a frozen weight of static shape plus "
                      "its adapter");
        }
        weight = createMergedWeight(lora, merge);
      }
      Operation *user = l4q ? lora.getOperation() : linear.getOperation();
      std::string why;
      FailureOr<dense::Matrix> m = reader.evaluate(weight, symbols, user, why);
      if (failed(m)) {
        for (Operation *op : llvm::reverse(merge))
          op->erase();
        if (why.empty())
          return signalPassFailure();
        if (targetModules.empty())
          continue; // the default selection skips weights given at run time
        return fail("the weight of '" + layer.name + "' " + why +
                    ": the steps are initialised from its values");
      }
      // L4Q trains the factors through the quantizer, whatever the adapter
      // was loaded as.
      if (l4q)
        for (Value factor : {lora.getLoraA(), lora.getLoraB()})
          if (auto load = factor.getDefiningOp<LoadParamOp>())
            if (auto param = symbols.lookup<ParamOp>(load.getName()))
              param.setTrainable(true);
      int64_t size = w.quant.group ? w.quant.group : m->cols;
      if (m->cols % size)
        return fail("the weight of '" + layer.name + "' has " + Twine(m->cols) +
                    " input features, not a multiple of the group size " +
                    Twine(size));
      QuantizedWeight q = quantizeMatrix(ctx, w.quant, *m);
      OpBuilder b(user);
      Location loc = user->getLoc();
      if (peqa) {
        // PEQA: the weight frozen as codes, only the scales trained.
        q.trainableScales = true;
        Value packed =
            createQuantizedWeight(symbols, linear, layer.name + ".weight", q);
        if (!packed)
          return signalPassFailure();
        if (Operation *old = weight.getDefiningOp())
          maybeDead.push_back(old);
        linear.getWeightMutable().assign(packed);
        ++count;
        continue;
      }
      // LSQ: s = 2·mean|w| / √Qp per scale; LSQ+ (asym) starts from the
      // min–max scale and zero point --quantize computes.
      int64_t groups = m->cols / size;
      std::vector<float> steps = q.scales, offsets;
      if (!w.quant.asym)
        for (int64_t r = 0; r < m->rows; ++r)
          for (int64_t g = 0; g < groups; ++g) {
            double sum = 0;
            for (int64_t c = g * size; c < (g + 1) * size; ++c)
              sum += std::fabs(m->at(r, c));
            double s = 2.0 * (sum / double(size)) / std::sqrt(qp);
            steps[r * groups + g] = s > 0 ? float(s) : 1.0f;
          }
      else
        for (uint8_t z : q.zeroPoints)
          offsets.push_back(float(z));
      auto scaleType = RankedTensorType::get(q.scaleShape, b.getF32Type());
      auto load = [&](ParamOp p) -> Value {
        return p ? LoadParamOp::create(b, loc, scaleType, p.getSymName())
                       .getResult()
                 : Value();
      };
      Value step = load(createFloatParam(
          symbols, loc, layer.name + ".weight_step", scaleType, steps, true));
      Value offset;
      if (w.quant.asym)
        offset =
            load(createFloatParam(symbols, loc, layer.name + ".weight_offset",
                                  scaleType, offsets, true));
      if (!step || (w.quant.asym && !offset))
        return signalPassFailure();
      GranularityAttrInterface granularity =
          w.quant.group ? GranularityAttrInterface(
                              PerGroupAttr::get(ctx, 1, w.quant.group))
                        : GranularityAttrInterface(PerChannelAttr::get(ctx, 0));
      auto lsq =
          LSQOp::create(b, loc, weight.getType(), weight, step, offset,
                        formatOf(ctx, w.quant), granularity,
                        b.getF64FloatAttr(1.0 / std::sqrt(double(size) * qp)));
      lsq->setAttr(kQATSpec, b.getStringAttr(weights));
      if (l4q) {
        auto merged = LinearOp::create(b, loc, lora.getType(), lora.getInput(),
                                       lsq.getResult(), lora.getBias(),
                                       lora.getModuleAttr());
        lora.replaceAllUsesWith(merged.getResult());
        lora.erase();
      } else {
        linear.getWeightMutable().assign(lsq.getResult());
      }
      ++count;
    }
    if (count == 0)
      return fail(l4q ? "l4q: no layer with a LoRA branch and a weight known "
                        "at compile time matches the selection (load or "
                        "insert an adapter first)"
                      : "no linear layer with a weight known at compile time "
                        "matches the selection");
    eraseDeadOps(maybeDead, symbols);
    restoreParamNames(module, before, symbols);
  }
};

struct QOptConvertQATPass
    : mlir::qopt::impl::QOptConvertQATPassBase<QOptConvertQATPass> {
  using Base::Base;

  void runOnOperation() override {
    ModuleOp module = getOperation();
    SymbolTable symbols(module);
    WeightReader reader(modelDir);
    SmallVector<Operation *> maybeDead;
    llvm::StringSet<> before = paramNames(module);
    SmallVector<Operation *> marked;
    module.walk([&](Operation *op) {
      if (isa<FakeQuantOp, LSQOp>(op) && op->hasAttr(kQATSpec))
        marked.push_back(op);
    });
    for (Operation *fq : marked) {
      auto spec = fq->getAttrOfType<StringAttr>(kQATSpec);
      FakeQuantSpec parsed;
      if (parseSpec(spec.getValue(), false, parsed)) {
        fq->emitError() << "qopt-convert-qat: '" << kQATSpec << "' is not a "
                        << "weight fake-quant spec: " << spec;
        return signalPassFailure();
      }
      SmallVector<LinearOp> users;
      for (Operation *user : fq->getUsers())
        if (auto linear = dyn_cast<LinearOp>(user);
            linear && linear.getWeight() == fq->getResult(0))
          users.push_back(linear);
      if (users.empty() || !fq->hasOneUse()) {
        fq->emitError() << "qopt-convert-qat: a weight fake-quant that is "
                           "not one linear layer's weight";
        return signalPassFailure();
      }
      LinearOp linear = users.front();
      auto notKnown = [&](StringRef what, StringRef why) {
        if (!why.empty())
          linear.emitError() << "qopt-convert-qat: the " << what << " of "
                             << linear.getModuleAttr() << " " << why
                             << ": only values known at compile time are "
                                "packed";
        signalPassFailure();
      };
      std::string why;
      FailureOr<dense::Matrix> w =
          reader.evaluate(fq->getOperand(0), symbols, linear, why, &maybeDead);
      if (failed(w))
        return notKnown("weight", why);
      QuantizedWeight q = quantizeMatrix(&getContext(), parsed.quant, *w);
      if (auto lsq = dyn_cast<LSQOp>(fq)) {
        // The learned steps (and offsets): the codes the forward rounds to.
        FailureOr<dense::Matrix> s =
            reader.evaluate(lsq.getScale(), symbols, linear, why, &maybeDead);
        if (failed(s))
          return notKnown("step size", why);
        std::vector<float> zp;
        if (Value z = lsq.getZeroPoint()) {
          FailureOr<dense::Matrix> m =
              reader.evaluate(z, symbols, linear, why, &maybeDead);
          if (failed(m))
            return notKnown("offset", why);
          zp = std::move(m->data);
        }
        if (s->data.size() != q.scales.size() ||
            (!zp.empty() && zp.size() != q.scales.size())) {
          lsq.emitError() << "qopt-convert-qat: the step sizes do not fit "
                          << spec;
          return signalPassFailure();
        }
        // LSQ+ trains its offsets in float; packed zero points are codes.
        int64_t qmax = q.format.hasZeroPoint()
                           ? (int64_t(1) << q.format.getStorageBits()) - 1
                           : 0;
        if (llvm::any_of(zp, [&](float z) {
              return z != std::nearbyint(z) || z < 0 || z > float(qmax);
            })) {
          lsq.emitError() << "qopt-convert-qat: the learned offsets of "
                          << linear.getModuleAttr()
                          << " are not integer codes in [0, " << qmax
                          << "]: they cannot be packed as zero points";
          return signalPassFailure();
        }
        requantizeWithSteps(q, *w, s->data, zp, parsed.quant);
      }
      StringAttr module = linear.getModuleAttr();
      Value packed = createQuantizedWeight(
          symbols, linear,
          module ? module.str() + ".weight" : std::string("qat.weight"), q);
      if (!packed)
        return signalPassFailure();
      linear.getWeightMutable().assign(packed);
      maybeDead.push_back(fq);
    }
    eraseDeadOps(maybeDead, symbols);
    restoreParamNames(module, before, symbols);
  }
};

} // namespace

std::optional<std::string>
mlir::qopt::checkActivationSpec(llvm::StringRef text) {
  FakeQuantSpec spec;
  return parseSpec(text, /*activations=*/true, spec);
}
