//===- DenseMath.cpp - Small dense math on weights at compile time --------===//

#include "qopt/Support/DenseMath.h"

#include <algorithm>
#include <cassert>
#include <cmath>
#include <cstring>

using namespace qopt::dense;

void qopt::dense::gemm(bool transA, bool transB, float alpha, const Matrix &a,
                       const Matrix &b, float beta, Matrix &c) {
  int64_t m = transA ? a.cols : a.rows, k = transA ? a.rows : a.cols;
  int64_t n = transB ? b.rows : b.cols;
  assert((transB ? b.cols : b.rows) == k && c.rows == m && c.cols == n &&
         "gemm: shapes do not agree");
  // Row i of C accumulates rows of op(B) scaled by op(A)[i, p]: the inner
  // loop runs along contiguous rows of B (or, for Bᵀ, dot products of
  // contiguous rows).
  std::vector<double> acc(n);
  for (int64_t i = 0; i < m; ++i) {
    std::fill(acc.begin(), acc.end(), 0.0);
    for (int64_t p = 0; p < k; ++p) {
      double av = transA ? a.at(p, i) : a.at(i, p);
      if (av == 0.0)
        continue;
      if (!transB) {
        const float *row = &b.data[size_t(p) * b.cols];
        for (int64_t j = 0; j < n; ++j)
          acc[j] += av * row[j];
      } else {
        for (int64_t j = 0; j < n; ++j)
          acc[j] += av * b.at(j, p);
      }
    }
    for (int64_t j = 0; j < n; ++j) {
      double prior = beta == 0.0f ? 0.0 : double(beta) * c.at(i, j);
      c.at(i, j) = float(double(alpha) * acc[j] + prior);
    }
  }
}

Matrix qopt::dense::matmul(const Matrix &a, const Matrix &b) {
  Matrix c(a.rows, b.cols);
  gemm(false, false, 1.0f, a, b, 0.0f, c);
  return c;
}

Matrix qopt::dense::transpose(const Matrix &a) {
  Matrix t(a.cols, a.rows);
  for (int64_t i = 0; i < a.rows; ++i)
    for (int64_t j = 0; j < a.cols; ++j)
      t.at(j, i) = a.at(i, j);
  return t;
}

std::vector<float> qopt::dense::rowNorms(const Matrix &a) {
  std::vector<float> norms(a.rows);
  for (int64_t i = 0; i < a.rows; ++i) {
    double sum = 0.0;
    for (int64_t j = 0; j < a.cols; ++j)
      sum += double(a.at(i, j)) * a.at(i, j);
    norms[i] = float(std::sqrt(sum));
  }
  return norms;
}

void qopt::dense::topSingular(const Matrix &a, int64_t r, Matrix &u,
                              std::vector<float> &s, Matrix &vt) {
  // G = a·aᵀ (m ≤ n) or aᵀ·a: its eigenvectors are a's left (right)
  // singular vectors, its eigenvalues the squared singular values.
  bool left = a.rows <= a.cols;
  int64_t p = left ? a.rows : a.cols, q = left ? a.cols : a.rows;
  auto at = [&](int64_t i, int64_t k) {
    return left ? double(a.at(i, k)) : double(a.at(k, i));
  };
  std::vector<double> g(size_t(p) * p), v(size_t(p) * p, 0.0);
  for (int64_t i = 0; i < p; ++i)
    for (int64_t j = i; j < p; ++j) {
      double sum = 0;
      for (int64_t k = 0; k < q; ++k)
        sum += at(i, k) * at(j, k);
      g[i * p + j] = g[j * p + i] = sum;
    }
  for (int64_t i = 0; i < p; ++i)
    v[i * p + i] = 1.0;
  for (int sweep = 0; sweep < 60; ++sweep) {
    double off = 0, scale = 0;
    for (int64_t i = 0; i < p; ++i)
      for (int64_t j = 0; j < p; ++j)
        (i == j ? scale : off) += g[i * p + j] * g[i * p + j];
    if (off <= 1e-30 * scale || off == 0)
      break;
    for (int64_t i = 0; i < p; ++i)
      for (int64_t j = i + 1; j < p; ++j) {
        double gij = g[i * p + j];
        if (gij == 0)
          continue;
        double theta = (g[j * p + j] - g[i * p + i]) / (2 * gij);
        double t = (theta >= 0 ? 1 : -1) /
                   (std::abs(theta) + std::sqrt(theta * theta + 1));
        double c = 1 / std::sqrt(t * t + 1), sn = t * c;
        for (int64_t k = 0; k < p; ++k) { // columns i, j
          double gki = g[k * p + i], gkj = g[k * p + j];
          g[k * p + i] = c * gki - sn * gkj;
          g[k * p + j] = sn * gki + c * gkj;
        }
        for (int64_t k = 0; k < p; ++k) { // rows i, j
          double gik = g[i * p + k], gjk = g[j * p + k];
          g[i * p + k] = c * gik - sn * gjk;
          g[j * p + k] = sn * gik + c * gjk;
        }
        for (int64_t k = 0; k < p; ++k) {
          double vki = v[k * p + i], vkj = v[k * p + j];
          v[k * p + i] = c * vki - sn * vkj;
          v[k * p + j] = sn * vki + c * vkj;
        }
      }
  }
  std::vector<int64_t> order(p);
  for (int64_t i = 0; i < p; ++i)
    order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&](int64_t x, int64_t y) {
    return g[x * p + x] > g[y * p + y];
  });
  // The other side's vectors: a·v / σ (or aᵀ·u / σ).
  u = Matrix(a.rows, r);
  vt = Matrix(r, a.cols);
  s.assign(r, 0.0f);
  for (int64_t k = 0; k < r; ++k) {
    int64_t e = order[k];
    double sigma = std::sqrt(std::max(g[e * p + e], 0.0));
    s[k] = float(sigma);
    for (int64_t i = 0; i < q; ++i) {
      double sum = 0;
      for (int64_t j = 0; j < p; ++j)
        sum += at(j, i) * v[j * p + e];
      double other = sigma > 0 ? sum / sigma : 0;
      if (left)
        vt.at(k, i) = float(other);
      else
        u.at(i, k) = float(other);
    }
    for (int64_t j = 0; j < p; ++j) {
      if (left)
        u.at(j, k) = float(v[j * p + e]);
      else
        vt.at(k, j) = float(v[j * p + e]);
    }
  }
}

void qopt::dense::topSingularRandomized(const Matrix &a, int64_t r, Matrix &u,
                                        std::vector<float> &s, Matrix &vt,
                                        int64_t oversample,
                                        int64_t powerIterations,
                                        uint64_t seed) {
  int64_t m = a.rows, n = a.cols;
  int64_t l = std::min(r + oversample, std::min(m, n));
  // Ω: n×l standard normal (splitmix64, Box–Muller), reproducible.
  uint64_t state = seed + 0x9e3779b97f4a7c15ull;
  auto next = [&]() {
    uint64_t z = (state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return double((z ^ (z >> 31)) >> 11) * 0x1.0p-53;
  };
  Matrix omega(n, l);
  for (float &x : omega.data) {
    double u1 = std::max(next(), 1e-300), u2 = next();
    x = float(std::sqrt(-2.0 * std::log(u1)) *
              std::cos(6.283185307179586 * u2));
  }
  Matrix q, unused;
  auto orth = [&](const Matrix &y, Matrix &basis) {
    thinQR(y, y.cols, basis, unused);
  };
  Matrix y(m, l);
  gemm(false, false, 1.0f, a, omega, 0.0f, y);
  orth(y, q);
  for (int64_t it = 0; it < powerIterations; ++it) {
    Matrix z(n, l), qz;
    gemm(true, false, 1.0f, a, q, 0.0f, z); // aᵀ·Q
    orth(z, qz);
    gemm(false, false, 1.0f, a, qz, 0.0f, y); // a·orth(aᵀ·Q)
    orth(y, q);
  }
  // B = Qᵀ·a (l×n): its SVD is a's restricted to span(Q).
  Matrix b(l, n), ub;
  gemm(true, false, 1.0f, q, a, 0.0f, b);
  topSingular(b, r, ub, s, vt);
  u = Matrix(m, r);
  gemm(false, false, 1.0f, q, ub, 0.0f, u);
}

void qopt::dense::thinQR(const Matrix &a, int64_t r, Matrix &q, Matrix &rRows) {
  // Householder on the first r columns (all R's first r rows need).
  int64_t m = a.rows;
  std::vector<double> w(size_t(m) * r);
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < r; ++j)
      w[i * r + j] = a.at(i, j);
  std::vector<std::vector<double>> reflectors;
  for (int64_t k = 0; k < r && k < m; ++k) {
    double norm = 0;
    for (int64_t i = k; i < m; ++i)
      norm += w[i * r + k] * w[i * r + k];
    norm = std::sqrt(norm);
    std::vector<double> h(m, 0.0);
    double alpha = w[k * r + k] > 0 ? -norm : norm;
    for (int64_t i = k; i < m; ++i)
      h[i] = w[i * r + k];
    h[k] -= alpha;
    double hn = 0;
    for (int64_t i = k; i < m; ++i)
      hn += h[i] * h[i];
    if (hn > 0)
      for (int64_t j = k; j < r; ++j) {
        double dot = 0;
        for (int64_t i = k; i < m; ++i)
          dot += h[i] * w[i * r + j];
        for (int64_t i = k; i < m; ++i)
          w[i * r + j] -= 2 * dot / hn * h[i];
      }
    for (double &x : h)
      x = hn > 0 ? x / std::sqrt(hn) : 0;
    reflectors.push_back(std::move(h));
  }
  // Q's first r columns: the reflectors applied to the identity's.
  q = Matrix(m, r);
  for (int64_t j = 0; j < r; ++j) {
    std::vector<double> col(m, 0.0);
    col[j] = 1.0;
    for (int64_t k = int64_t(reflectors.size()) - 1; k >= 0; --k) {
      double dot = 0;
      for (int64_t i = 0; i < m; ++i)
        dot += reflectors[k][i] * col[i];
      for (int64_t i = 0; i < m; ++i)
        col[i] -= 2 * dot * reflectors[k][i];
    }
    for (int64_t i = 0; i < m; ++i)
      q.at(i, j) = float(col[i]);
  }
  // R's first r rows = Qᵣᵀ · a.
  rRows = Matrix(r, a.cols);
  for (int64_t i = 0; i < r; ++i)
    for (int64_t j = 0; j < a.cols; ++j) {
      double sum = 0;
      for (int64_t k = 0; k < m; ++k)
        sum += double(q.at(k, i)) * a.at(k, j);
      rRows.at(i, j) = float(sum);
    }
}

size_t qopt::dense::floatKindBytes(FloatKind kind) {
  switch (kind) {
  case FloatKind::F16:
  case FloatKind::BF16:
    return 2;
  case FloatKind::F32:
    return 4;
  case FloatKind::F64:
    return 8;
  }
  return 0;
}

static uint32_t bitsOf(float v) {
  uint32_t u;
  std::memcpy(&u, &v, 4);
  return u;
}

static float floatOf(uint32_t u) {
  float v;
  std::memcpy(&v, &u, 4);
  return v;
}

float qopt::dense::halfToFloat(uint16_t h) {
  uint32_t sign = uint32_t(h & 0x8000) << 16;
  uint32_t exp = (h >> 10) & 0x1f, mant = h & 0x3ff;
  if (exp == 0x1f) // infinity / NaN
    return floatOf(sign | 0x7f800000 | (mant << 13));
  if (exp == 0) { // zero / subnormal: mant · 2^-24, exact in f32
    float v = std::ldexp(float(mant), -24);
    return sign ? -v : v;
  }
  return floatOf(sign | ((exp + 112) << 23) | (mant << 13));
}

uint16_t qopt::dense::floatToHalf(float value) {
  uint32_t u = bitsOf(value);
  uint16_t sign = (u >> 16) & 0x8000;
  uint32_t absBits = u & 0x7fffffff;
  if (absBits > 0x7f800000) // NaN: keep it quiet
    return sign | 0x7e00 | ((absBits >> 13) & 0x3ff);
  if (absBits >= 0x477ff000) // rounds to >= 65520: infinity
    return sign | 0x7c00;
  if (absBits < 0x38800000) { // below the smallest normal half (2^-14)
    // The subnormal half nearest to |value|: |value| / 2^-24 rounded to
    // nearest even (exact in double).
    double scaled = std::ldexp(double(floatOf(absBits)), 24);
    double rounded = std::nearbyint(scaled); // default mode: ties to even
    return sign | uint16_t(rounded);
  }
  // Normal: drop 13 mantissa bits with round-to-nearest-even; a carry into
  // the exponent is the correct result.
  uint32_t rebased = absBits - (112u << 23);
  uint32_t lsb = (rebased >> 13) & 1;
  rebased += 0xfff + lsb;
  return sign | uint16_t(rebased >> 13);
}

float qopt::dense::bfloat16ToFloat(uint16_t bits) {
  return floatOf(uint32_t(bits) << 16);
}

uint16_t qopt::dense::floatToBFloat16(float value) {
  uint32_t u = bitsOf(value);
  if ((u & 0x7fffffff) > 0x7f800000) // NaN: quiet, keep the sign
    return uint16_t((u >> 16) | 0x40);
  uint32_t lsb = (u >> 16) & 1;
  u += 0x7fff + lsb;
  return uint16_t(u >> 16);
}

void qopt::dense::decodeFloats(FloatKind kind, const void *bytes, size_t count,
                               float *out) {
  const auto *p = static_cast<const unsigned char *>(bytes);
  for (size_t i = 0; i < count; ++i) {
    switch (kind) {
    case FloatKind::F16:
    case FloatKind::BF16: {
      uint16_t h = uint16_t(p[2 * i] | (p[2 * i + 1] << 8));
      out[i] = kind == FloatKind::F16 ? halfToFloat(h) : bfloat16ToFloat(h);
      break;
    }
    case FloatKind::F32: {
      uint32_t u = 0;
      for (int b = 0; b < 4; ++b)
        u |= uint32_t(p[4 * i + b]) << (8 * b);
      out[i] = floatOf(u);
      break;
    }
    case FloatKind::F64: {
      uint64_t u = 0;
      for (int b = 0; b < 8; ++b)
        u |= uint64_t(p[8 * i + b]) << (8 * b);
      double d;
      std::memcpy(&d, &u, 8);
      out[i] = float(d);
      break;
    }
    }
  }
}

void qopt::dense::encodeFloats(FloatKind kind, const float *values,
                               size_t count, void *bytes) {
  auto *p = static_cast<unsigned char *>(bytes);
  for (size_t i = 0; i < count; ++i) {
    switch (kind) {
    case FloatKind::F16:
    case FloatKind::BF16: {
      uint16_t h = kind == FloatKind::F16 ? floatToHalf(values[i])
                                          : floatToBFloat16(values[i]);
      p[2 * i] = h & 0xff;
      p[2 * i + 1] = h >> 8;
      break;
    }
    case FloatKind::F32: {
      uint32_t u = bitsOf(values[i]);
      for (int b = 0; b < 4; ++b)
        p[4 * i + b] = (u >> (8 * b)) & 0xff;
      break;
    }
    case FloatKind::F64: {
      double d = values[i];
      uint64_t u;
      std::memcpy(&u, &d, 8);
      for (int b = 0; b < 8; ++b)
        p[8 * i + b] = (u >> (8 * b)) & 0xff;
      break;
    }
    }
  }
}
