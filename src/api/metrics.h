/* metrics.h: GET /metrics in the Prometheus text format (version 0.0.4), and the same
 * per-version counters as Triton's statistics extension (GET /v2/models/stats).
 *
 * Per model and version (labels model, version): request success and failure counts; request,
 * queue and compute time as counters (microseconds, like Triton's nv_inference_*_duration_us)
 * and as histograms (seconds); a batch-size histogram; executed batches and rows; pending
 * requests; memory held. For versions with a text pipeline also: text request success and
 * failure counts, texts queued and texts truncated, and a histogram of the time spent
 * tokenizing each text request (on its HTTP thread, apart from queue and compute time).
 * Residency, per version (every version the repository knows, resident or not): bytes held
 * now, loads, failed loads, evictions. In total: the memory budget and the bytes used,
 * versions loaded and the --max-loaded bound, requests waiting for a load, loads, failures,
 * evictions, unloads, version switches, load cache hits and misses, and a histogram of load
 * times.
 * Per-team routes (labels route, model, outcome): requests answered through each route.
 * Per process: CPU seconds, resident memory, thread count (from
 * /proc/self), and the compute thread budget and the threads in use.
 *
 * Reads atomics, lock-free histograms, /proc and copies the repository makes under its lock
 * (held for list operations only): it never waits for a queue, a batch or a load, so it is
 * answered on the HTTP thread.
 */
#ifndef INFERD_API_METRICS_H
#define INFERD_API_METRICS_H

#include "api/strbuf.h"
#include "repo/repo.h"
#include "sched/sched.h"

/* Appends the whole exposition to out. sched may be NULL. Returns 0 or a negative code (out of
 * memory). Any thread. */
int inferd_metrics_format(inferd_repo *repo, const inferd_sched *sched, inferd_strbuf *out,
                          inferd_error *err);

/* GET /v2/models[/{m}[/versions/{v}]]/stats, Triton's statistics extension: {"model_stats":
 * [{"name", "version", "last_inference" (ms since the epoch, 0 before the first batch),
 * "inference_count" (rows), "execution_count" (batches), "inference_stats": {"success",
 * "fail", "queue", "compute_input", "compute_infer", "compute_output", "cache_hit",
 * "cache_miss"}: each {"count", "ns"}}]} for every READY version, or model's (model NULL:
 * all; version <= 0: all of its READY versions). success counts requests answered 200 with
 * their arrival-to-response time; queue and compute_infer are per request, as Triton counts
 * them; what inferd does not time apart is 0: the time of failed requests, compute_input and
 * compute_output (inside compute_infer here), and the response cache (none). No
 * "batch_stats": batch times are not kept per batch size. Returns 0, INFERD_ENOTFOUND naming
 * the model or version when none is READY, or a negative code (out of memory). Any thread. */
int inferd_metrics_format_stats(inferd_repo *repo, const char *model, long version,
                                inferd_strbuf *out, inferd_error *err);

#endif
