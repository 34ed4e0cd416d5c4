//===- CUDAHost.cpp - What a model compiled for CUDA runs on the host -----===//
//
// Linked into every model compiled with `qoptc --target cuda`. It provides
// MLIR's GPU runtime functions (mgpu*), which the generated host code calls
// to load its kernels and launch them, over the CUDA driver API, opened
// with dlopen: the model needs only the driver (libcuda.so.1), no CUDA
// runtime library and no toolkit. Plain C++, no CUDA headers.
//
// Memory: one pool of managed memory sized when the model is loaded, from
// which every buffer of a run is carved (no cuMemAlloc per step). Managed
// memory lets the host code read shapes and scalars the kernels wrote
// (after the launch's synchronization) and the runtime copy inputs and
// outputs with memcpy. Errors (out of memory, a failed launch) stop the run
// through the kernel library's run-time check mechanism, which frees the
// run's buffers and reports the message.
//
//===----------------------------------------------------------------------===//

#include "Pool.h"

#include "../Kernels/CUDA/AdamWTile.h"
#include "../Kernels/CUDA/AttentionTile.h"
#include "../Kernels/CUDA/HadamardTile.h"
#include "../Kernels/CUDA/NormTile.h"
#include "../Kernels/CUDA/QLinearLaunch.h"

#include <dlfcn.h>

#include <algorithm>
#include <atomic>
#include <cstdarg>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

extern "C" {
// The CUDA kernel library (QLinear.cu) as a fatbin, when qoptc linked it
// (libqopt_cuda_library.a: built where nvcc was found).
extern const unsigned char qopt_cuda_library_fatbin[] __attribute__((weak));
void qopt_kernel_check_failed(const char *message);
void qopt_kernel_set_allocator(void *(*alloc)(size_t, size_t),
                               void (*free)(void *));
}

namespace {

// The driver API's types and the entry points used, as in cuda.h.
using CUresult = int;
using CUdevice = int;
using CUcontext = void *;
using CUmodule = void *;
using CUfunction = void *;
using CUstream = void *;
using CUdeviceptr = unsigned long long;
using CUgraph = void *;
using CUgraphExec = void *;
/// CU_STREAM_CAPTURE_MODE_THREAD_LOCAL: another thread's calls do not
/// disturb a capture; this thread's unsafe ones (a wait) fail it.
constexpr int kCaptureModeThreadLocal = 1;
constexpr CUresult CUDA_SUCCESS = 0;
constexpr int kAttrComputeCapabilityMajor = 75;
constexpr int kAttrComputeCapabilityMinor = 76;
constexpr int kAttrConcurrentManagedAccess = 89;
constexpr unsigned kMemAttachGlobal = 1;
/// cuda.h's CUmemLocation (CU_MEM_LOCATION_TYPE_DEVICE: 1).
struct CUmemLocation {
  int type;
  int id;
};
constexpr int kMemLocationTypeDevice = 1;
constexpr unsigned kStreamNonBlocking = 1;
/// CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, and the dynamic shared
/// memory a launch gets without it.
constexpr int kFuncAttrMaxDynamicSharedBytes = 8;
constexpr int64_t kDefaultSharedBytes = 48 * 1024;

struct Driver {
  void *handle = nullptr;
  CUresult (*cuInit)(unsigned);
  CUresult (*cuDeviceGetCount)(int *);
  CUresult (*cuDeviceGet)(CUdevice *, int);
  CUresult (*cuDeviceGetName)(char *, int, CUdevice);
  CUresult (*cuDeviceGetAttribute)(int *, int, CUdevice);
  CUresult (*cuDevicePrimaryCtxRetain)(CUcontext *, CUdevice);
  CUresult (*cuDevicePrimaryCtxRelease)(CUdevice);
  CUresult (*cuCtxSetCurrent)(CUcontext);
  CUresult (*cuModuleLoadData)(CUmodule *, const void *);
  CUresult (*cuModuleUnload)(CUmodule);
  CUresult (*cuModuleGetFunction)(CUfunction *, CUmodule, const char *);
  CUresult (*cuFuncSetAttribute)(CUfunction, int, int);
  CUresult (*cuLaunchKernel)(CUfunction, unsigned, unsigned, unsigned, unsigned,
                             unsigned, unsigned, unsigned, CUstream, void **,
                             void **);
  CUresult (*cuStreamCreate)(CUstream *, unsigned);
  CUresult (*cuStreamDestroy)(CUstream);
  CUresult (*cuStreamSynchronize)(CUstream);
  CUresult (*cuMemAllocManaged)(CUdeviceptr *, size_t, unsigned);
  CUresult (*cuMemFree)(CUdeviceptr);
  CUresult (*cuMemGetInfo)(size_t *, size_t *);
  CUresult (*cuGetErrorString)(CUresult, const char **);
  /// Optional: moves managed pages to the GPU ahead of the kernels, which
  /// would otherwise fault them over (cuMemPrefetchAsync_v2, drivers of
  /// CUDA 12.2 and newer; else the first version, which takes a device).
  CUresult (*cuMemPrefetchAsync)(CUdeviceptr, size_t, CUmemLocation, unsigned,
                                 CUstream) = nullptr;
  CUresult (*cuMemPrefetchAsyncV1)(CUdeviceptr, size_t, CUdevice,
                                   CUstream) = nullptr;
  /// Optional (CUDA graphs; without them runs are never captured).
  CUresult (*cuStreamBeginCapture)(CUstream, int) = nullptr;
  CUresult (*cuStreamEndCapture)(CUstream, CUgraph *) = nullptr;
  CUresult (*cuGraphInstantiate)(CUgraphExec *, CUgraph,
                                 unsigned long long) = nullptr;
  CUresult (*cuGraphLaunch)(CUgraphExec, CUstream) = nullptr;
  CUresult (*cuGraphExecDestroy)(CUgraphExec) = nullptr;
  CUresult (*cuGraphDestroy)(CUgraph) = nullptr;
  CUresult (*cuMemcpyDtoDAsync)(CUdeviceptr, CUdeviceptr, size_t,
                                CUstream) = nullptr;
  bool graphs() const {
    return cuStreamBeginCapture && cuStreamEndCapture && cuGraphInstantiate &&
           cuGraphLaunch && cuGraphExecDestroy && cuGraphDestroy &&
           cuMemcpyDtoDAsync;
  }
};

/// A captured run (qopt_cuda_capture_begin / _end): the instantiated graph
/// and the pool range its buffers were carved from, which stays reserved
/// while the graph lives (its launches name those addresses).
struct Graph {
  CUgraphExec exec = nullptr;
  void *arena = nullptr;
};

/// A module the generated code registered (at load, from a constructor):
/// loaded into the context when the model is initialized.
struct Module {
  const void *image = nullptr;
  CUmodule loaded = nullptr;
  /// Functions looked up so far, by the generated code's name constants.
  std::unordered_map<const char *, CUfunction> functions;
  /// The dynamic shared memory each function has opted in to (past 48 KB;
  /// under State::poolMutex).
  std::unordered_map<CUfunction, int64_t> sharedOptIn;
};

struct State {
  Driver cu;
  bool initialized = false;
  /// Models sharing this state (the same library loaded twice).
  int users = 0;
  /// Launches queued since the host last waited for the stream (runs of
  /// one model are serialized by the runtime).
  std::atomic<bool> pending{false};
  CUdevice device = 0;
  CUcontext context = nullptr;
  CUstream stream = nullptr;
  CUdeviceptr region = 0;
  qopt::cuda::Pool pool;
  /// While a run is being captured: its allocations come from `arena`, a
  /// range of `pool` the graph keeps, and the host does not wait.
  bool capturing = false;
  qopt::cuda::Pool arena;
  void *arenaRange = nullptr;
  std::mutex poolMutex;
  std::vector<Module *> modules;
  /// The kernel library's module (null when it was not linked in).
  Module library;
  char deviceName[256] = "";
  int computeCapability = 0;
  std::string error;
};

State &state() {
  static State s;
  return s;
}

std::string errorText(CUresult rc) {
  const char *text = nullptr;
  if (state().cu.cuGetErrorString)
    state().cu.cuGetErrorString(rc, &text);
  return text ? std::string(text) + " (" + std::to_string(rc) + ")"
              : "CUDA error " + std::to_string(rc);
}

/// Stops the current run with `message` (a run-time check failure).
[[noreturn]] void stop(const std::string &message) {
  qopt_kernel_check_failed(("CUDA: " + message).c_str());
  std::abort(); // not reached: check_failed never returns
}

/// The context is current per thread: runs may come from any thread.
void bindContext() {
  State &s = state();
  if (s.context)
    s.cu.cuCtxSetCurrent(s.context);
}

bool loadDriver(Driver &cu, std::string &error) {
  cu.handle = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
  if (!cu.handle) {
    error = "no CUDA driver on this machine (" + std::string(dlerror()) + ")";
    return false;
  }
  bool ok = true;
  // (Optional entry points stay null where the driver lacks them.)
  auto optional = [&](auto &fn, const char *name) {
    fn = reinterpret_cast<std::remove_reference_t<decltype(fn)>>(
        dlsym(cu.handle, name));
    return fn != nullptr;
  };
  auto bind = [&](auto &fn, const char *name) {
    if (!optional(fn, name)) {
      error = std::string("the CUDA driver lacks ") + name;
      ok = false;
    }
  };
  bind(cu.cuInit, "cuInit");
  bind(cu.cuDeviceGetCount, "cuDeviceGetCount");
  bind(cu.cuDeviceGet, "cuDeviceGet");
  bind(cu.cuDeviceGetName, "cuDeviceGetName");
  bind(cu.cuDeviceGetAttribute, "cuDeviceGetAttribute");
  bind(cu.cuDevicePrimaryCtxRetain, "cuDevicePrimaryCtxRetain");
  bind(cu.cuDevicePrimaryCtxRelease, "cuDevicePrimaryCtxRelease_v2");
  bind(cu.cuCtxSetCurrent, "cuCtxSetCurrent");
  bind(cu.cuModuleLoadData, "cuModuleLoadData");
  bind(cu.cuModuleUnload, "cuModuleUnload");
  bind(cu.cuModuleGetFunction, "cuModuleGetFunction");
  bind(cu.cuFuncSetAttribute, "cuFuncSetAttribute");
  bind(cu.cuLaunchKernel, "cuLaunchKernel");
  bind(cu.cuStreamCreate, "cuStreamCreate");
  bind(cu.cuStreamDestroy, "cuStreamDestroy_v2");
  bind(cu.cuStreamSynchronize, "cuStreamSynchronize");
  bind(cu.cuMemAllocManaged, "cuMemAllocManaged");
  bind(cu.cuMemFree, "cuMemFree_v2");
  bind(cu.cuMemGetInfo, "cuMemGetInfo_v2");
  bind(cu.cuGetErrorString, "cuGetErrorString");
  if (!optional(cu.cuMemPrefetchAsync, "cuMemPrefetchAsync_v2"))
    optional(cu.cuMemPrefetchAsyncV1, "cuMemPrefetchAsync");
  optional(cu.cuStreamBeginCapture, "cuStreamBeginCapture_v2");
  optional(cu.cuStreamEndCapture, "cuStreamEndCapture");
  optional(cu.cuGraphInstantiate, "cuGraphInstantiateWithFlags");
  optional(cu.cuGraphLaunch, "cuGraphLaunch");
  optional(cu.cuGraphExecDestroy, "cuGraphExecDestroy");
  optional(cu.cuGraphDestroy, "cuGraphDestroy");
  optional(cu.cuMemcpyDtoDAsync, "cuMemcpyDtoDAsync_v2");
  return ok;
}

void *poolAlloc(size_t, size_t bytes) {
  State &s = state();
  std::string message;
  {
    std::lock_guard<std::mutex> lock(s.poolMutex);
    qopt::cuda::Pool &pool = s.capturing ? s.arena : s.pool;
    if (void *p = pool.allocate(bytes))
      return p;
    message = "out of memory: " + std::to_string(bytes) + " bytes asked, " +
              std::to_string(pool.available()) + " free in the " +
              (s.capturing ? "captured run's arena" : "pool") + " of " +
              std::to_string(pool.capacity()) + " (largest free range " +
              std::to_string(pool.largestFree()) +
              "; QOPT_CUDA_POOL_BYTES sets the pool's size)";
  }
  // Unlocked: the run's buffers are freed on the way out.
  stop(message);
}

void poolFree(void *p) {
  if (!p)
    return;
  State &s = state();
  std::lock_guard<std::mutex> lock(s.poolMutex);
  if (s.capturing && s.arena.owns(p))
    s.arena.release(p);
  else if (s.pool.owns(p))
    s.pool.release(p); // (a graph's arena buffers are not the pool's own)
  else
    std::free(p); // not the pool's: a host buffer
}

} // namespace

extern "C" {

//===-- MLIR's GPU runtime ABI (gpu-to-llvm, gpu.binary) -----------------===//

void *mgpuModuleLoad(void *data, size_t /*size*/) {
  // Called from the library's constructors, before the runtime has chosen
  // a device: loaded into the context by qopt_cuda_init.
  auto *module = new Module{data, nullptr};
  state().modules.push_back(module);
  return module;
}

void *mgpuModuleLoadJIT(void *data, int /*optLevel*/) {
  return mgpuModuleLoad(data, 0);
}

void mgpuModuleUnload(void *module) {
  State &s = state();
  auto *m = static_cast<Module *>(module);
  s.modules.erase(std::remove(s.modules.begin(), s.modules.end(), m),
                  s.modules.end());
  if (m->loaded && s.initialized)
    s.cu.cuModuleUnload(m->loaded);
  delete m;
}

void *mgpuModuleGetFunction(void *module, const char *name) {
  State &s = state();
  auto *m = static_cast<Module *>(module);
  if (!s.initialized || !m->loaded)
    stop(std::string("kernel '") + name +
         "' launched before the model's GPU was initialized");
  CUfunction &fn = m->functions[name];
  if (!fn)
    if (CUresult rc = s.cu.cuModuleGetFunction(&fn, m->loaded, name))
      stop(std::string("cannot find kernel '") + name + "': " + errorText(rc));
  return fn;
}

// Called before each launch (and before mgpuModuleGetFunction).
void *mgpuStreamCreate() {
  bindContext();
  return state().stream;
}

void mgpuStreamDestroy(void *) {}

// Generated code calls this after each launch; the wait itself happens only
// where the host touches memory (qopt_cuda_host_sync, which
// qopt-gpu-host-sync places), so that launches queue back to back.
void mgpuStreamSynchronize(void *) { state().pending = true; }

void qopt_cuda_host_sync() {
  State &s = state();
  // (A captured run's host code touches only host memory: its one wait,
  // before it returns, comes after the graph's launch instead.)
  if (s.capturing || !s.pending.exchange(false))
    return;
  bindContext();
  if (CUresult rc = s.cu.cuStreamSynchronize(s.stream))
    stop("a kernel failed: " + errorText(rc));
}

void mgpuLaunchKernel(void *function, intptr_t gridX, intptr_t gridY,
                      intptr_t gridZ, intptr_t blockX, intptr_t blockY,
                      intptr_t blockZ, int32_t smem, void *stream,
                      void **params, void ** /*extra*/, size_t /*count*/) {
  if (CUresult rc = state().cu.cuLaunchKernel(function, gridX, gridY, gridZ,
                                              blockX, blockY, blockZ, smem,
                                              stream, params, nullptr))
    stop("cannot launch a kernel of " + std::to_string(gridX) + "x" +
         std::to_string(blockX) + " threads: " + errorText(rc));
}

//===-- The kernel library, called by generated host code -----------------===//

/// A function of the kernel library, which is loaded at the first call:
/// models that never call it do not depend on it loading (its PTX, for
/// GPUs newer than its cubins, needs a driver as new as the nvcc that built
/// it).
static CUfunction libraryFunction(const char *name) {
  State &s = state();
  bindContext();
  if (!s.library.loaded) {
    if (!(&qopt_cuda_library_fatbin && qopt_cuda_library_fatbin))
      stop("the model calls the CUDA kernel library, which is not linked in");
    s.library.image = qopt_cuda_library_fatbin;
    if (CUresult rc = s.cu.cuModuleLoadData(&s.library.loaded, s.library.image))
      stop("cannot load the CUDA kernel library on " +
           std::string(s.deviceName) + ": " + errorText(rc));
  }
  return static_cast<CUfunction>(mgpuModuleGetFunction(&s.library, name));
}

/// Queues one launch of Gemm.cu's tiled GEMM.
static void launchGemm(const qopt_cuda::GemmLaunch &l) {
  State &s = state();
  const char *name =
      qopt_cuda::gemmName(l.format, l.transposed, l.skinny, l.precision);
  CUfunction fn = libraryFunction(name);
  qopt_cuda::GemmParams p = l.p;
  // (The quantized entries take the double-quantized scales too.)
  qopt_cuda::NestedScales dq{};
  if (l.dq)
    dq = *l.dq;
  void *params[] = {&p, &dq};
  if (CUresult rc = s.cu.cuLaunchKernel(fn, l.gridX, l.gridY, l.gridZ,
                                        qopt_cuda::kGemmThreads, 1, 1, 0,
                                        s.stream, params, nullptr))
    stop(std::string("cannot launch ") + name + ": " + errorText(rc));
  s.pending = true;
}

/// C += A·B (qopt_kernel_sgemm's arguments): Gemm.cu's tiled GEMM,
/// launched as GemmLaunch.h plans, queued like the generated kernels; in
/// f32, or on the tensor cores with A and B rounded to bf16
/// (`--cuda-matmul-precision=medium`) or tf32 (`high`), f32 accumulators.
/// `_overwrite`: C = A·B (a product whose C started as zeros:
/// qopt-linalg-to-blas drops the zeros' copy).
#define QOPT_SGEMM_ENTRY(name, overwrite, precision)                           \
  void name(int64_t o0, int64_t o1, int64_t m, int64_t n, int64_t k,           \
            int64_t pa, int64_t oa, int64_t sa0, int64_t sa1, int64_t sam,     \
            int64_t sak, int64_t pb, int64_t ob, int64_t sb0, int64_t sb1,     \
            int64_t sbk, int64_t sbn, int64_t pc, int64_t oc, int64_t sc0,     \
            int64_t sc1, int64_t scm, int64_t scn) {                           \
    qopt_cuda::planSgemm(o0, o1, m, n, k, pa, oa, sa0, sa1, sam, sak, pb, ob,  \
                         sb0, sb1, sbk, sbn, pc, oc, sc0, sc1, scm, scn,       \
                         launchGemm, overwrite, precision);                    \
  }
QOPT_SGEMM_ENTRY(qopt_cuda_sgemm, false, qopt_cuda::kGemmF32)
QOPT_SGEMM_ENTRY(qopt_cuda_sgemm_overwrite, true, qopt_cuda::kGemmF32)
QOPT_SGEMM_ENTRY(qopt_cuda_sgemm_bf16, false, qopt_cuda::kGemmBF16)
QOPT_SGEMM_ENTRY(qopt_cuda_sgemm_bf16_overwrite, true, qopt_cuda::kGemmBF16)
QOPT_SGEMM_ENTRY(qopt_cuda_sgemm_tf32, false, qopt_cuda::kGemmTF32)
QOPT_SGEMM_ENTRY(qopt_cuda_sgemm_tf32_overwrite, true, qopt_cuda::kGemmTF32)

/// Queues the launches of a quantized product (qopt_kernel_qlinear's
/// arguments, `lora`: a LoRA branch or null) as QLinearLaunch.h plans.
static void launchQLinear(
    int64_t format, int64_t group, int64_t flags, int64_t o0, int64_t o1,
    int64_t m, int64_t n, int64_t k, int64_t pa, int64_t oa, int64_t sa0,
    int64_t sa1, int64_t sam, int64_t sak, int64_t pw, int64_t ow, int64_t sw,
    int64_t ps, int64_t os, int64_t ss, int64_t pz, int64_t oz, int64_t sz,
    int64_t pc, int64_t oc, int64_t sc0, int64_t sc1, int64_t scm, int64_t scn,
    const qopt_cuda::LoRAArgs *lora, const qopt_cuda::NestedScales *dq) {
  State &s = state();
  using qopt_cuda::kWarps;
  const char *error = qopt_cuda::planQLinear(
      /*aligned=*/true, format, group, flags, o0, o1, m, n, k, pa, oa, sa0, sa1,
      sam, sak, pw, ow, sw, ps, os, ss, pz, oz, sz, pc, oc, sc0, sc1, scm, scn,
      lora, dq,
      [&](const qopt_cuda::GemvLaunch &l) {
        CUfunction fn = libraryFunction(qopt_cuda::gemvName(l.format));
        const float *x = l.x;
        int64_t ldx = l.ldx, codeRow = l.codeRow, scaleRow = l.scaleRow,
                zpRow = l.zpRow, rows = l.n, kk = l.k, g = l.group, ldy = l.ldy;
        int mm = int(l.m);
        const uint8_t *codes = l.codes;
        const float *scales = l.scales;
        const int8_t *zp = l.zp;
        float *y = l.y, beta = l.beta;
        qopt_cuda::LoRAView branch = l.lora;
        qopt_cuda::NestedScales nested{};
        if (l.dq)
          nested = *l.dq;
        void *params[] = {&x,        &ldx, &mm,    &codes,  &codeRow, &scales,
                          &scaleRow, &zp,  &zpRow, &rows,   &kk,      &g,
                          &y,        &ldy, &beta,  &branch, &nested};
        unsigned blocks = qopt_cuda::gemvBlocks(l);
        if (CUresult rc = s.cu.cuLaunchKernel(fn, blocks, 1, 1, kWarps * 32, 1,
                                              1, 0, s.stream, params, nullptr))
          stop(std::string("cannot launch ") + qopt_cuda::gemvName(l.format) +
               ": " + errorText(rc));
        s.pending = true;
      },
      launchGemm);
  if (error)
    stop(std::string("internal: the CUDA GEMV cannot take this product: ") +
         error);
}

/// A quantized product on per-token activations (flag kQLinearPerToken):
/// W8A8.cu's launches as QLinearLaunch.h's planW8A8 plans them, the rows'
/// codes and steps in a pool buffer (allocated once the call is known to
/// be taken) freed once they are queued (runs take
/// turns on one stream, and the host waits for it before it touches pool
/// memory: the next user of the range comes after them).
static void launchW8A8(int64_t format, int64_t group, int64_t flags, int64_t o0,
                       int64_t o1, int64_t m, int64_t n, int64_t k, int64_t pa,
                       int64_t oa, int64_t sa0, int64_t sa1, int64_t sam,
                       int64_t sak, int64_t pw, int64_t ow, int64_t sw,
                       int64_t ps, int64_t os, int64_t ss, int64_t pz,
                       int64_t oz, int64_t sz, int64_t pc, int64_t oc,
                       int64_t sc0, int64_t sc1, int64_t scm, int64_t scn,
                       int64_t pst, int64_t ost) {
  State &s = state();
  void *scratch = nullptr;
  const char *error = qopt_cuda::planW8A8(
      /*aligned=*/true, format, group, flags, o0, o1, m, n, k, pa, oa, sa0, sa1,
      sam, sak, pw, ow, sw, ps, os, ss, pz, oz, sz, pc, oc, sc0, sc1, scm, scn,
      pst, ost, [&](size_t bytes) { return scratch = poolAlloc(256, bytes); },
      [&](const qopt_cuda::W8A8Launch &l) {
        const char *name = qopt_cuda::w8a8Name(l);
        CUfunction fn = libraryFunction(name);
        qopt_cuda::W8A8Launch copy = l;
        void *params[] = {l.gemm ? static_cast<void *>(&copy.p)
                                 : static_cast<void *>(&copy.q)};
        unsigned threads =
            l.gemm ? qopt_cuda::kGemmThreads : qopt_cuda::kTokenThreads;
        if (CUresult rc =
                s.cu.cuLaunchKernel(fn, l.gridX, l.gridY, l.gridZ, threads, 1,
                                    1, 0, s.stream, params, nullptr))
          stop(std::string("cannot launch ") + name + ": " + errorText(rc));
        s.pending = true;
      });
  poolFree(scratch);
  if (error)
    stop(std::string("internal: the CUDA W8A8 product cannot take this "
                     "call: ") +
         error);
}

/// C += A·Wᵀ for a quantized W (qopt_kernel_qlinear's arguments, then the
/// double-quantized scales': codes (pointer, offset), absmax (pointer,
/// offset), block, offset's f32 bits, the 256-value table (pointer,
/// offset); codes 0: f32 scales): the
/// GEMV of QLinear.cu for a few rows, Gemm.cu's GEMM with the codes
/// dequantized into its tiles for more, launched as QLinearLaunch.h plans,
/// queued like the generated kernels.
void qopt_cuda_qlinear(int64_t format, int64_t group, int64_t flags, int64_t o0,
                       int64_t o1, int64_t m, int64_t n, int64_t k, int64_t pa,
                       int64_t oa, int64_t sa0, int64_t sa1, int64_t sam,
                       int64_t sak, int64_t pw, int64_t ow, int64_t sw,
                       int64_t ps, int64_t os, int64_t ss, int64_t pz,
                       int64_t oz, int64_t sz, int64_t pc, int64_t oc,
                       int64_t sc0, int64_t sc1, int64_t scm, int64_t scn,
                       int64_t pq, int64_t oq, int64_t pabs, int64_t oabs,
                       int64_t qblock, int64_t qoffset, int64_t ptab,
                       int64_t otab) {
  if (flags & qopt_cuda::kQLinearPerToken) {
    // (With given codes the nested scales' first slots hold the steps.)
    bool given = flags & qopt_cuda::kQLinearCodes;
    if (pq && !given)
      stop("internal: the CUDA W8A8 product cannot take nested scales");
    if (given && !pq)
      stop("internal: the CUDA W8A8 product's codes come without steps");
    launchW8A8(format, group, flags, o0, o1, m, n, k, pa, oa, sa0, sa1, sam,
               sak, pw, ow, sw, ps, os, ss, pz, oz, sz, pc, oc, sc0, sc1, scm,
               scn, given ? pq : 0, given ? oq : 0);
    return;
  }
  qopt_cuda::NestedScales dq;
  bool nested = qopt_cuda::nestedScales(pq, oq, pabs, oabs, qblock, qoffset,
                                        ptab, otab, dq);
  launchQLinear(format, group, flags, o0, o1, m, n, k, pa, oa, sa0, sa1, sam,
                sak, pw, ow, sw, ps, os, ss, pz, oz, sz, pc, oc, sc0, sc1, scm,
                scn, nullptr, nested ? &dq : nullptr);
}

/// The same plus a LoRA branch in the kernels' epilogue, C (+)= A·Wᵀ +
/// scale · Z·Bᵀ (Z = x·Aᵀ; then Z's pointer, offset and strides along the
/// outer loops, rows and rank, B's along N and the rank, the rank, the
/// scale's f32 bits, and the down projection A's pointer, offset and
/// strides along the outer loops, the rank and K: pointer 0, Z is given;
/// else the launches write Z = x·Aᵀ from the product's own x, so the
/// branch has no launch of its own): qopt-linalg-to-blas{cuda-qlinear-lora=…}.
void qopt_cuda_qlinear_lora(
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
  qopt_cuda::NestedScales dq;
  bool nested = qopt_cuda::nestedScales(pq, oq, pabs, oabs, qblock, qoffset,
                                        ptab, otab, dq);
  qopt_cuda::LoRAArgs lora{pl,   ol,
                           sl0,  sl1,
                           slm,  slr,
                           pb,   ob,
                           sb0,  sb1,
                           sbn,  sbr,
                           rank, qopt_cuda::floatFromBits(uint32_t(scaleBits)),
                           pd,   od,
                           sd0,  sd1,
                           sdr,  sdk};
  launchQLinear(format, group, flags, o0, o1, m, n, k, pa, oa, sa0, sa1, sam,
                sak, pw, ow, sw, ps, os, ss, pz, oz, sz, pc, oc, sc0, sc1, scm,
                scn, &lora, nested ? &dq : nullptr);
}

/// Queues one launch of the library's kernel `name` over a 1-D grid of
/// `blocks` blocks of `threads` threads, its one parameter a struct by
/// value (none when there are no blocks), with `shared` bytes of dynamic
/// shared memory (past 48 KB: opted in to first).
static void launchRows(const char *name, int64_t blocks, unsigned threads,
                       void *param, int64_t shared = 0) {
  if (blocks == 0)
    return;
  if (blocks > 0x7fffffff)
    stop(std::string(name) + ": " + std::to_string(blocks) +
         " blocks, more than a grid takes");
  State &s = state();
  CUfunction fn = libraryFunction(name);
  if (shared > kDefaultSharedBytes) {
    // Only ever raised: models sharing the library (and its functions)
    // may launch with other sizes in between. (stop() does not return:
    // not under the lock.)
    CUresult rc = CUDA_SUCCESS;
    {
      std::lock_guard<std::mutex> lock(s.poolMutex);
      int64_t &opted = s.library.sharedOptIn[fn];
      if (shared > opted) {
        rc = s.cu.cuFuncSetAttribute(fn, kFuncAttrMaxDynamicSharedBytes,
                                     int(shared));
        if (rc == CUDA_SUCCESS)
          opted = shared;
      }
    }
    if (rc != CUDA_SUCCESS)
      stop(std::string(name) + " needs " + std::to_string(shared) +
           " bytes of shared memory per block, which this GPU does not "
           "give: " +
           errorText(rc));
  }
  void *params[] = {param};
  if (CUresult rc =
          s.cu.cuLaunchKernel(fn, unsigned(blocks), 1, 1, threads, 1, 1,
                              unsigned(shared), s.stream, params, nullptr))
    stop(std::string("cannot launch ") + name + ": " + errorText(rc));
  s.pending = true;
}

/// qopt.attention's forward pass (flags: AttentionTile.h's; then Q, K, V,
/// the mask and Y as MLIR memrefs): Attention.cu's fused kernel, one
/// launch, queued like the generated kernels. convert-qopt-to-linalg's
/// `attention-library` option makes the call, i1 masks through the `_i1`
/// entry.
void qopt_cuda_attention(QOPT_ATTENTION_PARAMS) {
  qopt_cuda::AttentionParams p;
  int64_t blocks = 0;
  if (const char *error = qopt_cuda::planAttention(
          flags, scale, softcap, QOPT_VIEW4(q), QOPT_VIEW4(k), QOPT_VIEW4(v),
          QOPT_VIEW4(m), QOPT_VIEW4(y), p, blocks))
    stop(std::string("internal: the CUDA attention cannot take this call: ") +
         error);
  launchRows("qopt_cuda_attention_f32", blocks, qopt_cuda::kAttnThreads, &p);
}

/// The same for a bool mask (a byte per element; `flags` says which): a
/// second name only because the IR's declaration types the mask.
void qopt_cuda_attention_i1(QOPT_ATTENTION_PARAMS)
    __attribute__((alias("qopt_cuda_attention")));

/// qopt.attention_grad (flags, scale, soft cap, then Q, K, V, the mask,
/// the forward's output O, dO, and the results dQ, dK, dV and a [B, Hq,
/// S, 2] scratch buffer as MLIR memrefs): Attention.cu's two backward
/// kernels, the dQ one first (it writes the rows' statistics the dK/dV one
/// reads), queued in stream order.
void qopt_cuda_attention_backward(QOPT_ATTENTION_BWD_PARAMS) {
  qopt_cuda::AttentionBwdParams p;
  int64_t dqBlocks = 0, dkvBlocks = 0;
  if (const char *error = qopt_cuda::planAttentionBackward(
          flags, scale, softcap, QOPT_VIEW4(q), QOPT_VIEW4(k), QOPT_VIEW4(v),
          QOPT_VIEW4(m), QOPT_VIEW4(y), QOPT_VIEW4(g), QOPT_VIEW4(dq),
          QOPT_VIEW4(dk), QOPT_VIEW4(dv), QOPT_VIEW4(st), p, dqBlocks,
          dkvBlocks))
    stop(std::string("internal: the CUDA attention backward cannot take this "
                     "call: ") +
         error);
  // (The dQ kernel first: it writes the rows' statistics.)
  launchRows("qopt_cuda_attention_bwd_dq_f32", dqBlocks,
             qopt_cuda::kAttnThreads, &p);
  launchRows("qopt_cuda_attention_bwd_dkv_f32", dkvBlocks,
             qopt_cuda::kAttnThreads, &p);
}

/// The same for a bool mask (`flags` says which).
void qopt_cuda_attention_backward_i1(QOPT_ATTENTION_BWD_PARAMS)
    __attribute__((alias("qopt_cuda_attention_backward")));

/// A planned Hadamard launch: the mixed kernel with its dynamic shared
/// memory, the power-of-two `kernel` taking `param` (part of `m`), or the
/// split plan's butterflies and columns.
static void launchHadamard(qopt_cuda::HadamardMixedParams &m, int64_t blocks,
                           qopt_cuda::HadamardKernel kind, const char *kernel,
                           void *param) {
  using namespace qopt_cuda;
  if (kind == kHadamardMixed) {
    launchRows("qopt_cuda_hadamard_mixed_f32", blocks, kHadamardThreads, &m,
               hadamardMixedShared(m));
  } else if (kind == kHadamardSplit) {
    HadamardParams butterflies = hadamardButterflies(m, blocks);
    launchRows("qopt_cuda_hadamard_f32", blocks, kHadamardThreads,
               &butterflies);
    launchRows("qopt_cuda_hadamard_columns_f32", hadamardColumnBlocks(m),
               kHadamardThreads, &m);
  } else {
    launchRows(kernel, blocks, kHadamardThreads, param);
  }
}

/// qopt.hadamard over the last axis for a block n = base · 2^k (flags bit
/// 0: signs given; then x [rows, cols], the signs, H_base on the host and
/// y as MLIR memrefs): one launch of Hadamard.cu's power-of-two kernel, or
/// of its mixed one, or for blocks past 23040 the butterflies and the
/// columns kernel, queued like the generated kernels.
void qopt_cuda_hadamard(QOPT_HADAMARD_PARAMS) {
  qopt_cuda::HadamardMixedParams m;
  int64_t blocks = 0;
  qopt_cuda::HadamardKernel kind;
  if (const char *error = qopt_cuda::planHadamard(
          flags, n, scale, QOPT_VIEW2(x), QOPT_VIEW1(s), QOPT_VIEW2(hm),
          QOPT_VIEW2(y), m, blocks, kind))
    stop(std::string("internal: the CUDA Hadamard transform cannot take this "
                     "call: ") +
         error);
  launchHadamard(m, blocks, kind, "qopt_cuda_hadamard_f32", &m.q.h);
}

/// A Hadamard transform whose output per-token quantized products read
/// (qopt_cuda_hadamard's arguments, then the bits, whether y is wanted,
/// and the codes' [rows, cols] and steps' [rows] pointers and offsets):
/// one launch of Hadamard.cu's qopt_cuda_hadamard_quant_f32 (or the mixed
/// kernel), a block a row, writes the codes and steps (and y where
/// wanted).
void qopt_cuda_hadamard_quant(QOPT_HADAMARD_QUANT_PARAMS) {
  qopt_cuda::HadamardMixedParams m;
  int64_t blocks = 0;
  qopt_cuda::HadamardKernel kind;
  if (const char *error = qopt_cuda::planHadamardQuant(
          flags, n, scale, QOPT_VIEW2(x), QOPT_VIEW1(s), QOPT_VIEW2(hm),
          QOPT_VIEW2(y), bits, writeY, pc, oc, ps, os, m, blocks, kind))
    stop(std::string("internal: qopt_cuda_hadamard_quant: ") + error);
  launchHadamard(m, blocks, kind, "qopt_cuda_hadamard_quant_f32", &m.q);
}

/// qopt.rms_norm / qopt.layer_norm over the last axis (flags: NormTile.h's;
/// then x [rows, cols], gamma, beta and y as MLIR memrefs): Norm.cu's
/// kernel, a warp per row, one launch, queued like the generated kernels.
void qopt_cuda_norm(QOPT_NORM_PARAMS) {
  qopt_cuda::NormParams p;
  int64_t blocks = 0;
  qopt_cuda::planNorm(flags, eps, QOPT_VIEW2(x), QOPT_VIEW1(g), QOPT_VIEW1(b),
                      QOPT_VIEW2(y), p, blocks);
  launchRows("qopt_cuda_norm_f32", blocks, qopt_cuda::kNormThreads, &p);
}

/// A norm whose output per-token quantized products read (qopt_cuda_norm's
/// arguments, then the bits, whether y is wanted, and the codes' [rows,
/// cols] and steps' [rows] pointers and offsets): one launch of Norm.cu's
/// qopt_cuda_norm_quant_f32 writes the codes and steps the products take
/// (qopt_cuda_qlinear's kQLinearCodes), and y where wanted.
void qopt_cuda_norm_quant(QOPT_NORM_QUANT_PARAMS) {
  qopt_cuda::NormQuantParams q;
  int64_t blocks = 0;
  if (const char *error = qopt_cuda::planNormQuant(
          flags, eps, QOPT_VIEW2(x), QOPT_VIEW1(g), QOPT_VIEW1(b),
          QOPT_VIEW2(y), bits, writeY, pc, oc, ps, os, q, blocks))
    stop(std::string("internal: qopt_cuda_norm_quant: ") + error);
  launchRows("qopt_cuda_norm_quant_f32", blocks, qopt_cuda::kNormThreads, &q);
}

/// AdamW's update of `count` parameters (AdamWTile.h's table, host
/// memory), qopt-linalg-to-blas's call for a train step's optimizer: one
/// launch of AdamW.cu's qopt_cuda_adamw_f32 per kAdamWTensors parameters,
/// queued like the generated kernels.
void qopt_cuda_adamw(QOPT_ADAMW_PARAMS) {
  qopt_cuda::AdamWParams a;
  for (int64_t first = 0; first < count;) {
    const char *why = nullptr;
    int64_t blocks =
        qopt_cuda::planAdamW(count, flags, QOPT_VIEW1(step), c1, b2, c2, eps,
                             QOPT_VIEW2(table), first, a, why);
    if (why)
      stop(std::string("internal: qopt_cuda_adamw: ") + why);
    launchRows("qopt_cuda_adamw_f32", blocks, qopt_cuda::kAdamWThreads, &a);
  }
}

/// The rows of x [rows, k] (row stride sx, contiguous along K), times or
/// divided by a smoothing vector (`smoothing`: W8A8Tile.h's TokenSmoothing;
/// pointer, offset, stride), quantized per token to `bits` bits: int8
/// codes [rows, k] and steps [rows], which the W8A8 products of that x
/// read (kQLinearCodes); one launch of W8A8.cu's qopt_cuda_token_quant,
/// once for all of them.
void qopt_cuda_quantize_rows(int64_t bits, int64_t rows, int64_t k, int64_t px,
                             int64_t ox, int64_t sx, int64_t pc, int64_t oc,
                             int64_t ps, int64_t os, int64_t smoothing,
                             int64_t pv, int64_t ov, int64_t sv) {
  qopt_cuda::TokenQuantParams q;
  int64_t blocks = 0;
  if (const char *error =
          qopt_cuda::planQuantizeRows(bits, rows, k, px, ox, sx, pc, oc, ps, os,
                                      smoothing, pv, ov, sv, q, blocks))
    stop(std::string("internal: qopt_cuda_quantize_rows: ") + error);
  launchRows("qopt_cuda_token_quant", blocks, qopt_cuda::kTokenThreads, &q);
}

/// qopt.norm_grad over the last axis (flags: NormTile.h's; then x [rows,
/// cols], gamma, dy, dx and gamma's and beta's gradients as MLIR memrefs):
/// Norm.cu's backward, dx a warp per row, then (where gamma's or beta's
/// gradient is wanted) the column sums over chunks of rows and over the
/// chunks, queued in stream order; the rows' statistics and the chunks'
/// sums in a pool buffer freed once they are queued.
void qopt_cuda_norm_backward(QOPT_NORM_BWD_PARAMS) {
  qopt_cuda::NormBwdParams p;
  int64_t scratch = 0, rowBlocks = 0, columnBlocks = 0;
  qopt_cuda::planNormBackward(
      flags, eps, QOPT_VIEW2(x), QOPT_VIEW1(g), QOPT_VIEW2(dy), QOPT_VIEW2(dx),
      QOPT_VIEW1(dg), QOPT_VIEW1(db), p, scratch, rowBlocks, columnBlocks);
  if (rowBlocks == 0 && columnBlocks == 0)
    return;
  // (Chunks along x, column blocks along y: the y limit is 65535.)
  if (columnBlocks > 65535 || p.chunks > 0x7fffffff)
    stop("qopt_cuda_norm_backward: " + std::to_string(p.rows) + " x " +
         std::to_string(p.cols) + ", more than the column sums' grid takes");
  void *buffer = poolAlloc(256, size_t(scratch) * sizeof(float));
  qopt_cuda::setNormScratch(p, static_cast<float *>(buffer));
  launchRows("qopt_cuda_norm_bwd_dx_f32", rowBlocks, qopt_cuda::kNormThreads,
             &p);
  if (columnBlocks) {
    State &s = state();
    void *params[] = {&p};
    if (p.chunks)
      if (CUresult rc = s.cu.cuLaunchKernel(
              libraryFunction("qopt_cuda_norm_bwd_cols_f32"),
              unsigned(p.chunks), unsigned(columnBlocks), 1,
              qopt_cuda::kNormThreads, 1, 1, 0, s.stream, params, nullptr))
        stop("cannot launch qopt_cuda_norm_bwd_cols_f32: " + errorText(rc));
    // (No rows: this alone, writing the sums of nothing.)
    launchRows("qopt_cuda_norm_bwd_sum_f32", columnBlocks,
               qopt_cuda::kNormThreads, &p);
  }
  poolFree(buffer);
}

//===-- What the runtime calls (qopt_model_load / run) -------------------===//

/// Opens the driver, takes the device's primary context, sizes the pool
/// and loads the model's kernels, which have cubins for `archs` (text, for
/// messages) and PTX for sm_`ptxArch` and newer. Returns 0, or 1 with
/// `error` set.
int qopt_cuda_init(int ptxArch, const char *archs, char *error,
                   size_t errorSize) {
  State &s = state();
  auto fail = [&](const std::string &message) {
    std::snprintf(error, errorSize, "%s", message.c_str());
    return 1;
  };
  if (s.initialized) {
    ++s.users;
    return 0;
  }
  std::string message;
  if (!loadDriver(s.cu, message))
    return fail(message);
  int ordinal = 0, count = 0;
  if (const char *env = std::getenv("QOPT_CUDA_DEVICE"))
    ordinal = std::atoi(env);
  if (CUresult rc = s.cu.cuInit(0))
    return fail("cannot initialize the CUDA driver: " + errorText(rc));
  if (s.cu.cuDeviceGetCount(&count) || count == 0)
    return fail("the CUDA driver sees no GPU");
  if (ordinal < 0 || ordinal >= count)
    return fail("QOPT_CUDA_DEVICE=" + std::to_string(ordinal) + ": there are " +
                std::to_string(count) + " GPUs");
  if (CUresult rc = s.cu.cuDeviceGet(&s.device, ordinal))
    return fail("cannot open GPU " + std::to_string(ordinal) + ": " +
                errorText(rc));
  s.cu.cuDeviceGetName(s.deviceName, sizeof(s.deviceName), s.device);
  int major = 0, minor = 0;
  s.cu.cuDeviceGetAttribute(&major, kAttrComputeCapabilityMajor, s.device);
  s.cu.cuDeviceGetAttribute(&minor, kAttrComputeCapabilityMinor, s.device);
  s.computeCapability = major * 10 + minor;
  if (s.computeCapability < ptxArch)
    return fail("the GPU '" + std::string(s.deviceName) + "' is sm_" +
                std::to_string(s.computeCapability) +
                ", older than every architecture the model was compiled for "
                "(cubins for " +
                archs + ", PTX for sm_" + std::to_string(ptxArch) +
                " and newer); recompile it with qoptc --cuda-archs");
  // Host code reads buffers between launches: managed memory the host may
  // touch while the GPU works on other buffers (Linux, sm_60 and newer;
  // not WSL or some virtual GPUs).
  int concurrent = 0;
  s.cu.cuDeviceGetAttribute(&concurrent, kAttrConcurrentManagedAccess,
                            s.device);
  if (!concurrent)
    return fail("the GPU '" + std::string(s.deviceName) +
                "' (or its driver) lacks concurrent managed memory access, "
                "which qopt's CUDA models need (Linux, not WSL)");
  if (CUresult rc = s.cu.cuDevicePrimaryCtxRetain(&s.context, s.device))
    return fail("cannot create a context on " + std::string(s.deviceName) +
                ": " + errorText(rc));
  s.cu.cuCtxSetCurrent(s.context);
  if (CUresult rc = s.cu.cuStreamCreate(&s.stream, kStreamNonBlocking))
    return fail("cannot create a stream: " + errorText(rc));
  // The pool: QOPT_CUDA_POOL_BYTES, else 90% of the memory free now.
  size_t freeBytes = 0, totalBytes = 0;
  s.cu.cuMemGetInfo(&freeBytes, &totalBytes);
  size_t poolBytes = freeBytes / 10 * 9;
  if (const char *env = std::getenv("QOPT_CUDA_POOL_BYTES"))
    poolBytes = std::strtoull(env, nullptr, 10);
  if (CUresult rc =
          s.cu.cuMemAllocManaged(&s.region, poolBytes, kMemAttachGlobal))
    return fail("out of memory: cannot reserve a pool of " +
                std::to_string(poolBytes) + " bytes on " + s.deviceName + " (" +
                std::to_string(freeBytes) + " free): " + errorText(rc));
  s.pool.reset(reinterpret_cast<char *>(s.region), poolBytes);
  for (Module *m : s.modules)
    if (CUresult rc = s.cu.cuModuleLoadData(&m->loaded, m->image))
      return fail("cannot load the model's kernels on " +
                  std::string(s.deviceName) + " (sm_" +
                  std::to_string(s.computeCapability) + "): " + errorText(rc));
  qopt_kernel_set_allocator(poolAlloc, poolFree);
  s.initialized = true;
  s.users = 1;
  return 0;
}

/// Gives everything back to the driver (the runtime calls it before it
/// unloads the model): the pool, the kernels, the stream, the context.
void qopt_cuda_shutdown() {
  State &s = state();
  if (!s.cu.handle || (s.initialized && --s.users > 0))
    return;
  bindContext();
  if (s.stream)
    s.cu.cuStreamSynchronize(s.stream);
  for (Module *m : s.modules)
    if (m->loaded) {
      s.cu.cuModuleUnload(m->loaded);
      m->loaded = nullptr;
    }
  if (s.library.loaded) {
    s.cu.cuModuleUnload(s.library.loaded);
    s.library.loaded = nullptr;
    s.library.functions.clear();
    s.library.sharedOptIn.clear();
  }
  if (s.region)
    s.cu.cuMemFree(s.region);
  if (s.stream)
    s.cu.cuStreamDestroy(s.stream);
  if (s.context)
    s.cu.cuDevicePrimaryCtxRelease(s.device);
  qopt_kernel_set_allocator(nullptr, nullptr);
  s.region = 0;
  s.stream = nullptr;
  s.context = nullptr;
  s.pool.reset(nullptr, 0);
  s.initialized = false;
}

/// A pool buffer for the runtime (inputs, parameters): null when the pool
/// is full (the runtime reports it; generated code stops the run instead).
void *qopt_cuda_alloc(size_t bytes) {
  State &s = state();
  std::lock_guard<std::mutex> lock(s.poolMutex);
  return s.pool.allocate(bytes);
}

void qopt_cuda_free(void *p) { poolFree(p); }

/// Bytes free in the pool and its size.
void qopt_cuda_pool_info(size_t *available, size_t *capacity) {
  State &s = state();
  std::lock_guard<std::mutex> lock(s.poolMutex);
  *available = s.pool.available();
  *capacity = s.pool.capacity();
}

/// Waits for the model's stream; 0 or a CUDA error code.
int qopt_cuda_synchronize() {
  State &s = state();
  s.pending = false;
  if (!s.initialized)
    return 0;
  bindContext();
  return s.cu.cuStreamSynchronize(s.stream);
}

const char *qopt_cuda_device_name() { return state().deviceName; }

/// Starts the pool's record of its peak use (qopt_cuda_peak_bytes).
void qopt_cuda_peak_reset() {
  State &s = state();
  std::lock_guard<std::mutex> lock(s.poolMutex);
  s.pool.resetPeak();
}

/// The most bytes in use at once since qopt_cuda_peak_reset, beyond those
/// in use then.
size_t qopt_cuda_peak_bytes() {
  State &s = state();
  std::lock_guard<std::mutex> lock(s.poolMutex);
  return s.pool.peakSinceReset();
}

/// Whether the driver captures graphs.
int qopt_cuda_graphs_supported() {
  State &s = state();
  return s.initialized && s.cu.graphs();
}

/// Starts capturing the stream's work into a graph: until
/// qopt_cuda_capture_end, launches are recorded, not run, the host does not
/// wait, and the run's buffers come from an arena of `bytes` taken from
/// the pool. Returns 0, or 1 (no room for the arena, no capture).
int qopt_cuda_capture_begin(size_t bytes) {
  State &s = state();
  // (The same library loaded twice shares this state: the other model's
  // runs would land in the capture.)
  if (!s.initialized || !s.cu.graphs() || s.capturing || s.users > 1)
    return 1;
  bindContext();
  {
    std::lock_guard<std::mutex> lock(s.poolMutex);
    s.arenaRange = s.pool.allocate(bytes);
    if (!s.arenaRange)
      return 1;
    s.arena.reset(static_cast<char *>(s.arenaRange), bytes);
  }
  if (s.cu.cuStreamBeginCapture(s.stream, kCaptureModeThreadLocal)) {
    std::lock_guard<std::mutex> lock(s.poolMutex);
    s.pool.release(s.arenaRange);
    s.arenaRange = nullptr;
    return 1;
  }
  s.capturing = true;
  return 0;
}

/// Ends the capture; with `keep`, instantiates the graph and returns it
/// (null when the driver refuses it), else drops it. A graph that is not
/// returned gives its arena back.
void *qopt_cuda_capture_end(int keep) {
  State &s = state();
  if (!s.capturing)
    return nullptr;
  bindContext();
  s.capturing = false;
  s.pending = false;
  CUgraph graph = nullptr;
  CUresult rc = s.cu.cuStreamEndCapture(s.stream, &graph);
  CUgraphExec exec = nullptr;
  if (!rc && graph && keep)
    rc = s.cu.cuGraphInstantiate(&exec, graph, 0);
  if (graph)
    s.cu.cuGraphDestroy(graph);
  if (rc || !keep || !exec) {
    if (exec)
      s.cu.cuGraphExecDestroy(exec);
    std::lock_guard<std::mutex> lock(s.poolMutex);
    s.pool.release(s.arenaRange);
    s.arenaRange = nullptr;
    return nullptr;
  }
  auto *g = new Graph{exec, s.arenaRange};
  s.arenaRange = nullptr;
  return g;
}

/// Queues a captured graph's launch (qopt_cuda_synchronize waits for it):
/// 0, or a CUDA error code (nothing was queued).
int qopt_cuda_graph_launch(void *graph) {
  State &s = state();
  bindContext();
  if (CUresult rc =
          s.cu.cuGraphLaunch(static_cast<Graph *>(graph)->exec, s.stream))
    return rc;
  s.pending = true;
  return 0;
}

/// Destroys a graph and gives its arena back to the pool.
void qopt_cuda_graph_destroy(void *graph) {
  if (!graph)
    return;
  State &s = state();
  auto *g = static_cast<Graph *>(graph);
  if (s.initialized) {
    bindContext();
    s.cu.cuStreamSynchronize(s.stream);
    s.cu.cuGraphExecDestroy(g->exec);
    std::lock_guard<std::mutex> lock(s.poolMutex);
    s.pool.release(g->arena);
  }
  delete g;
}

/// Queues a copy of `bytes` between two pool buffers on the stream: 0, or
/// a CUDA error code.
int qopt_cuda_copy(void *to, const void *from, size_t bytes) {
  State &s = state();
  if (!bytes)
    return 0;
  bindContext();
  s.pending = true;
  return s.cu.cuMemcpyDtoDAsync(CUdeviceptr(uintptr_t(to)),
                                CUdeviceptr(uintptr_t(from)), bytes, s.stream);
}

/// Queues the move of a pool range the host just wrote (parameters at
/// load, a run's inputs) to the GPU, so the kernels find it there instead
/// of faulting its pages over one by one (cuMemPrefetchAsync_v2, or the
/// first version on drivers older than CUDA 12.2). A failure only costs
/// the faults.
void qopt_cuda_prefetch(const void *p, size_t bytes) {
  State &s = state();
  if (!s.initialized || !bytes ||
      (!s.cu.cuMemPrefetchAsync && !s.cu.cuMemPrefetchAsyncV1))
    return;
  bindContext();
  CUdeviceptr at = CUdeviceptr(uintptr_t(p));
  if (s.cu.cuMemPrefetchAsync)
    s.cu.cuMemPrefetchAsync(
        at, bytes, CUmemLocation{kMemLocationTypeDevice, int(s.device)}, 0,
        s.stream);
  else
    s.cu.cuMemPrefetchAsyncV1(at, bytes, s.device, s.stream);
  s.pending = true;
}

} // extern "C"
