#include "prep/scratch.h"

#include "util/error.h"

struct inferd_scratch {
    inferd_mem_account *acct;
    void *buf[INFERD_SCRATCH_SLOT_COUNT];
    size_t cap[INFERD_SCRATCH_SLOT_COUNT];
};

int inferd_scratch_create(inferd_mem_account *acct, inferd_scratch **out) {
    inferd_scratch *s = inferd_calloc(acct, 1, sizeof *s);
    if (!s)
        return INFERD_EINTERNAL;
    s->acct = acct;
    *out = s;
    return 0;
}

void inferd_scratch_destroy(inferd_scratch *s) {
    if (!s)
        return;
    for (int i = 0; i < INFERD_SCRATCH_SLOT_COUNT; i++)
        inferd_free(s->buf[i]);
    inferd_free(s);
}

void *inferd_scratch_get(inferd_scratch *s, inferd_scratch_slot slot, size_t bytes) {
    if (INFERD_NEVER((unsigned)slot >= INFERD_SCRATCH_SLOT_COUNT))
        return NULL;
    if (bytes <= s->cap[slot] && s->buf[slot])
        return s->buf[slot];
    // Grow geometrically so a run of slightly longer texts reallocates only a few times.
    size_t want = s->cap[slot] * 2;
    if (want < bytes)
        want = bytes;
    if (want < 256)
        want = 256;
    void *p = inferd_realloc(s->acct, s->buf[slot], want);
    if (!p)
        return NULL;
    s->buf[slot] = p;
    s->cap[slot] = want;
    return p;
}

size_t inferd_scratch_bytes(const inferd_scratch *s) {
    size_t t = 0;
    for (int i = 0; i < INFERD_SCRATCH_SLOT_COUNT; i++)
        t += s->cap[i];
    return t;
}
