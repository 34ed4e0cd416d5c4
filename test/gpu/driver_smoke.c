// Loads the kernels of test/gpu/smoke-kernels.mlir (built here by
// scripts/gpu-artifacts.sh, no GPU needed) through the CUDA driver API alone -- libcuda
// opened with dlopen, no CUDA runtime, no toolkit headers -- runs them and checks them
// against a CPU reference. This is how qopt's runtime will load compiled GPU models.
//   cc -O2 test/gpu/driver_smoke.c -ldl -lm -o driver_smoke
//   ./driver_smoke gpu-artifacts/smoke.cubin   (or smoke.ptx: the driver JIT-compiles it)
// Exit status 0 only when every kernel matches; 2 when no GPU/driver is present.
#include <dlfcn.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef int CUresult;
typedef int CUdevice;
typedef void *CUcontext, *CUmodule, *CUfunction, *CUstream, *CUevent;
typedef uint64_t CUdeviceptr;

static CUresult (*cuInit)(unsigned);
static CUresult (*cuDeviceGet)(CUdevice *, int);
static CUresult (*cuDeviceGetName)(char *, int, CUdevice);
static CUresult (*cuDeviceGetAttribute)(int *, int, CUdevice);
static CUresult (*cuDriverGetVersion)(int *);
static CUresult (*cuDevicePrimaryCtxRetain)(CUcontext *, CUdevice);
static CUresult (*cuCtxSetCurrent)(CUcontext);
static CUresult (*cuModuleLoadDataEx)(CUmodule *, const void *, unsigned, int *,
                                      void **);
static CUresult (*cuModuleGetFunction)(CUfunction *, CUmodule, const char *);
static CUresult (*cuFuncGetAttribute)(int *, int, CUfunction);
static CUresult (*cuMemAlloc)(CUdeviceptr *, size_t);
static CUresult (*cuMemFree)(CUdeviceptr);
static CUresult (*cuMemcpyHtoD)(CUdeviceptr, const void *, size_t);
static CUresult (*cuMemcpyDtoH)(void *, CUdeviceptr, size_t);
static CUresult (*cuLaunchKernel)(CUfunction, unsigned, unsigned, unsigned, unsigned,
                                  unsigned, unsigned, unsigned, CUstream, void **,
                                  void **);
static CUresult (*cuCtxSynchronize)(void);
static CUresult (*cuEventCreate)(CUevent *, unsigned);
static CUresult (*cuEventRecord)(CUevent, CUstream);
static CUresult (*cuEventSynchronize)(CUevent);
static CUresult (*cuEventElapsedTime)(float *, CUevent, CUevent);
static CUresult (*cuGetErrorString)(CUresult, const char **);

#define CHECK(call)                                                                \
  do {                                                                             \
    CUresult r_ = (call);                                                          \
    if (r_ != 0) {                                                                 \
      const char *s_ = "?";                                                        \
      if (cuGetErrorString)                                                        \
        cuGetErrorString(r_, &s_);                                                 \
      fprintf(stderr, "driver_smoke: %s failed: %s (%d)\n", #call, s_, r_);        \
      exit(1);                                                                     \
    }                                                                              \
  } while (0)

static void *sym(void *lib, const char *name) {
  void *p = dlsym(lib, name);
  if (!p) {
    fprintf(stderr, "driver_smoke: libcuda lacks %s\n", name);
    exit(1);
  }
  return p;
}

static char *readFile(const char *path, size_t *size, int text) {
  FILE *f = fopen(path, "rb");
  if (!f) {
    fprintf(stderr, "driver_smoke: cannot open %s\n", path);
    exit(1);
  }
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *buf = malloc((size_t)n + 1);
  if (fread(buf, 1, (size_t)n, f) != (size_t)n) {
    fprintf(stderr, "driver_smoke: short read of %s\n", path);
    exit(1);
  }
  fclose(f);
  buf[n] = text ? 0 : buf[n];
  *size = (size_t)n;
  return buf;
}

// A memref<?xf32> argument expands to (allocated, aligned, offset, size, stride).
struct Memref1 {
  CUdeviceptr allocated, aligned;
  int64_t offset, size, stride;
};
struct Memref2 {
  CUdeviceptr allocated, aligned;
  int64_t offset, sizes[2], strides[2];
};

static float frand(uint64_t *s) {
  *s = *s * 6364136223846793005ull + 1442695040888963407ull;
  return (float)((*s >> 40) & 0xffffff) / (float)0x1000000 * 8.0f - 4.0f;
}

static CUdeviceptr upload(const float *h, size_t n) {
  CUdeviceptr d;
  CHECK(cuMemAlloc(&d, n * sizeof(float)));
  if (h)
    CHECK(cuMemcpyHtoD(d, h, n * sizeof(float)));
  return d;
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: driver_smoke KERNELS.cubin|KERNELS.ptx\n");
    return 1;
  }
  void *lib = dlopen("libcuda.so.1", RTLD_NOW);
  if (!lib) {
    fprintf(stderr, "driver_smoke: no CUDA driver (libcuda.so.1): %s\n", dlerror());
    return 2;
  }
  cuGetErrorString = sym(lib, "cuGetErrorString");
  cuInit = sym(lib, "cuInit");
  cuDeviceGet = sym(lib, "cuDeviceGet");
  cuDeviceGetName = sym(lib, "cuDeviceGetName");
  cuDeviceGetAttribute = sym(lib, "cuDeviceGetAttribute");
  cuDriverGetVersion = sym(lib, "cuDriverGetVersion");
  cuDevicePrimaryCtxRetain = sym(lib, "cuDevicePrimaryCtxRetain");
  cuCtxSetCurrent = sym(lib, "cuCtxSetCurrent");
  cuModuleLoadDataEx = sym(lib, "cuModuleLoadDataEx");
  cuModuleGetFunction = sym(lib, "cuModuleGetFunction");
  cuFuncGetAttribute = sym(lib, "cuFuncGetAttribute");
  cuMemAlloc = sym(lib, "cuMemAlloc_v2");
  cuMemFree = sym(lib, "cuMemFree_v2");
  cuMemcpyHtoD = sym(lib, "cuMemcpyHtoD_v2");
  cuMemcpyDtoH = sym(lib, "cuMemcpyDtoH_v2");
  cuLaunchKernel = sym(lib, "cuLaunchKernel");
  cuCtxSynchronize = sym(lib, "cuCtxSynchronize");
  cuEventCreate = sym(lib, "cuEventCreate");
  cuEventRecord = sym(lib, "cuEventRecord");
  cuEventSynchronize = sym(lib, "cuEventSynchronize");
  cuEventElapsedTime = sym(lib, "cuEventElapsedTime_v2");

  CHECK(cuInit(0));
  CUdevice dev;
  CHECK(cuDeviceGet(&dev, 0));
  char name[256];
  int major = 0, minor = 0, driver = 0;
  CHECK(cuDeviceGetName(name, sizeof name, dev));
  CHECK(cuDeviceGetAttribute(&major, 75, dev)); // COMPUTE_CAPABILITY_MAJOR
  CHECK(cuDeviceGetAttribute(&minor, 76, dev)); // COMPUTE_CAPABILITY_MINOR
  CHECK(cuDriverGetVersion(&driver));
  printf("driver_smoke: %s, sm_%d%d, driver API %d.%d\n", name, major, minor,
         driver / 1000, driver % 1000 / 10);
  CUcontext ctx;
  CHECK(cuDevicePrimaryCtxRetain(&ctx, dev));
  CHECK(cuCtxSetCurrent(ctx));

  size_t imageSize;
  int isPtx = strstr(argv[1], ".ptx") != NULL;
  char *image = readFile(argv[1], &imageSize, isPtx);
  char log[8192] = {0};
  int opts[] = {5 /*CU_JIT_ERROR_LOG_BUFFER*/,
                6 /*CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES*/};
  void *vals[] = {log, (void *)(uintptr_t)sizeof log};
  CUmodule mod;
  CUresult r = cuModuleLoadDataEx(&mod, image, 2, opts, vals);
  if (r != 0) {
    const char *s = "?";
    cuGetErrorString(r, &s);
    fprintf(stderr, "driver_smoke: loading %s failed: %s\n%s\n", argv[1], s, log);
    return 1;
  }
  int failures = 0;

  // swiglu over n elements, checked against expf; then timed as a bandwidth probe.
  {
    CUfunction fn;
    CHECK(cuModuleGetFunction(&fn, mod, "swiglu"));
    int regs = 0;
    CHECK(cuFuncGetAttribute(&regs, 4 /*CU_FUNC_ATTRIBUTE_NUM_REGS*/, fn));
    const int64_t n = 1 << 26;
    float *x = malloc(n * sizeof(float)), *y = malloc(n * sizeof(float)),
          *o = malloc(n * sizeof(float));
    uint64_t seed = 1;
    for (int64_t i = 0; i < n; ++i) {
      x[i] = frand(&seed);
      y[i] = frand(&seed);
    }
    struct Memref1 mx = {upload(x, n), 0, 0, n, 1}, my = {upload(y, n), 0, 0, n, 1},
                   mo = {upload(NULL, n), 0, 0, n, 1};
    mx.aligned = mx.allocated;
    my.aligned = my.allocated;
    mo.aligned = mo.allocated;
    int64_t nn = n;
    void *params[] = {&mx.allocated, &mx.aligned, &mx.offset, &mx.size, &mx.stride,
                      &my.allocated, &my.aligned, &my.offset, &my.size, &my.stride,
                      &mo.allocated, &mo.aligned, &mo.offset, &mo.size, &mo.stride,
                      &nn};
    unsigned block = 256, grid = (unsigned)((n + block - 1) / block);
    CHECK(cuLaunchKernel(fn, grid, 1, 1, block, 1, 1, 0, NULL, params, NULL));
    CHECK(cuCtxSynchronize());
    CHECK(cuMemcpyDtoH(o, mo.aligned, n * sizeof(float)));
    double worst = 0;
    for (int64_t i = 0; i < n; ++i) {
      double ref = (double)x[i] / (1.0 + exp(-(double)x[i])) * y[i];
      double err = fabs(o[i] - ref) / (fabs(ref) + 1e-3);
      if (err > worst)
        worst = err;
    }
    CUevent start, stop;
    CHECK(cuEventCreate(&start, 0));
    CHECK(cuEventCreate(&stop, 0));
    const int reps = 20;
    CHECK(cuEventRecord(start, NULL));
    for (int k = 0; k < reps; ++k)
      CHECK(cuLaunchKernel(fn, grid, 1, 1, block, 1, 1, 0, NULL, params, NULL));
    CHECK(cuEventRecord(stop, NULL));
    CHECK(cuEventSynchronize(stop));
    float ms = 0;
    CHECK(cuEventElapsedTime(&ms, start, stop));
    double gbs = 3.0 * n * sizeof(float) * reps / (ms * 1e-3) / 1e9;
    int ok = worst < 1e-5;
    failures += !ok;
    printf("driver_smoke: swiglu n=%lld regs=%d max rel err %.2e %s; %.1f GB/s "
           "(read 2 + write 1 arrays, %d launches)\n",
           (long long)n, regs, worst, ok ? "ok" : "FAIL", gbs, reps);
    cuMemFree(mx.allocated);
    cuMemFree(my.allocated);
    cuMemFree(mo.allocated);
    free(x);
    free(y);
    free(o);
  }

  // rmsnorm, one warp per row, on a ragged width (not a multiple of 32).
  {
    CUfunction fn;
    CHECK(cuModuleGetFunction(&fn, mod, "rmsnorm"));
    const int64_t rows = 4096, cols = 2053;
    float *x = malloc(rows * cols * sizeof(float)), *w = malloc(cols * sizeof(float)),
          *o = malloc(rows * cols * sizeof(float));
    uint64_t seed = 7;
    for (int64_t i = 0; i < rows * cols; ++i)
      x[i] = frand(&seed);
    for (int64_t j = 0; j < cols; ++j)
      w[j] = frand(&seed);
    struct Memref2 mx = {upload(x, rows * cols), 0, 0, {rows, cols}, {cols, 1}};
    struct Memref2 mo = {upload(NULL, rows * cols), 0, 0, {rows, cols}, {cols, 1}};
    struct Memref1 mw = {upload(w, cols), 0, 0, cols, 1};
    mx.aligned = mx.allocated;
    mo.aligned = mo.allocated;
    mw.aligned = mw.allocated;
    float eps = 1e-6f;
    void *params[] = {&mx.allocated, &mx.aligned, &mx.offset,     &mx.sizes[0],
                      &mx.sizes[1],  &mx.strides[0], &mx.strides[1], &mw.allocated,
                      &mw.aligned,   &mw.offset,  &mw.size,       &mw.stride,
                      &mo.allocated, &mo.aligned, &mo.offset,     &mo.sizes[0],
                      &mo.sizes[1],  &mo.strides[0], &mo.strides[1], &eps};
    CHECK(cuLaunchKernel(fn, (unsigned)rows, 1, 1, 32, 1, 1, 0, NULL, params, NULL));
    CHECK(cuCtxSynchronize());
    CHECK(cuMemcpyDtoH(o, mo.aligned, rows * cols * sizeof(float)));
    double worst = 0;
    for (int64_t r0 = 0; r0 < rows; ++r0) {
      double ss = 0;
      for (int64_t j = 0; j < cols; ++j)
        ss += (double)x[r0 * cols + j] * x[r0 * cols + j];
      double s = 1.0 / sqrt(ss / cols + eps);
      for (int64_t j = 0; j < cols; ++j) {
        double ref = x[r0 * cols + j] * s * w[j];
        double err = fabs(o[r0 * cols + j] - ref) / (fabs(ref) + 1e-3);
        if (err > worst)
          worst = err;
      }
    }
    int ok = worst < 1e-4;
    failures += !ok;
    printf("driver_smoke: rmsnorm %lldx%lld max rel err %.2e %s\n", (long long)rows,
           (long long)cols, worst, ok ? "ok" : "FAIL");
    cuMemFree(mx.allocated);
    cuMemFree(mo.allocated);
    cuMemFree(mw.allocated);
    free(x);
    free(w);
    free(o);
  }
  printf("driver_smoke: %s (%s)\n", failures ? "FAILED" : "passed", argv[1]);
  return failures ? 1 : 0;
}
