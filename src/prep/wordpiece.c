#include "prep/wordpiece.h"

#include <string.h>

#include "prep/unicode.h"

struct inferd_wordpiece {
    inferd_vocab *vocab;
    char prefix[32];
    size_t prefix_len;
    uint64_t prefix_hash;
    int32_t unk_id;
    size_t max_chars;
    size_t max_token; /* longest vocab entry in bytes */
};

int inferd_wordpiece_create(inferd_vocab *vocab, const char *prefix, const char *unk,
                            size_t max_chars, inferd_mem_account *acct, inferd_wordpiece **out,
                            inferd_error *err) {
    size_t plen = strlen(prefix);
    if (plen >= sizeof((inferd_wordpiece *)0)->prefix) {
        inferd_vocab_destroy(vocab);
        return inferd_error_set(err, INFERD_EINVAL, "continuing_subword_prefix is too long");
    }
    int32_t unk_id = inferd_vocab_find(vocab, unk, strlen(unk));
    if (unk_id < 0) {
        inferd_vocab_destroy(vocab);
        return inferd_error_set(err, INFERD_EINVAL,
                                "unknown token \"%.64s\" is not in the vocabulary", unk);
    }
    inferd_wordpiece *wp = inferd_calloc(acct, 1, sizeof *wp);
    if (!wp) {
        inferd_vocab_destroy(vocab);
        return inferd_error_set(err, INFERD_EINTERNAL, "out of memory for a WordPiece model");
    }
    wp->vocab = vocab;
    memcpy(wp->prefix, prefix, plen);
    wp->prefix_len = plen;
    wp->prefix_hash = inferd_vocab_hash(INFERD_VOCAB_HASH_SEED, prefix, plen);
    wp->unk_id = unk_id;
    wp->max_chars = max_chars;
    wp->max_token = inferd_vocab_max_token_bytes(vocab);
    *out = wp;
    return 0;
}

void inferd_wordpiece_destroy(inferd_wordpiece *wp) {
    if (!wp)
        return;
    inferd_vocab_destroy(wp->vocab);
    inferd_free(wp);
}

const inferd_vocab *inferd_wordpiece_vocab(const inferd_wordpiece *wp) { return wp->vocab; }

int inferd_wordpiece_encode(const inferd_wordpiece *wp, inferd_scratch *s, const uint32_t *cps,
                            size_t n, inferd_scratch_ids *out, inferd_error *err) {
    if (n == 0)
        return 0;
    if (n > wp->max_chars) {
        inferd_scratch_ids_push(out, wp->unk_id);
        return 0;
    }
    // The word as UTF-8 after room for the prefix, and the byte offset of each character, so
    // a continuation candidate is the contiguous bytes prefix + word[start..end).
    size_t room = wp->prefix_len;
    char *bytes = inferd_scratch_get(s, INFERD_SCRATCH_SLOT_BYTES, room + 4 * n + 1);
    uint32_t *at = inferd_scratch_get(s, INFERD_SCRATCH_SLOT_MODEL_A, (n + 1) * sizeof *at);
    int32_t *ids = inferd_scratch_get(s, INFERD_SCRATCH_SLOT_MODEL_B, n * sizeof *ids);
    if (!bytes || !at || !ids)
        return inferd_error_set(err, INFERD_EINTERNAL, "out of memory in WordPiece");
    char *w = bytes + room;
    size_t nb = 0;
    for (size_t i = 0; i < n; i++) {
        at[i] = (uint32_t)nb;
        nb += inferd_unicode_encode(cps[i], w + nb);
    }
    at[n] = (uint32_t)nb;
    size_t n_ids = 0, start = 0;
    while (start < n) {
        size_t plen = start > 0 ? wp->prefix_len : 0;
        char *cand = w + at[start] - plen;
        char saved[32];
        memcpy(saved, cand, plen); // the prefix overwrites the bytes before start
        memcpy(cand, wp->prefix, plen);
        uint64_t h = start > 0 ? wp->prefix_hash : INFERD_VOCAB_HASH_SEED;
        // Hash every candidate end once, remembering the longest that is in the vocabulary.
        int32_t best = -1;
        size_t best_end = 0;
        for (size_t end = start + 1; end <= n; end++) {
            size_t len = plen + at[end] - at[start];
            if (len > wp->max_token)
                break;
            h = inferd_vocab_hash(h, w + at[end - 1], at[end] - at[end - 1]);
            int32_t id = inferd_vocab_find_hashed(wp->vocab, h, cand, len);
            if (id >= 0) {
                best = id;
                best_end = end;
            }
        }
        memcpy(cand, saved, plen);
        if (best < 0) {
            inferd_scratch_ids_push(out, wp->unk_id);
            return 0;
        }
        ids[n_ids++] = best;
        start = best_end;
    }
    for (size_t i = 0; i < n_ids; i++)
        inferd_scratch_ids_push(out, ids[i]);
    return 0;
}
