/* Picking a backend by kind; the one place that knows both exist. */
#include <stdlib.h>

#include "cutrain/backend.h"

ct_backend *ct_backend_create(ct_device_kind kind, int threads, ct_error *err) {
    if (kind == CT_DEVICE_CUDA) return ct_backend_cuda_create(err);
    return ct_backend_cpu_create(threads, err);
}

void ct_backend_destroy(ct_backend *b) {
    if (!b) return;
    if (b->ops->destroy) b->ops->destroy(b);
    free(b);
}
