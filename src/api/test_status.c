/* Unit tests for api/status: the one code-to-status table. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "api/status.h"
#include "util/error.h"

static void test_table(void **state) {
    (void)state;
    assert_int_equal(inferd_status_from_code(INFERD_OK), 200);
    assert_int_equal(inferd_status_from_code(INFERD_EINVAL), 400);
    assert_int_equal(inferd_status_from_code(INFERD_ENOTFOUND), 404);
    assert_int_equal(inferd_status_from_code(INFERD_EUNAVAIL), 503);
    assert_int_equal(inferd_status_from_code(INFERD_EUNSUPPORTED), 400);
    assert_int_equal(inferd_status_from_code(INFERD_EINTERNAL), 500);
    assert_int_equal(inferd_status_from_code(INFERD_ECANCELLED), 503);
    assert_int_equal(inferd_status_from_code(INFERD_EBUSY), 429);
    assert_int_equal(inferd_status_from_code(INFERD_ETOOLARGE), 413);
    assert_int_equal(inferd_status_from_code(-999), 500);
    assert_int_equal(INFERD_STATUS_NOT_READY, 400);
    assert_int_equal(INFERD_STATUS_METHOD_NOT_ALLOWED, 405);
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_table)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
