//===- CUDAHadamardTest.cpp - the CUDA Hadamard transform on the CPU ------===//
//
// Hadamard.cu's kernels through their CPU emulation (every block's threads
// phase by phase: qopt_cuda_hadamard_emulated, which qoptc --cuda-emulate
// models call) against y = scale · H_n · diag(signs) · x in double, with
// H_n = H_base ⊗ H_power, Sylvester's H_power[i][j] = (−1)^popcount(i & j)
// and H_base the compiler's (qopt::hadamard::baseMatrix) or any ±1 matrix:
// power-of-two blocks from 2 to 16384 and orders base · 2^k up to 18944,
// runs crossing thread blocks, strided (transposed) x, y and H_base, with
// and without signs.
//
//===----------------------------------------------------------------------===//

#include "../../lib/Runtime/Kernels/CUDA/HadamardTile.h"
#include "FusedQuantCheck.h"
#include "qopt/Support/Hadamard.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <memory>
#include <random>
#include <vector>

extern "C" void qopt_cuda_hadamard_emulated(QOPT_HADAMARD_PARAMS);
extern "C" void qopt_cuda_hadamard_quant_emulated(QOPT_HADAMARD_QUANT_PARAMS);
extern "C" void qopt_cuda_quantize_rows_emulated(int64_t, int64_t, int64_t,
                                                 int64_t, int64_t, int64_t,
                                                 int64_t, int64_t, int64_t,
                                                 int64_t, int64_t, int64_t,
                                                 int64_t, int64_t);

namespace {

/// H_base: row-major base × base ±1 entries, read through strides s0, s1.
struct BaseMatrix {
  std::vector<int8_t> data;
  int64_t base = 1, s0 = 1, s1 = 1;
  int8_t at(int64_t a, int64_t r) const {
    return data[size_t(a * s0 + r * s1)];
  }
};

/// The compiler's H_base for n (baseMatrix(split(n).base)), or with
/// `random`, a ±1 matrix of that order that is no Hadamard matrix, stored
/// transposed: the kernel applies whatever it is given.
BaseMatrix baseFor(int64_t n, bool random, std::mt19937 &rng) {
  BaseMatrix m;
  m.base = qopt::hadamard::split(n).base;
  m.s0 = m.base;
  m.data = qopt::hadamard::baseMatrix(m.base);
  if (random) {
    for (int8_t &v : m.data)
      v = rng() % 2 ? 1 : -1;
    std::swap(m.s0, m.s1);
  }
  return m;
}

/// qopt_cuda_hadamard_emulated over x and y [rows, cols] (strides s0, s1).
void transform(const BaseMatrix &hm, int64_t n, bool withSigns,
               const float *signs, const float *x, float *y, int64_t rows,
               int64_t cols, int64_t s0, int64_t s1, int64_t ys0, int64_t ys1) {
  qopt_cuda_hadamard_emulated(withSigns ? 1 : 0, n, 1.0 / std::sqrt(double(n)),
                              nullptr, x, 0, rows, cols, s0, s1, nullptr,
                              withSigns ? signs : x, 0, n, 1, nullptr,
                              hm.data.data(), 0, hm.base, hm.base, hm.s0, hm.s1,
                              nullptr, y, 0, rows, cols, ys0, ys1);
}

TEST(CUDAHadamard, EqualsTheDefinitionInDouble) {
  struct Case {
    int64_t n, rows, runs; // cols = runs · n
    bool signs, transposed, randomBase;
  };
  const Case cases[] = {
      {2, 3, 5, true, false, false},
      {32, 5, 3, false, true, false},
      {64, 7, 9, true, false, false},
      {512, 3, 5, true, true, false},
      {4096, 2, 1, true, false, false},
      {8192, 1, 2, false, false, false},
      // Past the static tile: the mixed kernel with no base.
      {16384, 1, 1, true, false, false},
      // Orders base · 2^k: a base alone, runs crossing thread blocks, more
      // than one pass of columns, every word of bits, QuaRot's sizes.
      {12, 3, 5, true, false, false},
      {24, 5, 3, false, true, false},
      {96, 7, 9, true, false, false},
      {44 * 4, 3, 5, true, false, true},
      {1280, 3, 2, true, true, false},
      {252 * 2, 2, 3, false, false, true},
      {172 * 64, 2, 1, true, false, false},
      {148 * 128, 1, 1, false, false, false},
      // Past 23040: the butterflies over runs of P2, then the columns
      // kernel's M (Llama-3-70B's 28672 = 28 · 1024; 32768 = H_4 ⊗ H_8192,
      // transposed; 12 · 16384 = (H_12 ⊗ H_2) ⊗ H_8192 with a random base).
      {28 * 1024, 2, 1, true, false, false},
      {32768, 1, 2, true, true, false},
      {12 * 16384, 1, 1, true, false, true}};
  std::mt19937 rng(3);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (const Case &c : cases) {
    SCOPED_TRACE(testing::Message()
                 << "n=" << c.n << " rows=" << c.rows << " runs=" << c.runs
                 << " random base=" << c.randomBase);
    BaseMatrix hm = baseFor(c.n, c.randomBase, rng);
    ASSERT_FALSE(hm.data.empty());
    int64_t power = c.n / hm.base, cols = c.runs * c.n;
    std::vector<float> x(size_t(c.rows * cols)), y(x.size()), signs;
    for (float &v : x)
      v = normal(rng);
    for (float &v : y)
      v = std::numeric_limits<float>::quiet_NaN(); // every element written
    for (int64_t i = 0; c.signs && i < c.n; ++i)
      signs.push_back(normal(rng) < 0 ? -1.0f : 1.0f);
    // Row-major, or stored column-major ([cols, rows]: a transposed view).
    int64_t s0 = c.transposed ? 1 : cols, s1 = c.transposed ? c.rows : 1;
    double scale = 1.0 / std::sqrt(double(c.n));
    transform(hm, c.n, c.signs, signs.data(), x.data(), y.data(), c.rows, cols,
              s0, s1, s0, s1);
    // Each addition rounds once: the butterflies log2(power) times, the
    // base's sums `base` times (past 23040, M's: base · power / 8192).
    int64_t inner = c.n > 23040 && power > 8192 ? power / 8192 : 1;
    double rounding =
        6e-8 * (std::log2(double(power)) + double(hm.base * inner) + 1);
    for (int64_t r = 0; r < c.rows; ++r)
      for (int64_t col = 0; col < cols; ++col) {
        int64_t first = col / c.n * c.n, i = col % c.n;
        // (Past 4096, every 7th element (past 65536 every 97th) and the
        // last 40 of each run: the definition costs n per element.)
        if (c.n > 4096 && i % (c.n > 65536 ? 97 : 7) && i < c.n - 40)
          continue;
        double expected = 0, magnitude = 0;
        for (int64_t j = 0; j < c.n; ++j) {
          double v = x[size_t(r * s0 + (first + j) * s1)] *
                     (c.signs ? signs[size_t(j)] : 1.0f);
          int sign =
              hm.at(i / power, j / power) *
              (__builtin_popcountll(uint64_t(i % power & j % power)) % 2 ? -1
                                                                         : 1);
          expected += sign * v;
          magnitude += std::fabs(v);
        }
        ASSERT_NEAR(y[size_t(r * s0 + col * s1)], expected * scale,
                    rounding * magnitude * scale)
            << "y[" << r << ", " << col << "]";
      }
  }
}

/// Which kernel each shape takes, and what no kernel takes: the compiler
/// makes calls only within these bounds (QOptToLinalg's hadamardCall,
/// LinalgToBLAS's fusion: 23040, bases up to 252).
TEST(CUDAHadamard, PlansTheKernelOrRefuses) {
  using namespace qopt_cuda;
  static_assert(4 * (kHadamardMixedMaxElements +
                     kHadamardMaxBase * kHadamardBaseWords +
                     kHadamardThreads / 32) <=
                    kHadamardMixedMaxBytes,
                "the largest mixed launch fits the shared memory bound");
  float v = 0.0f;
  auto plan = [&](int64_t n, int64_t cols, std::vector<int8_t> h, int64_t base,
                  bool quant, HadamardKernel &kind) {
    auto m = std::make_unique<HadamardMixedParams>();
    int64_t blocks = 0;
    Memref2 x{&v, 0, {3, cols}, {cols, 1}};
    MemrefView<1> s{&v, 0, {n}, {1}};
    Memref2 hm{h.data(), 0, {base, base}, {base, 1}};
    if (quant)
      return planHadamardQuant(0, n, 1.0, x, s, hm, x, 8, 0, 0, 0, 0, 0, *m,
                               blocks, kind);
    const char *why = planHadamard(0, n, 1.0, x, s, hm, x, *m, blocks, kind);
    if (!why && m->base > 1 && kind == kHadamardMixed) {
      // H_base's −1 entries are the set bits.
      for (int64_t a = 0; a < base; ++a)
        for (int64_t r = 0; r < base; ++r)
          EXPECT_EQ((m->columns[r * m->words + a / 32] >> (a % 32)) & 1u,
                    h[size_t(a * base + r)] < 0 ? 1u : 0u);
      EXPECT_LE(hadamardMixedShared(*m), kHadamardMixedMaxBytes);
    }
    return why;
  };
  auto hadamard = [](int64_t base) { return qopt::hadamard::baseMatrix(base); };
  HadamardKernel kind = kHadamardSplit;
  EXPECT_EQ(plan(8192, 8192, {1}, 1, false, kind), nullptr);
  EXPECT_EQ(kind, kHadamardPow2);
  EXPECT_EQ(plan(16384, 16384, {1}, 1, false, kind), nullptr);
  EXPECT_EQ(kind, kHadamardMixed);
  EXPECT_EQ(plan(96, 192, hadamard(12), 12, false, kind), nullptr);
  EXPECT_EQ(kind, kHadamardMixed);
  EXPECT_EQ(plan(252 * 64, 252 * 64, hadamard(252), 252, true, kind), nullptr);
  EXPECT_EQ(kind, kHadamardMixed);
  // Quantized rows past 8192 of power-of-two blocks: the mixed kernel.
  EXPECT_EQ(plan(128, 8192, {1}, 1, true, kind), nullptr);
  EXPECT_EQ(kind, kHadamardPow2);
  EXPECT_EQ(plan(128, 8192 + 128, {1}, 1, true, kind), nullptr);
  EXPECT_EQ(kind, kHadamardMixed);
  EXPECT_STREQ(plan(128, 23040 + 128, {1}, 1, true, kind),
               "rows longer than a block holds");
  EXPECT_STREQ(plan(12 * 2048, 12 * 2048, hadamard(12), 12, true, kind),
               "rows longer than a block holds");
  // Blocks past 23040: two launches, M = H_base ⊗ H_(power / 8192) of at
  // most 252 rows across runs of min(power, 8192); M's bits are H_base's
  // entries times Sylvester's.
  {
    auto m = std::make_unique<HadamardMixedParams>();
    int64_t blocks = 0, n = 12 * 16384;
    std::vector<int8_t> h = hadamard(12);
    Memref2 x{&v, 0, {3, 2 * n}, {2 * n, 1}};
    MemrefView<1> s{&v, 0, {n}, {1}};
    Memref2 hm{h.data(), 0, {12, 12}, {12, 1}};
    ASSERT_EQ(planHadamard(1, n, 1.0, x, s, hm, x, *m, blocks, kind), nullptr);
    EXPECT_EQ(kind, kHadamardSplit);
    EXPECT_EQ(m->base, 24);
    EXPECT_EQ(m->power, 8192);
    EXPECT_EQ(blocks, 3 * 2 * 24); // runs of 8192, one a block
    EXPECT_EQ(hadamardColumnBlocks(*m), 3 * 2 * (8192 / 32));
    int64_t ignored;
    HadamardParams b = hadamardButterflies(*m, ignored);
    EXPECT_EQ(b.n, 8192);
    EXPECT_EQ(b.signRuns, 24);
    EXPECT_EQ(b.scale, 1.0f);
    for (int64_t a = 0; a < 24; ++a)
      for (int64_t r = 0; r < 24; ++r) {
        int sign = h[size_t(a / 2 * 12 + r / 2)] * ((a % 2) & (r % 2) ? -1 : 1);
        EXPECT_EQ((m->columns[r * m->words + a / 32] >> (a % 32)) & 1u,
                  sign < 0 ? 1u : 0u)
            << a << ", " << r;
      }
  }
  EXPECT_EQ(plan(28 * 1024, 28 * 1024, hadamard(28), 28, false, kind), nullptr);
  EXPECT_EQ(kind, kHadamardSplit);
  EXPECT_EQ(plan(1 << 20, 1 << 20, {1}, 1, false, kind), nullptr);
  EXPECT_EQ(kind, kHadamardSplit);
  EXPECT_STREQ(plan(1 << 21, 1 << 21, {1}, 1, false, kind),
               "a block longer than 23040 whose part past 8192 (base times "
               "the power of two's) is more than 252");
  EXPECT_STREQ(plan(44 * 65536, 44 * 65536, hadamard(44), 44, false, kind),
               "a block longer than 23040 whose part past 8192 (base times "
               "the power of two's) is more than 252");
  EXPECT_EQ(plan(24, 24, hadamard(12), 12, false, kind), nullptr);
  EXPECT_STREQ(plan(36, 36, hadamard(12), 12, false, kind),
               "a block that is not its base times a power of two");
  EXPECT_STREQ(
      plan(260, 260, std::vector<int8_t>(260 * 260, 1), 260, false, kind),
      "a base matrix that is not square, of at most 252 rows, "
      "dividing the block");
  EXPECT_STREQ(plan(64, 64, {-1}, 1, false, kind),
               "a base matrix of order 1 other than [1]");
  std::vector<int8_t> zero = hadamard(12);
  zero[17] = 0;
  EXPECT_STREQ(plan(24, 24, zero, 12, false, kind),
               "a base matrix with an entry other than 1 or -1");
  EXPECT_STREQ(plan(24, 36, hadamard(12), 12, false, kind),
               "a row not a whole number of blocks");
}

/// The transform fused with per-token quantization (QuaRot's online
/// rotation before a W4A4 product: a block a row) equals the transform,
/// then the rows' quantization of its y, bit for bit: codes, steps, and y
/// where it is wanted; a row with a NaN gets a NaN step and zero codes.
/// Power-of-two rows up to 8192 take the static kernel, longer rows and
/// orders base · 2^k the mixed one.
TEST(CUDAHadamard, QuantizedEqualsTheTransformThenTheRowsQuantization) {
  struct Case {
    int64_t n, rows, runs;
    bool signs, transposed;
    int bits;
  };
  const Case cases[] = {{32, 5, 1, true, false, 4},
                        {64, 3, 3, false, true, 8},
                        {2048, 2, 4, true, false, 8},
                        {8192, 2, 1, false, false, 4},
                        {128, 3, 129, true, false, 4},
                        {96, 5, 2, true, true, 4},
                        {172 * 64, 3, 1, true, false, 8},
                        {20 * 1024, 2, 1, false, false, 4},
                        {256, 4, 2, true, false, qopt_cuda::kTokenFP8E4M3}};
  std::mt19937 rng(17);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  for (const Case &c : cases)
    for (bool writeY : {false, true}) {
      int64_t cols = c.runs * c.n;
      SCOPED_TRACE(testing::Message()
                   << "n=" << c.n << " cols=" << cols << " bits=" << c.bits
                   << " writeY=" << writeY);
      BaseMatrix hm = baseFor(c.n, false, rng);
      size_t count = size_t(c.rows * cols);
      std::vector<float> x(count), signs;
      for (float &v : x)
        v = normal(rng);
      for (int64_t i = 0; i < c.n; ++i)
        signs.push_back(normal(rng) < 0 ? -1.0f : 1.0f);
      int64_t s0 = c.transposed ? 1 : cols, s1 = c.transposed ? c.rows : 1;
      if (c.rows > 2)
        x[size_t(2 * s0 + 5 * s1)] = nan;
      double scale = 1.0 / std::sqrt(double(c.n));
      const float *sv = c.signs ? signs.data() : x.data();
      std::vector<float> y(count, nan), steps(size_t(c.rows), nan);
      std::vector<int8_t> codes(count, 99);
      transform(hm, c.n, c.signs, signs.data(), x.data(), y.data(), c.rows,
                cols, s0, s1, cols, 1);
      qopt_cuda_quantize_rows_emulated(
          c.bits, c.rows, cols, addressOf(y.data()), 0, cols,
          addressOf(codes.data()), 0, addressOf(steps.data()), 0, 0, 0, 0, 0);
      std::vector<float> fy(count, nan), fsteps(size_t(c.rows) + 1, nan);
      std::vector<int8_t> fcodes(count + 3, 99);
      qopt_cuda_hadamard_quant_emulated(
          c.signs ? 1 : 0, c.n, scale, nullptr, x.data(), 0, c.rows, cols, s0,
          s1, nullptr, sv, 0, c.n, 1, nullptr, hm.data.data(), 0, hm.base,
          hm.base, hm.s0, hm.s1, nullptr, fy.data(), 0, c.rows, cols, cols, 1,
          c.bits, writeY, addressOf(fcodes.data()), 3, addressOf(fsteps.data()),
          1);
      ASSERT_NO_FATAL_FAILURE(expectSameQuantization(
          codes, steps, y, fcodes, 3, fsteps, 1, fy, writeY, c.bits, cols));
      if (c.rows > 2) {
        EXPECT_TRUE(std::isnan(fsteps[2 + 1]));
      }
    }
}

/// Rows of nothing (K = 0): the fused launch still writes each row's step,
/// 1, as the rows' quantization does, so the products read no garbage.
TEST(CUDAHadamard, QuantizedRowsOfNothingHaveStepOne) {
  float x = 0.0f, y = 0.0f;
  int8_t codes = 0, one = 1;
  std::vector<float> steps(3, std::numeric_limits<float>::quiet_NaN());
  qopt_cuda_hadamard_quant_emulated(
      0, 32, 1.0, nullptr, &x, 0, 3, 0, 0, 1, nullptr, &x, 0, 32, 1, nullptr,
      &one, 0, 1, 1, 1, 1, nullptr, &y, 0, 3, 0, 0, 1, 8, 0, addressOf(&codes),
      0, addressOf(steps.data()), 0);
  for (float step : steps)
    EXPECT_EQ(step, 1.0f);
}

} // namespace
