/* Unit tests for http/server: answers now and later (from another thread), a suspended
 * request holds no HTTP thread, body limits (413 before and after reading), headers and
 * queries, quiesce and idle wait. Clients are raw sockets on loopback. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cmocka.h>

#include "http/server.h"
#include "util/alloc.h"

#define assert_contains(haystack, needle)                                                          \
    do {                                                                                           \
        if (!strstr((haystack), (needle)))                                                         \
            fail_msg("\"%s\" does not contain \"%s\"", (haystack), (needle));                      \
    } while (0)

#define assert_not_contains(haystack, needle)                                                      \
    do {                                                                                           \
        if (strstr((haystack), (needle)))                                                          \
            fail_msg("\"%s\" contains \"%s\"", (haystack), (needle));                              \
    } while (0)

/* ---- handler: /sync answers at once, /async is answered later by the responder thread ---- */

#define MAX_HELD 64
static pthread_mutex_t held_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t held_cv = PTHREAD_COND_INITIALIZER;
static inferd_http_request *held[MAX_HELD];
static int n_held;
static int gate_open = 1;
static int stop_responder;

static void respond_text(inferd_http_request *req, int status, const char *text,
                         const char *const *headers) {
    size_t n = strlen(text);
    char *body = inferd_malloc(NULL, n);
    memcpy(body, text, n);
    inferd_http_respond(req, status, "text/plain", body, n, headers);
}

static void handler(void *user, inferd_http_request *req) {
    (void)user;
    const char *path = inferd_http_request_path(req);
    if (!strcmp(path, "/sync")) {
        respond_text(req, 200, "sync", NULL);
    } else if (!strcmp(path, "/hdr")) {
        char text[256];
        const char *h = inferd_http_request_header(req, "x-test");
        const char *q = inferd_http_request_query(req, "q");
        snprintf(text, sizeof text, "%s %s %s", inferd_http_request_method(req), h ? h : "-",
                 q ? q : "-");
        static const char *const extra[] = {"X-Reply", "yes", NULL};
        respond_text(req, 201, text, extra);
    } else if (!strcmp(path, "/async")) {
        pthread_mutex_lock(&held_lock);
        held[n_held++] = req;
        pthread_cond_broadcast(&held_cv);
        pthread_mutex_unlock(&held_lock);
    } else {
        respond_text(req, 404, "nope", NULL);
    }
}

/* Answers held requests with their own body, whenever the gate is open. */
static void *responder(void *arg) {
    (void)arg;
    pthread_mutex_lock(&held_lock);
    for (;;) {
        while (!stop_responder && (n_held == 0 || !gate_open))
            pthread_cond_wait(&held_cv, &held_lock);
        if (stop_responder && n_held == 0)
            break;
        inferd_http_request *req = held[--n_held];
        pthread_mutex_unlock(&held_lock);
        size_t len;
        const uint8_t *body = inferd_http_request_body(req, &len);
        char *copy = inferd_malloc(NULL, len + 6);
        memcpy(copy, "echo:", 5);
        memcpy(copy + 5, body, len);
        inferd_http_respond(req, 200, "text/plain", copy, len + 5, NULL);
        pthread_mutex_lock(&held_lock);
    }
    pthread_mutex_unlock(&held_lock);
    return NULL;
}

static void set_gate(int open) {
    pthread_mutex_lock(&held_lock);
    gate_open = open;
    pthread_cond_broadcast(&held_cv);
    pthread_mutex_unlock(&held_lock);
}

static int held_count(void) {
    pthread_mutex_lock(&held_lock);
    int n = n_held;
    pthread_mutex_unlock(&held_lock);
    return n;
}

/* ---- raw client ---- */

static int connect_to(int port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    struct timeval tv = {.tv_sec = 5};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static void send_all(int fd, const char *data, size_t n) {
    while (n > 0) {
        ssize_t w = send(fd, data, n, MSG_NOSIGNAL);
        if (w <= 0)
            return;
        data += w;
        n -= (size_t)w;
    }
}

/* Reads until the peer closes (requests carry Connection: close). Returns the status. */
static int read_response(int fd, char *buf, size_t cap) {
    size_t n = 0;
    ssize_t r;
    while (n + 1 < cap && (r = recv(fd, buf + n, cap - 1 - n, 0)) > 0)
        n += (size_t)r;
    buf[n] = 0;
    int status = 0;
    if (sscanf(buf, "HTTP/1.%*d %d", &status) != 1)
        return -1;
    return status;
}

static const char *body_of(const char *resp) {
    const char *b = strstr(resp, "\r\n\r\n");
    return b ? b + 4 : "";
}

static int request(int port, const char *raw, char *buf, size_t cap) {
    int fd = connect_to(port);
    if (fd < 0)
        return -1;
    send_all(fd, raw, strlen(raw));
    int st = read_response(fd, buf, cap);
    close(fd);
    return st;
}

/* ---- fixture ---- */

static inferd_http_server *srv;
static pthread_t responder_thread;
static int use_epoll; /* every test runs with poll(2), then with epoll */

static int start(size_t max_body, int threads) {
    inferd_http_options o = {.port = 0,
                             .threads = threads,
                             .max_body = max_body,
                             .max_header = 16384,
                             .max_connections = 64,
                             .use_epoll = use_epoll,
                             .timeout_s = 10,
                             .body_timeout_s = 10,
                             .handler = handler};
    inferd_error err = {0};
    if (inferd_http_server_create(&o, &srv, &err) != 0) {
        fprintf(stderr, "create: %s\n", err.msg);
        return -1;
    }
    stop_responder = 0;
    set_gate(1);
    pthread_create(&responder_thread, NULL, responder, NULL);
    return 0;
}

static void stop(void) {
    set_gate(1);
    pthread_mutex_lock(&held_lock);
    stop_responder = 1;
    pthread_cond_broadcast(&held_cv);
    pthread_mutex_unlock(&held_lock);
    pthread_join(responder_thread, NULL);
    inferd_http_server_wait_idle(srv, 2000);
    inferd_http_server_destroy(srv);
    srv = NULL;
}

/* ---- tests ---- */

static void test_sync_and_async(void **state) {
    (void)state;
    assert_int_equal(start(1 << 20, 2), 0);
    int port = inferd_http_server_port(srv);
    assert_in_range(port, 1, 65535);
    char buf[4096];
    assert_int_equal(request(port, "GET /sync HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
                             buf, sizeof buf),
                     200);
    assert_string_equal(body_of(buf), "sync");
    assert_int_equal(request(port,
                             "POST /async HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
                             "Content-Length: 5\r\n\r\nhello",
                             buf, sizeof buf),
                     200);
    assert_string_equal(body_of(buf), "echo:hello");
    assert_int_equal(
        request(port,
                "GET /hdr?q=abc HTTP/1.1\r\nHost: t\r\nX-Test: 42\r\nConnection: close\r\n\r\n",
                buf, sizeof buf),
        201);
    assert_string_equal(body_of(buf), "GET 42 abc");
    assert_contains(buf, "X-Reply: yes");
    assert_contains(buf, "Content-Type: text/plain");
    stop();
}

static void test_suspended_requests_hold_no_thread(void **state) {
    (void)state;
    assert_int_equal(start(1 << 20, 1), 0); // one HTTP thread only
    int port = inferd_http_server_port(srv);
    set_gate(0);
    enum { N = 8 };
    int fds[N];
    for (int i = 0; i < N; i++) {
        fds[i] = connect_to(port);
        assert_in_range(fds[i], 0, 1 << 20);
        char req[200];
        snprintf(req, sizeof req,
                 "POST /async HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Length: "
                 "2\r\n\r\n%02d",
                 i);
        send_all(fds[i], req, strlen(req));
    }
    for (int i = 0; i < 500 && held_count() < N; i++)
        usleep(2000);
    assert_int_equal(held_count(), N);
    assert_int_equal(inferd_http_server_active(srv), N);
    // Every request is parked, and the only HTTP thread still answers.
    char buf[4096];
    assert_int_equal(request(port, "GET /sync HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
                             buf, sizeof buf),
                     200);
    set_gate(1);
    for (int i = 0; i < N; i++) {
        assert_int_equal(read_response(fds[i], buf, sizeof buf), 200);
        char want[16];
        snprintf(want, sizeof want, "echo:%02d", i);
        assert_string_equal(body_of(buf), want);
        close(fds[i]);
    }
    assert_int_equal(inferd_http_server_wait_idle(srv, 2000), 0);
    assert_int_equal(inferd_http_server_active(srv), 0);
    stop();
}

static void test_body_limits(void **state) {
    (void)state;
    assert_int_equal(start(100, 2), 0);
    int port = inferd_http_server_port(srv);
    char buf[4096];
    // Announced too large: refused before the body is sent.
    assert_int_equal(request(port,
                             "POST /async HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
                             "Content-Length: 1000\r\n\r\n",
                             buf, sizeof buf),
                     413);
    assert_contains(body_of(buf), "\"error\"");
    assert_contains(body_of(buf), "1000 bytes exceeds the limit of 100 bytes (--max-body)");
    // Chunked and too large: read, dropped, then refused.
    char req[1024];
    char chunk[201];
    memset(chunk, 'a', 200);
    chunk[200] = 0;
    snprintf(req, sizeof req,
             "POST /async HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
             "Transfer-Encoding: chunked\r\n\r\nc8\r\n%s\r\n0\r\n\r\n",
             chunk);
    assert_int_equal(request(port, req, buf, sizeof buf), 413);
    assert_contains(body_of(buf), "exceeds the limit of 100 bytes");
    // Exactly at the limit is fine.
    memset(chunk, 'b', 100);
    chunk[100] = 0;
    snprintf(req, sizeof req,
             "POST /async HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Length: "
             "100\r\n\r\n%s",
             chunk);
    assert_int_equal(request(port, req, buf, sizeof buf), 200);
    assert_int_equal(strlen(body_of(buf)), 105);
    // The server is still fine.
    assert_int_equal(request(port, "GET /sync HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
                             buf, sizeof buf),
                     200);
    stop();
}

/* An encoded NUL would cut the decoded path short (/sync%00x would become /sync): refused. */
static void test_encoded_nul_is_refused(void **state) {
    (void)state;
    assert_int_equal(start(1 << 20, 1), 0);
    int port = inferd_http_server_port(srv);
    char buf[4096];
    static const char *const bad[] = {
        "GET /sync%00x HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        "GET /hdr?q=a%00b HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        "POST /async%00 HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Length: "
        "5\r\n\r\nhello",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(request(port, bad[i], buf, sizeof buf), 400);
        assert_contains(body_of(buf), "encoded NUL byte");
    }
    // Other escapes decode as before.
    assert_int_equal(request(port, "GET /%73ync HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
                             buf, sizeof buf),
                     200);
    assert_int_equal(inferd_http_server_wait_idle(srv, 2000), 0); // nothing left active
    stop();
}

static void test_keep_alive_then_quiesce(void **state) {
    (void)state;
    assert_int_equal(start(1 << 20, 2), 0);
    int port = inferd_http_server_port(srv);
    int fd = connect_to(port);
    const char *get = "GET /sync HTTP/1.1\r\nHost: t\r\n\r\n";
    send_all(fd, get, strlen(get));
    char buf[4096];
    ssize_t n = recv(fd, buf, sizeof buf - 1, 0);
    assert_in_range(n, 1, sizeof buf);
    buf[n] = 0;
    assert_contains(buf, "200");
    assert_not_contains(buf, "Connection: close");
    inferd_http_server_quiesce(srv);
    // New connections are refused; the open one is served and told to close.
    int fd2 = connect_to(port);
    if (fd2 >= 0) {
        close(fd2);
        fail_msg("connect after quiesce: fd %d, expected %d", fd2, -1);
    }
    send_all(fd, get, strlen(get));
    assert_int_equal(read_response(fd, buf, sizeof buf), 200);
    assert_contains(buf, "Connection: close");
    close(fd);
    stop();
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sync_and_async),
        cmocka_unit_test(test_suspended_requests_hold_no_thread),
        cmocka_unit_test(test_body_limits),
        cmocka_unit_test(test_encoded_nul_is_refused),
        cmocka_unit_test(test_keep_alive_then_quiesce),
    };
    int failed = 0;
    for (use_epoll = 0; use_epoll <= 1; use_epoll++) {
        fprintf(stderr, "polling with %s\n", use_epoll ? "epoll" : "poll");
        failed += cmocka_run_group_tests(tests, NULL, NULL);
    }
    return failed;
}
