/* Health: turns step records into diagnoses (a stable code, the step, the
 * layer, one sentence on what is wrong and what to change) and applies the
 * non-finite policy. Backend-independent: it reads only ct_step_record. */
#ifndef CUTRAIN_HEALTH_H
#define CUTRAIN_HEALTH_H

#include <stdint.h>

#include "cutrain/record.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { CT_ON_NAN_STOP = 0, CT_ON_NAN_SKIP, CT_ON_NAN_WARN } ct_nan_policy;

const char *ct_nan_policy_name(ct_nan_policy p);
int ct_nan_policy_parse(const char *s); /* -1 when unknown */

typedef struct ct_diagnosis {
    char code[32];         /* e.g. "NONFINITE_GRAD" */
    const char *severity;  /* "error", "warning" or "info" */
    uint64_t step;
    uint32_t epoch;
    char layer[32];        /* "" when no single layer applies */
    char message[512];
} ct_diagnosis;

#define CT_HEALTH_MAX_DIAG 8

typedef struct ct_health {
    ct_nan_policy policy;
    float lr;
    int n_layers;
    char layer_names[CT_MAX_PARAM_LAYERS][32];
    int stop;               /* the policy asks training to stop */
    int nonfinite_reported;
    uint64_t nonfinite_steps;
    uint64_t skipped_steps;
    uint64_t empty_batches;
} ct_health;

void ct_health_init(ct_health *h, ct_nan_policy policy, float lr, int n_layers,
                    const char (*layer_names)[32]);
/* Looks at one record (in step order); writes up to CT_HEALTH_MAX_DIAG new
 * diagnoses into out and returns how many. Sets h->stop when the policy says so. */
int ct_health_observe(ct_health *h, const ct_step_record *r, ct_diagnosis *out);

#ifdef __cplusplus
}
#endif
#endif
