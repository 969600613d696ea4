/* The training loop: shuffled batches through forward, loss, backward, the
 * step-statistics reduction and the optimizer, all through the backend
 * table; records drained from a ring every `drain_every` steps and at epoch
 * end; evaluation on the test set after every epoch. */
#ifndef CUTRAIN_TRAIN_H
#define CUTRAIN_TRAIN_H

#include <signal.h>
#include <stdint.h>

#include "cutrain/data.h"
#include "cutrain/health.h"
#include "cutrain/log.h"
#include "cutrain/model.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ct_train_options {
    int epochs;
    int batch_size;
    uint64_t max_steps;          /* 0: no limit                                */
    int drop_last;               /* drop a final batch smaller than batch_size */
    uint64_t seed;
    ct_health_config health;     /* the checks, and the policy on NaN/Inf      */
    double exploding_grad_norm;  /* EXPLODING_GRAD flag on ||g|| above this    */
    uint64_t inject_nan_step;    /* fault injection: poison one gradient value at this step (0: off) */
    int inject_nan_layer;        /* ... in this parametric layer (-1: the output layer)                */
    int drain_every;             /* records per ring drain; >= 1               */
    const volatile sig_atomic_t *interrupt; /* non-NULL and set: stop at the next step */
    const char *device_name;     /* for the summary                            */
} ct_train_options;

/* Sensible defaults: 1 epoch, the model's batch size, stop on NaN,
 * ct_health_defaults(). */
ct_train_options ct_train_defaults(const ct_model_spec *spec);

/* Steps in one epoch of n samples; 0 when drop_last leaves no full batch. */
uint64_t ct_steps_per_epoch(size_t n, int batch_size, int drop_last);

/* A dataset uploaded to the model's backend. */
typedef struct ct_device_data {
    ct_device_dataset ds;
    int32_t *order;      /* backend memory: the indices batches read from  */
    int32_t *host_order; /* host copy, reshuffled every epoch              */
} ct_device_data;

int ct_device_data_upload(ct_backend *be, const ct_dataset *src, ct_device_data *out, ct_error *err);
void ct_device_data_free(ct_backend *be, ct_device_data *d);

/* Mean loss and accuracy of the model over a whole uploaded set (in order). */
void ct_evaluate(ct_model *m, const ct_device_data *d, double *loss, double *acc);

/* Trains; returns the process exit status (CT_EXIT_OK, CT_EXIT_HEALTH_STOP,
 * CT_EXIT_INTERRUPTED) and fills the summary; -1 with err set on failure. */
int ct_train(ct_model *m, const ct_dataset *train, const ct_dataset *test, const ct_train_options *opt,
             ct_logger *log, ct_run_summary *summary, ct_error *err);

#ifdef __cplusplus
}
#endif
#endif
