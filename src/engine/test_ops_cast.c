/* Tests of Cast and CastLike (ops_cast.c). Integer wrap-around and the float16 bits come from
 * numpy 1.24 (astype, view); the bfloat16 bits from torch 1.13 (.to(torch.bfloat16)).
 * Out-of-range float to integer casts are undefined in ONNX; ours truncate and saturate with
 * NaN giving 0, and the tests pin that choice. */
#include "engine/test_ops_util.h"

/* The output's raw 16-bit patterns, for float16 and bfloat16 results. */
static eg_tensor bits_of(const tcase *t) {
    eg_tensor v = t->out[0];
    v.dtype = INFERD_DTYPE_U16;
    return v;
}

static tcase *cast_case(inferd_dtype to, inferd_dtype from, int n, const void *data) {
    tcase *t = tc_new(EG_OP_Cast, 13, 1, 1);
    tc_attr_int(t, "to", to);
    tc_in(t, 0, from, 1, (int64_t[]){n}, data);
    expect_ok(t, tc_run(t));
    check_shape(&t->out[0], to, 1, (int64_t[]){n});
    return t;
}

static void test_float_to_int_truncates_and_saturates(void **state) {
    (void)state;
    const float *x = F32S(-2.7, -0.5, 0.5, 2.7, 1e10, -1e10, NAN, INFINITY);
    tcase *t = cast_case(INFERD_DTYPE_I32, INFERD_DTYPE_F32, 8, x);
    check_ints(&t->out[0], I64S(-2, 0, 0, 2, INT32_MAX, INT32_MIN, 0, INT32_MAX), 8);
    tc_free(t);
    t = cast_case(INFERD_DTYPE_I64, INFERD_DTYPE_F32, 4, F32S(-3.9, 1e20, -1e20, 7.99));
    check_ints(&t->out[0], I64S(-3, INT64_MAX, INT64_MIN, 7), 4);
    tc_free(t);
    t = cast_case(INFERD_DTYPE_U8, INFERD_DTYPE_F32, 3, F32S(-1.5, 300, 3.9));
    check_ints(&t->out[0], I64S(0, 255, 3), 3);
    tc_free(t);
    t = cast_case(INFERD_DTYPE_I8, INFERD_DTYPE_F64, 3, F64S(-200, 127.9, -128.5));
    check_ints(&t->out[0], I64S(-128, 127, -128), 3);
    tc_free(t);
}

static void test_to_and_from_bool(void **state) {
    (void)state;
    // numpy: astype(bool) is "not zero", so NaN is true.
    tcase *t =
        cast_case(INFERD_DTYPE_BOOL, INFERD_DTYPE_F32, 5, F32S(0, -0.0, 0.1, NAN, -INFINITY));
    check_ints(&t->out[0], I64S(0, 0, 1, 1, 1), 5);
    tc_free(t);
    t = cast_case(INFERD_DTYPE_BOOL, INFERD_DTYPE_I64, 3, I64S(0, -5, INT64_C(1) << 40));
    check_ints(&t->out[0], I64S(0, 1, 1), 3);
    tc_free(t);
    t = cast_case(INFERD_DTYPE_F32, INFERD_DTYPE_BOOL, 3, BOOLS(0, 1, 1));
    check_f32(&t->out[0], F32S(0, 1, 1), 3, 0);
    tc_free(t);
    t = cast_case(INFERD_DTYPE_I64, INFERD_DTYPE_BOOL, 2, BOOLS(1, 0));
    check_ints(&t->out[0], I64S(1, 0), 2);
    tc_free(t);
}

static void test_integer_casts_wrap(void **state) {
    (void)state;
    tcase *t = cast_case(INFERD_DTYPE_I32, INFERD_DTYPE_I64, 3,
                         I64S((INT64_C(1) << 32) + 5, -1, INT64_C(1) << 31));
    check_ints(&t->out[0], I64S(5, -1, INT32_MIN), 3);
    tc_free(t);
    t = cast_case(INFERD_DTYPE_U8, INFERD_DTYPE_I64, 3, I64S(-1, 256, 257));
    check_ints(&t->out[0], I64S(255, 0, 1), 3);
    tc_free(t);
    t = cast_case(INFERD_DTYPE_I8, INFERD_DTYPE_U8, 2, (const uint8_t[]){200, 127});
    check_ints(&t->out[0], I64S(-56, 127), 2);
    tc_free(t);
    t = cast_case(INFERD_DTYPE_I64, INFERD_DTYPE_I32, 2, I32S(-7, INT32_MAX));
    check_ints(&t->out[0], I64S(-7, INT32_MAX), 2);
    tc_free(t);
    t = cast_case(INFERD_DTYPE_U64, INFERD_DTYPE_I16, 1, (const int16_t[]){-1});
    assert_int_equal(((uint64_t *)t->out[0].data)[0], UINT64_MAX);
    tc_free(t);
}

static void test_int_to_float_rounds_once(void **state) {
    (void)state;
    // numpy float32(int64(2**53 + 1)) and float32(int64(-(2**40) - 3)).
    tcase *t = cast_case(INFERD_DTYPE_F32, INFERD_DTYPE_I64, 2,
                         I64S((INT64_C(1) << 53) + 1, -(INT64_C(1) << 40) - 3));
    check_f32(&t->out[0], F32S(9.00719925e+15, -1.09951163e+12), 2, 0);
    tc_free(t);
    t = cast_case(INFERD_DTYPE_F64, INFERD_DTYPE_U64, 1, (const uint64_t[]){UINT64_MAX});
    check_f64(&t->out[0], F64S(18446744073709551616.0), 1, 0);
    tc_free(t);
    t = cast_case(INFERD_DTYPE_F32, INFERD_DTYPE_F64, 1, F64S(0.1));
    check_f32(&t->out[0], F32S(0.100000001), 1, 0);
    tc_free(t);
}

static void test_float16(void **state) {
    (void)state;
    // numpy astype(float16).view(uint16): rounding to nearest even, overflow to inf at 65520,
    // subnormals, and 2^-25 (a tie) to zero.
    const float *x = F32S(1, 0.1, 65504, 65519, 65520, 1e-8, 6e-8, -2.5, NAN, INFINITY, 3e-5,
                          2.9802322387695312e-08);
    tcase *t = cast_case(INFERD_DTYPE_F16, INFERD_DTYPE_F32, 12, x);
    eg_tensor v = bits_of(t);
    check_ints(&v,
               I64S(0x3c00, 0x2e66, 0x7bff, 0x7bff, 0x7c00, 0x0000, 0x0001, 0xc100, 0x7e00, 0x7c00,
                    0x01f7, 0x0000),
               12);
    tc_free(t);
    // numpy view(float16).astype(float32) of these bits.
    const uint16_t bits[7] = {0x3c00, 0x0001, 0x03ff, 0x7bff, 0xfc00, 0x8000, 0x3555};
    t = cast_case(INFERD_DTYPE_F32, INFERD_DTYPE_F16, 7, bits);
    check_f32(&t->out[0],
              F32S(1, 5.96046448e-08, 6.09755516e-05, 65504, -INFINITY, -0.0, 0.333251953), 7, 0);
    tc_free(t);
    // float16 to int64 goes through the float value.
    t = cast_case(INFERD_DTYPE_I64, INFERD_DTYPE_F16, 2, (const uint16_t[]){0xc100, 0x7bff});
    check_ints(&t->out[0], I64S(-2, 65504), 2);
    tc_free(t);
}

static void test_bfloat16(void **state) {
    (void)state;
    // torch .to(torch.bfloat16): 1 + 2^-8 and 1 + 3 * 2^-8 are ties that go to even.
    const float *x = F32S(1, 0.1, 3.0e38, -2.5, 1.00390625, 1.01171875);
    tcase *t = cast_case(INFERD_DTYPE_BF16, INFERD_DTYPE_F32, 6, x);
    eg_tensor v = bits_of(t);
    check_ints(&v, I64S(0x3f80, 0x3dcd, 0x7f62, 0xc020, 0x3f80, 0x3f82), 6);
    tc_free(t);
    t = cast_case(INFERD_DTYPE_BF16, INFERD_DTYPE_F32, 1, F32S(NAN));
    uint16_t b = ((uint16_t *)t->out[0].data)[0];
    if ((b & 0x7f80) != 0x7f80 || (b & 0x7f) == 0)
        fail_msg("NaN became 0x%04x, not a NaN", b);
    tc_free(t);
    t = cast_case(INFERD_DTYPE_F32, INFERD_DTYPE_BF16, 2, (const uint16_t[]){0x3dcd, 0xc020});
    check_f32(&t->out[0], F32S(0.10009765625, -2.5), 2, 0);
    tc_free(t);
}

static void test_cast_like_and_errors(void **state) {
    (void)state;
    tcase *t = tc_new(EG_OP_CastLike, 15, 2, 1);
    tc_in_i64(t, 0, 1, DIMS(2), I64S(3, -4));
    tc_in(t, 1, INFERD_DTYPE_F64, 0, NULL, NULL);
    expect_ok(t, tc_run(t));
    check_shape(&t->out[0], INFERD_DTYPE_F64, 1, DIMS(2));
    check_f64(&t->out[0], F64S(3, -4), 2, 0);
    tc_free(t);
    t = tc_new(EG_OP_Cast, 13, 1, 1);
    tc_in_f32(t, 0, 1, DIMS(1), NULL);
    expect_err(t, tc_infer(t), INFERD_EINVAL, "attribute to is required");
    tc_attr_int(t, "to", INFERD_DTYPE_STRING);
    expect_err(t, tc_infer(t), INFERD_EUNSUPPORTED, "dtype 8");
    tc_free(t);
    t = tc_new(EG_OP_Cast, 13, 1, 1);
    tc_attr_int(t, "to", 99);
    tc_in_f32(t, 0, 1, DIMS(1), NULL);
    expect_err(t, tc_infer(t), INFERD_EUNSUPPORTED, "dtype 99");
    tc_free(t);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_float_to_int_truncates_and_saturates),
        cmocka_unit_test(test_to_and_from_bool),
        cmocka_unit_test(test_integer_casts_wrap),
        cmocka_unit_test(test_int_to_float_rounds_once),
        cmocka_unit_test(test_float16),
        cmocka_unit_test(test_bfloat16),
        cmocka_unit_test(test_cast_like_and_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
