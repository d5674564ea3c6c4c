#include <stdio.h>

#include "cli/cli.h"

int inferd_cli_inspect(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "inferd inspect: not built yet\n");
    return 1;
}
