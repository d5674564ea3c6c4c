/* repo.h: the model repository on disk and the registry of model versions the server serves.
 *
 * DESIGN
 * inferd_repo_create scans DIR/<model>/<version>/ once: it reads each model's optional
 * config.json, applies the version policy, and registers every selected version in state
 * LOADING (or UNAVAILABLE with a reason: bad config.json, no version folders, a specific
 * version whose folder is missing). inferd_repo_start then loads the versions one by one on a
 * single loader thread (never an HTTP thread), newest version of each model first. A version
 * that loads becomes READY with its own scheduler queue; one that fails becomes UNAVAILABLE
 * with the reason, which is logged and shown in the repository index, and the other models
 * carry on.
 *
 * A version folder that holds pipeline.json is a text model: its pipeline (tokenizer, labels)
 * is loaded on the loader thread right after the model, checked against the model's inputs and
 * outputs, and charged to the version's memory account. A pipeline that does not fit its model
 * makes the version UNAVAILABLE with the pipeline's reason, like a broken model file. Model and
 * pipeline live in the one version object, so whoever holds a version holds both: a request
 * can never run one version's model with another's preprocessing, and whatever makes a new
 * version the default switches both at once. Such a version's queue pads along the sequence
 * dim by default when the pipeline feeds an attention mask (config.json's pad_dims overrides),
 * filling input_ids with the pipeline's pad id.
 *
 * Versions are refcounted (inferd_repo_version). The registry holds one reference; every
 * request in flight holds one from inferd_repo_acquire to inferd_repo_release; a running
 * batch holds one through its queue's model retain/release. The last release destroys the
 * queue, the loaded model and the version, on whatever thread drops it. The set of models and
 * versions is fixed by the scan, and each version's state is an atomic published after its
 * model and queue are in place, so lookups are a binary search and a reference increment with
 * no lock at all: lookups, health and metadata never wait for a load. (#5's hot switch will
 * need a lock or RCU around the arrays; the loader already never holds one while loading.)
 *
 * Kept open for #5 (memory budget, LRU residency, polling, hot version switch): each version
 * has its own memory account and state machine, and the registry's reference is the one an
 * eviction or a switch would drop.
 *
 * Lock order: inferd_repo.lock (the loader's stop flag and wake-up), then nothing: model
 * loads, queue creation and version destruction all happen without it.
 */
#ifndef INFERD_REPO_REPO_H
#define INFERD_REPO_REPO_H

#include <stddef.h>
#include <stdint.h>

#include "prep/pipeline.h"
#include "repo/config.h"
#include "sched/sched.h"
#include "sched/stats.h"
#include "util/alloc.h"
#include "util/error.h"
#include "util/tensor.h"

typedef struct inferd_repo inferd_repo;
typedef struct inferd_repo_version inferd_repo_version;

typedef enum inferd_repo_state {
    INFERD_REPO_STATE_LOADING = 0,
    INFERD_REPO_STATE_READY = 1,
    INFERD_REPO_STATE_UNAVAILABLE = 2,
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
} inferd_repo_model;

/* Loads the model file at path for the named platform into *out, charging acct. Called on the
 * loader thread; returns 0 or a negative code with err filled. */
typedef int (*inferd_repo_load_fn)(void *user, const char *platform, const char *path,
                                   inferd_mem_account *acct, inferd_repo_model *out,
                                   inferd_error *err);

typedef struct inferd_repo_options {
    const char *dir;          /* the repository folder */
    inferd_sched *sched;      /* queues for READY versions; NULL: versions get none (tests) */
    inferd_repo_load_fn load; /* NULL: load through the backend */
    void *load_user;
    int loader_nice; /* nice increment for the loader thread, 0..19 */
} inferd_repo_options;

/* One row of the repository index. version 0 stands for the model as a whole (a model whose
 * config.json is invalid or which has no version folder). */
typedef struct inferd_repo_entry {
    char name[128];
    long version;
    inferd_repo_state state;
    char reason[256]; /* why UNAVAILABLE; "" otherwise */
} inferd_repo_entry;

/* Scans dir and registers the selected versions (nothing is loaded yet). Fails only when dir
 * cannot be read; broken models are registered as UNAVAILABLE. On success *out is the
 * caller's (inferd_repo_destroy). Main thread, before inferd_repo_start. */
int inferd_repo_create(const inferd_repo_options *opts, inferd_repo **out, inferd_error *err);

/* Starts the loader thread. Main thread, once. */
int inferd_repo_start(inferd_repo *r, inferd_error *err);

/* Versions still LOADING. Zero once the loader has tried every version: the server is ready.
 * Lock-free; any thread. */
int inferd_repo_loading(const inferd_repo *r);

/* Waits until inferd_repo_loading is 0 or timeout_ms passes; returns 0 or INFERD_EUNAVAIL.
 * For tests and tools; never call it from an HTTP thread. */
int inferd_repo_wait_loaded(inferd_repo *r, int64_t timeout_ms, inferd_error *err);

/* Stops the loader (after the load in progress), drops the registry's references and frees
 * r. Versions still referenced elsewhere live on until released. NULL does nothing. Main
 * thread, after the scheduler has drained. */
void inferd_repo_destroy(inferd_repo *r);

/* Looks up a READY version (version <= 0: the highest-numbered READY version) and returns it
 * with a new reference in *out, released with inferd_repo_release. INFERD_ENOTFOUND for an
 * unknown model or version, INFERD_EUNAVAIL for one that is loading or failed (the reason in
 * err). Never waits for a load. Any thread. */
int inferd_repo_acquire(inferd_repo *r, const char *model, long version, inferd_repo_version **out,
                        inferd_error *err);

/* Takes another reference on v. Any thread. */
void inferd_repo_retain(inferd_repo_version *v);

/* Drops a reference; the last one frees the version's queue, model and memory. NULL does
 * nothing. Any thread, without other inferd locks held. */
void inferd_repo_release(inferd_repo_version *v);

/* Accessors of a referenced version. The returned pointers live as long as the reference;
 * everything they point to is fixed once the version is READY. Any thread. */
const char *inferd_repo_version_name(const inferd_repo_version *v);
long inferd_repo_version_number(const inferd_repo_version *v);
const inferd_repo_model *inferd_repo_version_model(const inferd_repo_version *v);
const inferd_config *inferd_repo_version_config(const inferd_repo_version *v);
/* Effective max batch: config.json's max_batch_size, or 0 when the model has no dynamic batch
 * dim and config.json did not ask for batching. */
int inferd_repo_version_max_batch(const inferd_repo_version *v);
inferd_sched_queue *inferd_repo_version_queue(const inferd_repo_version *v);
/* The version's text pipeline (pipeline.json), or NULL when its folder has none. */
const inferd_pipeline *inferd_repo_version_pipeline(const inferd_repo_version *v);
/* Whether the version's queue pads dynamic dims (config.json's pad_dims, or the default). */
int inferd_repo_version_pads(const inferd_repo_version *v);
inferd_stats *inferd_repo_version_stats(inferd_repo_version *v);
/* Bytes charged to the version (weights, plans, arenas). */
int64_t inferd_repo_version_memory(const inferd_repo_version *v);

/* Copies the index (every model and version with its state) into a new array, sorted by name
 * then version. The caller frees *out with inferd_free. Any thread; never waits for a load. */
int inferd_repo_index(inferd_repo *r, inferd_repo_entry **out, size_t *n, inferd_error *err);

/* Every READY version, each with a new reference (release each, then inferd_free the array).
 * Sorted by name then version. Any thread. */
int inferd_repo_list_ready(inferd_repo *r, inferd_repo_version ***out, size_t *n,
                           inferd_error *err);

#endif
