//===- CUDAEmulation.cpp - The CUDA kernel library on the CPU -------------===//
//
// Models compiled with `qoptc --target cuda --cuda-emulate` run their
// generated kernels as CPU loops; their products call
// qopt_cuda_qlinear_emulated and qopt_cuda_sgemm_emulated, which plan the
// launches as the CUDA host library does (QLinearLaunch.h, GemmLaunch.h)
// and run each: for the GEMV every warp's 32 lanes (QLinearTile.h), summed
// in the order of the kernel's shuffles; for the GEMM every block's 256
// threads phase by phase between the barriers (GemmTile.h); for the
// attention (qopt_cuda_attention_emulated) every block's 128 threads the
// same way, each warp's lanes reduced as its shuffles do (AttentionTile.h). So
// the whole-model tests check the kernels' indexing and decoding and the launch
// planning against the CPU target without a GPU.
//
//===----------------------------------------------------------------------===//

#include "../CUDA/AdamWTile.h"
#include "../CUDA/AttentionTile.h"
#include "../CUDA/HadamardTile.h"
#include "../CUDA/NormTile.h"
#include "../CUDA/QLinearLaunch.h"
#include "../CUDA/QLinearTile.h"

#include "qopt/Support/QuantFormats.h"

#include <array>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <type_traits>
#include <vector>

extern "C" void qopt_kernel_check_failed(const char *message);

/// Stops the run: a planner refused a call the compiler made (`what`
/// cannot take it, `error` says why), a broken invariant.
static void refuse(const char *what, const char *error) {
  char message[256];
  std::snprintf(message, sizeof(message),
                "internal: %s cannot take this call: %s", what, error);
  qopt_kernel_check_failed(message);
}

namespace {

using namespace qopt_cuda;

/// The format's code table (QLinearTile.h's codeValue reads it; the
/// kernels fill theirs the same way, fillTable).
template <int F> const float *hostTable() {
  if constexpr (F == kNF4)
    return qopt::kNF4Codes.data();
  static const auto table = [] {
    std::array<float, 256> t{};
    for (int i = 0; i < kTableSize<F>; ++i)
      t[size_t(i)] = fp8Value<F>(uint32_t(i));
    return t;
  }();
  return table.data();
}

/// The sum lane 0 of a warp ends with after __shfl_xor_sync's butterfly
/// over the 32 lanes' values lanes[·][i].
float butterfly(const float (&lanes)[32][kMaxRows], int i) {
  float v[32];
  for (int lane = 0; lane < 32; ++lane)
    v[lane] = lanes[lane][i];
  for (int offset = 16; offset > 0; offset /= 2) {
    float next[32];
    for (int lane = 0; lane < 32; ++lane)
      next[lane] = v[lane] + v[lane ^ offset];
    for (int lane = 0; lane < 32; ++lane)
      v[lane] = next[lane];
  }
  return v[0];
}

template <int F> void runWarps(const GemvLaunch &l) {
  const float *nf4 = hostTable<F>();
  WeightView w{l.codes, l.codeRow, l.scales, l.scaleRow, l.zp,
               l.zpRow, l.n,       l.k,      l.group};
  setNested(w, l.dq, l.dq ? l.dq->table : nullptr);
  // A fused down projection's warps (the blocks with the first tickets)
  // write z before any warp of W reads it.
  if (l.lora.down)
    for (int64_t j = 0; j < l.lora.rank; ++j)
      for (int64_t base = 0; base < l.m; base += kMaxRows) {
        int rows = int(l.m - base < kMaxRows ? l.m - base : kMaxRows);
        float lanes[32][kMaxRows] = {};
        for (int lane = 0; lane < 32; ++lane)
          laneDown(l.lora, j, l.k, lane, l.x + base * l.ldx, l.ldx, rows,
                   lanes[lane]);
        for (int i = 0; i < rows; ++i)
          l.lora.z[(base + i) * l.lora.ldz + j] = butterfly(lanes, i);
      }
  for (int64_t r = 0; r < l.n; ++r)
    for (int64_t base = 0; base < l.m; base += kMaxRows) {
      int rows = int(l.m - base < kMaxRows ? l.m - base : kMaxRows);
      float lanes[32][kMaxRows] = {};
      LoRAView lora = l.lora;
      if (lora.z)
        lora.z += base * lora.ldz;
      for (int lane = 0; lane < 32; ++lane) {
        laneSums<F, float>(w, r, lane, l.x + base * l.ldx, l.ldx, rows, nf4,
                           lanes[lane]);
        laneLoRA(lora, r, lane, rows, lanes[lane]);
      }
      for (int i = 0; i < rows; ++i) {
        float &out = l.y[(base + i) * l.ldy + r];
        out = (l.beta == 0.0f ? 0.0f : l.beta * out) + butterfly(lanes, i);
      }
    }
}

/// c += ma·mb for the 32 lanes' accumulator fragments c (PTX ISA: c_i at
/// row g + 8·(i / 2), column 2·q + i % 2): each output its accumulator plus
/// the K products, exact in f32, added in the order of k (the hardware's
/// order and intermediate rounding are its own: tests allow for that).
template <int K>
void mmaAccumulate(const float (&ma)[16][K], const float (&mb)[K][8],
                   float (&c)[32][4]) {
  for (int lane = 0; lane < 32; ++lane)
    for (int i = 0; i < 4; ++i) {
      int row = (lane >> 2) + (i < 2 ? 0 : 8), col = (lane % 4) * 2 + (i & 1);
      for (int k = 0; k < K; ++k)
        c[lane][i] += ma[row][k] * mb[k][col];
    }
}

/// The value of bf16 bits.
float bf16Value(uint32_t h) { return floatFromBits(h << 16); }

/// The value of IEEE binary16 bits (subnormals, infinities and NaNs
/// included).
float f16Value(uint32_t h) {
  int e = int(h >> 10) & 31, m = int(h & 1023u);
  float magnitude = e == 0    ? std::ldexp(float(m), -24)
                    : e == 31 ? (m ? NAN : INFINITY)
                              : std::ldexp(float(m + 1024), e - 25);
  return (h & 0x8000u) ? -magnitude : magnitude;
}

/// mma.sync.aligned.m16n8k16.row.col.f32.{bf16,f16}.{bf16,f16}.f32 for the
/// 32 lanes of a warp, c += a·b (`value`: the halves' value), the fragments
/// unpacked as the PTX ISA's tables place them ("Matrix Fragments for
/// mma.m16n8k16 with floating point type": written here from the tables,
/// not from GemmTile.h's mmaFragments, whose placement they check).
template <float (*value)(uint32_t)>
void mmaEmulated(const uint32_t (&a)[32][4], const uint32_t (&b)[32][2],
                 float (&c)[32][4]) {
  auto element = [](uint32_t reg, int e) {
    return value(e % 2 ? reg >> 16 : reg & 0xFFFFu);
  };
  float ma[16][16], mb[16][8];
  for (int lane = 0; lane < 32; ++lane) {
    int group = lane >> 2, inGroup = lane % 4;
    for (int i = 0; i < 8; ++i) {
      int row = (i < 2 || (i >= 4 && i < 6)) ? group : group + 8;
      int col = inGroup * 2 + (i & 1) + (i >= 4 ? 8 : 0);
      ma[row][col] = element(a[lane][i / 2], i);
    }
    for (int i = 0; i < 4; ++i)
      mb[inGroup * 2 + (i & 1) + (i >= 2 ? 8 : 0)][group] =
          element(b[lane][i / 2], i);
  }
  mmaAccumulate(ma, mb, c);
}

/// mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 for the 32 lanes of a
/// warp, from the same section's tables for m16n8k8 (.tf32): A(g, q),
/// A(g + 8, q), A(g, q + 4), A(g + 8, q + 4); B(q, g), B(q + 4, g); the
/// accumulators as m16n8k16's.
void mmaTF32Emulated(const uint32_t (&a)[32][4], const uint32_t (&b)[32][2],
                     float (&c)[32][4]) {
  float ma[16][8], mb[8][8];
  for (int lane = 0; lane < 32; ++lane) {
    int group = lane >> 2, inGroup = lane % 4;
    for (int i = 0; i < 4; ++i)
      ma[(i == 0 || i == 2) ? group : group + 8]
        [i < 2 ? inGroup : inGroup + 4] = floatFromBits(a[lane][i]);
    for (int i = 0; i < 2; ++i)
      mb[i == 0 ? inGroup : inGroup + 4][group] = floatFromBits(b[lane][i]);
  }
  mmaAccumulate(ma, mb, c);
}

/// mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 for the 32 lanes of a
/// warp, from the PTX ISA's tables for m16n8k32 (.s8): A's registers hold
/// a0…a15, four codes each (the first in the low byte), ai at row g for
/// i < 4 or 8 <= i < 12 (else g + 8), column 4q + i % 4 (+ 16 for i >= 8);
/// B's b0…b7 at row 4q + i % 4 (+ 16 for i >= 4), column g; the int32
/// accumulators as m16n8k16's. Integer sums: exact in any order.
void mmaS8Emulated(const uint32_t (&a)[32][4], const uint32_t (&b)[32][2],
                   int32_t (&c)[32][4]) {
  int32_t ma[16][32], mb[32][8];
  auto code = [](uint32_t reg, int i) {
    return int32_t(int8_t(uint8_t(reg >> (8 * (i % 4)))));
  };
  for (int lane = 0; lane < 32; ++lane) {
    int group = lane >> 2, inGroup = lane % 4;
    for (int i = 0; i < 16; ++i) {
      int row = (i < 4 || (i >= 8 && i < 12)) ? group : group + 8;
      ma[row][inGroup * 4 + i % 4 + (i >= 8 ? 16 : 0)] =
          code(a[lane][i / 4], i);
    }
    for (int i = 0; i < 8; ++i)
      mb[inGroup * 4 + i % 4 + (i >= 4 ? 16 : 0)][group] =
          code(b[lane][i / 4], i);
  }
  for (int lane = 0; lane < 32; ++lane)
    for (int i = 0; i < 4; ++i) {
      int row = (lane >> 2) + (i < 2 ? 0 : 8), col = (lane % 4) * 2 + (i & 1);
      for (int k = 0; k < 32; ++k)
        c[lane][i] += ma[row][k] * mb[k][col];
    }
}

/// Every thread's products of one K step: per thread on the CUDA cores;
/// on the tensor cores each warp's lanes' fragments (GemmTile.h's
/// mmaFragments), then its mma tiles.
template <int MI>
void multiplyBlock(const GemmShared<MI> &s,
                   float (&acc)[kGemmThreads][MI][kMicro]) {
  for (int t = 0; t < kGemmThreads; ++t)
    multiplyTile(s, t, acc[t]);
}
/// A K step on the tensor cores: each warp's lanes run GemmTile.h's
/// multiplyWarpTile in turn, their mma calls recorded (fragments and the
/// accumulators' addresses), then each call runs for the 32 lanes
/// together, in order (a call's accumulators are read when it runs).
template <typename S, typename T, int MI>
void multiplyWarps(const S &s, T (&acc)[kGemmThreads][MI][kMicro],
                   void (*mma)(const uint32_t (&)[32][4],
                               const uint32_t (&)[32][2], T (&)[32][4])) {
  struct Call {
    uint32_t a[32][4], b[32][2];
    T *c[32];
  };
  static thread_local std::vector<Call> calls;
  for (int w = 0; w < kGemmThreads / 32; ++w) {
    calls.clear();
    for (int lane = 0; lane < 32; ++lane) {
      size_t i = 0;
      multiplyWarpTile(
          s, 32 * w + lane, acc[32 * w + lane],
          [&](const uint32_t (&a)[4], const uint32_t (&b)[2], T(&c)[4]) {
            if (i == calls.size()) {
              if (lane)
                refuse("the tensor-core emulation",
                       "lanes made different mma calls");
              calls.emplace_back();
            }
            std::memcpy(calls[i].a[lane], a, sizeof(a));
            std::memcpy(calls[i].b[lane], b, sizeof(b));
            calls[i].c[lane] = c;
            ++i;
          });
      if (i != calls.size())
        refuse("the tensor-core emulation", "lanes made different mma calls");
    }
    for (Call &call : calls) {
      T c[32][4];
      for (int lane = 0; lane < 32; ++lane)
        std::memcpy(c[lane], call.c[lane], sizeof(c[lane]));
      mma(call.a, call.b, c);
      for (int lane = 0; lane < 32; ++lane)
        std::memcpy(call.c[lane], c[lane], sizeof(c[lane]));
    }
  }
}
template <typename S, int MI, typename = std::enable_if_t<(S::kMmaK > 0)>>
void multiplyBlock(const S &s, float (&acc)[kGemmThreads][MI][kMicro]) {
  if constexpr (S::kMmaK != 16)
    multiplyWarps(s, acc, mmaTF32Emulated);
  else if constexpr (S::kF16)
    multiplyWarps(s, acc, mmaEmulated<f16Value>);
  else
    multiplyWarps(s, acc, mmaEmulated<bf16Value>);
}

/// Every block of a GEMM launch, its threads' phases in turn (with a
/// fused down projection, Z's tiles first: they hold the first tickets);
/// P: kGemmF32, or the tensor-core entries.
template <int F, bool T, int MI, int P> void runBlocks(const GemmLaunch &l) {
  const GemmParams &p = l.p;
  const float *nf4 = F >= 0 ? hostTable<(F >= 0 ? F : 0)>() : nullptr;
  WeightView w = weightOf(p, T);
  setNested(w, l.dq, l.dq ? l.dq->table : nullptr);
  static thread_local GemmSharedOf<P, MI> s;
  static thread_local float acc[kGemmThreads][MI][kMicro];
  // K steps over `extent`: every thread's load(k0, t), (the barrier,)
  // then every thread's products.
  auto steps = [&](int64_t extent, auto &&load) {
    for (int64_t k0 = 0; k0 < extent; k0 += kTileK) {
      for (int t = 0; t < kGemmThreads; ++t)
        load(k0, t);
      multiplyBlock(s, acc);
    }
  };
  TileIndex grid{l.gridX, l.gridY, l.gridZ};
  if (p.la) {
    uint32_t down = downTiles(p);
    for (uint32_t i = 0; i < down; ++i) {
      TileIndex d = tileAt(p, i, down / p.tiles[1] / p.tiles[2]);
      GemmOperands op = operandsOf(p, d.z);
      int64_t m0 = int64_t(d.y) * kTileRows<MI>, j0 = int64_t(d.x) * kTileN;
      std::memset(acc, 0, sizeof(acc));
      steps(p.k,
            [&](int64_t k0, int t) { loadDownTile(p, op, k0, m0, j0, t, s); });
      for (int t = 0; t < kGemmThreads; ++t)
        storeTileOf(s, op.lz, p.m, p.rank, p.slm, 1, m0, j0, t, acc[t], true);
    }
    grid = {p.tiles[0], p.tiles[1], p.tiles[2]};
  }
  for (unsigned z = 0; z < grid.z; ++z) {
    GemmOperands op = operandsOf(p, z);
    for (unsigned y = 0; y < grid.y; ++y)
      for (unsigned x = 0; x < grid.x; ++x) {
        int64_t m0 = int64_t(y) * kTileRows<MI>, n0 = int64_t(x) * kTileN;
        std::memset(acc, 0, sizeof(acc));
        steps(p.k, [&](int64_t k0, int t) {
          loadA(op.a, p.m, p.k, p.sam, p.sak, m0, k0, t, s);
          if constexpr (F >= 0 && T)
            loadQuantizedBT<F>(w, k0, n0, t, nf4, s);
          else if constexpr (F >= 0)
            loadQuantizedB<F>(w, k0, n0, t, nf4, s);
          else
            loadB(op.b, p.k, p.n, p.sbk, p.sbn, k0, n0, t, s);
        });
        if constexpr (F >= 0 && !T)
          steps(p.rank, [&](int64_t k0, int t) {
            loadLoRATile(p, op, k0, m0, n0, t, s);
          });
        for (int t = 0; t < kGemmThreads; ++t)
          storeTileOf(s, op.c, p.m, p.n, p.scm, p.scn, m0, n0, t, acc[t],
                      p.overwrite != 0);
      }
  }
}

template <int P> void runGemmOn(const GemmLaunch &l) {
  if (l.format < 0)
    return l.skinny ? runBlocks<-1, false, 1, P>(l)
                    : runBlocks<-1, false, 4, P>(l);
  withFormat(l.format, [&](auto f) {
    if (l.transposed)
      runBlocks<decltype(f)::value, true, 4, P>(l);
    else
      runBlocks<decltype(f)::value, false, 4, P>(l);
  });
}

void runGemm(const GemmLaunch &l) {
  if (l.precision == kGemmBF16)
    runGemmOn<kGemmBF16>(l);
  else if (l.precision == kGemmTF32)
    runGemmOn<kGemmTF32>(l);
  else
    runGemmOn<kGemmF32>(l);
}

} // namespace

/// qopt_cuda_sgemm and its _overwrite (C = A·B), f32 and on the tensor
/// cores (_bf16, _tf32), on the CPU.
#define QOPT_SGEMM_EMULATED(name, overwrite, precision)                        \
  extern "C" void name(int64_t o0, int64_t o1, int64_t m, int64_t n,           \
                       int64_t k, int64_t pa, int64_t oa, int64_t sa0,         \
                       int64_t sa1, int64_t sam, int64_t sak, int64_t pb,      \
                       int64_t ob, int64_t sb0, int64_t sb1, int64_t sbk,      \
                       int64_t sbn, int64_t pc, int64_t oc, int64_t sc0,       \
                       int64_t sc1, int64_t scm, int64_t scn) {                \
    planSgemm(o0, o1, m, n, k, pa, oa, sa0, sa1, sam, sak, pb, ob, sb0, sb1,   \
              sbk, sbn, pc, oc, sc0, sc1, scm, scn, runGemm, overwrite,        \
              precision);                                                      \
  }
QOPT_SGEMM_EMULATED(qopt_cuda_sgemm_emulated, false, kGemmF32)
QOPT_SGEMM_EMULATED(qopt_cuda_sgemm_emulated_overwrite, true, kGemmF32)
QOPT_SGEMM_EMULATED(qopt_cuda_sgemm_bf16_emulated, false, kGemmBF16)
QOPT_SGEMM_EMULATED(qopt_cuda_sgemm_bf16_emulated_overwrite, true, kGemmBF16)
QOPT_SGEMM_EMULATED(qopt_cuda_sgemm_tf32_emulated, false, kGemmTF32)
QOPT_SGEMM_EMULATED(qopt_cuda_sgemm_tf32_emulated_overwrite, true, kGemmTF32)

namespace {
/// Every block of a W8A8 launch (W8A8Tile.h): the token quantization's
/// warps (their maximum is order-free), or the GEMM's threads phase by
/// phase between the barriers.
/// Calls block(product, m0, n0) for each block of a W8A8 GEMM launch.
template <int MI, typename Block>
void forEachW8A8Block(const W8A8Launch &l, Block &&block) {
  for (unsigned z = 0; z < l.gridZ; ++z) {
    W8A8Product product = w8a8Product(l.p, z);
    for (unsigned y = 0; y < l.gridY; ++y)
      for (unsigned x = 0; x < l.gridX; ++x)
        block(product, w8a8Row0(l.p, y, kTileRows<MI>), int64_t(x) * kTileN);
  }
}

template <int F, int MI> void runW8A8Blocks(const W8A8Launch &l) {
  const W8A8Params &p = l.p;
  static thread_local W8A8Shared<MI> s;
  static thread_local int32_t acc[kGemmThreads][MI][kMicro];
  static thread_local float sum[kGemmThreads][MI][kMicro];
  forEachW8A8Block<MI>(
      l, [&](const W8A8Product &product, int64_t m0, int64_t n0) {
        std::memset(acc, 0, sizeof(acc));
        std::memset(sum, 0, sizeof(sum));
        GroupCursor group(p);
        for (int64_t k0 = 0; k0 < p.k; k0 += kW8TileK) {
          for (int t = 0; t < kGemmThreads; ++t) {
            loadCodesA(p, product.a, m0, k0, t, s);
            loadCodesB<F, MI>(p, k0, group.g, n0, t, s);
          }
          multiplyWarps(s, acc, mmaS8Emulated);
          for (int t = 0; group.endsAt(k0) && t < kGemmThreads; ++t)
            flushGroup(p, n0, group.g, t, acc[t], sum[t]);
          if (group.endsAt(k0))
            group.next(p);
        }
        for (int t = 0; t < kGemmThreads; ++t)
          storeW8A8(p, product.steps, product.c, m0, n0, t, sum[t]);
      });
}

/// The same for the FP8 entries (E4M3 tokens, an FP8 weight F): the
/// loads, the warps' mma calls, the store.
template <int F, int MI> void runW8A8FP8Blocks(const W8A8Launch &l) {
  const W8A8Params &p = l.p;
  static thread_local GemmSharedF16<MI> s;
  static thread_local float acc[kGemmThreads][MI][kMicro];
  forEachW8A8Block<MI>(
      l, [&](const W8A8Product &product, int64_t m0, int64_t n0) {
        std::memset(acc, 0, sizeof(acc));
        for (int64_t k0 = 0; k0 < p.k; k0 += kW8TileK) {
          for (int t = 0; t < kGemmThreads; ++t) {
            loadFP8A(p, product.a, m0, k0, t, s);
            loadFP8B<F, MI>(p, k0, n0, t, s);
          }
          multiplyBlock(s, acc);
        }
        for (int t = 0; t < kGemmThreads; ++t)
          storeW8A8<true>(p, product.steps, product.c, m0, n0, t, acc[t]);
      });
}

void runW8A8(const W8A8Launch &l) {
  if (!l.gemm) {
    for (unsigned z = 0; z < l.gridY; ++z)
      for (int64_t r = 0; r < l.q.m; ++r) {
        TokenRow row = tokenRow(l.q, z, r);
        float amax = 0.0f;
        for (int lane = 0; lane < 32; ++lane)
          amax = std::fmax(amax, tokenPartialMax(l.q, row, lane));
        float step = tokenStepOf(amax, l.q.bits);
        for (int lane = 0; lane < 32; ++lane)
          tokenStore(l.q, row, lane, step);
      }
    return;
  }
  switch (l.format) {
  case kFP8E4M3:
    return l.skinny ? runW8A8FP8Blocks<kFP8E4M3, 1>(l)
                    : runW8A8FP8Blocks<kFP8E4M3, 4>(l);
  case kFP8E5M2:
    return l.skinny ? runW8A8FP8Blocks<kFP8E5M2, 1>(l)
                    : runW8A8FP8Blocks<kFP8E5M2, 4>(l);
  case kInt4:
    return l.skinny ? runW8A8Blocks<kInt4, 1>(l) : runW8A8Blocks<kInt4, 4>(l);
  case kUInt4:
    return l.skinny ? runW8A8Blocks<kUInt4, 1>(l) : runW8A8Blocks<kUInt4, 4>(l);
  default:
    return l.skinny ? runW8A8Blocks<kInt8, 1>(l) : runW8A8Blocks<kInt8, 4>(l);
  }
}

void emulateQLinear(int64_t format, int64_t group, int64_t flags, int64_t o0,
                    int64_t o1, int64_t m, int64_t n, int64_t k, int64_t pa,
                    int64_t oa, int64_t sa0, int64_t sa1, int64_t sam,
                    int64_t sak, int64_t pw, int64_t ow, int64_t sw, int64_t ps,
                    int64_t os, int64_t ss, int64_t pz, int64_t oz, int64_t sz,
                    int64_t pc, int64_t oc, int64_t sc0, int64_t sc1,
                    int64_t scm, int64_t scn, const LoRAArgs *lora,
                    const NestedScales *dq, int64_t pst = 0, int64_t ost = 0) {
  if (flags & kQLinearPerToken) {
    if (lora || dq)
      refuse("the CUDA W8A8 product", "a LoRA branch or nested scales");
    std::vector<char> scratch;
    auto allocate = [&](size_t bytes) {
      scratch.resize(bytes + 256);
      return reinterpret_cast<void *>(
          (reinterpret_cast<uintptr_t>(scratch.data()) + 255) / 256 * 256);
    };
    if (const char *error = planW8A8(
            /*aligned=*/false, format, group, flags, o0, o1, m, n, k, pa, oa,
            sa0, sa1, sam, sak, pw, ow, sw, ps, os, ss, pz, oz, sz, pc, oc, sc0,
            sc1, scm, scn, pst, ost, allocate, runW8A8))
      refuse("the CUDA W8A8 product", error);
    return;
  }
  const char *error = planQLinear(
      /*aligned=*/false, format, group, flags, o0, o1, m, n, k, pa, oa, sa0,
      sa1, sam, sak, pw, ow, sw, ps, os, ss, pz, oz, sz, pc, oc, sc0, sc1, scm,
      scn, lora, dq,
      [](const GemvLaunch &l) {
        withFormat(l.format, [&](auto f) { runWarps<decltype(f)::value>(l); });
      },
      runGemm);
  if (error)
    refuse("the CUDA GEMV", error);
}
} // namespace

extern "C" void qopt_cuda_qlinear_emulated(
    int64_t format, int64_t group, int64_t flags, int64_t o0, int64_t o1,
    int64_t m, int64_t n, int64_t k, int64_t pa, int64_t oa, int64_t sa0,
    int64_t sa1, int64_t sam, int64_t sak, int64_t pw, int64_t ow, int64_t sw,
    int64_t ps, int64_t os, int64_t ss, int64_t pz, int64_t oz, int64_t sz,
    int64_t pc, int64_t oc, int64_t sc0, int64_t sc1, int64_t scm, int64_t scn,
    int64_t pq, int64_t oq, int64_t pabs, int64_t oabs, int64_t qblock,
    int64_t qoffset, int64_t ptab, int64_t otab) {
  // (Given per-token codes: the nested scales' first slots hold the steps.)
  if ((flags & kQLinearPerToken) && (flags & kQLinearCodes)) {
    emulateQLinear(format, group, flags, o0, o1, m, n, k, pa, oa, sa0, sa1, sam,
                   sak, pw, ow, sw, ps, os, ss, pz, oz, sz, pc, oc, sc0, sc1,
                   scm, scn, nullptr, nullptr, pq, oq);
    return;
  }
  NestedScales dq;
  bool nested =
      nestedScales(pq, oq, pabs, oabs, qblock, qoffset, ptab, otab, dq);
  emulateQLinear(format, group, flags, o0, o1, m, n, k, pa, oa, sa0, sa1, sam,
                 sak, pw, ow, sw, ps, os, ss, pz, oz, sz, pc, oc, sc0, sc1, scm,
                 scn, nullptr, nested ? &dq : nullptr);
}

/// qopt_cuda_qlinear_lora's arguments (CUDAHost.cpp), run on the CPU.
extern "C" void qopt_cuda_qlinear_lora_emulated(
    int64_t format, int64_t group, int64_t flags, int64_t o0, int64_t o1,
    int64_t m, int64_t n, int64_t k, int64_t pa, int64_t oa, int64_t sa0,
    int64_t sa1, int64_t sam, int64_t sak, int64_t pw, int64_t ow, int64_t sw,
    int64_t ps, int64_t os, int64_t ss, int64_t pz, int64_t oz, int64_t sz,
    int64_t pc, int64_t oc, int64_t sc0, int64_t sc1, int64_t scm, int64_t scn,
    int64_t pq, int64_t oq, int64_t pabs, int64_t oabs, int64_t qblock,
    int64_t qoffset, int64_t ptab, int64_t otab, int64_t pl, int64_t ol,
    int64_t sl0, int64_t sl1, int64_t slm, int64_t slr, int64_t pb, int64_t ob,
    int64_t sb0, int64_t sb1, int64_t sbn, int64_t sbr, int64_t rank,
    int64_t scaleBits, int64_t pd, int64_t od, int64_t sd0, int64_t sd1,
    int64_t sdr, int64_t sdk) {
  NestedScales dq;
  bool nested =
      nestedScales(pq, oq, pabs, oabs, qblock, qoffset, ptab, otab, dq);
  LoRAArgs lora{
      pl, ol,  sl0, sl1, slm, slr,  pb,
      ob, sb0, sb1, sbn, sbr, rank, floatFromBits(uint32_t(scaleBits)),
      pd, od,  sd0, sd1, sdr, sdk};
  emulateQLinear(format, group, flags, o0, o1, m, n, k, pa, oa, sa0, sa1, sam,
                 sak, pw, ow, sw, ps, os, ss, pz, oz, sz, pc, oc, sc0, sc1, scm,
                 scn, &lora, nested ? &dq : nullptr);
}

namespace {
/// The value every lane holds after the kernel's __shfl_xor_sync butterfly
/// (the same in each lane: every step adds two lanes' values, which
/// commutes) of the sum or maximum of v.
template <bool Max> float warpReduce(const float (&lanes)[32]) {
  float v[32];
  std::memcpy(v, lanes, sizeof(v));
  for (int offset = 16; offset > 0; offset /= 2) {
    float next[32];
    for (int lane = 0; lane < 32; ++lane)
      next[lane] = Max ? std::fmax(v[lane], v[lane ^ offset])
                       : v[lane] + v[lane ^ offset];
    std::memcpy(v, next, sizeof(v));
  }
  return v[0];
}

/// Attention.cu's kernel, block by block: the 128 threads' loads between
/// barriers, then each warp's rows with its 32 lanes in step.
void emulateAttention(const AttentionParams &p, int64_t blocks) {
  auto sh = std::make_unique<AttentionShared>();
  for (int64_t block = 0; block < blocks; ++block) {
    AttentionBlock w = attnBlock(p, block);
    for (int t = 0; t < kAttnThreads; ++t)
      attnLoadQ(p, w, *sh, t);
    AttnRow rows[kAttnRows][32];
    for (auto &row : rows)
      for (AttnRow &lane : row)
        attnRowInit(lane);
    int64_t end = attnKeyEnd(p, w);
    for (int64_t key0 = 0; key0 < end; key0 += kAttnKeys) {
      for (int t = 0; t < kAttnThreads; ++t)
        attnLoadKV(p, w, *sh, key0, t);
      for (int r = 0; r < kAttnRows && w.row0 + r < p.rows; ++r) {
        float s[32], pl[32];
        for (int lane = 0; lane < 32; ++lane)
          s[lane] = attnScore(p, w, *sh, r, key0, lane);
        float stepMax = warpReduce<true>(s);
        float alpha[32];
        for (int lane = 0; lane < 32; ++lane)
          pl[lane] = std::exp(s[lane] -
                              attnShift(rows[r][lane], stepMax, alpha[lane]));
        float pSum = warpReduce<false>(pl);
        for (int lane = 0; lane < 32; ++lane) {
          attnRescale(rows[r][lane], stepMax, alpha[lane], pSum);
          for (int jj = 0; jj < kAttnKeys; ++jj)
            attnAccumulate(rows[r][lane], *sh, jj, pl[jj], lane);
        }
      }
    }
    for (int r = 0; r < kAttnRows && w.row0 + r < p.rows; ++r)
      for (int lane = 0; lane < 32; ++lane)
        attnStore(p, w, rows[r][lane], r, lane);
  }
}
} // namespace

/// qopt_cuda_attention's arguments (CUDAHost.cpp), run on the CPU.
extern "C" void qopt_cuda_attention_emulated(QOPT_ATTENTION_PARAMS) {
  AttentionParams p;
  int64_t blocks = 0;
  if (const char *error = planAttention(
          flags, scale, softcap, QOPT_VIEW4(q), QOPT_VIEW4(k), QOPT_VIEW4(v),
          QOPT_VIEW4(m), QOPT_VIEW4(y), p, blocks)) {
    refuse("the CUDA attention", error);
    return;
  }
  emulateAttention(p, blocks);
}

/// The same for a bool mask (`flags` says which).
extern "C" void qopt_cuda_attention_emulated_i1(QOPT_ATTENTION_PARAMS)
    __attribute__((alias("qopt_cuda_attention_emulated")));

namespace {
/// Attention.cu's backward kernels, block by block as emulateAttention
/// runs the forward: the dQ kernel's blocks (they write the rows'
/// statistics), then the dK/dV kernel's.
void emulateAttentionBackward(const AttentionBwdParams &bp, int64_t dqBlocks,
                              int64_t dkvBlocks) {
  const AttentionParams &p = bp.f;
  auto sh = std::make_unique<AttentionBwdShared>();
  const int warps = kAttnThreads / 32;
  for (int64_t block = 0; block < dqBlocks; ++block) {
    int64_t bh = block / p.tiles, b = bh / p.heads, h = bh % p.heads;
    int64_t row0 = (block % p.tiles) * kAttnBwdRows;
    for (int t = 0; t < kAttnThreads; ++t)
      attnBwdLoadRows(bp, *sh, b, h, row0, t);
    AttnRow rows[kAttnBwdRows][32];
    float delta[kAttnBwdRows] = {}, lse[kAttnBwdRows];
    for (int r = 0; r < kAttnBwdRows; ++r) {
      for (AttnRow &lane : rows[r])
        attnRowInit(lane);
      float parts[32];
      for (int lane = 0; lane < 32; ++lane)
        parts[lane] = row0 + r < p.rows
                          ? attnDeltaPart(bp, *sh, b, h, row0 + r, r, lane)
                          : 0.0f;
      delta[r] = row0 + r < p.rows ? warpReduce<false>(parts) : 0.0f;
    }
    int64_t end = attnKeyEnd(p, row0, kAttnBwdRows);
    for (int64_t key0 = 0; key0 < end; key0 += kAttnKeys) {
      for (int t = 0; t < kAttnThreads; ++t)
        attnBwdLoadKV(bp, *sh, b, h / p.group, key0, t);
      for (int r = 0; r < kAttnBwdRows && row0 + r < p.rows; ++r) {
        float s[32], e[32], alpha[32], capped;
        for (int lane = 0; lane < 32; ++lane)
          s[lane] = attnScoreAt(p, b, h, row0 + r, key0 + lane, sh->q[r],
                                sh->k[lane], capped);
        float stepMax = warpReduce<true>(s);
        for (int lane = 0; lane < 32; ++lane)
          e[lane] = std::exp(s[lane] -
                             attnShift(rows[r][lane], stepMax, alpha[lane]));
        float sum = warpReduce<false>(e);
        for (int lane = 0; lane < 32; ++lane)
          attnRescale(rows[r][lane], stepMax, alpha[lane], sum);
      }
    }
    for (int r = 0; r < kAttnBwdRows; ++r) {
      lse[r] = attnLse(rows[r][0]);
      if (row0 + r < p.rows) {
        float *st = attnStats(bp, b, h, row0 + r);
        st[0] = lse[r];
        st[1] = delta[r];
      }
    }
    float dq[kAttnBwdRows][32][kAttnOut] = {};
    for (int64_t key0 = 0; key0 < end; key0 += kAttnKeys) {
      for (int t = 0; t < kAttnThreads; ++t)
        attnBwdLoadKV(bp, *sh, b, h / p.group, key0, t);
      for (int r = 0; r < kAttnBwdRows && row0 + r < p.rows; ++r) {
        float ds[32];
        for (int lane = 0; lane < 32; ++lane)
          attnBwdProb(bp, *sh, b, h, row0 + r, r, key0, lane, lse[r], delta[r],
                      ds[lane]);
        for (int lane = 0; lane < 32; ++lane)
          for (int jj = 0; jj < kAttnKeys; ++jj)
            attnDqAccumulate(dq[r][lane], *sh, jj, ds[jj], lane);
      }
    }
    for (int r = 0; r < kAttnBwdRows && row0 + r < p.rows; ++r) {
      float *out =
          bp.dq + b * bp.sdq[0] + h * bp.sdq[1] + (row0 + r) * bp.sdq[2];
      for (int lane = 0; lane < 32; ++lane)
        for (int c = 0; c < kAttnOut; ++c)
          if (lane + 32 * c < p.d)
            out[(lane + 32 * c) * bp.sdq[3]] = dq[r][lane][c] * p.scale;
    }
  }
  for (int64_t block = 0; block < dkvBlocks; ++block) {
    int64_t bk = block / bp.keyTiles, b = bk / bp.kvHeads, hk = bk % bp.kvHeads;
    int64_t key0 = (block % bp.keyTiles) * kAttnKeys;
    for (int t = 0; t < kAttnThreads; ++t)
      attnBwdLoadKV(bp, *sh, b, hk, key0, t);
    std::vector<AttnKV> acc(kAttnThreads);
    for (AttnKV &a : acc)
      attnKVInit(a);
    for (int64_t h = hk * p.group; h < (hk + 1) * p.group; ++h)
      for (int64_t row0 = attnBwdFirstRow(p, key0); row0 < p.rows;
           row0 += kAttnBwdRows) {
        for (int t = 0; t < kAttnThreads; ++t)
          attnBwdLoadRows(bp, *sh, b, h, row0, t);
        for (int t = 0; t < kAttnBwdRows; ++t) {
          bool in = row0 + t < p.rows;
          sh->lse[t] = in ? attnStats(bp, b, h, row0 + t)[0] : -INFINITY;
          sh->delta[t] = in ? attnStats(bp, b, h, row0 + t)[1] : 0.0f;
        }
        for (int w = 0; w < warps; ++w)
          for (int rr = 0; rr < kAttnBwdRowsPerWarp; ++rr) {
            int r = w * kAttnBwdRowsPerWarp + rr;
            for (int lane = 0; lane < 32; ++lane) {
              float ds = 0.0f, prob = 0.0f;
              if (row0 + r < p.rows)
                prob = attnBwdProb(bp, *sh, b, h, row0 + r, r, key0, lane,
                                   sh->lse[r], sh->delta[r], ds);
              sh->p[r][lane] = prob;
              sh->ds[r][lane] = ds;
            }
          }
        for (int t = 0; t < kAttnThreads; ++t)
          attnKVAccumulate(acc[size_t(t)], *sh, t);
      }
    for (int t = 0; t < kAttnThreads; ++t)
      attnKVStore(bp, acc[size_t(t)], b, hk, key0, t);
  }
}
} // namespace

/// qopt_cuda_attention_backward's arguments (CUDAHost.cpp), run on the CPU.
extern "C" void
qopt_cuda_attention_emulated_backward(QOPT_ATTENTION_BWD_PARAMS) {
  AttentionBwdParams p;
  int64_t dqBlocks = 0, dkvBlocks = 0;
  if (const char *error = planAttentionBackward(
          flags, scale, softcap, QOPT_VIEW4(q), QOPT_VIEW4(k), QOPT_VIEW4(v),
          QOPT_VIEW4(m), QOPT_VIEW4(y), QOPT_VIEW4(g), QOPT_VIEW4(dq),
          QOPT_VIEW4(dk), QOPT_VIEW4(dv), QOPT_VIEW4(st), p, dqBlocks,
          dkvBlocks)) {
    refuse("the CUDA attention backward", error);
    return;
  }
  emulateAttentionBackward(p, dqBlocks, dkvBlocks);
}

/// The same for a bool mask (`flags` says which).
extern "C" void
    qopt_cuda_attention_emulated_backward_i1(QOPT_ATTENTION_BWD_PARAMS)
        __attribute__((alias("qopt_cuda_attention_emulated_backward")));

/// qopt_cuda_adamw's arguments (CUDAHost.cpp), run on the CPU: the same
/// launches, each block's threads in turn.
extern "C" void qopt_cuda_adamw_emulated(QOPT_ADAMW_PARAMS) {
  auto a = std::make_unique<AdamWParams>();
  for (int64_t first = 0; first < count;) {
    const char *why = nullptr;
    int64_t blocks = planAdamW(count, flags, QOPT_VIEW1(step), c1, b2, c2, eps,
                               QOPT_VIEW2(table), first, *a, why);
    if (why) {
      refuse("the CUDA AdamW", why);
      return;
    }
    for (int64_t block = 0; block < blocks; ++block)
      for (int t = 0; t < kAdamWThreads; ++t)
        adamwBlock(*a, block, t);
  }
}

/// qopt_cuda_hadamard's arguments (CUDAHost.cpp), run on the CPU: each
/// block's 256 threads phase by phase between the kernel's barriers.
namespace {
/// Block `block`'s runs loaded into `buf` and transformed (unscaled): its
/// 256 threads phase by phase between the kernels' barriers; with a base
/// (`mixed`), the butterflies over runs of m.power, then the passes of
/// H_base, each thread's sums kept until all threads of the pass have
/// read.
void emulateHadamardBlock(const HadamardMixedParams &m, HadamardKernel kind,
                          int64_t block, float *buf) {
  bool mixed = kind == kHadamardMixed;
  const HadamardParams &p = m.q.h;
  for (int t = 0; t < kHadamardThreads; ++t)
    hadamardLoad(p, block, buf, t);
  for (int64_t h = 1; h < (mixed ? m.power : p.n); h *= 2)
    for (int t = 0; t < kHadamardThreads; ++t)
      hadamardStage(p, buf, h, t);
  if (!mixed)
    return;
  std::vector<float> acc(size_t(kHadamardThreads) * 32);
  std::vector<int64_t> cols(kHadamardThreads);
  std::vector<int> words(kHadamardThreads);
  std::vector<bool> mine(kHadamardThreads);
  for (int64_t pass = 0; pass < hadamardMixPasses(m); ++pass) {
    for (int t = 0; t < kHadamardThreads; ++t) {
      int w = 0;
      int64_t col = 0;
      mine[t] = hadamardMixSlot(m, pass, t, col, w);
      cols[t] = col;
      words[t] = w;
      if (mine[t])
        hadamardMix(m, buf, m.columns, col, w, &acc[size_t(t) * 32]);
    }
    for (int t = 0; t < kHadamardThreads; ++t)
      if (mine[t])
        hadamardMixStore(m, buf, cols[t], words[t], &acc[size_t(t) * 32]);
  }
}

/// The rows' quantization of block `block` (a row) from its transformed
/// runs (the row's maximum is order-free).
void emulateQuantizedRow(const HadamardQuantParams &q, int64_t block,
                         const float *buf) {
  float amax = 0.0f;
  for (int t = 0; t < kHadamardThreads; ++t)
    amax = std::fmax(amax, hadamardPartialMax(q, buf, t));
  float step = tokenStepOf(amax, q.bits);
  for (int t = 0; t < kHadamardThreads; ++t)
    hadamardQuantStore(q, block, buf, step, t);
}
} // namespace

extern "C" void qopt_cuda_hadamard_emulated(QOPT_HADAMARD_PARAMS) {
  auto m = std::make_unique<HadamardMixedParams>();
  int64_t blocks = 0;
  HadamardKernel kind = kHadamardPow2;
  if (const char *error =
          planHadamard(flags, n, scale, QOPT_VIEW2(x), QOPT_VIEW1(s),
                       QOPT_VIEW2(hm), QOPT_VIEW2(y), *m, blocks, kind)) {
    refuse("the CUDA Hadamard transform", error);
    return;
  }
  // (The split plan's first launch: the power-of-two kernel's butterflies.)
  bool split = kind == kHadamardSplit;
  auto first = std::make_unique<HadamardMixedParams>(*m);
  if (split)
    first->q.h = hadamardButterflies(*m, blocks);
  std::vector<float> buf(size_t(hadamardElements(first->q.h)));
  for (int64_t block = 0; block < blocks; ++block) {
    emulateHadamardBlock(*first, split ? kHadamardPow2 : kind, block,
                         buf.data());
    for (int t = 0; t < kHadamardThreads; ++t)
      hadamardStore(first->q.h, block, buf.data(), t);
  }
  // Then the columns' blocks: each loads its tile, then its threads sum and
  // store.
  std::vector<float> tile(size_t(m->base * kHadamardColumnTile));
  for (int64_t block = 0; split && block < hadamardColumnBlocks(*m); ++block) {
    for (int t = 0; t < kHadamardThreads; ++t)
      hadamardColumnsLoad(*m, block, tile.data(), t);
    for (int t = 0; t < kHadamardThreads; ++t)
      hadamardColumnsStore(*m, block, tile.data(), m->columns, t);
  }
}

/// qopt_cuda_hadamard_quant's arguments, run on the CPU: each block's
/// threads phase by phase.
extern "C" void qopt_cuda_hadamard_quant_emulated(QOPT_HADAMARD_QUANT_PARAMS) {
  auto m = std::make_unique<HadamardMixedParams>();
  int64_t blocks = 0;
  HadamardKernel kind = kHadamardPow2;
  if (const char *error = planHadamardQuant(
          flags, n, scale, QOPT_VIEW2(x), QOPT_VIEW1(s), QOPT_VIEW2(hm),
          QOPT_VIEW2(y), bits, writeY, pc, oc, ps, os, *m, blocks, kind)) {
    refuse("the CUDA Hadamard transform with quantization", error);
    return;
  }
  std::vector<float> buf(size_t(hadamardElements(m->q.h)));
  for (int64_t block = 0; block < blocks; ++block) {
    emulateHadamardBlock(*m, kind, block, buf.data());
    emulateQuantizedRow(m->q, block, buf.data());
  }
}

/// qopt_cuda_norm's arguments (CUDAHost.cpp), run on the CPU: each row's 32
/// lanes, their partial sums added in the order of the kernel's butterfly.
namespace {
/// A warp's sum of partial(lane) over its 32 lanes, added in the order of
/// the kernels' shuffles (normStatistics' `sumLanes`).
float sumLanes(const std::function<float(int)> &partial) {
  float parts[32];
  for (int lane = 0; lane < 32; ++lane)
    parts[lane] = partial(lane);
  return warpReduce<false>(parts);
}
} // namespace

extern "C" void qopt_cuda_norm_emulated(QOPT_NORM_PARAMS) {
  NormParams p;
  int64_t blocks = 0;
  planNorm(flags, eps, QOPT_VIEW2(x), QOPT_VIEW1(g), QOPT_VIEW1(b),
           QOPT_VIEW2(y), p, blocks);
  if (blocks == 0)
    return;
  for (int64_t row = 0; row < p.rows; ++row) {
    float mean, meanSquare;
    normStatistics(p, row, p.flags & kNormLayer, sumLanes, mean, meanSquare);
    for (int lane = 0; lane < 32; ++lane)
      normStore(p, row, lane, mean, meanSquare);
  }
}

/// qopt_cuda_norm_quant's arguments, run on the CPU: each row's 32 lanes
/// as the kernel's warp (the maximum is order-free).
extern "C" void qopt_cuda_norm_quant_emulated(QOPT_NORM_QUANT_PARAMS) {
  NormQuantParams q;
  int64_t blocks = 0;
  if (const char *error =
          planNormQuant(flags, eps, QOPT_VIEW2(x), QOPT_VIEW1(g), QOPT_VIEW1(b),
                        QOPT_VIEW2(y), bits, writeY, pc, oc, ps, os, q, blocks))
    refuse("qopt_cuda_norm_quant", error);
  for (int64_t row = 0; row < q.norm.rows; ++row) {
    float mean, meanSquare, amax = 0.0f;
    normStatistics(q.norm, row, q.norm.flags & kNormLayer, sumLanes, mean,
                   meanSquare);
    for (int lane = 0; lane < 32; ++lane)
      amax =
          std::fmax(amax, normQuantPartialMax(q, row, lane, mean, meanSquare));
    float step = tokenStepOf(amax, q.bits);
    for (int lane = 0; lane < 32; ++lane)
      normQuantStore(q, row, lane, mean, meanSquare, step);
  }
}

/// qopt_cuda_quantize_rows' arguments, run on the CPU.
extern "C" void qopt_cuda_quantize_rows_emulated(
    int64_t bits, int64_t rows, int64_t k, int64_t px, int64_t ox, int64_t sx,
    int64_t pc, int64_t oc, int64_t ps, int64_t os, int64_t smoothing,
    int64_t pv, int64_t ov, int64_t sv) {
  W8A8Launch l{};
  int64_t blocks = 0;
  if (const char *error =
          planQuantizeRows(bits, rows, k, px, ox, sx, pc, oc, ps, os, smoothing,
                           pv, ov, sv, l.q, blocks))
    refuse("qopt_cuda_quantize_rows", error);
  l.gridX = unsigned(blocks), l.gridY = 1, l.gridZ = 1;
  runW8A8(l);
}

/// qopt_cuda_norm_backward's arguments, run on the CPU: each row's warp as
/// the dx kernel (lane partial sums added in the butterfly's order), then
/// every thread of the column kernels.
extern "C" void qopt_cuda_norm_emulated_backward(QOPT_NORM_BWD_PARAMS) {
  NormBwdParams p;
  int64_t scratch = 0, rowBlocks = 0, columnBlocks = 0;
  planNormBackward(flags, eps, QOPT_VIEW2(x), QOPT_VIEW1(g), QOPT_VIEW2(dy),
                   QOPT_VIEW2(dx), QOPT_VIEW1(dg), QOPT_VIEW1(db), p, scratch,
                   rowBlocks, columnBlocks);
  if (rowBlocks == 0 && columnBlocks == 0)
    return;
  std::vector<float> buffer(static_cast<size_t>(scratch));
  setNormScratch(p, buffer.data());
  NormParams f = forwardOf(p);
  float count = float(p.cols);
  for (int64_t row = 0; row < p.rows; ++row) {
    float parts[32], scaled[32], mean, meanSquare;
    normStatistics(f, row, p.flags & kNormLayer, sumLanes, mean, meanSquare);
    float d = std::sqrt(meanSquare + p.eps);
    for (int lane = 0; lane < 32; ++lane)
      normBwdPartial(p, row, lane, mean, d, parts[lane], scaled[lane]);
    float meanPlain = warpReduce<false>(parts) / count,
          meanScaled = warpReduce<false>(scaled) / count;
    for (int lane = 0; lane < 32; ++lane)
      normBwdStore(p, row, lane, mean, d, meanPlain, meanScaled);
  }
  for (int64_t block = 0; block < columnBlocks; ++block) {
    for (int64_t chunk = 0; chunk < p.chunks; ++chunk)
      for (int t = 0; t < kNormThreads; ++t)
        normBwdColumns(p, block, chunk, t);
  }
  for (int64_t block = 0; block < columnBlocks; ++block)
    for (int t = 0; t < kNormThreads; ++t)
      normBwdSum(p, block, t);
}
