//===- LoadWeights.cpp - Replace the model's weights by a checkpoint's ----===//
//
// `qoptc model.onnx --weights model.safetensors`: the weights of a
// safetensors checkpoint (what transformers' save_pretrained writes) take
// the place of the exported ones. bitsandbytes' 4-bit layers (QLoRA
// checkpoints) stay quantized: their codes are repacked into qopt's layout,
// never re-quantized.
//
//===----------------------------------------------------------------------===//

#include "qopt/Dialect/QOpt/Transforms/LoraTargets.h"
#include "qopt/Dialect/QOpt/Transforms/Passes.h"
#include "qopt/Dialect/QOpt/Transforms/Weights.h"
#include "qopt/Support/QuantFormats.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/Dominance.h"
#include "llvm/ADT/StringMap.h"
#include "llvm/Support/JSON.h"
#include "llvm/Support/MathExtras.h"
#include "llvm/Support/MemoryBuffer.h"

#include <cstring>
#include <map>
#include <set>

namespace mlir::qopt {
#define GEN_PASS_DEF_QOPTLOADWEIGHTSPASS
#include "qopt/Dialect/QOpt/Transforms/Passes.h.inc"
} // namespace mlir::qopt

using namespace mlir;
using namespace mlir::qopt;
namespace dense = ::qopt::dense;

namespace {

using RawTensor = SafetensorsEntry;

std::string shapeStr(ArrayRef<int64_t> shape) {
  return llvm::join(
      llvm::map_range(shape, [](int64_t d) { return std::to_string(d); }), "x");
}

/// The f32 values of a float tensor.
std::vector<float> floatsOf(const RawTensor &t) {
  std::vector<float> values(t.count);
  dense::decodeFloats(*safetensorsFloatKind(t.dtype), t.bytes.data(), t.count,
                      values.data());
  return values;
}

/// The key of `names` that is `name` or, failing that, the only one ending
/// in "." + `name` (a model exported through a wrapper module prefixes the
/// checkpoint's paths); nullopt when none, `ambiguous` set when several.
template <typename Map>
std::optional<std::string> resolveName(const Map &names, StringRef name,
                                       bool &ambiguous) {
  ambiguous = false;
  if (names.count(name))
    return name.str();
  std::optional<std::string> found;
  std::string tail = "." + name.str();
  for (const auto &entry : names) {
    StringRef key = entry.getKey();
    if (!key.ends_with(tail))
      continue;
    if (found) {
      ambiguous = true;
      return std::nullopt;
    }
    found = key.str();
  }
  return found;
}

struct QOptLoadWeightsPass
    : mlir::qopt::impl::QOptLoadWeightsPassBase<QOptLoadWeightsPass> {
  using Base::Base;

  ModuleOp module;
  std::string path;
  /// The module's dominance, for layers that share one quantized weight.
  DominanceInfo *dominance = nullptr;

  InFlightDiagnostic error() {
    return emitError(module.getLoc()) << path << ": ";
  }

  void runOnOperation() override {
    module = getOperation();
    path = weights;
    if (path.empty())
      return;
    auto buffer = llvm::MemoryBuffer::getFile(path, /*IsText=*/false,
                                              /*RequiresNullTerminator=*/false);
    if (!buffer) {
      emitError(module.getLoc()) << "cannot read the weights file '" << path
                                 << "': " << buffer.getError().message();
      return signalPassFailure();
    }
    auto tensors = readSafetensors((*buffer)->getBuffer(), path);
    if (!tensors) {
      emitError(module.getLoc()) << llvm::toString(tensors.takeError());
      return signalPassFailure();
    }
    if (failed(load(*tensors)))
      signalPassFailure();
  }

  /// The operand of `layer` that `part` ("weight" / "bias") names.
  static OpOperand *operandOf(Operation *layer, StringRef part) {
    auto pick = [&](auto op) -> OpOperand * {
      if (part == "weight")
        return &op.getWeightMutable();
      if (op.getBias())
        return &op.getBiasMutable()[0];
      return nullptr;
    };
    if (auto linear = dyn_cast<LinearOp>(layer))
      return pick(linear);
    if (auto lora = dyn_cast<LoRAOp>(layer))
      return pick(lora);
    return nullptr;
  }

  LogicalResult load(const std::map<std::string, RawTensor> &tensors) {
    llvm::StringMap<SmallVector<Operation *>> layers;
    for (const LinearLayer &l : collectLinearLayers(module))
      if (!l.name.empty())
        layers[l.name].push_back(l.op);
    SymbolTable symbols(module);
    DominanceInfo dom(module);
    dominance = &dom;
    llvm::StringMap<ParamOp> params;
    for (auto p : module.getOps<ParamOp>())
      params[p.getSymName()] = p;
    llvm::StringSet<> before = paramNames(module);
    std::set<std::string> used;
    SmallVector<Operation *> maybeDead;
    auto replace = [&](OpOperand &operand, Value v) {
      if (Operation *old = operand.get().getDefiningOp())
        maybeDead.push_back(old);
      operand.set(v);
    };

    // bitsandbytes' 4-bit layers, found by their quant_state entries.
    static constexpr StringLiteral kState =
        ".weight.quant_state.bitsandbytes__";
    for (const auto &[name, t] : tensors) {
      if (StringRef(name).ends_with(".SCB")) {
        if (failed(loadBnbInt8(name.substr(0, name.size() - 4), t, tensors,
                               layers, symbols, used, replace)))
          return failure();
        used.insert(name);
        continue;
      }
      if (StringRef(name).ends_with(".weight_format"))
        continue; // read with its layer's SCB
      size_t at = name.find(".quant_state.");
      if (at == std::string::npos)
        continue;
      size_t bnb = name.find(kState.str());
      if (bnb == std::string::npos || bnb + kState.size() + 3 != name.size() ||
          !(StringRef(name).ends_with("nf4") ||
            StringRef(name).ends_with("fp4")))
        return error() << "'" << name
                       << "': only bitsandbytes' 4-bit layers (quant_state."
                          "bitsandbytes__nf4 / __fp4) are supported";
      std::string module = name.substr(0, bnb);
      if (failed(loadBnb4Bit(module, StringRef(name).take_back(3), t, tensors,
                             layers, symbols, used, replace)))
        return failure();
      used.insert(name);
    }

    // Float tensors: a linear layer's weight or bias by its module path,
    // else the parameter of that name.
    SmallVector<std::string> unused;
    for (const auto &[name, t] : tensors) {
      if (used.count(name))
        continue;
      StringRef n(name);
      for (StringRef part : {"weight", "absmax", "quant_map", "nested_absmax",
                             "nested_quant_map"})
        if (n.ends_with(".weight." + part.str()) && part != "weight")
          return error() << "'" << name
                         << "' belongs to a quantized weight without its "
                            "quant_state entry";
      auto [owner, part] = n.rsplit('.');
      bool ambiguous;
      std::optional<std::string> layerName =
          resolveName(layers, owner, ambiguous);
      if (ambiguous)
        return error() << "'" << name << "': several linear layers' paths "
                       << "end in '" << owner << "'";
      auto found = layerName ? layers.find(*layerName) : layers.end();
      bool layerPart =
          found != layers.end() && (part == "weight" || part == "bias");
      std::optional<std::string> paramName;
      if (!layerPart) {
        paramName = resolveName(params, name, ambiguous);
        if (ambiguous)
          return error() << "'" << name << "': several parameters' names "
                         << "end in '" << name << "'";
      }
      if (!safetensorsFloatKind(t.dtype)) {
        // A tensor that would replace a weight but cannot (FP8, GPTQ's
        // packed int32, …) must not leave the exported weight in place.
        if (layerPart || paramName)
          return error() << "'" << name << "' is " << t.dtype
                         << ": only float tensors and bitsandbytes' 4-bit "
                            "layers replace the model's weights";
        unused.push_back(name);
        continue;
      }
      if (layerPart) {
        for (Operation *layer : found->second) {
          OpOperand *operand = operandOf(layer, part);
          if (!operand) {
            unused.push_back(name);
            break;
          }
          Value v = floatParam(name, t, operand->get(), layer, symbols);
          if (!v)
            return failure();
          replace(*operand, v);
        }
        continue;
      }
      if (!paramName) {
        unused.push_back(name);
        continue;
      }
      ParamOp param = params[*paramName];
      if (param.getTensorType().getShape() != ArrayRef<int64_t>(t.shape))
        return error() << "'" << name << "' is " << shapeStr(t.shape)
                       << ", the model's parameter "
                       << shapeStr(param.getTensorType().getShape());
      if (!getFloatKind(param.getTensorType().getElementType()))
        return error() << "'" << name
                       << "' is a float tensor, the model's parameter is "
                       << param.getTensorType();
      // The new data under the same name: the reads need no change.
      RankedTensorType type = param.getTensorType();
      bool trainable = param.getTrainable(), state = param.getState();
      Location loc = param.getLoc();
      params.erase(*paramName);
      symbols.erase(param);
      ParamOp fresh = createFloatParam(symbols, loc, *paramName, type,
                                       floatsOf(t), trainable);
      if (!fresh)
        return failure();
      if (state)
        fresh.setStateAttr(UnitAttr::get(&getContext()));
    }
    if (!unused.empty()) {
      InFlightDiagnostic w = emitWarning(module.getLoc())
                             << path << ": " << unused.size()
                             << " tensor(s) match no linear layer or "
                                "parameter of the model and are not used: ";
      for (size_t i = 0; i < unused.size() && i < 8; ++i)
        w << (i ? ", " : "") << "'" << unused[i] << "'";
      if (unused.size() > 8)
        w << ", …";
    }
    eraseDeadOps(maybeDead, symbols);
    // Parameters created beside an exported one of the same name took a
    // suffix; the name is theirs once the old one is gone.
    restoreParamNames(module, before, symbols);
    return success();
  }

  /// A new frozen parameter `name` holding float tensor `t` in the type of
  /// `old` (the operand it replaces), read before `user`.
  Value floatParam(StringRef name, const RawTensor &t, Value old,
                   Operation *user, SymbolTable &symbols) {
    auto type = dyn_cast<RankedTensorType>(old.getType());
    if (!type || !getFloatKind(type.getElementType())) {
      error() << "'" << name << "' replaces a quantized weight with a float "
              << "one";
      return {};
    }
    if (type.getShape() != ArrayRef<int64_t>(t.shape)) {
      error() << "'" << name << "' is " << shapeStr(t.shape)
              << ", the model's layer has " << shapeStr(type.getShape());
      return {};
    }
    ParamOp p =
        createFloatParam(symbols, user->getLoc(), name, type, floatsOf(t));
    if (!p)
      return {};
    OpBuilder b(user);
    return LoadParamOp::create(b, user->getLoc(), p.getTensorType(),
                               p.getSymName());
  }

  /// One bitsandbytes Linear4bit weight of `moduleName`, quant type `kind`
  /// ("nf4" / "fp4"), described by its quant_state entry `state`.
  /// The linear layers with module path `moduleName` (a wrapper's prefix
  /// allowed); an error through `bad` when none or several paths match.
  FailureOr<ArrayRef<Operation *>>
  findLayer(StringRef moduleName,
            llvm::StringMap<SmallVector<Operation *>> &layers,
            function_ref<InFlightDiagnostic(const Twine &)> bad) {
    bool ambiguous;
    std::optional<std::string> layerName =
        resolveName(layers, moduleName, ambiguous);
    if (ambiguous)
      return bad("several linear layers' paths end in '" + moduleName + "'");
    if (!layerName)
      return bad("'" + moduleName +
                 "' is not a linear layer of the model (qoptc "
                 "--list-modules lists them)");
    return ArrayRef<Operation *>(layers.find(*layerName)->second);
  }

  /// bitsandbytes' LLM.int8 layer `moduleName` (Linear8bitLt saved by
  /// transformers): `weight` int8 N×K, `SCB` the absmax of each row,
  /// `weight_format` 0 (row-major). W = weight · SCB / 127, as bitsandbytes
  /// dequantizes it: an int8 per-channel weight with scale SCB / 127.
  LogicalResult loadBnbInt8(const std::string &moduleName, const RawTensor &scb,
                            const std::map<std::string, RawTensor> &tensors,
                            llvm::StringMap<SmallVector<Operation *>> &layers,
                            SymbolTable &symbols, std::set<std::string> &used,
                            function_ref<void(OpOperand &, Value)> replace) {
    std::string prefix = moduleName + ".weight";
    auto bad = [&](const Twine &why) {
      return error() << "'" << prefix << "' (bitsandbytes LLM.int8): " << why;
    };
    auto weightIt = tensors.find(prefix);
    if (weightIt == tensors.end())
      return bad("needs the int8 weight beside its SCB");
    const RawTensor &weight = weightIt->second;
    used.insert(prefix);
    if (auto format = tensors.find(moduleName + ".weight_format");
        format != tensors.end()) {
      used.insert(format->first);
      const RawTensor &f = format->second;
      if ((f.dtype != "U8" && f.dtype != "I8") || f.count != 1 ||
          f.bytes[0] != 0)
        return bad("weight_format is not 0 (row-major): bitsandbytes' tiled "
                   "GPU layouts (col32, col_turing, col_ampere) are not read");
    }
    if (weight.dtype != "I8" || weight.shape.size() != 2)
      return bad("the weight must be a 2-D I8 tensor, got " + weight.dtype +
                 " " + shapeStr(weight.shape));
    int64_t n = weight.shape[0], k = weight.shape[1];
    if (!safetensorsFloatKind(scb.dtype) || scb.count != n)
      return bad("SCB must hold " + Twine(n) + " floats, one per row");
    FailureOr<ArrayRef<Operation *>> ops = findLayer(moduleName, layers, bad);
    if (failed(ops))
      return failure();
    MLIRContext *ctx = &getContext();
    QuantizedWeight w;
    w.format = IntFormatAttr::get(ctx, 8, /*isSigned=*/true,
                                  /*zeroPoint=*/false);
    w.granularity = PerChannelAttr::get(ctx, 0);
    w.n = n;
    w.k = k;
    w.scaleShape = {n};
    const auto *codes = reinterpret_cast<const uint8_t *>(weight.bytes.data());
    w.codes.assign(codes, codes + n * k);
    // bitsandbytes multiplies by this f32 constant (1/127) to dequantize.
    const float inv127 = 7.874015718698502e-3f;
    for (float absmax : floatsOf(scb))
      w.scales.push_back(absmax * inv127);
    return attach(prefix, w, *ops, symbols, replace, bad);
  }

  LogicalResult loadBnb4Bit(const std::string &moduleName, StringRef kind,
                            const RawTensor &state,
                            const std::map<std::string, RawTensor> &tensors,
                            llvm::StringMap<SmallVector<Operation *>> &layers,
                            SymbolTable &symbols, std::set<std::string> &used,
                            function_ref<void(OpOperand &, Value)> replace) {
    std::string prefix = moduleName + ".weight";
    auto bad = [&](const Twine &why) {
      return error() << "'" << prefix << "' (bitsandbytes " << kind
                     << "): " << why;
    };
    auto part = [&](StringRef suffix) -> const RawTensor * {
      auto it = tensors.find(prefix + suffix.str());
      if (it == tensors.end())
        return nullptr;
      used.insert(it->first);
      return &it->second;
    };
    // The quant_state entry: its JSON as bytes.
    if (state.dtype != "U8" && state.dtype != "I8")
      return bad("its quant_state entry is not a byte tensor");
    llvm::Expected<llvm::json::Value> json = llvm::json::parse(state.bytes);
    auto *o = json ? json->getAsObject() : nullptr;
    if (!o) {
      if (!json)
        llvm::consumeError(json.takeError());
      return bad("its quant_state entry is not a JSON object");
    }
    std::optional<StringRef> quantType = o->getString("quant_type");
    std::optional<int64_t> block = o->getInteger("blocksize");
    const llvm::json::Array *shapeJson = o->getArray("shape");
    if (!quantType || *quantType != kind || !block || *block <= 0 || !shapeJson)
      return bad("its quant_state needs quant_type \"" + kind +
                 "\", a positive blocksize and the shape");
    SmallVector<int64_t> shape;
    int64_t count = 1;
    for (const llvm::json::Value &d : *shapeJson) {
      std::optional<int64_t> size = d.getAsInteger();
      if (!size || *size <= 0 || count > (int64_t(1) << 40) / *size)
        return bad("its quant_state has a bad shape");
      shape.push_back(*size);
      count *= *size;
    }
    if (shape.size() != 2)
      return bad("a weight of shape " + shapeStr(shape) +
                 " is not a linear layer's");
    const RawTensor *weight = part(""), *absmax = part(".absmax"),
                    *quantMap = part(".quant_map");
    if (!weight || !absmax || !quantMap)
      return bad("needs weight, weight.absmax and weight.quant_map");
    int64_t blocks = llvm::divideCeil(count, *block);
    if (weight->dtype != "U8" || weight->count != (count + 1) / 2)
      return bad("the packed weight must be " + Twine((count + 1) / 2) +
                 " bytes (U8) for " + shapeStr(shape) + ", got " +
                 Twine(weight->count) + " " + weight->dtype);
    // The code map must be bitsandbytes' own.
    ArrayRef<float> table = kind == "nf4"
                                ? ArrayRef<float>(::qopt::nf4CodeTable())
                                : ArrayRef<float>(::qopt::fp4CodeTable());
    if (!safetensorsFloatKind(quantMap->dtype) || quantMap->count != 16 ||
        floatsOf(*quantMap) != std::vector<float>(table.begin(), table.end()))
      return bad("quant_map is not bitsandbytes' " + kind + " code");
    FailureOr<ArrayRef<Operation *>> ops = findLayer(moduleName, layers, bad);
    if (failed(ops))
      return failure();
    int64_t n = shape[0], k = shape[1];
    MLIRContext *ctx = &getContext();
    QuantizedWeight w;
    w.format = kind == "nf4"
                   ? QuantFormatAttrInterface(NF4FormatAttr::get(ctx))
                   : QuantFormatAttrInterface(BnbFP4FormatAttr::get(ctx));
    w.granularity = PerBlockAttr::get(ctx, *block);
    w.n = n;
    w.k = k;
    w.scaleShape = {blocks};
    w.scaleSuffix = ".absmax";
    // bitsandbytes packs the flattened tensor two codes a byte, the first in
    // the high nibble.
    const auto *packed =
        reinterpret_cast<const uint8_t *>(weight->bytes.data());
    w.codes.resize(count);
    for (int64_t i = 0; i < count; ++i)
      w.codes[i] = i % 2 ? packed[i / 2] & 15 : packed[i / 2] >> 4;
    // Scales: f32 absmax, or QLoRA's double quantization (the absmax minus
    // their mean as 8-bit dynamic codes, per nested block).
    const RawTensor *nestedAbsmax = part(".nested_absmax"),
                    *nestedMap = part(".nested_quant_map");
    if (nestedAbsmax || nestedMap) {
      std::optional<int64_t> nestedBlock = o->getInteger("nested_blocksize");
      std::optional<double> offset = o->getNumber("nested_offset");
      if (!nestedAbsmax || !nestedMap || !nestedBlock || *nestedBlock <= 0 ||
          !offset)
        return bad("double quantization needs nested_absmax, "
                   "nested_quant_map and the quant_state's "
                   "nested_blocksize and nested_offset");
      const auto &dynamic = ::qopt::dynamicCodeTable();
      if (!safetensorsFloatKind(nestedMap->dtype) || nestedMap->count != 256 ||
          floatsOf(*nestedMap) !=
              std::vector<float>(dynamic.begin(), dynamic.end()))
        return bad("nested_quant_map is not bitsandbytes' 8-bit dynamic "
                   "code");
      int64_t nestedBlocks = llvm::divideCeil(blocks, *nestedBlock);
      if (absmax->dtype != "U8" || absmax->count != blocks)
        return bad("absmax must be " + Twine(blocks) +
                   " U8 codes with double quantization");
      if (!safetensorsFloatKind(nestedAbsmax->dtype) ||
          nestedAbsmax->count != nestedBlocks)
        return bad("nested_absmax must be " + Twine(nestedBlocks) + " floats");
      w.doubleQuantized = true;
      const auto *codes =
          reinterpret_cast<const uint8_t *>(absmax->bytes.data());
      w.scaleCodes.assign(codes, codes + blocks);
      w.nestedAbsmax = floatsOf(*nestedAbsmax);
      w.offset = static_cast<float>(*offset);
      w.nestedBlock = *nestedBlock;
    } else {
      if (!safetensorsFloatKind(absmax->dtype) || absmax->count != blocks)
        return bad("absmax must be " + Twine(blocks) + " floats");
      w.scales = floatsOf(*absmax);
    }
    return attach(prefix, w, *ops, symbols, replace, bad);
  }

  /// Gives the linear layers `ops` (one module path) the quantized weight
  /// `w`, stored under `prefix`.
  LogicalResult attach(const std::string &prefix, const QuantizedWeight &w,
                       ArrayRef<Operation *> ops, SymbolTable &symbols,
                       function_ref<void(OpOperand &, Value)> replace,
                       function_ref<InFlightDiagnostic(const Twine &)> bad) {
    int64_t n = w.n, k = w.k;
    SmallVector<int64_t> shape = {n, k};
    Value q = createQuantizedWeight(symbols, ops.front(), prefix, w);
    if (!q)
      return failure();
    for (Operation *layer : ops) {
      OpOperand *operand = operandOf(layer, "weight");
      auto old = dyn_cast<RankedTensorType>(operand->get().getType());
      if (!old || old.getShape() != ArrayRef<int64_t>{n, k})
        return bad("the layer's weight is " +
                   (old ? shapeStr(old.getShape()) : std::string("quantized")) +
                   ", the checkpoint's " + shapeStr(shape));
      if (!dominance->properlyDominates(q, layer))
        return bad("the layers with this module path are in different "
                   "regions: one quantized weight cannot reach them all");
      replace(*operand, q);
    }
    return success();
  }
};

} // namespace
