/* server.h: the HTTP/1.1 listener. Knows nothing of models: it hands complete requests to one
 * handler and sends back whatever is answered, now or later, from any thread.
 *
 * DESIGN
 * libmicrohttpd runs `threads` polling threads (poll or epoll, keep-alive) that accept, read
 * headers and bodies, and call the handler once per request with the whole body in memory. The
 * handler either answers at once (health, metadata, /metrics, errors) or keeps the request and
 * returns; the connection is then suspended, so a waiting request holds no thread. Whoever
 * holds the request later calls inferd_http_respond exactly once, from any thread (a worker
 * finishing a batch): the response is stored and the connection resumed, and a polling
 * thread sends it. The HTTP threads never wait for inference.
 *
 * Limits: a body over max_body is refused with 413 before it is read when Content-Length says
 * so (otherwise read and discarded, then 413); the request line and headers must fit the
 * per-connection buffer of max_header bytes (else libmicrohttpd answers 431); at most
 * max_connections connections, and at most max_per_ip from one address when set (more are
 * accepted and closed at once); a connection idle for timeout_s seconds is closed, and a body
 * that takes more than body_timeout_s in total to arrive closes its connection (slow-loris
 * uploads). Suspended connections are exempt from the idle timeout: they wait for us.
 *
 * Polling: poll(2) by default. Each request suspends and resumes its connection, and with
 * epoll both are an epoll_ctl call: poll drops those two system calls (and the read that
 * ends in EAGAIN), ~15% of the server's CPU a request on the tiny MLP (bench/RESULTS.md).
 * poll's cost grows with the connections each thread watches, so above 1024 connections
 * (or when asked) epoll is used.
 *
 * Threads: `threads` libmicrohttpd threads (a pool when threads > 1, else one), no others.
 * Only this module includes microhttpd.h.
 */
#ifndef INFERD_HTTP_SERVER_H
#define INFERD_HTTP_SERVER_H

#include <stddef.h>
#include <stdint.h>

#include "util/error.h"

typedef struct inferd_http_server inferd_http_server;
typedef struct inferd_http_request inferd_http_request;

/* Called on an HTTP thread once per complete request. Must not block on anything slow; must
 * make sure inferd_http_respond is called exactly once for req (now or later). */
typedef void (*inferd_http_handler_fn)(void *user, inferd_http_request *req);

typedef struct inferd_http_options {
    const char *host;    /* numeric IPv4 or IPv6 address or a host name; NULL: 127.0.0.1 */
    int port;            /* 0: any free port (see inferd_http_server_port) */
    int threads;         /* polling threads, >= 1 */
    size_t max_body;     /* bytes; larger bodies get 413 */
    size_t max_header;   /* per-connection buffer for the request line and headers, bytes */
    int max_connections; /* simultaneous connections */
    int max_per_ip;      /* simultaneous connections from one IP address; 0: no limit */
    int use_epoll;       /* 1: epoll; 0: poll; -1: poll up to 1024 connections, else epoll */
    int timeout_s;       /* idle connection timeout, seconds; 0: none */
    int body_timeout_s;  /* time allowed for a whole body to arrive, seconds; 0: none */
    inferd_http_handler_fn handler;
    void *user;
} inferd_http_options;

/* Binds, listens and starts the polling threads. On success *out is the caller's
 * (inferd_http_server_destroy). Main thread. */
int inferd_http_server_create(const inferd_http_options *opts, inferd_http_server **out,
                              inferd_error *err);

/* The port actually bound. Any thread. */
int inferd_http_server_port(const inferd_http_server *s);

/* Stops accepting connections (the listening socket is closed); open connections are still
 * served, and every response from now on closes its connection. Main thread, once. */
void inferd_http_server_quiesce(inferd_http_server *s);

/* Requests received and not yet fully answered (sent or abandoned). Any thread. */
int inferd_http_server_active(const inferd_http_server *s);

/* Waits until no request is active, at most timeout_ms; returns 0, or INFERD_EUNAVAIL on
 * timeout. Never from an HTTP thread. */
int inferd_http_server_wait_idle(inferd_http_server *s, int64_t timeout_ms);

/* Stops the polling threads, closes every connection and frees s. No request may be waiting
 * for inferd_http_respond (libmicrohttpd aborts on suspended connections at stop): drain
 * first. NULL does nothing. Main thread. */
void inferd_http_server_destroy(inferd_http_server *s);

/* Request accessors. The strings and the body stay valid until inferd_http_respond is called
 * for req. method and path: any thread holding req. header and query: only inside the handler
 * (they read libmicrohttpd's connection state); names are case-insensitive for headers. */
const char *inferd_http_request_method(const inferd_http_request *req);
const char *inferd_http_request_path(const inferd_http_request *req);
const char *inferd_http_request_header(const inferd_http_request *req, const char *name);
const char *inferd_http_request_query(const inferd_http_request *req, const char *key);
/* The whole body (NULL with *len 0 when there is none). */
const uint8_t *inferd_http_request_body(const inferd_http_request *req, size_t *len);
/* Monotonic time (inferd_now_ns) when the request's headers arrived. */
int64_t inferd_http_request_arrival_ns(const inferd_http_request *req);

/* Answers req: status, content type (NULL: application/json), body and extra headers.
 * Ownership of body (from inferd_malloc, or NULL when len is 0) passes to the server, which
 * frees it with inferd_free after sending, also when this call fails to build the response
 * (out of memory; the connection is then closed). headers: NULL, or name, value, name,
 * value, ..., NULL; copied. Exactly once per request given to the handler; any thread, inside
 * the handler or later. After it returns, req must not be touched. */
void inferd_http_respond(inferd_http_request *req, int status, const char *content_type, void *body,
                         size_t len, const char *const *headers);

/* As inferd_http_respond with text (NUL-terminated) as the body, copied by libmicrohttpd: for
 * answers that must go out when inferd's allocations fail. */
void inferd_http_respond_text(inferd_http_request *req, int status, const char *content_type,
                              const char *text);

/* Answers 503 with a fixed JSON error saying the server is out of memory; allocates nothing of
 * inferd's. For when even the error message cannot be built. */
void inferd_http_respond_no_memory(inferd_http_request *req);

#endif
