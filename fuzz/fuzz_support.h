/* What the fuzz targets share. cutrain's parsers read files by path, so each
 * input is first written to a temporary file of this process; and every
 * input is held to the error contract of include/cutrain/error.h (a broken
 * contract aborts, which libFuzzer reports like any crash). */
#ifndef CUTRAIN_FUZZ_SUPPORT_H
#define CUTRAIN_FUZZ_SUPPORT_H

#include <stddef.h>
#include <stdint.h>

#include "cutrain/error.h"

#ifdef __cplusplus
extern "C" {
#endif

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Writes size bytes to this process's temporary file number slot (0..3)
 * and returns its path, which stays the same for the whole run. */
const char *ct_fuzz_file(int slot, const uint8_t *data, size_t size);

/* The directory those files live in (created on first use). */
const char *ct_fuzz_dir(void);

/* Aborts, naming what was broken, unless err holds one non-empty line with
 * an exit status from 1 to 3 (runtime failure, usage, bad input) that starts
 * with prefix or prefix2 (file paths; either may be NULL, both NULL: any). */
void ct_fuzz_check_error(const ct_error *err, const char *prefix, const char *prefix2);

/* Prints "fuzz: <what>" to stderr and aborts. */
void ct_fuzz_fail(const char *fmt, ...) CT_PRINTF(1, 2);

/* Reads every byte of p[0..n) so that a buffer shorter than a parser
 * claims is caught by AddressSanitizer here, not later. */
unsigned ct_fuzz_touch(const void *p, size_t n);

#ifdef __cplusplus
}
#endif
#endif
