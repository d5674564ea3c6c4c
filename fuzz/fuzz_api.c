/* fuzz_api.c: every HTTP route (api/api.c) end to end, behind a stand-in for the HTTP layer.
 *
 * The server is real apart from the sockets: a repository in a temporary folder (an MLP
 * taking FP32 tensors; a micro BERT with a text pipeline, two per-team routes and a small
 * --offload-parse, so large bodies take the worker path), its scheduler with two workers, and
 * the API handler. The input is one request:
 *
 *   byte 0            the method: GET, POST, PUT, DELETE or HEAD (value % 5)
 *   up to '\n'        the path, with an optional ?query (cut at a NUL)
 *   up to '\n'        the Inference-Header-Content-Length header (absent when empty)
 *   the rest          the body
 *
 * What the API promises for any request, checked here: exactly one answer, within 20 s (from a
 * worker when the request was queued; none is lost); an error status (4xx, 5xx) comes with a
 * JSON object holding an "error" string (the plain-text probes /ready and /live answer text);
 * and the server is still ready afterwards. This file
 * defines the inferd_http_request functions itself, so the linker never pulls http/server.o.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <jansson.h>
#include <limits.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "api/api.h"
#include "engine/engine.h"
#include "http/server.h"
#include "repo/repo.h"
#include "sched/sched.h"
#include "util/alloc.h"
#include "util/clock.h"
#include "util/log.h"

/* ---- the stand-in HTTP layer ---- */

#define MAX_QUERY 8

struct inferd_http_request {
    const char *method;
    char path[1024];
    char query_keys[MAX_QUERY][64], query_values[MAX_QUERY][256];
    int n_query;
    const char *header_length; /* Inference-Header-Content-Length, or NULL */
    const uint8_t *body;
    size_t len;
    int64_t arrival_ns;
    pthread_mutex_t lock;
    pthread_cond_t cv;
    int answers;
    int status;
    int json; /* the answer's content type is JSON */
    void *resp;
    size_t resp_len;
};

const char *inferd_http_request_method(const inferd_http_request *r) { return r->method; }
const char *inferd_http_request_path(const inferd_http_request *r) { return r->path; }

const char *inferd_http_request_header(const inferd_http_request *r, const char *name) {
    return !strcasecmp(name, "Inference-Header-Content-Length") ? r->header_length : NULL;
}

const char *inferd_http_request_query(const inferd_http_request *r, const char *key) {
    for (int i = 0; i < r->n_query; i++)
        if (!strcmp(r->query_keys[i], key))
            return r->query_values[i];
    return NULL;
}

const uint8_t *inferd_http_request_body(const inferd_http_request *r, size_t *len) {
    *len = r->len;
    return r->len ? r->body : NULL;
}

int64_t inferd_http_request_arrival_ns(const inferd_http_request *r) { return r->arrival_ns; }

void inferd_http_respond(inferd_http_request *r, int status, const char *content_type, void *body,
                         size_t len, const char *const *headers) {
    (void)headers;
    pthread_mutex_lock(&r->lock);
    r->answers++;
    if (r->answers == 1) {
        r->status = status;
        r->json = !content_type || !strncmp(content_type, "application/json", 16);
        r->resp = body;
        r->resp_len = len;
        body = NULL;
    }
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->lock);
    inferd_free(body);
}

/* The server's copy-made answers: the text is copied into inferd memory here, since the
 * harness reads every answer back; out of memory, it is counted with no body. */
void inferd_http_respond_text(inferd_http_request *r, int status, const char *content_type,
                              const char *text) {
    size_t n = strlen(text);
    char *body = inferd_malloc(NULL, n);
    if (body)
        memcpy(body, text, n);
    inferd_http_respond(r, status, content_type, body, body ? n : 0, NULL);
}

void inferd_http_respond_no_memory(inferd_http_request *r) {
    inferd_http_respond_text(r, 503, NULL, "{\"error\": \"out of memory\"}");
}

/* ---- the server, made once ---- */

static struct {
    char dir[64];
    inferd_sched *sched;
    inferd_repo *repo;
    inferd_api *api;
} g;

static void die(const char *what) {
    fprintf(stderr, "fuzz_api: %s: %s\n", what, strerror(errno));
    exit(1);
}

static void copy_file(const char *from, const char *to) {
    int in = open(from, O_RDONLY), out = open(to, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (in < 0 || out < 0)
        die(from);
    char buf[65536];
    ssize_t n;
    while ((n = read(in, buf, sizeof buf)) > 0)
        if (write(out, buf, (size_t)n) != n)
            die(to);
    close(in);
    close(out);
}

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    if (!f || fputs(text, f) < 0 || fclose(f) != 0)
        die(path);
}

static void make_dir(const char *path) {
    if (mkdir(path, 0755) != 0 && errno != EEXIST)
        die(path);
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

/* Removes the temporary repository, whatever the server wrote into it. */
static void remove_tree(void) { nftw(g.dir, remove_entry, 8, FTW_DEPTH | FTW_PHYS); }

static void shut_down(void) {
    inferd_api_set_draining(g.api);
    inferd_repo_drain(g.repo, 10000);
    inferd_sched_drain(g.sched);
    inferd_repo_destroy(g.repo);
    inferd_sched_destroy(g.sched);
    inferd_api_destroy(g.api);
    remove_tree();
}

/* The fixtures are found from the working directory: the repository's root, where make and
 * scripts/fuzz.sh run the targets. */
static void start_server(void) {
    inferd_log_configure(INFERD_LOG_LEVEL_ERROR, INFERD_LOG_FORMAT_TEXT);
    snprintf(g.dir, sizeof g.dir, "/tmp/inferd-fuzz-api-XXXXXX");
    if (!mkdtemp(g.dir))
        die("mkdtemp");
    char p[PATH_MAX], src[PATH_MAX];
    snprintf(p, sizeof p, "%s/mlp", g.dir);
    make_dir(p);
    snprintf(p, sizeof p, "%s/mlp/1", g.dir);
    make_dir(p);
    snprintf(p, sizeof p, "%s/mlp/1/model.onnx", g.dir);
    copy_file("tests/fixtures/engine/mlp_features_op11/model.onnx", p);
    snprintf(p, sizeof p, "%s/bert", g.dir);
    make_dir(p);
    snprintf(p, sizeof p, "%s/bert/1", g.dir);
    make_dir(p);
    static const char *bert_files[] = {"model.onnx", "pipeline.json", "vocab.txt", "labels.txt"};
    for (int i = 0; i < 4; i++) {
        snprintf(src, sizeof src, "tests/fixtures/text/bert/1/%s", bert_files[i]);
        snprintf(p, sizeof p, "%s/bert/1/%s", g.dir, bert_files[i]);
        copy_file(src, p);
    }
    snprintf(p, sizeof p, "%s/bert/config.json", g.dir);
    write_text(p, "{\"max_batch_size\": 4, \"dynamic_batching\": {\"max_queue_delay_us\": 200},"
                  " \"routes\": ["
                  "{\"path\": \"/classify\", \"input\": \"text\","
                  " \"output\": {\"label\": \"category\", \"score\": \"confidence\"}},"
                  "{\"path\": \"/classify_many\", \"input\": \"texts\", \"batch\": true,"
                  " \"output\": {\"label\": \"category\", \"score\": \"confidence\","
                  " \"top_k\": \"candidates\", \"results\": \"predictions\"}}]}");

    inferd_error err = {0};
    if (inferd_engine_global_init(&err) < 0)
        goto fail;
    inferd_sched_options so = {.threads = 2, .workers = 2};
    if (inferd_sched_create(&so, &g.sched, &err) < 0)
        goto fail;
    inferd_repo_options ro = {.dir = g.dir, .sched = g.sched, .cache_dir = NULL};
    if (inferd_repo_create(&ro, &g.repo, &err) < 0 || inferd_repo_start(g.repo, &err) < 0 ||
        inferd_repo_wait_loaded(g.repo, 60000, &err) < 0)
        goto fail;
    inferd_api_options ao = {
        .repo = g.repo,
        .sched = g.sched,
        .text_limits = {.max_items = 8, .max_bytes = 512},
        .offload_bytes = 256,
    };
    if (inferd_api_create(&ao, &g.api, &err) < 0)
        goto fail;
    atexit(shut_down);
    return;
fail:
    fprintf(stderr, "fuzz_api: cannot start the server: %s\n", err.msg);
    remove_tree();
    exit(1);
}

/* ---- one request ---- */

/* Sends one request and waits for its answer (20 s at most: a lost request traps). Returns
 * the status; *json_error says whether the body is a JSON object with an "error" string. */
static int request(const char *method, const char *url, size_t url_len, const char *hl,
                   const uint8_t *body, size_t len, int *json_error, int *plain) {
    inferd_http_request *r = calloc(1, sizeof *r);
    if (!r)
        abort();
    r->method = method;
    size_t n = strnlen(url, url_len);
    const char *q = memchr(url, '?', n);
    size_t plen = q ? (size_t)(q - url) : n;
    if (plen >= sizeof r->path)
        plen = sizeof r->path - 1;
    memcpy(r->path, url, plen);
    for (const char *s = q ? q + 1 : NULL; s && s < url + n && r->n_query < MAX_QUERY;) {
        const char *end = memchr(s, '&', (size_t)(url + n - s));
        if (!end)
            end = url + n;
        const char *eq = memchr(s, '=', (size_t)(end - s));
        const char *kend = eq ? eq : end;
        snprintf(r->query_keys[r->n_query], sizeof r->query_keys[0], "%.*s", (int)(kend - s), s);
        snprintf(r->query_values[r->n_query], sizeof r->query_values[0], "%.*s",
                 eq ? (int)(end - eq - 1) : 0, eq ? eq + 1 : "");
        r->n_query++;
        s = end + 1;
    }
    r->header_length = hl;
    r->body = body;
    r->len = len;
    r->arrival_ns = inferd_now_ns();
    pthread_mutex_init(&r->lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&r->cv, &ca);
    pthread_condattr_destroy(&ca);

    inferd_api_handle(g.api, r);

    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += 20;
    pthread_mutex_lock(&r->lock);
    while (r->answers == 0)
        if (pthread_cond_timedwait(&r->cv, &r->lock, &until) == ETIMEDOUT)
            break;
    pthread_mutex_unlock(&r->lock);
    if (r->answers != 1) {
        fprintf(stderr, "fuzz_api: %s %s got %d answers\n", method, r->path, r->answers);
        __builtin_trap();
    }
    int status = r->status;
    *json_error = 0;
    *plain = !r->json && r->resp_len > 0;
    if (r->json && r->resp_len) {
        json_t *j = json_loadb(r->resp, r->resp_len, 0, NULL);
        *json_error = json_is_object(j) && json_is_string(json_object_get(j, "error"));
        json_decref(j);
    }
    inferd_free(r->resp);
    pthread_cond_destroy(&r->cv);
    pthread_mutex_destroy(&r->lock);
    free(r);
    return status;
}

static const char *line(const uint8_t **p, const uint8_t *end, size_t *len) {
    const uint8_t *nl = memchr(*p, '\n', (size_t)(end - *p));
    const char *s = (const char *)*p;
    *len = (size_t)((nl ? nl : end) - *p);
    *p = nl ? nl + 1 : end;
    return s;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!g.api)
        start_server();
    if (size < 1)
        return 0;
    static const char *methods[] = {"GET", "POST", "PUT", "DELETE", "HEAD"};
    const char *method = methods[data[0] % 5];
    const uint8_t *p = data + 1, *end = data + size;
    size_t url_len, hl_len;
    const char *url = line(&p, end, &url_len);
    const char *hl_text = line(&p, end, &hl_len);
    char hl[64];
    snprintf(hl, sizeof hl, "%.*s", (int)(hl_len < 63 ? hl_len : 63), hl_text);
    int json_error, plain;
    int status = request(method, url, url_len, hl_len ? hl : NULL, p, (size_t)(end - p),
                         &json_error, &plain);
    if (getenv("FUZZ_API_VERBOSE")) // to see what seeds reach
        fprintf(stderr, "%s %.*s -> %d\n", method, (int)url_len, url, status);
    if (status < 200 || status > 599)
        __builtin_trap();
    // Errors are JSON objects naming the problem; only the plain probes (/ready, /live)
    // answer text.
    if (status >= 400 && !json_error && !plain) {
        fprintf(stderr, "fuzz_api: %s %.*s: status %d without a JSON error\n", method, (int)url_len,
                url, status);
        __builtin_trap();
    }
    // Whatever the request was, the server still answers health and is ready.
    static const char ready[] = "/v2/health/ready";
    if (request("GET", ready, sizeof ready - 1, NULL, NULL, 0, &json_error, &plain) != 200)
        __builtin_trap();
    return 0;
}
