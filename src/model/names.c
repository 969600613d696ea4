/* Spellings of activations, losses and initialisers, as users type them. */
#include <string.h>
#include <strings.h>

#include "cutrain/backend.h"
#include "cutrain/model.h"

static const char *const act_names[] = {"linear", "relu", "sigmoid", "tanh", "softmax"};
static const char *const loss_names[] = {"categorical_crossentropy", "mse"};
static const char *const init_names[] = {"glorot_uniform", "he_uniform", "he_normal"};

#define COUNT(a) ((int)(sizeof(a) / sizeof((a)[0])))

static int find(const char *const *names, int n, const char *s) {
    for (int i = 0; i < n; ++i)
        if (strcasecmp(names[i], s) == 0) return i;
    return -1;
}

const char *ct_activation_name(ct_activation act) {
    return (int)act >= 0 && (int)act < COUNT(act_names) ? act_names[act] : "?";
}

int ct_activation_parse(const char *name) {
    if (strcasecmp(name, "none") == 0) return CT_ACT_LINEAR;
    return find(act_names, COUNT(act_names), name);
}

const char *ct_loss_name(ct_loss_kind loss) {
    return (int)loss >= 0 && (int)loss < COUNT(loss_names) ? loss_names[loss] : "?";
}

int ct_loss_parse(const char *name) {
    /* Labels are integers, so Keras's sparse_ spelling means the same loss. */
    static const char *const xent_aliases[] = {"categorical_crossentropy", "sparse_categorical_crossentropy",
                                               "crossentropy", "xent", "cross_entropy"};
    static const char *const mse_aliases[] = {"mse", "mean_squared_error"};
    if (find(xent_aliases, COUNT(xent_aliases), name) >= 0) return CT_LOSS_XENT;
    if (find(mse_aliases, COUNT(mse_aliases), name) >= 0) return CT_LOSS_MSE;
    return -1;
}

const char *ct_init_name(ct_init_kind init) {
    return (int)init >= 0 && (int)init < COUNT(init_names) ? init_names[init] : "?";
}

int ct_init_parse(const char *name) {
    if (strcasecmp(name, "glorot") == 0 || strcasecmp(name, "xavier") == 0) return CT_INIT_GLOROT_UNIFORM;
    if (strcasecmp(name, "he") == 0) return CT_INIT_HE_UNIFORM;
    return find(init_names, COUNT(init_names), name);
}
