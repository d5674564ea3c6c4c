#include "cli/loadgen_req.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "util/alloc.h"
#include "util/dtype.h"
#include "util/tensor.h"

typedef struct rng {
    uint64_t s;
} rng;

static uint64_t rng_next(rng *r) {
    // splitmix64: tiny, fast, and good enough for test data.
    uint64_t z = (r->s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static double rng_unit(rng *r) { return (double)(rng_next(r) >> 11) * (1.0 / 9007199254740992.0); }

static double rng_normal(rng *r) {
    double u1 = rng_unit(r), u2 = rng_unit(r);
    return sqrt(-2.0 * log(1.0 - u1)) * cos(2.0 * M_PI * u2);
}

/* A growable byte buffer for the binary tensor data. */
typedef struct bytes {
    char *p;
    size_t len, cap;
} bytes;

static int bytes_put(bytes *b, const void *src, size_t n) {
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n)
            cap *= 2;
        char *p = inferd_realloc(NULL, b->p, cap);
        if (!p)
            return -1;
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, src, n);
    b->len += n;
    return 0;
}

/* Appends v as n little-endian bytes, whatever the host's byte order. */
static int bytes_put_le(bytes *b, uint64_t v, size_t n) {
    unsigned char le[8];
    for (size_t i = 0; i < n; i++)
        le[i] = (unsigned char)(v >> (8 * i));
    return bytes_put(b, le, n);
}

static int contains_ci(const char *s, const char *needle) {
    size_t n = strlen(needle);
    for (; *s; s++)
        if (strncasecmp(s, needle, n) == 0)
            return 1;
    return 0;
}

enum value_kind { KIND_RANDOM, KIND_ONES, KIND_ZEROS };

static int is_int(inferd_dtype t) {
    return t == INFERD_DTYPE_I8 || t == INFERD_DTYPE_I16 || t == INFERD_DTYPE_I32 ||
           t == INFERD_DTYPE_I64 || t == INFERD_DTYPE_U8 || t == INFERD_DTYPE_U16 ||
           t == INFERD_DTYPE_U32 || t == INFERD_DTYPE_U64;
}

/* Largest value an integer type holds (as the upper end of a random range). */
static int64_t int_limit(inferd_dtype t) {
    switch (t) {
    case INFERD_DTYPE_I8:
        return 127;
    case INFERD_DTYPE_U8:
        return 255;
    case INFERD_DTYPE_I16:
        return 32767;
    case INFERD_DTYPE_U16:
        return 65535;
    case INFERD_DTYPE_I32:
        return 2147483647;
    default:
        return INT64_MAX;
    }
}

static const char *const words[] = {"the",   "model", "serves", "many",  "short", "texts",
                                    "with",  "low",   "tail",   "delay", "under", "load",
                                    "quick", "brown", "fox",    "jumps", "over",  "lazy"};
#define N_WORDS (sizeof words / sizeof words[0])

/* Writes a sentence of n words into buf (cap bytes, NUL-terminated); returns its length. */
static size_t make_sentence(rng *r, int64_t n, char *buf, size_t cap) {
    size_t len = 0;
    for (int64_t i = 0; i < n; i++) {
        const char *w = words[rng_next(r) % N_WORDS];
        size_t wl = strlen(w);
        if (len + wl + 2 > cap)
            break;
        if (i)
            buf[len++] = ' ';
        memcpy(buf + len, w, wl);
        len += wl;
    }
    buf[len] = 0;
    return len;
}

/* Generates numel values of one input into data (JSON mode) or bin (binary mode). */
static int fill_values(rng *r, inferd_dtype t, enum value_kind kind, int64_t numel,
                       const inferd_loadgen_req_options *o, json_t *data, bytes *bin,
                       inferd_error *err) {
    char sentence[4096];
    int64_t hi = o->vocab < int_limit(t) ? o->vocab : int_limit(t);
    for (int64_t i = 0; i < numel; i++) {
        int rc = 0;
        if (t == INFERD_DTYPE_F32 || t == INFERD_DTYPE_F64) {
            double v = rng_normal(r);
            if (t == INFERD_DTYPE_F32) {
                float f = (float)v;
                v = f; // JSON carries exactly the value the binary form would
                uint32_t u;
                memcpy(&u, &f, 4);
                rc = bin ? bytes_put_le(bin, u, 4) : json_array_append_new(data, json_real(v));
            } else {
                uint64_t u;
                memcpy(&u, &v, 8);
                rc = bin ? bytes_put_le(bin, u, 8) : json_array_append_new(data, json_real(v));
            }
        } else if (is_int(t)) {
            int64_t v = kind == KIND_ONES    ? 1
                        : kind == KIND_ZEROS ? 0
                                             : (int64_t)(rng_next(r) % (uint64_t)hi);
            rc = bin ? bytes_put_le(bin, (uint64_t)v, inferd_dtype_size(t))
                     : json_array_append_new(data, json_integer(v));
        } else if (t == INFERD_DTYPE_BOOL) {
            int v = kind == KIND_ONES ? 1 : kind == KIND_ZEROS ? 0 : (int)(rng_next(r) & 1);
            rc = bin ? bytes_put_le(bin, (uint64_t)v, 1)
                     : json_array_append_new(data, json_boolean(v));
        } else { // BYTES
            size_t n = make_sentence(r, o->seq, sentence, sizeof sentence);
            rc = bin ? (bytes_put_le(bin, n, 4) || bytes_put(bin, sentence, n))
                     : json_array_append_new(data, json_stringn(sentence, n));
        }
        if (rc)
            return inferd_error_set(err, INFERD_EINTERNAL, "out of memory building the request");
    }
    return 0;
}

static void summary_add(char *s, size_t cap, const char *name, const char *dt, int rank,
                        const int64_t *dims) {
    size_t len = strlen(s);
    int n = snprintf(s + len, cap - len, "%s%s %s[", len ? ", " : "", name, dt);
    for (int d = 0; d < rank && n >= 0 && (len += (size_t)n) < cap; d++)
        n = snprintf(s + len, cap - len, "%s%lld", d ? "," : "", (long long)dims[d]);
    if (n >= 0 && (len += (size_t)n) < cap)
        snprintf(s + len, cap - len, "]");
}

void inferd_loadgen_req_deinit(inferd_loadgen_req *r) {
    inferd_free(r->body);
    r->body = NULL;
    r->body_len = r->header_len = 0;
}

int inferd_loadgen_req_build(const char *metadata, size_t len,
                             const inferd_loadgen_req_options *opts, inferd_loadgen_req *out,
                             inferd_error *err) {
    inferd_loadgen_req_options o = *opts;
    if (o.batch <= 0)
        o.batch = 1;
    if (o.seq <= 0)
        o.seq = 16;
    if (o.vocab <= 0)
        o.vocab = 100;
    rng r = {o.seed};
    memset(out, 0, sizeof *out);

    json_error_t jerr;
    json_t *meta = json_loadb(metadata, len, 0, &jerr);
    if (!meta)
        return inferd_error_set(err, INFERD_EINVAL, "model metadata is not JSON: %s", jerr.text);
    int rc = 0;
    json_t *req = json_object(), *req_inputs = json_array();
    bytes bin = {0};
    json_object_set_new(req, "inputs", req_inputs);
    json_t *inputs = json_object_get(meta, "inputs");
    if (!json_is_array(inputs) || json_array_size(inputs) == 0) {
        rc = inferd_error_set(err, INFERD_EINVAL, "model metadata has no \"inputs\" array");
        goto out;
    }
    size_t idx;
    json_t *in;
    json_array_foreach(inputs, idx, in) {
        const char *name = json_string_value(json_object_get(in, "name"));
        const char *dtname = json_string_value(json_object_get(in, "datatype"));
        json_t *shape = json_object_get(in, "shape");
        if (!name || !dtname || !json_is_array(shape)) {
            rc = inferd_error_set(err, INFERD_EINVAL,
                                  "model metadata input %zu lacks name, datatype or shape", idx);
            goto out;
        }
        inferd_dtype t = inferd_dtype_from_kserve(dtname);
        if (t == INFERD_DTYPE_INVALID || t == INFERD_DTYPE_F16 || t == INFERD_DTYPE_BF16) {
            rc = inferd_error_set(err, INFERD_EUNSUPPORTED,
                                  "input '%s': cannot generate %s data; give a request with "
                                  "--request",
                                  name, dtname);
            goto out;
        }
        int rank = (int)json_array_size(shape);
        if (rank > INFERD_MAX_RANK) {
            rc = inferd_error_set(err, INFERD_EINVAL, "input '%s' has rank %d, over %d", name, rank,
                                  INFERD_MAX_RANK);
            goto out;
        }
        int64_t dims[INFERD_MAX_RANK];
        json_t *req_shape = json_array();
        for (int d = 0; d < rank; d++) {
            json_t *jd = json_array_get(shape, (size_t)d);
            int64_t v = json_is_integer(jd) ? json_integer_value(jd) : -2;
            if (v == -1)
                v = d == 0 ? o.batch : o.seq;
            if (v < 0) {
                json_decref(req_shape);
                rc = inferd_error_set(err, INFERD_EINVAL, "input '%s' has a bad dimension %d", name,
                                      d);
                goto out;
            }
            dims[d] = v;
            json_array_append_new(req_shape, json_integer(v));
        }
        int64_t numel = inferd_tensor_numel(rank, dims);
        if (numel < 0 || numel > INFERD_LOADGEN_REQ_MAX_ELEMENTS) {
            json_decref(req_shape);
            rc = inferd_error_set(err, INFERD_ETOOLARGE,
                                  "input '%s' would have over %lld elements; use --seq/--batch",
                                  name, (long long)INFERD_LOADGEN_REQ_MAX_ELEMENTS);
            goto out;
        }
        enum value_kind kind = KIND_RANDOM;
        if (contains_ci(name, "mask"))
            kind = KIND_ONES;
        else if (is_int(t) && (contains_ci(name, "type") || contains_ci(name, "segment")))
            kind = KIND_ZEROS;

        json_t *ji = json_object();
        json_object_set_new(ji, "name", json_string(name));
        json_object_set_new(ji, "shape", req_shape);
        json_object_set_new(ji, "datatype", json_string(dtname));
        json_array_append_new(req_inputs, ji);
        size_t before = bin.len;
        json_t *data = o.binary ? NULL : json_array();
        if ((rc = fill_values(&r, t, kind, numel, &o, data, o.binary ? &bin : NULL, err)) < 0) {
            json_decref(data);
            goto out;
        }
        if (o.binary)
            json_object_set_new(
                ji, "parameters",
                json_pack("{sI}", "binary_data_size", (json_int_t)(bin.len - before)));
        else
            json_object_set_new(ji, "data", data);
        summary_add(out->summary, sizeof out->summary, name, dtname, rank, dims);
    }
    if (o.binary)
        json_object_set_new(req, "parameters", json_pack("{sb}", "binary_data_output", 1));

    // Nine significant digits print every float exactly, and keep bodies short.
    char *text = json_dumps(req, JSON_COMPACT | JSON_REAL_PRECISION(9));
    if (!text) {
        rc = inferd_error_set(err, INFERD_EINTERNAL, "out of memory encoding the request");
        goto out;
    }
    size_t tl = strlen(text);
    out->body = inferd_malloc(NULL, tl + bin.len + 1);
    if (!out->body) {
        free(text);
        rc = inferd_error_set(err, INFERD_EINTERNAL, "out of memory for the request body");
        goto out;
    }
    memcpy(out->body, text, tl);
    if (bin.len)
        memcpy(out->body + tl, bin.p, bin.len);
    out->body[tl + bin.len] = 0;
    out->body_len = tl + bin.len;
    out->header_len = o.binary ? tl : 0;
    free(text);
out:
    inferd_free(bin.p);
    json_decref(req);
    json_decref(meta);
    return rc;
}
