/* Log sinks. Every sink reads the same records: a progress line on the
 * terminal, JSONL for machines (every step, epoch, diagnosis and the final
 * summary; field list in README.md), CSV with one row per epoch, and a
 * TensorBoard event file (steps, epochs and diagnoses) in a log directory.
 * Files are opened before training starts, so an unwritable path is an
 * error before any work; they are flushed at every epoch and on close. */
#ifndef CUTRAIN_LOG_H
#define CUTRAIN_LOG_H

#include <stdint.h>
#include <stdio.h>

#include "cutrain/error.h"
#include "cutrain/health.h"
#include "cutrain/record.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ct_epoch_summary {
    uint32_t epoch;
    uint64_t steps;           /* steps in this epoch                     */
    uint64_t samples;         /* rows trained on in this epoch           */
    double train_loss;        /* sample-weighted mean over the epoch     */
    double train_acc;
    double test_loss;         /* NaN when not evaluated                  */
    double test_acc;
    double seconds;           /* training time, evaluation excluded      */
    double eval_seconds;
    double samples_per_s;
    uint64_t empty_batches;
    uint64_t skipped_steps;
} ct_epoch_summary;

typedef struct ct_run_summary {
    const char *status;       /* "completed", "stopped", "interrupted"  */
    int exit_code;
    double test_loss, test_acc; /* NaN when never evaluated             */
    uint64_t steps;
    uint32_t epochs;
    double seconds;           /* wall time of the run                    */
    double train_seconds;     /* the epochs' training time, evaluation excluded */
    const char *model;
    const char *device;
    uint64_t seed;
    uint64_t params;
} ct_run_summary;

typedef struct ct_log_options {
    const char *jsonl_path;   /* NULL: none */
    const char *csv_path;     /* NULL: none */
    int quiet;                /* no terminal output at all             */
    int tty;                  /* live progress line (stdout is a TTY)  */
    int n_layers;             /* names for per-layer gradient norms    */
    const char (*layer_names)[32]; /* n_layers of them; required when n_layers > 0 */
    const char *tensorboard_dir; /* NULL: none; made (mkdir -p) when missing */
    int jsonl_diagnoses_only; /* the JSONL gets diagnoses, and summaries from ct_log_summary_fields only */
} ct_log_options;

typedef struct ct_logger ct_logger;

ct_logger *ct_logger_open(const ct_log_options *opt, ct_error *err);
void ct_log_step(ct_logger *lg, const ct_step_record *r);
void ct_log_progress(ct_logger *lg, uint32_t epoch, uint32_t epochs, uint64_t step_in_epoch,
                     uint64_t steps_in_epoch, double loss, double acc, double samples_per_s, double eta_s);
void ct_log_epoch(ct_logger *lg, const ct_epoch_summary *e, uint32_t epochs);
void ct_log_diagnosis(ct_logger *lg, const ct_diagnosis *d);
/* The terminal line first, then the JSONL record. -1 with err set when the
 * terminal (stdout) could not be written, at this line or before it: the
 * record then says "failed" with exit status 1 (a run whose output was
 * lost did not end as its summary would say); 0 otherwise. */
int ct_log_summary(ct_logger *lg, const ct_run_summary *s, ct_error *err);
/* The JSONL summary record alone, with more fields after the usual ones:
 * extra is `"key":value` pairs joined by commas (NULL or "": none). For a
 * command whose run is made of several trainings (bench). */
void ct_log_summary_fields(ct_logger *lg, const ct_run_summary *s, const char *extra);
/* A line for the terminal only (stderr when quiet is off). */
void ct_log_note(ct_logger *lg, const char *fmt, ...) CT_PRINTF(2, 3);
/* -1 with err naming the log when a write to one of the files has failed
 * so far (the files are flushed at every epoch, so a full disk shows by the
 * end of the epoch it filled); 0 otherwise. */
int ct_logger_failed(const ct_logger *lg, ct_error *err);
/* Flushes and closes; -1 with err set when a write failed (disk full). */
int ct_logger_close(ct_logger *lg, ct_error *err);

/* JSON helpers shared by the sinks: finite numbers as %.9g, others as null. */
void ct_json_number(FILE *f, double v);
void ct_json_string(FILE *f, const char *s);

#ifdef __cplusplus
}
#endif
#endif
