//===- Smooth.cpp - SmoothQuant: activation outliers into the weights -----===//
//
// qopt-smooth scales each smoothed input down per channel and the weights
// that read it up by the same factors. Where the input's producer is linear
// in each channel (a norm's scale, a linear layer's rows, one factor of an
// elementwise product), the division is folded into its parameters, so the
// smoothed model runs no extra op.
//
//===----------------------------------------------------------------------===//

#include "qopt/Dialect/QOpt/IR/QOpt.h"
#include "qopt/Dialect/QOpt/Transforms/LoraTargets.h"
#include "qopt/Dialect/QOpt/Transforms/Passes.h"
#include "qopt/Dialect/QOpt/Transforms/Weights.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/Builders.h"
#include "mlir/IR/BuiltinOps.h"
#include "llvm/ADT/MapVector.h"

#include <cmath>

namespace mlir::qopt {
#define GEN_PASS_DEF_QOPTSMOOTHPASS
#include "qopt/Dialect/QOpt/Transforms/Passes.h.inc"
} // namespace mlir::qopt

using namespace mlir;
using namespace mlir::qopt;
namespace dense = ::qopt::dense;

namespace {

/// Whether `op` is an elementwise product of two tensors of its result's
/// type (identity maps, body `a * b`).
bool isElementwiseProduct(linalg::GenericOp op) {
  if (op.getNumDpsInputs() != 2 || op.getNumDpsInits() != 1 ||
      op.getNumReductionLoops() != 0)
    return false;
  for (AffineMap map : op.getIndexingMapsArray())
    if (!map.isIdentity())
      return false;
  Block &body = op.getRegion().front();
  if (body.getOperations().size() != 2)
    return false;
  auto mul = dyn_cast<arith::MulFOp>(body.front());
  auto yield = dyn_cast<linalg::YieldOp>(body.getTerminator());
  if (!mul || !yield || yield.getNumOperands() != 1 ||
      yield.getOperand(0) != mul.getResult())
    return false;
  Value a = mul.getLhs(), b = mul.getRhs();
  auto isArg = [&](Value v, unsigned i) { return v == body.getArgument(i); };
  return (isArg(a, 0) && isArg(b, 1)) || (isArg(a, 1) && isArg(b, 0));
}

struct SmoothPass : mlir::qopt::impl::QOptSmoothPassBase<SmoothPass> {
  using Base::Base;

  void runOnOperation() override {
    ModuleOp module = getOperation();
    Location loc = module.getLoc();
    auto fail = [&](const Twine &message) {
      emitError(loc) << "qopt-smooth: " << message;
      signalPassFailure();
    };
    if (!(alpha >= 0.0 && alpha <= 1.0))
      return fail("alpha must be in [0, 1], got " +
                  std::to_string(double(alpha)));
    std::string statsPath = stats;
    if (statsPath.empty())
      if (auto attr = module->getAttrOfType<StringAttr>(kCalibrationStatsAttr))
        statsPath = attr.str();
    if (statsPath.empty())
      return fail("needs calibration statistics: stats=FILE (qopt-calibrate "
                  "writes them) or qoptc --calibration-data");
    std::string why;
    std::optional<LayerStatsFile> file = LayerStatsFile::read(statsPath, why);
    if (!file)
      return fail("stats '" + statsPath + "': " + why);
    statsFile = &*file;

    llvm::Expected<SmallVector<LinearOp>> linears = selectFloatLinears(
        module,
        std::vector<std::string>(targetModules.begin(), targetModules.end()),
        std::vector<std::string>(excludeModules.begin(), excludeModules.end()),
        "smooth");
    if (!linears)
      return fail(llvm::toString(linears.takeError()));
    // The selected layers, grouped by the input they read.
    llvm::MapVector<Value, SmallVector<LinearOp>> groups;
    for (LinearOp linear : *linears)
      groups[linear.getInput()].push_back(linear);

    llvm::StringSet<> before = paramNames(module);
    SymbolTable symbols(module);
    symbolTable = &symbols;
    WeightReader reader(modelDir);
    readerPtr = &reader;
    for (auto &[input, group] : groups)
      if (failed(smoothGroup(input, group)))
        return signalPassFailure();
    eraseDeadOps(maybeDead, symbols);
    restoreParamNames(module, before, symbols);
  }

  /// The factors for the layers of `group` (sharing `input`), applied.
  LogicalResult smoothGroup(Value input, ArrayRef<LinearOp> group) {
    // K from the weights (N×K, static): the input's last size may be open.
    LinearOp head = group.front();
    int64_t k =
        cast<RankedTensorType>(head.getWeight().getType()).getShape().back();
    if (ShapedType::isDynamic(k))
      return head.emitError() << "qopt-smooth: the weight of '"
                              << *head.getModule() << "' has a dynamic shape";
    std::vector<float> actMax(size_t(k), 0.0f), weightMax(size_t(k), 0.0f);
    std::vector<dense::Matrix> weights;
    for (LinearOp linear : group) {
      StringRef name = *linear.getModule();
      std::string why;
      std::optional<std::vector<float>> absmax =
          statsFile->values((name + ".input_absmax").str(), name, {k}, why);
      if (!absmax)
        return linear.emitError() << "qopt-smooth: stats: " << why;
      for (int64_t c = 0; c < k; ++c)
        actMax[c] = std::max(actMax[c], (*absmax)[c]);
      FailureOr<dense::Matrix> w =
          evaluate(linear.getWeight(), linear, "weight");
      if (failed(w))
        return failure();
      for (int64_t n = 0; n < w->rows; ++n)
        for (int64_t c = 0; c < k; ++c)
          weightMax[c] = std::max(weightMax[c], std::fabs(w->at(n, c)));
      weights.push_back(std::move(*w));
    }
    std::vector<float> s(static_cast<size_t>(k));
    for (int64_t c = 0; c < k; ++c) {
      double v = std::pow(std::max(double(actMax[c]), 1e-5), double(alpha)) /
                 std::pow(std::max(double(weightMax[c]), 1e-5), 1.0 - alpha);
      s[c] = float(std::max(v, 1e-5));
    }
    // A scale stored in a narrower float type (an explicit qopt.smooth of
    // an f16 / bf16 input) is rounded: the weights take the same values.
    Type element = cast<RankedTensorType>(input.getType()).getElementType();
    if (std::optional<dense::FloatKind> kind = getFloatKind(element)) {
      std::vector<char> bytes(s.size() * dense::floatKindBytes(*kind));
      dense::encodeFloats(*kind, s.data(), s.size(), bytes.data());
      dense::decodeFloats(*kind, bytes.data(), s.size(), s.data());
    }
    // The division first (it may fail), then the weights' columns.
    if (failed(divideInput(input, group, s)))
      return failure();
    for (size_t i = 0; i < group.size(); ++i) {
      LinearOp linear = group[i];
      dense::Matrix &w = weights[i];
      for (int64_t n = 0; n < w.rows; ++n)
        for (int64_t c = 0; c < k; ++c)
          w.at(n, c) *= s[c];
      if (failed(replace(linear, linear.getWeightMutable(), w.data,
                         *linear.getModule() + ".weight")))
        return failure();
    }
    return success();
  }

  /// input / s: folded into the producer where exact, else a qopt.smooth.
  LogicalResult divideInput(Value input, ArrayRef<LinearOp> group,
                            ArrayRef<float> s) {
    bool onlyGroup = llvm::all_of(input.getUsers(), [&](Operation *user) {
      return llvm::is_contained(group, user);
    });
    Operation *producer = input.getDefiningOp();
    if (fold && onlyGroup && producer) {
      FailureOr<bool> folded = foldInto(producer, input, s);
      if (failed(folded))
        return failure();
      if (*folded)
        return success();
    }
    // Explicit: y = x / s before the layers.
    LinearOp first = group.front();
    for (LinearOp linear : group)
      if (linear->isBeforeInBlock(first))
        first = linear;
    auto type = cast<RankedTensorType>(input.getType());
    auto scaleType =
        RankedTensorType::get({int64_t(s.size())}, type.getElementType());
    ParamOp param = createFloatParam(
        *symbolTable, first.getLoc(),
        (*first.getModule() + ".smooth_scale").str(), scaleType, s);
    if (!param)
      return failure();
    OpBuilder b(first);
    Value scale =
        LoadParamOp::create(b, first.getLoc(), scaleType, param.getSymName());
    Value smoothed =
        SmoothOp::create(b, first.getLoc(), type, input, scale).getResult();
    for (LinearOp linear : group)
      linear.getInputMutable().assign(smoothed);
    return success();
  }

  /// Folds `1/s` into `producer` (of `input`); false when it cannot.
  FailureOr<bool> foldInto(Operation *producer, Value input,
                           ArrayRef<float> s) {
    int64_t rank = cast<RankedTensorType>(input.getType()).getRank();
    auto lastAxis = [&](int64_t axis) {
      return axis == -1 || axis == rank - 1;
    };
    if (auto norm = dyn_cast<RMSNormOp>(producer)) {
      if (!lastAxis(norm.getAxis()))
        return false;
      if (failed(scaleVector(norm, norm.getGammaMutable(), s)))
        return failure();
      return true;
    }
    if (auto norm = dyn_cast<LayerNormOp>(producer)) {
      if (!lastAxis(norm.getAxis()))
        return false;
      if (failed(scaleVector(norm, norm.getGammaMutable(), s)))
        return failure();
      if (norm.getBeta() &&
          failed(scaleVector(norm, norm.getBetaMutable()[0], s)))
        return failure();
      return true;
    }
    if (auto linear = dyn_cast<LinearOp>(producer))
      return scaleRows(linear, s);
    // A reshape that keeps the channels (GPT-2 flattens tokens before its
    // Conv1D products): fold into what it reshapes, when nothing but size
    // queries read that otherwise.
    if (isa<tensor::ReshapeOp, tensor::CollapseShapeOp, tensor::ExpandShapeOp>(
            producer)) {
      Value source = producer->getOperand(0);
      auto from = cast<RankedTensorType>(source.getType());
      auto to = cast<RankedTensorType>(input.getType());
      int64_t channels = to.getShape().back();
      bool sameChannels = !ShapedType::isDynamic(channels) &&
                          from.getShape().back() == channels;
      bool onlyHere = llvm::all_of(source.getUsers(), [&](Operation *user) {
        return user == producer || isa<tensor::DimOp>(user);
      });
      if (!sameChannels || !onlyHere || !source.getDefiningOp())
        return false;
      return foldInto(source.getDefiningOp(), source, s);
    }
    // One factor of an elementwise product: the factor a float linear
    // layer produces for this product alone.
    if (auto generic = dyn_cast<linalg::GenericOp>(producer);
        generic && isElementwiseProduct(generic))
      for (Value factor : generic.getDpsInputs()) {
        auto linear = factor.getDefiningOp<LinearOp>();
        if (linear && factor.hasOneUse() && factor.getType() == input.getType())
          return scaleRows(linear, s);
      }
    return false;
  }

  /// Divides the rows (and bias) of `linear`'s float weight by `s`.
  FailureOr<bool> scaleRows(LinearOp linear, ArrayRef<float> s) {
    if (!isa<RankedTensorType>(linear.getWeight().getType()) ||
        linear.getModule() == std::nullopt)
      return false;
    FailureOr<dense::Matrix> w = evaluate(linear.getWeight(), linear, "weight");
    if (failed(w))
      return failure();
    if (w->rows != int64_t(s.size()))
      return false;
    for (int64_t n = 0; n < w->rows; ++n)
      for (int64_t c = 0; c < w->cols; ++c)
        w->at(n, c) /= s[n];
    if (failed(replace(linear, linear.getWeightMutable(), w->data,
                       *linear.getModule() + ".weight")))
      return failure();
    if (Value bias = linear.getBias())
      if (failed(scaleVector(linear, linear.getBiasMutable()[0], s)))
        return failure();
    return true;
  }

  /// Replaces the 1-D operand `operand` of `op` by its values divided by
  /// `s`, in a new parameter.
  LogicalResult scaleVector(Operation *op, OpOperand &operand,
                            ArrayRef<float> s) {
    Value old = operand.get();
    FailureOr<dense::Matrix> v = evaluate(old, op, "scale");
    if (failed(v))
      return failure();
    if (v->data.size() != s.size())
      return op->emitError() << "qopt-smooth: a scale of " << v->data.size()
                             << " values for " << s.size() << " channels";
    for (size_t c = 0; c < s.size(); ++c)
      v->data[c] /= s[c];
    std::string name;
    if (auto load = old.getDefiningOp<LoadParamOp>())
      name = load.getName().str();
    else if (auto module = op->getAttrOfType<StringAttr>("module"))
      name = module.str() + ".bias";
    else
      name = "smoothed_norm.weight";
    return replace(op, operand, v->data, name);
  }

  FailureOr<dense::Matrix> evaluate(Value value, Operation *op,
                                    StringRef what) {
    return evaluateOrError(*readerPtr, value, *symbolTable, op, "qopt-smooth",
                           what);
  }

  LogicalResult replace(Operation *op, OpOperand &operand,
                        ArrayRef<float> values, const Twine &preferred) {
    return replaceWithParam(*symbolTable, op, operand, values, preferred.str(),
                            maybeDead);
  }

  LayerStatsFile *statsFile = nullptr;
  SymbolTable *symbolTable = nullptr;
  WeightReader *readerPtr = nullptr;
  SmallVector<Operation *> maybeDead;
};

} // namespace
