/* A stand-in for the CUDA driver (libcuda.so.1) for testing the CUDA
   runtime path without a GPU: contexts, streams and managed memory are
   host memory; module loads check the image is a fatbin; kernel launches
   only count (nothing runs, so outputs are whatever the pool held).
   FAKE_CUDA_CC sets the compute capability (default 90),
   FAKE_CUDA_FAIL_LAUNCH=N fails the Nth launch (1-based),
   FAKE_CUDA_CONCURRENT_MANAGED=0 denies concurrent managed access,
   FAKE_CUDA_MEM the free memory in bytes (default 1 GiB),
   FAKE_CUDA_SHARED_OPTIN the dynamic shared memory a kernel may opt in to
   (default 232448, an H100's); a launch asking more than 48 KB without
   having opted in fails, as on a GPU. Stream capture records launches
   into a graph (a wait while capturing fails it, as on a GPU) and a graph
   launch counts its launches again; FAKE_CUDA_CAPTURE_FAIL=1 makes every
   capture fail. At exit it prints the launches, the stream waits, the
   modules loaded, the managed bytes allocated, the graphs captured and
   launched and the device-to-device copies to FAKE_CUDA_LOG. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef int CUresult;
static long launches, syncs, modules, failAt = -1;
static size_t managed;
/* The kernel library's kernels launched (their names begin with
   "qopt_cuda_"; generated kernels' do not). */
static char *library[64];
static int libraryCount;
/* The library's launches by name and grid size (x · y · z): "launch NAME
   BLOCKS COUNT" lines. */
static char *gridName[256];
static unsigned long gridBlocks[256];
static long gridCount[256];
static int grids;
/* cuMemPrefetchAsync_v2 calls and their bytes. */
static long prefetches;
static size_t prefetched;
/* Stream capture: whether on, the launches recorded (library kernels by
   name and grid size), graphs captured and launched, copies. */
typedef struct {
  long launches;
  int count;
  char *name[256];
  unsigned long blocks[256];
} Graph;
static Graph *capture;
static int captureBroken;
static long captures, graphLaunches, copies;
static size_t copied;

static void report(void) {
  const char *log = getenv("FAKE_CUDA_LOG");
  if (!log)
    return;
  FILE *f = fopen(log, "w");
  if (f) {
    fprintf(f, "launches %ld\nsyncs %ld\nmodules %ld\nmanaged %zu\n",
            launches, syncs, modules, managed);
    fprintf(f, "prefetches %ld\nprefetched %zu\n", prefetches, prefetched);
    fprintf(f, "captures %ld\ngraph_launches %ld\ncopies %ld\ncopied %zu\n",
            captures, graphLaunches, copies, copied);
    for (int i = 0; i < libraryCount; ++i)
      fprintf(f, "library %s\n", library[i]);
    for (int i = 0; i < grids; ++i)
      fprintf(f, "launch %s %lu %ld\n", gridName[i], gridBlocks[i],
              gridCount[i]);
    fclose(f);
  }
}

CUresult cuInit(unsigned flags) {
  (void)flags;
  const char *fail = getenv("FAKE_CUDA_FAIL_LAUNCH");
  failAt = fail ? atol(fail) : -1;
  atexit(report);
  return 0;
}
CUresult cuDeviceGetCount(int *n) { *n = 1; return 0; }
CUresult cuDeviceGet(int *d, int i) { *d = i; return 0; }
CUresult cuDeviceGetName(char *name, int len, int d) {
  (void)d;
  snprintf(name, len, "Fake GPU");
  return 0;
}
CUresult cuDeviceGetAttribute(int *v, int attr, int d) {
  (void)d;
  const char *cc = getenv("FAKE_CUDA_CC");
  int value = cc ? atoi(cc) : 90;
  const char *managed = getenv("FAKE_CUDA_CONCURRENT_MANAGED");
  *v = attr == 75   ? value / 10
       : attr == 76 ? value % 10
       : attr == 89 ? (managed ? atoi(managed) : 1)
                    : 0;
  return 0;
}
CUresult cuDevicePrimaryCtxRetain(void **ctx, int d) {
  (void)d;
  *ctx = (void *)1;
  return 0;
}
CUresult cuDevicePrimaryCtxRelease_v2(int d) { (void)d; return 0; }
CUresult cuCtxSetCurrent(void *ctx) { (void)ctx; return 0; }
CUresult cuModuleLoadData(void **m, const void *image) {
  uint32_t magic;
  memcpy(&magic, image, 4);
  if (magic != 0xBA55ED50u) /* a fatbin */
    return 200;             /* CUDA_ERROR_INVALID_IMAGE */
  *m = (void *)image;
  ++modules;
  return 0;
}
CUresult cuModuleUnload(void *m) { (void)m; return 0; }
CUresult cuModuleGetFunction(void **f, void *m, const char *name) {
  (void)m;
  *f = (void *)name;
  return 0;
}
/* Kernels' dynamic shared memory opted in to (cuFuncSetAttribute). */
static char *optedName[64];
static int optedBytes[64];
static int opted;
static int *optedIn(const char *name, int add) {
  for (int i = 0; i < opted; ++i)
    if (strcmp(optedName[i], name) == 0)
      return &optedBytes[i];
  if (!add || opted == 64)
    return NULL;
  optedName[opted] = strdup(name);
  optedBytes[opted] = 48 * 1024;
  return &optedBytes[opted++];
}
CUresult cuFuncSetAttribute(void *f, int attr, int value) {
  const char *limit = getenv("FAKE_CUDA_SHARED_OPTIN");
  if (attr != 8 /* MAX_DYNAMIC_SHARED_SIZE_BYTES */ || value < 0 ||
      value > (limit ? atoi(limit) : 232448))
    return 1; /* CUDA_ERROR_INVALID_VALUE */
  int *bytes = optedIn((const char *)f, 1);
  if (!bytes)
    return 1;
  *bytes = value;
  return 0;
}
/* A launch of the kernel library's `name` over `blocks` blocks. */
static void countLibrary(const char *name, unsigned long blocks) {
  if (strncmp(name, "qopt_cuda_", 10) != 0)
    return;
  int seen = 0;
  for (int i = 0; i < libraryCount; ++i)
    seen |= strcmp(library[i], name) == 0;
  if (!seen && libraryCount < 64)
    library[libraryCount++] = strdup(name); /* (the model may be unloaded first) */
  int i = 0;
  while (i < grids && (blocks != gridBlocks[i] || strcmp(gridName[i], name)))
    ++i;
  if (i == grids && grids < 256) {
    gridName[grids] = strdup(name);
    gridBlocks[grids++] = blocks;
  }
  if (i < grids)
    ++gridCount[i];
}
CUresult cuLaunchKernel(void *f, unsigned gx, unsigned gy, unsigned gz,
                        unsigned bx, unsigned by, unsigned bz, unsigned smem,
                        void *stream, void **params, void **extra) {
  (void)by, (void)bz, (void)stream;
  (void)extra;
  const char *name = (const char *)f;
  int *bytes = smem > 48 * 1024 ? optedIn(name, 0) : NULL;
  if (!gx || !bx || !params || gy > 65535 || gz > 65535 ||
      (smem > 48 * 1024 && (!bytes || smem > (unsigned)*bytes)))
    return 1; /* CUDA_ERROR_INVALID_VALUE */
  unsigned long blocks = (unsigned long)gx * gy * gz;
  if (capture) {
    ++capture->launches;
    if (strncmp(name, "qopt_cuda_", 10) == 0 && capture->count < 256) {
      capture->name[capture->count] = strdup(name);
      capture->blocks[capture->count++] = blocks;
    }
    return 0;
  }
  countLibrary(name, blocks);
  return ++launches == failAt ? 719 /* CUDA_ERROR_LAUNCH_FAILED */ : 0;
}
CUresult cuStreamCreate(void **s, unsigned flags) {
  (void)flags;
  *s = (void *)2;
  return 0;
}
CUresult cuStreamDestroy_v2(void *s) { (void)s; return 0; }
CUresult cuStreamSynchronize(void *s) {
  (void)s;
  if (capture) {
    captureBroken = 1; /* CUDA_ERROR_STREAM_CAPTURE_INVALIDATED at the end */
    return 900;        /* CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED */
  }
  ++syncs;
  return 0;
}
CUresult cuStreamBeginCapture_v2(void *s, int mode) {
  (void)s;
  if (capture || mode < 0 || mode > 2)
    return 1;
  capture = calloc(1, sizeof(Graph));
  captureBroken = 0;
  return 0;
}
CUresult cuStreamEndCapture(void *s, void **graph) {
  (void)s;
  Graph *g = capture;
  capture = NULL;
  const char *fail = getenv("FAKE_CUDA_CAPTURE_FAIL");
  if (!g || captureBroken || (fail && atoi(fail))) {
    free(g);
    *graph = NULL;
    return 901; /* CUDA_ERROR_STREAM_CAPTURE_INVALIDATED */
  }
  ++captures;
  *graph = g;
  return 0;
}
CUresult cuGraphInstantiateWithFlags(void **exec, void *graph,
                                     unsigned long long flags) {
  (void)flags;
  Graph *copy = malloc(sizeof(Graph));
  memcpy(copy, graph, sizeof(Graph));
  *exec = copy;
  return 0;
}
CUresult cuGraphDestroy(void *graph) {
  free(graph); /* (its names belong to the instantiated copy) */
  return 0;
}
CUresult cuGraphExecDestroy(void *exec) {
  Graph *g = exec;
  for (int i = 0; i < g->count; ++i)
    free(g->name[i]);
  free(g);
  return 0;
}
CUresult cuGraphLaunch(void *exec, void *s) {
  (void)s;
  Graph *g = exec;
  if (capture)
    return 1;
  ++graphLaunches;
  for (int i = 0; i < g->count; ++i)
    countLibrary(g->name[i], g->blocks[i]);
  launches += g->launches;
  return 0;
}
CUresult cuMemcpyDtoDAsync_v2(unsigned long long to, unsigned long long from,
                              size_t bytes, void *s) {
  (void)s;
  if (capture)
    return 1;
  memmove((void *)(uintptr_t)to, (const void *)(uintptr_t)from, bytes);
  ++copies;
  copied += bytes;
  return 0;
}
CUresult cuMemAllocManaged(unsigned long long *p, size_t bytes,
                           unsigned flags) {
  (void)flags;
  /* Real managed memory is page-aligned; half a page tests that the pool
     does not rely on more than its own alignment. */
  char *q = aligned_alloc(4096, (bytes + 2048 + 4095) / 4096 * 4096);
  if (!q)
    return 2; /* CUDA_ERROR_OUT_OF_MEMORY */
  managed += bytes;
  memset(q, 0, bytes + 2048);
  *p = (unsigned long long)(uintptr_t)(q + 2048 + 16);
  return 0;
}
CUresult cuMemFree_v2(unsigned long long p) {
  free((char *)(uintptr_t)p - 2048 - 16);
  return 0;
}
CUresult cuMemGetInfo_v2(size_t *freeBytes, size_t *total) {
  const char *mem = getenv("FAKE_CUDA_MEM");
  *freeBytes = *total = mem ? strtoull(mem, 0, 10) : (size_t)1 << 30;
  return 0;
}
CUresult cuGetErrorString(CUresult rc, const char **text) {
  *text = rc == 719   ? "unspecified launch failure"
          : rc == 200 ? "device kernel image is invalid"
          : rc == 2   ? "out of memory"
                      : "error";
  return 0;
}

typedef struct {
  int type, id;
} CUmemLocation;
/* Built with -DFAKE_CUDA_PREFETCH_V1_ONLY: a driver older than CUDA 12.2,
   which has only the first version. */
#ifndef FAKE_CUDA_PREFETCH_V1_ONLY
CUresult cuMemPrefetchAsync_v2(unsigned long long p, size_t bytes,
                               CUmemLocation where, unsigned flags,
                               void *stream) {
  (void)p, (void)flags, (void)stream;
  if (where.type != 1) /* CU_MEM_LOCATION_TYPE_DEVICE */
    return 1;
  ++prefetches;
  prefetched += bytes;
  return 0;
}
#endif
CUresult cuMemPrefetchAsync(unsigned long long p, size_t bytes, int device,
                            void *stream) {
  (void)p, (void)stream;
  if (device != 0)
    return 101; /* CUDA_ERROR_INVALID_DEVICE */
  ++prefetches;
  prefetched += bytes;
  return 0;
}
