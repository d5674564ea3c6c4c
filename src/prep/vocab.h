/* vocab.h: token string -> id lookup for every tokenizer model.
 *
 * An open-addressing hash table over one block of string bytes, keyed by 64-bit FNV-1a.
 * The hash is exposed (inferd_vocab_hash) so WordPiece and Unigram can extend it one byte at
 * a time over a word's prefixes and probe each prefix without rehashing it: longest-match
 * search then costs O(word length x longest token) instead of a cube.
 *
 * A vocab is built once at load (not thread-safe while building) and is then immutable;
 * lookups are safe from any number of threads at once.
 */
#ifndef INFERD_PREP_VOCAB_H
#define INFERD_PREP_VOCAB_H

#include <stddef.h>
#include <stdint.h>

#include "util/alloc.h"
#include "util/error.h"

typedef struct inferd_vocab inferd_vocab;

#define INFERD_VOCAB_HASH_SEED 0xcbf29ce484222325ULL

/* Extends an FNV-1a hash (start from INFERD_VOCAB_HASH_SEED) over n more bytes. */
static inline uint64_t inferd_vocab_hash(uint64_t h, const char *s, size_t n) {
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

/* Creates an empty vocab charged to acct. Returns 0 or INFERD_EINTERNAL. Caller destroys. */
int inferd_vocab_create(inferd_mem_account *acct, inferd_vocab **out, inferd_error *err);

/* Frees v; NULL does nothing. */
void inferd_vocab_destroy(inferd_vocab *v);

/* Maps the n bytes at tok to id (>= 0), replacing an earlier mapping of the same string (as a
 * Python dict does when vocab.txt repeats a line). Tokens are bytes; they need not be UTF-8.
 * Returns 0, INFERD_EINVAL for a negative id or a token over 64 KiB, or INFERD_EINTERNAL. */
int inferd_vocab_set(inferd_vocab *v, const char *tok, size_t n, int32_t id, inferd_error *err);

/* Loads a BERT vocab.txt: line i (from 0) is the token with id i, surrounding ASCII
 * whitespace stripped as BERT's load_vocab does. Fails with INFERD_EINVAL naming the line if
 * it is not UTF-8, INFERD_ENOTFOUND if the file cannot be opened. */
int inferd_vocab_load_txt(const char *path, inferd_mem_account *acct, inferd_vocab **out,
                          inferd_error *err);

/* The id of the n bytes at tok, or -1. */
int32_t inferd_vocab_find(const inferd_vocab *v, const char *tok, size_t n);

/* As inferd_vocab_find, with h = inferd_vocab_hash(INFERD_VOCAB_HASH_SEED, tok, n) given. */
int32_t inferd_vocab_find_hashed(const inferd_vocab *v, uint64_t h, const char *tok, size_t n);

/* Number of distinct token strings. */
size_t inferd_vocab_count(const inferd_vocab *v);

/* Largest id mapped, or -1 when empty. */
int32_t inferd_vocab_max_id(const inferd_vocab *v);

/* Length in bytes of the longest token (bounds longest-match searches). */
size_t inferd_vocab_max_token_bytes(const inferd_vocab *v);

/* The string of some token mapped to id (n set to its length), or NULL when none is. */
const char *inferd_vocab_token(const inferd_vocab *v, int32_t id, size_t *n);

#endif
