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

/* ---- float16 and bfloat16 ---- */

float inferd_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, e = (h >> 10) & 0x1f, m = h & 0x3ff, x;
    if (e == 0x1f) {
        x = sign | 0x7f800000u | (m << 13);
    } else if (e == 0) {
        // Zero or subnormal: m * 2^-24, exact in float.
        float f = (float)m * 0x1p-24f;
        return sign ? -f : f;
    } else {
        x = sign | ((e + 112) << 23) | (m << 13);
    }
    float f;
    memcpy(&f, &x, 4);
    return f;
}

uint16_t inferd_f32_to_f16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000);
    uint32_t a = x & 0x7fffffffu;
    if (a >= 0x7f800000u) // infinity, or NaN kept quiet
        return sign | (a > 0x7f800000u ? 0x7e00 : 0x7c00);
    if (a >= 0x477ff000u) // 65520 and up round to infinity
        return sign | 0x7c00;
    if (a < 0x38800000u) {   // below the smallest normal half, 2^-14
        if (a < 0x33000000u) // at most 2^-25: rounds to zero (the tie goes to even 0)
            return sign;
        uint32_t e = a >> 23, m = (a & 0x7fffffu) | 0x800000u, shift = 126 - e;
        uint32_t k = m >> shift, rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
        if (rem > half || (rem == half && (k & 1)))
            k++;
        return sign | (uint16_t)k;
    }
    uint32_t h = (a - 0x38000000u) >> 13, rem = a & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1)))
        h++;
    return sign | (uint16_t)h;
}

float inferd_bf16_to_f32(uint16_t h) {
    uint32_t x = (uint32_t)h << 16;
    float f;
    memcpy(&f, &x, 4);
    return f;
}

uint16_t inferd_f32_to_bf16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    if ((x & 0x7fffffffu) > 0x7f800000u)
        return (uint16_t)((x >> 16) | 0x40);
    return (uint16_t)((x + 0x7fffu + ((x >> 16) & 1)) >> 16);
}
