/* The parameter arena as named tensors, the way PyTorch's state_dict holds
 * them: "<layer>.weight" [out, in] (dense) or [out, in, kh, kw] (conv2d) and
 * "<layer>.bias" [out]. Shared by the weights file and the checkpoint. */
#ifndef CUTRAIN_SRC_MODEL_PARAM_TENSORS_H
#define CUTRAIN_SRC_MODEL_PARAM_TENSORS_H

#include "cutrain/checkpoint.h"
#include "cutrain/model.h"

/* Fills 2 * m->n_param_layers tensors viewing `host` (a copy of the arena,
 * or any array laid out like it); returns how many. */
int ct_model_param_tensors(const ct_model *m, const float *host, ct_st_tensor *t);

/* 0 when `t` (found in the file `path` under `name`, or NULL when absent)
 * has the given shape and only finite values (and +Inf, when allow_inf:
 * a running mean of squares that overflowed float32 holds it, and Adam's
 * step over it is 0); else -1 with err naming the file, the tensor and what
 * is wrong. */
int ct_check_param_tensor(const char *path, const ct_st_tensor *t, const char *name, int rank, const uint64_t *shape,
                          int allow_inf, ct_error *err);

#endif
