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
#include "cutrain/health.h"

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
 * then renamed over it, so a crash leaves the old file or the new one. The
 * rename would replace whatever is at `path`, so only a new name or a
 * writable regular file is accepted there (not a symbolic link, device,
 * FIFO or a read-only file: ct_safetensors_check_destination); a replaced
 * file keeps its permission bits. */
int ct_safetensors_check_destination(const char *path, ct_error *err);
int ct_safetensors_write(const char *path, const ct_st_tensor *tensors, int n_tensors, const ct_st_meta *meta,
                         int n_meta, ct_error *err);
int ct_safetensors_read(const char *path, ct_st_file *out, ct_error *err);
const ct_st_tensor *ct_safetensors_find(const ct_st_file *f, const char *name);
const char *ct_safetensors_meta(const ct_st_file *f, const char *key); /* NULL when absent */
void ct_safetensors_free(ct_st_file *f);

/* Training checkpoints: a safetensors file that PyTorch can read, holding
 *   <layer>.weight, <layer>.bias               the parameters (state_dict names)
 *   optim.<layer>.weight.<slot>, ...bias.<slot>  optimizer state, named after
 *                                              PyTorch's (exp_avg, exp_avg_sq,
 *                                              momentum_buffer, square_avg)
 *   __metadata__  format "cutrain-checkpoint", the model description, step,
 *                 epoch, seed, and "cutrain.state.N": the exact position of
 *                 the run (counters, the epoch's running sums and the health
 *                 checks' windows, doubles in hex) in chunks of text.
 * The RNG needs no state of its own: every draw is a function of (seed,
 * stream, counter), and the counters are the step and the epoch. Resuming
 * from a checkpoint therefore gives the step records that the run would have
 * written had it never stopped (same device, same thread count). */
struct ct_model;

typedef struct ct_train_state {
    uint64_t seed;
    uint64_t step;            /* steps done in all                                   */
    uint32_t epoch;           /* the epoch the next step belongs to (1-based)        */
    uint64_t epoch_steps;     /* steps of that epoch already done                    */
    uint64_t schedule_steps;  /* the learning-rate schedule's length                 */
    int batch_size;
    int drop_last;
    uint64_t train_count;     /* training items, and a CRC-32 of their pixels and */
    uint32_t train_crc;       /* labels: a resume on other data is refused        */
    double ep_loss, ep_correct; /* this epoch's running sums, as the epoch record needs */
    uint64_t ep_samples, ep_empty, ep_skipped;
    double train_seconds;
    uint64_t optim_t;         /* the optimizer's count of updates (Adam's t)          */
    ct_health health;         /* the checks' windows and what they have said */
} ct_train_state;

/* Writes the model's parameters, optimizer state and `st` atomically. */
int ct_checkpoint_save(struct ct_model *m, const ct_train_state *st, const char *path, ct_error *err);
/* Loads a checkpoint written for this model (its description must match):
 * parameters and optimizer state into the model, the rest into `st`.
 * st->health must be initialised (ct_health_init) for this run: its
 * configuration is kept and only its state is restored. */
int ct_checkpoint_load(struct ct_model *m, ct_train_state *st, const char *path, ct_error *err);

#ifdef __cplusplus
}
#endif
#endif
