/* Unit tests for repo/residency: the eviction policy as a pure function (order, pinned, busy,
 * refusal, max-loaded, trimming, estimates). The repository's residency with a fake backend
 * (parking, eviction under load, switches) is tested in test_repo_resid.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "repo/residency.h"

#define MB ((int64_t)1 << 20)

/* Fails printing both lists unless got[0..n) equals want[0..n). */
static void assert_victims(const int *got, int n_got, const int *want, int n_want) {
    char a[256] = "", b[256] = "";
    for (int i = 0; i < n_got; i++)
        snprintf(a + strlen(a), sizeof a - strlen(a), "%d ", got[i]);
    for (int i = 0; i < n_want; i++)
        snprintf(b + strlen(b), sizeof b - strlen(b), "%d ", want[i]);
    if (n_got != n_want || memcmp(got, want, sizeof(int) * (size_t)n_want) != 0)
        fail_msg("victims [%s], expected [%s]", a, b);
}

static inferd_residency_item item(int64_t mb, int64_t used, int pinned, int busy) {
    return (inferd_residency_item){
        .bytes = mb * MB, .last_used_ns = used, .pinned = pinned, .busy = busy, .counted = 1};
}

static void test_fits_without_eviction(void **state) {
    (void)state;
    inferd_residency_limits lim = {.budget = 100 * MB};
    inferd_residency_item it[] = {item(30, 1, 0, 0), item(30, 2, 0, 0)};
    int v[2], nv = -1;
    assert_int_equal(inferd_residency_plan(&lim, it, 2, 40 * MB, 1, v, &nv), INFERD_RESIDENCY_FITS);
    assert_int_equal(nv, 0);
    // Exactly the budget fits.
    assert_int_equal(inferd_residency_plan(&lim, it, 2, 40 * MB, 1, v, &nv), INFERD_RESIDENCY_FITS);
}

static void test_evicts_least_recently_used_first_and_no_more(void **state) {
    (void)state;
    inferd_residency_limits lim = {.budget = 100 * MB};
    // Used at times 5, 1, 3, 2: the order of eviction is 1, 3, 2, 0.
    inferd_residency_item it[] = {item(25, 5, 0, 0), item(25, 1, 0, 0), item(25, 3, 0, 0),
                                  item(25, 2, 0, 0)};
    int v[4], nv;
    assert_int_equal(inferd_residency_plan(&lim, it, 4, 20 * MB, 1, v, &nv), INFERD_RESIDENCY_FITS);
    assert_victims(v, nv, (int[]){1}, 1);
    assert_int_equal(inferd_residency_plan(&lim, it, 4, 45 * MB, 1, v, &nv), INFERD_RESIDENCY_FITS);
    assert_victims(v, nv, (int[]){1, 3}, 2);
    assert_int_equal(inferd_residency_plan(&lim, it, 4, 100 * MB, 1, v, &nv),
                     INFERD_RESIDENCY_FITS);
    assert_victims(v, nv, (int[]){1, 3, 2, 0}, 4);
}

static void test_pinned_versions_are_never_evicted(void **state) {
    (void)state;
    inferd_residency_limits lim = {.budget = 100 * MB};
    inferd_residency_item it[] = {item(40, 1, 1, 0), item(30, 2, 0, 0), item(30, 3, 0, 0)};
    int v[3], nv;
    assert_int_equal(inferd_residency_plan(&lim, it, 3, 50 * MB, 1, v, &nv), INFERD_RESIDENCY_FITS);
    assert_victims(v, nv, (int[]){1, 2}, 2);
    // 61 MB can never fit next to 40 MB pinned in 100 MB.
    assert_int_equal(inferd_residency_plan(&lim, it, 3, 61 * MB, 1, v, &nv),
                     INFERD_RESIDENCY_NEVER);
    assert_int_equal(nv, 0);
}

static void test_busy_versions_wait_instead_of_being_evicted(void **state) {
    (void)state;
    inferd_residency_limits lim = {.budget = 100 * MB};
    // The oldest is busy (a request in flight): it is skipped, the next oldest goes.
    inferd_residency_item it[] = {item(40, 1, 0, 1), item(30, 2, 0, 0), item(30, 3, 0, 0)};
    int v[3], nv;
    assert_int_equal(inferd_residency_plan(&lim, it, 3, 30 * MB, 1, v, &nv), INFERD_RESIDENCY_FITS);
    assert_victims(v, nv, (int[]){1}, 1);
    // 70 MB needs the busy one gone too: wait, and evict nothing meanwhile.
    assert_int_equal(inferd_residency_plan(&lim, it, 3, 70 * MB, 1, v, &nv), INFERD_RESIDENCY_WAIT);
    assert_int_equal(nv, 0);
}

static void test_larger_than_the_budget_is_never(void **state) {
    (void)state;
    inferd_residency_limits lim = {.budget = 100 * MB};
    int v[1], nv;
    assert_int_equal(inferd_residency_plan(&lim, NULL, 0, 101 * MB, 1, v, &nv),
                     INFERD_RESIDENCY_NEVER);
    assert_int_equal(inferd_residency_plan(&lim, NULL, 0, 100 * MB, 1, v, &nv),
                     INFERD_RESIDENCY_FITS);
}

static void test_max_loaded_counts_versions(void **state) {
    (void)state;
    inferd_residency_limits lim = {.max_loaded = 2};
    inferd_residency_item it[] = {item(1, 7, 0, 0), item(1, 4, 0, 0), item(1, 9, 0, 0)};
    it[2].counted = 0; // switching in: not counted
    int v[3], nv;
    assert_int_equal(inferd_residency_plan(&lim, it, 3, MB, 1, v, &nv), INFERD_RESIDENCY_FITS);
    assert_victims(v, nv, (int[]){1}, 1);
    // A version that will not count needs no room.
    assert_int_equal(inferd_residency_plan(&lim, it, 3, MB, 0, v, &nv), INFERD_RESIDENCY_FITS);
    assert_int_equal(nv, 0);
    // Two pinned versions fill max_loaded 2 for good.
    it[0].pinned = it[1].pinned = 1;
    assert_int_equal(inferd_residency_plan(&lim, it, 3, MB, 1, v, &nv), INFERD_RESIDENCY_NEVER);
}

static void test_both_limits_at_once(void **state) {
    (void)state;
    inferd_residency_limits lim = {.budget = 100 * MB, .max_loaded = 3};
    // Bytes fit, the count does not: one eviction, the oldest.
    inferd_residency_item it[] = {item(10, 3, 0, 0), item(10, 1, 0, 0), item(10, 2, 0, 0)};
    int v[3], nv;
    assert_int_equal(inferd_residency_plan(&lim, it, 3, 10 * MB, 1, v, &nv), INFERD_RESIDENCY_FITS);
    assert_victims(v, nv, (int[]){1}, 1);
    // Now bytes need two.
    assert_int_equal(inferd_residency_plan(&lim, it, 3, 85 * MB, 1, v, &nv), INFERD_RESIDENCY_FITS);
    assert_victims(v, nv, (int[]){1, 2}, 2);
}

static void test_trim_after_growth(void **state) {
    (void)state;
    inferd_residency_limits lim = {.budget = 100 * MB};
    inferd_residency_item it[] = {item(50, 3, 0, 1), item(30, 1, 0, 0), item(30, 2, 1, 0),
                                  item(10, 4, 0, 0)};
    int v[4];
    // 120 MB: the oldest idle unpinned one (index 1) brings it to 90.
    assert_victims(v, inferd_residency_trim(&lim, it, 4, v), (int[]){1}, 1);
    // Within the budget: nothing.
    it[0].bytes = 20 * MB;
    assert_int_equal(inferd_residency_trim(&lim, it, 4, v), 0);
    // Over by more than the idle ones hold: all of them, oldest first.
    it[0].bytes = 95 * MB;
    assert_victims(v, inferd_residency_trim(&lim, it, 4, v), (int[]){1, 3}, 2);
}

static void test_estimate(void **state) {
    (void)state;
    assert_int_equal(inferd_residency_estimate(40 * MB, 0), 50 * MB + MB / 4);
    assert_int_equal(inferd_residency_estimate(40 * MB, 45 * MB), 45 * MB);
    assert_int_equal(inferd_residency_estimate(0, 0), MB / 4);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fits_without_eviction),
        cmocka_unit_test(test_evicts_least_recently_used_first_and_no_more),
        cmocka_unit_test(test_pinned_versions_are_never_evicted),
        cmocka_unit_test(test_busy_versions_wait_instead_of_being_evicted),
        cmocka_unit_test(test_larger_than_the_budget_is_never),
        cmocka_unit_test(test_max_loaded_counts_versions),
        cmocka_unit_test(test_both_limits_at_once),
        cmocka_unit_test(test_trim_after_growth),
        cmocka_unit_test(test_estimate),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
