/* test_vectors.c: every tokenizer against the ids our Python reference computed
 * (tools/ref_tokenizer.py -> tests/fixtures/tokenizer/), and the char tokenizer against the
 * peers' own vectors. Run from the repository root (make unit does). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "prep/hfjson.h"
#include "prep/pipeline.h"
#include "prep/tokenizer.h"
#include "util/alloc.h"

#define FIX "tests/fixtures/tokenizer/"

static json_t *load_json(const char *path) {
    json_error_t e;
    json_t *j = json_load_file(path, JSON_ALLOW_NUL, &e);
    if (!j)
        print_error("cannot load %s: %s\n", path, e.text);
    assert_non_null(j);
    return j;
}

/* Compares got[0..n) with the JSON array want, naming the vector on a mismatch. */
static void check_ids(const char *name, const int32_t *got, size_t n, json_t *want) {
    if (n != json_array_size(want))
        print_error("vector %s: length differs\n", name);
    assert_int_equal(n, json_array_size(want));
    for (size_t i = 0; i < n; i++) {
        long long w = json_integer_value(json_array_get(want, i));
        if (got[i] != w)
            print_error("vector %s: id %zu differs\n", name, i);
        assert_int_equal(got[i], w);
    }
}

static size_t unhex(const char *h, char *out) {
    size_t n = 0;
    for (; h[0] && h[1]; h += 2) {
        unsigned v;
        sscanf(h, "%2x", &v);
        out[n++] = (char)v;
    }
    return n;
}

/* Runs a tokenizer.json fixture through inferd_tokenizer_encode. */
static void run_hf(const char *vectors_file) {
    json_t *root = load_json(vectors_file);
    char path[256];
    snprintf(path, sizeof path, FIX "%s", json_string_value(json_object_get(root, "tokenizer")));
    size_t max_len = (size_t)json_integer_value(json_object_get(root, "max_length"));
    inferd_tokenizer *t = NULL;
    inferd_error err = {0};
    int rc = inferd_hfjson_load(path, NULL, &t, &err);
    if (rc)
        print_error("%s: %s\n", path, err.msg);
    assert_int_equal(rc, 0);
    inferd_scratch *s;
    assert_int_equal(inferd_scratch_create(NULL, &s), 0);
    int32_t *ids = calloc(max_len, sizeof *ids), *types = calloc(max_len, sizeof *types);
    json_t *v;
    size_t i;
    json_array_foreach(json_object_get(root, "vectors"), i, v) {
        const char *name = json_string_value(json_object_get(v, "name"));
        json_t *text = json_object_get(v, "text");
        size_t len = 0;
        int trunc = 0;
        rc = inferd_tokenizer_encode(t, s, json_string_value(text), json_string_length(text),
                                     max_len, 1, ids, types, &len, &trunc, &err);
        if (rc)
            print_error("vector %s: %s\n", name, err.msg);
        assert_int_equal(rc, 0);
        check_ids(name, ids, len, json_object_get(v, "ids"));
    }
    free(ids);
    free(types);
    inferd_scratch_destroy(s);
    inferd_tokenizer_destroy(t);
    json_decref(root);
}

/* Every allocation of loading the tokenizer.json at path and encoding text with it on fresh
 * buffers fails in turn: each attempt fails with a message or gives the ids of a clean run;
 * nothing is left behind (LeakSanitizer under make unit-asan). */
static void out_of_memory_in_hf(const char *path, const char *text) {
    int32_t want[64], got[64], types[64];
    size_t n_want = 0;
    long total = 0;
    for (long nth = 0; nth <= total; nth++) {
        inferd_tokenizer *t = NULL;
        inferd_scratch *s = NULL;
        inferd_error err = {0};
        size_t n = 0;
        long before = inferd_alloc_count();
        inferd_alloc_fail_after(nth);
        int rc = inferd_hfjson_load(path, NULL, &t, &err);
        if (rc == 0)
            rc = inferd_scratch_create(NULL, &s) ? INFERD_EINTERNAL : 0;
        if (rc == 0)
            rc = inferd_tokenizer_encode(t, s, text, strlen(text), 64, 1, nth ? got : want, types,
                                         nth ? &n : &n_want, NULL, &err);
        inferd_alloc_fail_after(0);
        if (nth == 0) {
            if (rc)
                fail_msg("%s: %s", path, err.msg);
            total = inferd_alloc_count() - before;
        } else if (rc == 0) {
            assert_int_equal(n, n_want);
            for (size_t k = 0; k < n; k++)
                assert_int_equal(got[k], want[k]);
        } else if (rc != INFERD_EINTERNAL && !err.msg[0]) {
            fail_msg("%s, allocation %ld: error %d without a message", path, nth, rc);
        }
        inferd_scratch_destroy(s);
        inferd_tokenizer_destroy(t);
    }
}

static void test_out_of_memory_loading_and_encoding(void **state) {
    (void)state;
    const char *text = "Caf\xc3\xa9 d\xc3\xa9j\xc3\xa0 vu, the quick brown fox's 42 jumps";
    out_of_memory_in_hf(FIX "hf_wordpiece.json", text);
    out_of_memory_in_hf(FIX "bpe_bytelevel.json", text);
    out_of_memory_in_hf(FIX "unigram.json", text);
}

static void test_hf_wordpiece(void **state) {
    (void)state;
    run_hf(FIX "hf_wordpiece_vectors.json");
}

static void test_bpe_bytelevel(void **state) {
    (void)state;
    run_hf(FIX "bpe_vectors.json");
}

static void test_bpe_array_merges_match_string_merges(void **state) {
    (void)state;
    // Load the array form directly and compare with the string form on every vector.
    inferd_tokenizer *a = NULL, *b = NULL;
    inferd_error err;
    assert_int_equal(inferd_hfjson_load(FIX "bpe_bytelevel.json", NULL, &a, &err), 0);
    assert_int_equal(inferd_hfjson_load(FIX "bpe_bytelevel_array_merges.json", NULL, &b, &err), 0);
    inferd_scratch *s;
    assert_int_equal(inferd_scratch_create(NULL, &s), 0);
    json_t *root = load_json(FIX "bpe_vectors.json");
    json_t *v;
    size_t i;
    json_array_foreach(json_object_get(root, "vectors"), i, v) {
        json_t *text = json_object_get(v, "text");
        int32_t ia[512], ib[512], ta[512], tb[512];
        size_t na, nb;
        assert_int_equal(inferd_tokenizer_encode(a, s, json_string_value(text),
                                                 json_string_length(text), 512, 1, ia, ta, &na,
                                                 NULL, &err),
                         0);
        assert_int_equal(inferd_tokenizer_encode(b, s, json_string_value(text),
                                                 json_string_length(text), 512, 1, ib, tb, &nb,
                                                 NULL, &err),
                         0);
        assert_int_equal(na, nb);
        for (size_t k = 0; k < na; k++)
            assert_int_equal(ia[k], ib[k]);
    }
    json_decref(root);
    inferd_scratch_destroy(s);
    inferd_tokenizer_destroy(a);
    inferd_tokenizer_destroy(b);
}

static void test_unigram(void **state) {
    (void)state;
    run_hf(FIX "unigram_vectors.json");
}

/* Makes a fresh version folder holding pipeline.json (given) and copies of fixture files. */
static void make_version(char *dir, const char *pipeline_json, const char *const *files) {
    strcpy(dir, "/tmp/inferd_prep_testXXXXXX");
    assert_non_null(mkdtemp(dir));
    char cmd[1024];
    for (size_t i = 0; files && files[i]; i++) {
        snprintf(cmd, sizeof cmd, "cp %s%s %s/", FIX, files[i], dir);
        assert_int_equal(system(cmd), 0);
    }
    snprintf(cmd, sizeof cmd, "%s/pipeline.json", dir);
    FILE *f = fopen(cmd, "w");
    assert_non_null(f);
    fputs(pipeline_json, f);
    fclose(f);
}

static void remove_version(const char *dir) {
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

/* Runs a vectors file through a pipeline built in a temporary version folder. */
static void run_pipeline(const char *vectors_file, const char *pipeline_json,
                         const char *const *files) {
    char dir[64];
    make_version(dir, pipeline_json, files);
    inferd_pipeline *p = NULL;
    inferd_error err = {0};
    int rc = inferd_pipeline_load(dir, NULL, NULL, &p, &err);
    if (rc)
        print_error("%s\n", err.msg);
    assert_int_equal(rc, 0);
    inferd_scratch *s;
    assert_int_equal(inferd_scratch_create(NULL, &s), 0);
    int32_t L = inferd_pipeline_max_length(p);
    inferd_encoding e = {calloc(L, 4), calloc(L, 4), 0, 0};
    json_t *root = load_json(vectors_file), *v;
    json_t *vecs = json_is_array(root) ? root : json_object_get(root, "vectors");
    size_t i;
    json_array_foreach(vecs, i, v) {
        const char *name = json_string_value(json_object_get(v, "name"));
        char namebuf[32];
        if (!name) {
            snprintf(namebuf, sizeof namebuf, "#%zu", i);
            name = namebuf;
        }
        json_t *text = json_object_get(v, "text");
        if (!text) {
            char raw[256];
            size_t n = unhex(json_string_value(json_object_get(v, "text_hex")), raw);
            rc = inferd_pipeline_encode(p, s, raw, n, 3, &e, &err);
            assert_int_equal(rc, INFERD_EINVAL);
            assert_string_equal(err.msg, "text item 3 is not valid UTF-8 (byte offset 2)");
            continue;
        }
        rc = inferd_pipeline_encode(p, s, json_string_value(text), json_string_length(text), i, &e,
                                    &err);
        if (rc)
            print_error("vector %s: %s\n", name, err.msg);
        assert_int_equal(rc, 0);
        check_ids(name, e.ids, (size_t)e.len, json_object_get(v, "ids"));
    }
    free(e.ids);
    free(e.type_ids);
    json_decref(root);
    inferd_scratch_destroy(s);
    inferd_pipeline_destroy(p);
    remove_version(dir);
}

static void test_wordpiece_bert(void **state) {
    (void)state;
    static const char *const files[] = {"wordpiece_vocab.txt", NULL};
    run_pipeline(FIX "wordpiece_vectors.json",
                 "{\"tokenizer\": {\"type\": \"wordpiece\", \"vocab\": \"wordpiece_vocab.txt\"},"
                 " \"max_length\": 32, \"inputs\": {\"input_ids\": \"input_ids\"},"
                 " \"output\": \"logits\"}",
                 files);
}

static const char *char_pipeline =
    "{\"tokenizer\": {\"type\": \"char\", \"vocab\": null,"
    " \"hash\": {\"kind\": \"fnv1a\", \"offset\": 1000, \"buckets\": 20128}},"
    " \"special_tokens\": {\"cls\": 101}, \"max_length\": 128,"
    " \"inputs\": {\"input_ids\": \"input_ids\", \"attention_mask\": \"attention_mask\"},"
    " \"output\": \"logits\"}";

static void test_char_peers_vectors(void **state) {
    (void)state;
    run_pipeline(FIX "peers_tokenizer_vectors.json", char_pipeline, NULL);
}

static void test_char_reference_vectors(void **state) {
    (void)state;
    run_pipeline(FIX "char_vectors.json", char_pipeline, NULL);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_wordpiece_bert),
        cmocka_unit_test(test_hf_wordpiece),
        cmocka_unit_test(test_bpe_bytelevel),
        cmocka_unit_test(test_out_of_memory_loading_and_encoding),
        cmocka_unit_test(test_bpe_array_merges_match_string_merges),
        cmocka_unit_test(test_unigram),
        cmocka_unit_test(test_char_peers_vectors),
        cmocka_unit_test(test_char_reference_vectors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
