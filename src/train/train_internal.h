/* What the training loop and the checkpoint loader share. */
#ifndef CUTRAIN_SRC_TRAIN_INTERNAL_H
#define CUTRAIN_SRC_TRAIN_INTERNAL_H

#include "cutrain/train.h"

/* The health checks of a run of `m` with `opt`, before any step. */
void ct_train_health_init(const ct_model *m, const ct_train_options *opt, ct_health *h);

#endif
