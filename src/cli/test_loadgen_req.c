/* Tests for cli/loadgen_req: request bodies built from KServe v2 model metadata, in JSON and in
 * the binary tensor extension, and the errors for metadata it cannot serve. */
#include <jansson.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "cli/loadgen_req.h"

static const char bert_meta[] =
    "{\"name\":\"bert\",\"versions\":[\"1\"],\"platform\":\"onnx\",\"inputs\":["
    "{\"name\":\"input_ids\",\"datatype\":\"INT64\",\"shape\":[-1,-1]},"
    "{\"name\":\"attention_mask\",\"datatype\":\"INT64\",\"shape\":[-1,-1]},"
    "{\"name\":\"token_type_ids\",\"datatype\":\"INT32\",\"shape\":[-1,-1]},"
    "{\"name\":\"features\",\"datatype\":\"FP32\",\"shape\":[-1,4]}],"
    "\"outputs\":[{\"name\":\"logits\",\"datatype\":\"FP32\",\"shape\":[-1,2]}]}";

static json_t *find_input(json_t *req, const char *name) {
    size_t i;
    json_t *in;
    json_array_foreach(json_object_get(req, "inputs"), i, in) {
        if (strcmp(json_string_value(json_object_get(in, "name")), name) == 0)
            return in;
    }
    fail_msg("no input %s in request", name);
    return NULL;
}

static void assert_shape(json_t *in, int64_t d0, int64_t d1) {
    json_t *s = json_object_get(in, "shape");
    assert_int_equal(json_array_size(s), 2);
    assert_int_equal(json_integer_value(json_array_get(s, 0)), d0);
    assert_int_equal(json_integer_value(json_array_get(s, 1)), d1);
}

static void test_json_defaults(void **state) {
    (void)state;
    inferd_loadgen_req_options o = {.seed = 1};
    inferd_loadgen_req r;
    inferd_error err = {0};
    assert_int_equal(inferd_loadgen_req_build(bert_meta, strlen(bert_meta), &o, &r, &err), 0);
    assert_int_equal(r.header_len, 0);
    assert_int_equal(strlen(r.body), r.body_len);
    json_error_t jerr;
    json_t *req = json_loadb(r.body, r.body_len, 0, &jerr);
    assert_non_null(req);

    json_t *ids = find_input(req, "input_ids");
    assert_shape(ids, 1, 16); // batch 1, seq 16 for the -1 dims
    assert_string_equal(json_string_value(json_object_get(ids, "datatype")), "INT64");
    json_t *data = json_object_get(ids, "data");
    assert_int_equal(json_array_size(data), 16);
    int distinct = 0;
    for (size_t i = 0; i < 16; i++) {
        json_int_t v = json_integer_value(json_array_get(data, i));
        assert_in_range(v, 0, 99);
        distinct += v != json_integer_value(json_array_get(data, 0));
    }
    assert_true(distinct > 0); // random, not constant

    json_t *mask = json_object_get(find_input(req, "attention_mask"), "data");
    for (size_t i = 0; i < 16; i++)
        assert_int_equal(json_integer_value(json_array_get(mask, i)), 1);
    json_t *types = json_object_get(find_input(req, "token_type_ids"), "data");
    for (size_t i = 0; i < 16; i++)
        assert_int_equal(json_integer_value(json_array_get(types, i)), 0);

    json_t *feat = find_input(req, "features");
    assert_shape(feat, 1, 4); // fixed dims are kept
    json_t *fd = json_object_get(feat, "data");
    assert_int_equal(json_array_size(fd), 4);
    for (size_t i = 0; i < 4; i++) {
        assert_true(json_is_real(json_array_get(fd, i)));
        double v = json_real_value(json_array_get(fd, i));
        assert_true(v > -8 && v < 8);
    }
    assert_non_null(strstr(r.summary, "input_ids INT64[1,16]"));
    json_decref(req);
    inferd_loadgen_req_deinit(&r);
}

static void test_options_and_seed(void **state) {
    (void)state;
    inferd_loadgen_req_options o = {.batch = 3, .seq = 5, .vocab = 2, .seed = 7};
    inferd_loadgen_req a, b;
    inferd_error err = {0};
    assert_int_equal(inferd_loadgen_req_build(bert_meta, strlen(bert_meta), &o, &a, &err), 0);
    assert_int_equal(inferd_loadgen_req_build(bert_meta, strlen(bert_meta), &o, &b, &err), 0);
    assert_int_equal(a.body_len, b.body_len);
    assert_memory_equal(a.body, b.body, a.body_len); // same seed, same body
    json_t *req = json_loadb(a.body, a.body_len, 0, NULL);
    json_t *ids = find_input(req, "input_ids");
    assert_shape(ids, 3, 5);
    json_t *data = json_object_get(ids, "data");
    assert_int_equal(json_array_size(data), 15);
    for (size_t i = 0; i < 15; i++)
        assert_in_range(json_integer_value(json_array_get(data, i)), 0, 1);
    assert_shape(find_input(req, "features"), 3, 4);
    json_decref(req);
    inferd_loadgen_req_deinit(&a);
    inferd_loadgen_req_deinit(&b);
}

static uint64_t read_le(const unsigned char *p, size_t n) {
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

static void test_binary_layout(void **state) {
    (void)state;
    inferd_loadgen_req_options o = {.seq = 8, .binary = 1, .seed = 3};
    inferd_loadgen_req r;
    inferd_error err = {0};
    assert_int_equal(inferd_loadgen_req_build(bert_meta, strlen(bert_meta), &o, &r, &err), 0);
    assert_true(r.header_len > 0);
    // 8 INT64 ids + 8 INT64 mask + 8 INT32 types + 4 FP32 features.
    assert_int_equal(r.body_len - r.header_len, 8 * 8 + 8 * 8 + 8 * 4 + 4 * 4);
    json_t *hdr = json_loadb(r.body, r.header_len, 0, NULL);
    assert_non_null(hdr);
    assert_true(
        json_is_true(json_object_get(json_object_get(hdr, "parameters"), "binary_data_output")));
    json_t *ids = find_input(hdr, "input_ids");
    assert_null(json_object_get(ids, "data"));
    assert_int_equal(
        json_integer_value(json_object_get(json_object_get(ids, "parameters"), "binary_data_size")),
        64);
    assert_int_equal(
        json_integer_value(json_object_get(
            json_object_get(find_input(hdr, "token_type_ids"), "parameters"), "binary_data_size")),
        32);
    const unsigned char *bin = (const unsigned char *)r.body + r.header_len;
    for (int i = 0; i < 8; i++)
        assert_in_range(read_le(bin + 8 * i, 8), 0, 99);
    for (int i = 0; i < 8; i++)
        assert_int_equal(read_le(bin + 64 + 8 * i, 8), 1); // the mask
    for (int i = 0; i < 8; i++)
        assert_int_equal(read_le(bin + 128 + 4 * i, 4), 0); // the token types
    for (int i = 0; i < 4; i++) {
        uint32_t u = (uint32_t)read_le(bin + 160 + 4 * i, 4);
        float f;
        memcpy(&f, &u, 4);
        assert_true(f > -8 && f < 8 && f != 0);
    }
    json_decref(hdr);
    inferd_loadgen_req_deinit(&r);
}

static void test_bytes_input(void **state) {
    (void)state;
    const char *meta = "{\"name\":\"t\",\"inputs\":[{\"name\":\"text\",\"datatype\":\"BYTES\","
                       "\"shape\":[-1]}],\"outputs\":[]}";
    inferd_loadgen_req_options o = {.seq = 4, .binary = 1};
    inferd_loadgen_req r;
    inferd_error err = {0};
    assert_int_equal(inferd_loadgen_req_build(meta, strlen(meta), &o, &r, &err), 0);
    const unsigned char *bin = (const unsigned char *)r.body + r.header_len;
    size_t n = (size_t)read_le(bin, 4);
    assert_int_equal(n + 4, r.body_len - r.header_len);
    // Four words: three spaces.
    int spaces = 0;
    for (size_t i = 0; i < n; i++)
        spaces += bin[4 + i] == ' ';
    assert_int_equal(spaces, 3);
    inferd_loadgen_req_deinit(&r);
}

static void expect_build_error(const char *meta, int code, const char *part) {
    inferd_loadgen_req_options o = {0};
    inferd_loadgen_req r;
    inferd_error err = {0};
    int rc = inferd_loadgen_req_build(meta, strlen(meta), &o, &r, &err);
    if (rc != code || !strstr(err.msg, part))
        fail_msg("%s: rc %d '%s', wanted %d mentioning '%s'", meta, rc, err.msg, code, part);
    assert_null(r.body);
}

static void test_bad_metadata(void **state) {
    (void)state;
    expect_build_error("not json", INFERD_EINVAL, "not JSON");
    expect_build_error("{\"name\":\"x\"}", INFERD_EINVAL, "no \"inputs\"");
    expect_build_error("{\"inputs\":[{\"name\":\"a\",\"shape\":[1]}]}", INFERD_EINVAL,
                       "lacks name, datatype or shape");
    expect_build_error("{\"inputs\":[{\"name\":\"a\",\"datatype\":\"FP16\",\"shape\":[1]}]}",
                       INFERD_EUNSUPPORTED, "FP16");
    expect_build_error("{\"inputs\":[{\"name\":\"a\",\"datatype\":\"WAT\",\"shape\":[1]}]}",
                       INFERD_EUNSUPPORTED, "WAT");
    expect_build_error("{\"inputs\":[{\"name\":\"a\",\"datatype\":\"FP32\",\"shape\":[-3]}]}",
                       INFERD_EINVAL, "bad dimension");
    expect_build_error(
        "{\"inputs\":[{\"name\":\"a\",\"datatype\":\"FP32\",\"shape\":[100000,100000]}]}",
        INFERD_ETOOLARGE, "elements");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_json_defaults), cmocka_unit_test(test_options_and_seed),
        cmocka_unit_test(test_binary_layout), cmocka_unit_test(test_bytes_input),
        cmocka_unit_test(test_bad_metadata),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
