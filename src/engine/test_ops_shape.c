/* Tests of the shape and data-movement ops (ops_shape.c). Expected layouts were computed with
 * numpy 1.24 (reshape, squeeze, expand_dims, pad, tile, broadcast_to, transpose, slicing,
 * arange) and pasted here. */
#include "engine/test_ops_util.h"

static int64_t iota_buf[64];

/* 0, 1, 2, ... as int64. */
static const int64_t *iota(void) {
    for (int i = 0; i < 64; i++)
        iota_buf[i] = i;
    return iota_buf;
}

static void test_reshape(void **state) {
    (void)state;
    tcase *t = tc_new(EG_OP_Reshape, 14, 2, 1);
    tc_in_i64(t, 0, 3, DIMS(2, 3, 4), iota());
    tc_in_i64(t, 1, 1, DIMS(2), I64S(0, -1));
    expect_ok(t, tc_run(t));
    check_shape(&t->out[0], INFERD_DTYPE_I64, 2, DIMS(2, 12));
    // run() of a view still copies when the planner gives it separate buffers.
    check_ints(&t->out[0], iota(), 24);
    tc_in_i64(t, 1, 1, DIMS(3), I64S(-1, 3, 2));
    expect_ok(t, tc_infer(t));
    check_shape(&t->out[0], INFERD_DTYPE_I64, 3, DIMS(4, 3, 2));
    tc_in_i64(t, 1, 1, DIMS(2), I64S(-1, -1));
    expect_err(t, tc_infer(t), INFERD_EINVAL, "more than one -1");
    tc_in_i64(t, 1, 1, DIMS(2), I64S(-1, 5));
    expect_err(t, tc_infer(t), INFERD_EINVAL, "leaving a -1");
    tc_in_i64(t, 1, 1, DIMS(2), I64S(5, 5));
    expect_err(t, tc_infer(t), INFERD_EINVAL, "into 25 elements");
    tc_in_i64(t, 1, 1, DIMS(3), I64S(INT64_C(1) << 40, INT64_C(1) << 40, 0));
    expect_err(t, tc_infer(t), INFERD_EINVAL, "shape holds");
    tc_in_i64(t, 1, 1, DIMS(3), I64S(65536, 65536, 65536));
    expect_err(t, tc_infer(t), INFERD_EINVAL, "over 2147483648");
    tc_in_i64(t, 1, 1, DIMS(2), I64S(-2, 12));
    expect_err(t, tc_infer(t), INFERD_EINVAL, "shape holds -2");
    tc_in_i64(t, 1, 1, DIMS(2), NULL);
    expect_err(t, tc_infer(t), INFERD_EUNSUPPORTED, "input 1 (shape) must be known");
    tc_free(t);
    // allowzero=1 keeps a 0 as a real zero dim; without it 0 copies the input dim.
    t = tc_new(EG_OP_Reshape, 14, 2, 1);
    tc_attr_int(t, "allowzero", 1);
    tc_in_f32(t, 0, 2, DIMS(0, 4), NULL);
    tc_in_i64(t, 1, 1, DIMS(2), I64S(4, 0));
    expect_ok(t, tc_infer(t));
    check_shape(&t->out[0], INFERD_DTYPE_F32, 2, DIMS(4, 0));
    tc_free(t);
    t = tc_new(EG_OP_Reshape, 14, 2, 1);
    tc_in_f32(t, 0, 2, DIMS(0, 4), NULL);
    tc_in_i64(t, 1, 1, DIMS(2), I64S(4, 0));
    expect_err(t, tc_infer(t), INFERD_EINVAL, "into 16 elements");
    tc_free(t);
}

static void test_flatten(void **state) {
    (void)state;
    int64_t axes[4] = {0, -1, 3, 1};
    int64_t want[4][2] = {{1, 24}, {6, 4}, {24, 1}, {2, 12}};
    for (int k = 0; k < 4; k++) {
        tcase *t = tc_new(EG_OP_Flatten, 13, 1, 1);
        tc_attr_int(t, "axis", axes[k]);
        tc_in_i64(t, 0, 3, DIMS(2, 3, 4), iota());
        expect_ok(t, tc_run(t));
        check_shape(&t->out[0], INFERD_DTYPE_I64, 2, want[k]);
        check_ints(&t->out[0], iota(), 24);
        tc_free(t);
    }
    tcase *t = tc_new(EG_OP_Flatten, 13, 1, 1);
    tc_attr_int(t, "axis", 4);
    tc_in_i64(t, 0, 3, DIMS(2, 3, 4), NULL);
    expect_err(t, tc_infer(t), INFERD_EINVAL, "attribute axis is 4");
    tc_free(t);
}

static void test_squeeze_unsqueeze_across_opsets(void **state) {
    (void)state;
    // Opset 11: axes attribute.
    tcase *t = tc_new(EG_OP_Squeeze, 11, 1, 1);
    tc_attr_ints(t, "axes", 1, I64S(-1));
    tc_in_f32(t, 0, 4, DIMS(2, 1, 3, 1), NULL);
    expect_ok(t, tc_infer(t));
    check_shape(&t->out[0], INFERD_DTYPE_F32, 3, DIMS(2, 1, 3));
    tc_free(t);
    // Opset 13: axes input; the attribute is no longer read.
    t = tc_new(EG_OP_Squeeze, 13, 2, 1);
    tc_in_f32(t, 0, 4, DIMS(2, 1, 3, 1), NULL);
    tc_in_i64(t, 1, 1, DIMS(1), I64S(1));
    expect_ok(t, tc_infer(t));
    check_shape(&t->out[0], INFERD_DTYPE_F32, 3, DIMS(2, 3, 1));
    tc_in_i64(t, 1, 1, DIMS(1), I64S(0));
    expect_err(t, tc_infer(t), INFERD_EINVAL, "cannot squeeze axis 0 of size 2");
    tc_in_i64(t, 1, 1, DIMS(1), I64S(4));
    expect_err(t, tc_infer(t), INFERD_EINVAL, "axis 4 is out of range");
    tc_free(t);
    // No axes: every 1 goes.
    t = tc_new(EG_OP_Squeeze, 13, 1, 1);
    tc_in_i64(t, 0, 4, DIMS(2, 1, 3, 1), iota());
    expect_ok(t, tc_run(t));
    check_shape(&t->out[0], INFERD_DTYPE_I64, 2, DIMS(2, 3));
    check_ints(&t->out[0], iota(), 6);
    tc_free(t);
    t = tc_new(EG_OP_Unsqueeze, 11, 1, 1);
    tc_attr_ints(t, "axes", 2, I64S(0, -1));
    tc_in_f32(t, 0, 2, DIMS(2, 3), NULL);
    expect_ok(t, tc_infer(t));
    check_shape(&t->out[0], INFERD_DTYPE_F32, 4, DIMS(1, 2, 3, 1));
    tc_free(t);
    t = tc_new(EG_OP_Unsqueeze, 13, 2, 1);
    tc_in_f32(t, 0, 2, DIMS(2, 3), NULL);
    tc_in_i64(t, 1, 1, DIMS(2), I64S(3, 1));
    expect_ok(t, tc_infer(t));
    check_shape(&t->out[0], INFERD_DTYPE_F32, 4, DIMS(2, 1, 3, 1));
    tc_in_i64(t, 1, 1, DIMS(2), I64S(1, -3));
    expect_err(t, tc_infer(t), INFERD_EINVAL, "axis 1 is given twice");
    tc_in_i64(t, 1, 0, NULL, I64S(0));
    expect_ok(t, tc_infer(t));
    check_shape(&t->out[0], INFERD_DTYPE_F32, 3, DIMS(1, 2, 3));
    tc_free(t);
    t = tc_new(EG_OP_Unsqueeze, 13, 1, 1);
    tc_in_f32(t, 0, 2, DIMS(2, 3), NULL);
    expect_err(t, tc_infer(t), INFERD_EINVAL, "axes are required");
    tc_free(t);
}

static void test_identity_and_dropout(void **state) {
    (void)state;
    tcase *t = tc_new(EG_OP_Identity, 16, 1, 1);
    tc_in_f32(t, 0, 1, DIMS(3), F32S(1, 2, 3));
    expect_ok(t, tc_run(t));
    check_f32(&t->out[0], F32S(1, 2, 3), 3, 0);
    tc_free(t);
    // Opset 13: ratio input, mask output all true.
    t = tc_new(EG_OP_Dropout, 13, 2, 2);
    tc_in_f32(t, 0, 2, DIMS(2, 2), F32S(1, 2, 3, 4));
    tc_in_f32(t, 1, 0, NULL, F32S(0.3));
    expect_ok(t, tc_run(t));
    check_f32(&t->out[0], F32S(1, 2, 3, 4), 4, 0);
    check_shape(&t->out[1], INFERD_DTYPE_BOOL, 2, DIMS(2, 2));
    check_ints(&t->out[1], I64S(1, 1, 1, 1), 4);
    tc_free(t);
    // training_mode=true would be random: refused.
    t = tc_new(EG_OP_Dropout, 13, 3, 1);
    tc_in_f32(t, 0, 1, DIMS(2), F32S(1, 2));
    tc_in_f32(t, 1, 0, NULL, F32S(0.5));
    tc_in(t, 2, INFERD_DTYPE_BOOL, 0, NULL, BOOLS(1));
    expect_err(t, tc_infer(t), INFERD_EUNSUPPORTED, "training_mode");
    tc_in(t, 2, INFERD_DTYPE_BOOL, 0, NULL, BOOLS(0));
    expect_ok(t, tc_infer(t));
    tc_free(t);
    // Opset 10: ratio attribute.
    t = tc_new(EG_OP_Dropout, 10, 1, 2);
    tc_attr_float(t, "ratio", 0.1f);
    tc_in_f32(t, 0, 1, DIMS(2), F32S(5, 6));
    expect_ok(t, tc_run(t));
    check_f32(&t->out[0], F32S(5, 6), 2, 0);
    check_ints(&t->out[1], I64S(1, 1), 2);
    tc_free(t);
}

static void test_shape_and_size(void **state) {
    (void)state;
    // Run with no input data: only the dims matter.
    tcase *t = tc_new(EG_OP_Shape, 13, 1, 1);
    tc_in_f32(t, 0, 4, DIMS(2, 3, 4, 5), NULL);
    expect_ok(t, tc_run(t));
    assert_null(t->in[0].data);
    check_shape(&t->out[0], INFERD_DTYPE_I64, 1, DIMS(4));
    check_ints(&t->out[0], I64S(2, 3, 4, 5), 4);
    tc_free(t);
    // Opset 15: start and end, clamped.
    int64_t se[4][2] = {{1, -1}, {-10, 2}, {2, 100}, {3, 1}};
    int64_t want[4][3] = {{3, 4}, {2, 3}, {4, 5}, {0}};
    int64_t len[4] = {2, 2, 2, 0};
    for (int k = 0; k < 4; k++) {
        t = tc_new(EG_OP_Shape, 15, 1, 1);
        tc_attr_int(t, "start", se[k][0]);
        tc_attr_int(t, "end", se[k][1]);
        tc_in_f32(t, 0, 4, DIMS(2, 3, 4, 5), NULL);
        expect_ok(t, tc_run(t));
        check_shape(&t->out[0], INFERD_DTYPE_I64, 1, &len[k]);
        check_ints(&t->out[0], want[k], len[k]);
        tc_free(t);
    }
    t = tc_new(EG_OP_Size, 13, 1, 1);
    tc_in_f32(t, 0, 3, DIMS(2, 3, 4), NULL);
    expect_ok(t, tc_run(t));
    check_shape(&t->out[0], INFERD_DTYPE_I64, 0, NULL);
    check_ints(&t->out[0], I64S(24), 1);
    tc_free(t);
}

static void test_constant(void **state) {
    (void)state;
    tcase *t = tc_new(EG_OP_Constant, 13, 0, 1);
    tc_attr_tensor(t, "value", INFERD_DTYPE_F32, 2, DIMS(2, 2), F32S(1, 2, 3, 4));
    expect_ok(t, tc_run(t));
    check_shape(&t->out[0], INFERD_DTYPE_F32, 2, DIMS(2, 2));
    check_f32(&t->out[0], F32S(1, 2, 3, 4), 4, 0);
    tc_free(t);
    t = tc_new(EG_OP_Constant, 13, 0, 1);
    tc_attr_floats(t, "value_floats", 3, F32S(0.5, 1.5, 2.5));
    expect_ok(t, tc_run(t));
    check_shape(&t->out[0], INFERD_DTYPE_F32, 1, DIMS(3));
    check_f32(&t->out[0], F32S(0.5, 1.5, 2.5), 3, 0);
    tc_free(t);
    t = tc_new(EG_OP_Constant, 13, 0, 1);
    tc_attr_int(t, "value_int", -42);
    expect_ok(t, tc_run(t));
    check_shape(&t->out[0], INFERD_DTYPE_I64, 0, NULL);
    check_ints(&t->out[0], I64S(-42), 1);
    tc_free(t);
    t = tc_new(EG_OP_Constant, 13, 0, 1);
    tc_attr_ints(t, "value_ints", 2, I64S(7, 8));
    expect_ok(t, tc_run(t));
    check_ints(&t->out[0], I64S(7, 8), 2);
    tc_free(t);
    t = tc_new(EG_OP_Constant, 13, 0, 1);
    tc_attr_float(t, "value_float", 2.5f);
    expect_ok(t, tc_run(t));
    check_shape(&t->out[0], INFERD_DTYPE_F32, 0, NULL);
    check_f32(&t->out[0], F32S(2.5), 1, 0);
    tc_free(t);
    t = tc_new(EG_OP_Constant, 13, 0, 1);
    tc_attr_string(t, "value_string", "hi");
    expect_err(t, tc_infer(t), INFERD_EUNSUPPORTED, "value_string");
    tc_free(t);
    t = tc_new(EG_OP_Constant, 13, 0, 1);
    tc_attr_int(t, "value_int", 1);
    tc_attr_float(t, "value_float", 1);
    expect_err(t, tc_infer(t), INFERD_EINVAL, "has both");
    tc_free(t);
}

static void test_constant_of_shape(void **state) {
    (void)state;
    tcase *t = tc_new(EG_OP_ConstantOfShape, 13, 1, 1);
    tc_attr_tensor(t, "value", INFERD_DTYPE_I64, 1, DIMS(1), I64S(7));
    tc_in_i64(t, 0, 1, DIMS(2), I64S(2, 3));
    expect_ok(t, tc_run(t));
    check_shape(&t->out[0], INFERD_DTYPE_I64, 2, DIMS(2, 3));
    check_ints(&t->out[0], I64S(7, 7, 7, 7, 7, 7), 6);
    tc_free(t);
    // Default value: float 0; an empty shape gives a scalar.
    t = tc_new(EG_OP_ConstantOfShape, 13, 1, 1);
    tc_in_i64(t, 0, 1, DIMS(0), I64S(0));
    expect_ok(t, tc_run(t));
    check_shape(&t->out[0], INFERD_DTYPE_F32, 0, NULL);
    check_f32(&t->out[0], F32S(0), 1, 0);
    tc_in_i64(t, 0, 1, DIMS(2), I64S(2, -1));
    expect_err(t, tc_infer(t), INFERD_EINVAL, "shape holds -1");
    tc_in_i64(t, 0, 1, DIMS(2), NULL);
    expect_err(t, tc_infer(t), INFERD_EUNSUPPORTED, "(shape) must be known");
    tc_free(t);
}

static void test_range(void **state) {
    (void)state;
    // numpy arange(1, 2.5, 0.5) and arange(10, 1, -3).
    tcase *t = tc_new(EG_OP_Range, 11, 3, 1);
    tc_in_f32(t, 0, 0, NULL, F32S(1));
    tc_in_f32(t, 1, 0, NULL, F32S(2.5));
    tc_in_f32(t, 2, 0, NULL, F32S(0.5));
    expect_ok(t, tc_run(t));
    check_shape(&t->out[0], INFERD_DTYPE_F32, 1, DIMS(3));
    check_f32(&t->out[0], F32S(1, 1.5, 2), 3, 0);
    tc_free(t);
    t = tc_new(EG_OP_Range, 11, 3, 1);
    tc_in_i64(t, 0, 0, NULL, I64S(10));
    tc_in_i64(t, 1, 0, NULL, I64S(1));
    tc_in_i64(t, 2, 0, NULL, I64S(-3));
    expect_ok(t, tc_run(t));
    check_shape(&t->out[0], INFERD_DTYPE_I64, 1, DIMS(3));
    check_ints(&t->out[0], I64S(10, 7, 4), 3);
    // Empty when the limit is behind the start.
    tc_in_i64(t, 2, 0, NULL, I64S(3));
    expect_ok(t, tc_infer(t));
    check_shape(&t->out[0], INFERD_DTYPE_I64, 1, DIMS(0));
    tc_in_i64(t, 2, 0, NULL, I64S(0));
    expect_err(t, tc_infer(t), INFERD_EINVAL, "delta is 0");
    // The extremes of int64 neither overflow nor allocate: 2^64 / 2 elements is refused.
    tc_in_i64(t, 0, 0, NULL, I64S(INT64_MIN));
    tc_in_i64(t, 1, 0, NULL, I64S(INT64_MAX));
    tc_in_i64(t, 2, 0, NULL, I64S(2));
    expect_err(t, tc_infer(t), INFERD_EINVAL, "elements");
    tc_in_i64(t, 2, 0, NULL, NULL);
    expect_err(t, tc_infer(t), INFERD_EUNSUPPORTED, "delta");
    tc_free(t);
    t = tc_new(EG_OP_Range, 11, 3, 1);
    tc_in(t, 0, INFERD_DTYPE_I32, 0, NULL, I32S(-2));
    tc_in(t, 1, INFERD_DTYPE_I32, 0, NULL, I32S(3));
    tc_in(t, 2, INFERD_DTYPE_I32, 0, NULL, I32S(2));
    expect_ok(t, tc_run(t));
    check_shape(&t->out[0], INFERD_DTYPE_I32, 1, DIMS(3));
    check_ints(&t->out[0], I64S(-2, 0, 2), 3);
    tc_free(t);
}

static void test_expand_and_tile(void **state) {
    (void)state;
    tcase *t = tc_new(EG_OP_Expand, 13, 2, 1);
    tc_in_i64(t, 0, 2, DIMS(3, 1), I64S(1, 2, 3));
    tc_in_i64(t, 1, 1, DIMS(3), I64S(2, 1, 4));
    expect_ok(t, tc_run(t));
    check_shape(&t->out[0], INFERD_DTYPE_I64, 3, DIMS(2, 3, 4));
    check_ints(&t->out[0],
               I64S(1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3), 24);
    // A shorter shape broadcasts too (both ways).
    tc_in_i64(t, 1, 1, DIMS(1), I64S(4));
    expect_ok(t, tc_infer(t));
    check_shape(&t->out[0], INFERD_DTYPE_I64, 2, DIMS(3, 4));
    tc_in_i64(t, 1, 1, DIMS(2), I64S(2, 4));
    expect_err(t, tc_infer(t), INFERD_EINVAL, "cannot be broadcast");
    tc_free(t);
    t = tc_new(EG_OP_Tile, 13, 2, 1);
    tc_in_i64(t, 0, 2, DIMS(2, 2), I64S(1, 2, 3, 4));
    tc_in_i64(t, 1, 1, DIMS(2), I64S(2, 3));
    expect_ok(t, tc_run(t));
    check_shape(&t->out[0], INFERD_DTYPE_I64, 2, DIMS(4, 6));
    check_ints(&t->out[0],
               I64S(1, 2, 1, 2, 1, 2, 3, 4, 3, 4, 3, 4, 1, 2, 1, 2, 1, 2, 3, 4, 3, 4, 3, 4), 24);
    tc_in_i64(t, 1, 1, DIMS(1), I64S(2));
    expect_err(t, tc_infer(t), INFERD_EINVAL, "has 1 repeats for rank 2");
    tc_in_i64(t, 1, 1, DIMS(2), I64S(2, -1));
    expect_err(t, tc_infer(t), INFERD_EINVAL, "repeats holds -1");
    tc_free(t);
}

static void test_concat(void **state) {
    (void)state;
    tcase *t = tc_new(EG_OP_Concat, 13, 3, 1);
    tc_attr_int(t, "axis", -1);
    tc_in_i64(t, 0, 2, DIMS(2, 1), I64S(1, 2));
    tc_in_i64(t, 1, 2, DIMS(2, 0), NULL);
    tc_in_i64(t, 2, 2, DIMS(2, 2), I64S(10, 11, 20, 21));
    expect_ok(t, tc_run(t));
    check_shape(&t->out[0], INFERD_DTYPE_I64, 2, DIMS(2, 3));
    check_ints(&t->out[0], I64S(1, 10, 11, 2, 20, 21), 6);
    tc_in_i64(t, 1, 2, DIMS(3, 0), NULL);
    expect_err(t, tc_infer(t), INFERD_EINVAL, "cannot concatenate");
    tc_free(t);
    t = tc_new(EG_OP_Concat, 13, 2, 1);
    tc_in_i64(t, 0, 1, DIMS(1), I64S(1));
    tc_in_i64(t, 1, 1, DIMS(1), I64S(2));
    expect_err(t, tc_infer(t), INFERD_EINVAL, "axis is required");
    tc_free(t);
}

static void test_split_across_opsets(void **state) {
    (void)state;
    // Opset 11: split attribute.
    tcase *t = tc_new(EG_OP_Split, 11, 1, 2);
    tc_attr_int(t, "axis", 1);
    tc_attr_ints(t, "split", 2, I64S(1, 2));
    tc_in_i64(t, 0, 2, DIMS(2, 3), iota());
    expect_ok(t, tc_run(t));
    check_shape(&t->out[0], INFERD_DTYPE_I64, 2, DIMS(2, 1));
    check_ints(&t->out[0], I64S(0, 3), 2);
    check_shape(&t->out[1], INFERD_DTYPE_I64, 2, DIMS(2, 2));
    check_ints(&t->out[1], I64S(1, 2, 4, 5), 4);
    tc_free(t);
    // Opset 13: split input; negative axis.
    t = tc_new(EG_OP_Split, 13, 2, 2);
    tc_attr_int(t, "axis", -1);
    tc_in_i64(t, 0, 2, DIMS(2, 3), iota());
    tc_in_i64(t, 1, 1, DIMS(2), I64S(2, 1));
    expect_ok(t, tc_run(t));
    check_ints(&t->out[0], I64S(0, 1, 3, 4), 4);
    check_ints(&t->out[1], I64S(2, 5), 2);
    tc_in_i64(t, 1, 1, DIMS(2), I64S(2, 2));
    expect_err(t, tc_infer(t), INFERD_EINVAL, "add up to 4, not 3");
    tc_free(t);
    // No split: equal parts.
    t = tc_new(EG_OP_Split, 13, 1, 3);
    tc_in_i64(t, 0, 1, DIMS(6), iota());
    expect_ok(t, tc_run(t));
    check_ints(&t->out[0], I64S(0, 1), 2);
    check_ints(&t->out[1], I64S(2, 3), 2);
    check_ints(&t->out[2], I64S(4, 5), 2);
    tc_in_i64(t, 0, 1, DIMS(5), iota());
    expect_err(t, tc_infer(t), INFERD_EINVAL, "equal parts");
    tc_free(t);
    // Opset 18: num_outputs with a smaller last part.
    t = tc_new(EG_OP_Split, 18, 1, 3);
    tc_attr_int(t, "num_outputs", 3);
    tc_in_i64(t, 0, 1, DIMS(5), iota());
    expect_ok(t, tc_run(t));
    check_ints(&t->out[0], I64S(0, 1), 2);
    check_ints(&t->out[1], I64S(2, 3), 2);
    check_ints(&t->out[2], I64S(4), 1);
    tc_free(t);
}

static void test_slice(void **state) {
    (void)state;
    // numpy x[1:3, -1:-6:-2] for x = arange(20).reshape(4,5).
    tcase *t = tc_new(EG_OP_Slice, 13, 5, 1);
    tc_in_i64(t, 0, 2, DIMS(4, 5), iota());
    tc_in_i64(t, 1, 1, DIMS(2), I64S(1, -1));
    tc_in_i64(t, 2, 1, DIMS(2), I64S(3, -6));
    tc_in_i64(t, 3, 1, DIMS(2), I64S(0, 1));
    tc_in_i64(t, 4, 1, DIMS(2), I64S(1, -2));
    expect_ok(t, tc_run(t));
    check_shape(&t->out[0], INFERD_DTYPE_I64, 2, DIMS(2, 3));
    check_ints(&t->out[0], I64S(9, 7, 5, 14, 12, 10), 6);
    // x[::-1, :] with the extreme ends exporters write.
    tc_in_i64(t, 1, 1, DIMS(1), I64S(-1));
    tc_in_i64(t, 2, 1, DIMS(1), I64S(INT64_MIN));
    tc_in_i64(t, 3, 1, DIMS(1), I64S(0));
    tc_in_i64(t, 4, 1, DIMS(1), I64S(-1));
    expect_ok(t, tc_run(t));
    check_shape(&t->out[0], INFERD_DTYPE_I64, 2, DIMS(4, 5));
    check_ints(&t->out[0],
               I64S(15, 16, 17, 18, 19, 10, 11, 12, 13, 14, 5, 6, 7, 8, 9, 0, 1, 2, 3, 4), 20);
    // x[:, 2:1000:2], axis given as -1; a step of INT64_MIN takes one element.
    tc_in_i64(t, 1, 1, DIMS(1), I64S(2));
    tc_in_i64(t, 2, 1, DIMS(1), I64S(INT64_MAX));
    tc_in_i64(t, 3, 1, DIMS(1), I64S(-1));
    tc_in_i64(t, 4, 1, DIMS(1), I64S(2));
    expect_ok(t, tc_run(t));
    check_shape(&t->out[0], INFERD_DTYPE_I64, 2, DIMS(4, 2));
    check_ints(&t->out[0], I64S(2, 4, 7, 9, 12, 14, 17, 19), 8);
    tc_in_i64(t, 1, 1, DIMS(1), I64S(4));
    tc_in_i64(t, 2, 1, DIMS(1), I64S(0));
    tc_in_i64(t, 4, 1, DIMS(1), I64S(INT64_MIN));
    expect_ok(t, tc_run(t));
    check_shape(&t->out[0], INFERD_DTYPE_I64, 2, DIMS(4, 1));
    check_ints(&t->out[0], I64S(4, 9, 14, 19), 4);
    tc_in_i64(t, 4, 1, DIMS(1), I64S(0));
    expect_err(t, tc_infer(t), INFERD_EINVAL, "step is 0");
    tc_in_i64(t, 3, 1, DIMS(1), I64S(2));
    tc_in_i64(t, 4, 1, DIMS(1), I64S(1));
    expect_err(t, tc_infer(t), INFERD_EINVAL, "axis 2 is out of range");
    tc_in_i64(t, 2, 1, DIMS(2), I64S(1, 1));
    expect_err(t, tc_infer(t), INFERD_EINVAL, "same length");
    tc_free(t);
    // Opset 1: attributes, axes omitted.
    t = tc_new(EG_OP_Slice, 1, 1, 1);
    tc_attr_ints(t, "starts", 2, I64S(1, 0));
    tc_attr_ints(t, "ends", 2, I64S(2, 2));
    tc_in_i64(t, 0, 2, DIMS(4, 5), iota());
    expect_ok(t, tc_run(t));
    check_ints(&t->out[0], I64S(5, 6), 2);
    tc_free(t);
}

static void test_pad(void **state) {
    (void)state;
    // numpy pad(arange(6).reshape(2,3), ((0,1),(1,0)), constant_values=9).
    tcase *t = tc_new(EG_OP_Pad, 13, 3, 1);
    tc_in_i64(t, 0, 2, DIMS(2, 3), iota());
    tc_in_i64(t, 1, 1, DIMS(4), I64S(0, 1, 1, 0));
    tc_in_i64(t, 2, 0, NULL, I64S(9));
    expect_ok(t, tc_run(t));
    check_shape(&t->out[0], INFERD_DTYPE_I64, 2, DIMS(3, 4));
    check_ints(&t->out[0], I64S(9, 0, 1, 2, 9, 3, 4, 5, 9, 9, 9, 9), 12);
    // Negative pads crop: y[:, :2]; and crop the front of axis 1 while padding its end.
    tc_in_i64(t, 1, 1, DIMS(4), I64S(0, 0, 0, -1));
    expect_ok(t, tc_run(t));
    check_shape(&t->out[0], INFERD_DTYPE_I64, 2, DIMS(2, 2));
    check_ints(&t->out[0], I64S(0, 1, 3, 4), 4);
    tc_in_i64(t, 1, 1, DIMS(4), I64S(0, -1, 0, 2));
    expect_ok(t, tc_run(t));
    check_ints(&t->out[0], I64S(1, 2, 9, 9, 4, 5, 9, 9), 8);
    tc_in_i64(t, 1, 1, DIMS(4), I64S(0, -4, 0, 0));
    expect_err(t, tc_infer(t), INFERD_EINVAL, "do not fit");
    tc_in_i64(t, 1, 1, DIMS(2), I64S(0, 1));
    expect_err(t, tc_infer(t), INFERD_EINVAL, "has 2 pads for 2 axes");
    tc_free(t);
    // Reflect and edge (numpy modes of the same name); constant_value omitted means 0.
    const char *modes[3] = {"reflect", "edge", "constant"};
    const int64_t *want[3] = {I64S(3, 2, 1, 2, 3, 4, 3, 2), I64S(1, 1, 1, 2, 3, 4, 4, 4),
                              I64S(0, 0, 1, 2, 3, 4, 0, 0)};
    for (int k = 0; k < 3; k++) {
        t = tc_new(EG_OP_Pad, 13, 2, 1);
        tc_attr_string(t, "mode", modes[k]);
        tc_in_i64(t, 0, 1, DIMS(4), I64S(1, 2, 3, 4));
        tc_in_i64(t, 1, 1, DIMS(2), I64S(2, 2));
        expect_ok(t, tc_run(t));
        check_ints(&t->out[0], want[k], 8);
        tc_free(t);
    }
    // Reflect on an outer axis: numpy pad(arange(12).reshape(3,4), ((1,1),(0,0)), 'reflect').
    t = tc_new(EG_OP_Pad, 13, 2, 1);
    tc_attr_string(t, "mode", "reflect");
    tc_in_i64(t, 0, 2, DIMS(3, 4), iota());
    tc_in_i64(t, 1, 1, DIMS(4), I64S(1, 0, 1, 0));
    expect_ok(t, tc_run(t));
    check_ints(&t->out[0], I64S(4, 5, 6, 7, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 4, 5, 6, 7), 20);
    tc_in_i64(t, 1, 1, DIMS(4), I64S(3, 0, 0, 0));
    expect_err(t, tc_infer(t), INFERD_EINVAL, "reflect padding");
    tc_free(t);
    // Opset 2: pads and value attributes.
    t = tc_new(EG_OP_Pad, 2, 1, 1);
    tc_attr_ints(t, "pads", 2, I64S(1, 0));
    tc_attr_float(t, "value", 1.5f);
    tc_in_f32(t, 0, 1, DIMS(2), F32S(7, 8));
    expect_ok(t, tc_run(t));
    check_f32(&t->out[0], F32S(1.5, 7, 8), 3, 0);
    tc_free(t);
}

static void test_transpose(void **state) {
    (void)state;
    tcase *t = tc_new(EG_OP_Transpose, 13, 1, 1);
    tc_attr_ints(t, "perm", 3, I64S(0, 2, 1));
    tc_in_i64(t, 0, 3, DIMS(2, 3, 4), iota());
    expect_ok(t, tc_run(t));
    check_shape(&t->out[0], INFERD_DTYPE_I64, 3, DIMS(2, 4, 3));
    check_ints(
        &t->out[0],
        I64S(0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11, 12, 16, 20, 13, 17, 21, 14, 18, 22, 15, 19, 23),
        24);
    tc_free(t);
    // No perm: reversed dims.
    t = tc_new(EG_OP_Transpose, 13, 1, 1);
    tc_in_i64(t, 0, 3, DIMS(2, 3, 4), iota());
    expect_ok(t, tc_run(t));
    check_shape(&t->out[0], INFERD_DTYPE_I64, 3, DIMS(4, 3, 2));
    check_ints(
        &t->out[0],
        I64S(0, 12, 4, 16, 8, 20, 1, 13, 5, 17, 9, 21, 2, 14, 6, 18, 10, 22, 3, 15, 7, 19, 11, 23),
        24);
    tc_free(t);
    // BERT's head split [B, S, H, D] -> [B, H, S, D], on float data.
    float w[48], want[48];
    const int64_t *bert = I64S(0, 1, 2, 3, 4, 5, 24, 25, 26, 27, 28, 29, 6, 7, 8, 9, 10, 11, 30, 31,
                               32, 33, 34, 35, 12, 13, 14, 15, 16, 17, 36, 37, 38, 39, 40, 41, 18,
                               19, 20, 21, 22, 23, 42, 43, 44, 45, 46, 47);
    for (int i = 0; i < 48; i++) {
        w[i] = (float)i;
        want[i] = (float)bert[i];
    }
    t = tc_new(EG_OP_Transpose, 13, 1, 1);
    tc_attr_ints(t, "perm", 4, I64S(0, 2, 1, 3));
    tc_in_f32(t, 0, 4, DIMS(1, 2, 4, 6), w);
    expect_ok(t, tc_run(t));
    check_shape(&t->out[0], INFERD_DTYPE_F32, 4, DIMS(1, 4, 2, 6));
    check_f32(&t->out[0], want, 48, 0);
    tc_free(t);
    t = tc_new(EG_OP_Transpose, 13, 1, 1);
    tc_attr_ints(t, "perm", 3, I64S(0, 0, 1));
    tc_in_f32(t, 0, 3, DIMS(2, 3, 4), NULL);
    expect_err(t, tc_infer(t), INFERD_EINVAL, "not a permutation");
    tc_free(t);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reshape),
        cmocka_unit_test(test_flatten),
        cmocka_unit_test(test_squeeze_unsqueeze_across_opsets),
        cmocka_unit_test(test_identity_and_dropout),
        cmocka_unit_test(test_shape_and_size),
        cmocka_unit_test(test_constant),
        cmocka_unit_test(test_constant_of_shape),
        cmocka_unit_test(test_range),
        cmocka_unit_test(test_expand_and_tile),
        cmocka_unit_test(test_concat),
        cmocka_unit_test(test_split_across_opsets),
        cmocka_unit_test(test_slice),
        cmocka_unit_test(test_pad),
        cmocka_unit_test(test_transpose),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
