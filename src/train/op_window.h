/* A backend that runs only the first `limit` compute ops of each training
 * step on another backend, and names the ops it sees: the instrument behind
 * `cutrain bench --ops`, which times steps cut after k ops for k = 0..n and
 * differences them, so that each op's figure is what it adds to a step
 * (inside the captured graph on the GPU, launch gaps included).
 *
 * A step begins at its batch's gather (gather_batch, or dense_chain_train
 * with the gather) and at capture_begin, the two ways a trainer's step
 * starts when it reads the device dataset; a step fed by a custom data
 * source has no such mark and is not what this is for. Only the compute ops
 * (the backend table's algebra, convolution, pooling, dense chain, losses,
 * dropout, gather and step sections) are counted and cut; memory, read-back,
 * fences, capture and plans always pass, so a run's setup is never cut. The
 * step advance is counted but never cut, and a cut step_finish still
 * advances the step: a cut step reads the next batch, as a whole one does
 * (else every step would gather the same rows, from cache). */
#ifndef CUTRAIN_SRC_TRAIN_OP_WINDOW_H
#define CUTRAIN_SRC_TRAIN_OP_WINDOW_H

#include "cutrain/backend.h"

#ifdef __cplusplus
extern "C" {
#endif

#define CT_OP_WINDOW_MAX_OPS 128
#define CT_OP_WINDOW_LABEL 72

typedef struct ct_op_window {
    ct_backend outer;         /* what the model is given: ops below, impl = this window */
    ct_backend_ops ops;
    ct_backend *inner;        /* the backend that runs what passes */
    int limit;                /* ops run per step; < 0: all */
    int count;                /* compute ops seen in the current step */
    int dropped;              /* compute ops cut since the last ct_op_window_reset */
    /* labels[i]: the i-th op of the current step, e.g. "gemm NT 128x512x784"
     * (m x n x k, then whether A and B are transposed). */
    char labels[CT_OP_WINDOW_MAX_OPS][CT_OP_WINDOW_LABEL];
} ct_op_window;

/* Wraps `inner` (not owned); the window runs every op until its limit is set. */
void ct_op_window_init(ct_op_window *w, ct_backend *inner);
/* Starts counting afresh with a new limit (< 0: no limit). */
void ct_op_window_reset(ct_op_window *w, int limit);

#ifdef __cplusplus
}
#endif

#endif
