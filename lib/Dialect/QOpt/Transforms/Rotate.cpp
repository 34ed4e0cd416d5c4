//===- Rotate.cpp - QuaRot: Hadamard rotations of the residual stream -----===//
//
// qopt-rotate makes a pre-norm transformer's residual stream Q·h for a
// randomized Hadamard rotation Q: RMSNorm commutes with Q once its scale is
// folded into the layers after it, so Q folds into the weights that write
// the stream (rows: Q·W) and read it (W·Qᵀ), and the float function is
// unchanged. Inputs no offline rotation reaches (the attention output, the
// MLP's product) get online Hadamards instead.
//
//===----------------------------------------------------------------------===//

#include "qopt/Dialect/QOpt/IR/QOpt.h"
#include "qopt/Dialect/QOpt/Transforms/Passes.h"
#include "qopt/Dialect/QOpt/Transforms/Weights.h"
#include "qopt/Support/Hadamard.h"
#include "qopt/Support/Random.h"

#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/Builders.h"
#include "mlir/IR/BuiltinOps.h"
#include "llvm/ADT/SetVector.h"

#include <cmath>

namespace mlir::qopt {
#define GEN_PASS_DEF_QOPTROTATEPASS
#include "qopt/Dialect/QOpt/Transforms/Passes.h.inc"
} // namespace mlir::qopt

using namespace mlir;
using namespace mlir::qopt;
namespace dense = ::qopt::dense;
namespace hadamard = ::qopt::hadamard;

namespace {

/// A rotation of n-vectors: (1/√b)·H_b·diag(signs) on each block of b.
struct Rotation {
  int64_t n = 0, block = 0;
  std::vector<float> signs; // one per element of a block
  std::vector<int8_t> base;

  /// v ← Q·v for one n-vector.
  void apply(float *v) const {
    for (int64_t at = 0; at < n; at += block) {
      for (int64_t i = 0; i < block; ++i)
        v[at + i] *= signs[size_t(i)];
      hadamard::apply(v + at, block, base);
    }
  }
  /// Every row of `m` (… × n) rotated.
  void applyRows(dense::Matrix &m) const {
    for (int64_t r = 0; r < m.rows; ++r)
      apply(&m.at(r, 0));
  }
  /// Every column of `m` (n × …) rotated: Q·m.
  void applyColumns(dense::Matrix &m) const {
    dense::Matrix t = dense::transpose(m);
    applyRows(t);
    m = dense::transpose(t);
  }
};

/// Whether the module path `name` is `pattern` or ends with `.pattern`.
bool matchesSuffix(StringRef name, StringRef pattern) {
  return name == pattern || name.ends_with(("." + pattern).str());
}

struct RotatePass : mlir::qopt::impl::QOptRotatePassBase<RotatePass> {
  using Base::Base;

  void runOnOperation() override {
    ModuleOp module = getOperation();
    rng = ::qopt::Random(seed);
    if (failed(rotate(module)))
      return signalPassFailure();
  }

  LogicalResult rotate(ModuleOp module) {
    auto fail = [&](Operation *at, const Twine &message) {
      return at->emitError() << "qopt-rotate: " << message;
    };
    // The residual stream: from each embedding through the residual adds.
    SmallVector<ResidualAddOp> adds;
    module.walk([&](ResidualAddOp add) { adds.push_back(add); });
    if (adds.empty())
      return emitError(module.getLoc())
             << "qopt-rotate: no residual stream (qopt.residual_add) to "
                "rotate";
    llvm::SetVector<Value> stream;
    SmallVector<LinearOp> writers;
    SmallVector<EmbeddingOp> embeddings;
    for (ResidualAddOp add : adds) {
      stream.insert(add.getResult());
      Value from = add.getStream();
      if (from.getDefiningOp<ResidualAddOp>())
        continue;
      auto embedding = from.getDefiningOp<EmbeddingOp>();
      if (!embedding) {
        Operation *def = from.getDefiningOp();
        return fail(add,
                    "the residual stream starts at " +
                        (def ? "'" + def->getName().getStringRef().str() + "'"
                             : std::string("a function argument")) +
                        ", not an embedding lookup");
      }
      if (!llvm::is_contained(embeddings, embedding))
        embeddings.push_back(embedding);
      stream.insert(from);
    }
    // Who writes it: linear layers' outputs, added.
    for (ResidualAddOp add : adds) {
      auto linear = add.getUpdate().getDefiningOp<LinearOp>();
      if (!linear)
        return fail(add, "the update of the residual add is not a linear "
                         "layer's output");
      if (!isa<RankedTensorType>(linear.getWeight().getType()))
        return fail(linear, "the weight of " + describe(linear) +
                                " is quantized already: rotate before "
                                "quantizing");
      if (!llvm::all_of(linear.getResult().getUsers(), [&](Operation *u) {
            return u == add.getOperation() || isa<tensor::DimOp>(u);
          }))
        return fail(linear, "the output of " + describe(linear) +
                                " is read by more than the residual add");
      writers.push_back(linear);
    }
    // Who reads it: norms, whose outputs only linear layers read.
    SmallVector<RMSNormOp> norms;
    SmallVector<LinearOp> readers;
    for (Value v : stream)
      for (Operation *user : v.getUsers()) {
        if (isa<tensor::DimOp>(user))
          continue;
        if (auto add = dyn_cast<ResidualAddOp>(user)) {
          if (add.getUpdate() == v && add.getStream() != v)
            return fail(add, "the residual stream is a residual add's update");
          continue;
        }
        if (auto norm = dyn_cast<RMSNormOp>(user)) {
          if (!llvm::is_contained(norms, norm))
            norms.push_back(norm);
          continue;
        }
        if (isa<LayerNormOp>(user))
          return fail(user, "a LayerNorm reads the residual stream: its mean "
                            "subtraction does not commute with rotations "
                            "(qopt-rotate handles RMSNorm models)");
        return fail(user, "'" + user->getName().getStringRef() +
                              "' reads the residual stream (only RMSNorms "
                              "and residual adds may)");
      }
    int64_t rank = cast<RankedTensorType>(stream[0].getType()).getRank();
    for (RMSNormOp norm : norms) {
      int64_t axis = norm.getAxis();
      if (axis != -1 && axis != rank - 1)
        return fail(norm, "the RMSNorm is not over the last axis");
      for (Operation *user : norm.getResult().getUsers()) {
        if (isa<tensor::DimOp>(user))
          continue;
        auto linear = dyn_cast<LinearOp>(user);
        if (!linear || linear.getInput() != norm.getResult())
          return fail(user, "'" + user->getName().getStringRef() +
                                "' reads an RMSNorm of the residual stream "
                                "(only linear layers may)");
        if (!isa<RankedTensorType>(linear.getWeight().getType()))
          return fail(linear, "the weight of " + describe(linear) +
                                  " is quantized already: rotate before "
                                  "quantizing");
        readers.push_back(linear);
      }
    }
    auto streamType = cast<RankedTensorType>(stream[0].getType());
    int64_t n = streamType.getShape().back();
    if (ShapedType::isDynamic(n)) {
      auto table = cast<RankedTensorType>(embeddings[0].getWeight().getType());
      n = table.getShape().back();
    }
    FailureOr<Rotation> q = makeRotation(n, module, "the hidden size");
    if (failed(q))
      return failure();

    llvm::StringSet<> before = paramNames(module);
    SymbolTable symbols(module);
    symbolTable = &symbols;
    WeightReader reader(modelDir);
    readerPtr = &reader;

    // 1. Norm scales into the readers, then the readers: W ← W·diag(γ)·Qᵀ.
    for (RMSNormOp norm : norms) {
      FailureOr<dense::Matrix> gamma = evaluate(norm.getGamma(), norm, "scale");
      if (failed(gamma))
        return failure();
      if (int64_t(gamma->data.size()) != n)
        return fail(norm, "the RMSNorm's scale has " +
                              std::to_string(gamma->data.size()) +
                              " values for a hidden size of " +
                              std::to_string(n));
      for (Operation *user : norm.getResult().getUsers()) {
        auto linear = dyn_cast<LinearOp>(user);
        if (!linear)
          continue;
        FailureOr<dense::Matrix> w =
            evaluate(linear.getWeight(), linear, "weight");
        if (failed(w))
          return failure();
        for (int64_t r = 0; r < w->rows; ++r)
          for (int64_t c = 0; c < w->cols; ++c)
            w->at(r, c) *= gamma->data[size_t(c)];
        q->applyRows(*w);
        if (failed(replace(linear, linear.getWeightMutable(), w->data,
                           name(linear) + ".weight")))
          return failure();
      }
      std::vector<float> ones(size_t(n), 1.0f);
      std::string gammaName = "rotated_norm.weight";
      if (auto load = norm.getGamma().getDefiningOp<LoadParamOp>())
        gammaName = load.getName().str();
      if (failed(replace(norm, norm.getGammaMutable(), ones, gammaName)))
        return failure();
    }
    // 2. Writers: Q·W, Q·b.
    for (LinearOp linear : writers) {
      FailureOr<dense::Matrix> w =
          evaluate(linear.getWeight(), linear, "weight");
      if (failed(w))
        return failure();
      if (w->rows != n)
        return fail(linear,
                    describe(linear) + " writes " + std::to_string(w->rows) +
                        " features into a stream of " + std::to_string(n));
      q->applyColumns(*w);
      if (failed(replace(linear, linear.getWeightMutable(), w->data,
                         name(linear) + ".weight")))
        return failure();
      if (Value bias = linear.getBias()) {
        FailureOr<dense::Matrix> b = evaluate(bias, linear, "bias");
        if (failed(b))
          return failure();
        q->apply(b->data.data());
        if (failed(replace(linear, linear.getBiasMutable()[0], b->data,
                           name(linear) + ".bias")))
          return failure();
      }
    }
    // 3. The embedding tables' rows.
    for (EmbeddingOp embedding : embeddings) {
      if (!isa<RankedTensorType>(embedding.getWeight().getType()))
        return fail(embedding, "the embedding table is quantized already");
      FailureOr<dense::Matrix> table =
          evaluate(embedding.getWeight(), embedding, "table");
      if (failed(table))
        return failure();
      q->applyRows(*table);
      std::string tableName = "rotated_embedding.weight";
      if (auto module = embedding.getModule())
        tableName = (*module + ".weight").str();
      if (failed(replace(embedding, embedding.getWeightMutable(), table->data,
                         tableName)))
        return failure();
    }
    // 4. Online Hadamards before the named layers.
    SmallVector<std::string> onlineNames(online.begin(), online.end());
    if (onlineNames.empty())
      onlineNames = {"o_proj", "down_proj"};
    if (!(onlineNames.size() == 1 && onlineNames[0] == "none")) {
      SmallVector<LinearOp> targets;
      module.walk([&](LinearOp linear) {
        if (linear.getModule() &&
            llvm::any_of(onlineNames, [&](const std::string &p) {
              return matchesSuffix(*linear.getModule(), p);
            }))
          targets.push_back(linear);
      });
      if (targets.empty())
        return emitError(module.getLoc())
               << "qopt-rotate: online=" << llvm::join(onlineNames, ",")
               << " names no linear layer";
      for (LinearOp linear : targets)
        if (failed(rotateInput(linear)))
          return failure();
    }
    eraseDeadOps(maybeDead, symbols);
    restoreParamNames(module, before, symbols);
    return success();
  }

  /// y = W·(Qᵀ·(Q·x)): an online qopt.hadamard on the input, Qᵀ folded into
  /// the weight.
  LogicalResult rotateInput(LinearOp linear) {
    if (!isa<RankedTensorType>(linear.getWeight().getType()))
      return linear.emitError()
             << "qopt-rotate: the weight of " << describe(linear)
             << " is quantized already: rotate before quantizing";
    FailureOr<dense::Matrix> w = evaluate(linear.getWeight(), linear, "weight");
    if (failed(w))
      return failure();
    FailureOr<Rotation> r =
        makeRotation(w->cols, linear, "the input of " + describe(linear));
    if (failed(r))
      return failure();
    r->applyRows(*w);
    if (failed(replace(linear, linear.getWeightMutable(), w->data,
                       name(linear) + ".weight")))
      return failure();
    auto type = cast<RankedTensorType>(linear.getInput().getType());
    auto signsType = RankedTensorType::get({r->block}, type.getElementType());
    ParamOp signs =
        createFloatParam(*symbolTable, linear.getLoc(),
                         name(linear) + ".hadamard_signs", signsType, r->signs);
    if (!signs)
      return failure();
    OpBuilder b(linear);
    Value s =
        LoadParamOp::create(b, linear.getLoc(), signsType, signs.getSymName());
    // A block over an axis whose size only the weight fixes.
    bool whole = r->block == r->n && !type.isDynamicDim(type.getRank() - 1);
    auto rotated = HadamardOp::create(
        b, linear.getLoc(), type, linear.getInput(), s, b.getI64IntegerAttr(-1),
        whole ? IntegerAttr() : b.getI64IntegerAttr(r->block));
    linear.getInputMutable().assign(rotated.getResult());
    return success();
  }

  /// A rotation of n-vectors, or an error at `at` naming `what`.
  FailureOr<Rotation> makeRotation(int64_t n, Operation *at,
                                   const Twine &what) {
    Rotation r;
    r.n = n;
    r.block = n;
    if (!hadamard::isSupported(n)) {
      int64_t block = hadamard::largestSupportedDivisor(n);
      if (!blockFallback)
        return at->emitError()
               << "qopt-rotate: no Hadamard matrix of order " << n << " ("
               << what.str() << "); the nearest block-diagonal rotation is "
               << "block = " << block << " (block-fallback=true)";
      r.block = block;
    }
    r.base = hadamard::baseMatrix(hadamard::split(r.block).base);
    r.signs.assign(size_t(r.block), 1.0f);
    if (random)
      for (float &v : r.signs)
        v = (rng.next() >> 63) ? -1.0f : 1.0f;
    return r;
  }

  static std::string describe(LinearOp linear) {
    return linear.getModule() ? "'" + linear.getModule()->str() + "'"
                              : std::string("a linear layer");
  }
  static std::string name(LinearOp linear) {
    return linear.getModule() ? linear.getModule()->str()
                              : std::string("rotated_linear");
  }

  FailureOr<dense::Matrix> evaluate(Value value, Operation *op,
                                    StringRef what) {
    return evaluateOrError(*readerPtr, value, *symbolTable, op, "qopt-rotate",
                           what);
  }

  LogicalResult replace(Operation *op, OpOperand &operand,
                        ArrayRef<float> values, const Twine &preferred) {
    return replaceWithParam(*symbolTable, op, operand, values, preferred.str(),
                            maybeDead);
  }

  ::qopt::Random rng{0};
  SymbolTable *symbolTable = nullptr;
  WeightReader *readerPtr = nullptr;
  SmallVector<Operation *> maybeDead;
};

} // namespace
