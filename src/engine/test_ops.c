/* Tests of the op table and the shared checks every standard op gets: input and output
 * counts, input shapes, the output element cap, and the helpers declared in ops.h. */
#include "engine/test_ops_util.h"

static void test_every_standard_op_has_a_definition(void **state) {
    (void)state;
    for (int op = 1; op < EG_OP_FUSED_FIRST_; op++) {
        const eg_op_def *d = eg_op_def_get((eg_op)op);
        if (!d || !d->infer || !d->run)
            fail_msg("op %s has no definition", eg_op_name((eg_op)op));
        assert_ptr_equal(d, eg_standard_op_def((eg_op)op));
    }
    assert_null(eg_op_def_get(EG_OP_UNKNOWN));
    assert_null(eg_op_def_get(EG_OP_COUNT_));
    assert_null(eg_standard_op_def(EG_OP_FUSED_FIRST_));
    // The view ops are flagged so the planner aliases them.
    assert_int_equal(eg_op_def_get(EG_OP_Reshape)->flags & EG_OPF_VIEW, EG_OPF_VIEW);
    assert_int_equal(eg_op_def_get(EG_OP_Unsqueeze)->flags & EG_OPF_VIEW, EG_OPF_VIEW);
    assert_int_equal(eg_op_def_get(EG_OP_Dropout)->flags & EG_OPF_VIEW, EG_OPF_VIEW);
    assert_int_equal(eg_op_def_get(EG_OP_Transpose)->flags & EG_OPF_VIEW, 0);
}

static void test_broadcast_shape(void **state) {
    (void)state;
    tcase *t = tc_new(EG_OP_Add, 17, 2, 1);
    eg_tensor a = {.rank = 3, .dims = {2, 1, 3}}, b = {.rank = 2, .dims = {4, 1}}, o;
    expect_ok(t, eg_broadcast_shape(tc_node(t), &a, &b, &o, &t->err));
    o.dtype = INFERD_DTYPE_F32;
    check_shape(&o, INFERD_DTYPE_F32, 3, DIMS(2, 4, 3));
    // numpy broadcasts a dim of 0 against 1 to 0.
    eg_tensor z = {.rank = 1, .dims = {0}}, one = {.rank = 2, .dims = {3, 1}};
    expect_ok(t, eg_broadcast_shape(tc_node(t), &z, &one, &o, &t->err));
    assert_int_equal(o.rank, 2);
    assert_int_equal(o.dims[0], 3);
    assert_int_equal(o.dims[1], 0);
    eg_tensor c = {.rank = 1, .dims = {4}}, d = {.rank = 2, .dims = {2, 3}};
    expect_err(t, eg_broadcast_shape(tc_node(t), &c, &d, &o, &t->err), INFERD_EINVAL,
               "node 'n' (Add): shapes");
    tc_free(t);
}

static void test_normalize_axis_and_node_error(void **state) {
    (void)state;
    tcase *t = tc_new(EG_OP_Concat, 17, 1, 1);
    int a = -7;
    expect_ok(t, eg_normalize_axis(tc_node(t), -1, 3, &a, &t->err));
    assert_int_equal(a, 2);
    expect_ok(t, eg_normalize_axis(tc_node(t), -3, 3, &a, &t->err));
    assert_int_equal(a, 0);
    expect_err(t, eg_normalize_axis(tc_node(t), 3, 3, &a, &t->err), INFERD_EINVAL,
               "axis 3 is out of range for rank 3");
    expect_err(t, eg_normalize_axis(tc_node(t), -4, 3, &a, &t->err), INFERD_EINVAL, "axis -4");
    int rc = eg_node_error(&t->err, INFERD_EUNSUPPORTED, tc_node(t), "x=%d", 5);
    assert_int_equal(rc, INFERD_EUNSUPPORTED);
    assert_string_equal(t->err.msg, "node 'n' (Concat): x=5");
    assert_int_equal(t->err.code, INFERD_EUNSUPPORTED);
    tc_free(t);
}

static void test_wrong_input_and_output_counts(void **state) {
    (void)state;
    tcase *t = tc_new(EG_OP_Add, 17, 1, 1);
    tc_in_f32(t, 0, 1, DIMS(2), F32S(1, 2));
    expect_err(t, tc_infer(t), INFERD_EINVAL, "has 1 inputs, expected 2");
    tc_free(t);
    t = tc_new(EG_OP_Relu, 17, 1, 2);
    tc_in_f32(t, 0, 1, DIMS(2), F32S(1, 2));
    expect_err(t, tc_infer(t), INFERD_EINVAL, "outputs");
    tc_free(t);
    // A required input left empty.
    t = tc_new(EG_OP_Mul, 17, 2, 1);
    tc_in_f32(t, 0, 1, DIMS(2), F32S(1, 2));
    tc_omit_in(t, 1);
    expect_err(t, tc_infer(t), INFERD_EINVAL, "input 1 is required");
    tc_free(t);
}

static void test_bad_input_shapes_are_rejected(void **state) {
    (void)state;
    tcase *t = tc_new(EG_OP_Relu, 17, 1, 1);
    tc_in_f32(t, 0, 2, DIMS(2, -3), NULL);
    expect_err(t, tc_infer(t), INFERD_EINVAL, "dim 1 of size -3");
    tc_in_f32(t, 0, 9, DIMS(1, 1, 1, 1, 1, 1, 1, 1, 1), NULL);
    expect_err(t, tc_infer(t), INFERD_EINVAL, "rank 9");
    tc_in(t, 0, INFERD_DTYPE_STRING, 1, DIMS(2), NULL);
    expect_err(t, tc_infer(t), INFERD_EUNSUPPORTED, "dtype string");
    tc_in_f32(t, 0, 2, DIMS(1 << 20, 1 << 12), NULL);
    expect_err(t, tc_infer(t), INFERD_EINVAL, "over the limit");
    tc_free(t);
}

static void test_outputs_over_the_cap_are_rejected(void **state) {
    (void)state;
    // Expand of a scalar to 2^16 x 2^16 = 2^32 elements.
    tcase *t = tc_new(EG_OP_Expand, 17, 2, 1);
    tc_in_f32(t, 0, 0, NULL, F32S(1));
    tc_in_i64(t, 1, 1, DIMS(2), I64S(65536, 65536));
    expect_err(t, tc_infer(t), INFERD_EINVAL, "over the limit of 2147483648 elements");
    tc_free(t);
    // ConstantOfShape with a dim that alone passes 2^31.
    t = tc_new(EG_OP_ConstantOfShape, 17, 1, 1);
    tc_in_i64(t, 0, 1, DIMS(2), I64S(INT64_C(1) << 40, 0));
    expect_err(t, tc_infer(t), INFERD_EINVAL, "dim 0");
    tc_free(t);
    // Tile repeats that overflow int64 when multiplied.
    t = tc_new(EG_OP_Tile, 17, 2, 1);
    tc_in_f32(t, 0, 1, DIMS(3), F32S(1, 2, 3));
    tc_in_i64(t, 1, 1, DIMS(1), I64S(INT64_MAX / 2));
    expect_err(t, tc_infer(t), INFERD_EINVAL, "repeats");
    tc_free(t);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_standard_op_has_a_definition),
        cmocka_unit_test(test_broadcast_shape),
        cmocka_unit_test(test_normalize_axis_and_node_error),
        cmocka_unit_test(test_wrong_input_and_output_counts),
        cmocka_unit_test(test_bad_input_shapes_are_rejected),
        cmocka_unit_test(test_outputs_over_the_cap_are_rejected),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
