/* Optimizers over the whole parameter arena.
 *
 * Update rules follow Keras 3 (the defaults below are Keras's), so that a
 * Keras user's recipe means the same thing here:
 *   SGD      v = m*v - lr*g;  w += v            (Nesterov: w += m*v - lr*g)
 *            without momentum: w -= lr*g
 *   Adam     m = b1*m + (1-b1)*g;  v = b2*v + (1-b2)*g^2
 *            w -= lr*sqrt(1-b2^t)/(1-b1^t) * m / (sqrt(v) + eps)
 *   AdamW    w -= lr*wd*w, then the Adam step
 *   RMSprop  v = rho*v + (1-rho)*g^2;  inc = lr*g/sqrt(v + eps)
 *            with momentum: u = mom*u + inc; w -= u   else w -= inc
 * Global gradient-norm clipping scales g by min(1, clip / ||g||) first.
 * lr is the rate of the step's schedule (schedule.h), evaluated on the device
 * from the step number.
 */
#ifndef CUTRAIN_OPTIM_H
#define CUTRAIN_OPTIM_H

#include <stddef.h>
#include <stdint.h>

#include "cutrain/schedule.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { CT_OPT_SGD = 0, CT_OPT_ADAM, CT_OPT_ADAMW, CT_OPT_RMSPROP } ct_optimizer_kind;

typedef struct ct_optim_config {
    ct_optimizer_kind kind;
    float lr;
    float momentum;      /* SGD, RMSprop                       */
    int nesterov;        /* SGD                                */
    float beta1, beta2;  /* Adam, AdamW                        */
    float eps;           /* Adam, AdamW, RMSprop               */
    float rho;           /* RMSprop                            */
    float weight_decay;  /* AdamW (decoupled)                  */
    float clip_norm;     /* global gradient-norm clip; 0: off  */
    int skip_nonfinite;  /* leave w and state untouched on a step whose gradients or loss are not finite */
    ct_schedule schedule; /* lr above is the schedule's base (its peak for onecycle) */
} ct_optim_config;

/* Keras defaults for `kind`. */
ct_optim_config ct_optim_defaults(ct_optimizer_kind kind);
/* "sgd", "adam", "adamw", "rmsprop" -> kind; -1 when unknown. */
int ct_optim_parse_kind(const char *name);
const char *ct_optim_kind_name(ct_optimizer_kind kind);
/* Floats of optimizer state per parameter (0, 1 or 2). */
int ct_optim_state_slots(const ct_optim_config *cfg);

#ifdef __cplusplus
}
#endif
#endif
