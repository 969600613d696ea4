/* Optimizer configuration: Keras 3 defaults, names, and state size.
 *
 * The defaults are Keras's own (keras/src/optimizers/), so a recipe
 * written for Keras ("Adam, default settings") means the same thing here.
 */
#include "cutrain/optim.h"

#include <ctype.h>
#include <stddef.h>

/* Indexed by ct_optimizer_kind; also the spellings parse_kind accepts. */
static const char *const kind_names[] = {"sgd", "adam", "adamw", "rmsprop"};
#define KIND_COUNT ((int)(sizeof kind_names / sizeof kind_names[0]))

ct_optim_config ct_optim_defaults(ct_optimizer_kind kind) {
    /* Every field starts at zero so that parameters a rule does not use stay
     * inert; clip_norm 0 and skip_nonfinite 0 are Keras's behaviour too. */
    ct_optim_config c = {0};
    c.kind = kind;
    switch (kind) {
    case CT_OPT_SGD:
        c.lr = 0.01f;
        break;
    case CT_OPT_ADAM:
    case CT_OPT_ADAMW:
        c.lr = 1e-3f;
        c.beta1 = 0.9f;
        c.beta2 = 0.999f;
        c.eps = 1e-7f;
        /* Decoupled decay is the only difference; plain Adam has none. */
        if (kind == CT_OPT_ADAMW) c.weight_decay = 0.004f;
        break;
    case CT_OPT_RMSPROP:
        c.lr = 1e-3f;
        c.rho = 0.9f;
        c.eps = 1e-7f;
        break;
    }
    return c;
}

/* ASCII case-insensitive equality; locale-independent on purpose, so that a
 * config file parses the same way under every LANG. */
static int name_equal(const char *a, const char *b) {
    for (; *a && *b; ++a, ++b)
        if (tolower((unsigned char)*a) != tolower((unsigned char)*b)) return 0;
    return *a == *b;
}

int ct_optim_parse_kind(const char *name) {
    if (!name) return -1;
    for (int k = 0; k < KIND_COUNT; ++k)
        if (name_equal(name, kind_names[k])) return k;
    return -1;
}

const char *ct_optim_kind_name(ct_optimizer_kind kind) {
    if ((int)kind < 0 || (int)kind >= KIND_COUNT) return "unknown";
    return kind_names[kind];
}

int ct_optim_state_slots(const ct_optim_config *cfg) {
    switch (cfg->kind) {
    case CT_OPT_SGD:
        return cfg->momentum > 0.0f ? 1 : 0; /* velocity */
    case CT_OPT_ADAM:
    case CT_OPT_ADAMW:
        return 2; /* m, v */
    case CT_OPT_RMSPROP:
        return cfg->momentum > 0.0f ? 2 : 1; /* mean square, then momentum buffer */
    }
    return 0;
}
