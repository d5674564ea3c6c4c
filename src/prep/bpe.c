#include "prep/bpe.h"

#include <stdio.h>
#include <string.h>

#include "prep/unicode.h"

typedef struct merge {
    uint64_t key; /* (left id << 32) | right id; UINT64_MAX: empty */
    int32_t rank;
    int32_t new_id;
} merge;

struct inferd_bpe {
    inferd_mem_account *acct;
    inferd_vocab *vocab;
    inferd_bpe_options opt;
    char prefix[32], suffix[32];
    size_t prefix_len, suffix_len;
    int32_t unk_id;        /* -1: none */
    int32_t byte_ids[256]; /* <0xNN> ids for byte_fallback, -1 when missing */
    merge *merges;
    size_t cap, count;
};

int inferd_bpe_create(inferd_vocab *vocab, const inferd_bpe_options *opt, inferd_mem_account *acct,
                      inferd_bpe **out, inferd_error *err) {
    const char *pre = opt->prefix ? opt->prefix : "", *suf = opt->suffix ? opt->suffix : "";
    if (strlen(pre) >= 32 || strlen(suf) >= 32) {
        inferd_vocab_destroy(vocab);
        return inferd_error_set(err, INFERD_EINVAL, "BPE prefix or suffix is too long");
    }
    int32_t unk = -1;
    if (opt->unk_token) {
        unk = inferd_vocab_find(vocab, opt->unk_token, strlen(opt->unk_token));
        if (unk < 0) {
            inferd_vocab_destroy(vocab);
            return inferd_error_set(err, INFERD_EINVAL,
                                    "unk_token \"%.64s\" is not in the vocabulary", opt->unk_token);
        }
    }
    inferd_bpe *b = inferd_calloc(acct, 1, sizeof *b);
    merge *m = inferd_malloc(acct, 1024 * sizeof *m);
    if (!b || !m) {
        inferd_free(b);
        inferd_free(m);
        inferd_vocab_destroy(vocab);
        return inferd_error_set(err, INFERD_EINTERNAL, "out of memory for a BPE model");
    }
    for (size_t i = 0; i < 1024; i++)
        m[i].key = UINT64_MAX;
    b->acct = acct;
    b->vocab = vocab;
    b->opt = *opt;
    b->opt.unk_token = b->opt.prefix = b->opt.suffix = NULL; // not kept: the caller owns them
    b->prefix_len = strlen(pre);
    memcpy(b->prefix, pre, b->prefix_len);
    b->suffix_len = strlen(suf);
    memcpy(b->suffix, suf, b->suffix_len);
    b->unk_id = unk;
    for (int i = 0; i < 256; i++) {
        char t[8];
        snprintf(t, sizeof t, "<0x%02X>", i);
        b->byte_ids[i] = inferd_vocab_find(vocab, t, 6);
    }
    b->merges = m;
    b->cap = 1024;
    *out = b;
    return 0;
}

void inferd_bpe_destroy(inferd_bpe *b) {
    if (!b)
        return;
    inferd_vocab_destroy(b->vocab);
    inferd_free(b->merges);
    inferd_free(b);
}

static size_t mix(uint64_t k) {
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdULL;
    k ^= k >> 33;
    return (size_t)k;
}

static const merge *find_merge(const inferd_bpe *b, int32_t l, int32_t r) {
    uint64_t key = ((uint64_t)(uint32_t)l << 32) | (uint32_t)r;
    for (size_t i = mix(key) & (b->cap - 1);; i = (i + 1) & (b->cap - 1)) {
        if (b->merges[i].key == key)
            return &b->merges[i];
        if (b->merges[i].key == UINT64_MAX)
            return NULL;
    }
}

static int insert_merge(inferd_bpe *b, uint64_t key, int32_t rank, int32_t new_id) {
    if ((b->count + 1) * 2 > b->cap) {
        size_t ncap = b->cap * 2;
        merge *nm = inferd_malloc(b->acct, ncap * sizeof *nm);
        if (!nm)
            return -1;
        for (size_t i = 0; i < ncap; i++)
            nm[i].key = UINT64_MAX;
        for (size_t i = 0; i < b->cap; i++) {
            if (b->merges[i].key == UINT64_MAX)
                continue;
            size_t j = mix(b->merges[i].key) & (ncap - 1);
            while (nm[j].key != UINT64_MAX)
                j = (j + 1) & (ncap - 1);
            nm[j] = b->merges[i];
        }
        inferd_free(b->merges);
        b->merges = nm;
        b->cap = ncap;
    }
    size_t i = mix(key) & (b->cap - 1);
    while (b->merges[i].key != UINT64_MAX) {
        if (b->merges[i].key == key)
            return 0; // a repeated rule keeps its first (better) rank, as HF's map insert would
        i = (i + 1) & (b->cap - 1);
    }
    b->merges[i] = (merge){key, rank, new_id};
    b->count++;
    return 0;
}

int inferd_bpe_add_merge(inferd_bpe *b, const char *a, size_t na, const char *bb, size_t nb,
                         inferd_error *err) {
    int32_t ia = inferd_vocab_find(b->vocab, a, na), ib = inferd_vocab_find(b->vocab, bb, nb);
    if (ia < 0 || ib < 0) {
        const char *miss = ia < 0 ? a : bb;
        int mlen = (int)(ia < 0 ? na : nb);
        return inferd_error_set(err, INFERD_EINVAL,
                                "merge %zu uses \"%.*s\", which is not in the vocabulary",
                                b->count + 1, mlen > 64 ? 64 : mlen, miss);
    }
    size_t skip = 0;
    if (b->prefix_len && nb >= b->prefix_len && memcmp(bb, b->prefix, b->prefix_len) == 0)
        skip = b->prefix_len;
    char tmp[512];
    if (na + nb - skip > sizeof tmp)
        return inferd_error_set(err, INFERD_EINVAL, "merge %zu is too long", b->count + 1);
    memcpy(tmp, a, na);
    memcpy(tmp + na, bb + skip, nb - skip);
    int32_t nid = inferd_vocab_find(b->vocab, tmp, na + nb - skip);
    if (nid < 0) {
        int ml = (int)(na + nb - skip);
        return inferd_error_set(err, INFERD_EINVAL,
                                "merge %zu makes \"%.*s\", which is not in the vocabulary",
                                b->count + 1, ml > 64 ? 64 : ml, tmp);
    }
    uint64_t key = ((uint64_t)(uint32_t)ia << 32) | (uint32_t)ib;
    if (b->count >= INT32_MAX || insert_merge(b, key, (int32_t)b->count, nid))
        return inferd_error_set(err, INFERD_EINTERNAL, "out of memory for BPE merges");
    return 0;
}

typedef struct sym {
    int32_t id;
    int32_t prev, next; /* -1 at the ends */
    int32_t alive;
} sym;

typedef struct cand {
    int32_t rank;
    int32_t pos; /* left symbol */
    int32_t new_id;
} cand;

static int cand_less(const cand *x, const cand *y) {
    return x->rank < y->rank || (x->rank == y->rank && x->pos < y->pos);
}

static void heap_push(cand *h, size_t *n, cand c) {
    size_t i = (*n)++;
    h[i] = c;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!cand_less(&h[i], &h[p]))
            break;
        cand t = h[p];
        h[p] = h[i];
        h[i] = t;
        i = p;
    }
}

static cand heap_pop(cand *h, size_t *n) {
    cand top = h[0];
    h[0] = h[--*n];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < *n && cand_less(&h[l], &h[m]))
            m = l;
        if (r < *n && cand_less(&h[r], &h[m]))
            m = r;
        if (m == i)
            break;
        cand t = h[m];
        h[m] = h[i];
        h[i] = t;
        i = m;
    }
    return top;
}

static void push_sym(sym *sy, int32_t *ns, int32_t id) {
    sy[*ns] = (sym){id, *ns - 1, -1, 1};
    (*ns)++;
}

static void add_pair(const inferd_bpe *b, const sym *sy, int32_t pos, cand *heap, size_t *nh) {
    if (pos < 0 || sy[pos].next < 0)
        return;
    const merge *m = find_merge(b, sy[pos].id, sy[sy[pos].next].id);
    if (m)
        heap_push(heap, nh, (cand){m->rank, pos, m->new_id});
}

int inferd_bpe_encode(const inferd_bpe *b, inferd_scratch *s, const uint32_t *cps, size_t n,
                      inferd_scratch_ids *out, inferd_error *err) {
    if (n == 0)
        return 0;
    // Symbols: at most one per byte (byte fallback), so 4 per code point.
    size_t maxsym = 4 * n;
    char *bytes = inferd_scratch_get(s, INFERD_SCRATCH_SLOT_BYTES, 4 * n + 64);
    sym *sy = inferd_scratch_get(s, INFERD_SCRATCH_SLOT_MODEL_A, maxsym * sizeof *sy);
    cand *heap = inferd_scratch_get(s, INFERD_SCRATCH_SLOT_MODEL_B, 3 * maxsym * sizeof *heap);
    if (!bytes || !sy || !heap)
        return inferd_error_set(err, INFERD_EINTERNAL, "out of memory in BPE");
    if (b->opt.ignore_merges) {
        size_t nb = inferd_unicode_encode_all(cps, n, bytes);
        int32_t id = inferd_vocab_find(b->vocab, bytes, nb);
        if (id >= 0) {
            inferd_scratch_ids_push(out, id);
            return 0;
        }
    }
    int32_t ns = 0;
    int32_t unk_open = 0; /* the last symbol is an unk that may absorb more (fuse_unk) */
    for (size_t i = 0; i < n; i++) {
        size_t k = 0;
        if (i > 0) {
            memcpy(bytes, b->prefix, b->prefix_len);
            k = b->prefix_len;
        }
        size_t cl = inferd_unicode_encode(cps[i], bytes + k);
        k += cl;
        if (i + 1 == n) {
            memcpy(bytes + k, b->suffix, b->suffix_len);
            k += b->suffix_len;
        }
        int32_t id = inferd_vocab_find(b->vocab, bytes, k);
        if (id >= 0) {
            push_sym(sy, &ns, id);
            unk_open = 0;
            continue;
        }
        if (b->opt.byte_fallback) {
            // HF tries the bytes of the whole symbol string, prefix and suffix included.
            int ok = 1;
            for (size_t j = 0; j < k; j++)
                ok &= b->byte_ids[(unsigned char)bytes[j]] >= 0;
            if (ok) {
                for (size_t j = 0; j < k; j++)
                    push_sym(sy, &ns, b->byte_ids[(unsigned char)bytes[j]]);
                unk_open = 0;
                continue;
            }
        }
        if (b->unk_id < 0)
            continue;
        if (unk_open && b->opt.fuse_unk)
            continue;
        push_sym(sy, &ns, b->unk_id);
        unk_open = 1;
    }
    for (int32_t i = 0; i + 1 < ns; i++)
        sy[i].next = i + 1;
    size_t nh = 0;
    for (int32_t i = 0; i + 1 < ns; i++)
        add_pair(b, sy, i, heap, &nh);
    while (nh > 0) {
        cand c = heap_pop(heap, &nh);
        if (!sy[c.pos].alive || sy[c.pos].next < 0)
            continue;
        int32_t r = sy[c.pos].next;
        const merge *m = find_merge(b, sy[c.pos].id, sy[r].id);
        if (!m || m->new_id != c.new_id)
            continue; // stale: one side has changed since this pair was queued
        sy[c.pos].id = c.new_id;
        sy[r].alive = 0;
        sy[c.pos].next = sy[r].next;
        if (sy[r].next >= 0)
            sy[sy[r].next].prev = c.pos;
        add_pair(b, sy, sy[c.pos].prev, heap, &nh);
        add_pair(b, sy, c.pos, heap, &nh);
    }
    for (int32_t i = 0; i < ns; i++)
        if (sy[i].alive)
            inferd_scratch_ids_push(out, sy[i].id);
    return 0;
}

const inferd_vocab *inferd_bpe_vocab(const inferd_bpe *b) { return b->vocab; }
