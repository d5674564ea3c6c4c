/* routes.c: see routes.h for the design.
 *
 * Locks: publish_lock serializes publishers only; readers never take it. Every atomic here is
 * sequentially consistent: the argument in enter() needs the reader's counter increment to be
 * ordered before its read of the generation, and the publisher's generation increment before
 * its read of the counter.
 */
#include "repo/routes.h"

#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>

#include "util/alloc.h"

typedef struct table {
    size_t n;
    inferd_route routes[]; /* sorted by path; each holds one reference on its stats */
} table;

struct inferd_routes {
    _Atomic(table *) cur;
    _Atomic uint64_t gen;
    _Atomic int64_t readers[2]; /* lookups in progress, by the generation's parity */
    pthread_mutex_t publish_lock;
};

void inferd_route_stats_release(inferd_route_stats *s) {
    if (s && atomic_fetch_sub(&s->refs, 1) == 1)
        inferd_free(s);
}

static void table_free(table *t) {
    if (!t)
        return;
    for (size_t i = 0; i < t->n; i++)
        inferd_route_stats_release(t->routes[i].stats);
    inferd_free(t);
}

static int cmp_route(const void *a, const void *b) {
    return strcmp(((const inferd_route *)a)->spec.path, ((const inferd_route *)b)->spec.path);
}

static int cmp_key(const void *key, const void *elem) {
    return strcmp((const char *)key, ((const inferd_route *)elem)->spec.path);
}

static const inferd_route *find(const table *t, const char *path) {
    if (!t || t->n == 0)
        return NULL;
    return bsearch(path, t->routes, t->n, sizeof t->routes[0], cmp_key);
}

int inferd_routes_create(inferd_routes **out, inferd_error *err) {
    *out = NULL;
    inferd_routes *rt = inferd_calloc(NULL, 1, sizeof *rt);
    if (!rt)
        return inferd_error_set(err, INFERD_EINTERNAL, "out of memory");
    atomic_init(&rt->cur, NULL);
    atomic_init(&rt->gen, 0);
    atomic_init(&rt->readers[0], 0);
    atomic_init(&rt->readers[1], 0);
    pthread_mutex_init(&rt->publish_lock, NULL);
    *out = rt;
    return 0;
}

void inferd_routes_destroy(inferd_routes *rt) {
    if (!rt)
        return;
    table_free(atomic_load(&rt->cur));
    pthread_mutex_destroy(&rt->publish_lock);
    inferd_free(rt);
}

/* Announces a reader and returns the table it may read until leave(rt, *parity). A reader that
 * counted itself under generation g and then still sees g is seen by the publisher that ends
 * g (it reads the counter after advancing the generation); one that sees a newer generation
 * backs out before touching any table and tries again. */
static table *enter(inferd_routes *rt, int *parity) {
    for (;;) {
        uint64_t g = atomic_load(&rt->gen);
        atomic_fetch_add(&rt->readers[g & 1], 1);
        if (atomic_load(&rt->gen) == g) {
            *parity = (int)(g & 1);
            return atomic_load(&rt->cur);
        }
        atomic_fetch_sub(&rt->readers[g & 1], 1);
    }
}

static void leave(inferd_routes *rt, int parity) { atomic_fetch_sub(&rt->readers[parity], 1); }

int inferd_routes_publish(inferd_routes *rt, const inferd_route *routes, size_t n,
                          inferd_error *err) {
    table *t = inferd_malloc(NULL, sizeof *t + (n ? n : 1) * sizeof t->routes[0]);
    if (!t)
        return inferd_error_set(err, INFERD_EINTERNAL, "out of memory building the route table");
    t->n = n;
    if (n)
        memcpy(t->routes, routes, n * sizeof *routes);
    qsort(t->routes, n, sizeof t->routes[0], cmp_route);
    pthread_mutex_lock(&rt->publish_lock);
    // Only publishers change cur, and they hold the lock: the old table can be read here.
    table *old = atomic_load(&rt->cur);
    for (size_t i = 0; i < n; i++) {
        inferd_route *r = &t->routes[i];
        const inferd_route *was = find(old, r->spec.path);
        if (was && !strcmp(was->model, r->model)) {
            r->stats = was->stats;
            atomic_fetch_add(&r->stats->refs, 1);
        } else {
            r->stats = inferd_calloc(NULL, 1, sizeof *r->stats);
            if (!r->stats) {
                t->n = i; // the counters taken so far are released with it
                pthread_mutex_unlock(&rt->publish_lock);
                table_free(t);
                return inferd_error_set(err, INFERD_EINTERNAL,
                                        "out of memory building the route table");
            }
            atomic_init(&r->stats->refs, 1);
        }
    }
    atomic_store(&rt->cur, t);
    uint64_t g = atomic_fetch_add(&rt->gen, 1);
    // Readers of generation g may still hold old; later ones see t. They leave within a
    // lookup's time.
    while (atomic_load(&rt->readers[g & 1]) > 0)
        sched_yield();
    pthread_mutex_unlock(&rt->publish_lock);
    table_free(old);
    return 0;
}

int inferd_routes_lookup(inferd_routes *rt, const char *path, inferd_route *out) {
    int parity;
    const table *t = enter(rt, &parity);
    const inferd_route *r = find(t, path);
    if (r) {
        *out = *r;
        atomic_fetch_add(&out->stats->refs, 1);
    }
    leave(rt, parity);
    return r != NULL;
}

int inferd_routes_list(inferd_routes *rt, inferd_route **out, size_t *n, inferd_error *err) {
    *out = NULL;
    *n = 0;
    int parity;
    const table *t = enter(rt, &parity);
    size_t count = t ? t->n : 0;
    inferd_route *list = inferd_malloc(NULL, (count ? count : 1) * sizeof *list);
    if (list) {
        for (size_t i = 0; i < count; i++) {
            list[i] = t->routes[i];
            atomic_fetch_add(&list[i].stats->refs, 1);
        }
    }
    leave(rt, parity);
    if (!list)
        return inferd_error_set(err, INFERD_EINTERNAL, "out of memory");
    *out = list;
    *n = count;
    return 0;
}
