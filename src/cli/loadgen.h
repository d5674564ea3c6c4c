/* loadgen.h: the load generator behind `inferd bench`: sends one prepared HTTP request over
 * and over to a server on many keep-alive connections and measures the latencies.
 *
 * DESIGN. One thread drives every connection with nonblocking sockets and edge-triggered epoll,
 * because the generator shares a 2-core machine with the server it measures and must cost
 * little: a request is one send(2) of bytes prepared once, a response usually one recv(2)
 * into a shared buffer, parsed incrementally (cli/loadgen_http.h) and discarded.
 *
 * Closed loop (INFERD_LOADGEN_MODE_CLOSED): `concurrency` connections, each with one request
 * outstanding; a connection sends its next request as soon as a response arrives, and latency
 * runs from that send.
 *
 * Open loop (INFERD_LOADGEN_MODE_OPEN): requests are due at a fixed rate (or with exponential
 * gaps, `poisson`) whether or not earlier ones finished. A due request goes out on an idle
 * connection, or on a new one while fewer than `max_connections` are open; otherwise it is
 * counted as dropped. Latency runs from the time the request was due, not from when it was
 * sent, so a slow server or a late generator cannot hide queueing (coordinated omission).
 *
 * Timeline: warmup for warmup_s (nothing counted in the result), then duration_s measured;
 * then no new requests, and those in flight get up to timeout_s to finish. The measured
 * duration ends at the later of the last measured response and the end of the window.
 *
 * A keep-alive connection the server closed while idle fails the next request before any byte
 * of response; such a request is retried once on a new connection without counting an error,
 * as browsers and HTTP libraries do. Transport failures (refused connections, resets, bad
 * responses, timeouts) close the connection; in the closed loop it reconnects after 20 ms.
 */
#ifndef INFERD_CLI_LOADGEN_H
#define INFERD_CLI_LOADGEN_H

#include <netinet/in.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#include "util/error.h"
#include "util/hist.h"

typedef enum inferd_loadgen_mode {
    INFERD_LOADGEN_MODE_CLOSED = 0,
    INFERD_LOADGEN_MODE_OPEN = 1,
} inferd_loadgen_mode;

typedef enum inferd_loadgen_tick_kind {
    INFERD_LOADGEN_TICK_SECOND = 0,        /* one more second elapsed */
    INFERD_LOADGEN_TICK_MEASURE_START = 1, /* warmup over: the measured window starts now */
} inferd_loadgen_tick_kind;

/* What the progress callback sees. Counts marked "all" include warmup. */
typedef struct inferd_loadgen_tick {
    inferd_loadgen_tick_kind kind;
    double elapsed_s;       /* since the run started */
    int warmup;             /* the second was (at least partly) warmup */
    uint64_t responses_all; /* responses so far, all */
    uint64_t responses;     /* responses during this second */
    double qps;             /* responses per second during this second */
    int64_t p99_ns;         /* p99 latency of this second's responses, 0 when none */
    uint64_t errors_all;    /* non-2xx responses and transport failures so far, all */
    int connections;        /* connections open now */
} inferd_loadgen_tick;

typedef struct inferd_loadgen_config {
    struct sockaddr_in addr; /* server */
    const char *request;     /* complete HTTP/1.1 request, sent as-is each time; the caller
                                keeps it alive until run returns */
    size_t request_len;
    inferd_loadgen_mode mode;
    int concurrency;     /* closed loop: connections (>= 1) */
    double rate;         /* open loop: requests per second (> 0) */
    int poisson;         /* open loop: exponential gaps instead of fixed ones */
    int max_connections; /* open loop: most connections open at once (>= 1) */
    double duration_s;   /* measured seconds (> 0) */
    double warmup_s;     /* seconds before measuring (>= 0) */
    double timeout_s;    /* per request, and for the final drain (> 0) */
    uint64_t seed;       /* Poisson gaps */
    /* Called from the run's thread at each tick; may be NULL. */
    void (*on_tick)(const inferd_loadgen_tick *tick, void *user);
    void *user;
    /* When not NULL and set nonzero (for example by a SIGINT handler), the run stops sending
     * and drains as if the duration were over. */
    const volatile sig_atomic_t *stop;
} inferd_loadgen_config;

#define INFERD_LOADGEN_MAX_STATUS 600

/* The measured window's results. */
typedef struct inferd_loadgen_result {
    uint64_t sent;                              /* requests sent */
    uint64_t responses;                         /* complete responses, any status */
    uint64_t ok;                                /* 2xx responses */
    uint64_t status[INFERD_LOADGEN_MAX_STATUS]; /* responses by status code */
    uint64_t connect_errors;                    /* connections refused or failed */
    uint64_t io_errors;                         /* resets, closes, malformed responses */
    uint64_t timeouts;                          /* requests over timeout_s */
    uint64_t dropped;                           /* open loop: due but no connection free */
    uint64_t retries;                           /* silent retries after idle closes */
    double duration_s;                          /* measured seconds */
    int connections_max;                        /* most connections open at once */
    double client_cpu_percent;                  /* this process's CPU while measuring */
    inferd_hist *latency; /* every complete response, ns; owned by the result */
} inferd_loadgen_result;

/* Runs the load described by cfg (validated here: INFERD_EINVAL for bad values) and fills
 * *out, which the caller releases with inferd_loadgen_result_deinit (also after a failure).
 * Blocks for warmup + duration (+ drain). Returns 0 when the run completed, whatever the
 * server answered; negative codes are for failures of the generator itself (out of memory,
 * epoll). Call from one thread at a time; SIGPIPE is avoided per send, so no handler is
 * needed. */
int inferd_loadgen_run(const inferd_loadgen_config *cfg, inferd_loadgen_result *out /* out */,
                       inferd_error *err);

void inferd_loadgen_result_deinit(inferd_loadgen_result *r);

/* Sum of non-2xx responses and transport failures in r. */
uint64_t inferd_loadgen_result_errors(const inferd_loadgen_result *r);

#endif
