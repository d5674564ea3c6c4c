/* copy.h: turning a version folder into a loaded copy of the version, and freeing it again.
 * Internal to repo/ (repo.c calls it on its loader threads).
 *
 * One call does everything a copy needs before it can serve, without any repository lock:
 * the model through the backend (or a test's loader) with the version's load cache, the
 * repository's own copies of the model's tensor descriptions, the folder's pipeline.json
 * checked against the model, the effective max batch and padding, the warm-up run when asked
 * for, and last the scheduler queue (so a copy that fails never had a queue). Everything it
 * allocates is charged to the account it is given, so the memory budget sees it.
 *
 * Threads: any (the repository's loader threads); no shared state.
 */
#ifndef INFERD_REPO_COPY_H
#define INFERD_REPO_COPY_H

#include "prep/pipeline.h"
#include "repo/config.h"
#include "repo/repo.h"
#include "sched/sched.h"
#include "sched/stats.h"
#include "util/alloc.h"
#include "util/error.h"

/* A loaded copy. Fixed once inferd_copy_load returns 0. */
typedef struct inferd_copy {
    inferd_repo_model model;              /* its inputs/outputs point at the copies below */
    inferd_tensor_desc *inputs, *outputs; /* copies, names owned */
    int loaded;
    int max_batch; /* config.json's max_batch_size, or 0 for a model without a batch dim */
    int pad;       /* the queue pads dynamic dims */
    inferd_pipeline *pipeline; /* NULL when the folder has no pipeline.json */
    inferd_sched_queue *queue; /* NULL without a scheduler */
    char cache_status[1200];   /* how the load used the cache: "off", "hit", "miss (...)" */
} inferd_copy;

/* What to load, and where things go. */
typedef struct inferd_copy_request {
    const char *name; /* the model's, for messages and the queue's name */
    long number;
    const char *dir;          /* the version folder */
    const inferd_config *cfg; /* the model's config.json (or defaults) */
    const char *cache_path;   /* the version's load cache file, or NULL: none */
    inferd_repo_load_fn load; /* NULL: the backend */
    void *load_user;
    inferd_mem_account *acct;       /* charged for everything the copy holds */
    int warm;                       /* run the warm-up (repo/warmup.h) before making the queue */
    inferd_sched *sched;            /* NULL: no queue */
    inferd_sched_model queue_model; /* what the queue runs and references */
    inferd_stats *stats;            /* the queue's timings; must outlive the queue */
} inferd_copy_request;

/* Loads rq into *c (zeroed by the caller). Returns 0, or a negative code with err saying why,
 * and then *c holds nothing. */
int inferd_copy_load(const inferd_copy_request *rq, inferd_copy *c, inferd_error *err);

/* Frees everything c holds (queue first), leaving it zeroed; idempotent. No request may be
 * queued on it and no batch of it may run. */
void inferd_copy_unload(inferd_copy *c);

#endif
