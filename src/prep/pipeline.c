#include "prep/pipeline.h"

#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "prep/hfjson.h"
#include "prep/tokenizer.h"
#include "prep/unicode.h"

typedef enum post_fn { POST_FN_SOFTMAX = 0, POST_FN_SIGMOID, POST_FN_NONE } post_fn;

typedef struct bound_input {
    char *name;
    inferd_dtype dtype;
    inferd_pipeline_input_kind kind;
} bound_input;

struct inferd_pipeline {
    inferd_mem_account *acct;
    inferd_tokenizer *tok;
    int32_t max_length;
    int truncation;
    int pad_to_max;
    int64_t fixed_len; /* the model's static sequence dim, -1 if dynamic or unknown */
    int32_t pad_id;
    bound_input in[3];
    size_t n_in;
    char *output;
    post_fn fn;
    size_t top_k; /* 0: no limit */
    int has_threshold;
    float threshold;
    char **labels;
    size_t n_labels;
};

#define LIMIT_MAX_LENGTH 65536

static int fail(inferd_error *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fail(inferd_error *err, int code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    inferd_error_setv(err, code, fmt, ap);
    va_end(ap);
    inferd_error_prefix(err, "pipeline.json: ");
    return code;
}

/* Rejects any key of o not in allowed (NULL-terminated), naming it. */
static int check_keys(json_t *o, const char *const *allowed, const char *where, inferd_error *err) {
    const char *key;
    json_t *v;
    json_object_foreach(o, key, v) {
        int ok = 0;
        for (size_t i = 0; allowed[i] && !ok; i++)
            ok = !strcmp(key, allowed[i]);
        if (!ok)
            return fail(err, INFERD_EINVAL, "unknown key \"%.64s\" in %s", key, where);
    }
    return 0;
}

static int get_bool(json_t *o, const char *key, int dflt, int *out, const char *where,
                    inferd_error *err) {
    json_t *v = json_object_get(o, key);
    if (!v) {
        *out = dflt;
        return 0;
    }
    if (!json_is_boolean(v))
        return fail(err, INFERD_EINVAL, "%s%s must be true or false", where, key);
    *out = json_is_true(v);
    return 0;
}

/* A string member that may be absent or null (*out NULL then). */
static int get_str(json_t *o, const char *key, const char **out, const char *where,
                   inferd_error *err) {
    json_t *v = json_object_get(o, key);
    *out = NULL;
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_string(v) || json_string_length(v) == 0 ||
        strlen(json_string_value(v)) != json_string_length(v))
        return fail(err, INFERD_EINVAL, "%s%s must be a non-empty string", where, key);
    *out = json_string_value(v);
    return 0;
}

static int get_int(json_t *o, const char *key, long long dflt, long long lo, long long hi,
                   long long *out, const char *where, inferd_error *err) {
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) {
        *out = dflt;
        return 0;
    }
    if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi)
        return fail(err, INFERD_EINVAL, "%s%s must be an integer from %lld to %lld", where, key, lo,
                    hi);
    *out = json_integer_value(v);
    return 0;
}

/* Resolves a file name from pipeline.json inside the version folder root (a realpath).
 * Absolute paths, ".." components and symlinks leading outside are refused. */
static int resolve(const char *root, const char *name, const char *key, char *out,
                   inferd_error *err) {
    if (!root)
        return fail(err, INFERD_EINVAL, "%s names a file but there is no version folder", key);
    if (name[0] == '/')
        return fail(err, INFERD_EINVAL,
                    "%s must be a path inside the version folder, not \"%.64s\"", key, name);
    for (const char *p = name; *p;) {
        const char *e = strchr(p, '/');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        if (n == 2 && p[0] == '.' && p[1] == '.')
            return fail(err, INFERD_EINVAL, "%s must not contain \"..\" (\"%.64s\")", key, name);
        p += n + (e ? 1 : 0);
    }
    char joined[PATH_MAX];
    if ((size_t)snprintf(joined, sizeof joined, "%s/%s", root, name) >= sizeof joined)
        return fail(err, INFERD_EINVAL, "%s is too long a path", key);
    if (!realpath(joined, out))
        return fail(err, INFERD_ENOTFOUND, "%s names \"%.64s\", which does not exist", key, name);
    size_t rl = strlen(root);
    if (strncmp(out, root, rl) != 0 || out[rl] != '/')
        return fail(err, INFERD_EINVAL, "%s \"%.64s\" leads outside the version folder", key, name);
    return 0;
}

static char *dup_str(inferd_mem_account *acct, const char *s) { return inferd_strdup(acct, s); }

static int load_labels(inferd_pipeline *p, const char *path, inferd_error *err) {
    FILE *f = fopen(path, "rb");
    if (!f)
        return fail(err, INFERD_ENOTFOUND, "cannot open postprocess.labels");
    char *line = NULL;
    size_t cap = 0, lcap = 0;
    ssize_t got;
    int rc = 0;
    while ((got = getline(&line, &cap, f)) >= 0) {
        while (got > 0 && (line[got - 1] == '\n' || line[got - 1] == '\r'))
            line[--got] = 0;
        size_t bad;
        if (inferd_unicode_validate(line, (size_t)got, &bad) || strlen(line) != (size_t)got) {
            rc = fail(err, INFERD_EINVAL, "labels file line %zu is not valid UTF-8 text",
                      p->n_labels + 1);
            break;
        }
        if (p->n_labels == lcap) {
            size_t nc = lcap ? lcap * 2 : 16;
            char **nl = inferd_realloc(p->acct, p->labels, nc * sizeof *nl);
            if (!nl) {
                rc = fail(err, INFERD_EINTERNAL, "out of memory for labels");
                break;
            }
            p->labels = nl;
            lcap = nc;
        }
        if (!(p->labels[p->n_labels] = dup_str(p->acct, line))) {
            rc = fail(err, INFERD_EINTERNAL, "out of memory for labels");
            break;
        }
        p->n_labels++;
    }
    free(line);
    fclose(f);
    // Blank lines at the end are editors' leftovers, not labels: dropping them keeps the count
    // equal to the model's classes.
    while (!rc && p->n_labels > 0 && p->labels[p->n_labels - 1][0] == 0)
        inferd_free(p->labels[--p->n_labels]);
    if (!rc && p->n_labels == 0)
        rc = fail(err, INFERD_EINVAL, "labels file is empty");
    return rc;
}

/* A special token given as an id or as a token string to look up. */
static int special_id(json_t *v, const inferd_tokenizer *tok, const char *key, int32_t *out,
                      inferd_error *err) {
    if (json_is_integer(v)) {
        if (json_integer_value(v) < 0 || json_integer_value(v) > INT32_MAX)
            return fail(err, INFERD_EINVAL, "special_tokens.%s must be an id >= 0", key);
        *out = (int32_t)json_integer_value(v);
        return 0;
    }
    if (!json_is_string(v))
        return fail(err, INFERD_EINVAL, "special_tokens.%s must be a token, an id or null", key);
    int32_t id = inferd_tokenizer_token_id(tok, json_string_value(v), json_string_length(v));
    if (id < 0)
        return fail(err, INFERD_EINVAL, "special_tokens.%s \"%.64s\" is not in the vocabulary", key,
                    json_string_value(v));
    *out = id;
    return 0;
}

static int build_wordpiece(inferd_pipeline *p, json_t *t, const char *root, inferd_error *err) {
    static const char *const keys[] = {"type",
                                       "vocab",
                                       "lowercase",
                                       "strip_accents",
                                       "tokenize_chinese_chars",
                                       "clean_text",
                                       "unk_token",
                                       "max_chars_per_word",
                                       "continuing_subword_prefix",
                                       NULL};
    int rc = check_keys(t, keys, "tokenizer", err);
    if (rc)
        return rc;
    const char *vocab, *unk, *prefix;
    int lower = 1, chinese = 1, clean = 1, strip = 1;
    long long maxc;
    json_t *sa = json_object_get(t, "strip_accents");
    if ((rc = get_str(t, "vocab", &vocab, "tokenizer.", err)) ||
        (rc = get_str(t, "unk_token", &unk, "tokenizer.", err)) ||
        (rc = get_str(t, "continuing_subword_prefix", &prefix, "tokenizer.", err)) ||
        (rc = get_bool(t, "lowercase", 1, &lower, "tokenizer.", err)) ||
        (rc = get_bool(t, "tokenize_chinese_chars", 1, &chinese, "tokenizer.", err)) ||
        (rc = get_bool(t, "clean_text", 1, &clean, "tokenizer.", err)) ||
        (rc = get_int(t, "max_chars_per_word", 100, 1, 1 << 20, &maxc, "tokenizer.", err)))
        return rc;
    if (sa && !json_is_null(sa)) {
        if ((rc = get_bool(t, "strip_accents", lower, &strip, "tokenizer.", err)))
            return rc;
    } else {
        strip = lower; // BERT strips accents exactly when it lowercases
    }
    if (!vocab)
        return fail(err, INFERD_EINVAL, "tokenizer.vocab is required for wordpiece");
    char path[PATH_MAX];
    if ((rc = resolve(root, vocab, "tokenizer.vocab", path, err)))
        return rc;
    inferd_vocab *v;
    if ((rc = inferd_vocab_load_txt(path, p->acct, &v, err))) {
        inferd_error_prefix(err, "pipeline.json: tokenizer.vocab \"%.64s\": ", vocab);
        return rc;
    }
    inferd_tokenizer_parts parts = {0};
    parts.pad_id = -1;
    inferd_wordpiece *wp;
    if ((rc = inferd_wordpiece_create(v, prefix ? prefix : "##", unk ? unk : "[UNK]", (size_t)maxc,
                                      p->acct, &wp, err))) {
        inferd_error_prefix(err, "pipeline.json: tokenizer: ");
        return rc;
    }
    parts.model = wp;
    parts.model_kind = INFERD_TOKENIZER_MODEL_KIND_WORDPIECE;
    parts.normalizers = inferd_calloc(p->acct, 3, sizeof *parts.normalizers);
    parts.pretoks = inferd_calloc(p->acct, 2, sizeof *parts.pretoks);
    if (!parts.normalizers || !parts.pretoks) {
        inferd_tokenizer_parts_deinit(&parts);
        return fail(err, INFERD_EINTERNAL, "out of memory for a tokenizer");
    }
    // BERT's BasicTokenizer as steps: clean and space CJK, lowercase (Python's str.lower,
    // final sigma included), NFD and drop accents, then split on white space and punctuation.
    parts.normalizers[parts.n_normalizers++] = (inferd_normalizer){
        .kind = INFERD_NORMALIZER_KIND_CLEAN,
        .flags = INFERD_NORMALIZER_FLAG_PYTHON | (clean ? INFERD_NORMALIZER_FLAG_CLEAN_TEXT : 0) |
                 (chinese ? INFERD_NORMALIZER_FLAG_CHINESE : 0)};
    if (lower)
        parts.normalizers[parts.n_normalizers++] = (inferd_normalizer){
            .kind = INFERD_NORMALIZER_KIND_LOWERCASE, .flags = INFERD_NORMALIZER_FLAG_FINAL_SIGMA};
    if (strip)
        parts.normalizers[parts.n_normalizers++] =
            (inferd_normalizer){.kind = INFERD_NORMALIZER_KIND_NFD_STRIP_MN};
    parts.pretoks[parts.n_pretoks++] = (inferd_pretok){.kind = INFERD_PRETOK_KIND_WHITESPACE_SPLIT};
    parts.pretoks[parts.n_pretoks++] = (inferd_pretok){.kind = INFERD_PRETOK_KIND_PUNCTUATION,
                                                       .behavior = INFERD_PRETOK_BEHAVIOR_ISOLATED};
    if ((rc = inferd_tokenizer_create(&parts, p->acct, &p->tok, err)))
        return rc;
    return 0;
}

static int build_char(inferd_pipeline *p, json_t *t, const char *root, inferd_error *err) {
    static const char *const keys[] = {"type", "vocab", "hash", "unk_id", NULL};
    int rc = check_keys(t, keys, "tokenizer", err);
    if (rc)
        return rc;
    const char *vocab;
    long long unk;
    if ((rc = get_str(t, "vocab", &vocab, "tokenizer.", err)) ||
        (rc = get_int(t, "unk_id", -1, 0, INT32_MAX, &unk, "tokenizer.", err)))
        return rc;
    inferd_chartok_options o = {.unk_id = (int32_t)unk};
    json_t *h = json_object_get(t, "hash");
    if (h && !json_is_null(h)) {
        static const char *const hkeys[] = {"kind", "offset", "buckets", NULL};
        const char *kind;
        long long off, buckets;
        if (!json_is_object(h))
            return fail(err, INFERD_EINVAL, "tokenizer.hash must be an object or null");
        if ((rc = check_keys(h, hkeys, "tokenizer.hash", err)) ||
            (rc = get_str(h, "kind", &kind, "tokenizer.hash.", err)) ||
            (rc = get_int(h, "offset", 0, 0, INT32_MAX, &off, "tokenizer.hash.", err)) ||
            (rc = get_int(h, "buckets", -1, 1, INT32_MAX, &buckets, "tokenizer.hash.", err)))
            return rc;
        if (!kind || strcmp(kind, "fnv1a"))
            return fail(err, INFERD_EUNSUPPORTED, "tokenizer.hash.kind must be \"fnv1a\"");
        if (buckets < 1)
            return fail(err, INFERD_EINVAL, "tokenizer.hash.buckets is required");
        o.hash = 1;
        o.offset = (uint32_t)off;
        o.buckets = (uint32_t)buckets;
    }
    if (!vocab && !o.hash)
        return fail(err, INFERD_EINVAL, "a char tokenizer needs a vocab, a hash, or both");
    inferd_vocab *v = NULL;
    if (vocab) {
        char path[PATH_MAX];
        if ((rc = resolve(root, vocab, "tokenizer.vocab", path, err)))
            return rc;
        if ((rc = inferd_vocab_load_txt(path, p->acct, &v, err))) {
            inferd_error_prefix(err, "pipeline.json: tokenizer.vocab \"%.64s\": ", vocab);
            return rc;
        }
    }
    inferd_tokenizer_parts parts = {0};
    parts.pad_id = -1;
    inferd_chartok *ct;
    if ((rc = inferd_chartok_create(v, &o, p->acct, &ct, err))) {
        inferd_error_prefix(err, "pipeline.json: tokenizer: ");
        return rc;
    }
    parts.model = ct;
    parts.model_kind = INFERD_TOKENIZER_MODEL_KIND_CHAR;
    return inferd_tokenizer_create(&parts, p->acct, &p->tok, err);
}

static int build_hf(inferd_pipeline *p, json_t *t, const char *root, inferd_error *err) {
    static const char *const keys[] = {"type", "file", NULL};
    int rc = check_keys(t, keys, "tokenizer", err);
    const char *file;
    if (rc || (rc = get_str(t, "file", &file, "tokenizer.", err)))
        return rc;
    if (!file)
        return fail(err, INFERD_EINVAL, "tokenizer.file is required for huggingface");
    char path[PATH_MAX];
    if ((rc = resolve(root, file, "tokenizer.file", path, err)))
        return rc;
    return inferd_hfjson_load(path, p->acct, &p->tok, err);
}

/* The wordpiece and char templates come from special_tokens.cls/sep; huggingface ones from
 * tokenizer.json's post_processor, so special_tokens may only set pad there. */
static int apply_specials(inferd_pipeline *p, json_t *sp, const char *type, inferd_error *err) {
    static const char *const keys[] = {"cls", "sep", "pad", NULL};
    int rc;
    if (sp && !json_is_object(sp))
        return fail(err, INFERD_EINVAL, "special_tokens must be an object");
    if (sp && (rc = check_keys(sp, keys, "special_tokens", err)))
        return rc;
    int wordpiece = !strcmp(type, "wordpiece"), hf = !strcmp(type, "huggingface");
    json_t *cls = sp ? json_object_get(sp, "cls") : NULL,
           *sep = sp ? json_object_get(sp, "sep") : NULL;
    json_t *pad = sp ? json_object_get(sp, "pad") : NULL;
    if (hf && (cls || sep))
        return fail(err, INFERD_EINVAL,
                    "special_tokens.%s cannot be set for a huggingface tokenizer (its "
                    "post_processor adds special tokens)",
                    cls ? "cls" : "sep");
    if (!hf) {
        json_t *dcls = json_string("[CLS]"), *dsep = json_string("[SEP]");
        int32_t id;
        inferd_tokenizer_template tp = {0};
        json_t *c = cls ? cls : (wordpiece ? dcls : NULL);
        json_t *s = sep ? sep : (wordpiece ? dsep : NULL);
        rc = 0;
        if (c && !json_is_null(c) && !(rc = special_id(c, p->tok, "cls", &id, err))) {
            tp.prefix_ids[0] = id;
            tp.n_prefix = 1;
        }
        if (!rc && s && !json_is_null(s) && !(rc = special_id(s, p->tok, "sep", &id, err))) {
            tp.suffix_ids[0] = id;
            tp.n_suffix = 1;
        }
        json_decref(dcls);
        json_decref(dsep);
        if (rc)
            return rc;
        inferd_tokenizer_set_template(p->tok, &tp);
    }
    p->pad_id = inferd_tokenizer_pad_id(p->tok);
    if (pad && !json_is_null(pad))
        return special_id(pad, p->tok, "pad", &p->pad_id, err);
    if (p->pad_id < 0) {
        int32_t id = inferd_tokenizer_token_id(p->tok, "[PAD]", 5);
        p->pad_id = id >= 0 ? id : 0;
    }
    return 0;
}

static int parse_inputs(inferd_pipeline *p, json_t *in, inferd_error *err) {
    static const char *const keys[] = {"input_ids", "attention_mask", "token_type_ids", NULL};
    if (!json_is_object(in))
        return fail(err, INFERD_EINVAL, "inputs must be an object");
    int rc = check_keys(in, keys, "inputs", err);
    if (rc)
        return rc;
    for (int k = 0; k < 3; k++) {
        const char *name;
        char where[32];
        snprintf(where, sizeof where, "inputs.");
        if ((rc = get_str(in, keys[k], &name, where, err)))
            return rc;
        if (!name) {
            if (k == 0)
                return fail(err, INFERD_EINVAL, "inputs.input_ids is required");
            continue;
        }
        for (size_t j = 0; j < p->n_in; j++)
            if (!strcmp(p->in[j].name, name))
                return fail(err, INFERD_EINVAL, "inputs.%s and inputs.%s name the same input",
                            keys[k], keys[p->in[j].kind]);
        bound_input *b = &p->in[p->n_in];
        if (!(b->name = dup_str(p->acct, name)))
            return fail(err, INFERD_EINTERNAL, "out of memory");
        b->kind = (inferd_pipeline_input_kind)k;
        b->dtype = INFERD_DTYPE_I64;
        p->n_in++;
    }
    return 0;
}

static int parse_post(inferd_pipeline *p, json_t *po, const char *root, inferd_error *err) {
    p->fn = POST_FN_SOFTMAX;
    p->top_k = 1;
    if (!po || json_is_null(po))
        return 0;
    static const char *const keys[] = {"function", "top_k", "labels", "threshold", NULL};
    if (!json_is_object(po))
        return fail(err, INFERD_EINVAL, "postprocess must be an object");
    int rc = check_keys(po, keys, "postprocess", err);
    const char *fn, *labels;
    long long top_k;
    if (rc || (rc = get_str(po, "function", &fn, "postprocess.", err)) ||
        (rc = get_str(po, "labels", &labels, "postprocess.", err)) ||
        (rc = get_int(po, "top_k", -1, 1, 1 << 20, &top_k, "postprocess.", err)))
        return rc;
    if (fn) {
        if (!strcmp(fn, "softmax"))
            p->fn = POST_FN_SOFTMAX;
        else if (!strcmp(fn, "sigmoid"))
            p->fn = POST_FN_SIGMOID;
        else if (!strcmp(fn, "none"))
            p->fn = POST_FN_NONE;
        else
            return fail(err, INFERD_EINVAL,
                        "postprocess.function must be \"softmax\", \"sigmoid\" or \"none\", not "
                        "\"%.32s\"",
                        fn);
    }
    json_t *th = json_object_get(po, "threshold");
    if (th && !json_is_null(th)) {
        if (!json_is_number(th) || !isfinite(json_number_value(th)))
            return fail(err, INFERD_EINVAL, "postprocess.threshold must be a number or null");
        if (p->fn != POST_FN_SIGMOID)
            return fail(err, INFERD_EINVAL,
                        "postprocess.threshold (multi-label) needs \"function\": \"sigmoid\"");
        p->has_threshold = 1;
        p->threshold = (float)json_number_value(th);
    }
    p->top_k = top_k > 0 ? (size_t)top_k : (p->has_threshold ? 0 : 1);
    if (labels) {
        char path[PATH_MAX];
        if ((rc = resolve(root, labels, "postprocess.labels", path, err)))
            return rc;
        if ((rc = load_labels(p, path, err)))
            return rc;
    }
    return 0;
}

static const inferd_tensor_desc *find_desc(const inferd_tensor_desc *d, size_t n,
                                           const char *name) {
    for (size_t i = 0; i < n; i++)
        if (d[i].name && !strcmp(d[i].name, name))
            return &d[i];
    return NULL;
}

static int check_model(inferd_pipeline *p, const inferd_pipeline_model *m, inferd_error *err) {
    static const char *const kind_key[] = {"input_ids", "attention_mask", "token_type_ids"};
    p->fixed_len = -1;
    for (size_t i = 0; i < p->n_in; i++) {
        bound_input *b = &p->in[i];
        const inferd_tensor_desc *d = find_desc(m->inputs, m->n_inputs, b->name);
        if (!d)
            return fail(err, INFERD_EINVAL,
                        "inputs.%s names \"%.64s\", which the model does not have",
                        kind_key[b->kind], b->name);
        if (d->dtype != INFERD_DTYPE_I64 && d->dtype != INFERD_DTYPE_I32)
            return fail(err, INFERD_EINVAL,
                        "model input \"%.64s\" is %s; token inputs must be int64 or int32", b->name,
                        inferd_dtype_name(d->dtype));
        if (d->rank != 2)
            return fail(err, INFERD_EINVAL,
                        "model input \"%.64s\" has rank %d; token inputs must be [batch, sequence]",
                        b->name, d->rank);
        if (d->dims[1] >= 0) {
            if (p->fixed_len >= 0 && p->fixed_len != d->dims[1])
                return fail(err, INFERD_EINVAL, "model inputs disagree on the sequence length");
            if (d->dims[1] < p->max_length)
                return fail(err, INFERD_EINVAL,
                            "max_length %d exceeds model input \"%.64s\"'s fixed length %lld",
                            (int)p->max_length, b->name, (long long)d->dims[1]);
            p->fixed_len = d->dims[1];
        }
        b->dtype = d->dtype;
    }
    for (size_t i = 0; i < m->n_inputs; i++) {
        int fed = 0;
        for (size_t j = 0; j < p->n_in; j++)
            fed |= m->inputs[i].name && !strcmp(m->inputs[i].name, p->in[j].name);
        if (!fed)
            return fail(err, INFERD_EINVAL,
                        "model input \"%.64s\" is not fed by the pipeline (see \"inputs\")",
                        m->inputs[i].name ? m->inputs[i].name : "");
    }
    const inferd_tensor_desc *o = find_desc(m->outputs, m->n_outputs, p->output);
    if (!o)
        return fail(err, INFERD_EINVAL, "output \"%.64s\" is not an output of the model",
                    p->output);
    if (o->dtype != INFERD_DTYPE_F32 || o->rank != 2)
        return fail(err, INFERD_EINVAL,
                    "model output \"%.64s\" must be float [batch, classes], not %s of rank %d",
                    p->output, inferd_dtype_name(o->dtype), o->rank);
    if (o->dims[1] >= 0 && p->n_labels && (size_t)o->dims[1] != p->n_labels)
        return fail(err, INFERD_EINVAL,
                    "model output \"%.64s\" has %lld classes but the labels file has %zu",
                    p->output, (long long)o->dims[1], p->n_labels);
    if (o->dims[1] >= 0 && p->top_k > (size_t)o->dims[1])
        return fail(err, INFERD_EINVAL, "postprocess.top_k %zu exceeds the model's %lld classes",
                    p->top_k, (long long)o->dims[1]);
    return 0;
}

static int parse_root(inferd_pipeline *p, json_t *root, const char *dir,
                      const inferd_pipeline_model *m, inferd_error *err) {
    static const char *const keys[] = {"tokenizer", "max_length",     "truncation",
                                       "padding",   "special_tokens", "inputs",
                                       "output",    "postprocess",    NULL};
    if (!json_is_object(root))
        return fail(err, INFERD_EINVAL, "the top level must be an object");
    int rc = check_keys(root, keys, "the top level", err);
    if (rc)
        return rc;
    json_t *t = json_object_get(root, "tokenizer");
    const char *type, *padding, *output;
    long long max_len;
    if (!json_is_object(t))
        return fail(err, INFERD_EINVAL, "tokenizer must be an object");
    if ((rc = get_str(t, "type", &type, "tokenizer.", err)) ||
        (rc = get_int(root, "max_length", -1, 1, LIMIT_MAX_LENGTH, &max_len, "", err)) ||
        (rc = get_bool(root, "truncation", 1, &p->truncation, "", err)) ||
        (rc = get_str(root, "padding", &padding, "", err)) ||
        (rc = get_str(root, "output", &output, "", err)))
        return rc;
    if (max_len < 1)
        return fail(err, INFERD_EINVAL, "max_length is required");
    if (!output)
        return fail(err, INFERD_EINVAL, "output is required");
    p->max_length = (int32_t)max_len;
    if (padding && strcmp(padding, "longest") && strcmp(padding, "max_length"))
        return fail(err, INFERD_EINVAL, "padding must be \"longest\" or \"max_length\"");
    p->pad_to_max = padding && !strcmp(padding, "max_length");
    if (!(p->output = dup_str(p->acct, output)))
        return fail(err, INFERD_EINTERNAL, "out of memory");
    // The real folder once, so every file check compares against the same resolved root.
    char root_real[PATH_MAX];
    const char *rootp = NULL;
    if (dir) {
        if (!realpath(dir, root_real))
            return fail(err, INFERD_ENOTFOUND, "version folder does not exist");
        rootp = root_real;
    }
    if (!type)
        return fail(err, INFERD_EINVAL, "tokenizer.type is required");
    if (!strcmp(type, "wordpiece"))
        rc = build_wordpiece(p, t, rootp, err);
    else if (!strcmp(type, "char"))
        rc = build_char(p, t, rootp, err);
    else if (!strcmp(type, "huggingface"))
        rc = build_hf(p, t, rootp, err);
    else
        return fail(err, INFERD_EINVAL,
                    "tokenizer.type must be \"wordpiece\", \"char\" or \"huggingface\", not "
                    "\"%.32s\"",
                    type);
    if (rc || (rc = apply_specials(p, json_object_get(root, "special_tokens"), type, err)))
        return rc;
    if ((size_t)p->max_length <= inferd_tokenizer_num_special(p->tok))
        return fail(err, INFERD_EINVAL, "max_length %d leaves no room between %zu special tokens",
                    (int)p->max_length, inferd_tokenizer_num_special(p->tok));
    if ((rc = parse_inputs(p, json_object_get(root, "inputs"), err)) ||
        (rc = parse_post(p, json_object_get(root, "postprocess"), rootp, err)))
        return rc;
    p->fixed_len = -1;
    if (m && (rc = check_model(p, m, err)))
        return rc;
    return 0;
}

int inferd_pipeline_parse(const char *json, size_t n, const char *version_dir,
                          const inferd_pipeline_model *model, inferd_mem_account *acct,
                          inferd_pipeline **out, inferd_error *err) {
    json_error_t jerr;
    json_t *root = json_loadb(json, n, JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        return fail(err, INFERD_EINVAL, "line %d: %.160s", jerr.line, jerr.text);
    inferd_pipeline *p = inferd_calloc(acct, 1, sizeof *p);
    if (!p) {
        json_decref(root);
        return inferd_error_set(err, INFERD_EINTERNAL, "out of memory for a pipeline");
    }
    p->acct = acct;
    int rc = parse_root(p, root, version_dir, model, err);
    json_decref(root);
    if (rc) {
        inferd_pipeline_destroy(p);
        return rc;
    }
    *out = p;
    return 0;
}

int inferd_pipeline_load(const char *version_dir, const inferd_pipeline_model *model,
                         inferd_mem_account *acct, inferd_pipeline **out, inferd_error *err) {
    char path[PATH_MAX];
    if ((size_t)snprintf(path, sizeof path, "%s/pipeline.json", version_dir) >= sizeof path)
        return inferd_error_set(err, INFERD_EINVAL, "version folder path is too long");
    FILE *f = fopen(path, "rb");
    if (!f)
        return inferd_error_set(err, INFERD_ENOTFOUND, "version folder has no pipeline.json");
    char *buf = NULL;
    size_t len = 0, cap = 0;
    int rc = 0;
    for (;;) {
        if (len == cap) {
            if (cap >= (size_t)16 << 20) {
                rc = inferd_error_set(err, INFERD_ETOOLARGE, "pipeline.json is over 16 MiB");
                break;
            }
            char *nb = inferd_realloc(acct, buf, cap ? cap * 2 : 4096);
            if (!nb) {
                rc = inferd_error_set(err, INFERD_EINTERNAL, "out of memory reading pipeline.json");
                break;
            }
            buf = nb;
            cap = cap ? cap * 2 : 4096;
        }
        size_t got = fread(buf + len, 1, cap - len, f);
        len += got;
        if (got == 0)
            break;
    }
    fclose(f);
    if (!rc)
        rc = inferd_pipeline_parse(buf, len, version_dir, model, acct, out, err);
    inferd_free(buf);
    return rc;
}

void inferd_pipeline_destroy(inferd_pipeline *p) {
    if (!p)
        return;
    inferd_tokenizer_destroy(p->tok);
    for (size_t i = 0; i < p->n_in; i++)
        inferd_free(p->in[i].name);
    inferd_free(p->output);
    for (size_t i = 0; i < p->n_labels; i++)
        inferd_free(p->labels[i]);
    inferd_free(p->labels);
    inferd_free(p);
}

int32_t inferd_pipeline_max_length(const inferd_pipeline *p) { return p->max_length; }

int inferd_pipeline_encode(const inferd_pipeline *p, inferd_scratch *s, const char *text, size_t n,
                           size_t item_index, inferd_encoding *enc, inferd_error *err) {
    size_t bad;
    enc->len = 0;
    enc->truncated = 0;
    if (inferd_unicode_validate(text, n, &bad) != 0)
        return inferd_error_set(err, INFERD_EINVAL,
                                "text item %zu is not valid UTF-8 (byte offset %zu)", item_index,
                                bad);
    size_t len = 0;
    int rc = inferd_tokenizer_encode(p->tok, s, text, n, (size_t)p->max_length, p->truncation,
                                     enc->ids, enc->type_ids, &len, &enc->truncated, err);
    if (rc) {
        inferd_error_prefix(err, "text item %zu: ", item_index);
        return rc;
    }
    enc->len = (int32_t)len;
    return 0;
}

size_t inferd_pipeline_input_count(const inferd_pipeline *p) { return p->n_in; }
const char *inferd_pipeline_input_name(const inferd_pipeline *p, size_t i) {
    return i < p->n_in ? p->in[i].name : NULL;
}
inferd_dtype inferd_pipeline_input_dtype(const inferd_pipeline *p, size_t i) {
    return i < p->n_in ? p->in[i].dtype : INFERD_DTYPE_INVALID;
}
inferd_pipeline_input_kind inferd_pipeline_input_kind_of(const inferd_pipeline *p, size_t i) {
    return i < p->n_in ? p->in[i].kind : INFERD_PIPELINE_INPUT_KIND_IDS;
}

int64_t inferd_pipeline_batch_length(const inferd_pipeline *p, const inferd_encoding *encs,
                                     size_t n) {
    if (p->fixed_len >= 0)
        return p->fixed_len;
    if (p->pad_to_max)
        return p->max_length;
    int64_t L = 1; // never zero-length: an all-empty batch still feeds a [N, 1] tensor
    for (size_t i = 0; i < n; i++)
        if (encs[i].len > L)
            L = encs[i].len;
    return L;
}

int inferd_pipeline_assemble(const inferd_pipeline *p, const inferd_encoding *encs, size_t n,
                             int64_t L, inferd_tensor *out, inferd_error *err) {
    if (L < 1 || (p->fixed_len >= 0 && L != p->fixed_len))
        return inferd_error_set(err, INFERD_EINVAL, "sequence length %lld does not fit the model",
                                (long long)L);
    for (size_t r = 0; r < n; r++)
        if (encs[r].len > L)
            return inferd_error_set(err, INFERD_EINVAL,
                                    "encoding %zu has %d tokens, more than the length %lld", r,
                                    (int)encs[r].len, (long long)L);
    for (size_t i = 0; i < p->n_in; i++) {
        const bound_input *b = &p->in[i];
        size_t es = inferd_dtype_size(b->dtype);
        if (n > 0 && (uint64_t)L > SIZE_MAX / es / n)
            return inferd_error_set(err, INFERD_EINVAL, "batch is too large");
        size_t need = n * (size_t)L * es;
        if (out[i].nbytes < need || (need && !out[i].data))
            return inferd_error_set(err, INFERD_EINVAL,
                                    "buffer for input \"%.64s\" holds %zu bytes, %zu needed",
                                    b->name, out[i].nbytes, need);
        out[i].dtype = b->dtype;
        out[i].rank = 2;
        out[i].dims[0] = (int64_t)n;
        out[i].dims[1] = L;
        for (size_t r = 0; r < n; r++) {
            const inferd_encoding *e = &encs[r];
            for (int64_t j = 0; j < L; j++) {
                int in = j < e->len;
                int64_t v;
                switch (b->kind) {
                case INFERD_PIPELINE_INPUT_KIND_IDS:
                    v = in ? e->ids[j] : p->pad_id;
                    break;
                case INFERD_PIPELINE_INPUT_KIND_MASK:
                    v = in;
                    break;
                default:
                    v = in ? e->type_ids[j] : 0;
                    break;
                }
                size_t at = r * (size_t)L + (size_t)j;
                if (b->dtype == INFERD_DTYPE_I64)
                    ((int64_t *)out[i].data)[at] = v;
                else
                    ((int32_t *)out[i].data)[at] = (int32_t)v;
            }
        }
    }
    return 0;
}

const char *inferd_pipeline_output_name(const inferd_pipeline *p) { return p->output; }

const char *inferd_pipeline_label_text(const inferd_pipeline *p, int32_t index, char buf[16]) {
    if (index >= 0 && (size_t)index < p->n_labels)
        return p->labels[index];
    snprintf(buf, 16, "%d", (int)index);
    return buf;
}

/* Better first; NaN sorts last so a broken row never displaces real scores. */
static int better(const inferd_pipeline_score *a, const inferd_pipeline_score *b) {
    if (isnan(b->score))
        return !isnan(a->score) || a->index < b->index;
    if (isnan(a->score))
        return 0;
    return a->score > b->score || (a->score == b->score && a->index < b->index);
}

static int check_row(const inferd_pipeline *p, int64_t C, inferd_error *err) {
    if (C < 1)
        return inferd_error_set(err, INFERD_EINVAL, "model returned no scores");
    if (p->n_labels && (size_t)C != p->n_labels)
        return inferd_error_set(err, INFERD_EINVAL,
                                "model returned %lld scores but the labels file has %zu",
                                (long long)C, p->n_labels);
    return 0;
}

int inferd_pipeline_best(const inferd_pipeline *p, const float *row, int64_t C,
                         inferd_pipeline_score *out, inferd_error *err) {
    int rc = check_row(p, C, err);
    if (rc)
        return rc;
    // Every function is monotonic, so the best raw value is the best score; NaN never wins.
    int64_t b = 0;
    for (int64_t i = 1; i < C; i++)
        if (isnan(row[b]) || row[i] > row[b])
            b = i;
    float s = row[b];
    if (p->fn == POST_FN_SOFTMAX) {
        float sum = 0;
        for (int64_t i = 0; i < C; i++)
            sum += expf(row[i] - row[b]);
        s = 1.0f / sum;
    } else if (p->fn == POST_FN_SIGMOID) {
        s = 1.0f / (1.0f + expf(-row[b]));
    }
    *out = (inferd_pipeline_score){(int32_t)b, s, p->n_labels ? p->labels[b] : NULL};
    return 0;
}

size_t inferd_pipeline_top_k(const inferd_pipeline *p) { return p->top_k; }
int inferd_pipeline_multi_label(const inferd_pipeline *p) { return p->has_threshold; }
size_t inferd_pipeline_label_count(const inferd_pipeline *p) { return p->n_labels; }
int32_t inferd_pipeline_pad_id(const inferd_pipeline *p) { return p->pad_id; }

int inferd_pipeline_postprocess(const inferd_pipeline *p, const float *row, int64_t C,
                                inferd_pipeline_score *out, size_t cap, size_t *n_out,
                                inferd_error *err) {
    *n_out = 0;
    int rc = check_row(p, C, err);
    if (rc)
        return rc;
    size_t k = p->top_k ? p->top_k : (size_t)C;
    if (k > cap)
        k = cap;
    if (k > (size_t)C)
        k = (size_t)C;
    float mx = row[0], sum = 0;
    if (p->fn == POST_FN_SOFTMAX) {
        for (int64_t i = 1; i < C; i++)
            if (row[i] > mx)
                mx = row[i];
        for (int64_t i = 0; i < C; i++)
            sum += expf(row[i] - mx);
    }
    // Keep the best k in out by insertion: k is small (top-k of a classifier's labels).
    size_t n = 0;
    for (int64_t i = 0; i < C; i++) {
        float s = row[i];
        if (p->fn == POST_FN_SOFTMAX)
            s = expf(row[i] - mx) / sum;
        else if (p->fn == POST_FN_SIGMOID)
            s = 1.0f / (1.0f + expf(-row[i]));
        if (p->has_threshold && !(s >= p->threshold))
            continue;
        inferd_pipeline_score c = {(int32_t)i, s, p->n_labels ? p->labels[i] : NULL};
        if (n == k && (k == 0 || !better(&c, &out[k - 1])))
            continue;
        size_t j = n < k ? n++ : k - 1;
        while (j > 0 && better(&c, &out[j - 1])) {
            out[j] = out[j - 1];
            j--;
        }
        out[j] = c;
    }
    *n_out = n;
    return 0;
}
