#include "cli/loadgen_proc.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util/clock.h"

int inferd_loadgen_proc_parse_stat(const char *text, int64_t *cpu_ticks, int *threads,
                                   inferd_error *err) {
    // The command name (field 2) is in parentheses and may contain anything, so the fields
    // are counted from the last ')'.
    const char *p = strrchr(text, ')');
    if (!p)
        return inferd_error_set(err, INFERD_EINVAL, "no command name in /proc stat text");
    p++;
    long long utime = -1, stime = -1, nthreads = -1;
    for (int field = 3; field <= 20; field++) {
        while (*p == ' ')
            p++;
        if (!*p)
            return inferd_error_set(err, INFERD_EINVAL, "/proc stat text ends at field %d", field);
        char *end;
        long long v = strtoll(p, &end, 10);
        if (field == 3) { // state: one letter
            end = (char *)p + strcspn(p, " ");
        } else if (end == p) {
            return inferd_error_set(err, INFERD_EINVAL, "/proc stat field %d is not a number",
                                    field);
        }
        if (field == 14)
            utime = v;
        else if (field == 15)
            stime = v;
        else if (field == 20)
            nthreads = v;
        p = end;
    }
    if (utime < 0 || stime < 0 || nthreads < 1)
        return inferd_error_set(err, INFERD_EINVAL, "implausible /proc stat values");
    *cpu_ticks = utime + stime;
    *threads = (int)nthreads;
    return 0;
}

int inferd_loadgen_proc_sample_pid(int pid, inferd_loadgen_proc_sample *out, inferd_error *err) {
    char path[64], text[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return inferd_error_set(err, errno == ENOENT ? INFERD_ENOTFOUND : INFERD_EINVAL,
                                "cannot read %s: %s", path, strerror(errno));
    ssize_t n = read(fd, text, sizeof text - 1);
    int saved = errno;
    close(fd);
    if (n <= 0)
        // A process that exited between open and read reads as empty (or ESRCH).
        return inferd_error_set(err, INFERD_ENOTFOUND, "process %d is gone (%s)", pid,
                                n < 0 ? strerror(saved) : "empty stat");
    text[n] = 0;
    out->at_ns = inferd_now_ns();
    int rc = inferd_loadgen_proc_parse_stat(text, &out->cpu_ticks, &out->threads, err);
    if (rc < 0)
        inferd_error_prefix(err, "process %d: ", pid);
    return rc;
}

double inferd_loadgen_proc_cpu_percent(const inferd_loadgen_proc_sample *from,
                                       const inferd_loadgen_proc_sample *to) {
    double wall = (double)(to->at_ns - from->at_ns) / 1e9;
    long hz = sysconf(_SC_CLK_TCK);
    if (wall <= 0 || hz <= 0)
        return 0;
    return 100.0 * (double)(to->cpu_ticks - from->cpu_ticks) / (double)hz / wall;
}
