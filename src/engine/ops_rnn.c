/* Recurrent ops per the ONNX spec: LSTM (gates i, o, f, c; peepholes; input_forget), GRU
 * (gates z, r, h; linear_before_reset 0 and 1) and RNN, each forward, reverse or
 * bidirectional, with sequence_lens, initial states and layout 0 or 1.
 *
 * Only the default activations are implemented (Sigmoid/Tanh/Tanh, Sigmoid/Tanh, Tanh); other
 * activations, activation_alpha/beta and clip are refused as unsupported when the model is
 * planned. Per direction, the input projections of all time steps are one matrix product;
 * the recurrence then multiplies the hidden state of the whole batch by R each step. Batch
 * entries past their sequence length keep their state and output zeros, and a reverse
 * direction starts at each entry's own last step. */
#include <inttypes.h>
#include <math.h>
#include <strings.h>

#include "engine/ops_impl.h"

typedef enum rnn_kind { K_LSTM, K_GRU, K_RNN } rnn_kind;

typedef struct rnn_shape {
    rnn_kind kind;
    int G;    /* gates: 4, 3 or 1 */
    int dirs; /* 1 or 2 */
    int reverse, layout, lbr, input_forget;
    int64_t seq, batch, I, H;
} rnn_shape;

static rnn_kind kind_of(eg_op op) {
    return op == EG_OP_LSTM ? K_LSTM : op == EG_OP_GRU ? K_GRU : K_RNN;
}

/* Refuses every attribute that would change the math away from the defaults. */
static int check_activations(const eg_node *n, const rnn_shape *s, inferd_error *err) {
    static const char *const defaults[3][3] = {
        {"Sigmoid", "Tanh", "Tanh"}, {"Sigmoid", "Tanh", NULL}, {"Tanh", NULL, NULL}};
    int per_dir = s->kind == K_LSTM ? 3 : s->kind == K_GRU ? 2 : 1;
    const eg_attr *a = eg_node_attr(n, "activations");
    if (a) {
        int ok = a->type == EG_ATTR_TYPE_STRINGS && a->n == per_dir * s->dirs;
        for (int i = 0; ok && i < a->n; i++)
            ok = a->strings[i] && strcasecmp(a->strings[i], defaults[s->kind][i % per_dir]) == 0;
        if (!ok)
            return eg_node_error(err, INFERD_EUNSUPPORTED, n,
                                 "attribute activations: only the default activations are "
                                 "supported");
    }
    static const char *const refused[] = {"activation_alpha", "activation_beta"};
    for (int i = 0; i < 2; i++) {
        const eg_attr *r = eg_node_attr(n, refused[i]);
        if (r && r->n > 0)
            return eg_node_error(err, INFERD_EUNSUPPORTED, n, "attribute %s is not supported",
                                 refused[i]);
    }
    if (eg_node_attr(n, "clip"))
        return eg_node_error(err, INFERD_EUNSUPPORTED, n, "attribute clip is not supported");
    return 0;
}

/* Checks input i has exactly the given dims. */
static int check_dims(const eg_node *n, const eg_tensor *in, int i, const char *what, int rank,
                      const int64_t *dims, inferd_error *err) {
    int ok = in[i].rank == rank && in[i].dtype == INFERD_DTYPE_F32;
    for (int d = 0; ok && d < rank; d++)
        ok = in[i].dims[d] == dims[d];
    if (ok)
        return 0;
    char s[96], w[96];
    eg_tensor want = {.dtype = INFERD_DTYPE_F32, .rank = rank};
    memcpy(want.dims, dims, sizeof(int64_t) * (size_t)rank);
    return eg_node_error(err, INFERD_EINVAL, n, "%s is %s, expected %s", what,
                         eg_tensor_str(&in[i], s, sizeof s), eg_tensor_str(&want, w, sizeof w));
}

/* Index of each input by role; -1 where the op has no such input. */
enum { IN_X, IN_W, IN_R, IN_B, IN_LENS, IN_H0, IN_C0, IN_P };

static int rnn_shape_get(const eg_node *n, const eg_tensor *in, rnn_shape *s, inferd_error *err) {
    s->kind = kind_of(n->op);
    s->G = s->kind == K_LSTM ? 4 : s->kind == K_GRU ? 3 : 1;
    int64_t layout, lbr = 0, input_forget = 0, hs;
    int rc = eg_attr_i64(n, "layout", 0, 0, 1, &layout, err);
    if (!rc && s->kind == K_GRU)
        rc = eg_attr_i64(n, "linear_before_reset", 0, 0, 1, &lbr, err);
    if (!rc && s->kind == K_LSTM)
        rc = eg_attr_i64(n, "input_forget", 0, 0, 1, &input_forget, err);
    if (!rc)
        rc = eg_attr_i64(n, "hidden_size", -1, 1, EG_MAX_NUMEL, &hs, err);
    if (!rc)
        rc = eg_check_dtype(n, in, IN_X, EG_DT(INFERD_DTYPE_F32), err);
    if (!rc)
        rc = eg_check_rank(n, in, IN_X, 3, 3, err);
    if (!rc)
        rc = eg_check_rank(n, in, IN_W, 3, 3, err);
    if (rc)
        return rc;
    s->layout = (int)layout;
    s->lbr = (int)lbr;
    s->input_forget = (int)input_forget;
    const char *dir = eg_node_attr_string(n, "direction", "forward");
    s->reverse = strcmp(dir, "reverse") == 0;
    s->dirs = strcmp(dir, "bidirectional") == 0 ? 2 : 1;
    if (!s->reverse && s->dirs == 1 && strcmp(dir, "forward") != 0)
        return eg_node_error(err, INFERD_EINVAL, n, "direction %.40s is not valid", dir);
    rc = check_activations(n, s, err);
    if (rc)
        return rc;
    s->seq = in[IN_X].dims[layout ? 1 : 0];
    s->batch = in[IN_X].dims[layout ? 0 : 1];
    s->I = in[IN_X].dims[2];
    int64_t gh = in[IN_W].dims[1];
    s->H = hs > 0 ? hs : gh / s->G;
    if (s->H * s->G != gh || s->H == 0)
        return eg_node_error(err, INFERD_EINVAL, n,
                             "W has %" PRId64 " rows, not %d gates of hidden_size %" PRId64, gh,
                             s->G, s->H);
    int64_t GH = s->G * s->H;
    // The projections of all steps live in scratch: cap them like an output, since with Y
    // omitted no output bounds them.
    if (s->seq * s->batch > EG_MAX_NUMEL / GH)
        return eg_node_error(err, INFERD_EINVAL, n,
                             "input projections of %" PRId64 " x %" PRId64
                             " would be over the limit of %" PRId64 " elements",
                             s->seq * s->batch, GH, EG_MAX_NUMEL);
    int64_t wd[3] = {s->dirs, GH, s->I}, rd[3] = {s->dirs, GH, s->H}, bd[2] = {s->dirs, 2 * GH};
    int64_t hd[3] = {s->dirs, s->batch, s->H}, pd[2] = {s->dirs, 3 * s->H};
    if (layout) {
        hd[0] = s->batch;
        hd[1] = s->dirs;
    }
    rc = check_dims(n, in, IN_W, "W", 3, wd, err);
    if (!rc)
        rc = check_dims(n, in, IN_R, "R", 3, rd, err);
    if (!rc && eg_in_present(n, IN_B))
        rc = check_dims(n, in, IN_B, "B", 2, bd, err);
    if (!rc && eg_in_present(n, IN_H0))
        rc = check_dims(n, in, IN_H0, "initial_h", 3, hd, err);
    if (!rc && s->kind == K_LSTM && eg_in_present(n, IN_C0))
        rc = check_dims(n, in, IN_C0, "initial_c", 3, hd, err);
    if (!rc && s->kind == K_LSTM && eg_in_present(n, IN_P))
        rc = check_dims(n, in, IN_P, "P", 2, pd, err);
    if (rc)
        return rc;
    if (eg_in_present(n, IN_LENS)) {
        rc = eg_check_dtype(n, in, IN_LENS, EG_DT_INDEX, err);
        if (!rc && (in[IN_LENS].rank != 1 || in[IN_LENS].dims[0] != s->batch))
            rc = eg_node_error(err, INFERD_EINVAL, n, "sequence_lens must be [%" PRId64 "]",
                               s->batch);
        if (rc)
            return rc;
    }
    return 0;
}

/* Validates sequence_lens (if given and known) against [0, seq]. */
static int check_lens(const eg_node *n, const eg_tensor *in, const rnn_shape *s,
                      inferd_error *err) {
    if (!eg_in_present(n, IN_LENS) || !in[IN_LENS].data)
        return 0;
    for (int64_t b = 0; b < s->batch; b++) {
        int64_t v = eg_tensor_get_i64(&in[IN_LENS], b);
        if (v < 0 || v > s->seq)
            return eg_node_error(err, INFERD_EINVAL, n,
                                 "sequence_lens holds %" PRId64 " for a sequence of %" PRId64, v,
                                 s->seq);
    }
    return 0;
}

static int infer_rnn(const eg_node *n, const eg_tensor *in, eg_tensor *out, inferd_error *err) {
    rnn_shape s;
    int rc = rnn_shape_get(n, in, &s, err);
    if (!rc)
        rc = check_lens(n, in, &s, err);
    if (rc)
        return rc;
    int64_t y[4] = {s.seq, s.dirs, s.batch, s.H}, h[3] = {s.dirs, s.batch, s.H};
    if (s.layout) {
        int64_t y1[4] = {s.batch, s.seq, s.dirs, s.H}, h1[3] = {s.batch, s.dirs, s.H};
        memcpy(y, y1, sizeof y);
        memcpy(h, h1, sizeof h);
    }
    if (eg_out_present(n, 0))
        eg_set_out(&out[0], INFERD_DTYPE_F32, 4, y);
    for (int j = 1; j < n->n_out; j++)
        if (eg_out_present(n, j))
            eg_set_out(&out[j], INFERD_DTYPE_F32, 3, h);
    return 0;
}

/* Scratch floats: projections for one direction, then state and gate buffers. */
static int64_t scratch_floats(const rnn_shape *s) {
    int64_t GH = s->G * s->H;
    return s->seq * s->batch * GH + s->batch * (3 * s->H + GH);
}

static size_t scratch_rnn(const eg_node *n, const eg_tensor *in, const eg_tensor *out,
                          int threads) {
    (void)out;
    (void)threads;
    rnn_shape s;
    if (rnn_shape_get(n, in, &s, NULL))
        return 0;
    return (size_t)scratch_floats(&s) * sizeof(float);
}

static inline float sigm(float x) { return 1.0f / (1.0f + expf(-x)); }

/* Time index batch entry b processes at this step, or -1 once past its length. */
static inline int64_t step_time(const eg_node *n, const eg_tensor *in, int64_t T, int64_t b,
                                int64_t step, int rev) {
    int64_t len = eg_in_present(n, IN_LENS) ? eg_tensor_get_i64(&in[IN_LENS], b) : T;
    return step < len ? (rev ? len - 1 - step : step) : -1;
}

static int run_rnn(const eg_node *n, const eg_tensor *in, eg_tensor *out, const eg_run_ctx *ctx,
                   inferd_error *err) {
    rnn_shape s;
    int rc = rnn_shape_get(n, in, &s, err);
    if (!rc)
        rc = check_lens(n, in, &s, err);
    if (rc)
        return rc;
    float *scratch = eg_scratch(n, ctx, (size_t)scratch_floats(&s) * sizeof(float), err);
    if (!scratch)
        return INFERD_EINTERNAL;
    const int64_t T = s.seq, Bn = s.batch, H = s.H, GH = s.G * s.H, D = s.dirs;
    float *xw = scratch, *hp = xw + T * Bn * GH, *cp = hp + Bn * H, *tmp = cp + Bn * H,
          *gates = tmp + Bn * H;
    const float *X = in[IN_X].data;
    float *Y = eg_out_present(n, 0) ? out[0].data : NULL;
    float *Yh = eg_out_present(n, 1) ? out[1].data : NULL;
    float *Yc = s.kind == K_LSTM && eg_out_present(n, 2) ? out[2].data : NULL;
    const float *Bias = eg_in_present(n, IN_B) ? in[IN_B].data : NULL;
    const float *H0 = eg_in_present(n, IN_H0) ? in[IN_H0].data : NULL;
    const float *C0 = s.kind == K_LSTM && eg_in_present(n, IN_C0) ? in[IN_C0].data : NULL;
    const float *P = s.kind == K_LSTM && eg_in_present(n, IN_P) ? in[IN_P].data : NULL;
    if (Y)
        memset(Y, 0, sizeof(float) * (size_t)(T * D * Bn * H));
    int threads = eg_par_threads(ctx, T * Bn * GH * (s.I + H));
    for (int64_t d = 0; d < D; d++) {
        int rev = D == 2 ? d == 1 : s.reverse;
        const float *W = (const float *)in[IN_W].data + d * GH * s.I;
        const float *R = (const float *)in[IN_R].data + d * GH * H;
        const float *Wb = Bias ? Bias + d * 2 * GH : NULL, *Rb = Wb ? Wb + GH : NULL;
        const float *Pd = P ? P + d * 3 * H : NULL;
        // Input projections of every step at once, rows in X's storage order.
        eg_gemm_f32(0, 1, T * Bn, GH, s.I, 1.0f, X, s.I, W, s.I, 0.0f, xw, GH, threads);
        if (Wb)
            for (int64_t row = 0; row < T * Bn; row++)
                for (int64_t j = 0; j < GH; j++) {
                    // GRU keeps Rb of the h gate apart; every other recurrent bias just adds.
                    int apart = s.kind == K_GRU && j >= 2 * H;
                    xw[row * GH + j] += Wb[j] + (apart ? 0.0f : Rb[j]);
                }
        for (int64_t b = 0; b < Bn; b++) {
            size_t at = (size_t)((s.layout ? b * D + d : d * Bn + b) * H);
            for (int64_t j = 0; j < H; j++) {
                hp[b * H + j] = H0 ? H0[at + j] : 0.0f;
                cp[b * H + j] = C0 ? C0[at + j] : 0.0f;
            }
        }
        for (int64_t step = 0; step < T; step++) {
            // Recurrent products for the whole batch; GRU without linear_before_reset does
            // its h gate separately below.
            int64_t ncols = s.kind == K_GRU && !s.lbr ? 2 * H : GH;
            eg_gemm_f32(0, 1, Bn, ncols, H, 1.0f, hp, H, R, H, 0.0f, gates, GH, threads);
            for (int64_t b = 0; b < Bn; b++) {
                int64_t t = step_time(n, in, T, b, step, rev);
                float *g = gates + b * GH, *h = hp + b * H, *c = cp + b * H;
                if (t < 0) {
                    if (s.kind == K_GRU && !s.lbr)
                        for (int64_t j = 0; j < H; j++)
                            tmp[b * H + j] = 0.0f;
                    continue;
                }
                const float *x = xw + (s.layout ? b * T + t : t * Bn + b) * GH;
                if (s.kind == K_LSTM) {
                    for (int64_t j = 0; j < H; j++) {
                        float cprev = c[j];
                        float gi = x[j] + g[j] + (Pd ? Pd[j] * cprev : 0.0f);
                        float gf = x[2 * H + j] + g[2 * H + j] + (Pd ? Pd[2 * H + j] * cprev : 0);
                        float i_ = sigm(gi);
                        float f_ = s.input_forget ? 1.0f - i_ : sigm(gf);
                        float c_ = tanhf(x[3 * H + j] + g[3 * H + j]);
                        float cn = f_ * cprev + i_ * c_;
                        float o_ = sigm(x[H + j] + g[H + j] + (Pd ? Pd[H + j] * cn : 0.0f));
                        c[j] = cn;
                        h[j] = o_ * tanhf(cn);
                    }
                } else if (s.kind == K_RNN) {
                    for (int64_t j = 0; j < H; j++)
                        h[j] = tanhf(x[j] + g[j]);
                } else {
                    for (int64_t j = 0; j < 2 * H; j++)
                        g[j] = sigm(x[j] + g[j]); // z then r
                    if (!s.lbr) {
                        for (int64_t j = 0; j < H; j++)
                            tmp[b * H + j] = g[H + j] * h[j];
                    } else {
                        for (int64_t j = 0; j < H; j++) {
                            float rec = g[2 * H + j] + (Rb ? Rb[2 * H + j] : 0.0f);
                            float hh = tanhf(x[2 * H + j] + g[H + j] * rec);
                            h[j] = (1.0f - g[j]) * hh + g[j] * h[j];
                        }
                    }
                }
            }
            if (s.kind == K_GRU && !s.lbr) {
                // h gate: (r * H_prev) R_h^T, written into the gates' third block.
                eg_gemm_f32(0, 1, Bn, H, H, 1.0f, tmp, H, R + 2 * H * H, H, 0.0f, gates + 2 * H, GH,
                            threads);
                for (int64_t b = 0; b < Bn; b++) {
                    int64_t t = step_time(n, in, T, b, step, rev);
                    if (t < 0)
                        continue;
                    const float *x = xw + (s.layout ? b * T + t : t * Bn + b) * GH;
                    float *g = gates + b * GH, *h = hp + b * H;
                    for (int64_t j = 0; j < H; j++) {
                        float hh = tanhf(x[2 * H + j] + g[2 * H + j] + (Rb ? Rb[2 * H + j] : 0));
                        h[j] = (1.0f - g[j]) * hh + g[j] * h[j];
                    }
                }
            }
            if (Y)
                for (int64_t b = 0; b < Bn; b++) {
                    int64_t t = step_time(n, in, T, b, step, rev);
                    if (t < 0)
                        continue;
                    size_t at =
                        (size_t)((s.layout ? (b * T + t) * D + d : (t * D + d) * Bn + b) * H);
                    memcpy(Y + at, hp + b * H, sizeof(float) * (size_t)H);
                }
        }
        for (int64_t b = 0; b < Bn; b++) {
            size_t at = (size_t)((s.layout ? b * D + d : d * Bn + b) * H);
            if (Yh)
                memcpy(Yh + at, hp + b * H, sizeof(float) * (size_t)H);
            if (Yc)
                memcpy(Yc + at, cp + b * H, sizeof(float) * (size_t)H);
        }
    }
    return 0;
}

/* Output 0 (Y) may be omitted when only the final states are wanted, so these spell out the
 * record EG_OP_IMPL would make, with out0_optional set. */
const eg_op_impl eg_impl_LSTM = {
    .def = {.infer = eg_infer_checked, .run = run_rnn, .scratch = scratch_rnn},
    .infer = infer_rnn,
    .min_in = 3,
    .max_in = 8,
    .min_out = 1,
    .max_out = 3,
    .out0_optional = 1};
const eg_op_impl eg_impl_GRU = {
    .def = {.infer = eg_infer_checked, .run = run_rnn, .scratch = scratch_rnn},
    .infer = infer_rnn,
    .min_in = 3,
    .max_in = 6,
    .min_out = 1,
    .max_out = 2,
    .out0_optional = 1};
const eg_op_impl eg_impl_RNN = {
    .def = {.infer = eg_infer_checked, .run = run_rnn, .scratch = scratch_rnn},
    .infer = infer_rnn,
    .min_in = 3,
    .max_in = 6,
    .min_out = 1,
    .max_out = 2,
    .out0_optional = 1};
