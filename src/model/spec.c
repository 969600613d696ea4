/* Model descriptions: the presets, naming, validation and a one-line summary. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "cutrain/model.h"

static void add_dense(ct_model_spec *s, int units, ct_activation act) {
    ct_layer_spec *l = &s->layers[s->n_layers++];
    memset(l, 0, sizeof *l);
    l->kind = CT_LAYER_DENSE;
    l->units = units;
    l->act = act;
}

int ct_model_spec_preset(const char *name, ct_model_spec *out) {
    ct_model_spec s;
    memset(&s, 0, sizeof s);
    s.input_dim = 784;
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

void ct_model_spec_name_layers(ct_model_spec *s) {
    int dense = 0, dropout = 0;
    for (int i = 0; i < s->n_layers; ++i) {
        ct_layer_spec *l = &s->layers[i];
        int k = l->kind == CT_LAYER_DENSE ? ++dense : ++dropout;
        if (l->name[0]) continue;
        snprintf(l->name, sizeof l->name, "%s%d", l->kind == CT_LAYER_DENSE ? "dense" : "dropout", k);
    }
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
    const ct_layer_spec *out = &s->layers[s->n_layers - 1];
    if (out->kind != CT_LAYER_DENSE)
        return ct_fail(err, CT_EXIT_BAD_INPUT, "%s: the last layer must be dense (it is %s)", who, out->name);
    int dense = 0;
    for (int i = 0; i < s->n_layers; ++i) {
        const ct_layer_spec *l = &s->layers[i];
        if (l->kind == CT_LAYER_DENSE) {
            ++dense;
            if (l->units <= 0 || l->units > (1 << 20))
                return ct_fail(err, CT_EXIT_BAD_INPUT, "%s: layer %s: units must be 1..%d (got %d)", who,
                               l->name, 1 << 20, l->units);
            if (l->act == CT_ACT_SOFTMAX && i != s->n_layers - 1)
                return ct_fail(err, CT_EXIT_BAD_INPUT,
                               "%s: layer %s: softmax is only supported on the output layer", who, l->name);
        } else if (!(l->rate >= 0.0f && l->rate < 1.0f)) {
            return ct_fail(err, CT_EXIT_BAD_INPUT, "%s: layer %s: dropout rate must be in [0, 1) (got %g)",
                           who, l->name, (double)l->rate);
        }
    }
    if (dense > CT_MAX_PARAM_LAYERS)
        return ct_fail(err, CT_EXIT_BAD_INPUT, "%s: at most %d dense layers are supported (got %d)", who,
                       CT_MAX_PARAM_LAYERS, dense);
    if (out->units < 2)
        return ct_fail(err, CT_EXIT_BAD_INPUT,
                       "%s: the output layer %s has %d unit; a classifier needs one per class (at least 2)",
                       who, out->name, out->units);
    if (s->batch_size <= 0)
        return ct_fail(err, CT_EXIT_BAD_INPUT, "%s: batch size must be positive (got %d)", who, s->batch_size);
    if (!(s->optim.lr > 0.0f) || !isfinite(s->optim.lr))
        return ct_fail(err, CT_EXIT_BAD_INPUT, "%s: learning rate must be a positive number (got %g)", who,
                       (double)s->optim.lr);
    if (s->optim.weight_decay != 0.0f && s->optim.kind != CT_OPT_ADAMW)
        return ct_fail(err, CT_EXIT_BAD_INPUT, "%s: weight_decay is only used by adamw (the optimizer is %s)", who,
                       ct_optim_kind_name(s->optim.kind));
    return 0;
}

void ct_model_spec_describe(const ct_model_spec *s, char *buf, size_t len) {
    size_t used = (size_t)snprintf(buf, len, "%d", s->input_dim);
    for (int i = 0; i < s->n_layers && used < len; ++i) {
        const ct_layer_spec *l = &s->layers[i];
        if (l->kind == CT_LAYER_DENSE)
            used += (size_t)snprintf(buf + used, len - used, " -> dense %d %s", l->units,
                                     ct_activation_name(l->act));
        else
            used += (size_t)snprintf(buf + used, len - used, " -> dropout %g", (double)l->rate);
    }
    if (used < len)
        snprintf(buf + used, len - used, "; %s; %s lr=%g; batch %d; %s", ct_loss_name(s->loss),
                 ct_optim_kind_name(s->optim.kind), (double)s->optim.lr, s->batch_size, ct_init_name(s->init));
}
