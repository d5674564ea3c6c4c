#include <stdio.h>

#include "cli/cli.h"

int inferd_cli_exec(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "inferd exec: not built yet\n");
    return 1;
}
