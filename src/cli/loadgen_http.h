/* loadgen_http.h: the small HTTP/1.1 client side that `inferd bench` needs, without libcurl:
 * parsing http://IPv4:port URLs, formatting a request once so it can be resent as-is, an
 * incremental response parser, and a blocking GET for model metadata.
 *
 * The parser is a byte-level state machine fed whatever each read(2) returned, so a response
 * may arrive split anywhere. It understands Content-Length bodies, chunked bodies (extensions
 * and trailers skipped), bodies that end when the server closes the connection, 1xx interim
 * responses, and responses that never have a body (204, 304). It keeps only one header line at
 * a time, so a parser costs about 8 KiB; the body is discarded unless the caller asks to keep
 * it. Servers are not trusted: malformed or oversized input gives an error, never a crash.
 *
 * Nothing here is shared between threads: each parser belongs to one connection and is used
 * by one thread at a time.
 */
#ifndef INFERD_CLI_LOADGEN_HTTP_H
#define INFERD_CLI_LOADGEN_HTTP_H

#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>

#include "util/error.h"

#define INFERD_LOADGEN_HTTP_MAX_LINE 8192     /* longest status or header line accepted */
#define INFERD_LOADGEN_HTTP_MAX_HEADERS 65536 /* most header bytes accepted per response */

/* Parses "http://A.B.C.D:PORT" (or "http://localhost:PORT"; a trailing "/" is allowed; the
 * port defaults to 80) into *addr and writes "A.B.C.D:PORT" into host (for the Host header).
 * Anything else (https, names other than localhost, IPv6, userinfo, a path) is rejected with
 * INFERD_EINVAL and a message that says what is supported. */
int inferd_loadgen_http_parse_url(const char *url, struct sockaddr_in *addr /* out */,
                                  char *host /* out */, size_t host_cap, inferd_error *err);

/* Formats a complete request into a new buffer (allocated with inferd_malloc; the caller frees
 * it with inferd_free) and stores its length in *out_len. extra_headers, if not NULL, is
 * zero or more "Name: value\r\n" lines added as they are. A body (body_len > 0, or method not
 * GET/HEAD) gets a Content-Length header. Returns 0, or INFERD_EINTERNAL when out of memory. */
int inferd_loadgen_http_format_request(const char *method, const char *host, const char *path,
                                       const char *extra_headers, const void *body, size_t body_len,
                                       char **out /* out */, size_t *out_len /* out */,
                                       inferd_error *err);

typedef struct inferd_loadgen_http_parser {
    /* Results, valid once inferd_loadgen_http_parse returned 1. */
    int status;             /* e.g. 200 */
    int keep_alive;         /* the connection may carry another request */
    int chunked;            /* the body came chunked */
    int64_t content_length; /* -1 when the response had none */
    uint64_t body_bytes;    /* body bytes seen (after de-chunking) */
    char *body;             /* with keep_body: the body, NUL-terminated; else NULL */
    size_t body_len;

    /* Private state. */
    int state;
    int minor;    /* HTTP/1.minor of the response */
    int saw_conn; /* 0 none, 1 close, 2 keep-alive */
    int64_t remaining;
    size_t header_bytes;
    int keep_body;
    size_t max_body;
    size_t body_cap;
    size_t line_len;
    char line[INFERD_LOADGEN_HTTP_MAX_LINE];
} inferd_loadgen_http_parser;

/* Prepares p for a response. With keep_body, body bytes are collected into p->body up to
 * max_body bytes (more is an INFERD_ETOOLARGE error); without it they are only counted. The
 * caller owns p and must call deinit to free a kept body. */
void inferd_loadgen_http_parser_init(inferd_loadgen_http_parser *p, int keep_body, size_t max_body);
/* Prepares p for the next response on the same connection, keeping its body buffer. */
void inferd_loadgen_http_parser_reset(inferd_loadgen_http_parser *p);
void inferd_loadgen_http_parser_deinit(inferd_loadgen_http_parser *p);

/* Feeds len bytes. Returns 1 when the response is complete (*consumed tells how many bytes
 * it used; the rest belong to whatever follows), 0 when it needs more bytes (all were
 * consumed), or a negative INFERD_E* code for a malformed or oversized response, after which
 * the connection must be dropped. */
int inferd_loadgen_http_parse(inferd_loadgen_http_parser *p, const char *data, size_t len,
                              size_t *consumed /* out */, inferd_error *err);

/* Tells p the server closed the connection. Returns 1 when that completes the response (a
 * body delimited by the close), or INFERD_EUNAVAIL when the response was cut short. */
int inferd_loadgen_http_parse_eof(inferd_loadgen_http_parser *p, inferd_error *err);

/* True once the parser has seen at least one byte of the current response. */
int inferd_loadgen_http_parser_started(const inferd_loadgen_http_parser *p);

/* Sends one request (bytes as made by inferd_loadgen_http_format_request) on a new blocking
 * connection to addr and reads the response into p (which should keep its body), all within
 * timeout_ms. Returns 0 with p complete, or a negative code: INFERD_EUNAVAIL when the server
 * cannot be reached or closes early, INFERD_ECANCELLED on timeout, or the parser's error. */
int inferd_loadgen_http_roundtrip(const struct sockaddr_in *addr, const char *request,
                                  size_t request_len, int timeout_ms, inferd_loadgen_http_parser *p,
                                  inferd_error *err);

#endif
