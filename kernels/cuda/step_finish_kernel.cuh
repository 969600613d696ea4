/* The end of a small model's step in one kernel: what step_stats,
 * optimizer_step and step_advance do, as stats_kernel, optim_kernel and
 * step_advance_kernel do it, in one launch of one block. The device code
 * (step_cuda.cu launches it; tests/emu runs it on the CPU).
 *
 * Why: for `seed` (7,960 parameters) the statistics are 3 blocks and the
 * optimizer 32, each with well under a microsecond of work, and the step's
 * advance a kernel of one thread; in a replayed graph the launches and the
 * gaps between the nodes are the cost (H100: stats 6.9 us, update 7.2 us a
 * step, benchmarks/NOTES.md), not the arithmetic.
 *
 * The same bits as the three kernels. One block of FINISH_THREADS threads
 * plays their blocks, a warp for each: a block of 256 threads combines its
 * threads' values v[t] in the shared-memory tree s[t] += s[t + stride],
 * stride 128, 64, ..., 1. A warp whose lane j holds v[w*32 + j] for
 * w = 0..7 adds the same pairs: strides 128, 64 and 32 are lane j's own
 * ((v0 + v4) + (v2 + v6)) + ((v1 + v5) + (v3 + v7)), strides 16 .. 1 a
 * down-shuffle tree (tree256). Each of those virtual threads walks its
 * elements in its thread's order, and stage 2 of each reduction is the
 * original's code (stats_segments, stats_rows, stats_record, optim_record)
 * or its order. So the record, w, state, t and ctx come out bit for bit as
 * the three kernels leave them (tests/emu/test_emu_step_finish.cpp), and
 * the choice between them changes no figure.
 *
 * Limits: both arenas at most FINISH_MAX_PARAMS elements. There the stats
 * chunk is STATS_MIN_CHUNK (a virtual thread sees at most 16 elements) and
 * the optimizer has one element per virtual thread (the kernel relies on
 * it); past it the launcher
 * queues the statistics and the optimizer kernels, whose full grids are
 * faster for a large arena, with the advance folded into the optimizer's
 * last block (optim_kernel's `advance`): two launches instead of three.
 */
#ifndef CUTRAIN_KERNELS_CUDA_STEP_FINISH_KERNEL_CUH
#define CUTRAIN_KERNELS_CUDA_STEP_FINISH_KERNEL_CUH

#include "kernels/cuda/optim_kernel.cuh"
#include "kernels/cuda/stats_kernel.cuh"

#define FINISH_THREADS 512 /* 16 warps */
#define FINISH_WARPS (FINISH_THREADS / 32)
#define FINISH_MAX_PARAMS 32768
#define FINISH_MAX_STATS_BLOCKS (FINISH_MAX_PARAMS / STATS_MIN_CHUNK + STATS_MAX_SEGMENTS)
#define FINISH_MAX_OPT_BLOCKS (FINISH_MAX_PARAMS / OPT_THREADS)
/* Values of m whose loads a lane issues together in the statistics' stage 1. */
#define FINISH_STATS_BATCH 4

/* A 256-thread block's tree over v[t], t = w*32 + lane, from the warp that
 * holds v[w*32 + lane] in lane's v[w]: strides 128, 64 and 32 within the
 * lane (tree256_lane), then 16 .. 1 as a down-shuffle tree; lane 0 gets the
 * block's sum. */
static __device__ __forceinline__ double tree256_lane(const double v[8]) {
    return __dadd_rn(__dadd_rn(__dadd_rn(v[0], v[4]), __dadd_rn(v[2], v[6])),
                     __dadd_rn(__dadd_rn(v[1], v[5]), __dadd_rn(v[3], v[7])));
}

static __device__ __forceinline__ double tree256(const double v[8]) {
    double c = tree256_lane(v);
    for (int off = 16; off > 0; off >>= 1) c = __dadd_rn(c, __shfl_down_sync(0xffffffffu, c, off));
    return c;
}

/* stats_kernel's block b (stage 1) by one warp, into part[b] (lane 0). Max
 * and counts do not depend on the order; the sum of squares keeps it. */
static __device__ void finish_stats_block(const float *g, const stats_plan &p, unsigned int b, stats_part *part) {
    const unsigned int lane = threadIdx.x & 31u;
    unsigned long long lo, hi;
    stats_block_range(p, b, &lo, &hi);

    double sq[8], mx[8];
    unsigned int nf[8], zeros[8]; /* at most chunk / 256 = 16 each */
#pragma unroll
    for (int w = 0; w < 8; ++w) {
        sq[w] = mx[w] = 0.0;
        nf[w] = zeros[w] = 0u;
    }
    /* Virtual thread w*32 + lane takes lo + w*32 + lane + 256 m, m = 0, 1, ...
     * (stats_kernel's thread order); the 8 run side by side. The loads of
     * FINISH_STATS_BATCH values of m are issued before any is added (one round
     * trip to memory for them all, not one each); the additions keep the
     * order. */
    for (unsigned long long base = lo; base < hi; base += FINISH_STATS_BATCH * STATS_THREADS) {
        float v[FINISH_STATS_BATCH][8];
#pragma unroll
        for (int m = 0; m < FINISH_STATS_BATCH; ++m)
#pragma unroll
            for (int w = 0; w < 8; ++w) {
                const unsigned long long i = base + (unsigned long long)(m * STATS_THREADS + w * 32) + lane;
                v[m][w] = i < hi ? g[i] : 0.0f;
            }
#pragma unroll
        for (int m = 0; m < FINISH_STATS_BATCH; ++m)
#pragma unroll
            for (int w = 0; w < 8; ++w) {
                const unsigned long long i = base + (unsigned long long)(m * STATS_THREADS + w * 32) + lane;
                if (i < hi) stats_add(v[m][w], sq[w], mx[w], nf[w], zeros[w]);
            }
    }
    /* The lane's part of the block's tree, then the warp's (tree256's shuffles). */
    double sum = tree256_lane(sq), m = 0.0;
    unsigned long long cnt_nf = 0, cnt_zero = 0;
#pragma unroll
    for (int w = 0; w < 8; ++w) {
        if (mx[w] > m) m = mx[w];
        cnt_nf += nf[w];
        cnt_zero += zeros[w];
    }
    stats_warp_combine(sum, m, cnt_nf, cnt_zero);
    if (lane == 0) part[b] = stats_part{sum, m, cnt_nf, cnt_zero};
}

static __global__ void __launch_bounds__(FINISH_THREADS, 1)
    step_finish_kernel(const float *g, stats_plan sp, const float *row_loss, const float *row_correct, uint32_t rows,
                       double exploding, optim_plan op, float *w, const float *grads, float *state, uint64_t *t,
                       ct_step_ctx *ctx, ct_step_record *ring) {
    __shared__ stats_part s_part[FINISH_MAX_STATS_BLOCKS];
    __shared__ stats_part s_seg[STATS_MAX_SEGMENTS];
    __shared__ double s_ps[FINISH_MAX_OPT_BLOCKS], s_us[FINISH_MAX_OPT_BLOCKS];
    __shared__ ct_step_record s_rec;
    __shared__ optim_plan s_p; /* op with this step's scheduled rate */
    __shared__ int s_skip;
    __shared__ float s_gs, s_alpha;
    const unsigned int tid = threadIdx.x, lane = tid & 31u, warp = tid >> 5;

    /* Statistics, stage 1 (stats_kernel's blocks) and stage 2 (stats_finish). */
    for (unsigned int b = warp; b < sp.nblocks; b += FINISH_WARPS) finish_stats_block(g, sp, b, s_part);
    __syncthreads();
    const stats_part *parts = s_part;
    stats_segments(sp, FINISH_WARPS, [parts](unsigned int j, stats_part *out) { *out = parts[j]; }, s_seg);
    double loss, correct;
    bool bad_row;
    stats_rows<FINISH_THREADS>(row_loss, row_correct, rows, &loss, &correct, &bad_row);
    __syncthreads(); /* the segment figures are in (also when rows == 0) */
    if (tid == 0) {
        stats_record(sp, s_seg, loss, correct, bad_row, rows, exploding, ctx, &s_rec);
        /* optim_kernel's per-step scalars, from the record as it stands. */
        int skip;
        optim_scalars(op, &s_rec, ctx->step, *t, &s_p, &skip, &s_gs, &s_alpha);
        s_skip = skip;
    }
    __syncthreads();

    /* The update (optim_kernel's blocks): virtual thread v of block k takes
     * element k*256 + v (within the limits, nblocks*256 >= n: one element
     * each, as there). A lane loads its 8 elements' weights, gradients and
     * state first, then updates them: one round trip to memory, not eight. */
    const bool skip = s_skip != 0;
    const float gs = s_gs, alpha = s_alpha;
    const size_t n = (size_t)op.n;
    for (unsigned int k = warp; k < op.nblocks; k += FINISH_WARPS) {
        const size_t i0 = (size_t)k * OPT_THREADS + lane;
        float w0[8], gv[8], s0[8], s1[8];
#pragma unroll
        for (int v = 0; v < 8; ++v) {
            const size_t i = i0 + (size_t)(v * 32);
            const bool in = i < n;
            w0[v] = in ? w[i] : 0.0f;
            gv[v] = in ? grads[i] : 0.0f;
            s0[v] = in && s_p.slots > 0 ? state[i] : 0.0f;
            s1[v] = in && s_p.slots > 1 ? state[n + i] : 0.0f;
        }
        double ps[8], us[8];
#pragma unroll
        for (int v = 0; v < 8; ++v) {
            const size_t i = i0 + (size_t)(v * 32);
            ps[v] = us[v] = 0.0;
            float w1;
            if (i < n && optim_element(s_p, skip, gs, alpha, w0[v], gv[v], s0[v], s1[v], w1, ps[v], us[v])) {
                w[i] = w1;
                if (s_p.slots > 0) state[i] = s0[v];
                if (s_p.slots > 1) state[n + i] = s1[v];
            }
        }
        const double bps = tree256(ps), bus = tree256(us);
        if (lane == 0) {
            s_ps[k] = bps;
            s_us[k] = bus;
        }
    }
    __syncthreads();

    /* optim_finish's order: thread v adds blocks v, v+256, ... from 0.0,
     * then the 256-thread tree. */
    if (warp != 0) return;
    double ps[8], us[8];
#pragma unroll
    for (int v = 0; v < 8; ++v) {
        ps[v] = us[v] = 0.0;
        for (unsigned int j = (unsigned int)(v * 32) + lane; j < op.nblocks; j += OPT_THREADS) {
            ps[v] = __dadd_rn(ps[v], s_ps[j]);
            us[v] = __dadd_rn(us[v], s_us[j]);
        }
    }
    const double total_ps = tree256(ps), total_us = tree256(us);
    if (lane != 0) return;
    optim_record(op, total_ps, total_us, t, &s_rec);
    ring[ctx->slot] = s_rec;
    step_advance_one(ctx);
}

#endif
