//===- QLinear.cu - weight-only quantized GEMV for decode ----------------===//
//
// y[m, n] = beta · y[m, n] + sum_k x[m, k] · dequant(W)[n, k] for the few
// rows of x a decode step has (16 at a time: more rows are further passes
// over W, so prefill wants a GEMM), W a !qopt.qtensor read in place
// (int4 / uint4 / int8 / uint8 / NF4 codes, f32 scales per group of 32·j
// codes, optional zero points), x in bfloat16, y in f32. A decode step
// reads every weight once, so the kernel streams the codes: one warp per
// output row, each lane 16 bytes (32 codes) at a time, the activations
// from L1 / L2 (m · K · 2 bytes, read by every warp), a shuffle reduction
// at the end. The per-lane work is QLinearTile.h's, which the CPU unit
// tests run.
//
// Entry points (extern "C", one per format, loaded by name from the
// embedded cubin): qopt_cuda_gemv_{int4,uint4,int8,uint8,nf4}(x, ldx, m,
// codes, codeRow, scales, scaleRow, zp, zpRow, n, k, group, y, ldy, beta)
// with bf16 x; qopt_cuda_gemv_f32_<format>(…, beta, LoRAView) with f32 x
// and optionally a LoRA branch, scale · z·Bᵀ, whose rank terms each lane
// adds to its partial sums before the shuffles (B in the epilogue: no
// launch, buffer or pass over y of its own), launched with blockDim =
// kWarps · 32 and gridDim = ceil(n / kWarps); with the branch's down
// projection (LoRAView::down: z = x·Aᵀ from the same launch, its first
// ceil(rank / kWarps) blocks a row of A per warp, LoRASync.cuh) the grid
// has those blocks more.
//
//===----------------------------------------------------------------------===//

#include "LoRASync.cuh"
#include "NF4Table.cuh"
#include "QLinearTile.h"

namespace {

using namespace qopt_cuda;

/// The warp's shuffle reduction of acc[0..rows): lane 0 stores each sum
/// through `store(i, sum)`.
template <typename Store>
__device__ void reduceRows(const float *acc, int rows, int lane,
                           Store &&store) {
#pragma unroll
  for (int i = 0; i < kMaxRows; ++i) {
    if (i >= rows) // (the same for every lane of the warp)
      break;
    float v = acc[i];
#pragma unroll
    for (int offset = 16; offset > 0; offset /= 2)
      v += __shfl_xor_sync(0xffffffffu, v, offset);
    if (lane == 0)
      store(i, v);
  }
}

template <int F, typename X>
__device__ void gemv(const X *x, int64_t ldx, int m,
                     const uint8_t *codes, int64_t codeRow, const float *scales,
                     int64_t scaleRow, const int8_t *zp, int64_t zpRow,
                     int64_t n, int64_t k, int64_t group, float *y, int64_t ldy,
                     float beta, LoRAView lora, const NestedScales *dq) {
  __shared__ float table[kTableSize<F> ? kTableSize<F> : 1];
  __shared__ float scaleTable[256];
  fillTable<F>(table);
  fillScaleTable(dq, scaleTable);
  int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  // With the down projection fused (f32 x only), the first
  // ceil(rank / kWarps) blocks by ticket compute z, a row of A per warp.
  unsigned downBlocks = 0, block = blockIdx.x;
  bool fused = false;
  if constexpr (sizeof(X) == 4)
    fused = lora.down != nullptr;
  if (fused) {
    downBlocks = unsigned((lora.rank + kWarps - 1) / kWarps);
    block = takeTicket();
  }
  if (block < downBlocks) {
    if constexpr (sizeof(X) == 4) {
      int64_t j = int64_t(block) * kWarps + warp;
      for (int base = 0; j < lora.rank && base < m; base += kMaxRows) {
        int rows = m - base < kMaxRows ? m - base : kMaxRows;
        float acc[kMaxRows];
#pragma unroll
        for (int i = 0; i < kMaxRows; ++i)
          acc[i] = 0.0f;
        laneDown(lora, j, k, lane, x + base * ldx, ldx, rows, acc);
        reduceRows(acc, rows, lane, [&](int i, float v) {
          lora.z[(base + i) * lora.ldz + j] = v;
        });
      }
    }
    signalDown();
  } else {
    int64_t r = int64_t(block - downBlocks) * kWarps + warp;
    WeightView w{codes, codeRow, scales, scaleRow, zp, zpRow, n, k, group};
    setNested(w, dq, scaleTable);
    for (int base = 0; r < n && base < m; base += kMaxRows) {
      int rows = m - base < kMaxRows ? m - base : kMaxRows;
      float acc[kMaxRows];
#pragma unroll
      for (int i = 0; i < kMaxRows; ++i)
        acc[i] = 0.0f;
      laneSums<F, X>(w, r, lane, x + base * ldx, ldx, rows, table, acc);
      LoRAView l = lora;
      if (l.z)
        l.z += base * l.ldz;
      if (fused && base == 0)
        waitDown(downBlocks);
      laneLoRA(l, r, lane, rows, acc);
      reduceRows(acc, rows, lane, [&](int i, float v) {
        float *out = y + (base + i) * ldy + r;
        *out = (beta == 0.0f ? 0.0f : beta * *out) + v;
      });
    }
  }
  if (fused)
    finishBlock();
}

} // namespace

// (__launch_bounds__(128, 6): at most 85 registers; with the thread count
// alone, ptxas gave the f32 entries 128 on sm_100: a third of the resident
// warps a bandwidth-bound kernel wants.)
#define QOPT_GEMV_ENTRY(name, format, X)                                       \
  extern "C" __global__ void __launch_bounds__(kWarps * 32, 6) name(          \
      const X *x, int64_t ldx, int m, const uint8_t *codes, int64_t codeRow,   \
      const float *scales, int64_t scaleRow, const int8_t *zp, int64_t zpRow,  \
      int64_t n, int64_t k, int64_t group, float *y, int64_t ldy,              \
      float beta) {                                                            \
    gemv<format, X>(x, ldx, m, codes, codeRow, scales, scaleRow, zp, zpRow, n, \
                    k, group, y, ldy, beta, LoRAView{}, nullptr);              \
  }

// The f32 entries take a LoRA branch too (LoRAView by value; z null:
// none) and double-quantized scales (NestedScales by value; codes null:
// the f32 scales), both __grid_constant__: read where the launch put them,
// never copied to local memory when the code takes their address.
#define QOPT_GEMV_F32_ENTRY(name, format)                                      \
  extern "C" __global__ void __launch_bounds__(kWarps * 32, 6) name(          \
      const float *x, int64_t ldx, int m, const uint8_t *codes,               \
      int64_t codeRow, const float *scales, int64_t scaleRow,                  \
      const int8_t *zp, int64_t zpRow, int64_t n, int64_t k, int64_t group,    \
      float *y, int64_t ldy, float beta, const __grid_constant__ LoRAView lora, \
      const __grid_constant__ NestedScales dq) {                               \
    gemv<format, float>(x, ldx, m, codes, codeRow, scales, scaleRow, zp,       \
                        zpRow, n, k, group, y, ldy, beta, lora, &dq);          \
  }

// x in bfloat16 (bits).
QOPT_GEMV_ENTRY(qopt_cuda_gemv_int4, kInt4, uint16_t)
QOPT_GEMV_ENTRY(qopt_cuda_gemv_uint4, kUInt4, uint16_t)
QOPT_GEMV_ENTRY(qopt_cuda_gemv_int8, kInt8, uint16_t)
QOPT_GEMV_ENTRY(qopt_cuda_gemv_uint8, kUInt8, uint16_t)
QOPT_GEMV_ENTRY(qopt_cuda_gemv_nf4, kNF4, uint16_t)
// x in f32 (and FP8 weights, E4M3FN and E5M2, one scale per tensor or per
// row): what models compiled by qoptc --target cuda call
// (qopt_cuda_qlinear, lib/Runtime/CUDAHost).
QOPT_GEMV_F32_ENTRY(qopt_cuda_gemv_f32_int4, kInt4)
QOPT_GEMV_F32_ENTRY(qopt_cuda_gemv_f32_uint4, kUInt4)
QOPT_GEMV_F32_ENTRY(qopt_cuda_gemv_f32_int8, kInt8)
QOPT_GEMV_F32_ENTRY(qopt_cuda_gemv_f32_uint8, kUInt8)
QOPT_GEMV_F32_ENTRY(qopt_cuda_gemv_f32_nf4, kNF4)
QOPT_GEMV_F32_ENTRY(qopt_cuda_gemv_f32_fp8e4m3, kFP8E4M3)
QOPT_GEMV_F32_ENTRY(qopt_cuda_gemv_f32_fp8e5m2, kFP8E5M2)
