/* stats.h: per model version counters and latency histograms, written lock-free on the hot path
 * and read by /metrics.
 *
 * The scheduler records queue and compute times, batch sizes and the pending gauge; the API
 * records request outcomes and end-to-end request time. Everything is an atomic with relaxed
 * ordering: /metrics may see a snapshot that is off by a request in flight, never a torn value,
 * and no recording thread ever waits for a reader. Histograms keep plain (not cumulative)
 * bucket counts; the formatter accumulates them into Prometheus's cumulative "le" buckets.
 *
 * Kept behind this small interface so it can move onto util/hist.h when that lands.
 */
#ifndef INFERD_SCHED_STATS_H
#define INFERD_SCHED_STATS_H

#include <stdatomic.h>
#include <stdint.h>

#define INFERD_STATS_MAX_BUCKETS 20

typedef enum inferd_stats_kind {
    INFERD_STATS_KIND_DURATION_US = 0, /* bounds 100 us .. 10 s */
    INFERD_STATS_KIND_BATCH_SIZE = 1,  /* bounds 1, 2, 4 .. 256 */
} inferd_stats_kind;

typedef struct inferd_stats_hist {
    const uint64_t *bounds; /* upper bounds (inclusive), ascending, static storage */
    int n_bounds;           /* counts has n_bounds + 1 entries; the last is +Inf */
    _Atomic uint64_t counts[INFERD_STATS_MAX_BUCKETS + 1];
    _Atomic uint64_t sum; /* sum of observed values, in the histogram's unit */
} inferd_stats_hist;

typedef struct inferd_stats {
    _Atomic uint64_t success;     /* inference requests answered 200 */
    _Atomic uint64_t failure;     /* inference requests for this version answered with an error */
    _Atomic int64_t pending;      /* requests queued, not yet taken into a batch */
    _Atomic uint64_t executions;  /* batches run */
    _Atomic uint64_t inferences;  /* rows run (sum of batch sizes) */
    inferd_stats_hist request_us; /* arrival to response, per request */
    inferd_stats_hist queue_us;   /* submit to batch start, per request */
    inferd_stats_hist compute_us; /* the run of the request's batch, per request */
    inferd_stats_hist batch_size; /* rows per batch, per batch */
} inferd_stats;

/* Zeroes every counter and sets the histogram bounds. The caller owns the struct; there is no
 * deinit. Not thread-safe against recorders: call before publishing s. */
void inferd_stats_init(inferd_stats *s);

/* Initialises one histogram of the given kind (used by inferd_stats_init; public for tests). */
void inferd_stats_hist_init(inferd_stats_hist *h, inferd_stats_kind kind);

/* Adds one observation. Safe from any thread, never blocks. */
void inferd_stats_hist_observe(inferd_stats_hist *h, uint64_t value);

/* Total observations (the sum of all buckets). Safe from any thread. */
uint64_t inferd_stats_hist_count(const inferd_stats_hist *h);

#endif
