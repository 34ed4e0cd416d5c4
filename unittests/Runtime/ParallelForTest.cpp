//===- ParallelForTest.cpp - generated loops on the kernel pool -----------===//
//
// qopt_kernel_parallel_for, which runs the loop nests qopt-parallel-to-pool
// outlines: every iteration runs exactly once for counts that do not divide
// evenly, small work stays on the calling thread, a loop inside a pool task
// (a body that calls a kernel or another loop) runs there instead of
// waiting for the busy pool, and memrefCopy's split copies match.
//
//===----------------------------------------------------------------------===//

#include "gtest/gtest.h"

#include <atomic>
#include <chrono>
#include <cstdint>
#include <thread>
#include <vector>

#include <sys/wait.h>
#include <unistd.h>

extern "C" {
void qopt_kernel_parallel_for(void (*)(void *, int64_t, int64_t), void *,
                              int64_t, int64_t);
void qopt_kernel_loop_counts(int64_t *, int64_t *);
void qopt_kernel_set_num_threads(int);
struct UnrankedDescriptor {
  int64_t rank;
  void *descriptor;
};
void memrefCopy(int64_t, UnrankedDescriptor *, UnrankedDescriptor *);
}

namespace {

struct Visits {
  std::vector<std::atomic<int>> count;
  std::atomic<int> ranges{0};
  std::vector<std::thread::id> threadOf;
  explicit Visits(int64_t n) : count(n), threadOf(n) {}
};

void visit(void *ctx, int64_t begin, int64_t end) {
  auto *v = static_cast<Visits *>(ctx);
  v->ranges.fetch_add(1);
  for (int64_t i = begin; i < end; ++i) {
    v->count[i].fetch_add(1);
    v->threadOf[i] = std::this_thread::get_id();
  }
}

struct Counts {
  int64_t pooled, onCaller;
};
Counts counts() {
  Counts c;
  qopt_kernel_loop_counts(&c.pooled, &c.onCaller);
  return c;
}

TEST(ParallelFor, EveryIterationOnce) {
  qopt_kernel_set_num_threads(2);
  for (int64_t n : {1, 2, 3, 7, 8, 9, 97, 1000}) {
    Visits v(n);
    Counts before = counts();
    qopt_kernel_parallel_for(visit, &v, n, /*work=*/n * 100000);
    for (int64_t i = 0; i < n; ++i)
      ASSERT_EQ(v.count[i].load(), 1) << "n=" << n << " i=" << i;
    Counts after = counts();
    // One range per task: up to four per thread, never more than n.
    EXPECT_LE(v.ranges.load(), std::min<int64_t>(n, 8)) << n;
    EXPECT_EQ(after.pooled - before.pooled, n > 1 ? 1 : 0) << n;
  }
}

TEST(ParallelFor, SmallWorkAndOneThreadStayOnTheCaller) {
  qopt_kernel_set_num_threads(2);
  Visits v(64);
  Counts before = counts();
  qopt_kernel_parallel_for(visit, &v, 64, /*work=*/64 * 8);
  EXPECT_EQ(v.ranges.load(), 1);
  for (auto id : v.threadOf)
    EXPECT_EQ(id, std::this_thread::get_id());
  qopt_kernel_set_num_threads(1);
  Visits w(64);
  qopt_kernel_parallel_for(visit, &w, 64, /*work=*/64 * 100000);
  EXPECT_EQ(w.ranges.load(), 1);
  Counts after = counts();
  EXPECT_EQ(after.onCaller - before.onCaller, 2);
  EXPECT_EQ(after.pooled, before.pooled);
  // Nothing to do: no call of the body.
  Visits none(1);
  qopt_kernel_parallel_for(visit, &none, 0, 0);
  qopt_kernel_parallel_for(visit, &none, -3, 0);
  EXPECT_EQ(none.ranges.load(), 0);
}

// A body that runs a loop of its own: the inner loop runs on the thread of
// the outer task (the pool is busy with the outer loop) and completes.
struct Nested {
  std::vector<std::atomic<int>> count;
  explicit Nested(int64_t n) : count(n * 50) {}
};
struct Inner {
  Nested *nested;
  int64_t row;
};
void innerBody(void *ctx, int64_t begin, int64_t end) {
  auto *in = static_cast<Inner *>(ctx);
  for (int64_t j = begin; j < end; ++j)
    in->nested->count[in->row * 50 + j].fetch_add(1);
}
void outerBody(void *ctx, int64_t begin, int64_t end) {
  for (int64_t i = begin; i < end; ++i) {
    Inner in{static_cast<Nested *>(ctx), i};
    qopt_kernel_parallel_for(innerBody, &in, 50, /*work=*/50 * 100000);
  }
}

TEST(ParallelFor, NestedLoopsRunInsideTheirTask) {
  qopt_kernel_set_num_threads(2);
  Nested nested(37);
  qopt_kernel_parallel_for(outerBody, &nested, 37, /*work=*/37 * 100000);
  for (auto &c : nested.count)
    ASSERT_EQ(c.load(), 1);
}

// A [rows, 3, width] view copied into a transposed destination layout, the
// innermost dimension strided on one side (the generic path) and
// contiguous on both (memcpy), large enough to split among the threads.
TEST(ParallelFor, StridedCopy) {
  qopt_kernel_set_num_threads(2);
  for (int64_t width : {1, 5, 4096}) {
    const int64_t a = 37, b = 3;
    std::vector<float> src(a * b * width), dst(a * b * width, -1.0f);
    for (size_t i = 0; i < src.size(); ++i)
      src[i] = float(i);
    for (bool transposed : {false, true}) {
      // Descriptors: allocated, aligned, offset, sizes[3], strides[3].
      struct {
        float *alloc, *aligned;
        int64_t offset, sizes[3], strides[3];
      } s{src.data(), src.data(), 0, {a, b, width}, {b * width, width, 1}},
          d{dst.data(), dst.data(), 0, {a, b, width}, {width, a * width, 1}};
      if (transposed) { // innermost stride a*b on the destination
        d.strides[0] = 1;
        d.strides[1] = a;
        d.strides[2] = a * b;
      }
      UnrankedDescriptor us{3, &s}, ud{3, &d};
      memrefCopy(sizeof(float), &us, &ud);
      for (int64_t i = 0; i < a; ++i)
        for (int64_t j = 0; j < b; ++j)
          for (int64_t k = 0; k < width; ++k)
            ASSERT_EQ(
                dst[i * d.strides[0] + j * d.strides[1] + k * d.strides[2]],
                src[(i * b + j) * width + k])
                << width << " " << transposed;
    }
  }
}

// Rank 1 with a negative stride (a reversed view), 8-byte elements, a
// size-0 dimension (nothing written) and rank 0 (one element).
TEST(ParallelFor, CopyEdgeCases) {
  std::vector<double> src(1000), dst(1000, -1.0);
  for (size_t i = 0; i < src.size(); ++i)
    src[i] = double(i);
  struct Rank1 {
    double *alloc, *aligned;
    int64_t offset, sizes[1], strides[1];
  } s{src.data(), src.data(), 999, {1000}, {-1}},
      d{dst.data(), dst.data(), 0, {1000}, {1}};
  UnrankedDescriptor us{1, &s}, ud{1, &d};
  memrefCopy(sizeof(double), &us, &ud);
  for (int64_t i = 0; i < 1000; ++i)
    ASSERT_EQ(dst[i], double(999 - i));
  std::fill(dst.begin(), dst.end(), -1.0);
  s.sizes[0] = d.sizes[0] = 0;
  memrefCopy(sizeof(double), &us, &ud);
  EXPECT_EQ(dst[0], -1.0);
  struct Rank0 {
    double *alloc, *aligned;
    int64_t offset;
  } s0{src.data(), src.data(), 7}, d0{dst.data(), dst.data(), 3};
  UnrankedDescriptor us0{0, &s0}, ud0{0, &d0};
  memrefCopy(sizeof(double), &us0, &ud0);
  EXPECT_EQ(dst[3], 7.0);
  EXPECT_EQ(dst[2], -1.0);
}

// Each range waits (up to 5 s) until a second range has started: two run
// at once only if a second thread takes one.
std::atomic<int> started{0};
void rendezvous(void *ctx, int64_t begin, int64_t end) {
  started.fetch_add(1);
  auto until = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (started.load() < 2 && std::chrono::steady_clock::now() < until)
    std::this_thread::yield();
  visit(ctx, begin, end);
}

// The parent's workers do not exist in a forked child: the child's loops
// must still run on two threads, and finish.
TEST(ParallelFor, ForkedChildRuns) {
  qopt_kernel_set_num_threads(2);
  Visits warm(97);
  qopt_kernel_parallel_for(visit, &warm, 97, 97 * 100000); // workers started
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    alarm(20); // a hang fails the test instead of stalling it
    Visits v(1000);
    Counts before = counts();
    qopt_kernel_parallel_for(rendezvous, &v, 1000, 1000 * 100000);
    bool ok = counts().pooled == before.pooled + 1;
    std::thread::id caller = std::this_thread::get_id();
    bool other = false;
    for (int64_t i = 0; i < 1000; ++i) {
      ok &= v.count[i].load() == 1;
      other |= v.threadOf[i] != caller;
    }
    _exit(ok && other ? 0 : 1);
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status)) << "the child hung or crashed";
  EXPECT_EQ(WEXITSTATUS(status), 0);
}

} // namespace
