/* server.c: see server.h for the design.
 *
 * Lock order: inferd_http_request.lock, then libmicrohttpd's internal locks (we call
 * MHD_suspend_connection and MHD_resume_connection while holding a request's lock, so a
 * resume can never overtake the suspend it undoes). inferd_http_server.lock is a leaf, taken
 * alone for the active-request count. libmicrohttpd never calls us while holding its locks.
 *
 * A request's lifetime is counted in two references: libmicrohttpd's (from the first call of
 * the access handler to the completion callback) and the responder's (from the handler call
 * to inferd_http_respond). Whichever goes last frees it, so a late respond or an early
 * completion never touches freed memory.
 */
#include "http/server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netdb.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "util/alloc.h"
#include "util/clock.h"
#include "util/log.h"

enum {
    STATE_RECEIVING = 0, /* headers and body arriving */
    STATE_HANDLING = 1,  /* inside the handler */
    STATE_SUSPENDED = 2, /* handler returned without an answer; connection suspended */
    STATE_ANSWERED = 3,  /* inferd_http_respond was called */
    STATE_DONE = 4,      /* answered by this module (413); the handler never sees it */
};

struct inferd_http_server {
    struct MHD_Daemon *d;
    inferd_http_options opts;
    char host[256];
    int port;
    _Atomic int quiescing;
    pthread_mutex_t lock;
    pthread_cond_t idle_cv;
    int active;
};

struct inferd_http_request {
    inferd_http_server *s;
    struct MHD_Connection *conn;
    const char *method, *path; /* libmicrohttpd's, valid until completion */
    uint8_t *body;
    size_t len, cap, expected;
    int64_t arrival_ns;
    int too_large;
    int no_memory; /* the body could not be stored: read and drop the rest, then answer 503 */
    _Atomic int refs;
    pthread_mutex_t lock;
    int state;
    struct MHD_Response *resp; /* set by respond, queued by the access handler */
    unsigned status;
    int failed; /* the response could not be built: close the connection */
};

static void request_unref(inferd_http_request *r) {
    if (atomic_fetch_sub_explicit(&r->refs, 1, memory_order_acq_rel) != 1)
        return;
    if (r->resp)
        MHD_destroy_response(r->resp);
    inferd_free(r->body);
    pthread_mutex_destroy(&r->lock);
    inferd_free(r);
}

static void free_body(void *p) { inferd_free(p); }

/* What a request gets when the server cannot allocate what it needs for it. */
static const char no_memory_body[] =
    "{\"error\": \"out of memory: the server could not take or answer this request; try "
    "again\"}";

/* Adds the headers every response carries to resp (NULL: nothing). */
static struct MHD_Response *finish_response(inferd_http_server *s, struct MHD_Response *resp,
                                            const char *content_type, const char *const *headers) {
    if (!resp)
        return NULL;
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE,
                            content_type ? content_type : "application/json");
    for (int i = 0; headers && headers[i] && headers[i + 1]; i += 2)
        MHD_add_response_header(resp, headers[i], headers[i + 1]);
    // While shutting down, tell keep-alive clients to reconnect (to a healthy replica).
    if (atomic_load(&s->quiescing))
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
    return resp;
}

static struct MHD_Response *make_response(inferd_http_server *s, const char *content_type,
                                          void *body, size_t len, const char *const *headers) {
    struct MHD_Response *resp =
        MHD_create_response_from_buffer_with_free_callback(len, len ? body : NULL, free_body);
    if (!resp) {
        inferd_free(body);
        return NULL;
    }
    if (!len)
        inferd_free(body);
    return finish_response(s, resp, content_type, headers);
}

/* A response holding a copy of text made by libmicrohttpd (none of our allocations), or, for
 * static text, the text itself. */
static struct MHD_Response *text_response(inferd_http_server *s, const char *content_type,
                                          const char *text, int is_static) {
    return finish_response(
        s,
        MHD_create_response_from_buffer(strlen(text), (void *)text,
                                        is_static ? MHD_RESPMEM_PERSISTENT : MHD_RESPMEM_MUST_COPY),
        content_type, NULL);
}

/* Queues whatever respond stored. Called on the HTTP thread with r->lock held. */
static enum MHD_Result queue_stored(inferd_http_request *r) {
    if (r->failed || !r->resp)
        return MHD_NO; // closes the connection
    enum MHD_Result rc = MHD_queue_response(r->conn, r->status, r->resp);
    MHD_destroy_response(r->resp);
    r->resp = NULL;
    return rc;
}

static enum MHD_Result answer_now(inferd_http_request *r, unsigned status, const char *text) {
    struct MHD_Response *resp = text_response(r->s, NULL, text, text == no_memory_body);
    if (!resp)
        return MHD_NO;
    enum MHD_Result rc = MHD_queue_response(r->conn, status, resp);
    MHD_destroy_response(resp);
    return rc;
}

static enum MHD_Result too_large(inferd_http_request *r, unsigned long long size) {
    char msg[200];
    if (size)
        snprintf(msg, sizeof msg,
                 "{\"error\": \"request body of %llu bytes exceeds the limit of %zu bytes "
                 "(--max-body)\"}",
                 size, r->s->opts.max_body);
    else
        snprintf(msg, sizeof msg,
                 "{\"error\": \"request body exceeds the limit of %zu bytes (--max-body)\"}",
                 r->s->opts.max_body);
    return answer_now(r, 413, msg);
}

/* libmicrohttpd decodes the URL in place, so an encoded NUL (%00) would silently cut the
 * path short: /v2/models/text%00.onnx/ready would be answered as /v2/models/text/ready. The
 * raw URL is seen here first; such a request is marked and refused with 400. */
static char bad_uri_marker;
#define BAD_URI ((void *)&bad_uri_marker)

/* A request answered 503 before a request of ours could be allocated for it: whatever of its
 * body still arrives is dropped. */
static char answered_marker;
#define ANSWERED ((void *)&answered_marker)

static void *on_uri(void *cls, const char *uri, struct MHD_Connection *conn) {
    (void)cls;
    (void)conn;
    for (const char *p = uri; (p = strchr(p, '%')); p++)
        if (p[1] == '0' && p[2] == '0')
            return BAD_URI;
    return NULL;
}

static int append_body(inferd_http_request *r, const char *data, size_t n) {
    if (r->len + n > r->cap) {
        // Grow with what arrives, not with what Content-Length promises: a client that
        // announces 60 MB and sends nothing must not cost 60 MB.
        size_t cap = r->cap ? r->cap : 16384;
        while (cap < r->len + n)
            cap *= 2;
        if (r->expected && cap > r->expected && r->len + n <= r->expected)
            cap = r->expected;
        uint8_t *p = inferd_realloc(NULL, r->body, cap);
        if (!p)
            return -1;
        r->body = p;
        r->cap = cap;
    }
    memcpy(r->body + r->len, data, n);
    r->len += n;
    return 0;
}

static enum MHD_Result on_access(void *cls, struct MHD_Connection *conn, const char *url,
                                 const char *method, const char *version, const char *upload_data,
                                 size_t *upload_size, void **con_cls) {
    (void)version;
    inferd_http_server *s = cls;
    inferd_http_request *r = *con_cls;
    if (r == ANSWERED) {
        *upload_size = 0;
        return MHD_YES;
    }
    if (!r || r == BAD_URI) {
        int bad_uri = r == BAD_URI;
        *con_cls = NULL;
        r = inferd_calloc(NULL, 1, sizeof *r);
        if (!r) { // answered without a request of ours: the rest of the body is dropped
            struct MHD_Response *resp = text_response(s, NULL, no_memory_body, 1);
            if (!resp)
                return MHD_NO;
            *con_cls = ANSWERED;
            enum MHD_Result rc = MHD_queue_response(conn, 503, resp);
            MHD_destroy_response(resp);
            return rc;
        }
        r->s = s;
        r->conn = conn;
        r->method = method;
        r->path = url;
        r->arrival_ns = inferd_now_ns();
        atomic_init(&r->refs, 1); // libmicrohttpd's, dropped in on_completed
        pthread_mutex_init(&r->lock, NULL);
        *con_cls = r;
        pthread_mutex_lock(&s->lock);
        s->active++;
        pthread_mutex_unlock(&s->lock);
        if (bad_uri) {
            r->state = STATE_DONE;
            return answer_now(r, 400, "{\"error\": \"the URL holds an encoded NUL byte (%00)\"}");
        }
        const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Length");
        if (cl) {
            char *end;
            errno = 0;
            unsigned long long n = strtoull(cl, &end, 10);
            if (errno == 0 && *end == 0 && n > s->opts.max_body) {
                r->state = STATE_DONE;
                return too_large(r, n); // early: the body is never read
            }
            if (errno == 0 && *end == 0)
                r->expected = (size_t)n;
        }
        return MHD_YES;
    }
    if (*upload_size > 0) {
        if (s->opts.body_timeout_s > 0 &&
            inferd_now_ns() - r->arrival_ns > (int64_t)s->opts.body_timeout_s * 1000000000) {
            inferd_log_warn("closing a connection whose body took over %d s (%s %s)",
                            s->opts.body_timeout_s, r->method, r->path);
            return MHD_NO;
        }
        if (!r->too_large) {
            if (r->len + *upload_size > s->opts.max_body) {
                r->too_large = 1; // read and drop the rest, then answer 413
                inferd_free(r->body);
                r->body = NULL;
                r->len = r->cap = 0;
            } else if (!r->no_memory && append_body(r, upload_data, *upload_size) < 0) {
                r->no_memory = 1; // read and drop the rest, then answer 503
                inferd_free(r->body);
                r->body = NULL;
                r->len = r->cap = 0;
            }
        }
        *upload_size = 0;
        return MHD_YES;
    }

    // The whole request is here, or we were resumed with an answer.
    pthread_mutex_lock(&r->lock);
    if (r->state == STATE_ANSWERED) {
        enum MHD_Result rc = queue_stored(r);
        pthread_mutex_unlock(&r->lock);
        return rc;
    }
    if (r->state != STATE_RECEIVING) {
        pthread_mutex_unlock(&r->lock);
        return MHD_YES; // already answered by us (DONE)
    }
    if (r->too_large) {
        r->state = STATE_DONE;
        pthread_mutex_unlock(&r->lock);
        return too_large(r, 0);
    }
    if (r->no_memory) {
        r->state = STATE_DONE;
        pthread_mutex_unlock(&r->lock);
        return answer_now(r, 503, no_memory_body);
    }
    r->state = STATE_HANDLING;
    pthread_mutex_unlock(&r->lock);

    atomic_fetch_add(&r->refs, 1); // the responder's, dropped in inferd_http_respond
    s->opts.handler(s->opts.user, r);

    pthread_mutex_lock(&r->lock);
    enum MHD_Result rc = MHD_YES;
    if (r->state == STATE_ANSWERED) {
        rc = queue_stored(r); // answered inside the handler
    } else {
        // Suspend under the request lock: respond takes it too, so it cannot resume first.
        MHD_suspend_connection(conn);
        r->state = STATE_SUSPENDED;
    }
    pthread_mutex_unlock(&r->lock);
    return rc;
}

/* Stores resp (NULL: close the connection) as r's answer and wakes the connection. */
static void respond_with(inferd_http_request *r, int status, struct MHD_Response *resp) {
    pthread_mutex_lock(&r->lock);
    if (INFERD_NEVER(r->state != STATE_HANDLING && r->state != STATE_SUSPENDED)) {
        pthread_mutex_unlock(&r->lock);
        if (resp)
            MHD_destroy_response(resp);
        return;
    }
    r->resp = resp;
    r->failed = resp == NULL;
    r->status = (unsigned)status;
    int was_suspended = r->state == STATE_SUSPENDED;
    r->state = STATE_ANSWERED;
    if (was_suspended)
        MHD_resume_connection(r->conn);
    pthread_mutex_unlock(&r->lock);
    request_unref(r);
}

void inferd_http_respond(inferd_http_request *r, int status, const char *content_type, void *body,
                         size_t len, const char *const *headers) {
    respond_with(r, status, make_response(r->s, content_type, body, len, headers));
}

void inferd_http_respond_text(inferd_http_request *r, int status, const char *content_type,
                              const char *text) {
    respond_with(r, status, text_response(r->s, content_type, text, 0));
}

void inferd_http_respond_no_memory(inferd_http_request *r) {
    respond_with(r, 503, text_response(r->s, NULL, no_memory_body, 1));
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe) {
    (void)conn;
    (void)toe;
    inferd_http_server *s = cls;
    inferd_http_request *r = *con_cls;
    *con_cls = NULL;
    if (!r || r == BAD_URI || r == ANSWERED) // ended before a request of ours existed
        return;
    pthread_mutex_lock(&s->lock);
    s->active--;
    if (s->active == 0)
        pthread_cond_broadcast(&s->idle_cv);
    pthread_mutex_unlock(&s->lock);
    request_unref(r);
}

static void on_mhd_log(void *cls, const char *fmt, va_list ap) {
    (void)cls;
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    size_t n = strlen(msg);
    while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
        msg[--n] = 0;
    inferd_log_warn("http: %s", msg);
}

int inferd_http_server_create(const inferd_http_options *o, inferd_http_server **out,
                              inferd_error *err) {
    *out = NULL;
    if (!o->handler || o->threads < 1 || o->threads > 64 || o->port < 0 || o->port > 65535 ||
        o->max_connections < 1 || o->max_header < 1024)
        return inferd_error_set(err, INFERD_EINVAL, "invalid HTTP options");
    inferd_http_server *s = inferd_calloc(NULL, 1, sizeof *s);
    if (!s)
        return inferd_error_set(err, INFERD_EINTERNAL, "out of memory");
    s->opts = *o;
    snprintf(s->host, sizeof s->host, "%s", o->host ? o->host : "127.0.0.1");
    s->opts.host = s->host;
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->idle_cv, NULL);

    struct addrinfo hints = {
        .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE};
    struct addrinfo *ai = NULL;
    char port[16];
    snprintf(port, sizeof port, "%d", o->port);
    int gai = getaddrinfo(s->host, port, &hints, &ai);
    if (gai != 0) {
        inferd_http_server_destroy(s);
        return inferd_error_set(err, INFERD_EINVAL, "cannot resolve host '%s': %s", o->host,
                                gai_strerror(gai));
    }
    int epoll = o->use_epoll < 0 ? o->max_connections > 1024 : o->use_epoll;
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | (epoll ? MHD_USE_EPOLL : MHD_USE_POLL) |
                     MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ITC | MHD_USE_ERROR_LOG;
    if (ai->ai_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    struct sockaddr_storage addr;
    memcpy(&addr, ai->ai_addr, ai->ai_addrlen);
    freeaddrinfo(ai);
    // The logger goes first so libmicrohttpd reports option problems through it; the pool
    // option only when there is a pool (a size of 1 means one internal thread).
    struct MHD_OptionItem opt[16];
    int k = 0;
    opt[k++] = (struct MHD_OptionItem){MHD_OPTION_EXTERNAL_LOGGER, (intptr_t)on_mhd_log, NULL};
    opt[k++] = (struct MHD_OptionItem){MHD_OPTION_SOCK_ADDR, 0, &addr};
    if (o->threads > 1)
        opt[k++] = (struct MHD_OptionItem){MHD_OPTION_THREAD_POOL_SIZE, o->threads, NULL};
    opt[k++] = (struct MHD_OptionItem){MHD_OPTION_CONNECTION_LIMIT, o->max_connections, NULL};
    if (o->max_per_ip > 0)
        opt[k++] = (struct MHD_OptionItem){MHD_OPTION_PER_IP_CONNECTION_LIMIT, o->max_per_ip, NULL};
    opt[k++] = (struct MHD_OptionItem){MHD_OPTION_CONNECTION_TIMEOUT, o->timeout_s, NULL};
    opt[k++] =
        (struct MHD_OptionItem){MHD_OPTION_CONNECTION_MEMORY_LIMIT, (intptr_t)o->max_header, NULL};
    opt[k++] = (struct MHD_OptionItem){MHD_OPTION_NOTIFY_COMPLETED, (intptr_t)on_completed, s};
    opt[k++] = (struct MHD_OptionItem){MHD_OPTION_URI_LOG_CALLBACK, (intptr_t)on_uri, NULL};
    opt[k++] = (struct MHD_OptionItem){MHD_OPTION_LISTENING_ADDRESS_REUSE, 1, NULL};
    opt[k++] = (struct MHD_OptionItem){MHD_OPTION_END, 0, NULL};
    s->d = MHD_start_daemon(flags, (uint16_t)o->port, NULL, NULL, on_access, s, MHD_OPTION_ARRAY,
                            opt, MHD_OPTION_END);
    if (!s->d) {
        int e = errno;
        inferd_http_server_destroy(s);
        return inferd_error_set(err, INFERD_EUNAVAIL, "cannot listen on %s port %d: %s",
                                o->host ? o->host : "127.0.0.1", o->port,
                                e ? strerror(e) : "libmicrohttpd failed to start");
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_BIND_PORT);
    s->port = info ? info->port : o->port;
    *out = s;
    return 0;
}

int inferd_http_server_port(const inferd_http_server *s) { return s->port; }

void inferd_http_server_quiesce(inferd_http_server *s) {
    if (!s || atomic_exchange(&s->quiescing, 1))
        return;
    MHD_socket fd = MHD_quiesce_daemon(s->d);
    if (fd != MHD_INVALID_SOCKET) {
        // A polling thread still inside poll(2) holds the socket open past close(): shut it
        // down first, so that it stops listening now (new connections are refused).
        shutdown(fd, SHUT_RDWR);
        close(fd);
    }
}

int inferd_http_server_active(const inferd_http_server *s) {
    pthread_mutex_lock((pthread_mutex_t *)&s->lock);
    int n = s->active;
    pthread_mutex_unlock((pthread_mutex_t *)&s->lock);
    return n;
}

int inferd_http_server_wait_idle(inferd_http_server *s, int64_t timeout_ms) {
    int64_t until = inferd_now_ns() + timeout_ms * 1000000;
    pthread_mutex_lock(&s->lock);
    while (s->active > 0) {
        int64_t left = until - inferd_now_ns();
        if (left <= 0)
            break;
        // The condvar uses CLOCK_REALTIME; wait in short slices so clock jumps do no harm.
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        int64_t slice = left < 50000000 ? left : 50000000;
        ts.tv_nsec += slice;
        ts.tv_sec += ts.tv_nsec / 1000000000;
        ts.tv_nsec %= 1000000000;
        pthread_cond_timedwait(&s->idle_cv, &s->lock, &ts);
    }
    int left = s->active;
    pthread_mutex_unlock(&s->lock);
    return left == 0 ? 0 : INFERD_EUNAVAIL;
}

void inferd_http_server_destroy(inferd_http_server *s) {
    if (!s)
        return;
    if (s->d)
        MHD_stop_daemon(s->d);
    pthread_cond_destroy(&s->idle_cv);
    pthread_mutex_destroy(&s->lock);
    inferd_free(s);
}

const char *inferd_http_request_method(const inferd_http_request *r) { return r->method; }
const char *inferd_http_request_path(const inferd_http_request *r) { return r->path; }

const char *inferd_http_request_header(const inferd_http_request *r, const char *name) {
    return MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, name);
}

const char *inferd_http_request_query(const inferd_http_request *r, const char *key) {
    return MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, key);
}

const uint8_t *inferd_http_request_body(const inferd_http_request *r, size_t *len) {
    *len = r->len;
    return r->body;
}

int64_t inferd_http_request_arrival_ns(const inferd_http_request *r) { return r->arrival_ns; }
