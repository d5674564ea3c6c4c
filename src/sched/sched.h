/* sched.h: per model version queues, the dynamic batcher, the worker pool and the thread budget.
 *
 * DESIGN
 * One inferd_sched per process owns a fixed pool of worker threads and a budget of compute
 * threads (--threads, default: the cores we may run on). Every loaded model version has an
 * inferd_sched_queue. A request is validated and appended to its queue by the HTTP thread
 * that parsed it (inferd_sched_submit never blocks on inference: it takes the scheduler lock
 * for a few list operations). Idle workers scan the queues round-robin for a batch that is
 * ready: the oldest request's group has max_batch rows, or a preferred size, or the oldest
 * request has waited max_queue_delay_us, or the scheduler is draining. A group is the oldest
 * request plus every later request whose non-batch dims are equal to its own (as Triton
 * batches), or, with pad_dims, whose dynamic dims fall in the same length bucket; members are
 * then padded (with zeros, or each input's pad value) to the largest size in the batch and
 * each output dim that comes back at the padded size is cut back to the request's own size.
 *
 * Thread budget: a worker that takes a batch also takes k threads from the budget and runs the
 * batch with an OpenMP team of k (through the model's run), so the threads held by running
 * batches never exceed the budget. k adapts to load: the free threads are shared among the
 * batches that could start now (this one plus the queued work, at most one per idle worker),
 * so a lone request runs on every free thread while a deep queue runs many batches at one
 * thread each. A worker that finds no free thread waits. The budget is held until the batch's
 * done callbacks have returned, so response formatting is counted too.
 *
 * Jobs: other work for the compute threads (inferd_sched_post: parsing a large body, so that
 * an HTTP thread is not held by it) is run by the workers too, one thread of the budget each,
 * before any batch.
 *
 * Priorities: workers lower their own priority (setpriority on their tid, --worker-nice) when
 * they start; the OpenMP team threads they create inherit it, so compute always yields to
 * HTTP threads.
 *
 * Threads: n_workers worker threads, plus up to (threads - 1) OpenMP team members per worker
 * created lazily by the runtime and parked passively (futex) between batches. At most
 * `threads` of all these run at any moment.
 *
 * Admission: inferd_sched_submit refuses at once (the caller answers 429 or 503) when the
 * queue holds max_queue requests (INFERD_EBUSY), or when the request has a deadline that the
 * work already queued ahead of it would miss by the queue's running average batch time
 * (INFERD_EUNAVAIL), or while draining (INFERD_EUNAVAIL). A queued request whose deadline
 * passes before it joins a batch is completed with INFERD_EUNAVAIL by the next worker that
 * scans the queues; workers sleep only until the earliest deadline or batch delay.
 */
#ifndef INFERD_SCHED_SCHED_H
#define INFERD_SCHED_SCHED_H

#include <stdint.h>

#include "sched/stats.h"
#include "util/error.h"
#include "util/tensor.h"

typedef struct inferd_sched inferd_sched;
typedef struct inferd_sched_queue inferd_sched_queue;
typedef struct inferd_sched_request inferd_sched_request;

typedef struct inferd_sched_options {
    int threads;     /* compute thread budget, >= 1 */
    int workers;     /* worker threads, >= 1; 0: as many as threads */
    int worker_nice; /* nice increment for workers and their teams, 0..19 */
} inferd_sched_options;

/* The model a queue runs, as a small table so tests can fake it (the server's forwards to
 * inferd_backend_run through the repository). */
typedef struct inferd_sched_model {
    /* Runs one batch: inputs[i] for each of the queue's inputs (dim 0 is the batch when
     * max_batch > 0). On success fills every outputs[j] with dims and a buffer from
     * inferd_malloc(NULL) that the scheduler frees; on failure leaves nothing to free.
     * Called on a worker thread, without scheduler locks, possibly concurrently. */
    int (*run)(void *ctx, const inferd_tensor *inputs, inferd_tensor *outputs, int threads,
               inferd_error *err);
    /* Take and drop a reference on ctx; a running batch holds one, so the model cannot go
     * away under it. Either may be NULL. release is called without scheduler locks and may
     * destroy the queue (inferd_sched_queue_destroy) as its owner's last reference drops. */
    void (*retain)(void *ctx);
    void (*release)(void *ctx);
    void *ctx;
} inferd_sched_model;

typedef struct inferd_sched_queue_options {
    const char *name; /* for messages and logs, e.g. "bert:3"; copied */
    inferd_sched_model model;
    int n_inputs; /* the model's inputs and outputs; copied (names too) */
    const inferd_tensor_desc *inputs;
    int n_outputs;
    const inferd_tensor_desc *outputs;
    int max_batch;              /* rows per batch; 0: no batch dim, one request per run */
    int64_t max_delay_us;       /* wait this long for a fuller batch; 0: never wait */
    const int *preferred_sizes; /* ascending batch sizes to prefer; may be NULL */
    int n_preferred;            /* at most 16 */
    int max_queue;              /* queued requests before INFERD_EBUSY; 0: unlimited */
    int64_t default_timeout_us; /* for requests without their own; 0: none */
    int max_threads;            /* cap on threads per batch; 0: the budget */
    int pad;                    /* pad dynamic dims so different sizes share a batch */
    const int64_t *pad_values;  /* one per input: the value padding fills it with (a pipeline's
                                   pad id for input_ids); NULL: zeros; copied */
    const int64_t *buckets;     /* ascending length bucket bounds for padded dims; copied */
    int n_buckets;              /* 0 with pad: powers of two from 8 to 4096 */
    inferd_stats *stats;        /* where timings go; may be NULL; must outlive the queue */
} inferd_sched_queue_options;

/* Completion: status is 0 or a negative INFERD_E* code with err filled. Called exactly once
 * per submitted request, on a worker thread, without scheduler locks. */
typedef void (*inferd_sched_done_fn)(inferd_sched_request *req, int status,
                                     const inferd_error *err);

/* A request is caller-allocated. Set the "in" fields, submit, and do not touch it until done
 * runs; then the "out" fields are valid. */
struct inferd_sched_request {
    /* in */
    const inferd_tensor *inputs; /* one per queue input, in model order; caller-owned, valid
                                    until done */
    inferd_tensor *outputs;      /* room for one per queue output; on status 0 each gets dims
                                    and a buffer from inferd_malloc that done's side frees */
    int64_t timeout_us;          /* 0: the queue's default_timeout_us; > 0: this request's */
    inferd_sched_done_fn done;
    void *user;
    /* out, valid in done */
    int64_t queue_ns;   /* submit to batch start (or to expiry) */
    int64_t compute_ns; /* the batch's model run */
    int batch_size;     /* rows in the batch this request ran in */
    int threads;        /* team size the batch ran with */
    /* private to sched */
    inferd_sched_request *next_;
    int64_t enqueue_ns_, deadline_ns_;
    int rows_;
};

/* Starts the worker threads. On success *out is the caller's (inferd_sched_destroy). Call from
 * the main thread; the calling thread's signal mask is inherited by the workers. */
int inferd_sched_create(const inferd_sched_options *opts, inferd_sched **out, inferd_error *err);

/* Drains (see below), stops and joins the workers, frees s. Every queue must have been
 * destroyed. NULL does nothing. Main thread. */
void inferd_sched_destroy(inferd_sched *s);

/* Waits for posted jobs to finish (the requests they submit are taken), then refuses new
 * requests from now on (INFERD_EUNAVAIL), runs every queued request without
 * waiting for batch delays, and returns once no request is queued and no batch runs, so every
 * done callback has returned. Any thread except a worker. */
void inferd_sched_drain(inferd_sched *s);

/* Creates a queue for one model version. On success *out belongs to the caller, who destroys
 * it with inferd_sched_queue_destroy. Any thread. */
int inferd_sched_queue_create(inferd_sched *s, const inferd_sched_queue_options *opts,
                              inferd_sched_queue **out, inferd_error *err);

/* Removes and frees q. No request may be queued on it and no batch of it may run (a running
 * batch holds a model reference, so destroying on the model's last release is safe). NULL
 * does nothing. Any thread, including a worker inside model.release. */
void inferd_sched_queue_destroy(inferd_sched_queue *q);

/* Validates req against the queue's inputs and queues it. On success the scheduler owns req
 * until it calls req->done exactly once, from a worker thread. On failure (INFERD_EINVAL for a
 * malformed request, INFERD_EBUSY when the queue is full, INFERD_EUNAVAIL when the deadline
 * cannot be met or the scheduler is draining) the caller keeps req and done is never called.
 * Never waits for inference. Any thread. */
int inferd_sched_submit(inferd_sched_queue *q, inferd_sched_request *req, inferd_error *err);

/* Validates and queues the n requests reqs[0..n) together, in order: all or none. Admission
 * counts them as one: they are refused together when the queue cannot take all n (an empty
 * queue takes any n, so a request larger than max_queue is not refused forever), when the work
 * queued ahead of them and their own rows would miss their deadline, or while draining. On
 * success each request's done is called exactly once, from a worker thread; they may run in
 * different batches and complete in any order. On failure none is queued and no done is
 * called. inferd_sched_submit is this with n == 1. Never waits for inference. Any thread. */
int inferd_sched_submit_all(inferd_sched_queue *q, inferd_sched_request *reqs, int n,
                            inferd_error *err);

/* Takes one thread of the compute budget for work that is not a batch (a model load on the
 * repository's loader thread), waiting until one is free: batches share what is left until
 * inferd_sched_return_thread, so the process never runs more compute threads than the budget
 * and a load never slows a running batch by competing for its cores. While a borrower waits,
 * the next thread a batch frees is kept for it. Returns 0, or INFERD_EUNAVAIL (nothing taken)
 * when the scheduler is stopping. Any thread but a worker. */
int inferd_sched_borrow_thread(inferd_sched *s, inferd_error *err);
/* Gives back a thread taken by inferd_sched_borrow_thread. Any thread. */
void inferd_sched_return_thread(inferd_sched *s);

/* Work that is not a batch but belongs on the compute threads: parsing a large request body
 * (the HTTP threads must stay free for health checks). Caller-allocated; set run and user. */
typedef struct inferd_sched_job inferd_sched_job;
struct inferd_sched_job {
    void (*run)(inferd_sched_job *job); /* on a worker, without scheduler locks; may free job */
    void *user;
    inferd_sched_job *next_; /* private to sched */
};

/* Queues job to run once on a worker thread, holding one thread of the budget. Jobs run in
 * order and before any batch (they prepare the requests batches are made of). A drain first
 * waits for every posted job to finish, and the requests they submit meanwhile are taken.
 * Returns 0, or INFERD_EUNAVAIL (job not queued) when the scheduler is stopping. Any thread. */
int inferd_sched_post(inferd_sched *s, inferd_sched_job *job, inferd_error *err);

/* Requests queued on q, not yet in a batch. Lock-free; any thread. */
int inferd_sched_queue_pending(const inferd_sched_queue *q);

/* The budget, the worker count, and the threads held by running batches and borrowers right
 * now (lock-free reads for /metrics and tests). Any thread. */
int inferd_sched_threads(const inferd_sched *s);
int inferd_sched_workers(const inferd_sched *s);
int inferd_sched_threads_in_use(const inferd_sched *s);
/* Posted jobs that have run to their end. Lock-free; any thread. */
long long inferd_sched_jobs_run(const inferd_sched *s);

#endif
