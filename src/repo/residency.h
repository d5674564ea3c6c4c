/* residency.h: which loaded model versions to evict so that another one fits, decided by pure
 * functions over a description of what is resident.
 *
 * DESIGN
 * The repository (repo.c) keeps loaded versions within two limits: a byte budget
 * (--memory-budget) and a count (--max-loaded). Before it starts a load it describes every
 * version in memory to inferd_residency_plan: the bytes it holds (or has reserved, while it
 * loads), when a request last used it, whether config.json pins it, whether it is busy (a
 * request in flight, or a load or unload under way) and whether it counts toward
 * --max-loaded. The answer is one of:
 *
 *   FITS   the load fits once victims[] are evicted: least recently used first, never a
 *          pinned or busy version, and no more than needed;
 *   WAIT   it would fit if some busy versions were evicted, so nothing is evicted now and the
 *          caller asks again when a version becomes idle (a version is never pulled from under
 *          a request, and evicting the idle ones early would only throw them away);
 *   NEVER  it cannot fit even with every unpinned version gone: the model is larger than the
 *          budget (less what pinned versions hold), or pinned versions fill --max-loaded.
 *          The caller refuses it with a clear error instead of thrashing.
 *
 * inferd_residency_trim answers the other question, after the fact: which idle versions to
 * evict to get back within the limits when resident versions grew (plans are built for new
 * input shapes while serving) or a load turned out larger than its estimate.
 *
 * Everything here is a pure function of its arguments: no locks, no clock, no allocation.
 * Any thread. The repository calls it under its lock.
 */
#ifndef INFERD_REPO_RESIDENCY_H
#define INFERD_REPO_RESIDENCY_H

#include <stdint.h>

/* One version in memory, as the policy sees it. */
typedef struct inferd_residency_item {
    int64_t bytes;        /* held now, or reserved while loading (the larger of the two) */
    int64_t last_used_ns; /* when a request last took it (monotonic); smaller is older */
    int pinned;           /* config.json "pinned": never evicted */
    int busy;             /* a request in flight, or a load or unload under way */
    int counted;          /* counts toward max_loaded (a serving version, or one loading to
                             serve; not a version switching in or draining out) */
} inferd_residency_item;

typedef struct inferd_residency_limits {
    int64_t budget; /* bytes; 0: no byte budget */
    int max_loaded; /* counted versions; 0: no limit */
} inferd_residency_limits;

typedef enum inferd_residency_verdict {
    INFERD_RESIDENCY_FITS = 0,
    INFERD_RESIDENCY_WAIT = 1,
    INFERD_RESIDENCY_NEVER = 2,
} inferd_residency_verdict;

/* Plans a load of need bytes (counted: whether the new version counts toward max_loaded)
 * next to items[0..n). On FITS, victims (room for n) gets the indexes to evict, least recently
 * used first, and *n_victims their count (possibly 0); otherwise *n_victims is 0. */
inferd_residency_verdict inferd_residency_plan(const inferd_residency_limits *lim,
                                               const inferd_residency_item *items, int n,
                                               int64_t need, int counted, int *victims,
                                               int *n_victims);

/* The idle, unpinned versions to evict, least recently used first, until items fit the limits
 * again (or none is left to evict). Writes their indexes to victims (room for n) and returns
 * their count; 0 when everything already fits. */
int inferd_residency_trim(const inferd_residency_limits *lim, const inferd_residency_item *items,
                          int n, int *victims);

/* Bytes to reserve for loading a version: what it held when it was last unloaded (plans
 * included) when it has been loaded before, else a bound derived from the size of its files
 * (file_bytes: the model file, plus what its tokenizer files become; weights are packed once,
 * and the ONNX skeleton, plans and arenas come on top). */
int64_t inferd_residency_estimate(int64_t file_bytes, int64_t last_bytes);

#endif
