/* jsonpos.h: which field of a JSON text a byte offset falls in, so that a parse error can name
 * the field.
 *
 * jansson reports where a document stopped parsing as a byte offset. For most errors that is
 * enough, but a client sending texts wants to hear which text was not valid UTF-8
 * ("instances[3]"), not a column on line 1. inferd_jsonpos_string_path walks the raw bytes
 * tolerantly (it never decodes UTF-8, so it gets through the very bytes jansson refused) and
 * names the string token that holds the offset, as a path of keys and indices.
 *
 * Pure functions of bytes (and of a parsed value's type): no allocation, no state; any thread.
 */
#ifndef INFERD_API_JSONPOS_H
#define INFERD_API_JSONPOS_H

#include <jansson.h>
#include <stddef.h>

/* If the byte at pos lies inside a string token of the n-byte JSON text s, or the string token
 * ends right before pos (jansson reports a bad \u escape just after its string), writes that
 * string's path to path (cap bytes, always NUL-terminated): object keys joined by '.' and
 * array indices in brackets, e.g. "instances[3]" or "inputs[0].data[2]" (an object key gives
 * the path of its member). Returns 1 when found, 0 otherwise (path then ""). Keys longer than
 * 64 bytes are cut; documents nested deeper than 64 levels are not followed. */
int inferd_jsonpos_string_path(const char *s, size_t n, size_t pos, char *path, size_t cap);

/* Whether a jansson error text says the input was not UTF-8 (a raw byte that does not decode,
 * or a \u escape that is not a Unicode scalar value). */
int inferd_jsonpos_is_encoding_error(const char *jansson_text);

/* How an error message names a JSON value's type: "an object", "an array", "a string",
 * "an integer", "a number", "a boolean" or "null". */
const char *inferd_json_type_name(const json_t *v);

#endif
