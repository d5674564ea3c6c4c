/* copy.c: see copy.h. No locks, no shared state. */
#include "repo/copy.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "backend/backend.h"
#include "repo/warmup.h"
#include "util/log.h"

static void free_descs(inferd_tensor_desc *d, int n) {
    for (int i = 0; d && i < n; i++)
        inferd_free((void *)d[i].name);
    inferd_free(d);
}

static inferd_tensor_desc *copy_descs(inferd_mem_account *acct, const inferd_tensor_desc *src,
                                      int n) {
    inferd_tensor_desc *d = inferd_calloc(acct, (size_t)(n > 0 ? n : 1), sizeof *d);
    for (int i = 0; d && i < n; i++) {
        d[i] = src[i];
        d[i].name = inferd_strdup(acct, src[i].name ? src[i].name : "");
        if (!d[i].name) {
            free_descs(d, i);
            return NULL;
        }
    }
    return d;
}

/* The default loader: the backend. */
typedef struct backend_ctx {
    inferd_backend_model *m;
    inferd_tensor_desc *in, *out;
} backend_ctx;

static int backend_run(void *ctx, const inferd_tensor *in, inferd_tensor *out, int threads,
                       inferd_error *err) {
    return inferd_backend_run(((backend_ctx *)ctx)->m, in, out, threads, err);
}

static void backend_destroy(void *ctx) {
    backend_ctx *b = ctx;
    inferd_backend_destroy(b->m);
    inferd_free(b->in);
    inferd_free(b->out);
    inferd_free(b);
}

static int64_t backend_memory(void *ctx) { return inferd_backend_memory(((backend_ctx *)ctx)->m); }

static int backend_load(void *user, const inferd_repo_load_args *a, inferd_repo_model *out,
                        inferd_error *err) {
    (void)user;
    const inferd_backend_platform *p = inferd_backend_find_platform(a->platform);
    if (!p)
        return inferd_error_set(err, INFERD_EINVAL, "unknown platform '%s'", a->platform);
    backend_ctx *b = inferd_calloc(a->acct, 1, sizeof *b);
    if (!b)
        return inferd_error_set(err, INFERD_EINTERNAL, "out of memory");
    inferd_backend_options bo = {.acct = a->acct,
                                 .cache_path = a->cache_path,
                                 .inputs = a->inputs,
                                 .n_inputs = a->n_inputs,
                                 .outputs = a->outputs,
                                 .n_outputs = a->n_outputs};
    int rc = inferd_backend_load(p, a->path, &bo, &b->m, err);
    if (rc < 0) {
        inferd_free(b);
        return rc;
    }
    int ni = inferd_backend_input_count(b->m), no = inferd_backend_output_count(b->m);
    b->in = inferd_calloc(a->acct, (size_t)(ni > 0 ? ni : 1), sizeof *b->in);
    b->out = inferd_calloc(a->acct, (size_t)(no > 0 ? no : 1), sizeof *b->out);
    if (!b->in || !b->out) {
        backend_destroy(b);
        return inferd_error_set(err, INFERD_EINTERNAL, "out of memory");
    }
    for (int i = 0; i < ni; i++)
        b->in[i] = *inferd_backend_input(b->m, i);
    for (int i = 0; i < no; i++)
        b->out[i] = *inferd_backend_output(b->m, i);
    *out = (inferd_repo_model){
        .ctx = b,
        .platform = p->name,
        .n_inputs = ni,
        .n_outputs = no,
        .inputs = b->in,
        .outputs = b->out,
        .run = backend_run,
        .destroy = backend_destroy,
        .memory = backend_memory,
        .cache_hit = a->cache_path ? inferd_backend_cache_hit(b->m) : 0,
        .cache_status = a->cache_path ? inferd_backend_cache_status(b->m) : NULL,
    };
    return 0;
}

/* Decides the copy's max batch from its config and its model's tensors. */
static int effective_max_batch(inferd_copy *c, const inferd_copy_request *rq, inferd_error *err) {
    const inferd_repo_model *m = &c->model;
    int batchable = 1;
    const char *why = NULL;
    for (int i = 0; i < m->n_inputs + m->n_outputs && batchable; i++) {
        const inferd_tensor_desc *d =
            i < m->n_inputs ? &m->inputs[i] : &m->outputs[i - m->n_inputs];
        if (d->rank < 1 || d->dims[0] >= 0) {
            batchable = 0;
            why = d->name;
        }
    }
    if (batchable || rq->cfg->max_batch_size == 0) {
        c->max_batch = rq->cfg->max_batch_size;
        return 0;
    }
    if (rq->cfg->max_batch_size_set)
        return inferd_error_set(err, INFERD_EINVAL,
                                "max_batch_size %d needs a dynamic first (batch) dim, but "
                                "tensor '%s' has none; set max_batch_size to 0",
                                rq->cfg->max_batch_size, why);
    // Defaults only: a model with a fixed batch dim is served unbatched.
    inferd_log_info("model %s version %ld: tensor '%s' has no dynamic batch dim; serving "
                    "without batching",
                    rq->name, rq->number, why);
    c->max_batch = 0;
    return 0;
}

/* Loads the folder's pipeline.json, if any, against the model just loaded. */
static int load_pipeline(inferd_copy *c, const inferd_copy_request *rq, inferd_error *err) {
    char path[4096 + 200];
    struct stat st;
    snprintf(path, sizeof path, "%.4096s/pipeline.json", rq->dir);
    if (stat(path, &st) != 0)
        return 0; // a tensor-only model
    inferd_pipeline_model pm = {
        .inputs = c->inputs,
        .n_inputs = (size_t)c->model.n_inputs,
        .outputs = c->outputs,
        .n_outputs = (size_t)c->model.n_outputs,
    };
    int rc = inferd_pipeline_load(rq->dir, &pm, rq->acct, &c->pipeline, err);
    if (rc < 0 && !strstr(err->msg, "pipeline.json"))
        inferd_error_prefix(err, "pipeline.json: ");
    return rc;
}

/* The batcher pads a text model's token inputs by default when the pipeline supplies the
 * attention mask that makes padding invisible to the model; config.json decides otherwise. */
static void choose_padding(inferd_copy *c, const inferd_config *cfg, int64_t *pad_values) {
    const inferd_pipeline *p = c->pipeline;
    c->pad = cfg->pad_dims;
    if (p && !cfg->pad_dims_set) {
        c->pad = 0;
        for (size_t i = 0; i < inferd_pipeline_input_count(p); i++)
            c->pad |= inferd_pipeline_input_kind_of(p, i) == INFERD_PIPELINE_INPUT_KIND_MASK;
    }
    for (int i = 0; i < c->model.n_inputs && i < 16; i++) {
        pad_values[i] = 0;
        for (size_t j = 0; p && j < inferd_pipeline_input_count(p); j++)
            if (inferd_pipeline_input_kind_of(p, j) == INFERD_PIPELINE_INPUT_KIND_IDS &&
                !strcmp(inferd_pipeline_input_name(p, j), c->inputs[i].name))
                pad_values[i] = inferd_pipeline_pad_id(p);
    }
}

void inferd_copy_unload(inferd_copy *c) {
    inferd_sched_queue_destroy(c->queue);
    c->queue = NULL;
    if (c->loaded && c->model.destroy)
        c->model.destroy(c->model.ctx);
    c->loaded = 0;
    inferd_pipeline_destroy(c->pipeline);
    c->pipeline = NULL;
    free_descs(c->inputs, c->model.n_inputs);
    free_descs(c->outputs, c->model.n_outputs);
    c->inputs = c->outputs = NULL;
    memset(&c->model, 0, sizeof c->model);
}

int inferd_copy_load(const inferd_copy_request *rq, inferd_copy *c, inferd_error *err) {
    const inferd_config *cfg = rq->cfg;
    const inferd_backend_platform *p = cfg->platform[0]
                                           ? inferd_backend_find_platform(cfg->platform)
                                           : inferd_backend_detect_platform(rq->dir);
    char path[4096 + 300];
    int rc;
    if (!p) {
        // Say why when the folder itself cannot be read (permissions), not only that it holds
        // no model file.
        DIR *d = opendir(rq->dir);
        if (!d)
            return inferd_error_set(err, INFERD_ENOTFOUND, "cannot read the version folder %s: %s",
                                    rq->dir, strerror(errno));
        closedir(d);
        return inferd_error_set(err, INFERD_ENOTFOUND,
                                "no model file (model.onnx or model.pt) in %s", rq->dir);
    }
    snprintf(path, sizeof path, "%.4096s/%s", rq->dir, p->file_name);
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISREG(st.st_mode))
        return inferd_error_set(err, INFERD_ENOTFOUND, "no model file %s", path);
    inferd_tensor_desc din[INFERD_CONFIG_MAX_TENSORS], dout[INFERD_CONFIG_MAX_TENSORS];
    inferd_repo_load_args args = {
        .platform = p->name,
        .path = path,
        .cache_path = rq->cache_path,
        .acct = rq->acct,
        .inputs = din,
        .n_inputs = inferd_config_tensor_descs(cfg, 0, din),
        .outputs = dout,
        .n_outputs = inferd_config_tensor_descs(cfg, 1, dout),
    };
    inferd_repo_load_fn load = rq->load ? rq->load : backend_load;
    inferd_repo_model m = {0};
    if ((rc = load(rq->load_user, &args, &m, err)) < 0)
        return rc;
    c->model = m;
    c->loaded = 1;
    snprintf(c->cache_status, sizeof c->cache_status, "%s",
             m.cache_status ? m.cache_status : "off");
    c->inputs = copy_descs(rq->acct, m.inputs, m.n_inputs);
    c->outputs = copy_descs(rq->acct, m.outputs, m.n_outputs);
    if (!c->inputs || !c->outputs) {
        rc = inferd_error_set(err, INFERD_EINTERNAL, "out of memory");
        goto fail;
    }
    c->model.inputs = c->inputs;
    c->model.outputs = c->outputs;
    if (m.n_inputs < 1 || m.n_outputs < 1) {
        rc = inferd_error_set(err, INFERD_EUNSUPPORTED, "the model has %d inputs and %d outputs",
                              m.n_inputs, m.n_outputs);
        goto fail;
    }
    if ((rc = load_pipeline(c, rq, err)) < 0)
        goto fail;
    if ((rc = effective_max_batch(c, rq, err)) < 0)
        goto fail;
    int64_t pad_values[16];
    choose_padding(c, cfg, pad_values);
    if (rq->warm && (rc = inferd_warmup_run(&c->model, c->pipeline, c->max_batch, cfg, err)) < 0)
        goto fail;
    if (rq->sched) {
        char qname[160];
        snprintf(qname, sizeof qname, "%.128s:%ld", rq->name, rq->number);
        inferd_sched_queue_options qo = {
            .name = qname,
            .model = rq->queue_model,
            .n_inputs = m.n_inputs,
            .inputs = c->inputs,
            .n_outputs = m.n_outputs,
            .outputs = c->outputs,
            .max_batch = c->max_batch,
            .max_delay_us = cfg->max_queue_delay_us,
            .preferred_sizes = cfg->preferred_batch_sizes,
            .n_preferred = cfg->n_preferred,
            .max_queue = cfg->max_queue_size,
            .default_timeout_us = cfg->default_timeout_us,
            .max_threads = cfg->instance_threads,
            .pad = c->pad,
            .pad_values = pad_values,
            .buckets = cfg->length_buckets,
            .n_buckets = cfg->n_buckets,
            .stats = rq->stats,
        };
        if ((rc = inferd_sched_queue_create(rq->sched, &qo, &c->queue, err)) < 0)
            goto fail;
    }
    return 0;
fail:
    inferd_copy_unload(c);
    return rc;
}
