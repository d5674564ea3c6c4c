/* api.c: see api.h for the routes and the design.
 *
 * Locks: none of its own. The repository lookups are lock-free; the scheduler's lock is taken
 * inside inferd_sched_submit only.
 */
#include "api/api.h"

#include <errno.h>
#include <jansson.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/kserve.h"
#include "api/metrics.h"
#include "api/status.h"
#include "api/strbuf.h"
#include "api/textcall.h"
#include "api/textreq.h"
#include "cli/cli.h"
#include "util/alloc.h"
#include "util/clock.h"
#include "util/log.h"

struct inferd_api {
    inferd_repo *repo;
    inferd_sched *sched;
    inferd_textreq_limits text_limits;
    int allow_repository_control;
    int strict_readiness;
    long long offload_bytes;
    _Atomic int draining;
};

/* A version's KServe text signature (textreq.h), for metadata and text infer. */
typedef struct text_signature {
    inferd_tensor_desc inputs[1], outputs[4];
    int64_t top_width;
    inferd_kserve_model model;
} text_signature;

/* One text request (/v1 predict or KServe infer with a text input) from parse to response. */
typedef struct text_call {
    inferd_api *api;
    inferd_http_request *http;
    inferd_repo_version *v;
    int kserve;                /* answer as KServe infer (else /v1 predictions) */
    text_signature sig;        /* kserve: the signature req was parsed against */
    inferd_kserve_request req; /* kserve: id and output selection */
    int64_t arrival_ns;
    int64_t waited_us;         /* parked until the version was loaded or a worker parsed it */
    inferd_textreq_predict pr; /* /v1: the parsed body, while parked */
    int has_pr;
    inferd_route route; /* a per-team route's request: its shape and counters (has_route) */
    int has_route;
    inferd_repo_waiter wait;
    inferd_sched_job job; /* parse on a worker (large bodies) */
    long version_asked;   /* for the worker: the model and version the path names */
    char model_asked[1024];
} text_call;

/* One infer request from parse to response. */
typedef struct infer_call {
    inferd_api *api;
    inferd_http_request *http;
    inferd_repo_version *v;
    inferd_kserve_model model;
    inferd_kserve_request req;
    inferd_sched_request sreq;
    inferd_tensor outputs[INFERD_KSERVE_MAX_TENSORS];
    int64_t arrival_ns;
    int64_t waited_us; /* parked until the version was loaded or a worker parsed it */
    long long hl;      /* Inference-Header-Content-Length, read in the handler */
    inferd_repo_waiter wait;
    inferd_sched_job job; /* parse on a worker (large bodies) */
    long version_asked;   /* for the worker: the model and version the path names */
    char model_asked[1024];
} infer_call;

/* A request answered from a version's metadata once it is loaded. */
typedef struct meta_call {
    inferd_api *api;
    inferd_http_request *http;
    long version;
    inferd_repo_waiter wait;
} meta_call;

int inferd_api_create(const inferd_api_options *o, inferd_api **out, inferd_error *err) {
    *out = NULL;
    if (!o->repo)
        return inferd_error_set(err, INFERD_EINVAL, "api needs a repository");
    inferd_api *a = inferd_calloc(NULL, 1, sizeof *a);
    if (!a)
        return inferd_error_set(err, INFERD_EINTERNAL, "out of memory");
    a->repo = o->repo;
    a->sched = o->sched;
    a->text_limits = o->text_limits;
    a->allow_repository_control = o->allow_repository_control;
    a->strict_readiness = o->strict_readiness;
    a->offload_bytes = o->offload_bytes;
    if (!a->text_limits.max_items)
        a->text_limits.max_items = INFERD_TEXTREQ_DEFAULT_MAX_ITEMS;
    if (!a->text_limits.max_bytes)
        a->text_limits.max_bytes = INFERD_TEXTREQ_DEFAULT_MAX_BYTES;
    atomic_init(&a->draining, 0);
    *out = a;
    return 0;
}

void inferd_api_destroy(inferd_api *a) { inferd_free(a); }

void inferd_api_set_draining(inferd_api *a) { atomic_store(&a->draining, 1); }

static void respond_buf(inferd_http_request *req, int status, inferd_strbuf *b) {
    size_t len;
    char *body = inferd_strbuf_take(b, &len);
    if (!body) {
        inferd_status_respond_error(req, INFERD_EINTERNAL, "out of memory");
        return;
    }
    inferd_http_respond(req, status, "application/json", body, len, NULL);
}

/* A label from a version's labels.txt for KServe classification, or NULL past its end. */
static const char *pipeline_label(const void *ctx, int64_t index) {
    const inferd_pipeline *p = ctx;
    char buf[16];
    if (index < 0 || (size_t)index >= inferd_pipeline_label_count(p))
        return NULL;
    return inferd_pipeline_label_text(p, (int32_t)index, buf); // within the count: the label
}

static void fill_model(inferd_kserve_model *m, const inferd_repo_version *v) {
    const inferd_repo_model *rm = inferd_repo_version_model(v);
    *m = (inferd_kserve_model){
        .name = inferd_repo_version_name(v),
        .version = inferd_repo_version_number(v),
        .max_batch = inferd_repo_version_max_batch(v),
        .n_inputs = rm->n_inputs,
        .inputs = rm->inputs,
        .n_outputs = rm->n_outputs,
        .outputs = rm->outputs,
        .labels_output = -1,
    };
    // A version with a pipeline and a labels file names the classes of its scores output.
    const inferd_pipeline *p = inferd_repo_version_pipeline(v);
    if (p && inferd_pipeline_label_count(p) > 0) {
        const char *out = inferd_pipeline_output_name(p);
        for (int j = 0; j < rm->n_outputs; j++)
            if (!strcmp(rm->outputs[j].name, out))
                m->labels_output = j;
        m->label_of = pipeline_label;
        m->labels_ctx = p;
    }
}

/* Fills sig with v's text signature; returns 0 when v has no pipeline. */
static int fill_text_signature(text_signature *sig, const inferd_repo_version *v) {
    const inferd_pipeline *p = inferd_repo_version_pipeline(v);
    if (!p)
        return 0;
    const inferd_repo_model *rm = inferd_repo_version_model(v);
    int64_t classes = -1;
    for (int j = 0; j < rm->n_outputs; j++)
        if (!strcmp(rm->outputs[j].name, inferd_pipeline_output_name(p)) &&
            rm->outputs[j].rank == 2)
            classes = rm->outputs[j].dims[1];
    sig->top_width = inferd_textreq_top_width(p, classes);
    int n_out;
    inferd_textreq_signature(sig->top_width, sig->inputs, sig->outputs, &n_out);
    // Texts have no batch dim of their own to check: [N] is any N, bounded by the item limit.
    sig->model = (inferd_kserve_model){
        .name = inferd_repo_version_name(v),
        .version = inferd_repo_version_number(v),
        .max_batch = 0,
        .n_inputs = 1,
        .inputs = sig->inputs,
        .n_outputs = n_out,
        .outputs = sig->outputs,
    };
    return 1;
}

/* The time a request may still wait in its queue after waiting waited_us for its version to
 * load: what it asked for (or the model's default) less the wait. Sets *expired when nothing
 * is left. */
static int64_t remaining_timeout(int64_t asked_us, const inferd_repo_version *v, int64_t waited_us,
                                 int *expired) {
    *expired = 0;
    int64_t t = asked_us > 0 ? asked_us : inferd_repo_version_config(v)->default_timeout_us;
    if (waited_us <= 0 || t <= 0)
        return asked_us;
    if (waited_us >= t) {
        *expired = 1;
        return 0;
    }
    return t - waited_us;
}

/* Takes a reference on model/version into *out. Returns 1 when it was READY; 0 when the request
 * was parked until the version is loaded (cb then runs once with the version or the reason, on
 * a loader or the manager thread, and owns user from now on); -1 when it was answered with an
 * error (the caller still owns user). peek(user) gives the request's timeout in microseconds
 * (0: the model's default), which bounds the wait; the fast path never calls it. */
static int acquire_or_wait(inferd_api *a, inferd_http_request *req, const char *model, long version,
                           int64_t arrival_ns, inferd_repo_waiter *w, inferd_repo_ready_fn cb,
                           void *user, int64_t (*peek)(void *), inferd_repo_version **out) {
    inferd_error err = {0};
    int rc = inferd_repo_acquire(a->repo, model, version, out, &err);
    if (rc == 0)
        return 1;
    if (rc == INFERD_EUNAVAIL) {
        int64_t timeout_us = peek ? peek(user) : 0;
        *w = (inferd_repo_waiter){
            .done = cb,
            .user = user,
            .deadline_ns = timeout_us > 0 ? arrival_ns + timeout_us * 1000 : 0,
        };
        memset(&err, 0, sizeof err);
        rc = inferd_repo_acquire_or_park(a->repo, model, version, w, out, &err);
        if (rc == 0)
            return 1;
        if (rc == INFERD_REPO_PARKED)
            return 0;
    }
    inferd_status_respond_error(req, rc, err.msg);
    return -1;
}

/* Whether a request with json_bytes of JSON to parse goes to a worker (api.h, offload_bytes).
 * If so, job->run(job) is posted and 1 returned: the caller's request belongs to the job. */
static int offload(inferd_api *a, size_t json_bytes, inferd_sched_job *job) {
    if (!a->sched || a->offload_bytes < 0 || (long long)json_bytes <= a->offload_bytes)
        return 0;
    inferd_error err = {0};
    return inferd_sched_post(a->sched, job, &err) == 0; // stopping: parse here instead
}

/* The JSON bytes of a body: all of it, or the header part before binary tensors. */
static size_t json_bytes(inferd_http_request *req, long long hl) {
    size_t len;
    inferd_http_request_body(req, &len);
    return hl >= 0 && (unsigned long long)hl < len ? (size_t)hl : len;
}

/* ---- health, server metadata, index, metrics ---- */

/* Readiness for /ready and /v2/health/ready (repo.h, inferd_repo_ready); why says what is
 * missing when not ready. */
static int server_ready(inferd_api *a, char *why, size_t cap) {
    if (atomic_load(&a->draining)) {
        snprintf(why, cap, "draining: the server is shutting down");
        return 0;
    }
    return inferd_repo_ready(a->repo, a->strict_readiness, why, cap);
}

static void handle_server_metadata(inferd_http_request *req) {
    inferd_status_respond_json(req, 200,
                               "{\"name\":\"inferd\",\"version\":\"" INFERD_VERSION "\","
                               "\"extensions\":[\"binary_tensor_data\",\"classification\","
                               "\"model_repository\",\"statistics\"]}");
}

static const char *state_name(inferd_repo_state s) {
    switch (s) {
    case INFERD_REPO_STATE_READY:
        return "READY";
    case INFERD_REPO_STATE_LOADING:
        return "LOADING";
    case INFERD_REPO_STATE_UNLOADED:
        return "UNLOADED";
    case INFERD_REPO_STATE_UNLOADING:
        return "UNLOADING";
    default:
        return "UNAVAILABLE";
    }
}

/* Reads an optional JSON object body with the boolean key `key` (and no other): *value is
 * 0 when the body is empty. Returns 0 or answers 400 and returns -1. */
static int optional_bool_body(inferd_http_request *req, const char *key, const char *other,
                              int *value) {
    size_t len;
    const uint8_t *body = inferd_http_request_body(req, &len);
    *value = 0;
    size_t i = 0;
    while (body && i < len &&
           (body[i] == ' ' || body[i] == '\n' || body[i] == '\r' || body[i] == '\t'))
        i++;
    if (!body || i == len)
        return 0;
    json_error_t jerr;
    json_t *root = json_loadb((const char *)body, len, JSON_REJECT_DUPLICATES, &jerr);
    char msg[300];
    const char *k;
    json_t *v;
    if (!root || !json_is_object(root)) {
        snprintf(msg, sizeof msg, "the body must be a JSON object%s%s", root ? "" : ": ",
                 root ? "" : jerr.text);
        json_decref(root);
        inferd_status_respond_error(req, INFERD_EINVAL, msg);
        return -1;
    }
    json_object_foreach(root, k, v) {
        if (!strcmp(k, key) && json_is_boolean(v)) {
            *value = json_is_true(v);
        } else if (!strcmp(k, key)) {
            snprintf(msg, sizeof msg, "%s: must be true or false", key);
            json_decref(root);
            inferd_status_respond_error(req, INFERD_EINVAL, msg);
            return -1;
        } else if (!other || strcmp(k, other) != 0) {
            snprintf(msg, sizeof msg, "unknown key '%.64s'", k);
            json_decref(root);
            inferd_status_respond_error(req, INFERD_EINVAL, msg);
            return -1;
        }
    }
    json_decref(root);
    return 0;
}

static void handle_index(inferd_api *a, inferd_http_request *req) {
    int ready_only;
    if (optional_bool_body(req, "ready", NULL, &ready_only) < 0)
        return;
    inferd_repo_entry *e;
    size_t n;
    inferd_error err = {0};
    if (inferd_repo_index(a->repo, &e, &n, &err) < 0) {
        inferd_status_respond_error(req, err.code, err.msg);
        return;
    }
    inferd_strbuf b;
    inferd_strbuf_init(&b);
    inferd_strbuf_append(&b, "[", 1);
    int first = 1;
    for (size_t i = 0; i < n; i++) {
        if (ready_only && e[i].state != INFERD_REPO_STATE_READY)
            continue;
        inferd_strbuf_appends(&b, first ? "{\"name\":" : ",{\"name\":");
        first = 0;
        inferd_strbuf_append_json_string(&b, e[i].name, strlen(e[i].name));
        if (e[i].version > 0)
            inferd_strbuf_appendf(&b, ",\"version\":\"%ld\"", e[i].version);
        else
            inferd_strbuf_appends(&b, ",\"version\":\"\"");
        inferd_strbuf_appendf(&b, ",\"state\":\"%s\",\"reason\":", state_name(e[i].state));
        inferd_strbuf_append_json_string(&b, e[i].reason, strlen(e[i].reason));
        if (e[i].version > 0)
            inferd_strbuf_appendf(&b, ",\"resident_bytes\":%lld", (long long)e[i].resident_bytes);
        inferd_strbuf_append(&b, "}", 1);
    }
    inferd_strbuf_append(&b, "]", 1);
    inferd_free(e);
    respond_buf(req, 200, &b);
}

/* ---- the repository extension: load and unload ---- */

typedef struct control_call {
    inferd_http_request *http;
    char model[128];
    inferd_repo_waiter wait;
} control_call;

/* A loader or the manager thread: the load request finished. As Triton, a load that fails
 * is a 400 with the reason (404 when there is no such model folder). */
static void on_model_loaded(void *user, inferd_repo_version *v, int status,
                            const inferd_error *err) {
    control_call *c = user;
    (void)v;
    if (status < 0) {
        int code =
            status == INFERD_ENOTFOUND || status == INFERD_EINTERNAL ? status : INFERD_EINVAL;
        inferd_log_info("model %s: load request failed: %s", c->model, err->msg);
        inferd_status_respond_error(c->http, code, err->msg);
    } else {
        inferd_log_info("model %s: loaded by request", c->model);
        inferd_http_respond(c->http, 200, "application/json", NULL, 0, NULL);
    }
    inferd_free(c);
}

static void handle_repository_control(inferd_api *a, inferd_http_request *req, const char *model,
                                      int load) {
    if (!a->allow_repository_control) {
        inferd_status_respond_json(req, INFERD_STATUS_FORBIDDEN,
                                   "{\"error\":\"repository control is disabled: start inferd "
                                   "with --allow-repository-control to load and unload models "
                                   "through the API\"}");
        return;
    }
    // {"parameters": {...}}: Triton's "config" override and file uploads are not supported;
    // "unload_dependents" means nothing here (there are no ensembles) and is accepted.
    size_t len;
    const uint8_t *body = inferd_http_request_body(req, &len);
    if (body && len > 0) {
        json_error_t jerr;
        json_t *root = json_loadb((const char *)body, len, JSON_REJECT_DUPLICATES, &jerr);
        const json_t *params = root ? json_object_get(root, "parameters") : NULL;
        char msg[300] = "";
        if (!root || !json_is_object(root) || json_object_size(root) > (params ? 1u : 0u))
            snprintf(msg, sizeof msg, "the body must be {\"parameters\": {...}} or empty");
        else if (params && !json_is_object(params))
            snprintf(msg, sizeof msg, "parameters: must be an object");
        const char *k;
        json_t *v;
        if (!msg[0] && params)
            json_object_foreach((json_t *)params, k, v) {
                if (!load && !strcmp(k, "unload_dependents") && json_is_boolean(v))
                    continue;
                snprintf(msg, sizeof msg, "parameters.%.64s: not supported%s", k,
                         !strcmp(k, "config") ? " (edit config.json in the model's folder)" : "");
                break;
            }
        json_decref(root);
        if (msg[0]) {
            inferd_status_respond_error(req, INFERD_EINVAL, msg);
            return;
        }
    }
    inferd_error err = {0};
    if (!load) {
        if (inferd_repo_request_unload(a->repo, model, &err) < 0)
            inferd_status_respond_error(req, err.code, err.msg);
        else
            inferd_http_respond(req, 200, "application/json", NULL, 0, NULL);
        return;
    }
    control_call *c = inferd_calloc(NULL, 1, sizeof *c);
    if (!c) {
        inferd_status_respond_error(req, INFERD_EINTERNAL, "out of memory");
        return;
    }
    c->http = req;
    snprintf(c->model, sizeof c->model, "%s", model);
    c->wait = (inferd_repo_waiter){.done = on_model_loaded, .user = c};
    int rc = inferd_repo_request_load(a->repo, model, &c->wait, &err);
    if (rc < 0) {
        inferd_free(c);
        inferd_status_respond_error(req, rc, err.msg);
    }
    // Parked: on_model_loaded answers.
}

static void handle_metrics(inferd_api *a, inferd_http_request *req) {
    inferd_strbuf b;
    inferd_strbuf_init(&b);
    inferd_error err = {0};
    if (inferd_metrics_format(a->repo, a->sched, &b, &err) < 0) {
        inferd_strbuf_deinit(&b);
        inferd_status_respond_error(req, err.code, err.msg);
        return;
    }
    size_t len;
    char *body = inferd_strbuf_take(&b, &len);
    if (!body) {
        inferd_status_respond_error(req, INFERD_EINTERNAL, "out of memory");
        return;
    }
    inferd_http_respond(req, 200, "text/plain; version=0.0.4; charset=utf-8", body, len, NULL);
}

/* ---- model metadata and readiness ---- */

static void respond_metadata(inferd_api *a, inferd_http_request *req, inferd_repo_version *v,
                             long version) {
    inferd_kserve_model m;
    fill_model(&m, v);
    long versions[64];
    int nv = 0;
    if (version > 0) {
        versions[nv++] = version;
    } else {
        // Every version requests may name: READY ones, and with on-demand loading the ones
        // that would load.
        inferd_repo_entry *e;
        size_t n;
        inferd_error err = {0};
        if (inferd_repo_index(a->repo, &e, &n, &err) == 0) {
            for (size_t i = 0; i < n && nv < 64; i++)
                if (!strcmp(e[i].name, inferd_repo_version_name(v)) && e[i].servable)
                    versions[nv++] = e[i].version;
            inferd_free(e);
        }
    }
    inferd_strbuf b;
    inferd_strbuf_init(&b);
    const char *platform = inferd_repo_version_model(v)->platform;
    text_signature sig;
    int has_text = fill_text_signature(&sig, v);
    inferd_kserve_format_metadata(&b, &m, versions, nv, platform ? platform : "onnx",
                                  has_text ? &sig.model : NULL);
    inferd_repo_release(v);
    respond_buf(req, 200, &b);
}

/* A loader thread: the version a metadata request waited for is loaded (or failed). */
static void on_metadata_version(void *user, inferd_repo_version *v, int status,
                                const inferd_error *err) {
    meta_call *c = user;
    if (status < 0)
        inferd_status_respond_error(c->http, status, err->msg);
    else
        respond_metadata(c->api, c->http, v, c->version);
    inferd_free(c);
}

static void handle_model_metadata(inferd_api *a, inferd_http_request *req, const char *model,
                                  long version) {
    meta_call *c = inferd_calloc(NULL, 1, sizeof *c);
    if (!c) {
        inferd_status_respond_error(req, INFERD_EINTERNAL, "out of memory");
        return;
    }
    *c = (meta_call){.api = a, .http = req, .version = version};
    inferd_repo_version *v;
    int rc = acquire_or_wait(a, req, model, version, inferd_http_request_arrival_ns(req), &c->wait,
                             on_metadata_version, c, NULL, &v);
    if (rc == 0)
        return; // parked: on_metadata_version answers
    inferd_free(c);
    if (rc > 0)
        respond_metadata(a, req, v, version);
}

/* Triton's statistics extension (metrics.h): model NULL for every model. */
static void handle_stats(inferd_api *a, inferd_http_request *req, const char *model, long version) {
    inferd_strbuf b;
    inferd_strbuf_init(&b);
    inferd_error err = {0};
    int rc = inferd_metrics_format_stats(a->repo, model, version, &b, &err);
    if (rc < 0) {
        inferd_strbuf_deinit(&b);
        inferd_status_respond_error(req, rc, err.msg);
        return;
    }
    respond_buf(req, 200, &b);
}

static void handle_model_ready(inferd_api *a, inferd_http_request *req, const char *model,
                               long version) {
    inferd_error err = {0};
    inferd_strbuf b;
    inferd_strbuf_init(&b);
    inferd_strbuf_appends(&b, "{\"name\":");
    inferd_strbuf_append_json_string(&b, model, strlen(model));
    long number;
    int rc = inferd_repo_probe(a->repo, model, version, &number, &err);
    if (rc == INFERD_ENOTFOUND) {
        inferd_strbuf_deinit(&b);
        inferd_status_respond_error(req, rc, err.msg);
        return;
    }
    if (rc < 0) {
        inferd_strbuf_appends(&b, ",\"ready\":false,\"error\":");
        inferd_strbuf_append_json_string(&b, err.msg, strlen(err.msg));
        inferd_strbuf_append(&b, "}", 1);
        respond_buf(req, INFERD_STATUS_NOT_READY, &b);
        return;
    }
    inferd_strbuf_appendf(&b, ",\"version\":\"%ld\",\"ready\":true}", number);
    respond_buf(req, 200, &b);
}

/* ---- infer ---- */

static void infer_free(infer_call *c) {
    for (int j = 0; j < INFERD_KSERVE_MAX_TENSORS; j++)
        inferd_free(c->outputs[j].data);
    inferd_kserve_request_deinit(&c->req);
    inferd_repo_release(c->v);
    inferd_free(c);
}

static void infer_fail(infer_call *c, int code, const char *msg) {
    atomic_fetch_add_explicit(&inferd_repo_version_stats(c->v)->failure, 1, memory_order_relaxed);
    // Client errors and refusals are the client's to read; our own failures are logged.
    if (inferd_status_from_code(code) >= 500 && code != INFERD_EUNAVAIL)
        inferd_log_error("model %s version %ld: %s", c->model.name, c->model.version, msg);
    inferd_status_respond_error(c->http, code, msg);
    infer_free(c);
}

/* Worker thread: the batch ran (or the request expired). */
static void on_infer_done(inferd_sched_request *sreq, int status, const inferd_error *serr) {
    infer_call *c = sreq->user;
    if (status < 0) {
        infer_fail(c, status, serr ? serr->msg : "inference failed");
        return;
    }
    char *body;
    size_t len, json_len;
    inferd_error err = {0};
    if (inferd_kserve_format_infer(&c->model, &c->req, c->outputs, &body, &len, &json_len, &err) <
        0) {
        infer_fail(c, err.code, err.msg);
        return;
    }
    inferd_stats *st = inferd_repo_version_stats(c->v);
    atomic_fetch_add_explicit(&st->success, 1, memory_order_relaxed);
    inferd_hist_record(st->request_ns, inferd_now_ns() - c->arrival_ns);
    if (json_len < len) {
        char hl[32];
        snprintf(hl, sizeof hl, "%zu", json_len);
        const char *headers[] = {"Inference-Header-Content-Length", hl, NULL};
        inferd_http_respond(c->http, 200, "application/octet-stream", body, len, headers);
    } else {
        inferd_http_respond(c->http, 200, "application/json", body, len, NULL);
    }
    infer_free(c);
}

static int find_model_input(const inferd_kserve_model *m, const char *name) {
    for (int i = 0; i < m->n_inputs; i++)
        if (!strcmp(m->inputs[i].name, name))
            return i;
    return -1;
}

/* Reads Inference-Header-Content-Length: -1 when absent, -2 when malformed. */
static long long header_length(inferd_http_request *req) {
    const char *h = inferd_http_request_header(req, "Inference-Header-Content-Length");
    if (!h)
        return -1;
    char *end;
    errno = 0;
    long long n = strtoll(h, &end, 10);
    if (errno || end == h || *end || n < 0)
        return -2;
    return n;
}

/* ---- text: /v1 predict and the KServe text signature ---- */

static void text_free(text_call *t) {
    if (t->has_pr)
        inferd_textreq_predict_deinit(&t->pr);
    if (t->has_route)
        inferd_route_stats_release(t->route.stats);
    inferd_kserve_request_deinit(&t->req);
    inferd_repo_release(t->v);
    inferd_free(t);
}

static void text_fail(text_call *t, int code, const char *msg) {
    if (t->has_route)
        atomic_fetch_add_explicit(&t->route.stats->failure, 1, memory_order_relaxed);
    inferd_stats *st = inferd_repo_version_stats(t->v);
    atomic_fetch_add_explicit(&st->failure, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&st->text_failure, 1, memory_order_relaxed);
    if (inferd_status_from_code(code) >= 500 && code != INFERD_EUNAVAIL)
        inferd_log_error("model %s version %ld: %s", inferd_repo_version_name(t->v),
                         inferd_repo_version_number(t->v), msg);
    inferd_status_respond_error(t->http, code, msg);
    text_free(t);
}

/* Worker thread: every text of the request has its prediction (or one failed). */
static void on_text_done(void *user, int status, const inferd_error *terr,
                         const inferd_text_result *results, size_t n) {
    text_call *t = user;
    if (status < 0) {
        text_fail(t, status, terr ? terr->msg : "text inference failed");
        return;
    }
    const inferd_pipeline *p = inferd_repo_version_pipeline(t->v);
    inferd_error err = {0};
    char *body = NULL;
    size_t len = 0, json_len = 0;
    if (t->kserve) {
        inferd_tensor outs[4];
        if (inferd_textreq_build_outputs(p, results, n, t->sig.top_width, outs, &err) < 0) {
            text_fail(t, err.code, err.msg);
            return;
        }
        int rc =
            inferd_kserve_format_infer(&t->sig.model, &t->req, outs, &body, &len, &json_len, &err);
        inferd_textreq_free_outputs(outs);
        if (rc < 0) {
            text_fail(t, err.code, err.msg);
            return;
        }
    } else {
        inferd_strbuf b;
        inferd_strbuf_init(&b);
        if (t->has_route)
            inferd_textreq_format_route(&b, &t->route.spec, p, results, n);
        else
            inferd_textreq_format_predictions(&b, inferd_repo_version_name(t->v),
                                              inferd_repo_version_number(t->v), p, results, n);
        body = inferd_strbuf_take(&b, &len);
        if (!body) {
            text_fail(t, INFERD_EINTERNAL, "out of memory formatting predictions");
            return;
        }
        json_len = len;
    }
    inferd_stats *st = inferd_repo_version_stats(t->v);
    atomic_fetch_add_explicit(&st->success, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&st->text_success, 1, memory_order_relaxed);
    inferd_hist_record(st->request_ns, inferd_now_ns() - t->arrival_ns);
    if (t->has_route) {
        // A route's answer has the team's shape; the version that computed it goes in headers.
        atomic_fetch_add_explicit(&t->route.stats->success, 1, memory_order_relaxed);
        char ver[24];
        snprintf(ver, sizeof ver, "%ld", inferd_repo_version_number(t->v));
        const char *headers[] = {"Inferd-Model", inferd_repo_version_name(t->v),
                                 "Inferd-Model-Version", ver, NULL};
        inferd_http_respond(t->http, 200, "application/json", body, len, headers);
    } else if (json_len < len) {
        char hl[32];
        snprintf(hl, sizeof hl, "%zu", json_len);
        const char *headers[] = {"Inference-Header-Content-Length", hl, NULL};
        inferd_http_respond(t->http, 200, "application/octet-stream", body, len, headers);
    } else {
        inferd_http_respond(t->http, 200, "application/json", body, len, NULL);
    }
    text_free(t);
}

/* Tokenizes and queues the texts of t; from then on the worker that completes the last text
 * answers. On failure answers at once. */
static void text_submit(text_call *t, const inferd_text_item *items, size_t n, int64_t timeout_us,
                        const char *where) {
    const inferd_repo_model *rm = inferd_repo_version_model(t->v);
    inferd_sched_queue *q = inferd_repo_version_queue(t->v);
    if (!q) {
        text_fail(t, INFERD_EUNAVAIL, "the model has no queue");
        return;
    }
    int expired;
    timeout_us = remaining_timeout(timeout_us, t->v, t->waited_us, &expired);
    if (expired) {
        text_fail(t, INFERD_EUNAVAIL,
                  "the request's timeout passed before it could be queued (while its model "
                  "loaded or its body waited for a worker to parse it)");
        return;
    }
    inferd_textcall_options o = {
        .pipeline = inferd_repo_version_pipeline(t->v),
        .queue = q,
        .inputs = rm->inputs,
        .n_inputs = rm->n_inputs,
        .outputs = rm->outputs,
        .n_outputs = rm->n_outputs,
        .max_batch = inferd_repo_version_max_batch(t->v),
        .timeout_us = timeout_us,
        .stats = inferd_repo_version_stats(t->v),
        .done = on_text_done,
        .user = t,
    };
    inferd_error err = {0};
    int rc = inferd_textcall_submit(&o, items, n, &err);
    if (rc < 0) {
        if (where && (rc == INFERD_EINVAL || rc == INFERD_ETOOLARGE))
            inferd_error_prefix(&err, "%s: ", where); // name the field holding the texts
        text_fail(t, rc, err.msg);
    }
    // On success t belongs to on_text_done.
}

/* Parses t's body, as /v1 predict or as its route says, into t->pr. */
static int parse_text_body(text_call *t, inferd_error *err) {
    size_t len;
    const uint8_t *body = inferd_http_request_body(t->http, &len);
    if (!body)
        body = (const uint8_t *)"";
    if (t->has_route)
        return inferd_textreq_parse_route(body, len, &t->route.spec, &t->api->text_limits, &t->pr,
                                          err);
    return inferd_textreq_parse_predict(body, len, &t->api->text_limits, &t->pr, err);
}

/* Runs a /v1 predict whose version is referenced (at once, or after its load). */
static void predict_continue(text_call *t) {
    if (!inferd_repo_version_pipeline(t->v)) {
        char msg[400];
        const char *model = inferd_repo_version_name(t->v);
        snprintf(msg, sizeof msg,
                 "model '%.128s' version %ld has no text pipeline (pipeline.json); send tensors "
                 "to /v2/models/%.128s/infer",
                 model, inferd_repo_version_number(t->v), model);
        text_fail(t, INFERD_EUNSUPPORTED, msg);
        return;
    }
    if (!t->has_pr) {
        inferd_error err = {0};
        int rc = parse_text_body(t, &err);
        t->has_pr = 1;
        if (rc < 0) {
            text_fail(t, rc, err.msg);
            return;
        }
    }
    // The texts are tokenized before submit returns, so the parsed body can go right after;
    // it leaves t first, since a successful submit hands t to the worker that answers.
    inferd_textreq_predict pr = t->pr;
    t->has_pr = 0;
    text_submit(t, pr.items, pr.n_items, pr.timeout_us, NULL);
    inferd_textreq_predict_deinit(&pr);
}

/* A loader thread: the version a /v1 predict waited for is loaded (or failed). */
static void on_predict_version(void *user, inferd_repo_version *v, int status,
                               const inferd_error *err) {
    text_call *t = user;
    if (status < 0) {
        if (t->has_route)
            atomic_fetch_add_explicit(&t->route.stats->failure, 1, memory_order_relaxed);
        inferd_status_respond_error(t->http, status, err->msg);
        text_free(t); // no version: v is NULL
        return;
    }
    t->v = v;
    t->waited_us = (inferd_now_ns() - t->arrival_ns) / 1000;
    predict_continue(t);
}

/* The timeout of a /v1 predict that must wait for its version: the body is parsed now (it
 * does not depend on the version) and kept for later. */
static int64_t predict_peek(void *user) {
    text_call *t = user;
    inferd_error err = {0};
    if (parse_text_body(t, &err) < 0) {
        // Reported once the version is loaded, with the version's counters.
        inferd_textreq_predict_deinit(&t->pr);
        memset(&t->pr, 0, sizeof t->pr);
        return 0;
    }
    t->has_pr = 1;
    return t->pr.timeout_us;
}

/* Takes the version (or parks until it is loaded), then parses, tokenizes and submits. */
static void predict_start(text_call *t, const char *model, long version) {
    int rc = acquire_or_wait(t->api, t->http, model, version, t->arrival_ns, &t->wait,
                             on_predict_version, t, predict_peek, &t->v);
    if (rc == 0)
        return; // parked: on_predict_version goes on
    if (rc < 0) {
        if (t->has_route)
            atomic_fetch_add_explicit(&t->route.stats->failure, 1, memory_order_relaxed);
        text_free(t); // no version yet
        return;
    }
    predict_continue(t);
}

/* A worker: all of predict_start for a large body (offload), the wait for a worker counted
 * against the request's timeout. */
static void predict_job(inferd_sched_job *job) {
    text_call *t = job->user;
    t->waited_us = (inferd_now_ns() - t->arrival_ns) / 1000;
    predict_start(t, t->model_asked, t->version_asked);
}

/* /v1 predict, or a per-team route (route not NULL: its reference moves to the call). */
static void handle_predict(inferd_api *a, inferd_http_request *req, const char *model, long version,
                           inferd_route *route) {
    if (atomic_load(&a->draining)) {
        if (route) {
            atomic_fetch_add_explicit(&route->stats->failure, 1, memory_order_relaxed);
            inferd_route_stats_release(route->stats);
        }
        inferd_status_respond_error(req, INFERD_EUNAVAIL, "the server is shutting down");
        return;
    }
    text_call *t = inferd_calloc(NULL, 1, sizeof *t);
    if (!t) {
        if (route)
            inferd_route_stats_release(route->stats);
        inferd_status_respond_error(req, INFERD_EINTERNAL, "out of memory");
        return;
    }
    t->api = a;
    t->http = req;
    t->arrival_ns = inferd_http_request_arrival_ns(req);
    if (route) {
        t->route = *route;
        t->has_route = 1;
    }
    // The names live in the path and the route table only while the handler runs.
    t->version_asked = version;
    int fits =
        snprintf(t->model_asked, sizeof t->model_asked, "%s", model) < (int)sizeof t->model_asked;
    t->job = (inferd_sched_job){.run = predict_job, .user = t};
    if (!fits || !offload(a, json_bytes(req, -1), &t->job))
        predict_start(t, model, version);
}

static void method_not_allowed(inferd_http_request *req, const char *want);

/* A request through a per-team route: the same path as /v1 predict, with the route's shape. */
static void handle_route(inferd_api *a, inferd_http_request *req, inferd_route *route) {
    if (strcmp(inferd_http_request_method(req), "POST") != 0) {
        inferd_route_stats_release(route->stats);
        method_not_allowed(req, "POST");
        return;
    }
    handle_predict(a, req, route->model, route->spec.version, route);
}

/* KServe infer with an input named "text" on a version with a pipeline. */
static void handle_text_infer(text_call *t, const uint8_t *body, size_t len, long long hl) {
    t->kserve = 1;
    fill_text_signature(&t->sig, t->v);
    inferd_error err = {0};
    int rc = inferd_kserve_parse_infer(&t->sig.model, body, len, hl, &t->req, &err);
    if (rc < 0) {
        text_fail(t, rc, err.msg);
        return;
    }
    inferd_text_item *items = inferd_calloc(NULL, t->api->text_limits.max_items, sizeof *items);
    if (!items) {
        text_fail(t, INFERD_EINTERNAL, "out of memory");
        return;
    }
    size_t n;
    rc = inferd_textreq_items_from_tensor(&t->req.inputs[0], &t->api->text_limits, items, &n, &err);
    if (rc < 0) {
        inferd_free(items);
        text_fail(t, rc, err.msg);
        return;
    }
    text_submit(t, items, n, t->req.timeout_us, "input 'text'");
    inferd_free(items);
}

/* Runs an infer whose version is referenced (at once, or after its load). */
static void infer_continue(infer_call *c) {
    inferd_api *a = c->api;
    inferd_error err = {0};
    fill_model(&c->model, c->v);
    long long hl = c->hl;
    if (hl == -2) {
        infer_fail(c, INFERD_EINVAL,
                   "Inference-Header-Content-Length: must be a non-negative integer");
        return;
    }
    size_t len;
    const uint8_t *body = inferd_http_request_body(c->http, &len);
    // A version with a pipeline also takes texts: an input named "text" (unless the model
    // itself has one) selects its text signature; anything else is the raw tensor signature.
    if (inferd_repo_version_pipeline(c->v) && find_model_input(&c->model, "text") < 0 &&
        inferd_kserve_names_input(body ? body : (const uint8_t *)"", len, hl, "text")) {
        text_call *t = inferd_calloc(NULL, 1, sizeof *t);
        if (!t) {
            infer_fail(c, INFERD_EINTERNAL, "out of memory");
            return;
        }
        *t = (text_call){.api = a,
                         .http = c->http,
                         .v = c->v,
                         .arrival_ns = c->arrival_ns,
                         .waited_us = c->waited_us};
        c->v = NULL; // the text call holds the reference now
        inferd_free(c);
        handle_text_infer(t, body ? body : (const uint8_t *)"", len, hl);
        return;
    }
    int rc = inferd_kserve_parse_infer(&c->model, body ? body : (const uint8_t *)"", len, hl,
                                       &c->req, &err);
    if (rc < 0) {
        infer_fail(c, rc, err.msg);
        return;
    }
    int expired;
    int64_t timeout_us = remaining_timeout(c->req.timeout_us, c->v, c->waited_us, &expired);
    if (expired) {
        infer_fail(c, INFERD_EUNAVAIL,
                   "the request's timeout passed before it could be queued (while its model "
                   "loaded or its body waited for a worker to parse it)");
        return;
    }
    c->sreq = (inferd_sched_request){
        .inputs = c->req.inputs,
        .outputs = c->outputs,
        .timeout_us = timeout_us,
        .done = on_infer_done,
        .user = c,
    };
    inferd_sched_queue *q = inferd_repo_version_queue(c->v);
    if (!q) {
        infer_fail(c, INFERD_EUNAVAIL, "the model has no queue");
        return;
    }
    if ((rc = inferd_sched_submit(q, &c->sreq, &err)) < 0) {
        infer_fail(c, rc, err.msg);
        return;
    }
    // From here the worker answers; c belongs to on_infer_done.
}

/* A loader thread: the version an infer waited for is loaded (or failed). */
static void on_infer_version(void *user, inferd_repo_version *v, int status,
                             const inferd_error *err) {
    infer_call *c = user;
    if (status < 0) {
        inferd_status_respond_error(c->http, status, err->msg);
        inferd_free(c);
        return;
    }
    c->v = v;
    c->waited_us = (inferd_now_ns() - c->arrival_ns) / 1000;
    infer_continue(c);
}

static int64_t infer_peek(void *user) {
    infer_call *c = user;
    size_t len;
    const uint8_t *body = inferd_http_request_body(c->http, &len);
    return body ? inferd_kserve_peek_timeout(body, len, c->hl) : 0;
}

/* Takes the version (or parks until it is loaded), then parses and submits. */
static void infer_start(infer_call *c, const char *model, long version) {
    int rc = acquire_or_wait(c->api, c->http, model, version, c->arrival_ns, &c->wait,
                             on_infer_version, c, infer_peek, &c->v);
    if (rc == 0)
        return; // parked: on_infer_version goes on
    if (rc < 0) {
        inferd_free(c);
        return;
    }
    infer_continue(c);
}

/* A worker: all of infer_start for a large body (offload), the wait for a worker counted
 * against the request's timeout. */
static void infer_job(inferd_sched_job *job) {
    infer_call *c = job->user;
    c->waited_us = (inferd_now_ns() - c->arrival_ns) / 1000;
    infer_start(c, c->model_asked, c->version_asked);
}

static void handle_infer(inferd_api *a, inferd_http_request *req, const char *model, long version) {
    if (atomic_load(&a->draining)) {
        inferd_status_respond_error(req, INFERD_EUNAVAIL, "the server is shutting down");
        return;
    }
    infer_call *c = inferd_calloc(NULL, 1, sizeof *c);
    if (!c) {
        inferd_status_respond_error(req, INFERD_EINTERNAL, "out of memory");
        return;
    }
    c->api = a;
    c->http = req;
    c->arrival_ns = inferd_http_request_arrival_ns(req);
    c->hl = header_length(req); // headers can be read only here, in the handler
    // The names live in the path only while the handler runs.
    c->version_asked = version;
    int fits =
        snprintf(c->model_asked, sizeof c->model_asked, "%s", model) < (int)sizeof c->model_asked;
    c->job = (inferd_sched_job){.run = infer_job, .user = c};
    if (!fits || !offload(a, json_bytes(req, c->hl), &c->job))
        infer_start(c, model, version);
}

/* ---- routing ---- */

#define MAX_SEGMENTS 8

/* Splits path on '/', skipping empty segments; modifies buf. Returns the count, or -1 when
 * there are too many segments. */
static int split(char *buf, char **seg) {
    int n = 0;
    char *save = NULL;
    for (char *p = strtok_r(buf, "/", &save); p; p = strtok_r(NULL, "/", &save)) {
        if (n == MAX_SEGMENTS)
            return -1;
        seg[n++] = p;
    }
    return n;
}

/* A version segment: a positive integer; 0 when not one (reported as unknown). */
static long parse_version(const char *s) {
    if (!s[0] || s[0] == '0' || strlen(s) > 10)
        return 0;
    for (const char *p = s; *p; p++)
        if (*p < '0' || *p > '9')
            return 0;
    long v = strtol(s, NULL, 10);
    return v <= 2147483647L ? v : 0;
}

static void method_not_allowed(inferd_http_request *req, const char *want) {
    char msg[160];
    snprintf(msg, sizeof msg, "method %.16s is not allowed here; use %s",
             inferd_http_request_method(req), want);
    inferd_strbuf b;
    inferd_strbuf_init(&b);
    inferd_strbuf_appends(&b, "{\"error\":");
    inferd_strbuf_append_json_string(&b, msg, strlen(msg));
    inferd_strbuf_append(&b, "}", 1);
    respond_buf(req, INFERD_STATUS_METHOD_NOT_ALLOWED, &b);
}

void inferd_api_handle(void *user, inferd_http_request *req) {
    inferd_api *a = user;
    const char *method = inferd_http_request_method(req);
    const char *path = inferd_http_request_path(req);
    int get = !strcmp(method, "GET") || !strcmp(method, "HEAD");
    int post = !strcmp(method, "POST");
    char buf[1024];
    char *seg[MAX_SEGMENTS];
    int n = -1;
    if (strlen(path) < sizeof buf) {
        memcpy(buf, path, strlen(path) + 1);
        n = split(buf, seg);
    }
    char msg[300];
    if (n < 0)
        goto not_found;

    if (n == 1 && !strcmp(seg[0], "metrics")) {
        get ? handle_metrics(a, req) : method_not_allowed(req, "GET");
        return;
    }
    if (n >= 3 && !strcmp(seg[0], "v1") && !strcmp(seg[1], "models")) {
        // /v1/models/{m}:predict or /v1/models/{m}/versions/{v}:predict
        char *last = seg[n - 1];
        size_t ll = strlen(last);
        if (ll <= 8 || strcmp(last + ll - 8, ":predict") != 0 || (n != 3 && n != 5) ||
            (n == 5 && strcmp(seg[3], "versions") != 0))
            goto not_found;
        last[ll - 8] = 0;
        long version = 0;
        if (n == 5 && (version = parse_version(seg[4])) == 0) {
            snprintf(msg, sizeof msg, "unknown version '%.32s' of model '%.128s'", seg[4], seg[2]);
            inferd_status_respond_error(req, INFERD_ENOTFOUND, msg);
            return;
        }
        post ? handle_predict(a, req, seg[2], version, NULL) : method_not_allowed(req, "POST");
        return;
    }
    if (n == 1 && (!strcmp(seg[0], "ready") || !strcmp(seg[0], "live"))) {
        // The plain probe contract many platforms use: 200 "ok", or 503 while not ready.
        if (!get) {
            method_not_allowed(req, "GET");
            return;
        }
        char why[200] = "";
        int ok = !strcmp(seg[0], "live") || server_ready(a, why, sizeof why);
        char text[240];
        snprintf(text, sizeof text, ok ? "ok\n" : "not ready: %s\n", why);
        size_t len = strlen(text);
        char *body = inferd_malloc(NULL, len);
        if (body)
            memcpy(body, text, len);
        inferd_http_respond(req, ok ? 200 : 503, "text/plain", body, body ? len : 0, NULL);
        return;
    }
    if (n < 1 || strcmp(seg[0], "v2"))
        goto not_found;
    if (n == 1) {
        get ? handle_server_metadata(req) : method_not_allowed(req, "GET");
        return;
    }
    if (n == 3 && !strcmp(seg[1], "health") &&
        (!strcmp(seg[2], "live") || !strcmp(seg[2], "ready"))) {
        if (!get) {
            method_not_allowed(req, "GET");
        } else if (!strcmp(seg[2], "live")) {
            inferd_status_respond_json(req, 200, "{\"live\":true}");
        } else if (server_ready(a, msg, sizeof msg)) {
            inferd_status_respond_json(req, 200, "{\"ready\":true}");
        } else {
            inferd_status_respond_json(req, INFERD_STATUS_NOT_READY, "{\"ready\":false}");
        }
        return;
    }
    if (n >= 2 && !strcmp(seg[1], "repository")) {
        if (n == 3 && !strcmp(seg[2], "index")) {
            (get || post) ? handle_index(a, req) : method_not_allowed(req, "POST");
            return;
        }
        if (n == 5 && !strcmp(seg[2], "models") &&
            (!strcmp(seg[4], "load") || !strcmp(seg[4], "unload"))) {
            post ? handle_repository_control(a, req, seg[3], !strcmp(seg[4], "load"))
                 : method_not_allowed(req, "POST");
            return;
        }
        goto not_found;
    }
    if (n == 3 && !strcmp(seg[1], "models") && !strcmp(seg[2], "stats")) {
        get ? handle_stats(a, req, NULL, 0) : method_not_allowed(req, "GET");
        return;
    }
    if (n >= 3 && !strcmp(seg[1], "models")) {
        const char *model = seg[2];
        long version = 0;
        int rest = 3;
        if (n >= 5 && !strcmp(seg[3], "versions")) {
            version = parse_version(seg[4]);
            if (version == 0) {
                snprintf(msg, sizeof msg, "unknown version '%.32s' of model '%.128s'", seg[4],
                         model);
                inferd_status_respond_error(req, INFERD_ENOTFOUND, msg);
                return;
            }
            rest = 5;
        }
        if (n == rest) {
            get ? handle_model_metadata(a, req, model, version) : method_not_allowed(req, "GET");
            return;
        }
        if (n == rest + 1 && !strcmp(seg[rest], "ready")) {
            get ? handle_model_ready(a, req, model, version) : method_not_allowed(req, "GET");
            return;
        }
        if (n == rest + 1 && !strcmp(seg[rest], "stats")) {
            get ? handle_stats(a, req, model, version) : method_not_allowed(req, "GET");
            return;
        }
        if (n == rest + 1 && !strcmp(seg[rest], "infer")) {
            post ? handle_infer(a, req, model, version) : method_not_allowed(req, "POST");
            return;
        }
    }
not_found:;
    // Per-team routes never shadow the paths above (config.json refuses them), so they are
    // looked up last: a lock-free table lookup.
    inferd_route route;
    if (inferd_repo_route(a->repo, path, &route)) {
        handle_route(a, req, &route);
        return;
    }
    snprintf(msg, sizeof msg, "unknown path '%.200s'", path);
    inferd_status_respond_error(req, INFERD_ENOTFOUND, msg);
}
