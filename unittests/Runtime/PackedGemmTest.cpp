//===- PackedGemmTest.cpp - products with constant, packed weights --------===//
//
// qopt_kernel_sgemm's AVX-512 path: B inside a range the runtime registers
// as constant is packed once (on the first product with several rows of
// A) and reused; B outside one is packed per call; release frees the
// copies so that new contents at the same address are read. Odd shapes
// around the tile sizes (12 rows, 32 columns, K blocks of 256), B row- and
// column-major, one-row products that read B in place, 1 and 2 threads,
// against a float64 reference. On a CPU without AVX-512 the products take
// BLAS: the checks that copies are made do not apply (SameResultsOnBLAS
// skips with a message), the numerics are checked either way.
//
//===----------------------------------------------------------------------===//

#include "gtest/gtest.h"

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

extern "C" {
void qopt_kernel_sgemm(int64_t, int64_t, int64_t, int64_t, int64_t, int64_t,
                       int64_t, int64_t, int64_t, int64_t, int64_t, int64_t,
                       int64_t, int64_t, int64_t, int64_t, int64_t, int64_t,
                       int64_t, int64_t, int64_t, int64_t, int64_t);
void qopt_kernel_register_constant(const void *, int64_t);
void qopt_kernel_release_constant(const void *, int64_t);
int64_t qopt_kernel_packed_bytes(void);
void qopt_kernel_set_num_threads(int);
const char *qopt_kernel_cpu_path(void);
int qopt_kernel_set_cpu_path(const char *);
}

namespace {

bool avx512() {
  return std::string(qopt_kernel_cpu_path()).rfind("avx512", 0) == 0;
}

std::vector<float> random(size_t n, std::mt19937 &rng) {
  std::uniform_real_distribution<float> dist(-1, 1);
  std::vector<float> v(n);
  for (float &x : v)
    x = dist(rng);
  return v;
}

/// C (m x n, row-major) += A (m x k, row-major) · B (k x n at b, strides
/// rs / cs), checked against float64 with a bound that scales with
/// sum |a||b| (the kernels sum in another order than the reference).
void checkProduct(int64_t o0, int64_t m, int64_t n, int64_t k, const float *b,
                  int64_t rs, int64_t cs, int64_t sb0, std::mt19937 &rng,
                  int64_t padA = 0) {
  // A's products `padA` floats apart: outer loops that cannot be folded
  // into M (the batch path).
  int64_t sa0 = m * k + padA;
  std::vector<float> a = random(size_t(o0 * sa0), rng);
  std::vector<float> c = random(size_t(o0 * m * n), rng);
  std::vector<float> expected = c;
  std::vector<double> bound(c.size());
  for (int64_t i = 0; i < o0; ++i)
    for (int64_t r = 0; r < m; ++r)
      for (int64_t col = 0; col < n; ++col) {
        double sum = c[(i * m + r) * n + col], mag = 0;
        for (int64_t p = 0; p < k; ++p) {
          double t =
              double(a[i * sa0 + r * k + p]) * b[i * sb0 + p * rs + col * cs];
          sum += t;
          mag += std::fabs(t);
        }
        expected[(i * m + r) * n + col] = float(sum);
        bound[(i * m + r) * n + col] = 4e-7 * (mag + 1) + 1e-6;
      }
  qopt_kernel_sgemm(o0, 1, m, n, k, int64_t(a.data()), 0, sa0, 0, k, 1,
                    int64_t(b), 0, sb0, 0, rs, cs, int64_t(c.data()), 0, m * n,
                    0, n, 1);
  for (size_t e = 0; e < c.size(); ++e)
    ASSERT_NEAR(c[e], expected[e], bound[e])
        << "o0=" << o0 << " m=" << m << " n=" << n << " k=" << k << " element "
        << e;
}

class PackedGemm : public ::testing::TestWithParam<int> {
protected:
  void SetUp() override { qopt_kernel_set_num_threads(GetParam()); }
};

TEST_P(PackedGemm, ConstantWeightsAllShapes) {
  std::mt19937 rng(7);
  for (int64_t k : {1, 7, 256, 257, 600})
    for (int64_t n : {1, 5, 16, 17, 31, 32, 33, 100})
      for (bool transposed : {false, true}) {
        // The weight: k x n, row-major or stored n x k (a tied head).
        std::vector<float> w = random(size_t(k * n), rng);
        int64_t rs = transposed ? 1 : n, cs = transposed ? k : 1;
        int64_t bytes = int64_t(w.size() * sizeof(float));
        qopt_kernel_register_constant(w.data(), bytes);
        int64_t before = qopt_kernel_packed_bytes();
        // One row first: no copy made for it.
        checkProduct(1, 1, n, k, w.data(), rs, cs, 0, rng);
        EXPECT_EQ(qopt_kernel_packed_bytes(), before);
        for (int64_t m : {2, 3, 12, 13, 17, 25, 1}) {
          checkProduct(1, m, n, k, w.data(), rs, cs, 0, rng);
          if (avx512())
            EXPECT_GT(qopt_kernel_packed_bytes(), before)
                << "m=" << m << " n=" << n << " k=" << k;
        }
        qopt_kernel_release_constant(w.data(), bytes);
        EXPECT_EQ(qopt_kernel_packed_bytes(), before);
      }
}

TEST_P(PackedGemm, ReleaseDropsTheCopy) {
  std::mt19937 rng(8);
  int64_t m = 13, n = 45, k = 300;
  std::vector<float> w = random(size_t(k * n), rng);
  int64_t bytes = int64_t(w.size() * sizeof(float));
  qopt_kernel_register_constant(w.data(), bytes);
  checkProduct(1, m, n, k, w.data(), n, 1, 0, rng);
  qopt_kernel_release_constant(w.data(), bytes);
  // New contents at the same address (a model loaded again there).
  std::vector<float> fresh = random(w.size(), rng);
  std::memcpy(w.data(), fresh.data(), size_t(bytes));
  qopt_kernel_register_constant(w.data(), bytes);
  checkProduct(1, m, n, k, w.data(), n, 1, 0, rng);
  qopt_kernel_release_constant(w.data(), bytes);
  EXPECT_EQ(qopt_kernel_packed_bytes(), 0);
}

TEST_P(PackedGemm, NotConstantPackedPerCall) {
  std::mt19937 rng(9);
  // m = 1: B read in place (rows scaled and summed, or one dot product per
  // column), columns across the 64- and 128-column chunks.
  for (int64_t m : {1, 2, 12, 30})
    for (int64_t n : {3, 32, 70, 300})
      for (int64_t k : {5, 64, 513}) {
        std::vector<float> b = random(size_t(k * n), rng);
        checkProduct(1, m, n, k, b.data(), n, 1, 0, rng);
        checkProduct(1, m, n, k, b.data(), 1, k, 0, rng);
      }
  EXPECT_EQ(qopt_kernel_packed_bytes(), 0);
  // Larger than the per-call buffer: BLAS.
  std::vector<float> big = random(size_t(2048) * 2100, rng);
  checkProduct(1, 3, 2100, 2048, big.data(), 2100, 1, 0, rng);
}

TEST_P(PackedGemm, BatchOfProductsAmongThreads) {
  std::mt19937 rng(10);
  // Attention's shape: one product per head, B moving with the head.
  int64_t o0 = 6, m = 13, n = 33, k = 70;
  std::vector<float> b = random(size_t(o0 * k * n), rng);
  checkProduct(o0, m, n, k, b.data(), n, 1, k * n, rng);
  checkProduct(o0, m, n, k, b.data(), 1, k, k * n, rng);
  // One B for every product (broadcast) with A's products apart, so that
  // they are not folded into one: each task packs its own copy.
  checkProduct(o0, m, n, k, b.data(), n, 1, 0, rng, /*padA=*/16);
  // Fewer products than threads: one after the other, each on all.
  checkProduct(1, m, n, k, b.data(), n, 1, 0, rng, /*padA=*/16);
}

TEST_P(PackedGemm, ManyRowsFewColumns) {
  // Tasks of rows as well as columns (fewer panels than 4 per thread).
  std::mt19937 rng(12);
  for (int64_t m : {100, 250})
    for (int64_t n : {20, 64}) {
      std::vector<float> b = random(size_t(300 * n), rng);
      checkProduct(1, m, n, 300, b.data(), n, 1, 0, rng);
    }
}

TEST_P(PackedGemm, PackedCopiesBounded) {
  // Slices of one weight at many shapes (sizes that vary from run to run):
  // the copies stop at twice the registered bytes, the results stay right.
  std::mt19937 rng(13);
  int64_t k = 64, n = 64;
  std::vector<float> w = random(size_t(k * n), rng);
  int64_t bytes = int64_t(w.size() * sizeof(float));
  qopt_kernel_register_constant(w.data(), bytes);
  for (int64_t cols = n; cols > n - 8; --cols)
    checkProduct(1, 5, cols, k, w.data(), n, 1, 0, rng);
  EXPECT_LE(qopt_kernel_packed_bytes(), 2 * bytes);
  if (avx512())
    EXPECT_GT(qopt_kernel_packed_bytes(), 0);
  qopt_kernel_release_constant(w.data(), bytes);
  EXPECT_EQ(qopt_kernel_packed_bytes(), 0);
}

TEST_P(PackedGemm, SameResultsOnBLAS) {
  // The AVX-512 path and BLAS agree (to rounding) on a registered weight.
  if (!avx512())
    GTEST_SKIP() << "this CPU has no AVX-512: products take BLAS only";
  std::mt19937 rng(11);
  int64_t m = 25, n = 77, k = 530;
  std::vector<float> w = random(size_t(k * n), rng);
  std::vector<float> a = random(size_t(m * k), rng);
  int64_t bytes = int64_t(w.size() * sizeof(float));
  qopt_kernel_register_constant(w.data(), bytes);
  std::string best = qopt_kernel_cpu_path();
  std::vector<float> out[2];
  for (int pass = 0; pass < 2; ++pass) {
    ASSERT_TRUE(qopt_kernel_set_cpu_path(pass == 0 ? best.c_str() : "avx2"));
    out[pass].assign(size_t(m * n), 0.0f);
    qopt_kernel_sgemm(1, 1, m, n, k, int64_t(a.data()), 0, 0, 0, k, 1,
                      int64_t(w.data()), 0, 0, 0, n, 1,
                      int64_t(out[pass].data()), 0, 0, 0, n, 1);
  }
  ASSERT_TRUE(qopt_kernel_set_cpu_path(best.c_str()));
  qopt_kernel_release_constant(w.data(), bytes);
  for (size_t e = 0; e < out[0].size(); ++e)
    ASSERT_NEAR(out[0][e], out[1][e], 2e-5f * (1 + std::fabs(out[1][e])));
}

INSTANTIATE_TEST_SUITE_P(Threads, PackedGemm, ::testing::Values(1, 2));

} // namespace
