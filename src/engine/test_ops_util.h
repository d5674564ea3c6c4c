/* test_ops_util.h: helpers shared by the op unit tests (test_ops*.c). A tcase is one node
 * built by hand in its own graph, with input tensors, attributes and output buffers; the
 * helpers run infer and run on it exactly as the planner would, and compare outputs printing
 * both values on any mismatch. Expected values in the tests were computed offline with numpy
 * or torch (each test says how). */
#ifndef INFERD_ENGINE_TEST_OPS_UTIL_H
#define INFERD_ENGINE_TEST_OPS_UTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "engine/graph.h"
#include "engine/ops.h"

#define TC_FN static __attribute__((unused))
#define TC_MAX_IO 16

typedef struct tcase {
    eg_graph *g;
    int node;
    eg_tensor in[TC_MAX_IO];
    eg_tensor out[TC_MAX_IO];
    void *scratch;
    size_t scratch_size;
    int threads;
    inferd_error err;
} tcase;

#define DIMS(...) ((const int64_t[]){__VA_ARGS__})
#define F32S(...) ((const float[]){__VA_ARGS__})
#define F64S(...) ((const double[]){__VA_ARGS__})
#define I64S(...) ((const int64_t[]){__VA_ARGS__})
#define I32S(...) ((const int32_t[]){__VA_ARGS__})
#define BOOLS(...) ((const uint8_t[]){__VA_ARGS__})

static inline eg_node *tc_node(tcase *t) { return &t->g->nodes[t->node]; }

/* A node of op at opset with n_in inputs and n_out outputs, all present; inputs still need
 * tc_in. */
TC_FN tcase *tc_new(eg_op op, int opset, int n_in, int n_out) {
    tcase *t = calloc(1, sizeof *t);
    assert_non_null(t);
    t->g = eg_graph_create(NULL);
    assert_non_null(t->g);
    t->g->opset = opset;
    t->threads = 1;
    t->node = eg_graph_add_node(t->g, op, "n", n_in, n_out, &t->err);
    assert_in_range(t->node, 0, INT32_MAX);
    eg_node *n = tc_node(t);
    n->attr = eg_graph_alloc(t->g, sizeof(eg_attr) * 16);
    for (int i = 0; i < n_in; i++) {
        char name[16];
        snprintf(name, sizeof name, "in%d", i);
        n->in[i] = eg_graph_add_value(t->g, name, &t->err);
    }
    for (int j = 0; j < n_out; j++) {
        char name[16];
        snprintf(name, sizeof name, "out%d", j);
        n->out[j] = eg_graph_add_value(t->g, name, &t->err);
    }
    return t;
}

TC_FN void tc_free(tcase *t) {
    for (int j = 0; j < TC_MAX_IO; j++)
        inferd_free(t->out[j].data);
    inferd_free(t->scratch);
    eg_graph_destroy(t->g);
    free(t);
}

static inline eg_attr *tc_attr(tcase *t, const char *name, eg_attr_type type) {
    eg_node *n = tc_node(t);
    assert_in_range(n->n_attr, 0, 15);
    eg_attr *a = &n->attr[n->n_attr++];
    a->name = eg_graph_strdup(t->g, name);
    a->type = type;
    return a;
}

TC_FN void tc_attr_int(tcase *t, const char *name, int64_t v) {
    tc_attr(t, name, EG_ATTR_TYPE_INT)->i = v;
}

TC_FN void tc_attr_float(tcase *t, const char *name, float v) {
    tc_attr(t, name, EG_ATTR_TYPE_FLOAT)->f = v;
}

TC_FN void tc_attr_string(tcase *t, const char *name, const char *s) {
    eg_attr *a = tc_attr(t, name, EG_ATTR_TYPE_STRING);
    a->s = eg_graph_strdup(t->g, s);
    a->s_len = strlen(s);
}

TC_FN void tc_attr_ints(tcase *t, const char *name, int count, const int64_t *v) {
    eg_attr *a = tc_attr(t, name, EG_ATTR_TYPE_INTS);
    a->n = count;
    a->ints = eg_graph_alloc(t->g, sizeof(int64_t) * (size_t)(count ? count : 1));
    memcpy(a->ints, v, sizeof(int64_t) * (size_t)count);
}

TC_FN void tc_attr_floats(tcase *t, const char *name, int count, const float *v) {
    eg_attr *a = tc_attr(t, name, EG_ATTR_TYPE_FLOATS);
    a->n = count;
    a->floats = eg_graph_alloc(t->g, sizeof(float) * (size_t)(count ? count : 1));
    memcpy(a->floats, v, sizeof(float) * (size_t)count);
}

TC_FN void tc_attr_strings(tcase *t, const char *name, int count, const char *const *v) {
    eg_attr *a = tc_attr(t, name, EG_ATTR_TYPE_STRINGS);
    a->n = count;
    a->strings = eg_graph_alloc(t->g, sizeof(char *) * (size_t)(count ? count : 1));
    for (int i = 0; i < count; i++)
        a->strings[i] = eg_graph_strdup(t->g, v[i]);
}

TC_FN void tc_attr_tensor(tcase *t, const char *name, inferd_dtype dt, int rank,
                          const int64_t *dims, const void *data) {
    eg_attr *a = tc_attr(t, name, EG_ATTR_TYPE_TENSOR);
    a->t.dtype = dt;
    a->t.rank = rank;
    memcpy(a->t.dims, dims, sizeof(int64_t) * (size_t)rank);
    int64_t nb = eg_tensor_nbytes(&a->t);
    a->t.data = eg_graph_alloc(t->g, (size_t)(nb > 0 ? nb : 1));
    if (nb > 0)
        memcpy(a->t.data, data, (size_t)nb);
}

/* Input i: dtype, shape and data (copied); data NULL makes it unknown at plan time. */
TC_FN void tc_in(tcase *t, int i, inferd_dtype dt, int rank, const int64_t *dims,
                 const void *data) {
    assert_in_range(i, 0, tc_node(t)->n_in - 1);
    eg_tensor *x = &t->in[i];
    x->dtype = dt;
    x->rank = rank;
    if (rank > 0)
        memcpy(x->dims, dims, sizeof(int64_t) * (size_t)rank);
    x->data = NULL;
    int64_t nb = eg_tensor_nbytes(x);
    if (data && nb >= 0) {
        x->data = eg_graph_alloc(t->g, (size_t)(nb > 0 ? nb : 1));
        memcpy(x->data, data, (size_t)nb);
    }
}

TC_FN void tc_in_f32(tcase *t, int i, int rank, const int64_t *dims, const float *d) {
    tc_in(t, i, INFERD_DTYPE_F32, rank, dims, d);
}
TC_FN void tc_in_i64(tcase *t, int i, int rank, const int64_t *dims, const int64_t *d) {
    tc_in(t, i, INFERD_DTYPE_I64, rank, dims, d);
}

/* Marks input i or output j as omitted (an empty name in the file). */
TC_FN void tc_omit_in(tcase *t, int i) {
    tc_node(t)->in[i] = -1;
    memset(&t->in[i], 0, sizeof t->in[i]);
}
TC_FN void tc_omit_out(tcase *t, int j) { tc_node(t)->out[j] = -1; }

TC_FN int tc_infer(tcase *t) {
    const eg_op_def *d = eg_op_def_get(tc_node(t)->op);
    assert_non_null(d);
    memset(&t->err, 0, sizeof t->err);
    // A case may be inferred and run more than once: drop the last run's buffers.
    for (int j = 0; j < TC_MAX_IO; j++) {
        inferd_free(t->out[j].data);
        t->out[j].data = NULL;
    }
    return d->infer(tc_node(t), t->in, t->out, &t->err);
}

/* infer, then output buffers and scratch as the planner makes them, then run. Inputs without
 * data at this point get zero-filled data, as they would at run time. */
TC_FN int tc_run(tcase *t) {
    int rc = tc_infer(t);
    if (rc)
        return rc;
    eg_node *n = tc_node(t);
    const eg_op_def *d = eg_op_def_get(n->op);
    for (int i = 0; i < n->n_in; i++)
        if (n->in[i] >= 0 && !t->in[i].data && n->op != EG_OP_Shape && n->op != EG_OP_Size) {
            int64_t nb = eg_tensor_nbytes(&t->in[i]);
            t->in[i].data = eg_graph_alloc(t->g, (size_t)(nb > 0 ? nb : 1));
        }
    for (int j = 0; j < n->n_out; j++) {
        if (n->out[j] < 0)
            continue;
        int64_t nb = eg_tensor_nbytes(&t->out[j]);
        assert_in_range(nb, 0, INT64_MAX);
        // Poison so that an element run() forgets to write shows up.
        t->out[j].data = inferd_malloc(NULL, (size_t)(nb > 0 ? nb : 1));
        memset(t->out[j].data, 0xA5, (size_t)(nb > 0 ? nb : 1));
    }
    t->scratch_size = d->scratch ? d->scratch(n, t->in, t->out, t->threads) : 0;
    inferd_free(t->scratch);
    t->scratch = inferd_malloc(NULL, t->scratch_size ? t->scratch_size : 1);
    eg_run_ctx ctx = {
        .threads = t->threads, .scratch = t->scratch, .scratch_size = t->scratch_size};
    return d->run(n, t->in, t->out, &ctx, &t->err);
}

#define expect_ok(t, rc)                                                                           \
    do {                                                                                           \
        int rc_ = (rc);                                                                            \
        if (rc_ != 0)                                                                              \
            fail_msg("expected success, got %d (%s): %s", rc_, inferd_error_name(rc_),             \
                     (t)->err.msg);                                                                \
    } while (0)

/* rc must be code and the message must mention want (if not NULL). */
#define expect_err(t, rc, code, want)                                                              \
    do {                                                                                           \
        int rc_ = (rc);                                                                            \
        const char *w_ = (want);                                                                   \
        if (rc_ != (code))                                                                         \
            fail_msg("expected %s, got %d (%s): '%s'", inferd_error_name(code), rc_,               \
                     inferd_error_name(rc_), (t)->err.msg);                                        \
        if (w_ && !strstr((t)->err.msg, w_))                                                       \
            fail_msg("message '%s' does not mention '%s'", (t)->err.msg, w_);                      \
    } while (0)

TC_FN void check_shape_(const eg_tensor *o, inferd_dtype dt, int rank, const int64_t *dims,
                        const char *file, int line) {
    int ok = o->dtype == dt && o->rank == rank;
    for (int i = 0; ok && i < rank; i++)
        ok = o->dims[i] == dims[i];
    if (!ok) {
        char got[128], want[128];
        eg_tensor w = {.dtype = dt, .rank = rank};
        if (rank > 0)
            memcpy(w.dims, dims, sizeof(int64_t) * (size_t)rank);
        print_error("%s:%d: output is %s, expected %s\n", file, line,
                    eg_tensor_str(o, got, sizeof got), eg_tensor_str(&w, want, sizeof want));
        fail();
    }
}
#define check_shape(o, dt, rank, dims) check_shape_((o), (dt), (rank), (dims), __FILE__, __LINE__)

/* Element-wise comparison with tolerance atol + rtol * |want|; NaN matches NaN. */
TC_FN void check_f32_(const eg_tensor *o, const float *want, int64_t n, double tol,
                      const char *file, int line) {
    int64_t got_n = eg_tensor_numel(o);
    if (got_n != n) {
        print_error("%s:%d: output has %lld elements, expected %lld\n", file, line,
                    (long long)got_n, (long long)n);
        fail();
    }
    for (int64_t i = 0; i < n; i++) {
        float g = o->dtype == INFERD_DTYPE_F32 ? ((const float *)o->data)[i]
                                               : (float)((const double *)o->data)[i];
        float w = want[i];
        int ok = (isnan(g) && isnan(w)) || g == w || fabs((double)g - w) <= tol * (1 + fabs(w));
        if (!ok) {
            print_error("%s:%d: element %lld is %.9g, expected %.9g\n", file, line, (long long)i, g,
                        w);
            fail();
        }
    }
}
#define check_f32(o, want, n, tol) check_f32_((o), (want), (n), (tol), __FILE__, __LINE__)

TC_FN void check_f64_(const eg_tensor *o, const double *want, int64_t n, double tol,
                      const char *file, int line) {
    for (int64_t i = 0; i < n; i++) {
        double g = ((const double *)o->data)[i], w = want[i];
        int ok = (isnan(g) && isnan(w)) || g == w || fabs(g - w) <= tol * (1 + fabs(w));
        if (!ok) {
            print_error("%s:%d: element %lld is %.17g, expected %.17g\n", file, line, (long long)i,
                        g, w);
            fail();
        }
    }
}
#define check_f64(o, want, n, tol) check_f64_((o), (want), (n), (tol), __FILE__, __LINE__)

/* Exact comparison of integer or bool elements (read through eg_tensor_get_i64). */
TC_FN void check_ints_(const eg_tensor *o, const int64_t *want, int64_t n, const char *file,
                       int line) {
    int64_t got_n = eg_tensor_numel(o);
    if (got_n != n) {
        print_error("%s:%d: output has %lld elements, expected %lld\n", file, line,
                    (long long)got_n, (long long)n);
        fail();
    }
    for (int64_t i = 0; i < n; i++) {
        int64_t g = eg_tensor_get_i64(o, i);
        if (g != want[i]) {
            print_error("%s:%d: element %lld is %lld, expected %lld\n", file, line, (long long)i,
                        (long long)g, (long long)want[i]);
            fail();
        }
    }
}
#define check_ints(o, want, n) check_ints_((o), (want), (n), __FILE__, __LINE__)

#endif
