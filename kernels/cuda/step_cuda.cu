/* The end of a step on the GPU: step_stats, optimizer_step, step_advance and
 * step_finish (the three as one op). Plans and launches only; the device
 * code and its math are in stats_kernel.cuh, optim_kernel.cuh and
 * step_finish_kernel.cuh. */
#include <stdint.h>
#include <string.h>

#include "kernels/cuda/cuda_common.h"
#include "kernels/cuda/step_finish_kernel.cuh"

extern "C" void cuda_step_stats(ct_backend *b, const ct_stats_args *a, const ct_step_ctx *ctx, ct_step_record *ring) {
    ct_cuda_impl *impl = ct_cuda(b);
    stats_plan p;
    if (!stats_make_plan(a, &p)) /* cannot happen: see STATS_CHUNK_BLOCKS */
        ct_cuda_fatal("block plan exceeds the partials buffer", "cuda_step_stats", __FILE__, __LINE__);
    /* n == 0: no chunks, one block that only writes the record. */
    const unsigned int grid = p.nblocks > 0 ? p.nblocks : 1u;
    stats_kernel<<<grid, STATS_THREADS, 0, impl->stream>>>(a->grads, p, impl->partials,
                                                           impl->done + CT_CUDA_COUNTER_STATS, a->row_loss,
                                                           a->row_correct, a->rows, a->th.exploding_grad_norm, ctx,
                                                           ring);
    CT_LAUNCH_CHECK("stats_kernel");
}

/* The optimizer; with `advance` (the step's ctx) its last block also
 * advances the step. */
static void queue_optimizer(ct_cuda_impl *impl, const ct_optim_config *cfg, const ct_optim_buffers *buf,
                            const ct_health_thresholds *th, const ct_step_ctx *ctx, ct_step_record *ring,
                            ct_step_ctx *advance) {
    const optim_plan p = optim_make_plan(cfg, th, buf->n);
    /* n == 0: nothing to update; one block still fills the record. */
    const unsigned int grid = p.nblocks > 0 ? p.nblocks : 1u;
    optim_kernel<<<grid, OPT_THREADS, 0, impl->stream>>>(p, buf->params, buf->grads, buf->state, buf->t, ctx, ring,
                                                         impl->partials, impl->done + CT_CUDA_COUNTER_OPTIM, advance);
    CT_LAUNCH_CHECK("optim_kernel");
}

extern "C" void cuda_optimizer_step(ct_backend *b, const ct_optim_config *cfg, const ct_optim_buffers *buf,
                                    const ct_health_thresholds *th, const ct_step_ctx *ctx, ct_step_record *ring) {
    queue_optimizer(ct_cuda(b), cfg, buf, th, ctx, ring, NULL);
}

extern "C" void cuda_step_advance(ct_backend *b, ct_step_ctx *ctx) {
    step_advance_kernel<<<1, 1, 0, ct_cuda(b)->stream>>>(ctx);
    CT_LAUNCH_CHECK("step_advance_kernel");
}

/* One kernel where the backend was created with CUTRAIN_CUDA_STEP_FINISH=on
 * and both arenas are within its limits, else the statistics and the
 * optimizer with the advance folded into its last block: the same bits as
 * the three ops either way (step_finish_kernel.cuh, optim_kernel.cuh). */
extern "C" void cuda_step_finish(ct_backend *b, const ct_stats_args *a, const ct_optim_config *cfg,
                                 const ct_optim_buffers *buf, const ct_health_thresholds *th, ct_step_ctx *ctx,
                                 ct_step_record *ring) {
    ct_cuda_impl *impl = ct_cuda(b);
    if (!impl->fused_finish || a->n > FINISH_MAX_PARAMS || buf->n > FINISH_MAX_PARAMS) {
        cuda_step_stats(b, a, ctx, ring);
        queue_optimizer(impl, cfg, buf, th, ctx, ring, ctx);
        return;
    }
    stats_plan sp;
    if (!stats_make_plan(a, &sp))
        ct_cuda_fatal("block plan exceeds the partials buffer", "cuda_step_finish", __FILE__, __LINE__);
    const optim_plan op = optim_make_plan(cfg, th, buf->n);
    step_finish_kernel<<<1, FINISH_THREADS, 0, impl->stream>>>(a->grads, sp, a->row_loss, a->row_correct, a->rows,
                                                               a->th.exploding_grad_norm, op, buf->params,
                                                               buf->grads, buf->state, buf->t, ctx, ring);
    CT_LAUNCH_CHECK("step_finish_kernel");
}
