/* inferd inspect: describe an ONNX model and the plan given inputs would get. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "engine/engine.h"

static void usage(FILE *f) {
    fprintf(f, "usage: inferd inspect MODEL.onnx [--batch B --seq S] [--threads T]\n\n"
               "Prints inputs, outputs (-1 = dynamic), the ops left after load-time fusion and,\n"
               "with --batch/--seq, the plan for that input shape: steps by op (fused ops\n"
               "included) and the arena size.\n");
}

int inferd_cli_inspect(int argc, char **argv) {
    static const struct option opts[] = {{"batch", required_argument, 0, 'b'},
                                         {"seq", required_argument, 0, 's'},
                                         {"threads", required_argument, 0, 't'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    long batch = 0, seq = 0, threads = 1;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "b:s:t:h", opts, NULL)) != -1) {
        switch (c) {
        case 'b':
            batch = atol(optarg);
            break;
        case 's':
            seq = atol(optarg);
            break;
        case 't':
            threads = atol(optarg);
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind != argc - 1 || batch < 0 || seq < 0 || threads < 1) {
        usage(stderr);
        return 2;
    }
    inferd_error err = {0};
    inferd_engine_model *m = NULL;
    if (inferd_engine_global_init(&err) < 0 ||
        inferd_engine_load(argv[optind], NULL, &m, &err) < 0) {
        fprintf(stderr, "inferd inspect: %s\n", err.msg);
        return 1;
    }
    inferd_tensor in[16];
    int n = inferd_engine_input_count(m), rc = 0;
    int with_plan = batch > 0 && n <= 16;
    for (int i = 0; with_plan && i < n; i++) {
        const inferd_tensor_desc *d = inferd_engine_input(m, i);
        memset(&in[i], 0, sizeof in[i]);
        in[i].dtype = d->dtype;
        in[i].rank = d->rank;
        int dyn = 0;
        for (int j = 0; j < d->rank; j++)
            in[i].dims[j] = d->dims[j] >= 0 ? d->dims[j] : (dyn++ == 0 ? batch : (seq ? seq : 1));
    }
    if (inferd_engine_describe(m, with_plan ? in : NULL, (int)threads, stdout, &err) < 0) {
        fprintf(stderr, "inferd inspect: %s\n", err.msg);
        rc = 1;
    }
    inferd_engine_destroy(m);
    return rc;
}
