/* safetensors files (the format PyTorch, JAX and others read):
 *   8 bytes   little-endian uint64 N: length of the JSON header
 *   N bytes   JSON: {"__metadata__": {str: str, ...},
 *                    "<name>": {"dtype": "F32", "shape": [d0, ...], "data_offsets": [begin, end]}, ...}
 *             padded with spaces to a multiple of 8
 *   data      the tensors' bytes, little-endian, offsets relative to here
 * This reader accepts F32 tensors only and refuses anything inconsistent:
 * offsets out of the file, overlapping or unordered, a shape whose element
 * count does not match its byte range, duplicate names, malformed JSON. */
#ifndef CUTRAIN_CHECKPOINT_H
#define CUTRAIN_CHECKPOINT_H

#include <stddef.h>
#include <stdint.h>

#include "cutrain/error.h"

#ifdef __cplusplus
extern "C" {
#endif

#define CT_ST_MAX_RANK 8
#define CT_ST_MAX_NAME 128

typedef struct ct_st_tensor {
    char name[CT_ST_MAX_NAME];
    int rank;
    uint64_t shape[CT_ST_MAX_RANK];
    uint64_t count;        /* product of shape (1 for rank 0) */
    const float *data;     /* host memory, count floats       */
} ct_st_tensor;

typedef struct ct_st_meta {
    char key[64];
    char value[1024];
} ct_st_meta;

typedef struct ct_st_file {
    int n_tensors;
    ct_st_tensor *tensors;
    int n_meta;
    ct_st_meta *meta;
    void *blob;            /* owns the tensor data */
} ct_st_file;

/* Writes atomically: a temporary file beside `path`, flushed and fsync'ed,
 * then renamed over it, so a crash leaves the old file or the new one. */
int ct_safetensors_write(const char *path, const ct_st_tensor *tensors, int n_tensors, const ct_st_meta *meta,
                         int n_meta, ct_error *err);
int ct_safetensors_read(const char *path, ct_st_file *out, ct_error *err);
const ct_st_tensor *ct_safetensors_find(const ct_st_file *f, const char *name);
const char *ct_safetensors_meta(const ct_st_file *f, const char *key); /* NULL when absent */
void ct_safetensors_free(ct_st_file *f);

#ifdef __cplusplus
}
#endif
#endif
