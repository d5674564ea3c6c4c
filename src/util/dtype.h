/* dtype.h: element types shared by every module. The values are ONNX's TensorProto.DataType
 * numbers, so ONNX files need no translation; names follow KServe v2 ("FP32", "INT64"). */
#ifndef INFERD_UTIL_DTYPE_H
#define INFERD_UTIL_DTYPE_H

#include <stddef.h>
#include <stdint.h>

typedef enum inferd_dtype {
    INFERD_DTYPE_INVALID = 0,
    INFERD_DTYPE_F32 = 1,
    INFERD_DTYPE_U8 = 2,
    INFERD_DTYPE_I8 = 3,
    INFERD_DTYPE_U16 = 4,
    INFERD_DTYPE_I16 = 5,
    INFERD_DTYPE_I32 = 6,
    INFERD_DTYPE_I64 = 7,
    INFERD_DTYPE_STRING = 8, /* KServe BYTES */
    INFERD_DTYPE_BOOL = 9,
    INFERD_DTYPE_F16 = 10,
    INFERD_DTYPE_F64 = 11,
    INFERD_DTYPE_U32 = 12,
    INFERD_DTYPE_U64 = 13,
    INFERD_DTYPE_BF16 = 16,
} inferd_dtype;

/* Bytes per element; 0 for INVALID, STRING and unknown values. */
size_t inferd_dtype_size(inferd_dtype t);

/* KServe v2 datatype name ("FP32", "BYTES"), or NULL for INVALID/unknown values. */
const char *inferd_dtype_kserve_name(inferd_dtype t);

/* Parses a KServe v2 datatype name; INFERD_DTYPE_INVALID when unknown. */
inferd_dtype inferd_dtype_from_kserve(const char *name);

/* ONNX-style lowercase name ("float", "int64"), for messages; "invalid" when unknown. */
const char *inferd_dtype_name(inferd_dtype t);

/* IEEE float16 and bfloat16 to and from float. Narrowing rounds to nearest even; NaN stays
 * NaN (quiet), and values beyond float16's range become infinity. */
float inferd_f16_to_f32(uint16_t h);
uint16_t inferd_f32_to_f16(float f);
float inferd_bf16_to_f32(uint16_t h);
uint16_t inferd_f32_to_bf16(float f);

/* The little-endian uint32 at p (the length prefix of each element of a binary BYTES
 * tensor), from any alignment. */
static inline uint32_t inferd_read_le32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

#endif
