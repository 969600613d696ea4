/* The dense chain's plan and launch; the kernel and the math it follows are
 * in dense_chain_kernel.cuh. */
#include <stdlib.h>
#include <string.h>

#include "kernels/cuda/cuda_common.h"
#include "kernels/cuda/dense_chain_kernel.cuh"

/* The plan holds nothing the call does not pass again; it records that the
 * chain was accepted, for these limits. */
typedef struct chain_plan {
    int max_rows;
} chain_plan;

/* CUTRAIN_CUDA_DENSE_CHAIN: 1 on, 0 off, -1 unknown (err set). Read at
 * each plan; backend creation checks it once, so a typo is an error even
 * for a model that is no dense chain. */
extern "C" int cuda_dense_chain_setting(ct_error *err) {
    const char *v = getenv("CUTRAIN_CUDA_DENSE_CHAIN");
    if (!v || !*v || strcmp(v, "off") == 0) return 0;
    if (strcmp(v, "on") == 0) return 1;
    ct_fail(err, CT_EXIT_USAGE, "CUTRAIN_CUDA_DENSE_CHAIN: expected \"on\" or \"off\", got \"%.40s\"", v);
    return -1;
}

extern "C" void *cuda_dense_chain_plan(ct_backend *b, const ct_dense_chain *c, int max_rows, ct_error *err) {
    (void)b;
    const int on = cuda_dense_chain_setting(err);
    if (on <= 0) return NULL;
    if (c->n_layers < 1 || c->n_layers > CT_DENSE_CHAIN_MAX || max_rows < 1 || max_rows > CHAIN_MAX_ROWS)
        return NULL;
    long macs = 0;
    for (int i = 0; i < c->n_layers; ++i) {
        if (c->act[i] == CT_ACT_SOFTMAX || c->dim[i] < 1 || c->dim[i + 1] < 1) return NULL;
        macs += (long)max_rows * c->dim[i] * c->dim[i + 1];
        if (macs > CHAIN_MAX_MACS) return NULL;
    }
    chain_plan *p = (chain_plan *)malloc(sizeof *p);
    if (!p) {
        ct_fail(err, CT_EXIT_FAILURE, "cuda: out of host memory planning the dense chain");
        return NULL;
    }
    p->max_rows = max_rows;
    return p;
}

extern "C" void cuda_dense_chain_plan_free(ct_backend *b, void *plan) {
    (void)b;
    free(plan);
}

extern "C" void cuda_dense_chain_train(ct_backend *b, void *plan, const ct_dense_chain *c, int rows) {
    const chain_plan *p = (const chain_plan *)plan;
    if (rows < 1 || rows > p->max_rows)
        ct_cuda_fatal("rows outside the planned 1 .. max_rows", "cuda_dense_chain_train", __FILE__, __LINE__);
    if (c->gather_order && c->gather_ds.sample_elems != (size_t)c->dim[0])
        ct_cuda_fatal("a gather whose samples are not the chain's inputs", "cuda_dense_chain_train", __FILE__, __LINE__);
    dense_chain_kernel<<<1, CHAIN_THREADS, 0, ct_cuda(b)->stream>>>(*c, rows);
    CT_LAUNCH_CHECK("dense_chain_kernel");
}
