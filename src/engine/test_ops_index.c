/* Tests of the indexing ops (ops_index.c). Expected values from numpy 1.24 (fancy indexing,
 * take, take_along_axis, triu/tril, cumsum) and torch 1.13 (topk), pasted here. */
#include "engine/test_ops_util.h"

static void test_gather(void **state) {
    (void)state;
    // Embedding lookup: numpy d[[[0,3],[-1,1]]] with d = arange(12).reshape(4,3).
    tcase *t = tc_new(EG_OP_Gather, 13, 2, 1);
    tc_in_f32(t, 0, 2, DIMS(4, 3), F32S(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11));
    tc_in_i64(t, 1, 2, DIMS(2, 2), I64S(0, 3, -1, 1));
    expect_ok(t, tc_run(t));
    check_shape(&t->out[0], INFERD_DTYPE_F32, 3, DIMS(2, 2, 3));
    check_f32(&t->out[0], F32S(0, 1, 2, 9, 10, 11, 9, 10, 11, 3, 4, 5), 12, 0);
    tc_free(t);
    // axis 1 with int32 indices: numpy take(d2, [2, -3], axis=1).
    t = tc_new(EG_OP_Gather, 13, 2, 1);
    tc_attr_int(t, "axis", 1);
    tc_in_i64(t, 0, 2, DIMS(2, 3), I64S(0, 1, 2, 3, 4, 5));
    tc_in(t, 1, INFERD_DTYPE_I32, 1, DIMS(2), I32S(2, -3));
    expect_ok(t, tc_run(t));
    check_shape(&t->out[0], INFERD_DTYPE_I64, 2, DIMS(2, 2));
    check_ints(&t->out[0], I64S(2, 0, 5, 3), 4);
    tc_free(t);
    // A scalar index drops the axis.
    t = tc_new(EG_OP_Gather, 13, 2, 1);
    tc_in_i64(t, 0, 2, DIMS(3, 2), I64S(0, 1, 2, 3, 4, 5));
    tc_in_i64(t, 1, 0, NULL, I64S(-2));
    expect_ok(t, tc_run(t));
    check_shape(&t->out[0], INFERD_DTYPE_I64, 1, DIMS(2));
    check_ints(&t->out[0], I64S(2, 3), 2);
    tc_free(t);
}

static void test_gather_rejects_bad_indices(void **state) {
    (void)state;
    // Known at plan time: refused by infer.
    tcase *t = tc_new(EG_OP_Gather, 13, 2, 1);
    tc_in_f32(t, 0, 2, DIMS(4, 3), NULL);
    tc_in_i64(t, 1, 1, DIMS(2), I64S(1, -5));
    expect_err(t, tc_infer(t), INFERD_EINVAL, "index -5 is out of range for a dim of 4");
    // Arriving at run time (a token id from a request): run() refuses it, no read.
    tc_in_i64(t, 1, 1, DIMS(3), NULL);
    expect_ok(t, tc_infer(t));
    int64_t ids[3] = {0, 4, 1};
    t->in[1].data = ids;
    t->in[0].data = calloc(12, sizeof(float));
    int64_t *buf = inferd_malloc(NULL, 9 * sizeof(float));
    t->out[0].data = buf;
    eg_run_ctx ctx = {.threads = 1};
    expect_err(t, eg_op_def_get(EG_OP_Gather)->run(tc_node(t), t->in, t->out, &ctx, &t->err),
               INFERD_EINVAL, "index 4 is out of range");
    ids[1] = INT64_MIN;
    expect_err(t, eg_op_def_get(EG_OP_Gather)->run(tc_node(t), t->in, t->out, &ctx, &t->err),
               INFERD_EINVAL, "out of range");
    free(t->in[0].data);
    tc_free(t);
    t = tc_new(EG_OP_Gather, 13, 2, 1);
    tc_attr_int(t, "axis", 2);
    tc_in_f32(t, 0, 2, DIMS(4, 3), NULL);
    tc_in_i64(t, 1, 1, DIMS(2), NULL);
    expect_err(t, tc_infer(t), INFERD_EINVAL, "axis 2 is out of range");
    tc_in_f32(t, 1, 1, DIMS(2), NULL);
    expect_err(t, tc_infer(t), INFERD_EUNSUPPORTED, "input 1 of dtype float");
    tc_free(t);
}

static void test_gather_elements(void **state) {
    (void)state;
    // numpy take_along_axis.
    tcase *t = tc_new(EG_OP_GatherElements, 13, 2, 1);
    tc_attr_int(t, "axis", 1);
    tc_in_i64(t, 0, 2, DIMS(2, 2), I64S(1, 2, 3, 4));
    tc_in_i64(t, 1, 2, DIMS(2, 2), I64S(0, 0, 1, 0));
    expect_ok(t, tc_run(t));
    check_ints(&t->out[0], I64S(1, 1, 4, 3), 4);
    tc_free(t);
    t = tc_new(EG_OP_GatherElements, 13, 2, 1);
    tc_in_i64(t, 0, 2, DIMS(2, 2), I64S(1, 2, 3, 4));
    tc_in_i64(t, 1, 2, DIMS(2, 2), I64S(-1, 0, 0, -1));
    expect_ok(t, tc_run(t));
    check_ints(&t->out[0], I64S(3, 2, 1, 4), 4);
    tc_in_i64(t, 1, 2, DIMS(2, 2), I64S(0, 2, 0, 0));
    expect_err(t, tc_infer(t), INFERD_EINVAL, "index 2 is out of range");
    tc_in_i64(t, 1, 2, DIMS(1, 3), NULL);
    expect_err(t, tc_infer(t), INFERD_EINVAL, "indices dim 1 is 3");
    tc_free(t);
}

static void test_onehot(void **state) {
    (void)state;
    // -1 counts from the end of depth; 5 is outside [-3, 3) and gives an all-off row.
    tcase *t = tc_new(EG_OP_OneHot, 11, 3, 1);
    tc_in_i64(t, 0, 1, DIMS(4), I64S(0, 2, -1, 5));
    tc_in_i64(t, 1, 0, NULL, I64S(3));
    tc_in_f32(t, 2, 1, DIMS(2), F32S(-1, 5));
    expect_ok(t, tc_run(t));
    check_shape(&t->out[0], INFERD_DTYPE_F32, 2, DIMS(4, 3));
    check_f32(&t->out[0], F32S(5, -1, -1, -1, -1, 5, -1, -1, 5, -1, -1, -1), 12, 0);
    tc_free(t);
    // axis 0 puts depth first; float indices and depth.
    t = tc_new(EG_OP_OneHot, 11, 3, 1);
    tc_attr_int(t, "axis", 0);
    tc_in_f32(t, 0, 1, DIMS(2), F32S(1, 0));
    tc_in_f32(t, 1, 0, NULL, F32S(2));
    tc_in_i64(t, 2, 1, DIMS(2), I64S(0, 1));
    expect_ok(t, tc_run(t));
    check_shape(&t->out[0], INFERD_DTYPE_I64, 2, DIMS(2, 2));
    check_ints(&t->out[0], I64S(0, 1, 1, 0), 4);
    tc_in_f32(t, 1, 0, NULL, F32S(0));
    expect_err(t, tc_infer(t), INFERD_EINVAL, "depth is 0");
    tc_in_f32(t, 1, 0, NULL, NULL);
    expect_err(t, tc_infer(t), INFERD_EUNSUPPORTED, "depth");
    tc_free(t);
}

static void test_trilu(void **state) {
    (void)state;
    // numpy triu(a, 0), tril(a, -1), triu(a, 1) for a = arange(12).reshape(3,4).
    int64_t a[12];
    for (int i = 0; i < 12; i++)
        a[i] = i;
    struct {
        int upper;
        int64_t k;
        const int64_t *want;
    } cases[] = {
        {1, 0, I64S(0, 1, 2, 3, 0, 5, 6, 7, 0, 0, 10, 11)},
        {0, -1, I64S(0, 0, 0, 0, 4, 0, 0, 0, 8, 9, 0, 0)},
        {1, 1, I64S(0, 1, 2, 3, 0, 0, 6, 7, 0, 0, 0, 11)},
        {1, INT64_MIN, a},
        {0, INT64_MAX, a},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        tcase *t = tc_new(EG_OP_Trilu, 14, 2, 1);
        tc_attr_int(t, "upper", cases[c].upper);
        tc_in_i64(t, 0, 2, DIMS(3, 4), a);
        tc_in_i64(t, 1, 0, NULL, &cases[c].k);
        expect_ok(t, tc_run(t));
        check_ints(&t->out[0], cases[c].want, 12);
        tc_free(t);
    }
    // Batched, k omitted: numpy tril(arange(8).reshape(2,2,2)).
    tcase *t = tc_new(EG_OP_Trilu, 14, 1, 1);
    tc_attr_int(t, "upper", 0);
    tc_in_i64(t, 0, 3, DIMS(2, 2, 2), I64S(0, 1, 2, 3, 4, 5, 6, 7));
    expect_ok(t, tc_run(t));
    check_ints(&t->out[0], I64S(0, 0, 2, 3, 4, 0, 6, 7), 8);
    tc_in_i64(t, 0, 1, DIMS(3), NULL);
    expect_err(t, tc_infer(t), INFERD_EINVAL, "rank 1");
    tc_free(t);
}

static void test_cumsum(void **state) {
    (void)state;
    struct {
        int exclusive, reverse;
        const float *want;
    } cases[] = {
        {0, 0, F32S(1, 3, 6, 10)},
        {1, 0, F32S(0, 1, 3, 6)},
        {0, 1, F32S(10, 9, 7, 4)},
        {1, 1, F32S(9, 7, 4, 0)},
    };
    for (size_t c = 0; c < 4; c++) {
        tcase *t = tc_new(EG_OP_CumSum, 14, 2, 1);
        tc_attr_int(t, "exclusive", cases[c].exclusive);
        tc_attr_int(t, "reverse", cases[c].reverse);
        tc_in_f32(t, 0, 1, DIMS(4), F32S(1, 2, 3, 4));
        tc_in(t, 1, INFERD_DTYPE_I32, 0, NULL, I32S(0));
        expect_ok(t, tc_run(t));
        check_f32(&t->out[0], cases[c].want, 4, 0);
        tc_free(t);
    }
    // numpy cumsum([[1,2],[3,4]], 0) on int64; the axis given as -2.
    tcase *t = tc_new(EG_OP_CumSum, 14, 2, 1);
    tc_in_i64(t, 0, 2, DIMS(2, 2), I64S(1, 2, 3, 4));
    tc_in_i64(t, 1, 0, NULL, I64S(-2));
    expect_ok(t, tc_run(t));
    check_ints(&t->out[0], I64S(1, 2, 4, 6), 4);
    tc_in_i64(t, 1, 0, NULL, I64S(2));
    expect_err(t, tc_infer(t), INFERD_EINVAL, "axis 2 is out of range");
    // An axis only known at run time is checked there.
    tc_in_i64(t, 1, 0, NULL, NULL);
    expect_ok(t, tc_infer(t));
    int64_t axis = 5;
    t->in[1].data = &axis;
    t->out[0].data = inferd_malloc(NULL, 4 * sizeof(int64_t));
    eg_run_ctx ctx = {.threads = 1};
    expect_err(t, eg_op_def_get(EG_OP_CumSum)->run(tc_node(t), t->in, t->out, &ctx, &t->err),
               INFERD_EINVAL, "axis 5");
    tc_free(t);
}

static void test_topk(void **state) {
    (void)state;
    // torch.topk; equal values keep the lower index first.
    const float *x = F32S(3, 1, 4, 1, 5, 9, 2, 6, 5, 3);
    tcase *t = tc_new(EG_OP_TopK, 11, 2, 2);
    tc_in_f32(t, 0, 2, DIMS(2, 5), x);
    tc_in_i64(t, 1, 1, DIMS(1), I64S(3));
    expect_ok(t, tc_run(t));
    check_shape(&t->out[0], INFERD_DTYPE_F32, 2, DIMS(2, 3));
    check_f32(&t->out[0], F32S(5, 4, 3, 9, 6, 5), 6, 0);
    check_shape(&t->out[1], INFERD_DTYPE_I64, 2, DIMS(2, 3));
    check_ints(&t->out[1], I64S(4, 2, 0, 0, 2, 3), 6);
    tc_free(t);
    t = tc_new(EG_OP_TopK, 11, 2, 2);
    tc_attr_int(t, "largest", 0);
    tc_in_f32(t, 0, 2, DIMS(2, 5), x);
    tc_in_i64(t, 1, 1, DIMS(1), I64S(2));
    expect_ok(t, tc_run(t));
    check_f32(&t->out[0], F32S(1, 1, 2, 3), 4, 0);
    check_ints(&t->out[1], I64S(1, 3, 1, 4), 4);
    tc_free(t);
    t = tc_new(EG_OP_TopK, 11, 2, 2);
    tc_attr_int(t, "axis", 0);
    tc_in_f32(t, 0, 2, DIMS(2, 5), x);
    tc_in_i64(t, 1, 1, DIMS(1), I64S(1));
    expect_ok(t, tc_run(t));
    check_shape(&t->out[0], INFERD_DTYPE_F32, 2, DIMS(1, 5));
    check_f32(&t->out[0], F32S(9, 2, 6, 5, 5), 5, 0);
    check_ints(&t->out[1], I64S(1, 1, 1, 1, 0), 5);
    tc_in_i64(t, 1, 1, DIMS(1), I64S(3));
    expect_err(t, tc_infer(t), INFERD_EINVAL, "K is 3 for an axis of 2");
    tc_in_i64(t, 1, 1, DIMS(1), NULL);
    expect_err(t, tc_infer(t), INFERD_EUNSUPPORTED, "(K) must be known");
    tc_free(t);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gather),
        cmocka_unit_test(test_gather_rejects_bad_indices),
        cmocka_unit_test(test_gather_elements),
        cmocka_unit_test(test_onehot),
        cmocka_unit_test(test_trilu),
        cmocka_unit_test(test_cumsum),
        cmocka_unit_test(test_topk),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
