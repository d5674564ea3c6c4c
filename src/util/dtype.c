#include "util/dtype.h"

#include <string.h>

static const struct {
    inferd_dtype t;
    size_t size;
    const char *kserve;
    const char *name;
} table[] = {
    {INFERD_DTYPE_F32, 4, "FP32", "float"},    {INFERD_DTYPE_U8, 1, "UINT8", "uint8"},
    {INFERD_DTYPE_I8, 1, "INT8", "int8"},      {INFERD_DTYPE_U16, 2, "UINT16", "uint16"},
    {INFERD_DTYPE_I16, 2, "INT16", "int16"},   {INFERD_DTYPE_I32, 4, "INT32", "int32"},
    {INFERD_DTYPE_I64, 8, "INT64", "int64"},   {INFERD_DTYPE_STRING, 0, "BYTES", "string"},
    {INFERD_DTYPE_BOOL, 1, "BOOL", "bool"},    {INFERD_DTYPE_F16, 2, "FP16", "float16"},
    {INFERD_DTYPE_F64, 8, "FP64", "double"},   {INFERD_DTYPE_U32, 4, "UINT32", "uint32"},
    {INFERD_DTYPE_U64, 8, "UINT64", "uint64"}, {INFERD_DTYPE_BF16, 2, "BF16", "bfloat16"},
};

#define N_TYPES (sizeof table / sizeof table[0])

size_t inferd_dtype_size(inferd_dtype t) {
    for (size_t i = 0; i < N_TYPES; i++)
        if (table[i].t == t)
            return table[i].size;
    return 0;
}

const char *inferd_dtype_kserve_name(inferd_dtype t) {
    for (size_t i = 0; i < N_TYPES; i++)
        if (table[i].t == t)
            return table[i].kserve;
    return NULL;
}

inferd_dtype inferd_dtype_from_kserve(const char *name) {
    for (size_t i = 0; i < N_TYPES; i++)
        if (strcmp(table[i].kserve, name) == 0)
            return table[i].t;
    return INFERD_DTYPE_INVALID;
}

const char *inferd_dtype_name(inferd_dtype t) {
    for (size_t i = 0; i < N_TYPES; i++)
        if (table[i].t == t)
            return table[i].name;
    return "invalid";
}
