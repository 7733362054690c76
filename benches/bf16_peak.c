/* bf16 vs float32 multiply-add throughput of this core: does VDPBF16PS pay here?
 *
 * Usage: bf16_peak SECONDS
 * Prints two numbers, 1 thread, per second of the thread's own CPU time (so neighbours
 * on a shared machine do not lower them): float32 multiply-adds/s of VFMADD231PS zmm
 * and bf16 multiply-adds/s of VDPBF16PS zmm (each instruction: 16 lanes x 2 products),
 * both in units of 1e9; or "unsupported" without AVX512_BF16.
 * Same shape as fma_peak.c: 16 independent accumulator chains, so latency is hidden
 * and the figure is the issue rate of the port(s) the instruction runs on. On Zen 4
 * VDPBF16PS issues like an FMA (twice the multiply-adds); on some Intel cores it runs
 * on one port only, which would give no gain over two-port FP32 FMA.
 * benches/machine.py compiles it with `gcc -O3` and reports the best of a few runs.
 */
#include <immintrin.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static long long REPS;
static volatile float SINK;

static double cpu_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

#define SIXTEEN(OP)                                                                    \
    OP(a0); OP(a1); OP(a2); OP(a3); OP(a4); OP(a5); OP(a6); OP(a7);                    \
    OP(a8); OP(a9); OP(a10); OP(a11); OP(a12); OP(a13); OP(a14); OP(a15);

#define DECL                                                                           \
    __m512 a0 = _mm512_set1_ps(1.0f), a1 = _mm512_set1_ps(1.1f),                       \
           a2 = _mm512_set1_ps(1.2f), a3 = _mm512_set1_ps(1.3f),                       \
           a4 = _mm512_set1_ps(1.4f), a5 = _mm512_set1_ps(1.5f),                       \
           a6 = _mm512_set1_ps(1.6f), a7 = _mm512_set1_ps(1.7f),                       \
           a8 = _mm512_set1_ps(1.8f), a9 = _mm512_set1_ps(1.9f),                       \
           a10 = _mm512_set1_ps(2.0f), a11 = _mm512_set1_ps(2.1f),                     \
           a12 = _mm512_set1_ps(2.2f), a13 = _mm512_set1_ps(2.3f),                     \
           a14 = _mm512_set1_ps(2.4f), a15 = _mm512_set1_ps(2.5f);

#define REDUCE                                                                         \
    __m512 s = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)), \
                             _mm512_add_ps(_mm512_add_ps(a4, a5), _mm512_add_ps(a6, a7))); \
    s = _mm512_add_ps(s, _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(a8, a9),             \
                                                     _mm512_add_ps(a10, a11)),          \
                                       _mm512_add_ps(_mm512_add_ps(a12, a13),           \
                                                     _mm512_add_ps(a14, a15))));        \
    SINK = _mm512_reduce_add_ps(s);

/* Seconds of CPU time for REPS x 16 VFMADD231PS zmm. */
__attribute__((target("avx512f"))) static double run_fma(void) {
    double t0 = cpu_now();
    DECL
    const __m512 m = _mm512_set1_ps(0.999999f), c = _mm512_set1_ps(1e-7f);
#define FMA(a) a = _mm512_fmadd_ps(m, c, a)
    for (long long r = 0; r < REPS; r++) {
        SIXTEEN(FMA)
        __asm__ volatile("" ::: "memory");
    }
    REDUCE
    return cpu_now() - t0;
}

/* Seconds of CPU time for REPS x 16 VDPBF16PS zmm. */
__attribute__((target("avx512f,avx512bf16"))) static double run_bf16(void) {
    double t0 = cpu_now();
    DECL
    const __m512bh m = _mm512_cvtne2ps_pbh(_mm512_set1_ps(1e-4f), _mm512_set1_ps(1e-4f));
    const __m512bh c = _mm512_cvtne2ps_pbh(_mm512_set1_ps(1e-4f), _mm512_set1_ps(1e-4f));
#define DP(a) a = _mm512_dpbf16_ps(a, m, c)
    for (long long r = 0; r < REPS; r++) {
        SIXTEEN(DP)
        __asm__ volatile("" ::: "memory");
    }
    REDUCE
    return cpu_now() - t0;
}

static double rate(double (*fn)(void), double madds_per_inst, double seconds) {
    REPS = 1000000;
    double t = fn();
    REPS = (long long)(REPS * seconds / (t > 1e-6 ? t : 1e-6));
    if (REPS < 1000) REPS = 1000;
    t = fn();
    return 16.0 * madds_per_inst * (double)REPS / t / 1e9;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s SECONDS\n", argv[0]);
        return 2;
    }
    double seconds = atof(argv[1]);
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("avx512f") || !__builtin_cpu_supports("avx512bf16")) {
        printf("unsupported\n");
        return 0;
    }
    double f32 = rate(run_fma, 16.0, seconds);
    double bf16 = rate(run_bf16, 32.0, seconds);
    printf("%.2f %.2f\n", f32, bf16);
    return 0;
}
