#include "backend/backend.h"

#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "engine/engine.h"

struct inferd_backend_model {
    const inferd_backend_platform *platform;
    inferd_engine_model *onnx;
};

static const inferd_backend_platform platforms[] = {
    {"onnx", "onnxruntime_onnx", "model.onnx"},
};

#define N_PLATFORMS (sizeof platforms / sizeof platforms[0])

const inferd_backend_platform *inferd_backend_find_platform(const char *name) {
    for (size_t i = 0; i < N_PLATFORMS; i++)
        if (!strcmp(platforms[i].name, name) ||
            (platforms[i].alias && !strcmp(platforms[i].alias, name)))
            return &platforms[i];
    return NULL;
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

int inferd_backend_load(const inferd_backend_platform *platform, const char *path,
                        const inferd_backend_options *opts, inferd_backend_model **out,
                        inferd_error *err) {
    *out = NULL;
    if (!platform)
        return inferd_error_set(err, INFERD_EINVAL, "no platform given for %s", path);
    inferd_mem_account *acct = opts ? opts->acct : NULL;
    inferd_backend_model *m = inferd_calloc(acct, 1, sizeof *m);
    if (!m)
        return inferd_error_set(err, INFERD_EINTERNAL, "out of memory loading %s", path);
    m->platform = platform;
    inferd_engine_options eo = {.acct = acct,
                                .profile = opts ? opts->profile : 0,
                                .cache_path = opts ? opts->cache_path : NULL};
    int rc = inferd_engine_load(path, &eo, &m->onnx, err);
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
    inferd_free(m);
}

const inferd_backend_platform *inferd_backend_model_platform(const inferd_backend_model *m) {
    return m->platform;
}

int inferd_backend_input_count(const inferd_backend_model *m) {
    return inferd_engine_input_count(m->onnx);
}

const inferd_tensor_desc *inferd_backend_input(const inferd_backend_model *m, int i) {
    return inferd_engine_input(m->onnx, i);
}

int inferd_backend_output_count(const inferd_backend_model *m) {
    return inferd_engine_output_count(m->onnx);
}

const inferd_tensor_desc *inferd_backend_output(const inferd_backend_model *m, int i) {
    return inferd_engine_output(m->onnx, i);
}

int inferd_backend_run(inferd_backend_model *m, const inferd_tensor *inputs, inferd_tensor *outputs,
                       int threads, inferd_error *err) {
    return inferd_engine_run(m->onnx, inputs, outputs, threads, err);
}

int64_t inferd_backend_memory(const inferd_backend_model *m) {
    return inferd_engine_memory(m->onnx) + (int64_t)sizeof *m;
}

const char *inferd_backend_cache_status(const inferd_backend_model *m) {
    return inferd_engine_cache_status(m->onnx);
}

int inferd_backend_cache_hit(const inferd_backend_model *m) {
    return inferd_engine_cache_hit(m->onnx);
}

double inferd_backend_load_ms(const inferd_backend_model *m) {
    return inferd_engine_load_ms(m->onnx);
}
