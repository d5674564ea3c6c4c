/* hfjson.h: reads a Hugging Face tokenizer.json into an inferd_tokenizer.
 *
 * Supported: models WordPiece, BPE (merges as "a b" strings or ["a", "b"] pairs,
 * continuing_subword_prefix, end_of_word_suffix, unk_token, fuse_unk, byte_fallback,
 * ignore_merges) and Unigram; normalizers Lowercase, NFD, NFC, NFKD, NFKC, StripAccents,
 * BertNormalizer, Strip, Replace and Prepend with String patterns, Sequence; pre-tokenizers
 * BertPreTokenizer, Whitespace, WhitespaceSplit, Punctuation, ByteLevel, Metaspace, Digits,
 * Split with a String pattern, CharDelimiterSplit, Sequence; post-processors
 * TemplateProcessing (its single template), BertProcessing, RobertaProcessing, ByteLevel,
 * Sequence; added_tokens (matched in the raw text before normalization, whatever their
 * "normalized" flag); padding.pad_id. The decoder, truncation and padding strategy are
 * ignored: pipeline.json decides those. Anything else fails to load with
 * INFERD_EUNSUPPORTED naming it (Regex patterns, Precompiled, BPE dropout...), and malformed
 * input with INFERD_EINVAL naming the key.
 *
 * Loading runs once per model version on a loader thread; the result is an immutable
 * tokenizer (tokenizer.h) charged to acct.
 */
#ifndef INFERD_PREP_HFJSON_H
#define INFERD_PREP_HFJSON_H

#include "prep/tokenizer.h"

/* Loads the file at path. Returns 0, INFERD_ENOTFOUND, INFERD_EINVAL, INFERD_EUNSUPPORTED or
 * INFERD_EINTERNAL; the caller destroys *out. */
int inferd_hfjson_load(const char *path, inferd_mem_account *acct, inferd_tokenizer **out,
                       inferd_error *err);

/* The same from n bytes in memory (need not be NUL-terminated). */
int inferd_hfjson_parse(const char *json, size_t n, inferd_mem_account *acct,
                        inferd_tokenizer **out, inferd_error *err);

#endif
