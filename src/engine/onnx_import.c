#include "engine/onnx_import.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine/cache.h"
#include "onnx.pb-c.h"

#define MAX_NODES 1000000
#define MAX_MAPPINGS 64

/* ---- mapped files ---- */

int eg_map_file(const char *path, const void **data, size_t *size, inferd_error *err) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return inferd_error_set(err, errno == ENOENT ? INFERD_ENOTFOUND : INFERD_EINVAL,
                                "cannot open %s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return inferd_error_set(err, INFERD_EINVAL, "%s is not a regular file", path);
    }
    if (st.st_size == 0) {
        close(fd);
        return inferd_error_set(err, INFERD_EINVAL, "%s is empty", path);
    }
    // Pages are mapped lazily: a load served from the cache never touches the weight bytes.
    // Callers that will read everything ask for the whole mapping at once
    // (MADV_POPULATE_READ): faults are expensive on our machines.
    void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (p == MAP_FAILED)
        return inferd_error_set(err, INFERD_EINTERNAL, "cannot map %s: %s", path, strerror(errno));
    *data = p;
    *size = (size_t)st.st_size;
    return 0;
}

void eg_unmap_file(const void *data, size_t size) {
    if (data)
        munmap((void *)data, size);
}

struct eg_mappings {
    int n;
    struct {
        char *location;
        const void *data;
        size_t size;
    } m[MAX_MAPPINGS];
};

void eg_mappings_release(eg_mappings *maps) {
    if (!maps)
        return;
    for (int i = 0; i < maps->n; i++) {
        eg_unmap_file(maps->m[i].data, maps->m[i].size);
        free(maps->m[i].location);
    }
    free(maps);
}

/* ---- protobuf wire walking: cut raw_data out of initializers ---- */

typedef struct {
    const uint8_t *p, *end;
} wire;

static int read_varint(wire *w, uint64_t *v) {
    uint64_t x = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (w->p >= w->end)
            return -1;
        uint8_t b = *w->p++;
        x |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            *v = x;
            return 0;
        }
    }
    return -1;
}

typedef struct {
    uint32_t field;
    int wt;
    const uint8_t *start;   /* first byte of the tag */
    const uint8_t *payload; /* for length-delimited fields */
    size_t len;
} wire_field;

/* Reads one field; returns 1 when one was read, 0 at the end, -1 on malformed input. */
static int next_field(wire *w, wire_field *f) {
    if (w->p >= w->end)
        return 0;
    f->start = w->p;
    uint64_t tag, v;
    if (read_varint(w, &tag) < 0 || (tag >> 3) == 0 || (tag >> 3) > UINT32_MAX)
        return -1;
    f->field = (uint32_t)(tag >> 3);
    f->wt = (int)(tag & 7);
    switch (f->wt) {
    case 0:
        return read_varint(w, &v) < 0 ? -1 : 1;
    case 1:
        if (w->end - w->p < 8)
            return -1;
        w->p += 8;
        return 1;
    case 5:
        if (w->end - w->p < 4)
            return -1;
        w->p += 4;
        return 1;
    case 2:
        if (read_varint(w, &v) < 0 || v > (uint64_t)(w->end - w->p))
            return -1;
        f->payload = w->p;
        f->len = (size_t)v;
        w->p += v;
        return 1;
    default:
        return -1; // groups are not used by ONNX
    }
}

static size_t varint_len(uint64_t v) {
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

static uint8_t *put_varint(uint8_t *o, uint64_t v) {
    while (v >= 0x80) {
        *o++ = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    *o++ = (uint8_t)v;
    return o;
}

typedef struct {
    const uint8_t *data;
    size_t len;
    int present;
} raw_ref;

typedef struct {
    raw_ref *raws; /* one per initializer, in order */
    size_t n_raws, cap_raws;
} strip_state;

/* Size of a TensorProto without its raw_data fields. */
static int tensor_stripped_size(const uint8_t *p, size_t n, size_t *out) {
    wire w = {p, p + n};
    wire_field f;
    size_t size = 0;
    int r;
    while ((r = next_field(&w, &f)) == 1)
        if (!(f.field == 9 && f.wt == 2))
            size += (size_t)(w.p - f.start);
    if (r < 0)
        return -1;
    *out = size;
    return 0;
}

static int graph_stripped_size(const uint8_t *p, size_t n, size_t *out) {
    wire w = {p, p + n};
    wire_field f;
    size_t size = 0;
    int r;
    while ((r = next_field(&w, &f)) == 1) {
        if (f.field == 5 && f.wt == 2) {
            size_t t;
            if (tensor_stripped_size(f.payload, f.len, &t) < 0)
                return -1;
            size +=
                (size_t)(f.payload - f.start - (ptrdiff_t)varint_len(f.len)) + varint_len(t) + t;
        } else {
            size += (size_t)(w.p - f.start);
        }
    }
    if (r < 0)
        return -1;
    *out = size;
    return 0;
}

/* Writes tag bytes of field f (everything before its length prefix). */
static uint8_t *put_tag(uint8_t *o, const wire_field *f) {
    size_t tag_len = (size_t)(f->payload - f->start) - varint_len(f->len);
    memcpy(o, f->start, tag_len);
    return o + tag_len;
}

static uint8_t *emit_tensor(uint8_t *o, const uint8_t *p, size_t n, raw_ref *raw) {
    wire w = {p, p + n};
    wire_field f;
    while (next_field(&w, &f) == 1) {
        if (f.field == 9 && f.wt == 2) {
            raw->data = f.payload;
            raw->len = f.len;
            raw->present = 1;
        } else {
            memcpy(o, f.start, (size_t)(w.p - f.start));
            o += w.p - f.start;
        }
    }
    return o;
}

static int emit_graph(uint8_t *o, const uint8_t *p, size_t n, strip_state *st, uint8_t **end) {
    wire w = {p, p + n};
    wire_field f;
    while (next_field(&w, &f) == 1) {
        if (f.field == 5 && f.wt == 2) {
            if (st->n_raws == st->cap_raws) {
                size_t cap = st->cap_raws ? st->cap_raws * 2 : 256;
                raw_ref *r = realloc(st->raws, cap * sizeof *r);
                if (!r)
                    return -1;
                st->raws = r;
                st->cap_raws = cap;
            }
            raw_ref *raw = &st->raws[st->n_raws++];
            memset(raw, 0, sizeof *raw);
            size_t t = 0;
            tensor_stripped_size(f.payload, f.len, &t);
            o = put_tag(o, &f);
            o = put_varint(o, t);
            o = emit_tensor(o, f.payload, f.len, raw);
        } else {
            memcpy(o, f.start, (size_t)(w.p - f.start));
            o += w.p - f.start;
        }
    }
    *end = o;
    return 0;
}

/* Returns a malloc'd copy of the model without initializer raw_data (in *out, *out_len) and
 * the raw_data locations in st. */
static int strip_model(const uint8_t *p, size_t n, uint8_t **out, size_t *out_len, strip_state *st,
                       inferd_error *err) {
    wire w = {p, p + n};
    wire_field f;
    size_t size = 0;
    int r, graphs = 0;
    while ((r = next_field(&w, &f)) == 1) {
        if (f.field == 7 && f.wt == 2) {
            size_t gs;
            if (graph_stripped_size(f.payload, f.len, &gs) < 0)
                return inferd_error_set(err, INFERD_EINVAL,
                                        "not a valid ONNX file: malformed graph encoding");
            size += (size_t)(f.payload - f.start) - varint_len(f.len) + varint_len(gs) + gs;
            graphs++;
        } else {
            size += (size_t)(w.p - f.start);
        }
    }
    if (r < 0)
        return inferd_error_set(err, INFERD_EINVAL, "not a valid ONNX file: malformed protobuf");
    if (graphs != 1)
        return inferd_error_set(err, INFERD_EINVAL,
                                "not a valid ONNX file: expected one graph, found %d", graphs);
    uint8_t *buf = malloc(size ? size : 1);
    if (!buf)
        return inferd_error_set(err, INFERD_EINTERNAL, "out of memory reading the model");
    uint8_t *o = buf;
    w = (wire){p, p + n};
    while (next_field(&w, &f) == 1) {
        if (f.field == 7 && f.wt == 2) {
            size_t gs = 0;
            graph_stripped_size(f.payload, f.len, &gs);
            o = put_tag(o, &f);
            o = put_varint(o, gs);
            if (emit_graph(o, f.payload, f.len, st, &o) < 0) {
                free(buf);
                return inferd_error_set(err, INFERD_EINTERNAL, "out of memory reading the model");
            }
        } else {
            memcpy(o, f.start, (size_t)(w.p - f.start));
            o += w.p - f.start;
        }
    }
    *out = buf;
    *out_len = (size_t)(o - buf);
    return 0;
}

/* ---- name index ---- */

typedef struct {
    int *slots; /* value id + 1, 0 = empty */
    size_t cap;
    size_t used;
} name_index;

static uint64_t hash_str(const char *s) {
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 1099511628211ULL;
    return h;
}

static int index_find(const name_index *ix, const eg_graph *g, const char *name) {
    if (!ix->cap)
        return -1;
    for (size_t i = hash_str(name) & (ix->cap - 1);; i = (i + 1) & (ix->cap - 1)) {
        int s = ix->slots[i];
        if (!s)
            return -1;
        if (strcmp(g->values[s - 1].name, name) == 0)
            return s - 1;
    }
}

static int index_put(name_index *ix, const eg_graph *g, int id) {
    if ((ix->used + 1) * 2 > ix->cap) {
        size_t cap = ix->cap ? ix->cap * 2 : 1024;
        int *slots = calloc(cap, sizeof *slots);
        if (!slots)
            return -1;
        for (size_t i = 0; i < ix->cap; i++) {
            int s = ix->slots[i];
            if (!s)
                continue;
            size_t j = hash_str(g->values[s - 1].name) & (cap - 1);
            while (slots[j])
                j = (j + 1) & (cap - 1);
            slots[j] = s;
        }
        free(ix->slots);
        ix->slots = slots;
        ix->cap = cap;
    }
    size_t j = hash_str(g->values[id].name) & (ix->cap - 1);
    while (ix->slots[j])
        j = (j + 1) & (ix->cap - 1);
    ix->slots[j] = id + 1;
    ix->used++;
    return 0;
}

/* ---- import ---- */

typedef struct {
    eg_graph *g;
    name_index ix;
    eg_mappings *maps;
    char dir[PATH_MAX]; /* folder of the model file, for external data; "" if none */
    inferd_error *err;
} importer;

static int value_for(importer *im, const char *name, int create) {
    int id = index_find(&im->ix, im->g, name);
    if (id >= 0 || !create)
        return id;
    id = eg_graph_add_value(im->g, name, im->err);
    if (id < 0)
        return id;
    if (index_put(&im->ix, im->g, id) < 0)
        return inferd_error_set(im->err, INFERD_EINTERNAL, "out of memory indexing names");
    return id;
}

static int supported_dtype(int32_t t) {
    switch (t) {
    case INFERD_DTYPE_F32:
    case INFERD_DTYPE_U8:
    case INFERD_DTYPE_I8:
    case INFERD_DTYPE_U16:
    case INFERD_DTYPE_I16:
    case INFERD_DTYPE_I32:
    case INFERD_DTYPE_I64:
    case INFERD_DTYPE_BOOL:
    case INFERD_DTYPE_F16:
    case INFERD_DTYPE_F64:
    case INFERD_DTYPE_U32:
    case INFERD_DTYPE_U64:
    case INFERD_DTYPE_BF16:
        return 1;
    default:
        return 0;
    }
}

/* Finds (mapping if needed) the external data file `location`, relative to the model's
 * folder; only plain relative names inside that folder are accepted. */
static int external_file(importer *im, const char *what, const char *location, const void **data,
                         size_t *size) {
    if (!im->dir[0])
        return inferd_error_set(im->err, INFERD_EINVAL,
                                "tensor '%s' has external data but the model was not loaded "
                                "from a file",
                                what);
    if (!location[0] || location[0] == '/' || strstr(location, ".."))
        return inferd_error_set(im->err, INFERD_EINVAL,
                                "tensor '%s': external data location '%.100s' must be a "
                                "relative path inside the model's folder",
                                what, location);
    for (int i = 0; i < im->maps->n; i++)
        if (strcmp(im->maps->m[i].location, location) == 0) {
            *data = im->maps->m[i].data;
            *size = im->maps->m[i].size;
            return 0;
        }
    if (im->maps->n == MAX_MAPPINGS)
        return inferd_error_set(im->err, INFERD_EUNSUPPORTED, "more than %d external data files",
                                MAX_MAPPINGS);
    char path[PATH_MAX + 256];
    snprintf(path, sizeof path, "%s/%s", im->dir, location);
    // The resolved path must stay inside the model's folder (no symlink escapes).
    char real[PATH_MAX], realdir[PATH_MAX];
    if (!realpath(path, real) || !realpath(im->dir, realdir))
        return inferd_error_set(im->err, INFERD_ENOTFOUND,
                                "tensor '%s': external data file '%.100s' not found", what,
                                location);
    size_t dl = strlen(realdir);
    if (strncmp(real, realdir, dl) != 0 || real[dl] != '/')
        return inferd_error_set(im->err, INFERD_EINVAL,
                                "tensor '%s': external data file '%.100s' is outside the "
                                "model's folder",
                                what, location);
    int rc = eg_map_file(real, data, size, im->err);
    if (rc < 0)
        return rc;
    char *loc = strdup(location);
    if (!loc) {
        eg_unmap_file(*data, *size);
        return inferd_error_set(im->err, INFERD_EINTERNAL, "out of memory");
    }
    im->maps->m[im->maps->n].location = loc;
    im->maps->m[im->maps->n].data = *data;
    im->maps->m[im->maps->n].size = *size;
    im->maps->n++;
    return 0;
}

/* Fills t (dtype, dims) and the tensor's bytes from a TensorProto: *file_data when the bytes
 * can be borrowed (raw data in a mapping), else t->data (copied into the graph arena). */
static int read_tensor(importer *im, const Onnx__TensorProto *tp, const raw_ref *raw, eg_tensor *t,
                       const void **file_data) {
    const char *name = tp->name ? tp->name : "";
    if (!tp->has_data_type || !supported_dtype(tp->data_type))
        return inferd_error_set(
            im->err, tp->data_type == INFERD_DTYPE_STRING ? INFERD_EUNSUPPORTED : INFERD_EINVAL,
            "tensor '%.100s' has unsupported data type %d", name, (int)tp->data_type);
    if (tp->n_dims > EG_MAX_RANK)
        return inferd_error_set(im->err, INFERD_EUNSUPPORTED,
                                "tensor '%.100s' has rank %zu (at most %d supported)", name,
                                tp->n_dims, EG_MAX_RANK);
    if (tp->segment)
        return inferd_error_set(im->err, INFERD_EUNSUPPORTED, "tensor '%.100s' is segmented", name);
    t->dtype = (inferd_dtype)tp->data_type;
    t->rank = (int)tp->n_dims;
    for (size_t i = 0; i < tp->n_dims; i++) {
        if (tp->dims[i] < 0)
            return inferd_error_set(im->err, INFERD_EINVAL, "tensor '%.100s' has negative dim %lld",
                                    name, (long long)tp->dims[i]);
        t->dims[i] = tp->dims[i];
    }
    int64_t numel = eg_tensor_numel(t);
    int64_t nbytes = eg_tensor_nbytes(t);
    if (numel < 0 || nbytes < 0)
        return inferd_error_set(im->err, INFERD_EINVAL, "tensor '%.100s' is too large", name);
    size_t es = inferd_dtype_size(t->dtype);

    if (tp->has_data_location && tp->data_location == ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL) {
        const char *location = NULL;
        int64_t offset = 0, length = -1;
        for (size_t i = 0; i < tp->n_external_data; i++) {
            const Onnx__StringStringEntryProto *e = tp->external_data[i];
            if (!e->key || !e->value)
                continue;
            if (!strcmp(e->key, "location"))
                location = e->value;
            else if (!strcmp(e->key, "offset"))
                offset = strtoll(e->value, NULL, 10);
            else if (!strcmp(e->key, "length"))
                length = strtoll(e->value, NULL, 10);
        }
        if (!location)
            return inferd_error_set(im->err, INFERD_EINVAL,
                                    "tensor '%.100s' has external data without a location", name);
        const void *data;
        size_t size;
        int rc = external_file(im, name, location, &data, &size);
        if (rc < 0)
            return rc;
        if (length < 0)
            length = nbytes;
        if (offset < 0 || length != nbytes || (uint64_t)offset > size ||
            (uint64_t)length > size - (uint64_t)offset)
            return inferd_error_set(im->err, INFERD_EINVAL,
                                    "tensor '%.100s': external data (offset %lld, length %lld) "
                                    "does not match its %lld bytes or the file's %zu",
                                    name, (long long)offset, (long long)length, (long long)nbytes,
                                    size);
        *file_data = (const uint8_t *)data + offset;
        return 0;
    }

    if (raw && raw->present) {
        if ((int64_t)raw->len != nbytes)
            return inferd_error_set(im->err, INFERD_EINVAL,
                                    "tensor '%.100s' has %zu bytes of raw data, expected %lld",
                                    name, raw->len, (long long)nbytes);
        *file_data = raw->data;
        return 0;
    }
    if (tp->has_raw_data) { // raw data inside attributes (never stripped): copy
        if ((int64_t)tp->raw_data.len != nbytes)
            return inferd_error_set(im->err, INFERD_EINVAL,
                                    "tensor '%.100s' has %zu bytes of raw data, expected %lld",
                                    name, tp->raw_data.len, (long long)nbytes);
        t->data = eg_graph_alloc(im->g, (size_t)nbytes);
        if (!t->data)
            return inferd_error_set(im->err, INFERD_EINTERNAL, "out of memory");
        if (nbytes)
            memcpy(t->data, tp->raw_data.data, (size_t)nbytes);
        return 0;
    }

    // Typed fields: which one holds the data depends on the dtype (onnx.proto).
    size_t have;
    switch (t->dtype) {
    case INFERD_DTYPE_F32:
        have = tp->n_float_data;
        break;
    case INFERD_DTYPE_I64:
        have = tp->n_int64_data;
        break;
    case INFERD_DTYPE_F64:
        have = tp->n_double_data;
        break;
    case INFERD_DTYPE_U32:
    case INFERD_DTYPE_U64:
        have = tp->n_uint64_data;
        break;
    default:
        have = tp->n_int32_data;
        break;
    }
    if ((int64_t)have != numel)
        return inferd_error_set(im->err, INFERD_EINVAL,
                                "tensor '%.100s' holds %zu elements, its dims say %lld", name, have,
                                (long long)numel);
    t->data = eg_graph_alloc(im->g, (size_t)nbytes);
    if (!t->data)
        return inferd_error_set(im->err, INFERD_EINTERNAL, "out of memory");
    for (int64_t i = 0; i < numel; i++) {
        void *d = (uint8_t *)t->data + (size_t)i * es;
        switch (t->dtype) {
        case INFERD_DTYPE_F32:
            ((float *)d)[0] = tp->float_data[i];
            break;
        case INFERD_DTYPE_I64:
            ((int64_t *)d)[0] = tp->int64_data[i];
            break;
        case INFERD_DTYPE_F64:
            ((double *)d)[0] = tp->double_data[i];
            break;
        case INFERD_DTYPE_U32:
            ((uint32_t *)d)[0] = (uint32_t)tp->uint64_data[i];
            break;
        case INFERD_DTYPE_U64:
            ((uint64_t *)d)[0] = tp->uint64_data[i];
            break;
        case INFERD_DTYPE_I32:
            ((int32_t *)d)[0] = tp->int32_data[i];
            break;
        case INFERD_DTYPE_I16:
            ((int16_t *)d)[0] = (int16_t)tp->int32_data[i];
            break;
        case INFERD_DTYPE_U16:
        case INFERD_DTYPE_F16:
        case INFERD_DTYPE_BF16:
            ((uint16_t *)d)[0] = (uint16_t)tp->int32_data[i];
            break;
        default: // 1-byte types
            ((uint8_t *)d)[0] = (uint8_t)tp->int32_data[i];
            break;
        }
    }
    return 0;
}

static int read_attr(importer *im, const Onnx__NodeProto *np, const Onnx__AttributeProto *ap,
                     eg_attr *a) {
    eg_graph *g = im->g;
    a->name = eg_graph_strdup(g, ap->name ? ap->name : "");
    if (!a->name)
        return inferd_error_set(im->err, INFERD_EINTERNAL, "out of memory");
    a->type = ap->has_type ? (eg_attr_type)ap->type : EG_ATTR_TYPE_UNDEFINED;
    switch (a->type) {
    case EG_ATTR_TYPE_FLOAT:
        a->f = ap->f;
        return 0;
    case EG_ATTR_TYPE_INT:
        a->i = ap->i;
        return 0;
    case EG_ATTR_TYPE_STRING: {
        char *s = eg_graph_alloc(g, ap->s.len + 1);
        if (!s)
            return inferd_error_set(im->err, INFERD_EINTERNAL, "out of memory");
        if (ap->s.len)
            memcpy(s, ap->s.data, ap->s.len);
        a->s = s;
        a->s_len = ap->s.len;
        return 0;
    }
    case EG_ATTR_TYPE_FLOATS:
        a->n = (int)ap->n_floats;
        a->floats = eg_graph_alloc(g, sizeof(float) * (ap->n_floats + 1));
        if (!a->floats || ap->n_floats > INT32_MAX)
            return inferd_error_set(im->err, INFERD_EINTERNAL, "out of memory");
        if (ap->n_floats)
            memcpy(a->floats, ap->floats, sizeof(float) * ap->n_floats);
        return 0;
    case EG_ATTR_TYPE_INTS:
        a->n = (int)ap->n_ints;
        a->ints = eg_graph_alloc(g, sizeof(int64_t) * (ap->n_ints + 1));
        if (!a->ints || ap->n_ints > INT32_MAX)
            return inferd_error_set(im->err, INFERD_EINTERNAL, "out of memory");
        if (ap->n_ints)
            memcpy(a->ints, ap->ints, sizeof(int64_t) * ap->n_ints);
        return 0;
    case EG_ATTR_TYPE_STRINGS:
        a->n = (int)ap->n_strings;
        a->strings = eg_graph_alloc(g, sizeof(char *) * (ap->n_strings + 1));
        if (!a->strings)
            return inferd_error_set(im->err, INFERD_EINTERNAL, "out of memory");
        for (size_t i = 0; i < ap->n_strings; i++) {
            char *s = eg_graph_alloc(g, ap->strings[i].len + 1);
            if (!s)
                return inferd_error_set(im->err, INFERD_EINTERNAL, "out of memory");
            if (ap->strings[i].len)
                memcpy(s, ap->strings[i].data, ap->strings[i].len);
            a->strings[i] = s;
        }
        return 0;
    case EG_ATTR_TYPE_TENSOR: {
        if (!ap->t)
            return inferd_error_set(im->err, INFERD_EINVAL,
                                    "node '%.100s': attribute '%.60s' has no tensor",
                                    np->name ? np->name : "", a->name);
        const void *file_data = NULL;
        int rc = read_tensor(im, ap->t, NULL, &a->t, &file_data);
        if (rc < 0)
            return rc;
        if (file_data) { // external data in an attribute: copy, the mapping goes away
            int64_t nb = eg_tensor_nbytes(&a->t);
            a->t.data = eg_graph_alloc(g, (size_t)nb);
            if (!a->t.data)
                return inferd_error_set(im->err, INFERD_EINTERNAL, "out of memory");
            memcpy(a->t.data, file_data, (size_t)nb);
        }
        return 0;
    }
    default:
        return inferd_error_set(im->err, INFERD_EUNSUPPORTED,
                                "node '%.100s' (%.40s): attribute '%.60s' has unsupported type %d",
                                np->name ? np->name : "", np->op_type ? np->op_type : "", a->name,
                                (int)a->type);
    }
}

/* Turns a Constant node into a constant value (its only output). */
static int import_constant(importer *im, const Onnx__NodeProto *np, int out_id) {
    eg_value *v = &im->g->values[out_id];
    for (size_t i = 0; i < np->n_attribute; i++) {
        const Onnx__AttributeProto *ap = np->attribute[i];
        eg_attr a;
        memset(&a, 0, sizeof a);
        if (!ap->name)
            continue;
        int rc = read_attr(im, np, ap, &a);
        if (rc < 0)
            return rc;
        eg_tensor *t = &v->t;
        if (!strcmp(a.name, "value") && a.type == EG_ATTR_TYPE_TENSOR) {
            *t = a.t;
        } else if (!strcmp(a.name, "value_float") && a.type == EG_ATTR_TYPE_FLOAT) {
            t->dtype = INFERD_DTYPE_F32;
            t->rank = 0;
            t->data = eg_graph_alloc(im->g, sizeof(float));
            if (t->data)
                *(float *)t->data = a.f;
        } else if (!strcmp(a.name, "value_int") && a.type == EG_ATTR_TYPE_INT) {
            t->dtype = INFERD_DTYPE_I64;
            t->rank = 0;
            t->data = eg_graph_alloc(im->g, sizeof(int64_t));
            if (t->data)
                *(int64_t *)t->data = a.i;
        } else if (!strcmp(a.name, "value_floats") && a.type == EG_ATTR_TYPE_FLOATS) {
            t->dtype = INFERD_DTYPE_F32;
            t->rank = 1;
            t->dims[0] = a.n;
            t->data = a.floats;
        } else if (!strcmp(a.name, "value_ints") && a.type == EG_ATTR_TYPE_INTS) {
            t->dtype = INFERD_DTYPE_I64;
            t->rank = 1;
            t->dims[0] = a.n;
            t->data = a.ints;
        } else {
            return inferd_error_set(im->err, INFERD_EUNSUPPORTED,
                                    "Constant node '%.100s': attribute '%.60s' is not supported",
                                    np->name ? np->name : "", a.name);
        }
        if (!t->data)
            return inferd_error_set(im->err, INFERD_EINTERNAL, "out of memory");
        v->is_const = 1;
        return 0;
    }
    return inferd_error_set(im->err, INFERD_EINVAL, "Constant node '%.100s' has no value",
                            np->name ? np->name : "");
}

static int read_value_info(importer *im, const Onnx__ValueInfoProto *vi, eg_value *v,
                           const char *what) {
    const Onnx__TypeProto *tp = vi->type;
    if (!tp || tp->value_case != ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE || !tp->tensor_type)
        return inferd_error_set(im->err, INFERD_EUNSUPPORTED,
                                "%s '%.100s' is not a tensor (sequences and maps are not "
                                "supported)",
                                what, v->name);
    const Onnx__TypeProto__Tensor *tt = tp->tensor_type;
    if (!tt->has_elem_type || !supported_dtype(tt->elem_type))
        return inferd_error_set(im->err, INFERD_EUNSUPPORTED,
                                "%s '%.100s' has unsupported element type %d", what, v->name,
                                (int)tt->elem_type);
    v->t.dtype = (inferd_dtype)tt->elem_type;
    if (!tt->shape) { // unknown rank
        v->t.rank = -1;
        return 0;
    }
    if (tt->shape->n_dim > EG_MAX_RANK)
        return inferd_error_set(im->err, INFERD_EUNSUPPORTED,
                                "%s '%.100s' has rank %zu (at most %d supported)", what, v->name,
                                tt->shape->n_dim, EG_MAX_RANK);
    v->t.rank = (int)tt->shape->n_dim;
    for (size_t i = 0; i < tt->shape->n_dim; i++) {
        const Onnx__TensorShapeProto__Dimension *d = tt->shape->dim[i];
        v->t.dims[i] = -1;
        if (d->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE &&
            d->dim_value >= 0)
            v->t.dims[i] = d->dim_value;
        else if (d->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM &&
                 d->dim_param)
            v->sym[i] = eg_graph_strdup(im->g, d->dim_param);
    }
    return 0;
}

static int import_graph(importer *im, const Onnx__ModelProto *mp, const strip_state *st) {
    eg_graph *g = im->g;
    inferd_error *err = im->err;
    const Onnx__GraphProto *gp = mp->graph;
    int rc;

    g->opset = 0;
    for (size_t i = 0; i < mp->n_opset_import; i++) {
        const Onnx__OperatorSetIdProto *os = mp->opset_import[i];
        if ((!os->domain || !os->domain[0] || !strcmp(os->domain, "ai.onnx")) && os->has_version)
            g->opset = (int)os->version;
    }
    if (g->opset <= 0)
        return inferd_error_set(err, INFERD_EINVAL, "the model declares no ONNX opset");
    if (g->opset < 7 || g->opset > 21)
        return inferd_error_set(err, INFERD_EUNSUPPORTED,
                                "opset %d is not supported (7 to 21; tested 11 to 17)", g->opset);
    if (gp->n_sparse_initializer)
        return inferd_error_set(err, INFERD_EUNSUPPORTED, "sparse initializers are not supported");
    if (gp->n_node > MAX_NODES)
        return inferd_error_set(err, INFERD_EUNSUPPORTED, "the graph has %zu nodes (limit %d)",
                                gp->n_node, MAX_NODES);
    if (st->n_raws != gp->n_initializer)
        return inferd_error_set(err, INFERD_EINTERNAL, "initializer count mismatch");

    for (size_t i = 0; i < gp->n_initializer; i++) {
        const Onnx__TensorProto *tp = gp->initializer[i];
        if (!tp->name || !tp->name[0])
            return inferd_error_set(err, INFERD_EINVAL, "initializer %zu has no name", i);
        if (value_for(im, tp->name, 0) >= 0)
            return inferd_error_set(err, INFERD_EINVAL, "initializer '%.100s' is defined twice",
                                    tp->name);
        int id = value_for(im, tp->name, 1);
        if (id < 0)
            return id;
        eg_value *v = &g->values[id];
        if ((rc = read_tensor(im, tp, &st->raws[i], &v->t, &v->file_data)) < 0)
            return rc;
        v->is_const = 1;
    }

    int *inputs = eg_graph_alloc(g, sizeof(int) * (gp->n_input + 1));
    if (!inputs)
        return inferd_error_set(err, INFERD_EINTERNAL, "out of memory");
    g->inputs = inputs;
    for (size_t i = 0; i < gp->n_input; i++) {
        const Onnx__ValueInfoProto *vi = gp->input[i];
        if (!vi->name || !vi->name[0])
            return inferd_error_set(err, INFERD_EINVAL, "graph input %zu has no name", i);
        int id = value_for(im, vi->name, 0);
        if (id >= 0) {
            if (g->values[id].is_const)
                continue; // an initializer listed as input (IR < 4): stays a constant
            return inferd_error_set(err, INFERD_EINVAL, "graph input '%.100s' is listed twice",
                                    vi->name);
        }
        id = value_for(im, vi->name, 1);
        if (id < 0)
            return id;
        if ((rc = read_value_info(im, vi, &g->values[id], "input")) < 0)
            return rc;
        if (g->values[id].t.rank < 0)
            return inferd_error_set(err, INFERD_EUNSUPPORTED,
                                    "input '%.100s' has no declared shape", vi->name);
        g->inputs[g->n_inputs++] = id;
    }

    char unsupported[200] = "";
    int n_unsupported = 0;
    for (size_t i = 0; i < gp->n_node; i++) {
        const Onnx__NodeProto *np = gp->node[i];
        const char *op_type = np->op_type ? np->op_type : "";
        const char *name = np->name ? np->name : "";
        eg_op op = eg_op_from_onnx(np->domain, op_type);
        if (op == EG_OP_UNKNOWN) {
            if (n_unsupported++ < 3) {
                size_t l = strlen(unsupported);
                snprintf(unsupported + l, sizeof unsupported - l,
                         "%s'%.40s%s%.30s' in node '%.40s'", l ? ", " : "", op_type,
                         np->domain && np->domain[0] ? "' domain '" : "",
                         np->domain && np->domain[0] ? np->domain : "", name);
            }
            continue;
        }
        if (op == EG_OP_Constant) {
            if (np->n_output != 1 || !np->output[0][0])
                return inferd_error_set(err, INFERD_EINVAL,
                                        "Constant node '%.100s' must have one output", name);
            if (value_for(im, np->output[0], 0) >= 0)
                return inferd_error_set(err, INFERD_EINVAL,
                                        "node '%.100s' writes '%.100s', which already exists", name,
                                        np->output[0]);
            int id = value_for(im, np->output[0], 1);
            if (id < 0)
                return id;
            if ((rc = import_constant(im, np, id)) < 0)
                return rc;
            continue;
        }
        if (np->n_input > 4096 || np->n_output > 4096)
            return inferd_error_set(err, INFERD_EINVAL, "node '%.100s' has too many inputs", name);
        int nid = eg_graph_add_node(g, op, name, (int)np->n_input, (int)np->n_output, err);
        if (nid < 0)
            return nid;
        eg_node *n = &g->nodes[nid];
        n->op_type = eg_op_name(op);
        for (size_t j = 0; j < np->n_input; j++) {
            if (!np->input[j][0])
                continue;
            int id = value_for(im, np->input[j], 1);
            if (id < 0)
                return id;
            n = &g->nodes[nid];
            n->in[j] = id;
        }
        for (size_t j = 0; j < np->n_output; j++) {
            if (!np->output[j][0])
                continue;
            int id = value_for(im, np->output[j], 1);
            if (id < 0)
                return id;
            n = &g->nodes[nid];
            n->out[j] = id;
        }
        if (np->n_attribute) {
            if (np->n_attribute > 1024)
                return inferd_error_set(err, INFERD_EINVAL, "node '%.100s' has too many attributes",
                                        name);
            eg_attr *attrs = eg_graph_alloc(g, sizeof(eg_attr) * np->n_attribute);
            if (!attrs)
                return inferd_error_set(err, INFERD_EINTERNAL, "out of memory");
            for (size_t j = 0; j < np->n_attribute; j++)
                if ((rc = read_attr(im, np, np->attribute[j], &attrs[j])) < 0)
                    return rc;
            n = &g->nodes[nid];
            n->attr = attrs;
            n->n_attr = (int)np->n_attribute;
        }
    }
    if (n_unsupported)
        return inferd_error_set(err, INFERD_EUNSUPPORTED, "unsupported op%s: %s%s",
                                n_unsupported > 1 ? "s" : "", unsupported,
                                n_unsupported > 3 ? ", ..." : "");

    if (gp->n_output == 0)
        return inferd_error_set(err, INFERD_EINVAL, "the graph has no outputs");
    g->outputs = eg_graph_alloc(g, sizeof(int) * gp->n_output);
    if (!g->outputs)
        return inferd_error_set(err, INFERD_EINTERNAL, "out of memory");
    for (size_t i = 0; i < gp->n_output; i++) {
        const Onnx__ValueInfoProto *vi = gp->output[i];
        int id = vi->name ? value_for(im, vi->name, 0) : -1;
        if (id < 0)
            return inferd_error_set(err, INFERD_EINVAL,
                                    "graph output '%.100s' is not produced by any node",
                                    vi->name ? vi->name : "");
        eg_value *v = &g->values[id];
        eg_tensor known = v->t;
        if ((rc = read_value_info(im, vi, v, "output")) < 0)
            return rc;
        if (known.data) // an output that is a constant keeps its data and shape
            v->t = known;
        g->outputs[g->n_outputs++] = id;
    }
    return eg_graph_toposort(g, err);
}

int eg_onnx_import(const void *data, size_t size, const char *path, inferd_mem_account *acct,
                   eg_graph **out, eg_mappings **maps_out, uint64_t *skeleton_hash,
                   inferd_error *err) {
    *out = NULL;
    *maps_out = NULL;
    strip_state st = {0};
    uint8_t *stripped = NULL;
    size_t stripped_len = 0;
    Onnx__ModelProto *mp = NULL;
    importer im = {.err = err};
    int rc = strip_model(data, size, &stripped, &stripped_len, &st, err);
    if (rc < 0)
        goto fail;
    if (skeleton_hash)
        *skeleton_hash = eg_hash64(stripped, stripped_len, (uint64_t)st.n_raws);
    mp = onnx__model_proto__unpack(NULL, stripped_len, stripped);
    if (!mp || !mp->graph) {
        rc = inferd_error_set(err, INFERD_EINVAL, "not a valid ONNX file: %s",
                              mp ? "no graph" : "protobuf parse failed");
        goto fail;
    }
    im.g = eg_graph_create(acct);
    im.maps = calloc(1, sizeof *im.maps);
    if (!im.g || !im.maps) {
        rc = inferd_error_set(err, INFERD_EINTERNAL, "out of memory");
        goto fail;
    }
    if (path) {
        snprintf(im.dir, sizeof im.dir, "%s", path);
        char *slash = strrchr(im.dir, '/');
        if (slash)
            *slash = 0;
        else
            snprintf(im.dir, sizeof im.dir, ".");
    }
    rc = import_graph(&im, mp, &st);
    if (rc < 0)
        goto fail;
    onnx__model_proto__free_unpacked(mp, NULL);
    free(stripped);
    free(st.raws);
    free(im.ix.slots);
    *out = im.g;
    *maps_out = im.maps;
    return 0;
fail:
    if (mp)
        onnx__model_proto__free_unpacked(mp, NULL);
    free(stripped);
    free(st.raws);
    free(im.ix.slots);
    eg_graph_destroy(im.g);
    eg_mappings_release(im.maps);
    return rc < 0 ? rc : INFERD_EINTERNAL;
}
