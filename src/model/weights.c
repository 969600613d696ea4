/* Model parameters <-> safetensors, named and shaped as PyTorch's state_dict
 * would hold them: "<layer>.weight" [out, in] and "<layer>.bias" [out]. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cutrain/checkpoint.h"
#include "cutrain/model.h"

int ct_model_save_weights(ct_model *m, const char *path, ct_error *err) {
    float *host = malloc((m->n_params ? m->n_params : 1) * sizeof(float));
    ct_st_tensor *t = calloc((size_t)(2 * m->n_param_layers + 1), sizeof *t);
    if (!host || !t) {
        free(host);
        free(t);
        return ct_fail(err, CT_EXIT_FAILURE, "%s: out of memory saving %zu parameters", path, m->n_params);
    }
    ct_model_get_params(m, host);
    int n = 0;
    for (int p = 0; p < m->n_param_layers; ++p) {
        const ct_layer *l = &m->layers[m->param_layer[p]];
        ct_st_tensor *w = &t[n++], *b = &t[n++];
        snprintf(w->name, sizeof w->name, "%s.weight", l->spec.name);
        w->rank = 2;
        w->shape[0] = (uint64_t)l->out_dim;
        w->shape[1] = (uint64_t)l->in_dim;
        w->count = w->shape[0] * w->shape[1];
        w->data = host + l->w_off;
        snprintf(b->name, sizeof b->name, "%s.bias", l->spec.name);
        b->rank = 1;
        b->shape[0] = (uint64_t)l->out_dim;
        b->count = b->shape[0];
        b->data = host + l->b_off;
    }
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

static int check_tensor(const char *path, const ct_st_tensor *t, const char *name, int rank, uint64_t d0, uint64_t d1,
                        ct_error *err) {
    if (!t) return ct_fail(err, CT_EXIT_BAD_INPUT, "%s: no tensor '%s': the file does not match this model", path, name);
    if (t->rank != rank || t->shape[0] != d0 || (rank == 2 && t->shape[1] != d1)) {
        char want[48];
        if (rank == 2)
            snprintf(want, sizeof want, "[%llu, %llu]", (unsigned long long)d0, (unsigned long long)d1);
        else
            snprintf(want, sizeof want, "[%llu]", (unsigned long long)d0);
        return ct_fail(err, CT_EXIT_BAD_INPUT, "%s: tensor '%s' has rank %d shape [%llu%s], the model expects %s", path,
                       name, t->rank, (unsigned long long)(t->rank ? t->shape[0] : 0), t->rank > 1 ? ", ..." : "",
                       want);
    }
    return 0;
}

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
        rc = check_tensor(path, w, wn, 2, (uint64_t)l->out_dim, (uint64_t)l->in_dim, err);
        if (rc == 0) rc = check_tensor(path, b, bn, 1, (uint64_t)l->out_dim, 0, err);
        if (rc == 0) {
            memcpy(host + l->w_off, w->data, w->count * sizeof(float));
            memcpy(host + l->b_off, b->data, b->count * sizeof(float));
        }
    }
    if (rc == 0) ct_model_set_params(m, host);
    free(host);
    ct_safetensors_free(&f);
    return rc;
}
