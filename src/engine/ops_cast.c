/* Cast and CastLike between every numeric dtype (bool, 8- to 64-bit integers, float16,
 * bfloat16, float, double), and the float16/bfloat16 conversions other ops share.
 *
 * Elements go through one of three wide forms in chunks: int64 (signed integers, uint8/16/32
 * and bool), uint64, or double (all floats; float16, bfloat16 and float convert to double
 * exactly). Integer to integer wraps as C and numpy do. Float to integer truncates toward zero
 * and saturates at the target's range, with NaN giving 0: ONNX leaves out-of-range casts
 * undefined, and in C they are undefined behaviour, so we pick the well-defined answer.
 * Anything non-zero, NaN included, casts to true. */
#include <math.h>

#include "engine/ops_impl.h"

/* ---- chunked conversion ---- */

typedef enum wide_kind { WIDE_I64, WIDE_U64, WIDE_F64 } wide_kind;

typedef union wide_buf {
    int64_t i[256];
    uint64_t u[256];
    double d[256];
} wide_buf;

#define CAST_CHUNK 256

static wide_kind wide_kind_of(inferd_dtype t) {
    switch (t) {
    case INFERD_DTYPE_F16:
    case INFERD_DTYPE_BF16:
    case INFERD_DTYPE_F32:
    case INFERD_DTYPE_F64:
        return WIDE_F64;
    case INFERD_DTYPE_U64:
        return WIDE_U64;
    default:
        return WIDE_I64;
    }
}

#define LOAD(T, field)                                                                             \
    do {                                                                                           \
        const T *s = (const T *)src + lo;                                                          \
        for (int64_t k = 0; k < n; k++)                                                            \
            w->field[k] = s[k];                                                                    \
    } while (0)

static void load_chunk(inferd_dtype t, const void *src, int64_t lo, int64_t n, wide_buf *w) {
    switch (t) {
    case INFERD_DTYPE_BOOL: {
        const uint8_t *s = (const uint8_t *)src + lo;
        for (int64_t k = 0; k < n; k++)
            w->i[k] = s[k] != 0;
        break;
    }
    case INFERD_DTYPE_U8:
        LOAD(uint8_t, i);
        break;
    case INFERD_DTYPE_I8:
        LOAD(int8_t, i);
        break;
    case INFERD_DTYPE_U16:
        LOAD(uint16_t, i);
        break;
    case INFERD_DTYPE_I16:
        LOAD(int16_t, i);
        break;
    case INFERD_DTYPE_U32:
        LOAD(uint32_t, i);
        break;
    case INFERD_DTYPE_I32:
        LOAD(int32_t, i);
        break;
    case INFERD_DTYPE_I64:
        LOAD(int64_t, i);
        break;
    case INFERD_DTYPE_U64:
        LOAD(uint64_t, u);
        break;
    case INFERD_DTYPE_F32:
        LOAD(float, d);
        break;
    case INFERD_DTYPE_F64:
        LOAD(double, d);
        break;
    case INFERD_DTYPE_F16: {
        const uint16_t *s = (const uint16_t *)src + lo;
        for (int64_t k = 0; k < n; k++)
            w->d[k] = inferd_f16_to_f32(s[k]);
        break;
    }
    case INFERD_DTYPE_BF16: {
        const uint16_t *s = (const uint16_t *)src + lo;
        for (int64_t k = 0; k < n; k++)
            w->d[k] = inferd_bf16_to_f32(s[k]);
        break;
    }
    default:
        break;
    }
}

/* Truncates toward zero and saturates to [lo, hi]; NaN gives 0 (see the top of the file). */
static inline int64_t sat_i64(double d, double lo, double hi) {
    if (d != d)
        return 0;
    if (d <= lo)
        return (int64_t)lo;
    if (d >= hi)
        return hi >= 9.2e18 ? INT64_MAX : (int64_t)hi;
    return (int64_t)d;
}

static inline uint64_t sat_u64(double d) {
    if (d != d || d <= 0)
        return 0;
    if (d >= 18446744073709551615.0)
        return UINT64_MAX;
    return (uint64_t)d;
}

/* Integer destination of type T with range [MIN, MAX]. */
#define STORE_INT(T, MIN, MAX)                                                                     \
    do {                                                                                           \
        T *d = (T *)dst + lo;                                                                      \
        if (kind == WIDE_F64)                                                                      \
            for (int64_t k = 0; k < n; k++)                                                        \
                d[k] = (T)sat_i64(w->d[k], (double)(MIN), (double)(MAX));                          \
        else if (kind == WIDE_U64)                                                                 \
            for (int64_t k = 0; k < n; k++)                                                        \
                d[k] = (T)w->u[k];                                                                 \
        else                                                                                       \
            for (int64_t k = 0; k < n; k++)                                                        \
                d[k] = (T)(uint64_t)w->i[k];                                                       \
    } while (0)

/* Float destination: CONV turns a float or double into the stored bits. */
#define STORE_FLOAT(T, FT, CONV)                                                                   \
    do {                                                                                           \
        T *d = (T *)dst + lo;                                                                      \
        if (kind == WIDE_F64)                                                                      \
            for (int64_t k = 0; k < n; k++)                                                        \
                d[k] = CONV((FT)w->d[k]);                                                          \
        else if (kind == WIDE_U64)                                                                 \
            for (int64_t k = 0; k < n; k++)                                                        \
                d[k] = CONV((FT)w->u[k]);                                                          \
        else                                                                                       \
            for (int64_t k = 0; k < n; k++)                                                        \
                d[k] = CONV((FT)w->i[k]);                                                          \
    } while (0)

#define AS_IS(x) (x)

static void store_chunk(inferd_dtype t, void *dst, int64_t lo, int64_t n, wide_kind kind,
                        const wide_buf *w) {
    switch (t) {
    case INFERD_DTYPE_BOOL: {
        uint8_t *d = (uint8_t *)dst + lo;
        for (int64_t k = 0; k < n; k++)
            d[k] = kind == WIDE_F64 ? w->d[k] != 0 : w->i[k] != 0;
        break;
    }
    case INFERD_DTYPE_U8:
        STORE_INT(uint8_t, 0, UINT8_MAX);
        break;
    case INFERD_DTYPE_I8:
        STORE_INT(int8_t, INT8_MIN, INT8_MAX);
        break;
    case INFERD_DTYPE_U16:
        STORE_INT(uint16_t, 0, UINT16_MAX);
        break;
    case INFERD_DTYPE_I16:
        STORE_INT(int16_t, INT16_MIN, INT16_MAX);
        break;
    case INFERD_DTYPE_U32:
        STORE_INT(uint32_t, 0, UINT32_MAX);
        break;
    case INFERD_DTYPE_I32:
        STORE_INT(int32_t, INT32_MIN, INT32_MAX);
        break;
    case INFERD_DTYPE_I64:
        STORE_INT(int64_t, INT64_MIN, INT64_MAX);
        break;
    case INFERD_DTYPE_U64: {
        uint64_t *d = (uint64_t *)dst + lo;
        for (int64_t k = 0; k < n; k++)
            d[k] = kind == WIDE_F64   ? sat_u64(w->d[k])
                   : kind == WIDE_U64 ? w->u[k]
                                      : (uint64_t)w->i[k];
        break;
    }
    case INFERD_DTYPE_F32:
        STORE_FLOAT(float, float, AS_IS);
        break;
    case INFERD_DTYPE_F64:
        STORE_FLOAT(double, double, AS_IS);
        break;
    case INFERD_DTYPE_F16:
        STORE_FLOAT(uint16_t, float, inferd_f32_to_f16);
        break;
    case INFERD_DTYPE_BF16:
        STORE_FLOAT(uint16_t, float, inferd_f32_to_bf16);
        break;
    default:
        break;
    }
}

/* Converts n elements of src (dtype from) into dst (dtype to). */
static void cast_elements(inferd_dtype from, const void *src, inferd_dtype to, void *dst, int64_t n,
                          const eg_run_ctx *ctx) {
    if (n == 0)
        return;
    if (from == to) {
        memcpy(dst, src, (size_t)n * inferd_dtype_size(to));
        return;
    }
    // Direct loops for the casts exporters put on hot paths (attention masks, ids).
    if (from == INFERD_DTYPE_I64 && to == INFERD_DTYPE_F32) {
        const int64_t *s = src;
        float *d = dst;
        for (int64_t k = 0; k < n; k++)
            d[k] = (float)s[k];
        return;
    }
    if (from == INFERD_DTYPE_BOOL && to == INFERD_DTYPE_F32) {
        const uint8_t *s = src;
        float *d = dst;
        for (int64_t k = 0; k < n; k++)
            d[k] = s[k] != 0;
        return;
    }
    if (from == INFERD_DTYPE_I32 && to == INFERD_DTYPE_I64) {
        const int32_t *s = src;
        int64_t *d = dst;
        for (int64_t k = 0; k < n; k++)
            d[k] = s[k];
        return;
    }
    wide_kind kind = wide_kind_of(from);
    int64_t nchunks = (n + CAST_CHUNK - 1) / CAST_CHUNK;
    int nt = eg_par_threads(ctx, n);
#pragma omp parallel for num_threads(nt) if (nt > 1) schedule(static)
    for (int64_t c = 0; c < nchunks; c++) {
        wide_buf w;
        int64_t lo = c * CAST_CHUNK, len = n - lo < CAST_CHUNK ? n - lo : CAST_CHUNK;
        load_chunk(from, src, lo, len, &w);
        store_chunk(to, dst, lo, len, kind, &w);
    }
}

static int infer_cast(const eg_node *n, const eg_tensor *in, eg_tensor *out, inferd_error *err) {
    inferd_dtype to;
    if (n->op == EG_OP_CastLike) {
        to = in[1].dtype;
    } else {
        const eg_attr *a = eg_node_attr(n, "to");
        if (!a || a->type != EG_ATTR_TYPE_INT)
            return eg_node_error(err, INFERD_EINVAL, n, "attribute to is required");
        if (a->i < 0 || a->i > 31 || inferd_dtype_size((inferd_dtype)a->i) == 0)
            return eg_node_error(err, INFERD_EUNSUPPORTED, n,
                                 "cast to ONNX dtype %d is not supported", (int)a->i);
        to = (inferd_dtype)a->i;
    }
    int rc = eg_check_dtype(n, in, 0, EG_DT_ANY, err);
    if (rc)
        return rc;
    if (!eg_dtype_in(to, EG_DT_ANY))
        return eg_node_error(err, INFERD_EUNSUPPORTED, n, "cast to %s is not supported",
                             inferd_dtype_name(to));
    eg_set_out(&out[0], to, in[0].rank, in[0].dims);
    return 0;
}

static int run_cast(const eg_node *n, const eg_tensor *in, eg_tensor *out, const eg_run_ctx *ctx,
                    inferd_error *err) {
    (void)n;
    (void)err;
    cast_elements(in[0].dtype, in[0].data, out[0].dtype, out[0].data, eg_numel(&in[0]), ctx);
    return 0;
}

EG_OP_IMPL(Cast, 1, 1, 1, 1, infer_cast, run_cast, NULL, 0);
EG_OP_IMPL(CastLike, 2, 2, 1, 1, infer_cast, run_cast, NULL, 0);
