/* The training loop: shuffled batches through forward, loss, backward, the
 * step-statistics reduction and the optimizer, all through the backend
 * table; records drained from a ring every `drain_every` steps and at epoch
 * end; evaluation on the test set after every epoch. */
#ifndef CUTRAIN_TRAIN_H
#define CUTRAIN_TRAIN_H

#include <signal.h>
#include <stdint.h>

#include "cutrain/checkpoint.h"
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
    int grad_stats;              /* 1: the full step statistics; 0: losses only, no pass over the
                                    gradients (for measuring what the statistics cost; the gradient
                                    flags, clipping and the gradient diagnoses are then off)      */
    int evaluate;                /* 1: evaluate on the test set after each epoch                    */
    double target_acc;           /* > 0: end after the first epoch whose test accuracy reaches it  */
    int inject_nan_layer;        /* ... in this parametric layer (-1: the output layer)                */
    int inject_kind;             /* ... what is planted: CT_INJECT_*                                 */
    int drain_every;             /* records per ring drain; >= 1               */
    const volatile sig_atomic_t *interrupt; /* non-NULL and set: stop at the next step */
    const char *device_name;     /* for the summary                            */
    unsigned phases;             /* CT_PHASE_* bits queued each step; 0 = all. Fewer than all is for
                                    timing the parts of a step (cutrain bench --phases): the records
                                    then mean nothing, so nothing is logged or checked            */
    int timing_only;             /* 1: the records are not read, as with fewer phases: for a bench
                                    whose backend cuts ops out of the steps (cutrain bench --ops) */
    const char *save_path;       /* a training checkpoint here when the run ends (not after a health
                                    stop: those weights are not worth keeping), and ...              */
    uint64_t save_every;         /* ... every this many steps (0: at the end only)                   */
    const ct_train_state *resume; /* go on from here (ct_train_load_checkpoint filled the model)     */
} ct_train_options;

/* What fault injection plants in the chosen layer's gradient at the chosen
 * step: one NaN, +Inf or -Inf (its first weight gradient), or zeros over the
 * whole layer (a dead layer for one step). */
enum { CT_INJECT_NAN = 0, CT_INJECT_POS_INF, CT_INJECT_NEG_INF, CT_INJECT_ZERO };

/* The parts of a training step, in the order they are queued. */
enum {
    CT_PHASE_GATHER = 1u << 0,   /* the batch, read from the device dataset  */
    CT_PHASE_FORWARD = 1u << 1,
    CT_PHASE_LOSS = 1u << 2,     /* loss value and its gradient              */
    CT_PHASE_BACKWARD = 1u << 3,
    CT_PHASE_STATS = 1u << 4,    /* the step-statistics reduction             */
    CT_PHASE_UPDATE = 1u << 5,   /* the optimizer                             */
    CT_PHASE_ALL = (1u << 6) - 1u
};

/* Sensible defaults: 1 epoch, the model's batch size, stop on NaN,
 * ct_health_defaults(). */
ct_train_options ct_train_defaults(const ct_model_spec *spec);

/* Steps in one epoch of n samples; 0 when drop_last leaves no full batch. */
uint64_t ct_steps_per_epoch(size_t n, int batch_size, int drop_last);

/* The rows to build a model for, to train on n samples in batches of
 * batch_size: the largest batch the data fills (a batch larger than the
 * data holds all of it, so planning the whole batch size would only take
 * memory), and at least the 1000 rows evaluation runs in chunks of. */
int ct_train_plan_rows(size_t n, int batch_size);

/* Samples trained by the first `steps` steps of a run that starts at an
 * epoch's start: a batch holds its real rows, fewer than batch_size at an
 * epoch's end or when the batch is larger than the data. */
uint64_t ct_samples_in_steps(size_t n, int batch_size, int drop_last, uint64_t steps);

/* What ct_train checks of each set it is given, before any work: an element
 * type of bytes or floats, images and labels in memory, at most INT32_MAX
 * items (the order and the gather index them by int32_t), items of the
 * model's input width (and, for a model with a spatial input, images of its
 * height and width with one channel, as IDX images are), and every label
 * below the model's classes. Errors name ds->images_path (or
 * ds->labels_path for a label). */
int ct_train_check_set(const ct_dataset *ds, const ct_model_spec *spec, ct_error *err);

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
 * CT_EXIT_INTERRUPTED) and fills the summary; -1 with err set on failure.
 * m, train, opt, log and sum are required (a NULL one is a CT_EXIT_USAGE
 * error); test may be NULL: no evaluation (then target_acc must be 0); err
 * may be NULL. Both sets are checked with ct_train_check_set first.
 * Each call is a run of its own from the weights the model holds: step 1,
 * epoch 1's shuffle, the schedule's start and the optimizer's state from
 * zero (as for a new model given those weights), unless opt->resume says
 * where to go on from. */
int ct_train(ct_model *m, const ct_dataset *train, const ct_dataset *test, const ct_train_options *opt,
             ct_logger *log, ct_run_summary *summary, ct_error *err);

/* Loads a checkpoint of cutrain train --save into the model and `st`, for a
 * run with `opt` on `train` (NULL for a custom source): refuses one written
 * for another model, optimizer, batch size or training set, and then leaves
 * the model's weights and optimizer state as they were. The caller sets
 * opt->resume = st; opt->seed must be the checkpoint's (st->seed), and
 * ct_train refuses a seed, epochs or max_steps the checkpoint contradicts
 * (the model then holds the checkpoint's weights). */
int ct_train_load_checkpoint(ct_model *m, const ct_dataset *train, const ct_train_options *opt, const char *path,
                             ct_train_state *st, ct_error *err);

/* A custom data source: a callback that fills one batch in host memory.
 * next_batch writes up to max_rows rows of x ([max_rows, input_dim] floats)
 * and labels, and returns how many (0: an empty batch, which is skipped and
 * flagged EMPTY_BATCH), or -1 with err set to stop the run. An epoch whose
 * every batch is empty ends the run with an EMPTY_DATA diagnosis naming the
 * source. Each batch costs one upload, so a source is slower than the
 * device-resident dataset path of ct_train. */
typedef struct ct_data_source {
    const char *name;            /* names the source in diagnoses */
    void *user;
    uint64_t batches_per_epoch;
    int (*next_batch)(void *user, uint32_t epoch, uint64_t batch, int max_rows, float *x, int32_t *labels,
                      ct_error *err);
} ct_data_source;

int ct_train_source(ct_model *m, const ct_data_source *src, const ct_dataset *test, const ct_train_options *opt,
                    ct_logger *log, ct_run_summary *sum, ct_error *err);

#ifdef __cplusplus
}
#endif
#endif
