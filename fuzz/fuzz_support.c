#include "fuzz/fuzz_support.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SLOTS 4

static char g_dir[512];
static char g_path[SLOTS][600];

static void remove_files(void) {
    for (int i = 0; i < SLOTS; ++i)
        if (g_path[i][0]) (void)unlink(g_path[i]);
    if (g_dir[0]) (void)rmdir(g_dir);
}

void ct_fuzz_fail(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("fuzz: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    abort();
}

const char *ct_fuzz_dir(void) {
    if (g_dir[0]) return g_dir;
    const char *base = getenv("TMPDIR");
    snprintf(g_dir, sizeof g_dir, "%s/cutrain-fuzz-XXXXXX", base && *base ? base : "/tmp");
    if (!mkdtemp(g_dir)) ct_fuzz_fail("cannot create a temporary directory in %s", base ? base : "/tmp");
    atexit(remove_files);
    return g_dir;
}

const char *ct_fuzz_file(int slot, const uint8_t *data, size_t size) {
    if (slot < 0 || slot >= SLOTS) ct_fuzz_fail("temporary file slot %d out of range", slot);
    if (!g_path[slot][0]) snprintf(g_path[slot], sizeof g_path[slot], "%s/input%d", ct_fuzz_dir(), slot);
    FILE *f = fopen(g_path[slot], "wb");
    if (!f || (size && fwrite(data, 1, size, f) != size) || fclose(f) != 0)
        ct_fuzz_fail("cannot write %s", g_path[slot]);
    return g_path[slot];
}

static int starts_with(const char *s, const char *prefix) {
    return prefix && strncmp(s, prefix, strlen(prefix)) == 0;
}

void ct_fuzz_check_error(const ct_error *err, const char *prefix, const char *prefix2) {
    if (err->code < CT_EXIT_FAILURE || err->code > CT_EXIT_BAD_INPUT)
        ct_fuzz_fail("error status %d is not 1, 2 or 3 (message: %s)", err->code, err->msg);
    if (!err->msg[0]) ct_fuzz_fail("error status %d with an empty message", err->code);
    if (strchr(err->msg, '\n') || strchr(err->msg, '\r')) ct_fuzz_fail("error message is not one line: %s", err->msg);
    if ((prefix || prefix2) && !starts_with(err->msg, prefix) && !starts_with(err->msg, prefix2))
        ct_fuzz_fail("error message does not start with the file name %s: %s", prefix, err->msg);
}

unsigned ct_fuzz_touch(const void *p, size_t n) {
    const unsigned char *b = p;
    unsigned sum = 0;
    for (size_t i = 0; i < n; ++i) sum += b[i];
    return sum;
}
