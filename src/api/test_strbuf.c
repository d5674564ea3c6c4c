/* Unit tests for api/strbuf: growth, formatting, JSON and label escaping. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "api/strbuf.h"
#include "util/alloc.h"

static void test_append_and_take(void **state) {
    (void)state;
    inferd_strbuf b;
    inferd_strbuf_init(&b);
    for (int i = 0; i < 1000; i++)
        inferd_strbuf_appendf(&b, "%d,", i % 10);
    char long_text[300];
    memset(long_text, 'x', 299);
    long_text[299] = 0;
    inferd_strbuf_appendf(&b, "%s", long_text); // longer than the small stack buffer
    size_t len;
    char *s = inferd_strbuf_take(&b, &len);
    assert_int_equal(len, 2000 + 299);
    assert_int_equal(s[0], '0');
    assert_int_equal(s[1998], '9');
    assert_int_equal(s[len - 1], 'x');
    assert_null(b.data);
    inferd_free(s);
    // An empty buffer still gives a valid (empty) block.
    s = inferd_strbuf_take(&b, &len);
    assert_non_null(s);
    assert_int_equal(len, 0);
    inferd_free(s);
}

static void test_json_string(void **state) {
    (void)state;
    inferd_strbuf b;
    inferd_strbuf_init(&b);
    const char in[] = "a\"b\\c\n\x01\xc3\xa9\xff\xe2\x82";
    inferd_strbuf_append_json_string(&b, in, sizeof in - 1);
    // Valid UTF-8 (é) passes; a stray byte and a truncated sequence become \u00XX.
    assert_string_equal(b.data, "\"a\\\"b\\\\c\\n\\u0001\xc3\xa9\\u00ff\\u00e2\\u0082\"");
    inferd_strbuf_deinit(&b);
    inferd_strbuf_init(&b);
    inferd_strbuf_append_json_string(&b, "x\0y", 3);
    assert_string_equal(b.data, "\"x\\u0000y\"");
    inferd_strbuf_deinit(&b);
}

static void test_label(void **state) {
    (void)state;
    inferd_strbuf b;
    inferd_strbuf_init(&b);
    inferd_strbuf_append_label(&b, "a\"b\\c\nd");
    assert_string_equal(b.data, "a\\\"b\\\\c\\nd");
    inferd_strbuf_deinit(&b);
}

static void test_out_of_memory_is_sticky(void **state) {
    (void)state;
    inferd_strbuf b;
    inferd_strbuf_init(&b);
    inferd_alloc_fail_after(1);
    inferd_strbuf_appends(&b, "hello");
    inferd_alloc_fail_after(0);
    inferd_strbuf_appends(&b, "world"); // ignored: the buffer already lost data
    assert_int_equal(b.failed, 1);
    size_t len = 99;
    assert_null(inferd_strbuf_take(&b, &len));
    assert_int_equal(len, 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_append_and_take),
        cmocka_unit_test(test_json_string),
        cmocka_unit_test(test_label),
        cmocka_unit_test(test_out_of_memory_is_sticky),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
