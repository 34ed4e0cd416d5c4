//===- Gemm.cu - tiled f32 GEMM, plain and through quantized weights -----===//
//
// C += A·B for the products of models compiled for CUDA that are not a few
// rows times a quantized weight (QLinear.cu's GEMV takes those): f32
// matrix products (qopt_cuda_sgemm: attention, LoRA factors, unquantized
// layers, the train step's gradients) and prefill / training products
// through a quantized weight (qopt_cuda_qlinear with more than kMaxRows
// rows), whose codes are dequantized tile by tile into shared memory, so
// no f32 copy of the weight exists and each code is read once per 64 rows
// of A. One 64 x 64 tile of C per block, K in steps of 32 (GemmTile.h,
// whose phases the CPU tests run). f32 on the CUDA cores: the numerics of
// the CPU target, no TF32.
//
// Entry points (extern "C", one argument: GemmParams by value), launched
// with kGemmThreads threads and grid (ceil(n / 64), ceil(m / 64), batch):
// qopt_cuda_gemm_f32 (f32 B; _m16: tiles of 16 rows, grid y ceil(m / 16)),
// qopt_cuda_gemm_f32_{int4,uint4,int8,uint8,nf4,fp8e4m3,fp8e5m2}
// (B = Wᵀ; with a LoRA branch, scale · Z·Lᵀ, as further K steps when
// GemmParams' rank is not 0, and Z = x·Aᵀ computed by the launch's first
// blocks when GemmParams::la is set: a one-dimensional grid of Z's tiles
// and C's, LoRASync.cuh) and the same with `_t` (B = W: the backward's
// dX through a frozen quantized weight). Each entry with `_bf16` appended
// computes the same on the tensor cores (mma.sync m16n8k16: A and B
// rounded to bf16 as they enter shared memory, f32 accumulators): the
// products of models compiled with `--cuda-matmul-precision=medium`; with
// `_tf32`, rounded to tf32 (m16n8k8): `--cuda-matmul-precision=high`.
//
//===----------------------------------------------------------------------===//

#include "GemmTile.h"
#include "LoRASync.cuh"
#include "NF4Table.cuh"

namespace {

using namespace qopt_cuda;

template <int F, bool T, int MI, int P = kGemmF32>
__device__ void gemm(const GemmParams &p, const NestedScales *dq = nullptr) {
  // (P: the products on the CUDA cores, or the tiles rounded for the
  // tensor cores.)
  using Shared = GemmSharedOf<P, MI>;
  __shared__ Shared s;
  __shared__ float table[F >= 0 && kTableSize<F> ? kTableSize<F> : 1];
  __shared__ float scaleTable[F >= 0 ? 256 : 1];
  int t = threadIdx.x;
  if constexpr (F >= 0) {
    fillTable<F>(table);
    fillScaleTable(dq, scaleTable);
  }
  // The tile: blockIdx, or with a fused down projection the block's ticket
  // (Z's tiles first, then C's).
  TileIndex tile{blockIdx.x, blockIdx.y, blockIdx.z};
  uint32_t downCount = 0;
  if constexpr (F >= 0 && !T)
    if (p.la) {
      downCount = downTiles(p);
      uint32_t ticket = takeTicket();
      if (ticket < downCount) {
        TileIndex d = tileAt(p, ticket, downCount / p.tiles[1] / p.tiles[2]);
        GemmOperands op = operandsOf(p, d.z);
        int64_t m0 = int64_t(d.y) * kTileRows<MI>, j0 = int64_t(d.x) * kTileN;
        float acc[MI][kMicro] = {};
        for (int64_t k0 = 0; k0 < p.k; k0 += kTileK) {
          loadDownTile(p, op, k0, m0, j0, t, s);
          __syncthreads();
          multiplyTile(s, t, acc);
          __syncthreads();
        }
        storeTileOf(s, op.lz, p.m, p.rank, p.slm, 1, m0, j0, t, acc, true);
        signalDown();
        finishBlock();
        return;
      }
      tile = tileAt(p, ticket - downCount, p.tiles[0]);
    }
  GemmOperands op = operandsOf(p, tile.z);
  int64_t m0 = int64_t(tile.y) * kTileRows<MI>, n0 = int64_t(tile.x) * kTileN;
  WeightView w = weightOf(p, T);
  setNested(w, dq, scaleTable);
  float acc[MI][kMicro] = {};
  for (int64_t k0 = 0; k0 < p.k; k0 += kTileK) {
    loadA(op.a, p.m, p.k, p.sam, p.sak, m0, k0, t, s);
    if constexpr (F >= 0 && T)
      loadQuantizedBT<F>(w, k0, n0, t, table, s);
    else if constexpr (F >= 0)
      loadQuantizedB<F>(w, k0, n0, t, table, s);
    else
      loadB(op.b, p.k, p.n, p.sbk, p.sbn, k0, n0, t, s);
    __syncthreads();
    multiplyTile(s, t, acc);
    __syncthreads();
  }
  if constexpr (F >= 0 && !T) {
    if (p.la)
      waitDown(downCount);
    for (int64_t k0 = 0; k0 < p.rank; k0 += kTileK) {
      loadLoRATile(p, op, k0, m0, n0, t, s);
      __syncthreads();
      multiplyTile(s, t, acc);
      __syncthreads();
    }
  }
  storeTileOf(s, op.c, p.m, p.n, p.scm, p.scn, m0, n0, t, acc,
              p.overwrite != 0);
  if constexpr (F >= 0 && !T)
    if (p.la)
      finishBlock();
}

} // namespace

// (__launch_bounds__(256, 2): at most 128 registers, which the kernels fit
// in; with the thread count alone, ptxas squeezed the 8-bit ones into 48
// registers and spilled.)
extern "C" __global__ void __launch_bounds__(kGemmThreads, 2)
    qopt_cuda_gemm_f32(const __grid_constant__ GemmParams p) {
  gemm<-1, false, 4>(p);
}

// Tiles of 16 rows, for f32 products of at most 16 rows (decode).
extern "C" __global__ void __launch_bounds__(kGemmThreads, 2)
    qopt_cuda_gemm_f32_m16(const __grid_constant__ GemmParams p) {
  gemm<-1, false, 1>(p);
}

// The same products on the tensor cores: A and B rounded to bf16 or tf32,
// f32 accumulators (`qoptc --cuda-matmul-precision=medium` / `high`).
#define QOPT_GEMM_F32_ENTRIES(suffix, precision)                               \
  extern "C" __global__ void __launch_bounds__(kGemmThreads, 2)                \
      qopt_cuda_gemm_f32##suffix(const __grid_constant__ GemmParams p) {       \
    gemm<-1, false, 4, precision>(p);                                          \
  }                                                                            \
  extern "C" __global__ void __launch_bounds__(kGemmThreads, 2)                \
      qopt_cuda_gemm_f32_m16##suffix(const __grid_constant__ GemmParams p) {   \
    gemm<-1, false, 1, precision>(p);                                          \
  }
QOPT_GEMM_F32_ENTRIES(_bf16, kGemmBF16)
QOPT_GEMM_F32_ENTRIES(_tf32, kGemmTF32)

// (Quantized entries: a second parameter, the double-quantized scales by
// value; codes null: f32 scales.)
#define QOPT_GEMM_ENTRY(name, format, transposed)                              \
  extern "C" __global__ void __launch_bounds__(kGemmThreads, 2)                \
      name(const __grid_constant__ GemmParams p,                               \
           const __grid_constant__ NestedScales dq) {                          \
    gemm<format, transposed, 4>(p, &dq);                                       \
  }                                                                            \
  extern "C" __global__ void __launch_bounds__(kGemmThreads, 2)                \
      name##_bf16(const __grid_constant__ GemmParams p,                        \
                  const __grid_constant__ NestedScales dq) {                   \
    gemm<format, transposed, 4, kGemmBF16>(p, &dq);                            \
  }                                                                            \
  extern "C" __global__ void __launch_bounds__(kGemmThreads, 2)                \
      name##_tf32(const __grid_constant__ GemmParams p,                        \
                  const __grid_constant__ NestedScales dq) {                   \
    gemm<format, transposed, 4, kGemmTF32>(p, &dq);                            \
  }

// C += A·dequant(W)ᵀ (a linear layer's forward; `_bf16` / `_tf32`: the
// same on the tensor cores, the dequantized values rounded).
QOPT_GEMM_ENTRY(qopt_cuda_gemm_f32_int4, kInt4, false)
QOPT_GEMM_ENTRY(qopt_cuda_gemm_f32_uint4, kUInt4, false)
QOPT_GEMM_ENTRY(qopt_cuda_gemm_f32_int8, kInt8, false)
QOPT_GEMM_ENTRY(qopt_cuda_gemm_f32_uint8, kUInt8, false)
QOPT_GEMM_ENTRY(qopt_cuda_gemm_f32_nf4, kNF4, false)
QOPT_GEMM_ENTRY(qopt_cuda_gemm_f32_fp8e4m3, kFP8E4M3, false)
QOPT_GEMM_ENTRY(qopt_cuda_gemm_f32_fp8e5m2, kFP8E5M2, false)
// C += A·dequant(W) (its backward: dX = dY·W, no f32 copy of W).
QOPT_GEMM_ENTRY(qopt_cuda_gemm_f32_int4_t, kInt4, true)
QOPT_GEMM_ENTRY(qopt_cuda_gemm_f32_uint4_t, kUInt4, true)
QOPT_GEMM_ENTRY(qopt_cuda_gemm_f32_int8_t, kInt8, true)
QOPT_GEMM_ENTRY(qopt_cuda_gemm_f32_uint8_t, kUInt8, true)
QOPT_GEMM_ENTRY(qopt_cuda_gemm_f32_nf4_t, kNF4, true)
QOPT_GEMM_ENTRY(qopt_cuda_gemm_f32_fp8e4m3_t, kFP8E4M3, true)
QOPT_GEMM_ENTRY(qopt_cuda_gemm_f32_fp8e5m2_t, kFP8E5M2, true)
