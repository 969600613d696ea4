/* Model parameters <-> safetensors, named and shaped as PyTorch's state_dict
 * would hold them: "<layer>.weight" [out, in] (dense) or [out, in, kh, kw]
 * (conv2d), and "<layer>.bias" [out]. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cutrain/checkpoint.h"
#include "cutrain/model.h"
#include "src/model/param_tensors.h"

/* The weight's shape; its rank is the return value. */
static int weight_shape(const ct_layer *l, uint64_t shape[4]) {
    shape[0] = (uint64_t)l->out_c;
    if (l->spec.kind == CT_LAYER_CONV2D) {
        shape[1] = (uint64_t)l->in_c;
        shape[2] = (uint64_t)l->spec.kh;
        shape[3] = (uint64_t)l->spec.kw;
        return 4;
    }
    shape[1] = (uint64_t)l->in_dim;
    return 2;
}

int ct_model_param_tensors(const ct_model *m, const float *host, ct_st_tensor *t) {
    int n = 0;
    for (int p = 0; p < m->n_param_layers; ++p) {
        const ct_layer *l = &m->layers[m->param_layer[p]];
        ct_st_tensor *w = &t[n++], *b = &t[n++];
        memset(w, 0, sizeof *w);
        memset(b, 0, sizeof *b);
        snprintf(w->name, sizeof w->name, "%s.weight", l->spec.name);
        w->rank = weight_shape(l, w->shape);
        w->count = 1;
        for (int d = 0; d < w->rank; ++d) w->count *= w->shape[d];
        w->data = host + l->w_off;
        snprintf(b->name, sizeof b->name, "%s.bias", l->spec.name);
        b->rank = 1;
        b->shape[0] = (uint64_t)l->out_c;
        b->count = b->shape[0];
        b->data = host + l->b_off;
    }
    return n;
}

int ct_model_save_weights(ct_model *m, const char *path, ct_error *err) {
    float *host = malloc((m->n_params ? m->n_params : 1) * sizeof(float));
    ct_st_tensor *t = calloc((size_t)(2 * m->n_param_layers + 1), sizeof *t);
    if (!host || !t) {
        free(host);
        free(t);
        return ct_fail(err, CT_EXIT_FAILURE, "%s: out of memory saving %zu parameters", path, m->n_params);
    }
    ct_model_get_params(m, host);
    int n = ct_model_param_tensors(m, host, t);
    ct_st_meta meta[2];
    memset(meta, 0, sizeof meta);
    snprintf(meta[0].key, sizeof meta[0].key, "format");
    snprintf(meta[0].value, sizeof meta[0].value, "cutrain");
    snprintf(meta[1].key, sizeof meta[1].key, "model");
    ct_model_spec_describe(&m->spec, meta[1].value, sizeof meta[1].value);
    int rc = ct_safetensors_write(path, t, n, meta, 2, err);
    free(t);
    free(host);
    return rc;
}

static void shape_text(int rank, const uint64_t *shape, char *buf, size_t len) {
    size_t used = (size_t)snprintf(buf, len, "[");
    for (int d = 0; d < rank && used < len; ++d)
        used += (size_t)snprintf(buf + used, len - used, "%s%llu", d ? ", " : "", (unsigned long long)shape[d]);
    if (used < len) snprintf(buf + used, len - used, "]");
}

int ct_check_param_tensor(const char *path, const ct_st_tensor *t, const char *name, int rank, const uint64_t *shape,
                          int allow_inf, ct_error *err) {
    if (!t) return ct_fail(err, CT_EXIT_BAD_INPUT, "%s: no tensor '%s': the file does not match this model", path, name);
    int same = t->rank == rank;
    for (int d = 0; same && d < rank; ++d) same = t->shape[d] == shape[d];
    if (!same) {
        char got[96], want[96];
        shape_text(t->rank, t->shape, got, sizeof got);
        shape_text(rank, shape, want, sizeof want);
        return ct_fail(err, CT_EXIT_BAD_INPUT, "%s: tensor '%s' has shape %s, the model expects %s", path, name, got,
                       want);
    }
    /* A NaN in a file would surface steps later as a diagnosis blaming the
     * learning rate; it is the file's fault, so it is said so here, with
     * the one way cutrain itself writes such a file (--on-nan warn). */
    for (uint64_t i = 0; i < t->count; ++i)
        if (!isfinite(t->data[i]) && !(allow_inf && t->data[i] > 0))
            return ct_fail(err, CT_EXIT_BAD_INPUT,
                           "%s: tensor '%s' holds %s at index %llu; expected finite values (cutrain writes such a file "
                           "only after --on-nan warn let a non-finite update in: use one from before it)",
                           path, name, isnan(t->data[i]) ? "NaN" : "an infinity", (unsigned long long)i);
    return 0;
}

/* The layers of a description (ct_model_spec_describe): what comes before
 * the first ';' (the loss, the recipe and the init do not change weights). */
static size_t layers_len(const char *desc) { return strcspn(desc, ";"); }

int ct_model_load_weights(ct_model *m, const char *path, ct_error *err) {
    ct_st_file f;
    if (ct_safetensors_read(path, &f, err)) return -1;
    float *host = malloc((m->n_params ? m->n_params : 1) * sizeof(float));
    int rc = host ? 0 : ct_fail(err, CT_EXIT_FAILURE, "%s: out of memory", path);

    for (int p = 0; rc == 0 && p < m->n_param_layers; ++p) {
        const ct_layer *l = &m->layers[m->param_layer[p]];
        char wn[CT_ST_MAX_NAME], bn[CT_ST_MAX_NAME];
        snprintf(wn, sizeof wn, "%s.weight", l->spec.name);
        snprintf(bn, sizeof bn, "%s.bias", l->spec.name);
        const ct_st_tensor *w = ct_safetensors_find(&f, wn), *b = ct_safetensors_find(&f, bn);
        uint64_t wshape[4], bshape[1] = {(uint64_t)l->out_c};
        int rank = weight_shape(l, wshape);
        rc = ct_check_param_tensor(path, w, wn, rank, wshape, 0, err);
        if (rc == 0) rc = ct_check_param_tensor(path, b, bn, 1, bshape, 0, err);
        if (rc == 0) {
            memcpy(host + l->w_off, w->data, w->count * sizeof(float));
            memcpy(host + l->b_off, b->data, b->count * sizeof(float));
        }
    }
    /* Strict, as PyTorch's load_state_dict is by default: a tensor the model
     * has no place for means the file is for another model (or was edited).
     * A checkpoint's optimizer state (optim.*) is not the weights' business. */
    for (int i = 0; rc == 0 && i < f.n_tensors; ++i) {
        const char *name = f.tensors[i].name;
        if (strncmp(name, "optim.", 6) == 0) continue;
        int known = 0;
        for (int p = 0; !known && p < m->n_param_layers; ++p) {
            const char *layer = m->layers[m->param_layer[p]].spec.name;
            size_t n = strlen(layer);
            known = strncmp(name, layer, n) == 0 && (strcmp(name + n, ".weight") == 0 || strcmp(name + n, ".bias") == 0);
        }
        if (!known) {
            char layers[CT_MAX_PARAM_LAYERS * 34] = "";
            size_t used = 0;
            for (int p = 0; p < m->n_param_layers && used < sizeof layers; ++p)
                used += (size_t)snprintf(layers + used, sizeof layers - used, "%s%s", p ? ", " : "",
                                         m->layers[m->param_layer[p]].spec.name);
            rc = ct_fail(err, CT_EXIT_BAD_INPUT,
                         "%s: tensor '%s' is not a parameter of the model (its layers with parameters: %s)", path, name,
                         layers);
        }
    }
    /* A file cutrain wrote names its model: tensors of the right shapes for
     * layers of another activation load and mean nothing. (A PyTorch
     * state_dict has no such record; its shapes are all there is to check.) */
    const char *written_for = ct_safetensors_meta(&f, "model");
    if (rc == 0 && written_for) {
        char mine[1024];
        ct_model_spec_describe(&m->spec, mine, sizeof mine);
        const size_t a = layers_len(written_for), b = layers_len(mine);
        if (a != b || strncmp(written_for, mine, a) != 0)
            rc = ct_fail(err, CT_EXIT_BAD_INPUT, "%s: written for the layers '%.*s', but this model's are '%.*s'", path,
                         (int)a, written_for, (int)b, mine);
    }
    if (rc == 0) ct_model_set_params(m, host);
    free(host);
    ct_safetensors_free(&f);
    return rc;
}
