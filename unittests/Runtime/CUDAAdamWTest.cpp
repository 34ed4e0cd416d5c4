//===- CUDAAdamWTest.cpp - the CUDA multi-tensor AdamW on the CPU ---------===//
//
// AdamW.cu's kernel through its CPU emulation (qopt_cuda_adamw_emulated,
// which qoptc --cuda-emulate train steps call: every launch's blocks and
// threads in turn) against torch.optim.AdamW's update in double, and bit
// for bit against OptimizerBuilder's formula in f32 in its order (what the
// CPU target's loop nest computes); tensors of 0 to 10,000 elements, more
// tensors than a launch carries, outputs in place or apart, with and
// without weight decay and clipping.
//
//===----------------------------------------------------------------------===//

#include "../../lib/Runtime/Kernels/CUDA/AdamWTile.h"
#include "FusedQuantCheck.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <random>
#include <vector>

extern "C" void qopt_cuda_adamw_emulated(QOPT_ADAMW_PARAMS);

namespace {

struct Tensor {
  std::vector<float> p, g, m, v, pOut, mOut, vOut;
  bool inPlace = false;
};

TEST(CUDAAdamW, EqualsTheOptimizersFormula) {
  const double lr = 1e-2, beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
  std::mt19937 rng(11);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (int flags = 0; flags < 4; ++flags)
    for (int64_t step : {1, 7}) {
      SCOPED_TRACE(testing::Message() << "flags=" << flags << " step=" << step);
      // Sizes around a block's chunk, an empty tensor, and (the second
      // step) more tensors than one launch carries.
      std::vector<int64_t> sizes = {
          1, 0, 255, qopt_cuda::kAdamWChunk, qopt_cuda::kAdamWChunk + 1, 10000};
      if (step == 7)
        for (int i = 0; i < qopt_cuda::kAdamWTensors + 40; ++i)
          sizes.push_back(1 + i % 5);
      std::vector<Tensor> tensors(sizes.size());
      for (size_t i = 0; i < sizes.size(); ++i) {
        Tensor &t = tensors[i];
        size_t n = size_t(sizes[i]);
        for (auto *x : {&t.p, &t.g, &t.m})
          for (size_t e = 0; e < n; ++e)
            x->push_back(normal(rng));
        for (size_t e = 0; e < n; ++e)
          t.v.push_back(std::fabs(normal(rng)) * 0.01f);
        t.inPlace = i % 2;
        for (auto *x : {&t.pOut, &t.mOut, &t.vOut})
          x->assign(n, std::numeric_limits<float>::quiet_NaN());
      }
      // The step's scalars as OptimizerBuilder computes them (f64, then
      // f32) and its body's constants.
      double bc1 = 1 - std::pow(beta1, double(step)),
             bc2 = 1 - std::pow(beta2, double(step));
      float stepSize = float(lr / bc1), bc2Sqrt = float(std::sqrt(bc2)),
            decay = float(1 - lr * 0.01), clip = 0.37f;
      float c1 = float(1 - beta1), b2 = float(beta2), c2 = float(1 - beta2),
            e32 = float(eps);
      // The f32 formula in OptimizerBuilder's order, before the call
      // overwrites the in-place tensors.
      std::vector<std::vector<float>> want(tensors.size() * 3);
      for (size_t i = 0; i < tensors.size(); ++i) {
        const Tensor &t = tensors[i];
        for (size_t e = 0; e < t.p.size(); ++e) {
          float p = t.p[e], g = t.g[e], m = t.m[e], v = t.v[e];
          if (flags & 2)
            g = g * clip;
          if (flags & 1)
            p = p * decay;
          float mNew = m + c1 * (g - m);
          float vNew = v * b2 + (g * g) * c2;
          float denom = std::sqrt(vNew) / bc2Sqrt + e32;
          want[3 * i].push_back(p - stepSize * (mNew / denom));
          want[3 * i + 1].push_back(mNew);
          want[3 * i + 2].push_back(vNew);
          // torch.optim.AdamW's update in double.
          double gd = double(t.g[e]) * ((flags & 2) ? double(clip) : 1.0);
          double pd = double(t.p[e]) * ((flags & 1) ? 1 - lr * 0.01 : 1.0);
          double md = beta1 * t.m[e] + (1 - beta1) * gd;
          double vd = beta2 * t.v[e] + (1 - beta2) * gd * gd;
          double pNew =
              pd - lr / bc1 * md / (std::sqrt(vd) / std::sqrt(bc2) + eps);
          ASSERT_NEAR(want[3 * i].back(), pNew, 1e-6 * (1 + std::fabs(pNew)))
              << "the f32 formula itself, tensor " << i << " element " << e;
        }
      }
      std::vector<int64_t> table;
      for (Tensor &t : tensors) {
        float *pOut = t.inPlace ? t.p.data() : t.pOut.data();
        float *mOut = t.inPlace ? t.m.data() : t.mOut.data();
        float *vOut = t.inPlace ? t.v.data() : t.vOut.data();
        const float *buffers[] = {
            t.p.data(), t.g.data(), t.m.data(), t.v.data(), pOut, mOut, vOut};
        for (const float *x : buffers)
          table.push_back(addressOf(x));
        table.push_back(int64_t(t.p.size()));
      }
      int64_t count = int64_t(tensors.size());
      // (The step's scalars at an offset in their buffer.)
      float scalars[5] = {NAN, stepSize, bc2Sqrt, decay, clip};
      qopt_cuda_adamw_emulated(count, flags, nullptr, scalars, 1, 4, 1, c1, b2,
                               c2, e32, nullptr, table.data(), 0, count, 8, 8,
                               1);
      for (size_t i = 0; i < tensors.size(); ++i) {
        const Tensor &t = tensors[i];
        const std::vector<float> *got[] = {t.inPlace ? &t.p : &t.pOut,
                                           t.inPlace ? &t.m : &t.mOut,
                                           t.inPlace ? &t.v : &t.vOut};
        for (int k = 0; k < 3; ++k)
          for (size_t e = 0; e < t.p.size(); ++e)
            ASSERT_EQ((*got[k])[e], want[3 * i + k][e])
                << "output " << k << " of tensor " << i << " element " << e;
      }
    }
}

/// What the planner takes: the table's shape, sizes; tensors past one
/// launch go to the next; empty tensors launch nothing.
TEST(CUDAAdamW, PlansLaunches) {
  using namespace qopt_cuda;
  std::vector<int64_t> table;
  float x = 0.0f;
  int64_t n = kAdamWTensors + 3;
  for (int64_t i = 0; i < n; ++i) {
    for (int k = 0; k < 7; ++k)
      table.push_back(addressOf(&x));
    table.push_back(i == 0 ? 0 : (i == 1 ? kAdamWChunk + 1 : 1));
  }
  auto a = std::make_unique<AdamWParams>();
  const char *why = nullptr;
  int64_t first = 0;
  MemrefView<2> view{table.data(), 0, {n, 8}, {8, 1}};
  float scalars[4] = {1, 1, 1, 1};
  MemrefView<1> step{scalars, 0, {4}, {1}};
  int64_t blocks =
      planAdamW(n, 0, step, 0.1f, 0.9f, 0.1f, 1e-8f, view, first, *a, why);
  EXPECT_EQ(why, nullptr);
  EXPECT_EQ(static_cast<const void *>(a->step), scalars);
  // The empty tensor skipped; the second takes two blocks.
  EXPECT_EQ(a->count, kAdamWTensors);
  EXPECT_EQ(first, kAdamWTensors + 1);
  EXPECT_EQ(blocks, kAdamWTensors + 1);
  EXPECT_EQ(a->t[1].firstBlock, 2);
  EXPECT_EQ(adamwTensorOf(*a, 0), 0);
  EXPECT_EQ(adamwTensorOf(*a, 1), 0);
  EXPECT_EQ(adamwTensorOf(*a, 2), 1);
  EXPECT_EQ(adamwTensorOf(*a, blocks - 1), kAdamWTensors - 1);
  blocks = planAdamW(n, 0, step, 0.1f, 0.9f, 0.1f, 1e-8f, view, first, *a, why);
  EXPECT_EQ(blocks, 2);
  EXPECT_EQ(first, n);
  MemrefView<2> narrow{table.data(), 0, {n, 7}, {8, 1}};
  first = 0;
  planAdamW(n, 0, step, 0.1f, 0.9f, 0.1f, 1e-8f, narrow, first, *a, why);
  EXPECT_STREQ(why, "a table that is not [count, 8]");
  table[7] = -1;
  first = 0;
  planAdamW(n, 0, step, 0.1f, 0.9f, 0.1f, 1e-8f, view, first, *a, why);
  EXPECT_STREQ(why, "a tensor of a negative size");
  table[7] = 0;
  first = 0;
  MemrefView<1> short_{scalars, 0, {3}, {1}}, strided{scalars, 0, {4}, {2}};
  for (const MemrefView<1> &bad : {short_, strided}) {
    planAdamW(n, 0, bad, 0.1f, 0.9f, 0.1f, 1e-8f, view, first, *a, why);
    EXPECT_STREQ(why, "step scalars that are not 4 contiguous floats");
  }
}

} // namespace
