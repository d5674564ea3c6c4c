/* inferd perf: time an ONNX model on generated inputs; prints one JSON line. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "engine/engine.h"
#include "util/clock.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: inferd perf MODEL.onnx [--batch B] [--seq S] [--threads T] [--seconds N]\n"
            "                  [--lengths full|random] [--min-len L] [--vocab V] [--profile]\n\n"
            "Times runs of one batch on generated inputs and prints one JSON line:\n"
            "p50/p95/mean ms per batch, items/s, load time and the first run's time.\n"
            "  --batch B          rows per batch, the first dynamic dim (default 1)\n"
            "  --seq S            the second dynamic dim (default 128)\n"
            "  --threads T        threads per run (default 1)\n"
            "  --seconds N        timed duration after 2 warm-up runs (default 3)\n"
            "  --lengths random   attention-mask rows get random lengths in [min-len, S]\n"
            "  --min-len L        shortest random length (default 20)\n"
            "  --vocab V          token ids are drawn from [1, V) (default 100)\n"
            "  --seed N           random seed (default 1)\n"
            "  --profile          print the time per op on stderr\n");
}

static uint64_t rng_state = 1;
static uint64_t rnd(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int inferd_cli_perf(int argc, char **argv) {
    static const struct option opts[] = {
        {"batch", required_argument, 0, 'b'},   {"seq", required_argument, 0, 's'},
        {"threads", required_argument, 0, 't'}, {"seconds", required_argument, 0, 'n'},
        {"lengths", required_argument, 0, 'l'}, {"min-len", required_argument, 0, 'm'},
        {"vocab", required_argument, 0, 'v'},   {"seed", required_argument, 0, 'r'},
        {"profile", no_argument, 0, 'p'},       {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    long batch = 1, seq = 128, threads = 1, vocab = 100, min_len = 20;
    double seconds = 3;
    int random_lengths = 0, profile = 0, c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "b:s:t:n:l:m:v:r:ph", opts, NULL)) != -1) {
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
        case 'n':
            seconds = atof(optarg);
            break;
        case 'l':
            if (strcmp(optarg, "random") && strcmp(optarg, "full")) {
                usage(stderr);
                return 2;
            }
            random_lengths = !strcmp(optarg, "random");
            break;
        case 'm':
            min_len = atol(optarg);
            break;
        case 'v':
            vocab = atol(optarg);
            break;
        case 'r':
            rng_state = (uint64_t)atoll(optarg) | 1;
            break;
        case 'p':
            profile = 1;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind != argc - 1 || batch < 1 || seq < 1 || threads < 1 || vocab < 2 || min_len < 1) {
        usage(stderr);
        return 2;
    }
    const char *path = argv[optind];
    inferd_error err = {0};
    inferd_engine_model *m = NULL;
    inferd_engine_options eo = {.profile = profile};
    if (inferd_engine_global_init(&err) < 0 || inferd_engine_load(path, &eo, &m, &err) < 0) {
        fprintf(stderr, "inferd perf: %s\n", err.msg);
        return 1;
    }
    int n_in = inferd_engine_input_count(m), n_out = inferd_engine_output_count(m);
    inferd_tensor *in = calloc((size_t)n_in + 1, sizeof *in);
    inferd_tensor *out = calloc((size_t)n_out + 1, sizeof *out);
    long *lengths = calloc((size_t)batch, sizeof *lengths);
    for (long b = 0; b < batch; b++)
        lengths[b] = random_lengths && seq > min_len ? min_len + (long)(rnd() % (uint64_t)(seq - min_len + 1)) : seq;
    for (int i = 0; i < n_in; i++) {
        const inferd_tensor_desc *d = inferd_engine_input(m, i);
        inferd_tensor *t = &in[i];
        t->dtype = d->dtype;
        t->rank = d->rank;
        int dyn = 0;
        for (int j = 0; j < d->rank; j++)
            t->dims[j] = d->dims[j] >= 0 ? d->dims[j] : (dyn++ == 0 ? batch : seq);
        int64_t n = inferd_tensor_numel(t->rank, t->dims);
        t->nbytes = (size_t)n * inferd_dtype_size(t->dtype);
        t->data = inferd_malloc(NULL, t->nbytes ? t->nbytes : 1);
        int is_mask = strstr(d->name, "mask") != NULL;
        int is_type = strstr(d->name, "type") != NULL;
        int64_t row = t->rank >= 2 ? t->dims[t->rank - 1] : n;
        for (int64_t k = 0; k < n; k++) {
            int64_t b = row ? k / row : 0, pos = row ? k % row : 0;
            int valid = pos < (b < batch ? lengths[b] : seq);
            double v = is_mask ? valid : is_type ? 0 : valid ? (double)(1 + rnd() % (uint64_t)(vocab - 1)) : 0;
            if (!is_mask && !is_type && d->dtype == INFERD_DTYPE_F32)
                v = (double)(rnd() % 2001) / 1000.0 - 1.0;
            switch (t->dtype) {
            case INFERD_DTYPE_I64:
                ((int64_t *)t->data)[k] = (int64_t)v;
                break;
            case INFERD_DTYPE_I32:
                ((int32_t *)t->data)[k] = (int32_t)v;
                break;
            case INFERD_DTYPE_F32:
                ((float *)t->data)[k] = (float)v;
                break;
            case INFERD_DTYPE_BOOL:
                ((uint8_t *)t->data)[k] = v != 0;
                break;
            default:
                memset(t->data, 0, t->nbytes);
                break;
            }
        }
    }
    double first_ms = 0;
    int rc = 0;
    int64_t t0 = inferd_now_ns();
    for (int w = 0; w < 3 && rc == 0; w++) {
        int64_t s = inferd_now_ns();
        rc = inferd_engine_run(m, in, out, (int)threads, &err);
        if (w == 0)
            first_ms = (double)(inferd_now_ns() - s) / 1e6;
        for (int j = 0; j < n_out; j++) {
            inferd_free(out[j].data);
            out[j].data = NULL;
        }
    }
    size_t cap = 1024, n = 0;
    double *ms = malloc(cap * sizeof *ms);
    t0 = inferd_now_ns();
    while (rc == 0 && ((double)(inferd_now_ns() - t0) / 1e9 < seconds || n < 5)) {
        int64_t s = inferd_now_ns();
        rc = inferd_engine_run(m, in, out, (int)threads, &err);
        if (n == cap)
            ms = realloc(ms, (cap *= 2) * sizeof *ms);
        ms[n++] = (double)(inferd_now_ns() - s) / 1e6;
        for (int j = 0; j < n_out; j++) {
            inferd_free(out[j].data);
            out[j].data = NULL;
        }
        if (n > 1000000)
            break;
    }
    if (rc < 0) {
        fprintf(stderr, "inferd perf: %s\n", err.msg);
    } else {
        qsort(ms, n, sizeof *ms, cmp_double);
        double sum = 0;
        long tokens = 0;
        for (size_t i = 0; i < n; i++)
            sum += ms[i];
        for (long b = 0; b < batch; b++)
            tokens += lengths[b];
        double p50 = ms[(n - 1) / 2], p95 = ms[(size_t)((double)(n - 1) * 0.95)];
        printf("{\"model\":\"%s\",\"batch\":%ld,\"seq\":%ld,\"threads\":%ld,\"lengths\":\"%s\","
               "\"tokens\":%ld,\"runs\":%zu,\"p50_ms\":%.4f,\"p95_ms\":%.4f,\"mean_ms\":%.4f,"
               "\"items_per_s\":%.2f,\"load_ms\":%.2f,\"first_run_ms\":%.2f}\n",
               path, batch, seq, threads, random_lengths ? "random" : "full", tokens, n, p50, p95,
               sum / (double)n, (double)batch / (p50 / 1000.0), inferd_engine_load_ms(m), first_ms);
        if (profile)
            inferd_engine_profile_print(m, stderr);
    }
    for (int i = 0; i < n_in; i++)
        inferd_free(in[i].data);
    free(in);
    free(out);
    free(ms);
    free(lengths);
    inferd_engine_destroy(m);
    return rc < 0 ? 1 : 0;
}
