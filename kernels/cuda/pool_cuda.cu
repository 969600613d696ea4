/* Max pooling on the GPU: the launches. The kernels and their rules (ties,
 * NaN, the cut-off rows and columns) are in pool_kernel.cuh. */
#include "kernels/cuda/cuda_common.h"
#include "kernels/cuda/pool_kernel.cuh"

void cuda_maxpool_forward(ct_backend *b, int n, int c, int h, int w, int size, const float *x, float *y) {
    if (n <= 0 || c <= 0 || size <= 0 || h < size || w < size) return; /* y is empty */
    const int oh = h / size, ow = w / size;
    const size_t total = (size_t)n * (size_t)c * (size_t)oh * (size_t)ow;
    maxpool_forward_kernel<<<pool_blocks(ct_cuda(b)->sm_count, total), CT_POOL_THREADS, 0, ct_cuda(b)->stream>>>(total, h, w, size, oh,
                                                                                               ow, x, y);
    CT_LAUNCH_CHECK("maxpool_forward_kernel");
}

void cuda_maxpool_backward(ct_backend *b, int n, int c, int h, int w, int size, const float *x, const float *y,
                           const float *dy, float *dx) {
    if (n <= 0 || c <= 0 || h <= 0 || w <= 0) return; /* dx is empty */
    cudaStream_t s = ct_cuda(b)->stream;
    /* Every element of dx is overwritten: the windows' by the kernel, the
     * rows and columns no window covers (all of dx without a window) by a
     * memset first. */
    const int windows = size > 0 && h >= size && w >= size;
    if (!windows || h % size != 0 || w % size != 0)
        CT_CUDA_CHECK(cudaMemsetAsync(dx, 0, (size_t)n * (size_t)c * (size_t)h * (size_t)w * sizeof(float), s));
    if (!windows) return;
    const int oh = h / size, ow = w / size;
    const size_t total = (size_t)n * (size_t)c * (size_t)oh * (size_t)ow;
    maxpool_backward_kernel<<<pool_blocks(ct_cuda(b)->sm_count, total), CT_POOL_THREADS, 0, s>>>(total, h, w, size, oh, ow, x, y, dy,
                                                                             dx);
    CT_LAUNCH_CHECK("maxpool_backward_kernel");
}
