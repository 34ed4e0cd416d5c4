//===- CUDAW8A8Test.cpp - the CUDA per-token integer product on the CPU ---===//
//
// W8A8.cu's launches through their CPU emulation (qopt_cuda_qlinear_emulated
// with the per-token flag, which qoptc --cuda-emulate models call: the
// planning, the token quantization's warps and the integer GEMM's threads
// phase by phase) against the definition: every row of x quantized per
// token to `bits`-bit codes (step max|x| / qmax, 1 where 0, NaN for a
// non-finite row; codes rint(x / step) clamped), the integer products
// summed per scale group, times the group's scale and the row's step, in
// double. Then against the CPU target's own kernel (qopt_kernel_qlinear
// with the same flag), which computes the same sums in another order.
//
//===----------------------------------------------------------------------===//

#include "../../lib/Runtime/Kernels/CUDA/QLinearLaunch.h"
#include "CUDAReference.h"
#include "FusedQuantCheck.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <vector>

extern "C" void qopt_cuda_quantize_rows_emulated(int64_t, int64_t, int64_t,
                                                 int64_t, int64_t, int64_t,
                                                 int64_t, int64_t, int64_t,
                                                 int64_t, int64_t, int64_t,
                                                 int64_t, int64_t);
extern "C" void qopt_kernel_qlinear(int64_t, int64_t, int64_t, int64_t, int64_t,
                                    int64_t, int64_t, int64_t, int64_t, int64_t,
                                    int64_t, int64_t, int64_t, int64_t, int64_t,
                                    int64_t, int64_t, int64_t, int64_t, int64_t,
                                    int64_t, int64_t, int64_t, int64_t, int64_t,
                                    int64_t, int64_t, int64_t, int64_t);

namespace {

/// A row's step by the definition: max|x| / largest, 1 where that is 0;
/// `finite`: whether the row has no NaN or infinity (its outputs are NaN).
float referenceStep(const float *xr, int64_t k, float largest, bool &finite) {
  float amax = 0.0f;
  finite = true;
  for (int64_t kk = 0; kk < k; ++kk) {
    finite &= std::isfinite(xr[kk]);
    amax = std::fmax(amax, std::fabs(xr[kk]));
  }
  float step = amax / largest;
  return step == 0.0f ? 1.0f : step;
}

/// Whether got and want hold the same floats (NaN where the other has
/// NaN).
bool sameFloat(float got, float want) {
  return std::isnan(got) ? std::isnan(want) : got == want;
}

/// The elements [from, to) of y, rows between batches, are untouched.
void expectGapUntouched(const std::vector<float> &y,
                        const std::vector<float> &before, int64_t from,
                        int64_t to) {
  for (int64_t e = from; e < to; ++e)
    ASSERT_TRUE(sameFloat(y[size_t(e)], before[size_t(e)]))
        << "gap element " << e;
}

struct Case {
  int format; // 0 int4, 1 uint4, 2 int8
  bool zp;
  int bits;
  int64_t batch, m, n, k, group;
  bool foldable;          // the batches' rows of x and y continue (fold into M)
  bool overwrite;         // flag 16: y = …
  bool perTensor = false; // one scale for every row (row stride 0)
};

class W8A8 : public testing::TestWithParam<Case> {};

TEST_P(W8A8, EqualsTheDefinition) {
  const Case c = GetParam();
  SCOPED_TRACE(testing::Message()
               << "format=" << c.format << " bits=" << c.bits
               << " batch=" << c.batch << " m=" << c.m << " n=" << c.n
               << " k=" << c.k << " group=" << c.group);
  std::mt19937 rng(uint32_t(c.m * 131 + c.n + c.format));
  std::normal_distribution<float> normal(0.0f, 1.0f);
  bool four = c.format != 2;
  int64_t groups = (c.k + c.group - 1) / c.group;
  int64_t rowBytes = ((four ? c.k / 2 : c.k) + 15) / 16 * 16;
  std::vector<uint8_t> codes(size_t(c.n * rowBytes));
  for (uint8_t &b : codes)
    b = uint8_t(rng());
  int64_t scaleRow = c.perTensor ? 0 : groups;
  std::vector<float> scales(size_t(c.n * groups));
  for (float &s : scales)
    s = 0.01f + 0.02f * std::fabs(normal(rng));
  std::vector<int8_t> zps(size_t(c.n * groups));
  for (int8_t &z : zps)
    z = int8_t(c.format == 1 ? rng() % 16 : int(rng() % 16) - 8);
  // x: [batch, m, k]; the last batch's row 1 holds a NaN (its outputs are
  // NaN), the first row is zeros (step 1); not foldable: a gap of 3 rows
  // between batches. y likewise, NaN-filled where it is overwritten.
  int64_t xBatch = c.foldable ? c.m * c.k : (c.m + 3) * c.k;
  int64_t yBatch = c.foldable ? c.m * c.n : (c.m + 3) * c.n;
  std::vector<float> x(size_t(c.batch * xBatch));
  for (float &v : x)
    v = 2.0f * normal(rng);
  for (int64_t kk = 0; kk < c.k; ++kk)
    x[size_t(kk)] = 0.0f;
  bool nanRow = c.m > 1;
  if (nanRow)
    x[size_t((c.batch - 1) * xBatch + c.k + 5)] =
        std::numeric_limits<float>::quiet_NaN();
  std::vector<float> y(size_t(c.batch * yBatch)), before;
  for (float &v : y)
    v = c.overwrite ? std::numeric_limits<float>::quiet_NaN() : normal(rng);
  before = y;
  int64_t flags =
      4 | (int64_t(c.bits) << 8) | (c.zp ? 1 : 0) | (c.overwrite ? 16 : 0);
  ASSERT_EQ(qopt_cuda::w8a8Refusal(c.format, c.group, flags, c.n, c.k, 1, 1),
            nullptr);
  qopt_cuda_qlinear_emulated(
      c.format, c.group, flags, 1, c.batch, c.m, c.n, c.k, addressOf(x.data()),
      0, 0, xBatch, c.k, 1, addressOf(codes.data()), 0, rowBytes,
      addressOf(scales.data()), 0, scaleRow, c.zp ? addressOf(zps.data()) : 0,
      0, groups, addressOf(y.data()), 0, 0, yBatch, c.n, 1, 0, 0, 0, 0, 0, 0, 0,
      0);

  double qmax = double((1 << (c.bits - 1)) - 1);
  for (int64_t b = 0; b < c.batch; ++b)
    for (int64_t i = 0; i < c.m; ++i) {
      const float *xr = x.data() + b * xBatch + i * c.k;
      bool finite;
      float step = referenceStep(xr, c.k, float(qmax), finite);
      std::vector<int> q(size_t(c.k));
      for (int64_t kk = 0; kk < c.k; ++kk)
        q[size_t(kk)] = int(std::fmin(
            std::fmax(std::nearbyint(xr[kk] / step), float(-qmax - 1)),
            float(qmax)));
      for (int64_t col = 0; col < c.n; ++col) {
        size_t e = size_t(b * yBatch + i * c.n + col);
        if (!finite) {
          ASSERT_TRUE(std::isnan(y[e]))
              << "y[" << b << ", " << i << ", " << col << "]";
          continue;
        }
        double sum = 0.0, magnitude = 0.0;
        for (int64_t g = 0; g < groups; ++g) {
          int64_t dot = 0, size = 0;
          int zero = c.zp ? (c.format == 1
                                 ? int(uint8_t(zps[size_t(col * groups + g)]))
                                 : int(zps[size_t(col * groups + g)]))
                          : 0;
          for (int64_t kk = g * c.group; kk < std::min(c.k, (g + 1) * c.group);
               ++kk) {
            uint8_t byte = codes[size_t(col * rowBytes + (four ? kk / 2 : kk))];
            int raw = four ? (byte >> (4 * (kk % 2))) & 15 : byte;
            int w = c.format == 0   ? (raw ^ 8) - 8
                    : c.format == 1 ? raw
                                    : int(int8_t(uint8_t(raw)));
            dot += int64_t(q[size_t(kk)]) * (w - zero);
            size += std::abs(q[size_t(kk)] * (w - zero));
          }
          double scale = scales[size_t(col * scaleRow + g)];
          sum += double(dot) * scale;
          magnitude += double(size) * scale;
        }
        double start = c.overwrite ? 0.0 : double(before[e]);
        double expected = start + sum * double(step);
        ASSERT_NEAR(y[e], expected,
                    4e-7 * (magnitude * step + std::fabs(start)) + 1e-30)
            << "y[" << b << ", " << i << ", " << col << "]";
      }
      // Rows between the batches are not touched.
      if (!c.foldable && b + 1 < c.batch && i + 1 == c.m) {
        ASSERT_NO_FATAL_FAILURE(expectGapUntouched(
            y, before, b * yBatch + c.m * c.n, (b + 1) * yBatch));
      }
    }

  // The codes given (kQLinearCodes: x quantized once by
  // qopt_cuda_quantize_rows, as for the products that share it, laid out
  // as x, gap rows included): the same outputs, bit for bit.
  int64_t xRows = c.batch * xBatch / c.k;
  // (One row in: the steps' offset follows the codes', row for row.)
  std::vector<int8_t> given(size_t(c.batch * xBatch + c.k));
  std::vector<float> steps(size_t(xRows) + 1);
  qopt_cuda_quantize_rows_emulated(c.bits, xRows, c.k, addressOf(x.data()), 0,
                                   c.k, addressOf(given.data()), c.k,
                                   addressOf(steps.data()), 1, 0, 0, 0, 0);
  std::vector<float> fromCodes = before;
  qopt_cuda_qlinear_emulated(
      c.format, c.group, flags | 32, 1, c.batch, c.m, c.n, c.k,
      addressOf(given.data()), c.k, 0, xBatch, c.k, 1, addressOf(codes.data()),
      0, rowBytes, addressOf(scales.data()), 0, scaleRow,
      c.zp ? addressOf(zps.data()) : 0, 0, groups, addressOf(fromCodes.data()),
      0, 0, yBatch, c.n, 1, addressOf(steps.data()), 0, 0, 0, 0, 0, 0, 0);
  for (size_t e = 0; e < y.size(); ++e)
    ASSERT_TRUE(sameFloat(fromCodes[e], y[e]))
        << "given codes, element " << e << ": " << fromCodes[e] << " vs "
        << y[e];

  // The CPU target's kernel computes the same products.
  std::vector<float> cpu = before;
  qopt_kernel_qlinear(c.format, c.group, flags & ~int64_t(16), 1, c.batch, c.m,
                      c.n, c.k, addressOf(x.data()), 0, 0, xBatch, c.k, 1,
                      addressOf(codes.data()), 0, rowBytes,
                      addressOf(scales.data()), 0, scaleRow,
                      c.zp ? addressOf(zps.data()) : 0, 0, groups,
                      addressOf(cpu.data()), 0, 0, yBatch, c.n, 1);
  if (!c.overwrite)
    for (size_t e = 0; e < y.size(); ++e) {
      if (std::isnan(y[e]) || std::isnan(cpu[e])) {
        ASSERT_EQ(std::isnan(y[e]), std::isnan(cpu[e])) << "element " << e;
        continue;
      }
      ASSERT_NEAR(y[e], cpu[e], 1e-5 * (1.0 + std::fabs(cpu[e])))
          << "element " << e;
    }
}

INSTANTIATE_TEST_SUITE_P(CUDAW8A8, W8A8,
                         testing::Values(
                             // SmoothQuant's W8A8: int8 per channel, 8-bit
                             // tokens; decode rows (16-row tiles), prefill rows
                             // past a 64-row tile and N past a column tile.
                             Case{2, false, 8, 1, 3, 40, 96, 96, false, false},
                             Case{2, false, 8, 1, 70, 130, 64, 64, true, true},
                             // Groups of 32 along K; batches that do not fold
                             // (one grid of products) and that do.
                             Case{2, false, 8, 3, 5, 33, 128, 32, false, false},
                             Case{2, false, 8, 2, 40, 65, 96, 32, true, false},
                             // 4-bit weights with and without zero points, 8-
                             // and 4-bit tokens (W4A8, W4A4).
                             Case{0, true, 8, 1, 17, 64, 128, 64, true, true},
                             Case{1, true, 4, 2, 9, 70, 64, 32, false, false},
                             Case{1, false, 8, 1, 2, 31, 160, 32, true, false},
                             Case{0, false, 4, 1, 66, 20, 64, 64, true, false},
                             // K not a multiple of the group (a short last
                             // group); one scale for the whole tensor.
                             Case{2, false, 8, 1, 5, 40, 96, 64, true, false},
                             Case{2, false, 8, 2, 20, 70, 64, 64, true, true,
                                  true}));

/// The rows' quantization with SmoothQuant's smoothing applied on the way
/// (x / s or x · s, s along K with a stride) equals quantizing the smoothed
/// x the loop would have written, bit for bit: codes and steps.
TEST(CUDAW8A8QuantizeRows, SmoothsAsTheSmoothingLoopDoes) {
  const int64_t rows = 13, k = 96;
  std::mt19937 rng(3);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> x(size_t((rows + 2) * k)), s(size_t(3 * k));
  for (float &v : x)
    v = 3.0f * normal(rng);
  for (float &v : s)
    v = 0.25f + std::fabs(normal(rng));
  for (int64_t mode : {1, 2}) {
    SCOPED_TRACE(mode == 1 ? "x * s" : "x / s");
    // The loop's result: row stride k + 7 (a strided x).
    const int64_t sx = k + 7;
    std::vector<float> xs(size_t(rows * sx)), smoothed(size_t(rows * k));
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < k; ++c) {
        float v = x[size_t(r * k + c)], f = s[size_t(3 * c)];
        xs[size_t(r * sx + c)] = v;
        smoothed[size_t(r * k + c)] = mode == 1 ? v * f : v / f;
      }
    std::vector<int8_t> want(size_t(rows * k), 99), got(want.size(), 99);
    std::vector<float> wantSteps(size_t(rows), -1.0f), gotSteps(wantSteps);
    qopt_cuda_quantize_rows_emulated(
        8, rows, k, addressOf(smoothed.data()), 0, k, addressOf(want.data()), 0,
        addressOf(wantSteps.data()), 0, 0, 0, 0, 0);
    qopt_cuda_quantize_rows_emulated(
        8, rows, k, addressOf(xs.data()), 0, sx, addressOf(got.data()), 0,
        addressOf(gotSteps.data()), 0, mode, addressOf(s.data()), 0, 3);
    EXPECT_EQ(got, want);
    EXPECT_EQ(gotSteps, wantSteps);
    // (Smoothing changes the codes: the check is not vacuous.)
    std::vector<int8_t> plain(want.size());
    qopt_cuda_quantize_rows_emulated(8, rows, k, addressOf(xs.data()), 0, sx,
                                     addressOf(plain.data()), 0,
                                     addressOf(gotSteps.data()), 0, 0, 0, 0, 0);
    EXPECT_NE(plain, want);
  }
}

/// More tile rows than a grid takes: the GEMM's launches continue where
/// the previous grid stopped (yBase); the rows' quantization is one grid.
TEST(CUDAW8A8Plan, SplitsGridsOfMoreThan65535TileRows) {
  const int64_t m = 65535 * 64 + 70, n = 64, k = 32;
  std::vector<std::pair<unsigned, uint32_t>> gemms;
  int quants = 0;
  const char *error = qopt_cuda::planW8A8(
      /*aligned=*/true, 2, 32, 4 | (8 << 8), 1, 1, m, n, k, 64, 0, 0, 0, k, 1,
      256, 0, k, 512, 0, 1, 0, 0, 0, 1024, 0, 0, 0, n, 1, 0, 0,
      [](size_t) { return reinterpret_cast<void *>(uintptr_t(4096)); },
      [&](const qopt_cuda::W8A8Launch &l) {
        if (l.gemm)
          gemms.push_back({l.gridY, l.p.yBase});
        else
          quants += l.gridX == unsigned((m + 7) / 8) && l.gridY == 1;
      });
  ASSERT_EQ(error, nullptr);
  EXPECT_EQ(quants, 1);
  ASSERT_EQ(gemms.size(), 2u);
  EXPECT_EQ(gemms[0], std::make_pair(65535u, 0u));
  EXPECT_EQ(gemms[1], std::make_pair(2u, 65535u));
}

TEST(CUDAW8A8Plan, RefusesWhatDoesNotFitInt8) {
  using qopt_cuda::w8a8Refusal;
  const int64_t tokens8 = 4 | (8 << 8);
  EXPECT_EQ(w8a8Refusal(2, 32, tokens8, 64, 64, 1, 1), nullptr);
  EXPECT_NE(w8a8Refusal(3, 32, tokens8, 64, 64, 1, 1), nullptr);     // uint8
  EXPECT_NE(w8a8Refusal(2, 32, tokens8 | 1, 64, 64, 1, 1), nullptr); // int8+zp
  EXPECT_NE(w8a8Refusal(4, 32, tokens8, 64, 64, 1, 1), nullptr);     // NF4
  EXPECT_NE(w8a8Refusal(2, 32, 4 | (16 << 8), 64, 64, 1, 1), nullptr);
  EXPECT_NE(w8a8Refusal(2, 16, tokens8, 64, 64, 1, 1), nullptr);
  EXPECT_NE(w8a8Refusal(2, 32, tokens8, 64, 48, 1, 1), nullptr);
  EXPECT_NE(w8a8Refusal(2, 32, tokens8, 64, 64, 2, 1), nullptr);
  EXPECT_NE(w8a8Refusal(2, 32, tokens8 | 8, 64, 64, 1, 1), nullptr);
  // int32 sums of a group of more than 131072 codes could overflow.
  EXPECT_NE(w8a8Refusal(2, 1 << 18, tokens8, 64, 1 << 18, 1, 1), nullptr);
  EXPECT_EQ(w8a8Refusal(2, 4096, tokens8, 64, 1 << 18, 1, 1), nullptr);
}

//===-- FP8 tokens times FP8 weights
//---------------------------------------===//

/// v rounded to E4M3FN by APFloat (nearest even), clamped to ±448 first as
/// the fake-quant clamps: the value and its code.
std::pair<float, uint8_t> e4m3ByAPFloat(float v) {
  v = std::fmin(std::fmax(v, -448.0f), 448.0f);
  llvm::APFloat a(v);
  bool lost;
  a.convert(llvm::APFloat::Float8E4M3FN(), llvm::APFloat::rmNearestTiesToEven,
            &lost);
  return {float(a.convertToDouble()),
          uint8_t(a.bitcastToAPInt().getZExtValue())};
}

/// The token codes (e4m3Round, e4m3Code: the fake-quant's operations)
/// against APFloat's rounding, on every code, every midpoint between
/// neighbouring codes (ties), values past 448 and random values; and each
/// FP8 code as f16 (f16OfFP8) against APFloat's conversion of its value.
TEST(CUDAW8A8FP8, CodesAreAPFloatsRounding) {
  using namespace qopt_cuda;
  std::vector<float> values = {0.0f, -0.0f,  448.0f, -448.0f,     460.0f,
                               1e6f, -1e30f, 1e-30f, 1.0f / 1024, 3.0f / 1024};
  std::vector<float> grid;
  for (int raw = 0; raw < 256; ++raw)
    if ((raw & 0x7F) != 0x7F)
      grid.push_back(float(referenceCode(kFP8E4M3, raw)));
  std::sort(grid.begin(), grid.end());
  for (size_t i = 0; i < grid.size(); ++i) {
    values.push_back(grid[i]);
    if (i + 1 < grid.size()) {
      float mid = float((double(grid[i]) + double(grid[i + 1])) / 2);
      values.push_back(mid);
      values.push_back(std::nextafter(mid, 1e9f));
      values.push_back(std::nextafter(mid, -1e9f));
    }
  }
  std::mt19937 rng(5);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (int i = 0; i < 20000; ++i)
    values.push_back(normal(rng) * std::ldexp(1.0f, int(rng() % 24) - 12));
  for (float v : values) {
    auto [want, code] = e4m3ByAPFloat(v);
    float got = e4m3Round(v);
    ASSERT_EQ(got, want) << "v = " << v;
    // (-0 and +0 may both stand for a zero; its code keeps v's sign.)
    if (want != 0.0f)
      ASSERT_EQ(int(e4m3Code(got)), int(code)) << "v = " << v;
    else
      ASSERT_EQ(referenceCode(kFP8E4M3, e4m3Code(got)), 0.0) << "v = " << v;
  }
  for (int raw = 0; raw < 256; ++raw) {
    auto asF16 = [](double value) {
      llvm::APFloat a(value);
      bool lost;
      a.convert(llvm::APFloat::IEEEhalf(), llvm::APFloat::rmNearestTiesToEven,
                &lost);
      EXPECT_FALSE(lost) << value;
      return uint32_t(a.bitcastToAPInt().getZExtValue());
    };
    // (NaN codes: a NaN; E5M2's infinities: infinities.)
    auto same = [&](uint32_t bits, double value) {
      return std::isnan(value) ? (bits & 0x7C00u) == 0x7C00u && (bits & 1023u)
                               : bits == asF16(value);
    };
    EXPECT_TRUE(same(f16OfFP8<kFP8E4M3>(raw), referenceCode(kFP8E4M3, raw)))
        << "E4M3 code " << raw;
    EXPECT_TRUE(same(f16OfFP8<kFP8E5M2>(raw), referenceCode(kFP8E5M2, raw)))
        << "E5M2 code " << raw;
  }
}

struct FP8Case {
  int format; // 5: E4M3FN weights, 6: E5M2
  bool perTensor;
  int64_t batch, m, n, k;
  bool foldable, overwrite;
};

class W8A8FP8 : public testing::TestWithParam<FP8Case> {};

/// E4M3 tokens times FP8 weight codes on the (emulated) tensor cores: each
/// row's step max|x| / 448 (1 where 0; NaN outputs for a row with a NaN),
/// its codes x / step rounded by APFloat, Σ code·code in double times the
/// column's scale and the row's step. The GPU's f32 accumulators of exact
/// f16 products: within k·2^-24 of the terms' magnitudes. The codes given
/// (qopt_cuda_quantize_rows with the FP8 token format, flag 32): the same
/// outputs bit for bit.
TEST_P(W8A8FP8, EqualsTheDefinition) {
  using namespace qopt_cuda;
  const FP8Case c = GetParam();
  SCOPED_TRACE(testing::Message()
               << "format=" << c.format << " perTensor=" << c.perTensor
               << " batch=" << c.batch << " m=" << c.m << " n=" << c.n
               << " k=" << c.k);
  std::mt19937 rng(uint32_t(c.m * 7 + c.n + c.format));
  std::normal_distribution<float> normal(0.0f, 1.0f);
  // Weight codes: any finite code of the format.
  std::vector<uint8_t> codes(size_t(c.n * c.k));
  for (uint8_t &b : codes) {
    do
      b = uint8_t(rng());
    while (!std::isfinite(referenceCode(c.format, b)));
  }
  std::vector<float> scales(size_t(c.n));
  for (float &v : scales)
    v = 0.001f + 0.01f * std::fabs(normal(rng));
  int64_t scaleRow = c.perTensor ? 0 : 1;
  int64_t xBatch = c.foldable ? c.m * c.k : (c.m + 3) * c.k;
  int64_t yBatch = c.foldable ? c.m * c.n : (c.m + 3) * c.n;
  std::vector<float> x(size_t(c.batch * xBatch));
  for (float &v : x)
    v = normal(rng) * std::ldexp(1.0f, int(rng() % 9) - 4);
  for (int64_t kk = 0; kk < c.k; ++kk)
    x[size_t(kk)] = 0.0f; // a zero row: step 1
  if (c.m > 1)
    x[size_t((c.batch - 1) * xBatch + c.k + 3)] =
        std::numeric_limits<float>::quiet_NaN();
  std::vector<float> y(size_t(c.batch * yBatch));
  for (float &v : y)
    v = c.overwrite ? std::numeric_limits<float>::quiet_NaN() : normal(rng);
  std::vector<float> before = y;
  int64_t flags = 4 | (int64_t(kTokenFP8E4M3) << 8) | (c.overwrite ? 16 : 0);
  ASSERT_EQ(w8a8Refusal(c.format, c.k, flags, c.n, c.k, 1, 1), nullptr);
  qopt_cuda_qlinear_emulated(
      c.format, c.k, flags, 1, c.batch, c.m, c.n, c.k, addressOf(x.data()), 0,
      0, xBatch, c.k, 1, addressOf(codes.data()), 0, c.k,
      addressOf(scales.data()), 0, scaleRow, 0, 0, 0, addressOf(y.data()), 0, 0,
      yBatch, c.n, 1, 0, 0, 0, 0, 0, 0, 0, 0);
  for (int64_t b = 0; b < c.batch; ++b)
    for (int64_t i = 0; i < c.m; ++i) {
      const float *xr = x.data() + b * xBatch + i * c.k;
      bool finite;
      float step = referenceStep(xr, c.k, 448.0f, finite);
      for (int64_t col = 0; col < c.n; ++col) {
        size_t e = size_t(b * yBatch + i * c.n + col);
        if (!finite) {
          ASSERT_TRUE(std::isnan(y[e])) << "y[" << b << ", " << i << "]";
          continue;
        }
        double sum = 0.0, magnitude = 0.0;
        for (int64_t kk = 0; kk < c.k; ++kk) {
          double term = double(e4m3ByAPFloat(xr[kk] / step).first) *
                        referenceCode(c.format, codes[size_t(col * c.k + kk)]);
          sum += term;
          magnitude += std::fabs(term);
        }
        double scale = scales[size_t(col * scaleRow)];
        double start = c.overwrite ? 0.0 : double(before[e]);
        double expected = start + sum * scale * double(step);
        ASSERT_NEAR(y[e], expected,
                    (double(c.k) + 4) * 0x1p-24 *
                            (magnitude * scale * step + std::fabs(start)) +
                        1e-30)
            << "y[" << b << ", " << i << ", " << col << "]";
      }
      if (!c.foldable && b + 1 < c.batch && i + 1 == c.m) {
        ASSERT_NO_FATAL_FAILURE(expectGapUntouched(
            y, before, b * yBatch + c.m * c.n, (b + 1) * yBatch));
      }
    }

  int64_t xRows = c.batch * xBatch / c.k;
  std::vector<int8_t> given(static_cast<size_t>(c.batch * xBatch));
  std::vector<float> steps(static_cast<size_t>(xRows));
  qopt_cuda_quantize_rows_emulated(
      kTokenFP8E4M3, xRows, c.k, addressOf(x.data()), 0, c.k,
      addressOf(given.data()), 0, addressOf(steps.data()), 0, 0, 0, 0, 0);
  std::vector<float> fromCodes = before;
  qopt_cuda_qlinear_emulated(c.format, c.k, flags | 32, 1, c.batch, c.m, c.n,
                             c.k, addressOf(given.data()), 0, 0, xBatch, c.k, 1,
                             addressOf(codes.data()), 0, c.k,
                             addressOf(scales.data()), 0, scaleRow, 0, 0, 0,
                             addressOf(fromCodes.data()), 0, 0, yBatch, c.n, 1,
                             addressOf(steps.data()), 0, 0, 0, 0, 0, 0, 0);
  for (size_t e = 0; e < y.size(); ++e)
    ASSERT_TRUE(sameFloat(fromCodes[e], y[e])) << "given codes, element " << e;
}

INSTANTIATE_TEST_SUITE_P(
    CUDAW8A8, W8A8FP8,
    testing::Values(
        // Decode rows (16-row tiles), per channel; prefill rows past a
        // 64-row tile and N past a column tile, per tensor, y = ….
        FP8Case{5, false, 1, 3, 40, 96, true, false},
        FP8Case{5, true, 1, 70, 130, 64, true, true},
        // E5M2 weights: batches one grid (gaps between them) or folded.
        FP8Case{6, false, 2, 20, 65, 128, false, false},
        FP8Case{6, true, 3, 17, 64, 32, true, true}));

TEST(CUDAW8A8Plan, FP8TokensTakeFP8WeightsScaledPerRow) {
  using namespace qopt_cuda;
  const int64_t fp8 = 4 | (int64_t(kTokenFP8E4M3) << 8);
  EXPECT_EQ(w8a8Refusal(kFP8E4M3, 64, fp8, 64, 64, 1, 1), nullptr);
  EXPECT_EQ(w8a8Refusal(kFP8E5M2, 64, fp8, 64, 64, 1, 1), nullptr);
  // Integer weights under FP8 tokens, FP8 weights under integer tokens.
  EXPECT_NE(w8a8Refusal(kInt8, 64, fp8, 64, 64, 1, 1), nullptr);
  EXPECT_NE(w8a8Refusal(kFP8E4M3, 64, 4 | (8 << 8), 64, 64, 1, 1), nullptr);
  // Groups along K, zero points, K not a multiple of 32.
  EXPECT_NE(w8a8Refusal(kFP8E4M3, 32, fp8, 64, 64, 1, 1), nullptr);
  EXPECT_NE(w8a8Refusal(kFP8E4M3, 64, fp8 | 1, 64, 64, 1, 1), nullptr);
  EXPECT_NE(w8a8Refusal(kFP8E4M3, 48, fp8, 64, 48, 1, 1), nullptr);
  // No int32 sums: K past 131072 is fine.
  EXPECT_EQ(w8a8Refusal(kFP8E5M2, 1 << 18, fp8, 64, 1 << 18, 1, 1), nullptr);
}

} // namespace
