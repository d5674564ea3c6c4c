#include "sched/stats.h"

#include <string.h>

static const uint64_t duration_bounds[] = {
    100,   250,    500,    1000,   2500,    5000,    10000,   25000,
    50000, 100000, 250000, 500000, 1000000, 2500000, 5000000, 10000000,
};
static const uint64_t batch_bounds[] = {1, 2, 4, 8, 16, 32, 64, 128, 256};

#define N_OF(a) ((int)(sizeof(a) / sizeof((a)[0])))

_Static_assert(sizeof(duration_bounds) / sizeof(duration_bounds[0]) <= INFERD_STATS_MAX_BUCKETS,
               "too many duration buckets");

void inferd_stats_hist_init(inferd_stats_hist *h, inferd_stats_kind kind) {
    memset(h, 0, sizeof *h);
    if (kind == INFERD_STATS_KIND_BATCH_SIZE) {
        h->bounds = batch_bounds;
        h->n_bounds = N_OF(batch_bounds);
    } else {
        h->bounds = duration_bounds;
        h->n_bounds = N_OF(duration_bounds);
    }
    for (int i = 0; i <= INFERD_STATS_MAX_BUCKETS; i++)
        atomic_init(&h->counts[i], 0);
    atomic_init(&h->sum, 0);
}

void inferd_stats_init(inferd_stats *s) {
    memset(s, 0, sizeof *s);
    atomic_init(&s->success, 0);
    atomic_init(&s->failure, 0);
    atomic_init(&s->pending, 0);
    atomic_init(&s->executions, 0);
    atomic_init(&s->inferences, 0);
    inferd_stats_hist_init(&s->request_us, INFERD_STATS_KIND_DURATION_US);
    inferd_stats_hist_init(&s->queue_us, INFERD_STATS_KIND_DURATION_US);
    inferd_stats_hist_init(&s->compute_us, INFERD_STATS_KIND_DURATION_US);
    inferd_stats_hist_init(&s->batch_size, INFERD_STATS_KIND_BATCH_SIZE);
}

void inferd_stats_hist_observe(inferd_stats_hist *h, uint64_t value) {
    // A linear scan: at most 16 compares, cheaper than a branchy binary search at this size.
    int i = 0;
    while (i < h->n_bounds && value > h->bounds[i])
        i++;
    atomic_fetch_add_explicit(&h->counts[i], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->sum, value, memory_order_relaxed);
}

uint64_t inferd_stats_hist_count(const inferd_stats_hist *h) {
    uint64_t n = 0;
    for (int i = 0; i <= h->n_bounds; i++)
        n += atomic_load_explicit(&h->counts[i], memory_order_relaxed);
    return n;
}
