/* A dense network's training pass as one op, on the CPU: the reference for
 * every backend's fused version. It is the ops one by one, in the order and
 * with the arguments src/train/train.c and src/model/model.c give them for
 * dense layers:
 *
 *   gather    gather_batch into x and labels, when gather_order is set
 *   forward   y_i = x_i W_i^T (gemm, B transposed); bias_act_forward(act_i, b_i)
 *   loss      softmax_xent or mse_onehot on y_last, grad_scale (float)(1/rows),
 *             dL/dy_last into dy_last
 *   backward  for i = last .. 0: bias_act_backward (dy_i becomes dz_i, db_i),
 *             dW_i = dz_i^T x_i (gemm, A transposed), and for i > 0
 *             dy_{i-1} = dz_i W_i (gemm)
 *
 * so a model on the CPU gives the same bits through this op as through the
 * ops (tests/unit/test_dense_chain.cpp checks it). The plan accepts any
 * chain: nothing here depends on its size. */
#include <stdlib.h>

#include "kernels/cpu/cpu_ops.h"

/* A non-NULL handle with nothing behind it: the CPU plans nothing. */
static char cpu_chain_plan_token;

void *cpu_dense_chain_plan(ct_backend *b, const ct_dense_chain *c, int max_rows, ct_error *err) {
    (void)b, (void)err;
    if (c->n_layers < 1 || c->n_layers > CT_DENSE_CHAIN_MAX || max_rows < 1) return NULL;
    return &cpu_chain_plan_token;
}

void cpu_dense_chain_plan_free(ct_backend *b, void *plan) { (void)b, (void)plan; }

void cpu_dense_chain_train(ct_backend *b, void *plan, const ct_dense_chain *c, int rows) {
    (void)plan;
    const int L = c->n_layers;
    if (c->gather_order)
        cpu_gather_batch(b, &c->gather_ds, c->gather_order, c->gather_stride, c->gather_ctx, rows, c->x, c->labels);
    for (int i = 0; i < L; ++i) {
        const float *x = i ? c->y[i - 1] : c->x;
        cpu_gemm(b, 0, 1, rows, c->dim[i + 1], c->dim[i], 1.0f, x, c->dim[i], c->w[i], c->dim[i], 0.0f, c->y[i],
                 c->dim[i + 1]);
        cpu_bias_act_forward(b, c->act[i], rows, c->dim[i + 1], c->bias[i], c->y[i]);
    }
    const float scale = rows > 0 ? 1.0f / (float)rows : 0.0f;
    if (c->mse)
        cpu_mse_onehot(b, rows, c->dim[L], c->y[L - 1], c->labels, scale, c->dy[L - 1], c->row_loss, c->row_correct);
    else
        cpu_softmax_xent(b, rows, c->dim[L], c->y[L - 1], c->labels, scale, c->dy[L - 1], c->row_loss,
                         c->row_correct);
    for (int i = L - 1; i >= 0; --i) {
        const float *x = i ? c->y[i - 1] : c->x;
        const int in = c->dim[i], out = c->dim[i + 1];
        cpu_bias_act_backward(b, c->act[i], rows, out, c->y[i], c->dy[i], c->dbias[i]);
        cpu_gemm(b, 1, 0, out, in, rows, 1.0f, c->dy[i], out, x, in, 0.0f, c->dw[i], in);
        if (i > 0) cpu_gemm(b, 0, 0, rows, in, out, 1.0f, c->dy[i], out, c->w[i], in, 0.0f, c->dy[i - 1], in);
    }
}
