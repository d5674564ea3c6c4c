/* repo.h: the model repository on disk, the registry of model versions the server serves, and
 * their residency: which versions are in memory, within a byte budget and a count.
 *
 * DESIGN
 * inferd_repo_create scans DIR/<model>/<version>/ (repo/scan.h): each model's optional
 * config.json, its version folders, the version policy. Every selected version gets a slot in
 * the registry. Slots are never loaded on an HTTP thread: a manager thread decides and loader
 * threads do the loading and unloading.
 *
 * States of a version (a slot):
 *
 *     UNLOADED --first request, pin, start-up, load API--> LOADING --ok--> READY
 *         ^                                                  |fail          |
 *         |                                                  v              | evicted (LRU),
 *         +------------------- UNLOADING <------------- UNAVAILABLE         | unload API,
 *                            (drains, then                (reason)          | retired
 *                             unloads)  <---------------------------------- +
 *
 * Without a budget (--memory-budget) or a count (--max-loaded) every selected version is
 * loaded at start, newest first, as inferd always did. With either, versions load when first
 * requested (and at start when config.json says "pinned": true), and before a load the
 * manager evicts least recently used versions until the new one fits (repo/residency.h:
 * never a pinned version, never one with a request in flight; a version that could never fit
 * is refused with the reason, not thrashed). What a version holds is what it allocated
 * through its own memory account (weights, packed weights or the mapped load cache, plans,
 * arenas, tokenizer tables), read live.
 *
 * A request for a version that is not in memory is parked (inferd_repo_acquire_or_park): no
 * thread waits, the caller's HTTP connection stays suspended, a load is scheduled, and when
 * the version is READY every parked request gets a reference through its callback, on the
 * loader thread that finished the load. If the load fails they get the reason; if their
 * deadline passes first they get INFERD_EUNAVAIL at the deadline (the manager's timer).
 *
 * Loaded versions are refcounted (inferd_repo_version). The registry holds one reference on
 * the version a slot serves; every request holds one from acquire to release; a running
 * batch holds one through its queue's model retain/release. A version is evicted only when
 * the registry's reference is the only one left, and a retired version (replaced by a new
 * one, its folder deleted, unloaded by request) keeps serving the requests that hold it,
 * then drains: the loader frees it once they are done. So no request ever sees its version
 * go away, and no unload ever runs on an HTTP or worker thread.
 *
 * Version switches (--poll-interval, or the load API): a new version folder is loaded beside
 * the serving one, warmed up (a run with inputs from config.json "warmup" or generated from
 * the model's inputs; for a pipeline a short text), and then becomes the default in one step
 * under the registry lock, model and pipeline together. The version it replaces keeps the
 * requests already on it, drains and unloads. A version that fails to load or warm up is
 * UNAVAILABLE with the reason and the old one keeps serving. A version whose folder is
 * deleted drains without failing a request (its mapped files stay valid while mapped).
 * A changed config.json or model file reloads the version the same way.
 *
 * Threads: the caller's (create, start, destroy), one manager thread ("inferd-resid": timers,
 * polling, admission and eviction decisions; it never loads), loader threads
 * ("inferd-loader", --loader-threads: loads, warm-ups and unloads, at --worker-nice), and any
 * thread for lookups, which take the registry lock for a few list operations and never wait
 * for a load.
 *
 * Lock order: inferd_repo.lock is the last lock taken. Nothing is called with it held but
 * memory-account reads and small allocations: no callback, no scheduler call, no file I/O,
 * no model load or free. Parked requests' callbacks run after it is released.
 */
#ifndef INFERD_REPO_REPO_H
#define INFERD_REPO_REPO_H

#include <stddef.h>
#include <stdint.h>

#include "prep/pipeline.h"
#include "repo/config.h"
#include "repo/routes.h"
#include "sched/sched.h"
#include "sched/stats.h"
#include "util/alloc.h"
#include "util/error.h"
#include "util/hist.h"
#include "util/tensor.h"

typedef struct inferd_repo inferd_repo;
typedef struct inferd_repo_version inferd_repo_version;

typedef enum inferd_repo_state {
    INFERD_REPO_STATE_LOADING = 0,
    INFERD_REPO_STATE_READY = 1,
    INFERD_REPO_STATE_UNAVAILABLE = 2,
    INFERD_REPO_STATE_UNLOADED = 3,  /* known, not in memory; loads on demand unless held */
    INFERD_REPO_STATE_UNLOADING = 4, /* being evicted or draining before it is freed */
} inferd_repo_state;

/* A loaded model as the server sees it: its tensors and how to run and free it. The default
 * loader fills it from the backend (backend/backend.h); tests supply fakes. */
typedef struct inferd_repo_model {
    void *ctx;
    const char *platform; /* canonical platform name, static storage */
    int n_inputs, n_outputs;
    const inferd_tensor_desc *inputs, *outputs; /* owned by ctx; the repository copies them */
    /* As inferd_backend_run. Any thread, concurrently. */
    int (*run)(void *ctx, const inferd_tensor *inputs, inferd_tensor *outputs, int threads,
               inferd_error *err);
    void (*destroy)(void *ctx); /* no run in progress */
    int64_t (*memory)(void *ctx);
    int cache_hit;            /* the load came from the load cache */
    const char *cache_status; /* "hit", "miss (...), written", ...; NULL: no cache. Owned by
                                 ctx. */
} inferd_repo_model;

/* What a load is asked to do. */
typedef struct inferd_repo_load_args {
    const char *platform;     /* canonical platform name */
    const char *path;         /* the model file in the version folder */
    const char *cache_path;   /* the version's load cache file, or NULL: none */
    inferd_mem_account *acct; /* everything the model allocates is charged here */
    /* The tensors config.json declares ("inputs"/"outputs"), or none: required by TorchScript,
     * checked against the graph for ONNX (backend/backend.h). Valid during the call. */
    const inferd_tensor_desc *inputs;
    int n_inputs;
    const inferd_tensor_desc *outputs;
    int n_outputs;
} inferd_repo_load_args;

/* Loads a model into *out. Called on a loader thread; returns 0 or a negative code with err
 * filled. */
typedef int (*inferd_repo_load_fn)(void *user, const inferd_repo_load_args *args,
                                   inferd_repo_model *out, inferd_error *err);

typedef struct inferd_repo_options {
    const char *dir;          /* the repository folder */
    inferd_sched *sched;      /* queues for READY versions; NULL: versions get none (tests) */
    inferd_repo_load_fn load; /* NULL: load through the backend */
    void *load_user;
    int loader_nice;          /* nice increment for the loader threads, 0..19 */
    int loader_threads;       /* threads that load and unload; 0: 1 */
    int64_t memory_budget;    /* bytes resident versions may hold; 0: no budget */
    int max_loaded;           /* versions READY at once; 0: no limit */
    int on_demand;            /* load versions on first request (not at start); set by default
                                 when memory_budget or max_loaded is */
    int64_t poll_interval_ms; /* rescan the folder this often; 0: never */
    const char *cache_dir;    /* load caches go to cache_dir/<model>/<version>.cache; NULL:
                                 none */
} inferd_repo_options;

/* One row of the repository index. version 0 stands for the model as a whole (a model whose
 * config.json is invalid or which has no version folder). */
typedef struct inferd_repo_entry {
    char name[128];
    long version;
    inferd_repo_state state;
    char reason[256];       /* why UNAVAILABLE, UNLOADED or UNLOADING; notes on READY ones */
    int64_t resident_bytes; /* held in memory now (every copy: serving, loading, draining) */
    int pinned;
    int is_default;   /* requests without a version go here */
    int servable;     /* READY, or loads on demand when requested */
    int has_pipeline; /* the version loaded with a pipeline.json (as last loaded) */
    uint64_t loads, load_failures, evictions;
    double last_load_ms; /* load and warm-up of the last successful load; 0: never loaded */
} inferd_repo_entry;

/* Totals for /metrics. */
typedef struct inferd_repo_residency {
    int64_t budget; /* --memory-budget; 0: none */
    int64_t used;   /* bytes held by every loaded version (serving, loading, draining) */
    int max_loaded; /* 0: no limit */
    int loaded;     /* READY versions */
    uint64_t loads; /* successful loads */
    uint64_t load_failures;
    uint64_t evictions;  /* versions unloaded to make room */
    uint64_t unloads;    /* versions unloaded for any reason (evictions included) */
    uint64_t switches;   /* times a model's default version changed to a newly loaded one */
    uint64_t cache_hits; /* loads that mapped the load cache */
    uint64_t cache_misses;
    uint64_t heap_trims;        /* malloc_trim calls after unloads (at most one a second) */
    int parked;                 /* requests waiting for a load now */
    const inferd_hist *load_ns; /* load (and warm-up) durations; lives as long as the repo */
} inferd_repo_residency;

/* Scans dir and registers the selected versions (nothing is loaded yet). Fails only when dir
 * cannot be read; broken models are registered as UNAVAILABLE. On success *out is the
 * caller's (inferd_repo_destroy). Main thread, before inferd_repo_start. */
int inferd_repo_create(const inferd_repo_options *opts, inferd_repo **out, inferd_error *err);

/* Starts the manager and loader threads; the versions to load at start (all selected ones, or
 * with on_demand only pinned ones) are queued newest first. Main thread, once. */
int inferd_repo_start(inferd_repo *r, inferd_error *err);

/* Versions queued at start that have not been tried yet. Zero once each has loaded or failed:
 * the server is ready. Lock-free; any thread. */
int inferd_repo_loading(const inferd_repo *r);

/* Readiness, lock-free (any thread; the manager and loaders keep what it reads up to date).
 * strict: every model (not unloaded by request) has its default version loaded. Otherwise,
 * when some models are pinned: every pinned model has its default version loaded (unpinned
 * ones may still be loading); when none is: inferd_repo_loading is 0. A model counts as loaded
 * while a new version of it loads beside the serving one. When not ready and why is not NULL,
 * writes what is missing there ("1 pinned model(s) without ..."). */
int inferd_repo_ready(inferd_repo *r, int strict, char *why, size_t cap);

/* Per-team routes (config.json "routes"): the route for a request path, or 0 when there is
 * none. Rebuilt whenever a scan or a load request changes what a model's config.json declares
 * or which version serves: paths are unique across models (the model that served a path first
 * keeps it; at start the first by name), and a route whose version has no pipeline.json is
 * left out. Each refusal is logged and shown as the reason of the model's ready versions in
 * the index. Lock-free (repo/routes.h); any thread. out->stats is a reference to release. */
int inferd_repo_route(inferd_repo *r, const char *path, inferd_route *out);

/* Every route now served, as inferd_routes_list. Any thread. */
int inferd_repo_routes(inferd_repo *r, inferd_route **out, size_t *n, inferd_error *err);

/* Waits until inferd_repo_loading is 0 or timeout_ms passes; returns 0 or INFERD_EUNAVAIL.
 * For tests and tools; never call it from an HTTP thread. */
int inferd_repo_wait_loaded(inferd_repo *r, int64_t timeout_ms, inferd_error *err);

/* Shutdown, first step: requests that would park are refused from now on (INFERD_EUNAVAIL),
 * no new load starts except for requests already parked, and it waits (at most timeout_ms)
 * until every parked request has had its callback. Main thread, before the scheduler drains. */
void inferd_repo_drain(inferd_repo *r, int64_t timeout_ms);

/* Stops the threads (after the loads in progress; parked requests left get INFERD_EUNAVAIL),
 * drops the registry's references and frees r. Versions still referenced elsewhere live on
 * until released. NULL does nothing. Main thread, after the scheduler has drained. */
void inferd_repo_destroy(inferd_repo *r);

/* Looks up a READY version (version <= 0: the model's default version, the highest-numbered
 * one that is not unavailable or still switching in) and returns it with a new reference in
 * *out, released with inferd_repo_release. INFERD_ENOTFOUND for an unknown model or version,
 * INFERD_EUNAVAIL for one that is not READY (the reason in err). Never waits and never starts
 * a load. Any thread. */
int inferd_repo_acquire(inferd_repo *r, const char *model, long version, inferd_repo_version **out,
                        inferd_error *err);

/* Parking. */
#define INFERD_REPO_PARKED 1

/* Called once for a parked request: status 0 with a reference in v (the caller releases it),
 * or a negative code with err filled and v NULL. On a loader or the manager thread, with no
 * repository lock held; it may call anything in the repository. */
typedef void (*inferd_repo_ready_fn)(void *user, inferd_repo_version *v, int status,
                                     const inferd_error *err);

/* A parked request, allocated by the caller (inside its request object). Set the "in" fields;
 * the rest is the repository's while parked. */
typedef struct inferd_repo_waiter {
    /* in */
    inferd_repo_ready_fn done;
    void *user;
    int64_t deadline_ns; /* monotonic; 0: now + the version's default_timeout_us, or never */
    /* private */
    struct inferd_repo_waiter *next_;
    char model_[128];
    long version_; /* as asked: 0 for the model's default */
    int64_t parked_ns_;
    inferd_repo_version *v_; /* the result, until done is called */
    int status_;
    inferd_error err_;
} inferd_repo_waiter;

/* As inferd_repo_acquire, but a version that is not in memory (or is loading) is loaded:
 * returns INFERD_REPO_PARKED and w->done is called exactly once later (see
 * inferd_repo_ready_fn), with w owned by the repository until then. Returns 0 with *out set
 * when the version is READY now (w unused), or a negative code (w unused, done never called).
 * Never waits. Any thread. */
int inferd_repo_acquire_or_park(inferd_repo *r, const char *model, long version,
                                inferd_repo_waiter *w, inferd_repo_version **out,
                                inferd_error *err);

/* Whether a request for model/version would be served: 0 when the version is READY or can
 * be loaded on demand (*number says which version), INFERD_ENOTFOUND, or INFERD_EUNAVAIL with
 * the reason. Starts nothing. Any thread. */
int inferd_repo_probe(inferd_repo *r, const char *model, long version, long *number,
                      inferd_error *err);

/* POST /v2/repository/models/{m}/load: rescans the model's folder (config.json, versions),
 * lifts an unload by request, and loads every selected version (changed ones beside the old,
 * then switched). Always completes through w: status 0 once every selected version is READY
 * (v NULL), or the first failure's reason. Returns INFERD_REPO_PARKED, or a negative code
 * (a name that cannot be a model folder) with done never called. Any thread. */
int inferd_repo_request_load(inferd_repo *r, const char *model, inferd_repo_waiter *w,
                             inferd_error *err);

/* POST /v2/repository/models/{m}/unload: every version of the model stops taking new requests
 * (INFERD_EUNAVAIL "unloaded") and drains and unloads in the background; a later load
 * brings it back. Returns 0 or INFERD_ENOTFOUND. Any thread. */
int inferd_repo_request_unload(inferd_repo *r, const char *model, inferd_error *err);

/* Takes another reference on v. Any thread. */
void inferd_repo_retain(inferd_repo_version *v);

/* Drops a reference. NULL does nothing. Any thread, without other inferd locks held. */
void inferd_repo_release(inferd_repo_version *v);

/* Accessors of a referenced version. The returned pointers live as long as the reference;
 * everything they point to is fixed once the version is READY. Any thread. */
const char *inferd_repo_version_name(const inferd_repo_version *v);
long inferd_repo_version_number(const inferd_repo_version *v);
const inferd_repo_model *inferd_repo_version_model(const inferd_repo_version *v);
/* The config.json this copy of the version was loaded with. */
const inferd_config *inferd_repo_version_config(const inferd_repo_version *v);
/* Effective max batch: config.json's max_batch_size, or 0 when the model has no dynamic batch
 * dim and config.json did not ask for batching. */
int inferd_repo_version_max_batch(const inferd_repo_version *v);
inferd_sched_queue *inferd_repo_version_queue(const inferd_repo_version *v);
/* The version's text pipeline (pipeline.json), or NULL when its folder has none. */
const inferd_pipeline *inferd_repo_version_pipeline(const inferd_repo_version *v);
/* Whether the version's queue pads dynamic dims (config.json's pad_dims, or the default). */
int inferd_repo_version_pads(const inferd_repo_version *v);
/* Request counters and histograms of the version; they outlive evictions and reloads. */
inferd_stats *inferd_repo_version_stats(inferd_repo_version *v);
/* Bytes charged to this copy of the version (weights, plans, arenas, pipeline). */
int64_t inferd_repo_version_memory(const inferd_repo_version *v);

/* Copies the index (every model and version with its state) into a new array, sorted by name
 * then version. The caller frees *out with inferd_free. Any thread; never waits for a load. */
int inferd_repo_index(inferd_repo *r, inferd_repo_entry **out, size_t *n, inferd_error *err);

/* Every READY version, each with a new reference (release each, then inferd_free the array).
 * Sorted by name then version. Any thread. */
int inferd_repo_list_ready(inferd_repo *r, inferd_repo_version ***out, size_t *n,
                           inferd_error *err);

/* Fills *out with the residency totals. Any thread. */
void inferd_repo_residency_stats(inferd_repo *r, inferd_repo_residency *out);

#endif
