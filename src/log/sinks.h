/* The sinks behind ct_logger; each writes one format. */
#ifndef CUTRAIN_SRC_LOG_SINKS_H
#define CUTRAIN_SRC_LOG_SINKS_H

#include <stdio.h>

#include "cutrain/log.h"

struct ct_logger {
    FILE *jsonl;
    FILE *csv;
    char jsonl_path[512];
    char csv_path[512];
    int quiet, tty;
    int progress_shown;       /* a live line is on screen and needs clearing */
    int n_layers;
    char layer_names[CT_MAX_PARAM_LAYERS][32];
};

void ct_jsonl_step(struct ct_logger *lg, const ct_step_record *r);
void ct_jsonl_epoch(FILE *f, const ct_epoch_summary *e);
void ct_jsonl_diagnosis(FILE *f, const ct_diagnosis *d);
void ct_jsonl_summary(FILE *f, const ct_run_summary *s);

void ct_csv_header(FILE *f);
void ct_csv_epoch(FILE *f, const ct_epoch_summary *e);

#endif
