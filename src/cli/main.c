/* main.c: `inferd <command> [options]`. */
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"

static const struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *help;
} commands[] = {
    {"serve", inferd_cli_serve, "serve a model repository over HTTP (KServe v2 and text API)"},
    {"exec", inferd_cli_exec, "run an ONNX model once on .npy inputs, write .npy outputs"},
    {"perf", inferd_cli_perf, "time an ONNX model on random inputs, print one JSON line"},
    {"bench", inferd_cli_bench, "load generator for a running server"},
    {"inspect", inferd_cli_inspect, "describe an ONNX model: inputs, outputs, ops, plan"},
};

static void usage(FILE *f) {
    fprintf(f, "usage: inferd <command> [options]   (inferd <command> --help for its options)\n\n"
               "commands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-8s %s\n", commands[i].name, commands[i].help);
}

/* OpenMP reads its wait policy once, when libgomp loads, before main runs. Idle OpenMP
 * threads must sleep, not spin: spinning teams starve other work on a shared machine (measured
 * here: a 2-thread batch went from 2 ms to 130-160 ms with one core busy elsewhere). So when
 * the caller set no policy, set PASSIVE and start over once. */
static void ensure_passive_openmp(char **argv) {
    if (getenv("OMP_WAIT_POLICY") || getenv("GOMP_SPINCOUNT") || getenv("INFERD_REEXECED"))
        return;
    setenv("OMP_WAIT_POLICY", "PASSIVE", 1);
    setenv("INFERD_REEXECED", "1", 1);
    execv("/proc/self/exe", argv);
    // If exec fails we run on with libgomp's default policy.
}

/* Fresh memory is dear: each page the kernel hands out is faulted in and zeroed, and on the
 * virtual machines this runs on that costs ~10 us a page (measured: 340 MiB faulted in
 * 0.4-1.2 s, rewritten in 15 ms). glibc's defaults return freed blocks over 128 KiB to the
 * kernel and trim the heap's top above 128 KiB, so every plan built and every large request
 * buffer would fault its memory in again (building a plan for the peers' small model: 2 ms
 * with the defaults, under 0.5 ms with freed memory kept). Blocks under 1 MiB therefore always
 * come from the heap and up to 64 MiB of freed heap is kept for reuse. Blocks of 1 MiB and
 * more (weights, arenas) are mapped by util/alloc.c and pooled where they recur. The MALLOC_*
 * environment variables still win. */
static void tune_malloc(void) {
    if (!getenv("MALLOC_MMAP_THRESHOLD_"))
        mallopt(M_MMAP_THRESHOLD, 1 << 20);
    if (!getenv("MALLOC_TRIM_THRESHOLD_"))
        mallopt(M_TRIM_THRESHOLD, 64 << 20);
    if (!getenv("MALLOC_TOP_PAD_"))
        mallopt(M_TOP_PAD, 4 << 20);
}

int main(int argc, char **argv) {
    ensure_passive_openmp(argv);
    tune_malloc();
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "version")) {
        printf("inferd %s\n", INFERD_VERSION);
        return 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(argv[1], commands[i].name))
            return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "inferd: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return 2;
}
