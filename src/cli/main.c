/* main.c: `inferd <command> [options]`. */
#include <stdio.h>
#include <string.h>

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

int main(int argc, char **argv) {
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
