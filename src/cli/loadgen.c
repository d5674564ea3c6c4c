#include "cli/loadgen.h"

#include <errno.h>
#include <math.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "cli/loadgen_http.h"
#include "util/alloc.h"
#include "util/clock.h"

#define NS 1000000000LL
#define RETRY_DELAY_NS (20 * 1000000LL) /* closed loop: wait before reconnecting after errors */
#define SCAN_NS (10 * 1000000LL)        /* how often timeouts and retries are looked at */
#define MAX_EVENTS 256

enum conn_state {
    C_FREE,       /* no socket, no request */
    C_CONNECTING, /* request waiting for connect(2) to finish */
    C_SENDING,    /* request partly written */
    C_READING,    /* request written, response not complete */
    C_IDLE,       /* keep-alive socket, no request */
    C_RETRY_WAIT, /* closed loop: no socket, reconnect at retry_at */
};

enum failure { FAIL_CONNECT, FAIL_IO, FAIL_TIMEOUT };

typedef struct conn {
    int fd;
    enum conn_state state;
    uint32_t gen; /* bumped per socket, so stale epoll events for an old socket are ignored */
    size_t sent;
    int64_t intended_ns; /* latency runs from here */
    int64_t deadline_ns;
    int64_t retry_at;
    int measured;       /* the request counts toward the result */
    int retried;        /* the request was already retried once after an idle close */
    uint64_t responses; /* responses received on this socket */
    inferd_loadgen_http_parser parser;
} conn;

/* A set of connection indexes with O(1) add, remove and pop (swap-remove). */
typedef struct conn_set {
    int *items;
    int *pos; /* pos[idx] = index in items, or -1 */
    int n;
} conn_set;

typedef struct run {
    const inferd_loadgen_config *cfg;
    inferd_loadgen_result *res;
    int ep;
    conn *conns;
    int nconns;
    conn_set idle, free; /* open loop only */
    int open_fds, busy;
    int64_t t0, measure_start, end, drain_deadline, next_tick, next_scan, next_send;
    int measuring, sending;
    uint64_t send_index;
    uint64_t rng;
    /* progress */
    inferd_hist *win_hist;
    uint64_t win_responses, all_responses, all_errors;
    int64_t last_tick_ns;
    int64_t last_measured_done;
    struct rusage ru_start;
    char buf[65536]; /* shared receive buffer: responses are parsed as they arrive */
} run;

/* ---- small helpers -------------------------------------------------------------------- */

static int set_init(conn_set *s, int cap) {
    s->items = inferd_malloc(NULL, (size_t)cap * sizeof(int));
    s->pos = inferd_malloc(NULL, (size_t)cap * sizeof(int));
    s->n = 0;
    if (!s->items || !s->pos)
        return -1;
    for (int i = 0; i < cap; i++)
        s->pos[i] = -1;
    return 0;
}

static void set_deinit(conn_set *s) {
    inferd_free(s->items);
    inferd_free(s->pos);
}

static void set_add(conn_set *s, int idx) {
    if (s->pos[idx] >= 0)
        return;
    s->pos[idx] = s->n;
    s->items[s->n++] = idx;
}

static void set_remove(conn_set *s, int idx) {
    int p = s->pos[idx];
    if (p < 0)
        return;
    int last = s->items[--s->n];
    s->items[p] = last;
    s->pos[last] = p;
    s->pos[idx] = -1;
}

static int set_pop(conn_set *s) {
    if (s->n == 0)
        return -1;
    // The most recently added: reusing warm connections keeps the number open small.
    int idx = s->items[s->n - 1];
    set_remove(s, idx);
    return idx;
}

static uint64_t rng_next(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

static double cpu_seconds(const struct rusage *ru) {
    return (double)ru->ru_utime.tv_sec + ru->ru_utime.tv_usec / 1e6 + (double)ru->ru_stime.tv_sec +
           ru->ru_stime.tv_usec / 1e6;
}

/* ---- connection life ------------------------------------------------------------------ */

static void conn_close(run *r, conn *c) {
    if (c->fd >= 0) {
        close(c->fd); // also leaves the epoll set
        c->fd = -1;
        r->open_fds--;
    }
    c->responses = 0;
}

/* Becomes free (open loop) or idle, after the request ended or was never made. */
static void conn_park(run *r, conn *c) {
    int idx = (int)(c - r->conns);
    if (c->fd >= 0) {
        c->state = C_IDLE;
        if (r->cfg->mode == INFERD_LOADGEN_MODE_OPEN)
            set_add(&r->idle, idx);
    } else {
        c->state = C_FREE;
        if (r->cfg->mode == INFERD_LOADGEN_MODE_OPEN)
            set_add(&r->free, idx);
    }
}

static void count_failure(run *r, conn *c, enum failure why) {
    r->all_errors++;
    if (!c->measured)
        return;
    if (why == FAIL_CONNECT)
        r->res->connect_errors++;
    else if (why == FAIL_TIMEOUT)
        r->res->timeouts++;
    else
        r->res->io_errors++;
}

static void begin(run *r, conn *c, int64_t intended, int measured);
static void do_send(run *r, conn *c);

static void fail(run *r, conn *c, enum failure why) {
    // A reused keep-alive socket that the server closed while we were not looking fails
    // before any response byte; that is not the server refusing work, so try once more.
    int stale = why == FAIL_IO && c->responses > 0 &&
                !inferd_loadgen_http_parser_started(&c->parser) && !c->retried;
    conn_close(r, c);
    r->busy--;
    if (stale) {
        if (c->measured)
            r->res->retries++;
        int64_t intended = c->intended_ns;
        int measured = c->measured;
        begin(r, c, intended, measured);
        c->retried = 1;
        return;
    }
    count_failure(r, c, why);
    if (r->cfg->mode == INFERD_LOADGEN_MODE_CLOSED && r->sending) {
        c->state = C_RETRY_WAIT;
        c->retry_at = inferd_now_ns() + RETRY_DELAY_NS;
    } else {
        conn_park(r, c);
    }
}

static int conn_open(run *r, conn *c) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    c->gen++;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
                             .data.u64 = ((uint64_t)c->gen << 32) | (uint32_t)(c - r->conns)};
    if (epoll_ctl(r->ep, EPOLL_CTL_ADD, fd, &ev) < 0) {
        close(fd);
        return -1;
    }
    c->fd = fd;
    c->responses = 0;
    r->open_fds++;
    if (r->open_fds > r->res->connections_max)
        r->res->connections_max = r->open_fds;
    if (connect(fd, (const struct sockaddr *)&r->cfg->addr, sizeof r->cfg->addr) == 0) {
        c->state = C_SENDING;
    } else if (errno == EINPROGRESS) {
        c->state = C_CONNECTING;
    } else {
        return -1;
    }
    return 0;
}

/* Starts a request on c (which holds none) that was due at intended. */
static void begin(run *r, conn *c, int64_t intended, int measured) {
    int64_t now = inferd_now_ns();
    c->intended_ns = intended;
    c->deadline_ns = now + (int64_t)(r->cfg->timeout_s * NS);
    c->measured = measured;
    c->retried = 0;
    c->sent = 0;
    inferd_loadgen_http_parser_reset(&c->parser);
    r->busy++;
    if (measured)
        r->res->sent++;
    if (c->fd < 0) {
        if (conn_open(r, c) < 0) {
            fail(r, c, FAIL_CONNECT);
            return;
        }
        if (c->state == C_CONNECTING)
            return; // EPOLLOUT tells when it is connected
    }
    c->state = C_SENDING;
    do_send(r, c);
}

static void do_send(run *r, conn *c) {
    const char *req = r->cfg->request;
    size_t len = r->cfg->request_len;
    while (c->sent < len) {
        ssize_t n = send(c->fd, req + c->sent, len - c->sent, MSG_NOSIGNAL);
        if (n > 0) {
            c->sent += (size_t)n;
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else if (n < 0 && errno == EAGAIN) {
            return; // EPOLLOUT resumes
        } else {
            fail(r, c, FAIL_IO);
            return;
        }
    }
    c->state = C_READING;
}

static void record(run *r, conn *c, int status) {
    int64_t now = inferd_now_ns();
    int64_t lat = now - c->intended_ns;
    int ok = status >= 200 && status < 300;
    inferd_hist_record(r->win_hist, lat);
    r->win_responses++;
    r->all_responses++;
    if (!ok)
        r->all_errors++;
    if (!c->measured)
        return;
    inferd_loadgen_result *res = r->res;
    res->responses++;
    res->ok += ok;
    if (status >= 0 && status < INFERD_LOADGEN_MAX_STATUS)
        res->status[status]++;
    inferd_hist_record(res->latency, lat);
    r->last_measured_done = now;
}

static void complete(run *r, conn *c) {
    record(r, c, c->parser.status);
    c->responses++;
    r->busy--;
    // A response that came before the whole request was written leaves the stream unusable.
    if (!c->parser.keep_alive || c->sent < r->cfg->request_len)
        conn_close(r, c);
    if (r->cfg->mode == INFERD_LOADGEN_MODE_CLOSED && r->sending)
        begin(r, c, inferd_now_ns(), r->measuring);
    else
        conn_park(r, c);
}

static void on_readable(run *r, conn *c) {
    for (;;) {
        ssize_t n = recv(c->fd, r->buf, sizeof r->buf, 0);
        if (n > 0) {
            size_t used;
            inferd_error err;
            int rc = inferd_loadgen_http_parse(&c->parser, r->buf, (size_t)n, &used, &err);
            if (rc < 0) {
                fail(r, c, FAIL_IO);
                return;
            }
            if (rc == 1) {
                // Bytes past the response were not asked for; the stream cannot be trusted.
                if (used < (size_t)n)
                    c->parser.keep_alive = 0;
                complete(r, c);
                return;
            }
        } else if (n == 0) {
            inferd_error err;
            if (inferd_loadgen_http_parse_eof(&c->parser, &err) == 1) {
                c->parser.keep_alive = 0;
                complete(r, c);
            } else {
                fail(r, c, FAIL_IO);
            }
            return;
        } else if (errno == EINTR) {
            continue;
        } else if (errno == EAGAIN) {
            return;
        } else {
            fail(r, c, FAIL_IO);
            return;
        }
    }
}

static void on_event(run *r, conn *c, uint32_t ev) {
    switch (c->state) {
    case C_CONNECTING: {
        int soerr = 0;
        socklen_t sl = sizeof soerr;
        if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0 || soerr) {
            fail(r, c, FAIL_CONNECT);
            return;
        }
        if (!(ev & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
            return;
        c->state = C_SENDING;
        do_send(r, c);
        if (c->state == C_READING && (ev & EPOLLIN))
            on_readable(r, c);
        return;
    }
    case C_SENDING:
        if (ev & (EPOLLOUT | EPOLLERR | EPOLLHUP))
            do_send(r, c);
        // The server may answer (say, 413) before taking the whole body.
        if ((c->state == C_SENDING || c->state == C_READING) && (ev & (EPOLLIN | EPOLLRDHUP)))
            on_readable(r, c);
        return;
    case C_READING:
        if (ev & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
            on_readable(r, c);
        return;
    case C_IDLE:
        if (ev & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
            // Nothing is expected on an idle socket: it is the server closing it (or junk).
            ssize_t n = recv(c->fd, r->buf, sizeof r->buf, 0);
            if (n >= 0 || errno != EAGAIN) {
                if (r->cfg->mode == INFERD_LOADGEN_MODE_OPEN)
                    set_remove(&r->idle, (int)(c - r->conns));
                conn_close(r, c);
                conn_park(r, c);
            }
        }
        return;
    default:
        return;
    }
}

/* Timeouts, and closed-loop reconnects that are due. */
static void scan(run *r, int64_t now) {
    for (int i = 0; i < r->nconns; i++) {
        conn *c = &r->conns[i];
        if ((c->state == C_CONNECTING || c->state == C_SENDING || c->state == C_READING) &&
            now >= c->deadline_ns) {
            c->retried = 1; // a timeout is never silently retried
            fail(r, c, FAIL_TIMEOUT);
        } else if (c->state == C_RETRY_WAIT) {
            if (!r->sending)
                conn_park(r, c);
            else if (now >= c->retry_at)
                begin(r, c, now, r->measuring);
        }
    }
}

/* Open loop: sends every request that is due by now. */
static void send_due(run *r, int64_t now) {
    const inferd_loadgen_config *cfg = r->cfg;
    while (r->sending && r->next_send <= now && r->next_send < r->end) {
        int64_t due = r->next_send;
        int idx = set_pop(&r->idle);
        if (idx < 0)
            idx = set_pop(&r->free);
        int measured = due >= r->measure_start;
        if (idx >= 0) {
            begin(r, &r->conns[idx], due, measured);
        } else {
            r->all_errors++;
            if (measured)
                r->res->dropped++;
        }
        r->send_index++;
        if (cfg->poisson) {
            double u = (double)(rng_next(&r->rng) >> 11) * (1.0 / 9007199254740992.0);
            r->next_send += (int64_t)(-log(1.0 - u) / cfg->rate * NS);
        } else {
            r->next_send = r->t0 + (int64_t)((double)r->send_index * NS / cfg->rate);
        }
    }
}

static void emit_tick(run *r, inferd_loadgen_tick_kind kind, int64_t now) {
    if (kind == INFERD_LOADGEN_TICK_SECOND) {
        double secs = (double)(now - r->last_tick_ns) / NS;
        inferd_loadgen_tick t = {
            .kind = kind,
            .elapsed_s = (double)(now - r->t0) / NS,
            .warmup = r->last_tick_ns<r->measure_start, .responses_all = r->all_responses,
                                      .responses = r->win_responses, .qps = secs> 0
                          ? (double)r->win_responses / secs
                          : 0,
            .p99_ns = inferd_hist_percentile(r->win_hist, 99),
            .errors_all = r->all_errors,
            .connections = r->open_fds,
        };
        inferd_hist_reset(r->win_hist);
        r->win_responses = 0;
        r->last_tick_ns = now;
        if (r->cfg->on_tick)
            r->cfg->on_tick(&t, r->cfg->user);
    } else if (r->cfg->on_tick) {
        inferd_loadgen_tick t = {.kind = kind,
                                 .elapsed_s = (double)(now - r->t0) / NS,
                                 .responses_all = r->all_responses,
                                 .errors_all = r->all_errors,
                                 .connections = r->open_fds};
        r->cfg->on_tick(&t, r->cfg->user);
    }
}

static int validate(const inferd_loadgen_config *c, inferd_error *err) {
    if (!c->request || c->request_len == 0)
        return inferd_error_set(err, INFERD_EINVAL, "no request to send");
    if (c->mode == INFERD_LOADGEN_MODE_CLOSED && (c->concurrency < 1 || c->concurrency > 65536))
        return inferd_error_set(err, INFERD_EINVAL, "concurrency must be 1..65536, not %d",
                                c->concurrency);
    if (c->mode == INFERD_LOADGEN_MODE_OPEN && !(c->rate > 0 && c->rate <= 1e7))
        return inferd_error_set(err, INFERD_EINVAL, "rate must be > 0 and <= 1e7, not %g", c->rate);
    if (c->mode == INFERD_LOADGEN_MODE_OPEN &&
        (c->max_connections < 1 || c->max_connections > 65536))
        return inferd_error_set(err, INFERD_EINVAL, "max connections must be 1..65536, not %d",
                                c->max_connections);
    if (!(c->duration_s > 0 && c->duration_s < 1e6))
        return inferd_error_set(err, INFERD_EINVAL, "duration must be > 0 s, not %g",
                                c->duration_s);
    if (!(c->warmup_s >= 0 && c->warmup_s < 1e6))
        return inferd_error_set(err, INFERD_EINVAL, "warmup must be >= 0 s, not %g", c->warmup_s);
    if (!(c->timeout_s > 0 && c->timeout_s < 1e6))
        return inferd_error_set(err, INFERD_EINVAL, "timeout must be > 0 s, not %g", c->timeout_s);
    return 0;
}

uint64_t inferd_loadgen_result_errors(const inferd_loadgen_result *r) {
    return (r->responses - r->ok) + r->connect_errors + r->io_errors + r->timeouts + r->dropped;
}

void inferd_loadgen_result_deinit(inferd_loadgen_result *r) {
    inferd_hist_destroy(r->latency);
    r->latency = NULL;
}

static void loop(run *r) {
    const inferd_loadgen_config *cfg = r->cfg;
    struct epoll_event evs[MAX_EVENTS];
    int use_pwait2 = 1;
    for (;;) {
        int64_t now = inferd_now_ns();
        if (!r->measuring && now >= r->measure_start) {
            r->measuring = 1;
            getrusage(RUSAGE_SELF, &r->ru_start);
            emit_tick(r, INFERD_LOADGEN_TICK_MEASURE_START, now);
        }
        // Before the end check: a loop that woke late still sends what was due in the window.
        if (cfg->mode == INFERD_LOADGEN_MODE_OPEN)
            send_due(r, now);
        if (r->sending && (now >= r->end || (cfg->stop && *cfg->stop))) {
            r->sending = 0;
            if (now < r->end)
                r->end = now; // stopped early: the window ends here
            r->drain_deadline = now + (int64_t)(cfg->timeout_s * NS);
        }
        if (now >= r->next_scan) {
            scan(r, now);
            r->next_scan = now + SCAN_NS;
        }
        while (now >= r->next_tick) {
            emit_tick(r, INFERD_LOADGEN_TICK_SECOND, now);
            r->next_tick += NS;
        }
        if (!r->sending && (r->busy == 0 || now >= r->drain_deadline))
            break;

        int64_t wake = r->next_tick;
        if (r->sending) {
            wake = min64(wake, r->end);
            if (cfg->mode == INFERD_LOADGEN_MODE_OPEN)
                wake = min64(wake, r->next_send);
        } else {
            wake = min64(wake, r->drain_deadline);
        }
        if (!r->measuring)
            wake = min64(wake, r->measure_start);
        if (r->busy > 0 || cfg->mode == INFERD_LOADGEN_MODE_CLOSED)
            wake = min64(wake, r->next_scan);
        int64_t wait = wake - inferd_now_ns();
        if (wait < 0)
            wait = 0;
        int n;
        if (use_pwait2) {
            struct timespec ts = {.tv_sec = wait / NS, .tv_nsec = wait % NS};
            n = epoll_pwait2(r->ep, evs, MAX_EVENTS, &ts, NULL);
            if (n < 0 && errno == ENOSYS) {
                use_pwait2 = 0;
                continue;
            }
        } else {
            n = epoll_wait(r->ep, evs, MAX_EVENTS, (int)((wait + 999999) / 1000000));
        }
        for (int i = 0; i < n; i++) {
            uint32_t idx = (uint32_t)evs[i].data.u64;
            uint32_t gen = (uint32_t)(evs[i].data.u64 >> 32);
            conn *c = &r->conns[idx];
            if (c->fd >= 0 && c->gen == gen)
                on_event(r, c, evs[i].events);
        }
    }
}

int inferd_loadgen_run(const inferd_loadgen_config *cfg, inferd_loadgen_result *out,
                       inferd_error *err) {
    memset(out, 0, sizeof *out);
    int rc = validate(cfg, err);
    if (rc < 0)
        return rc;
    out->latency = inferd_hist_create();
    run *r = inferd_calloc(NULL, 1, sizeof *r);
    if (!out->latency || !r) {
        inferd_free(r);
        return inferd_error_set(err, INFERD_EINTERNAL, "out of memory");
    }
    r->cfg = cfg;
    r->res = out;
    r->ep = -1;
    r->nconns = cfg->mode == INFERD_LOADGEN_MODE_CLOSED ? cfg->concurrency : cfg->max_connections;
    r->conns = inferd_calloc(NULL, (size_t)r->nconns, sizeof *r->conns);
    r->win_hist = inferd_hist_create();
    if (!r->conns || !r->win_hist || set_init(&r->idle, r->nconns) < 0 ||
        set_init(&r->free, r->nconns) < 0) {
        rc = inferd_error_set(err, INFERD_EINTERNAL, "out of memory for %d connections", r->nconns);
        goto out;
    }
    struct rlimit nofile;
    if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur < (rlim_t)r->nconns + 64) {
        nofile.rlim_cur =
            (rlim_t)r->nconns + 64 < nofile.rlim_max ? (rlim_t)r->nconns + 64 : nofile.rlim_max;
        setrlimit(RLIMIT_NOFILE, &nofile);
    }
    r->ep = epoll_create1(EPOLL_CLOEXEC);
    if (r->ep < 0) {
        rc = inferd_error_set(err, INFERD_EINTERNAL, "epoll_create1: %s", strerror(errno));
        goto out;
    }
    for (int i = 0; i < r->nconns; i++) {
        r->conns[i].fd = -1;
        inferd_loadgen_http_parser_init(&r->conns[i].parser, 0, 0);
        if (cfg->mode == INFERD_LOADGEN_MODE_OPEN)
            set_add(&r->free, r->nconns - 1 - i); // so slot 0 is used first
    }
    // Open-loop sends are timed by the epoll timeout; the default 50 us timer slack would
    // show up as latency.
    int old_slack = prctl(PR_GET_TIMERSLACK, 0, 0, 0, 0);
    prctl(PR_SET_TIMERSLACK, 1000UL, 0, 0, 0);

    r->rng = cfg->seed ^ 0x5deece66dULL;
    r->t0 = inferd_now_ns();
    r->measure_start = r->t0 + (int64_t)(cfg->warmup_s * NS);
    r->end = r->measure_start + (int64_t)(cfg->duration_s * NS);
    r->next_tick = r->t0 + NS;
    r->next_scan = r->t0 + SCAN_NS;
    r->next_send = r->t0;
    r->last_tick_ns = r->t0;
    r->sending = 1;
    if (cfg->mode == INFERD_LOADGEN_MODE_CLOSED) {
        int measured = cfg->warmup_s <= 0;
        r->measuring = measured;
        if (measured) {
            getrusage(RUSAGE_SELF, &r->ru_start);
            emit_tick(r, INFERD_LOADGEN_TICK_MEASURE_START, r->t0);
        }
        for (int i = 0; i < r->nconns; i++)
            begin(r, &r->conns[i], inferd_now_ns(), measured);
    }
    loop(r);

    int64_t done = r->last_measured_done > r->end ? r->last_measured_done : r->end;
    out->duration_s =
        r->measuring && done > r->measure_start ? (double)(done - r->measure_start) / NS : 0;
    if (r->measuring) {
        struct rusage ru;
        getrusage(RUSAGE_SELF, &ru);
        double wall = (double)(inferd_now_ns() - r->measure_start) / NS;
        if (wall > 0)
            out->client_cpu_percent = 100.0 * (cpu_seconds(&ru) - cpu_seconds(&r->ru_start)) / wall;
    }
    // Requests still in flight after the drain ran out of time.
    for (int i = 0; i < r->nconns; i++) {
        conn *c = &r->conns[i];
        if (c->state == C_CONNECTING || c->state == C_SENDING || c->state == C_READING) {
            count_failure(r, c, FAIL_TIMEOUT);
        }
    }
    if (old_slack > 0)
        prctl(PR_SET_TIMERSLACK, (unsigned long)old_slack, 0, 0, 0);
out:
    if (r->conns) {
        for (int i = 0; i < r->nconns; i++) {
            if (r->conns[i].fd >= 0)
                close(r->conns[i].fd);
            inferd_loadgen_http_parser_deinit(&r->conns[i].parser);
        }
    }
    if (r->ep >= 0)
        close(r->ep);
    set_deinit(&r->idle);
    set_deinit(&r->free);
    inferd_hist_destroy(r->win_hist);
    inferd_free(r->conns);
    inferd_free(r);
    return rc;
}
