#include "api/kserve.h"

#include <float.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "api/jsonpos.h"
#include "util/alloc.h"

/* ---- small helpers ---- */

static void shape_text(char *buf, size_t cap, int rank, const int64_t *dims) {
    size_t n = (size_t)snprintf(buf, cap, "[");
    for (int k = 0; k < rank && n < cap; k++)
        n += (size_t)snprintf(buf + n, cap - n, "%s%lld", k ? "," : "", (long long)dims[k]);
    if (n < cap)
        snprintf(buf + n, cap - n, "]");
}

/* Strings may hold NUL (JSON_ALLOW_NUL, for BYTES data); names and ids must not. */
static int is_plain_string(const json_t *v) {
    return json_is_string(v) && strlen(json_string_value(v)) == json_string_length(v);
}

static int find_input(const inferd_kserve_model *m, const char *name) {
    for (int i = 0; i < m->n_inputs; i++)
        if (!strcmp(m->inputs[i].name, name))
            return i;
    return -1;
}

static int find_output(const inferd_kserve_model *m, const char *name) {
    for (int i = 0; i < m->n_outputs; i++)
        if (!strcmp(m->outputs[i].name, name))
            return i;
    return -1;
}

static void names_of(char *buf, size_t cap, const inferd_tensor_desc *d, int n) {
    size_t k = 0;
    buf[0] = 0;
    for (int i = 0; i < n && k < cap; i++)
        k += (size_t)snprintf(buf + k, cap - k, "%s'%s'", i ? ", " : "", d[i].name);
}

/* ---- JSON data -> typed buffer ---- */

/* Counts the leaves of a (possibly nested) data array; -1 on a non-array leaf container
 * problem is impossible: every non-array is a leaf. */
static int64_t count_leaves(const json_t *v) {
    if (!json_is_array(v))
        return 1;
    int64_t n = 0;
    size_t i;
    json_t *e;
    json_array_foreach(v, i, e) n += count_leaves(e);
    return n;
}

typedef struct filler {
    inferd_dtype dtype;
    uint8_t *dst;     /* fixed-size dtypes */
    inferd_strbuf sb; /* BYTES */
    int64_t idx;
    int input;
} filler;

static int put_leaf(filler *f, const json_t *v, inferd_error *err) {
    int64_t i = f->idx++;
    const char *where_fmt = "inputs[%d].data: element %lld: %s";
    char what[128];
    switch (f->dtype) {
    case INFERD_DTYPE_BOOL:
        if (!json_is_boolean(v)) {
            snprintf(what, sizeof what, "expected true or false, got %s", inferd_json_type_name(v));
            goto bad;
        }
        f->dst[i] = json_is_true(v);
        return 0;
    case INFERD_DTYPE_F32:
    case INFERD_DTYPE_F64: {
        if (!json_is_number(v)) {
            snprintf(what, sizeof what, "expected a number, got %s", inferd_json_type_name(v));
            goto bad;
        }
        double d = json_number_value(v);
        if (f->dtype == INFERD_DTYPE_F32) {
            // jansson refuses numbers beyond a double, but 1e39 would silently become inf.
            if (d > FLT_MAX || d < -FLT_MAX) {
                snprintf(what, sizeof what, "%g is out of range for FP32", d);
                goto bad;
            }
            float x = (float)d;
            memcpy(f->dst + i * 4, &x, 4);
        } else {
            memcpy(f->dst + i * 8, &d, 8);
        }
        return 0;
    }
    case INFERD_DTYPE_STRING: {
        if (!json_is_string(v)) {
            snprintf(what, sizeof what, "expected a string, got %s", inferd_json_type_name(v));
            goto bad;
        }
        size_t n = json_string_length(v);
        if (n > UINT32_MAX) {
            snprintf(what, sizeof what, "string too long");
            goto bad;
        }
        uint8_t len[4] = {(uint8_t)n, (uint8_t)(n >> 8), (uint8_t)(n >> 16), (uint8_t)(n >> 24)};
        inferd_strbuf_append(&f->sb, len, 4);
        inferd_strbuf_append(&f->sb, json_string_value(v), n);
        return 0;
    }
    default:
        break;
    }
    // Integer types.
    if (!json_is_integer(v)) {
        snprintf(what, sizeof what, "expected an integer, got %s", inferd_json_type_name(v));
        goto bad;
    }
    json_int_t x = json_integer_value(v);
    long long lo, hi;
    switch (f->dtype) {
    case INFERD_DTYPE_I8:
        lo = INT8_MIN, hi = INT8_MAX;
        break;
    case INFERD_DTYPE_U8:
        lo = 0, hi = UINT8_MAX;
        break;
    case INFERD_DTYPE_I16:
        lo = INT16_MIN, hi = INT16_MAX;
        break;
    case INFERD_DTYPE_U16:
        lo = 0, hi = UINT16_MAX;
        break;
    case INFERD_DTYPE_I32:
        lo = INT32_MIN, hi = INT32_MAX;
        break;
    case INFERD_DTYPE_U32:
        lo = 0, hi = UINT32_MAX;
        break;
    case INFERD_DTYPE_I64:
        lo = INT64_MIN, hi = INT64_MAX;
        break;
    default: // U64: JSON integers stop at 2^63 - 1 here; larger values need binary data
        lo = 0, hi = INT64_MAX;
        break;
    }
    if (x < lo || x > hi) {
        snprintf(what, sizeof what, "%lld is out of range for %s", (long long)x,
                 inferd_dtype_kserve_name(f->dtype));
        goto bad;
    }
    switch (f->dtype) {
    case INFERD_DTYPE_I8:
    case INFERD_DTYPE_U8: {
        uint8_t b = (uint8_t)x;
        f->dst[i] = b;
        break;
    }
    case INFERD_DTYPE_I16:
    case INFERD_DTYPE_U16: {
        uint16_t h = (uint16_t)x;
        memcpy(f->dst + i * 2, &h, 2);
        break;
    }
    case INFERD_DTYPE_I32:
    case INFERD_DTYPE_U32: {
        uint32_t w = (uint32_t)x;
        memcpy(f->dst + i * 4, &w, 4);
        break;
    }
    default: {
        int64_t q = (int64_t)x;
        memcpy(f->dst + i * 8, &q, 8);
        break;
    }
    }
    return 0;
bad:
    return inferd_error_set(err, INFERD_EINVAL, where_fmt, f->input, (long long)i, what);
}

static int fill(filler *f, const json_t *v, inferd_error *err) {
    if (!json_is_array(v))
        return put_leaf(f, v, err);
    size_t i;
    json_t *e;
    json_array_foreach(v, i, e) {
        int rc = fill(f, e, err);
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* Checks a binary BYTES payload: exactly numel length-prefixed elements, nothing left over. */
static int check_bytes_payload(const uint8_t *p, size_t n, int64_t numel, int input,
                               inferd_error *err) {
    size_t off = 0;
    int64_t count = 0;
    while (off < n) {
        if (n - off < 4)
            return inferd_error_set(err, INFERD_EINVAL,
                                    "inputs[%d]: binary BYTES data ends inside an element length",
                                    input);
        uint32_t len = inferd_read_le32(p + off);
        if (len > n - off - 4)
            return inferd_error_set(err, INFERD_EINVAL,
                                    "inputs[%d]: binary BYTES element %lld claims %u bytes, only "
                                    "%zu remain",
                                    input, (long long)count, len, n - off - 4);
        off += 4 + len;
        count++;
    }
    if (count != numel)
        return inferd_error_set(err, INFERD_EINVAL,
                                "inputs[%d]: binary BYTES data holds %lld elements, the shape "
                                "needs %lld",
                                input, (long long)count, (long long)numel);
    return 0;
}

/* ---- request ---- */

void inferd_kserve_request_deinit(inferd_kserve_request *r) {
    inferd_free(r->id);
    for (int i = 0; i < INFERD_KSERVE_MAX_TENSORS; i++)
        inferd_free(r->inputs[i].data);
    memset(r, 0, sizeof *r);
}

static int check_keys(const json_t *obj, const char *const *allowed, const char *where,
                      inferd_error *err) {
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)obj, key, v) {
        int ok = 0;
        for (int i = 0; allowed[i] && !ok; i++)
            ok = !strcmp(key, allowed[i]);
        if (!ok)
            return inferd_error_set(err, INFERD_EINVAL, "%s: unknown key '%.64s'", where, key);
    }
    return 0;
}

typedef struct pending_input {
    const json_t *data;
    long long binary_size; /* -1: JSON data */
    int model_index;
} pending_input;

static int parse_input(const inferd_kserve_model *m, const json_t *t, int i, pending_input *p,
                       inferd_kserve_request *r, inferd_error *err) {
    static const char *const keys[] = {"name", "shape", "datatype", "parameters", "data", NULL};
    char where[32];
    snprintf(where, sizeof where, "inputs[%d]", i);
    if (!json_is_object(t))
        return inferd_error_set(err, INFERD_EINVAL, "%s: must be an object, got %s", where,
                                inferd_json_type_name(t));
    int rc = check_keys(t, keys, where, err);
    if (rc < 0)
        return rc;
    const json_t *name = json_object_get(t, "name");
    if (!is_plain_string(name))
        return inferd_error_set(err, INFERD_EINVAL, "%s.name: %s", where,
                                name ? "must be a string" : "missing");
    int mi = find_input(m, json_string_value(name));
    if (mi < 0) {
        char names[256];
        names_of(names, sizeof names, m->inputs, m->n_inputs);
        return inferd_error_set(err, INFERD_EINVAL,
                                "%s.name: unknown input '%.64s' (model '%s' has %s)", where,
                                json_string_value(name), m->name, names);
    }
    if (r->inputs[mi].dtype != INFERD_DTYPE_INVALID)
        return inferd_error_set(err, INFERD_EINVAL, "%s.name: input '%s' is given twice", where,
                                m->inputs[mi].name);
    const inferd_tensor_desc *d = &m->inputs[mi];
    inferd_tensor *out = &r->inputs[mi];

    const json_t *dt = json_object_get(t, "datatype");
    if (!is_plain_string(dt))
        return inferd_error_set(err, INFERD_EINVAL, "%s.datatype: %s", where,
                                dt ? "must be a string" : "missing");
    inferd_dtype dtype = inferd_dtype_from_kserve(json_string_value(dt));
    if (dtype == INFERD_DTYPE_INVALID)
        return inferd_error_set(err, INFERD_EINVAL, "%s.datatype: unknown datatype '%.32s'", where,
                                json_string_value(dt));
    if (dtype != d->dtype)
        return inferd_error_set(err, INFERD_EINVAL, "%s.datatype: input '%s' is %s, got %s", where,
                                d->name, inferd_dtype_kserve_name(d->dtype),
                                inferd_dtype_kserve_name(dtype));

    const json_t *shape = json_object_get(t, "shape");
    if (!json_is_array(shape))
        return inferd_error_set(err, INFERD_EINVAL, "%s.shape: %s", where,
                                shape ? "must be an array of integers" : "missing");
    size_t rank = json_array_size(shape);
    if (rank != (size_t)d->rank)
        return inferd_error_set(err, INFERD_EINVAL, "%s.shape: input '%s' has %d dims, got %zu",
                                where, d->name, d->rank, rank);
    out->rank = (int)rank;
    for (size_t k = 0; k < rank; k++) {
        const json_t *dim = json_array_get(shape, k);
        if (!json_is_integer(dim))
            return inferd_error_set(err, INFERD_EINVAL, "%s.shape[%zu]: must be an integer, got %s",
                                    where, k, inferd_json_type_name(dim));
        json_int_t x = json_integer_value(dim);
        if (x < 1)
            return inferd_error_set(err, INFERD_EINVAL,
                                    "%s.shape[%zu]: must be at least 1, got %lld", where, k,
                                    (long long)x);
        int batch_dim = m->max_batch > 0 && k == 0;
        if (!batch_dim && d->dims[k] >= 0 && x != d->dims[k])
            return inferd_error_set(err, INFERD_EINVAL,
                                    "%s.shape[%zu]: input '%s' needs %lld, got %lld", where, k,
                                    d->name, (long long)d->dims[k], (long long)x);
        if (batch_dim && x > m->max_batch)
            return inferd_error_set(err, INFERD_EINVAL,
                                    "%s.shape[0]: batch of %lld exceeds max_batch_size %d", where,
                                    (long long)x, m->max_batch);
        out->dims[k] = x;
    }
    int64_t numel = inferd_tensor_numel(out->rank, out->dims);
    size_t esz = inferd_dtype_size(dtype);
    if (numel < 0 || (esz && (uint64_t)numel > SIZE_MAX / 2 / esz))
        return inferd_error_set(err, INFERD_EINVAL, "%s.shape: too many elements", where);

    const json_t *params = json_object_get(t, "parameters");
    long long binary_size = -1;
    if (params) {
        if (!json_is_object(params))
            return inferd_error_set(err, INFERD_EINVAL, "%s.parameters: must be an object", where);
        const json_t *bs = json_object_get(params, "binary_data_size");
        if (bs) {
            if (!json_is_integer(bs) || json_integer_value(bs) < 0)
                return inferd_error_set(err, INFERD_EINVAL,
                                        "%s.parameters.binary_data_size: must be a non-negative "
                                        "integer",
                                        where);
            binary_size = json_integer_value(bs);
        }
    }
    const json_t *data = json_object_get(t, "data");
    if (data && binary_size >= 0)
        return inferd_error_set(err, INFERD_EINVAL,
                                "%s: has both data and parameters.binary_data_size", where);
    if (!data && binary_size < 0)
        return inferd_error_set(err, INFERD_EINVAL, "%s: needs data or parameters.binary_data_size",
                                where);
    if (binary_size >= 0 && esz && (uint64_t)binary_size != (uint64_t)numel * esz) {
        char sh[96];
        shape_text(sh, sizeof sh, out->rank, out->dims);
        return inferd_error_set(err, INFERD_EINVAL,
                                "%s.parameters.binary_data_size: %lld bytes, but shape %s of %s "
                                "needs %llu",
                                where, binary_size, sh, inferd_dtype_kserve_name(dtype),
                                (unsigned long long)numel * esz);
    }
    if (data) {
        if (dtype == INFERD_DTYPE_F16 || dtype == INFERD_DTYPE_BF16)
            return inferd_error_set(err, INFERD_EINVAL,
                                    "%s.data: %s data must be sent as binary "
                                    "(parameters.binary_data_size)",
                                    where, inferd_dtype_kserve_name(dtype));
        if (!json_is_array(data))
            return inferd_error_set(err, INFERD_EINVAL, "%s.data: must be an array, got %s", where,
                                    inferd_json_type_name(data));
        int64_t count = count_leaves(data);
        if (count != numel) {
            char sh[96];
            shape_text(sh, sizeof sh, out->rank, out->dims);
            return inferd_error_set(err, INFERD_EINVAL,
                                    "%s.data: shape %s needs %lld elements, got %lld", where, sh,
                                    (long long)numel, (long long)count);
        }
    }
    out->dtype = dtype;
    p->data = data;
    p->binary_size = binary_size;
    p->model_index = mi;
    if (!data)
        return 0; // binary: placed once every input has declared its size
    if (dtype == INFERD_DTYPE_STRING) {
        filler f = {.dtype = dtype, .input = i};
        inferd_strbuf_init(&f.sb);
        if ((rc = fill(&f, data, err)) < 0) {
            inferd_strbuf_deinit(&f.sb);
            return rc;
        }
        out->data = inferd_strbuf_take(&f.sb, &out->nbytes);
    } else {
        out->nbytes = (size_t)numel * esz;
        out->data = inferd_malloc(NULL, out->nbytes);
        filler f = {.dtype = dtype, .dst = out->data, .input = i};
        if (out->data && (rc = fill(&f, data, err)) < 0)
            return rc;
    }
    if (!out->data)
        return inferd_error_set(err, INFERD_EINTERNAL, "out of memory");
    return 0;
}

static int parse_outputs(const inferd_kserve_model *m, const json_t *outs, int binary_default,
                         inferd_kserve_request *r, inferd_error *err) {
    if (!outs || (json_is_array(outs) && json_array_size(outs) == 0)) {
        for (int j = 0; j < m->n_outputs; j++) {
            r->output_index[j] = j;
            r->output_binary[j] = binary_default;
        }
        r->n_outputs = m->n_outputs;
        return 0;
    }
    if (!json_is_array(outs))
        return inferd_error_set(err, INFERD_EINVAL, "outputs: must be an array, got %s",
                                inferd_json_type_name(outs));
    if (json_array_size(outs) > (size_t)m->n_outputs)
        return inferd_error_set(err, INFERD_EINVAL, "outputs: %zu requested, the model has %d",
                                json_array_size(outs), m->n_outputs);
    static const char *const keys[] = {"name", "parameters", NULL};
    size_t i;
    json_t *o;
    json_array_foreach(outs, i, o) {
        char where[32];
        snprintf(where, sizeof where, "outputs[%zu]", i);
        if (!json_is_object(o))
            return inferd_error_set(err, INFERD_EINVAL, "%s: must be an object", where);
        int rc = check_keys(o, keys, where, err);
        if (rc < 0)
            return rc;
        const json_t *name = json_object_get(o, "name");
        if (!is_plain_string(name))
            return inferd_error_set(err, INFERD_EINVAL, "%s.name: %s", where,
                                    name ? "must be a string" : "missing");
        int j = find_output(m, json_string_value(name));
        if (j < 0) {
            char names[256];
            names_of(names, sizeof names, m->outputs, m->n_outputs);
            return inferd_error_set(err, INFERD_EINVAL,
                                    "%s.name: unknown output '%.64s' (model '%s' has %s)", where,
                                    json_string_value(name), m->name, names);
        }
        for (int k = 0; k < r->n_outputs; k++)
            if (r->output_index[k] == j)
                return inferd_error_set(err, INFERD_EINVAL,
                                        "%s.name: output '%s' is requested twice", where,
                                        m->outputs[j].name);
        int binary = binary_default, classes = 0;
        const json_t *params = json_object_get(o, "parameters");
        if (params) {
            if (!json_is_object(params))
                return inferd_error_set(err, INFERD_EINVAL, "%s.parameters: must be an object",
                                        where);
            const json_t *bd = json_object_get(params, "binary_data");
            if (bd) {
                if (!json_is_boolean(bd))
                    return inferd_error_set(err, INFERD_EINVAL,
                                            "%s.parameters.binary_data: must be true or false",
                                            where);
                binary = json_is_true(bd);
            }
            const json_t *cl = json_object_get(params, "classification");
            if (cl) {
                if (!json_is_integer(cl) || json_integer_value(cl) < 1 ||
                    json_integer_value(cl) > INT_MAX)
                    return inferd_error_set(err, INFERD_EINVAL,
                                            "%s.parameters.classification: must be a positive "
                                            "integer, the number of classes to return",
                                            where);
                if (m->outputs[j].dtype == INFERD_DTYPE_STRING)
                    return inferd_error_set(err, INFERD_EINVAL,
                                            "%s.parameters.classification: output '%s' is BYTES; "
                                            "only numeric outputs can be classified",
                                            where, m->outputs[j].name);
                classes = (int)json_integer_value(cl);
            }
        }
        r->output_index[r->n_outputs] = j;
        r->output_binary[r->n_outputs] = binary;
        r->output_class[r->n_outputs] = classes;
        r->n_outputs++;
    }
    return 0;
}

int inferd_kserve_parse_infer(const inferd_kserve_model *m, const uint8_t *body, size_t len,
                              long long header_len, inferd_kserve_request *r, inferd_error *err) {
    memset(r, 0, sizeof *r);
    if (m->n_inputs > INFERD_KSERVE_MAX_TENSORS || m->n_outputs > INFERD_KSERVE_MAX_TENSORS)
        return inferd_error_set(err, INFERD_EUNSUPPORTED, "model '%s' has too many tensors",
                                m->name);
    if (header_len > (long long)len)
        return inferd_error_set(err, INFERD_EINVAL,
                                "Inference-Header-Content-Length: %lld exceeds the body's %zu "
                                "bytes",
                                header_len, len);
    size_t json_len = header_len >= 0 ? (size_t)header_len : len;
    if (json_len > INFERD_KSERVE_MAX_JSON_BYTES)
        return inferd_error_set(err, INFERD_ETOOLARGE,
                                "request body: the JSON part is %zu bytes, over the limit of %zu; "
                                "send large tensors as binary data",
                                json_len, INFERD_KSERVE_MAX_JSON_BYTES);
    json_error_t jerr;
    // NUL is a valid character of a BYTES element (a text, say), as in binary data.
    json_t *root =
        json_loadb((const char *)body, json_len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &jerr);
    if (!root) {
        // A string that is not UTF-8 (BYTES data, usually) is named by its field.
        char path[160];
        if (inferd_jsonpos_is_encoding_error(jerr.text) &&
            inferd_jsonpos_string_path((const char *)body, json_len, (size_t)jerr.position, path,
                                       sizeof path))
            return inferd_error_set(err, INFERD_EINVAL,
                                    "%s: not valid UTF-8 (JSON text must be; send other bytes "
                                    "as binary data): %s",
                                    path, jerr.text);
        return inferd_error_set(err, INFERD_EINVAL,
                                "request body: invalid JSON at line %d, column %d: %s", jerr.line,
                                jerr.column, jerr.text);
    }
    int rc = 0;
    pending_input pend[INFERD_KSERVE_MAX_TENSORS];
    int n_pend = 0;
    if (!json_is_object(root)) {
        rc = inferd_error_set(err, INFERD_EINVAL, "request body: must be a JSON object, got %s",
                              inferd_json_type_name(root));
        goto out;
    }
    static const char *const keys[] = {"id", "parameters", "inputs", "outputs", NULL};
    if ((rc = check_keys(root, keys, "request", err)) < 0)
        goto out;

    const json_t *id = json_object_get(root, "id");
    if (id) {
        if (!is_plain_string(id)) {
            rc = inferd_error_set(err, INFERD_EINVAL, "id: must be a string, got %s",
                                  inferd_json_type_name(id));
            goto out;
        }
        r->id = inferd_strdup(NULL, json_string_value(id));
        if (!r->id) {
            rc = inferd_error_set(err, INFERD_EINTERNAL, "out of memory");
            goto out;
        }
    }
    int binary_default = 0;
    const json_t *params = json_object_get(root, "parameters");
    if (params) {
        if (!json_is_object(params)) {
            rc = inferd_error_set(err, INFERD_EINVAL, "parameters: must be an object, got %s",
                                  inferd_json_type_name(params));
            goto out;
        }
        const json_t *t = json_object_get(params, "timeout");
        if (t) {
            if (!json_is_integer(t) || json_integer_value(t) < 0) {
                rc = inferd_error_set(err, INFERD_EINVAL,
                                      "parameters.timeout: must be a non-negative integer "
                                      "(microseconds)");
                goto out;
            }
            r->timeout_us = json_integer_value(t);
        }
        const json_t *bo = json_object_get(params, "binary_data_output");
        if (bo) {
            if (!json_is_boolean(bo)) {
                rc = inferd_error_set(err, INFERD_EINVAL,
                                      "parameters.binary_data_output: must be true or false");
                goto out;
            }
            binary_default = json_is_true(bo);
        }
    }

    const json_t *inputs = json_object_get(root, "inputs");
    if (!json_is_array(inputs)) {
        rc = inferd_error_set(err, INFERD_EINVAL, "inputs: %s",
                              inputs ? "must be an array" : "missing");
        goto out;
    }
    if (json_array_size(inputs) > (size_t)m->n_inputs) {
        rc = inferd_error_set(err, INFERD_EINVAL, "inputs: %zu given, model '%s' has %d",
                              json_array_size(inputs), m->name, m->n_inputs);
        goto out;
    }
    size_t i;
    json_t *t;
    json_array_foreach(inputs, i, t) {
        if ((rc = parse_input(m, t, (int)i, &pend[n_pend], r, err)) < 0)
            goto out;
        n_pend++;
    }
    for (int k = 0; k < m->n_inputs; k++)
        if (r->inputs[k].dtype == INFERD_DTYPE_INVALID) {
            rc = inferd_error_set(err, INFERD_EINVAL, "inputs: missing input '%s'",
                                  m->inputs[k].name);
            goto out;
        }
    r->n_inputs = m->n_inputs;
    if (m->max_batch > 0)
        for (int k = 0; k < n_pend; k++) {
            int a = pend[0].model_index, b = pend[k].model_index;
            if (r->inputs[b].dims[0] != r->inputs[a].dims[0]) {
                rc = inferd_error_set(err, INFERD_EINVAL,
                                      "inputs[%d].shape[0]: batch %lld differs from input '%s' "
                                      "(batch %lld)",
                                      k, (long long)r->inputs[b].dims[0], m->inputs[a].name,
                                      (long long)r->inputs[a].dims[0]);
                goto out;
            }
        }

    // Binary data follows the JSON header, in the order of the inputs that declare it. The
    // sum saturates: sizes that wrap around 2^64 to the bytes present must not pass (BYTES
    // sizes are not tied to the shape, and a wrapped sum let the copies read past the body).
    unsigned long long declared = 0;
    for (int k = 0; k < n_pend; k++)
        if (pend[k].binary_size >= 0) {
            unsigned long long s = (unsigned long long)pend[k].binary_size;
            declared = s > ULLONG_MAX - declared ? ULLONG_MAX : declared + s;
        }
    size_t have = len - json_len;
    if (declared != have) {
        if (header_len < 0)
            rc = inferd_error_set(err, INFERD_EINVAL,
                                  "inputs use parameters.binary_data_size but the request has no "
                                  "Inference-Header-Content-Length header");
        else
            rc = inferd_error_set(err, INFERD_EINVAL,
                                  "binary data: the inputs declare %llu bytes, the body carries "
                                  "%zu after the %lld-byte JSON header",
                                  declared, have, header_len);
        goto out;
    }
    size_t off = json_len;
    for (int k = 0; k < n_pend; k++) {
        inferd_tensor *tt = &r->inputs[pend[k].model_index];
        int64_t numel = inferd_tensor_numel(tt->rank, tt->dims);
        if (pend[k].binary_size >= 0) {
            size_t n = (size_t)pend[k].binary_size;
            if (tt->dtype == INFERD_DTYPE_STRING &&
                (rc = check_bytes_payload(body + off, n, numel, k, err)) < 0)
                goto out;
            // Copied: inferd_malloc aligns to 64 bytes, which kernels may rely on.
            tt->data = inferd_malloc(NULL, n);
            if (!tt->data) {
                rc = inferd_error_set(err, INFERD_EINTERNAL, "out of memory");
                goto out;
            }
            memcpy(tt->data, body + off, n);
            tt->nbytes = n;
            off += n;
        }
    }
    rc = parse_outputs(m, json_object_get(root, "outputs"), binary_default, r, err);
out:
    json_decref(root);
    return rc;
}

/* ---- response ---- */

static void append_double(inferd_strbuf *b, double d, int digits) {
    if (isnan(d))
        inferd_strbuf_appends(b, "NaN");
    else if (isinf(d))
        inferd_strbuf_appends(b, d > 0 ? "Infinity" : "-Infinity");
    else
        inferd_strbuf_appendf(b, "%.*g", digits, d);
}

/* Appends the elements of t as a flat JSON array. */
static int append_data(inferd_strbuf *b, const inferd_tensor *t, inferd_error *err) {
    int64_t numel = inferd_tensor_numel(t->rank, t->dims);
    const uint8_t *p = t->data;
    inferd_strbuf_append(b, "[", 1);
    size_t off = 0;
    for (int64_t i = 0; i < numel; i++) {
        if (i)
            inferd_strbuf_append(b, ",", 1);
        switch (t->dtype) {
        case INFERD_DTYPE_BOOL:
            inferd_strbuf_appends(b, p[i] ? "true" : "false");
            break;
        case INFERD_DTYPE_U8:
            inferd_strbuf_appendf(b, "%u", p[i]);
            break;
        case INFERD_DTYPE_I8:
            inferd_strbuf_appendf(b, "%d", (int8_t)p[i]);
            break;
        case INFERD_DTYPE_U16: {
            uint16_t x;
            memcpy(&x, p + i * 2, 2);
            inferd_strbuf_appendf(b, "%u", x);
            break;
        }
        case INFERD_DTYPE_I16: {
            int16_t x;
            memcpy(&x, p + i * 2, 2);
            inferd_strbuf_appendf(b, "%d", x);
            break;
        }
        case INFERD_DTYPE_U32: {
            uint32_t x;
            memcpy(&x, p + i * 4, 4);
            inferd_strbuf_appendf(b, "%u", x);
            break;
        }
        case INFERD_DTYPE_I32: {
            int32_t x;
            memcpy(&x, p + i * 4, 4);
            inferd_strbuf_appendf(b, "%d", x);
            break;
        }
        case INFERD_DTYPE_U64: {
            uint64_t x;
            memcpy(&x, p + i * 8, 8);
            inferd_strbuf_appendf(b, "%llu", (unsigned long long)x);
            break;
        }
        case INFERD_DTYPE_I64: {
            int64_t x;
            memcpy(&x, p + i * 8, 8);
            inferd_strbuf_appendf(b, "%lld", (long long)x);
            break;
        }
        case INFERD_DTYPE_F32: {
            float x;
            memcpy(&x, p + i * 4, 4);
            append_double(b, x, 9); // 9 significant digits round-trip any float
            break;
        }
        case INFERD_DTYPE_F64: {
            double x;
            memcpy(&x, p + i * 8, 8);
            append_double(b, x, 17);
            break;
        }
        case INFERD_DTYPE_F16: {
            uint16_t h;
            memcpy(&h, p + i * 2, 2);
            append_double(b, inferd_f16_to_f32(h), 6);
            break;
        }
        case INFERD_DTYPE_BF16: {
            uint16_t h;
            memcpy(&h, p + i * 2, 2);
            append_double(b, inferd_bf16_to_f32(h), 4);
            break;
        }
        case INFERD_DTYPE_STRING: {
            if (off + 4 > t->nbytes)
                return inferd_error_set(err, INFERD_EINTERNAL, "malformed BYTES output");
            uint32_t len = inferd_read_le32(p + off);
            if (len > t->nbytes - off - 4)
                return inferd_error_set(err, INFERD_EINTERNAL, "malformed BYTES output");
            inferd_strbuf_append_json_string(b, (const char *)p + off + 4, len);
            off += 4 + len;
            break;
        }
        default:
            return inferd_error_set(err, INFERD_EUNSUPPORTED, "output datatype %s",
                                    inferd_dtype_name(t->dtype));
        }
    }
    inferd_strbuf_append(b, "]", 1);
    return 0;
}

static void append_shape(inferd_strbuf *b, int rank, const int64_t *dims) {
    inferd_strbuf_append(b, "[", 1);
    for (int k = 0; k < rank; k++)
        inferd_strbuf_appendf(b, "%s%lld", k ? "," : "", (long long)dims[k]);
    inferd_strbuf_append(b, "]", 1);
}

/* ---- classification (Triton's extension, kserve.h) ---- */

/* Element i of a numeric tensor; long double holds every 64-bit integer exactly. */
static long double value_at(const inferd_tensor *t, int64_t i) {
    const uint8_t *p = t->data;
    union {
        int8_t i8;
        int16_t i16;
        int32_t i32;
        int64_t i64;
        uint16_t u16;
        uint32_t u32;
        uint64_t u64;
        float f32;
        double f64;
    } x;
    size_t esz = inferd_dtype_size(t->dtype);
    memcpy(&x, p + (size_t)i * esz, esz);
    switch (t->dtype) {
    case INFERD_DTYPE_BOOL:
    case INFERD_DTYPE_U8:
        return p[i];
    case INFERD_DTYPE_I8:
        return x.i8;
    case INFERD_DTYPE_U16:
        return x.u16;
    case INFERD_DTYPE_I16:
        return x.i16;
    case INFERD_DTYPE_U32:
        return x.u32;
    case INFERD_DTYPE_I32:
        return x.i32;
    case INFERD_DTYPE_U64:
        return x.u64;
    case INFERD_DTYPE_I64:
        return x.i64;
    case INFERD_DTYPE_F32:
        return x.f32;
    case INFERD_DTYPE_F64:
        return x.f64;
    case INFERD_DTYPE_F16:
        return inferd_f16_to_f32(x.u16);
    case INFERD_DTYPE_BF16:
        return inferd_bf16_to_f32(x.u16);
    default:
        return 0;
    }
}

static int is_floating(inferd_dtype d) {
    return d == INFERD_DTYPE_F32 || d == INFERD_DTYPE_F64 || d == INFERD_DTYPE_F16 ||
           d == INFERD_DTYPE_BF16;
}

/* qsort_r order of element indices: highest value first, NaN last, ties by lower index. */
static int by_value_desc(const void *pa, const void *pb, void *ctx) {
    const inferd_tensor *t = ctx;
    int64_t ia = *(const int64_t *)pa, ib = *(const int64_t *)pb;
    long double a = value_at(t, ia), b = value_at(t, ib);
    int an = isnan(a), bn = isnan(b);
    if (an != bn)
        return an - bn;
    if (a != b && !an)
        return a > b ? -1 : 1;
    return (ia > ib) - (ia < ib);
}

/* The BYTES tensor that answers "classification": count for model output j, whose values are
 * t: per batch entry, its best count elements as "<value>:<index>[:<label>]". On success
 * out->data is from inferd_malloc (the caller's). */
static int classify(const inferd_kserve_model *m, int j, const inferd_tensor *t, int count,
                    inferd_tensor *out, inferd_error *err) {
    if (t->dtype == INFERD_DTYPE_STRING || inferd_dtype_size(t->dtype) == 0)
        return inferd_error_set(err, INFERD_EINVAL,
                                "output '%s': classification needs a numeric output, got %s",
                                m->outputs[j].name, inferd_dtype_name(t->dtype));
    int64_t numel = inferd_tensor_numel(t->rank, t->dims);
    int batched = m->max_batch > 0 && t->rank >= 1;
    int64_t entries = batched ? t->dims[0] : 1;
    int64_t per = entries > 0 ? numel / entries : 0;
    int64_t n = count < per ? count : per;
    int64_t *idx = inferd_malloc(NULL, (size_t)(per > 0 ? per : 1) * sizeof *idx);
    if (!idx)
        return inferd_error_set(err, INFERD_EINTERNAL, "out of memory classifying '%s'",
                                m->outputs[j].name);
    inferd_strbuf b;
    inferd_strbuf_init(&b);
    const char *(*label_of)(const void *, int64_t) = j == m->labels_output ? m->label_of : NULL;
    for (int64_t e = 0; e < entries; e++) {
        for (int64_t i = 0; i < per; i++)
            idx[i] = e * per + i;
        qsort_r(idx, (size_t)per, sizeof *idx, by_value_desc, (void *)t);
        for (int64_t k = 0; k < n; k++) {
            long double v = value_at(t, idx[k]);
            int64_t cls = idx[k] - e * per;
            const char *label = label_of ? label_of(m->labels_ctx, cls) : NULL;
            // The 4-byte length goes first; it is known once the text is written.
            size_t at = b.len;
            inferd_strbuf_append(&b, "\0\0\0\0", 4);
            if (is_floating(t->dtype))
                inferd_strbuf_appendf(&b, "%f", (double)v);
            else if (v < 0)
                inferd_strbuf_appendf(&b, "%lld", (long long)v);
            else
                inferd_strbuf_appendf(&b, "%llu", (unsigned long long)v);
            inferd_strbuf_appendf(&b, ":%lld", (long long)cls);
            if (label) {
                inferd_strbuf_append(&b, ":", 1);
                inferd_strbuf_appends(&b, label);
            }
            if (b.failed)
                break;
            size_t tl = b.len - at - 4;
            for (int q = 0; q < 4; q++)
                b.data[at + (size_t)q] = (char)(uint8_t)(tl >> (8 * q));
        }
    }
    inferd_free(idx);
    size_t nbytes;
    char *data = inferd_strbuf_take(&b, &nbytes);
    if (!data)
        return inferd_error_set(err, INFERD_EINTERNAL, "out of memory classifying '%s'",
                                m->outputs[j].name);
    *out = (inferd_tensor){.dtype = INFERD_DTYPE_STRING,
                           .rank = batched ? 2 : 1,
                           .dims = {batched ? entries : n, n},
                           .data = data,
                           .nbytes = nbytes};
    return 0;
}

/* The response of inferd_kserve_format_infer, the outputs in answer[] (response order). */
static int format_answer(const inferd_kserve_model *m, const inferd_kserve_request *r,
                         const inferd_tensor *const *answer, char **body, size_t *len,
                         size_t *json_len, inferd_error *err) {
    inferd_strbuf b;
    inferd_strbuf_init(&b);
    inferd_strbuf_appends(&b, "{\"model_name\":");
    inferd_strbuf_append_json_string(&b, m->name, strlen(m->name));
    inferd_strbuf_appendf(&b, ",\"model_version\":\"%ld\"", m->version);
    if (r->id) {
        inferd_strbuf_appends(&b, ",\"id\":");
        inferd_strbuf_append_json_string(&b, r->id, strlen(r->id));
    }
    inferd_strbuf_appends(&b, ",\"outputs\":[");
    size_t binary_total = 0;
    for (int k = 0; k < r->n_outputs; k++) {
        const inferd_tensor *t = answer[k];
        const char *name = m->outputs[r->output_index[k]].name;
        const char *dt = inferd_dtype_kserve_name(t->dtype);
        if (!dt) {
            inferd_strbuf_deinit(&b);
            return inferd_error_set(err, INFERD_EUNSUPPORTED, "output '%s' has datatype %s", name,
                                    inferd_dtype_name(t->dtype));
        }
        inferd_strbuf_appends(&b, k ? ",{\"name\":" : "{\"name\":");
        inferd_strbuf_append_json_string(&b, name, strlen(name));
        inferd_strbuf_appendf(&b, ",\"datatype\":\"%s\",\"shape\":", dt);
        append_shape(&b, t->rank, t->dims);
        if (r->output_binary[k]) {
            inferd_strbuf_appendf(&b, ",\"parameters\":{\"binary_data_size\":%zu}}", t->nbytes);
            binary_total += t->nbytes;
        } else {
            inferd_strbuf_appends(&b, ",\"data\":");
            int rc = append_data(&b, t, err);
            if (rc < 0) {
                inferd_strbuf_deinit(&b);
                return rc;
            }
            inferd_strbuf_append(&b, "}", 1);
        }
    }
    inferd_strbuf_appends(&b, "]}");
    size_t jl = b.len;
    for (int k = 0; k < r->n_outputs && binary_total; k++)
        if (r->output_binary[k])
            inferd_strbuf_append(&b, answer[k]->data, answer[k]->nbytes);
    char *data = inferd_strbuf_take(&b, len);
    if (!data)
        return inferd_error_set(err, INFERD_EINTERNAL, "out of memory formatting the response");
    *body = data;
    *json_len = jl;
    return 0;
}

int inferd_kserve_format_infer(const inferd_kserve_model *m, const inferd_kserve_request *r,
                               const inferd_tensor *outputs, char **body, size_t *len,
                               size_t *json_len, inferd_error *err) {
    *body = NULL;
    *len = *json_len = 0;
    // Outputs asked for as classifications are answered with the BYTES tensor made here.
    inferd_tensor classified[INFERD_KSERVE_MAX_TENSORS] = {0};
    const inferd_tensor *answer[INFERD_KSERVE_MAX_TENSORS];
    int rc = 0;
    for (int k = 0; k < r->n_outputs; k++) {
        answer[k] = &outputs[r->output_index[k]];
        if (rc == 0 && r->output_class[k] > 0) {
            rc =
                classify(m, r->output_index[k], answer[k], r->output_class[k], &classified[k], err);
            answer[k] = &classified[k];
        }
    }
    if (rc == 0)
        rc = format_answer(m, r, answer, body, len, json_len, err);
    for (int k = 0; k < r->n_outputs; k++)
        inferd_free(classified[k].data);
    return rc;
}

static void append_descs(inferd_strbuf *b, const inferd_tensor_desc *d, int n) {
    inferd_strbuf_append(b, "[", 1);
    for (int i = 0; i < n; i++) {
        inferd_strbuf_appends(b, i ? ",{\"name\":" : "{\"name\":");
        inferd_strbuf_append_json_string(b, d[i].name, strlen(d[i].name));
        const char *dt = inferd_dtype_kserve_name(d[i].dtype);
        inferd_strbuf_appendf(b, ",\"datatype\":\"%s\",\"shape\":", dt ? dt : "INVALID");
        append_shape(b, d[i].rank, d[i].dims);
        inferd_strbuf_append(b, "}", 1);
    }
    inferd_strbuf_append(b, "]", 1);
}

int inferd_kserve_names_input(const uint8_t *body, size_t len, long long header_len,
                              const char *name) {
    size_t json_len = header_len >= 0 && header_len <= (long long)len ? (size_t)header_len : len;
    json_t *root =
        json_loadb((const char *)body, json_len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, NULL);
    int found = 0;
    const json_t *inputs = root ? json_object_get(root, "inputs") : NULL;
    size_t i;
    json_t *t;
    if (json_is_array(inputs))
        json_array_foreach(inputs, i, t) {
            const json_t *n = json_is_object(t) ? json_object_get(t, "name") : NULL;
            found |= is_plain_string(n) && !strcmp(json_string_value(n), name);
        }
    json_decref(root);
    return found;
}

int64_t inferd_kserve_peek_timeout(const uint8_t *body, size_t len, long long header_len) {
    size_t json_len = header_len >= 0 && header_len <= (long long)len ? (size_t)header_len : len;
    json_t *root =
        json_loadb((const char *)body, json_len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, NULL);
    const json_t *params = root ? json_object_get(root, "parameters") : NULL;
    const json_t *t = json_is_object(params) ? json_object_get(params, "timeout") : NULL;
    int64_t us = json_is_integer(t) && json_integer_value(t) > 0 ? json_integer_value(t) : 0;
    json_decref(root);
    return us;
}

void inferd_kserve_format_metadata(inferd_strbuf *b, const inferd_kserve_model *m,
                                   const long *versions, int n_versions, const char *platform,
                                   const inferd_kserve_model *text) {
    inferd_strbuf_appends(b, "{\"name\":");
    inferd_strbuf_append_json_string(b, m->name, strlen(m->name));
    inferd_strbuf_appends(b, ",\"versions\":[");
    for (int i = 0; i < n_versions; i++)
        inferd_strbuf_appendf(b, "%s\"%ld\"", i ? "," : "", versions[i]);
    inferd_strbuf_appends(b, "],\"platform\":");
    inferd_strbuf_append_json_string(b, platform, strlen(platform));
    inferd_strbuf_appends(b, ",\"inputs\":");
    append_descs(b, m->inputs, m->n_inputs);
    inferd_strbuf_appends(b, ",\"outputs\":");
    append_descs(b, m->outputs, m->n_outputs);
    if (text) {
        inferd_strbuf_appends(b, ",\"text\":{\"inputs\":");
        append_descs(b, text->inputs, text->n_inputs);
        inferd_strbuf_appends(b, ",\"outputs\":");
        append_descs(b, text->outputs, text->n_outputs);
        inferd_strbuf_append(b, "}", 1);
    }
    inferd_strbuf_append(b, "}", 1);
}
