/* Datasets live on the backend for the whole run: uploaded once, as stored
 * (uint8 stays uint8, a quarter of the bytes of float), and gathered into
 * float batches by index. */
#include <stdlib.h>
#include <string.h>

#include "cutrain/train.h"

int ct_device_data_upload(ct_backend *be, const ct_dataset *src, ct_device_data *out, ct_error *err) {
    memset(out, 0, sizeof *out);
    size_t elem = src->elem_type == CT_ELEM_U8 ? 1 : sizeof(float);
    size_t img_bytes = src->count * src->sample_elems * elem;
    size_t n = src->count ? src->count : 1;
    void *images = be->ops->alloc(be, img_bytes ? img_bytes : 1, err);
    uint8_t *labels = images ? be->ops->alloc(be, n, err) : NULL;
    int32_t *order = labels ? be->ops->alloc(be, n * sizeof(int32_t), err) : NULL;
    int32_t *host_order = order ? malloc(n * sizeof(int32_t)) : NULL;
    if (!host_order) {
        if (order) ct_fail(err, CT_EXIT_FAILURE, "out of host memory for %zu indices", n);
        if (order) be->ops->free(be, order);
        if (labels) be->ops->free(be, labels);
        if (images) be->ops->free(be, images);
        return -1;
    }
    be->ops->upload(be, images, src->images, img_bytes);
    be->ops->upload(be, labels, src->labels, src->count);
    for (size_t i = 0; i < src->count; ++i) host_order[i] = (int32_t)i;
    be->ops->upload(be, order, host_order, src->count * sizeof(int32_t));
    out->ds.images = images;
    out->ds.labels = labels;
    out->ds.elem_type = src->elem_type;
    out->ds.count = src->count;
    out->ds.sample_elems = src->sample_elems;
    /* Bytes are pixels 0..255 scaled to [0, 1]; float files are used as stored. */
    out->ds.scale = src->elem_type == CT_ELEM_U8 ? 1.0f / 255.0f : 1.0f;
    out->order = order;
    out->host_order = host_order;
    return 0;
}

void ct_device_data_free(ct_backend *be, ct_device_data *d) {
    if (d->ds.images) be->ops->free(be, (void *)d->ds.images);
    if (d->ds.labels) be->ops->free(be, (void *)d->ds.labels);
    if (d->order) be->ops->free(be, d->order);
    free(d->host_order);
    memset(d, 0, sizeof *d);
}
