#include "util/hist.h"

#include <stdatomic.h>

#include "util/alloc.h"

/* 7 bits of linear resolution: values below 2^7 are exact, and above that each octave has
 * 2^6 sub-buckets (the top half of the 2^7 range, since the leading bit is implied). */
#define SUB_BITS 7
#define SUB_COUNT (1 << SUB_BITS)        /* 128 */
#define HALF_COUNT (1 << (SUB_BITS - 1)) /* 64 */

struct inferd_hist {
    _Atomic uint64_t buckets[INFERD_HIST_BUCKETS];
    _Atomic uint64_t count;
    _Atomic int64_t sum;
    _Atomic int64_t min; /* INT64_MAX while empty */
    _Atomic int64_t max; /* -1 while empty */
};

int inferd_hist_bucket_index(int64_t ns) {
    if (ns < SUB_COUNT)
        return ns < 0 ? 0 : (int)ns;
    if (ns >= INFERD_HIST_MAX_TRACKABLE)
        return INFERD_HIST_BUCKETS - 1;
    int msb = 63 - __builtin_clzll((uint64_t)ns);
    int shift = msb - (SUB_BITS - 1); /* >= 1: keeps the top 7 bits, leading one included */
    int sub = (int)(ns >> shift);     /* in [64, 128) */
    return SUB_COUNT + (shift - 1) * HALF_COUNT + (sub - HALF_COUNT);
}

int64_t inferd_hist_bucket_lower(int index) {
    if (index < SUB_COUNT)
        return index;
    int shift = (index - SUB_COUNT) / HALF_COUNT + 1;
    int sub = (index - SUB_COUNT) % HALF_COUNT + HALF_COUNT;
    return (int64_t)sub << shift;
}

int64_t inferd_hist_bucket_upper(int index) {
    if (index < SUB_COUNT)
        return index + 1;
    int shift = (index - SUB_COUNT) / HALF_COUNT + 1;
    return inferd_hist_bucket_lower(index) + ((int64_t)1 << shift);
}

inferd_hist *inferd_hist_create(void) {
    inferd_hist *h = inferd_calloc(NULL, 1, sizeof *h);
    if (h)
        inferd_hist_reset(h);
    return h;
}

void inferd_hist_destroy(inferd_hist *h) { inferd_free(h); }

static void store_min(_Atomic int64_t *slot, int64_t v) {
    int64_t cur = atomic_load_explicit(slot, memory_order_relaxed);
    while (v < cur && !atomic_compare_exchange_weak_explicit(slot, &cur, v, memory_order_relaxed,
                                                             memory_order_relaxed)) {
    }
}

static void store_max(_Atomic int64_t *slot, int64_t v) {
    int64_t cur = atomic_load_explicit(slot, memory_order_relaxed);
    while (v > cur && !atomic_compare_exchange_weak_explicit(slot, &cur, v, memory_order_relaxed,
                                                             memory_order_relaxed)) {
    }
}

static void add_sum(_Atomic int64_t *slot, int64_t add) {
    // Saturate rather than wrap: a sum that overflowed would make the mean nonsense.
    int64_t cur = atomic_load_explicit(slot, memory_order_relaxed);
    int64_t next;
    do {
        next = cur > INT64_MAX - add ? INT64_MAX : cur + add;
    } while (!atomic_compare_exchange_weak_explicit(slot, &cur, next, memory_order_relaxed,
                                                    memory_order_relaxed));
}

void inferd_hist_record_n(inferd_hist *h, int64_t ns, uint64_t n) {
    if (n == 0)
        return;
    if (ns < 0)
        ns = 0;
    atomic_fetch_add_explicit(&h->buckets[inferd_hist_bucket_index(ns)], n, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->count, n, memory_order_relaxed);
    int64_t add = (n > (uint64_t)INT64_MAX || (ns && (int64_t)n > INT64_MAX / ns))
                      ? INT64_MAX
                      : ns * (int64_t)n;
    add_sum(&h->sum, add);
    store_min(&h->min, ns);
    store_max(&h->max, ns);
}

void inferd_hist_record(inferd_hist *h, int64_t ns) { inferd_hist_record_n(h, ns, 1); }

void inferd_hist_reset(inferd_hist *h) {
    for (int i = 0; i < INFERD_HIST_BUCKETS; i++)
        atomic_store_explicit(&h->buckets[i], 0, memory_order_relaxed);
    atomic_store_explicit(&h->count, 0, memory_order_relaxed);
    atomic_store_explicit(&h->sum, 0, memory_order_relaxed);
    atomic_store_explicit(&h->min, INT64_MAX, memory_order_relaxed);
    atomic_store_explicit(&h->max, -1, memory_order_relaxed);
}

void inferd_hist_merge(inferd_hist *dst, const inferd_hist *src) {
    uint64_t total = 0;
    for (int i = 0; i < INFERD_HIST_BUCKETS; i++) {
        uint64_t c = atomic_load_explicit(&src->buckets[i], memory_order_relaxed);
        if (c) {
            atomic_fetch_add_explicit(&dst->buckets[i], c, memory_order_relaxed);
            total += c;
        }
    }
    if (total == 0)
        return;
    atomic_fetch_add_explicit(&dst->count, total, memory_order_relaxed);
    add_sum(&dst->sum, atomic_load_explicit(&src->sum, memory_order_relaxed));
    store_min(&dst->min, atomic_load_explicit(&src->min, memory_order_relaxed));
    store_max(&dst->max, atomic_load_explicit(&src->max, memory_order_relaxed));
}

uint64_t inferd_hist_count(const inferd_hist *h) {
    return atomic_load_explicit(&h->count, memory_order_relaxed);
}

int64_t inferd_hist_sum(const inferd_hist *h) {
    return atomic_load_explicit(&h->sum, memory_order_relaxed);
}

int64_t inferd_hist_min(const inferd_hist *h) {
    int64_t v = atomic_load_explicit(&h->min, memory_order_relaxed);
    return v == INT64_MAX ? 0 : v;
}

int64_t inferd_hist_max(const inferd_hist *h) {
    int64_t v = atomic_load_explicit(&h->max, memory_order_relaxed);
    return v < 0 ? 0 : v;
}

double inferd_hist_mean(const inferd_hist *h) {
    uint64_t n = inferd_hist_count(h);
    return n ? (double)inferd_hist_sum(h) / (double)n : 0.0;
}

int64_t inferd_hist_percentile(const inferd_hist *h, double p) {
    uint64_t total = 0;
    for (int i = 0; i < INFERD_HIST_BUCKETS; i++)
        total += atomic_load_explicit(&h->buckets[i], memory_order_relaxed);
    if (total == 0)
        return 0;
    if (!(p > 0)) // also catches NaN
        p = 0;
    if (p > 100)
        p = 100;
    // Rank of the wanted value, 1-based: the smallest rank r with r / total >= p / 100.
    double want = p / 100.0 * (double)total;
    uint64_t rank = (uint64_t)want;
    if ((double)rank < want)
        rank++;
    if (rank < 1)
        rank = 1;
    if (rank > total)
        rank = total;
    // The exact extremes are known, so the first and last ranks need no bucket arithmetic.
    if (rank == 1)
        return inferd_hist_min(h);
    if (rank == total)
        return inferd_hist_max(h);
    uint64_t seen = 0;
    int i = 0;
    for (; i < INFERD_HIST_BUCKETS; i++) {
        seen += atomic_load_explicit(&h->buckets[i], memory_order_relaxed);
        if (seen >= rank)
            break;
    }
    if (i == INFERD_HIST_BUCKETS)
        i = INFERD_HIST_BUCKETS - 1;
    int64_t lo = inferd_hist_bucket_lower(i), hi = inferd_hist_bucket_upper(i);
    int64_t v = lo + (hi - lo - 1) / 2;
    // A bucket's midpoint may lie outside the recorded extremes.
    int64_t mn = inferd_hist_min(h), mx = inferd_hist_max(h);
    if (i == INFERD_HIST_BUCKETS - 1 && mx >= INFERD_HIST_MAX_TRACKABLE)
        v = mx;
    if (v < mn)
        v = mn;
    if (v > mx)
        v = mx;
    return v;
}

uint64_t inferd_hist_count_le(const inferd_hist *h, int64_t le_ns) {
    if (le_ns < 0)
        return 0;
    uint64_t n = 0;
    for (int i = 0; i < INFERD_HIST_BUCKETS; i++) {
        if (inferd_hist_bucket_upper(i) - 1 > le_ns)
            break;
        n += atomic_load_explicit(&h->buckets[i], memory_order_relaxed);
    }
    return n;
}
