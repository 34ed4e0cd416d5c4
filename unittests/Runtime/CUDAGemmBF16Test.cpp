//===- CUDAGemmBF16Test.cpp - the tensor-core GEMM on the CPU ------------===//
//
// The `_bf16` entries of Gemm.cu (qopt_cuda_sgemm_bf16, and quantized
// products with kQLinearBF16) round A and B to bf16 as they enter shared
// memory and multiply them with mma.sync m16n8k16, f32 accumulators. Their
// emulation runs GemmTile.h's loads and fragment building for every lane,
// then an mma unpacked from the PTX ISA's fragment tables (CUDAEmulation.cpp)
// and GemmTile.h's store of the accumulators. Here the results are checked
// against the product of the bf16-rounded operands (rounded by LLVM's
// APFloat, not by the kernels' code) in double: a misplaced fragment
// element or accumulator gives errors of the size of the terms, where the
// bound allows only f32 summation error. That they differ from the
// unrounded product by bf16's error shows that the rounding happens.
//
//===----------------------------------------------------------------------===//

#include "../../lib/Runtime/Kernels/CUDA/QLinearLaunch.h"

#include "qopt/Support/QuantFormats.h"

#include "llvm/ADT/APFloat.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

extern "C" void qopt_cuda_sgemm_bf16_emulated(
    int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t,
    int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t,
    int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t);
extern "C" void qopt_cuda_sgemm_bf16_emulated_overwrite(
    int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t,
    int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t,
    int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t);
extern "C" void qopt_cuda_qlinear_emulated(
    int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t,
    int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t,
    int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t,
    int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t,
    int64_t, int64_t, int64_t, int64_t, int64_t);

namespace {

using namespace qopt_cuda;

/// x rounded to bf16 (nearest, ties to even) by APFloat.
double bf16(float x) {
  llvm::APFloat v(x);
  bool lost;
  v.convert(llvm::APFloat::BFloat(), llvm::APFloat::rmNearestTiesToEven, &lost);
  return v.convertToDouble();
}

int64_t ptr(const void *p) { return int64_t(reinterpret_cast<intptr_t>(p)); }

/// An operand of the product: element (i, j, r, c) at
/// offset + i·s0 + j·s1 + r·sr + c·sc.
struct View {
  std::vector<float> data;
  int64_t s0, s1, sr, sc;
  float at(int64_t i, int64_t j, int64_t r, int64_t c) const {
    return data[size_t(i * s0 + j * s1 + r * sr + c * sc)];
  }
};

View random(int64_t size, int64_t s0, int64_t s1, int64_t sr, int64_t sc,
            std::mt19937 &rng) {
  std::uniform_real_distribution<float> dist(-1, 1);
  View v{std::vector<float>(size_t(size)), s0, s1, sr, sc};
  for (float &x : v.data)
    x = dist(rng);
  return v;
}

/// Runs qopt_cuda_sgemm_bf16_emulated (or its _overwrite, C starting as
/// NaN) and checks C against sum_p bf16(A)·bf16(B) (+ C) in double, within
/// f32 summation error: (k + 1) · 2^-24 of the terms' magnitudes. Returns
/// the largest error against the unrounded product relative to the
/// magnitudes.
double check(int64_t o0, int64_t o1, int64_t m, int64_t n, int64_t k,
             const View &a, const View &b, View c, bool overwrite = false) {
  View before = c;
  if (overwrite)
    std::fill(c.data.begin(), c.data.end(), NAN);
  (overwrite ? qopt_cuda_sgemm_bf16_emulated_overwrite
             : qopt_cuda_sgemm_bf16_emulated)(
      o0, o1, m, n, k, ptr(a.data.data()), 0, a.s0, a.s1, a.sr, a.sc,
      ptr(b.data.data()), 0, b.s0, b.s1, b.sr, b.sc, ptr(c.data.data()), 0,
      c.s0, c.s1, c.sr, c.sc);
  // (C elements several products add to, when C does not move with an
  // outer loop: sum every product's terms into one reference.)
  std::vector<double> expected(c.data.size()), exact(c.data.size()),
      magnitude(c.data.size());
  for (size_t e = 0; e < c.data.size(); ++e)
    if (!overwrite) {
      expected[e] = exact[e] = before.data[e];
      magnitude[e] = std::fabs(before.data[e]);
    }
  for (int64_t i = 0; i < o0; ++i)
    for (int64_t j = 0; j < o1; ++j)
      for (int64_t r = 0; r < m; ++r)
        for (int64_t col = 0; col < n; ++col) {
          size_t e = size_t(i * c.s0 + j * c.s1 + r * c.sr + col * c.sc);
          for (int64_t p = 0; p < k; ++p) {
            double term = bf16(a.at(i, j, r, p)) * bf16(b.at(i, j, p, col));
            expected[e] += term;
            exact[e] += double(a.at(i, j, r, p)) * b.at(i, j, p, col);
            magnitude[e] += std::fabs(term);
          }
        }
  double bound = double(k * o0 * o1 + 1) * std::ldexp(1.0, -24), worst = 0;
  for (size_t e = 0; e < c.data.size(); ++e) {
    EXPECT_NEAR(c.data[e], expected[e], bound * magnitude[e] + 1e-30)
        << "element " << e;
    if (magnitude[e] > 0)
      worst = std::max(worst, std::fabs(c.data[e] - exact[e]) / magnitude[e]);
  }
  return worst;
}

/// f32 products on the tensor cores: tiles of 64 and 16 rows (the skinny
/// entry up to 16 rows), borders in every dimension, A and B in both
/// layouts, a batch as one grid, weight gradients summed over the outer
/// loops (folded into K, or products in turn), C overwritten.
TEST(CUDAGemmBF16, EqualsTheProductOfTheRoundedOperands) {
  std::mt19937 rng(21);
  double worst = 0;
  // 130 x 70, K = 100: row-major operands; 65 x 129, K = 33: column-major.
  worst = std::max(worst,
                   check(1, 1, 130, 70, 100, random(13000, 0, 0, 100, 1, rng),
                         random(7000, 0, 0, 70, 1, rng),
                         random(9100, 0, 0, 70, 1, rng)));
  worst = std::max(worst,
                   check(1, 1, 65, 129, 33, random(65 * 33, 0, 0, 1, 65, rng),
                         random(33 * 129, 0, 0, 1, 33, rng),
                         random(65 * 129, 0, 0, 129, 1, rng)));
  // 16 rows (16-row tiles), 17 (64-row tiles), 3 rows.
  for (int64_t m : {16, 17, 3})
    worst =
        std::max(worst, check(1, 1, m, 70, 48, random(m * 48, 0, 0, 48, 1, rng),
                              random(48 * 70, 0, 0, 70, 1, rng),
                              random(m * 70, 0, 0, 70, 1, rng)));
  // A batch of three, one grid.
  worst = std::max(worst, check(3, 1, 20, 9, 40,
                                random(3 * 20 * 40, 800, 0, 40, 1, rng),
                                random(3 * 40 * 9, 360, 0, 9, 1, rng),
                                random(3 * 20 * 9, 180, 0, 9, 1, rng)));
  // dW[8, 6] += x[2, 3, 5, 8]ᵀ · dy[2, 3, 5, 6]: folded into K, and (x's
  // rows padded) products in turn.
  worst = std::max(worst, check(2, 3, 8, 6, 5,
                                random(2 * 3 * 5 * 8, 120, 40, 1, 8, rng),
                                random(2 * 3 * 5 * 6, 90, 30, 6, 1, rng),
                                random(48, 0, 0, 6, 1, rng)));
  worst = std::max(worst, check(2, 3, 8, 6, 5,
                                random(2 * 3 * 6 * 8, 144, 48, 1, 8, rng),
                                random(2 * 3 * 7 * 6, 126, 42, 6, 1, rng),
                                random(48, 0, 0, 6, 1, rng)));
  // C = A·B: every element stored (C starts as NaN).
  for (int64_t m : {5, 70})
    worst =
        std::max(worst, check(1, 1, m, 66, 33, random(m * 33, 0, 0, 33, 1, rng),
                              random(33 * 66, 0, 0, 66, 1, rng),
                              random(m * 66, 0, 0, 66, 1, rng),
                              /*overwrite=*/true));
  // bf16 keeps 8 significant bits: against the unrounded operands the
  // errors are of that order, far above f32's.
  EXPECT_GT(worst, 1e-3);
  EXPECT_LT(worst, 1e-2);
}

/// Quantized products with kQLinearBF16: more than 16 rows take the GEMM,
/// whose B tile holds each dequantized value, scale · (code − zero) in
/// f32, rounded to bf16; A·W (flag 8) too. Up to 16 rows the GEMV keeps
/// f32 (the bound there is f32's, on unrounded x).
TEST(CUDAGemmBF16, QuantizedProductsRoundTheDequantizedWeight) {
  struct QCase {
    int format;
    int64_t rows, cols, group; // W: rows x cols, codes along cols
    bool zp, transposed;
    int64_t m;
  };
  const QCase cases[] = {{kInt4, 70, 96, 32, true, false, 40},
                         {kNF4, 130, 128, 64, false, false, 17},
                         {kInt8, 33, 64, 32, false, false, 66},
                         {kUInt8, 70, 64, 64, true, true, 20},
                         {kFP8E4M3, 65, 96, 96, false, false, 33},
                         {kInt4, 64, 96, 32, true, true, 40},
                         {kInt4, 70, 96, 32, true, false, 5}};
  for (const QCase &c : cases) {
    SCOPED_TRACE("format " + std::to_string(c.format) + " m " +
                 std::to_string(c.m) + (c.transposed ? " A·W" : " A·Wᵀ"));
    std::mt19937 rng(unsigned(c.rows + c.cols + c.m));
    bool four = c.format == kInt4 || c.format == kUInt4 || c.format == kNF4;
    int64_t rowBytes = four ? c.cols / 2 : c.cols, groups = c.cols / c.group;
    int64_t n = c.transposed ? c.cols : c.rows,
            k = c.transposed ? c.rows : c.cols;
    std::uniform_int_distribution<int> byte(0, 255);
    std::uniform_real_distribution<float> unit(-1.0f, 1.0f);
    std::vector<uint8_t> codes(size_t(c.rows * rowBytes));
    for (uint8_t &b : codes) {
      b = uint8_t(byte(rng));
      // (No FP8 NaN codes: S.1111.111.)
      if (c.format == kFP8E4M3 && (b & 0x7F) == 0x7F)
        b = 0x3F;
    }
    std::vector<float> scales(size_t(c.rows * groups)), x(size_t(c.m * k)),
        y(size_t(c.m * n));
    std::vector<int8_t> zps(scales.size());
    for (float &v : scales)
      v = 0.05f + 0.05f * unit(rng);
    for (int8_t &z : zps)
      z = int8_t(byte(rng) % (four ? 16 : 256) - (c.format == kInt4 ? 8 : 0));
    for (float &v : x)
      v = unit(rng);
    for (float &v : y)
      v = unit(rng);
    bool gemm = c.m > kMaxRows || c.transposed;
    std::vector<double> expected(y.begin(), y.end()), magnitude(y.size(), 1.0);
    for (int64_t r = 0; r < c.rows; ++r)
      for (int64_t col = 0; col < c.cols; ++col) {
        int64_t g = col / c.group;
        uint8_t b = codes[size_t(r * rowBytes + (four ? col / 2 : col))];
        int raw = four ? (col % 2 ? b >> 4 : b & 15) : b;
        double code;
        switch (c.format) {
        case kInt4:
          code = raw >= 8 ? raw - 16 : raw;
          break;
        case kNF4:
          code = qopt::kNF4Codes[size_t(raw)];
          break;
        case kInt8:
          code = int8_t(raw);
          break;
        case kFP8E4M3:
          code =
              llvm::APFloat(llvm::APFloat::Float8E4M3FN(), llvm::APInt(8, raw))
                  .convertToDouble();
          break;
        default:
          code = raw;
        }
        int8_t z = zps[size_t(r * groups + g)];
        float zero = !c.zp                ? 0.0f
                     : c.format == kUInt8 ? float(uint8_t(z))
                                          : float(z);
        // The dequantized value in f32 (one rounding), then bf16.
        float v = scales[size_t(r * groups + g)] * (float(code) - zero);
        double w = gemm ? bf16(v) : double(v);
        int64_t in = c.transposed ? r : col, out = c.transposed ? col : r;
        for (int64_t i = 0; i < c.m; ++i) {
          float xv = x[size_t(i * k + in)];
          double term = w * (gemm ? bf16(xv) : double(xv));
          expected[size_t(i * n + out)] += term;
          magnitude[size_t(i * n + out)] += std::fabs(term);
        }
      }
    qopt_cuda_qlinear_emulated(
        c.format, c.group,
        (c.zp ? kQLinearZeroPoints : 0) |
            (c.transposed ? kQLinearTransposed : 0) | kQLinearBF16,
        1, 1, c.m, n, k, ptr(x.data()), 0, 0, 0, k, 1, ptr(codes.data()), 0,
        rowBytes, ptr(scales.data()), 0, groups, c.zp ? ptr(zps.data()) : 0, 0,
        groups, ptr(y.data()), 0, 0, 0, n, 1, 0, 0, 0, 0, 0, 0, 0, 0);
    double bound = double(k + 1) * std::ldexp(1.0, -24);
    for (size_t e = 0; e < y.size(); ++e)
      ASSERT_NEAR(y[e], expected[e], bound * magnitude[e]) << "element " << e;
  }
}

} // namespace
