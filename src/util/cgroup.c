/* cgroup.c: see cgroup.h for the rules (which files, which folders, rounding).
 *
 * Locks: none. The published budget is written before the threads that read it start.
 */
#include "util/cgroup.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define DEFAULT_ROOT "/sys/fs/cgroup"
#define DEFAULT_PROC_CGROUP "/proc/self/cgroup"

/* The kernel writes "unlimited" memory as LONG_MAX rounded down to a page; anything this large
 * is no limit in practice. */
#define MEMORY_UNLIMITED_FLOOR (1LL << 62)

/* /proc/self/cgroup lines are short, but a process may sit in a deep hierarchy; 64 KiB covers
 * any real file, and a longer one is treated as unreadable rather than cut. */
#define PROC_CGROUP_MAX (64 * 1024)

static const char *root_of(const inferd_cgroup_paths *p) {
    return p && p->root ? p->root : DEFAULT_ROOT;
}

static const char *proc_of(const inferd_cgroup_paths *p) {
    return p && p->proc_cgroup ? p->proc_cgroup : DEFAULT_PROC_CGROUP;
}

/* Reads a whole small file into buf (NUL-terminated, trailing whitespace trimmed). Returns the
 * length, or -1 when the file is missing, unreadable or does not fit. */
static ssize_t read_small(const char *path, char *buf, size_t size) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    size_t len = 0;
    for (;;) {
        if (len == size - 1) {
            // Full: a file longer than the buffer is not one we understand.
            char extra;
            ssize_t more = read(fd, &extra, 1);
            close(fd);
            if (more != 0)
                return -1;
            break;
        }
        ssize_t r = read(fd, buf + len, size - 1 - len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            close(fd);
            return -1;
        }
        if (r == 0) {
            close(fd);
            break;
        }
        len += (size_t)r;
    }
    while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == ' ' || buf[len - 1] == '\t' ||
                       buf[len - 1] == '\r'))
        len--;
    buf[len] = '\0';
    return (ssize_t)len;
}

static int is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* Parses a whole decimal integer (optionally negative). Returns 0 or -1. */
static int parse_i64(const char *s, int64_t *out) {
    if (!*s)
        return -1;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end)
        return -1;
    *out = v;
    return 0;
}

/* Does the comma-separated controller list hold exactly this controller ("cpu" is in
 * "cpu,cpuacct" but not in "cpuacct" or "cpuset")? */
static int has_controller(const char *list, size_t len, const char *want) {
    size_t wlen = strlen(want);
    size_t i = 0;
    while (i <= len) {
        size_t j = i;
        while (j < len && list[j] != ',')
            j++;
        if (j - i == wlen && !memcmp(list + i, want, wlen))
            return 1;
        i = j + 1;
    }
    return 0;
}

/* Where one controller's files are: the hierarchy's folder under the root and the process's
 * path in it. */
typedef struct location {
    int version; /* 1, 2, or 0 when not found */
    char base[PATH_MAX];
    char rel[PATH_MAX]; /* "" or "/a/b": the longest suffix of the path that exists */
} location;

/* Rejects paths that could climb out of the hierarchy; the kernel never writes them, but the
 * file is read from a path a test (or a strange mount) chose. */
static int path_is_safe(const char *path) {
    if (path[0] != '/')
        return 0;
    for (const char *p = path; (p = strstr(p, "..")) != NULL; p += 2) {
        int starts = p[-1] == '/';
        int ends = p[2] == '/' || p[2] == '\0';
        if (starts && ends)
            return 0;
    }
    return 1;
}

/* Sets loc->rel to the longest suffix of path (by whole components) under loc->base that is a
 * folder: the full path without a cgroup namespace, less with one, "" at the mount root. */
static int find_rel(location *loc, const char *path) {
    char full[PATH_MAX * 2];
    const char *s = path;
    while (*s) {
        if (strcmp(s, "/") != 0) {
            int n = snprintf(full, sizeof full, "%s%s", loc->base, s);
            if (n > 0 && (size_t)n < sizeof full && (size_t)(n) < PATH_MAX && is_dir(full)) {
                snprintf(loc->rel, sizeof loc->rel, "%s", s);
                // Drop a trailing slash so that walking up strips whole components.
                size_t l = strlen(loc->rel);
                while (l > 0 && loc->rel[l - 1] == '/')
                    loc->rel[--l] = '\0';
                return 0;
            }
        }
        const char *next = strchr(s + 1, '/');
        if (!next)
            break;
        s = next;
    }
    loc->rel[0] = '\0';
    return is_dir(loc->base) ? 0 : -1;
}

/* Finds the hierarchy carrying `controller` from the /proc/self/cgroup text. A v1 hierarchy
 * with the controller wins over the v2 line, since a controller bound to v1 is absent from
 * v2. */
static void locate(const inferd_cgroup_paths *paths, const char *controller, location *loc) {
    memset(loc, 0, sizeof *loc);
    char *text = malloc(PROC_CGROUP_MAX);
    if (!text)
        return;
    if (read_small(proc_of(paths), text, PROC_CGROUP_MAX) < 0) {
        free(text);
        return;
    }
    const char *root = root_of(paths);
    char v1_ctrl[256] = "", v1_path[PATH_MAX] = "", v2_path[PATH_MAX] = "";
    int have_v1 = 0, have_v2 = 0;
    for (char *line = text; line && *line;) {
        char *nl = strchr(line, '\n');
        if (nl)
            *nl = '\0';
        // "ID:controllers:path"; the path may itself hold colons, so split on the first two.
        char *c1 = strchr(line, ':');
        char *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
        if (c2) {
            const char *ctrls = c1 + 1;
            size_t clen = (size_t)(c2 - ctrls);
            const char *path = c2 + 1;
            if (!strncmp(line, "0:", 2) && clen == 0 && !have_v2 && strlen(path) < PATH_MAX) {
                snprintf(v2_path, sizeof v2_path, "%s", path);
                have_v2 = 1;
            } else if (clen > 0 && clen < sizeof v1_ctrl && !have_v1 &&
                       has_controller(ctrls, clen, controller) && strlen(path) < PATH_MAX) {
                memcpy(v1_ctrl, ctrls, clen);
                v1_ctrl[clen] = '\0';
                snprintf(v1_path, sizeof v1_path, "%s", path);
                have_v1 = 1;
            }
        }
        line = nl ? nl + 1 : NULL;
    }
    free(text);

    if (have_v1 && path_is_safe(v1_path)) {
        // The hierarchy is mounted as "cpu,cpuacct" (the kernel's order) or under the
        // controller's own name (often a symlink to the combined one).
        const char *names[2] = {v1_ctrl, controller};
        for (int i = 0; i < 2; i++) {
            int n = snprintf(loc->base, sizeof loc->base, "%s/%s", root, names[i]);
            if (n > 0 && (size_t)n < sizeof loc->base && find_rel(loc, v1_path) == 0) {
                loc->version = 1;
                return;
            }
        }
    }
    if (have_v2 && path_is_safe(v2_path)) {
        snprintf(loc->base, sizeof loc->base, "%s", root);
        if (find_rel(loc, v2_path) == 0) {
            loc->version = 2;
            return;
        }
    }
    loc->version = 0;
}

/* Calls visit on the folder of the process's cgroup and then on each parent up to the mount
 * root. Stops at the first negative return and passes it on. */
static int walk_up(const location *loc, int (*visit)(const char *dir, void *ctx), void *ctx) {
    char rel[PATH_MAX];
    snprintf(rel, sizeof rel, "%s", loc->rel);
    char dir[PATH_MAX * 2];
    int status = 0;
    for (;;) {
        snprintf(dir, sizeof dir, "%s%s", loc->base, rel);
        int rc = visit(dir, ctx);
        if (rc < 0 && status == 0)
            status = rc;
        char *slash = strrchr(rel, '/');
        if (!slash)
            break;
        *slash = '\0';
    }
    return status;
}

/* ---- CPU ---- */

typedef struct cpu_walk {
    int version;
    inferd_cgroup_quota *best;
    inferd_error *err;
} cpu_walk;

/* Keeps q/p if it is tighter than the best so far (the leaf wins ties, being visited first). */
static void consider_quota(cpu_walk *w, const char *dir, int64_t q, int64_t p) {
    inferd_cgroup_quota *b = w->best;
    if (b->version && (double)q / (double)p >= (double)b->quota_us / (double)b->period_us)
        return;
    b->version = w->version;
    b->quota_us = q;
    b->period_us = p;
    snprintf(b->dir, sizeof b->dir, "%s", dir);
}

static int visit_cpu_v2(const char *dir, void *ctx) {
    cpu_walk *w = ctx;
    char path[PATH_MAX * 2 + 16], buf[128];
    snprintf(path, sizeof path, "%s/cpu.max", dir);
    if (read_small(path, buf, sizeof buf) < 0)
        return 0; // no file here: no limit at this level (the v2 root has none)
    // "max 100000", "150000 100000", or (older kernels) a quota alone with the default period.
    char first[64];
    const char *sp = strchr(buf, ' ');
    size_t flen = sp ? (size_t)(sp - buf) : strlen(buf);
    if (flen >= sizeof first)
        flen = sizeof first - 1;
    memcpy(first, buf, flen);
    first[flen] = '\0';
    int unlimited = !strcmp(first, "max");
    int64_t q = 0, p = 100000;
    int bad = !unlimited && (parse_i64(first, &q) < 0 || q <= 0);
    if (!bad && sp)
        bad = parse_i64(sp + 1, &p) < 0 || p <= 0;
    if (bad)
        return inferd_error_set(w->err, INFERD_EINVAL, "%.300s: cannot parse '%.40s'", path, buf);
    if (!unlimited)
        consider_quota(w, dir, q, p);
    return 0;
}

static int visit_cpu_v1(const char *dir, void *ctx) {
    cpu_walk *w = ctx;
    char path[PATH_MAX * 2 + 32], buf[64];
    snprintf(path, sizeof path, "%s/cpu.cfs_quota_us", dir);
    if (read_small(path, buf, sizeof buf) < 0)
        return 0;
    int64_t q, p;
    if (parse_i64(buf, &q) < 0 || (q <= 0 && q != -1))
        return inferd_error_set(w->err, INFERD_EINVAL, "%.300s: cannot parse '%.40s'", path, buf);
    if (q == -1)
        return 0; // no quota at this level
    snprintf(path, sizeof path, "%s/cpu.cfs_period_us", dir);
    if (read_small(path, buf, sizeof buf) < 0)
        return inferd_error_set(w->err, INFERD_EINVAL, "%.300s: missing beside a quota", path);
    if (parse_i64(buf, &p) < 0 || p <= 0)
        return inferd_error_set(w->err, INFERD_EINVAL, "%.300s: cannot parse '%.40s'", path, buf);
    consider_quota(w, dir, q, p);
    return 0;
}

int inferd_cgroup_read_cpu_quota(const inferd_cgroup_paths *paths, inferd_cgroup_quota *out,
                                 inferd_error *err) {
    memset(out, 0, sizeof *out);
    location *loc = malloc(sizeof *loc);
    if (!loc)
        return 0; // no limit known; the host's count still bounds the budget
    locate(paths, "cpu", loc);
    int rc = 0;
    if (loc->version) {
        cpu_walk w = {.version = loc->version, .best = out, .err = err};
        rc = walk_up(loc, loc->version == 2 ? visit_cpu_v2 : visit_cpu_v1, &w);
    }
    free(loc);
    return rc;
}

/* ---- memory ---- */

typedef struct mem_walk {
    const char *file;
    int64_t best; /* -1: none yet */
    inferd_error *err;
} mem_walk;

static int visit_memory(const char *dir, void *ctx) {
    mem_walk *w = ctx;
    char path[PATH_MAX * 2 + 32], buf[64];
    snprintf(path, sizeof path, "%s/%s", dir, w->file);
    if (read_small(path, buf, sizeof buf) < 0 || !strcmp(buf, "max"))
        return 0;
    int64_t v;
    if (parse_i64(buf, &v) < 0 || (v < 0 && v != -1))
        return inferd_error_set(w->err, INFERD_EINVAL, "%.300s: cannot parse '%.40s'", path, buf);
    if (v == -1 || v >= MEMORY_UNLIMITED_FLOOR)
        return 0;
    if (w->best < 0 || v < w->best)
        w->best = v;
    return 0;
}

int inferd_cgroup_read_memory_limit(const inferd_cgroup_paths *paths, int64_t *out,
                                    inferd_error *err) {
    *out = -1;
    location *loc = malloc(sizeof *loc);
    if (!loc)
        return 0;
    locate(paths, "memory", loc);
    int rc = 0;
    if (loc->version) {
        mem_walk w = {.file = loc->version == 2 ? "memory.max" : "memory.limit_in_bytes",
                      .best = -1,
                      .err = err};
        rc = walk_up(loc, visit_memory, &w);
        *out = w.best;
    }
    free(loc);
    return rc;
}

/* ---- the budget ---- */

void inferd_cgroup_budget_compute(const inferd_cgroup_quota *quota, int host_cpus,
                                  int affinity_cpus, inferd_cgroup_budget *out) {
    memset(out, 0, sizeof *out);
    out->host_cpus = host_cpus > 0 ? host_cpus : 1;
    out->affinity_cpus = affinity_cpus > 0 ? affinity_cpus : 0;
    out->memory_limit_bytes = -1;
    out->threads = out->host_cpus;
    out->source = INFERD_CGROUP_SOURCE_HOST;
    snprintf(out->reason, sizeof out->reason, "host: %d online CPUs", out->host_cpus);

    // A mask holding every CPU restricts nothing, so it is named only when it is smaller.
    if (out->affinity_cpus > 0 && out->affinity_cpus < out->threads) {
        out->threads = out->affinity_cpus;
        out->source = INFERD_CGROUP_SOURCE_AFFINITY;
        snprintf(out->reason, sizeof out->reason, "affinity: %d of %d CPUs", out->affinity_cpus,
                 out->host_cpus);
    }

    if (quota && quota->version && quota->quota_us > 0 && quota->period_us > 0) {
        out->quota = *quota; // kept even when not binding: /metrics shows it
        // Rounded down, at least 1: see the header for why not up.
        int64_t whole = quota->quota_us / quota->period_us;
        int n = whole < 1 ? 1 : whole > INT_MAX ? INT_MAX : (int)whole;
        if (n <= out->threads) {
            out->threads = n;
            out->source = quota->version == 2 ? INFERD_CGROUP_SOURCE_V2 : INFERD_CGROUP_SOURCE_V1;
            double cpus = (double)quota->quota_us / (double)quota->period_us;
            if (quota->version == 2)
                snprintf(out->reason, sizeof out->reason, "cgroup v2 cpu.max %lld %lld: %.2f CPUs",
                         (long long)quota->quota_us, (long long)quota->period_us, cpus);
            else
                snprintf(out->reason, sizeof out->reason,
                         "cgroup v1 cfs quota %lld period %lld: %.2f CPUs",
                         (long long)quota->quota_us, (long long)quota->period_us, cpus);
        }
    }
}

static int count_affinity(void) {
    // cpu_set_t holds 1024 CPUs; larger machines need a bigger mask, or the call fails.
    for (int n = CPU_SETSIZE; n <= 64 * 1024; n *= 2) {
        cpu_set_t *set = CPU_ALLOC(n);
        if (!set)
            return 0;
        size_t size = CPU_ALLOC_SIZE(n);
        CPU_ZERO_S(size, set);
        if (sched_getaffinity(0, size, set) == 0) {
            int count = CPU_COUNT_S(size, set);
            CPU_FREE(set);
            return count;
        }
        CPU_FREE(set);
        if (errno != EINVAL)
            return 0;
    }
    return 0;
}

int inferd_cgroup_budget_detect(const inferd_cgroup_paths *paths, inferd_cgroup_budget *out,
                                inferd_error *err) {
    long host = sysconf(_SC_NPROCESSORS_ONLN);
    inferd_cgroup_quota q;
    inferd_error cpu_err = {0}, mem_err = {0};
    int rc_cpu = inferd_cgroup_read_cpu_quota(paths, &q, &cpu_err);
    inferd_cgroup_budget_compute(&q, host > 0 && host < INT_MAX ? (int)host : 1, count_affinity(),
                                 out);
    int64_t mem;
    int rc_mem = inferd_cgroup_read_memory_limit(paths, &mem, &mem_err);
    out->memory_limit_bytes = mem;
    if (rc_cpu < 0)
        return inferd_error_set(err, rc_cpu, "%s", cpu_err.msg);
    if (rc_mem < 0)
        return inferd_error_set(err, rc_mem, "%s", mem_err.msg);
    return 0;
}

void inferd_cgroup_budget_override(inferd_cgroup_budget *b, int threads) {
    char was[sizeof b->reason];
    snprintf(was, sizeof was, "%s", b->reason);
    int detected = b->threads;
    b->threads = threads > 0 ? threads : 1;
    b->source = INFERD_CGROUP_SOURCE_FLAG;
    snprintf(b->reason, sizeof b->reason, "--threads %d; detected %d from %.140s", b->threads,
             detected, was);
}

const char *inferd_cgroup_source_name(inferd_cgroup_source s) {
    switch (s) {
    case INFERD_CGROUP_SOURCE_HOST:
        return "host";
    case INFERD_CGROUP_SOURCE_AFFINITY:
        return "affinity";
    case INFERD_CGROUP_SOURCE_V1:
        return "cgroup_v1";
    case INFERD_CGROUP_SOURCE_V2:
        return "cgroup_v2";
    case INFERD_CGROUP_SOURCE_FLAG:
        return "flag";
    }
    return "unknown";
}

static inferd_cgroup_budget published;
static int have_published;

void inferd_cgroup_budget_publish(const inferd_cgroup_budget *b) {
    published = *b;
    have_published = 1;
}

const inferd_cgroup_budget *inferd_cgroup_budget_published(void) {
    return have_published ? &published : NULL;
}

int inferd_cgroup_budget_format_metrics(const inferd_cgroup_budget *b, char *buf, size_t size) {
    double quota = b->quota.version ? (double)b->quota.quota_us / (double)b->quota.period_us : 0;
    int n =
        snprintf(buf, size,
                 "# HELP inferd_thread_budget The compute thread budget; source says what set it.\n"
                 "# TYPE inferd_thread_budget gauge\n"
                 "inferd_thread_budget{source=\"%s\"} %d\n"
                 "# HELP inferd_cpu_quota_cores The cgroup CPU quota in CPUs (0: none).\n"
                 "# TYPE inferd_cpu_quota_cores gauge\n"
                 "inferd_cpu_quota_cores %.6g\n"
                 "# HELP inferd_cpu_affinity_cores CPUs in the process's affinity mask.\n"
                 "# TYPE inferd_cpu_affinity_cores gauge\n"
                 "inferd_cpu_affinity_cores %d\n"
                 "# HELP inferd_memory_limit_bytes The cgroup memory limit (0: none).\n"
                 "# TYPE inferd_memory_limit_bytes gauge\n"
                 "inferd_memory_limit_bytes %lld\n",
                 inferd_cgroup_source_name(b->source), b->threads, quota,
                 b->affinity_cpus ? b->affinity_cpus : b->host_cpus,
                 (long long)(b->memory_limit_bytes > 0 ? b->memory_limit_bytes : 0));
    if (n < 0 || (size_t)n >= size) {
        if (size > 0)
            buf[0] = '\0';
        return INFERD_ETOOLARGE;
    }
    return n;
}
