/* Batch assembly from a resident dataset:
 *
 *     x[r, :]   = scale * images[indices[r], :]     (uint8 or float32 samples)
 *     labels[r] = labels_u8[indices[r]]
 *
 * The conversion to float and the scaling (1/255 for MNIST bytes) happen here,
 * so the dataset stays in its compact on-disk type in memory. The product of
 * a float and a byte (or of two floats) is rounded once, so every backend
 * gets the same bits.
 */
#include <math.h>

#include "kernels/cpu/cpu_ops.h"

/* An index outside the dataset is a host bug; rather than read out of bounds
 * the row becomes NaN with label -1, which the loss turns into a NaN row loss
 * and the health checks report. */
static void poison_row(size_t elems, float *x, int32_t *label) {
    for (size_t j = 0; j < elems; j++) x[j] = NAN;
    *label = -1;
}

static void gather_row(const ct_device_dataset *ds, size_t src, float *x) {
    size_t elems = ds->sample_elems;
    const float scale = ds->scale;
    if (ds->elem_type == CT_ELEM_U8) {
        const uint8_t *img = (const uint8_t *)ds->images + src * elems;
        for (size_t j = 0; j < elems; j++) x[j] = scale * (float)img[j];
    } else {
        const float *img = (const float *)ds->images + src * elems;
        for (size_t j = 0; j < elems; j++) x[j] = scale * img[j];
    }
}

void cpu_gather_batch(ct_backend *b, const ct_device_dataset *ds, const int32_t *order, size_t stride,
                      const ct_step_ctx *ctx, int rows, float *x, int32_t *labels) {
    (void)b;
    const int32_t *indices = order + (size_t)ctx->batch * stride;
    size_t elems = ds->sample_elems;
    for (int r = 0; r < rows; r++) {
        float *xr = x + (size_t)r * elems;
        int32_t idx = indices[r];
        if (idx < 0 || (size_t)idx >= ds->count) {
            poison_row(elems, xr, labels + r);
            continue;
        }
        gather_row(ds, (size_t)idx, xr);
        labels[r] = (int32_t)ds->labels[idx];
    }
}
