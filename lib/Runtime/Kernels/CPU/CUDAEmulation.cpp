//===- CUDAEmulation.cpp - The CUDA kernel library's GEMV on the CPU ------===//
//
// Models compiled with `qoptc --target cuda --cuda-emulate` run their
// generated kernels as CPU loops; their quantized products call
// qopt_cuda_qlinear_emulated, which plans the launches as the CUDA host
// library does (QLinearLaunch.h) and runs every warp of each: the 32 lanes'
// QLinearTile.h work, summed in the order of the kernel's shuffles. So the
// whole-model tests check the GEMV's decoding and the launch planning
// against the CPU target without a GPU.
//
//===----------------------------------------------------------------------===//

#include "../CUDA/QLinearLaunch.h"
#include "../CUDA/QLinearTile.h"

#include "qopt/Support/QuantFormats.h"

#include <cstdio>
#include <cstdlib>

extern "C" void qopt_kernel_check_failed(const char *message);

namespace {

using namespace qopt_cuda;

template <int F> void runWarps(const GemvLaunch &l) {
  const float *nf4 = qopt::kNF4Codes.data();
  WeightView w{l.codes, l.codeRow, l.scales, l.scaleRow, l.zp,
               l.zpRow, l.n,       l.k,      l.group};
  for (int64_t r = 0; r < l.n; ++r)
    for (int64_t base = 0; base < l.m; base += kMaxRows) {
      int rows = int(l.m - base < kMaxRows ? l.m - base : kMaxRows);
      float lanes[32][kMaxRows] = {};
      for (int lane = 0; lane < 32; ++lane)
        laneSums<F, float>(w, r, lane, l.x + base * l.ldx, l.ldx, rows, nf4,
                           lanes[lane]);
      for (int i = 0; i < rows; ++i) {
        // __shfl_xor_sync's butterfly: lane 0 ends with this sum.
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
        l.y[(base + i) * l.ldy + r] += v[0];
      }
    }
}

} // namespace

extern "C" void qopt_cuda_qlinear_emulated(
    int64_t format, int64_t group, int64_t flags, int64_t o0, int64_t o1,
    int64_t m, int64_t n, int64_t k, int64_t pa, int64_t oa, int64_t sa0,
    int64_t sa1, int64_t sam, int64_t sak, int64_t pw, int64_t ow, int64_t sw,
    int64_t ps, int64_t os, int64_t ss, int64_t pz, int64_t oz, int64_t sz,
    int64_t pc, int64_t oc, int64_t sc0, int64_t sc1, int64_t scm,
    int64_t scn) {
  const char *error = planQLinear(
      /*aligned=*/false, format, group, flags, o0, o1, m, n, k, pa, oa, sa0,
      sa1, sam, sak, pw, ow, sw, ps, os, ss, pz, oz, sz, pc, oc, sc0, sc1, scm,
      scn, [](const GemvLaunch &l) {
        withFormat(l.format, [&](auto f) { runWarps<decltype(f)::value>(l); });
      });
  if (error) {
    char message[256];
    std::snprintf(message, sizeof(message),
                  "internal: the CUDA GEMV cannot take this product: %s",
                  error);
    qopt_kernel_check_failed(message);
  }
}
