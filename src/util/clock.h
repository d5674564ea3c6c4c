/* clock.h: clocks. */
#ifndef INFERD_UTIL_CLOCK_H
#define INFERD_UTIL_CLOCK_H

#include <stdint.h>
#include <time.h>

/* Monotonic nanoseconds, for durations and deadlines. */
static inline int64_t inferd_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

#endif
