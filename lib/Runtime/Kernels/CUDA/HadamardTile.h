//===- HadamardTile.h - per-thread work of the CUDA Hadamard transform -*- C++
//-*-===//
//
// Hadamard.cu's kernels apply qopt.hadamard over the last axis: y = scale ·
// H_n · diag(signs) · x for each run of n consecutive elements. For
// power-of-two blocks n, a block of 256 threads loads max(n, 2048)
// elements (whole runs) into shared memory, signs applied, then runs
// log2(n) butterfly stages (pairs i, i + h within each run; a barrier
// between stages) and stores the scaled result: one launch and one pass
// over memory, where the CPU lowering's products are three. Orders
// base · 2^k add H_base across the runs of 2^k (the mixed kernel, below).
//
// Each phase is a function of the thread's index, written once for the
// device and the host (CUDAEmulation.cpp runs the 256 threads in turn
// between the barriers).
//
//===----------------------------------------------------------------------===//

#ifndef QOPT_RUNTIME_KERNELS_CUDA_HADAMARDTILE_H
#define QOPT_RUNTIME_KERNELS_CUDA_HADAMARDTILE_H

#include "MemrefArgs.h"
#include "QLinearTile.h"
#include "W8A8Tile.h"

namespace qopt_cuda {

constexpr int kHadamardThreads = 256;
/// The largest block the kernel takes, and the elements a block holds.
constexpr int64_t kHadamardMaxN = 8192, kHadamardTile = 8192;

/// One launch (by value). x and y are [rows, cols] (strides sx0, sx1 and
/// sy0, sy1), cols a multiple of n; signs (stride ss) or null.
struct HadamardParams {
  const float *x;
  float *y;
  const float *signs;
  int64_t sx0, sx1, sy0, sy1, ss;
  int64_t rows, cols, n;
  int64_t runsPerBlock; // max(n, 2048) / n
  float scale;
  /// The runs a period of the signs spans (0 or 1: one; the split
  /// transform's butterflies: its runs of `power` within a block).
  int32_t signRuns;
};
// bench/gpu/hadamard.py packs it ("<3Q5q4qfi").
static_assert(sizeof(HadamardParams) == 104, "HadamardParams' layout");

/// The elements block `block` holds: runs runsPerBlock · block …, each n
/// long.
QOPT_HD int64_t hadamardElements(const HadamardParams &p) {
  return p.runsPerBlock * p.n;
}

/// Where element `idx` of block `block` lives: false past the last run.
QOPT_HD bool hadamardAt(const HadamardParams &p, int64_t block, int64_t idx,
                        int64_t &row, int64_t &col) {
  int64_t run = block * p.runsPerBlock + idx / p.n;
  int64_t runsPerRow = p.cols / p.n;
  if (run >= p.rows * runsPerRow)
    return false;
  row = run / runsPerRow;
  col = (run % runsPerRow) * p.n + idx % p.n;
  return true;
}

/// Thread t's share of loading the block's runs, signs applied.
QOPT_HD void hadamardLoad(const HadamardParams &p, int64_t block, float *buf,
                          int t) {
  for (int64_t idx = t; idx < hadamardElements(p); idx += kHadamardThreads) {
    int64_t row, col;
    float v = 0.0f;
    if (hadamardAt(p, block, idx, row, col)) {
      v = p.x[row * p.sx0 + col * p.sx1];
      if (p.signs)
        v *= p.signs[(p.signRuns > 1 ? col % (p.n * p.signRuns) : idx % p.n) *
                     p.ss];
    }
    buf[idx] = v;
  }
}

/// Thread t's butterflies of the stage with stride h: (a, b) → (a + b,
/// a − b) for the pairs i, i + h with bit h of i clear.
QOPT_HD void hadamardStage(const HadamardParams &p, float *buf, int64_t h,
                           int t) {
  for (int64_t k = t; k < hadamardElements(p) / 2; k += kHadamardThreads) {
    int64_t i = (k / h) * 2 * h + k % h, j = i + h;
    float a = buf[i], b = buf[j];
    buf[i] = a + b;
    buf[j] = a - b;
  }
}

/// Thread t's share of storing the block's runs, scaled.
QOPT_HD void hadamardStore(const HadamardParams &p, int64_t block,
                           const float *buf, int t) {
  for (int64_t idx = t; idx < hadamardElements(p); idx += kHadamardThreads) {
    int64_t row, col;
    if (hadamardAt(p, block, idx, row, col))
      p.y[row * p.sy0 + col * p.sy1] = buf[idx] * p.scale;
  }
}

using Memref2 = MemrefView<2>;

/// One launch of the quantizing kernels (by value): the transform's
/// (runsPerBlock = cols / n: block b is row b; y null: not written), codes
/// [rows, cols] (contiguous) and steps [rows].
struct HadamardQuantParams {
  HadamardParams h;
  int8_t *codes;
  float *steps;
  int32_t bits, reserved;
};
static_assert(sizeof(HadamardQuantParams) == 128,
              "HadamardQuantParams' layout");

//===-- Orders m·2^k, and rows past the static tile -----------------------===//
//
// qopt_cuda_hadamard_mixed_f32 takes n = base · power with H_n = H_base ⊗
// H_power (element i = a · power + b of a run, as convert-qopt-to-linalg's
// lowering): the butterflies over each run of `power`, then H_base across
// the base runs of each column b, y[a·power + b] = Σ_r H_base[a][r] ·
// z[r·power + b] added in the order of r, in place in shared memory. Each
// pass takes whole columns, a thread holding 32 of a column's sums in
// registers until the pass's barrier. H_base is whatever ±1 matrix the
// compiler passes (Paley's, Williamson's: their constructions stay in the
// compiler); its signs travel as bits in the launch's parameters and are
// copied to shared memory. Shared memory is dynamic, at most
// kHadamardMixedMaxBytes, which every GPU from sm_80 can opt in to (99 KB
// on sm_86 / 89 / 120), so runs and rows of up to 23040 elements: QuaRot's
// 11008 = 172·64, 14336 = 28·512 and 18944 = 148·128, and power-of-two
// blocks and quantized rows past 8192.

/// The largest base (4 · 63) and the 32-bit words a column of it takes.
constexpr int64_t kHadamardMaxBase = 252, kHadamardBaseWords = 8;
/// The longest run (or quantized row) the mixed kernel holds, and its
/// shared memory bound: 4 · (23040 + 252 · 8 + 8) ≤ 101376.
constexpr int64_t kHadamardMixedMaxElements = 23040,
                  kHadamardMixedMaxBytes = 101376;

/// One launch of the mixed kernel (by value, 8216 bytes: past the 4 KB
/// of parameters before CUDA 12.1; sm_70 and newer take 32 KB).
struct HadamardMixedParams {
  /// The transform (and the quantization where q.codes is not null).
  HadamardQuantParams q;
  int64_t base, power;
  /// Words per column of H_base (⌈base / 32⌉).
  int32_t words, reserved;
  /// Column r's word w at r · words + w: bit j set where H_base[32w + j][r]
  /// is −1.
  uint32_t columns[kHadamardMaxBase * kHadamardBaseWords];
};
static_assert(sizeof(HadamardMixedParams) == 8216,
              "HadamardMixedParams' layout");

/// The block's dynamic shared memory in bytes: its runs, H_base's bits and
/// the warps' maxima.
QOPT_HD int64_t hadamardMixedShared(const HadamardMixedParams &m) {
  return 4 *
         (hadamardElements(m.q.h) + m.base * m.words + kHadamardThreads / 32);
}

/// The columns a block holds (`power` per run) and how many a pass takes.
QOPT_HD int64_t hadamardMixColumns(const HadamardMixedParams &m) {
  return m.q.h.runsPerBlock * m.power;
}
QOPT_HD int64_t hadamardMixWidth(const HadamardMixedParams &m) {
  return kHadamardThreads / m.words;
}
QOPT_HD int64_t hadamardMixPasses(const HadamardMixedParams &m) {
  return m.base == 1 ? 0
                     : (hadamardMixColumns(m) + hadamardMixWidth(m) - 1) /
                           hadamardMixWidth(m);
}

/// Thread t's share of pass `pass`: rows 32w to 32w + 31 of column `col`
/// (false: none). A warp's threads share w (or two: widths of 85, 51, 42
/// or 36 columns), so they read one or two words of bits.
QOPT_HD bool hadamardMixSlot(const HadamardMixedParams &m, int64_t pass, int t,
                             int64_t &col, int &w) {
  int64_t width = hadamardMixWidth(m);
  if (t >= width * m.words)
    return false;
  w = int(t / width);
  col = pass * width + t % width;
  return col < hadamardMixColumns(m);
}

/// Where row r of column `col` lives in the block's buffer.
QOPT_HD int64_t hadamardMixAt(const HadamardMixedParams &m, int64_t col,
                              int64_t r) {
  return col / m.power * m.q.h.n + r * m.power + col % m.power;
}

/// Thread's 32 sums acc[j] = Σ_r H_base[32w + j][r] · buf[col's row r],
/// added in the order of r (rows past the base: unused).
QOPT_HD void hadamardMix(const HadamardMixedParams &m, const float *buf,
                         const uint32_t *columns, int64_t col, int w,
                         float acc[32]) {
  QOPT_UNROLL()
  for (int j = 0; j < 32; ++j)
    acc[j] = 0.0f;
  const float *x = buf + hadamardMixAt(m, col, 0);
  for (int64_t r = 0; r < m.base; ++r) {
    float v = x[r * m.power];
    uint32_t bits = columns[r * m.words + w];
    QOPT_UNROLL()
    for (int j = 0; j < 32; ++j)
      acc[j] += ((bits >> j) & 1u) ? -v : v;
  }
}

/// The sums written back over the column (after the pass's barrier).
QOPT_HD void hadamardMixStore(const HadamardMixedParams &m, float *buf,
                              int64_t col, int w, const float acc[32]) {
  QOPT_UNROLL()
  for (int j = 0; j < 32; ++j)
    if (32 * w + j < m.base)
      buf[hadamardMixAt(m, col, 32 * w + j)] = acc[j];
}

// qopt_cuda_hadamard's parameters: flags (1: signs), n, the scale, then x
// [rows, cols], the signs [n] (x's stand-in where there are none), H_base
// ([base, base] int8 ±1 on the host, n = base · a power of two; [[1]] for
// powers of two) and y as memrefs.
#define QOPT_HADAMARD_PARAMS                                                   \
  int64_t flags, int64_t n, double scale, QOPT_MEMREF2(x), QOPT_MEMREF1(s),    \
      QOPT_MEMREF2(hm), QOPT_MEMREF2(y)

//===-- Blocks past 23040: two launches -----------------------------------===//
//
// A block n = base · 2^k longer than the mixed kernel holds is n = P1 · P2
// with P2 = min(2^k, 8192) and H_n = M ⊗ H_P2, M = H_base ⊗ H_(2^k / P2)
// (P1 ≤ 252: Llama-3-70B's 28672 = 28 · 1024, 32768 = 4 · 8192): the
// power-of-two kernel's butterflies over each run of P2, signs applied
// with their period n and unscaled, into y; then
// qopt_cuda_hadamard_columns_f32 applies M across the P1 runs of P2 in
// place, a block per 32 columns of a block of n (the columns' P1 values
// in shared memory, a warp per 32 of M's rows), and scales.

/// Which kernels a plan launches.
enum HadamardKernel : int {
  kHadamardPow2 = 0,  // qopt_cuda_hadamard_f32 (or _quant_f32)
  kHadamardMixed = 1, // qopt_cuda_hadamard_mixed_f32
  kHadamardSplit = 2, // the butterflies, then qopt_cuda_hadamard_columns_f32
};

/// Columns a block of the columns kernel takes.
constexpr int64_t kHadamardColumnTile = 32;

/// The split plan's first launch: the power-of-two kernel over runs of
/// m.power (y = H_P2 · diag(signs) · x per run, unscaled), and its blocks.
QOPT_HD HadamardParams hadamardButterflies(const HadamardMixedParams &m,
                                           int64_t &blocks) {
  HadamardParams p = m.q.h;
  p.n = m.power;
  p.signRuns = int32_t(m.base);
  p.runsPerBlock = m.power >= 2048 ? 1 : 2048 / m.power;
  p.scale = 1.0f;
  int64_t runs = p.rows * (p.cols / p.n);
  blocks = (runs + p.runsPerBlock - 1) / p.runsPerBlock;
  return p;
}

/// The columns kernel's blocks: 32 columns of a block of n each.
QOPT_HD int64_t hadamardColumnBlocks(const HadamardMixedParams &m) {
  const HadamardParams &p = m.q.h;
  return p.rows * (p.cols / p.n) * (m.power / kHadamardColumnTile);
}

/// Where value r of column c of the columns kernel's block `block` lives
/// in y.
QOPT_HD float *hadamardColumnAt(const HadamardMixedParams &m, int64_t block,
                                int64_t r, int64_t c) {
  const HadamardParams &p = m.q.h;
  int64_t tiles = m.power / kHadamardColumnTile;
  int64_t run = block / tiles, runsPerRow = p.cols / p.n;
  int64_t col = (run % runsPerRow) * p.n + r * m.power +
                (block % tiles) * kHadamardColumnTile + c;
  return p.y + (run / runsPerRow) * p.sy0 + col * p.sy1;
}

/// Thread t's share of loading block `block`'s columns: tile[r · 32 + c]
/// (a warp reads 32 neighbours).
QOPT_HD void hadamardColumnsLoad(const HadamardMixedParams &m, int64_t block,
                                 float *tile, int t) {
  for (int64_t i = t; i < m.base * kHadamardColumnTile; i += kHadamardThreads)
    tile[i] = *hadamardColumnAt(m, block, i / kHadamardColumnTile,
                                i % kHadamardColumnTile);
}

/// Thread t's rows 32w … 32w + 31 of M times column c (w = t / 32, c = t %
/// 32; none past M's words), summed in the order of r, scaled, stored.
QOPT_HD void hadamardColumnsStore(const HadamardMixedParams &m, int64_t block,
                                  const float *tile, const uint32_t *columns,
                                  int t) {
  int w = t / 32, c = t % 32;
  if (w >= m.words)
    return;
  float acc[32];
  QOPT_UNROLL()
  for (int j = 0; j < 32; ++j)
    acc[j] = 0.0f;
  for (int64_t r = 0; r < m.base; ++r) {
    float v = tile[r * kHadamardColumnTile + c];
    uint32_t bits = columns[r * m.words + w];
    QOPT_UNROLL()
    for (int j = 0; j < 32; ++j)
      acc[j] += ((bits >> j) & 1u) ? -v : v;
  }
  QOPT_UNROLL()
  for (int j = 0; j < 32; ++j)
    if (32 * w + j < m.base)
      *hadamardColumnAt(m, block, 32 * w + j, c) = acc[j] * m.q.h.scale;
}

/// The launch for qopt_cuda_hadamard's arguments: `m.q.h` for the
/// power-of-two kernel, all of `m` for the mixed one (where n has a base
/// or is past kHadamardMaxN), or the split plan's two launches (n past
/// kHadamardMixedMaxElements; `blocks`: the first's). Returns null, or why
/// no kernel takes them.
inline const char *planHadamard(int64_t flags, int64_t n, double scale,
                                const Memref2 &x, const MemrefView<1> &signs,
                                const Memref2 &hm, const Memref2 &y,
                                HadamardMixedParams &m, int64_t &blocks,
                                HadamardKernel &kind) {
  HadamardParams &p = m.q.h;
  m.q = HadamardQuantParams{};
  int64_t base = hm.size[0];
  if (base < 1 || base > kHadamardMaxBase || hm.size[1] != base || n < 2 ||
      n % base)
    return "a base matrix that is not square, of at most 252 rows, "
           "dividing the block";
  int64_t power = n / base;
  if (power & (power - 1))
    return "a block that is not its base times a power of two";
  // (Past 23040: M = H_base ⊗ H_inner across runs of P2.)
  bool split = n > kHadamardMixedMaxElements;
  int64_t inner = split && power > kHadamardMaxN ? power / kHadamardMaxN : 1;
  if (split && base * inner > kHadamardMaxBase)
    return "a block longer than 23040 whose part past 8192 (base times the "
           "power of two's) is more than 252";
  if (x.size[1] % n)
    return "a row not a whole number of blocks";
  m.base = base * inner;
  m.power = power / inner;
  m.words = int32_t((m.base + 31) / 32);
  m.reserved = 0;
  memset(m.columns, 0, sizeof(m.columns));
  const int8_t *h = static_cast<const int8_t *>(hm.aligned) + hm.offset;
  for (int64_t a = 0; a < base; ++a)
    for (int64_t r = 0; r < base; ++r) {
      int8_t v = h[a * hm.stride[0] + r * hm.stride[1]];
      if (v != 1 && v != -1)
        return "a base matrix with an entry other than 1 or -1";
      if (base == 1 && v != 1)
        return "a base matrix of order 1 other than [1]";
      // M[a·inner + i][r·inner + j] = H_base[a][r] · (−1)^popcount(i & j)
      // (Sylvester's H_inner).
      for (int64_t i = 0; i < inner; ++i)
        for (int64_t j = 0; j < inner; ++j) {
          bool negative = (v < 0) != (__builtin_popcountll(i & j) % 2 == 1);
          int64_t row = a * inner + i, column = r * inner + j;
          if (negative)
            m.columns[column * m.words + row / 32] |= 1u << (row % 32);
        }
    }
  p.x = static_cast<const float *>(x.aligned) + x.offset;
  p.y = static_cast<float *>(const_cast<void *>(y.aligned)) + y.offset;
  p.signs = (flags & 1)
                ? static_cast<const float *>(signs.aligned) + signs.offset
                : nullptr;
  p.sx0 = x.stride[0];
  p.sx1 = x.stride[1];
  p.sy0 = y.stride[0];
  p.sy1 = y.stride[1];
  p.ss = signs.stride[0];
  p.rows = x.size[0];
  p.cols = x.size[1];
  p.n = n;
  p.runsPerBlock = n >= 2048 ? 1 : 2048 / n;
  p.scale = float(scale);
  p.signRuns = 1;
  kind = split                           ? kHadamardSplit
         : base > 1 || n > kHadamardMaxN ? kHadamardMixed
                                         : kHadamardPow2;
  int64_t runs = p.rows * (p.cols / n);
  blocks = (runs + p.runsPerBlock - 1) / p.runsPerBlock;
  if (split)
    hadamardButterflies(m, blocks);
  return nullptr;
}

//===-- The transform with per-token quantization -------------------------===//
//
// qopt_cuda_hadamard_quant_f32: QuaRot's online Hadamard before a W4A4 /
// W8A8 product. A block holds one whole row (cols ≤ kHadamardTile), so
// after the butterflies its threads find the row's max|y| (a block
// reduction) and write the row's int8 codes and step, which the products
// read (kQLinearCodes), as qopt_cuda_quantize_rows would from y; y itself
// only where something else reads it. Other orders, and rows past
// kHadamardTile, take the mixed kernel with q.codes set.

/// Thread t's largest magnitude of its elements of the block's row
/// (infinity where one is not finite).
QOPT_HD float hadamardPartialMax(const HadamardQuantParams &q, const float *buf,
                                 int t) {
  float amax = 0.0f;
  for (int64_t idx = t; idx < q.h.cols; idx += kHadamardThreads)
    amax = tokenMax(amax, buf[idx] * q.h.scale);
  return amax;
}

/// Thread t's share of storing row `block`'s codes (and y where wanted),
/// and thread 0 its step.
QOPT_HD void hadamardQuantStore(const HadamardQuantParams &q, int64_t block,
                                const float *buf, float step, int t) {
  const HadamardParams &p = q.h;
  for (int64_t idx = t; idx < p.cols; idx += kHadamardThreads) {
    float v = buf[idx] * p.scale;
    if (p.y)
      p.y[block * p.sy0 + idx * p.sy1] = v;
    q.codes[block * p.cols + idx] = tokenCode(v, step, q.bits);
  }
  if (t == 0)
    q.steps[block] = step;
}

// qopt_cuda_hadamard_quant's parameters: qopt_cuda_hadamard's, then the
// bits, whether y is written, and the codes' and steps' pointers and
// offsets.
#define QOPT_HADAMARD_QUANT_PARAMS                                             \
  QOPT_HADAMARD_PARAMS, int64_t bits, int64_t writeY, int64_t pc, int64_t oc,  \
      int64_t ps, int64_t os

/// The launch for qopt_cuda_hadamard_quant's arguments (a block a row):
/// `m.q` for the power-of-two kernel, all of `m` for the mixed one; null,
/// or why no kernel takes them.
inline const char *
planHadamardQuant(int64_t flags, int64_t n, double scale, const Memref2 &x,
                  const MemrefView<1> &signs, const Memref2 &hm,
                  const Memref2 &y, int64_t bits, int64_t writeY, int64_t pc,
                  int64_t oc, int64_t ps, int64_t os, HadamardMixedParams &m,
                  int64_t &blocks, HadamardKernel &kind) {
  if (const char *why =
          planHadamard(flags, n, scale, x, signs, hm, y, m, blocks, kind))
    return why;
  HadamardQuantParams &q = m.q;
  if (const char *why = tokenFormatRefusal(bits))
    return why;
  if (q.h.cols > kHadamardMixedMaxElements)
    return "rows longer than a block holds";
  if (kind == kHadamardPow2 && q.h.cols > kHadamardTile)
    kind = kHadamardMixed;
  q.h.runsPerBlock = q.h.cols / n;
  if (!writeY)
    q.h.y = nullptr;
  q.codes = reinterpret_cast<int8_t *>(pc) + oc;
  q.steps = reinterpret_cast<float *>(ps) + os;
  q.bits = int32_t(bits);
  // (Rows of nothing too: their step is 1, as the rows' quantization
  // writes.)
  blocks = q.h.rows;
  return nullptr;
}

} // namespace qopt_cuda

#endif // QOPT_RUNTIME_KERNELS_CUDA_HADAMARDTILE_H
