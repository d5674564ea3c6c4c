#include "cli/loadgen_http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "util/alloc.h"
#include "util/clock.h"

enum {
    ST_STATUS,      /* reading the status line */
    ST_HEADERS,     /* reading header lines */
    ST_BODY_LENGTH, /* Content-Length body */
    ST_CHUNK_SIZE,  /* a chunk-size line */
    ST_CHUNK_DATA,  /* chunk bytes */
    ST_CHUNK_END,   /* the CRLF after chunk bytes */
    ST_TRAILERS,    /* trailer lines after the last chunk */
    ST_BODY_CLOSE,  /* body delimited by the connection closing */
    ST_DONE,
};

/* ---- URLs and requests ---------------------------------------------------------------- */

int inferd_loadgen_http_parse_url(const char *url, struct sockaddr_in *addr, char *host,
                                  size_t host_cap, inferd_error *err) {
    static const char supported[] = "only http://IPv4:port URLs are supported (for example "
                                    "http://127.0.0.1:8000)";
    if (strncmp(url, "http://", 7) != 0) {
        if (strncmp(url, "https://", 8) == 0)
            return inferd_error_set(err, INFERD_EINVAL, "bad URL '%s': https is not supported; %s",
                                    url, supported);
        return inferd_error_set(err, INFERD_EINVAL, "bad URL '%s': %s", url, supported);
    }
    const char *h = url + 7;
    size_t hlen = strcspn(h, ":/?#@[");
    const char *rest = h + hlen;
    if (*rest == '@' || *rest == '[' || hlen == 0)
        return inferd_error_set(err, INFERD_EINVAL, "bad URL '%s': %s", url, supported);
    char name[64];
    if (hlen >= sizeof name)
        return inferd_error_set(err, INFERD_EINVAL, "bad URL '%s': %s", url, supported);
    memcpy(name, h, hlen);
    name[hlen] = 0;
    long port = 80;
    if (*rest == ':') {
        char *end;
        errno = 0;
        port = strtol(rest + 1, &end, 10);
        if (end == rest + 1 || errno || port < 1 || port > 65535)
            return inferd_error_set(err, INFERD_EINVAL, "bad URL '%s': port must be 1..65535", url);
        rest = end;
    }
    if (rest[0] == '/' && rest[1] == 0)
        rest++;
    if (*rest)
        return inferd_error_set(err, INFERD_EINVAL,
                                "bad URL '%s': give only scheme, host and port (use --path for "
                                "the endpoint); %s",
                                url, supported);
    struct in_addr in;
    if (strcasecmp(name, "localhost") == 0)
        in.s_addr = htonl(INADDR_LOOPBACK);
    else if (inet_pton(AF_INET, name, &in) != 1)
        return inferd_error_set(err, INFERD_EINVAL,
                                "bad URL '%s': host '%s' is not an IPv4 address (names other than "
                                "localhost are not resolved); %s",
                                url, name, supported);
    memset(addr, 0, sizeof *addr);
    addr->sin_family = AF_INET;
    addr->sin_port = htons((uint16_t)port);
    addr->sin_addr = in;
    char ip[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &in, ip, sizeof ip);
    if ((size_t)snprintf(host, host_cap, "%s:%ld", ip, port) >= host_cap)
        return inferd_error_set(err, INFERD_EINVAL, "host buffer too small");
    return 0;
}

int inferd_loadgen_http_format_request(const char *method, const char *host, const char *path,
                                       const char *extra_headers, const void *body, size_t body_len,
                                       char **out, size_t *out_len, inferd_error *err) {
    int with_length = body_len > 0 || (strcmp(method, "GET") && strcmp(method, "HEAD"));
    char length[48] = "";
    if (with_length)
        snprintf(length, sizeof length, "Content-Length: %zu\r\n", body_len);
    const char *extra = extra_headers ? extra_headers : "";
    int head_len = snprintf(NULL, 0, "%s %s HTTP/1.1\r\nHost: %s\r\n%s%s\r\n", method, path, host,
                            length, extra);
    if (head_len < 0)
        return inferd_error_set(err, INFERD_EINTERNAL, "cannot format the request");
    char *buf = inferd_malloc(NULL, (size_t)head_len + body_len + 1);
    if (!buf)
        return inferd_error_set(err, INFERD_EINTERNAL, "out of memory for a %zu-byte request",
                                (size_t)head_len + body_len);
    snprintf(buf, (size_t)head_len + 1, "%s %s HTTP/1.1\r\nHost: %s\r\n%s%s\r\n", method, path,
             host, length, extra);
    if (body_len)
        memcpy(buf + head_len, body, body_len);
    buf[head_len + body_len] = 0;
    *out = buf;
    *out_len = (size_t)head_len + body_len;
    return 0;
}

/* ---- response parser ------------------------------------------------------------------ */

void inferd_loadgen_http_parser_init(inferd_loadgen_http_parser *p, int keep_body,
                                     size_t max_body) {
    memset(p, 0, offsetof(inferd_loadgen_http_parser, line));
    p->keep_body = keep_body;
    p->max_body = max_body;
    inferd_loadgen_http_parser_reset(p);
}

void inferd_loadgen_http_parser_reset(inferd_loadgen_http_parser *p) {
    p->status = 0;
    p->keep_alive = 0;
    p->chunked = 0;
    p->content_length = -1;
    p->body_bytes = 0;
    p->body_len = 0;
    if (p->body)
        p->body[0] = 0;
    p->state = ST_STATUS;
    p->minor = 1;
    p->saw_conn = 0;
    p->remaining = 0;
    p->header_bytes = 0;
    p->line_len = 0;
}

void inferd_loadgen_http_parser_deinit(inferd_loadgen_http_parser *p) {
    inferd_free(p->body);
    p->body = NULL;
    p->body_cap = 0;
}

int inferd_loadgen_http_parser_started(const inferd_loadgen_http_parser *p) {
    return p->state != ST_STATUS || p->line_len > 0 || p->header_bytes > 0;
}

static int take_body(inferd_loadgen_http_parser *p, const char *data, size_t n, inferd_error *err) {
    p->body_bytes += n;
    if (!p->keep_body)
        return 0;
    if (p->body_len + n > p->max_body)
        return inferd_error_set(err, INFERD_ETOOLARGE, "response body over %zu bytes", p->max_body);
    if (p->body_len + n + 1 > p->body_cap) {
        size_t cap = p->body_cap ? p->body_cap : 4096;
        while (cap < p->body_len + n + 1)
            cap *= 2;
        char *b = inferd_realloc(NULL, p->body, cap);
        if (!b)
            return inferd_error_set(err, INFERD_EINTERNAL, "out of memory for a response body");
        p->body = b;
        p->body_cap = cap;
    }
    memcpy(p->body + p->body_len, data, n);
    p->body_len += n;
    p->body[p->body_len] = 0;
    return 0;
}

static int parse_status_line(inferd_loadgen_http_parser *p, const char *s, inferd_error *err) {
    // "HTTP/1.1 200 OK": the reason phrase may be empty or missing.
    if (strncmp(s, "HTTP/1.", 7) != 0 || (s[7] != '0' && s[7] != '1') || s[8] != ' ')
        return inferd_error_set(err, INFERD_EINVAL, "bad status line '%.60s'", s);
    if (s[9] < '1' || s[9] > '5' || s[10] < '0' || s[10] > '9' || s[11] < '0' || s[11] > '9' ||
        (s[12] != ' ' && s[12] != 0))
        return inferd_error_set(err, INFERD_EINVAL, "bad status code in '%.60s'", s);
    p->minor = s[7] - '0';
    p->status = (s[9] - '0') * 100 + (s[10] - '0') * 10 + (s[11] - '0');
    return 0;
}

/* True if the comma-separated list value contains token (case-insensitive). */
static int has_token(const char *value, const char *token) {
    size_t tl = strlen(token);
    for (const char *s = value; *s;) {
        while (*s == ' ' || *s == '\t' || *s == ',')
            s++;
        size_t n = strcspn(s, ",");
        size_t m = n;
        while (m && (s[m - 1] == ' ' || s[m - 1] == '\t'))
            m--;
        if (m == tl && strncasecmp(s, token, tl) == 0)
            return 1;
        s += n;
    }
    return 0;
}

static int parse_header_line(inferd_loadgen_http_parser *p, char *s, inferd_error *err) {
    char *colon = strchr(s, ':');
    if (!colon || colon == s)
        return inferd_error_set(err, INFERD_EINVAL, "bad header line '%.60s'", s);
    *colon = 0;
    char *v = colon + 1;
    while (*v == ' ' || *v == '\t')
        v++;
    size_t vl = strlen(v);
    while (vl && (v[vl - 1] == ' ' || v[vl - 1] == '\t'))
        v[--vl] = 0;
    if (strcasecmp(s, "Content-Length") == 0) {
        if (vl == 0 || vl > 18 || strspn(v, "0123456789") != vl)
            return inferd_error_set(err, INFERD_EINVAL, "bad Content-Length '%.30s'", v);
        int64_t n = 0;
        for (size_t i = 0; i < vl; i++)
            n = n * 10 + (v[i] - '0');
        if (p->content_length >= 0 && p->content_length != n)
            return inferd_error_set(err, INFERD_EINVAL, "conflicting Content-Length headers");
        p->content_length = n;
    } else if (strcasecmp(s, "Transfer-Encoding") == 0) {
        if (has_token(v, "chunked"))
            p->chunked = 1;
        else if (vl && !has_token(v, "identity"))
            return inferd_error_set(err, INFERD_EUNSUPPORTED,
                                    "unsupported Transfer-Encoding '%.30s'", v);
    } else if (strcasecmp(s, "Connection") == 0) {
        if (has_token(v, "close"))
            p->saw_conn = 1;
        else if (has_token(v, "keep-alive") && p->saw_conn == 0)
            p->saw_conn = 2;
    }
    return 0;
}

/* Called at the blank line that ends the headers: decide how the body is delimited. */
static int end_headers(inferd_loadgen_http_parser *p) {
    if (p->status < 200) {
        // An interim response (100 Continue): the real one follows.
        inferd_loadgen_http_parser_reset(p);
        return 0;
    }
    p->keep_alive = p->saw_conn == 1 ? 0 : p->saw_conn == 2 ? 1 : p->minor >= 1;
    if (p->status == 204 || p->status == 304) {
        p->state = ST_DONE;
    } else if (p->chunked) {
        p->content_length = -1; // chunked wins over Content-Length (RFC 9112 6.3)
        p->state = ST_CHUNK_SIZE;
    } else if (p->content_length >= 0) {
        p->remaining = p->content_length;
        p->state = p->remaining ? ST_BODY_LENGTH : ST_DONE;
    } else {
        // Neither length nor chunking: the body runs until the server closes.
        p->keep_alive = 0;
        p->state = ST_BODY_CLOSE;
    }
    return 0;
}

static int parse_chunk_size(inferd_loadgen_http_parser *p, const char *s, inferd_error *err) {
    int64_t n = 0;
    size_t i = 0;
    for (; s[i]; i++) {
        int c = s[i], d;
        if (c >= '0' && c <= '9')
            d = c - '0';
        else if (c >= 'a' && c <= 'f')
            d = c - 'a' + 10;
        else if (c >= 'A' && c <= 'F')
            d = c - 'A' + 10;
        else
            break;
        if (n > (INT64_MAX >> 4))
            return inferd_error_set(err, INFERD_EINVAL, "chunk size too large");
        n = n * 16 + d;
    }
    // After the digits only whitespace and chunk extensions (";name=value") may follow.
    if (i == 0 || (s[i] && s[i] != ';' && s[i] != ' ' && s[i] != '\t'))
        return inferd_error_set(err, INFERD_EINVAL, "bad chunk size line '%.30s'", s);
    p->remaining = n;
    p->state = n ? ST_CHUNK_DATA : ST_TRAILERS;
    return 0;
}

/* Handles one complete line (CR and LF removed) in the current state. */
static int handle_line(inferd_loadgen_http_parser *p, char *s, inferd_error *err) {
    switch (p->state) {
    case ST_STATUS:
        if (s[0] == 0 && p->header_bytes <= 2)
            return 0; // tolerate a stray CRLF before the status line
        p->state = ST_HEADERS;
        return parse_status_line(p, s, err);
    case ST_HEADERS:
        if (s[0] == 0)
            return end_headers(p);
        return parse_header_line(p, s, err);
    case ST_CHUNK_SIZE:
        return parse_chunk_size(p, s, err);
    case ST_CHUNK_END:
        if (s[0] != 0)
            return inferd_error_set(err, INFERD_EINVAL, "chunk data longer than its size");
        p->state = ST_CHUNK_SIZE;
        return 0;
    case ST_TRAILERS:
        if (s[0] == 0)
            p->state = ST_DONE;
        return 0;
    }
    return inferd_error_set(err, INFERD_EINTERNAL, "parser in state %d got a line", p->state);
}

static int in_line_state(int state) {
    return state == ST_STATUS || state == ST_HEADERS || state == ST_CHUNK_SIZE ||
           state == ST_CHUNK_END || state == ST_TRAILERS;
}

int inferd_loadgen_http_parse(inferd_loadgen_http_parser *p, const char *data, size_t len,
                              size_t *consumed, inferd_error *err) {
    size_t i = 0;
    while (i < len && p->state != ST_DONE) {
        if (in_line_state(p->state)) {
            const char *nl = memchr(data + i, '\n', len - i);
            size_t n = nl ? (size_t)(nl - (data + i)) : len - i;
            // Headers and trailers count against one budget, so a server cannot make us
            // read forever without finishing a response.
            if (p->state != ST_CHUNK_SIZE && p->state != ST_CHUNK_END) {
                p->header_bytes += n + (nl ? 1 : 0);
                if (p->header_bytes > INFERD_LOADGEN_HTTP_MAX_HEADERS)
                    return inferd_error_set(err, INFERD_ETOOLARGE, "response headers over %d bytes",
                                            INFERD_LOADGEN_HTTP_MAX_HEADERS);
            }
            if (p->line_len + n >= sizeof p->line)
                return inferd_error_set(err, INFERD_ETOOLARGE, "response line over %d bytes",
                                        INFERD_LOADGEN_HTTP_MAX_LINE);
            if (memchr(data + i, 0, n))
                return inferd_error_set(err, INFERD_EINVAL, "NUL byte in a response line");
            memcpy(p->line + p->line_len, data + i, n);
            p->line_len += n;
            i += n;
            if (!nl)
                break;
            i++; // the '\n'
            if (p->line_len && p->line[p->line_len - 1] == '\r')
                p->line_len--;
            p->line[p->line_len] = 0;
            p->line_len = 0;
            int rc = handle_line(p, p->line, err);
            if (rc < 0)
                return rc;
            continue;
        }
        size_t avail = len - i;
        if (p->state == ST_BODY_CLOSE) {
            int rc = take_body(p, data + i, avail, err);
            if (rc < 0)
                return rc;
            i = len;
            break;
        }
        // ST_BODY_LENGTH or ST_CHUNK_DATA.
        size_t n = (int64_t)avail < p->remaining ? avail : (size_t)p->remaining;
        int rc = take_body(p, data + i, n, err);
        if (rc < 0)
            return rc;
        i += n;
        p->remaining -= (int64_t)n;
        if (p->remaining == 0)
            p->state = p->state == ST_BODY_LENGTH ? ST_DONE : ST_CHUNK_END;
    }
    *consumed = i;
    return p->state == ST_DONE;
}

int inferd_loadgen_http_parse_eof(inferd_loadgen_http_parser *p, inferd_error *err) {
    if (p->state == ST_BODY_CLOSE) {
        p->state = ST_DONE;
        return 1;
    }
    if (p->state == ST_DONE)
        return 1;
    if (!inferd_loadgen_http_parser_started(p))
        return inferd_error_set(err, INFERD_EUNAVAIL,
                                "server closed the connection without "
                                "responding");
    return inferd_error_set(err, INFERD_EUNAVAIL, "server closed the connection mid-response");
}

/* ---- blocking round trip -------------------------------------------------------------- */

static int wait_fd(int fd, short events, int64_t deadline_ns, inferd_error *err) {
    for (;;) {
        int64_t left_ms = (deadline_ns - inferd_now_ns()) / 1000000;
        if (left_ms <= 0)
            return inferd_error_set(err, INFERD_ECANCELLED, "timed out waiting for the server");
        struct pollfd pfd = {.fd = fd, .events = events};
        int r = poll(&pfd, 1, (int)(left_ms > 60000 ? 60000 : left_ms));
        if (r > 0)
            return 0;
        if (r < 0 && errno != EINTR)
            return inferd_error_set(err, INFERD_EINTERNAL, "poll: %s", strerror(errno));
    }
}

int inferd_loadgen_http_roundtrip(const struct sockaddr_in *addr, const char *request,
                                  size_t request_len, int timeout_ms, inferd_loadgen_http_parser *p,
                                  inferd_error *err) {
    int64_t deadline = inferd_now_ns() + (int64_t)timeout_ms * 1000000;
    char ip[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &addr->sin_addr, ip, sizeof ip);
    int port = ntohs(addr->sin_port);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return inferd_error_set(err, INFERD_EINTERNAL, "socket: %s", strerror(errno));
    int rc = 0;
    if (connect(fd, (const struct sockaddr *)addr, sizeof *addr) < 0) {
        if (errno != EINPROGRESS) {
            rc = inferd_error_set(err, INFERD_EUNAVAIL, "cannot connect to %s:%d: %s", ip, port,
                                  strerror(errno));
            goto out;
        }
        if ((rc = wait_fd(fd, POLLOUT, deadline, err)) < 0)
            goto out;
        int soerr = 0;
        socklen_t sl = sizeof soerr;
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl);
        if (soerr) {
            rc = inferd_error_set(err, INFERD_EUNAVAIL, "cannot connect to %s:%d: %s", ip, port,
                                  strerror(soerr));
            goto out;
        }
    }
    for (size_t sent = 0; sent < request_len;) {
        ssize_t n = send(fd, request + sent, request_len - sent, MSG_NOSIGNAL);
        if (n > 0) {
            sent += (size_t)n;
        } else if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
            if ((rc = wait_fd(fd, POLLOUT, deadline, err)) < 0)
                goto out;
        } else {
            rc = inferd_error_set(err, INFERD_EUNAVAIL, "sending to %s:%d: %s", ip, port,
                                  strerror(errno));
            goto out;
        }
    }
    char buf[16384];
    for (;;) {
        ssize_t n = recv(fd, buf, sizeof buf, 0);
        if (n > 0) {
            size_t used;
            int r = inferd_loadgen_http_parse(p, buf, (size_t)n, &used, err);
            if (r < 0) {
                rc = r;
                goto out;
            }
            if (r == 1)
                goto out;
        } else if (n == 0) {
            int r = inferd_loadgen_http_parse_eof(p, err);
            rc = r < 0 ? r : 0;
            goto out;
        } else if (errno == EAGAIN || errno == EINTR) {
            if ((rc = wait_fd(fd, POLLIN, deadline, err)) < 0)
                goto out;
        } else {
            rc = inferd_error_set(err, INFERD_EUNAVAIL, "reading from %s:%d: %s", ip, port,
                                  strerror(errno));
            goto out;
        }
    }
out:
    close(fd);
    return rc;
}
