//===- CUDAPoolTest.cpp - The CUDA host library's memory pool -------------===//
//
// Random allocation and release sequences against a byte-map reference: no
// two live ranges overlap, every range is aligned and inside the region,
// accounting is exact, and freeing everything merges the region back into
// one range.
//
//===----------------------------------------------------------------------===//

#include "../../lib/Runtime/CUDAHost/Pool.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <vector>

using qopt::cuda::Pool;

namespace {

TEST(CUDAPool, AlignsAnUnalignedRegion) {
  std::vector<char> memory(10000);
  Pool pool;
  pool.reset(memory.data() + 3, 9000);
  // (The bytes before the first 256-byte boundary are lost, then whole
  // 256-byte units remain; where that boundary is depends on the address
  // the vector got.)
  uintptr_t start = reinterpret_cast<uintptr_t>(memory.data() + 3);
  size_t skip = (256 - start % 256) % 256;
  EXPECT_EQ(pool.capacity() % 256, 0u);
  EXPECT_EQ(pool.capacity(), (9000 - skip) / 256 * 256);
  void *p = pool.allocate(1);
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % 256, 0u);
  EXPECT_GE(static_cast<char *>(p), memory.data() + 3);
  EXPECT_EQ(pool.available(), pool.capacity() - 256);
}

TEST(CUDAPool, RefusesWhatDoesNotFit) {
  alignas(256) static char memory[4096];
  Pool pool;
  pool.reset(memory, sizeof(memory));
  EXPECT_EQ(pool.allocate(4097), nullptr);
  EXPECT_EQ(pool.allocate(SIZE_MAX), nullptr); // no overflow in rounding
  EXPECT_EQ(pool.allocate(SIZE_MAX - 10), nullptr);
  void *a = pool.allocate(4096);
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(pool.allocate(1), nullptr);
  EXPECT_EQ(pool.available(), 0u);
  pool.release(a);
  EXPECT_EQ(pool.largestFree(), 4096u);
}

// The peak a run reaches beyond what was in use when it started (what a
// CUDA graph's arena is sized by).
TEST(CUDAPool, RecordsThePeakSinceAReset) {
  alignas(256) static char memory[8192];
  Pool pool;
  pool.reset(memory, sizeof(memory));
  void *kept = pool.allocate(1000); // 1024 bytes, in use before the run
  ASSERT_NE(kept, nullptr);
  pool.resetPeak();
  EXPECT_EQ(pool.peakSinceReset(), 0u);
  void *a = pool.allocate(256);
  void *b = pool.allocate(600); // 768
  ASSERT_TRUE(a && b);
  pool.release(a);
  void *c = pool.allocate(100); // 256 again: the peak stays 1024
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(pool.peakSinceReset(), 1024u);
  pool.release(b);
  pool.release(c);
  EXPECT_EQ(pool.peakSinceReset(), 1024u);
  pool.resetPeak();
  EXPECT_EQ(pool.peakSinceReset(), 0u);
  pool.release(kept);
  void *d = pool.allocate(2048);
  ASSERT_NE(d, nullptr);
  // (Below the level at the reset, then 1024 above it.)
  EXPECT_EQ(pool.peakSinceReset(), 1024u);
}

TEST(CUDAPool, RandomSequencesMatchTheReference) {
  constexpr size_t kSize = 1 << 20;
  std::vector<char> memory(kSize + 256);
  std::mt19937 rng(7);
  for (int trial = 0; trial < 20; ++trial) {
    Pool pool;
    pool.reset(memory.data() + trial, kSize);
    char *base = memory.data();
    std::vector<int> owner(memory.size(), -1); // which live range holds a byte
    struct Live {
      char *p;
      size_t bytes;
    };
    std::vector<Live> live;
    size_t used = 0;
    for (int step = 0; step < 2000; ++step) {
      bool alloc = live.empty() || rng() % 100 < 55;
      if (alloc) {
        size_t bytes = rng() % 3 == 0 ? rng() % 64 : rng() % 40000;
        char *p = static_cast<char *>(pool.allocate(bytes));
        size_t rounded = (std::max<size_t>(bytes, 1) + 255) / 256 * 256;
        if (!p) {
          // Refused only when no free range is large enough.
          EXPECT_LT(pool.largestFree(), rounded) << "trial " << trial;
          continue;
        }
        ASSERT_EQ(reinterpret_cast<uintptr_t>(p) % 256, 0u);
        ASSERT_GE(p, base);
        ASSERT_LE(p + rounded, base + memory.size());
        for (size_t i = 0; i < rounded; ++i)
          ASSERT_EQ(owner[p - base + i], -1) << "overlap at step " << step;
        for (size_t i = 0; i < rounded; ++i)
          owner[p - base + i] = static_cast<int>(step);
        live.push_back({p, rounded});
        used += rounded;
      } else {
        size_t i = rng() % live.size();
        for (size_t b = 0; b < live[i].bytes; ++b)
          owner[live[i].p - base + b] = -1;
        pool.release(live[i].p);
        used -= live[i].bytes;
        live.erase(live.begin() + i);
      }
      ASSERT_EQ(pool.available(), pool.capacity() - used);
    }
    // A pointer the pool never gave out changes nothing.
    pool.release(base + 1);
    ASSERT_EQ(pool.available(), pool.capacity() - used);
    for (Live &l : live)
      pool.release(l.p);
    EXPECT_EQ(pool.available(), pool.capacity());
    EXPECT_EQ(pool.largestFree(), pool.capacity()) << "not merged back";
  }
}

} // namespace
