/* What ct_train checks of a set before uploading it. The command's loader
 * reads files whose header it has validated; a library caller fills
 * ct_dataset by hand, and an item of another width than the model's input
 * would be gathered with the wrong stride: rows spliced from two items, or,
 * when wider, writes past the end of the model's input buffer. */
#include <stdint.h>

#include "cutrain/train.h"

int ct_train_check_set(const ct_dataset *ds, const ct_model_spec *spec, ct_error *err) {
    const char *images = ds->images_path[0] ? ds->images_path : "dataset";
    if (ds->elem_type != CT_ELEM_U8 && ds->elem_type != CT_ELEM_F32)
        return ct_fail(err, CT_EXIT_BAD_INPUT, "%s: element type %d: expected CT_ELEM_U8 or CT_ELEM_F32", images,
                       (int)ds->elem_type);
    if (ds->count > 0 && (!ds->images || !ds->labels))
        return ct_fail(err, CT_EXIT_BAD_INPUT, "%s: %zu items but no %s in memory", images, ds->count,
                       ds->images ? "labels" : "images");
    /* Items are indexed by int32_t (each epoch's shuffled order, the
     * gather): the IDX loader refuses a file of more, and a set made by hand
     * is refused here, before its order would wrap to negative indices. */
    if (ds->count > (size_t)INT32_MAX)
        return ct_fail(err, CT_EXIT_BAD_INPUT, "%s: %zu items: at most %d can be indexed", images, ds->count,
                       INT32_MAX);
    if (ds->sample_elems != (size_t)spec->input_dim)
        return ct_fail(err, CT_EXIT_BAD_INPUT, "%s: items have %zu values but the model's input is %d", images,
                       ds->sample_elems, spec->input_dim);
    /* Images of another shape with as many pixels (16 x 4 for 8 x 8) would
     * train a convolution on scrambled neighbours without a word. Flat
     * items (rank 2) carry no shape to compare and are taken as given. */
    const int spatial = spec->input_c > 0 && !(spec->input_h == 1 && spec->input_w == 1); /* not "input 784" */
    if (spatial && ds->image_dims[0] &&
        (spec->input_c != 1 || ds->image_dims[0] != (uint32_t)spec->input_h ||
         ds->image_dims[1] != (uint32_t)spec->input_w))
        return ct_fail(err, CT_EXIT_BAD_INPUT,
                       "%s: images are %u x %u with one channel but the model's input is %d x %d with %d (input %d %d "
                       "%d)",
                       images, ds->image_dims[0], ds->image_dims[1], spec->input_h, spec->input_w, spec->input_c,
                       spec->input_c, spec->input_h, spec->input_w);
    return ct_dataset_check_labels(ds, ct_model_spec_classes(spec), err);
}
