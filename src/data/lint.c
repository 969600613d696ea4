/* Data that loads but cannot teach: all labels one class, or blank images.
 * Said at load as warnings, naming the file and the first index, because
 * both usually mean a broken export rather than a real dataset. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "cutrain/data.h"

static int image_is_constant(const ct_dataset *ds, size_t i) {
    size_t n = ds->sample_elems;
    if (ds->elem_type == CT_ELEM_U8) {
        const uint8_t *p = (const uint8_t *)ds->images + i * n;
        for (size_t j = 1; j < n; ++j)
            if (p[j] != p[0]) return 0;
    } else {
        const float *p = (const float *)ds->images + i * n;
        for (size_t j = 1; j < n; ++j)
            if (p[j] != p[0]) return 0;
    }
    return 1;
}

static ct_diagnosis *warn(ct_diagnosis *out, int *n, const char *code) {
    ct_diagnosis *d = &out[(*n)++];
    memset(d, 0, sizeof *d);
    snprintf(d->code, sizeof d->code, "%s", code);
    d->severity = "warning";
    return d;
}

int ct_dataset_check_content(const ct_dataset *ds, int is_test, ct_diagnosis *out, int max) {
    int n = 0;
    if (ds->count == 0 || max <= 0) return 0;
    size_t same = 1;
    while (same < ds->count && ds->labels[same] == ds->labels[0]) ++same;
    if (same == ds->count && ds->count > 1) {
        ct_diagnosis *d = warn(out, &n, "LABELS_SINGLE_CLASS");
        if (is_test)
            snprintf(d->message, sizeof d->message,
                     "%.300s: all %zu test labels are %u: the test accuracy will only say how often the model "
                     "predicts %u; check that this is the right labels file",
                     ds->labels_path, ds->count, ds->labels[0], ds->labels[0]);
        else
            snprintf(d->message, sizeof d->message,
                     "%.300s: all %zu labels are %u: a classifier cannot learn from a single class; check that this "
                     "is the right labels file",
                     ds->labels_path, ds->count, ds->labels[0]);
    }
    size_t constant = 0, first = 0;
    for (size_t i = 0; i < ds->count && ds->sample_elems > 1; ++i)
        if (image_is_constant(ds, i) && constant++ == 0) first = i;
    if (constant && n < max) {
        ct_diagnosis *d = warn(out, &n, "CONSTANT_IMAGES");
        snprintf(d->message, sizeof d->message,
                 "%.300s: %zu of %zu images are constant (every value the same), the first at index %zu: they carry no "
                 "information; check how the file was made",
                 ds->images_path, constant, ds->count, first);
    }
    return n;
}

double ct_dataset_label_entropy(const ct_dataset *ds) {
    if (!ds || ds->count == 0) return 0.0;
    size_t counts[256] = {0};
    for (size_t i = 0; i < ds->count; ++i) ++counts[ds->labels[i]];
    double h = 0.0;
    for (int k = 0; k < 256; ++k) {
        if (!counts[k]) continue;
        const double p = (double)counts[k] / (double)ds->count;
        h -= p * log(p);
    }
    return h > 0.0 ? h : 0.0; /* -0.0 for one class */
}
