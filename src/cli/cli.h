/* cli.h: the subcommands of the inferd binary. Each takes the arguments after its name
 * (argv[0] is the subcommand) and returns the process exit code. */
#ifndef INFERD_CLI_CLI_H
#define INFERD_CLI_CLI_H

#define INFERD_VERSION "0.1.0"

int inferd_cli_serve(int argc, char **argv);   /* cli/serve.c */
int inferd_cli_exec(int argc, char **argv);    /* cli/exec.c */
int inferd_cli_perf(int argc, char **argv);    /* cli/perf.c */
int inferd_cli_bench(int argc, char **argv);   /* cli/bench.c */
int inferd_cli_inspect(int argc, char **argv); /* cli/inspect.c */

#endif
