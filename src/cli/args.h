/* A table-driven flag parser: each flag names its type and bounds, so every
 * value is validated in one place, before any work, with one message form:
 * "--lr: expected a number greater than 0 and at most 10, got 'abc'". */
#ifndef CUTRAIN_CLI_ARGS_H
#define CUTRAIN_CLI_ARGS_H

#include <stdint.h>
#include <stdio.h>

#include "cutrain/error.h"

/* The longest value a string flag takes (a path fits the 1024-byte buffers
 * it goes into). */
#define CT_ARG_MAX_STRING 1023

typedef enum { ARG_FLAG, ARG_INT, ARG_U64, ARG_DOUBLE, ARG_STRING, ARG_CHOICE } ct_arg_kind;

typedef struct ct_arg {
    const char *name;      /* "--lr"                                      */
    ct_arg_kind kind;
    void *dst;             /* int*, int*, uint64_t*, double*, const char** */
    double min, max;       /* ARG_INT, ARG_DOUBLE bounds                  */
    int min_exclusive;     /* ARG_DOUBLE: value must be > min             */
    const char *metavar;
    const char *help;
    const char *const *choices; /* ARG_CHOICE: NULL-terminated            */
    int seen;              /* set by the parser                           */
} ct_arg;

/* 0 on success, 1 when --help was asked (help printed), -1 on error. */
int ct_args_parse(int argc, char **argv, ct_arg *args, int n, const char *usage, ct_error *err);
void ct_args_help(FILE *f, const char *usage, const ct_arg *args, int n);
const ct_arg *ct_args_find(const ct_arg *args, int n, const char *name);
int ct_args_seen(const ct_arg *args, int n, const char *name);

#endif
