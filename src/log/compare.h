/* Comparing two JSONL logs record by record (`cutrain check`).
 *
 * Compared: step, epoch and diagnosis records, each kind in its own order
 * (so a backend that emits diagnoses a few steps later than another still
 * lines up), every field of the golden record against the same field of the
 * run's. Not compared: summary records (their numbers repeat the last epoch's;
 * their device and times legitimately differ), records of unknown types, and
 * the timing fields (`seconds`, `*_seconds`, `*_per_s`) and a diagnosis's
 * `message` (prose; its code, severity, step, epoch and layer are compared).
 *
 * Numbers match when |run - golden| <= atol + rtol * |golden| (numpy's
 * isclose, the golden as the reference); null matches only null; strings,
 * booleans and arrays (flags) match exactly. `type`, `step` and `epoch` are
 * always exact: they say which records are being compared.
 */
#ifndef CUTRAIN_SRC_LOG_COMPARE_H
#define CUTRAIN_SRC_LOG_COMPARE_H

#include "cutrain/error.h"
#include "src/io/jsonl_read.h"

#ifdef __cplusplus
extern "C" {
#endif

#define CT_TOL_MAX_OVERRIDES 32
#define CT_TOL_FIELD_LEN 96

typedef struct ct_tolerance {
    double rtol, atol;
} ct_tolerance;

typedef struct ct_compare_options {
    ct_tolerance dflt; /* {0, 0}: the printed numbers must be identical */
    int n_over;
    struct {
        char field[CT_TOL_FIELD_LEN]; /* "loss", "layer_grad_norms", "layer_grad_norms.dense1" */
        ct_tolerance tol;
    } over[CT_TOL_MAX_OVERRIDES];
} ct_compare_options;

/* tolerance.c: appends the overrides of a `--tol` value,
 * "FIELD=RTOL:ATOL[,FIELD=RTOL:ATOL...]"; errors (CT_EXIT_USAGE) name `flag`. */
int ct_tol_parse(const char *spec, const char *flag, ct_compare_options *o, ct_error *err);
/* The tolerance for the number at `path`: the override for the path, else
 * for its top-level field (the part before the first '.'), else the default. */
ct_tolerance ct_tol_for(const ct_compare_options *o, const char *path);
/* 0 when every override names a field that occurs in one of golden's
 * compared records, so a typo cannot silently compare with the default. */
int ct_tol_check_fields(const ct_compare_options *o, const ct_jsonl_file *golden, const char *flag, ct_error *err);

typedef struct ct_compare_result {
    int differ;                 /* 1 when a difference was found           */
    size_t matched[CT_REC_KINDS]; /* records compared, by kind (all match) */
    char line[1024];            /* the first difference, one line          */
} ct_compare_result;

/* compare.c: compares run against golden. The first difference is the one
 * earliest in the golden file: a record missing from the run counts at the
 * golden line that has it; one only the run has, where it would sit in the
 * golden (a diagnosis just after the step it names, a step or an epoch just
 * after the golden's last one). 0 when
 * the comparison ran (res->differ says how it came out); -1 with err when it
 * could not (out of memory). */
int ct_compare_logs(const ct_jsonl_file *run, const ct_jsonl_file *golden, const ct_compare_options *o,
                    ct_compare_result *res, ct_error *err);

#ifdef __cplusplus
}
#endif
#endif
