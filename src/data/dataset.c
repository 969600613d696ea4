/* A labelled set: an images IDX file and a labels IDX file that must agree.
 * The paths are kept so that later checks (labels against the model's
 * classes) can still name the file the user has to fix. */
#include "cutrain/data.h"

#include <stdlib.h>
#include <string.h>
#include <zlib.h>

static int copy_path(char *dst, size_t cap, const char *path, ct_error *err) {
    size_t len = strlen(path);
    if (len >= cap)
        return ct_fail(err, CT_EXIT_BAD_INPUT, "%s: path is %zu characters long: at most %zu fit",
                       path, len, cap - 1);
    memcpy(dst, path, len + 1);
    return 0;
}

static int check_images(const ct_idx *im, const char *path, ct_error *err) {
    if (im->rank >= 2) return 0;
    return ct_fail(err, CT_EXIT_BAD_INPUT,
                   "%s: images have rank %d: expected rank >= 2 ([count, rows, cols] or "
                   "[count, features])",
                   path, im->rank);
}

static int check_labels_file(const ct_idx *lb, const char *path, ct_error *err) {
    if (lb->rank != 1)
        return ct_fail(err, CT_EXIT_BAD_INPUT, "%s: labels have rank %d: expected rank 1 [count]",
                       path, lb->rank);
    if (lb->elem_type != CT_ELEM_U8)
        return ct_fail(err, CT_EXIT_BAD_INPUT,
                       "%s: labels are float32 (type 0x0D): expected unsigned bytes (type 0x08)",
                       path);
    return 0;
}

static int check_counts(const ct_idx *im, const ct_idx *lb, const ct_dataset *ds,
                        ct_error *err) {
    if (im->count == lb->count) return 0;
    return ct_fail(err, CT_EXIT_BAD_INPUT,
                   "%s: %zu images but %s holds %zu labels: the counts must match",
                   ds->images_path, im->count, ds->labels_path, lb->count);
}

/* -1 for an empty set: there is no largest label. */
static int largest_label(const uint8_t *labels, size_t n) {
    int max = -1;
    for (size_t i = 0; i < n; ++i)
        if (labels[i] > max) max = labels[i];
    return max;
}

/* Takes ownership of both buffers. */
static void adopt(ct_dataset *ds, ct_idx *im, ct_idx *lb) {
    ds->elem_type = im->elem_type;
    ds->count = im->count;
    ds->sample_elems = im->item_elems;
    if (im->rank == 3) {
        ds->image_dims[0] = im->dims[1];
        ds->image_dims[1] = im->dims[2];
    }
    ds->images = im->data;
    ds->labels = lb->data;
    ds->max_label = largest_label(ds->labels, ds->count);
    im->data = NULL;
    lb->data = NULL;
}

static int load_both(const char *images_path, const char *labels_path, ct_dataset *out,
                     ct_error *err) {
    ct_idx im, lb;
    if (ct_idx_load(images_path, &im, err) != 0) return -1;
    if (check_images(&im, images_path, err) != 0 || ct_idx_load(labels_path, &lb, err) != 0) {
        ct_idx_free(&im);
        return -1;
    }
    int rc = check_labels_file(&lb, labels_path, err);
    if (rc == 0) rc = check_counts(&im, &lb, out, err);
    if (rc == 0) adopt(out, &im, &lb);
    ct_idx_free(&im);
    ct_idx_free(&lb);
    return rc;
}

int ct_dataset_load(const char *images_path, const char *labels_path, ct_dataset *out,
                    ct_error *err) {
    memset(out, 0, sizeof *out);
    if (!images_path || !labels_path)
        return ct_fail(err, CT_EXIT_USAGE, "dataset: the %s path is NULL", images_path ? "labels" : "images");
    if (copy_path(out->images_path, sizeof out->images_path, images_path, err) != 0 ||
        copy_path(out->labels_path, sizeof out->labels_path, labels_path, err) != 0 ||
        load_both(images_path, labels_path, out, err) != 0) {
        memset(out, 0, sizeof *out);
        return -1;
    }
    return 0;
}

/* Every label is read, whatever max_label says: a caller of the library
 * fills that field by hand (or leaves it 0), and one byte a pass costs
 * nothing beside training on the set. */
int ct_dataset_check_labels(const ct_dataset *ds, int classes, ct_error *err) {
    for (size_t i = 0; i < ds->count; ++i)
        if (ds->labels[i] >= classes)
            return ct_fail(err, CT_EXIT_BAD_INPUT,
                           "%s: label %d at index %zu is outside the model's %d classes",
                           ds->labels_path, ds->labels[i], i, classes);
    return 0;
}

uint32_t ct_dataset_crc32(const ct_dataset *ds) {
    size_t bytes = ds->count * ds->sample_elems * (ds->elem_type == CT_ELEM_F32 ? sizeof(float) : 1);
    uLong crc = crc32(0L, Z_NULL, 0);
    /* zlib takes uInt lengths: feed large sets in pieces. */
    const unsigned char *p = ds->images;
    for (size_t off = 0; off < bytes;) {
        uInt n = bytes - off > (1u << 30) ? (1u << 30) : (uInt)(bytes - off);
        crc = crc32(crc, p + off, n);
        off += n;
    }
    if (ds->count) crc = crc32(crc, ds->labels, (uInt)ds->count);
    return (uint32_t)crc;
}

void ct_dataset_free(ct_dataset *ds) {
    if (!ds) return;
    free(ds->images);
    free(ds->labels);
    memset(ds, 0, sizeof *ds);
}
