//===- Eva.h - EVA: adapters from the principal directions of inputs -*- C++
//-*-===//
//
// PEFT's EVA initialisation (Explained Variance Adaptation, PEFT's
// `get_eva_state_dict`): an incremental PCA of every adapted layer's inputs
// over calibration batches, cycled until the leading components stop
// moving, and a redistribution of the total rank to the layers whose
// components explain the most variance. LoRA's A takes the components; B
// starts at zero. Plain C++ (no MLIR), in double: the caller runs the model
// and hands each batch's layer inputs over.
//
// Where PEFT takes a randomized SVD (torch.svd_lowrank, seed 42), this
// takes the exact one: the same components up to that approximation.
//
//===----------------------------------------------------------------------===//

#ifndef QOPT_SUPPORT_EVA_H
#define QOPT_SUPPORT_EVA_H

#include "qopt/Support/DenseMath.h"

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace qopt::eva {

/// The singular values `s` (descending) and right singular vectors `vt`
/// (rows, min(m, n) of them, each n long) of the row-major m×n `x`, by
/// one-sided Jacobi on the smaller side, in double.
void singularValues(const std::vector<double> &x, int64_t m, int64_t n,
                    std::vector<double> &s, std::vector<double> &vt);

/// The `k` leading singular values and right vectors of `x`, as
/// singularValues gives them. Above `exactUpTo` (min(m, n)), where
/// k + max(k, 8) < min(m, n) / 2, by subspace iteration with Rayleigh-Ritz
/// (from the rows of `start`, k×n or empty, e.g. the previous fit's) until
/// the leading vectors stop moving (1 - |cos| ≤ 1e-13; at most 500
/// iterations, which a flat spectrum can need); else by singularValues.
void leadingSingular(const std::vector<double> &x, int64_t m, int64_t n,
                     int64_t k, const std::vector<double> &start,
                     std::vector<double> &s, std::vector<double> &vt,
                     int64_t exactUpTo = 512);

/// scikit-learn's IncrementalPCA as PEFT adapts it (peft.utils.
/// incremental_pca), with the exact SVD and its sign convention (svd_flip
/// on Vᵀ: each component's largest-magnitude entry is positive).
class IncrementalPCA {
public:
  explicit IncrementalPCA(int64_t components) : numComponents(components) {}
  /// Folds the rows×cols batch `x` (rows ≥ the number of components) in.
  void partialFit(const dense::Matrix &x);
  bool fitted() const { return seen > 0; }
  int64_t features() const { return cols; }
  /// Components (rows of `cols`), singular values and the share of the
  /// total variance each explains, leading first.
  const std::vector<double> &components() const { return comps; }
  const std::vector<double> &singular() const { return sing; }
  const std::vector<double> &explainedVarianceRatio() const { return ratio; }

private:
  int64_t numComponents, cols = 0;
  double seen = 0;
  std::vector<double> mean, var, comps, sing, ratio;
};

struct Options {
  /// A layer's rank may grow to round(r · rho) (≥ 1).
  double rho = 2.0;
  /// Components have converged when their cosine similarity to the
  /// previous batch's is at least tau.
  double tau = 0.99;
  /// Divide each component by the square root of its singular value.
  bool whiten = false;
  /// Passes over the calibration batches before giving up (PEFT cycles
  /// forever).
  int64_t maxEpochs = 100;
};

/// An adapted layer: its module name (for messages) and rank r.
struct Layer {
  std::string name;
  int64_t rank;
};

/// Runs the model on calibration batch `index` and fills `inputs` with
/// each layer's input rows (samples × in-features, padding already
/// dropped), in the order of the layers. False with `error` set on failure.
using RunBatch = std::function<bool(
    size_t index, std::vector<dense::Matrix> &inputs, std::string &error)>;

struct Result {
  /// Per layer: its rank after redistribution (0: no adapter) and its
  /// components (rank × in-features), LoRA's A.
  std::vector<int64_t> ranks;
  std::vector<dense::Matrix> components;
  /// Model runs made, and which layers shared another's input (PEFT
  /// computes those once): index of the layer computed, or itself.
  size_t runs = 0;
  std::vector<size_t> sharedWith;
};

/// PEFT's EVA over `numBatches` calibration batches: the first batch finds
/// layers with equal inputs (computed once; the first of them gets the
/// highest rank), then batches are cycled, each feeding the layers that
/// have not converged, until every layer's components up to its assigned
/// rank have; the rank budget (the sum of the layers' r) goes to the
/// components that explain the largest share of their layer's variance.
bool compute(const std::vector<Layer> &layers, size_t numBatches,
             const Options &options, const RunBatch &run, Result &result,
             std::string &error);

} // namespace qopt::eva

#endif // QOPT_SUPPORT_EVA_H
