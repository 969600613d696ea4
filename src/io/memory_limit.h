/* How much memory this process may fill: what a file read whole must fit. */
#ifndef CUTRAIN_IO_MEMORY_LIMIT_H
#define CUTRAIN_IO_MEMORY_LIMIT_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The least of the machine's physical memory and the memory limit of the
 * control group under cgroup_root (cgroup v2's memory.max, v1's
 * memory/memory.limit_in_bytes; "max" or an absent file is no limit);
 * 0 when none can be told. NULL for the system's /sys/fs/cgroup. A
 * container's limit is what matters there: past it the kernel kills the
 * process, though malloc said yes. */
uint64_t ct_memory_limit(const char *cgroup_root);

#ifdef __cplusplus
}
#endif

#endif
