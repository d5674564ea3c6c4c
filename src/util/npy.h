/* npy.h: NumPy .npy files (format versions 1-3, C order), for `inferd exec` and tests.
 * The parser treats its input as untrusted (it is a fuzz target). */
#ifndef INFERD_UTIL_NPY_H
#define INFERD_UTIL_NPY_H

#include <stddef.h>

#include "util/error.h"
#include "util/tensor.h"

/* Parses an .npy image in data[0..size). On success out describes the array and out->data
 * points into data (no copy). */
int inferd_npy_parse(const void *data, size_t size, inferd_tensor *out, inferd_error *err);

/* Reads a file; on success out->data is a block from inferd_malloc(NULL) the caller frees
 * with inferd_free. */
int inferd_npy_read_file(const char *path, inferd_tensor *out, inferd_error *err);

/* Writes t as a version 1.0 .npy file. */
int inferd_npy_write_file(const char *path, const inferd_tensor *t, inferd_error *err);

#endif
