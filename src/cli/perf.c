/* inferd perf: time an ONNX model on generated inputs; prints one JSON line. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "engine/engine.h"
#include "util/clock.h"

static void usage(FILE *f) {
    fprintf(f, "usage: inferd perf MODEL.onnx [--batch B[,B...]] [--seq S[,S...]] [--threads T]\n"
               "                  [--seconds N]\n"
               "                  [--lengths full|random] [--min-len L] [--vocab V] [--profile]\n"
               "                  [--padding tokens|groups|whole]\n\n"
               "Times runs of one batch on generated inputs and prints one JSON line per\n"
               "(seq, batch): p50/p95/mean ms per batch, items/s, load time and the first run.\n"
               "  --batch B,...      rows per batch, the first dynamic dim (default 1)\n"
               "  --seq S,...        the second dynamic dim (default 128)\n"
               "  --threads T        threads per run (default 1)\n"
               "  --seconds N        timed duration after 2 warm-up runs (default 3)\n"
               "  --lengths random   attention-mask rows get random lengths in [min-len, S]\n"
               "  --min-len L        shortest random length (default 20)\n"
               "  --vocab V          token ids are drawn from [1, V) (default 100)\n"
               "  --seed N           random seed (default 1)\n"
               "  --profile          print the time per op on stderr\n"
               "  --load-reps N      load the model N times first and report each load time\n"
               "  --cache FILE       use (and write) a load cache at FILE\n"
               "  --padding MODE     how padded batches run: tokens (default: on their valid\n"
               "                     tokens alone where the model allows, else as groups),\n"
               "                     groups (length groups), whole (padding included)\n");
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

typedef struct perf_opts {
    long threads, vocab, min_len;
    double seconds;
    int random_lengths;
    const char *path;
} perf_opts;

/* Times one (batch, seq) configuration and prints its JSON line. Returns 0 or 1. */
static int measure(inferd_engine_model *m, const perf_opts *o, long batch, long seq) {
    inferd_error err = {0};
    int n_in = inferd_engine_input_count(m), n_out = inferd_engine_output_count(m);
    inferd_tensor *in = calloc((size_t)n_in + 1, sizeof *in);
    inferd_tensor *out = calloc((size_t)n_out + 1, sizeof *out);
    long *lengths = calloc((size_t)batch, sizeof *lengths);
    for (long b = 0; b < batch; b++)
        lengths[b] = o->random_lengths && seq > o->min_len
                         ? o->min_len + (long)(rnd() % (uint64_t)(seq - o->min_len + 1))
                         : seq;
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
        memset(t->data, 0, t->nbytes);
        int is_mask = strstr(d->name, "mask") != NULL;
        int is_type = strstr(d->name, "type") != NULL || strstr(d->name, "segment") != NULL;
        int64_t row = t->rank >= 2 ? t->dims[t->rank - 1] : n;
        for (int64_t k = 0; k < n; k++) {
            int64_t b = row ? k / row : 0, pos = row ? k % row : 0;
            int valid = pos < (b < batch ? lengths[b] : seq);
            double v = is_mask   ? valid
                       : is_type ? 0
                       : valid   ? (double)(1 + rnd() % (uint64_t)(o->vocab - 1))
                                 : 0;
            if (d->dtype == INFERD_DTYPE_F32 && !is_mask)
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
                break;
            }
        }
    }
    double first_ms = 0;
    int rc = 0;
    for (int w = 0; w < 3 && rc == 0; w++) {
        int64_t s = inferd_now_ns();
        rc = inferd_engine_run(m, in, out, (int)o->threads, &err);
        if (w == 0)
            first_ms = (double)(inferd_now_ns() - s) / 1e6;
        for (int j = 0; j < n_out; j++) {
            inferd_free(out[j].data);
            out[j].data = NULL;
        }
        if (first_ms > 1000) // slow configurations get one warm-up run
            break;
    }
    size_t cap = 1024, n = 0;
    double *ms = malloc(cap * sizeof *ms);
    int64_t runs0, groups0, tok0, runs1, groups1, tok1;
    inferd_engine_run_stats(m, &runs0, &groups0, &tok0);
    int64_t t0 = inferd_now_ns();
    while (rc == 0 && ((double)(inferd_now_ns() - t0) / 1e9 < o->seconds || n < 3)) {
        int64_t s = inferd_now_ns();
        rc = inferd_engine_run(m, in, out, (int)o->threads, &err);
        if (n == cap)
            ms = realloc(ms, (cap *= 2) * sizeof *ms);
        ms[n++] = (double)(inferd_now_ns() - s) / 1e6;
        for (int j = 0; j < n_out; j++) {
            inferd_free(out[j].data);
            out[j].data = NULL;
        }
        if (n >= 100000)
            break;
    }
    if (rc < 0) {
        fprintf(stderr, "inferd perf: %s\n", err.msg);
    } else {
        inferd_engine_run_stats(m, &runs1, &groups1, &tok1);
        double nruns = (double)(runs1 - runs0 ? runs1 - runs0 : 1);
        qsort(ms, n, sizeof *ms, cmp_double);
        double sum = 0;
        long tokens = 0;
        for (size_t i = 0; i < n; i++)
            sum += ms[i];
        for (long b = 0; b < batch; b++)
            tokens += lengths[b];
        double p50 = ms[(n - 1) / 2], p95 = ms[(size_t)((double)(n - 1) * 0.95 + 0.5)];
        printf("{\"kind\":\"run\",\"model\":\"%s\",\"batch\":%ld,\"seq\":%ld,\"threads\":%ld,"
               "\"lengths\":\"%s\","
               "\"tokens\":%ld,\"runs\":%zu,\"p50_ms\":%.4f,\"p95_ms\":%.4f,\"mean_ms\":%.4f,"
               "\"items_per_s\":%.2f,\"load_ms\":%.2f,\"first_run_ms\":%.2f,"
               "\"groups_per_run\":%.2f,\"token_runs_share\":%.2f}\n",
               o->path, batch, seq, o->threads, o->random_lengths ? "random" : "full", tokens, n,
               p50, p95, sum / (double)n, (double)batch / (p50 / 1000.0), inferd_engine_load_ms(m),
               first_ms, (double)(groups1 - groups0) / nruns, (double)(tok1 - tok0) / nruns);
        fflush(stdout);
    }
    for (int i = 0; i < n_in; i++)
        inferd_free(in[i].data);
    free(in);
    free(out);
    free(ms);
    free(lengths);
    return rc < 0;
}

/* Parses "1,8,32" into up to max positive values. */
static int parse_list(const char *s, long *out, int max) {
    int n = 0;
    while (*s && n < max) {
        char *end;
        long v = strtol(s, &end, 10);
        if (end == s || v < 1)
            return -1;
        out[n++] = v;
        s = *end == ',' ? end + 1 : end;
        if (*end && *end != ',')
            return -1;
    }
    return n;
}

int inferd_cli_perf(int argc, char **argv) {
    static const struct option opts[] = {
        {"batch", required_argument, 0, 'b'},     {"seq", required_argument, 0, 's'},
        {"threads", required_argument, 0, 't'},   {"seconds", required_argument, 0, 'n'},
        {"lengths", required_argument, 0, 'l'},   {"min-len", required_argument, 0, 'm'},
        {"vocab", required_argument, 0, 'v'},     {"seed", required_argument, 0, 'r'},
        {"profile", no_argument, 0, 'p'},         {"help", no_argument, 0, 'h'},
        {"load-reps", required_argument, 0, 'L'}, {"cache", required_argument, 0, 'C'},
        {"padding", required_argument, 0, 'P'},   {0, 0, 0, 0}};
    const char *cache = NULL, *padding = "tokens";
    long load_reps = 1;
    long batches[16] = {1}, seqs[16] = {128};
    int n_batches = 1, n_seqs = 1, profile = 0, c;
    perf_opts o = {.threads = 1, .vocab = 100, .min_len = 20, .seconds = 3};
    optind = 1;
    while ((c = getopt_long(argc, argv, "b:s:t:n:l:m:v:r:phL:C:P:", opts, NULL)) != -1) {
        switch (c) {
        case 'L':
            load_reps = atol(optarg);
            break;
        case 'C':
            cache = optarg;
            break;
        case 'P':
            padding = optarg;
            break;
        case 'b':
            n_batches = parse_list(optarg, batches, 16);
            break;
        case 's':
            n_seqs = parse_list(optarg, seqs, 16);
            break;
        case 't':
            o.threads = atol(optarg);
            break;
        case 'n':
            o.seconds = atof(optarg);
            break;
        case 'l':
            if (strcmp(optarg, "random") && strcmp(optarg, "full")) {
                usage(stderr);
                return 2;
            }
            o.random_lengths = !strcmp(optarg, "random");
            break;
        case 'm':
            o.min_len = atol(optarg);
            break;
        case 'v':
            o.vocab = atol(optarg);
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
    if (optind != argc - 1 || n_batches < 1 || n_seqs < 1 || o.threads < 1 || o.vocab < 2 ||
        o.min_len < 1 ||
        (strcmp(padding, "tokens") && strcmp(padding, "groups") && strcmp(padding, "whole"))) {
        usage(stderr);
        return 2;
    }
    o.path = argv[optind];
    inferd_error err = {0};
    inferd_engine_model *m = NULL;
    inferd_engine_options eo = {.profile = profile,
                                .cache_path = cache,
                                .disable_tokens = strcmp(padding, "tokens") != 0,
                                .disable_length_groups = strcmp(padding, "whole") == 0};
    if (inferd_engine_global_init(&err) < 0) {
        fprintf(stderr, "inferd perf: %s\n", err.msg);
        return 1;
    }
    // Load load_reps times (the last one is kept) and report every load time.
    double loads[64];
    int n_loads = 0;
    for (long r = 0; r < load_reps || r == 0; r++) {
        inferd_engine_destroy(m);
        m = NULL;
        if (inferd_engine_load(o.path, &eo, &m, &err) < 0) {
            fprintf(stderr, "inferd perf: %s\n", err.msg);
            return 1;
        }
        if (n_loads < 64)
            loads[n_loads++] = inferd_engine_load_ms(m);
    }
    qsort(loads, (size_t)n_loads, sizeof loads[0], cmp_double);
    printf("{\"kind\":\"load\",\"model\":\"%s\",\"cache\":\"%s\",\"load_ms_median\":%.2f,"
           "\"load_ms\":[",
           o.path, inferd_engine_cache_status(m), loads[(n_loads - 1) / 2]);
    for (int i = 0; i < n_loads; i++)
        printf("%s%.2f", i ? "," : "", loads[i]);
    printf("]}\n");
    int rc = 0;
    for (int si = 0; si < n_seqs && rc == 0; si++)
        for (int bi = 0; bi < n_batches && rc == 0; bi++)
            rc = measure(m, &o, batches[bi], seqs[si]);
    if (profile)
        inferd_engine_profile_print(m, stderr);
    inferd_engine_destroy(m);
    return rc;
}
