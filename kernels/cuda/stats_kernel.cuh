/* Step statistics on the GPU: the fused reduction behind step_stats, its
 * device code (step_cuda.cu launches it; step_finish_kernel.cuh reuses its
 * pieces; tests/emu runs it on the CPU).
 *
 * The figures are those of kernels/cpu/stats_cpu.c:
 *   loss_sum   = sum_r row_loss[r]           correct = sum_r row_correct[r]
 *   grad_sumsq = sum_{g_i finite} g_i^2      grad_max_abs = max_{g_i finite} |g_i|
 *   nonfinite_count = #{g_i NaN or Inf}      zero_count = #{g_i == 0, -0.0 included}
 * plus, per parametric layer, the sum of squares, the non-finite count and
 * the "all exactly zero" test, and the flags NONFINITE_LOSS, NONFINITE_GRAD,
 * ZERO_GRAD, EXPLODING_GRAD and EMPTY_BATCH with the CPU's rules.
 *
 * Reduction order. It depends only on n and the layer offsets (never on the
 * GPU model or on timing), so a record is bit-identical from run to run:
 *  - The arena is cut into segments like the CPU does: head [0, p0), layer l
 *    [p_l, p_{l+1}) for l < L = min(n_layers, CT_MAX_PARAM_LAYERS), tail
 *    [p_L, n), with the CPU's clamped offsets. Layers past the record's
 *    capacity are folded into the tail: the same elements, so the same totals.
 *  - Stage 1 (stats_kernel, STATS_THREADS threads per block): each
 *    segment is cut into chunks of `chunk` elements, one block per chunk,
 *    blocks numbered in arena order. Thread t of a block accumulates elements
 *    lo+t, lo+t+256, ... in that order; the block combines its threads with a
 *    shared-memory tree (stride 128, 64, ..., 1: s[t] = s[t] + s[t+stride])
 *    and writes sumsq, max, non-finite and zero counts to its partials row.
 *  - Stage 2, in the same kernel: the last block to finish (a counter of
 *    finished blocks, reset by that block, decides which; whichever it is,
 *    it computes the same thing) reduces the partials. Warp w takes the
 *    segments s = w, w+8, ...: lane j adds the segment's block partials j,
 *    j+32, ... left to right from 0.0, then the lanes combine in a fixed
 *    shuffle tree (offsets 16, 8, 4, 2, 1). Thread 0 then adds the segment
 *    figures left to right in segment order into the totals (as the CPU's
 *    add_partial), and row_loss and row_correct left to right in row order
 *    from 0.0 - exactly the CPU's loop, so loss_sum and correct are
 *    bit-identical to the CPU's. One launch per step, and no thread walks
 *    all the partials on its own.
 * Squares of floats are exact in double, so grad_sumsq differs from the CPU's
 * only through the association of the additions; counts, max and the flags
 * derived from them are exact.
 *
 * Assumes the default nvcc flags (no --use_fast_math, -ftz=false): the
 * float->double conversion of a denormal gradient must not flush it. The zero
 * and finiteness tests look at the bits, so they hold under any flags.
 */
#ifndef CUTRAIN_KERNELS_CUDA_STATS_KERNEL_CUH
#define CUTRAIN_KERNELS_CUDA_STATS_KERNEL_CUH

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "cutrain/backend.h"
#include "kernels/cuda/partials.h"

#define STATS_THREADS 256
/* Smallest chunk a block reduces (a multiple of STATS_THREADS): below this a
 * block does too little work to pay for its launch and its partials row. */
#define STATS_MIN_CHUNK 4096ull
/* Elements of one thread whose loads stage 1 issues together. */
#define STATS_LOAD_BATCH 8
#define STATS_MAX_SEGMENTS (CT_MAX_PARAM_LAYERS + 2)
/* Blocks left for the chunks once every segment has had its rounding-up
 * block: sum_s ceil(len_s / chunk) < n / chunk + nseg <= this + nseg. */
#define STATS_CHUNK_BLOCKS (CT_CUDA_MAX_PARTIAL_BLOCKS - STATS_MAX_SEGMENTS)

/* The block -> range mapping, computed on the host from the offsets and
 * passed by value. Segment s is [seg_lo(s), seg_hi(s)); its blocks are
 * first_block[s] .. first_block[s+1]-1. */
typedef struct stats_plan {
    unsigned long long off[CT_MAX_PARAM_LAYERS + 1]; /* clamped offsets p_0 .. p_nl */
    unsigned long long n;
    unsigned long long chunk;
    unsigned int nl;   /* layers with a segment of their own (<= CT_MAX_PARAM_LAYERS) */
    unsigned int nseg; /* nl + 2: head, layers, tail */
    unsigned int first_block[STATS_MAX_SEGMENTS + 1];
    unsigned int nblocks;
    unsigned int rec_layers; /* the record's n_layers */
} stats_plan;

/* Figures of a block, or of a segment: sum of squares and max |g| of the
 * finite elements, non-finite and zero counts. */
typedef struct stats_part {
    double sq, mx;
    unsigned long long nf, zeros;
} stats_part;

static __host__ __device__ __forceinline__ unsigned long long seg_lo(const stats_plan &p, unsigned int s) {
    return s == 0 ? 0ull : p.off[s - 1];
}

static __host__ __device__ __forceinline__ unsigned long long seg_hi(const stats_plan &p, unsigned int s) {
    return s <= p.nl ? p.off[s] : p.n;
}

/* Block b's range [*lo, *hi) of the arena (b < nblocks): a chunk of its
 * segment; a segment without blocks (empty) is stepped over. */
static __device__ __forceinline__ void stats_block_range(const stats_plan &p, unsigned int b, unsigned long long *lo,
                                                         unsigned long long *hi) {
    unsigned int s = 0;
    while (b >= p.first_block[s + 1]) ++s; /* b < first_block[nseg]: stops at s <= nseg - 1 */
    const unsigned long long end = seg_hi(p, s);
    *lo = seg_lo(p, s) + (unsigned long long)(b - p.first_block[s]) * p.chunk;
    *hi = *lo + p.chunk < end ? *lo + p.chunk : end;
}

/* Bit tests: exact whatever the float flags (-ftz, fast math). */
static __device__ __forceinline__ bool finite_f(float x) {
    return (__float_as_uint(x) & 0x7f800000u) != 0x7f800000u;
}

static __device__ __forceinline__ bool finite_d(double x) {
    return ((unsigned long long)__double_as_longlong(x) & 0x7ff0000000000000ull) != 0x7ff0000000000000ull;
}

/* Counts travel through the double partials as raw bits: exact for any value. */
static __device__ __forceinline__ double count_to_slot(unsigned long long c) {
    return __longlong_as_double((long long)c);
}

static __device__ __forceinline__ unsigned long long slot_to_count(double d) {
    return (unsigned long long)__double_as_longlong(d);
}

/* Stage 1's per-element step: one gradient into a thread's figures (the
 * counts in whatever width the caller's element count needs). */
template <typename Count>
static __device__ __forceinline__ void stats_add(float x, double &sq, double &mx, Count &nf, Count &zeros) {
    if (!finite_f(x)) {
        ++nf; /* counted, but kept out of the sums (CPU rule) */
        return;
    }
    if ((__float_as_uint(x) & 0x7fffffffu) == 0u) ++zeros; /* +0.0 and -0.0 */
    const double d = (double)x;
    /* d*d is exact (24-bit mantissa squared); _rn keeps the add separate
     * from the multiply, as on the CPU, so only the order of the sums differs. */
    sq = __dadd_rn(sq, __dmul_rn(d, d));
    const double ad = fabs(d);
    if (ad > mx) mx = ad;
}

/* A warp's figures combined into lane 0 in a fixed shuffle tree (offsets
 * 16, 8, 4, 2, 1); the max and the counts do not depend on the order. */
static __device__ __forceinline__ void stats_warp_combine(double &sq, double &mx, unsigned long long &nf,
                                                          unsigned long long &zeros) {
    for (int off = 16; off > 0; off >>= 1) {
        sq = __dadd_rn(sq, __shfl_down_sync(0xffffffffu, sq, off));
        const double m = __shfl_down_sync(0xffffffffu, mx, off);
        if (m > mx) mx = m;
        nf += __shfl_down_sync(0xffffffffu, nf, off);
        zeros += __shfl_down_sync(0xffffffffu, zeros, off);
    }
}

/* Stage 2's segment figures, into seg[s]: warp `warp` of `nwarps` takes the
 * segments s = warp, warp + nwarps, ...; lane j adds the segment's block
 * partials j, j+32, ... (load(j, &part) gives block j's) left to right from
 * 0.0, then the lanes combine in a fixed shuffle tree (16, 8, 4, 2, 1). */
template <typename Load>
static __device__ void stats_segments(const stats_plan &p, unsigned int nwarps, Load load, stats_part *seg) {
    const unsigned int lane = threadIdx.x & 31u, warp = threadIdx.x >> 5;
    for (unsigned int s = warp; s < p.nseg; s += nwarps) {
        double sq = 0.0, mx = 0.0;
        unsigned long long nf = 0, zeros = 0;
        for (unsigned int j = p.first_block[s] + lane; j < p.first_block[s + 1]; j += 32) {
            stats_part in;
            load(j, &in);
            sq = __dadd_rn(sq, in.sq);
            if (in.mx > mx) mx = in.mx;
            nf += in.nf;
            zeros += in.zeros;
        }
        stats_warp_combine(sq, mx, nf, zeros);
        if (lane == 0) seg[s] = stats_part{sq, mx, nf, zeros};
    }
}

/* The rows, left to right from 0.0 (the CPU's loop), into thread 0's *loss,
 * *correct and *bad_row, staged a tile of THREADS rows at a time. Every
 * thread of a block of THREADS calls it (`rows` is uniform, so every thread
 * reaches every barrier). */
template <unsigned int THREADS>
static __device__ void stats_rows(const float *row_loss, const float *row_correct, uint32_t rows, double *loss,
                                  double *correct, bool *bad_row) {
    __shared__ float t_loss[THREADS];
    __shared__ float t_correct[THREADS];
    const unsigned int tid = threadIdx.x;
    double l_sum = 0.0, c_sum = 0.0;
    bool bad = false;
    for (uint32_t base = 0; base < rows; base += THREADS) {
        const uint32_t r = base + tid;
        if (r < rows) {
            t_loss[tid] = row_loss[r];
            t_correct[tid] = row_correct[r];
        }
        __syncthreads();
        if (tid == 0) {
            const uint32_t cnt = rows - base < THREADS ? rows - base : THREADS;
            for (uint32_t k = 0; k < cnt; ++k) {
                const float l = t_loss[k];
                if (!finite_f(l)) bad = true;
                l_sum = __dadd_rn(l_sum, (double)l);
                c_sum = __dadd_rn(c_sum, (double)t_correct[k]);
            }
        }
        __syncthreads(); /* the tile is consumed before the next one lands */
    }
    *loss = l_sum;
    *correct = c_sum;
    *bad_row = bad;
}

/* The record from the segment figures and the row sums (one thread). */
static __device__ void stats_record(const stats_plan &p, const stats_part *seg, double loss, double correct,
                                    bool bad_row, uint32_t rows, double exploding, const ct_step_ctx *ctx,
                                    ct_step_record *rec) {
    memset(rec, 0, sizeof *rec);
    rec->clip_scale = 1.0;
    rec->step = ctx->step;
    rec->epoch = ctx->epoch;
    rec->batch_size = rows;
    rec->n_layers = p.rec_layers;
    rec->loss_sum = loss;
    rec->correct = correct;
    if (bad_row || !finite_d(loss)) rec->flags |= CT_FLAG_NONFINITE_LOSS;

    /* Segments in arena order: head, layers, tail (the CPU's add_partial order). */
    for (unsigned int s = 0; s < p.nseg; ++s) {
        rec->grad_sumsq = __dadd_rn(rec->grad_sumsq, seg[s].sq);
        if (seg[s].mx > rec->grad_max_abs) rec->grad_max_abs = seg[s].mx;
        rec->nonfinite_count += seg[s].nf;
        rec->zero_count += seg[s].zeros;
        if (s >= 1 && s <= p.nl) {
            const unsigned int l = s - 1;
            const unsigned long long count = seg_hi(p, s) - seg_lo(p, s);
            rec->layer_grad_sumsq[l] = seg[s].sq;
            rec->layer_nonfinite[l] = (uint32_t)seg[s].nf;
            if (count > 0 && seg[s].zeros == count) rec->layer_zero_all |= 1u << l;
        }
    }
    /* An empty batch produced no gradient: an all-zero arena says nothing
     * about dead layers there (CPU rule). */
    if (rows == 0) {
        rec->layer_zero_all = 0;
        rec->flags |= CT_FLAG_EMPTY_BATCH;
    }
    if (rec->nonfinite_count > 0) rec->flags |= CT_FLAG_NONFINITE_GRAD;
    if (rec->layer_zero_all) rec->flags |= CT_FLAG_ZERO_GRAD;
    if (exploding > 0.0 && __dsqrt_rn(rec->grad_sumsq) > exploding) rec->flags |= CT_FLAG_EXPLODING_GRAD;
}

/* Stage 2, run by the last block of stage 1 (all STATS_THREADS threads). */
static __device__ void stats_finish(const stats_plan &p, const double *partials, const float *row_loss,
                                    const float *row_correct, uint32_t rows, double exploding,
                                    const ct_step_ctx *ctx, ct_step_record *ring) {
    __shared__ stats_part seg[STATS_MAX_SEGMENTS];
    stats_segments(p, STATS_THREADS / 32, [partials](unsigned int j, stats_part *out) {
        /* Written by other blocks of this grid: read past L1. */
        const double *in = partials + (size_t)j * CT_CUDA_PARTIAL_STRIDE;
        out->sq = __ldcg(in + 0);
        out->mx = __ldcg(in + 1);
        out->nf = slot_to_count(__ldcg(in + 2));
        out->zeros = slot_to_count(__ldcg(in + 3));
    }, seg);
    double loss, correct;
    bool bad_row;
    stats_rows<STATS_THREADS>(row_loss, row_correct, rows, &loss, &correct, &bad_row);
    __syncthreads(); /* the segment figures are in (also when rows == 0) */
    if (threadIdx.x != 0) return;
    ct_step_record rec;
    stats_record(p, seg, loss, correct, bad_row, rows, exploding, ctx, &rec);
    ring[ctx->slot] = rec;
}

/* Stage 1: one block per chunk of one segment (a grid of at least one block:
 * with n == 0 a lone block only runs stage 2); the last block runs stage 2. */
static __global__ void __launch_bounds__(STATS_THREADS)
    stats_kernel(const float *g, stats_plan p, double *partials, unsigned int *done, const float *row_loss,
                 const float *row_correct, uint32_t rows, double exploding, const ct_step_ctx *ctx,
                 ct_step_record *ring) {
    __shared__ double s_sq[STATS_THREADS];
    __shared__ double s_max[STATS_THREADS];
    __shared__ unsigned long long s_nf[STATS_THREADS];
    __shared__ unsigned long long s_zero[STATS_THREADS];
    __shared__ bool s_last;
    const unsigned int tid = threadIdx.x;
    const unsigned int blk = blockIdx.x;

    if (blk < p.nblocks) {
        unsigned long long lo, hi;
        stats_block_range(p, blk, &lo, &hi);

        /* Elements lo + tid + 256 m in ascending m; the loads of
         * STATS_LOAD_BATCH of them are issued before the first is added (one
         * round trip to memory for them, not one each). */
        double sq = 0.0, mx = 0.0;
        unsigned long long nf = 0, zeros = 0;
        for (unsigned long long base = lo + tid; base < hi; base += STATS_LOAD_BATCH * STATS_THREADS) {
            float v[STATS_LOAD_BATCH];
#pragma unroll
            for (int k = 0; k < STATS_LOAD_BATCH; ++k) {
                const unsigned long long i = base + (unsigned long long)k * STATS_THREADS;
                v[k] = i < hi ? g[i] : 0.0f;
            }
#pragma unroll
            for (int k = 0; k < STATS_LOAD_BATCH; ++k)
                if (base + (unsigned long long)k * STATS_THREADS < hi) stats_add(v[k], sq, mx, nf, zeros);
        }
        s_sq[tid] = sq;
        s_max[tid] = mx;
        s_nf[tid] = nf;
        s_zero[tid] = zeros;
        __syncthreads();
        for (unsigned int stride = STATS_THREADS / 2; stride > 0; stride >>= 1) {
            if (tid < stride) {
                s_sq[tid] = __dadd_rn(s_sq[tid], s_sq[tid + stride]);
                if (s_max[tid + stride] > s_max[tid]) s_max[tid] = s_max[tid + stride];
                s_nf[tid] += s_nf[tid + stride];
                s_zero[tid] += s_zero[tid + stride];
            }
            __syncthreads();
        }
        if (tid == 0) {
            double *out = partials + (size_t)blk * CT_CUDA_PARTIAL_STRIDE;
            out[0] = s_sq[0];
            out[1] = s_max[0];
            out[2] = count_to_slot(s_nf[0]);
            out[3] = count_to_slot(s_zero[0]);
        }
    }
    if (tid == 0) {
        __threadfence(); /* this block's partials are visible before it counts itself done */
        s_last = atomicAdd(done, 1u) == gridDim.x - 1;
    }
    __syncthreads();
    if (!s_last) return;
    __threadfence();
    stats_finish(p, partials, row_loss, row_correct, rows, exploding, ctx, ring);
    if (tid == 0) *done = 0u; /* ready for the next pass (or graph replay) */
}

static inline unsigned long long stats_clamp_offset(unsigned long long off, unsigned long long lo,
                                                    unsigned long long n) {
    if (off < lo) return lo;
    return off > n ? n : off;
}

/* The plan of a->n elements and a->layer_begin's layers (host). Returns 0
 * when the blocks would not fit the partials, which STATS_CHUNK_BLOCKS rules
 * out. */
static inline int stats_make_plan(const ct_stats_args *a, stats_plan *p) {
    memset(p, 0, sizeof *p);
    p->n = a->n;

    /* Offsets as the CPU clamps them. Without a table (or without layers) the
     * whole arena is the tail: off[0] = 0 leaves the head empty. */
    const uint32_t layers = a->layer_begin ? a->n_layers : 0;
    p->nl = layers < CT_MAX_PARAM_LAYERS ? layers : CT_MAX_PARAM_LAYERS;
    if (layers > 0) {
        unsigned long long pos = stats_clamp_offset(a->layer_begin[0], 0, p->n);
        p->off[0] = pos;
        for (unsigned int l = 0; l < p->nl; ++l) {
            pos = stats_clamp_offset(a->layer_begin[l + 1], pos, p->n);
            p->off[l + 1] = pos;
        }
    }
    p->nseg = p->nl + 2;

    /* Chunk size from n alone: at most STATS_CHUNK_BLOCKS full chunks, so
     * with one partial chunk per segment the grid stays within the partials. */
    unsigned long long chunk = p->n / STATS_CHUNK_BLOCKS + (p->n % STATS_CHUNK_BLOCKS != 0);
    if (chunk < STATS_MIN_CHUNK) chunk = STATS_MIN_CHUNK;
    chunk = (chunk + STATS_THREADS - 1) / STATS_THREADS * STATS_THREADS;
    p->chunk = chunk;

    unsigned long long total = 0;
    for (unsigned int s = 0; s < p->nseg; ++s) {
        p->first_block[s] = (unsigned int)total;
        const unsigned long long len = seg_hi(*p, s) - seg_lo(*p, s);
        total += len / chunk + (len % chunk != 0);
    }
    if (total > CT_CUDA_MAX_PARTIAL_BLOCKS) return 0;
    p->first_block[p->nseg] = (unsigned int)total;
    p->nblocks = (unsigned int)total;
    p->rec_layers = a->n_layers < CT_MAX_PARAM_LAYERS ? a->n_layers : CT_MAX_PARAM_LAYERS;
    return 1;
}

#endif
