#include "util/npy.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/alloc.h"

static const struct {
    const char *descr;
    inferd_dtype dtype;
} types[] = {
    {"f4", INFERD_DTYPE_F32}, {"f8", INFERD_DTYPE_F64}, {"f2", INFERD_DTYPE_F16},
    {"i8", INFERD_DTYPE_I64}, {"i4", INFERD_DTYPE_I32}, {"i2", INFERD_DTYPE_I16},
    {"i1", INFERD_DTYPE_I8},  {"u8", INFERD_DTYPE_U64}, {"u4", INFERD_DTYPE_U32},
    {"u2", INFERD_DTYPE_U16}, {"u1", INFERD_DTYPE_U8},  {"b1", INFERD_DTYPE_BOOL},
};

/* Finds the value text after 'key': in the header dict; NULL if absent. */
static const char *find_key(const char *h, const char *key) {
    char pat[32];
    snprintf(pat, sizeof pat, "'%s'", key);
    const char *p = strstr(h, pat);
    if (!p)
        return NULL;
    p += strlen(pat);
    while (*p == ' ')
        p++;
    if (*p != ':')
        return NULL;
    p++;
    while (*p == ' ')
        p++;
    return p;
}

int inferd_npy_parse(const void *data, size_t size, inferd_tensor *out, inferd_error *err) {
    const unsigned char *b = data;
    memset(out, 0, sizeof *out);
    if (size < 10 || memcmp(b, "\x93NUMPY", 6) != 0)
        return inferd_error_set(err, INFERD_EINVAL, "not an .npy file (bad magic)");
    int major = b[6];
    size_t hlen, hstart;
    if (major == 1) {
        hlen = (size_t)b[8] | (size_t)b[9] << 8;
        hstart = 10;
    } else if (major == 2 || major == 3) {
        if (size < 12)
            return inferd_error_set(err, INFERD_EINVAL, "truncated .npy header");
        hlen = (size_t)b[8] | (size_t)b[9] << 8 | (size_t)b[10] << 16 | (size_t)b[11] << 24;
        hstart = 12;
    } else {
        return inferd_error_set(err, INFERD_EUNSUPPORTED, ".npy format version %d", major);
    }
    if (hlen > size - hstart || hlen > 65536)
        return inferd_error_set(err, INFERD_EINVAL, "truncated .npy header");
    char h[65537];
    memcpy(h, b + hstart, hlen);
    h[hlen] = 0;
    const char *d = find_key(h, "descr"), *f = find_key(h, "fortran_order"),
               *s = find_key(h, "shape");
    if (!d || !f || !s || *d != '\'' || *s != '(')
        return inferd_error_set(err, INFERD_EINVAL,
                                ".npy header lacks descr, fortran_order or shape");
    if (strncmp(f, "False", 5) != 0)
        return inferd_error_set(err, INFERD_EUNSUPPORTED,
                                "Fortran-order .npy arrays are not supported");
    d++;
    if (*d == '>' && strncmp(d + 1, "i1", 2) && strncmp(d + 1, "u1", 2) && strncmp(d + 1, "b1", 2))
        return inferd_error_set(err, INFERD_EUNSUPPORTED,
                                "big-endian .npy arrays are not supported");
    if (*d != '<' && *d != '|' && *d != '>')
        return inferd_error_set(err, INFERD_EINVAL, "bad .npy descr");
    d++;
    out->dtype = INFERD_DTYPE_INVALID;
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
        if (!strncmp(d, types[i].descr, 2) && d[2] == '\'')
            out->dtype = types[i].dtype;
    if (out->dtype == INFERD_DTYPE_INVALID)
        return inferd_error_set(err, INFERD_EUNSUPPORTED, "unsupported .npy dtype '%.8s'", d);
    s++;
    out->rank = 0;
    for (;;) {
        while (*s == ' ' || *s == ',')
            s++;
        if (*s == ')')
            break;
        if (*s < '0' || *s > '9')
            return inferd_error_set(err, INFERD_EINVAL, "bad .npy shape");
        if (out->rank == INFERD_MAX_RANK)
            return inferd_error_set(err, INFERD_EUNSUPPORTED, ".npy array of rank > %d",
                                    INFERD_MAX_RANK);
        errno = 0;
        char *end;
        long long v = strtoll(s, &end, 10);
        if (errno || v < 0)
            return inferd_error_set(err, INFERD_EINVAL, "bad .npy shape");
        out->dims[out->rank++] = v;
        s = end;
        while (*s == 'L')
            s++;
    }
    int64_t n = inferd_tensor_numel(out->rank, out->dims);
    size_t es = inferd_dtype_size(out->dtype);
    size_t body = size - hstart - hlen;
    if (n < 0 || (uint64_t)n > body / es)
        return inferd_error_set(err, INFERD_EINVAL, ".npy data is shorter than its shape says");
    out->nbytes = (size_t)n * es;
    out->data = (void *)(b + hstart + hlen);
    return 0;
}

int inferd_npy_read_file(const char *path, inferd_tensor *out, inferd_error *err) {
    FILE *f = fopen(path, "rb");
    if (!f)
        return inferd_error_set(err, INFERD_ENOTFOUND, "cannot open %s: %s", path, strerror(errno));
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    if (n < 0) {
        fclose(f);
        return inferd_error_set(err, INFERD_EINVAL, "cannot read %s", path);
    }
    char *buf = malloc((size_t)n + 1);
    if (!buf || fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        fclose(f);
        return inferd_error_set(err, INFERD_EINVAL, "cannot read %s", path);
    }
    fclose(f);
    inferd_tensor t;
    int rc = inferd_npy_parse(buf, (size_t)n, &t, err);
    if (rc < 0) {
        free(buf);
        inferd_error_prefix(err, "%s: ", path);
        return rc;
    }
    *out = t;
    out->data = inferd_malloc(NULL, t.nbytes);
    if (!out->data) {
        free(buf);
        return inferd_error_set(err, INFERD_EINTERNAL, "out of memory reading %s", path);
    }
    if (t.nbytes)
        memcpy(out->data, t.data, t.nbytes);
    free(buf);
    return 0;
}

int inferd_npy_write_file(const char *path, const inferd_tensor *t, inferd_error *err) {
    const char *descr = NULL;
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
        if (types[i].dtype == t->dtype)
            descr = types[i].descr;
    if (!descr)
        return inferd_error_set(err, INFERD_EUNSUPPORTED, "cannot write %s as .npy",
                                inferd_dtype_name(t->dtype));
    char shape[256] = "";
    size_t len = 0;
    for (int i = 0; i < t->rank; i++)
        len += (size_t)snprintf(shape + len, sizeof shape - len, "%lld,%s", (long long)t->dims[i],
                                i + 1 < t->rank ? " " : "");
    if (t->rank > 1 && len > 0)
        shape[len - 1] = 0; // "(2, 3)" rather than "(2, 3,)"
    char header[512];
    int hl = snprintf(header, sizeof header,
                      "{'descr': '%c%s', 'fortran_order': False, 'shape': (%s), }",
                      descr[0] == 'b' || descr[1] == '1' ? '|' : '<', descr, shape);
    // Pad with spaces so that data starts at a multiple of 64, ending with a newline.
    int total = 10 + hl + 1;
    int pad = (64 - total % 64) % 64;
    FILE *f = fopen(path, "wb");
    if (!f)
        return inferd_error_set(err, INFERD_EINVAL, "cannot write %s: %s", path, strerror(errno));
    unsigned hlen = (unsigned)(hl + pad + 1);
    unsigned char pre[10] = {0x93,
                             'N',
                             'U',
                             'M',
                             'P',
                             'Y',
                             1,
                             0,
                             (unsigned char)(hlen & 0xff),
                             (unsigned char)(hlen >> 8)};
    int ok = fwrite(pre, 1, 10, f) == 10 && fwrite(header, 1, (size_t)hl, f) == (size_t)hl;
    for (int i = 0; ok && i < pad; i++)
        ok = fputc(' ', f) != EOF;
    ok = ok && fputc('\n', f) != EOF;
    ok = ok && (t->nbytes == 0 || fwrite(t->data, 1, t->nbytes, f) == t->nbytes);
    ok = (fclose(f) == 0) && ok;
    return ok ? 0 : inferd_error_set(err, INFERD_EINTERNAL, "cannot write %s", path);
}
