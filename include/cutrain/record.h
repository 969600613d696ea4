/* The step record: one fixed-size struct per training step.
 *
 * The same layout is written by the CPU backend (host memory) and by the CUDA
 * backend (a ring buffer in device memory drained by one asynchronous copy), so
 * it holds only fixed-width scalars and fixed-size arrays: no pointers, no
 * padding surprises between nvcc and the host compiler. Sums are kept in double
 * so that a reduction over ~700k gradients does not lose the small terms that
 * the vanishing-update diagnosis depends on.
 */
#ifndef CUTRAIN_RECORD_H
#define CUTRAIN_RECORD_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Parametric layers (dense, later conv) a record can name individually. */
#define CT_MAX_PARAM_LAYERS 16

/* Flag bits of ct_step_record.flags. Names are the JSONL spellings. */
enum {
    CT_FLAG_NONFINITE_LOSS = 1u << 0,  /* loss of some row is NaN or Inf            */
    CT_FLAG_NONFINITE_GRAD = 1u << 1,  /* some gradient element is NaN or Inf       */
    CT_FLAG_ZERO_GRAD = 1u << 2,       /* a whole layer's gradient is exactly zero  */
    CT_FLAG_VANISHING_UPDATE = 1u << 3, /* ||update|| / ||w|| below the threshold   */
    CT_FLAG_EXPLODING_GRAD = 1u << 4,  /* ||g|| above the threshold                 */
    CT_FLAG_EMPTY_BATCH = 1u << 5,     /* the batch had zero rows: no update        */
    CT_FLAG_SKIPPED_UPDATE = 1u << 6,  /* the optimizer left parameters untouched   */
    CT_FLAG_CLIPPED = 1u << 7,         /* gradient-norm clipping scaled the update  */
};
#define CT_FLAG_COUNT 8

/* The JSONL name of flag bit i (0 <= i < CT_FLAG_COUNT). */
const char *ct_flag_name(unsigned bit_index);

typedef struct ct_step_record {
    uint64_t step;          /* global step, 1-based                           */
    uint32_t epoch;         /* 1-based                                        */
    uint32_t batch_size;    /* real rows in this batch (0: empty batch)       */
    uint32_t flags;         /* CT_FLAG_* bits                                 */
    uint32_t n_layers;      /* parametric layers described below              */
    double loss_sum;        /* sum of per-row losses                          */
    double correct;         /* rows whose argmax matched the label            */
    double grad_sumsq;      /* sum of g^2 over the finite gradient elements  */
    double grad_max_abs;    /* max |g| over finite elements                   */
    double param_sumsq;     /* sum of w^2 before the update                   */
    double update_sumsq;    /* sum of (w_new - w_old)^2                       */
    double clip_scale;      /* factor applied by clipping (1 when none)       */
    uint64_t nonfinite_count;
    uint64_t zero_count;    /* gradient elements exactly 0                    */
    double layer_grad_sumsq[CT_MAX_PARAM_LAYERS];
    uint32_t layer_nonfinite[CT_MAX_PARAM_LAYERS];
    uint32_t layer_zero_all; /* bit i: layer i's gradient is exactly zero     */
    uint32_t pad_;
} ct_step_record;

/* Thresholds the flag computation uses; part of the training config. */
typedef struct ct_health_thresholds {
    double vanishing_update_ratio; /* flag when ||dw||/||w|| is below this   */
    double exploding_grad_norm;    /* flag when ||g|| is above this          */
} ct_health_thresholds;

/* Derived values, identical for every backend. */
double ct_record_loss(const ct_step_record *r);
double ct_record_accuracy(const ct_step_record *r);
double ct_record_grad_norm(const ct_step_record *r);
double ct_record_update_ratio(const ct_step_record *r);

#ifdef __cplusplus
}
#endif
#endif
