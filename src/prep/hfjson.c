#include "prep/hfjson.h"

#include <jansson.h>
#include <string.h>

#include "prep/unicode.h"

/* Growable arrays of steps while parsing (Sequence may nest). */
typedef struct build {
    inferd_mem_account *acct;
    inferd_error *err;
    inferd_tokenizer_parts parts;
    size_t cap_norm, cap_pre;
} build;

#define MAX_NESTING 16

static int bad(build *b, const char *where, const char *what) {
    return inferd_error_set(b->err, INFERD_EINVAL, "tokenizer.json: %s %s", where, what);
}

static int unsupported(build *b, const char *what, const char *name) {
    return inferd_error_set(b->err, INFERD_EUNSUPPORTED, "tokenizer.json: unsupported %s \"%.64s\"",
                            what, name);
}

static int oom(build *b) {
    return inferd_error_set(b->err, INFERD_EINTERNAL, "out of memory loading tokenizer.json");
}

/* Optional boolean member: absent or null gives dflt. */
static int opt_bool(build *b, json_t *o, const char *key, int dflt, int *out, const char *where) {
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) {
        *out = dflt;
        return 0;
    }
    if (!json_is_boolean(v)) {
        char w[96];
        snprintf(w, sizeof w, "%s.%s", where, key);
        return bad(b, w, "must be true or false");
    }
    *out = json_is_true(v);
    return 0;
}

/* Optional string member: absent or null gives NULL. */
static int opt_str(build *b, json_t *o, const char *key, const char **out, const char *where) {
    json_t *v = json_object_get(o, key);
    *out = NULL;
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_string(v) || strlen(json_string_value(v)) != json_string_length(v)) {
        char w[96];
        snprintf(w, sizeof w, "%s.%s", where, key);
        return bad(b, w, "must be a string without NUL");
    }
    *out = json_string_value(v);
    return 0;
}

static const char *type_of(json_t *o) {
    json_t *t = json_object_get(o, "type");
    return json_is_string(t) ? json_string_value(t) : NULL;
}

static int to_cps(build *b, json_t *s, uint32_t **out, size_t *n) {
    const char *str = json_string_value(s);
    size_t len = json_string_length(s);
    uint32_t *c = inferd_malloc(b->acct, (len + 1) * sizeof *c);
    if (!c)
        return oom(b);
    // jansson only hands out valid UTF-8.
    *n = inferd_unicode_decode(str, len, c);
    *out = c;
    return 0;
}

/* A {"String": "..."} pattern as code points; Regex patterns are unsupported. */
static int string_pattern(build *b, json_t *o, const char *where, uint32_t **out, size_t *n) {
    json_t *p = json_object_get(o, "pattern");
    if (!json_is_object(p))
        return bad(b, where, "needs a pattern object");
    json_t *s = json_object_get(p, "String");
    if (!s) {
        if (json_object_get(p, "Regex"))
            return unsupported(b, "Regex pattern in", where);
        return bad(b, where, "pattern must be {\"String\": ...}");
    }
    if (!json_is_string(s) || json_string_length(s) == 0)
        return bad(b, where, "pattern String must be a non-empty string");
    return to_cps(b, s, out, n);
}

static inferd_normalizer *push_norm(build *b, inferd_normalizer_kind kind, unsigned flags) {
    inferd_tokenizer_parts *p = &b->parts;
    if (p->n_normalizers == b->cap_norm) {
        size_t nc = b->cap_norm ? b->cap_norm * 2 : 8;
        inferd_normalizer *nn = inferd_realloc(b->acct, p->normalizers, nc * sizeof *nn);
        if (!nn)
            return NULL;
        p->normalizers = nn;
        b->cap_norm = nc;
    }
    inferd_normalizer *st = &p->normalizers[p->n_normalizers++];
    memset(st, 0, sizeof *st);
    st->kind = kind;
    st->flags = flags;
    return st;
}

static inferd_pretok *push_pre(build *b, inferd_pretok_kind kind) {
    inferd_tokenizer_parts *p = &b->parts;
    if (p->n_pretoks == b->cap_pre) {
        size_t nc = b->cap_pre ? b->cap_pre * 2 : 8;
        inferd_pretok *np = inferd_realloc(b->acct, p->pretoks, nc * sizeof *np);
        if (!np)
            return NULL;
        p->pretoks = np;
        b->cap_pre = nc;
    }
    inferd_pretok *st = &p->pretoks[p->n_pretoks++];
    memset(st, 0, sizeof *st);
    st->kind = kind;
    return st;
}

static int normalizer(build *b, json_t *o, int depth) {
    if (json_is_null(o))
        return 0;
    const char *t = type_of(o);
    if (!json_is_object(o) || !t)
        return bad(b, "normalizer", "must be an object with a string \"type\"");
    if (depth > MAX_NESTING)
        return bad(b, "normalizer", "nests too deeply");
    inferd_normalizer *st = NULL;
    if (!strcmp(t, "Sequence")) {
        json_t *arr = json_object_get(o, "normalizers");
        if (!json_is_array(arr))
            return bad(b, "normalizer Sequence", "needs a \"normalizers\" array");
        for (size_t i = 0; i < json_array_size(arr); i++) {
            int rc = normalizer(b, json_array_get(arr, i), depth + 1);
            if (rc)
                return rc;
        }
        return 0;
    }
    if (!strcmp(t, "BertNormalizer")) {
        int clean = 1, chinese = 1, lower = 1, strip = 1;
        json_t *sa = json_object_get(o, "strip_accents");
        int rc = opt_bool(b, o, "clean_text", 1, &clean, "BertNormalizer");
        if (!rc)
            rc = opt_bool(b, o, "handle_chinese_chars", 1, &chinese, "BertNormalizer");
        if (!rc)
            rc = opt_bool(b, o, "lowercase", 1, &lower, "BertNormalizer");
        if (!rc)
            rc = opt_bool(b, o, "strip_accents", lower, &strip, "BertNormalizer");
        (void)sa;
        if (rc)
            return rc;
        if ((clean || chinese) && !push_norm(b, INFERD_NORMALIZER_KIND_CLEAN,
                                             (clean ? INFERD_NORMALIZER_FLAG_CLEAN_TEXT : 0) |
                                                 (chinese ? INFERD_NORMALIZER_FLAG_CHINESE : 0)))
            return oom(b);
        // Hugging Face strips accents before lowercasing.
        if (strip && !push_norm(b, INFERD_NORMALIZER_KIND_NFD_STRIP_MN, 0))
            return oom(b);
        if (lower && !push_norm(b, INFERD_NORMALIZER_KIND_LOWERCASE, 0))
            return oom(b);
        return 0;
    }
    static const struct {
        const char *name;
        inferd_normalizer_kind kind;
    } simple[] = {{"Lowercase", INFERD_NORMALIZER_KIND_LOWERCASE},
                  {"NFD", INFERD_NORMALIZER_KIND_NFD},
                  {"NFC", INFERD_NORMALIZER_KIND_NFC},
                  {"NFKD", INFERD_NORMALIZER_KIND_NFKD},
                  {"NFKC", INFERD_NORMALIZER_KIND_NFKC},
                  {"StripAccents", INFERD_NORMALIZER_KIND_STRIP_MN}};
    for (size_t i = 0; i < sizeof simple / sizeof simple[0]; i++)
        if (!strcmp(t, simple[i].name))
            return push_norm(b, simple[i].kind, 0) ? 0 : oom(b);
    if (!strcmp(t, "Strip")) {
        int l, r;
        int rc = opt_bool(b, o, "strip_left", 1, &l, "Strip");
        if (!rc)
            rc = opt_bool(b, o, "strip_right", 1, &r, "Strip");
        if (rc)
            return rc;
        return push_norm(b, INFERD_NORMALIZER_KIND_STRIP,
                         (l ? INFERD_NORMALIZER_FLAG_LEFT : 0) |
                             (r ? INFERD_NORMALIZER_FLAG_RIGHT : 0))
                   ? 0
                   : oom(b);
    }
    if (!strcmp(t, "Replace")) {
        json_t *content = json_object_get(o, "content");
        if (!json_is_string(content))
            return bad(b, "normalizer Replace", "needs a string \"content\"");
        if (!(st = push_norm(b, INFERD_NORMALIZER_KIND_REPLACE, 0)))
            return oom(b);
        int rc = string_pattern(b, o, "normalizer Replace", &st->pattern, &st->pattern_len);
        return rc ? rc : to_cps(b, content, &st->content, &st->content_len);
    }
    if (!strcmp(t, "Prepend")) {
        json_t *pre = json_object_get(o, "prepend");
        if (!json_is_string(pre))
            return bad(b, "normalizer Prepend", "needs a string \"prepend\"");
        if (!(st = push_norm(b, INFERD_NORMALIZER_KIND_PREPEND, 0)))
            return oom(b);
        return to_cps(b, pre, &st->content, &st->content_len);
    }
    return unsupported(b, "normalizer", t);
}

static int behavior(build *b, json_t *o, const char *where, inferd_pretok_behavior dflt,
                    inferd_pretok_behavior *out) {
    const char *s;
    int rc = opt_str(b, o, "behavior", &s, where);
    if (rc)
        return rc;
    *out = dflt;
    if (!s)
        return 0;
    static const char *names[] = {"Removed", "Isolated", "MergedWithPrevious", "MergedWithNext",
                                  "Contiguous"};
    for (int i = 0; i < 5; i++)
        if (!strcmp(s, names[i])) {
            *out = (inferd_pretok_behavior)i;
            return 0;
        }
    return unsupported(b, "split behavior", s);
}

static int pre_tokenizer(build *b, json_t *o, int depth) {
    if (json_is_null(o))
        return 0;
    const char *t = type_of(o);
    if (!json_is_object(o) || !t)
        return bad(b, "pre_tokenizer", "must be an object with a string \"type\"");
    if (depth > MAX_NESTING)
        return bad(b, "pre_tokenizer", "nests too deeply");
    inferd_pretok *st;
    int rc = 0;
    if (!strcmp(t, "Sequence")) {
        json_t *arr = json_object_get(o, "pretokenizers");
        if (!json_is_array(arr))
            return bad(b, "pre_tokenizer Sequence", "needs a \"pretokenizers\" array");
        for (size_t i = 0; i < json_array_size(arr) && !rc; i++)
            rc = pre_tokenizer(b, json_array_get(arr, i), depth + 1);
        return rc;
    }
    if (!strcmp(t, "BertPreTokenizer")) {
        if (!push_pre(b, INFERD_PRETOK_KIND_WHITESPACE_SPLIT) ||
            !(st = push_pre(b, INFERD_PRETOK_KIND_PUNCTUATION)))
            return oom(b);
        st->behavior = INFERD_PRETOK_BEHAVIOR_ISOLATED;
        return 0;
    }
    if (!strcmp(t, "Whitespace"))
        return push_pre(b, INFERD_PRETOK_KIND_WHITESPACE) ? 0 : oom(b);
    if (!strcmp(t, "WhitespaceSplit"))
        return push_pre(b, INFERD_PRETOK_KIND_WHITESPACE_SPLIT) ? 0 : oom(b);
    if (!strcmp(t, "Punctuation")) {
        if (!(st = push_pre(b, INFERD_PRETOK_KIND_PUNCTUATION)))
            return oom(b);
        return behavior(b, o, "Punctuation", INFERD_PRETOK_BEHAVIOR_ISOLATED, &st->behavior);
    }
    if (!strcmp(t, "Digits")) {
        int individual;
        if ((rc = opt_bool(b, o, "individual_digits", 0, &individual, "Digits")))
            return rc;
        if (!(st = push_pre(b, INFERD_PRETOK_KIND_DIGITS)))
            return oom(b);
        st->behavior =
            individual ? INFERD_PRETOK_BEHAVIOR_ISOLATED : INFERD_PRETOK_BEHAVIOR_CONTIGUOUS;
        return 0;
    }
    if (!strcmp(t, "Split")) {
        int invert;
        if ((rc = opt_bool(b, o, "invert", 0, &invert, "Split")))
            return rc;
        if (!(st = push_pre(b, INFERD_PRETOK_KIND_SPLIT)))
            return oom(b);
        st->flags = invert ? INFERD_PRETOK_FLAG_INVERT : 0;
        if ((rc = behavior(b, o, "Split", INFERD_PRETOK_BEHAVIOR_REMOVED, &st->behavior)))
            return rc;
        return string_pattern(b, o, "pre_tokenizer Split", &st->pattern, &st->pattern_len);
    }
    if (!strcmp(t, "CharDelimiterSplit")) {
        json_t *d = json_object_get(o, "delimiter");
        if (!json_is_string(d) || json_string_length(d) == 0)
            return bad(b, "CharDelimiterSplit", "needs a one-character \"delimiter\"");
        if (!(st = push_pre(b, INFERD_PRETOK_KIND_SPLIT)))
            return oom(b);
        st->behavior = INFERD_PRETOK_BEHAVIOR_REMOVED;
        if ((rc = to_cps(b, d, &st->pattern, &st->pattern_len)))
            return rc;
        return st->pattern_len == 1
                   ? 0
                   : bad(b, "CharDelimiterSplit.delimiter", "must be one character");
    }
    if (!strcmp(t, "ByteLevel")) {
        int prefix, regex;
        if ((rc = opt_bool(b, o, "add_prefix_space", 1, &prefix, "ByteLevel")) ||
            (rc = opt_bool(b, o, "use_regex", 1, &regex, "ByteLevel")))
            return rc;
        if (!(st = push_pre(b, INFERD_PRETOK_KIND_BYTE_LEVEL)))
            return oom(b);
        st->flags = (prefix ? INFERD_PRETOK_FLAG_ADD_PREFIX_SPACE : 0) |
                    (regex ? INFERD_PRETOK_FLAG_USE_REGEX : 0);
        return 0;
    }
    if (!strcmp(t, "Metaspace")) {
        const char *rep, *scheme;
        int split, prefix;
        if ((rc = opt_str(b, o, "replacement", &rep, "Metaspace")) ||
            (rc = opt_str(b, o, "prepend_scheme", &scheme, "Metaspace")) ||
            (rc = opt_bool(b, o, "split", 1, &split, "Metaspace")) ||
            (rc = opt_bool(b, o, "add_prefix_space", 1, &prefix, "Metaspace")))
            return rc;
        if (!(st = push_pre(b, INFERD_PRETOK_KIND_METASPACE)))
            return oom(b);
        uint32_t r[8];
        size_t rn = 1;
        r[0] = 0x2581;
        if (rep) {
            if (strlen(rep) == 0 || strlen(rep) > 4)
                return bad(b, "Metaspace.replacement", "must be one character");
            rn = inferd_unicode_decode(rep, strlen(rep), r);
            if (rn != 1)
                return bad(b, "Metaspace.replacement", "must be one character");
        }
        st->replacement = r[0];
        unsigned pf = prefix ? INFERD_PRETOK_FLAG_PREPEND_ALWAYS : 0;
        if (scheme) {
            if (!strcmp(scheme, "always"))
                pf = INFERD_PRETOK_FLAG_PREPEND_ALWAYS;
            else if (!strcmp(scheme, "first"))
                pf = INFERD_PRETOK_FLAG_PREPEND_FIRST;
            else if (!strcmp(scheme, "never"))
                pf = 0;
            else
                return unsupported(b, "Metaspace prepend_scheme", scheme);
        }
        st->flags = pf | (split ? INFERD_PRETOK_FLAG_SPLIT : 0);
        return 0;
    }
    return unsupported(b, "pre_tokenizer", t);
}

static int vocab_object(build *b, json_t *v, const char *where, inferd_vocab **out) {
    if (!json_is_object(v))
        return bad(b, where, "vocab must be an object of token -> id");
    inferd_vocab *voc;
    int rc = inferd_vocab_create(b->acct, &voc, b->err);
    if (rc)
        return rc;
    const char *key;
    json_t *val;
    json_object_foreach(v, key, val) {
        json_int_t id = json_is_integer(val) ? json_integer_value(val) : -1;
        if (id < 0 || id > INT32_MAX) {
            inferd_vocab_destroy(voc);
            char w[160];
            snprintf(w, sizeof w, "%s.vocab[\"%.64s\"]", where, key);
            return bad(b, w, "must be an integer id >= 0");
        }
        if ((rc = inferd_vocab_set(voc, key, strlen(key), (int32_t)id, b->err))) {
            inferd_vocab_destroy(voc);
            return rc;
        }
    }
    *out = voc;
    return 0;
}

static int model_wordpiece(build *b, json_t *m) {
    const char *unk, *prefix;
    int rc;
    if ((rc = opt_str(b, m, "unk_token", &unk, "model")) ||
        (rc = opt_str(b, m, "continuing_subword_prefix", &prefix, "model")))
        return rc;
    json_t *mx = json_object_get(m, "max_input_chars_per_word");
    json_int_t maxc = 100;
    if (mx && !json_is_null(mx)) {
        if (!json_is_integer(mx) || json_integer_value(mx) < 0)
            return bad(b, "model.max_input_chars_per_word", "must be an integer >= 0");
        maxc = json_integer_value(mx);
    }
    inferd_vocab *v;
    if ((rc = vocab_object(b, json_object_get(m, "vocab"), "model", &v)))
        return rc;
    inferd_wordpiece *wp;
    rc = inferd_wordpiece_create(v, prefix ? prefix : "##", unk ? unk : "[UNK]", (size_t)maxc,
                                 b->acct, &wp, b->err);
    if (rc) {
        inferd_error_prefix(b->err, "tokenizer.json: model: ");
        return rc;
    }
    b->parts.model = wp;
    b->parts.model_kind = INFERD_TOKENIZER_MODEL_KIND_WORDPIECE;
    return 0;
}

static int model_bpe(build *b, json_t *m) {
    inferd_bpe_options o = {0};
    int rc;
    json_t *dropout = json_object_get(m, "dropout");
    if (dropout && !json_is_null(dropout) &&
        !(json_is_number(dropout) && json_number_value(dropout) == 0.0))
        return unsupported(b, "model option", "dropout");
    if ((rc = opt_str(b, m, "unk_token", &o.unk_token, "model")) ||
        (rc = opt_str(b, m, "continuing_subword_prefix", &o.prefix, "model")) ||
        (rc = opt_str(b, m, "end_of_word_suffix", &o.suffix, "model")) ||
        (rc = opt_bool(b, m, "fuse_unk", 0, &o.fuse_unk, "model")) ||
        (rc = opt_bool(b, m, "byte_fallback", 0, &o.byte_fallback, "model")) ||
        (rc = opt_bool(b, m, "ignore_merges", 0, &o.ignore_merges, "model")))
        return rc;
    json_t *merges = json_object_get(m, "merges");
    if (!json_is_array(merges))
        return bad(b, "model.merges", "must be an array");
    inferd_vocab *v;
    if ((rc = vocab_object(b, json_object_get(m, "vocab"), "model", &v)))
        return rc;
    inferd_bpe *bpe;
    if ((rc = inferd_bpe_create(v, &o, b->acct, &bpe, b->err))) {
        inferd_error_prefix(b->err, "tokenizer.json: model: ");
        return rc;
    }
    b->parts.model = bpe;
    b->parts.model_kind = INFERD_TOKENIZER_MODEL_KIND_BPE;
    for (size_t i = 0; i < json_array_size(merges); i++) {
        json_t *e = json_array_get(merges, i);
        const char *l, *r;
        size_t nl, nr;
        if (json_is_string(e)) {
            // The older form: "left right", with exactly one space.
            const char *s = json_string_value(e);
            size_t n = json_string_length(e);
            const char *sp = memchr(s, ' ', n);
            if (!sp || memchr(sp + 1, ' ', n - (size_t)(sp + 1 - s)))
                return inferd_error_set(b->err, INFERD_EINVAL,
                                        "tokenizer.json: model.merges[%zu] must be two tokens "
                                        "separated by one space",
                                        i);
            l = s, nl = (size_t)(sp - s), r = sp + 1, nr = n - nl - 1;
        } else if (json_is_array(e) && json_array_size(e) == 2 &&
                   json_is_string(json_array_get(e, 0)) && json_is_string(json_array_get(e, 1))) {
            l = json_string_value(json_array_get(e, 0));
            nl = json_string_length(json_array_get(e, 0));
            r = json_string_value(json_array_get(e, 1));
            nr = json_string_length(json_array_get(e, 1));
        } else {
            return inferd_error_set(b->err, INFERD_EINVAL,
                                    "tokenizer.json: model.merges[%zu] must be \"a b\" or "
                                    "[\"a\", \"b\"]",
                                    i);
        }
        if ((rc = inferd_bpe_add_merge(bpe, l, nl, r, nr, b->err))) {
            inferd_error_prefix(b->err, "tokenizer.json: model: ");
            return rc;
        }
    }
    return 0;
}

static int model_unigram(build *b, json_t *m) {
    json_t *voc = json_object_get(m, "vocab");
    if (!json_is_array(voc))
        return bad(b, "model.vocab", "must be an array of [piece, score]");
    json_t *unk = json_object_get(m, "unk_id");
    if (!json_is_integer(unk))
        return unsupported(b, "Unigram model without", "unk_id");
    int fallback, rc;
    if ((rc = opt_bool(b, m, "byte_fallback", 0, &fallback, "model")))
        return rc;
    inferd_unigram *u;
    if ((rc = inferd_unigram_create(b->acct, &u, b->err)))
        return rc;
    b->parts.model = u;
    b->parts.model_kind = INFERD_TOKENIZER_MODEL_KIND_UNIGRAM;
    for (size_t i = 0; i < json_array_size(voc); i++) {
        json_t *e = json_array_get(voc, i);
        json_t *p = json_array_get(e, 0), *s = json_array_get(e, 1);
        if (!json_is_array(e) || json_array_size(e) != 2 || !json_is_string(p) ||
            !json_is_number(s))
            return inferd_error_set(b->err, INFERD_EINVAL,
                                    "tokenizer.json: model.vocab[%zu] must be [piece, score]", i);
        if ((rc = inferd_unigram_add(u, json_string_value(p), json_string_length(p),
                                     json_number_value(s), b->err)))
            return rc;
    }
    json_int_t uid = json_integer_value(unk);
    if (uid < 0 || uid > INT32_MAX)
        return bad(b, "model.unk_id", "is out of range");
    if ((rc = inferd_unigram_finish(u, (int32_t)uid, fallback, b->err)))
        inferd_error_prefix(b->err, "tokenizer.json: model: ");
    return rc;
}

static int model(build *b, json_t *m) {
    if (!json_is_object(m))
        return bad(b, "model", "must be an object");
    const char *t = type_of(m);
    if (!t) {
        // Some older files leave the type out; the fields tell the model apart.
        if (json_object_get(m, "merges"))
            t = "BPE";
        else if (json_is_array(json_object_get(m, "vocab")))
            t = "Unigram";
        else if (json_object_get(m, "max_input_chars_per_word"))
            t = "WordPiece";
        else
            return bad(b, "model", "has no \"type\"");
    }
    if (!strcmp(t, "WordPiece"))
        return model_wordpiece(b, m);
    if (!strcmp(t, "BPE"))
        return model_bpe(b, m);
    if (!strcmp(t, "Unigram"))
        return model_unigram(b, m);
    return unsupported(b, "model", t);
}

static int pair_id(build *b, json_t *p, const char *where, int32_t *id) {
    // BertProcessing and RobertaProcessing write special tokens as ["[CLS]", 101].
    json_t *i = json_array_get(p, 1);
    if (!json_is_array(p) || json_array_size(p) != 2 || !json_is_integer(i) ||
        json_integer_value(i) < 0 || json_integer_value(i) > INT32_MAX)
        return bad(b, where, "must be [token, id]");
    *id = (int32_t)json_integer_value(i);
    return 0;
}

static int add_special(build *b, int32_t *ids, int32_t *types, size_t *n, int32_t id,
                       int32_t type) {
    if (*n >= INFERD_TOKENIZER_MAX_SPECIAL)
        return bad(b, "post_processor", "adds too many special tokens");
    ids[*n] = id;
    types[*n] = type;
    (*n)++;
    return 0;
}

static int template_processing(build *b, json_t *o) {
    inferd_tokenizer_template *tp = &b->parts.tmpl;
    json_t *single = json_object_get(o, "single"), *specials = json_object_get(o, "special_tokens");
    if (!json_is_array(single))
        return bad(b, "TemplateProcessing.single", "must be an array");
    if (specials && !json_is_null(specials) && !json_is_object(specials))
        return bad(b, "TemplateProcessing.special_tokens", "must be an object");
    int seen = 0, rc;
    for (size_t i = 0; i < json_array_size(single); i++) {
        json_t *it = json_array_get(single, i);
        json_t *seq = json_object_get(it, "Sequence"), *sp = json_object_get(it, "SpecialToken");
        json_t *body = seq ? seq : sp;
        json_t *type = json_object_get(body, "type_id");
        json_int_t type_id = json_is_integer(type) ? json_integer_value(type) : 0;
        if (!json_is_object(body) || (type && !json_is_integer(type)) || type_id < 0 ||
            type_id > INT32_MAX)
            return inferd_error_set(b->err, INFERD_EINVAL,
                                    "tokenizer.json: TemplateProcessing.single[%zu] must be "
                                    "{\"Sequence\"|\"SpecialToken\": {\"id\", \"type_id\"}}",
                                    i);
        if (seq) {
            const char *id;
            if ((rc = opt_str(b, seq, "id", &id, "TemplateProcessing Sequence")))
                return rc;
            if (id && strcmp(id, "A"))
                return unsupported(b, "TemplateProcessing single sequence", id);
            if (seen++)
                return bad(b, "TemplateProcessing.single", "names the sequence twice");
            tp->seq_type = (int32_t)type_id;
            continue;
        }
        const char *name;
        if ((rc = opt_str(b, sp, "id", &name, "TemplateProcessing SpecialToken")))
            return rc;
        json_t *tok = name ? json_object_get(specials, name) : NULL;
        json_t *ids = json_object_get(tok, "ids");
        if (!json_is_array(ids))
            return inferd_error_set(b->err, INFERD_EINVAL,
                                    "tokenizer.json: TemplateProcessing special token \"%.64s\" "
                                    "is not in special_tokens with an \"ids\" array",
                                    name ? name : "");
        for (size_t k = 0; k < json_array_size(ids); k++) {
            json_t *v = json_array_get(ids, k);
            if (!json_is_integer(v) || json_integer_value(v) < 0 ||
                json_integer_value(v) > INT32_MAX)
                return bad(b, "TemplateProcessing.special_tokens", "ids must be integers >= 0");
            rc = seen ? add_special(b, tp->suffix_ids, tp->suffix_types, &tp->n_suffix,
                                    (int32_t)json_integer_value(v), (int32_t)type_id)
                      : add_special(b, tp->prefix_ids, tp->prefix_types, &tp->n_prefix,
                                    (int32_t)json_integer_value(v), (int32_t)type_id);
            if (rc)
                return rc;
        }
    }
    if (!seen)
        return bad(b, "TemplateProcessing.single", "does not contain the sequence");
    return 0;
}

static int post_processor(build *b, json_t *o, int depth) {
    if (json_is_null(o))
        return 0;
    const char *t = type_of(o);
    if (!json_is_object(o) || !t)
        return bad(b, "post_processor", "must be an object with a string \"type\"");
    if (depth > MAX_NESTING)
        return bad(b, "post_processor", "nests too deeply");
    inferd_tokenizer_template *tp = &b->parts.tmpl;
    int rc = 0;
    if (!strcmp(t, "Sequence")) {
        json_t *arr = json_object_get(o, "processors");
        if (!json_is_array(arr))
            return bad(b, "post_processor Sequence", "needs a \"processors\" array");
        for (size_t i = 0; i < json_array_size(arr) && !rc; i++)
            rc = post_processor(b, json_array_get(arr, i), depth + 1);
        return rc;
    }
    if (!strcmp(t, "ByteLevel"))
        return 0; // only adjusts offsets, which we do not return
    if (tp->n_prefix || tp->n_suffix)
        return unsupported(b, "post_processor", "Sequence with two processors adding tokens");
    if (!strcmp(t, "TemplateProcessing"))
        return template_processing(b, o);
    if (!strcmp(t, "BertProcessing") || !strcmp(t, "RobertaProcessing")) {
        int32_t cls, sep;
        if ((rc = pair_id(b, json_object_get(o, "cls"), "post_processor.cls", &cls)) ||
            (rc = pair_id(b, json_object_get(o, "sep"), "post_processor.sep", &sep)))
            return rc;
        add_special(b, tp->prefix_ids, tp->prefix_types, &tp->n_prefix, cls, 0);
        add_special(b, tp->suffix_ids, tp->suffix_types, &tp->n_suffix, sep, 0);
        return 0;
    }
    return unsupported(b, "post_processor", t);
}

static int added_tokens(build *b, json_t *arr) {
    if (!arr || json_is_null(arr))
        return 0;
    if (!json_is_array(arr))
        return bad(b, "added_tokens", "must be an array");
    size_t n = json_array_size(arr);
    b->parts.added = inferd_calloc(b->acct, n + 1, sizeof *b->parts.added);
    if (!b->parts.added)
        return oom(b);
    for (size_t i = 0; i < n; i++) {
        json_t *e = json_array_get(arr, i);
        json_t *id = json_object_get(e, "id"), *c = json_object_get(e, "content");
        char where[48];
        snprintf(where, sizeof where, "added_tokens[%zu]", i);
        if (!json_is_object(e) || !json_is_integer(id) || json_integer_value(id) < 0 ||
            json_integer_value(id) > INT32_MAX || !json_is_string(c) || json_string_length(c) == 0)
            return bad(b, where, "needs an integer \"id\" >= 0 and a non-empty \"content\"");
        int sw, ls, rs, rc;
        if ((rc = opt_bool(b, e, "single_word", 0, &sw, where)) ||
            (rc = opt_bool(b, e, "lstrip", 0, &ls, where)) ||
            (rc = opt_bool(b, e, "rstrip", 0, &rs, where)))
            return rc;
        inferd_tokenizer_added *a = &b->parts.added[b->parts.n_added];
        a->len = json_string_length(c);
        a->content = inferd_malloc(b->acct, a->len + 1);
        if (!a->content)
            return oom(b);
        memcpy(a->content, json_string_value(c), a->len + 1);
        a->id = (int32_t)json_integer_value(id);
        a->flags = (sw ? INFERD_TOKENIZER_ADDED_SINGLE_WORD : 0) |
                   (ls ? INFERD_TOKENIZER_ADDED_LSTRIP : 0) |
                   (rs ? INFERD_TOKENIZER_ADDED_RSTRIP : 0);
        b->parts.n_added++;
    }
    return 0;
}

static int parse_root(build *b, json_t *root) {
    if (!json_is_object(root))
        return bad(b, "top level", "must be an object");
    int rc;
    json_t *pad = json_object_get(root, "padding");
    b->parts.pad_id = -1;
    if (json_is_object(pad)) {
        json_t *pid = json_object_get(pad, "pad_id");
        if (json_is_integer(pid) && json_integer_value(pid) >= 0 &&
            json_integer_value(pid) <= INT32_MAX)
            b->parts.pad_id = (int32_t)json_integer_value(pid);
    }
    if ((rc = added_tokens(b, json_object_get(root, "added_tokens"))))
        return rc;
    json_t *n = json_object_get(root, "normalizer"), *p = json_object_get(root, "pre_tokenizer");
    json_t *pp = json_object_get(root, "post_processor");
    if ((n && (rc = normalizer(b, n, 0))) || (p && (rc = pre_tokenizer(b, p, 0))) ||
        (rc = model(b, json_object_get(root, "model"))) || (pp && (rc = post_processor(b, pp, 0))))
        return rc;
    return 0;
}

int inferd_hfjson_parse(const char *json, size_t n, inferd_mem_account *acct,
                        inferd_tokenizer **out, inferd_error *err) {
    json_error_t jerr;
    json_t *root = json_loadb(json, n, JSON_ALLOW_NUL, &jerr);
    if (!root)
        return inferd_error_set(err, INFERD_EINVAL, "tokenizer.json: line %d: %.120s", jerr.line,
                                jerr.text);
    build b = {.acct = acct, .err = err};
    int rc = parse_root(&b, root);
    json_decref(root);
    if (rc) {
        inferd_tokenizer_parts_deinit(&b.parts);
        return rc;
    }
    return inferd_tokenizer_create(&b.parts, acct, out, err);
}

int inferd_hfjson_load(const char *path, inferd_mem_account *acct, inferd_tokenizer **out,
                       inferd_error *err) {
    FILE *f = fopen(path, "rb");
    if (!f)
        return inferd_error_set(err, INFERD_ENOTFOUND, "cannot open tokenizer.json");
    char *buf = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (len == cap) {
            size_t nc = cap ? cap * 2 : 65536;
            char *nb = inferd_realloc(acct, buf, nc);
            if (!nb) {
                inferd_free(buf);
                fclose(f);
                return inferd_error_set(err, INFERD_EINTERNAL,
                                        "out of memory reading tokenizer.json");
            }
            buf = nb;
            cap = nc;
        }
        size_t got = fread(buf + len, 1, cap - len, f);
        len += got;
        if (got == 0)
            break;
    }
    int ioerr = ferror(f);
    fclose(f);
    int rc = ioerr ? inferd_error_set(err, INFERD_EINTERNAL, "cannot read tokenizer.json")
                   : inferd_hfjson_parse(buf, len, acct, out, err);
    inferd_free(buf);
    return rc;
}
