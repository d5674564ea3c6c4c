/* config.h: a model's config.json, parsed and validated.
 *
 * The file is optional; without it a model gets the defaults that inferd_config_init sets
 * (platform from the version folder's files, max_batch_size 8, dynamic batching with no delay,
 * version policy {"latest": 1}). The file is untrusted input: unknown keys are rejected with
 * the key named, every value is type- and range-checked, and every error is INFERD_EINVAL with
 * a message that names the offending key ("config.json: dynamic_batching.max_queue_size: ...").
 * The accepted keys are documented in docs/repository.md.
 */
#ifndef INFERD_REPO_CONFIG_H
#define INFERD_REPO_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "util/error.h"
#include "util/tensor.h"

#define INFERD_CONFIG_MAX_PREFERRED 16
#define INFERD_CONFIG_MAX_BUCKETS 32
#define INFERD_CONFIG_MAX_SPECIFIC 64
#define INFERD_CONFIG_MAX_BATCH 1024
#define INFERD_CONFIG_DEFAULT_MAX_BATCH 8
#define INFERD_CONFIG_MAX_TENSORS 16
#define INFERD_CONFIG_MAX_WARMUP_TEXT 1024
#define INFERD_CONFIG_MAX_ROUTES 8
#define INFERD_CONFIG_ROUTE_PATH 128 /* bytes of a route's path, with its NUL */
#define INFERD_CONFIG_ROUTE_FIELD 64 /* bytes of a JSON field name in a route, with its NUL */

/* When a version is run once before it serves (config.json "warmup"). */
typedef enum inferd_config_warmup {
    INFERD_CONFIG_WARMUP_AUTO = 0, /* only before a version switch, with generated inputs */
    INFERD_CONFIG_WARMUP_OFF = 1,  /* never ("warmup": false) */
    INFERD_CONFIG_WARMUP_ON = 2,   /* after every load, with the inputs config.json describes */
} inferd_config_warmup;

typedef enum inferd_config_policy {
    INFERD_CONFIG_POLICY_LATEST = 0,   /* the latest_n highest version numbers */
    INFERD_CONFIG_POLICY_ALL = 1,      /* every version folder */
    INFERD_CONFIG_POLICY_SPECIFIC = 2, /* exactly the listed versions */
} inferd_config_policy;

/* One extra HTTP route of the model (config.json "routes"): POST path with a small JSON body
 * maps onto the text API (the same work as /v1 predict), so a team keeps its own request and
 * response shape. Field names are JSON object keys; "" means the field is left out. */
typedef struct inferd_config_route {
    char path[INFERD_CONFIG_ROUTE_PATH];   /* absolute: "/category_predict" */
    char input[INFERD_CONFIG_ROUTE_FIELD]; /* the request's field holding the text(s) */
    int batch;    /* the input is a list of texts and the answer a list; else one and one */
    long version; /* a fixed version; 0: the model's default version */
    char label[INFERD_CONFIG_ROUTE_FIELD];   /* the best label; default "label" */
    char score[INFERD_CONFIG_ROUTE_FIELD];   /* its score; default "score" */
    char top_k[INFERD_CONFIG_ROUTE_FIELD];   /* [{label, score}, ...] best first; default "" */
    char results[INFERD_CONFIG_ROUTE_FIELD]; /* batch: the answer's field holding the list;
                                                "": the answer is the bare list */
} inferd_config_route;

/* A tensor declared in "inputs" or "outputs": {"name": "input_ids", "datatype": "INT64",
 * "dims": [-1, -1]}. dims is the full shape, batch dim included, -1 for a dynamic dim. */
typedef struct inferd_config_tensor {
    char name[128];
    inferd_dtype dtype;
    int rank;
    int64_t dims[INFERD_MAX_RANK];
} inferd_config_tensor;

typedef struct inferd_config {
    char name[128];             /* "name" if given (must equal the folder name), else "" */
    char platform[64];          /* "platform" if given, else "" (detected from the files) */
    int max_batch_size;         /* 0: the model has no batch dimension; requests run one by one */
    int max_batch_size_set;     /* nonzero when config.json gave max_batch_size */
    int64_t max_queue_delay_us; /* how long the oldest request may wait for a fuller batch */
    int preferred_batch_sizes[INFERD_CONFIG_MAX_PREFERRED]; /* ascending, unique */
    int n_preferred;
    int max_queue_size;         /* queued requests per version before 429; 0: unlimited */
    int64_t default_timeout_us; /* queue timeout when a request gives none; 0: none */
    int pad_dims;               /* batch requests that differ in dynamic dims, padded */
    int pad_dims_set;           /* nonzero when config.json gave pad_dims */
    int64_t length_buckets[INFERD_CONFIG_MAX_BUCKETS]; /* ascending; only with pad_dims */
    int n_buckets;
    inferd_config_policy policy;
    int latest_n;                              /* for POLICY_LATEST */
    long specific[INFERD_CONFIG_MAX_SPECIFIC]; /* for POLICY_SPECIFIC: ascending, unique */
    int n_specific;
    int instance_threads; /* cap on threads per batch of this model; 0: no cap */
    /* Declared tensors, in order (required for TorchScript, checked for ONNX; see
     * backend/backend.h). */
    inferd_config_tensor inputs[INFERD_CONFIG_MAX_TENSORS];
    int n_inputs;
    inferd_config_tensor outputs[INFERD_CONFIG_MAX_TENSORS];
    int n_outputs;
    int pinned; /* load the selected versions at start and never evict them */
    inferd_config_warmup warmup;
    int warmup_batch;                                     /* rows of the warm-up run; 0: 1 */
    int warmup_seq;                                       /* its dynamic non-batch dims; 0: 8 */
    char warmup_text[INFERD_CONFIG_MAX_WARMUP_TEXT];      /* text for a pipeline; "" : generated */
    inferd_config_route routes[INFERD_CONFIG_MAX_ROUTES]; /* paths unique within the model */
    int n_routes;
} inferd_config;

/* The declared tensors of c as descriptions for the backend: fills out (room for
 * INFERD_CONFIG_MAX_TENSORS) with names pointing into c, and returns the count. which: 0 for
 * inputs, 1 for outputs. Any thread. */
int inferd_config_tensor_descs(const inferd_config *c, int which, inferd_tensor_desc *out);

/* Fills c with the defaults. The caller owns c; inferd_config_deinit releases nothing today
 * but must be called, so a future field can own memory. Any thread. */
void inferd_config_init(inferd_config *c);
void inferd_config_deinit(inferd_config *c);

/* Parses config.json text over the defaults already in c (call inferd_config_init first).
 * On failure returns INFERD_EINVAL with err naming the key, and c holds unspecified values
 * (re-init it before use). Any thread. */
int inferd_config_parse(inferd_config *c, const char *text, size_t len, inferd_error *err);

/* Reads and parses the file at path (at most 1 MiB). A missing file is INFERD_ENOTFOUND,
 * leaving c untouched; an unreadable one INFERD_EINTERNAL. Any thread. */
int inferd_config_load_file(inferd_config *c, const char *path, inferd_error *err);

/* Whether path can be a route's path: absolute, at most 127 bytes, segments of letters, digits
 * and "-._~:" (no empty, "." or ".." segment, no percent-escape, no trailing slash), and not
 * under a built-in path (/v1, /v2, /metrics, /ready, /live). Returns 0, or INFERD_EINVAL with
 * why (without a key prefix) in err. Any thread. */
int inferd_config_route_path_check(const char *path, inferd_error *err);

/* Applies the version policy to the version numbers found on disk (available, ascending).
 * Writes the versions to serve, ascending, to out (room for cap) and returns their count.
 * POLICY_SPECIFIC returns the listed versions even when their folder is missing, so the
 * repository can report them as unavailable. Any thread. */
int inferd_config_select_versions(const inferd_config *c, const long *available, int n_available,
                                  long *out, int cap);

#endif
