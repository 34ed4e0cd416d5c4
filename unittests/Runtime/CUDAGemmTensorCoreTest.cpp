//===- CUDAGemmTensorCoreTest.cpp - the tensor-core GEMM on the CPU ------===//
//
// The `_bf16` and `_tf32` entries of Gemm.cu (qopt_cuda_sgemm_bf16 / _tf32,
// and quantized products with kQLinearBF16 / kQLinearTF32) round A and B
// to bf16 (nearest even) or tf32 (nearest, ties away) as they enter shared
// memory and multiply them with mma.sync m16n8k16 / m16n8k8, f32
// accumulators. Their emulation runs GemmTile.h's loads and fragment
// building for every lane, then an mma unpacked from the PTX ISA's
// fragment tables (CUDAEmulation.cpp) and GemmTile.h's store of the
// accumulators. Here the results are checked against the product of the
// rounded operands (rounded by LLVM's APFloat, not by the kernels' code)
// in double: a misplaced fragment element or accumulator gives errors of
// the size of the terms, where the bound allows only f32 summation error.
// That they differ from the unrounded product by the format's error shows
// that the rounding happens.
//
//===----------------------------------------------------------------------===//

#include "CUDAReference.h"
#include "FusedQuantCheck.h"

#include "../../lib/Runtime/Kernels/CUDA/QLinearLaunch.h"

#include "llvm/ADT/APFloat.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

namespace {

using namespace qopt_cuda;

/// x rounded to bf16 (nearest, ties to even) by APFloat.
double bf16(float x) {
  llvm::APFloat v(x);
  bool lost;
  v.convert(llvm::APFloat::BFloat(), llvm::APFloat::rmNearestTiesToEven, &lost);
  return v.convertToDouble();
}

/// x rounded to tf32 (nearest, ties away from zero: cvt.rna) by APFloat.
double tf32(float x) {
  llvm::APFloat v(x);
  bool lost;
  v.convert(llvm::APFloat::FloatTF32(), llvm::APFloat::rmNearestTiesToAway,
            &lost);
  return v.convertToDouble();
}

/// A tensor-core precision: its entries, its rounding, its quantized
/// calls' flag, and the range its error against unrounded operands falls
/// in (relative to the terms' magnitudes).
struct Precision {
  const char *name;
  decltype(&qopt_cuda_sgemm_bf16_emulated) sgemm, overwrite;
  double (*round)(float);
  int64_t flag;
  double low, high;
};
const Precision kPrecisions[] = {
    {"bf16", qopt_cuda_sgemm_bf16_emulated,
     qopt_cuda_sgemm_bf16_emulated_overwrite, bf16, kQLinearBF16, 1e-3, 1e-2},
    {"tf32", qopt_cuda_sgemm_tf32_emulated,
     qopt_cuda_sgemm_tf32_emulated_overwrite, tf32, kQLinearTF32, 5e-5, 1e-3}};

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

/// Runs the precision's emulated entry (or its _overwrite, C starting as
/// NaN) and checks C against sum_p round(A)·round(B) (+ C) in double, within
/// f32 summation error: (k + 1) · 2^-24 of the terms' magnitudes. Returns
/// the largest error against the unrounded product relative to the
/// magnitudes.
double check(const Precision &pr, int64_t o0, int64_t o1, int64_t m, int64_t n,
             int64_t k, const View &a, const View &b, View c,
             bool overwrite = false) {
  View before = c;
  if (overwrite)
    std::fill(c.data.begin(), c.data.end(), NAN);
  (overwrite ? pr.overwrite : pr.sgemm)(
      o0, o1, m, n, k, addressOf(a.data.data()), 0, a.s0, a.s1, a.sr, a.sc,
      addressOf(b.data.data()), 0, b.s0, b.s1, b.sr, b.sc,
      addressOf(c.data.data()), 0, c.s0, c.s1, c.sr, c.sc);
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
            double term =
                pr.round(a.at(i, j, r, p)) * pr.round(b.at(i, j, p, col));
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
TEST(CUDAGemmTensorCore, EqualsTheProductOfTheRoundedOperands) {
  for (const Precision &pr : kPrecisions) {
    SCOPED_TRACE(pr.name);
    std::mt19937 rng(21);
    double worst = 0;
    // 130 x 70, K = 100: row-major operands; 65 x 129, K = 33: column-major.
    worst = std::max(worst, check(pr, 1, 1, 130, 70, 100,
                                  random(13000, 0, 0, 100, 1, rng),
                                  random(7000, 0, 0, 70, 1, rng),
                                  random(9100, 0, 0, 70, 1, rng)));
    worst = std::max(worst, check(pr, 1, 1, 65, 129, 33,
                                  random(65 * 33, 0, 0, 1, 65, rng),
                                  random(33 * 129, 0, 0, 1, 33, rng),
                                  random(65 * 129, 0, 0, 129, 1, rng)));
    // 16 rows (16-row tiles), 17 (64-row tiles), 3 rows.
    for (int64_t m : {16, 17, 3})
      worst = std::max(worst, check(pr, 1, 1, m, 70, 48,
                                    random(m * 48, 0, 0, 48, 1, rng),
                                    random(48 * 70, 0, 0, 70, 1, rng),
                                    random(m * 70, 0, 0, 70, 1, rng)));
    // A batch of three, one grid.
    worst = std::max(worst, check(pr, 3, 1, 20, 9, 40,
                                  random(3 * 20 * 40, 800, 0, 40, 1, rng),
                                  random(3 * 40 * 9, 360, 0, 9, 1, rng),
                                  random(3 * 20 * 9, 180, 0, 9, 1, rng)));
    // dW[8, 6] += x[2, 3, 5, 8]ᵀ · dy[2, 3, 5, 6]: folded into K, and (x's
    // rows padded) products in turn.
    worst = std::max(worst, check(pr, 2, 3, 8, 6, 5,
                                  random(2 * 3 * 5 * 8, 120, 40, 1, 8, rng),
                                  random(2 * 3 * 5 * 6, 90, 30, 6, 1, rng),
                                  random(48, 0, 0, 6, 1, rng)));
    worst = std::max(worst, check(pr, 2, 3, 8, 6, 5,
                                  random(2 * 3 * 6 * 8, 144, 48, 1, 8, rng),
                                  random(2 * 3 * 7 * 6, 126, 42, 6, 1, rng),
                                  random(48, 0, 0, 6, 1, rng)));
    // C = A·B: every element stored (C starts as NaN).
    for (int64_t m : {5, 70})
      worst = std::max(worst, check(pr, 1, 1, m, 66, 33,
                                    random(m * 33, 0, 0, 33, 1, rng),
                                    random(33 * 66, 0, 0, 66, 1, rng),
                                    random(m * 66, 0, 0, 66, 1, rng),
                                    /*overwrite=*/true));
    // bf16 keeps 8 significant bits, tf32 11: against the unrounded operands
    // the errors are of that order, far above f32's.
    EXPECT_GT(worst, pr.low);
    EXPECT_LT(worst, pr.high);
  }
}

/// Quantized products with kQLinearBF16 / TF32: more than 16 rows take the
/// GEMM, whose B tile holds each dequantized value, scale · (code − zero)
/// in f32, rounded; A·W (flag 8) too; QLoRA's double-quantized scales
/// (table[code] · absmax + offset in f32). Up to 16 rows the GEMV keeps f32
/// (the bound there is f32's, on unrounded x).
TEST(CUDAGemmTensorCore, QuantizedProductsRoundTheDequantizedWeight) {
  struct QCase {
    int format;
    int64_t rows, cols, group; // W: rows x cols, codes along cols
    bool zp, transposed;
    int64_t m;
    bool nested = false; // double-quantized scales
  };
  const QCase cases[] = {{kInt4, 70, 96, 32, true, false, 40},
                         {kNF4, 130, 128, 64, false, false, 17},
                         {kInt8, 33, 64, 32, false, false, 66},
                         {kUInt8, 70, 64, 64, true, true, 20},
                         {kFP8E4M3, 65, 96, 96, false, false, 33},
                         {kInt4, 64, 96, 32, true, true, 40},
                         {kNF4, 130, 128, 64, false, false, 40, true},
                         {kNF4, 64, 128, 64, false, true, 33, true},
                         {kInt4, 70, 96, 32, true, false, 5}};
  for (const Precision &pr : kPrecisions)
    for (const QCase &c : cases) {
      SCOPED_TRACE(std::string(pr.name) + " format " +
                   std::to_string(c.format) + " m " + std::to_string(c.m) +
                   (c.transposed ? " A·W" : " A·Wᵀ") +
                   (c.nested ? " nested scales" : ""));
      std::mt19937 rng(unsigned(c.rows + c.cols + c.m));
      bool four = c.format == kInt4 || c.format == kUInt4 || c.format == kNF4;
      int64_t rowBytes = four ? c.cols / 2 : c.cols, groups = c.cols / c.group;
      int64_t n = c.transposed ? c.cols : c.rows,
              k = c.transposed ? c.rows : c.cols;
      std::uniform_int_distribution<int> byte(0, 255);
      std::uniform_real_distribution<float> unit(-1.0f, 1.0f);
      std::vector<uint8_t> codes(size_t(c.rows * rowBytes));
      randomCodes(c.format, rng, codes.data(), codes.size());
      std::vector<float> scales(size_t(c.rows * groups)), x(size_t(c.m * k)),
          y(size_t(c.m * n));
      std::vector<int8_t> zps(scales.size());
      for (float &v : scales)
        v = 0.05f + 0.05f * unit(rng);
      // Double quantization (QLoRA's).
      NestedScaleData dq = nestedScales(scales, rng, c.nested);
      for (int8_t &z : zps)
        z = int8_t(byte(rng) % (four ? 16 : 256) - (c.format == kInt4 ? 8 : 0));
      for (float &v : x)
        v = unit(rng);
      for (float &v : y)
        v = unit(rng);
      bool gemm = c.m > kMaxRows || c.transposed;
      std::vector<double> expected(y.begin(), y.end()),
          magnitude(y.size(), 1.0);
      for (int64_t r = 0; r < c.rows; ++r)
        for (int64_t col = 0; col < c.cols; ++col) {
          int64_t g = col / c.group;
          uint8_t b = codes[size_t(r * rowBytes + (four ? col / 2 : col))];
          int raw = four ? (col % 2 ? b >> 4 : b & 15) : b;
          double code = referenceCode(c.format, raw);
          int8_t z = zps[size_t(r * groups + g)];
          float zero = !c.zp                ? 0.0f
                       : c.format == kUInt8 ? float(uint8_t(z))
                                            : float(z);
          // The dequantized value in f32 (one rounding), then bf16.
          float v = scales[size_t(r * groups + g)] * (float(code) - zero);
          double w = gemm ? pr.round(v) : double(v);
          int64_t in = c.transposed ? r : col, out = c.transposed ? col : r;
          for (int64_t i = 0; i < c.m; ++i) {
            float xv = x[size_t(i * k + in)];
            double term = w * (gemm ? pr.round(xv) : double(xv));
            expected[size_t(i * n + out)] += term;
            magnitude[size_t(i * n + out)] += std::fabs(term);
          }
        }
      qopt_cuda_qlinear_emulated(
          c.format, c.group,
          (c.zp ? kQLinearZeroPoints : 0) |
              (c.transposed ? kQLinearTransposed : 0) | pr.flag,
          1, 1, c.m, n, k, addressOf(x.data()), 0, 0, 0, k, 1,
          addressOf(codes.data()), 0, rowBytes,
          c.nested ? addressOf(dq.codes.data()) : addressOf(scales.data()), 0,
          groups, c.zp ? addressOf(zps.data()) : 0, 0, groups,
          addressOf(y.data()), 0, 0, 0, n, 1,
          c.nested ? addressOf(dq.codes.data()) : 0, 0,
          addressOf(dq.absmax.data()), 0, 3, dq.offsetBits(),
          addressOf(dq.table.data()), 0);
      double bound = double(k + 1) * std::ldexp(1.0, -24);
      for (size_t e = 0; e < y.size(); ++e)
        ASSERT_NEAR(y[e], expected[e], bound * magnitude[e]) << "element " << e;
    }
}

/// bf16Bits and tf32Round, the roundings of the `_bf16` / `_tf32` entries'
/// loads, against APFloat on the cases random data seldom reaches: ties
/// (bf16 to even both ways, tf32 away from zero), values just off a tie,
/// the largest finite values (rounding up to infinity), infinities, NaNs
/// (quiet, sign kept), subnormals, zeros; and 20,000 random bit patterns.
TEST(CUDAGemmTensorCore, RoundingIsTheFormats) {
  std::vector<uint32_t> cases = {
      0x3F808000u, 0x3F818000u, 0x3F808001u, 0x3F807FFFu, 0xBF808000u,
      0xBF818000u, 0x7F7FFFFFu, 0x7F7F8000u, 0x7F7F7FFFu, 0xFF7FFFFFu,
      0x7F800000u, 0xFF800000u, 0x7FC00000u, 0xFFC00001u, 0x7F800001u,
      0x00000001u, 0x00008000u, 0x00018000u, 0x807FFFFFu, 0x00000000u,
      0x80000000u, 0x3F801000u, 0x3F803000u, 0xBF801000u, 0x3F800FFFu,
      0x7F7FF000u, 0x00001000u};
  std::mt19937 rng(5);
  for (int i = 0; i < 20000; ++i)
    cases.push_back(uint32_t(rng()));
  for (uint32_t u : cases) {
    float x;
    std::memcpy(&x, &u, 4);
    uint32_t got = bf16Bits(x) << 16;
    float value;
    std::memcpy(&value, &got, 4);
    float t = tf32Round(x);
    uint32_t tbits;
    std::memcpy(&tbits, &t, 4);
    // (The tensor cores read a tf32 operand's upper 19 bits only.)
    EXPECT_EQ(tbits & 0x1FFFu, 0u) << std::hex << u;
    if (std::isnan(x)) {
      EXPECT_TRUE(std::isnan(value) && std::isnan(t)) << std::hex << u;
      EXPECT_EQ(got >> 31, u >> 31) << std::hex << u;
      continue;
    }
    EXPECT_EQ(double(value), bf16(x)) << std::hex << u;
    EXPECT_EQ(double(t), tf32(x)) << std::hex << u;
  }
}

} // namespace
