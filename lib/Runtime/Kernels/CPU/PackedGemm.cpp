//===- PackedGemm.cpp - f32 products with weights packed once -------------===//
//
// C[m, n] += sum_k A[m, k] * B[k, n] where B is a weight that never changes
// while the model is loaded. OpenBLAS repacks B on every call: a prefill
// step reads each weight once, cold from memory, through its packing
// routine (20% of a GPT-2 step in a profile, the products 25% slower than
// on a warm weight). Here B is packed once, on the first product that
// reads it with several rows of A, into panels of 32 columns (K rows of 32
// contiguous floats, the last panel zero-padded), and every later product
// streams the panels: 12 x 32 AVX-512 tiles, K in blocks of 256, the next
// lines of B prefetched.
//
// What is constant is the runtime's knowledge, not the compiler's: it
// registers the read-only mapping of the weights file at load
// (qopt_kernel_register_constant) and releases it before unmapping
// (qopt_kernel_release_constant), which drops the packed copies of B's
// inside it. Only products whose B lies wholly inside a registered range
// keep a packed copy, up to twice the registered bytes in all (a weight
// sliced to shapes that vary from run to run must not pile up copies).
// Any other B is packed per call (up to 16 MB; larger ones go to BLAS),
// and a one-row product without a packed copy reads B in place. CPUs
// without AVX-512 take BLAS throughout.
//
//===----------------------------------------------------------------------===//

#include "CPUKernels.h"

#include <cstdlib>
#include <map>
#include <memory>
#include <shared_mutex>
#include <tuple>

#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

namespace {

constexpr int64_t kNR = qopt_cpu::kPanelCols;  // columns per panel (two zmm)
constexpr int kMR = qopt_cpu::kPanelRows;      // rows of A per tile (24 sums)
constexpr int64_t kKC = qopt_cpu::kPanelDepth; // K per block of a panel
constexpr int kPrefetch = 16;                  // K steps ahead

struct Key {
  const float *b;
  int64_t k, n, rs, cs;
  bool operator<(const Key &o) const {
    return std::tie(b, k, n, rs, cs) < std::tie(o.b, o.k, o.n, o.rs, o.cs);
  }
};

struct Registry {
  std::shared_mutex mutex;
  std::vector<std::pair<uintptr_t, uintptr_t>> ranges;
  std::map<Key, float *> packed;
  int64_t rangeBytes = 0, packedBytes = 0;
  /// Bytes of the B's copied (k x n floats each), held to twice rangeBytes.
  int64_t copiedBytes = 0;
  ~Registry() {
    for (auto &e : packed)
      std::free(e.second);
  }
};

Registry &registry() {
  static Registry r; // freed with the library
  return r;
}

int64_t packedFloats(int64_t k, int64_t n) {
  return (n + kNR - 1) / kNR * kNR * k;
}

int64_t packedBytes(const Key &key) {
  return packedFloats(key.k, key.n) * int64_t(sizeof(float));
}

int64_t copiedBytes(const Key &key) {
  return key.n * key.k * int64_t(sizeof(float));
}

bool inConstantRange(Registry &r, uintptr_t begin, uintptr_t end) {
  for (auto &range : r.ranges)
    if (begin >= range.first && end <= range.second)
      return true;
  return false;
}

/// B (k x n, strides rs / cs) into panels of kNR columns at `p`, the
/// panels split among the pool's threads when `parallel`.
void packInto(float *p, const float *b, int64_t k, int64_t n, int64_t rs,
              int64_t cs, bool parallel) {
  int64_t panels = (n + kNR - 1) / kNR;
  auto one = [&](int panel) {
    float *d = p + panel * k * kNR;
    int64_t n0 = panel * kNR, w = std::min(kNR, n - n0);
    for (int64_t kk = 0; kk < k; ++kk, d += kNR) {
      const float *s = b + kk * rs + n0 * cs;
      int64_t j = 0;
      for (; j < w; ++j)
        d[j] = s[j * cs];
      for (; j < kNR; ++j)
        d[j] = 0;
    }
  };
  if (parallel)
    qopt_cpu::Pool::get().run(int(panels), one);
  else
    for (int64_t panel = 0; panel < panels; ++panel)
      one(int(panel));
}

float *allocFloats(int64_t count) {
  size_t bytes = (size_t(count) * sizeof(float) + 63) / 64 * 64;
  return static_cast<float *>(std::aligned_alloc(64, bytes));
}

/// The packed copy of B, packing it when `mayPack`; null when B is not
/// constant (or was not packed and may not be).
const float *constantB(const float *b, int64_t k, int64_t n, int64_t rs,
                       int64_t cs, bool mayPack, bool parallel) {
  Registry &r = registry();
  Key key{b, k, n, rs, cs};
  {
    std::shared_lock<std::shared_mutex> l(r.mutex);
    if (r.ranges.empty())
      return nullptr;
    auto it = r.packed.find(key);
    if (it != r.packed.end())
      return it->second;
    if (!mayPack ||
        !inConstantRange(r, uintptr_t(b),
                         uintptr_t(b + (k - 1) * rs + (n - 1) * cs + 1)) ||
        r.copiedBytes + copiedBytes(key) > 2 * r.rangeBytes)
      return nullptr;
  }
  // Packed outside the lock: packing may wait for the pool, which a
  // concurrent run may hold while its tasks look up their own weights.
  // The range stays registered meanwhile (it is released only once the
  // model's runs are over).
  float *p = allocFloats(packedFloats(k, n));
  if (!p)
    return nullptr;
  packInto(p, b, k, n, rs, cs, parallel);
  std::unique_lock<std::shared_mutex> l(r.mutex);
  auto [it, inserted] = r.packed.emplace(key, p);
  if (!inserted) // another run packed it first
    std::free(p);
  else {
    r.packedBytes += packedBytes(key);
    r.copiedBytes += copiedBytes(key);
  }
  return it->second;
}

/// C[0..rows) x [0..32) += A[0..rows) x [0..kc) · one panel block. With
/// `Next`, the bytes [next, nextEnd) of B that later tiles read first are
/// fetched into L2 meanwhile, two lines per K step, so that a weight
/// streamed from memory arrives while the tiles compute.
template <int MR, bool Next>
__attribute__((target("avx512f"), always_inline)) inline void
tile(const float *a, int64_t lda, const float *b, int64_t kc, float *c,
     int64_t ldc, __mmask16 m0, __mmask16 m1, const char *next,
     const char *nextEnd) {
  __m512 c0[MR], c1[MR];
#pragma GCC unroll 16
  for (int r = 0; r < MR; ++r)
    c0[r] = c1[r] = _mm512_setzero_ps();
  for (int64_t k = 0; k < kc; ++k) {
    _mm_prefetch(reinterpret_cast<const char *>(b + (k + kPrefetch) * kNR),
                 _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char *>(b + (k + kPrefetch) * kNR + 16),
                 _MM_HINT_T0);
    if constexpr (Next)
      if (next < nextEnd) {
        _mm_prefetch(next, _MM_HINT_T1);
        _mm_prefetch(next + 64, _MM_HINT_T1);
        next += 128;
      }
    __m512 b0 = _mm512_load_ps(b + k * kNR);
    __m512 b1 = _mm512_load_ps(b + k * kNR + 16);
#pragma GCC unroll 16
    for (int r = 0; r < MR; ++r) {
      __m512 x = _mm512_set1_ps(a[r * lda + k]);
      c0[r] = _mm512_fmadd_ps(x, b0, c0[r]);
      c1[r] = _mm512_fmadd_ps(x, b1, c1[r]);
    }
  }
#pragma GCC unroll 16
  for (int r = 0; r < MR; ++r) {
    float *cr = c + r * ldc;
    c0[r] = _mm512_add_ps(c0[r], _mm512_maskz_loadu_ps(m0, cr));
    c1[r] = _mm512_add_ps(c1[r], _mm512_maskz_loadu_ps(m1, cr + 16));
    _mm512_mask_storeu_ps(cr, m0, c0[r]);
    _mm512_mask_storeu_ps(cr + 16, m1, c1[r]);
  }
}

template <int MR, bool Next>
__attribute__((target("avx512f"))) void
tileOf(const float *a, int64_t lda, const float *b, int64_t kc, float *c,
       int64_t ldc, __mmask16 m0, __mmask16 m1, const char *next,
       const char *nextEnd) {
  tile<MR, Next>(a, lda, b, kc, c, ldc, m0, m1, next, nextEnd);
}

using TileFn = void (*)(const float *, int64_t, const float *, int64_t, float *,
                        int64_t, __mmask16, __mmask16, const char *,
                        const char *);
template <bool Next>
constexpr TileFn kTiles[kMR + 1] = {
    nullptr,         tileOf<1, Next>, tileOf<2, Next>,  tileOf<3, Next>,
    tileOf<4, Next>, tileOf<5, Next>, tileOf<6, Next>,  tileOf<7, Next>,
    tileOf<8, Next>, tileOf<9, Next>, tileOf<10, Next>, tileOf<11, Next>,
    tileOf<12, Next>};

__mmask16 maskOf(int64_t count) {
  return count >= 16  ? __mmask16(0xFFFF)
         : count <= 0 ? __mmask16(0)
                      : __mmask16((1u << count) - 1);
}

/// C (m x n, row stride ldc) += A (m x k, row stride lda) · packed B.
/// When `parallel`, tasks of up to 16 panels, and of rows too where the
/// panels alone give fewer than four tasks per thread (few columns, many
/// rows), taken by the pool's threads as they come free.
void productPacked(const float *a, int64_t lda, const float *p, int64_t m,
                   int64_t n, int64_t k, float *c, int64_t ldc, bool parallel) {
  qopt_cpu::Pool &pool = qopt_cpu::Pool::get();
  int64_t panels = (n + kNR - 1) / kNR;
  int64_t threads = parallel ? pool.threads() : 1;
  int64_t per = qopt_cpu::panelsPerTask(panels, threads);
  int64_t colTasks = (panels + per - 1) / per, rowTasks = 1;
  if (threads > 1 && colTasks < 4 * threads)
    rowTasks = std::max<int64_t>(
        1, std::min((4 * threads + colTasks - 1) / colTasks, m / (4 * kMR)));
  int64_t rowsPer = (m + rowTasks - 1) / rowTasks;
  rowsPer = (rowsPer + kMR - 1) / kMR * kMR;
  rowTasks = (m + rowsPer - 1) / rowsPer;
  auto task = [&](int t) {
    int64_t p0 = (t % colTasks) * per, p1 = std::min(panels, p0 + per);
    int64_t i0 = (t / colTasks) * rowsPer, i1 = std::min(m, i0 + rowsPer);
    for (int64_t k0 = 0; k0 < k; k0 += kKC) {
      int64_t kc = std::min(kKC, k - k0);
      // Prefetch into L2 what is read first later (a weight comes from
      // memory once per block): the first rows' tile of a panel fetches
      // the next panel's block; the other rows' tiles split the panel's
      // next K block among them.
      int64_t rowTiles = (i1 - i0 + kMR - 1) / kMR;
      int64_t nextKc = std::min(kKC, k - k0 - kc); // <= 0 in the last block
      for (int64_t i = i0; i < i1; i += kMR) {
        int rows = int(std::min<int64_t>(kMR, i1 - i));
        int64_t r = (i - i0) / kMR;
        for (int64_t panel = p0; panel < p1; ++panel) {
          int64_t n0 = panel * kNR, w = std::min(kNR, n - n0);
          const float *block = p + (panel * k + k0) * kNR;
          const char *pf = nullptr, *pfEnd = nullptr;
          if (r == 0 && panel + 1 < p1) {
            pf = reinterpret_cast<const char *>(block + k * kNR);
            pfEnd = pf + kc * kNR * sizeof(float);
          } else if (r > 0 && nextKc > 0) {
            const char *nb = reinterpret_cast<const char *>(block + kc * kNR);
            int64_t bytes = nextKc * kNR * sizeof(float);
            pf = nb + bytes * (r - 1) / (rowTiles - 1) / 64 * 64;
            pfEnd = nb + bytes * r / (rowTiles - 1);
          }
          (pf ? kTiles<true> : kTiles<false>)[rows](
              a + i * lda + k0, lda, block, kc, c + i * ldc + n0, ldc,
              maskOf(w), maskOf(w - 16), pf, pfEnd);
        }
      }
    }
  };
  int tasks = int(colTasks * rowTasks);
  if (parallel)
    pool.run(tasks, task);
  else
    for (int t = 0; t < tasks; ++t)
      task(t);
}

/// c[n0, n1) += a[0, k) · B[:, n0..n1) for B with unit column stride: four
/// rows of B at a time, scaled and added to a strip of up to 2048 columns
/// of c (which stays in L1), so that B is read in long contiguous runs.
__attribute__((target("avx512f"))) void rowTimesRows(const float *a,
                                                     const float *b, int64_t rs,
                                                     float *c, int64_t k,
                                                     int64_t n0, int64_t n1) {
  for (int64_t j0 = n0; j0 < n1; j0 += 2048) {
    int64_t j1 = std::min(n1, j0 + 2048);
    int64_t kk = 0;
    for (; kk + 4 <= k; kk += 4) {
      __m512 x0 = _mm512_set1_ps(a[kk]), x1 = _mm512_set1_ps(a[kk + 1]),
             x2 = _mm512_set1_ps(a[kk + 2]), x3 = _mm512_set1_ps(a[kk + 3]);
      const float *r0 = b + kk * rs, *r1 = r0 + rs, *r2 = r1 + rs,
                  *r3 = r2 + rs;
      int64_t j = j0;
      for (; j + 16 <= j1; j += 16) {
        __m512 acc = _mm512_loadu_ps(c + j);
        acc = _mm512_fmadd_ps(x0, _mm512_loadu_ps(r0 + j), acc);
        acc = _mm512_fmadd_ps(x1, _mm512_loadu_ps(r1 + j), acc);
        acc = _mm512_fmadd_ps(x2, _mm512_loadu_ps(r2 + j), acc);
        acc = _mm512_fmadd_ps(x3, _mm512_loadu_ps(r3 + j), acc);
        _mm512_storeu_ps(c + j, acc);
      }
      if (j < j1) {
        __mmask16 m = maskOf(j1 - j);
        __m512 acc = _mm512_maskz_loadu_ps(m, c + j);
        acc = _mm512_fmadd_ps(x0, _mm512_maskz_loadu_ps(m, r0 + j), acc);
        acc = _mm512_fmadd_ps(x1, _mm512_maskz_loadu_ps(m, r1 + j), acc);
        acc = _mm512_fmadd_ps(x2, _mm512_maskz_loadu_ps(m, r2 + j), acc);
        acc = _mm512_fmadd_ps(x3, _mm512_maskz_loadu_ps(m, r3 + j), acc);
        _mm512_mask_storeu_ps(c + j, m, acc);
      }
    }
    for (; kk < k; ++kk) {
      __m512 x = _mm512_set1_ps(a[kk]);
      const float *r = b + kk * rs;
      for (int64_t j = j0; j < j1; j += 16) {
        __mmask16 m = maskOf(j1 - j);
        _mm512_mask_storeu_ps(c + j, m,
                              _mm512_fmadd_ps(x,
                                              _mm512_maskz_loadu_ps(m, r + j),
                                              _mm512_maskz_loadu_ps(m, c + j)));
      }
    }
  }
}

/// c[j..j+R) += a · B[:, j..j+R) for B with unit row stride (each column
/// contiguous): one dot product per column.
template <int R>
__attribute__((target("avx512f"))) void dots(const float *a, const float *b,
                                             int64_t cs, float *c, int64_t k,
                                             int64_t j) {
  __m512 acc[R];
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r)
    acc[r] = _mm512_setzero_ps();
  int64_t kk = 0;
  for (; kk + 16 <= k; kk += 16) {
    __m512 x = _mm512_loadu_ps(a + kk);
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r)
      acc[r] =
          _mm512_fmadd_ps(x, _mm512_loadu_ps(b + (j + r) * cs + kk), acc[r]);
  }
  __mmask16 tail = maskOf(k - kk);
  __m512 x = _mm512_maskz_loadu_ps(tail, a + kk);
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r) {
    acc[r] = _mm512_fmadd_ps(
        x, _mm512_maskz_loadu_ps(tail, b + (j + r) * cs + kk), acc[r]);
    c[j + r] += _mm512_reduce_add_ps(acc[r]);
  }
}

void rowTimesColumns(const float *a, const float *b, int64_t cs, float *c,
                     int64_t k, int64_t n0, int64_t n1) {
  int64_t j = n0;
  for (; j + 4 <= n1; j += 4)
    dots<4>(a, b, cs, c, k, j);
  for (; j < n1; ++j)
    dots<1>(a, b, cs, c, k, j);
}

/// c[0, n) += a[0, k) · B for one row of A (contiguous, as is c), B read in
/// place (a decode step reads each weight once: no copy, streamed at
/// memory bandwidth); false unless B has a unit stride.
bool rowProduct(const float *a, const float *b, int64_t rs, int64_t cs,
                float *c, int64_t n, int64_t k, bool parallel) {
  bool rows = cs == 1;
  if (!rows && rs != 1)
    return false;
  qopt_cpu::Pool &pool = qopt_cpu::Pool::get();
  int64_t threads = parallel ? pool.threads() : 1;
  // Columns in multiples of 16: one contiguous range per thread for rows
  // (long runs of each row of B), a few per thread for the dots.
  int64_t units = (n + 15) / 16, parts = rows ? threads : 4 * threads;
  int64_t per = std::max<int64_t>(rows ? 16 : 4, (units + parts - 1) / parts);
  int tasks = int((units + per - 1) / per);
  auto task = [&](int t) {
    int64_t n0 = t * per * 16, n1 = std::min(n, n0 + per * 16);
    if (rows)
      rowTimesRows(a, b, rs, c, k, n0, n1);
    else
      rowTimesColumns(a, b, cs, c, k, n0, n1);
  };
  if (threads > 1 && tasks > 1)
    pool.run(tasks, task);
  else
    for (int t = 0; t < tasks; ++t)
      task(t);
  return true;
}

/// Per-call packing of a B that is not constant is bounded: larger ones
/// go to BLAS.
constexpr int64_t kMaxScratchFloats = int64_t(4) << 20;

/// Sizes and strides the kernels take, on a CPU that has them.
bool takes(int64_t m, int64_t n, int64_t k, int64_t rs, int64_t cs) {
  return m >= 1 && n >= 1 && k >= 1 && rs >= 0 && cs >= 0 &&
         qopt_cpu::hasAVX512();
}

} // namespace

namespace qopt_cpu {

/// B packed once if it is a registered constant, else packed per call into
/// a scratch buffer; one row of A without a packed copy reads B in place.
bool product(const float *a, int64_t lda, const float *b, int64_t rs,
             int64_t cs, float *c, int64_t ldc, int64_t m, int64_t n, int64_t k,
             bool parallel) {
  if (!takes(m, n, k, rs, cs))
    return false;
  // Pack a constant for products with several rows; a one-row product (a
  // decode step) uses a packed copy that exists but does not make one.
  if (const float *p =
          constantB(b, k, n, rs, cs, /*mayPack=*/m > 1, parallel)) {
    productPacked(a, lda, p, m, n, k, c, ldc, parallel);
    return true;
  }
  if (m == 1)
    return rowProduct(a, b, rs, cs, c, n, k, parallel);
  if (packedFloats(k, n) > kMaxScratchFloats)
    return false;
  // Allocated per call: a thread_local buffer with a destructor would keep
  // glibc from unloading the model (and a recompiled file at the same path
  // from loading); attention's copies are a few KB.
  std::unique_ptr<float, void (*)(void *)> scratch(
      allocFloats(packedFloats(k, n)), std::free);
  if (!scratch)
    return false;
  packInto(scratch.get(), b, k, n, rs, cs, /*parallel=*/false);
  productPacked(a, lda, scratch.get(), m, n, k, c, ldc, parallel);
  return true;
}

void panelTile(const float *a, int64_t lda, const float *block, int64_t kc,
               float *c, int64_t ldc, int rows, int64_t cols) {
  kTiles<false>[rows](a, lda, block, kc, c, ldc, maskOf(cols),
                      maskOf(cols - 16), nullptr, nullptr);
}

bool takesEveryProduct(int64_t m, int64_t n, int64_t k, int64_t rs,
                       int64_t cs) {
  return m > 1 && takes(m, n, k, rs, cs) &&
         packedFloats(k, n) <= kMaxScratchFloats;
}

} // namespace qopt_cpu

extern "C" {

/// Declares [begin, begin + bytes) read-only until released: the runtime
/// calls it for the mapping of a model's weights file.
void qopt_kernel_register_constant(const void *begin, int64_t bytes) {
  if (!begin || bytes <= 0)
    return;
  Registry &r = registry();
  std::unique_lock<std::shared_mutex> l(r.mutex);
  r.ranges.emplace_back(uintptr_t(begin), uintptr_t(begin) + uintptr_t(bytes));
  r.rangeBytes += bytes;
}

/// Ends a registration (before the memory is unmapped or reused) and frees
/// the packed copies made from it.
void qopt_kernel_release_constant(const void *begin, int64_t bytes) {
  Registry &r = registry();
  uintptr_t lo = uintptr_t(begin),
            hi = lo + uintptr_t(std::max<int64_t>(bytes, 0));
  std::unique_lock<std::shared_mutex> l(r.mutex);
  auto range =
      std::find(r.ranges.begin(), r.ranges.end(), std::make_pair(lo, hi));
  if (range == r.ranges.end())
    return;
  r.ranges.erase(range);
  r.rangeBytes -= int64_t(hi - lo);
  for (auto it = r.packed.begin(); it != r.packed.end();) {
    uintptr_t p = uintptr_t(it->first.b);
    if (p >= lo && p < hi) {
      r.packedBytes -= packedBytes(it->first);
      r.copiedBytes -= copiedBytes(it->first);
      std::free(it->second);
      it = r.packed.erase(it);
    } else {
      ++it;
    }
  }
}

/// The f32 products' path: "avx512" (this library's kernels) or
/// "openblas".
const char *qopt_kernel_f32_path(void) {
  return qopt_cpu::hasAVX512() ? "avx512" : "openblas";
}

/// Bytes held by packed copies (tests).
int64_t qopt_kernel_packed_bytes(void) {
  Registry &r = registry();
  std::shared_lock<std::shared_mutex> l(r.mutex);
  return r.packedBytes;
}

} // extern "C"
