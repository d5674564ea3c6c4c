/* Tests of Conv and the pooling ops (ops_conv.c). Expected values from torch 1.13
 * (torch.nn.functional conv1d/conv2d/max_pool/avg_pool in float64; asymmetric ONNX pads were
 * applied with F.pad first), pasted here; the blocked im2col path is checked against a direct
 * convolution loop. */
#include "engine/test_ops_util.h"

static const float X1[42] = {
    1.22, 1.23,  0.06,  -0.86, -1.78, -0.47, -0.37, -1.82, -1.8, 2,     0.61, -1.06, -0.26, 1.9,
    1.59, 1.38,  -0.43, -0.03, 0.71,  -1.76, 0.22,  -0.91, 1.52, -1.74, 0.72, 1.48,  -1.09, 1.58,
    1.49, -1.93, 0.83,  -2,    0.01,  -0.25, -1.19, -0.7,  1.22, -0.73, -1.4, 0.79,  -0.21, 1.2};
static const float W1[36] = {-1.06, -0.72, 1.2,   0.03,  0.03,  -1.06, -1.94, 1.73,  -1.66,
                             1.38,  -0.53, 1.8,   -0.4,  1.75,  0.22,  -1.04, 0.97,  0.7,
                             0.74,  -0.14, -1.11, 0.56,  -1.57, 0.77,  0.54,  -0.49, 1.19,
                             -1.22, -0.44, 1.19,  -0.48, 0.85,  0.45,  1.76,  1.97,  0.89};
static const float B1[4] = {1.24, -1.39, 0.85, 1.39};

/* TextCNN's Conv1d: torch conv1d(x [2,3,7], w [4,3,3], b, padding=1). */
static void test_conv1d_matches_torch(void **state) {
    (void)state;
    tcase *t = tc_new(EG_OP_Conv, 11, 3, 1);
    tc_attr_ints(t, "pads", 2, I64S(1, 1));
    tc_attr_ints(t, "kernel_shape", 1, I64S(3));
    tc_in_f32(t, 0, 3, DIMS(2, 3, 7), X1);
    tc_in_f32(t, 1, 3, DIMS(4, 3, 3), W1);
    tc_in_f32(t, 2, 1, DIMS(4), B1);
    expect_ok(t, tc_run(t));
    check_shape(&t->out[0], INFERD_DTYPE_F32, 3, DIMS(2, 4, 7));
    check_f32(&t->out[0],
              F32S(4.15090002, -3.07880002, -5.15090007, 0.465199975, 7.33939986, -3.8198,
                   5.84880008, -0.895300011, -2.84829976, 1.20850009, -3.10599987, -5.14769992,
                   -6.16789995, 3.63029989, 1.64840027, 4.53150001, -0.0516999714, 2.96410004,
                   0.331599909, 2.79450004, -3.63280007, 4.32040011, 4.80969997, 3.23309982,
                   -1.52550003, 1.13180003, 2.44909982, 1.20180005, 2.57349994, 2.80960003,
                   2.52689987, 1.97910006, 2.73979993, -0.28169987, 3.69800001, 4.18619992,
                   -8.9738998, 1.75339993, -5.38440004, -0.304999941, 3.18550004, -4.33170004,
                   -2.74039988, 4.55429993, -3.15419996, 2.6632001, -0.335699939, 1.78330013,
                   0.849100098, 3.70400016, -1.69969995, 1.35300005, -0.476399899, -1.67530007,
                   3.23610012, 3.1275001),
              56, 1e-5);
    tc_free(t);
    // Stride 2, dilation 2, asymmetric pads (2, 1), no bias: torch conv1d on F.pad(x, (2,1)).
    t = tc_new(EG_OP_Conv, 11, 2, 1);
    tc_attr_ints(t, "pads", 2, I64S(2, 1));
    tc_attr_ints(t, "strides", 1, I64S(2));
    tc_attr_ints(t, "dilations", 1, I64S(2));
    tc_in_f32(t, 0, 3, DIMS(2, 3, 7), X1);
    tc_in_f32(t, 1, 3, DIMS(4, 3, 3), W1);
    expect_ok(t, tc_run(t));
    check_shape(&t->out[0], INFERD_DTYPE_F32, 3, DIMS(2, 4, 3));
    check_f32(&t->out[0],
              F32S(0.483500145, -7.35050025, 0.485500171, -2.0423, 0.868900201, -0.586899991,
                   2.86920007, -0.190999973, 4.63319992, 1.63719999, 1.04679994, 0.101399933,
                   -2.26709997, 2.83610009, 4.75230006, -1.04959995, 3.76199977, 1.44760007,
                   -0.167100146, -1.6138, -3.06910004, -2.05890008, 1.66480016, 3.76590027),
              24, 1e-5);
    tc_free(t);
}

/* Grouped 2-D convolution with every attribute set: torch conv2d(F.pad(x, (0,2,1,1)), w, b,
 * stride=(2,1), dilation=(1,2), groups=2). */
static void test_conv2d_groups_strides_dilations(void **state) {
    (void)state;
    float x[100], w[108];
    const float *xv =
        F32S(-0.4, 0.21, -0.08, 1.83, -0.73, -0.39, -2, -0.32, 0.53, 1.74, 1.69, -0.69, 1.96, -1.25,
             1.29, -1.37, -0.38, -1.71, 1.43, 1.32, -1.44, 0.11, -0.97, -0.03, 0.21, -1.57, 1.46,
             -0.89, -0.21, -1.77, -1.99, -1.22, -0.63, 1.71, 1.56, -0.08, -0.18, 0.67, 1.44, -0.65,
             1.17, -0.4, 0.38, 0.95, 0.01, 0.76, 0.79, -1.98, -1.84, -1.4, -1.15, -1.19, -1.8,
             -1.13, 0.4, 1.54, -0.6, -0.53, -0.33, 0.72, 1.14, 1.76, -0.5, 0.83, -0.63, 1.3, -1.08,
             1.48, 0.02, 0.9, 0.14, -0.74, -0.02, -1.8, -1.83, 0.12, -0.09, 1.33, -1.92, 0.23,
             -0.04, 0.39, 0.92, 0.1, 0.25, -0.03, 0.46, -1.01, 0.21, 0.69, -1.24, 1.96, 0.99, 1.82,
             -0.82, -0.23, -0.95, -1.81, -1.93, -1.01);
    const float *wv =
        F32S(1.45, -1.35, 0.76, -1, -1.74, -1.23, 0.71, 0.01, 0.2, -0.19, -0.9, -0.05, 1.69, -1.19,
             0.93, -1, -1.23, -0.7, -1.63, 1.74, -0.54, -1.3, -2, -1.76, -1.14, -0.33, 0.41, 1.92,
             1.56, -1.03, 0.45, 1.69, -1.59, 1.42, -0.42, 1.13, -0.71, 0.5, 0.03, -1.58, 1.04, 1.29,
             -0.07, -0.45, 1.79, -0.5, 1.52, -0.33, -0.51, -0.55, -1.76, -0.89, -1.08, -1.75, 0.17,
             -0.23, -1.9, -1.38, 1.67, -1.47, -0.51, 1.8, -1.55, -0.36, 1.2, -1.92, -1.73, 1.72,
             0.74, -0.96, -0.08, -1, 1.57, 1.8, -1.72, 0.1, -1.26, -0.38, 0.96, 0.85, -1.24, -0.67,
             -0.3, -0.45, 0.73, 1.15, -0.66, -0.24, -1.73, -0.53, 1.79, 0.01, 0.23, 0.42, 0.27,
             1.22, -0.96, -0.73, 1.55, -0, 1.84, -1.44, 1.13, -0.11, -0.1, 1.52, -1.48, 0.06);
    memcpy(x, xv, sizeof x);
    memcpy(w, wv, sizeof w);
    tcase *t = tc_new(EG_OP_Conv, 11, 3, 1);
    tc_attr_int(t, "group", 2);
    tc_attr_ints(t, "pads", 4, I64S(1, 0, 1, 2));
    tc_attr_ints(t, "strides", 2, I64S(2, 1));
    tc_attr_ints(t, "dilations", 2, I64S(1, 2));
    tc_in_f32(t, 0, 4, DIMS(1, 4, 5, 5), x);
    tc_in_f32(t, 1, 4, DIMS(6, 2, 3, 3), w);
    tc_in_f32(t, 2, 1, DIMS(6), F32S(-1, -0.63, 1.27, -0.41, 1.14, -1.95));
    expect_ok(t, tc_run(t));
    check_shape(&t->out[0], INFERD_DTYPE_F32, 4, DIMS(1, 6, 3, 3));
    check_f32(&t->out[0],
              F32S(-1.0624, -3.97489994, -0.546199862, -9.53830011, -6.09950021, -8.98929987,
                   4.96850037, -0.793599715, -6.41830029, 2.40369998, -4.60640007, -4.21699998,
                   -9.97829984, 8.62130007, 0.267399967, 3.40799963, 0.354499694, 2.78330012,
                   8.28990002, 1.35279986, 0.179899982, 4.56929971, 3.9673, 2.49069962, 6.11930008,
                   4.30289994, 6.50010007, -3.30739968, -4.47199982, 1.49979984, -0.875499861,
                   -3.37420005, 1.85549997, -0.0297997426, -2.7806997, -3.34020011, 3.02689978,
                   -0.951999976, 1.14130012, 0.757799942, -5.6186002, 5.07929994, 4.35160009,
                   -3.09780022, 4.48730007, -3.84759999, -1.38370008, -0.108800027, -2.44950023,
                   -0.0755001498, -3.38819994, 1.46219979, -2.19219992, -3.23730004),
              54, 1e-5);
    tc_free(t);
}

static void test_conv_auto_pad(void **state) {
    (void)state;
    // in 5, kernel 4, stride 2: 3 outputs and 3 pads, the odd one at the end for SAME_UPPER
    // (torch conv1d on F.pad(x, (1,2))) and at the start for SAME_LOWER (F.pad(x, (2,1))).
    const char *modes[3] = {"SAME_UPPER", "SAME_LOWER", "VALID"};
    const float *want[3] = {F32S(3210, 5432, 54), F32S(2100, 4321, 543), F32S(4321)};
    int64_t n_out[3] = {3, 3, 1};
    for (int k = 0; k < 3; k++) {
        tcase *t = tc_new(EG_OP_Conv, 11, 2, 1);
        tc_attr_string(t, "auto_pad", modes[k]);
        tc_attr_ints(t, "strides", 1, I64S(2));
        tc_in_f32(t, 0, 3, DIMS(1, 1, 5), F32S(1, 2, 3, 4, 5));
        tc_in_f32(t, 1, 3, DIMS(1, 1, 4), F32S(1, 10, 100, 1000));
        expect_ok(t, tc_run(t));
        int64_t dims[3] = {1, 1, n_out[k]};
        check_shape(&t->out[0], INFERD_DTYPE_F32, 3, dims);
        check_f32(&t->out[0], want[k], n_out[k], 0);
        tc_free(t);
    }
}

static void test_conv_errors(void **state) {
    (void)state;
    tcase *t = tc_new(EG_OP_Conv, 11, 2, 1);
    tc_in_f32(t, 0, 3, DIMS(1, 3, 7), NULL);
    tc_in_f32(t, 1, 3, DIMS(4, 2, 3), NULL);
    expect_err(t, tc_infer(t), INFERD_EINVAL, "3 input channels");
    tc_in_f32(t, 1, 3, DIMS(4, 3, 9), NULL);
    expect_err(t, tc_infer(t), INFERD_EINVAL, "kernel of 9 is wider");
    tc_in_f32(t, 0, 5, DIMS(1, 3, 2, 2, 2), NULL);
    tc_in_f32(t, 1, 5, DIMS(1, 3, 1, 1, 1), NULL);
    expect_err(t, tc_infer(t), INFERD_EUNSUPPORTED, "only 1-D and 2-D");
    tc_free(t);
    t = tc_new(EG_OP_Conv, 11, 2, 1);
    tc_attr_ints(t, "strides", 1, I64S(0));
    tc_in_f32(t, 0, 3, DIMS(1, 3, 7), NULL);
    tc_in_f32(t, 1, 3, DIMS(4, 3, 3), NULL);
    expect_err(t, tc_infer(t), INFERD_EINVAL, "strides holds 0");
    tc_free(t);
    t = tc_new(EG_OP_Conv, 11, 2, 1);
    tc_attr_ints(t, "kernel_shape", 1, I64S(2));
    tc_in_f32(t, 0, 3, DIMS(1, 3, 7), NULL);
    tc_in_f32(t, 1, 3, DIMS(4, 3, 3), NULL);
    expect_err(t, tc_infer(t), INFERD_EINVAL, "kernel_shape does not match");
    tc_free(t);
}

/* A long 1-D input makes im2col work in several column blocks: the result must match a
 * direct convolution loop. */
static void test_conv_column_blocks_match_direct_loop(void **state) {
    (void)state;
    enum { C = 64, L = 30000, M = 2, KW = 3 };
    float *x = malloc(sizeof(float) * C * L), *w = malloc(sizeof(float) * M * C * KW);
    for (int i = 0; i < C * L; i++)
        x[i] = (float)((i * 31) % 17) / 8.0f - 1;
    for (int i = 0; i < M * C * KW; i++)
        w[i] = (float)((i * 7) % 11) / 5.0f - 1;
    tcase *t = tc_new(EG_OP_Conv, 11, 2, 1);
    tc_attr_ints(t, "pads", 2, I64S(1, 1));
    tc_in_f32(t, 0, 3, DIMS(1, C, L), x);
    tc_in_f32(t, 1, 3, DIMS(M, C, KW), w);
    t->threads = 2;
    expect_ok(t, tc_run(t));
    // The scratch must hold less than the whole im2col matrix.
    assert_in_range(t->scratch_size, 1, (size_t)C * KW * L * sizeof(float) - 1);
    const float *o = t->out[0].data;
    for (int m = 0; m < M; m++)
        for (int p = 0; p < L; p++) {
            double s = 0;
            for (int c = 0; c < C; c++)
                for (int k = 0; k < KW; k++) {
                    int i = p - 1 + k;
                    if (i >= 0 && i < L)
                        s += (double)x[c * L + i] * w[(m * C + c) * KW + k];
                }
            if (fabs(o[m * L + p] - s) > 1e-4 * (1 + fabs(s)))
                fail_msg("filter %d position %d is %.7g, expected %.7g", m, p, o[m * L + p], s);
        }
    tc_free(t);
    free(x);
    free(w);
}

/* p = arange(16).reshape(1,1,4,4) with every other column negated. */
static const float P[16] = {0, -1, 2, -3, 4, -5, 6, -7, 8, -9, 10, -11, 12, -13, 14, -15};

static void test_maxpool(void **state) {
    (void)state;
    // torch max_pool2d(p, 3, 2, padding=1, return_indices=True); a second channel (p + 100)
    // shows the indices count over the whole tensor.
    float p2[32];
    for (int i = 0; i < 16; i++) {
        p2[i] = P[i];
        p2[16 + i] = P[i] + 100;
    }
    tcase *t = tc_new(EG_OP_MaxPool, 12, 1, 2);
    tc_attr_ints(t, "kernel_shape", 2, I64S(3, 3));
    tc_attr_ints(t, "strides", 2, I64S(2, 2));
    tc_attr_ints(t, "pads", 4, I64S(1, 1, 1, 1));
    tc_in_f32(t, 0, 4, DIMS(1, 2, 4, 4), p2);
    expect_ok(t, tc_run(t));
    check_shape(&t->out[0], INFERD_DTYPE_F32, 4, DIMS(1, 2, 2, 2));
    check_f32(&t->out[0], F32S(4, 6, 12, 14, 104, 106, 112, 114), 8, 0);
    check_shape(&t->out[1], INFERD_DTYPE_I64, 4, DIMS(1, 2, 2, 2));
    check_ints(&t->out[1], I64S(4, 6, 12, 14, 20, 22, 28, 30), 8);
    tc_free(t);
    // storage_order=1 numbers the spatial positions column by column: h + w * H.
    t = tc_new(EG_OP_MaxPool, 12, 1, 2);
    tc_attr_ints(t, "kernel_shape", 2, I64S(2, 2));
    tc_attr_ints(t, "strides", 2, I64S(2, 2));
    tc_attr_int(t, "storage_order", 1);
    tc_in_f32(t, 0, 4, DIMS(1, 1, 4, 4), P);
    expect_ok(t, tc_run(t));
    check_f32(&t->out[0], F32S(4, 6, 12, 14), 4, 0);
    check_ints(&t->out[1], I64S(1, 9, 3, 11), 4);
    tc_free(t);
    // 1-D: ceil_mode keeps the last partial window (torch max_pool1d(q, 2, 2, ceil_mode=True)),
    // and dilation 2 (torch max_pool1d(q, 2, 1, dilation=2)).
    t = tc_new(EG_OP_MaxPool, 12, 1, 1);
    tc_attr_ints(t, "kernel_shape", 1, I64S(2));
    tc_attr_ints(t, "strides", 1, I64S(2));
    tc_attr_int(t, "ceil_mode", 1);
    tc_in_f32(t, 0, 3, DIMS(1, 1, 5), F32S(3, 1, 4, 1, 5));
    expect_ok(t, tc_run(t));
    check_shape(&t->out[0], INFERD_DTYPE_F32, 3, DIMS(1, 1, 3));
    check_f32(&t->out[0], F32S(3, 4, 5), 3, 0);
    tc_free(t);
    t = tc_new(EG_OP_MaxPool, 12, 1, 1);
    tc_attr_ints(t, "kernel_shape", 1, I64S(2));
    tc_attr_ints(t, "dilations", 1, I64S(2));
    tc_in_f32(t, 0, 3, DIMS(1, 1, 5), F32S(3, 1, 4, 1, 5));
    expect_ok(t, tc_run(t));
    check_f32(&t->out[0], F32S(4, 1, 5), 3, 0);
    tc_attr_ints(t, "pads", 2, I64S(3, 0));
    expect_err(t, tc_infer(t), INFERD_EINVAL, "pads must be smaller than the kernel");
    tc_free(t);
    t = tc_new(EG_OP_MaxPool, 12, 1, 1);
    tc_in_f32(t, 0, 3, DIMS(1, 1, 5), NULL);
    expect_err(t, tc_infer(t), INFERD_EINVAL, "kernel_shape must have 1 values");
    tc_free(t);
}

static void test_averagepool(void **state) {
    (void)state;
    // torch avg_pool2d(p, 3, 2, padding=1) without and with count_include_pad.
    for (int incl = 0; incl < 2; incl++) {
        tcase *t = tc_new(EG_OP_AveragePool, 11, 1, 1);
        tc_attr_ints(t, "kernel_shape", 2, I64S(3, 3));
        tc_attr_ints(t, "strides", 2, I64S(2, 2));
        tc_attr_ints(t, "pads", 4, I64S(1, 1, 1, 1));
        tc_attr_int(t, "count_include_pad", incl);
        tc_in_f32(t, 0, 4, DIMS(1, 1, 4, 4), P);
        expect_ok(t, tc_run(t));
        check_f32(&t->out[0],
                  incl ? F32S(-0.222222222, -0.888888889, -0.333333333, -3.33333333)
                       : F32S(-0.5, -1.33333333, -0.5, -3.33333333),
                  4, 1e-6);
        tc_free(t);
    }
    // ceil_mode windows are clipped to the padded input when counting padding: torch
    // avg_pool1d(q, 2, 2, ceil_mode=True, count_include_pad=True) and with k=3, padding=1.
    tcase *t = tc_new(EG_OP_AveragePool, 11, 1, 1);
    tc_attr_ints(t, "kernel_shape", 1, I64S(2));
    tc_attr_ints(t, "strides", 1, I64S(2));
    tc_attr_int(t, "ceil_mode", 1);
    tc_attr_int(t, "count_include_pad", 1);
    tc_in_f32(t, 0, 3, DIMS(1, 1, 5), F32S(3, 1, 4, 1, 5));
    expect_ok(t, tc_run(t));
    check_f32(&t->out[0], F32S(2, 2.5, 5), 3, 1e-6);
    tc_free(t);
    t = tc_new(EG_OP_AveragePool, 11, 1, 1);
    tc_attr_ints(t, "kernel_shape", 1, I64S(3));
    tc_attr_ints(t, "strides", 1, I64S(2));
    tc_attr_ints(t, "pads", 2, I64S(1, 1));
    tc_attr_int(t, "ceil_mode", 1);
    tc_attr_int(t, "count_include_pad", 1);
    tc_in_f32(t, 0, 3, DIMS(1, 1, 5), F32S(3, 1, 4, 1, 5));
    expect_ok(t, tc_run(t));
    check_f32(&t->out[0], F32S(1.33333333, 2, 2), 3, 1e-6);
    tc_free(t);
}

static void test_global_pools(void **state) {
    (void)state;
    const float *x = F32S(1, -2, 6, 0.5, 0.5, 0.5, -3, -1, -2, 4, 8, 0);
    tcase *t = tc_new(EG_OP_GlobalAveragePool, 11, 1, 1);
    tc_in_f32(t, 0, 3, DIMS(2, 2, 3), x);
    expect_ok(t, tc_run(t));
    check_shape(&t->out[0], INFERD_DTYPE_F32, 3, DIMS(2, 2, 1));
    check_f32(&t->out[0], F32S(5.0 / 3, 0.5, -2, 4), 4, 1e-6);
    tc_free(t);
    t = tc_new(EG_OP_GlobalMaxPool, 11, 1, 1);
    tc_in_f32(t, 0, 4, DIMS(1, 2, 3, 2), x);
    expect_ok(t, tc_run(t));
    check_shape(&t->out[0], INFERD_DTYPE_F32, 4, DIMS(1, 2, 1, 1));
    check_f32(&t->out[0], F32S(6, 8), 2, 0);
    tc_in_f32(t, 0, 2, DIMS(1, 2), NULL);
    expect_err(t, tc_infer(t), INFERD_EINVAL, "rank 2");
    tc_free(t);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_conv1d_matches_torch),
        cmocka_unit_test(test_conv2d_groups_strides_dilations),
        cmocka_unit_test(test_conv_auto_pad),
        cmocka_unit_test(test_conv_errors),
        cmocka_unit_test(test_conv_column_blocks_match_direct_loop),
        cmocka_unit_test(test_maxpool),
        cmocka_unit_test(test_averagepool),
        cmocka_unit_test(test_global_pools),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
