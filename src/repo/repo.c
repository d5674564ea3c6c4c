/* repo.c: see repo.h for the design.
 *
 * Two kinds of objects:
 *   slot                  one version of a model that the registry knows (a folder the version
 *                         policy selected). It lives as long as the registry lists it plus
 *                         any copy loaded from it (each copy holds a slot reference), and
 *                         carries the request statistics across evictions and reloads.
 *   inferd_repo_version   one loaded copy of a slot: model, pipeline, queue, memory account.
 *                         Refcounted. A slot serves at most one copy (cur); a reload or a
 *                         switch loads a second one beside it, and retired copies drain.
 *
 * Every copy in memory (loading, serving, draining) is on the live list: the budget is the
 * sum of their accounts. Loads wait in a FIFO until the manager admits them (the policy in
 * residency.h picks victims); admitted loads and frees of idle copies are jobs the loader
 * threads run.
 *
 * Lock order: inferd_repo.lock only, taken last (see repo.h). Guarded by it: the model and
 * slot arrays, every slot field marked [lock], the live list, the want FIFO, the job queue,
 * the controls, and the counters that are not atomics. A copy's refs, its draining flag, the
 * slot's refs and the repository's loading count are atomics, read without the lock.
 *
 * Routes and readiness: whatever changes what is served marks the routes dirty; the manager
 * rebuilds the route list under the lock and publishes it to the lock-free table
 * (repo/routes.h) with the lock dropped, since a publish waits for lookups in progress. The
 * readiness counters are recomputed under the lock after every manager pass and every load,
 * and read as atomics by HTTP threads.
 */
#include "repo/repo.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <malloc.h>
#include <omp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "repo/copy.h"
#include "repo/residency.h"
#include "repo/routes.h"
#include "repo/scan.h"
#include "util/clock.h"
#include "util/log.h"

#define MAX_LOADERS 8
#define TRIM_EVERY_NS 100000000LL   /* how often the manager checks the limits while idle */
#define RETRY_NS 50000000LL         /* work put off (no memory, no thread) is tried again */
#define LOADER_IDLE_NS 2000000000LL /* a loader with nothing to do for this long exits */
#define HEAP_TRIM_NS 1000000000LL   /* at most one malloc_trim a second (trim_heap) */
#define NEVER INT64_MAX

typedef struct slot slot;
typedef struct model_entry model_entry;
typedef struct job job;
typedef struct control control;

/* Why a slot is to be retired. */
enum { DOOM_NONE = 0, DOOM_POLICY = 1, DOOM_GONE = 2 };

struct inferd_repo_version {
    _Atomic int refs;
    _Atomic int draining;        /* retired: freed once the registry's reference is the last */
    _Atomic int published;       /* loaded and not being freed: the model fields are fixed */
    _Atomic(inferd_repo *) repo; /* NULL once the repository is gone */
    slot *s;                     /* holds a slot reference */
    inferd_config cfg;           /* what this copy was loaded with */
    inferd_copy c;               /* what was loaded (repo/copy.h) */
    int warm;                    /* [loader] run a warm-up after loading */
    inferd_mem_account acct;
    double load_ms;
    /* [lock] */
    int64_t reserve; /* bytes reserved while loading */
    int loading;
    int destroying; /* a free job is queued or running */
    inferd_repo_version *live_prev, *live_next;
};

struct slot {
    _Atomic int refs; /* the registry's, one per copy, and lookups' in progress */
    char name[128];
    long number;
    char dir[4096 + 140];
    inferd_stats stats;
    /* [lock] */
    model_entry *m; /* NULL once removed from the registry */
    inferd_config cfg;
    char reason[256];
    inferd_repo_version *cur;  /* the serving copy: the registry's reference */
    inferd_repo_version *next; /* a copy being loaded */
    int want;                  /* in the want FIFO */
    int reload;                /* the wanted load replaces cur (warm, then switch) */
    int candidate;             /* a new version: not the default until its first load succeeds */
    int warm;                  /* the wanted load runs a warm-up */
    int requested;             /* a load request (the API) waits for it */
    int failed;                /* the last load failed (reason says why) */
    int held;                  /* unloaded by request */
    int doom;                  /* DOOM_*: to be retired when nothing needs it any more */
    int retired;               /* retiring: takes no requests, leaves once its copies are freed */
    int initial;               /* counted in the repository's loading count until tried */
    int unloading;             /* copies detached from this slot and not yet freed */
    int has_pipeline;
    int pipeline_file; /* its folder holds a pipeline.json (from the last scan) */
    int64_t last_used_ns;
    int64_t last_bytes; /* what the last copy held at its peak (the next load's estimate) */
    int64_t file_bytes;
    uint64_t stamp;
    inferd_repo_waiter *waiters, *waiters_tail;
    slot *want_next;
    uint64_t loads, load_failures, evictions;
    double last_load_ms;
};

struct model_entry {
    char name[128];
    inferd_config cfg;
    uint64_t cfg_stamp;
    int config_ok;
    char reason[256];          /* model-level problem (shown when it has no slots) */
    char cfg_note[256];        /* a changed config.json that was refused: the previous one stays */
    char route_note[256];      /* routes of its config.json that were refused, and why */
    char route_note_next[256]; /* [build_routes] the note being written */
    slot **slots;              /* ascending by number */
    int n_slots, cap_slots;
    int gone; /* the folder is gone: removed once it has no slots */
};

enum { JOB_LOAD = 1, JOB_FREE = 2 };

struct job {
    job *next;
    int kind;
    inferd_repo_version *v;
};

/* A load request from the API: waits for the listed versions of one model. */
struct control {
    control *next;
    char model[128];
    inferd_repo_waiter *w;
    int scanned;
    long versions[INFERD_SCAN_MAX_VERSIONS];
    int n_versions;
};

struct inferd_repo {
    char dir[4096];
    char cache_dir[4096];
    inferd_repo_options opts;
    _Atomic int loading;   /* loads queued at start and not tried yet */
    _Atomic int want_idle; /* a load waits for a busy version to become idle */
    inferd_hist *load_ns;
    /* Readiness (update_readiness), read without the lock. */
    _Atomic int pinned_models;  /* models with "pinned": true (not unloaded by request) */
    _Atomic int pinned_waiting; /* of those, models whose default version is not loaded */
    _Atomic int models_waiting; /* models whose default version is not loaded */
    inferd_routes *routes;      /* the route table HTTP threads read (repo/routes.h) */

    pthread_mutex_t lock;
    pthread_cond_t manager_cv; /* the manager's wake-up */
    pthread_cond_t job_cv;     /* the loaders' */
    pthread_cond_t done_cv;    /* wait_loaded, drain */
    /* [lock] */
    model_entry **models; /* sorted by name */
    int n_models, cap_models;
    inferd_repo_version *live;
    slot *want_head, *want_tail;
    job *jobs_head, *jobs_tail;
    control *controls;
    int stop, draining, kicked, started;
    int64_t next_poll_ns;
    int parked;
    uint64_t loads, load_failures, evictions, unloads, switches, cache_hits, cache_misses;
    uint64_t heap_trims;
    int routes_dirty;        /* what serves may have changed: the manager rebuilds the routes */
    int retry_pending;       /* work put off by a failed allocation or thread start: the
                                manager looks again within RETRY_NS, not at the next event */
    int spawn_failures;      /* loader threads that failed to start in a row */
    inferd_route *published; /* the routes last published (stats NULL), for comparisons */
    size_t n_published;

    pthread_t manager;
    int manager_started;
    int max_loaders;           /* --loader-threads */
    int loaders_running;       /* [lock] loader threads alive (detached; they exit when idle) */
    int loaders_idle;          /* [lock] of those, waiting for a job */
    int64_t last_heap_trim_ns; /* [lock] trim_heap */
    int heap_trim_pending;     /* [lock] an unload's trim was put off */
};

/* Results of parked requests, collected under the lock and delivered after it. */
typedef struct deliveries {
    inferd_repo_waiter *head, *tail;
} deliveries;

static void want_load(inferd_repo *r, slot *s);
static void update_readiness(inferd_repo *r);

/* ---- slots and copies ---- */

static void slot_release(slot *s) {
    if (s && atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) == 1) {
        inferd_stats_deinit(&s->stats);
        inferd_free(s);
    }
}

/* Frees what a copy loaded (queue, model, pipeline), keeping the struct. No request may hold
 * it and no batch of it may run. */
static void copy_unload(inferd_repo_version *v) { inferd_copy_unload(&v->c); }

static void copy_free(inferd_repo_version *v) {
    copy_unload(v);
    slot_release(v->s);
    inferd_free(v);
}

void inferd_repo_retain(inferd_repo_version *v) {
    atomic_fetch_add_explicit(&v->refs, 1, memory_order_relaxed);
}

static void kick_locked(inferd_repo *r) {
    r->kicked = 1;
    pthread_cond_signal(&r->manager_cv);
}

/* Work was put off by a failed allocation or thread start: the manager tries it again within
 * RETRY_NS (not at once, which would spin while memory or threads stay short; not at the next
 * event, which may never come). [lock] */
static void retry_soon(inferd_repo *r) {
    r->retry_pending = 1;
    pthread_cond_signal(&r->manager_cv);
}

void inferd_repo_release(inferd_repo_version *v) {
    if (!v)
        return;
    // Read before letting go: once our reference is dropped the manager may free v.
    inferd_repo *r = atomic_load_explicit(&v->repo, memory_order_acquire);
    int draining = atomic_load_explicit(&v->draining, memory_order_acquire);
    int before = atomic_fetch_sub_explicit(&v->refs, 1, memory_order_acq_rel);
    if (before == 1) {
        copy_free(v); // only after the repository has let go (shutdown)
        return;
    }
    // Down to the registry's reference: a retired copy can be freed now, and a load waiting
    // for a busy version may find room. Tell the manager. (A copy retired just as we let go
    // is found by the manager's next periodic pass.)
    if (before == 2 && r &&
        (draining || atomic_load_explicit(&r->want_idle, memory_order_relaxed))) {
        pthread_mutex_lock(&r->lock);
        kick_locked(r);
        pthread_mutex_unlock(&r->lock);
    }
}

/* Bytes a copy holds: its account, or what the model reports if more. The model is asked
 * only while the copy is published (loaded and not being freed), so a loader filling in or
 * tearing down the model is never read from. Any thread. */
static int64_t copy_bytes(const inferd_repo_version *v) {
    int64_t acct = inferd_mem_account_bytes(&v->acct);
    if (atomic_load_explicit(&v->published, memory_order_acquire) && v->c.model.memory) {
        int64_t m = v->c.model.memory(v->c.model.ctx);
        return m > acct ? m : acct;
    }
    return acct;
}

static int copy_idle(const inferd_repo_version *v) {
    return atomic_load_explicit(&v->refs, memory_order_acquire) == 1;
}

static void live_link(inferd_repo *r, inferd_repo_version *v) {
    v->live_prev = NULL;
    v->live_next = r->live;
    if (r->live)
        r->live->live_prev = v;
    r->live = v;
}

static void live_unlink(inferd_repo *r, inferd_repo_version *v) {
    if (v->live_prev)
        v->live_prev->live_next = v->live_next;
    else
        r->live = v->live_next;
    if (v->live_next)
        v->live_next->live_prev = v->live_prev;
    v->live_prev = v->live_next = NULL;
}

/* Bytes held by every copy of s in memory. [lock] */
static int64_t slot_resident(const inferd_repo *r, const slot *s) {
    int64_t b = 0;
    for (const inferd_repo_version *v = r->live; v; v = v->live_next)
        if (v->s == s)
            b += copy_bytes(v);
    return b;
}

static inferd_repo_state slot_state(const slot *s) {
    if (s->cur)
        return INFERD_REPO_STATE_READY;
    if (s->want || s->next)
        return INFERD_REPO_STATE_LOADING;
    if (s->unloading)
        return INFERD_REPO_STATE_UNLOADING;
    if (s->failed)
        return INFERD_REPO_STATE_UNAVAILABLE;
    return INFERD_REPO_STATE_UNLOADED;
}

static void set_reason(slot *s, const char *fmt, const char *detail) {
    snprintf(s->reason, sizeof s->reason, fmt, detail);
}

/* ---- jobs ---- */

static void *loader_main(void *arg);

/* Starts a loader thread when every running one is busy and the pool may grow. Loader threads
 * exist only while there is loading or unloading to do, so an idle server holds none (nor
 * their OpenMP teams). [lock] */
static void spawn_loader(inferd_repo *r) {
    if (r->loaders_idle > 0 || r->loaders_running >= r->max_loaders || r->stop || !r->started)
        return;
    pthread_t t;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    int rc = pthread_create(&t, &attr, loader_main, r);
    pthread_attr_destroy(&attr);
    if (rc == 0) {
        r->loaders_running++;
        if (r->spawn_failures > 0)
            inferd_log_info("a loader thread started after %d failed attempts", r->spawn_failures);
        r->spawn_failures = 0;
    } else if (r->loaders_running == 0) {
        // Nothing runs the queued jobs: try again shortly (no other event may come).
        if (r->spawn_failures++ == 0)
            inferd_log_error("cannot start a loader thread: %s (retrying every %d ms)",
                             strerror(rc), (int)(RETRY_NS / 1000000));
        retry_soon(r);
    }
}

static int push_job(inferd_repo *r, int kind, inferd_repo_version *v) {
    job *j = inferd_calloc(NULL, 1, sizeof *j);
    if (!j)
        return -1;
    j->kind = kind;
    j->v = v;
    // Frees go first: they make room for the loads behind them.
    if (kind == JOB_FREE) {
        j->next = r->jobs_head;
        r->jobs_head = j;
        if (!r->jobs_tail)
            r->jobs_tail = j;
    } else {
        if (r->jobs_tail)
            r->jobs_tail->next = j;
        else
            r->jobs_head = j;
        r->jobs_tail = j;
    }
    pthread_cond_signal(&r->job_cv);
    spawn_loader(r);
    return 0;
}

/* Hands an idle, detached copy to a loader to be freed. [lock] */
static void free_copy_later(inferd_repo *r, inferd_repo_version *v) {
    v->destroying = 1;
    atomic_store_explicit(&v->published, 0, memory_order_release);
    if (push_job(r, JOB_FREE, v) < 0) {
        v->destroying = 0; // out of memory: the manager tries again on its next pass
        retry_soon(r);
    }
}

/* Takes the serving copy off s: new requests no longer find it; requests that hold it finish
 * on it; the manager frees it once it is idle. [lock] */
static void detach_cur(inferd_repo *r, slot *s) {
    inferd_repo_version *v = s->cur;
    if (!v)
        return;
    s->cur = NULL;
    s->unloading++;
    atomic_store_explicit(&v->draining, 1, memory_order_release);
    if (copy_idle(v) && !v->destroying)
        free_copy_later(r, v);
    kick_locked(r);
}

/* ---- deliveries to parked requests ---- */

static void deliver(deliveries *d, inferd_repo_waiter *w, inferd_repo_version *v, int status,
                    const inferd_error *err) {
    w->v_ = v;
    w->status_ = status;
    if (status < 0 && err)
        w->err_ = *err;
    w->next_ = NULL;
    if (d->tail)
        d->tail->next_ = w;
    else
        d->head = w;
    d->tail = w;
}

/* Calls every collected callback. Without the lock. */
static void fire(deliveries *d) {
    for (inferd_repo_waiter *w = d->head, *next; w; w = next) {
        next = w->next_;
        w->done(w->user, w->v_, w->status_, w->status_ < 0 ? &w->err_ : NULL);
    }
    d->head = d->tail = NULL;
}

/* ---- the registry: models and slots ---- */

static int cmp_model_key(const void *key, const void *elem) {
    return strcmp((const char *)key, (*(model_entry *const *)elem)->name);
}

static model_entry *find_model(inferd_repo *r, const char *name) {
    if (strlen(name) >= 128 || r->n_models == 0)
        return NULL;
    model_entry **m =
        bsearch(name, r->models, (size_t)r->n_models, sizeof *r->models, cmp_model_key);
    return m ? *m : NULL;
}

static slot *find_slot(const model_entry *m, long number) {
    for (int i = 0; i < m->n_slots; i++)
        if (m->slots[i]->number == number)
            return m->slots[i];
    return NULL;
}

/* Whether s can be a model's default: it has loaded or may load, and is not switching in. */
static int eligible(const slot *s) {
    return !s->candidate && !s->failed && !s->held && !s->retired;
}

/* The version requests without a version go to: the highest eligible one. [lock] */
static slot *default_slot(const model_entry *m) {
    for (int i = m->n_slots - 1; i >= 0; i--)
        if (eligible(m->slots[i]))
            return m->slots[i];
    return NULL;
}

static model_entry *add_model(inferd_repo *r, const char *name) {
    if (r->n_models == r->cap_models) {
        int cap = r->cap_models ? r->cap_models * 2 : 16;
        model_entry **nm = inferd_realloc(NULL, r->models, (size_t)cap * sizeof *nm);
        if (!nm)
            return NULL;
        r->models = nm;
        r->cap_models = cap;
    }
    model_entry *m = inferd_calloc(NULL, 1, sizeof *m);
    if (!m)
        return NULL;
    snprintf(m->name, sizeof m->name, "%s", name);
    inferd_config_init(&m->cfg);
    int i = r->n_models;
    while (i > 0 && strcmp(r->models[i - 1]->name, name) > 0) {
        r->models[i] = r->models[i - 1];
        i--;
    }
    r->models[i] = m;
    r->n_models++;
    return m;
}

static void remove_model(inferd_repo *r, model_entry *m) {
    int i = 0;
    while (i < r->n_models && r->models[i] != m)
        i++;
    if (i == r->n_models)
        return;
    memmove(&r->models[i], &r->models[i + 1], (size_t)(r->n_models - i - 1) * sizeof *r->models);
    r->n_models--;
    inferd_free(m->slots);
    inferd_free(m);
}

static slot *add_slot(inferd_repo *r, model_entry *m, long number) {
    if (m->n_slots == m->cap_slots) {
        int cap = m->cap_slots ? m->cap_slots * 2 : 4;
        slot **ns = inferd_realloc(NULL, m->slots, (size_t)cap * sizeof *ns);
        if (!ns)
            return NULL;
        m->slots = ns;
        m->cap_slots = cap;
    }
    slot *s = inferd_calloc(NULL, 1, sizeof *s);
    if (!s)
        return NULL;
    if (inferd_stats_init(&s->stats) < 0) {
        inferd_free(s);
        return NULL;
    }
    atomic_init(&s->refs, 1); // the registry's
    snprintf(s->name, sizeof s->name, "%s", m->name);
    s->number = number;
    snprintf(s->dir, sizeof s->dir, "%.4000s/%s/%ld", r->dir, m->name, number);
    s->m = m;
    s->cfg = m->cfg;
    set_reason(s, "%s", r->opts.on_demand ? "not loaded yet (loads on its first request)" : "");
    int i = m->n_slots;
    while (i > 0 && m->slots[i - 1]->number > number) {
        m->slots[i] = m->slots[i - 1];
        i--;
    }
    m->slots[i] = s;
    m->n_slots++;
    return s;
}

/* Takes s out of its model (it has no copy left) and drops the registry's reference. */
static void remove_slot(inferd_repo *r, slot *s) {
    model_entry *m = s->m;
    (void)r;
    int i = 0;
    while (i < m->n_slots && m->slots[i] != s)
        i++;
    if (i < m->n_slots) {
        memmove(&m->slots[i], &m->slots[i + 1], (size_t)(m->n_slots - i - 1) * sizeof *m->slots);
        m->n_slots--;
    }
    s->m = NULL;
    slot_release(s);
}

static void unwant(inferd_repo *r, slot *s) {
    if (!s->want)
        return;
    slot **p = &r->want_head;
    slot *prev = NULL;
    while (*p && *p != s) {
        prev = *p;
        p = &(*p)->want_next;
    }
    if (*p) {
        *p = s->want_next;
        if (r->want_tail == s)
            r->want_tail = prev;
    }
    s->want_next = NULL;
    s->want = 0;
    s->reload = 0;
}

static void tried(inferd_repo *r, slot *s) {
    if (s->initial) {
        s->initial = 0;
        atomic_fetch_sub(&r->loading, 1);
        pthread_cond_broadcast(&r->done_cv);
    }
}

/* ---- routing ---- */

static int unavailable(const slot *s, const char *model, inferd_error *err) {
    if (s->held)
        return inferd_error_set(err, INFERD_EUNAVAIL,
                                "model '%s' version %ld was unloaded by request (POST "
                                "/v2/repository/models/%s/load brings it back)",
                                model, s->number, model);
    if (s->retired)
        return inferd_error_set(err, INFERD_EUNAVAIL,
                                "model '%s' version %ld is being unloaded (replaced or removed)",
                                model, s->number);
    return inferd_error_set(err, INFERD_EUNAVAIL, "model '%s' version %ld is unavailable: %s",
                            model, s->number, s->reason);
}

/* Finds the slot a request for model/version goes to. [lock] */
static int route(inferd_repo *r, const char *model, long version, slot **out, inferd_error *err) {
    *out = NULL;
    model_entry *m = find_model(r, model);
    if (!m)
        return inferd_error_set(err, INFERD_ENOTFOUND, "unknown model '%.128s'", model);
    if (version > 0) {
        slot *s = find_slot(m, version);
        if (!s)
            return inferd_error_set(err, INFERD_ENOTFOUND, "unknown version %ld of model '%s'",
                                    version, m->name);
        if (!s->cur && (s->failed || s->held || s->retired))
            return unavailable(s, m->name, err);
        *out = s;
        return 0;
    }
    slot *s = default_slot(m);
    if (s) {
        *out = s;
        return 0;
    }
    const char *why = m->reason[0] ? m->reason : "no versions";
    for (int i = m->n_slots - 1; i >= 0; i--) {
        slot *c = m->slots[i];
        if (c->candidate)
            return inferd_error_set(err, INFERD_EUNAVAIL, "model '%s' is loading", m->name);
        if (c->held)
            return unavailable(c, m->name, err);
    }
    if (m->n_slots > 0 && m->slots[m->n_slots - 1]->reason[0])
        why = m->slots[m->n_slots - 1]->reason;
    return inferd_error_set(err, INFERD_EUNAVAIL, "model '%s' is unavailable: %s", m->name, why);
}

/* Gives the caller a reference on s's serving copy. [lock] */
static inferd_repo_version *take(slot *s) {
    inferd_repo_version *v = s->cur;
    inferd_repo_retain(v);
    s->last_used_ns = inferd_now_ns();
    return v;
}

static void park(inferd_repo *r, slot *s, inferd_repo_waiter *w) {
    w->next_ = NULL;
    w->parked_ns_ = inferd_now_ns();
    if (!w->deadline_ns && s->cfg.default_timeout_us > 0)
        w->deadline_ns = w->parked_ns_ + s->cfg.default_timeout_us * 1000;
    if (s->waiters_tail)
        s->waiters_tail->next_ = w;
    else
        s->waiters = w;
    s->waiters_tail = w;
    r->parked++;
    if (!s->next)
        want_load(r, s);
    kick_locked(r);
}

/* Routes w again (its version was refused, removed or unloaded): a request for the model's
 * default goes to the new default, or fails; one for that version fails with why. [lock] */
static void reroute(inferd_repo *r, inferd_repo_waiter *w, const inferd_error *why, deliveries *d) {
    inferd_error err = {0};
    slot *s = NULL;
    if (w->version_ > 0) {
        if (why)
            err = *why;
        else
            inferd_error_set(&err, INFERD_EUNAVAIL, "model '%s' version %ld is unavailable",
                             w->model_, w->version_);
        deliver(d, w, NULL, err.code, &err);
        return;
    }
    int rc = route(r, w->model_, 0, &s, &err);
    if (rc < 0) {
        deliver(d, w, NULL, rc, &err);
        return;
    }
    if (s->cur) {
        deliver(d, w, take(s), 0, NULL);
        return;
    }
    if (r->stop) {
        inferd_error_set(&err, INFERD_EUNAVAIL, "the server is shutting down");
        deliver(d, w, NULL, INFERD_EUNAVAIL, &err);
        return;
    }
    int64_t parked = w->parked_ns_;
    park(r, s, w);
    w->parked_ns_ = parked;
}

/* Takes every request parked on s off it: each gets a reference on s's serving copy, or is
 * routed again (status < 0 says why s cannot serve). [lock] */
static void settle_waiters(inferd_repo *r, slot *s, int status, const inferd_error *why,
                           deliveries *d) {
    inferd_repo_waiter *w = s->waiters;
    s->waiters = s->waiters_tail = NULL;
    for (inferd_repo_waiter *next; w; w = next) {
        next = w->next_;
        r->parked--;
        if (status == 0 && s->cur)
            deliver(d, w, take(s), 0, NULL);
        else
            reroute(r, w, why, d);
    }
    pthread_cond_broadcast(&r->done_cv);
}

/* ---- loading (loader threads) ---- */

/* The scheduler's view of a copy: run forwards to the loaded model, and a running batch holds
 * a reference. */
static int queue_run(void *ctx, const inferd_tensor *in, inferd_tensor *out, int threads,
                     inferd_error *err) {
    inferd_repo_version *v = ctx;
    return v->c.model.run(v->c.model.ctx, in, out, threads, err);
}
static void queue_retain(void *ctx) { inferd_repo_retain(ctx); }
static void queue_release(void *ctx) { inferd_repo_release(ctx); }

/* Loads copy v of its slot (repo/copy.h). On a loader thread, without the lock; on failure v
 * holds nothing loaded. */
static int load_copy(inferd_repo *r, inferd_repo_version *v, inferd_error *err) {
    slot *s = v->s;
    char cache[4096 + 300];
    if (r->cache_dir[0])
        snprintf(cache, sizeof cache, "%.4000s/%s/%ld.cache", r->cache_dir, s->name, s->number);
    inferd_copy_request rq = {
        .name = s->name,
        .number = s->number,
        .dir = s->dir,
        .cfg = &v->cfg,
        .cache_path = r->cache_dir[0] ? cache : NULL,
        .load = r->opts.load,
        .load_user = r->opts.load_user,
        .acct = &v->acct,
        .warm = v->warm,
        .sched = r->opts.sched,
        .queue_model = {.run = queue_run,
                        .retain = queue_retain,
                        .release = queue_release,
                        .ctx = v},
        .stats = &s->stats,
    };
    return inferd_copy_load(&rq, &v->c, err);
}

/* The limits loads and trims work to. The byte budget is kept with 1/16 to spare: versions
 * build plans for new input shapes while they serve, and what they grow by between two
 * checks (every 100 ms at most) must not take memory past the budget itself. */
static inferd_residency_limits limits(const inferd_repo *r) {
    int64_t b = r->opts.memory_budget;
    return (inferd_residency_limits){.budget = b > 0 ? b - b / 16 : 0,
                                     .max_loaded = r->opts.max_loaded};
}

/* Bytes held by pinned serving copies other than s's. [lock] */
static int64_t pinned_bytes(const inferd_repo *r, const slot *except) {
    int64_t b = 0;
    for (const inferd_repo_version *v = r->live; v; v = v->live_next)
        if (v->s != except && v->s->cfg.pinned && v == v->s->cur)
            b += copy_bytes(v);
    return b;
}

/* The loader's end of a load: publish the copy (a switch when it replaces another), or record
 * the failure. Returns the load's final status: on failure the caller frees v. [lock] */
static int finish_load(inferd_repo *r, inferd_repo_version *v, int rc, inferd_error *err,
                       int64_t took_ns, deliveries *d) {
    slot *s = v->s;
    v->loading = 0;
    s->requested = 0;
    if (s->next == v)
        s->next = NULL;
    int gone = s->m == NULL || s->retired || s->held;
    if (rc == 0 && gone) {
        // Retired or unloaded while it loaded: never published.
        atomic_store(&v->draining, 1);
        s->unloading++;
        free_copy_later(r, v);
        tried(r, s);
        settle_waiters(r, s, INFERD_EUNAVAIL, NULL, d);
        return 0;
    }
    int64_t bytes = rc == 0 ? copy_bytes(v) : 0;
    if (rc == 0 && r->opts.memory_budget > 0 && bytes + pinned_bytes(r, s) > limits(r).budget) {
        // Its estimate let it in, but it can never stay: refuse it rather than thrash. Its
        // size is remembered, so the next request is refused before loading.
        s->last_bytes = bytes;
        rc = inferd_error_set(err, INFERD_EUNAVAIL,
                              "the version holds %.1f MiB once loaded, more than the memory "
                              "budget of %.1f MiB allows (15/16 of it for loaded versions; "
                              "%.1f MiB held by pinned ones)",
                              (double)bytes / 1048576.0, (double)r->opts.memory_budget / 1048576.0,
                              (double)pinned_bytes(r, s) / 1048576.0);
    }
    if (rc < 0) {
        live_unlink(r, v);
        s->load_failures++;
        r->load_failures++;
        if (s->cur) {
            set_reason(s, "reload failed: %.200s", err->msg);
            inferd_log_error("model %s version %ld failed to reload (the loaded copy keeps "
                             "serving): %s",
                             s->name, s->number, err->msg);
        } else {
            s->failed = 1;
            s->candidate = 0;
            set_reason(s, "%s", err->msg);
            inferd_log_error("model %s version %ld failed to load: %s", s->name, s->number,
                             err->msg);
        }
        tried(r, s);
        settle_waiters(r, s, err->code, err, d);
        kick_locked(r);
        return rc; // the caller frees v
    }
    atomic_store_explicit(&v->published, 1, memory_order_release);
    inferd_repo_version *old = s->cur;
    slot *was_default = s->m ? default_slot(s->m) : NULL;
    int switching = s->candidate || old;
    s->cur = v;
    s->failed = 0;
    s->candidate = 0;
    s->reason[0] = 0;
    s->loads++;
    s->has_pipeline = v->c.pipeline != NULL;
    s->last_used_ns = inferd_now_ns();
    if (bytes > s->last_bytes)
        s->last_bytes = bytes;
    if (bytes > v->reserve)
        v->reserve = bytes; // it keeps its reservation: plans for new shapes grow into it
    v->load_ms = (double)took_ns / 1e6;
    s->last_load_ms = v->load_ms;
    r->loads++;
    inferd_hist_record(r->load_ns, took_ns);
    // A backend without a load cache (TorchScript) reports "off ...": neither hit nor miss.
    if (r->cache_dir[0] && strncmp(v->c.cache_status, "off", 3) != 0) {
        if (v->c.model.cache_hit)
            r->cache_hits++;
        else
            r->cache_misses++;
    }
    if (old) {
        // The old copy keeps the requests that hold it, then drains.
        atomic_store_explicit(&old->draining, 1, memory_order_release);
        s->unloading++;
        if (copy_idle(old) && !old->destroying)
            free_copy_later(r, old);
    }
    inferd_log_info("model %s version %ld ready (platform %s, %d inputs, %d outputs, max batch "
                    "%d%s%s%s, %.1f MiB, %s in %.1f ms, cache %s)",
                    s->name, s->number, v->c.model.platform ? v->c.model.platform : "?",
                    v->c.model.n_inputs, v->c.model.n_outputs, v->c.max_batch,
                    v->c.pad ? ", padded" : "", v->c.pipeline ? ", text pipeline" : "",
                    v->warm ? ", warmed up" : "", (double)bytes / 1048576.0,
                    old ? "reloaded" : "loaded", v->load_ms, v->c.cache_status);
    const char *unwritten = strstr(v->c.cache_status, "not written: ");
    if (unwritten)
        inferd_log_warn("model %s version %ld: its load cache was %s; it serves from its model "
                        "file, and its next load reads that file again",
                        s->name, s->number, unwritten);
    slot *now_default = s->m ? default_slot(s->m) : NULL;
    if (switching && now_default == s) {
        r->switches++;
        if (was_default && was_default != s)
            inferd_log_info("model %s: version %ld is now the default (was %ld)", s->name,
                            s->number, was_default->number);
    }
    tried(r, s);
    settle_waiters(r, s, 0, NULL, d);
    if (switching)
        r->routes_dirty = 1; // a new default: its pipeline decides whether routes can serve
    update_readiness(r);
    kick_locked(r); // retirements (a switch), trims and admissions may follow
    return 0;
}

/* The heap keeps what a copy freed (plans, arenas, its graph) for reuse, and a version swap
 * frees it while the next version's allocations sit above it: malloc_trim hands the free pages
 * back, so that RSS follows what is loaded. A trim walks the heap holding the allocator's locks
 * (1.6 ms median, 7.5 ms p90 here at 32 evictions a second), so it runs at most once every
 * HEAP_TRIM_NS; one put off is done by the loader once it runs out of work. Called by a
 * loader with the lock held, after an unload (force 0) or, with a trim put off, when it has no
 * job left (force 1); may drop the lock while trimming. [lock] */
static void trim_heap(inferd_repo *r, int force) {
    int64_t now = inferd_now_ns();
    if (!force && now - r->last_heap_trim_ns < HEAP_TRIM_NS) {
        r->heap_trim_pending = 1;
        return;
    }
    r->heap_trim_pending = 0;
    r->last_heap_trim_ns = now;
    r->heap_trims++;
    pthread_mutex_unlock(&r->lock);
    malloc_trim(0);
    pthread_mutex_lock(&r->lock);
}

static void *loader_main(void *arg) {
    inferd_repo *r = arg;
    pthread_setname_np(pthread_self(), "inferd-loader");
    if (r->opts.loader_nice > 0)
        setpriority(PRIO_PROCESS, (id_t)gettid(), r->opts.loader_nice);
    // The one thread a load borrows from the budget: whatever the engine runs while loading
    // (packing weights, a warm-up run) uses no OpenMP team of its own.
    omp_set_num_threads(1);
    pthread_mutex_lock(&r->lock);
    for (;;) {
        int64_t idle_until = inferd_now_ns() + LOADER_IDLE_NS;
        while (!r->jobs_head && !r->stop && inferd_now_ns() < idle_until) {
            struct timespec ts = {.tv_sec = idle_until / 1000000000,
                                  .tv_nsec = idle_until % 1000000000};
            r->loaders_idle++;
            pthread_cond_timedwait(&r->job_cv, &r->lock, &ts); // job_cv: CLOCK_MONOTONIC
            r->loaders_idle--;
        }
        // Frees first (they are at the head); when stopping, no new load starts.
        job *j = r->jobs_head, *prev = NULL;
        if (r->stop)
            while (j && j->kind != JOB_FREE) {
                prev = j;
                j = j->next;
            }
        if (!j && r->heap_trim_pending && !r->stop) {
            // The lock is dropped while trimming: look for work again before exiting.
            trim_heap(r, 1);
            continue;
        }
        if (!j)
            break; // idle for a while, or stopping
        if (prev)
            prev->next = j->next;
        else
            r->jobs_head = j->next;
        if (r->jobs_tail == j)
            r->jobs_tail = prev;
        inferd_repo_version *v = j->v;
        int kind = j->kind;
        inferd_free(j);
        deliveries d = {0};
        if (kind == JOB_FREE) {
            pthread_mutex_unlock(&r->lock);
            // What it held while serving (plans included) is the next load's estimate.
            int64_t held = copy_bytes(v);
            copy_unload(v);
            pthread_mutex_lock(&r->lock);
            slot *s = v->s;
            live_unlink(r, v);
            s->unloading--;
            if (held > 0)
                s->last_bytes = held;
            r->unloads++;
            // Requests that parked meanwhile need it loaded again.
            if (s->waiters && !s->want && !s->next && s->m && !s->retired && !s->held)
                want_load(r, s);
            kick_locked(r);
            pthread_mutex_unlock(&r->lock);
            copy_free(v);
            pthread_mutex_lock(&r->lock);
            trim_heap(r, 0);
            continue;
        }
        pthread_mutex_unlock(&r->lock);
        inferd_error err = {0};
        int64_t t0 = inferd_now_ns();
        // A load is compute too: it takes a thread of the scheduler's budget, so it never
        // competes with running batches for their cores (the batches around it run with one
        // thread fewer instead).
        int rc = r->opts.sched ? inferd_sched_borrow_thread(r->opts.sched, &err) : 0;
        if (rc == 0) {
            rc = load_copy(r, v, &err);
            if (r->opts.sched)
                inferd_sched_return_thread(r->opts.sched);
        }
        int64_t took = inferd_now_ns() - t0;
        pthread_mutex_lock(&r->lock);
        rc = finish_load(r, v, rc, &err, took, &d);
        pthread_mutex_unlock(&r->lock);
        if (rc < 0)
            copy_free(v);
        fire(&d);
        pthread_mutex_lock(&r->lock);
    }
    r->loaders_running--;
    pthread_cond_broadcast(&r->done_cv);
    pthread_mutex_unlock(&r->lock);
    return NULL;
}

/* ---- the manager: admission, eviction, retirement, deadlines, polling ---- */

static void want_load(inferd_repo *r, slot *s) {
    if (s->want || s->next || !s->m || s->retired || s->held)
        return;
    s->want = 1;
    s->want_next = NULL;
    if (r->want_tail)
        r->want_tail->want_next = s;
    else
        r->want_head = s;
    r->want_tail = s;
    kick_locked(r);
}

/* Whether copy v counts toward --max-loaded: a serving copy, or one loading to serve (not a
 * reload or switch beside a serving one). */
static int counted(const inferd_repo_version *v) {
    const slot *s = v->s;
    return v == s->cur || (v->loading && !s->cur && !s->candidate);
}

/* What a copy counts for in the budget: what it holds, or what it reserved if more (a load in
 * progress, or the first estimate that its plans may still grow into). */
static int64_t copy_weight(const inferd_repo_version *v) {
    int64_t b = copy_bytes(v);
    return b > v->reserve ? b : v->reserve;
}

/* Describes the live copies for the policy, leaving out those already being freed (their
 * memory is on its way out); returns their count. [lock] */
static int describe(inferd_repo *r, inferd_residency_item **items, inferd_repo_version ***copies) {
    int n = 0;
    for (inferd_repo_version *v = r->live; v; v = v->live_next)
        n++;
    *items = inferd_calloc(NULL, (size_t)n + 1, sizeof **items);
    *copies = inferd_calloc(NULL, (size_t)n + 1, sizeof **copies);
    if (!*items || !*copies) {
        inferd_free(*items);
        inferd_free(*copies);
        *items = NULL;
        *copies = NULL;
        return -1;
    }
    int i = 0;
    for (inferd_repo_version *v = r->live; v; v = v->live_next) {
        if (v->destroying)
            continue;
        (*copies)[i] = v;
        (*items)[i++] = (inferd_residency_item){
            .bytes = copy_weight(v),
            .last_used_ns = v->s->last_used_ns,
            .pinned = v->s->cfg.pinned && v == v->s->cur,
            .busy = v != v->s->cur || !copy_idle(v) || v->loading,
            .counted = counted(v),
        };
    }
    return i;
}

/* Bytes of every live copy, those being freed included: what memory holds right now. [lock] */
static int64_t weight_now(const inferd_repo *r) {
    int64_t b = 0;
    for (const inferd_repo_version *v = r->live; v; v = v->live_next)
        b += copy_weight(v);
    return b;
}

static void evict(inferd_repo *r, inferd_repo_version *v, const char *why) {
    slot *s = v->s;
    s->evictions++;
    r->evictions++;
    inferd_log_debug("model %s version %ld evicted (%s, %.1f MiB)", s->name, s->number, why,
                     (double)copy_bytes(v) / 1048576.0);
    detach_cur(r, s);
    set_reason(s, "%s", why);
}

/* Fails a load that can never fit. [lock] */
static void refuse(inferd_repo *r, slot *s, int64_t need, deliveries *d) {
    inferd_error err;
    int64_t pinned = 0;
    for (inferd_repo_version *v = r->live; v; v = v->live_next)
        if (v->s->cfg.pinned && v == v->s->cur)
            pinned += copy_weight(v); // as the policy counted it
    if (r->opts.memory_budget > 0 && need + pinned > limits(r).budget)
        inferd_error_set(&err, INFERD_EUNAVAIL,
                         "model needs about %.1f MiB but the memory budget is %.1f MiB "
                         "(15/16 of it for loaded versions; %.1f MiB held by pinned ones): it "
                         "can never be loaded",
                         (double)need / 1048576.0, (double)r->opts.memory_budget / 1048576.0,
                         (double)pinned / 1048576.0);
    else
        inferd_error_set(&err, INFERD_EUNAVAIL,
                         "pinned versions fill --max-loaded %d: it can never be loaded",
                         r->opts.max_loaded);
    unwant(r, s);
    s->requested = 0;
    s->load_failures++;
    r->load_failures++;
    if (!s->cur) {
        s->failed = 1;
        s->candidate = 0;
        set_reason(s, "%s", err.msg);
    }
    inferd_log_error("model %s version %ld refused: %s", s->name, s->number, err.msg);
    tried(r, s);
    settle_waiters(r, s, err.code, &err, d);
}

/* Starts the loads waiting in the FIFO that fit, evicting to make room. [lock] */
static void admit(inferd_repo *r, deliveries *d) {
    inferd_residency_limits lim = limits(r);
    atomic_store(&r->want_idle, 0);
    while (r->want_head) {
        slot *s = r->want_head;
        if (r->stop || (r->draining && !s->waiters)) {
            unwant(r, s);
            tried(r, s);
            continue;
        }
        // Loaded on demand, and every request that wanted it gave up (timed out): not worth
        // evicting anything for any more.
        if (r->opts.on_demand && !s->waiters && !s->initial && !s->candidate && !s->reload &&
            !s->cfg.pinned && !s->requested) {
            unwant(r, s);
            continue;
        }
        int64_t need = inferd_residency_estimate(s->file_bytes, s->last_bytes);
        int count_it = !s->cur && !s->candidate;
        inferd_residency_verdict verdict = INFERD_RESIDENCY_FITS;
        int nv = 0;
        inferd_residency_item *items = NULL;
        inferd_repo_version **copies = NULL;
        int *victims = NULL;
        if (lim.budget > 0 || lim.max_loaded > 0) {
            int n = describe(r, &items, &copies);
            victims = n >= 0 ? inferd_calloc(NULL, (size_t)n + 1, sizeof *victims) : NULL;
            if (!victims) {
                inferd_free(items);
                inferd_free(copies);
                retry_soon(r); // out of memory: try again shortly
                return;
            }
            verdict = inferd_residency_plan(&lim, items, n, need, count_it, victims, &nv);
        }
        if (verdict == INFERD_RESIDENCY_FITS) {
            for (int i = 0; i < nv; i++)
                evict(r, copies[victims[i]], "evicted to make room (least recently used)");
        }
        inferd_free(items);
        inferd_free(copies);
        inferd_free(victims);
        // The victims' memory is freed on a loader: start the load once it is, so that what
        // memory holds never goes over the budget. The free's end wakes us.
        if (verdict == INFERD_RESIDENCY_FITS && lim.budget > 0 && weight_now(r) + need > lim.budget)
            return;
        if (verdict == INFERD_RESIDENCY_WAIT) {
            atomic_store(&r->want_idle, 1); // a release to idle wakes us
            return;
        }
        if (verdict == INFERD_RESIDENCY_NEVER) {
            refuse(r, s, need, d);
            continue;
        }
        inferd_repo_version *v = inferd_calloc(NULL, 1, sizeof *v);
        if (!v) {
            retry_soon(r);
            return;
        }
        atomic_init(&v->refs, 1); // the registry's (the loader uses it until it publishes)
        atomic_init(&v->draining, 0);
        atomic_init(&v->published, 0);
        atomic_init(&v->repo, r);
        atomic_fetch_add(&s->refs, 1);
        v->s = s;
        v->cfg = s->cfg;
        v->warm = (s->warm || s->cfg.warmup == INFERD_CONFIG_WARMUP_ON) &&
                  s->cfg.warmup != INFERD_CONFIG_WARMUP_OFF;
        inferd_mem_account_init(&v->acct);
        v->reserve = need;
        v->loading = 1;
        if (push_job(r, JOB_LOAD, v) < 0) {
            slot_release(s);
            inferd_free(v);
            retry_soon(r);
            return;
        }
        int reload = s->reload;
        unwant(r, s);
        s->warm = 0;
        s->next = v;
        live_link(r, v);
        inferd_log_debug("model %s version %ld: %s (reserving %.1f MiB)", s->name, s->number,
                         reload ? "reloading" : "loading", (double)need / 1048576.0);
    }
}

/* Back within the limits after versions grew. [lock] */
static void trim(inferd_repo *r) {
    inferd_residency_limits lim = limits(r);
    if (lim.budget <= 0 && lim.max_loaded <= 0)
        return;
    inferd_residency_item *items;
    inferd_repo_version **copies;
    int n = describe(r, &items, &copies);
    if (n < 0)
        return;
    int *victims = inferd_calloc(NULL, (size_t)n + 1, sizeof *victims);
    int nv = victims ? inferd_residency_trim(&lim, items, n, victims) : 0;
    for (int i = 0; i < nv; i++)
        evict(r, copies[victims[i]], "evicted to stay within the memory budget");
    inferd_free(victims);
    inferd_free(items);
    inferd_free(copies);
}

/* Whether a doomed slot must keep serving: nothing else of its model could take its requests
 * yet. [lock] */
static int keep_doomed(const slot *s) {
    const model_entry *m = s->m;
    int pending = 0;
    for (int i = 0; i < m->n_slots; i++) {
        const slot *o = m->slots[i];
        if (o == s || o->retired)
            continue;
        if (!o->doom && eligible(o))
            return 0; // another version takes over
        pending |= o->candidate;
    }
    if (s->doom == DOOM_POLICY)
        return 1; // its files are there: it serves until a newer version can
    // Its folder is gone: keep it only while it is in memory and a new version is on its way.
    return s->cur && pending;
}

/* Retires doomed slots, frees drained copies, removes what is gone. [lock] */
static void retire(inferd_repo *r, deliveries *d) {
    for (int i = 0; i < r->n_models; i++) {
        model_entry *m = r->models[i];
        for (int j = 0; j < m->n_slots; j++) {
            slot *s = m->slots[j];
            if (s->doom && !s->retired && !keep_doomed(s)) {
                s->retired = 1;
                unwant(r, s);
                tried(r, s);
                inferd_log_info("model %s version %ld: %s; it drains and unloads", s->name,
                                s->number,
                                s->doom == DOOM_GONE ? "its folder is gone"
                                                     : "no longer selected by version_policy");
                detach_cur(r, s);
                inferd_error err;
                inferd_error_set(&err, INFERD_EUNAVAIL,
                                 "model '%s' version %ld was removed from the repository", s->name,
                                 s->number);
                settle_waiters(r, s, INFERD_EUNAVAIL, &err, d);
            }
            if (s->retired && !s->cur && !s->next && !s->unloading && !s->waiters) {
                remove_slot(r, s);
                j--;
            }
        }
        if (m->gone && m->n_slots == 0) {
            remove_model(r, m);
            i--;
        }
    }
    for (inferd_repo_version *v = r->live; v; v = v->live_next)
        if (atomic_load(&v->draining) && !v->destroying && !v->loading && copy_idle(v))
            free_copy_later(r, v);
}

/* Fails parked requests whose deadline passed; returns the next deadline. [lock] */
static int64_t expire(inferd_repo *r, int64_t now, deliveries *d) {
    int64_t next = NEVER;
    for (int i = 0; i < r->n_models; i++) {
        model_entry *m = r->models[i];
        for (int j = 0; j < m->n_slots; j++) {
            slot *s = m->slots[j];
            inferd_repo_waiter **p = &s->waiters, *prev = NULL;
            while (*p) {
                inferd_repo_waiter *w = *p;
                if (w->deadline_ns > 0 && w->deadline_ns <= now) {
                    *p = w->next_;
                    if (s->waiters_tail == w)
                        s->waiters_tail = prev;
                    r->parked--;
                    inferd_error err;
                    inferd_error_set(&err, INFERD_EUNAVAIL,
                                     "model '%s' version %ld did not load within the request's "
                                     "timeout (waited %.0f ms)",
                                     s->name, s->number, (double)(now - w->parked_ns_) / 1e6);
                    deliver(d, w, NULL, INFERD_EUNAVAIL, &err);
                    continue;
                }
                if (w->deadline_ns > 0 && w->deadline_ns < next)
                    next = w->deadline_ns;
                prev = w;
                p = &w->next_;
            }
        }
    }
    return next;
}

/* ---- applying a scan ---- */

/* Whether two configs differ in what a loaded copy uses (everything but the version policy,
 * pinning and warm-up). */
static int serving_config_differs(const inferd_config *a, const inferd_config *b) {
    inferd_config x = *a, y = *b;
    x.policy = y.policy;
    x.latest_n = y.latest_n;
    x.n_specific = y.n_specific;
    memcpy(x.specific, y.specific, sizeof x.specific);
    x.pinned = y.pinned;
    x.warmup = y.warmup;
    x.warmup_batch = y.warmup_batch;
    x.warmup_seq = y.warmup_seq;
    memcpy(x.warmup_text, y.warmup_text, sizeof x.warmup_text);
    memcpy(x.routes, y.routes, sizeof x.routes); // routes change the route table, not a copy
    x.n_routes = y.n_routes;
    return memcmp(&x, &y, sizeof x) != 0;
}

/* Asks for a copy to be loaded beside the serving one and switched in. [lock] */
static void want_reload(inferd_repo *r, slot *s) {
    if (s->next || s->want)
        return;
    s->reload = 1;
    s->warm = 1;
    want_load(r, s);
    s->reload = 1; // want_load keeps it; unwant clears it
}

/* Brings model m in line with what the scan found. Returns 0, or -1 when out of memory (what
 * was applied stays; a later scan applies the rest). [lock] */
static int apply_model(inferd_repo *r, model_entry *m, const inferd_scan_model *sm) {
    m->gone = 0;
    if (!sm->config_ok) {
        // Keep serving with the config we have; say why the new one is ignored.
        if (sm->cfg_stamp != m->cfg_stamp || !m->cfg_note[0]) {
            if (m->n_slots > 0 && m->config_ok)
                inferd_log_error("model %s: %s (the previous config.json stays in use)", m->name,
                                 sm->cfg_error);
            else
                inferd_log_error("model %s: %s", m->name, sm->cfg_error);
        }
        m->cfg_stamp = sm->cfg_stamp;
        snprintf(m->cfg_note, sizeof m->cfg_note, "%s", sm->cfg_error);
        if (m->n_slots == 0 || !m->config_ok)
            snprintf(m->reason, sizeof m->reason, "%s", sm->cfg_error);
        return 0;
    }
    m->cfg_note[0] = 0;
    int first = !m->config_ok && m->n_slots == 0;
    if (sm->cfg_stamp != m->cfg_stamp || !m->config_ok) {
        int differs = serving_config_differs(&m->cfg, &sm->cfg);
        int pinned_now = sm->cfg.pinned && !m->cfg.pinned;
        if (r->started && !first)
            inferd_log_info("model %s: config.json changed%s", m->name,
                            differs ? "; resident versions reload with it" : "");
        m->cfg = sm->cfg;
        m->cfg_stamp = sm->cfg_stamp;
        m->config_ok = 1;
        for (int j = 0; j < m->n_slots; j++) {
            slot *s = m->slots[j];
            s->cfg = m->cfg;
            if (differs && s->cur && !s->retired)
                want_reload(r, s);
            if (pinned_now && !s->cur && !s->failed && !s->retired)
                want_load(r, s);
        }
    }
    snprintf(m->reason, sizeof m->reason, "%s", sm->reason);
    int had_default = default_slot(m) != NULL;
    // Versions the scan selected.
    for (int i = 0; i < sm->n_versions; i++) {
        const inferd_scan_version *sv = &sm->versions[i];
        slot *s = find_slot(m, sv->number);
        if (!sv->selected)
            continue;
        if (s && s->retired)
            continue; // still draining out; it comes back on a later scan
        if (!s) {
            if (!(s = add_slot(r, m, sv->number)))
                return -1;
            s->file_bytes = sv->model_bytes + 3 * sv->other_bytes;
            s->stamp = sv->stamp;
            s->pipeline_file = sv->has_pipeline;
            if (!sv->present) {
                s->failed = 1;
                if (sv->outside)
                    snprintf(s->reason, sizeof s->reason,
                             "%.200s is a symlink leading outside the repository", s->dir);
                else
                    snprintf(s->reason, sizeof s->reason,
                             "version_policy lists version %ld but %.200s is missing", sv->number,
                             s->dir);
                inferd_log_error("model %s: %s", m->name, s->reason);
                continue;
            }
            if (r->started && had_default) {
                // A version newly selected for a served model (a new folder, or an older one
                // selected again when the serving one's folder is gone): loaded beside, warmed
                // up, then switched.
                s->candidate = 1;
                s->warm = 1;
                inferd_log_info("model %s: version %ld is now selected by version_policy; loading "
                                "it beside the serving one",
                                m->name, sv->number);
                want_load(r, s);
            } else if (!r->opts.on_demand || m->cfg.pinned) {
                want_load(r, s);
            }
            continue;
        }
        s->doom = DOOM_NONE;
        if (!sv->present) {
            if (s->cur || s->next) {
                s->doom = DOOM_GONE;
            } else if (!s->failed) {
                s->failed = 1;
                snprintf(s->reason, sizeof s->reason,
                         "version_policy lists version %ld but %.200s is missing", sv->number,
                         s->dir);
            }
            continue;
        }
        s->file_bytes = sv->model_bytes + 3 * sv->other_bytes;
        s->pipeline_file = sv->has_pipeline;
        if (sv->stamp == s->stamp)
            continue;
        s->stamp = sv->stamp;
        if (s->cur) {
            inferd_log_info("model %s version %ld: its files changed; reloading", m->name,
                            s->number);
            want_reload(r, s);
        } else if (s->failed) {
            // Fixed files get another try: as a switch when another version serves (decided
            // before it becomes eligible again).
            slot *serving = default_slot(m);
            s->failed = 0;
            set_reason(s, "%s", "files changed; not loaded yet");
            if (serving && serving->number < s->number) {
                s->candidate = 1;
                s->warm = 1;
                want_load(r, s);
            } else if (!r->opts.on_demand || m->cfg.pinned || s->waiters) {
                want_load(r, s);
            }
        }
        s->last_bytes = 0; // new files: estimate from the file again
    }
    // Versions it did not select, or did not find.
    for (int j = 0; j < m->n_slots; j++) {
        slot *s = m->slots[j];
        int found = 0, selected = 0;
        for (int i = 0; i < sm->n_versions; i++)
            if (sm->versions[i].number == s->number) {
                found = sm->versions[i].present;
                selected = sm->versions[i].selected;
            }
        if (!selected && !s->retired)
            s->doom = found ? DOOM_POLICY : DOOM_GONE;
    }
    return 0;
}

/* Applies a scan of the whole repository (full) or of the models it lists. Returns 0, or -1
 * when out of memory (part of it applied). [lock] */
static int apply_scan(inferd_repo *r, const inferd_scan_model *sms, int n, int full) {
    r->routes_dirty = 1;
    for (int i = 0; i < n; i++) {
        model_entry *m = find_model(r, sms[i].name);
        if (!m && !(m = add_model(r, sms[i].name)))
            return -1;
        if (apply_model(r, m, &sms[i]) < 0)
            return -1;
    }
    if (!full)
        return 0;
    for (int i = 0; i < r->n_models; i++) {
        model_entry *m = r->models[i];
        int found = 0;
        for (int k = 0; k < n && !found; k++)
            found = !strcmp(sms[k].name, m->name);
        if (found)
            continue;
        if (!m->gone)
            inferd_log_info("model %s: its folder is gone", m->name);
        m->gone = 1;
        for (int j = 0; j < m->n_slots; j++)
            if (!m->slots[j]->retired)
                m->slots[j]->doom = DOOM_GONE;
    }
    return 0;
}

/* Whether name is "<version>.cache". */
static long cache_file_version(const char *name) {
    char *end;
    if (name[0] < '1' || name[0] > '9')
        return -1;
    long v = strtol(name, &end, 10);
    return strcmp(end, ".cache") == 0 ? v : -1;
}

/* Deletes the load caches of versions whose folders are gone (a loaded copy keeps its mapping
 * of an unlinked file). Only files named <model>/<version>.cache are touched. Without the
 * lock: file I/O. */
static void prune_caches(const char *cache_dir, const inferd_scan_model *sms, int n) {
    DIR *d = opendir(cache_dir);
    struct dirent *e;
    while (d && (e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        const inferd_scan_model *sm = NULL;
        for (int i = 0; i < n && !sm; i++)
            if (!strcmp(sms[i].name, e->d_name))
                sm = &sms[i];
        char mdir[4096 + 300];
        snprintf(mdir, sizeof mdir, "%.4000s/%s", cache_dir, e->d_name);
        DIR *md = opendir(mdir);
        struct dirent *f;
        while (md && (f = readdir(md))) {
            long v = cache_file_version(f->d_name);
            if (v <= 0)
                continue;
            int present = 0;
            for (int i = 0; sm && i < sm->n_versions && !present; i++)
                present = sm->versions[i].number == v && sm->versions[i].present;
            if (!present) {
                char path[4096 + 600];
                snprintf(path, sizeof path, "%s/%s", mdir, f->d_name);
                unlink(path);
            }
        }
        if (md)
            closedir(md);
        if (!sm)
            rmdir(mdir); // succeeds only once it is empty
    }
    if (d)
        closedir(d);
}

static void poll_repo(inferd_repo *r) {
    pthread_mutex_unlock(&r->lock);
    inferd_scan_model *sms = NULL;
    int n = 0;
    inferd_error err = {0};
    int rc = inferd_scan_repo(r->dir, &sms, &n, &err);
    if (rc == 0 && r->cache_dir[0])
        prune_caches(r->cache_dir, sms, n);
    pthread_mutex_lock(&r->lock);
    if (rc < 0) {
        inferd_log_error("repository poll: %s", err.msg);
        return;
    }
    if (apply_scan(r, sms, n, 1) < 0)
        inferd_log_error("repository poll: out of memory applying the scan (the next poll "
                         "tries again)");
    inferd_free(sms);
}

/* ---- routes and readiness ---- */

/* Appends a refusal to m's next route note (shown in the index; logged when it changes). */
static void route_refused(model_entry *m, const char *path, const char *why) {
    char *note = m->route_note_next;
    size_t len = strlen(note);
    if (len + 4 >= sizeof m->route_note_next)
        return;
    snprintf(note + len, sizeof m->route_note_next - len, "%sroute %s refused: %s", len ? "; " : "",
             path, why);
}

/* Why a route of m cannot serve, or "" when it can. A route needs a text pipeline: its version
 * (the fixed one, else the model's default) must have a pipeline.json. [lock] */
static void route_target_check(const model_entry *m, const inferd_config_route *rt, char *why,
                               size_t cap) {
    why[0] = 0;
    const slot *s;
    if (rt->version > 0) {
        s = find_slot(m, rt->version);
        if (!s || s->retired) {
            snprintf(why, cap, "version %ld is not served (version_policy does not select it)",
                     rt->version);
            return;
        }
    } else {
        s = default_slot(m);
        if (!s && m->n_slots > 0)
            s = m->slots[m->n_slots - 1];
    }
    if (s && s->stamp && !s->pipeline_file)
        snprintf(why, cap,
                 "model '%.64s' version %ld has no pipeline.json (a route sends texts through "
                 "the version's text pipeline)",
                 m->name, s->number);
}

static const inferd_route *find_published(const inferd_repo *r, const char *path) {
    for (size_t i = 0; i < r->n_published; i++)
        if (!strcmp(r->published[i].spec.path, path))
            return &r->published[i];
    return NULL;
}

/* The routes every model's config.json declares, clashes and unservable ones left out (and
 * noted on their model). A path keeps the model that already serves it; among new claims the
 * first model by name wins. Returns the count, or -1 when out of memory. [lock] */
static long build_routes(inferd_repo *r, inferd_route **out) {
    size_t cap = 0;
    for (int i = 0; i < r->n_models; i++) {
        r->models[i]->route_note_next[0] = 0;
        if (!r->models[i]->gone)
            cap += (size_t)r->models[i]->cfg.n_routes;
    }
    inferd_route *list = inferd_calloc(NULL, cap ? cap : 1, sizeof *list);
    if (!list)
        return -1;
    size_t n = 0;
    for (int pass = 0; pass < 2; pass++) {
        for (int i = 0; i < r->n_models; i++) {
            model_entry *m = r->models[i];
            for (int k = 0; k < m->cfg.n_routes && !m->gone; k++) {
                const inferd_config_route *rt = &m->cfg.routes[k];
                const inferd_route *was = find_published(r, rt->path);
                int incumbent = was && !strcmp(was->model, m->name);
                if (incumbent != (pass == 0))
                    continue;
                char why[256];
                route_target_check(m, rt, why, sizeof why);
                for (size_t j = 0; j < n && !why[0]; j++)
                    if (!strcmp(list[j].spec.path, rt->path))
                        snprintf(why, sizeof why,
                                 "model '%.100s' already serves this path (paths are unique "
                                 "across models)",
                                 list[j].model);
                if (why[0]) {
                    route_refused(m, rt->path, why);
                    continue;
                }
                inferd_route *x = &list[n++];
                snprintf(x->model, sizeof x->model, "%s", m->name);
                x->spec = *rt;
            }
        }
    }
    *out = list;
    return (long)n;
}

/* Rebuilds the route table and publishes it when it changed; logs what changed. Called with
 * the lock held, which it drops while publishing (the publish waits for lookups in progress).
 * [lock] */
static void refresh_routes(inferd_repo *r) {
    r->routes_dirty = 0;
    inferd_route *list;
    long n = build_routes(r, &list);
    if (n < 0) {
        r->routes_dirty = 1; // out of memory: try again shortly
        retry_soon(r);
        return;
    }
    for (int i = 0; i < r->n_models; i++) {
        model_entry *m = r->models[i];
        if (strcmp(m->route_note, m->route_note_next) != 0 && m->route_note_next[0])
            inferd_log_error("model %s: %s", m->name, m->route_note_next);
        snprintf(m->route_note, sizeof m->route_note, "%s", m->route_note_next);
    }
    int same = (size_t)n == r->n_published &&
               (n == 0 || memcmp(list, r->published, (size_t)n * sizeof *list) == 0);
    if (same) {
        inferd_free(list);
        return;
    }
    for (long i = 0; i < n; i++) {
        const inferd_route *was = find_published(r, list[i].spec.path);
        if (!was || memcmp(was, &list[i], sizeof *was) != 0) {
            char ver[48] = "";
            if (list[i].spec.version > 0)
                snprintf(ver, sizeof ver, ", version %ld", list[i].spec.version);
            inferd_log_info("model %s: route POST %s (%s '%s'%s)", list[i].model, list[i].spec.path,
                            list[i].spec.batch ? "texts in" : "one text in", list[i].spec.input,
                            ver);
        }
    }
    for (size_t i = 0; i < r->n_published; i++) {
        int kept = 0;
        for (long j = 0; j < n && !kept; j++)
            kept = !strcmp(list[j].spec.path, r->published[i].spec.path);
        if (!kept)
            inferd_log_info("model %s: route %s removed", r->published[i].model,
                            r->published[i].spec.path);
    }
    inferd_free(r->published);
    r->published = list;
    r->n_published = (size_t)n;
    // The table gets its own copy; publishing waits for lookups, so not under the lock.
    inferd_route *copy = inferd_malloc(NULL, (n ? (size_t)n : 1) * sizeof *copy);
    if (!copy) {
        r->n_published = 0; // publish again on the next pass
        r->routes_dirty = 1;
        return;
    }
    if (n)
        memcpy(copy, list, (size_t)n * sizeof *copy);
    pthread_mutex_unlock(&r->lock);
    inferd_error err = {0};
    int rc = inferd_routes_publish(r->routes, copy, (size_t)n, &err);
    inferd_free(copy);
    pthread_mutex_lock(&r->lock);
    if (rc < 0) {
        inferd_log_error("routes: %s", err.msg);
        r->n_published = 0;
        r->routes_dirty = 1;
    }
}

/* Whether every version of m is unloaded by request: it is then not waited for. [lock] */
static int model_held(const model_entry *m) {
    for (int j = 0; j < m->n_slots; j++)
        if (!m->slots[j]->held)
            return 0;
    return m->n_slots > 0;
}

/* Recomputes what readiness reads: per model, whether its default version is loaded. [lock] */
static void update_readiness(inferd_repo *r) {
    int pinned = 0, pinned_waiting = 0, waiting = 0;
    for (int i = 0; i < r->n_models; i++) {
        const model_entry *m = r->models[i];
        if (m->gone || model_held(m))
            continue;
        const slot *d = default_slot(m);
        int up = d && d->cur;
        if (m->cfg.pinned) {
            pinned++;
            pinned_waiting += !up;
        }
        waiting += !up;
    }
    atomic_store(&r->pinned_models, pinned);
    atomic_store(&r->pinned_waiting, pinned_waiting);
    atomic_store(&r->models_waiting, waiting);
}

/* ---- the load API ---- */

/* Scans the control's model, then waits for its selected versions. [lock] Returns whether the
 * control is finished (its waiter delivered). */
static int run_control(inferd_repo *r, control *c, deliveries *d) {
    if (!c->scanned) {
        c->scanned = 1;
        pthread_mutex_unlock(&r->lock);
        inferd_scan_model *sm = inferd_calloc(NULL, 1, sizeof *sm);
        inferd_error err = {0};
        int rc = sm ? inferd_scan_model_folder(r->dir, c->model, sm, &err)
                    : inferd_error_set(&err, INFERD_EINTERNAL, "out of memory");
        pthread_mutex_lock(&r->lock);
        if (rc == 0 && !sm->config_ok)
            rc = inferd_error_set(&err, INFERD_EINVAL, "%s", sm->cfg_error);
        else if (rc == 0 && sm->reason[0])
            rc = inferd_error_set(&err, INFERD_EINVAL, "%s", sm->reason);
        if (rc < 0) {
            inferd_free(sm);
            deliver(d, c->w, NULL, rc, &err);
            return 1;
        }
        model_entry *m = find_model(r, c->model);
        if (!m && !(m = add_model(r, c->model))) {
            inferd_free(sm);
            inferd_error_set(&err, INFERD_EINTERNAL, "out of memory");
            deliver(d, c->w, NULL, INFERD_EINTERNAL, &err);
            return 1;
        }
        for (int j = 0; j < m->n_slots; j++)
            m->slots[j]->held = 0;
        r->routes_dirty = 1;
        if (apply_model(r, m, sm) < 0) {
            inferd_free(sm);
            inferd_error_set(&err, INFERD_EINTERNAL, "out of memory");
            deliver(d, c->w, NULL, INFERD_EINTERNAL, &err);
            return 1;
        }
        for (int i = 0; i < sm->n_versions; i++) {
            slot *s = sm->versions[i].selected ? find_slot(m, sm->versions[i].number) : NULL;
            if (!s || s->retired)
                continue;
            if (s->failed && sm->versions[i].present) {
                slot *serving = default_slot(m);
                s->failed = 0; // a load request retries failed versions
                if (serving && serving->number < s->number) {
                    s->candidate = 1; // switched to once it loads and warms up
                    s->warm = 1;
                }
            }
            if (!s->cur) {
                s->requested = 1;
                want_load(r, s);
            }
            c->versions[c->n_versions++] = s->number;
        }
        inferd_free(sm);
        kick_locked(r);
    }
    model_entry *m = find_model(r, c->model);
    for (int i = 0; i < c->n_versions; i++) {
        slot *s = m ? find_slot(m, c->versions[i]) : NULL;
        if (s && (s->want || s->next))
            return 0; // still loading
    }
    inferd_error err = {0};
    for (int i = 0; i < c->n_versions; i++) {
        slot *s = m ? find_slot(m, c->versions[i]) : NULL;
        if (!s || !s->cur) {
            inferd_error_set(&err, INFERD_EUNAVAIL, "failed to load '%s' version %ld: %s", c->model,
                             c->versions[i], s ? s->reason : "removed meanwhile");
            deliver(d, c->w, NULL, INFERD_EUNAVAIL, &err);
            return 1;
        }
    }
    deliver(d, c->w, NULL, 0, NULL);
    return 1;
}

static void *manager_main(void *arg) {
    inferd_repo *r = arg;
    pthread_setname_np(pthread_self(), "inferd-resid");
    pthread_mutex_lock(&r->lock);
    while (!r->stop) {
        deliveries d = {0};
        r->kicked = 0;
        r->retry_pending = 0;
        int64_t now = inferd_now_ns();
        if (r->opts.poll_interval_ms > 0 && now >= r->next_poll_ns) {
            poll_repo(r);
            r->next_poll_ns = inferd_now_ns() + r->opts.poll_interval_ms * 1000000;
        }
        for (control **p = &r->controls; *p;) {
            control *c = *p;
            if (run_control(r, c, &d)) {
                // run_control drops the lock while it scans, and a load request may have been
                // pushed in front of c meanwhile: unlink c from where it is now.
                p = &r->controls;
                while (*p != c)
                    p = &(*p)->next;
                *p = c->next;
                inferd_free(c);
                r->parked--;
            } else {
                p = &c->next;
            }
        }
        if (r->routes_dirty)
            refresh_routes(r); // drops the lock while it publishes
        retire(r, &d);
        trim(r);
        admit(r, &d);
        update_readiness(r);
        if (r->jobs_head)
            spawn_loader(r); // a thread that could not be started before
        int64_t next = expire(r, inferd_now_ns(), &d);
        if (d.head) {
            pthread_mutex_unlock(&r->lock);
            fire(&d);
            pthread_mutex_lock(&r->lock);
            continue;
        }
        if (r->kicked)
            continue;
        if (r->opts.poll_interval_ms > 0 && r->next_poll_ns < next)
            next = r->next_poll_ns;
        if (r->retry_pending && now + RETRY_NS < next)
            next = now + RETRY_NS;
        // With limits, look again now and then: versions grow while serving (plans for new
        // shapes), and the trim above brings them back within the budget.
        int draining = 0;
        for (inferd_repo_version *v = r->live; v && !draining; v = v->live_next)
            draining = atomic_load(&v->draining) && !v->destroying;
        if (((r->opts.memory_budget > 0 || r->opts.max_loaded > 0) && r->live) || draining)
            if (now + TRIM_EVERY_NS < next)
                next = now + TRIM_EVERY_NS;
        if (next == NEVER) {
            pthread_cond_wait(&r->manager_cv, &r->lock);
        } else {
            // The condition variable waits on CLOCK_MONOTONIC (see create).
            struct timespec ts = {.tv_sec = next / 1000000000, .tv_nsec = next % 1000000000};
            pthread_cond_timedwait(&r->manager_cv, &r->lock, &ts);
        }
    }
    pthread_mutex_unlock(&r->lock);
    return NULL;
}

/* ---- lifecycle ---- */

static void repo_free(inferd_repo *r) {
    // Every slot's registry reference, every copy's; copies still referenced elsewhere live on.
    for (inferd_repo_version *v = r->live, *next; v; v = next) {
        next = v->live_next;
        atomic_store(&v->repo, NULL);
        inferd_repo_release(v);
    }
    while (r->n_models > 0) {
        model_entry *m = r->models[r->n_models - 1];
        while (m->n_slots > 0)
            remove_slot(r, m->slots[m->n_slots - 1]);
        remove_model(r, m);
    }
    inferd_free(r->models);
    for (job *j = r->jobs_head, *next; j; j = next) {
        next = j->next;
        inferd_free(j);
    }
    inferd_hist_destroy(r->load_ns);
    inferd_routes_destroy(r->routes);
    inferd_free(r->published);
    pthread_cond_destroy(&r->manager_cv);
    pthread_cond_destroy(&r->job_cv);
    pthread_cond_destroy(&r->done_cv);
    pthread_mutex_destroy(&r->lock);
    inferd_free(r);
}

int inferd_repo_create(const inferd_repo_options *opts, inferd_repo **out, inferd_error *err) {
    *out = NULL;
    if (!opts->dir || !opts->dir[0])
        return inferd_error_set(err, INFERD_EINVAL, "no repository folder given");
    inferd_scan_model *sms = NULL;
    int n = 0;
    int rc = inferd_scan_repo(opts->dir, &sms, &n, err);
    if (rc < 0)
        return rc;
    inferd_repo *r = inferd_calloc(NULL, 1, sizeof *r);
    if (!r || !(r->load_ns = inferd_hist_create()) || inferd_routes_create(&r->routes, err) < 0) {
        if (r)
            inferd_hist_destroy(r->load_ns);
        inferd_free(r);
        inferd_free(sms);
        return inferd_error_set(err, INFERD_EINTERNAL, "out of memory");
    }
    snprintf(r->dir, sizeof r->dir, "%s", opts->dir);
    r->opts = *opts;
    r->opts.dir = r->dir;
    if (opts->cache_dir)
        snprintf(r->cache_dir, sizeof r->cache_dir, "%s", opts->cache_dir);
    r->opts.cache_dir = r->cache_dir[0] ? r->cache_dir : NULL;
    if (r->opts.memory_budget > 0 || r->opts.max_loaded > 0)
        r->opts.on_demand = 1;
    r->max_loaders = opts->loader_threads > 0 ? opts->loader_threads : 1;
    if (r->max_loaders > MAX_LOADERS)
        r->max_loaders = MAX_LOADERS;
    pthread_mutex_init(&r->lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&r->manager_cv, &ca);
    pthread_cond_init(&r->job_cv, &ca);
    pthread_condattr_destroy(&ca);
    pthread_cond_init(&r->done_cv, NULL);
    atomic_init(&r->loading, 0);
    atomic_init(&r->want_idle, 0);

    pthread_mutex_lock(&r->lock);
    if (apply_scan(r, sms, n, 1) < 0) {
        pthread_mutex_unlock(&r->lock);
        inferd_free(sms);
        repo_free(r);
        return inferd_error_set(err, INFERD_EINTERNAL, "out of memory reading the repository %s",
                                opts->dir);
    }
    // The initial loads, pinned models first (readiness waits for them), and the newest
    // version of each model first: requests without a version use it. apply_scan queued them
    // in version order; reorder the FIFO (built back to front).
    slot *order = NULL;
    int total = 0;
    for (int pinned = 0; pinned < 2; pinned++)
        for (int i = r->n_models - 1; i >= 0; i--) {
            model_entry *m = r->models[i];
            if (!m->cfg.pinned != !pinned)
                continue;
            for (int j = 0; j < m->n_slots; j++) {
                slot *s = m->slots[j];
                if (!s->want)
                    continue;
                s->want_next = order;
                order = s;
                s->initial = 1;
                total++;
            }
        }
    r->want_head = order;
    r->want_tail = NULL;
    for (slot *s = order; s; s = s->want_next)
        r->want_tail = s;
    atomic_store(&r->loading, total);
    int versions = 0;
    for (int i = 0; i < r->n_models; i++)
        versions += r->models[i]->n_slots;
    update_readiness(r);
    refresh_routes(r); // no other thread yet: dropping the lock there is harmless
    pthread_mutex_unlock(&r->lock);
    inferd_free(sms);
    inferd_log_info("repository %s: %d models, %d versions, %d to load at start%s", r->dir,
                    r->n_models, versions, total,
                    r->opts.on_demand ? " (the others load on their first request)" : "");
    *out = r;
    return 0;
}

int inferd_repo_start(inferd_repo *r, inferd_error *err) {
    pthread_mutex_lock(&r->lock);
    r->started = 1;
    r->next_poll_ns = inferd_now_ns() + r->opts.poll_interval_ms * 1000000;
    pthread_mutex_unlock(&r->lock);
    int rc = pthread_create(&r->manager, NULL, manager_main, r);
    if (rc != 0)
        return inferd_error_set(err, INFERD_EINTERNAL, "cannot start the residency thread: %s",
                                strerror(rc));
    r->manager_started = 1;
    return 0;
}

int inferd_repo_loading(const inferd_repo *r) { return atomic_load(&r->loading); }

int inferd_repo_ready(inferd_repo *r, int strict, char *why, size_t cap) {
    int n;
    const char *what;
    if (strict) {
        n = atomic_load(&r->models_waiting);
        what = "model(s) without their default version loaded (--strict-readiness)";
    } else if (atomic_load(&r->pinned_models) > 0) {
        n = atomic_load(&r->pinned_waiting);
        what = "pinned model(s) without their default version loaded";
    } else {
        n = atomic_load(&r->loading);
        what = "version(s) to load at start not tried yet";
    }
    if (n > 0 && why && cap > 0)
        snprintf(why, cap, "%d %s", n, what);
    return n == 0;
}

int inferd_repo_route(inferd_repo *r, const char *path, inferd_route *out) {
    return inferd_routes_lookup(r->routes, path, out);
}

int inferd_repo_routes(inferd_repo *r, inferd_route **out, size_t *n, inferd_error *err) {
    return inferd_routes_list(r->routes, out, n, err);
}

int inferd_repo_wait_loaded(inferd_repo *r, int64_t timeout_ms, inferd_error *err) {
    int64_t until = inferd_now_ns() + timeout_ms * 1000000;
    pthread_mutex_lock(&r->lock);
    while (atomic_load(&r->loading) > 0 && inferd_now_ns() < until) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 2000000;
        if (ts.tv_nsec >= 1000000000) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000;
        }
        pthread_cond_timedwait(&r->done_cv, &r->lock, &ts);
    }
    pthread_mutex_unlock(&r->lock);
    if (atomic_load(&r->loading) > 0)
        return inferd_error_set(err, INFERD_EUNAVAIL, "%d versions still loading",
                                atomic_load(&r->loading));
    return 0;
}

void inferd_repo_drain(inferd_repo *r, int64_t timeout_ms) {
    int64_t until = inferd_now_ns() + timeout_ms * 1000000;
    pthread_mutex_lock(&r->lock);
    r->draining = 1;
    kick_locked(r);
    while (r->parked > 0 && inferd_now_ns() < until) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 5000000;
        if (ts.tv_nsec >= 1000000000) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000;
        }
        pthread_cond_timedwait(&r->done_cv, &r->lock, &ts);
    }
    pthread_mutex_unlock(&r->lock);
}

void inferd_repo_destroy(inferd_repo *r) {
    if (!r)
        return;
    pthread_mutex_lock(&r->lock);
    r->stop = 1;
    pthread_cond_broadcast(&r->manager_cv);
    pthread_cond_broadcast(&r->job_cv);
    pthread_mutex_unlock(&r->lock);
    if (r->manager_started)
        pthread_join(r->manager, NULL);
    // Loaders finish the load in progress and the frees queued, then exit.
    pthread_mutex_lock(&r->lock);
    while (r->loaders_running > 0)
        pthread_cond_wait(&r->done_cv, &r->lock);
    pthread_mutex_unlock(&r->lock);
    // Requests still parked, and load requests, get their answer now.
    deliveries d = {0};
    inferd_error err;
    inferd_error_set(&err, INFERD_EUNAVAIL, "the server is shutting down");
    pthread_mutex_lock(&r->lock);
    for (int i = 0; i < r->n_models; i++)
        for (int j = 0; j < r->models[i]->n_slots; j++) {
            slot *s = r->models[i]->slots[j];
            for (inferd_repo_waiter *w = s->waiters, *next; w; w = next) {
                next = w->next_;
                deliver(&d, w, NULL, INFERD_EUNAVAIL, &err);
            }
            s->waiters = s->waiters_tail = NULL;
        }
    for (control *c = r->controls, *next; c; c = next) {
        next = c->next;
        deliver(&d, c->w, NULL, INFERD_EUNAVAIL, &err);
        inferd_free(c);
    }
    r->controls = NULL;
    // Loads that were admitted but never ran.
    for (job *j = r->jobs_head, *next; j; j = next) {
        next = j->next;
        if (j->kind == JOB_LOAD) {
            slot *s = j->v->s;
            if (s->next == j->v)
                s->next = NULL;
            j->v->loading = 0;
        }
        inferd_free(j);
    }
    r->jobs_head = r->jobs_tail = NULL;
    pthread_mutex_unlock(&r->lock);
    fire(&d);
    repo_free(r);
}

/* ---- lookups ---- */

int inferd_repo_acquire(inferd_repo *r, const char *model, long version, inferd_repo_version **out,
                        inferd_error *err) {
    *out = NULL;
    pthread_mutex_lock(&r->lock);
    slot *s;
    int rc = route(r, model, version, &s, err);
    if (rc == 0 && s->cur) {
        *out = take(s);
    } else if (rc == 0) {
        inferd_repo_state st = slot_state(s);
        rc = st == INFERD_REPO_STATE_LOADING
                 ? inferd_error_set(err, INFERD_EUNAVAIL, "model '%s' version %ld is loading",
                                    s->name, s->number)
                 : inferd_error_set(err, INFERD_EUNAVAIL,
                                    "model '%s' version %ld is not loaded (%s)", s->name, s->number,
                                    s->reason[0] ? s->reason : "unloaded");
    }
    pthread_mutex_unlock(&r->lock);
    return rc;
}

int inferd_repo_acquire_or_park(inferd_repo *r, const char *model, long version,
                                inferd_repo_waiter *w, inferd_repo_version **out,
                                inferd_error *err) {
    *out = NULL;
    pthread_mutex_lock(&r->lock);
    slot *s;
    int rc = route(r, model, version, &s, err);
    if (rc == 0 && s->cur) {
        *out = take(s);
    } else if (rc == 0 && (r->draining || r->stop)) {
        rc = inferd_error_set(err, INFERD_EUNAVAIL, "the server is shutting down");
    } else if (rc == 0) {
        snprintf(w->model_, sizeof w->model_, "%s", s->name);
        w->version_ = version > 0 ? version : 0;
        w->status_ = 0;
        w->v_ = NULL;
        park(r, s, w);
        rc = INFERD_REPO_PARKED;
    }
    pthread_mutex_unlock(&r->lock);
    return rc;
}

int inferd_repo_probe(inferd_repo *r, const char *model, long version, long *number,
                      inferd_error *err) {
    *number = 0;
    pthread_mutex_lock(&r->lock);
    slot *s;
    int rc = route(r, model, version, &s, err);
    if (rc == 0) {
        *number = s->number;
        // Loadable on demand counts as servable; at start, a version still loading does not.
        if (!s->cur && !(r->opts.on_demand && !s->initial))
            rc = inferd_error_set(
                err, INFERD_EUNAVAIL, "model '%s' version %ld is %s", s->name, s->number,
                slot_state(s) == INFERD_REPO_STATE_LOADING ? "loading" : "not loaded");
    }
    pthread_mutex_unlock(&r->lock);
    return rc;
}

int inferd_repo_request_load(inferd_repo *r, const char *model, inferd_repo_waiter *w,
                             inferd_error *err) {
    if (!inferd_scan_valid_name(model))
        return inferd_error_set(err, INFERD_EINVAL, "'%.128s' cannot be a model name", model);
    control *c = inferd_calloc(NULL, 1, sizeof *c);
    if (!c)
        return inferd_error_set(err, INFERD_EINTERNAL, "out of memory");
    snprintf(c->model, sizeof c->model, "%s", model);
    c->w = w;
    w->status_ = 0;
    w->v_ = NULL;
    pthread_mutex_lock(&r->lock);
    if (r->draining || r->stop) {
        pthread_mutex_unlock(&r->lock);
        inferd_free(c);
        return inferd_error_set(err, INFERD_EUNAVAIL, "the server is shutting down");
    }
    c->next = r->controls;
    r->controls = c;
    r->parked++;
    kick_locked(r);
    pthread_mutex_unlock(&r->lock);
    return INFERD_REPO_PARKED;
}

int inferd_repo_request_unload(inferd_repo *r, const char *model, inferd_error *err) {
    deliveries d = {0};
    pthread_mutex_lock(&r->lock);
    model_entry *m = find_model(r, model);
    if (!m) {
        pthread_mutex_unlock(&r->lock);
        return inferd_error_set(err, INFERD_ENOTFOUND, "unknown model '%.128s'", model);
    }
    for (int j = 0; j < m->n_slots; j++) {
        slot *s = m->slots[j];
        if (s->held)
            continue;
        s->held = 1;
        unwant(r, s);
        tried(r, s);
        detach_cur(r, s);
        set_reason(s, "%s", "unloaded by request");
        inferd_error e;
        unavailable(s, m->name, &e);
        settle_waiters(r, s, INFERD_EUNAVAIL, &e, &d);
    }
    inferd_log_info("model %s: unloaded by request", m->name);
    update_readiness(r);
    pthread_mutex_unlock(&r->lock);
    fire(&d);
    return 0;
}

const char *inferd_repo_version_name(const inferd_repo_version *v) { return v->s->name; }
long inferd_repo_version_number(const inferd_repo_version *v) { return v->s->number; }
const inferd_repo_model *inferd_repo_version_model(const inferd_repo_version *v) {
    return &v->c.model;
}
const inferd_config *inferd_repo_version_config(const inferd_repo_version *v) { return &v->cfg; }
int inferd_repo_version_max_batch(const inferd_repo_version *v) { return v->c.max_batch; }
inferd_sched_queue *inferd_repo_version_queue(const inferd_repo_version *v) { return v->c.queue; }
const inferd_pipeline *inferd_repo_version_pipeline(const inferd_repo_version *v) {
    return v->c.pipeline;
}
int inferd_repo_version_pads(const inferd_repo_version *v) { return v->c.pad; }
inferd_stats *inferd_repo_version_stats(inferd_repo_version *v) { return &v->s->stats; }
int64_t inferd_repo_version_memory(const inferd_repo_version *v) { return copy_bytes(v); }

int inferd_repo_index(inferd_repo *r, inferd_repo_entry **out, size_t *n, inferd_error *err) {
    *out = NULL;
    *n = 0;
    pthread_mutex_lock(&r->lock);
    size_t total = 0;
    for (int i = 0; i < r->n_models; i++)
        total += r->models[i]->n_slots ? (size_t)r->models[i]->n_slots : 1;
    inferd_repo_entry *e = inferd_calloc(NULL, total ? total : 1, sizeof *e);
    if (!e) {
        pthread_mutex_unlock(&r->lock);
        return inferd_error_set(err, INFERD_EINTERNAL, "out of memory");
    }
    size_t k = 0;
    for (int i = 0; i < r->n_models; i++) {
        const model_entry *m = r->models[i];
        if (m->n_slots == 0) {
            snprintf(e[k].name, sizeof e[k].name, "%s", m->name);
            e[k].state = INFERD_REPO_STATE_UNAVAILABLE;
            snprintf(e[k].reason, sizeof e[k].reason, "%s",
                     m->reason[0] ? m->reason : "no versions selected");
            k++;
            continue;
        }
        const slot *def = default_slot(m);
        for (int j = 0; j < m->n_slots; j++) {
            const slot *s = m->slots[j];
            inferd_repo_entry *x = &e[k++];
            snprintf(x->name, sizeof x->name, "%s", m->name);
            x->version = s->number;
            x->state = slot_state(s);
            if (s->retired && x->state != INFERD_REPO_STATE_READY)
                snprintf(x->reason, sizeof x->reason, "%s", "removed: draining, then unloaded");
            else if (x->state != INFERD_REPO_STATE_LOADING)
                snprintf(x->reason, sizeof x->reason, "%s", s->reason);
            if (x->state == INFERD_REPO_STATE_READY && !s->reason[0] && m->cfg_note[0])
                snprintf(x->reason, sizeof x->reason, "%s", m->cfg_note);
            else if (x->state == INFERD_REPO_STATE_READY && !s->reason[0] && m->route_note[0])
                snprintf(x->reason, sizeof x->reason, "%s", m->route_note);
            x->resident_bytes = slot_resident(r, s);
            x->pinned = s->cfg.pinned;
            x->is_default = s == def;
            x->servable = s->cur || (r->opts.on_demand && !s->failed && !s->held && !s->retired &&
                                     !s->initial);
            x->has_pipeline = s->has_pipeline;
            x->loads = s->loads;
            x->load_failures = s->load_failures;
            x->evictions = s->evictions;
            x->last_load_ms = s->last_load_ms;
        }
    }
    pthread_mutex_unlock(&r->lock);
    *out = e;
    *n = k;
    return 0;
}

int inferd_repo_list_ready(inferd_repo *r, inferd_repo_version ***out, size_t *n,
                           inferd_error *err) {
    *out = NULL;
    *n = 0;
    pthread_mutex_lock(&r->lock);
    size_t total = 0;
    for (int i = 0; i < r->n_models; i++)
        total += (size_t)r->models[i]->n_slots;
    inferd_repo_version **list = inferd_calloc(NULL, total ? total : 1, sizeof *list);
    if (!list) {
        pthread_mutex_unlock(&r->lock);
        return inferd_error_set(err, INFERD_EINTERNAL, "out of memory");
    }
    size_t k = 0;
    for (int i = 0; i < r->n_models; i++)
        for (int j = 0; j < r->models[i]->n_slots; j++) {
            inferd_repo_version *v = r->models[i]->slots[j]->cur;
            if (v) {
                inferd_repo_retain(v);
                list[k++] = v;
            }
        }
    pthread_mutex_unlock(&r->lock);
    *out = list;
    *n = k;
    return 0;
}

void inferd_repo_residency_stats(inferd_repo *r, inferd_repo_residency *out) {
    memset(out, 0, sizeof *out);
    pthread_mutex_lock(&r->lock);
    out->budget = r->opts.memory_budget;
    out->max_loaded = r->opts.max_loaded;
    for (inferd_repo_version *v = r->live; v; v = v->live_next) {
        out->used += copy_bytes(v);
        out->loaded += v == v->s->cur;
    }
    out->loads = r->loads;
    out->load_failures = r->load_failures;
    out->evictions = r->evictions;
    out->unloads = r->unloads;
    out->heap_trims = r->heap_trims;
    out->switches = r->switches;
    out->cache_hits = r->cache_hits;
    out->cache_misses = r->cache_misses;
    out->parked = r->parked;
    pthread_mutex_unlock(&r->lock);
    out->load_ns = r->load_ns;
}
