/* The memory a process may fill, for files that are read whole (a JSONL
 * log): physical memory alone overstates it in a container or a job, where
 * the cgroup's limit ends the process without an error to report. */
#include "src/io/memory_limit.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* A limit file's number; 0 for "max", a missing file or anything else. */
static uint64_t read_limit(const char *dir, const char *name) {
    char path[2304];
    snprintf(path, sizeof path, "%s/%s", dir, name);
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

/* The least limit in `name` from the group at path (as /proc/self/cgroup
 * writes it, "/a/b") up to the tree's top, mounted at tree. A group above
 * the process bounds it too; a level not in this mount (a container that
 * sees its own group at the top, under its host's path) is skipped. */
static uint64_t least_up(const char *tree, const char *path, const char *name) {
    char rel[1024];
    snprintf(rel, sizeof rel, "%s", path);
    uint64_t v = 0;
    for (;;) {
        char dir[2048];
        snprintf(dir, sizeof dir, "%s%s", tree, rel);
        v = least(v, read_limit(dir, name));
        char *slash = strrchr(rel, '/');
        if (!slash) return v;
        *slash = '\0';
    }
}

/* The process's group for controller ("" for v2's unified line "0::"), or
 * "" (the top) when the file or its line is missing. */
static void own_group(const char *self_cgroup, const char *controller, char *out, size_t len) {
    out[0] = '\0';
    FILE *f = fopen(self_cgroup, "r");
    if (!f) return;
    char line[1536];
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = '\0';
        char *c1 = strchr(line, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
        if (!c2) continue;
        *c1 = *c2 = '\0';
        const char *list = c1 + 1;
        int match = 0;
        if (!controller[0]) {
            match = strcmp(line, "0") == 0 && !list[0];
        } else {
            for (const char *p = list; *p;) {
                size_t n = strcspn(p, ",");
                if (n == strlen(controller) && strncmp(p, controller, n) == 0) match = 1;
                p += n + (p[n] == ',');
            }
        }
        if (match) {
            snprintf(out, len, "%s", c2 + 1);
            break;
        }
    }
    fclose(f);
}

uint64_t ct_memory_limit(const char *cgroup_root, const char *self_cgroup) {
    const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    uint64_t limit = pages > 0 && page > 0 ? (uint64_t)pages * (uint64_t)page : 0;
    const char *root = cgroup_root ? cgroup_root : "/sys/fs/cgroup";
    const char *self = self_cgroup ? self_cgroup : "/proc/self/cgroup";
    char group[1024], v1_tree[1100];
    /* v1 without a limit reads as a huge number (about 2^63): least() keeps
     * physical memory then. */
    own_group(self, "", group, sizeof group);
    limit = least(limit, least_up(root, group, "memory.max"));
    own_group(self, "memory", group, sizeof group);
    snprintf(v1_tree, sizeof v1_tree, "%s/memory", root);
    return least(limit, least_up(v1_tree, group, "memory.limit_in_bytes"));
}
