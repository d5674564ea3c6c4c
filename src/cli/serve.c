/* serve.c: `inferd serve`, the server process: flags, logging, start-up order, and the drain
 * on SIGTERM/SIGINT.
 *
 * Start-up: the engine's global init (before any thread), then the scheduler's workers, the
 * repository scan, the HTTP listener (so /v2/health/live answers while models load), and last
 * the loader thread. SIGTERM and SIGINT are blocked in every thread and taken by the main
 * thread with sigwait, so no handler runs in an arbitrary thread. On the first one: readiness
 * turns false (before anything else, so probes see it at once), the listening socket closes, every
 * queued and running request finishes and is answered (new infer requests on open connections get
 * 503), the responses are sent, and the process exits 0.
 *
 * Threads (see docs/api.md for the bound): main + the residency manager + loader threads
 * (while they have work) + http-threads + workers + the workers' OpenMP team members. The default
 * --threads is the CPU the process may really use: the smallest of the host's cores, the affinity
 * mask and the cgroup's CPU quota (util/cgroup.h); it is logged with its source at start and
 * published for /metrics.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "api/api.h"
#include "cli/cli.h"
#include "engine/engine.h"
#include "http/server.h"
#include "repo/repo.h"
#include "sched/sched.h"
#include "util/cgroup.h"
#include "util/log.h"

typedef struct serve_flags {
    const char *repo;
    const char *host;
    int port;
    int threads;
    int workers;
    int http_threads;
    long long max_body;
    long long max_header;
    int max_connections;
    int use_epoll;
    int max_per_ip;
    int http_timeout;
    int body_timeout;
    int drain_timeout;
    int worker_nice;
    int max_text_items;
    long long max_text_bytes;
    long long offload_parse;
    long long memory_budget;
    int max_loaded;
    double poll_interval;
    const char *cache_dir;
    int loader_threads;
    int loader_nice; /* -1: as --worker-nice */
    int allow_repository_control;
    int strict_readiness;
    inferd_log_format log_format;
    inferd_log_level log_level;
    inferd_cgroup_budget budget; /* the thread budget and its source, --threads applied */
    inferd_error budget_err;     /* a malformed cgroup file, logged once logging is set up */
} serve_flags;

static void usage(FILE *f, int cores) {
    fprintf(f,
            "usage: inferd serve --repo DIR [options]\n"
            "\n"
            "Serves the models in DIR/<model>/<version>/model.onnx (ONNX) or model.pt\n"
            "(TorchScript) over HTTP (KServe v2; text in, labels out for versions with a\n"
            "pipeline.json).\n"
            "\n"
            "  --repo DIR             model repository (required)\n"
            "  --host ADDR            address to listen on (default 127.0.0.1)\n"
            "  --http-port N          port to listen on, 0 for any free one (default 8000)\n"
            "  --threads N            compute thread budget: threads running batches at once\n"
            "                         (default: the CPUs this process may use: cores, affinity\n"
            "                         mask and cgroup CPU quota rounded down; here %d)\n"
            "  --workers N            worker threads that run batches (default: --threads)\n"
            "  --http-threads N       HTTP polling threads (default 2)\n"
            "  --max-body BYTES       largest request body, 413 above it; K/M/G suffixes\n"
            "                         (default 64M)\n"
            "  --max-header BYTES     per-connection buffer for the request line and headers\n"
            "                         (default 32K)\n"
            "  --max-connections N    simultaneous connections (default 512)\n"
            "  --max-connections-per-ip N\n"
            "                         connections from one IP address; more are closed at once\n"
            "                         (default 0: no limit, as behind a proxy every client is\n"
            "                         one address)\n"
            "  --http-poll MODE       poll, epoll or auto: poll up to 1024 connections, else\n"
            "                         epoll (default auto)\n"
            "  --http-timeout SEC     close connections idle this long, 0 for never (default 30)\n"
            "  --body-timeout SEC     close connections whose body takes longer, 0 for never\n"
            "                         (default 60)\n"
            "  --drain-timeout SEC    on SIGTERM, wait this long for responses to be sent\n"
            "                         (default 30)\n"
            "  --worker-nice N        nice increment of worker and compute threads, 0..19\n"
            "                         (default 10)\n"
            "  --max-text-items N     texts per text request (/v1 predict, KServe text)\n"
            "                         (default 256)\n"
            "  --max-text-bytes BYTES bytes per text before tokenizing, 413 above it; K/M\n"
            "                         suffixes (default 64K)\n"
            "  --offload-parse BYTES  requests with more JSON than this are parsed and\n"
            "                         tokenized by a worker, not an HTTP thread, so large\n"
            "                         bodies never delay health checks; K/M suffixes, 0: all\n"
            "                         (default 64K)\n"
            "  --memory-budget BYTES  bytes loaded versions may hold; least recently used\n"
            "                         ones are unloaded to make room (K/M/G; default: none)\n"
            "  --max-loaded N         versions loaded at once, at most (default: no limit)\n"
            "                         With either, versions load on their first request\n"
            "                         (and pinned ones at start); without, all at start.\n"
            "  --poll-interval SEC    rescan the repository this often, loading new and changed\n"
            "                         versions beside the serving ones (default 0: never)\n"
            "  --cache-dir DIR        load caches (packed weights) go here, one file per version\n"
            "                         (default DIR/.inferd-cache of --repo; 'off': none)\n"
            "  --loader-threads N     threads that load and unload versions (default 1)\n"
            "  --loader-nice N        nice increment of the loader threads, 0..19 (default:\n"
            "                         --worker-nice)\n"
            "  --allow-repository-control\n"
            "                         serve POST /v2/repository/models/{m}/load and /unload\n"
            "                         (403 otherwise)\n"
            "  --strict-readiness     /ready and /v2/health/ready wait until every model's\n"
            "                         default version is loaded (default: the pinned models';\n"
            "                         with none pinned, every start-up load tried). Not with\n"
            "                         --memory-budget or --max-loaded\n"
            "  --log-format FMT       text or json (default text)\n"
            "  --log-level LEVEL      debug, info, warn or error (default info)\n"
            "  --help                 this text\n",
            cores);
}

/* Parses "64M", "32K", "1G", "1048576" (binary units; a trailing "B" or "iB" is allowed). */
static int parse_size(const char *s, long long *out) {
    char *end;
    errno = 0;
    long long n = strtoll(s, &end, 10);
    if (errno || end == s || n < 0)
        return -1;
    long long mul = 1;
    switch (*end) {
    case 'k':
    case 'K':
        mul = 1LL << 10;
        end++;
        break;
    case 'm':
    case 'M':
        mul = 1LL << 20;
        end++;
        break;
    case 'g':
    case 'G':
        mul = 1LL << 30;
        end++;
        break;
    default:
        break;
    }
    if (mul > 1 && *end == 'i')
        end++;
    if (*end == 'B')
        end++;
    if (*end || n > LLONG_MAX / mul)
        return -1;
    *out = n * mul;
    return 0;
}

static int parse_int(const char *s, int lo, int hi, int *out) {
    char *end;
    errno = 0;
    long n = strtol(s, &end, 10);
    if (errno || end == s || *end || n < lo || n > hi)
        return -1;
    *out = (int)n;
    return 0;
}

static int parse_flags(int argc, char **argv, serve_flags *f) {
    enum {
        O_REPO = 1000,
        O_HOST,
        O_PORT,
        O_THREADS,
        O_WORKERS,
        O_HTTP_THREADS,
        O_MAX_BODY,
        O_MAX_HEADER,
        O_MAX_CONN,
        O_HTTP_POLL,
        O_MAX_PER_IP,
        O_HTTP_TIMEOUT,
        O_BODY_TIMEOUT,
        O_DRAIN_TIMEOUT,
        O_NICE,
        O_MAX_TEXT_ITEMS,
        O_MAX_TEXT_BYTES,
        O_OFFLOAD_PARSE,
        O_MEMORY_BUDGET,
        O_MAX_LOADED,
        O_POLL_INTERVAL,
        O_CACHE_DIR,
        O_LOADER_THREADS,
        O_LOADER_NICE,
        O_ALLOW_CONTROL,
        O_STRICT_READINESS,
        O_LOG_FORMAT,
        O_LOG_LEVEL,
        O_HELP,
    };
    static const struct option opts[] = {
        {"repo", required_argument, 0, O_REPO},
        {"host", required_argument, 0, O_HOST},
        {"http-port", required_argument, 0, O_PORT},
        {"threads", required_argument, 0, O_THREADS},
        {"workers", required_argument, 0, O_WORKERS},
        {"http-threads", required_argument, 0, O_HTTP_THREADS},
        {"max-body", required_argument, 0, O_MAX_BODY},
        {"max-header", required_argument, 0, O_MAX_HEADER},
        {"max-connections", required_argument, 0, O_MAX_CONN},
        {"http-poll", required_argument, 0, O_HTTP_POLL},
        {"max-connections-per-ip", required_argument, 0, O_MAX_PER_IP},
        {"http-timeout", required_argument, 0, O_HTTP_TIMEOUT},
        {"body-timeout", required_argument, 0, O_BODY_TIMEOUT},
        {"drain-timeout", required_argument, 0, O_DRAIN_TIMEOUT},
        {"worker-nice", required_argument, 0, O_NICE},
        {"max-text-items", required_argument, 0, O_MAX_TEXT_ITEMS},
        {"max-text-bytes", required_argument, 0, O_MAX_TEXT_BYTES},
        {"offload-parse", required_argument, 0, O_OFFLOAD_PARSE},
        {"memory-budget", required_argument, 0, O_MEMORY_BUDGET},
        {"max-loaded", required_argument, 0, O_MAX_LOADED},
        {"poll-interval", required_argument, 0, O_POLL_INTERVAL},
        {"cache-dir", required_argument, 0, O_CACHE_DIR},
        {"loader-threads", required_argument, 0, O_LOADER_THREADS},
        {"loader-nice", required_argument, 0, O_LOADER_NICE},
        {"allow-repository-control", no_argument, 0, O_ALLOW_CONTROL},
        {"strict-readiness", no_argument, 0, O_STRICT_READINESS},
        {"log-format", required_argument, 0, O_LOG_FORMAT},
        {"log-level", required_argument, 0, O_LOG_LEVEL},
        {"help", no_argument, 0, O_HELP},
        {0, 0, 0, 0},
    };
    serve_flags d = {0};
    // Never fails: a malformed cgroup file only drops that limit, and is logged later.
    inferd_cgroup_budget_detect(NULL, &d.budget, &d.budget_err);
    int cores = d.budget.threads;
    *f = (serve_flags){
        .host = "127.0.0.1",
        .port = 8000,
        .threads = cores,
        .budget = d.budget,
        .budget_err = d.budget_err,
        .http_threads = 2,
        .max_body = 64LL << 20,
        .max_header = 32LL << 10,
        .max_connections = 512,
        .use_epoll = -1,
        .http_timeout = 30,
        .body_timeout = 60,
        .drain_timeout = 30,
        .worker_nice = 10,
        .max_text_items = INFERD_TEXTREQ_DEFAULT_MAX_ITEMS,
        .max_text_bytes = INFERD_TEXTREQ_DEFAULT_MAX_BYTES,
        .offload_parse = INFERD_API_DEFAULT_OFFLOAD_BYTES,
        .loader_threads = 1,
        .loader_nice = -1,
        .log_format = INFERD_LOG_FORMAT_TEXT,
        .log_level = INFERD_LOG_LEVEL_INFO,
    };
    optind = 1;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        int bad = 0;
        switch (c) {
        case O_REPO:
            f->repo = optarg;
            break;
        case O_HOST:
            f->host = optarg;
            break;
        case O_PORT:
            bad = parse_int(optarg, 0, 65535, &f->port);
            break;
        case O_THREADS:
            bad = parse_int(optarg, 1, 4096, &f->threads);
            if (!bad)
                inferd_cgroup_budget_override(&f->budget, f->threads);
            break;
        case O_WORKERS:
            bad = parse_int(optarg, 1, 4096, &f->workers);
            break;
        case O_HTTP_THREADS:
            bad = parse_int(optarg, 1, 64, &f->http_threads);
            break;
        case O_MAX_BODY:
            bad = parse_size(optarg, &f->max_body) || f->max_body < 1;
            break;
        case O_MAX_HEADER:
            bad = parse_size(optarg, &f->max_header) || f->max_header < 4096 ||
                  f->max_header > (64LL << 20);
            break;
        case O_MAX_CONN:
            bad = parse_int(optarg, 1, 1000000, &f->max_connections);
            break;
        case O_MAX_PER_IP:
            bad = parse_int(optarg, 0, 1000000, &f->max_per_ip);
            break;
        case O_HTTP_POLL:
            f->use_epoll = !strcmp(optarg, "epoll")  ? 1
                           : !strcmp(optarg, "poll") ? 0
                           : !strcmp(optarg, "auto") ? -1
                                                     : -2;
            bad = f->use_epoll == -2;
            break;
        case O_HTTP_TIMEOUT:
            bad = parse_int(optarg, 0, 86400, &f->http_timeout);
            break;
        case O_BODY_TIMEOUT:
            bad = parse_int(optarg, 0, 86400, &f->body_timeout);
            break;
        case O_DRAIN_TIMEOUT:
            bad = parse_int(optarg, 0, 86400, &f->drain_timeout);
            break;
        case O_NICE:
            bad = parse_int(optarg, 0, 19, &f->worker_nice);
            break;
        case O_MAX_TEXT_ITEMS:
            bad = parse_int(optarg, 1, 1000000, &f->max_text_items);
            break;
        case O_MAX_TEXT_BYTES:
            bad = parse_size(optarg, &f->max_text_bytes) || f->max_text_bytes < 1 ||
                  f->max_text_bytes > (1LL << 30);
            break;
        case O_OFFLOAD_PARSE:
            bad = parse_size(optarg, &f->offload_parse) || f->offload_parse < 0;
            break;
        case O_MEMORY_BUDGET:
            bad = parse_size(optarg, &f->memory_budget) || f->memory_budget < 1;
            break;
        case O_MAX_LOADED:
            bad = parse_int(optarg, 1, 1000000, &f->max_loaded);
            break;
        case O_POLL_INTERVAL: {
            char *end;
            errno = 0;
            f->poll_interval = strtod(optarg, &end);
            bad = errno || end == optarg || *end || !(f->poll_interval >= 0) ||
                  f->poll_interval > 86400;
            break;
        }
        case O_CACHE_DIR:
            f->cache_dir = optarg;
            bad = !optarg[0];
            break;
        case O_LOADER_THREADS:
            bad = parse_int(optarg, 1, 8, &f->loader_threads);
            break;
        case O_LOADER_NICE:
            bad = parse_int(optarg, 0, 19, &f->loader_nice);
            break;
        case O_ALLOW_CONTROL:
            f->allow_repository_control = 1;
            break;
        case O_STRICT_READINESS:
            f->strict_readiness = 1;
            break;
        case O_LOG_FORMAT:
            if (!strcmp(optarg, "text"))
                f->log_format = INFERD_LOG_FORMAT_TEXT;
            else if (!strcmp(optarg, "json"))
                f->log_format = INFERD_LOG_FORMAT_JSON;
            else
                bad = 1;
            break;
        case O_LOG_LEVEL:
            if (!strcmp(optarg, "debug"))
                f->log_level = INFERD_LOG_LEVEL_DEBUG;
            else if (!strcmp(optarg, "info"))
                f->log_level = INFERD_LOG_LEVEL_INFO;
            else if (!strcmp(optarg, "warn"))
                f->log_level = INFERD_LOG_LEVEL_WARN;
            else if (!strcmp(optarg, "error"))
                f->log_level = INFERD_LOG_LEVEL_ERROR;
            else
                bad = 1;
            break;
        case O_HELP:
            usage(stdout, cores);
            return 1;
        default:
            fprintf(stderr, "inferd serve: unknown or incomplete option '%s'\n\n",
                    argv[optind - 1]);
            usage(stderr, cores);
            return 2;
        }
        if (bad) {
            fprintf(stderr, "inferd serve: invalid value '%s' for --%s\n", optarg,
                    c >= O_REPO && c < O_HELP ? opts[c - O_REPO].name : "?");
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "inferd serve: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    if (f->strict_readiness && (f->memory_budget > 0 || f->max_loaded > 0)) {
        // Strict readiness waits for every model's default version, but with a budget or a
        // count versions load on demand and need not all fit: the pod might never be ready.
        fprintf(stderr,
                "inferd serve: --strict-readiness cannot be combined with %s: with a "
                "budget, models load on their first request and may not all fit at "
                "once; mark the models readiness must wait for \"pinned\": true in "
                "their config.json instead\n",
                f->memory_budget > 0 ? "--memory-budget" : "--max-loaded");
        return 2;
    }
    if (!f->repo) {
        fprintf(stderr, "inferd serve: --repo DIR is required\n\n");
        usage(stderr, cores);
        return 2;
    }
    return 0;
}

int inferd_cli_serve(int argc, char **argv) {
    serve_flags f;
    int rc = parse_flags(argc, argv, &f);
    if (rc == 1)
        return 0; // --help
    if (rc)
        return rc;
    inferd_log_configure(f.log_level, f.log_format);
    if (f.budget_err.code)
        inferd_log_warn("ignoring a CPU or memory limit: %s", f.budget_err.msg);
    inferd_log_info("thread budget %d (%s)", f.budget.threads, f.budget.reason);
    inferd_cgroup_budget_publish(&f.budget); // before any thread that serves /metrics

    // Every thread created from here on inherits this mask; only sigwait below sees them.
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    inferd_error err = {0};
    inferd_sched *sched = NULL;
    inferd_repo *repo = NULL;
    inferd_api *api = NULL;
    inferd_http_server *http = NULL;
    int exit_code = 1;

    if (inferd_engine_global_init(&err) < 0) {
        inferd_log_error("engine init failed: %s", err.msg);
        return 1;
    }
    inferd_sched_options so = {
        .threads = f.threads, .workers = f.workers, .worker_nice = f.worker_nice};
    if (inferd_sched_create(&so, &sched, &err) < 0) {
        inferd_log_error("%s", err.msg);
        goto out;
    }
    // The load cache lives in a dot folder of the repository by default: the scanner ignores
    // dot folders, and the caches travel with the models they were built from.
    char cache_dir[4200];
    if (!f.cache_dir)
        snprintf(cache_dir, sizeof cache_dir, "%s/.inferd-cache", f.repo);
    else
        snprintf(cache_dir, sizeof cache_dir, "%s", f.cache_dir);
    inferd_repo_options ro = {
        .dir = f.repo,
        .sched = sched,
        .loader_nice = f.loader_nice >= 0 ? f.loader_nice : f.worker_nice,
        .loader_threads = f.loader_threads,
        .memory_budget = f.memory_budget,
        .max_loaded = f.max_loaded,
        .poll_interval_ms = (int64_t)(f.poll_interval * 1000 + 0.5),
        .cache_dir = strcmp(cache_dir, "off") ? cache_dir : NULL,
    };
    if (inferd_repo_create(&ro, &repo, &err) < 0) {
        inferd_log_error("%s", err.msg);
        goto out;
    }
    inferd_api_options ao = {
        .repo = repo,
        .sched = sched,
        .text_limits = {.max_items = (size_t)f.max_text_items,
                        .max_bytes = (size_t)f.max_text_bytes},
        .allow_repository_control = f.allow_repository_control,
        .strict_readiness = f.strict_readiness,
        .offload_bytes = f.offload_parse,
    };
    if (inferd_api_create(&ao, &api, &err) < 0) {
        inferd_log_error("%s", err.msg);
        goto out;
    }
    inferd_http_options ho = {
        .host = f.host,
        .port = f.port,
        .threads = f.http_threads,
        .max_body = (size_t)f.max_body,
        .max_header = (size_t)f.max_header,
        .max_connections = f.max_connections,
        .use_epoll = f.use_epoll,
        .max_per_ip = f.max_per_ip,
        .timeout_s = f.http_timeout,
        .body_timeout_s = f.body_timeout,
        .handler = inferd_api_handle,
        .user = api,
    };
    if (inferd_http_server_create(&ho, &http, &err) < 0) {
        inferd_log_error("%s", err.msg);
        goto out;
    }
    int v6 = strchr(f.host, ':') != NULL; // an IPv6 literal goes in brackets in a URL
    inferd_log_info("inferd %s listening on http://%s%s%s:%d (threads %d, workers %d, http "
                    "threads %d, pid %d)",
                    INFERD_VERSION, v6 ? "[" : "", f.host, v6 ? "]" : "",
                    inferd_http_server_port(http), f.threads, inferd_sched_workers(sched),
                    f.http_threads, (int)getpid());
    if (f.memory_budget > 0 || f.max_loaded > 0 || f.poll_interval > 0)
        inferd_log_info("residency: memory budget %s%.1f MiB, max loaded %d, poll every %.3g s, "
                        "load cache %s",
                        f.memory_budget > 0 ? "" : "none ", (double)f.memory_budget / 1048576.0,
                        f.max_loaded, f.poll_interval, ro.cache_dir ? ro.cache_dir : "off");
    if (inferd_repo_start(repo, &err) < 0) {
        inferd_log_error("%s", err.msg);
        goto out;
    }

    int sig = 0;
    while (sigwait(&sigs, &sig) != 0)
        ;
    // Not ready first: from the moment the log says "draining", probes see it.
    inferd_api_set_draining(api);
    inferd_log_info("received %s: draining (%d requests in flight)",
                    sig == SIGTERM ? "SIGTERM" : "SIGINT", inferd_http_server_active(http));
    inferd_http_server_quiesce(http);
    inferd_sched_drain(sched); // every queued request runs and is answered
    if (inferd_http_server_wait_idle(http, (int64_t)f.drain_timeout * 1000) < 0)
        inferd_log_warn("%d requests still unsent after %d s; closing their connections",
                        inferd_http_server_active(http), f.drain_timeout);
    exit_code = 0;
out:
    inferd_http_server_destroy(http);
    inferd_repo_destroy(repo); // after the drain: the last references drop here
    inferd_sched_destroy(sched);
    inferd_api_destroy(api);
    if (exit_code == 0)
        inferd_log_info("stopped");
    return exit_code;
}
