//===- Hadamard.cu - fast Walsh-Hadamard transform over the last axis -----===//
//
// qopt.hadamard for power-of-two blocks in one launch (HadamardTile.h: the
// threads' work, shared with the CPU emulation, and the launch plan).
//
//===----------------------------------------------------------------------===//

#include "HadamardTile.h"

extern "C" __global__ void __launch_bounds__(qopt_cuda::kHadamardThreads)
    qopt_cuda_hadamard_f32(const __grid_constant__ qopt_cuda::HadamardParams p) {
  using namespace qopt_cuda;
  __shared__ float buf[kHadamardTile];
  int t = threadIdx.x;
  hadamardLoad(p, blockIdx.x, buf, t);
  for (int64_t h = 1; h < p.n; h *= 2) {
    __syncthreads();
    hadamardStage(p, buf, h, t);
  }
  __syncthreads();
  hadamardStore(p, blockIdx.x, buf, t);
}
