/* safetensors checkpoints as `cutrain eval --weights` and `cutrain train
 * --resume` read them: the reader refuses the file with a one-line message
 * naming it, or hands out tensors whose shapes, counts and data all lie
 * inside what the file held; then the same file is loaded into a small model,
 * as eval does, and as a training checkpoint (its metadata: the model and
 * optimizer it was written for, and the run's position as text). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cutrain/checkpoint.h"
#include "cutrain/model.h"
#include "fuzz/fuzz_support.h"

/* input 4 -> dense1 3 relu -> dense2 2 softmax: fuzz/corpus/safetensors
 * holds its weights as `cutrain train --save` writes them. */
static ct_model *small_model(void) {
    static ct_model m;
    static int built;
    if (built) return &m;
    ct_model_spec s;
    memset(&s, 0, sizeof s);
    snprintf(s.name, sizeof s.name, "fuzz");
    s.input_dim = 4;
    s.n_layers = 2;
    s.layers[0].kind = CT_LAYER_DENSE;
    s.layers[0].units = 3;
    s.layers[0].act = CT_ACT_RELU;
    s.layers[1].kind = CT_LAYER_DENSE;
    s.layers[1].units = 2;
    s.layers[1].act = CT_ACT_SOFTMAX;
    s.loss = CT_LOSS_XENT;
    s.optim = ct_optim_defaults(CT_OPT_ADAM);
    s.batch_size = 2;
    ct_model_spec_name_layers(&s);
    ct_error err;
    ct_backend *be = ct_backend_create(CT_DEVICE_CPU, 1, &err);
    if (!be || ct_model_build(&m, &s, be, 2, 0, &err) != 0) ct_fuzz_fail("cannot build the model: %s", err.msg);
    built = 1;
    return &m;
}

static void check_file(const ct_st_file *f) {
    for (int i = 0; i < f->n_tensors; ++i) {
        const ct_st_tensor *t = &f->tensors[i];
        if (t->rank < 0 || t->rank > CT_ST_MAX_RANK) ct_fuzz_fail("tensor %d: rank %d", i, t->rank);
        uint64_t count = 1;
        for (int d = 0; d < t->rank; ++d) count *= t->shape[d];
        if (count != t->count) ct_fuzz_fail("tensor %s: count %llu, shape holds %llu", t->name,
                                            (unsigned long long)t->count, (unsigned long long)count);
        if (!memchr(t->name, '\0', sizeof t->name) || !t->name[0]) ct_fuzz_fail("tensor %d: bad name", i);
        if (t->count && !t->data) ct_fuzz_fail("tensor %s: no data", t->name);
        if (t->count) ct_fuzz_touch(t->data, (size_t)t->count * sizeof(float));
        if (ct_safetensors_find(f, t->name) == NULL) ct_fuzz_fail("tensor %s: not found by name", t->name);
    }
    for (int i = 0; i < f->n_meta; ++i)
        if (ct_safetensors_meta(f, f->meta[i].key) == NULL) ct_fuzz_fail("metadata %s: not found", f->meta[i].key);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = ct_fuzz_file(0, data, size);
    ct_st_file f;
    ct_error err;
    ct_error_clear(&err);
    if (ct_safetensors_read(path, &f, &err) != 0) {
        ct_fuzz_check_error(&err, path, NULL);
        return 0;
    }
    check_file(&f);
    ct_safetensors_free(&f);
    ct_error_clear(&err);
    if (ct_model_load_weights(small_model(), path, &err) != 0) ct_fuzz_check_error(&err, path, NULL);
    ct_train_state st;
    memset(&st, 0, sizeof st);
    const char names[2][32] = {"dense1", "dense2"};
    ct_health_config hc = ct_health_defaults();
    ct_health_init(&st.health, &hc, 1e-3f, "adam", 2, 2, names);
    ct_error_clear(&err);
    if (ct_checkpoint_load(small_model(), &st, path, &err) != 0) {
        ct_fuzz_check_error(&err, path, NULL);
    } else if (st.health.norms_n > st.health.cfg.explode_window || st.health.norms_at >= CT_HEALTH_MAX_WINDOW) {
        ct_fuzz_fail("checkpoint state: norms window %d at %d for a window of %d", st.health.norms_n,
                     st.health.norms_at, st.health.cfg.explode_window);
    }
    return 0;
}
