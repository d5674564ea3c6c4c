/* cache.h: a file per model holding its weights exactly as the engine uses them (packed for
 * oneDNN, constants aligned), so that a later load maps them instead of rebuilding them.
 *
 * DESIGN
 * The first load of an ONNX file runs import, passes and packing as usual and then writes
 * every packed weight (in the order the passes packed them) and every constant the graph
 * keeps (by value index) into one file, written to a temporary name and renamed into place.
 * A later load still parses the ONNX skeleton (names, nodes, attributes: small) and runs the
 * same deterministic passes, but takes packed weights and constants from the mapped cache
 * instead of reading, copying and packing them: the weight bytes of the ONNX file are never
 * touched.
 *
 * The header carries the format version, the build of inferd that wrote it (its ELF build
 * id: passes may differ between builds), oneDNN's version and the CPU ISA it packed for, the
 * source file's size and mtime, a hash of the ONNX skeleton, the file's own size, and a hash
 * of everything after the header. Any mismatch, truncation or corruption makes the cache
 * invalid: the model loads from ONNX and the cache is rewritten. A cache is never trusted
 * partially.
 *
 * Sealing. Checking the content hash means reading every byte of the file, which costs more
 * than the rest of a cached load (a first read of the mapped file runs at ~3.5 GB/s here). So
 * the writer, after its last write, sets the file's mtime to a whole second it recorded in the
 * header. Any later write to the file moves its mtime (the kernel sets it on every write), so
 * a file whose mtime is still the recorded one holds the bytes that were hashed, and its hash
 * is not read again; every other file (written to, copied, restored from a backup) has its
 * content hash checked in full. What sealing does not catch is a deliberate rewrite followed
 * by a reset of the mtime, or corruption below the file system.
 */
#ifndef INFERD_ENGINE_CACHE_H
#define INFERD_ENGINE_CACHE_H

#include <stddef.h>
#include <stdint.h>

#include "util/alloc.h"
#include "util/error.h"

typedef struct eg_cache eg_cache;

/* What identifies the source a cache was built from. */
typedef struct eg_cache_key {
    uint64_t source_size;
    int64_t source_mtime_ns;
    uint64_t skeleton_hash; /* hash of the ONNX file without its weight bytes */
} eg_cache_key;

/* Maps and validates the cache at path for key. Returns 0 with *out set, or a negative code
 * with a reason in err (INFERD_ENOTFOUND when there is no file). */
int eg_cache_open(const char *path, const eg_cache_key *key, eg_cache **out, inferd_error *err);
/* Unmaps; NULL does nothing. Nothing taken from the cache may be used afterwards. */
void eg_cache_close(eg_cache *c);
/* Bytes mapped. */
size_t eg_cache_size(const eg_cache *c);

/* The next packed weight, in packing order: returns its bytes and fills md (a
 * dnnl_memory_desc_t of md_size bytes) when K, N, transposed and scale match what was stored,
 * else NULL (the cache does not fit this model after all). */
const void *eg_cache_next_packed(eg_cache *c, int64_t K, int64_t N, int transposed, float scale,
                                 void *md, size_t md_size, size_t *bytes);
/* The constant stored for value index v with nbytes bytes, or NULL. */
const void *eg_cache_const(const eg_cache *c, int value, size_t nbytes);

/* Building a cache: entries are added in order, then written atomically. */
typedef struct eg_cache_writer eg_cache_writer;
eg_cache_writer *eg_cache_writer_create(void);
void eg_cache_writer_destroy(eg_cache_writer *w);
/* data must stay valid until eg_cache_writer_write returns. */
int eg_cache_writer_add_packed(eg_cache_writer *w, int64_t K, int64_t N, int transposed,
                               float scale, const void *md, size_t md_size, const void *data,
                               size_t bytes);
int eg_cache_writer_add_const(eg_cache_writer *w, int value, const void *data, size_t bytes);
/* Writes path.tmp.<pid> and renames it to path (making the folder if needed). A failure
 * (full disk, read-only folder) removes the temporary file and returns a negative code. */
int eg_cache_writer_write(eg_cache_writer *w, const char *path, const eg_cache_key *key,
                          inferd_error *err);

/* 64-bit hash of bytes, fast enough for hundreds of MB at load. */
uint64_t eg_hash64(const void *data, size_t n, uint64_t seed);

#endif
