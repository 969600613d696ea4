/* A dense network's training pass in one kernel (the dense_chain_* entries):
 * the device code. dense_chain_cuda.cu launches it; tests/emu runs it on the
 * CPU (tests/emu/cuda_emu.h), so it holds device code only.
 *
 * Why: for a network as small as `seed` (784-10-10, batch 32: about half a
 * million multiply-adds a step) the ops one by one are ten launches of
 * kernels that each finish in a few microseconds, so launch latency and the
 * gaps between graph nodes set the step time (H100: forward 16 us, loss 2.4,
 * backward 14.3 for seed; benchmarks/NOTES.md). One block of CHAIN_THREADS
 * threads runs the whole chain instead; its phases are separated by
 * __syncthreads(), which also makes the block's global writes visible to
 * all of its threads, so the chain's buffers are the model's own.
 *
 * The math is the ops' (kernels/cpu/dense_chain_cpu.c lists it):
 *   gather (optional)  x and labels from the resident dataset, as gather_kernel
 *   forward, layer i   y[r,o] = act(sum_k x[r,k] W[o,k] + b[o])
 *   loss               loss_rows.cuh, the loss kernels' own row code, grad_scale (float)(1/rows)
 *   backward, layer i  dz = act'(y) dy in place (act_math.cuh, as act_back_kernel);
 *                      db[o] = sum_r dz[r,o] in double, row order (column_sums_kernel's
 *                      order: the same bits); dW[o,k] = sum_r dz[r,o] x[r,k];
 *                      dX[r,k] = sum_o dz[r,o] W[o,k] into the previous layer's dy
 * The three GEMMs sum in float in an order of their own (below), as cuBLAS
 * and OpenBLAS each do, so they agree with the ops within the GEMM bound of
 * tests/parity; everything else agrees bit for bit given the same inputs.
 *
 * Summation orders depend on the shapes only, so a step gives the same bits
 * run after run:
 *  - forward (long sums over the inputs, few outputs): a warp owns a tile of
 *    FWD_TM rows x FWD_TN outputs; lane j adds k = j, j+32, ... in ascending
 *    order into each of its tile's accumulators; the lanes then combine in a
 *    fixed xor-shuffle tree (16, 8, 4, 2, 1). Tiles go to warps round-robin.
 *  - dW and dX (sums over the batch rows or the outputs, many results): a
 *    thread owns BWD_TN adjacent results of one row of the result and adds
 *    the terms in ascending order of the summed index; no combining.
 *
 * The plan (dense_chain_plan) offers the op only when CUTRAIN_CUDA_DENSE_CHAIN
 * is "on" (default "off" until it is measured against the ops on a GPU), no
 * layer applies a softmax of its own (a softmax output fused into the
 * cross-entropy is linear here), batches have at most CHAIN_MAX_ROWS rows and
 * one forward pass has at most CHAIN_MAX_MACS multiply-adds: past that one
 * block is slower than the ops' full grids.
 */
#ifndef CUTRAIN_KERNELS_CUDA_DENSE_CHAIN_KERNEL_CUH
#define CUTRAIN_KERNELS_CUDA_DENSE_CHAIN_KERNEL_CUH

#include <stddef.h>

#include "cutrain/backend.h"
#include "kernels/cuda/act_math.cuh"
#include "kernels/cuda/loss_rows.cuh"

#define CHAIN_THREADS 768 /* 24 warps: at 80 registers a thread (ptxas, sm_90), 1024 would spill */
#define CHAIN_WARPS (CHAIN_THREADS / 32)
#define CHAIN_MAX_ROWS 1024
#define CHAIN_MAX_MACS (1L << 21)
#define FWD_TM 4 /* rows of a forward tile    */
#define FWD_TN 4 /* outputs of a forward tile */
#define BWD_TN 4 /* adjacent results per thread in dW and dX */

/* y[r, o] = act(sum_k x[r*in + k] * w[o*in + k] + bias[o]) for r < rows, o < out. */
static __device__ void chain_forward(int rows, int in, int out, const float *x, const float *w, const float *bias,
                                     ct_activation act, float *y) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int row_tiles = (rows + FWD_TM - 1) / FWD_TM, out_tiles = (out + FWD_TN - 1) / FWD_TN;
    for (int tile = warp; tile < row_tiles * out_tiles; tile += CHAIN_WARPS) {
        const int r0 = (tile / out_tiles) * FWD_TM, o0 = (tile % out_tiles) * FWD_TN;
        float acc[FWD_TM][FWD_TN];
#pragma unroll
        for (int i = 0; i < FWD_TM; ++i)
#pragma unroll
            for (int j = 0; j < FWD_TN; ++j) acc[i][j] = 0.0f;
        /* Rows and outputs past the edge read row/output 0 (always there) and are never written. */
        /* 32-bit offsets (the plan bounds rows * in and out * in well below
         * 2^31): half the registers of pointers, and one block of 768
         * threads leaves each at most 80 (ptxas sm_90 uses all 80, no spills). */
        int xo[FWD_TM], wo[FWD_TN];
#pragma unroll
        for (int i = 0; i < FWD_TM; ++i) xo[i] = (r0 + i < rows ? r0 + i : 0) * in;
#pragma unroll
        for (int j = 0; j < FWD_TN; ++j) wo[j] = (o0 + j < out ? o0 + j : 0) * in;
        /* Unrolled so that several iterations' loads are in flight at once:
         * the sums are serial, the loads need not be. */
#pragma unroll 4
        for (int k = lane; k < in; k += 32) {
            float xv[FWD_TM], wv[FWD_TN];
#pragma unroll
            for (int i = 0; i < FWD_TM; ++i) xv[i] = x[xo[i] + k];
#pragma unroll
            for (int j = 0; j < FWD_TN; ++j) wv[j] = w[wo[j] + k];
#pragma unroll
            for (int i = 0; i < FWD_TM; ++i)
#pragma unroll
                for (int j = 0; j < FWD_TN; ++j) acc[i][j] = fmaf(xv[i], wv[j], acc[i][j]);
        }
#pragma unroll
        for (int i = 0; i < FWD_TM; ++i)
#pragma unroll
            for (int j = 0; j < FWD_TN; ++j)
                for (int off = 16; off > 0; off >>= 1)
                    acc[i][j] += __shfl_xor_sync(CT_ROW_FULL_MASK, acc[i][j], off);
        /* Every lane holds every sum (an xor tree adds the same pairs in every
         * lane); lane i*FWD_TN + j writes (i, j), with the ops' rounding: the
         * float sum, then + bias, then act. */
#pragma unroll
        for (int i = 0; i < FWD_TM; ++i)
#pragma unroll
            for (int j = 0; j < FWD_TN; ++j)
                if (lane == i * FWD_TN + j && r0 + i < rows && o0 + j < out)
                    y[(size_t)(r0 + i) * out + o0 + j] = ct_act_forward_one(act, acc[i][j] + bias[o0 + j]);
    }
}

/* C[m, n] = sum_{q < K} A[m*sam + q*saq] * B[q*ldb + n] for m < M, n < N; a
 * thread owns BWD_TN adjacent n of one m, adding q in ascending order.
 * Adjacent threads own adjacent n, so the B loads of a warp are contiguous. */
static __device__ void chain_gemm_rows(int M, int N, int K, const float *A, size_t sam, size_t saq, const float *B,
                                       size_t ldb, float *C) {
    const int n_tiles = (N + BWD_TN - 1) / BWD_TN;
    for (long t = threadIdx.x; t < (long)M * n_tiles; t += CHAIN_THREADS) {
        const int m = (int)(t / n_tiles), n0 = (int)(t % n_tiles) * BWD_TN;
        const int cnt = N - n0 < BWD_TN ? N - n0 : BWD_TN;
        float acc[BWD_TN];
#pragma unroll
        for (int j = 0; j < BWD_TN; ++j) acc[j] = 0.0f;
        const float *a = A + (size_t)m * sam;
#pragma unroll 4
        for (int q = 0; q < K; ++q) {
            const float av = a[(size_t)q * saq];
            const float *b = B + (size_t)q * ldb + n0;
#pragma unroll
            for (int j = 0; j < BWD_TN; ++j)
                if (j < cnt) acc[j] = fmaf(av, b[j], acc[j]);
        }
#pragma unroll
        for (int j = 0; j < BWD_TN; ++j)
            if (j < cnt) C[(size_t)m * N + n0 + j] = acc[j];
    }
}

/* x[r, :] = scale * images[order[r], :] and its label (order already at the batch),
 * as gather_kernel (gather_cuda.cu) writes them: one rounding of the
 * product, a NaN row and label -1 for an index outside the dataset. The
 * rows' elements are spread over all the threads at once, consecutive
 * threads on consecutive elements. */
static __device__ void chain_gather(ct_device_dataset ds, const int32_t *order, int rows, float *x, int32_t *labels) {
    const size_t elems = ds.sample_elems, n = (size_t)rows * elems;
    const int is_u8 = ds.elem_type == CT_ELEM_U8;
    for (size_t e = threadIdx.x; e < n; e += CHAIN_THREADS) {
        const size_t r = e / elems, j = e - r * elems;
        const int32_t idx = order[r];
        const int ok = idx >= 0 && (size_t)idx < ds.count;
        if (!ok)
            x[e] = ct_quiet_nan();
        else if (is_u8)
            x[e] = ds.scale * (float)((const uint8_t *)ds.images)[(size_t)idx * elems + j];
        else
            x[e] = ds.scale * ((const float *)ds.images)[(size_t)idx * elems + j];
        if (j == 0) labels[r] = ok ? (int32_t)ds.labels[idx] : -1;
    }
}

static __global__ void __launch_bounds__(CHAIN_THREADS, 1) dense_chain_kernel(ct_dense_chain c, int rows) {
    const int L = c.n_layers;
    if (c.gather_order) {
        chain_gather(c.gather_ds, c.gather_order + (size_t)c.gather_ctx->batch * c.gather_stride, rows, c.x,
                     c.labels);
        __syncthreads();
    }
    for (int i = 0; i < L; ++i) {
        chain_forward(rows, c.dim[i], c.dim[i + 1], i ? c.y[i - 1] : c.x, c.w[i], c.bias[i], c.act[i], c.y[i]);
        __syncthreads();
    }

    /* The loss, a warp per row (the loop is uniform within a warp). */
    const int classes = c.dim[L];
    const float scale = 1.0f / (float)rows;
    const int lane = threadIdx.x & 31;
    for (int r = threadIdx.x >> 5; r < rows; r += CHAIN_WARPS) {
        const size_t off = (size_t)r * classes;
        if (c.mse)
            ct_mse_row(lane, (size_t)r, classes, c.y[L - 1] + off, c.labels[r], scale, c.dy[L - 1] + off, c.row_loss,
                       c.row_correct);
        else
            ct_xent_row(lane, (size_t)r, classes, c.y[L - 1] + off, c.labels[r], scale, c.dy[L - 1] + off,
                        c.row_loss, c.row_correct);
    }
    __syncthreads();

    for (int i = L - 1; i >= 0; --i) {
        const int in = c.dim[i], out = c.dim[i + 1];
        const size_t n = (size_t)rows * out;
        float *dz = c.dy[i];
        if (c.act[i] != CT_ACT_LINEAR) {
            for (size_t e = threadIdx.x; e < n; e += CHAIN_THREADS) dz[e] = ct_act_backward_one(c.act[i], c.y[i][e], dz[e]);
            __syncthreads();
        }
        /* db, dW and dX read dz and write apart: one phase. */
        for (int o = threadIdx.x; o < out; o += CHAIN_THREADS) {
            double acc = 0.0;
#pragma unroll 8
            for (int r = 0; r < rows; ++r) acc += (double)dz[(size_t)r * out + o];
            c.dbias[i][o] = (float)acc;
        }
        /* dW[o, k] = sum_r dz[r, o] x[r, k] */
        chain_gemm_rows(out, in, rows, dz, 1, (size_t)out, i ? c.y[i - 1] : c.x, (size_t)in, c.dw[i]);
        /* dX[r, k] = sum_o dz[r, o] W[o, k] */
        if (i > 0) chain_gemm_rows(rows, in, out, dz, (size_t)out, 1, c.w[i], (size_t)in, c.dy[i - 1]);
        __syncthreads();
    }
}

#endif
