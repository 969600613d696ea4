/* Building a model: plan every buffer once, then run forward, loss and
 * backward through the backend table.
 *
 * Dense layer, row-major with W [out, in]:
 *   forward   Z = X W^T (gemm, B transposed), Y = act(Z + b)
 *   backward  dZ = dY * act'(Y)         (bias_act_backward, also db = sum_r dZ)
 *             dW = dZ^T X               (gemm, A transposed)
 *             dX = dZ W                 (gemm), skipped for the first layer
 * A softmax output trained with cross-entropy is fused: the layer applies no
 * activation and the loss kernel turns logits into (softmax - onehot) / N,
 * which is both cheaper and stable for logits of any size.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cutrain/model.h"
#include "cutrain/rng.h"

static size_t align_floats(size_t n) { return (n + 15) & ~(size_t)15; } /* 64 bytes */

/* Host-side initial weights; counter-based, so each weight depends only on
 * (seed, layer, index) and not on the order or the backend. */
/* Weight count of a parametric layer, and its fans as Keras counts them
 * (a conv's receptive field times its channels). */
static size_t weight_count(const ct_layer *l, double *fan_in, double *fan_out) {
    if (l->spec.kind == CT_LAYER_CONV2D) {
        double field = (double)l->spec.kh * l->spec.kw;
        *fan_in = l->in_c * field;
        *fan_out = l->out_c * field;
        return (size_t)l->out_c * (size_t)l->in_c * (size_t)l->spec.kh * (size_t)l->spec.kw;
    }
    *fan_in = l->in_dim;
    *fan_out = l->out_dim;
    return (size_t)l->out_dim * (size_t)l->in_dim;
}

static void init_layer(const ct_model *m, const ct_layer *l, uint64_t seed, float *host) {
    float *w = host + l->w_off, *b = host + l->b_off;
    uint64_t stream = CT_STREAM_INIT(l->param_index);
    double fan_in, fan_out;
    size_t nw = weight_count(l, &fan_in, &fan_out);
    switch (m->spec.init) {
    case CT_INIT_HE_NORMAL: {
        double sd = sqrt(2.0 / fan_in);
        for (size_t i = 0; i < nw; ++i) {
            /* Box-Muller on two counter draws; u1 kept away from 0. */
            double u1 = (ct_rng_uniform(seed, stream, 2 * i) + 0x1p-25);
            double u2 = ct_rng_uniform(seed, stream, 2 * i + 1);
            w[i] = (float)(sd * sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
        }
        break;
    }
    case CT_INIT_HE_UNIFORM:
    case CT_INIT_GLOROT_UNIFORM: {
        double limit = m->spec.init == CT_INIT_HE_UNIFORM ? sqrt(6.0 / fan_in) : sqrt(6.0 / (fan_in + fan_out));
        for (size_t i = 0; i < nw; ++i)
            w[i] = (float)((2.0 * ct_rng_uniform(seed, stream, i) - 1.0) * limit);
        break;
    }
    }
    memset(b, 0, sizeof(float) * (size_t)l->out_c);
}

/* Output shape of each layer (the spec was validated, so every shape fits). */
static void layer_shape(ct_layer *l) {
    const ct_layer_spec *sp = &l->spec;
    l->out_c = l->in_c, l->out_h = l->in_h, l->out_w = l->in_w;
    switch (sp->kind) {
    case CT_LAYER_DENSE:
        l->out_c = sp->units, l->out_h = l->out_w = 1;
        break;
    case CT_LAYER_CONV2D:
        l->out_c = sp->units;
        l->out_h = (l->in_h + 2 * sp->pad - sp->kh) / sp->stride + 1;
        l->out_w = (l->in_w + 2 * sp->pad - sp->kw) / sp->stride + 1;
        break;
    case CT_LAYER_MAXPOOL2D:
        l->out_h = l->in_h / sp->kh, l->out_w = l->in_w / sp->kh;
        break;
    case CT_LAYER_FLATTEN:
        l->out_c = l->in_c * l->in_h * l->in_w, l->out_h = l->out_w = 1;
        break;
    case CT_LAYER_DROPOUT:
        break;
    }
    l->in_dim = l->in_c * l->in_h * l->in_w;
    l->out_dim = l->out_c * l->out_h * l->out_w;
}

static void plan_layers(ct_model *m) {
    int c, h, w;
    ct_model_spec_input_shape(&m->spec, &c, &h, &w);
    size_t off = 0;
    m->n_layers = m->spec.n_layers;
    m->n_param_layers = 0;
    for (int i = 0; i < m->n_layers; ++i) {
        ct_layer *l = &m->layers[i];
        memset(l, 0, sizeof *l);
        l->spec = m->spec.layers[i];
        l->in_c = c, l->in_h = h, l->in_w = w;
        l->param_index = -1;
        layer_shape(l);
        if (l->spec.kind == CT_LAYER_DENSE || l->spec.kind == CT_LAYER_CONV2D) {
            double fi, fo;
            l->act_fwd = l->spec.act;
            l->param_index = m->n_param_layers;
            m->param_layer[m->n_param_layers] = i;
            m->param_begin[m->n_param_layers++] = off;
            l->w_off = off;
            l->b_off = off + weight_count(l, &fi, &fo);
            off = l->b_off + (size_t)l->out_c;
        }
        c = l->out_c, h = l->out_h, w = l->out_w;
    }
    m->param_begin[m->n_param_layers] = off;
    m->n_params = off;
    m->classes = c;
    ct_layer *last = &m->layers[m->n_layers - 1];
    /* A softmax output's softmax lives in the loss. Cross-entropy on another
     * output (a warning at build) takes that output as logits. */
    m->fused_softmax_xent = m->spec.loss == CT_LOSS_XENT && last->spec.act == CT_ACT_SOFTMAX;
    if (m->fused_softmax_xent) last->act_fwd = CT_ACT_LINEAR;
}

static void *take(ct_model *m, size_t bytes, ct_error *err) {
    void *p = m->be->ops->alloc(m->be, bytes, err);
    if (p) {
        m->device_bytes += bytes;
    } else if (err) { /* say whose memory it was: the model (file) and its batch */
        char why[sizeof err->msg];
        snprintf(why, sizeof why, "%s", err->msg);
        ct_fail(err, err->code, "%s: %s (building the model for %d rows at a time)", m->spec.name, why, m->max_rows);
    }
    return p;
}

static ct_conv_shape conv_shape(const ct_layer *l, int rows) {
    ct_conv_shape sh = {rows,        l->in_c,     l->in_h,        l->in_w,      l->out_c,     l->spec.kh,
                        l->spec.kw,  l->spec.stride, l->spec.pad, l->out_h,     l->out_w};
    return sh;
}

/* Each convolution's algorithm is chosen once, here, for the largest batch;
 * one workspace serves them all, since layers run one after another. */
static int plan_convolutions(ct_model *m, ct_error *err) {
    size_t most = 0;
    for (int i = 0; i < m->n_layers; ++i) {
        ct_layer *l = &m->layers[i];
        if (l->spec.kind != CT_LAYER_CONV2D) continue;
        ct_conv_shape sh = conv_shape(l, m->max_rows);
        size_t bytes = 0;
        if (!(l->conv_plan = m->be->ops->conv_plan(m->be, &sh, 1, &bytes, err))) return -1;
        if (bytes > most) most = bytes;
    }
    if (most && !(m->workspace = take(m, most, err))) return -1;
    m->workspace_bytes = most;
    return 0;
}

/* A model of dense layers (and flatten views) without dropout is a chain
 * the backend may run as one op; anything else, or a backend without the
 * op, keeps the ops one by one. Called once the buffers are placed. */
static int plan_dense_chain(ct_model *m, ct_error *err) {
    const ct_backend_ops *o = m->be->ops;
    if (!o->dense_chain_plan || !o->dense_chain_train) return 0;
    ct_dense_chain c;
    memset(&c, 0, sizeof c);
    for (int i = 0; i < m->n_layers; ++i) {
        const ct_layer *l = &m->layers[i];
        if (l->spec.kind == CT_LAYER_FLATTEN) continue;
        if (l->spec.kind != CT_LAYER_DENSE || c.n_layers == CT_DENSE_CHAIN_MAX) return 0;
        const int k = c.n_layers++;
        if (k == 0) c.dim[0] = l->in_dim;
        c.dim[k + 1] = l->out_dim;
        c.act[k] = l->act_fwd;
        c.w[k] = m->params + l->w_off;
        c.bias[k] = m->params + l->b_off;
        c.dw[k] = m->grads + l->w_off;
        c.dbias[k] = m->grads + l->b_off;
        c.y[k] = l->y;
        c.dy[k] = l->dy;
    }
    if (c.n_layers == 0) return 0;
    c.mse = m->spec.loss == CT_LOSS_MSE;
    c.x = m->x;
    c.labels = m->labels;
    c.row_loss = m->row_loss;
    c.row_correct = m->row_correct;
    ct_error e;
    ct_error_clear(&e);
    m->chain_plan = o->dense_chain_plan(m->be, &c, m->max_rows, &e);
    if (!m->chain_plan && e.code) {
        *err = e;
        return -1;
    }
    m->chain = c;
    return 0;
}

int ct_model_build(ct_model *m, const ct_model_spec *spec, ct_backend *be, int max_rows, uint64_t seed,
                   ct_error *err) {
    memset(m, 0, sizeof *m);
    if (!spec || !be) return ct_fail(err, CT_EXIT_USAGE, "model: the %s is NULL", spec ? "backend" : "spec");
    if (ct_model_spec_validate(spec, err)) return -1;
    if (max_rows <= 0) return ct_fail(err, CT_EXIT_USAGE, "model: batch rows must be positive (got %d)", max_rows);
    m->spec = *spec;
    m->be = be;
    m->max_rows = max_rows;
    plan_layers(m);

    size_t act_floats = 0;
    for (int i = 0; i < m->n_layers; ++i)
        if (m->layers[i].spec.kind != CT_LAYER_FLATTEN)
            act_floats += 2 * align_floats((size_t)max_rows * m->layers[i].out_dim);
    int slots = ct_optim_state_slots(&spec->optim);
    size_t rows = (size_t)max_rows;

    if (!(m->params = take(m, m->n_params * sizeof(float), err)) ||
        !(m->grads = take(m, m->n_params * sizeof(float), err)) ||
        (slots && !(m->opt_state = take(m, (size_t)slots * m->n_params * sizeof(float), err))) ||
        !(m->opt_t = take(m, sizeof(uint64_t), err)) ||
        !(m->activations = take(m, act_floats * sizeof(float), err)) ||
        !(m->x = take(m, rows * (size_t)spec->input_dim * sizeof(float), err)) ||
        !(m->labels = take(m, rows * sizeof(int32_t), err)) ||
        !(m->row_loss = take(m, rows * sizeof(float), err)) ||
        !(m->row_correct = take(m, rows * sizeof(float), err)) ||
        !(m->eval_acc = take(m, 2 * sizeof(double), err)) ||
        !(m->ctx = take(m, sizeof(ct_step_ctx), err)) || !(m->eval_ctx = take(m, sizeof(ct_step_ctx), err)) ||
        plan_convolutions(m, err)) {
        ct_model_free(m);
        return -1;
    }
    float *cursor = m->activations;
    for (int i = 0; i < m->n_layers; ++i) {
        ct_layer *l = &m->layers[i];
        if (l->spec.kind == CT_LAYER_FLATTEN) {
            /* NCHW rows are already flat: the layer is a view of its input. */
            l->y = i ? m->layers[i - 1].y : m->x;
            l->dy = i ? m->layers[i - 1].dy : NULL;
            continue;
        }
        size_t n = align_floats(rows * l->out_dim);
        l->y = cursor;
        l->dy = cursor + n;
        cursor += 2 * n;
    }
    if (plan_dense_chain(m, err)) {
        ct_model_free(m);
        return -1;
    }
    const ct_backend_ops *o = be->ops;
    o->zero(be, m->grads, m->n_params * sizeof(float));
    if (slots) o->zero(be, m->opt_state, (size_t)slots * m->n_params * sizeof(float));
    o->zero(be, m->opt_t, sizeof(uint64_t));
    o->zero(be, m->activations, act_floats * sizeof(float));

    float *host = malloc(m->n_params * sizeof(float));
    if (!host) {
        ct_model_free(m);
        return ct_fail(err, CT_EXIT_FAILURE, "model: out of host memory for %zu parameters", m->n_params);
    }
    for (int i = 0; i < m->n_layers; ++i)
        if (m->layers[i].param_index >= 0) init_layer(m, &m->layers[i], seed, host);
    ct_model_set_params(m, host);
    free(host);
    return 0;
}

void ct_model_free(ct_model *m) {
    if (!m->be) return;
    for (int i = 0; i < m->n_layers; ++i)
        if (m->layers[i].conv_plan) m->be->ops->conv_plan_free(m->be, m->layers[i].conv_plan);
    if (m->workspace) m->be->ops->free(m->be, m->workspace);
    if (m->chain_plan) m->be->ops->dense_chain_plan_free(m->be, m->chain_plan);
    void *bufs[] = {m->params, m->grads, m->opt_state, m->opt_t, m->activations, m->x,
                    m->labels, m->row_loss, m->row_correct, m->eval_acc, m->ctx, m->eval_ctx};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; ++i)
        if (bufs[i]) m->be->ops->free(m->be, bufs[i]);
    memset(m, 0, sizeof *m);
}

static const float *layer_input(const ct_model *m, int i) { return i == 0 ? m->x : m->layers[i - 1].y; }

void ct_model_forward(ct_model *m, int rows, int train, uint64_t seed, const ct_step_ctx *ctx) {
    ct_backend *be = m->be;
    const ct_backend_ops *o = be->ops;
    for (int i = 0; i < m->n_layers; ++i) {
        ct_layer *l = &m->layers[i];
        const float *x = layer_input(m, i);
        switch (l->spec.kind) {
        case CT_LAYER_DENSE:
            o->gemm(be, 0, 1, rows, l->out_dim, l->in_dim, 1.0f, x, l->in_dim, m->params + l->w_off, l->in_dim,
                    0.0f, l->y, l->out_dim);
            o->bias_act_forward(be, l->act_fwd, rows, l->out_dim, m->params + l->b_off, l->y);
            break;
        case CT_LAYER_CONV2D: {
            ct_conv_shape sh = conv_shape(l, rows);
            o->conv2d_forward(be, l->conv_plan, &sh, x, m->params + l->w_off, m->params + l->b_off, l->y,
                              m->workspace);
            if (l->act_fwd != CT_ACT_LINEAR) o->bias_act_forward(be, l->act_fwd, rows, l->out_dim, NULL, l->y);
            break;
        }
        case CT_LAYER_MAXPOOL2D:
            o->maxpool_forward(be, rows, l->in_c, l->in_h, l->in_w, l->spec.kh, x, l->y);
            break;
        case CT_LAYER_FLATTEN:
            break; /* a view */
        case CT_LAYER_DROPOUT: {
            float rate = train ? l->spec.rate : 0.0f; /* eval: identity */
            o->dropout_forward(be, (size_t)rows * l->out_dim, rate, seed, (uint32_t)i, ctx, x, l->y);
            break;
        }
        }
    }
}

void ct_model_loss(ct_model *m, int rows, int grad) {
    ct_layer *last = &m->layers[m->n_layers - 1];
    float scale = rows > 0 ? 1.0f / (float)rows : 0.0f;
    float *d = grad ? last->dy : NULL;
    if (m->spec.loss == CT_LOSS_XENT)
        m->be->ops->softmax_xent(m->be, rows, m->classes, last->y, m->labels, scale, d, m->row_loss, m->row_correct);
    else
        m->be->ops->mse_onehot(m->be, rows, m->classes, last->y, m->labels, scale, d, m->row_loss, m->row_correct);
}

void ct_model_backward(ct_model *m, int rows, uint64_t seed, const ct_step_ctx *ctx) {
    ct_backend *be = m->be;
    const ct_backend_ops *o = be->ops;
    for (int i = m->n_layers - 1; i >= 0; --i) {
        ct_layer *l = &m->layers[i];
        const float *x = layer_input(m, i);
        float *dx = i > 0 ? m->layers[i - 1].dy : NULL;
        switch (l->spec.kind) {
        case CT_LAYER_DENSE:
            o->bias_act_backward(be, l->act_fwd, rows, l->out_dim, l->y, l->dy, m->grads + l->b_off);
            o->gemm(be, 1, 0, l->out_dim, l->in_dim, rows, 1.0f, l->dy, l->out_dim, x, l->in_dim, 0.0f,
                    m->grads + l->w_off, l->in_dim);
            if (dx)
                o->gemm(be, 0, 0, rows, l->in_dim, l->out_dim, 1.0f, l->dy, l->out_dim, m->params + l->w_off,
                        l->in_dim, 0.0f, dx, l->in_dim);
            break;
        case CT_LAYER_CONV2D: {
            if (l->act_fwd != CT_ACT_LINEAR) o->bias_act_backward(be, l->act_fwd, rows, l->out_dim, l->y, l->dy, NULL);
            ct_conv_shape sh = conv_shape(l, rows);
            o->conv2d_backward(be, l->conv_plan, &sh, x, m->params + l->w_off, l->dy, dx, m->grads + l->w_off,
                               m->grads + l->b_off, m->workspace);
            break;
        }
        case CT_LAYER_MAXPOOL2D:
            if (dx) o->maxpool_backward(be, rows, l->in_c, l->in_h, l->in_w, l->spec.kh, x, l->y, l->dy, dx);
            break;
        case CT_LAYER_FLATTEN:
            break; /* its dy is its input's dy */
        case CT_LAYER_DROPOUT:
            if (dx) o->dropout_backward(be, (size_t)rows * l->out_dim, l->spec.rate, seed, (uint32_t)i, ctx, l->dy, dx);
            break;
        }
    }
}

void ct_model_train_pass(ct_model *m, const ct_device_dataset *ds, const int32_t *order, size_t stride, int rows,
                         uint64_t seed, const ct_step_ctx *ctx) {
    const ct_backend_ops *o = m->be->ops;
    if (m->chain_plan && rows > 0 && (!ds || ds->sample_elems == (size_t)m->chain.dim[0])) {
        ct_dense_chain c = m->chain; /* the op reads it when called: a copy on the stack will do */
        if (ds) {
            c.gather_ds = *ds;
            c.gather_order = order;
            c.gather_stride = stride;
            c.gather_ctx = ctx;
        }
        o->dense_chain_train(m->be, m->chain_plan, &c, rows);
        return;
    }
    if (ds && rows > 0) o->gather_batch(m->be, ds, order, stride, ctx, rows, m->x, m->labels);
    ct_model_forward(m, rows, 1, seed, ctx);
    ct_model_loss(m, rows, 1);
    ct_model_backward(m, rows, seed, ctx);
}

void ct_model_get_params(ct_model *m, float *host) {
    m->be->ops->download(m->be, host, m->params, m->n_params * sizeof(float));
}

void ct_model_set_params(ct_model *m, const float *host) {
    m->be->ops->upload(m->be, m->params, host, m->n_params * sizeof(float));
}
