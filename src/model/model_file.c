/* The model-file format (docs/model-format.md): one directive per line,
 * Keras's vocabulary, '#' comments.
 *
 *   input 784
 *   dense 512 relu
 *   dropout 0.2
 *   dense 10 softmax
 *   loss categorical_crossentropy
 *   optimizer adam lr=0.001
 *   batch_size 128
 *
 * Errors name "<file>:<line>:" and what was expected there. */
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "cutrain/model.h"
#include "src/io/parse.h"

#define MAX_TOKENS 16
#define MAX_FILE_BYTES (1 << 20)

typedef struct parser {
    const char *path;
    int line;
    ct_model_spec *spec;
    int seen_input, seen_loss, seen_optimizer, seen_batch, seen_init, seen_schedule;
    ct_error *err;
} parser;

#define PFAIL(p, ...) fail_at((p), __VA_ARGS__)

static int fail_at(parser *p, const char *fmt, ...) CT_PRINTF(2, 3);

static int fail_at(parser *p, const char *fmt, ...) {
    char what[480];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    return ct_fail(p->err, CT_EXIT_BAD_INPUT, "%s:%d: %s", p->path, p->line, what);
}

static int split(char *line, char **tok) {
    int n = 0;
    for (char *s = strtok(line, " \t\r"); s; s = strtok(NULL, " \t\r")) {
        if (n == MAX_TOKENS) return -1;
        tok[n++] = s;
    }
    return n;
}

/* name=NAME names the saved tensors ("NAME.weight") and the JSONL's per-layer
 * norms, so it must be plain text that fits: never truncated, never bytes a
 * safetensors header or a JSON key cannot hold. */
static int parse_name(parser *p, const char *v, char *out, size_t cap) {
    size_t n = strlen(v);
    int ok = n >= 1 && n < cap;
    for (size_t i = 0; ok && i < n; ++i) {
        char c = v[i];
        ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-' ||
             c == '.';
    }
    if (!ok) return PFAIL(p, "name: expected 1 to %zu letters, digits, '_', '-' or '.', got '%s'", cap - 1, v);
    /* "optim.*" tensors are a checkpoint's optimizer state. */
    if (strcmp(v, "optim") == 0 || strncmp(v, "optim.", 6) == 0)
        return PFAIL(p, "name: '%s' is taken (a checkpoint's optimizer state is stored as optim.*)", v);
    memcpy(out, v, n + 1);
    return 0;
}

static int parse_units(parser *p, const char *s, const char *what, int *out) {
    long v;
    if (ct_parse_long(s, 1, 1 << 20, &v) != 0)
        return PFAIL(p, "%s: expected a whole number from 1 to %d, got '%s'", what, 1 << 20, s);
    *out = (int)v;
    return 0;
}

static int directive_dense(parser *p, char **tok, int n) {
    ct_model_spec *s = p->spec;
    if (s->n_layers == CT_MAX_LAYERS) return PFAIL(p, "too many layers (at most %d)", CT_MAX_LAYERS);
    if (n < 2) return PFAIL(p, "dense: expected 'dense UNITS [ACTIVATION] [name=NAME]'");
    ct_layer_spec l;
    memset(&l, 0, sizeof l);
    l.kind = CT_LAYER_DENSE;
    if (parse_units(p, tok[1], "dense units", &l.units)) return -1;
    int seen_act = 0, seen_name = 0;
    for (int i = 2; i < n; ++i) {
        const char *v = tok[i];
        if (strncasecmp(v, "activation=", 11) == 0) v += 11;
        if (strncasecmp(v, "name=", 5) == 0) {
            if (seen_name++) return PFAIL(p, "dense: name given twice");
            if (parse_name(p, v + 5, l.name, sizeof l.name)) return -1;
            continue;
        }
        if (strchr(v, '=')) return PFAIL(p, "dense: unknown setting '%s' (expected name=NAME or activation=NAME)", v);
        int act = ct_activation_parse(v);
        if (act < 0)
            return PFAIL(p, "dense: unknown activation '%s' (expected linear, relu, sigmoid, tanh or softmax)", v);
        if (seen_act++) return PFAIL(p, "dense: two activations ('%s' after '%s'); a layer has one", v, ct_activation_name(l.act));
        l.act = (ct_activation)act;
    }
    s->layers[s->n_layers++] = l;
    return 0;
}

static int directive_dropout(parser *p, char **tok, int n) {
    ct_model_spec *s = p->spec;
    if (s->n_layers == CT_MAX_LAYERS) return PFAIL(p, "too many layers (at most %d)", CT_MAX_LAYERS);
    double rate;
    const char *v = n >= 2 ? tok[1] : "";
    if (strncasecmp(v, "rate=", 5) == 0) v += 5;
    if (n < 2 || n > 3 || ct_parse_double(v, &rate) != 0 || rate < 0.0 || rate >= 1.0)
        return PFAIL(p, "dropout: expected 'dropout RATE' with RATE in [0, 1), got '%s'", v);
    ct_layer_spec l;
    memset(&l, 0, sizeof l);
    l.kind = CT_LAYER_DROPOUT;
    l.rate = (float)rate;
    if (n == 3) {
        if (strncasecmp(tok[2], "name=", 5) != 0) return PFAIL(p, "dropout: unexpected '%s'", tok[2]);
        if (parse_name(p, tok[2] + 5, l.name, sizeof l.name)) return -1;
    }
    s->layers[s->n_layers++] = l;
    return 0;
}

/* Whether the key=value settings tok[2 .. i-1] already hold tok[i]'s key
 * (its first kl bytes). */
static int key_said_before(char **tok, int i, size_t kl) {
    for (int j = 2; j < i; ++j)
        if (strcspn(tok[j], "=") == kl && strncasecmp(tok[j], tok[i], kl) == 0) return 1;
    return 0;
}

/* The one name of an optimizer setting that Keras also spells another way
 * (learning_rate, beta_1, beta_2, epsilon, global_clipnorm): both spellings
 * set the same field, so saying both is saying it twice. */
static void optimizer_key_name(const char *key, size_t kl, char out[32]) {
    static const char *const alias[][2] = {{"learning_rate", "lr"}, {"beta_1", "beta1"}, {"beta_2", "beta2"},
                                           {"epsilon", "eps"},      {"global_clipnorm", "clipnorm"}};
    snprintf(out, 32, "%.*s", (int)kl, key);
    for (char *c = out; *c; ++c) *c = (char)tolower((unsigned char)*c);
    for (size_t i = 0; i < sizeof alias / sizeof alias[0]; ++i)
        if (strcmp(out, alias[i][0]) == 0) snprintf(out, 32, "%s", alias[i][1]);
}

/* The index of an earlier key=value of tok[2..i) that sets what tok[i]
 * sets, or 0. */
static int optimizer_key_said_before(char **tok, int i) {
    char name[32], other[32];
    optimizer_key_name(tok[i], strcspn(tok[i], "="), name);
    for (int j = 2; j < i; ++j) {
        optimizer_key_name(tok[j], strcspn(tok[j], "="), other);
        if (strcmp(other, name) == 0) return j;
    }
    return 0;
}

/* The settings each optimizer reads (kernels/cpu/optim_cpu.c); a key it
 * does not read would be dropped without a word. weight_decay is left to
 * ct_model_spec_validate, which says it is adamw's. */
static int optimizer_uses(ct_optimizer_kind kind, const char *key) {
    static const char *const sgd[] = {"lr", "learning_rate", "momentum", "nesterov", NULL};
    static const char *const adam[] = {"lr", "learning_rate", "beta1", "beta_1", "beta2", "beta_2", "eps", "epsilon", NULL};
    static const char *const rmsprop[] = {"lr", "learning_rate", "rho", "momentum", "eps", "epsilon", NULL};
    if (strcasecmp(key, "weight_decay") == 0 || strcasecmp(key, "clipnorm") == 0 ||
        strcasecmp(key, "global_clipnorm") == 0)
        return 1;
    const char *const *keys = kind == CT_OPT_SGD ? sgd : kind == CT_OPT_RMSPROP ? rmsprop : adam;
    for (; *keys; ++keys)
        if (strcasecmp(key, *keys) == 0) return 1;
    return 0;
}

/* key=value settings of the optimizer line. */
static int optimizer_option(parser *p, ct_optim_config *o, const char *kv) {
    const char *eq = strchr(kv, '=');
    if (!eq) return PFAIL(p, "optimizer: expected key=value, got '%s'", kv);
    char key[32];
    snprintf(key, sizeof key, "%.*s", (int)(eq - kv), kv);
    double v;
    if (ct_parse_double(eq + 1, &v) != 0) return PFAIL(p, "optimizer: %s: expected a number, got '%s'", key, eq + 1);
    struct { const char *name; float *field; double lo, hi; } opts[] = {
        {"lr", &o->lr, 0, 10},          {"learning_rate", &o->lr, 0, 10},
        {"momentum", &o->momentum, 0, 1}, {"beta1", &o->beta1, 0, 1},
        {"beta_1", &o->beta1, 0, 1},    {"beta2", &o->beta2, 0, 1},
        {"beta_2", &o->beta2, 0, 1},    {"eps", &o->eps, 0, 1},
        {"epsilon", &o->eps, 0, 1},     {"rho", &o->rho, 0, 1},
        {"weight_decay", &o->weight_decay, 0, 1}, {"clipnorm", &o->clip_norm, 0, 1e12},
        {"global_clipnorm", &o->clip_norm, 0, 1e12},
    };
    if (strcasecmp(key, "nesterov") == 0) {
        if (v != 0 && v != 1) return PFAIL(p, "optimizer: nesterov: expected 0 or 1, got '%s'", eq + 1);
        o->nesterov = (int)v;
        return 0;
    }
    for (size_t i = 0; i < sizeof opts / sizeof opts[0]; ++i) {
        if (strcasecmp(key, opts[i].name) != 0) continue;
        int open_low = strcmp(opts[i].name, "lr") == 0 || strcmp(opts[i].name, "learning_rate") == 0;
        if (v < opts[i].lo || v >= opts[i].hi || (open_low && v == 0))
            return PFAIL(p, "optimizer: %s=%s is out of range (expected a value in %c%g, %g))", key, eq + 1,
                         open_low ? '(' : '[', opts[i].lo, opts[i].hi);
        if (v > 0 && (float)v == 0.0f)
            return PFAIL(p, "optimizer: %s=%s is below what float32 can hold (it would be 0)", key, eq + 1);
        *opts[i].field = (float)v;
        return 0;
    }
    return PFAIL(p, "optimizer: unknown setting '%s' (expected lr, momentum, nesterov, beta1, beta2, eps, rho, "
                    "weight_decay or clipnorm)", key);
}

/* "3" or "3x3" or "3x2". */
static int parse_kernel(parser *p, const char *s, int *kh, int *kw) {
    char a[16], b[16];
    const char *x = strchr(s, 'x');
    long h, w;
    if (!x) {
        if (ct_parse_long(s, 1, 64, &h)) return PFAIL(p, "conv2d: kernel: expected N or NxM (1 to 64), got '%s'", s);
        *kh = *kw = (int)h;
        return 0;
    }
    snprintf(a, sizeof a, "%.*s", (int)(x - s) < 15 ? (int)(x - s) : 15, s);
    snprintf(b, sizeof b, "%s", x + 1);
    if (ct_parse_long(a, 1, 64, &h) || ct_parse_long(b, 1, 64, &w))
        return PFAIL(p, "conv2d: kernel: expected N or NxM (1 to 64), got '%s'", s);
    *kh = (int)h, *kw = (int)w;
    return 0;
}

/* conv2d FILTERS KERNEL [ACTIVATION] [stride=N] [padding=N] [name=NAME] */
static int directive_conv(parser *p, char **tok, int n) {
    ct_model_spec *s = p->spec;
    if (s->n_layers == CT_MAX_LAYERS) return PFAIL(p, "too many layers (at most %d)", CT_MAX_LAYERS);
    if (n < 3) return PFAIL(p, "conv2d: expected 'conv2d FILTERS KERNEL [ACTIVATION] [stride=N] [padding=N]'");
    ct_layer_spec l;
    memset(&l, 0, sizeof l);
    l.kind = CT_LAYER_CONV2D;
    l.stride = 1;
    if (parse_units(p, tok[1], "conv2d filters", &l.units) || parse_kernel(p, tok[2], &l.kh, &l.kw)) return -1;
    int seen[4] = {0}; /* activation, name, stride, padding */
    static const char *const what[4] = {"activation", "name", "stride", "padding"};
    for (int i = 3; i < n; ++i) {
        const char *v = tok[i];
        long x;
        int k;
        if (strncasecmp(v, "activation=", 11) == 0) v += 11;
        if (strncasecmp(v, "name=", 5) == 0) {
            k = 1;
            if (!seen[k] && parse_name(p, v + 5, l.name, sizeof l.name)) return -1;
        } else if (strncasecmp(v, "stride=", 7) == 0 || strncasecmp(v, "strides=", 8) == 0) {
            k = 2;
            if (ct_parse_long(strchr(v, '=') + 1, 1, 64, &x)) return PFAIL(p, "conv2d: stride: expected 1 to 64, got '%s'", v);
            if (!seen[k]) l.stride = (int)x;
        } else if (strncasecmp(v, "padding=", 8) == 0) {
            k = 3;
            if (ct_parse_long(v + 8, 0, 64, &x)) return PFAIL(p, "conv2d: padding: expected 0 to 64, got '%s'", v);
            if (!seen[k]) l.pad = (int)x;
        } else if (strchr(v, '=')) {
            return PFAIL(p, "conv2d: unknown setting '%s' (expected stride=, padding=, name= or activation=)", v);
        } else {
            k = 0;
            int act = ct_activation_parse(v);
            if (act < 0 || act == CT_ACT_SOFTMAX)
                return PFAIL(p, "conv2d: unknown activation '%s' (expected linear, relu, sigmoid or tanh)", v);
            if (!seen[k]) l.act = (ct_activation)act;
        }
        if (seen[k]++) return PFAIL(p, "conv2d: %s given twice", what[k]);
    }
    s->layers[s->n_layers++] = l;
    return 0;
}

static int directive_simple(parser *p, char **tok, int n, ct_layer_kind kind) {
    ct_model_spec *s = p->spec;
    if (s->n_layers == CT_MAX_LAYERS) return PFAIL(p, "too many layers (at most %d)", CT_MAX_LAYERS);
    ct_layer_spec l;
    memset(&l, 0, sizeof l);
    l.kind = kind;
    int first = 1;
    if (kind == CT_LAYER_MAXPOOL2D) {
        long size;
        if (n < 2 || ct_parse_long(tok[1], 1, 64, &size))
            return PFAIL(p, "maxpool2d: expected 'maxpool2d SIZE' with SIZE 1 to 64, got '%s'", n < 2 ? "" : tok[1]);
        l.kh = l.kw = (int)size;
        first = 2;
    }
    for (int i = first; i < n; ++i) {
        if (strncasecmp(tok[i], "name=", 5) != 0) return PFAIL(p, "%s: unexpected '%s'", tok[0], tok[i]);
        if (parse_name(p, tok[i] + 5, l.name, sizeof l.name)) return -1;
    }
    s->layers[s->n_layers++] = l;
    return 0;
}

static int directive_optimizer(parser *p, char **tok, int n) {
    if (n < 2) return PFAIL(p, "optimizer: expected 'optimizer NAME [key=value ...]'");
    int kind = ct_optim_parse_kind(tok[1]);
    if (kind < 0) return PFAIL(p, "optimizer: unknown optimizer '%s' (expected sgd, adam, adamw or rmsprop)", tok[1]);
    ct_optim_config o = ct_optim_defaults((ct_optimizer_kind)kind);
    for (int i = 2; i < n; ++i) {
        if (optimizer_option(p, &o, tok[i])) return -1;
        const size_t kl = strcspn(tok[i], "="); /* optimizer_option checked the key: under 32 bytes */
        char key[32];
        snprintf(key, sizeof key, "%.*s", (int)kl, tok[i]);
        if (!optimizer_uses((ct_optimizer_kind)kind, key))
            return PFAIL(p, "optimizer: %s does not use %s", ct_optim_kind_name((ct_optimizer_kind)kind), key);
        int j = optimizer_key_said_before(tok, i);
        if (j && strcspn(tok[j], "=") == kl && strncasecmp(tok[j], tok[i], kl) == 0)
            return PFAIL(p, "optimizer: %.*s given twice", (int)kl, tok[i]);
        if (j)
            return PFAIL(p, "optimizer: %.*s given twice (as %.*s and %.*s, two names for one setting)", (int)kl,
                         tok[i], (int)strcspn(tok[j], "="), tok[j], (int)kl, tok[i]);
    }
    if (o.nesterov && o.momentum == 0.0f)
        return PFAIL(p, "optimizer: nesterov=1 needs momentum above 0 (Nesterov's step is a momentum step)");
    p->spec->optim = o;
    p->seen_optimizer = 1;
    return 0;
}

/* v as a whole number of steps (0 .. 2^63) into *out; -1 when it is not one.
 * The range test comes first: converting a double outside uint64_t's range
 * is undefined behaviour (the fuzzer found step_size=1e108). */
static int whole_steps(double v, uint64_t *out) {
    if (!(v >= 0.0 && v < 9223372036854775808.0)) return -1;
    const uint64_t u = (uint64_t)v;
    if ((double)u != v) return -1;
    *out = u;
    return 0;
}

/* schedule KIND [key=value ...]: keys pct, div, final_div, step_size, gamma, final_frac, total_steps. */
static int directive_schedule(parser *p, char **tok, int n) {
    static const char *const kinds[] = {"constant", "step", "cosine", "onecycle"};
    int kind = -1;
    for (int k = 0; n >= 2 && k < 4; ++k)
        if (strcasecmp(tok[1], kinds[k]) == 0) kind = k;
    if (kind < 0) return PFAIL(p, "schedule: expected constant, step, cosine or onecycle, got '%s'", n < 2 ? "" : tok[1]);
    ct_schedule sc = ct_schedule_defaults((ct_schedule_kind)kind);
    for (int i = 2; i < n; ++i) {
        const char *eq = strchr(tok[i], '=');
        double v;
        if (!eq || ct_parse_double(eq + 1, &v) || v < 0) return PFAIL(p, "schedule: expected key=number, got '%s'", tok[i]);
        size_t kl = (size_t)(eq - tok[i]);
#define KEY(name) (kl == strlen(name) && strncasecmp(tok[i], name, kl) == 0)
        if (KEY("pct") && v > 0 && v < 1) sc.pct = (float)v;
        else if (KEY("div") && v >= 1) sc.div = (float)v;
        else if (KEY("final_div") && v >= 1) sc.final_div = (float)v;
        else if (KEY("gamma") && v > 0 && v <= 1) sc.gamma = (float)v;
        else if (KEY("final_frac") && v <= 1) sc.final_frac = (float)v;
        else if (KEY("step_size") && v >= 1 && whole_steps(v, &sc.step_size) == 0) { /* set */ }
        else if (KEY("total_steps") && whole_steps(v, &sc.total_steps) == 0) { /* set */ }
        else return PFAIL(p, "schedule: '%s' is not a known setting or is out of range", tok[i]);
#undef KEY
        static const char *const uses[4] = {"", " step_size gamma ", " total_steps final_frac ",
                                            " total_steps pct div final_div "};
        char key[40];
        snprintf(key, sizeof key, " %.*s ", (int)(kl < 30 ? kl : 30), tok[i]);
        if (!strstr(uses[kind], key))
            return PFAIL(p, "schedule: %s has no setting %.*s (its settings:%.*s)", kinds[kind], (int)kl, tok[i],
                         kind ? (int)strlen(uses[kind]) - 1 : 5, kind ? uses[kind] : " none");
        if (key_said_before(tok, i, kl)) return PFAIL(p, "schedule: %.*s given twice", (int)kl, tok[i]);
    }
    p->spec->optim.schedule = sc;
    p->seen_schedule = 1;
    return 0;
}

static int expect_args(parser *p, const char *what, int n, int want) {
    return n == want ? 0 : PFAIL(p, "%s: expected %d value%s, got %d", what, want - 1, want == 2 ? "" : "s", n - 1);
}

static int directive(parser *p, char **tok, int n) {
    ct_model_spec *s = p->spec;
    const char *d = tok[0];
    if (strcasecmp(d, "input") == 0) {
        if (p->seen_input) return PFAIL(p, "input: given twice");
        if (s->n_layers) return PFAIL(p, "input: must come before the first layer");
        if (n != 2 && n != 4) return PFAIL(p, "input: expected 'input SIZE' or 'input CHANNELS HEIGHT WIDTH'");
        if (n == 2) {
            if (parse_units(p, tok[1], "input size", &s->input_dim)) return -1;
            s->input_c = s->input_dim, s->input_h = s->input_w = 1;
        } else if (parse_units(p, tok[1], "input channels", &s->input_c) ||
                   parse_units(p, tok[2], "input height", &s->input_h) ||
                   parse_units(p, tok[3], "input width", &s->input_w)) {
            return -1;
        } else if ((long long)s->input_c * s->input_h * s->input_w > (1 << 24)) {
            return PFAIL(p, "input: %d x %d x %d values per item is too large", s->input_c, s->input_h, s->input_w);
        } else {
            s->input_dim = s->input_c * s->input_h * s->input_w;
        }
        p->seen_input = 1;
        return 0;
    }
    if (strcasecmp(d, "conv2d") == 0) return directive_conv(p, tok, n);
    if (strcasecmp(d, "maxpool2d") == 0 || strcasecmp(d, "maxpool") == 0)
        return directive_simple(p, tok, n, CT_LAYER_MAXPOOL2D);
    if (strcasecmp(d, "flatten") == 0) return directive_simple(p, tok, n, CT_LAYER_FLATTEN);
    if (strcasecmp(d, "dense") == 0) return directive_dense(p, tok, n);
    if (strcasecmp(d, "dropout") == 0) return directive_dropout(p, tok, n);
    if (strcasecmp(d, "optimizer") == 0) {
        if (p->seen_optimizer) return PFAIL(p, "optimizer: given twice");
        ct_schedule keep = s->optim.schedule; /* the optimizer line resets the config */
        if (directive_optimizer(p, tok, n)) return -1;
        if (p->seen_schedule) s->optim.schedule = keep;
        return 0;
    }
    if (strcasecmp(d, "schedule") == 0) {
        if (p->seen_schedule) return PFAIL(p, "schedule: given twice");
        return directive_schedule(p, tok, n);
    }
    if (strcasecmp(d, "loss") == 0) {
        if (p->seen_loss) return PFAIL(p, "loss: given twice");
        if (expect_args(p, "loss", n, 2)) return -1;
        int loss = ct_loss_parse(tok[1]);
        if (loss < 0) return PFAIL(p, "loss: unknown loss '%s' (expected categorical_crossentropy or mse)", tok[1]);
        s->loss = (ct_loss_kind)loss;
        p->seen_loss = 1;
        return 0;
    }
    if (strcasecmp(d, "init") == 0 || strcasecmp(d, "kernel_initializer") == 0) {
        if (p->seen_init) return PFAIL(p, "init: given twice");
        if (expect_args(p, "init", n, 2)) return -1;
        int init = ct_init_parse(tok[1]);
        if (init < 0) return PFAIL(p, "init: unknown initializer '%s' (expected glorot_uniform, he_uniform or he_normal)", tok[1]);
        s->init = (ct_init_kind)init;
        p->seen_init = 1;
        return 0;
    }
    if (strcasecmp(d, "batch_size") == 0) {
        if (p->seen_batch) return PFAIL(p, "batch_size: given twice");
        if (expect_args(p, "batch_size", n, 2) || parse_units(p, tok[1], "batch_size", &s->batch_size)) return -1;
        p->seen_batch = 1;
        return 0;
    }
    return PFAIL(p, "unknown directive '%s' (expected input, dense, conv2d, maxpool2d, flatten, dropout, loss, "
                    "optimizer, schedule, init or batch_size)", d);
}

#define MAX_LINE 1022

/* One line without its newline. */
static int parse_line(parser *p, char *line) {
    char *hash = strchr(line, '#');
    if (hash) *hash = '\0';
    char *tok[MAX_TOKENS];
    int n = split(line, tok);
    if (n < 0) return PFAIL(p, "too many words on one line (at most %d)", MAX_TOKENS);
    return n == 0 ? 0 : directive(p, tok, n);
}

/* getline, not fgets: it returns how many bytes it read, so a NUL byte
 * (which would silently end the line for every string function after it)
 * is seen and refused. */
static int parse_stream(parser *p, FILE *f) {
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    int rc = 0;
    while (rc == 0 && (len = getline(&line, &cap, f)) >= 0) {
        ++p->line;
        if (len > 0 && line[len - 1] == '\n') line[--len] = '\0';
        if (memchr(line, '\0', (size_t)len) != NULL)
            rc = PFAIL(p, "binary data (a NUL byte) in a text model file");
        else if (len > MAX_LINE)
            rc = PFAIL(p, "line longer than %d characters", MAX_LINE);
        /* The byte-order mark some Windows editors put first in a UTF-8 file. */
        else if (p->line == 1 && len >= 3 && memcmp(line, "\xEF\xBB\xBF", 3) == 0)
            rc = parse_line(p, line + 3);
        else
            rc = parse_line(p, line);
    }
    if (rc == 0 && ferror(f))
        rc = ct_fail(p->err, CT_EXIT_BAD_INPUT, "%s: read error: %s", p->path, strerror(errno));
    free(line);
    return rc;
}

int ct_model_spec_parse_file(const char *path, ct_model_spec *out, ct_error *err) {
    struct stat st;
    if (stat(path, &st) != 0)
        return ct_fail(err, CT_EXIT_BAD_INPUT, "%s: no such model preset or file (presets: seed, mlp, cnn)", path);
    if (!S_ISREG(st.st_mode)) return ct_fail(err, CT_EXIT_BAD_INPUT, "%s: is not a regular model file", path);
    if (st.st_size > MAX_FILE_BYTES)
        return ct_fail(err, CT_EXIT_BAD_INPUT, "%s: %lld bytes is too large for a model file (at most %d)", path,
                       (long long)st.st_size, MAX_FILE_BYTES);
    FILE *f = fopen(path, "r");
    if (!f) return ct_fail(err, CT_EXIT_BAD_INPUT, "%s: cannot open: %s", path, strerror(errno));

    ct_model_spec s;
    memset(&s, 0, sizeof s);
    s.loss = CT_LOSS_XENT;
    s.init = CT_INIT_GLOROT_UNIFORM;
    s.optim = ct_optim_defaults(CT_OPT_ADAM);
    s.batch_size = 32; /* Keras's fit() default */
    snprintf(s.name, sizeof s.name, "%s", path);
    parser p = {.path = path, .spec = &s, .err = err};
    int rc = parse_stream(&p, f);
    fclose(f);
    if (rc) return -1;
    if (!p.seen_input)
        return ct_fail(err, CT_EXIT_BAD_INPUT, "%s: no 'input SIZE' line (e.g. 'input 784' for MNIST)", path);
    if (s.n_layers == 0) return ct_fail(err, CT_EXIT_BAD_INPUT, "%s: no layers (add e.g. 'dense 10 softmax')", path);
    ct_model_spec_name_layers(&s);
    if (ct_model_spec_validate(&s, err)) return -1;
    *out = s;
    return 0;
}
