/* inferd exec: run an ONNX model once on .npy inputs and write one .npy per output. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/cli.h"
#include "engine/engine.h"
#include "util/npy.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: inferd exec MODEL.onnx --input NAME=FILE.npy ... --output-dir DIR\n"
            "                  [--threads N] [--profile]\n\n"
            "Runs the model once and writes DIR/<output name>.npy for every output.\n"
            "  --input NAME=FILE   an input tensor (repeat for each model input)\n"
            "  --output-dir DIR    where outputs go (created if missing)\n"
            "  --threads N         threads for the run (default 1)\n"
            "  --profile           print the time spent per op on stderr\n"
            "  --no-fuse           run the graph as imported, without fusions (for debugging)\n");
}

int inferd_cli_exec(int argc, char **argv) {
    static const struct option opts[] = {{"input", required_argument, 0, 'i'},
                                         {"output-dir", required_argument, 0, 'o'},
                                         {"threads", required_argument, 0, 't'},
                                         {"profile", no_argument, 0, 'p'},
                                         {"no-fuse", no_argument, 0, 'f'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    const char *names[64], *files[64], *outdir = NULL;
    int n_in = 0, threads = 1, profile = 0, no_fuse = 0, c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "i:o:t:pfh", opts, NULL)) != -1) {
        switch (c) {
        case 'i': {
            char *eq = strchr(optarg, '=');
            if (!eq || n_in == 64) {
                fprintf(stderr, "inferd exec: --input wants NAME=FILE.npy, got '%s'\n", optarg);
                return 2;
            }
            *eq = 0;
            names[n_in] = optarg;
            files[n_in++] = eq + 1;
            break;
        }
        case 'o':
            outdir = optarg;
            break;
        case 't':
            threads = atoi(optarg);
            break;
        case 'p':
            profile = 1;
            break;
        case 'f':
            no_fuse = 1;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind != argc - 1 || !outdir || threads < 1) {
        usage(stderr);
        return 2;
    }
    const char *path = argv[optind];
    inferd_error err = {0};
    inferd_engine_model *m = NULL;
    inferd_tensor inputs[64], outputs[64];
    memset(inputs, 0, sizeof inputs);
    memset(outputs, 0, sizeof outputs);
    int rc = 1;
    inferd_engine_options eo = {.profile = profile, .disable_fusion = no_fuse};
    if (inferd_engine_global_init(&err) < 0 || inferd_engine_load(path, &eo, &m, &err) < 0) {
        fprintf(stderr, "inferd exec: %s\n", err.msg);
        return 1;
    }
    int n_model = inferd_engine_input_count(m), n_out = inferd_engine_output_count(m);
    if (n_model > 64 || n_out > 64) {
        fprintf(stderr, "inferd exec: too many inputs or outputs\n");
        goto out;
    }
    for (int i = 0; i < n_in; i++) {
        int found = -1;
        for (int j = 0; j < n_model; j++)
            if (!strcmp(inferd_engine_input(m, j)->name, names[i]))
                found = j;
        if (found < 0) {
            fprintf(stderr, "inferd exec: the model has no input named '%s'\n", names[i]);
            goto out;
        }
        if (inferd_npy_read_file(files[i], &inputs[found], &err) < 0) {
            fprintf(stderr, "inferd exec: %s\n", err.msg);
            goto out;
        }
    }
    for (int j = 0; j < n_model; j++)
        if (!inputs[j].data && inputs[j].nbytes == 0 && inputs[j].dtype == INFERD_DTYPE_INVALID) {
            fprintf(stderr, "inferd exec: missing --input for '%s'\n",
                    inferd_engine_input(m, j)->name);
            goto out;
        }
    if (inferd_engine_run(m, inputs, outputs, threads, &err) < 0) {
        fprintf(stderr, "inferd exec: %s\n", err.msg);
        goto out;
    }
    if (mkdir(outdir, 0755) != 0 && errno != EEXIST) {
        fprintf(stderr, "inferd exec: cannot create %s: %s\n", outdir, strerror(errno));
        goto out;
    }
    rc = 0;
    for (int j = 0; j < n_out; j++) {
        char name[512], file[4096];
        snprintf(name, sizeof name, "%s", inferd_engine_output(m, j)->name);
        for (char *p = name; *p; p++)
            if (*p == '/')
                *p = '_';
        snprintf(file, sizeof file, "%s/%s.npy", outdir, name);
        if (inferd_npy_write_file(file, &outputs[j], &err) < 0) {
            fprintf(stderr, "inferd exec: %s\n", err.msg);
            rc = 1;
        }
    }
    if (profile)
        inferd_engine_profile_print(m, stderr);
out:
    for (int i = 0; i < 64; i++) {
        inferd_free(inputs[i].data);
        inferd_free(outputs[i].data);
    }
    inferd_engine_destroy(m);
    return rc;
}
