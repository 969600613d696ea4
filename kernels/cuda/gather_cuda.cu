/* The batch gather on the GPU: the launch. The kernel and the map it
 * computes are in gather_kernel.cuh. */
#include "kernels/cuda/cuda_common.h"
#include "kernels/cuda/gather_kernel.cuh"

void cuda_gather_batch(ct_backend *b, const ct_device_dataset *ds, const int32_t *order, size_t stride,
                       const ct_step_ctx *ctx, int rows, float *x, int32_t *labels) {
    if (rows <= 0) return;
    /* ds is a host struct (read now, its values captured into the launch);
     * its pointers are device memory. Any type other than bytes is float32,
     * as on the CPU. */
    const int is_u8 = ds->elem_type == CT_ELEM_U8;
    gather_kernel<<<(unsigned)rows, CT_GATHER_THREADS, 0, ct_cuda(b)->stream>>>(
        ds->images, ds->labels, is_u8, ds->count, ds->sample_elems, ds->scale, order, stride, ctx, x, labels);
    CT_LAUNCH_CHECK("gather_kernel");
}
