/* Model descriptions: the presets, naming, validation and a one-line summary. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "cutrain/model.h"

static ct_layer_spec *add(ct_model_spec *s, ct_layer_kind kind) {
    ct_layer_spec *l = &s->layers[s->n_layers++];
    memset(l, 0, sizeof *l);
    l->kind = kind;
    return l;
}

static void add_dense(ct_model_spec *s, int units, ct_activation act) {
    ct_layer_spec *l = add(s, CT_LAYER_DENSE);
    l->units = units;
    l->act = act;
}

static void add_conv(ct_model_spec *s, int filters, int kernel, ct_activation act) {
    ct_layer_spec *l = add(s, CT_LAYER_CONV2D);
    l->units = filters;
    l->kh = l->kw = kernel;
    l->stride = 1;
    l->act = act;
}

/* PyTorch's MNIST example network (also Keras's MNIST convnet). The recipe
 * (Adam with a one-cycle schedule) is in docs/decisions.md. */
static void cnn_preset(ct_model_spec *s) {
    s->input_c = 1;
    s->input_h = s->input_w = 28;
    add_conv(s, 32, 3, CT_ACT_RELU);
    add_conv(s, 64, 3, CT_ACT_RELU);
    add(s, CT_LAYER_MAXPOOL2D)->kh = 2;
    s->layers[s->n_layers - 1].kw = 2;
    add(s, CT_LAYER_DROPOUT)->rate = 0.25f;
    add(s, CT_LAYER_FLATTEN);
    add_dense(s, 128, CT_ACT_RELU);
    add(s, CT_LAYER_DROPOUT)->rate = 0.5f;
    add_dense(s, 10, CT_ACT_SOFTMAX);
    s->batch_size = 64;
    /* One-cycle Adam peaking at 3e-3 (docs/decisions.md has the runs that
     * chose it over the study's lr 0.01 with betas 0.7/0.9). */
    s->optim.lr = 3e-3f;
    s->optim.schedule = ct_schedule_defaults(CT_SCHED_ONECYCLE);
}

int ct_model_spec_preset(const char *name, ct_model_spec *out) {
    ct_model_spec s;
    memset(&s, 0, sizeof s);
    s.input_dim = 784;
    s.input_c = 784;
    s.input_h = s.input_w = 1;
    s.loss = CT_LOSS_XENT;
    s.init = CT_INIT_GLOROT_UNIFORM;
    s.optim = ct_optim_defaults(CT_OPT_ADAM);
    if (strcmp(name, "seed") == 0) {
        /* The Keras tutorial model that met "Empty logs": tiny on purpose. */
        add_dense(&s, 10, CT_ACT_RELU);
        add_dense(&s, 10, CT_ACT_SOFTMAX);
        s.batch_size = 32;
    } else if (strcmp(name, "mlp") == 0) {
        add_dense(&s, 512, CT_ACT_RELU);
        add_dense(&s, 512, CT_ACT_RELU);
        add_dense(&s, 10, CT_ACT_SOFTMAX);
        s.batch_size = 128;
    } else if (strcmp(name, "cnn") == 0) {
        cnn_preset(&s);
    } else {
        return -1;
    }
    snprintf(s.name, sizeof s.name, "%s", name);
    ct_model_spec_name_layers(&s);
    *out = s;
    return 0;
}

int ct_model_spec_resolve(const char *what, ct_model_spec *out, ct_error *err) {
    if (ct_model_spec_preset(what, out) == 0) return 0;
    return ct_model_spec_parse_file(what, out, err);
}

static const char *const kind_prefix[] = {"dense", "dropout", "conv", "pool", "flatten"};

void ct_model_spec_name_layers(ct_model_spec *s) {
    int count[5] = {0};
    for (int i = 0; i < s->n_layers; ++i) {
        ct_layer_spec *l = &s->layers[i];
        int k = ++count[l->kind];
        if (l->name[0]) continue;
        snprintf(l->name, sizeof l->name, "%s%d", kind_prefix[l->kind], k);
    }
}

static int is_param_layer(const ct_layer_spec *l) { return l->kind == CT_LAYER_DENSE || l->kind == CT_LAYER_CONV2D; }

/* Walks the shapes layer by layer; fails on a layer that does not fit its input. */
static int check_shapes(const ct_model_spec *s, ct_error *err) {
    const char *who = s->name;
    int c, h, w;
    ct_model_spec_input_shape(s, &c, &h, &w);
    for (int i = 0; i < s->n_layers; ++i) {
        const ct_layer_spec *l = &s->layers[i];
        int spatial = h > 1 || w > 1;
        switch (l->kind) {
        case CT_LAYER_DENSE:
            if (spatial)
                return ct_fail(err, CT_EXIT_BAD_INPUT, "%s: layer %s: dense needs a flat input, but gets %dx%dx%d; "
                                                       "add a flatten layer before it", who, l->name, c, h, w);
            c = l->units;
            break;
        case CT_LAYER_CONV2D: {
            if (!spatial)
                return ct_fail(err, CT_EXIT_BAD_INPUT, "%s: layer %s: conv2d needs a C x H x W input (e.g. 'input 1 28 28')",
                               who, l->name);
            if (l->kh <= 0 || l->kw <= 0 || l->stride <= 0 || l->pad < 0)
                return ct_fail(err, CT_EXIT_BAD_INPUT, "%s: layer %s: kernel, stride and padding must be positive",
                               who, l->name);
            int oh = (h + 2 * l->pad - l->kh) / l->stride + 1, ow = (w + 2 * l->pad - l->kw) / l->stride + 1;
            if (h + 2 * l->pad < l->kh || w + 2 * l->pad < l->kw || oh <= 0 || ow <= 0)
                return ct_fail(err, CT_EXIT_BAD_INPUT, "%s: layer %s: a %dx%d kernel does not fit its %dx%d input", who,
                               l->name, l->kh, l->kw, h, w);
            c = l->units, h = oh, w = ow;
            break;
        }
        case CT_LAYER_MAXPOOL2D:
            if (l->kh < 1 || h / l->kh < 1 || w / l->kh < 1)
                return ct_fail(err, CT_EXIT_BAD_INPUT, "%s: layer %s: a %dx%d pool does not fit its %dx%d input", who,
                               l->name, l->kh, l->kh, h, w);
            h /= l->kh, w /= l->kh;
            break;
        case CT_LAYER_FLATTEN:
            c = c * h * w, h = w = 1;
            break;
        case CT_LAYER_DROPOUT:
            break;
        }
        if ((long long)c * h * w > (1 << 24))
            return ct_fail(err, CT_EXIT_BAD_INPUT, "%s: layer %s: %dx%dx%d values per item is too large", who, l->name,
                           c, h, w);
    }
    return 0;
}

int ct_model_spec_classes(const ct_model_spec *s) {
    for (int i = s->n_layers - 1; i >= 0; --i)
        if (s->layers[i].kind == CT_LAYER_DENSE) return s->layers[i].units;
    return 0;
}

int ct_model_spec_validate(const ct_model_spec *s, ct_error *err) {
    const char *who = s->name;
    if (s->input_dim <= 0)
        return ct_fail(err, CT_EXIT_BAD_INPUT, "%s: the input size must be a positive number (got %d)",
                       who, s->input_dim);
    if (s->n_layers <= 0 || s->n_layers > CT_MAX_LAYERS)
        return ct_fail(err, CT_EXIT_BAD_INPUT, "%s: a model needs 1 to %d layers (got %d)", who,
                       CT_MAX_LAYERS, s->n_layers);
    /* Names key the saved tensors and the per-layer gradient norms: two
     * alike would only fail at --save, after the whole run. */
    for (int i = 0; i < s->n_layers; ++i) {
        if (!s->layers[i].name[0])
            return ct_fail(err, CT_EXIT_BAD_INPUT, "%s: layer %d has no name (ct_model_spec_name_layers names them all)",
                           who, i + 1);
        for (int j = i + 1; j < s->n_layers; ++j)
            if (strcmp(s->layers[i].name, s->layers[j].name) == 0)
                return ct_fail(err, CT_EXIT_BAD_INPUT,
                               "%s: layers %d and %d are both named '%s'; layer names must be unique", who, i + 1,
                               j + 1, s->layers[i].name);
    }
    const ct_layer_spec *out = &s->layers[s->n_layers - 1];
    if (out->kind != CT_LAYER_DENSE)
        return ct_fail(err, CT_EXIT_BAD_INPUT, "%s: the last layer must be dense (it is %s)", who, out->name);
    int ic, ih, iw;
    ct_model_spec_input_shape(s, &ic, &ih, &iw);
    if ((long long)ic * ih * iw != s->input_dim || ic <= 0 || ih <= 0 || iw <= 0)
        return ct_fail(err, CT_EXIT_BAD_INPUT, "%s: the input shape %dx%dx%d does not make %d values", who, ic, ih, iw,
                       s->input_dim);
    int dense = 0;
    for (int i = 0; i < s->n_layers; ++i) {
        const ct_layer_spec *l = &s->layers[i];
        if (is_param_layer(l)) {
            ++dense;
            if (l->units <= 0 || l->units > (1 << 20))
                return ct_fail(err, CT_EXIT_BAD_INPUT, "%s: layer %s: units must be 1..%d (got %d)", who,
                               l->name, 1 << 20, l->units);
            if (l->act == CT_ACT_SOFTMAX && i != s->n_layers - 1)
                return ct_fail(err, CT_EXIT_BAD_INPUT,
                               "%s: layer %s: softmax is only supported on the output layer", who, l->name);
        } else if (l->kind == CT_LAYER_DROPOUT && !(l->rate >= 0.0f && l->rate < 1.0f)) {
            return ct_fail(err, CT_EXIT_BAD_INPUT, "%s: layer %s: dropout rate must be in [0, 1) (got %g)",
                           who, l->name, (double)l->rate);
        }
    }
    if (dense > CT_MAX_PARAM_LAYERS)
        return ct_fail(err, CT_EXIT_BAD_INPUT, "%s: at most %d dense and conv2d layers are supported (got %d)", who,
                       CT_MAX_PARAM_LAYERS, dense);
    if (check_shapes(s, err)) return -1;
    if (out->units < 2)
        return ct_fail(err, CT_EXIT_BAD_INPUT,
                       "%s: the output layer %s has %d unit; a classifier needs one per class (at least 2)",
                       who, out->name, out->units);
    if (s->batch_size <= 0)
        return ct_fail(err, CT_EXIT_BAD_INPUT, "%s: batch size must be positive (got %d)", who, s->batch_size);
    if (!(s->optim.lr > 0.0f) || !isfinite(s->optim.lr))
        return ct_fail(err, CT_EXIT_BAD_INPUT, "%s: learning rate must be a positive number (got %g)", who,
                       (double)s->optim.lr);
    /* Adam and RMSprop divide by sqrt(v) + eps, and v is 0 wherever a gradient
     * has always been exactly 0 (MNIST's blank border pixels, a dead ReLU):
     * with eps 0 that is 0/0 at the first such weight. */
    if (s->optim.eps <= 0.0f &&
        (s->optim.kind == CT_OPT_ADAM || s->optim.kind == CT_OPT_ADAMW || s->optim.kind == CT_OPT_RMSPROP))
        return ct_fail(err, CT_EXIT_BAD_INPUT,
                       "%s: eps=0 with %s divides 0 by 0 wherever a gradient is always exactly 0 (blank pixels, a "
                       "dead ReLU); use a positive eps (Keras's 1e-7)",
                       who, ct_optim_kind_name(s->optim.kind));
    if (s->optim.weight_decay != 0.0f && s->optim.kind != CT_OPT_ADAMW)
        return ct_fail(err, CT_EXIT_BAD_INPUT, "%s: weight_decay is only used by adamw (the optimizer is %s)", who,
                       ct_optim_kind_name(s->optim.kind));
    return 0;
}

void ct_model_spec_describe(const ct_model_spec *s, char *buf, size_t len) {
    size_t used = s->input_h > 1 || s->input_w > 1
                      ? (size_t)snprintf(buf, len, "%dx%dx%d", s->input_c, s->input_h, s->input_w)
                      : (size_t)snprintf(buf, len, "%d", s->input_dim);
    for (int i = 0; i < s->n_layers && used < len; ++i) {
        const ct_layer_spec *l = &s->layers[i];
        switch (l->kind) {
        case CT_LAYER_DENSE:
            used += (size_t)snprintf(buf + used, len - used, " -> dense %d %s", l->units, ct_activation_name(l->act));
            break;
        case CT_LAYER_CONV2D:
            /* Stride and padding when not the defaults: they change what the
             * same-shaped weights compute, so a checkpoint must name them. */
            used += (size_t)snprintf(buf + used, len - used, " -> conv2d %d %dx%d %s", l->units, l->kh, l->kw,
                                     ct_activation_name(l->act));
            if (l->stride > 1 && used < len) used += (size_t)snprintf(buf + used, len - used, " stride=%d", l->stride);
            if (l->pad > 0 && used < len) used += (size_t)snprintf(buf + used, len - used, " padding=%d", l->pad);
            break;
        case CT_LAYER_MAXPOOL2D:
            used += (size_t)snprintf(buf + used, len - used, " -> maxpool2d %d", l->kh);
            break;
        case CT_LAYER_FLATTEN:
            used += (size_t)snprintf(buf + used, len - used, " -> flatten");
            break;
        case CT_LAYER_DROPOUT:
            used += (size_t)snprintf(buf + used, len - used, " -> dropout %g", (double)l->rate);
            break;
        }
    }
    static const char *const sched[] = {"", " constant", " step", " cosine", " onecycle"};
    if (used < len)
        snprintf(buf + used, len - used, "; %s; %s lr=%g%s; batch %d; %s", ct_loss_name(s->loss),
                 ct_optim_kind_name(s->optim.kind), (double)s->optim.lr,
                 s->optim.schedule.kind == CT_SCHED_CONSTANT ? "" : sched[1 + s->optim.schedule.kind], s->batch_size,
                 ct_init_name(s->init));
}
