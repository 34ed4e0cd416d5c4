//===- LQLoRA.cpp - Quantized + low-rank decomposition of weights ---------===//
//
// LQ-LoRA (Guo et al., 2023): W ≈ Q + B·A by alternating quantization of
// what the low-rank part does not hold and an SVD of what quantization
// lost, optionally weighted by a rank-1 fit of the Fisher information, with
// each layer's (bits, rank) chosen under a memory budget. The layer becomes
// a `qopt.lora` on the packed Q whose factors fine-tuning trains.
//
//===----------------------------------------------------------------------===//

#include "qopt/Dialect/QOpt/Transforms/LoraTargets.h"
#include "qopt/Dialect/QOpt/Transforms/Passes.h"
#include "qopt/Dialect/QOpt/Transforms/Weights.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/IR/Builders.h"
#include "mlir/IR/BuiltinOps.h"
#include "llvm/Support/FormatVariadic.h"

#include <cmath>
#include <limits>

namespace mlir::qopt {
#define GEN_PASS_DEF_QOPTLQLORAPASS
#include "qopt/Dialect/QOpt/Transforms/Passes.h.inc"
} // namespace mlir::qopt

using namespace mlir;
using namespace mlir::qopt;
namespace dense = ::qopt::dense;

namespace {

/// The square roots of the rank-1 Fisher fit F̂ᵢⱼ = ρᵢ²·γⱼ²; empty for
/// the unweighted error.
struct FisherWeights {
  std::vector<double> row, col;
  bool empty() const { return row.empty(); }
};

/// Σ F̂ᵢⱼ · eᵢⱼ² (Σ eᵢⱼ² unweighted).
double weightedNorm2(const dense::Matrix &e, const FisherWeights &f) {
  double sum = 0;
  for (int64_t i = 0; i < e.rows; ++i) {
    double row = 0;
    for (int64_t j = 0; j < e.cols; ++j) {
      double v = e.at(i, j);
      if (!f.empty())
        v *= f.col[j];
      row += v * v;
    }
    sum += f.empty() ? row : row * f.row[i] * f.row[i];
  }
  return sum;
}

/// The top-`rank` (weighted) SVD of `res` as B (N×r) · A (r×K):
/// B = D_r⁻¹·U·√S, A = √S·Vᵀ·D_c⁻¹ of svd(D_r · res · D_c).
void lowRankFactors(const dense::Matrix &res, int64_t rank,
                    const FisherWeights &f, bool randomized, dense::Matrix &a,
                    dense::Matrix &b) {
  dense::Matrix scaled = res;
  if (!f.empty())
    for (int64_t i = 0; i < res.rows; ++i)
      for (int64_t j = 0; j < res.cols; ++j)
        scaled.at(i, j) = float(res.at(i, j) * f.row[i] * f.col[j]);
  dense::Matrix u, vt;
  std::vector<float> s;
  if (randomized)
    dense::topSingularRandomized(scaled, rank, u, s, vt);
  else
    dense::topSingular(scaled, rank, u, s, vt);
  a = dense::Matrix(rank, res.cols);
  b = dense::Matrix(res.rows, rank);
  for (int64_t k = 0; k < rank; ++k) {
    double root = std::sqrt(std::max(0.0f, s[k]));
    for (int64_t j = 0; j < res.cols; ++j)
      a.at(k, j) = float(root * vt.at(k, j) / (f.empty() ? 1.0 : f.col[j]));
    for (int64_t i = 0; i < res.rows; ++i)
      b.at(i, k) = float(root * u.at(i, k) / (f.empty() ? 1.0 : f.row[i]));
  }
}

/// One layer's W ≈ Q + B·A.
struct Decomposition {
  QuantizedWeight q;
  dense::Matrix a, b;
  int64_t rank = 0, rounds = 0;
  double quantError = 0; // Σ F̂·(W − deq(quantize(W)))²
  double error = 0;      // Σ F̂·(W − deq(Q) − B·A)², the best round's
};

/// LQ-LoRA's alternation on `w`, at most `iterations` rounds, stopping when
/// a round does not lower the error; the best round.
Decomposition decompose(MLIRContext *ctx, const QuantizeSpec &spec,
                        const dense::Matrix &w, int64_t rank,
                        int64_t iterations, const FisherWeights &f,
                        bool randomized) {
  Decomposition best;
  best.error = std::numeric_limits<double>::infinity();
  best.rank = rank;
  dense::Matrix lowRank(w.rows, w.cols); // B·A, zero at first
  for (int64_t round = 1; round <= iterations; ++round) {
    dense::Matrix target = w;
    for (size_t i = 0; i < target.data.size(); ++i)
      target.data[i] -= lowRank.data[i];
    QuantizedWeight q = quantizeMatrix(ctx, spec, target);
    dense::Matrix res = dequantizeMatrix(q);
    for (size_t i = 0; i < res.data.size(); ++i)
      res.data[i] = w.data[i] - res.data[i];
    if (round == 1)
      best.quantError = weightedNorm2(res, f);
    dense::Matrix a, b;
    lowRank = dense::Matrix(w.rows, w.cols);
    if (rank > 0) {
      lowRankFactors(res, rank, f, randomized, a, b);
      dense::gemm(false, false, 1.0f, b, a, 0.0f, lowRank);
    }
    dense::Matrix left = res;
    for (size_t i = 0; i < left.data.size(); ++i)
      left.data[i] -= lowRank.data[i];
    double error = weightedNorm2(left, f);
    if (best.rounds > 0 && !(error < best.error))
      break; // the first round is always kept
    best.q = std::move(q);
    best.a = std::move(a);
    best.b = std::move(b);
    best.error = error;
    best.rounds = round;
  }
  return best;
}

/// The widths a budget chooses from.
constexpr unsigned kWidths[] = {2, 3, 4, 5, 6, 8};

struct QOptLQLoRAPass : mlir::qopt::impl::QOptLQLoRAPassBase<QOptLQLoRAPass> {
  using Base::Base;

  /// A selected layer and its weight.
  struct Layer {
    std::string name;
    LinearOp linear;
    dense::Matrix w;
    FisherWeights fisher;
    Decomposition chosen;
  };

  void runOnOperation() override {
    ModuleOp module = getOperation();
    MLIRContext *ctx = &getContext();
    auto fail = [&](const Twine &message) {
      emitError(module.getLoc()) << "qopt-lq-lora: " << message;
      signalPassFailure();
    };
    QuantizeSpec spec;
    if (std::optional<std::string> why = parseQuantizeSpec(weights, spec))
      return fail("weights '" + weights + "': " + *why);
    if (iterations < 1)
      return fail("iterations must be at least 1, got " + Twine(iterations));
    if (svd != "exact" && svd != "randomized" && svd != "auto")
      return fail("svd '" + svd + "' is not exact, randomized or auto");
    bool budget = budgetBits != 0.0;
    if (budget && (!(budgetBits > 0) || !std::isfinite(budgetBits)))
      return fail("budget-bits must be a positive number of bits per weight");
    if (budget && !StringRef(spec.format).starts_with("int"))
      return fail("budget-bits chooses integer widths: give an integer "
                  "spec (int4:group=64,asym …), not " +
                  spec.format);
    if (!budget && !ranks.empty())
      return fail("'ranks' lists the ranks budget-bits chooses from; "
                  "without a budget give 'rank'");
    std::vector<int64_t> rankChoices(ranks.begin(), ranks.end());
    if (rankChoices.empty())
      rankChoices.push_back(rank);
    for (int64_t r : rankChoices)
      if (r < (budget ? 0 : 1))
        return fail("rank " + Twine(r) + " is not " +
                    (budget ? "0 or more" : "at least 1"));

    std::vector<LinearLayer> all = collectLinearLayers(module);
    llvm::Expected<LoraTargets> selected = selectWeightLayers(
        std::vector<std::string>(targetModules.begin(), targetModules.end()),
        std::vector<std::string>(excludeModules.begin(), excludeModules.end()),
        all);
    if (!selected)
      return fail(llvm::toString(selected.takeError()));
    SymbolTable symbols(module);
    WeightReader reader(modelDir);
    std::vector<Layer> layers;
    for (const LinearLayer &layer : all) {
      auto linear = dyn_cast<LinearOp>(layer.op);
      if (!linear || layer.name.empty() || !selected->matches(layer.name))
        continue;
      Value weight = linear.getWeight();
      if (isa<QTensorType>(weight.getType())) {
        if (targetModules.empty())
          continue;
        return fail("the weight of '" + layer.name + "' is quantized already");
      }
      if (auto load = weight.getDefiningOp<LoadParamOp>()) {
        auto param = symbols.lookup<ParamOp>(load.getName());
        if (param && (!param.getInitialValue() || param.isMutable())) {
          if (targetModules.empty())
            continue;
          return fail(
              "the weight of '" + layer.name + "' is " +
              (param.isMutable() ? "trainable or state" : "given at run time") +
              ": only frozen weights known at compile time are "
              "decomposed");
        }
      }
      std::string why;
      FailureOr<dense::Matrix> w =
          reader.evaluate(weight, symbols, linear, why);
      if (failed(w)) {
        if (why.empty())
          return signalPassFailure();
        if (targetModules.empty())
          continue;
        return fail("the weight of '" + layer.name + "' " + why +
                    ": only weights known at compile time are decomposed");
      }
      if (!llvm::all_of(w->data, [](float v) { return std::isfinite(v); }))
        return fail("the weight of '" + layer.name +
                    "' holds NaN or infinite values");
      for (int64_t r : rankChoices)
        if (r > std::min(w->rows, w->cols))
          return fail("rank " + Twine(r) + " exceeds the smaller side of '" +
                      layer.name + "' (" + Twine(w->rows) + "x" +
                      Twine(w->cols) + ")");
      layers.push_back({layer.name, linear, std::move(*w), {}, {}});
    }
    if (layers.empty())
      return fail("no linear layer with a frozen weight known at compile "
                  "time matches the selection");
    if (!fisher.empty() && failed(readFisher(layers)))
      return signalPassFailure();

    if (budget) {
      if (failed(chooseUnderBudgetFor(layers, spec, rankChoices)))
        return signalPassFailure();
    } else {
      for (Layer &l : layers)
        l.chosen = decompose(ctx, spec, l.w, rank, iterations, l.fisher,
                             randomizedFor(l.w));
    }
    report(layers);
    for (const Layer &l : layers)
      if (!std::isfinite(l.chosen.error))
        return fail("the decomposition of '" + l.name +
                    "' is not finite (values too large for the format's "
                    "scales)");

    SmallVector<Operation *> maybeDead;
    llvm::StringSet<> before = paramNames(module);
    for (Layer &l : layers) {
      Value old = l.linear.getWeight();
      Value packed = createQuantizedWeight(symbols, l.linear,
                                           l.name + ".weight", l.chosen.q);
      if (!packed)
        return signalPassFailure();
      if (Operation *def = old.getDefiningOp())
        maybeDead.push_back(def);
      l.linear.getWeightMutable().assign(packed);
      int64_t r = l.chosen.rank;
      if (r == 0)
        continue;
      Location loc = l.linear.getLoc();
      // The factors in the layer's compute type (the op requires it).
      Type element = l.linear.getInput().getType().getElementType();
      auto aType = RankedTensorType::get({r, l.w.cols}, element);
      auto bType = RankedTensorType::get({l.w.rows, r}, element);
      ParamOp a = createFloatParam(symbols, loc, l.name + ".lora_A.weight",
                                   aType, l.chosen.a.data, /*trainable=*/true);
      ParamOp b = createFloatParam(symbols, loc, l.name + ".lora_B.weight",
                                   bType, l.chosen.b.data, /*trainable=*/true);
      if (!a || !b)
        return signalPassFailure();
      OpBuilder builder(l.linear);
      attachLoRA(l.linear,
                 LoadParamOp::create(builder, loc, aType, a.getSymName()),
                 LoadParamOp::create(builder, loc, bType, b.getSymName()),
                 Value(), /*alpha=*/double(r), /*rslora=*/false,
                 /*dropout=*/0.0);
    }
    eraseDeadOps(maybeDead, symbols);
    restoreParamNames(module, before, symbols);
  }

  /// Whether `w`'s SVD is the randomized one.
  bool randomizedFor(const dense::Matrix &w) {
    return svd == "randomized" ||
           (svd == "auto" && std::min(w.rows, w.cols) > 512);
  }

  /// Each layer's rank-1 Fisher fit from the `fisher` file.
  LogicalResult readFisher(std::vector<Layer> &layers) {
    ModuleOp module = getOperation();
    auto error = [&]() {
      return emitError(module.getLoc())
             << "qopt-lq-lora: fisher '" << fisher << "': ";
    };
    std::string why;
    std::optional<LayerStatsFile> file = LayerStatsFile::read(fisher, why);
    if (!file)
      return error() << why;
    for (Layer &l : layers) {
      std::optional<std::vector<float>> values =
          file->values(l.name + ".weight", l.name, {l.w.rows, l.w.cols}, why);
      if (!values)
        return error() << why;
      std::vector<double> rows(l.w.rows, 0.0), cols(l.w.cols, 0.0);
      double total = 0;
      for (int64_t i = 0; i < l.w.rows; ++i)
        for (int64_t j = 0; j < l.w.cols; ++j) {
          float v = (*values)[i * l.w.cols + j];
          rows[i] += v;
          cols[j] += v;
          total += v;
        }
      if (!(total > 0))
        return error() << "the Fisher diagonal of '" << l.name
                       << "' is all zero";
      // Rows or columns with no information still get a tiny weight, so
      // the weighted SVD stays defined.
      double rowFloor = 1e-6 * *llvm::max_element(rows);
      double colFloor = 1e-6 * *llvm::max_element(cols);
      for (double &v : rows)
        v = std::sqrt(std::max(v, rowFloor));
      for (double &v : cols)
        v = std::sqrt(std::max(v, colFloor) / total);
      l.fisher = {std::move(rows), std::move(cols)};
    }
    // A .qstats file from qopt-calibrate --fisher also holds activation
    // statistics, which are not Fisher diagonals.
    std::vector<std::string> extra = file->unread();
    llvm::erase_if(extra, [](const std::string &name) {
      return StringRef(name).ends_with(".input_absmax") ||
             StringRef(name).ends_with(".input_rows");
    });
    if (!extra.empty())
      return error() << "tensor '" << extra.front()
                     << "' matches no selected layer";
    return success();
  }

  /// Decomposes every layer at each (width, rank) and keeps the choice
  /// with the least total error within the budget.
  LogicalResult chooseUnderBudgetFor(std::vector<Layer> &layers,
                                     const QuantizeSpec &spec,
                                     ArrayRef<int64_t> rankChoices) {
    std::vector<std::vector<BudgetChoice>> choices;
    std::vector<std::vector<Decomposition>> options;
    double weightsCount = 0;
    for (Layer &l : layers) {
      std::vector<BudgetChoice> c;
      std::vector<Decomposition> d;
      for (unsigned bits : kWidths) {
        QuantizeSpec s = spec;
        s.format = "int" + std::to_string(bits);
        for (int64_t r : rankChoices) {
          d.push_back(decompose(&getContext(), s, l.w, r, iterations, l.fisher,
                                randomizedFor(l.w)));
          c.push_back({storedBits(d.back().q) +
                           32.0 * double(r) * double(l.w.rows + l.w.cols),
                       d.back().error});
        }
      }
      weightsCount += double(l.w.rows) * double(l.w.cols);
      choices.push_back(std::move(c));
      options.push_back(std::move(d));
    }
    std::optional<std::vector<size_t>> chosen =
        chooseUnderBudget(choices, budgetBits * weightsCount);
    if (!chosen) {
      double least = 0;
      for (const std::vector<BudgetChoice> &c : choices)
        least += llvm::min_element(c, [](const BudgetChoice &a,
                                         const BudgetChoice &b) {
                   return a.cost < b.cost;
                 })->cost;
      return emitError(getOperation().getLoc())
             << "qopt-lq-lora: a budget of "
             << llvm::formatv("{0:f2}", double(budgetBits))
             << " bits per weight is below the cheapest choice ("
             << llvm::formatv("{0:f3}", least / weightsCount)
             << " bits per weight)";
    }
    for (size_t i = 0; i < layers.size(); ++i)
      layers[i].chosen = std::move(options[i][(*chosen)[i]]);
    return success();
  }

  /// The table on stderr.
  void report(const std::vector<Layer> &layers) {
    llvm::raw_ostream &os = llvm::errs();
    bool budget = budgetBits != 0.0;
    os << "qopt-lq-lora: W ≈ Q + B·A (" << weights << ", "
       << (budget ? "widths and ranks under " +
                        llvm::formatv("{0:f2}", double(budgetBits)).str() +
                        " bits per weight"
                  : "rank " + std::to_string(rank))
       << (fisher.empty() ? "" : ", Fisher-weighted") << "):\n"
       << llvm::left_justify("module", 40) << llvm::left_justify("shape", 10)
       << llvm::left_justify("bits", 6) << llvm::left_justify("rank", 6)
       << llvm::left_justify("rounds", 8)
       << llvm::left_justify("bits/weight", 13)
       << llvm::left_justify("error Q", 10) << "error Q+BA\n";
    double stored = 0, count = 0;
    for (const Layer &l : layers) {
      const Decomposition &d = l.chosen;
      double norm = weightedNorm2(l.w, l.fisher);
      auto relative = [&](double e) {
        return llvm::formatv("{0:e2}", norm > 0 ? std::sqrt(e / norm) : 0.0)
            .str();
      };
      double bits =
          storedBits(d.q) + 32.0 * double(d.rank) * double(l.w.rows + l.w.cols);
      double weightsCount = double(l.w.rows) * double(l.w.cols);
      stored += bits;
      count += weightsCount;
      unsigned storage = d.q.format.getStorageBits();
      os << llvm::left_justify(l.name, 40)
         << llvm::left_justify(
                std::to_string(l.w.rows) + "x" + std::to_string(l.w.cols), 10)
         << llvm::left_justify(std::to_string(storage), 6)
         << llvm::left_justify(std::to_string(d.rank), 6)
         << llvm::left_justify(std::to_string(d.rounds), 8)
         << llvm::left_justify(
                llvm::formatv("{0:f3}", bits / weightsCount).str(), 13)
         << llvm::left_justify(relative(d.quantError), 10) << relative(d.error)
         << "\n";
    }
    os << "total: " << llvm::formatv("{0:f3}", stored / count)
       << " bits per weight";
    if (budget)
      os << " (budget " << llvm::formatv("{0:f2}", double(budgetBits)) << ")";
    os << "\n";
  }
};

} // namespace
