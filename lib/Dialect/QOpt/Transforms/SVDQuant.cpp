//===- SVDQuant.cpp - Low-rank branch plus a quantized residual -----------===//
//
// qopt-svdquant splits each selected weight into its top singular part,
// kept as a float low-rank branch, and a residual without the outliers the
// branch absorbed, which quantizes well. The layer becomes two products of
// the same input: the quantized base (keeping the module path, so that
// activation quantizers select it) and the unnamed branch.
//
//===----------------------------------------------------------------------===//

#include "qopt/Dialect/QOpt/IR/QOpt.h"
#include "qopt/Dialect/QOpt/Transforms/LoraTargets.h"
#include "qopt/Dialect/QOpt/Transforms/Passes.h"
#include "qopt/Dialect/QOpt/Transforms/Weights.h"

#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/Builders.h"
#include "mlir/IR/BuiltinOps.h"

#include <algorithm>
#include <cmath>

namespace mlir::qopt {
#define GEN_PASS_DEF_QOPTSVDQUANTPASS
#include "qopt/Dialect/QOpt/Transforms/Passes.h.inc"
} // namespace mlir::qopt

using namespace mlir;
using namespace mlir::qopt;
namespace dense = ::qopt::dense;

namespace {

/// fn applied elementwise to same-shaped tensors, giving `element`s.
Value mapTensors(OpBuilder &b, Location loc, ValueRange inputs, Type element,
                 function_ref<Value(OpBuilder &, Location, ValueRange)> fn) {
  int64_t rank = cast<RankedTensorType>(inputs[0].getType()).getRank();
  Value init = tensor::EmptyOp::create(
      b, loc, tensor::getMixedSizes(b, loc, inputs[0]), element);
  SmallVector<AffineMap> maps(inputs.size() + 1,
                              b.getMultiDimIdentityMap(rank));
  SmallVector<utils::IteratorType> par(rank, utils::IteratorType::parallel);
  return linalg::GenericOp::create(
             b, loc, init.getType(), inputs, init, maps, par,
             [&](OpBuilder &nb, Location l, ValueRange args) {
               linalg::YieldOp::create(nb, l, fn(nb, l, args));
             })
      .getResult(0);
}

/// Each value rounded to `kind` (round to nearest even) and back.
void roundTo(dense::FloatKind kind, std::vector<float> &values) {
  std::vector<char> bytes(values.size() * dense::floatKindBytes(kind));
  dense::encodeFloats(kind, values.data(), values.size(), bytes.data());
  dense::decodeFloats(kind, bytes.data(), values.size(), values.data());
}

struct SVDQuantPass : mlir::qopt::impl::QOptSVDQuantPassBase<SVDQuantPass> {
  using Base::Base;

  void runOnOperation() override {
    ModuleOp module = getOperation();
    Location loc = module.getLoc();
    auto fail = [&](const Twine &message) {
      emitError(loc) << "qopt-svdquant: " << message;
      signalPassFailure();
    };
    if (rank < 1)
      return fail("rank must be at least 1, got " + Twine(int64_t(rank)));
    if (svd != "exact" && svd != "randomized" && svd != "auto")
      return fail("svd '" + svd + "' is not exact, randomized or auto");
    if (branchType != "auto" && branchType != "bf16" && branchType != "f16" &&
        branchType != "f32")
      return fail("branch-type '" + branchType +
                  "' is not auto, bf16, f16 or f32");
    QuantizeSpec spec;
    if (!weights.empty())
      if (std::optional<std::string> why = parseQuantizeSpec(weights, spec))
        return fail("weights '" + weights + "': " + *why);

    llvm::Expected<SmallVector<LinearOp>> linears = selectFloatLinears(
        module,
        std::vector<std::string>(targetModules.begin(), targetModules.end()),
        std::vector<std::string>(excludeModules.begin(), excludeModules.end()),
        "decompose");
    if (!linears)
      return fail(llvm::toString(linears.takeError()));

    llvm::StringSet<> before = paramNames(module);
    SymbolTable symbols(module);
    WeightReader reader(modelDir);
    SmallVector<Operation *> maybeDead;
    for (LinearOp linear : *linears) {
      std::string name = linear.getModule()->str();
      FailureOr<dense::Matrix> w =
          evaluateOrError(reader, linear.getWeight(), symbols, linear,
                          "qopt-svdquant", "weight", &maybeDead);
      if (failed(w))
        return signalPassFailure();
      // W = U·S·Vᵀ: B = U·S (N×r), A = Vᵀ (r×K); R = W - B·A.
      int64_t r = std::min({int64_t(rank), w->rows, w->cols});
      dense::Matrix u, vt;
      std::vector<float> s;
      bool randomized = svd == "randomized" ||
                        (svd == "auto" && std::min(w->rows, w->cols) > 512);
      if (randomized)
        dense::topSingularRandomized(*w, r, u, s, vt);
      else
        dense::topSingular(*w, r, u, s, vt);
      dense::Matrix bm(w->rows, r);
      for (int64_t i = 0; i < w->rows; ++i)
        for (int64_t k = 0; k < r; ++k)
          bm.at(i, k) = u.at(i, k) * s[size_t(k)];
      // The branch's element type; the input's must be at least as wide.
      auto xType = cast<RankedTensorType>(linear.getInput().getType());
      Type element = xType.getElementType();
      MLIRContext *ctx = &getContext();
      Type factorType = branchType == "bf16"  ? Type(BFloat16Type::get(ctx))
                        : branchType == "f16" ? Type(Float16Type::get(ctx))
                        : branchType == "f32" ? Type(Float32Type::get(ctx))
                                              : element;
      if (factorType != element && factorType.getIntOrFloatBitWidth() >=
                                       element.getIntOrFloatBitWidth()) {
        std::string input;
        llvm::raw_string_ostream(input) << element;
        return fail("branch-type " + branchType +
                    " is not narrower than the input of " + name + " (" +
                    input + ")");
      }
      // Factors stored narrower than f32: the residual is taken against
      // their rounded values.
      if (factorType.getIntOrFloatBitWidth() < 32) {
        std::optional<dense::FloatKind> kind = getFloatKind(factorType);
        if (!kind)
          return fail("branch-type " + branchType + " has no encoding");
        roundTo(*kind, bm.data);
        roundTo(*kind, vt.data);
        // (f16 tops out at 65504; B = U·S carries the singular values.)
        auto finite = [](const std::vector<float> &v) {
          return llvm::all_of(v, [](float x) { return std::isfinite(x); });
        };
        if (!finite(bm.data) || !finite(vt.data)) {
          std::string top;
          llvm::raw_string_ostream(top) << (s.empty() ? 0.0f : s[0]);
          return fail("branch-type " + branchType +
                      ": the low-rank factors of " + name +
                      " overflow it (largest singular value " + top +
                      "); use bf16 or f32");
        }
      }
      dense::Matrix residual = *w;
      dense::gemm(false, false, -1.0f, bm, vt, 1.0f, residual);

      Location l = linear.getLoc();
      OpBuilder b(linear);
      Value old = linear.getWeight();
      if (weights.empty()) {
        if (failed(replaceWithParam(symbols, linear, linear.getWeightMutable(),
                                    residual.data, name + ".weight",
                                    maybeDead)))
          return signalPassFailure();
      } else {
        QuantizedWeight q = quantizeMatrix(&getContext(), spec, residual);
        Value packed =
            createQuantizedWeight(symbols, linear, name + ".weight", q);
        if (!packed)
          return signalPassFailure();
        linear.getWeightMutable().assign(packed);
        if (Operation *def = old.getDefiningOp())
          maybeDead.push_back(def);
      }
      // The layer's readers, before the new ops read it too.
      SmallVector<OpOperand *> readers;
      for (OpOperand &use : linear.getResult().getUses())
        readers.push_back(&use);
      // The branch: two products of the same input, the factors widened to
      // its element type where they are stored narrower.
      auto aType = RankedTensorType::get({r, w->cols}, factorType);
      auto bType = RankedTensorType::get({w->rows, r}, factorType);
      ParamOp a = createFloatParam(symbols, l, name + ".svd_A", aType, vt.data);
      ParamOp bp =
          createFloatParam(symbols, l, name + ".svd_B", bType, bm.data);
      if (!a || !bp)
        return signalPassFailure();
      b.setInsertionPointAfter(linear);
      Value av = LoadParamOp::create(b, l, aType, a.getSymName());
      Value bv = LoadParamOp::create(b, l, bType, bp.getSymName());
      if (factorType != element) {
        auto extend = [&](OpBuilder &nb, Location el, ValueRange args) {
          return Value(arith::ExtFOp::create(nb, el, element, args[0]));
        };
        av = mapTensors(b, l, av, element, extend);
        bv = mapTensors(b, l, bv, element, extend);
      }
      SmallVector<int64_t> downShape(xType.getShape());
      downShape.back() = r;
      auto downType = RankedTensorType::get(downShape, element);
      Value down =
          LinearOp::create(b, l, downType, linear.getInput(), av, Value())
              .getResult();
      Value up = LinearOp::create(b, l, linear.getResult().getType(), down, bv,
                                  Value())
                     .getResult();
      Value sum = mapTensors(
          b, l, {linear.getResult(), up}, element,
          [](OpBuilder &nb, Location el, ValueRange args) {
            return Value(arith::AddFOp::create(nb, el, args[0], args[1]));
          });
      for (OpOperand *use : readers)
        use->set(sum);
    }
    eraseDeadOps(maybeDead, symbols);
    restoreParamNames(module, before, symbols);
  }
};

} // namespace
