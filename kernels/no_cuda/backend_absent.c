/* The CUDA backend's entry points in a build without CUDA: they say so. */
#include <stdio.h>

#include "cutrain/backend.h"

ct_backend *ct_backend_cuda_create(ct_error *err) {
    ct_fail(err, CT_EXIT_USAGE, "--device cuda: this cutrain was built without CUDA "
                                "(configure with -DCUTRAIN_CUDA=ON on a machine with the CUDA toolkit)");
    return NULL;
}

int ct_cuda_available(char *reason, size_t reason_len) {
    if (reason && reason_len)
        snprintf(reason, reason_len, "this cutrain was built without the CUDA backend");
    return 0;
}
