/* fuzz_binary_tensors.c: Triton's binary tensor extension. Rather than hoping the fuzzer writes
 * a JSON header by itself, the first bytes of the input choose, for each input of a model,
 * whether it is sent, its datatype, its dims and its binary_data_size (exact, off by a little,
 * an arbitrary value below 2^63, or the value that makes the sizes so far sum to a few bytes
 * modulo 2^64, so sums that wrap around are tried), plus the
 * Inference-Header-Content-Length (exact, short, long, absent); a JSON header is written from
 * those choices and the rest of the input is the binary payload. On a successful parse the
 * target checks what the parser promises (every input present with the model's dtype and rank,
 * its byte size equal to the shape's, BYTES elements that walk exactly to the end) and formats
 * a response. Any broken promise traps. */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "api/kserve.h"
#include "util/alloc.h"

static const inferd_tensor_desc text_in[] = {
    {"input_ids", INFERD_DTYPE_I64, 2, {-1, -1}},
    {"attention_mask", INFERD_DTYPE_I32, 2, {-1, -1}},
    {"text", INFERD_DTYPE_STRING, 2, {-1, 1}},
};
static const inferd_tensor_desc text_out[] = {{"logits", INFERD_DTYPE_F32, 2, {-1, 2}}};
static const inferd_tensor_desc all_in[] = {
    {"b", INFERD_DTYPE_BOOL, 1, {-1}},   {"u8", INFERD_DTYPE_U8, 2, {2, -1}},
    {"i16", INFERD_DTYPE_I16, 1, {-1}},  {"h", INFERD_DTYPE_F16, 1, {-1}},
    {"bf", INFERD_DTYPE_BF16, 1, {3}},   {"u64", INFERD_DTYPE_U64, 1, {-1}},
    {"s", INFERD_DTYPE_STRING, 1, {-1}}, {"s2", INFERD_DTYPE_STRING, 2, {-1, -1}},
    {"s3", INFERD_DTYPE_STRING, 1, {1}}, {"f64", INFERD_DTYPE_F64, 3, {1, -1, 1}},
};
static const inferd_tensor_desc all_out[] = {{"s", INFERD_DTYPE_STRING, 1, {-1}}};
static const inferd_kserve_model models[] = {
    {.name = "text",
     .version = 1,
     .max_batch = 4,
     .n_inputs = 3,
     .inputs = text_in,
     .n_outputs = 1,
     .outputs = text_out},
    {.name = "all",
     .version = 2,
     .max_batch = 0,
     .n_inputs = 10,
     .inputs = all_in,
     .n_outputs = 1,
     .outputs = all_out},
};

static const inferd_dtype dtypes[] = {
    INFERD_DTYPE_BOOL, INFERD_DTYPE_U8,  INFERD_DTYPE_I8,  INFERD_DTYPE_U16,    INFERD_DTYPE_I16,
    INFERD_DTYPE_U32,  INFERD_DTYPE_I32, INFERD_DTYPE_U64, INFERD_DTYPE_I64,    INFERD_DTYPE_F16,
    INFERD_DTYPE_BF16, INFERD_DTYPE_F32, INFERD_DTYPE_F64, INFERD_DTYPE_STRING,
};

/* Reads fuzz bytes from the front; zeros once they run out. */
typedef struct provider {
    const uint8_t *p;
    size_t n;
} provider;

static uint8_t take8(provider *d) {
    if (!d->n)
        return 0;
    d->n--;
    return *d->p++;
}

static uint64_t take64(provider *d) {
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | take8(d);
    return v;
}

static int64_t pick_dim(provider *d) {
    uint8_t b = take8(d);
    switch (b >> 6) {
    case 0:
        return b & 7; // small, including 0
    case 1:
        return (int64_t)(b & 63) - 32; // negative too
    case 2:
        return (int64_t)take8(d) << 8 | take8(d);
    default: {
        uint64_t v = take64(d);
        return (int64_t)(v >> 1); // up to 2^63 - 1
    }
    }
}

static void check(int ok) {
    if (!ok)
        __builtin_trap();
}

/* What a successful parse promises. */
static void check_request(const inferd_kserve_model *m, const inferd_kserve_request *r) {
    check(r->n_inputs == m->n_inputs);
    for (int i = 0; i < m->n_inputs; i++) {
        const inferd_tensor *t = &r->inputs[i];
        check(t->dtype == m->inputs[i].dtype && t->rank == m->inputs[i].rank);
        int64_t numel = inferd_tensor_numel(t->rank, t->dims);
        check(numel >= 1);
        for (int k = 0; k < t->rank; k++) {
            check(t->dims[k] >= 1);
            check(m->max_batch > 0 && k == 0
                      ? t->dims[0] <= m->max_batch
                      : m->inputs[i].dims[k] < 0 || m->inputs[i].dims[k] == t->dims[k]);
        }
        if (m->max_batch > 0)
            check(t->dims[0] == r->inputs[0].dims[0]);
        if (t->dtype != INFERD_DTYPE_STRING) {
            check(t->nbytes == (size_t)numel * inferd_dtype_size(t->dtype));
        } else {
            size_t off = 0;
            int64_t count = 0;
            const uint8_t *p = t->data;
            while (off < t->nbytes) {
                check(t->nbytes - off >= 4);
                uint32_t len = (uint32_t)p[off] | (uint32_t)p[off + 1] << 8 |
                               (uint32_t)p[off + 2] << 16 | (uint32_t)p[off + 3] << 24;
                check(len <= t->nbytes - off - 4);
                off += 4 + (size_t)len;
                count++;
            }
            check(count == numel);
        }
        if (t->nbytes) {
            volatile uint8_t x = ((const uint8_t *)t->data)[t->nbytes - 1];
            (void)x;
        }
    }
    for (int j = 0; j < r->n_outputs; j++)
        check(r->output_index[j] >= 0 && r->output_index[j] < m->n_outputs);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    provider d = {data, size};
    uint8_t head = take8(&d);
    const inferd_kserve_model *m = &models[head & 1];
    char json[4096];
    size_t n = (size_t)snprintf(json, sizeof json,
                                "{\"id\":\"f\",\"parameters\":"
                                "{\"binary_data_output\":%s},\"inputs\":[",
                                (head & 2) ? "true" : "false");
    int first = 1;
    uint64_t declared = 0; // wraps on purpose
    for (int i = 0; i < m->n_inputs; i++) {
        uint8_t f = take8(&d);
        if ((f & 7) == 7)
            continue; // left out: a missing input
        const inferd_tensor_desc *desc = &m->inputs[i];
        inferd_dtype dt =
            (f & 8) ? dtypes[take8(&d) % (sizeof dtypes / sizeof dtypes[0])] : desc->dtype;
        int rank = desc->rank + ((f & 0x30) == 0x30 ? 1 : 0);
        int64_t dims[INFERD_MAX_RANK + 1];
        for (int k = 0; k < rank; k++)
            dims[k] =
                ((f & 0x40) || k >= desc->rank || desc->dims[k] < 0) ? pick_dim(&d) : desc->dims[k];
        int64_t numel = inferd_tensor_numel(rank, dims);
        uint64_t esz = inferd_dtype_size(dt);
        uint64_t size;
        switch (f >> 7 | (f & 1) << 1) {
        case 0: // exact for fixed-size types; a BYTES payload length from the fuzzer
            size = esz ? (uint64_t)(numel < 0 ? 0 : numel) * esz : take8(&d);
            break;
        case 1:
            size = (esz ? (uint64_t)(numel < 0 ? 0 : numel) * esz : 0) + (int8_t)take8(&d);
            break;
        case 2:
            size = take64(&d) >> 1; // up to 2^63 - 1
            break;
        default: // what brings the sum of sizes so far to a small number modulo 2^64
            size = (0 - declared) + take8(&d);
            if (size > INT64_MAX)
                size = take64(&d) >> 1;
            break;
        }
        declared += size;
        n += (size_t)snprintf(json + n, sizeof json - n,
                              "%s{\"name\":\"%s\",\"datatype\":\"%s\",\"shape\":[",
                              first ? "" : ",", desc->name, inferd_dtype_kserve_name(dt));
        for (int k = 0; k < rank && n < sizeof json; k++)
            n += (size_t)snprintf(json + n, sizeof json - n, "%s%" PRId64, k ? "," : "", dims[k]);
        if (n < sizeof json)
            n += (size_t)snprintf(json + n, sizeof json - n,
                                  "],\"parameters\":{\"binary_data_size\":%" PRIu64 "}}", size);
        first = 0;
        if (n >= sizeof json)
            return 0;
    }
    n += (size_t)snprintf(json + n, sizeof json - n, "]}");
    if (n >= sizeof json)
        return 0;
    // The body is the header followed by whatever input is left.
    size_t body_len = n + d.n;
    uint8_t *body = inferd_malloc(NULL, body_len ? body_len : 1);
    if (!body)
        return 0;
    memcpy(body, json, n);
    memcpy(body + n, d.p, d.n);
    long long hl = (long long)n;
    switch ((head >> 2) & 3) {
    case 1:
        hl -= (head >> 4) + 1; // inside the JSON
        break;
    case 2:
        hl += (head >> 4); // into the payload, or past the body
        break;
    case 3:
        hl = (head & 0x10) ? -1 : (long long)body_len; // absent, or the whole body
        break;
    }
    inferd_kserve_request r;
    inferd_error err;
    int rc = inferd_kserve_parse_infer(m, body, body_len, hl, &r, &err);
#ifdef FUZZ_DEBUG // build with -DFUZZ_DEBUG to see what a corpus entry turns into
    fprintf(stderr, "header %lld of %zu: %.*s\n-> %d %s\n", hl, body_len, (int)n, json, rc,
            rc ? err.msg : "");
#endif
    if (rc == 0) {
        check_request(m, &r);
        // Echo one output the formatter can walk: rows of logits or the strings back.
        inferd_tensor out = {0};
        float logits[8] = {0};
        if (m == &models[0]) {
            out = (inferd_tensor){.dtype = INFERD_DTYPE_F32,
                                  .rank = 2,
                                  .dims = {r.inputs[0].dims[0], 2},
                                  .data = logits,
                                  .nbytes = (size_t)r.inputs[0].dims[0] * 8};
        } else {
            const inferd_tensor *s = &r.inputs[6];
            out = (inferd_tensor){.dtype = INFERD_DTYPE_STRING,
                                  .rank = 1,
                                  .dims = {s->dims[0]},
                                  .data = s->data,
                                  .nbytes = s->nbytes};
        }
        char *resp;
        size_t resp_len, json_len;
        if (inferd_kserve_format_infer(m, &r, &out, &resp, &resp_len, &json_len, &err) == 0) {
            check(json_len <= resp_len);
            inferd_free(resp);
        }
    }
    inferd_kserve_request_deinit(&r);
    inferd_free(body);
    return 0;
}
