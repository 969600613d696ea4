/* cutrain: a training engine for small and medium neural networks. */
#ifndef CUTRAIN_H
#define CUTRAIN_H

#include "cutrain/backend.h"
#include "cutrain/checkpoint.h"
#include "cutrain/data.h"
#include "cutrain/error.h"
#include "cutrain/health.h"
#include "cutrain/log.h"
#include "cutrain/model.h"
#include "cutrain/optim.h"
#include "cutrain/record.h"
#include "cutrain/rng.h"
#include "cutrain/train.h"

#define CUTRAIN_VERSION "0.1.0"

#endif
