/* Unit tests for repo/routes: lookups, counters that survive republishing, and lookups racing
 * with publishes (also run under ThreadSanitizer by make unit-tsan). */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "repo/routes.h"
#include "util/alloc.h"

static inferd_route make(const char *model, const char *path) {
    inferd_route r;
    memset(&r, 0, sizeof r);
    snprintf(r.model, sizeof r.model, "%s", model);
    snprintf(r.spec.path, sizeof r.spec.path, "%s", path);
    snprintf(r.spec.input, sizeof r.spec.input, "text");
    return r;
}

static void test_lookup(void **state) {
    (void)state;
    inferd_routes *rt;
    inferd_error err = {0};
    assert_int_equal(inferd_routes_create(&rt, &err), 0);
    inferd_route out;
    assert_int_equal(inferd_routes_lookup(rt, "/a", &out), 0); // empty before any publish
    inferd_route rs[] = {make("m2", "/zeta"), make("m1", "/alpha"), make("m1", "/mid/x")};
    assert_int_equal(inferd_routes_publish(rt, rs, 3, &err), 0);
    assert_int_equal(inferd_routes_lookup(rt, "/alpha", &out), 1);
    assert_string_equal(out.model, "m1");
    assert_string_equal(out.spec.input, "text");
    inferd_route_stats_release(out.stats);
    assert_int_equal(inferd_routes_lookup(rt, "/zeta", &out), 1);
    assert_string_equal(out.model, "m2");
    inferd_route_stats_release(out.stats);
    assert_int_equal(inferd_routes_lookup(rt, "/mid/x", &out), 1);
    inferd_route_stats_release(out.stats);
    // Exact matches only.
    assert_int_equal(inferd_routes_lookup(rt, "/mid", &out), 0);
    assert_int_equal(inferd_routes_lookup(rt, "/alpha/", &out), 0);
    assert_int_equal(inferd_routes_lookup(rt, "/ALPHA", &out), 0);
    inferd_route *list;
    size_t n;
    assert_int_equal(inferd_routes_list(rt, &list, &n, &err), 0);
    assert_int_equal(n, 3);
    assert_string_equal(list[0].spec.path, "/alpha"); // sorted by path
    assert_string_equal(list[2].spec.path, "/zeta");
    for (size_t i = 0; i < n; i++)
        inferd_route_stats_release(list[i].stats);
    inferd_free(list);
    // An empty table removes every route.
    assert_int_equal(inferd_routes_publish(rt, NULL, 0, &err), 0);
    assert_int_equal(inferd_routes_lookup(rt, "/alpha", &out), 0);
    inferd_routes_destroy(rt);
}

static void test_counters_survive_republishing(void **state) {
    (void)state;
    inferd_routes *rt;
    inferd_error err = {0};
    assert_int_equal(inferd_routes_create(&rt, &err), 0);
    inferd_route rs[] = {make("m1", "/a"), make("m1", "/b")};
    assert_int_equal(inferd_routes_publish(rt, rs, 2, &err), 0);
    inferd_route held;
    assert_int_equal(inferd_routes_lookup(rt, "/a", &held), 1);
    atomic_fetch_add(&held.stats->success, 3);
    // Republished with /b moved to another model: /a keeps its counters, /b starts again.
    inferd_route rs2[] = {make("m1", "/a"), make("m2", "/b")};
    inferd_route b;
    assert_int_equal(inferd_routes_lookup(rt, "/b", &b), 1);
    atomic_fetch_add(&b.stats->failure, 1);
    assert_int_equal(inferd_routes_publish(rt, rs2, 2, &err), 0);
    inferd_route out;
    assert_int_equal(inferd_routes_lookup(rt, "/a", &out), 1);
    assert_ptr_equal(out.stats, held.stats);
    assert_int_equal(atomic_load(&out.stats->success), 3);
    inferd_route_stats_release(out.stats);
    assert_int_equal(inferd_routes_lookup(rt, "/b", &out), 1);
    assert_string_equal(out.model, "m2");
    assert_int_equal(atomic_load(&out.stats->failure), 0);
    inferd_route_stats_release(out.stats);
    // A request's reference outlives the tables: the counters it holds stay valid.
    assert_int_equal(inferd_routes_publish(rt, NULL, 0, &err), 0);
    inferd_routes_destroy(rt);
    atomic_fetch_add(&held.stats->success, 1);
    assert_int_equal(atomic_load(&held.stats->success), 4);
    assert_int_equal(atomic_load(&b.stats->failure), 1);
    inferd_route_stats_release(held.stats);
    inferd_route_stats_release(b.stats);
}

typedef struct race {
    inferd_routes *rt;
    _Atomic int stop;
    _Atomic long found, wrong;
} race;

static void *reader(void *arg) {
    race *r = arg;
    while (!atomic_load(&r->stop)) {
        inferd_route out;
        if (inferd_routes_lookup(r->rt, "/stable", &out)) {
            // Every table maps /stable to m1; a torn or freed table would show something else.
            if (strcmp(out.model, "m1") != 0 || strcmp(out.spec.path, "/stable") != 0)
                atomic_fetch_add(&r->wrong, 1);
            atomic_fetch_add(&out.stats->success, 1);
            inferd_route_stats_release(out.stats);
            atomic_fetch_add(&r->found, 1);
        } else {
            atomic_fetch_add(&r->wrong, 1);
        }
    }
    return NULL;
}

static void test_lookups_race_with_publishes(void **state) {
    (void)state;
    race r = {0};
    inferd_error err = {0};
    assert_int_equal(inferd_routes_create(&r.rt, &err), 0);
    inferd_route base[] = {make("m1", "/stable")};
    assert_int_equal(inferd_routes_publish(r.rt, base, 1, &err), 0);
    pthread_t th[3];
    for (int i = 0; i < 3; i++)
        assert_int_equal(pthread_create(&th[i], NULL, reader, &r), 0);
    for (int k = 0; k < 2000; k++) {
        inferd_route rs[3] = {make("m1", "/stable"), make("m2", "/other"), make("m3", "/x")};
        char p[32];
        snprintf(p, sizeof p, "/gen%d", k);
        rs[2] = make("m3", p); // a different table every time
        assert_int_equal(inferd_routes_publish(r.rt, rs, 3, &err), 0);
    }
    atomic_store(&r.stop, 1);
    for (int i = 0; i < 3; i++)
        pthread_join(th[i], NULL);
    if (atomic_load(&r.wrong) != 0)
        fail_msg("%ld lookups saw a wrong or missing route", atomic_load(&r.wrong));
    inferd_route out;
    assert_int_equal(inferd_routes_lookup(r.rt, "/stable", &out), 1);
    // Every lookup counted into the same counters, across 2000 tables.
    assert_int_equal((long)atomic_load(&out.stats->success), atomic_load(&r.found));
    inferd_route_stats_release(out.stats);
    inferd_routes_destroy(r.rt);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lookup),
        cmocka_unit_test(test_counters_survive_republishing),
        cmocka_unit_test(test_lookups_race_with_publishes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
