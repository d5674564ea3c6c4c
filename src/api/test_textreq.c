/* Unit tests for api/textreq: /v1 predict bodies (one text, a batch, every error named, the
 * limits), texts from a KServe BYTES tensor, the predictions JSON for single- and multi-label
 * pipelines, and the KServe text signature with its output tensors. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "api/textreq.h"
#include "util/alloc.h"

#define assert_contains(haystack, needle)                                                          \
    do {                                                                                           \
        if (!strstr((haystack), (needle)))                                                         \
            fail_msg("\"%s\" does not contain \"%s\"", (haystack), (needle));                      \
    } while (0)

static const inferd_textreq_limits limits = {.max_items = 4, .max_bytes = 16};

static int parse(const char *body, inferd_textreq_predict *r, inferd_error *err) {
    memset(err, 0, sizeof *err);
    return inferd_textreq_parse_predict((const uint8_t *)body, strlen(body), &limits, r, err);
}

static void expect_error(const char *body, int code, const char *msg) {
    inferd_textreq_predict r;
    inferd_error err;
    int rc = parse(body, &r, &err);
    if (rc != code)
        fail_msg("%s: got %d (%s), expected %d", body, rc, err.msg, code);
    assert_contains(err.msg, msg);
    inferd_textreq_predict_deinit(&r);
}

static void test_one_text_and_a_batch(void **state) {
    (void)state;
    inferd_textreq_predict r;
    inferd_error err;
    assert_int_equal(parse("{\"text\": \"hello\"}", &r, &err), 0);
    assert_int_equal(r.n_items, 1);
    assert_int_equal(r.items[0].len, 5);
    assert_memory_equal(r.items[0].text, "hello", 5);
    assert_int_equal(r.timeout_us, 0);
    inferd_textreq_predict_deinit(&r);

    // Escapes decode; NUL is a character; an empty text is a text.
    assert_int_equal(parse("{\"instances\": [\"a\\u00e9\", \"x\\u0000y\", \"\"], "
                           "\"parameters\": {\"timeout\": 2500}}",
                           &r, &err),
                     0);
    assert_int_equal(r.n_items, 3);
    assert_int_equal(r.items[0].len, 3);
    assert_memory_equal(r.items[0].text, "a\xc3\xa9", 3);
    assert_int_equal(r.items[1].len, 3);
    assert_memory_equal(r.items[1].text, "x\0y", 3);
    assert_int_equal(r.items[2].len, 0);
    assert_int_equal(r.timeout_us, 2500);
    inferd_textreq_predict_deinit(&r);
}

static void test_errors_name_the_field(void **state) {
    (void)state;
    expect_error("", INFERD_EINVAL, "request body: invalid JSON");
    expect_error("[\"a\"]", INFERD_EINVAL, "must be a JSON object, got an array");
    expect_error("{\"txt\": \"a\"}", INFERD_EINVAL, "unknown key 'txt'");
    expect_error("{}", INFERD_EINVAL, "missing text (one text) or instances");
    expect_error("{\"text\": \"a\", \"instances\": [\"b\"]}", INFERD_EINVAL, "not both");
    expect_error("{\"text\": 7}", INFERD_EINVAL, "text: must be a string, got an integer");
    expect_error("{\"instances\": \"a\"}", INFERD_EINVAL, "instances: must be an array");
    expect_error("{\"instances\": []}", INFERD_EINVAL, "at least one text");
    expect_error("{\"instances\": [\"a\", null]}", INFERD_EINVAL,
                 "instances[1]: must be a string, got null");
    expect_error("{\"text\": \"a\", \"parameters\": {\"timeout\": -1}}", INFERD_EINVAL,
                 "parameters.timeout: must be a non-negative integer");
    expect_error("{\"text\": \"a\", \"parameters\": {\"top_k\": 3}}", INFERD_EINVAL,
                 "parameters: unknown key 'top_k'");
    expect_error("{\"text\": \"a\", \"parameters\": []}", INFERD_EINVAL,
                 "parameters: must be an object");
    expect_error("{\"text\": \"a\", \"text\": \"b\"}", INFERD_EINVAL, "invalid JSON");
}

/* Every allocation of parsing a /v1 body fails in turn: an error with a message, or success,
 * and nothing left behind (LeakSanitizer under make unit-asan). */
static void test_out_of_memory_anywhere_in_a_body(void **state) {
    (void)state;
    const char *bodies[] = {"{\"instances\":[\"one\",\"two\",\"three\"]}",
                            "{\"text\":\"hello\",\"parameters\":{\"timeout\":100}}"};
    for (size_t q = 0; q < sizeof bodies / sizeof bodies[0]; q++) {
        int completed = 0;
        for (long nth = 1; nth < 100 && !completed; nth++) {
            inferd_textreq_predict r;
            inferd_error err;
            inferd_alloc_fail_after(nth);
            int rc = parse(bodies[q], &r, &err);
            inferd_alloc_fail_after(0);
            if (rc == 0)
                completed = 1;
            else if (err.code == 0 || !err.msg[0])
                fail_msg("%s: allocation %ld failed without an error message", bodies[q], nth);
            inferd_textreq_predict_deinit(&r);
        }
        assert_true(completed);
    }
}

static void test_limits(void **state) {
    (void)state;
    expect_error("{\"instances\": [\"a\", \"b\", \"c\", \"d\", \"e\"]}", INFERD_ETOOLARGE,
                 "instances: 5 texts, at most 4 per request");
    expect_error("{\"instances\": [\"a\", \"0123456789abcdefX\"]}", INFERD_ETOOLARGE,
                 "instances[1]: text item 1 has 17 bytes, at most 16 per text");
    expect_error("{\"text\": \"0123456789abcdefX\"}", INFERD_ETOOLARGE, "text: text item 0");
    inferd_textreq_predict r;
    inferd_error err;
    assert_int_equal(
        parse("{\"instances\": [\"a\", \"b\", \"c\", \"0123456789abcdef\"]}", &r, &err), 0);
    inferd_textreq_predict_deinit(&r);
    // A body of many small values is refused before it is parsed (it would cost tens of bytes of
    // memory per value); commas and brackets inside texts do not count.
    char body[1024];
    size_t n = (size_t)snprintf(body, sizeof body, "{\"instances\": [");
    for (int i = 0; i < 100; i++)
        n += (size_t)snprintf(body + n, sizeof body - n, "%s1", i ? "," : "");
    snprintf(body + n, sizeof body - n, "]}");
    expect_error(body, INFERD_ETOOLARGE, "request body: over 68 JSON values");
    assert_int_equal(
        parse(
            "{\"text\": \",,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,"
            "[[[{{{\\\",,,\"}",
            &r, &err),
        INFERD_ETOOLARGE); // 72 commas inside a text: only the bytes limit hits
    assert_contains(err.msg, "text item 0 has");
    inferd_textreq_predict_deinit(&r);
}

static void test_invalid_utf8_names_the_item(void **state) {
    (void)state;
    expect_error("{\"instances\": [\"ok\", \"ok\", \"caf\xe9\"]}", INFERD_EINVAL,
                 "instances[2]: text item 2 is not valid UTF-8");
    expect_error("{\"text\": \"\xc3(\"}", INFERD_EINVAL, "text: text item 0 is not valid UTF-8");
    // A lone surrogate escape is not a character either.
    expect_error("{\"instances\": [\"\\ud800\"]}", INFERD_EINVAL,
                 "instances[0]: text item 0 is not valid UTF-8");
    // Outside the texts it still names the field.
    expect_error("{\"parameters\": {\"ti\xffme\": 1}, \"text\": \"a\"}", INFERD_EINVAL,
                 "parameters.ti");
}

static void put_len(uint8_t *p, uint32_t n) {
    p[0] = (uint8_t)n;
    p[1] = (uint8_t)(n >> 8);
    p[2] = (uint8_t)(n >> 16);
    p[3] = (uint8_t)(n >> 24);
}

static void test_items_from_tensor(void **state) {
    (void)state;
    uint8_t data[64];
    put_len(data, 2);
    memcpy(data + 4, "hi", 2);
    put_len(data + 6, 0);
    put_len(data + 10, 3);
    memcpy(data + 14, "\xff\xfe!", 3);
    inferd_tensor t = {
        .dtype = INFERD_DTYPE_STRING, .rank = 1, .dims = {3}, .data = data, .nbytes = 17};
    inferd_text_item items[4];
    size_t n;
    inferd_error err;
    assert_int_equal(inferd_textreq_items_from_tensor(&t, &limits, items, &n, &err), 0);
    assert_int_equal(n, 3);
    assert_int_equal(items[0].len, 2);
    assert_memory_equal(items[0].text, "hi", 2);
    assert_int_equal(items[1].len, 0);
    assert_int_equal(items[2].len, 3); // bytes pass through; tokenizing checks UTF-8
    t.dims[0] = 5;
    assert_int_equal(inferd_textreq_items_from_tensor(&t, &limits, items, &n, &err),
                     INFERD_ETOOLARGE);
    assert_contains(err.msg, "5 texts, at most 4");
    put_len(data + 10, 17);
    t.dims[0] = 3;
    t.nbytes = 14 + 17;
    memset(data + 14, 'a', 17);
    assert_int_equal(inferd_textreq_items_from_tensor(&t, &limits, items, &n, &err),
                     INFERD_ETOOLARGE);
    assert_contains(err.msg, "text item 2 has 17 bytes, at most 16");
    t.nbytes = 20;
    assert_int_equal(inferd_textreq_items_from_tensor(&t, &limits, items, &n, &err), INFERD_EINVAL);
    t.rank = 2;
    assert_int_equal(inferd_textreq_items_from_tensor(&t, &limits, items, &n, &err), INFERD_EINVAL);
}

/* ---- pipelines to format with ---- */

static char dir[64];

static void write_file(const char *name, const char *text) {
    char path[128];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static int setup(void **state) {
    (void)state;
    snprintf(dir, sizeof dir, "/tmp/inferd-textreq-XXXXXX");
    if (!mkdtemp(dir))
        return -1;
    write_file("chars.txt", "_\na\nb\nc\n");
    write_file("labels.txt", "red\ngreen\nblue\n");
    return 0;
}

static int teardown(void **state) {
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    return system(cmd);
}

static const inferd_tensor_desc model_in[] = {{"ids", INFERD_DTYPE_I64, 2, {-1, -1}}};
static const inferd_tensor_desc model_out[] = {{"logits", INFERD_DTYPE_F32, 2, {-1, 3}}};

static inferd_pipeline *load(const char *post) {
    char json[512];
    snprintf(json, sizeof json,
             "{\"tokenizer\": {\"type\": \"char\", \"vocab\": \"chars.txt\"}, \"max_length\": 8, "
             "\"inputs\": {\"input_ids\": \"ids\"}, \"output\": \"logits\", \"postprocess\": %s}",
             post);
    inferd_pipeline_model m = {model_in, 1, model_out, 1};
    inferd_pipeline *p = NULL;
    inferd_error err = {0};
    int rc = inferd_pipeline_parse(json, strlen(json), dir, &m, NULL, &p, &err);
    if (rc != 0)
        fail_msg("pipeline: %d %s", rc, err.msg);
    return p;
}

/* Runs the pipeline's postprocessing on rows, as the text call does. */
static void predict(const inferd_pipeline *p, const float rows[][3], size_t n,
                    inferd_text_result *res, inferd_pipeline_score tops[][3]) {
    inferd_error err;
    for (size_t i = 0; i < n; i++) {
        memset(&res[i], 0, sizeof res[i]);
        res[i].top = tops[i];
        res[i].classes = 3;
        assert_int_equal(inferd_pipeline_best(p, rows[i], 3, &res[i].best, &err), 0);
        assert_int_equal(
            inferd_pipeline_postprocess(p, rows[i], 3, res[i].top, 3, &res[i].n_top, &err), 0);
    }
}

static char *format(const inferd_pipeline *p, const inferd_text_result *res, size_t n) {
    inferd_strbuf b;
    inferd_strbuf_init(&b);
    inferd_textreq_format_predictions(&b, "m", 2, p, res, n);
    size_t len;
    return inferd_strbuf_take(&b, &len);
}

static void test_predictions_single_label(void **state) {
    (void)state;
    inferd_pipeline *p = load("{\"function\": \"none\", \"top_k\": 2, \"labels\": \"labels.txt\"}");
    const float rows[2][3] = {{0.5f, 2.0f, -1.0f}, {3.0f, 1.0f, 2.0f}};
    inferd_text_result res[2];
    inferd_pipeline_score tops[2][3];
    predict(p, rows, 2, res, tops);
    res[1].truncated = 1;
    char *json = format(p, res, 2);
    assert_string_equal(json,
                        "{\"model_name\":\"m\",\"model_version\":\"2\",\"predictions\":["
                        "{\"label\":\"green\",\"score\":2,\"top_k\":[{\"label\":\"green\","
                        "\"score\":2},{\"label\":\"red\",\"score\":0.5}]},"
                        "{\"label\":\"red\",\"score\":3,\"top_k\":[{\"label\":\"red\",\"score\":3},"
                        "{\"label\":\"blue\",\"score\":2}],\"truncated\":true}]}");
    inferd_free(json);
    assert_int_equal(inferd_textreq_top_width(p, 3), 2);

    // The signature's outputs: label, score, then the top 2 of each text.
    inferd_tensor outs[4];
    inferd_error err;
    assert_int_equal(inferd_textreq_build_outputs(p, res, 2, 2, outs, &err), 0);
    assert_int_equal(outs[0].dtype, INFERD_DTYPE_STRING);
    assert_int_equal(outs[0].dims[0], 2);
    assert_int_equal(outs[0].nbytes, 4 + 5 + 4 + 3);
    assert_memory_equal(outs[0].data, "\x05\0\0\0green\x03\0\0\0red", 16);
    assert_float_equal(((float *)outs[1].data)[1], 3.0f, 0);
    assert_int_equal(outs[2].rank, 2);
    assert_int_equal(outs[2].dims[1], 2);
    assert_memory_equal(outs[2].data, "\x05\0\0\0green\x03\0\0\0red\x03\0\0\0red\x04\0\0\0blue",
                        32);
    assert_float_equal(((float *)outs[3].data)[3], 2.0f, 0);
    inferd_textreq_free_outputs(outs);
    inferd_pipeline_destroy(p);

    // top_k 1: no top outputs, no top_k in the predictions. softmax(0.5, 2, -1)[1] =
    // 1 / (1 + e^-1.5 + e^-3) = 0.7855970; without a labels file the label is the index.
    p = load("{\"function\": \"softmax\"}");
    predict(p, rows, 1, res, tops);
    json = format(p, res, 1);
    assert_string_equal(json, "{\"model_name\":\"m\",\"model_version\":\"2\",\"predictions\":["
                              "{\"label\":\"1\",\"score\":0.785597026}]}");
    inferd_free(json);
    assert_int_equal(inferd_textreq_top_width(p, 3), 0);
    inferd_pipeline_destroy(p);
}

static void test_predictions_multi_label(void **state) {
    (void)state;
    inferd_pipeline *p =
        load("{\"function\": \"sigmoid\", \"threshold\": 0.5, \"labels\": \"labels.txt\"}");
    // sigmoid: (0.8808, 0.2689, 0.6225) and (0.1192, 0.2689, 0.4502): none passes in row 2.
    const float rows[2][3] = {{2.0f, -1.0f, 0.5f}, {-2.0f, -1.0f, -0.2f}};
    inferd_text_result res[2];
    inferd_pipeline_score tops[2][3];
    predict(p, rows, 2, res, tops);
    char *json = format(p, res, 2);
    assert_string_equal(json, "{\"model_name\":\"m\",\"model_version\":\"2\",\"predictions\":["
                              "{\"label\":\"red\",\"score\":0.880797029,\"labels\":[\"red\","
                              "\"blue\"],\"scores\":[0.880797029,0.622459352]},"
                              "{\"label\":\"blue\",\"score\":0.450166017,\"labels\":[],"
                              "\"scores\":[]}]}");
    inferd_free(json);
    // Every label may pass: the top outputs are as wide as the labels, padded with "" and 0.
    assert_int_equal(inferd_textreq_top_width(p, -1), 3);
    inferd_tensor outs[4];
    inferd_error err;
    assert_int_equal(inferd_textreq_build_outputs(p, res, 2, 3, outs, &err), 0);
    assert_memory_equal(outs[2].data, "\x03\0\0\0red\x04\0\0\0blue\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0",
                        27);
    assert_float_equal(((float *)outs[3].data)[2], 0.0f, 0);
    assert_float_equal(((float *)outs[3].data)[3], 0.0f, 0);
    inferd_textreq_free_outputs(outs);
    inferd_pipeline_destroy(p);
}

static inferd_config_route route(const char *input, int batch) {
    inferd_config_route rt;
    memset(&rt, 0, sizeof rt);
    snprintf(rt.path, sizeof rt.path, "/p");
    snprintf(rt.input, sizeof rt.input, "%s", input);
    rt.batch = batch;
    snprintf(rt.label, sizeof rt.label, "label");
    snprintf(rt.score, sizeof rt.score, "score");
    return rt;
}

static void expect_route_error(const inferd_config_route *rt, const char *body, int code,
                               const char *msg) {
    inferd_textreq_predict r;
    inferd_error err = {0};
    int rc = inferd_textreq_parse_route((const uint8_t *)body, strlen(body), rt, &limits, &r, &err);
    inferd_textreq_predict_deinit(&r);
    if (rc != code)
        fail_msg("%s: rc %d (%s), expected %d", body, rc, err.msg, code);
    if (!strstr(err.msg, msg))
        fail_msg("%s: \"%s\" does not contain \"%s\"", body, err.msg, msg);
}

static void test_route_bodies(void **state) {
    (void)state;
    inferd_config_route one = route("text", 0), list = route("texts", 1);
    inferd_textreq_predict r;
    inferd_error err = {0};
    const char *body = "{\"text\": \"abc\"}";
    assert_int_equal(
        inferd_textreq_parse_route((const uint8_t *)body, strlen(body), &one, &limits, &r, &err),
        0);
    assert_int_equal(r.n_items, 1);
    assert_int_equal(r.items[0].len, 3);
    assert_memory_equal(r.items[0].text, "abc", 3);
    assert_int_equal(r.timeout_us, 0);
    inferd_textreq_predict_deinit(&r);
    body = "{\"texts\": [\"a\", \"bc\"]}";
    assert_int_equal(
        inferd_textreq_parse_route((const uint8_t *)body, strlen(body), &list, &limits, &r, &err),
        0);
    assert_int_equal(r.n_items, 2);
    assert_memory_equal(r.items[1].text, "bc", 2);
    inferd_textreq_predict_deinit(&r);
    // Every error names the route's own field.
    expect_route_error(&one, "{}", INFERD_EINVAL, "text: missing (the text)");
    expect_route_error(&list, "{}", INFERD_EINVAL, "texts: missing (a list of texts)");
    expect_route_error(&one, "{\"text\": \"a\", \"lang\": \"en\"}", INFERD_EINVAL,
                       "request: unknown key 'lang' (expected text)");
    expect_route_error(&one, "{\"instances\": [\"a\"]}", INFERD_EINVAL,
                       "request: unknown key 'instances' (expected text)");
    expect_route_error(&one, "{\"text\": [\"a\"]}", INFERD_EINVAL,
                       "text: must be a string, got an array");
    expect_route_error(&list, "{\"texts\": \"a\"}", INFERD_EINVAL,
                       "texts: must be an array of strings, got a string");
    expect_route_error(&list, "{\"texts\": []}", INFERD_EINVAL, "texts: must hold at least one");
    expect_route_error(&list, "{\"texts\": [\"a\", 5]}", INFERD_EINVAL,
                       "texts[1]: must be a string, got an integer");
    expect_route_error(&list, "{\"texts\": [\"a\", \"b\", \"c\", \"d\", \"e\"]}", INFERD_ETOOLARGE,
                       "texts: 5 texts, at most 4 per request");
    expect_route_error(&one, "{\"text\": \"0123456789abcdefg\"}", INFERD_ETOOLARGE,
                       "text: text item 0 has 17 bytes, at most 16");
    expect_route_error(&one, "[\"a\"]", INFERD_EINVAL, "request body: must be a JSON object");
    expect_route_error(&one, "{\"text\": ", INFERD_EINVAL, "request body: invalid JSON");
    expect_route_error(&list, "{\"texts\": [\"ok\", \"\xff\"]}", INFERD_EINVAL,
                       "texts[1]: text item 1 is not valid UTF-8");
    expect_route_error(&one, "{\"text\": \"\xc3\"}", INFERD_EINVAL,
                       "text: text item 0 is not valid UTF-8");
}

static char *format_route(const inferd_config_route *rt, const inferd_pipeline *p,
                          const inferd_text_result *res, size_t n) {
    inferd_strbuf b;
    inferd_strbuf_init(&b);
    inferd_textreq_format_route(&b, rt, p, res, n);
    size_t len;
    return inferd_strbuf_take(&b, &len);
}

static void test_route_answers(void **state) {
    (void)state;
    inferd_pipeline *p = load("{\"function\": \"none\", \"top_k\": 2, \"labels\": \"labels.txt\"}");
    const float rows[2][3] = {{0.5f, 2.0f, -1.0f}, {3.0f, 1.0f, 2.0f}};
    inferd_text_result res[2];
    inferd_pipeline_score tops[2][3];
    predict(p, rows, 2, res, tops);
    // One text: one object with the route's names.
    inferd_config_route rt = route("text", 0);
    snprintf(rt.label, sizeof rt.label, "category");
    snprintf(rt.score, sizeof rt.score, "confidence");
    char *json = format_route(&rt, p, res, 1);
    assert_string_equal(json, "{\"category\":\"green\",\"confidence\":2}");
    inferd_free(json);
    // A list, bare; the score left out and the top labels in, named as the route says.
    rt = route("texts", 1);
    rt.score[0] = 0;
    snprintf(rt.top_k, sizeof rt.top_k, "alternatives");
    json = format_route(&rt, p, res, 2);
    assert_string_equal(json, "[{\"label\":\"green\",\"alternatives\":[{\"label\":\"green\","
                              "\"score\":2},{\"label\":\"red\",\"score\":0.5}]},"
                              "{\"label\":\"red\",\"alternatives\":[{\"label\":\"red\",\"score\":"
                              "3},{\"label\":\"blue\",\"score\":2}]}]");
    inferd_free(json);
    // A list inside an object; names are JSON-escaped.
    rt = route("texts", 1);
    snprintf(rt.results, sizeof rt.results, "pre\"dictions");
    json = format_route(&rt, p, res, 2);
    assert_string_equal(json, "{\"pre\\\"dictions\":[{\"label\":\"green\",\"score\":2},"
                              "{\"label\":\"red\",\"score\":3}]}");
    inferd_free(json);
    inferd_pipeline_destroy(p);
}

static void test_signature(void **state) {
    (void)state;
    inferd_tensor_desc in[1], out[4];
    int n;
    inferd_textreq_signature(0, in, out, &n);
    assert_int_equal(n, 2);
    assert_string_equal(in[0].name, "text");
    assert_int_equal(in[0].dtype, INFERD_DTYPE_STRING);
    assert_int_equal(in[0].dims[0], -1);
    assert_string_equal(out[0].name, "label");
    assert_string_equal(out[1].name, "score");
    assert_int_equal(out[1].dtype, INFERD_DTYPE_F32);
    inferd_textreq_signature(5, in, out, &n);
    assert_int_equal(n, 4);
    assert_string_equal(out[2].name, "top_labels");
    assert_int_equal(out[2].dims[1], 5);
    assert_string_equal(out[3].name, "top_scores");
    assert_int_equal(out[3].rank, 2);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_one_text_and_a_batch),
        cmocka_unit_test(test_errors_name_the_field),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_out_of_memory_anywhere_in_a_body),
        cmocka_unit_test(test_invalid_utf8_names_the_item),
        cmocka_unit_test(test_items_from_tensor),
        cmocka_unit_test(test_predictions_single_label),
        cmocka_unit_test(test_predictions_multi_label),
        cmocka_unit_test(test_signature),
        cmocka_unit_test(test_route_bodies),
        cmocka_unit_test(test_route_answers),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
