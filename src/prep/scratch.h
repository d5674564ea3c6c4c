/* scratch.h: reusable working memory for tokenizing one text at a time.
 *
 * Tokenizing runs on HTTP threads for every request, so it must not call malloc per
 * character or per word. A scratch holds a few growable buffers (slots); each call to a
 * tokenizer borrows them, grows them when a text is longer than any before, and leaves them
 * for the next call. A server keeps one scratch per thread; after warm-up tokenizing
 * allocates nothing. A scratch is not thread-safe: one thread uses it at a time.
 *
 * This header also defines inferd_scratch_ids, the bounded output every tokenizer model
 * appends ids to, so that truncation can stop tokenizing early instead of after the fact.
 */
#ifndef INFERD_PREP_SCRATCH_H
#define INFERD_PREP_SCRATCH_H

#include <stddef.h>
#include <stdint.h>

#include "util/alloc.h"

typedef struct inferd_scratch inferd_scratch;

/* Buffer slots. Each tokenizer stage documents which it uses; a stage never holds a pointer
 * into a slot across a call that may grow that slot. */
typedef enum inferd_scratch_slot {
    INFERD_SCRATCH_SLOT_CP_A = 0, /* code points: decoded text and normalizer ping-pong */
    INFERD_SCRATCH_SLOT_CP_B,     /* code points: the other half of the ping-pong */
    INFERD_SCRATCH_SLOT_PIECES_A, /* pre-tokenizer pieces */
    INFERD_SCRATCH_SLOT_PIECES_B, /* pre-tokenizer pieces, the other half */
    INFERD_SCRATCH_SLOT_BYTES,    /* UTF-8 of one word for vocab lookups */
    INFERD_SCRATCH_SLOT_MODEL_A,  /* model working arrays (BPE symbols, Viterbi lattice) */
    INFERD_SCRATCH_SLOT_MODEL_B,
    INFERD_SCRATCH_SLOT_MODEL_C,
    INFERD_SCRATCH_SLOT_SEGMENTS, /* added-token split of the raw text */
    INFERD_SCRATCH_SLOT_COUNT,
} inferd_scratch_slot;

/* Creates an empty scratch whose buffers are charged to acct (NULL: the process account).
 * Returns 0 or INFERD_EINTERNAL when out of memory. The caller destroys it. */
int inferd_scratch_create(inferd_mem_account *acct, inferd_scratch **out);

/* Frees the scratch and its buffers; NULL does nothing. */
void inferd_scratch_destroy(inferd_scratch *s);

/* Returns slot's buffer grown to at least bytes (keeping its contents), or NULL when out of
 * memory (the old buffer then stays valid and owned by the scratch). */
void *inferd_scratch_get(inferd_scratch *s, inferd_scratch_slot slot, size_t bytes);

/* Bytes held by all slots together (to report per-thread memory). */
size_t inferd_scratch_bytes(const inferd_scratch *s);

/* A bounded id output: at most limit ids are stored, and overflow records that more were
 * produced (so the caller can truncate or reject). Caller-owned, no allocation. */
typedef struct inferd_scratch_ids {
    int32_t *ids;
    size_t n;     /* ids stored */
    size_t limit; /* capacity of ids */
    int overflow; /* set when an id arrived with n == limit */
} inferd_scratch_ids;

static inline void inferd_scratch_ids_push(inferd_scratch_ids *o, int32_t id) {
    if (o->n < o->limit)
        o->ids[o->n++] = id;
    else
        o->overflow = 1;
}

/* True when no more ids fit, so producers can stop. */
static inline int inferd_scratch_ids_full(const inferd_scratch_ids *o) { return o->overflow; }

/* Code points written into a scratch slot that grows on demand: p[0, n) written, room for
 * cap. Start with s and slot set and the rest zero. */
typedef struct inferd_scratch_cps {
    inferd_scratch *s;
    inferd_scratch_slot slot;
    uint32_t *p;
    size_t n, cap;
} inferd_scratch_cps;

/* Makes room for more code points after the n written (growing to twice what is needed),
 * keeping them. Returns 0, or -1 when out of memory (p then stays valid). */
static inline int inferd_scratch_cps_reserve(inferd_scratch_cps *w, size_t more) {
    if (w->n + more <= w->cap)
        return 0;
    size_t want = (w->n + more) * 2;
    uint32_t *p = inferd_scratch_get(w->s, w->slot, want * sizeof *p);
    if (!p)
        return -1;
    w->p = p;
    w->cap = want;
    return 0;
}

#endif
