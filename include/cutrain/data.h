/* Data: IDX files (raw or gzip) validated fully on load, held as uint8 or
 * float32, and a batcher that walks a seeded shuffle of them.
 *
 * IDX layout (big-endian): 0x00 0x00 <type> <rank>, then rank uint32 dims,
 * then the elements. Types read here: 0x08 unsigned byte, 0x0D float32.
 */
#ifndef CUTRAIN_DATA_H
#define CUTRAIN_DATA_H

#include <stddef.h>
#include <stdint.h>

#include "cutrain/backend.h"
#include "cutrain/error.h"
#include "cutrain/health.h"

#ifdef __cplusplus
extern "C" {
#endif

#define CT_IDX_MAX_RANK 4

typedef struct ct_idx {
    ct_elem_type elem_type;
    int rank;
    uint32_t dims[CT_IDX_MAX_RANK];
    size_t count;        /* dims[0]                           */
    size_t item_elems;   /* product of dims[1..rank-1] (1 for rank 1) */
    void *data;          /* count * item_elems elements, host-endian   */
} ct_idx;

/* Reads and validates an IDX file, gzip-compressed or not (detected by the
 * gzip magic, not by the name). On failure err says "<path>: <problem>":
 * wrong magic, unsupported type, rank, a size that overflows, a file shorter
 * or longer than its header declares, a gzip stream that ends early or is
 * corrupt, a float element that is NaN or Inf. Never allocates more than the
 * file can hold. */
int ct_idx_load(const char *path, ct_idx *out, ct_error *err);
void ct_idx_free(ct_idx *idx);

/* A labelled set: images [count, sample_elems] and labels [count]. */
typedef struct ct_dataset {
    char images_path[512];
    char labels_path[512];
    ct_elem_type elem_type;   /* of the images                     */
    size_t count;
    size_t sample_elems;      /* 784 for MNIST                     */
    uint32_t image_dims[2];   /* rows, cols when rank 3; else 0    */
    void *images;             /* uint8 or float                    */
    uint8_t *labels;
    int max_label;            /* largest label present             */
} ct_dataset;

/* Loads an images file and a labels file and checks they agree: labels are
 * rank 1 unsigned bytes, images rank >= 2, and the counts match. */
int ct_dataset_load(const char *images_path, const char *labels_path, ct_dataset *out,
                    ct_error *err);

/* CRC-32 of the pixels and labels: a checkpoint remembers which data it was
 * trained on. */
uint32_t ct_dataset_crc32(const ct_dataset *ds);

/* Every label < classes (all of them are read: max_label is not trusted);
 * else names the labels file, the index and value. */
int ct_dataset_check_labels(const ct_dataset *ds, int classes, ct_error *err);
void ct_dataset_free(ct_dataset *ds);

/* Content checks that are warnings, not errors (the file is valid, but a
 * model cannot learn much from it): every label the same class
 * (LABELS_SINGLE_CLASS), images whose values are all equal
 * (CONSTANT_IMAGES, naming the first index). is_test says which split ds
 * is, which changes what one class means (nothing to learn from, or a test
 * accuracy that measures nothing). Returns how many diagnoses were written
 * (at most max). */
int ct_dataset_check_content(const ct_dataset *ds, int is_test, ct_diagnosis *out, int max);

/* The entropy (nats) of the labels' class frequencies: the cross-entropy of
 * a model that has learnt only how common each class is, which is what
 * "chance" means for the loss (ln 10 for ten balanced classes, ln 3 for
 * three). 0 for an empty set or a single class. */
double ct_dataset_label_entropy(const ct_dataset *ds);

/* Finds the standard MNIST names in dir: train-images-idx3-ubyte,
 * train-labels-idx1-ubyte (split "train") or t10k-* (split "test"), each
 * with or without ".gz" (the uncompressed one wins when both exist).
 * Also accepts the "-idx3-ubyte" -> ".idx3-ubyte" spelling some mirrors use. */
int ct_mnist_find(const char *dir, const char *split, char *images_path, char *labels_path,
                  size_t path_len, ct_error *err);

/* The per-epoch order: a Fisher-Yates shuffle driven by
 * ct_rng(seed, CT_STREAM_SHUFFLE(epoch), i), so epoch e's order depends
 * only on (seed, e, n). epoch is 1-based. */
void ct_shuffle_indices(int32_t *idx, size_t n, uint64_t seed, uint32_t epoch);

#ifdef __cplusplus
}
#endif
#endif
