//===- LoRASync.cuh - a launch's LoRA down projection before its epilogue -*- CUDA -*-===//
//
// A quantized product with a fused LoRA branch that computes z = x·Aᵀ
// itself (LoRAView::down, GemmParams::la) needs z complete before any
// block adds s·z·Bᵀ to its outputs. Its first blocks compute z, the others
// compute their part of x·Wᵀ and then wait for them. Which blocks come
// "first" is decided by tickets taken when a block starts, not by
// blockIdx: a block that holds ticket t knows that the blocks holding the
// tickets before it are already running, so the blocks it waits for
// (which wait for nobody) are resident and finish: no deadlock, whatever
// order the hardware starts blocks in or however few fit at once.
//
// The counters are one set of globals of the library's module (zero when
// it loads); the last block of each launch to finish sets them back to
// zero, so launches in stream order (and replays of a captured graph) all
// start from zero. Launches of the library run on one stream, one at a
// time.
//
//===----------------------------------------------------------------------===//

#ifndef QOPT_RUNTIME_KERNELS_CUDA_LORASYNC_CUH
#define QOPT_RUNTIME_KERNELS_CUDA_LORASYNC_CUH

namespace qopt_cuda {

struct LoRASync {
  unsigned ticket;     // tickets handed out
  unsigned downDone;   // blocks of the down projection finished
  unsigned blocksDone; // blocks finished
};
__device__ LoRASync loraSync;

/// The block's ticket (every thread of the block calls it).
__device__ inline unsigned takeTicket() {
  __shared__ unsigned ticket;
  if (threadIdx.x == 0)
    ticket = atomicAdd(&loraSync.ticket, 1u);
  __syncthreads();
  return ticket;
}

/// After a down-projection block's writes of z (every thread calls it):
/// they are visible to the whole GPU before the count says so.
__device__ inline void signalDown() {
  __threadfence();
  __syncthreads();
  if (threadIdx.x == 0)
    atomicAdd(&loraSync.downDone, 1u);
}

/// Waits until `count` down-projection blocks have signalled (any thread
/// that then reads z calls it; no barrier, so warps wait on their own).
__device__ inline void waitDown(unsigned count) {
  while (*static_cast<volatile unsigned *>(&loraSync.downDone) < count)
    __nanosleep(128);
  __threadfence();
}

/// At the end of every block of a launch that took tickets (every thread
/// calls it): the last one resets the counters for the next launch.
__device__ inline void finishBlock() {
  __syncthreads();
  if (threadIdx.x != 0)
    return;
  unsigned blocks = gridDim.x * gridDim.y * gridDim.z;
  if (atomicAdd(&loraSync.blocksDone, 1u) == blocks - 1) {
    atomicExch(&loraSync.ticket, 0u);
    atomicExch(&loraSync.downDone, 0u);
    atomicExch(&loraSync.blocksDone, 0u);
  }
}

} // namespace qopt_cuda

#endif // QOPT_RUNTIME_KERNELS_CUDA_LORASYNC_CUH
