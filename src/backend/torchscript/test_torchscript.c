/* test_torchscript.c: the TorchScript backend through backend.h, on the fixtures of
 * tools/make_torch_fixtures.py: logits against PyTorch eager and against the ONNX engine on the
 * same weights, the declarations checked at load, broken and corrupt files refused, runs that
 * raise, memory charged and returned, concurrent runs. Built without libtorch, it checks that
 * a model.pt is refused with the reason. Run from the repository root (make unit does). */
#include <jansson.h>
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

#include "backend/backend.h"
#include "backend/torchscript/torchscript.h"
#include "torch_config.h"

#define FIX "tests/fixtures/torch"
#define BERT_PT FIX "/bert/1/model.pt"
#define BERT_ONNX "tests/fixtures/text/bert/1/model.onnx"
#define PEERS "bench/.peers/models"

#define assert_contains(haystack, needle)                                                          \
    do {                                                                                           \
        if (!strstr((haystack), (needle)))                                                         \
            fail_msg("\"%s\" does not contain \"%s\"", (haystack), (needle));                      \
    } while (0)

#define assert_ok(rc, err)                                                                         \
    do {                                                                                           \
        if ((rc) != 0)                                                                             \
            fail_msg("rc %d: %s", (rc), (err).msg);                                                \
    } while (0)

/* With libtorch in the build the plugin must load (a failure is the test's failure); without
 * it the tests that need it are skipped. */
static void need_torch(void) {
    inferd_error err = {0};
    int rc = inferd_torchscript_available(&err);
#ifdef INFERD_TORCH_PLUGIN_PATH
    assert_ok(rc, err);
#else
    if (rc < 0)
        skip();
#endif
}

static const inferd_backend_platform *ts_platform(void) {
    return inferd_backend_find_platform("torchscript");
}

static inferd_tensor_desc decl(const char *name, inferd_dtype t, int rank, int64_t d0, int64_t d1) {
    inferd_tensor_desc d = {.name = name, .dtype = t, .rank = rank};
    d.dims[0] = d0;
    d.dims[1] = d1;
    return d;
}

/* The bert fixture's declarations (as its config.json has them). */
static inferd_tensor_desc bert_in[3], bert_out[1];

static inferd_backend_options bert_opts(inferd_mem_account *acct) {
    bert_in[0] = decl("input_ids", INFERD_DTYPE_I64, 2, -1, -1);
    bert_in[1] = decl("attention_mask", INFERD_DTYPE_I64, 2, -1, -1);
    bert_in[2] = decl("token_type_ids", INFERD_DTYPE_I64, 2, -1, -1);
    bert_out[0] = decl("logits", INFERD_DTYPE_F32, 2, -1, 3);
    return (inferd_backend_options){
        .acct = acct, .inputs = bert_in, .n_inputs = 3, .outputs = bert_out, .n_outputs = 1};
}

static inferd_backend_model *load_ok(const char *path, const inferd_backend_options *o) {
    inferd_backend_model *m = NULL;
    inferd_error err = {0};
    int rc = inferd_backend_load(ts_platform(), path, o, &m, &err);
    assert_ok(rc, err);
    assert_non_null(m);
    return m;
}

/* Loads path expecting failure with code and a message containing want. */
static void load_fails(const char *path, const inferd_backend_options *o, int code,
                       const char *want) {
    inferd_backend_model *m = NULL;
    inferd_error err = {0};
    int rc = inferd_backend_load(ts_platform(), path, o, &m, &err);
    if (rc == 0)
        fail_msg("%s loaded; expected an error containing \"%s\"", path, want);
    assert_int_equal(rc, code);
    assert_int_equal(err.code, code);
    assert_null(m);
    assert_contains(err.msg, want);
}

/* ---- cases from a check.json: {"cases": [{"input_ids": [[..]], ..., "logits": [[..]]}]} ---- */

typedef struct {
    int batch, seq, n_labels;
    int64_t *ids, *mask, *types;
    float *logits;
} check_case;

static int64_t *matrix_i64(json_t *rows, int batch, int seq) {
    int64_t *out = calloc((size_t)(batch * seq), sizeof *out);
    for (int r = 0; r < batch; r++)
        for (int c = 0; c < seq; c++)
            out[r * seq + c] = json_integer_value(json_array_get(json_array_get(rows, r), c));
    return out;
}

static int load_cases(const char *path, check_case *cases, int cap) {
    json_error_t jerr;
    json_t *root = json_load_file(path, 0, &jerr);
    if (!root)
        fail_msg("%s: %s", path, jerr.text);
    json_t *arr = json_object_get(root, "cases");
    int n = 0;
    for (size_t i = 0; i < json_array_size(arr) && n < cap; i++, n++) {
        json_t *c = json_array_get(arr, i);
        json_t *ids = json_object_get(c, "input_ids");
        check_case *k = &cases[n];
        k->batch = (int)json_array_size(ids);
        k->seq = (int)json_array_size(json_array_get(ids, 0));
        k->ids = matrix_i64(ids, k->batch, k->seq);
        k->mask = matrix_i64(json_object_get(c, "attention_mask"), k->batch, k->seq);
        json_t *tt = json_object_get(c, "token_type_ids");
        k->types = tt ? matrix_i64(tt, k->batch, k->seq) : NULL;
        json_t *lg = json_object_get(c, "logits");
        k->n_labels = (int)json_array_size(json_array_get(lg, 0));
        k->logits = calloc((size_t)(k->batch * k->n_labels), sizeof(float));
        for (int r = 0; r < k->batch; r++)
            for (int j = 0; j < k->n_labels; j++)
                k->logits[r * k->n_labels + j] =
                    (float)json_real_value(json_array_get(json_array_get(lg, r), j));
    }
    json_decref(root);
    return n;
}

static void free_cases(check_case *cases, int n) {
    for (int i = 0; i < n; i++) {
        free(cases[i].ids);
        free(cases[i].mask);
        free(cases[i].types);
        free(cases[i].logits);
    }
}

static inferd_tensor i64_tensor(int64_t *data, int batch, int seq) {
    inferd_tensor t = {.dtype = INFERD_DTYPE_I64, .rank = 2, .data = data};
    t.dims[0] = batch;
    t.dims[1] = seq;
    t.nbytes = (size_t)(batch * seq) * sizeof(int64_t);
    return t;
}

/* Runs one case; returns the logits (caller frees with inferd_free). */
static float *run_case(inferd_backend_model *m, const check_case *k, int n_inputs, int threads) {
    inferd_tensor in[3] = {i64_tensor(k->ids, k->batch, k->seq),
                           i64_tensor(k->mask, k->batch, k->seq),
                           i64_tensor(k->types, k->batch, k->seq)};
    inferd_tensor out[1];
    inferd_error err = {0};
    int rc = inferd_backend_run(m, in, out, threads, &err);
    assert_ok(rc, err);
    assert_int_equal(out[0].dtype, INFERD_DTYPE_F32);
    assert_int_equal(out[0].rank, 2);
    assert_int_equal(out[0].dims[0], k->batch);
    assert_int_equal(out[0].dims[1], k->n_labels);
    (void)n_inputs;
    return out[0].data;
}

static double max_abs_diff(const float *a, const float *b, int n) {
    double worst = 0;
    for (int i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (!(d <= worst))
            worst = d; // NaN propagates as a failure
    }
    return worst;
}

#define assert_close(a, b, n, tol, what)                                                           \
    do {                                                                                           \
        double d_ = max_abs_diff((a), (b), (n));                                                   \
        if (!(d_ <= (tol)))                                                                        \
            fail_msg("%s: max |diff| %g > %g (first values %g vs %g)", (what), d_, (double)(tol),  \
                     (double)(a)[0], (double)(b)[0]);                                              \
    } while (0)

/* ---- without libtorch ---- */

static void test_build_without_libtorch_refuses_with_reason(void **state) {
    (void)state;
#ifdef INFERD_TORCH_PLUGIN_PATH
    skip();
#endif
    inferd_mem_account acct;
    inferd_mem_account_init(&acct);
    inferd_backend_options o = bert_opts(&acct);
    load_fails(
        BERT_PT, &o, INFERD_EUNSUPPORTED,
        "this build of inferd has no TorchScript support (install libtorch-dev and rebuild)");
    assert_int_equal(inferd_mem_account_bytes(&acct), 0);
}

/* ---- with libtorch ---- */

static void test_platform_names_and_detection(void **state) {
    (void)state;
    need_torch();
    assert_ptr_equal(inferd_backend_find_platform("pytorch_libtorch"), ts_platform());
    assert_string_equal(ts_platform()->file_name, "model.pt");
    assert_ptr_equal(inferd_backend_detect_platform(FIX "/bert/1"), ts_platform());
    // model.onnx wins when both are present (table order).
    assert_string_equal(inferd_backend_detect_platform("tests/fixtures/text/bert/1")->name, "onnx");
}

static void test_bert_matches_pytorch_eager(void **state) {
    (void)state;
    need_torch();
    check_case cases[4];
    int n = load_cases(FIX "/check.json", cases, 4);
    assert_int_equal(n, 2);
    inferd_backend_options o = bert_opts(NULL);
    inferd_backend_model *m = load_ok(BERT_PT, &o);
    assert_string_equal(inferd_backend_model_platform(m)->name, "torchscript");
    assert_int_equal(inferd_backend_input_count(m), 3);
    assert_string_equal(inferd_backend_input(m, 2)->name, "token_type_ids");
    assert_int_equal(inferd_backend_output(m, 0)->dims[1], 3);
    for (int i = 0; i < n; i++)
        for (int threads = 1; threads <= 2; threads++) {
            float *got = run_case(m, &cases[i], 3, threads);
            char what[64];
            snprintf(what, sizeof what, "case %d threads %d", i, threads);
            assert_close(got, cases[i].logits, cases[i].batch * cases[i].n_labels, 1e-4, what);
            inferd_free(got);
        }
    inferd_backend_destroy(m);
    free_cases(cases, n);
}

/* The same weights exported to ONNX (the text fixture) through inferd's own engine. */
static void test_bert_matches_onnx_engine(void **state) {
    (void)state;
    need_torch();
    check_case cases[4];
    int n = load_cases(FIX "/check.json", cases, 4);
    inferd_backend_options o = bert_opts(NULL);
    inferd_backend_model *pt = load_ok(BERT_PT, &o);
    inferd_backend_model *onnx = NULL;
    inferd_error err = {0};
    // The ONNX model with the same declarations: checked against its graph, and accepted.
    int rc = inferd_backend_load(inferd_backend_find_platform("onnx"), BERT_ONNX, &o, &onnx, &err);
    assert_ok(rc, err);
    for (int i = 0; i < n; i++) {
        float *a = run_case(pt, &cases[i], 3, 1);
        float *b = run_case(onnx, &cases[i], 3, 1);
        assert_close(a, b, cases[i].batch * cases[i].n_labels, 1e-4, "torchscript vs onnx");
        inferd_free(a);
        inferd_free(b);
    }
    inferd_backend_destroy(pt);
    inferd_backend_destroy(onnx);
    free_cases(cases, n);
}

/* The peers' tiny model, .pt against .onnx (skipped until make bench-engine made them). */
static void test_peer_tiny_pt_matches_onnx(void **state) {
    (void)state;
    need_torch();
    if (access(PEERS "/tiny.pt", R_OK) || access(PEERS "/tiny.onnx", R_OK) ||
        access(PEERS "/tiny.check.json", R_OK))
        skip();
    check_case cases[8];
    int n = load_cases(PEERS "/tiny.check.json", cases, 8);
    assert_true(n > 0);
    inferd_tensor_desc in[2] = {decl("input_ids", INFERD_DTYPE_I64, 2, -1, -1),
                                decl("attention_mask", INFERD_DTYPE_I64, 2, -1, -1)};
    inferd_tensor_desc out[1] = {decl("logits", INFERD_DTYPE_F32, 2, -1, 20)};
    inferd_backend_options o = {.inputs = in, .n_inputs = 2, .outputs = out, .n_outputs = 1};
    inferd_backend_model *pt = load_ok(PEERS "/tiny.pt", &o);
    inferd_backend_model *onnx = NULL;
    inferd_error err = {0};
    int rc = inferd_backend_load(inferd_backend_find_platform("onnx"), PEERS "/tiny.onnx", NULL,
                                 &onnx, &err);
    assert_ok(rc, err);
    for (int i = 0; i < n; i++) {
        float *a = run_case(pt, &cases[i], 2, 2);
        float *b = run_case(onnx, &cases[i], 2, 2);
        char what[64];
        snprintf(what, sizeof what, "tiny case %d (batch %d seq %d)", i, cases[i].batch,
                 cases[i].seq);
        assert_close(a, b, cases[i].batch * cases[i].n_labels, 1e-4, what);
        assert_close(a, cases[i].logits, cases[i].batch * cases[i].n_labels, 1e-4, what);
        inferd_free(a);
        inferd_free(b);
    }
    inferd_backend_destroy(pt);
    inferd_backend_destroy(onnx);
    free_cases(cases, n);
}

static void test_memory_is_charged_and_returned(void **state) {
    (void)state;
    need_torch();
    inferd_mem_account acct;
    inferd_mem_account_init(&acct);
    inferd_backend_options o = bert_opts(&acct);
    inferd_backend_model *m = load_ok(BERT_PT, &o);
    // The micro BERT's weights: 77 ids x 32 + 32 positions x 32 + 2 types x 32, two layers of
    // about 8.4k parameters, pooler and classifier: about 28k floats, 110 KB.
    int64_t held = inferd_mem_account_bytes(&acct);
    if (held < 100000 || held > 400000)
        fail_msg("account holds %lld bytes, expected the weights' ~110 KB", (long long)held);
    int64_t mem = inferd_backend_memory(m);
    if (mem < held - 4096 || mem > held + 4096)
        fail_msg("memory() %lld vs account %lld", (long long)mem, (long long)held);
    check_case cases[4];
    int n = load_cases(FIX "/check.json", cases, 4);
    inferd_free(run_case(m, &cases[1], 3, 1));
    // Activations are freed after the run: the account is back to the weights.
    assert_int_equal(inferd_mem_account_bytes(&acct), held);
    inferd_backend_destroy(m);
    assert_int_equal(inferd_mem_account_bytes(&acct), 0);
    free_cases(cases, n);
}

static void test_declarations_are_required(void **state) {
    (void)state;
    need_torch();
    inferd_backend_options o = bert_opts(NULL);
    o.n_inputs = 0;
    o.inputs = NULL;
    load_fails(BERT_PT, &o, INFERD_EINVAL, "config.json must declare the model's inputs");
    o = bert_opts(NULL);
    o.n_outputs = 0;
    load_fails(BERT_PT, &o, INFERD_EINVAL, "config.json must declare the model's outputs");
    load_fails(BERT_PT, NULL, INFERD_EINVAL, "must declare");
}

static void test_inputs_must_follow_forward(void **state) {
    (void)state;
    need_torch();
    inferd_backend_options o = bert_opts(NULL);
    // Swapped: the mask would be fed as ids.
    inferd_tensor_desc t = bert_in[0];
    bert_in[0] = bert_in[1];
    bert_in[1] = t;
    load_fails(BERT_PT, &o, INFERD_EINVAL,
               "config.json inputs[0] is 'attention_mask' but forward's argument 0 is 'input_ids'");
    o = bert_opts(NULL);
    o.n_inputs = 2;
    load_fails(BERT_PT, &o, INFERD_EINVAL,
               "config.json declares 2 inputs but forward takes 3 (input_ids, attention_mask, "
               "token_type_ids)");
    load_fails(FIX "/int_arg.pt",
               &(inferd_backend_options){
                   .inputs = (inferd_tensor_desc[]){decl("x", INFERD_DTYPE_F32, 1, -1, 0),
                                                    decl("k", INFERD_DTYPE_I64, 0, 0, 0)},
                   .n_inputs = 2,
                   .outputs = bert_out,
                   .n_outputs = 1},
               INFERD_EUNSUPPORTED, "forward's argument 'k' is int; inferd passes only Tensor");
}

static void test_outputs_checked_by_warm_up(void **state) {
    (void)state;
    need_torch();
    inferd_backend_options o = bert_opts(NULL);
    bert_out[0].dtype = INFERD_DTYPE_F64;
    load_fails(BERT_PT, &o, INFERD_EINVAL,
               "warm-up run: output 0 ('logits') is FP32 [2, 3] but config.json declares FP64 "
               "[-1, 3]");
    o = bert_opts(NULL);
    bert_out[0].dims[1] = 4;
    load_fails(BERT_PT, &o, INFERD_EINVAL, "is FP32 [2, 3] but config.json declares FP32 [-1, 4]");
    o = bert_opts(NULL);
    inferd_tensor_desc two[2] = {bert_out[0], decl("hidden", INFERD_DTYPE_F32, 2, -1, -1)};
    o.outputs = two;
    o.n_outputs = 2;
    load_fails(BERT_PT, &o, INFERD_EINVAL,
               "warm-up run: the model returned 1 tensor but config.json declares 2 outputs");
    inferd_tensor_desc in1[1] = {decl("input_ids", INFERD_DTYPE_I64, 2, -1, -1)};
    load_fails(FIX "/dict_out.pt",
               &(inferd_backend_options){
                   .inputs = in1, .n_inputs = 1, .outputs = bert_out, .n_outputs = 1},
               INFERD_EUNSUPPORTED, "forward returns Dict[str, Tensor]");
}

static void test_declarations_are_validated(void **state) {
    (void)state;
    need_torch();
    inferd_backend_options o = bert_opts(NULL);
    bert_in[1].name = "input_ids";
    load_fails(BERT_PT, &o, INFERD_EINVAL, "'input_ids' is declared twice");
    o = bert_opts(NULL);
    bert_in[0].dtype = INFERD_DTYPE_STRING;
    load_fails(BERT_PT, &o, INFERD_EUNSUPPORTED, "datatype BYTES has no TorchScript equivalent");
    o = bert_opts(NULL);
    bert_in[0].dims[1] = -7;
    load_fails(BERT_PT, &o, INFERD_EINVAL, "dim 1 is -7");
    // A dtype the model cannot take fails in the warm-up with libtorch's reason.
    o = bert_opts(NULL);
    bert_in[0].dtype = INFERD_DTYPE_F32;
    load_fails(BERT_PT, &o, INFERD_EINVAL, "warm-up run: the TorchScript model raised");
}

static void test_two_outputs_and_an_integer_one(void **state) {
    (void)state;
    need_torch();
    inferd_tensor_desc in[2] = {decl("input_ids", INFERD_DTYPE_I64, 2, -1, -1),
                                decl("attention_mask", INFERD_DTYPE_I64, 2, -1, -1)};
    inferd_tensor_desc out[2] = {decl("scores", INFERD_DTYPE_F32, 2, -1, 3),
                                 decl("best", INFERD_DTYPE_I64, 1, -1, 0)};
    inferd_backend_options o = {.inputs = in, .n_inputs = 2, .outputs = out, .n_outputs = 2};
    inferd_backend_model *m = load_ok(FIX "/multi.pt", &o);
    int64_t ids[6] = {1, 2, 3, 40, 41, 0}, mask[6] = {1, 1, 1, 1, 1, 0};
    inferd_tensor t[2] = {i64_tensor(ids, 2, 3), i64_tensor(mask, 2, 3)};
    inferd_tensor res[2];
    inferd_error err = {0};
    int rc = inferd_backend_run(m, t, res, 1, &err);
    assert_ok(rc, err);
    assert_int_equal(res[1].dtype, INFERD_DTYPE_I64);
    assert_int_equal(res[1].rank, 1);
    assert_int_equal(res[1].dims[0], 2);
    const float *s = res[0].data;
    const int64_t *best = res[1].data;
    for (int r = 0; r < 2; r++) {
        int arg = 0;
        for (int j = 1; j < 3; j++)
            if (s[r * 3 + j] > s[r * 3 + arg])
                arg = j;
        assert_int_equal(best[r], arg);
        float sum = s[r * 3] + s[r * 3 + 1] + s[r * 3 + 2];
        if (fabsf(sum - 1.0f) > 1e-5f)
            fail_msg("row %d: softmax sums to %g, not 1", r, (double)sum);
    }
    inferd_free(res[0].data);
    inferd_free(res[1].data);
    inferd_backend_destroy(m);
}

static void test_run_that_raises_is_an_error_and_the_model_keeps_serving(void **state) {
    (void)state;
    need_torch();
    inferd_tensor_desc in[1] = {decl("input_ids", INFERD_DTYPE_I64, 2, -1, -1)};
    inferd_tensor_desc out[1] = {decl("sum", INFERD_DTYPE_F32, 2, -1, 1)};
    inferd_backend_options o = {.inputs = in, .n_inputs = 1, .outputs = out, .n_outputs = 1};
    inferd_backend_model *m = load_ok(FIX "/raises.pt", &o);
    int64_t bad[2] = {3, -1}, good[2] = {3, 4};
    inferd_tensor t = i64_tensor(bad, 1, 2), res[1];
    inferd_error err = {0};
    int rc = inferd_backend_run(m, &t, res, 1, &err);
    assert_int_equal(rc, INFERD_EINVAL);
    assert_contains(err.msg, "the TorchScript model raised");
    assert_contains(err.msg, "negative ids are not supported");
    t = i64_tensor(good, 1, 2);
    rc = inferd_backend_run(m, &t, res, 1, &err);
    assert_ok(rc, err);
    assert_true(*(float *)res[0].data == 7.0f);
    inferd_free(res[0].data);
    inferd_backend_destroy(m);
}

static void test_inputs_are_checked_before_the_run(void **state) {
    (void)state;
    need_torch();
    inferd_backend_options o = bert_opts(NULL);
    inferd_backend_model *m = load_ok(BERT_PT, &o);
    int64_t ids[4] = {2, 16, 17, 3}, ones[4] = {1, 1, 1, 1}, zeros[4] = {0};
    inferd_tensor in[3] = {i64_tensor(ids, 1, 4), i64_tensor(ones, 1, 4), i64_tensor(zeros, 1, 4)};
    inferd_tensor out[1];
    inferd_error err = {0};
    in[1].dtype = INFERD_DTYPE_I32;
    in[1].nbytes = 16;
    assert_int_equal(inferd_backend_run(m, in, out, 1, &err), INFERD_EINVAL);
    assert_contains(err.msg, "input 'attention_mask': INT32 of rank 2");
    in[1] = i64_tensor(ones, 1, 4);
    in[2].nbytes = 8;
    assert_int_equal(inferd_backend_run(m, in, out, 1, &err), INFERD_EINVAL);
    assert_contains(err.msg, "input 'token_type_ids'");
    inferd_backend_destroy(m);
}

static void write_file(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, n, f), n);
    fclose(f);
}

static void test_corrupt_files_are_refused(void **state) {
    (void)state;
    need_torch();
    char dir[] = "/tmp/inferd_ts_XXXXXX";
    assert_non_null(mkdtemp(dir));
    FILE *f = fopen(BERT_PT, "rb");
    assert_non_null(f);
    static char buf[1 << 20];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    assert_true(n > 1000);
    char path[256];
    inferd_mem_account acct;
    inferd_mem_account_init(&acct);
    inferd_backend_options o = bert_opts(&acct);

    snprintf(path, sizeof path, "%s/truncated.pt", dir);
    write_file(path, buf, n / 2);
    load_fails(path, &o, INFERD_EINVAL, "not a TorchScript file libtorch can load");

    // The zip's central directory (at the end) overwritten.
    memcpy(buf + n - 200, "garbage!garbage!garbage!", 24);
    snprintf(path, sizeof path, "%s/tail.pt", dir);
    write_file(path, buf, n);
    load_fails(path, &o, INFERD_EINVAL, "not a TorchScript file libtorch can load");

    // The first entry's header overwritten.
    memcpy(buf, "garbage!garbage!garbage!", 24);
    snprintf(path, sizeof path, "%s/head.pt", dir);
    write_file(path, buf, n);
    load_fails(path, &o, INFERD_EINVAL, "not a TorchScript file libtorch can load");

    snprintf(path, sizeof path, "%s/empty.pt", dir);
    write_file(path, "", 0);
    load_fails(path, &o, INFERD_EINVAL, "not a TorchScript file libtorch can load");

    snprintf(path, sizeof path, "%s/text.pt", dir);
    write_file(path, "def forward(x): return x\n", 25);
    load_fails(path, &o, INFERD_EINVAL, "not a TorchScript file libtorch can load");

    // A state_dict saved with torch.save is a PyTorch file but not TorchScript.
    load_fails(FIX "/state_dict.pt", &o, INFERD_EINVAL, "not a TorchScript file libtorch can load");
    load_fails("/nonexistent/model.pt", &o, INFERD_EINVAL, "not a TorchScript file");
    assert_int_equal(inferd_mem_account_bytes(&acct), 0);

    // Still serving after all that.
    inferd_backend_destroy(load_ok(BERT_PT, &o));
    assert_int_equal(inferd_mem_account_bytes(&acct), 0);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

typedef struct {
    inferd_backend_model *m;
    const check_case *k;
    int failures;
} runner;

static void *run_many(void *arg) {
    runner *r = arg;
    for (int i = 0; i < 20; i++) {
        inferd_tensor in[3] = {i64_tensor(r->k->ids, r->k->batch, r->k->seq),
                               i64_tensor(r->k->mask, r->k->batch, r->k->seq),
                               i64_tensor(r->k->types, r->k->batch, r->k->seq)};
        inferd_tensor out[1];
        inferd_error err = {0};
        if (inferd_backend_run(r->m, in, out, 1, &err) != 0) {
            r->failures++;
            continue;
        }
        if (max_abs_diff(out[0].data, r->k->logits, r->k->batch * r->k->n_labels) > 1e-4)
            r->failures++;
        inferd_free(out[0].data);
    }
    return NULL;
}

static void test_concurrent_runs_on_one_model(void **state) {
    (void)state;
    need_torch();
    check_case cases[4];
    int n = load_cases(FIX "/check.json", cases, 4);
    inferd_mem_account acct;
    inferd_mem_account_init(&acct);
    inferd_backend_options o = bert_opts(&acct);
    inferd_backend_model *m = load_ok(BERT_PT, &o);
    int64_t held = inferd_mem_account_bytes(&acct);
    runner r[3] = {{m, &cases[0], 0}, {m, &cases[1], 0}, {m, &cases[1], 0}};
    pthread_t t[3];
    for (int i = 0; i < 3; i++)
        assert_int_equal(pthread_create(&t[i], NULL, run_many, &r[i]), 0);
    for (int i = 0; i < 3; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(r[i].failures, 0);
    }
    assert_int_equal(inferd_mem_account_bytes(&acct), held);
    inferd_backend_destroy(m);
    assert_int_equal(inferd_mem_account_bytes(&acct), 0);
    free_cases(cases, n);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_build_without_libtorch_refuses_with_reason),
        cmocka_unit_test(test_platform_names_and_detection),
        cmocka_unit_test(test_bert_matches_pytorch_eager),
        cmocka_unit_test(test_bert_matches_onnx_engine),
        cmocka_unit_test(test_peer_tiny_pt_matches_onnx),
        cmocka_unit_test(test_memory_is_charged_and_returned),
        cmocka_unit_test(test_declarations_are_required),
        cmocka_unit_test(test_inputs_must_follow_forward),
        cmocka_unit_test(test_outputs_checked_by_warm_up),
        cmocka_unit_test(test_declarations_are_validated),
        cmocka_unit_test(test_two_outputs_and_an_integer_one),
        cmocka_unit_test(test_run_that_raises_is_an_error_and_the_model_keeps_serving),
        cmocka_unit_test(test_inputs_are_checked_before_the_run),
        cmocka_unit_test(test_corrupt_files_are_refused),
        cmocka_unit_test(test_concurrent_runs_on_one_model),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
