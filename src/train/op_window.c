/* The op window of op_window.h: every entry forwards to the inner backend;
 * the compute ops first count and name themselves and pass only while the
 * step is under its limit. */
#include "src/train/op_window.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "cutrain/optim.h"

static ct_op_window *win(ct_backend *b) { return (ct_op_window *)b->impl; }
static ct_backend *in(ct_backend *b) { return win(b)->inner; }
static const ct_backend_ops *in_ops(ct_backend *b) { return win(b)->inner->ops; }

static void step_begins(ct_backend *b) { win(b)->count = 0; }

/* Counts and names the op; returns its index in the step. */
static int name_op(ct_op_window *w, const char *fmt, va_list ap) {
    const int i = w->count++;
    if (i < CT_OP_WINDOW_MAX_OPS) vsnprintf(w->labels[i], sizeof w->labels[i], fmt, ap);
    return i;
}

/* Counts and names the op; 1 when it is within this step's limit. */
static int admit(ct_backend *b, const char *fmt, ...) {
    ct_op_window *w = win(b);
    va_list ap;
    va_start(ap, fmt);
    const int i = name_op(w, fmt, ap);
    va_end(ap);
    if (w->limit >= 0 && i >= w->limit) {
        w->dropped++;
        return 0;
    }
    return 1;
}

/* Counts and names an op that always runs. */
static void count_op(ct_backend *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    (void)name_op(win(b), fmt, ap);
    va_end(ap);
}

static char tr(int t) { return t ? 'T' : 'N'; }

/* --- always passed -------------------------------------------------------- */

static void *w_alloc(ct_backend *b, size_t bytes, ct_error *err) { return in_ops(b)->alloc(in(b), bytes, err); }
static void w_free(ct_backend *b, void *p) { in_ops(b)->free(in(b), p); }
static void w_upload(ct_backend *b, void *dst, const void *src, size_t bytes) {
    in_ops(b)->upload(in(b), dst, src, bytes);
}
static void w_download(ct_backend *b, void *dst, const void *src, size_t bytes) {
    in_ops(b)->download(in(b), dst, src, bytes);
}
static void w_zero(ct_backend *b, void *dst, size_t bytes) { in_ops(b)->zero(in(b), dst, bytes); }
static void w_sync(ct_backend *b) { in_ops(b)->sync(in(b)); }
static void *w_host_alloc(ct_backend *b, size_t bytes, ct_error *err) {
    return in_ops(b)->host_alloc(in(b), bytes, err);
}
static void w_host_free(ct_backend *b, void *p) { in_ops(b)->host_free(in(b), p); }
static void w_download_async(ct_backend *b, void *dst, const void *src, size_t bytes) {
    in_ops(b)->download_async(in(b), dst, src, bytes);
}
static void w_fence(ct_backend *b, int id) { in_ops(b)->fence(in(b), id); }
static void w_fence_wait(ct_backend *b, int id) { in_ops(b)->fence_wait(in(b), id); }
static int w_capture_begin(ct_backend *b, ct_error *err) {
    step_begins(b);
    return in_ops(b)->capture_begin(in(b), err);
}
static void *w_capture_end(ct_backend *b, ct_error *err) { return in_ops(b)->capture_end(in(b), err); }
static void w_graph_launch(ct_backend *b, void *g) { in_ops(b)->graph_launch(in(b), g); }
static void w_graph_destroy(ct_backend *b, void *g) { in_ops(b)->graph_destroy(in(b), g); }
static void *w_conv_plan(ct_backend *b, const ct_conv_shape *s, int det, size_t *ws, ct_error *err) {
    return in_ops(b)->conv_plan(in(b), s, det, ws, err);
}
static void w_conv_plan_free(ct_backend *b, void *plan) { in_ops(b)->conv_plan_free(in(b), plan); }
static void *w_dense_chain_plan(ct_backend *b, const ct_dense_chain *c, int max_rows, ct_error *err) {
    return in_ops(b)->dense_chain_plan(in(b), c, max_rows, err);
}
static void w_dense_chain_plan_free(ct_backend *b, void *plan) { in_ops(b)->dense_chain_plan_free(in(b), plan); }

/* --- counted and cut ------------------------------------------------------ */

static void w_gemm(ct_backend *b, int ta, int tb, int m, int n, int k, float alpha, const float *A, int lda,
                   const float *B, int ldb, float beta, float *C, int ldc) {
    if (admit(b, "gemm %c%c %dx%dx%d", tr(ta), tr(tb), m, n, k))
        in_ops(b)->gemm(in(b), ta, tb, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc);
}
static void w_bias_act_forward(ct_backend *b, ct_activation act, int rows, int cols, const float *bias, float *y) {
    if (admit(b, "bias_act_forward %s %dx%d%s", ct_activation_name(act), rows, cols, bias ? "" : " (no bias)"))
        in_ops(b)->bias_act_forward(in(b), act, rows, cols, bias, y);
}
static void w_bias_act_backward(ct_backend *b, ct_activation act, int rows, int cols, const float *y, float *dy,
                                float *dbias) {
    if (admit(b, "bias_act_backward %s %dx%d%s", ct_activation_name(act), rows, cols, dbias ? " + dbias" : ""))
        in_ops(b)->bias_act_backward(in(b), act, rows, cols, y, dy, dbias);
}
static void w_conv2d_forward(ct_backend *b, void *plan, const ct_conv_shape *s, const float *x, const float *w,
                             const float *bias, float *y, void *ws) {
    if (admit(b, "conv2d_forward %dx%dx%dx%d * %dx%dx%dx%d", s->n, s->c, s->h, s->w, s->k, s->c, s->r, s->s))
        in_ops(b)->conv2d_forward(in(b), plan, s, x, w, bias, y, ws);
}
static void w_conv2d_backward(ct_backend *b, void *plan, const ct_conv_shape *s, const float *x, const float *w,
                              const float *dy, float *dx, float *dw, float *dbias, void *ws) {
    if (admit(b, "conv2d_backward %dx%dx%dx%d * %dx%dx%dx%d%s", s->n, s->c, s->h, s->w, s->k, s->c, s->r, s->s,
              dx ? "" : " (no dx)"))
        in_ops(b)->conv2d_backward(in(b), plan, s, x, w, dy, dx, dw, dbias, ws);
}
static void w_maxpool_forward(ct_backend *b, int n, int c, int h, int w, int size, const float *x, float *y) {
    if (admit(b, "maxpool_forward %dx%dx%dx%d /%d", n, c, h, w, size))
        in_ops(b)->maxpool_forward(in(b), n, c, h, w, size, x, y);
}
static void w_maxpool_backward(ct_backend *b, int n, int c, int h, int w, int size, const float *x, const float *y,
                               const float *dy, float *dx) {
    if (admit(b, "maxpool_backward %dx%dx%dx%d /%d", n, c, h, w, size))
        in_ops(b)->maxpool_backward(in(b), n, c, h, w, size, x, y, dy, dx);
}
static void w_dense_chain_train(ct_backend *b, void *plan, const ct_dense_chain *c, int rows) {
    if (c->gather_order) step_begins(b);
    char dims[CT_OP_WINDOW_LABEL] = "";
    int used = 0;
    for (int i = 0; i <= c->n_layers && used < (int)sizeof dims; ++i)
        used += snprintf(dims + used, sizeof dims - (size_t)used, i ? "-%d" : "%d", c->dim[i]);
    if (admit(b, "dense_chain_train %d rows %s%s", rows, dims, c->gather_order ? " + gather" : ""))
        in_ops(b)->dense_chain_train(in(b), plan, c, rows);
}
static void w_softmax_xent(ct_backend *b, int rows, int classes, const float *logits, const int32_t *labels,
                           float scale, float *dlogits, float *row_loss, float *row_correct) {
    if (admit(b, "softmax_xent %dx%d", rows, classes))
        in_ops(b)->softmax_xent(in(b), rows, classes, logits, labels, scale, dlogits, row_loss, row_correct);
}
static void w_mse_onehot(ct_backend *b, int rows, int classes, const float *pred, const int32_t *labels,
                         float scale, float *dpred, float *row_loss, float *row_correct) {
    if (admit(b, "mse_onehot %dx%d", rows, classes))
        in_ops(b)->mse_onehot(in(b), rows, classes, pred, labels, scale, dpred, row_loss, row_correct);
}
static void w_loss_accumulate(ct_backend *b, int rows, const float *row_loss, const float *row_correct,
                              double *acc) {
    if (admit(b, "loss_accumulate %d", rows)) in_ops(b)->loss_accumulate(in(b), rows, row_loss, row_correct, acc);
}
static void w_dropout_forward(ct_backend *b, size_t n, float rate, uint64_t seed, uint32_t layer,
                              const ct_step_ctx *ctx, const float *x, float *y) {
    if (admit(b, "dropout_forward %zu rate %g", n, (double)rate))
        in_ops(b)->dropout_forward(in(b), n, rate, seed, layer, ctx, x, y);
}
static void w_dropout_backward(ct_backend *b, size_t n, float rate, uint64_t seed, uint32_t layer,
                               const ct_step_ctx *ctx, const float *dy, float *dx) {
    if (admit(b, "dropout_backward %zu rate %g", n, (double)rate))
        in_ops(b)->dropout_backward(in(b), n, rate, seed, layer, ctx, dy, dx);
}
static void w_gather_batch(ct_backend *b, const ct_device_dataset *ds, const int32_t *order, size_t stride,
                           const ct_step_ctx *ctx, int rows, float *x, int32_t *labels) {
    step_begins(b);
    if (admit(b, "gather_batch %dx%zu", rows, ds->sample_elems))
        in_ops(b)->gather_batch(in(b), ds, order, stride, ctx, rows, x, labels);
}
static void w_step_stats(ct_backend *b, const ct_stats_args *a, const ct_step_ctx *ctx, ct_step_record *ring) {
    if (admit(b, "step_stats %zu params", a->n)) in_ops(b)->step_stats(in(b), a, ctx, ring);
}
static void w_optimizer_step(ct_backend *b, const ct_optim_config *cfg, const ct_optim_buffers *buf,
                             const ct_health_thresholds *th, const ct_step_ctx *ctx, ct_step_record *ring) {
    if (admit(b, "optimizer_step %s %zu params", ct_optim_kind_name(cfg->kind), buf->n))
        in_ops(b)->optimizer_step(in(b), cfg, buf, th, ctx, ring);
}
/* The step advance is never cut, and a cut step_finish still advances: a
 * cut step must go on to the next batch, or every step would gather the
 * same rows from cache and the ops before the cut would look cheaper than
 * they are in a whole step. */
static void w_step_advance(ct_backend *b, ct_step_ctx *ctx) {
    count_op(b, "step_advance");
    in_ops(b)->step_advance(in(b), ctx);
}
static void w_step_finish(ct_backend *b, const ct_stats_args *a, const ct_optim_config *cfg,
                          const ct_optim_buffers *buf, const ct_health_thresholds *th, ct_step_ctx *ctx,
                          ct_step_record *ring) {
    if (admit(b, "step_finish %s %zu params", ct_optim_kind_name(cfg->kind), buf->n))
        in_ops(b)->step_finish(in(b), a, cfg, buf, th, ctx, ring);
    else
        in_ops(b)->step_advance(in(b), ctx);
}

/* An entry the inner backend lacks stays NULL, so callers see the same table. */
#define MIRROR(name, fn) w->ops.name = i->name ? fn : NULL

void ct_op_window_init(ct_op_window *w, ct_backend *inner) {
    const ct_backend_ops *i = inner->ops;
    memset(&w->ops, 0, sizeof w->ops);
    w->inner = inner;
    w->ops.destroy = NULL; /* the window owns nothing */
    MIRROR(alloc, w_alloc);
    MIRROR(free, w_free);
    MIRROR(upload, w_upload);
    MIRROR(download, w_download);
    MIRROR(zero, w_zero);
    MIRROR(sync, w_sync);
    MIRROR(host_alloc, w_host_alloc);
    MIRROR(host_free, w_host_free);
    MIRROR(download_async, w_download_async);
    MIRROR(fence, w_fence);
    MIRROR(fence_wait, w_fence_wait);
    MIRROR(capture_begin, w_capture_begin);
    MIRROR(capture_end, w_capture_end);
    MIRROR(graph_launch, w_graph_launch);
    MIRROR(graph_destroy, w_graph_destroy);
    MIRROR(gemm, w_gemm);
    MIRROR(bias_act_forward, w_bias_act_forward);
    MIRROR(bias_act_backward, w_bias_act_backward);
    MIRROR(conv_plan, w_conv_plan);
    MIRROR(conv_plan_free, w_conv_plan_free);
    MIRROR(conv2d_forward, w_conv2d_forward);
    MIRROR(conv2d_backward, w_conv2d_backward);
    MIRROR(maxpool_forward, w_maxpool_forward);
    MIRROR(maxpool_backward, w_maxpool_backward);
    MIRROR(dense_chain_plan, w_dense_chain_plan);
    MIRROR(dense_chain_plan_free, w_dense_chain_plan_free);
    MIRROR(dense_chain_train, w_dense_chain_train);
    MIRROR(softmax_xent, w_softmax_xent);
    MIRROR(mse_onehot, w_mse_onehot);
    MIRROR(loss_accumulate, w_loss_accumulate);
    MIRROR(dropout_forward, w_dropout_forward);
    MIRROR(dropout_backward, w_dropout_backward);
    MIRROR(gather_batch, w_gather_batch);
    MIRROR(step_stats, w_step_stats);
    MIRROR(optimizer_step, w_optimizer_step);
    MIRROR(step_advance, w_step_advance);
    MIRROR(step_finish, w_step_finish);
    w->outer = *inner;
    w->outer.ops = &w->ops;
    w->outer.impl = w;
    ct_op_window_reset(w, -1);
}

void ct_op_window_reset(ct_op_window *w, int limit) {
    w->limit = limit;
    w->count = 0;
    w->dropped = 0;
}
