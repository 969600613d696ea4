/* How much memory this process may fill: what a file read whole must fit. */
#ifndef CUTRAIN_IO_MEMORY_LIMIT_H
#define CUTRAIN_IO_MEMORY_LIMIT_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The least of the machine's physical memory and the memory limits of the
 * process's control group and of each group above it (cgroup v2's
 * memory.max, v1's memory.limit_in_bytes under memory/; "max" or an absent
 * file is no limit); 0 when none can be told. The group is the one
 * self_cgroup names (the format of /proc/self/cgroup), under cgroup_root;
 * NULL for the system's /proc/self/cgroup and /sys/fs/cgroup. A
 * container's or a job's limit is what matters there: past it the kernel
 * kills the process, though malloc said yes. Without a cgroup namespace
 * (a Slurm job, a systemd unit) the process's group is not the tree's
 * root, whose limit is none. */
uint64_t ct_memory_limit(const char *cgroup_root, const char *self_cgroup);

#ifdef __cplusplus
}
#endif

#endif
