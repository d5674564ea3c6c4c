#include "engine/fuse.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "engine/fused.h"
#include "engine/ops.h"

/* ---- helpers ---- */

/* Consumers of each value, rebuilt after rewrites: cons[start[v] .. start[v+1]). */
typedef struct {
    int *start;
    int *cons;
} uses;

static void uses_free(uses *u) {
    inferd_free(u->start);
    inferd_free(u->cons);
    u->start = u->cons = NULL;
}

static int uses_build(const eg_graph *g, uses *u, inferd_error *err) {
    uses_free(u);
    int nv = g->n_values;
    u->start = inferd_calloc(NULL, (size_t)nv + 2, sizeof(int));
    int edges = 0;
    for (int i = 0; i < g->n_nodes; i++)
        if (!g->nodes[i].dead)
            edges += g->nodes[i].n_in;
    u->cons = inferd_calloc(NULL, (size_t)edges + 1, sizeof(int));
    int *fill = inferd_calloc(NULL, (size_t)nv + 1, sizeof(int));
    if (!u->start || !u->cons || !fill) {
        inferd_free(fill);
        uses_free(u);
        return inferd_error_set(err, INFERD_EINTERNAL, "out of memory");
    }
    for (int i = 0; i < g->n_nodes; i++) {
        const eg_node *n = &g->nodes[i];
        if (n->dead)
            continue;
        for (int j = 0; j < n->n_in; j++)
            if (n->in[j] >= 0)
                u->start[n->in[j] + 1]++;
    }
    for (int v = 0; v < nv; v++)
        u->start[v + 1] += u->start[v];
    for (int i = 0; i < g->n_nodes; i++) {
        const eg_node *n = &g->nodes[i];
        if (n->dead)
            continue;
        for (int j = 0; j < n->n_in; j++) {
            int v = n->in[j];
            // A node reading v twice is listed once.
            int dup = 0;
            for (int k = 0; k < j; k++)
                dup |= n->in[k] == v;
            if (v >= 0 && !dup)
                u->cons[u->start[v] + fill[v]++] = i;
        }
    }
    // Close the gaps left by duplicates skipped: each value's list holds fill[v] entries.
    int to = 0;
    for (int v = 0; v < nv; v++) {
        int from = u->start[v];
        u->start[v] = to;
        memmove(u->cons + to, u->cons + from, sizeof(int) * (size_t)fill[v]);
        to += fill[v];
    }
    u->start[nv] = to;
    inferd_free(fill);
    return 0;
}

static int n_uses(const eg_graph *g, const uses *u, int v) {
    int c = 0;
    for (int k = u->start[v]; k < u->start[v + 1]; k++)
        c += u->cons[k] >= 0 && !g->nodes[u->cons[k]].dead;
    return c + g->values[v].is_output;
}

/* The only live consumer of v when it has exactly one and is not a graph output; else -1. */
static int sole_consumer(const eg_graph *g, const uses *u, int v) {
    if (v < 0 || n_uses(g, u, v) != 1 || g->values[v].is_output)
        return -1;
    for (int k = u->start[v]; k < u->start[v + 1]; k++)
        if (!g->nodes[u->cons[k]].dead)
            return u->cons[k];
    return -1;
}

/* Value of a constant scalar (any numeric dtype, one element); 0 if v is not one. */
static int const_scalar(eg_graph *g, int v, double *out) {
    if (v < 0)
        return 0;
    eg_value *val = &g->values[v];
    if (!val->is_const || eg_tensor_numel(&val->t) != 1 || inferd_dtype_size(val->t.dtype) == 0)
        return 0;
    if (eg_value_materialize(g, val, NULL) < 0)
        return 0;
    switch (val->t.dtype) {
    case INFERD_DTYPE_F32:
    case INFERD_DTYPE_F64:
    case INFERD_DTYPE_I64:
    case INFERD_DTYPE_I32:
        *out = eg_tensor_get_f64(&val->t, 0);
        return 1;
    default:
        return 0;
    }
}

static int is_scalar(eg_graph *g, int v, double want, double tol) {
    double x;
    return const_scalar(g, v, &x) && fabs(x - want) <= tol;
}

/* The other input of a binary node, given one of them; -1 if v is not an input. */
static int other_input(const eg_node *n, int v) {
    if (n->n_in != 2)
        return -1;
    if (n->in[0] == v)
        return n->in[1];
    if (n->in[1] == v)
        return n->in[0];
    return -1;
}

static int is_f32_const(const eg_graph *g, int v) {
    return v >= 0 && g->values[v].is_const && g->values[v].t.dtype == INFERD_DTYPE_F32;
}

/* Turns node idx into a new node of op with fresh input/output arrays (other fields reset). */
static int rewrite_node(eg_graph *g, int idx, eg_op op, int n_in, int n_out, void *params,
                        inferd_error *err) {
    int *in = eg_graph_alloc(g, sizeof(int) * (size_t)n_in);
    int *out = eg_graph_alloc(g, sizeof(int) * (size_t)n_out);
    if (!in || !out)
        return inferd_error_set(err, INFERD_EINTERNAL, "out of memory fusing");
    for (int i = 0; i < n_in; i++)
        in[i] = -1;
    for (int i = 0; i < n_out; i++)
        out[i] = -1;
    eg_node *n = &g->nodes[idx];
    n->op = op;
    n->op_type = eg_op_name(op);
    n->in = in;
    n->out = out;
    n->n_in = n_in;
    n->n_out = n_out;
    n->attr = NULL;
    n->n_attr = 0;
    n->params = params;
    n->dead = 0;
    return 0;
}

/* ---- GELU patterns ---- */

/* Matches GELU starting at value x: the exporter's Erf form
 *   0.5 * x * (1 + erf(x / sqrt(2)))   (Div or Mul by 1/sqrt2, Mul orders vary)
 * and the tanh form
 *   0.5 * x * (1 + tanh(sqrt(2/pi) * (x + 0.044715 * x^3))).
 * On success returns the output value, sets *tanh_approx and the pattern's node indices. */
static int match_gelu(eg_graph *g, const uses *u, int x, int *tanh_approx, int *nodes,
                      int *n_nodes) {
    int cnt = 0;
    // Find the Div/Mul (erf form) or Pow/Mul (tanh form) consumer branch.
    for (int k = u->start[x]; k < u->start[x + 1]; k++) {
        int c = u->cons[k];
        eg_node *n = &g->nodes[c];
        if (n->dead)
            continue;
        // Erf form.
        int scaled = -1;
        if (n->op == EG_OP_Div && n->in[0] == x && is_scalar(g, n->in[1], M_SQRT2, 1e-3))
            scaled = n->out[0];
        else if (n->op == EG_OP_Mul && is_scalar(g, other_input(n, x), M_SQRT1_2, 1e-3))
            scaled = n->out[0];
        if (scaled >= 0) {
            int e = sole_consumer(g, u, scaled);
            if (e < 0 || g->nodes[e].op != EG_OP_Erf)
                continue;
            int a = sole_consumer(g, u, g->nodes[e].out[0]);
            if (a < 0 || g->nodes[a].op != EG_OP_Add ||
                !is_scalar(g, other_input(&g->nodes[a], g->nodes[e].out[0]), 1.0, 1e-6))
                continue;
            int m1 = sole_consumer(g, u, g->nodes[a].out[0]);
            if (m1 < 0 || g->nodes[m1].op != EG_OP_Mul)
                continue;
            int other = other_input(&g->nodes[m1], g->nodes[a].out[0]);
            int m2, out;
            if (other == x) { // x * (1 + erf) then * 0.5
                m2 = sole_consumer(g, u, g->nodes[m1].out[0]);
                if (m2 < 0 || g->nodes[m2].op != EG_OP_Mul ||
                    !is_scalar(g, other_input(&g->nodes[m2], g->nodes[m1].out[0]), 0.5, 1e-6))
                    continue;
                out = g->nodes[m2].out[0];
            } else { // (x * 0.5) * (1 + erf)
                int h = other >= 0 ? g->values[other].producer : -1;
                if (h < 0 || g->nodes[h].dead || g->nodes[h].op != EG_OP_Mul ||
                    other_input(&g->nodes[h], x) < 0 ||
                    !is_scalar(g, other_input(&g->nodes[h], x), 0.5, 1e-6) ||
                    sole_consumer(g, u, other) != m1)
                    continue;
                m2 = h;
                out = g->nodes[m1].out[0];
            }
            // x must feed only the pattern.
            int xu = n_uses(g, u, x);
            if (xu != 2)
                continue;
            nodes[cnt++] = c;
            nodes[cnt++] = e;
            nodes[cnt++] = a;
            nodes[cnt++] = m1;
            nodes[cnt++] = m2;
            *n_nodes = cnt;
            *tanh_approx = 0;
            return out;
        }
        // Tanh form: Pow(x, 3) -> Mul(0.044715) -> Add(x) -> Mul(sqrt(2/pi)) -> Tanh -> Add(1)
        // -> Mul(x*0.5 or x) (-> Mul 0.5).
        if (n->op == EG_OP_Pow && n->in[0] == x && is_scalar(g, n->in[1], 3.0, 1e-6)) {
            int m = sole_consumer(g, u, n->out[0]);
            if (m < 0 || g->nodes[m].op != EG_OP_Mul ||
                !is_scalar(g, other_input(&g->nodes[m], n->out[0]), 0.044715, 1e-5))
                continue;
            int ad = sole_consumer(g, u, g->nodes[m].out[0]);
            if (ad < 0 || g->nodes[ad].op != EG_OP_Add ||
                other_input(&g->nodes[ad], g->nodes[m].out[0]) != x)
                continue;
            int ms = sole_consumer(g, u, g->nodes[ad].out[0]);
            if (ms < 0 || g->nodes[ms].op != EG_OP_Mul ||
                !is_scalar(g, other_input(&g->nodes[ms], g->nodes[ad].out[0]), 0.7978845608, 1e-4))
                continue;
            int th = sole_consumer(g, u, g->nodes[ms].out[0]);
            if (th < 0 || g->nodes[th].op != EG_OP_Tanh)
                continue;
            int a1 = sole_consumer(g, u, g->nodes[th].out[0]);
            if (a1 < 0 || g->nodes[a1].op != EG_OP_Add ||
                !is_scalar(g, other_input(&g->nodes[a1], g->nodes[th].out[0]), 1.0, 1e-6))
                continue;
            int m1 = sole_consumer(g, u, g->nodes[a1].out[0]);
            if (m1 < 0 || g->nodes[m1].op != EG_OP_Mul)
                continue;
            int other = other_input(&g->nodes[m1], g->nodes[a1].out[0]);
            int m2, out;
            if (other == x) {
                m2 = sole_consumer(g, u, g->nodes[m1].out[0]);
                if (m2 < 0 || g->nodes[m2].op != EG_OP_Mul ||
                    !is_scalar(g, other_input(&g->nodes[m2], g->nodes[m1].out[0]), 0.5, 1e-6))
                    continue;
                out = g->nodes[m2].out[0];
            } else {
                int h = other >= 0 ? g->values[other].producer : -1;
                if (h < 0 || g->nodes[h].dead || g->nodes[h].op != EG_OP_Mul ||
                    other_input(&g->nodes[h], x) < 0 ||
                    !is_scalar(g, other_input(&g->nodes[h], x), 0.5, 1e-6) ||
                    sole_consumer(g, u, other) != m1)
                    continue;
                m2 = h;
                out = g->nodes[m1].out[0];
            }
            if (n_uses(g, u, x) != 3)
                continue;
            int list[] = {c, m, ad, ms, th, a1, m1, m2};
            for (int i = 0; i < 8; i++)
                nodes[cnt++] = list[i];
            *n_nodes = cnt;
            *tanh_approx = 1;
            return out;
        }
    }
    return -1;
}

/* ---- load time: dense layers ---- */

typedef struct dense_cand {
    int node; /* the FusedMatMul node (an index that toposort invalidates) */
    int y;    /* its output value (unique: found again by it) */
    int x;    /* input value */
    int w;    /* weight value; -1 for a merged layer (see parts) */
    int transposed;
    float scale;
    int bias; /* bias value or -1 */
    eg_act act;
    int64_t K, N;
    int merged;               /* absorbed into another candidate */
    struct dense_cand *parts; /* merged layer: the layers whose weights sit side by side */
    int n_parts;
    eg_packed_weight *packed; /* set by pack_all */
} dense_cand;

static int find_dense(eg_graph *g, dense_cand **out, int *n_out, inferd_error *err) {
    uses u = {0};
    int rc = uses_build(g, &u, err);
    if (rc < 0)
        return rc;
    dense_cand *cands = NULL;
    int n = 0;
    for (int i = 0; i < g->n_nodes; i++) {
        eg_node *nd = &g->nodes[i];
        if (nd->dead || (nd->op != EG_OP_MatMul && nd->op != EG_OP_Gemm))
            continue;
        int x = nd->in[0], w = nd->in[1];
        if (x < 0 || w < 0 || g->values[x].is_const || !is_f32_const(g, w) ||
            g->values[w].t.rank != 2)
            continue;
        int transposed = 0, bias = -1;
        float scale = 1.0f;
        if (nd->op == EG_OP_Gemm) {
            if (eg_node_attr_int(nd, "transA", 0) != 0)
                continue;
            transposed = eg_node_attr_int(nd, "transB", 0) != 0;
            scale = eg_node_attr_float(nd, "alpha", 1.0f);
            float beta = eg_node_attr_float(nd, "beta", 1.0f);
            if (nd->n_in > 2 && nd->in[2] >= 0) {
                int c = nd->in[2];
                if (!is_f32_const(g, c) || beta != 1.0f)
                    continue;
                bias = c;
            }
        }
        int64_t K = g->values[w].t.dims[transposed ? 1 : 0];
        int64_t N = g->values[w].t.dims[transposed ? 0 : 1];
        if (K <= 0 || N <= 0)
            continue;
        if (bias >= 0 && (eg_tensor_numel(&g->values[bias].t) != N ||
                          (g->values[bias].t.rank == 2 && g->values[bias].t.dims[0] != 1)))
            continue;
        int cur = nd->out[0], last = i;
        int dead[16], n_dead = 0;
        // Bias: Add with a constant [N].
        int c = sole_consumer(g, &u, cur);
        if (bias < 0 && c >= 0 && g->nodes[c].op == EG_OP_Add) {
            int b = other_input(&g->nodes[c], cur);
            const eg_value *bv = b >= 0 ? &g->values[b] : NULL;
            if (bv && is_f32_const(g, b) && eg_tensor_numel(&bv->t) == N && bv->t.rank >= 1 &&
                bv->t.dims[bv->t.rank - 1] == N) {
                bias = b;
                dead[n_dead++] = last;
                last = c;
                cur = g->nodes[c].out[0];
            }
        }
        // Activation.
        eg_act act = EG_ACT_NONE;
        c = sole_consumer(g, &u, cur);
        if (c >= 0 && (g->nodes[c].op == EG_OP_Relu || g->nodes[c].op == EG_OP_Tanh ||
                       g->nodes[c].op == EG_OP_Sigmoid)) {
            act = g->nodes[c].op == EG_OP_Relu   ? EG_ACT_RELU
                  : g->nodes[c].op == EG_OP_Tanh ? EG_ACT_TANH
                                                 : EG_ACT_SIGMOID;
            dead[n_dead++] = last;
            last = c;
            cur = g->nodes[c].out[0];
        } else if (!g->values[cur].is_output) {
            int gn[8], ng = 0, tanh_approx = 0;
            int out = match_gelu(g, &u, cur, &tanh_approx, gn, &ng);
            if (out >= 0) {
                act = tanh_approx ? EG_ACT_GELU_TANH : EG_ACT_GELU_ERF;
                dead[n_dead++] = last;
                // The pattern's last node in file order takes the fused node's place.
                int lastg = gn[0];
                for (int k = 0; k < ng; k++)
                    if (gn[k] > lastg)
                        lastg = gn[k];
                for (int k = 0; k < ng; k++)
                    if (gn[k] != lastg)
                        dead[n_dead++] = gn[k];
                last = lastg;
                cur = out;
            }
        }
        dense_cand *grown = inferd_realloc(NULL, cands, sizeof(*cands) * (size_t)(n + 1));
        if (!grown) {
            rc = inferd_error_set(err, INFERD_EINTERNAL, "out of memory");
            break;
        }
        cands = grown;
        for (int k = 0; k < n_dead; k++)
            g->nodes[dead[k]].dead = 1;
        if ((rc = rewrite_node(g, last, EG_OP_FusedMatMul, 3, 1, NULL, err)) < 0)
            break;
        g->nodes[last].in[0] = x;
        g->nodes[last].in[1] = bias;
        g->nodes[last].out[0] = cur;
        cands[n++] = (dense_cand){.node = last,
                                  .y = cur,
                                  .x = x,
                                  .w = w,
                                  .transposed = transposed,
                                  .scale = scale,
                                  .bias = bias,
                                  .act = act,
                                  .K = K,
                                  .N = N};
        if ((rc = uses_build(g, &u, err)) < 0)
            break;
    }
    uses_free(&u);
    *out = cands;
    *n_out = n;
    return rc;
}

/* Reads weight element (k, n) of a candidate's source. */
/* Merges dense layers reading the same input with the same activation (the Q, K and V
 * projections) into one wider layer followed by a Split. */
static int merge_siblings(eg_graph *g, dense_cand *c, int n, inferd_error *err) {
    for (int i = 0; i < n; i++) {
        if (c[i].merged)
            continue;
        int group[16], ng = 0;
        group[ng++] = i;
        for (int j = i + 1; j < n && ng < 16; j++)
            if (!c[j].merged && c[j].x == c[i].x && c[j].act == c[i].act && c[j].K == c[i].K)
                group[ng++] = j;
        if (ng < 2)
            continue;
        int64_t Ntot = 0;
        for (int k = 0; k < ng; k++)
            Ntot += c[group[k]].N;
        // The merged weight is built only if it has to be packed (not on a cached load).
        dense_cand *parts = eg_graph_alloc(g, sizeof(dense_cand) * (size_t)ng);
        float *b = eg_graph_alloc(g, sizeof(float) * (size_t)Ntot);
        int64_t *sizes = eg_graph_alloc(g, sizeof(int64_t) * (size_t)ng);
        if (!parts || !b || !sizes)
            return inferd_error_set(err, INFERD_EINTERNAL, "out of memory merging layers");
        int64_t off = 0;
        for (int k = 0; k < ng; k++) {
            dense_cand *d = &c[group[k]];
            parts[k] = *d;
            if (d->bias >= 0) {
                eg_value *bv = &g->values[d->bias];
                int rc = eg_value_materialize(g, bv, err);
                if (rc < 0)
                    return rc;
                memcpy(b + off, bv->t.data, sizeof(float) * (size_t)d->N);
            }
            sizes[k] = d->N;
            off += d->N;
        }
        // New constants: merged bias and the split sizes.
        int bv, sv, yv;
        if ((bv = eg_graph_add_value(g, "", err)) < 0 ||
            (sv = eg_graph_add_value(g, "", err)) < 0 || (yv = eg_graph_add_value(g, "", err)) < 0)
            return INFERD_EINTERNAL;
        g->values[bv].t =
            (eg_tensor){.dtype = INFERD_DTYPE_F32, .rank = 1, .dims = {Ntot}, .data = b};
        g->values[bv].is_const = 1;
        g->values[sv].t =
            (eg_tensor){.dtype = INFERD_DTYPE_I64, .rank = 1, .dims = {ng}, .data = sizes};
        g->values[sv].is_const = 1;
        g->values[yv].t.dtype = INFERD_DTYPE_F32;
        int mm = eg_graph_add_node(g, EG_OP_FusedMatMul, g->nodes[c[i].node].name, 3, 1, err);
        if (mm < 0)
            return mm;
        g->nodes[mm].in[0] = c[i].x;
        g->nodes[mm].in[1] = bv;
        g->nodes[mm].out[0] = yv;
        int sp = eg_graph_add_node(g, EG_OP_Split, "", 2, ng, err);
        if (sp < 0)
            return sp;
        eg_attr *axis = eg_graph_alloc(g, sizeof *axis);
        if (!axis)
            return inferd_error_set(err, INFERD_EINTERNAL, "out of memory merging layers");
        axis->name = "axis";
        axis->type = EG_ATTR_TYPE_INT;
        axis->i = -1;
        eg_node *s = &g->nodes[sp];
        s->opset = 13; // split sizes as an input
        s->attr = axis;
        s->n_attr = 1;
        s->in[0] = yv;
        s->in[1] = sv;
        for (int k = 0; k < ng; k++) {
            dense_cand *d = &c[group[k]];
            s->out[k] = g->nodes[d->node].out[0];
            g->nodes[d->node].dead = 1;
            d->merged = 1;
        }
        // The merged layer becomes a candidate of its own, to be packed.
        c[i].merged = 0;
        c[i].node = mm;
        c[i].y = yv;
        c[i].w = -1;
        c[i].parts = parts;
        c[i].n_parts = ng;
        c[i].transposed = 0;
        c[i].scale = 1.0f;
        c[i].bias = bv;
        c[i].N = Ntot;
    }
    return eg_graph_toposort(g, err);
}

static int pack_all(eg_graph *g, dense_cand *c, int n, void *model_ctx, inferd_error *err) {
    for (int i = 0; i < n; i++) {
        if (c[i].merged)
            continue;
        eg_matmul_params *p = eg_graph_alloc(g, sizeof *p);
        if (!p)
            return inferd_error_set(err, INFERD_EINTERNAL, "out of memory");
        // Weights shared by several layers (tied embeddings) are packed once. (Not through
        // c[j].node: toposort has moved the nodes since the candidates were found.)
        for (int j = 0; j < i && c[i].w >= 0; j++)
            if (!c[j].merged && c[j].packed && c[j].w == c[i].w &&
                c[j].transposed == c[i].transposed && c[j].scale == c[i].scale) {
                p->w = c[j].packed;
                break;
            }
        int rc = 0;
        if (!p->w)
            rc = eg_pack_weight_cached(model_ctx, c[i].K, c[i].N, c[i].transposed, c[i].scale,
                                       &p->w, err);
        if (rc < 0)
            return rc;
        if (!p->w && c[i].w >= 0) {
            const eg_value *wv = &g->values[c[i].w];
            const float *src = wv->t.data ? wv->t.data : wv->file_data;
            rc = eg_pack_weight(model_ctx, src, c[i].K, c[i].N, c[i].transposed, c[i].scale, &p->w,
                                err);
        } else if (!p->w) {
            // A merged layer: the parts' weights packed side by side.
            eg_weight_part parts[EG_MAX_WEIGHT_PARTS];
            int np = c[i].n_parts < EG_MAX_WEIGHT_PARTS ? c[i].n_parts : EG_MAX_WEIGHT_PARTS;
            for (int k = 0; k < np; k++) {
                const dense_cand *d = &c[i].parts[k];
                const eg_value *pv = &g->values[d->w];
                parts[k] = (eg_weight_part){.w = pv->t.data ? pv->t.data : pv->file_data,
                                            .N = d->N,
                                            .transposed = d->transposed,
                                            .scale = d->scale};
            }
            rc = eg_pack_weight_parts(model_ctx, parts, np, c[i].K, &p->w, err);
        }
        if (rc < 0)
            return rc;
        c[i].packed = p->w;
        p->act = c[i].act;
        // Find the node again: toposort moved nodes around; match by output value (two layers
        // may read the same input with the same bias and differ only in their weights).
        for (int k = 0; k < g->n_nodes; k++) {
            eg_node *nd = &g->nodes[k];
            if (!nd->dead && nd->op == EG_OP_FusedMatMul && !nd->params && nd->out[0] == c[i].y) {
                nd->params = p;
                break;
            }
        }
    }
    // Any FusedMatMul left without parameters would be a bug in this pass.
    for (int k = 0; k < g->n_nodes; k++)
        if (!g->nodes[k].dead && g->nodes[k].op == EG_OP_FusedMatMul && !g->nodes[k].params)
            return inferd_error_set(err, INFERD_EINTERNAL, "dense layer fusion lost a node");
    return 0;
}

/* ---- load time: LayerNorm ---- */

static int axes_is_last(eg_graph *g, const eg_node *n) {
    const eg_attr *a = eg_node_attr(n, "axes");
    if (a && a->type == EG_ATTR_TYPE_INTS)
        return a->n == 1 && a->ints[0] == -1;
    if (n->n_in > 1 && n->in[1] >= 0) {
        double x;
        return const_scalar(g, n->in[1], &x) && x == -1;
    }
    return 0;
}

static int fuse_layernorm(eg_graph *g, inferd_error *err) {
    uses u = {0};
    int rc = uses_build(g, &u, err);
    for (int i = 0; rc == 0 && i < g->n_nodes; i++) {
        eg_node *n = &g->nodes[i];
        if (n->dead)
            continue;
        if (n->op == EG_OP_LayerNormalization) {
            if (eg_node_attr_int(n, "axis", -1) != -1 || n->n_out > 1 ||
                (n->n_out > 1 && n->out[1] >= 0))
                continue;
            eg_layernorm_params *p = eg_graph_alloc(g, sizeof *p);
            if (!p) {
                rc = inferd_error_set(err, INFERD_EINTERNAL, "out of memory");
                break;
            }
            p->eps = eg_node_attr_float(n, "epsilon", 1e-5f);
            int x = n->in[0], sc = n->n_in > 1 ? n->in[1] : -1, b = n->n_in > 2 ? n->in[2] : -1,
                y = n->out[0];
            if ((rc = rewrite_node(g, i, EG_OP_FusedLayerNorm, 4, 1, p, err)) < 0)
                break;
            g->nodes[i].in[0] = x;
            g->nodes[i].in[1] = sc;
            g->nodes[i].in[2] = b;
            g->nodes[i].out[0] = y;
            continue;
        }
        if (n->op != EG_OP_ReduceMean || !axes_is_last(g, n) ||
            eg_node_attr_int(n, "keepdims", 1) != 1)
            continue;
        int x = n->in[0], mean = n->out[0];
        int sub = sole_consumer(g, &u, mean);
        if (sub < 0 || g->nodes[sub].op != EG_OP_Sub || g->nodes[sub].in[0] != x ||
            g->nodes[sub].in[1] != mean)
            continue;
        int d = g->nodes[sub].out[0];
        if (n_uses(g, &u, d) != 2 || g->values[d].is_output)
            continue;
        int pw = -1, dv = -1;
        for (int k = u.start[d]; k < u.start[d + 1]; k++) {
            eg_node *c = &g->nodes[u.cons[k]];
            if (c->dead)
                continue;
            if (c->op == EG_OP_Pow && c->in[0] == d && is_scalar(g, c->in[1], 2.0, 0))
                pw = u.cons[k];
            else if (c->op == EG_OP_Mul && c->in[0] == d && c->in[1] == d)
                pw = u.cons[k];
            else if (c->op == EG_OP_Div && c->in[0] == d)
                dv = u.cons[k];
        }
        if (pw < 0 || dv < 0)
            continue;
        int rm = sole_consumer(g, &u, g->nodes[pw].out[0]);
        if (rm < 0 || g->nodes[rm].op != EG_OP_ReduceMean || !axes_is_last(g, &g->nodes[rm]))
            continue;
        int ad = sole_consumer(g, &u, g->nodes[rm].out[0]);
        double eps;
        if (ad < 0 || g->nodes[ad].op != EG_OP_Add ||
            !const_scalar(g, other_input(&g->nodes[ad], g->nodes[rm].out[0]), &eps))
            continue;
        int sq = sole_consumer(g, &u, g->nodes[ad].out[0]);
        if (sq < 0 || g->nodes[sq].op != EG_OP_Sqrt ||
            sole_consumer(g, &u, g->nodes[sq].out[0]) != dv ||
            g->nodes[dv].in[1] != g->nodes[sq].out[0])
            continue;
        int end = dv, out = g->nodes[dv].out[0], gamma = -1, beta = -1;
        int mul = sole_consumer(g, &u, out);
        if (mul >= 0 && g->nodes[mul].op == EG_OP_Mul &&
            is_f32_const(g, other_input(&g->nodes[mul], out))) {
            gamma = other_input(&g->nodes[mul], out);
            end = mul;
            out = g->nodes[mul].out[0];
            int add = sole_consumer(g, &u, out);
            if (add >= 0 && g->nodes[add].op == EG_OP_Add &&
                is_f32_const(g, other_input(&g->nodes[add], out))) {
                beta = other_input(&g->nodes[add], out);
                end = add;
                out = g->nodes[add].out[0];
            }
        }
        // gamma and beta must be vectors over the last axis.
        if ((gamma >= 0 && g->values[gamma].t.rank != 1) ||
            (beta >= 0 && g->values[beta].t.rank != 1))
            continue;
        eg_layernorm_params *p = eg_graph_alloc(g, sizeof *p);
        if (!p) {
            rc = inferd_error_set(err, INFERD_EINTERNAL, "out of memory");
            break;
        }
        p->eps = (float)eps;
        int dead[] = {i, sub, pw, rm, ad, sq, dv, gamma >= 0 ? mul : -1};
        for (int k = 0; k < 8; k++)
            if (dead[k] >= 0 && dead[k] != end)
                g->nodes[dead[k]].dead = 1;
        if ((rc = rewrite_node(g, end, EG_OP_FusedLayerNorm, 4, 1, p, err)) < 0)
            break;
        g->nodes[end].in[0] = x;
        g->nodes[end].in[1] = gamma;
        g->nodes[end].in[2] = beta;
        g->nodes[end].out[0] = out;
        rc = uses_build(g, &u, err);
    }
    uses_free(&u);
    return rc;
}

/* ---- load time: convolutions ---- */

/* Conv with a constant float weight, group 1 and explicit pads (what PyTorch exports) runs on
 * oneDNN, taking a following Relu as a post-op. The node keeps the Conv's inputs and
 * attributes, so its shape rules stay the Conv's. */
static int fuse_conv(eg_graph *g, inferd_error *err) {
    uses u = {0};
    int rc = uses_build(g, &u, err);
    for (int i = 0; rc == 0 && i < g->n_nodes; i++) {
        eg_node *n = &g->nodes[i];
        if (n->dead || n->op != EG_OP_Conv || n->n_in < 2 || n->n_out != 1)
            continue;
        const char *auto_pad = eg_node_attr_string(n, "auto_pad", "NOTSET");
        int w = n->in[1], b = n->n_in > 2 ? n->in[2] : -1;
        if (eg_node_attr_int(n, "group", 1) != 1 || strcmp(auto_pad, "NOTSET") != 0 ||
            !is_f32_const(g, w) || (g->values[w].t.rank != 3 && g->values[w].t.rank != 4) ||
            (b >= 0 && !is_f32_const(g, b)) || n->in[0] < 0 || g->values[n->in[0]].is_const)
            continue;
        eg_conv_params *p = eg_graph_alloc(g, sizeof *p);
        if (!p) {
            rc = inferd_error_set(err, INFERD_EINTERNAL, "out of memory");
            break;
        }
        p->act = EG_ACT_NONE;
        int at = i, out = n->out[0];
        int r = sole_consumer(g, &u, out);
        if (r >= 0 && g->nodes[r].op == EG_OP_Relu) {
            p->act = EG_ACT_RELU;
            at = r;
            out = g->nodes[r].out[0];
        }
        eg_node conv = *n;
        if (at != i)
            n->dead = 1;
        eg_node *f = &g->nodes[at];
        *f = conv;
        f->op = EG_OP_FusedConv;
        f->op_type = eg_op_name(EG_OP_FusedConv);
        f->params = p;
        f->dead = 0;
        f->out = eg_graph_alloc(g, sizeof(int));
        if (!f->out) {
            rc = inferd_error_set(err, INFERD_EINTERNAL, "out of memory");
            break;
        }
        f->out[0] = out;
        rc = uses_build(g, &u, err);
    }
    uses_free(&u);
    return rc;
}

/* ---- load time: standalone GELU ---- */

static int fuse_gelu(eg_graph *g, inferd_error *err) {
    uses u = {0};
    int rc = uses_build(g, &u, err);
    for (int v = 0; rc == 0 && v < g->n_values; v++) {
        if (g->values[v].is_const || g->values[v].is_output)
            continue;
        int nodes[8], nn = 0, tanh_approx = 0;
        int out = match_gelu(g, &u, v, &tanh_approx, nodes, &nn);
        if (out < 0)
            continue;
        eg_gelu_params *p = eg_graph_alloc(g, sizeof *p);
        if (!p) {
            rc = inferd_error_set(err, INFERD_EINTERNAL, "out of memory");
            break;
        }
        p->tanh_approx = tanh_approx;
        int last = nodes[0];
        for (int k = 0; k < nn; k++)
            if (nodes[k] > last)
                last = nodes[k];
        for (int k = 0; k < nn; k++)
            if (nodes[k] != last)
                g->nodes[nodes[k]].dead = 1;
        if ((rc = rewrite_node(g, last, EG_OP_FusedGelu, 1, 1, p, err)) < 0)
            break;
        g->nodes[last].in[0] = v;
        g->nodes[last].out[0] = out;
        rc = uses_build(g, &u, err);
    }
    uses_free(&u);
    return rc;
}

int eg_fuse_load(eg_graph *g, void *model_ctx, inferd_error *err) {
    dense_cand *c = NULL;
    int n = 0;
    int rc = find_dense(g, &c, &n, err);
    if (rc == 0)
        rc = merge_siblings(g, c, n, err);
    if (rc == 0)
        rc = pack_all(g, c, n, model_ctx, err);
    inferd_free(c);
    if (rc == 0)
        rc = fuse_layernorm(g, err);
    if (rc == 0)
        rc = fuse_conv(g, err);
    if (rc == 0)
        rc = fuse_gelu(g, err);
    if (rc == 0)
        eg_graph_recount(g);
    return rc;
}

/* ---- plan time ---- */

static int same_dims(const eg_tensor *a, const eg_tensor *b) {
    if (a->rank != b->rank)
        return 0;
    for (int i = 0; i < a->rank; i++)
        if (a->dims[i] != b->dims[i])
            return 0;
    return 1;
}

/* A dense layer followed by Add(residual) of the same shape becomes one dense layer with the
 * residual as a post-op. The fused node takes the Add's place, where the residual exists. */
static int fuse_residual(eg_graph *g, inferd_error *err) {
    uses u = {0};
    int rc = uses_build(g, &u, err);
    for (int i = 0; rc == 0 && i < g->n_nodes; i++) {
        eg_node *n = &g->nodes[i];
        if (n->dead || n->op != EG_OP_FusedMatMul || n->in[2] >= 0)
            continue;
        int y = n->out[0];
        int a = sole_consumer(g, &u, y);
        if (a < 0 || g->nodes[a].op != EG_OP_Add)
            continue;
        int r = other_input(&g->nodes[a], y);
        if (r < 0 || r == y || g->values[r].is_const || g->values[r].t.dtype != INFERD_DTYPE_F32 ||
            !same_dims(&g->values[r].t, &g->values[y].t) ||
            !same_dims(&g->values[g->nodes[a].out[0]].t, &g->values[y].t))
            continue;
        eg_matmul_params *p = eg_graph_alloc(g, sizeof *p);
        if (!p) {
            rc = inferd_error_set(err, INFERD_EINTERNAL, "out of memory");
            break;
        }
        *p = *(const eg_matmul_params *)n->params;
        p->residual_first = 0;
        int x = n->in[0], bias = n->in[1], out = g->nodes[a].out[0];
        n->dead = 1;
        if ((rc = rewrite_node(g, a, EG_OP_FusedMatMul, 3, 1, p, err)) < 0)
            break;
        g->nodes[a].in[0] = x;
        g->nodes[a].in[1] = bias;
        g->nodes[a].in[2] = r;
        g->nodes[a].out[0] = out;
        g->nodes[a].name = g->nodes[i].name;
        rc = uses_build(g, &u, err);
    }
    uses_free(&u);
    return rc;
}

static int producer_of(const eg_graph *g, int v, eg_op op) {
    if (v < 0)
        return -1;
    int p = g->values[v].producer;
    if (p < 0 || g->nodes[p].dead || g->nodes[p].op != op)
        return -1;
    return p;
}

static int perm_is(const eg_node *n, const int64_t *want, int len) {
    const eg_attr *a = eg_node_attr(n, "perm");
    if (!a || a->type != EG_ATTR_TYPE_INTS || a->n != len)
        return 0;
    for (int i = 0; i < len; i++)
        if (a->ints[i] != want[i])
            return 0;
    return 1;
}

typedef struct {
    int src;      /* [B, S, C] value the head view is taken from */
    int64_t off;  /* column offset of the H*D block inside C */
    int nodes[4]; /* pattern nodes to remove */
    int n_nodes;
} head_view;

/* v must be Transpose(perm)(Reshape([B, S, h, D])(src)) with src [B, S, h*D]. */
static int match_heads(const eg_graph *g, const uses *u, int v, const int64_t *perm, int64_t heads,
                       int64_t D, head_view *hv) {
    int t = producer_of(g, v, EG_OP_Transpose);
    if (t < 0 || !perm_is(&g->nodes[t], perm, 4) || sole_consumer(g, u, v) < 0)
        return 0;
    int r4 = g->nodes[t].in[0];
    int r = producer_of(g, r4, EG_OP_Reshape);
    if (r < 0 || sole_consumer(g, u, r4) != t)
        return 0;
    const eg_tensor *rt = &g->values[r4].t;
    int src = g->nodes[r].in[0];
    const eg_tensor *st = &g->values[src].t;
    if (rt->rank != 4 || rt->dims[2] != heads || rt->dims[3] != D || st->rank != 3 ||
        st->dims[0] != rt->dims[0] || st->dims[1] != rt->dims[1] || st->dims[2] != heads * D ||
        st->dtype != INFERD_DTYPE_F32)
        return 0;
    hv->src = src;
    hv->off = 0;
    hv->nodes[0] = t;
    hv->nodes[1] = r;
    hv->n_nodes = 2;
    return 1;
}

/* If src is an output of a Split along the last axis, read the Split's input directly at
 * the output's column offset instead (the Split then dies if nothing else reads it). */
static void look_through_split(eg_graph *g, head_view *hv) {
    int s = producer_of(g, hv->src, EG_OP_Split);
    if (s < 0)
        return;
    eg_node *n = &g->nodes[s];
    if (n->in[0] < 0)
        return;
    const eg_tensor *in = &g->values[n->in[0]].t;
    int64_t axis = eg_node_attr_int(n, "axis", 0);
    if (in->rank != 3 || (axis != -1 && axis != 2))
        return;
    int64_t off = 0;
    for (int k = 0; k < n->n_out; k++) {
        if (n->out[k] == hv->src) {
            hv->src = n->in[0];
            hv->off = off;
            return;
        }
        if (n->out[k] >= 0)
            off += g->values[n->out[k]].t.dims[2];
    }
}

/* Scale applied by Mul/Div with a constant scalar: returns the value before it. */
static int strip_scale(eg_graph *g, const uses *u, int v, double *scale, int *node) {
    *node = -1;
    int p = g->values[v].producer;
    if (p < 0 || g->nodes[p].dead || sole_consumer(g, u, v) < 0)
        return v;
    eg_node *n = &g->nodes[p];
    double c;
    if (n->op == EG_OP_Mul && const_scalar(g, n->in[1], &c)) {
        *scale *= c;
        *node = p;
        return n->in[0];
    }
    if (n->op == EG_OP_Mul && const_scalar(g, n->in[0], &c)) {
        *scale *= c;
        *node = p;
        return n->in[1];
    }
    if (n->op == EG_OP_Div && const_scalar(g, n->in[1], &c) && c != 0) {
        *scale /= c;
        *node = p;
        return n->in[0];
    }
    return v;
}

/* Turns a Where(cond, fill, 0)-style mask into an additive one: Where(cond, fill, scores) ==
 * scores + Where(cond, fill, 0) when fill is -inf or the float minimum. Returns the new mask
 * value or -1. */
static int additive_from_where(eg_graph *g, int where, int *dead, int *n_dead, inferd_error *err) {
    eg_node *w = &g->nodes[where];
    double fill;
    if (!const_scalar(g, w->in[1], &fill) || !(fill <= -1e30))
        return -1;
    int cond = w->in[0];
    for (;;) { // look through Cast-to-bool and Expand: the kernel broadcasts itself
        int c = producer_of(g, cond, EG_OP_Cast);
        int e = producer_of(g, cond, EG_OP_Expand);
        if (c >= 0 && g->nodes[c].in[0] >= 0 &&
            g->values[g->nodes[c].in[0]].t.dtype == INFERD_DTYPE_BOOL)
            cond = g->nodes[c].in[0];
        else if (e >= 0)
            cond = g->nodes[e].in[0];
        else
            break;
    }
    if (g->values[cond].t.dtype != INFERD_DTYPE_BOOL)
        return -1;
    int zero = eg_graph_add_value(g, "", err);
    int fillv = eg_graph_add_value(g, "", err);
    int mask = eg_graph_add_value(g, "", err);
    if (zero < 0 || fillv < 0 || mask < 0)
        return -1;
    float *zd = eg_graph_alloc(g, sizeof(float)), *fd = eg_graph_alloc(g, sizeof(float));
    if (!zd || !fd)
        return -1;
    *fd = (float)fill;
    g->values[zero].t = (eg_tensor){.dtype = INFERD_DTYPE_F32, .rank = 0, .data = zd};
    g->values[zero].is_const = 1;
    g->values[fillv].t = (eg_tensor){.dtype = INFERD_DTYPE_F32, .rank = 0, .data = fd};
    g->values[fillv].is_const = 1;
    int nw = eg_graph_add_node(g, EG_OP_Where, "attention_mask_additive", 3, 1, err);
    if (nw < 0)
        return -1;
    g->nodes[nw].in[0] = cond;
    g->nodes[nw].in[1] = fillv;
    g->nodes[nw].in[2] = zero;
    g->nodes[nw].out[0] = mask;
    if (eg_plan_infer_node(g, &g->nodes[nw], 1, err) < 0)
        return -1;
    dead[(*n_dead)++] = where;
    return mask;
}

static int fuse_attention(eg_graph *g, inferd_error *err) {
    uses u = {0};
    int rc = uses_build(g, &u, err), added = 0;
    static const int64_t P0213[] = {0, 2, 1, 3}, P0231[] = {0, 2, 3, 1}, P0132[] = {0, 1, 3, 2};
    for (int i = 0; rc == 0 && i < g->n_nodes; i++) {
        eg_node *sm = &g->nodes[i];
        if (sm->dead || sm->op != EG_OP_Softmax)
            continue;
        const eg_tensor *st = &g->values[sm->out[0]].t;
        int64_t axis = eg_node_attr_int(sm, "axis", sm->opset >= 13 ? -1 : 1);
        if (st->rank != 4 || st->dtype != INFERD_DTYPE_F32 || (axis != -1 && axis != 3))
            continue;
        int64_t B = st->dims[0], heads = st->dims[1], Sq = st->dims[2], Sk = st->dims[3];
        int dead[32], n_dead = 0;
        dead[n_dead++] = i;
        double scale = 1.0;
        int x = sm->in[0], mask = -1;
        if (sole_consumer(g, &u, x) != i)
            continue;
        int add = producer_of(g, x, EG_OP_Add), wh = producer_of(g, x, EG_OP_Where);
        if (add >= 0) {
            // scores + mask, either order: the scores side comes from a MatMul.
            int a0 = g->nodes[add].in[0], a1 = g->nodes[add].in[1];
            double s0 = 1;
            int sn;
            int b0 = strip_scale(g, &u, a0, &s0, &sn);
            if (producer_of(g, b0, EG_OP_MatMul) >= 0) {
                x = a0;
                mask = a1;
            } else {
                x = a1;
                mask = a0;
            }
            dead[n_dead++] = add;
        } else if (wh >= 0) {
            x = g->nodes[wh].in[2];
            if ((mask = additive_from_where(g, wh, dead, &n_dead, err)) < 0)
                continue;
            added = 1;
            // The new node may have moved the node array.
            sm = &g->nodes[i];
        }
        if (mask >= 0) {
            const eg_tensor *mt = &g->values[mask].t;
            if (mt->dtype != INFERD_DTYPE_F32 || mt->rank > 4 || mt->rank < 1 ||
                mt->dims[mt->rank - 1] != Sk || (sole_consumer(g, &u, x) < 0))
                continue;
        }
        int sn;
        x = strip_scale(g, &u, x, &scale, &sn);
        if (sn >= 0)
            dead[n_dead++] = sn;
        int qk = producer_of(g, x, EG_OP_MatMul);
        if (qk < 0 || sole_consumer(g, &u, x) < 0)
            continue;
        dead[n_dead++] = qk;
        int qv = g->nodes[qk].in[0], kv = g->nodes[qk].in[1];
        int qs;
        qv = strip_scale(g, &u, qv, &scale, &qs);
        if (qs >= 0)
            dead[n_dead++] = qs;
        int64_t D = g->values[qv].t.rank == 4 ? g->values[qv].t.dims[3] : -1;
        head_view hq, hk, hvv;
        if (D <= 0 || !match_heads(g, &u, qv, P0213, heads, D, &hq))
            continue;
        if (!match_heads(g, &u, kv, P0231, heads, D, &hk)) {
            // K^T written as two transposes.
            int t2 = producer_of(g, kv, EG_OP_Transpose);
            if (t2 < 0 || !perm_is(&g->nodes[t2], P0132, 4) || sole_consumer(g, &u, kv) != qk ||
                !match_heads(g, &u, g->nodes[t2].in[0], P0213, heads, D, &hk))
                continue;
            dead[n_dead++] = t2;
        }
        int pv = sole_consumer(g, &u, sm->out[0]);
        if (pv < 0 || g->nodes[pv].op != EG_OP_MatMul || g->nodes[pv].in[0] != sm->out[0] ||
            !match_heads(g, &u, g->nodes[pv].in[1], P0213, heads, D, &hvv))
            continue;
        dead[n_dead++] = pv;
        int tc = sole_consumer(g, &u, g->nodes[pv].out[0]);
        if (tc < 0 || g->nodes[tc].op != EG_OP_Transpose || !perm_is(&g->nodes[tc], P0213, 4))
            continue;
        dead[n_dead++] = tc;
        int rs = sole_consumer(g, &u, g->nodes[tc].out[0]);
        const eg_tensor *ot = rs >= 0 ? &g->values[g->nodes[rs].out[0]].t : NULL;
        if (rs < 0 || g->nodes[rs].op != EG_OP_Reshape || ot->rank != 3 || ot->dims[0] != B ||
            ot->dims[1] != Sq || ot->dims[2] != heads * D)
            continue;
        if (g->values[hq.src].t.dims[1] != Sq || g->values[hk.src].t.dims[1] != Sk ||
            g->values[hk.src].t.dims[0] != B || g->values[hvv.src].t.dims[1] != Sk)
            continue;
        for (int k = 0; k < hq.n_nodes; k++)
            dead[n_dead++] = hq.nodes[k];
        for (int k = 0; k < hk.n_nodes; k++)
            dead[n_dead++] = hk.nodes[k];
        for (int k = 0; k < hvv.n_nodes; k++)
            dead[n_dead++] = hvv.nodes[k];
        look_through_split(g, &hq);
        look_through_split(g, &hk);
        look_through_split(g, &hvv);
        eg_attention_params *p = eg_graph_alloc(g, sizeof *p);
        if (!p) {
            rc = inferd_error_set(err, INFERD_EINTERNAL, "out of memory");
            break;
        }
        p->heads = heads;
        p->head_dim = D;
        p->q_off = hq.off;
        p->k_off = hk.off;
        p->v_off = hvv.off;
        p->scale = (float)scale;
        int out = g->nodes[rs].out[0];
        const char *name = g->nodes[qk].name;
        for (int k = 0; k < n_dead; k++)
            g->nodes[dead[k]].dead = 1;
        if ((rc = rewrite_node(g, rs, EG_OP_FusedAttention, 4, 1, p, err)) < 0)
            break;
        eg_node *fa = &g->nodes[rs];
        fa->name = name;
        fa->in[0] = hq.src;
        fa->in[1] = hk.src;
        fa->in[2] = hvv.src;
        fa->in[3] = mask;
        fa->out[0] = out;
        if ((rc = eg_plan_infer_node(g, fa, 0, err)) < 0)
            break;
        rc = uses_build(g, &u, err);
    }
    uses_free(&u);
    if (rc == 0 && added)
        rc = eg_graph_toposort(g, err);
    return rc;
}

/* ---- plan time: compute only the rows the outputs read ---- */

static int is_rowwise(eg_op op) {
    switch (op) {
    case EG_OP_FusedMatMul:
    case EG_OP_FusedLayerNorm:
    case EG_OP_FusedGelu:
    case EG_OP_Add:
    case EG_OP_Sub:
    case EG_OP_Mul:
    case EG_OP_Div:
    case EG_OP_Relu:
    case EG_OP_Tanh:
    case EG_OP_Sigmoid:
    case EG_OP_Erf:
        return 1;
    default:
        return 0;
    }
}

/* Whether input value v of a row-wise node with output shape o is broadcast across rows
 * (a constant vector), so it needs no slicing. */
static int row_broadcast(const eg_graph *g, int v) {
    return g->values[v].is_const && g->values[v].t.rank <= 1;
}

static int slice_rows(eg_graph *g, int v, int *cache_from, int *cache_to, int *n_cache,
                      inferd_error *err) {
    for (int k = 0; k < *n_cache; k++)
        if (cache_from[k] == v)
            return cache_to[k];
    int ids[4];
    for (int k = 0; k < 4; k++)
        if ((ids[k] = eg_graph_add_value(g, "", err)) < 0)
            return ids[k];
    int64_t *c = eg_graph_alloc(g, 3 * sizeof(int64_t));
    if (!c)
        return inferd_error_set(err, INFERD_EINTERNAL, "out of memory");
    c[0] = 0, c[1] = 1, c[2] = 1; // starts, ends, axes
    for (int k = 0; k < 3; k++) {
        g->values[ids[k]].t =
            (eg_tensor){.dtype = INFERD_DTYPE_I64, .rank = 1, .dims = {1}, .data = &c[k]};
        g->values[ids[k]].is_const = 1;
    }
    int sn = eg_graph_add_node(g, EG_OP_Slice, "row_slice", 4, 1, err);
    if (sn < 0)
        return sn;
    eg_node *n = &g->nodes[sn];
    n->opset = 13;
    n->in[0] = v;
    n->in[1] = ids[0];
    n->in[2] = ids[1];
    n->in[3] = ids[2];
    n->out[0] = ids[3];
    int rc = eg_plan_infer_node(g, n, 0, err);
    if (rc < 0)
        return rc;
    cache_from[*n_cache] = v;
    cache_to[(*n_cache)++] = ids[3];
    return ids[3];
}

/* A classifier reads one row of the last hidden state (Gather(h, 0, axis=1) for [CLS]).
 * Every row-wise node whose outputs only feed that row is computed for row 0 alone, and the
 * attention before them computes only its first query row: the last layer shrinks from
 * [B, S, H] to [B, 1, H]. Inputs entering the pruned region from outside are sliced. */
static int prune_rows(eg_graph *g, inferd_error *err) {
    uses u = {0};
    int rc = uses_build(g, &u, err);
    char *pruned = inferd_calloc(NULL, (size_t)g->n_nodes + 1, 1);
    int *cache_from = inferd_calloc(NULL, (size_t)g->n_nodes + 1, sizeof(int));
    int *cache_to = inferd_calloc(NULL, (size_t)g->n_nodes + 1, sizeof(int));
    int n_cache = 0, n_nodes = g->n_nodes, any = 0;
    if (!pruned || !cache_from || !cache_to)
        rc = inferd_error_set(err, INFERD_EINTERNAL, "out of memory");
    for (int r = 0; rc == 0 && r < n_nodes; r++) {
        eg_node *root = &g->nodes[r];
        if (root->dead || root->op != EG_OP_Gather || eg_node_attr_int(root, "axis", 0) != 1 ||
            root->in[0] < 0)
            continue;
        const eg_tensor *ht = &g->values[root->in[0]].t;
        double idx;
        if (ht->rank != 3 || ht->dims[1] < 2 || !const_scalar(g, root->in[1], &idx) || idx != 0)
            continue;
        // Backward pass in topological order: consumers are decided before producers.
        int found = 0;
        for (int i = r - 1; i >= 0; i--) {
            eg_node *n = &g->nodes[i];
            if (n->dead || (!is_rowwise(n->op) && n->op != EG_OP_FusedAttention) || n->n_out != 1)
                continue;
            int v = n->out[0];
            const eg_tensor *t = &g->values[v].t;
            if (v < 0 || g->values[v].is_output || t->rank != 3 || t->dims[0] != ht->dims[0] ||
                t->dims[1] != ht->dims[1])
                continue;
            int ok = 1;
            for (int k = u.start[v]; k < u.start[v + 1] && ok; k++) {
                int c = u.cons[k];
                if (g->nodes[c].dead)
                    continue;
                ok = c == r ? g->nodes[c].in[0] == v
                            : pruned[c] && g->nodes[c].op != EG_OP_FusedAttention;
            }
            if (!ok || n_uses(g, &u, v) == 0)
                continue;
            if (n->op != EG_OP_FusedAttention) {
                // Other inputs must be per-row tensors of the same shape or constant vectors.
                for (int j = 0; j < n->n_in && ok; j++) {
                    int w = n->in[j];
                    if (w < 0 || row_broadcast(g, w))
                        continue;
                    const eg_tensor *wt = &g->values[w].t;
                    ok = wt->rank == 3 && wt->dims[0] == t->dims[0] && wt->dims[1] == t->dims[1] &&
                         !(n->op == EG_OP_FusedMatMul && j == 1) &&
                         !(n->op == EG_OP_FusedLayerNorm && (j == 1 || j == 2));
                }
                if (!ok)
                    continue;
            }
            pruned[i] = 1;
            found = 1;
        }
        if (!found)
            continue;
        any = 1;
        for (int i = 0; rc == 0 && i < r; i++) {
            if (!pruned[i])
                continue;
            eg_node *n = &g->nodes[i];
            if (n->op == EG_OP_FusedAttention) {
                ((eg_attention_params *)n->params)->q_rows = 1;
            } else {
                int *in = eg_graph_alloc(g, sizeof(int) * (size_t)n->n_in);
                if (!in) {
                    rc = inferd_error_set(err, INFERD_EINTERNAL, "out of memory");
                    break;
                }
                for (int j = 0; j < n->n_in; j++) {
                    int w = n->in[j];
                    in[j] = w;
                    if (w < 0 || row_broadcast(g, w))
                        continue;
                    int p = g->values[w].producer;
                    if (p >= 0 && pruned[p])
                        continue;
                    int sv = slice_rows(g, w, cache_from, cache_to, &n_cache, err);
                    if (sv < 0) {
                        rc = sv;
                        break;
                    }
                    in[j] = sv;
                    n = &g->nodes[i]; // the node array may have moved
                }
                n->in = in;
            }
            if (rc == 0)
                rc = eg_plan_infer_node(g, &g->nodes[i], 0, err);
        }
        if (rc == 0)
            rc = eg_plan_infer_node(g, &g->nodes[r], 0, err);
        memset(pruned, 0, (size_t)n_nodes);
        eg_graph_recount(g);
        if (rc == 0)
            rc = uses_build(g, &u, err);
    }
    inferd_free(pruned);
    inferd_free(cache_from);
    inferd_free(cache_to);
    uses_free(&u);
    if (rc == 0 && any)
        rc = eg_graph_toposort(g, err);
    return rc;
}

/* ---- plan time: a [CLS]-only attention folds its keys and values ---- */

/* The dense layer (no residual, no activation) producing v, if every use of v is node user;
 * else -1. */
static int dense_only_for(const eg_graph *g, const uses *u, int v, int user) {
    int p = v >= 0 ? g->values[v].producer : -1;
    if (p < 0 || g->nodes[p].dead || g->nodes[p].op != EG_OP_FusedMatMul ||
        g->nodes[p].in[2] >= 0 || g->values[v].is_output ||
        ((const eg_matmul_params *)g->nodes[p].params)->act != EG_ACT_NONE)
        return -1;
    for (int k = u->start[v]; k < u->start[v + 1]; k++)
        if (!g->nodes[u->cons[k]].dead && u->cons[k] != user)
            return -1;
    return p;
}

/* An attention left computing only query row 0 (prune_rows) still had every row's keys and
 * values projected. When Q, K and V are dense layers over the same rows X and feed nothing
 * else, it becomes FusedClsAttention, which reads X itself: the Q layer runs on row 0 alone
 * and the K and V layers not at all (a twelfth of the peers' base model's dense work at 128
 * tokens: its last layer's Q, K and V projections). */
static int fold_cls_attention(eg_graph *g, inferd_error *err) {
    uses u = {0};
    int rc = eg_plan_remove_dead(g, err), any = 0; // a Split that fed Q, K and V, now unused
    if (rc == 0) {
        eg_graph_recount(g);
        rc = uses_build(g, &u, err);
    }
    for (int i = 0; rc == 0 && i < g->n_nodes; i++) {
        const eg_node *fa = &g->nodes[i];
        if (fa->dead || fa->op != EG_OP_FusedAttention ||
            ((const eg_attention_params *)fa->params)->q_rows != 1)
            continue;
        int mq = dense_only_for(g, &u, fa->in[0], i), mk = dense_only_for(g, &u, fa->in[1], i),
            mv = dense_only_for(g, &u, fa->in[2], i);
        if (mq < 0 || mk < 0 || mv < 0)
            continue;
        int x = g->nodes[mq].in[0];
        const eg_tensor *xt = &g->values[x].t;
        if (g->nodes[mk].in[0] != x || g->nodes[mv].in[0] != x || xt->rank != 3 ||
            xt->dtype != INFERD_DTYPE_F32 || xt->dims[1] < 2)
            continue;
        const eg_attention_params *ap = fa->params;
        eg_cls_attention_params *p = eg_graph_alloc(g, sizeof *p);
        int *q_in = eg_graph_alloc(g, sizeof(int) * (size_t)g->nodes[mq].n_in);
        if (!p || !q_in) {
            rc = inferd_error_set(err, INFERD_EINTERNAL, "out of memory");
            break;
        }
        *p = (eg_cls_attention_params){.heads = ap->heads,
                                       .head_dim = ap->head_dim,
                                       .q_off = ap->q_off,
                                       .k_off = ap->k_off,
                                       .v_off = ap->v_off,
                                       .scale = ap->scale,
                                       .wk = ((eg_matmul_params *)g->nodes[mk].params)->w,
                                       .wv = ((eg_matmul_params *)g->nodes[mv].params)->w};
        int q = fa->in[0], mask = fa->in[3], out = fa->out[0];
        int bk = g->nodes[mk].in[1], bv = g->nodes[mv].in[1];
        const char *name = fa->name;
        // The Q layer reads row 0 only (a new in array: plans share the model's node arrays).
        int one = 0, from, to, xs = slice_rows(g, x, &from, &to, &one, err);
        if (xs < 0) {
            rc = xs;
            break;
        }
        memcpy(q_in, g->nodes[mq].in, sizeof(int) * (size_t)g->nodes[mq].n_in);
        q_in[0] = xs;
        g->nodes[mq].in = q_in;
        if (mk != mq)
            g->nodes[mk].dead = 1;
        if (mv != mq && mv != mk)
            g->nodes[mv].dead = 1;
        if ((rc = rewrite_node(g, i, EG_OP_FusedClsAttention, 5, 1, p, err)) < 0)
            break;
        eg_node *ca = &g->nodes[i];
        ca->name = name;
        ca->in[0] = q;
        ca->in[1] = x;
        ca->in[2] = bk;
        ca->in[3] = bv;
        ca->in[4] = mask;
        ca->out[0] = out;
        if ((rc = eg_plan_infer_node(g, &g->nodes[mq], 0, err)) < 0 ||
            (rc = eg_plan_infer_node(g, &g->nodes[i], 0, err)) < 0)
            break;
        any = 1;
        eg_graph_recount(g);
        rc = uses_build(g, &u, err);
    }
    uses_free(&u);
    if (rc == 0 && any)
        rc = eg_graph_toposort(g, err);
    return rc;
}

int eg_fuse_plan(eg_graph *g, const eg_plan_options *opts, inferd_error *err) {
    (void)opts;
    eg_graph_recount(g);
    int rc = fuse_residual(g, err);
    if (rc == 0) {
        eg_graph_recount(g);
        rc = fuse_attention(g, err);
    }
    if (rc == 0) {
        eg_graph_recount(g);
        rc = prune_rows(g, err);
    }
    if (rc == 0) {
        eg_graph_recount(g);
        rc = fold_cls_attention(g, err);
    }
    if (rc == 0)
        eg_graph_recount(g);
    return rc;
}
