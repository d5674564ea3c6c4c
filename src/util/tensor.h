/* tensor.h: the dense tensor every module passes around (request inputs, model outputs).
 * A plain struct: whoever fills it says in their contract who owns data. */
#ifndef INFERD_UTIL_TENSOR_H
#define INFERD_UTIL_TENSOR_H

#include <stddef.h>
#include <stdint.h>

#include "util/dtype.h"

#define INFERD_MAX_RANK 8

typedef struct inferd_tensor {
    inferd_dtype dtype;
    int rank;
    int64_t dims[INFERD_MAX_RANK];
    void *data;    /* row-major elements; for STRING, see below */
    size_t nbytes; /* bytes at data */
} inferd_tensor;
/* STRING tensors hold their elements as Triton's binary BYTES encoding does: each element is a
 * 4-byte little-endian length followed by that many bytes, elements back to back. */

/* Description of a model input or output: name, dtype and shape with -1 for dynamic dims. */
typedef struct inferd_tensor_desc {
    const char *name;
    inferd_dtype dtype;
    int rank;
    int64_t dims[INFERD_MAX_RANK];
} inferd_tensor_desc;

/* Product of dims (1 for rank 0). Returns -1 if any dim is negative or the product overflows
 * int64; callers check before allocating. */
int64_t inferd_tensor_numel(int rank, const int64_t *dims);

#endif
