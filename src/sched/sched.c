/* sched.c: see sched.h for the design.
 *
 * Lock order: inferd_sched.lock is the only lock here. Model runs, done callbacks and model
 * retain/release are always called without it, so they may take their own locks (the
 * repository's, the HTTP layer's) and may destroy queues.
 */
#include "sched/sched.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "util/alloc.h"
#include "util/clock.h"
#include "util/log.h"

#define MAX_PREFERRED 16
#define MAX_BUCKETS 32
/* Largest max_batch a queue may have; each worker's batch array holds this many requests from
 * the start, so it never moves while the worker reads it without the lock. */
#define MAX_BATCH 1024

static const int64_t default_buckets[] = {8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096};

struct inferd_sched_queue {
    inferd_sched *s;
    char name[128];
    inferd_sched_model model;
    int n_inputs, n_outputs;
    inferd_tensor_desc *inputs, *outputs; /* copies; names owned */
    int max_batch;
    int64_t max_delay_ns;
    int preferred[MAX_PREFERRED];
    int n_preferred;
    int max_queue;
    int64_t default_timeout_ns;
    int max_threads;
    int pad;
    int64_t pad_values[16];
    int64_t buckets[MAX_BUCKETS];
    int n_buckets;
    inferd_stats *stats;

    /* Guarded by s->lock. */
    inferd_sched_request *head, *tail;
    int n_pending;
    int64_t rows_pending;
    int n_with_deadline;
    int running;     /* batches of this queue running now */
    int64_t ewma_ns; /* running average batch time, 0 until the first batch */
    inferd_sched_queue *prev, *next;

    _Atomic int pending_mirror; /* n_pending, readable without the lock */
};

typedef struct worker {
    inferd_sched *s;
    int index;
    pthread_t thread;
    /* Batched input buffers, grown as needed and reused for every batch (page faults on
     * fresh buffers cost more than the copies). */
    void *bufs[16];
    size_t caps[16];
    inferd_sched_request *batch[MAX_BATCH]; /* the requests of the batch being run */
} worker;

struct inferd_sched {
    pthread_mutex_t lock;
    pthread_cond_t work_cv; /* workers: a request arrived, threads were freed, drain began */
    pthread_cond_t idle_cv; /* drain: a batch finished */
    int budget, n_workers, nice;
    worker *workers;
    int n_started;

    /* Guarded by lock. */
    int in_use;                 /* threads held by running batches */
    int borrowed;               /* threads lent to work outside batches (model loads) */
    int borrow_waiting;         /* borrowers waiting: the next freed thread is theirs */
    int running;                /* batches running */
    inferd_sched_queue *queues; /* circular doubly linked list, or NULL */
    inferd_sched_queue *rr;     /* where the next scan starts, for fairness */
    inferd_sched_job *jobs_head, *jobs_tail; /* posted jobs, oldest first */
    int jobs_running;
    int draining, stopping;

    _Atomic int in_use_mirror;
    _Atomic long long jobs_run;
};

/* A batch chosen under the lock, run without it. */
typedef struct batch {
    inferd_sched_queue *q;
    int n;    /* requests, in w->batch[0..n) */
    int rows; /* sum of their rows */
    int threads;
    int64_t start_ns;
} batch;

static int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }

/* Milliseconds since the epoch (for the statistics' last_inference). */
static int64_t wall_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}
static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

/* ---- workers ---- */

static void worker_lower_priority(inferd_sched *s, int index) {
    char name[16];
    snprintf(name, sizeof name, "inferd-work-%d", index);
    pthread_setname_np(pthread_self(), name);
    // Linux keeps the nice value per thread: PRIO_PROCESS with a tid changes only this thread,
    // and threads it creates later (its OpenMP team) inherit it.
    if (s->nice > 0 && setpriority(PRIO_PROCESS, (id_t)gettid(), s->nice) != 0)
        inferd_log_warn("worker %d: setpriority(%d) failed: %s", index, s->nice, strerror(errno));
}

static int bucket_of(const inferd_sched_queue *q, int64_t len) {
    for (int i = 0; i < q->n_buckets; i++)
        if (len <= q->buckets[i])
            return i;
    return q->n_buckets;
}

static int dim_paddable(const inferd_sched_queue *q, int i, int k) {
    return q->pad && k >= 1 && q->inputs[i].dtype != INFERD_DTYPE_STRING &&
           q->inputs[i].dims[k] < 0;
}

/* Whether b may share a batch with a (the group's oldest request). */
static int compatible(const inferd_sched_queue *q, const inferd_sched_request *a,
                      const inferd_sched_request *b) {
    for (int i = 0; i < q->n_inputs; i++) {
        const inferd_tensor *ta = &a->inputs[i], *tb = &b->inputs[i];
        for (int k = 1; k < ta->rank; k++) {
            if (ta->dims[k] == tb->dims[k])
                continue;
            if (!dim_paddable(q, i, k) || bucket_of(q, ta->dims[k]) != bucket_of(q, tb->dims[k]))
                return 0;
        }
    }
    return 1;
}

static void unlink_request(inferd_sched_queue *q, inferd_sched_request *prev,
                           inferd_sched_request *r) {
    if (prev)
        prev->next_ = r->next_;
    else
        q->head = r->next_;
    if (q->tail == r)
        q->tail = prev;
    r->next_ = NULL;
    q->n_pending--;
    q->rows_pending -= r->rows_;
    if (r->deadline_ns_)
        q->n_with_deadline--;
    atomic_store_explicit(&q->pending_mirror, q->n_pending, memory_order_relaxed);
    if (q->stats)
        atomic_fetch_sub_explicit(&q->stats->pending, 1, memory_order_relaxed);
}

/* Moves every request of q whose deadline has passed onto *expired; lowers *wake to the
 * earliest deadline still pending. */
static void collect_expired(inferd_sched_queue *q, int64_t now, inferd_sched_request **expired,
                            int64_t *wake) {
    inferd_sched_request *prev = NULL, *r = q->head;
    while (r) {
        inferd_sched_request *next = r->next_;
        if (r->deadline_ns_ && r->deadline_ns_ <= now) {
            unlink_request(q, prev, r);
            r->queue_ns = now - r->enqueue_ns_;
            r->next_ = *expired;
            *expired = r;
        } else {
            if (r->deadline_ns_)
                *wake = min64(*wake, r->deadline_ns_);
            prev = r;
        }
        r = next;
    }
}

/* Looks at the oldest request's group in q. Returns 1 and fills w->batch / b when a batch is
 * ready (leaving the requests queued), 0 otherwise with *wake lowered to when it will be. */
static int group_ready(worker *w, inferd_sched_queue *q, int64_t now, int draining, batch *b,
                       int64_t *wake) {
    inferd_sched_request *head = q->head;
    int limit = q->max_batch > 0 ? q->max_batch : head->rows_;
    int n = 0, rows = 0;
    for (inferd_sched_request *r = head; r && rows < limit; r = r->next_) {
        if (r != head && (q->max_batch == 0 || !compatible(q, head, r)))
            continue;
        if (rows + r->rows_ > limit)
            continue; // a later, smaller request may still fit
        w->batch[n++] = r;
        rows += r->rows_;
    }
    int preferred_hit = 0;
    for (int i = 0; i < q->n_preferred; i++)
        preferred_hit |= rows == q->preferred[i];
    int64_t due = head->enqueue_ns_ + q->max_delay_ns;
    if (!(rows >= limit || preferred_hit || now >= due || draining || q->max_batch == 0)) {
        *wake = min64(*wake, due);
        return 0;
    }
    // Not full and not preferred: cut at the largest preferred size a prefix reaches exactly,
    // so the rest forms the next batch rather than a ragged one.
    if (rows < limit && !preferred_hit && q->n_preferred > 0) {
        for (int p = q->n_preferred - 1; p >= 0; p--) {
            int sum = 0, cut = -1;
            for (int i = 0; i < n && sum < q->preferred[p]; i++) {
                sum += w->batch[i]->rows_;
                if (sum == q->preferred[p])
                    cut = i + 1;
            }
            if (cut > 0) {
                n = cut;
                rows = q->preferred[p];
                break;
            }
        }
    }
    b->q = q;
    b->n = n;
    b->rows = rows;
    return 1;
}

/* Threads for a batch about to start: the free threads shared among the batches that could
 * start now, one per idle worker at most. Called with the lock held, after the batch's
 * requests left their queue. */
static int choose_threads(inferd_sched *s, const inferd_sched_queue *q) {
    int free_threads = s->budget - s->in_use - s->borrowed - s->borrow_waiting;
    int idle = s->n_workers - s->running;
    int64_t demand = 1;
    inferd_sched_queue *it = s->queues;
    if (it) {
        do {
            int64_t mb = it->max_batch > 0 ? it->max_batch : 1;
            demand += (it->rows_pending + mb - 1) / mb;
            it = it->next;
        } while (it != s->queues);
    }
    int64_t share = min64(min64(demand, idle), free_threads);
    int k = (int)(free_threads / max64(share, 1));
    if (k < 1)
        k = 1;
    if (q->max_threads > 0 && k > q->max_threads)
        k = q->max_threads;
    return k;
}

/* Finds work under the lock: either expired requests (returned in *expired, to be completed
 * first) or a ready batch (returns 1, its requests unlinked). Lowers *wake to the next time
 * something becomes due. */
static int find_work(worker *w, int64_t now, batch *b, inferd_sched_request **expired,
                     int64_t *wake) {
    inferd_sched *s = w->s;
    if (!s->queues)
        return 0;
    inferd_sched_queue *q = s->rr ? s->rr : s->queues;
    inferd_sched_queue *first = q;
    int can_start = s->in_use + s->borrowed + s->borrow_waiting < s->budget;
    do {
        if (q->n_with_deadline > 0)
            collect_expired(q, now, expired, wake);
        if (q->head && can_start && group_ready(w, q, now, s->draining, b, wake)) {
            // Unlink the chosen requests (they are in queue order in w->batch).
            inferd_sched_request *prev = NULL, *r = q->head;
            int taken = 0;
            while (r && taken < b->n) {
                inferd_sched_request *next = r->next_;
                if (r == w->batch[taken]) {
                    unlink_request(q, prev, r);
                    taken++;
                } else {
                    prev = r;
                }
                r = next;
            }
            s->rr = q->next;
            return 1;
        }
        q = q->next;
    } while (q != first);
    return 0;
}

static int ensure_buf(worker *w, int i, size_t n) {
    if (w->caps[i] >= n && w->bufs[i])
        return 0;
    void *p = inferd_realloc(NULL, w->bufs[i], n ? n : 1);
    if (!p)
        return -1;
    w->bufs[i] = p;
    w->caps[i] = n;
    return 0;
}

/* Copies the overlap of src (dims sd) into dst (dims dd), both row-major of the same rank with
 * elements of esz bytes. Used both to pad (dst larger) and to slice back (dst smaller). */
static void copy_block(uint8_t *dst, const int64_t *dd, const uint8_t *src, const int64_t *sd,
                       int rank, size_t esz) {
    if (rank == 0) {
        memcpy(dst, src, esz);
        return;
    }
    size_t dstride = esz, sstride = esz;
    int same_tail = 1;
    for (int k = 1; k < rank; k++) {
        dstride *= (size_t)dd[k];
        sstride *= (size_t)sd[k];
        same_tail &= dd[k] == sd[k];
    }
    int64_t n = min64(dd[0], sd[0]);
    if (same_tail) {
        memcpy(dst, src, (size_t)n * sstride);
        return;
    }
    for (int64_t i = 0; i < n; i++)
        copy_block(dst + (size_t)i * dstride, dd + 1, src + (size_t)i * sstride, sd + 1, rank - 1,
                   esz);
}

/* Fills a padded batch buffer of n bytes of dtype with value before the rows are copied in. */
static void fill_pad(void *buf, size_t n, inferd_dtype dtype, int64_t value) {
    if (value == 0) {
        memset(buf, 0, n);
        return;
    }
    size_t esz = inferd_dtype_size(dtype), count = esz ? n / esz : 0;
    switch (dtype) {
    case INFERD_DTYPE_I64:
    case INFERD_DTYPE_U64:
        for (size_t i = 0; i < count; i++)
            ((int64_t *)buf)[i] = value;
        return;
    case INFERD_DTYPE_I32:
    case INFERD_DTYPE_U32:
        for (size_t i = 0; i < count; i++)
            ((int32_t *)buf)[i] = (int32_t)value;
        return;
    case INFERD_DTYPE_I16:
    case INFERD_DTYPE_U16:
        for (size_t i = 0; i < count; i++)
            ((int16_t *)buf)[i] = (int16_t)value;
        return;
    case INFERD_DTYPE_I8:
    case INFERD_DTYPE_U8:
    case INFERD_DTYPE_BOOL:
        memset(buf, (int)(value & 0xFF), n);
        return;
    case INFERD_DTYPE_F32:
        for (size_t i = 0; i < count; i++)
            ((float *)buf)[i] = (float)value;
        return;
    case INFERD_DTYPE_F64:
        for (size_t i = 0; i < count; i++)
            ((double *)buf)[i] = (double)value;
        return;
    default: // half floats: pad values are token ids, which never feed them
        memset(buf, 0, n);
        return;
    }
}

/* Byte offset of element idx in a STRING tensor's encoding, or -1 if malformed. */
static int64_t string_offset(const inferd_tensor *t, int64_t idx) {
    const uint8_t *p = t->data;
    size_t off = 0;
    for (int64_t i = 0; i < idx; i++) {
        if (off + 4 > t->nbytes)
            return -1;
        uint32_t len = (uint32_t)p[off] | (uint32_t)p[off + 1] << 8 | (uint32_t)p[off + 2] << 16 |
                       (uint32_t)p[off + 3] << 24;
        if (len > t->nbytes - off - 4)
            return -1;
        off += 4 + len;
    }
    return (int64_t)off;
}

static void free_outputs(inferd_tensor *outs, int n) {
    for (int j = 0; j < n; j++) {
        inferd_free(outs[j].data);
        outs[j].data = NULL;
        outs[j].nbytes = 0;
    }
}

/* Cuts request r's share (rows [row0, row0 + r->rows_)) out of the batch outputs into
 * r->outputs. pad_len[k] / pad_src[k]: the padded size of dim k and the input it came from,
 * or 0 when dim k was not padded. */
static int slice_outputs(inferd_sched_queue *q, inferd_sched_request *r, int64_t row0,
                         const inferd_tensor *outs, const int64_t *pad_len, const int *pad_src,
                         inferd_error *err) {
    for (int j = 0; j < q->n_outputs; j++) {
        const inferd_tensor *o = &outs[j];
        inferd_tensor *d = &r->outputs[j];
        memset(d, 0, sizeof *d);
        d->dtype = o->dtype;
        d->rank = o->rank;
        memcpy(d->dims, o->dims, sizeof d->dims);
        d->dims[0] = r->rows_;
        int sliced = 0;
        for (int k = 1; k < o->rank; k++) {
            int declared_dynamic = k >= q->outputs[j].rank || q->outputs[j].dims[k] < 0;
            if (pad_len[k] && declared_dynamic && o->dims[k] == pad_len[k]) {
                d->dims[k] = r->inputs[pad_src[k]].dims[k];
                sliced |= d->dims[k] != o->dims[k];
            }
        }
        int64_t row_elems = inferd_tensor_numel(o->rank - 1, o->dims + 1);
        if (o->dtype == INFERD_DTYPE_STRING) {
            if (sliced) {
                free_outputs(r->outputs, j);
                return inferd_error_set(err, INFERD_EUNSUPPORTED,
                                        "model %s: cannot cut padding from BYTES output '%s'",
                                        q->name, q->outputs[j].name);
            }
            int64_t a = string_offset(o, row0 * row_elems);
            int64_t b = a < 0 ? -1 : string_offset(o, (row0 + r->rows_) * row_elems);
            if (b < 0) {
                free_outputs(r->outputs, j);
                return inferd_error_set(err, INFERD_EINTERNAL,
                                        "model %s: malformed BYTES output '%s'", q->name,
                                        q->outputs[j].name);
            }
            d->nbytes = (size_t)(b - a);
            d->data = inferd_malloc(NULL, d->nbytes);
            if (!d->data)
                goto oom;
            memcpy(d->data, (const uint8_t *)o->data + a, d->nbytes);
            continue;
        }
        size_t esz = inferd_dtype_size(o->dtype);
        int64_t numel = inferd_tensor_numel(d->rank, d->dims);
        d->nbytes = (size_t)numel * esz;
        d->data = inferd_malloc(NULL, d->nbytes);
        if (!d->data)
            goto oom;
        const uint8_t *src = (const uint8_t *)o->data + (size_t)(row0 * row_elems) * esz;
        int64_t sd[INFERD_MAX_RANK];
        memcpy(sd, o->dims, sizeof sd);
        sd[0] = r->rows_;
        copy_block(d->data, d->dims, src, sd, d->rank, esz);
        continue;
    oom:
        free_outputs(r->outputs, j);
        return inferd_error_set(err, INFERD_EINTERNAL, "model %s: out of memory for outputs",
                                q->name);
    }
    return 0;
}

/* Checks that the model returned what the batch needs before anything is cut from it. */
static int check_outputs(const inferd_sched_queue *q, const inferd_tensor *outs, int rows,
                         inferd_error *err) {
    for (int j = 0; j < q->n_outputs; j++) {
        const inferd_tensor *o = &outs[j];
        int64_t numel =
            o->rank < 0 || o->rank > INFERD_MAX_RANK ? -1 : inferd_tensor_numel(o->rank, o->dims);
        if (numel < 0 || (numel > 0 && !o->data))
            return inferd_error_set(err, INFERD_EINTERNAL, "model %s: output '%s' is malformed",
                                    q->name, q->outputs[j].name);
        if (o->dtype != INFERD_DTYPE_STRING &&
            (size_t)numel * inferd_dtype_size(o->dtype) != o->nbytes)
            return inferd_error_set(err, INFERD_EINTERNAL,
                                    "model %s: output '%s' holds %zu bytes, its shape needs %zu",
                                    q->name, q->outputs[j].name, o->nbytes,
                                    (size_t)numel * inferd_dtype_size(o->dtype));
        if (q->max_batch > 0 && (o->rank < 1 || o->dims[0] != rows))
            return inferd_error_set(err, INFERD_EINTERNAL,
                                    "model %s: output '%s' has batch %lld, the batch had %d rows",
                                    q->name, q->outputs[j].name,
                                    (long long)(o->rank ? o->dims[0] : 0), rows);
    }
    return 0;
}

/* Runs one request of a failed batch on its own and completes it. */
static void run_alone(inferd_sched_queue *q, inferd_sched_request *req, int64_t start_ns,
                      int threads) {
    inferd_tensor outs[16];
    memset(outs, 0, sizeof outs);
    inferd_error err = {0};
    int64_t t0 = inferd_now_ns();
    int rc = q->model.run(q->model.ctx, req->inputs, outs, threads, &err);
    req->compute_ns = inferd_now_ns() - t0;
    if (rc == 0 && (rc = check_outputs(q, outs, req->rows_, &err)) < 0)
        free_outputs(outs, q->n_outputs);
    if (rc < 0 && !err.msg[0])
        inferd_error_set(&err, rc, "model %s: run failed", q->name);
    req->queue_ns = start_ns - req->enqueue_ns_;
    req->batch_size = req->rows_;
    req->threads = threads;
    if (q->stats) {
        atomic_fetch_add_explicit(&q->stats->executions, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&q->stats->inferences, (uint64_t)req->rows_,
                                  memory_order_relaxed);
        atomic_store_explicit(&q->stats->last_batch_ms, wall_ms(), memory_order_relaxed);
        inferd_hist_record(q->stats->batch_size, req->rows_);
        inferd_hist_record(q->stats->queue_ns, req->queue_ns);
        inferd_hist_record(q->stats->compute_ns, req->compute_ns);
    }
    if (rc == 0)
        memcpy(req->outputs, outs, sizeof outs[0] * (size_t)q->n_outputs);
    req->done(req, rc, rc == 0 ? NULL : &err);
}

/* Runs batch b without the lock and completes its requests. */
static void run_batch(worker *w, batch *b) {
    inferd_sched_queue *q = b->q;
    inferd_tensor ins[16];
    inferd_tensor outs[16];
    memset(outs, 0, sizeof outs);
    int64_t pad_len[INFERD_MAX_RANK] = {0};
    int pad_src[INFERD_MAX_RANK] = {0};
    inferd_error err = {0};
    int rc = 0;
    const inferd_tensor *run_inputs;

    if (b->n == 1) {
        run_inputs = w->batch[0]->inputs; // nothing to pad or concatenate
    } else {
        for (int i = 0; i < q->n_inputs && rc == 0; i++) {
            const inferd_tensor *t0 = &w->batch[0]->inputs[i];
            inferd_tensor *t = &ins[i];
            memset(t, 0, sizeof *t);
            t->dtype = t0->dtype;
            t->rank = t0->rank;
            memcpy(t->dims, t0->dims, sizeof t->dims);
            t->dims[0] = b->rows;
            int padded = 0;
            for (int r = 1; r < b->n; r++)
                for (int k = 1; k < t->rank; k++)
                    if (w->batch[r]->inputs[i].dims[k] != t->dims[k]) {
                        t->dims[k] = max64(t->dims[k], w->batch[r]->inputs[i].dims[k]);
                        padded = 1;
                    }
            for (int k = 1; k < t->rank && padded; k++)
                if (!pad_len[k]) {
                    for (int r = 0; r < b->n; r++)
                        if (w->batch[r]->inputs[i].dims[k] != t->dims[k]) {
                            pad_len[k] = t->dims[k];
                            pad_src[k] = i;
                            break;
                        }
                }
            size_t total;
            if (t->dtype == INFERD_DTYPE_STRING) {
                total = 0;
                for (int r = 0; r < b->n; r++)
                    total += w->batch[r]->inputs[i].nbytes;
            } else {
                total = (size_t)inferd_tensor_numel(t->rank, t->dims) * inferd_dtype_size(t->dtype);
            }
            if (ensure_buf(w, i, total) < 0) {
                rc = inferd_error_set(&err, INFERD_EINTERNAL, "model %s: out of memory batching",
                                      q->name);
                break;
            }
            t->data = w->bufs[i];
            t->nbytes = total;
            if (padded)
                fill_pad(t->data, total, t->dtype, q->pad_values[i]);
            uint8_t *dst = t->data;
            size_t esz = inferd_dtype_size(t->dtype);
            for (int r = 0; r < b->n; r++) {
                const inferd_tensor *src = &w->batch[r]->inputs[i];
                if (t->dtype == INFERD_DTYPE_STRING || !padded) {
                    memcpy(dst, src->data, src->nbytes);
                    dst += src->nbytes;
                } else {
                    int64_t dd[INFERD_MAX_RANK];
                    memcpy(dd, t->dims, sizeof dd);
                    dd[0] = src->dims[0];
                    copy_block(dst, dd, src->data, src->dims, t->rank, esz);
                    dst += (size_t)inferd_tensor_numel(t->rank, dd) * esz;
                }
            }
        }
        run_inputs = ins;
    }

    int64_t t0 = inferd_now_ns();
    if (rc == 0)
        rc = q->model.run(q->model.ctx, run_inputs, outs, b->threads, &err);
    int64_t compute_ns = inferd_now_ns() - t0;
    if (rc == 0 && (rc = check_outputs(q, outs, b->rows, &err)) < 0)
        free_outputs(outs, q->n_outputs);
    if (rc < 0 && !err.msg[0])
        inferd_error_set(&err, rc, "model %s: run failed", q->name);

    // A batch refused for its inputs (a token id outside the vocabulary, a sequence longer
    // than the position table) is refused for some request's data, and the others must not
    // fail with it: run each request alone, so only the guilty ones get the error. The same
    // for a batch too large to plan, where each request alone may fit.
    if ((rc == INFERD_EINVAL || rc == INFERD_ETOOLARGE) && b->n > 1) {
        inferd_log_debug("model %s: a batch of %d requests failed on its inputs (%s); running "
                         "each alone",
                         q->name, b->n, err.msg);
        for (int r = 0; r < b->n; r++)
            run_alone(q, w->batch[r], b->start_ns, b->threads);
        return;
    }

    if (q->stats) {
        atomic_fetch_add_explicit(&q->stats->executions, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&q->stats->inferences, (uint64_t)b->rows, memory_order_relaxed);
        atomic_store_explicit(&q->stats->last_batch_ms, wall_ms(), memory_order_relaxed);
        inferd_hist_record(q->stats->batch_size, b->rows);
    }

    int64_t row0 = 0;
    for (int r = 0; r < b->n; r++) {
        inferd_sched_request *req = w->batch[r];
        req->queue_ns = b->start_ns - req->enqueue_ns_;
        req->compute_ns = compute_ns;
        req->batch_size = b->rows;
        req->threads = b->threads;
        if (q->stats) {
            inferd_hist_record(q->stats->queue_ns, req->queue_ns);
            inferd_hist_record(q->stats->compute_ns, compute_ns);
        }
        int st = rc;
        inferd_error rerr = err;
        if (st == 0) {
            if (b->n == 1) {
                memcpy(req->outputs, outs, sizeof outs[0] * (size_t)q->n_outputs);
                memset(outs, 0, sizeof outs);
            } else {
                st = slice_outputs(q, req, row0, outs, pad_len, pad_src, &rerr);
            }
        }
        row0 += req->rows_;
        req->done(req, st, st == 0 ? NULL : &rerr);
    }
    free_outputs(outs, q->n_outputs);
}

static void complete_expired(inferd_sched_request *list) {
    while (list) {
        inferd_sched_request *r = list;
        list = r->next_;
        r->next_ = NULL;
        inferd_error err;
        inferd_error_set(&err, INFERD_EUNAVAIL,
                         "request timed out after %lld us in the queue, before a batch could "
                         "take it",
                         (long long)(r->queue_ns / 1000));
        r->done(r, INFERD_EUNAVAIL, &err);
    }
}

static int any_pending(const inferd_sched *s) {
    const inferd_sched_queue *q = s->queues;
    if (!q)
        return 0;
    do {
        if (q->head)
            return 1;
        q = q->next;
    } while (q != s->queues);
    return 0;
}

static void timed_wait(inferd_sched *s, int64_t wake_ns) {
    struct timespec ts = {.tv_sec = wake_ns / 1000000000, .tv_nsec = wake_ns % 1000000000};
    pthread_cond_timedwait(&s->work_cv, &s->lock, &ts);
}

/* Runs the oldest posted job on one thread of the budget. Called and returns with the lock
 * held; the job runs without it. */
static void run_job(inferd_sched *s) {
    inferd_sched_job *job = s->jobs_head;
    s->jobs_head = job->next_;
    if (!s->jobs_head)
        s->jobs_tail = NULL;
    job->next_ = NULL;
    s->in_use++;
    s->running++;
    s->jobs_running++;
    atomic_store_explicit(&s->in_use_mirror, s->in_use + s->borrowed, memory_order_relaxed);
    if (s->jobs_head && s->in_use + s->borrowed + s->borrow_waiting < s->budget)
        pthread_cond_signal(&s->work_cv); // another idle worker may take the next job
    pthread_mutex_unlock(&s->lock);

    job->run(job); // may submit requests, post jobs, free job
    atomic_fetch_add_explicit(&s->jobs_run, 1, memory_order_relaxed);

    pthread_mutex_lock(&s->lock);
    s->in_use--;
    s->running--;
    s->jobs_running--;
    atomic_store_explicit(&s->in_use_mirror, s->in_use + s->borrowed, memory_order_relaxed);
    if (s->borrow_waiting || any_pending(s) || s->jobs_head || s->draining || s->stopping)
        pthread_cond_broadcast(&s->work_cv);
    pthread_cond_broadcast(&s->idle_cv);
}

static void *worker_main(void *arg) {
    worker *w = arg;
    inferd_sched *s = w->s;
    worker_lower_priority(s, w->index);
    pthread_mutex_lock(&s->lock);
    for (;;) {
        if (s->jobs_head && s->in_use + s->borrowed + s->borrow_waiting < s->budget) {
            run_job(s);
            continue;
        }
        int64_t now = inferd_now_ns();
        int64_t wake = INT64_MAX;
        inferd_sched_request *expired = NULL;
        batch b = {0};
        int found = find_work(w, now, &b, &expired, &wake);
        if (expired && !found) {
            pthread_mutex_unlock(&s->lock);
            complete_expired(expired);
            pthread_mutex_lock(&s->lock);
            pthread_cond_broadcast(&s->idle_cv);
            continue;
        }
        if (found) {
            inferd_sched_queue *q = b.q;
            b.threads = choose_threads(s, q);
            b.start_ns = now;
            s->in_use += b.threads;
            s->running++;
            q->running++;
            atomic_store_explicit(&s->in_use_mirror, s->in_use + s->borrowed, memory_order_relaxed);
            // Pass the baton: another idle worker may start what is left.
            if (s->in_use + s->borrowed + s->borrow_waiting < s->budget && any_pending(s))
                pthread_cond_signal(&s->work_cv);
            // The batch's own reference: its requests may all complete (and drop theirs)
            // before the worker is done with q.
            if (q->model.retain)
                q->model.retain(q->model.ctx);
            pthread_mutex_unlock(&s->lock);

            if (expired)
                complete_expired(expired);
            run_batch(w, &b);

            pthread_mutex_lock(&s->lock);
            s->in_use -= b.threads;
            s->running--;
            q->running--;
            int64_t ns = inferd_now_ns() - b.start_ns;
            q->ewma_ns = q->ewma_ns ? q->ewma_ns + (ns - q->ewma_ns) / 8 : ns;
            atomic_store_explicit(&s->in_use_mirror, s->in_use + s->borrowed, memory_order_relaxed);
            // Threads were freed: wake the workers only when there is work they may now start
            // (an idle worker woken for nothing costs two context switches a batch).
            if (s->borrow_waiting || any_pending(s) || s->jobs_head || s->draining || s->stopping)
                pthread_cond_broadcast(&s->work_cv);
            pthread_cond_broadcast(&s->idle_cv);
            inferd_sched_model m = q->model;
            pthread_mutex_unlock(&s->lock);
            // Last, without the lock: this may drop the final reference and destroy q.
            if (m.release)
                m.release(m.ctx);
            pthread_mutex_lock(&s->lock);
            continue;
        }
        if (s->stopping && !any_pending(s) && !s->jobs_head)
            break;
        if (wake != INT64_MAX)
            timed_wait(s, wake);
        else
            pthread_cond_wait(&s->work_cv, &s->lock);
    }
    pthread_mutex_unlock(&s->lock);
    return NULL;
}

/* ---- public ---- */

int inferd_sched_create(const inferd_sched_options *opts, inferd_sched **out, inferd_error *err) {
    *out = NULL;
    if (opts->threads < 1 || opts->threads > 4096)
        return inferd_error_set(err, INFERD_EINVAL, "threads must be from 1 to 4096, got %d",
                                opts->threads);
    int workers = opts->workers > 0 ? opts->workers : opts->threads;
    if (workers > 4096)
        return inferd_error_set(err, INFERD_EINVAL, "workers must be at most 4096, got %d",
                                workers);
    if (opts->worker_nice < 0 || opts->worker_nice > 19)
        return inferd_error_set(err, INFERD_EINVAL, "worker nice must be from 0 to 19, got %d",
                                opts->worker_nice);
    inferd_sched *s = inferd_calloc(NULL, 1, sizeof *s);
    if (!s)
        return inferd_error_set(err, INFERD_EINTERNAL, "out of memory");
    s->budget = opts->threads;
    s->n_workers = workers;
    s->nice = opts->worker_nice;
    pthread_mutex_init(&s->lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->work_cv, &ca);
    pthread_cond_init(&s->idle_cv, &ca);
    pthread_condattr_destroy(&ca);
    s->workers = inferd_calloc(NULL, (size_t)workers, sizeof *s->workers);
    if (!s->workers) {
        inferd_sched_destroy(s);
        return inferd_error_set(err, INFERD_EINTERNAL, "out of memory");
    }
    for (int i = 0; i < workers; i++) {
        s->workers[i].s = s;
        s->workers[i].index = i;
    }
    for (int i = 0; i < workers; i++) {
        int rc = pthread_create(&s->workers[i].thread, NULL, worker_main, &s->workers[i]);
        if (rc != 0) {
            inferd_sched_destroy(s);
            return inferd_error_set(err, INFERD_EINTERNAL, "cannot start worker thread: %s",
                                    strerror(rc));
        }
        s->n_started++;
    }
    *out = s;
    return 0;
}

void inferd_sched_drain(inferd_sched *s) {
    if (!s)
        return;
    pthread_mutex_lock(&s->lock);
    // Posted jobs were accepted work (a body being parsed): they finish first, and the
    // requests they submit are still taken.
    while ((s->jobs_head || s->jobs_running > 0) && s->n_started > 0)
        pthread_cond_wait(&s->idle_cv, &s->lock);
    s->draining = 1;
    pthread_cond_broadcast(&s->work_cv);
    while ((any_pending(s) || s->running > 0) && s->n_started > 0)
        pthread_cond_wait(&s->idle_cv, &s->lock);
    pthread_mutex_unlock(&s->lock);
}

void inferd_sched_destroy(inferd_sched *s) {
    if (!s)
        return;
    inferd_sched_drain(s);
    pthread_mutex_lock(&s->lock);
    s->stopping = 1;
    pthread_cond_broadcast(&s->work_cv);
    pthread_cond_broadcast(&s->idle_cv);
    pthread_mutex_unlock(&s->lock);
    for (int i = 0; i < s->n_started; i++)
        pthread_join(s->workers[i].thread, NULL);
    if (INFERD_NEVER(s->queues != NULL))
        inferd_log_error("scheduler destroyed with queues still registered");
    for (int i = 0; s->workers && i < s->n_workers; i++) {
        for (int j = 0; j < 16; j++)
            inferd_free(s->workers[i].bufs[j]);
    }
    inferd_free(s->workers);
    pthread_cond_destroy(&s->work_cv);
    pthread_cond_destroy(&s->idle_cv);
    pthread_mutex_destroy(&s->lock);
    inferd_free(s);
}

static void free_descs(inferd_tensor_desc *d, int n) {
    for (int i = 0; d && i < n; i++)
        inferd_free((void *)d[i].name);
    inferd_free(d);
}

static inferd_tensor_desc *copy_descs(const inferd_tensor_desc *src, int n) {
    inferd_tensor_desc *d = inferd_calloc(NULL, (size_t)(n > 0 ? n : 1), sizeof *d);
    if (!d)
        return NULL;
    for (int i = 0; i < n; i++) {
        d[i] = src[i];
        d[i].name = inferd_strdup(NULL, src[i].name ? src[i].name : "");
        if (!d[i].name) {
            free_descs(d, i);
            return NULL;
        }
    }
    return d;
}

int inferd_sched_queue_create(inferd_sched *s, const inferd_sched_queue_options *o,
                              inferd_sched_queue **out, inferd_error *err) {
    *out = NULL;
    const char *name = o->name ? o->name : "?";
    if (!o->model.run)
        return inferd_error_set(err, INFERD_EINVAL, "model %s: no run function", name);
    if (o->n_inputs < 1 || o->n_inputs > 16 || o->n_outputs < 1 || o->n_outputs > 16)
        return inferd_error_set(err, INFERD_EUNSUPPORTED,
                                "model %s: %d inputs and %d outputs (1 to 16 of each supported)",
                                name, o->n_inputs, o->n_outputs);
    if (o->max_batch < 0 || o->max_batch > MAX_BATCH || o->n_preferred < 0 ||
        o->n_preferred > MAX_PREFERRED || o->n_buckets < 0 || o->n_buckets > MAX_BUCKETS ||
        o->max_queue < 0 || o->max_delay_us < 0 || o->default_timeout_us < 0 || o->max_threads < 0)
        return inferd_error_set(err, INFERD_EINVAL, "model %s: invalid queue options", name);
    for (int i = 0; i < o->n_inputs; i++)
        if (o->inputs[i].rank < 0 || o->inputs[i].rank > INFERD_MAX_RANK ||
            (o->max_batch > 0 && o->inputs[i].rank < 1))
            return inferd_error_set(err, INFERD_EUNSUPPORTED,
                                    "model %s: input '%s' has rank %d, batching needs >= 1", name,
                                    o->inputs[i].name, o->inputs[i].rank);
    inferd_sched_queue *q = inferd_calloc(NULL, 1, sizeof *q);
    if (!q)
        return inferd_error_set(err, INFERD_EINTERNAL, "out of memory");
    q->s = s;
    snprintf(q->name, sizeof q->name, "%s", name);
    q->model = o->model;
    q->n_inputs = o->n_inputs;
    q->n_outputs = o->n_outputs;
    q->inputs = copy_descs(o->inputs, o->n_inputs);
    q->outputs = copy_descs(o->outputs, o->n_outputs);
    if (!q->inputs || !q->outputs) {
        free_descs(q->inputs, q->n_inputs);
        free_descs(q->outputs, q->n_outputs);
        inferd_free(q);
        return inferd_error_set(err, INFERD_EINTERNAL, "out of memory");
    }
    q->max_batch = o->max_batch;
    q->max_delay_ns = o->max_delay_us * 1000;
    q->n_preferred = o->n_preferred;
    for (int i = 0; i < o->n_preferred; i++)
        q->preferred[i] = o->preferred_sizes[i];
    q->max_queue = o->max_queue;
    q->default_timeout_ns = o->default_timeout_us * 1000;
    q->max_threads = o->max_threads;
    q->pad = o->pad;
    for (int i = 0; o->pad_values && i < o->n_inputs; i++)
        q->pad_values[i] = o->pad_values[i];
    if (o->n_buckets > 0) {
        q->n_buckets = o->n_buckets;
        memcpy(q->buckets, o->buckets, sizeof q->buckets[0] * (size_t)o->n_buckets);
    } else {
        q->n_buckets = (int)(sizeof default_buckets / sizeof default_buckets[0]);
        memcpy(q->buckets, default_buckets, sizeof default_buckets);
    }
    q->stats = o->stats;
    atomic_init(&q->pending_mirror, 0);

    pthread_mutex_lock(&s->lock);
    if (!s->queues) {
        q->next = q->prev = q;
        s->queues = q;
    } else {
        q->next = s->queues;
        q->prev = s->queues->prev;
        q->prev->next = q;
        s->queues->prev = q;
    }
    pthread_mutex_unlock(&s->lock);
    *out = q;
    return 0;
}

void inferd_sched_queue_destroy(inferd_sched_queue *q) {
    if (!q)
        return;
    inferd_sched *s = q->s;
    pthread_mutex_lock(&s->lock);
    if (INFERD_NEVER(q->head != NULL || q->running > 0))
        inferd_log_error("queue %s destroyed while busy", q->name);
    if (q->next) {
        if (q->next == q) {
            s->queues = NULL;
        } else {
            q->prev->next = q->next;
            q->next->prev = q->prev;
            if (s->queues == q)
                s->queues = q->next;
        }
        if (s->rr == q)
            s->rr = s->queues;
    }
    pthread_mutex_unlock(&s->lock);
    free_descs(q->inputs, q->n_inputs);
    free_descs(q->outputs, q->n_outputs);
    inferd_free(q);
}

/* Checks req's inputs against the queue's model before it may join a batch: the batcher
 * copies by these dims, so they must be exact. */
static int validate(const inferd_sched_queue *q, const inferd_sched_request *req, int *rows,
                    inferd_error *err) {
    if (!req->inputs || !req->outputs || !req->done)
        return inferd_error_set(err, INFERD_EINVAL, "request without inputs, outputs or done");
    int first = q->max_batch > 0 ? 1 : 0;
    *rows = 1;
    for (int i = 0; i < q->n_inputs; i++) {
        const inferd_tensor *t = &req->inputs[i];
        const inferd_tensor_desc *d = &q->inputs[i];
        if (t->dtype != d->dtype)
            return inferd_error_set(err, INFERD_EINVAL, "input '%s': datatype %s, expected %s",
                                    d->name, inferd_dtype_name(t->dtype),
                                    inferd_dtype_name(d->dtype));
        if (t->rank != d->rank)
            return inferd_error_set(err, INFERD_EINVAL, "input '%s': %d dims, expected %d", d->name,
                                    t->rank, d->rank);
        for (int k = 0; k < t->rank; k++) {
            if (t->dims[k] < 1)
                return inferd_error_set(err, INFERD_EINVAL, "input '%s': dim %d is %lld", d->name,
                                        k, (long long)t->dims[k]);
            if (k >= first && d->dims[k] >= 0 && t->dims[k] != d->dims[k])
                return inferd_error_set(err, INFERD_EINVAL,
                                        "input '%s': dim %d is %lld, expected %lld", d->name, k,
                                        (long long)t->dims[k], (long long)d->dims[k]);
        }
        int64_t numel = inferd_tensor_numel(t->rank, t->dims);
        if (numel < 0)
            return inferd_error_set(err, INFERD_EINVAL, "input '%s': too many elements", d->name);
        if (t->dtype == INFERD_DTYPE_STRING
                ? t->nbytes < (size_t)numel * 4
                : t->nbytes != (size_t)numel * inferd_dtype_size(t->dtype))
            return inferd_error_set(err, INFERD_EINVAL,
                                    "input '%s': %zu bytes do not match its shape", d->name,
                                    t->nbytes);
        if (numel > 0 && !t->data)
            return inferd_error_set(err, INFERD_EINVAL, "input '%s': no data", d->name);
        if (q->max_batch > 0) {
            if (i == 0)
                *rows = (int)min64(t->dims[0], INT32_MAX);
            else if (t->dims[0] != *rows)
                return inferd_error_set(err, INFERD_EINVAL,
                                        "input '%s': batch %lld differs from input '%s' batch %d",
                                        d->name, (long long)t->dims[0], q->inputs[0].name, *rows);
        }
    }
    if (q->max_batch > 0 && *rows > q->max_batch)
        return inferd_error_set(err, INFERD_EINVAL, "batch of %d exceeds max_batch_size %d", *rows,
                                q->max_batch);
    return 0;
}

int inferd_sched_submit(inferd_sched_queue *q, inferd_sched_request *req, inferd_error *err) {
    return inferd_sched_submit_all(q, req, 1, err);
}

int inferd_sched_submit_all(inferd_sched_queue *q, inferd_sched_request *reqs, int n,
                            inferd_error *err) {
    if (n < 1 || !reqs)
        return inferd_error_set(err, INFERD_EINVAL, "no requests to submit");
    // Every request is checked before any is queued, so a bad one leaves nothing behind.
    int64_t rows = 0;
    for (int k = 0; k < n; k++) {
        int r = 1;
        int rc = validate(q, &reqs[k], &r, err);
        if (rc < 0) {
            if (n > 1)
                inferd_error_prefix(err, "request %d of %d: ", k, n);
            return rc;
        }
        reqs[k].rows_ = r;
        rows += r;
    }
    inferd_sched *s = q->s;
    int64_t now = inferd_now_ns();
    pthread_mutex_lock(&s->lock);
    if (s->draining) {
        pthread_mutex_unlock(&s->lock);
        return inferd_error_set(err, INFERD_EUNAVAIL, "the server is shutting down");
    }
    if (q->max_queue > 0 && q->n_pending > 0 && q->n_pending + n > q->max_queue) {
        int pending = q->n_pending;
        pthread_mutex_unlock(&s->lock);
        if (n == 1)
            return inferd_error_set(err, INFERD_EBUSY,
                                    "model %s: queue full (%d requests waiting, max_queue_size "
                                    "%d)",
                                    q->name, pending, q->max_queue);
        return inferd_error_set(err, INFERD_EBUSY,
                                "model %s: queue full (%d requests waiting, %d more would exceed "
                                "max_queue_size %d)",
                                q->name, pending, n, q->max_queue);
    }
    // The deadline check uses the latest deadline of the group: the group's last request.
    for (int k = 0; k < n; k++) {
        int64_t timeout_ns =
            reqs[k].timeout_us > 0 ? reqs[k].timeout_us * 1000 : q->default_timeout_ns;
        reqs[k].deadline_ns_ = timeout_ns > 0 ? now + timeout_ns : 0;
    }
    int64_t timeout_ns = reqs[n - 1].deadline_ns_ ? reqs[n - 1].deadline_ns_ - now : 0;
    if (timeout_ns > 0 && q->ewma_ns > 0) {
        // Batches of work up to and including these requests', run `parallel` at a time; the
        // last of them waits in the queue for the waves before its own. Its own batch is not
        // counted: with nothing ahead a request is always admitted, whatever the average says
        // (one slow batch must not refuse everything from then on, as nothing would run to
        // bring the average back down).
        int64_t mb = q->max_batch > 0 ? q->max_batch : 1;
        int64_t batches = (q->rows_pending + rows + mb - 1) / mb;
        int64_t parallel = min64(s->n_workers, s->budget);
        int64_t waves = (batches + parallel - 1) / max64(parallel, 1);
        int64_t est = (waves - 1) * q->ewma_ns;
        if (est > timeout_ns) {
            pthread_mutex_unlock(&s->lock);
            return inferd_error_set(err, INFERD_EUNAVAIL,
                                    "model %s: cannot be served within the %lld us timeout "
                                    "(about %lld us of work is queued up to it)",
                                    q->name, (long long)(timeout_ns / 1000),
                                    (long long)(est / 1000));
        }
    }
    for (int k = 0; k < n; k++) {
        inferd_sched_request *req = &reqs[k];
        req->next_ = NULL;
        req->enqueue_ns_ = now;
        req->queue_ns = req->compute_ns = 0;
        req->batch_size = req->threads = 0;
        if (q->tail)
            q->tail->next_ = req;
        else
            q->head = req;
        q->tail = req;
        q->n_pending++;
        q->rows_pending += req->rows_;
        if (req->deadline_ns_)
            q->n_with_deadline++;
    }
    atomic_store_explicit(&q->pending_mirror, q->n_pending, memory_order_relaxed);
    if (q->stats)
        atomic_fetch_add_explicit(&q->stats->pending, n, memory_order_relaxed);
    // More than one request may make more than one batch ready: wake as many workers.
    if (n > 1)
        pthread_cond_broadcast(&s->work_cv);
    else
        pthread_cond_signal(&s->work_cv);
    pthread_mutex_unlock(&s->lock);
    return 0;
}

int inferd_sched_post(inferd_sched *s, inferd_sched_job *job, inferd_error *err) {
    pthread_mutex_lock(&s->lock);
    if (s->stopping || s->n_started == 0) {
        pthread_mutex_unlock(&s->lock);
        return inferd_error_set(err, INFERD_EUNAVAIL, "the scheduler is stopping");
    }
    job->next_ = NULL;
    if (s->jobs_tail)
        s->jobs_tail->next_ = job;
    else
        s->jobs_head = job;
    s->jobs_tail = job;
    pthread_cond_signal(&s->work_cv);
    pthread_mutex_unlock(&s->lock);
    return 0;
}

int inferd_sched_queue_pending(const inferd_sched_queue *q) {
    return atomic_load_explicit(&q->pending_mirror, memory_order_relaxed);
}

int inferd_sched_borrow_thread(inferd_sched *s, inferd_error *err) {
    pthread_mutex_lock(&s->lock);
    s->borrow_waiting++;
    while (s->in_use + s->borrowed >= s->budget && !s->stopping)
        pthread_cond_wait(&s->idle_cv, &s->lock);
    s->borrow_waiting--;
    int rc = 0;
    if (s->stopping) {
        rc = inferd_error_set(err, INFERD_EUNAVAIL, "the scheduler is stopping");
    } else {
        s->borrowed++;
        atomic_store_explicit(&s->in_use_mirror, s->in_use + s->borrowed, memory_order_relaxed);
    }
    pthread_cond_broadcast(&s->work_cv); // a waiting borrower no longer holds threads back
    pthread_mutex_unlock(&s->lock);
    return rc;
}

void inferd_sched_return_thread(inferd_sched *s) {
    pthread_mutex_lock(&s->lock);
    if (INFERD_ALWAYS(s->borrowed > 0))
        s->borrowed--;
    atomic_store_explicit(&s->in_use_mirror, s->in_use + s->borrowed, memory_order_relaxed);
    pthread_cond_broadcast(&s->work_cv); // threads were freed
    pthread_mutex_unlock(&s->lock);
}

int inferd_sched_threads(const inferd_sched *s) { return s->budget; }
int inferd_sched_workers(const inferd_sched *s) { return s->n_workers; }
long long inferd_sched_jobs_run(const inferd_sched *s) {
    return atomic_load_explicit(&s->jobs_run, memory_order_relaxed);
}
int inferd_sched_threads_in_use(const inferd_sched *s) {
    return atomic_load_explicit(&s->in_use_mirror, memory_order_relaxed);
}
