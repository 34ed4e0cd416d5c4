//===- Kernels.cpp - CPU kernel library that compiled models call ---------===//
//
// Linked into every model qoptc compiles for the CPU (and loaded by
// mlir-runner in tests). It must not depend on MLIR or LLVM: the runtime
// machine may have neither.
//
//===----------------------------------------------------------------------===//

#include <algorithm>
#include <csetjmp>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <type_traits>
#include <unordered_set>
#include <vector>

#include "CPUKernels.h"

extern "C" {
// OpenBLAS's CBLAS entry points (declared here so that no BLAS header is
// needed at build time).
enum { kRowMajor = 101, kNoTrans = 111, kTrans = 112 };
void cblas_sgemm(int order, int transA, int transB, int m, int n, int k,
                 float alpha, const float *a, int lda, const float *b, int ldb,
                 float beta, float *c, int ldc);
void cblas_sgemv(int order, int trans, int m, int n, float alpha,
                 const float *a, int lda, const float *x, int incx, float beta,
                 float *y, int incy);
void openblas_set_num_threads(int);
int openblas_get_num_threads(void);
}

namespace {
std::atomic<int64_t> loopsOnPool{0}, loopsOnCaller{0};

/// A strided matrix view: element (r, c) lies at data[r*rs + c*cs].
struct View {
  float *data;
  int64_t rows, cols, rs, cs;
  View transposed() const { return {data, cols, rows, cs, rs}; }
};

/// How BLAS can read `v` as row-major: trans=false with ld = row stride, or
/// as the transpose of a row-major matrix. False when neither works.
bool blasLayout(const View &v, bool &trans, int64_t &ld) {
  // A dimension of size 1 leaves its stride free; pick one BLAS accepts.
  int64_t rs = v.rows == 1 ? std::max<int64_t>(v.cols, 1) : v.rs;
  int64_t cs = v.cols == 1 ? std::max<int64_t>(v.rows, 1) : v.cs;
  if (cs == 1 && rs >= std::max<int64_t>(v.cols, 1)) {
    trans = false;
    ld = rs;
    return true;
  }
  if (rs == 1 && cs >= std::max<int64_t>(v.rows, 1)) {
    trans = true;
    ld = cs;
    return true;
  }
  return false;
}

/// Copies `v` into `storage` as a dense row-major matrix.
View pack(const View &v, std::vector<float> &storage) {
  storage.resize(static_cast<size_t>(v.rows * v.cols));
  for (int64_t r = 0; r < v.rows; ++r)
    for (int64_t c = 0; c < v.cols; ++c)
      storage[r * v.cols + c] = v.data[r * v.rs + c * v.cs];
  return {storage.data(), v.rows, v.cols, v.cols, 1};
}

bool fitsInt(int64_t v) { return v >= 0 && v <= INT32_MAX; }

/// y += M·x for a matrix M (r x c, strides rs / cs) BLAS can read in
/// place; false when it cannot.
bool gemvOf(const View &mat, const float *x, int64_t incx, float *y,
            int64_t incy) {
  if (incx == 0 || incy == 0 || !fitsInt(incx) || !fitsInt(incy))
    return false;
  int64_t r = mat.rows, c = mat.cols;
  if (mat.cs == 1 && mat.rs >= std::max<int64_t>(c, 1) && fitsInt(mat.rs))
    cblas_sgemv(kRowMajor, kNoTrans, int(r), int(c), 1.0f, mat.data,
                int(mat.rs), x, int(incx), 1.0f, y, int(incy));
  else if (mat.rs == 1 && mat.cs >= std::max<int64_t>(r, 1) && fitsInt(mat.cs))
    cblas_sgemv(kRowMajor, kTrans, int(c), int(r), 1.0f, mat.data, int(mat.cs),
                x, int(incx), 1.0f, y, int(incy));
  else
    return false;
  return true;
}

/// A product with one row or one column of C as a matrix-vector product:
/// BLAS's GEMM packs the whole of the other operand first (a decode step's
/// output head, read once, was copied once more); GEMV streams it.
bool gemv(const View &a, const View &b, const View &c) {
  if (c.rows == 1) // c[0, :] += B^T · a[0, :]
    return gemvOf(b.transposed(), a.data, a.cs, c.data, c.cs);
  if (c.cols == 1) // c[:, 0] += A · b[:, 0]
    return gemvOf(a, b.data, b.rs, c.data, c.rs);
  return false;
}

bool rowMajor(const View &v, int64_t cols) {
  return v.cs == 1 && (v.rows == 1 || v.rs >= cols);
}

/// C += A·B for one matrix of the batch; `parallel`: the product may use
/// the threads (false in a task of a batch split among them).
void gemm(View a, View b, View c, bool parallel = true) {
  int64_t m = c.rows, n = c.cols, k = a.cols;
  if (m == 0 || n == 0 || k == 0)
    return;
  if (!fitsInt(m) || !fitsInt(n) || !fitsInt(k)) {
    // Beyond BLAS's int sizes: plain loops (correct, slow, never hit by
    // real models).
    for (int64_t i = 0; i < m; ++i)
      for (int64_t p = 0; p < k; ++p)
        for (int64_t j = 0; j < n; ++j)
          c.data[i * c.rs + j * c.cs] +=
              a.data[i * a.rs + p * a.cs] * b.data[p * b.rs + j * b.cs];
    return;
  }
  // The library's own AVX-512 product (a weight in the runtime's
  // read-only mapping packed once); BLAS where it declines.
  if (rowMajor(a, k) && rowMajor(c, n) &&
      qopt_cpu::product(a.data, a.rs, b.data, b.rs, b.cs, c.data, c.rs, m, n, k,
                        parallel))
    return;
  if (gemv(a, b, c))
    return;
  // A column-major C is the row-major C^T = B^T·A^T.
  bool cTrans;
  int64_t ldc;
  std::vector<float> cStorage;
  View cOut = c;
  if (!blasLayout(c, cTrans, ldc)) {
    cOut = pack(c, cStorage);
    cTrans = false;
    ldc = cOut.cols;
  }
  if (cTrans) {
    View t = a.transposed();
    a = b.transposed();
    b = t;
    cOut = cOut.transposed();
  }
  bool aTrans, bTrans;
  int64_t lda, ldb;
  std::vector<float> aStorage, bStorage;
  if (!blasLayout(a, aTrans, lda) || !fitsInt(lda)) {
    a = pack(a, aStorage);
    aTrans = false;
    lda = a.cols;
  }
  if (!blasLayout(b, bTrans, ldb) || !fitsInt(ldb)) {
    b = pack(b, bStorage);
    bTrans = false;
    ldb = b.cols;
  }
  cblas_sgemm(kRowMajor, aTrans ? kTrans : kNoTrans, bTrans ? kTrans : kNoTrans,
              static_cast<int>(cOut.rows), static_cast<int>(cOut.cols),
              static_cast<int>(k), 1.0f, a.data, static_cast<int>(lda), b.data,
              static_cast<int>(ldb), 1.0f, cOut.data, static_cast<int>(ldc));
  if (!cStorage.empty()) // unpack
    for (int64_t r = 0; r < c.rows; ++r)
      for (int64_t col = 0; col < c.cols; ++col)
        c.data[r * c.rs + col * c.cs] = cStorage[r * c.cols + col];
}
} // namespace

extern "C" {

/// C += A·B over two outer loops, every operand given as its aligned
/// pointer (an integer, as qopt-linalg-to-blas passes it), element offset
/// and strides along (outer0, outer1, rows, columns). Outer loops that
/// continue the rows of A and C (and do not move B) are folded into M, so
/// a [batch, seq, k] activation times a weight is one call.
void qopt_kernel_sgemm(int64_t o0, int64_t o1, int64_t m, int64_t n, int64_t k,
                       int64_t pa, int64_t oa, int64_t sa0, int64_t sa1,
                       int64_t sam, int64_t sak, int64_t pb, int64_t ob,
                       int64_t sb0, int64_t sb1, int64_t sbk, int64_t sbn,
                       int64_t pc, int64_t oc, int64_t sc0, int64_t sc1,
                       int64_t scm, int64_t scn) {
  float *a = reinterpret_cast<float *>(pa) + oa;
  float *b = reinterpret_cast<float *>(pb) + ob;
  float *c = reinterpret_cast<float *>(pc) + oc;
  auto foldable = [&](int64_t size, int64_t sa, int64_t sb, int64_t sc) {
    return size == 1 || (sb == 0 && sa == m * sam && sc == m * scm);
  };
  if (foldable(o1, sa1, sb1, sc1)) {
    m *= o1;
    o1 = 1;
    if (foldable(o0, sa0, sb0, sc0)) {
      m *= o0;
      o0 = 1;
    }
  }
  // Outer loops that continue K in A and B and do not move C (a weight
  // gradient summed over batch and sequence) are folded into K; others
  // that do not move C accumulate below, one product after the other.
  auto foldableK = [&](int64_t size, int64_t sa, int64_t sb, int64_t sc) {
    return size == 1 || (sc == 0 && sa == k * sak && sb == k * sbk);
  };
  if (o1 > 1 && foldableK(o1, sa1, sb1, sc1)) {
    k *= o1;
    o1 = 1;
    if (o0 > 1 && foldableK(o0, sa0, sb0, sc0)) {
      k *= o0;
      o0 = 1;
    }
  }
  auto one = [&](int64_t i, int64_t j, bool parallel) {
    gemm({a + i * sa0 + j * sa1, m, k, sam, sak},
         {b + i * sb0 + j * sb1, k, n, sbk, sbn},
         {c + i * sc0 + j * sc1, m, n, scm, scn}, parallel);
  };
  // A batch of small products (attention's, one per head) split among the
  // threads, each product on one: where there are at least as many
  // products as threads, their C's do not overlap, and no product goes to
  // BLAS (whose threads must not run inside the pool's).
  View av{a, m, k, sam, sak}, cv{c, m, n, scm, scn};
  int64_t cExtent = (m - 1) * scm + n;
  int64_t c1Extent = (o1 - 1) * std::abs(sc1) + cExtent;
  bool disjoint = (o1 == 1 || std::abs(sc1) >= cExtent) &&
                  (o0 == 1 || std::abs(sc0) >= c1Extent);
  if (o0 * o1 > 1 && o0 * o1 <= INT32_MAX &&
      o0 * o1 >= qopt_cpu::Pool::get().threads() && disjoint &&
      rowMajor(av, k) && rowMajor(cv, n) &&
      qopt_cpu::takesEveryProduct(m, n, k, sbk, sbn)) {
    qopt_cpu::Pool::get().run(
        int(o0 * o1), [&](int t) { one(t / o1, t % o1, /*parallel=*/false); });
    return;
  }
  for (int64_t i = 0; i < o0; ++i)
    for (int64_t j = 0; j < o1; ++j)
      one(i, j, /*parallel=*/true);
}

/// Threads the model may use (the library's own pool, for products and
/// the generated loops, and OpenBLAS's); n <= 0 keeps the defaults (all
/// cores, or OPENBLAS_NUM_THREADS).
void qopt_kernel_set_num_threads(int n) {
  if (n <= 0)
    return;
  openblas_set_num_threads(n);
  qopt_cpu::Pool::get().setThreads(n);
}

/// The loop nests qopt_kernel_parallel_for ran so far, split among the
/// pool's threads or all on the calling thread (qopt-run --verbose).
void qopt_kernel_loop_counts(int64_t *pooled, int64_t *onCaller) {
  *pooled = loopsOnPool.load(std::memory_order_relaxed);
  *onCaller = loopsOnCaller.load(std::memory_order_relaxed);
}

/// A generated loop (qopt-parallel-to-pool): fn(ctx, begin, end) runs its
/// iterations [begin, end). `work` counts the innermost iterations of all
/// n: ranges of fewer than kGrain would not pay for waking the threads, so
/// small loops (a decode step's) stay on the calling thread.
void qopt_kernel_parallel_for(void (*fn)(void *, int64_t, int64_t), void *ctx,
                              int64_t n, int64_t work) {
  constexpr int64_t kGrain = 16384;
  if (n <= 0)
    return;
  bool split = qopt_cpu::Pool::get().runRanges(
      n, work, kGrain,
      [&](int64_t begin, int64_t end) { fn(ctx, begin, end); });
  (split ? loopsOnPool : loopsOnCaller).fetch_add(1, std::memory_order_relaxed);
}

int qopt_kernel_get_num_threads(void) { return openblas_get_num_threads(); }

/// memref.copy between layouts LLVM cannot memcpy (the MLIR C runner
/// utilities' entry point, provided here so models need no MLIR library):
/// attention's head transposes and strided slices. Rows of the innermost
/// dimension are copied as runs (memcpy where both are contiguous), split
/// among the pool's threads when there are many.
struct UnrankedDescriptor {
  int64_t rank;
  void *descriptor;
};
void memrefCopy(int64_t elementSize, UnrankedDescriptor *src,
                UnrankedDescriptor *dst) {
  // Descriptor: allocated, aligned, offset, sizes[rank], strides[rank].
  auto fields = [](UnrankedDescriptor *d, char *&base, const int64_t *&sizes,
                   const int64_t *&strides) {
    char **ptrs = static_cast<char **>(d->descriptor);
    const int64_t *ints = reinterpret_cast<const int64_t *>(ptrs + 2);
    base = ptrs[1];
    sizes = ints + 1;
    strides = ints + 1 + d->rank;
    return ints[0];
  };
  char *srcBase, *dstBase;
  const int64_t *sizes, *srcStrides, *dstSizes, *dstStrides;
  int64_t srcOffset = fields(src, srcBase, sizes, srcStrides);
  int64_t dstOffset = fields(dst, dstBase, dstSizes, dstStrides);
  int64_t rank = src->rank;
  int64_t rows = 1;
  for (int64_t d = 0; d < rank; ++d) {
    if (sizes[d] == 0)
      return;
    if (d + 1 < rank)
      rows *= sizes[d];
  }
  char *s0 = srcBase + srcOffset * elementSize;
  char *t0 = dstBase + dstOffset * elementSize;
  int64_t width = rank ? sizes[rank - 1] : 1;
  int64_t ss = rank ? srcStrides[rank - 1] * elementSize : 0;
  int64_t ts = rank ? dstStrides[rank - 1] * elementSize : 0;
  bool contiguous = ss == elementSize && ts == elementSize;
  auto strided = [&](char *s, char *t, auto size) {
    for (int64_t j = 0; j < width; ++j)
      std::memcpy(t + j * ts, s + j * ss, size);
  };
  // Rows [r0, r1) of the outer dimensions, in row-major order.
  auto copyRows = [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      char *s = s0, *t = t0;
      for (int64_t d = rank - 2, rest = r; d >= 0; --d) {
        int64_t i = rest % sizes[d];
        rest /= sizes[d];
        s += i * srcStrides[d] * elementSize;
        t += i * dstStrides[d] * elementSize;
      }
      if (contiguous)
        std::memcpy(t, s, static_cast<size_t>(width * elementSize));
      else if (elementSize == 4) // a constant size: plain moves
        strided(s, t, std::integral_constant<size_t, 4>());
      else
        strided(s, t, static_cast<size_t>(elementSize));
    }
  };
  qopt_cpu::Pool::get().runRanges(rows, rows * width * elementSize, 256 << 10,
                                  copyRows);
}

/// Run-time checks (qopt-lower-runtime-checks): a failed check records its
/// message and returns to qopt_kernel_run_guarded, which reports it instead
/// of letting the model read or write outside a buffer. The model's code
/// never resumes, so the buffers it had allocated are freed by the guard:
/// compiled models allocate through qopt_kernel_aligned_alloc /
/// qopt_kernel_free, which keep the guarded run's live buffers.
namespace {
thread_local jmp_buf *checkTarget = nullptr;
thread_local char checkMessage[1024];
thread_local std::unordered_set<void *> *liveBuffers = nullptr;
} // namespace

// The memory buffers live in: the C heap, or the CUDA host library's pool
// (a model compiled for --target cuda installs it at load).
namespace {
void *(*allocHook)(size_t, size_t) = nullptr;
void (*freeHook)(void *) = nullptr;
void release(void *p) {
  if (freeHook)
    freeHook(p);
  else
    std::free(p);
}
} // namespace

void qopt_kernel_set_allocator(void *(*alloc)(size_t alignment, size_t size),
                               void (*free)(void *)) {
  allocHook = alloc;
  freeHook = free;
}

void *qopt_kernel_aligned_alloc(size_t alignment, size_t size) {
  void *p = allocHook ? allocHook(alignment, size)
                      : std::aligned_alloc(alignment, size);
  if (p && liveBuffers)
    liveBuffers->insert(p);
  return p;
}

void qopt_kernel_free(void *p) {
  if (p && liveBuffers)
    liveBuffers->erase(p);
  release(p);
}

// Generated code calls this only from the thread that runs the model's
// entry: qopt-parallel-to-pool keeps loop nests with checks off the pool,
// whose threads have no checkTarget (and a longjmp out of a pool task
// would leave the pool's lock held).
void qopt_kernel_check_failed(const char *message) {
  std::snprintf(checkMessage, sizeof(checkMessage), "%s", message);
  if (checkTarget)
    std::longjmp(*checkTarget, 1);
  // Called outside a guarded run (mlir-runner in tests): stop as cf.assert
  // would, but with an exit status rather than a signal.
  std::fprintf(stderr, "qopt: run-time check failed: %s\n", message);
  std::fflush(stderr);
  std::_Exit(1);
}

/// Runs `entry(args)`; returns 0, or 1 with `*message` set to the failed
/// check's message (valid until the thread's next failed check).
int qopt_kernel_run_guarded(void (*entry)(void **), void **args,
                            const char **message) {
  jmp_buf target;
  jmp_buf *saved = checkTarget;
  std::unordered_set<void *> live, *savedLive = liveBuffers;
  checkTarget = &target;
  liveBuffers = &live;
  if (setjmp(target)) {
    checkTarget = saved;
    liveBuffers = savedLive;
    for (void *p : live)
      release(p);
    *message = checkMessage;
    return 1;
  }
  entry(args);
  // The buffers still live are the results: the caller owns them now.
  checkTarget = saved;
  liveBuffers = savedLive;
  return 0;
}
}
