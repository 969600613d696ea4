/* An images file and a labels file loaded as one set: counts that disagree,
 * labels of the wrong type or rank, labels beyond the classes. The input is
 * a 2-byte little-endian length L, then L bytes of images, then the labels. */
#include <string.h>

#include "cutrain/data.h"
#include "fuzz/fuzz_support.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 2) return 0;
    size_t l = (size_t)data[0] | (size_t)data[1] << 8;
    if (l > size - 2) l = size - 2;
    const char *images = ct_fuzz_file(0, data + 2, l);
    const char *labels = ct_fuzz_file(1, data + 2 + l, size - 2 - l);
    ct_dataset ds;
    ct_error err;
    ct_error_clear(&err);
    if (ct_dataset_load(images, labels, &ds, &err) != 0) {
        ct_fuzz_check_error(&err, images, labels);
        return 0;
    }
    size_t esize = ds.elem_type == CT_ELEM_F32 ? 4 : 1;
    ct_fuzz_touch(ds.images, ds.count * ds.sample_elems * esize);
    ct_fuzz_touch(ds.labels, ds.count);
    for (size_t i = 0; i < ds.count; ++i)
        if (ds.labels[i] > ds.max_label) ct_fuzz_fail("label %u above max_label %d", ds.labels[i], ds.max_label);
    if (ct_dataset_check_labels(&ds, 10, &err) != 0) ct_fuzz_check_error(&err, labels, NULL);
    ct_diagnosis d[4];
    for (int is_test = 0; is_test < 2; ++is_test) {
        int n = ct_dataset_check_content(&ds, is_test, d, 4);
        if (n < 0 || n > 4) ct_fuzz_fail("ct_dataset_check_content wrote %d diagnoses into 4", n);
    }
    const double h = ct_dataset_label_entropy(&ds);
    if (!(h >= 0.0 && h <= 5.546)) /* ln 256: at most every byte value, evenly */
        ct_fuzz_fail("label entropy %g outside [0, ln 256]", h);
    ct_dataset_free(&ds);
    return 0;
}
