//===- LoadAdapter.cpp - Load a PEFT LoRA adapter onto the model ----------===//
//
// PeftModel.from_pretrained on a compiled graph: adapter_config.json says
// which layers are adapted and how, adapter_model.safetensors holds the
// factors, keyed by PEFT's module paths.
//
//===----------------------------------------------------------------------===//

#include "qopt/Dialect/QOpt/Transforms/LoraTargets.h"
#include "qopt/Dialect/QOpt/Transforms/Passes.h"
#include "qopt/Dialect/QOpt/Transforms/Weights.h"
#include "qopt/Support/PeftConfig.h"

#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/Builders.h"
#include "llvm/ADT/StringExtras.h"
#include "llvm/ADT/StringMap.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/FormatVariadic.h"
#include "llvm/Support/JSON.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/Path.h"

#include <cmath>
#include <cstring>
#include <map>

namespace mlir::qopt {
#define GEN_PASS_DEF_QOPTLOADADAPTERPASS
#include "qopt/Dialect/QOpt/Transforms/Passes.h.inc"
} // namespace mlir::qopt

using namespace mlir;
using namespace mlir::qopt;
namespace dense = ::qopt::dense;

llvm::Expected<llvm::StringMap<SafetensorsTensor>>
mlir::qopt::readFloatSafetensors(const llvm::MemoryBuffer &buffer,
                                 StringRef path) {
  auto entries = readSafetensors(buffer.getBuffer(), path);
  if (!entries)
    return entries.takeError();
  llvm::StringMap<SafetensorsTensor> tensors;
  for (const auto &[name, e] : *entries) {
    std::optional<dense::FloatKind> kind = safetensorsFloatKind(e.dtype);
    if (!kind)
      return llvm::createStringError(path + ": tensor '" + name + "': dtype " +
                                     e.dtype + " is not a float type");
    tensors[name] = SafetensorsTensor{
        *kind, std::vector<int64_t>(e.shape.begin(), e.shape.end()),
        e.bytes.data(), size_t(e.count)};
  }
  return tensors;
}

std::string mlir::qopt::encodeF32Safetensors(
    ArrayRef<SafetensorsF32> tensors,
    ArrayRef<std::pair<std::string, std::string>> metadata) {
  // A little-endian u64 header length, the JSON header (padded to 8 bytes),
  // then the data.
  llvm::json::Object header;
  std::string data;
  for (const SafetensorsF32 &t : tensors) {
    size_t begin = data.size();
    data.append(reinterpret_cast<const char *>(t.values->data()),
                t.values->size() * sizeof(float));
    header[t.name] = llvm::json::Object{
        {"dtype", "F32"},
        {"shape", llvm::json::Array(t.shape)},
        {"data_offsets",
         llvm::json::Array{int64_t(begin), int64_t(data.size())}}};
  }
  llvm::json::Object meta;
  for (const auto &[key, value] : metadata)
    meta[key] = value;
  header["__metadata__"] = std::move(meta);
  std::string text = llvm::formatv("{0}", llvm::json::Value(std::move(header)));
  text.append((8 - text.size() % 8) % 8, ' ');
  std::string file(8, '\0');
  uint64_t size = text.size();
  std::memcpy(file.data(), &size, 8); // little-endian hosts only
  return file + text + data;
}

namespace {

using Tensor = SafetensorsTensor;

/// "2x3x4".
std::string shapeStr(ArrayRef<int64_t> shape) {
  return llvm::join(
      llvm::map_range(shape, [](int64_t d) { return std::to_string(d); }), "x");
}

/// A new parameter `name` holding the file's tensor `t` in `element`.
ParamOp paramFromTensor(SymbolTable &symbols, Location loc, StringRef name,
                        const Tensor &t, Type element, bool trainable) {
  std::optional<dense::FloatKind> kind = getFloatKind(element);
  auto type = RankedTensorType::get(t.shape, element);
  return createParam(
      symbols, loc, name, type, trainable, [&](MutableArrayRef<char> bytes) {
        std::vector<float> values(t.count);
        dense::decodeFloats(t.kind, t.data, t.count, values.data());
        dense::encodeFloats(*kind, values.data(), t.count, bytes.data());
      });
}

/// paramFromTensor's parameter `<module><suffix>`, read before `user`; null
/// after an error.
Value readTensorParam(SymbolTable &symbols, Operation *user, StringRef module,
                      StringRef suffix, const Tensor &t, Type element,
                      bool trainable) {
  ParamOp p =
      paramFromTensor(symbols, user->getLoc(), module.str() + suffix.str(), t,
                      element, trainable);
  if (!p)
    return {};
  OpBuilder builder(user);
  return LoadParamOp::create(builder, user->getLoc(), p.getTensorType(),
                             p.getSymName());
}

/// The parts of one module's adapter in the file.
struct ModuleAdapter {
  const Tensor *a = nullptr, *b = nullptr, *magnitude = nullptr;
  /// PEFT's lora.Embedding: lora_embedding_A (r×V), lora_embedding_B (D×r).
  const Tensor *embeddingA = nullptr, *embeddingB = nullptr;
  /// PEFT's RandLoRA: the shared bases (saved with every layer) and the
  /// layer's scalings.
  const Tensor *randloraA = nullptr, *randloraB = nullptr, *lambda = nullptr,
               *gamma = nullptr;
};

struct QOptLoadAdapterPass
    : mlir::qopt::impl::QOptLoadAdapterPassBase<QOptLoadAdapterPass> {
  using Base::Base;

  InFlightDiagnostic error() {
    return mlir::emitError(getOperation().getLoc()) << "qopt-load-adapter: ";
  }

  void runOnOperation() override {
    ModuleOp module = getOperation();
    if (adapter.empty())
      return error() << "no adapter folder given (adapter=DIR)",
             signalPassFailure();
    SmallString<256> configPath(adapter.getValue()), weightsPath(configPath);
    llvm::sys::path::append(configPath, "adapter_config.json");
    llvm::sys::path::append(weightsPath, "adapter_model.safetensors");
    auto configFile = llvm::MemoryBuffer::getFile(configPath);
    if (!configFile)
      return error() << "cannot read " << configPath << ": "
                     << configFile.getError().message(),
             signalPassFailure();
    llvm::Expected<PeftLoraConfig> config =
        parsePeftLoraConfig((*configFile)->getBuffer());
    if (!config)
      return error() << llvm::toString(config.takeError()), signalPassFailure();
    // A PiSSA / OLoRA / LoftQ adapter applies to the base weights its init
    // left (a residual, a quantization): PEFT recomputes them on loading,
    // and so does qopt where the init is deterministic (exact SVD, QR, NF4).
    StringRef init = config->initLoraWeights;
    rewritesBase = init == "pissa" || init == "olora" || init == "loftq";
    if (init == "loftq" && config->loftqBits != 4)
      return error() << "adapter_config.json: loftq_config's loftq_bits "
                     << config->loftqBits
                     << " is not supported (4: NF4, as bitsandbytes "
                        "quantizes)",
             signalPassFailure();
    if (init == "loftq" && config->loftqIter < 1)
      return error() << "adapter_config.json: loftq_config's loftq_iter must "
                        "be at least 1",
             signalPassFailure();
    if (!::qopt::peft::initKeepsBaseWeights(init.str().c_str()) &&
        !rewritesBase)
      return error() << "adapter_config.json: init_lora_weights is '" << init
                     << "': such an adapter applies to the residual base "
                        "weights of "
                     << (init.starts_with("pissa_niter_")
                             ? "a randomized SVD, which cannot be reproduced"
                             : "an initialisation qopt does not have")
                     << "; save it with PEFT's "
                        "path_initial_model_for_weight_conversion to get one "
                        "for the original weights",
             signalPassFailure();
    auto weightsFile = llvm::MemoryBuffer::getFile(
        weightsPath, /*IsText=*/false, /*RequiresNullTerminator=*/false);
    if (!weightsFile)
      return error() << "cannot read " << weightsPath << ": "
                     << weightsFile.getError().message(),
             signalPassFailure();
    llvm::Expected<llvm::StringMap<Tensor>> tensors =
        readFloatSafetensors(**weightsFile, weightsPath);
    if (!tensors)
      return error() << llvm::toString(tensors.takeError()),
             signalPassFailure();

    sharedA = sharedB = nullptr;
    // base_model.model.<module>.lora_A.weight etc., by module.
    llvm::StringMap<ModuleAdapter> adapters;
    SmallVector<std::string> order;
    for (const auto &entry : *tensors) {
      StringRef key = entry.getKey();
      StringRef path = key;
      // RandLoRA's shared bases, also saved at the tuner's level.
      if (key == "base_model.randlora_A" || key == "base_model.randlora_B") {
        (key.ends_with("A") ? sharedA : sharedB) = &entry.getValue();
        continue;
      }
      if (!path.consume_front("base_model.model."))
        return error() << "tensor '" << key
                       << "' is not a PEFT adapter weight "
                          "(base_model.model.<module>....)",
               signalPassFailure();
      StringRef moduleName;
      const Tensor **slot = nullptr;
      ModuleAdapter *m = nullptr;
      for (auto [suffix, which] :
           {std::pair<StringRef, int>{".lora_A.weight", 0},
            {".lora_B.weight", 1},
            {".lora_magnitude_vector", 2},
            {".lora_embedding_A", 3},
            {".lora_embedding_B", 4},
            {".randlora_A", 5},
            {".randlora_B", 6},
            {".randlora_lambda", 7},
            {".randlora_gamma", 8}})
        if (path.ends_with(suffix)) {
          moduleName = path.drop_back(suffix.size());
          m = &adapters[moduleName];
          const Tensor **slots[] = {
              &m->a,          &m->b,          &m->magnitude,
              &m->embeddingA, &m->embeddingB, &m->randloraA,
              &m->randloraB,  &m->lambda,     &m->gamma};
          slot = slots[which];
        }
      if (!slot)
        return error() << "tensor '" << key
                       << "' is not supported (LoRA on linear layers: "
                          "lora_A, lora_B, lora_magnitude_vector; on "
                          "embeddings: lora_embedding_A, lora_embedding_B)",
               signalPassFailure();
      *slot = &entry.getValue();
    }
    for (const auto &entry : adapters)
      order.push_back(entry.getKey().str());
    llvm::sort(order);

    std::vector<LinearLayer> layers = collectLinearLayers(module);
    llvm::StringMap<const LinearLayer *> byName;
    for (const LinearLayer &layer : layers)
      if (!layer.name.empty() && !byName.try_emplace(layer.name, &layer).second)
        return error() << "two linear layers share the module path '"
                       << layer.name
                       << "': the adapter's weights are ambiguous",
               signalPassFailure();
    std::vector<LinearLayer> embeddings = collectEmbeddingLayers(module);
    llvm::StringMap<const LinearLayer *> embeddingByName;
    for (const LinearLayer &layer : embeddings)
      if (!layer.name.empty() &&
          (byName.count(layer.name) ||
           !embeddingByName.try_emplace(layer.name, &layer).second))
        return error() << "two layers share the module path '" << layer.name
                       << "': the adapter's weights are ambiguous",
               signalPassFailure();
    llvm::Expected<LoraTargets> targets =
        LoraTargets::create(config->selection, layers);
    if (!targets)
      return error() << llvm::toString(targets.takeError()),
             signalPassFailure();
    // The config's selection and the file's modules must agree.
    for (const std::string &name : order)
      if (!byName.count(name) && !embeddingByName.count(name))
        return error() << "the adapter has weights for module '" << name
                       << "', which is not a linear layer or an embedding of "
                          "the model (qoptc --list-modules shows them)",
               signalPassFailure();
    for (const LinearLayer &layer : layers)
      if (targets->matches(layer.name) && !adapters.count(layer.name))
        return error() << "adapter_config.json targets module '" << layer.name
                       << "' but adapter_model.safetensors has no weights "
                          "for it",
               signalPassFailure();
    for (const LinearLayer &layer : embeddings)
      if (targets->matchesEmbedding(layer.name) && !adapters.count(layer.name))
        return error() << "adapter_config.json targets embedding '"
                       << layer.name
                       << "' but adapter_model.safetensors has no weights "
                          "for it",
               signalPassFailure();

    if (!config->randlora) {
      StringRef randloraModule;
      for (const std::string &name : order) {
        const ModuleAdapter &m = adapters[name];
        if (m.randloraA || m.randloraB || m.lambda || m.gamma)
          randloraModule = name;
      }
      if (sharedA || sharedB || !randloraModule.empty())
        return error() << "the file has RandLoRA tensors"
                       << (randloraModule.empty()
                               ? std::string()
                               : " (module '" + randloraModule.str() + "')")
                       << ", but peft_type is LORA",
               signalPassFailure();
    }
    SymbolTable symbols(module);
    WeightReader reader(modelDir);
    if (config->randlora) {
      if (failed(loadRandLoRA(order, adapters, byName, embeddingByName, *config,
                              *targets, symbols)))
        return signalPassFailure();
      return;
    }
    for (const std::string &name : order) {
      if (embeddingByName.count(name)) {
        if (failed(loadEmbedding(*embeddingByName[name], adapters[name],
                                 *config, *targets, symbols)))
          return signalPassFailure();
        continue;
      }
      if (failed(load(*byName[name], adapters[name], *config, *targets, symbols,
                      reader)))
        return signalPassFailure();
    }
  }

  /// PEFT's RandLoRA adapter: one pair of shared bases (the file repeats
  /// them for every layer; they must agree) and each layer's λ and γ.
  LogicalResult
  loadRandLoRA(ArrayRef<std::string> order,
               llvm::StringMap<ModuleAdapter> &adapters,
               llvm::StringMap<const LinearLayer *> &byName,
               llvm::StringMap<const LinearLayer *> &embeddingByName,
               const PeftLoraConfig &config, const LoraTargets &targets,
               SymbolTable &symbols) {
    int64_t r = config.selection.r;
    ParamOp aParam, bParam;
    if (bool(sharedA) != bool(sharedB))
      return error() << "the file has only one of base_model.randlora_A and "
                        "base_model.randlora_B";
    const Tensor *firstA = sharedA, *firstB = sharedB;
    std::string firstName = "base_model";
    auto same = [](const Tensor *x, const Tensor *y) {
      return x->kind == y->kind && x->shape == y->shape &&
             std::memcmp(x->data, y->data,
                         x->count * dense::floatKindBytes(x->kind)) == 0;
    };
    for (const std::string &name : order) {
      ModuleAdapter &parts = adapters[name];
      if (embeddingByName.count(name))
        return embeddingByName[name]->op->emitError()
               << "qopt-load-adapter: embedding '" << name
               << "': RandLoRA adapts linear layers only";
      const LinearLayer &layer = *byName[name];
      auto fail = [&]() {
        return layer.op->emitError()
               << "qopt-load-adapter: module '" << name << "': ";
      };
      auto linear = dyn_cast<LinearOp>(layer.op);
      if (!linear)
        return fail() << "already has an adapter";
      if (!targets.matches(name))
        return fail() << "has adapter weights, but adapter_config.json does "
                         "not target it";
      if (parts.a || parts.b || parts.magnitude || parts.embeddingA ||
          parts.embeddingB)
        return fail() << "has LoRA weights, but peft_type is RANDLORA";
      if (!parts.lambda || !parts.gamma)
        return fail() << "needs randlora_lambda and randlora_gamma";
      // A layer without its own copy reads the tuner-level bases.
      if (!parts.randloraA && !parts.randloraB && sharedA) {
        parts.randloraA = sharedA;
        parts.randloraB = sharedB;
      }
      if (!parts.randloraA || !parts.randloraB)
        return fail() << "has no randlora_A / randlora_B bases"
                      << (config.randloraSaveProjection
                              ? ""
                              : " (save_projection is false: PEFT "
                                "regenerates them with torch's generator "
                                "from projection_prng_key, which qopt does "
                                "not reproduce; save with "
                                "save_projection=True)");
      if (!linear.getInput().getType().getElementType().isF32())
        return fail() << "RandLoRA adapters need an f32 layer";
      Type wType = linear.getWeight().getType();
      ArrayRef<int64_t> w = isa<QTensorType>(wType)
                                ? cast<QTensorType>(wType).getShape()
                                : cast<RankedTensorType>(wType).getShape();
      int64_t m = std::min(w[0], w[1]), big = std::max(w[0], w[1]);
      int64_t nb = randloraBases(w[0], w[1], r);
      const std::vector<int64_t> &sa = parts.randloraA->shape,
                                 &sb = parts.randloraB->shape;
      if (sa.size() != 3 || sa[0] != r || sa[1] != 1 || sa[2] < m)
        return fail() << "randlora_A has shape " << shapeStr(sa)
                      << ", expected " << r << "x1xM with M >= " << m;
      if (sb.size() != 3 || sb[2] != r || sb[0] < big || sb[1] < nb)
        return fail() << "randlora_B has shape " << shapeStr(sb)
                      << ", expected Nx" << "NBx" << r << " with N >= " << big
                      << " and NB >= " << nb;
      if (parts.lambda->shape != std::vector<int64_t>{r, nb})
        return fail() << "randlora_lambda has shape "
                      << shapeStr(parts.lambda->shape) << ", expected " << r
                      << "x" << nb;
      if (parts.gamma->shape != std::vector<int64_t>{nb, m})
        return fail() << "randlora_gamma has shape "
                      << shapeStr(parts.gamma->shape) << ", expected " << nb
                      << "x" << m;
      Type f32 = Float32Type::get(&getContext());
      auto param = [&](const Tensor &t, StringRef pname, bool isTrainable) {
        return paramFromTensor(symbols, linear.getLoc(), pname, t, f32,
                               isTrainable);
      };
      if (!firstA) {
        firstA = parts.randloraA;
        firstB = parts.randloraB;
        firstName = "module '" + name + "'";
      } else if (!same(parts.randloraA, firstA) ||
                 !same(parts.randloraB, firstB)) {
        return fail() << "its randlora_A / randlora_B differ from those of "
                      << firstName << ": RandLoRA shares one pair of bases";
      }
      if (!aParam) {
        aParam = param(*firstA, "randlora_A", false);
        bParam = param(*firstB, "randlora_B", false);
        if (!aParam || !bParam)
          return failure();
      }
      ParamOp lambda =
          param(*parts.lambda, name + ".randlora_lambda", trainable);
      ParamOp gamma = param(*parts.gamma, name + ".randlora_gamma", trainable);
      if (!lambda || !gamma)
        return failure();
      attachRandLoRA(linear, aParam, bParam, lambda, gamma,
                     config.selection.loraAlpha, config.loraDropout);
    }
    return success();
  }

  /// PEFT's lora.Embedding: the factors apply to the original table (PEFT
  /// gives embeddings the default init whatever init_lora_weights says).
  LogicalResult loadEmbedding(const LinearLayer &layer,
                              const ModuleAdapter &parts,
                              const PeftLoraConfig &config,
                              const LoraTargets &targets,
                              SymbolTable &symbols) {
    auto fail = [&]() {
      return layer.op->emitError()
             << "qopt-load-adapter: embedding '" << layer.name << "': ";
    };
    auto embedding = dyn_cast<EmbeddingOp>(layer.op);
    if (!embedding)
      return fail() << "already has an adapter";
    if (!targets.matchesEmbedding(layer.name))
      return fail() << "has adapter weights, but adapter_config.json does "
                       "not target it";
    if (parts.a || parts.b || parts.magnitude)
      return fail() << "has lora_A / lora_B / lora_magnitude_vector "
                       "weights, which belong to linear layers"
                    << (config.useDora ? " (DoRA on embeddings is not "
                                         "supported)"
                                       : "");
    if (config.useDora)
      return fail() << "use_dora is set: PEFT applies DoRA to embeddings too, "
                       "which qopt does not support";
    if (!parts.embeddingA || !parts.embeddingB)
      return fail() << "needs both lora_embedding_A and lora_embedding_B";
    Type wType = embedding.getWeight().getType();
    ArrayRef<int64_t> w = isa<QTensorType>(wType)
                              ? cast<QTensorType>(wType).getShape()
                              : cast<RankedTensorType>(wType).getShape();
    int64_t v = w[0], d = w[1];
    int64_t r =
        parts.embeddingA->shape.size() == 2 ? parts.embeddingA->shape[0] : -1;
    if (r <= 0 || parts.embeddingA->shape != std::vector<int64_t>{r, v})
      return fail() << "lora_embedding_A has shape "
                    << shapeStr(parts.embeddingA->shape) << ", expected r x "
                    << v;
    if (parts.embeddingB->shape != std::vector<int64_t>{d, r})
      return fail() << "lora_embedding_B has shape "
                    << shapeStr(parts.embeddingB->shape) << ", expected " << d
                    << "x" << r;
    if (std::optional<std::string> why = targets.ambiguity(layer.name))
      return fail() << *why;
    if (r != targets.rankFor(layer.name))
      return fail() << "its factors have rank " << r
                    << ", but adapter_config.json gives "
                    << targets.rankFor(layer.name);
    Type element = embedding.getType().getElementType();
    std::optional<dense::FloatKind> kind = getFloatKind(element);
    if (!kind)
      return fail() << "has element type " << element
                    << ", which adapters cannot take";
    auto param = [&](const Tensor &t, StringRef suffix) {
      return readTensorParam(symbols, embedding, layer.name, suffix, t, element,
                             trainable);
    };
    Value a = param(*parts.embeddingA, ".lora_embedding_A");
    Value b = param(*parts.embeddingB, ".lora_embedding_B");
    if (!a || !b)
      return failure();
    attachEmbeddingLoRA(embedding, a, b, targets.alphaFor(layer.name),
                        config.useRslora);
    return success();
  }

  /// The base weight PEFT's PiSSA / OLoRA / LoftQ init leaves (the weight
  /// less its principal part; its NF4 quantization), as a new parameter.
  LogicalResult rewriteBase(LinearOp linear, StringRef name,
                            const PeftLoraConfig &config, int64_t rank,
                            double scale, SymbolTable &symbols,
                            WeightReader &reader) {
    StringRef init = config.initLoraWeights;
    if (isa<QTensorType>(linear.getWeight().getType()))
      return linear.emitError()
             << "qopt-load-adapter: module '" << name << "' is quantized; a "
             << init << " adapter needs its float weight";
    auto type = cast<RankedTensorType>(linear.getWeight().getType());
    if (rank > std::min(type.getDimSize(0), type.getDimSize(1)))
      return linear.emitError()
             << "qopt-load-adapter: module '" << name << "': rank " << rank
             << " exceeds min(out, in)";
    SmallVector<Operation *> oldWeight;
    std::string why;
    FailureOr<dense::Matrix> w =
        reader.evaluate(linear.getWeight(), symbols, linear, why, &oldWeight);
    if (failed(w)) {
      if (!why.empty())
        linear.emitError() << "qopt-load-adapter: the " << init
                           << " adapter needs the weight of module '" << name
                           << "' at compile time; it " << why;
      return failure();
    }
    dense::Matrix a, b;
    if (init == "loftq")
      loftqFactors(*w, rank, config.loftqIter, a, b);
    else
      principalFactors(init == "pissa", rank, scale, *w, a, b);
    if (!replaceWeight(linear, name, *w, symbols))
      return failure();
    eraseDeadOps(oldWeight, symbols);
    return success();
  }

  LogicalResult load(const LinearLayer &layer, const ModuleAdapter &parts,
                     const PeftLoraConfig &config, const LoraTargets &targets,
                     SymbolTable &symbols, WeightReader &reader) {
    auto fail = [&]() {
      return layer.op->emitError()
             << "qopt-load-adapter: module '" << layer.name << "': ";
    };
    auto linear = dyn_cast<LinearOp>(layer.op);
    if (!linear)
      return fail() << "already has an adapter";
    if (!targets.matches(layer.name))
      return fail() << "has adapter weights, but adapter_config.json does "
                       "not target it";
    if (parts.embeddingA || parts.embeddingB)
      return fail() << "has lora_embedding_A / lora_embedding_B weights, "
                       "which belong to embeddings";
    if (!parts.a || !parts.b)
      return fail() << "needs both lora_A.weight and lora_B.weight";
    if (bool(parts.magnitude) != config.useDora)
      return fail() << (config.useDora
                            ? "use_dora is set but the file has no "
                              "lora_magnitude_vector"
                            : "the file has a lora_magnitude_vector but "
                              "use_dora is not set");
    Type wType = linear.getWeight().getType();
    ArrayRef<int64_t> w = isa<QTensorType>(wType)
                              ? cast<QTensorType>(wType).getShape()
                              : cast<RankedTensorType>(wType).getShape();
    int64_t n = w[0], k = w[1];
    int64_t r = parts.a->shape.size() == 2 ? parts.a->shape[0] : -1;
    if (r <= 0 || parts.a->shape != std::vector<int64_t>{r, k})
      return fail() << "lora_A.weight has shape " << shapeStr(parts.a->shape)
                    << ", expected r x " << k;
    if (parts.b->shape != std::vector<int64_t>{n, r})
      return fail() << "lora_B.weight has shape " << shapeStr(parts.b->shape)
                    << ", expected " << n << "x" << r;
    if (parts.magnitude && parts.magnitude->shape != std::vector<int64_t>{n})
      return fail() << "lora_magnitude_vector has shape "
                    << shapeStr(parts.magnitude->shape) << ", expected " << n;
    if (std::optional<std::string> why = targets.ambiguity(layer.name))
      return fail() << *why;
    if (r != targets.rankFor(layer.name))
      return fail() << "its factors have rank " << r
                    << ", but adapter_config.json gives "
                    << targets.rankFor(layer.name);
    Type element = linear.getInput().getType().getElementType();
    std::optional<dense::FloatKind> kind = getFloatKind(element);
    if (!kind)
      return fail() << "has element type " << element
                    << ", which adapters cannot take";
    auto param = [&](const Tensor &t, StringRef suffix) {
      return readTensorParam(symbols, linear, layer.name, suffix, t, element,
                             trainable);
    };
    Value a = param(*parts.a, ".lora_A.weight");
    Value b = param(*parts.b, ".lora_B.weight");
    Value m = parts.magnitude
                  ? param(*parts.magnitude, ".lora_magnitude_vector")
                  : Value();
    if (!a || !b || (parts.magnitude && !m))
      return failure();
    double alpha = targets.alphaFor(layer.name);
    if (rewritesBase &&
        failed(rewriteBase(linear, layer.name, config, r,
                           config.useRslora ? alpha / std::sqrt(double(r))
                                            : alpha / double(r),
                           symbols, reader)))
      return failure();
    LoRAOp lora = attachLoRA(linear, a, b, m, alpha, config.useRslora,
                             config.loraDropout);
    if (rewritesBase)
      markResidualInit(lora, config.initLoraWeights, config.loftqIter);
    return success();
  }

  /// Whether the adapter's init rewrote the base weights.
  bool rewritesBase = false;
  /// RandLoRA's bases as PEFT also saves them once, at the tuner's level.
  const Tensor *sharedA = nullptr, *sharedB = nullptr;
};

} // namespace

//===----------------------------------------------------------------------===//
// qopt-save-adapter
//===----------------------------------------------------------------------===//

namespace mlir::qopt {
#define GEN_PASS_DEF_QOPTSAVEADAPTERPASS
#include "qopt/Dialect/QOpt/Transforms/Passes.h.inc"
} // namespace mlir::qopt

namespace {

/// `name` as a Python regular expression matching exactly it.
std::string escapeRegex(StringRef name) {
  std::string out;
  for (char c : name) {
    if (StringRef(".^$*+?()[]{}|\\").contains(c))
      out += '\\';
    out += c;
  }
  return out;
}

/// The value most entries have (the first such, in order).
template <typename T> T mostCommon(ArrayRef<T> values) {
  T best{};
  size_t bestCount = 0;
  for (const T &v : values) {
    size_t n = llvm::count(values, v);
    if (n > bestCount)
      best = v, bestCount = n;
  }
  return best;
}

/// Writes each (path, bytes) to a temporary file beside it, then renames
/// them all into place: a failure leaves no partial or mismatched files.
LogicalResult writeFiles(Location loc,
                         ArrayRef<std::pair<std::string, std::string>> files) {
  SmallVector<std::string> temps;
  auto cleanUp = [&] {
    for (const std::string &t : temps)
      llvm::sys::fs::remove(t);
  };
  for (const auto &[path, bytes] : files) {
    SmallString<256> tmp;
    int fd;
    if (std::error_code ec =
            llvm::sys::fs::createUniqueFile(path + ".tmp-%%%%%%", fd, tmp)) {
      cleanUp();
      return emitError(loc) << "qopt-save-adapter: cannot write " << path
                            << ": " << ec.message();
    }
    temps.push_back(tmp.str().str());
    llvm::raw_fd_ostream os(fd, /*shouldClose=*/true);
    os << bytes;
    os.close();
    if (os.has_error()) {
      os.clear_error();
      cleanUp();
      return emitError(loc) << "qopt-save-adapter: cannot write " << path;
    }
  }
  for (auto [i, file] : llvm::enumerate(files))
    if (std::error_code ec = llvm::sys::fs::rename(temps[i], file.first)) {
      cleanUp();
      return emitError(loc) << "qopt-save-adapter: cannot write " << file.first
                            << ": " << ec.message();
    }
  return success();
}

/// The init PEFT's config must name for `op`, whose base weight it
/// rewrote (PiSSA, OLoRA, LoftQ), or empty.
StringRef residualInit(LoRAOp op) {
  auto init = op->getAttrOfType<StringAttr>("qopt.residual_init");
  return init ? init.getValue() : StringRef();
}

/// What one PEFT config says about every adapted layer.
struct AdapterVariant {
  Location loc;
  bool rslora = false, dora = false;
  double dropout = 0;
  IntegerAttr loftqIter;
};

/// Appends `dir`'s adapter_model.safetensors (the f32 `tensors`) and
/// adapter_config.json (LoraConfig's fields for the modules `names` with
/// ranks, alphas and `variant`) to `files`, creating `dir`.
LogicalResult
addFiles(StringRef dir, const std::map<std::string, dense::Matrix> &tensors,
         ArrayRef<std::string> names, ArrayRef<int64_t> ranks,
         ArrayRef<double> alphas, const AdapterVariant &variant,
         llvm::json::Value init,
         SmallVectorImpl<std::pair<std::string, std::string>> &files) {
  // LoftQ's config travels with its init.
  llvm::json::Object loftq;
  if (variant.loftqIter &&
      init.getAsString() == std::optional<StringRef>("loftq"))
    loftq = llvm::json::Object{{"loftq_bits", 4},
                               {"loftq_iter", variant.loftqIter.getInt()}};
  int64_t r = mostCommon<int64_t>(ranks);
  double alpha = mostCommon<double>(alphas);

  // adapter_model.safetensors; magnitudes are vectors.
  std::vector<SafetensorsF32> entries;
  for (auto &[key, m] : tensors) {
    std::vector<int64_t> shape = {m.rows, m.cols};
    if (StringRef(key).ends_with("lora_magnitude_vector"))
      shape = {m.cols};
    entries.push_back({key, std::move(shape), &m.data});
  }
  std::string file = encodeF32Safetensors(entries);

  // adapter_config.json: LoraConfig's fields.
  llvm::json::Object rankPattern, alphaPattern;
  llvm::json::Array targets;
  for (auto [i, name] : llvm::enumerate(names)) {
    targets.push_back(name);
    if (ranks[i] != r)
      rankPattern[escapeRegex(name)] = ranks[i];
    if (alphas[i] != alpha)
      alphaPattern[escapeRegex(name)] = alphas[i];
  }
  llvm::json::Object config{{"peft_type", "LORA"},
                            {"r", r},
                            {"lora_alpha", alpha},
                            {"target_modules", std::move(targets)},
                            {"rank_pattern", std::move(rankPattern)},
                            {"alpha_pattern", std::move(alphaPattern)},
                            {"use_rslora", variant.rslora},
                            {"use_dora", variant.dora},
                            {"lora_dropout", variant.dropout},
                            {"bias", "none"},
                            {"fan_in_fan_out", false},
                            {"init_lora_weights", std::move(init)},
                            {"loftq_config", std::move(loftq)},
                            {"inference_mode", true},
                            {"modules_to_save", nullptr},
                            {"task_type", nullptr},
                            {"base_model_name_or_path", nullptr},
                            {"revision", nullptr}};
  std::string configText =
      llvm::formatv("{0:2}", llvm::json::Value(std::move(config)));

  if (std::error_code ec = llvm::sys::fs::create_directories(dir))
    return emitError(variant.loc) << "qopt-save-adapter: cannot create " << dir
                                  << ": " << ec.message();
  SmallString<256> weightsPath(dir), configPath(dir);
  llvm::sys::path::append(weightsPath, "adapter_model.safetensors");
  llvm::sys::path::append(configPath, "adapter_config.json");
  files.emplace_back(weightsPath.str().str(), std::move(file));
  files.emplace_back(configPath.str().str(), configText + "\n");
  return success();
}

struct QOptSaveAdapterPass
    : mlir::qopt::impl::QOptSaveAdapterPassBase<QOptSaveAdapterPass> {
  using Base::Base;

  /// PEFT's RandLoRA format: per module randlora_lambda, randlora_gamma and
  /// (save_projection) the shared bases randlora_A / randlora_B.
  LogicalResult saveRandLoRA(ArrayRef<LoRAOp> loras,
                             ArrayRef<LoRAEmbeddingOp> embeddings) {
    ModuleOp module = getOperation();
    auto fail = [&](Operation *at) {
      return at->emitError() << "qopt-save-adapter: ";
    };
    if (!embeddings.empty())
      return fail(embeddings.front())
             << "a RandLoRA adapter and adapted embeddings cannot share one "
                "PEFT config";
    SymbolTable symbols(module);
    WeightReader reader(modelDir);
    auto alphaOf = [](LoRAOp op) {
      return op->getAttrOfType<FloatAttr>("qopt.randlora_alpha");
    };
    std::vector<std::pair<std::string, std::vector<int64_t>>> shapes;
    std::map<std::string, dense::Matrix> tensors;
    llvm::json::Array targets;
    int64_t r = -1;
    double alpha = 0, dropout = 0;
    StringRef basisA, basisB;
    for (LoRAOp op : loras) {
      if (!alphaOf(op))
        return fail(op) << "module '"
                        << (op.getModuleAttr() ? op.getModule()->str() : "?")
                        << "' has a LoRA adapter beside RandLoRA ones, which "
                           "one PEFT config cannot express";
      if (!op.getModuleAttr())
        return fail(op) << "a RandLoRA layer without a module path cannot "
                           "be named in PEFT's format";
      std::string name = op.getModule()->str();
      // The scaled side is a qopt.randlora_scale, possibly transposed.
      RandLoRAScaleOp scale;
      RandLoRAFlattenOp flatten;
      for (Value v : {op.getLoraA(), op.getLoraB()}) {
        Operation *def = v.getDefiningOp();
        if (auto t = dyn_cast_if_present<linalg::TransposeOp>(def))
          def = t.getInput().getDefiningOp();
        if (auto s = dyn_cast_if_present<RandLoRAScaleOp>(def))
          scale = s;
        if (auto f = dyn_cast_if_present<RandLoRAFlattenOp>(def))
          flatten = f;
      }
      if (!scale || !flatten)
        return fail(op) << "module '" << name
                        << "': its factors are not RandLoRA's";
      // One adapter, one pair of bases: every layer must read the same.
      auto basisName = [](Value v) {
        auto load = v.getDefiningOp<LoadParamOp>();
        return load ? load.getName() : StringRef();
      };
      StringRef a = basisName(scale.getBasis()),
                b = basisName(flatten.getBasis());
      if (a.empty() || b.empty())
        return fail(op) << "module '" << name
                        << "': its RandLoRA bases are not parameters";
      if (basisA.empty()) {
        basisA = a;
        basisB = b;
      } else if (a != basisA || b != basisB) {
        return fail(op) << "module '" << name
                        << "' reads other RandLoRA bases (@" << a << ", @" << b
                        << ") than the other layers (@" << basisA << ", @"
                        << basisB << "): one PEFT adapter shares one pair";
      }
      int64_t rank = scale.getLambda().getType().getDimSize(0);
      if (r >= 0 && (rank != r || alphaOf(op).getValueAsDouble() != alpha ||
                     op.getDropout().convertToDouble() != dropout))
        return fail(op) << "module '" << name
                        << "' differs from the other RandLoRA layers in r, "
                           "alpha or dropout, which RandLoraConfig cannot "
                           "express";
      r = rank;
      alpha = alphaOf(op).getValueAsDouble();
      dropout = op.getDropout().convertToDouble();
      std::string prefix = "base_model.model." + name;
      for (auto [value, suffix] :
           {std::pair<Value, StringRef>{scale.getBasis(), ".randlora_A"},
            {flatten.getBasis(), ".randlora_B"},
            {scale.getLambda(), ".randlora_lambda"},
            {scale.getGamma(), ".randlora_gamma"}}) {
        std::string why;
        FailureOr<dense::Matrix> m = reader.evaluate(value, symbols, op, why);
        if (failed(m)) {
          if (!why.empty())
            fail(op) << "module '" << name << "': its " << suffix.drop_front()
                     << " " << why;
          return failure();
        }
        auto type = cast<RankedTensorType>(value.getType());
        shapes.push_back(
            {prefix + suffix.str(), std::vector<int64_t>(type.getShape())});
        tensors[prefix + suffix.str()] = std::move(*m);
      }
      targets.push_back(name);
    }
    // PEFT also saves the shared bases once at the tuner's level.
    for (StringRef basis : {"randlora_A", "randlora_B"}) {
      std::string from = "base_model.model." +
                         LoRAOp(loras.front()).getModule()->str() + "." +
                         basis.str();
      auto it = llvm::find_if(shapes, [&](auto &e) { return e.first == from; });
      shapes.push_back({"base_model." + basis.str(), it->second});
      tensors["base_model." + basis.str()] = tensors[from];
    }
    llvm::sort(shapes);
    std::vector<SafetensorsF32> entries;
    for (auto &[key, shape] : shapes)
      entries.push_back({key, shape, &tensors[key].data});
    llvm::json::Object config{{"peft_type", "RANDLORA"},
                              {"r", r},
                              {"randlora_alpha", alpha},
                              {"randlora_dropout", dropout},
                              {"target_modules", std::move(targets)},
                              {"projection_prng_key", 0},
                              {"save_projection", true},
                              {"sparse", false},
                              {"very_sparse", false},
                              {"init_weights", true},
                              {"bias", "none"},
                              {"fan_in_fan_out", false},
                              {"inference_mode", true},
                              {"layers_to_transform", nullptr},
                              {"layers_pattern", nullptr},
                              {"modules_to_save", nullptr},
                              {"task_type", nullptr},
                              {"base_model_name_or_path", nullptr},
                              {"revision", nullptr}};
    if (std::error_code ec = llvm::sys::fs::create_directories(adapter))
      return fail(loras.front())
             << "cannot create " << adapter << ": " << ec.message();
    SmallString<256> weightsPath(adapter.getValue()),
        configPath(adapter.getValue());
    llvm::sys::path::append(weightsPath, "adapter_model.safetensors");
    llvm::sys::path::append(configPath, "adapter_config.json");
    SmallVector<std::pair<std::string, std::string>> files = {
        {weightsPath.str().str(), encodeF32Safetensors(entries)},
        {configPath.str().str(),
         llvm::formatv("{0:2}", llvm::json::Value(std::move(config))).str() +
             "\n"}};
    return writeFiles(module.getLoc(), files);
  }

  void runOnOperation() override {
    ModuleOp module = getOperation();
    Location loc = module.getLoc();
    auto fail = [&](Operation *at) {
      return (at ? at->emitError() : mlir::emitError(loc))
             << "qopt-save-adapter: ";
    };
    if (adapter.empty())
      return fail(nullptr) << "no output folder given (adapter=DIR)",
             signalPassFailure();
    SmallVector<LoRAOp> loras;
    module.walk([&](LoRAOp op) { loras.push_back(op); });
    SmallVector<LoRAEmbeddingOp> embeddings;
    module.walk([&](LoRAEmbeddingOp op) { embeddings.push_back(op); });
    if (loras.empty() && embeddings.empty())
      return fail(nullptr) << "the model has no LoRA adapter to save",
             signalPassFailure();
    if (ifExpressible && llvm::any_of(loras, [](LoRAOp op) {
          return op.getMiddle() || op.getGate();
        })) {
      mlir::emitWarning(loc)
          << "qopt-save-adapter: LoRA-XS / LoRA-SB middles and SoRA gates "
             "have no place in a PEFT LoRA adapter: no adapter is saved "
             "(save_checkpoint keeps the trained values)";
      markAllAnalysesPreserved();
      return;
    }
    if (llvm::any_of(loras, [](LoRAOp op) {
          return op->hasAttr("qopt.randlora_alpha");
        })) {
      if (failed(saveRandLoRA(loras, embeddings)))
        return signalPassFailure();
      markAllAnalysesPreserved();
      return;
    }
    AdapterVariant variant{loc};
    if (!loras.empty()) {
      LoRAOp first = loras.front();
      variant = {first.getLoc(), first.getScaling() == LoRAScaling::RsLoRA,
                 bool(first.getMagnitude()),
                 first.getDropout().convertToDouble(),
                 first->getAttrOfType<IntegerAttr>("qopt.loftq_iter")};
    } else {
      variant.rslora = embeddings.front().getScaling() == LoRAScaling::RsLoRA;
    }
    SymbolTable symbols(module);
    WeightReader reader(modelDir);
    // The tensors, in key order, and what the config must say.
    std::map<std::string, dense::Matrix> tensors;
    SmallVector<std::string> names;
    SmallVector<int64_t> ranks;
    SmallVector<double> alphas;
    // What one config cannot express, before reading any data.
    for (LoRAOp op : loras) {
      if (!op.getModuleAttr())
        return fail(op) << "a LoRA layer without a module path cannot be "
                           "named in PEFT's format",
               signalPassFailure();
      std::string name = op.getModule()->str();
      StringRef init = residualInit(op);
      if (init != residualInit(loras.front()) ||
          op->getAttr("qopt.loftq_iter") !=
              loras.front()->getAttr("qopt.loftq_iter"))
        return fail(op) << "module '" << name
                        << "' was initialised differently from module '"
                        << (loras.front().getModuleAttr()
                                ? loras.front().getModule()->str()
                                : std::string("?"))
                        << "', which one PEFT config cannot express",
               signalPassFailure();
      if (!init.empty() && init != "loftq" && op.getMagnitude())
        return fail(op) << "module '" << name << "': a DoRA adapter with a "
                        << init
                        << " initialisation has no converted form for the "
                           "original weights (PEFT's conversion drops the "
                           "magnitudes)",
               signalPassFailure();
      if (op.getGate() || op.getMiddle())
        return fail(op) << "module '" << name
                        << "': SoRA gates and LoRA-XS middles have no "
                           "place in a PEFT LoRA adapter",
               signalPassFailure();
      LoRAOp first = loras.front();
      if (op.getScaling() != first.getScaling() ||
          bool(op.getMagnitude()) != bool(first.getMagnitude()) ||
          op.getDropout().convertToDouble() !=
              first.getDropout().convertToDouble())
        return fail(op) << "module '" << name << "' differs from module '"
                        << (first.getModuleAttr() ? first.getModule()->str()
                                                  : std::string("?"))
                        << "' in scaling, DoRA or dropout, which one PEFT "
                           "config cannot express",
               signalPassFailure();
    }
    for (LoRAEmbeddingOp op : embeddings) {
      if (!op.getModuleAttr())
        return fail(op) << "a LoRA embedding without a module path cannot "
                           "be named in PEFT's format",
               signalPassFailure();
      if (variant.dora)
        return fail(op) << "embedding '" << op.getModule()->str()
                        << "' has a plain LoRA adapter beside DoRA layers: "
                           "PEFT's use_dora would apply DoRA to it too",
               signalPassFailure();
      if ((op.getScaling() == LoRAScaling::RsLoRA) != variant.rslora)
        return fail(op) << "embedding '" << op.getModule()->str()
                        << "' differs from the other adapted layers in "
                           "scaling, which one PEFT config cannot express",
               signalPassFailure();
    }
    for (LoRAEmbeddingOp op : embeddings) {
      std::string name = op.getModule()->str();
      std::string prefix = "base_model.model." + name;
      for (auto [value, suffix] :
           {std::pair<Value, StringRef>{op.getLoraA(), ".lora_embedding_A"},
            {op.getLoraB(), ".lora_embedding_B"}}) {
        std::string why;
        FailureOr<dense::Matrix> m = reader.evaluate(value, symbols, op, why);
        if (failed(m)) {
          if (!why.empty())
            fail(op) << "embedding '" << name << "': its "
                     << suffix.drop_front() << " " << why;
          return signalPassFailure();
        }
        tensors[prefix + suffix.str()] = std::move(*m);
      }
      names.push_back(name);
      ranks.push_back(op.getRank());
      alphas.push_back(op.getAlpha().convertToDouble());
    }
    for (LoRAOp op : loras) {
      std::string name = op.getModule()->str();
      std::string prefix = "base_model.model." + name;
      for (auto [value, suffix] :
           {std::pair<Value, StringRef>{op.getLoraA(), ".lora_A.weight"},
            {op.getLoraB(), ".lora_B.weight"},
            {op.getMagnitude(), ".lora_magnitude_vector"}}) {
        if (!value)
          continue;
        std::string why;
        FailureOr<dense::Matrix> m = reader.evaluate(value, symbols, op, why);
        if (failed(m)) {
          if (!why.empty())
            fail(op) << "module '" << name << "': its " << suffix.drop_front()
                     << " " << why;
          return signalPassFailure();
        }
        tensors[prefix + suffix.str()] = std::move(*m);
      }
      names.push_back(name);
      ranks.push_back(op.getRank());
      alphas.push_back(op.getAlpha().convertToDouble());
    }
    StringRef init = loras.empty() ? StringRef() : residualInit(loras.front());
    SmallVector<std::pair<std::string, std::string>> files;
    if (failed(addFiles(adapter, tensors, names, ranks, alphas, variant,
                        init.empty() ? llvm::json::Value(true)
                                     : llvm::json::Value(init),
                        files)))
      return signalPassFailure();
    // PiSSA / OLoRA have a converted form (LoftQ's base is quantized); it
    // needs the initial factors.
    bool converted = !init.empty() && init != "loftq";
    if (converted && !embeddings.empty()) {
      mlir::emitWarning(loc)
          << "qopt-save-adapter: PEFT's converted form of the " << init
          << " adapter is not written: it also adapts embeddings";
      converted = false;
    }
    if (converted && !llvm::all_of(loras, [](LoRAOp op) {
          return op->hasAttr("qopt.initial_factors");
        })) {
      mlir::emitWarning(loc)
          << "qopt-save-adapter: PEFT's converted form of the " << init
          << " adapter is not written: its initial factors are not known "
             "(it was loaded, not initialised here)";
      converted = false;
    }
    SmallString<256> convertedDir(adapter.getValue());
    llvm::sys::path::append(convertedDir, "converted");
    if (converted) {
      // PEFT's converted form (save_pretrained with
      // path_initial_model_for_weight_conversion): ΔW = B·A - B₀·A₀ as a
      // rank-2r LoRA for the original weights, A' = [A; A₀], B' = [B, -B₀],
      // and the scale kept: alpha·2 (rsLoRA: alpha·√2). The initial factors
      // are the IR's (qopt-insert-lora marks them): qopt does not train
      // yet, so ΔW is zero here.
      std::map<std::string, dense::Matrix> convertedTensors;
      for (auto &[key, m] : tensors) {
        bool isA = StringRef(key).ends_with(".lora_A.weight");
        dense::Matrix c(isA ? 2 * m.rows : m.rows, isA ? m.cols : 2 * m.cols);
        for (int64_t i = 0; i < m.rows; ++i)
          for (int64_t j = 0; j < m.cols; ++j) {
            c.at(i, j) = m.at(i, j);
            // A₀ / B₀: the same values (the initial ones).
            if (isA)
              c.at(m.rows + i, j) = m.at(i, j);
            else
              c.at(i, m.cols + j) = -m.at(i, j);
          }
        convertedTensors[key] = std::move(c);
      }
      bool rslora = loras.front().getScaling() == LoRAScaling::RsLoRA;
      SmallVector<int64_t> ranks2;
      SmallVector<double> alphas2;
      for (auto [rank, alpha] : llvm::zip(ranks, alphas)) {
        ranks2.push_back(2 * rank);
        alphas2.push_back(rslora ? alpha * std::sqrt(2.0) : 2 * alpha);
      }
      if (failed(addFiles(convertedDir, convertedTensors, names, ranks2,
                          alphas2, variant, llvm::json::Value(true), files)))
        return signalPassFailure();
    }
    if (failed(writeFiles(loc, files)))
      return signalPassFailure();
    if (!converted) {
      // No stale converted form of an earlier save beside this adapter.
      for (StringRef file :
           {"adapter_config.json", "adapter_model.safetensors"}) {
        SmallString<256> path(convertedDir);
        llvm::sys::path::append(path, file);
        (void)llvm::sys::fs::remove(path);
      }
      (void)llvm::sys::fs::remove(convertedDir); // only when empty
    }
    markAllAnalysesPreserved();
  }
};

} // namespace
