/* Float32 FMA peak of this machine: independent FMA chains in registers, per thread.
 *
 * Usage: fma_peak N_THREADS WIDTH SECONDS   (WIDTH = 512 for AVX-512, 256 for AVX2+FMA)
 * Prints two GFLOP/s figures over all threads (2 FLOPs per lane per FMA): the sum of
 * each thread's FLOPs per second of its own CPU time (what the cores can do, even on a
 * shared machine where threads wait for a core), then FLOPs per wall-clock second
 * (what this run got). benches/machine.py
 * compiles it at run time with `gcc -O3 -pthread` and reports the best of a few runs.
 * 16 (AVX-512) or 12 (AVX2) accumulators hide the FMA latency (4 cycles x 2 pipes).
 */
#include <immintrin.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static long long REPS;
static volatile float SINK;
static double thread_cpu[64];

static double cpu_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

#define BODY(T, FMA, SET, ADD, RED)                                                  \
    T a0 = SET(1.0f), a1 = SET(1.1f), a2 = SET(1.2f), a3 = SET(1.3f), a4 = SET(1.4f),  \
      a5 = SET(1.5f), a6 = SET(1.6f), a7 = SET(1.7f), a8 = SET(1.8f), a9 = SET(1.9f),  \
      a10 = SET(2.0f), a11 = SET(2.1f), a12 = SET(2.2f), a13 = SET(2.3f),              \
      a14 = SET(2.4f), a15 = SET(2.5f);                                               \
    const T m = SET(0.999999f), c = SET(1e-7f);                                       \
    for (long long r = 0; r < REPS; r++) {                                            \
        a0 = FMA(a0, m, c); a1 = FMA(a1, m, c); a2 = FMA(a2, m, c); a3 = FMA(a3, m, c); \
        a4 = FMA(a4, m, c); a5 = FMA(a5, m, c); a6 = FMA(a6, m, c); a7 = FMA(a7, m, c); \
        a8 = FMA(a8, m, c); a9 = FMA(a9, m, c); a10 = FMA(a10, m, c);                  \
        a11 = FMA(a11, m, c); a12 = FMA(a12, m, c); a13 = FMA(a13, m, c);              \
        a14 = FMA(a14, m, c); a15 = FMA(a15, m, c);                                    \
    }                                                                                  \
    T s = ADD(ADD(ADD(a0, a1), ADD(a2, a3)), ADD(ADD(a4, a5), ADD(a6, a7)));           \
    s = ADD(s, ADD(ADD(ADD(a8, a9), ADD(a10, a11)), ADD(ADD(a12, a13), ADD(a14, a15)))); \
    SINK = RED(s);

__attribute__((target("avx512f"))) static float red512(__m512 s) {
    return _mm512_reduce_add_ps(s);
}
__attribute__((target("avx512f"))) static void *run512(void *arg) {
    double t0 = cpu_now();
    BODY(__m512, _mm512_fmadd_ps, _mm512_set1_ps, _mm512_add_ps, red512)
    thread_cpu[(long)arg] = cpu_now() - t0;
    return NULL;
}

__attribute__((target("avx2,fma"))) static float red256(__m256 s) {
    float t[8];
    _mm256_storeu_ps(t, s);
    return t[0] + t[1] + t[2] + t[3] + t[4] + t[5] + t[6] + t[7];
}
/* Only 16 ymm registers without AVX-512: 12 accumulators, so nothing spills. */
__attribute__((target("avx2,fma"))) static void *run256(void *arg) {
    double t0 = cpu_now();
    __m256 a[12];
    for (int i = 0; i < 12; i++) a[i] = _mm256_set1_ps(1.0f + 0.1f * i);
    const __m256 m = _mm256_set1_ps(0.999999f), c = _mm256_set1_ps(1e-7f);
    for (long long r = 0; r < REPS; r++) {
        a[0] = _mm256_fmadd_ps(a[0], m, c); a[1] = _mm256_fmadd_ps(a[1], m, c);
        a[2] = _mm256_fmadd_ps(a[2], m, c); a[3] = _mm256_fmadd_ps(a[3], m, c);
        a[4] = _mm256_fmadd_ps(a[4], m, c); a[5] = _mm256_fmadd_ps(a[5], m, c);
        a[6] = _mm256_fmadd_ps(a[6], m, c); a[7] = _mm256_fmadd_ps(a[7], m, c);
        a[8] = _mm256_fmadd_ps(a[8], m, c); a[9] = _mm256_fmadd_ps(a[9], m, c);
        a[10] = _mm256_fmadd_ps(a[10], m, c); a[11] = _mm256_fmadd_ps(a[11], m, c);
    }
    __m256 s = a[0];
    for (int i = 1; i < 12; i++) s = _mm256_add_ps(s, a[i]);
    SINK = red256(s);
    thread_cpu[(long)arg] = cpu_now() - t0;
    return NULL;
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

static double measure(int threads, int width) {
    pthread_t tid[64];
    void *(*fn)(void *) = width == 512 ? run512 : run256;
    double t0 = now();
    for (long i = 0; i < threads; i++) pthread_create(&tid[i], NULL, fn, (void *)i);
    for (int i = 0; i < threads; i++) pthread_join(tid[i], NULL);
    return now() - t0;
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: %s N_THREADS WIDTH(512|256) SECONDS\n", argv[0]);
        return 2;
    }
    int threads = atoi(argv[1]), width = atoi(argv[2]);
    double seconds = atof(argv[3]);
    if (threads < 1 || threads > 64 || (width != 512 && width != 256)) return 2;
    __builtin_cpu_init();
    if (width == 512 && !__builtin_cpu_supports("avx512f")) {
        printf("unsupported\n");
        return 0;
    }
    if (width == 256 && !(__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))) {
        printf("unsupported\n");
        return 0;
    }
    REPS = 1000000; /* calibrate, then run for about SECONDS */
    double t = measure(1, width);
    REPS = (long long)(REPS * seconds / (t > 1e-6 ? t : 1e-6));
    if (REPS < 1000) REPS = 1000;
    t = measure(threads, width);
    double chains = width == 512 ? 16.0 : 12.0;
    double per_thread = 2.0 * chains * (width / 32) * (double)REPS;
    double cpu_rate = 0.0;
    for (int i = 0; i < threads; i++) cpu_rate += per_thread / thread_cpu[i];
    printf("%.2f %.2f\n", cpu_rate / 1e9, per_thread * threads / t / 1e9);
    return 0;
}
