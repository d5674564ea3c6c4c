/* Unit tests for api/jsonpos: the path of the string holding a byte offset, through objects,
 * arrays, escapes, raw bytes that are not UTF-8, and documents cut short or nested too deep. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "api/jsonpos.h"

/* The path of the string at the first occurrence of marker in doc (offset of marker + skip). */
static int path_at(const char *doc, const char *marker, size_t skip, char *path, size_t cap) {
    const char *m = strstr(doc, marker);
    assert_non_null(m);
    return inferd_jsonpos_string_path(doc, strlen(doc), (size_t)(m - doc) + skip, path, cap);
}

static void test_paths_of_strings(void **state) {
    (void)state;
    char path[64];
    const char *doc = "{\"instances\": [\"ok\", \"b\xff"
                      "ad\", \"x\"], \"parameters\": {\"timeout\": 5}}";
    assert_int_equal(path_at(doc, "\xff", 0, path, sizeof path), 1);
    assert_string_equal(path, "instances[1]");
    assert_int_equal(path_at(doc, "\"x\"", 1, path, sizeof path), 1);
    assert_string_equal(path, "instances[2]");
    // A number is not a string.
    assert_int_equal(path_at(doc, "5}", 0, path, sizeof path), 0);
    assert_string_equal(path, "");
    // A key names its member.
    assert_int_equal(path_at(doc, "timeout", 2, path, sizeof path), 1);
    assert_string_equal(path, "parameters.timeout");

    const char *kserve = "{\"id\":\"r\",\"inputs\":[{\"name\":\"text\",\"shape\":[2],"
                         "\"data\":[\"a\\\"b\",\"caf\xe9\"]}]}";
    assert_int_equal(path_at(kserve, "\xe9", 0, path, sizeof path), 1);
    assert_string_equal(path, "inputs[0].data[1]");
    // The escaped quote does not end the first string.
    assert_int_equal(path_at(kserve, "b\"", 0, path, sizeof path), 1);
    assert_string_equal(path, "inputs[0].data[0]");
    assert_int_equal(path_at(kserve, "text", 0, path, sizeof path), 1);
    assert_string_equal(path, "inputs[0].name");
}

static void test_offset_just_after_a_string(void **state) {
    (void)state;
    // jansson reports a bad \u escape at the offset right after its string.
    char path[64];
    const char *doc = "{\"instances\": [\"ok\", \"\\ud800x\"]}";
    const char *end = strstr(doc, "x\"") + 2;
    assert_int_equal(
        inferd_jsonpos_string_path(doc, strlen(doc), (size_t)(end - doc), path, sizeof path), 1);
    assert_string_equal(path, "instances[1]");
}

static void test_nested_arrays_and_top_level_string(void **state) {
    (void)state;
    char path[64];
    const char *doc = "[[\"a\", [\"b\"]], {\"k\": [1, {\"deep\": \"z\"}]}]";
    assert_int_equal(path_at(doc, "\"b\"", 1, path, sizeof path), 1);
    assert_string_equal(path, "[0][1][0]");
    assert_int_equal(path_at(doc, "\"z\"", 1, path, sizeof path), 1);
    assert_string_equal(path, "[1].k[1].deep");
    assert_int_equal(inferd_jsonpos_string_path("\"solo\"", 6, 2, path, sizeof path), 1);
    assert_string_equal(path, "");
}

static void test_truncated_and_hostile_documents(void **state) {
    (void)state;
    char path[16];
    // Cut inside a string: the string runs to the end.
    const char *cut = "{\"instances\": [\"abc";
    assert_int_equal(path_at(cut, "bc", 0, path, sizeof path), 1);
    assert_string_equal(path, "instances[0]"); // 12 bytes fit in 16
    // A path longer than the buffer is cut, still terminated.
    char tiny[6];
    assert_int_equal(path_at(cut, "bc", 0, tiny, sizeof tiny), 1);
    assert_string_equal(tiny, "insta");
    // Garbage and unbalanced brackets end the walk without reading past n.
    const char *bad[] = {"{{{{", "[,,,]", "{\"a\" \"b\"}", "]]]", "{\"a\":[1,2", "\"\\", ""};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        inferd_jsonpos_string_path(bad[i], strlen(bad[i]), strlen(bad[i]), path, sizeof path);
    // Deeper than 64 levels: not followed, no stack overflow.
    char deep[400];
    memset(deep, '[', 300);
    snprintf(deep + 300, sizeof deep - 300, "\"x\"");
    assert_int_equal(inferd_jsonpos_string_path(deep, strlen(deep), 301, path, sizeof path), 0);
}

static void test_encoding_errors_are_recognised(void **state) {
    (void)state;
    assert_true(inferd_jsonpos_is_encoding_error("unable to decode byte 0xff near '\"b'"));
    assert_true(inferd_jsonpos_is_encoding_error("invalid Unicode '\\uD800'"));
    assert_false(inferd_jsonpos_is_encoding_error("'[' or '{' expected near 'x'"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_paths_of_strings),
        cmocka_unit_test(test_offset_just_after_a_string),
        cmocka_unit_test(test_nested_arrays_and_top_level_string),
        cmocka_unit_test(test_truncated_and_hostile_documents),
        cmocka_unit_test(test_encoding_errors_are_recognised),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
