/* Tests of LayerNormalization, BatchNormalization and InstanceNormalization (ops_norm.c).
 * Expected values from torch 1.13 (layer_norm, batch_norm, instance_norm, and the mean and
 * 1/sqrt(var + eps) of LayerNorm's extra outputs computed in float64), pasted here. */
#include "engine/test_ops_util.h"

static const float X[12] = {-1.49, -0,    0.41, -1.89, -1.41, 1.71,
                            -1.72, -1.48, 1.79, 0.49,  -0.52, 0.05};
static const float G[3] = {0.65, -0.9, -1.45};
static const float B[3] = {1.15, 0.68, 0.05};

static void test_layernorm_last_axis(void **state) {
    (void)state;
    tcase *t = tc_new(EG_OP_LayerNormalization, 17, 3, 1);
    tc_in_f32(t, 0, 3, DIMS(2, 2, 3), X);
    tc_in_f32(t, 1, 1, DIMS(3), G);
    tc_in_f32(t, 2, 1, DIMS(3), B);
    expect_ok(t, tc_run(t));
    check_shape(&t->out[0], INFERD_DTYPE_F32, 3, DIMS(2, 2, 3));
    check_f32(&t->out[0],
              F32S(0.250296682, 0.283126116, -1.31762266, 0.596114635, 1.17624116, -1.98509002,
                   0.642525375, 1.24774694, -1.99676228, 1.90981138, 1.82636797, -0.101962253),
              12, 1e-5);
    tc_free(t);
}

/* axis 1 normalises each [2,3] block; Scale [3] broadcasts into it, B is omitted, and the
 * optional Mean and InvStdDev outputs are [2,1,1]. */
static void test_layernorm_axis_and_stat_outputs(void **state) {
    (void)state;
    tcase *t = tc_new(EG_OP_LayerNormalization, 17, 2, 3);
    tc_attr_int(t, "axis", 1);
    tc_attr_float(t, "epsilon", 1e-3f);
    tc_in_f32(t, 0, 3, DIMS(2, 2, 3), X);
    tc_in_f32(t, 1, 1, DIMS(3), G);
    expect_ok(t, tc_run(t));
    check_f32(&t->out[0],
              F32S(-0.534485013, -0.315143525, -0.97552862, -0.739072561, 0.683401132, -2.45878858,
                   -0.810418014, 0.941171137, -2.45568746, 0.392957452, 0.217386635, -0.342136192),
              12, 1e-5);
    check_shape(&t->out[1], INFERD_DTYPE_F32, 3, DIMS(2, 1, 1));
    check_f32(&t->out[1], F32S(-0.444999988, -0.231666676), 2, 1e-6);
    check_shape(&t->out[2], INFERD_DTYPE_F32, 3, DIMS(2, 1, 1));
    check_f32(&t->out[2], F32S(0.786875262, 0.837713533), 2, 1e-6);
    // Scale that does not broadcast into [2,3] is refused.
    tc_in_f32(t, 1, 1, DIMS(2), NULL);
    expect_err(t, tc_infer(t), INFERD_EINVAL, "does not broadcast");
    tc_in_f32(t, 1, 1, DIMS(3), G);
    tc_attr_int(t, "stash_type", 10);
    expect_err(t, tc_infer(t), INFERD_EUNSUPPORTED, "stash_type 10");
    tc_free(t);
}

static const float BX[12] = {1.27,  0.2,  1.92,  -1.18, 0.21, -0.07,
                             -0.59, 0.37, -1.06, 1.21,  1.47, -1.48};
static const float SC[3] = {-0.13, -0.89, -1.67}, BB[3] = {1.58, -0.28, -1.41};
static const float MU[3] = {0.69, -1.19, 1.61}, VAR[3] = {1.23, 1.97, 1.3};

static void test_batchnorm_inference(void **state) {
    (void)state;
    tcase *t = tc_new(EG_OP_BatchNormalization, 15, 5, 1);
    tc_in_f32(t, 0, 3, DIMS(2, 3, 2), BX);
    tc_in_f32(t, 1, 1, DIMS(3), SC);
    tc_in_f32(t, 2, 1, DIMS(3), BB);
    tc_in_f32(t, 3, 1, DIMS(3), MU);
    tc_in_f32(t, 4, 1, DIMS(3), VAR);
    expect_ok(t, tc_run(t));
    check_f32(&t->out[0],
              F32S(1.51201439, 1.63743615, -2.25204206, -0.286341041, 0.640553653, 1.05066442,
                   1.73003721, 1.61750937, -0.362432688, -1.80183315, -1.20494461, 3.11586475),
              12, 1e-5);
    tc_in_f32(t, 3, 1, DIMS(2), NULL);
    expect_err(t, tc_infer(t), INFERD_EINVAL, "input 3");
    tc_free(t);
    t = tc_new(EG_OP_BatchNormalization, 15, 5, 1);
    tc_attr_int(t, "training_mode", 1);
    tc_in_f32(t, 0, 3, DIMS(2, 3, 2), NULL);
    for (int i = 1; i < 5; i++)
        tc_in_f32(t, i, 1, DIMS(3), NULL);
    expect_err(t, tc_infer(t), INFERD_EUNSUPPORTED, "training_mode");
    tc_free(t);
}

static void test_instancenorm(void **state) {
    (void)state;
    tcase *t = tc_new(EG_OP_InstanceNormalization, 6, 3, 1);
    tc_in_f32(t, 0, 3, DIMS(2, 3, 2), BX);
    tc_in_f32(t, 1, 1, DIMS(3), SC);
    tc_in_f32(t, 2, 1, DIMS(3), BB);
    expect_ok(t, tc_run(t));
    check_f32(&t->out[0],
              F32S(1.45000231, 1.70999765, -1.16999817, 0.609998107, -3.07957411, 0.259574056,
                   1.70999718, 1.45000291, 0.609996498, -1.1699965, -3.07999611, 0.259996116),
              12, 1e-5);
    tc_in_f32(t, 0, 2, DIMS(2, 3), NULL);
    expect_err(t, tc_infer(t), INFERD_EINVAL, "rank 2");
    tc_free(t);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_layernorm_last_axis),
        cmocka_unit_test(test_layernorm_axis_and_stat_outputs),
        cmocka_unit_test(test_batchnorm_inference),
        cmocka_unit_test(test_instancenorm),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
