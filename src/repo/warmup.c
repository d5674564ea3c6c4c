/* warmup.c: see warmup.h. No locks; everything it allocates is freed before it returns. */
#include "repo/warmup.h"

#include <string.h>

#include "util/alloc.h"
#include "util/dtype.h"

#define DEFAULT_SEQ 8
#define DEFAULT_TEXT "warm up"
#define MAX_ELEMENTS ((int64_t)1 << 24)

/* Fills t's elements with v (as the tensor's dtype). */
static void fill(inferd_tensor *t, int64_t n, int64_t iv, double fv) {
    for (int64_t i = 0; i < n; i++) {
        switch (t->dtype) {
        case INFERD_DTYPE_I64:
            ((int64_t *)t->data)[i] = iv;
            break;
        case INFERD_DTYPE_I32:
            ((int32_t *)t->data)[i] = (int32_t)iv;
            break;
        case INFERD_DTYPE_I16:
        case INFERD_DTYPE_U16:
            ((int16_t *)t->data)[i] = (int16_t)iv;
            break;
        case INFERD_DTYPE_U32:
            ((uint32_t *)t->data)[i] = (uint32_t)iv;
            break;
        case INFERD_DTYPE_U64:
            ((uint64_t *)t->data)[i] = (uint64_t)iv;
            break;
        case INFERD_DTYPE_I8:
        case INFERD_DTYPE_U8:
        case INFERD_DTYPE_BOOL:
            ((uint8_t *)t->data)[i] = (uint8_t)iv;
            break;
        case INFERD_DTYPE_F32:
            ((float *)t->data)[i] = (float)fv;
            break;
        case INFERD_DTYPE_F64:
            ((double *)t->data)[i] = fv;
            break;
        default:
            break; // other widths stay zero (calloc)
        }
    }
}

static int contains(const char *name, const char *word) {
    return name && strstr(name, word) != NULL;
}

/* Generated inputs: rows x seq with the model's fixed dims kept. */
static int generate(const inferd_repo_model *m, int max_batch, const inferd_config *cfg,
                    inferd_tensor *in, inferd_error *err) {
    int rows = cfg->warmup_batch > 0 ? cfg->warmup_batch : 1;
    int seq = cfg->warmup_seq > 0 ? cfg->warmup_seq : DEFAULT_SEQ;
    for (int i = 0; i < m->n_inputs; i++) {
        const inferd_tensor_desc *d = &m->inputs[i];
        if (d->dtype == INFERD_DTYPE_STRING)
            return 1;
        inferd_tensor *t = &in[i];
        *t = (inferd_tensor){.dtype = d->dtype, .rank = d->rank};
        int64_t n = 1;
        for (int k = 0; k < d->rank; k++) {
            t->dims[k] = d->dims[k] >= 0 ? d->dims[k] : (k == 0 && max_batch > 0) ? rows : seq;
            n *= t->dims[k] > 0 ? t->dims[k] : 1;
            if (n > MAX_ELEMENTS)
                return inferd_error_set(err, INFERD_ETOOLARGE,
                                        "warm-up input '%s' would have over %lld elements", d->name,
                                        (long long)MAX_ELEMENTS);
        }
        size_t es = inferd_dtype_size(d->dtype);
        t->nbytes = (size_t)n * (es ? es : 1);
        t->data = inferd_calloc(NULL, 1, t->nbytes ? t->nbytes : 1);
        if (!t->data)
            return inferd_error_set(err, INFERD_EINTERNAL, "out of memory for the warm-up");
        int type_ids = contains(d->name, "type");
        fill(t, n, type_ids ? 0 : 1, 0.0);
    }
    return 0;
}

/* Inputs from the pipeline: the warm-up text, encoded with the version's own tokenizer,
 * repeated for each row. */
static int from_pipeline(const inferd_repo_model *m, const inferd_pipeline *p,
                         const inferd_config *cfg, inferd_tensor *in, inferd_error *err) {
    int rows = cfg->warmup_batch > 0 ? cfg->warmup_batch : 1;
    const char *text = cfg->warmup_text[0] ? cfg->warmup_text : DEFAULT_TEXT;
    int32_t maxlen = inferd_pipeline_max_length(p);
    inferd_scratch *scratch = NULL;
    int rc = inferd_scratch_create(NULL, &scratch);
    int32_t *ids = inferd_calloc(NULL, (size_t)maxlen * 2 + 2, sizeof *ids);
    inferd_encoding *encs = inferd_calloc(NULL, (size_t)rows, sizeof *encs);
    inferd_tensor out[3];
    memset(out, 0, sizeof out);
    if (rc < 0 || !ids || !encs) {
        rc = inferd_error_set(err, INFERD_EINTERNAL, "out of memory for the warm-up");
        goto done;
    }
    encs[0] = (inferd_encoding){.ids = ids, .type_ids = ids + maxlen + 1};
    if ((rc = inferd_pipeline_encode(p, scratch, text, strlen(text), 0, &encs[0], err)) < 0)
        goto done;
    for (int r = 1; r < rows; r++)
        encs[r] = encs[0];
    int64_t L = inferd_pipeline_batch_length(p, encs, (size_t)rows);
    size_t n_in = inferd_pipeline_input_count(p);
    for (size_t i = 0; i < n_in; i++) {
        size_t es = inferd_dtype_size(inferd_pipeline_input_dtype(p, i));
        out[i].nbytes = (size_t)rows * (size_t)L * (es ? es : 8);
        out[i].data = inferd_calloc(NULL, 1, out[i].nbytes ? out[i].nbytes : 1);
        if (!out[i].data) {
            rc = inferd_error_set(err, INFERD_EINTERNAL, "out of memory for the warm-up");
            goto done;
        }
    }
    if ((rc = inferd_pipeline_assemble(p, encs, (size_t)rows, L, out, err)) < 0)
        goto done;
    // The pipeline feeds every model input (checked at load); put them in the model's order.
    for (int j = 0; j < m->n_inputs; j++) {
        for (size_t i = 0; i < n_in; i++)
            if (out[i].data && !strcmp(inferd_pipeline_input_name(p, i), m->inputs[j].name)) {
                in[j] = out[i];
                out[i].data = NULL;
            }
        if (!in[j].data) {
            rc = inferd_error_set(err, INFERD_EINVAL, "the pipeline does not feed model input '%s'",
                                  m->inputs[j].name);
            goto done;
        }
    }
done:
    for (int i = 0; i < 3; i++)
        inferd_free(out[i].data);
    inferd_free(encs);
    inferd_free(ids);
    inferd_scratch_destroy(scratch);
    return rc;
}

int inferd_warmup_run(const inferd_repo_model *m, const inferd_pipeline *p, int max_batch,
                      const inferd_config *cfg, inferd_error *err) {
    if (m->n_inputs < 1 || m->n_inputs > 64 || m->n_outputs < 1 || m->n_outputs > 64)
        return inferd_error_set(err, INFERD_EUNSUPPORTED, "warm-up: %d inputs, %d outputs",
                                m->n_inputs, m->n_outputs);
    inferd_tensor in[64], out[64];
    memset(in, 0, sizeof in);
    memset(out, 0, sizeof out);
    int rc = p ? from_pipeline(m, p, cfg, in, err) : generate(m, max_batch, cfg, in, err);
    if (rc == 0) {
        rc = m->run(m->ctx, in, out, 1, err);
        if (rc == 0)
            for (int j = 0; j < m->n_outputs; j++)
                inferd_free(out[j].data);
    }
    for (int i = 0; i < m->n_inputs; i++)
        inferd_free(in[i].data);
    if (rc < 0)
        inferd_error_prefix(err, "warm-up run failed: ");
    return rc;
}
