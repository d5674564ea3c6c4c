/* Tests for cli/loadgen: the load loop against a small HTTP server running in a thread of this
 * process. Each run is a fraction of a second; the checks are on counts, never on speed. */
#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "cli/loadgen.h"

enum server_mode {
    SERVE_OK,             /* 200 with a keep-alive Content-Length body */
    SERVE_CLOSE_SILENTLY, /* 200, then close without saying Connection: close */
    SERVE_NEVER,          /* read requests, never answer */
    SERVE_503_CHUNKED,    /* 503 with a chunked body */
};

#define MAX_CLIENTS 64

typedef struct server {
    enum server_mode mode;
    int listener;
    struct sockaddr_in addr;
    atomic_int stop;
    atomic_int requests;
    atomic_int accepted;
    pthread_t thread;
} server;

typedef struct client {
    int fd;
    char buf[8192];
    size_t len;
} client;

/* Returns the length of the first complete request in buf, or 0 if there is none yet. */
static size_t request_length(const char *buf, size_t len) {
    const char *end = memmem(buf, len, "\r\n\r\n", 4);
    if (!end)
        return 0;
    size_t head = (size_t)(end - buf) + 4;
    size_t body = 0;
    const char *cl = memmem(buf, head, "Content-Length: ", 16);
    if (cl)
        body = strtoul(cl + 16, NULL, 10);
    return len >= head + body ? head + body : 0;
}

static void respond(server *s, client *c) {
    static const char ok[] = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
    static const char busy[] = "HTTP/1.1 503 Service Unavailable\r\nTransfer-Encoding: chunked\r\n"
                               "\r\n4\r\nbusy\r\n0\r\n\r\n";
    ssize_t r = 0;
    switch (s->mode) {
    case SERVE_OK:
        r = send(c->fd, ok, sizeof ok - 1, MSG_NOSIGNAL);
        break;
    case SERVE_CLOSE_SILENTLY:
        r = send(c->fd, ok, sizeof ok - 1, MSG_NOSIGNAL);
        close(c->fd);
        c->fd = -1;
        break;
    case SERVE_NEVER:
        break;
    case SERVE_503_CHUNKED:
        r = send(c->fd, busy, sizeof busy - 1, MSG_NOSIGNAL);
        break;
    }
    (void)r;
}

static void *serve(void *arg) {
    server *s = arg;
    static client clients[MAX_CLIENTS];
    for (int i = 0; i < MAX_CLIENTS; i++)
        clients[i].fd = -1;
    while (!atomic_load(&s->stop)) {
        struct pollfd pfds[MAX_CLIENTS + 1];
        int map[MAX_CLIENTS + 1];
        int n = 0;
        pfds[n] = (struct pollfd){.fd = s->listener, .events = POLLIN};
        map[n++] = -1;
        for (int i = 0; i < MAX_CLIENTS; i++) {
            if (clients[i].fd >= 0) {
                pfds[n] = (struct pollfd){.fd = clients[i].fd, .events = POLLIN};
                map[n++] = i;
            }
        }
        if (poll(pfds, (nfds_t)n, 10) <= 0)
            continue;
        for (int k = 0; k < n; k++) {
            if (!pfds[k].revents)
                continue;
            if (map[k] < 0) {
                int fd = accept(s->listener, NULL, NULL);
                if (fd < 0)
                    continue;
                atomic_fetch_add(&s->accepted, 1);
                int slot = -1;
                for (int i = 0; i < MAX_CLIENTS && slot < 0; i++)
                    if (clients[i].fd < 0)
                        slot = i;
                if (slot < 0) {
                    close(fd);
                    continue;
                }
                clients[slot].fd = fd;
                clients[slot].len = 0;
                continue;
            }
            client *c = &clients[map[k]];
            ssize_t got = recv(c->fd, c->buf + c->len, sizeof c->buf - c->len, 0);
            if (got <= 0) {
                close(c->fd);
                c->fd = -1;
                continue;
            }
            c->len += (size_t)got;
            size_t rl;
            while (c->fd >= 0 && (rl = request_length(c->buf, c->len)) > 0) {
                atomic_fetch_add(&s->requests, 1);
                memmove(c->buf, c->buf + rl, c->len - rl);
                c->len -= rl;
                respond(s, c);
            }
        }
    }
    for (int i = 0; i < MAX_CLIENTS; i++)
        if (clients[i].fd >= 0)
            close(clients[i].fd);
    return NULL;
}

static void server_start(server *s, enum server_mode mode) {
    memset(s, 0, sizeof *s);
    s->mode = mode;
    s->listener = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(s->listener >= 0);
    s->addr.sin_family = AF_INET;
    s->addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(s->listener, (struct sockaddr *)&s->addr, sizeof s->addr), 0);
    socklen_t sl = sizeof s->addr;
    getsockname(s->listener, (struct sockaddr *)&s->addr, &sl);
    assert_int_equal(listen(s->listener, 128), 0);
    assert_int_equal(pthread_create(&s->thread, NULL, serve, s), 0);
}

static void server_stop(server *s) {
    atomic_store(&s->stop, 1);
    pthread_join(s->thread, NULL);
    close(s->listener);
}

static const char request[] = "POST /v2/models/m/infer HTTP/1.1\r\nHost: t\r\n"
                              "Content-Length: 2\r\n\r\n{}";

static inferd_loadgen_config base_config(const server *s) {
    return (inferd_loadgen_config){
        .addr = s->addr,
        .request = request,
        .request_len = sizeof request - 1,
        .mode = INFERD_LOADGEN_MODE_CLOSED,
        .concurrency = 2,
        .max_connections = 8,
        .duration_s = 0.3,
        .timeout_s = 2,
        .seed = 1,
    };
}

static void test_closed_loop_accounting(void **state) {
    (void)state;
    server s;
    server_start(&s, SERVE_OK);
    inferd_loadgen_config cfg = base_config(&s);
    inferd_loadgen_result r;
    inferd_error err = {0};
    assert_int_equal(inferd_loadgen_run(&cfg, &r, &err), 0);
    server_stop(&s);
    assert_true(r.responses > 10);
    // Everything sent came back: the end drains requests in flight.
    assert_int_equal(r.sent, r.responses);
    assert_int_equal(r.ok, r.responses);
    assert_int_equal(r.status[200], r.responses);
    assert_int_equal(inferd_hist_count(r.latency), r.responses);
    assert_int_equal(inferd_loadgen_result_errors(&r), 0);
    assert_int_equal(r.connections_max, 2);
    assert_int_equal(atomic_load(&s.accepted), 2); // keep-alive: no reconnects
    assert_true(r.duration_s >= 0.3 && r.duration_s < 1.0);
    inferd_loadgen_result_deinit(&r);
}

static void test_idle_close_is_retried_silently(void **state) {
    (void)state;
    server s;
    server_start(&s, SERVE_CLOSE_SILENTLY);
    inferd_loadgen_config cfg = base_config(&s);
    cfg.concurrency = 1;
    inferd_loadgen_result r;
    inferd_error err = {0};
    assert_int_equal(inferd_loadgen_run(&cfg, &r, &err), 0);
    server_stop(&s);
    // Each reuse of a socket the server closed fails before any response byte; that is
    // retried on a new connection instead of being reported as an error.
    assert_true(r.responses > 5);
    assert_int_equal(r.io_errors, 0);
    assert_int_equal(r.ok, r.responses);
    assert_true(r.retries > 0);
    assert_true(atomic_load(&s.accepted) > 5);
    inferd_loadgen_result_deinit(&r);
}

static void test_timeouts_are_counted(void **state) {
    (void)state;
    server s;
    server_start(&s, SERVE_NEVER);
    inferd_loadgen_config cfg = base_config(&s);
    cfg.timeout_s = 0.1;
    cfg.duration_s = 0.35;
    inferd_loadgen_result r;
    inferd_error err = {0};
    assert_int_equal(inferd_loadgen_run(&cfg, &r, &err), 0);
    server_stop(&s);
    assert_int_equal(r.responses, 0);
    assert_int_equal(inferd_hist_count(r.latency), 0);
    // Two connections, each timing out after 0.1 s and retrying 20 ms later, for 0.35 s.
    assert_in_range(r.timeouts, 4, 12);
    assert_int_equal(r.timeouts, r.sent);
    assert_int_equal(r.io_errors, 0);
    inferd_loadgen_result_deinit(&r);
}

static void test_refused_connections_are_counted(void **state) {
    (void)state;
    server s;
    server_start(&s, SERVE_OK);
    server_stop(&s); // nothing listens on that port any more
    inferd_loadgen_config cfg = base_config(&s);
    cfg.duration_s = 0.2;
    inferd_loadgen_result r;
    inferd_error err = {0};
    assert_int_equal(inferd_loadgen_run(&cfg, &r, &err), 0);
    assert_int_equal(r.responses, 0);
    // Two connections retrying every 20 ms for 0.2 s.
    assert_in_range(r.connect_errors, 4, 30);
    assert_int_equal(r.connect_errors, r.sent);
    inferd_loadgen_result_deinit(&r);
}

static void test_open_loop_sends_on_schedule(void **state) {
    (void)state;
    server s;
    server_start(&s, SERVE_503_CHUNKED);
    inferd_loadgen_config cfg = base_config(&s);
    cfg.mode = INFERD_LOADGEN_MODE_OPEN;
    cfg.rate = 200;
    cfg.duration_s = 0.5;
    inferd_loadgen_result r;
    inferd_error err = {0};
    assert_int_equal(inferd_loadgen_run(&cfg, &r, &err), 0);
    server_stop(&s);
    // Due times are t0 + k / rate for k = 0..99: exactly 100 in the window.
    assert_int_equal(r.sent + r.dropped, 100);
    assert_int_equal(r.dropped, 0);
    assert_int_equal(r.responses, 100);
    assert_int_equal(r.status[503], 100);
    assert_int_equal(r.ok, 0);
    assert_int_equal(inferd_loadgen_result_errors(&r), 100);
    assert_true(r.connections_max >= 1 && r.connections_max <= 8);
    inferd_loadgen_result_deinit(&r);
}

static void test_open_loop_survives_idle_closes(void **state) {
    (void)state;
    server s;
    server_start(&s, SERVE_CLOSE_SILENTLY);
    inferd_loadgen_config cfg = base_config(&s);
    cfg.mode = INFERD_LOADGEN_MODE_OPEN;
    cfg.rate = 100;
    cfg.duration_s = 0.3;
    inferd_loadgen_result r;
    inferd_error err = {0};
    assert_int_equal(inferd_loadgen_run(&cfg, &r, &err), 0);
    server_stop(&s);
    // Idle sockets the server closed are noticed (or retried) and replaced: no errors.
    assert_int_equal(r.responses, 30);
    assert_int_equal(r.ok, 30);
    assert_int_equal(inferd_loadgen_result_errors(&r), 0);
    assert_int_equal(atomic_load(&s.accepted), 30);
    inferd_loadgen_result_deinit(&r);
}

typedef struct tick_log {
    int seconds, measure_starts;
    int warmup_seconds;
    uint64_t last_all;
} tick_log;

static void log_tick(const inferd_loadgen_tick *t, void *user) {
    tick_log *l = user;
    if (t->kind == INFERD_LOADGEN_TICK_MEASURE_START) {
        l->measure_starts++;
        return;
    }
    l->seconds++;
    l->warmup_seconds += t->warmup;
    assert_true(t->responses_all >= l->last_all);
    l->last_all = t->responses_all;
}

static void test_warmup_excluded_and_ticks(void **state) {
    (void)state;
    server s;
    server_start(&s, SERVE_OK);
    inferd_loadgen_config cfg = base_config(&s);
    tick_log log = {0};
    // A light open loop, so the second of warmup costs little CPU.
    cfg.mode = INFERD_LOADGEN_MODE_OPEN;
    cfg.rate = 50;
    cfg.warmup_s = 1.0;
    cfg.duration_s = 0.2;
    cfg.on_tick = log_tick;
    cfg.user = &log;
    inferd_loadgen_result r;
    inferd_error err = {0};
    assert_int_equal(inferd_loadgen_run(&cfg, &r, &err), 0);
    server_stop(&s);
    assert_int_equal(log.measure_starts, 1);
    assert_int_equal(log.seconds, 1);
    assert_int_equal(log.warmup_seconds, 1);
    // 50 requests were due during warmup and 10 in the measured 0.2 s; the server saw all of
    // them, the result only the measured ones.
    assert_int_equal(atomic_load(&s.requests), 60);
    assert_int_equal(r.sent, 10);
    assert_int_equal(r.responses, 10);
    assert_in_range(log.last_all, 40, 50); // 50 unless responses were slow to arrive
    assert_true(r.duration_s >= 0.2 && r.duration_s < 0.8);
    inferd_loadgen_result_deinit(&r);
}

static void test_bad_config(void **state) {
    (void)state;
    server s = {.addr = {.sin_family = AF_INET}};
    inferd_loadgen_config cfg = base_config(&s);
    inferd_loadgen_result r;
    inferd_error err = {0};
    cfg.concurrency = 0;
    assert_int_equal(inferd_loadgen_run(&cfg, &r, &err), INFERD_EINVAL);
    inferd_loadgen_result_deinit(&r);
    cfg = base_config(&s);
    cfg.mode = INFERD_LOADGEN_MODE_OPEN;
    cfg.rate = 0;
    assert_int_equal(inferd_loadgen_run(&cfg, &r, &err), INFERD_EINVAL);
    inferd_loadgen_result_deinit(&r);
    cfg = base_config(&s);
    cfg.duration_s = -1;
    assert_int_equal(inferd_loadgen_run(&cfg, &r, &err), INFERD_EINVAL);
    assert_non_null(strstr(err.msg, "duration"));
    inferd_loadgen_result_deinit(&r);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_closed_loop_accounting),
        cmocka_unit_test(test_idle_close_is_retried_silently),
        cmocka_unit_test(test_timeouts_are_counted),
        cmocka_unit_test(test_refused_connections_are_counted),
        cmocka_unit_test(test_open_loop_sends_on_schedule),
        cmocka_unit_test(test_open_loop_survives_idle_closes),
        cmocka_unit_test(test_warmup_excluded_and_ticks),
        cmocka_unit_test(test_bad_config),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
