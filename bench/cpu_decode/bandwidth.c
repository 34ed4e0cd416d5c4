/* The machine's read bandwidth: a vectorized dot product of two float
 * arrays far larger than the caches, on 1..T threads (best of 5). Built by
 * bench.py with the host's vector extensions. `bandwidth T MIB` reads MIB
 * MiB in all instead (model_bench.py: as many bytes as a model's weights,
 * read again and again as decode steps read them, from whatever cache
 * holds them). */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static float *a, *b;
static size_t n;
static int threads;
static volatile float sink;

static void *part(void *arg) {
  size_t t = (size_t)arg, chunk = n / threads;
  const float *x = a + t * chunk, *y = b + t * chunk;
  float s[16] = {0};
  for (size_t i = 0; i < chunk; i += 16)
    for (int j = 0; j < 16; ++j)
      s[j] += x[i + j] * y[i + j];
  float total = 0;
  for (int j = 0; j < 16; ++j)
    total += s[j];
  sink = total;
  return NULL;
}

int main(int argc, char **argv) {
  threads = argc > 1 ? atoi(argv[1]) : 1;
  size_t mib = argc > 2 ? (size_t)atol(argv[2]) : 512;
  /* two arrays, 16 floats a thread's step */
  n = (mib << 20) / 8 / (16 * (size_t)threads) * (16 * (size_t)threads);
  if (n == 0)
    n = 16 * (size_t)threads;
  a = aligned_alloc(64, n * 4);
  b = aligned_alloc(64, n * 4);
  for (size_t i = 0; i < n; ++i) {
    a[i] = 1.0f;
    b[i] = 0.5f;
  }
  double best = 1e30;
  for (int rep = 0; rep < 5; ++rep) {
    struct timespec t0, t1;
    pthread_t th[64];
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int t = 0; t < threads; ++t)
      pthread_create(&th[t], NULL, part, (void *)(size_t)t);
    for (int t = 0; t < threads; ++t)
      pthread_join(th[t], NULL);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double s = (t1.tv_sec - t0.tv_sec) + 1e-9 * (t1.tv_nsec - t0.tv_nsec);
    if (s < best)
      best = s;
  }
  printf("%.3f\n", 2.0 * n * 4 / best / 1e9);
  return 0;
}
