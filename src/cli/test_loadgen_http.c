/* Tests for cli/loadgen_http: the response parser fed whole, byte by byte and at every split
 * point; chunked bodies; keep-alive rules; malformed input; URL parsing; request formatting. */
#include <arpa/inet.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cli/loadgen_http.h"
#include "util/alloc.h"

static inferd_loadgen_http_parser parser;

/* Feeds text in pieces of at most step bytes; returns the parse result of the last feed and the
 * total bytes consumed in *used. */
static int feed_in_steps(inferd_loadgen_http_parser *p, const char *text, size_t len, size_t step,
                         size_t *used, inferd_error *err) {
    size_t off = 0;
    int rc = 0;
    while (off < len) {
        size_t n = len - off < step ? len - off : step;
        size_t c = 0;
        rc = inferd_loadgen_http_parse(p, text + off, n, &c, err);
        off += c;
        if (rc != 0)
            break;
        assert_int_equal(c, n); // needing more means everything offered was taken
    }
    *used = off;
    return rc;
}

static void test_content_length_whole(void **state) {
    (void)state;
    const char *r = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    "Content-Length: 11\r\n\r\n{\"ok\":true}";
    inferd_loadgen_http_parser_init(&parser, 1, 1 << 20);
    size_t used;
    inferd_error err = {0};
    assert_int_equal(inferd_loadgen_http_parse(&parser, r, strlen(r), &used, &err), 1);
    assert_int_equal(used, strlen(r));
    assert_int_equal(parser.status, 200);
    assert_int_equal(parser.content_length, 11);
    assert_int_equal(parser.keep_alive, 1);
    assert_int_equal(parser.chunked, 0);
    assert_string_equal(parser.body, "{\"ok\":true}");
    inferd_loadgen_http_parser_deinit(&parser);
}

static void test_every_split_point(void **state) {
    (void)state;
    const char *r = "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 5\r\n"
                    "Connection: keep-alive\r\n\r\nbusy!";
    size_t len = strlen(r);
    for (size_t cut = 1; cut < len; cut++) {
        inferd_loadgen_http_parser_init(&parser, 1, 1 << 20);
        inferd_error err = {0};
        size_t used = 0;
        assert_int_equal(inferd_loadgen_http_parse(&parser, r, cut, &used, &err), 0);
        assert_int_equal(used, cut);
        assert_int_equal(inferd_loadgen_http_parse(&parser, r + cut, len - cut, &used, &err), 1);
        assert_int_equal(used, len - cut);
        assert_int_equal(parser.status, 503);
        assert_string_equal(parser.body, "busy!");
        inferd_loadgen_http_parser_deinit(&parser);
    }
}

static void test_byte_by_byte_chunked(void **state) {
    (void)state;
    const char *r = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                    "5\r\nhello\r\n"
                    "1;ext=1\r\n,\r\n"
                    "A\r\n 012345678\r\n" // uppercase hex; the chunk itself has a leading space
                    "0\r\nX-Trailer: yes\r\n\r\n";
    inferd_loadgen_http_parser_init(&parser, 1, 1 << 20);
    inferd_error err = {0};
    size_t used;
    int rc = feed_in_steps(&parser, r, strlen(r), 1, &used, &err);
    assert_int_equal(rc, 1);
    assert_int_equal(used, strlen(r));
    assert_int_equal(parser.chunked, 1);
    assert_int_equal(parser.body_bytes, 16);
    assert_string_equal(parser.body, "hello, 012345678");
    assert_int_equal(parser.keep_alive, 1);
    inferd_loadgen_http_parser_deinit(&parser);
}

static void test_chunked_in_odd_pieces_discarding_body(void **state) {
    (void)state;
    const char *r = "HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\n\r\n"
                    "3\r\nabc\r\n10\r\n0123456789abcdef\r\n0\r\n\r\n";
    for (size_t step = 1; step <= 9; step++) {
        inferd_loadgen_http_parser_init(&parser, 0, 0);
        inferd_error err = {0};
        size_t used;
        assert_int_equal(feed_in_steps(&parser, r, strlen(r), step, &used, &err), 1);
        assert_int_equal(parser.body_bytes, 19);
        assert_null(parser.body);
        inferd_loadgen_http_parser_deinit(&parser);
    }
}

static void test_two_pipelined_responses(void **state) {
    (void)state;
    const char *r = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi"
                    "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n";
    size_t len = strlen(r);
    inferd_loadgen_http_parser_init(&parser, 0, 0);
    inferd_error err = {0};
    size_t used;
    assert_int_equal(inferd_loadgen_http_parse(&parser, r, len, &used, &err), 1);
    assert_int_equal(parser.status, 200);
    size_t first = strlen("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi");
    assert_int_equal(used, first);
    inferd_loadgen_http_parser_reset(&parser);
    assert_int_equal(inferd_loadgen_http_parse(&parser, r + used, len - used, &used, &err), 1);
    assert_int_equal(parser.status, 404);
    assert_int_equal(parser.body_bytes, 0);
    assert_int_equal(used, len - first);
}

static void test_keep_alive_rules(void **state) {
    (void)state;
    static const struct {
        const char *text;
        int keep_alive;
    } cases[] = {
        {"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 1},
        {"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n", 0},
        {"HTTP/1.1 200 OK\r\nConnection: Keep-Alive, Close\r\nContent-Length: 0\r\n\r\n", 0},
        {"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", 0},
        {"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n", 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        inferd_loadgen_http_parser_init(&parser, 0, 0);
        inferd_error err = {0};
        size_t used;
        assert_int_equal(
            inferd_loadgen_http_parse(&parser, cases[i].text, strlen(cases[i].text), &used, &err),
            1);
        assert_int_equal(parser.keep_alive, cases[i].keep_alive);
    }
}

static void test_body_until_close(void **state) {
    (void)state;
    const char *r = "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nall of this";
    inferd_loadgen_http_parser_init(&parser, 1, 1 << 20);
    inferd_error err = {0};
    size_t used;
    assert_int_equal(inferd_loadgen_http_parse(&parser, r, strlen(r), &used, &err), 0);
    assert_int_equal(inferd_loadgen_http_parse_eof(&parser, &err), 1);
    assert_string_equal(parser.body, "all of this");
    assert_int_equal(parser.keep_alive, 0);
    inferd_loadgen_http_parser_deinit(&parser);
}

static void test_no_body_statuses_and_interim(void **state) {
    (void)state;
    const char *r = "HTTP/1.1 100 Continue\r\n\r\n"
                    "HTTP/1.1 204 No Content\r\nContent-Length: 99\r\n\r\n";
    inferd_loadgen_http_parser_init(&parser, 0, 0);
    inferd_error err = {0};
    size_t used;
    assert_int_equal(inferd_loadgen_http_parse(&parser, r, strlen(r), &used, &err), 1);
    assert_int_equal(parser.status, 204);
    assert_int_equal(parser.body_bytes, 0);
    assert_int_equal(used, strlen(r));
}

static void test_eof_cuts(void **state) {
    (void)state;
    inferd_error err = {0};
    size_t used;
    inferd_loadgen_http_parser_init(&parser, 0, 0);
    assert_int_equal(inferd_loadgen_http_parser_started(&parser), 0);
    assert_int_equal(inferd_loadgen_http_parse_eof(&parser, &err), INFERD_EUNAVAIL);
    assert_non_null(strstr(err.msg, "without responding"));

    const char *r = "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc";
    inferd_loadgen_http_parser_init(&parser, 0, 0);
    assert_int_equal(inferd_loadgen_http_parse(&parser, r, strlen(r), &used, &err), 0);
    assert_int_equal(inferd_loadgen_http_parser_started(&parser), 1);
    assert_int_equal(inferd_loadgen_http_parse_eof(&parser, &err), INFERD_EUNAVAIL);
    assert_non_null(strstr(err.msg, "mid-response"));
}

static void expect_error(const char *text, int code, const char *msg_part) {
    inferd_loadgen_http_parser_init(&parser, 1, 16);
    inferd_error err = {0};
    size_t used;
    int rc = feed_in_steps(&parser, text, strlen(text), 7, &used, &err);
    if (rc != code)
        fail_msg("for %.40s...: got %d, wanted %d (%s)", text, rc, code, err.msg);
    if (!strstr(err.msg, msg_part))
        fail_msg("error '%s' does not mention '%s'", err.msg, msg_part);
    inferd_loadgen_http_parser_deinit(&parser);
}

static void test_bad_input(void **state) {
    (void)state;
    expect_error("SMTP 220 hello\r\n\r\n", INFERD_EINVAL, "status line");
    expect_error("HTTP/2.0 200 OK\r\n\r\n", INFERD_EINVAL, "status line");
    expect_error("HTTP/1.1 2x0 OK\r\n\r\n", INFERD_EINVAL, "status code");
    expect_error("HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", INFERD_EINVAL, "header line");
    expect_error("HTTP/1.1 200 OK\r\nContent-Length: -4\r\n\r\n", INFERD_EINVAL, "Content-Length");
    expect_error("HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n", INFERD_EINVAL,
                 "Content-Length");
    expect_error("HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n", INFERD_EINVAL,
                 "conflicting");
    expect_error("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", INFERD_EINVAL,
                 "chunk size");
    expect_error("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n", INFERD_EINVAL,
                 "longer than its size");
    expect_error("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\n",
                 INFERD_EINVAL, "too large");
    expect_error("HTTP/1.1 200 OK\r\nTransfer-Encoding: br\r\n\r\n", INFERD_EUNSUPPORTED,
                 "Transfer-Encoding");
    // The parser was told to keep at most 16 body bytes.
    expect_error("HTTP/1.1 200 OK\r\nContent-Length: 20\r\n\r\n01234567890123456789",
                 INFERD_ETOOLARGE, "body over 16");
    const char nul[] = "HTTP/1.1 200 OK\r\nX: a\0b\r\n\r\n";
    inferd_loadgen_http_parser_init(&parser, 0, 0);
    inferd_error err = {0};
    size_t used;
    assert_int_equal(inferd_loadgen_http_parse(&parser, nul, sizeof nul - 1, &used, &err),
                     INFERD_EINVAL);
}

static void test_oversized_headers(void **state) {
    (void)state;
    // One line longer than the line limit.
    size_t n = INFERD_LOADGEN_HTTP_MAX_LINE + 100;
    char *big = malloc(n + 64);
    assert_non_null(big);
    int k = sprintf(big, "HTTP/1.1 200 OK\r\nX-Big: ");
    memset(big + k, 'a', n);
    strcpy(big + k + n, "\r\n\r\n");
    expect_error(big, INFERD_ETOOLARGE, "line over");
    // Many short lines whose total passes the header budget.
    size_t total = INFERD_LOADGEN_HTTP_MAX_HEADERS + 1000;
    char *many = realloc(big, total + 64);
    assert_non_null(many);
    size_t off = (size_t)sprintf(many, "HTTP/1.1 200 OK\r\n");
    while (off < total) {
        memcpy(many + off, "X-A: b\r\n", 8);
        off += 8;
    }
    strcpy(many + off, "\r\n");
    expect_error(many, INFERD_ETOOLARGE, "headers over");
    free(many);
}

static void test_parse_url(void **state) {
    (void)state;
    struct sockaddr_in a;
    char host[64];
    inferd_error err = {0};
    assert_int_equal(
        inferd_loadgen_http_parse_url("http://127.0.0.1:8000", &a, host, sizeof host, &err), 0);
    assert_string_equal(host, "127.0.0.1:8000");
    assert_int_equal(ntohs(a.sin_port), 8000);
    assert_int_equal(ntohl(a.sin_addr.s_addr), INADDR_LOOPBACK);
    assert_int_equal(
        inferd_loadgen_http_parse_url("http://localhost:9/", &a, host, sizeof host, &err), 0);
    assert_string_equal(host, "127.0.0.1:9");
    assert_int_equal(inferd_loadgen_http_parse_url("http://10.1.2.3", &a, host, sizeof host, &err),
                     0);
    assert_string_equal(host, "10.1.2.3:80");

    static const struct {
        const char *url;
        const char *why;
    } bad[] = {
        {"https://127.0.0.1:8000", "https"},   {"ftp://127.0.0.1", "only http://"},
        {"127.0.0.1:8000", "only http://"},    {"http://example.com:80", "not an IPv4"},
        {"http://[::1]:8000", "only http://"}, {"http://127.0.0.1:0", "port"},
        {"http://127.0.0.1:99999", "port"},    {"http://127.0.0.1:80x", "scheme, host and port"},
        {"http://127.0.0.1:8000/v2", "path"},  {"http://u@127.0.0.1:8000", "only http://"},
        {"http://:8000", "only http://"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int rc = inferd_loadgen_http_parse_url(bad[i].url, &a, host, sizeof host, &err);
        if (rc != INFERD_EINVAL || !strstr(err.msg, bad[i].why))
            fail_msg("%s: rc %d, message '%s' (wanted one mentioning '%s')", bad[i].url, rc,
                     err.msg, bad[i].why);
    }
}

static void test_format_request(void **state) {
    (void)state;
    char *req;
    size_t len;
    inferd_error err = {0};
    assert_int_equal(inferd_loadgen_http_format_request(
                         "POST", "127.0.0.1:8000", "/v2/models/m/infer",
                         "Content-Type: application/json\r\n", "{}", 2, &req, &len, &err),
                     0);
    const char *want = "POST /v2/models/m/infer HTTP/1.1\r\nHost: 127.0.0.1:8000\r\n"
                       "Content-Length: 2\r\nContent-Type: application/json\r\n\r\n{}";
    assert_int_equal(len, strlen(want));
    assert_memory_equal(req, want, len);
    inferd_free(req);
    assert_int_equal(
        inferd_loadgen_http_format_request("GET", "h:1", "/x", NULL, NULL, 0, &req, &len, &err), 0);
    assert_string_equal(req, "GET /x HTTP/1.1\r\nHost: h:1\r\n\r\n");
    inferd_free(req);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_content_length_whole),
        cmocka_unit_test(test_every_split_point),
        cmocka_unit_test(test_byte_by_byte_chunked),
        cmocka_unit_test(test_chunked_in_odd_pieces_discarding_body),
        cmocka_unit_test(test_two_pipelined_responses),
        cmocka_unit_test(test_keep_alive_rules),
        cmocka_unit_test(test_body_until_close),
        cmocka_unit_test(test_no_body_statuses_and_interim),
        cmocka_unit_test(test_eof_cuts),
        cmocka_unit_test(test_bad_input),
        cmocka_unit_test(test_oversized_headers),
        cmocka_unit_test(test_parse_url),
        cmocka_unit_test(test_format_request),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
