/* Unit tests for the repository's residency with a fake backend: loading on demand with
 * parked requests, LRU eviction within a byte budget and a count, pinned versions, requests
 * in flight protecting their version, refusal of a version larger than the budget, deadlines
 * of parked requests, version switches and removals found by polling, the load and unload
 * requests, and many threads at once (also run under ThreadSanitizer by make unit-tsan).
 *
 * A fake model file says what the fake load does: "charge=<bytes> sleep=<ms> fail=<0|1>",
 * padded to the file size wanted (the repository's first estimate of a version comes from its
 * files' size: 1.25 x the file + 256 KiB). */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "repo/repo.h"
#include "util/clock.h"

#define KB ((int64_t)1 << 10)
#define MB ((int64_t)1 << 20)

#define assert_contains(haystack, needle)                                                          \
    do {                                                                                           \
        if (!strstr((haystack), (needle)))                                                         \
            fail_msg("\"%s\" does not contain \"%s\"", (haystack), (needle));                      \
    } while (0)

/* ---- the fake backend ---- */

static _Atomic int live_models, loads_started;

typedef struct fake_model {
    inferd_tensor_desc in[1], out[1];
    inferd_mem_account *acct;
    int64_t bytes;
    long version;
} fake_model;

/* y = the version number, one per row. */
static int fake_run(void *ctx, const inferd_tensor *in, inferd_tensor *out, int threads,
                    inferd_error *err) {
    const fake_model *m = ctx;
    (void)threads;
    (void)err;
    int64_t b = in[0].dims[0];
    out[0] = (inferd_tensor){.dtype = INFERD_DTYPE_F32, .rank = 2, .dims = {b, 1}};
    out[0].nbytes = (size_t)b * 4;
    out[0].data = inferd_malloc(NULL, out[0].nbytes);
    for (int64_t i = 0; i < b; i++)
        ((float *)out[0].data)[i] = (float)m->version;
    return 0;
}

static void fake_destroy(void *ctx) {
    fake_model *m = ctx;
    inferd_mem_account_charge(m->acct, -m->bytes);
    free(m);
    atomic_fetch_sub(&live_models, 1);
}

static int64_t fake_memory(void *ctx) { return ((fake_model *)ctx)->bytes; }

static int fake_load(void *user, const inferd_repo_load_args *a, inferd_repo_model *out,
                     inferd_error *err) {
    (void)user;
    atomic_fetch_add(&loads_started, 1);
    char spec[128] = "";
    FILE *f = fopen(a->path, "r");
    if (f) {
        if (!fgets(spec, sizeof spec, f))
            spec[0] = 0;
        fclose(f);
    }
    long long charge = 0;
    int sleep_ms = 0, fail = 0;
    if (sscanf(spec, "charge=%lld sleep=%d fail=%d", &charge, &sleep_ms, &fail) != 3)
        return inferd_error_set(err, INFERD_EINVAL, "%s: not a fake model", a->path);
    if (sleep_ms)
        usleep((useconds_t)sleep_ms * 1000);
    if (fail)
        return inferd_error_set(err, INFERD_EINVAL, "%s: broken on purpose", a->path);
    fake_model *m = calloc(1, sizeof *m);
    const char *slash = strrchr(a->path, '/');
    while (slash > a->path && slash[-1] != '/')
        slash--;
    m->version = strtol(slash, NULL, 10);
    m->acct = a->acct;
    m->bytes = charge;
    inferd_mem_account_charge(a->acct, charge);
    m->in[0] = (inferd_tensor_desc){"x", INFERD_DTYPE_I64, 2, {-1, -1}};
    m->out[0] = (inferd_tensor_desc){"y", INFERD_DTYPE_F32, 2, {-1, 1}};
    atomic_fetch_add(&live_models, 1);
    *out = (inferd_repo_model){.ctx = m,
                               .platform = a->platform,
                               .n_inputs = 1,
                               .n_outputs = 1,
                               .inputs = m->in,
                               .outputs = m->out,
                               .run = fake_run,
                               .destroy = fake_destroy,
                               .memory = fake_memory};
    return 0;
}

/* ---- a repository on disk ---- */

static char root[256];

static void mkdirs(const char *path) {
    char p[512];
    snprintf(p, sizeof p, "%s", path);
    for (char *c = p + 1; *c; c++)
        if (*c == '/') {
            *c = 0;
            mkdir(p, 0755);
            *c = '/';
        }
    mkdir(p, 0755);
}

/* Writes root/<model>/<version>/model.onnx: a fake charging `charge` bytes, file_bytes long.
 * Written to a dot folder first and renamed, as a deployment would, so polling never sees
 * half of it. */
static void put_model(const char *model, long version, int64_t charge, int64_t file_bytes,
                      int sleep_ms, int fail) {
    char tmp[512], final[512], path[600];
    snprintf(tmp, sizeof tmp, "%s/%s/.tmp-%ld", root, model, version);
    snprintf(final, sizeof final, "%s/%s/%ld", root, model, version);
    mkdirs(tmp);
    snprintf(path, sizeof path, "%s/model.onnx", tmp);
    FILE *f = fopen(path, "w");
    int n = fprintf(f, "charge=%lld sleep=%d fail=%d\n", (long long)charge, sleep_ms, fail);
    for (int64_t i = n; i < file_bytes; i++)
        fputc(' ', f);
    fclose(f);
    if (rename(tmp, final) != 0)
        fail_msg("rename %s -> %s failed", tmp, final);
}

static void put_config(const char *model, const char *text) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", root, model);
    mkdirs(path);
    snprintf(path, sizeof path, "%s/%s/config.json", root, model);
    FILE *f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
}

static void remove_path(const char *rel) {
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf %s/%s", root, rel);
    assert_int_equal(system(cmd), 0);
}

static int setup(void **state) {
    (void)state;
    snprintf(root, sizeof root, "/tmp/inferd-test-resid-XXXXXX");
    return mkdtemp(root) ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", root);
    return system(cmd);
}

/* Every test gets a fresh repository folder. */
static int fresh(void **state) {
    teardown(state);
    return setup(state);
}

static inferd_repo *open_repo(int64_t budget, int max_loaded, int64_t poll_ms) {
    inferd_repo_options o = {.dir = root,
                             .load = fake_load,
                             .memory_budget = budget,
                             .max_loaded = max_loaded,
                             .poll_interval_ms = poll_ms,
                             .loader_threads = 2};
    inferd_repo *r = NULL;
    inferd_error err = {0};
    int rc = inferd_repo_create(&o, &r, &err);
    if (rc != 0)
        fail_msg("repo_create: %d %s", rc, err.msg);
    if ((rc = inferd_repo_start(r, &err)) != 0)
        fail_msg("repo_start: %d %s", rc, err.msg);
    return r;
}

/* ---- parking ---- */

typedef struct waiter {
    inferd_repo_waiter w;
    _Atomic int done; /* 1: got a version; < 0: the error code */
    long version;
    char msg[256];
} waiter;

static void on_ready(void *user, inferd_repo_version *v, int status, const inferd_error *err) {
    waiter *x = user;
    if (status == 0) {
        x->version = v ? inferd_repo_version_number(v) : 0; // a load request gets no version
        inferd_repo_release(v);
    } else {
        snprintf(x->msg, sizeof x->msg, "%s", err->msg);
    }
    atomic_store(&x->done, status == 0 ? 1 : status);
}

/* Waits (at most 5 s) for x's callback; returns what it got. */
static int wait_for(waiter *x) {
    int64_t until = inferd_now_ns() + 5000000000LL;
    while (!atomic_load(&x->done) && inferd_now_ns() < until)
        usleep(1000);
    return atomic_load(&x->done);
}

/* Gets model/version into memory, the way a request does, and lets go of it. */
static long use(inferd_repo *r, const char *model, long version) {
    waiter x = {.w = {.done = on_ready}};
    x.w.user = &x;
    inferd_repo_version *v = NULL;
    inferd_error err = {0};
    int rc = inferd_repo_acquire_or_park(r, model, version, &x.w, &v, &err);
    if (rc == 0) {
        long n = inferd_repo_version_number(v);
        inferd_repo_release(v);
        return n;
    }
    if (rc != INFERD_REPO_PARKED)
        fail_msg("%s: acquire_or_park: %d %s", model, rc, err.msg);
    int got = wait_for(&x);
    if (got != 1)
        fail_msg("%s: parked request got %d: %s", model, got, x.msg);
    return x.version;
}

static const inferd_repo_entry *row(const inferd_repo_entry *e, size_t n, const char *name,
                                    long version) {
    for (size_t i = 0; i < n; i++)
        if (!strcmp(e[i].name, name) && e[i].version == version)
            return &e[i];
    return NULL;
}

static inferd_repo_state state_of(inferd_repo *r, const char *name, long version, char *reason) {
    inferd_repo_entry *e;
    size_t n;
    inferd_error err = {0};
    assert_int_equal(inferd_repo_index(r, &e, &n, &err), 0);
    const inferd_repo_entry *x = row(e, n, name, version);
    inferd_repo_state st = x ? x->state : (inferd_repo_state)-1;
    if (reason)
        snprintf(reason, 256, "%s", x ? x->reason : "(not listed)");
    inferd_free(e);
    return st;
}

/* Waits until every copy that is draining or being freed is gone (frees run on loaders). */
static void settle(inferd_repo *r) {
    int64_t until = inferd_now_ns() + 5000000000LL;
    for (;;) {
        inferd_repo_entry *e;
        size_t n;
        inferd_error err = {0};
        assert_int_equal(inferd_repo_index(r, &e, &n, &err), 0);
        int busy = 0;
        for (size_t i = 0; i < n; i++)
            busy |= e[i].state == INFERD_REPO_STATE_UNLOADING ||
                    e[i].state == INFERD_REPO_STATE_LOADING;
        inferd_free(e);
        if (!busy || inferd_now_ns() > until)
            return;
        usleep(2000);
    }
}

static void assert_state(inferd_repo *r, const char *name, long version, inferd_repo_state want) {
    char reason[256];
    inferd_repo_state got = state_of(r, name, version, reason);
    if (got != want)
        fail_msg("%s version %ld: state %d, expected %d (reason: %s)", name, version, got, want,
                 reason);
}

/* ---- tests ---- */

static void test_loads_on_first_request_and_parks_it(void **state) {
    fresh(state);
    put_model("a", 1, MB, MB, 30, 0);
    inferd_repo *r = open_repo(10 * MB, 0, 0);
    inferd_error err = {0};
    assert_int_equal(inferd_repo_wait_loaded(r, 5000, &err), 0); // nothing to load at start
    assert_state(r, "a", 1, INFERD_REPO_STATE_UNLOADED);
    inferd_repo_version *v;
    // A plain lookup neither waits nor starts a load.
    assert_int_equal(inferd_repo_acquire(r, "a", 0, &v, &err), INFERD_EUNAVAIL);
    assert_contains(err.msg, "not loaded");
    assert_state(r, "a", 1, INFERD_REPO_STATE_UNLOADED);
    waiter x = {.w = {.done = on_ready}};
    x.w.user = &x;
    assert_int_equal(inferd_repo_acquire_or_park(r, "a", 0, &x.w, &v, &err), INFERD_REPO_PARKED);
    assert_null(v);
    assert_state(r, "a", 1, INFERD_REPO_STATE_LOADING);
    inferd_repo_residency st;
    inferd_repo_residency_stats(r, &st);
    assert_int_equal(st.parked, 1);
    assert_int_equal(wait_for(&x), 1);
    assert_int_equal(x.version, 1);
    assert_state(r, "a", 1, INFERD_REPO_STATE_READY);
    inferd_repo_residency_stats(r, &st);
    assert_int_equal(st.parked, 0);
    assert_int_equal(st.loads, 1);
    assert_int_equal(st.loaded, 1);
    assert_in_range(st.used, MB, MB + 4 * KB); // the model, and the repository's copies of
                                               // its tensor descriptions
    // Now a plain lookup finds it.
    assert_int_equal(inferd_repo_acquire(r, "a", 0, &v, &err), 0);
    inferd_repo_release(v);
    inferd_repo_destroy(r);
    assert_int_equal(atomic_load(&live_models), 0);
}

static void test_evicts_the_least_recently_used(void **state) {
    fresh(state);
    const char *names[] = {"a", "b", "c", "d"};
    for (int i = 0; i < 4; i++)
        put_model(names[i], 1, MB, MB, 0, 0);
    // First loads reserve 1.5 MiB each (from the file size): three fit in 15/16 of 4.9 MiB.
    inferd_repo *r = open_repo(4 * MB + 900 * KB, 0, 0);
    use(r, "a", 0);
    use(r, "b", 0);
    use(r, "c", 0);
    use(r, "a", 0); // a is now the most recently used, b the least
    use(r, "d", 0);
    settle(r);
    assert_state(r, "a", 1, INFERD_REPO_STATE_READY);
    assert_state(r, "b", 1, INFERD_REPO_STATE_UNLOADED);
    assert_state(r, "c", 1, INFERD_REPO_STATE_READY);
    assert_state(r, "d", 1, INFERD_REPO_STATE_READY);
    char reason[256];
    state_of(r, "b", 1, reason);
    assert_contains(reason, "least recently used");
    inferd_repo_residency st;
    inferd_repo_residency_stats(r, &st);
    assert_int_equal(st.evictions, 1);
    assert_int_equal(st.loaded, 3);
    assert_in_range(st.used, 3 * MB, 3 * MB + 12 * KB);
    assert_int_equal(atomic_load(&live_models), 3);
    // b comes back (c goes: a and d were used after it), and its next estimate is its size.
    use(r, "b", 0);
    settle(r);
    assert_state(r, "c", 1, INFERD_REPO_STATE_UNLOADED);
    assert_state(r, "b", 1, INFERD_REPO_STATE_READY);
    inferd_repo_destroy(r);
    assert_int_equal(atomic_load(&live_models), 0);
}

static void test_pinned_versions_load_at_start_and_stay(void **state) {
    fresh(state);
    put_config("p", "{\"pinned\": true}");
    put_model("p", 1, MB, MB, 0, 0);
    for (int i = 0; i < 5; i++) {
        char name[8];
        snprintf(name, sizeof name, "m%d", i);
        put_model(name, 1, MB, MB, 0, 0);
    }
    inferd_repo *r = open_repo(3 * MB + 400 * KB, 0, 0); // p and one other
    inferd_error err = {0};
    assert_int_equal(inferd_repo_wait_loaded(r, 5000, &err), 0);
    assert_state(r, "p", 1, INFERD_REPO_STATE_READY);
    for (int round = 0; round < 2; round++)
        for (int i = 0; i < 5; i++) {
            char name[8];
            snprintf(name, sizeof name, "m%d", i);
            use(r, name, 0);
            assert_state(r, "p", 1, INFERD_REPO_STATE_READY);
        }
    inferd_repo_entry *e;
    size_t n;
    assert_int_equal(inferd_repo_index(r, &e, &n, &err), 0);
    assert_int_equal(row(e, n, "p", 1)->pinned, 1);
    assert_int_equal(row(e, n, "p", 1)->evictions, 0);
    assert_int_equal(row(e, n, "p", 1)->loads, 1);
    inferd_free(e);
    inferd_repo_destroy(r);
    assert_int_equal(atomic_load(&live_models), 0);
}

static void test_a_version_in_use_is_not_evicted(void **state) {
    fresh(state);
    const char *names[] = {"a", "b", "c", "d"};
    for (int i = 0; i < 4; i++)
        put_model(names[i], 1, MB, MB, 0, 0);
    inferd_repo *r = open_repo(4 * MB + 900 * KB, 0, 0);
    inferd_error err = {0};
    use(r, "a", 0);
    use(r, "b", 0);
    use(r, "c", 0);
    // A request holds a; b and c are used after it, so a is the least recently used.
    inferd_repo_version *held;
    assert_int_equal(inferd_repo_acquire(r, "a", 0, &held, &err), 0);
    use(r, "b", 0);
    use(r, "c", 0);
    use(r, "d", 0);
    settle(r);
    assert_state(r, "a", 1, INFERD_REPO_STATE_READY); // in flight: skipped
    assert_state(r, "b", 1, INFERD_REPO_STATE_UNLOADED);
    inferd_repo_release(held);

    // Everything held: a new load waits, parked, until a version becomes idle.
    inferd_repo_version *h1, *h2, *h3;
    assert_int_equal(inferd_repo_acquire(r, "a", 0, &h1, &err), 0);
    assert_int_equal(inferd_repo_acquire(r, "c", 0, &h2, &err), 0);
    assert_int_equal(inferd_repo_acquire(r, "d", 0, &h3, &err), 0);
    waiter x = {.w = {.done = on_ready}};
    x.w.user = &x;
    inferd_repo_version *v;
    assert_int_equal(inferd_repo_acquire_or_park(r, "b", 0, &x.w, &v, &err), INFERD_REPO_PARKED);
    usleep(100000);
    assert_int_equal(atomic_load(&x.done), 0);
    assert_state(r, "b", 1, INFERD_REPO_STATE_LOADING);
    assert_int_equal(atomic_load(&live_models), 3);
    inferd_repo_release(h2); // c is idle now: it goes, b comes
    assert_int_equal(wait_for(&x), 1);
    settle(r);
    assert_state(r, "c", 1, INFERD_REPO_STATE_UNLOADED);
    assert_state(r, "a", 1, INFERD_REPO_STATE_READY);
    assert_state(r, "d", 1, INFERD_REPO_STATE_READY);
    inferd_repo_release(h1);
    inferd_repo_release(h3);
    inferd_repo_destroy(r);
    assert_int_equal(atomic_load(&live_models), 0);
}

static void test_a_version_larger_than_the_budget_is_refused(void **state) {
    fresh(state);
    put_model("small", 1, MB, MB, 0, 0);
    put_model("sneaky", 1, 5 * MB, 100, 0, 0); // a small file that loads large
    put_model("huge", 1, 5 * MB, 5 * MB, 0, 0);
    inferd_repo *r = open_repo(3 * MB, 0, 0);
    use(r, "small", 0);
    int before = atomic_load(&loads_started);
    // Its file says it can never fit: refused without loading.
    waiter x = {.w = {.done = on_ready}};
    x.w.user = &x;
    inferd_repo_version *v;
    inferd_error err = {0};
    assert_int_equal(inferd_repo_acquire_or_park(r, "huge", 0, &x.w, &v, &err), INFERD_REPO_PARKED);
    assert_int_equal(wait_for(&x), INFERD_EUNAVAIL);
    assert_contains(x.msg, "memory budget is 3.0 MiB");
    assert_contains(x.msg, "can never be loaded");
    assert_int_equal(atomic_load(&loads_started), before);
    assert_state(r, "huge", 1, INFERD_REPO_STATE_UNAVAILABLE);
    // Its size shows only once loaded: unloaded again and refused, and the other version
    // was not thrown out for it.
    waiter y = {.w = {.done = on_ready}};
    y.w.user = &y;
    assert_int_equal(inferd_repo_acquire_or_park(r, "sneaky", 0, &y.w, &v, &err),
                     INFERD_REPO_PARKED);
    assert_int_equal(wait_for(&y), INFERD_EUNAVAIL);
    assert_contains(y.msg, "holds 5.0 MiB once loaded, more than the memory budget of 3.0 MiB");
    settle(r);
    assert_state(r, "sneaky", 1, INFERD_REPO_STATE_UNAVAILABLE);
    assert_state(r, "small", 1, INFERD_REPO_STATE_READY);
    // The server goes on: a plain request for it is answered with the reason at once.
    assert_int_equal(inferd_repo_acquire_or_park(r, "sneaky", 1, &y.w, &v, &err), INFERD_EUNAVAIL);
    assert_contains(err.msg, "more than the memory budget");
    inferd_repo_residency st;
    inferd_repo_residency_stats(r, &st);
    assert_in_range(st.used, 0, 3 * MB);
    assert_int_equal(st.load_failures, 2);
    inferd_repo_destroy(r);
    assert_int_equal(atomic_load(&live_models), 0);
}

static void test_max_loaded(void **state) {
    fresh(state);
    const char *names[] = {"a", "b", "c"};
    for (int i = 0; i < 3; i++)
        put_model(names[i], 1, 10 * KB, 10 * KB, 0, 0);
    inferd_repo *r = open_repo(0, 2, 0);
    use(r, "a", 0);
    use(r, "b", 0);
    use(r, "a", 0);
    use(r, "c", 0);
    settle(r);
    assert_state(r, "b", 1, INFERD_REPO_STATE_UNLOADED);
    inferd_repo_residency st;
    inferd_repo_residency_stats(r, &st);
    assert_int_equal(st.loaded, 2);
    assert_int_equal(st.max_loaded, 2);
    assert_int_equal(st.evictions, 1);
    inferd_repo_destroy(r);
}

/* Unloads in a burst hand the heap back once (the first), not once each; the trim put off is
 * done when the loader runs out of work. */
static void test_heap_trims_are_rate_limited(void **state) {
    fresh(state);
    const char *names[] = {"a", "b", "c", "d", "e", "f"};
    for (int i = 0; i < 6; i++)
        put_model(names[i], 1, 10 * KB, 10 * KB, 0, 0);
    inferd_repo *r = open_repo(0, 1, 0);
    int64_t t0 = inferd_now_ns();
    for (int round = 0; round < 2; round++)
        for (int i = 0; i < 6; i++)
            use(r, names[i], 0); // each evicts the one before
    settle(r);
    int64_t took = inferd_now_ns() - t0;
    inferd_repo_residency st;
    inferd_repo_residency_stats(r, &st);
    assert_true(st.evictions >= 11);
    if (took < 900000000LL) // the burst fit in the one-second interval
        assert_int_equal(st.heap_trims, 1);
    uint64_t burst = st.heap_trims;
    assert_true(burst <= 1 + (uint64_t)(took / 1000000000LL));
    // The loader exits after two idle seconds, trimming what it put off first.
    for (int i = 0; i < 400 && st.heap_trims == burst; i++) {
        usleep(10000);
        inferd_repo_residency_stats(r, &st);
    }
    assert_int_equal(st.heap_trims, burst + 1);
    inferd_repo_destroy(r);
}

/* A request parks for a model that needs another evicted to fit, with its nth allocation and
 * every later one failing for 20 ms. Returns the allocations it made (nth 0: none fails), and
 * checks that the request got its answer (the version, once memory is back and the retries
 * get through, or an error that says why), never waiting forever, and that nothing is left. */
static long parked_with_failures(void **state, long nth) {
    fresh(state);
    put_model("a", 1, MB, MB, 0, 0);
    put_model("b", 1, MB, MB, 0, 0);
    inferd_repo *r = open_repo(2 * MB, 0, 0); // room for one of them (each ~1.5 MiB)
    assert_int_equal(use(r, "a", 0), 1);
    waiter x = {.w = {.done = on_ready}};
    x.w.user = &x;
    inferd_repo_version *v = NULL;
    inferd_error err = {0};
    long before = inferd_alloc_count();
    inferd_alloc_fail_after(nth);
    int rc = inferd_repo_acquire_or_park(r, "b", 0, &x.w, &v, &err);
    usleep(20000);
    inferd_alloc_fail_after(0);
    if (rc == 0) {
        inferd_repo_release(v);
    } else if (rc == INFERD_REPO_PARKED) {
        int got = wait_for(&x);
        if (got == 0)
            fail_msg("allocation %ld: the parked request never got an answer", nth);
        if (got < 0 && !x.msg[0])
            fail_msg("allocation %ld: the parked request failed without a message", nth);
        if (nth == 0 && got != 1)
            fail_msg("the parked request failed: %s", x.msg);
    } else if (!err.msg[0] || nth == 0) {
        fail_msg("allocation %ld: acquire_or_park failed (%d): %s", nth, rc, err.msg);
    }
    settle(r);
    long made = inferd_alloc_count() - before;
    inferd_repo_destroy(r);
    assert_int_equal(atomic_load(&live_models), 0);
    return made;
}

static void test_out_of_memory_while_a_request_is_parked(void **state) {
    long total = parked_with_failures(state, 0);
    for (long nth = 1; nth <= total; nth++)
        parked_with_failures(state, nth);
}

/* pthread_create as the repository sees it (the link wraps it, see the Makefile): fails with
 * EAGAIN while fail_threads is set. */
static _Atomic int fail_threads;
int __real_pthread_create(pthread_t *t, const pthread_attr_t *a, void *(*fn)(void *), void *arg);
int __wrap_pthread_create(pthread_t *t, const pthread_attr_t *a, void *(*fn)(void *), void *arg) {
    if (atomic_load(&fail_threads))
        return EAGAIN;
    return __real_pthread_create(t, a, fn, arg);
}

/* A loader thread that cannot be started (thread limits) while a request waits for a load:
 * once threads can be made again the load starts, without another event to wake the
 * manager, and the request gets its version. */
static void test_a_loader_that_could_not_start_is_started_later(void **state) {
    fresh(state);
    put_model("a", 1, MB, MB, 0, 0);
    // No budget: nothing else wakes the manager now and then.
    inferd_repo *r = open_repo(0, 0, 0);
    inferd_error err = {0};
    assert_int_equal(inferd_repo_wait_loaded(r, 5000, &err), 0);
    assert_int_equal(inferd_repo_request_unload(r, "a", &err), 0);
    settle(r);
    assert_state(r, "a", 1, INFERD_REPO_STATE_UNLOADED);
    usleep(2300000); // the loader threads exit after 2 s idle: the load needs a new one
    waiter x = {.w = {.done = on_ready}};
    x.w.user = &x;
    atomic_store(&fail_threads, 1);
    assert_int_equal(inferd_repo_request_load(r, "a", &x.w, &err), INFERD_REPO_PARKED);
    usleep(30000);
    atomic_store(&fail_threads, 0);
    int got = wait_for(&x);
    if (got != 1)
        fail_msg("the load request got %d: %s", got, got ? x.msg : "no answer within 5 s");
    assert_state(r, "a", 1, INFERD_REPO_STATE_READY);
    inferd_repo_destroy(r);
    assert_int_equal(atomic_load(&live_models), 0);
}

static void test_a_parked_request_times_out_at_its_deadline(void **state) {
    fresh(state);
    put_model("slow", 1, KB, KB, 400, 0);
    inferd_repo *r = open_repo(10 * MB, 0, 0);
    waiter x = {.w = {.done = on_ready}};
    x.w.user = &x;
    int64_t t0 = inferd_now_ns();
    x.w.deadline_ns = t0 + 50000000; // 50 ms
    inferd_repo_version *v;
    inferd_error err = {0};
    assert_int_equal(inferd_repo_acquire_or_park(r, "slow", 0, &x.w, &v, &err), INFERD_REPO_PARKED);
    assert_int_equal(wait_for(&x), INFERD_EUNAVAIL);
    int64_t took_ms = (inferd_now_ns() - t0) / 1000000;
    assert_in_range(took_ms, 45, 300); // at the deadline, not when the load ends (400 ms)
    assert_contains(x.msg, "did not load within the request's timeout");
    // The load goes on for the next request.
    assert_int_equal(use(r, "slow", 0), 1);
    inferd_repo_destroy(r);
}

/* Waits until the model's default version (a plain lookup) is want. */
static void wait_default(inferd_repo *r, const char *model, long want) {
    int64_t until = inferd_now_ns() + 5000000000LL;
    long got = 0;
    while (inferd_now_ns() < until) {
        inferd_repo_version *v;
        inferd_error err = {0};
        if (inferd_repo_acquire(r, model, 0, &v, &err) == 0) {
            got = inferd_repo_version_number(v);
            inferd_repo_release(v);
            if (got == want)
                return;
        }
        usleep(2000);
    }
    fail_msg("model %s: default version %ld, expected %ld", model, got, want);
}

static void test_polling_switches_versions_and_drains_the_old(void **state) {
    fresh(state);
    put_model("sw", 1, KB, KB, 0, 0);
    inferd_repo *r = open_repo(0, 0, 20); // without limits: everything loads at start
    inferd_error err = {0};
    assert_int_equal(inferd_repo_wait_loaded(r, 5000, &err), 0);
    inferd_repo_version *old;
    assert_int_equal(inferd_repo_acquire(r, "sw", 0, &old, &err), 0);
    assert_int_equal(inferd_repo_version_number(old), 1);

    // A new version folder: loaded beside, then the default; the old one drains.
    put_model("sw", 2, KB, KB, 50, 0);
    wait_default(r, "sw", 2);
    inferd_repo_residency st;
    inferd_repo_residency_stats(r, &st);
    assert_int_equal(st.switches, 1);
    usleep(60000); // a few polls: version 1 is no longer selected (latest 1), but still held
    assert_state(r, "sw", 1, INFERD_REPO_STATE_UNLOADING);
    assert_int_equal(atomic_load(&live_models), 2);
    // The request that holds it finishes on it.
    const inferd_repo_model *m = inferd_repo_version_model(old);
    int64_t x = 1;
    inferd_tensor in = {.dtype = INFERD_DTYPE_I64, .rank = 2, .dims = {1, 1}, .data = &x};
    inferd_tensor out[1];
    assert_int_equal(m->run(m->ctx, &in, out, 1, &err), 0);
    assert_int_equal((int)((float *)out[0].data)[0], 1);
    inferd_free(out[0].data);
    inferd_repo_release(old);
    settle(r);
    usleep(60000);
    assert_int_equal((int)state_of(r, "sw", 1, NULL), -1); // gone from the index
    assert_int_equal(atomic_load(&live_models), 1);

    // A broken new version: the current one keeps serving, and the index says why.
    put_model("sw", 3, KB, KB, 0, 1);
    int64_t until = inferd_now_ns() + 5000000000LL;
    while (state_of(r, "sw", 3, NULL) != INFERD_REPO_STATE_UNAVAILABLE && inferd_now_ns() < until)
        usleep(5000);
    char reason[256];
    assert_int_equal(state_of(r, "sw", 3, reason), INFERD_REPO_STATE_UNAVAILABLE);
    assert_contains(reason, "broken on purpose");
    wait_default(r, "sw", 2);
    usleep(60000);
    assert_state(r, "sw", 2, INFERD_REPO_STATE_READY);

    // Fixed files: tried again, and switched to.
    remove_path("sw/3");
    put_model("sw", 3, KB, KB, 0, 0);
    wait_default(r, "sw", 3);

    assert_state(r, "sw", 3, INFERD_REPO_STATE_READY);
    inferd_repo_residency_stats(r, &st);
    assert_int_equal(st.switches, 2); // warmed up and switched to, as a new version would be

    // The other folders go first; then the serving one's: with nothing to replace it, it
    // drains.
    remove_path("sw/1");
    remove_path("sw/2");
    usleep(60000);
    remove_path("sw/3");
    until = inferd_now_ns() + 5000000000LL;
    inferd_repo_version *v;
    while (inferd_repo_acquire(r, "sw", 0, &v, &err) == 0 && inferd_now_ns() < until) {
        inferd_repo_release(v);
        usleep(5000);
    }
    assert_int_equal(inferd_repo_acquire(r, "sw", 0, &v, &err), INFERD_EUNAVAIL);
    settle(r);
    assert_int_equal(atomic_load(&live_models), 0);
    inferd_repo_destroy(r);
}

static void test_load_and_unload_requests(void **state) {
    fresh(state);
    put_model("a", 1, KB, KB, 0, 0);
    inferd_repo *r = open_repo(0, 0, 0);
    inferd_error err = {0};
    assert_int_equal(inferd_repo_wait_loaded(r, 5000, &err), 0);
    assert_int_equal(inferd_repo_request_unload(r, "a", &err), 0);
    settle(r);
    char reason[256];
    assert_int_equal(state_of(r, "a", 1, reason), INFERD_REPO_STATE_UNLOADED);
    assert_contains(reason, "unloaded by request");
    waiter x = {.w = {.done = on_ready}};
    x.w.user = &x;
    inferd_repo_version *v;
    // Requests are refused, not parked: it stays unloaded until loaded again.
    assert_int_equal(inferd_repo_acquire_or_park(r, "a", 0, &x.w, &v, &err), INFERD_EUNAVAIL);
    assert_contains(err.msg, "unloaded by request");
    assert_int_equal(inferd_repo_request_unload(r, "nope", &err), INFERD_ENOTFOUND);

    // Loading picks up what changed on disk too: a new model folder, a new version.
    put_model("a", 2, KB, KB, 0, 0);
    assert_int_equal(inferd_repo_request_load(r, "a", &x.w, &err), INFERD_REPO_PARKED);
    assert_int_equal(wait_for(&x), 1);
    wait_default(r, "a", 2);
    put_model("later", 1, KB, KB, 0, 0);
    waiter y = {.w = {.done = on_ready}};
    y.w.user = &y;
    assert_int_equal(inferd_repo_request_load(r, "later", &y.w, &err), INFERD_REPO_PARKED);
    assert_int_equal(wait_for(&y), 1);
    assert_state(r, "later", 1, INFERD_REPO_STATE_READY);
    waiter z = {.w = {.done = on_ready}};
    z.w.user = &z;
    assert_int_equal(inferd_repo_request_load(r, "missing", &z.w, &err), INFERD_REPO_PARKED);
    assert_int_equal(wait_for(&z), INFERD_ENOTFOUND);
    assert_int_equal(inferd_repo_request_load(r, "../etc", &z.w, &err), INFERD_EINVAL);
    put_model("bad", 1, KB, KB, 0, 1);
    waiter b = {.w = {.done = on_ready}};
    b.w.user = &b;
    assert_int_equal(inferd_repo_request_load(r, "bad", &b.w, &err), INFERD_REPO_PARKED);
    assert_int_equal(wait_for(&b), INFERD_EUNAVAIL);
    assert_contains(b.msg, "broken on purpose");
    inferd_repo_destroy(r);
    assert_int_equal(atomic_load(&live_models), 0);
}

/* ---- many threads ---- */

#define N_MODELS 12

typedef struct hammer {
    inferd_repo *r;
    _Atomic int stop;
    _Atomic int ok, failed, pending;
    _Atomic int64_t max_used;
} hammer;

typedef struct hammer_req {
    inferd_repo_waiter w;
    hammer *h;
    long want;
} hammer_req;

static void hammer_done(void *user, inferd_repo_version *v, int status, const inferd_error *err) {
    hammer_req *q = user;
    (void)err;
    if (status == 0 && inferd_repo_version_number(v) == q->want)
        atomic_fetch_add(&q->h->ok, 1);
    else
        atomic_fetch_add(&q->h->failed, 1);
    inferd_repo_release(v);
    atomic_fetch_sub(&q->h->pending, 1);
    free(q);
}

static void *hammer_main(void *arg) {
    hammer *h = arg;
    unsigned seed = (unsigned)(uintptr_t)pthread_self();
    while (!atomic_load(&h->stop)) {
        char name[8];
        // Skewed: half the requests go to three hot models, the rest to any.
        int i = (int)(rand_r(&seed) % 2 ? rand_r(&seed) % 3 : rand_r(&seed) % N_MODELS);
        snprintf(name, sizeof name, "h%d", i);
        hammer_req *q = calloc(1, sizeof *q);
        q->h = h;
        q->want = 1;
        q->w = (inferd_repo_waiter){.done = hammer_done, .user = q};
        atomic_fetch_add(&h->pending, 1);
        inferd_repo_version *v;
        inferd_error err = {0};
        int rc = inferd_repo_acquire_or_park(h->r, name, 0, &q->w, &v, &err);
        if (rc == 0) {
            usleep(rand_r(&seed) % 500); // a request in flight
            inferd_repo_release(v);
            atomic_fetch_add(&h->ok, 1);
        }
        if (rc != INFERD_REPO_PARKED) {
            if (rc < 0)
                atomic_fetch_add(&h->failed, 1);
            atomic_fetch_sub(&h->pending, 1);
            free(q);
        }
        inferd_repo_residency st;
        inferd_repo_residency_stats(h->r, &st);
        int64_t m = atomic_load(&h->max_used);
        while (st.used > m && !atomic_compare_exchange_weak(&h->max_used, &m, st.used))
            ;
    }
    return NULL;
}

static void test_many_threads_within_the_budget(void **state) {
    fresh(state);
    for (int i = 0; i < N_MODELS; i++) {
        char name[8];
        snprintf(name, sizeof name, "h%d", i);
        put_model(name, 1, 100 * KB, 100 * KB, i % 3, 0);
    }
    int64_t budget = 4 * 100 * KB + 400 * KB;
    inferd_repo *r = open_repo(budget, 0, 0);
    hammer h = {.r = r};
    pthread_t t[4];
    for (int i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&t[i], NULL, hammer_main, &h), 0);
    usleep(1000000);
    atomic_store(&h.stop, 1);
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    int64_t until = inferd_now_ns() + 5000000000LL;
    while (atomic_load(&h.pending) > 0 && inferd_now_ns() < until)
        usleep(1000);
    assert_int_equal(atomic_load(&h.pending), 0);
    assert_int_equal(atomic_load(&h.failed), 0);
    assert_in_range(atomic_load(&h.ok), 100, INT32_MAX);
    if (atomic_load(&h.max_used) > budget)
        fail_msg("used %lld bytes, budget %lld", (long long)atomic_load(&h.max_used),
                 (long long)budget);
    inferd_repo_residency st;
    inferd_repo_residency_stats(r, &st);
    assert_in_range(st.evictions, 1, UINT32_MAX);
    assert_in_range(st.loads, N_MODELS, UINT32_MAX);
    inferd_repo_destroy(r);
    assert_int_equal(atomic_load(&live_models), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_loads_on_first_request_and_parks_it),
        cmocka_unit_test(test_evicts_the_least_recently_used),
        cmocka_unit_test(test_pinned_versions_load_at_start_and_stay),
        cmocka_unit_test(test_a_version_in_use_is_not_evicted),
        cmocka_unit_test(test_a_version_larger_than_the_budget_is_refused),
        cmocka_unit_test(test_max_loaded),
        cmocka_unit_test(test_heap_trims_are_rate_limited),
        cmocka_unit_test(test_a_parked_request_times_out_at_its_deadline),
        cmocka_unit_test(test_a_loader_that_could_not_start_is_started_later),
        cmocka_unit_test(test_out_of_memory_while_a_request_is_parked),
        cmocka_unit_test(test_polling_switches_versions_and_drains_the_old),
        cmocka_unit_test(test_load_and_unload_requests),
        cmocka_unit_test(test_many_threads_within_the_budget),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
