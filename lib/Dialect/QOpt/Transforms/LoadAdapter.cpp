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
  auto fail = [&](const Twine &why) {
    return llvm::createStringError(path + ": " + why);
  };
  StringRef bytes = buffer.getBuffer();
  if (bytes.size() < 8)
    return fail("too short for a safetensors file");
  uint64_t headerSize;
  std::memcpy(&headerSize, bytes.data(), 8); // little-endian hosts only
  if (headerSize > bytes.size() - 8)
    return fail("the header length exceeds the file");
  llvm::Expected<llvm::json::Value> header =
      llvm::json::parse(bytes.substr(8, headerSize));
  if (!header)
    return fail("the header is not JSON: " +
                llvm::toString(header.takeError()));
  auto *entries = header->getAsObject();
  if (!entries)
    return fail("the header is not a JSON object");
  StringRef data = bytes.substr(8 + headerSize);
  llvm::StringMap<SafetensorsTensor> tensors;
  for (const auto &[name, value] : *entries) {
    if (name == "__metadata__")
      continue;
    auto bad = [&](const Twine &why) {
      return fail("tensor '" + llvm::StringRef(name) + "': " + why);
    };
    auto *o = value.getAsObject();
    if (!o)
      return bad("not an object");
    std::optional<StringRef> dtype = o->getString("dtype");
    const llvm::json::Array *shape = o->getArray("shape");
    const llvm::json::Array *offsets = o->getArray("data_offsets");
    if (!dtype || !shape || !offsets || offsets->size() != 2)
      return bad("needs dtype, shape and data_offsets");
    SafetensorsTensor t;
    if (*dtype == "F32")
      t.kind = dense::FloatKind::F32;
    else if (*dtype == "F16")
      t.kind = dense::FloatKind::F16;
    else if (*dtype == "BF16")
      t.kind = dense::FloatKind::BF16;
    else if (*dtype == "F64")
      t.kind = dense::FloatKind::F64;
    else
      return bad("dtype " + *dtype + " is not a float type");
    uint64_t count = 1;
    for (const llvm::json::Value &d : *shape) {
      std::optional<int64_t> size = d.getAsInteger();
      if (!size || *size < 0 || (*size && count > (uint64_t(1) << 40) / *size))
        return bad("bad shape");
      t.shape.push_back(*size);
      count *= *size;
    }
    std::optional<int64_t> begin = (*offsets)[0].getAsInteger(),
                           end = (*offsets)[1].getAsInteger();
    if (!begin || !end || *begin < 0 || *end < *begin ||
        uint64_t(*end) > data.size())
      return bad("data_offsets lie outside the file");
    if (uint64_t(*end - *begin) != count * dense::floatKindBytes(t.kind))
      return bad("data_offsets do not match its shape and dtype");
    t.data = data.data() + *begin;
    t.count = count;
    tensors[name] = t;
  }
  return tensors;
}

std::string mlir::qopt::encodeF32Safetensors(ArrayRef<SafetensorsF32> tensors) {
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
  header["__metadata__"] = llvm::json::Object{{"format", "pt"}};
  std::string text = llvm::formatv("{0}", llvm::json::Value(std::move(header)));
  text.append((8 - text.size() % 8) % 8, ' ');
  std::string file(8, '\0');
  uint64_t size = text.size();
  std::memcpy(file.data(), &size, 8); // little-endian hosts only
  return file + text + data;
}

namespace {

using Tensor = SafetensorsTensor;

/// The parts of one module's adapter in the file.
struct ModuleAdapter {
  const Tensor *a = nullptr, *b = nullptr, *magnitude = nullptr;
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

    // base_model.model.<module>.lora_A.weight etc., by module.
    llvm::StringMap<ModuleAdapter> adapters;
    SmallVector<std::string> order;
    for (const auto &entry : *tensors) {
      StringRef key = entry.getKey();
      StringRef path = key;
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
            {".lora_magnitude_vector", 2}})
        if (path.ends_with(suffix)) {
          moduleName = path.drop_back(suffix.size());
          m = &adapters[moduleName];
          slot = which == 0 ? &m->a : which == 1 ? &m->b : &m->magnitude;
        }
      if (!slot)
        return error() << "tensor '" << key
                       << "' is not supported (LoRA on linear layers: "
                          "lora_A, lora_B, lora_magnitude_vector)",
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
    llvm::Expected<LoraTargets> targets =
        LoraTargets::create(config->selection, layers);
    if (!targets)
      return error() << llvm::toString(targets.takeError()),
             signalPassFailure();
    // The config's selection and the file's modules must agree.
    for (const std::string &name : order)
      if (!byName.count(name))
        return error() << "the adapter has weights for module '" << name
                       << "', which is not a linear layer of the model "
                          "(qoptc --list-modules shows them)",
               signalPassFailure();
    for (const LinearLayer &layer : layers)
      if (targets->matches(layer.name) && !adapters.count(layer.name))
        return error() << "adapter_config.json targets module '" << layer.name
                       << "' but adapter_model.safetensors has no weights "
                          "for it",
               signalPassFailure();

    SymbolTable symbols(module);
    WeightReader reader(modelDir);
    for (const std::string &name : order)
      if (failed(load(*byName[name], adapters[name], *config, *targets, symbols,
                      reader)))
        return signalPassFailure();
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
    auto shapeStr = [](ArrayRef<int64_t> s) {
      return llvm::join(
          llvm::map_range(s, [](int64_t d) { return std::to_string(d); }), "x");
    };
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
    OpBuilder builder(linear);
    auto param = [&](const Tensor &t, StringRef suffix) -> Value {
      auto type = RankedTensorType::get(t.shape, element);
      ParamOp p = createParam(
          symbols, linear.getLoc(), layer.name + suffix.str(), type, trainable,
          [&](MutableArrayRef<char> bytes) {
            std::vector<float> values(t.count);
            dense::decodeFloats(t.kind, t.data, t.count, values.data());
            dense::encodeFloats(*kind, values.data(), t.count, bytes.data());
          });
      if (!p)
        return {};
      return LoadParamOp::create(builder, linear.getLoc(), type,
                                 p.getSymName());
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

/// Appends `dir`'s adapter_model.safetensors (the f32 `tensors`) and
/// adapter_config.json (LoraConfig's fields for the modules `names` with
/// ranks, alphas and the variant of `first`) to `files`, creating `dir`.
LogicalResult
addFiles(StringRef dir, const std::map<std::string, dense::Matrix> &tensors,
         ArrayRef<std::string> names, ArrayRef<int64_t> ranks,
         ArrayRef<double> alphas, LoRAOp first, llvm::json::Value init,
         SmallVectorImpl<std::pair<std::string, std::string>> &files) {
  // LoftQ's config travels with its init.
  llvm::json::Object loftq;
  if (auto iter = first->getAttrOfType<IntegerAttr>("qopt.loftq_iter");
      iter && init.getAsString() == std::optional<StringRef>("loftq"))
    loftq =
        llvm::json::Object{{"loftq_bits", 4}, {"loftq_iter", iter.getInt()}};
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
  llvm::json::Object config{
      {"peft_type", "LORA"},
      {"r", r},
      {"lora_alpha", alpha},
      {"target_modules", std::move(targets)},
      {"rank_pattern", std::move(rankPattern)},
      {"alpha_pattern", std::move(alphaPattern)},
      {"use_rslora", first.getScaling() == LoRAScaling::RsLoRA},
      {"use_dora", bool(first.getMagnitude())},
      {"lora_dropout", first.getDropout().convertToDouble()},
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
    return emitError(first.getLoc()) << "qopt-save-adapter: cannot create "
                                     << dir << ": " << ec.message();
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
    if (loras.empty())
      return fail(nullptr) << "the model has no LoRA adapter to save",
             signalPassFailure();
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
    StringRef init = residualInit(loras.front());
    SmallVector<std::pair<std::string, std::string>> files;
    if (failed(addFiles(adapter, tensors, names, ranks, alphas, loras.front(),
                        init.empty() ? llvm::json::Value(true)
                                     : llvm::json::Value(init),
                        files)))
      return signalPassFailure();
    // PiSSA / OLoRA have a converted form (LoftQ's base is quantized); it
    // needs the initial factors.
    bool converted = !init.empty() && init != "loftq";
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
                          alphas2, loras.front(), llvm::json::Value(true),
                          files)))
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
