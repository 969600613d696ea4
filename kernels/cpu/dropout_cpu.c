/* Inverted dropout with a recomputed mask.
 *
 *     keep_i = [u_i >= rate],   u_i = ct_rng_uniform(seed, stream, i) in [0, 1)
 *     y_i    = keep_i ? x_i * s : 0,     s = 1 / (1 - rate)   (float)
 *     dx_i   = keep_i ? dy_i * s : 0
 *
 * Scaling the kept units by s at training time keeps E[y] = x, so inference
 * uses the layer unchanged. The mask is a pure function of (seed, stream, i):
 * backward draws it again instead of storing it, and every backend (and every
 * thread split) draws the same one. s is rounded to float once and applied
 * by one float multiply, which a device kernel reproduces bit for bit.
 */
#include <string.h>

#include "cutrain/rng.h"
#include "kernels/cpu/cpu_ops.h"

/* One routine for both directions: forward and backward apply the identical
 * elementwise map, so sharing it is what guarantees they use the same mask.
 * in and out may be the same array (element i is read before it is written). */
static void apply_mask(size_t n, float rate, uint64_t seed, uint64_t stream, const float *in,
                       float *out) {
    if (!(rate > 0.0f)) {
        /* rate 0 is the identity, exactly: no draws, no multiply by 1/(1-0).
         * A negative (or NaN) rate is a config error caught upstream; it
         * keeps everything here rather than scaling by a factor below 1. */
        if (in != out) memmove(out, in, n * sizeof(float));
        return;
    }
    /* With rate >= 1 every u < rate, so all units drop; the select below
     * never forms 0 * inf, and the output is exactly 0 rather than NaN. */
    const float s = 1.0f / (1.0f - rate);
    for (size_t i = 0; i < n; i++)
        out[i] = ct_rng_uniform(seed, stream, (uint64_t)i) >= rate ? in[i] * s : 0.0f;
}

/* rate 0 never draws, so evaluation may pass any ctx (even NULL). */
static uint64_t stream_of(float rate, uint32_t layer, const ct_step_ctx *ctx) {
    return rate > 0.0f ? CT_STREAM_DROPOUT(ctx->step, layer) : 0;
}

void cpu_dropout_forward(ct_backend *b, size_t n, float rate, uint64_t seed, uint32_t layer,
                         const ct_step_ctx *ctx, const float *x, float *y) {
    (void)b;
    apply_mask(n, rate, seed, stream_of(rate, layer, ctx), x, y);
}

void cpu_dropout_backward(ct_backend *b, size_t n, float rate, uint64_t seed, uint32_t layer,
                          const ct_step_ctx *ctx, const float *dy, float *dx) {
    (void)b;
    apply_mask(n, rate, seed, stream_of(rate, layer, ctx), dy, dx);
}
