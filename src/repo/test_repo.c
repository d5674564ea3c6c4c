/* Unit tests for repo/repo: scanning, version policy on disk, states and reasons in the index,
 * lookups, reference counting, and the queue a READY version gets, with a fake loader. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "repo/repo.h"
#include "util/clock.h"

#define assert_contains(haystack, needle)                                                          \
    do {                                                                                           \
        if (!strstr((haystack), (needle)))                                                         \
            fail_msg("\"%s\" does not contain \"%s\"", (haystack), (needle));                      \
    } while (0)

/* ---- fake loader: x INT64 [-1,-1] -> y FP32 [-1,-1] = x + 1 ---- */

static _Atomic int live_models;

typedef struct fake_model {
    inferd_tensor_desc in[2], out[1];
    long version; /* the version folder it was loaded from */
} fake_model;

static int fake_run(void *ctx, const inferd_tensor *in, inferd_tensor *out, int threads,
                    inferd_error *err) {
    (void)ctx;
    (void)threads;
    int64_t n = inferd_tensor_numel(in[0].rank, in[0].dims);
    out[0] = (inferd_tensor){.dtype = INFERD_DTYPE_F32, .rank = in[0].rank};
    memcpy(out[0].dims, in[0].dims, sizeof out[0].dims);
    out[0].nbytes = (size_t)n * 4;
    out[0].data = inferd_malloc(NULL, out[0].nbytes);
    if (!out[0].data)
        return inferd_error_set(err, INFERD_EINTERNAL, "fake model out of memory");
    for (int64_t i = 0; i < n; i++)
        ((float *)out[0].data)[i] = (float)((const int64_t *)in[0].data)[i] + 1;
    return 0;
}

static void fake_destroy(void *ctx) {
    free(ctx);
    atomic_fetch_sub(&live_models, 1);
}

/* A text classifier for pipeline tests: input_ids (and attention_mask unless the model folder
 * is named textids*) INT64 [-1,-1] -> logits FP32 [-1,3] = per row (sum of ids, sum of mask,
 * sequence length seen), so a test can read back how its row was padded. */
static int fake_text_run(void *ctx, const inferd_tensor *in, inferd_tensor *out, int threads,
                         inferd_error *err) {
    const fake_model *m = ctx;
    (void)threads;
    int64_t b = in[0].dims[0], L = in[0].dims[1];
    out[0] = (inferd_tensor){.dtype = INFERD_DTYPE_F32, .rank = 2, .dims = {b, 3}};
    out[0].nbytes = (size_t)b * 12;
    out[0].data = inferd_malloc(NULL, out[0].nbytes);
    if (!out[0].data)
        return inferd_error_set(err, INFERD_EINTERNAL, "fake model out of memory");
    float *y = out[0].data;
    for (int64_t r = 0; r < b; r++) {
        float ids = 0, mask = 0;
        for (int64_t j = 0; j < L; j++) {
            ids += (float)((const int64_t *)in[0].data)[r * L + j];
            mask += m->in[1].name ? (float)((const int64_t *)in[1].data)[r * L + j] : 0;
        }
        y[r * 3] = ids;
        y[r * 3 + 1] = mask;
        y[r * 3 + 2] = (float)L;
    }
    return 0;
}

static int fake_load(void *user, const inferd_repo_load_args *a, inferd_repo_model *out,
                     inferd_error *err) {
    (void)user;
    const char *platform = a->platform, *path = a->path;
    if (strstr(path, "/broken/"))
        return inferd_error_set(err, INFERD_EINVAL, "%s: not an ONNX file", path);
    if (strstr(path, "/declared/")) // reports what it was given
        return inferd_error_set(
            err, INFERD_EINVAL, "got %s %s, %d inputs (%s %s rank %d), %d outputs (%s dim %lld)",
            platform, strrchr(path, '/') + 1, a->n_inputs, a->n_inputs ? a->inputs[0].name : "-",
            a->n_inputs ? inferd_dtype_kserve_name(a->inputs[0].dtype) : "-",
            a->n_inputs ? a->inputs[0].rank : -1, a->n_outputs,
            a->n_outputs ? a->outputs[0].name : "-",
            a->n_outputs ? (long long)a->outputs[0].dims[1] : -1LL);
    if (strstr(path, "/text")) {
        fake_model *m = calloc(1, sizeof *m);
        int with_mask = !strstr(path, "/textids");
        const char *slash = strrchr(path, '/');
        while (slash > path && slash[-1] != '/')
            slash--;
        m->version = strtol(slash, NULL, 10);
        usleep(20000); // long enough for lookups to overlap the loads
        m->in[0] = (inferd_tensor_desc){"input_ids", INFERD_DTYPE_I64, 2, {-1, -1}};
        if (with_mask)
            m->in[1] = (inferd_tensor_desc){"attention_mask", INFERD_DTYPE_I64, 2, {-1, -1}};
        m->out[0] = (inferd_tensor_desc){"logits", INFERD_DTYPE_F32, 2, {-1, 3}};
        atomic_fetch_add(&live_models, 1);
        *out = (inferd_repo_model){.ctx = m,
                                   .platform = platform,
                                   .n_inputs = with_mask ? 2 : 1,
                                   .n_outputs = 1,
                                   .inputs = m->in,
                                   .outputs = m->out,
                                   .run = fake_text_run,
                                   .destroy = fake_destroy};
        return 0;
    }
    fake_model *m = calloc(1, sizeof *m);
    m->in[0] = (inferd_tensor_desc){"x", INFERD_DTYPE_I64, 2, {-1, -1}};
    m->out[0] = (inferd_tensor_desc){"y", INFERD_DTYPE_F32, 2, {-1, -1}};
    if (strstr(path, "/fixed")) { // a model exported with batch 1
        m->in[0].dims[0] = 1;
        m->out[0].dims[0] = 1;
    }
    atomic_fetch_add(&live_models, 1);
    *out = (inferd_repo_model){.ctx = m,
                               .platform = platform,
                               .n_inputs = 1,
                               .n_outputs = 1,
                               .inputs = m->in,
                               .outputs = m->out,
                               .run = fake_run,
                               .destroy = fake_destroy};
    return 0;
}

/* ---- a repository on disk ---- */

static char root[256];

static void put(const char *rel, const char *text) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", root, rel);
    // mkdir -p for every parent
    for (char *p = path + strlen(root) + 1; *p; p++)
        if (*p == '/') {
            *p = 0;
            mkdir(path, 0755);
            *p = '/';
        }
    if (text) {
        FILE *f = fopen(path, "w");
        fputs(text, f);
        fclose(f);
    } else {
        mkdir(path, 0755);
    }
}

static int setup(void **state) {
    (void)state;
    snprintf(root, sizeof root, "/tmp/inferd-test-repo-XXXXXX");
    if (!mkdtemp(root))
        return -1;
    put("alpha/1/model.onnx", "x");
    put("alpha/2/model.onnx", "x");
    put("alpha/notes/readme.txt", "not a version");
    put("badcfg/config.json", "{\"max_batch_size\": 4, \"dynamic_batching\": {\"delay\": 1}}");
    put("badcfg/1/model.onnx", "x");
    put("empty", NULL);
    put("specific/config.json", "{\"version_policy\": {\"specific\": [1, 3]}}");
    put("specific/1/model.onnx", "x");
    put("nofile/1", NULL);
    put("broken/1/model.onnx", "x");
    put("fixed_default/1/model.onnx", "x");
    put("fixed_batched/config.json", "{\"max_batch_size\": 4}");
    put("fixed_batched/1/model.onnx", "x");
    put("all/config.json", "{\"version_policy\": {\"all\": true}, \"max_batch_size\": 2}");
    put("all/1/model.onnx", "x");
    put("all/7/model.onnx", "x");
    put(".hidden/1/model.onnx", "x");
    put("plainfile", "not a model");
    // A TorchScript file (platform detected from its name) with its declared tensors.
    put("declared/config.json",
        "{\"inputs\": [{\"name\": \"ids\", \"datatype\": \"INT64\", \"dims\": [-1, -1]},"
        " {\"name\": \"mask\", \"datatype\": \"INT64\", \"dims\": [-1, -1]}],"
        " \"outputs\": [{\"name\": \"logits\", \"datatype\": \"FP32\", \"dims\": [-1, 7]}]}");
    put("declared/1/model.pt", "x");
    return 0;
}

static int teardown(void **state) {
    (void)state;
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", root);
    return system(cmd);
}

static inferd_repo *open_repo(inferd_sched *sched) {
    inferd_repo_options o = {.dir = root, .sched = sched, .load = fake_load};
    inferd_repo *r = NULL;
    inferd_error err = {0};
    int rc = inferd_repo_create(&o, &r, &err);
    if (rc != 0)
        fail_msg("repo_create: %d %s", rc, err.msg);
    return r;
}

static const inferd_repo_entry *find(const inferd_repo_entry *e, size_t n, const char *name,
                                     long version) {
    for (size_t i = 0; i < n; i++)
        if (!strcmp(e[i].name, name) && e[i].version == version)
            return &e[i];
    fail_msg("no index entry %s version %ld", name, version);
    return NULL;
}

static void test_index_before_and_after_loading(void **state) {
    (void)state;
    inferd_repo *r = open_repo(NULL);
    inferd_error err = {0};
    inferd_repo_entry *e;
    size_t n;
    // Before the loader runs: selected versions are LOADING, broken models already report.
    assert_int_equal(inferd_repo_index(r, &e, &n, &err), 0);
    assert_int_equal(find(e, n, "alpha", 2)->state, INFERD_REPO_STATE_LOADING);
    assert_int_equal(find(e, n, "badcfg", 0)->state, INFERD_REPO_STATE_UNAVAILABLE);
    assert_contains(find(e, n, "badcfg", 0)->reason, "dynamic_batching: unknown key 'delay'");
    assert_contains(find(e, n, "empty", 0)->reason, "no version folders");
    assert_contains(find(e, n, "specific", 3)->reason, "lists version 3 but");
    inferd_free(e);
    assert_in_range(inferd_repo_loading(r), 1, 100);

    assert_int_equal(inferd_repo_start(r, &err), 0);
    assert_int_equal(inferd_repo_wait_loaded(r, 5000, &err), 0);
    assert_int_equal(inferd_repo_loading(r), 0);
    assert_int_equal(inferd_repo_index(r, &e, &n, &err), 0);
    // alpha: latest 1 by default, so version 1 is not served at all.
    for (size_t i = 0; i < n; i++)
        if (!strcmp(e[i].name, "alpha"))
            assert_int_equal(e[i].version, 2);
    assert_int_equal(find(e, n, "alpha", 2)->state, INFERD_REPO_STATE_READY);
    assert_string_equal(find(e, n, "alpha", 2)->reason, "");
    assert_int_equal(find(e, n, "specific", 1)->state, INFERD_REPO_STATE_READY);
    assert_int_equal(find(e, n, "nofile", 1)->state, INFERD_REPO_STATE_UNAVAILABLE);
    assert_contains(find(e, n, "nofile", 1)->reason, "no model file");
    assert_int_equal(find(e, n, "broken", 1)->state, INFERD_REPO_STATE_UNAVAILABLE);
    assert_contains(find(e, n, "broken", 1)->reason, "not an ONNX file");
    assert_int_equal(find(e, n, "fixed_default", 1)->state, INFERD_REPO_STATE_READY);
    assert_int_equal(find(e, n, "fixed_batched", 1)->state, INFERD_REPO_STATE_UNAVAILABLE);
    assert_contains(find(e, n, "fixed_batched", 1)->reason, "needs a dynamic first (batch) dim");
    assert_int_equal(find(e, n, "all", 1)->state, INFERD_REPO_STATE_READY);
    assert_int_equal(find(e, n, "all", 7)->state, INFERD_REPO_STATE_READY);
    // The loader gets the platform detected from model.pt and config.json's declarations.
    assert_int_equal(find(e, n, "declared", 1)->state, INFERD_REPO_STATE_UNAVAILABLE);
    assert_contains(find(e, n, "declared", 1)->reason,
                    "got torchscript model.pt, 2 inputs (ids INT64 rank 2), 1 outputs (logits "
                    "dim 7)");
    for (size_t i = 0; i < n; i++)
        if (e[i].name[0] == '.' || !strcmp(e[i].name, "plainfile"))
            fail_msg("index lists %s", e[i].name);
    // Sorted by name, then version.
    for (size_t i = 1; i < n; i++) {
        int c = strcmp(e[i - 1].name, e[i].name);
        if (c > 0 || (c == 0 && e[i - 1].version >= e[i].version))
            fail_msg("index out of order at %zu: %s %ld, %s %ld", i, e[i - 1].name,
                     e[i - 1].version, e[i].name, e[i].version);
    }
    inferd_free(e);
    inferd_repo_destroy(r);
    assert_int_equal(atomic_load(&live_models), 0);
}

static void test_acquire(void **state) {
    (void)state;
    inferd_repo *r = open_repo(NULL);
    inferd_error err = {0};
    inferd_repo_version *v;
    // Before loading: known but not ready.
    assert_int_equal(inferd_repo_acquire(r, "alpha", 0, &v, &err), INFERD_EUNAVAIL);
    assert_contains(err.msg, "loading");
    assert_int_equal(inferd_repo_start(r, &err), 0);
    assert_int_equal(inferd_repo_wait_loaded(r, 5000, &err), 0);

    assert_int_equal(inferd_repo_acquire(r, "alpha", 0, &v, &err), 0);
    assert_int_equal(inferd_repo_version_number(v), 2);
    assert_string_equal(inferd_repo_version_name(v), "alpha");
    assert_int_equal(inferd_repo_version_max_batch(v), 8);
    assert_int_equal(inferd_repo_version_model(v)->n_inputs, 1);
    assert_string_equal(inferd_repo_version_model(v)->inputs[0].name, "x");
    inferd_repo_release(v);

    assert_int_equal(inferd_repo_acquire(r, "all", 0, &v, &err), 0);
    assert_int_equal(inferd_repo_version_number(v), 7);
    assert_int_equal(inferd_repo_version_max_batch(v), 2);
    inferd_repo_release(v);
    assert_int_equal(inferd_repo_acquire(r, "all", 1, &v, &err), 0);
    assert_int_equal(inferd_repo_version_number(v), 1);
    inferd_repo_release(v);

    assert_int_equal(inferd_repo_acquire(r, "fixed_default", 0, &v, &err), 0);
    assert_int_equal(inferd_repo_version_max_batch(v), 0);
    inferd_repo_release(v);

    assert_int_equal(inferd_repo_acquire(r, "nope", 0, &v, &err), INFERD_ENOTFOUND);
    assert_contains(err.msg, "unknown model 'nope'");
    assert_null(v);
    assert_int_equal(inferd_repo_acquire(r, "alpha", 1, &v, &err), INFERD_ENOTFOUND);
    assert_contains(err.msg, "unknown version 1 of model 'alpha'");
    assert_int_equal(inferd_repo_acquire(r, "badcfg", 0, &v, &err), INFERD_EUNAVAIL);
    assert_contains(err.msg, "unknown key 'delay'");
    assert_int_equal(inferd_repo_acquire(r, "broken", 1, &v, &err), INFERD_EUNAVAIL);
    assert_contains(err.msg, "not an ONNX file");
    assert_int_equal(inferd_repo_acquire(r, "specific", 3, &v, &err), INFERD_EUNAVAIL);

    // A reference outlives the repository.
    assert_int_equal(inferd_repo_acquire(r, "alpha", 0, &v, &err), 0);
    int before = atomic_load(&live_models);
    inferd_repo_destroy(r);
    assert_int_equal(atomic_load(&live_models), 1);
    assert_in_range(before, 1, 100);
    assert_string_equal(inferd_repo_version_name(v), "alpha");
    inferd_repo_release(v);
    assert_int_equal(atomic_load(&live_models), 0);
}

static void done_cb(inferd_sched_request *req, int status, const inferd_error *err) {
    (void)err;
    atomic_store((_Atomic int *)req->user, status == 0 ? 1 : status);
}

static void test_ready_version_runs_through_its_queue(void **state) {
    (void)state;
    inferd_sched *s;
    inferd_error err = {0};
    inferd_sched_options so = {.threads = 2};
    assert_int_equal(inferd_sched_create(&so, &s, &err), 0);
    inferd_repo *r = open_repo(s);
    assert_int_equal(inferd_repo_start(r, &err), 0);
    assert_int_equal(inferd_repo_wait_loaded(r, 5000, &err), 0);

    inferd_repo_version **list;
    size_t n;
    assert_int_equal(inferd_repo_list_ready(r, &list, &n, &err), 0);
    assert_int_equal(n, 5); // alpha:2, all:1, all:7, fixed_default:1, specific:1
    for (size_t i = 0; i < n; i++)
        inferd_repo_release(list[i]);
    inferd_free(list);

    inferd_repo_version *v;
    assert_int_equal(inferd_repo_acquire(r, "alpha", 0, &v, &err), 0);
    int64_t x[3] = {1, 2, 3};
    inferd_tensor in = {
        .dtype = INFERD_DTYPE_I64, .rank = 2, .dims = {1, 3}, .data = x, .nbytes = 24};
    inferd_tensor out[1] = {{0}};
    _Atomic int done = 0;
    inferd_sched_request req = {
        .inputs = &in, .outputs = out, .done = done_cb, .user = (void *)&done};
    assert_int_equal(inferd_sched_submit(inferd_repo_version_queue(v), &req, &err), 0);
    int64_t until = inferd_now_ns() + 5000000000LL;
    while (!atomic_load(&done) && inferd_now_ns() < until)
        usleep(1000);
    assert_int_equal(atomic_load(&done), 1);
    assert_int_equal((int)((float *)out[0].data)[2], 4);
    inferd_free(out[0].data);
    assert_int_equal(atomic_load(&inferd_repo_version_stats(v)->executions), 1);
    inferd_repo_release(v);

    inferd_sched_drain(s);
    inferd_repo_destroy(r); // destroys the queues on the versions' last release
    inferd_sched_destroy(s);
    assert_int_equal(atomic_load(&live_models), 0);
}

/* ---- versions with a pipeline ---- */

#define CHAR_PIPELINE(labels, extra)                                                               \
    "{\"tokenizer\": {\"type\": \"char\", \"vocab\": \"chars.txt\"}, \"max_length\": 16, "         \
    "\"special_tokens\": {\"pad\": 9}, \"inputs\": {\"input_ids\": \"input_ids\"" extra "}, "      \
    "\"output\": \"logits\", \"postprocess\": {\"labels\": \"" labels "\"}}"
#define MASK ", \"attention_mask\": \"attention_mask\""

/* Builds a second repository of text models in its own folder (root is switched to it). */
static void make_text_repo(char *saved) {
    snprintf(saved, 256, "%s", root);
    snprintf(root, sizeof root, "/tmp/inferd-test-text-XXXXXX");
    assert_non_null(mkdtemp(root));
    put("text/config.json", "{\"version_policy\": {\"all\": true}, "
                            "\"dynamic_batching\": {\"max_queue_delay_us\": 300000}}");
    put("text/1/model.onnx", "x");
    put("text/1/chars.txt", "a\nb\nc\n");
    put("text/1/labels.txt", "one\ntwo\nthree\n");
    put("text/1/pipeline.json", CHAR_PIPELINE("labels.txt", MASK));
    // Version 2 ships four labels for a model with three classes: it must not load.
    put("text/2/model.onnx", "x");
    put("text/2/chars.txt", "a\nb\nc\n");
    put("text/2/labels.txt", "w\nx\ny\nz\n");
    put("text/2/pipeline.json", CHAR_PIPELINE("labels.txt", MASK));
    put("text/3/model.onnx", "x");
    put("text/3/chars.txt", "c\nb\na\n");
    put("text/3/labels.txt", "uno\ndos\ntres\n");
    put("text/3/pipeline.json", CHAR_PIPELINE("labels.txt", MASK));
    put("textids/config.json", "{\"dynamic_batching\": {\"max_queue_delay_us\": 300000}}");
    put("textids/1/model.onnx", "x");
    put("textids/1/chars.txt", "a\nb\nc\n");
    put("textids/1/labels.txt", "one\ntwo\nthree\n");
    put("textids/1/pipeline.json", CHAR_PIPELINE("labels.txt", ""));
    put("textbad/1/model.onnx", "x");
    put("textbad/1/pipeline.json", "{\"tokenizer\": {\"type\": \"char\"}, \"colour\": 1}");
}

static void remove_text_repo(const char *saved) {
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", root);
    assert_int_equal(system(cmd), 0);
    snprintf(root, sizeof root, "%s", saved);
}

static void test_pipeline_loads_with_its_version(void **state) {
    (void)state;
    char saved[256];
    make_text_repo(saved);
    inferd_repo *r = open_repo(NULL);
    inferd_error err = {0};
    assert_int_equal(inferd_repo_start(r, &err), 0);
    assert_int_equal(inferd_repo_wait_loaded(r, 5000, &err), 0);
    inferd_repo_entry *e;
    size_t n;
    assert_int_equal(inferd_repo_index(r, &e, &n, &err), 0);
    assert_int_equal(find(e, n, "text", 1)->state, INFERD_REPO_STATE_READY);
    assert_int_equal(find(e, n, "text", 2)->state, INFERD_REPO_STATE_UNAVAILABLE);
    assert_contains(find(e, n, "text", 2)->reason,
                    "pipeline.json: model output \"logits\" has 3 classes but the labels file "
                    "has 4");
    assert_int_equal(find(e, n, "textbad", 1)->state, INFERD_REPO_STATE_UNAVAILABLE);
    assert_contains(find(e, n, "textbad", 1)->reason, "pipeline.json: unknown key \"colour\"");
    inferd_free(e);

    // Each version has its own folder's pipeline; the default is the newest that loaded.
    inferd_repo_version *v;
    char buf[16];
    assert_int_equal(inferd_repo_acquire(r, "text", 0, &v, &err), 0);
    assert_int_equal(inferd_repo_version_number(v), 3);
    assert_string_equal(inferd_pipeline_label_text(inferd_repo_version_pipeline(v), 2, buf),
                        "tres");
    inferd_repo_release(v);
    assert_int_equal(inferd_repo_acquire(r, "text", 1, &v, &err), 0);
    const inferd_pipeline *p = inferd_repo_version_pipeline(v);
    assert_non_null(p);
    assert_int_equal(inferd_pipeline_label_count(p), 3);
    assert_string_equal(inferd_pipeline_label_text(p, 2, buf), "three");
    assert_int_equal(inferd_repo_version_pads(v), 1); // the pipeline feeds a mask
    // The vocabulary and labels are charged to the version.
    assert_in_range(inferd_repo_version_memory(v), 64, INT64_MAX);
    inferd_repo_release(v);
    assert_int_equal(inferd_repo_acquire(r, "text", 2, &v, &err), INFERD_EUNAVAIL);
    assert_contains(err.msg, "has 3 classes but the labels file has 4");

    // Without a mask, padding would change what the model sees: off by default.
    assert_int_equal(inferd_repo_acquire(r, "textids", 0, &v, &err), 0);
    assert_int_equal(inferd_repo_version_pads(v), 0);
    inferd_repo_release(v);
    inferd_repo_destroy(r);
    assert_int_equal(atomic_load(&live_models), 0);
    remove_text_repo(saved);
}

/* Opens a repository of one text model (with a warm-up run) and loads it, with allocation nth
 * and every later one failing for 30 ms (nth 0: none): opening and starting fail with a
 * message, or, once memory is back, the version ends READY, or UNAVAILABLE with a reason (work
 * put off for want of memory is tried again); nothing is left behind (LeakSanitizer, and no
 * live model). Returns the allocations it made. */
static long load_with_failures(long nth) {
    inferd_repo_options o = {.dir = root, .load = fake_load};
    inferd_repo *r = NULL;
    inferd_error err = {0};
    long before = inferd_alloc_count();
    inferd_alloc_fail_after(nth);
    int rc = inferd_repo_create(&o, &r, &err);
    if (rc == 0 && (rc = inferd_repo_start(r, &err)) == 0)
        inferd_repo_wait_loaded(r, 30, &err);
    inferd_alloc_fail_after(0);
    if (rc != 0 && (!err.msg[0] || nth == 0))
        fail_msg("allocation %ld: error %d: %s", nth, rc, err.msg);
    if (rc == 0 && inferd_repo_wait_loaded(r, 5000, &err) != 0)
        fail_msg("allocation %ld: memory is back, and still %s", nth, err.msg);
    long made = inferd_alloc_count() - before;
    inferd_repo_entry *e;
    size_t n;
    if (r && inferd_repo_index(r, &e, &n, &err) == 0) {
        for (size_t i = 0; i < n; i++)
            if ((e[i].state != INFERD_REPO_STATE_READY && !e[i].reason[0]) ||
                (nth == 0 && e[i].state != INFERD_REPO_STATE_READY))
                fail_msg("allocation %ld: %s %ld is %d: %s", nth, e[i].name, e[i].version,
                         (int)e[i].state, e[i].reason);
        inferd_free(e);
    }
    inferd_repo_destroy(r);
    assert_int_equal(atomic_load(&live_models), 0);
    return made;
}

static void test_out_of_memory_while_loading_leaves_a_reason(void **state) {
    (void)state;
    char saved[256];
    snprintf(saved, sizeof saved, "%s", root);
    snprintf(root, sizeof root, "/tmp/inferd-test-oom-XXXXXX");
    assert_non_null(mkdtemp(root));
    put("text/config.json", "{\"warmup\": {\"text\": \"abc\"}}");
    put("text/1/model.onnx", "x");
    put("text/1/chars.txt", "a\nb\nc\n");
    put("text/1/labels.txt", "one\ntwo\nthree\n");
    put("text/1/pipeline.json", CHAR_PIPELINE("labels.txt", MASK));
    long total = load_with_failures(0);
    for (long nth = 1; nth <= total; nth++)
        load_with_failures(nth);
    remove_text_repo(saved);
}

/* Looks up the default version of "text" over and over while the loader runs. */
typedef struct lookups {
    inferd_repo *r;
    _Atomic int stop;
    _Atomic int seen, mismatched, went_back;
} lookups;

static void *lookup_loop(void *arg) {
    lookups *l = arg;
    long last = 0;
    while (!atomic_load(&l->stop)) {
        inferd_repo_version *v;
        inferd_error err;
        if (inferd_repo_acquire(l->r, "text", 0, &v, &err) != 0)
            continue;
        long n = inferd_repo_version_number(v);
        const fake_model *m = inferd_repo_version_model(v)->ctx;
        char buf[16];
        const char *label = inferd_pipeline_label_text(inferd_repo_version_pipeline(v), 0, buf);
        // The model and the pipeline must come from the same folder: 1 -> "one", 3 -> "uno".
        if (m->version != n || strcmp(label, n == 3 ? "uno" : "one") != 0)
            atomic_fetch_add(&l->mismatched, 1);
        if (n < last)
            atomic_fetch_add(&l->went_back, 1);
        last = n;
        atomic_fetch_add(&l->seen, 1);
        inferd_repo_release(v);
    }
    return NULL;
}

static void test_default_version_switches_model_and_pipeline_together(void **state) {
    (void)state;
    char saved[256];
    make_text_repo(saved);
    inferd_repo *r = open_repo(NULL);
    inferd_error err = {0};
    lookups l = {.r = r};
    pthread_t t[2];
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&t[i], NULL, lookup_loop, &l), 0);
    assert_int_equal(inferd_repo_start(r, &err), 0);
    assert_int_equal(inferd_repo_wait_loaded(r, 5000, &err), 0);
    usleep(10000);
    atomic_store(&l.stop, 1);
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    assert_in_range(atomic_load(&l.seen), 1, INT32_MAX);
    assert_int_equal(atomic_load(&l.mismatched), 0);
    assert_int_equal(atomic_load(&l.went_back), 0);
    inferd_repo_destroy(r);
    remove_text_repo(saved);
}

typedef struct text_job {
    int64_t ids[8], mask[8];
    inferd_tensor in[2], out[1];
    inferd_sched_request req;
    _Atomic int done;
} text_job;

static void text_job_init(text_job *j, int len) {
    memset(j, 0, sizeof *j);
    for (int i = 0; i < len; i++) {
        j->ids[i] = i + 1;
        j->mask[i] = 1;
    }
    j->in[0] = (inferd_tensor){.dtype = INFERD_DTYPE_I64, .rank = 2, .dims = {1, len}};
    j->in[0].data = j->ids;
    j->in[0].nbytes = (size_t)len * 8;
    j->in[1] = j->in[0];
    j->in[1].data = j->mask;
    j->req = (inferd_sched_request){
        .inputs = j->in, .outputs = j->out, .done = done_cb, .user = (void *)&j->done};
}

static void wait_job(text_job *j) {
    int64_t until = inferd_now_ns() + 5000000000LL;
    while (!atomic_load(&j->done) && inferd_now_ns() < until)
        usleep(1000);
    assert_int_equal(atomic_load(&j->done), 1);
}

static void test_text_queue_pads_with_the_pad_id(void **state) {
    (void)state;
    char saved[256];
    make_text_repo(saved);
    inferd_sched *s;
    inferd_error err = {0};
    inferd_sched_options so = {.threads = 2};
    assert_int_equal(inferd_sched_create(&so, &s, &err), 0);
    inferd_repo *r = open_repo(s);
    assert_int_equal(inferd_repo_start(r, &err), 0);
    assert_int_equal(inferd_repo_wait_loaded(r, 5000, &err), 0);

    // Lengths 3 and 5 share one padded batch; the short row's ids are padded with 9.
    inferd_repo_version *v;
    assert_int_equal(inferd_repo_acquire(r, "text", 1, &v, &err), 0);
    text_job a, b;
    text_job_init(&a, 3);
    text_job_init(&b, 5);
    assert_int_equal(inferd_sched_submit(inferd_repo_version_queue(v), &a.req, &err), 0);
    assert_int_equal(inferd_sched_submit(inferd_repo_version_queue(v), &b.req, &err), 0);
    wait_job(&a);
    wait_job(&b);
    assert_int_equal(a.req.batch_size, 2);
    const float *ya = a.out[0].data;
    assert_int_equal((int)ya[0], 1 + 2 + 3 + 9 + 9);
    assert_int_equal((int)ya[1], 3); // the mask is padded with zeros
    assert_int_equal((int)ya[2], 5);
    inferd_free(a.out[0].data);
    inferd_free(b.out[0].data);
    inferd_repo_release(v);

    // Without padding, different lengths run in batches of their own.
    assert_int_equal(inferd_repo_acquire(r, "textids", 1, &v, &err), 0);
    text_job_init(&a, 3);
    text_job_init(&b, 5);
    assert_int_equal(inferd_sched_submit(inferd_repo_version_queue(v), &a.req, &err), 0);
    assert_int_equal(inferd_sched_submit(inferd_repo_version_queue(v), &b.req, &err), 0);
    wait_job(&a);
    wait_job(&b);
    assert_int_equal(a.req.batch_size, 1);
    assert_int_equal(b.req.batch_size, 1);
    inferd_free(a.out[0].data);
    inferd_free(b.out[0].data);
    inferd_repo_release(v);

    inferd_sched_drain(s);
    inferd_repo_destroy(r);
    inferd_sched_destroy(s);
    assert_int_equal(atomic_load(&live_models), 0);
    remove_text_repo(saved);
}

/* Model and version folders may be symlinks inside the repository, not out of it. */
/* A text model version folder with a pipeline (for the fake loader's "text" models). */
static void put_text_version(const char *model, int version) {
    char rel[256];
    snprintf(rel, sizeof rel, "%s/%d/model.onnx", model, version);
    put(rel, "x");
    snprintf(rel, sizeof rel, "%s/%d/chars.txt", model, version);
    put(rel, "a\nb\nc\n");
    snprintf(rel, sizeof rel, "%s/%d/labels.txt", model, version);
    put(rel, "one\ntwo\nthree\n");
    snprintf(rel, sizeof rel, "%s/%d/pipeline.json", model, version);
    put(rel, CHAR_PIPELINE("labels.txt", MASK));
}

/* Which model serves path ("" for none). */
static const char *route_model(inferd_repo *r, const char *path, char *buf) {
    inferd_route rt;
    buf[0] = 0;
    if (inferd_repo_route(r, path, &rt)) {
        snprintf(buf, 128, "%s", rt.model);
        inferd_route_stats_release(rt.stats);
    }
    return buf;
}

static void test_routes_from_config(void **state) {
    (void)state;
    char saved[256], buf[128];
    snprintf(saved, sizeof saved, "%s", root);
    snprintf(root, sizeof root, "/tmp/inferd-test-routes-XXXXXX");
    assert_non_null(mkdtemp(root));
    put_text_version("texta", 1);
    put("texta/config.json", "{\"routes\": [{\"path\": \"/a\", \"input\": \"text\"},"
                             " {\"path\": \"/shared\", \"input\": \"text\"}]}");
    put_text_version("textb", 1);
    put("textb/config.json", "{\"routes\": [{\"path\": \"/shared\", \"input\": \"q\"},"
                             " {\"path\": \"/b\", \"input\": \"q\", \"batch\": true}]}");
    put("plain/1/model.onnx", "x"); // no pipeline.json
    put("plain/config.json", "{\"routes\": [{\"path\": \"/plain\", \"input\": \"text\"}]}");
    put_text_version("textfix", 1);
    put("textfix/config.json", "{\"routes\": [{\"path\": \"/fix1\", \"input\": \"t\", "
                               "\"version\": 1}, {\"path\": \"/fix9\", \"input\": \"t\", "
                               "\"version\": 9}]}");
    inferd_repo_options o = {.dir = root, .load = fake_load, .poll_interval_ms = 20};
    inferd_repo *r = NULL;
    inferd_error err = {0};
    assert_int_equal(inferd_repo_create(&o, &r, &err), 0);
    // The table exists from create on, before anything loads.
    assert_string_equal(route_model(r, "/a", buf), "texta");
    assert_string_equal(route_model(r, "/shared", buf), "texta"); // the first by name wins
    assert_string_equal(route_model(r, "/b", buf), "textb");
    assert_string_equal(route_model(r, "/plain", buf), ""); // no pipeline
    assert_string_equal(route_model(r, "/fix1", buf), "textfix");
    assert_string_equal(route_model(r, "/fix9", buf), ""); // no such version
    assert_string_equal(route_model(r, "/nope", buf), "");
    inferd_route rt;
    assert_int_equal(inferd_repo_route(r, "/b", &rt), 1);
    assert_string_equal(rt.spec.input, "q");
    assert_int_equal(rt.spec.batch, 1);
    inferd_route_stats_release(rt.stats);

    assert_int_equal(inferd_repo_start(r, &err), 0);
    assert_int_equal(inferd_repo_wait_loaded(r, 5000, &err), 0);
    inferd_repo_entry *e;
    size_t n;
    assert_int_equal(inferd_repo_index(r, &e, &n, &err), 0);
    // The refusals are the reasons of the models' ready versions, naming both models.
    assert_int_equal(find(e, n, "textb", 1)->state, INFERD_REPO_STATE_READY);
    assert_contains(find(e, n, "textb", 1)->reason,
                    "route /shared refused: model 'texta' already serves this path");
    assert_contains(find(e, n, "plain", 1)->reason,
                    "route /plain refused: model 'plain' version 1 has no pipeline.json");
    assert_contains(find(e, n, "textfix", 1)->reason,
                    "route /fix9 refused: version 9 is not served");
    assert_string_equal(find(e, n, "texta", 1)->reason, "");
    inferd_free(e);

    // Routes follow config.json: texta gives up /shared, textb takes it on a later poll; a new
    // model with routes appears; a route that clashes with a served one never takes it over.
    put("texta/config.json", "{\"routes\": [{\"path\": \"/a2\", \"input\": \"text\"}]}");
    put_text_version("textc", 1);
    put("textc/config.json", "{\"routes\": [{\"path\": \"/b\", \"input\": \"x\"}, "
                             "{\"path\": \"/c\", \"input\": \"x\"}]}");
    int64_t until = inferd_now_ns() + 5000000000LL;
    while (inferd_now_ns() < until && strcmp(route_model(r, "/c", buf), "textc") != 0)
        usleep(10000);
    assert_string_equal(route_model(r, "/c", buf), "textc");
    assert_string_equal(route_model(r, "/a", buf), "");
    assert_string_equal(route_model(r, "/a2", buf), "texta");
    assert_string_equal(route_model(r, "/shared", buf), "textb");
    assert_string_equal(route_model(r, "/b", buf), "textb"); // textc's claim is refused
    // A model folder that goes away takes its routes along.
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf %s/textb", root);
    assert_int_equal(system(cmd), 0);
    until = inferd_now_ns() + 5000000000LL;
    while (inferd_now_ns() < until && route_model(r, "/shared", buf)[0])
        usleep(10000);
    assert_string_equal(route_model(r, "/shared", buf), "");
    inferd_repo_destroy(r);
    remove_text_repo(saved);
}

static void test_readiness_waits_for_pinned_models(void **state) {
    (void)state;
    char saved[256], why[200];
    snprintf(saved, sizeof saved, "%s", root);
    snprintf(root, sizeof root, "/tmp/inferd-test-ready-XXXXXX");
    assert_non_null(mkdtemp(root));
    put_text_version("textpinned", 1);
    put("textpinned/config.json", "{\"pinned\": true}");
    put_text_version("textother", 1);
    put("broken/1/model.onnx", "x"); // never loads
    inferd_repo_options o = {.dir = root, .load = fake_load};
    inferd_repo *r = NULL;
    inferd_error err = {0};
    assert_int_equal(inferd_repo_create(&o, &r, &err), 0);
    assert_int_equal(inferd_repo_ready(r, 0, why, sizeof why), 0);
    assert_contains(why, "1 pinned model(s) without their default version loaded");
    assert_int_equal(inferd_repo_ready(r, 1, why, sizeof why), 0);
    assert_contains(why, "3 model(s) without their default version loaded");
    assert_int_equal(inferd_repo_start(r, &err), 0);
    assert_int_equal(inferd_repo_wait_loaded(r, 5000, &err), 0);
    why[0] = 0;
    assert_int_equal(inferd_repo_ready(r, 0, why, sizeof why), 1);
    assert_string_equal(why, "");
    // Strict readiness waits for every model: the broken one keeps it false.
    assert_int_equal(inferd_repo_ready(r, 1, why, sizeof why), 0);
    assert_contains(why, "1 model(s) without their default version loaded");
    // A model unloaded by request is not waited for.
    assert_int_equal(inferd_repo_request_unload(r, "broken", &err), 0);
    assert_int_equal(inferd_repo_ready(r, 1, why, sizeof why), 1);
    // Unloading the pinned model by request does not take the server out of service either.
    assert_int_equal(inferd_repo_request_unload(r, "textpinned", &err), 0);
    assert_int_equal(inferd_repo_ready(r, 0, why, sizeof why), 1);
    inferd_repo_destroy(r);
    remove_text_repo(saved);
}

static void test_symlinks_leaving_the_repository_are_refused(void **state) {
    (void)state;
    char outside[64], repo[64], path[256], target[256];
    snprintf(outside, sizeof outside, "/tmp/inferd-test-outside-XXXXXX");
    snprintf(repo, sizeof repo, "/tmp/inferd-test-links-XXXXXX");
    assert_non_null(mkdtemp(outside));
    assert_non_null(mkdtemp(repo));
    char saved[256];
    snprintf(saved, sizeof saved, "%s", root);
    snprintf(root, sizeof root, "%s", outside); // put() writes under root
    put("model/1/model.onnx", "x");
    put("version/model.onnx", "x");
    snprintf(root, sizeof root, "%s", repo);
    put("store/3/model.onnx", "x");
    put("mixed/1/model.onnx", "x");
    snprintf(path, sizeof path, "%s/escaped", repo); // a model folder leading outside
    snprintf(target, sizeof target, "%s/model", outside);
    assert_int_equal(symlink(target, path), 0);
    snprintf(path, sizeof path, "%s/mixed/2", repo); // a version folder leading outside
    snprintf(target, sizeof target, "%s/version", outside);
    assert_int_equal(symlink(target, path), 0);
    snprintf(path, sizeof path, "%s/linked", repo); // a model folder linked inside: fine
    assert_int_equal(symlink("store", path), 0);

    inferd_repo_options o = {.dir = repo, .load = fake_load};
    inferd_repo *r = NULL;
    inferd_error err = {0};
    assert_int_equal(inferd_repo_create(&o, &r, &err), 0);
    assert_int_equal(inferd_repo_start(r, &err), 0);
    assert_int_equal(inferd_repo_wait_loaded(r, 5000, &err), 0);
    inferd_repo_entry *e;
    size_t n;
    assert_int_equal(inferd_repo_index(r, &e, &n, &err), 0);
    assert_int_equal(find(e, n, "escaped", 0)->state, INFERD_REPO_STATE_UNAVAILABLE);
    assert_contains(find(e, n, "escaped", 0)->reason, "symlink leading outside the repository");
    // The outside version 2 does not exist for the server: version 1 is the latest.
    assert_int_equal(find(e, n, "mixed", 1)->state, INFERD_REPO_STATE_READY);
    for (size_t i = 0; i < n; i++)
        if (!strcmp(e[i].name, "mixed") && e[i].version == 2)
            fail_msg("mixed version 2 (outside) is listed as %d", e[i].state);
    assert_int_equal(find(e, n, "linked", 3)->state, INFERD_REPO_STATE_READY);
    inferd_free(e);
    inferd_repo_version *v;
    assert_int_equal(inferd_repo_acquire(r, "escaped", 0, &v, &err), INFERD_EUNAVAIL);
    inferd_repo_destroy(r);

    // A version_policy naming the outside version gets it listed with the reason.
    snprintf(root, sizeof root, "%s", repo);
    put("mixed/config.json", "{\"version_policy\": {\"specific\": [1, 2]}}");
    assert_int_equal(inferd_repo_create(&o, &r, &err), 0);
    assert_int_equal(inferd_repo_index(r, &e, &n, &err), 0);
    assert_int_equal(find(e, n, "mixed", 2)->state, INFERD_REPO_STATE_UNAVAILABLE);
    assert_contains(find(e, n, "mixed", 2)->reason, "symlink leading outside the repository");
    inferd_free(e);
    inferd_repo_destroy(r);
    assert_int_equal(atomic_load(&live_models), 0);

    snprintf(root, sizeof root, "%s", saved);
    char cmd[200];
    snprintf(cmd, sizeof cmd, "rm -rf %s %s", repo, outside);
    assert_int_equal(system(cmd), 0);
}

static void test_missing_repository(void **state) {
    (void)state;
    inferd_repo_options o = {.dir = "/nonexistent/models", .load = fake_load};
    inferd_repo *r = (inferd_repo *)1;
    inferd_error err = {0};
    assert_int_equal(inferd_repo_create(&o, &r, &err), INFERD_ENOTFOUND);
    assert_null(r);
    assert_contains(err.msg, "/nonexistent/models");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_index_before_and_after_loading),
        cmocka_unit_test(test_acquire),
        cmocka_unit_test(test_ready_version_runs_through_its_queue),
        cmocka_unit_test(test_pipeline_loads_with_its_version),
        cmocka_unit_test(test_out_of_memory_while_loading_leaves_a_reason),
        cmocka_unit_test(test_default_version_switches_model_and_pipeline_together),
        cmocka_unit_test(test_text_queue_pads_with_the_pad_id),
        cmocka_unit_test(test_routes_from_config),
        cmocka_unit_test(test_readiness_waits_for_pinned_models),
        cmocka_unit_test(test_symlinks_leaving_the_repository_are_refused),
        cmocka_unit_test(test_missing_repository),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
