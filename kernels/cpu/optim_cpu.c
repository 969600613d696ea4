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

#include "kernels/cpu/cpu_ops.h"

typedef struct {
    double param_sumsq;
    double update_sumsq;
} update_sums;

static inline void account(update_sums *s, float w_old, float w_new) {
    const double d = (double)w_new - (double)w_old;
    s->param_sumsq += (double)w_old * (double)w_old;
    s->update_sumsq += d * d;
}

static update_sums sgd_step(const ct_optim_config *c, const ct_optim_buffers *buf, float gs) {
    update_sums s = {0, 0};
    const float lr = c->lr, mom = c->momentum;
    float *w = buf->params, *vel = buf->state;
    for (size_t i = 0; i < buf->n; ++i) {
        const float g = buf->grads[i] * gs, w0 = w[i];
        if (mom > 0.0f) {
            const float v = mom * vel[i] - lr * g;
            vel[i] = v;
            w[i] = c->nesterov ? w0 + (mom * v - lr * g) : w0 + v;
        } else {
            w[i] = w0 - lr * g;
        }
        account(&s, w0, w[i]);
    }
    return s;
}

/* Adam and AdamW; *buf->t has already been advanced to this step's t. */
static update_sums adam_step(const ct_optim_config *c, const ct_optim_buffers *buf, float gs) {
    update_sums s = {0, 0};
    const double t = (double)*buf->t;
    const double b1 = c->beta1, b2 = c->beta2;
    const float alpha = (float)((double)c->lr * sqrt(1.0 - pow(b2, t)) / (1.0 - pow(b1, t)));
    const float fb1 = c->beta1, fb2 = c->beta2, eps = c->eps;
    const float one_b1 = (float)(1.0 - b1), one_b2 = (float)(1.0 - b2);
    /* Decoupled decay acts on w itself, not through m and v (that is the
     * whole point of AdamW); 0 for plain Adam leaves w exactly as it was. */
    const float decay = c->kind == CT_OPT_ADAMW ? (float)((double)c->lr * c->weight_decay) : 0.0f;
    float *w = buf->params, *m = buf->state, *v = buf->state + buf->n;
    for (size_t i = 0; i < buf->n; ++i) {
        const float g = buf->grads[i] * gs, w0 = w[i];
        const float wd = decay != 0.0f ? w0 - w0 * decay : w0;
        m[i] = fb1 * m[i] + one_b1 * g;
        v[i] = fb2 * v[i] + one_b2 * (g * g);
        w[i] = wd - (m[i] * alpha) / (sqrtf(v[i]) + eps);
        account(&s, w0, w[i]);
    }
    return s;
}

static update_sums rmsprop_step(const ct_optim_config *c, const ct_optim_buffers *buf, float gs) {
    update_sums s = {0, 0};
    const float lr = c->lr, rho = c->rho, eps = c->eps, mom = c->momentum;
    const float one_rho = (float)(1.0 - (double)c->rho);
    float *w = buf->params, *ms = buf->state, *u = buf->state + buf->n;
    for (size_t i = 0; i < buf->n; ++i) {
        const float g = buf->grads[i] * gs, w0 = w[i];
        ms[i] = rho * ms[i] + one_rho * (g * g);
        const float inc = lr * g / sqrtf(ms[i] + eps);
        if (mom > 0.0f) {
            u[i] = mom * u[i] + inc;
            w[i] = w0 - u[i];
        } else {
            w[i] = w0 - inc;
        }
        account(&s, w0, w[i]);
    }
    return s;
}

static double param_sumsq(const ct_optim_buffers *buf) {
    double s = 0.0;
    for (size_t i = 0; i < buf->n; ++i) s += (double)buf->params[i] * (double)buf->params[i];
    return s;
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
    update_sums s = {0, 0};
    switch (cfg->kind) {
    case CT_OPT_SGD: s = sgd_step(&now, buf, gs); break;
    case CT_OPT_ADAM:
    case CT_OPT_ADAMW: s = adam_step(&now, buf, gs); break;
    case CT_OPT_RMSPROP: s = rmsprop_step(&now, buf, gs); break;
    }
    rec->param_sumsq = s.param_sumsq;
    rec->update_sumsq = s.update_sumsq;

    if (th && th->vanishing_update_ratio > 0.0 && s.param_sumsq > 0.0 &&
        sqrt(s.update_sumsq / s.param_sumsq) < th->vanishing_update_ratio)
        rec->flags |= CT_FLAG_VANISHING_UPDATE;
}
