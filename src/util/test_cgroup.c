/* Tests for util/cgroup: quota and memory limits read from fixture trees
 * (tests/fixtures/cgroup/<case>/, see its README) for cgroup v1, v2, hybrid, namespaced and
 * nested layouts, fractional quotas and their rounding, malformed files, the budget's
 * sources, the --threads override and the metrics text. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "util/cgroup.h"

#define FIX "tests/fixtures/cgroup/"

static inferd_cgroup_paths fixture(const char *name) {
    static char root[256], proc[256];
    snprintf(root, sizeof root, FIX "%s/sys_fs_cgroup", name);
    snprintf(proc, sizeof proc, FIX "%s/proc_self_cgroup", name);
    return (inferd_cgroup_paths){.root = root, .proc_cgroup = proc};
}

static void assert_contains(const char *haystack, const char *needle) {
    if (!strstr(haystack, needle))
        fail_msg("'%s' does not contain '%s'", haystack, needle);
}

static void assert_ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    if (n < m || strcmp(s + n - m, suffix) != 0)
        fail_msg("'%s' does not end with '%s'", s, suffix);
}

/* Reads a case's quota, expecting success. */
static inferd_cgroup_quota quota_of(const char *name) {
    inferd_cgroup_paths p = fixture(name);
    inferd_cgroup_quota q;
    inferd_error err = {0};
    int rc = inferd_cgroup_read_cpu_quota(&p, &q, &err);
    if (rc != 0)
        fail_msg("%s: rc %d (%s), expected 0", name, rc, err.msg);
    return q;
}

static int64_t memory_of(const char *name) {
    inferd_cgroup_paths p = fixture(name);
    int64_t m = 0;
    inferd_error err = {0};
    int rc = inferd_cgroup_read_memory_limit(&p, &m, &err);
    if (rc != 0)
        fail_msg("%s: rc %d (%s), expected 0", name, rc, err.msg);
    return m;
}

static void test_v2_limit_on_the_container(void **state) {
    (void)state;
    inferd_cgroup_quota q = quota_of("v2");
    assert_int_equal(q.version, 2);
    assert_int_equal(q.quota_us, 200000);
    assert_int_equal(q.period_us, 100000);
    assert_ends_with(q.dir, "/cri-abc.scope");
    assert_int_equal(memory_of("v2"), 4294967296LL);

    inferd_cgroup_budget b;
    inferd_cgroup_budget_compute(&q, 8, 8, &b);
    assert_int_equal(b.threads, 2);
    assert_int_equal(b.source, INFERD_CGROUP_SOURCE_V2);
    assert_string_equal(b.reason, "cgroup v2 cpu.max 200000 100000: 2.00 CPUs");
}

static void test_v2_without_limits(void **state) {
    (void)state;
    inferd_cgroup_quota q = quota_of("v2_nolimit");
    assert_int_equal(q.version, 0);
    assert_int_equal(memory_of("v2_nolimit"), -1);

    inferd_cgroup_budget b;
    inferd_cgroup_budget_compute(&q, 8, 8, &b);
    assert_int_equal(b.threads, 8);
    assert_int_equal(b.source, INFERD_CGROUP_SOURCE_HOST);
    assert_string_equal(b.reason, "host: 8 online CPUs");
    inferd_cgroup_budget_compute(&q, 8, 3, &b);
    assert_int_equal(b.threads, 3);
    assert_int_equal(b.source, INFERD_CGROUP_SOURCE_AFFINITY);
    assert_string_equal(b.reason, "affinity: 3 of 8 CPUs");
}

static void test_v2_namespace_uses_the_mount_root(void **state) {
    (void)state;
    inferd_cgroup_quota q = quota_of("v2_namespaced");
    assert_int_equal(q.version, 2);
    assert_int_equal(q.quota_us, 300000);
    assert_ends_with(q.dir, "v2_namespaced/sys_fs_cgroup");
    assert_int_equal(memory_of("v2_namespaced"), 1073741824LL);
}

static void test_v2_tighter_parent_wins(void **state) {
    (void)state;
    inferd_cgroup_quota q = quota_of("v2_nested");
    assert_int_equal(q.version, 2);
    assert_int_equal(q.quota_us, 100000);
    assert_ends_with(q.dir, "sys_fs_cgroup/pod");
    assert_int_equal(memory_of("v2_nested"), 1073741824LL);
}

static void test_fractional_quotas_round_down(void **state) {
    (void)state;
    inferd_cgroup_budget b;
    inferd_cgroup_quota q = quota_of("fractional"); // 1.5 CPUs
    inferd_cgroup_budget_compute(&q, 8, 8, &b);
    assert_int_equal(b.threads, 1);
    assert_int_equal(b.source, INFERD_CGROUP_SOURCE_V2);
    assert_string_equal(b.reason, "cgroup v2 cpu.max 150000 100000: 1.50 CPUs");

    q = quota_of("fractional_small"); // 0.5 CPUs: never below one thread
    assert_int_equal(q.period_us, 50000);
    inferd_cgroup_budget_compute(&q, 8, 8, &b);
    assert_int_equal(b.threads, 1);
    assert_int_equal(b.source, INFERD_CGROUP_SOURCE_V2);
    assert_contains(b.reason, "0.50 CPUs");

    q = quota_of("fractional_v1"); // 2.5 CPUs
    assert_int_equal(q.version, 1);
    inferd_cgroup_budget_compute(&q, 8, 8, &b);
    assert_int_equal(b.threads, 2);
    assert_int_equal(b.source, INFERD_CGROUP_SOURCE_V1);
    assert_string_equal(b.reason, "cgroup v1 cfs quota 250000 period 100000: 2.50 CPUs");
}

static void test_v1_limit_on_the_container(void **state) {
    (void)state;
    inferd_cgroup_quota q = quota_of("v1");
    assert_int_equal(q.version, 1);
    assert_int_equal(q.quota_us, 300000);
    assert_int_equal(q.period_us, 100000);
    assert_ends_with(q.dir, "cpu,cpuacct/docker/abc");
    assert_int_equal(memory_of("v1"), 536870912LL);

    inferd_cgroup_budget b;
    inferd_cgroup_budget_compute(&q, 8, 8, &b);
    assert_int_equal(b.threads, 3);
    assert_int_equal(b.source, INFERD_CGROUP_SOURCE_V1);
    // A smaller CPU set beats the quota.
    inferd_cgroup_budget_compute(&q, 8, 2, &b);
    assert_int_equal(b.threads, 2);
    assert_int_equal(b.source, INFERD_CGROUP_SOURCE_AFFINITY);
}

static void test_v1_without_limits(void **state) {
    (void)state;
    inferd_cgroup_quota q = quota_of("v1_nolimit");
    assert_int_equal(q.version, 0);
    assert_int_equal(memory_of("v1_nolimit"), -1);
}

static void test_v1_mounted_at_the_container(void **state) {
    (void)state;
    inferd_cgroup_quota q = quota_of("v1_mounted");
    assert_int_equal(q.version, 1);
    assert_int_equal(q.quota_us, 200000);
    assert_ends_with(q.dir, "v1_mounted/sys_fs_cgroup/cpu");
}

static void test_hybrid_reads_v1(void **state) {
    (void)state;
    inferd_cgroup_quota q = quota_of("hybrid");
    assert_int_equal(q.version, 1);
    assert_int_equal(q.quota_us, 100000);
    assert_int_equal(q.period_us, 50000);
    assert_int_equal(memory_of("hybrid"), -1);
    inferd_cgroup_budget b;
    inferd_cgroup_budget_compute(&q, 4, 4, &b);
    assert_int_equal(b.threads, 2);
    assert_int_equal(b.source, INFERD_CGROUP_SOURCE_V1);
}

static void test_malformed_files_are_reported(void **state) {
    (void)state;
    inferd_cgroup_paths p = fixture("malformed_v2");
    inferd_cgroup_quota q;
    inferd_error err = {0};
    int rc = inferd_cgroup_read_cpu_quota(&p, &q, &err);
    assert_int_equal(rc, INFERD_EINVAL);
    assert_int_equal(err.code, INFERD_EINVAL);
    assert_contains(err.msg, "app/cpu.max: cannot parse 'lots 100000'");
    // The well-formed parent still counts.
    assert_int_equal(q.version, 2);
    assert_int_equal(q.quota_us, 200000);

    p = fixture("malformed_v1");
    err = (inferd_error){0};
    rc = inferd_cgroup_read_cpu_quota(&p, &q, &err);
    assert_int_equal(rc, INFERD_EINVAL);
    assert_contains(err.msg, "cpu.cfs_period_us: cannot parse '0'");
    assert_int_equal(q.version, 0);
}

static void test_missing_or_escaping_paths_mean_no_limit(void **state) {
    (void)state;
    inferd_cgroup_paths p = {.root = FIX "none/sys_fs_cgroup", .proc_cgroup = FIX "none/proc"};
    inferd_cgroup_quota q;
    inferd_error err = {0};
    assert_int_equal(inferd_cgroup_read_cpu_quota(&p, &q, &err), 0);
    assert_int_equal(q.version, 0);
    int64_t m = 0;
    assert_int_equal(inferd_cgroup_read_memory_limit(&p, &m, &err), 0);
    assert_int_equal(m, -1);

    // "0::/../outside" would reach escape/outside/cpu.max through the root.
    q = quota_of("escape");
    assert_int_equal(q.version, 0);
}

static void test_sources_and_ties(void **state) {
    (void)state;
    inferd_cgroup_budget b;
    // No information at all still gives one thread.
    inferd_cgroup_budget_compute(NULL, 0, 0, &b);
    assert_int_equal(b.threads, 1);
    assert_int_equal(b.source, INFERD_CGROUP_SOURCE_HOST);
    // A mask larger than the online count (offline CPUs) does not raise the budget.
    inferd_cgroup_budget_compute(NULL, 4, 6, &b);
    assert_int_equal(b.threads, 4);
    assert_int_equal(b.source, INFERD_CGROUP_SOURCE_HOST);
    // A quota equal to the cores is named: it is what the operator set.
    inferd_cgroup_quota q = {.version = 2, .quota_us = 200000, .period_us = 100000};
    inferd_cgroup_budget_compute(&q, 2, 2, &b);
    assert_int_equal(b.threads, 2);
    assert_int_equal(b.source, INFERD_CGROUP_SOURCE_V2);
    // A quota above the CPU set is not.
    q.quota_us = 1600000;
    inferd_cgroup_budget_compute(&q, 8, 4, &b);
    assert_int_equal(b.threads, 4);
    assert_int_equal(b.source, INFERD_CGROUP_SOURCE_AFFINITY);
    assert_int_equal(b.quota.version, 2); // still shown in /metrics
    assert_int_equal(b.memory_limit_bytes, -1);
}

static void test_threads_flag_overrides(void **state) {
    (void)state;
    inferd_cgroup_quota q = quota_of("fractional");
    inferd_cgroup_budget b;
    inferd_cgroup_budget_compute(&q, 8, 8, &b);
    inferd_cgroup_budget_override(&b, 4);
    assert_int_equal(b.threads, 4);
    assert_int_equal(b.source, INFERD_CGROUP_SOURCE_FLAG);
    assert_string_equal(b.reason,
                        "--threads 4; detected 1 from cgroup v2 cpu.max 150000 100000: 1.50 CPUs");
    assert_string_equal(inferd_cgroup_source_name(b.source), "flag");
}

static void test_metrics_text(void **state) {
    (void)state;
    inferd_cgroup_quota q = quota_of("fractional");
    inferd_cgroup_budget b;
    inferd_cgroup_budget_compute(&q, 8, 6, &b);
    b.memory_limit_bytes = 1073741824LL;
    char buf[1024];
    int n = inferd_cgroup_budget_format_metrics(&b, buf, sizeof buf);
    assert_true(n > 0);
    assert_int_equal((size_t)n, strlen(buf));
    assert_contains(buf, "# TYPE inferd_thread_budget gauge\n"
                         "inferd_thread_budget{source=\"cgroup_v2\"} 1\n");
    assert_contains(buf, "\ninferd_cpu_quota_cores 1.5\n");
    assert_contains(buf, "\ninferd_cpu_affinity_cores 6\n");
    assert_contains(buf, "\ninferd_memory_limit_bytes 1073741824\n");
    // Every sample line has its TYPE line: four metrics, four of each.
    int types = 0, helps = 0;
    for (const char *s = buf; (s = strstr(s, "# TYPE ")); s++)
        types++;
    for (const char *s = buf; (s = strstr(s, "# HELP ")); s++)
        helps++;
    assert_int_equal(types, 4);
    assert_int_equal(helps, 4);

    // No limits: zeros, and the host count when the mask is unknown.
    inferd_cgroup_budget_compute(NULL, 3, 0, &b);
    n = inferd_cgroup_budget_format_metrics(&b, buf, sizeof buf);
    assert_true(n > 0);
    assert_contains(buf, "inferd_thread_budget{source=\"host\"} 3\n");
    assert_contains(buf, "\ninferd_cpu_quota_cores 0\n");
    assert_contains(buf, "\ninferd_cpu_affinity_cores 3\n");
    assert_contains(buf, "\ninferd_memory_limit_bytes 0\n");

    char small[64];
    assert_int_equal(inferd_cgroup_budget_format_metrics(&b, small, sizeof small),
                     INFERD_ETOOLARGE);
    assert_string_equal(small, "");
}

static void test_publish_keeps_a_copy(void **state) {
    (void)state;
    inferd_cgroup_budget b;
    inferd_cgroup_budget_compute(NULL, 5, 0, &b);
    inferd_cgroup_budget_publish(&b);
    b.threads = 99;
    const inferd_cgroup_budget *p = inferd_cgroup_budget_published();
    assert_non_null(p);
    assert_int_equal(p->threads, 5);
    assert_string_equal(p->reason, "host: 5 online CPUs");
}

static void test_detect_on_a_fixture_and_on_this_machine(void **state) {
    (void)state;
    // The fixture's quota (2 CPUs) bounds whatever this machine has.
    inferd_cgroup_paths p = fixture("v2");
    inferd_cgroup_budget b;
    inferd_error err = {0};
    assert_int_equal(inferd_cgroup_budget_detect(&p, &b, &err), 0);
    int cpus = b.affinity_cpus > 0 && b.affinity_cpus < b.host_cpus ? b.affinity_cpus : b.host_cpus;
    assert_int_equal(b.threads, cpus < 2 ? cpus : 2);
    assert_int_equal(b.memory_limit_bytes, 4294967296LL);

    // The real files: whatever they say, the budget is within the machine.
    assert_int_equal(inferd_cgroup_budget_detect(NULL, &b, &err), 0);
    assert_in_range(b.threads, 1, b.host_cpus);
    assert_true(b.reason[0] != '\0');
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_v2_limit_on_the_container),
        cmocka_unit_test(test_v2_without_limits),
        cmocka_unit_test(test_v2_namespace_uses_the_mount_root),
        cmocka_unit_test(test_v2_tighter_parent_wins),
        cmocka_unit_test(test_fractional_quotas_round_down),
        cmocka_unit_test(test_v1_limit_on_the_container),
        cmocka_unit_test(test_v1_without_limits),
        cmocka_unit_test(test_v1_mounted_at_the_container),
        cmocka_unit_test(test_hybrid_reads_v1),
        cmocka_unit_test(test_malformed_files_are_reported),
        cmocka_unit_test(test_missing_or_escaping_paths_mean_no_limit),
        cmocka_unit_test(test_sources_and_ties),
        cmocka_unit_test(test_threads_flag_overrides),
        cmocka_unit_test(test_metrics_text),
        cmocka_unit_test(test_publish_keeps_a_copy),
        cmocka_unit_test(test_detect_on_a_fixture_and_on_this_machine),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
