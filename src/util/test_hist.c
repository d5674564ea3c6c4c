/* Tests for util/hist: bucket geometry, percentiles against an exact sort of random data,
 * merging, count_le, and concurrent recording. */
#include <math.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include "util/hist.h"

static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;

static uint64_t next_u64(void) {
    // splitmix64: deterministic, so a failure reproduces.
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static double next_unit(void) { return (double)(next_u64() >> 11) / 9007199254740992.0; }

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* The exact percentile under the same definition as inferd_hist_percentile. */
static int64_t exact_percentile(const int64_t *sorted, size_t n, double p) {
    double want = p / 100.0 * (double)n;
    size_t rank = (size_t)want;
    if ((double)rank < want)
        rank++;
    if (rank < 1)
        rank = 1;
    if (rank > n)
        rank = n;
    return sorted[rank - 1];
}

static void assert_within_bound(int64_t got, int64_t exact) {
    double allowed = (double)exact * INFERD_HIST_REL_ERROR;
    double diff = fabs((double)got - (double)exact);
    if (diff > allowed + 1e-9)
        fail_msg("percentile %lld vs exact %lld: error %.1f exceeds bound %.1f", (long long)got,
                 (long long)exact, diff, allowed);
}

static void test_buckets_tile_the_range(void **state) {
    (void)state;
    // Every bucket starts where the previous ended, and each is at most 1/64 of its start.
    assert_int_equal(inferd_hist_bucket_lower(0), 0);
    for (int i = 1; i < INFERD_HIST_BUCKETS; i++) {
        assert_int_equal(inferd_hist_bucket_lower(i), inferd_hist_bucket_upper(i - 1));
        int64_t lo = inferd_hist_bucket_lower(i), w = inferd_hist_bucket_upper(i) - lo;
        if (lo >= 128)
            assert_in_range(w * 64, 1, lo);
        else
            assert_int_equal(w, 1);
    }
    assert_int_equal(inferd_hist_bucket_upper(INFERD_HIST_BUCKETS - 1), INFERD_HIST_MAX_TRACKABLE);
}

static void test_bucket_index_matches_bounds(void **state) {
    (void)state;
    for (int k = 0; k < 100000; k++) {
        int64_t v =
            (int64_t)(next_u64() % (uint64_t)INFERD_HIST_MAX_TRACKABLE) >> (next_u64() % 37);
        int i = inferd_hist_bucket_index(v);
        assert_in_range(i, 0, INFERD_HIST_BUCKETS - 1);
        assert_in_range(v, inferd_hist_bucket_lower(i), inferd_hist_bucket_upper(i) - 1);
    }
    assert_int_equal(inferd_hist_bucket_index(-5), 0);
    assert_int_equal(inferd_hist_bucket_index(INT64_MAX), INFERD_HIST_BUCKETS - 1);
}

static void check_random_data(int64_t (*gen)(void), size_t n) {
    int64_t *vals = malloc(n * sizeof *vals);
    assert_non_null(vals);
    inferd_hist *h = inferd_hist_create();
    assert_non_null(h);
    for (size_t i = 0; i < n; i++) {
        vals[i] = gen();
        inferd_hist_record(h, vals[i]);
    }
    qsort(vals, n, sizeof *vals, cmp_i64);
    assert_int_equal(inferd_hist_count(h), n);
    assert_int_equal(inferd_hist_min(h), vals[0]);
    assert_int_equal(inferd_hist_max(h), vals[n - 1]);
    static const double ps[] = {0, 1, 10, 25, 50, 75, 90, 95, 99, 99.9, 99.99, 100};
    for (size_t k = 0; k < sizeof ps / sizeof ps[0]; k++)
        assert_within_bound(inferd_hist_percentile(h, ps[k]), exact_percentile(vals, n, ps[k]));
    assert_int_equal(inferd_hist_percentile(h, 0), vals[0]);
    assert_int_equal(inferd_hist_percentile(h, 100), vals[n - 1]);
    inferd_hist_destroy(h);
    free(vals);
}

static int64_t gen_lognormal(void) {
    // Latency-like: median ~1 ms, long tail to seconds.
    double u1 = next_unit(), u2 = next_unit();
    double z = sqrt(-2.0 * log(u1 + 1e-300)) * cos(2 * M_PI * u2);
    return (int64_t)exp(log(1e6) + 1.5 * z);
}

static int64_t gen_uniform_wide(void) {
    // Uniform in log space from 1 ns to 100 s: every octave gets exercised.
    return (int64_t)exp(next_unit() * log(1e11));
}

static int64_t gen_small(void) { return (int64_t)(next_u64() % 300); }

static void test_percentiles_lognormal(void **state) {
    (void)state;
    check_random_data(gen_lognormal, 200000);
}

static void test_percentiles_wide(void **state) {
    (void)state;
    check_random_data(gen_uniform_wide, 100000);
}

static void test_percentiles_small_values_exact(void **state) {
    (void)state;
    check_random_data(gen_small, 50000);
}

static void test_empty(void **state) {
    (void)state;
    inferd_hist *h = inferd_hist_create();
    assert_int_equal(inferd_hist_count(h), 0);
    assert_int_equal(inferd_hist_percentile(h, 99), 0);
    assert_int_equal(inferd_hist_min(h), 0);
    assert_int_equal(inferd_hist_max(h), 0);
    assert_true(inferd_hist_mean(h) == 0.0);
    inferd_hist_destroy(h);
    inferd_hist_destroy(NULL);
}

static void test_huge_values_clamp_to_max(void **state) {
    (void)state;
    inferd_hist *h = inferd_hist_create();
    inferd_hist_record(h, 1000);
    inferd_hist_record(h, (int64_t)300e9); // 300 s, beyond the trackable range
    assert_int_equal(inferd_hist_percentile(h, 100), (int64_t)300e9);
    assert_int_equal(inferd_hist_percentile(h, 50), 1000);
    inferd_hist_destroy(h);
}

static void test_mean_sum_reset(void **state) {
    (void)state;
    inferd_hist *h = inferd_hist_create();
    inferd_hist_record(h, 100);
    inferd_hist_record(h, 300);
    inferd_hist_record_n(h, 1000, 2);
    assert_int_equal(inferd_hist_count(h), 4);
    assert_int_equal(inferd_hist_sum(h), 2400);
    assert_true(fabs(inferd_hist_mean(h) - 600.0) < 1e-9);
    inferd_hist_reset(h);
    assert_int_equal(inferd_hist_count(h), 0);
    assert_int_equal(inferd_hist_percentile(h, 50), 0);
    inferd_hist_record(h, 7);
    assert_int_equal(inferd_hist_min(h), 7);
    assert_int_equal(inferd_hist_max(h), 7);
    inferd_hist_destroy(h);
}

static void test_merge_equals_recording_all(void **state) {
    (void)state;
    inferd_hist *a = inferd_hist_create(), *b = inferd_hist_create(), *all = inferd_hist_create();
    for (int i = 0; i < 10000; i++) {
        int64_t v = gen_lognormal();
        inferd_hist_record(i % 3 ? a : b, v);
        inferd_hist_record(all, v);
    }
    inferd_hist_merge(a, b);
    assert_int_equal(inferd_hist_count(a), inferd_hist_count(all));
    assert_int_equal(inferd_hist_sum(a), inferd_hist_sum(all));
    assert_int_equal(inferd_hist_min(a), inferd_hist_min(all));
    assert_int_equal(inferd_hist_max(a), inferd_hist_max(all));
    for (double p = 0; p <= 100; p += 0.5)
        assert_int_equal(inferd_hist_percentile(a, p), inferd_hist_percentile(all, p));
    inferd_hist_destroy(a);
    inferd_hist_destroy(b);
    inferd_hist_destroy(all);
}

static void test_count_le(void **state) {
    (void)state;
    inferd_hist *h = inferd_hist_create();
    for (int64_t v = 0; v < 100; v++)
        inferd_hist_record(h, v);
    inferd_hist_record(h, 1 << 20);
    inferd_hist_record(h, (1 << 20) + 5);
    assert_int_equal(inferd_hist_count_le(h, -1), 0);
    assert_int_equal(inferd_hist_count_le(h, 0), 1);
    assert_int_equal(inferd_hist_count_le(h, 49), 50);
    assert_int_equal(inferd_hist_count_le(h, 99), 100);
    // 2^20 starts a bucket 2^14 wide, so the bound just below it is exact and both big values
    // sit in one bucket whose top is 2^20 + 2^14 - 1.
    assert_int_equal(inferd_hist_count_le(h, (1 << 20) - 1), 100);
    assert_int_equal(inferd_hist_count_le(h, (1 << 20) + (1 << 14) - 1), 102);
    assert_int_equal(inferd_hist_count_le(h, INT64_MAX), 102);
    inferd_hist_destroy(h);
}

#define THREADS 4
#define PER_THREAD 200000

static void *record_many(void *arg) {
    inferd_hist *h = arg;
    for (int i = 0; i < PER_THREAD; i++)
        inferd_hist_record(h, 1000 + i % 5000);
    return NULL;
}

static void test_concurrent_records_all_counted(void **state) {
    (void)state;
    inferd_hist *h = inferd_hist_create();
    pthread_t t[THREADS];
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(pthread_create(&t[i], NULL, record_many, h), 0);
    for (int i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);
    assert_int_equal(inferd_hist_count(h), (uint64_t)THREADS * PER_THREAD);
    assert_int_equal(inferd_hist_count_le(h, INT64_MAX), (uint64_t)THREADS * PER_THREAD);
    assert_int_equal(inferd_hist_min(h), 1000);
    assert_int_equal(inferd_hist_max(h), 5999);
    inferd_hist_destroy(h);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_buckets_tile_the_range),
        cmocka_unit_test(test_bucket_index_matches_bounds),
        cmocka_unit_test(test_percentiles_lognormal),
        cmocka_unit_test(test_percentiles_wide),
        cmocka_unit_test(test_percentiles_small_values_exact),
        cmocka_unit_test(test_empty),
        cmocka_unit_test(test_huge_values_clamp_to_max),
        cmocka_unit_test(test_mean_sum_reset),
        cmocka_unit_test(test_merge_equals_recording_all),
        cmocka_unit_test(test_count_le),
        cmocka_unit_test(test_concurrent_records_all_counted),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
