/* scan.c: see scan.h. No locks, no state. */
#include "repo/scan.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "backend/backend.h"
#include "util/alloc.h"
#include "util/log.h"

#define MAX_CONFIG_BYTES (1 << 20)

static int is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static int cmp_long(const void *a, const void *b) {
    long x = *(const long *)a, y = *(const long *)b;
    return (x > y) - (x < y);
}

static int cmp_name(const void *a, const void *b) {
    return strcmp(((const inferd_scan_model *)a)->name, ((const inferd_scan_model *)b)->name);
}

/* A version folder name: digits only, no leading zero, at most 2^31 - 1. */
static long parse_version(const char *s) {
    if (!s[0] || s[0] == '0' || strlen(s) > 10)
        return -1;
    for (const char *p = s; *p; p++)
        if (*p < '0' || *p > '9')
            return -1;
    long v = strtol(s, NULL, 10);
    return v <= 2147483647L ? v : -1;
}

int inferd_scan_valid_name(const char *name) {
    size_t n = strlen(name);
    return n > 0 && n < 128 && name[0] != '.' && !strchr(name, '/');
}

static uint64_t fnv1a(uint64_t h, const void *data, size_t n) {
    const unsigned char *p = data;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

/* Mixes a file's identity into h; returns whether the file exists. */
static int stamp_file(uint64_t *h, const char *path, int64_t *size) {
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISREG(st.st_mode)) {
        *h = fnv1a(*h, "-", 1);
        return 0;
    }
    int64_t id[4] = {(int64_t)st.st_size, (int64_t)st.st_mtim.tv_sec, (int64_t)st.st_mtim.tv_nsec,
                     (int64_t)st.st_ino};
    *h = fnv1a(*h, id, sizeof id);
    if (size)
        *size = (int64_t)st.st_size;
    return 1;
}

static void stamp_version(const char *mdir, const inferd_config *cfg, inferd_scan_version *v) {
    char vdir[4096 + 140], path[4096 + 400];
    snprintf(vdir, sizeof vdir, "%.4096s/%ld", mdir, v->number);
    const inferd_backend_platform *p = cfg->platform[0]
                                           ? inferd_backend_find_platform(cfg->platform)
                                           : inferd_backend_detect_platform(vdir);
    uint64_t h = 0xcbf29ce484222325ULL;
    int has_model = 0;
    if (p) {
        snprintf(path, sizeof path, "%s/%s", vdir, p->file_name);
        has_model = stamp_file(&h, path, &v->model_bytes);
    }
    snprintf(path, sizeof path, "%s/pipeline.json", vdir);
    v->has_pipeline = stamp_file(&h, path, NULL);
    v->stamp = has_model ? (h ? h : 1) : 0;
    // The other files become tokenizer tables and labels in memory: count them toward the
    // version's first estimate.
    DIR *d = opendir(vdir);
    struct dirent *e;
    while (d && (e = readdir(d))) {
        struct stat st;
        snprintf(path, sizeof path, "%s/%s", vdir, e->d_name);
        if (e->d_name[0] != '.' && (!p || strcmp(e->d_name, p->file_name) != 0) &&
            stat(path, &st) == 0 && S_ISREG(st.st_mode))
            v->other_bytes += (int64_t)st.st_size;
    }
    if (d)
        closedir(d);
}

/* Reads config.json into m (defaults without one); a refused one sets cfg_error. */
static void read_config(const char *mdir, inferd_scan_model *m) {
    char path[4096 + 140];
    snprintf(path, sizeof path, "%.4096s/config.json", mdir);
    inferd_config_init(&m->cfg);
    m->config_ok = 1;
    FILE *f = fopen(path, "rb");
    if (!f) {
        if (errno != ENOENT) {
            m->config_ok = 0;
            snprintf(m->cfg_error, sizeof m->cfg_error, "config.json: %s", strerror(errno));
        }
        return;
    }
    char *buf = malloc(MAX_CONFIG_BYTES + 1);
    size_t n = buf ? fread(buf, 1, MAX_CONFIG_BYTES + 1, f) : 0;
    inferd_error err = {0};
    int rc = 0;
    if (!buf)
        rc = inferd_error_set(&err, INFERD_EINTERNAL, "config.json: out of memory");
    else if (ferror(f))
        rc = inferd_error_set(&err, INFERD_EINTERNAL, "config.json: read error");
    else if (n > MAX_CONFIG_BYTES)
        rc = inferd_error_set(&err, INFERD_EINVAL, "config.json: larger than %d bytes",
                              MAX_CONFIG_BYTES);
    else
        rc = inferd_config_parse(&m->cfg, buf, n, &err);
    if (buf)
        m->cfg_stamp = fnv1a(0xcbf29ce484222325ULL, buf, n < MAX_CONFIG_BYTES ? n : 0) | 1;
    free(buf);
    fclose(f);
    if (rc == 0 && m->cfg.name[0] && strcmp(m->cfg.name, m->name) != 0) {
        rc = inferd_error_set(&err, INFERD_EINVAL,
                              "config.json: name: '%.100s' differs from the folder name '%.100s'",
                              m->cfg.name, m->name);
    }
    if (rc < 0) {
        m->config_ok = 0;
        snprintf(m->cfg_error, sizeof m->cfg_error, "%s", err.msg);
        inferd_config_init(&m->cfg);
    }
}

/* Whether path resolves (symlinks followed) inside real_dir, the repository's resolved path.
 * A repository must not become a way to read the rest of the file system. On refusal why says
 * where the path leads. */
static int inside(const char *real_dir, const char *path, char *why, size_t cap) {
    char real[PATH_MAX];
    if (!realpath(path, real)) {
        snprintf(why, cap, "cannot resolve %.150s: %.60s", path, strerror(errno));
        return 0;
    }
    size_t n = strlen(real_dir);
    if (strncmp(real, real_dir, n) == 0 && (real[n] == '/' || (n == 1 && real[0] == '/')))
        return 1;
    snprintf(why, cap, "%.90s is a symlink leading outside the repository (to %.90s)", path, real);
    return 0;
}

static void scan_one(const char *dir, const char *real_dir, inferd_scan_model *m) {
    char mdir[4096 + 140], path[4096 + 400];
    snprintf(mdir, sizeof mdir, "%.4096s/%s", dir, m->name);
    if (!inside(real_dir, mdir, m->reason, sizeof m->reason)) {
        inferd_config_init(&m->cfg);
        m->config_ok = 1; // nothing of it is read: the defaults, and the reason above
        inferd_log_error("model %s: %s", m->name, m->reason);
        return;
    }
    read_config(mdir, m);
    long found[INFERD_SCAN_MAX_VERSIONS], outside[INFERD_SCAN_MAX_VERSIONS];
    int n_found = 0, n_outside = 0;
    DIR *d = opendir(mdir);
    if (!d) {
        snprintf(m->reason, sizeof m->reason, "cannot read %.200s: %s", mdir, strerror(errno));
        return;
    }
    struct dirent *e;
    while ((e = readdir(d))) {
        long v = parse_version(e->d_name);
        snprintf(path, sizeof path, "%s/%s", mdir, e->d_name);
        if (v > 0 && n_found < INFERD_SCAN_MAX_VERSIONS && is_dir(path)) {
            char why[256];
            if (inside(real_dir, path, why, sizeof why)) {
                found[n_found++] = v;
            } else if (n_outside < INFERD_SCAN_MAX_VERSIONS) {
                outside[n_outside++] = v;
                inferd_log_error("model %s: version %ld refused: %s", m->name, v, why);
            }
        }
    }
    closedir(d);
    qsort(found, (size_t)n_found, sizeof found[0], cmp_long);
    if (n_found == 0 && !(m->config_ok && m->cfg.policy == INFERD_CONFIG_POLICY_SPECIFIC)) {
        snprintf(m->reason, sizeof m->reason,
                 "no version folders (%.200s/<number>/model.onnx or model.pt)", mdir);
        return;
    }
    long selected[INFERD_SCAN_MAX_VERSIONS];
    int n_sel =
        inferd_config_select_versions(&m->cfg, found, n_found, selected, INFERD_SCAN_MAX_VERSIONS);
    // Every folder found, and every selected number (a specific policy may name missing ones).
    int i = 0, j = 0;
    while ((i < n_found || j < n_sel) && m->n_versions < INFERD_SCAN_MAX_VERSIONS) {
        inferd_scan_version *v = &m->versions[m->n_versions++];
        memset(v, 0, sizeof *v);
        if (j >= n_sel || (i < n_found && found[i] < selected[j])) {
            v->number = found[i++];
            v->present = 1;
        } else if (i >= n_found || selected[j] < found[i]) {
            v->number = selected[j++];
            v->selected = 1;
        } else {
            v->number = found[i++];
            j++;
            v->present = v->selected = 1;
        }
        for (int k = 0; k < n_outside && !v->present; k++)
            v->outside |= outside[k] == v->number;
        if (v->present && v->selected)
            stamp_version(mdir, &m->cfg, v);
    }
}

int inferd_scan_model_folder(const char *dir, const char *name, inferd_scan_model *m,
                             inferd_error *err) {
    memset(m, 0, sizeof *m);
    if (!inferd_scan_valid_name(name))
        return inferd_error_set(err, INFERD_EINVAL, "'%.128s' cannot be a model folder's name",
                                name);
    snprintf(m->name, sizeof m->name, "%s", name);
    char mdir[4096 + 140];
    snprintf(mdir, sizeof mdir, "%.4096s/%s", dir, name);
    if (!is_dir(mdir))
        return inferd_error_set(err, INFERD_ENOTFOUND, "no model folder %.200s", mdir);
    char real_dir[PATH_MAX];
    if (!realpath(dir, real_dir))
        snprintf(real_dir, sizeof real_dir, "%.4000s", dir);
    scan_one(dir, real_dir, m);
    return 0;
}

int inferd_scan_repo(const char *dir, inferd_scan_model **out, int *n, inferd_error *err) {
    *out = NULL;
    *n = 0;
    DIR *d = opendir(dir);
    if (!d)
        return inferd_error_set(err, errno == ENOENT ? INFERD_ENOTFOUND : INFERD_EINVAL,
                                "cannot read the repository %s: %s", dir, strerror(errno));
    inferd_scan_model *models = NULL;
    int count = 0, cap = 0, rc = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        char path[4096 + 260];
        if (e->d_name[0] == '.')
            continue; // hidden folders: the load cache, editors' files
        snprintf(path, sizeof path, "%.4096s/%s", dir, e->d_name);
        if (!is_dir(path))
            continue;
        if (!inferd_scan_valid_name(e->d_name)) {
            inferd_log_error("repository: skipping %s: model names are at most 127 bytes", path);
            continue;
        }
        if (count == cap) {
            cap = cap ? cap * 2 : 16;
            inferd_scan_model *nm = inferd_realloc(NULL, models, (size_t)cap * sizeof *nm);
            if (!nm) {
                rc = inferd_error_set(err, INFERD_EINTERNAL, "out of memory");
                break;
            }
            models = nm;
        }
        inferd_scan_model *m = &models[count++];
        memset(m, 0, sizeof *m);
        snprintf(m->name, sizeof m->name, "%s", e->d_name);
    }
    closedir(d);
    if (rc < 0) {
        inferd_free(models);
        return rc;
    }
    if (count > 0)
        qsort(models, (size_t)count, sizeof models[0], cmp_name);
    char real_dir[PATH_MAX];
    if (!realpath(dir, real_dir))
        snprintf(real_dir, sizeof real_dir, "%.4000s", dir);
    for (int i = 0; i < count; i++)
        scan_one(dir, real_dir, &models[i]);
    *out = models;
    *n = count;
    return 0;
}
