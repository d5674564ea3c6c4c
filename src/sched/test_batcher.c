/* Unit tests for sched/: grouping, padding and slicing, delays, preferred sizes, admission
 * control, timeouts, the thread budget, drain, posted jobs, and failures, all against a fake
 * model.
 *
 * The fake model has one input x (INT64 [batch, seq], seq dynamic) and three outputs:
 *   y    FP32  [batch, seq]  2 * x, so a request's slice shows whether it got its own rows
 *   rows INT64 [batch, 1]    the rows of the batch the model saw
 *   seen INT64 [batch, 1]    the (padded) seq length the model saw
 *   nz   INT64 [batch, 1]    nonzero tokens in the row (tests use nonzero tokens, so this is
 *                            the row's own length exactly when padding is zeros)
 * It can be made to block on a gate, sleep, fail, or refuse negative tokens as a model refuses
 * token ids outside its vocabulary, and it records the threads of every run
 * that is in progress, so the budget can be checked.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "sched/sched.h"
#include "util/alloc.h"
#include "util/clock.h"

#define assert_contains(haystack, needle)                                                          \
    do {                                                                                           \
        if (!strstr((haystack), (needle)))                                                         \
            fail_msg("\"%s\" does not contain \"%s\"", (haystack), (needle));                      \
    } while (0)

/* ---- the fake model ---- */

static struct {
    pthread_mutex_t lock;
    pthread_cond_t cv;
    int gate_closed;
    int sleep_ms;
    int fail;
    int reject_negative;
    int wrong_batch;
    int threads_now, threads_peak;
    int runs;
    int last_threads;
    _Atomic int retains, releases;
} fake = {.lock = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};

static int fake_run(void *ctx, const inferd_tensor *in, inferd_tensor *out, int threads,
                    inferd_error *err) {
    (void)ctx;
    pthread_mutex_lock(&fake.lock);
    fake.threads_now += threads;
    if (fake.threads_now > fake.threads_peak)
        fake.threads_peak = fake.threads_now;
    fake.runs++;
    fake.last_threads = threads;
    while (fake.gate_closed)
        pthread_cond_wait(&fake.cv, &fake.lock);
    int sleep_ms = fake.sleep_ms, fail = fake.fail, wrong = fake.wrong_batch;
    int reject = fake.reject_negative;
    pthread_mutex_unlock(&fake.lock);
    if (sleep_ms)
        usleep((useconds_t)sleep_ms * 1000);
    int rc = 0;
    int negative = 0;
    for (int64_t i = 0; reject && i < in[0].dims[0] * in[0].dims[1]; i++)
        negative |= ((const int64_t *)in[0].data)[i] < 0;
    if (fail) {
        rc = inferd_error_set(err, INFERD_EINTERNAL, "fake model failed on purpose");
    } else if (negative) {
        rc = inferd_error_set(err, INFERD_EINVAL, "token out of range");
    } else { // the outputs, all or none
        int64_t b = in[0].dims[0], s = in[0].dims[1];
        out[0] = (inferd_tensor){.dtype = INFERD_DTYPE_F32, .rank = 2, .dims = {b, s}};
        out[0].nbytes = (size_t)(b * s) * 4;
        out[0].data = inferd_malloc(NULL, out[0].nbytes);
        for (int j = 1; j <= 3; j++) {
            out[j] = (inferd_tensor){.dtype = INFERD_DTYPE_I64, .rank = 2, .dims = {b, 1}};
            out[j].nbytes = (size_t)b * 8;
            out[j].data = inferd_malloc(NULL, out[j].nbytes);
        }
        if (!out[0].data || !out[1].data || !out[2].data || !out[3].data) {
            for (int j = 0; j <= 3; j++) {
                inferd_free(out[j].data);
                out[j].data = NULL;
            }
            rc = inferd_error_set(err, INFERD_EINTERNAL, "fake model out of memory");
        }
    }
    if (rc == 0) {
        int64_t b = in[0].dims[0], s = in[0].dims[1];
        const int64_t *x = in[0].data;
        float *y = out[0].data;
        for (int64_t i = 0; i < b * s; i++)
            y[i] = 2.0f * (float)x[i];
        for (int j = 1; j <= 3; j++) {
            for (int64_t i = 0; i < b; i++) {
                int64_t nz = 0;
                for (int64_t k = 0; k < s; k++)
                    nz += x[i * s + k] != 0;
                ((int64_t *)out[j].data)[i] = j == 1 ? b : j == 2 ? s : nz;
            }
        }
        if (wrong)
            out[1].dims[0] = b + 1;
    }
    pthread_mutex_lock(&fake.lock);
    fake.threads_now -= threads;
    pthread_mutex_unlock(&fake.lock);
    return rc;
}

static void fake_retain(void *ctx) {
    (void)ctx;
    atomic_fetch_add(&fake.retains, 1);
}
static void fake_release(void *ctx) {
    (void)ctx;
    atomic_fetch_add(&fake.releases, 1);
}

static void fake_reset(void) {
    pthread_mutex_lock(&fake.lock);
    fake.gate_closed = 0;
    fake.sleep_ms = 0;
    fake.fail = 0;
    fake.reject_negative = 0;
    fake.wrong_batch = 0;
    fake.threads_now = fake.threads_peak = 0;
    fake.runs = 0;
    fake.last_threads = 0;
    pthread_mutex_unlock(&fake.lock);
    atomic_store(&fake.retains, 0);
    atomic_store(&fake.releases, 0);
}

static void gate(int closed) {
    pthread_mutex_lock(&fake.lock);
    fake.gate_closed = closed;
    pthread_cond_broadcast(&fake.cv);
    pthread_mutex_unlock(&fake.lock);
}

static const inferd_tensor_desc fake_inputs[] = {
    {.name = "x", .dtype = INFERD_DTYPE_I64, .rank = 2, .dims = {-1, -1}}};
static const inferd_tensor_desc fake_outputs[] = {
    {.name = "y", .dtype = INFERD_DTYPE_F32, .rank = 2, .dims = {-1, -1}},
    {.name = "rows", .dtype = INFERD_DTYPE_I64, .rank = 2, .dims = {-1, 1}},
    {.name = "seen", .dtype = INFERD_DTYPE_I64, .rank = 2, .dims = {-1, 1}},
    {.name = "nz", .dtype = INFERD_DTYPE_I64, .rank = 2, .dims = {-1, 1}},
};

/* ---- requests ---- */

typedef struct job {
    inferd_sched_request req;
    inferd_tensor in;
    int64_t x[64];
    inferd_tensor out[4];
    int status;
    char msg[256];
    int done;
} job;

static pthread_mutex_t done_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t done_cv = PTHREAD_COND_INITIALIZER;
static int n_done;

static void on_done(inferd_sched_request *req, int status, const inferd_error *err) {
    job *j = req->user;
    pthread_mutex_lock(&done_lock);
    j->status = status;
    if (err)
        snprintf(j->msg, sizeof j->msg, "%s", err->msg);
    j->done = 1;
    n_done++;
    pthread_cond_broadcast(&done_cv);
    pthread_mutex_unlock(&done_lock);
}

/* Waits (at most 5 s, so a bug fails rather than hangs) until n requests have completed. */
static void wait_done(int n) {
    int64_t until = inferd_now_ns() + 5000000000LL;
    pthread_mutex_lock(&done_lock);
    while (n_done < n && inferd_now_ns() < until) {
        pthread_mutex_unlock(&done_lock);
        usleep(1000);
        pthread_mutex_lock(&done_lock);
    }
    int got = n_done;
    pthread_mutex_unlock(&done_lock);
    assert_int_equal(got, n);
}

/* A request of `rows` rows of `seq` tokens; token values are base + position. */
static void job_init(job *j, int rows, int seq, int64_t base) {
    memset(j, 0, sizeof *j);
    for (int i = 0; i < rows * seq; i++)
        j->x[i] = base + i;
    j->in = (inferd_tensor){.dtype = INFERD_DTYPE_I64, .rank = 2, .dims = {rows, seq}};
    j->in.data = j->x;
    j->in.nbytes = (size_t)(rows * seq) * 8;
    j->req.inputs = &j->in;
    j->req.outputs = j->out;
    j->req.done = on_done;
    j->req.user = j;
}

static void job_free(job *j) {
    for (int i = 0; i < 4; i++)
        inferd_free(j->out[i].data);
}

/* Checks that j got exactly its own rows back: y == 2x over its own shape. */
static void check_own_output(const job *j) {
    assert_int_equal(j->status, 0);
    assert_int_equal(j->out[0].rank, 2);
    assert_int_equal(j->out[0].dims[0], j->in.dims[0]);
    assert_int_equal(j->out[0].dims[1], j->in.dims[1]);
    const float *y = j->out[0].data;
    for (int64_t i = 0; i < j->in.dims[0] * j->in.dims[1]; i++)
        assert_int_equal((int64_t)y[i], 2 * j->x[i]);
    assert_int_equal(j->out[1].dims[0], j->in.dims[0]);
}

static int64_t rows_seen(const job *j) { return ((const int64_t *)j->out[1].data)[0]; }
static int64_t seq_seen(const job *j) { return ((const int64_t *)j->out[2].data)[0]; }
static int64_t nonzero_seen(const job *j) { return ((const int64_t *)j->out[3].data)[0]; }

static void fake_set(int *field, int value) {
    pthread_mutex_lock(&fake.lock);
    *field = value;
    pthread_mutex_unlock(&fake.lock);
}

typedef struct env {
    inferd_sched *s;
    inferd_sched_queue *q;
    inferd_stats stats;
} env;

static inferd_sched_queue_options base_options(env *e) {
    inferd_sched_queue_options o = {
        .name = "fake:1",
        .model = {.run = fake_run, .retain = fake_retain, .release = fake_release},
        .n_inputs = 1,
        .inputs = fake_inputs,
        .n_outputs = 4,
        .outputs = fake_outputs,
        .max_batch = 8,
        .stats = &e->stats,
    };
    return o;
}

static void env_start(env *e, int threads, int workers, const inferd_sched_queue_options *o) {
    fake_reset();
    n_done = 0;
    assert_int_equal(inferd_stats_init(&e->stats), 0);
    inferd_sched_options so = {.threads = threads, .workers = workers};
    inferd_error err = {0};
    int rc = inferd_sched_create(&so, &e->s, &err);
    if (rc != 0)
        fail_msg("sched_create: %d %s", rc, err.msg);
    rc = inferd_sched_queue_create(e->s, o, &e->q, &err);
    if (rc != 0)
        fail_msg("queue_create: %d %s", rc, err.msg);
}

static void env_stop(env *e) {
    gate(0);
    inferd_sched_drain(e->s);
    inferd_sched_queue_destroy(e->q);
    inferd_sched_destroy(e->s);
    inferd_stats_deinit(&e->stats);
}

static void wait_threads_free(env *e) {
    for (int i = 0; i < 5000 && inferd_sched_threads_in_use(e->s) != 0; i++)
        usleep(1000);
    assert_int_equal(inferd_sched_threads_in_use(e->s), 0);
}

static void submit_ok(env *e, job *j) {
    inferd_error err = {0};
    int rc = inferd_sched_submit(e->q, &j->req, &err);
    if (rc != 0)
        fail_msg("submit: %d %s", rc, err.msg);
}

/* Submits j, with the gate closed by the caller, and waits (at most 5 s, then fails) until its
 * batch holds threads and blocks in the model. */
static void submit_running(env *e, job *j) {
    submit_ok(e, j);
    for (int i = 0; i < 5000 && inferd_sched_threads_in_use(e->s) == 0; i++)
        usleep(1000);
    assert_int_not_equal(inferd_sched_threads_in_use(e->s), 0);
}

/* ---- tests ---- */

static void test_single_request(void **state) {
    (void)state;
    env e;
    inferd_sched_queue_options o = base_options(&e);
    env_start(&e, 2, 2, &o);
    job j;
    job_init(&j, 1, 5, 10);
    submit_ok(&e, &j);
    wait_done(1);
    check_own_output(&j);
    assert_int_equal(j.req.batch_size, 1);
    assert_int_equal(rows_seen(&j), 1);
    // A lone request runs on the whole budget.
    assert_int_equal(j.req.threads, 2);
    assert_int_equal(atomic_load(&e.stats.executions), 1);
    assert_int_equal(inferd_hist_count(e.stats.batch_size), 1);
    assert_int_equal(inferd_hist_count(e.stats.queue_ns), 1);
    env_stop(&e);
    assert_int_equal(atomic_load(&fake.retains), atomic_load(&fake.releases));
    job_free(&j);
}

static void test_full_batch_forms_and_slices(void **state) {
    (void)state;
    env e;
    inferd_sched_queue_options o = base_options(&e);
    o.max_batch = 4;
    o.max_delay_us = 2000000; // only a full batch may leave before 2 s
    env_start(&e, 2, 2, &o);
    job j[4];
    for (int i = 0; i < 4; i++) {
        job_init(&j[i], 1, 3, 100 * i);
        submit_ok(&e, &j[i]);
    }
    wait_done(4);
    for (int i = 0; i < 4; i++) {
        check_own_output(&j[i]);
        assert_int_equal(j[i].req.batch_size, 4);
        assert_int_equal(rows_seen(&j[i]), 4);
        job_free(&j[i]);
    }
    assert_int_equal(atomic_load(&e.stats.executions), 1);
    assert_int_equal(atomic_load(&e.stats.inferences), 4);
    env_stop(&e);
}

static void test_delay_then_partial_batch(void **state) {
    (void)state;
    env e;
    inferd_sched_queue_options o = base_options(&e);
    o.max_delay_us = 30000;
    env_start(&e, 2, 2, &o);
    job j[2];
    for (int i = 0; i < 2; i++) {
        job_init(&j[i], 1, 2, i);
        submit_ok(&e, &j[i]);
    }
    wait_done(2);
    for (int i = 0; i < 2; i++) {
        check_own_output(&j[i]);
        assert_int_equal(j[i].req.batch_size, 2);
        // The oldest waited for the delay before its partial batch left.
        if (i == 0 && j[i].req.queue_ns < 30000000)
            fail_msg("queue_ns %lld < delay %d", (long long)j[i].req.queue_ns, 30000000);
        job_free(&j[i]);
    }
    env_stop(&e);
}

static void test_multi_row_requests_respect_max_batch(void **state) {
    (void)state;
    env e;
    inferd_sched_queue_options o = base_options(&e);
    o.max_batch = 4;
    o.max_delay_us = 20000;
    env_start(&e, 2, 2, &o);
    job a, b, c;
    job_init(&a, 3, 2, 0);
    job_init(&b, 2, 2, 50);
    job_init(&c, 1, 2, 90);
    submit_ok(&e, &a);
    submit_ok(&e, &b);
    submit_ok(&e, &c);
    wait_done(3);
    check_own_output(&a);
    check_own_output(&b);
    check_own_output(&c);
    // a (3 rows) and b (2) do not fit together; c (1) fills a's batch to 4.
    assert_int_equal(a.req.batch_size, 4);
    assert_int_equal(c.req.batch_size, 4);
    assert_int_equal(b.req.batch_size, 2);
    job_free(&a);
    job_free(&b);
    job_free(&c);

    job big;
    job_init(&big, 5, 2, 0);
    inferd_error err = {0};
    assert_int_equal(inferd_sched_submit(e.q, &big.req, &err), INFERD_EINVAL);
    assert_contains(err.msg, "batch of 5 exceeds max_batch_size 4");
    env_stop(&e);
}

static void test_unequal_shapes_never_share_without_padding(void **state) {
    (void)state;
    env e;
    inferd_sched_queue_options o = base_options(&e);
    o.max_delay_us = 40000;
    env_start(&e, 2, 2, &o);
    job j[4];
    int seqs[4] = {3, 5, 3, 5};
    for (int i = 0; i < 4; i++) {
        job_init(&j[i], 1, seqs[i], 10 * i);
        submit_ok(&e, &j[i]);
    }
    wait_done(4);
    for (int i = 0; i < 4; i++) {
        check_own_output(&j[i]);
        assert_int_equal(j[i].req.batch_size, 2);
        assert_int_equal(seq_seen(&j[i]), seqs[i]);
        job_free(&j[i]);
    }
    env_stop(&e);
}

static void test_padding_pads_and_slices_back(void **state) {
    (void)state;
    env e;
    inferd_sched_queue_options o = base_options(&e);
    o.pad = 1;
    o.max_delay_us = 40000;
    env_start(&e, 2, 2, &o);
    job j[3];
    int seqs[3] = {3, 7, 5}; // one default bucket (<= 8)
    for (int i = 0; i < 3; i++) {
        job_init(&j[i], 1, seqs[i], 1 + 10 * i);
        submit_ok(&e, &j[i]);
    }
    wait_done(3);
    for (int i = 0; i < 3; i++) {
        check_own_output(&j[i]); // own shape, own values: padding cut off again
        assert_int_equal(j[i].req.batch_size, 3);
        assert_int_equal(seq_seen(&j[i]), 7);
        assert_int_equal(nonzero_seen(&j[i]), seqs[i]); // padded with zeros
        job_free(&j[i]);
    }
    env_stop(&e);
}

static void test_length_buckets_separate(void **state) {
    (void)state;
    env e;
    inferd_sched_queue_options o = base_options(&e);
    static const int64_t buckets[] = {4, 8};
    o.pad = 1;
    o.buckets = buckets;
    o.n_buckets = 2;
    o.max_delay_us = 40000;
    env_start(&e, 2, 2, &o);
    job j[4];
    int seqs[4] = {2, 6, 4, 8};
    for (int i = 0; i < 4; i++) {
        job_init(&j[i], 1, seqs[i], 10 * i);
        submit_ok(&e, &j[i]);
    }
    wait_done(4);
    for (int i = 0; i < 4; i++) {
        check_own_output(&j[i]);
        assert_int_equal(j[i].req.batch_size, 2);
        assert_int_equal(seq_seen(&j[i]), i % 2 ? 8 : 4);
        job_free(&j[i]);
    }
    env_stop(&e);
}

static void test_padding_uses_pad_values(void **state) {
    (void)state;
    env e;
    inferd_sched_queue_options o = base_options(&e);
    static const int64_t pad_values[] = {7};
    o.pad = 1;
    o.pad_values = pad_values;
    o.max_delay_us = 40000;
    env_start(&e, 2, 2, &o);
    job j[2];
    int seqs[2] = {3, 6};
    for (int i = 0; i < 2; i++) {
        job_init(&j[i], 1, seqs[i], 1 + 10 * i);
        submit_ok(&e, &j[i]);
    }
    wait_done(2);
    for (int i = 0; i < 2; i++) {
        check_own_output(&j[i]);
        assert_int_equal(seq_seen(&j[i]), 6);
        // Padding with 7 (nonzero): every position of the short row counts as a token.
        assert_int_equal(nonzero_seen(&j[i]), 6);
        job_free(&j[i]);
    }
    env_stop(&e);
}

/* Copies the jobs' requests into one array, as submit_all takes them. */
static void gather(job *j, inferd_sched_request *reqs, int n) {
    for (int i = 0; i < n; i++)
        reqs[i] = j[i].req;
}

static void test_submit_all_is_all_or_none(void **state) {
    (void)state;
    env e;
    inferd_sched_queue_options o = base_options(&e);
    o.max_queue = 4;
    o.max_delay_us = 2000000; // nothing leaves before the drain
    env_start(&e, 2, 2, &o);
    inferd_error err;
    job one, j[4];
    inferd_sched_request reqs[4];
    job_init(&one, 1, 3, 1);
    submit_ok(&e, &one);
    for (int i = 0; i < 4; i++)
        job_init(&j[i], 1, 3, 10 * (i + 1));
    gather(j, reqs, 4);
    // 1 waiting + 4 would exceed 4: all four are refused, none is queued.
    assert_int_equal(inferd_sched_submit_all(e.q, reqs, 4, &err), INFERD_EBUSY);
    assert_contains(err.msg, "4 more would exceed max_queue_size 4");
    assert_int_equal(inferd_sched_queue_pending(e.q), 1);
    // One bad request refuses the group, naming it.
    j[2].in.dtype = INFERD_DTYPE_F32;
    j[2].in.nbytes = 12;
    gather(j, reqs, 3);
    assert_int_equal(inferd_sched_submit_all(e.q, reqs, 3, &err), INFERD_EINVAL);
    assert_contains(err.msg, "request 2 of 3: input 'x': datatype float");
    assert_int_equal(inferd_sched_queue_pending(e.q), 1);
    job_init(&j[2], 1, 3, 30);
    gather(j, reqs, 3);
    assert_int_equal(inferd_sched_submit_all(e.q, reqs, 3, &err), 0);
    assert_int_equal(inferd_sched_queue_pending(e.q), 4);
    assert_int_equal(atomic_load(&e.stats.pending), 4);
    inferd_sched_drain(e.s);
    wait_done(4);
    check_own_output(&one);
    for (int i = 0; i < 3; i++)
        check_own_output(&j[i]);
    env_stop(&e);
    job_free(&one);
    for (int i = 0; i < 4; i++)
        job_free(&j[i]);
}

static void test_submit_all_larger_than_queue_when_empty(void **state) {
    (void)state;
    env e;
    inferd_sched_queue_options o = base_options(&e);
    o.max_queue = 2;
    o.max_delay_us = 2000000;
    env_start(&e, 2, 2, &o);
    inferd_error err;
    job j[3];
    inferd_sched_request reqs[3];
    for (int i = 0; i < 3; i++)
        job_init(&j[i], 1, 2, 5 * (i + 1));
    gather(j, reqs, 3);
    // An empty queue takes a group larger than max_queue_size, else it could never run.
    assert_int_equal(inferd_sched_submit_all(e.q, reqs, 3, &err), 0);
    job more;
    job_init(&more, 1, 2, 99);
    assert_int_equal(inferd_sched_submit(e.q, &more.req, &err), INFERD_EBUSY);
    inferd_sched_drain(e.s);
    wait_done(3);
    for (int i = 0; i < 3; i++) {
        check_own_output(&j[i]);
        job_free(&j[i]);
    }
    env_stop(&e);
}

static void test_submit_all_members_share_batches_with_others(void **state) {
    (void)state;
    env e;
    inferd_sched_queue_options o = base_options(&e);
    o.max_batch = 4;
    o.max_delay_us = 2000000; // only full batches leave
    env_start(&e, 2, 2, &o);
    inferd_error err;
    job j[6], other[2];
    inferd_sched_request reqs[6];
    for (int i = 0; i < 6; i++)
        job_init(&j[i], 1, 3, 10 * (i + 1));
    gather(j, reqs, 6);
    assert_int_equal(inferd_sched_submit_all(e.q, reqs, 6, &err), 0);
    // Four of the six leave as a full batch; the last two wait for company.
    wait_done(4);
    for (int i = 0; i < 2; i++) {
        job_init(&other[i], 1, 3, 100 + i);
        submit_ok(&e, &other[i]);
    }
    wait_done(8);
    for (int i = 0; i < 6; i++) {
        check_own_output(&j[i]);
        assert_int_equal(reqs[i].batch_size, 4);
        job_free(&j[i]);
    }
    for (int i = 0; i < 2; i++) {
        check_own_output(&other[i]);
        assert_int_equal(other[i].req.batch_size, 4);
        job_free(&other[i]);
    }
    // Two batches of four: the group's last two rows ran with the two other requests.
    assert_int_equal(atomic_load(&e.stats.executions), 2);
    env_stop(&e);
}

static void test_preferred_size_cuts_batch(void **state) {
    (void)state;
    env e;
    inferd_sched_queue_options o = base_options(&e);
    static const int preferred[] = {2};
    o.preferred_sizes = preferred;
    o.n_preferred = 1;
    o.max_delay_us = 30000;
    env_start(&e, 1, 1, &o);
    job j[3];
    for (int i = 0; i < 3; i++) {
        job_init(&j[i], 1, 2, i);
        submit_ok(&e, &j[i]);
    }
    wait_done(3);
    assert_int_equal(j[0].req.batch_size, 2);
    assert_int_equal(j[1].req.batch_size, 2);
    assert_int_equal(j[2].req.batch_size, 1);
    for (int i = 0; i < 3; i++) {
        check_own_output(&j[i]);
        job_free(&j[i]);
    }
    env_stop(&e);
}

static void test_queue_full_is_busy(void **state) {
    (void)state;
    env e;
    inferd_sched_queue_options o = base_options(&e);
    o.max_batch = 1;
    o.max_queue = 2;
    env_start(&e, 1, 1, &o);
    gate(1);
    job j[4];
    job_init(&j[0], 1, 2, 0);
    submit_ok(&e, &j[0]);
    // Wait until the worker holds j[0] inside the model, so the queue is empty again.
    for (int i = 0; i < 2000 && inferd_sched_queue_pending(e.q) != 0; i++)
        usleep(1000);
    while (1) {
        pthread_mutex_lock(&fake.lock);
        int runs = fake.runs;
        pthread_mutex_unlock(&fake.lock);
        if (runs)
            break;
        usleep(1000);
    }
    job_init(&j[1], 1, 2, 0);
    job_init(&j[2], 1, 2, 0);
    job_init(&j[3], 1, 2, 0);
    submit_ok(&e, &j[1]);
    submit_ok(&e, &j[2]);
    assert_int_equal(inferd_sched_queue_pending(e.q), 2);
    inferd_error err = {0};
    assert_int_equal(inferd_sched_submit(e.q, &j[3].req, &err), INFERD_EBUSY);
    assert_contains(err.msg, "queue full");
    assert_int_equal(atomic_load(&e.stats.pending), 2);
    gate(0);
    wait_done(3);
    for (int i = 0; i < 3; i++) {
        check_own_output(&j[i]);
        job_free(&j[i]);
    }
    assert_int_equal(atomic_load(&e.stats.pending), 0);
    env_stop(&e);
}

static void test_queued_request_times_out(void **state) {
    (void)state;
    env e;
    inferd_sched_queue_options o = base_options(&e);
    o.max_batch = 1;
    env_start(&e, 2, 2, &o);
    gate(1);
    job a, b;
    job_init(&a, 1, 2, 0);
    job_init(&b, 1, 2, 0);
    b.req.timeout_us = 20000;
    submit_running(&e, &a); // takes both threads and blocks in the model
    submit_ok(&e, &b);      // no free thread: it can only wait, then expire
    wait_done(1);
    assert_int_equal(b.done, 1);
    assert_int_equal(b.status, INFERD_EUNAVAIL);
    assert_contains(b.msg, "timed out");
    if (b.req.queue_ns < 20000000)
        fail_msg("expired after %lld ns, before its %d ns timeout", (long long)b.req.queue_ns,
                 20000000);
    assert_int_equal(a.done, 0);
    gate(0);
    wait_done(2);
    check_own_output(&a);
    job_free(&a);
    env_stop(&e);
}

static int done_count(void) {
    pthread_mutex_lock(&done_lock);
    int n = n_done;
    pthread_mutex_unlock(&done_lock);
    return n;
}

/* Teaches the queue that a batch takes about ms milliseconds. */
static void teach_batch_time(env *e, int ms) {
    fake_set(&fake.sleep_ms, ms);
    job a;
    job_init(&a, 1, 2, 0);
    a.req.timeout_us = 10000000; // its own timeout, so it surely runs
    int before = done_count();
    submit_ok(e, &a);
    wait_done(before + 1);
    assert_int_equal(a.status, 0);
    wait_threads_free(e); // the average is updated when the batch gives its threads back
    job_free(&a);
}

/* Blocks the only worker on one request and queues another behind it. */
static void fill_queue(env *e, job *running, job *queued) {
    int runs0;
    pthread_mutex_lock(&fake.lock);
    runs0 = fake.runs;
    pthread_mutex_unlock(&fake.lock);
    gate(1); // closed: the worker blocks in the model
    job_init(running, 1, 2, 0);
    submit_ok(e, running);
    for (int i = 0; i < 5000; i++) { // until the worker holds it
        pthread_mutex_lock(&fake.lock);
        int runs = fake.runs;
        pthread_mutex_unlock(&fake.lock);
        if (runs > runs0)
            break;
        usleep(1000);
    }
    job_init(queued, 1, 2, 0);
    submit_ok(e, queued);
}

static void test_deadline_that_cannot_be_met_is_refused_at_once(void **state) {
    (void)state;
    env e;
    inferd_sched_queue_options o = base_options(&e);
    o.max_batch = 1;
    env_start(&e, 1, 1, &o);
    teach_batch_time(&e, 30);
    job running, queued, b;
    fill_queue(&e, &running, &queued); // a 30 ms batch is queued ahead of the next request
    job_init(&b, 1, 2, 0);
    b.req.timeout_us = 1000;
    inferd_error err = {0};
    int64_t t0 = inferd_now_ns();
    assert_int_equal(inferd_sched_submit(e.q, &b.req, &err), INFERD_EUNAVAIL);
    assert_contains(err.msg, "cannot be served within the 1000 us timeout");
    assert_in_range(inferd_now_ns() - t0, 0, 1000000000LL); // refused at once, not queued
    int before = done_count();
    gate(0);
    wait_done(before + 2);
    job_free(&running);
    job_free(&queued);
    // The queue default applies when the request has no timeout of its own.
    env_stop(&e);
    o.default_timeout_us = 1000;
    env_start(&e, 1, 1, &o);
    teach_batch_time(&e, 30);
    fill_queue(&e, &running, &queued);
    job_init(&b, 1, 2, 0);
    assert_int_equal(inferd_sched_submit(e.q, &b.req, &err), INFERD_EUNAVAIL);
    env_stop(&e); // opens the gate and drains
    job_free(&running);
    job_free(&queued);
}

/* With nothing queued ahead, a request is admitted however slow the last batches were: the
 * timeout bounds the wait in the queue, and the average only moves when batches run. Refusing
 * here once made one slow batch (a first plan, a preempted worker) refuse every request with a
 * timeout for good, since no batch ever ran again to bring the average down. */
static void test_empty_queue_admits_whatever_the_average(void **state) {
    (void)state;
    env e;
    inferd_sched_queue_options o = base_options(&e);
    o.max_batch = 1;
    o.default_timeout_us = 40000;
    env_start(&e, 1, 1, &o);
    teach_batch_time(&e, 120); // one slow batch: the average is now over the timeout
    fake_set(&fake.sleep_ms, 0);
    for (int i = 0; i < 3; i++) {
        job b;
        job_init(&b, 1, 2, 0);
        int before = done_count();
        submit_ok(&e, &b); // the queue is empty: admitted
        wait_done(before + 1);
        assert_int_equal(b.status, 0);
        wait_threads_free(&e);
        job_free(&b);
    }
    env_stop(&e);
}

typedef struct submitter {
    env *e;
    job *jobs;
    int n;
} submitter;

static void *submit_many(void *arg) {
    submitter *s = arg;
    for (int i = 0; i < s->n; i++)
        submit_ok(s->e, &s->jobs[i]);
    return NULL;
}

static void run_budget_case(int threads, int workers) {
    env e;
    inferd_sched_queue_options o = base_options(&e);
    o.max_batch = 2;
    env_start(&e, threads, workers, &o);
    fake_set(&fake.sleep_ms, 2);
    enum { PER = 25, SUBMITTERS = 4 };
    static job jobs[SUBMITTERS][PER];
    submitter sub[SUBMITTERS];
    pthread_t t[SUBMITTERS];
    for (int k = 0; k < SUBMITTERS; k++) {
        for (int i = 0; i < PER; i++)
            job_init(&jobs[k][i], 1, 4, i);
        sub[k] = (submitter){&e, jobs[k], PER};
        pthread_create(&t[k], NULL, submit_many, &sub[k]);
    }
    for (int k = 0; k < SUBMITTERS; k++)
        pthread_join(t[k], NULL);
    wait_done(SUBMITTERS * PER);
    int min_threads = threads;
    for (int k = 0; k < SUBMITTERS; k++)
        for (int i = 0; i < PER; i++) {
            check_own_output(&jobs[k][i]);
            if (jobs[k][i].req.threads < min_threads)
                min_threads = jobs[k][i].req.threads;
            job_free(&jobs[k][i]);
        }
    pthread_mutex_lock(&fake.lock);
    int peak = fake.threads_peak;
    pthread_mutex_unlock(&fake.lock);
    if (peak > threads)
        fail_msg("peak compute threads %d exceeds the budget %d", peak, threads);
    // The last request's callback may run before its worker hands its threads back.
    wait_threads_free(&e);
    // A deep queue runs more batches at fewer threads each.
    if (workers > 1 && min_threads != 1)
        fail_msg("smallest team under load %d, expected %d", min_threads, 1);
    // Quiet again: a lone request gets the whole budget.
    job lone;
    job_init(&lone, 1, 4, 0);
    int before = n_done;
    submit_ok(&e, &lone);
    wait_done(before + 1);
    assert_int_equal(lone.req.threads, threads);
    job_free(&lone);
    env_stop(&e);
}

static void test_thread_budget_holds(void **state) {
    (void)state;
    run_budget_case(2, 2);
    run_budget_case(4, 4);
    run_budget_case(3, 2);
}

static void test_borrowed_threads_leave_fewer_for_batches(void **state) {
    (void)state;
    env e;
    inferd_sched_queue_options o = base_options(&e);
    env_start(&e, 2, 2, &o);
    inferd_error err = {0};
    // A load holds one of the two threads: a lone request runs on the other.
    assert_int_equal(inferd_sched_borrow_thread(e.s, &err), 0);
    assert_int_equal(inferd_sched_threads_in_use(e.s), 1);
    job j;
    job_init(&j, 1, 2, 0);
    submit_ok(&e, &j);
    wait_done(1);
    assert_int_equal(j.req.threads, 1);
    job_free(&j);
    // Both threads lent: batches wait until one comes back.
    assert_int_equal(inferd_sched_borrow_thread(e.s, &err), 0);
    job_init(&j, 1, 2, 0);
    submit_ok(&e, &j);
    usleep(50000);
    pthread_mutex_lock(&done_lock);
    int done_now = n_done;
    pthread_mutex_unlock(&done_lock);
    assert_int_equal(done_now, 1);
    inferd_sched_return_thread(e.s);
    wait_done(2);
    assert_int_equal(j.req.threads, 1);
    job_free(&j);
    inferd_sched_return_thread(e.s);
    wait_threads_free(&e);
    // Given back: a lone request gets the whole budget again.
    job_init(&j, 1, 2, 0);
    submit_ok(&e, &j);
    wait_done(3);
    assert_int_equal(j.req.threads, 2);
    job_free(&j);
    env_stop(&e);
}

static void test_instance_threads_cap(void **state) {
    (void)state;
    env e;
    inferd_sched_queue_options o = base_options(&e);
    o.max_threads = 1;
    env_start(&e, 4, 4, &o);
    job j;
    job_init(&j, 1, 2, 0);
    submit_ok(&e, &j);
    wait_done(1);
    assert_int_equal(j.req.threads, 1);
    job_free(&j);
    env_stop(&e);
}

static void test_drain_runs_everything_then_refuses(void **state) {
    (void)state;
    env e;
    inferd_sched_queue_options o = base_options(&e);
    o.max_delay_us = 5000000; // drain must not wait for this
    env_start(&e, 2, 2, &o);
    job j[3];
    for (int i = 0; i < 3; i++) {
        job_init(&j[i], 1, 2, i);
        submit_ok(&e, &j[i]);
    }
    int64_t t0 = inferd_now_ns();
    inferd_sched_drain(e.s);
    int64_t took = inferd_now_ns() - t0;
    if (took > 2000000000LL)
        fail_msg("drain took %lld ns, waited for the batch delay of %lld ns", (long long)took,
                 5000000000LL);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(j[i].done, 1);
        check_own_output(&j[i]);
        job_free(&j[i]);
    }
    job late;
    job_init(&late, 1, 2, 0);
    inferd_error err = {0};
    assert_int_equal(inferd_sched_submit(e.q, &late.req, &err), INFERD_EUNAVAIL);
    assert_contains(err.msg, "shutting down");
    env_stop(&e);
}

/* ---- jobs (inferd_sched_post) ---- */

typedef struct test_job {
    inferd_sched_job job;
    env *e;
    pthread_t ran_on;
    int threads_in_use; /* seen from inside the job */
    int done_before;    /* requests completed when the job ran */
    job *submit;        /* a request the job submits, or NULL */
    int submit_rc;
    _Atomic int ran;
} test_job;

static void test_job_run(inferd_sched_job *jb) {
    test_job *t = jb->user;
    t->ran_on = pthread_self();
    t->threads_in_use = inferd_sched_threads_in_use(t->e->s);
    pthread_mutex_lock(&done_lock);
    t->done_before = n_done;
    pthread_mutex_unlock(&done_lock);
    if (t->submit) {
        inferd_error err = {0};
        t->submit_rc = inferd_sched_submit(t->e->q, &t->submit->req, &err);
    }
    atomic_store(&t->ran, 1);
}

static void test_job_init(test_job *t, env *e) {
    memset(t, 0, sizeof *t);
    t->e = e;
    t->job = (inferd_sched_job){.run = test_job_run, .user = t};
}

static void wait_job(test_job *t) {
    for (int i = 0; i < 5000 && !atomic_load(&t->ran); i++)
        usleep(1000);
    assert_true(atomic_load(&t->ran));
}

static void test_job_runs_on_a_worker_within_the_budget(void **state) {
    (void)state;
    env e;
    inferd_sched_queue_options o = base_options(&e);
    env_start(&e, 1, 2, &o);
    gate(1);
    job a;
    job_init(&a, 1, 2, 1);
    submit_running(&e, &a); // takes the only thread and blocks in the model
    test_job t;
    test_job_init(&t, &e);
    inferd_error err = {0};
    assert_int_equal(inferd_sched_post(e.s, &t.job, &err), 0);
    // An idle worker is there, but no thread of the budget: the job waits for the batch.
    usleep(50000);
    assert_false(atomic_load(&t.ran));
    gate(0);
    wait_job(&t);
    assert_false(pthread_equal(t.ran_on, pthread_self()));
    assert_int_equal(t.threads_in_use, 1); // the job's own thread
    wait_done(1);
    wait_threads_free(&e);
    assert_int_equal(inferd_sched_jobs_run(e.s), 1);
    job_free(&a);
    env_stop(&e);
}

static void test_jobs_run_before_queued_batches(void **state) {
    (void)state;
    env e;
    inferd_sched_queue_options o = base_options(&e);
    o.max_batch = 1;
    env_start(&e, 1, 1, &o);
    gate(1);
    job a, b;
    job_init(&a, 1, 2, 1);
    job_init(&b, 1, 2, 5);
    submit_running(&e, &a); // running, blocked
    submit_ok(&e, &b);      // queued
    test_job t;
    test_job_init(&t, &e);
    inferd_error err = {0};
    assert_int_equal(inferd_sched_post(e.s, &t.job, &err), 0);
    gate(0);
    wait_done(2);
    wait_job(&t);
    // The job, posted after b was queued, still ran before b's batch.
    assert_int_equal(t.done_before, 1);
    check_own_output(&a);
    check_own_output(&b);
    job_free(&a);
    job_free(&b);
    env_stop(&e);
}

typedef struct drain_arg {
    inferd_sched *s;
    _Atomic int returned;
} drain_arg;

static void *drain_main(void *p) {
    drain_arg *d = p;
    inferd_sched_drain(d->s);
    atomic_store(&d->returned, 1);
    return NULL;
}

static void test_drain_waits_for_jobs_and_takes_their_requests(void **state) {
    (void)state;
    env e;
    inferd_sched_queue_options o = base_options(&e);
    env_start(&e, 1, 1, &o);
    gate(1);
    job a, c;
    job_init(&a, 1, 2, 1);
    job_init(&c, 1, 2, 7);
    submit_running(&e, &a); // running, blocked: the job cannot start yet
    test_job t;
    test_job_init(&t, &e);
    t.submit = &c;
    inferd_error err = {0};
    assert_int_equal(inferd_sched_post(e.s, &t.job, &err), 0);
    drain_arg d = {.s = e.s};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, drain_main, &d), 0);
    usleep(50000);
    assert_false(atomic_load(&d.returned));
    gate(0);
    pthread_join(th, NULL);
    // The job was accepted work: the request it submitted while the drain waited was taken
    // and ran before the drain returned.
    assert_true(atomic_load(&t.ran));
    assert_int_equal(t.submit_rc, 0);
    assert_int_equal(c.done, 1);
    check_own_output(&c);
    // After the drain, posting still runs the job (the scheduler is not stopping), but what
    // it submits is refused.
    job late;
    job_init(&late, 1, 2, 0);
    test_job t2;
    test_job_init(&t2, &e);
    t2.submit = &late;
    assert_int_equal(inferd_sched_post(e.s, &t2.job, &err), 0);
    wait_job(&t2);
    assert_int_equal(t2.submit_rc, INFERD_EUNAVAIL);
    job_free(&a);
    job_free(&c);
    env_stop(&e);
}

/* Every allocation from the submission of four requests to their completion fails in turn
 * (the batch's input, the model's outputs, the slices handed back): each request is refused at
 * submission with a message, or completes with its own rows or an error; none is lost, and
 * what failed is freed (LeakSanitizer under make unit-asan). */
static void test_out_of_memory_never_loses_a_request(void **state) {
    (void)state;
    env e;
    inferd_sched_queue_options o = base_options(&e);
    o.max_batch = 4;
    o.max_delay_us = 2000000; // the four go as one batch
    env_start(&e, 2, 2, &o);
    int all_ok = 0;
    for (long nth = 1; nth < 300 && !all_ok; nth++) {
        job j[4];
        int accepted = 0;
        pthread_mutex_lock(&done_lock);
        n_done = 0;
        pthread_mutex_unlock(&done_lock);
        inferd_alloc_fail_after(nth);
        for (int i = 0; i < 4; i++) {
            job_init(&j[i], 1, 3, 100 * i + 1);
            inferd_error err = {0};
            if (inferd_sched_submit(e.q, &j[i].req, &err) == 0) {
                accepted++;
            } else {
                assert_true(err.msg[0] != 0);
                j[i].status = 1; // refused: never queued
            }
        }
        if (accepted < 4) // a partial batch leaves at its deadline: do not wait for it
            inferd_alloc_fail_after(0);
        wait_done(accepted);
        inferd_alloc_fail_after(0);
        all_ok = 1;
        for (int i = 0; i < 4; i++) {
            if (j[i].status == 0) {
                check_own_output(&j[i]);
            } else {
                all_ok = 0;
                if (j[i].status < 0 && !j[i].msg[0])
                    fail_msg("allocation %ld: request %d failed without a message", nth, i);
            }
            job_free(&j[i]);
        }
    }
    assert_true(all_ok);
    env_stop(&e);
    assert_int_equal(atomic_load(&fake.retains), atomic_load(&fake.releases));
}

static void test_model_failure_reaches_every_request(void **state) {
    (void)state;
    env e;
    inferd_sched_queue_options o = base_options(&e);
    o.max_batch = 4;
    o.max_delay_us = 2000000;
    env_start(&e, 1, 1, &o);
    fake_set(&fake.fail, 1);
    job j[4];
    for (int i = 0; i < 4; i++) {
        job_init(&j[i], 1, 2, i);
        submit_ok(&e, &j[i]);
    }
    wait_done(4);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(j[i].status, INFERD_EINTERNAL);
        assert_contains(j[i].msg, "failed on purpose");
        assert_null(j[i].out[0].data);
    }
    env_stop(&e);
}

/* One request whose data the model refuses (INFERD_EINVAL) must not fail the requests it was
 * batched with: the batch is rerun one request at a time and only the guilty one fails. */
static void test_bad_input_fails_only_its_own_request(void **state) {
    (void)state;
    env e;
    inferd_sched_queue_options o = base_options(&e);
    o.max_batch = 4;
    o.max_delay_us = 2000000; // the four leave together, as one batch
    env_start(&e, 1, 1, &o);
    fake_set(&fake.reject_negative, 1);
    job j[4];
    for (int i = 0; i < 4; i++) {
        job_init(&j[i], 1, 3, i == 2 ? -100 : 10 * i + 1);
        submit_ok(&e, &j[i]);
    }
    wait_done(4);
    for (int i = 0; i < 4; i++) {
        if (i == 2) {
            assert_int_equal(j[i].status, INFERD_EINVAL);
            assert_contains(j[i].msg, "token out of range");
            assert_null(j[i].out[0].data);
        } else {
            check_own_output(&j[i]);
            assert_int_equal(j[i].req.batch_size, 1);
            assert_int_equal(rows_seen(&j[i]), 1);
        }
        job_free(&j[i]);
    }
    pthread_mutex_lock(&fake.lock);
    int runs = fake.runs;
    pthread_mutex_unlock(&fake.lock);
    assert_int_equal(runs, 1 + 4); // the failed batch, then each request alone
    // Metrics count the four runs that answered requests, not the refused batch.
    assert_int_equal(atomic_load(&e.stats.executions), 4);
    assert_int_equal(atomic_load(&e.stats.inferences), 4);
    env_stop(&e);
    assert_int_equal(atomic_load(&fake.retains), atomic_load(&fake.releases));
}

static void test_wrong_output_batch_is_internal_error(void **state) {
    (void)state;
    env e;
    inferd_sched_queue_options o = base_options(&e);
    env_start(&e, 1, 1, &o);
    fake_set(&fake.wrong_batch, 1);
    job j;
    job_init(&j, 1, 2, 0);
    submit_ok(&e, &j);
    wait_done(1);
    assert_int_equal(j.status, INFERD_EINTERNAL);
    assert_contains(j.msg, "output 'rows'");
    env_stop(&e);
}

static void test_invalid_requests_are_refused(void **state) {
    (void)state;
    env e;
    static const inferd_tensor_desc fixed[] = {
        {.name = "x", .dtype = INFERD_DTYPE_I64, .rank = 2, .dims = {-1, 4}}};
    inferd_sched_queue_options o = base_options(&e);
    o.inputs = fixed;
    env_start(&e, 1, 1, &o);
    inferd_error err;
    job j;

    job_init(&j, 1, 4, 0);
    j.in.dtype = INFERD_DTYPE_F32;
    j.in.nbytes = 16;
    assert_int_equal(inferd_sched_submit(e.q, &j.req, &err), INFERD_EINVAL);
    assert_contains(err.msg, "datatype float, expected int64");

    job_init(&j, 1, 4, 0);
    j.in.rank = 3;
    j.in.dims[2] = 1;
    assert_int_equal(inferd_sched_submit(e.q, &j.req, &err), INFERD_EINVAL);
    assert_contains(err.msg, "3 dims, expected 2");

    job_init(&j, 1, 5, 0);
    assert_int_equal(inferd_sched_submit(e.q, &j.req, &err), INFERD_EINVAL);
    assert_contains(err.msg, "dim 1 is 5, expected 4");

    job_init(&j, 1, 4, 0);
    j.in.nbytes = 8;
    assert_int_equal(inferd_sched_submit(e.q, &j.req, &err), INFERD_EINVAL);
    assert_contains(err.msg, "8 bytes do not match its shape");

    job_init(&j, 1, 4, 0);
    j.req.done = NULL;
    assert_int_equal(inferd_sched_submit(e.q, &j.req, &err), INFERD_EINVAL);
    env_stop(&e);
    assert_int_equal(fake.runs, 0);
}

/* A queue destroyed from inside the model's release (its owner's last reference). */
static inferd_sched_queue *self_destroy_q;
static _Atomic int self_refs;
static void self_retain(void *ctx) {
    (void)ctx;
    atomic_fetch_add(&self_refs, 1);
}
static void self_release(void *ctx) {
    (void)ctx;
    if (atomic_fetch_sub(&self_refs, 1) == 1)
        inferd_sched_queue_destroy(self_destroy_q);
}

static void done_and_release(inferd_sched_request *req, int status, const inferd_error *err) {
    on_done(req, status, err);
    self_release(NULL); // never the last: the running batch holds its own
}

static void test_queue_destroyed_on_last_release(void **state) {
    (void)state;
    env e;
    inferd_sched_queue_options o = base_options(&e);
    o.model.retain = self_retain;
    o.model.release = self_release;
    fake_reset();
    n_done = 0;
    assert_int_equal(inferd_stats_init(&e.stats), 0);
    inferd_sched_options so = {.threads = 1, .workers = 1};
    inferd_error err = {0};
    assert_int_equal(inferd_sched_create(&so, &e.s, &err), 0);
    assert_int_equal(inferd_sched_queue_create(e.s, &o, &self_destroy_q, &err), 0);
    atomic_store(&self_refs, 1); // the owner's reference
    job j;
    job_init(&j, 1, 2, 0);
    j.req.done = done_and_release;
    self_retain(NULL); // as the API does: a queued request holds a reference
    assert_int_equal(inferd_sched_submit(self_destroy_q, &j.req, &err), 0);
    self_release(NULL); // the owner lets go while the request is queued or running
    wait_done(1);
    check_own_output(&j);
    job_free(&j);
    inferd_sched_drain(e.s);
    assert_int_equal(atomic_load(&self_refs), 0);
    inferd_sched_destroy(e.s); // asserts (debug) if the queue were still registered
    inferd_stats_deinit(&e.stats);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_single_request),
        cmocka_unit_test(test_full_batch_forms_and_slices),
        cmocka_unit_test(test_delay_then_partial_batch),
        cmocka_unit_test(test_multi_row_requests_respect_max_batch),
        cmocka_unit_test(test_unequal_shapes_never_share_without_padding),
        cmocka_unit_test(test_padding_pads_and_slices_back),
        cmocka_unit_test(test_length_buckets_separate),
        cmocka_unit_test(test_padding_uses_pad_values),
        cmocka_unit_test(test_submit_all_is_all_or_none),
        cmocka_unit_test(test_submit_all_larger_than_queue_when_empty),
        cmocka_unit_test(test_submit_all_members_share_batches_with_others),
        cmocka_unit_test(test_preferred_size_cuts_batch),
        cmocka_unit_test(test_queue_full_is_busy),
        cmocka_unit_test(test_queued_request_times_out),
        cmocka_unit_test(test_deadline_that_cannot_be_met_is_refused_at_once),
        cmocka_unit_test(test_empty_queue_admits_whatever_the_average),
        cmocka_unit_test(test_thread_budget_holds),
        cmocka_unit_test(test_borrowed_threads_leave_fewer_for_batches),
        cmocka_unit_test(test_instance_threads_cap),
        cmocka_unit_test(test_drain_runs_everything_then_refuses),
        cmocka_unit_test(test_job_runs_on_a_worker_within_the_budget),
        cmocka_unit_test(test_jobs_run_before_queued_batches),
        cmocka_unit_test(test_drain_waits_for_jobs_and_takes_their_requests),
        cmocka_unit_test(test_model_failure_reaches_every_request),
        cmocka_unit_test(test_out_of_memory_never_loses_a_request),
        cmocka_unit_test(test_bad_input_fails_only_its_own_request),
        cmocka_unit_test(test_wrong_output_batch_is_internal_error),
        cmocka_unit_test(test_invalid_requests_are_refused),
        cmocka_unit_test(test_queue_destroyed_on_last_release),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
