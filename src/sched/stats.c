#include "sched/stats.h"

#include <string.h>

#include "util/error.h"

int inferd_stats_init(inferd_stats *s) {
    memset(s, 0, sizeof *s);
    atomic_init(&s->success, 0);
    atomic_init(&s->failure, 0);
    atomic_init(&s->pending, 0);
    atomic_init(&s->executions, 0);
    atomic_init(&s->inferences, 0);
    atomic_init(&s->last_batch_ms, 0);
    atomic_init(&s->text_success, 0);
    atomic_init(&s->text_failure, 0);
    atomic_init(&s->text_items, 0);
    atomic_init(&s->text_truncated, 0);
    s->request_ns = inferd_hist_create();
    s->queue_ns = inferd_hist_create();
    s->compute_ns = inferd_hist_create();
    s->batch_size = inferd_hist_create();
    s->tokenize_ns = inferd_hist_create();
    if (!s->request_ns || !s->queue_ns || !s->compute_ns || !s->batch_size || !s->tokenize_ns) {
        inferd_stats_deinit(s);
        return INFERD_EINTERNAL;
    }
    return 0;
}

void inferd_stats_deinit(inferd_stats *s) {
    inferd_hist_destroy(s->request_ns);
    inferd_hist_destroy(s->queue_ns);
    inferd_hist_destroy(s->compute_ns);
    inferd_hist_destroy(s->batch_size);
    inferd_hist_destroy(s->tokenize_ns);
    s->request_ns = s->queue_ns = s->compute_ns = s->batch_size = s->tokenize_ns = NULL;
}
