//===- ONNXExport.cpp - The rewritten model as standard ONNX --------------===//
//
// See ONNXExport.h. Each linear layer becomes, reading the original graph's
// value x:
//
//   x' = the ops passes put before the layer (online Hadamard rotations as
//        constant MatMuls, smoothing as Div, activation quantizers as
//        QuantizeLinear / DequantizeLinear or their arithmetic)
//   y  = x' · Wᵀ   (MatMul of a float weight, DequantizeLinear of integer
//                   codes, MatMulNBits, or a codebook Gather for NF4 / FP4 /
//                   FP8 codes)
//      + scale · (x' · Aᵀ) · Bᵀ            (LoRA; DoRA rescales the rows)
//      + (x' · Aᵀ) · Bᵀ                   (SVDQuant's low-rank branch)
//      + b
//
// named as the layer's output was; the nodes that computed it before fall
// away with every other node and initializer nothing reads any more.
//
//===----------------------------------------------------------------------===//

#include "qopt/Export/ONNXExport.h"

#include "ONNXProtoUtils.h"
#include "qopt/Dialect/ONNX/IR/ONNX.h"
#include "qopt/Dialect/QOpt/IR/QOpt.h"
#include "qopt/Dialect/QOpt/Transforms/QuantScales.h"
#include "qopt/Dialect/QOpt/Transforms/Weights.h"
#include "qopt/Support/Hadamard.h"
#include "qopt/Support/QuantFormats.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/SymbolTable.h"
#include "onnx/onnx_pb.h"
#include "llvm/ADT/DenseMap.h"
#include "llvm/ADT/SmallPtrSet.h"
#include "llvm/ADT/StringSet.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/Path.h"
#include "llvm/Support/raw_ostream.h"

#include <cmath>
#include <cstring>
#include <queue>

using namespace mlir;
using namespace mlir::qopt;
using namespace ::qopt::onnx_import;
namespace dense = ::qopt::dense;

//===----------------------------------------------------------------------===//
// Recording the raised graph
//===----------------------------------------------------------------------===//

static std::string rootName(Operation *op) {
  if (auto loc = dyn_cast<NameLoc>(op->getLoc()))
    return loc.getName().str();
  return "";
}

static ONNXValueRef refOf(Value v) {
  while (auto cast = v.getDefiningOp<tensor::CastOp>())
    v = cast.getSource();
  ONNXValueRef ref;
  if (auto arg = dyn_cast<BlockArgument>(v)) {
    auto func = dyn_cast<func::FuncOp>(arg.getOwner()->getParentOp());
    if (!func)
      return ref;
    if (auto name =
            func.getArgAttrOfType<StringAttr>(arg.getArgNumber(), "qopt.name"))
      ref = {ONNXValueRef::GraphInput, name.str(), 0};
    return ref;
  }
  Operation *op = v.getDefiningOp();
  if (auto load = dyn_cast<LoadParamOp>(op))
    return {ONNXValueRef::Param, load.getName().str(), 0};
  std::string node = rootName(op);
  if (node.empty())
    return ref;
  unsigned index =
      isa<ONNXNodeOp>(op) ? cast<OpResult>(v).getResultNumber() : 0;
  return {ONNXValueRef::NodeOutput, node, index};
}

/// The parameter each operand of `op` reads ("" for other operands).
static std::vector<std::string> paramOperands(Operation *op) {
  std::vector<std::string> names;
  for (Value operand : op->getOperands()) {
    auto load = operand.getDefiningOp<LoadParamOp>();
    names.push_back(load ? load.getName().str() : "");
  }
  return names;
}

static std::string layerKey(Operation *op, StringAttr module) {
  if (module && !module.getValue().empty())
    return module.str();
  return "@" + rootName(op);
}

ONNXExportRecord mlir::qopt::recordONNXExport(ModuleOp raised) {
  ONNXExportRecord record;
  for (auto param : raised.getOps<ParamOp>())
    record.params[param.getSymName()] = param.getInitialValueAttr();
  raised.walk([&](Operation *op) {
    if (auto linear = dyn_cast<LinearOp>(op)) {
      std::string key = layerKey(op, linear.getModuleAttr());
      ONNXExportRecord::Layer layer{refOf(linear.getInput()), rootName(op)};
      auto [it, fresh] = record.layers.try_emplace(key, layer);
      if (!fresh)
        it->second.ambiguous = true;
      return;
    }
    // Linear layers that conversion raises later (after folding what
    // hid their weight): MatMul / Gemm nodes, and Adds of a MatMul's
    // output (the bias), by node.
    if (auto node = dyn_cast<ONNXNodeOp>(op)) {
      StringRef type = node.getOpType();
      Value x;
      if ((type == "MatMul" || type == "Gemm") && node.getNumOperands() >= 2)
        x = node.getOperand(0);
      if (type == "Add" && node.getNumOperands() == 2)
        for (Value operand : node.getOperands())
          if (auto mm = operand.getDefiningOp<ONNXNodeOp>();
              mm && mm.getOpType() == "MatMul" && mm.getNumOperands() == 2)
            x = mm.getOperand(0);
      if (x)
        record.layers.try_emplace(
            "@" + rootName(op),
            ONNXExportRecord::Layer{refOf(x), rootName(op)});
    }
    // Norms and embeddings raised here, and ONNX nodes that conversion
    // turns into them later (LayerNormalization), with their operands in
    // the node's input order.
    if (isa<RMSNormOp, LayerNormOp, EmbeddingOp, ONNXNodeOp>(op))
      record.paramsRead["@" + rootName(op)] = paramOperands(op);
    // Embeddings, for adapters on them: the ids.
    if (auto embedding = dyn_cast<EmbeddingOp>(op))
      record.layers.try_emplace(
          "@" + rootName(op),
          ONNXExportRecord::Layer{refOf(embedding.getIds()), rootName(op)});
  });
  return record;
}

//===----------------------------------------------------------------------===//
// The exporter
//===----------------------------------------------------------------------===//

namespace {

/// Packs 4-bit values two per byte, the first in the low nibble (ONNX int4,
/// MatMulNBits).
static std::vector<uint8_t> packNibbles(const std::vector<uint8_t> &v) {
  std::vector<uint8_t> out((v.size() + 1) / 2, 0);
  for (size_t i = 0; i < v.size(); ++i)
    out[i / 2] |= uint8_t((v[i] & 0xF) << (i % 2 ? 4 : 0));
  return out;
}

template <typename T> static std::string bytesOf(const std::vector<T> &v) {
  return std::string(reinterpret_cast<const char *>(v.data()),
                     v.size() * sizeof(T));
}

class Exporter {
public:
  Exporter(ModuleOp module, const ONNXExportRecord &record,
           const ONNXExportOptions &options, ::onnx::ModelProto &model)
      : module(module), record(record), options(options), model(model),
        symbols(module), reader(options.modelDir) {}

  LogicalResult run();

private:
  InFlightDiagnostic error(Operation *op) {
    InFlightDiagnostic diag = emitError(op ? op->getLoc() : module.getLoc())
                              << "--export-onnx: ";
    if (auto name = op ? op->getAttrOfType<StringAttr>("module") : nullptr)
      diag << "layer '" << name.getValue() << "': ";
    return diag;
  }
  void note(const Twine &message) {
    llvm::errs() << "qoptc: --export-onnx: " << message << "\n";
  }

  // Names and graph building.
  std::string fresh(StringRef hint);
  std::string initializer(StringRef hint, int type, ArrayRef<int64_t> dims,
                          std::string bytes);
  std::string floatInit(StringRef hint, ArrayRef<int64_t> dims,
                        const std::vector<float> &values) {
    return initializer(hint, kFloat, dims, bytesOf(values));
  }
  /// Small constants (scalars, shapes), one initializer per value.
  std::string shared(StringRef hint, int type, ArrayRef<int64_t> dims,
                     std::string bytes) {
    std::string key =
        std::to_string(type) + ":" + std::to_string(dims.size()) + ":" + bytes;
    auto [it, fresh] = constants.try_emplace(key);
    if (fresh)
      it->second = initializer(hint, type, dims, std::move(bytes));
    return it->second;
  }
  std::string scalar(float v) {
    return shared("qopt.const", kFloat, {}, bytesOf(std::vector<float>{v}));
  }
  std::string int64s(ArrayRef<int64_t> v) {
    return shared("qopt.shape", kInt64, {int64_t(v.size())},
                  bytesOf(std::vector<int64_t>(v.begin(), v.end())));
  }
  ::onnx::NodeProto &node(StringRef opType, ArrayRef<std::string> inputs,
                          StringRef output, StringRef domain = "");
  std::string op(StringRef opType, ArrayRef<std::string> inputs,
                 StringRef hint) {
    std::string out = fresh(hint);
    node(opType, inputs, out);
    return out;
  }
  static void attr(::onnx::NodeProto &n, StringRef name, int64_t v) {
    auto *a = n.add_attribute();
    a->set_name(name.str());
    a->set_type(::onnx::AttributeProto::INT);
    a->set_i(v);
  }
  static void attrs(::onnx::NodeProto &n, StringRef name, ArrayRef<int64_t> v) {
    auto *a = n.add_attribute();
    a->set_name(name.str());
    a->set_type(::onnx::AttributeProto::INTS);
    for (int64_t x : v)
      a->add_ints(x);
  }
  bool needOpset(int64_t version);

  // Values of the original graph.
  FailureOr<std::string> resolve(const ONNXValueRef &ref, Operation *user);

  // Layers.
  LogicalResult exportLayer(Operation *layer, const ONNXExportRecord::Layer &);
  LogicalResult exportEmbedding(LoRAEmbeddingOp op,
                                const ONNXExportRecord::Layer &);
  LogicalResult rename(Operation *layer, StringRef rootNode, StringRef out);
  FailureOr<std::string> chain(Value x, Value &root, Operation *layer,
                               StringRef base);
  FailureOr<std::string> activationQuant(Operation *quantizer, StringRef input,
                                         StringRef hint);
  FailureOr<std::string> product(Value weight, StringRef x, Operation *layer,
                                 StringRef hint, int64_t n, int64_t k);
  FailureOr<dense::Matrix> floatValue(Value v, Operation *user, StringRef what);
  /// The float value of a weight: a float one evaluated, a quantized one
  /// expanded as the lowering does.
  FailureOr<dense::Matrix> weightValue(Value w, Operation *user,
                                       StringRef what);
  /// `m` stored transposed (K×N for a MatMul's right operand).
  std::string transposedInit(StringRef hint, const dense::Matrix &m);
  FailureOr<std::string> matmulFloat(const dense::Matrix &w, StringRef x,
                                     StringRef hint);
  FailureOr<std::string> fakeQuantWeight(Operation *quantizer, StringRef x,
                                         Operation *layer, StringRef hint);
  FailureOr<std::string> quantizedProduct(Value weight, StringRef x,
                                          Operation *layer, StringRef hint,
                                          int64_t n, int64_t k);
  std::string intProduct(StringRef x, StringRef hint, int64_t n, int64_t k,
                         IntFormatAttr format, int64_t group,
                         const std::vector<uint8_t> &codes,
                         const std::vector<float> &scales,
                         const std::vector<uint8_t> &zeroPoints);

  // Parameters and the graph's upkeep.
  bool unchanged(StringRef name);
  bool fromUnchangedParams(Value v);
  LogicalResult checkParams();
  LogicalResult updateInitializers();
  LogicalResult finish();
  LogicalResult write();

  ModuleOp module;
  const ONNXExportRecord &record;
  const ONNXExportOptions &options;
  ::onnx::ModelProto &model;
  SymbolTable symbols;
  WeightReader reader;

  llvm::StringSet<> taken;
  llvm::StringMap<int> nodeIndex; // node name → position (-1: ambiguous)
  std::vector<::onnx::NodeProto> added;
  std::vector<::onnx::TensorProto> newInits;
  /// Layer outputs by the node that computed them before.
  llvm::StringMap<std::string> replacedOutputs;
  llvm::DenseMap<Operation *, std::string> emitted;
  /// Hadamard factors' constants by order (and side), shared by layers.
  llvm::StringMap<std::string> hadamards;
  /// shared()'s constants by type, rank and bytes.
  llvm::StringMap<std::string> constants;
  llvm::SmallPtrSet<Operation *, 16> consumed;
  int64_t opset = 0;
  /// Whether no node's meaning changes up to opset 21 (GroupNormalization's
  /// scales, GridSample's modes, DFT's axis did).
  bool raisable = true;
  bool usesContrib = false;
  unsigned counter = 0;
};

} // namespace

std::string Exporter::fresh(StringRef hint) {
  std::string name;
  do
    name = (hint + "/" + Twine(counter++)).str();
  while (taken.contains(name));
  taken.insert(name);
  return name;
}

std::string Exporter::initializer(StringRef hint, int type,
                                  ArrayRef<int64_t> dims, std::string bytes) {
  ::onnx::TensorProto t;
  t.set_name(fresh(hint));
  t.set_data_type(type);
  for (int64_t d : dims)
    t.add_dims(d);
  t.set_raw_data(std::move(bytes));
  newInits.push_back(std::move(t));
  return newInits.back().name();
}

::onnx::NodeProto &Exporter::node(StringRef opType,
                                  ArrayRef<std::string> inputs,
                                  StringRef output, StringRef domain) {
  ::onnx::NodeProto n;
  n.set_op_type(opType.str());
  n.set_name(("qopt/" + output).str());
  if (!domain.empty())
    n.set_domain(domain.str());
  for (const std::string &input : inputs)
    n.add_input(input);
  n.add_output(output.str());
  added.push_back(std::move(n));
  return added.back();
}

/// Raises the model's ai.onnx opset to `version` where that keeps every
/// other node's meaning: from 18 on, the operators that matter here changed
/// only by accepting more types.
bool Exporter::needOpset(int64_t version) {
  if (opset >= version)
    return true;
  if (opset < 18 || !raisable)
    return false;
  opset = version;
  return true;
}

FailureOr<std::string> Exporter::resolve(const ONNXValueRef &ref,
                                         Operation *user) {
  switch (ref.kind) {
  case ONNXValueRef::GraphInput:
  case ONNXValueRef::Param:
    return ref.name;
  case ONNXValueRef::NodeOutput: {
    auto it = nodeIndex.find(ref.name);
    if (it == nodeIndex.end() || it->second < 0)
      return error(user) << "node '" << ref.name << "' is "
                         << (it == nodeIndex.end() ? "not in the model"
                                                   : "not uniquely named"),
             failure();
    // A layer already exported: its output keeps the original name.
    if (ref.index == 0)
      if (auto done = replacedOutputs.find(ref.name);
          done != replacedOutputs.end())
        return done->second;
    const ::onnx::NodeProto &n = model.graph().node(it->second);
    if (int(ref.index) >= n.output_size())
      return error(user) << "node '" << ref.name << "' has no output "
                         << ref.index,
             failure();
    return n.output(ref.index);
  }
  case ONNXValueRef::None:
    break;
  }
  return error(user) << "the layer's input is not a value of the ONNX graph",
         failure();
}

//===----------------------------------------------------------------------===//
// Layers
//===----------------------------------------------------------------------===//

FailureOr<dense::Matrix> Exporter::floatValue(Value v, Operation *user,
                                              StringRef what) {
  std::string why;
  SmallVector<Operation *> visited;
  FailureOr<dense::Matrix> m = reader.evaluate(v, symbols, user, why, &visited);
  if (failed(m) && !why.empty())
    error(user) << "the " << what << " " << why;
  // (RandLoRA's factors are computed by ops evaluated here.)
  consumed.insert(visited.begin(), visited.end());
  return m;
}

std::string Exporter::transposedInit(StringRef hint, const dense::Matrix &m) {
  return floatInit(hint, {m.cols, m.rows}, dense::transpose(m).data);
}

FailureOr<dense::Matrix> Exporter::weightValue(Value w, Operation *user,
                                               StringRef what) {
  if (!isa<QTensorType>(w.getType()))
    return floatValue(w, user, what);
  std::string why;
  FailureOr<dense::Matrix> m = dequantizeKnown(reader, w, symbols, user, why);
  if (failed(m) && !why.empty())
    error(user) << "the " << what << " " << why;
  return m;
}

FailureOr<std::string> Exporter::matmulFloat(const dense::Matrix &w,
                                             StringRef x, StringRef hint) {
  // Stored K×N, as exporters store MatMul weights.
  return op("MatMul", {x.str(), transposedInit((hint + ".weight").str(), w)},
            hint);
}

/// The ops passes put before a layer, from its input back to a value of
/// the original graph (`root`), emitted in order; shared ones once.
FailureOr<std::string> Exporter::chain(Value x, Value &root, Operation *layer,
                                       StringRef base) {
  SmallVector<Operation *> ops;
  Value v = x;
  while (Operation *def = v.getDefiningOp()) {
    if (isa<HadamardOp, SmoothOp, tensor::CastOp>(def) ||
        (isa<FakeQuantOp, LSQOp>(def) &&
         !isa_and_nonnull<LoadParamOp, arith::ConstantOp>(
             def->getOperand(0).getDefiningOp()))) {
      ops.push_back(def);
      v = def->getOperand(0);
      continue;
    }
    break;
  }
  root = v;
  std::string cur = base.str();
  for (Operation *def : llvm::reverse(ops)) {
    consumed.insert(def);
    auto done = emitted.find(def);
    if (done != emitted.end()) {
      cur = done->second;
      continue;
    }
    std::string hint = "qopt/" + rootName(layer);
    auto type = cast<RankedTensorType>(def->getResult(0).getType());
    int64_t rank = type.getRank();
    int64_t last = type.getDimSize(rank - 1);
    if (auto cast = dyn_cast<tensor::CastOp>(def)) {
      (void)cast;
    } else if (auto h = dyn_cast<HadamardOp>(def)) {
      int64_t axis = int64_t(h.getAxis());
      if (axis < 0)
        axis += rank;
      if (axis != rank - 1 || ShapedType::isDynamic(last))
        return error(def) << "a Hadamard transform over an axis other than "
                             "the last static one has no export",
               failure();
      int64_t n = h.getBlock() ? *h.getBlock() : last;
      ::qopt::hadamard::KroneckerFactors kron =
          ::qopt::hadamard::kroneckerFactors(n);
      if (!kron.base || last % n)
        return error(def) << "no Hadamard matrix of order " << n, failure();
      if (h.getSigns()) {
        FailureOr<dense::Matrix> s = floatValue(h.getSigns(), def, "signs");
        if (failed(s))
          return failure();
        if (int64_t(s->data.size()) != n)
          return error(def) << "the signs have " << s->data.size()
                            << " elements, not " << n,
                 failure();
        std::vector<float> signs = s->data;
        if (n != last) // one sign vector per block
          for (int64_t i = 1; i < last / n; ++i)
            signs.insert(signs.end(), s->data.begin(), s->data.end());
        cur = op("Mul", {cur, floatInit(hint + ".signs", {last}, signs)}, hint);
      }
      // H_n = H_m ⊗ H_p1 ⊗ H_p2 (p1 · p2 = 2^k, Sylvester): the vector as
      // [blocks, m, p1, p2], each factor a small MatMul on its axis, its
      // constant shared by every layer (normalised by its own order).
      SmallVector<int64_t> factors;
      SmallVector<bool> isBase;
      for (auto [f, b] : {std::pair<int64_t, bool>{kron.base, true},
                          {kron.p1, false},
                          {kron.p2, false}})
        if (f > 1) {
          factors.push_back(f);
          isBase.push_back(b);
        }
      SmallVector<int64_t> lead(rank - 1, 0);
      auto reshaped = [&](ArrayRef<int64_t> tail) {
        SmallVector<int64_t> shape(lead);
        shape.push_back(last / n);
        shape.append(tail.begin(), tail.end());
        return op("Reshape", {cur, int64s(shape)}, hint);
      };
      auto constant = [&](int64_t f, bool right, bool base) {
        std::string key = "qopt.hadamard" + std::string(base ? "_base" : "") +
                          std::to_string(f) + (right ? "T" : "");
        auto found = hadamards.find(key);
        if (found != hadamards.end())
          return found->second;
        // The base's Paley / Williamson matrix, or Sylvester's.
        std::vector<int8_t> hf = ::qopt::hadamard::matrix(f);
        std::vector<float> c(size_t(f) * f);
        double norm = 1.0 / std::sqrt(double(f));
        for (int64_t i = 0; i < f; ++i)
          for (int64_t j = 0; j < f; ++j)
            c[right ? size_t(j) * f + i : size_t(i) * f + j] =
                float(hf[size_t(i) * f + j] * norm);
        return hadamards[key] = floatInit(key, {f, f}, c);
      };
      // The last factor multiplies from the right, the others from the left
      // over their axis with the ones after it merged.
      for (size_t i = factors.size(); i-- > 0;) {
        int64_t rest = 1;
        for (size_t j = i + 1; j < factors.size(); ++j)
          rest *= factors[j];
        SmallVector<int64_t> tail(factors.begin(), factors.begin() + i + 1);
        if (rest > 1)
          tail.push_back(rest);
        cur = reshaped(tail);
        std::string h = constant(factors[i], rest == 1, isBase[i]);
        cur = rest == 1 ? op("MatMul", {cur, h}, hint)
                        : op("MatMul", {h, cur}, hint);
      }
      SmallVector<int64_t> back(lead);
      back.push_back(last);
      cur = op("Reshape", {cur, int64s(back)}, hint);
    } else if (auto s = dyn_cast<SmoothOp>(def)) {
      int64_t axis = int64_t(s.getAxis());
      if (axis < 0)
        axis += rank;
      if (axis != rank - 1)
        return error(def) << "smoothing over an axis other than the last has "
                             "no export",
               failure();
      FailureOr<dense::Matrix> scale =
          floatValue(s.getScale(), def, "smoothing scale");
      if (failed(scale))
        return failure();
      cur = op("Div",
               {cur, floatInit(hint + ".smooth", {int64_t(scale->data.size())},
                               scale->data)},
               hint);
    } else {
      FailureOr<std::string> q = activationQuant(def, cur, hint);
      if (failed(q))
        return failure();
      cur = *q;
    }
    emitted[def] = cur;
  }
  return cur;
}

/// An activation quantizer: QuantizeLinear / DequantizeLinear with a
/// constant scale, or the scale computed per token / tensor as
/// createQuantScales does (absmax / qmax, or min–max with a zero point;
/// 1 where the range is 0), then round-half-to-even and clamp.
FailureOr<std::string> Exporter::activationQuant(Operation *quantizer,
                                                 StringRef input,
                                                 StringRef hint) {
  auto format = dyn_cast<IntFormatAttr>(quantizer->getAttr("format"));
  Attribute granularity = quantizer->getAttr("granularity");
  if (opset < 13)
    return error(quantizer) << "activation quantizers need opset 13 or later "
                               "(the model has "
                            << opset << ")",
           failure();
  if (!format || !isa<PerTokenAttr, PerTensorAttr>(granularity))
    return error(quantizer) << "only integer activation quantizers per token "
                               "or per tensor have an export",
           failure();
  Value scaleValue = quantizer->getOperand(1);
  Value zpValue =
      quantizer->getNumOperands() > 2 ? quantizer->getOperand(2) : Value();
  double qmin = format.getQMin(), qmax = format.getQMax();
  std::string x = input.str();
  std::string scale, zp;
  std::string why;
  FailureOr<dense::Matrix> fixed =
      reader.evaluate(scaleValue, symbols, quantizer, why);
  if (succeeded(fixed)) {
    if (fixed->data.size() != 1)
      return error(quantizer) << "a constant activation scale must be one "
                                 "value (per tensor)",
             failure();
    float s = fixed->data[0];
    float z = 0.0f;
    if (zpValue) {
      FailureOr<dense::Matrix> zm =
          floatValue(zpValue, quantizer, "activation zero point");
      if (failed(zm))
        return failure();
      z = zm->data[0];
      if (z != std::nearbyint(z))
        return error(quantizer)
                   << "the activation zero point " << z << " is not an integer",
               failure();
    }
    unsigned bits = format.getBits();
    bool native = bits == 8 || (bits == 4 && needOpset(21));
    if (native) {
      int type = bits == 8 ? (format.getIsSigned() ? kInt8 : kUInt8)
                           : (format.getIsSigned() ? kInt4 : kUInt4);
      std::string sName = scalar(s);
      uint8_t zc = uint8_t(int8_t(std::lround(z)));
      std::string zName =
          initializer(hint.str() + ".zero_point", type, {},
                      std::string(1, char(bits == 4 ? (zc & 0xF) : zc)));
      std::string q = op("QuantizeLinear", {x, sName, zName}, hint);
      return op("DequantizeLinear", {q, sName, zName}, hint);
    }
    scale = scalar(s);
    if (zpValue)
      zp = scalar(z);
  } else if (why.empty()) {
    return failure(); // a parameter whose data cannot be read
  } else {
    // Dynamic: reduced over the last axis (per token) or all (per tensor).
    bool perToken = isa<PerTokenAttr>(granularity);
    auto reduce = [&](StringRef opType, const std::string &v) {
      std::vector<std::string> in{v};
      if (perToken && opset >= 18)
        in.push_back(int64s({-1}));
      std::string out = fresh(hint);
      ::onnx::NodeProto &n = node(opType, in, out);
      attr(n, "keepdims", perToken ? 1 : 0);
      if (perToken && opset < 18)
        attrs(n, "axes", {-1});
      return out;
    };
    std::string zero = scalar(0.0f), one = scalar(1.0f),
                largest = scalar(float(qmax));
    auto orOne = [&](const std::string &s) {
      std::string isZero = op("Equal", {s, zero}, hint);
      return op("Where", {isZero, one, s}, hint);
    };
    if (!zpValue) {
      std::string absmax = reduce("ReduceMax", op("Abs", {x}, hint));
      scale = orOne(op("Div", {absmax, largest}, hint));
    } else {
      std::string lo = op("Min", {reduce("ReduceMin", x), zero}, hint);
      std::string hi = op("Max", {reduce("ReduceMax", x), zero}, hint);
      scale = orOne(op("Div", {op("Sub", {hi, lo}, hint), largest}, hint));
      std::string z =
          op("Round", {op("Div", {op("Neg", {lo}, hint), scale}, hint)}, hint);
      zp = op("Min", {op("Max", {z, zero}, hint), largest}, hint);
    }
  }
  std::string q = op("Round", {op("Div", {x, scale}, hint)}, hint);
  if (!zp.empty())
    q = op("Add", {q, zp}, hint);
  q = op("Clip", {q, scalar(float(qmin)), scalar(float(qmax))}, hint);
  if (!zp.empty())
    q = op("Sub", {q, zp}, hint);
  return op("Mul", {q, scale}, hint);
}

/// Integer codes: MatMulNBits where it fits, else DequantizeLinear of the
/// codes stored K×N (block-wise along K), else the float weight.
std::string Exporter::intProduct(StringRef x, StringRef hint, int64_t n,
                                 int64_t k, IntFormatAttr format, int64_t group,
                                 const std::vector<uint8_t> &codes,
                                 const std::vector<float> &scales,
                                 const std::vector<uint8_t> &zeroPoints) {
  unsigned bits = format.getBits();
  bool isSigned = format.getIsSigned();
  int64_t g = group ? group : k;
  int64_t blocks = (k + g - 1) / g;
  auto code = [&](int64_t r, int64_t c) -> int32_t {
    uint8_t v = codes[size_t(r) * k + c];
    return isSigned ? ::qopt::signExtend(v, bits) : int32_t(v);
  };
  if (options.contrib && bits == 4 && group >= 16 && !(group & (group - 1))) {
    // MatMulNBits: unsigned codes, zero point 8 by default (signed codes
    // shifted by 8), blocks of `group` along K padded with the zero point.
    int64_t blob = group / 2;
    std::vector<uint8_t> b(size_t(n) * blocks * blob, 0), zps;
    for (int64_t r = 0; r < n; ++r) {
      std::vector<uint8_t> row(size_t(blocks) * group);
      for (int64_t blk = 0; blk < blocks; ++blk) {
        int32_t pad = isSigned ? 8
                      : zeroPoints.empty()
                          ? 0
                          : int32_t(zeroPoints[size_t(r) * blocks + blk]);
        for (int64_t i = 0; i < group; ++i) {
          int64_t c = blk * group + i;
          int32_t v = c < k ? code(r, c) + (isSigned ? 8 : 0) : pad;
          row[size_t(blk) * group + i] = uint8_t(v);
        }
      }
      std::vector<uint8_t> packed = packNibbles(row);
      std::copy(packed.begin(), packed.end(),
                b.begin() + size_t(r) * blocks * blob);
    }
    std::vector<std::string> inputs{
        x.str(),
        initializer(hint.str() + ".qweight", kUInt8, {n, blocks, blob},
                    bytesOf(b)),
        floatInit(hint.str() + ".scales", {n * blocks}, scales)};
    if (!isSigned) {
      // Unsigned codes: their zero points (0 without), packed per row.
      int64_t perRow = (blocks + 1) / 2;
      zps.assign(size_t(n) * perRow, 0);
      for (int64_t r = 0; r < n; ++r)
        for (int64_t blk = 0; blk < blocks; ++blk) {
          uint8_t z =
              zeroPoints.empty() ? 0 : zeroPoints[size_t(r) * blocks + blk];
          zps[size_t(r) * perRow + blk / 2] |= uint8_t(z << (blk % 2 ? 4 : 0));
        }
      inputs.push_back(initializer(hint.str() + ".qzeros", kUInt8, {n * perRow},
                                   bytesOf(zps)));
    }
    std::string out = fresh(hint);
    ::onnx::NodeProto &mm = node("MatMulNBits", inputs, out, "com.microsoft");
    attr(mm, "K", k);
    attr(mm, "N", n);
    attr(mm, "bits", 4);
    attr(mm, "block_size", group);
    if (options.int8Activations)
      attr(mm, "accuracy_level", 4);
    usesContrib = true;
    return out;
  }
  // DequantizeLinear of the codes stored K×N: int4 / uint4 for up to 4
  // bits (opset 21), int8 / uint8 otherwise; per channel along N (opset
  // 13) or block-wise along K (opset 21).
  bool narrow = bits <= 4;
  if (((narrow || group) && !needOpset(21)) || opset < 13)
    return "";
  int type = narrow ? (isSigned ? kInt4 : kUInt4) : (isSigned ? kInt8 : kUInt8);
  std::vector<uint8_t> t(size_t(n) * k);
  for (int64_t r = 0; r < n; ++r)
    for (int64_t c = 0; c < k; ++c)
      t[size_t(c) * n + r] = uint8_t(code(r, c));
  std::vector<float> st(scales.size());
  std::vector<uint8_t> zt(zeroPoints.size());
  if (group) {
    for (int64_t r = 0; r < n; ++r)
      for (int64_t blk = 0; blk < blocks; ++blk) {
        st[size_t(blk) * n + r] = scales[size_t(r) * blocks + blk];
        if (!zt.empty())
          zt[size_t(blk) * n + r] = zeroPoints[size_t(r) * blocks + blk];
      }
  } else {
    st = scales;
    zt = zeroPoints;
  }
  SmallVector<int64_t> sdims =
      group ? SmallVector<int64_t>{blocks, n} : SmallVector<int64_t>{n};
  std::vector<std::string> inputs{
      initializer(hint.str() + ".qweight", type, {k, n},
                  bytesOf(narrow ? packNibbles(t) : t)),
      floatInit(hint.str() + ".scales", sdims, st)};
  if (!zt.empty())
    inputs.push_back(initializer(hint.str() + ".zero_points", type, sdims,
                                 bytesOf(narrow ? packNibbles(zt) : zt)));
  std::string w = fresh(hint);
  ::onnx::NodeProto &dq = node("DequantizeLinear", inputs, w);
  attr(dq, "axis", group ? 0 : 1);
  if (group)
    attr(dq, "block_size", group);
  return op("MatMul", {x.str(), w}, hint);
}

/// A quantized weight (`qopt.assemble` of parameters): integer codes with
/// float scales per channel or group go to intProduct; codebook formats
/// (NF4, FP4, 8-bit dynamic, FP8 / E2M1) become a Gather of their table
/// times the block's scale; anything else is stored dequantized.
FailureOr<std::string> Exporter::quantizedProduct(Value weight, StringRef x,
                                                  Operation *layer,
                                                  StringRef hint, int64_t n,
                                                  int64_t k) {
  auto type = cast<QTensorType>(weight.getType());
  auto assemble = weight.getDefiningOp<AssembleOp>();
  auto dequantized = [&]() -> FailureOr<std::string> {
    FailureOr<dense::Matrix> w = weightValue(weight, layer, "quantized weight");
    if (failed(w))
      return failure();
    return matmulFloat(*w, x, hint);
  };
  auto load = assemble ? assemble.getData().getDefiningOp<LoadParamOp>()
                       : LoadParamOp();
  ParamOp dataParam = load ? symbols.lookup<ParamOp>(load.getName()) : nullptr;
  if (!dataParam || type.getRank() != 2 || type.getOffset())
    return dequantized();
  FailureOr<std::vector<char>> bytes = reader.readBytes(dataParam, layer);
  if (failed(bytes))
    return failure();
  unsigned bits = type.getFormat().getStorageBits();
  int64_t rowBytes = ::qopt::packedRowBytes(k, bits);
  if (int64_t(bytes->size()) != n * rowBytes)
    return dequantized();
  std::vector<uint8_t> codes(size_t(n) * k);
  for (int64_t r = 0; r < n; ++r)
    ::qopt::unpackBits(reinterpret_cast<const uint8_t *>(bytes->data()) +
                           r * rowBytes,
                       k, bits, codes.data() + size_t(r) * k);
  // The scales as f32: plain float parameters, or nested (double
  // quantization) expanded as the lowering does.
  std::vector<float> scales;
  {
    Value s = assemble.getScales();
    std::string why;
    // 8-bit float scales (MXFP4's E8M0) are bytes read through a bitcast.
    auto cast = s.getDefiningOp<arith::BitcastOp>();
    auto kind = smallFloatKindOf(getElementTypeOrSelf(s.getType()));
    auto bytesParam =
        cast ? cast.getIn().getDefiningOp<LoadParamOp>() : LoadParamOp();
    if (kind && bytesParam) {
      ParamOp param = symbols.lookup<ParamOp>(bytesParam.getName());
      FailureOr<std::vector<char>> raw =
          param ? reader.readBytes(param, layer)
                : FailureOr<std::vector<char>>(failure());
      if (failed(raw))
        return failure();
      ArrayRef<float> table = decodedTable(*kind);
      for (char c : *raw)
        scales.push_back(table[uint8_t(c)]);
    } else {
      FailureOr<dense::Matrix> m =
          isa<QTensorType>(s.getType())
              ? dequantizeKnown(reader, s, symbols, layer, why)
              : reader.evaluate(s, symbols, layer, why);
      if (failed(m)) {
        if (why.empty())
          return failure();
        note("'" + hint.drop_front(5) + "': its scales " + why +
             "; stored dequantized (f32)");
        return dequantized();
      }
      scales = m->data;
    }
  }
  // Scales per block of consecutive elements (row-major).
  Attribute granularity = type.getGranularity();
  int64_t block = 0, group = 0;
  if (auto g = dyn_cast<PerGroupAttr>(granularity)) {
    if (g.getAxis() == 1)
      group = block = g.getSize();
  } else if (auto c = dyn_cast<PerChannelAttr>(granularity)) {
    if (c.getAxis() == 0)
      block = k;
  } else if (auto b = dyn_cast<PerBlockAttr>(granularity)) {
    block = b.getSize();
  } else if (isa<PerTensorAttr>(granularity)) {
    block = n * k;
  }
  if (auto format = dyn_cast<IntFormatAttr>(type.getFormat())) {
    std::vector<uint8_t> zps;
    if (Value z = assemble.getZeroPoints()) {
      auto zl = z.getDefiningOp<LoadParamOp>();
      ParamOp zp = zl ? symbols.lookup<ParamOp>(zl.getName()) : nullptr;
      if (!zp)
        return dequantized();
      FailureOr<std::vector<char>> zb = reader.readBytes(zp, layer);
      if (failed(zb))
        return failure();
      zps.assign(zb->begin(), zb->end());
    }
    bool perRowGroups = isa<PerGroupAttr>(granularity) && group;
    bool perChannel = isa<PerChannelAttr>(granularity) && block == k;
    int64_t expected = perRowGroups ? n * ((k + group - 1) / group) : n;
    if ((perRowGroups || perChannel) && int64_t(scales.size()) == expected &&
        (zps.empty() || int64_t(zps.size()) == expected)) {
      std::string out = intProduct(
          x, hint, n, k, format, perRowGroups ? group : 0, codes, scales, zps);
      if (!out.empty())
        return out;
      note("'" + hint.drop_front(5) + "': " + Twine(format.getBits()) +
           "-bit codes at opset " + Twine(opset) +
           " (before 18) have no block-wise DequantizeLinear; stored "
           "dequantized (f32)");
    } else {
      note("'" + hint.drop_front(5) +
           "': its scales are neither per output channel nor per group "
           "along K; stored dequantized (f32)");
    }
    return dequantized();
  }
  ArrayRef<float> table = codebookOf(type.getFormat());
  if (table.empty() || !block || (n * k) % block ||
      int64_t(scales.size()) != n * k / block) {
    note("'" + hint.drop_front(5) +
         "': its format has no ONNX form here; stored dequantized (f32)");
    return dequantized();
  }
  // W = reshape(Gather(table, codes), [blocks, block]) · scales[:, None].
  int64_t blocks = n * k / block;
  std::string t = floatInit(hint.str() + ".codebook", {int64_t(table.size())},
                            std::vector<float>(table.begin(), table.end()));
  std::string c = initializer(hint.str() + ".codes", kUInt8, {blocks, block},
                              bytesOf(codes));
  std::string s = floatInit(hint.str() + ".scales", {blocks, 1}, scales);
  std::string idx = fresh(hint);
  attr(node("Cast", {c}, idx), "to", kInt64);
  std::string v = op("Gather", {t, idx}, hint);
  std::string w = op("Mul", {v, s}, hint);
  w = op("Reshape", {w, int64s({n, k})}, hint);
  std::string wt = fresh(hint);
  attrs(node("Transpose", {w}, wt), "perm", {1, 0});
  return op("MatMul", {x.str(), wt}, hint);
}

/// A float weight fake-quantized with constant steps (LSQ, PEQA, or
/// qopt-insert-fake-quant's per-channel / per-group scales, recomputed here
/// as it computes them): the codes are exported with DequantizeLinear.
FailureOr<std::string> Exporter::fakeQuantWeight(Operation *quantizer,
                                                 StringRef x, Operation *layer,
                                                 StringRef hint) {
  auto format = dyn_cast<IntFormatAttr>(quantizer->getAttr("format"));
  Attribute granularity = quantizer->getAttr("granularity");
  FailureOr<dense::Matrix> w =
      floatValue(quantizer->getOperand(0), layer, "fake-quantized weight");
  if (failed(w))
    return failure();
  int64_t n = w->rows, k = w->cols, group = 0;
  if (auto g = dyn_cast<PerGroupAttr>(granularity); g && g.getAxis() == 1)
    group = g.getSize();
  else if (auto c = dyn_cast<PerChannelAttr>(granularity); !c || c.getAxis())
    format = nullptr;
  if (!format || (group && k % group))
    return error(layer) << "only integer weight quantizers per output "
                           "channel or per group along K have an export",
           failure();
  int64_t size = group ? group : k, groups = k / size;
  double qmin = format.getQMin(), qmax = format.getQMax();
  bool hasZp = format.getZeroPoint();
  std::vector<float> scales(size_t(n) * groups), zps(hasZp ? scales.size() : 0);
  std::string why;
  FailureOr<dense::Matrix> fixed =
      reader.evaluate(quantizer->getOperand(1), symbols, layer, why);
  if (succeeded(fixed) && int64_t(fixed->data.size()) == n * groups) {
    scales = fixed->data;
    if (hasZp) {
      FailureOr<dense::Matrix> z =
          floatValue(quantizer->getOperand(2), layer, "zero point");
      if (failed(z))
        return failure();
      zps = z->data;
    }
  } else if (!why.empty() && !isa_and_nonnull<LoadParamOp>(
                                 quantizer->getOperand(1).getDefiningOp())) {
    // Scales computed from the weight in the IR (createQuantScales).
    for (int64_t r = 0; r < n; ++r)
      for (int64_t gi = 0; gi < groups; ++gi) {
        float lo = 0, hi = 0, absmax = 0;
        for (int64_t c = gi * size; c < (gi + 1) * size; ++c) {
          float v = w->at(r, c);
          lo = std::min(lo, v);
          hi = std::max(hi, v);
          absmax = std::max(absmax, std::fabs(v));
        }
        size_t i = size_t(r) * groups + gi;
        float s = hasZp ? (hi - lo) / float(qmax) : absmax / float(qmax);
        scales[i] = s == 0.0f ? 1.0f : s;
        if (hasZp)
          zps[i] = std::min(std::max(std::nearbyint(-lo / scales[i]), 0.0f),
                            float(qmax));
      }
  } else {
    return error(layer) << "the weight quantizer's scale " << why, failure();
  }
  std::vector<uint8_t> codes(size_t(n) * k), zcodes;
  for (float z : zps) {
    if (z != std::nearbyint(z))
      return error(layer) << "the weight quantizer's zero point " << z
                          << " is not an integer",
             failure();
    zcodes.push_back(uint8_t(int(z)));
  }
  for (int64_t r = 0; r < n; ++r)
    for (int64_t c = 0; c < k; ++c) {
      size_t i = size_t(r) * groups + c / size;
      float q =
          std::nearbyint(w->at(r, c) / scales[i]) + (hasZp ? zps[i] : 0.0f);
      q = std::min(std::max(q, float(qmin)), float(qmax));
      codes[size_t(r) * k + c] = uint8_t(int(q));
    }
  std::string out =
      intProduct(x, hint, n, k, format, group, codes, scales, zcodes);
  if (out.empty())
    return error(layer) << "integer weight codes need opset 18 or later "
                           "(the model has "
                        << opset << ")",
           failure();
  return out;
}

FailureOr<std::string> Exporter::product(Value weight, StringRef x,
                                         Operation *layer, StringRef hint,
                                         int64_t n, int64_t k) {
  if (isa<QTensorType>(weight.getType()))
    return quantizedProduct(weight, x, layer, hint, n, k);
  if (Operation *def = weight.getDefiningOp();
      isa_and_nonnull<FakeQuantOp, LSQOp>(def)) {
    consumed.insert(def);
    return fakeQuantWeight(def, x, layer, hint);
  }
  FailureOr<dense::Matrix> w = floatValue(weight, layer, "weight");
  if (failed(w))
    return failure();
  return matmulFloat(*w, x, hint);
}

/// Gives the layer output `out` the name of the original graph's, whose
/// node is left without readers.
LogicalResult Exporter::rename(Operation *layer, StringRef rootNode,
                               StringRef out) {
  auto it = nodeIndex.find(rootNode);
  if (it == nodeIndex.end() || it->second < 0)
    return error(layer) << "node '" << rootNode << "' is "
                        << (it == nodeIndex.end() ? "not in the model"
                                                  : "not uniquely named"),
           failure();
  ::onnx::NodeProto *root = model.mutable_graph()->mutable_node(it->second);
  std::string y0 = root->output(0);
  if (!replacedOutputs.try_emplace(rootNode, y0).second)
    return error(layer) << "node '" << rootNode
                        << "' computes two layers' outputs",
           failure();
  root->set_output(0, fresh(y0 + ".replaced"));
  for (::onnx::NodeProto &n : llvm::reverse(added))
    if (n.output(0) == out) {
      n.set_output(0, y0);
      return success();
    }
  return error(layer) << "internal: no node computes '" << out << "'",
         failure();
}

/// PEFT's LoRA Embedding: W[ids] + scale · Aᵀ[ids] · Bᵀ.
LogicalResult Exporter::exportEmbedding(LoRAEmbeddingOp lookup,
                                        const ONNXExportRecord::Layer &rec) {
  std::string hint = "qopt/" + layerKey(lookup, lookup.getModuleAttr());
  FailureOr<std::string> ids = resolve(rec.input, lookup);
  if (failed(ids))
    return failure();
  FailureOr<dense::Matrix> w =
      weightValue(lookup.getWeight(), lookup, "embedding table");
  if (failed(w))
    return failure();
  std::string out = op(
      "Gather",
      {floatInit(hint + ".weight", {w->rows, w->cols}, w->data), *ids}, hint);
  if (!lookup.getMerged()) {
    FailureOr<dense::Matrix> a =
        floatValue(lookup.getLoraA(), lookup, "lora_A");
    FailureOr<dense::Matrix> b =
        floatValue(lookup.getLoraB(), lookup, "lora_B");
    if (failed(a) || failed(b))
      return failure();
    std::string z =
        op("Gather", {transposedInit(hint + ".lora_A", *a), *ids}, hint);
    z = op("MatMul", {z, transposedInit(hint + ".lora_B", *b)}, hint);
    z = op("Mul", {z, scalar(float(lookup.getScale()))}, hint);
    out = op("Add", {out, z}, hint);
  }
  return rename(lookup, rec.rootNode, out);
}

LogicalResult Exporter::exportLayer(Operation *layer,
                                    const ONNXExportRecord::Layer &rec) {
  auto linear = dyn_cast<LinearOp>(layer);
  auto lora = dyn_cast<LoRAOp>(layer);
  Value input = linear ? linear.getInput() : lora.getInput();
  Value weight = linear ? linear.getWeight() : lora.getWeight();
  Value bias = linear ? linear.getBias() : lora.getBias();
  auto outType = cast<RankedTensorType>(layer->getResult(0).getType());
  auto inType = cast<RankedTensorType>(input.getType());
  int64_t n = outType.getDimSize(outType.getRank() - 1);
  int64_t k = inType.getDimSize(inType.getRank() - 1);
  // The constants the export writes are f32.
  if (!inType.getElementType().isF32() || !outType.getElementType().isF32())
    return error(layer) << "its activations are " << inType.getElementType()
                        << ": only f32 models have an export",
           failure();
  std::string hint = "qopt/" + layerKey(layer, linear ? linear.getModuleAttr()
                                                      : lora.getModuleAttr());
  FailureOr<std::string> x = resolve(rec.input, layer);
  if (failed(x))
    return failure();
  Value root;
  FailureOr<std::string> xq = chain(input, root, layer, *x);
  if (failed(xq))
    return failure();
  FailureOr<std::string> y = product(weight, *xq, layer, hint, n, k);
  if (failed(y))
    return failure();
  std::string out = *y;
  if (lora && !lora.getMerged()) {
    FailureOr<dense::Matrix> am = floatValue(lora.getLoraA(), layer, "lora_A");
    FailureOr<dense::Matrix> bm = floatValue(lora.getLoraB(), layer, "lora_B");
    if (failed(am) || failed(bm))
      return failure();
    std::string z =
        op("MatMul", {*xq, transposedInit(hint + ".lora_A", *am)}, hint);
    if (lora.getGate()) {
      FailureOr<dense::Matrix> g = floatValue(lora.getGate(), layer, "gate");
      if (failed(g))
        return failure();
      z = op("Mul", {z, floatInit(hint + ".gate", {g->cols}, g->data)}, hint);
    }
    if (lora.getMiddle()) {
      FailureOr<dense::Matrix> m =
          floatValue(lora.getMiddle(), layer, "middle");
      if (failed(m))
        return failure();
      z = op("MatMul", {z, transposedInit(hint + ".middle", *m)}, hint);
    }
    z = op("Mul",
           {op("MatMul", {z, transposedInit(hint + ".lora_B", *bm)}, hint),
            scalar(float(lora.getScale()))},
           hint);
    out = op("Add", {out, z}, hint);
    if (Value mag = lora.getMagnitude()) {
      // DoRA: rows rescaled by m / ‖W + scale·B·M·diag(g)·A‖, a constant
      // at inference.
      FailureOr<dense::Matrix> w = weightValue(weight, layer, "weight");
      FailureOr<dense::Matrix> mm = floatValue(mag, layer, "magnitude");
      if (failed(w) || failed(mm))
        return failure();
      if (lora.getMiddle() || lora.getGate())
        return error(layer) << "DoRA with a middle or gate factor has no "
                               "export",
               failure();
      if (bm->cols != am->rows || bm->rows != w->rows || am->cols != w->cols ||
          int64_t(mm->data.size()) != w->rows)
        return error(layer) << "DoRA factors that do not fit the weight",
               failure();
      dense::Matrix ba(bm->rows, am->cols);
      dense::gemm(false, false, 1.0f, *bm, *am, 0.0f, ba);
      std::vector<float> rowScale(w->rows);
      double s = lora.getScale();
      for (int64_t r = 0; r < w->rows; ++r) {
        double sum = 0;
        for (int64_t c = 0; c < w->cols; ++c) {
          double v = double(w->at(r, c)) + s * double(ba.at(r, c));
          sum += v * v;
        }
        rowScale[r] = float(mm->data[r] / std::sqrt(sum));
      }
      out = op("Mul", {out, floatInit(hint + ".dora_scale", {n}, rowScale)},
               hint);
    }
  } else if (lora && lora.getMagnitude()) {
    return error(layer) << "a merged DoRA layer has no export", failure();
  }
  // SVDQuant's branch: y + (x_b · Aᵀ) · Bᵀ, two unnamed products of the
  // layer's input before quantization.
  // (The add's output sizes read the layer's result too: tensor.dim.)
  Value result = layer->getResult(0);
  SmallVector<Operation *> users;
  for (Operation *user : result.getUsers())
    if (!isa<tensor::DimOp>(user))
      users.push_back(user);
  auto add = users.size() == 1 ? dyn_cast<linalg::GenericOp>(users[0])
                               : linalg::GenericOp();
  auto isAdd = [](linalg::GenericOp g) {
    Block &body = g.getRegion().front();
    auto sum = dyn_cast<arith::AddFOp>(&body.front());
    return g.getNumDpsInputs() == 2 && body.getOperations().size() == 2 &&
           sum && sum.getLhs() == body.getArgument(0) &&
           sum.getRhs() == body.getArgument(1);
  };
  {
    if (add && isAdd(add)) {
      Value other = add.getDpsInputOperand(0)->get() == result
                        ? add.getDpsInputOperand(1)->get()
                        : add.getDpsInputOperand(0)->get();
      auto up = other.getDefiningOp<LinearOp>();
      auto down = up ? up.getInput().getDefiningOp<LinearOp>() : LinearOp();
      // (Ops qopt-svdquant made carry the layer's location; an Add of the
      // original graph would not.)
      if (up && down && !up.getModuleAttr() && !down.getModuleAttr() &&
          !up.getBias() && !down.getBias() && up->getLoc() == layer->getLoc() &&
          down->getLoc() == layer->getLoc() &&
          add->getLoc() == layer->getLoc()) {
        Value branchRoot;
        FailureOr<std::string> xb =
            chain(down.getInput(), branchRoot, layer, *x);
        if (failed(xb))
          return failure();
        if (branchRoot != root)
          return error(layer) << "its low-rank branch reads another input",
                 failure();
        auto rt = cast<RankedTensorType>(down.getResult().getType());
        int64_t r = rt.getDimSize(rt.getRank() - 1);
        FailureOr<std::string> z =
            product(down.getWeight(), *xb, down, hint + ".svd_A", r, k);
        if (failed(z))
          return failure();
        FailureOr<std::string> u =
            product(up.getWeight(), *z, up, hint + ".svd_B", n, r);
        if (failed(u))
          return failure();
        out = op("Add", {out, *u}, hint);
        consumed.insert(up);
        consumed.insert(down);
        consumed.insert(add);
      }
    }
  }
  if (bias) {
    FailureOr<dense::Matrix> b = floatValue(bias, layer, "bias");
    if (failed(b))
      return failure();
    out = op("Add", {out, floatInit(hint + ".bias", {n}, b->data)}, hint);
  }
  return rename(layer, rec.rootNode, out);
}

//===----------------------------------------------------------------------===//
// Parameters, the graph's upkeep, writing
//===----------------------------------------------------------------------===//

/// Norms and embeddings must read the parameters they read in the original
/// graph (their values may change; those are written back by name).
LogicalResult Exporter::checkParams() {
  LogicalResult result = success();
  module.walk([&](Operation *op) {
    if (!isa<RMSNormOp, LayerNormOp, EmbeddingOp>(op))
      return;
    auto fail = [&](const Twine &why) {
      error(op) << "'" << op->getName() << "' at node '" << rootName(op) << "' "
                << why;
      result = failure();
    };
    auto it = record.paramsRead.find("@" + rootName(op));
    if (it == record.paramsRead.end())
      return fail("is not in the original graph");
    // (Raised ops and ONNX nodes order their operands differently: match
    // by name.)
    llvm::StringSet<> was;
    for (const std::string &name : it->second)
      if (!name.empty())
        was.insert(name);
    std::vector<std::string> now = paramOperands(op);
    SmallVector<size_t> fresh;
    for (size_t i = 0; i < now.size(); ++i) {
      if (now[i].empty()) {
        // The data operand (0) is computed; others must come from
        // unchanged parameters (conversion slicing a table, say).
        if (i > 0 && !fromUnchangedParams(op->getOperand(i)))
          return fail("reads a value computed by a pass where the original "
                      "graph reads a parameter");
        continue;
      }
      if (!was.contains(now[i]) && !unchanged(now[i]))
        fresh.push_back(i);
    }
    SmallVector<std::string> gone;
    for (const std::string &name : it->second)
      if (!name.empty() && !llvm::is_contained(now, name))
        gone.push_back(name);
    auto node = nodeIndex.find(rootName(op));
    ::onnx::NodeProto *n =
        node == nodeIndex.end() || node->second < 0
            ? nullptr
            : model.mutable_graph()->mutable_node(node->second);
    for (size_t i : fresh) {
      // A pass gave the op a parameter of its own (the original one may
      // have other readers): the node now reads a new initializer with its
      // values. It replaces the parameter at the same operand (raised ops
      // and ONNX nodes agree but for Gather's order), or the only one gone.
      const std::string &is = now[i];
      std::string old;
      if (it->second.size() == now.size() &&
          llvm::is_contained(gone, it->second[i]))
        old = it->second[i];
      else if (gone.size() == 1 && fresh.size() == 1)
        old = gone.front();
      auto input = n && !old.empty() ? llvm::find(*n->mutable_input(), old)
                                     : decltype(n->mutable_input()->end())();
      auto param = symbols.lookup<ParamOp>(is);
      if (old.empty() || input == n->mutable_input()->end() || !param ||
          !param.getTensorType().getElementType().isF32())
        return fail("reads parameter '" + is +
                    "' in place of one of the original graph's, and the "
                    "export cannot tell which input of node '" +
                    rootName(op) + "' that is");
      FailureOr<std::vector<char>> bytes = reader.readBytes(param, op);
      if (failed(bytes)) {
        result = failure();
        return;
      }
      *input = initializer(is, kFloat, param.getTensorType().getShape(),
                           std::string(bytes->begin(), bytes->end()));
    }
  });
  return result;
}

bool Exporter::unchanged(StringRef name) {
  auto orig = record.params.find(name);
  auto param = symbols.lookup<ParamOp>(name);
  return orig != record.params.end() && param &&
         orig->second == param.getInitialValueAttr();
}

/// Whether `v` is computed from unchanged parameters and the graph's
/// inputs by conversion's ops alone (no qopt op a pass inserts).
bool Exporter::fromUnchangedParams(Value v) {
  SmallVector<Value> work{v};
  llvm::SmallPtrSet<Operation *, 16> seen;
  while (!work.empty()) {
    Operation *def = work.pop_back_val().getDefiningOp();
    if (!def || !seen.insert(def).second)
      continue;
    if (auto load = dyn_cast<LoadParamOp>(def)) {
      if (!unchanged(load.getName()))
        return false;
      continue;
    }
    if (isa<QOptDialect>(def->getDialect()))
      return false;
    def->walk([&](Operation *inner) {
      for (Value operand : inner->getOperands())
        work.push_back(operand);
    });
  }
  return true;
}

static int64_t elementBytes(int type) {
  switch (type) {
  case kFloat:
    return 4;
  case kUInt8:
  case kInt8:
  case kBool:
    return 1;
  case kInt64:
    return 8;
  case kFloat16:
  case kBFloat16:
    return 2;
  default:
    return 0;
  }
}

/// Parameters whose value a pass changed are written into their
/// initializers (same name, shape and type).
LogicalResult Exporter::updateInitializers() {
  llvm::StringMap<::onnx::TensorProto *> inits;
  for (::onnx::TensorProto &t : *model.mutable_graph()->mutable_initializer())
    inits[t.name()] = &t;
  for (auto param : module.getOps<ParamOp>()) {
    auto orig = record.params.find(param.getSymName());
    if (orig == record.params.end() ||
        orig->second == param.getInitialValueAttr())
      continue;
    auto it = inits.find(param.getSymName());
    if (it == inits.end())
      continue; // read only by re-emitted layers, or a Constant node's
    ::onnx::TensorProto *t = it->second;
    RankedTensorType type = param.getTensorType();
    int64_t size = elementBytes(t->data_type());
    if (!size || int64_t(t->dims_size()) != type.getRank() ||
        !llvm::equal(t->dims(), type.getShape()))
      return error(param) << "parameter '" << param.getSymName()
                          << "' changed, and its initializer's type or "
                             "shape does not match",
             failure();
    FailureOr<std::vector<char>> bytes = reader.readBytes(param, param);
    if (failed(bytes))
      return failure();
    if (int64_t(bytes->size()) != size * type.getNumElements())
      return error(param) << "parameter '" << param.getSymName()
                          << "' has another element type than its "
                             "initializer",
             failure();
    ::onnx::TensorProto fresh;
    fresh.set_name(t->name());
    fresh.set_data_type(t->data_type());
    *fresh.mutable_dims() = t->dims();
    fresh.set_raw_data(std::string(bytes->begin(), bytes->end()));
    *t = std::move(fresh);
  }
  return success();
}

/// Adds the new nodes and initializers, drops what nothing reads, and
/// sorts the nodes topologically (new nodes were appended).
LogicalResult Exporter::finish() {
  ::onnx::GraphProto *graph = model.mutable_graph();
  for (::onnx::NodeProto &n : added)
    *graph->add_node() = std::move(n);
  for (::onnx::TensorProto &t : newInits)
    *graph->add_initializer() = std::move(t);

  // Liveness from the graph outputs backwards.
  int count = graph->node_size();
  llvm::StringMap<int> producer;
  for (int i = 0; i < count; ++i)
    for (const std::string &o : graph->node(i).output())
      if (!o.empty())
        producer[o] = i;
  llvm::StringSet<> live;
  std::vector<bool> keep(count, false);
  std::vector<std::string> work;
  for (const auto &o : graph->output())
    work.push_back(o.name());
  auto subgraphInputs = [](const ::onnx::NodeProto &n,
                           std::vector<std::string> &out) {
    // Subgraphs may read outer values: keep whatever their nodes read.
    std::vector<const ::onnx::GraphProto *> graphs;
    for (const auto &a : n.attribute()) {
      if (a.has_g())
        graphs.push_back(&a.g());
      for (const auto &g : a.graphs())
        graphs.push_back(&g);
    }
    while (!graphs.empty()) {
      const ::onnx::GraphProto *g = graphs.back();
      graphs.pop_back();
      for (const auto &inner : g->node()) {
        for (const auto &i : inner.input())
          out.push_back(i);
        for (const auto &a : inner.attribute()) {
          if (a.has_g())
            graphs.push_back(&a.g());
          for (const auto &sg : a.graphs())
            graphs.push_back(&sg);
        }
      }
    }
  };
  while (!work.empty()) {
    std::string v = work.back();
    work.pop_back();
    if (v.empty() || !live.insert(v).second)
      continue;
    auto it = producer.find(v);
    if (it == producer.end() || keep[it->second])
      continue;
    keep[it->second] = true;
    const ::onnx::NodeProto &n = graph->node(it->second);
    for (const auto &i : n.input())
      work.push_back(i);
    subgraphInputs(n, work);
  }
  // Topological order over kept nodes, stable by position.
  std::vector<std::vector<int>> readers(count);
  std::vector<int> pending(count, 0);
  for (int i = 0; i < count; ++i) {
    if (!keep[i])
      continue;
    std::vector<std::string> ins(graph->node(i).input().begin(),
                                 graph->node(i).input().end());
    subgraphInputs(graph->node(i), ins);
    llvm::SmallDenseSet<int, 8> from;
    for (const std::string &in : ins) {
      auto it = producer.find(in);
      if (it != producer.end() && it->second != i && keep[it->second] &&
          from.insert(it->second).second) {
        readers[it->second].push_back(i);
        ++pending[i];
      }
    }
  }
  std::priority_queue<int, std::vector<int>, std::greater<int>> ready;
  for (int i = 0; i < count; ++i)
    if (keep[i] && !pending[i])
      ready.push(i);
  std::vector<::onnx::NodeProto> sorted;
  while (!ready.empty()) {
    int i = ready.top();
    ready.pop();
    sorted.push_back(std::move(*graph->mutable_node(i)));
    for (int r : readers[i])
      if (!--pending[r])
        ready.push(r);
  }
  if (int64_t(sorted.size()) != llvm::count(keep, true))
    return error(nullptr) << "the rewritten graph has a cycle", failure();
  graph->clear_node();
  for (::onnx::NodeProto &n : sorted)
    *graph->add_node() = std::move(n);

  // Initializers (and graph inputs naming them, as IR < 4 lists them) and
  // value_info nothing reads any more.
  llvm::StringSet<> dropped;
  auto keepLive = [&](auto *list, bool record) {
    int kept = 0;
    for (int i = 0; i < list->size(); ++i) {
      if (live.contains(list->Get(i).name())) {
        if (kept != i)
          list->SwapElements(kept, i);
        ++kept;
      } else if (record) {
        dropped.insert(list->Get(i).name());
      }
    }
    while (list->size() > kept)
      list->RemoveLast();
  };
  keepLive(graph->mutable_initializer(), true);
  keepLive(graph->mutable_value_info(), false);
  auto *inputs = graph->mutable_input();
  int keptInputs = 0;
  for (int i = 0; i < inputs->size(); ++i)
    if (!dropped.contains(inputs->Get(i).name())) {
      if (keptInputs != i)
        inputs->SwapElements(keptInputs, i);
      ++keptInputs;
    }
  while (inputs->size() > keptInputs)
    inputs->RemoveLast();
  // IR 4 lets initializers stay out of the graph's inputs.
  if (model.ir_version() < 4)
    model.set_ir_version(4);

  // Opsets.
  bool haveContrib = false;
  for (auto &o : *model.mutable_opset_import()) {
    if (o.domain().empty() || o.domain() == "ai.onnx")
      o.set_version(std::max<int64_t>(o.version(), opset));
    if (o.domain() == "com.microsoft")
      haveContrib = true;
  }
  if (usesContrib && !haveContrib) {
    auto *o = model.add_opset_import();
    o->set_domain("com.microsoft");
    o->set_version(1);
  }
  if (opset >= 21 && model.ir_version() < 10)
    model.set_ir_version(10);
  return success();
}

/// Writes the model with every initializer over 1 KiB in `<out>.data`
/// (aligned to 64 bytes), through temporary files renamed at the end.
LogicalResult Exporter::write() {
  std::string dataName =
      (llvm::sys::path::filename(options.outPath) + ".data").str();
  SmallString<256> dataPath(llvm::sys::path::parent_path(options.outPath));
  llvm::sys::path::append(dataPath, dataName);
  std::string modelTmp = options.outPath + ".partial";
  std::string dataTmp = std::string(dataPath) + ".partial";
  auto fail = [&](const Twine &why) {
    llvm::sys::fs::remove(modelTmp);
    llvm::sys::fs::remove(dataTmp);
    return error(nullptr) << why, failure();
  };
  std::error_code ec;
  llvm::raw_fd_ostream data(dataTmp, ec);
  if (ec)
    return fail("cannot write " + dataPath.str() + ": " + ec.message());
  uint64_t offset = 0;
  llvm::StringMap<std::unique_ptr<llvm::MemoryBuffer>> files;
  for (::onnx::TensorProto &t : *model.mutable_graph()->mutable_initializer()) {
    std::string bytes;
    if (t.data_location() == ::onnx::TensorProto::EXTERNAL) {
      std::string location;
      uint64_t off = 0, len = 0;
      bool hasLength = false;
      for (const auto &e : t.external_data()) {
        if (e.key() == "location")
          location = e.value();
        else if (e.key() == "offset")
          off = std::stoull(e.value());
        else if (e.key() == "length")
          len = std::stoull(e.value()), hasLength = true;
      }
      SmallString<256> path(options.modelDir);
      llvm::sys::path::append(path, location);
      auto &file = files[path];
      if (!file) {
        auto buffer =
            llvm::MemoryBuffer::getFile(path, /*IsText=*/false,
                                        /*RequiresNullTerminator=*/false);
        if (!buffer)
          return fail("cannot read the external data " + path.str().str() +
                      " of '" + t.name() + "'");
        file = std::move(*buffer);
      }
      if (!hasLength) {
        // ONNX allows leaving it out: the tensor's own size.
        int64_t count = 1;
        for (int64_t d : t.dims())
          count *= d;
        int64_t size = elementBytes(t.data_type());
        if (!size)
          return fail("the external data of '" + t.name() +
                      "' has no length and an element type of unknown size");
        len = uint64_t(count * size);
      }
      if (off > file->getBufferSize() || len > file->getBufferSize() - off)
        return fail("the external data of '" + t.name() + "' lies outside " +
                    path.str().str());
      bytes.assign(file->getBufferStart() + off, len);
    } else if (t.has_raw_data()) {
      bytes.swap(*t.mutable_raw_data()); // no second copy of the weights
    } else {
      continue; // typed fields: small, kept in the model
    }
    if (bytes.size() <= 1024) {
      t.clear_external_data();
      t.set_data_location(::onnx::TensorProto::DEFAULT);
      t.set_raw_data(std::move(bytes));
      continue;
    }
    uint64_t pad = (64 - offset % 64) % 64;
    data << std::string(pad, '\0') << bytes;
    offset += pad;
    t.clear_raw_data();
    t.clear_external_data();
    t.set_data_location(::onnx::TensorProto::EXTERNAL);
    auto add = [&](StringRef key, const std::string &value) {
      auto *e = t.add_external_data();
      e->set_key(key.str());
      e->set_value(value);
    };
    add("location", dataName);
    add("offset", std::to_string(offset));
    add("length", std::to_string(bytes.size()));
    offset += bytes.size();
  }
  data.close();
  if (data.has_error()) {
    data.clear_error();
    return fail("cannot write " + dataPath.str());
  }
  {
    llvm::raw_fd_ostream out(modelTmp, ec);
    if (ec)
      return fail("cannot write " + options.outPath + ": " + ec.message());
    std::string bytes;
    if (!model.SerializeToString(&bytes))
      return fail("the model does not serialize (over 2 GiB of graph?)");
    out << bytes;
    out.close();
    if (out.has_error()) {
      out.clear_error();
      return fail("cannot write " + options.outPath);
    }
  }
  if ((ec = llvm::sys::fs::rename(dataTmp, dataPath)) ||
      (ec = llvm::sys::fs::rename(modelTmp, options.outPath)))
    return fail("cannot rename the written files: " + ec.message());
  return success();
}

LogicalResult Exporter::run() {
  for (const auto &o : model.opset_import())
    if (o.domain().empty() || o.domain() == "ai.onnx")
      opset = o.version();
  const ::onnx::GraphProto &graph = model.graph();
  for (int i = 0; i < graph.node_size(); ++i) {
    const ::onnx::NodeProto &n = graph.node(i);
    std::string name =
        n.name().empty() ? n.op_type() + "_" + std::to_string(i) : n.name();
    auto [it, fresh] = nodeIndex.try_emplace(name, i);
    if (!fresh)
      it->second = -1;
    if ((n.domain().empty() || n.domain() == "ai.onnx") &&
        (n.op_type() == "GroupNormalization" || n.op_type() == "GridSample" ||
         n.op_type() == "DFT"))
      raisable = false;
    for (const auto &o : n.output())
      taken.insert(o);
  }
  for (const auto &v : graph.input())
    taken.insert(v.name());
  for (const auto &t : graph.initializer())
    taken.insert(t.name());

  if (failed(checkParams()))
    return failure();
  // Layers, in order; everything a pass inserted must be part of one.
  WalkResult walk = module.walk([&](Operation *op) {
    if (auto embedding = dyn_cast<LoRAEmbeddingOp>(op)) {
      consumed.insert(op);
      auto it = record.layers.find("@" + rootName(op));
      if (it == record.layers.end())
        return error(op) << "embedding '" << rootName(op)
                         << "' is not in the original graph",
               WalkResult::interrupt();
      return failed(exportEmbedding(embedding, it->second))
                 ? WalkResult::interrupt()
                 : WalkResult::advance();
    }
    if (!isa<LinearOp, LoRAOp>(op))
      return WalkResult::advance();
    if (consumed.contains(op))
      return WalkResult::advance();
    StringAttr moduleName = isa<LinearOp>(op)
                                ? cast<LinearOp>(op).getModuleAttr()
                                : cast<LoRAOp>(op).getModuleAttr();
    auto it = record.layers.find(layerKey(op, moduleName));
    if (it == record.layers.end())
      it = record.layers.find("@" + rootName(op));
    if (it == record.layers.end())
      return error(op) << "linear layer '" << layerKey(op, moduleName)
                       << "' is not in the original graph",
             WalkResult::interrupt();
    if (it->second.ambiguous)
      return error(op) << "module path '" << it->first()
                       << "' names several layers of the graph",
             WalkResult::interrupt();
    return failed(exportLayer(op, it->second)) ? WalkResult::interrupt()
                                               : WalkResult::advance();
  });
  if (walk.wasInterrupted())
    return failure();
  walk = module.walk([&](Operation *op) {
    if (isa<HadamardOp, SmoothOp, FakeQuantOp, LSQOp, LoRAEmbeddingOp,
            RandLoRAScaleOp, RandLoRAFlattenOp>(op) &&
        !consumed.contains(op))
      return error(op) << "'" << op->getName()
                       << "' is not part of a linear layer's input or weight, "
                          "which is all the export rewrites",
             WalkResult::interrupt();
    return WalkResult::advance();
  });
  // (Initializers only re-emitted layers read are gone by then.)
  if (walk.wasInterrupted() || failed(finish()) || failed(updateInitializers()))
    return failure();
  return write();
}

LogicalResult mlir::qopt::exportONNX(ModuleOp module,
                                     const ONNXExportRecord &record,
                                     const ONNXExportOptions &options) {
  auto buffer = llvm::MemoryBuffer::getFile(options.modelPath, false, false);
  if (!buffer)
    return emitError(module.getLoc())
           << "--export-onnx: cannot read " << options.modelPath;
  ::onnx::ModelProto model;
  std::string why;
  if (!::qopt::onnx_import::parseModelBinary(
          (*buffer)->getBufferStart(), (*buffer)->getBufferSize(), model, why))
    return emitError(module.getLoc())
           << "--export-onnx: " << options.modelPath << ": " << why;
  Exporter exporter(module, record, options, model);
  return exporter.run();
}
