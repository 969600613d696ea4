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
#include "kernels/cpu/simd_cpu.h"

/* The keep test without a float compare or a branch: u_i = r_i * 2^-24 with
 * r_i the draw's 24 bits, so u_i >= rate exactly when r_i >= rate * 2^24
 * (a power-of-two scaling: exact in float), i.e. when r_i >= t, the
 * smallest integer not below rate * 2^24 (capped above every r_i, for a rate
 * of 1 or more). A dropped element becomes +0 by masking the bits of
 * x_i * s, which is what the select gave. Branch-free, the loop vectorises:
 * the drop pattern is random, so a branch would be mispredicted every few
 * elements (a 5x difference measured on one core). */
static uint32_t keep_threshold(float rate) {
    const float tf = rate * 16777216.0f;
    if (tf >= 16777217.0f) return 16777217u; /* above every 24-bit draw: all drop */
    const uint32_t t = (uint32_t)tf;
    return t + ((float)t < tf ? 1u : 0u);
}

CT_INLINE void apply_mask_body(size_t n, uint64_t key, uint32_t t, float s, const float *in, float *out) {
    for (size_t i = 0; i < n; i++) {
        const uint32_t r = (uint32_t)(ct_rng_keyed_u64(key, (uint64_t)i) >> 40);
        const float v = in[i] * s;
        uint32_t bits;
        memcpy(&bits, &v, sizeof bits);
        bits &= 0u - (uint32_t)(r >= t);
        float o;
        memcpy(&o, &bits, sizeof o);
        out[i] = o; /* in == out: in[i] was read above */
    }
}

CT_SIMD_TWINS(apply_mask, (size_t n, uint64_t key, uint32_t t, float s, const float *in, float *out),
              (n, key, t, s, in, out))

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
    /* With rate >= 1 every element drops, and the mask turns whatever
     * x * s is (s is negative or infinite then) into exactly 0. */
    const float s = 1.0f / (1.0f - rate);
    CT_SIMD_CALL(cpu_simd_level(), apply_mask,
                 (n, ct_rng_key(seed, stream), keep_threshold(rate), s, in, out));
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
