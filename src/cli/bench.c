/* bench.c: `inferd bench`, the load generator for a running server (issue #3).
 *
 * It prepares one request (generated from the model's metadata, or taken from a file), checks
 * it once, then drives it through cli/loadgen.h: closed loop with --concurrency C, or open loop
 * at --rate R. Progress goes to stderr once a second; the summary goes to stdout, as text or,
 * with --json, as one JSON object for scripts. Exit status: 0 when the run happened (whatever
 * the server answered), 1 when it could not (server unreachable, metadata unusable), 2 for bad
 * arguments.
 */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/loadgen.h"
#include "cli/loadgen_http.h"
#include "cli/loadgen_proc.h"
#include "cli/loadgen_req.h"
#include "util/alloc.h"

#define MAX_METADATA (16u << 20)
#define MAX_BODY_FILE ((size_t)1 << 30)

static const char usage_text[] =
    "usage: inferd bench --model M [options]\n"
    "       inferd bench --path P [--body-file F] [options]\n"
    "\n"
    "Load-tests a running server over HTTP/1.1 keep-alive connections and reports throughput\n"
    "and latency percentiles. Without a request file, it reads the model's metadata\n"
    "(GET /v2/models/M) and sends one random valid KServe v2 infer request over and over.\n"
    "\n"
    "target:\n"
    "  --url URL               server, http://IPv4:port only (default http://127.0.0.1:8000)\n"
    "  --model M               model to infer on: POST /v2/models/M/infer\n"
    "  --model-version V       use /v2/models/M/versions/V/... (default: server's choice)\n"
    "  --path P                endpoint to load instead, e.g. /v1/models/m:predict; with\n"
    "                          --body-file it is POSTed, else fetched with GET\n"
    "  --method NAME           HTTP method (default POST with a body, GET without)\n"
    "\n"
    "load:\n"
    "  --concurrency C         closed loop: C connections, one request outstanding on each\n"
    "                          (default 1; the default mode)\n"
    "  --rate R                open loop: R requests/s whatever the latency; latency is\n"
    "                          measured from when each request was due (no coordinated\n"
    "                          omission); exclusive with --concurrency\n"
    "  --poisson               open loop: exponential gaps (Poisson arrivals) instead of even\n"
    "  --max-connections N     open loop: most connections open at once; a request due when\n"
    "                          all are busy is counted as dropped (default 256)\n"
    "  --duration S            measured seconds (default 10)\n"
    "  --warmup S              seconds of load before measuring, excluded from stats "
    "(default 0)\n"
    "  --timeout S             per-request timeout, also the most the end waits for requests\n"
    "                          in flight (default 10)\n"
    "\n"
    "request (default: random inputs from the model metadata, as JSON):\n"
    "  --binary                send tensors with Triton's binary tensor extension\n"
    "  --batch N               size for a -1 first dimension (default 1)\n"
    "  --seq N                 size for any other -1 dimension; words per BYTES element\n"
    "                          (default 16)\n"
    "  --vocab N               integer inputs drawn from [0, N) (default 100); inputs named\n"
    "                          *mask* are all ones, *type*/*segment* all zeros\n"
    "  --seed N                random seed for inputs and Poisson gaps (default 1)\n"
    "  --request FILE          send FILE's bytes as the infer body as-is (JSON)\n"
    "  --binary-header-length N  the --request file is a binary-extension body whose JSON\n"
    "                          header is N bytes (sets Inference-Header-Content-Length)\n"
    "  --body-file FILE        body for --path (alias of --request)\n"
    "  --content-type T        Content-Type of the body (default application/json, or\n"
    "                          application/octet-stream for binary bodies)\n"
    "\n"
    "output:\n"
    "  --server-pid PID        sample /proc/PID each second: report the server's average\n"
    "                          CPU% (100 = one core) and its largest thread count\n"
    "  --json                  print the summary as one JSON object on stdout (latencies in\n"
    "                          ms): qps, p50, p90, p95, p99, max, mean, requests, ok, errors\n"
    "                          (by status code), connect_errors, io_errors, timeouts, dropped,\n"
    "                          duration, server_cpu_percent, server_threads_max, ...\n"
    "  --quiet                 no per-second progress lines on stderr\n"
    "  -h, --help              this text\n"
    "\n"
    "Latency percentiles cover every complete response, whatever its status; non-2xx\n"
    "responses are listed under errors by status.\n";

typedef struct bench_opts {
    const char *url, *model, *version, *path, *method, *request_file, *content_type;
    long concurrency;
    double rate;
    int poisson;
    long max_connections;
    double duration, warmup, timeout;
    int binary;
    long long batch, seq, vocab, seed, header_length;
    long server_pid;
    int json, quiet;
    int concurrency_set;
} bench_opts;

typedef struct bench_state {
    const bench_opts *o;
    int sampling; /* server pid samples are being taken */
    inferd_loadgen_proc_sample first, last;
    int threads_max;
    int pid_lost;
} bench_state;

static volatile sig_atomic_t stop_flag;

static void on_sigint(int sig) {
    (void)sig;
    stop_flag = 1;
}

static int parse_double(const char *flag, const char *s, double lo, double *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || *end || errno || !(v >= lo) || isinf(v)) {
        fprintf(stderr, "inferd bench: %s wants a number >= %g, not '%s'\n", flag, lo, s);
        return -1;
    }
    *out = v;
    return 0;
}

static int parse_ll(const char *flag, const char *s, long long lo, long long hi, long long *out) {
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (end == s || *end || errno || v < lo || v > hi) {
        fprintf(stderr, "inferd bench: %s wants an integer in %lld..%lld, not '%s'\n", flag, lo, hi,
                s);
        return -1;
    }
    *out = v;
    return 0;
}

enum {
    OPT_URL = 256,
    OPT_MODEL,
    OPT_VERSION,
    OPT_PATH,
    OPT_METHOD,
    OPT_CONCURRENCY,
    OPT_RATE,
    OPT_POISSON,
    OPT_MAXCONN,
    OPT_DURATION,
    OPT_WARMUP,
    OPT_TIMEOUT,
    OPT_BINARY,
    OPT_BATCH,
    OPT_SEQ,
    OPT_VOCAB,
    OPT_SEED,
    OPT_REQUEST,
    OPT_HEADER_LENGTH,
    OPT_CONTENT_TYPE,
    OPT_PID,
    OPT_JSON,
    OPT_QUIET,
};

static const struct option long_opts[] = {
    {"url", required_argument, NULL, OPT_URL},
    {"model", required_argument, NULL, OPT_MODEL},
    {"model-version", required_argument, NULL, OPT_VERSION},
    {"path", required_argument, NULL, OPT_PATH},
    {"method", required_argument, NULL, OPT_METHOD},
    {"concurrency", required_argument, NULL, OPT_CONCURRENCY},
    {"rate", required_argument, NULL, OPT_RATE},
    {"poisson", no_argument, NULL, OPT_POISSON},
    {"max-connections", required_argument, NULL, OPT_MAXCONN},
    {"duration", required_argument, NULL, OPT_DURATION},
    {"warmup", required_argument, NULL, OPT_WARMUP},
    {"timeout", required_argument, NULL, OPT_TIMEOUT},
    {"binary", no_argument, NULL, OPT_BINARY},
    {"batch", required_argument, NULL, OPT_BATCH},
    {"seq", required_argument, NULL, OPT_SEQ},
    {"vocab", required_argument, NULL, OPT_VOCAB},
    {"seed", required_argument, NULL, OPT_SEED},
    {"request", required_argument, NULL, OPT_REQUEST},
    {"body-file", required_argument, NULL, OPT_REQUEST},
    {"binary-header-length", required_argument, NULL, OPT_HEADER_LENGTH},
    {"content-type", required_argument, NULL, OPT_CONTENT_TYPE},
    {"server-pid", required_argument, NULL, OPT_PID},
    {"json", no_argument, NULL, OPT_JSON},
    {"quiet", no_argument, NULL, OPT_QUIET},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

/* Returns 0, 1 when --help was asked (and printed), or -1 after printing an error. */
static int parse_args(int argc, char **argv, bench_opts *o) {
    *o = (bench_opts){.url = "http://127.0.0.1:8000",
                      .concurrency = 1,
                      .max_connections = 256,
                      .duration = 10,
                      .timeout = 10,
                      .seed = 1,
                      .header_length = -1};
    long long v;
    int c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "h", long_opts, NULL)) != -1) {
        switch (c) {
        case 'h':
            fputs(usage_text, stdout);
            return 1;
        case OPT_URL:
            o->url = optarg;
            break;
        case OPT_MODEL:
            o->model = optarg;
            break;
        case OPT_VERSION:
            o->version = optarg;
            break;
        case OPT_PATH:
            o->path = optarg;
            break;
        case OPT_METHOD:
            o->method = optarg;
            break;
        case OPT_CONCURRENCY:
            if (parse_ll("--concurrency", optarg, 1, 65536, &v) < 0)
                return -1;
            o->concurrency = (long)v;
            o->concurrency_set = 1;
            break;
        case OPT_RATE:
            if (parse_double("--rate", optarg, 0, &o->rate) < 0)
                return -1;
            if (o->rate <= 0) {
                fprintf(stderr, "inferd bench: --rate must be above 0\n");
                return -1;
            }
            break;
        case OPT_POISSON:
            o->poisson = 1;
            break;
        case OPT_MAXCONN:
            if (parse_ll("--max-connections", optarg, 1, 65536, &v) < 0)
                return -1;
            o->max_connections = (long)v;
            break;
        case OPT_DURATION:
            if (parse_double("--duration", optarg, 0, &o->duration) < 0)
                return -1;
            break;
        case OPT_WARMUP:
            if (parse_double("--warmup", optarg, 0, &o->warmup) < 0)
                return -1;
            break;
        case OPT_TIMEOUT:
            if (parse_double("--timeout", optarg, 0, &o->timeout) < 0)
                return -1;
            break;
        case OPT_BINARY:
            o->binary = 1;
            break;
        case OPT_BATCH:
            if (parse_ll("--batch", optarg, 1, 1 << 20, &o->batch) < 0)
                return -1;
            break;
        case OPT_SEQ:
            if (parse_ll("--seq", optarg, 1, 1 << 20, &o->seq) < 0)
                return -1;
            break;
        case OPT_VOCAB:
            if (parse_ll("--vocab", optarg, 1, (long long)1 << 40, &o->vocab) < 0)
                return -1;
            break;
        case OPT_SEED:
            if (parse_ll("--seed", optarg, 0, (long long)1 << 62, &o->seed) < 0)
                return -1;
            break;
        case OPT_REQUEST:
            o->request_file = optarg;
            break;
        case OPT_HEADER_LENGTH:
            if (parse_ll("--binary-header-length", optarg, 0, (long long)1 << 30,
                         &o->header_length) < 0)
                return -1;
            break;
        case OPT_CONTENT_TYPE:
            o->content_type = optarg;
            break;
        case OPT_PID:
            if (parse_ll("--server-pid", optarg, 1, 1 << 30, &v) < 0)
                return -1;
            o->server_pid = (long)v;
            break;
        case OPT_JSON:
            o->json = 1;
            break;
        case OPT_QUIET:
            o->quiet = 1;
            break;
        default:
            if (optopt)
                fprintf(stderr, "inferd bench: option %s needs a value or is unknown\n",
                        argv[optind - 1]);
            else
                fprintf(stderr, "inferd bench: unknown option %s\n", argv[optind - 1]);
            fprintf(stderr, "see: inferd bench --help\n");
            return -1;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "inferd bench: unexpected argument '%s' (see --help)\n", argv[optind]);
        return -1;
    }
    if (o->rate > 0 && o->concurrency_set) {
        fprintf(stderr, "inferd bench: give --concurrency (closed loop) or --rate (open loop), "
                        "not both\n");
        return -1;
    }
    if (o->duration <= 0 || o->timeout <= 0) {
        fprintf(stderr, "inferd bench: --duration and --timeout must be above 0\n");
        return -1;
    }
    if (!o->model && !o->path) {
        fprintf(stderr, "inferd bench: give --model M (or --path P for another endpoint); see "
                        "--help\n");
        return -1;
    }
    if (o->header_length >= 0 && !o->request_file) {
        fprintf(stderr, "inferd bench: --binary-header-length describes a --request file\n");
        return -1;
    }
    return 0;
}

/* Reads a whole file into an inferd_malloc'ed buffer. */
static int read_file(const char *path, char **out, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "inferd bench: cannot open %s: %s\n", path, strerror(errno));
        return -1;
    }
    size_t cap = 65536, n = 0;
    char *buf = inferd_malloc(NULL, cap);
    while (buf) {
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (n < cap)
            break;
        if (cap >= MAX_BODY_FILE) {
            fprintf(stderr, "inferd bench: %s is over %zu bytes\n", path, MAX_BODY_FILE);
            inferd_free(buf);
            fclose(f);
            return -1;
        }
        char *b = inferd_realloc(NULL, buf, cap * 2);
        if (!b) {
            inferd_free(buf);
            buf = NULL;
            break;
        }
        buf = b;
        cap *= 2;
    }
    int bad = ferror(f);
    fclose(f);
    if (!buf || bad) {
        fprintf(stderr, "inferd bench: cannot read %s\n", path);
        inferd_free(buf);
        return -1;
    }
    *out = buf;
    *len = n;
    return 0;
}

/* Fetches the model metadata and builds a request body from it. */
static int body_from_metadata(const bench_opts *o, const struct sockaddr_in *addr, const char *host,
                              inferd_loadgen_req *req) {
    char path[1024];
    if (o->version)
        snprintf(path, sizeof path, "/v2/models/%s/versions/%s", o->model, o->version);
    else
        snprintf(path, sizeof path, "/v2/models/%s", o->model);
    char *get;
    size_t get_len;
    inferd_error err = {0};
    if (inferd_loadgen_http_format_request("GET", host, path, NULL, NULL, 0, &get, &get_len, &err) <
        0) {
        fprintf(stderr, "inferd bench: %s\n", err.msg);
        return -1;
    }
    inferd_loadgen_http_parser p;
    inferd_loadgen_http_parser_init(&p, 1, MAX_METADATA);
    int rc = inferd_loadgen_http_roundtrip(addr, get, get_len, (int)(o->timeout * 1000), &p, &err);
    inferd_free(get);
    if (rc < 0) {
        fprintf(stderr, "inferd bench: metadata of model '%s' from %s: %s\n", o->model, o->url,
                err.msg);
        inferd_loadgen_http_parser_deinit(&p);
        return -1;
    }
    if (p.status != 200) {
        fprintf(stderr, "inferd bench: GET %s answered %d: %.300s\n", path, p.status,
                p.body ? p.body : "");
        inferd_loadgen_http_parser_deinit(&p);
        return -1;
    }
    inferd_loadgen_req_options ro = {.batch = o->batch,
                                     .seq = o->seq,
                                     .vocab = o->vocab,
                                     .binary = o->binary,
                                     .seed = (uint64_t)o->seed};
    rc = inferd_loadgen_req_build(p.body ? p.body : "", p.body_len, &ro, req, &err);
    inferd_loadgen_http_parser_deinit(&p);
    if (rc < 0) {
        fprintf(stderr, "inferd bench: model '%s': %s\n", o->model, err.msg);
        return -1;
    }
    return 0;
}

static void sample_server(bench_state *s, int first) {
    if (!s->o->server_pid || s->pid_lost)
        return;
    inferd_loadgen_proc_sample now;
    inferd_error err = {0};
    if (inferd_loadgen_proc_sample_pid((int)s->o->server_pid, &now, &err) < 0) {
        fprintf(stderr, "inferd bench: stopped sampling the server: %s\n", err.msg);
        s->pid_lost = 1;
        return;
    }
    if (first) {
        s->first = now;
        s->sampling = 1;
        s->threads_max = now.threads;
    }
    s->last = now;
    if (now.threads > s->threads_max)
        s->threads_max = now.threads;
}

static void on_tick(const inferd_loadgen_tick *t, void *user) {
    bench_state *s = user;
    if (t->kind == INFERD_LOADGEN_TICK_MEASURE_START) {
        sample_server(s, 1);
        return;
    }
    if (s->sampling)
        sample_server(s, 0);
    if (s->o->quiet)
        return;
    fprintf(stderr, "%6.1fs  requests %8llu  qps %9.1f  p99 %9.3f ms  errors %llu  conns %d%s\n",
            t->elapsed_s, (unsigned long long)t->responses_all, t->qps, (double)t->p99_ns / 1e6,
            (unsigned long long)t->errors_all, t->connections, t->warmup ? "  (warmup)" : "");
}

static double ms(int64_t ns) { return (double)ns / 1e6; }

static void print_text(const bench_opts *o, const bench_state *s, const inferd_loadgen_result *r,
                       double qps, FILE *f) {
    const inferd_hist *h = r->latency;
    fprintf(f, "requests     %llu in %.2f s", (unsigned long long)r->responses, r->duration_s);
    if (o->warmup > 0)
        fprintf(f, " (after %.1f s warmup)", o->warmup);
    fprintf(f, "\nqps          %.1f", qps);
    if (o->rate > 0)
        fprintf(f, " (target %.1f)", o->rate);
    fprintf(f, "\nlatency ms   p50 %.3f  p90 %.3f  p95 %.3f  p99 %.3f  max %.3f  mean %.3f\n",
            ms(inferd_hist_percentile(h, 50)), ms(inferd_hist_percentile(h, 90)),
            ms(inferd_hist_percentile(h, 95)), ms(inferd_hist_percentile(h, 99)),
            ms(inferd_hist_max(h)), inferd_hist_mean(h) / 1e6);
    fprintf(f, "errors       %llu", (unsigned long long)inferd_loadgen_result_errors(r));
    const char *sep = " (";
    for (int st = 0; st < INFERD_LOADGEN_MAX_STATUS; st++) {
        if (r->status[st] && (st < 200 || st >= 300)) {
            fprintf(f, "%sstatus %d: %llu", sep, st, (unsigned long long)r->status[st]);
            sep = ", ";
        }
    }
    static const char *names[] = {"connect", "io", "timeout", "dropped"};
    uint64_t counts[] = {r->connect_errors, r->io_errors, r->timeouts, r->dropped};
    for (int i = 0; i < 4; i++) {
        if (counts[i]) {
            fprintf(f, "%s%s: %llu", sep, names[i], (unsigned long long)counts[i]);
            sep = ", ";
        }
    }
    fprintf(f, "%s\n", sep[0] == ',' ? ")" : "");
    fprintf(f, "connections  %d max; generator cpu %.1f%%\n", r->connections_max,
            r->client_cpu_percent);
    if (s->sampling)
        fprintf(f, "server       pid %ld: cpu %.1f%% (average, 100%% = one core), threads max %d\n",
                o->server_pid, inferd_loadgen_proc_cpu_percent(&s->first, &s->last),
                s->threads_max);
}

static void print_json(const bench_opts *o, const bench_state *s, const inferd_loadgen_result *r,
                       double qps) {
    const inferd_hist *h = r->latency;
    json_t *errors = json_object();
    for (int st = 0; st < INFERD_LOADGEN_MAX_STATUS; st++) {
        if (r->status[st] && (st < 200 || st >= 300)) {
            char key[8];
            snprintf(key, sizeof key, "%d", st);
            json_object_set_new(errors, key, json_integer((json_int_t)r->status[st]));
        }
    }
    json_t *j = json_pack(
        "{s:s, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:I, s:I, s:I, s:o, s:I, s:I, s:I, s:I, "
        "s:I, s:f, s:f, s:i, s:f}",
        "mode", o->rate > 0 ? "open" : "closed", "qps", qps, "p50",
        ms(inferd_hist_percentile(h, 50)), "p90", ms(inferd_hist_percentile(h, 90)), "p95",
        ms(inferd_hist_percentile(h, 95)), "p99", ms(inferd_hist_percentile(h, 99)), "max",
        ms(inferd_hist_max(h)), "min", ms(inferd_hist_min(h)), "mean", inferd_hist_mean(h) / 1e6,
        "requests", (json_int_t)r->responses, "ok", (json_int_t)r->ok, "sent", (json_int_t)r->sent,
        "errors", errors, "errors_total", (json_int_t)inferd_loadgen_result_errors(r),
        "connect_errors", (json_int_t)r->connect_errors, "io_errors", (json_int_t)r->io_errors,
        "timeouts", (json_int_t)r->timeouts, "dropped", (json_int_t)r->dropped, "duration",
        r->duration_s, "warmup", o->warmup, "connections_max", r->connections_max,
        "client_cpu_percent", r->client_cpu_percent);
    if (o->rate > 0)
        json_object_set_new(j, "rate", json_real(o->rate));
    else
        json_object_set_new(j, "concurrency", json_integer(o->concurrency));
    json_object_set_new(j, "server_cpu_percent",
                        s->sampling
                            ? json_real(inferd_loadgen_proc_cpu_percent(&s->first, &s->last))
                            : json_null());
    json_object_set_new(j, "server_threads_max",
                        s->sampling ? json_integer(s->threads_max) : json_null());
    char *text = json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(6));
    if (text) {
        puts(text);
        free(text);
    }
    json_decref(j);
}

int inferd_cli_bench(int argc, char **argv) {
    bench_opts o;
    int prc = parse_args(argc, argv, &o);
    if (prc != 0)
        return prc > 0 ? 0 : 2;

    struct sockaddr_in addr;
    char host[64];
    inferd_error err = {0};
    if (inferd_loadgen_http_parse_url(o.url, &addr, host, sizeof host, &err) < 0) {
        fprintf(stderr, "inferd bench: %s\n", err.msg);
        return 2;
    }
    if (o.server_pid) {
        inferd_loadgen_proc_sample s;
        if (inferd_loadgen_proc_sample_pid((int)o.server_pid, &s, &err) < 0) {
            fprintf(stderr, "inferd bench: --server-pid: %s\n", err.msg);
            return 2;
        }
    }

    // The body, its content type, and for binary bodies the JSON header length.
    int rc = 1;
    char *body = NULL, *request = NULL;
    size_t body_len = 0;
    long long header_len = -1;
    inferd_loadgen_req gen = {0};
    char summary[600] = "";
    if (o.request_file) {
        if (read_file(o.request_file, &body, &body_len) < 0)
            goto out;
        header_len = o.header_length;
        if (header_len > (long long)body_len) {
            fprintf(stderr, "inferd bench: --binary-header-length %lld is past the end of %s\n",
                    header_len, o.request_file);
            rc = 2;
            goto out;
        }
        snprintf(summary, sizeof summary, "body from %s", o.request_file);
    } else if (o.model && !o.path) {
        if (body_from_metadata(&o, &addr, host, &gen) < 0)
            goto out;
        body = gen.body;
        body_len = gen.body_len;
        header_len = o.binary ? (long long)gen.header_len : -1;
        snprintf(summary, sizeof summary, "%s", gen.summary);
    }

    char path[1024];
    if (o.path)
        snprintf(path, sizeof path, "%s", o.path);
    else if (o.version)
        snprintf(path, sizeof path, "/v2/models/%s/versions/%s/infer", o.model, o.version);
    else
        snprintf(path, sizeof path, "/v2/models/%s/infer", o.model);
    const char *method = o.method ? o.method : body ? "POST" : "GET";
    char headers[256] = "";
    if (body) {
        const char *ct = o.content_type    ? o.content_type
                         : header_len >= 0 ? "application/octet-stream"
                                           : "application/json";
        int n = snprintf(headers, sizeof headers, "Content-Type: %s\r\n", ct);
        if (header_len >= 0)
            snprintf(headers + n, sizeof headers - (size_t)n,
                     "Inference-Header-Content-Length: %lld\r\n", header_len);
    }
    size_t request_len;
    if (inferd_loadgen_http_format_request(method, host, path, headers, body, body_len, &request,
                                           &request_len, &err) < 0) {
        fprintf(stderr, "inferd bench: %s\n", err.msg);
        goto out;
    }

    // One request first: a bad request would otherwise fail silently thousands of times.
    inferd_loadgen_http_parser probe;
    inferd_loadgen_http_parser_init(&probe, 1, 1 << 20);
    if (inferd_loadgen_http_roundtrip(&addr, request, request_len, (int)(o.timeout * 1000), &probe,
                                      &err) < 0) {
        fprintf(stderr, "inferd bench: %s %s on %s: %s\n", method, path, o.url, err.msg);
        inferd_loadgen_http_parser_deinit(&probe);
        goto out;
    }
    if (probe.status < 200 || probe.status >= 300)
        fprintf(stderr, "inferd bench: warning: the first request got %d: %.300s\n", probe.status,
                probe.body ? probe.body : "");
    inferd_loadgen_http_parser_deinit(&probe);

    if (!o.quiet) {
        fprintf(stderr, "inferd bench: %s %s%s (%zu-byte body%s%s)\n", method, o.url, path,
                body_len, summary[0] ? "; " : "", summary);
        if (o.rate > 0)
            fprintf(stderr, "inferd bench: open loop at %.1f req/s%s, up to %ld connections, ",
                    o.rate, o.poisson ? " (Poisson)" : "", o.max_connections);
        else
            fprintf(stderr, "inferd bench: closed loop, %ld connections, ", o.concurrency);
        fprintf(stderr, "%.1f s measured after %.1f s warmup\n", o.duration, o.warmup);
    }

    bench_state st = {.o = &o};
    inferd_loadgen_config cfg = {
        .addr = addr,
        .request = request,
        .request_len = request_len,
        .mode = o.rate > 0 ? INFERD_LOADGEN_MODE_OPEN : INFERD_LOADGEN_MODE_CLOSED,
        .concurrency = (int)o.concurrency,
        .rate = o.rate,
        .poisson = o.poisson,
        .max_connections = (int)o.max_connections,
        .duration_s = o.duration,
        .warmup_s = o.warmup,
        .timeout_s = o.timeout,
        .seed = (uint64_t)o.seed,
        .on_tick = on_tick,
        .user = &st,
        .stop = &stop_flag,
    };
    struct sigaction sa = {.sa_handler = on_sigint}, old_sa;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old_sa);
    inferd_loadgen_result res;
    int lrc = inferd_loadgen_run(&cfg, &res, &err);
    sigaction(SIGINT, &old_sa, NULL);
    if (lrc < 0) {
        fprintf(stderr, "inferd bench: %s\n", err.msg);
        inferd_loadgen_result_deinit(&res);
        goto out;
    }
    if (st.sampling)
        sample_server(&st, 0);
    double qps = res.duration_s > 0 ? (double)res.responses / res.duration_s : 0;
    if (o.json) {
        print_json(&o, &st, &res, qps);
        if (!o.quiet)
            print_text(&o, &st, &res, qps, stderr);
    } else {
        print_text(&o, &st, &res, qps, stdout);
    }
    inferd_loadgen_result_deinit(&res);
    rc = 0;
out:
    inferd_free(request);
    if (body != gen.body)
        inferd_free(body);
    inferd_loadgen_req_deinit(&gen);
    return rc;
}
