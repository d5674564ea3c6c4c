#include "backend/backend.h"

#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "backend/torchscript/torchscript.h"
#include "engine/engine.h"

struct inferd_backend_model {
    const inferd_backend_platform *platform;
    inferd_engine_model *onnx; /* one of these two */
    inferd_torchscript_model *ts;
};

static const inferd_backend_platform platforms[] = {
    {"onnx", "onnxruntime_onnx", "model.onnx"},
    {"torchscript", "pytorch_libtorch", "model.pt"},
};

#define N_PLATFORMS (sizeof platforms / sizeof platforms[0])
#define PLATFORM_TORCHSCRIPT (&platforms[1])

const inferd_backend_platform *inferd_backend_find_platform(const char *name) {
    for (size_t i = 0; i < N_PLATFORMS; i++)
        if (!strcmp(platforms[i].name, name) ||
            (platforms[i].alias && !strcmp(platforms[i].alias, name)))
            return &platforms[i];
    return NULL;
}

const char *inferd_backend_platform_names(void) {
    return "onnx, onnxruntime_onnx, torchscript, pytorch_libtorch";
}

const inferd_backend_platform *inferd_backend_detect_platform(const char *version_dir) {
    for (size_t i = 0; i < N_PLATFORMS; i++) {
        char path[4096];
        struct stat st;
        snprintf(path, sizeof path, "%s/%s", version_dir, platforms[i].file_name);
        if (stat(path, &st) == 0 && S_ISREG(st.st_mode))
            return &platforms[i];
    }
    return NULL;
}

/* A declared tensor against the graph's own: same name, dtype, rank, and agreeing fixed dims. */
static int check_declared(const char *what, const inferd_tensor_desc *decl, int n_decl,
                          const inferd_backend_model *m, int outputs, inferd_error *err) {
    int n = outputs ? inferd_backend_output_count(m) : inferd_backend_input_count(m);
    for (int i = 0; i < n_decl; i++) {
        const inferd_tensor_desc *d = &decl[i], *g = NULL;
        for (int j = 0; j < n && !g; j++) {
            const inferd_tensor_desc *c =
                outputs ? inferd_backend_output(m, j) : inferd_backend_input(m, j);
            if (d->name && !strcmp(c->name, d->name))
                g = c;
        }
        if (!g)
            return inferd_error_set(err, INFERD_EINVAL,
                                    "config.json declares %s '%s' but the model has no such %s",
                                    what, d->name ? d->name : "", what);
        int ok = d->dtype == g->dtype && d->rank == g->rank;
        for (int k = 0; ok && k < d->rank; k++)
            ok = d->dims[k] < 0 || g->dims[k] < 0 || d->dims[k] == g->dims[k];
        if (!ok) {
            const char *dn = inferd_dtype_kserve_name(d->dtype),
                       *gn = inferd_dtype_kserve_name(g->dtype);
            return inferd_error_set(
                err, INFERD_EINVAL,
                "config.json declares %s '%s' as %s of rank %d, the model's is "
                "%s of rank %d%s",
                what, d->name, dn ? dn : "?", d->rank, gn ? gn : "?", g->rank,
                d->dtype == g->dtype && d->rank == g->rank ? " with other fixed dims" : "");
        }
    }
    return 0;
}

int inferd_backend_load(const inferd_backend_platform *platform, const char *path,
                        const inferd_backend_options *opts, inferd_backend_model **out,
                        inferd_error *err) {
    *out = NULL;
    if (!platform)
        return inferd_error_set(err, INFERD_EINVAL, "no platform given for %s", path);
    static const inferd_backend_options none = {0};
    if (!opts)
        opts = &none;
    inferd_mem_account *acct = opts->acct;
    inferd_backend_model *m = inferd_calloc(acct, 1, sizeof *m);
    if (!m)
        return inferd_error_set(err, INFERD_EINTERNAL, "out of memory loading %s", path);
    m->platform = platform;
    int rc;
    if (platform == PLATFORM_TORCHSCRIPT) {
        inferd_torchscript_options to = {.acct = acct,
                                         .inputs = opts->inputs,
                                         .n_inputs = opts->n_inputs,
                                         .outputs = opts->outputs,
                                         .n_outputs = opts->n_outputs};
        rc = inferd_torchscript_load(path, &to, &m->ts, err);
    } else {
        inferd_engine_options eo = {
            .acct = acct, .profile = opts->profile, .cache_path = opts->cache_path};
        rc = inferd_engine_load(path, &eo, &m->onnx, err);
        if (rc == 0 &&
            ((rc = check_declared("input", opts->inputs, opts->n_inputs, m, 0, err)) < 0 ||
             (rc = check_declared("output", opts->outputs, opts->n_outputs, m, 1, err)) < 0))
            inferd_engine_destroy(m->onnx);
    }
    if (rc < 0) {
        inferd_free(m);
        return rc;
    }
    *out = m;
    return 0;
}

void inferd_backend_destroy(inferd_backend_model *m) {
    if (!m)
        return;
    inferd_engine_destroy(m->onnx);
    inferd_torchscript_destroy(m->ts);
    inferd_free(m);
}

const inferd_backend_platform *inferd_backend_model_platform(const inferd_backend_model *m) {
    return m->platform;
}

int inferd_backend_input_count(const inferd_backend_model *m) {
    return m->ts ? inferd_torchscript_input_count(m->ts) : inferd_engine_input_count(m->onnx);
}

const inferd_tensor_desc *inferd_backend_input(const inferd_backend_model *m, int i) {
    return m->ts ? inferd_torchscript_input(m->ts, i) : inferd_engine_input(m->onnx, i);
}

int inferd_backend_output_count(const inferd_backend_model *m) {
    return m->ts ? inferd_torchscript_output_count(m->ts) : inferd_engine_output_count(m->onnx);
}

const inferd_tensor_desc *inferd_backend_output(const inferd_backend_model *m, int i) {
    return m->ts ? inferd_torchscript_output(m->ts, i) : inferd_engine_output(m->onnx, i);
}

int inferd_backend_run(inferd_backend_model *m, const inferd_tensor *inputs, inferd_tensor *outputs,
                       int threads, inferd_error *err) {
    if (m->ts)
        return inferd_torchscript_run(m->ts, inputs, outputs, threads, err);
    return inferd_engine_run(m->onnx, inputs, outputs, threads, err);
}

int64_t inferd_backend_memory(const inferd_backend_model *m) {
    int64_t own = (int64_t)sizeof *m;
    return own + (m->ts ? inferd_torchscript_memory(m->ts) : inferd_engine_memory(m->onnx));
}

/* TorchScript has no load cache: libtorch reads the file itself. */
const char *inferd_backend_cache_status(const inferd_backend_model *m) {
    return m->ts ? "off (TorchScript)" : inferd_engine_cache_status(m->onnx);
}

int inferd_backend_cache_hit(const inferd_backend_model *m) {
    return m->ts ? 0 : inferd_engine_cache_hit(m->onnx);
}

double inferd_backend_load_ms(const inferd_backend_model *m) {
    return m->ts ? inferd_torchscript_load_ms(m->ts) : inferd_engine_load_ms(m->onnx);
}
