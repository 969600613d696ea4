/* The memory a process may fill, for files that are read whole (a JSONL
 * log): physical memory alone overstates it in a container, where the
 * cgroup's limit ends the process without an error to report. */
#include "src/io/memory_limit.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

/* A limit file's number; 0 for "max", a missing file or anything else. */
static uint64_t read_limit(const char *root, const char *name) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", root, name);
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    char line[64];
    uint64_t v = 0;
    if (fgets(line, sizeof line, f)) {
        char *end = NULL;
        unsigned long long n = strtoull(line, &end, 10);
        if (end != line && (*end == '\n' || *end == '\0')) v = (uint64_t)n;
    }
    fclose(f);
    return v;
}

static uint64_t least(uint64_t a, uint64_t b) { return a == 0 ? b : b == 0 ? a : a < b ? a : b; }

uint64_t ct_memory_limit(const char *cgroup_root) {
    const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    uint64_t limit = pages > 0 && page > 0 ? (uint64_t)pages * (uint64_t)page : 0;
    const char *root = cgroup_root ? cgroup_root : "/sys/fs/cgroup";
    /* v1 without a limit reads as a huge number (about 2^63): least() keeps
     * physical memory then. */
    limit = least(limit, read_limit(root, "memory.max"));
    return least(limit, read_limit(root, "memory/memory.limit_in_bytes"));
}
