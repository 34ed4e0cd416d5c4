//===- CPUKernels.h - shared pieces of the CPU kernel library ---*- C++ -*-===//
//
// Internal to lib/Runtime/Kernels/CPU: the thread pool that the library's
// own kernels (quantized products, products with packed weights) share,
// and the CPU path chosen at load. No MLIR, no LLVM.
//
//===----------------------------------------------------------------------===//

#ifndef QOPT_RUNTIME_KERNELS_CPU_CPUKERNELS_H
#define QOPT_RUNTIME_KERNELS_CPU_CPUKERNELS_H

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include <immintrin.h>
#include <pthread.h>

extern "C" int openblas_get_num_threads(void);

namespace qopt_cpu {

/// True when the chosen path (CPU features, capped by QOPT_CPU_KERNELS or
/// qopt_kernel_set_cpu_path) includes AVX-512 (F, BW, VL).
bool hasAVX512();

/// PackedGemm.cpp: C += A·B with the AVX-512 kernels (B packed once if it
/// is a registered constant); false, nothing done, when left to BLAS. A
/// and C have unit column stride. `parallel`: split the work among the
/// pool's threads (false inside a pool task).
bool product(const float *a, int64_t lda, const float *b, int64_t rs,
             int64_t cs, float *c, int64_t ldc, int64_t m, int64_t n, int64_t k,
             bool parallel);
/// PackedGemm.cpp's layout of B: panels of kPanelCols columns (K rows of
/// kPanelCols floats), read in blocks of kPanelDepth rows of K (32 KB) by
/// tiles of kPanelRows rows of A.
constexpr int64_t kPanelCols = 32, kPanelDepth = 256;
constexpr int kPanelRows = 12;

/// Panels per task of a product over `panels` panels: enough tasks for four
/// per thread, at most kMaxPanelsPerTask (512 columns) each.
constexpr int64_t kMaxPanelsPerTask = 16;
inline int64_t panelsPerTask(int64_t panels, int64_t threads) {
  return std::max<int64_t>(
      1,
      std::min(kMaxPanelsPerTask, (panels + 4 * threads - 1) / (4 * threads)));
}

/// PackedGemm.cpp's tile, for kernels that pack B themselves (QGemm.cpp):
/// C[rows x cols] += A[rows x kc] · a block of a panel (kc x kPanelCols
/// floats, 64-byte aligned). rows in 1 .. kPanelRows, cols in 1 ..
/// kPanelCols. AVX-512.
void panelTile(const float *a, int64_t lda, const float *block, int64_t kc,
               float *c, int64_t ldc, int rows, int64_t cols);
/// Whether product() takes every product of this shape and B's strides.
bool takesEveryProduct(int64_t m, int64_t n, int64_t k, int64_t rs, int64_t cs);

/// The threads of the library's products and of the generated loop nests
/// (qopt_kernel_parallel_for, memrefCopy). Workers wait on a generation
/// counter (spinning briefly, then sleeping); the caller runs the first
/// share itself and waits for the rest. One pool per copy of the kernel
/// library (each model links its own), sized by
/// qopt_kernel_set_num_threads. Its workers are stopped and joined if the
/// library is unloaded (the runtime dlcloses models), before their code
/// goes away; glibc keeps a library whose thread_local buffers have
/// destructors loaded while threads live, so a process keeps one pool per
/// model file it loaded. A forked child gets a fresh pool (its parent's
/// workers do not exist there).
class Pool {
public:
  static Pool &get() {
    Pool *pool = instance.load(std::memory_order_acquire);
    return pool ? *pool : *create();
  }
  /// Stops and joins the workers (at unload; the pool is not used again).
  static void shutdown() {
    Pool *pool = instance.load();
    if (!pool)
      return;
    {
      std::lock_guard<std::mutex> l(pool->m);
      pool->stopping.store(true);
      pool->state.store(next(pool->state.load(), 0));
    }
    pool->cv.notify_all();
    for (std::thread &t : pool->workers)
      t.join();
  }
  void setThreads(int n) { wanted.store(std::max(1, n)); }
  int threads() {
    int n = wanted.load();
    n = n > 0 ? n : std::max(1, openblas_get_num_threads());
    return std::min(n, 0xFFFF);
  }
  /// Calls fn(i) for i in [0, tasks), on up to threads() threads; on the
  /// calling thread alone when called from inside a job (a generated
  /// loop's body that calls a kernel).
  void run(int tasks, const std::function<void(int)> &fn) {
    int t = std::min(tasks, threads());
    if (t <= 1 || inJob) {
      for (int i = 0; i < tasks; ++i)
        fn(i);
      return;
    }
    std::lock_guard<std::mutex> once(runMutex); // one product at a time
    ensureWorkers(t - 1);
    job = &fn;
    jobTasks = tasks;
    nextTask.store(0);
    pending.store(t - 1);
    {
      std::lock_guard<std::mutex> l(m);
      state.store(next(state.load(), t - 1));
    }
    cv.notify_all();
    work();
    while (pending.load(std::memory_order_acquire) != 0)
      _mm_pause();
  }

  /// fn(begin, end) over [0, n) in contiguous ranges: up to four per
  /// thread, taken as threads come free (one that joins late does not hold
  /// the others up), each worth at least `grain` of `work` (the cost of all
  /// n), or waking the threads would cost more than it saves. One call with
  /// [0, n) on the calling thread where that leaves a single range, on one
  /// thread, or inside a job. Returns whether the threads split it.
  bool runRanges(int64_t n, int64_t work, int64_t grain,
                 const std::function<void(int64_t, int64_t)> &fn) {
    int t = threads();
    int64_t tasks = std::min<int64_t>({n, 4 * int64_t(t), work / grain});
    if (t <= 1 || tasks <= 1 || inJob) {
      if (n > 0)
        fn(0, n);
      return false;
    }
    int64_t share = n / tasks, extra = n % tasks;
    run(int(tasks), [&](int i) {
      int64_t begin = i * share + std::min<int64_t>(i, extra);
      fn(begin, begin + share + (i < extra ? 1 : 0));
    });
    return true;
  }

private:
  static Pool *create() {
    static std::once_flag once;
    std::call_once(once, [] {
      instance.store(new Pool());
      // Unregistered by glibc if the library is unloaded.
      pthread_atfork(nullptr, nullptr, afterFork);
    });
    return instance.load();
  }
  /// In a forked child only the forking thread exists: the workers, and a
  /// job or lock they held, are gone. The child starts a pool of its own
  /// when it next needs one; the old one is left alone (its threads can be
  /// neither joined nor destroyed).
  static void afterFork() { instance.store(new Pool()); }
  void ensureWorkers(int n) {
    while (int(workers.size()) < n) {
      // The worker starts from the generation before the job it joins.
      int id = int(workers.size());
      uint64_t start = generationOf(state.load());
      workers.emplace_back([this, id, start] { loop(id, start); });
    }
  }
  void work() {
    inJob = true;
    for (int i; (i = nextTask.fetch_add(1)) < jobTasks;)
      (*job)(i);
    inJob = false;
  }
  void loop(int id, uint64_t seen) {
    for (;;) {
      // Spin a little (decode calls come back to back), then sleep.
      for (int spin = 0; spin < 20000 && generationOf(state.load()) == seen;
           ++spin)
        _mm_pause();
      if (generationOf(state.load()) == seen) {
        std::unique_lock<std::mutex> l(m);
        cv.wait(l, [&] { return generationOf(state.load()) != seen; });
      }
      uint64_t now = state.load();
      seen = generationOf(now);
      if (stopping.load())
        return;
      if (id < activeOf(now)) {
        work();
        pending.fetch_sub(1, std::memory_order_release);
      }
    }
  }
  static inline std::atomic<Pool *> instance{nullptr};
  static inline thread_local bool inJob = false;
  std::atomic<bool> stopping{false};
  std::atomic<int> wanted{0};
  std::mutex runMutex, m;
  std::condition_variable cv;
  /// The job's generation (high bits) and the number of workers that join
  /// it (low 16 bits), read as one value: a worker that read them apart
  /// could join a job with the generation of an earlier one, then join it
  /// again and count itself out twice.
  std::atomic<uint64_t> state{0};
  static uint64_t generationOf(uint64_t s) { return s >> 16; }
  static int activeOf(uint64_t s) { return int(s & 0xFFFF); }
  static uint64_t next(uint64_t s, int active) {
    return ((generationOf(s) + 1) << 16) | uint64_t(active);
  }
  std::atomic<int> nextTask{0}, pending{0};
  int jobTasks = 0;
  const std::function<void(int)> *job = nullptr;
  std::vector<std::thread> workers;
};

} // namespace qopt_cpu

#endif // QOPT_RUNTIME_KERNELS_CPU_CPUKERNELS_H
