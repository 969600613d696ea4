/* The sinks behind ct_logger; each writes one format. */
#ifndef CUTRAIN_SRC_LOG_SINKS_H
#define CUTRAIN_SRC_LOG_SINKS_H

#include <stdio.h>

#include "cutrain/log.h"

struct ct_logger {
    FILE *jsonl;
    FILE *csv;
    FILE *tb;                 /* the TensorBoard event file */
    char jsonl_path[1024];
    char csv_path[1024];
    char tb_dir[1024];
    char tb_path[1200];
    int tb_made;              /* directories made for it, undone if the run does not start */
    size_t tb_made_len;       /* tb_dir's prefix up to the deepest of them */
    int tb_bad;               /* an event failed to write */
    uint64_t tb_last_step;    /* the step an epoch's event is plotted at */
    int flush_errno;          /* of the first flush that failed, 0 if none */
    int quiet, tty;
    int jsonl_diagnoses_only;
    int progress_shown;       /* a live line is on screen and needs clearing */
    int n_layers;
    char layer_names[CT_MAX_PARAM_LAYERS][32];
};

void ct_jsonl_step(struct ct_logger *lg, const ct_step_record *r);
void ct_jsonl_epoch(FILE *f, const ct_epoch_summary *e);
void ct_jsonl_diagnosis(FILE *f, const ct_diagnosis *d);
/* extra: more `"key":value` pairs for the record, or NULL. */
void ct_jsonl_summary(FILE *f, const ct_run_summary *s, const char *extra);

int ct_tb_open(struct ct_logger *lg, const char *dir, ct_error *err);
void ct_tb_discard(struct ct_logger *lg);
void ct_tb_step(struct ct_logger *lg, const ct_step_record *r);
void ct_tb_epoch(struct ct_logger *lg, const ct_epoch_summary *e);
void ct_tb_diagnosis(struct ct_logger *lg, const ct_diagnosis *d);

void ct_csv_header(FILE *f);
void ct_csv_epoch(FILE *f, const ct_epoch_summary *e);

#endif
