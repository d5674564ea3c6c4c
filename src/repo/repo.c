/* repo.c: see repo.h for the design.
 *
 * Lock order: inferd_repo.lock only. It guards the loader's wake-up and stop flags; the model
 * and version arrays are fixed after create and each version's state is an atomic published
 * with release ordering after its model and queue are set, so lookups read them safely.
 */
#include "repo/repo.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backend/backend.h"
#include "util/clock.h"
#include "util/log.h"

#define MAX_VERSIONS 256

typedef struct model_entry model_entry;

struct inferd_repo_version {
    _Atomic int refs;
    char name[128];
    long number;
    char dir[4096];
    inferd_config cfg;
    _Atomic int state; /* inferd_repo_state, stored with release after the fields below */
    char reason[256];  /* written before state becomes UNAVAILABLE, then fixed */
    inferd_repo_model model;
    inferd_tensor_desc *inputs, *outputs; /* copies, names owned */
    int loaded;
    int max_batch;
    inferd_pipeline *pipeline; /* NULL when the folder has no pipeline.json */
    int pad;
    inferd_sched_queue *queue;
    inferd_stats stats;
    inferd_mem_account acct;
};

struct model_entry {
    char name[128];
    inferd_config cfg;
    char reason[256];               /* model-level failure, "" if none */
    inferd_repo_version **versions; /* ascending by number */
    int n_versions;
};

struct inferd_repo {
    char dir[4096];
    char real_dir[PATH_MAX]; /* dir with symlinks resolved: model and version folders must
                                resolve inside it */
    inferd_repo_options opts;
    model_entry *models; /* sorted by name; fixed after create */
    int n_models;
    inferd_repo_version **load_order;
    int n_load;
    _Atomic int loading;

    pthread_mutex_t lock;
    pthread_cond_t cv;
    int stop;
    pthread_t loader;
    int loader_started;
};

/* ---- versions ---- */

static void free_descs(inferd_tensor_desc *d, int n) {
    for (int i = 0; d && i < n; i++)
        inferd_free((void *)d[i].name);
    inferd_free(d);
}

static inferd_tensor_desc *copy_descs(const inferd_tensor_desc *src, int n) {
    inferd_tensor_desc *d = inferd_calloc(NULL, (size_t)(n > 0 ? n : 1), sizeof *d);
    for (int i = 0; d && i < n; i++) {
        d[i] = src[i];
        d[i].name = inferd_strdup(NULL, src[i].name ? src[i].name : "");
        if (!d[i].name) {
            free_descs(d, i);
            return NULL;
        }
    }
    return d;
}

static void version_free(inferd_repo_version *v) {
    inferd_sched_queue_destroy(v->queue);
    if (v->loaded && v->model.destroy)
        v->model.destroy(v->model.ctx);
    inferd_pipeline_destroy(v->pipeline);
    free_descs(v->inputs, v->model.n_inputs);
    free_descs(v->outputs, v->model.n_outputs);
    inferd_config_deinit(&v->cfg);
    inferd_stats_deinit(&v->stats);
    inferd_free(v);
}

void inferd_repo_retain(inferd_repo_version *v) {
    atomic_fetch_add_explicit(&v->refs, 1, memory_order_relaxed);
}

void inferd_repo_release(inferd_repo_version *v) {
    if (!v)
        return;
    if (atomic_fetch_sub_explicit(&v->refs, 1, memory_order_acq_rel) == 1)
        version_free(v);
}

static void set_state(inferd_repo_version *v, inferd_repo_state st, const char *reason) {
    if (reason)
        snprintf(v->reason, sizeof v->reason, "%s", reason);
    atomic_store_explicit(&v->state, (int)st, memory_order_release);
}

static inferd_repo_state get_state(const inferd_repo_version *v) {
    return (inferd_repo_state)atomic_load_explicit(&v->state, memory_order_acquire);
}

/* The scheduler's view of a version: run forwards to the loaded model, and a running batch
 * holds a version reference. */
static int queue_run(void *ctx, const inferd_tensor *in, inferd_tensor *out, int threads,
                     inferd_error *err) {
    inferd_repo_version *v = ctx;
    return v->model.run(v->model.ctx, in, out, threads, err);
}
static void queue_retain(void *ctx) { inferd_repo_retain(ctx); }
static void queue_release(void *ctx) { inferd_repo_release(ctx); }

/* ---- the default loader: the backend ---- */

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

/* cfg: the model's config.json, whose declared inputs and outputs the backend needs. */
static int backend_load(const inferd_config *cfg, const char *platform, const char *path,
                        inferd_mem_account *acct, inferd_repo_model *out, inferd_error *err) {
    const inferd_backend_platform *p = inferd_backend_find_platform(platform);
    if (!p)
        return inferd_error_set(err, INFERD_EINVAL, "unknown platform '%s'", platform);
    backend_ctx *b = inferd_calloc(NULL, 1, sizeof *b);
    if (!b)
        return inferd_error_set(err, INFERD_EINTERNAL, "out of memory");
    inferd_tensor_desc din[INFERD_CONFIG_MAX_TENSORS], dout[INFERD_CONFIG_MAX_TENSORS];
    inferd_backend_options bo = {.acct = acct,
                                 .inputs = din,
                                 .n_inputs = inferd_config_tensor_descs(cfg, 0, din),
                                 .outputs = dout,
                                 .n_outputs = inferd_config_tensor_descs(cfg, 1, dout)};
    int rc = inferd_backend_load(p, path, &bo, &b->m, err);
    if (rc < 0) {
        inferd_free(b);
        return rc;
    }
    int ni = inferd_backend_input_count(b->m), no = inferd_backend_output_count(b->m);
    b->in = inferd_calloc(NULL, (size_t)(ni > 0 ? ni : 1), sizeof *b->in);
    b->out = inferd_calloc(NULL, (size_t)(no > 0 ? no : 1), sizeof *b->out);
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
    };
    return 0;
}

/* ---- loading ---- */

/* Decides the version's max batch from its config and its model's tensors. */
static int effective_max_batch(inferd_repo_version *v, inferd_error *err) {
    const inferd_repo_model *m = &v->model;
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
    if (batchable || v->cfg.max_batch_size == 0) {
        v->max_batch = v->cfg.max_batch_size;
        return 0;
    }
    if (v->cfg.max_batch_size_set)
        return inferd_error_set(err, INFERD_EINVAL,
                                "max_batch_size %d needs a dynamic first (batch) dim, but "
                                "tensor '%s' has none; set max_batch_size to 0",
                                v->cfg.max_batch_size, why);
    // Defaults only: a model with a fixed batch dim is served unbatched.
    inferd_log_info("model %s version %ld: tensor '%s' has no dynamic batch dim; serving "
                    "without batching",
                    v->name, v->number, why);
    v->max_batch = 0;
    return 0;
}

/* Loads the folder's pipeline.json, if any, against the model just loaded. */
static int load_pipeline(inferd_repo_version *v, inferd_error *err) {
    char path[4200];
    struct stat st;
    snprintf(path, sizeof path, "%s/pipeline.json", v->dir);
    if (stat(path, &st) != 0)
        return 0; // a tensor-only model
    inferd_pipeline_model pm = {
        .inputs = v->inputs,
        .n_inputs = (size_t)v->model.n_inputs,
        .outputs = v->outputs,
        .n_outputs = (size_t)v->model.n_outputs,
    };
    int rc = inferd_pipeline_load(v->dir, &pm, &v->acct, &v->pipeline, err);
    if (rc < 0 && !strstr(err->msg, "pipeline.json"))
        inferd_error_prefix(err, "pipeline.json: ");
    return rc;
}

/* The batcher pads a text model's token inputs by default when the pipeline supplies the
 * attention mask that makes padding invisible to the model; config.json decides otherwise. */
static void choose_padding(inferd_repo_version *v, int64_t *pad_values) {
    const inferd_pipeline *p = v->pipeline;
    v->pad = v->cfg.pad_dims;
    if (p && !v->cfg.pad_dims_set) {
        v->pad = 0;
        for (size_t i = 0; i < inferd_pipeline_input_count(p); i++)
            v->pad |= inferd_pipeline_input_kind_of(p, i) == INFERD_PIPELINE_INPUT_KIND_MASK;
    }
    for (int i = 0; i < v->model.n_inputs && i < 16; i++) {
        pad_values[i] = 0;
        for (size_t j = 0; p && j < inferd_pipeline_input_count(p); j++)
            if (inferd_pipeline_input_kind_of(p, j) == INFERD_PIPELINE_INPUT_KIND_IDS &&
                !strcmp(inferd_pipeline_input_name(p, j), v->inputs[i].name))
                pad_values[i] = inferd_pipeline_pad_id(p);
    }
}

static void load_version(inferd_repo *r, inferd_repo_version *v) {
    inferd_error err = {0};
    int64_t t0 = inferd_now_ns();
    const char *platform = v->cfg.platform[0] ? v->cfg.platform : NULL;
    const inferd_backend_platform *p =
        platform ? inferd_backend_find_platform(platform) : inferd_backend_detect_platform(v->dir);
    char path[4200];
    int rc;
    if (!p) {
        rc = inferd_error_set(&err, INFERD_ENOTFOUND,
                              "no model file (model.onnx or model.pt) in %s", v->dir);
        goto fail;
    }
    snprintf(path, sizeof path, "%s/%s", v->dir, p->file_name);
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISREG(st.st_mode)) {
        rc = inferd_error_set(&err, INFERD_ENOTFOUND, "no model file %s", path);
        goto fail;
    }
    inferd_repo_model m = {0};
    if (r->opts.load)
        rc = r->opts.load(r->opts.load_user, p->name, path, &v->acct, &m, &err);
    else
        rc = backend_load(&v->cfg, p->name, path, &v->acct, &m, &err);
    if (rc < 0)
        goto fail;
    v->model = m;
    v->loaded = 1;
    v->inputs = copy_descs(m.inputs, m.n_inputs);
    v->outputs = copy_descs(m.outputs, m.n_outputs);
    if (!v->inputs || !v->outputs) {
        rc = inferd_error_set(&err, INFERD_EINTERNAL, "out of memory");
        goto fail;
    }
    v->model.inputs = v->inputs;
    v->model.outputs = v->outputs;
    if (m.n_inputs < 1 || m.n_outputs < 1) {
        rc = inferd_error_set(&err, INFERD_EUNSUPPORTED, "the model has %d inputs and %d outputs",
                              m.n_inputs, m.n_outputs);
        goto fail;
    }
    if ((rc = load_pipeline(v, &err)) < 0)
        goto fail;
    if ((rc = effective_max_batch(v, &err)) < 0)
        goto fail;
    int64_t pad_values[16];
    choose_padding(v, pad_values);
    if (r->opts.sched) {
        char qname[160];
        snprintf(qname, sizeof qname, "%s:%ld", v->name, v->number);
        inferd_sched_queue_options qo = {
            .name = qname,
            .model = {.run = queue_run, .retain = queue_retain, .release = queue_release, .ctx = v},
            .n_inputs = m.n_inputs,
            .inputs = v->inputs,
            .n_outputs = m.n_outputs,
            .outputs = v->outputs,
            .max_batch = v->max_batch,
            .max_delay_us = v->cfg.max_queue_delay_us,
            .preferred_sizes = v->cfg.preferred_batch_sizes,
            .n_preferred = v->cfg.n_preferred,
            .max_queue = v->cfg.max_queue_size,
            .default_timeout_us = v->cfg.default_timeout_us,
            .max_threads = v->cfg.instance_threads,
            .pad = v->pad,
            .pad_values = pad_values,
            .buckets = v->cfg.length_buckets,
            .n_buckets = v->cfg.n_buckets,
            .stats = &v->stats,
        };
        if ((rc = inferd_sched_queue_create(r->opts.sched, &qo, &v->queue, &err)) < 0)
            goto fail;
    }
    set_state(v, INFERD_REPO_STATE_READY, "");
    inferd_log_info("model %s version %ld ready (platform %s, %d inputs, %d outputs, max batch "
                    "%d%s%s, %.1f MiB, loaded in %.1f ms)",
                    v->name, v->number, m.platform ? m.platform : p->name, m.n_inputs, m.n_outputs,
                    v->max_batch, v->pad ? ", padded" : "", v->pipeline ? ", text pipeline" : "",
                    (double)inferd_repo_version_memory(v) / 1048576.0,
                    (double)(inferd_now_ns() - t0) / 1e6);
    return;
fail:
    // Free what the failed load left, keeping the version registered with its reason.
    inferd_sched_queue_destroy(v->queue);
    v->queue = NULL;
    if (v->loaded && v->model.destroy)
        v->model.destroy(v->model.ctx);
    v->loaded = 0;
    inferd_pipeline_destroy(v->pipeline);
    v->pipeline = NULL;
    free_descs(v->inputs, v->model.n_inputs);
    free_descs(v->outputs, v->model.n_outputs);
    v->inputs = v->outputs = NULL;
    memset(&v->model, 0, sizeof v->model);
    set_state(v, INFERD_REPO_STATE_UNAVAILABLE, err.msg);
    inferd_log_error("model %s version %ld failed to load: %s", v->name, v->number, err.msg);
}

static void *loader_main(void *arg) {
    inferd_repo *r = arg;
    pthread_setname_np(pthread_self(), "inferd-loader");
    if (r->opts.loader_nice > 0)
        setpriority(PRIO_PROCESS, (id_t)gettid(), r->opts.loader_nice);
    for (int i = 0; i < r->n_load; i++) {
        pthread_mutex_lock(&r->lock);
        int stop = r->stop;
        pthread_mutex_unlock(&r->lock);
        inferd_repo_version *v = r->load_order[i];
        if (stop) {
            set_state(v, INFERD_REPO_STATE_UNAVAILABLE, "the server stopped before it loaded");
        } else {
            load_version(r, v);
        }
        pthread_mutex_lock(&r->lock);
        atomic_fetch_sub(&r->loading, 1);
        pthread_cond_broadcast(&r->cv);
        pthread_mutex_unlock(&r->lock);
    }
    int ready = 0;
    for (int i = 0; i < r->n_load; i++)
        ready += get_state(r->load_order[i]) == INFERD_REPO_STATE_READY;
    inferd_log_info("repository %s: %d of %d model versions ready", r->dir, ready, r->n_load);
    // #5 (polling for changes, residency) would keep this thread waiting on r->cv here.
    return NULL;
}

/* ---- scanning ---- */

static int cmp_name(const void *a, const void *b) {
    return strcmp(((const model_entry *)a)->name, ((const model_entry *)b)->name);
}

static int cmp_long(const void *a, const void *b) {
    long x = *(const long *)a, y = *(const long *)b;
    return (x > y) - (x < y);
}

static int is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* Whether path resolves (symlinks followed) to a folder inside the repository. Model and
 * version folders may be symlinks, as deployment tools make them, but not to places outside
 * the repository: a repository must not become a way to read the rest of the file system.
 * On refusal why says where the path leads. */
static int inside_repo(const inferd_repo *r, const char *path, char *why, size_t cap) {
    char real[PATH_MAX];
    if (!realpath(path, real)) {
        snprintf(why, cap, "cannot resolve %.150s: %.60s", path, strerror(errno));
        return 0;
    }
    size_t n = strlen(r->real_dir);
    if (strncmp(real, r->real_dir, n) == 0 && (real[n] == '/' || (n == 1 && real[0] == '/')))
        return 1;
    snprintf(why, cap, "%.90s is a symlink leading outside the repository (to %.90s)", path, real);
    return 0;
}

/* A version folder name: digits only, no leading zero, at most 2^31 - 1. */
static long parse_version(const char *s) {
    if (!s[0] || s[0] == '0' || strlen(s) > 10)
        return -1;
    for (const char *p = s; *p; p++)
        if (*p < '0' || *p > '9')
            return -1;
    long v = strtol(s, NULL, 10);
    return v <= 2147483647L ? v : -1;
}

static inferd_repo_version *version_new(const model_entry *m, long number, const char *dir) {
    inferd_repo_version *v = inferd_calloc(NULL, 1, sizeof *v);
    if (!v)
        return NULL;
    atomic_init(&v->refs, 1); // the registry's
    snprintf(v->name, sizeof v->name, "%s", m->name);
    v->number = number;
    snprintf(v->dir, sizeof v->dir, "%.4000s/%ld", dir, number);
    v->cfg = m->cfg;
    atomic_init(&v->state, INFERD_REPO_STATE_LOADING);
    if (inferd_stats_init(&v->stats) < 0) {
        inferd_free(v);
        return NULL;
    }
    inferd_mem_account_init(&v->acct);
    return v;
}

/* Reads DIR/<name>/: config.json and the version folders. Problems become m->reason or
 * UNAVAILABLE versions; only out-of-memory fails. */
static int scan_model(inferd_repo *r, model_entry *m, inferd_error *err) {
    char mdir[4096 + 130], path[4096 + 200];
    snprintf(mdir, sizeof mdir, "%s/%s", r->dir, m->name);
    inferd_config_init(&m->cfg);
    if (!inside_repo(r, mdir, m->reason, sizeof m->reason)) {
        inferd_log_error("model %s: %s", m->name, m->reason);
        return 0;
    }
    snprintf(path, sizeof path, "%s/config.json", mdir);
    inferd_error cerr = {0};
    int rc = inferd_config_load_file(&m->cfg, path, &cerr);
    if (rc == INFERD_ENOTFOUND) {
        inferd_config_init(&m->cfg);
    } else if (rc < 0) {
        snprintf(m->reason, sizeof m->reason, "%s", cerr.msg);
        inferd_log_error("model %s: %s", m->name, cerr.msg);
        return 0;
    } else if (m->cfg.name[0] && strcmp(m->cfg.name, m->name) != 0) {
        snprintf(m->reason, sizeof m->reason,
                 "config.json: name: '%.100s' differs from the folder name '%.100s'", m->cfg.name,
                 m->name);
        inferd_log_error("model %s: %s", m->name, m->reason);
        return 0;
    }

    long found[MAX_VERSIONS];
    long outside[MAX_VERSIONS]; /* version folders that resolve outside the repository */
    char outside_why[4][256];   /* the reasons of the first few, for the index */
    int n_found = 0, n_outside = 0;
    DIR *d = opendir(mdir);
    if (!d) {
        snprintf(m->reason, sizeof m->reason, "cannot read %.200s: %s", mdir, strerror(errno));
        return 0;
    }
    struct dirent *e;
    while ((e = readdir(d))) {
        long v = parse_version(e->d_name);
        snprintf(path, sizeof path, "%s/%s", mdir, e->d_name);
        if (v > 0 && is_dir(path) && n_found < MAX_VERSIONS) {
            char why[256];
            if (inside_repo(r, path, why, sizeof why)) {
                found[n_found++] = v;
            } else if (n_outside < MAX_VERSIONS) {
                if (n_outside < 4)
                    snprintf(outside_why[n_outside], sizeof outside_why[0], "%s", why);
                outside[n_outside++] = v;
                inferd_log_error("model %s: version %ld refused: %s", m->name, v, why);
            }
        }
    }
    closedir(d);
    qsort(found, (size_t)n_found, sizeof found[0], cmp_long);
    if (n_found == 0 && m->cfg.policy != INFERD_CONFIG_POLICY_SPECIFIC) {
        snprintf(m->reason, sizeof m->reason, "no version folders (%.200s/<number>/model.onnx)",
                 mdir);
        inferd_log_error("model %s: %s", m->name, m->reason);
        return 0;
    }
    long selected[MAX_VERSIONS];
    int n_sel = inferd_config_select_versions(&m->cfg, found, n_found, selected, MAX_VERSIONS);
    m->versions = inferd_calloc(NULL, (size_t)(n_sel > 0 ? n_sel : 1), sizeof *m->versions);
    if (!m->versions)
        return inferd_error_set(err, INFERD_EINTERNAL, "out of memory");
    for (int i = 0; i < n_sel; i++) {
        inferd_repo_version *v = version_new(m, selected[i], mdir);
        if (!v)
            return inferd_error_set(err, INFERD_EINTERNAL, "out of memory");
        m->versions[m->n_versions++] = v;
        int refused = -1;
        for (int k = 0; k < n_outside && refused < 0; k++)
            if (outside[k] == selected[i])
                refused = k;
        if (refused >= 0) {
            set_state(v, INFERD_REPO_STATE_UNAVAILABLE,
                      refused < 4 ? outside_why[refused]
                                  : "the version folder is a symlink leading outside the "
                                    "repository");
            continue;
        }
        if (!bsearch(&selected[i], found, (size_t)n_found, sizeof found[0], cmp_long)) {
            char why[256];
            snprintf(why, sizeof why, "version_policy lists version %ld but %.200s/%ld is missing",
                     selected[i], mdir, selected[i]);
            set_state(v, INFERD_REPO_STATE_UNAVAILABLE, why);
            inferd_log_error("model %s: %s", m->name, why);
        }
    }
    return 0;
}

static void repo_free(inferd_repo *r) {
    for (int i = 0; i < r->n_models; i++) {
        model_entry *m = &r->models[i];
        for (int j = 0; j < m->n_versions; j++)
            inferd_repo_release(m->versions[j]);
        inferd_free(m->versions);
        inferd_config_deinit(&m->cfg);
    }
    inferd_free(r->models);
    inferd_free(r->load_order);
    pthread_cond_destroy(&r->cv);
    pthread_mutex_destroy(&r->lock);
    inferd_free(r);
}

int inferd_repo_create(const inferd_repo_options *opts, inferd_repo **out, inferd_error *err) {
    *out = NULL;
    if (!opts->dir || !opts->dir[0])
        return inferd_error_set(err, INFERD_EINVAL, "no repository folder given");
    DIR *d = opendir(opts->dir);
    if (!d)
        return inferd_error_set(err, errno == ENOENT ? INFERD_ENOTFOUND : INFERD_EINVAL,
                                "cannot read the repository %s: %s", opts->dir, strerror(errno));
    inferd_repo *r = inferd_calloc(NULL, 1, sizeof *r);
    if (!r) {
        closedir(d);
        return inferd_error_set(err, INFERD_EINTERNAL, "out of memory");
    }
    snprintf(r->dir, sizeof r->dir, "%s", opts->dir);
    if (!realpath(opts->dir, r->real_dir))
        snprintf(r->real_dir, sizeof r->real_dir, "%s", opts->dir);
    r->opts = *opts;
    r->opts.dir = r->dir;
    pthread_mutex_init(&r->lock, NULL);
    pthread_cond_init(&r->cv, NULL);
    atomic_init(&r->loading, 0);

    int cap = 0;
    struct dirent *e;
    int rc = 0;
    while ((e = readdir(d))) {
        char path[4096 + 260];
        if (e->d_name[0] == '.')
            continue; // hidden folders, caches, editors' files
        snprintf(path, sizeof path, "%s/%s", r->dir, e->d_name);
        if (!is_dir(path))
            continue;
        if (strlen(e->d_name) >= sizeof r->models[0].name) {
            inferd_log_error("repository: skipping %s: model names are at most 127 bytes", path);
            continue;
        }
        if (r->n_models == cap) {
            cap = cap ? cap * 2 : 16;
            model_entry *nm = inferd_realloc(NULL, r->models, (size_t)cap * sizeof *nm);
            if (!nm) {
                rc = inferd_error_set(err, INFERD_EINTERNAL, "out of memory");
                break;
            }
            r->models = nm;
        }
        model_entry *m = &r->models[r->n_models++];
        memset(m, 0, sizeof *m);
        snprintf(m->name, sizeof m->name, "%s", e->d_name);
    }
    closedir(d);
    if (rc == 0 && r->n_models > 0)
        qsort(r->models, (size_t)r->n_models, sizeof r->models[0], cmp_name);
    int total = 0;
    for (int i = 0; rc == 0 && i < r->n_models; i++) {
        rc = scan_model(r, &r->models[i], err);
        total += r->models[i].n_versions;
    }
    if (rc == 0 && !(r->load_order = inferd_calloc(NULL, (size_t)(total + 1), sizeof(void *))))
        rc = inferd_error_set(err, INFERD_EINTERNAL, "out of memory");
    if (rc < 0) {
        repo_free(r);
        return rc;
    }
    // Newest version of each model first: requests without a version use it.
    for (int i = 0; i < r->n_models; i++)
        for (int j = r->models[i].n_versions - 1; j >= 0; j--) {
            inferd_repo_version *v = r->models[i].versions[j];
            if (get_state(v) == INFERD_REPO_STATE_LOADING)
                r->load_order[r->n_load++] = v;
        }
    atomic_store(&r->loading, r->n_load);
    inferd_log_info("repository %s: %d models, %d versions to load", r->dir, r->n_models,
                    r->n_load);
    *out = r;
    return 0;
}

int inferd_repo_start(inferd_repo *r, inferd_error *err) {
    int rc = pthread_create(&r->loader, NULL, loader_main, r);
    if (rc != 0)
        return inferd_error_set(err, INFERD_EINTERNAL, "cannot start the loader thread: %s",
                                strerror(rc));
    r->loader_started = 1;
    return 0;
}

int inferd_repo_loading(const inferd_repo *r) { return atomic_load(&r->loading); }

int inferd_repo_wait_loaded(inferd_repo *r, int64_t timeout_ms, inferd_error *err) {
    int64_t until = inferd_now_ns() + timeout_ms * 1000000;
    pthread_mutex_lock(&r->lock);
    while (atomic_load(&r->loading) > 0 && inferd_now_ns() < until) {
        pthread_mutex_unlock(&r->lock);
        usleep(2000);
        pthread_mutex_lock(&r->lock);
    }
    pthread_mutex_unlock(&r->lock);
    if (atomic_load(&r->loading) > 0)
        return inferd_error_set(err, INFERD_EUNAVAIL, "%d versions still loading",
                                atomic_load(&r->loading));
    return 0;
}

void inferd_repo_destroy(inferd_repo *r) {
    if (!r)
        return;
    pthread_mutex_lock(&r->lock);
    r->stop = 1;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->lock);
    if (r->loader_started)
        pthread_join(r->loader, NULL);
    repo_free(r);
}

static model_entry *find_model(inferd_repo *r, const char *name) {
    model_entry key;
    snprintf(key.name, sizeof key.name, "%s", name);
    if (strlen(name) >= sizeof key.name)
        return NULL;
    return bsearch(&key, r->models, (size_t)r->n_models, sizeof key, cmp_name);
}

int inferd_repo_acquire(inferd_repo *r, const char *model, long version, inferd_repo_version **out,
                        inferd_error *err) {
    *out = NULL;
    model_entry *m = find_model(r, model);
    if (!m)
        return inferd_error_set(err, INFERD_ENOTFOUND, "unknown model '%.128s'", model);
    inferd_repo_version *v = NULL;
    if (version > 0) {
        for (int i = 0; i < m->n_versions && !v; i++)
            if (m->versions[i]->number == version)
                v = m->versions[i];
        if (!v)
            return inferd_error_set(err, INFERD_ENOTFOUND, "unknown version %ld of model '%s'",
                                    version, m->name);
        inferd_repo_state st = get_state(v);
        if (st == INFERD_REPO_STATE_LOADING)
            return inferd_error_set(err, INFERD_EUNAVAIL, "model '%s' version %ld is loading",
                                    m->name, version);
        if (st == INFERD_REPO_STATE_UNAVAILABLE)
            return inferd_error_set(err, INFERD_EUNAVAIL,
                                    "model '%s' version %ld is unavailable: %s", m->name, version,
                                    v->reason);
    } else {
        int loading = 0;
        for (int i = m->n_versions - 1; i >= 0 && !v; i--) {
            inferd_repo_state st = get_state(m->versions[i]);
            if (st == INFERD_REPO_STATE_READY)
                v = m->versions[i];
            loading |= st == INFERD_REPO_STATE_LOADING;
        }
        if (!v) {
            if (loading)
                return inferd_error_set(err, INFERD_EUNAVAIL, "model '%s' is loading", m->name);
            const char *why = m->reason[0]        ? m->reason
                              : m->n_versions > 0 ? m->versions[m->n_versions - 1]->reason
                                                  : "no versions";
            return inferd_error_set(err, INFERD_EUNAVAIL, "model '%s' is unavailable: %s", m->name,
                                    why);
        }
    }
    // The registry's reference keeps v alive while we take ours: versions are only freed
    // after the registry lets go of them, in inferd_repo_destroy.
    inferd_repo_retain(v);
    *out = v;
    return 0;
}

const char *inferd_repo_version_name(const inferd_repo_version *v) { return v->name; }
long inferd_repo_version_number(const inferd_repo_version *v) { return v->number; }
const inferd_repo_model *inferd_repo_version_model(const inferd_repo_version *v) {
    return &v->model;
}
const inferd_config *inferd_repo_version_config(const inferd_repo_version *v) { return &v->cfg; }
int inferd_repo_version_max_batch(const inferd_repo_version *v) { return v->max_batch; }
inferd_sched_queue *inferd_repo_version_queue(const inferd_repo_version *v) { return v->queue; }
const inferd_pipeline *inferd_repo_version_pipeline(const inferd_repo_version *v) {
    return v->pipeline;
}
int inferd_repo_version_pads(const inferd_repo_version *v) { return v->pad; }
inferd_stats *inferd_repo_version_stats(inferd_repo_version *v) { return &v->stats; }
int64_t inferd_repo_version_memory(const inferd_repo_version *v) {
    int64_t acct = inferd_mem_account_bytes(&v->acct);
    if (v->loaded && v->model.memory) {
        int64_t m = v->model.memory(v->model.ctx);
        return m > acct ? m : acct;
    }
    return acct;
}

int inferd_repo_index(inferd_repo *r, inferd_repo_entry **out, size_t *n, inferd_error *err) {
    *out = NULL;
    *n = 0;
    size_t total = 0;
    for (int i = 0; i < r->n_models; i++)
        total += r->models[i].reason[0] || r->models[i].n_versions == 0
                     ? 1
                     : (size_t)r->models[i].n_versions;
    inferd_repo_entry *e = inferd_calloc(NULL, total ? total : 1, sizeof *e);
    if (!e)
        return inferd_error_set(err, INFERD_EINTERNAL, "out of memory");
    size_t k = 0;
    for (int i = 0; i < r->n_models; i++) {
        const model_entry *m = &r->models[i];
        if (m->reason[0] || m->n_versions == 0) {
            snprintf(e[k].name, sizeof e[k].name, "%s", m->name);
            e[k].version = 0;
            e[k].state = INFERD_REPO_STATE_UNAVAILABLE;
            snprintf(e[k].reason, sizeof e[k].reason, "%s",
                     m->reason[0] ? m->reason : "no versions selected");
            k++;
            continue;
        }
        for (int j = 0; j < m->n_versions; j++) {
            const inferd_repo_version *v = m->versions[j];
            snprintf(e[k].name, sizeof e[k].name, "%s", m->name);
            e[k].version = v->number;
            e[k].state = get_state(v);
            if (e[k].state == INFERD_REPO_STATE_UNAVAILABLE)
                snprintf(e[k].reason, sizeof e[k].reason, "%s", v->reason);
            k++;
        }
    }
    *out = e;
    *n = k;
    return 0;
}

int inferd_repo_list_ready(inferd_repo *r, inferd_repo_version ***out, size_t *n,
                           inferd_error *err) {
    *out = NULL;
    *n = 0;
    size_t total = 0;
    for (int i = 0; i < r->n_models; i++)
        total += (size_t)r->models[i].n_versions;
    inferd_repo_version **list = inferd_calloc(NULL, total ? total : 1, sizeof *list);
    if (!list)
        return inferd_error_set(err, INFERD_EINTERNAL, "out of memory");
    size_t k = 0;
    for (int i = 0; i < r->n_models; i++)
        for (int j = 0; j < r->models[i].n_versions; j++) {
            inferd_repo_version *v = r->models[i].versions[j];
            if (get_state(v) == INFERD_REPO_STATE_READY) {
                inferd_repo_retain(v);
                list[k++] = v;
            }
        }
    *out = list;
    *n = k;
    return 0;
}
