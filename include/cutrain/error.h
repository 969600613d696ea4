/* Errors that reach the user: a category (which is also the process exit
 * status) and one line of text naming the file or flag and what was expected.
 * Functions that can fail on outside input take a ct_error* and return 0 on
 * success, -1 on failure; nothing else in the library prints. */
#ifndef CUTRAIN_ERROR_H
#define CUTRAIN_ERROR_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Exit statuses of the cutrain command; documented in README.md. */
enum {
    CT_EXIT_OK = 0,
    CT_EXIT_FAILURE = 1,     /* runtime failure: device, out of memory, I/O mid-run */
    CT_EXIT_USAGE = 2,       /* bad command line: unknown flag, nonsense value       */
    CT_EXIT_BAD_INPUT = 3,   /* bad input file: data, model file, log path           */
    CT_EXIT_HEALTH_STOP = 4, /* a health policy stopped training                     */
    CT_EXIT_INTERRUPTED = 5, /* SIGINT/SIGTERM: stopped at a step boundary           */
    CT_EXIT_MISMATCH = 6,    /* cutrain check: the run differs from the golden       */
};

typedef struct ct_error {
    int code;       /* one of CT_EXIT_*; 0 while no error */
    char msg[3072]; /* one line, no trailing newline: room for two paths of PATH_MAX-ish length and the reason */
} ct_error;

#if defined(__GNUC__)
#define CT_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define CT_PRINTF(a, b)
#endif

/* Sets err (when non-NULL) and returns -1, so callers can `return ct_fail(...)`. */
int ct_fail(ct_error *err, int code, const char *fmt, ...) CT_PRINTF(3, 4);
void ct_error_clear(ct_error *err);

#ifdef __cplusplus
}
#endif
#endif
