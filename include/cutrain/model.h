/* Models: a description (ct_model_spec: a preset or a model file) and a built
 * model (ct_model: arenas in backend memory, planned once, so the training
 * step allocates nothing).
 *
 * Arenas: every parameter in one float arena, every gradient in a second with
 * the same layout, the optimizer state in a third, and every activation and
 * activation gradient in a fourth. A dense layer's weight is [out, in]
 * followed by its bias [out], as PyTorch's state_dict would hold them.
 */
#ifndef CUTRAIN_MODEL_H
#define CUTRAIN_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "cutrain/backend.h"
#include "cutrain/error.h"
#include "cutrain/optim.h"

#ifdef __cplusplus
extern "C" {
#endif

#define CT_MAX_LAYERS 32

typedef enum {
    CT_LAYER_DENSE = 0,
    CT_LAYER_DROPOUT,
    CT_LAYER_CONV2D,
    CT_LAYER_MAXPOOL2D,
    CT_LAYER_FLATTEN,
} ct_layer_kind;
typedef enum { CT_LOSS_XENT = 0, CT_LOSS_MSE } ct_loss_kind;
typedef enum { CT_INIT_GLOROT_UNIFORM = 0, CT_INIT_HE_UNIFORM, CT_INIT_HE_NORMAL } ct_init_kind;

typedef struct ct_layer_spec {
    ct_layer_kind kind;
    int units;          /* dense: outputs; conv2d: filters */
    ct_activation act;  /* dense, conv2d                   */
    float rate;         /* dropout: fraction dropped       */
    int kh, kw;         /* conv2d: kernel; maxpool2d: size (kh == kw) */
    int stride, pad;    /* conv2d                          */
    char name[32];      /* "dense1", "conv1", "pool1", ... */
} ct_layer_spec;

typedef struct ct_model_spec {
    char name[256];     /* preset name or model-file path */
    int input_dim;      /* values per item: input_c * input_h * input_w */
    int input_c, input_h, input_w; /* "input 784" is 784 x 1 x 1    */
    int n_layers;
    ct_layer_spec layers[CT_MAX_LAYERS];
    ct_loss_kind loss;
    ct_init_kind init;
    ct_optim_config optim;
    int batch_size;
} ct_model_spec;

/* The input as C x H x W; a spec that gives only input_dim (input_c 0) is
 * flat: input_dim x 1 x 1. */
static inline void ct_model_spec_input_shape(const ct_model_spec *s, int *c, int *h, int *w) {
    if (s->input_c == 0 && s->input_h == 0 && s->input_w == 0) {
        *c = s->input_dim, *h = 1, *w = 1;
    } else {
        *c = s->input_c, *h = s->input_h, *w = s->input_w;
    }
}

/* "seed", "mlp" or "cnn" (see DESIGN.md); -1 when the name is no preset. */
int ct_model_spec_preset(const char *name, ct_model_spec *out);
/* Parses a model file (format in docs/model-format.md). */
int ct_model_spec_parse_file(const char *path, ct_model_spec *out, ct_error *err);
/* A preset when `what` names one, else a model file. */
int ct_model_spec_resolve(const char *what, ct_model_spec *out, ct_error *err);
/* Structural checks: sizes, at least one dense layer, a dense output layer,
 * a loss that can work with that output; errors name spec->name. */
int ct_model_spec_validate(const ct_model_spec *spec, ct_error *err);
/* Output units of the last dense layer. */
int ct_model_spec_classes(const ct_model_spec *spec);
/* Fills layer names ("dense1", "dropout1", ...) where empty. */
void ct_model_spec_name_layers(ct_model_spec *spec);
/* One-line summary, e.g. "784 -> dense 512 relu -> dense 10 softmax; xent; adam lr=0.001". */
void ct_model_spec_describe(const ct_model_spec *spec, char *buf, size_t len);

const char *ct_loss_name(ct_loss_kind loss);
int ct_loss_parse(const char *name);           /* -1 when unknown */
const char *ct_init_name(ct_init_kind init);
int ct_init_parse(const char *name);           /* -1 when unknown */

typedef struct ct_layer {
    ct_layer_spec spec;
    int in_dim, out_dim;  /* values per row in and out               */
    int in_c, in_h, in_w, out_c, out_h, out_w;
    void *conv_plan;      /* conv2d: the backend's plan              */
    int param_index;      /* among parametric layers; -1 for dropout     */
    size_t w_off, b_off;  /* into the parameter arena (floats)           */
    float *y;             /* output [max_rows, out_dim]                  */
    float *dy;            /* dL/d(output), then dL/dz in backward        */
    ct_activation act_fwd; /* the activation actually applied: LINEAR for
                              a softmax output fused into the xent loss  */
} ct_layer;

typedef struct ct_model {
    ct_model_spec spec;
    ct_backend *be;
    int n_layers;
    ct_layer layers[CT_MAX_LAYERS];
    int n_param_layers;
    int param_layer[CT_MAX_PARAM_LAYERS];            /* layer index of each */
    size_t param_begin[CT_MAX_PARAM_LAYERS + 1];     /* host offsets        */
    size_t n_params;
    int classes;
    int max_rows;
    int fused_softmax_xent;

    /* backend memory, planned once in ct_model_build */
    float *params, *grads, *opt_state;
    uint64_t *opt_t;
    float *activations;     /* every layer's y and dy                    */
    float *x;               /* input batch [max_rows, input_dim]         */
    int32_t *labels;        /* [max_rows]                                */
    float *row_loss, *row_correct;
    double *eval_acc;       /* [2]: loss sum, correct                    */
    ct_step_ctx *ctx;       /* where training is: see ct_step_ctx        */
    ct_step_ctx *eval_ctx;  /* the same for evaluation passes            */
    void *workspace;        /* conv2d scratch, shared by all conv layers */
    size_t workspace_bytes;
    size_t device_bytes;    /* everything above                          */
    /* A model of dense layers only, as one op where the backend offers it
     * (ct_model_train_pass); chain_plan is NULL otherwise. */
    ct_dense_chain chain;
    void *chain_plan;
} ct_model;

/* Plans and allocates every buffer for batches of up to max_rows and
 * initialises the parameters from `seed`. */
int ct_model_build(ct_model *m, const ct_model_spec *spec, ct_backend *be, int max_rows,
                   uint64_t seed, ct_error *err);
/* Before the backend's ct_backend_destroy. Safe on a model already freed or
 * whose build failed (both are left empty). */
void ct_model_free(ct_model *m);

/* The pieces of a step, on m->x / m->labels with `rows` rows; ctx is a
 * backend pointer (m->ctx or m->eval_ctx) that dropout reads its step from. */
void ct_model_forward(ct_model *m, int rows, int train, uint64_t seed, const ct_step_ctx *ctx);
/* row_loss / row_correct, and dL/d(output) into the last layer's dy when grad. */
void ct_model_loss(ct_model *m, int rows, int grad);
/* Fills the gradient arena from the last layer's dy. */
void ct_model_backward(ct_model *m, int rows, uint64_t seed, const ct_step_ctx *ctx);

/* The batch's gather into m->x / m->labels when ds is non-NULL (as
 * gather_batch(ds, order, stride, ctx, rows, ...)), then forward (train
 * mode), loss with its gradient and backward: one op where the model is a
 * dense chain the backend plans (m->chain_plan), else the ops one by one;
 * the same values either way, within the ops' tolerances. */
void ct_model_train_pass(ct_model *m, const ct_device_dataset *ds, const int32_t *order, size_t stride, int rows,
                         uint64_t seed, const ct_step_ctx *ctx);

/* Host copies of the parameter arena (n_params floats). */
void ct_model_get_params(ct_model *m, float *host);
void ct_model_set_params(ct_model *m, const float *host);

/* Parameters to and from a safetensors file, named as PyTorch's state_dict:
 * "<layer>.weight" [out, in], "<layer>.bias" [out]. Loading checks every
 * name and shape against the model. */
int ct_model_save_weights(ct_model *m, const char *path, ct_error *err);
int ct_model_load_weights(ct_model *m, const char *path, ct_error *err);

#ifdef __cplusplus
}
#endif
#endif
