/* hist.h: latency histograms with bounded relative error, for `inferd bench` and for the
 * server's Prometheus histograms.
 *
 * DESIGN. Values are nanoseconds (int64). Buckets are log-linear, as in HdrHistogram: values
 * below 128 ns each have their own bucket (exact), and every power-of-two range above that
 * ([2^k, 2^(k+1)) for k >= 7) is cut into 64 equal sub-buckets. A bucket's width is therefore
 * at most 1/64 of its lower bound, and a value reported as the bucket's midpoint is within
 * INFERD_HIST_REL_ERROR (1/128, under 0.8%) of every value that bucket holds. 2048 buckets
 * cover 0 to 2^37 ns (about 137 s); larger values go into the last bucket, and the exact
 * maximum is kept on the side. The struct is 16 KiB plus a few counters.
 *
 * Recording is lock-free: every counter is an atomic updated with relaxed ordering, so any
 * number of threads may call inferd_hist_record at once without contention beyond the shared
 * cache lines. For the hottest paths, give each thread its own histogram and merge them when
 * reading. Readers may run concurrently with writers; they then see a state that may miss
 * records in progress (count, sum and buckets are not updated as one), never a torn counter.
 * Percentiles are computed from the buckets alone, so they are self-consistent.
 */
#ifndef INFERD_UTIL_HIST_H
#define INFERD_UTIL_HIST_H

#include <stdint.h>

/* Bound on |reported - true| / true for any value reported by inferd_hist_percentile, for
 * values up to INFERD_HIST_MAX_TRACKABLE. */
#define INFERD_HIST_REL_ERROR (1.0 / 128)
/* Values above this are counted in the last bucket; percentiles there report the maximum. */
#define INFERD_HIST_MAX_TRACKABLE ((int64_t)1 << 37)
#define INFERD_HIST_BUCKETS 2048

typedef struct inferd_hist inferd_hist;

/* Returns an empty histogram (allocated through the process memory account), or NULL when out
 * of memory. Free it with inferd_hist_destroy; destroy(NULL) does nothing. */
inferd_hist *inferd_hist_create(void);
void inferd_hist_destroy(inferd_hist *h);

/* Adds one value (nanoseconds; negative values count as 0). Safe from any thread. */
void inferd_hist_record(inferd_hist *h, int64_t ns);
/* Adds n copies of one value. Safe from any thread. */
void inferd_hist_record_n(inferd_hist *h, int64_t ns, uint64_t n);

/* Empties h. Records made concurrently may be lost or half-kept; callers that need an exact
 * split (per-second windows) reset from the only recording thread. */
void inferd_hist_reset(inferd_hist *h);

/* Adds every value of src into dst. Safe from any thread; src may be recorded to meanwhile. */
void inferd_hist_merge(inferd_hist *dst, const inferd_hist *src);

/* Number of values, their sum (saturating at INT64_MAX), exact minimum and maximum (0 when
 * empty), and mean (0 when empty). */
uint64_t inferd_hist_count(const inferd_hist *h);
int64_t inferd_hist_sum(const inferd_hist *h);
int64_t inferd_hist_min(const inferd_hist *h);
int64_t inferd_hist_max(const inferd_hist *h);
double inferd_hist_mean(const inferd_hist *h);

/* The value at percentile p (0..100): the smallest recorded value v such that at least p% of
 * the values are <= v, reported within INFERD_HIST_REL_ERROR and clamped to [min, max], so p=0
 * gives the exact minimum and p=100 the exact maximum. 0 when h is empty. */
int64_t inferd_hist_percentile(const inferd_hist *h, double p);

/* Number of values <= le_ns, for Prometheus `le` buckets. Exact when le_ns + 1 is a bucket
 * boundary (inferd_hist_bucket_upper of some bucket, e.g. any value below 128 ns or any
 * multiple of a power of two large enough); otherwise values in the one bucket straddling
 * le_ns are counted as above it, so the answer may be low by the values within 1/64 of
 * le_ns. */
uint64_t inferd_hist_count_le(const inferd_hist *h, int64_t le_ns);

/* Bucket geometry, exposed for tests and exporters: the bucket a value falls into, and the
 * half-open range [lower, upper) of values that bucket holds. */
int inferd_hist_bucket_index(int64_t ns);
int64_t inferd_hist_bucket_lower(int index);
int64_t inferd_hist_bucket_upper(int index);

#endif
