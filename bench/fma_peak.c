/* fma_peak: the FP32 FMA peak of one core, the roofline the engine's speed is judged against
 * (docs/engine.md, "Roofline"). Twenty independent chains of 512-bit FMAs on registers, so
 * that neither latency nor memory limits them; prints GFLOP/s (2 per FMA lane) per round.
 *
 *   make bench-peak
 */
#include <stdio.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

int main(void) {
    const long iters = 20000000; // 20 FMAs each: ~0.12 s a round at 200 GFLOP/s
    double best = 0;
    for (int round = 0; round < 5; round++) {
        double t = now();
        __asm__ volatile("vxorps %%xmm31, %%xmm31, %%xmm31\n\t"
                         "mov %0, %%rcx\n\t"
                         "1:\n\t"
                         ".irp r, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19\n\t"
                         "vfmadd231ps %%zmm31, %%zmm31, %%zmm\\r\n\t"
                         ".endr\n\t"
                         "dec %%rcx\n\t"
                         "jnz 1b\n\t"
                         :
                         : "r"(iters)
                         : "rcx", "cc", "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6",
                           "xmm7", "xmm8", "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", "xmm14",
                           "xmm15", "xmm16", "xmm17", "xmm18", "xmm19", "xmm31");
        double gflops = (double)iters * 20 * 32 / (now() - t) / 1e9;
        printf("round %d: %.1f GFLOP/s\n", round + 1, gflops);
        if (gflops > best)
            best = gflops;
    }
    printf("{\"kind\":\"fma_peak\",\"threads\":1,\"gflops\":%.1f}\n", best);
    return 0;
}
