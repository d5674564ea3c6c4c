#include "prep/chartok.h"

#include "prep/unicode.h"

struct inferd_chartok {
    inferd_vocab *vocab;
    inferd_chartok_options opt;
};

int inferd_chartok_create(inferd_vocab *vocab, const inferd_chartok_options *opt,
                          inferd_mem_account *acct, inferd_chartok **out, inferd_error *err) {
    if (opt->hash && (opt->buckets == 0 || (uint64_t)opt->offset + opt->buckets > INT32_MAX)) {
        inferd_vocab_destroy(vocab);
        return inferd_error_set(err, INFERD_EINVAL,
                                "hash buckets must be > 0 and offset + buckets <= 2^31 - 1");
    }
    inferd_chartok *ct = inferd_calloc(acct, 1, sizeof *ct);
    if (!ct) {
        inferd_vocab_destroy(vocab);
        return inferd_error_set(err, INFERD_EINTERNAL, "out of memory for a char tokenizer");
    }
    ct->vocab = vocab;
    ct->opt = *opt;
    *out = ct;
    return 0;
}

void inferd_chartok_destroy(inferd_chartok *ct) {
    if (!ct)
        return;
    inferd_vocab_destroy(ct->vocab);
    inferd_free(ct);
}

const inferd_vocab *inferd_chartok_vocab(const inferd_chartok *ct) { return ct->vocab; }

uint32_t inferd_chartok_hash_id(uint32_t cp, uint32_t offset, uint32_t buckets) {
    char b[4];
    size_t k = inferd_unicode_encode(cp, b);
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < k; i++) {
        h ^= (unsigned char)b[i];
        h *= 16777619u;
    }
    return offset + h % buckets;
}

void inferd_chartok_encode(const inferd_chartok *ct, const uint32_t *cps, size_t n,
                           inferd_scratch_ids *out) {
    for (size_t i = 0; i < n && !inferd_scratch_ids_full(out); i++) {
        int32_t id = -1;
        if (ct->vocab) {
            char b[4];
            size_t k = inferd_unicode_encode(cps[i], b);
            id = inferd_vocab_find(ct->vocab, b, k);
        }
        if (id < 0 && ct->opt.hash)
            id = (int32_t)inferd_chartok_hash_id(cps[i], ct->opt.offset, ct->opt.buckets);
        if (id < 0)
            id = ct->opt.unk_id;
        if (id >= 0)
            inferd_scratch_ids_push(out, id);
    }
}
