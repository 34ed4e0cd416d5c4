//===- InsertLoRA.cpp - Add LoRA adapters to the selected layers ----------===//
//
// PEFT's get_peft_model on a compiled graph: the layers a LoraConfig
// selects (LoraTargets) become qopt.lora ops with new trainable factor
// parameters, initialised at compile time.
//
//===----------------------------------------------------------------------===//

#include "qopt/Dialect/QOpt/Transforms/LoraTargets.h"
#include "qopt/Dialect/QOpt/Transforms/Passes.h"
#include "qopt/Dialect/QOpt/Transforms/Weights.h"
#include "qopt/Support/QuantFormats.h"
#include "qopt/Support/Random.h"

#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/Builders.h"
#include "llvm/ADT/StringExtras.h"
#include "llvm/ADT/StringSet.h"
#include "llvm/Support/MemoryBuffer.h"

#include <cmath>

namespace mlir::qopt {
#define GEN_PASS_DEF_QOPTINSERTLORAPASS
#include "qopt/Dialect/QOpt/Transforms/Passes.h.inc"
} // namespace mlir::qopt

using namespace mlir;
using namespace mlir::qopt;
namespace dense = ::qopt::dense;

namespace {

using ::qopt::Random;

/// W's top-`rank` SVD U·S·Vᵀ as B·A: column i of B is Uᵢ·β, row i of A is
/// α·Vᵢᵀ, with (β, α) = split(Sᵢ).
void svdFactors(const dense::Matrix &w, int64_t rank,
                function_ref<std::pair<double, double>(double)> split,
                dense::Matrix &a, dense::Matrix &b) {
  int64_t n = w.rows, k = w.cols;
  a = dense::Matrix(rank, k);
  b = dense::Matrix(n, rank);
  dense::Matrix u, vt;
  std::vector<float> sv;
  dense::topSingular(w, rank, u, sv, vt);
  for (int64_t i = 0; i < rank; ++i) {
    auto [beta, alpha] = split(sv[i]);
    for (int64_t j = 0; j < k; ++j)
      a.at(i, j) = float(alpha * vt.at(i, j));
    for (int64_t j = 0; j < n; ++j)
      b.at(j, i) = float(beta * u.at(j, i));
  }
}

/// The initialisations of PEFT's init_lora_weights that exist, and those
/// that are not implemented yet.
enum class Init {
  Default,
  Gaussian,
  NoInit,
  PiSSA,
  OLoRA,
  LoftQ,
  LoRAXS,
  EVA,
  LoraGA,
  LoraSB,
  RandLoRA
};

struct QOptInsertLoRAPass
    : mlir::qopt::impl::QOptInsertLoRAPassBase<QOptInsertLoRAPass> {
  using Base::Base;
  /// A selection given as a parsed adapter_config.json rather than options.
  std::optional<LoraSelection> preset;
  /// RandLoraConfig's sparse / very_sparse and init_weights (from a config).
  bool randloraSparse = false, randloraInitWeights = true;

  InFlightDiagnostic error() {
    return mlir::emitError(getOperation().getLoc()) << "qopt-insert-lora: ";
  }

  FailureOr<Init> parseInit() {
    std::string v = llvm::StringRef(initLoraWeights).lower();
    if (v == "true")
      return Init::Default;
    if (v == "gaussian")
      return Init::Gaussian;
    if (v == "false")
      return Init::NoInit;
    // pissa_niter_N (PEFT's randomized SVD) gets the exact one.
    if (v == "pissa" || llvm::StringRef(v).starts_with("pissa_niter_"))
      return Init::PiSSA;
    if (v == "olora")
      return Init::OLoRA;
    if (v == "loftq") {
      if (loftqBits != 4) {
        error() << "loftq-bits " << int64_t(loftqBits)
                << " is not supported (4: NF4, as bitsandbytes quantizes)";
        return failure();
      }
      if (loftqIter < 1) {
        error() << "loftq-iter must be at least 1, got " << int64_t(loftqIter);
        return failure();
      }
      return Init::LoftQ;
    }
    if (v == "lora-xs")
      return Init::LoRAXS;
    if (v == "randlora")
      return Init::RandLoRA;
    if (v == "eva") {
      // Run-time slots hold zeros whatever the init.
      if (evaState.empty() && !slots) {
        error() << "init-lora-weights=eva needs each layer's input "
                   "components: give eva-state=FILE (qoptc "
                   "--calibration-data computes them)";
        return failure();
      }
      return Init::EVA;
    }
    if (v == "lora_ga") {
      if (loragaState.empty() && !slots) {
        error() << "init-lora-weights=lora_ga needs each layer's gradient: "
                   "give loraga-state=FILE (qoptc --calibration-data "
                   "computes it)";
        return failure();
      }
      if (loragaDirection == "random") {
        error() << "loraga-direction=random is not supported: PEFT draws "
                   "its components from torch's generator (ArB2r, A2rBr, "
                   "ArBr)";
        return failure();
      }
      if (!llvm::is_contained({"ArB2r", "A2rBr", "ArBr"},
                              StringRef(loragaDirection))) {
        error() << "unknown loraga-direction '" << loragaDirection
                << "' (ArB2r, A2rBr, ArBr)";
        return failure();
      }
      if (!llvm::is_contained({"stable", "weight_svd", "gd_scale", "unit"},
                              StringRef(loragaScale))) {
        error() << "unknown loraga-scale '" << loragaScale
                << "' (stable, weight_svd, gd_scale, unit)";
        return failure();
      }
      if (!(loragaStableGamma > 0)) {
        error() << "loraga-stable-gamma must be positive, got "
                << loragaStableGamma;
        return failure();
      }
      return Init::LoraGA;
    }
    if (v == "lora-sb" || v == "lora_sb") {
      if (lorasbState.empty() && !slots) {
        error() << "init-lora-weights=lora-sb needs each layer's gradient: "
                   "give lorasb-state=FILE (qoptc --calibration-data "
                   "computes it)";
        return failure();
      }
      if (!(lorasbLr > 0)) {
        error() << "init-lora-weights=lora-sb needs lorasb-lr, the learning "
                   "rate of the update it approximates (a positive number; "
                   "lora_sb_config.lr in an adapter config), got "
                << lorasbLr;
        return failure();
      }
      return Init::LoraSB;
    }
    for (StringRef later : {"corda", "orthogonal"})
      if (llvm::StringRef(v).starts_with(later)) {
        error() << "init-lora-weights '" << initLoraWeights
                << "' is not implemented yet";
        return failure();
      }
    error() << "unknown init-lora-weights '" << initLoraWeights
            << "' (expected true, false, gaussian, pissa, pissa_niter_N, "
               "olora, loftq, lora-xs, lora-sb, eva, lora_ga or randlora)";
    return failure();
  }

  /// `key=value` entries of rank-pattern / alpha-pattern.
  template <typename T>
  LogicalResult parsePattern(ArrayRef<std::string> entries, StringRef option,
                             std::vector<std::pair<std::string, T>> &out) {
    for (const std::string &entry : entries) {
      auto [key, value] = llvm::StringRef(entry).rsplit('=');
      T parsed{};
      bool bad;
      if constexpr (std::is_integral_v<T>)
        bad = value.trim().getAsInteger(10, parsed);
      else
        bad = value.trim().getAsDouble(parsed);
      if (key.empty() || value.empty() || bad) {
        error() << option << " entry '" << entry
                << "' is not key=value with a number";
        return failure();
      }
      out.push_back({key.str(), parsed});
    }
    return success();
  }

  void runOnOperation() override {
    ModuleOp module = getOperation();
    if (r <= 0)
      return error() << "r must be positive, got " << int64_t(r),
             signalPassFailure();
    if (!(loraDropout >= 0 && loraDropout < 1))
      return error() << "lora-dropout must be in [0, 1), got "
                     << double(loraDropout),
             signalPassFailure();
    if (targetModules.empty() && !preset)
      return error() << "target-modules is required (module names or "
                        "suffixes, one regular expression, or all-linear)",
             signalPassFailure();
    FailureOr<Init> init = parseInit();
    if (failed(init))
      return signalPassFailure();
    if (slots && useDora)
      return error() << "use-dora: DoRA layers cannot be run-time slots",
             signalPassFailure();
    if (slots && (useSora || *init == Init::LoRAXS || *init == Init::LoraSB))
      return error() << (useSora ? "use-sora"
                                 : "init-lora-weights=" + initLoraWeights)
                     << ": run-time slots hold plain LoRA factors only",
             signalPassFailure();
    LoraSelection selection;
    if (preset) {
      selection = *preset;
    } else {
      selection = selectionFromOptions(targetModules, excludeModules,
                                       layersToTransform, layersPattern);
      selection.r = r;
      selection.loraAlpha = loraAlpha;
      if (failed(parsePattern<int64_t>(rankPattern, "rank-pattern",
                                       selection.rankPattern)) ||
          failed(parsePattern<double>(alphaPattern, "alpha-pattern",
                                      selection.alphaPattern)))
        return signalPassFailure();
    }
    std::vector<LinearLayer> layers = collectLinearLayers(module);
    llvm::Expected<LoraTargets> targets =
        LoraTargets::create(selection, layers);
    if (!targets)
      return error() << llvm::toString(targets.takeError()),
             signalPassFailure();
    SmallVector<const LinearLayer *> chosen, chosenEmbeddings;
    for (const LinearLayer &layer : layers)
      if (targets->matches(layer.name))
        chosen.push_back(&layer);
    std::vector<LinearLayer> embeddings = collectEmbeddingLayers(module);
    for (const LinearLayer &layer : embeddings)
      if (targets->matchesEmbedding(layer.name))
        chosenEmbeddings.push_back(&layer);
    if (chosen.empty() && chosenEmbeddings.empty()) {
      InFlightDiagnostic diag = error()
                                << "target-modules matched no linear layer";
      SmallVector<StringRef> names;
      for (const LinearLayer &layer : layers)
        if (!layer.name.empty())
          names.push_back(layer.name);
      for (const LinearLayer &layer : embeddings)
        if (!layer.name.empty())
          names.push_back(layer.name);
      if (names.empty())
        diag << " (no linear layer has a module path)";
      else
        diag << "; the layers are: " << llvm::join(names, ", ");
      return signalPassFailure();
    }
    if (*init == Init::EVA && !slots &&
        failed(readState(chosen, evaState, "eva-state", "rank x in-features")))
      return signalPassFailure();
    if (*init == Init::LoraGA && !slots &&
        failed(readState(chosen, loragaState, "loraga-state", "out x in")))
      return signalPassFailure();
    if (*init == Init::LoraSB && !slots &&
        failed(readState(chosen, lorasbState, "lorasb-state", "out x in")))
      return signalPassFailure();
    SymbolTable symbols(module);
    if (*init == Init::RandLoRA) {
      if (failed(insertRandLoRA(chosen, chosenEmbeddings, selection, symbols)))
        return signalPassFailure();
      return;
    }
    WeightReader reader(modelDir);
    SmallVector<Attribute> slotList;
    // What an embedding target cannot take is refused before any layer
    // changes.
    for (const LinearLayer *layer : chosenEmbeddings)
      if (failed(checkEmbedding(*layer, *init)))
        return signalPassFailure();
    for (auto [index, layer] : llvm::enumerate(chosen))
      if (failed(insert(*layer, index, *targets, *init, symbols, reader,
                        slotList)))
        return signalPassFailure();
    for (auto [index, layer] : llvm::enumerate(chosenEmbeddings))
      if (failed(insertEmbedding(*layer, chosen.size() + index, *targets, *init,
                                 symbols)))
        return signalPassFailure();
    if (slots)
      QOptDialect::LoraSlotsAttrHelper(&getContext())
          .setAttr(module, ArrayAttr::get(&getContext(), slotList));
  }

  /// By module: EVA's components (`eva-state`) or LoRA-GA's gradients
  /// (`loraga-state`).
  std::shared_ptr<llvm::MemoryBuffer> stateBuffer; // shared: passes are copied
  llvm::StringMap<SafetensorsTensor> stateTensors;

  /// Reads a per-module state file (`option` names it in errors): EVA's
  /// components or LoRA-GA's gradients.
  LogicalResult readState(ArrayRef<const LinearLayer *> chosen, StringRef path,
                          StringRef option, StringRef shape) {
    auto file = llvm::MemoryBuffer::getFile(path);
    if (!file)
      return error() << option << ": cannot read " << path << ": "
                     << file.getError().message();
    stateBuffer = std::move(*file);
    llvm::Expected<llvm::StringMap<SafetensorsTensor>> tensors =
        readFloatSafetensors(*stateBuffer, path);
    if (!tensors)
      return error() << option << ": " << llvm::toString(tensors.takeError());
    llvm::StringSet<> names;
    for (const LinearLayer *layer : chosen)
      names.insert(layer->name);
    for (auto &entry : *tensors) {
      StringRef key = entry.getKey();
      // PEFT's get_eva_state_dict names a PeftModel's modules.
      key.consume_front("base_model.model.");
      if (!names.contains(key))
        return error() << option << ": " << path << " has tensor '"
                       << entry.getKey() << "', which names no targeted module",
               failure();
      if (entry.getValue().shape.size() != 2)
        return error() << option << ": tensor '" << entry.getKey()
                       << "' is not a matrix (" << shape << ")",
               failure();
      stateTensors[key] = entry.getValue();
    }
    return success();
  }

  /// PEFT's lora.Embedding: lora_embedding_A (r×V) and lora_embedding_B
  /// (D×r). PEFT gives embeddings A = 0 and B ~ N(0, 1) for every init but
  /// `false` (both ~ N(0, 1)), and no dropout; inits that rewrite base
  /// weights or add factors are refused here rather than half applied.
  LogicalResult checkEmbedding(const LinearLayer &layer, Init init) {
    auto fail = [&]() {
      return layer.op->emitError()
             << "qopt-insert-lora: embedding '" << layer.name << "': ";
    };
    if (!isa<EmbeddingOp>(layer.op))
      return fail() << "already has an adapter";
    if (slots)
      return fail() << "run-time slots hold linear layers' factors only";
    if (useDora)
      return fail() << "use-dora on an embedding is not supported";
    if (useSora)
      return fail() << "use-sora on an embedding is not supported";
    if (init == Init::PiSSA || init == Init::OLoRA || init == Init::LoftQ ||
        init == Init::LoRAXS || init == Init::LoraSB)
      return fail() << "init-lora-weights=" << initLoraWeights
                    << " is not supported with an embedding target (PEFT "
                       "gives embeddings the default init, which one saved "
                       "config cannot express beside it)";
    return success();
  }

  LogicalResult insertEmbedding(const LinearLayer &layer, size_t index,
                                const LoraTargets &targets, Init init,
                                SymbolTable &symbols) {
    auto fail = [&]() {
      return layer.op->emitError()
             << "qopt-insert-lora: embedding '" << layer.name << "': ";
    };
    auto embedding = cast<EmbeddingOp>(layer.op);
    Type wType = embedding.getWeight().getType();
    ArrayRef<int64_t> shape = isa<QTensorType>(wType)
                                  ? cast<QTensorType>(wType).getShape()
                                  : cast<RankedTensorType>(wType).getShape();
    int64_t v = shape[0], d = shape[1];
    if (ShapedType::isDynamic(v) || ShapedType::isDynamic(d))
      return fail() << "has a table of dynamic shape";
    if (std::optional<std::string> why = targets.ambiguity(layer.name))
      return fail() << *why;
    int64_t rank = targets.rankFor(layer.name);
    double alpha = targets.alphaFor(layer.name);
    Type element = embedding.getType().getElementType();
    if (!getFloatKind(element))
      return fail() << "computes in " << element
                    << ", which adapters cannot take";
    Random random(seed ^ (0xd1b54a32d192ed03ull * (index + 1)));
    std::vector<float> a(rank * v, 0.0f), b(d * rank);
    if (init == Init::NoInit)
      for (float &x : a)
        x = random.normal();
    for (float &x : b)
      x = random.normal();
    Location loc = embedding.getLoc();
    auto aType = RankedTensorType::get({rank, v}, element);
    auto bType = RankedTensorType::get({d, rank}, element);
    ParamOp aParam =
        createFloatParam(symbols, loc, layer.name + ".lora_embedding_A", aType,
                         a, /*trainable=*/true);
    ParamOp bParam =
        createFloatParam(symbols, loc, layer.name + ".lora_embedding_B", bType,
                         b, /*trainable=*/true);
    if (!aParam || !bParam)
      return failure();
    OpBuilder builder(embedding);
    Value aValue =
        LoadParamOp::create(builder, loc, aType, aParam.getSymName());
    Value bValue =
        LoadParamOp::create(builder, loc, bType, bParam.getSymName());
    attachEmbeddingLoRA(embedding, aValue, bValue, alpha, useRslora);
    return success();
  }

  /// PEFT's RandLoRA tuner: one pair of frozen random bases sized for the
  /// largest targeted layer, shared by every layer, and per layer trainable
  /// λ (r×nb, zero: the output starts unchanged) and γ (nb×m, 1/max(nb,
  /// m), PEFT's reset_randlora_parameters), nb = ceil(min(out, in) / r).
  LogicalResult insertRandLoRA(ArrayRef<const LinearLayer *> chosen,
                               ArrayRef<const LinearLayer *> embeddings,
                               const LoraSelection &selection,
                               SymbolTable &symbols) {
    auto fail = [&](Operation *op) {
      return op->emitError() << "qopt-insert-lora: randlora: ";
    };
    Operation *first =
        !chosen.empty() ? chosen.front()->op : embeddings.front()->op;
    if (!embeddings.empty())
      return fail(embeddings.front()->op)
             << "embedding '" << embeddings.front()->name
             << "' cannot take a RandLoRA adapter (PEFT adapts linear "
                "layers only)";
    if (slots || useDora || useSora || useRslora)
      return fail(first) << (slots     ? "run-time slots"
                             : useDora ? "use-dora"
                             : useSora ? "use-sora"
                                       : "use-rslora")
                         << " does not apply to RandLoRA";
    if (!selection.rankPattern.empty() || !selection.alphaPattern.empty())
      return fail(first) << "RandLoRA has no rank or alpha patterns";
    if (randloraSparse)
      return fail(first) << "sparse bases are not supported yet (sparse / "
                            "very_sparse)";
    if (!randloraInitWeights)
      return fail(first) << "init_weights=false is not supported yet";
    // One adapter shares one pair of bases, sized for all its layers.
    LoRAOp earlier;
    getOperation().walk([&](LoRAOp op) {
      if (op->hasAttr("qopt.randlora_alpha"))
        earlier = op;
    });
    if (earlier)
      return fail(first) << "the model already has a RandLoRA adapter (on '"
                         << (earlier.getModuleAttr()
                                 ? earlier.getModule()->str()
                                 : std::string("?"))
                         << "'): target all its layers in one pass";
    int64_t r = selection.r;
    double alpha = selection.loraAlpha;
    // PEFT's _find_dim: the largest out and in over the targeted layers.
    int64_t outMax = 0, inMax = 0;
    SmallVector<LinearOp> linears;
    for (const LinearLayer *layer : chosen) {
      auto linear = dyn_cast<LinearOp>(layer->op);
      if (!linear)
        return fail(layer->op)
               << "module '" << layer->name << "' already has an adapter";
      Type wType = linear.getWeight().getType();
      ArrayRef<int64_t> w = isa<QTensorType>(wType)
                                ? cast<QTensorType>(wType).getShape()
                                : cast<RankedTensorType>(wType).getShape();
      if (ShapedType::isDynamic(w[0]) || ShapedType::isDynamic(w[1]))
        return fail(linear) << "module '" << layer->name
                            << "' has a weight of dynamic shape";
      if (!linear.getInput().getType().getElementType().isF32())
        return fail(linear)
               << "module '" << layer->name << "' does not compute in f32";
      outMax = std::max(outMax, w[0]);
      inMax = std::max(inMax, w[1]);
      linears.push_back(linear);
    }
    int64_t minDim = std::min(outMax, inMax), maxDim = std::max(outMax, inMax);
    int64_t bases = randloraBases(outMax, inMax, r);
    // Random bases scaled to unit standard deviation, as PEFT does (its
    // values come from torch's generator; qopt's from SplitMix64).
    Random random(seed ^ 0x52414e444c4f5241ull);
    auto basis = [&](int64_t count) {
      std::vector<float> v(count);
      double sum = 0, sq = 0;
      for (float &x : v) {
        x = random.symmetric(1.0);
        sum += x;
      }
      double mean = sum / count;
      for (float x : v)
        sq += (x - mean) * (x - mean);
      double sd = std::sqrt(sq / std::max<int64_t>(count - 1, 1));
      for (float &x : v)
        x = float(x / sd);
      return v;
    };
    Location loc = first->getLoc();
    Type f32 = Float32Type::get(&getContext());
    auto aType = RankedTensorType::get({r, 1, minDim}, f32);
    auto bType = RankedTensorType::get({maxDim, bases, r}, f32);
    ParamOp aParam =
        createFloatParam(symbols, loc, "randlora_A", aType, basis(r * minDim));
    ParamOp bParam = createFloatParam(symbols, loc, "randlora_B", bType,
                                      basis(maxDim * bases * r));
    if (!aParam || !bParam)
      return failure();
    for (auto [layer, linear] : llvm::zip(chosen, linears)) {
      ArrayRef<int64_t> w =
          isa<QTensorType>(linear.getWeight().getType())
              ? cast<QTensorType>(linear.getWeight().getType()).getShape()
              : cast<RankedTensorType>(linear.getWeight().getType()).getShape();
      int64_t m = std::min(w[0], w[1]), nb = randloraBases(w[0], w[1], r);
      auto lambdaType = RankedTensorType::get({r, nb}, f32);
      auto gammaType = RankedTensorType::get({nb, m}, f32);
      ParamOp lambda = createFloatParam(
          symbols, linear.getLoc(), layer->name + ".randlora_lambda",
          lambdaType, std::vector<float>(r * nb, 0.0f), /*trainable=*/true);
      ParamOp gamma = createFloatParam(
          symbols, linear.getLoc(), layer->name + ".randlora_gamma", gammaType,
          std::vector<float>(nb * m, float(1.0 / std::max(nb, m))),
          /*trainable=*/true);
      if (!lambda || !gamma)
        return failure();
      attachRandLoRA(linear, aParam, bParam, lambda, gamma, alpha, loraDropout);
    }
    return success();
  }

  LogicalResult insert(const LinearLayer &layer, size_t index,
                       const LoraTargets &targets, Init init,
                       SymbolTable &symbols, WeightReader &reader,
                       SmallVectorImpl<Attribute> &slotList) {
    auto linear = dyn_cast<LinearOp>(layer.op);
    if (!linear)
      return layer.op->emitError() << "qopt-insert-lora: module '" << layer.name
                                   << "' already has an adapter";
    Type wType = linear.getWeight().getType();
    ArrayRef<int64_t> shape = isa<QTensorType>(wType)
                                  ? cast<QTensorType>(wType).getShape()
                                  : cast<RankedTensorType>(wType).getShape();
    int64_t n = shape[0], k = shape[1];
    int64_t rank = targets.rankFor(layer.name);
    double alpha = targets.alphaFor(layer.name);
    // EVA: the rank the redistribution gave (none: no adapter), alpha
    // scaled with it; a layer without components gets the default init.
    const SafetensorsTensor *eva = nullptr;
    if (init == Init::EVA && !slots) {
      auto it = stateTensors.find(layer.name);
      if (it == stateTensors.end()) {
        linear.emitWarning()
            << "qopt-insert-lora: eva-state has no components for module '"
            << layer.name << "': it gets init-lora-weights=true";
        init = Init::Default;
      } else {
        eva = &it->second;
        if (eva->shape[1] != k)
          return linear.emitError()
                 << "qopt-insert-lora: eva-state's components of module '"
                 << layer.name << "' have " << eva->shape[1]
                 << " columns, but the layer has " << k << " in-features";
        if (eva->shape[0] == 0)
          return success();
        if (eva->shape[0] != rank && evaAdjustScalingFactors)
          alpha *= double(eva->shape[0]) / double(rank);
        rank = eva->shape[0];
      }
    }
    if (ShapedType::isDynamic(n) || ShapedType::isDynamic(k))
      return linear.emitError() << "qopt-insert-lora: module '" << layer.name
                                << "' has a weight of dynamic shape";
    if (rank > std::min(n, k))
      return linear.emitError()
             << "qopt-insert-lora: rank " << rank << " of module '"
             << layer.name << "' exceeds min(out, in) = " << std::min(n, k);
    if (std::optional<std::string> why = targets.ambiguity(layer.name))
      return linear.emitError() << "qopt-insert-lora: " << *why;
    Type element = linear.getInput().getType().getElementType();
    if (!getFloatKind(element))
      return linear.emitError()
             << "qopt-insert-lora: module '" << layer.name << "' computes in "
             << element << ", which adapters cannot take";
    if (slots && !element.isF32())
      return linear.emitError()
             << "qopt-insert-lora: run-time slots need an f32 layer; module '"
             << layer.name << "' computes in " << element;
    Location loc = linear.getLoc();
    Random random(seed ^ (0xd1b54a32d192ed03ull * (index + 1)));
    dense::Matrix am(rank, k), bm(n, rank);
    double aBound = 1.0 / std::sqrt(static_cast<double>(k));
    for (float &v : am.data)
      v = slots                    ? 0.0f
          : init == Init::Gaussian ? random.normal() / rank
                                   : random.symmetric(aBound);
    if (init == Init::NoInit && !slots)
      for (float &v : bm.data)
        v = random.symmetric(1.0 / std::sqrt(static_cast<double>(rank)));
    if (eva)
      ::qopt::dense::decodeFloats(eva->kind, eva->data, eva->count,
                                  am.data.data());
    double scale =
        useRslora ? alpha / std::sqrt(static_cast<double>(rank)) : alpha / rank;
    // Inits that rewrite the base weight: its principal part moves into
    // the adapter (PiSSA, OLoRA), it is quantized (LoftQ), or the
    // adapter's initial product is taken out of it (LoRA-GA).
    bool principal = !slots && (init == Init::PiSSA || init == Init::OLoRA);
    bool loftq = !slots && init == Init::LoftQ;
    bool loraga = !slots && init == Init::LoraGA;
    bool lorasb = !slots && init == Init::LoraSB;
    const SafetensorsTensor *gradient = nullptr;
    if (loraga || lorasb) {
      StringRef option = loraga ? "loraga-state" : "lorasb-state";
      auto it = stateTensors.find(layer.name);
      if (it == stateTensors.end())
        return linear.emitError()
               << "qopt-insert-lora: " << option
               << " has no gradient for module '" << layer.name << "'";
      gradient = &it->second;
      if (gradient->shape[0] != n || gradient->shape[1] != k)
        return linear.emitError()
               << "qopt-insert-lora: " << option << "'s gradient of module '"
               << layer.name << "' is " << gradient->shape[0] << "x"
               << gradient->shape[1] << ", but the layer's weight is " << n
               << "x" << k;
      int64_t needed = loraga ? 2 * rank : rank;
      if (needed > std::min(n, k))
        return linear.emitError()
               << "qopt-insert-lora: " << (loraga ? "LoRA-GA" : "LoRA-SB")
               << " needs " << (loraga ? "2r = " : "r = ") << needed
               << " singular components of module '" << layer.name
               << "', which has min(out, in) = " << std::min(n, k);
    }
    bool rewritesBase = principal || loftq || loraga;
    bool xs = !slots && init == Init::LoRAXS;
    // The base weight, where the init or DoRA needs it.
    std::optional<dense::Matrix> w;
    SmallVector<Operation *> oldWeight;
    if (rewritesBase || xs || useDora) {
      StringRef what = rewritesBase || xs ? "init-lora-weights" : "use-dora";
      if (isa<QTensorType>(wType))
        return linear.emitError()
               << "qopt-insert-lora: " << what << " on the quantized module '"
               << layer.name << "' is not supported yet";
      std::string why;
      FailureOr<dense::Matrix> read =
          reader.evaluate(linear.getWeight(), symbols, linear, why, &oldWeight);
      if (failed(read)) {
        if (!why.empty())
          linear.emitError()
              << "qopt-insert-lora: " << what << " needs the weight of module '"
              << layer.name << "' at compile time; it " << why;
        return failure();
      }
      w = std::move(*read);
    }
    if (principal)
      principalFactors(init == Init::PiSSA, rank, scale, *w, am, bm);
    if (loftq)
      loftqFactors(*w, rank, loftqIter, am, bm);
    if (loraga) {
      dense::Matrix g(n, k);
      ::qopt::dense::decodeFloats(gradient->kind, gradient->data,
                                  gradient->count, g.data.data());
      loragaFactors(g, *w, rank, scale, loragaDirection, loragaScale,
                    loragaStableGamma, am, bm);
    }
    // LoRA-XS: frozen B = Uᵣ·Sᵣ and A = Vᵣᵀ of W's top-r SVD; only the
    // r×r middle R trains, from zero (the output starts unchanged).
    if (xs)
      svdFactors(*w, rank, [](double s) { return std::pair(s, 1.0); }, am, bm);
    // LoRA-SB: the same form from the first update of full fine-tuning,
    // ΔW = −η·sign(G): frozen B = Uᵣ, A = Vᵣᵀ, trainable R = Sᵣ / scale.
    std::vector<float> middle(rank * rank, 0.0f);
    if (lorasb) {
      dense::Matrix delta(n, k);
      ::qopt::dense::decodeFloats(gradient->kind, gradient->data,
                                  gradient->count, delta.data.data());
      float step = float(lorasbLr);
      for (float &v : delta.data)
        v = v > 0 ? -step : v < 0 ? step : 0.0f;
      std::vector<float> sv;
      dense::topSingular(delta, rank, bm, sv, am);
      for (int64_t i = 0; i < rank; ++i)
        middle[i * rank + i] = float(double(sv[i]) / scale);
    }
    bool latent = xs || lorasb;
    if (rewritesBase && !replaceWeight(linear, layer.name, *w, symbols))
      return failure();
    auto aType = RankedTensorType::get({rank, k}, element);
    auto bType = RankedTensorType::get({n, rank}, element);
    ParamOp aParam = createFloatParam(
        symbols, loc, layer.name + ".lora_A.weight", aType, am.data,
        /*trainable=*/!latent);
    ParamOp bParam = createFloatParam(
        symbols, loc, layer.name + ".lora_B.weight", bType, bm.data,
        /*trainable=*/!latent);
    if (!aParam || !bParam)
      return failure();
    ParamOp middleParam, gateParam;
    auto squareType = RankedTensorType::get({rank, rank}, element);
    auto gateType = RankedTensorType::get({rank}, element);
    if (latent && !(middleParam = createFloatParam(
                        symbols, loc, layer.name + ".lora_middle", squareType,
                        middle, /*trainable=*/true)))
      return failure();
    // SoRA: a gate per rank component, from one (sparsified in training).
    if (useSora && !(gateParam = createFloatParam(
                         symbols, loc, layer.name + ".lora_gate", gateType,
                         std::vector<float>(rank, 1.0f), /*trainable=*/true)))
      return failure();
    ParamOp mParam;
    if (useDora) {
      // PEFT: ‖W + scale·B·A‖ per output row, W the layer's base weight
      // now (the residual after a principal init); LoRA-XS's middle is zero
      // and a SoRA gate one; LoRA-SB's middle is diagonal.
      if (lorasb) {
        dense::Matrix br = bm;
        for (int64_t row = 0; row < n; ++row)
          for (int64_t j = 0; j < rank; ++j)
            br.data[row * rank + j] *= middle[j * rank + j];
        dense::gemm(false, false, float(scale), br, am, 1.0f, *w);
      } else if (!xs) {
        dense::gemm(false, false, float(scale), bm, am, 1.0f, *w);
      }
      std::vector<float> norms = dense::rowNorms(*w);
      mParam =
          createFloatParam(symbols, loc, layer.name + ".lora_magnitude_vector",
                           RankedTensorType::get({n}, element), norms,
                           /*trainable=*/true);
      if (!mParam)
        return failure();
    }
    OpBuilder builder(linear);
    auto load = [&](ParamOp p, Type type) -> Value {
      if (!p)
        return {};
      return LoadParamOp::create(builder, loc, type, p.getSymName());
    };
    Value aValue = load(aParam, aType), bValue = load(bParam, bType),
          mValue = load(mParam, RankedTensorType::get({n}, element));
    if (slots) {
      // Scale 1: a loaded adapter's alpha / r goes into its B.
      Builder b(linear.getContext());
      slotList.push_back(b.getDictionaryAttr(
          {b.getNamedAttr("module", b.getStringAttr(layer.name)),
           b.getNamedAttr("rank", b.getI64IntegerAttr(rank)),
           b.getNamedAttr("lora_a", aParam.getSymNameAttr()),
           b.getNamedAttr("lora_b", bParam.getSymNameAttr())}));
      attachLoRA(linear, aValue, bValue, Value(), rank, false, 0.0);
      return success();
    }
    LoRAOp lora = attachLoRA(linear, aValue, bValue, mValue, alpha, useRslora,
                             loraDropout, load(middleParam, squareType),
                             load(gateParam, gateType));
    // The base weight is now W's residual: qopt-save-adapter names the init
    // (PEFT recomputes the residual) and writes PEFT's converted form.
    if (rewritesBase) {
      // The canonical name: pissa_niter_N got the exact SVD.
      markResidualInit(lora,
                       init == Init::PiSSA    ? "pissa"
                       : init == Init::OLoRA  ? "olora"
                       : init == Init::LoraGA ? "lora_ga"
                                              : "loftq",
                       loftqIter);
      // The factors in the IR are the initial ones, which PEFT's converted
      // form needs (a loaded adapter's are not).
      lora->setAttr("qopt.initial_factors", UnitAttr::get(lora.getContext()));
    }
    // The replaced base weight's reads (and transpose), and its parameter,
    // when nothing else reads them.
    eraseDeadOps(oldWeight, symbols);
    return success();
  }
};

} // namespace

void mlir::qopt::principalFactors(bool pissa, int64_t rank, double scale,
                                  dense::Matrix &w, dense::Matrix &a,
                                  dense::Matrix &b) {
  if (pissa) {
    svdFactors(
        w, rank,
        [&](double s) {
          double root = std::sqrt(s / scale);
          return std::pair(root, root);
        },
        a, b);
  } else {
    a = dense::Matrix(rank, w.cols);
    b = dense::Matrix(w.rows, rank);
    dense::thinQR(w, rank, b, a);
  }
  dense::gemm(false, false, float(-scale), b, a, 1.0f, w);
}

void mlir::qopt::loragaFactors(const dense::Matrix &g, dense::Matrix &w,
                               int64_t rank, double scale, StringRef direction,
                               StringRef scaleKind, double stableGamma,
                               dense::Matrix &a, dense::Matrix &b) {
  // PEFT's lora_ga_init: U, S, Vᵀ of G's top 2r components.
  dense::Matrix u, vt;
  std::vector<float> sv;
  dense::topSingular(g, 2 * rank, u, sv, vt);
  SmallVector<int64_t> aRows, bCols;
  for (int64_t i = 0; i < rank; ++i) {
    if (direction == "ArBr") {
      aRows.push_back(2 * i + 1);
      bCols.push_back(2 * i);
    } else if (direction == "A2rBr") {
      aRows.push_back(rank + i);
      bCols.push_back(i);
    } else { // ArB2r
      aRows.push_back(i);
      bCols.push_back(rank + i);
    }
  }
  int64_t n = w.rows, k = w.cols;
  a = dense::Matrix(rank, k);
  b = dense::Matrix(n, rank);
  double bFactor = 1.0, aFactor = 1.0;
  if (scaleKind == "stable") {
    bFactor = std::pow(double(n), 0.25) / std::sqrt(stableGamma);
  } else if (scaleKind == "weight_svd") {
    dense::Matrix wu, wvt;
    std::vector<float> ws;
    dense::topSingular(w, 1, wu, ws, wvt);
    if (sv[bCols[0]] > 0)
      bFactor = double(ws[0]) / double(sv[bCols[0]]);
  } else if (scaleKind == "gd_scale") {
    aFactor = bFactor = 1.0 / scale;
  }
  for (int64_t i = 0; i < rank; ++i) {
    for (int64_t j = 0; j < k; ++j)
      a.at(i, j) = float(aFactor * vt.at(aRows[i], j));
    for (int64_t j = 0; j < n; ++j)
      b.at(j, i) =
          float(bFactor * double(u.at(j, bCols[i])) * double(sv[bCols[i]]));
  }
  dense::gemm(false, false, float(-scale), b, a, 1.0f, w);
}

void mlir::qopt::loftqFactors(dense::Matrix &w, int64_t rank, int64_t iters,
                              dense::Matrix &a, dense::Matrix &b) {
  // PEFT's loftq_init: res = W; repeat { Q = NF4(res); res = W - Q;
  // B, A = top-r SVD of res (U·√S, √S·Vᵀ); res = W - B·A }.
  const int64_t block = 64; // bitsandbytes' Params4bit default
  int64_t count = w.rows * w.cols;
  std::vector<uint8_t> codes(count);
  std::vector<float> absmax((count + block - 1) / block), q(count);
  dense::Matrix res = w;
  for (int64_t it = 0; it < iters; ++it) {
    ::qopt::nf4QuantizeBlockwise(res.data.data(), count, block, codes.data(),
                                 absmax.data());
    ::qopt::nf4DequantizeBlockwise(codes.data(), absmax.data(), count, block,
                                   q.data());
    for (int64_t i = 0; i < count; ++i)
      res.data[i] = w.data[i] - q[i];
    svdFactors(
        res, rank,
        [](double s) { return std::pair(std::sqrt(s), std::sqrt(s)); }, a, b);
    if (it + 1 < iters) {
      res = w;
      dense::gemm(false, false, -1.0f, b, a, 1.0f, res);
    }
  }
  w.data = std::move(q);
}

void mlir::qopt::markResidualInit(LoRAOp lora, StringRef init,
                                  int64_t loftqIter) {
  MLIRContext *context = lora.getContext();
  lora->setAttr("qopt.residual_init", StringAttr::get(context, init));
  if (init == "loftq")
    lora->setAttr("qopt.loftq_iter",
                  IntegerAttr::get(IntegerType::get(context, 64), loftqIter));
}

ParamOp mlir::qopt::replaceWeight(LinearOp linear, StringRef module,
                                  const dense::Matrix &w,
                                  SymbolTable &symbols) {
  auto type = cast<RankedTensorType>(linear.getWeight().getType());
  ParamOp param = createFloatParam(symbols, linear.getLoc(),
                                   module.str() + ".weight", type, w.data);
  if (!param)
    return {};
  OpBuilder builder(linear);
  linear.getWeightMutable().assign(
      LoadParamOp::create(builder, linear.getLoc(), type, param.getSymName()));
  return param;
}

std::unique_ptr<Pass>
mlir::qopt::createQOptInsertLoRAPass(const PeftLoraConfig &config,
                                     StringRef modelDir, uint64_t seed,
                                     bool slots, StringRef calibrationState) {
  QOptInsertLoRAPassOptions options;
  options.r = config.selection.r;
  options.loraAlpha = config.selection.loraAlpha;
  options.loraDropout = config.loraDropout;
  options.useRslora = config.useRslora;
  options.useDora = config.useDora;
  options.initLoraWeights = config.initLoraWeights;
  options.loftqBits = config.loftqBits;
  options.loftqIter = config.loftqIter;
  StringRef init = config.initLoraWeights;
  if (init.lower() == "lora_ga")
    options.loragaState = calibrationState.str();
  else if (init.lower() == "lora-sb")
    options.lorasbState = calibrationState.str();
  else
    options.evaState = calibrationState.str();
  options.lorasbLr = config.loraSb.lr;
  options.loragaDirection = config.loraGa.direction;
  options.loragaScale = config.loraGa.scale;
  options.loragaStableGamma = config.loraGa.stableGamma;
  options.evaAdjustScalingFactors = config.eva.adjustScalingFactors;
  if (config.randlora)
    options.initLoraWeights = "randlora";
  options.seed = seed;
  options.slots = slots;
  options.modelDir = modelDir.str();
  // The selection runs from `preset`; the options mirror it so that the
  // pass prints as the pipeline it is (qopt-opt --qopt-recipe).
  const LoraSelection &sel = config.selection;
  if (sel.allLinear)
    options.targetModules = {"all-linear"};
  else if (sel.targetRegex)
    options.targetModules = {*sel.targetRegex};
  else
    options.targetModules.assign(sel.targetModules.begin(),
                                 sel.targetModules.end());
  if (sel.excludeRegex)
    options.excludeModules = {*sel.excludeRegex};
  else
    options.excludeModules.assign(sel.excludeModules.begin(),
                                  sel.excludeModules.end());
  options.layersToTransform.assign(sel.layersToTransform.begin(),
                                   sel.layersToTransform.end());
  auto pass = std::make_unique<QOptInsertLoRAPass>(options);
  pass->preset = config.selection;
  pass->randloraSparse = config.randloraSparse;
  pass->randloraInitWeights = config.randloraInitWeights;
  return pass;
}
