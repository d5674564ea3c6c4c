#include "api/metrics.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "util/alloc.h"
#include "util/cgroup.h"
#include "util/hist.h"

static const double duration_le[] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                     0.05,   0.1,     0.25,   0.5,   1,      2.5,   5,    10};
static const int batch_le[] = {1, 2, 4, 8, 16, 32, 64, 128, 256};
/* Tokenizing a text takes microseconds, so its buckets start lower than the request ones. */
static const double tokenize_le[] = {0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005,
                                     0.001,   0.0025,   0.005,   0.01,   0.025,   0.05,
                                     0.1,     0.25,     0.5,     1};

#define N_OF(a) (sizeof(a) / sizeof((a)[0]))

static void labels(inferd_strbuf *b, const inferd_repo_version *v) {
    inferd_strbuf_appends(b, "{model=\"");
    inferd_strbuf_append_label(b, inferd_repo_version_name(v));
    inferd_strbuf_appendf(b, "\",version=\"%ld\"", inferd_repo_version_number(v));
}

static void header(inferd_strbuf *b, const char *name, const char *type, const char *help) {
    inferd_strbuf_appendf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

typedef enum field {
    F_SUCCESS,
    F_FAILURE,
    F_EXECUTIONS,
    F_INFERENCES,
    F_PENDING,
    F_MEMORY,
    F_REQUEST_US,
    F_QUEUE_US,
    F_COMPUTE_US,
    F_TEXT_SUCCESS,
    F_TEXT_FAILURE,
    F_TEXT_ITEMS,
    F_TEXT_TRUNCATED,
} field;

static long long value_of(inferd_repo_version *v, field f) {
    inferd_stats *s = inferd_repo_version_stats(v);
    switch (f) {
    case F_SUCCESS:
        return (long long)atomic_load_explicit(&s->success, memory_order_relaxed);
    case F_FAILURE:
        return (long long)atomic_load_explicit(&s->failure, memory_order_relaxed);
    case F_EXECUTIONS:
        return (long long)atomic_load_explicit(&s->executions, memory_order_relaxed);
    case F_INFERENCES:
        return (long long)atomic_load_explicit(&s->inferences, memory_order_relaxed);
    case F_PENDING:
        return (long long)atomic_load_explicit(&s->pending, memory_order_relaxed);
    case F_MEMORY:
        return (long long)inferd_repo_version_memory(v);
    case F_REQUEST_US:
        return (long long)(inferd_hist_sum(s->request_ns) / 1000);
    case F_QUEUE_US:
        return (long long)(inferd_hist_sum(s->queue_ns) / 1000);
    case F_TEXT_SUCCESS:
        return (long long)atomic_load_explicit(&s->text_success, memory_order_relaxed);
    case F_TEXT_FAILURE:
        return (long long)atomic_load_explicit(&s->text_failure, memory_order_relaxed);
    case F_TEXT_ITEMS:
        return (long long)atomic_load_explicit(&s->text_items, memory_order_relaxed);
    case F_TEXT_TRUNCATED:
        return (long long)atomic_load_explicit(&s->text_truncated, memory_order_relaxed);
    case F_COMPUTE_US:
    default:
        return (long long)(inferd_hist_sum(s->compute_ns) / 1000);
    }
}

static void scalar_family(inferd_strbuf *b, inferd_repo_version **vs, size_t n, const char *name,
                          const char *type, const char *help, field f) {
    header(b, name, type, help);
    for (size_t i = 0; i < n; i++) {
        inferd_strbuf_appends(b, name);
        labels(b, vs[i]);
        inferd_strbuf_appendf(b, "} %lld\n", value_of(vs[i], f));
    }
}

static void duration_family(inferd_strbuf *b, inferd_repo_version **vs, size_t n, const char *name,
                            const char *help, int which) {
    header(b, name, "histogram", help);
    const double *le = which == 3 ? tokenize_le : duration_le;
    size_t n_le = which == 3 ? N_OF(tokenize_le) : N_OF(duration_le);
    for (size_t i = 0; i < n; i++) {
        inferd_stats *s = inferd_repo_version_stats(vs[i]);
        const inferd_hist *h = which == 0   ? s->request_ns
                               : which == 1 ? s->queue_ns
                               : which == 2 ? s->compute_ns
                                            : s->tokenize_ns;
        // Read the total first: buckets recorded meanwhile can only make them larger, and the
        // +Inf bucket is written as the count so the series stays monotonic.
        uint64_t count = inferd_hist_count(h);
        for (size_t k = 0; k < n_le; k++) {
            uint64_t c = inferd_hist_count_le(h, (int64_t)(le[k] * 1e9 + 0.5));
            inferd_strbuf_appendf(b, "%s_bucket", name);
            labels(b, vs[i]);
            inferd_strbuf_appendf(b, ",le=\"%g\"} %llu\n", le[k],
                                  (unsigned long long)(c < count ? c : count));
        }
        inferd_strbuf_appendf(b, "%s_bucket", name);
        labels(b, vs[i]);
        inferd_strbuf_appendf(b, ",le=\"+Inf\"} %llu\n", (unsigned long long)count);
        inferd_strbuf_appendf(b, "%s_sum", name);
        labels(b, vs[i]);
        inferd_strbuf_appendf(b, "} %.9f\n", (double)inferd_hist_sum(h) / 1e9);
        inferd_strbuf_appendf(b, "%s_count", name);
        labels(b, vs[i]);
        inferd_strbuf_appendf(b, "} %llu\n", (unsigned long long)count);
    }
}

static void batch_family(inferd_strbuf *b, inferd_repo_version **vs, size_t n) {
    const char *name = "inferd_batch_size";
    header(b, name, "histogram", "Rows per executed batch.");
    for (size_t i = 0; i < n; i++) {
        const inferd_hist *h = inferd_repo_version_stats(vs[i])->batch_size;
        uint64_t count = inferd_hist_count(h);
        for (size_t k = 0; k < N_OF(batch_le); k++) {
            uint64_t c = inferd_hist_count_le(h, batch_le[k]);
            inferd_strbuf_appendf(b, "%s_bucket", name);
            labels(b, vs[i]);
            inferd_strbuf_appendf(b, ",le=\"%d\"} %llu\n", batch_le[k],
                                  (unsigned long long)(c < count ? c : count));
        }
        inferd_strbuf_appendf(b, "%s_bucket", name);
        labels(b, vs[i]);
        inferd_strbuf_appendf(b, ",le=\"+Inf\"} %llu\n", (unsigned long long)count);
        inferd_strbuf_appendf(b, "%s_sum", name);
        labels(b, vs[i]);
        inferd_strbuf_appendf(b, "} %lld\n", (long long)inferd_hist_sum(h));
        inferd_strbuf_appendf(b, "%s_count", name);
        labels(b, vs[i]);
        inferd_strbuf_appendf(b, "} %llu\n", (unsigned long long)count);
    }
}

/* Load durations run from a tiny model mapped from its cache (a millisecond) to a large one
 * read from ONNX (seconds). */
static const double load_le[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                 0.25,  0.5,    1,     2.5,  5,     10,   30};

/* Residency: per version from the index (every known version, resident or not), then the
 * totals. */
static void residency_families(inferd_strbuf *b, inferd_repo *repo) {
    inferd_repo_entry *e = NULL;
    size_t n = 0;
    inferd_error err = {0};
    if (inferd_repo_index(repo, &e, &n, &err) == 0) {
        static const struct {
            const char *name, *type, *help;
        } fams[] = {
            {"inferd_model_resident_bytes", "gauge",
             "Bytes the version holds in memory now (every copy: serving, loading, draining); 0 "
             "when not loaded."},
            {"inferd_model_loads_total", "counter", "Successful loads of the version."},
            {"inferd_model_load_failures_total", "counter",
             "Loads of the version that failed (or were refused)."},
            {"inferd_model_evictions_total", "counter",
             "Times the version was unloaded to make room for another."},
        };
        for (size_t f = 0; f < N_OF(fams); f++) {
            header(b, fams[f].name, fams[f].type, fams[f].help);
            for (size_t i = 0; i < n; i++) {
                if (e[i].version <= 0)
                    continue;
                long long v = f == 0   ? (long long)e[i].resident_bytes
                              : f == 1 ? (long long)e[i].loads
                              : f == 2 ? (long long)e[i].load_failures
                                       : (long long)e[i].evictions;
                inferd_strbuf_appendf(b, "%s{model=\"", fams[f].name);
                inferd_strbuf_append_label(b, e[i].name);
                inferd_strbuf_appendf(b, "\",version=\"%ld\"} %lld\n", e[i].version, v);
            }
        }
        inferd_free(e);
    }
    inferd_repo_residency st;
    inferd_repo_residency_stats(repo, &st);
    header(b, "inferd_memory_budget_bytes", "gauge",
           "The memory budget of loaded versions (--memory-budget); 0: none.");
    inferd_strbuf_appendf(b, "inferd_memory_budget_bytes %lld\n", (long long)st.budget);
    header(b, "inferd_memory_used_bytes", "gauge",
           "Bytes held by every loaded version, the sum the budget bounds.");
    inferd_strbuf_appendf(b, "inferd_memory_used_bytes %lld\n", (long long)st.used);
    header(b, "inferd_loaded_versions", "gauge", "Versions READY in memory.");
    inferd_strbuf_appendf(b, "inferd_loaded_versions %d\n", st.loaded);
    header(b, "inferd_max_loaded_versions", "gauge", "--max-loaded; 0: no limit.");
    inferd_strbuf_appendf(b, "inferd_max_loaded_versions %d\n", st.max_loaded);
    header(b, "inferd_parked_requests", "gauge", "Requests waiting for their version to load.");
    inferd_strbuf_appendf(b, "inferd_parked_requests %d\n", st.parked);
    static const struct {
        const char *name, *help;
    } counters[] = {
        {"inferd_loads_total", "Successful version loads (start-up, on demand, reloads)."},
        {"inferd_load_failures_total", "Version loads that failed or were refused."},
        {"inferd_evictions_total", "Versions unloaded to make room (least recently used)."},
        {"inferd_unloads_total", "Versions unloaded for any reason (evictions included)."},
        {"inferd_version_switches_total",
         "Times a newly loaded version became its model's default."},
        {"inferd_load_cache_hits_total", "Loads that mapped the packed weights from the cache."},
        {"inferd_load_cache_misses_total", "Loads that read ONNX and (re)wrote the cache."},
        {"inferd_heap_trims_total",
         "Times freed heap pages were handed back after unloads (at most once a second)."},
    };
    uint64_t values[] = {st.loads,    st.load_failures, st.evictions,    st.unloads,
                         st.switches, st.cache_hits,    st.cache_misses, st.heap_trims};
    for (size_t i = 0; i < N_OF(counters); i++) {
        header(b, counters[i].name, "counter", counters[i].help);
        inferd_strbuf_appendf(b, "%s %llu\n", counters[i].name, (unsigned long long)values[i]);
    }
    const char *name = "inferd_model_load_duration_seconds";
    header(b, name, "histogram", "Time to load a version (and warm it up), on a loader thread.");
    uint64_t count = inferd_hist_count(st.load_ns);
    for (size_t k = 0; k < N_OF(load_le); k++) {
        uint64_t c = inferd_hist_count_le(st.load_ns, (int64_t)(load_le[k] * 1e9 + 0.5));
        inferd_strbuf_appendf(b, "%s_bucket{le=\"%g\"} %llu\n", name, load_le[k],
                              (unsigned long long)(c < count ? c : count));
    }
    inferd_strbuf_appendf(b, "%s_bucket{le=\"+Inf\"} %llu\n", name, (unsigned long long)count);
    inferd_strbuf_appendf(b, "%s_sum %.9f\n", name, (double)inferd_hist_sum(st.load_ns) / 1e9);
    inferd_strbuf_appendf(b, "%s_count %llu\n", name, (unsigned long long)count);
}

/* CPU seconds and thread count from /proc/self/stat, resident bytes from /proc/self/statm. */
static void process_family(inferd_strbuf *b) {
    double cpu = 0;
    long threads = 0;
    long long rss = 0;
    char buf[1024];
    FILE *f = fopen("/proc/self/stat", "r");
    if (f) {
        size_t n = fread(buf, 1, sizeof buf - 1, f);
        buf[n] = 0;
        fclose(f);
        // Fields after the command name, which is in parentheses and may hold spaces.
        char *p = strrchr(buf, ')');
        unsigned long utime = 0, stime = 0;
        if (p &&
            sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu %*d %*d %*d %*d %ld",
                   &utime, &stime, &threads) == 3)
            cpu = (double)(utime + stime) / (double)sysconf(_SC_CLK_TCK);
    }
    f = fopen("/proc/self/statm", "r");
    if (f) {
        long long pages;
        if (fscanf(f, "%*d %lld", &pages) == 1)
            rss = pages * sysconf(_SC_PAGESIZE);
        fclose(f);
    }
    header(b, "process_cpu_seconds_total", "counter", "User and system CPU time spent.");
    inferd_strbuf_appendf(b, "process_cpu_seconds_total %.2f\n", cpu);
    header(b, "process_resident_memory_bytes", "gauge", "Resident memory size.");
    inferd_strbuf_appendf(b, "process_resident_memory_bytes %lld\n", rss);
    header(b, "process_threads", "gauge", "Threads in the process.");
    inferd_strbuf_appendf(b, "process_threads %ld\n", threads);
    header(b, "inferd_memory_bytes", "gauge", "Bytes allocated through inferd's counters.");
    inferd_strbuf_appendf(b, "inferd_memory_bytes %lld\n", (long long)inferd_mem_total_bytes());
}

/* Per-team routes: requests through each route, by outcome. The same requests are also in
 * their model version's request and text request counters. */
static void route_families(inferd_strbuf *b, inferd_repo *repo) {
    inferd_route *rs = NULL;
    size_t n = 0;
    inferd_error err = {0};
    if (inferd_repo_routes(repo, &rs, &n, &err) < 0)
        return;
    header(b, "inferd_route_requests_total", "counter",
           "Requests through a per-team route (config.json routes), by outcome.");
    for (size_t i = 0; i < n; i++) {
        for (int ok = 1; ok >= 0; ok--) {
            inferd_strbuf_appends(b, "inferd_route_requests_total{route=\"");
            inferd_strbuf_append_label(b, rs[i].spec.path);
            inferd_strbuf_appends(b, "\",model=\"");
            inferd_strbuf_append_label(b, rs[i].model);
            inferd_strbuf_appendf(
                b, "\",outcome=\"%s\"} %llu\n", ok ? "success" : "failure",
                (unsigned long long)atomic_load_explicit(
                    ok ? &rs[i].stats->success : &rs[i].stats->failure, memory_order_relaxed));
        }
        inferd_route_stats_release(rs[i].stats);
    }
    inferd_free(rs);
}

static void stat_pair(inferd_strbuf *b, const char *name, uint64_t count, int64_t ns, int first) {
    inferd_strbuf_appendf(b, "%s\"%s\":{\"count\":%llu,\"ns\":%lld}", first ? "" : ",", name,
                          (unsigned long long)count, (long long)ns);
}

static void hist_pair(inferd_strbuf *b, const char *name, const inferd_hist *h) {
    stat_pair(b, name, inferd_hist_count(h), inferd_hist_sum(h), 0);
}

int inferd_metrics_format_stats(inferd_repo *repo, const char *model, long version,
                                inferd_strbuf *b, inferd_error *err) {
    inferd_repo_version **vs = NULL;
    size_t n = 0;
    int rc = inferd_repo_list_ready(repo, &vs, &n, err);
    if (rc < 0)
        return rc;
    inferd_strbuf_appends(b, "{\"model_stats\":[");
    int listed = 0;
    for (size_t i = 0; i < n; i++) {
        const inferd_repo_version *v = vs[i];
        if ((model && strcmp(inferd_repo_version_name(v), model)) ||
            (version > 0 && inferd_repo_version_number(v) != version))
            continue;
        inferd_stats *s = inferd_repo_version_stats(vs[i]);
        inferd_strbuf_appends(b, listed++ ? ",{\"name\":" : "{\"name\":");
        const char *name = inferd_repo_version_name(v);
        inferd_strbuf_append_json_string(b, name, strlen(name));
        inferd_strbuf_appendf(
            b,
            ",\"version\":\"%ld\",\"last_inference\":%lld,\"inference_count\":%llu,"
            "\"execution_count\":%llu,\"inference_stats\":{",
            inferd_repo_version_number(v),
            (long long)atomic_load_explicit(&s->last_batch_ms, memory_order_relaxed),
            (unsigned long long)atomic_load_explicit(&s->inferences, memory_order_relaxed),
            (unsigned long long)atomic_load_explicit(&s->executions, memory_order_relaxed));
        stat_pair(b, "success", inferd_hist_count(s->request_ns), inferd_hist_sum(s->request_ns),
                  1);
        stat_pair(b, "fail", atomic_load_explicit(&s->failure, memory_order_relaxed), 0, 0);
        hist_pair(b, "queue", s->queue_ns);
        stat_pair(b, "compute_input", 0, 0, 0);
        hist_pair(b, "compute_infer", s->compute_ns);
        stat_pair(b, "compute_output", 0, 0, 0);
        stat_pair(b, "cache_hit", 0, 0, 0);
        stat_pair(b, "cache_miss", 0, 0, 0);
        inferd_strbuf_appends(b, "}}");
    }
    inferd_strbuf_appends(b, "]}");
    for (size_t i = 0; i < n; i++)
        inferd_repo_release(vs[i]);
    inferd_free(vs);
    if (model && !listed)
        return version > 0
                   ? inferd_error_set(err, INFERD_ENOTFOUND,
                                      "model '%.128s' has no ready version %ld", model, version)
                   : inferd_error_set(err, INFERD_ENOTFOUND, "model '%.128s' has no ready version",
                                      model);
    if (b->failed)
        return inferd_error_set(err, INFERD_EINTERNAL, "out of memory formatting statistics");
    return 0;
}

int inferd_metrics_format(inferd_repo *repo, const inferd_sched *sched, inferd_strbuf *b,
                          inferd_error *err) {
    inferd_repo_version **vs = NULL;
    size_t n = 0;
    int rc = inferd_repo_list_ready(repo, &vs, &n, err);
    if (rc < 0)
        return rc;
    scalar_family(b, vs, n, "inferd_request_success_total", "counter",
                  "Inference requests answered successfully.", F_SUCCESS);
    scalar_family(b, vs, n, "inferd_request_failure_total", "counter",
                  "Inference requests for this version answered with an error.", F_FAILURE);
    scalar_family(b, vs, n, "inferd_inference_count_total", "counter",
                  "Rows inferred (the sum of batch sizes).", F_INFERENCES);
    scalar_family(b, vs, n, "inferd_execution_count_total", "counter", "Batches executed.",
                  F_EXECUTIONS);
    scalar_family(b, vs, n, "inferd_request_duration_us_total", "counter",
                  "Arrival-to-response time of successful requests, microseconds.", F_REQUEST_US);
    scalar_family(b, vs, n, "inferd_queue_duration_us_total", "counter",
                  "Time requests waited in the queue, microseconds.", F_QUEUE_US);
    scalar_family(b, vs, n, "inferd_compute_duration_us_total", "counter",
                  "Time of the batch runs requests were part of, microseconds.", F_COMPUTE_US);
    duration_family(b, vs, n, "inferd_request_duration_seconds",
                    "Arrival-to-response time of successful requests.", 0);
    duration_family(b, vs, n, "inferd_queue_duration_seconds", "Time requests waited in the queue.",
                    1);
    duration_family(b, vs, n, "inferd_compute_duration_seconds",
                    "Time of the batch runs requests were part of.", 2);
    batch_family(b, vs, n);
    scalar_family(b, vs, n, "inferd_pending_requests", "gauge",
                  "Requests queued, not yet in a batch.", F_PENDING);
    scalar_family(b, vs, n, "inferd_model_memory_bytes", "gauge",
                  "Bytes held by the loaded model version.", F_MEMORY);
    // Text request families, for the versions that have a pipeline: the list is reordered so
    // that they come first (releasing below does not care about the order).
    size_t n_text = 0;
    for (size_t i = 0; i < n; i++)
        if (inferd_repo_version_pipeline(vs[i])) {
            inferd_repo_version *t = vs[n_text];
            vs[n_text++] = vs[i];
            vs[i] = t;
        }
    scalar_family(b, vs, n_text, "inferd_text_request_success_total", "counter",
                  "Text requests (/v1 predict, KServe text infer) answered successfully.",
                  F_TEXT_SUCCESS);
    scalar_family(b, vs, n_text, "inferd_text_request_failure_total", "counter",
                  "Text requests answered with an error.", F_TEXT_FAILURE);
    scalar_family(b, vs, n_text, "inferd_text_items_total", "counter",
                  "Texts tokenized and queued (each is a request of its own in the queue).",
                  F_TEXT_ITEMS);
    scalar_family(b, vs, n_text, "inferd_text_truncated_total", "counter",
                  "Texts cut at the pipeline's max_length.", F_TEXT_TRUNCATED);
    duration_family(b, vs, n_text, "inferd_tokenize_duration_seconds",
                    "Time to tokenize all texts of a text request, on its HTTP thread (or a "
                    "worker, for a large body), before the queue.",
                    3);
    for (size_t i = 0; i < n; i++)
        inferd_repo_release(vs[i]);
    inferd_free(vs);
    if (sched) {
        header(b, "inferd_compute_threads", "gauge", "The compute thread budget (--threads).");
        inferd_strbuf_appendf(b, "inferd_compute_threads %d\n", inferd_sched_threads(sched));
        header(b, "inferd_compute_threads_in_use", "gauge",
               "Compute threads held by running batches and model loads.");
        inferd_strbuf_appendf(b, "inferd_compute_threads_in_use %d\n",
                              inferd_sched_threads_in_use(sched));
        header(b, "inferd_workers", "gauge", "Worker threads that run batches.");
        inferd_strbuf_appendf(b, "inferd_workers %d\n", inferd_sched_workers(sched));
        header(b, "inferd_offloaded_parses_total", "counter",
               "Request bodies parsed (and tokenized) on a worker rather than an HTTP thread, "
               "for being larger than --offload-parse.");
        inferd_strbuf_appendf(b, "inferd_offloaded_parses_total %lld\n",
                              inferd_sched_jobs_run(sched));
        // The thread budget and where it came from (cgroup quota, affinity, host, flag).
        const inferd_cgroup_budget *cb = inferd_cgroup_budget_published();
        char text[1024];
        if (cb && inferd_cgroup_budget_format_metrics(cb, text, sizeof text) > 0)
            inferd_strbuf_appends(b, text);
    }
    residency_families(b, repo);
    route_families(b, repo);
    process_family(b);
    if (b->failed)
        return inferd_error_set(err, INFERD_EINTERNAL, "out of memory formatting metrics");
    return 0;
}
