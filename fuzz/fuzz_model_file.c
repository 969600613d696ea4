/* Model files (docs/model-format.md): the parser refuses the file with a
 * one-line message naming it, or gives a spec that validates; that spec is
 * then built on the CPU backend behind a memory cap (a model file may ask
 * for any size; a cap stands in for the machine's memory, so a huge model
 * must fail as "out of memory", not crash), and when it is small enough,
 * trained for one step of two items, so odd kernels, strides, paddings and
 * pool sizes reach the CPU kernels under the sanitizers. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cutrain/cutrain.h"
#include "fuzz/fuzz_support.h"

#define CAP_BYTES ((size_t)64 << 20)
/* Multiply-adds of one step of two rows, at most: keeps each input fast. */
#define MAX_STEP_MACS 2e7

static size_t g_used;
static void *(*g_cpu_alloc)(ct_backend *, size_t, ct_error *);

static void *capped_alloc(ct_backend *b, size_t bytes, ct_error *err) {
    if (bytes > CAP_BYTES - g_used) {
        ct_fail(err, CT_EXIT_FAILURE, "fuzz: %zu bytes is over the fuzzing memory cap", bytes);
        return NULL;
    }
    g_used += bytes;
    return g_cpu_alloc(b, bytes, err);
}

static ct_backend *capped_cpu(void) {
    static ct_backend *be;
    static ct_backend_ops ops;
    if (be) return be;
    ct_error err;
    if (!(be = ct_backend_create(CT_DEVICE_CPU, 1, &err))) ct_fuzz_fail("no CPU backend: %s", err.msg);
    ops = *be->ops;
    g_cpu_alloc = ops.alloc;
    ops.alloc = capped_alloc;
    be->ops = &ops;
    return be;
}

static double step_macs(const ct_model *m) {
    double macs = 0;
    for (int i = 0; i < m->n_layers; ++i) {
        const ct_layer *l = &m->layers[i];
        double w = l->spec.kind == CT_LAYER_CONV2D ? (double)l->out_c * l->in_c * l->spec.kh * l->spec.kw
                                                   : (double)l->out_dim * l->in_dim;
        double per_row = l->spec.kind == CT_LAYER_CONV2D ? w * l->out_h * l->out_w
                         : l->spec.kind == CT_LAYER_DENSE ? w
                                                           : (double)l->in_dim;
        macs += 2.0 * 3.0 * per_row; /* two rows; forward and two backward products */
    }
    return macs;
}

/* One step on two rows of the right width, labels within the classes. */
static void train_one_step(ct_model *m, const ct_model_spec *spec) {
    size_t elems = (size_t)spec->input_dim;
    ct_dataset ds;
    memset(&ds, 0, sizeof ds);
    ds.elem_type = CT_ELEM_U8;
    ds.count = 2;
    ds.sample_elems = elems;
    ds.images = calloc(2 * elems, 1);
    ds.labels = calloc(2, 1);
    if (!ds.images || !ds.labels) ct_fuzz_fail("out of memory");
    for (size_t i = 0; i < 2 * elems; ++i) ((uint8_t *)ds.images)[i] = (uint8_t)(i * 37);
    ds.labels[1] = (uint8_t)(m->classes - 1 < 255 ? m->classes - 1 : 255);
    ds.max_label = ds.labels[1];
    snprintf(ds.images_path, sizeof ds.images_path, "fuzz-images");
    snprintf(ds.labels_path, sizeof ds.labels_path, "fuzz-labels");
    ct_train_options opt = ct_train_defaults(spec);
    opt.batch_size = 2;
    opt.max_steps = 1;
    opt.evaluate = 0;
    opt.drain_every = 1;
    ct_log_options lo;
    memset(&lo, 0, sizeof lo);
    lo.quiet = 1;
    ct_error err;
    ct_error_clear(&err);
    ct_logger *log = ct_logger_open(&lo, &err);
    if (!log) ct_fuzz_fail("cannot open a logger: %s", err.msg);
    ct_run_summary sum;
    int rc = ct_train(m, &ds, &ds, &opt, log, &sum, &err);
    if (rc < 0 && err.code != CT_EXIT_FAILURE) ct_fuzz_fail("one training step failed: %s", err.msg);
    ct_logger_close(log, NULL);
    ct_dataset_free(&ds);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = ct_fuzz_file(0, data, size);
    ct_model_spec spec;
    ct_error err;
    ct_error_clear(&err);
    if (ct_model_spec_parse_file(path, &spec, &err) != 0) {
        ct_fuzz_check_error(&err, path, NULL);
        return 0;
    }
    char desc[512];
    ct_model_spec_describe(&spec, desc, sizeof desc);
    if (ct_model_spec_classes(&spec) < 2) ct_fuzz_fail("accepted a model of %d classes", ct_model_spec_classes(&spec));
    ct_model m;
    g_used = 0;
    if (ct_model_build(&m, &spec, capped_cpu(), 2, 1, &err) != 0) {
        /* Build errors come from the planner and the backend, which know no
         * file name: the command prints them after the model's name. */
        ct_fuzz_check_error(&err, NULL, NULL);
        return 0;
    }
    if (step_macs(&m) <= MAX_STEP_MACS) train_one_step(&m, &spec);
    ct_model_free(&m);
    return 0;
}
