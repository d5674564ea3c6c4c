/* loadgen_proc.h: what a process on this machine is costing, read from /proc, so `inferd bench
 * --server-pid` can report the server's CPU use and thread count next to its latencies.
 *
 * Everything comes from one read of /proc/PID/stat: utime + stime (fields 14 and 15, in clock
 * ticks, all threads together) and num_threads (field 20, the same number /proc/PID/status
 * shows as Threads). Pure functions; safe from any thread.
 */
#ifndef INFERD_CLI_LOADGEN_PROC_H
#define INFERD_CLI_LOADGEN_PROC_H

#include <stdint.h>

#include "util/error.h"

typedef struct inferd_loadgen_proc_sample {
    int64_t cpu_ticks; /* user + system time of all threads, in clock ticks */
    int threads;       /* threads at the time of the sample */
    int64_t at_ns;     /* monotonic time of the sample */
} inferd_loadgen_proc_sample;

/* Parses the text of a /proc/PID/stat file (the command name may hold spaces and parentheses).
 * Returns 0, or INFERD_EINVAL when the text does not look like one. */
int inferd_loadgen_proc_parse_stat(const char *text, int64_t *cpu_ticks /* out */,
                                   int *threads /* out */, inferd_error *err);

/* Samples process pid. Returns 0, INFERD_ENOTFOUND when there is no such process, or
 * INFERD_EINVAL when its stat file cannot be parsed. */
int inferd_loadgen_proc_sample_pid(int pid, inferd_loadgen_proc_sample *out /* out */,
                                   inferd_error *err);

/* CPU use between two samples of one process, in percent of one core (so 2 busy cores give
 * 200). 0 when no time passed. */
double inferd_loadgen_proc_cpu_percent(const inferd_loadgen_proc_sample *from,
                                       const inferd_loadgen_proc_sample *to);

#endif
