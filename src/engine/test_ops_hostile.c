/* Hostile-file test of every standard op: thousands of nodes with random input counts,
 * dtypes, shapes (empty dims included), values and attributes (extreme ones included) go
 * through infer, and whatever infer accepts is run. Nothing may crash, read or write out of
 * bounds (run it under `make SANITIZE=address`), or return an unknown code; accepted outputs
 * must respect the element cap. The generator is a fixed-seed PRNG, so failures replay. */
#include "engine/test_ops_util.h"

static uint64_t rng_state = 0x9e3779b97f4a7c15u;

static uint64_t rnd(void) {
    // xorshift64*
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545f4914f6cdd1du;
}

static int rnd_in(int lo, int hi) { return lo + (int)(rnd() % (uint64_t)(hi - lo + 1)); }

/* Small values mostly, sometimes one that breaks naive arithmetic. */
static int64_t rnd_int(void) {
    static const int64_t extreme[] = {
        INT64_MIN,        INT64_MAX, INT64_MIN + 1, -(INT64_C(1) << 40),
        INT64_C(1) << 33, INT32_MAX, INT32_MIN,     65536};
    if (rnd() % 16 == 0)
        return extreme[rnd() % (sizeof extreme / sizeof extreme[0])];
    return rnd_in(-5, 5);
}

static const inferd_dtype dtypes[] = {INFERD_DTYPE_F32, INFERD_DTYPE_F32, INFERD_DTYPE_I64,
                                      INFERD_DTYPE_I64, INFERD_DTYPE_I32, INFERD_DTYPE_BOOL,
                                      INFERD_DTYPE_F64, INFERD_DTYPE_F16, INFERD_DTYPE_U8};

/* Input i; half the time it copies the dtype and shape of input 0, as most ops want. */
static int eg_dtype_size_ok(const eg_tensor *x) { return inferd_dtype_size(x->dtype) > 0; }

static void random_input(tcase *t, int i) {
    inferd_dtype dt = dtypes[rnd() % (sizeof dtypes / sizeof dtypes[0])];
    int rank = rnd_in(0, 4);
    int64_t dims[4];
    for (int d = 0; d < rank; d++)
        dims[d] = rnd() % 12 == 0 ? 0 : rnd_in(1, 4);
    if (i > 0 && rnd() % 2 == 0 && t->in[0].rank <= 4) {
        dt = rnd() % 4 ? t->in[0].dtype : dt;
        rank = t->in[0].rank;
        memcpy(dims, t->in[0].dims, sizeof(int64_t) * (size_t)rank);
        // Sometimes the same shape with a dim dropped or set to 1, for broadcasting.
        if (rank > 0 && rnd() % 3 == 0)
            dims[rnd() % (uint64_t)rank] = 1;
    } else if (i > 0 && rnd() % 3 == 0) {
        // A short integer vector: shapes, axes, pads, repeats, K, depth.
        dt = rnd() % 4 ? INFERD_DTYPE_I64 : INFERD_DTYPE_I32;
        rank = rnd() % 4 ? 1 : 0;
        dims[0] = rnd_in(0, 4);
    }
    if (rnd() % 40 == 0 && rank > 0)
        dims[0] = rnd() % 2 ? -1 : (INT64_C(1) << 33);
    eg_tensor tmp = {.dtype = dt, .rank = rank};
    memcpy(tmp.dims, dims, sizeof(int64_t) * (size_t)rank);
    int64_t n = eg_tensor_numel(&tmp);
    if (n < 0 || n > 256 || rnd() % 4 == 0) {
        tc_in(t, i, dt, rank, dims, NULL);
        return;
    }
    size_t es = inferd_dtype_size(dt);
    unsigned char buf[256 * 8];
    for (int64_t k = 0; k < n; k++) {
        unsigned char *p = buf + (size_t)k * es;
        switch (dt) {
        case INFERD_DTYPE_F32: {
            float v = (float)rnd_in(-300, 300) / 100.0f;
            memcpy(p, &v, 4);
            break;
        }
        case INFERD_DTYPE_F64: {
            double v = (double)rnd_in(-300, 300) / 100.0;
            memcpy(p, &v, 8);
            break;
        }
        case INFERD_DTYPE_I64: {
            int64_t v = rnd_int();
            memcpy(p, &v, 8);
            break;
        }
        case INFERD_DTYPE_I32: {
            int32_t v = (int32_t)rnd_int();
            memcpy(p, &v, 4);
            break;
        }
        case INFERD_DTYPE_F16: {
            uint16_t v = (uint16_t)rnd();
            memcpy(p, &v, 2);
            break;
        }
        default:
            *p = (unsigned char)rnd_in(0, 2);
            break;
        }
    }
    tc_in(t, i, dt, rank, dims, buf);
}

static void random_attrs(tcase *t) {
    static const char *const int_names[] = {"axis",
                                            "keepdims",
                                            "to",
                                            "group",
                                            "transA",
                                            "transB",
                                            "exclusive",
                                            "reverse",
                                            "upper",
                                            "largest",
                                            "ceil_mode",
                                            "allowzero",
                                            "start",
                                            "end",
                                            "hidden_size",
                                            "layout",
                                            "linear_before_reset",
                                            "noop_with_empty_axes",
                                            "select_last_index",
                                            "count_include_pad",
                                            "fmod",
                                            "k",
                                            "num_outputs",
                                            "storage_order",
                                            "training_mode",
                                            "value_int"};
    static const char *const ints_names[] = {"axes",         "perm",      "pads",  "strides",
                                             "kernel_shape", "dilations", "split", "starts",
                                             "ends",         "value_ints"};
    static const char *const str_names[] = {"auto_pad", "mode", "direction", "equation",
                                            "approximate"};
    static const char *const str_values[] = {
        "SAME_UPPER", "VALID",     "reflect", "edge", "bidirectional",
        "reverse",    "ij,jk->ik", "...i,i",  "tanh", "bhqd,bhkd->bhqk",
        "a...b->ba",  "",          "ii->i"};
    int n = rnd() % 2 ? 0 : rnd_in(1, 4);
    for (int k = 0; k < n; k++) {
        switch (rnd() % 5) {
        case 0:
        case 1:
            tc_attr_int(t, int_names[rnd() % (sizeof int_names / sizeof int_names[0])],
                        rnd() % 3 ? rnd_in(-3, 3) : rnd_int());
            break;
        case 2: {
            int64_t v[6];
            int c = rnd_in(0, 6);
            for (int j = 0; j < c; j++)
                v[j] = rnd() % 3 ? rnd_in(-2, 4) : rnd_int();
            tc_attr_ints(t, ints_names[rnd() % (sizeof ints_names / sizeof ints_names[0])], c, v);
            break;
        }
        case 3:
            tc_attr_string(t, str_names[rnd() % (sizeof str_names / sizeof str_names[0])],
                           str_values[rnd() % (sizeof str_values / sizeof str_values[0])]);
            break;
        default:
            tc_attr_float(t, rnd() % 2 ? "alpha" : "epsilon", (float)rnd_in(-4, 4) / 2);
            break;
        }
    }
    if (rnd() % 8 == 0) {
        int64_t dims[1] = {rnd_in(0, 3)};
        int64_t vals[3] = {rnd_int(), rnd_int(), rnd_int()};
        tc_attr_tensor(t, "value", INFERD_DTYPE_I64, rnd() % 2, dims, vals);
    }
}

/* Input i of the given dtype and shape with random contents (small values). */
static void shaped_input(tcase *t, int i, inferd_dtype dt, int rank, const int64_t *dims) {
    eg_tensor tmp = {.dtype = dt, .rank = rank};
    memcpy(tmp.dims, dims, sizeof(int64_t) * (size_t)rank);
    int64_t n = eg_tensor_numel(&tmp);
    if (n < 0 || n > 4096) {
        tc_in(t, i, dt, rank, dims, NULL);
        return;
    }
    static unsigned char buf[4096 * 8];
    size_t es = inferd_dtype_size(dt);
    for (int64_t k = 0; k < n; k++) {
        unsigned char *p = buf + (size_t)k * es;
        if (dt == INFERD_DTYPE_F32) {
            float v = (float)rnd_in(-200, 200) / 100.0f;
            memcpy(p, &v, 4);
        } else if (dt == INFERD_DTYPE_I64) {
            int64_t v = rnd() % 8 ? rnd_in(0, 3) : rnd_int();
            memcpy(p, &v, 8);
        } else if (dt == INFERD_DTYPE_I32) {
            int32_t v = rnd() % 8 ? rnd_in(0, 3) : (int32_t)rnd_int();
            memcpy(p, &v, 4);
        } else {
            memset(p, rnd_in(0, 1), es);
        }
    }
    tc_in(t, i, dt, rank, dims, buf);
}

#define F INFERD_DTYPE_F32
#define I INFERD_DTYPE_I64

/* A valid node of op (for the ops random inputs rarely satisfy), or NULL. */
static tcase *template_node(eg_op op) {
    tcase *t = NULL;
    int64_t c = rnd_in(1, 3), l = rnd_in(1, 6), b = rnd_in(1, 2), h = rnd_in(1, 3);
    switch (op) {
    case EG_OP_Conv:
        t = tc_new(op, 11, 3, 1);
        shaped_input(t, 0, F, 3, DIMS(b, c, l + 2));
        shaped_input(t, 1, F, 3, DIMS(h, c, 3));
        shaped_input(t, 2, F, 1, DIMS(h));
        tc_attr_ints(t, "pads", 2, I64S(1, 1));
        break;
    case EG_OP_MaxPool:
    case EG_OP_AveragePool:
        t = tc_new(op, 12, 1, op == EG_OP_MaxPool ? 2 : 1);
        shaped_input(t, 0, F, 4, DIMS(b, c, l, l + 1));
        tc_attr_ints(t, "kernel_shape", 2, I64S(2, 2));
        tc_attr_ints(t, "pads", 4, I64S(1, 0, 1, 1));
        tc_attr_int(t, "ceil_mode", 1);
        break;
    case EG_OP_BatchNormalization:
    case EG_OP_InstanceNormalization: {
        int n = op == EG_OP_BatchNormalization ? 5 : 3;
        t = tc_new(op, 15, n, 1);
        shaped_input(t, 0, F, 3, DIMS(b, c, l));
        for (int i = 1; i < n; i++)
            shaped_input(t, i, F, 1, DIMS(c));
        break;
    }
    case EG_OP_LSTM:
    case EG_OP_GRU:
    case EG_OP_RNN: {
        int G = op == EG_OP_LSTM ? 4 : op == EG_OP_GRU ? 3 : 1, dirs = rnd_in(1, 2);
        t = tc_new(op, 14, op == EG_OP_LSTM ? 7 : 6, op == EG_OP_LSTM ? 3 : 2);
        if (dirs == 2)
            tc_attr_string(t, "direction", "bidirectional");
        shaped_input(t, 0, F, 3, DIMS(l, b, c));
        shaped_input(t, 1, F, 3, DIMS(dirs, G * h, c));
        shaped_input(t, 2, F, 3, DIMS(dirs, G * h, h));
        shaped_input(t, 3, F, 2, DIMS(dirs, 2 * G * h));
        shaped_input(t, 4, INFERD_DTYPE_I32, 1, DIMS(b));
        shaped_input(t, 5, F, 3, DIMS(dirs, b, h));
        if (op == EG_OP_LSTM)
            shaped_input(t, 6, F, 3, DIMS(dirs, b, h));
        break;
    }
    case EG_OP_Einsum:
        t = tc_new(op, 12, 2, 1);
        tc_attr_string(t, "equation", rnd() % 2 ? "bij,bjk->bik" : "...j,jk");
        shaped_input(t, 0, F, 3, DIMS(b, c, l));
        shaped_input(t, 1, F, 3, DIMS(b, l, h));
        break;
    case EG_OP_Slice:
        t = tc_new(op, 13, 5, 1);
        shaped_input(t, 0, F, 2, DIMS(c, l));
        shaped_input(t, 1, I, 1, DIMS(2));
        shaped_input(t, 2, I, 1, DIMS(2));
        tc_in_i64(t, 3, 1, DIMS(2), I64S(0, -1));
        tc_in_i64(t, 4, 1, DIMS(2), I64S(rnd() % 2 ? 1 : -1, rnd_in(1, 2)));
        break;
    case EG_OP_Cast:
        t = tc_new(op, 13, 1, 1);
        tc_attr_int(t, "to", dtypes[rnd() % (sizeof dtypes / sizeof dtypes[0])]);
        random_input(t, 0);
        break;
    case EG_OP_Gemm:
        t = tc_new(op, 13, 3, 1);
        tc_attr_int(t, "transB", 1);
        shaped_input(t, 0, F, 2, DIMS(b, c));
        shaped_input(t, 1, F, 2, DIMS(h, c));
        shaped_input(t, 2, F, 1, DIMS(h));
        break;
    case EG_OP_OneHot:
    case EG_OP_TopK:
    case EG_OP_Range:
    case EG_OP_Tile:
    case EG_OP_Expand:
    case EG_OP_Reshape:
    case EG_OP_Pad:
    case EG_OP_Gather:
        t = tc_new(op, 13, op == EG_OP_OneHot || op == EG_OP_Range ? 3 : 2,
                   op == EG_OP_TopK ? 2 : 1);
        if (op == EG_OP_Range) {
            for (int i = 0; i < 3; i++)
                tc_in_i64(t, i, 0, NULL, (int64_t[]){i == 2 ? rnd_in(-2, 2) : rnd_int()});
            break;
        }
        shaped_input(t, 0, op == EG_OP_OneHot ? I : F, 2, DIMS(c, l));
        if (op == EG_OP_OneHot) {
            tc_in_i64(t, 1, 0, NULL, (int64_t[]){rnd_in(1, 4)});
            shaped_input(t, 2, F, 1, DIMS(2));
        } else if (op == EG_OP_Pad) {
            shaped_input(t, 1, I, 1, DIMS(4));
        } else if (op == EG_OP_Gather) {
            shaped_input(t, 1, I, 2, DIMS(b, h));
        } else {
            int64_t v[2] = {rnd_in(1, 3), rnd_in(1, 3)};
            if (op == EG_OP_Reshape)
                v[0] = -1;
            tc_in_i64(t, 1, 1, DIMS(op == EG_OP_TopK ? 1 : 2), v);
        }
        break;
    default:
        break;
    }
    return t;
}

/* One random change to a valid node: an input's dim, an integer input's value, an extra
 * attribute, or an input's dtype. */
static void mutate(tcase *t) {
    eg_node *n = tc_node(t);
    if (n->n_in == 0 || rnd() % 4 == 0) {
        random_attrs(t);
        return;
    }
    int i = rnd_in(0, n->n_in - 1);
    eg_tensor *x = &t->in[i];
    if (n->in[i] < 0)
        return;
    switch (rnd() % 3) {
    case 0: {
        int64_t dims[EG_MAX_RANK];
        memcpy(dims, x->dims, sizeof dims);
        if (x->rank > 0)
            dims[rnd() % (uint64_t)x->rank] = rnd() % 6 ? rnd_in(0, 5) : rnd_int();
        shaped_input(t, i, x->dtype, x->rank, dims);
        break;
    }
    case 1:
        if (x->data && eg_dtype_size_ok(x)) {
            int64_t c = eg_tensor_numel(x);
            if (c > 0 && x->dtype == I)
                ((int64_t *)x->data)[rnd() % (uint64_t)c] = rnd_int();
        }
        break;
    default:
        shaped_input(t, i, dtypes[rnd() % (sizeof dtypes / sizeof dtypes[0])], x->rank, x->dims);
        break;
    }
}

static int accepted_by_op[EG_OP_FUSED_FIRST_];

static int known_code(int rc) {
    return rc == 0 || rc == INFERD_EINVAL || rc == INFERD_EUNSUPPORTED;
}

static void test_random_nodes_never_crash(void **state) {
    (void)state;
    int accepted = 0, ran = 0;
    // HOSTILE_SEED and HOSTILE_ITERS explore further by hand; the defaults are what CI runs.
    if (getenv("HOSTILE_SEED"))
        rng_state = strtoull(getenv("HOSTILE_SEED"), NULL, 0) | 1;
    long iters = getenv("HOSTILE_ITERS") ? strtol(getenv("HOSTILE_ITERS"), NULL, 0) : 200000;
    for (long iter = 0; iter < iters; iter++) {
        eg_op op = (eg_op)(1 + iter % (EG_OP_FUSED_FIRST_ - 1));
        static const int opsets[] = {9, 11, 12, 13, 14, 15, 17, 18};
        int n_in = rnd() % 4 ? rnd_in(1, 3) : rnd_in(0, 8), n_out = rnd() % 2 ? 1 : rnd_in(1, 3);
        tcase *t = rnd() % 2 ? template_node(op) : NULL;
        if (t) {
            if (rnd() % 3)
                mutate(t);
            n_out = tc_node(t)->n_out;
        } else {
            t = tc_new(op, opsets[rnd() % 8], n_in, n_out);
            for (int i = 0; i < n_in; i++) {
                if (rnd() % 10 == 0)
                    tc_omit_in(t, i);
                else
                    random_input(t, i);
            }
            for (int j = 1; j < n_out; j++)
                if (rnd() % 3 == 0)
                    tc_omit_out(t, j);
            random_attrs(t);
        }
        int rc = tc_infer(t);
        if (!known_code(rc))
            fail_msg("%s: infer returned %d: %s", eg_op_name(op), rc, t->err.msg);
        if (rc == 0) {
            accepted++;
            accepted_by_op[op]++;
            int64_t total = 0;
            for (int j = 0; j < n_out; j++) {
                if (tc_node(t)->out[j] < 0)
                    continue;
                int64_t c = eg_tensor_numel(&t->out[j]);
                if (c < 0 || c > (INT64_C(1) << 31))
                    fail_msg("%s: output %d has %lld elements", eg_op_name(op), j, (long long)c);
                total += c;
            }
            if (total <= (1 << 20)) {
                rc = tc_run(t);
                ran++;
                if (rc != 0 && rc != INFERD_EINVAL)
                    fail_msg("%s: run returned %d: %s", eg_op_name(op), rc, t->err.msg);
            }
        }
        tc_free(t);
    }
    // The generator must reach run() often enough to mean something.
    print_message("%d nodes accepted, %d run\n", accepted, ran);
    if (getenv("HOSTILE_VERBOSE"))
        for (int op = 1; op < EG_OP_FUSED_FIRST_; op++)
            print_message("%s %d\n", eg_op_name((eg_op)op), accepted_by_op[op]);
    assert_in_range(ran, 5000, INT32_MAX);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_random_nodes_never_crash),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
