/* fuzz_npy.c: the .npy parser on arbitrary bytes. */
#include <stdint.h>
#include <string.h>

#include "util/npy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    inferd_tensor t;
    inferd_error err;
    if (inferd_npy_parse(data, size, &t, &err) == 0 && t.nbytes) {
        // Touch the first and last byte the parser vouched for.
        volatile uint8_t x = ((const uint8_t *)t.data)[0];
        x = ((const uint8_t *)t.data)[t.nbytes - 1];
        (void)x;
    }
    return 0;
}
