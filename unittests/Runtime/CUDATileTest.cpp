//===- CUDATileTest.cpp - the CUDA GEMV's per-lane work on the CPU -------===//
//
// QLinear.cu's kernel gives each lane of the warp for output row n the
// chunks of 32 codes l, l + 32, … (QLinearTile.h's laneSums) and adds the
// 32 lanes' sums with shuffles. Here the same laneSums runs for every lane
// of every row and the lanes' sums are added, against the product with the
// weight dequantized by its definition, in double: decoding (nibble order,
// signed / unsigned codes, NF4's table), group scales, zero points and the
// chunk-to-lane mapping are checked without a GPU.
//
//===----------------------------------------------------------------------===//

#include "CUDAReference.h"

#include "../../lib/Runtime/Kernels/CUDA/QLinearLaunch.h"
#include "../../lib/Runtime/Kernels/CUDA/QLinearTile.h"

#include "qopt/Support/QuantFormats.h"

#include "llvm/ADT/APFloat.h"

#include <gtest/gtest.h>

#include <array>
#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

namespace {

using namespace qopt_cuda;

struct Case {
  int format;
  int64_t n, k, group;
  bool zp;
  int m;
};

/// float → bfloat16 bits, round to nearest even.
uint16_t toBF16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  u += 0x7FFFu + ((u >> 16) & 1u);
  return uint16_t(u >> 16);
}

/// The code table the kernels fill (fillTable): NF4's values, FP8's by
/// fp8Value.
template <int F> const float *kernelTable() {
  static const auto table = [] {
    std::array<float, 256> t{};
    for (int i = 0; i < kTableSize<F>; ++i)
      t[size_t(i)] =
          F == kNF4 ? qopt::kNF4Codes[size_t(i)] : fp8Value<F>(uint32_t(i));
    return t;
  }();
  return table.data();
}

TEST(CUDATile, FP8DecodingIsExact) {
  // Every code of both formats: the same float as APFloat's (NaNs NaN,
  // E5M2's infinities infinite).
  for (int format : {int(kFP8E4M3), int(kFP8E5M2)})
    for (int raw = 0; raw < 256; ++raw) {
      double expected = referenceCode(format, raw);
      float got = format == kFP8E4M3 ? fp8Value<kFP8E4M3>(uint32_t(raw))
                                     : fp8Value<kFP8E5M2>(uint32_t(raw));
      if (std::isnan(expected))
        EXPECT_TRUE(std::isnan(got)) << format << " code " << raw;
      else
        EXPECT_EQ(double(got), expected) << format << " code " << raw;
    }
}

template <int F, typename X>
void runLanes(const WeightView &w, const X *x, int m, std::vector<float> &y) {
  const float *nf4 = kernelTable<F>();
  for (int64_t r = 0; r < w.n; ++r) {
    float total[kMaxRows] = {};
    for (int lane = 0; lane < 32; ++lane) {
      float acc[kMaxRows] = {};
      laneSums<F>(w, r, lane, x, w.k, m, nf4, acc);
      for (int i = 0; i < m; ++i)
        total[i] += acc[i];
    }
    for (int i = 0; i < m; ++i)
      y[size_t(i * w.n + r)] = total[i];
  }
}

TEST(CUDATile, LaneSumsEqualTheDequantizedProduct) {
  const Case cases[] = {
      {kInt4, 5, 64, 32, false, 1},        {kInt4, 7, 2048, 64, true, 3},
      {kUInt4, 3, 1056, 32, true, 8},      {kNF4, 9, 256, 64, false, 2},
      {kNF4, 4, 4096, 4096, false, 1},     {kInt8, 6, 96, 32, false, 5},
      {kInt8, 3, 1024, 1024, true, 4},     {kUInt8, 5, 160, 32, true, 7},
      {kInt4, 2, 32, 32, true, 8},         {kUInt4, 3, 512, 64, false, 16},
      {kFP8E4M3, 5, 64, 64, false, 3},     {kFP8E5M2, 4, 96, 96, false, 16},
      {kFP8E4M3, 3, 1024, 1024, false, 1},
  };
  for (const Case &c : cases) {
    SCOPED_TRACE("format " + std::to_string(c.format) + " n" +
                 std::to_string(c.n) + " k" + std::to_string(c.k) + " g" +
                 std::to_string(c.group) + (c.zp ? " zp" : "") + " m" +
                 std::to_string(c.m));
    std::mt19937 rng(unsigned(c.n * 131 + c.k + c.m));
    bool four = c.format == kInt4 || c.format == kUInt4 || c.format == kNF4;
    int64_t rowBytes = four ? c.k / 2 : c.k;
    int64_t groups = c.k / c.group;
    // Rows of codes 16-byte aligned, as the kernel reads them.
    std::vector<uint32_t> storage(size_t(c.n * rowBytes / 4 + 4));
    uint8_t *codes = reinterpret_cast<uint8_t *>(storage.data());
    randomCodes(c.format, rng, codes, size_t(c.n * rowBytes));
    std::uniform_real_distribution<float> scale(0.01f, 0.1f);
    std::vector<float> scales(size_t(c.n * groups));
    for (float &s : scales)
      s = scale(rng);
    std::vector<int8_t> zps(size_t(c.n * groups));
    std::uniform_int_distribution<int> zpDist(-8, 7), zpU(0, 15),
        zp8(-100, 100), zp8u(0, 255);
    for (int8_t &z : zps)
      z = int8_t(c.format == kInt4    ? zpDist(rng)
                 : c.format == kUInt4 ? zpU(rng)
                 : c.format == kInt8  ? zp8(rng)
                                      : zp8u(rng));
    std::normal_distribution<float> xDist(0.0f, 1.0f);
    std::vector<uint16_t> x(size_t(c.m * c.k));
    for (uint16_t &v : x)
      v = toBF16(xDist(rng));
    WeightView w{
        codes,  rowBytes, scales.data(), groups, c.zp ? zps.data() : nullptr,
        groups, c.n,      c.k,           c.group};
    std::vector<float> y(size_t(c.m * c.n));
    // The f32-activation variant (what CUDA models call) on the same
    // values: the same products summed in the same order, so equal bits.
    std::vector<float> x32(x.size()), y32(y.size());
    for (size_t i = 0; i < x.size(); ++i) {
      uint32_t bits = uint32_t(x[i]) << 16;
      std::memcpy(&x32[i], &bits, 4);
    }
    withFormat(c.format, [&](auto f) {
      runLanes<decltype(f)::value>(w, x.data(), c.m, y);
      runLanes<decltype(f)::value>(w, x32.data(), c.m, y32);
    });
    for (size_t i = 0; i < y.size(); ++i)
      ASSERT_EQ(y32[i], y[i]) << "f32 activations differ at " << i;
    // The reference: each code by the format's definition.
    for (int i = 0; i < c.m; ++i)
      for (int64_t r = 0; r < c.n; ++r) {
        double sum = 0, mag = 0;
        for (int64_t col = 0; col < c.k; ++col) {
          int64_t g = col / c.group;
          uint8_t b =
              four ? codes[r * rowBytes + col / 2] : codes[r * rowBytes + col];
          int raw = four ? (col % 2 ? b >> 4 : b & 15) : b;
          double v = referenceCode(c.format, raw);
          double z = 0;
          if (c.zp)
            z = (c.format == kUInt4 || c.format == kUInt8)
                    ? double(uint8_t(zps[size_t(r * groups + g)]))
                    : double(zps[size_t(r * groups + g)]);
          uint32_t bits = uint32_t(x[size_t(i * c.k + col)]) << 16;
          float xv;
          std::memcpy(&xv, &bits, 4);
          double term = (v - z) * scales[size_t(r * groups + g)] * xv;
          sum += term;
          mag += std::fabs(term);
        }
        ASSERT_NEAR(y[size_t(i * c.n + r)], sum, 2e-6 * mag + 1e-6)
            << "row " << i << " output " << r;
      }
  }
}

/// The GEMM runs a batch's products as one grid only when their C's are
/// disjoint (on the CPU the blocks run in turn, so a race would not show).
TEST(CUDATile, BatchesRunAsOneGridOnlyWhenTheirOutputsAreDisjoint) {
  // [batch 2, seq 70, heads 3, 8] written per (batch, head): disjoint.
  EXPECT_TRUE(disjoint({2, 3, 70, 8}, {1680, 8, 24, 1}));
  // Plain batches, and a broadcast size-1 dimension.
  EXPECT_TRUE(disjoint({4, 1, 5, 6}, {30, 0, 6, 1}));
  // A weight gradient accumulated over the outer loops (C does not move).
  EXPECT_FALSE(disjoint({2, 3, 8, 6}, {0, 0, 6, 1}));
  // Heads 4 apart but 8 wide: they overlap.
  EXPECT_FALSE(disjoint({1, 3, 70, 8}, {0, 4, 24, 1}));
  // Rows overlapping within one product's stride pattern.
  EXPECT_FALSE(disjoint({2, 1, 5, 6}, {20, 0, 4, 1}));
  // Column-major C, batches after it.
  EXPECT_TRUE(disjoint({3, 1, 5, 6}, {30, 0, 1, 5}));
}

/// qopt_cuda_qlinear's plan on the CPU: the GEMV for up to kMaxRows rows,
/// the tiled GEMM (codes dequantized into its B tiles) for more, and the
/// GEMM for C += A·W (flag 8: the backward's dX through W), with rows and
/// columns past a tile's border, against the weight dequantized by the
/// formats' definitions, in double.
TEST(CUDATile, QLinearPlanEqualsTheDequantizedProduct) {
  struct QCase {
    int format;
    int64_t rows, cols, group; // W: rows x cols, codes and groups along cols
    bool zp;
    int64_t m;
    bool transposed; // C[m, cols] += A[m, rows]·W, else C[m, rows] += A·Wᵀ
    bool perTensor = false; // one scale (row stride 0)
    bool nested = false;    // double-quantized scales (NestedScales)
  };
  const QCase cases[] = {
      {kInt4, 70, 96, 32, true, 5, false},
      {kInt4, 70, 96, 32, true, 40, false},
      {kNF4, 130, 256, 64, false, 17, false},
      {kNF4, 65, 128, 128, false, 130, false},
      {kUInt4, 64, 64, 32, true, 66, false},
      {kInt8, 33, 160, 32, false, 80, false},
      {kUInt8, 70, 64, 64, true, 20, false},
      {kInt8, 70, 64, 32, true, 3, false},
      {kInt4, 70, 96, 32, true, 5, true},
      {kNF4, 130, 160, 32, false, 40, true},
      {kNF4, 33, 64, 64, false, 70, true},
      {kUInt4, 64, 128, 64, true, 17, true},
      {kInt8, 45, 96, 32, true, 66, true},
      {kUInt8, 7, 32, 32, true, 2, true},
      {kFP8E4M3, 70, 96, 96, false, 5, false, true},
      {kFP8E5M2, 70, 64, 64, false, 40, false},
      {kFP8E4M3, 33, 96, 96, false, 66, true},
      {kFP8E5M2, 45, 64, 64, false, 20, true, true},
      {kNF4, 70, 128, 64, false, 5, false, false, true},
      {kNF4, 130, 256, 64, false, 40, false, false, true},
      {kNF4, 65, 128, 64, false, 40, true, false, true},
      {kInt4, 70, 96, 32, true, 17, false, false, true},
  };
  for (const QCase &c : cases) {
    SCOPED_TRACE("format " + std::to_string(c.format) + " W " +
                 std::to_string(c.rows) + "x" + std::to_string(c.cols) + " g" +
                 std::to_string(c.group) + (c.zp ? " zp" : "") + " m" +
                 std::to_string(c.m) + (c.transposed ? " A·W" : " A·Wᵀ") +
                 (c.perTensor ? " per tensor" : "") +
                 (c.nested ? " nested scales" : ""));
    std::mt19937 rng(unsigned(c.rows * 7 + c.cols + c.m + c.transposed));
    bool four = c.format == kInt4 || c.format == kUInt4 || c.format == kNF4;
    int64_t rowBytes = four ? c.cols / 2 : c.cols, groups = c.cols / c.group;
    int64_t n = c.transposed ? c.cols : c.rows,
            k = c.transposed ? c.rows : c.cols;
    std::vector<uint8_t> codes(size_t(c.rows * rowBytes));
    randomCodes(c.format, rng, codes.data(), codes.size());
    std::uniform_int_distribution<int> byte(0, 255);
    std::uniform_real_distribution<float> unit(-1.0f, 1.0f);
    std::vector<float> scales(size_t(c.rows * groups)), x(size_t(c.m * k)),
        y(size_t(c.m * n));
    for (float &v : scales)
      v = 0.05f + 0.05f * unit(rng);
    // Double quantization (codes and absmax 5 and 2 elements into their
    // buffers: offsets).
    NestedScaleData dq = nestedScales(scales, rng, c.nested, 5, 2);
    for (float &v : x)
      v = unit(rng);
    for (float &v : y) // the call adds to what is there
      v = unit(rng);
    std::vector<int8_t> zps(size_t(c.rows * groups));
    for (int8_t &z : zps)
      z = int8_t(byte(rng) % (four ? 16 : 256) - (c.format == kInt4 ? 8 : 0));
    std::vector<double> expected(y.begin(), y.end()), magnitude(y.size(), 1.0);
    for (int64_t r = 0; r < c.rows; ++r)
      for (int64_t col = 0; col < c.cols; ++col) {
        int64_t g = col / c.group;
        uint8_t b = four ? codes[size_t(r * rowBytes + col / 2)]
                         : codes[size_t(r * rowBytes + col)];
        int raw = four ? (col % 2 ? b >> 4 : b & 15) : b;
        double v = referenceCode(c.format, raw);
        int8_t z = zps[size_t(r * groups + g)];
        if (c.zp)
          v -= (c.format == kUInt4 || c.format == kUInt8) ? double(uint8_t(z))
                                                          : double(z);
        v *= scales[size_t(c.perTensor ? 0 : r * groups + g)];
        // W[r, col] meets A's column col (A·Wᵀ: output r) or r (A·W:
        // output col).
        int64_t in = c.transposed ? r : col, out = c.transposed ? col : r;
        for (int64_t i = 0; i < c.m; ++i) {
          double term = v * x[size_t(i * k + in)];
          expected[size_t(i * n + out)] += term;
          magnitude[size_t(i * n + out)] += std::fabs(term);
        }
      }
    auto ptr = [](const void *p) {
      return int64_t(reinterpret_cast<intptr_t>(p));
    };
    // (With nested scales the f32 list is not passed: the codes stand in.)
    qopt_cuda_qlinear_emulated(
        c.format, c.group, (c.zp ? 1 : 0) | (c.transposed ? 8 : 0), 1, 1, c.m,
        n, k, ptr(x.data()), 0, 0, 0, k, 1, ptr(codes.data()), 0, rowBytes,
        c.nested ? ptr(dq.codes.data()) : ptr(scales.data()), c.nested ? 5 : 0,
        c.perTensor ? 0 : groups, c.zp ? ptr(zps.data()) : 0, 0, groups,
        ptr(y.data()), 0, 0, 0, n, 1, c.nested ? ptr(dq.codes.data()) : 0, 5,
        ptr(dq.absmax.data()), 2, 3, dq.offsetBits(), ptr(dq.table.data()), 0);
    for (size_t e = 0; e < y.size(); ++e)
      // f32 sums of k terms: a few ulps of the terms' magnitudes.
      ASSERT_NEAR(y[e], expected[e], 4e-7 * magnitude[e]) << "element " << e;
  }
}

extern "C" void qopt_cuda_qlinear_lora_emulated(
    int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t,
    int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t,
    int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t,
    int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t,
    int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t,
    int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t,
    int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t,
    int64_t);

/// qopt_cuda_qlinear_lora on the CPU: y (+)= x·Wᵀ + s·z·Bᵀ through the
/// GEMV (the lanes add the rank terms before the shuffles) and the GEMM
/// (further K steps over the rank), ranks below and past a warp and a K
/// step, C overwritten (flag 16: y starts as NaN) or added to, two batches
/// whose rows continue (folded into M) or not (z padded between batches:
/// one launch each), against double. `down`: the launches compute z =
/// x·Aᵀ themselves (z starts as NaN; its first blocks / warps, then the
/// branch): z and y against double; A one float off 16 bytes: the GEMV's
/// fallback, a GEMM into z first.
TEST(CUDATile, QLinearLoRAAddsTheBranch) {
  struct LCase {
    int format;
    int64_t n, k, group, rows, rank;
    bool overwrite, padded;
    bool down = false;
    int64_t downOffset = 0;
  };
  const LCase cases[] = {
      {kNF4, 70, 128, 64, 3, 8, true, false},
      {kInt4, 65, 96, 32, 7, 40, false, true},
      {kInt8, 33, 64, 32, 30, 16, true, true},
      {kNF4, 130, 128, 64, 40, 40, false, false},
      {kFP8E4M3, 64, 64, 64, 9, 64, true, false},
      // Down projections: GEMV (1 and 16 rows, two launches when padded),
      // GEMM (rank past a tile of Z, batches in one grid, z padded), the
      // GEMV's fallback.
      {kNF4, 70, 128, 64, 1, 8, true, false, true},
      {kInt4, 65, 96, 32, 16, 40, false, true, true},
      {kNF4, 130, 128, 64, 40, 72, true, false, true},
      {kInt8, 33, 64, 32, 30, 16, false, true, true},
      {kNF4, 64, 64, 64, 5, 16, true, false, true, 1},
  };
  for (const LCase &c : cases) {
    SCOPED_TRACE("format " + std::to_string(c.format) + " n " +
                 std::to_string(c.n) + " k " + std::to_string(c.k) + " rows " +
                 std::to_string(c.rows) + " rank " + std::to_string(c.rank) +
                 (c.overwrite ? " C =" : " C +=") +
                 (c.padded ? " padded z" : "") + (c.down ? " down" : "") +
                 (c.downOffset ? " unaligned A" : ""));
    std::mt19937 rng(unsigned(c.n + c.k + c.rows + c.rank));
    std::uniform_real_distribution<float> unit(-1.0f, 1.0f);
    bool four = c.format == kInt4 || c.format == kNF4;
    int64_t rowBytes = four ? c.k / 2 : c.k, groups = c.k / c.group;
    const int64_t batches = 2;
    // z's batch stride: rows·rank, or padded by 3 rows.
    int64_t zBatch = (c.rows + (c.padded ? 3 : 0)) * c.rank;
    std::vector<uint8_t> codes(size_t(c.n * rowBytes));
    randomCodes(c.format, rng, codes.data(), codes.size());
    std::vector<float> scales(size_t(c.n * groups)),
        x(size_t(batches * c.rows * c.k)), z(size_t(batches * zBatch)),
        b(size_t(c.n * c.rank)), y(size_t(batches * c.rows * c.n)),
        a(size_t(c.downOffset + c.rank * c.k));
    for (float &v : scales)
      v = 0.05f + 0.05f * unit(rng);
    for (std::vector<float> *v : {&x, &z, &b, &a})
      for (float &e : *v)
        e = unit(rng);
    for (float &v : y)
      v = c.overwrite ? NAN : unit(rng);
    // z = x·Aᵀ (with its magnitude: the sum of |terms|).
    std::vector<double> zExpected(z.size()), zMagnitude(z.size(), 0.0);
    if (c.down)
      for (int64_t bt = 0; bt < batches; ++bt)
        for (int64_t i = 0; i < c.rows; ++i)
          for (int64_t j = 0; j < c.rank; ++j) {
            size_t e = size_t(bt * zBatch + i * c.rank + j);
            double sum = 0, mag = 0;
            for (int64_t col = 0; col < c.k; ++col) {
              double term = double(x[size_t((bt * c.rows + i) * c.k + col)]) *
                            a[size_t(c.downOffset + j * c.k + col)];
              sum += term;
              mag += std::fabs(term);
            }
            zExpected[e] = sum;
            zMagnitude[e] = mag;
            z[e] = NAN;
          }
    const float scale = 0.75f;
    std::vector<double> expected(y.size()), magnitude(y.size(), 1.0);
    for (size_t e = 0; e < y.size(); ++e)
      expected[e] = c.overwrite ? 0.0 : y[e];
    for (int64_t bt = 0; bt < batches; ++bt)
      for (int64_t i = 0; i < c.rows; ++i)
        for (int64_t r = 0; r < c.n; ++r) {
          size_t out = size_t((bt * c.rows + i) * c.n + r);
          for (int64_t col = 0; col < c.k; ++col) {
            uint8_t byte = codes[size_t(r * rowBytes + (four ? col / 2 : col))];
            int raw = four ? (col % 2 ? byte >> 4 : byte & 15) : byte;
            double term = referenceCode(c.format, raw) *
                          scales[size_t(r * groups + col / c.group)] *
                          x[size_t((bt * c.rows + i) * c.k + col)];
            expected[out] += term;
            magnitude[out] += std::fabs(term);
          }
          for (int64_t j = 0; j < c.rank; ++j) {
            size_t e = size_t(bt * zBatch + i * c.rank + j);
            double bj = double(scale) * b[size_t(r * c.rank + j)];
            expected[out] += (c.down ? zExpected[e] : z[e]) * bj;
            magnitude[out] +=
                std::fabs(bj) * (c.down ? zMagnitude[e] : std::fabs(z[e]));
          }
        }
    auto ptr = [](const void *p) {
      return int64_t(reinterpret_cast<intptr_t>(p));
    };
    uint32_t scaleBits;
    std::memcpy(&scaleBits, &scale, 4);
    const std::vector<float> zBefore = z;
    qopt_cuda_qlinear_lora_emulated(
        c.format, c.group, c.overwrite ? kQLinearOverwrite : 0, 1, batches,
        c.rows, c.n, c.k, ptr(x.data()), 0, 0, c.rows * c.k, c.k, 1,
        ptr(codes.data()), 0, rowBytes, ptr(scales.data()), 0, groups, 0, 0, 0,
        ptr(y.data()), 0, 0, c.rows * c.n, c.n, 1, 0, 0, 0, 0, 0, 0, 0, 0,
        ptr(z.data()), 0, 0, zBatch, c.rank, 1, ptr(b.data()), 0, 0, 0, c.rank,
        1, c.rank, scaleBits, c.down ? ptr(a.data()) : 0, c.downOffset, 0, 0,
        c.k, 1);
    for (size_t e = 0; c.down && e < z.size(); ++e)
      if (int64_t(e % size_t(zBatch)) < c.rows * c.rank)
        ASSERT_NEAR(z[e], zExpected[e], 4e-7 * zMagnitude[e] + 1e-30)
            << "z element " << e;
      else // (the padding between batches: untouched)
        ASSERT_EQ(z[e], zBefore[e]) << "z element " << e;
    for (size_t e = 0; e < y.size(); ++e)
      ASSERT_NEAR(y[e], expected[e], 4e-7 * magnitude[e]) << "element " << e;
  }
}

} // namespace
