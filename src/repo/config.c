#include "repo/config.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"

#define MAX_CONFIG_BYTES (1 << 20)

void inferd_config_init(inferd_config *c) {
    memset(c, 0, sizeof *c);
    c->max_batch_size = INFERD_CONFIG_DEFAULT_MAX_BATCH;
    c->policy = INFERD_CONFIG_POLICY_LATEST;
    c->latest_n = 1;
}

void inferd_config_deinit(inferd_config *c) { memset(c, 0, sizeof *c); }

static const char *json_type_name(const json_t *v) {
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return "an object";
    case JSON_ARRAY:
        return "an array";
    case JSON_STRING:
        return "a string";
    case JSON_INTEGER:
        return "an integer";
    case JSON_REAL:
        return "a number with a fraction";
    case JSON_TRUE:
    case JSON_FALSE:
        return "a boolean";
    default:
        return "null";
    }
}

static int bad(inferd_error *err, const char *key, const char *fmt, const char *detail) {
    char what[160];
    snprintf(what, sizeof what, fmt, detail);
    return inferd_error_set(err, INFERD_EINVAL, "config.json: %s: %s", key, what);
}

/* Reads an integer in [lo, hi]; key is the dotted path used in messages. */
static int get_int(const json_t *v, const char *key, int64_t lo, int64_t hi, int64_t *out,
                   inferd_error *err) {
    if (!json_is_integer(v))
        return inferd_error_set(err, INFERD_EINVAL,
                                "config.json: %s: must be an integer from %lld to %lld, got %s",
                                key, (long long)lo, (long long)hi, json_type_name(v));
    json_int_t x = json_integer_value(v);
    if (x < lo || x > hi)
        return inferd_error_set(err, INFERD_EINVAL,
                                "config.json: %s: must be from %lld to %lld, got %lld", key,
                                (long long)lo, (long long)hi, (long long)x);
    *out = (int64_t)x;
    return 0;
}

static int get_bool(const json_t *v, const char *key, int *out, inferd_error *err) {
    if (!json_is_boolean(v))
        return bad(err, key, "must be true or false, got %s", json_type_name(v));
    *out = json_is_true(v);
    return 0;
}

/* Reads an array of integers in [lo, hi] into out (room for cap), sorted ascending, and rejects
 * duplicates. */
static int get_int_list(const json_t *v, const char *key, int64_t lo, int64_t hi, int64_t *out,
                        int cap, int *n_out, inferd_error *err) {
    if (!json_is_array(v))
        return bad(err, key, "must be an array of integers, got %s", json_type_name(v));
    size_t n = json_array_size(v);
    if (n == 0)
        return bad(err, key, "must not be empty%s", "");
    if (n > (size_t)cap)
        return inferd_error_set(err, INFERD_EINVAL, "config.json: %s: at most %d entries, got %zu",
                                key, cap, n);
    for (size_t i = 0; i < n; i++) {
        char item[96];
        snprintf(item, sizeof item, "%s[%zu]", key, i);
        int64_t x;
        int rc = get_int(json_array_get(v, i), item, lo, hi, &x, err);
        if (rc < 0)
            return rc;
        // Insertion sort: lists are at most a few dozen entries.
        size_t j = i;
        while (j > 0 && out[j - 1] > x) {
            out[j] = out[j - 1];
            j--;
        }
        if (j > 0 && out[j - 1] == x)
            return inferd_error_set(err, INFERD_EINVAL, "config.json: %s: %lld is listed twice",
                                    key, (long long)x);
        out[j] = x;
    }
    *n_out = (int)n;
    return 0;
}

/* One entry of "inputs" or "outputs". */
static int parse_tensor(const json_t *v, const char *key, inferd_config_tensor *t,
                        inferd_error *err) {
    if (!json_is_object(v))
        return bad(err, key, "must be an object {\"name\", \"datatype\", \"dims\"}, got %s",
                   json_type_name(v));
    const char *k;
    json_t *f;
    int have_dtype = 0, have_dims = 0;
    json_object_foreach((json_t *)v, k, f) {
        char path[128];
        snprintf(path, sizeof path, "%s.%s", key, k);
        if (!strcmp(k, "name")) {
            if (!json_is_string(f) || json_string_length(f) == 0 ||
                json_string_length(f) >= sizeof t->name)
                return bad(err, path, "must be a non-empty string of at most 127 bytes%s", "");
            snprintf(t->name, sizeof t->name, "%s", json_string_value(f));
        } else if (!strcmp(k, "datatype")) {
            if (!json_is_string(f))
                return bad(err, path, "must be a string such as \"FP32\" or \"INT64\", got %s",
                           json_type_name(f));
            t->dtype = inferd_dtype_from_kserve(json_string_value(f));
            if (t->dtype == INFERD_DTYPE_INVALID)
                return bad(err, path,
                           "unknown datatype '%s' (KServe names: BOOL, UINT8, INT8, INT16, INT32, "
                           "INT64, FP16, BF16, FP32, FP64)",
                           json_string_value(f));
            have_dtype = 1;
        } else if (!strcmp(k, "dims")) {
            if (!json_is_array(f))
                return bad(err, path, "must be an array of integers, got %s", json_type_name(f));
            if (json_array_size(f) > INFERD_MAX_RANK)
                return inferd_error_set(err, INFERD_EINVAL,
                                        "config.json: %s: at most %d dims, got %zu", path,
                                        INFERD_MAX_RANK, json_array_size(f));
            t->rank = (int)json_array_size(f);
            for (int i = 0; i < t->rank; i++) {
                char item[160];
                snprintf(item, sizeof item, "%s[%d]", path, i);
                int64_t x;
                int rc = get_int(json_array_get(f, (size_t)i), item, -1, (int64_t)1 << 40, &x, err);
                if (rc < 0)
                    return rc;
                t->dims[i] = x;
            }
            have_dims = 1;
        } else {
            return inferd_error_set(err, INFERD_EINVAL,
                                    "config.json: %s: unknown key '%s' (expected name, datatype, "
                                    "dims)",
                                    key, k);
        }
    }
    if (!t->name[0])
        return bad(err, key, "needs a name%s", "");
    if (!have_dtype || !have_dims)
        return inferd_error_set(err, INFERD_EINVAL, "config.json: %s ('%s'): needs %s", key,
                                t->name, have_dtype ? "dims" : "a datatype");
    return 0;
}

static int parse_tensors(const json_t *v, const char *key, inferd_config_tensor *out, int *n_out,
                         inferd_error *err) {
    if (!json_is_array(v))
        return bad(err, key, "must be an array of {\"name\", \"datatype\", \"dims\"}, got %s",
                   json_type_name(v));
    size_t n = json_array_size(v);
    if (n == 0)
        return bad(err, key, "must not be empty%s", "");
    if (n > INFERD_CONFIG_MAX_TENSORS)
        return inferd_error_set(err, INFERD_EINVAL, "config.json: %s: at most %d entries, got %zu",
                                key, INFERD_CONFIG_MAX_TENSORS, n);
    for (size_t i = 0; i < n; i++) {
        char item[64];
        snprintf(item, sizeof item, "%s[%zu]", key, i);
        memset(&out[i], 0, sizeof out[i]);
        int rc = parse_tensor(json_array_get(v, i), item, &out[i], err);
        if (rc < 0)
            return rc;
        for (size_t j = 0; j < i; j++)
            if (!strcmp(out[j].name, out[i].name))
                return inferd_error_set(err, INFERD_EINVAL,
                                        "config.json: %s: '%s' is declared twice", key,
                                        out[i].name);
    }
    *n_out = (int)n;
    return 0;
}

int inferd_config_tensor_descs(const inferd_config *c, int which, inferd_tensor_desc *out) {
    const inferd_config_tensor *t = which ? c->outputs : c->inputs;
    int n = which ? c->n_outputs : c->n_inputs;
    for (int i = 0; i < n; i++) {
        memset(&out[i], 0, sizeof out[i]);
        out[i].name = t[i].name;
        out[i].dtype = t[i].dtype;
        out[i].rank = t[i].rank;
        memcpy(out[i].dims, t[i].dims, sizeof t[i].dims);
    }
    return n;
}

static int parse_batching(inferd_config *c, const json_t *db, inferd_error *err) {
    if (!json_is_object(db))
        return bad(err, "dynamic_batching", "must be an object, got %s", json_type_name(db));
    const char *key;
    json_t *v;
    int64_t x;
    int rc;
    json_object_foreach((json_t *)db, key, v) {
        char path[96];
        snprintf(path, sizeof path, "dynamic_batching.%s", key);
        if (!strcmp(key, "max_queue_delay_us")) {
            if ((rc = get_int(v, path, 0, 10000000, &x, err)) < 0)
                return rc;
            c->max_queue_delay_us = x;
        } else if (!strcmp(key, "preferred_batch_sizes")) {
            int64_t sizes[INFERD_CONFIG_MAX_PREFERRED];
            int n;
            if ((rc = get_int_list(v, path, 1, INFERD_CONFIG_MAX_BATCH, sizes,
                                   INFERD_CONFIG_MAX_PREFERRED, &n, err)) < 0)
                return rc;
            for (int i = 0; i < n; i++)
                c->preferred_batch_sizes[i] = (int)sizes[i];
            c->n_preferred = n;
        } else if (!strcmp(key, "max_queue_size")) {
            if ((rc = get_int(v, path, 0, 1000000, &x, err)) < 0)
                return rc;
            c->max_queue_size = (int)x;
        } else if (!strcmp(key, "default_timeout_us")) {
            if ((rc = get_int(v, path, 0, 3600000000LL, &x, err)) < 0)
                return rc;
            c->default_timeout_us = x;
        } else if (!strcmp(key, "pad_dims")) {
            if ((rc = get_bool(v, path, &c->pad_dims, err)) < 0)
                return rc;
            c->pad_dims_set = 1;
        } else if (!strcmp(key, "length_buckets")) {
            if ((rc = get_int_list(v, path, 1, 1 << 24, c->length_buckets,
                                   INFERD_CONFIG_MAX_BUCKETS, &c->n_buckets, err)) < 0)
                return rc;
        } else {
            return inferd_error_set(err, INFERD_EINVAL,
                                    "config.json: dynamic_batching: unknown key '%s'", key);
        }
    }
    return 0;
}

/* "warmup": false, or an object saying how to build the warm-up run's inputs. */
static int parse_warmup(inferd_config *c, const json_t *w, inferd_error *err) {
    if (json_is_false(w)) {
        c->warmup = INFERD_CONFIG_WARMUP_OFF;
        return 0;
    }
    if (json_is_true(w)) {
        c->warmup = INFERD_CONFIG_WARMUP_ON;
        return 0;
    }
    if (!json_is_object(w))
        return bad(err, "warmup", "must be false, true or an object, got %s", json_type_name(w));
    c->warmup = INFERD_CONFIG_WARMUP_ON;
    const char *key;
    json_t *v;
    int64_t x;
    int rc;
    json_object_foreach((json_t *)w, key, v) {
        if (!strcmp(key, "batch_size")) {
            if ((rc = get_int(v, "warmup.batch_size", 1, INFERD_CONFIG_MAX_BATCH, &x, err)) < 0)
                return rc;
            c->warmup_batch = (int)x;
        } else if (!strcmp(key, "seq_len")) {
            if ((rc = get_int(v, "warmup.seq_len", 1, 65536, &x, err)) < 0)
                return rc;
            c->warmup_seq = (int)x;
        } else if (!strcmp(key, "text")) {
            if (!json_is_string(v) || json_string_length(v) == 0 ||
                json_string_length(v) >= sizeof c->warmup_text)
                return bad(err, "warmup.text", "must be a non-empty string of at most %s bytes",
                           "1023");
            snprintf(c->warmup_text, sizeof c->warmup_text, "%s", json_string_value(v));
        } else {
            return inferd_error_set(err, INFERD_EINVAL,
                                    "config.json: warmup: unknown key '%s' (expected batch_size, "
                                    "seq_len or text)",
                                    key);
        }
    }
    return 0;
}

/* The first segments of the server's own paths (api/api.h): a route may not shadow them. */
static const char *const builtin_segments[] = {"v1", "v2", "metrics", "ready", "live"};

int inferd_config_route_path_check(const char *path, inferd_error *err) {
    size_t n = strlen(path);
    if (n == 0 || path[0] != '/')
        return inferd_error_set(err, INFERD_EINVAL, "must be an absolute path starting with '/'");
    if (n >= INFERD_CONFIG_ROUTE_PATH)
        return inferd_error_set(err, INFERD_EINVAL, "at most %d bytes, got %zu",
                                INFERD_CONFIG_ROUTE_PATH - 1, n);
    const char *seg = path + 1;
    for (;;) {
        const char *end = strchr(seg, '/');
        size_t len = end ? (size_t)(end - seg) : strlen(seg);
        if (len == 0)
            return inferd_error_set(err, INFERD_EINVAL,
                                    "'%s' has an empty segment (a '//' or a trailing '/')", path);
        if ((len == 1 && seg[0] == '.') || (len == 2 && seg[0] == '.' && seg[1] == '.'))
            return inferd_error_set(err, INFERD_EINVAL, "'%s' has a '.' or '..' segment", path);
        for (size_t i = 0; i < len; i++) {
            char c = seg[i];
            if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '-' || c == '_' || c == '.' || c == '~' || c == ':'))
                return inferd_error_set(err, INFERD_EINVAL,
                                        "'%s': character '%c' is not allowed (letters, digits "
                                        "and -._~: only; no percent-escapes)",
                                        path, c >= 0x20 && c < 0x7f ? c : '?');
        }
        if (seg == path + 1)
            for (size_t i = 0; i < sizeof builtin_segments / sizeof *builtin_segments; i++)
                if (strlen(builtin_segments[i]) == len && !strncmp(seg, builtin_segments[i], len))
                    return inferd_error_set(err, INFERD_EINVAL,
                                            "'%s' is under the built-in path /%s", path,
                                            builtin_segments[i]);
        if (!end)
            return 0;
        seg = end + 1;
    }
}

/* Copies a JSON field name (a non-empty string of at most 63 bytes) into out; null gives "". */
static int get_field(const json_t *v, const char *key, int nullable, char *out, inferd_error *err) {
    if (nullable && json_is_null(v)) {
        out[0] = 0;
        return 0;
    }
    if (!json_is_string(v) || json_string_length(v) == 0 ||
        json_string_length(v) >= INFERD_CONFIG_ROUTE_FIELD ||
        strlen(json_string_value(v)) != json_string_length(v))
        return inferd_error_set(err, INFERD_EINVAL,
                                "config.json: %s: must be a field name (a non-empty string of at "
                                "most %d bytes)%s, got %s",
                                key, INFERD_CONFIG_ROUTE_FIELD - 1, nullable ? " or null" : "",
                                json_type_name(v));
    memcpy(out, json_string_value(v), json_string_length(v) + 1);
    return 0;
}

static int parse_route_output(inferd_config_route *rt, const json_t *o, const char *where,
                              inferd_error *err) {
    char key[96];
    if (!json_is_object(o))
        return inferd_error_set(err, INFERD_EINVAL,
                                "config.json: %s.output: must be an object, got %s", where,
                                json_type_name(o));
    const char *k;
    json_t *v;
    int rc;
    json_object_foreach((json_t *)o, k, v) {
        snprintf(key, sizeof key, "%s.output.%s", where, k);
        if (!strcmp(k, "label"))
            rc = get_field(v, key, 1, rt->label, err);
        else if (!strcmp(k, "score"))
            rc = get_field(v, key, 1, rt->score, err);
        else if (!strcmp(k, "top_k"))
            rc = get_field(v, key, 1, rt->top_k, err);
        else if (!strcmp(k, "results"))
            rc = get_field(v, key, 1, rt->results, err);
        else
            rc = inferd_error_set(err, INFERD_EINVAL,
                                  "config.json: %s.output: unknown key '%.64s' (expected label, "
                                  "score, top_k or results)",
                                  where, k);
        if (rc < 0)
            return rc;
    }
    return 0;
}

static int parse_route(inferd_config_route *rt, const json_t *r, const char *where,
                       inferd_error *err) {
    char key[96];
    if (!json_is_object(r))
        return inferd_error_set(err, INFERD_EINVAL, "config.json: %s: must be an object, got %s",
                                where, json_type_name(r));
    memset(rt, 0, sizeof *rt);
    snprintf(rt->label, sizeof rt->label, "label");
    snprintf(rt->score, sizeof rt->score, "score");
    const char *k;
    json_t *v;
    int rc = 0;
    int64_t x;
    const json_t *output = NULL;
    json_object_foreach((json_t *)r, k, v) {
        snprintf(key, sizeof key, "%s.%s", where, k);
        if (!strcmp(k, "path")) {
            if (!json_is_string(v))
                return bad(err, key, "must be a string, got %s", json_type_name(v));
            if (strlen(json_string_value(v)) != json_string_length(v))
                return bad(err, key, "must not hold a NUL byte%s", "");
            inferd_error why = {0};
            if (inferd_config_route_path_check(json_string_value(v), &why) < 0)
                return inferd_error_set(err, INFERD_EINVAL, "config.json: %s: %.200s", key,
                                        why.msg);
            snprintf(rt->path, sizeof rt->path, "%s", json_string_value(v));
        } else if (!strcmp(k, "input")) {
            rc = get_field(v, key, 0, rt->input, err);
        } else if (!strcmp(k, "batch")) {
            rc = get_bool(v, key, &rt->batch, err);
        } else if (!strcmp(k, "version")) {
            if ((rc = get_int(v, key, 1, 2147483647LL, &x, err)) == 0)
                rt->version = (long)x;
        } else if (!strcmp(k, "output")) {
            output = v; // after the loop: its checks depend on batch
        } else {
            return inferd_error_set(err, INFERD_EINVAL,
                                    "config.json: %s: unknown key '%.64s' (expected path, input, "
                                    "batch, version or output)",
                                    where, k);
        }
        if (rc < 0)
            return rc;
    }
    if (!rt->path[0])
        return inferd_error_set(err, INFERD_EINVAL, "config.json: %s.path: missing", where);
    if (!rt->input[0])
        return inferd_error_set(err, INFERD_EINVAL,
                                "config.json: %s.input: missing (the request's field holding "
                                "the text%s)",
                                where, rt->batch ? "s" : "");
    if (output && (rc = parse_route_output(rt, output, where, err)) < 0)
        return rc;
    if (rt->results[0] && !rt->batch)
        return inferd_error_set(err, INFERD_EINVAL,
                                "config.json: %s.output.results: only for a route with \"batch\": "
                                "true (a single text gets a single object)",
                                where);
    if (!rt->label[0] && !rt->score[0] && !rt->top_k[0])
        return inferd_error_set(err, INFERD_EINVAL,
                                "config.json: %s.output: names no field (label, score or top_k)",
                                where);
    const char *names[3] = {rt->label, rt->score, rt->top_k};
    static const char *const which[3] = {"label", "score", "top_k"};
    for (int i = 0; i < 3; i++)
        for (int j = i + 1; j < 3; j++)
            if (names[i][0] && !strcmp(names[i], names[j]))
                return inferd_error_set(err, INFERD_EINVAL,
                                        "config.json: %s.output.%s: '%s' is also the %s field",
                                        where, which[j], names[j], which[i]);
    return 0;
}

static int parse_routes(inferd_config *c, const json_t *rs, inferd_error *err) {
    if (!json_is_array(rs))
        return bad(err, "routes", "must be an array of objects, got %s", json_type_name(rs));
    size_t n = json_array_size(rs);
    if (n > INFERD_CONFIG_MAX_ROUTES)
        return inferd_error_set(err, INFERD_EINVAL, "config.json: routes: at most %d, got %zu",
                                INFERD_CONFIG_MAX_ROUTES, n);
    for (size_t i = 0; i < n; i++) {
        char where[32];
        snprintf(where, sizeof where, "routes[%zu]", i);
        int rc = parse_route(&c->routes[i], json_array_get(rs, i), where, err);
        if (rc < 0)
            return rc;
        for (size_t j = 0; j < i; j++)
            if (!strcmp(c->routes[j].path, c->routes[i].path))
                return inferd_error_set(err, INFERD_EINVAL,
                                        "config.json: routes[%zu].path: '%s' is also routes[%zu]",
                                        i, c->routes[i].path, j);
    }
    c->n_routes = (int)n;
    return 0;
}

static int parse_policy(inferd_config *c, const json_t *vp, inferd_error *err) {
    if (!json_is_object(vp) || json_object_size(vp) != 1)
        return bad(err, "version_policy",
                   "must be one of {\"latest\": N}, {\"all\": true}, {\"specific\": [..]}%s", "");
    const char *key;
    json_t *v;
    int64_t x;
    int rc;
    json_object_foreach((json_t *)vp, key, v) {
        if (!strcmp(key, "latest")) {
            if ((rc = get_int(v, "version_policy.latest", 1, 1000000, &x, err)) < 0)
                return rc;
            c->policy = INFERD_CONFIG_POLICY_LATEST;
            c->latest_n = (int)x;
        } else if (!strcmp(key, "all")) {
            if (!json_is_true(v))
                return bad(err, "version_policy.all", "must be true, got %s",
                           json_is_false(v) ? "false" : json_type_name(v));
            c->policy = INFERD_CONFIG_POLICY_ALL;
        } else if (!strcmp(key, "specific")) {
            int64_t vers[INFERD_CONFIG_MAX_SPECIFIC];
            int n;
            if ((rc = get_int_list(v, "version_policy.specific", 1, 2147483647LL, vers,
                                   INFERD_CONFIG_MAX_SPECIFIC, &n, err)) < 0)
                return rc;
            for (int i = 0; i < n; i++)
                c->specific[i] = (long)vers[i];
            c->n_specific = n;
            c->policy = INFERD_CONFIG_POLICY_SPECIFIC;
        } else {
            return inferd_error_set(err, INFERD_EINVAL,
                                    "config.json: version_policy: unknown key '%s' (expected "
                                    "latest, all or specific)",
                                    key);
        }
    }
    return 0;
}

int inferd_config_parse(inferd_config *c, const char *text, size_t len, inferd_error *err) {
    json_error_t jerr;
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        return inferd_error_set(err, INFERD_EINVAL,
                                "config.json: invalid JSON at line %d, column %d: %s", jerr.line,
                                jerr.column, jerr.text);
    int rc = 0;
    if (!json_is_object(root)) {
        rc = inferd_error_set(err, INFERD_EINVAL, "config.json: must be a JSON object, got %s",
                              json_type_name(root));
        goto out;
    }
    const char *key;
    json_t *v;
    int64_t x;
    json_t *batching = NULL;
    json_object_foreach(root, key, v) {
        if (!strcmp(key, "name")) {
            if (!json_is_string(v) || json_string_length(v) == 0 ||
                json_string_length(v) >= sizeof c->name) {
                rc = bad(err, "name", "must be a non-empty string of at most 127 bytes%s", "");
                goto out;
            }
            snprintf(c->name, sizeof c->name, "%s", json_string_value(v));
        } else if (!strcmp(key, "platform")) {
            if (!json_is_string(v)) {
                rc = bad(err, "platform", "must be a string, got %s", json_type_name(v));
                goto out;
            }
            if (!inferd_backend_find_platform(json_string_value(v))) {
                char known[160];
                snprintf(known, sizeof known, "unknown platform '%%s' (known: %s)",
                         inferd_backend_platform_names());
                rc = bad(err, "platform", known, json_string_value(v));
                goto out;
            }
            snprintf(c->platform, sizeof c->platform, "%s", json_string_value(v));
        } else if (!strcmp(key, "max_batch_size")) {
            if ((rc = get_int(v, "max_batch_size", 0, INFERD_CONFIG_MAX_BATCH, &x, err)) < 0)
                goto out;
            c->max_batch_size = (int)x;
            c->max_batch_size_set = 1;
        } else if (!strcmp(key, "dynamic_batching")) {
            batching = v;
            if ((rc = parse_batching(c, v, err)) < 0)
                goto out;
        } else if (!strcmp(key, "version_policy")) {
            if ((rc = parse_policy(c, v, err)) < 0)
                goto out;
        } else if (!strcmp(key, "instance_threads")) {
            if ((rc = get_int(v, "instance_threads", 1, 1024, &x, err)) < 0)
                goto out;
            c->instance_threads = (int)x;
        } else if (!strcmp(key, "inputs")) {
            if ((rc = parse_tensors(v, "inputs", c->inputs, &c->n_inputs, err)) < 0)
                goto out;
        } else if (!strcmp(key, "outputs")) {
            if ((rc = parse_tensors(v, "outputs", c->outputs, &c->n_outputs, err)) < 0)
                goto out;
        } else if (!strcmp(key, "pinned")) {
            if ((rc = get_bool(v, "pinned", &c->pinned, err)) < 0)
                goto out;
        } else if (!strcmp(key, "warmup")) {
            if ((rc = parse_warmup(c, v, err)) < 0)
                goto out;
        } else if (!strcmp(key, "routes")) {
            if ((rc = parse_routes(c, v, err)) < 0)
                goto out;
        } else {
            rc = inferd_error_set(err, INFERD_EINVAL, "config.json: unknown key '%s'", key);
            goto out;
        }
    }
    // Cross-field checks, after every key is read so their order in the file does not matter.
    if (c->n_preferred > 0 && c->preferred_batch_sizes[c->n_preferred - 1] > c->max_batch_size) {
        rc = inferd_error_set(err, INFERD_EINVAL,
                              "config.json: dynamic_batching.preferred_batch_sizes: %d exceeds "
                              "max_batch_size %d",
                              c->preferred_batch_sizes[c->n_preferred - 1], c->max_batch_size);
        goto out;
    }
    if (batching && c->max_batch_size == 0 &&
        (c->pad_dims || c->max_queue_delay_us > 0 || c->n_preferred > 0)) {
        rc = inferd_error_set(err, INFERD_EINVAL,
                              "config.json: dynamic_batching: batching needs max_batch_size > 0");
        goto out;
    }
    if (c->warmup_batch > 1 && c->warmup_batch > c->max_batch_size) {
        rc = inferd_error_set(err, INFERD_EINVAL,
                              "config.json: warmup.batch_size: %d exceeds max_batch_size %d",
                              c->warmup_batch, c->max_batch_size);
        goto out;
    }
    if (c->n_buckets > 0 && !c->pad_dims) {
        rc = inferd_error_set(err, INFERD_EINVAL,
                              "config.json: dynamic_batching.length_buckets: needs pad_dims true "
                              "(without padding only equal shapes share a batch)");
        goto out;
    }
out:
    json_decref(root);
    return rc;
}

int inferd_config_load_file(inferd_config *c, const char *path, inferd_error *err) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        if (errno == ENOENT)
            return inferd_error_set(err, INFERD_ENOTFOUND, "%s: no such file", path);
        return inferd_error_set(err, INFERD_EINTERNAL, "%s: %s", path, strerror(errno));
    }
    char *buf = malloc(MAX_CONFIG_BYTES + 1);
    if (!buf) {
        fclose(f);
        return inferd_error_set(err, INFERD_EINTERNAL, "out of memory reading %s", path);
    }
    size_t n = fread(buf, 1, MAX_CONFIG_BYTES + 1, f);
    int rc;
    if (ferror(f))
        rc = inferd_error_set(err, INFERD_EINTERNAL, "%s: read error", path);
    else if (n > MAX_CONFIG_BYTES)
        rc = inferd_error_set(err, INFERD_EINVAL, "config.json: larger than %d bytes",
                              MAX_CONFIG_BYTES);
    else
        rc = inferd_config_parse(c, buf, n, err);
    free(buf);
    fclose(f);
    return rc;
}

int inferd_config_select_versions(const inferd_config *c, const long *available, int n_available,
                                  long *out, int cap) {
    int n = 0;
    switch (c->policy) {
    case INFERD_CONFIG_POLICY_ALL:
        for (int i = 0; i < n_available && n < cap; i++)
            out[n++] = available[i];
        break;
    case INFERD_CONFIG_POLICY_SPECIFIC:
        for (int i = 0; i < c->n_specific && n < cap; i++)
            out[n++] = c->specific[i];
        break;
    case INFERD_CONFIG_POLICY_LATEST:
    default: {
        int first = n_available - c->latest_n;
        if (first < 0)
            first = 0;
        for (int i = first; i < n_available && n < cap; i++)
            out[n++] = available[i];
        break;
    }
    }
    return n;
}
