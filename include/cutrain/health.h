/* Health: turns step records into diagnoses (a stable code, the step, the
 * layer, one sentence on what is wrong and what to change) and applies the
 * non-finite policy. Backend-independent: it reads only ct_step_record. */
#ifndef CUTRAIN_HEALTH_H
#define CUTRAIN_HEALTH_H

#include <stdint.h>

#include "cutrain/record.h"
#include "cutrain/schedule.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { CT_ON_NAN_STOP = 0, CT_ON_NAN_SKIP, CT_ON_NAN_WARN } ct_nan_policy;

const char *ct_nan_policy_name(ct_nan_policy p);
int ct_nan_policy_parse(const char *s); /* -1 when unknown */

typedef struct ct_diagnosis {
    char code[32];         /* stable, e.g. "NONFINITE_GRAD"; see docs/troubleshooting.md */
    const char *severity;  /* "error", "warning" or "info" */
    uint64_t step;         /* 0: before training (model build, data load) */
    uint32_t epoch;
    char layer[32];        /* "" when no single layer applies */
    char message[512];
} ct_diagnosis;

#define CT_HEALTH_MAX_DIAG 8
#define CT_HEALTH_MAX_WINDOW 4096
/* Norms needed before EXPLODING_GRADIENTS judges a step (the median of those
 * so far until explode_window of them exist). */
#define CT_HEALTH_EXPLODE_MIN 3

/* Thresholds and windows of the checks over step records; every one can be
 * set by a flag (cutrain train --help) and is documented in
 * docs/troubleshooting.md. */
typedef struct ct_health_config {
    ct_nan_policy on_nan;
    double vanishing_ratio;   /* an update below this ||dw||/||w|| is vanishing        */
    int vanishing_window;     /* ... for this many updated steps in a row: diagnosis   */
    int dead_window;          /* a layer's gradient exactly zero this many steps       */
    double explode_factor;    /* ||g|| above this times the median of ...              */
    int explode_window;       /* ... the previous this-many steps                      */
    int chance_window;        /* mean loss of a block of this many steps ...           */
    double chance_tolerance;  /* ... above chance less this fraction: at chance        */
    int nonfinite_window;     /* NaN/Inf this many steps in a row (skip, warn): stop   */
} ct_health_config;

/* The defaults: quiet on the healthy presets, quick on real trouble. */
ct_health_config ct_health_defaults(void);

typedef struct ct_health {
    ct_health_config cfg;
    float lr;
    const char *optimizer;
    /* The loss of a model that has learnt nothing but the class frequencies
     * (ln classes unless the trainer knows the labels: their entropy), and
     * how the message names it; 0: the chance check is off (an MSE loss). */
    double chance_loss;
    char chance_what[64];
    float clip_norm; /* --clip-grad-norm, 0: off; the vanishing check names it */
    /* The run's learning-rate schedule, total_steps resolved (the trainer
     * sets it once it knows the run's length); lr above is its base. An
     * update that vanishes because the schedule annealed the rate is judged
     * by what it would be at the base rate, and the message names the
     * schedule, not the base rate. Derived from the recipe, never saved. */
    ct_schedule schedule;
    /* An optimizer setting that makes divergence likely (ct_health_set_optimizer),
     * given as the advice of the divergence diagnoses instead of the generic
     * "lower the learning rate"; "" when the settings are ordinary. */
    char optim_advice[256];
    int n_layers;
    char layer_names[CT_MAX_PARAM_LAYERS][32];
    int stop;               /* the policy asks training to stop */
    uint64_t nonfinite_steps;
    uint64_t skipped_steps;
    uint64_t empty_batches;
    /* per-check state: said once, at the step the condition became true */
    int nonfinite_said, vanishing_said, explode_said, chance_said;
    int test_loss_said; /* NONFINITE_TEST_LOSS, said by the trainer after an epoch's evaluation */
    uint32_t dead_said;                    /* bit per layer */
    int vanishing_run;
    double vanishing_log_sum, vanishing_log_grad, vanishing_log_weight;
    int dead_run[CT_MAX_PARAM_LAYERS];
    double norms[CT_HEALTH_MAX_WINDOW];    /* the last explode_window finite norms */
    int norms_n, norms_at;
    int chance_run;
    double chance_loss_sum;
    double chance_half_sum; /* the loss sum of the block's first half: is it falling? */
    int nonfinite_run; /* steps in a row whose loss or gradient was NaN/Inf */
} ct_health;

void ct_health_init(ct_health *h, const ct_health_config *cfg, float lr, const char *optimizer, int classes,
                    int n_layers, const char (*layer_names)[32]);
/* Fills h->optim_advice and h->schedule from the run's optimizer settings
 * (after init). */
struct ct_optim_config;
void ct_health_set_optimizer(ct_health *h, const struct ct_optim_config *o);
/* Looks at one record (in step order); writes up to CT_HEALTH_MAX_DIAG new
 * diagnoses into out and returns how many. Sets h->stop when the policy says so. */
int ct_health_observe(ct_health *h, const ct_step_record *r, ct_diagnosis *out);

/* Diagnoses that need no training: a loss that does not fit the output
 * layer, momentum that multiplies the learning rate far past an ordinary
 * one. Returns how many were written (at most max), all warnings. */
struct ct_model_spec;
int ct_health_check_model(const struct ct_model_spec *spec, ct_diagnosis *out, int max);

#ifdef __cplusplus
}
#endif
#endif
