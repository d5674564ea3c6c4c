/* fuzz_config.c: the config.json parser and the version policy over it. */
#include <stdint.h>

#include "repo/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    inferd_config c;
    inferd_error err;
    inferd_config_init(&c);
    if (inferd_config_parse(&c, (const char *)data, size, &err) == 0) {
        static const long available[] = {1, 2, 3, 10, 200};
        long out[INFERD_CONFIG_MAX_SPECIFIC];
        inferd_config_select_versions(&c, available, 5, out, INFERD_CONFIG_MAX_SPECIFIC);
    }
    inferd_config_deinit(&c);
    return 0;
}
