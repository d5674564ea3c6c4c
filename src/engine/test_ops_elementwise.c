/* Tests of the elementwise ops (ops_elementwise.c). Expected float values were computed with
 * numpy 1.24 / torch 1.13 in float32 (torch for Sigmoid, Erf, Softplus, Softsign, Elu,
 * LeakyRelu and both Gelu forms; numpy for the rest) and pasted here. */
#include "engine/test_ops_util.h"

#define N_X 8
static const float X[N_X] = {-2.5f, -1, -0.5f, 0, 0.3f, 1, 2.5f, 10};

/* Runs a unary op on x (n elements) and compares with want. */
static void unary_case(eg_op op, const float *x, int n, const float *want, double tol,
                       void (*attrs)(tcase *)) {
    tcase *t = tc_new(op, 17, 1, 1);
    if (attrs)
        attrs(t);
    tc_in_f32(t, 0, 1, DIMS(n), x);
    expect_ok(t, tc_run(t));
    check_shape(&t->out[0], INFERD_DTYPE_F32, 1, DIMS(n));
    check_f32(&t->out[0], want, n, tol);
    tc_free(t);
}

static void elu_attrs(tcase *t) { tc_attr_float(t, "alpha", 0.5f); }
static void leaky_attrs(tcase *t) { tc_attr_float(t, "alpha", 0.1f); }
static void gelu_tanh_attrs(tcase *t) { tc_attr_string(t, "approximate", "tanh"); }

static void test_unary_float_ops(void **state) {
    (void)state;
    unary_case(EG_OP_Abs, X, N_X, F32S(2.5, 1, 0.5, 0, 0.3, 1, 2.5, 10), 0, NULL);
    unary_case(EG_OP_Ceil, X, N_X, F32S(-2, -1, -0, 0, 1, 1, 3, 10), 0, NULL);
    unary_case(EG_OP_Floor, X, N_X, F32S(-3, -1, -1, 0, 0, 1, 2, 10), 0, NULL);
    unary_case(EG_OP_Neg, X, N_X, F32S(2.5, 1, 0.5, -0, -0.3, -1, -2.5, -10), 0, NULL);
    unary_case(EG_OP_Relu, X, N_X, F32S(0, 0, 0, 0, 0.3, 1, 2.5, 10), 0, NULL);
    // Halves round to even: -2.5 -> -2, -0.5 -> -0, 2.5 -> 2.
    unary_case(EG_OP_Round, X, N_X, F32S(-2, -1, -0, 0, 0, 1, 2, 10), 0, NULL);
    unary_case(EG_OP_Sign, X, N_X, F32S(-1, -1, -1, 0, 1, 1, 1, 1), 0, NULL);
    unary_case(EG_OP_Sigmoid, X, N_X,
               F32S(0.0758581758, 0.268941432, 0.377540678, 0.5, 0.574442506, 0.731058598,
                    0.924141824, 0.999954581),
               1e-6, NULL);
    unary_case(
        EG_OP_Tanh, X, N_X,
        F32S(-0.986614287, -0.761594176, -0.462117195, 0, 0.291312635, 0.761594176, 0.986614287, 1),
        1e-6, NULL);
    unary_case(EG_OP_Exp, X, N_X,
               F32S(0.0820850059, 0.367879421, 0.606530666, 1, 1.34985876, 2.71828198, 12.1824932,
                    22026.4668),
               1e-6, NULL);
    unary_case(
        EG_OP_Erf, X, N_X,
        F32S(-0.999593019, -0.842700779, -0.520499885, 0, 0.328626782, 0.842700779, 0.999593019, 1),
        1e-6, NULL);
    unary_case(EG_OP_Softplus, X, N_X,
               F32S(0.078889735, 0.313261688, 0.474076986, 0.693147182, 0.854355276, 1.31326163,
                    2.57888985, 10.0000458),
               1e-6, NULL);
    unary_case(
        EG_OP_Softsign, X, N_X,
        F32S(-0.714285731, -0.5, -0.333333343, 0, 0.230769247, 0.5, 0.714285731, 0.909090936), 1e-6,
        NULL);
    unary_case(EG_OP_Elu, X, N_X,
               F32S(-0.458957493, -0.316060275, -0.196734667, 0, 0.3, 1, 2.5, 10), 1e-6, elu_attrs);
    unary_case(EG_OP_LeakyRelu, X, N_X,
               F32S(-0.25, -0.100000001, -0.0500000007, 0, 0.3, 1, 2.5, 10), 1e-6, leaky_attrs);
    unary_case(EG_OP_HardSigmoid, X, N_X, F32S(0, 0.3, 0.4, 0.5, 0.56, 0.7, 1, 1), 1e-6, NULL);
    unary_case(EG_OP_Gelu, X, N_X,
               F32S(-0.0155241787, -0.158655286, -0.154268786, 0, 0.185373425, 0.841344714,
                    2.48447585, 10),
               1e-6, NULL);
    unary_case(EG_OP_Gelu, X, N_X,
               F32S(-0.0150842965, -0.158807993, -0.154285997, 0, 0.185370937, 0.841192007,
                    2.48491573, 10),
               1e-6, gelu_tanh_attrs);
    unary_case(EG_OP_Sin, X, N_X,
               F32S(-0.598472178, -0.841471016, -0.47942555, 0, 0.295520216, 0.841471016,
                    0.598472178, -0.54402107),
               1e-6, NULL);
    unary_case(EG_OP_Cos, X, N_X,
               F32S(-0.801143587, 0.540302277, 0.87758255, 1, 0.955336511, 0.540302277,
                    -0.801143587, -0.839071512),
               1e-6, NULL);
    unary_case(EG_OP_Atan, X, N_X,
               F32S(-1.19028997, -0.785398185, -0.463647604, 0, 0.291456819, 0.785398185,
                    1.19028997, 1.47112775),
               1e-6, NULL);
    const float *pos = F32S(0.25, 0.5, 1, 2, 9);
    unary_case(EG_OP_Log, pos, 5, F32S(-1.38629436, -0.693147182, 0, 0.693147182, 2.19722462), 1e-6,
               NULL);
    unary_case(EG_OP_Sqrt, pos, 5, F32S(0.5, 0.707106769, 1, 1.41421354, 3), 1e-6, NULL);
    unary_case(EG_OP_Reciprocal, pos, 5, F32S(4, 2, 1, 0.5, 0.111111112), 1e-6, NULL);
    const float *u = F32S(-1, -0.5, 0, 0.5, 0.9);
    unary_case(EG_OP_Acos, u, 5, F32S(3.14159274, 2.09439516, 1.57079637, 1.04719758, 0.451026857),
               1e-6, NULL);
    unary_case(EG_OP_Asin, u, 5, F32S(-1.57079637, -0.52359879, 0, 0.52359879, 1.11976957), 1e-6,
               NULL);
    unary_case(EG_OP_Tan, u, 5, F32S(-1.55740774, -0.546302497, 0, 0.546302497, 1.26015806), 1e-6,
               NULL);
}

static void test_unary_integer_and_bool_ops(void **state) {
    (void)state;
    tcase *t = tc_new(EG_OP_Abs, 17, 1, 1);
    tc_in_i64(t, 0, 1, DIMS(3), I64S(-5, 0, INT64_MIN));
    expect_ok(t, tc_run(t));
    // -INT64_MIN wraps to itself instead of being undefined.
    check_ints(&t->out[0], I64S(5, 0, INT64_MIN), 3);
    tc_free(t);
    t = tc_new(EG_OP_Neg, 17, 1, 1);
    tc_in(t, 0, INFERD_DTYPE_I32, 1, DIMS(2), I32S(7, -3));
    expect_ok(t, tc_run(t));
    check_shape(&t->out[0], INFERD_DTYPE_I32, 1, DIMS(2));
    check_ints(&t->out[0], I64S(-7, 3), 2);
    tc_free(t);
    t = tc_new(EG_OP_Not, 17, 1, 1);
    tc_in(t, 0, INFERD_DTYPE_BOOL, 1, DIMS(3), BOOLS(1, 0, 1));
    expect_ok(t, tc_run(t));
    check_ints(&t->out[0], I64S(0, 1, 0), 3);
    tc_free(t);
    t = tc_new(EG_OP_IsNaN, 17, 1, 1);
    tc_in_f32(t, 0, 1, DIMS(3), F32S(1, NAN, INFINITY));
    expect_ok(t, tc_run(t));
    check_shape(&t->out[0], INFERD_DTYPE_BOOL, 1, DIMS(3));
    check_ints(&t->out[0], I64S(0, 1, 0), 3);
    tc_free(t);
    // Double works for the math ops.
    t = tc_new(EG_OP_Sqrt, 17, 1, 1);
    tc_in(t, 0, INFERD_DTYPE_F64, 1, DIMS(2), F64S(2, 9));
    expect_ok(t, tc_run(t));
    check_f64(&t->out[0], F64S(1.4142135623730951, 3), 2, 1e-15);
    tc_free(t);
}

static void test_unary_rejects_bad_dtypes_and_attributes(void **state) {
    (void)state;
    tcase *t = tc_new(EG_OP_Sigmoid, 17, 1, 1);
    tc_in_i64(t, 0, 1, DIMS(2), I64S(1, 2));
    expect_err(t, tc_infer(t), INFERD_EUNSUPPORTED, "int64");
    tc_free(t);
    t = tc_new(EG_OP_Gelu, 20, 1, 1);
    tc_attr_string(t, "approximate", "fast");
    tc_in_f32(t, 0, 1, DIMS(1), F32S(1));
    expect_err(t, tc_infer(t), INFERD_EINVAL, "approximate");
    tc_free(t);
    t = tc_new(EG_OP_Not, 17, 1, 1);
    tc_in_f32(t, 0, 1, DIMS(1), F32S(1));
    expect_err(t, tc_infer(t), INFERD_EUNSUPPORTED, "float");
    tc_free(t);
}

static void test_binary_broadcasting(void **state) {
    (void)state;
    // [2,3] + [3]: trailing-dim broadcast.
    tcase *t = tc_new(EG_OP_Add, 17, 2, 1);
    tc_in_f32(t, 0, 2, DIMS(2, 3), F32S(1, 2, 3, 4, 5, 6));
    tc_in_f32(t, 1, 1, DIMS(3), F32S(10, 20, 30));
    expect_ok(t, tc_run(t));
    check_shape(&t->out[0], INFERD_DTYPE_F32, 2, DIMS(2, 3));
    check_f32(&t->out[0], F32S(11, 22, 33, 14, 25, 36), 6, 0);
    tc_free(t);
    // [2,1] * [1,3]: both sides broadcast (numpy: x*y).
    t = tc_new(EG_OP_Mul, 17, 2, 1);
    tc_in_f32(t, 0, 2, DIMS(2, 1), F32S(1.5, -2));
    tc_in_f32(t, 1, 2, DIMS(1, 3), F32S(3, 0.25, -1));
    expect_ok(t, tc_run(t));
    check_shape(&t->out[0], INFERD_DTYPE_F32, 2, DIMS(2, 3));
    check_f32(&t->out[0], F32S(4.5, 0.375, -1.5, -6, -0.5, 2), 6, 0);
    tc_free(t);
    // Scalar on the left.
    t = tc_new(EG_OP_Sub, 17, 2, 1);
    tc_in_f32(t, 0, 0, NULL, F32S(1));
    tc_in_f32(t, 1, 2, DIMS(2, 2), F32S(1, 2, 3, 4));
    expect_ok(t, tc_run(t));
    check_shape(&t->out[0], INFERD_DTYPE_F32, 2, DIMS(2, 2));
    check_f32(&t->out[0], F32S(0, -1, -2, -3), 4, 0);
    tc_free(t);
    // [2,3,4] / [3,1]: a middle-dim broadcast (numpy a / b with a = arange(24)*0.5-3).
    float a[24];
    for (int i = 0; i < 24; i++)
        a[i] = (float)i * 0.5f - 3;
    t = tc_new(EG_OP_Div, 17, 2, 1);
    tc_in_f32(t, 0, 3, DIMS(2, 3, 4), a);
    tc_in_f32(t, 1, 2, DIMS(3, 1), F32S(2, -4, 0.5));
    expect_ok(t, tc_run(t));
    check_shape(&t->out[0], INFERD_DTYPE_F32, 3, DIMS(2, 3, 4));
    check_f32(&t->out[0],
              F32S(-1.5, -1.25, -1, -0.75, 0.25, 0.125, -0, -0.125, 2, 3, 4, 5, 1.5, 1.75, 2, 2.25,
                   -1.25, -1.375, -1.5, -1.625, 14, 15, 16, 17),
              24, 1e-7);
    tc_free(t);
}

static void test_binary_errors(void **state) {
    (void)state;
    tcase *t = tc_new(EG_OP_Add, 17, 2, 1);
    tc_in_f32(t, 0, 2, DIMS(2, 3), NULL);
    tc_in_f32(t, 1, 1, DIMS(2), NULL);
    expect_err(t, tc_infer(t), INFERD_EINVAL, "cannot be broadcast");
    tc_in_i64(t, 1, 1, DIMS(3), NULL);
    expect_err(t, tc_infer(t), INFERD_EINVAL, "input 0 is float but input 1 is int64");
    tc_in(t, 0, INFERD_DTYPE_BOOL, 1, DIMS(3), NULL);
    tc_in(t, 1, INFERD_DTYPE_BOOL, 1, DIMS(3), NULL);
    expect_err(t, tc_infer(t), INFERD_EUNSUPPORTED, "bool");
    tc_free(t);
    t = tc_new(EG_OP_Mod, 17, 2, 1);
    tc_in_f32(t, 0, 1, DIMS(2), NULL);
    tc_in_f32(t, 1, 1, DIMS(2), NULL);
    expect_err(t, tc_infer(t), INFERD_EINVAL, "fmod=1");
    tc_free(t);
}

/* Exporters compute shapes with int64 arithmetic: it must match C semantics (truncating
 * division), wrap on overflow, and not trap on division by zero. */
static void test_int64_shape_math(void **state) {
    (void)state;
    const int64_t *a = I64S(-7, 7, -7, 7, INT64_MAX, 5);
    const int64_t *b = I64S(2, -2, -2, 2, 1, 0);
    struct {
        eg_op op;
        int fmod;
        const int64_t *want;
    } cases[] = {
        {EG_OP_Add, 0, I64S(-5, 5, -9, 9, INT64_MIN, 5)},
        {EG_OP_Sub, 0, I64S(-9, 9, -5, 5, INT64_MAX - 1, 5)},
        {EG_OP_Mul, 0, I64S(-14, -14, 14, 14, INT64_MAX, 0)},
        {EG_OP_Div, 0, I64S(-3, -3, 3, 3, INT64_MAX, 0)},
        // Mod with fmod=0 takes the divisor's sign (Python's %), fmod=1 the dividend's (C's %).
        {EG_OP_Mod, 0, I64S(1, -1, -1, 1, 0, 0)},
        {EG_OP_Mod, 1, I64S(-1, 1, -1, 1, 0, 0)},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        tcase *t = tc_new(cases[k].op, 13, 2, 1);
        if (cases[k].fmod)
            tc_attr_int(t, "fmod", 1);
        tc_in_i64(t, 0, 1, DIMS(6), a);
        tc_in_i64(t, 1, 1, DIMS(6), b);
        expect_ok(t, tc_run(t));
        check_shape(&t->out[0], INFERD_DTYPE_I64, 1, DIMS(6));
        check_ints(&t->out[0], cases[k].want, 6);
        tc_free(t);
    }
    // INT64_MIN / -1 overflows; it wraps instead of trapping.
    tcase *t = tc_new(EG_OP_Div, 13, 2, 1);
    tc_in_i64(t, 0, 1, DIMS(1), I64S(INT64_MIN));
    tc_in_i64(t, 1, 0, NULL, I64S(-1));
    expect_ok(t, tc_run(t));
    check_ints(&t->out[0], I64S(INT64_MIN), 1);
    tc_free(t);
}

static void test_pow(void **state) {
    (void)state;
    // x ^ 2 takes the multiplication path; numpy power for the others.
    tcase *t = tc_new(EG_OP_Pow, 15, 2, 1);
    tc_in_f32(t, 0, 1, DIMS(3), F32S(1.5, -2, 3));
    tc_in_f32(t, 1, 0, NULL, F32S(2));
    expect_ok(t, tc_run(t));
    check_f32(&t->out[0], F32S(2.25, 4, 9), 3, 0);
    tc_in_f32(t, 0, 1, DIMS(3), F32S(2, 3, 5));
    tc_in_f32(t, 1, 1, DIMS(3), F32S(0.5, -1, 1.5));
    expect_ok(t, tc_run(t));
    check_f32(&t->out[0], F32S(1.41421354, 0.333333343, 11.1803398), 3, 1e-6);
    // A float base with an int64 exponent keeps the base's dtype.
    tc_in_f32(t, 0, 1, DIMS(3), F32S(2, 3, -1.5));
    tc_in_i64(t, 1, 0, NULL, I64S(3));
    expect_ok(t, tc_run(t));
    check_shape(&t->out[0], INFERD_DTYPE_F32, 1, DIMS(3));
    check_f32(&t->out[0], F32S(8, 27, -3.375), 3, 1e-7);
    tc_free(t);
    t = tc_new(EG_OP_Pow, 15, 2, 1);
    tc_in_i64(t, 0, 1, DIMS(4), I64S(2, 3, 2, -1));
    tc_in_i64(t, 1, 1, DIMS(4), I64S(10, 3, -1, -3));
    expect_ok(t, tc_run(t));
    check_ints(&t->out[0], I64S(1024, 27, 0, -1), 4);
    tc_free(t);
    t = tc_new(EG_OP_Pow, 15, 2, 1);
    tc_in_i64(t, 0, 1, DIMS(1), NULL);
    tc_in_f32(t, 1, 1, DIMS(1), NULL);
    expect_err(t, tc_infer(t), INFERD_EUNSUPPORTED, "int64 raised to a float power");
    tc_free(t);
}

static void test_comparisons_and_logic(void **state) {
    (void)state;
    tcase *t = tc_new(EG_OP_Equal, 13, 2, 1);
    tc_in_i64(t, 0, 1, DIMS(3), I64S(1, 2, 3));
    tc_in_i64(t, 1, 0, NULL, I64S(2));
    expect_ok(t, tc_run(t));
    check_shape(&t->out[0], INFERD_DTYPE_BOOL, 1, DIMS(3));
    check_ints(&t->out[0], I64S(0, 1, 0), 3);
    tc_free(t);
    const float *a = F32S(1, 2, 3, 4), *b = F32S(2, 3);
    struct {
        eg_op op;
        const int64_t *want;
    } cases[] = {
        // [4] vs [2,1]: rows compare against 2 then 3.
        {EG_OP_Greater, I64S(0, 0, 1, 1, 0, 0, 0, 1)},
        {EG_OP_GreaterOrEqual, I64S(0, 1, 1, 1, 0, 0, 1, 1)},
        {EG_OP_Less, I64S(1, 0, 0, 0, 1, 1, 0, 0)},
        {EG_OP_LessOrEqual, I64S(1, 1, 0, 0, 1, 1, 1, 0)},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        t = tc_new(cases[k].op, 16, 2, 1);
        tc_in_f32(t, 0, 1, DIMS(4), a);
        tc_in_f32(t, 1, 2, DIMS(2, 1), b);
        expect_ok(t, tc_run(t));
        check_shape(&t->out[0], INFERD_DTYPE_BOOL, 2, DIMS(2, 4));
        check_ints(&t->out[0], cases[k].want, 8);
        tc_free(t);
    }
    struct {
        eg_op op;
        const int64_t *want;
    } logic[] = {
        {EG_OP_And, I64S(0, 0, 0, 1)},
        {EG_OP_Or, I64S(0, 1, 1, 1)},
        {EG_OP_Xor, I64S(0, 1, 1, 0)},
        {EG_OP_Equal, I64S(1, 0, 0, 1)},
    };
    for (size_t k = 0; k < sizeof logic / sizeof logic[0]; k++) {
        t = tc_new(logic[k].op, 16, 2, 1);
        tc_in(t, 0, INFERD_DTYPE_BOOL, 1, DIMS(4), BOOLS(0, 0, 1, 1));
        tc_in(t, 1, INFERD_DTYPE_BOOL, 1, DIMS(4), BOOLS(0, 1, 0, 1));
        expect_ok(t, tc_run(t));
        check_ints(&t->out[0], logic[k].want, 4);
        tc_free(t);
    }
}

static void test_where(void **state) {
    (void)state;
    // numpy where(cond [2,1], x [3], y scalar).
    tcase *t = tc_new(EG_OP_Where, 16, 3, 1);
    tc_in(t, 0, INFERD_DTYPE_BOOL, 2, DIMS(2, 1), BOOLS(1, 0));
    tc_in_f32(t, 1, 1, DIMS(3), F32S(1, 2, 3));
    tc_in_f32(t, 2, 0, NULL, F32S(-1));
    expect_ok(t, tc_run(t));
    check_shape(&t->out[0], INFERD_DTYPE_F32, 2, DIMS(2, 3));
    check_f32(&t->out[0], F32S(1, 2, 3, -1, -1, -1), 6, 0);
    tc_free(t);
    // int64 values, elementwise condition.
    t = tc_new(EG_OP_Where, 16, 3, 1);
    tc_in(t, 0, INFERD_DTYPE_BOOL, 1, DIMS(3), BOOLS(0, 1, 0));
    tc_in_i64(t, 1, 1, DIMS(3), I64S(1, 2, 3));
    tc_in_i64(t, 2, 1, DIMS(3), I64S(-1, -2, -3));
    expect_ok(t, tc_run(t));
    check_ints(&t->out[0], I64S(-1, 2, -3), 3);
    tc_in_f32(t, 0, 1, DIMS(3), NULL);
    expect_err(t, tc_infer(t), INFERD_EINVAL, "condition must be bool");
    tc_free(t);
}

static void test_variadic(void **state) {
    (void)state;
    // [2,1] + [3] + [1] (numpy).
    eg_op ops[2] = {EG_OP_Sum, EG_OP_Mean};
    const float *want[2] = {F32S(11.5, 21.5, 31.5, 12.5, 22.5, 32.5),
                            F32S(3.83333325, 7.16666651, 10.5, 4.16666651, 7.5, 10.833333)};
    for (int k = 0; k < 2; k++) {
        tcase *t = tc_new(ops[k], 13, 3, 1);
        tc_in_f32(t, 0, 2, DIMS(2, 1), F32S(1, 2));
        tc_in_f32(t, 1, 1, DIMS(3), F32S(10, 20, 30));
        tc_in_f32(t, 2, 1, DIMS(1), F32S(0.5));
        expect_ok(t, tc_run(t));
        check_shape(&t->out[0], INFERD_DTYPE_F32, 2, DIMS(2, 3));
        check_f32(&t->out[0], want[k], 6, 1e-7);
        tc_free(t);
    }
    // Max and Min propagate NaN (numpy maximum/minimum).
    tcase *t = tc_new(EG_OP_Max, 13, 2, 1);
    tc_in_f32(t, 0, 2, DIMS(2, 2), F32S(1, 5, NAN, 2));
    tc_in_f32(t, 1, 1, DIMS(2), F32S(3, 4));
    expect_ok(t, tc_run(t));
    check_f32(&t->out[0], F32S(3, 5, NAN, 4), 4, 0);
    tc_free(t);
    t = tc_new(EG_OP_Min, 13, 2, 1);
    tc_in_f32(t, 0, 2, DIMS(2, 2), F32S(1, 5, NAN, 2));
    tc_in_f32(t, 1, 1, DIMS(2), F32S(3, 4));
    expect_ok(t, tc_run(t));
    check_f32(&t->out[0], F32S(1, 4, NAN, 2), 4, 0);
    tc_free(t);
    // One input: a copy. int64 max over three.
    t = tc_new(EG_OP_Max, 13, 3, 1);
    tc_in_i64(t, 0, 1, DIMS(3), I64S(1, 9, -4));
    tc_in_i64(t, 1, 1, DIMS(3), I64S(5, 2, -8));
    tc_in_i64(t, 2, 0, NULL, I64S(3));
    expect_ok(t, tc_run(t));
    check_ints(&t->out[0], I64S(5, 9, 3), 3);
    tc_free(t);
    t = tc_new(EG_OP_Mean, 13, 1, 1);
    tc_in_i64(t, 0, 1, DIMS(1), NULL);
    expect_err(t, tc_infer(t), INFERD_EUNSUPPORTED, "int64");
    tc_free(t);
}

static void test_clip_across_opsets(void **state) {
    (void)state;
    const float *x = F32S(-3, -1, 0, 2, 5);
    // Opset 6: bounds are attributes.
    tcase *t = tc_new(EG_OP_Clip, 6, 1, 1);
    tc_attr_float(t, "min", -1.5f);
    tc_attr_float(t, "max", 2.5f);
    tc_in_f32(t, 0, 1, DIMS(5), x);
    expect_ok(t, tc_run(t));
    check_f32(&t->out[0], F32S(-1.5, -1, 0, 2, 2.5), 5, 0);
    tc_free(t);
    // Opset 11: min as input, max omitted.
    t = tc_new(EG_OP_Clip, 11, 2, 1);
    tc_in_f32(t, 0, 1, DIMS(5), x);
    tc_in_f32(t, 1, 0, NULL, F32S(0));
    expect_ok(t, tc_run(t));
    check_f32(&t->out[0], F32S(0, 0, 0, 2, 5), 5, 0);
    tc_free(t);
    // Opset 13: min omitted with an empty name, max given; int64 data.
    t = tc_new(EG_OP_Clip, 13, 3, 1);
    tc_in_i64(t, 0, 1, DIMS(3), I64S(-9, 4, 12));
    tc_omit_in(t, 1);
    tc_in_i64(t, 2, 0, NULL, I64S(10));
    expect_ok(t, tc_run(t));
    check_ints(&t->out[0], I64S(-9, 4, 10), 3);
    // A bound of another dtype is invalid.
    tc_in_f32(t, 2, 0, NULL, F32S(10));
    expect_err(t, tc_infer(t), INFERD_EINVAL, "int64 but input 2 is float");
    tc_free(t);
}

/* Threads change nothing: a large broadcast Add and Sigmoid give the same bits with 1 and 2
 * threads, and in-place runs (out aliasing input 0) match too. */
static void test_threads_and_in_place(void **state) {
    (void)state;
    enum { R = 64, C = 1024 };
    float *a = malloc(sizeof(float) * R * C), *b = malloc(sizeof(float) * C);
    for (int i = 0; i < R * C; i++)
        a[i] = (float)(i % 97) * 0.25f - 7;
    for (int j = 0; j < C; j++)
        b[j] = (float)j * 0.5f;
    tcase *t1 = tc_new(EG_OP_Add, 17, 2, 1), *t2 = tc_new(EG_OP_Add, 17, 2, 1);
    tc_in_f32(t1, 0, 2, DIMS(R, C), a);
    tc_in_f32(t1, 1, 1, DIMS(C), b);
    tc_in_f32(t2, 0, 2, DIMS(R, C), a);
    tc_in_f32(t2, 1, 1, DIMS(C), b);
    t2->threads = 2;
    expect_ok(t1, tc_run(t1));
    expect_ok(t2, tc_run(t2));
    const float *o1 = t1->out[0].data, *o2 = t2->out[0].data;
    for (int i = 0; i < R * C; i++)
        if (o1[i] != a[i] + b[i % C] || o2[i] != o1[i])
            fail_msg("element %d: %g and %g, expected %g", i, o1[i], o2[i], a[i] + b[i % C]);
    // In place: output 0 is input 0's buffer.
    const eg_op_def *d = eg_op_def_get(EG_OP_Add);
    assert_int_equal(d->flags & EG_OPF_INPLACE, EG_OPF_INPLACE);
    eg_tensor out = t2->out[0];
    out.data = t2->in[0].data;
    eg_run_ctx ctx = {.threads = 2};
    expect_ok(t2, d->run(tc_node(t2), t2->in, &out, &ctx, &t2->err));
    assert_memory_equal(out.data, o1, sizeof(float) * R * C);
    tc_free(t1);
    tc_free(t2);
    t1 = tc_new(EG_OP_Sigmoid, 17, 1, 1);
    t2 = tc_new(EG_OP_Sigmoid, 17, 1, 1);
    tc_in_f32(t1, 0, 1, DIMS(R * C), a);
    tc_in_f32(t2, 0, 1, DIMS(R * C), a);
    t2->threads = 2;
    expect_ok(t1, tc_run(t1));
    expect_ok(t2, tc_run(t2));
    assert_memory_equal(t1->out[0].data, t2->out[0].data, sizeof(float) * R * C);
    tc_free(t1);
    tc_free(t2);
    free(a);
    free(b);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_unary_float_ops),
        cmocka_unit_test(test_unary_integer_and_bool_ops),
        cmocka_unit_test(test_unary_rejects_bad_dtypes_and_attributes),
        cmocka_unit_test(test_binary_broadcasting),
        cmocka_unit_test(test_binary_errors),
        cmocka_unit_test(test_int64_shape_math),
        cmocka_unit_test(test_pow),
        cmocka_unit_test(test_comparisons_and_logic),
        cmocka_unit_test(test_where),
        cmocka_unit_test(test_variadic),
        cmocka_unit_test(test_clip_across_opsets),
        cmocka_unit_test(test_threads_and_in_place),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
