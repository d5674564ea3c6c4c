#include <stdio.h>

#include "cli/cli.h"

int inferd_cli_bench(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "inferd bench: not built yet\n");
    return 1;
}
