//===- QLinearKernelTest.cpp - qopt_kernel_qlinear against a reference ----===//
//
// Every format (int4 with and without zero points, uint4, int8, uint8, NF4)
// and group size the kernel takes, on odd shapes (K not a multiple of the
// group, N odd and even, M = 1, 3, 7, 17 and 33: the row kernels, in
// blocks of 4 rows of x and pairs of weight rows, and the
// dequantize-and-BLAS path from 32 rows), on every code path this CPU can
// run, with 1 and 2 threads, against dequantize-then-matmul in double
// precision. On the AVX-512 paths each case runs three ways: the default
// switch to the GEMMs of QGemm.cpp (int8: tiles of 6 rows, chunks of 1024
// codes; f32: tiles of 12 rows, blocks of 256 codes; both panels of 32
// weight rows, cut by N), the row kernels at every M, the GEMMs at every M.
// f32 activations: error within f32 rounding of the sum of |w x|;
// int8 activations: within the rounding of each x to its block's step.
//
//===----------------------------------------------------------------------===//

#include "qopt/Support/QuantFormats.h"

#include "gtest/gtest.h"

#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

extern "C" {
void qopt_kernel_qlinear(int64_t, int64_t, int64_t, int64_t, int64_t, int64_t,
                         int64_t, int64_t, int64_t, int64_t, int64_t, int64_t,
                         int64_t, int64_t, int64_t, int64_t, int64_t, int64_t,
                         int64_t, int64_t, int64_t, int64_t, int64_t, int64_t,
                         int64_t, int64_t, int64_t, int64_t, int64_t);
const char *qopt_kernel_cpu_path(void);
int qopt_kernel_set_cpu_path(const char *);
void qopt_kernel_set_qlinear_threads(int);
int64_t qopt_kernel_set_qlinear_gemm_rows(int64_t);
}

namespace {
enum Format { Int4, UInt4, Int8, UInt8, NF4, FP8E4M3, FP8E5M2 };

bool isFP8(Format f) { return f == FP8E4M3 || f == FP8E5M2; }

/// An FP8 code's value, from the support library's codec (checked against
/// ml_dtypes' tables in QuantFormatsTest).
float fp8(Format f, uint8_t code) {
  return qopt::smallFloatDecode(f == FP8E4M3 ? qopt::SmallFloatKind::F8E4M3FN
                                             : qopt::SmallFloatKind::F8E5M2,
                                code);
}

struct Case {
  Format format;
  int64_t n, k, group;
  bool zp;
};

std::string describe(const Case &c, int64_t m, const char *path, int threads,
                     bool int8) {
  const char *names[] = {"int4", "uint4",    "int8",    "uint8",
                         "nf4",  "fp8-e4m3", "fp8-e5m2"};
  return std::string(names[c.format]) + (c.zp ? "+zp" : "") + " n" +
         std::to_string(c.n) + " k" + std::to_string(c.k) + " g" +
         std::to_string(c.group) + " m" + std::to_string(m) + " " + path +
         " threads " + std::to_string(threads) + (int8 ? " int8-act" : "");
}

/// A random weight of case `c`: codes (finite ones for FP8), scales in
/// [0.01, 0.1), zero points in the format's range.
struct Weight {
  std::vector<uint8_t> data;
  std::vector<float> scales;
  std::vector<int8_t> zps;
  int64_t rowBytes = 0, groups = 0;
};

Weight randomWeight(const Case &c, std::mt19937 &rng) {
  Weight w;
  bool four = c.format == Int4 || c.format == UInt4 || c.format == NF4;
  w.rowBytes = four ? (c.k + 1) / 2 : c.k;
  w.groups = (c.k + c.group - 1) / c.group;
  w.data.resize(size_t(c.n * w.rowBytes));
  for (uint8_t &b : w.data)
    do
      b = uint8_t(rng());
    while (isFP8(c.format) && !std::isfinite(fp8(c.format, b)));
  std::uniform_real_distribution<float> scaleDist(0.01f, 0.1f);
  w.scales.resize(size_t(c.n * w.groups));
  for (float &s : w.scales)
    s = scaleDist(rng);
  w.zps.resize(size_t(c.n * w.groups));
  for (int8_t &z : w.zps)
    z = c.format == Int4    ? int8_t(int(rng() % 16) - 8)
        : c.format == UInt4 ? int8_t(rng() % 16)
                            : int8_t(rng());
  return w;
}

/// Element (r, col)'s code (NF4: its index) and, for the integer formats
/// with zero points, that minus its group's zero point.
int32_t codeOf(const Case &c, const Weight &w, int64_t r, int64_t col) {
  bool four = c.format == Int4 || c.format == UInt4 || c.format == NF4;
  int32_t code;
  if (four) {
    int nib = (w.data[r * w.rowBytes + col / 2] >> (4 * (col & 1))) & 15;
    code = c.format == Int4 ? (nib ^ 8) - 8 : nib;
  } else {
    uint8_t b = w.data[r * w.rowBytes + col];
    code = c.format == Int8 ? int32_t(int8_t(b)) : int32_t(b);
  }
  if (!c.zp || c.format == NF4 || isFP8(c.format))
    return code;
  int8_t z = w.zps[r * w.groups + col / c.group];
  return code - (c.format == Int4 || c.format == Int8 ? int32_t(z)
                                                      : int32_t(uint8_t(z)));
}

/// Runs one case and checks every output element. `nanRow`: row of x to
/// hold a NaN (-1: none); that row's outputs must all be NaN.
void check(const Case &c, int64_t m, const char *path, int threads, bool int8,
           int64_t nanRow = -1) {
  SCOPED_TRACE(describe(c, m, path, threads, int8));
  std::mt19937 rng(unsigned(c.n * 131 + c.k * 7 + c.group + m));
  Weight wt = randomWeight(c, rng);
  int64_t rowBytes = wt.rowBytes, groups = wt.groups;
  std::vector<uint8_t> &data = wt.data;
  std::vector<float> &scales = wt.scales;
  std::vector<int8_t> &zps = wt.zps;
  std::normal_distribution<float> xDist(0.0f, 1.0f);
  std::vector<float> x(size_t(m * c.k));
  for (float &v : x)
    v = xDist(rng);
  x[0] = 6.0f; // an outlier in the first block
  if (nanRow >= 0)
    x[nanRow * c.k + c.k - 1] = NAN;

  // The reference: each weight in double, then the product.
  auto weight = [&](int64_t r, int64_t col) {
    double s = scales[r * groups + col / c.group];
    if (c.format == NF4)
      return qopt::nf4CodeTable()[codeOf(c, wt, r, col)] * s;
    if (isFP8(c.format))
      return double(fp8(c.format, data[r * rowBytes + col])) * s;
    return codeOf(c, wt, r, col) * s;
  };
  // Start from non-zero outputs: the kernel accumulates.
  std::vector<float> y(size_t(m * c.n));
  for (size_t e = 0; e < y.size(); ++e)
    y[e] = float(e % 7) * 0.25f;
  std::vector<float> expected(y.size()), bound(y.size());
  for (int64_t i = 0; i < m; ++i)
    for (int64_t r = 0; r < c.n; ++r) {
      double sum = y[i * c.n + r], mag = 0, quant = 0;
      for (int64_t b0 = 0; b0 < c.k; b0 += 32) {
        double amax = 0;
        for (int64_t col = b0; col < std::min(c.k, b0 + 32); ++col)
          amax = std::max(amax, std::fabs(double(x[i * c.k + col])));
        for (int64_t col = b0; col < std::min(c.k, b0 + 32); ++col) {
          double wv = weight(r, col), xv = x[i * c.k + col];
          sum += wv * xv;
          mag += std::fabs(wv * xv);
          // Each x moves by at most half its block's step (amax / 127).
          quant += std::fabs(wv) * amax / 254.0;
        }
      }
      expected[i * c.n + r] = float(sum);
      bound[i * c.n + r] =
          float(2e-6 * (mag + std::fabs(sum)) + 1e-6 + (int8 ? quant : 0));
    }
  int64_t flags = (c.zp ? 1 : 0) | (int8 ? 2 : 0);
  auto ptr = [](const void *p) { return reinterpret_cast<int64_t>(p); };
  qopt_kernel_set_qlinear_threads(threads);
  qopt_kernel_qlinear(c.format, c.group, flags, 1, 1, m, c.n, c.k,
                      ptr(x.data()), 0, 0, 0, c.k, 1, ptr(data.data()), 0,
                      rowBytes, ptr(scales.data()), 0, groups, ptr(zps.data()),
                      0, groups, ptr(y.data()), 0, 0, 0, c.n, 1);
  for (size_t e = 0; e < y.size(); ++e) {
    if (int64_t(e) / c.n == nanRow)
      ASSERT_TRUE(std::isnan(y[e])) << "element " << e;
    else
      ASSERT_NEAR(y[e], expected[e], bound[e]) << "element " << e;
  }
}

const char *const kPaths[] = {"scalar", "avx2", "avx2-vnni", "avx512",
                              "avx512-vnni"};

TEST(QLinearKernel, EveryFormatPathAndShape) {
  std::string best = qopt_kernel_cpu_path();
  const Case cases[] = {
      {Int4, 37, 200, 32, false},
      {Int4, 37, 200, 64, true},
      {Int4, 33, 256, 128, false},
      {Int4, 5, 199, 199, false},
      {UInt4, 37, 200, 32, true},
      {UInt4, 9, 130, 64, true},
      {UInt4, 9, 100, 16, true},
      {Int8, 37, 200, 200, false},
      {Int8, 37, 96, 32, true},
      {UInt8, 11, 150, 150, true},
      {NF4, 37, 256, 64, false},
      {NF4, 7, 100, 32, false},
      {Int4, 17, 96, 48, false},
      {Int4, 3, 7, 4, true},
      // GEMM panels cut inside the second vector, K past one chunk.
      {Int4, 50, 1100, 32, false},
      {UInt8, 45, 1057, 1057, true},
      {FP8E4M3, 37, 200, 200, false},
      {FP8E5M2, 50, 300, 32, false},
      {FP8E4M3, 9, 1057, 1057, false},
  };
  int ran = 0;
  for (const char *path : kPaths) {
    if (!qopt_kernel_set_cpu_path(path))
      continue; // this CPU lacks it
    ++ran;
    bool gemms = std::string(path).rfind("avx512", 0) == 0;
    for (const Case &c : cases)
      for (int64_t m : {1, 3, 7, 17, 33})
        for (int threads : {1, 2})
          for (bool int8 : {false, true})
            for (int64_t gemmRows : {0, 1 << 30, 1}) {
              if (gemmRows && !gemms)
                continue;
              SCOPED_TRACE("GEMM from " + std::to_string(gemmRows) + " rows");
              qopt_kernel_set_qlinear_gemm_rows(gemmRows);
              check(c, m, path, threads, int8);
            }
    qopt_kernel_set_qlinear_gemm_rows(0);
  }
  qopt_kernel_set_cpu_path(best.c_str());
  EXPECT_GE(ran, 1);
  std::printf("quantized-product paths tested here: %d (best: %s)\n", ran,
              best.c_str());
}

TEST(QLinearKernel, NonFiniteActivations) {
  // A NaN reaches every output of its row and no other, on every path
  // (int8 activations: its block's scale is NaN), GEMM and row kernel.
  std::string best = qopt_kernel_cpu_path();
  for (const char *path : kPaths) {
    if (!qopt_kernel_set_cpu_path(path))
      continue;
    for (int64_t gemmRows : {int64_t(1) << 30, int64_t(1)}) {
      qopt_kernel_set_qlinear_gemm_rows(gemmRows);
      for (bool int8 : {false, true}) {
        check({Int4, 40, 130, 32, false}, 20, path, 1, int8, 13);
        check({UInt4, 40, 130, 64, true}, 7, path, 2, int8, 0);
      }
    }
  }
  qopt_kernel_set_qlinear_gemm_rows(0);
  qopt_kernel_set_cpu_path(best.c_str());
}

TEST(QLinearKernel, TinyActivationBlocks) {
  // Blocks whose absmax is so small that 127 / absmax overflows (2e-37):
  // with int8 activations they quantize to zeros (their true share is
  // below 1e-34), never to codes of the wrong sign (0 * inf made NaN,
  // converted to -127: y = -1.3e-35 for a true +1.3e-35). Weights: int8
  // codes 1, scale 1; every path, row kernels and GEMMs.
  std::string best = qopt_kernel_cpu_path();
  const int64_t n = 8, k = 64, m = 8;
  std::vector<uint8_t> data(size_t(n * k), 1);
  std::vector<float> scales(size_t(n), 1.0f);
  std::vector<float> x(size_t(m * k), 2e-37f);
  for (const char *path : kPaths) {
    if (!qopt_kernel_set_cpu_path(path))
      continue;
    for (int64_t gemmRows : {int64_t(1) << 30, int64_t(1)}) {
      qopt_kernel_set_qlinear_gemm_rows(gemmRows);
      for (int64_t flags : {0, 2}) {
        SCOPED_TRACE(std::string(path) + " flags " + std::to_string(flags) +
                     " GEMM from " + std::to_string(gemmRows));
        std::vector<float> y(size_t(m * n), 0.0f);
        qopt_kernel_qlinear(
            2, k, flags, 1, 1, m, n, k, reinterpret_cast<int64_t>(x.data()), 0,
            0, 0, k, 1, reinterpret_cast<int64_t>(data.data()), 0, k,
            reinterpret_cast<int64_t>(scales.data()), 0, 1, 0, 0, 0,
            reinterpret_cast<int64_t>(y.data()), 0, 0, 0, n, 1);
        for (float v : y) {
          ASSERT_GE(v, 0.0f);
          ASSERT_LE(v, 64 * 2e-37f * 1.01f);
        }
      }
    }
  }
  qopt_kernel_set_qlinear_gemm_rows(0);
  qopt_kernel_set_cpu_path(best.c_str());
}

TEST(QLinearKernel, FP8CodesAndPerTensorScales) {
  // Every FP8 code (a weight row each: E4M3's NaN and E5M2's infinities
  // and NaNs included) times ones, with one scale for every row (scale row
  // stride 0, as per-tensor scales are passed), on every path: each output
  // is the code's value (codec of the support library) times the scale.
  std::string best = qopt_kernel_cpu_path();
  const int64_t n = 256, k = 64;
  std::vector<uint8_t> data(size_t(n * k));
  for (int64_t r = 0; r < n; ++r)
    for (int64_t c = 0; c < k; ++c)
      data[r * k + c] = uint8_t(c == 5 ? r : 0); // one code per row
  float scale = 0.5f;
  std::vector<float> x(size_t(20 * k), 1.0f);
  for (const char *path : kPaths) {
    if (!qopt_kernel_set_cpu_path(path))
      continue;
    for (Format f : {FP8E4M3, FP8E5M2})
      for (int64_t m : {int64_t(1), int64_t(20)}) {
        SCOPED_TRACE(std::string(path) + (f == FP8E4M3 ? " e4m3" : " e5m2") +
                     " m" + std::to_string(m));
        std::vector<float> y(size_t(m * n), 0.0f);
        qopt_kernel_qlinear(f, k, 0, 1, 1, m, n, k,
                            reinterpret_cast<int64_t>(x.data()), 0, 0, 0, k, 1,
                            reinterpret_cast<int64_t>(data.data()), 0, k,
                            reinterpret_cast<int64_t>(&scale), 0, 0, 0, 0, 0,
                            reinterpret_cast<int64_t>(y.data()), 0, 0, 0, n, 1);
        for (int64_t i = 0; i < m; ++i)
          for (int64_t r = 0; r < n; ++r) {
            float want = fp8(f, uint8_t(r)) * scale, got = y[i * n + r];
            if (std::isnan(want))
              ASSERT_TRUE(std::isnan(got)) << "code " << r;
            else
              ASSERT_EQ(got, want) << "code " << r;
          }
      }
  }
  qopt_kernel_set_cpu_path(best.c_str());
}

TEST(QLinearKernel, StridedOperandsAndOuterLoops) {
  // A column-major x (copied) and a transposed y, two outer loops.
  std::mt19937 rng(5);
  const int64_t m = 2, n = 5, k = 64, o1 = 3;
  std::vector<uint8_t> data(size_t(n * k / 2));
  for (uint8_t &b : data)
    b = uint8_t(rng());
  std::vector<float> scales(size_t(n * 2), 0.05f);
  std::vector<float> x(size_t(o1 * m * k)), y(size_t(o1 * m * n), 0.0f);
  for (float &v : x)
    v = float(int(rng() % 17) - 8) * 0.125f;
  // x[j][r][col] at j*m*k + col*m + r; y[j][r][col] at j*m*n + col*m + r.
  qopt_kernel_qlinear(0, 32, 0, 1, o1, m, n, k,
                      reinterpret_cast<int64_t>(x.data()), 0, 0, m * k, 1, m,
                      reinterpret_cast<int64_t>(data.data()), 0, k / 2,
                      reinterpret_cast<int64_t>(scales.data()), 0, 2, 0, 0, 0,
                      reinterpret_cast<int64_t>(y.data()), 0, 0, m * n, 1, m);
  for (int64_t j = 0; j < o1; ++j)
    for (int64_t r = 0; r < m; ++r)
      for (int64_t col = 0; col < n; ++col) {
        double sum = 0;
        for (int64_t p = 0; p < k; ++p) {
          int nib = (data[col * (k / 2) + p / 2] >> (4 * (p & 1))) & 15;
          sum += double((nib ^ 8) - 8) * 0.05 * x[j * m * k + p * m + r];
        }
        EXPECT_NEAR(y[j * m * n + col * m + r], sum, 1e-4);
      }
}
TEST(QLinearKernel, PerTokenIntegerActivations) {
  // flags 4 | bits << 8: each row of x quantized to round-half-even(x / s),
  // s = max|x| / (2^(bits-1) - 1) (1 for a zero row), then integer products
  // with the codes minus their zero points; against the same quantization
  // and the product in double. Integer formats, groups, zero points, odd
  // shapes, M = 1 … 33 (row kernels and, from 7 rows, the int8 GEMM), 1
  // and 2 threads, every path this CPU has (the VNNI paths run the row
  // kernels / GEMM of int8 activations with one step per token; the others
  // int16 products); a row holding a NaN or an infinity gives NaN
  // outputs, a zero row zeros.
  std::string best = qopt_kernel_cpu_path();
  const Case cases[] = {
      {Int4, 37, 200, 32, false},
      {Int4, 37, 200, 64, true},
      {UInt4, 9, 130, 64, true},
      {UInt4, 9, 100, 16, true},
      {Int8, 37, 200, 200, false},
      {Int8, 37, 96, 32, true},
      {UInt8, 11, 150, 150, true},
      {Int4, 3, 7, 4, true},
      {Int4, 50, 1100, 32, false},
      // Whole groups of 16 / 32 codes: the vector paths (nibbles unpacked
      // 32 at a time, group sums scaled in lanes).
      {Int4, 33, 256, 32, false},
      {UInt4, 17, 256, 64, true},
      {Int4, 9, 128, 128, true},
      {Int8, 17, 128, 32, true},
      {UInt8, 5, 96, 16, true},
  };
  for (const char *path : kPaths) {
    if (!qopt_kernel_set_cpu_path(path))
      continue;
    for (const Case &c : cases)
      for (int bits : {8, 4})
        for (int64_t m : {1, 3, 17, 33})
          for (int threads : {1, 2}) {
            SCOPED_TRACE(describe(c, m, path, threads, false) + " a" +
                         std::to_string(bits));
            std::mt19937 rng(unsigned(c.n * 31 + c.k + m + bits));
            Weight wt = randomWeight(c, rng);
            int64_t rowBytes = wt.rowBytes, groups = wt.groups;
            std::normal_distribution<float> xDist(0.0f, 1.0f);
            std::vector<float> x(size_t(m * c.k));
            for (float &v : x)
              v = xDist(rng);
            x[0] = 6.0f;
            int64_t nanRow = m > 2 ? 1 : -1, zeroRow = m > 2 ? 2 : -1;
            if (nanRow >= 0)
              x[nanRow * c.k + c.k / 2] = m == 17 ? INFINITY : NAN;
            if (zeroRow >= 0)
              std::fill(x.begin() + zeroRow * c.k,
                        x.begin() + (zeroRow + 1) * c.k, 0.0f);
            std::vector<float> y(size_t(m * c.n), 0.5f);
            std::vector<double> expected(y.size()), bound(y.size());
            float qmax = float((1 << (bits - 1)) - 1);
            for (int64_t i = 0; i < m; ++i) {
              float absmax = 0;
              for (int64_t col = 0; col < c.k; ++col)
                absmax = std::max(absmax, std::fabs(x[i * c.k + col]));
              float s = absmax / qmax;
              if (s == 0.0f)
                s = 1.0f;
              for (int64_t r = 0; r < c.n; ++r) {
                double sum = 0, mag = 0;
                for (int64_t col = 0; col < c.k; ++col) {
                  float q = std::nearbyint(x[i * c.k + col] / s);
                  q = std::min(std::max(q, -qmax - 1), qmax);
                  double v = double(q) * double(s) * codeOf(c, wt, r, col) *
                             wt.scales[r * groups + col / c.group];
                  sum += v;
                  mag += std::fabs(v);
                }
                expected[i * c.n + r] = 0.5 + sum;
                bound[i * c.n + r] = 2e-6 * mag + 1e-6;
              }
            }
            auto ptr = [](const void *p) {
              return reinterpret_cast<int64_t>(p);
            };
            qopt_kernel_set_qlinear_threads(threads);
            qopt_kernel_qlinear(
                c.format, c.group, (c.zp ? 1 : 0) | 4 | (int64_t(bits) << 8), 1,
                1, m, c.n, c.k, ptr(x.data()), 0, 0, 0, c.k, 1,
                ptr(wt.data.data()), 0, rowBytes, ptr(wt.scales.data()), 0,
                groups, ptr(wt.zps.data()), 0, groups, ptr(y.data()), 0, 0, 0,
                c.n, 1);
            for (size_t e = 0; e < y.size(); ++e) {
              if (int64_t(e) / c.n == nanRow)
                ASSERT_TRUE(std::isnan(y[e])) << "element " << e;
              else if (int64_t(e) / c.n == zeroRow)
                ASSERT_EQ(y[e], 0.5f) << "element " << e;
              else
                ASSERT_NEAR(y[e], expected[e], bound[e]) << "element " << e;
            }
          }
  }
  qopt_kernel_set_cpu_path(best.c_str());
}

} // namespace
