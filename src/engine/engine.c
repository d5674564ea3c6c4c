/* engine.c: a loaded model = graph + packed weights + cached plans + a pool of arenas.
 *
 * Lock order: model->lock is a leaf (nothing else is locked while holding it). Plans are built
 * outside the lock (they read the graph, which is immutable after load) and inserted under it;
 * plans and arenas in use are refcounted/checked out so eviction never frees them under a run.
 */
#include "engine/engine.h"

#include <math.h>
#include <omp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include "engine/cache.h"
#include "engine/fuse.h"
#include "engine/kernels.h"
#include "engine/onnx_import.h"
#include "engine/plan.h"
#include "util/clock.h"
#include "util/log.h"

#define DEFAULT_MAX_PLANS 64
#define MAX_KEY (2 + INFERD_MAX_RANK * 8)

typedef struct plan_entry {
    int64_t key[MAX_KEY * 4];
    int key_len;
    eg_plan *plan;
    int refs;      /* runs using it now */
    uint64_t used; /* tick of last use, for LRU */
} plan_entry;

typedef struct arena {
    struct arena *next;
    void *data;
    size_t cap;
} arena;

struct inferd_engine_model {
    inferd_engine_options opts;
    inferd_mem_account *acct;
    eg_graph *g;
    eg_model_ctx *ctx;
    inferd_tensor_desc *inputs, *outputs;
    int n_inputs, n_outputs;
    int mask_input;
    _Atomic int trim;       /* TRIM_*: whether length groups give the same outputs */
    _Atomic int tokens;     /* TRIM_*: whether runs on the valid tokens alone do too */
    int tokens_ok;          /* the dense layers can run on listed rows (run_tokens) */
    int64_t group_overhead; /* a group run's cost in tokens (group_overhead()) */
    double dense_flops;     /* FLOPs of the dense layers for one row (token) of input */
    int dense_only;         /* no conv or recurrent layers: dense_flops is the bulk of the work */
    double load_ms;
    eg_cache *cache;      /* mapped load cache the weights come from, or NULL */
    eg_mappings *maps;    /* external data files kept mapped for borrowed tables */
    const void *map_data; /* the ONNX file, kept mapped for borrowed tables, or NULL */
    size_t map_size;
    int64_t borrowed; /* bytes of constants read in place from those mappings */
    int cache_hit;
    char cache_status[1100];

    pthread_mutex_t lock;
    plan_entry **plans;
    int n_plans;
    uint64_t tick;
    arena *free_arenas;
    eg_profile_entry profile[EG_OP_COUNT_];
    _Atomic int64_t runs, groups; /* inferd_engine_run calls, and the runs they made */
    _Atomic int64_t token_runs;   /* runs on valid tokens alone (run_tokens) */
};

int inferd_engine_global_init(inferd_error *err) { return eg_kernels_global_init(err); }

static int build_descs(inferd_engine_model *m, inferd_error *err) {
    eg_graph *g = m->g;
    m->n_inputs = g->n_inputs;
    m->n_outputs = g->n_outputs;
    m->inputs = inferd_calloc(m->acct, (size_t)g->n_inputs + 1, sizeof *m->inputs);
    m->outputs = inferd_calloc(m->acct, (size_t)g->n_outputs + 1, sizeof *m->outputs);
    if (!m->inputs || !m->outputs)
        return inferd_error_set(err, INFERD_EINTERNAL, "out of memory");
    for (int k = 0; k < 2; k++) {
        int n = k ? g->n_outputs : g->n_inputs;
        const int *ids = k ? g->outputs : g->inputs;
        inferd_tensor_desc *d = k ? m->outputs : m->inputs;
        for (int i = 0; i < n; i++) {
            const eg_value *v = &g->values[ids[i]];
            d[i].name = v->name;
            d[i].dtype = v->t.dtype;
            d[i].rank = v->t.rank < 0 ? 0 : v->t.rank;
            for (int j = 0; j < d[i].rank; j++)
                d[i].dims[j] = v->t.dims[j] >= 0 ? v->t.dims[j] : -1;
        }
    }
    // The attention mask, if the model has one: an integer [batch, seq] input whose name says
    // so. Only used to learn valid lengths; results never depend on guessing it right.
    m->mask_input = -1;
    for (int i = 0; i < m->n_inputs; i++) {
        const inferd_tensor_desc *d = &m->inputs[i];
        if (d->rank == 2 && strstr(d->name, "mask") &&
            (d->dtype == INFERD_DTYPE_I64 || d->dtype == INFERD_DTYPE_I32))
            m->mask_input = i;
    }
    return 0;
}

/* Copies the constants that live nodes still read out of the mapped file into aligned memory
 * (weights that were packed are no longer read and are not copied). */
/* Constants read only as the table of a Gather (embeddings: the largest tensors a BERT does
 * not pack) are copied row by row with memcpy, so they need no alignment: they stay in the
 * mapped file instead of being copied. */
static char *gather_tables(const eg_graph *g) {
    char *only = inferd_calloc(NULL, (size_t)g->n_values + 1, 1);
    if (!only)
        return NULL;
    for (int v = 0; v < g->n_values; v++)
        only[v] = g->values[v].is_const && !g->values[v].is_output;
    for (int i = 0; i < g->n_nodes; i++) {
        const eg_node *n = &g->nodes[i];
        if (n->dead)
            continue;
        for (int j = 0; j < n->n_in; j++)
            if (n->in[j] >= 0 && !(n->op == EG_OP_Gather && j == 0))
                only[n->in[j]] = 0;
    }
    return only;
}

static int materialize_constants(eg_graph *g, const eg_cache *cache, int *misses, int64_t *borrowed,
                                 int may_borrow, inferd_error *err) {
    eg_graph_recount(g);
    char *tables = gather_tables(g);
    if (!tables)
        return inferd_error_set(err, INFERD_EINTERNAL, "out of memory");
    for (int v = 0; v < g->n_values; v++) {
        eg_value *val = &g->values[v];
        if (val->is_const && (val->n_consumers > 0 || val->is_output)) {
            int64_t nb = eg_tensor_nbytes(&val->t);
            const void *cached = cache && !val->t.data && val->file_data && nb > 0
                                     ? eg_cache_const(cache, v, (size_t)nb)
                                     : NULL;
            if (cached) {
                val->t.data = (void *)cached;
            } else if (may_borrow && !val->t.data && val->file_data && tables[v]) {
                val->t.data = (void *)val->file_data; // stays in the mapping, see gather_tables
                *borrowed += nb;
            } else {
                if (cache && !val->t.data && val->file_data)
                    (*misses)++;
                int rc = eg_value_materialize(g, val, err);
                if (rc < 0) {
                    inferd_free(tables);
                    return rc;
                }
            }
        }
        val->file_data = NULL;
    }
    inferd_free(tables);
    return 0;
}

/* Writes the cache of a model loaded from ONNX: packed weights in packing order, then every
 * constant that came from the file, by value index. */
static int write_cache(inferd_engine_model *m, const eg_cache_key *key, const uint8_t *from_file,
                       inferd_error *err) {
    eg_cache_writer *w = eg_cache_writer_create();
    if (!w)
        return inferd_error_set(err, INFERD_EINTERNAL, "out of memory");
    int rc = 0;
    for (int i = 0; rc == 0 && i < eg_model_ctx_packed_count(m->ctx); i++) {
        int64_t K, N;
        int tr;
        float scale;
        const void *md, *data;
        size_t md_size, bytes;
        eg_model_ctx_packed_get(m->ctx, i, &K, &N, &tr, &scale, &md, &md_size, &data, &bytes);
        rc = eg_cache_writer_add_packed(w, K, N, tr, scale, md, md_size, data, bytes);
    }
    for (int v = 0; rc == 0 && v < m->g->n_values; v++) {
        const eg_value *val = &m->g->values[v];
        if (val->is_const && from_file[v] && val->t.data &&
            (val->n_consumers > 0 || val->is_output))
            rc = eg_cache_writer_add_const(w, v, val->t.data, (size_t)eg_tensor_nbytes(&val->t));
    }
    if (rc < 0)
        rc = inferd_error_set(err, INFERD_EINTERNAL, "out of memory building the cache");
    else
        rc = eg_cache_writer_write(w, m->opts.cache_path, key, err);
    eg_cache_writer_destroy(w);
    return rc;
}

#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22
#endif

static double dense_flops_per_row(const inferd_engine_model *m);
static int64_t group_overhead(const inferd_engine_model *m);

static int load_common(const void *data, size_t size, const char *path, int owns_mapping,
                       const struct stat *st, const inferd_engine_options *opts,
                       inferd_engine_model **out, inferd_error *err, int64_t t0) {
    *out = NULL;
    inferd_mem_account *acct = opts ? opts->acct : NULL;
    inferd_engine_model *m = inferd_calloc(acct, 1, sizeof *m);
    if (!m) {
        if (owns_mapping)
            eg_unmap_file(data, size);
        return inferd_error_set(err, INFERD_EINTERNAL, "out of memory loading a model");
    }
    if (opts)
        m->opts = *opts;
    m->acct = acct;
    pthread_mutex_init(&m->lock, NULL);
    eg_mappings *maps = NULL;
    uint8_t *from_file = NULL;
    uint64_t skeleton = 0;
    snprintf(m->cache_status, sizeof m->cache_status, "off");
    int rc = eg_onnx_import(data, size, path, acct, &m->g, &maps, &skeleton, err);
    if (rc < 0)
        goto fail;
    if ((rc = eg_model_ctx_create(acct, &m->ctx, err)) < 0)
        goto fail;
    eg_cache_key key = {.source_size = st ? (uint64_t)st->st_size : size,
                        .source_mtime_ns =
                            st ? (int64_t)st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec : 0,
                        .skeleton_hash = skeleton};
    if (m->opts.cache_path && !m->opts.disable_fusion) {
        inferd_error cerr = {0};
        if (eg_cache_open(m->opts.cache_path, &key, &m->cache, &cerr) == 0)
            eg_model_ctx_use_cache(m->ctx, m->cache);
        else
            snprintf(m->cache_status, sizeof m->cache_status, "miss (%s)", cerr.msg);
    }
    // Without a cache every weight byte will be read: map them all in one pass.
    if (!m->cache && owns_mapping)
        madvise((void *)data, size, MADV_POPULATE_READ);
    if (!m->opts.disable_fusion && (rc = eg_fuse_load(m->g, m->ctx, err)) < 0)
        goto fail;
    if ((rc = eg_plan_remove_dead(m->g, err)) < 0)
        goto fail;
    // Which constants come from the file (and so belong in a cache).
    from_file = inferd_calloc(NULL, (size_t)m->g->n_values + 1, 1);
    if (!from_file) {
        rc = inferd_error_set(err, INFERD_EINTERNAL, "out of memory");
        goto fail;
    }
    for (int v = 0; v < m->g->n_values; v++)
        from_file[v] =
            m->g->values[v].is_const && !m->g->values[v].t.data && m->g->values[v].file_data;
    int misses = 0;
    int64_t borrowed = 0;
    // Only files we map ourselves are kept: a caller's buffer may go away after the load.
    if ((rc = materialize_constants(m->g, m->cache, &misses, &borrowed, owns_mapping, err)) < 0)
        goto fail;
    if (m->cache) {
        // A cache that served only part of the model is rewritten below.
        m->cache_hit = misses == 0 && eg_model_ctx_all_cached(m->ctx);
        snprintf(m->cache_status, sizeof m->cache_status, m->cache_hit ? "hit" : "miss (partial)");
        inferd_mem_account_charge(acct, (int64_t)eg_cache_size(m->cache));
    }

    if (borrowed > 0) {
        // Embedding tables are read from the mapped files for the model's lifetime.
        m->maps = maps;
        m->map_data = owns_mapping ? data : NULL;
        m->map_size = size;
        m->borrowed = borrowed;
        inferd_mem_account_charge(acct, borrowed);
    } else {
        eg_mappings_release(maps);
        if (owns_mapping)
            eg_unmap_file(data, size);
    }
    maps = NULL;
    owns_mapping = 0;
    if ((rc = build_descs(m, err)) < 0)
        goto fail;
    m->dense_flops = dense_flops_per_row(m);
    // Most of the dense work (the encoder's layers, not a classifier head) on listed rows.
    m->tokens_ok = eg_model_ctx_tokens_share(m->ctx) >= 0.9;
    m->group_overhead = group_overhead(m);
    m->dense_only = 1;
    for (int i = 0; i < m->g->n_nodes; i++) {
        eg_op op = m->g->nodes[i].op;
        if (!m->g->nodes[i].dead && (op == EG_OP_Conv || op == EG_OP_FusedConv ||
                                     op == EG_OP_LSTM || op == EG_OP_GRU || op == EG_OP_RNN))
            m->dense_only = 0;
    }
    if (m->opts.cache_path && !m->opts.disable_fusion && !m->cache_hit) {
        inferd_error werr = {0};
        size_t len = strlen(m->cache_status);
        if (write_cache(m, &key, from_file, &werr) == 0)
            snprintf(m->cache_status + len, sizeof m->cache_status - len, ", written");
        else
            snprintf(m->cache_status + len, sizeof m->cache_status - len, ", not written: %s",
                     werr.msg);
    }
    inferd_free(from_file);
    m->load_ms = (double)(inferd_now_ns() - t0) / 1e6;
    *out = m;
    return 0;
fail:
    inferd_free(from_file);
    eg_mappings_release(maps);
    if (owns_mapping)
        eg_unmap_file(data, size);
    inferd_engine_destroy(m);
    return rc;
}

int inferd_engine_load(const char *path, const inferd_engine_options *opts,
                       inferd_engine_model **out, inferd_error *err) {
    int64_t t0 = inferd_now_ns();
    const void *data;
    size_t size;
    *out = NULL;
    int rc = eg_map_file(path, &data, &size, err);
    if (rc < 0)
        return rc;
    struct stat st;
    if (stat(path, &st) != 0)
        memset(&st, 0, sizeof st);
    rc = load_common(data, size, path, 1, &st, opts, out, err, t0);
    if (rc < 0)
        inferd_error_prefix(err, "%s: ", path);
    return rc;
}

int inferd_engine_load_buffer(const void *data, size_t size, const inferd_engine_options *opts,
                              inferd_engine_model **out, inferd_error *err) {
    return load_common(data, size, NULL, 0, NULL, opts, out, err, inferd_now_ns());
}

void inferd_engine_destroy(inferd_engine_model *m) {
    if (!m)
        return;
    for (int i = 0; i < m->n_plans; i++) {
        eg_plan_destroy(m->plans[i]->plan);
        inferd_free(m->plans[i]);
    }
    inferd_free(m->plans);
    for (arena *a = m->free_arenas, *next; a; a = next) {
        next = a->next;
        inferd_free(a->data);
        inferd_free(a);
    }
    eg_graph_destroy(m->g);
    eg_model_ctx_destroy(m->ctx);
    if (m->cache) {
        inferd_mem_account_charge(m->acct, -(int64_t)eg_cache_size(m->cache));
        eg_cache_close(m->cache);
    }
    if (m->borrowed)
        inferd_mem_account_charge(m->acct, -m->borrowed);
    eg_mappings_release(m->maps);
    if (m->map_data)
        eg_unmap_file(m->map_data, m->map_size);
    inferd_free(m->inputs);
    inferd_free(m->outputs);
    pthread_mutex_destroy(&m->lock);
    inferd_free(m);
}

int inferd_engine_input_count(const inferd_engine_model *m) { return m->n_inputs; }
const inferd_tensor_desc *inferd_engine_input(const inferd_engine_model *m, int i) {
    return i >= 0 && i < m->n_inputs ? &m->inputs[i] : NULL;
}
int inferd_engine_output_count(const inferd_engine_model *m) { return m->n_outputs; }
const inferd_tensor_desc *inferd_engine_output(const inferd_engine_model *m, int i) {
    return i >= 0 && i < m->n_outputs ? &m->outputs[i] : NULL;
}
double inferd_engine_load_ms(const inferd_engine_model *m) { return m->load_ms; }
const char *inferd_engine_cache_status(const inferd_engine_model *m) { return m->cache_status; }
int inferd_engine_cache_hit(const inferd_engine_model *m) { return m->cache_hit; }
int64_t inferd_engine_memory(const inferd_engine_model *m) {
    return inferd_mem_account_bytes(m->acct);
}

static int make_key(const inferd_engine_model *m, const inferd_tensor *inputs, int threads,
                    int64_t *key) {
    int n = 0;
    key[n++] = threads;
    for (int i = 0; i < m->n_inputs; i++) {
        key[n++] = inputs[i].rank;
        for (int d = 0; d < inputs[i].rank; d++)
            key[n++] = inputs[i].dims[d];
    }
    return n;
}

/* Finds or builds the plan for these inputs; returns it with a reference held. */
static int get_plan(inferd_engine_model *m, const inferd_tensor *inputs, const eg_tensor *in,
                    int threads, plan_entry **out, inferd_error *err) {
    int64_t key[MAX_KEY * 4];
    int key_len = make_key(m, inputs, threads, key);
    pthread_mutex_lock(&m->lock);
    for (int i = 0; i < m->n_plans; i++) {
        plan_entry *e = m->plans[i];
        if (e->key_len == key_len && !memcmp(e->key, key, sizeof(int64_t) * (size_t)key_len)) {
            e->refs++;
            e->used = ++m->tick;
            pthread_mutex_unlock(&m->lock);
            *out = e;
            return 0;
        }
    }
    pthread_mutex_unlock(&m->lock);

    // Intermediate memory and constants folded for these inputs are capped alike.
    int64_t max_arena = m->opts.max_arena_bytes > 0 ? m->opts.max_arena_bytes : (int64_t)4 << 30;
    eg_plan_options po = {.threads = threads,
                          .fuse = !m->opts.disable_fusion,
                          .model_ctx = m->ctx,
                          .mask_input = m->mask_input,
                          .max_fold_bytes = max_arena};
    plan_entry *e = inferd_calloc(m->acct, 1, sizeof *e);
    if (!e)
        return inferd_error_set(err, INFERD_EINTERNAL, "out of memory");
    int rc = eg_plan_create(m->g, in, &po, m->acct, &e->plan, err);
    if (rc < 0) {
        inferd_free(e);
        return rc;
    }

    if ((int64_t)eg_plan_arena_size(e->plan) > max_arena) {
        rc = inferd_error_set(err, INFERD_ETOOLARGE,
                              "these inputs need %lld MiB of intermediate memory (limit %lld MiB)",
                              (long long)(eg_plan_arena_size(e->plan) >> 20),
                              (long long)(max_arena >> 20));
        eg_plan_destroy(e->plan);
        inferd_free(e);
        return rc;
    }
    memcpy(e->key, key, sizeof(int64_t) * (size_t)key_len);
    e->key_len = key_len;
    e->refs = 1;

    pthread_mutex_lock(&m->lock);
    e->used = ++m->tick;
    int max = m->opts.max_plans > 0 ? m->opts.max_plans : DEFAULT_MAX_PLANS;
    // Evict least recently used idle plans beyond the bound.
    while (m->n_plans >= max) {
        int victim = -1;
        for (int i = 0; i < m->n_plans; i++)
            if (m->plans[i]->refs == 0 &&
                (victim < 0 || m->plans[i]->used < m->plans[victim]->used))
                victim = i;
        if (victim < 0)
            break;
        plan_entry *v = m->plans[victim];
        m->plans[victim] = m->plans[--m->n_plans];
        eg_plan_destroy(v->plan);
        inferd_free(v);
    }
    plan_entry **grown =
        inferd_realloc(m->acct, m->plans, sizeof(*grown) * (size_t)(m->n_plans + 1));
    if (grown) {
        m->plans = grown;
        m->plans[m->n_plans++] = e;
    } else {
        e->refs = -1; // not cached: freed after this run
    }
    pthread_mutex_unlock(&m->lock);
    *out = e;
    return 0;
}

static void put_plan(inferd_engine_model *m, plan_entry *e) {
    if (e->refs < 0) {
        eg_plan_destroy(e->plan);
        inferd_free(e);
        return;
    }
    pthread_mutex_lock(&m->lock);
    e->refs--;
    pthread_mutex_unlock(&m->lock);
}

static arena *get_arena(inferd_engine_model *m, size_t need) {
    pthread_mutex_lock(&m->lock);
    arena *a = m->free_arenas, **link = &m->free_arenas;
    // Prefer an arena that is already big enough.
    for (arena **l = &m->free_arenas; *l; l = &(*l)->next)
        if ((*l)->cap >= need) {
            link = l;
            a = *l;
            break;
        }
    if (a)
        *link = a->next;
    pthread_mutex_unlock(&m->lock);
    if (!a) {
        a = inferd_calloc(m->acct, 1, sizeof *a);
        if (!a)
            return NULL;
    }
    if (a->cap < need) {
        inferd_free(a->data);
        a->cap = 0;
        a->data = inferd_malloc(m->acct, need);
        if (!a->data) {
            inferd_free(a);
            return NULL;
        }
        a->cap = need;
    }
    return a;
}

static void put_arena(inferd_engine_model *m, arena *a) {
    pthread_mutex_lock(&m->lock);
    a->next = m->free_arenas;
    m->free_arenas = a;
    pthread_mutex_unlock(&m->lock);
}

static int run_whole(inferd_engine_model *m, const inferd_tensor *inputs, inferd_tensor *outputs,
                     int threads, const eg_run_info *info, inferd_error *err);
static int token_batch(const inferd_engine_model *m, const inferd_tensor *inputs, int64_t *B,
                       int64_t *S);

/* ---- length groups ----
 * A padded batch of token sequences with very different lengths wastes most of its work on
 * padding. For models whose outputs provably ignore padded positions (checked once, lazily,
 * by running a probe both padded and trimmed), the rows are sorted by valid length and run
 * as a few groups, each trimmed to its own longest row; outputs are put back in row order. */

enum { TRIM_UNKNOWN = 0, TRIM_SAFE = 1, TRIM_UNSAFE = -1 };

/* Structural conditions: every input is an integer [batch, seq] tensor with both dims
 * dynamic, and every output has the batch as its dim 0 and no other dynamic dim. */
static int trim_candidate(const inferd_engine_model *m) {
    if (m->mask_input < 0)
        return 0;
    for (int i = 0; i < m->n_inputs; i++) {
        const inferd_tensor_desc *d = &m->inputs[i];
        if (d->rank != 2 || d->dims[0] != -1 || d->dims[1] != -1 ||
            (d->dtype != INFERD_DTYPE_I64 && d->dtype != INFERD_DTYPE_I32))
            return 0;
    }
    for (int i = 0; i < m->n_outputs; i++) {
        const inferd_tensor_desc *d = &m->outputs[i];
        if (d->rank < 1)
            return 0;
        for (int j = 1; j < d->rank; j++)
            if (d->dims[j] < 0)
                return 0;
    }
    return 1;
}

static void set_token(inferd_tensor *t, int64_t i, int64_t v) {
    if (t->dtype == INFERD_DTYPE_I64)
        ((int64_t *)t->data)[i] = v;
    else
        ((int32_t *)t->data)[i] = (int32_t)v;
}

static int64_t get_token(const inferd_tensor *t, int64_t i) {
    return t->dtype == INFERD_DTYPE_I64 ? ((const int64_t *)t->data)[i]
                                        : ((const int32_t *)t->data)[i];
}

/* Builds [n, L] copies of the inputs from the given rows of a [B, S] batch (rows NULL: the
 * first n), each row cut to L tokens, or padded with zeros up to L when L > S. */
static int gather_rows(const inferd_engine_model *m, const inferd_tensor *inputs, const int *rows,
                       int n, int64_t L, inferd_tensor *out) {
    for (int i = 0; i < m->n_inputs; i++) {
        const inferd_tensor *src = &inputs[i];
        inferd_tensor *t = &out[i];
        *t = *src;
        t->dims[0] = n;
        t->dims[1] = L;
        size_t es = inferd_dtype_size(src->dtype);
        int64_t keep = L < src->dims[1] ? L : src->dims[1];
        t->nbytes = (size_t)(n * L) * es;
        t->data = keep < L ? inferd_calloc(NULL, 1, t->nbytes ? t->nbytes : 1)
                           : inferd_malloc(NULL, t->nbytes ? t->nbytes : 1);
        if (!t->data)
            return -1;
        for (int r = 0; r < n; r++)
            memcpy((char *)t->data + (size_t)(r * L) * es,
                   (const char *)src->data + (size_t)((rows ? rows[r] : r) * src->dims[1]) * es,
                   (size_t)keep * es);
    }
    return 0;
}

/* Row b's valid length in a [B, S] attention mask: up to its last nonzero, at least 1. */
static int64_t valid_length(const inferd_tensor *mask, int64_t b, int64_t S) {
    int64_t L = S;
    while (L > 0 && get_token(mask, b * S + L - 1) == 0)
        L--;
    return L > 0 ? L : 1;
}

static void free_tensors(inferd_tensor *t, int n) {
    for (int i = 0; i < n; i++) {
        inferd_free(t[i].data);
        t[i].data = NULL;
    }
}

enum { PROBE_S = 16, PROBE_SHORT = 9 };

/* The probe batch: two rows of PROBE_S tokens, the second valid for PROBE_SHORT only. */
static int probe_inputs(const inferd_engine_model *m, inferd_tensor *full) {
    for (int i = 0; i < m->n_inputs; i++) {
        inferd_tensor *t = &full[i];
        t->dtype = m->inputs[i].dtype;
        t->rank = 2;
        t->dims[0] = 2;
        t->dims[1] = PROBE_S;
        t->nbytes = 2 * PROBE_S * inferd_dtype_size(t->dtype);
        t->data = inferd_calloc(NULL, 1, t->nbytes);
        if (!t->data)
            return -1;
        int is_mask = i == m->mask_input;
        int is_ids = !is_mask && !strstr(m->inputs[i].name, "type") &&
                     !strstr(m->inputs[i].name, "segment") &&
                     !strstr(m->inputs[i].name, "position");
        for (int r = 0; r < 2; r++)
            for (int j = 0; j < PROBE_S; j++) {
                int valid = r == 0 || j < PROBE_SHORT;
                int64_t v = is_mask ? valid : is_ids && valid ? 1 + (r * 7 + j * 13) % 50 : 0;
                set_token(t, r * PROBE_S + j, v);
            }
    }
    return 0;
}

/* Whether output rows a (of x) and b (of y), `row` bytes each, agree within 1e-4 relative. */
static int rows_agree(const inferd_tensor *x, size_t a, const inferd_tensor *y, size_t b,
                      size_t row) {
    if (x->dtype != INFERD_DTYPE_F32 || y->dtype != INFERD_DTYPE_F32 || (a + 1) * row > x->nbytes ||
        (b + 1) * row > y->nbytes)
        return 0;
    const float *p = (const float *)((const char *)x->data + a * row),
                *q = (const float *)((const char *)y->data + b * row);
    for (size_t k = 0; k < row / sizeof(float); k++)
        if (!(fabsf(p[k] - q[k]) <= 1e-4f * (1.0f + fabsf(p[k]))))
            return 0;
    return 1;
}

/* Runs the probe padded, and again either with its short row trimmed (tokens 0: may length
 * groups trim padding?) or padded on its valid tokens alone (tokens 1: may runs skip the
 * padded tokens?). Safe when the outputs agree. */
static int probe(inferd_engine_model *m, int tokens) {
    inferd_tensor full[16], part[16], out_full[16], out_part[16];
    if (m->n_inputs > 16 || m->n_outputs > 16)
        return TRIM_UNSAFE;
    memset(full, 0, sizeof full);
    memset(part, 0, sizeof part);
    memset(out_full, 0, sizeof out_full);
    memset(out_part, 0, sizeof out_part);
    int verdict = TRIM_UNSAFE;
    inferd_error err = {0};
    int row1 = 1;
    const int32_t lengths[2] = {PROBE_S, PROBE_SHORT};
    const eg_run_info info = {.batch = 2, .seq = PROBE_S, .lengths = lengths};
    if (probe_inputs(m, full) < 0 || run_whole(m, full, out_full, 1, NULL, &err) < 0)
        goto out;
    if (tokens ? run_whole(m, full, out_part, 1, &info, &err) < 0
               : gather_rows(m, full, &row1, 1, PROBE_SHORT, part) < 0 ||
                     run_whole(m, part, out_part, 1, NULL, &err) < 0)
        goto out;
    verdict = TRIM_SAFE;
    for (int o = 0; o < m->n_outputs && verdict == TRIM_SAFE; o++) {
        const inferd_tensor *a = &out_full[o], *b = &out_part[o];
        size_t row = a->nbytes / 2;
        int same = a->dims[0] == 2 && b->dims[0] == (tokens ? 2 : 1) &&
                   rows_agree(a, 1, b, tokens ? 1 : 0, row) &&
                   (!tokens || rows_agree(a, 0, b, 0, row));
        if (!same)
            verdict = TRIM_UNSAFE;
    }
out:
    free_tensors(full, m->n_inputs);
    free_tensors(part, m->n_inputs);
    free_tensors(out_full, m->n_outputs);
    free_tensors(out_part, m->n_outputs);
    return verdict;
}

static int64_t round_len(int64_t len) {
    int64_t q = len > 64 ? 16 : 8;
    return (len + q - 1) / q * q;
}

static int cmp_len(const void *a, const void *b, void *lens) {
    const int64_t *l = lens;
    int x = *(const int *)a, y = *(const int *)b;
    return l[x] < l[y] ? -1 : l[x] > l[y] ? 1 : x - y;
}

#define MAX_GROUPS 8

/* FLOPs of the model's dense layers for one row (token) of input: 2 K N per packed weight. */
static double dense_flops_per_row(const inferd_engine_model *m) {
    double flops = 0;
    for (int i = 0; i < eg_model_ctx_packed_count(m->ctx); i++) {
        int64_t K, N;
        int tr;
        float sc;
        const void *md, *data;
        size_t md_size, bytes;
        eg_model_ctx_packed_get(m->ctx, i, &K, &N, &tr, &sc, &md, &md_size, &data, &bytes);
        flops += 2.0 * (double)K * (double)N;
    }
    return flops;
}

/* What one more group run costs, in tokens of work: a run's fixed cost (about 5 us a node:
 * dispatch, thread team, small ops) over a token's cost (its dense-layer FLOPs at ~150
 * GFLOP/s). About 2 tokens for the peers' base model, 17 for small, the cap of 48 for tiny
 * models, where splitting a batch saves little. */
static int64_t group_overhead(const inferd_engine_model *m) {
    double token_s = m->dense_flops / 150e9, run_s = 5e-6 * (double)m->g->n_nodes;
    double c = token_s > 0 ? run_s / token_s : 48;
    return c < 2 ? 2 : c > 48 ? 48 : (int64_t)(c + 0.5);
}

/* Splits rows (sorted by length) into at most MAX_GROUPS groups minimising padded tokens plus
 * a per-group overhead. Returns the number of groups; ends[g] is one past group g's last. */
static int plan_groups(const int64_t *sorted_len, int n, int64_t overhead, int *ends) {
    // best[g][i]: cost of the first i rows in g groups.
    static const int64_t INF = INT64_MAX / 4;
    int64_t best[MAX_GROUPS + 1][257];
    int from[MAX_GROUPS + 1][257];
    if (n > 256)
        return 0;
    for (int g = 0; g <= MAX_GROUPS; g++)
        for (int i = 0; i <= n; i++)
            best[g][i] = INF;
    best[0][0] = 0;
    for (int g = 1; g <= MAX_GROUPS; g++)
        for (int i = 1; i <= n; i++)
            for (int j = g - 1; j < i; j++)
                if (best[g - 1][j] < INF) {
                    int64_t c = best[g - 1][j] + (i - j) * round_len(sorted_len[i - 1]) + overhead;
                    if (c < best[g][i]) {
                        best[g][i] = c;
                        from[g][i] = j;
                    }
                }
    int g_best = 1;
    for (int g = 2; g <= MAX_GROUPS; g++)
        if (best[g][n] < best[g_best][n])
            g_best = g;
    for (int g = g_best, i = n; g > 0; g--) {
        ends[g - 1] = i;
        i = from[g][i];
    }
    return g_best;
}

/* The finish time of groups of these costs on `workers` threads, each taken by the least
 * loaded thread, costliest first (costs sorted in place). */
static int64_t makespan(int64_t *cost, int n, int workers) {
    int64_t load[MAX_GROUPS] = {0}, worst = 0;
    if (workers > MAX_GROUPS)
        workers = MAX_GROUPS;
    for (int i = 1; i < n; i++) // insertion sort, largest first (n <= MAX_GROUPS)
        for (int j = i; j > 0 && cost[j] > cost[j - 1]; j--) {
            int64_t t = cost[j];
            cost[j] = cost[j - 1];
            cost[j - 1] = t;
        }
    for (int i = 0; i < n; i++) {
        int w = 0;
        for (int k = 1; k < workers; k++)
            if (load[k] < load[w])
                w = k;
        load[w] += cost[i];
        if (load[w] > worst)
            worst = load[w];
    }
    return worst;
}

/* Tokens a group of sorted rows [start, end) runs, trimmed to its longest row, plus its fixed
 * cost. */
static int64_t group_cost(const int64_t *sorted_len, int start, int end, int64_t S,
                          int64_t overhead) {
    int64_t L = round_len(sorted_len[end - 1]);
    return (end - start) * (L < S ? L : S) + overhead;
}

static int64_t groups_makespan(const int64_t *sorted_len, const int *ends, int ng, int64_t S,
                               int64_t overhead, int workers) {
    int64_t cost[MAX_GROUPS];
    for (int g = 0, start = 0; g < ng; start = ends[g++])
        cost[g] = group_cost(sorted_len, start, ends[g], S, overhead);
    return makespan(cost, ng, workers);
}

/* With several threads, splits the costliest group in halves while that brings the groups'
 * finish time down: rows run side by side, one thread each, scale better than one run
 * sharing its threads (the peers' base model, batch 8 x 128 on 2 threads: 2-3% faster as two
 * halves; small: 10%). Returns the new number of groups. */
static int split_for_threads(const int64_t *sorted_len, int *ends, int ng, int64_t S,
                             int64_t overhead, int threads) {
    while (ng < MAX_GROUPS) {
        int c = -1;
        int64_t worst = 0;
        for (int g = 0, start = 0; g < ng; start = ends[g++]) {
            int64_t cost = group_cost(sorted_len, start, ends[g], S, overhead);
            if (ends[g] - start >= 2 && cost > worst) {
                worst = cost;
                c = g;
            }
        }
        if (c < 0)
            break;
        int start = c ? ends[c - 1] : 0, split[MAX_GROUPS];
        memcpy(split, ends, sizeof(int) * (size_t)c);
        split[c] = start + (ends[c] - start) / 2;
        memcpy(split + c + 1, ends + c, sizeof(int) * (size_t)(ng - c));
        if (groups_makespan(sorted_len, split, ng + 1, S, overhead, threads) >=
            groups_makespan(sorted_len, ends, ng, S, overhead, threads))
            break;
        memcpy(ends, split, sizeof(int) * (size_t)(ng + 1));
        ng++;
    }
    return ng;
}

/* Returns 1 after running the batch in length groups, 0 when grouping does not apply (the
 * caller runs the batch whole), or a negative code. */
static int run_grouped(inferd_engine_model *m, const inferd_tensor *inputs, inferd_tensor *outputs,
                       int threads, inferd_error *err) {
    const inferd_tensor *mask = &inputs[m->mask_input];
    int64_t B, S;
    // Anything unexpected is left to run_whole, which validates and reports it.
    if (!token_batch(m, inputs, &B, &S) || B > 256 || S < 16)
        return 0;
    int64_t len[256];
    int order[256];
    int64_t padded = 0, total = 0;
    for (int64_t b = 0; b < B; b++) {
        len[b] = valid_length(mask, b, S);
        order[b] = (int)b;
    }
    qsort_r(order, (size_t)B, sizeof order[0], cmp_len, len);
    int64_t sorted[256];
    for (int64_t b = 0; b < B; b++)
        sorted[b] = len[order[b]];
    int ends[MAX_GROUPS];
    int64_t overhead = m->group_overhead;
    int ng = plan_groups(sorted, (int)B, overhead, ends);
    if (ng == 0)
        return 0;
    for (int g = 0, start = 0; g < ng; start = ends[g++])
        padded += (ends[g] - start) * round_len(sorted[ends[g] - 1]);
    // Length groups are worth it only when they remove a real share of the padded work;
    // without them, several threads may still take the batch in row groups.
    int by_length = padded + overhead * (ng - 1) <= B * S * 92 / 100;
    if (!by_length) {
        if (threads < 2 || B < 2)
            return 0;
        ng = 1;
        ends[0] = (int)B;
    }
    if (threads > 1)
        ng = split_for_threads(sorted, ends, ng, S, overhead, threads);
    // Length groups run side by side, one thread each: their runs are too small to share
    // threads well (the peers' small model gained little from a second thread on them). Row
    // groups of a batch that needs no length groups run so only when they finish sooner that
    // way than the whole batch on all the threads, which shares them at ~96% (1.92x on two).
    for (int g = 0, start = 0; g < ng; start = ends[g++])
        total += group_cost(sorted, start, ends[g], S, overhead);
    int side_by_side =
        threads > 1 && ng > 1 &&
        (by_length ||
         groups_makespan(sorted, ends, ng, S, overhead, threads) * threads * 96 < total * 100);
    if (!by_length && !side_by_side)
        return 0;
    if (m->trim == TRIM_UNKNOWN)
        m->trim = probe(m, 0);
    if (m->trim != TRIM_SAFE)
        return 0;

    // Each group runs whole: side by side, longest first, or one after the other on all the
    // threads.
    inferd_tensor(*sub_out)[16] = inferd_calloc(NULL, (size_t)ng, sizeof *sub_out);
    inferd_error *errs = inferd_calloc(NULL, (size_t)ng, sizeof *errs);
    int *rcs = inferd_calloc(NULL, (size_t)ng, sizeof *rcs), starts[MAX_GROUPS],
        by_cost[MAX_GROUPS];
    if (!sub_out || !errs || !rcs) {
        inferd_free(sub_out);
        inferd_free(errs);
        inferd_free(rcs);
        return inferd_error_set(err, INFERD_EINTERNAL, "out of memory");
    }
    for (int g = 0, start = 0; g < ng; start = ends[g++]) {
        starts[g] = start;
        by_cost[g] = g;
    }
    for (int i = 1; i < ng; i++) // by rows x length, largest first (insertion sort, <= 8)
        for (int j = i; j > 0; j--) {
            int x = by_cost[j], y = by_cost[j - 1];
            int64_t cx = (ends[x] - starts[x]) * sorted[ends[x] - 1],
                    cy = (ends[y] - starts[y]) * sorted[ends[y] - 1];
            if (cx <= cy)
                break;
            by_cost[j] = y;
            by_cost[j - 1] = x;
        }
    int team = side_by_side ? (threads < ng ? threads : ng) : 1;
#pragma omp parallel for schedule(dynamic, 1) num_threads(team) if (side_by_side)
    for (int k = 0; k < ng; k++) {
        int g = by_cost[k];
        int n = ends[g] - starts[g];
        int64_t L = round_len(sorted[ends[g] - 1]);
        if (L > S)
            L = S;
        inferd_tensor sub_in[16];
        memset(sub_in, 0, sizeof sub_in);
        if (gather_rows(m, inputs, order + starts[g], n, L, sub_in) < 0)
            rcs[g] = inferd_error_set(&errs[g], INFERD_EINTERNAL, "out of memory");
        else
            rcs[g] = run_whole(m, sub_in, sub_out[g], side_by_side ? 1 : threads, NULL, &errs[g]);
        free_tensors(sub_in, m->n_inputs);
    }
    m->groups += ng;
    memset(outputs, 0, sizeof(*outputs) * (size_t)m->n_outputs);
    int rc = 1;
    for (int g = 0; g < ng && rc == 1; g++)
        if (rcs[g] < 0) {
            *err = errs[g];
            rc = rcs[g];
        }
    for (int g = 0; g < ng && rc == 1; g++) {
        int n = ends[g] - starts[g];
        for (int o = 0; o < m->n_outputs && rc == 1; o++) {
            inferd_tensor *t = &outputs[o], *so = &sub_out[g][o];
            size_t row = so->dims[0] == n ? so->nbytes / (size_t)n : 0;
            if (!row && so->nbytes) {
                rc = inferd_error_set(err, INFERD_EINTERNAL, "output %d lost its batch dim", o);
                break;
            }
            if (!t->data) {
                *t = *so;
                t->dims[0] = B;
                t->nbytes = row * (size_t)B;
                t->data = inferd_malloc(NULL, t->nbytes ? t->nbytes : 1);
                if (!t->data) {
                    rc = inferd_error_set(err, INFERD_EINTERNAL, "out of memory");
                    break;
                }
            }
            for (int r = 0; r < n; r++)
                memcpy((char *)t->data + row * (size_t)order[starts[g] + r],
                       (const char *)so->data + row * (size_t)r, row);
        }
    }
    for (int g = 0; g < ng; g++)
        if (rcs[g] == 0)
            free_tensors(sub_out[g], m->n_outputs);
    inferd_free(sub_out);
    inferd_free(errs);
    inferd_free(rcs);
    if (rc < 0)
        free_tensors(outputs, m->n_outputs);
    return rc;
}

/* Whether inputs are the [B, S] integer batch that length groups and rounding work on. */
static int token_batch(const inferd_engine_model *m, const inferd_tensor *inputs, int64_t *B,
                       int64_t *S) {
    const inferd_tensor *mask = &inputs[m->mask_input];
    *B = mask->dims[0];
    *S = mask->dims[1];
    if (mask->rank != 2 || *B < 1 || *S < 1 || m->n_inputs > 16 || m->n_outputs > 16)
        return 0;
    for (int i = 0; i < m->n_inputs; i++)
        if (inputs[i].rank != 2 || inputs[i].dims[0] != *B || inputs[i].dims[1] != *S ||
            inputs[i].dtype != m->inputs[i].dtype || !inputs[i].data ||
            inputs[i].nbytes != (size_t)(*B * *S) * inferd_dtype_size(inputs[i].dtype))
            return 0;
    return 1;
}

/* Sequence lengths rounded up (round_len: to 8 tokens, 16 above 64), padded with zeros
 * (attention mask 0) for models whose outputs provably ignore padding: requests of every
 * length then share a few plans instead of building one per length (a plan costs about a
 * third of a short sequence's run, and a model's plan cache holds only so many). Returns 1
 * after running, 0 when it does not apply, or a negative code. */
static int run_rounded(inferd_engine_model *m, const inferd_tensor *inputs, inferd_tensor *outputs,
                       int threads, inferd_error *err) {
    int64_t B, S;
    if (!token_batch(m, inputs, &B, &S))
        return 0;
    int64_t L = round_len(S);
    if (L == S || B > INT32_MAX)
        return 0;
    if (m->trim == TRIM_UNKNOWN)
        m->trim = probe(m, 0);
    if (m->trim != TRIM_SAFE)
        return 0;
    inferd_tensor padded[16];
    memset(padded, 0, sizeof padded);
    int rc = 1;
    if (gather_rows(m, inputs, NULL, (int)B, L, padded) < 0)
        rc = inferd_error_set(err, INFERD_EINTERNAL, "out of memory");
    if (rc == 1 && (rc = run_whole(m, padded, outputs, threads, NULL, err)) == 0)
        rc = 1;
    free_tensors(padded, m->n_inputs);
    return rc;
}

/* ---- valid tokens only ----
 * A padded batch of token sequences run whole, but with every dense layer computing only the
 * rows of valid tokens (eg_dense_run_tokens, told the lengths by the run info) and attention
 * skipping padded keys: the work of length groups without their costs (weights streamed once
 * per group, GEMMs of few rows; the peers' base model, batch 8 of 20-128 tokens: 6 groups).
 * For models whose outputs ignore padding (the trim probe) and give the same outputs this way
 * (the tokens probe), where every dense layer can take a row list. Returns 1 after running, 0
 * when it does not apply, or a negative code. */
static int run_tokens(inferd_engine_model *m, const inferd_tensor *inputs, inferd_tensor *outputs,
                      int threads, inferd_error *err) {
    const inferd_tensor *mask = &inputs[m->mask_input];
    int64_t B, S;
    if (m->opts.disable_tokens || !m->tokens_ok || !token_batch(m, inputs, &B, &S) || B > 4096 ||
        S < 16)
        return 0;
    int32_t *len = inferd_malloc(NULL, sizeof(int32_t) * (size_t)B);
    if (!len)
        return inferd_error_set(err, INFERD_EINTERNAL, "out of memory");
    int64_t valid = 0, longest = 1;
    for (int64_t b = 0; b < B; b++) {
        len[b] = (int32_t)valid_length(mask, b, S);
        valid += len[b];
        if (len[b] > longest)
            longest = len[b];
    }
    // Worth it when padding is a real share of the work.
    int rc = 0;
    if (valid > B * S * 92 / 100)
        goto out;
    if (m->trim == TRIM_UNKNOWN)
        m->trim = probe(m, 0);
    if (m->trim == TRIM_SAFE && m->tokens == TRIM_UNKNOWN)
        m->tokens = probe(m, 1);
    if (m->trim != TRIM_SAFE || m->tokens != TRIM_SAFE)
        goto out;
    // Trimmed to the longest row (rounded, as run_rounded does, so that plans are shared).
    int64_t L = round_len(longest);
    if (L > S)
        L = S;
    inferd_tensor trimmed[16];
    memset(trimmed, 0, sizeof trimmed);
    const eg_run_info info = {.batch = (int)B, .seq = (int)L, .lengths = len};
    if (L < S && gather_rows(m, inputs, NULL, (int)B, L, trimmed) < 0) {
        free_tensors(trimmed, m->n_inputs);
        rc = inferd_error_set(err, INFERD_EINTERNAL, "out of memory");
        goto out;
    }
    m->groups++;
    m->token_runs++;
    rc = run_whole(m, L < S ? trimmed : inputs, outputs, threads, &info, err);
    if (rc == 0)
        rc = 1;
    free_tensors(trimmed, m->n_inputs);
out:
    inferd_free(len);
    return rc;
}

/* A run too small to share gets one thread: below ~200 MFLOP an OpenMP team of two costs more
 * in wake-ups and barriers than it saves (measured on the peers' tiny model: batch 1 x 32
 * tokens, 25 MFLOP, 0.19 ms on one thread and 0.42 ms on two; batch 8 x 32, 200 MFLOP, equal;
 * batch 32 x 32, 1.5x faster on two). Only for models whose work is their dense layers. */
static int useful_threads(const inferd_engine_model *m, const inferd_tensor *inputs, int threads) {
    if (threads < 1)
        return 1;
    if (threads == 1 || !m->dense_only || m->dense_flops <= 0 || m->n_inputs < 1)
        return threads;
    const inferd_tensor *t = &inputs[0];
    double rows = t->rank >= 1 ? (double)t->dims[0] : 1;
    if (t->rank == 2 && (t->dtype == INFERD_DTYPE_I64 || t->dtype == INFERD_DTYPE_I32))
        rows *= (double)t->dims[1]; // token ids: every token goes through the dense layers
    return rows * m->dense_flops < 200e6 ? 1 : threads;
}

int inferd_engine_run(inferd_engine_model *m, const inferd_tensor *inputs, inferd_tensor *outputs,
                      int threads, inferd_error *err) {
    threads = useful_threads(m, inputs, threads);
    m->runs++;
    if (!m->opts.disable_length_groups && m->trim != TRIM_UNSAFE && trim_candidate(m)) {
        int rc = run_tokens(m, inputs, outputs, threads < 1 ? 1 : threads, err);
        if (rc == 0)
            rc = run_grouped(m, inputs, outputs, threads < 1 ? 1 : threads, err);
        if (rc == 0)
            rc = run_rounded(m, inputs, outputs, threads < 1 ? 1 : threads, err);
        if (rc != 0)
            return rc < 0 ? rc : 0;
    }
    m->groups++;
    return run_whole(m, inputs, outputs, threads, NULL, err);
}

void inferd_engine_run_stats(const inferd_engine_model *m, int64_t *runs, int64_t *groups,
                             int64_t *token_runs) {
    *runs = m->runs;
    *groups = m->groups;
    *token_runs = m->token_runs;
}

static int run_whole(inferd_engine_model *m, const inferd_tensor *inputs, inferd_tensor *outputs,
                     int threads, const eg_run_info *info, inferd_error *err) {
    if (threads < 1)
        threads = 1;
    eg_tensor in_local[16];
    eg_tensor *in =
        m->n_inputs <= 16 ? in_local : inferd_calloc(NULL, (size_t)m->n_inputs, sizeof *in);
    if (!in)
        return inferd_error_set(err, INFERD_EINTERNAL, "out of memory");
    int rc = 0;
    for (int i = 0; i < m->n_inputs; i++) {
        const inferd_tensor *t = &inputs[i];
        if (t->rank < 0 || t->rank > INFERD_MAX_RANK) {
            rc = inferd_error_set(err, INFERD_EINVAL, "input '%s' has rank %d", m->inputs[i].name,
                                  t->rank);
            goto out;
        }
        int64_t n = inferd_tensor_numel(t->rank, t->dims);
        size_t es = inferd_dtype_size(t->dtype);
        if (n < 0 || es == 0 || (uint64_t)n * es != t->nbytes || (n > 0 && !t->data)) {
            rc = inferd_error_set(
                err, INFERD_EINVAL, "input '%s' holds %zu bytes, its dtype and dims need %lld",
                m->inputs[i].name, t->nbytes, (long long)(n < 0 ? -1 : n * (int64_t)es));
            goto out;
        }
        in[i].dtype = t->dtype;
        in[i].rank = t->rank;
        memcpy(in[i].dims, t->dims, sizeof(int64_t) * (size_t)t->rank);
        in[i].data = t->data;
    }
    // Before the plan: its oneDNN primitives are sized for the calling thread's team when they
    // are made (a probe or a group run on one thread leaves the team at 1).
    omp_set_num_threads(threads);
    plan_entry *pe = NULL;
    if ((rc = get_plan(m, inputs, in, threads, &pe, err)) < 0)
        goto out;
    size_t need = eg_plan_arena_size(pe->plan);
    arena *a = get_arena(m, need ? need : 64);
    if (!a) {
        put_plan(m, pe);
        rc = inferd_error_set(err, INFERD_EINTERNAL, "out of memory for the run's arena");
        goto out;
    }
    eg_profile_entry prof[EG_OP_COUNT_];
    if (m->opts.profile)
        memset(prof, 0, sizeof prof);
    rc = eg_plan_run(pe->plan, in, a->data, info, outputs, threads, m->opts.profile ? prof : NULL,
                     err);
    put_arena(m, a);
    put_plan(m, pe);
    if (m->opts.profile && rc == 0) {
        pthread_mutex_lock(&m->lock);
        for (int i = 0; i < EG_OP_COUNT_; i++) {
            m->profile[i].ms += prof[i].ms;
            m->profile[i].calls += prof[i].calls;
        }
        pthread_mutex_unlock(&m->lock);
    }
out:
    if (in != in_local)
        inferd_free(in);
    return rc;
}

void inferd_engine_profile_print(const inferd_engine_model *m, FILE *f) {
    double total = 0;
    for (int i = 0; i < EG_OP_COUNT_; i++)
        total += m->profile[i].ms;
    fprintf(f, "%-20s %10s %8s %12s %7s\n", "op", "calls", "ms", "ms/call", "share");
    char done[EG_OP_COUNT_] = {0};
    for (int pass = 0; pass < EG_OP_COUNT_; pass++) {
        // Print in decreasing time without sorting the shared array.
        int best = -1;
        for (int i = 0; i < EG_OP_COUNT_; i++)
            if (!done[i] && m->profile[i].calls &&
                (best < 0 || m->profile[i].ms > m->profile[best].ms))
                best = i;
        if (best < 0)
            break;
        done[best] = 1;
        const eg_profile_entry *e = &m->profile[best];
        fprintf(f, "%-20s %10ld %8.2f %12.4f %6.1f%%\n", eg_op_name((eg_op)best), e->calls, e->ms,
                e->ms / (double)e->calls, total > 0 ? 100.0 * e->ms / total : 0.0);
    }
    fprintf(f, "%-20s %10s %8.2f\n", "total", "", total);
}

static void print_desc(FILE *f, const char *what, const inferd_tensor_desc *d) {
    fprintf(f, "  %s %-24s %-8s [", what, d->name, inferd_dtype_kserve_name(d->dtype));
    for (int j = 0; j < d->rank; j++)
        fprintf(f, "%s%lld", j ? ", " : "", (long long)d->dims[j]);
    fprintf(f, "]\n");
}

static void print_op_counts(FILE *f, const eg_node *nodes, int n, int (*live)(const void *, int),
                            const void *ctx) {
    int counts[EG_OP_COUNT_] = {0};
    for (int i = 0; i < n; i++)
        if (live(ctx, i))
            counts[nodes[i].op]++;
    for (int op = 1; op < EG_OP_COUNT_; op++)
        if (counts[op])
            fprintf(f, "  %-20s %d\n", eg_op_name((eg_op)op), counts[op]);
}

static int graph_live(const void *ctx, int i) { return !((const eg_graph *)ctx)->nodes[i].dead; }

int inferd_engine_describe(inferd_engine_model *m, const inferd_tensor *inputs, int threads,
                           FILE *f, inferd_error *err) {
    fprintf(f, "load: %.1f ms, memory: %.1f MiB, opset %d\n", m->load_ms,
            (double)inferd_engine_memory(m) / (1 << 20), m->g->opset);
    for (int i = 0; i < m->n_inputs; i++)
        print_desc(f, "input ", &m->inputs[i]);
    for (int i = 0; i < m->n_outputs; i++)
        print_desc(f, "output", &m->outputs[i]);
    int live = 0;
    for (int i = 0; i < m->g->n_nodes; i++)
        live += !m->g->nodes[i].dead;
    fprintf(f, "graph after load-time fusion: %d nodes\n", live);
    print_op_counts(f, m->g->nodes, m->g->n_nodes, graph_live, m->g);
    if (!inputs)
        return 0;
    eg_tensor in[16];
    if (m->n_inputs > 16)
        return inferd_error_set(err, INFERD_EUNSUPPORTED, "too many inputs to describe");
    for (int i = 0; i < m->n_inputs; i++) {
        memset(&in[i], 0, sizeof in[i]);
        in[i].dtype = inputs[i].dtype;
        in[i].rank = inputs[i].rank;
        memcpy(in[i].dims, inputs[i].dims, sizeof(int64_t) * (size_t)inputs[i].rank);
    }
    plan_entry *pe = NULL;
    int rc = get_plan(m, inputs, in, threads, &pe, err);
    if (rc < 0)
        return rc;
    const eg_plan *p = pe->plan;
    int counts[EG_OP_COUNT_] = {0};
    for (int i = 0; i < eg_plan_step_count(p); i++)
        counts[eg_plan_step_op(p, i)]++;
    fprintf(f, "plan for these inputs (%d threads): %d steps, arena %.2f MiB\n", threads,
            eg_plan_step_count(p), (double)eg_plan_arena_size(p) / (1 << 20));
    for (int op = 1; op < EG_OP_COUNT_; op++)
        if (counts[op])
            fprintf(f, "  %-20s %d\n", eg_op_name((eg_op)op), counts[op]);
    put_plan(m, pe);
    return 0;
}
