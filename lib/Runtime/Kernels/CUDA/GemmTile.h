//===- GemmTile.h - per-thread work of the CUDA tiled GEMM ------*- C++ -*-===//
//
// Gemm.cu's kernels compute C += A·B one 64 x 64 tile of C per block of
// 256 threads, K in steps of 32: every thread loads its share of the A and
// B tiles into shared memory (B either an f32 matrix or a quantized
// weight's codes dequantized on the way), the block waits, every thread
// adds the step's products to its 4 x 4 outputs, the block waits again.
// Each phase is a function of the thread's index, written once for the
// device and the host: the kernel calls it for its thread, the CPU
// emulation (CUDAEmulation.cpp, unittests/Runtime/CUDATileTest.cpp) calls
// it for the 256 threads in turn between the barriers, so the tiling,
// bounds, strides and decoding are checked without a GPU.
//
// A, B and C are strided (element (r, c) at p[r·rs + c·cs]): transposed and
// broadcast operands need no copies. The loads are arranged so that
// neighbouring threads read neighbouring elements along whichever dimension
// is contiguous, and the A tile is padded so those stores hit distinct
// shared-memory banks.
//
//===----------------------------------------------------------------------===//

#ifndef QOPT_RUNTIME_KERNELS_CUDA_GEMMTILE_H
#define QOPT_RUNTIME_KERNELS_CUDA_GEMMTILE_H

#include "QLinearTile.h"

#include <type_traits>

namespace qopt_cuda {

constexpr int kTileN = 64, kTileK = 32;
/// Threads a block of the GEMM: 16 x 16, each MI x 4 outputs of the tile
/// (rows ty + 16·i, columns tx + 16·j: a warp's loads of a step's A and B
/// values are broadcasts and distinct banks). MI = 4: tiles of 64 rows;
/// MI = 1: 16 rows, for products of a few rows (decode), which would
/// otherwise compute 64 rows per tile for at most 16.
constexpr int kGemmThreads = 256;
constexpr int kMicro = 4;
template <int MI> constexpr int kTileRows = 16 * MI;

/// The tiles of one K step: a[kk][i] = A(m0 + i, k0 + kk), b[kk][j] =
/// B(k0 + kk, n0 + j), zero outside the matrices. (+1: the stores of a
/// K-contiguous A, 32 threads down one column, hit 32 banks.)
template <int MI> struct GemmShared {
  static constexpr int kRows = kTileRows<MI>;
  static constexpr int kMmaK = 0; // the CUDA cores: no mma
  float a[kTileK][kTileRows<MI> + 1];
  float b[kTileK][kTileN + 1];
  QOPT_HD void setA(int kk, int r, float v) { a[kk][r] = v; }
  QOPT_HD void setB(int kk, int col, float v) { b[kk][col] = v; }
};

/// bf16 bits of x rounded to nearest, ties to even (a NaN stays a NaN):
/// what the tensor-core GEMM multiplies.
QOPT_HD uint32_t bf16Bits(float x) {
  uint32_t u = bitsOfFloat(x);
  if ((u & 0x7FFFFFFFu) > 0x7F800000u)
    return (u >> 16) | 0x40u;
  return (u + 0x7FFFu + ((u >> 16) & 1u)) >> 16;
}

/// The same tiles for the tensor-core entries (`_bf16`): the values
/// rounded to bf16 as they are stored, A row-major and B column-major
/// (a[i][kk] = A(m0 + i, k0 + kk), b[j][kk] = B(k0 + kk, n0 + j)), so each
/// register of an mma fragment, two elements neighbouring along K, is one
/// 32-bit load; rows padded by 8 (40 halves, 20 words: the fragment loads
/// of a warp, rows g = 0..7 and words q = 0..3, hit 32 distinct banks).
template <int MI> struct GemmSharedBF16 {
  static constexpr int kRows = kTileRows<MI>;
  static constexpr int kMmaK = 16;    // mma.sync m16n8k16
  static constexpr bool kF16 = false; // the halves are bf16
  static constexpr int kStride = kTileK + 8;
  alignas(16) uint16_t a[kTileRows<MI>][kStride];
  alignas(16) uint16_t b[kTileN][kStride];
  QOPT_HD void setA(int kk, int r, float v) {
    a[r][kk] = uint16_t(bf16Bits(v));
  }
  QOPT_HD void setB(int kk, int col, float v) {
    b[col][kk] = uint16_t(bf16Bits(v));
  }
  /// The two elements (kk, kk + 1) of row r of A (or column c of B), the
  /// lower in the low half: one 32-bit load (kk even, rows 80 bytes).
  QOPT_HD uint32_t pairA(int r, int kk) const { return word(&a[r][kk]); }
  QOPT_HD uint32_t pairB(int c, int kk) const { return word(&b[c][kk]); }
  static QOPT_HD uint32_t word(const uint16_t *p) {
#if defined(__CUDA_ARCH__)
    return *reinterpret_cast<const uint32_t *>(p);
#else
    return uint32_t(p[0]) | uint32_t(p[1]) << 16;
#endif
  }
};

/// The same layout holding f16 values (W8A8.cu's FP8 products: FP8 codes
/// are exactly f16 values), which the loaders store as bits; the mma is
/// m16n8k16's f16 form, whose fragments are bf16's.
template <int MI> struct GemmSharedF16 : GemmSharedBF16<MI> {
  static constexpr bool kF16 = true;
};

/// x rounded to tf32 (10 fraction bits; nearest, ties away from zero, as
/// cvt.rna.tf32.f32), as an f32 whose low 13 bits are zero: what the
/// `_tf32` entries multiply. Infinities stay; NaNs stay NaNs (quiet).
QOPT_HD float tf32Round(float x) {
  uint32_t u = bitsOfFloat(x);
  if ((u & 0x7F800000u) != 0x7F800000u)
    u = (u + 0x1000u) & ~0x1FFFu;
  else if (u & 0x7FFFFFu) // a NaN stays one in the 19 bits the mma reads
    u = (u | 0x400000u) & ~0x1FFFu;
  return floatFromBits(u);
}

/// The f32 tiles for the tf32 tensor-core entries (`_tf32`): GemmShared's
/// layout, the values rounded to tf32 as they are stored; the mma's
/// fragment registers are single elements.
template <int MI> struct GemmSharedTF32 : GemmShared<MI> {
  static constexpr int kMmaK = 8; // mma.sync m16n8k8
  QOPT_HD void setA(int kk, int r, float v) { this->a[kk][r] = tf32Round(v); }
  QOPT_HD void setB(int kk, int col, float v) {
    this->b[kk][col] = tf32Round(v);
  }
};
#if !defined(__CUDACC__)
/// (Host code: the tf32 tiles take the warps' mma loop, never the f32
/// per-thread one their base class would otherwise select.)
template <int MI>
void multiplyTile(const GemmSharedTF32<MI> &, int,
                  float (&)[MI][kMicro]) = delete;
#endif

/// How the GEMM multiplies: f32 on the CUDA cores, or the tiles rounded
/// to bf16 / tf32 for the tensor cores; GemmSharedOf: its tiles.
enum GemmPrecision : int { kGemmF32 = 0, kGemmBF16 = 1, kGemmTF32 = 2 };
template <int P, int MI> struct GemmSharedFor {
  using type = GemmShared<MI>;
};
template <int MI> struct GemmSharedFor<kGemmBF16, MI> {
  using type = GemmSharedBF16<MI>;
};
template <int MI> struct GemmSharedFor<kGemmTF32, MI> {
  using type = GemmSharedTF32<MI>;
};
template <int P, int MI>
using GemmSharedOf = typename GemmSharedFor<P, MI>::type;

/// One launch of Gemm.cu's kernels (passed by value; the same layout on
/// the host and the device). C += A·B over the blocks (x: 64 columns, y:
/// 64 or 16 rows, z: products of the batch), product z at outer indices
/// (i, j) = ((zBase + z) / o1, (zBase + z) % o1) offsetting each operand by
/// i·s?0 + j·s?1. B is f32 (b) or, for the quantized entries, B(k, n) =
/// dequant(W)[n, k] from the codes (which do not move with the batch), or
/// for the transposed ones (`_t`) B(k, n) = dequant(W)[k, n].
struct GemmParams {
  const float *a;
  int64_t sa0, sa1, sam, sak;
  const float *b;
  int64_t sb0, sb1, sbk, sbn;
  float *c;
  int64_t sc0, sc1, scm, scn;
  int64_t m, n, k;
  int64_t o1, zBase;
  // Quantized B (QLinearTile.h's WeightView: rows N, codes along K; K and
  // the group multiples of kTileK, rows of codes 4-byte aligned; for the
  // transposed entries rows K, codes along N, N a multiple of 32).
  const uint8_t *codes;
  int64_t codeRow;
  const float *scales;
  int64_t scaleRow;
  const int8_t *zp;
  int64_t zpRow, group;
  // A LoRA branch for the quantized entries (rank 0: none): C +=
  // loraScale · Z·Lᵀ as further K steps after A·B, Z (m x rank: the
  // branch's x·Aᵀ, strides sl0, sl1 along the outer loops, slm along rows,
  // contiguous along the rank) and L (n x rank: B, rows lRow apart).
  float *lz;
  int64_t sl0, sl1, slm;
  const float *lb;
  int64_t lRow, rank;
  float loraScale;
  int32_t overwrite; // C = … instead of C += …
  // The branch's down projection (la null: Z is given): A (rank x k, rows
  // laRow apart, not moving with the outer loops); the launch computes Z =
  // x·Aᵀ itself in blocks of their own (64 x 64 tiles of Z, which take the
  // first tickets: LoRASync.cuh) besides the tiles of C (tiles: C's grid,
  // x, y and products), over a one-dimensional grid of both.
  const float *la;
  int64_t laRow;
  uint32_t tiles[3];
  int32_t reserved;
};
// (bench/gpu/gemm.py and lora.py pack it as "<34qfi2q3Ii".)
static_assert(sizeof(GemmParams) == 312, "GemmParams' layout changed");

/// Loads thread t's 2·MI values of the A tile at (m0, k0) of A (rows x
/// cols, strides rs, cs).
/// (`coherent`: from L2, loadCoherent: Z, which blocks of the same launch
/// may have written.)
template <typename S>
QOPT_HD void loadA(const float *a, int64_t rows, int64_t cols, int64_t rs,
                   int64_t cs, int64_t m0, int64_t k0, int t, S &s,
                   bool coherent = false) {
  constexpr int kTileM = S::kRows;
  bool kContiguous = cs == 1;
  // (Not unrolled: 8 addresses would stay live across the K loop.)
  QOPT_UNROLL(1)
  for (int i = 0; i < kTileM * kTileK / kGemmThreads; ++i) {
    int e = t + kGemmThreads * i;
    int r = kContiguous ? e / kTileK : e % kTileM;
    int kk = kContiguous ? e % kTileK : e / kTileM;
    int64_t gr = m0 + r, gk = k0 + kk;
    const float *at = a + gr * rs + gk * cs;
    s.setA(kk, r,
           gr < rows && gk < cols ? (coherent ? loadCoherent(at) : *at) : 0.0f);
  }
}

/// Loads thread t's 8 values of the f32 B tile at (k0, n0).
template <typename S>
QOPT_HD void loadB(const float *b, int64_t rows, int64_t cols, int64_t rs,
                   int64_t cs, int64_t k0, int64_t n0, int t, S &s,
                   float scale = 1.0f) {
  bool nContiguous = cs == 1 || rs != 1;
  QOPT_UNROLL(1)
  for (int i = 0; i < kTileK * kTileN / kGemmThreads; ++i) {
    int e = t + kGemmThreads * i;
    int kk = nContiguous ? e / kTileN : e % kTileK;
    int col = nContiguous ? e % kTileN : e / kTileK;
    int64_t gk = k0 + kk, gc = n0 + col;
    s.setB(kk, col,
           gk < rows && gc < cols ? scale * b[gk * rs + gc * cs] : 0.0f);
  }
}

/// Loads thread t's 8 values of the quantized B tile at (k0, n0): 8
/// consecutive codes of one row of W (thread t: row t / 4, codes
/// 8·(t % 4) …), one scale and zero point (K steps stay inside a group).
template <int F, typename S>
QOPT_HD void loadQuantizedB(const WeightView &w, int64_t k0, int64_t n0, int t,
                            const float *nf4, S &s) {
  constexpr bool four = F == kInt4 || F == kUInt4 || F == kNF4;
  int row = t / 4, part = t % 4;
  int64_t gr = n0 + row;
  if (gr >= w.n) {
    QOPT_UNROLL()
    for (int i = 0; i < 8; ++i)
      s.setB(8 * part + i, row, 0.0f);
    return;
  }
  const uint8_t *src =
      w.codes + gr * w.codeRow + (k0 + 8 * part) / (four ? 2 : 1);
#if defined(__CUDA_ARCH__)
  uint32_t lo = __ldg(reinterpret_cast<const unsigned int *>(src));
  uint32_t hi =
      four ? 0u : __ldg(reinterpret_cast<const unsigned int *>(src) + 1);
#else
  uint32_t lo, hi = 0;
  memcpy(&lo, src, 4);
  if (!four)
    memcpy(&hi, src + 4, 4);
#endif
  int64_t g = k0 / w.group;
  float scale = scaleAt(w, gr * w.scaleRow + g);
  float zero = zeroPoint<F>(w, gr, g);
  QOPT_UNROLL()
  for (int i = 0; i < 8; ++i) {
    uint32_t raw = four ? (lo >> (4 * i)) & 15u
                        : ((i < 4 ? lo : hi) >> (8 * (i % 4))) & 255u;
    s.setB(8 * part + i, row, scale * (codeValue<F>(raw, nf4) - zero));
  }
}

/// Loads thread t's 8 values of the B tile at (k0, n0) for B = dequant(W)
/// itself (dX = dY·W: W's rows along K, its codes along N): 8 consecutive
/// codes of one row of W (thread t: row k0 + t / 8, codes n0 + 8·(t % 8)
/// …), one scale and zero point (8 codes at a multiple of 8 stay inside a
/// group, which is a multiple of 32). Needs W's columns to be a multiple
/// of 8.
template <int F, typename S>
QOPT_HD void loadQuantizedBT(const WeightView &w, int64_t k0, int64_t n0, int t,
                             const float *nf4, S &s) {
  constexpr bool four = F == kInt4 || F == kUInt4 || F == kNF4;
  int row = t / 8, part = t % 8;
  int64_t gr = k0 + row, gc = n0 + 8 * part;
  if (gr >= w.n || gc >= w.k) {
    QOPT_UNROLL()
    for (int i = 0; i < 8; ++i)
      s.setB(row, 8 * part + i, 0.0f);
    return;
  }
  const uint8_t *src = w.codes + gr * w.codeRow + gc / (four ? 2 : 1);
#if defined(__CUDA_ARCH__)
  uint32_t lo = __ldg(reinterpret_cast<const unsigned int *>(src));
  uint32_t hi =
      four ? 0u : __ldg(reinterpret_cast<const unsigned int *>(src) + 1);
#else
  uint32_t lo, hi = 0;
  memcpy(&lo, src, 4);
  if (!four)
    memcpy(&hi, src + 4, 4);
#endif
  int64_t g = gc / w.group;
  float scale = scaleAt(w, gr * w.scaleRow + g);
  float zero = zeroPoint<F>(w, gr, g);
  QOPT_UNROLL()
  for (int i = 0; i < 8; ++i) {
    uint32_t raw = four ? (lo >> (4 * i)) & 15u
                        : ((i < 4 ? lo : hi) >> (8 * (i % 4))) & 255u;
    s.setB(row, 8 * part + i, scale * (codeValue<F>(raw, nf4) - zero));
  }
}

/// Thread t's products of one K step: acc[i][j] += A(ty + 16i, ·) ·
/// B(·, tx + 16j) over the step, in the order of k.
template <int MI>
QOPT_HD void multiplyTile(const GemmShared<MI> &s, int t,
                          float (&acc)[MI][kMicro]) {
  int tx = t % 16, ty = t / 16;
  QOPT_UNROLL(8)
  for (int kk = 0; kk < kTileK; ++kk) {
    float a[MI], b[kMicro];
    QOPT_UNROLL()
    for (int i = 0; i < MI; ++i)
      a[i] = s.a[kk][ty + 16 * i];
    QOPT_UNROLL()
    for (int j = 0; j < kMicro; ++j)
      b[j] = s.b[kk][tx + 16 * j];
    QOPT_UNROLL()
    for (int i = 0; i < MI; ++i)
      QOPT_UNROLL()
    for (int j = 0; j < kMicro; ++j)
      acc[i][j] += a[i] * b[j];
  }
}

/// Adds thread t's outputs to C's tile at (m0, n0) (`overwrite`: stores
/// them).
template <int MI>
QOPT_HD void storeTile(float *c, int64_t rows, int64_t cols, int64_t rs,
                       int64_t cs, int64_t m0, int64_t n0, int t,
                       const float (&acc)[MI][kMicro], bool overwrite = false) {
  int tx = t % 16, ty = t / 16;
  QOPT_UNROLL()
  for (int i = 0; i < MI; ++i)
    QOPT_UNROLL()
  for (int j = 0; j < kMicro; ++j) {
    int64_t r = m0 + ty + 16 * i, col = n0 + tx + 16 * j;
    if (r < rows && col < cols)
      c[r * rs + col * cs] =
          (overwrite ? 0.0f : c[r * rs + col * cs]) + acc[i][j];
  }
}

//===-- Tensor cores: mma.sync on bf16 (m16n8k16) or tf32 (m16n8k8) -------===//
//
// The `_bf16` and `_tf32` entries split a block's tile among its 8 warps: with
// tiles of 64 rows a warp computes 32 x 16 outputs (warps 2 x 4: rows 32·(w /
// 4), columns 16·(w % 4)), two m16 by two n8 mma tiles; with tiles of 16 rows
// 16 x 8 (columns 8·w), one. A thread's 16 (or 4) accumulators are its
// fragments of those mma tiles, acc[mt·kMmaN + nt][e]: element e at row
// g + 8·(e / 2), column 2·q + e % 2 of mma tile (mt, nt), g = lane / 4,
// q = lane % 4 (PTX ISA, "Matrix Fragments for mma.m16n8k16 with floating
// point type").

template <int MI> constexpr int kMmaM = MI == 4 ? 2 : 1;
template <int MI> constexpr int kMmaN = MI == 4 ? 2 : 1;
static_assert(kMmaM<4> * kMmaN<4> == 4 && kMmaM<1> * kMmaN<1> == 1,
              "a thread's mma accumulators are its acc[MI][kMicro]");

/// The first row and column of warp w's outputs in the block's tile.
template <int MI> QOPT_HD int warpRow(int w) {
  return MI == 4 ? 32 * (w / 4) : 0;
}
template <int MI> QOPT_HD int warpColumn(int w) {
  return MI == 4 ? 16 * (w % 4) : 8 * w;
}

/// Lane `lane`'s A fragments (rows of mma tile mt) and B fragments
/// (columns of mma tile nt) of the k16 step at kk of warp w's outputs:
/// a[mt][i] holds A(r, c), A(r, c + 1) with r = g + 8·(i % 2), c = 2·q +
/// 8·(i / 2); b[nt][i] holds B(c, n), B(c + 1, n) with c = 2·q + 8·i,
/// n = g.
template <int MI>
QOPT_HD void mmaFragments(const GemmSharedBF16<MI> &s, int w, int lane, int kk,
                          uint32_t (&a)[kMmaM<MI>][4],
                          uint32_t (&b)[kMmaN<MI>][2]) {
  int g = lane / 4, q = lane % 4;
  QOPT_UNROLL()
  for (int mt = 0; mt < kMmaM<MI>; ++mt)
    QOPT_UNROLL()
  for (int i = 0; i < 4; ++i)
    a[mt][i] = s.pairA(warpRow<MI>(w) + 16 * mt + g + 8 * (i % 2),
                       kk + 2 * q + 8 * (i / 2));
  QOPT_UNROLL()
  for (int nt = 0; nt < kMmaN<MI>; ++nt)
    QOPT_UNROLL()
  for (int i = 0; i < 2; ++i)
    b[nt][i] = s.pairB(warpColumn<MI>(w) + 8 * nt + g, kk + 2 * q + 8 * i);
}

/// The same for the tf32 entries' k8 step at kk (m16n8k8): a[mt][i] holds
/// A(r, c) with r = g + 8·(i % 2), c = q + 4·(i / 2); b[nt][i] holds
/// B(q + 4·i, g).
template <int MI>
QOPT_HD void mmaFragments(const GemmSharedTF32<MI> &s, int w, int lane, int kk,
                          uint32_t (&a)[kMmaM<MI>][4],
                          uint32_t (&b)[kMmaN<MI>][2]) {
  int g = lane / 4, q = lane % 4;
  QOPT_UNROLL()
  for (int mt = 0; mt < kMmaM<MI>; ++mt)
    QOPT_UNROLL()
  for (int i = 0; i < 4; ++i)
    a[mt][i] = bitsOfFloat(
        s.a[kk + q + 4 * (i / 2)][warpRow<MI>(w) + 16 * mt + g + 8 * (i % 2)]);
  QOPT_UNROLL()
  for (int nt = 0; nt < kMmaN<MI>; ++nt)
    QOPT_UNROLL()
  for (int i = 0; i < 2; ++i)
    b[nt][i] = bitsOfFloat(s.b[kk + q + 4 * i][warpColumn<MI>(w) + 8 * nt + g]);
}

/// Thread t's share of its warp's products of one K step: each k step's
/// fragments, then mma(a, b, c) for each mma tile, c the thread's
/// accumulators of it. mma.sync is collective: every lane of the warp
/// makes the same calls in the same order; the CPU emulation runs this
/// for each lane, records the calls, then runs them for the 32 lanes
/// together (CUDAEmulation.cpp).
template <typename S, typename T, int MI, typename Mma>
QOPT_HD void multiplyWarpTile(const S &s, int t, T (&acc)[MI][kMicro],
                              Mma &&mma) {
  QOPT_UNROLL()
  for (int kk = 0; kk < kTileK; kk += S::kMmaK) {
    uint32_t a[kMmaM<MI>][4], b[kMmaN<MI>][2];
    mmaFragments(s, t / 32, t % 32, kk, a, b);
    QOPT_UNROLL()
    for (int mt = 0; mt < kMmaM<MI>; ++mt)
      QOPT_UNROLL()
    for (int nt = 0; nt < kMmaN<MI>; ++nt)
      mma(a[mt], b[nt], acc[mt * kMmaN<MI> + nt]);
  }
}

#if defined(__CUDA_ARCH__)
/// c += a·b on the tensor cores (one m16n8k8 tf32 tile of the warp).
__device__ __forceinline__ void mmaTF32(const uint32_t (&a)[4],
                                        const uint32_t (&b)[2], float (&c)[4]) {
  asm volatile("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 "
               "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
               "{%0, %1, %2, %3};"
               : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]),
                 "r"(b[1]));
}

/// c += a·b on the tensor cores (one m16n8k16 tile of the warp).
__device__ __forceinline__ void mmaBF16(const uint32_t (&a)[4],
                                        const uint32_t (&b)[2], float (&c)[4]) {
  asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
               "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
               "{%0, %1, %2, %3};"
               : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]),
                 "r"(b[1]));
}

/// c += a·b on the tensor cores (one m16n8k16 tile of f16 values).
__device__ __forceinline__ void mmaF16(const uint32_t (&a)[4],
                                       const uint32_t (&b)[2], float (&c)[4]) {
  asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 "
               "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
               "{%0, %1, %2, %3};"
               : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]),
                 "r"(b[1]));
}

/// The tensor-core entries' products of one K step (multiplyTile for
/// their tiles: bf16's or f16's k16 mma, or tf32's k8).
template <typename S, int MI, typename = std::enable_if_t<(S::kMmaK > 0)>>
__device__ __forceinline__ void multiplyTile(const S &s, int t,
                                             float (&acc)[MI][kMicro]) {
  multiplyWarpTile(
      s, t, acc,
      [](const uint32_t (&a)[4], const uint32_t (&b)[2], float (&c)[4]) {
        if constexpr (S::kMmaK != 16)
          mmaTF32(a, b, c);
        else if constexpr (S::kF16)
          mmaF16(a, b, c);
        else
          mmaBF16(a, b, c);
      });
}
#endif

/// Calls fn(i, e, row, column) for each of thread t's tensor-core
/// accumulators acc[i][e]: its row and column in the block's tile.
template <int MI, typename Fn> QOPT_HD void forEachMmaSlot(int t, Fn &&fn) {
  int w = t / 32, g = t % 32 / 4, q = t % 4;
  QOPT_UNROLL()
  for (int mt = 0; mt < kMmaM<MI>; ++mt)
    QOPT_UNROLL()
  for (int nt = 0; nt < kMmaN<MI>; ++nt)
    QOPT_UNROLL()
  for (int e = 0; e < 4; ++e)
    fn(mt * kMmaN<MI> + nt, e, warpRow<MI>(w) + 16 * mt + g + 8 * (e / 2),
       warpColumn<MI>(w) + 8 * nt + 2 * q + e % 2);
}

/// Calls fn(row, column, value) for each of thread t's tensor-core
/// outputs (its accumulator fragments) in the tile at (m0, n0).
template <int MI, typename Fn>
QOPT_HD void forEachMmaOutput(int64_t m0, int64_t n0, int t,
                              const float (&acc)[MI][kMicro], Fn &&fn) {
  forEachMmaSlot<MI>(
      t, [&](int i, int e, int r, int c) { fn(m0 + r, n0 + c, acc[i][e]); });
}

/// Adds thread t's tensor-core outputs (bf16 or tf32: the same
/// accumulator fragments) to C's tile at (m0, n0) (`overwrite`: stores
/// them).
template <int MI>
QOPT_HD void storeTileMma(float *c, int64_t rows, int64_t cols, int64_t rs,
                          int64_t cs, int64_t m0, int64_t n0, int t,
                          const float (&acc)[MI][kMicro],
                          bool overwrite = false) {
  forEachMmaOutput(m0, n0, t, acc, [&](int64_t r, int64_t col, float v) {
    if (r < rows && col < cols)
      c[r * rs + col * cs] = (overwrite ? 0.0f : c[r * rs + col * cs]) + v;
  });
}

/// storeTile for any kind of tile (on the tensor cores, kMmaK > 0, the
/// accumulators are mma fragments).
template <typename S, int MI>
QOPT_HD void storeTileOf(const S &, float *c, int64_t rows, int64_t cols,
                         int64_t rs, int64_t cs, int64_t m0, int64_t n0, int t,
                         const float (&acc)[MI][kMicro],
                         bool overwrite = false) {
  if constexpr (S::kMmaK > 0)
    storeTileMma(c, rows, cols, rs, cs, m0, n0, t, acc, overwrite);
  else
    storeTile(c, rows, cols, rs, cs, m0, n0, t, acc, overwrite);
}

/// The weight a quantized entry reads (`transposed`: W's rows along K).
QOPT_HD WeightView weightOf(const GemmParams &p, bool transposed) {
  return {p.codes,
          p.codeRow,
          p.scales,
          p.scaleRow,
          p.zp,
          p.zpRow,
          transposed ? p.k : p.n,
          transposed ? p.n : p.k,
          p.group};
}

/// The operands of product z of a launch.
struct GemmOperands {
  const float *a, *b;
  float *c;
  float *lz; // the LoRA branch's Z
};
QOPT_HD GemmOperands operandsOf(const GemmParams &p, int64_t z) {
  int64_t i = (p.zBase + z) / p.o1, j = (p.zBase + z) % p.o1;
  return {p.a + i * p.sa0 + j * p.sa1, p.b ? p.b + i * p.sb0 + j * p.sb1 : p.b,
          p.c + i * p.sc0 + j * p.sc1,
          p.lz ? p.lz + i * p.sl0 + j * p.sl1 : p.lz};
}

/// Loads thread t's share of the LoRA branch's K step at k0 (after A·B's
/// steps): Z's tile as A's, scale · L's as B's, then multiplyTile as for
/// any step (rank past the tile's end reads zeros).
template <typename S>
QOPT_HD void loadLoRATile(const GemmParams &p, const GemmOperands &op,
                          int64_t k0, int64_t m0, int64_t n0, int t, S &s) {
  loadA(op.lz, p.m, p.rank, p.slm, 1, m0, k0, t, s, /*coherent=*/true);
  // L(n, j) as B(j, n): rows along the rank (stride 1), columns n.
  loadB(p.lb, p.rank, p.n, 1, p.lRow, k0, n0, t, s, p.loraScale);
}

/// Loads thread t's share of the down projection's K step at k0 for Z's
/// tile at (m0, j0): x's tile as A's, A's rows as B's columns (B(k, j) =
/// A[j, k]).
template <typename S>
QOPT_HD void loadDownTile(const GemmParams &p, const GemmOperands &op,
                          int64_t k0, int64_t m0, int64_t j0, int t, S &s) {
  loadA(op.a, p.m, p.k, p.sam, p.sak, m0, k0, t, s);
  loadB(p.la, p.k, p.rank, 1, p.laRow, k0, j0, t, s);
}

/// The tiles of Z a launch with a fused down projection computes first:
/// C's row tiles and products times ceil(rank / 64).
QOPT_HD uint32_t downTiles(const GemmParams &p) {
  return p.la ? p.tiles[1] * p.tiles[2] *
                    uint32_t((p.rank + kTileN - 1) / kTileN)
              : 0;
}

/// Tile `index` (x fastest) of a grid with `tilesX` columns and p.tiles[1]
/// rows per product: (x, y, product).
struct TileIndex {
  uint32_t x, y, z;
};
QOPT_HD TileIndex tileAt(const GemmParams &p, uint32_t index, uint32_t tilesX) {
  uint32_t perProduct = tilesX * p.tiles[1];
  return {index % perProduct % tilesX, index % perProduct / tilesX,
          index / perProduct};
}

} // namespace qopt_cuda

#endif // QOPT_RUNTIME_KERNELS_CUDA_GEMMTILE_H
