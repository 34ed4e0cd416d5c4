//===- QuantizeWeights.cpp - Quantize the linear layers' weights ----------===//
//
// `qoptc --quantize SPEC`: the float weights of the selected linear layers
// are quantized at compile time into a format of the dialect and stored
// packed; the float originals are dropped when nothing else reads them.
//
//===----------------------------------------------------------------------===//

#include "qopt/Dialect/QOpt/Transforms/LoraTargets.h"
#include "qopt/Dialect/QOpt/Transforms/Passes.h"
#include "qopt/Dialect/QOpt/Transforms/Weights.h"
#include "qopt/Support/QuantFormats.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/BuiltinOps.h"
#include "llvm/Support/MathExtras.h"

#include <cmath>

namespace mlir::qopt {
#define GEN_PASS_DEF_QOPTQUANTIZEWEIGHTSPASS
#include "qopt/Dialect/QOpt/Transforms/Passes.h.inc"
} // namespace mlir::qopt

using namespace mlir;
using namespace mlir::qopt;
namespace dense = ::qopt::dense;

namespace {

struct QOptQuantizeWeightsPass
    : mlir::qopt::impl::QOptQuantizeWeightsPassBase<QOptQuantizeWeightsPass> {
  using Base::Base;

  void runOnOperation() override {
    ModuleOp module = getOperation();
    auto fail = [&](const Twine &message) {
      emitError(module.getLoc()) << "qopt-quantize-weights: " << message;
      signalPassFailure();
    };
    MLIRContext *ctx = &getContext();
    StringRef fmt(format);
    bool blockwise = fmt == "nf4" || fmt == "fp4";
    // FP8: one scale for the tensor (or per output channel), absmax / the
    // format's largest value, codes rounded to nearest even.
    std::optional<::qopt::SmallFloatKind> fp8;
    if (fmt == "fp8-e4m3")
      fp8 = ::qopt::SmallFloatKind::F8E4M3FN;
    else if (fmt == "fp8-e5m2")
      fp8 = ::qopt::SmallFloatKind::F8E5M2;
    // MXFP4 / NVFP4: E2M1 codes in blocks of 32 / 16 along K.
    bool mx = fmt == "mxfp4", nv = fmt == "nvfp4";
    unsigned bits = 0;
    if (fmt.consume_front("int") &&
        (fmt.getAsInteger(10, bits) || bits < 2 || bits > 8 || 8 % bits != 0))
      return fail("format 'int" + fmt +
                  "' is not supported (int2, int4 or int8; 3-bit rows "
                  "packed across bytes are not lowered yet)");
    if (!blockwise && !bits && !fp8 && !mx && !nv)
      return fail("unknown format '" + format +
                  "' (nf4, fp4, int2, int4, int8, fp8-e4m3, fp8-e5m2, mxfp4, "
                  "nvfp4)");
    if (fp8 &&
        (group != 0 || asym || clip != "minmax" || block != 0 || doubleQuant))
      return fail(format + " takes one scale per tensor, or per-channel");
    if ((mx || nv) && (group != 0 || asym || clip != "minmax" || block != 0 ||
                       doubleQuant || perChannel))
      return fail(format + " takes no options: its blocks of " +
                  Twine(mx ? ::qopt::kMXFP4Block : ::qopt::kNVFP4Block) +
                  " and their scales are fixed by the format");
    if (perChannel && blockwise)
      return fail("'per-channel' is for integer and fp8 formats");
    if (perChannel && group != 0)
      return fail("'per-channel' and 'group' exclude each other");
    if (blockwise && (group != 0 || asym))
      return fail("'group' and 'asym' are for integer formats; " + format +
                  " has one absmax per 'block'");
    if (!blockwise && doubleQuant)
      return fail("'double-quant' is for nf4 and fp4 (QLoRA's double "
                  "quantization of the block absmax)");
    if (!blockwise && block != 0)
      return fail("'block' is for nf4 and fp4; integer formats take 'group'");
    if (block < 0 || group < 0)
      return fail("'block' and 'group' must not be negative");
    int64_t blockSize = block ? int64_t(block) : 64; // bitsandbytes' default
    if (clip != "minmax" && clip != "mse")
      return fail("clip '" + clip + "' is not minmax or mse");
    if (blockwise && clip != "minmax")
      return fail("clip=mse is for integer formats (" + format +
                  " scales by the block absmax, as bitsandbytes does)");

    std::vector<std::string> targets(targetModules.begin(),
                                     targetModules.end());
    if (targets.empty())
      targets = {"all-linear"};
    std::vector<LinearLayer> layers = collectLinearLayers(module);
    llvm::Expected<LoraTargets> selected = LoraTargets::create(
        selectionFromOptions(targets,
                             std::vector<std::string>(excludeModules.begin(),
                                                      excludeModules.end()),
                             {}, {}),
        layers);
    if (!selected)
      return fail(llvm::toString(selected.takeError()));

    SymbolTable symbols(module);
    WeightReader reader(modelDir);
    SmallVector<Operation *> maybeDead;
    llvm::StringSet<> before = paramNames(module);
    int64_t count = 0, alreadyQuantized = 0;
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
          return fail(
              "the weight of '" + layer.name + "' is " +
              (param.isMutable() ? "trainable or state" : "given at run time") +
              ": only frozen weights known at compile time are "
              "quantized");
        }
      }
      std::string why;
      FailureOr<dense::Matrix> w =
          reader.evaluate(weight, symbols, linear, why);
      if (failed(w)) {
        if (why.empty())
          return signalPassFailure();
        if (targetModules.empty())
          continue; // the default selection skips weights given at run time
        return fail("the weight of '" + layer.name + "' " + why +
                    ": only weights known at compile time are quantized");
      }
      if (!llvm::all_of(w->data, [](float v) { return std::isfinite(v); }))
        return fail("the weight of '" + layer.name +
                    "' holds NaN or infinite values");
      QuantizedWeight q;
      q.n = w->rows;
      q.k = w->cols;
      if (fp8) {
        Type type = *fp8 == ::qopt::SmallFloatKind::F8E4M3FN
                        ? Type(Float8E4M3FNType::get(ctx))
                        : Type(Float8E5M2Type::get(ctx));
        q.format = FloatFormatAttr::get(ctx, type);
        int64_t rows = perChannel ? q.n : 1, cols = q.n * q.k / rows;
        if (perChannel) {
          q.granularity = PerChannelAttr::get(ctx, 0);
          q.scaleShape = {q.n};
        } else {
          q.granularity = PerTensorAttr::get(ctx);
          q.scaleShape = {};
        }
        q.codes.resize(q.n * q.k);
        q.scales.resize(rows);
        ::qopt::floatQuantizeRows(*fp8, w->data.data(), rows, cols,
                                  q.codes.data(), q.scales.data());
      } else if (mx || nv) {
        int64_t size = mx ? ::qopt::kMXFP4Block : ::qopt::kNVFP4Block;
        int64_t groups = llvm::divideCeil(q.k, size);
        q.format = FloatFormatAttr::get(ctx, Float4E2M1FNType::get(ctx));
        q.granularity = PerGroupAttr::get(ctx, 1, size);
        q.scaleShape = {q.n, groups};
        q.codes.resize(q.n * q.k);
        q.scaleCodes.resize(q.n * groups);
        if (mx) {
          q.e8m0Scales = true;
          ::qopt::mxfp4Quantize(w->data.data(), q.n, q.k, q.codes.data(),
                                q.scaleCodes.data());
        } else {
          q.e4m3Scales = true;
          q.globalScale = ::qopt::nvfp4Quantize(
              w->data.data(), q.n, q.k, q.codes.data(), q.scaleCodes.data());
        }
      } else if (blockwise) {
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
            w->data.data(), n, blockSize, q.codes.data(), q.scales.data());
        if (doubleQuant) {
          q.doubleQuantized = true;
          q.nestedBlock = 256;
          q.scaleCodes.resize(blocks);
          q.nestedAbsmax.resize(llvm::divideCeil(blocks, 256));
          q.offset = ::qopt::doubleQuantizeAbsmax(q.scales.data(), blocks, 256,
                                                  q.scaleCodes.data(),
                                                  q.nestedAbsmax.data());
        }
      } else {
        int64_t size = group ? std::min<int64_t>(group, q.k) : q.k;
        int64_t groups = (q.k + size - 1) / size;
        q.format = IntFormatAttr::get(ctx, bits, /*isSigned=*/!asym,
                                      /*zeroPoint=*/asym);
        if (group)
          q.granularity = PerGroupAttr::get(ctx, 1, size);
        else
          q.granularity = PerChannelAttr::get(ctx, 0);
        q.scaleShape = group ? SmallVector<int64_t>{q.n, groups}
                             : SmallVector<int64_t>{q.n};
        q.codes.resize(q.n * q.k);
        q.scales.resize(q.n * groups);
        if (asym)
          q.zeroPoints.resize(q.n * groups);
        ::qopt::intQuantizeGroups(w->data.data(), q.n, q.k, size, bits, asym,
                                  clip == "mse" ? ::qopt::ClipSearch::MSE
                                                : ::qopt::ClipSearch::MinMax,
                                  q.codes.data(), q.scales.data(),
                                  asym ? q.zeroPoints.data() : nullptr);
      }
      Value packed =
          createQuantizedWeight(symbols, linear, layer.name + ".weight", q);
      if (!packed)
        return signalPassFailure();
      if (Operation *old = weight.getDefiningOp())
        maybeDead.push_back(old);
      linear.getWeightMutable().assign(packed);
      ++count;
    }
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
