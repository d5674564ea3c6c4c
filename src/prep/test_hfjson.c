/* test_hfjson.c: tokenizer.json components one at a time, on tiny inline files whose
 * expected ids are worked out by hand in the comments (Hugging Face's documented semantics).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "prep/hfjson.h"

/* Encodes text with the tokenizer.json in json and checks the ids, printing both on a
 * mismatch. */
static void expect_ids(const char *json, const char *text, const int32_t *want, size_t n_want) {
    inferd_tokenizer *t = NULL;
    inferd_error err = {0};
    int rc = inferd_hfjson_parse(json, strlen(json), NULL, &t, &err);
    if (rc)
        print_error("load: %s\n", err.msg);
    assert_int_equal(rc, 0);
    inferd_scratch *s;
    assert_int_equal(inferd_scratch_create(NULL, &s), 0);
    int32_t ids[64], types[64];
    size_t len = 0;
    rc = inferd_tokenizer_encode(t, s, text, strlen(text), 64, 1, ids, types, &len, NULL, &err);
    if (rc)
        print_error("encode: %s\n", err.msg);
    assert_int_equal(rc, 0);
    if (len != n_want) {
        for (size_t i = 0; i < len; i++)
            print_error("got[%zu] = %d\n", i, (int)ids[i]);
    }
    assert_int_equal(len, n_want);
    for (size_t i = 0; i < len; i++)
        assert_int_equal(ids[i], want[i]);
    inferd_scratch_destroy(s);
    inferd_tokenizer_destroy(t);
}

#define IDS(...) (const int32_t[]){__VA_ARGS__}, sizeof((const int32_t[]){__VA_ARGS__}) / 4

static void expect_error(const char *json, int code, const char *msg_part) {
    inferd_tokenizer *t = NULL;
    inferd_error err = {0};
    int rc = inferd_hfjson_parse(json, strlen(json), NULL, &t, &err);
    if (rc != code || !strstr(err.msg, msg_part))
        print_error("got %d \"%s\", wanted %d \"%s\"\n", rc, err.msg, code, msg_part);
    assert_int_equal(rc, code);
    assert_non_null(strstr(err.msg, msg_part));
    assert_null(t);
}

/* WordPiece over a vocab holding every piece whole, so each piece maps to one id. */
#define SPLIT_VOCAB                                                                                \
    "\"model\": {\"type\": \"WordPiece\", \"vocab\": {\"[UNK]\": 0, \"a\": 1, \"b\": 2, "          \
    "\"c\": 3, \"-\": 4, \"a-\": 5, \"-b\": 6, \"--\": 7, \"b-\": 8, \"-c\": 9}}"
#define SPLIT(behavior)                                                                            \
    "{\"pre_tokenizer\": {\"type\": \"Split\", \"pattern\": {\"String\": \"-\"}, "                 \
    "\"behavior\": \"" behavior "\"}, " SPLIT_VOCAB "}"

static void test_split_behaviors(void **state) {
    (void)state;
    // "a-b--c" is the spans a | - | b | - | - | c.
    expect_ids(SPLIT("Removed"), "a-b--c", IDS(1, 2, 3));
    expect_ids(SPLIT("Isolated"), "a-b--c", IDS(1, 4, 2, 4, 4, 3));
    // A delimiter joins the piece before it unless that piece was a delimiter too.
    expect_ids(SPLIT("MergedWithPrevious"), "a-b--c", IDS(5, 8, 4, 3));
    // ... or the piece after it, on the same rule read from the right.
    expect_ids(SPLIT("MergedWithNext"), "a-b--c", IDS(1, 6, 4, 9));
    expect_ids(SPLIT("Contiguous"), "a-b--c", IDS(1, 4, 2, 7, 3));
}

#define META(scheme)                                                                               \
    "{\"added_tokens\": [{\"id\": 50, \"content\": \"[M]\"}], \"pre_tokenizer\": {\"type\": "      \
    "\"Metaspace\", \"replacement\": \"\\u2581\", \"prepend_scheme\": \"" scheme "\", "            \
    "\"split\": true}, \"model\": {\"type\": \"WordPiece\", \"vocab\": {\"[UNK]\": 0, "            \
    "\"\\u2581a\": 1, \"\\u2581\": 2, \"\\u2581b\": 3, \"b\": 4, \"a\": 5}}}"

static void test_metaspace_prepend_schemes(void **state) {
    (void)state;
    // "a [M]b" splits into "a ", [M], "b" around the added token.
    expect_ids(META("always"), "a [M]b", IDS(1, 2, 50, 3));
    expect_ids(META("first"), "a [M]b", IDS(1, 2, 50, 4));
    expect_ids(META("never"), "a [M]b", IDS(5, 2, 50, 4));
}

#define BYTELEVEL(prefix)                                                                          \
    "{\"pre_tokenizer\": {\"type\": \"ByteLevel\", \"add_prefix_space\": " prefix "}, "            \
    "\"model\": {\"type\": \"BPE\", \"vocab\": {\"\\u0120\": 0, \"h\": 1, \"i\": 2, "              \
    "\"\\u0120h\": 3, \"\\u0120hi\": 4, \"\\u00c3\": 5, \"\\u00a9\": 6}, \"merges\": "             \
    "[\"\\u0120 h\", \"\\u0120h i\"]}}"

static void test_byte_level_prefix_space_and_bytes(void **state) {
    (void)state;
    expect_ids(BYTELEVEL("true"), "hi", IDS(4));
    expect_ids(BYTELEVEL("false"), "hi", IDS(1, 2));
    // U+00E9 is the bytes C3 A9, which map to the characters U+00C3 and U+00A9.
    expect_ids(BYTELEVEL("false"), "\xc3\xa9", IDS(5, 6));
}

static void test_bpe_prefix_suffix_unk_and_byte_fallback(void **state) {
    (void)state;
    // "abc" starts as a, ##b, ##c</w>; merging a + ##b gives "ab", then ab + ##c</w> gives
    // "abc</w>" (the continuation prefix is dropped from the right side of a merge).
    const char *ps = "{\"pre_tokenizer\": {\"type\": \"WhitespaceSplit\"}, \"model\": {\"type\": "
                     "\"BPE\", \"unk_token\": \"<unk>\", \"fuse_unk\": true, "
                     "\"continuing_subword_prefix\": \"##\", \"end_of_word_suffix\": \"</w>\", "
                     "\"vocab\": {\"<unk>\": 0, \"a\": 1, \"##b\": 2, \"##c</w>\": 3, \"ab\": 4, "
                     "\"abc</w>\": 5, \"a</w>\": 6}, \"merges\": [[\"a\", \"##b\"], [\"ab\", "
                     "\"##c</w>\"]]}}";
    expect_ids(ps, "abc a xyz", IDS(5, 6, 0));
    // Without fuse_unk each unknown character is its own <unk>.
    const char *nofuse = "{\"model\": {\"type\": \"BPE\", \"unk_token\": \"<unk>\", \"vocab\": "
                         "{\"<unk>\": 0, \"a\": 1}, \"merges\": []}}";
    expect_ids(nofuse, "xax", IDS(0, 1, 0));
    // byte_fallback: a character missing from the vocab becomes its UTF-8 bytes' tokens.
    const char *fb = "{\"model\": {\"type\": \"BPE\", \"byte_fallback\": true, \"vocab\": "
                     "{\"a\": 1, \"<0xC3>\": 2, \"<0xA9>\": 3}, \"merges\": []}}";
    expect_ids(fb, "a\xc3\xa9", IDS(1, 2, 3));
}

#define NORM(n)                                                                                    \
    "{\"normalizer\": " n ", \"pre_tokenizer\": {\"type\": \"WhitespaceSplit\"}, \"model\": "      \
    "{\"type\": \"WordPiece\", \"vocab\": {\"[UNK]\": 0, \"fi\": 1, \"i\\u0307\": 2, "             \
    "\"xcafe\": 3, \"caf\\u00e9\": 4, \"cafe\\u0301\": 5, \"cafe\": 6, \"x\": 7, \"y\": 8}}}"

static void test_normalizers(void **state) {
    (void)state;
    // NFKC turns the ligature U+FB01 into "fi".
    expect_ids(NORM("{\"type\": \"NFKC\"}"), "\xef\xac\x81", IDS(1));
    // Lowercase maps U+0130 to "i" + U+0307 (Unicode's full lowercase).
    expect_ids(NORM("{\"type\": \"Lowercase\"}"), "\xc4\xb0", IDS(2));
    // NFC composes e + U+0301 to U+00E9; NFD decomposes it back.
    expect_ids(NORM("{\"type\": \"NFC\"}"), "cafe\xcc\x81", IDS(4));
    expect_ids(NORM("{\"type\": \"NFD\"}"), "caf\xc3\xa9", IDS(5));
    expect_ids(NORM("{\"type\": \"Sequence\", \"normalizers\": [{\"type\": \"NFD\"}, {\"type\": "
                    "\"StripAccents\"}, {\"type\": \"Prepend\", \"prepend\": \"x\"}]}"),
               "caf\xc3\xa9", IDS(3));
    // "abab" -> "x yx y", split on the spaces: "x", "yx" (not in the vocab), "y".
    expect_ids(NORM("{\"type\": \"Replace\", \"pattern\": {\"String\": \"ab\"}, \"content\": "
                    "\"x y\"}"),
               "abab", IDS(7, 0, 8));
}

#define PRE(p)                                                                                     \
    "{\"pre_tokenizer\": " p ", \"model\": {\"type\": \"WordPiece\", \"vocab\": {\"[UNK]\": "      \
    "0, \"hello\": 1, \",\": 2, \"world\": 3, \"!!\": 4, \"!\": 5, \"a\": 6, \"1\": 7, \"2\": "    \
    "8, \"12\": 9}}}"

static void test_pre_tokenizers(void **state) {
    (void)state;
    // \w+|[^\w\s]+ keeps runs of word characters and runs of other characters.
    expect_ids(PRE("{\"type\": \"Whitespace\"}"), "hello, world!!", IDS(1, 2, 3, 4));
    expect_ids(PRE("{\"type\": \"BertPreTokenizer\"}"), "hello, world!!", IDS(1, 2, 3, 5, 5));
    expect_ids(PRE("{\"type\": \"Digits\", \"individual_digits\": true}"), "a12", IDS(6, 7, 8));
    expect_ids(PRE("{\"type\": \"Digits\", \"individual_digits\": false}"), "a12", IDS(6, 9));
}

static void test_added_tokens_and_templates(void **state) {
    (void)state;
    // single_word: "ab" only as a whole word; the "ab" inside "abc" is left to the model.
    const char *sw = "{\"added_tokens\": [{\"id\": 9, \"content\": \"ab\", \"single_word\": true}],"
                     " \"pre_tokenizer\": {\"type\": \"WhitespaceSplit\"}, \"model\": {\"type\": "
                     "\"WordPiece\", \"vocab\": {\"[UNK]\": 0, \"abc\": 1}}}";
    expect_ids(sw, "ab abc", IDS(9, 1));
    // lstrip/rstrip swallow the spaces around [M], so Metaspace sees "a" and "b".
    const char *strip =
        "{\"added_tokens\": [{\"id\": 50, \"content\": \"[M]\", \"lstrip\": true, \"rstrip\": "
        "true}], \"pre_tokenizer\": {\"type\": \"Metaspace\", \"prepend_scheme\": \"never\"}, "
        "\"model\": {\"type\": \"WordPiece\", \"vocab\": {\"[UNK]\": 0, \"a\": 1, \"b\": 2}}}";
    expect_ids(strip, "a [M] b", IDS(1, 50, 2));
    // TemplateProcessing with a two-id special token and RobertaProcessing's <s> ... </s>.
    const char *tp =
        "{\"post_processor\": {\"type\": \"TemplateProcessing\", \"single\": [{\"SpecialToken\": "
        "{\"id\": \"<b>\", \"type_id\": 0}}, {\"Sequence\": {\"id\": \"A\", \"type_id\": 1}}, "
        "{\"SpecialToken\": {\"id\": \"</b>\", \"type_id\": 1}}], \"special_tokens\": {\"<b>\": "
        "{\"id\": \"<b>\", \"ids\": [7, 8], \"tokens\": [\"<\", \"b\"]}, \"</b>\": {\"id\": "
        "\"</b>\", \"ids\": [9]}}}, \"model\": {\"type\": \"WordPiece\", \"vocab\": {\"[UNK]\": "
        "0, \"a\": 1}}}";
    expect_ids(tp, "a", IDS(7, 8, 1, 9));
    const char *rob = "{\"post_processor\": {\"type\": \"RobertaProcessing\", \"sep\": [\"</s>\", "
                      "2], \"cls\": [\"<s>\", 0]}, \"model\": {\"type\": \"WordPiece\", "
                      "\"vocab\": {\"[UNK]\": 3, \"a\": 1}}}";
    expect_ids(rob, "a", IDS(0, 1, 2));
}

static void test_unsupported_and_malformed_are_named(void **state) {
    (void)state;
    expect_error("{\"normalizer\": {\"type\": \"Precompiled\"}, \"model\": {\"type\": "
                 "\"WordPiece\", \"vocab\": {\"[UNK]\": 0}}}",
                 INFERD_EUNSUPPORTED, "unsupported normalizer \"Precompiled\"");
    expect_error("{\"pre_tokenizer\": {\"type\": \"Split\", \"pattern\": {\"Regex\": \"\\\\s+\"}},"
                 " \"model\": {\"type\": \"WordPiece\", \"vocab\": {\"[UNK]\": 0}}}",
                 INFERD_EUNSUPPORTED, "Regex pattern");
    expect_error("{\"pre_tokenizer\": {\"type\": \"UnicodeScripts\"}, \"model\": {\"type\": "
                 "\"WordPiece\", \"vocab\": {\"[UNK]\": 0}}}",
                 INFERD_EUNSUPPORTED, "unsupported pre_tokenizer \"UnicodeScripts\"");
    expect_error(
        "{\"model\": {\"type\": \"BPE\", \"dropout\": 0.1, \"vocab\": {}, \"merges\": []}}",
        INFERD_EUNSUPPORTED, "dropout");
    expect_error("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": [\"a b\"]}}",
                 INFERD_EINVAL, "merge 1 uses \"b\", which is not in the vocabulary");
    expect_error("{\"model\": {\"type\": \"WordPiece\", \"vocab\": {\"a\": 0}}}", INFERD_EINVAL,
                 "\"[UNK]\" is not in the vocabulary");
    expect_error("{\"model\": {\"type\": \"WordPiece\", \"vocab\": {\"[UNK]\": \"0\"}}}",
                 INFERD_EINVAL, "model.vocab[\"[UNK]\"] must be an integer id");
    expect_error("{\"model\": {\"type\": \"Unigram\", \"unk_id\": 5, \"vocab\": [[\"a\", -1]]}}",
                 INFERD_EINVAL, "unk_id 5 is not a piece");
    expect_error("[1, 2", INFERD_EINVAL, "tokenizer.json: line 1");
}

static void test_truncation_keeps_specials(void **state) {
    (void)state;
    const char *rob = "{\"pre_tokenizer\": {\"type\": \"WhitespaceSplit\"}, \"post_processor\": "
                      "{\"type\": \"BertProcessing\", \"sep\": [\"[SEP]\", 2], \"cls\": "
                      "[\"[CLS]\", 1]}, \"model\": {\"type\": \"WordPiece\", \"vocab\": "
                      "{\"[UNK]\": 0, \"a\": 5}}}";
    inferd_tokenizer *t;
    inferd_error err;
    assert_int_equal(inferd_hfjson_parse(rob, strlen(rob), NULL, &t, &err), 0);
    inferd_scratch *s;
    assert_int_equal(inferd_scratch_create(NULL, &s), 0);
    int32_t ids[4], types[4];
    size_t len;
    int trunc;
    assert_int_equal(
        inferd_tokenizer_encode(t, s, "a a a a a", 9, 4, 1, ids, types, &len, &trunc, &err), 0);
    assert_int_equal(len, 4);
    assert_int_equal(trunc, 1);
    assert_int_equal(ids[0], 1);
    assert_int_equal(ids[2], 5);
    assert_int_equal(ids[3], 2);
    assert_int_equal(
        inferd_tokenizer_encode(t, s, "a a a a a", 9, 4, 0, ids, types, &len, &trunc, &err),
        INFERD_ETOOLARGE);
    inferd_scratch_destroy(s);
    inferd_tokenizer_destroy(t);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_split_behaviors),
        cmocka_unit_test(test_metaspace_prepend_schemes),
        cmocka_unit_test(test_byte_level_prefix_space_and_bytes),
        cmocka_unit_test(test_bpe_prefix_suffix_unk_and_byte_fallback),
        cmocka_unit_test(test_normalizers),
        cmocka_unit_test(test_pre_tokenizers),
        cmocka_unit_test(test_added_tokens_and_templates),
        cmocka_unit_test(test_unsupported_and_malformed_are_named),
        cmocka_unit_test(test_truncation_keeps_specials),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
