/* test_pipeline.c: pipeline.json validation, path confinement, model checks, assembly and
 * postprocessing. Expected values are worked out by hand in the comments. */
#include <math.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "prep/pipeline.h"
#include "prep/unicode.h"

#define FIX "tests/fixtures/tokenizer/"

static char dir[64];

static void write_file(const char *name, const char *text) {
    char path[256];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static int setup(void **state) {
    (void)state;
    strcpy(dir, "/tmp/inferd_pipe_testXXXXXX");
    assert_non_null(mkdtemp(dir));
    char cmd[256];
    snprintf(cmd, sizeof cmd, "cp " FIX "wordpiece_vocab.txt %s/vocab.txt", dir);
    assert_int_equal(system(cmd), 0);
    write_file("labels.txt", "negative\nneutral\r\npositive\n\n\n");
    return 0;
}

static int teardown(void **state) {
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    return system(cmd);
}

/* Loads json as pipeline.json; returns the code and leaves the message in err. */
static int load(const char *json, const inferd_pipeline_model *m, inferd_pipeline **p,
                inferd_error *err) {
    write_file("pipeline.json", json);
    *p = NULL;
    memset(err, 0, sizeof *err);
    return inferd_pipeline_load(dir, m, NULL, p, err);
}

static void expect_error(const char *json, int code, const char *msg_part) {
    inferd_pipeline *p;
    inferd_error err;
    int rc = load(json, NULL, &p, &err);
    if (rc != code || !strstr(err.msg, msg_part))
        print_error("got \"%s\", wanted \"%s\"\n", err.msg, msg_part);
    assert_int_equal(rc, code);
    assert_non_null(strstr(err.msg, msg_part));
    assert_null(p);
}

#define WP "{\"type\": \"wordpiece\", \"vocab\": \"vocab.txt\"}"
#define BASE_TAIL "\"inputs\": {\"input_ids\": \"ids\"}, \"output\": \"logits\""

static void test_rejects_unknown_and_mistyped_keys(void **state) {
    (void)state;
    expect_error("{\"tokenizer\": " WP ", \"max_length\": 8, \"maxlen\": 3, " BASE_TAIL "}",
                 INFERD_EINVAL, "unknown key \"maxlen\" in the top level");
    expect_error("{\"tokenizer\": {\"type\": \"wordpiece\", \"vocab\": \"vocab.txt\", \"lower\": "
                 "true}, \"max_length\": 8, " BASE_TAIL "}",
                 INFERD_EINVAL, "unknown key \"lower\" in tokenizer");
    expect_error("{\"tokenizer\": " WP ", \"max_length\": \"8\", " BASE_TAIL "}", INFERD_EINVAL,
                 "max_length must be an integer");
    expect_error("{\"tokenizer\": " WP ", \"max_length\": 8, \"truncation\": 1, " BASE_TAIL "}",
                 INFERD_EINVAL, "truncation must be true or false");
    expect_error("{\"tokenizer\": " WP ", \"max_length\": 8, \"output\": \"logits\"}",
                 INFERD_EINVAL, "inputs must be an object");
    expect_error("{\"tokenizer\": {\"type\": \"sentencepiece\"}, \"max_length\": 8, " BASE_TAIL "}",
                 INFERD_EINVAL, "tokenizer.type must be");
    expect_error("{\"tokenizer\": " WP ", \"max_length\": 2, " BASE_TAIL "}", INFERD_EINVAL,
                 "leaves no room");
    expect_error("{\"tokenizer\": " WP ", \"max_length\": 8, " BASE_TAIL
                 ", \"postprocess\": {\"function\": \"softmax\", \"threshold\": 0.5}}",
                 INFERD_EINVAL, "threshold (multi-label) needs");
    expect_error("not json", INFERD_EINVAL, "pipeline.json: line 1");
}

static void test_paths_stay_inside_the_version_folder(void **state) {
    (void)state;
    expect_error("{\"tokenizer\": {\"type\": \"wordpiece\", \"vocab\": \"/etc/passwd\"}, "
                 "\"max_length\": 8, " BASE_TAIL "}",
                 INFERD_EINVAL, "must be a path inside the version folder");
    expect_error("{\"tokenizer\": {\"type\": \"wordpiece\", \"vocab\": \"../vocab.txt\"}, "
                 "\"max_length\": 8, " BASE_TAIL "}",
                 INFERD_EINVAL, "must not contain \"..\"");
    char link[128];
    snprintf(link, sizeof link, "%s/escape.txt", dir);
    assert_int_equal(symlink("/etc/hostname", link), 0);
    expect_error("{\"tokenizer\": {\"type\": \"wordpiece\", \"vocab\": \"escape.txt\"}, "
                 "\"max_length\": 8, " BASE_TAIL "}",
                 INFERD_EINVAL, "leads outside the version folder");
    expect_error("{\"tokenizer\": {\"type\": \"wordpiece\", \"vocab\": \"missing.txt\"}, "
                 "\"max_length\": 8, " BASE_TAIL "}",
                 INFERD_ENOTFOUND, "does not exist");
}

static const inferd_tensor_desc bert_in[] = {
    {"ids", INFERD_DTYPE_I64, 2, {-1, -1}},
    {"mask", INFERD_DTYPE_I32, 2, {-1, -1}},
    {"types", INFERD_DTYPE_I64, 2, {-1, -1}},
};
static const inferd_tensor_desc bert_out[] = {{"logits", INFERD_DTYPE_F32, 2, {-1, 3}}};

#define FULL                                                                                       \
    "{\"tokenizer\": " WP ", \"max_length\": 8, \"inputs\": {\"input_ids\": \"ids\", "             \
    "\"attention_mask\": \"mask\", \"token_type_ids\": \"types\"}, \"output\": \"logits\", "       \
    "\"postprocess\": {\"function\": \"softmax\", \"top_k\": 2, \"labels\": \"labels.txt\"}}"

static void test_model_mismatches_fail_with_reason(void **state) {
    (void)state;
    inferd_pipeline *p;
    inferd_error err;
    inferd_pipeline_model m = {bert_in, 3, bert_out, 1};
    assert_int_equal(load(FULL, &m, &p, &err), 0);
    inferd_pipeline_destroy(p);

    inferd_tensor_desc in[3];
    memcpy(in, bert_in, sizeof in);
    in[1].dtype = INFERD_DTYPE_F32;
    m.inputs = in;
    assert_int_equal(load(FULL, &m, &p, &err), INFERD_EINVAL);
    assert_string_equal(err.msg, "pipeline.json: model input \"mask\" is float; token inputs "
                                 "must be int64 or int32");
    memcpy(in, bert_in, sizeof in);
    in[2].name = "segment_ids";
    assert_int_equal(load(FULL, &m, &p, &err), INFERD_EINVAL);
    assert_non_null(strstr(err.msg, "\"types\", which the model does not have"));

    // Only two inputs fed, three expected.
    m.inputs = bert_in;
    assert_int_equal(load("{\"tokenizer\": " WP ", \"max_length\": 8, \"inputs\": "
                          "{\"input_ids\": \"ids\", \"attention_mask\": \"mask\"}, \"output\": "
                          "\"logits\"}",
                          &m, &p, &err),
                     INFERD_EINVAL);
    assert_non_null(strstr(err.msg, "model input \"types\" is not fed"));

    inferd_tensor_desc out = {"logits", INFERD_DTYPE_F32, 2, {-1, 4}};
    m.outputs = &out;
    assert_int_equal(load(FULL, &m, &p, &err), INFERD_EINVAL);
    assert_non_null(strstr(err.msg, "has 4 classes but the labels file has 3"));

    // A fixed sequence length shorter than max_length cannot hold every encoding.
    memcpy(in, bert_in, sizeof in);
    in[0].dims[1] = in[1].dims[1] = in[2].dims[1] = 4;
    m.inputs = in;
    m.outputs = bert_out;
    assert_int_equal(load(FULL, &m, &p, &err), INFERD_EINVAL);
    assert_non_null(strstr(err.msg, "max_length 8 exceeds"));
}

static void test_encode_assemble_postprocess(void **state) {
    (void)state;
    inferd_pipeline *p;
    inferd_error err;
    inferd_pipeline_model m = {bert_in, 3, bert_out, 1};
    assert_int_equal(load(FULL, &m, &p, &err), 0);
    assert_int_equal(inferd_pipeline_max_length(p), 8);
    assert_int_equal(inferd_pipeline_input_count(p), 3);
    assert_string_equal(inferd_pipeline_input_name(p, 1), "mask");
    assert_int_equal(inferd_pipeline_input_dtype(p, 1), INFERD_DTYPE_I32);
    inferd_scratch *s;
    assert_int_equal(inferd_scratch_create(NULL, &s), 0);
    int32_t ids[2][8], types[2][8];
    inferd_encoding e[2] = {{ids[0], types[0], 0, 0}, {ids[1], types[1], 0, 0}};
    // vocab.txt: [PAD]=0 [CLS]=2 [SEP]=3 the=5 quick=6 brown=7 fox=8 hello=13 world=14.
    assert_int_equal(inferd_pipeline_encode(p, s, "Hello world", 11, 0, &e[0], &err), 0);
    assert_int_equal(e[0].len, 4);
    assert_int_equal(e[0].truncated, 0);
    // 8 tokens in all: [CLS] + the first 6 words + [SEP]; the seventh, "brown", is cut.
    const char *longer = "the quick brown fox the quick brown";
    assert_int_equal(inferd_pipeline_encode(p, s, longer, strlen(longer), 1, &e[1], &err), 0);
    assert_int_equal(e[1].len, 8);
    assert_int_equal(e[1].truncated, 1);
    assert_int_equal(ids[1][6], 6); /* quick */
    assert_int_equal(ids[1][7], 3);

    int64_t L = inferd_pipeline_batch_length(p, e, 2);
    assert_int_equal(L, 8);
    int64_t bid[16], btypes[16];
    int32_t bmask[16];
    inferd_tensor t[3] = {{.data = bid, .nbytes = sizeof bid},
                          {.data = bmask, .nbytes = sizeof bmask},
                          {.data = btypes, .nbytes = sizeof btypes}};
    assert_int_equal(inferd_pipeline_assemble(p, e, 2, L, t, &err), 0);
    assert_int_equal(t[0].dtype, INFERD_DTYPE_I64);
    assert_int_equal(t[1].dtype, INFERD_DTYPE_I32);
    assert_int_equal(t[0].dims[0], 2);
    assert_int_equal(t[0].dims[1], 8);
    const int64_t want_ids[8] = {2, 13, 14, 3, 0, 0, 0, 0};
    const int32_t want_mask[8] = {1, 1, 1, 1, 0, 0, 0, 0};
    for (int j = 0; j < 8; j++) {
        assert_int_equal(bid[j], want_ids[j]);
        assert_int_equal(bmask[j], want_mask[j]);
        assert_int_equal(bmask[8 + j], 1);
        assert_int_equal(btypes[j], 0);
    }
    // A buffer too small is refused, not overrun.
    t[2].nbytes = 8;
    assert_int_equal(inferd_pipeline_assemble(p, e, 2, L, t, &err), INFERD_EINVAL);
    assert_int_equal(inferd_pipeline_assemble(p, e, 2, 4, t, &err), INFERD_EINVAL);

    // softmax([1, 3, 2]) = [0.0900, 0.6652, 0.2447]; top 2 = positive, then neutral... by
    // index: neutral (1) = 0.6652, positive (2) = 0.2447.
    const float row[3] = {1, 3, 2};
    inferd_pipeline_score out[4];
    size_t n;
    assert_int_equal(inferd_pipeline_postprocess(p, row, 3, out, 4, &n, &err), 0);
    assert_int_equal(n, 2);
    assert_int_equal(out[0].index, 1);
    assert_string_equal(out[0].label, "neutral");
    assert_float_equal(out[0].score, 0.66524096f, 1e-5);
    assert_int_equal(out[1].index, 2);
    assert_float_equal(out[1].score, 0.24472847f, 1e-5);
    assert_int_equal(inferd_pipeline_postprocess(p, row, 4, out, 4, &n, &err), INFERD_EINVAL);
    // The best class is the first of the top k, with the same score.
    inferd_pipeline_score best;
    assert_int_equal(inferd_pipeline_best(p, row, 3, &best, &err), 0);
    assert_int_equal(best.index, 1);
    assert_string_equal(best.label, "neutral");
    assert_float_equal(best.score, out[0].score, 1e-7);
    assert_int_equal(inferd_pipeline_best(p, row, 4, &best, &err), INFERD_EINVAL);
    assert_int_equal(inferd_pipeline_top_k(p), 2);
    assert_int_equal(inferd_pipeline_multi_label(p), 0);
    assert_int_equal(inferd_pipeline_label_count(p), 3);
    assert_int_equal(inferd_pipeline_pad_id(p), 0);

    // Invalid UTF-8 names the item and the byte.
    assert_int_equal(inferd_pipeline_encode(p, s, "ok\xff", 3, 7, &e[0], &err), INFERD_EINVAL);
    assert_string_equal(err.msg, "text item 7 is not valid UTF-8 (byte offset 2)");
    inferd_scratch_destroy(s);
    inferd_pipeline_destroy(p);
}

static void test_multilabel_threshold_and_no_truncation(void **state) {
    (void)state;
    inferd_pipeline *p;
    inferd_error err;
    assert_int_equal(load("{\"tokenizer\": " WP ", \"max_length\": 4, \"truncation\": false, "
                          "\"padding\": \"max_length\", " BASE_TAIL ", \"postprocess\": "
                          "{\"function\": \"sigmoid\", \"threshold\": 0.5}}",
                          NULL, &p, &err),
                     0);
    // sigmoid(0) = 0.5 (kept: >= threshold), sigmoid(2) = 0.8808, sigmoid(-1) = 0.2689.
    const float row[4] = {0, 2, -1, 0.1f};
    inferd_pipeline_score out[4];
    size_t n;
    assert_int_equal(inferd_pipeline_postprocess(p, row, 4, out, 4, &n, &err), 0);
    assert_int_equal(n, 3);
    assert_int_equal(out[0].index, 1);
    assert_float_equal(out[0].score, 0.88079708f, 1e-5);
    assert_int_equal(out[1].index, 3);
    assert_int_equal(out[2].index, 0);
    assert_null(out[0].label);
    // The best guess ignores the threshold and top_k: class 1 with its sigmoid score.
    const float low[4] = {0, 2, -1, 0.1f};
    inferd_pipeline_score best;
    assert_int_equal(inferd_pipeline_best(p, low, 4, &best, &err), 0);
    assert_int_equal(best.index, 1);
    assert_float_equal(best.score, 0.88079708f, 1e-6);
    assert_int_equal(inferd_pipeline_multi_label(p), 1);
    assert_int_equal(inferd_pipeline_top_k(p), 0);
    assert_int_equal(inferd_pipeline_label_count(p), 0);
    char buf[16];
    assert_string_equal(inferd_pipeline_label_text(p, 3, buf), "3");

    inferd_scratch *s;
    assert_int_equal(inferd_scratch_create(NULL, &s), 0);
    int32_t ids[4], types[4];
    inferd_encoding e = {ids, types, 0, 0};
    assert_int_equal(inferd_pipeline_encode(p, s, "the fox", 7, 0, &e, &err), 0);
    assert_int_equal(inferd_pipeline_batch_length(p, &e, 1), 4);
    assert_int_equal(inferd_pipeline_encode(p, s, "the quick fox", 13, 5, &e, &err),
                     INFERD_ETOOLARGE);
    assert_non_null(strstr(err.msg, "text item 5"));
    inferd_scratch_destroy(s);
    inferd_pipeline_destroy(p);
}

static void test_utf8_validation_offsets(void **state) {
    (void)state;
    size_t off = 99;
    assert_int_equal(inferd_unicode_validate("abc", 3, &off), 0);
    assert_int_equal(inferd_unicode_validate("ab\xc0\xaf", 4, &off), -1); // overlong '/'
    assert_int_equal(off, 2);
    assert_int_equal(inferd_unicode_validate("0123456789\xed\xa0\x80", 13, &off), -1);
    assert_int_equal(off, 10);                                                  // a surrogate
    assert_int_equal(inferd_unicode_validate("\xf4\x90\x80\x80", 4, &off), -1); // > U+10FFFF
    assert_int_equal(off, 0);
    assert_int_equal(inferd_unicode_validate("\xe4\xb8", 2, &off), -1); // truncated
    assert_int_equal(off, 0);
    assert_int_equal(inferd_unicode_validate("\xf0\x9f\x98\x80", 4, &off), 0);
}

static void test_load_charges_and_releases_memory(void **state) {
    (void)state;
    inferd_mem_account acct;
    inferd_mem_account_init(&acct);
    write_file("pipeline.json", FULL);
    inferd_pipeline *p = NULL;
    inferd_error err;
    assert_int_equal(inferd_pipeline_load(dir, NULL, &acct, &p, &err), 0);
    assert_true(inferd_mem_account_bytes(&acct) > 0);
    inferd_pipeline_destroy(p);
    assert_int_equal(inferd_mem_account_bytes(&acct), 0);
    // Every allocation failure on the load path returns an error and leaks nothing.
    long before = inferd_alloc_count();
    assert_int_equal(inferd_pipeline_load(dir, NULL, &acct, &p, &err), 0);
    long total = inferd_alloc_count() - before;
    inferd_pipeline_destroy(p);
    for (long k = 1; k <= total; k++) {
        inferd_alloc_fail_after(k);
        p = NULL;
        int rc = inferd_pipeline_load(dir, NULL, &acct, &p, &err);
        inferd_alloc_fail_after(0);
        if (rc == 0)
            inferd_pipeline_destroy(p);
        else
            assert_int_equal(rc, INFERD_EINTERNAL);
        assert_int_equal(inferd_mem_account_bytes(&acct), 0);
    }
}

static void test_encode_out_of_memory_fails_cleanly(void **state) {
    (void)state;
    inferd_pipeline *p;
    inferd_error err;
    assert_int_equal(load(FULL, NULL, &p, &err), 0);
    int32_t ids[8], types[8];
    inferd_encoding e = {ids, types, 0, 0};
    const char *text = "Caf\xc3\xa9 \xe4\xb8\xad\xe6\x96\x87 the quick brown fox";
    // Each growth of a fresh scratch may fail: the call reports it and nothing leaks (ASan).
    for (long k = 1; k < 40; k++) {
        inferd_scratch *s;
        assert_int_equal(inferd_scratch_create(NULL, &s), 0);
        inferd_alloc_fail_after(k);
        int rc = inferd_pipeline_encode(p, s, text, strlen(text), 0, &e, &err);
        inferd_alloc_fail_after(0);
        if (rc != 0)
            assert_int_equal(rc, INFERD_EINTERNAL);
        else
            assert_int_equal(e.len, 8);
        inferd_scratch_destroy(s);
    }
    inferd_pipeline_destroy(p);
}

typedef struct worker {
    const inferd_pipeline *p;
    int mismatches;
} worker;

static void *encode_many(void *arg) {
    // Each thread has its own scratch and encodings and shares only the pipeline.
    worker *w = arg;
    inferd_scratch *s;
    if (inferd_scratch_create(NULL, &s))
        return NULL;
    static const char *texts[] = {"Hello world", "the quick brown fox", "中文 mixed ÉCOLE"};
    // [CLS] hello world [SEP]; [CLS] the quick brown fox [SEP]; [CLS] 中 文 [UNK] ecole [SEP]
    // ("mixed" is "mix" + an unknown "##ed", so the whole word is [UNK]).
    static const int32_t want_len[] = {4, 6, 6};
    int32_t ids[8], types[8];
    inferd_encoding e = {ids, types, 0, 0};
    inferd_error err;
    for (int i = 0; i < 3000; i++) {
        const char *t = texts[i % 3];
        if (inferd_pipeline_encode(w->p, s, t, strlen(t), 0, &e, &err) || e.len != want_len[i % 3])
            w->mismatches++;
    }
    inferd_scratch_destroy(s);
    return NULL;
}

static void test_encode_from_many_threads(void **state) {
    (void)state;
    inferd_pipeline *p;
    inferd_error err;
    assert_int_equal(load(FULL, NULL, &p, &err), 0);
    pthread_t th[4];
    worker w[4];
    for (int i = 0; i < 4; i++) {
        w[i] = (worker){p, 0};
        assert_int_equal(pthread_create(&th[i], NULL, encode_many, &w[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(w[i].mismatches, 0);
    }
    inferd_pipeline_destroy(p);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rejects_unknown_and_mistyped_keys),
        cmocka_unit_test(test_paths_stay_inside_the_version_folder),
        cmocka_unit_test(test_model_mismatches_fail_with_reason),
        cmocka_unit_test(test_encode_assemble_postprocess),
        cmocka_unit_test(test_multilabel_threshold_and_no_truncation),
        cmocka_unit_test(test_utf8_validation_offsets),
        cmocka_unit_test(test_load_charges_and_releases_memory),
        cmocka_unit_test(test_encode_from_many_threads),
        cmocka_unit_test(test_encode_out_of_memory_fails_cleanly),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
