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
#include <vector>

extern "C" void qopt_cuda_attention_emulated(QOPT_ATTENTION_PARAMS);

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

void call(int64_t flags, double scale, double softcap, const Memref4 &q,
          const Memref4 &k, const Memref4 &v, const Memref4 &m,
          const Memref4 &y) {
  qopt_cuda_attention_emulated(
      flags, scale, softcap, nullptr, q.aligned, q.offset, q.size[0], q.size[1],
      q.size[2], q.size[3], q.stride[0], q.stride[1], q.stride[2], q.stride[3],
      nullptr, k.aligned, k.offset, k.size[0], k.size[1], k.size[2], k.size[3],
      k.stride[0], k.stride[1], k.stride[2], k.stride[3], nullptr, v.aligned,
      v.offset, v.size[0], v.size[1], v.size[2], v.size[3], v.stride[0],
      v.stride[1], v.stride[2], v.stride[3], nullptr, m.aligned, m.offset,
      m.size[0], m.size[1], m.size[2], m.size[3], m.stride[0], m.stride[1],
      m.stride[2], m.stride[3], nullptr, y.aligned, y.offset, y.size[0],
      y.size[1], y.size[2], y.size[3], y.stride[0], y.stride[1], y.stride[2],
      y.stride[3]);
}

struct Case {
  int64_t batch, hq, hkv, rows, keys, d, dv;
  int mask; // 0 none, 1 float [B, 1, S, L], 2 bool [1, 1, S, L]
  bool causal;
  double softcap;  // 0: none
  bool transposed; // Q, K, V, Y stored [B, S, H, D]
};

TEST(CUDAAttention, EqualsTheDefinitionInDouble) {
  const Case cases[] = {
      {2, 4, 2, 37, 70, 24, 40, 1, false, 0, true},
      {1, 2, 2, 37, 70, 24, 40, 2, true, 0, false},
      {1, 3, 1, 20, 50, 16, 16, 0, true, 5.0, true},
      {1, 1, 1, 5, 33, 128, 128, 0, false, 0, false},
      {2, 2, 1, 17, 32, 8, 8, 1, true, 0, true},
      {1, 2, 2, 3, 0, 8, 8, 0, false, 0, false},
  };
  std::mt19937 rng(7);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_real_distribution<float> uniform(0.0f, 1.0f);
  const float negInf = -std::numeric_limits<float>::infinity();
  for (const Case &c : cases) {
    SCOPED_TRACE(testing::Message()
                 << "B=" << c.batch << " Hq=" << c.hq << " Hkv=" << c.hkv
                 << " S=" << c.rows << " L=" << c.keys << " D=" << c.d
                 << " Dv=" << c.dv << " mask=" << c.mask
                 << " causal=" << c.causal << " softcap=" << c.softcap);
    std::array<int, 4> perm = c.transposed ? std::array<int, 4>{0, 2, 1, 3}
                                           : std::array<int, 4>{0, 1, 2, 3};
    Tensor4 q({c.batch, c.hq, c.rows, c.d}, perm),
        k({c.batch, c.hkv, c.keys, c.d}, perm),
        v({c.batch, c.hkv, c.keys, c.dv}, perm),
        y({c.batch, c.hq, c.rows, c.dv}, perm);
    Tensor4 mask(c.mask == 1
                     ? std::array<int64_t, 4>{c.batch, 1, c.rows, c.keys}
                     : std::array<int64_t, 4>{1, 1, c.rows, c.keys},
                 {0, 1, 2, 3});
    for (auto *t : {&q, &k, &v})
      for (float &x : t->data)
        x = normal(rng);
    for (float &x : y.data)
      x = std::numeric_limits<float>::quiet_NaN(); // every element written
    // Masks: about a fifth of the keys masked, and query row 1 fully.
    for (int64_t b = 0; b < mask.size[0]; ++b)
      for (int64_t i = 0; i < c.rows; ++i)
        for (int64_t j = 0; j < c.keys; ++j) {
          bool off = uniform(rng) < 0.2f || i == 1;
          int64_t e = mask.at(b, 0, i, j);
          mask.data[size_t(e)] = off ? negInf : normal(rng);
          mask.bytes[size_t(e)] = !off;
        }
    double scale = 1.0 / std::sqrt(double(c.d));
    int64_t flags = (c.mask == 1 ? qopt_cuda::kAttnFloatMask : 0) |
                    (c.mask == 2 ? qopt_cuda::kAttnBoolMask : 0) |
                    (c.causal ? qopt_cuda::kAttnCausal : 0) |
                    (c.softcap ? qopt_cuda::kAttnSoftcap : 0);
    call(flags, scale, c.softcap, q.view(), k.view(), v.view(),
         c.mask ? mask.view(c.mask == 2) : q.view(), y.view());
    int64_t group = c.hq / c.hkv;
    for (int64_t b = 0; b < c.batch; ++b)
      for (int64_t h = 0; h < c.hq; ++h)
        for (int64_t i = 0; i < c.rows; ++i) {
          std::vector<double> s(size_t(c.keys));
          double top = -std::numeric_limits<double>::infinity();
          for (int64_t j = 0; j < c.keys; ++j) {
            double dot = 0;
            for (int64_t e = 0; e < c.d; ++e)
              dot += double(q.data[size_t(q.at(b, h, i, e))]) *
                     k.data[size_t(k.at(b, h / group, j, e))];
            dot *= scale;
            if (c.softcap)
              dot = c.softcap * std::tanh(dot / c.softcap);
            int64_t me = mask.at(c.mask == 1 ? b : 0, 0, i, j);
            if (c.mask == 1)
              dot += mask.data[size_t(me)];
            if ((c.mask == 2 && !mask.bytes[size_t(me)]) || (c.causal && j > i))
              dot = -std::numeric_limits<double>::infinity();
            s[size_t(j)] = dot;
            top = std::max(top, dot);
          }
          double sum = 0;
          for (double &x : s) {
            x = std::isinf(top) ? 0.0 : std::exp(x - top);
            sum += x;
          }
          for (int64_t e = 0; e < c.dv; ++e) {
            double expected = 0, magnitude = 0;
            for (int64_t j = 0; j < c.keys; ++j) {
              double vj = v.data[size_t(v.at(b, h / group, j, e))];
              expected += s[size_t(j)] * vj;
              magnitude += s[size_t(j)] * std::fabs(vj);
            }
            if (sum > 0) {
              expected /= sum;
              magnitude /= sum;
            }
            float got = y.data[size_t(y.at(b, h, i, e))];
            ASSERT_NEAR(got, expected, 2e-6 * magnitude + 1e-30)
                << "y[" << b << ", " << h << ", " << i << ", " << e << "]";
          }
        }
  }
}

} // namespace
