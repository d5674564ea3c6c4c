#include "api/textreq.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/jsonpos.h"
#include "util/alloc.h"

/* The item a string path names in a text body: one is the field holding one text (item 0),
 * list the one holding a list ("instances[k]" is item k). */
static long item_of_path(const char *path, const char *one, const char *list) {
    if (one && !strcmp(path, one))
        return 0;
    size_t n = list ? strlen(list) : 0;
    if (!list || strncmp(path, list, n) != 0 || path[n] != '[')
        return -1;
    char *end;
    long k = strtol(path + n + 1, &end, 10);
    return end[0] == ']' && end[1] == 0 ? k : -1;
}

/* A body jansson refused: name the text when the reason is its encoding. */
static int json_failure(const uint8_t *body, size_t len, const json_error_t *jerr, const char *one,
                        const char *list, inferd_error *err) {
    char path[160];
    if (inferd_jsonpos_is_encoding_error(jerr->text) &&
        inferd_jsonpos_string_path((const char *)body, len, (size_t)jerr->position, path,
                                   sizeof path)) {
        long item = item_of_path(path, one, list);
        if (item >= 0)
            return inferd_error_set(err, INFERD_EINVAL, "%s: text item %ld is not valid UTF-8 (%s)",
                                    path, item, jerr->text);
        return inferd_error_set(err, INFERD_EINVAL, "%s: not valid UTF-8 (%s)", path, jerr->text);
    }
    return inferd_error_set(err, INFERD_EINVAL,
                            "request body: invalid JSON at line %d, column %d: %s", jerr->line,
                            jerr->column, jerr->text);
}

static int check_text(const json_t *v, const char *where, size_t item,
                      const inferd_textreq_limits *lim, inferd_error *err) {
    if (!json_is_string(v))
        return inferd_error_set(err, INFERD_EINVAL, "%s: must be a string, got %s", where,
                                inferd_json_type_name(v));
    if (json_string_length(v) > lim->max_bytes)
        return inferd_error_set(err, INFERD_ETOOLARGE,
                                "%s: text item %zu has %zu bytes, at most %zu per text", where,
                                item, json_string_length(v), lim->max_bytes);
    return 0;
}

static int parse_parameters(const json_t *params, inferd_textreq_predict *out, inferd_error *err) {
    if (!json_is_object(params))
        return inferd_error_set(err, INFERD_EINVAL, "parameters: must be an object, got %s",
                                inferd_json_type_name(params));
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)params, key, v) {
        if (strcmp(key, "timeout") != 0)
            return inferd_error_set(err, INFERD_EINVAL,
                                    "parameters: unknown key '%.64s' (only timeout)", key);
        if (!json_is_integer(v) || json_integer_value(v) < 0)
            return inferd_error_set(err, INFERD_EINVAL,
                                    "parameters.timeout: must be a non-negative integer "
                                    "(microseconds)");
        out->timeout_us = json_integer_value(v);
    }
    return 0;
}

static int parse_root(json_t *root, const inferd_textreq_limits *lim, inferd_textreq_predict *out,
                      inferd_error *err) {
    if (!json_is_object(root))
        return inferd_error_set(err, INFERD_EINVAL, "request body: must be a JSON object, got %s",
                                inferd_json_type_name(root));
    const char *key;
    json_t *v;
    json_object_foreach(root, key, v) {
        if (strcmp(key, "text") && strcmp(key, "instances") && strcmp(key, "parameters"))
            return inferd_error_set(err, INFERD_EINVAL,
                                    "request: unknown key '%.64s' (expected text or instances, "
                                    "and optionally parameters)",
                                    key);
    }
    const json_t *text = json_object_get(root, "text");
    const json_t *inst = json_object_get(root, "instances");
    const json_t *params = json_object_get(root, "parameters");
    int rc;
    if (params && (rc = parse_parameters(params, out, err)) < 0)
        return rc;
    if (text && inst)
        return inferd_error_set(err, INFERD_EINVAL,
                                "request: give either text (one) or instances (a batch), not both");
    if (!text && !inst)
        return inferd_error_set(err, INFERD_EINVAL,
                                "request: missing text (one text) or instances (a list of texts)");
    size_t n = 1;
    if (inst) {
        if (!json_is_array(inst))
            return inferd_error_set(err, INFERD_EINVAL,
                                    "instances: must be an array of strings, got %s",
                                    inferd_json_type_name(inst));
        n = json_array_size(inst);
        if (n == 0)
            return inferd_error_set(err, INFERD_EINVAL, "instances: must hold at least one text");
        if (n > lim->max_items)
            return inferd_error_set(err, INFERD_ETOOLARGE,
                                    "instances: %zu texts, at most %zu per request", n,
                                    lim->max_items);
    }
    out->items = inferd_calloc(NULL, n, sizeof *out->items);
    if (!out->items)
        return inferd_error_set(err, INFERD_EINTERNAL, "out of memory");
    for (size_t i = 0; i < n; i++) {
        const json_t *t = inst ? json_array_get(inst, i) : text;
        char where[40];
        if (inst)
            snprintf(where, sizeof where, "instances[%zu]", i);
        else
            snprintf(where, sizeof where, "text");
        if ((rc = check_text(t, where, i, lim, err)) < 0)
            return rc;
        out->items[i] = (inferd_text_item){json_string_value(t), json_string_length(t)};
    }
    out->n_items = n;
    return 0;
}

/* Counts the JSON values outside strings (one per '[', '{' and ','), stopping past max. A /v1
 * body holds a few values besides its texts; parsed JSON costs tens of bytes per value, so a
 * 64 MB body of `[1,1,1,...]` would hold over a gigabyte before the texts are even counted. */
static size_t count_values(const uint8_t *p, size_t n, size_t max) {
    size_t count = 0;
    int in_string = 0;
    for (size_t i = 0; i < n && count <= max; i++) {
        uint8_t c = p[i];
        if (in_string) {
            if (c == '\\')
                i++; // the escaped character, whatever it is
            else if (c == '"')
                in_string = 0;
        } else if (c == '"') {
            in_string = 1;
        } else if (c == '[' || c == '{' || c == ',') {
            count++;
        }
    }
    return count;
}

int inferd_textreq_parse_predict(const uint8_t *body, size_t len, const inferd_textreq_limits *lim,
                                 inferd_textreq_predict *out, inferd_error *err) {
    memset(out, 0, sizeof *out);
    size_t max_values = lim->max_items + 64;
    if (count_values(body, len, max_values) > max_values)
        return inferd_error_set(err, INFERD_ETOOLARGE,
                                "request body: over %zu JSON values; a text request holds at "
                                "most %zu texts",
                                max_values, lim->max_items);
    json_error_t jerr;
    // NUL is a character like any other in a text (BERT's cleanup drops it).
    json_t *root =
        json_loadb((const char *)body, len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &jerr);
    if (!root)
        return json_failure(body, len, &jerr, "text", "instances", err);
    out->doc_ = root;
    return parse_root(root, lim, out, err);
}

/* A route's body: {field: "text"} or {field: ["text", ...]}, nothing else. */
static int parse_route_root(json_t *root, const inferd_config_route *rt,
                            const inferd_textreq_limits *lim, inferd_textreq_predict *out,
                            inferd_error *err) {
    if (!json_is_object(root))
        return inferd_error_set(err, INFERD_EINVAL, "request body: must be a JSON object, got %s",
                                inferd_json_type_name(root));
    const char *key;
    json_t *v;
    json_object_foreach(root, key, v) {
        if (strcmp(key, rt->input) != 0)
            return inferd_error_set(err, INFERD_EINVAL,
                                    "request: unknown key '%.64s' (expected %s)", key, rt->input);
    }
    const json_t *in = json_object_get(root, rt->input);
    if (!in)
        return inferd_error_set(err, INFERD_EINVAL, "%s: missing (%s)", rt->input,
                                rt->batch ? "a list of texts" : "the text");
    size_t n = 1;
    if (rt->batch) {
        if (!json_is_array(in))
            return inferd_error_set(err, INFERD_EINVAL, "%s: must be an array of strings, got %s",
                                    rt->input, inferd_json_type_name(in));
        n = json_array_size(in);
        if (n == 0)
            return inferd_error_set(err, INFERD_EINVAL, "%s: must hold at least one text",
                                    rt->input);
        if (n > lim->max_items)
            return inferd_error_set(err, INFERD_ETOOLARGE, "%s: %zu texts, at most %zu per request",
                                    rt->input, n, lim->max_items);
    }
    out->items = inferd_calloc(NULL, n, sizeof *out->items);
    if (!out->items)
        return inferd_error_set(err, INFERD_EINTERNAL, "out of memory");
    for (size_t i = 0; i < n; i++) {
        const json_t *t = rt->batch ? json_array_get(in, i) : in;
        char where[96];
        if (rt->batch)
            snprintf(where, sizeof where, "%s[%zu]", rt->input, i);
        else
            snprintf(where, sizeof where, "%s", rt->input);
        int rc = check_text(t, where, i, lim, err);
        if (rc < 0)
            return rc;
        out->items[i] = (inferd_text_item){json_string_value(t), json_string_length(t)};
    }
    out->n_items = n;
    return 0;
}

int inferd_textreq_parse_route(const uint8_t *body, size_t len, const inferd_config_route *rt,
                               const inferd_textreq_limits *lim, inferd_textreq_predict *out,
                               inferd_error *err) {
    memset(out, 0, sizeof *out);
    size_t max_values = lim->max_items + 64;
    if (count_values(body, len, max_values) > max_values)
        return inferd_error_set(err, INFERD_ETOOLARGE,
                                "request body: over %zu JSON values; a text request holds at "
                                "most %zu texts",
                                max_values, lim->max_items);
    json_error_t jerr;
    json_t *root =
        json_loadb((const char *)body, len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &jerr);
    if (!root)
        return json_failure(body, len, &jerr, rt->batch ? NULL : rt->input,
                            rt->batch ? rt->input : NULL, err);
    out->doc_ = root;
    return parse_route_root(root, rt, lim, out, err);
}

void inferd_textreq_predict_deinit(inferd_textreq_predict *r) {
    inferd_free(r->items);
    if (r->doc_)
        json_decref(r->doc_);
    memset(r, 0, sizeof *r);
}

int inferd_textreq_items_from_tensor(const inferd_tensor *t, const inferd_textreq_limits *lim,
                                     inferd_text_item *items, size_t *n, inferd_error *err) {
    *n = 0;
    if (t->dtype != INFERD_DTYPE_STRING || t->rank != 1 || t->dims[0] < 1)
        return inferd_error_set(err, INFERD_EINVAL, "input 'text': must be BYTES of shape [N]");
    if ((uint64_t)t->dims[0] > lim->max_items)
        return inferd_error_set(err, INFERD_ETOOLARGE,
                                "input 'text': %lld texts, at most %zu per request",
                                (long long)t->dims[0], lim->max_items);
    const uint8_t *p = t->data;
    size_t off = 0;
    for (int64_t i = 0; i < t->dims[0]; i++) {
        if (t->nbytes - off < 4)
            return inferd_error_set(err, INFERD_EINVAL, "input 'text': malformed element %lld",
                                    (long long)i);
        uint32_t len = inferd_read_le32(p + off);
        if (len > t->nbytes - off - 4)
            return inferd_error_set(err, INFERD_EINVAL, "input 'text': malformed element %lld",
                                    (long long)i);
        if (len > lim->max_bytes)
            return inferd_error_set(err, INFERD_ETOOLARGE,
                                    "input 'text': text item %lld has %u bytes, at most %zu per "
                                    "text",
                                    (long long)i, len, lim->max_bytes);
        items[i] = (inferd_text_item){(const char *)p + off + 4, len};
        off += 4 + (size_t)len;
    }
    *n = (size_t)t->dims[0];
    return 0;
}

const char *inferd_textreq_label(const inferd_pipeline *p, const inferd_pipeline_score *s,
                                 char buf[16]) {
    return s->label ? s->label : inferd_pipeline_label_text(p, s->index, buf);
}

static void append_score(inferd_strbuf *b, float x) {
    if (isnan(x))
        inferd_strbuf_appends(b, "NaN");
    else if (isinf(x))
        inferd_strbuf_appends(b, x > 0 ? "Infinity" : "-Infinity");
    else
        inferd_strbuf_appendf(b, "%.9g", (double)x); // 9 digits round-trip any float
}

static void append_label(inferd_strbuf *b, const inferd_pipeline *p,
                         const inferd_pipeline_score *s) {
    char buf[16];
    const char *l = inferd_textreq_label(p, s, buf);
    inferd_strbuf_append_json_string(b, l, strlen(l));
}

void inferd_textreq_format_predictions(inferd_strbuf *b, const char *model, long version,
                                       const inferd_pipeline *p, const inferd_text_result *results,
                                       size_t n) {
    int multi = inferd_pipeline_multi_label(p);
    int top = !multi && inferd_pipeline_top_k(p) > 1;
    inferd_strbuf_appends(b, "{\"model_name\":");
    inferd_strbuf_append_json_string(b, model, strlen(model));
    inferd_strbuf_appendf(b, ",\"model_version\":\"%ld\",\"predictions\":[", version);
    for (size_t i = 0; i < n; i++) {
        const inferd_text_result *r = &results[i];
        inferd_strbuf_appends(b, i ? ",{\"label\":" : "{\"label\":");
        append_label(b, p, &r->best);
        inferd_strbuf_appends(b, ",\"score\":");
        append_score(b, r->best.score);
        if (top) {
            inferd_strbuf_appends(b, ",\"top_k\":[");
            for (size_t j = 0; j < r->n_top; j++) {
                inferd_strbuf_appends(b, j ? ",{\"label\":" : "{\"label\":");
                append_label(b, p, &r->top[j]);
                inferd_strbuf_appends(b, ",\"score\":");
                append_score(b, r->top[j].score);
                inferd_strbuf_append(b, "}", 1);
            }
            inferd_strbuf_append(b, "]", 1);
        }
        if (multi) {
            inferd_strbuf_appends(b, ",\"labels\":[");
            for (size_t j = 0; j < r->n_top; j++) {
                if (j)
                    inferd_strbuf_append(b, ",", 1);
                append_label(b, p, &r->top[j]);
            }
            inferd_strbuf_appends(b, "],\"scores\":[");
            for (size_t j = 0; j < r->n_top; j++) {
                if (j)
                    inferd_strbuf_append(b, ",", 1);
                append_score(b, r->top[j].score);
            }
            inferd_strbuf_append(b, "]", 1);
        }
        if (r->truncated)
            inferd_strbuf_appends(b, ",\"truncated\":true");
        inferd_strbuf_append(b, "}", 1);
    }
    inferd_strbuf_appends(b, "]}");
}

/* One text's object in a route's answer. */
static void append_route_result(inferd_strbuf *b, const inferd_config_route *rt,
                                const inferd_pipeline *p, const inferd_text_result *r) {
    const char *sep = "{";
    if (rt->label[0]) {
        inferd_strbuf_appends(b, sep);
        inferd_strbuf_append_json_string(b, rt->label, strlen(rt->label));
        inferd_strbuf_append(b, ":", 1);
        append_label(b, p, &r->best);
        sep = ",";
    }
    if (rt->score[0]) {
        inferd_strbuf_appends(b, sep);
        inferd_strbuf_append_json_string(b, rt->score, strlen(rt->score));
        inferd_strbuf_append(b, ":", 1);
        append_score(b, r->best.score);
        sep = ",";
    }
    if (rt->top_k[0]) {
        // Its entries use the route's label and score names, or the plain ones when the route
        // leaves those out of the answer.
        const char *ln = rt->label[0] ? rt->label : "label";
        const char *sn = rt->score[0] ? rt->score : "score";
        inferd_strbuf_appends(b, sep);
        inferd_strbuf_append_json_string(b, rt->top_k, strlen(rt->top_k));
        inferd_strbuf_appends(b, ":[");
        for (size_t j = 0; j < r->n_top; j++) {
            inferd_strbuf_appends(b, j ? ",{" : "{");
            inferd_strbuf_append_json_string(b, ln, strlen(ln));
            inferd_strbuf_append(b, ":", 1);
            append_label(b, p, &r->top[j]);
            inferd_strbuf_append(b, ",", 1);
            inferd_strbuf_append_json_string(b, sn, strlen(sn));
            inferd_strbuf_append(b, ":", 1);
            append_score(b, r->top[j].score);
            inferd_strbuf_append(b, "}", 1);
        }
        inferd_strbuf_append(b, "]", 1);
    }
    inferd_strbuf_append(b, "}", 1);
}

void inferd_textreq_format_route(inferd_strbuf *b, const inferd_config_route *rt,
                                 const inferd_pipeline *p, const inferd_text_result *results,
                                 size_t n) {
    if (!rt->batch) {
        if (n > 0)
            append_route_result(b, rt, p, &results[0]);
        return;
    }
    if (rt->results[0]) {
        inferd_strbuf_append(b, "{", 1);
        inferd_strbuf_append_json_string(b, rt->results, strlen(rt->results));
        inferd_strbuf_append(b, ":", 1);
    }
    inferd_strbuf_append(b, "[", 1);
    for (size_t i = 0; i < n; i++) {
        if (i)
            inferd_strbuf_append(b, ",", 1);
        append_route_result(b, rt, p, &results[i]);
    }
    inferd_strbuf_append(b, "]", 1);
    if (rt->results[0])
        inferd_strbuf_append(b, "}", 1);
}

int64_t inferd_textreq_top_width(const inferd_pipeline *p, int64_t classes) {
    size_t k = inferd_pipeline_top_k(p);
    if (!inferd_pipeline_multi_label(p))
        return k > 1 ? (int64_t)k : 0;
    if (k > 0)
        return (int64_t)k;
    if (inferd_pipeline_label_count(p) > 0)
        return (int64_t)inferd_pipeline_label_count(p);
    return classes > 0 ? classes : -1;
}

void inferd_textreq_signature(int64_t top_width, inferd_tensor_desc inputs[1],
                              inferd_tensor_desc outputs[4], int *n_outputs) {
    inputs[0] = (inferd_tensor_desc){"text", INFERD_DTYPE_STRING, 1, {-1}};
    outputs[0] = (inferd_tensor_desc){"label", INFERD_DTYPE_STRING, 1, {-1}};
    outputs[1] = (inferd_tensor_desc){"score", INFERD_DTYPE_F32, 1, {-1}};
    *n_outputs = 2;
    if (top_width != 0) {
        outputs[2] = (inferd_tensor_desc){"top_labels", INFERD_DTYPE_STRING, 2, {-1, top_width}};
        outputs[3] = (inferd_tensor_desc){"top_scores", INFERD_DTYPE_F32, 2, {-1, top_width}};
        *n_outputs = 4;
    }
}

static void put_string(inferd_strbuf *b, const char *s) {
    size_t n = strlen(s);
    uint8_t len[4] = {(uint8_t)n, (uint8_t)(n >> 8), (uint8_t)(n >> 16), (uint8_t)(n >> 24)};
    inferd_strbuf_append(b, len, 4);
    inferd_strbuf_append(b, s, n);
}

void inferd_textreq_free_outputs(inferd_tensor outputs[4]) {
    for (int j = 0; j < 4; j++) {
        inferd_free(outputs[j].data);
        outputs[j].data = NULL;
        outputs[j].nbytes = 0;
    }
}

int inferd_textreq_build_outputs(const inferd_pipeline *p, const inferd_text_result *results,
                                 size_t n, int64_t width, inferd_tensor outputs[4],
                                 inferd_error *err) {
    memset(outputs, 0, 4 * sizeof outputs[0]);
    if (width < 0)
        width = n > 0 ? results[0].classes : 0;
    char buf[16];
    inferd_strbuf labels, top_labels;
    inferd_strbuf_init(&labels);
    inferd_strbuf_init(&top_labels);
    float *scores = inferd_malloc(NULL, n * sizeof(float));
    float *top_scores = width > 0 ? inferd_malloc(NULL, n * (size_t)width * sizeof(float)) : NULL;
    for (size_t i = 0; i < n; i++) {
        put_string(&labels, inferd_textreq_label(p, &results[i].best, buf));
        if (scores)
            scores[i] = results[i].best.score;
        for (int64_t j = 0; j < width; j++) {
            const inferd_pipeline_score *s =
                (size_t)j < results[i].n_top ? &results[i].top[j] : NULL;
            put_string(&top_labels, s ? inferd_textreq_label(p, s, buf) : "");
            if (top_scores)
                top_scores[i * (size_t)width + (size_t)j] = s ? s->score : 0.0f;
        }
    }
    size_t llen = 0, tlen = 0;
    char *ldata = inferd_strbuf_take(&labels, &llen);
    char *tdata = width > 0 ? inferd_strbuf_take(&top_labels, &tlen) : NULL;
    if (width <= 0)
        inferd_strbuf_deinit(&top_labels);
    outputs[0] = (inferd_tensor){.dtype = INFERD_DTYPE_STRING,
                                 .rank = 1,
                                 .dims = {(int64_t)n},
                                 .data = ldata,
                                 .nbytes = llen};
    outputs[1] = (inferd_tensor){.dtype = INFERD_DTYPE_F32,
                                 .rank = 1,
                                 .dims = {(int64_t)n},
                                 .data = scores,
                                 .nbytes = n * sizeof(float)};
    if (width > 0) {
        outputs[2] = (inferd_tensor){.dtype = INFERD_DTYPE_STRING,
                                     .rank = 2,
                                     .dims = {(int64_t)n, width},
                                     .data = tdata,
                                     .nbytes = tlen};
        outputs[3] = (inferd_tensor){.dtype = INFERD_DTYPE_F32,
                                     .rank = 2,
                                     .dims = {(int64_t)n, width},
                                     .data = top_scores,
                                     .nbytes = n * (size_t)width * sizeof(float)};
    }
    if (!ldata || !scores || (width > 0 && (!tdata || !top_scores))) {
        inferd_textreq_free_outputs(outputs); // every buffer made is in outputs
        return inferd_error_set(err, INFERD_EINTERNAL, "out of memory formatting text outputs");
    }
    return 0;
}
