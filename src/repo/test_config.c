/* Unit tests for repo/config: defaults, every accepted key, every error class, version policy. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "repo/config.h"

/* Fails printing both strings unless needle occurs in haystack. */
#define assert_contains(haystack, needle)                                                          \
    do {                                                                                           \
        if (!strstr((haystack), (needle)))                                                         \
            fail_msg("\"%s\" does not contain \"%s\"", (haystack), (needle));                      \
    } while (0)

static int parse(inferd_config *c, const char *text, inferd_error *err) {
    inferd_config_init(c);
    memset(err, 0, sizeof *err);
    return inferd_config_parse(c, text, strlen(text), err);
}

static void test_defaults(void **state) {
    (void)state;
    inferd_config c;
    inferd_config_init(&c);
    assert_int_equal(c.max_batch_size, 8);
    assert_int_equal(c.max_batch_size_set, 0);
    assert_int_equal(c.max_queue_delay_us, 0);
    assert_int_equal(c.policy, INFERD_CONFIG_POLICY_LATEST);
    assert_int_equal(c.latest_n, 1);
    assert_int_equal(c.pad_dims, 0);
    assert_string_equal(c.platform, "");
    inferd_config_deinit(&c);
}

static void test_empty_object_keeps_defaults(void **state) {
    (void)state;
    inferd_config c;
    inferd_error err;
    assert_int_equal(parse(&c, "{}", &err), 0);
    assert_int_equal(c.max_batch_size, 8);
}

static void test_full_config(void **state) {
    (void)state;
    inferd_config c;
    inferd_error err;
    const char *text =
        "{\"name\": \"m\", \"platform\": \"onnxruntime_onnx\", \"max_batch_size\": 16,"
        " \"dynamic_batching\": {\"max_queue_delay_us\": 2000,"
        " \"preferred_batch_sizes\": [8, 4], \"max_queue_size\": 64,"
        " \"default_timeout_us\": 500000, \"pad_dims\": true,"
        " \"length_buckets\": [64, 16, 32]},"
        " \"version_policy\": {\"specific\": [3, 1]}, \"instance_threads\": 2}";
    int rc = parse(&c, text, &err);
    if (rc != 0)
        fail_msg("rc %d: %s", rc, err.msg);
    assert_string_equal(c.name, "m");
    assert_string_equal(c.platform, "onnxruntime_onnx");
    assert_int_equal(c.max_batch_size, 16);
    assert_int_equal(c.max_batch_size_set, 1);
    assert_int_equal(c.max_queue_delay_us, 2000);
    assert_int_equal(c.n_preferred, 2);
    assert_int_equal(c.preferred_batch_sizes[0], 4);
    assert_int_equal(c.preferred_batch_sizes[1], 8);
    assert_int_equal(c.max_queue_size, 64);
    assert_int_equal(c.default_timeout_us, 500000);
    assert_int_equal(c.pad_dims, 1);
    assert_int_equal(c.n_buckets, 3);
    assert_int_equal(c.length_buckets[0], 16);
    assert_int_equal(c.length_buckets[2], 64);
    assert_int_equal(c.policy, INFERD_CONFIG_POLICY_SPECIFIC);
    assert_int_equal(c.n_specific, 2);
    assert_int_equal(c.specific[0], 1);
    assert_int_equal(c.specific[1], 3);
    assert_int_equal(c.instance_threads, 2);
    assert_int_equal(c.pinned, 0);
    assert_int_equal(c.warmup, INFERD_CONFIG_WARMUP_AUTO);
}

static void test_pinned_and_warmup(void **state) {
    (void)state;
    inferd_config c;
    inferd_error err;
    int rc = parse(&c,
                   "{\"pinned\": true, \"max_batch_size\": 4,"
                   " \"warmup\": {\"batch_size\": 4, \"seq_len\": 16, \"text\": \"hello\"}}",
                   &err);
    if (rc != 0)
        fail_msg("rc %d: %s", rc, err.msg);
    assert_int_equal(c.pinned, 1);
    assert_int_equal(c.warmup, INFERD_CONFIG_WARMUP_ON);
    assert_int_equal(c.warmup_batch, 4);
    assert_int_equal(c.warmup_seq, 16);
    assert_string_equal(c.warmup_text, "hello");
    assert_int_equal(parse(&c, "{\"warmup\": false, \"pinned\": false}", &err), 0);
    assert_int_equal(c.warmup, INFERD_CONFIG_WARMUP_OFF);
    assert_int_equal(c.pinned, 0);
    assert_int_equal(parse(&c, "{\"warmup\": true}", &err), 0);
    assert_int_equal(c.warmup, INFERD_CONFIG_WARMUP_ON);
    assert_int_equal(c.warmup_batch, 0);
}

/* Each case: config text, and a fragment the message must contain (naming the key). */
static const struct {
    const char *text;
    const char *msg;
} bad_cases[] = {
    {"{", "invalid JSON at line 1"},
    {"[1]", "must be a JSON object"},
    {"{\"max_batch\": 4}", "unknown key 'max_batch'"},
    {"{\"max_batch_size\": \"8\"}", "max_batch_size: must be an integer"},
    {"{\"max_batch_size\": 8.5}", "max_batch_size: must be an integer"},
    {"{\"max_batch_size\": -1}", "max_batch_size: must be from 0 to 1024, got -1"},
    {"{\"max_batch_size\": 5000}", "max_batch_size: must be from 0 to 1024, got 5000"},
    {"{\"platform\": \"tensorflow\"}", "platform: unknown platform 'tensorflow'"},
    {"{\"platform\": 3}", "platform: must be a string"},
    {"{\"name\": 3}", "name: must be a non-empty string"},
    {"{\"dynamic_batching\": 1}", "dynamic_batching: must be an object"},
    {"{\"dynamic_batching\": {\"delay\": 1}}", "dynamic_batching: unknown key 'delay'"},
    {"{\"dynamic_batching\": {\"max_queue_delay_us\": -5}}",
     "dynamic_batching.max_queue_delay_us: must be from 0"},
    {"{\"dynamic_batching\": {\"preferred_batch_sizes\": 4}}",
     "dynamic_batching.preferred_batch_sizes: must be an array"},
    {"{\"dynamic_batching\": {\"preferred_batch_sizes\": []}}",
     "dynamic_batching.preferred_batch_sizes: must not be empty"},
    {"{\"dynamic_batching\": {\"preferred_batch_sizes\": [2, \"4\"]}}",
     "dynamic_batching.preferred_batch_sizes[1]: must be an integer"},
    {"{\"dynamic_batching\": {\"preferred_batch_sizes\": [2, 2]}}", "2 is listed twice"},
    {"{\"dynamic_batching\": {\"preferred_batch_sizes\": [16]}}",
     "preferred_batch_sizes: 16 exceeds max_batch_size 8"},
    {"{\"dynamic_batching\": {\"max_queue_size\": true}}",
     "dynamic_batching.max_queue_size: must be an integer"},
    {"{\"dynamic_batching\": {\"default_timeout_us\": -1}}",
     "dynamic_batching.default_timeout_us: must be from 0"},
    {"{\"dynamic_batching\": {\"pad_dims\": 1}}",
     "dynamic_batching.pad_dims: must be true or false"},
    {"{\"dynamic_batching\": {\"length_buckets\": [16]}}",
     "dynamic_batching.length_buckets: needs pad_dims true"},
    {"{\"dynamic_batching\": {\"length_buckets\": [0], \"pad_dims\": true}}",
     "dynamic_batching.length_buckets[0]: must be from 1"},
    {"{\"max_batch_size\": 0, \"dynamic_batching\": {\"max_queue_delay_us\": 100}}",
     "batching needs max_batch_size > 0"},
    {"{\"version_policy\": {}}", "version_policy: must be one of"},
    {"{\"version_policy\": {\"latest\": 1, \"all\": true}}", "version_policy: must be one of"},
    {"{\"version_policy\": {\"newest\": 1}}", "version_policy: unknown key 'newest'"},
    {"{\"version_policy\": {\"latest\": 0}}", "version_policy.latest: must be from 1"},
    {"{\"version_policy\": {\"all\": false}}", "version_policy.all: must be true, got false"},
    {"{\"version_policy\": {\"specific\": [1, -2]}}", "version_policy.specific[1]: must be from 1"},
    {"{\"instance_threads\": 0}", "instance_threads: must be from 1 to 1024, got 0"},
    {"{\"max_batch_size\": 1, \"max_batch_size\": 2}", "invalid JSON"},
    {"{\"platform\": \"pytorch\"}",
     "(known: onnx, onnxruntime_onnx, torchscript, pytorch_libtorch)"},
    {"{\"inputs\": {}}", "inputs: must be an array"},
    {"{\"inputs\": []}", "inputs: must not be empty"},
    {"{\"inputs\": [3]}", "inputs[0]: must be an object"},
    {"{\"inputs\": [{\"datatype\": \"FP32\", \"dims\": [1]}]}", "inputs[0]: needs a name"},
    {"{\"inputs\": [{\"name\": \"x\", \"dims\": [1]}]}", "inputs[0] ('x'): needs a datatype"},
    {"{\"outputs\": [{\"name\": \"y\", \"datatype\": \"FP32\"}]}", "outputs[0] ('y'): needs dims"},
    {"{\"inputs\": [{\"name\": \"x\", \"datatype\": \"float\", \"dims\": [1]}]}",
     "inputs[0].datatype: unknown datatype 'float' (KServe names:"},
    {"{\"inputs\": [{\"name\": \"x\", \"datatype\": \"FP32\", \"dims\": [-1, -2]}]}",
     "inputs[0].dims[1]: must be from -1"},
    {"{\"inputs\": [{\"name\": \"x\", \"datatype\": \"FP32\", \"dims\": [1,1,1,1,1,1,1,1,1]}]}",
     "inputs[0].dims: at most 8 dims, got 9"},
    {"{\"inputs\": [{\"name\": \"x\", \"datatype\": \"FP32\", \"dims\": [1], \"shape\": [1]}]}",
     "inputs[0]: unknown key 'shape' (expected name, datatype, dims)"},
    {"{\"outputs\": [{\"name\": \"y\", \"datatype\": \"FP32\", \"dims\": []},"
     " {\"name\": \"y\", \"datatype\": \"INT64\", \"dims\": [2]}]}",
     "outputs: 'y' is declared twice"},
    {"{\"pinned\": 1}", "pinned: must be true or false"},
    {"{\"warmup\": 3}", "warmup: must be false, true or an object"},
    {"{\"warmup\": {\"rows\": 1}}", "warmup: unknown key 'rows'"},
    {"{\"warmup\": {\"batch_size\": 0}}", "warmup.batch_size: must be from 1"},
    {"{\"warmup\": {\"seq_len\": \"8\"}}", "warmup.seq_len: must be an integer"},
    {"{\"warmup\": {\"text\": \"\"}}", "warmup.text: must be a non-empty string"},
    {"{\"max_batch_size\": 2, \"warmup\": {\"batch_size\": 4}}",
     "warmup.batch_size: 4 exceeds max_batch_size 2"},
};

static void test_every_error_names_the_key(void **state) {
    (void)state;
    for (size_t i = 0; i < sizeof bad_cases / sizeof bad_cases[0]; i++) {
        inferd_config c;
        inferd_error err;
        int rc = parse(&c, bad_cases[i].text, &err);
        if (rc != INFERD_EINVAL)
            fail_msg("case %zu (%s): rc %d, expected %d", i, bad_cases[i].text, rc, INFERD_EINVAL);
        assert_int_equal(err.code, INFERD_EINVAL);
        assert_contains(err.msg, "config.json: ");
        assert_contains(err.msg, bad_cases[i].msg);
    }
}

static void test_declared_tensors(void **state) {
    (void)state;
    inferd_config c;
    inferd_error err;
    const char *text =
        "{\"platform\": \"pytorch_libtorch\", \"inputs\": ["
        " {\"name\": \"input_ids\", \"datatype\": \"INT64\", \"dims\": [-1, -1]},"
        " {\"dims\": [-1, 128], \"datatype\": \"BOOL\", \"name\": \"attention_mask\"}],"
        " \"outputs\": [{\"name\": \"logits\", \"datatype\": \"FP32\", \"dims\": [-1, 30]},"
        " {\"name\": \"n\", \"datatype\": \"INT32\", \"dims\": []}]}";
    int rc = parse(&c, text, &err);
    if (rc != 0)
        fail_msg("rc %d: %s", rc, err.msg);
    assert_string_equal(c.platform, "pytorch_libtorch");
    inferd_tensor_desc in[INFERD_CONFIG_MAX_TENSORS], out[INFERD_CONFIG_MAX_TENSORS];
    assert_int_equal(inferd_config_tensor_descs(&c, 0, in), 2);
    assert_int_equal(inferd_config_tensor_descs(&c, 1, out), 2);
    assert_string_equal(in[0].name, "input_ids");
    assert_int_equal(in[0].dtype, INFERD_DTYPE_I64);
    assert_int_equal(in[0].rank, 2);
    assert_int_equal(in[0].dims[0], -1);
    assert_string_equal(in[1].name, "attention_mask");
    assert_int_equal(in[1].dtype, INFERD_DTYPE_BOOL);
    assert_int_equal(in[1].dims[1], 128);
    assert_int_equal(out[0].dims[1], 30);
    assert_int_equal(out[1].dtype, INFERD_DTYPE_I32);
    assert_int_equal(out[1].rank, 0);
    // Without the keys: nothing declared.
    assert_int_equal(parse(&c, "{}", &err), 0);
    assert_int_equal(inferd_config_tensor_descs(&c, 0, in), 0);
    assert_int_equal(inferd_config_tensor_descs(&c, 1, out), 0);
}

static void test_policy_latest(void **state) {
    (void)state;
    inferd_config c;
    inferd_error err;
    long avail[] = {1, 2, 5, 7};
    long out[8];
    assert_int_equal(parse(&c, "{}", &err), 0);
    int n = inferd_config_select_versions(&c, avail, 4, out, 8);
    assert_int_equal(n, 1);
    assert_int_equal(out[0], 7);
    assert_int_equal(parse(&c, "{\"version_policy\": {\"latest\": 3}}", &err), 0);
    n = inferd_config_select_versions(&c, avail, 4, out, 8);
    assert_int_equal(n, 3);
    assert_int_equal(out[0], 2);
    assert_int_equal(out[2], 7);
    assert_int_equal(parse(&c, "{\"version_policy\": {\"latest\": 10}}", &err), 0);
    assert_int_equal(inferd_config_select_versions(&c, avail, 4, out, 8), 4);
    assert_int_equal(inferd_config_select_versions(&c, avail, 0, out, 8), 0);
}

static void test_policy_all_and_specific(void **state) {
    (void)state;
    inferd_config c;
    inferd_error err;
    long avail[] = {1, 2, 5};
    long out[8];
    assert_int_equal(parse(&c, "{\"version_policy\": {\"all\": true}}", &err), 0);
    assert_int_equal(inferd_config_select_versions(&c, avail, 3, out, 8), 3);
    assert_int_equal(out[1], 2);
    // Specific versions come back even when missing on disk, so they can be reported.
    assert_int_equal(parse(&c, "{\"version_policy\": {\"specific\": [5, 9]}}", &err), 0);
    assert_int_equal(inferd_config_select_versions(&c, avail, 3, out, 8), 2);
    assert_int_equal(out[0], 5);
    assert_int_equal(out[1], 9);
    // The output cap is respected.
    assert_int_equal(parse(&c, "{\"version_policy\": {\"all\": true}}", &err), 0);
    assert_int_equal(inferd_config_select_versions(&c, avail, 3, out, 2), 2);
}

static void test_routes(void **state) {
    (void)state;
    inferd_config c;
    inferd_error err;
    const char *text =
        "{\"routes\": [{\"path\": \"/category_predict\", \"input\": \"text\","
        " \"output\": {\"label\": \"category\", \"score\": \"confidence\"}},"
        " {\"path\": \"/teams/nlp/category_predict_nlp\", \"input\": \"texts\", \"batch\": true,"
        " \"version\": 2, \"output\": {\"score\": null, \"top_k\": \"candidates\","
        " \"results\": \"predictions\"}},"
        " {\"path\": \"/a-b_c.d~e:f\", \"input\": \"q\"}]}";
    int rc = parse(&c, text, &err);
    if (rc != 0)
        fail_msg("rc %d: %s", rc, err.msg);
    assert_int_equal(c.n_routes, 3);
    const inferd_config_route *r = &c.routes[0];
    assert_string_equal(r->path, "/category_predict");
    assert_string_equal(r->input, "text");
    assert_int_equal(r->batch, 0);
    assert_int_equal(r->version, 0);
    assert_string_equal(r->label, "category");
    assert_string_equal(r->score, "confidence");
    assert_string_equal(r->top_k, "");
    assert_string_equal(r->results, "");
    r = &c.routes[1];
    assert_string_equal(r->path, "/teams/nlp/category_predict_nlp");
    assert_string_equal(r->input, "texts");
    assert_int_equal(r->batch, 1);
    assert_int_equal(r->version, 2);
    assert_string_equal(r->label, "label"); // the default
    assert_string_equal(r->score, "");      // null: left out
    assert_string_equal(r->top_k, "candidates");
    assert_string_equal(r->results, "predictions");
    r = &c.routes[2];
    assert_string_equal(r->label, "label");
    assert_string_equal(r->score, "score");
    // No routes key: none.
    assert_int_equal(parse(&c, "{}", &err), 0);
    assert_int_equal(c.n_routes, 0);
    assert_int_equal(parse(&c, "{\"routes\": []}", &err), 0);
    assert_int_equal(c.n_routes, 0);
}

static const struct {
    const char *text, *msg;
} bad_routes[] = {
    {"{\"routes\": {}}", "config.json: routes: must be an array of objects, got an object"},
    {"{\"routes\": [3]}", "config.json: routes[0]: must be an object, got an integer"},
    {"{\"routes\": [{\"input\": \"t\"}]}", "config.json: routes[0].path: missing"},
    {"{\"routes\": [{\"path\": \"/p\"}]}", "config.json: routes[0].input: missing"},
    {"{\"routes\": [{\"path\": \"/p\", \"input\": \"t\", \"method\": \"GET\"}]}",
     "config.json: routes[0]: unknown key 'method'"},
    {"{\"routes\": [{\"path\": 7, \"input\": \"t\"}]}",
     "config.json: routes[0].path: must be a string"},
    {"{\"routes\": [{\"path\": \"p\", \"input\": \"t\"}]}",
     "config.json: routes[0].path: must be an absolute path"},
    {"{\"routes\": [{\"path\": \"/a/../b\", \"input\": \"t\"}]}",
     "config.json: routes[0].path: '/a/../b' has a '.' or '..' segment"},
    {"{\"routes\": [{\"path\": \"/a/./b\", \"input\": \"t\"}]}",
     "config.json: routes[0].path: '/a/./b' has a '.' or '..' segment"},
    {"{\"routes\": [{\"path\": \"/a%2Fb\", \"input\": \"t\"}]}",
     "config.json: routes[0].path: '/a%2Fb': character '%' is not allowed"},
    {"{\"routes\": [{\"path\": \"/a b\", \"input\": \"t\"}]}",
     "config.json: routes[0].path: '/a b': character ' ' is not allowed"},
    {"{\"routes\": [{\"path\": \"/a?x=1\", \"input\": \"t\"}]}",
     "config.json: routes[0].path: '/a?x=1': character '?' is not allowed"},
    {"{\"routes\": [{\"path\": \"/a//b\", \"input\": \"t\"}]}",
     "config.json: routes[0].path: '/a//b' has an empty segment"},
    {"{\"routes\": [{\"path\": \"/a/\", \"input\": \"t\"}]}",
     "config.json: routes[0].path: '/a/' has an empty segment"},
    {"{\"routes\": [{\"path\": \"/\", \"input\": \"t\"}]}",
     "config.json: routes[0].path: '/' has an empty segment"},
    {"{\"routes\": [{\"path\": \"/v1/models/m:predict\", \"input\": \"t\"}]}",
     "config.json: routes[0].path: '/v1/models/m:predict' is under the built-in path /v1"},
    {"{\"routes\": [{\"path\": \"/v2\", \"input\": \"t\"}]}",
     "config.json: routes[0].path: '/v2' is under the built-in path /v2"},
    {"{\"routes\": [{\"path\": \"/metrics\", \"input\": \"t\"}]}",
     "is under the built-in path /metrics"},
    {"{\"routes\": [{\"path\": \"/ready\", \"input\": \"t\"}]}",
     "is under the built-in path /ready"},
    {"{\"routes\": [{\"path\": \"/live/x\", \"input\": \"t\"}]}",
     "is under the built-in path /live"},
    {"{\"routes\": [{\"path\": \"/p\", \"input\": \"\"}]}",
     "config.json: routes[0].input: must be a field name"},
    {"{\"routes\": [{\"path\": \"/p\", \"input\": null}]}",
     "config.json: routes[0].input: must be a field name"},
    {"{\"routes\": [{\"path\": \"/p\", \"input\": \"t\", \"batch\": \"yes\"}]}",
     "config.json: routes[0].batch: must be true or false"},
    {"{\"routes\": [{\"path\": \"/p\", \"input\": \"t\", \"version\": 0}]}",
     "config.json: routes[0].version: must be from 1"},
    {"{\"routes\": [{\"path\": \"/p\", \"input\": \"t\", \"version\": \"2\"}]}",
     "config.json: routes[0].version: must be an integer"},
    {"{\"routes\": [{\"path\": \"/p\", \"input\": \"t\", \"output\": []}]}",
     "config.json: routes[0].output: must be an object"},
    {"{\"routes\": [{\"path\": \"/p\", \"input\": \"t\", \"output\": {\"prob\": \"p\"}}]}",
     "config.json: routes[0].output: unknown key 'prob'"},
    {"{\"routes\": [{\"path\": \"/p\", \"input\": \"t\", \"output\": {\"label\": 1}}]}",
     "config.json: routes[0].output.label: must be a field name"},
    {"{\"routes\": [{\"path\": \"/p\", \"input\": \"t\", \"output\": {\"results\": \"r\"}}]}",
     "config.json: routes[0].output.results: only for a route with \"batch\": true"},
    {"{\"routes\": [{\"path\": \"/p\", \"input\": \"t\", \"output\": {\"label\": null, "
     "\"score\": null}}]}",
     "config.json: routes[0].output: names no field"},
    {"{\"routes\": [{\"path\": \"/p\", \"input\": \"t\", \"output\": {\"score\": \"label\"}}]}",
     "config.json: routes[0].output.score: 'label' is also the label field"},
    {"{\"routes\": [{\"path\": \"/p\", \"input\": \"t\"}, {\"path\": \"/q\", \"input\": \"t\"},"
     " {\"path\": \"/p\", \"input\": \"u\"}]}",
     "config.json: routes[2].path: '/p' is also routes[0]"},
    {"{\"routes\": [{\"path\": \"/1\", \"input\": \"t\"}, {\"path\": \"/2\", \"input\": \"t\"},"
     " {\"path\": \"/3\", \"input\": \"t\"}, {\"path\": \"/4\", \"input\": \"t\"},"
     " {\"path\": \"/5\", \"input\": \"t\"}, {\"path\": \"/6\", \"input\": \"t\"},"
     " {\"path\": \"/7\", \"input\": \"t\"}, {\"path\": \"/8\", \"input\": \"t\"},"
     " {\"path\": \"/9\", \"input\": \"t\"}]}",
     "config.json: routes: at most 8, got 9"},
};

static void test_every_route_error_names_the_key(void **state) {
    (void)state;
    for (size_t i = 0; i < sizeof bad_routes / sizeof bad_routes[0]; i++) {
        inferd_config c;
        inferd_error err;
        int rc = parse(&c, bad_routes[i].text, &err);
        if (rc != INFERD_EINVAL)
            fail_msg("case %zu (%s): rc %d, expected %d", i, bad_routes[i].text, rc, INFERD_EINVAL);
        assert_int_equal(err.code, INFERD_EINVAL);
        assert_contains(err.msg, bad_routes[i].msg);
    }
}

static void test_route_path_check(void **state) {
    (void)state;
    inferd_error err = {0};
    assert_int_equal(inferd_config_route_path_check("/category_predict", &err), 0);
    assert_int_equal(inferd_config_route_path_check("/a/b/c", &err), 0);
    // Only the first segment is reserved, and only whole: these are not built-in paths.
    assert_int_equal(inferd_config_route_path_check("/v3", &err), 0);
    assert_int_equal(inferd_config_route_path_check("/metrics2", &err), 0);
    assert_int_equal(inferd_config_route_path_check("/team/v1", &err), 0);
    assert_int_equal(inferd_config_route_path_check("/..a", &err), 0);
    assert_int_equal(inferd_config_route_path_check("/..", &err), INFERD_EINVAL);
    assert_int_equal(inferd_config_route_path_check("", &err), INFERD_EINVAL);
    char long_path[200];
    memset(long_path, 'a', sizeof long_path);
    long_path[0] = '/';
    long_path[128] = 0;
    assert_int_equal(inferd_config_route_path_check(long_path, &err), INFERD_EINVAL);
    assert_contains(err.msg, "at most 127 bytes, got 128");
    long_path[127] = 0;
    assert_int_equal(inferd_config_route_path_check(long_path, &err), 0);
}

static void test_missing_file_is_not_found(void **state) {
    (void)state;
    inferd_config c;
    inferd_error err = {0};
    inferd_config_init(&c);
    int rc = inferd_config_load_file(&c, "/nonexistent/config.json", &err);
    assert_int_equal(rc, INFERD_ENOTFOUND);
    assert_int_equal(c.max_batch_size, 8);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_empty_object_keeps_defaults),
        cmocka_unit_test(test_full_config),
        cmocka_unit_test(test_pinned_and_warmup),
        cmocka_unit_test(test_every_error_names_the_key),
        cmocka_unit_test(test_declared_tensors),
        cmocka_unit_test(test_policy_latest),
        cmocka_unit_test(test_policy_all_and_specific),
        cmocka_unit_test(test_missing_file_is_not_found),
        cmocka_unit_test(test_routes),
        cmocka_unit_test(test_every_route_error_names_the_key),
        cmocka_unit_test(test_route_path_check),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
