#include "engine/cache.h"

#include <dnnl.h>
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <link.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "engine/kernels.h"

#define MAGIC "INFERDC1"
#define FORMAT 2
#define HEADER_SIZE 4096
#define ALIGN 256 /* entries start on hash-block boundaries */
#define MAX_ENTRIES 1000000

typedef struct file_header {
    char magic[8];
    uint32_t format;
    uint32_t header_size;
    uint64_t file_size;
    uint64_t content_hash;
    uint64_t source_size;
    int64_t source_mtime_ns;
    uint64_t skeleton_hash;
    char build[128];
    char cpu[64];
    uint32_t n_packed, n_consts;
    uint64_t table_off;
    int64_t sealed_mtime_s; /* the mtime the writer gave the file; 0: none */
} file_header;

typedef struct packed_entry {
    int64_t K, N;
    int32_t transposed;
    float scale;
    uint64_t md_off, md_size, data_off, data_size;
} packed_entry;

typedef struct const_entry {
    int32_t value, pad;
    uint64_t data_off, data_size;
} const_entry;

/* ---- hashing (xxHash64-style rounds, 32-byte blocks) ---- */

#define P1 11400714785074694791ULL
#define P2 14029467366897019727ULL
#define P3 1609587929392839161ULL
#define P4 9650029242287828579ULL
#define P5 2870177450012600261ULL

/* 32 independent lanes over 256-byte blocks: lane k takes word k of every block. The lanes
 * are independent so that the AVX-512 provider keeps four vectors of eight in flight. */
#define LANES 32
#define BLOCK (LANES * 8)

typedef struct {
    uint64_t v[LANES];
    uint64_t len;
} hash_state;

static uint64_t rotl(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }
static uint64_t round64(uint64_t acc, uint64_t x) { return rotl(acc + x * P2, 31) * P1; }

static void hash_init(hash_state *h, uint64_t seed) {
    for (int i = 0; i < LANES; i++)
        h->v[i] = seed + P1 * (uint64_t)(i + 1) + P2;
    h->len = 0;
}

/* Whole blocks only (n rounded down to BLOCK). */
static void hash_blocks(hash_state *h, const uint8_t *p, size_t n) {
    size_t whole = n / BLOCK * BLOCK;
    if (eg_kernels()->hash_blocks) {
        eg_kernels()->hash_blocks(h->v, p, whole);
    } else {
        for (size_t i = 0; i < whole; i += BLOCK) {
            uint64_t w[LANES];
            memcpy(w, p + i, BLOCK);
            for (int k = 0; k < LANES; k++)
                h->v[k] = round64(h->v[k], w[k]);
        }
    }
    h->len += whole;
}

static uint64_t hash_final(const hash_state *h) {
    uint64_t x = h->len * P5;
    for (int i = 0; i < LANES; i++)
        x = rotl(x ^ round64(0, h->v[i]), 27) * P1 + P4;
    x ^= x >> 33;
    x *= P2;
    x ^= x >> 29;
    x *= P3;
    x ^= x >> 32;
    return x;
}

uint64_t eg_hash64(const void *data, size_t n, uint64_t seed) {
    hash_state h;
    hash_init(&h, seed);
    size_t whole = n / BLOCK * BLOCK;
    hash_blocks(&h, data, whole);
    if (n > whole) {
        uint8_t tail[BLOCK] = {0};
        memcpy(tail, (const uint8_t *)data + whole, n - whole);
        hash_blocks(&h, tail, BLOCK);
    }
    h.len = n;
    return hash_final(&h);
}

/* ---- identity of this build and CPU ---- */

static char g_build[128];
static char g_cpu[64];
static pthread_once_t g_ident_once = PTHREAD_ONCE_INIT;

static int find_build_id(struct dl_phdr_info *info, size_t size, void *arg) {
    (void)size;
    char *out = arg;
    if (info->dlpi_name && info->dlpi_name[0])
        return 0; // the main program is listed first with an empty name
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type != PT_NOTE)
            continue;
        const uint8_t *p = (const uint8_t *)(info->dlpi_addr + ph->p_vaddr);
        const uint8_t *end = p + ph->p_memsz;
        while (p + sizeof(ElfW(Nhdr)) <= end) {
            const ElfW(Nhdr) *nh = (const ElfW(Nhdr) *)p;
            const uint8_t *name = p + sizeof *nh;
            const uint8_t *desc = name + ((nh->n_namesz + 3) & ~3u);
            if (nh->n_type == NT_GNU_BUILD_ID && nh->n_namesz == 4 && !memcmp(name, "GNU", 4)) {
                size_t len = 0;
                for (uint32_t k = 0; k < nh->n_descsz && len + 3 < 96; k++)
                    len += (size_t)snprintf(out + len, 96 - len, "%02x", desc[k]);
                return 1;
            }
            p = desc + ((nh->n_descsz + 3) & ~3u);
        }
    }
    return 1;
}

static void ident_init(void) {
    char id[96] = "";
    dl_iterate_phdr(find_build_id, id);
    const dnnl_version_t *v = dnnl_version();
    snprintf(g_build, sizeof g_build, "inferd %s build %s dnnl %d.%d.%d %s", INFERD_VERSION,
             id[0] ? id : "unknown", v->major, v->minor, v->patch, v->hash);
    snprintf(g_cpu, sizeof g_cpu, "isa %d avx512 %d", (int)dnnl_get_effective_cpu_isa(),
             __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw"));
}

/* ---- reading ---- */

struct eg_cache {
    const uint8_t *map;
    size_t size;
    const packed_entry *packed;
    const const_entry *consts;
    uint32_t n_packed, n_consts;
    uint32_t next_packed;
};

static int in_file(uint64_t off, uint64_t len, uint64_t size) {
    return off <= size && len <= size - off;
}

int eg_cache_open(const char *path, const eg_cache_key *key, eg_cache **out, inferd_error *err) {
    pthread_once(&g_ident_once, ident_init);
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return inferd_error_set(err, errno == ENOENT ? INFERD_ENOTFOUND : INFERD_EINVAL,
                                "no cache (%s)", strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size < HEADER_SIZE) {
        close(fd);
        return inferd_error_set(err, INFERD_EINVAL, "cache is truncated");
    }
    size_t size = (size_t)st.st_size;
    const uint8_t *map = mmap(NULL, size, PROT_READ, MAP_PRIVATE | MAP_POPULATE, fd, 0);
    close(fd);
    if (map == MAP_FAILED)
        return inferd_error_set(err, INFERD_EINTERNAL, "cannot map cache: %s", strerror(errno));
    file_header h;
    memcpy(&h, map, sizeof h);
    const char *why = NULL;
    if (memcmp(h.magic, MAGIC, 8) || h.format != FORMAT || h.header_size != HEADER_SIZE)
        why = "not a cache of this format";
    else if (h.file_size != size)
        why = "cache is truncated";
    else if (strncmp(h.build, g_build, sizeof h.build) || strncmp(h.cpu, g_cpu, sizeof h.cpu))
        why = "cache was written by another build or for another CPU";
    else if (h.source_size != key->source_size || h.source_mtime_ns != key->source_mtime_ns ||
             h.skeleton_hash != key->skeleton_hash)
        why = "cache is stale (the model file changed)";
    else if (h.n_packed > MAX_ENTRIES || h.n_consts > MAX_ENTRIES ||
             !in_file(h.table_off,
                      (uint64_t)h.n_packed * sizeof(packed_entry) +
                          (uint64_t)h.n_consts * sizeof(const_entry),
                      size) ||
             h.table_off % 8)
        why = "cache table is corrupt";
    // A file whose mtime is still the one its writer set has not been written to since (any
    // write moves the mtime): its content is the content that was hashed when it was written.
    // Any other file (modified, copied, restored) has its content hash checked in full, which
    // costs a read of every byte (~13 ms for the peers' small model, ~100 ms for base here).
    int sealed =
        h.sealed_mtime_s > 0 && st.st_mtim.tv_sec == h.sealed_mtime_s && st.st_mtim.tv_nsec == 0;
    if (!why && !sealed) {
        hash_state hs;
        hash_init(&hs, 0x696e6665726463ULL);
        hash_blocks(&hs, map + HEADER_SIZE, size - HEADER_SIZE);
        if ((size - HEADER_SIZE) % BLOCK || hash_final(&hs) != h.content_hash)
            why = "cache is corrupt (content hash mismatch)";
    }
    const packed_entry *pe = (const packed_entry *)(map + h.table_off);
    const const_entry *ce = (const const_entry *)(pe + h.n_packed);
    for (uint32_t i = 0; !why && i < h.n_packed; i++)
        if (!in_file(pe[i].md_off, pe[i].md_size, size) ||
            !in_file(pe[i].data_off, pe[i].data_size, size) || pe[i].data_off % ALIGN ||
            pe[i].md_size != sizeof(dnnl_memory_desc_t))
            why = "cache entry is corrupt";
    for (uint32_t i = 0; !why && i < h.n_consts; i++)
        if (!in_file(ce[i].data_off, ce[i].data_size, size) || ce[i].data_off % ALIGN)
            why = "cache entry is corrupt";
    if (why) {
        munmap((void *)map, size);
        return inferd_error_set(err, INFERD_EINVAL, "%s", why);
    }
    eg_cache *c = calloc(1, sizeof *c);
    if (!c) {
        munmap((void *)map, size);
        return inferd_error_set(err, INFERD_EINTERNAL, "out of memory");
    }
    c->map = map;
    c->size = size;
    c->packed = pe;
    c->consts = ce;
    c->n_packed = h.n_packed;
    c->n_consts = h.n_consts;
    *out = c;
    return 0;
}

void eg_cache_close(eg_cache *c) {
    if (!c)
        return;
    munmap((void *)c->map, c->size);
    free(c);
}

size_t eg_cache_size(const eg_cache *c) { return c->size; }

const void *eg_cache_next_packed(eg_cache *c, int64_t K, int64_t N, int transposed, float scale,
                                 void *md, size_t md_size, size_t *bytes) {
    if (c->next_packed >= c->n_packed)
        return NULL;
    const packed_entry *e = &c->packed[c->next_packed];
    if (e->K != K || e->N != N || e->transposed != transposed || e->scale != scale ||
        e->md_size != md_size)
        return NULL;
    c->next_packed++;
    memcpy(md, c->map + e->md_off, md_size);
    *bytes = e->data_size;
    return c->map + e->data_off;
}

const void *eg_cache_const(const eg_cache *c, int value, size_t nbytes) {
    // Entries are sorted by value index.
    uint32_t lo = 0, hi = c->n_consts;
    while (lo < hi) {
        uint32_t mid = (lo + hi) / 2;
        if (c->consts[mid].value < value)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo < c->n_consts && c->consts[lo].value == value && c->consts[lo].data_size == nbytes)
        return c->map + c->consts[lo].data_off;
    return NULL;
}

/* ---- writing ---- */

typedef struct piece {
    const void *data;
    size_t bytes;
} piece;

struct eg_cache_writer {
    packed_entry *packed;
    const_entry *consts;
    piece *pk_data, *pk_md, *c_data;
    uint32_t n_packed, n_consts, cap_packed, cap_consts;
};

eg_cache_writer *eg_cache_writer_create(void) { return calloc(1, sizeof(eg_cache_writer)); }

void eg_cache_writer_destroy(eg_cache_writer *w) {
    if (!w)
        return;
    free(w->packed);
    free(w->consts);
    free(w->pk_data);
    free(w->pk_md);
    free(w->c_data);
    free(w);
}

int eg_cache_writer_add_packed(eg_cache_writer *w, int64_t K, int64_t N, int transposed,
                               float scale, const void *md, size_t md_size, const void *data,
                               size_t bytes) {
    if (w->n_packed == w->cap_packed) {
        uint32_t cap = w->cap_packed ? w->cap_packed * 2 : 64;
        packed_entry *p = realloc(w->packed, cap * sizeof *p);
        if (p)
            w->packed = p;
        piece *d = realloc(w->pk_data, cap * sizeof *d);
        if (d)
            w->pk_data = d;
        piece *m = realloc(w->pk_md, cap * sizeof *m);
        if (m)
            w->pk_md = m;
        if (!p || !d || !m)
            return INFERD_EINTERNAL;
        w->cap_packed = cap;
    }
    w->packed[w->n_packed] = (packed_entry){.K = K,
                                            .N = N,
                                            .transposed = transposed,
                                            .scale = scale,
                                            .md_size = md_size,
                                            .data_size = bytes};
    w->pk_md[w->n_packed] = (piece){md, md_size};
    w->pk_data[w->n_packed++] = (piece){data, bytes};
    return 0;
}

int eg_cache_writer_add_const(eg_cache_writer *w, int value, const void *data, size_t bytes) {
    if (w->n_consts == w->cap_consts) {
        uint32_t cap = w->cap_consts ? w->cap_consts * 2 : 256;
        const_entry *c = realloc(w->consts, cap * sizeof *c);
        if (c)
            w->consts = c;
        piece *d = realloc(w->c_data, cap * sizeof *d);
        if (d)
            w->c_data = d;
        if (!c || !d)
            return INFERD_EINTERNAL;
        w->cap_consts = cap;
    }
    if (w->n_consts && w->consts[w->n_consts - 1].value >= value)
        return INFERD_EINTERNAL; // callers add in increasing value order
    w->consts[w->n_consts] = (const_entry){.value = value, .data_size = bytes};
    w->c_data[w->n_consts++] = (piece){data, bytes};
    return 0;
}

typedef struct {
    FILE *f;
    uint64_t off;
    hash_state h;
    int ok;
} out_stream;

/* Writes bytes and zero padding up to the next multiple of ALIGN (the hash's block), hashing
 * both. */
static void put(out_stream *o, const void *data, size_t n) {
    static const uint8_t zeros[ALIGN];
    size_t whole = n / BLOCK * BLOCK;
    if (o->ok && n && fwrite(data, 1, n, o->f) != n)
        o->ok = 0;
    hash_blocks(&o->h, data, whole);
    if (n > whole) {
        uint8_t block[BLOCK] = {0};
        memcpy(block, (const uint8_t *)data + whole, n - whole);
        hash_blocks(&o->h, block, BLOCK);
        if (o->ok && fwrite(zeros, 1, BLOCK - (n - whole), o->f) != BLOCK - (n - whole))
            o->ok = 0;
    }
    o->off += (n + BLOCK - 1) / BLOCK * BLOCK;
}

static int mkdirs(const char *path) {
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s", path);
    for (char *p = tmp + 1; *p; p++)
        if (*p == '/') {
            *p = 0;
            if (mkdir(tmp, 0755) != 0 && errno != EEXIST)
                return -1;
            *p = '/';
        }
    return 0;
}

int eg_cache_writer_write(eg_cache_writer *w, const char *path, const eg_cache_key *key,
                          inferd_error *err) {
    pthread_once(&g_ident_once, ident_init);
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid());
    if (mkdirs(path) < 0)
        return inferd_error_set(err, INFERD_EINTERNAL, "cannot create the cache folder for %s: %s",
                                path, strerror(errno));
    out_stream o = {.f = fopen(tmp, "wb"), .ok = 1, .off = HEADER_SIZE};
    if (!o.f)
        return inferd_error_set(err, INFERD_EINTERNAL, "cannot write %s: %s", tmp, strerror(errno));
    hash_init(&o.h, 0x696e6665726463ULL);
    static const uint8_t blank[HEADER_SIZE];
    if (fwrite(blank, 1, HEADER_SIZE, o.f) != HEADER_SIZE)
        o.ok = 0;
    for (uint32_t i = 0; i < w->n_packed; i++) {
        w->packed[i].md_off = o.off;
        put(&o, w->pk_md[i].data, w->pk_md[i].bytes);
        w->packed[i].data_off = o.off;
        put(&o, w->pk_data[i].data, w->pk_data[i].bytes);
    }
    for (uint32_t i = 0; i < w->n_consts; i++) {
        w->consts[i].data_off = o.off;
        put(&o, w->c_data[i].data, w->c_data[i].bytes);
    }
    // Both tables in one piece: the reader finds the constants right after the packed ones.
    uint64_t table_off = o.off;
    size_t pk_bytes = sizeof(packed_entry) * w->n_packed,
           c_bytes = sizeof(const_entry) * w->n_consts;
    uint8_t *table = malloc(pk_bytes + c_bytes + 1);
    if (!table) {
        fclose(o.f);
        unlink(tmp);
        return inferd_error_set(err, INFERD_EINTERNAL, "out of memory writing the cache");
    }
    memcpy(table, w->packed, pk_bytes);
    memcpy(table + pk_bytes, w->consts, c_bytes);
    put(&o, table, pk_bytes + c_bytes);
    free(table);
    file_header h;
    memset(&h, 0, sizeof h);
    memcpy(h.magic, MAGIC, 8);
    h.format = FORMAT;
    h.header_size = HEADER_SIZE;
    h.file_size = o.off;
    h.content_hash = hash_final(&o.h);
    h.source_size = key->source_size;
    h.source_mtime_ns = key->source_mtime_ns;
    h.skeleton_hash = key->skeleton_hash;
    snprintf(h.build, sizeof h.build, "%s", g_build);
    snprintf(h.cpu, sizeof h.cpu, "%s", g_cpu);
    h.n_packed = w->n_packed;
    h.n_consts = w->n_consts;
    h.table_off = table_off;
    // Sealed: the file's mtime is set to a whole second recorded in the header, after the
    // last write; a reader finding that mtime skips the content hash (eg_cache_open).
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    h.sealed_mtime_s = now.tv_sec > 0 ? now.tv_sec - 1 : 0;
    if (o.ok && (fseek(o.f, 0, SEEK_SET) != 0 || fwrite(&h, 1, sizeof h, o.f) != sizeof h))
        o.ok = 0;
    if (fflush(o.f) != 0)
        o.ok = 0;
    struct timespec times[2] = {{.tv_nsec = UTIME_OMIT}, {.tv_sec = h.sealed_mtime_s}};
    if (o.ok && h.sealed_mtime_s > 0)
        futimens(fileno(o.f), times); // without it the cache is still valid, just hashed
    if (fsync(fileno(o.f)) != 0)
        o.ok = 0;
    int saved = errno;
    if (fclose(o.f) != 0)
        o.ok = 0;
    if (!o.ok || rename(tmp, path) != 0) {
        unlink(tmp);
        return inferd_error_set(err, INFERD_EINTERNAL, "cannot write the cache %s: %s", path,
                                strerror(o.ok ? errno : saved));
    }
    return 0;
}
