/* stats.h: per model version counters and latency histograms, written lock-free on the hot path
 * and read by /metrics.
 *
 * The scheduler records queue and compute times, batch sizes and the pending gauge; the API
 * records request outcomes, end-to-end request time, and for text requests the tokenizing. Counters
 * are atomics updated with relaxed ordering and the histograms are util/hist (lock-free too):
 * /metrics may see a snapshot that is off by a request in flight, never a torn value, and no
 * recording thread ever waits for a reader.
 */
#ifndef INFERD_SCHED_STATS_H
#define INFERD_SCHED_STATS_H

#include <stdatomic.h>
#include <stdint.h>

#include "util/hist.h"

typedef struct inferd_stats {
    _Atomic uint64_t success;      /* inference requests answered 200 */
    _Atomic uint64_t failure;      /* inference requests for this version answered with an error */
    _Atomic int64_t pending;       /* requests queued, not yet taken into a batch */
    _Atomic uint64_t executions;   /* batches run */
    _Atomic uint64_t inferences;   /* rows run (sum of batch sizes) */
    _Atomic int64_t last_batch_ms; /* wall clock (ms since the epoch) when a batch last ran; 0:
                                      none yet */
    inferd_hist *request_ns;       /* arrival to response, per request */
    inferd_hist *queue_ns;         /* submit to batch start, per request */
    inferd_hist *compute_ns;       /* the run of the request's batch, per request */
    inferd_hist *batch_size;       /* rows per batch, per batch (recorded as plain numbers) */
    /* Text requests (/v1 predict and KServe infer with a text input), a subset of the above.
     * Each of their items is a scheduler request of its own, so queue and compute times above
     * count items; tokenizing, on the HTTP thread before the queue, is timed apart. */
    _Atomic uint64_t text_success;   /* text requests answered 200 */
    _Atomic uint64_t text_failure;   /* text requests answered with an error */
    _Atomic uint64_t text_items;     /* texts tokenized and queued */
    _Atomic uint64_t text_truncated; /* of those, texts cut at max_length */
    inferd_hist *tokenize_ns;        /* per text request: tokenizing all of its texts */
} inferd_stats;

/* Zeroes the counters and creates the histograms. Returns 0, or INFERD_EINTERNAL when out of
 * memory (s then needs no deinit). The caller owns s; call before publishing it. */
int inferd_stats_init(inferd_stats *s);

/* Frees the histograms. No recorder or reader may be using s. */
void inferd_stats_deinit(inferd_stats *s);

#endif
