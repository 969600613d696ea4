/* Optimizer step and step advance on the GPU (Keras 3 rules, optim.h): the
 * device code (step_cuda.cu launches it; step_finish_kernel.cuh reuses its
 * pieces; tests/emu runs it on the CPU).
 *
 * With g = gs * grad, gs = (float)clip_scale, clip_scale = min(1, clip / ||grad||):
 *   SGD      v = m*v - lr*g;  w += v   (Nesterov: w += m*v - lr*g; no momentum: w -= lr*g)
 *   Adam     m = b1*m + (1-b1)*g;  v = b2*v + (1-b2)*(g*g)
 *            w -= (m*alpha) / (sqrt(v) + eps),  alpha = lr*sqrt(1-b2^t)/(1-b1^t)
 *   AdamW    w -= w*(lr*wd) first, then the Adam step
 *   RMSprop  v = rho*v + (1-rho)*(g*g);  inc = (lr*g) / sqrt(v + eps)
 *            momentum: u = mom*u + inc; w -= u,  else w -= inc
 * State is slot-major: slot s of element i lives at state[s*n + i].
 *
 * Bit-exactness with kernels/cpu/optim_cpu.c. The CPU build is gcc -std=c11
 * (ISO mode: -ffp-contract=off) for baseline x86-64 (no FMA), so every float
 * multiply, add, divide and sqrt there is rounded on its own. nvcc contracts
 * a*b+c into an FMA by default, so each per-element operation here is an
 * explicit __fmul_rn/__fadd_rn/__fsub_rn/__fdiv_rn/__fsqrt_rn, which are never
 * contracted and round to nearest whatever the -prec-div/-prec-sqrt/fast-math
 * flags, in the CPU's operation order. The scalar coefficients that depend
 * only on the config ((float)(1-b1), (float)(lr*wd), ...) are computed on the
 * host by the same expressions as the CPU's. The only library function whose
 * rounding may differ is the double pow() of the Adam bias correction (CUDA:
 * <= 2 ulp, glibc: < 1 ulp): alpha is rounded to float afterwards, so the two
 * agree unless the double lands within a couple of ulp of a float rounding
 * boundary (odds ~2^-28 per step). clip_scale comes from grad_sumsq, which
 * the GPU sums in a different order than the CPU; where clipping is active a
 * last-bit difference there can change gs, and then w differs in rounding.
 * Denormals must not be flushed (default -ftz=false; no --use_fast_math).
 *
 * Reduction order (depends on n only): optim_kernel runs a fixed grid of
 * nblocks = min(ceil(n/256), CT_CUDA_MAX_PARTIAL_BLOCKS) blocks of 256
 * threads; thread t of block k handles i = k*256 + t, then i += nblocks*256,
 * in that order, accumulating w_old^2 and (w_new - w_old)^2 in double; each
 * block combines its threads with a shared-memory tree (stride 128 .. 1) and
 * writes partials[k*STRIDE + 0..1]. The last block to finish (a counter of
 * finished blocks decides; whichever block it is computes the same thing)
 * adds the partials: thread t takes blocks t, t+256, ... left to right from
 * 0.0, then the same shared-memory tree; it writes the record's fields,
 * advances *t and resets the counter.
 */
#ifndef CUTRAIN_KERNELS_CUDA_OPTIM_KERNEL_CUH
#define CUTRAIN_KERNELS_CUDA_OPTIM_KERNEL_CUH

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "cutrain/backend.h"
#include "cutrain/schedule.h"
#include "kernels/cuda/partials.h"

#define OPT_THREADS 256
/* Elements of one thread whose loads are issued together. */
#define OPT_LOAD_BATCH 4

/* Everything the kernels need from cfg and th, read on the host. */
typedef struct optim_plan {
    int kind;
    int nesterov;
    int skip_nonfinite;
    int slots;                             /* state floats per element: ct_optim_state_slots */
    float lr, mom, eps;
    float fb1, fb2, one_b1, one_b2, decay; /* Adam, AdamW */
    float rho, one_rho;                    /* RMSprop      */
    float clip_norm;
    double lr_d, b1_d, b2_d;               /* bias correction, in double */
    double vanishing;                      /* 0: off (also when th is NULL) */
    float weight_decay;                    /* AdamW: decay = (float)(lr_t * wd) per step */
    ct_schedule schedule;                  /* lr above is its base rate */
    unsigned long long n;
    unsigned int nblocks;
} optim_plan;

/* The CPU's must_skip. */
static __device__ __forceinline__ bool must_skip(const optim_plan &p, uint32_t flags) {
    if (flags & CT_FLAG_EMPTY_BATCH) return true;
    return p.skip_nonfinite && (flags & (CT_FLAG_NONFINITE_LOSS | CT_FLAG_NONFINITE_GRAD));
}

/* The CPU's clip_scale, in double with correctly rounded sqrt and divide.
 * Every block and the finishing step call it on the same grad_sumsq
 * and get the same value. */
static __device__ __forceinline__ double clip_scale(float clip_norm, double grad_sumsq) {
    const double norm = __dsqrt_rn(grad_sumsq);
    if (clip_norm > 0.0f && norm > (double)clip_norm) return __ddiv_rn((double)clip_norm, norm);
    return 1.0;
}

/* alpha = (float)(lr * sqrt(1 - b2^t) / (1 - b1^t)) in double, the CPU's
 * expression and association; only pow() may round differently (see top). */
static __device__ __forceinline__ float adam_alpha(const optim_plan &p, unsigned long long t_new) {
    const double t = __ull2double_rn(t_new);
    const double num = __dmul_rn(p.lr_d, __dsqrt_rn(__dsub_rn(1.0, pow(p.b2_d, t))));
    return __double2float_rn(__ddiv_rn(num, __dsub_rn(1.0, pow(p.b1_d, t))));
}

/* One element's update from its values: returns w_new and updates the
 * state slots the kind has (s0: SGD's velocity, Adam's m, RMSprop's mean
 * square; s1: Adam's v, RMSprop's momentum buffer); the others are left
 * as they are. */
static __device__ __forceinline__ float update_vals(const optim_plan &p, float w0, float g, float alpha, float &s0,
                                                    float &s1) {
    switch (p.kind) {
    case CT_OPT_SGD:
        if (p.mom > 0.0f) {
            const float v = __fsub_rn(__fmul_rn(p.mom, s0), __fmul_rn(p.lr, g));
            s0 = v;
            return p.nesterov ? __fadd_rn(w0, __fsub_rn(__fmul_rn(p.mom, v), __fmul_rn(p.lr, g)))
                              : __fadd_rn(w0, v);
        }
        return __fsub_rn(w0, __fmul_rn(p.lr, g));
    case CT_OPT_ADAM:
    case CT_OPT_ADAMW: {
        /* decay is 0 for Adam: w0 is then used as it is (the CPU's test). */
        const float wd = p.decay != 0.0f ? __fsub_rn(w0, __fmul_rn(w0, p.decay)) : w0;
        const float m = __fadd_rn(__fmul_rn(p.fb1, s0), __fmul_rn(p.one_b1, g));
        const float v = __fadd_rn(__fmul_rn(p.fb2, s1), __fmul_rn(p.one_b2, __fmul_rn(g, g)));
        s0 = m;
        s1 = v;
        return __fsub_rn(wd, __fdiv_rn(__fmul_rn(m, alpha), __fadd_rn(__fsqrt_rn(v), p.eps)));
    }
    case CT_OPT_RMSPROP: {
        const float ms = __fadd_rn(__fmul_rn(p.rho, s0), __fmul_rn(p.one_rho, __fmul_rn(g, g)));
        s0 = ms;
        const float inc = __fdiv_rn(__fmul_rn(p.lr, g), __fsqrt_rn(__fadd_rn(ms, p.eps)));
        if (p.mom > 0.0f) {
            const float u = __fadd_rn(__fmul_rn(p.mom, s1), inc);
            s1 = u;
            return __fsub_rn(w0, u);
        }
        return __fsub_rn(w0, inc);
    }
    }
    return w0;
}

/* The record's optimizer fields and t from ||w_old||^2 (ps) and ||dw||^2
 * (us), once every element is done (one thread). */
static __device__ void optim_record(const optim_plan &p, double ps, double us, uint64_t *t, ct_step_record *rec) {
    uint32_t flags = rec->flags;
    rec->param_sumsq = ps;
    if (must_skip(p, flags)) {
        /* w, state and t untouched; ||w|| still reported. */
        rec->update_sumsq = 0.0;
        rec->clip_scale = 1.0;
        rec->flags = flags | CT_FLAG_SKIPPED_UPDATE;
        return;
    }
    const double clip = clip_scale(p.clip_norm, rec->grad_sumsq);
    if (clip < 1.0) flags |= CT_FLAG_CLIPPED;
    rec->clip_scale = clip;
    rec->update_sumsq = us;
    if (p.vanishing > 0.0 && ps > 0.0 && __dsqrt_rn(__ddiv_rn(us, ps)) < p.vanishing) flags |= CT_FLAG_VANISHING_UPDATE;
    rec->flags = flags;
    *t += 1; /* exactly once per applied step */
}

/* The per-step scalars (one thread): this step's plan (its scheduled rate),
 * whether it is skipped, the clip factor gs and Adam's alpha, from the
 * record's flags and grad_sumsq, the device-side step number and t. */
static __device__ void optim_scalars(const optim_plan &p, const ct_step_record *rec, uint64_t step, uint64_t t,
                                     optim_plan *now, int *skip_out, float *gs_out, float *alpha_out) {
    const bool skip = must_skip(p, rec->flags);
    /* The rate of this step, from the device-side step number, so a
     * replayed graph follows the schedule; the CPU derives the same
     * lr-dependent values from it in the same way. */
    *now = p;
    now->lr = ct_schedule_lr(p.lr, &p.schedule, step);
    now->lr_d = (double)now->lr;
    now->decay =
        p.kind == CT_OPT_ADAMW ? __double2float_rn(__dmul_rn((double)now->lr, (double)p.weight_decay)) : 0.0f;
    float gs = 1.0f, alpha = 0.0f;
    if (!skip) {
        gs = __double2float_rn(clip_scale(p.clip_norm, rec->grad_sumsq));
        /* This step's t is t + 1: the finishing thread stores it once every
         * element has been updated. */
        if (p.kind == CT_OPT_ADAM || p.kind == CT_OPT_ADAMW) alpha = adam_alpha(*now, (unsigned long long)t + 1ull);
    }
    *skip_out = skip ? 1 : 0;
    *gs_out = gs;
    *alpha_out = alpha;
}

/* One element from its loaded values: ||w_old||^2 into ps (also on a
 * skipped step: the CPU reports it there too) and, unless skipped, the
 * update into w1, s0, s1 and ||dw||^2 into us. Returns whether w1 and the
 * state are to be stored. */
static __device__ __forceinline__ bool optim_element(const optim_plan &now, bool skip, float gs, float alpha, float w0,
                                                     float g, float &s0, float &s1, float &w1, double &ps,
                                                     double &us) {
    const double w0d = (double)w0;
    ps = __dadd_rn(ps, __dmul_rn(w0d, w0d));
    if (skip) return false;
    w1 = update_vals(now, w0, __fmul_rn(g, gs), alpha, s0, s1);
    const double d = __dsub_rn((double)w1, w0d);
    us = __dadd_rn(us, __dmul_rn(d, d));
    return true;
}

/* The block's sums of its threads' ps and us, in s_ps[0] and s_us[0]: a
 * shared-memory tree, s[t] += s[t + stride] for stride 128 .. 1. Every
 * thread of the block calls it, with s_ps and s_us free. */
static __device__ void optim_block_tree(double *s_ps, double *s_us, double ps, double us) {
    const unsigned int tid = threadIdx.x;
    s_ps[tid] = ps;
    s_us[tid] = us;
    __syncthreads();
    for (unsigned int stride = OPT_THREADS / 2; stride > 0; stride >>= 1) {
        if (tid < stride) {
            s_ps[tid] = __dadd_rn(s_ps[tid], s_ps[tid + stride]);
            s_us[tid] = __dadd_rn(s_us[tid], s_us[tid + stride]);
        }
        __syncthreads();
    }
}

/* The record's optimizer fields and t, once the block partials are in
 * (the last block, all OPT_THREADS threads). */
static __device__ void optim_finish(const optim_plan &p, const double *partials, uint64_t *t, const ct_step_ctx *ctx,
                                    ct_step_record *ring, double *s_ps, double *s_us) {
    const unsigned int tid = threadIdx.x;
    double ps = 0.0, us = 0.0;
    for (unsigned int j = tid; j < p.nblocks; j += OPT_THREADS) {
        /* Written by other blocks of this grid: read past L1. */
        ps = __dadd_rn(ps, __ldcg(partials + (size_t)j * CT_CUDA_PARTIAL_STRIDE + 0));
        us = __dadd_rn(us, __ldcg(partials + (size_t)j * CT_CUDA_PARTIAL_STRIDE + 1));
    }
    __syncthreads(); /* s_ps, s_us are free again */
    optim_block_tree(s_ps, s_us, ps, us);
    if (tid == 0) optim_record(p, s_ps[0], s_us[0], t, ring + ctx->slot);
}

/* ctx->step += 1, ctx->batch += 1, the ring slot on by one (one thread). */
static __device__ __forceinline__ void step_advance_one(ct_step_ctx *ctx) {
    ctx->step += 1;
    ctx->batch += 1;
    ctx->slot = ctx->ring_len ? (ctx->slot + 1) % ctx->ring_len : 0;
}

/* The whole arena in one grid-stride pass (a grid of at least one block:
 * with n == 0 a lone block only fills the record). Nothing in the record or
 * *t is written until every block is done (the last one writes them), so
 * every block reads the same flags, grad_sumsq and t. With `advance` (the
 * step's ctx, or NULL) the last block also advances the step, as
 * step_advance_kernel would after it: every other block has read ctx by
 * then, so step_finish saves that launch. */
static __global__ void __launch_bounds__(OPT_THREADS)
    optim_kernel(optim_plan p, float *w, const float *grads, float *state, uint64_t *t, const ct_step_ctx *ctx,
                 ct_step_record *ring, double *partials, unsigned int *done, ct_step_ctx *advance) {
    __shared__ int s_skip;
    __shared__ bool s_last;
    __shared__ float s_gs, s_alpha;
    __shared__ optim_plan s_p; /* p with this step's scheduled rate */
    __shared__ double s_ps[OPT_THREADS];
    __shared__ double s_us[OPT_THREADS];
    const unsigned int tid = threadIdx.x;
    /* Per-step scalars once per block (two double pow()s for Adam), shared
     * with the block's threads: one read of the record and of t per block,
     * and the same value everywhere since every block runs the same code on
     * the same inputs. */
    if (tid == 0) {
        int skip;
        optim_scalars(p, ring + ctx->slot, ctx->step, *t, &s_p, &skip, &s_gs, &s_alpha);
        s_skip = skip;
    }
    __syncthreads();
    const bool skip = s_skip != 0;
    const float gs = s_gs, alpha = s_alpha;

    /* A thread's elements i, i + step, ... in that order; the loads of
     * OPT_LOAD_BATCH of them are issued before the first is updated (one
     * round trip to memory for them, not one each; the stores in between
     * would otherwise keep the next loads waiting). */
    const size_t n = (size_t)p.n;
    const size_t step = (size_t)gridDim.x * OPT_THREADS;
    double ps = 0.0, us = 0.0;
    for (size_t i0 = (size_t)blockIdx.x * OPT_THREADS + tid; i0 < n; i0 += OPT_LOAD_BATCH * step) {
        float w0[OPT_LOAD_BATCH], gv[OPT_LOAD_BATCH], s0[OPT_LOAD_BATCH], s1[OPT_LOAD_BATCH];
#pragma unroll
        for (int k = 0; k < OPT_LOAD_BATCH; ++k) {
            const size_t i = i0 + (size_t)k * step;
            const bool in = i < n;
            w0[k] = in ? w[i] : 0.0f;
            gv[k] = in ? grads[i] : 0.0f;
            s0[k] = in && s_p.slots > 0 ? state[i] : 0.0f;
            s1[k] = in && s_p.slots > 1 ? state[n + i] : 0.0f;
        }
#pragma unroll
        for (int k = 0; k < OPT_LOAD_BATCH; ++k) {
            const size_t i = i0 + (size_t)k * step;
            float w1;
            if (i < n && optim_element(s_p, skip, gs, alpha, w0[k], gv[k], s0[k], s1[k], w1, ps, us)) {
                w[i] = w1;
                if (s_p.slots > 0) state[i] = s0[k];
                if (s_p.slots > 1) state[n + i] = s1[k];
            }
        }
    }
    optim_block_tree(s_ps, s_us, ps, us);
    if (tid == 0) {
        if (blockIdx.x < p.nblocks) {
            double *out = partials + (size_t)blockIdx.x * CT_CUDA_PARTIAL_STRIDE;
            out[0] = s_ps[0];
            out[1] = s_us[0];
        }
        __threadfence(); /* this block's partials are visible before it counts itself done */
        s_last = atomicAdd(done, 1u) == gridDim.x - 1;
    }
    __syncthreads();
    if (!s_last) return;
    __threadfence();
    optim_finish(p, partials, t, ctx, ring, s_ps, s_us);
    if (tid == 0) {
        *done = 0u; /* ready for the next step (or graph replay) */
        if (advance) step_advance_one(advance);
    }
}

static __global__ void step_advance_kernel(ct_step_ctx *ctx) { step_advance_one(ctx); }

/* The plan of one optimizer step over n elements (host): cfg and th as the
 * kernels read them, and the fixed grid. */
static inline optim_plan optim_make_plan(const ct_optim_config *cfg, const ct_health_thresholds *th, size_t n) {
    optim_plan p;
    memset(&p, 0, sizeof p);
    p.kind = (int)cfg->kind;
    p.nesterov = cfg->nesterov;
    p.skip_nonfinite = cfg->skip_nonfinite;
    p.slots = ct_optim_state_slots(cfg);
    p.lr = cfg->lr;
    p.mom = cfg->momentum;
    p.eps = cfg->eps;
    /* The CPU's coefficient expressions, evaluated on the host as there. */
    p.fb1 = cfg->beta1;
    p.fb2 = cfg->beta2;
    p.b1_d = (double)cfg->beta1;
    p.b2_d = (double)cfg->beta2;
    p.one_b1 = (float)(1.0 - p.b1_d);
    p.one_b2 = (float)(1.0 - p.b2_d);
    p.lr_d = (double)cfg->lr;
    p.decay = cfg->kind == CT_OPT_ADAMW ? (float)((double)cfg->lr * cfg->weight_decay) : 0.0f;
    p.weight_decay = cfg->weight_decay;
    p.schedule = cfg->schedule;
    p.rho = cfg->rho;
    p.one_rho = (float)(1.0 - (double)cfg->rho);
    p.clip_norm = cfg->clip_norm;
    p.vanishing = th ? th->vanishing_update_ratio : 0.0;
    p.n = n;
    /* Fixed grid from n alone, so the reduction order never changes. */
    const size_t want = n / OPT_THREADS + (n % OPT_THREADS != 0);
    p.nblocks = (unsigned int)(want < CT_CUDA_MAX_PARTIAL_BLOCKS ? want : CT_CUDA_MAX_PARTIAL_BLOCKS);
    return p;
}

#endif
