/* Unit tests for api/kserve: JSON and binary requests, every datatype, every error class
 * (each message naming its field), output selection, response formatting, and Triton's
 * classification extension. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "api/kserve.h"
#include "util/alloc.h"

#define assert_contains(haystack, needle)                                                          \
    do {                                                                                           \
        if (!strstr((haystack), (needle)))                                                         \
            fail_msg("\"%s\" does not contain \"%s\"", (haystack), (needle));                      \
    } while (0)

#define assert_not_contains(haystack, needle)                                                      \
    do {                                                                                           \
        if (strstr((haystack), (needle)))                                                          \
            fail_msg("\"%s\" contains \"%s\"", (haystack), (needle));                              \
    } while (0)

/* A text classifier: batch 8, two INT64 inputs, one FP32 output. */
static const inferd_tensor_desc text_in[] = {
    {"input_ids", INFERD_DTYPE_I64, 2, {-1, -1}},
    {"attention_mask", INFERD_DTYPE_I64, 2, {-1, -1}},
};
static const inferd_tensor_desc text_out[] = {
    {"logits", INFERD_DTYPE_F32, 2, {-1, 2}},
    {"hidden", INFERD_DTYPE_F32, 3, {-1, -1, 4}},
};
static const inferd_kserve_model text = {.name = "clf",
                                         .version = 3,
                                         .max_batch = 8,
                                         .n_inputs = 2,
                                         .inputs = text_in,
                                         .n_outputs = 2,
                                         .outputs = text_out};

/* Every datatype, no batching, shape [2] each. */
static const inferd_tensor_desc all_in[] = {
    {"b", INFERD_DTYPE_BOOL, 1, {2}},  {"u8", INFERD_DTYPE_U8, 1, {2}},
    {"i8", INFERD_DTYPE_I8, 1, {2}},   {"u16", INFERD_DTYPE_U16, 1, {2}},
    {"i16", INFERD_DTYPE_I16, 1, {2}}, {"u32", INFERD_DTYPE_U32, 1, {2}},
    {"i32", INFERD_DTYPE_I32, 1, {2}}, {"u64", INFERD_DTYPE_U64, 1, {2}},
    {"i64", INFERD_DTYPE_I64, 1, {2}}, {"f32", INFERD_DTYPE_F32, 1, {2}},
    {"f64", INFERD_DTYPE_F64, 1, {2}}, {"s", INFERD_DTYPE_STRING, 1, {2}},
};
static const inferd_tensor_desc all_out[] = {{"o", INFERD_DTYPE_F32, 1, {2}}};
static const inferd_kserve_model all = {.name = "all",
                                        .version = 1,
                                        .max_batch = 0,
                                        .n_inputs = 12,
                                        .inputs = all_in,
                                        .n_outputs = 1,
                                        .outputs = all_out};

static const inferd_tensor_desc half_in[] = {{"h", INFERD_DTYPE_F16, 2, {-1, 2}}};
static const inferd_kserve_model half = {.name = "half",
                                         .version = 1,
                                         .max_batch = 4,
                                         .n_inputs = 1,
                                         .inputs = half_in,
                                         .n_outputs = 1,
                                         .outputs = all_out};

static int parse(const inferd_kserve_model *m, const char *body, long long hl,
                 inferd_kserve_request *r, inferd_error *err) {
    memset(err, 0, sizeof *err);
    return inferd_kserve_parse_infer(m, (const uint8_t *)body, strlen(body), hl, r, err);
}

#define TEXT_OK                                                                                    \
    "{\"inputs\":[{\"name\":\"input_ids\",\"shape\":[2,3],\"datatype\":\"INT64\","                 \
    "\"data\":[[1,2,3],[4,5,6]]},{\"name\":\"attention_mask\",\"shape\":[2,3],"                    \
    "\"datatype\":\"INT64\",\"data\":[1,1,1,1,1,0]}]"

static void test_json_request(void **state) {
    (void)state;
    inferd_kserve_request r;
    inferd_error err;
    int rc =
        parse(&text, TEXT_OK ",\"id\":\"req-7\",\"parameters\":{\"timeout\":2500}}", -1, &r, &err);
    if (rc)
        fail_msg("rc %d: %s", rc, err.msg);
    assert_string_equal(r.id, "req-7");
    assert_int_equal(r.timeout_us, 2500);
    assert_int_equal(r.n_inputs, 2);
    assert_int_equal(r.inputs[0].rank, 2);
    assert_int_equal(r.inputs[0].dims[0], 2);
    assert_int_equal(r.inputs[0].dims[1], 3);
    assert_int_equal(r.inputs[0].nbytes, 48);
    const int64_t *ids = r.inputs[0].data;
    assert_int_equal(ids[0], 1);
    assert_int_equal(ids[5], 6); // nested arrays flatten in row-major order
    assert_int_equal(((const int64_t *)r.inputs[1].data)[5], 0);
    // No outputs named: all of them, as JSON.
    assert_int_equal(r.n_outputs, 2);
    assert_int_equal(r.output_index[1], 1);
    assert_int_equal(r.output_binary[0], 0);
    inferd_kserve_request_deinit(&r);
}

static void test_inputs_in_any_order(void **state) {
    (void)state;
    inferd_kserve_request r;
    inferd_error err;
    const char *body = "{\"inputs\":[{\"name\":\"attention_mask\",\"shape\":[1,2],\"datatype\":"
                       "\"INT64\",\"data\":[1,0]},{\"name\":\"input_ids\",\"shape\":[1,2],"
                       "\"datatype\":\"INT64\",\"data\":[7,8]}]}";
    assert_int_equal(parse(&text, body, -1, &r, &err), 0);
    // Stored in model order.
    assert_int_equal(((const int64_t *)r.inputs[0].data)[0], 7);
    assert_int_equal(((const int64_t *)r.inputs[1].data)[1], 0);
    inferd_kserve_request_deinit(&r);
}

static void test_every_datatype_from_json(void **state) {
    (void)state;
    const char *body =
        "{\"inputs\":["
        "{\"name\":\"b\",\"shape\":[2],\"datatype\":\"BOOL\",\"data\":[true,false]},"
        "{\"name\":\"u8\",\"shape\":[2],\"datatype\":\"UINT8\",\"data\":[0,255]},"
        "{\"name\":\"i8\",\"shape\":[2],\"datatype\":\"INT8\",\"data\":[-128,127]},"
        "{\"name\":\"u16\",\"shape\":[2],\"datatype\":\"UINT16\",\"data\":[0,65535]},"
        "{\"name\":\"i16\",\"shape\":[2],\"datatype\":\"INT16\",\"data\":[-32768,32767]},"
        "{\"name\":\"u32\",\"shape\":[2],\"datatype\":\"UINT32\",\"data\":[0,4294967295]},"
        "{\"name\":\"i32\",\"shape\":[2],\"datatype\":\"INT32\",\"data\":[-2147483648,5]},"
        "{\"name\":\"u64\",\"shape\":[2],\"datatype\":\"UINT64\",\"data\":[0,9223372036854775807]},"
        "{\"name\":\"i64\",\"shape\":[2],\"datatype\":\"INT64\",\"data\":[-9223372036854775808,1]},"
        "{\"name\":\"f32\",\"shape\":[2],\"datatype\":\"FP32\",\"data\":[1.5,-2]},"
        "{\"name\":\"f64\",\"shape\":[2],\"datatype\":\"FP64\",\"data\":[0.1,1e300]},"
        "{\"name\":\"s\",\"shape\":[2],\"datatype\":\"BYTES\",\"data\":[\"h\\u00e9\",\"\"]}]}";
    inferd_kserve_request r;
    inferd_error err;
    int rc = parse(&all, body, -1, &r, &err);
    if (rc)
        fail_msg("rc %d: %s", rc, err.msg);
    assert_int_equal(((uint8_t *)r.inputs[0].data)[0], 1);
    assert_int_equal(((uint8_t *)r.inputs[0].data)[1], 0);
    assert_int_equal(((uint8_t *)r.inputs[1].data)[1], 255);
    assert_int_equal(((int8_t *)r.inputs[2].data)[0], -128);
    assert_int_equal(((uint16_t *)r.inputs[3].data)[1], 65535);
    assert_int_equal(((int16_t *)r.inputs[4].data)[0], -32768);
    assert_int_equal(((uint32_t *)r.inputs[5].data)[1], 4294967295u);
    assert_int_equal(((int32_t *)r.inputs[6].data)[0], INT32_MIN);
    assert_int_equal(((uint64_t *)r.inputs[7].data)[1], INT64_MAX);
    assert_int_equal(((int64_t *)r.inputs[8].data)[0], INT64_MIN);
    assert_float_equal(((float *)r.inputs[9].data)[0], 1.5, 0);
    assert_float_equal(((float *)r.inputs[9].data)[1], -2.0, 0);
    assert_float_equal(((double *)r.inputs[10].data)[1], 1e300, 0);
    // BYTES: 4-byte little-endian length, then the bytes (UTF-8 of "hé" is 3 bytes).
    assert_int_equal(r.inputs[11].nbytes, 4 + 3 + 4);
    const uint8_t *s = r.inputs[11].data;
    assert_int_equal(s[0], 3);
    assert_int_equal(s[4], 'h');
    assert_int_equal(s[7], 0);
    inferd_kserve_request_deinit(&r);
}

static void test_binary_inputs(void **state) {
    (void)state;
    const char *json = "{\"inputs\":[{\"name\":\"input_ids\",\"shape\":[1,2],\"datatype\":"
                       "\"INT64\",\"parameters\":{\"binary_data_size\":16}},"
                       "{\"name\":\"attention_mask\",\"shape\":[1,2],\"datatype\":\"INT64\","
                       "\"data\":[1,1]}],\"outputs\":[{\"name\":\"logits\",\"parameters\":"
                       "{\"binary_data\":true}}]}";
    uint8_t body[512];
    size_t jl = strlen(json);
    memcpy(body, json, jl);
    int64_t ids[2] = {101, 102};
    memcpy(body + jl, ids, 16);
    inferd_kserve_request r;
    inferd_error err = {0};
    int rc = inferd_kserve_parse_infer(&text, body, jl + 16, (long long)jl, &r, &err);
    if (rc)
        fail_msg("rc %d: %s", rc, err.msg);
    assert_int_equal(((int64_t *)r.inputs[0].data)[1], 102);
    assert_int_equal((uintptr_t)r.inputs[0].data % 64, 0); // copied to aligned memory
    assert_int_equal(((int64_t *)r.inputs[1].data)[0], 1);
    assert_int_equal(r.n_outputs, 1);
    assert_int_equal(r.output_index[0], 0);
    assert_int_equal(r.output_binary[0], 1);
    inferd_kserve_request_deinit(&r);

    // FP16 only as binary.
    const char *hj = "{\"inputs\":[{\"name\":\"h\",\"shape\":[1,2],\"datatype\":\"FP16\","
                     "\"parameters\":{\"binary_data_size\":4}}]}";
    jl = strlen(hj);
    memcpy(body, hj, jl);
    memcpy(body + jl, "\x00\x3c\x00\xc0", 4); // 1.0, -2.0
    rc = inferd_kserve_parse_infer(&half, body, jl + 4, (long long)jl, &r, &err);
    if (rc)
        fail_msg("rc %d: %s", rc, err.msg);
    assert_int_equal(((uint16_t *)r.inputs[0].data)[0], 0x3c00);
    inferd_kserve_request_deinit(&r);
}

static void test_binary_bytes_input(void **state) {
    (void)state;
    static const inferd_tensor_desc in[] = {{"s", INFERD_DTYPE_STRING, 1, {-1}}};
    static const inferd_kserve_model m = {.name = "strings",
                                          .version = 1,
                                          .max_batch = 4,
                                          .n_inputs = 1,
                                          .inputs = in,
                                          .n_outputs = 1,
                                          .outputs = all_out};
    const char *json = "{\"inputs\":[{\"name\":\"s\",\"shape\":[2],\"datatype\":\"BYTES\","
                       "\"parameters\":{\"binary_data_size\":11}}]}";
    uint8_t body[256];
    size_t jl = strlen(json);
    memcpy(body, json, jl);
    memcpy(body + jl, "\x02\x00\x00\x00hi\x01\x00\x00\x00!", 11);
    inferd_kserve_request r;
    inferd_error err = {0};
    int rc = inferd_kserve_parse_infer(&m, body, jl + 11, (long long)jl, &r, &err);
    if (rc)
        fail_msg("rc %d: %s", rc, err.msg);
    assert_int_equal(r.inputs[0].nbytes, 11);
    inferd_kserve_request_deinit(&r);
    // The element count must match the shape.
    memcpy(body + jl, "\x07\x00\x00\x00hi!!!!!", 11);
    rc = inferd_kserve_parse_infer(&m, body, jl + 11, (long long)jl, &r, &err);
    assert_int_equal(rc, INFERD_EINVAL);
    assert_contains(err.msg, "inputs[0]: binary BYTES data holds 1 elements, the shape needs 2");
    inferd_kserve_request_deinit(&r);
    // A length running past the end.
    memcpy(body + jl, "\x02\x00\x00\x00hi\x09\x00\x00\x00!", 11);
    rc = inferd_kserve_parse_infer(&m, body, jl + 11, (long long)jl, &r, &err);
    assert_int_equal(rc, INFERD_EINVAL);
    assert_contains(err.msg, "claims 9 bytes, only 1 remain");
    inferd_kserve_request_deinit(&r);
}

/* Each case: the model, a JSON body, the code and a fragment naming the field. */
static const struct {
    const inferd_kserve_model *m;
    const char *body;
    int code;
    const char *msg;
} errors[] = {
    {&text, "{\"inputs\": [", INFERD_EINVAL, "request body: invalid JSON at line 1"},
    {&text, "[]", INFERD_EINVAL, "request body: must be a JSON object"},
    {&text, "{}", INFERD_EINVAL, "inputs: missing"},
    {&text, "{\"inputs\":{}}", INFERD_EINVAL, "inputs: must be an array"},
    {&text, "{\"inputs\":[],\"inptus\":1}", INFERD_EINVAL, "request: unknown key 'inptus'"},
    {&text, "{\"inputs\":[],\"id\":5}", INFERD_EINVAL, "id: must be a string"},
    {&text, "{\"inputs\":[],\"parameters\":{\"timeout\":-1}}", INFERD_EINVAL,
     "parameters.timeout: must be a non-negative integer"},
    {&text, "{\"inputs\":[],\"parameters\":{\"binary_data_output\":1}}", INFERD_EINVAL,
     "parameters.binary_data_output: must be true or false"},
    {&text, "{\"inputs\":[]}", INFERD_EINVAL, "inputs: missing input 'input_ids'"},
    {&text, "{\"inputs\":[5]}", INFERD_EINVAL, "inputs[0]: must be an object"},
    {&text, "{\"inputs\":[{\"shape\":[1,1],\"datatype\":\"INT64\",\"data\":[1]}]}", INFERD_EINVAL,
     "inputs[0].name: missing"},
    {&text,
     "{\"inputs\":[{\"name\":\"tokens\",\"shape\":[1,1],\"datatype\":\"INT64\",\"data\":[1]}]}",
     INFERD_EINVAL,
     "inputs[0].name: unknown input 'tokens' (model 'clf' has 'input_ids', "
     "'attention_mask')"},
    {&text,
     "{\"inputs\":[{\"name\":\"input_ids\",\"shape\":[1,1],\"datatype\":\"INT64\",\"data\":[1]},"
     "{\"name\":\"input_ids\",\"shape\":[1,1],\"datatype\":\"INT64\",\"data\":[1]}]}",
     INFERD_EINVAL, "inputs[1].name: input 'input_ids' is given twice"},
    {&text, "{\"inputs\":[{\"name\":\"input_ids\",\"shape\":[1,1],\"data\":[1]}]}", INFERD_EINVAL,
     "inputs[0].datatype: missing"},
    {&text,
     "{\"inputs\":[{\"name\":\"input_ids\",\"shape\":[1,1],\"datatype\":\"INT65\",\"data\":[1]}]}",
     INFERD_EINVAL, "inputs[0].datatype: unknown datatype 'INT65'"},
    {&text,
     "{\"inputs\":[{\"name\":\"input_ids\",\"shape\":[1,1],\"datatype\":\"FP32\",\"data\":[1]}]}",
     INFERD_EINVAL, "inputs[0].datatype: input 'input_ids' is INT64, got FP32"},
    {&text, "{\"inputs\":[{\"name\":\"input_ids\",\"datatype\":\"INT64\",\"data\":[1]}]}",
     INFERD_EINVAL, "inputs[0].shape: missing"},
    {&text,
     "{\"inputs\":[{\"name\":\"input_ids\",\"shape\":[1],\"datatype\":\"INT64\",\"data\":[1]}]}",
     INFERD_EINVAL, "inputs[0].shape: input 'input_ids' has 2 dims, got 1"},
    {&text,
     "{\"inputs\":[{\"name\":\"input_ids\",\"shape\":[1,\"a\"],\"datatype\":\"INT64\",\"data\":[1]}"
     "]}",
     INFERD_EINVAL, "inputs[0].shape[1]: must be an integer, got a string"},
    {&text,
     "{\"inputs\":[{\"name\":\"input_ids\",\"shape\":[1,0],\"datatype\":\"INT64\",\"data\":[]}]}",
     INFERD_EINVAL, "inputs[0].shape[1]: must be at least 1, got 0"},
    {&text,
     "{\"inputs\":[{\"name\":\"input_ids\",\"shape\":[9,1],\"datatype\":\"INT64\",\"data\":[1]}]}",
     INFERD_EINVAL, "inputs[0].shape[0]: batch of 9 exceeds max_batch_size 8"},
    {&all, "{\"inputs\":[{\"name\":\"b\",\"shape\":[3],\"datatype\":\"BOOL\",\"data\":[true]}]}",
     INFERD_EINVAL, "inputs[0].shape[0]: input 'b' needs 2, got 3"},
    {&text,
     "{\"inputs\":[{\"name\":\"input_ids\",\"shape\":[1,2],\"datatype\":\"INT64\",\"data\":[1]}]}",
     INFERD_EINVAL, "inputs[0].data: shape [1,2] needs 2 elements, got 1"},
    {&text, "{\"inputs\":[{\"name\":\"input_ids\",\"shape\":[1,1],\"datatype\":\"INT64\"}]}",
     INFERD_EINVAL, "inputs[0]: needs data or parameters.binary_data_size"},
    {&text,
     "{\"inputs\":[{\"name\":\"input_ids\",\"shape\":[1,1],\"datatype\":\"INT64\",\"data\":[1],"
     "\"parameters\":{\"binary_data_size\":8}}]}",
     INFERD_EINVAL, "inputs[0]: has both data and parameters.binary_data_size"},
    {&text,
     "{\"inputs\":[{\"name\":\"input_ids\",\"shape\":[1,1],\"datatype\":\"INT64\",\"data\":[1],"
     "\"extra\":1}]}",
     INFERD_EINVAL, "inputs[0]: unknown key 'extra'"},
    {&text,
     "{\"inputs\":[{\"name\":\"input_ids\",\"shape\":[1,1],\"datatype\":\"INT64\",\"data\":5}]}",
     INFERD_EINVAL, "inputs[0].data: must be an array, got an integer"},
    {&text,
     "{\"inputs\":[{\"name\":\"input_ids\",\"shape\":[1,1],\"datatype\":\"INT64\",\"data\":[1.5]},"
     "{\"name\":\"attention_mask\",\"shape\":[1,1],\"datatype\":\"INT64\",\"data\":[1]}]}",
     INFERD_EINVAL, "inputs[0].data: element 0: expected an integer, got a number"},
    {&text,
     "{\"inputs\":[{\"name\":\"input_ids\",\"shape\":[1,1],\"datatype\":\"INT64\",\"data\":[1]},"
     "{\"name\":\"attention_mask\",\"shape\":[2,1],\"datatype\":\"INT64\",\"data\":[1,1]}]}",
     INFERD_EINVAL, "inputs[1].shape[0]: batch 2 differs from input 'input_ids' (batch 1)"},
    {&all, "{\"inputs\":[{\"name\":\"u8\",\"shape\":[2],\"datatype\":\"UINT8\",\"data\":[1,256]}]}",
     INFERD_EINVAL, "inputs[0].data: element 1: 256 is out of range for UINT8"},
    {&all, "{\"inputs\":[{\"name\":\"b\",\"shape\":[2],\"datatype\":\"BOOL\",\"data\":[1,0]}]}",
     INFERD_EINVAL, "inputs[0].data: element 0: expected true or false, got an integer"},
    {&all,
     "{\"inputs\":[{\"name\":\"s\",\"shape\":[2],\"datatype\":\"BYTES\",\"data\":[\"a\",1]}]}",
     INFERD_EINVAL, "inputs[0].data: element 1: expected a string, got an integer"},
    {&all,
     "{\"inputs\":[{\"name\":\"f32\",\"shape\":[2],\"datatype\":\"FP32\",\"data\":[1,\"x\"]}]}",
     INFERD_EINVAL, "inputs[0].data: element 1: expected a number, got a string"},
    {&all,
     "{\"inputs\":[{\"name\":\"f32\",\"shape\":[2],\"datatype\":\"FP32\",\"data\":[1,-1e39]}]}",
     INFERD_EINVAL, "inputs[0].data: element 1: -1e+39 is out of range for FP32"},
    {&text, "{\"inputs\":[],\"id\":1e400}", INFERD_EINVAL, "invalid JSON"},
    {&text, "{\"inputs\":[],\"id\":NaN}", INFERD_EINVAL, "invalid JSON"},
    {&half, "{\"inputs\":[{\"name\":\"h\",\"shape\":[1,2],\"datatype\":\"FP16\",\"data\":[1,2]}]}",
     INFERD_EINVAL, "inputs[0].data: FP16 data must be sent as binary"},
    {&text,
     "{\"inputs\":[{\"name\":\"input_ids\",\"shape\":[1,1],\"datatype\":\"INT64\","
     "\"parameters\":{\"binary_data_size\":8}},{\"name\":\"attention_mask\",\"shape\":[1,1],"
     "\"datatype\":\"INT64\",\"data\":[1]}]}",
     INFERD_EINVAL, "no Inference-Header-Content-Length header"},
    {&text,
     "{\"inputs\":[{\"name\":\"input_ids\",\"shape\":[1,2],\"datatype\":\"INT64\","
     "\"parameters\":{\"binary_data_size\":8}}]}",
     INFERD_EINVAL,
     "inputs[0].parameters.binary_data_size: 8 bytes, but shape [1,2] of INT64 needs 16"},
    {&text, TEXT_OK ",\"outputs\":[{\"name\":\"probs\"}]}", INFERD_EINVAL,
     "outputs[0].name: unknown output 'probs' (model 'clf' has 'logits', 'hidden')"},
    {&text, TEXT_OK ",\"outputs\":[{\"name\":\"logits\"},{\"name\":\"logits\"}]}", INFERD_EINVAL,
     "outputs[1].name: output 'logits' is requested twice"},
    {&text,
     TEXT_OK ",\"outputs\":[{\"name\":\"logits\",\"parameters\":{\"binary_data\":\"yes\"}}]}",
     INFERD_EINVAL, "outputs[0].parameters.binary_data: must be true or false"},
    {&text, TEXT_OK ",\"outputs\":[{\"name\":\"logits\",\"parameters\":{\"classification\":0}}]}",
     INFERD_EINVAL,
     "outputs[0].parameters.classification: must be a positive integer, the number of classes "
     "to return"},
    {&text,
     TEXT_OK ",\"outputs\":[{\"name\":\"logits\",\"parameters\":{\"classification\":\"2\"}}]}",
     INFERD_EINVAL,
     "outputs[0].parameters.classification: must be a positive integer, the number of classes "
     "to return"},
    {&text, TEXT_OK ",\"outputs\":{}}", INFERD_EINVAL, "outputs: must be an array"},
};

static void test_every_error_names_the_field(void **state) {
    (void)state;
    for (size_t i = 0; i < sizeof errors / sizeof errors[0]; i++) {
        inferd_kserve_request r;
        inferd_error err;
        int rc = parse(errors[i].m, errors[i].body, -1, &r, &err);
        if (rc != errors[i].code)
            fail_msg("case %zu (%s): rc %d, expected %d (%s)", i, errors[i].body, rc,
                     errors[i].code, err.msg);
        assert_contains(err.msg, errors[i].msg);
        inferd_kserve_request_deinit(&r);
    }
}

static void test_binary_length_errors(void **state) {
    (void)state;
    const char *json = "{\"inputs\":[{\"name\":\"input_ids\",\"shape\":[1,2],\"datatype\":"
                       "\"INT64\",\"parameters\":{\"binary_data_size\":16}},"
                       "{\"name\":\"attention_mask\",\"shape\":[1,2],\"datatype\":\"INT64\","
                       "\"data\":[1,1]}]}";
    uint8_t body[512];
    size_t jl = strlen(json);
    memcpy(body, json, jl);
    memset(body + jl, 0, 32);
    inferd_kserve_request r;
    inferd_error err = {0};
    // The body carries 8 bytes fewer than declared.
    assert_int_equal(inferd_kserve_parse_infer(&text, body, jl + 8, (long long)jl, &r, &err),
                     INFERD_EINVAL);
    assert_contains(err.msg, "binary data: the inputs declare 16 bytes, the body carries 8");
    inferd_kserve_request_deinit(&r);
    // The header length points past the body.
    assert_int_equal(inferd_kserve_parse_infer(&text, body, jl, (long long)jl + 5, &r, &err),
                     INFERD_EINVAL);
    assert_contains(err.msg, "Inference-Header-Content-Length");
    inferd_kserve_request_deinit(&r);
    // The header length cuts the JSON short.
    assert_int_equal(inferd_kserve_parse_infer(&text, body, jl + 16, (long long)jl - 3, &r, &err),
                     INFERD_EINVAL);
    assert_contains(err.msg, "invalid JSON");
    inferd_kserve_request_deinit(&r);
}

/* Declared binary sizes that wrap around 2^64 to the bytes actually sent: BYTES sizes are not
 * tied to the shape, so three of them can sum to 8 modulo 2^64. Found by fuzzing: the wrapped
 * sum passed the check and the BYTES walk read past the end of the body. */
static void test_binary_sizes_that_wrap_around(void **state) {
    (void)state;
    static const inferd_tensor_desc in[] = {{"a", INFERD_DTYPE_STRING, 1, {-1}},
                                            {"b", INFERD_DTYPE_STRING, 1, {-1}},
                                            {"c", INFERD_DTYPE_STRING, 1, {-1}}};
    static const inferd_kserve_model m = {.name = "strings",
                                          .version = 1,
                                          .max_batch = 0,
                                          .n_inputs = 3,
                                          .inputs = in,
                                          .n_outputs = 1,
                                          .outputs = all_out};
    const char *json = "{\"inputs\":[{\"name\":\"a\",\"shape\":[2],\"datatype\":\"BYTES\","
                       "\"parameters\":{\"binary_data_size\":9223372036854775807}},"
                       "{\"name\":\"b\",\"shape\":[1],\"datatype\":\"BYTES\","
                       "\"parameters\":{\"binary_data_size\":9223372036854775807}},"
                       "{\"name\":\"c\",\"shape\":[1],\"datatype\":\"BYTES\","
                       "\"parameters\":{\"binary_data_size\":10}}]}";
    uint8_t body[512] = {0};
    size_t jl = strlen(json);
    memcpy(body, json, jl);
    inferd_kserve_request r;
    inferd_error err = {0};
    // (2^63 - 1) * 2 + 10 = 2^64 + 8: the body carries exactly those 8 bytes.
    assert_int_equal(inferd_kserve_parse_infer(&m, body, jl + 8, (long long)jl, &r, &err),
                     INFERD_EINVAL);
    assert_contains(err.msg, "binary data: the inputs declare");
    assert_contains(err.msg, "the body carries 8");
    inferd_kserve_request_deinit(&r);
}

static void test_json_part_over_the_limit(void **state) {
    (void)state;
    size_t n = INFERD_KSERVE_MAX_JSON_BYTES + 1;
    uint8_t *body = malloc(n);
    assert_non_null(body);
    memset(body, ' ', n);
    body[0] = '{';
    body[n - 1] = '}';
    inferd_kserve_request r;
    inferd_error err = {0};
    assert_int_equal(inferd_kserve_parse_infer(&text, body, n, -1, &r, &err), INFERD_ETOOLARGE);
    assert_contains(err.msg, "the JSON part is");
    inferd_kserve_request_deinit(&r);
    // Binary data after a small header does not count.
    assert_int_equal(inferd_kserve_parse_infer(&text, body, n, 2, &r, &err), INFERD_EINVAL);
    assert_contains(err.msg, "invalid JSON");
    inferd_kserve_request_deinit(&r);
    free(body);
}

static void test_output_selection(void **state) {
    (void)state;
    inferd_kserve_request r;
    inferd_error err;
    int rc = parse(&text,
                   TEXT_OK ",\"parameters\":{\"binary_data_output\":true},\"outputs\":["
                           "{\"name\":\"hidden\",\"parameters\":{\"binary_data\":false}},"
                           "{\"name\":\"logits\"}]}",
                   -1, &r, &err);
    if (rc)
        fail_msg("rc %d: %s", rc, err.msg);
    assert_int_equal(r.n_outputs, 2);
    assert_int_equal(r.output_index[0], 1);
    assert_int_equal(r.output_binary[0], 0);
    assert_int_equal(r.output_index[1], 0);
    assert_int_equal(r.output_binary[1], 1); // request-level default
    inferd_kserve_request_deinit(&r);
}

static void test_format_json_and_binary(void **state) {
    (void)state;
    inferd_kserve_request r;
    inferd_error err;
    assert_int_equal(parse(&text, TEXT_OK ",\"id\":\"a\\\"b\",\"outputs\":[{\"name\":\"logits\"}]}",
                           -1, &r, &err),
                     0);
    float logits[4] = {0.5f, -1.25f, NAN, INFINITY};
    float hidden[8] = {0};
    inferd_tensor outs[2] = {
        {.dtype = INFERD_DTYPE_F32, .rank = 2, .dims = {2, 2}, .data = logits, .nbytes = 16},
        {.dtype = INFERD_DTYPE_F32, .rank = 3, .dims = {2, 1, 4}, .data = hidden, .nbytes = 32},
    };
    char *body;
    size_t len, jl;
    assert_int_equal(inferd_kserve_format_infer(&text, &r, outs, &body, &len, &jl, &err), 0);
    assert_int_equal(len, jl);
    char *text_body = strndup(body, len);
    assert_string_equal(text_body,
                        "{\"model_name\":\"clf\",\"model_version\":\"3\",\"id\":\"a\\\"b\","
                        "\"outputs\":[{\"name\":\"logits\",\"datatype\":\"FP32\",\"shape\":[2,2],"
                        "\"data\":[0.5,-1.25,NaN,Infinity]}]}");
    free(text_body);
    inferd_free(body);

    r.output_binary[0] = 1;
    assert_int_equal(inferd_kserve_format_infer(&text, &r, outs, &body, &len, &jl, &err), 0);
    assert_int_equal(len, jl + 16);
    assert_memory_equal(body + jl, logits, 16);
    text_body = strndup(body, jl);
    assert_contains(text_body, "\"parameters\":{\"binary_data_size\":16}");
    assert_not_contains(text_body, "\"data\"");
    free(text_body);
    inferd_free(body);
    inferd_kserve_request_deinit(&r);
}

/* Every allocation of parsing a request (JSON, and JSON with binary data) and formatting its
 * response fails in turn: each attempt ends in an error naming the problem or in success, and
 * frees what it took (LeakSanitizer checks under make unit-asan). */
static void test_out_of_memory_anywhere_in_a_request(void **state) {
    (void)state;
    const char *json = "{\"id\":\"r1\",\"inputs\":[{\"name\":\"input_ids\",\"shape\":[1,2],"
                       "\"datatype\":\"INT64\",\"parameters\":{\"binary_data_size\":16}},"
                       "{\"name\":\"attention_mask\",\"shape\":[1,2],\"datatype\":\"INT64\","
                       "\"data\":[1,1]}],\"outputs\":[{\"name\":\"logits\",\"parameters\":"
                       "{\"binary_data\":true}},{\"name\":\"hidden\"}]}";
    uint8_t bin[512];
    size_t jl = strlen(json);
    memcpy(bin, json, jl);
    memset(bin + jl, 1, 16);
    const char *plain = TEXT_OK ",\"id\":\"r2\"}";
    struct {
        const uint8_t *body;
        size_t len;
        long long hl;
    } reqs[] = {{(const uint8_t *)plain, strlen(plain), -1}, {bin, jl + 16, (long long)jl}};
    float logits[4] = {1, 2, 3, 4}, hidden[8] = {0};
    inferd_tensor outs[2] = {
        {.dtype = INFERD_DTYPE_F32, .rank = 2, .dims = {2, 2}, .data = logits, .nbytes = 16},
        {.dtype = INFERD_DTYPE_F32, .rank = 3, .dims = {2, 1, 4}, .data = hidden, .nbytes = 32},
    };
    for (size_t q = 0; q < sizeof reqs / sizeof reqs[0]; q++) {
        int completed = 0;
        for (long nth = 1; nth < 200 && !completed; nth++) {
            inferd_kserve_request r;
            inferd_error err = {0};
            char *body = NULL;
            size_t len, json_len;
            inferd_alloc_fail_after(nth);
            int rc =
                inferd_kserve_parse_infer(&text, reqs[q].body, reqs[q].len, reqs[q].hl, &r, &err);
            if (rc == 0) {
                // One row of output for the binary request's one row.
                outs[0].dims[0] = outs[1].dims[0] = r.inputs[0].dims[0];
                rc = inferd_kserve_format_infer(&text, &r, outs, &body, &len, &json_len, &err);
            }
            inferd_alloc_fail_after(0);
            if (rc == 0) {
                completed = 1;
                inferd_free(body);
            } else if (err.code == 0 || !err.msg[0]) {
                fail_msg("request %zu: allocation %ld failed without an error message", q, nth);
            }
            inferd_kserve_request_deinit(&r);
        }
        assert_true(completed);
    }
}

static void test_format_other_types(void **state) {
    (void)state;
    static const inferd_tensor_desc outd[] = {{"s", INFERD_DTYPE_STRING, 1, {-1}},
                                              {"h", INFERD_DTYPE_F16, 1, {-1}},
                                              {"b", INFERD_DTYPE_BOOL, 1, {-1}},
                                              {"u", INFERD_DTYPE_U64, 1, {-1}}};
    static const inferd_tensor_desc ind[] = {{"x", INFERD_DTYPE_I64, 1, {-1}}};
    static const inferd_kserve_model m = {.name = "t",
                                          .version = 2,
                                          .max_batch = 4,
                                          .n_inputs = 1,
                                          .inputs = ind,
                                          .n_outputs = 4,
                                          .outputs = outd};
    inferd_kserve_request r;
    inferd_error err;
    assert_int_equal(
        parse(&m,
              "{\"inputs\":[{\"name\":\"x\",\"shape\":[2],\"datatype\":\"INT64\",\"data\":[1,2]}]}",
              -1, &r, &err),
        0);
    uint8_t s[] = {1, 0, 0, 0, 'a', 2, 0, 0, 0, 0xff, '"'};
    uint16_t h[2] = {0x3c00, 0xc000}; // 1.0, -2.0
    uint8_t b[2] = {1, 0};
    uint64_t u[2] = {UINT64_MAX, 0};
    inferd_tensor outs[4] = {
        {.dtype = INFERD_DTYPE_STRING, .rank = 1, .dims = {2}, .data = s, .nbytes = sizeof s},
        {.dtype = INFERD_DTYPE_F16, .rank = 1, .dims = {2}, .data = h, .nbytes = 4},
        {.dtype = INFERD_DTYPE_BOOL, .rank = 1, .dims = {2}, .data = b, .nbytes = 2},
        {.dtype = INFERD_DTYPE_U64, .rank = 1, .dims = {2}, .data = u, .nbytes = 16},
    };
    char *body;
    size_t len, jl;
    assert_int_equal(inferd_kserve_format_infer(&m, &r, outs, &body, &len, &jl, &err), 0);
    char *t = strndup(body, len);
    // Invalid UTF-8 comes out escaped, so the JSON stays valid.
    assert_contains(t, "\"data\":[\"a\",\"\\u00ff\\\"\"]");
    assert_contains(t, "\"datatype\":\"FP16\",\"shape\":[2],\"data\":[1,-2]");
    assert_contains(t, "\"data\":[true,false]");
    assert_contains(t, "\"data\":[18446744073709551615,0]");
    free(t);
    inferd_free(body);
    inferd_kserve_request_deinit(&r);
}

/* Labels for the classification tests: classes 0 and 2 have one, 1 has none. */
static const char *test_label(const void *ctx, int64_t index) {
    (void)ctx;
    return index == 0 ? "neg" : index == 2 ? "pos" : NULL;
}

/* Splits a BYTES tensor (4-byte length prefixes) into strings joined by '|'. */
static void join_bytes(const uint8_t *p, size_t n, char *out, size_t cap) {
    size_t o = 0;
    out[0] = 0;
    for (size_t off = 0; off + 4 <= n;) {
        uint32_t l = (uint32_t)p[off] | (uint32_t)p[off + 1] << 8 | (uint32_t)p[off + 2] << 16 |
                     (uint32_t)p[off + 3] << 24;
        o += (size_t)snprintf(out + o, cap - o, "%s%.*s", off ? "|" : "", (int)l,
                              (const char *)p + off + 4);
        off += 4 + l;
    }
}

static void test_classification(void **state) {
    (void)state;
    static const inferd_tensor_desc outd[] = {{"scores", INFERD_DTYPE_F32, 2, {-1, 3}},
                                              {"ids", INFERD_DTYPE_I64, 2, {-1, 2}}};
    static const inferd_tensor_desc ind[] = {{"x", INFERD_DTYPE_I64, 1, {-1}}};
    inferd_kserve_model m = {.name = "c",
                             .version = 1,
                             .max_batch = 4,
                             .n_inputs = 1,
                             .inputs = ind,
                             .n_outputs = 2,
                             .outputs = outd};
    m.label_of = test_label;
    m.labels_output = 0;
    inferd_kserve_request r;
    inferd_error err;
    const char *req = "{\"inputs\":[{\"name\":\"x\",\"shape\":[2],\"datatype\":\"INT64\","
                      "\"data\":[1,2]}],\"outputs\":[{\"name\":\"scores\",\"parameters\":"
                      "{\"classification\":2}},{\"name\":\"ids\",\"parameters\":"
                      "{\"classification\":5,\"binary_data\":true}}]}";
    assert_int_equal(parse(&m, req, -1, &r, &err), 0);
    assert_int_equal(r.output_class[0], 2);
    assert_int_equal(r.output_class[1], 5);
    // Row 0: the best is class 2 (labelled), then 1 (no label). Row 1: a tie between 0 and 1
    // goes to the lower index; NaN is never first.
    float scores[6] = {0.25f, 0.5f, 4.0f, -1.0f, -1.0f, NAN};
    int64_t ids[4] = {-7, 9, 3, 3};
    inferd_tensor outs[2] = {
        {.dtype = INFERD_DTYPE_F32, .rank = 2, .dims = {2, 3}, .data = scores, .nbytes = 24},
        {.dtype = INFERD_DTYPE_I64, .rank = 2, .dims = {2, 2}, .data = ids, .nbytes = 32},
    };
    char *body;
    size_t len, jl;
    assert_int_equal(inferd_kserve_format_infer(&m, &r, outs, &body, &len, &jl, &err), 0);
    char *head = strndup(body, jl);
    assert_contains(head, "{\"name\":\"scores\",\"datatype\":\"BYTES\",\"shape\":[2,2],"
                          "\"data\":[\"4.000000:2:pos\",\"0.500000:1\",\"-1.000000:0:neg\","
                          "\"-1.000000:1\"]}");
    // Asked for 5 of 2 classes: both, as binary BYTES; labels belong to "scores" only.
    assert_contains(head, "{\"name\":\"ids\",\"datatype\":\"BYTES\",\"shape\":[2,2],"
                          "\"parameters\":{\"binary_data_size\":");
    char joined[256];
    join_bytes((const uint8_t *)body + jl, len - jl, joined, sizeof joined);
    assert_string_equal(joined, "9:1|-7:0|3:0|3:1");
    free(head);
    inferd_free(body);
    inferd_kserve_request_deinit(&r);

    // Without a batch dim the whole tensor is one entry: shape [N].
    static const inferd_tensor_desc flat_out[] = {{"o", INFERD_DTYPE_F32, 1, {2}}};
    static const inferd_kserve_model flat = {.name = "f",
                                             .version = 1,
                                             .max_batch = 0,
                                             .n_inputs = 1,
                                             .inputs = ind,
                                             .n_outputs = 1,
                                             .outputs = flat_out};
    assert_int_equal(
        parse(&flat,
              "{\"inputs\":[{\"name\":\"x\",\"shape\":[2],\"datatype\":\"INT64\",\"data\":[1,2]}],"
              "\"outputs\":[{\"name\":\"o\",\"parameters\":{\"classification\":1}}]}",
              -1, &r, &err),
        0);
    float o[2] = {-3.5f, 1e-7f};
    inferd_tensor one = {.dtype = INFERD_DTYPE_F32, .rank = 1, .dims = {2}, .data = o, .nbytes = 8};
    assert_int_equal(inferd_kserve_format_infer(&flat, &r, &one, &body, &len, &jl, &err), 0);
    head = strndup(body, len);
    assert_contains(head, "\"datatype\":\"BYTES\",\"shape\":[1],\"data\":[\"0.000000:1\"]");
    free(head);
    inferd_free(body);
    inferd_kserve_request_deinit(&r);

    // A BYTES output cannot be classified.
    static const inferd_tensor_desc sout[] = {{"s", INFERD_DTYPE_STRING, 1, {-1}}};
    static const inferd_kserve_model sm = {.name = "s",
                                           .version = 1,
                                           .max_batch = 4,
                                           .n_inputs = 1,
                                           .inputs = ind,
                                           .n_outputs = 1,
                                           .outputs = sout};
    assert_int_equal(
        parse(&sm,
              "{\"inputs\":[{\"name\":\"x\",\"shape\":[2],\"datatype\":\"INT64\",\"data\":[1,2]}],"
              "\"outputs\":[{\"name\":\"s\",\"parameters\":{\"classification\":1}}]}",
              -1, &r, &err),
        INFERD_EINVAL);
    assert_string_equal(err.msg, "outputs[0].parameters.classification: output 's' is BYTES; "
                                 "only numeric outputs can be classified");
    inferd_kserve_request_deinit(&r);
}

static void test_metadata(void **state) {
    (void)state;
    inferd_strbuf b;
    inferd_strbuf_init(&b);
    long versions[] = {1, 3};
    inferd_kserve_format_metadata(&b, &text, versions, 2, "onnx", NULL);
    assert_string_equal(
        b.data, "{\"name\":\"clf\",\"versions\":[\"1\",\"3\"],\"platform\":\"onnx\",\"inputs\":["
                "{\"name\":\"input_ids\",\"datatype\":\"INT64\",\"shape\":[-1,-1]},"
                "{\"name\":\"attention_mask\",\"datatype\":\"INT64\",\"shape\":[-1,-1]}],"
                "\"outputs\":[{\"name\":\"logits\",\"datatype\":\"FP32\",\"shape\":[-1,2]},"
                "{\"name\":\"hidden\",\"datatype\":\"FP32\",\"shape\":[-1,-1,4]}]}");
    inferd_strbuf_deinit(&b);
}

static void test_metadata_with_text_signature(void **state) {
    (void)state;
    static const inferd_tensor_desc sig_in[] = {{"text", INFERD_DTYPE_STRING, 1, {-1}}};
    static const inferd_tensor_desc sig_out[] = {{"label", INFERD_DTYPE_STRING, 1, {-1}},
                                                 {"score", INFERD_DTYPE_F32, 1, {-1}}};
    const inferd_kserve_model sig = {.name = "clf",
                                     .version = 3,
                                     .max_batch = 0,
                                     .n_inputs = 1,
                                     .inputs = sig_in,
                                     .n_outputs = 2,
                                     .outputs = sig_out};
    inferd_strbuf b;
    inferd_strbuf_init(&b);
    long versions[] = {3};
    inferd_kserve_format_metadata(&b, &text, versions, 1, "onnx", &sig);
    // The raw signature stays as it was; the text one is an extra member.
    assert_contains(b.data, "\"outputs\":[{\"name\":\"logits\"");
    assert_contains(b.data, ",\"text\":{\"inputs\":[{\"name\":\"text\",\"datatype\":\"BYTES\","
                            "\"shape\":[-1]}],\"outputs\":[{\"name\":\"label\",\"datatype\":"
                            "\"BYTES\",\"shape\":[-1]},{\"name\":\"score\",\"datatype\":\"FP32\","
                            "\"shape\":[-1]}]}}");
    inferd_strbuf_deinit(&b);
}

static void test_names_input(void **state) {
    (void)state;
    const char *a = "{\"inputs\":[{\"name\":\"ids\"},{\"name\":\"text\",\"shape\":[1]}]}";
    assert_int_equal(inferd_kserve_names_input((const uint8_t *)a, strlen(a), -1, "text"), 1);
    assert_int_equal(inferd_kserve_names_input((const uint8_t *)a, strlen(a), -1, "mask"), 0);
    // Only the JSON header counts; binary data after it is not JSON.
    char body[128];
    size_t jl = strlen(a);
    memcpy(body, a, jl);
    memcpy(body + jl, "\xff\xfe\x00\x01", 4);
    assert_int_equal(
        inferd_kserve_names_input((const uint8_t *)body, jl + 4, (long long)jl, "text"), 1);
    assert_int_equal(inferd_kserve_names_input((const uint8_t *)"{\"inputs\":", 10, -1, "text"), 0);
    assert_int_equal(inferd_kserve_names_input((const uint8_t *)"[1]", 3, -1, "text"), 0);
}

static void test_invalid_utf8_names_the_element(void **state) {
    (void)state;
    inferd_kserve_request r;
    inferd_error err;
    const char *body = "{\"inputs\":[{\"name\":\"s\",\"shape\":[2],\"datatype\":\"BYTES\","
                       "\"data\":[\"fine\",\"caf\xe9\"]}]}";
    assert_int_equal(parse(&all, body, -1, &r, &err), INFERD_EINVAL);
    assert_contains(err.msg, "inputs[0].data[1]: not valid UTF-8");
    inferd_kserve_request_deinit(&r);
    body = "{\"id\":\"x\",\"inputs\":[{\"name\":\"s\",\"shape\":[1],\"datatype\":\"BYTES\","
           "\"data\":[\"\\udc00\"]}]}";
    assert_int_equal(parse(&all, body, -1, &r, &err), INFERD_EINVAL);
    assert_contains(err.msg, "inputs[0].data[0]: not valid UTF-8");
    inferd_kserve_request_deinit(&r);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_json_request),
        cmocka_unit_test(test_inputs_in_any_order),
        cmocka_unit_test(test_every_datatype_from_json),
        cmocka_unit_test(test_binary_inputs),
        cmocka_unit_test(test_binary_bytes_input),
        cmocka_unit_test(test_every_error_names_the_field),
        cmocka_unit_test(test_binary_length_errors),
        cmocka_unit_test(test_binary_sizes_that_wrap_around),
        cmocka_unit_test(test_json_part_over_the_limit),
        cmocka_unit_test(test_output_selection),
        cmocka_unit_test(test_format_json_and_binary),
        cmocka_unit_test(test_out_of_memory_anywhere_in_a_request),
        cmocka_unit_test(test_format_other_types),
        cmocka_unit_test(test_classification),
        cmocka_unit_test(test_metadata),
        cmocka_unit_test(test_metadata_with_text_signature),
        cmocka_unit_test(test_names_input),
        cmocka_unit_test(test_invalid_utf8_names_the_element),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
