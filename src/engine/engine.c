#include "engine/engine.h"

/* Placeholder until the executor lands: every load reports the engine as unavailable. */
int inferd_engine_global_init(inferd_error *err) {
    (void)err;
    return 0;
}
int inferd_engine_load(const char *path, const inferd_engine_options *opts,
                       inferd_engine_model **out, inferd_error *err) {
    (void)opts;
    *out = NULL;
    return inferd_error_set(err, INFERD_EUNSUPPORTED, "%s: the engine is not built yet", path);
}
int inferd_engine_load_buffer(const void *data, size_t size, const inferd_engine_options *opts,
                              inferd_engine_model **out, inferd_error *err) {
    (void)data;
    (void)size;
    return inferd_engine_load("buffer", opts, out, err);
}
void inferd_engine_destroy(inferd_engine_model *m) { (void)m; }
int inferd_engine_input_count(const inferd_engine_model *m) { (void)m; return 0; }
const inferd_tensor_desc *inferd_engine_input(const inferd_engine_model *m, int i) {
    (void)m; (void)i; return NULL;
}
int inferd_engine_output_count(const inferd_engine_model *m) { (void)m; return 0; }
const inferd_tensor_desc *inferd_engine_output(const inferd_engine_model *m, int i) {
    (void)m; (void)i; return NULL;
}
int inferd_engine_run(inferd_engine_model *m, const inferd_tensor *inputs,
                      inferd_tensor *outputs, int threads, inferd_error *err) {
    (void)m; (void)inputs; (void)outputs; (void)threads;
    return inferd_error_set(err, INFERD_EUNSUPPORTED, "the engine is not built yet");
}
int64_t inferd_engine_memory(const inferd_engine_model *m) { (void)m; return 0; }
double inferd_engine_load_ms(const inferd_engine_model *m) { (void)m; return 0; }
void inferd_engine_profile_print(const inferd_engine_model *m, FILE *f) { (void)m; (void)f; }
