/* Learning-rate schedules, as a pure function of the step, so that the
 * optimizer kernels compute the rate on the device from the step context and
 * a captured step replays correctly with a changing rate. Every backend
 * evaluates the same expressions (in double, rounded once to float).
 *
 * step is 1-based; T = total_steps (the trainer sets it from the run's
 * length when it is 0); s = step - 1.
 *   constant  lr
 *   step      lr * gamma^floor(s / step_size)
 *   cosine    lr * (f + (1 - f) * (1 + cos(pi * min(s, T) / T)) / 2), f = final_frac
 *   onecycle  PyTorch's OneCycleLR (cosine annealing, two phases): from
 *             lr/div up to lr over the first pct of T, then down to
 *             lr/div/final_div at step T
 */
#ifndef CUTRAIN_SCHEDULE_H
#define CUTRAIN_SCHEDULE_H

#include <math.h>
#include <stdint.h>

#include "cutrain/rng.h" /* CT_HOSTDEV */

typedef enum { CT_SCHED_CONSTANT = 0, CT_SCHED_STEP, CT_SCHED_COSINE, CT_SCHED_ONECYCLE } ct_schedule_kind;

typedef struct ct_schedule {
    ct_schedule_kind kind;
    uint64_t total_steps; /* cosine, onecycle; 0: the whole run           */
    uint64_t step_size;   /* step                                          */
    float gamma;          /* step: factor every step_size steps (0.1)      */
    float pct;            /* onecycle: fraction of T rising (0.3)          */
    float div;            /* onecycle: first lr = lr / div (25)            */
    float final_div;      /* onecycle: last lr = lr / div / final_div (1e4) */
    float final_frac;     /* cosine: last lr = lr * final_frac (0)         */
} ct_schedule;

/* Defaults of each kind (PyTorch's where it has them). The constant
 * schedule has no settings: all zero, as a recipe that names no schedule
 * holds it, so that saying "constant" changes nothing (a checkpoint
 * compares every setting). */
static inline ct_schedule ct_schedule_defaults(ct_schedule_kind kind) {
    ct_schedule s = {kind, 0, 1000, 0.1f, 0.3f, 25.0f, 1e4f, 0.0f};
    if (kind == CT_SCHED_CONSTANT) {
        ct_schedule none = {CT_SCHED_CONSTANT, 0, 0, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f};
        return none;
    }
    return s;
}

CT_HOSTDEV double ct_schedule_anneal(double from, double to, double pct) {
    return to + (from - to) / 2.0 * (cos(3.141592653589793 * pct) + 1.0);
}

CT_HOSTDEV float ct_schedule_lr(float lr, const ct_schedule *s, uint64_t step) {
    double base = lr, t = (double)(step > 0 ? step - 1 : 0), T = (double)s->total_steps;
    switch (s->kind) {
    case CT_SCHED_STEP:
        return s->step_size ? (float)(base * pow((double)s->gamma, floor(t / (double)s->step_size))) : lr;
    case CT_SCHED_COSINE: {
        if (T <= 0) return lr;
        double p = t < T ? t / T : 1.0;
        return (float)(base * (s->final_frac + (1.0 - s->final_frac) * (1.0 + cos(3.141592653589793 * p)) / 2.0));
    }
    case CT_SCHED_ONECYCLE: {
        if (T <= 0) return lr;
        double first = base / s->div, last = first / s->final_div;
        /* PyTorch's phase ends, fractional as they are (pct < 1, so end1 <
         * end2). A short run (pct * T < 2) rises for step 0 only, or (pct *
         * T <= 1) not at all: it starts the fall from the peak, as PyTorch
         * does for end1 < 0 (at end1 == 0 PyTorch divides 0 by 0; the fall
         * is its limit from below). Clamping end1 to 1 instead put a full
         * peak at step 1 that PyTorch never reaches. */
        double end1 = (double)s->pct * T - 1.0, end2 = T - 1.0;
        if (end1 > 0.0 && t <= end1) return (float)ct_schedule_anneal(first, base, t / end1);
        double p = (t - end1) / (end2 - end1);
        return (float)ct_schedule_anneal(base, last, p < 1.0 ? p : 1.0);
    }
    case CT_SCHED_CONSTANT:
    default:
        return lr;
    }
}

#endif
