/* cgroup.h: the CPU and memory limits a container puts on this process, and the compute thread
 * budget that follows from them.
 *
 * DESIGN
 * In a container the machine's core count says nothing about the CPU the process may use: a
 * Kubernetes pod with `limits.cpu: 2` on a 64-core node sees 64 online CPUs, and a thread
 * budget of 64 would have the kernel's CFS bandwidth control throttle every thread of the
 * process (HTTP and health threads included) for the rest of each 100 ms period once the
 * quota is spent. That is exactly the "health times out under load" failure inferd exists to
 * avoid. So the default --threads is the smallest of:
 *
 *   - the online CPUs of the host (sysconf), the fallback;
 *   - the CPUs in the affinity mask (sched_getaffinity), which is how a cpuset (taskset,
 *     Kubernetes' static CPU manager, docker --cpuset-cpus) reaches the process;
 *   - the CFS quota of the process's cgroup and of each of its ancestors that is visible:
 *     cgroup v2 `cpu.max` ("150000 100000", or "max 100000" for none), cgroup v1
 *     `cpu.cfs_quota_us` / `cpu.cfs_period_us` (-1 for none).
 *
 * Rounding: a fractional quota rounds DOWN, with a minimum of 1 (1.5 CPUs gives 1 compute
 * thread, 2.9 gives 2, 0.5 gives 1). The quota covers the whole process, not only the compute
 * threads: tokenization runs on the HTTP threads, and health, metrics and response formatting
 * need CPU too. Rounding up would let the compute threads alone spend the whole quota and get
 * the process throttled; rounding down leaves the fraction to the HTTP threads. An integral
 * quota of N CPUs is treated like N cores, as on a machine with N cores.
 *
 * Finding the files: /proc/self/cgroup names the process's cgroup per hierarchy
 * ("0::/kubepods/pod1/abc" for v2, "4:cpu,cpuacct:/docker/abc" for a v1 controller). A line
 * for a v1 hierarchy carrying the `cpu` controller means v1 (the controller can sit on one
 * hierarchy only, so in hybrid mode v2 has no cpu.max); otherwise the "0::" line means v2.
 * Inside a container the cgroup filesystem is usually mounted at the container's own cgroup
 * (a cgroup namespace, or a v1 bind mount), so the path from /proc/self/cgroup may not exist
 * under the mount: the folder used is the longest suffix of the path that exists (the full
 * path, then without its first component, ..., then the mount root itself), and from there
 * every folder up to the mount root is read, the tightest limit winning (a pod's limit sits on
 * the pod's folder, the container's on its own).
 *
 * Every path is injectable (inferd_cgroup_paths) so tests run against fixture trees.
 * Nothing here fails: missing files mean "no limit", and a malformed file is reported as an
 * error the caller logs before carrying on without that limit.
 */
#ifndef INFERD_UTIL_CGROUP_H
#define INFERD_UTIL_CGROUP_H

#include <stddef.h>
#include <stdint.h>

#include "util/error.h"

typedef enum inferd_cgroup_source {
    INFERD_CGROUP_SOURCE_HOST = 0,     /* the host's online CPUs */
    INFERD_CGROUP_SOURCE_AFFINITY = 1, /* the CPUs in this process's affinity mask */
    INFERD_CGROUP_SOURCE_V1 = 2,       /* cgroup v1 cpu.cfs_quota_us / cpu.cfs_period_us */
    INFERD_CGROUP_SOURCE_V2 = 3,       /* cgroup v2 cpu.max */
    INFERD_CGROUP_SOURCE_FLAG = 4,     /* --threads */
} inferd_cgroup_source;

/* Where to read from. A NULL field takes the default. */
typedef struct inferd_cgroup_paths {
    const char *root;        /* the cgroup filesystem; default "/sys/fs/cgroup" */
    const char *proc_cgroup; /* the process's cgroups; default "/proc/self/cgroup" */
} inferd_cgroup_paths;

/* The tightest CPU quota found, as the kernel states it. */
typedef struct inferd_cgroup_quota {
    int version;       /* 1 or 2; 0 when no quota applies */
    int64_t quota_us;  /* CPU time the cgroup may use per period, > 0 when version != 0 */
    int64_t period_us; /* > 0 when version != 0 */
    char dir[512];     /* the folder whose file set the quota */
} inferd_cgroup_quota;

/* The compute thread budget and how it was chosen. */
typedef struct inferd_cgroup_budget {
    int threads;                 /* the budget, >= 1 */
    inferd_cgroup_source source; /* what set it */
    int host_cpus;               /* online CPUs, >= 1 */
    int affinity_cpus;           /* CPUs in the affinity mask; 0 if unknown */
    inferd_cgroup_quota quota;   /* the quota found, binding or not; version 0 when none */
    int64_t memory_limit_bytes;  /* the cgroup's memory limit; -1 when none */
    char reason[200];            /* e.g. "cgroup v2 cpu.max 150000 100000: 1.50 CPUs" */
} inferd_cgroup_budget;

/* Finds the tightest CPU quota on the process's cgroup and its visible ancestors. Fills *out
 * (version 0 when there is none, which includes a missing /proc file or cgroup filesystem)
 * and returns 0; returns INFERD_EINVAL with err naming the file when a quota file exists but
 * cannot be parsed, after filling *out from the other folders. Any thread; reads files only. */
int inferd_cgroup_read_cpu_quota(const inferd_cgroup_paths *paths,
                                 inferd_cgroup_quota *out /* out */, inferd_error *err);

/* The tightest memory limit on the process's cgroup and its visible ancestors: v2
 * memory.max, v1 memory.limit_in_bytes (the kernel's "unlimited" value, about 2^63, counts as
 * none). Sets *out to -1 when there is none. Returns 0, or INFERD_EINVAL for a malformed file
 * (as inferd_cgroup_read_cpu_quota). */
int inferd_cgroup_read_memory_limit(const inferd_cgroup_paths *paths, int64_t *out /* out */,
                                    inferd_error *err);

/* The budget from the parts: min(host_cpus, affinity_cpus if > 0, floor(quota / period) with
 * a minimum of 1). The affinity mask is named as the source only when it holds fewer CPUs
 * than the host (a full mask restricts nothing); the quota is named whenever it is at most
 * the others, since it is a setting an operator made. quota may be NULL. Leaves
 * memory_limit_bytes at -1. Pure. */
void inferd_cgroup_budget_compute(const inferd_cgroup_quota *quota, int host_cpus,
                                  int affinity_cpus, inferd_cgroup_budget *out /* out */);

/* Reads everything (paths may be NULL for the real files; sched_getaffinity and sysconf for
 * the CPU counts) and computes the budget. Returns 0, or a negative code with err filled when
 * a cgroup file was malformed: *out is still complete and usable, without that limit, and
 * the caller should log err as a warning. */
int inferd_cgroup_budget_detect(const inferd_cgroup_paths *paths,
                                inferd_cgroup_budget *out /* out */, inferd_error *err);

/* Replaces the budget with an explicit thread count (--threads), keeping what was detected
 * in the reason ("--threads 4; detected 2 from cgroup v2 ..."). threads >= 1. */
void inferd_cgroup_budget_override(inferd_cgroup_budget *b, int threads);

/* The source as a metric label value: "host", "affinity", "cgroup_v1", "cgroup_v2", "flag". */
const char *inferd_cgroup_source_name(inferd_cgroup_source s);

/* Makes b the process's budget, for /metrics. Call once, from the main thread, before any
 * thread that reads it starts (a copy is kept; later calls replace it, so they must also come
 * before those threads). */
void inferd_cgroup_budget_publish(const inferd_cgroup_budget *b);

/* The budget last published, or NULL before the first inferd_cgroup_budget_publish. Any
 * thread, after publication. */
const inferd_cgroup_budget *inferd_cgroup_budget_published(void);

/* Writes the Prometheus text (format 0.0.4) for b into buf, NUL-terminated:
 *   inferd_thread_budget{source="cgroup_v2"} 2        the budget and what set it
 *   inferd_cpu_quota_cores 1.5                        the cgroup CPU quota; 0 when none
 *   inferd_cpu_affinity_cores 8                       CPUs in the affinity mask
 *   inferd_memory_limit_bytes 4294967296              the cgroup memory limit; 0 when none
 * each with its HELP and TYPE lines. Returns the length written, or INFERD_ETOOLARGE when it
 * does not fit (1024 bytes always do). Pure, any thread. */
int inferd_cgroup_budget_format_metrics(const inferd_cgroup_budget *b, char *buf, size_t size);

#endif
