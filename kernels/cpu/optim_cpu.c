/* Optimizer step over the whole parameter arena (Keras 3 rules, optim.h).
 *
 * With g = clip_scale * grad, clip_scale = min(1, clip_norm / ||grad||):
 *   SGD      v = m*v - lr*g;  w += v   (Nesterov: w += m*v - lr*g; no momentum: w -= lr*g)
 *   Adam     m = b1*m + (1-b1)*g;  v = b2*v + (1-b2)*g^2
 *            w -= alpha * m / (sqrt(v) + eps),  alpha = lr*sqrt(1-b2^t)/(1-b1^t)
 *   AdamW    w -= lr*wd*w, then the Adam step
 *   RMSprop  v = rho*v + (1-rho)*g^2;  inc = lr*g / sqrt(v + eps)
 *            momentum: u = mom*u + inc; w -= u,  else w -= inc
 * State is slot-major: slot s of element i lives at state[s*n + i].
 *
 * Per-element arithmetic is float, as in Keras, so a recipe behaves the same;
 * scalar coefficients (the bias correction above all, where b2^t for t ~ 10^4
 * loses most of its digits in float) are computed in double once per step.
 * The same pass accumulates ||w_old||^2 and ||w_new - w_old||^2 in double for
 * the vanishing-update diagnosis: that ratio is ~1e-7 when training stalls,
 * far below what a float sum would resolve.
 */
#include <math.h>
#include <string.h>

#include "kernels/cpu/cpu_ops.h"
#include "kernels/cpu/reduce_lanes.h"
#include "kernels/cpu/simd_cpu.h"

typedef struct {
    double param_sumsq;
    double update_sumsq;
} update_sums;

/* The double sums run in lanes (reduce_lanes.h): a fixed order, the same
 * bits on every run, thread count and CPU, that vectorises, which one running
 * sum could not. Each rule updates a block of BLOCK elements in float, then
 * accounts for the block from a copy of its old weights. Each rule is one
 * always-inline body compiled plainly, for AVX2 and for AVX-512
 * (simd_cpu.h): the same float operations per element, so the same bits. */
#define BLOCK 1024 /* a multiple of CT_LANES: blocks start on lane 0 */

static update_sums finish_lanes(const ct_update_lanes *ls) {
    update_sums s;
    s.param_sumsq = cpu_lanes_sum(ls->p);
    s.update_sumsq = cpu_lanes_sum(ls->u);
    return s;
}

CT_INLINE void sgd_block_body(const ct_optim_config *c, float *restrict w, float *restrict vel,
                              const float *restrict grad, size_t n, float gs) {
    const float lr = c->lr, mom = c->momentum;
    for (size_t i = 0; i < n; ++i) {
        const float g = grad[i] * gs, w0 = w[i];
        if (mom > 0.0f) {
            const float v = mom * vel[i] - lr * g;
            vel[i] = v;
            w[i] = c->nesterov ? w0 + (mom * v - lr * g) : w0 + v;
        } else {
            w[i] = w0 - lr * g;
        }
    }
}

typedef struct {
    float alpha, b1, b2, one_b1, one_b2, eps, decay;
} adam_coef;

/* Adam and AdamW; *buf->t has already been advanced to this step's t. */
static adam_coef adam_coefficients(const ct_optim_config *c, uint64_t step_t) {
    const double t = (double)step_t;
    const double b1 = c->beta1, b2 = c->beta2;
    adam_coef k;
    k.alpha = (float)((double)c->lr * sqrt(1.0 - pow(b2, t)) / (1.0 - pow(b1, t)));
    k.b1 = c->beta1;
    k.b2 = c->beta2;
    k.eps = c->eps;
    k.one_b1 = (float)(1.0 - b1);
    k.one_b2 = (float)(1.0 - b2);
    /* Decoupled decay acts on w itself, not through m and v (that is the
     * whole point of AdamW); 0 for plain Adam leaves w exactly as it was. */
    k.decay = c->kind == CT_OPT_ADAMW ? (float)((double)c->lr * c->weight_decay) : 0.0f;
    return k;
}

CT_INLINE void adam_block_body(const adam_coef *k, float *restrict w, float *restrict m, float *restrict v,
                               const float *restrict grad, size_t n, float gs) {
    const float alpha = k->alpha, b1 = k->b1, b2 = k->b2, one_b1 = k->one_b1, one_b2 = k->one_b2, eps = k->eps;
    const float decay = k->decay;
    for (size_t i = 0; i < n; ++i) {
        const float g = grad[i] * gs, w0 = w[i];
        const float wd = decay != 0.0f ? w0 - w0 * decay : w0;
        const float mi = b1 * m[i] + one_b1 * g;
        const float vi = b2 * v[i] + one_b2 * (g * g);
        m[i] = mi;
        v[i] = vi;
        w[i] = wd - (mi * alpha) / (sqrtf(vi) + eps);
    }
}

CT_INLINE void rmsprop_block_body(const ct_optim_config *c, float *restrict w, float *restrict ms,
                                  float *restrict u, const float *restrict grad, size_t n, float gs) {
    const float lr = c->lr, rho = c->rho, eps = c->eps, mom = c->momentum;
    const float one_rho = (float)(1.0 - (double)c->rho);
    for (size_t i = 0; i < n; ++i) {
        const float g = grad[i] * gs, w0 = w[i];
        const float msi = rho * ms[i] + one_rho * (g * g);
        ms[i] = msi;
        const float inc = lr * g / sqrtf(msi + eps);
        if (mom > 0.0f) {
            u[i] = mom * u[i] + inc;
            w[i] = w0 - u[i];
        } else {
            w[i] = w0 - inc;
        }
    }
}

CT_SIMD_TWINS(sgd_block, (const ct_optim_config *c, float *restrict w, float *restrict vel, const float *restrict grad,
                     size_t n, float gs),
         (c, w, vel, grad, n, gs))
CT_SIMD_TWINS(adam_block, (const adam_coef *k, float *restrict w, float *restrict m, float *restrict v,
                      const float *restrict grad, size_t n, float gs),
         (k, w, m, v, grad, n, gs))
CT_SIMD_TWINS(rmsprop_block, (const ct_optim_config *c, float *restrict w, float *restrict ms, float *restrict u,
                         const float *restrict grad, size_t n, float gs),
         (c, w, ms, u, grad, n, gs))

/* One rule over the arena, block by block, with the sums of the update. */
static update_sums apply_rule(const ct_optim_config *c, const ct_optim_buffers *buf, float gs) {
    ct_update_lanes ls;
    memset(&ls, 0, sizeof ls);
    const ct_simd_level simd = cpu_simd_level();
    const adam_coef k = adam_coefficients(c, *buf->t);
    const size_t n = buf->n;
    float old[BLOCK];
    for (size_t b = 0; b < n; b += BLOCK) {
        const size_t len = n - b < BLOCK ? n - b : BLOCK;
        float *w = buf->params + b;
        const float *g = buf->grads + b;
        float *s0 = buf->state ? buf->state + b : NULL, *s1 = buf->state ? buf->state + n + b : NULL;
        memcpy(old, w, len * sizeof(float));
        switch (c->kind) {
        case CT_OPT_SGD: CT_SIMD_CALL(simd, sgd_block, (c, w, s0, g, len, gs)); break;
        case CT_OPT_ADAM:
        case CT_OPT_ADAMW: CT_SIMD_CALL(simd, adam_block, (&k, w, s0, s1, g, len, gs)); break;
        case CT_OPT_RMSPROP: CT_SIMD_CALL(simd, rmsprop_block, (c, w, s0, s1, g, len, gs)); break;
        }
        cpu_update_lanes(&ls, old, w, len);
    }
    return finish_lanes(&ls);
}

static double param_sumsq(const ct_optim_buffers *buf) {
    ct_update_lanes ls;
    memset(&ls, 0, sizeof ls);
    cpu_update_lanes(&ls, buf->params, buf->params, buf->n);
    return finish_lanes(&ls).param_sumsq;
}

static int must_skip(const ct_optim_config *cfg, uint32_t flags) {
    if (flags & CT_FLAG_EMPTY_BATCH) return 1;
    return cfg->skip_nonfinite && (flags & (CT_FLAG_NONFINITE_LOSS | CT_FLAG_NONFINITE_GRAD));
}

/* The norm is over finite elements only (step_stats leaves NaN/Inf out), so
 * with skip_nonfinite off the clip still tracks the finite part. */
static double clip_scale(const ct_optim_config *cfg, double grad_sumsq) {
    const double norm = sqrt(grad_sumsq);
    if (cfg->clip_norm > 0.0f && norm > (double)cfg->clip_norm) return (double)cfg->clip_norm / norm;
    return 1.0;
}

void cpu_optimizer_step(ct_backend *b, const ct_optim_config *cfg, const ct_optim_buffers *buf,
                        const ct_health_thresholds *th, const ct_step_ctx *ctx, ct_step_record *ring) {
    ct_step_record *rec = ring + ctx->slot;
    (void)b;
    rec->update_sumsq = 0.0;
    rec->clip_scale = 1.0;
    if (must_skip(cfg, rec->flags)) {
        /* ||w|| is still reported so the log shows the weights a skipped
         * step left in place. */
        rec->param_sumsq = param_sumsq(buf);
        rec->flags |= CT_FLAG_SKIPPED_UPDATE;
        return;
    }

    rec->clip_scale = clip_scale(cfg, rec->grad_sumsq);
    if (rec->clip_scale < 1.0) rec->flags |= CT_FLAG_CLIPPED;
    *buf->t += 1;

    const float gs = (float)rec->clip_scale;
    /* The rules read lr from the config: give them this step's rate. */
    ct_optim_config now = *cfg;
    now.lr = ct_schedule_lr(cfg->lr, &cfg->schedule, ctx->step);
    const update_sums s = apply_rule(&now, buf, gs);
    rec->param_sumsq = s.param_sumsq;
    rec->update_sumsq = s.update_sumsq;

    if (th && th->vanishing_update_ratio > 0.0 && s.param_sumsq > 0.0 &&
        sqrt(s.update_sumsq / s.param_sumsq) < th->vanishing_update_ratio)
        rec->flags |= CT_FLAG_VANISHING_UPDATE;
}
