#include "engine/plan.h"

#include <stdlib.h>
#include <string.h>

#include "engine/fuse.h"
#include "util/clock.h"

/* Elements any single tensor of a plan may have; larger shapes are refused rather than
 * allocated (hostile files and absurd requests). */
#define MAX_TENSOR_ELEMS ((int64_t)1 << 31)

enum {
    VK_NONE = 0, /* not used at run time */
    VK_CONST,    /* data fixed in the plan (or the graph) */
    VK_INPUT,    /* caller's input tensor */
    VK_ARENA,    /* lives in the run's arena at offset[root] */
};

typedef struct step {
    eg_node *node;
    const eg_op_def *def;
    void *state;
    size_t scratch_off, scratch_size;
} step;

struct eg_plan {
    eg_graph *g;       /* working copy of the model graph, owned */
    size_t *min_bytes; /* per root value: at least this many bytes (padded dense rows) */
    int *kind;         /* per value */
    int *root;         /* per value: value whose storage it shares (itself unless a view) */
    int *input_of;     /* per value: graph input index for VK_INPUT roots, else -1 */
    size_t *offset;    /* per root value in the arena */
    step *steps;
    int n_steps;
    size_t arena_size;
    int threads;
    inferd_mem_account *acct;
};

static int copy_graph(const eg_graph *src, inferd_mem_account *acct, eg_graph **out,
                      inferd_error *err) {
    eg_graph *g = eg_graph_create(acct);
    if (!g)
        return inferd_error_set(err, INFERD_EINTERNAL, "out of memory creating a plan");
    g->cap_values = src->n_values + 256;
    g->cap_nodes = src->n_nodes + 64;
    g->values = inferd_malloc(acct, sizeof(eg_value) * (size_t)g->cap_values);
    g->nodes = inferd_malloc(acct, sizeof(eg_node) * (size_t)g->cap_nodes);
    if (!g->values || !g->nodes) {
        eg_graph_destroy(g);
        return inferd_error_set(err, INFERD_EINTERNAL, "out of memory creating a plan");
    }
    memcpy(g->values, src->values, sizeof(eg_value) * (size_t)src->n_values);
    memcpy(g->nodes, src->nodes, sizeof(eg_node) * (size_t)src->n_nodes);
    g->n_values = src->n_values;
    g->n_nodes = src->n_nodes;
    g->inputs = src->inputs;
    g->n_inputs = src->n_inputs;
    g->outputs = src->outputs;
    g->n_outputs = src->n_outputs;
    g->opset = src->opset;
    *out = g;
    return 0;
}

static int set_inputs(eg_graph *g, const eg_tensor *inputs, inferd_error *err) {
    for (int i = 0; i < g->n_inputs; i++) {
        eg_value *v = &g->values[g->inputs[i]];
        const eg_tensor *in = &inputs[i];
        if (in->dtype != v->t.dtype)
            return inferd_error_set(err, INFERD_EINVAL, "input '%s' must be %s, got %s", v->name,
                                    inferd_dtype_name(v->t.dtype), inferd_dtype_name(in->dtype));
        if (in->rank != v->t.rank)
            return inferd_error_set(err, INFERD_EINVAL, "input '%s' must have rank %d, got %d",
                                    v->name, v->t.rank, in->rank);
        for (int d = 0; d < in->rank; d++) {
            if (in->dims[d] < 0 || (v->t.dims[d] >= 0 && v->t.dims[d] != in->dims[d]))
                return inferd_error_set(err, INFERD_EINVAL,
                                        "input '%s' dim %d must be %lld, got %lld", v->name, d,
                                        (long long)v->t.dims[d], (long long)in->dims[d]);
        }
        int64_t n = eg_tensor_numel(in);
        if (n < 0 || n > MAX_TENSOR_ELEMS)
            return inferd_error_set(err, INFERD_ETOOLARGE, "input '%s' is too large", v->name);
        v->t = *in;
        v->t.data = NULL;
        v->is_const = 0;
    }
    return 0;
}

/* Shape and Size need only their input's shape, so they fold even when it is not constant. */
static int needs_only_shapes(eg_op op) { return op == EG_OP_Shape || op == EG_OP_Size; }

int eg_plan_infer_node(eg_graph *g, eg_node *n, int fold, inferd_error *err) {
    const eg_op_def *def = eg_op_def_get(n->op);
    char nb[160];
    if (!def || !def->infer)
        return inferd_error_set(err, INFERD_EUNSUPPORTED, "%s: op not implemented",
                                eg_node_str(n, nb, sizeof nb));
    eg_tensor in_local[16], out_local[8];
    eg_tensor *in = n->n_in <= 16 ? in_local : inferd_calloc(NULL, (size_t)n->n_in, sizeof *in);
    eg_tensor *out = n->n_out <= 8 ? out_local : inferd_calloc(NULL, (size_t)n->n_out, sizeof *out);
    int rc = 0;
    if (!in || !out) {
        rc = inferd_error_set(err, INFERD_EINTERNAL, "out of memory");
        goto done;
    }
    int all_const = 1;
    for (int j = 0; j < n->n_in; j++) {
        memset(&in[j], 0, sizeof in[j]);
        if (n->in[j] < 0)
            continue;
        eg_value *v = &g->values[n->in[j]];
        if (v->is_const && !v->t.data && (rc = eg_value_materialize(g, v, err)) < 0)
            goto done;
        in[j] = v->t;
        if (!v->is_const)
            in[j].data = NULL;
        if (!v->is_const)
            all_const = 0;
    }
    for (int j = 0; j < n->n_out; j++)
        memset(&out[j], 0, sizeof out[j]);
    if ((rc = def->infer(n, in, out, err)) < 0)
        goto done;
    for (int j = 0; j < n->n_out; j++) {
        if (n->out[j] < 0)
            continue;
        int64_t ne = eg_tensor_numel(&out[j]);
        if (ne < 0 || ne > MAX_TENSOR_ELEMS || inferd_dtype_size(out[j].dtype) == 0) {
            char tb[96];
            rc = inferd_error_set(err, INFERD_EINVAL, "%s: output %d would be %s",
                                  eg_node_str(n, nb, sizeof nb), j,
                                  eg_tensor_str(&out[j], tb, sizeof tb));
            goto done;
        }
        eg_value *v = &g->values[n->out[j]];
        v->t = out[j];
        v->t.data = NULL;
        v->is_const = 0;
    }
    // Fused ops need prepare() state to run, and only passes create them: never folded.
    if (!fold || def->prepare || !(all_const || needs_only_shapes(n->op)))
        goto done;
    // Evaluate now: every output becomes a constant of the plan, within the plan's budget
    // for constants (over it, the node runs with the plan instead). A view's first output
    // shares its input's bytes.
    const int view = (def->flags & EG_OPF_VIEW) && in[0].data;
    int64_t fold_bytes = 0;
    for (int j = view; j < n->n_out; j++)
        if (n->out[j] >= 0)
            fold_bytes += eg_tensor_nbytes(&out[j]);
    if (g->fold_cap > 0 && g->folded + fold_bytes > g->fold_cap)
        goto done;
    g->folded += fold_bytes;
    for (int j = 0; j < n->n_out; j++) {
        if (n->out[j] < 0)
            continue;
        if (j == 0 && view) {
            out[0].data = in[0].data;
            continue;
        }
        int64_t nbytes = eg_tensor_nbytes(&out[j]);
        out[j].data = eg_graph_alloc(g, (size_t)nbytes);
        if (!out[j].data) {
            rc = inferd_error_set(err, INFERD_EINTERNAL, "out of memory folding constants");
            goto done;
        }
    }
    eg_run_ctx ctx = {.threads = 1};
    void *scratch = NULL;
    if (def->scratch) {
        ctx.scratch_size = def->scratch(n, in, out, 1);
        if (ctx.scratch_size && !(scratch = inferd_malloc(NULL, ctx.scratch_size))) {
            rc = inferd_error_set(err, INFERD_EINTERNAL, "out of memory folding constants");
            goto done;
        }
        ctx.scratch = scratch;
    }
    int skip_run = (def->flags & EG_OPF_VIEW) && n->n_out == 1;
    if (!skip_run && (rc = def->run(n, in, out, &ctx, err)) < 0) {
        inferd_free(scratch);
        goto done;
    }
    inferd_free(scratch);
    for (int j = 0; j < n->n_out; j++) {
        if (n->out[j] < 0)
            continue;
        eg_value *v = &g->values[n->out[j]];
        v->t.data = out[j].data;
        v->is_const = 1;
    }
    n->dead = 1;
done:
    if (in != in_local)
        inferd_free(in);
    if (out != out_local)
        inferd_free(out);
    return rc;
}

/* Marks nodes whose outputs nobody needs as dead. */
int eg_plan_remove_dead(eg_graph *g, inferd_error *err) {
    char *need = inferd_calloc(g->acct, (size_t)g->n_values + 1, 1);
    if (!need)
        return inferd_error_set(err, INFERD_EINTERNAL, "out of memory");
    for (int i = 0; i < g->n_outputs; i++)
        need[g->outputs[i]] = 1;
    for (int i = g->n_nodes - 1; i >= 0; i--) {
        eg_node *n = &g->nodes[i];
        if (n->dead)
            continue;
        int used = 0;
        for (int j = 0; j < n->n_out && !used; j++)
            used = n->out[j] >= 0 && need[n->out[j]];
        if (!used) {
            n->dead = 1;
            continue;
        }
        for (int j = 0; j < n->n_in; j++)
            if (n->in[j] >= 0)
                need[n->in[j]] = 1;
    }
    inferd_free(need);
    return 0;
}

typedef struct {
    int value; /* root value, or -1 for scratch */
    int step;  /* for scratch */
    size_t size;
    int start, end;
    size_t off;
} block;

static int cmp_block(const void *a, const void *b) {
    const block *x = a, *y = b;
    if (x->size != y->size)
        return x->size < y->size ? 1 : -1;
    return x->start - y->start;
}

/* Places blocks: largest first, each at the lowest offset free over its lifetime. */
static size_t place_blocks(block *bl, int n) {
    qsort(bl, (size_t)n, sizeof *bl, cmp_block);
    size_t total = 0;
    for (int i = 0; i < n; i++) {
        size_t off = 0;
        for (int again = 1; again;) {
            again = 0;
            for (int j = 0; j < i; j++) {
                if (bl[j].end < bl[i].start || bl[i].end < bl[j].start)
                    continue;
                if (off < bl[j].off + bl[j].size && bl[j].off < off + bl[i].size) {
                    off = bl[j].off + bl[j].size;
                    again = 1;
                }
            }
        }
        bl[i].off = off;
        if (off + bl[i].size > total)
            total = off + bl[i].size;
    }
    return total;
}

static size_t round64(size_t n) { return (n + 63) & ~(size_t)63; }

/* Where each value's bytes live: its root (views share their input's), and whether that is
 * a constant, a caller's input or the arena. */
static int plan_roots(eg_plan *p, inferd_error *err) {
    eg_graph *g = p->g;
    int nv = g->n_values;
    p->kind = inferd_calloc(p->acct, (size_t)nv, sizeof(int));
    p->root = inferd_calloc(p->acct, (size_t)nv, sizeof(int));
    p->input_of = inferd_calloc(p->acct, (size_t)nv, sizeof(int));
    p->offset = inferd_calloc(p->acct, (size_t)nv, sizeof(size_t));
    p->min_bytes = inferd_calloc(p->acct, (size_t)nv, sizeof(size_t));
    if (!p->kind || !p->root || !p->input_of || !p->offset || !p->min_bytes)
        return inferd_error_set(err, INFERD_EINTERNAL, "out of memory planning memory");
    for (int v = 0; v < nv; v++) {
        p->root[v] = v;
        p->input_of[v] = -1;
        p->kind[v] = g->values[v].is_const ? VK_CONST : VK_NONE;
    }
    for (int i = 0; i < g->n_inputs; i++) {
        p->kind[g->inputs[i]] = VK_INPUT;
        p->input_of[g->inputs[i]] = i;
    }
    for (int s = 0; s < p->n_steps; s++) {
        eg_node *n = p->steps[s].node;
        for (int j = 0; j < n->n_out; j++) {
            int v = n->out[j];
            if (v < 0)
                continue;
            if (j == 0 && (p->steps[s].def->flags & EG_OPF_VIEW) && n->in[0] >= 0) {
                int r = p->root[n->in[0]];
                p->root[v] = r;
                p->kind[v] = p->kind[r];
                p->input_of[v] = p->input_of[r];
                continue;
            }
            p->kind[v] = VK_ARENA;
        }
    }
    return 0;
}

/* Rows a dense layer runs on: a few row counts serve every batch shape, so primitives are
 * created a few times per process rather than once per shape (3-5 ms each). */
static int64_t padded_rows(int64_t m) {
    int64_t q = m <= 64 ? 8 : m <= 256 ? 16 : m <= 1024 ? 32 : 64;
    return (m + q - 1) / q * q;
}

/* Dense layers whose input, output and residual all live in the arena run on padded rows;
 * their buffers are made large enough. Rows past the real ones hold leftovers, which only
 * ever reach other padded rows. */
static void plan_row_padding(eg_plan *p) {
    eg_graph *g = p->g;
    for (int s = 0; s < p->n_steps; s++) {
        eg_node *n = p->steps[s].node;
        if (n->op != EG_OP_FusedMatMul || n->in[0] < 0 || n->out[0] < 0)
            continue;
        const eg_tensor *x = &g->values[n->in[0]].t, *y = &g->values[n->out[0]].t;
        int64_t K = x->rank ? x->dims[x->rank - 1] : 0, N = y->rank ? y->dims[y->rank - 1] : 0;
        int64_t M = K ? eg_tensor_numel(x) / K : 0;
        int rx = p->root[n->in[0]], ry = p->root[n->out[0]];
        int rr = n->in[2] >= 0 ? p->root[n->in[2]] : -1;
        if (M <= 0 || p->kind[rx] != VK_ARENA || p->kind[ry] != VK_ARENA ||
            (rr >= 0 && p->kind[rr] != VK_ARENA))
            continue;
        int64_t mp = padded_rows(M);
        n->row_pad = mp;
        size_t xb = (size_t)(mp * K) * sizeof(float), yb = (size_t)(mp * N) * sizeof(float);
        if (p->min_bytes[rx] < xb)
            p->min_bytes[rx] = xb;
        if (p->min_bytes[ry] < yb)
            p->min_bytes[ry] = yb;
        if (rr >= 0 && p->min_bytes[rr] < yb)
            p->min_bytes[rr] = yb;
    }
}

static int plan_memory(eg_plan *p, inferd_error *err) {
    eg_graph *g = p->g;
    int nv = g->n_values;
    int *start = inferd_calloc(NULL, (size_t)nv, sizeof(int));
    int *end = inferd_calloc(NULL, (size_t)nv, sizeof(int));
    block *bl = inferd_calloc(NULL, (size_t)(nv + p->n_steps + 1), sizeof(block));
    int rc = 0;
    if (!start || !end || !bl) {
        rc = inferd_error_set(err, INFERD_EINTERNAL, "out of memory planning memory");
        goto out;
    }
    for (int v = 0; v < nv; v++) {
        start[v] = -1;
        end[v] = -1;
    }
    for (int s = 0; s < p->n_steps; s++) {
        eg_node *n = p->steps[s].node;
        for (int j = 0; j < n->n_out; j++) {
            int v = n->out[j];
            if (v < 0 || p->root[v] != v || p->kind[v] != VK_ARENA)
                continue;
            start[v] = s;
            end[v] = s;
        }
        for (int j = 0; j < n->n_in; j++) {
            int v = n->in[j];
            if (v >= 0 && end[p->root[v]] < s)
                end[p->root[v]] = s;
        }
    }
    for (int i = 0; i < g->n_outputs; i++)
        end[p->root[g->outputs[i]]] = p->n_steps;
    int nb = 0;
    for (int v = 0; v < nv; v++) {
        if (p->kind[v] != VK_ARENA || p->root[v] != v)
            continue;
        size_t bytes = (size_t)eg_tensor_nbytes(&g->values[v].t);
        if (bytes < p->min_bytes[v])
            bytes = p->min_bytes[v];
        bl[nb++] = (block){.value = v, .size = round64(bytes), .start = start[v], .end = end[v]};
    }
    for (int s = 0; s < p->n_steps; s++)
        if (p->steps[s].scratch_size)
            bl[nb++] = (block){.value = -1,
                               .step = s,
                               .size = round64(p->steps[s].scratch_size),
                               .start = s,
                               .end = s};
    p->arena_size = place_blocks(bl, nb);
    for (int i = 0; i < nb; i++) {
        if (bl[i].value >= 0)
            p->offset[bl[i].value] = bl[i].off;
        else
            p->steps[bl[i].step].scratch_off = bl[i].off;
    }
out:
    inferd_free(start);
    inferd_free(end);
    inferd_free(bl);
    return rc;
}

/* Fills in[] / out[] tensors of node n with shapes (and data where known at plan time). */
static void node_tensors(const eg_graph *g, const eg_node *n, eg_tensor *in, eg_tensor *out) {
    for (int j = 0; j < n->n_in; j++) {
        memset(&in[j], 0, sizeof in[j]);
        if (n->in[j] >= 0) {
            in[j] = g->values[n->in[j]].t;
            if (!g->values[n->in[j]].is_const)
                in[j].data = NULL;
        }
    }
    for (int j = 0; j < n->n_out; j++) {
        memset(&out[j], 0, sizeof out[j]);
        if (n->out[j] >= 0) {
            out[j] = g->values[n->out[j]].t;
            out[j].data = NULL;
        }
    }
}

int eg_plan_create(const eg_graph *src, const eg_tensor *inputs, const eg_plan_options *opts,
                   inferd_mem_account *acct, eg_plan **out, inferd_error *err) {
    *out = NULL;
    eg_plan *p = inferd_calloc(acct, 1, sizeof *p);
    if (!p)
        return inferd_error_set(err, INFERD_EINTERNAL, "out of memory creating a plan");
    p->acct = acct;
    p->threads = opts->threads;
    int rc = copy_graph(src, acct, &p->g, err);
    if (rc < 0)
        goto fail;
    eg_graph *g = p->g;
    g->fold_cap = opts->max_fold_bytes;
    if ((rc = set_inputs(g, inputs, err)) < 0)
        goto fail;
    for (int i = 0; i < g->n_nodes; i++) {
        if (g->nodes[i].dead)
            continue;
        if ((rc = eg_plan_infer_node(g, &g->nodes[i], 1, err)) < 0)
            goto fail;
    }
    if (opts->fuse && (rc = eg_fuse_plan(g, opts, err)) < 0)
        goto fail;
    if ((rc = eg_plan_remove_dead(g, err)) < 0)
        goto fail;

    int live = 0;
    for (int i = 0; i < g->n_nodes; i++)
        live += !g->nodes[i].dead;
    p->steps = inferd_calloc(acct, (size_t)(live ? live : 1), sizeof(step));
    if (!p->steps) {
        rc = inferd_error_set(err, INFERD_EINTERNAL, "out of memory creating a plan");
        goto fail;
    }
    for (int i = 0; i < g->n_nodes; i++) {
        eg_node *n = &g->nodes[i];
        if (n->dead)
            continue;
        step *s = &p->steps[p->n_steps++];
        s->node = n;
        s->def = eg_op_def_get(n->op);
    }
    if ((rc = plan_roots(p, err)) < 0)
        goto fail;
    plan_row_padding(p);
    // Prepare kernels (oneDNN primitives) and learn scratch sizes.
    for (int i = 0; i < p->n_steps; i++) {
        step *s = &p->steps[i];
        eg_node *n = s->node;
        eg_tensor in[64], outs[16];
        if (n->n_in > 64 || n->n_out > 16) {
            rc = inferd_error_set(err, INFERD_EUNSUPPORTED, "node '%s' has too many inputs",
                                  n->name);
            goto fail;
        }
        node_tensors(g, n, in, outs);
        if (s->def->prepare &&
            (rc = s->def->prepare(n, in, outs, opts->threads, opts->model_ctx, &s->state, err)) < 0)
            goto fail;
        if (s->def->state_scratch)
            s->scratch_size = s->def->state_scratch(n, s->state);
        else if (s->def->scratch)
            s->scratch_size = s->def->scratch(n, in, outs, opts->threads);
    }
    if ((rc = plan_memory(p, err)) < 0)
        goto fail;
    // The graph copy no longer grows: give back its spare room (a model keeps dozens of plans).
    if (g->cap_values > g->n_values) {
        eg_value *v = inferd_realloc(acct, g->values, sizeof(eg_value) * (size_t)g->n_values);
        if (v) {
            g->values = v;
            g->cap_values = g->n_values;
        }
    }
    // Steps point into the nodes: they follow them (prepared kernel states hold no node).
    int *at = g->cap_nodes > g->n_nodes
                  ? inferd_malloc(NULL, sizeof(int) * (size_t)(p->n_steps ? p->n_steps : 1))
                  : NULL;
    if (at) {
        for (int i = 0; i < p->n_steps; i++)
            at[i] = (int)(p->steps[i].node - g->nodes);
        eg_node *n = inferd_realloc(acct, g->nodes, sizeof(eg_node) * (size_t)g->n_nodes);
        if (n) {
            g->nodes = n;
            g->cap_nodes = g->n_nodes;
            for (int i = 0; i < p->n_steps; i++)
                p->steps[i].node = &n[at[i]];
        }
        inferd_free(at);
    }
    *out = p;
    return 0;
fail:
    eg_plan_destroy(p);
    return rc;
}

void eg_plan_destroy(eg_plan *p) {
    if (!p)
        return;
    for (int i = 0; i < p->n_steps; i++)
        if (p->steps[i].state && p->steps[i].def->release)
            p->steps[i].def->release(p->steps[i].state);
    inferd_free(p->steps);
    inferd_free(p->kind);
    inferd_free(p->root);
    inferd_free(p->input_of);
    inferd_free(p->offset);
    inferd_free(p->min_bytes);
    eg_graph_destroy(p->g);
    inferd_free(p);
}

size_t eg_plan_arena_size(const eg_plan *p) { return p->arena_size; }

int64_t eg_plan_memory(const eg_plan *p) {
    (void)p;
    return 0; // counted through the account the plan allocates from
}

int eg_plan_step_count(const eg_plan *p) { return p->n_steps; }

eg_op eg_plan_step_op(const eg_plan *p, int i) { return p->steps[i].node->op; }

static void *value_data(const eg_plan *p, int v, const eg_tensor *inputs, char *arena) {
    int r = p->root[v];
    switch (p->kind[r]) {
    case VK_CONST:
        return p->g->values[r].t.data;
    case VK_INPUT:
        return inputs[p->input_of[r]].data;
    case VK_ARENA:
        return arena + p->offset[r];
    default:
        return NULL;
    }
}

int eg_plan_run(const eg_plan *p, const eg_tensor *inputs, void *arena, const eg_run_info *info,
                inferd_tensor *outputs, int threads, eg_profile_entry *profile, inferd_error *err) {
    const eg_graph *g = p->g;
    eg_tensor in[64], out[16];
    for (int i = 0; i < p->n_steps; i++) {
        const step *s = &p->steps[i];
        const eg_node *n = s->node;
        for (int j = 0; j < n->n_in; j++) {
            memset(&in[j], 0, sizeof in[j]);
            if (n->in[j] >= 0) {
                in[j] = g->values[n->in[j]].t;
                in[j].data = value_data(p, n->in[j], inputs, arena);
            }
        }
        for (int j = 0; j < n->n_out; j++) {
            memset(&out[j], 0, sizeof out[j]);
            if (n->out[j] >= 0) {
                out[j] = g->values[n->out[j]].t;
                out[j].data = value_data(p, n->out[j], inputs, arena);
            }
        }
        if ((s->def->flags & EG_OPF_VIEW) && n->n_out == 1)
            continue;
        eg_run_ctx ctx = {.threads = threads,
                          .scratch = s->scratch_size ? (char *)arena + s->scratch_off : NULL,
                          .scratch_size = s->scratch_size,
                          .state = s->state,
                          .info = info};
        int64_t t0 = profile ? inferd_now_ns() : 0;
        int rc = s->def->run(n, in, out, &ctx, err);
        if (rc < 0)
            return rc;
        if (profile) {
            profile[n->op].ms += (double)(inferd_now_ns() - t0) / 1e6;
            profile[n->op].calls++;
        }
    }
    for (int i = 0; i < g->n_outputs; i++) {
        int v = g->outputs[i];
        const eg_tensor *t = &g->values[v].t;
        int64_t nbytes = eg_tensor_nbytes(t);
        inferd_tensor *o = &outputs[i];
        memset(o, 0, sizeof *o);
        o->dtype = t->dtype;
        o->rank = t->rank;
        memcpy(o->dims, t->dims, sizeof(int64_t) * (size_t)t->rank);
        o->nbytes = (size_t)nbytes;
        o->data = inferd_malloc(NULL, o->nbytes);
        if (!o->data) {
            for (int k = 0; k < i; k++) {
                inferd_free(outputs[k].data);
                outputs[k].data = NULL;
            }
            return inferd_error_set(err, INFERD_EINTERNAL, "out of memory for outputs");
        }
        const void *src = value_data(p, v, inputs, arena);
        if (nbytes)
            memcpy(o->data, src, o->nbytes);
    }
    return 0;
}
