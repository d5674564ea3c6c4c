/* scan.h: reading a model repository folder into a description, without touching the
 * registry.
 *
 * The repository (repo.c) scans once at start and, with --poll-interval or the load API, again
 * while serving; it then compares what it finds with what it serves. A scan reads each model's
 * config.json (validated; its bytes' hash says whether it changed), lists the version folders
 * (positive integers without leading zeros; everything else is ignored, as are models whose
 * folder name starts with '.': caches and editors' files live there), applies the version
 * policy, and takes a stamp of each selected version's files (the model file and
 * pipeline.json: size, mtime, inode) so that a replaced file is noticed. Nothing is loaded and
 * no file is kept open. Model and version folders may be symlinks (as deployment tools make
 * them) but must resolve inside the repository: a model folder leading outside gets a reason
 * and no versions, a version folder leading outside counts as absent (marked outside).
 *
 * Errors that belong to one model (an invalid config.json, no version folders, an unreadable
 * folder) are reported in that model's reason and the scan carries on; only an unreadable
 * repository folder or running out of memory fails the whole scan.
 *
 * Threads: any; no shared state.
 */
#ifndef INFERD_REPO_SCAN_H
#define INFERD_REPO_SCAN_H

#include <stdint.h>

#include "repo/config.h"
#include "util/error.h"

#define INFERD_SCAN_MAX_VERSIONS 256

typedef struct inferd_scan_version {
    long number;
    int selected;        /* chosen by the version policy */
    int present;         /* the folder exists (a "specific" policy may list missing ones) */
    int outside;         /* the folder is a symlink leading outside the repository: refused,
                            so not present */
    int64_t model_bytes; /* size of the model file; 0 when there is none */
    int64_t other_bytes; /* size of the folder's other files (vocabularies, labels...) */
    uint64_t stamp;      /* identity of the model file and pipeline.json; 0: no model file */
} inferd_scan_version;

typedef struct inferd_scan_model {
    char name[128];
    int config_ok;       /* config.json is absent or valid: cfg holds it */
    inferd_config cfg;   /* the defaults when there is no config.json */
    uint64_t cfg_stamp;  /* hash of config.json's bytes; 0 when there is none */
    char cfg_error[256]; /* why config.json was refused, when !config_ok */
    char reason[256];    /* no version folders, or an unreadable folder; "" otherwise */
    inferd_scan_version versions[INFERD_SCAN_MAX_VERSIONS]; /* found or listed, ascending */
    int n_versions;
} inferd_scan_model;

/* Scans every model folder of dir. On success *out (sorted by name, *n entries) is the
 * caller's, freed with inferd_free. INFERD_ENOTFOUND / INFERD_EINVAL when dir cannot be read,
 * INFERD_EINTERNAL when out of memory. */
int inferd_scan_repo(const char *dir, inferd_scan_model **out, int *n, inferd_error *err);

/* Scans dir/name only. Returns 0 with *m filled, INFERD_ENOTFOUND when there is no such
 * folder, INFERD_EINVAL for a name that cannot be a model folder. */
int inferd_scan_model_folder(const char *dir, const char *name, inferd_scan_model *m,
                             inferd_error *err);

/* Whether name can be a model folder's name: not empty, at most 127 bytes, no '/', and not
 * starting with '.'. */
int inferd_scan_valid_name(const char *name);

#endif
