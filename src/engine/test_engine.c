/* test_engine.c: loading and running small models built in the test with protobuf-c, and
 * every class of broken or hostile file giving an error instead of a crash. */
#include <dirent.h>
#include <fcntl.h>
#include <math.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "engine/engine.h"
#include "onnx.pb-c.h"
#include "util/npy.h"

/* ---- building models ---- */

typedef struct {
    Onnx__ModelProto model;
    Onnx__GraphProto graph;
    Onnx__OperatorSetIdProto opset, *opsets[1];
    Onnx__NodeProto nodes[8], *node_ptrs[8];
    Onnx__TensorProto inits[8], *init_ptrs[8];
    Onnx__ValueInfoProto ins[4], outs[4], *in_ptrs[4], *out_ptrs[4];
    Onnx__TypeProto types[8];
    Onnx__TypeProto__Tensor ttypes[8];
    Onnx__TensorShapeProto shapes[8];
    Onnx__TensorShapeProto__Dimension dims[8][4], *dim_ptrs[8][4];
    char *in_names[8][4], *out_names[8][4];
    int64_t init_dims[8][4];
    int n_types;
} builder;

static Onnx__ValueInfoProto *value_info(builder *b, Onnx__ValueInfoProto *vi, const char *name,
                                        int dtype, int rank, const int64_t *dims) {
    int t = b->n_types++;
    onnx__value_info_proto__init(vi);
    onnx__type_proto__init(&b->types[t]);
    onnx__type_proto__tensor__init(&b->ttypes[t]);
    onnx__tensor_shape_proto__init(&b->shapes[t]);
    vi->name = (char *)name;
    vi->type = &b->types[t];
    b->types[t].value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE;
    b->types[t].tensor_type = &b->ttypes[t];
    b->ttypes[t].has_elem_type = 1;
    b->ttypes[t].elem_type = dtype;
    b->ttypes[t].shape = &b->shapes[t];
    b->shapes[t].n_dim = (size_t)rank;
    b->shapes[t].dim = b->dim_ptrs[t];
    for (int i = 0; i < rank; i++) {
        onnx__tensor_shape_proto__dimension__init(&b->dims[t][i]);
        b->dim_ptrs[t][i] = &b->dims[t][i];
        if (dims[i] < 0) {
            b->dims[t][i].value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM;
            b->dims[t][i].dim_param = "batch";
        } else {
            b->dims[t][i].value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
            b->dims[t][i].dim_value = dims[i];
        }
    }
    return vi;
}

static void node(builder *b, int i, const char *op, const char *name, int n_in, const char **ins,
                 int n_out, const char **outs) {
    Onnx__NodeProto *n = &b->nodes[i];
    onnx__node_proto__init(n);
    n->op_type = (char *)op;
    n->name = (char *)name;
    n->n_input = (size_t)n_in;
    n->input = b->in_names[i];
    for (int k = 0; k < n_in; k++)
        b->in_names[i][k] = (char *)ins[k];
    n->n_output = (size_t)n_out;
    n->output = b->out_names[i];
    for (int k = 0; k < n_out; k++)
        b->out_names[i][k] = (char *)outs[k];
    b->node_ptrs[i] = n;
}

static void init_f32(builder *b, int i, const char *name, int rank, const int64_t *dims,
                     float *data, size_t n) {
    Onnx__TensorProto *t = &b->inits[i];
    onnx__tensor_proto__init(t);
    t->name = (char *)name;
    t->has_data_type = 1;
    t->data_type = 1;
    t->n_dims = (size_t)rank;
    t->dims = b->init_dims[i];
    memcpy(b->init_dims[i], dims, sizeof(int64_t) * (size_t)rank);
    t->has_raw_data = 1;
    t->raw_data.data = (uint8_t *)data;
    t->raw_data.len = n * sizeof(float);
    b->init_ptrs[i] = t;
}

static float W[12] = {1, -2, 3, 0.5f, 0, 1, -1, 2, 2, 1, 1, -3}; /* [4, 3] */
static float Bias[3] = {0.25f, -0.5f, 1};

/* Y = Relu(X W + B), X [batch, 4]. */
static void dense_model(builder *b) {
    memset(b, 0, sizeof *b);
    onnx__model_proto__init(&b->model);
    onnx__graph_proto__init(&b->graph);
    onnx__operator_set_id_proto__init(&b->opset);
    b->opset.has_version = 1;
    b->opset.version = 14;
    b->opsets[0] = &b->opset;
    b->model.has_ir_version = 1;
    b->model.ir_version = 8;
    b->model.n_opset_import = 1;
    b->model.opset_import = b->opsets;
    b->model.graph = &b->graph;
    static const char *mm_in[] = {"X", "W"}, *mm_out[] = {"XW"};
    static const char *add_in[] = {"XW", "B"}, *add_out[] = {"XWB"};
    static const char *relu_in[] = {"XWB"}, *relu_out[] = {"Y"};
    node(b, 0, "MatMul", "mm", 2, mm_in, 1, mm_out);
    node(b, 1, "Add", "add", 2, add_in, 1, add_out);
    node(b, 2, "Relu", "relu", 1, relu_in, 1, relu_out);
    b->graph.n_node = 3;
    b->graph.node = b->node_ptrs;
    int64_t wd[] = {4, 3}, bd[] = {3};
    init_f32(b, 0, "W", 2, wd, W, 12);
    init_f32(b, 1, "B", 1, bd, Bias, 3);
    b->graph.n_initializer = 2;
    b->graph.initializer = b->init_ptrs;
    int64_t xd[] = {-1, 4}, yd[] = {-1, 3};
    b->in_ptrs[0] = value_info(b, &b->ins[0], "X", 1, 2, xd);
    b->out_ptrs[0] = value_info(b, &b->outs[0], "Y", 1, 2, yd);
    b->graph.n_input = 1;
    b->graph.input = b->in_ptrs;
    b->graph.n_output = 1;
    b->graph.output = b->out_ptrs;
}

static uint8_t *pack(builder *b, size_t *len) {
    *len = onnx__model_proto__get_packed_size(&b->model);
    uint8_t *buf = malloc(*len + 1);
    onnx__model_proto__pack(&b->model, buf);
    return buf;
}

static int load(builder *b, inferd_engine_model **m, inferd_error *err) {
    size_t len;
    uint8_t *buf = pack(b, &len);
    int rc = inferd_engine_load_buffer(buf, len, NULL, m, err);
    free(buf); // the engine keeps nothing from the buffer after loading
    return rc;
}

#define ASSERT_ERR(rc, code, err, needle)                                                          \
    do {                                                                                           \
        if ((rc) != (code))                                                                        \
            fail_msg("rc %d (%s), expected %d", (rc), (err).msg, (code));                          \
        if (!strstr((err).msg, (needle)))                                                          \
            fail_msg("message '%s' does not mention '%s'", (err).msg, (needle));                   \
    } while (0)

/* Y = Gather(Range(0, n, 1), I): a constant subgraph of n floats (4 n bytes) that a plan
 * would fold, read at the indices I [batch] (int64). */
static float RangeArgs[3];

static void range_model(builder *b, float n) {
    dense_model(b); // for the model and graph boilerplate
    memset(b->nodes, 0, sizeof b->nodes);
    static const char *r_in[] = {"start", "limit", "delta"}, *r_out[] = {"R"};
    static const char *g_in[] = {"R", "I"}, *g_out[] = {"Y"};
    node(b, 0, "Range", "range", 3, r_in, 1, r_out);
    node(b, 1, "Gather", "gather", 2, g_in, 1, g_out);
    b->graph.n_node = 2;
    RangeArgs[0] = 0, RangeArgs[1] = n, RangeArgs[2] = 1;
    int64_t scalar[1] = {0}; // rank 0: no dims read
    init_f32(b, 0, "start", 0, scalar, &RangeArgs[0], 1);
    init_f32(b, 1, "limit", 0, scalar, &RangeArgs[1], 1);
    init_f32(b, 2, "delta", 0, scalar, &RangeArgs[2], 1);
    b->graph.n_initializer = 3;
    b->n_types = 0;
    int64_t id[] = {-1};
    b->in_ptrs[0] = value_info(b, &b->ins[0], "I", 7, 1, id);
    b->out_ptrs[0] = value_info(b, &b->outs[0], "Y", 1, 1, id);
}

/* ---- tests ---- */

static void test_dense_model_runs(void **state) {
    (void)state;
    builder b;
    dense_model(&b);
    inferd_engine_model *m;
    inferd_error err = {0};
    assert_int_equal(load(&b, &m, &err), 0);
    assert_int_equal(inferd_engine_input_count(m), 1);
    assert_string_equal(inferd_engine_input(m, 0)->name, "X");
    assert_int_equal(inferd_engine_input(m, 0)->dims[0], -1);
    float x[8] = {1, 2, 3, 4, -1, 0.5f, 0, 2};
    inferd_tensor in = {
        .dtype = INFERD_DTYPE_F32, .rank = 2, .dims = {2, 4}, .data = x, .nbytes = sizeof x};
    inferd_tensor out;
    for (int threads = 1; threads <= 2; threads++) {
        assert_int_equal(inferd_engine_run(m, &in, &out, threads, &err), 0);
        assert_int_equal(out.rank, 2);
        assert_int_equal(out.dims[0], 2);
        assert_int_equal(out.dims[1], 3);
        for (int r = 0; r < 2; r++)
            for (int c = 0; c < 3; c++) {
                float s = Bias[c];
                for (int k = 0; k < 4; k++)
                    s += x[r * 4 + k] * W[k * 3 + c];
                s = s > 0 ? s : 0;
                float got = ((float *)out.data)[r * 3 + c];
                if (fabsf(got - s) > 1e-5f)
                    fail_msg("Y[%d,%d] = %g, expected %g", r, c, got, s);
            }
        inferd_free(out.data);
    }
    inferd_engine_destroy(m);
}

static void test_wrong_input_is_refused(void **state) {
    (void)state;
    builder b;
    dense_model(&b);
    inferd_engine_model *m;
    inferd_error err = {0};
    assert_int_equal(load(&b, &m, &err), 0);
    float x[6] = {0};
    inferd_tensor in = {
        .dtype = INFERD_DTYPE_F32, .rank = 2, .dims = {2, 3}, .data = x, .nbytes = sizeof x};
    inferd_tensor out;
    int rc = inferd_engine_run(m, &in, &out, 1, &err);
    ASSERT_ERR(rc, INFERD_EINVAL, err, "dim 1");
    in.dtype = INFERD_DTYPE_I32;
    in.dims[1] = 4;
    in.nbytes = 32;
    int32_t xi[8] = {0};
    in.data = xi;
    rc = inferd_engine_run(m, &in, &out, 1, &err);
    ASSERT_ERR(rc, INFERD_EINVAL, err, "float");
    in.dtype = INFERD_DTYPE_F32;
    in.nbytes = 4; // wrong byte size for [2, 4]
    rc = inferd_engine_run(m, &in, &out, 1, &err);
    ASSERT_ERR(rc, INFERD_EINVAL, err, "bytes");
    inferd_engine_destroy(m);
}

static void test_every_truncation_is_an_error(void **state) {
    (void)state;
    builder b;
    dense_model(&b);
    size_t len;
    uint8_t *buf = pack(&b, &len);
    for (size_t n = 0; n < len; n++) {
        uint8_t *copy = malloc(n + 1);
        memcpy(copy, buf, n);
        inferd_engine_model *m = NULL;
        inferd_error err = {0};
        int rc = inferd_engine_load_buffer(copy, n, NULL, &m, &err);
        if (rc == 0)
            fail_msg("a model truncated to %zu of %zu bytes loaded", n, len);
        assert_null(m);
        free(copy);
    }
    free(buf);
}

static void test_garbage_is_an_error(void **state) {
    (void)state;
    uint8_t junk[4096];
    uint64_t s = 7;
    for (int round = 0; round < 200; round++) {
        size_t n = (size_t)(s % sizeof junk);
        for (size_t i = 0; i < n; i++) {
            s = s * 6364136223846793005ULL + 1;
            junk[i] = (uint8_t)(s >> 56);
        }
        inferd_engine_model *m = NULL;
        inferd_error err = {0};
        assert_true(inferd_engine_load_buffer(junk, n, NULL, &m, &err) < 0);
        assert_non_null(strstr(err.msg, "ONNX")    ? err.msg
                        : strstr(err.msg, "opset") ? err.msg
                                                   : NULL);
    }
}

static void test_cycle_is_refused(void **state) {
    (void)state;
    builder b;
    dense_model(&b);
    // relu now feeds the MatMul: mm -> add -> relu -> mm.
    b.nodes[0].input[0] = "Y";
    inferd_engine_model *m = NULL;
    inferd_error err = {0};
    ASSERT_ERR(load(&b, &m, &err), INFERD_EINVAL, err, "cycle");
    assert_null(m);
}

static void test_dangling_name_is_refused(void **state) {
    (void)state;
    builder b;
    dense_model(&b);
    b.nodes[1].input[1] = "no_such_bias";
    inferd_engine_model *m = NULL;
    inferd_error err = {0};
    ASSERT_ERR(load(&b, &m, &err), INFERD_EINVAL, err, "no_such_bias");
}

static void test_unsupported_op_is_named(void **state) {
    (void)state;
    builder b;
    dense_model(&b);
    b.nodes[2].op_type = "FrobnicateV9";
    inferd_engine_model *m = NULL;
    inferd_error err = {0};
    int rc = load(&b, &m, &err);
    ASSERT_ERR(rc, INFERD_EUNSUPPORTED, err, "FrobnicateV9");
    assert_non_null(strstr(err.msg, "relu"));
}

static void test_bad_tensors_are_refused(void **state) {
    (void)state;
    builder b;
    inferd_engine_model *m = NULL;
    inferd_error err = {0};

    dense_model(&b);
    b.inits[0].raw_data.len = 40; // 10 floats for a [4, 3] weight
    ASSERT_ERR(load(&b, &m, &err), INFERD_EINVAL, err, "raw data");

    dense_model(&b);
    b.inits[0].data_type = 999;
    ASSERT_ERR(load(&b, &m, &err), INFERD_EINVAL, err, "data type");

    dense_model(&b);
    b.init_dims[0][0] = (int64_t)1 << 40;
    b.init_dims[0][1] = (int64_t)1 << 40;
    ASSERT_ERR(load(&b, &m, &err), INFERD_EINVAL, err, "too large");

    dense_model(&b);
    b.init_dims[0][0] = -4;
    ASSERT_ERR(load(&b, &m, &err), INFERD_EINVAL, err, "negative");

    dense_model(&b);
    b.opset.version = 3;
    ASSERT_ERR(load(&b, &m, &err), INFERD_EUNSUPPORTED, err, "opset");

    dense_model(&b);
    b.graph.n_output = 0;
    ASSERT_ERR(load(&b, &m, &err), INFERD_EINVAL, err, "no outputs");

    dense_model(&b);
    b.inits[1].name = "W"; // defined twice
    ASSERT_ERR(load(&b, &m, &err), INFERD_EINVAL, err, "twice");
    assert_null(m);
}

static void test_external_data_cannot_escape(void **state) {
    (void)state;
    builder b;
    dense_model(&b);
    Onnx__StringStringEntryProto loc, *locs[1] = {&loc};
    onnx__string_string_entry_proto__init(&loc);
    loc.key = "location";
    loc.value = "../../etc/passwd";
    b.inits[0].has_raw_data = 0;
    b.inits[0].has_data_location = 1;
    b.inits[0].data_location = ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL;
    b.inits[0].n_external_data = 1;
    b.inits[0].external_data = locs;
    size_t len;
    uint8_t *buf = pack(&b, &len);
    char dir[] = "/tmp/inferd_test_XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[256];
    snprintf(path, sizeof path, "%s/model.onnx", dir);
    FILE *f = fopen(path, "wb");
    fwrite(buf, 1, len, f);
    fclose(f);
    inferd_engine_model *m = NULL;
    inferd_error err = {0};
    ASSERT_ERR(inferd_engine_load(path, NULL, &m, &err), INFERD_EINVAL, err, "inside");
    // From memory there is no folder at all.
    ASSERT_ERR(inferd_engine_load_buffer(buf, len, NULL, &m, &err), INFERD_EINVAL, err,
               "external data");
    unlink(path);
    rmdir(dir);
    free(buf);
}

static void test_out_of_memory_anywhere_is_an_error(void **state) {
    (void)state;
    builder b;
    dense_model(&b);
    size_t len;
    uint8_t *buf = pack(&b, &len);
    float x[4] = {1, 2, 3, 4};
    inferd_tensor in = {
        .dtype = INFERD_DTYPE_F32, .rank = 2, .dims = {1, 4}, .data = x, .nbytes = sizeof x};
    int completed = 0;
    for (long nth = 1; nth < 400 && !completed; nth++) {
        inferd_error err = {0};
        inferd_engine_model *m = NULL;
        inferd_tensor out = {0};
        inferd_alloc_fail_after(nth);
        int rc = inferd_engine_load_buffer(buf, len, NULL, &m, &err);
        if (rc == 0) {
            rc = inferd_engine_run(m, &in, &out, 1, &err);
            if (rc == 0) {
                completed = 1;
                inferd_free(out.data);
            }
        }
        inferd_alloc_fail_after(0);
        if (rc < 0 && err.code == 0)
            fail_msg("allocation %ld failed without an error message", nth);
        inferd_engine_destroy(m);
    }
    assert_true(completed);
    free(buf);
}

/* Loads fixture model dir/model.onnx and runs it on dir/case's inputs with every allocation
 * failing in turn, from the first of the load to the last of the run: each attempt must fail
 * with a message or succeed, and free what it took (the sanitizer build checks for leaks).
 * Load-time fusion (LayerNorm, GELU, attention, convolutions) and planning allocate on the way,
 * which the dense model above never reaches. cache: a load cache path or NULL; with miss, it is
 * removed before each attempt, so that every load writes it instead of mapping it. threads:
 * the run's. */
static void out_of_memory_in_fixture(const char *dir, const char *case_dir, const char *cache,
                                     int miss, int threads) {
    char path[512];
    inferd_error err = {0};
    inferd_engine_model *m = NULL;
    inferd_engine_options opts = {.cache_path = cache};
    snprintf(path, sizeof path, "tests/fixtures/engine/%s/model.onnx", dir);
    long before = inferd_alloc_count();
    assert_int_equal(inferd_engine_load(path, &opts, &m, &err), 0);
    int n_in = inferd_engine_input_count(m);
    inferd_tensor in[8];
    assert_true(n_in <= 8);
    for (int i = 0; i < n_in; i++) {
        char ip[640];
        snprintf(ip, sizeof ip, "tests/fixtures/engine/%s/%s/inputs/%s.npy", dir, case_dir,
                 inferd_engine_input(m, i)->name);
        assert_int_equal(inferd_npy_read_file(ip, &in[i], &err), 0);
    }
    inferd_tensor out[4];
    assert_true(inferd_engine_output_count(m) <= 4);
    assert_int_equal(inferd_engine_run(m, in, out, threads, &err), 0);
    long total = inferd_alloc_count() - before;
    for (int j = 0; j < inferd_engine_output_count(m); j++)
        inferd_free(out[j].data);
    inferd_engine_destroy(m);
    int completed = 0;
    for (long nth = 1; nth <= total + 1 && !completed; nth++) {
        m = NULL;
        memset(&err, 0, sizeof err);
        if (cache && miss)
            unlink(cache);
        inferd_alloc_fail_after(nth);
        int rc = inferd_engine_load(path, &opts, &m, &err);
        if (rc == 0 && (rc = inferd_engine_run(m, in, out, threads, &err)) == 0) {
            completed = 1;
            for (int j = 0; j < inferd_engine_output_count(m); j++)
                inferd_free(out[j].data);
        }
        inferd_alloc_fail_after(0);
        if (rc < 0 && err.code == 0)
            fail_msg("%s: allocation %ld failed without an error message", dir, nth);
        inferd_engine_destroy(m);
    }
    assert_true(completed);
    for (int i = 0; i < n_in; i++)
        inferd_free(in[i].data);
}

static void test_out_of_memory_while_fusing_is_an_error(void **state) {
    (void)state;
    // Decomposed LayerNorm and erf GELU; the LayerNorm op and tanh GELU; convolutions.
    out_of_memory_in_fixture("bert_erf_tt_op11", "b3_s33", NULL, 0, 1);
    out_of_memory_in_fixture("bert_ln_tanh_finfo_op17", "b3_s33", NULL, 0, 1);
    out_of_memory_in_fixture("textcnn_maxpool_op11", "b3_s32", NULL, 0, 1);
    // Two threads (row groups side by side); a padded row (trimming and its probe).
    out_of_memory_in_fixture("bert_erf_tt_op11", "b5_s7", NULL, 0, 2);
    out_of_memory_in_fixture("bert_erf_tt_op11", "b1_s33_padded", NULL, 0, 1);
    // With a load cache: each load missing it (and writing it), then each load mapping it.
    char dir[] = "/tmp/inferd-oom-XXXXXX", cache[64];
    assert_non_null(mkdtemp(dir));
    snprintf(cache, sizeof cache, "%s/model.cache", dir);
    out_of_memory_in_fixture("bert_erf_tt_op11", "b3_s33", cache, 1, 1);
    out_of_memory_in_fixture("bert_erf_tt_op11", "b3_s33", cache, 0, 1);
    unlink(cache);
    rmdir(dir);
}

static void write_file(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, n, f), n);
    fclose(f);
}

/* Runs the dense model on a fixed input, returns Y[0, 0..2] in y. */
static void run_dense(inferd_engine_model *m, float *y) {
    float x[4] = {0.5f, -1, 2, 0.25f};
    inferd_tensor in = {
        .dtype = INFERD_DTYPE_F32, .rank = 2, .dims = {1, 4}, .data = x, .nbytes = sizeof x};
    inferd_tensor out;
    inferd_error err = {0};
    assert_int_equal(inferd_engine_run(m, &in, &out, 1, &err), 0);
    memcpy(y, out.data, 3 * sizeof(float));
    inferd_free(out.data);
}

static void test_cache_round_trip_and_invalidation(void **state) {
    (void)state;
    builder b;
    dense_model(&b);
    size_t len;
    uint8_t *buf = pack(&b, &len);
    char dir[] = "/tmp/inferd_cache_XXXXXX";
    assert_non_null(mkdtemp(dir));
    char model[256], cache[256];
    snprintf(model, sizeof model, "%s/model.onnx", dir);
    snprintf(cache, sizeof cache, "%s/c/model.cache", dir);
    write_file(model, buf, len);
    inferd_engine_options o = {.cache_path = cache};
    inferd_engine_model *m;
    inferd_error err = {0};
    float ref[3], y[3];

    assert_int_equal(inferd_engine_load(model, &o, &m, &err), 0);
    assert_false(inferd_engine_cache_hit(m));
    assert_non_null(strstr(inferd_engine_cache_status(m), "written"));
    run_dense(m, ref);
    inferd_engine_destroy(m);

    assert_int_equal(inferd_engine_load(model, &o, &m, &err), 0);
    if (!inferd_engine_cache_hit(m))
        fail_msg("second load: %s", inferd_engine_cache_status(m));
    run_dense(m, y);
    for (int i = 0; i < 3; i++)
        if (y[i] != ref[i])
            fail_msg("cached Y[%d] = %g, from ONNX %g", i, y[i], ref[i]);
    inferd_engine_destroy(m);

    // A cache whose mtime is not the one its writer sealed it with (copied, touched) is
    // checked in full: intact, it is still a hit.
    struct timespec times[2] = {{.tv_nsec = UTIME_OMIT}, {.tv_sec = 1000000000, .tv_nsec = 5}};
    assert_int_equal(utimensat(AT_FDCWD, cache, times, 0), 0);
    assert_int_equal(inferd_engine_load(model, &o, &m, &err), 0);
    if (!inferd_engine_cache_hit(m))
        fail_msg("touched intact cache: %s", inferd_engine_cache_status(m));
    run_dense(m, y);
    assert_memory_equal(y, ref, sizeof y);
    inferd_engine_destroy(m);

    // Flip one byte of content: detected, never trusted, rewritten.
    FILE *f = fopen(cache, "r+b");
    assert_non_null(f);
    fseek(f, 4096 + 10, SEEK_SET);
    int c = fgetc(f);
    fseek(f, 4096 + 10, SEEK_SET);
    fputc(c ^ 0x40, f);
    fclose(f);
    assert_int_equal(inferd_engine_load(model, &o, &m, &err), 0);
    assert_false(inferd_engine_cache_hit(m));
    assert_non_null(strstr(inferd_engine_cache_status(m), "corrupt"));
    run_dense(m, y);
    assert_memory_equal(y, ref, sizeof y);
    inferd_engine_destroy(m);
    assert_int_equal(inferd_engine_load(model, &o, &m, &err), 0);
    assert_true(inferd_engine_cache_hit(m)); // rewritten by the previous load
    inferd_engine_destroy(m);

    // Truncated.
    assert_int_equal(truncate(cache, 5000), 0);
    assert_int_equal(inferd_engine_load(model, &o, &m, &err), 0);
    assert_non_null(strstr(inferd_engine_cache_status(m), "truncated"));
    inferd_engine_destroy(m);

    // The model changes (new weights, same size): stale.
    W[2] += 1.0f; // feeds Y[2], which is positive for this input
    buf = (free(buf), pack(&b, &len));
    W[2] -= 1.0f;
    write_file(model, buf, len);
    assert_int_equal(inferd_engine_load(model, &o, &m, &err), 0);
    assert_false(inferd_engine_cache_hit(m));
    assert_non_null(strstr(inferd_engine_cache_status(m), "stale"));
    run_dense(m, y);
    if (y[0] == ref[0] && y[1] == ref[1] && y[2] == ref[2])
        fail_msg("new weights gave the old outputs");
    inferd_engine_destroy(m);

    // A cache folder that cannot be written: the model still loads.
    inferd_engine_options bad = {.cache_path = "/proc/inferd-no/model.cache"};
    assert_int_equal(inferd_engine_load(model, &bad, &m, &err), 0);
    assert_non_null(strstr(inferd_engine_cache_status(m), "not written"));
    inferd_engine_destroy(m);

    // A disk that fills up while the cache is written (simulated with a file size limit: the
    // write fails part way with EFBIG, as it would with ENOSPC): the model loads and runs from
    // the ONNX file, the status says why, and no partial or temporary file is left behind.
    char full[300], tmp_prefix[300];
    snprintf(full, sizeof full, "%s/full/model.cache", dir);
    snprintf(tmp_prefix, sizeof tmp_prefix, "model.cache.tmp.");
    inferd_engine_options fo = {.cache_path = full}, no_cache = {0};
    assert_int_equal(inferd_engine_load(model, &no_cache, &m, &err), 0);
    run_dense(m, ref); // the file now holds the changed weights
    inferd_engine_destroy(m);
    struct rlimit old_lim, lim;
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &old_lim), 0);
    lim = old_lim;
    lim.rlim_cur = 4096 + 64; // the header fits, the packed weights do not
    void (*old_sig)(int) = signal(SIGXFSZ, SIG_IGN);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
    int rc = inferd_engine_load(model, &fo, &m, &err);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &old_lim), 0);
    signal(SIGXFSZ, old_sig);
    assert_int_equal(rc, 0);
    if (!strstr(inferd_engine_cache_status(m), "not written"))
        fail_msg("cache status on a full disk: %s", inferd_engine_cache_status(m));
    run_dense(m, y);
    assert_memory_equal(y, ref, sizeof y);
    inferd_engine_destroy(m);
    struct stat st;
    assert_int_not_equal(stat(full, &st), 0);
    char full_dir[300];
    snprintf(full_dir, sizeof full_dir, "%s/full", dir);
    DIR *d = opendir(full_dir);
    assert_non_null(d);
    for (struct dirent *e; (e = readdir(d));)
        if (strncmp(e->d_name, tmp_prefix, strlen(tmp_prefix)) == 0)
            fail_msg("a temporary cache file was left behind: %s", e->d_name);
    closedir(d);
    // With room again, the next load writes it.
    assert_int_equal(inferd_engine_load(model, &fo, &m, &err), 0);
    assert_non_null(strstr(inferd_engine_cache_status(m), "written"));
    inferd_engine_destroy(m);

    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
    free(buf);
}

/* Dense layers the load passes must keep apart (found with the onnx fuzzer): Wsq is shared by
 * two layers, and two layers read the same input R with no bias and differ only in weights and
 * activation. Listed so that the fused nodes sit in another order than the MatMuls:
 *   A = X Wsq; R = Relu(A); C = R Wsq; D = R W2; Y2 = Tanh(D); Y1 = Relu(C).
 * Packed weights were found again by node index (stale after the reorder) and by (input, bias)
 * (ambiguous here): a NULL dereference or, silently, one layer's weights on the other. */
static float Wsq[16] = {1, -0.5f, 0.25f, 2, 0, 1, -1, 0.5f, 0.75f, 0.5f, 1, -2, -1, 0.25f, 0, 1};
static float W2[16] = {0.5f, 1, -1, 0, 2, -0.25f, 0.5f, 1, -1, 0, 1, 0.5f, 0.25f, 1, -0.5f, 2};

static void tied_model(builder *b) {
    dense_model(b); // the header fields; nodes, weights and signature are replaced below
    static const char *n0_in[] = {"X", "Wsq"}, *n0_out[] = {"A"};
    static const char *n1_in[] = {"A"}, *n1_out[] = {"R"};
    static const char *n2_in[] = {"R", "Wsq"}, *n2_out[] = {"C"};
    static const char *n3_in[] = {"R", "W2"}, *n3_out[] = {"D"};
    static const char *n4_in[] = {"D"}, *n4_out[] = {"Y2"};
    static const char *n5_in[] = {"C"}, *n5_out[] = {"Y1"};
    node(b, 0, "MatMul", "mm0", 2, n0_in, 1, n0_out);
    node(b, 1, "Relu", "relu0", 1, n1_in, 1, n1_out);
    node(b, 2, "MatMul", "mm_tied", 2, n2_in, 1, n2_out);
    node(b, 3, "MatMul", "mm_other", 2, n3_in, 1, n3_out);
    node(b, 4, "Tanh", "tanh", 1, n4_in, 1, n4_out);
    node(b, 5, "Relu", "relu1", 1, n5_in, 1, n5_out);
    b->graph.n_node = 6;
    int64_t wd[] = {4, 4};
    init_f32(b, 0, "Wsq", 2, wd, Wsq, 16);
    init_f32(b, 1, "W2", 2, wd, W2, 16);
    b->graph.n_initializer = 2;
    int64_t yd[] = {-1, 4};
    b->out_ptrs[0] = value_info(b, &b->outs[0], "Y1", 1, 2, yd);
    b->out_ptrs[1] = value_info(b, &b->outs[1], "Y2", 1, 2, yd);
    b->graph.n_output = 2;
}

static int64_t LastAxis[1] = {-1};
static float Eps[1] = {1e-5f};

/* LayerNorm written out over X [batch, 8] with the square as Mul(d, d), a node reading one
 * value twice: (X - mean) / sqrt(mean((X - mean)^2) + eps). Opset 18 (axes as an input). */
static void layernorm_model(builder *b) {
    dense_model(b); // the model frame; nodes, initializers and shapes are replaced
    b->opset.version = 18;
    static const char *rm1_in[] = {"X", "axes"}, *rm1_out[] = {"mean"};
    static const char *sub_in[] = {"X", "mean"}, *sub_out[] = {"d"};
    static const char *sq_in[] = {"d", "d"}, *sq_out[] = {"sq"};
    static const char *rm2_in[] = {"sq", "axes"}, *rm2_out[] = {"var"};
    static const char *add_in[] = {"var", "eps"}, *add_out[] = {"ve"};
    static const char *sqrt_in[] = {"ve"}, *sqrt_out[] = {"sd"};
    static const char *div_in[] = {"d", "sd"}, *div_out[] = {"Y"};
    node(b, 0, "ReduceMean", "mean", 2, rm1_in, 1, rm1_out);
    node(b, 1, "Sub", "sub", 2, sub_in, 1, sub_out);
    node(b, 2, "Mul", "square", 2, sq_in, 1, sq_out);
    node(b, 3, "ReduceMean", "var", 2, rm2_in, 1, rm2_out);
    node(b, 4, "Add", "add_eps", 2, add_in, 1, add_out);
    node(b, 5, "Sqrt", "sqrt", 1, sqrt_in, 1, sqrt_out);
    node(b, 6, "Div", "div", 2, div_in, 1, div_out);
    b->graph.n_node = 7;
    int64_t one[] = {1};
    init_f32(b, 0, "axes", 1, one, (float *)LastAxis, 2); // 8 bytes: one int64
    b->inits[0].data_type = ONNX__TENSOR_PROTO__DATA_TYPE__INT64;
    init_f32(b, 1, "eps", 0, one, Eps, 1);
    int64_t xd[] = {-1, 8};
    b->n_types = 0;
    b->in_ptrs[0] = value_info(b, &b->ins[0], "X", 1, 2, xd);
    b->out_ptrs[0] = value_info(b, &b->outs[0], "Y", 1, 2, xd);
}

static void test_decomposed_layernorm_with_mul_square_fuses(void **state) {
    (void)state;
    builder b;
    layernorm_model(&b);
    inferd_engine_model *m;
    inferd_error err = {0};
    if (load(&b, &m, &err) != 0)
        fail_msg("load: %s", err.msg);
    char *text = NULL;
    size_t text_len = 0;
    FILE *f = open_memstream(&text, &text_len);
    assert_int_equal(inferd_engine_describe(m, NULL, 1, f, &err), 0);
    fclose(f);
    if (!strstr(text, "FusedLayerNorm") || strstr(text, "ReduceMean"))
        fail_msg("not fused into one LayerNorm:\n%s", text);
    free(text);
    float x[2 * 8] = {1, 2, 3, 4, 5, 6, 7, 8, -1, 0.5f, 0, 2, 3, -4, 0.25f, 1};
    inferd_tensor in = {
        .dtype = INFERD_DTYPE_F32, .rank = 2, .dims = {2, 8}, .data = x, .nbytes = sizeof x};
    inferd_tensor out;
    assert_int_equal(inferd_engine_run(m, &in, &out, 1, &err), 0);
    for (int r = 0; r < 2; r++) {
        double mean = 0, var = 0;
        for (int i = 0; i < 8; i++)
            mean += x[r * 8 + i] / 8.0;
        for (int i = 0; i < 8; i++)
            var += (x[r * 8 + i] - mean) * (x[r * 8 + i] - mean) / 8.0;
        for (int i = 0; i < 8; i++) {
            double want = (x[r * 8 + i] - mean) / sqrt(var + 1e-5);
            float got = ((float *)out.data)[r * 8 + i];
            if (fabs(got - want) > 1e-5)
                fail_msg("Y[%d,%d] = %g, expected %g", r, i, got, want);
        }
    }
    inferd_free(out.data);
    inferd_engine_destroy(m);
}

static void test_dense_layers_kept_apart(void **state) {
    (void)state;
    builder b;
    tied_model(&b);
    size_t len;
    uint8_t *buf = pack(&b, &len);
    inferd_engine_options fused = {0}, plain = {.disable_fusion = 1};
    inferd_engine_model *a, *m;
    inferd_error err = {0};
    if (inferd_engine_load_buffer(buf, len, &fused, &a, &err) != 0)
        fail_msg("fused load: %s", err.msg);
    if (inferd_engine_load_buffer(buf, len, &plain, &m, &err) != 0)
        fail_msg("unfused load: %s", err.msg);
    float x[3 * 4] = {0.5f, -1, 2, 0.25f, 1, 1, -0.5f, 0, -2, 0.75f, 1.5f, 1};
    inferd_tensor in = {
        .dtype = INFERD_DTYPE_F32, .rank = 2, .dims = {3, 4}, .data = x, .nbytes = sizeof x};
    inferd_tensor oa[2], om[2];
    if (inferd_engine_run(m, &in, om, 1, &err) != 0)
        fail_msg("unfused run: %s", err.msg);
    if (inferd_engine_run(a, &in, oa, 1, &err) != 0)
        fail_msg("fused run: %s", err.msg);
    // The reference by hand, as the graph says.
    float r[12], y[2][12];
    for (int i = 0; i < 3; i++)
        for (int n = 0; n < 4; n++) {
            float acc = 0;
            for (int k = 0; k < 4; k++)
                acc += x[i * 4 + k] * Wsq[k * 4 + n];
            r[i * 4 + n] = acc > 0 ? acc : 0;
        }
    for (int i = 0; i < 3; i++)
        for (int n = 0; n < 4; n++) {
            float c = 0, d = 0;
            for (int k = 0; k < 4; k++) {
                c += r[i * 4 + k] * Wsq[k * 4 + n];
                d += r[i * 4 + k] * W2[k * 4 + n];
            }
            y[0][i * 4 + n] = c > 0 ? c : 0;
            y[1][i * 4 + n] = tanhf(d);
        }
    for (int o = 0; o < 2; o++) {
        assert_int_equal(oa[o].nbytes, sizeof y[o]);
        assert_int_equal(om[o].nbytes, sizeof y[o]);
        const float *ya = oa[o].data, *ym = om[o].data;
        for (int i = 0; i < 12; i++)
            if (fabsf(ya[i] - y[o][i]) > 1e-5f || fabsf(ym[i] - y[o][i]) > 1e-5f)
                fail_msg("Y%d[%d]: fused %g, unfused %g, reference %g", o + 1, i, ya[i], ym[i],
                         y[o][i]);
        inferd_free(oa[o].data);
        inferd_free(om[o].data);
    }
    inferd_engine_destroy(a);
    inferd_engine_destroy(m);
    free(buf);
}

/* Constants folded while a plan is built count against the plan's memory cap: a Range of 4 MiB
 * of constants under a 1 MiB cap is refused with the arena's error instead of being made (a
 * fuzzed model folded a Range of 1.7 GB); under a 64 MiB cap it runs. */
static void test_plan_folding_is_capped(void **state) {
    (void)state;
    builder b;
    range_model(&b, (float)(1 << 20));
    size_t len;
    uint8_t *buf = pack(&b, &len);
    int64_t idx[2] = {5, 1000000};
    for (int big = 0; big < 2; big++) {
        inferd_engine_options opts = {.max_arena_bytes = big ? (int64_t)64 << 20 : 1 << 20};
        inferd_engine_model *m;
        inferd_error err = {0};
        assert_int_equal(inferd_engine_load_buffer(buf, len, &opts, &m, &err), 0);
        inferd_tensor in = {
            .dtype = INFERD_DTYPE_I64, .rank = 1, .dims = {2}, .data = idx, .nbytes = sizeof idx};
        inferd_tensor out = {0};
        int rc = inferd_engine_run(m, &in, &out, 1, &err);
        if (!big) {
            ASSERT_ERR(rc, INFERD_ETOOLARGE, err, "intermediate memory");
        } else {
            assert_int_equal(rc, 0);
            assert_int_equal(out.rank, 1);
            assert_int_equal(out.dims[0], 2);
            assert_true(((float *)out.data)[0] == 5.0f && ((float *)out.data)[1] == 1e6f);
            inferd_free(out.data);
        }
        inferd_engine_destroy(m);
    }
    free(buf);
}

int main(void) {
    inferd_error err;
    if (inferd_engine_global_init(&err) < 0) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dense_model_runs),
        cmocka_unit_test(test_wrong_input_is_refused),
        cmocka_unit_test(test_every_truncation_is_an_error),
        cmocka_unit_test(test_garbage_is_an_error),
        cmocka_unit_test(test_cycle_is_refused),
        cmocka_unit_test(test_dangling_name_is_refused),
        cmocka_unit_test(test_unsupported_op_is_named),
        cmocka_unit_test(test_bad_tensors_are_refused),
        cmocka_unit_test(test_external_data_cannot_escape),
        cmocka_unit_test(test_out_of_memory_anywhere_is_an_error),
        cmocka_unit_test(test_out_of_memory_while_fusing_is_an_error),
        cmocka_unit_test(test_cache_round_trip_and_invalidation),
        cmocka_unit_test(test_dense_layers_kept_apart),
        cmocka_unit_test(test_decomposed_layernorm_with_mul_square_fuses),
        cmocka_unit_test(test_plan_folding_is_capped),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
