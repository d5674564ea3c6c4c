/* fuzz_tokenize.c: arbitrary bytes as request text through each model family (BERT
 * WordPiece, byte-level BPE, Metaspace + Unigram, built from small inline tokenizer.json
 * files) with a small max_length, so truncation, invalid UTF-8 and odd Unicode all run. */
#include <stdint.h>
#include <string.h>

#include "prep/hfjson.h"

static const char *const specs[] = {
    "{\"normalizer\": {\"type\": \"BertNormalizer\"}, \"pre_tokenizer\": {\"type\": "
    "\"BertPreTokenizer\"}, \"post_processor\": {\"type\": \"BertProcessing\", \"sep\": "
    "[\"[SEP]\", 3], \"cls\": [\"[CLS]\", 2]}, \"model\": {\"type\": \"WordPiece\", \"vocab\": "
    "{\"[UNK]\": 0, \"[CLS]\": 2, \"[SEP]\": 3, \"a\": 4, \"##a\": 5, \"ab\": 6, \"##b\": 7, "
    "\"中\": 8, \",\": 9}}}",
    "{\"added_tokens\": [{\"id\": 9, \"content\": \"<|e|>\"}], \"pre_tokenizer\": {\"type\": "
    "\"ByteLevel\", \"add_prefix_space\": true}, \"model\": {\"type\": \"BPE\", \"vocab\": "
    "{\"a\": 0, \"b\": 1, \"\\u0120\": 2, \"ab\": 3, \"\\u0120a\": 4, \"\\u0120ab\": 5}, "
    "\"merges\": [\"a b\", \"\\u0120 a\", \"\\u0120a b\"]}}",
    "{\"normalizer\": {\"type\": \"Sequence\", \"normalizers\": [{\"type\": \"NFKC\"}, "
    "{\"type\": \"Replace\", \"pattern\": {\"String\": \"  \"}, \"content\": \" \"}]}, "
    "\"pre_tokenizer\": {\"type\": \"Metaspace\", \"prepend_scheme\": \"first\"}, \"model\": "
    "{\"type\": \"Unigram\", \"unk_id\": 0, \"byte_fallback\": true, \"vocab\": [[\"<unk>\", "
    "0], [\"\\u2581\", -1], [\"a\", -2], [\"ab\", -2.5], [\"<0x41>\", -9]]}}",
    "{\"normalizer\": {\"type\": \"Lowercase\"}, \"pre_tokenizer\": {\"type\": \"Sequence\", "
    "\"pretokenizers\": [{\"type\": \"Whitespace\"}, {\"type\": \"Digits\", "
    "\"individual_digits\": true}, {\"type\": \"Split\", \"pattern\": {\"String\": \"-\"}, "
    "\"behavior\": \"MergedWithNext\"}]}, \"model\": {\"type\": \"BPE\", \"unk_token\": "
    "\"?\", \"fuse_unk\": true, \"continuing_subword_prefix\": \"##\", \"end_of_word_suffix\": "
    "\"</w>\", \"vocab\": {\"?\": 0, \"a\": 1, \"##b</w>\": 2, \"ab</w>\": 3}, \"merges\": "
    "[[\"a\", \"##b</w>\"]]}}",
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static inferd_tokenizer *toks[4];
    static inferd_scratch *s;
    if (!s) {
        inferd_error err;
        for (int i = 0; i < 4; i++)
            if (inferd_hfjson_parse(specs[i], strlen(specs[i]), NULL, &toks[i], &err) != 0)
                __builtin_trap(); // the built-in specs must load
        if (inferd_scratch_create(NULL, &s) != 0)
            return 0;
    }
    int32_t ids[16], types[16];
    size_t len;
    int trunc;
    inferd_error err;
    for (int i = 0; i < 4; i++)
        inferd_tokenizer_encode(toks[i], s, (const char *)data, size, 16, 1, ids, types, &len,
                                &trunc, &err);
    return 0;
}
