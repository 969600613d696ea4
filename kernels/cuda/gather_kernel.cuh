/* Batch assembly from a dataset resident on the device; the same map as
 * kernels/cpu/gather_cpu.c:
 *
 *     idx       = order[ctx->batch * stride + r]
 *     x[r, :]   = scale * images[idx, :]      (uint8 or float32 samples)
 *     labels[r] = labels_u8[idx]
 *
 * The batch index is read from ctx on the device, so a captured graph
 * gathers the next batch at every replay. The conversion and scaling are
 * one float multiply, as on the CPU, so x matches it bit for bit. An index
 * outside the dataset gives a NaN row and label -1 (the loss turns it into
 * a NaN row loss, which the health checks report) and nothing out of
 * bounds is read.
 *
 * Kernel: one block per row (grid = rows), 256 threads striding over the
 * sample's elements, so consecutive threads read consecutive bytes or floats
 * of the image and write consecutive floats of x. Thread 0 writes the label.
 *
 * The device code (gather_cuda.cu launches it; tests/emu runs it on the CPU).
 */
#ifndef CUTRAIN_KERNELS_CUDA_GATHER_KERNEL_CUH
#define CUTRAIN_KERNELS_CUDA_GATHER_KERNEL_CUH

#include <stddef.h>
#include <stdint.h>

#include "cutrain/backend.h"

#define CT_GATHER_THREADS 256

static __global__ void gather_kernel(const void *images, const uint8_t *labels_u8, int is_u8, size_t count,
                                     size_t elems, float scale, const int32_t *order, size_t stride,
                                     const ct_step_ctx *ctx, float *x, int32_t *labels) {
    const size_t r = blockIdx.x;
    const int32_t idx = order[(size_t)ctx->batch * stride + r];
    float *xr = x + r * elems;
    if (idx < 0 || (size_t)idx >= count) {
        const float qnan = __int_as_float(0x7fc00000); /* the CPU's NAN, bit for bit */
        for (size_t j = threadIdx.x; j < elems; j += blockDim.x) xr[j] = qnan;
        if (threadIdx.x == 0) labels[r] = -1;
        return;
    }
    const size_t src = (size_t)idx * elems;
    if (is_u8) {
        const uint8_t *img = (const uint8_t *)images + src;
        for (size_t j = threadIdx.x; j < elems; j += blockDim.x) xr[j] = scale * (float)img[j];
    } else {
        const float *img = (const float *)images + src;
        for (size_t j = threadIdx.x; j < elems; j += blockDim.x) xr[j] = scale * img[j];
    }
    if (threadIdx.x == 0) labels[r] = (int32_t)labels_u8[idx];
}

#endif
