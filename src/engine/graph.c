#include "engine/graph.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "engine/ops.h"

/* Arena blocks: a linked list of big blocks carved by a bump pointer. */
typedef struct eg_arena_block {
    struct eg_arena_block *next;
    size_t used, cap;
    char data[];
} eg_arena_block;

#define ARENA_BLOCK (64 * 1024)

int64_t eg_tensor_numel(const eg_tensor *t) { return inferd_tensor_numel(t->rank, t->dims); }

int64_t eg_tensor_nbytes(const eg_tensor *t) {
    int64_t n = eg_tensor_numel(t);
    int64_t es = (int64_t)inferd_dtype_size(t->dtype);
    if (n < 0 || es == 0 || n > INT64_MAX / es)
        return -1;
    return n * es;
}

const char *eg_tensor_str(const eg_tensor *t, char *buf, size_t n) {
    size_t len = (size_t)snprintf(buf, n, "%s[", inferd_dtype_name(t->dtype));
    for (int i = 0; i < t->rank && len < n; i++)
        len += (size_t)snprintf(buf + len, n - len, "%s%" PRId64, i ? "," : "", t->dims[i]);
    if (len < n)
        snprintf(buf + len, n - len, "]");
    return buf;
}

int64_t eg_tensor_get_i64(const eg_tensor *t, int64_t i) {
    const void *d = t->data;
    switch (t->dtype) {
    case INFERD_DTYPE_I64:
        return ((const int64_t *)d)[i];
    case INFERD_DTYPE_I32:
        return ((const int32_t *)d)[i];
    case INFERD_DTYPE_I16:
        return ((const int16_t *)d)[i];
    case INFERD_DTYPE_I8:
        return ((const int8_t *)d)[i];
    case INFERD_DTYPE_U8:
    case INFERD_DTYPE_BOOL:
        return ((const uint8_t *)d)[i];
    case INFERD_DTYPE_U16:
        return ((const uint16_t *)d)[i];
    case INFERD_DTYPE_U32:
        return ((const uint32_t *)d)[i];
    case INFERD_DTYPE_U64:
        return (int64_t)((const uint64_t *)d)[i];
    case INFERD_DTYPE_F32:
        return (int64_t)((const float *)d)[i];
    case INFERD_DTYPE_F64:
        return (int64_t)((const double *)d)[i];
    default:
        return 0;
    }
}

double eg_tensor_get_f64(const eg_tensor *t, int64_t i) {
    switch (t->dtype) {
    case INFERD_DTYPE_F32:
        return ((const float *)t->data)[i];
    case INFERD_DTYPE_F64:
        return ((const double *)t->data)[i];
    case INFERD_DTYPE_U64:
        return (double)((const uint64_t *)t->data)[i];
    default:
        return (double)eg_tensor_get_i64(t, i);
    }
}

eg_graph *eg_graph_create(inferd_mem_account *acct) {
    eg_graph *g = inferd_calloc(acct, 1, sizeof *g);
    if (g)
        g->acct = acct;
    return g;
}

void eg_graph_destroy(eg_graph *g) {
    if (!g)
        return;
    for (eg_arena_block *b = g->arena, *next; b; b = next) {
        next = b->next;
        inferd_free(b);
    }
    inferd_free(g->values);
    inferd_free(g->nodes);
    inferd_free(g);
}

void *eg_graph_alloc(eg_graph *g, size_t n) {
    if (inferd_alloc_injected_failure())
        return NULL;
    n = (n + 63) & ~(size_t)63;
    eg_arena_block *b = g->arena;
    if (!b || b->cap - b->used < n) {
        size_t cap = n > ARENA_BLOCK / 2 ? n : ARENA_BLOCK;
        eg_arena_block *nb = inferd_malloc(g->acct, sizeof *nb + cap + 64);
        if (!nb)
            return NULL;
        nb->cap = cap;
        // Start data on a 64-byte boundary.
        nb->used = (64 - ((uintptr_t)nb->data & 63)) & 63;
        nb->cap += nb->used;
        if (n > ARENA_BLOCK / 2 && b) {
            // Keep filling the current block; put the big one behind it.
            nb->next = b->next;
            b->next = nb;
        } else {
            nb->next = b;
            g->arena = nb;
        }
        b = nb;
    }
    void *p = b->data + b->used;
    b->used += n;
    memset(p, 0, n);
    return p;
}

char *eg_graph_strdup(eg_graph *g, const char *s) {
    size_t n = strlen(s) + 1;
    char *d = eg_graph_alloc(g, n);
    if (d)
        memcpy(d, s, n);
    return d;
}

int eg_graph_add_value(eg_graph *g, const char *name, inferd_error *err) {
    if (g->n_values == g->cap_values) {
        int cap = g->cap_values ? g->cap_values * 2 : 64;
        eg_value *v = inferd_realloc(g->acct, g->values, (size_t)cap * sizeof *v);
        if (!v)
            return inferd_error_set(err, INFERD_EINTERNAL, "out of memory adding a value");
        g->values = v;
        g->cap_values = cap;
    }
    eg_value *v = &g->values[g->n_values];
    memset(v, 0, sizeof *v);
    v->name = eg_graph_strdup(g, name ? name : "");
    if (!v->name)
        return inferd_error_set(err, INFERD_EINTERNAL, "out of memory adding a value");
    v->producer = -1;
    return g->n_values++;
}

int eg_graph_find_value(const eg_graph *g, const char *name) {
    for (int i = g->n_values - 1; i >= 0; i--)
        if (strcmp(g->values[i].name, name) == 0)
            return i;
    return -1;
}

int eg_graph_add_node(eg_graph *g, eg_op op, const char *name, int n_in, int n_out,
                      inferd_error *err) {
    if (n_in < 0 || n_out < 0 || n_in > 4096 || n_out > 4096)
        return inferd_error_set(err, INFERD_EINVAL, "node '%s' has %d inputs and %d outputs",
                                name ? name : "", n_in, n_out);
    if (g->n_nodes == g->cap_nodes) {
        int cap = g->cap_nodes ? g->cap_nodes * 2 : 64;
        eg_node *nn = inferd_realloc(g->acct, g->nodes, (size_t)cap * sizeof *nn);
        if (!nn)
            return inferd_error_set(err, INFERD_EINTERNAL, "out of memory adding a node");
        g->nodes = nn;
        g->cap_nodes = cap;
    }
    eg_node *n = &g->nodes[g->n_nodes];
    memset(n, 0, sizeof *n);
    n->op = op;
    n->name = eg_graph_strdup(g, name ? name : "");
    n->op_type = eg_op_name(op);
    n->opset = g->opset;
    n->n_in = n_in;
    n->n_out = n_out;
    n->in = eg_graph_alloc(g, sizeof(int) * (size_t)(n_in ? n_in : 1));
    n->out = eg_graph_alloc(g, sizeof(int) * (size_t)(n_out ? n_out : 1));
    if (!n->name || !n->in || !n->out)
        return inferd_error_set(err, INFERD_EINTERNAL, "out of memory adding a node");
    for (int i = 0; i < n_in; i++)
        n->in[i] = -1;
    for (int i = 0; i < n_out; i++)
        n->out[i] = -1;
    return g->n_nodes++;
}

void eg_graph_recount(eg_graph *g) {
    for (int i = 0; i < g->n_values; i++) {
        g->values[i].n_consumers = 0;
        g->values[i].producer = -1;
        g->values[i].is_output = 0;
    }
    for (int i = 0; i < g->n_outputs; i++)
        g->values[g->outputs[i]].is_output = 1;
    for (int i = 0; i < g->n_nodes; i++) {
        eg_node *n = &g->nodes[i];
        if (n->dead)
            continue;
        for (int j = 0; j < n->n_in; j++)
            if (n->in[j] >= 0)
                g->values[n->in[j]].n_consumers++;
        for (int j = 0; j < n->n_out; j++)
            if (n->out[j] >= 0)
                g->values[n->out[j]].producer = i;
    }
}

int eg_graph_toposort(eg_graph *g, inferd_error *err) {
    int n = g->n_nodes;
    int rc = 0;
    // ready[v]: value v is available (input, constant, or produced by an emitted node).
    char *ready = inferd_calloc(g->acct, (size_t)g->n_values + 1, 1);
    char *done = inferd_calloc(g->acct, (size_t)n + 1, 1);
    eg_node *sorted = inferd_malloc(g->acct, sizeof(eg_node) * (size_t)(n ? n : 1));
    if (!ready || !done || !sorted) {
        rc = inferd_error_set(err, INFERD_EINTERNAL, "out of memory sorting the graph");
        goto out;
    }
    for (int v = 0; v < g->n_values; v++)
        ready[v] = (char)g->values[v].is_const;
    for (int i = 0; i < g->n_inputs; i++)
        ready[g->inputs[i]] = 1;
    // Which values have a producer at all: a value read but never produced, never an input
    // and never constant is a dangling name.
    char *produced = inferd_calloc(g->acct, (size_t)g->n_values + 1, 1);
    if (!produced) {
        rc = inferd_error_set(err, INFERD_EINTERNAL, "out of memory sorting the graph");
        goto out;
    }
    for (int i = 0; i < n; i++) {
        eg_node *nd = &g->nodes[i];
        if (nd->dead)
            continue;
        for (int j = 0; j < nd->n_out; j++)
            if (nd->out[j] >= 0) {
                if (produced[nd->out[j]] || ready[nd->out[j]]) {
                    char b[160];
                    rc = inferd_error_set(err, INFERD_EINVAL,
                                          "%s writes value '%s', which already has a producer",
                                          eg_node_str(nd, b, sizeof b), g->values[nd->out[j]].name);
                    inferd_free(produced);
                    goto out;
                }
                produced[nd->out[j]] = 1;
            }
    }
    for (int i = 0; i < n; i++) {
        eg_node *nd = &g->nodes[i];
        if (nd->dead)
            continue;
        for (int j = 0; j < nd->n_in; j++) {
            int v = nd->in[j];
            if (v >= 0 && !ready[v] && !produced[v]) {
                char b[160];
                rc = inferd_error_set(err, INFERD_EINVAL,
                                      "%s reads '%s', which no node, input or initializer "
                                      "provides",
                                      eg_node_str(nd, b, sizeof b), g->values[v].name);
                inferd_free(produced);
                goto out;
            }
        }
    }
    inferd_free(produced);
    int emitted = 0, live = 0;
    for (int i = 0; i < n; i++)
        live += !g->nodes[i].dead;
    // Repeated sweeps keep the file's order where it is already topological (the common
    // case costs one sweep).
    for (int progress = 1; progress && emitted < live;) {
        progress = 0;
        for (int i = 0; i < n; i++) {
            eg_node *nd = &g->nodes[i];
            if (nd->dead || done[i])
                continue;
            int ok = 1;
            for (int j = 0; j < nd->n_in && ok; j++)
                if (nd->in[j] >= 0 && !ready[nd->in[j]])
                    ok = 0;
            if (!ok)
                continue;
            for (int j = 0; j < nd->n_out; j++)
                if (nd->out[j] >= 0)
                    ready[nd->out[j]] = 1;
            done[i] = 1;
            sorted[emitted++] = *nd;
            progress = 1;
        }
    }
    if (emitted < live) {
        for (int i = 0; i < n; i++)
            if (!g->nodes[i].dead && !done[i]) {
                char b[160];
                rc = inferd_error_set(err, INFERD_EINVAL, "the graph has a cycle through %s",
                                      eg_node_str(&g->nodes[i], b, sizeof b));
                break;
            }
        goto out;
    }
    memcpy(g->nodes, sorted, sizeof(eg_node) * (size_t)emitted);
    g->n_nodes = emitted;
    eg_graph_recount(g);
out:
    inferd_free(ready);
    inferd_free(done);
    inferd_free(sorted);
    return rc;
}

int eg_value_materialize(eg_graph *g, eg_value *v, inferd_error *err) {
    if (v->t.data || !v->file_data)
        return 0;
    int64_t nb = eg_tensor_nbytes(&v->t);
    if (nb < 0)
        return inferd_error_set(err, INFERD_EINVAL, "constant '%s' has an invalid size", v->name);
    void *d = eg_graph_alloc(g, (size_t)nb);
    if (!d)
        return inferd_error_set(err, INFERD_EINTERNAL, "out of memory copying constant '%s'",
                                v->name);
    memcpy(d, v->file_data, (size_t)nb);
    v->t.data = d;
    return 0;
}

const eg_attr *eg_node_attr(const eg_node *n, const char *name) {
    for (int i = 0; i < n->n_attr; i++)
        if (strcmp(n->attr[i].name, name) == 0)
            return &n->attr[i];
    return NULL;
}

int64_t eg_node_attr_int(const eg_node *n, const char *name, int64_t dflt) {
    const eg_attr *a = eg_node_attr(n, name);
    return a && a->type == EG_ATTR_TYPE_INT ? a->i : dflt;
}

float eg_node_attr_float(const eg_node *n, const char *name, float dflt) {
    const eg_attr *a = eg_node_attr(n, name);
    return a && a->type == EG_ATTR_TYPE_FLOAT ? a->f : dflt;
}

const char *eg_node_attr_string(const eg_node *n, const char *name, const char *dflt) {
    const eg_attr *a = eg_node_attr(n, name);
    return a && a->type == EG_ATTR_TYPE_STRING ? a->s : dflt;
}

const char *eg_node_str(const eg_node *n, char *buf, size_t size) {
    snprintf(buf, size, "node '%.80s' (%.40s)", n->name, n->op_type ? n->op_type : "?");
    return buf;
}

#define EG_OP_NAME_(name) #name,
static const char *const op_names[] = {"Unknown",
                                       EG_STANDARD_OPS(EG_OP_NAME_) EG_FUSED_OPS(EG_OP_NAME_)};
#undef EG_OP_NAME_

const char *eg_op_name(eg_op op) {
    if ((int)op < 0 || op >= EG_OP_COUNT_)
        return "Unknown";
    return op_names[op];
}

eg_op eg_op_from_onnx(const char *domain, const char *op_type) {
    if (domain && domain[0] && strcmp(domain, "ai.onnx") != 0)
        return EG_OP_UNKNOWN;
    for (int i = 1; i < EG_OP_FUSED_FIRST_; i++)
        if (strcmp(op_names[i], op_type) == 0)
            return (eg_op)i;
    return EG_OP_UNKNOWN;
}
