/* onnx_import.h: reads an ONNX ModelProto into an eg_graph.
 *
 * DESIGN
 * The file is memory-mapped. Before protobuf-c parses it, the importer walks the top levels of
 * the wire format (ModelProto -> GraphProto -> TensorProto) and cuts every initializer's
 * raw_data out of a copy of the bytes, remembering where it lies in the mapping. protobuf-c
 * then parses only the small skeleton (nodes, names, attributes), and weights are never
 * copied by the parser: each constant value keeps a pointer into the mapping (file_data) until
 * the model decides what to pack and what to copy into aligned memory. External data files
 * are mapped the same way, and only files inside the model's folder are accepted.
 *
 * Everything in the file is untrusted: sizes are checked against the bytes that exist,
 * element counts against dims, names are resolved through a hash map (no quadratic lookups),
 * and the resulting graph is topologically sorted, which rejects cycles and dangling names.
 */
#ifndef INFERD_ENGINE_ONNX_IMPORT_H
#define INFERD_ENGINE_ONNX_IMPORT_H

#include <stddef.h>
#include <stdint.h>

#include "engine/graph.h"

/* Mapped files a graph borrows from; released by eg_mappings_release once the model no
 * longer needs file_data (after packing and materializing). */
typedef struct eg_mappings eg_mappings;

/* Parses the model in data[0..size) (usually the mapped file at path; path may be NULL for
 * in-memory models, which then cannot have external data). On success *out is a sorted graph
 * whose constants may borrow from data and from *maps (the caller keeps data alive until it
 * calls eg_mappings_release). *skeleton_hash (if not NULL) gets a hash of the model without its
 * weight bytes, which identifies its structure for the load cache. */
int eg_onnx_import(const void *data, size_t size, const char *path, inferd_mem_account *acct,
                   eg_graph **out, eg_mappings **maps, uint64_t *skeleton_hash, inferd_error *err);

/* Unmaps external data files; NULL does nothing. */
void eg_mappings_release(eg_mappings *maps);

/* Maps a whole file read-only. Returns 0 and sets *data, *size, or a negative code. */
int eg_map_file(const char *path, const void **data, size_t *size, inferd_error *err);
void eg_unmap_file(const void *data, size_t size);

#endif
