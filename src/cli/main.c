/* main.c: `inferd <command> [options]`. */
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

int main(int argc, char **argv) {
    ensure_passive_openmp(argv);
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
