/* Tests of the reductions, ArgMax/ArgMin and Softmax/LogSoftmax (ops_reduce.c). Expected
 * values from numpy 1.24 (sum, mean, max, min, prod, sqrt of sums of squares, in float64 from
 * the float32 inputs) and torch 1.13 (logsumexp, softmax, log_softmax), pasted here. */
#include "engine/test_ops_util.h"

/* numpy: round(default_rng(7).uniform(-3, 3, (2,3,4)), 2) as float32. */
static const float X[24] = {0.75, 2.38,  1.65,  -1.65, -1.2,  2.24,  -2.97, 1.93,
                            1.78, -0.19, -1.18, -1.33, -1.47, -0.33, 0.03,  0.32,
                            2.97, 1.76,  0.73,  2.93,  -1.71, -2.04, 0.68,  -2.74};

/* A reduction of X at opset with axes as an attribute (attr=1) or input (attr=0). */
static tcase *reduce_case(eg_op op, int opset, int attr, int n_axes, const int64_t *axes,
                          int64_t keepdims) {
    tcase *t = tc_new(op, opset, attr || n_axes < 0 ? 1 : 2, 1);
    if (keepdims >= 0)
        tc_attr_int(t, "keepdims", keepdims);
    if (attr && n_axes >= 0)
        tc_attr_ints(t, "axes", n_axes, axes);
    tc_in_f32(t, 0, 3, DIMS(2, 3, 4), X);
    if (!attr && n_axes >= 0)
        tc_in_i64(t, 1, 1, (int64_t[]){n_axes}, axes);
    return t;
}

static void test_reduce_sum_across_opsets(void **state) {
    (void)state;
    // Opset 11: axes attribute, keepdims default 1.
    tcase *t = reduce_case(EG_OP_ReduceSum, 11, 1, 1, I64S(1), -1);
    expect_ok(t, tc_run(t));
    check_shape(&t->out[0], INFERD_DTYPE_F32, 3, DIMS(2, 1, 4));
    check_f32(&t->out[0],
              F32S(1.32999992, 4.42999983, -2.5, -1.05000007, -0.210000038, -0.610000014,
                   1.44000006, 0.50999999),
              8, 1e-6);
    tc_free(t);
    // Opset 13: axes input, negative axis, keepdims 0.
    t = reduce_case(EG_OP_ReduceSum, 13, 0, 1, I64S(-1), 0);
    expect_ok(t, tc_run(t));
    check_shape(&t->out[0], INFERD_DTYPE_F32, 2, DIMS(2, 3));
    check_f32(&t->out[0],
              F32S(3.13000011, -1.1920929e-07, -0.920000076, -1.45000005, 8.39000034, -5.80999994),
              6, 1e-6);
    tc_free(t);
    // No axes: everything.
    t = reduce_case(EG_OP_ReduceSum, 13, 0, -1, NULL, -1);
    expect_ok(t, tc_run(t));
    check_shape(&t->out[0], INFERD_DTYPE_F32, 3, DIMS(1, 1, 1));
    check_f32(&t->out[0], F32S(3.34000003), 1, 1e-6);
    tc_free(t);
    // No axes with noop_with_empty_axes: the identity.
    t = reduce_case(EG_OP_ReduceSum, 13, 0, 0, I64S(0), -1);
    tc_attr_int(t, "noop_with_empty_axes", 1);
    expect_ok(t, tc_run(t));
    check_shape(&t->out[0], INFERD_DTYPE_F32, 3, DIMS(2, 3, 4));
    check_f32(&t->out[0], X, 24, 0);
    tc_free(t);
    // Axes as an input must be known when planning.
    t = reduce_case(EG_OP_ReduceSum, 13, 0, 1, I64S(0), -1);
    tc_in_i64(t, 1, 1, DIMS(1), NULL);
    expect_err(t, tc_infer(t), INFERD_EUNSUPPORTED, "(axes) must be known");
    tc_in_i64(t, 1, 1, DIMS(2), I64S(0, -3));
    expect_err(t, tc_infer(t), INFERD_EINVAL, "given twice");
    tc_in_i64(t, 1, 1, DIMS(1), I64S(3));
    expect_err(t, tc_infer(t), INFERD_EINVAL, "axis 3 is out of range");
    tc_free(t);
}

static void test_other_reductions(void **state) {
    (void)state;
    // Mean over the non-adjacent axes 0 and 2.
    tcase *t = reduce_case(EG_OP_ReduceMean, 13, 1, 2, I64S(0, 2), 0);
    expect_ok(t, tc_run(t));
    check_shape(&t->out[0], INFERD_DTYPE_F32, 1, DIMS(3));
    check_f32(&t->out[0], F32S(0.210000008, 1.04875, -0.841250002), 3, 1e-6);
    tc_free(t);
    // Opset 18 takes the axes of every reduction as an input.
    t = reduce_case(EG_OP_ReduceMax, 18, 0, 1, I64S(1), 1);
    expect_ok(t, tc_run(t));
    check_shape(&t->out[0], INFERD_DTYPE_F32, 3, DIMS(2, 1, 4));
    check_f32(&t->out[0], F32S(1.78, 2.38, 1.65, 1.93, 2.97, 1.76, 0.73, 2.93), 8, 0);
    tc_free(t);
    t = reduce_case(EG_OP_ReduceMin, 13, 1, 1, I64S(1), 1);
    expect_ok(t, tc_run(t));
    check_f32(&t->out[0], F32S(-1.2, -0.19, -2.97, -1.65, -1.71, -2.04, 0.03, -2.74), 8, 0);
    tc_free(t);
    t = reduce_case(EG_OP_ReduceProd, 13, 1, 1, I64S(2), 1);
    expect_ok(t, tc_run(t));
    check_shape(&t->out[0], INFERD_DTYPE_F32, 3, DIMS(2, 3, 1));
    check_f32(&t->out[0],
              F32S(-4.85966259, 15.4078852, -0.530771058, 0.00465696007, 11.1804587, -6.49958699),
              6, 1e-6);
    tc_free(t);
    t = reduce_case(EG_OP_ReduceL2, 13, 1, 2, I64S(0, 1), 1);
    expect_ok(t, tc_run(t));
    check_shape(&t->out[0], INFERD_DTYPE_F32, 3, DIMS(1, 1, 4));
    check_f32(&t->out[0], F32S(4.36769967, 4.25278737, 3.73255944, 4.9407692), 4, 1e-6);
    tc_free(t);
    t = reduce_case(EG_OP_ReduceSumSquare, 13, 1, 2, I64S(1, 2), 0);
    expect_ok(t, tc_run(t));
    check_shape(&t->out[0], INFERD_DTYPE_F32, 1, DIMS(2));
    check_f32(&t->out[0], F32S(37.0411004, 38.4651007), 2, 1e-6);
    tc_free(t);
    // LogSumExp stays finite for large values (torch.logsumexp in float64).
    t = tc_new(EG_OP_ReduceLogSumExp, 13, 1, 1);
    tc_attr_ints(t, "axes", 1, I64S(1));
    tc_attr_int(t, "keepdims", 0);
    tc_in_f32(t, 0, 2, DIMS(2, 3), F32S(1000, 1001, 999, -1e30, 0, -5));
    expect_ok(t, tc_run(t));
    check_f32(&t->out[0], F32S(1001.40761, 0.00671534849), 2, 1e-6);
    tc_in_i64(t, 0, 2, DIMS(2, 3), NULL);
    expect_err(t, tc_infer(t), INFERD_EUNSUPPORTED, "int64");
    tc_free(t);
}

static void test_integer_reductions(void **state) {
    (void)state;
    tcase *t = tc_new(EG_OP_ReduceSum, 13, 2, 1);
    tc_attr_int(t, "keepdims", 0);
    tc_in_i64(t, 0, 2, DIMS(2, 2), I64S(1, INT64_MAX, 3, 1));
    tc_in_i64(t, 1, 1, DIMS(1), I64S(0));
    expect_ok(t, tc_run(t));
    check_shape(&t->out[0], INFERD_DTYPE_I64, 1, DIMS(2));
    check_ints(&t->out[0], I64S(4, INT64_MIN), 2);
    tc_free(t);
    t = tc_new(EG_OP_ReduceMax, 13, 1, 1);
    tc_in(t, 0, INFERD_DTYPE_I32, 2, DIMS(2, 2), I32S(-5, -7, 3, -1));
    expect_ok(t, tc_run(t));
    check_shape(&t->out[0], INFERD_DTYPE_I32, 2, DIMS(1, 1));
    check_ints(&t->out[0], I64S(3), 1);
    tc_free(t);
}

static void test_argmax_argmin(void **state) {
    (void)state;
    const float *x = F32S(1, 3, 3, 2, 2, 0);
    struct {
        eg_op op;
        int last;
        const int64_t *want;
    } cases[] = {
        {EG_OP_ArgMax, 0, I64S(1, 0)},
        {EG_OP_ArgMax, 1, I64S(2, 1)},
        {EG_OP_ArgMin, 0, I64S(0, 2)},
    };
    for (size_t c = 0; c < 3; c++) {
        tcase *t = tc_new(cases[c].op, 13, 1, 1);
        tc_attr_int(t, "axis", -1);
        tc_attr_int(t, "keepdims", 0);
        tc_attr_int(t, "select_last_index", cases[c].last);
        tc_in_f32(t, 0, 2, DIMS(2, 3), x);
        expect_ok(t, tc_run(t));
        check_shape(&t->out[0], INFERD_DTYPE_I64, 1, DIMS(2));
        check_ints(&t->out[0], cases[c].want, 2);
        tc_free(t);
    }
    tcase *t = tc_new(EG_OP_ArgMax, 13, 1, 1);
    tc_in_i64(t, 0, 2, DIMS(2, 3), I64S(5, 1, 9, 7, 8, 6));
    expect_ok(t, tc_run(t));
    check_shape(&t->out[0], INFERD_DTYPE_I64, 2, DIMS(1, 3));
    check_ints(&t->out[0], I64S(1, 1, 0), 3);
    tc_in_i64(t, 0, 2, DIMS(0, 3), NULL);
    expect_err(t, tc_infer(t), INFERD_EINVAL, "axis 0 is empty");
    tc_free(t);
}

/* Softmax over axis 1 of [2,3,2] before opset 13 normalises each [3,2] block as one row; from
 * 13 it normalises along dim 1 only (torch.softmax on the reshaped / original tensor). */
static void test_softmax_axis_semantics_change_at_13(void **state) {
    (void)state;
    const float *s = F32S(1, 2, 3, 4, 5, 6, 0, 0, 1000, 1001, -1, 1);
    tcase *t = tc_new(EG_OP_Softmax, 11, 1, 1);
    tc_in_f32(t, 0, 3, DIMS(2, 3, 2), s);
    expect_ok(t, tc_run(t));
    check_shape(&t->out[0], INFERD_DTYPE_F32, 3, DIMS(2, 3, 2));
    check_f32(&t->out[0],
              F32S(0.00426977826, 0.0116064614, 0.0315496325, 0.0857607946, 0.233122006,
                   0.633691311, 0, 0, 0.268941432, 0.731058598, 0, 0),
              12, 1e-6);
    tc_free(t);
    t = tc_new(EG_OP_Softmax, 13, 1, 1);
    tc_attr_int(t, "axis", 1);
    tc_in_f32(t, 0, 3, DIMS(2, 3, 2), s);
    expect_ok(t, tc_run(t));
    check_f32(&t->out[0],
              F32S(0.015876241, 0.015876241, 0.117310427, 0.117310427, 0.866813362, 0.866813362, 0,
                   0, 1, 1, 0, 0),
              12, 1e-6);
    tc_free(t);
    // Default axis -1 from 13.
    t = tc_new(EG_OP_LogSoftmax, 13, 1, 1);
    tc_in_f32(t, 0, 3, DIMS(2, 3, 2), s);
    expect_ok(t, tc_run(t));
    check_f32(&t->out[0],
              F32S(-1.31326163, -0.313261658, -1.31326163, -0.313261658, -1.31326163, -0.313261658,
                   -0.693147182, -0.693147182, -1.31326163, -0.313261658, -2.12692809,
                   -0.126928046),
              12, 1e-6);
    tc_in_f32(t, 0, 0, NULL, F32S(1));
    expect_err(t, tc_infer(t), INFERD_EINVAL, "axis -1 is out of range for rank 0");
    tc_free(t);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reduce_sum_across_opsets),
        cmocka_unit_test(test_other_reductions),
        cmocka_unit_test(test_integer_reductions),
        cmocka_unit_test(test_argmax_argmin),
        cmocka_unit_test(test_softmax_axis_semantics_change_at_13),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
