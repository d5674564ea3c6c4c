/* residency.c: see residency.h. No locks: pure functions. */
#include "repo/residency.h"

/* Fills out with the indexes of the items that could be evicted now (idle and unpinned), or
 * with busy ones too (busy_too), oldest first; returns their count. Insertion sort: a server
 * holds at most a few hundred versions in memory. */
static int evictable(const inferd_residency_item *items, int n, int busy_too, int *out) {
    int k = 0;
    for (int i = 0; i < n; i++) {
        if (items[i].pinned || (items[i].busy && !busy_too))
            continue;
        int j = k++;
        while (j > 0 && items[out[j - 1]].last_used_ns > items[i].last_used_ns) {
            out[j] = out[j - 1];
            j--;
        }
        out[j] = i;
    }
    return k;
}

static void totals(const inferd_residency_item *items, int n, int64_t *bytes, int *count) {
    *bytes = 0;
    *count = 0;
    for (int i = 0; i < n; i++) {
        *bytes += items[i].bytes;
        *count += items[i].counted != 0;
    }
}

static int fits(const inferd_residency_limits *lim, int64_t bytes, int count) {
    return (lim->budget <= 0 || bytes <= lim->budget) &&
           (lim->max_loaded <= 0 || count <= lim->max_loaded);
}

/* Takes victims from order[0..k) until bytes + need and count + counted fit; returns how many
 * were taken, or -1 when even all k are not enough. */
static int take_until_fit(const inferd_residency_limits *lim, const inferd_residency_item *items,
                          const int *order, int k, int64_t bytes, int count, int64_t need,
                          int counted) {
    int taken = 0;
    while (!fits(lim, bytes + need, count + (counted != 0))) {
        if (taken == k)
            return -1;
        bytes -= items[order[taken]].bytes;
        count -= items[order[taken]].counted != 0;
        taken++;
    }
    return taken;
}

inferd_residency_verdict inferd_residency_plan(const inferd_residency_limits *lim,
                                               const inferd_residency_item *items, int n,
                                               int64_t need, int counted, int *victims,
                                               int *n_victims) {
    *n_victims = 0;
    int64_t bytes;
    int count;
    totals(items, n, &bytes, &count);
    // Never: what pinned versions hold stays whatever else goes.
    int64_t pinned_bytes = 0;
    int pinned_count = 0;
    for (int i = 0; i < n; i++)
        if (items[i].pinned) {
            pinned_bytes += items[i].bytes;
            pinned_count += items[i].counted != 0;
        }
    if (!fits(lim, pinned_bytes + need, pinned_count + (counted != 0)))
        return INFERD_RESIDENCY_NEVER;
    int k = evictable(items, n, 0, victims);
    int taken = take_until_fit(lim, items, victims, k, bytes, count, need, counted);
    if (taken >= 0) {
        *n_victims = taken;
        return INFERD_RESIDENCY_FITS;
    }
    return INFERD_RESIDENCY_WAIT; // busy versions will become idle (or finish loading)
}

int inferd_residency_trim(const inferd_residency_limits *lim, const inferd_residency_item *items,
                          int n, int *victims) {
    int64_t bytes;
    int count;
    totals(items, n, &bytes, &count);
    if (fits(lim, bytes, count))
        return 0;
    int k = evictable(items, n, 0, victims);
    int taken = take_until_fit(lim, items, victims, k, bytes, count, 0, 0);
    return taken < 0 ? k : taken;
}

int64_t inferd_residency_estimate(int64_t file_bytes, int64_t last_bytes) {
    if (last_bytes > 0)
        return last_bytes;
    // Never loaded: the packed weights are about the file's size; a quarter more and 256 KiB
    // cover the skeleton, descriptors, the first plans and arenas.
    int64_t f = file_bytes > 0 ? file_bytes : 0;
    return f + f / 4 + ((int64_t)256 << 10);
}
