/* textcall.c: see textcall.h for the design.
 *
 * Locks: none. The per-thread buffers are reached through a pthread key; a call's texts
 * complete on any workers and meet through two atomics (the count of texts still running, and
 * the flag that lets the first failure record itself).
 */
#include "api/textcall.h"

#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#include "util/alloc.h"
#include "util/clock.h"

/* ---- the calling thread's tokenizing buffers ---- */

typedef struct thread_bufs {
    inferd_scratch *scratch;
    int32_t *ids, *types; /* cap tokens each: every text of a request, back to back */
    size_t cap;
    inferd_encoding *encs; /* one per text */
    size_t *offs;          /* where each text's tokens start in ids/types */
    size_t n_cap;
} thread_bufs;

static pthread_key_t bufs_key;
static pthread_once_t bufs_once = PTHREAD_ONCE_INIT;
static int bufs_key_ok;

static void bufs_free(void *arg) {
    thread_bufs *b = arg;
    if (!b)
        return;
    inferd_scratch_destroy(b->scratch);
    inferd_free(b->ids);
    inferd_free(b->types);
    inferd_free(b->encs);
    inferd_free(b->offs);
    inferd_free(b);
}

static void make_key(void) { bufs_key_ok = pthread_key_create(&bufs_key, bufs_free) == 0; }

static thread_bufs *get_bufs(void) {
    pthread_once(&bufs_once, make_key);
    if (!bufs_key_ok)
        return NULL;
    thread_bufs *b = pthread_getspecific(bufs_key);
    if (b)
        return b;
    b = inferd_calloc(NULL, 1, sizeof *b);
    if (!b)
        return NULL;
    if (inferd_scratch_create(NULL, &b->scratch) != 0 || pthread_setspecific(bufs_key, b) != 0) {
        bufs_free(b);
        return NULL;
    }
    return b;
}

void inferd_textcall_thread_cleanup(void) {
    pthread_once(&bufs_once, make_key);
    if (!bufs_key_ok)
        return;
    bufs_free(pthread_getspecific(bufs_key));
    pthread_setspecific(bufs_key, NULL);
}

/* Grows to room for `tokens` tokens and `items` texts, keeping what is stored. Doubling, so a
 * thread settles at its largest request after a few calls. */
static int bufs_reserve(thread_bufs *b, size_t tokens, size_t items) {
    if (tokens > b->cap) {
        size_t cap = b->cap ? b->cap : 1024;
        while (cap < tokens)
            cap *= 2;
        int32_t *ids = inferd_realloc(NULL, b->ids, cap * sizeof *ids);
        if (!ids)
            return -1;
        b->ids = ids;
        int32_t *types = inferd_realloc(NULL, b->types, cap * sizeof *types);
        if (!types)
            return -1;
        b->types = types;
        b->cap = cap;
    }
    if (items > b->n_cap) {
        size_t cap = b->n_cap ? b->n_cap : 16;
        while (cap < items)
            cap *= 2;
        inferd_encoding *encs = inferd_realloc(NULL, b->encs, cap * sizeof *encs);
        if (!encs)
            return -1;
        b->encs = encs;
        size_t *offs = inferd_realloc(NULL, b->offs, cap * sizeof *offs);
        if (!offs)
            return -1;
        b->offs = offs;
        b->n_cap = cap;
    }
    return 0;
}

/* ---- one call ---- */

typedef struct text_call {
    inferd_textcall_options o;
    size_t n;
    int out_index; /* the model output holding the scores */
    size_t cap;    /* labels per text in tops; 0: sized per text once the classes are known */
    _Atomic size_t remaining;
    _Atomic int failed;
    int status; /* written once, by the text that set failed */
    inferd_error err;
    inferd_sched_request *reqs;
    inferd_tensor *ins, *outs;
    inferd_text_result *results;
    inferd_pipeline_score *tops;
} text_call;

/* Reserves n bytes at *off in a layout, 64-byte aligned, and returns where they start. */
static size_t take(size_t *off, size_t n) {
    size_t at = (*off + 63) & ~(size_t)63;
    *off = at + n;
    return at;
}

static void record_failure(text_call *c, int rc, const inferd_error *e) {
    int expected = 0;
    if (atomic_compare_exchange_strong(&c->failed, &expected, 1)) {
        c->status = rc;
        c->err = *e;
    }
}

/* Worker thread: text k's row of scores becomes its prediction. */
static int finish_text(text_call *c, size_t k, inferd_error *err) {
    const inferd_tensor *o = &c->outs[k * (size_t)c->o.n_outputs + (size_t)c->out_index];
    inferd_text_result *r = &c->results[k];
    int64_t C = o->rank == 2 ? o->dims[1] : o->rank == 1 ? o->dims[0] : -1;
    if (o->dtype != INFERD_DTYPE_F32 || C < 1 || (o->rank == 2 && o->dims[0] != 1) ||
        o->nbytes != (size_t)C * sizeof(float))
        return inferd_error_set(err, INFERD_EINTERNAL,
                                "text item %zu: the model's output '%s' is not one row of float "
                                "scores",
                                k, c->o.outputs[c->out_index].name);
    r->classes = C;
    size_t cap = c->cap;
    if (cap) {
        r->top = c->tops + k * cap;
    } else {
        cap = (size_t)C;
        r->top = inferd_malloc(NULL, cap * sizeof *r->top);
        if (!r->top)
            return inferd_error_set(err, INFERD_EINTERNAL, "out of memory");
    }
    int rc = inferd_pipeline_best(c->o.pipeline, o->data, C, &r->best, err);
    if (rc == 0)
        rc = inferd_pipeline_postprocess(c->o.pipeline, o->data, C, r->top, cap, &r->n_top, err);
    if (rc < 0)
        inferd_error_prefix(err, "text item %zu: ", k);
    return rc;
}

static void complete(text_call *c) {
    if (atomic_load(&c->failed))
        c->o.done(c->o.user, c->status, &c->err, NULL, 0);
    else
        c->o.done(c->o.user, 0, NULL, c->results, c->n);
    if (!c->cap)
        for (size_t k = 0; k < c->n; k++)
            inferd_free(c->results[k].top);
    inferd_free(c);
}

static void on_text_done(inferd_sched_request *req, int status, const inferd_error *serr) {
    text_call *c = req->user;
    size_t k = (size_t)(req - c->reqs);
    inferd_error e = {0};
    int rc = status;
    if (rc < 0) {
        if (serr)
            e = *serr;
        else
            inferd_error_set(&e, rc, "text item %zu failed", k);
    } else {
        rc = finish_text(c, k, &e);
    }
    for (int j = 0; j < c->o.n_outputs; j++) {
        inferd_tensor *t = &c->outs[k * (size_t)c->o.n_outputs + (size_t)j];
        inferd_free(t->data);
        t->data = NULL;
    }
    if (rc < 0)
        record_failure(c, rc, &e);
    // The last text to finish answers for all; acq_rel makes every text's writes visible.
    if (atomic_fetch_sub_explicit(&c->remaining, 1, memory_order_acq_rel) == 1)
        complete(c);
}

/* Which pipeline input feeds each model input, and where the scores come from. */
static int bind_model(const inferd_textcall_options *o, int *map, int *out_index,
                      inferd_error *err) {
    const inferd_pipeline *p = o->pipeline;
    if (o->n_inputs < 1 || o->n_inputs > 16)
        return inferd_error_set(err, INFERD_EUNSUPPORTED, "the model has %d inputs", o->n_inputs);
    for (int i = 0; i < o->n_inputs; i++) {
        map[i] = -1;
        for (size_t j = 0; j < inferd_pipeline_input_count(p); j++)
            if (!strcmp(inferd_pipeline_input_name(p, j), o->inputs[i].name))
                map[i] = (int)j;
        if (map[i] < 0)
            return inferd_error_set(err, INFERD_EUNSUPPORTED,
                                    "model input '%s' is not fed by the pipeline",
                                    o->inputs[i].name);
        // One text is one row: a model whose batch dim is fixed above 1 cannot take it.
        if (o->max_batch == 0 && o->inputs[i].rank >= 1 && o->inputs[i].dims[0] > 1)
            return inferd_error_set(err, INFERD_EUNSUPPORTED,
                                    "model input '%s' has a fixed batch of %lld; the text API "
                                    "runs one text per row",
                                    o->inputs[i].name, (long long)o->inputs[i].dims[0]);
    }
    *out_index = -1;
    for (int j = 0; j < o->n_outputs; j++)
        if (!strcmp(o->outputs[j].name, inferd_pipeline_output_name(p)))
            *out_index = j;
    if (*out_index < 0)
        return inferd_error_set(err, INFERD_EUNSUPPORTED, "the model has no output '%s'",
                                inferd_pipeline_output_name(p));
    return 0;
}

int inferd_textcall_submit(const inferd_textcall_options *o, const inferd_text_item *items,
                           size_t n, inferd_error *err) {
    const inferd_pipeline *p = o->pipeline;
    if (n == 0)
        return inferd_error_set(err, INFERD_EINVAL, "no texts to classify");
    if (n > INT32_MAX)
        return inferd_error_set(err, INFERD_ETOOLARGE, "too many texts");
    int map[16], out_index = -1;
    int rc = bind_model(o, map, &out_index, err);
    if (rc < 0)
        return rc;
    thread_bufs *b = get_bufs();
    if (!b)
        return inferd_error_set(err, INFERD_EINTERNAL, "out of memory for tokenizing");

    // 1. Tokenize every text here, so a bad one fails the request before anything is queued.
    int64_t t0 = inferd_now_ns();
    size_t max_len = (size_t)inferd_pipeline_max_length(p), used = 0, truncated = 0;
    if (bufs_reserve(b, 0, n) < 0)
        return inferd_error_set(err, INFERD_EINTERNAL, "out of memory for tokenizing");
    for (size_t k = 0; k < n; k++) {
        if (bufs_reserve(b, used + max_len, n) < 0)
            return inferd_error_set(err, INFERD_EINTERNAL, "out of memory for tokenizing");
        inferd_encoding *e = &b->encs[k];
        *e = (inferd_encoding){.ids = b->ids + used, .type_ids = b->types + used};
        rc = inferd_pipeline_encode(p, b->scratch, items[k].text, items[k].len, k, e, err);
        if (rc < 0)
            return rc;
        b->offs[k] = used;
        used += (size_t)e->len;
        truncated += e->truncated != 0;
    }
    // The id buffers may have moved while growing: point every encoding at its tokens again.
    for (size_t k = 0; k < n; k++) {
        b->encs[k].ids = b->ids + b->offs[k];
        b->encs[k].type_ids = b->types + b->offs[k];
    }
    int64_t tokenize_ns = inferd_now_ns() - t0;

    // 2. One arena for the call: requests, tensors, results, and each text's [1, L] inputs.
    size_t ni = (size_t)o->n_inputs, no = (size_t)o->n_outputs, np = inferd_pipeline_input_count(p);
    size_t cap = inferd_pipeline_top_k(p);
    if (cap == 0) {
        int64_t classes = o->outputs[out_index].rank == 2 ? o->outputs[out_index].dims[1] : -1;
        cap = inferd_pipeline_label_count(p) ? inferd_pipeline_label_count(p)
              : classes > 0                  ? (size_t)classes
                                             : 0;
    }
    size_t off = 0;
    size_t at_call = take(&off, sizeof(text_call));
    size_t at_reqs = take(&off, n * sizeof(inferd_sched_request));
    size_t at_ins = take(&off, n * ni * sizeof(inferd_tensor));
    size_t at_outs = take(&off, n * no * sizeof(inferd_tensor));
    size_t at_results = take(&off, n * sizeof(inferd_text_result));
    size_t at_tops = take(&off, n * cap * sizeof(inferd_pipeline_score));
    size_t at_data = off;
    for (size_t k = 0; k < n; k++) {
        int64_t L = inferd_pipeline_batch_length(p, &b->encs[k], 1);
        for (size_t j = 0; j < np; j++)
            take(&off, (size_t)L * inferd_dtype_size(inferd_pipeline_input_dtype(p, j)));
    }
    uint8_t *arena = inferd_malloc(NULL, off);
    if (!arena)
        return inferd_error_set(err, INFERD_EINTERNAL, "out of memory for %zu texts", n);
    memset(arena, 0, at_data);
    text_call *c = (text_call *)(arena + at_call);
    c->o = *o;
    c->n = n;
    c->out_index = out_index;
    c->cap = cap;
    c->reqs = (inferd_sched_request *)(arena + at_reqs);
    c->ins = (inferd_tensor *)(arena + at_ins);
    c->outs = (inferd_tensor *)(arena + at_outs);
    c->results = (inferd_text_result *)(arena + at_results);
    c->tops = (inferd_pipeline_score *)(arena + at_tops);
    atomic_init(&c->remaining, n);
    atomic_init(&c->failed, 0);

    // 3. Assemble each text's tensors at its own length; the batcher pads within a batch.
    off = at_data;
    for (size_t k = 0; k < n; k++) {
        int64_t L = inferd_pipeline_batch_length(p, &b->encs[k], 1);
        inferd_tensor pt[3];
        for (size_t j = 0; j < np; j++) {
            size_t bytes = (size_t)L * inferd_dtype_size(inferd_pipeline_input_dtype(p, j));
            pt[j] = (inferd_tensor){.data = arena + take(&off, bytes), .nbytes = bytes};
        }
        if ((rc = inferd_pipeline_assemble(p, &b->encs[k], 1, L, pt, err)) < 0) {
            inferd_free(arena);
            return rc;
        }
        for (size_t i = 0; i < ni; i++)
            c->ins[k * ni + i] = pt[map[i]];
        c->results[k].truncated = b->encs[k].truncated;
        c->reqs[k] = (inferd_sched_request){
            .inputs = &c->ins[k * ni],
            .outputs = &c->outs[k * no],
            .timeout_us = o->timeout_us,
            .done = on_text_done,
            .user = c,
        };
    }

    // 4. All texts queue together or not at all.
    if ((rc = inferd_sched_submit_all(o->queue, c->reqs, (int)n, err)) < 0) {
        inferd_free(arena);
        return rc;
    }
    if (o->stats) {
        // After submit, c may already be gone: only o's stats are touched.
        inferd_hist_record(o->stats->tokenize_ns, tokenize_ns);
        atomic_fetch_add_explicit(&o->stats->text_items, n, memory_order_relaxed);
        atomic_fetch_add_explicit(&o->stats->text_truncated, truncated, memory_order_relaxed);
    }
    return 0;
}
