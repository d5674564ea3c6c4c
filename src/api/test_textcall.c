/* Unit tests for api/textcall: a text request's texts are tokenized before anything is queued,
 * go to the batcher as requests of their own (so they share batches with other requests' texts
 * and are padded per batch), and come back joined in request order; a bad text fails the
 * request naming it with nothing queued; admission takes all texts or none; tokenizing
 * allocates nothing per text once a thread's buffers have grown.
 *
 * The fake model reads input_ids and attention_mask [batch, L] and returns logits [batch, 3]:
 * per row the sum of its ids, its token count (the mask's sum), and the padded length L it
 * was run at. The pipeline (char vocabulary "_abcdefghijklmnopqrstuvwxyz", so a=1 .. z=26,
 * postprocess "none" with top_k 3 and labels sum/count/len) hands those three numbers back as
 * the text's prediction, so each result says which text it came from and how it was batched.
 * The model also records the rows of every batch it runs.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "api/textcall.h"
#include "util/alloc.h"
#include "util/clock.h"

#define assert_contains(haystack, needle)                                                          \
    do {                                                                                           \
        if (!strstr((haystack), (needle)))                                                         \
            fail_msg("\"%s\" does not contain \"%s\"", (haystack), (needle));                      \
    } while (0)

/* ---- the fake model ---- */

#define MAX_RUNS 256

static struct {
    pthread_mutex_t lock;
    int runs;
    int rows[MAX_RUNS];        /* rows per run */
    int64_t sums[MAX_RUNS][8]; /* each row's id sum, per run */
    int fail;
} fake = {.lock = PTHREAD_MUTEX_INITIALIZER};

static int fake_run(void *ctx, const inferd_tensor *in, inferd_tensor *out, int threads,
                    inferd_error *err) {
    (void)ctx;
    (void)threads;
    int64_t b = in[0].dims[0], L = in[0].dims[1];
    const int64_t *ids = in[0].data, *mask = in[1].data;
    pthread_mutex_lock(&fake.lock);
    int fail = fake.fail, run = fake.runs++;
    pthread_mutex_unlock(&fake.lock);
    if (fail)
        return inferd_error_set(err, INFERD_EINTERNAL, "fake model failed on purpose");
    out[0] = (inferd_tensor){.dtype = INFERD_DTYPE_F32, .rank = 2, .dims = {b, 3}};
    out[0].nbytes = (size_t)b * 12;
    out[0].data = inferd_malloc(NULL, out[0].nbytes);
    if (!out[0].data)
        return inferd_error_set(err, INFERD_EINTERNAL, "fake model out of memory");
    float *y = out[0].data;
    for (int64_t r = 0; r < b; r++) {
        int64_t sum = 0, count = 0;
        for (int64_t j = 0; j < L; j++) {
            sum += ids[r * L + j] * mask[r * L + j];
            count += mask[r * L + j];
        }
        y[r * 3] = (float)sum;
        y[r * 3 + 1] = (float)count;
        y[r * 3 + 2] = (float)L;
        if (run < MAX_RUNS && r < 8)
            fake.sums[run][r] = sum;
    }
    if (run < MAX_RUNS)
        fake.rows[run] = (int)b;
    return 0;
}

static const inferd_tensor_desc model_in[] = {
    {"input_ids", INFERD_DTYPE_I64, 2, {-1, -1}},
    {"attention_mask", INFERD_DTYPE_I64, 2, {-1, -1}},
};
static const inferd_tensor_desc model_out[] = {{"logits", INFERD_DTYPE_F32, 2, {-1, 3}}};

/* ---- results ---- */

typedef struct result {
    int calls, status;
    char msg[256];
    size_t n;
    int64_t sum[64], count[64], len[64];
    int truncated[64];
} result;

static pthread_mutex_t done_lock = PTHREAD_MUTEX_INITIALIZER;
static int n_done;

static void on_done(void *user, int status, const inferd_error *err,
                    const inferd_text_result *results, size_t n) {
    result *r = user;
    pthread_mutex_lock(&done_lock);
    r->calls++;
    r->status = status;
    if (err)
        snprintf(r->msg, sizeof r->msg, "%s", err->msg);
    r->n = n;
    for (size_t k = 0; k < n && k < 64; k++) {
        const inferd_text_result *t = &results[k];
        for (size_t j = 0; j < t->n_top; j++) {
            const char *l = t->top[j].label;
            int64_t v = (int64_t)t->top[j].score;
            if (!strcmp(l, "sum"))
                r->sum[k] = v;
            else if (!strcmp(l, "count"))
                r->count[k] = v;
            else
                r->len[k] = v;
        }
        r->truncated[k] = t->truncated;
    }
    n_done++;
    pthread_mutex_unlock(&done_lock);
}

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

/* ---- environment ---- */

static char dir[64];

static void write_file(const char *name, const char *text) {
    char path[128];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

typedef struct env {
    inferd_sched *s;
    inferd_sched_queue *q;
    inferd_pipeline *p;
    inferd_stats stats;
} env;

static int setup(void **state) {
    (void)state;
    snprintf(dir, sizeof dir, "/tmp/inferd-textcall-XXXXXX");
    if (!mkdtemp(dir))
        return -1;
    char chars[64] = "_\n";
    for (char c = 'a'; c <= 'z'; c++) {
        size_t n = strlen(chars);
        chars[n] = c;
        chars[n + 1] = '\n';
        chars[n + 2] = 0;
    }
    write_file("chars.txt", chars);
    write_file("labels.txt", "sum\ncount\nlen\n");
    return 0;
}

static int teardown(void **state) {
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    inferd_textcall_thread_cleanup();
    return system(cmd);
}

static void env_start(env *e, int max_batch, int64_t delay_us, int max_queue, int truncation) {
    memset(e, 0, sizeof *e);
    pthread_mutex_lock(&fake.lock);
    fake.runs = 0;
    fake.fail = 0;
    pthread_mutex_unlock(&fake.lock);
    n_done = 0;
    char json[512];
    snprintf(json, sizeof json,
             "{\"tokenizer\": {\"type\": \"char\", \"vocab\": \"chars.txt\"}, \"max_length\": 12, "
             "\"truncation\": %s, \"inputs\": {\"input_ids\": \"input_ids\", "
             "\"attention_mask\": \"attention_mask\"}, \"output\": \"logits\", "
             "\"postprocess\": {\"function\": \"none\", \"top_k\": 3, \"labels\": \"labels.txt\"}}",
             truncation ? "true" : "false");
    inferd_pipeline_model m = {model_in, 2, model_out, 1};
    inferd_error err = {0};
    int rc = inferd_pipeline_parse(json, strlen(json), dir, &m, NULL, &e->p, &err);
    if (rc != 0)
        fail_msg("pipeline: %d %s", rc, err.msg);
    assert_int_equal(inferd_stats_init(&e->stats), 0);
    inferd_sched_options so = {.threads = 2, .workers = 2};
    assert_int_equal(inferd_sched_create(&so, &e->s, &err), 0);
    inferd_sched_queue_options qo = {
        .name = "text:1",
        .model = {.run = fake_run},
        .n_inputs = 2,
        .inputs = model_in,
        .n_outputs = 1,
        .outputs = model_out,
        .max_batch = max_batch,
        .max_delay_us = delay_us,
        .max_queue = max_queue,
        .pad = 1,
        .stats = &e->stats,
    };
    rc = inferd_sched_queue_create(e->s, &qo, &e->q, &err);
    if (rc != 0)
        fail_msg("queue: %d %s", rc, err.msg);
}

static void env_stop(env *e) {
    inferd_sched_drain(e->s);
    inferd_sched_queue_destroy(e->q);
    inferd_sched_destroy(e->s);
    inferd_stats_deinit(&e->stats);
    inferd_pipeline_destroy(e->p);
}

static inferd_textcall_options options(env *e, result *r) {
    return (inferd_textcall_options){
        .pipeline = e->p,
        .queue = e->q,
        .inputs = model_in,
        .n_inputs = 2,
        .outputs = model_out,
        .n_outputs = 1,
        .max_batch = 8,
        .stats = &e->stats,
        .done = on_done,
        .user = r,
    };
}

static int64_t letters_sum(const char *s) {
    int64_t sum = 0;
    for (; *s; s++)
        sum += *s - 'a' + 1;
    return sum;
}

static int submit(env *e, result *r, const char *const *texts, size_t n, inferd_error *err) {
    inferd_text_item items[64];
    for (size_t k = 0; k < n; k++)
        items[k] = (inferd_text_item){texts[k], strlen(texts[k])};
    inferd_textcall_options o = options(e, r);
    memset(err, 0, sizeof *err);
    return inferd_textcall_submit(&o, items, n, err);
}

/* ---- tests ---- */

static void test_texts_come_back_in_order(void **state) {
    (void)state;
    env e;
    env_start(&e, 4, 20000, 0, 1);
    // Lengths 1..9 in a scrambled order: the batcher groups them, the call restores the order.
    const char *texts[] = {"abcde", "z",     "hello", "ab",   "qrstuvw", "abcdefghi",
                           "mm",    "xyzab", "c",     "word", "abcdef",  "pq"};
    size_t n = sizeof texts / sizeof texts[0];
    result r = {0};
    inferd_error err;
    assert_int_equal(submit(&e, &r, texts, n, &err), 0);
    wait_done(1);
    assert_int_equal(r.calls, 1);
    assert_int_equal(r.status, 0);
    assert_int_equal(r.n, n);
    for (size_t k = 0; k < n; k++) {
        assert_int_equal(r.sum[k], letters_sum(texts[k]));
        assert_int_equal(r.count[k], (int64_t)strlen(texts[k]));
        // Padded to the longest text of its batch, never shorter than its own.
        assert_in_range(r.len[k], (int64_t)strlen(texts[k]), 9);
    }
    // Twelve texts, at most four rows a batch: the request was split over several batches.
    pthread_mutex_lock(&fake.lock);
    int runs = fake.runs;
    pthread_mutex_unlock(&fake.lock);
    assert_in_range(runs, 3, 12);
    assert_int_equal(atomic_load(&e.stats.text_items), n);
    assert_int_equal(inferd_hist_count(e.stats.tokenize_ns), 1);
    env_stop(&e);
}

static void test_texts_share_batches_with_other_requests(void **state) {
    (void)state;
    env e;
    env_start(&e, 4, 2000000, 0, 1); // only full batches leave before the drain
    // Request A: six texts of 'a's (sums 1..6); request B: two texts of 'z's (26, 52).
    const char *a[] = {"a", "aa", "aaa", "aaaa", "aaaaa", "aaaaaa"};
    const char *b[] = {"z", "zz"};
    result ra = {0}, rb = {0};
    inferd_error err;
    assert_int_equal(submit(&e, &ra, a, 6, &err), 0);
    assert_int_equal(submit(&e, &rb, b, 2, &err), 0);
    wait_done(2);
    assert_int_equal(ra.status, 0);
    assert_int_equal(rb.status, 0);
    for (int k = 0; k < 6; k++)
        assert_int_equal(ra.sum[k], k + 1);
    assert_int_equal(rb.sum[0], 26);
    assert_int_equal(rb.sum[1], 52);
    // Two full batches: A's first four, then A's last two with B's two.
    pthread_mutex_lock(&fake.lock);
    assert_int_equal(fake.runs, 2);
    int mixed = -1;
    for (int run = 0; run < 2; run++) {
        int from_a = 0, from_b = 0;
        for (int row = 0; row < fake.rows[run]; row++) {
            if (fake.sums[run][row] >= 26)
                from_b++;
            else
                from_a++;
        }
        if (from_a && from_b)
            mixed = run;
    }
    pthread_mutex_unlock(&fake.lock);
    assert_int_not_equal(mixed, -1);
    // The mixed batch ran at the longest of its texts: "zz" is 2, A's last two are 5 and 6.
    assert_int_equal(rb.len[0], 6);
    assert_int_equal(ra.len[0], 4);
    env_stop(&e);
}

static void test_bad_text_fails_before_anything_is_queued(void **state) {
    (void)state;
    env e;
    env_start(&e, 4, 0, 0, 0);
    result r = {0};
    inferd_error err;
    const char *bad[] = {"ok", "ok",
                         "b\xff"
                         "d"};
    assert_int_equal(submit(&e, &r, bad, 3, &err), INFERD_EINVAL);
    assert_string_equal(err.msg, "text item 2 is not valid UTF-8 (byte offset 1)");
    // Without truncation a text over max_length (12) fails, named.
    const char *long_text[] = {"abc", "abcdefghijklmnop"};
    assert_int_equal(submit(&e, &r, long_text, 2, &err), INFERD_ETOOLARGE);
    assert_contains(err.msg, "text item 1");
    assert_int_equal(submit(&e, &r, long_text, 0, &err), INFERD_EINVAL);
    inferd_sched_drain(e.s);
    assert_int_equal(r.calls, 0);
    pthread_mutex_lock(&fake.lock);
    assert_int_equal(fake.runs, 0);
    pthread_mutex_unlock(&fake.lock);
    assert_int_equal(atomic_load(&e.stats.text_items), 0);
    env_stop(&e);
}

static void test_truncated_texts_are_flagged(void **state) {
    (void)state;
    env e;
    env_start(&e, 4, 0, 0, 1);
    result r = {0};
    inferd_error err;
    const char *texts[] = {"abcdefghijklmnop", "abc"};
    assert_int_equal(submit(&e, &r, texts, 2, &err), 0);
    wait_done(1);
    assert_int_equal(r.status, 0);
    assert_int_equal(r.truncated[0], 1);
    assert_int_equal(r.count[0], 12); // cut at max_length
    assert_int_equal(r.sum[0], letters_sum("abcdefghijkl"));
    assert_int_equal(r.truncated[1], 0);
    assert_int_equal(atomic_load(&e.stats.text_truncated), 1);
    env_stop(&e);
}

static void test_admission_takes_all_texts_or_none(void **state) {
    (void)state;
    env e;
    env_start(&e, 8, 2000000, 3, 1);
    result first = {0}, second = {0};
    inferd_error err;
    const char *one[] = {"a"};
    const char *three[] = {"b", "c", "d"};
    assert_int_equal(submit(&e, &first, one, 1, &err), 0);
    // 1 queued + 3 would exceed max_queue_size 3: all three are refused, none queued.
    assert_int_equal(submit(&e, &second, three, 3, &err), INFERD_EBUSY);
    assert_int_equal(inferd_sched_queue_pending(e.q), 1);
    inferd_sched_drain(e.s);
    wait_done(1);
    assert_int_equal(first.calls, 1);
    assert_int_equal(second.calls, 0);
    env_stop(&e);
}

static void test_model_failure_reaches_the_request_once(void **state) {
    (void)state;
    env e;
    env_start(&e, 2, 0, 0, 1);
    pthread_mutex_lock(&fake.lock);
    fake.fail = 1;
    pthread_mutex_unlock(&fake.lock);
    result r = {0};
    inferd_error err;
    const char *texts[] = {"a", "b", "c", "d", "e"};
    assert_int_equal(submit(&e, &r, texts, 5, &err), 0);
    wait_done(1);
    inferd_sched_drain(e.s);
    assert_int_equal(r.calls, 1);
    assert_int_equal(r.status, INFERD_EINTERNAL);
    assert_contains(r.msg, "failed on purpose");
    env_stop(&e);
}

/* Every allocation of a text call fails in turn, from tokenizing on a thread with fresh buffers
 * to the joined results: the submit is refused with a message and done never called, or done
 * is called exactly once, with every text's prediction or with an error that says why; nothing
 * is left behind (LeakSanitizer under make unit-asan). */
static void test_out_of_memory_anywhere_in_a_text_call(void **state) {
    (void)state;
    env e;
    env_start(&e, 4, 1000, 0, 1);
    const char *texts[] = {"abc", "z", "hello", "ab", "qrs"};
    int expected = 0, ok = 0;
    for (long nth = 1; nth < 500 && !ok; nth++) {
        inferd_textcall_thread_cleanup();
        result r = {0};
        inferd_error err;
        inferd_alloc_fail_after(nth);
        int rc = submit(&e, &r, texts, 5, &err);
        if (rc == 0)
            wait_done(++expected);
        inferd_alloc_fail_after(0);
        if (rc != 0) {
            if (!err.msg[0])
                fail_msg("allocation %ld: submit failed (%d) without a message", nth, rc);
            continue;
        }
        assert_int_equal(r.calls, 1);
        if (r.status != 0) {
            if (!r.msg[0])
                fail_msg("allocation %ld: the call failed (%d) without a message", nth, r.status);
            env_stop(&e); // drained: a fresh scheduler for the next attempt
            env_start(&e, 4, 1000, 0, 1);
            expected = 0;
            continue;
        }
        assert_int_equal(r.n, 5);
        for (size_t k = 0; k < 5; k++)
            assert_int_equal(r.sum[k], letters_sum(texts[k]));
        ok = 1;
    }
    assert_true(ok);
    env_stop(&e);
}

static void test_tokenizing_allocates_once_per_request_after_warm_up(void **state) {
    (void)state;
    env e;
    env_start(&e, 128, 2000000, 0, 1); // nothing runs during the submits
    const char *texts[32];
    for (int k = 0; k < 32; k++)
        texts[k] = k % 2 ? "abcdefghijkl" : "xyz";
    result warm = {0}, r = {0};
    inferd_error err;
    assert_int_equal(submit(&e, &warm, texts, 32, &err), 0);
    long before = inferd_alloc_count();
    assert_int_equal(submit(&e, &r, texts, 32, &err), 0);
    // One block for the whole request (its arena); nothing per text.
    assert_int_equal(inferd_alloc_count() - before, 1);
    inferd_sched_drain(e.s);
    wait_done(2);
    assert_int_equal(r.status, 0);
    assert_int_equal(r.sum[31], letters_sum("abcdefghijkl"));
    env_stop(&e);
}

static void test_model_the_text_path_cannot_feed(void **state) {
    (void)state;
    env e;
    env_start(&e, 4, 0, 0, 1);
    result r = {0};
    inferd_error err;
    inferd_textcall_options o = options(&e, &r);
    static const inferd_tensor_desc fixed[] = {
        {"input_ids", INFERD_DTYPE_I64, 2, {4, -1}},
        {"attention_mask", INFERD_DTYPE_I64, 2, {4, -1}},
    };
    o.inputs = fixed;
    o.max_batch = 0;
    inferd_text_item item = {"abc", 3};
    assert_int_equal(inferd_textcall_submit(&o, &item, 1, &err), INFERD_EUNSUPPORTED);
    assert_contains(err.msg, "fixed batch of 4");
    static const inferd_tensor_desc other_out[] = {{"scores", INFERD_DTYPE_F32, 2, {-1, 3}}};
    o = options(&e, &r);
    o.outputs = other_out;
    assert_int_equal(inferd_textcall_submit(&o, &item, 1, &err), INFERD_EUNSUPPORTED);
    assert_contains(err.msg, "no output 'logits'");
    env_stop(&e);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_texts_come_back_in_order),
        cmocka_unit_test(test_texts_share_batches_with_other_requests),
        cmocka_unit_test(test_bad_text_fails_before_anything_is_queued),
        cmocka_unit_test(test_truncated_texts_are_flagged),
        cmocka_unit_test(test_admission_takes_all_texts_or_none),
        cmocka_unit_test(test_model_failure_reaches_the_request_once),
        cmocka_unit_test(test_out_of_memory_anywhere_in_a_text_call),
        cmocka_unit_test(test_tokenizing_allocates_once_per_request_after_warm_up),
        cmocka_unit_test(test_model_the_text_path_cannot_feed),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
