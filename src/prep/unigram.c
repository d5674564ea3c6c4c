#include "prep/unigram.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "prep/unicode.h"

struct inferd_unigram {
    inferd_mem_account *acct;
    inferd_vocab *vocab;
    double *scores;
    size_t n, cap;
    double min_score;
    int32_t unk_id;
    int byte_fallback;
    int32_t byte_ids[256];
};

/* SentencePiece's penalty for an unknown character relative to the worst piece. */
#define UNK_PENALTY 10.0

int inferd_unigram_create(inferd_mem_account *acct, inferd_unigram **out, inferd_error *err) {
    inferd_unigram *u = inferd_calloc(acct, 1, sizeof *u);
    if (!u)
        return inferd_error_set(err, INFERD_EINTERNAL, "out of memory for a Unigram model");
    int rc = inferd_vocab_create(acct, &u->vocab, err);
    if (rc) {
        inferd_free(u);
        return rc;
    }
    u->acct = acct;
    u->min_score = INFINITY;
    u->unk_id = -1;
    *out = u;
    return 0;
}

void inferd_unigram_destroy(inferd_unigram *u) {
    if (!u)
        return;
    inferd_vocab_destroy(u->vocab);
    inferd_free(u->scores);
    inferd_free(u);
}

int inferd_unigram_add(inferd_unigram *u, const char *piece, size_t n, double score,
                       inferd_error *err) {
    if (!isfinite(score))
        return inferd_error_set(err, INFERD_EINVAL, "piece %zu has a score that is not finite",
                                u->n);
    if (u->n >= INT32_MAX)
        return inferd_error_set(err, INFERD_EINVAL, "too many pieces");
    if (u->n == u->cap) {
        size_t ncap = u->cap ? u->cap * 2 : 1024;
        double *ns = inferd_realloc(u->acct, u->scores, ncap * sizeof *ns);
        if (!ns)
            return inferd_error_set(err, INFERD_EINTERNAL, "out of memory for a Unigram model");
        u->scores = ns;
        u->cap = ncap;
    }
    int32_t id = (int32_t)u->n;
    u->scores[u->n++] = score;
    if (score < u->min_score)
        u->min_score = score;
    if (inferd_vocab_find(u->vocab, piece, n) >= 0)
        return 0;
    return inferd_vocab_set(u->vocab, piece, n, id, err);
}

int inferd_unigram_finish(inferd_unigram *u, int32_t unk_id, int byte_fallback, inferd_error *err) {
    if (unk_id < 0 || (size_t)unk_id >= u->n)
        return inferd_error_set(err, INFERD_EINVAL, "unk_id %d is not a piece", (int)unk_id);
    u->unk_id = unk_id;
    u->byte_fallback = byte_fallback;
    for (int i = 0; i < 256; i++) {
        char t[8];
        snprintf(t, sizeof t, "<0x%02X>", i);
        u->byte_ids[i] = inferd_vocab_find(u->vocab, t, 6);
    }
    return 0;
}

const inferd_vocab *inferd_unigram_vocab(const inferd_unigram *u) { return u->vocab; }

typedef struct node {
    double score;  /* best total score of a path ending here */
    int32_t start; /* character where the last token of that path starts; -1: unreached */
    int32_t id;    /* its id (unk_id for an unknown character) */
} node;

static void emit_unk_run(const inferd_unigram *u, const char *bytes, size_t a, size_t e,
                         inferd_scratch_ids *out) {
    if (u->byte_fallback) {
        int ok = 1;
        for (size_t j = a; j < e; j++)
            ok &= u->byte_ids[(unsigned char)bytes[j]] >= 0;
        if (ok) {
            for (size_t j = a; j < e; j++)
                inferd_scratch_ids_push(out, u->byte_ids[(unsigned char)bytes[j]]);
            return;
        }
    }
    inferd_scratch_ids_push(out, u->unk_id);
}

int inferd_unigram_encode(const inferd_unigram *u, inferd_scratch *s, const uint32_t *cps, size_t n,
                          inferd_scratch_ids *out, inferd_error *err) {
    if (n == 0)
        return 0;
    char *bytes = inferd_scratch_get(s, INFERD_SCRATCH_SLOT_BYTES, 4 * n + 1);
    uint32_t *at = inferd_scratch_get(s, INFERD_SCRATCH_SLOT_MODEL_A, (n + 1) * sizeof *at);
    node *lat = inferd_scratch_get(s, INFERD_SCRATCH_SLOT_MODEL_B, (n + 1) * sizeof *lat);
    int32_t *path = inferd_scratch_get(s, INFERD_SCRATCH_SLOT_MODEL_C, (n + 1) * sizeof *path);
    if (!bytes || !at || !lat || !path)
        return inferd_error_set(err, INFERD_EINTERNAL, "out of memory in Unigram");
    size_t nb = 0;
    for (size_t i = 0; i < n; i++) {
        at[i] = (uint32_t)nb;
        nb += inferd_unicode_encode(cps[i], bytes + nb);
    }
    at[n] = (uint32_t)nb;
    for (size_t i = 0; i <= n; i++)
        lat[i] = (node){0, -1, -1};
    lat[0].start = 0;
    size_t maxlen = inferd_vocab_max_token_bytes(u->vocab);
    double unk_score = u->min_score - UNK_PENALTY;
    for (size_t i = 0; i < n; i++) {
        if (lat[i].start < 0)
            continue; // cannot happen: every position is reachable through unknowns
        double base = lat[i].score;
        uint64_t h = INFERD_VOCAB_HASH_SEED;
        int single = 0;
        // Ends in increasing order, and strict improvement only, as HF's lattice does, so
        // ties keep the earlier start and the shorter piece.
        for (size_t e = i + 1; e <= n && at[e] - at[i] <= maxlen; e++) {
            h = inferd_vocab_hash(h, bytes + at[e - 1], at[e] - at[e - 1]);
            int32_t id = inferd_vocab_find_hashed(u->vocab, h, bytes + at[i], at[e] - at[i]);
            if (id < 0)
                continue;
            if (e == i + 1)
                single = 1;
            double sc = base + u->scores[id];
            if (lat[e].start < 0 || sc > lat[e].score)
                lat[e] = (node){sc, (int32_t)i, id};
        }
        if (!single) {
            double sc = base + unk_score;
            if (lat[i + 1].start < 0 || sc > lat[i + 1].score)
                lat[i + 1] = (node){sc, (int32_t)i, u->unk_id};
        }
    }
    // Walk back from the end, then emit forwards, fusing runs of unknown nodes.
    size_t np = 0;
    for (size_t e = n; e > 0; e = (size_t)lat[e].start)
        path[np++] = (int32_t)e;
    size_t prev = 0;
    size_t unk_from = SIZE_MAX;
    for (size_t k = np; k-- > 0;) {
        size_t e = (size_t)path[k];
        int32_t id = lat[e].id;
        if (id == u->unk_id) {
            if (unk_from == SIZE_MAX)
                unk_from = at[prev];
        } else {
            if (unk_from != SIZE_MAX) {
                emit_unk_run(u, bytes, unk_from, at[prev], out);
                unk_from = SIZE_MAX;
            }
            inferd_scratch_ids_push(out, id);
        }
        prev = e;
    }
    if (unk_from != SIZE_MAX)
        emit_unk_run(u, bytes, unk_from, at[n], out);
    return 0;
}
