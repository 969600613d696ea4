/* Strict number parsing for flags and model files: the whole token must be
 * a number, finite, and in range; "1e-3" and "0x10" style inputs behave as
 * C's strtod/strtol read them, "12abc", "", "nan" and "inf" do not parse. */
#ifndef CUTRAIN_SRC_IO_PARSE_H
#define CUTRAIN_SRC_IO_PARSE_H

#include <stdint.h>

int ct_parse_long(const char *s, long min, long max, long *out);
int ct_parse_u64(const char *s, uint64_t *out);
int ct_parse_double(const char *s, double *out); /* finite only */

#endif
