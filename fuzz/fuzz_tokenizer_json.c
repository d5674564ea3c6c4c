/* fuzz_tokenizer_json.c: loads arbitrary bytes as a Hugging Face tokenizer.json and, if they
 * load, tokenizes text with it. Input: JSON, optionally followed by a NUL byte and the text
 * to tokenize; without a NUL the input itself is tokenized too (mostly invalid UTF-8 then,
 * which must fail cleanly). */
#include <stdint.h>
#include <string.h>

#include "prep/hfjson.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *json = (const char *)data;
    const uint8_t *nul = memchr(data, 0, size);
    size_t json_len = nul ? (size_t)(nul - data) : size;
    const char *text = nul ? (const char *)nul + 1 : json;
    size_t text_len = nul ? size - json_len - 1 : size;
    inferd_tokenizer *t = NULL;
    inferd_error err;
    if (inferd_hfjson_parse(json, json_len, NULL, &t, &err) != 0)
        return 0;
    inferd_scratch *s;
    if (inferd_scratch_create(NULL, &s) == 0) {
        int32_t ids[64], types[64];
        size_t len;
        int trunc;
        static const char *samples[] = {"Hello, world! It's 2024.", "中文 mixed ÉCOLE 😀", ""};
        for (size_t k = 0; k < 3; k++)
            inferd_tokenizer_encode(t, s, samples[k], strlen(samples[k]), 64, 1, ids, types, &len,
                                    &trunc, &err);
        if (inferd_tokenizer_num_special(t) < 64)
            inferd_tokenizer_encode(t, s, text, text_len, 64, 1, ids, types, &len, &trunc, &err);
        inferd_scratch_destroy(s);
    }
    inferd_tokenizer_destroy(t);
    return 0;
}
