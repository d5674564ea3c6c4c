/* chartok.h: the character model: one id per Unicode code point.
 *
 * A code point found in the optional vocabulary (a vocab whose entries are single
 * characters) gets its id; any other goes through the hash rule when one is configured, else
 * to the unknown id, else it is dropped. The hash rule is the peers' (and the benchmark's):
 * 32-bit FNV-1a over the code point's UTF-8 bytes, id = offset + hash % buckets
 * (../shared/peers/servers/chartok.py). No normalization happens here: the peers' rule
 * keeps every character, so a pipeline that wants one adds it in front.
 *
 * Immutable after create; safe from any number of threads at once.
 */
#ifndef INFERD_PREP_CHARTOK_H
#define INFERD_PREP_CHARTOK_H

#include "prep/scratch.h"
#include "prep/vocab.h"

typedef struct inferd_chartok inferd_chartok;

typedef struct inferd_chartok_options {
    int hash;         /* use the FNV-1a rule for characters not in the vocab */
    uint32_t offset;  /* hash rule: first id */
    uint32_t buckets; /* hash rule: number of ids (> 0) */
    int32_t unk_id;   /* without the hash rule: id for unknown characters, -1 to drop them */
} inferd_chartok_options;

/* Creates the model, taking ownership of vocab (may be NULL; destroyed here on failure).
 * Returns 0, INFERD_EINVAL (zero buckets, ids past INT32_MAX) or INFERD_EINTERNAL. */
int inferd_chartok_create(inferd_vocab *vocab, const inferd_chartok_options *opt,
                          inferd_mem_account *acct, inferd_chartok **out, inferd_error *err);

/* Frees the model and its vocab; NULL does nothing. */
void inferd_chartok_destroy(inferd_chartok *ct);

/* The vocab (owned by the model), or NULL. */
const inferd_vocab *inferd_chartok_vocab(const inferd_chartok *ct);

/* The peers' hash id of one code point (exposed for tests and tools). */
uint32_t inferd_chartok_hash_id(uint32_t cp, uint32_t offset, uint32_t buckets);

/* Appends one id per code point of cps[0..n) to out, stopping once out is full. */
void inferd_chartok_encode(const inferd_chartok *ct, const uint32_t *cps, size_t n,
                           inferd_scratch_ids *out);

#endif
