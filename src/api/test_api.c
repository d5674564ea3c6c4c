/* Unit tests for api/api through a real HTTP server on loopback, a repository and a scheduler
 * with fake models: every allocation of serving an infer request (KServe v2) and a text
 * request (/v1 predict) fails in turn, and each request must still get an answer (its result,
 * or an error status with a JSON error; not a closed connection), while the server stays
 * ready. Leaks are checked under
 * make unit-asan.
 *
 * The fake models: "m" reads x INT64 [-1,-1] and returns y FP32 = x + 1; "t" (with a character
 * pipeline) reads input_ids and attention_mask and returns logits FP32 [-1,3] whose first
 * column is the row's id sum, so the text "ab" (ids 1 and 2) gets label "sum" with score 3.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include <cmocka.h>

#include "api/api.h"
#include "util/alloc.h"

/* ---- fake models ---- */

static _Atomic int live_models;

typedef struct fake_model {
    inferd_tensor_desc in[2], out[1];
    int text;
} fake_model;

static int fake_run(void *ctx, const inferd_tensor *in, inferd_tensor *out, int threads,
                    inferd_error *err) {
    const fake_model *m = ctx;
    (void)threads;
    int64_t b = in[0].dims[0], L = in[0].dims[1];
    out[0] = (inferd_tensor){.dtype = INFERD_DTYPE_F32, .rank = 2, .dims = {b, m->text ? 3 : L}};
    out[0].nbytes = (size_t)(out[0].dims[0] * out[0].dims[1]) * 4;
    out[0].data = inferd_malloc(NULL, out[0].nbytes);
    if (!out[0].data)
        return inferd_error_set(err, INFERD_EINTERNAL, "fake model out of memory");
    float *y = out[0].data;
    const int64_t *x = in[0].data;
    for (int64_t r = 0; r < b; r++) {
        if (!m->text) {
            for (int64_t j = 0; j < L; j++)
                y[r * L + j] = (float)x[r * L + j] + 1;
            continue;
        }
        float sum = 0;
        for (int64_t j = 0; j < L; j++)
            sum += (float)(x[r * L + j] * ((const int64_t *)in[1].data)[r * L + j]);
        y[r * 3] = sum;
        y[r * 3 + 1] = y[r * 3 + 2] = 0;
    }
    return 0;
}

static void fake_destroy(void *ctx) {
    free(ctx);
    atomic_fetch_sub(&live_models, 1);
}

static int fake_load(void *user, const inferd_repo_load_args *a, inferd_repo_model *out,
                     inferd_error *err) {
    (void)user;
    fake_model *m = calloc(1, sizeof *m);
    if (!m)
        return inferd_error_set(err, INFERD_EINTERNAL, "out of memory");
    m->text = strstr(a->path, "/t/") != NULL;
    if (m->text) {
        m->in[0] = (inferd_tensor_desc){"input_ids", INFERD_DTYPE_I64, 2, {-1, -1}};
        m->in[1] = (inferd_tensor_desc){"attention_mask", INFERD_DTYPE_I64, 2, {-1, -1}};
        m->out[0] = (inferd_tensor_desc){"logits", INFERD_DTYPE_F32, 2, {-1, 3}};
    } else {
        m->in[0] = (inferd_tensor_desc){"x", INFERD_DTYPE_I64, 2, {-1, -1}};
        m->out[0] = (inferd_tensor_desc){"y", INFERD_DTYPE_F32, 2, {-1, -1}};
    }
    atomic_fetch_add(&live_models, 1);
    *out = (inferd_repo_model){.ctx = m,
                               .platform = a->platform,
                               .n_inputs = m->text ? 2 : 1,
                               .n_outputs = 1,
                               .inputs = m->in,
                               .outputs = m->out,
                               .run = fake_run,
                               .destroy = fake_destroy};
    return 0;
}

/* ---- the repository on disk ---- */

static char root[64];

static void put(const char *rel, const char *text) {
    char path[256];
    snprintf(path, sizeof path, "%s/%s", root, rel);
    for (char *p = path + strlen(root) + 1; *p; p++)
        if (*p == '/') {
            *p = 0;
            mkdir(path, 0755);
            *p = '/';
        }
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

/* ---- the server ---- */

typedef struct server {
    inferd_sched *sched;
    inferd_repo *repo;
    inferd_api *api;
    inferd_http_server *http;
    int port;
} server;

/* max_loaded: versions READY at once (0: no limit; otherwise models load on demand).
 * offload_bytes: as inferd_api_options (0: every request with a body is parsed on a worker). */
static void server_start(server *s, int max_loaded, long long offload_bytes) {
    memset(s, 0, sizeof *s);
    inferd_error err = {0};
    inferd_sched_options so = {.threads = 2, .workers = 2};
    assert_int_equal(inferd_sched_create(&so, &s->sched, &err), 0);
    inferd_repo_options ro = {
        .dir = root, .sched = s->sched, .load = fake_load, .max_loaded = max_loaded};
    assert_int_equal(inferd_repo_create(&ro, &s->repo, &err), 0);
    assert_int_equal(inferd_repo_start(s->repo, &err), 0);
    assert_int_equal(inferd_repo_wait_loaded(s->repo, 5000, &err), 0);
    inferd_api_options ao = {.repo = s->repo,
                             .sched = s->sched,
                             .allow_repository_control = 1,
                             .offload_bytes = offload_bytes};
    assert_int_equal(inferd_api_create(&ao, &s->api, &err), 0);
    inferd_http_options ho = {.threads = 2,
                              .max_body = 1 << 20,
                              .max_header = 16 << 10,
                              .max_connections = 64,
                              .use_epoll = -1,
                              .timeout_s = 10,
                              .handler = inferd_api_handle,
                              .user = s->api};
    int rc = inferd_http_server_create(&ho, &s->http, &err);
    if (rc != 0)
        fail_msg("http: %d %s", rc, err.msg);
    s->port = inferd_http_server_port(s->http);
}

static void server_stop(server *s) {
    inferd_http_server_quiesce(s->http);
    inferd_http_server_wait_idle(s->http, 5000);
    inferd_http_server_destroy(s->http);
    inferd_sched_drain(s->sched);
    inferd_api_destroy(s->api);
    inferd_repo_destroy(s->repo);
    inferd_sched_destroy(s->sched);
    assert_int_equal(atomic_load(&live_models), 0);
}

/* Sends one request on a new connection and reads the whole response (the server closes it:
 * "Connection: close"). window_us > 0: allocation failures injected by the caller are turned
 * off that long after sending, before reading. Returns the HTTP status; CLOSED when the server
 * closed the connection without a response; LOST when nothing came within 5 s. */
#define CLOSED (-2)
#define LOST (-1)
static int http(int port, const char *method, const char *path, const char *body, char *resp,
                size_t cap, int64_t window_us) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct timeval tv = {.tv_sec = 5};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    char req[2048];
    int n = snprintf(req, sizeof req,
                     "%s %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                     "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s",
                     method, path, body ? strlen(body) : 0, body ? body : "");
    assert_int_equal(send(fd, req, (size_t)n, 0), n);
    if (window_us > 0) {
        usleep((useconds_t)window_us);
        inferd_alloc_fail_after(0);
    }
    size_t got = 0;
    ssize_t k = 0;
    while (got + 1 < cap && (k = recv(fd, resp + got, cap - 1 - got, 0)) > 0)
        got += (size_t)k;
    resp[got] = 0;
    close(fd);
    int status;
    if (sscanf(resp, "HTTP/1.1 %d", &status) == 1)
        return status;
    return k == 0 ? CLOSED : LOST;
}

static const char *body_of(const char *resp) {
    const char *b = strstr(resp, "\r\n\r\n");
    return b ? b + 4 : "";
}

/* ---- tests ---- */

static int setup(void **state) {
    (void)state;
    snprintf(root, sizeof root, "/tmp/inferd-test-api-XXXXXX");
    if (!mkdtemp(root))
        return -1;
    put("m/1/model.onnx", "x");
    put("m2/1/model.onnx", "x");
    put("t/config.json", "{\"routes\": [{\"path\": \"/team_predict\", \"input\": \"q\", "
                         "\"output\": {\"label\": \"best\"}}]}");
    put("t/1/model.onnx", "x");
    put("t/1/chars.txt", "_\na\nb\nc\n");
    put("t/1/labels.txt", "sum\nzero\nnought\n");
    put("t/1/pipeline.json",
        "{\"tokenizer\": {\"type\": \"char\", \"vocab\": \"chars.txt\"}, \"max_length\": 8, "
        "\"inputs\": {\"input_ids\": \"input_ids\", \"attention_mask\": \"attention_mask\"}, "
        "\"output\": \"logits\", \"postprocess\": {\"function\": \"none\", \"labels\": "
        "\"labels.txt\"}}");
    return 0;
}

static int teardown(void **state) {
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", root);
    return system(cmd);
}

typedef struct call {
    const char *method, *path, *body, *expect; /* expect: in the 200 response's body */
} call;

/* Serves c with allocation nth and every later one failing (nth 0: none) until the answer is
 * in or, with window_us > 0, for that long. Returns the allocations it made. */
static long serve_with_failures(server *s, const call *c, long nth, int64_t window_us) {
    char resp[8192];
    long before = inferd_alloc_count();
    inferd_alloc_fail_after(nth);
    int status = http(s->port, c->method, c->path, c->body, resp, sizeof resp, window_us);
    inferd_alloc_fail_after(0);
    long made = inferd_alloc_count() - before;
    if (status == LOST)
        fail_msg("%s, allocation %ld: no answer within 5 s", c->path, nth);
    if (status == CLOSED)
        fail_msg("%s, allocation %ld: the connection closed without an answer", c->path, nth);
    if (status == 200 && !strstr(body_of(resp), c->expect))
        fail_msg("%s, allocation %ld: 200 without %s: %s", c->path, nth, c->expect, body_of(resp));
    else if (status != 200 && (nth == 0 || status < 400 || !strstr(body_of(resp), "\"error\"")))
        fail_msg("%s, allocation %ld: %d %s", c->path, nth, status, body_of(resp));
    // Whatever that request met, the server still serves.
    if (http(s->port, "GET", "/v2/health/ready", NULL, resp, sizeof resp, 0) != 200)
        fail_msg("%s, allocation %ld: not ready afterwards: %s", c->path, nth, resp);
    return made;
}

/* Walks every allocation of each kind of request in turn (offload_bytes as in server_start). */
static void walk_requests(long long offload_bytes) {
    server s;
    server_start(&s, 0, offload_bytes);
    const call calls[] = {
        {"POST", "/v2/models/m/infer",
         "{\"inputs\":[{\"name\":\"x\",\"shape\":[2,2],\"datatype\":\"INT64\","
         "\"data\":[1,2,3,4]}]}",
         "\"data\":[2,3,4,5]"},
        {"POST", "/v1/models/t:predict", "{\"instances\":[\"ab\",\"cab\"]}", "\"score\":3"},
        {"POST", "/v2/models/t/infer",
         "{\"inputs\":[{\"name\":\"text\",\"shape\":[1],\"datatype\":\"BYTES\","
         "\"data\":[\"ab\"]}]}",
         "\"data\":[\"sum\"]"},
        {"POST", "/team_predict", "{\"q\":\"ab\"}", "\"best\":\"sum\""},
        {"GET", "/metrics", NULL, "inferd_"},
        {"POST", "/v2/repository/index", "{}", "\"name\":\"t\""},
        {"GET", "/v2/models/t", NULL, "\"text\":"},
    };
    for (size_t i = 0; i < sizeof calls / sizeof calls[0]; i++) {
        long total = serve_with_failures(&s, &calls[i], 0, 0);
        for (long nth = 1; nth <= total; nth++)
            serve_with_failures(&s, &calls[i], nth, 0);
    }
    server_stop(&s);
}

static void test_out_of_memory_anywhere_in_a_request_gets_an_answer(void **state) {
    (void)state;
    walk_requests(INFERD_API_DEFAULT_OFFLOAD_BYTES); // parsed on the HTTP thread
    walk_requests(0);                                // every body parsed on a worker
}

/* With one version in memory at a time, a request for m while m2 is loaded parks until m is
 * loaded back (m2 evicted), then goes on on the loader thread: every allocation from the nth
 * on fails for 20 ms, in turn, and the request must still get an answer (work put off for
 * want of memory is tried again once memory is back). */
static void test_out_of_memory_while_parked_gets_an_answer(void **state) {
    (void)state;
    server s;
    server_start(&s, 1, INFERD_API_DEFAULT_OFFLOAD_BYTES);
    const call m = {"POST", "/v2/models/m/infer",
                    "{\"inputs\":[{\"name\":\"x\",\"shape\":[1,2],\"datatype\":\"INT64\","
                    "\"data\":[1,2]}]}",
                    "\"data\":[2,3]"};
    const call m2 = {"POST", "/v2/models/m2/infer",
                     "{\"inputs\":[{\"name\":\"x\",\"shape\":[1,1],\"datatype\":\"INT64\","
                     "\"data\":[7]}]}",
                     "\"data\":[8]"};
    serve_with_failures(&s, &m2, 0, 0);
    long total = serve_with_failures(&s, &m, 0, 0);
    for (long nth = 1; nth <= total; nth++) {
        serve_with_failures(&s, &m2, 0, 0); // m2 in, m out
        serve_with_failures(&s, &m, nth, 20000);
    }
    server_stop(&s);
}

/* The repository extension's load and unload requests, every allocation from the nth on
 * failing for 30 ms: each gets an answer, and afterwards the model serves again once loaded. */
static void test_out_of_memory_in_load_and_unload_requests(void **state) {
    (void)state;
    server s;
    server_start(&s, 0, INFERD_API_DEFAULT_OFFLOAD_BYTES);
    const call unload = {"POST", "/v2/repository/models/m/unload", "", ""};
    const call load = {"POST", "/v2/repository/models/m/load", "", ""};
    const call infer = {"POST", "/v2/models/m/infer",
                        "{\"inputs\":[{\"name\":\"x\",\"shape\":[1,1],\"datatype\":\"INT64\","
                        "\"data\":[1]}]}",
                        "\"data\":[2]"};
    long total_unload = serve_with_failures(&s, &unload, 0, 0);
    long total_load = serve_with_failures(&s, &load, 0, 0);
    for (long nth = 1; nth <= total_unload || nth <= total_load; nth++) {
        if (nth <= total_unload)
            serve_with_failures(&s, &unload, nth, 30000);
        serve_with_failures(&s, &unload, 0, 0);
        if (nth <= total_load)
            serve_with_failures(&s, &load, nth, 30000);
        serve_with_failures(&s, &load, 0, 0);
        serve_with_failures(&s, &infer, 0, 0);
    }
    server_stop(&s);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_out_of_memory_anywhere_in_a_request_gets_an_answer),
        cmocka_unit_test(test_out_of_memory_while_parked_gets_an_answer),
        cmocka_unit_test(test_out_of_memory_in_load_and_unload_requests),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
