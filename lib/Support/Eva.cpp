//===- Eva.cpp - EVA: adapters from the principal directions of inputs ----===//
//
// Follows PEFT 0.21's peft/tuners/lora/eva.py (`_get_eva_state_dict`) and
// peft/utils/incremental_pca.py step for step, so that the same batches
// give the same ranks and components.
//
//===----------------------------------------------------------------------===//

#include "qopt/Support/Eva.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <numeric>

using namespace qopt;
using namespace qopt::eva;

void eva::singularValues(const std::vector<double> &x, int64_t m, int64_t n,
                         std::vector<double> &s, std::vector<double> &vt) {
  // One-sided Jacobi (Hestenes) on the columns of B = x (m ≥ n) or xᵀ:
  // rotations accumulated in W make B's columns orthogonal, so B = U·Σ and
  // x = U·Σ·Wᵀ (m ≥ n: W holds the right vectors), or xᵀ = U·Σ·Wᵀ (the
  // normalised columns of B are then x's right vectors).
  bool tall = m >= n;
  int64_t len = tall ? m : n, count = tall ? n : m;
  std::vector<double> b(size_t(len) * count), w(size_t(count) * count, 0.0);
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) {
      double v = x[size_t(i) * n + j];
      if (tall)
        b[size_t(j) * len + i] = v; // column j of x
      else
        b[size_t(i) * len + j] = v; // column i of xᵀ
    }
  for (int64_t j = 0; j < count; ++j)
    w[size_t(j) * count + j] = 1.0;
  auto col = [&](std::vector<double> &v, int64_t j, int64_t size) {
    return v.data() + size_t(j) * size;
  };
  for (int sweep = 0; sweep < 80; ++sweep) {
    bool rotated = false;
    for (int64_t p = 0; p < count; ++p)
      for (int64_t q = p + 1; q < count; ++q) {
        double *bp = col(b, p, len), *bq = col(b, q, len);
        double alpha = 0, beta = 0, gamma = 0;
        for (int64_t i = 0; i < len; ++i) {
          alpha += bp[i] * bp[i];
          beta += bq[i] * bq[i];
          gamma += bp[i] * bq[i];
        }
        if (gamma == 0 || std::abs(gamma) <= 1e-15 * std::sqrt(alpha * beta))
          continue;
        rotated = true;
        double zeta = (beta - alpha) / (2 * gamma);
        double t = (zeta >= 0 ? 1.0 : -1.0) /
                   (std::abs(zeta) + std::sqrt(1 + zeta * zeta));
        double c = 1 / std::sqrt(1 + t * t), sn = c * t;
        for (int64_t i = 0; i < len; ++i) {
          double u = bp[i], v = bq[i];
          bp[i] = c * u - sn * v;
          bq[i] = sn * u + c * v;
        }
        double *wp = col(w, p, count), *wq = col(w, q, count);
        for (int64_t i = 0; i < count; ++i) {
          double u = wp[i], v = wq[i];
          wp[i] = c * u - sn * v;
          wq[i] = sn * u + c * v;
        }
      }
    if (!rotated)
      break;
  }
  std::vector<double> norms(count);
  for (int64_t j = 0; j < count; ++j) {
    double sum = 0;
    for (int64_t i = 0; i < len; ++i)
      sum += col(b, j, len)[i] * col(b, j, len)[i];
    norms[j] = std::sqrt(sum);
  }
  std::vector<int64_t> order(count);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](int64_t a, int64_t c) { return norms[a] > norms[c]; });
  s.assign(count, 0.0);
  vt.assign(size_t(count) * n, 0.0);
  for (int64_t k = 0; k < count; ++k) {
    int64_t j = order[k];
    s[k] = norms[j];
    for (int64_t i = 0; i < n; ++i)
      vt[size_t(k) * n + i] = tall           ? col(w, j, count)[i]
                              : norms[j] > 0 ? col(b, j, len)[i] / norms[j]
                                             : 0.0;
  }
}

namespace {

/// xorshift64: fixed pseudo-random numbers in [0, 1).
double nextUniform(uint64_t &state) {
  state ^= state << 13;
  state ^= state >> 7;
  state ^= state << 17;
  return double(state >> 11) * 0x1.0p-53;
}

/// Orthonormalises the `p` columns of the row-major n×p `q` (p ≤ n;
/// modified Gram-Schmidt, twice for accuracy); a column that (nearly)
/// vanishes is replaced by a fresh pseudo-random one, drawn from `state`.
void orthonormalize(std::vector<double> &q, int64_t n, int64_t p,
                    uint64_t &state) {
  for (int64_t j = 0; j < p; ++j) {
    for (int attempt = 0;; ++attempt) {
      double before = 0;
      for (int64_t l = 0; l < n; ++l)
        before += q[l * p + j] * q[l * p + j];
      for (int pass = 0; pass < 2; ++pass)
        for (int64_t i = 0; i < j; ++i) {
          double dot = 0;
          for (int64_t l = 0; l < n; ++l)
            dot += q[l * p + i] * q[l * p + j];
          for (int64_t l = 0; l < n; ++l)
            q[l * p + j] -= dot * q[l * p + i];
        }
      double norm = 0;
      for (int64_t l = 0; l < n; ++l)
        norm += q[l * p + j] * q[l * p + j];
      if ((norm > 1e-20 * before && norm > 0) || attempt == 64) {
        norm = std::sqrt(norm);
        for (int64_t l = 0; l < n; ++l)
          q[l * p + j] = norm > 0 ? q[l * p + j] / norm : 0.0;
        break;
      }
      for (int64_t l = 0; l < n; ++l)
        q[l * p + j] = nextUniform(state) - 0.5;
    }
  }
}

} // namespace

void eva::leadingSingular(const std::vector<double> &x, int64_t m, int64_t n,
                          int64_t k, const std::vector<double> &start,
                          std::vector<double> &s, std::vector<double> &vt,
                          int64_t exactUpTo) {
  int64_t small = std::min(m, n);
  int64_t p = std::min(small, k + std::max<int64_t>(k, 8));
  if (small <= exactUpTo || p >= small / 2) {
    // Affordable (or no saving): the full decomposition.
    singularValues(x, m, n, s, vt);
    s.resize(std::min(k, small));
    vt.resize(size_t(s.size()) * n);
    return;
  }
  // Subspace iteration on xᵀx with Rayleigh-Ritz, from `start` (the
  // previous fit's components) padded with fixed pseudo-random vectors,
  // until the leading k singular values and vectors stop changing.
  std::vector<double> q(size_t(n) * p);
  uint64_t state = 0x2545f4914f6cdd1dull;
  for (double &v : q)
    v = nextUniform(state) - 0.5;
  int64_t warm = std::min<int64_t>(int64_t(start.size()) / n, p);
  for (int64_t c = 0; c < warm; ++c)
    for (int64_t l = 0; l < n; ++l)
      q[l * p + c] = start[size_t(c) * n + l];
  orthonormalize(q, n, p, state);
  std::vector<double> y(size_t(m) * p), previous;
  std::vector<double> ws, wt;
  for (int iter = 0; iter < 500; ++iter) {
    // y = x·q; the Ritz pairs from y's SVD: y = U·S·Wᵀ, q ← q·W.
    std::fill(y.begin(), y.end(), 0.0);
    for (int64_t i = 0; i < m; ++i)
      for (int64_t l = 0; l < n; ++l) {
        double xv = x[size_t(i) * n + l];
        if (xv == 0)
          continue;
        const double *ql = &q[size_t(l) * p];
        double *yi = &y[size_t(i) * p];
        for (int64_t j = 0; j < p; ++j)
          yi[j] += xv * ql[j];
      }
    singularValues(y, m, p, ws, wt); // wt: p×p, rows = Ritz directions
    std::vector<double> rotated(size_t(n) * p, 0.0);
    for (int64_t l = 0; l < n; ++l)
      for (int64_t c = 0; c < p; ++c) {
        double sum = 0;
        for (int64_t j = 0; j < p; ++j)
          sum += q[size_t(l) * p + j] * wt[size_t(c) * p + j];
        rotated[size_t(l) * p + c] = sum;
      }
    q = std::move(rotated);
    bool converged = !previous.empty();
    for (int64_t c = 0; c < k && converged; ++c) {
      double dot = 0;
      for (int64_t l = 0; l < n; ++l)
        dot += q[size_t(l) * p + c] * previous[size_t(l) * p + c];
      converged = 1 - std::abs(dot) <= 1e-13;
    }
    if (converged || iter == 499)
      break;
    previous = q;
    // q ← orth(xᵀ·x·q).
    std::vector<double> z(size_t(n) * p, 0.0), yi(p);
    for (int64_t i = 0; i < m; ++i) {
      const double *xi = &x[size_t(i) * n];
      // Row i of x·q for the rotated q: y's row times W.
      for (int64_t c = 0; c < p; ++c) {
        double sum = 0;
        for (int64_t j = 0; j < p; ++j)
          sum += y[size_t(i) * p + j] * wt[size_t(c) * p + j];
        yi[c] = sum;
      }
      for (int64_t l = 0; l < n; ++l) {
        double xv = xi[l];
        if (xv == 0)
          continue;
        double *zl = &z[size_t(l) * p];
        for (int64_t c = 0; c < p; ++c)
          zl[c] += xv * yi[c];
      }
    }
    q = std::move(z);
    orthonormalize(q, n, p, state);
  }
  s.assign(ws.begin(), ws.begin() + k);
  vt.assign(size_t(k) * n, 0.0);
  for (int64_t c = 0; c < k; ++c)
    for (int64_t l = 0; l < n; ++l)
      vt[size_t(c) * n + l] = q[size_t(l) * p + c];
}

void IncrementalPCA::partialFit(const dense::Matrix &x) {
  int64_t rows = x.rows;
  bool first = !fitted();
  if (first)
    cols = x.cols;
  std::vector<double> data(x.data.begin(), x.data.end());
  // _incremental_mean_and_var, in double as PEFT's sums are.
  double total = seen + double(rows);
  std::vector<double> newSum(cols, 0.0), lastSum(cols, 0.0);
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = 0; j < cols; ++j)
      newSum[j] += data[size_t(i) * cols + j];
  if (!first)
    for (int64_t j = 0; j < cols; ++j)
      lastSum[j] = mean[j] * seen;
  std::vector<double> newMean(cols), newVar(cols);
  for (int64_t j = 0; j < cols; ++j) {
    newMean[j] = (lastSum[j] + newSum[j]) / total;
    double t = newSum[j] / rows, correction = 0, squares = 0;
    for (int64_t i = 0; i < rows; ++i) {
      double d = data[size_t(i) * cols + j] - t;
      correction += d;
      squares += d * d;
    }
    double unnormalized = squares - correction * correction / rows;
    if (first) {
      newVar[j] = unnormalized / total;
    } else {
      double lastOverNew = seen / rows;
      double diff = lastSum[j] / lastOverNew - newSum[j];
      newVar[j] =
          (var[j] * seen + unnormalized + lastOverNew / total * diff * diff) /
          total;
    }
  }
  // Centre the batch; after the first, stack the previous components
  // (scaled by their singular values) and a mean correction row on top.
  std::vector<double> stacked;
  int64_t m = rows;
  if (first) {
    for (int64_t i = 0; i < rows; ++i)
      for (int64_t j = 0; j < cols; ++j)
        data[size_t(i) * cols + j] -= newMean[j];
    stacked = std::move(data);
  } else {
    std::vector<double> batchMean(cols);
    for (int64_t j = 0; j < cols; ++j)
      batchMean[j] = newSum[j] / rows;
    int64_t k = int64_t(sing.size());
    m = k + rows + 1;
    stacked.assign(size_t(m) * cols, 0.0);
    for (int64_t c = 0; c < k; ++c)
      for (int64_t j = 0; j < cols; ++j)
        stacked[size_t(c) * cols + j] = sing[c] * comps[size_t(c) * cols + j];
    for (int64_t i = 0; i < rows; ++i)
      for (int64_t j = 0; j < cols; ++j)
        stacked[size_t(k + i) * cols + j] =
            data[size_t(i) * cols + j] - batchMean[j];
    double factor = std::sqrt(seen / total * rows);
    for (int64_t j = 0; j < cols; ++j)
      stacked[size_t(k + rows) * cols + j] = factor * (mean[j] - batchMean[j]);
  }
  std::vector<double> s, vt;
  leadingSingular(stacked, m, cols, numComponents, comps, s, vt);
  // svd_flip(u_based_decision=False): the largest |v| of each row positive
  // (the first such entry, as argmax takes it).
  int64_t k = int64_t(s.size());
  for (int64_t c = 0; c < k; ++c) {
    double *row = vt.data() + size_t(c) * cols;
    int64_t best = 0;
    for (int64_t j = 1; j < cols; ++j)
      if (std::abs(row[j]) > std::abs(row[best]))
        best = j;
    if (row[best] < 0)
      for (int64_t j = 0; j < cols; ++j)
        row[j] = -row[j];
  }
  double totalVariance = 0;
  for (int64_t j = 0; j < cols; ++j)
    totalVariance += newVar[j] * total;
  int64_t keep = std::min(numComponents, k);
  seen = total;
  comps.assign(vt.begin(), vt.begin() + size_t(keep) * cols);
  sing.assign(s.begin(), s.begin() + keep);
  ratio.resize(keep);
  for (int64_t c = 0; c < keep; ++c)
    ratio[c] = s[c] * s[c] / totalVariance;
  mean = std::move(newMean);
  var = std::move(newVar);
}

namespace {

/// Python's round(): halves to even.
int64_t roundHalfEven(double v) {
  double floor = std::floor(v), diff = v - floor;
  if (diff > 0.5 || (diff == 0.5 && std::fmod(floor, 2.0) != 0))
    return int64_t(floor) + 1;
  return int64_t(floor);
}

bool sameMatrix(const dense::Matrix &a, const dense::Matrix &b) {
  return a.rows == b.rows && a.cols == b.cols && a.data == b.data;
}

} // namespace

bool eva::compute(const std::vector<Layer> &layers, size_t numBatches,
                  const Options &options, const RunBatch &run, Result &result,
                  std::string &error) {
  size_t n = layers.size();
  result = Result();
  if (n == 0 || numBatches == 0) {
    error = n == 0 ? "no layer to initialise" : "no calibration batch";
    return false;
  }
  std::vector<int64_t> maxComponents(n);
  int64_t budget = 0;
  for (size_t l = 0; l < n; ++l) {
    // Compared as a double first: an absurd rho must not overflow.
    double wanted = double(layers[l].rank) * options.rho;
    maxComponents[l] = roundHalfEven(std::min(wanted, 1e15));
    budget += layers[l].rank;
  }
  // The first batch: layers whose inputs are equal (q/k/v, gate/up) share
  // one PCA, with the largest of their component counts.
  std::vector<dense::Matrix> firstInputs;
  if (!run(0, firstInputs, error))
    return false;
  result.runs = 1;
  for (size_t l = 0; l < n; ++l)
    if (firstInputs[l].rows == 0) {
      // PEFT hashes the first batch's inputs to find layers that share
      // one: empty inputs would all look shared.
      error = "the first calibration batch keeps no token for module '" +
              layers[l].name +
              "' (attention mask / labels): put a sample with trained "
              "tokens first";
      return false;
    }
  std::vector<size_t> &shared = result.sharedWith;
  shared.resize(n);
  for (size_t l = 0; l < n; ++l) {
    shared[l] = l;
    for (size_t j = 0; j < l; ++j)
      if (shared[j] == j && sameMatrix(firstInputs[j], firstInputs[l])) {
        shared[l] = j;
        break;
      }
  }
  for (size_t l = 0; l < n; ++l)
    maxComponents[shared[l]] =
        std::max(maxComponents[shared[l]], maxComponents[l]);
  for (size_t l = 0; l < n; ++l)
    maxComponents[l] = maxComponents[shared[l]];
  std::vector<size_t> hooks;
  for (size_t l = 0; l < n; ++l)
    if (shared[l] == l) {
      hooks.push_back(l);
      int64_t features = firstInputs[l].cols;
      if (maxComponents[l] > features) {
        error = "module '" + layers[l].name +
                "': " + std::to_string(maxComponents[l]) +
                " components (r · rho) exceed its " + std::to_string(features) +
                " input features";
        return false;
      }
    }

  std::vector<IncrementalPCA> pcas;
  for (size_t l = 0; l < n; ++l)
    pcas.emplace_back(maxComponents[l]);
  std::vector<std::vector<char>> converged(n);
  for (size_t l = 0; l < n; ++l)
    converged[l].assign(maxComponents[l], 0);
  std::vector<char> done(n, 0), active(n, 1);
  std::vector<int64_t> rankDist = maxComponents;
  auto allConverged = [&](size_t l, int64_t upTo) {
    const std::vector<char> &c = converged[l];
    return std::all_of(c.begin(), c.begin() + std::min<size_t>(upTo, c.size()),
                       [](char v) { return v != 0; });
  };
  // Layers in PEFT's map order (computed ones, then those sharing an
  // input), for the distribution and its tie-breaking.
  std::vector<size_t> mapOrder = hooks;
  for (size_t l = 0; l < n; ++l)
    if (shared[l] != l)
      mapOrder.push_back(l);

  for (size_t step = 0;; ++step) {
    for (size_t l : hooks) {
      bool conv = allConverged(l, rankDist[l]);
      if (!done[l] && conv && active[l]) {
        active[l] = 0;
        done[l] = 1;
      } else if (done[l] && !conv) {
        active[l] = 1;
        done[l] = 0;
      }
    }
    if (std::all_of(hooks.begin(), hooks.end(),
                    [&](size_t l) { return done[l] != 0; }))
      break;
    if (step >= numBatches * size_t(options.maxEpochs)) {
      std::string names;
      for (size_t l : hooks)
        if (!done[l])
          names += (names.empty() ? "'" : ", '") + layers[l].name + "'";
      char tau[32];
      std::snprintf(tau, sizeof(tau), "%g", options.tau);
      error = "the components of " + names + " did not converge (tau " + tau +
              ") in " + std::to_string(options.maxEpochs) +
              " passes over the calibration data (raise "
              "--calibration-max-passes, or lower eva_config's tau)";
      return false;
    }
    std::vector<dense::Matrix> inputs;
    if (step == 0) {
      inputs = std::move(firstInputs);
    } else {
      if (!run(step % numBatches, inputs, error))
        return false;
      ++result.runs;
    }
    for (size_t l : hooks) {
      if (!active[l] || inputs[l].rows < maxComponents[l])
        continue; // PEFT skips a batch with fewer rows than components
      IncrementalPCA &pca = pcas[l];
      bool had = pca.fitted();
      std::vector<double> previous = pca.components();
      pca.partialFit(inputs[l]);
      for (double r : pca.explainedVarianceRatio())
        if (!std::isfinite(r)) {
          error = "the inputs of module '" + layers[l].name +
                  "' do not vary over the calibration tokens (zero "
                  "variance): EVA has no direction to take";
          return false;
        }
      if (!had)
        continue;
      int64_t cols = pca.features();
      const std::vector<double> &now = pca.components();
      size_t rows = std::min(now.size(), previous.size()) / size_t(cols);
      converged[l].assign(rows, 0);
      for (size_t c = 0; c < rows; ++c) {
        double dot = 0, na = 0, nb = 0;
        for (int64_t j = 0; j < cols; ++j) {
          double a = now[c * cols + j], b = previous[c * cols + j];
          dot += a * b;
          na += a * a;
          nb += b * b;
        }
        double sim = dot / (std::max(std::sqrt(na), 1e-8) *
                            std::max(std::sqrt(nb), 1e-8));
        converged[l][c] = sim >= options.tau;
      }
    }
    if (step + 1 == numBatches)
      for (size_t l : hooks)
        if (!pcas[l].fitted()) {
          // PEFT skips such batches, and would cycle forever.
          error = "no calibration batch keeps " +
                  std::to_string(maxComponents[l]) +
                  " tokens (round(r · rho) components) for module '" +
                  layers[l].name + "': use larger batches";
          return false;
        }
    if (!std::all_of(hooks.begin(), hooks.end(),
                     [&](size_t l) { return pcas[l].fitted(); }))
      continue;
    // The budget goes to the components explaining the largest shares.
    std::vector<std::pair<double, size_t>> shares;
    for (size_t l : mapOrder) {
      const std::vector<double> &ratio =
          pcas[shared[l]].explainedVarianceRatio();
      for (int64_t c = 0;
           c < std::min<int64_t>(maxComponents[l], int64_t(ratio.size())); ++c)
        shares.push_back({ratio[c], l});
    }
    // torch's argsort(descending=True) on the CPU is std::sort with this
    // comparator: the same order among equal shares (layers sharing an
    // input) as PEFT's.
    std::sort(shares.begin(), shares.end(),
              [](const auto &a, const auto &b) { return a.first > b.first; });
    std::fill(rankDist.begin(), rankDist.end(), 0);
    for (size_t i = 0; i < shares.size() && int64_t(i) < budget; ++i)
      ++rankDist[shares[i].second];
    for (size_t l = 0; l < n; ++l)
      if (shared[l] != l && rankDist[shared[l]] < rankDist[l])
        std::swap(rankDist[shared[l]], rankDist[l]);
  }

  result.ranks = rankDist;
  result.components.resize(n);
  for (size_t l = 0; l < n; ++l) {
    const IncrementalPCA &pca = pcas[shared[l]];
    int64_t rank = rankDist[l], cols = pca.features();
    if (!allConverged(shared[l], rank) ||
        rank > int64_t(pca.singular().size())) {
      error = "module '" + layers[l].name + "' was given rank " +
              std::to_string(rank) + " but its components have not converged";
      return false;
    }
    dense::Matrix a(rank, cols);
    for (int64_t c = 0; c < rank; ++c) {
      // PEFT whitens the shared components in place, once per layer of the
      // group whose rank covers the row, and every layer keeps a view of
      // them: row c ends divided by √s_c that many times, in all of them.
      double divisor = 1.0;
      if (options.whiten)
        for (size_t o = 0; o < n; ++o)
          if (shared[o] == shared[l] && rankDist[o] > c)
            divisor *= std::sqrt(pca.singular()[c]);
      for (int64_t j = 0; j < cols; ++j)
        a.at(c, j) = float(pca.components()[size_t(c) * cols + j] / divisor);
    }
    result.components[l] = std::move(a);
  }
  return true;
}
