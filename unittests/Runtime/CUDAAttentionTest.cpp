//===- CUDAAttentionTest.cpp - the CUDA attention's threads on the CPU ----===//
//
// Attention.cu's fused kernel, run through its CPU emulation (every
// block's threads phase by phase, each warp's lanes reduced as its
// shuffles do: qopt_cuda_attention_emulated, which qoptc --cuda-emulate
// models call), against qopt.attention's definition in double: strided
// (transposed) Q / K / V / Y, grouped-query heads, float and bool masks
// that broadcast, causal masking, the soft cap, rows with every key
// masked, several row blocks and key steps, the largest head size, no
// keys.
//
//===----------------------------------------------------------------------===//

#include "../../lib/Runtime/Kernels/CUDA/AttentionTile.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <sstream>
#include <string>
#include <vector>

extern "C" void qopt_cuda_attention_emulated(QOPT_ATTENTION_PARAMS);
extern "C" void
    qopt_cuda_attention_emulated_backward(QOPT_ATTENTION_BWD_PARAMS);

namespace {

using qopt_cuda::Memref4;

/// A rank-4 buffer whose dimensions are stored in the order `perm` (perm[0]
/// outermost), as a transposed view of it is.
struct Tensor4 {
  std::vector<float> data;
  std::vector<uint8_t> bytes; // (a bool mask)
  int64_t size[4], stride[4];
  Tensor4(std::array<int64_t, 4> sizes, std::array<int, 4> perm) {
    int64_t n = 1;
    for (int d = 3; d >= 0; --d) {
      stride[perm[d]] = n;
      n *= sizes[perm[d]];
    }
    for (int d = 0; d < 4; ++d)
      size[d] = sizes[d];
    data.resize(size_t(n));
    bytes.resize(size_t(n));
  }
  int64_t at(int64_t a, int64_t b, int64_t c, int64_t d) const {
    return a * stride[0] + b * stride[1] + c * stride[2] + d * stride[3];
  }
  Memref4 view(bool boolean = false) const {
    return {boolean ? static_cast<const void *>(bytes.data()) : data.data(),
            0,
            {size[0], size[1], size[2], size[3]},
            {stride[0], stride[1], stride[2], stride[3]}};
  }
};

// A Memref4 as the entries' memref parameters (an allocated pointer, then
// its fields).
#define QOPT_M4(t)                                                             \
  nullptr, (t).aligned, (t).offset, (t).size[0], (t).size[1], (t).size[2],     \
      (t).size[3], (t).stride[0], (t).stride[1], (t).stride[2], (t).stride[3]

void call(int64_t flags, double scale, double softcap, const Memref4 &q,
          const Memref4 &k, const Memref4 &v, const Memref4 &m,
          const Memref4 &y) {
  qopt_cuda_attention_emulated(flags, scale, softcap, QOPT_M4(q), QOPT_M4(k),
                               QOPT_M4(v), QOPT_M4(m), QOPT_M4(y));
}

struct Case {
  int64_t batch, hq, hkv, rows, keys, d, dv;
  int mask; // 0 none, 1 float [B, 1, S, L], 2 bool [1, 1, S, L]
  bool causal;
  double softcap;  // 0: none
  bool transposed; // Q, K, V, Y stored [B, S, H, D]
};

const Case kCases[] = {
    {2, 4, 2, 37, 70, 24, 40, 1, false, 0, true},
    {1, 2, 2, 37, 70, 24, 40, 2, true, 0, false},
    {1, 3, 1, 20, 50, 16, 16, 0, true, 5.0, true},
    {1, 1, 1, 5, 33, 128, 128, 0, false, 0, false},
    {2, 2, 1, 17, 32, 8, 8, 1, true, 0, true},
    {1, 2, 2, 3, 0, 8, 8, 0, false, 0, false},
};

/// A case's inputs (random; masks with about a fifth of the keys off and
/// query row 1 fully masked) and its definition in double.
struct Problem {
  const Case &c;
  std::array<int, 4> perm;
  Tensor4 q, k, v, mask;
  int64_t group, flags;
  double scale;
  Problem(const Case &c, std::mt19937 &rng)
      : c(c), perm(c.transposed ? std::array<int, 4>{0, 2, 1, 3}
                                : std::array<int, 4>{0, 1, 2, 3}),
        q({c.batch, c.hq, c.rows, c.d}, perm),
        k({c.batch, c.hkv, c.keys, c.d}, perm),
        v({c.batch, c.hkv, c.keys, c.dv}, perm),
        mask(c.mask == 1 ? std::array<int64_t, 4>{c.batch, 1, c.rows, c.keys}
                         : std::array<int64_t, 4>{1, 1, c.rows, c.keys},
             {0, 1, 2, 3}),
        group(c.hq / c.hkv),
        flags((c.mask == 1 ? qopt_cuda::kAttnFloatMask : 0) |
              (c.mask == 2 ? qopt_cuda::kAttnBoolMask : 0) |
              (c.causal ? qopt_cuda::kAttnCausal : 0) |
              (c.softcap ? qopt_cuda::kAttnSoftcap : 0)),
        scale(1.0 / std::sqrt(double(c.d))) {
    std::normal_distribution<float> normal(0.0f, 1.0f);
    std::uniform_real_distribution<float> uniform(0.0f, 1.0f);
    for (auto *t : {&q, &k, &v})
      for (float &x : t->data)
        x = normal(rng);
    for (int64_t b = 0; b < mask.size[0]; ++b)
      for (int64_t i = 0; i < c.rows; ++i)
        for (int64_t j = 0; j < c.keys; ++j) {
          bool off = uniform(rng) < 0.2f || i == 1;
          int64_t e = mask.at(b, 0, i, j);
          mask.data[size_t(e)] =
              off ? -std::numeric_limits<float>::infinity() : normal(rng);
          mask.bytes[size_t(e)] = !off;
        }
  }
  Tensor4 like(std::array<int64_t, 4> sizes) const { return {sizes, perm}; }
  Memref4 maskView() const {
    return c.mask ? mask.view(c.mask == 2) : q.view();
  }
  float qAt(int64_t b, int64_t h, int64_t i, int64_t e) const {
    return q.data[size_t(q.at(b, h, i, e))];
  }
  float kAt(int64_t b, int64_t h, int64_t j, int64_t e) const {
    return k.data[size_t(k.at(b, h / group, j, e))];
  }
  float vAt(int64_t b, int64_t h, int64_t j, int64_t e) const {
    return v.data[size_t(v.at(b, h / group, j, e))];
  }
  /// Row (b, h, i)'s probabilities, and the factor 1 - tanh² the soft cap
  /// gives each score's gradient (1 without one).
  std::vector<double> probs(int64_t b, int64_t h, int64_t i,
                            std::vector<double> &capFactor) const {
    const double negInf = -std::numeric_limits<double>::infinity();
    std::vector<double> s(size_t(c.keys));
    capFactor.assign(size_t(c.keys), 1.0);
    double top = negInf;
    for (int64_t j = 0; j < c.keys; ++j) {
      double dot = 0;
      for (int64_t e = 0; e < c.d; ++e)
        dot += double(qAt(b, h, i, e)) * kAt(b, h, j, e);
      dot *= scale;
      if (c.softcap) {
        double t = std::tanh(dot / c.softcap);
        capFactor[size_t(j)] = 1 - t * t;
        dot = c.softcap * t;
      }
      int64_t me = mask.at(c.mask == 1 ? b : 0, 0, i, j);
      if (c.mask == 1)
        dot += mask.data[size_t(me)];
      if ((c.mask == 2 && !mask.bytes[size_t(me)]) || (c.causal && j > i))
        dot = negInf;
      s[size_t(j)] = dot;
      top = std::max(top, dot);
    }
    double sum = 0;
    for (double &x : s) {
      x = std::isinf(top) ? 0.0 : std::exp(x - top);
      sum += x;
    }
    for (double &x : s)
      x = sum > 0 ? x / sum : 0.0;
    return s;
  }
};

std::string describe(const Case &c) {
  std::ostringstream os;
  os << "B=" << c.batch << " Hq=" << c.hq << " Hkv=" << c.hkv << " S=" << c.rows
     << " L=" << c.keys << " D=" << c.d << " Dv=" << c.dv << " mask=" << c.mask
     << " causal=" << c.causal << " softcap=" << c.softcap;
  return os.str();
}

TEST(CUDAAttention, EqualsTheDefinitionInDouble) {
  std::mt19937 rng(7);
  for (const Case &c : kCases) {
    SCOPED_TRACE(describe(c));
    Problem pr(c, rng);
    Tensor4 y = pr.like({c.batch, c.hq, c.rows, c.dv});
    for (float &x : y.data)
      x = std::numeric_limits<float>::quiet_NaN(); // every element written
    call(pr.flags, pr.scale, c.softcap, pr.q.view(), pr.k.view(), pr.v.view(),
         pr.maskView(), y.view());
    std::vector<double> capFactor;
    for (int64_t b = 0; b < c.batch; ++b)
      for (int64_t h = 0; h < c.hq; ++h)
        for (int64_t i = 0; i < c.rows; ++i) {
          std::vector<double> p = pr.probs(b, h, i, capFactor);
          for (int64_t e = 0; e < c.dv; ++e) {
            double expected = 0, magnitude = 0;
            for (int64_t j = 0; j < c.keys; ++j) {
              expected += p[size_t(j)] * pr.vAt(b, h, j, e);
              magnitude += p[size_t(j)] * std::fabs(pr.vAt(b, h, j, e));
            }
            ASSERT_NEAR(y.data[size_t(y.at(b, h, i, e))], expected,
                        2e-6 * magnitude + 1e-30)
                << "y[" << b << ", " << h << ", " << i << ", " << e << "]";
          }
        }
  }
}

// The backward (qopt.attention_grad) against the chain rule in double:
// dV = Σ Pᵀ·dO, dS = P ∘ (dO·Vᵀ − rowsum(dO ∘ O)) (∘ (1 − tanh²) under a
// soft cap), dQ = scale · dS·K, dK = scale · Σ dSᵀ·Q, the sums over the
// query heads that share a key/value head. O is the forward's own output.
TEST(CUDAAttention, BackwardEqualsTheChainRuleInDouble) {
  std::mt19937 rng(11);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  for (const Case &c : kCases) {
    SCOPED_TRACE(describe(c));
    Problem pr(c, rng);
    Tensor4 y = pr.like({c.batch, c.hq, c.rows, c.dv}),
            dy = pr.like({c.batch, c.hq, c.rows, c.dv}),
            dq = pr.like({c.batch, c.hq, c.rows, c.d}),
            dk = pr.like({c.batch, c.hkv, c.keys, c.d}),
            dv = pr.like({c.batch, c.hkv, c.keys, c.dv}),
            stats({c.batch, c.hq, c.rows, 2}, {0, 1, 2, 3});
    for (float &x : dy.data)
      x = normal(rng);
    for (auto *t : {&dq, &dk, &dv, &stats})
      for (float &x : t->data)
        x = nan; // every element written
    call(pr.flags, pr.scale, c.softcap, pr.q.view(), pr.k.view(), pr.v.view(),
         pr.maskView(), y.view());
    qopt_cuda_attention_emulated_backward(
        pr.flags, pr.scale, c.softcap, QOPT_M4(pr.q.view()),
        QOPT_M4(pr.k.view()), QOPT_M4(pr.v.view()), QOPT_M4(pr.maskView()),
        QOPT_M4(y.view()), QOPT_M4(dy.view()), QOPT_M4(dq.view()),
        QOPT_M4(dk.view()), QOPT_M4(dv.view()), QOPT_M4(stats.view()));
    // Expected values and the magnitudes of their terms (the tolerance).
    size_t nk = size_t(c.batch * c.hkv * c.keys);
    std::vector<double> eK(nk * size_t(c.d)), mK(eK.size()),
        eV(nk * size_t(c.dv)), mV(eV.size());
    std::vector<double> capFactor;
    auto kvIndex = [&](int64_t b, int64_t h, int64_t j, int64_t e,
                       int64_t width) {
      return size_t(((b * c.hkv + h / pr.group) * c.keys + j) * width + e);
    };
    for (int64_t b = 0; b < c.batch; ++b)
      for (int64_t h = 0; h < c.hq; ++h)
        for (int64_t i = 0; i < c.rows; ++i) {
          std::vector<double> p = pr.probs(b, h, i, capFactor);
          double delta = 0;
          for (int64_t e = 0; e < c.dv; ++e)
            delta += double(dy.data[size_t(dy.at(b, h, i, e))]) *
                     y.data[size_t(y.at(b, h, i, e))];
          std::vector<double> ds(size_t(c.keys)), dsMag(size_t(c.keys));
          for (int64_t j = 0; j < c.keys; ++j) {
            double dp = 0, dpMag = 0;
            for (int64_t e = 0; e < c.dv; ++e) {
              double g = dy.data[size_t(dy.at(b, h, i, e))];
              dp += g * pr.vAt(b, h, j, e);
              dpMag += std::fabs(g * pr.vAt(b, h, j, e));
            }
            ds[size_t(j)] = p[size_t(j)] * (dp - delta) * capFactor[size_t(j)];
            dsMag[size_t(j)] = p[size_t(j)] * (dpMag + std::fabs(delta));
            for (int64_t e = 0; e < c.dv; ++e) {
              double g = dy.data[size_t(dy.at(b, h, i, e))];
              eV[kvIndex(b, h, j, e, c.dv)] += p[size_t(j)] * g;
              mV[kvIndex(b, h, j, e, c.dv)] += p[size_t(j)] * std::fabs(g);
            }
            for (int64_t e = 0; e < c.d; ++e) {
              eK[kvIndex(b, h, j, e, c.d)] +=
                  pr.scale * ds[size_t(j)] * pr.qAt(b, h, i, e);
              mK[kvIndex(b, h, j, e, c.d)] +=
                  pr.scale * dsMag[size_t(j)] * std::fabs(pr.qAt(b, h, i, e));
            }
          }
          for (int64_t e = 0; e < c.d; ++e) {
            double expected = 0, magnitude = 0;
            for (int64_t j = 0; j < c.keys; ++j) {
              expected += pr.scale * ds[size_t(j)] * pr.kAt(b, h, j, e);
              magnitude +=
                  pr.scale * dsMag[size_t(j)] * std::fabs(pr.kAt(b, h, j, e));
            }
            ASSERT_NEAR(dq.data[size_t(dq.at(b, h, i, e))], expected,
                        1e-5 * magnitude + 1e-30)
                << "dq[" << b << ", " << h << ", " << i << ", " << e << "]";
          }
        }
    for (int64_t b = 0; b < c.batch; ++b)
      for (int64_t g = 0; g < c.hkv; ++g)
        for (int64_t j = 0; j < c.keys; ++j) {
          for (int64_t e = 0; e < c.d; ++e)
            ASSERT_NEAR(dk.data[size_t(dk.at(b, g, j, e))],
                        eK[kvIndex(b, g * pr.group, j, e, c.d)],
                        1e-5 * mK[kvIndex(b, g * pr.group, j, e, c.d)] + 1e-30)
                << "dk[" << b << ", " << g << ", " << j << ", " << e << "]";
          for (int64_t e = 0; e < c.dv; ++e)
            ASSERT_NEAR(dv.data[size_t(dv.at(b, g, j, e))],
                        eV[kvIndex(b, g * pr.group, j, e, c.dv)],
                        1e-5 * mV[kvIndex(b, g * pr.group, j, e, c.dv)] + 1e-30)
                << "dv[" << b << ", " << g << ", " << j << ", " << e << "]";
        }
  }
}

} // namespace
