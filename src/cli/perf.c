#include <stdio.h>

#include "cli/cli.h"

int inferd_cli_perf(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "inferd perf: not built yet\n");
    return 1;
}
