/* Training checkpoints (the layout is in include/cutrain/checkpoint.h).
 * The state text goes into numbered metadata entries because a safetensors
 * metadata value is a string and ours are bounded; the reader joins them. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cutrain/checkpoint.h"
#include "cutrain/model.h"
#include "src/model/param_tensors.h"
#include "src/train/state_text.h"

#define CHECKPOINT_FORMAT "cutrain-checkpoint"
#define STATE_CHUNK 960 /* bytes of state text per metadata entry */

/* PyTorch's names for the same buffers, so a reader knows what each is. */
static const char *slot_name(ct_optimizer_kind kind, int slot) {
    switch (kind) {
    case CT_OPT_SGD:
        return "momentum_buffer";
    case CT_OPT_ADAM:
    case CT_OPT_ADAMW:
        return slot == 0 ? "exp_avg" : "exp_avg_sq";
    case CT_OPT_RMSPROP:
        return slot == 0 ? "square_avg" : "momentum_buffer";
    }
    return "state";
}

/* Parameter views renamed to the optimizer state they view instead:
 * "dense1.weight" -> "optim.dense1.weight.exp_avg". */
static void name_slot(ct_st_tensor *t, int n, ct_optimizer_kind kind, int slot) {
    for (int i = 0; i < n; ++i) {
        char name[CT_ST_MAX_NAME];
        snprintf(name, sizeof name, "optim.%s.%s", t[i].name, slot_name(kind, slot));
        memcpy(t[i].name, name, sizeof name);
    }
}

typedef struct host_copy {
    float *params, *state;
    uint64_t t;
    int slots;
} host_copy;

static void host_copy_free(host_copy *h) {
    free(h->params);
    free(h->state);
}

static int host_copy_alloc(const ct_model *m, host_copy *h, const char *path, ct_error *err) {
    memset(h, 0, sizeof *h);
    h->slots = ct_optim_state_slots(&m->spec.optim);
    size_t n = m->n_params ? m->n_params : 1;
    h->params = malloc(n * sizeof(float));
    h->state = malloc((h->slots ? (size_t)h->slots : 1) * n * sizeof(float));
    if (!h->params || !h->state) {
        host_copy_free(h);
        return ct_fail(err, CT_EXIT_FAILURE, "%s: out of memory for a checkpoint of %zu parameters", path,
                       m->n_params);
    }
    return 0;
}

static void set_meta(ct_st_meta *m, const char *key, const char *value) {
    memset(m, 0, sizeof *m);
    snprintf(m->key, sizeof m->key, "%s", key);
    snprintf(m->value, sizeof m->value, "%s", value);
}

int ct_checkpoint_save(ct_model *m, const ct_train_state *st, const char *path, ct_error *err) {
    host_copy h;
    if (host_copy_alloc(m, &h, path, err)) return -1;
    ct_backend *be = m->be;
    ct_model_get_params(m, h.params);
    if (h.slots) be->ops->download(be, h.state, m->opt_state, (size_t)h.slots * m->n_params * sizeof(float));
    be->ops->download(be, &h.t, m->opt_t, sizeof h.t);

    char *state = ct_train_state_format(st);
    size_t state_len = state ? strlen(state) : 0;
    int chunks = (int)((state_len + STATE_CHUNK - 1) / STATE_CHUNK);
    int n_layers = m->n_param_layers;
    ct_st_tensor *t = calloc((size_t)(2 * n_layers * (1 + h.slots) + 1), sizeof *t);
    ct_st_meta *meta = calloc((size_t)(8 + chunks), sizeof *meta);
    int rc = -1;
    if (!state || !t || !meta) {
        ct_fail(err, CT_EXIT_FAILURE, "%s: out of memory writing a checkpoint", path);
        goto out;
    }
    int nt = ct_model_param_tensors(m, h.params, t);
    for (int s = 0; s < h.slots; ++s) {
        int k = ct_model_param_tensors(m, h.state + (size_t)s * m->n_params, t + nt);
        name_slot(t + nt, k, m->spec.optim.kind, s);
        nt += k;
    }
    char buf[1024];
    int nm = 0;
    set_meta(&meta[nm++], "format", CHECKPOINT_FORMAT);
    ct_model_spec_describe(&m->spec, buf, sizeof buf);
    set_meta(&meta[nm++], "model", buf);
    ct_optim_format(&m->spec.optim, buf, sizeof buf);
    set_meta(&meta[nm++], "optim", buf);
    snprintf(buf, sizeof buf, "%" PRIu64, h.t);
    set_meta(&meta[nm++], "optim.t", buf);
    snprintf(buf, sizeof buf, "%" PRIu64, st->step);
    set_meta(&meta[nm++], "step", buf);
    snprintf(buf, sizeof buf, "%u", st->epoch);
    set_meta(&meta[nm++], "epoch", buf);
    snprintf(buf, sizeof buf, "%" PRIu64, st->seed);
    set_meta(&meta[nm++], "seed", buf);
    for (int c = 0; c < chunks; ++c) {
        char key[32];
        snprintf(key, sizeof key, "cutrain.state.%d", c);
        size_t off = (size_t)c * STATE_CHUNK, len = state_len - off < STATE_CHUNK ? state_len - off : STATE_CHUNK;
        memset(&meta[nm], 0, sizeof meta[nm]);
        snprintf(meta[nm].key, sizeof meta[nm].key, "%s", key);
        memcpy(meta[nm].value, state + off, len);
        ++nm;
    }
    rc = ct_safetensors_write(path, t, nt, meta, nm, err);
out:
    free(state);
    free(t);
    free(meta);
    host_copy_free(&h);
    return rc;
}

static int need_meta(const ct_st_file *f, const char *path, const char *key, const char **value, ct_error *err) {
    *value = ct_safetensors_meta(f, key);
    if (!*value)
        return ct_fail(err, CT_EXIT_BAD_INPUT,
                       "%s: no \"%s\" in the metadata: not a cutrain training checkpoint (a weights file "
                       "starts training with --init-weights or is evaluated with cutrain eval)",
                       path, key);
    return 0;
}

/* Copies one named tensor into `dst` after checking its shape against the
 * same-named view of the model. */
static int take_tensor(const ct_st_file *f, const char *path, const ct_st_tensor *want, float *dst, ct_error *err) {
    const ct_st_tensor *got = ct_safetensors_find(f, want->name);
    const char *dot = strrchr(want->name, '.');
    const int mean_of_squares = dot && (strcmp(dot, ".exp_avg_sq") == 0 || strcmp(dot, ".square_avg") == 0);
    if (ct_check_param_tensor(path, got, want->name, want->rank, want->shape, mean_of_squares, err)) return -1;
    /* Running means of squares: a negative one would make Adam's or
     * RMSprop's denominator the square root of a negative number. */
    if (mean_of_squares)
        for (uint64_t i = 0; i < got->count; ++i)
            if (got->data[i] < 0.0f)
                return ct_fail(err, CT_EXIT_BAD_INPUT,
                               "%s: tensor '%s' holds %g at index %llu; a mean of squares is never negative", path,
                               want->name, (double)got->data[i], (unsigned long long)i);
    memcpy(dst, got->data, got->count * sizeof(float));
    return 0;
}

static int load_tensors(ct_model *m, const ct_st_file *f, const char *path, host_copy *h, ct_error *err) {
    ct_st_tensor *t = calloc((size_t)(2 * m->n_param_layers + 1), sizeof *t);
    if (!t) return ct_fail(err, CT_EXIT_FAILURE, "%s: out of memory", path);
    int rc = 0, taken = 0;
    for (int s = -1; s < h->slots && rc == 0; ++s) {
        float *base = s < 0 ? h->params : h->state + (size_t)s * m->n_params;
        int nt = ct_model_param_tensors(m, base, t);
        if (s >= 0) name_slot(t, nt, m->spec.optim.kind, s);
        for (int i = 0; i < nt && rc == 0; ++i, ++taken) rc = take_tensor(f, path, &t[i], (float *)t[i].data, err);
    }
    free(t);
    /* Every tensor the run needs was there (take_tensor says which is not);
     * one more is one the run has no place for: another optimizer's state,
     * or an edited file. Names are unique, so counting finds it. */
    if (rc == 0 && f->n_tensors > taken) {
        for (int i = 0; i < f->n_tensors; ++i) {
            const char *name = f->tensors[i].name;
            int known = 0;
            for (int s = -1; !known && s < h->slots; ++s)
                for (int p = 0; !known && p < m->n_param_layers; ++p)
                    for (int b = 0; !known && b < 2; ++b) {
                        char want[CT_ST_MAX_NAME];
                        const char *layer = m->layers[m->param_layer[p]].spec.name;
                        if (s < 0)
                            snprintf(want, sizeof want, "%s.%s", layer, b ? "bias" : "weight");
                        else
                            snprintf(want, sizeof want, "optim.%s.%s.%s", layer, b ? "bias" : "weight",
                                     slot_name(m->spec.optim.kind, s));
                        known = strcmp(name, want) == 0;
                    }
            if (!known)
                return ct_fail(err, CT_EXIT_BAD_INPUT,
                               "%s: tensor '%s' has no place in this run (not a parameter of the model nor a slot of "
                               "%s's state)",
                               path, name, ct_optim_kind_name(m->spec.optim.kind));
        }
    }
    return rc;
}

static int check_same(const char *path, const char *what, const char *got, const char *want, ct_error *err) {
    if (strcmp(got, want) == 0) return 0;
    return ct_fail(err, CT_EXIT_BAD_INPUT, "%s: the checkpoint's %s is \"%s\", this run's is \"%s\"", path, what, got,
                   want);
}

/* The optimizer lines are "kind key=value ..." with values as C hex floats
 * (exact); a difference is told as the first setting that differs, in
 * decimal, rather than as two lines of hex. */
static int check_same_optim(const char *path, const char *got, const char *want, ct_error *err) {
    if (strcmp(got, want) == 0) return 0;
    const char *g = got, *w = want;
    for (;;) {
        size_t gl = strcspn(g, " "), wl = strcspn(w, " ");
        if (gl != wl || strncmp(g, w, gl) != 0) {
            const char *geq = memchr(g, '=', gl), *weq = memchr(w, '=', wl);
            if (geq && weq && geq - g == weq - w && strncmp(g, w, (size_t)(geq - g)) == 0)
                return ct_fail(err, CT_EXIT_BAD_INPUT,
                               "%s: the checkpoint's optimizer has %.*s=%.9g, this run's has %.9g (resume with the "
                               "settings of the run that wrote it)",
                               path, (int)(geq - g), g, strtod(geq + 1, NULL), strtod(weq + 1, NULL));
            return ct_fail(err, CT_EXIT_BAD_INPUT, "%s: the checkpoint's optimizer is \"%.*s\" where this run's is \"%.*s\"",
                           path, (int)gl, g, (int)wl, w);
        }
        if (!g[gl] || !w[wl]) break;
        g += gl + 1;
        w += wl + 1;
    }
    return check_same(path, "optimizer", got, want, err); /* one line is longer: say both */
}

int ct_checkpoint_load(ct_model *m, ct_train_state *st, const char *path, ct_error *err) {
    ct_st_file f;
    if (ct_safetensors_read(path, &f, err)) return -1;
    host_copy h;
    memset(&h, 0, sizeof h);
    char *state = NULL;
    int rc = -1;
    const char *format, *model, *optim, *t_text;
    char buf[1024];
    if (need_meta(&f, path, "format", &format, err)) goto out;
    if (strcmp(format, CHECKPOINT_FORMAT) != 0) {
        ct_fail(err, CT_EXIT_BAD_INPUT,
                "%s: format \"%s\", expected \"%s\": not a cutrain training checkpoint (cutrain train --save "
                "writes one; a weights file is for cutrain eval --weights)",
                path, format, CHECKPOINT_FORMAT);
        goto out;
    }
    if (need_meta(&f, path, "model", &model, err) || need_meta(&f, path, "optim", &optim, err) ||
        need_meta(&f, path, "optim.t", &t_text, err))
        goto out;
    ct_model_spec_describe(&m->spec, buf, sizeof buf);
    if (check_same(path, "model", model, buf, err)) goto out;
    ct_optim_format(&m->spec.optim, buf, sizeof buf);
    if (check_same_optim(path, optim, buf, err)) goto out;
    char *end;
    errno = 0;
    unsigned long long t = strtoull(t_text, &end, 10);
    if (end == t_text || *end || errno == ERANGE || t_text[strspn(t_text, " \t")] == '-') {
        ct_fail(err, CT_EXIT_BAD_INPUT, "%s: metadata \"optim.t\" is \"%s\", expected an unsigned integer", path,
                t_text);
        goto out;
    }
    /* The state text, joined from its chunks. */
    size_t len = 0, cap = 0;
    for (int c = 0;; ++c) {
        char key[32];
        snprintf(key, sizeof key, "cutrain.state.%d", c);
        const char *v = ct_safetensors_meta(&f, key);
        if (!v) break;
        size_t n = strlen(v);
        if (len + n + 1 > cap) {
            cap = 2 * (len + n + 1);
            char *s = realloc(state, cap);
            if (!s) {
                ct_fail(err, CT_EXIT_FAILURE, "%s: out of memory", path);
                goto out;
            }
            state = s;
        }
        memcpy(state + len, v, n + 1);
        len += n;
    }
    if (!state) {
        const char *none;
        need_meta(&f, path, "cutrain.state.0", &none, err);
        goto out;
    }
    if (ct_train_state_parse(state, st, path, err) || host_copy_alloc(m, &h, path, err) ||
        load_tensors(m, &f, path, &h, err))
        goto out;
    st->optim_t = t; /* checked against the counters with the rest of the state (resume.c) */
    ct_model_set_params(m, h.params);
    ct_backend *be = m->be;
    if (h.slots) be->ops->upload(be, m->opt_state, h.state, (size_t)h.slots * m->n_params * sizeof(float));
    h.t = t;
    be->ops->upload(be, m->opt_t, &h.t, sizeof h.t);
    rc = 0;
out:
    free(state);
    host_copy_free(&h);
    ct_safetensors_free(&f);
    return rc;
}
