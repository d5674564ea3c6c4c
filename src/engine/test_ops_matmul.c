/* Tests of MatMul, Gemm and Einsum (ops_matmul.c). Small cases use values from numpy 1.24
 * (matmul and einsum in float64 on float32 inputs, pasted here); the blocked kernel is also
 * checked against a naive double-precision loop on shapes that cross its tile edges. */
#include "engine/test_ops_util.h"

static void test_matmul_batch_broadcast(void **state) {
    (void)state;
    // numpy matmul of A [2,1,2,3] and B [3,3,2] -> [2,3,2,2].
    tcase *t = tc_new(EG_OP_MatMul, 13, 2, 1);
    tc_in_f32(t, 0, 4, DIMS(2, 1, 2, 3),
              F32S(-1.66, -1.05, 1.21, 0.33, -1.62, -0.27, -0.08, -1.36, 0.94, -1.55, -0.44, 0.07));
    tc_in_f32(t, 1, 3, DIMS(3, 3, 2),
              F32S(-0.28, 0.35, 0.95, 1.83, -0.86, 0.59, 0.78, -0.83, -1.99, 1.89, -0.81, -0.74,
                   1.57, 0.34, -0.11, 1.09, -1.88, 0.83));
    expect_ok(t, tc_run(t));
    check_shape(&t->out[0], INFERD_DTYPE_F32, 4, DIMS(2, 3, 2, 2));
    check_f32(&t->out[0],
              F32S(-1.5733, -1.78859995, -1.39919998, -3.00840007, -0.185400045, -1.50209999,
                   3.69990004, -3.13589998, -4.76550011, -0.704599966, 1.20390006, -1.87770006,
                   -2.07800001, -1.96220011, -0.0442000053, -1.30639999, 1.88260004, -3.19960002,
                   -0.390099919, 0.403099944, -1.74319999, -0.729400078, -2.51670001, -0.948500002),
              24, 1e-6);
    tc_in_f32(t, 1, 3, DIMS(3, 2, 2), NULL);
    expect_err(t, tc_infer(t), INFERD_EINVAL, "cannot multiply");
    tc_in_f32(t, 1, 4, DIMS(3, 1, 3, 2), NULL);
    expect_err(t, tc_infer(t), INFERD_EINVAL, "cannot be broadcast");
    tc_free(t);
}

static void test_matmul_vectors(void **state) {
    (void)state;
    const float *M =
        F32S(1.73, -1.17, 0.52, -0.81, 0.97, 0.89, -1.13, 1.32, 0.63, 0.73, 1.28, -0.29, 1.03, 1.51,
             -1.59, 1.4, -0.42, -0.08, -1.41, 0.79, -0.83, 1.48, -0.9, 0.25);
    // A 1-D left operand is a row vector whose dim disappears: [3] x [2,3,4] -> [2,4].
    tcase *t = tc_new(EG_OP_MatMul, 13, 2, 1);
    tc_in_f32(t, 0, 1, DIMS(3), F32S(-0.5, -1.64, 0.64));
    tc_in_f32(t, 1, 3, DIMS(2, 3, 4), M);
    expect_ok(t, tc_run(t));
    check_shape(&t->out[0], INFERD_DTYPE_F32, 2, DIMS(2, 4));
    check_f32(&t->out[0],
              F32S(-2.05260005, -0.407399984, 2.41239995, -1.94540006, -0.357399991, 0.323399992,
                   2.53139997, -1.83560002),
              8, 1e-6);
    tc_free(t);
    // And a 1-D right operand is a column: [2,3,4] x [4] -> [2,3].
    t = tc_new(EG_OP_MatMul, 13, 2, 1);
    tc_in_f32(t, 0, 3, DIMS(2, 3, 4), M);
    tc_in_f32(t, 1, 1, DIMS(4), F32S(0, 1, 2, 3));
    expect_ok(t, tc_run(t));
    check_shape(&t->out[0], INFERD_DTYPE_F32, 2, DIMS(2, 3));
    check_f32(&t->out[0],
              F32S(-2.56, 2.59000015, 2.41999999, 2.52999985, -0.529999867, 0.430000067), 6, 1e-6);
    tc_in_i64(t, 0, 3, DIMS(2, 3, 4), NULL);
    tc_in_i64(t, 1, 1, DIMS(4), NULL);
    expect_err(t, tc_infer(t), INFERD_EUNSUPPORTED, "int64");
    tc_free(t);
}

static void test_gemm_attributes(void **state) {
    (void)state;
    // numpy 0.5 * A.T @ B.T + 2.0 * C with C [3] broadcast over rows.
    tcase *t = tc_new(EG_OP_Gemm, 13, 3, 1);
    tc_attr_int(t, "transA", 1);
    tc_attr_int(t, "transB", 1);
    tc_attr_float(t, "alpha", 0.5f);
    tc_attr_float(t, "beta", 2.0f);
    tc_in_f32(t, 0, 2, DIMS(4, 2), F32S(-0.4, 0.45, -1.21, -1.28, 0.99, 1.01, 0.27, 1.68));
    tc_in_f32(t, 1, 2, DIMS(3, 4),
              F32S(-1.18, 1.4, -1.32, 1.86, 0.49, 0.43, 1.88, 1.15, 1.16, -1.78, -0.52, -1.66));
    tc_in_f32(t, 2, 1, DIMS(3), F32S(-1.23, -1.14, 1.43));
    expect_ok(t, tc_run(t));
    check_shape(&t->out[0], INFERD_DTYPE_F32, 2, DIMS(2, 3));
    check_f32(&t->out[0],
              F32S(-3.47330008, -1.55229998, 3.22339992, -2.72570004, -0.529550032, 2.60319992), 6,
              1e-6);
    tc_in_f32(t, 2, 1, DIMS(2), NULL);
    expect_err(t, tc_infer(t), INFERD_EINVAL, "broadcast");
    tc_in_f32(t, 1, 2, DIMS(3, 5), NULL);
    expect_err(t, tc_infer(t), INFERD_EINVAL, "inner dims");
    tc_free(t);
    // Opset 11+: C may be omitted.
    t = tc_new(EG_OP_Gemm, 13, 2, 1);
    tc_in_f32(t, 0, 2, DIMS(1, 2), F32S(1, 2));
    tc_in_f32(t, 1, 2, DIMS(2, 2), F32S(3, 4, 5, 6));
    expect_ok(t, tc_run(t));
    check_f32(&t->out[0], F32S(13, 16), 2, 0);
    tc_free(t);
}

/* The blocked gemm against a naive loop in double, every transpose combination, on shapes
 * that cross the 32 x 256 tiles and the 256-deep K blocks, with two threads. */
static void test_gemm_matches_naive_loop(void **state) {
    (void)state;
    enum { M = 70, N = 300, K = 270 };
    float *a = malloc(sizeof(float) * M * K), *b = malloc(sizeof(float) * K * N);
    float *c = malloc(sizeof(float) * M * N);
    double *want = malloc(sizeof(double) * M * N);
    for (int i = 0; i < M * K; i++)
        a[i] = (float)((i * 37) % 101) / 50.0f - 1;
    for (int i = 0; i < K * N; i++)
        b[i] = (float)((i * 53) % 97) / 48.0f - 1;
    for (int i = 0; i < M * N; i++)
        c[i] = (float)(i % 13) - 6;
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) {
            for (int i = 0; i < M; i++)
                for (int j = 0; j < N; j++) {
                    double s = 0;
                    for (int k = 0; k < K; k++)
                        s += (double)(ta ? a[k * M + i] : a[i * K + k]) *
                             (tb ? b[j * K + k] : b[k * N + j]);
                    want[i * N + j] = 1.5 * s - 0.5 * c[i * N + j];
                }
            tcase *t = tc_new(EG_OP_Gemm, 13, 3, 1);
            tc_attr_int(t, "transA", ta);
            tc_attr_int(t, "transB", tb);
            tc_attr_float(t, "alpha", 1.5f);
            tc_attr_float(t, "beta", -0.5f);
            tc_in_f32(t, 0, 2, ta ? DIMS(K, M) : DIMS(M, K), a);
            tc_in_f32(t, 1, 2, tb ? DIMS(N, K) : DIMS(K, N), b);
            tc_in_f32(t, 2, 2, DIMS(M, N), c);
            t->threads = 2;
            expect_ok(t, tc_run(t));
            const float *o = t->out[0].data;
            for (int i = 0; i < M * N; i++)
                if (fabs(o[i] - want[i]) > 1e-3 * (1 + fabs(want[i])))
                    fail_msg("transA %d transB %d: element %d is %.7g, expected %.7g", ta, tb, i,
                             o[i], want[i]);
            tc_free(t);
        }
    free(a);
    free(b);
    free(c);
    free(want);
}

static void test_einsum_attention_forms(void **state) {
    (void)state;
    const float *q =
        F32S(-1.49, -0.81, -0.03, 1.4, 1.86, 0.83, -1.15, 0.18, 0.82, -1.79, 0.72, -0.53, 0.36,
             0.68, 0.68, 0.09, 0.22, -1.21, -0.02, -1.5, -0.08, 0.14, 1.1, -0.43);
    const float *k = F32S(-1.92, 0.11, -1.18, 0.97, -0.45, -0.48, 1.64, -0.43, -0.6, -0.61, -0.08,
                          -1.63, 0.19, 1.69, 0.25, 0.98, 1.79, 1.37, 0.98, 1.25, 1.28, -0.98, -0.07,
                          -0.63, -0.95, 0.29, -0.73, 0.47, 0.33, -1.58, -0.23, -0.44, 0.83, -1.65,
                          -1.32, 0.05, -0.38, 0.66, -0.67, -1.21);
    // numpy einsum('bhqd,bhkd->bhqk').
    tcase *t = tc_new(EG_OP_Einsum, 12, 2, 1);
    tc_attr_string(t, "equation", "bhqd,bhkd->bhqk");
    tc_in_f32(t, 0, 4, DIMS(1, 2, 3, 4), q);
    tc_in_f32(t, 1, 4, DIMS(1, 2, 5, 4), k);
    expect_ok(t, tc_run(t));
    check_shape(&t->out[0], INFERD_DTYPE_F32, 4, DIMS(1, 2, 3, 5));
    check_f32(&t->out[0],
              F32S(4.16509997, 0.408099981, -0.8914999, -0.287500045, -2.0562, -1.94830003,
                   -3.19879992, -1.82370007, 1.64500003, 3.56449995, -3.13499993, 1.8989,
                   1.40619994, -3.20870002, -0.941399923, -0.309900014, -0.59890003, -1.15160004,
                   -1.71630003, -0.252500005, 2.41380005, -1.2503, 2.64900011, 2.13050003,
                   0.946200002, -0.0456999982, -0.888500045, -0.311400015, -1.77090008,
                   -0.0939000063),
              30, 1e-6);
    tc_free(t);
    // numpy einsum('bsd,dnh->bsnh'): a projection into heads.
    t = tc_new(EG_OP_Einsum, 12, 2, 1);
    tc_attr_string(t, "equation", "bsd,dnh->bsnh");
    tc_in_f32(t, 0, 3, DIMS(2, 3, 4), q);
    tc_in_f32(t, 1, 3, DIMS(4, 2, 3),
              F32S(1.73, -1.02, -1.41, -0.88, -0.64, -1.1, 0.15, 1.75, -1.5, -0.34, 0.67, 1.54, 2,
                   -1.43, 0.15, 1.52, -1.79, 0.35, -1.3, 1.07, 1.75, 0.15, -1.96, -1.74));
    expect_ok(t, tc_run(t));
    check_shape(&t->out[0], INFERD_DTYPE_F32, 4, DIMS(2, 3, 2, 3));
    check_f32(&t->out[0],
              F32S(-4.57919995, 1.64320002, 5.76139993, 1.75100001, -2.27940004, -2.0548999,
                   0.80830011, 1.39239991, -3.72509992, -3.63999994, 1.07139991, -1.48350012,
                   3.27909999, -5.56559991, 0.709300039, 0.901900035, -1.97410005, -2.48439992,
                   1.96780005, -0.0532999612, -1.26810001, 0.499099983, -1.16839999, 0.732599952,
                   2.10909992, -3.91830014, -1.12319993, -0.0375999885, 2.02430001, 0.497599998,
                   2.64160004, -1.70650001, -0.684700008, 1.63030001, -0.98119997, 1.43680001),
              36, 1e-6);
    tc_free(t);
}

static void test_einsum_other_forms(void **state) {
    (void)state;
    float a9[9], a6[6], a12[12];
    for (int i = 0; i < 12; i++) {
        if (i < 9)
            a9[i] = (float)i;
        if (i < 6)
            a6[i] = (float)i;
        a12[i] = (float)i;
    }
    // Trace with an implicit (scalar) output: numpy einsum('ii') = 12.
    tcase *t = tc_new(EG_OP_Einsum, 12, 1, 1);
    tc_attr_string(t, "equation", "ii");
    tc_in_f32(t, 0, 2, DIMS(3, 3), a9);
    expect_ok(t, tc_run(t));
    check_shape(&t->out[0], INFERD_DTYPE_F32, 0, NULL);
    check_f32(&t->out[0], F32S(12), 1, 0);
    tc_free(t);
    // Implicit output of a matrix product: 'ij,jk' -> 'ik'.
    t = tc_new(EG_OP_Einsum, 12, 2, 1);
    tc_attr_string(t, "equation", "ij,jk");
    tc_in_f32(t, 0, 2, DIMS(2, 3), a6);
    tc_in_f32(t, 1, 2, DIMS(3, 2), a6);
    expect_ok(t, tc_run(t));
    check_shape(&t->out[0], INFERD_DTYPE_F32, 2, DIMS(2, 2));
    check_f32(&t->out[0], F32S(10, 13, 28, 40), 4, 0);
    tc_free(t);
    // Ellipsis: '...ij->...ji'.
    t = tc_new(EG_OP_Einsum, 12, 1, 1);
    tc_attr_string(t, "equation", "...ij->...ji");
    tc_in_f32(t, 0, 3, DIMS(2, 2, 3), a12);
    expect_ok(t, tc_run(t));
    check_shape(&t->out[0], INFERD_DTYPE_F32, 3, DIMS(2, 3, 2));
    check_f32(&t->out[0], F32S(0, 3, 1, 4, 2, 5, 6, 9, 7, 10, 8, 11), 12, 0);
    tc_free(t);
    // Three operands: 'i,ij,j->' = -6.
    t = tc_new(EG_OP_Einsum, 12, 3, 1);
    tc_attr_string(t, "equation", "i,ij,j->");
    tc_in_f32(t, 0, 1, DIMS(2), F32S(1, 2));
    tc_in_f32(t, 1, 2, DIMS(2, 3), a6);
    tc_in_f32(t, 2, 1, DIMS(3), F32S(1, 0, -1));
    expect_ok(t, tc_run(t));
    check_f32(&t->out[0], F32S(-6), 1, 0);
    tc_free(t);
}

static void test_einsum_errors(void **state) {
    (void)state;
    struct {
        const char *eq;
        int code;
        const char *msg;
    } cases[] = {
        {"ij,jk->ik", INFERD_EINVAL, "label 'j' has sizes 3 and 4"},
        {"ij,ab->iz", INFERD_EINVAL, "not in any input"},
        {"ij,ab->ii", INFERD_EINVAL, "repeated"},
        {"ijk,jk->ik", INFERD_EINVAL, "term 0 has 3 labels for rank 2"},
        {"ij", INFERD_EINVAL, "needs 2 terms"},
        {"i1,jk->ik", INFERD_EINVAL, "bad character"},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        tcase *t = tc_new(EG_OP_Einsum, 12, 2, 1);
        tc_attr_string(t, "equation", cases[c].eq);
        tc_in_f32(t, 0, 2, DIMS(2, 3), NULL);
        tc_in_f32(t, 1, 2, DIMS(4, 2), NULL);
        expect_err(t, tc_infer(t), cases[c].code, cases[c].msg);
        tc_free(t);
    }
    // Work beyond any real model is refused rather than run.
    tcase *t = tc_new(EG_OP_Einsum, 12, 2, 1);
    tc_attr_string(t, "equation", "ab,cd->");
    tc_in_f32(t, 0, 2, DIMS(1 << 15, 1 << 15), NULL);
    tc_in_f32(t, 1, 2, DIMS(1 << 15, 1 << 15), NULL);
    expect_err(t, tc_infer(t), INFERD_EUNSUPPORTED, "2^40");
    tc_free(t);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_matmul_batch_broadcast),
        cmocka_unit_test(test_matmul_vectors),
        cmocka_unit_test(test_gemm_attributes),
        cmocka_unit_test(test_gemm_matches_naive_loop),
        cmocka_unit_test(test_einsum_attention_forms),
        cmocka_unit_test(test_einsum_other_forms),
        cmocka_unit_test(test_einsum_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
