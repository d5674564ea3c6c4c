/* Tests for cli/loadgen_proc: parsing /proc/PID/stat text, and sampling this very process. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <unistd.h>

#include <cmocka.h>

#include "cli/loadgen_proc.h"

static void test_parse_stat_with_awkward_name(void **state) {
    (void)state;
    // A command name with spaces and a ')' inside; utime 1234, stime 56, 7 threads.
    const char *text = "4242 (my) (server x) S 1 4242 4242 0 -1 4194560 1000 0 0 0 1234 56 0 0 "
                       "20 0 7 0 123456 1000000 200 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0\n";
    int64_t ticks = 0;
    int threads = 0;
    inferd_error err = {0};
    assert_int_equal(inferd_loadgen_proc_parse_stat(text, &ticks, &threads, &err), 0);
    assert_int_equal(ticks, 1290);
    assert_int_equal(threads, 7);
}

static void test_parse_stat_rejects_garbage(void **state) {
    (void)state;
    int64_t ticks;
    int threads;
    inferd_error err = {0};
    assert_int_equal(inferd_loadgen_proc_parse_stat("hello", &ticks, &threads, &err),
                     INFERD_EINVAL);
    assert_int_equal(inferd_loadgen_proc_parse_stat("1 (x) S 1 2 3", &ticks, &threads, &err),
                     INFERD_EINVAL);
    assert_int_equal(inferd_loadgen_proc_parse_stat("1 (x) S a b c d e f g h i j k l m n o p q",
                                                    &ticks, &threads, &err),
                     INFERD_EINVAL);
}

static pthread_barrier_t barrier;

static void *wait_at_barrier(void *arg) {
    (void)arg;
    pthread_barrier_wait(&barrier); // started
    pthread_barrier_wait(&barrier); // may end
    return NULL;
}

static void test_sample_self_counts_threads(void **state) {
    (void)state;
    inferd_loadgen_proc_sample a, b;
    inferd_error err = {0};
    assert_int_equal(inferd_loadgen_proc_sample_pid(getpid(), &a, &err), 0);
    pthread_barrier_init(&barrier, NULL, 2);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, wait_at_barrier, NULL), 0);
    pthread_barrier_wait(&barrier);
    assert_int_equal(inferd_loadgen_proc_sample_pid(getpid(), &b, &err), 0);
    pthread_barrier_wait(&barrier);
    pthread_join(t, NULL);
    pthread_barrier_destroy(&barrier);
    assert_int_equal(b.threads, a.threads + 1);
    assert_true(b.cpu_ticks >= a.cpu_ticks);
    assert_true(b.at_ns > a.at_ns);
    assert_true(inferd_loadgen_proc_cpu_percent(&a, &b) >= 0);
}

static void test_missing_process(void **state) {
    (void)state;
    inferd_loadgen_proc_sample s;
    inferd_error err = {0};
    // Above the kernel's pid_max limit (4194304), so it can never exist.
    assert_int_equal(inferd_loadgen_proc_sample_pid(99999999, &s, &err), INFERD_ENOTFOUND);
}

static void test_cpu_percent_arithmetic(void **state) {
    (void)state;
    long hz = sysconf(_SC_CLK_TCK);
    inferd_loadgen_proc_sample a = {.cpu_ticks = 0, .at_ns = 0};
    inferd_loadgen_proc_sample b = {.cpu_ticks = 3 * hz, .at_ns = 2000000000};
    // 3 CPU seconds over 2 wall seconds: one and a half cores.
    double pct = inferd_loadgen_proc_cpu_percent(&a, &b);
    assert_true(pct > 149.999 && pct < 150.001);
    assert_true(inferd_loadgen_proc_cpu_percent(&a, &a) == 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_stat_with_awkward_name),
        cmocka_unit_test(test_parse_stat_rejects_garbage),
        cmocka_unit_test(test_sample_self_counts_threads),
        cmocka_unit_test(test_missing_process),
        cmocka_unit_test(test_cpu_percent_arithmetic),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
