//===- AdamW.cu - multi-tensor AdamW, every parameter in one launch -------===//
//
// The optimizer step of a train step (AdamWTile.h: the threads' work,
// shared with the CPU emulation, and the launch plan): a block per chunk
// of a parameter, up to kAdamWTensors parameters a launch.
//
//===----------------------------------------------------------------------===//

#include "AdamWTile.h"

extern "C" __global__ void __launch_bounds__(qopt_cuda::kAdamWThreads)
    qopt_cuda_adamw_f32(const __grid_constant__ qopt_cuda::AdamWParams a) {
  qopt_cuda::adamwBlock(a, blockIdx.x, threadIdx.x);
}
