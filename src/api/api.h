/* api.h: the HTTP routes of inferd: KServe v2 (as Triton speaks it), the repository index and
 * Prometheus metrics. This is the handler the HTTP server calls for every request.
 *
 *   GET  /v2/health/live                      200 {"live": true}
 *   GET  /v2/health/ready                     200 {"ready": true}, or 400 while loading/draining
 *   GET  /live, GET /ready                    200 "ok", or 503 "not ready: <what is missing>"
 *   GET  /v2                                  server metadata: name, version, extensions
 *   GET  /v2/models/{m}[/versions/{v}]        model metadata (from the ONNX graph)
 *   GET  /v2/models/{m}[/versions/{v}]/ready  200, 400 (not ready, with the reason) or 404
 *   POST /v2/models/{m}[/versions/{v}]/infer  inference (JSON or binary tensors; with a
 *                                             pipeline, also the text signature)
 *   POST /v1/models/{m}[/versions/{v}]:predict  texts in, labels out (textreq.h)
 *   POST /v2/repository/index                 [{"name", "version", "state", "reason",
 *                                              "resident_bytes"}]; {"ready": true} filters
 *   POST /v2/repository/models/{m}/load       rescan and load the model (403 unless allowed)
 *   POST /v2/repository/models/{m}/unload     drain and unload the model (403 unless allowed)
 *   GET  /metrics                             Prometheus text
 *   POST <route path>                         a per-team route from a config.json "routes"
 *                                             (repo/config.h): texts in, labels out, in the
 *                                             route's own JSON shape
 *
 * DESIGN
 * Everything but infer is answered on the HTTP thread from atomics, lock-free lookups and
 * copies, so health and metrics never wait for a queue, a batch or a load. Infer takes a
 * reference on the model version, parses and validates (untrusted input is refused with
 * 400/404/413 naming the field), and submits to the version's queue; the connection is then
 * suspended. A small body is parsed on the HTTP thread; a request with more than
 * offload_bytes of JSON goes to a worker as it is (a job on the compute thread budget, ahead of
 * batches), which takes the version, parses, tokenizes and submits, so that a few
 * multi-megabyte bodies cannot hold every HTTP thread for tenths of a second while health
 * checks wait behind them. The worker that runs the batch formats
 * the response and answers through inferd_http_respond, then drops the reference. Admission
 * refusals (429, 503) are answered at once, from the HTTP thread. Error statuses come from
 * api/status.c only.
 *
 * A request for a version that is not in memory (on-demand loading, after an eviction) is
 * parked in the repository with its deadline (parameters.timeout, else the model's default
 * timeout): the connection stays suspended and no thread waits. When the version is READY the
 * request continues on the loader thread that loaded it (parse, tokenize, submit) with what
 * is left of its timeout; if the load fails or the deadline passes it gets 503 with the
 * reason. Only a request that must wait pays for reading its timeout ahead of the parse.
 *
 * Readiness (/ready, /v2/health/ready) is inferd_repo_ready: the pinned models' default
 * versions loaded (or, when none is pinned, every start-up load tried; with strict_readiness
 * every model's default version loaded), and false from inferd_api_set_draining on.
 *
 * A per-team route is looked up (lock-free) only when no built-in path matches; its request
 * then goes exactly the way of a /v1 predict to the route's model (and fixed version, if it
 * names one): parked while the version loads, tokenized (on the HTTP thread or, when large,
 * a worker), texts to the
 * batcher, the same errors (400 naming the route's field), counted in the version's metrics
 * and in the route's own counters. The answer carries Inferd-Model and Inferd-Model-Version
 * headers, since the team's JSON shape has no room for them.
 *
 * Text requests (/v1 predict, or KServe infer naming an input "text" on a version with a
 * pipeline) take the same reference on the version, so the texts are tokenized with that
 * version's pipeline and run on that version's model. The HTTP thread (or, for a large body,
 * a worker) parses the texts and tokenizes them (textcall.h), and the texts go to the batcher one
 * request each; the worker that finishes the last one formats the predictions and answers.
 */
#ifndef INFERD_API_API_H
#define INFERD_API_API_H

#include "api/textreq.h"
#include "http/server.h"
#include "repo/repo.h"
#include "sched/sched.h"
#include "util/error.h"

typedef struct inferd_api inferd_api;

typedef struct inferd_api_options {
    inferd_repo *repo;                 /* borrowed; outlives the api */
    inferd_sched *sched;               /* borrowed; for /metrics; may be NULL */
    inferd_textreq_limits text_limits; /* texts per request, bytes per text; 0: defaults */
    int allow_repository_control;      /* load and unload through the API; else 403 */
    int strict_readiness; /* ready once every model's default version is loaded (repo.h) */
    /* A request whose JSON (the body, or its header part with binary tensors) is larger than
     * this is parsed and tokenized on a worker (inferd_sched_post), not on the HTTP thread;
     * 0: every request with a body; -1: none. Needs sched. Serve's default:
     * INFERD_API_DEFAULT_OFFLOAD_BYTES. */
    long long offload_bytes;
} inferd_api_options;

/* 64 KiB of JSON takes ~3 ms to parse here: below that a hand-off to a worker (two thread
 * wake-ups) costs more than it saves. */
#define INFERD_API_DEFAULT_OFFLOAD_BYTES (64LL << 10)

/* On success *out is the caller's (inferd_api_destroy). Main thread. */
int inferd_api_create(const inferd_api_options *opts, inferd_api **out, inferd_error *err);

/* Frees a; no request may be in flight. NULL does nothing. Main thread. */
void inferd_api_destroy(inferd_api *a);

/* From now on readiness answers "not ready" and new infer requests get 503: the server is
 * shutting down. Any thread. */
void inferd_api_set_draining(inferd_api *a);

/* The inferd_http_handler_fn: user is the inferd_api. HTTP threads. */
void inferd_api_handle(void *user, inferd_http_request *req);

#endif
