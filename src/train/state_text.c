/* ct_train_state <-> text. The health window is the one variable-length
 * part (up to CT_HEALTH_MAX_WINDOW doubles), so the text grows as needed. */
#include "src/train/state_text.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* 2 added h.nonfinite_run, 3 h.chance_half (the chance block's first half:
 * its length and loss sum) and h.test_loss_said; older states still resume. */
#define STATE_VERSION 3

typedef struct text {
    char *s;
    size_t len, cap;
    int oom;
} text;

static void put(text *t, const char *fmt, ...) CT_PRINTF(2, 3);

static void put(text *t, const char *fmt, ...) {
    if (t->oom) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(t->s + t->len, t->cap - t->len, fmt, ap);
        va_end(ap);
        if (n < 0) {
            t->oom = 1;
            return;
        }
        if ((size_t)n < t->cap - t->len) {
            t->len += (size_t)n;
            return;
        }
        size_t cap = 2 * t->cap + (size_t)n + 1;
        char *s = realloc(t->s, cap);
        if (!s) {
            t->oom = 1;
            return;
        }
        t->s = s;
        t->cap = cap;
    }
}

static void put_u64(text *t, const char *name, uint64_t v) { put(t, "%s %" PRIu64 "\n", name, v); }
static void put_f64(text *t, const char *name, double v) { put(t, "%s %a\n", name, v); }

char *ct_train_state_format(const ct_train_state *st) {
    text t = {malloc(1024), 0, 1024, 0};
    if (!t.s) return NULL;
    t.s[0] = '\0';
    const ct_health *h = &st->health;
    put_u64(&t, "version", STATE_VERSION);
    put_u64(&t, "seed", st->seed);
    put_u64(&t, "step", st->step);
    put_u64(&t, "epoch", st->epoch);
    put_u64(&t, "epoch_steps", st->epoch_steps);
    put_u64(&t, "schedule_steps", st->schedule_steps);
    put_u64(&t, "batch_size", (uint64_t)st->batch_size);
    put_u64(&t, "drop_last", (uint64_t)st->drop_last);
    put_u64(&t, "train_count", st->train_count);
    put_u64(&t, "train_crc", st->train_crc);
    put_f64(&t, "ep_loss", st->ep_loss);
    put_f64(&t, "ep_correct", st->ep_correct);
    put_u64(&t, "ep_samples", st->ep_samples);
    put_u64(&t, "ep_empty", st->ep_empty);
    put_u64(&t, "ep_skipped", st->ep_skipped);
    put_f64(&t, "train_seconds", st->train_seconds);
    put_u64(&t, "h.stop", (uint64_t)h->stop);
    put_u64(&t, "h.nonfinite_steps", h->nonfinite_steps);
    put_u64(&t, "h.skipped_steps", h->skipped_steps);
    put_u64(&t, "h.empty_batches", h->empty_batches);
    put_u64(&t, "h.nonfinite_said", (uint64_t)h->nonfinite_said);
    put_u64(&t, "h.vanishing_said", (uint64_t)h->vanishing_said);
    put_u64(&t, "h.explode_said", (uint64_t)h->explode_said);
    put_u64(&t, "h.chance_said", (uint64_t)h->chance_said);
    put_u64(&t, "h.dead_said", h->dead_said);
    put_u64(&t, "h.vanishing_run", (uint64_t)h->vanishing_run);
    put_f64(&t, "h.vanishing_log_sum", h->vanishing_log_sum);
    put_f64(&t, "h.vanishing_log_grad", h->vanishing_log_grad);
    put_f64(&t, "h.vanishing_log_weight", h->vanishing_log_weight);
    put(&t, "h.dead_run %d", h->n_layers);
    for (int i = 0; i < h->n_layers; ++i) put(&t, " %d", h->dead_run[i]);
    put(&t, "\n");
    put(&t, "h.norms %d %d %d", h->cfg.explode_window, h->norms_n, h->norms_at);
    for (int i = 0; i < h->cfg.explode_window; ++i) put(&t, " %a", h->norms[i]);
    put(&t, "\n");
    put_u64(&t, "h.chance_run", (uint64_t)h->chance_run);
    put_f64(&t, "h.chance_loss_sum", h->chance_loss_sum);
    put_u64(&t, "h.nonfinite_run", (uint64_t)h->nonfinite_run);
    /* The half's length with its sum: a run resumed with another
     * --health-chance-window has other halves, and must not read this sum
     * as one of them. */
    put(&t, "h.chance_half %d %a\n", h->cfg.chance_window / 2, h->chance_half_sum);
    put_u64(&t, "h.test_loss_said", (uint64_t)h->test_loss_said);
    if (t.oom) {
        free(t.s);
        return NULL;
    }
    return t.s;
}

typedef struct reader {
    const char *p;
    const char *path;
    const char *field; /* the field being read, for errors */
    ct_error *err;
    int failed;
} reader;

static int bad(reader *r, const char *what) {
    if (!r->failed)
        ct_fail(r->err, CT_EXIT_BAD_INPUT, "%s: checkpoint state, field '%s': %s", r->path, r->field, what);
    r->failed = 1;
    return -1;
}

/* The next line must start with `name` and a space. */
static int expect(reader *r, const char *name) {
    if (r->failed) return -1;
    r->field = name;
    size_t n = strlen(name);
    if (strncmp(r->p, name, n) != 0 || r->p[n] != ' ') return bad(r, "missing or out of order");
    r->p += n + 1;
    return 0;
}

static uint64_t get_u64(reader *r, uint64_t max) {
    if (r->failed) return 0;
    if (*r->p < '0' || *r->p > '9') return (uint64_t)bad(r, "expected an unsigned integer");
    errno = 0;
    char *end;
    unsigned long long v = strtoull(r->p, &end, 10);
    if (errno || v > max) return (uint64_t)bad(r, "value out of range");
    r->p = end;
    return v;
}

static double get_f64(reader *r) {
    if (r->failed) return 0;
    char *end;
    double v = strtod(r->p, &end);
    if (end == r->p) return bad(r, "expected a number");
    r->p = end;
    return v;
}

static void space(reader *r) {
    if (!r->failed && *r->p++ != ' ') bad(r, "expected a space");
}

static void eol(reader *r) {
    if (!r->failed && *r->p++ != '\n') bad(r, "expected the end of the line");
}

static uint64_t line_u64(reader *r, const char *name, uint64_t max) {
    if (expect(r, name)) return 0;
    uint64_t v = get_u64(r, max);
    eol(r);
    return v;
}

static double line_f64(reader *r, const char *name) {
    if (expect(r, name)) return 0;
    double v = get_f64(r);
    eol(r);
    return v;
}

int ct_train_state_parse(const char *src, ct_train_state *st, const char *path, ct_error *err) {
    reader r = {src, path, "version", err, 0};
    const uint64_t version = line_u64(&r, "version", UINT32_MAX);
    if ((version < 1 || version > STATE_VERSION) && !r.failed)
        return bad(&r, "written by another version of cutrain (expected 1 to 3)");
    ct_health *h = &st->health;
    st->seed = line_u64(&r, "seed", UINT64_MAX);
    st->step = line_u64(&r, "step", UINT64_MAX);
    st->epoch = (uint32_t)line_u64(&r, "epoch", UINT32_MAX);
    st->epoch_steps = line_u64(&r, "epoch_steps", UINT64_MAX);
    st->schedule_steps = line_u64(&r, "schedule_steps", UINT64_MAX);
    st->batch_size = (int)line_u64(&r, "batch_size", INT32_MAX);
    st->drop_last = (int)line_u64(&r, "drop_last", 1);
    st->train_count = line_u64(&r, "train_count", UINT64_MAX);
    st->train_crc = (uint32_t)line_u64(&r, "train_crc", UINT32_MAX);
    st->ep_loss = line_f64(&r, "ep_loss");
    st->ep_correct = line_f64(&r, "ep_correct");
    st->ep_samples = line_u64(&r, "ep_samples", UINT64_MAX);
    st->ep_empty = line_u64(&r, "ep_empty", UINT64_MAX);
    st->ep_skipped = line_u64(&r, "ep_skipped", UINT64_MAX);
    st->train_seconds = line_f64(&r, "train_seconds");
    h->stop = (int)line_u64(&r, "h.stop", 1);
    h->nonfinite_steps = line_u64(&r, "h.nonfinite_steps", UINT64_MAX);
    h->skipped_steps = line_u64(&r, "h.skipped_steps", UINT64_MAX);
    h->empty_batches = line_u64(&r, "h.empty_batches", UINT64_MAX);
    h->nonfinite_said = (int)line_u64(&r, "h.nonfinite_said", 1);
    h->vanishing_said = (int)line_u64(&r, "h.vanishing_said", 1);
    h->explode_said = (int)line_u64(&r, "h.explode_said", 1);
    h->chance_said = (int)line_u64(&r, "h.chance_said", 1);
    h->dead_said = (uint32_t)line_u64(&r, "h.dead_said", UINT32_MAX);
    h->vanishing_run = (int)line_u64(&r, "h.vanishing_run", INT32_MAX);
    h->vanishing_log_sum = line_f64(&r, "h.vanishing_log_sum");
    h->vanishing_log_grad = line_f64(&r, "h.vanishing_log_grad");
    h->vanishing_log_weight = line_f64(&r, "h.vanishing_log_weight");
    if (expect(&r, "h.dead_run") == 0 && get_u64(&r, CT_MAX_PARAM_LAYERS) != (uint64_t)h->n_layers && !r.failed)
        bad(&r, "a different number of layers than this model has");
    for (int i = 0; i < h->n_layers && !r.failed; ++i) {
        space(&r);
        h->dead_run[i] = (int)get_u64(&r, INT32_MAX);
    }
    eol(&r);
    if (expect(&r, "h.norms") == 0) {
        int window = (int)get_u64(&r, CT_HEALTH_MAX_WINDOW);
        space(&r);
        int n = (int)get_u64(&r, (uint64_t)window);
        space(&r);
        int at = (int)get_u64(&r, window ? (uint64_t)window - 1 : 0);
        double norms[CT_HEALTH_MAX_WINDOW];
        for (int i = 0; i < window && !r.failed; ++i) {
            space(&r);
            norms[i] = get_f64(&r);
        }
        eol(&r);
        /* A run resumed with another explode window starts its median afresh. */
        if (!r.failed && window == h->cfg.explode_window) {
            memcpy(h->norms, norms, (size_t)window * sizeof(double));
            h->norms_n = n;
            h->norms_at = at;
        } else {
            h->norms_n = h->norms_at = 0;
        }
    }
    h->chance_run = (int)line_u64(&r, "h.chance_run", INT32_MAX);
    h->chance_loss_sum = line_f64(&r, "h.chance_loss_sum");
    /* Version 1 kept no run of non-finite steps: it starts at 0. */
    h->nonfinite_run = version >= 2 ? (int)line_u64(&r, "h.nonfinite_run", INT32_MAX) : 0;
    /* Before version 3 the block's first half was not kept, and a state
     * written with another chance window kept another half: past this run's
     * half, take the block as flat so far (its mean), which judges it as
     * before; short of it, the sum is taken when the block reaches it. */
    const int half = h->cfg.chance_window / 2;
    int saved_half = -1;
    double saved_sum = 0;
    if (version >= 3 && expect(&r, "h.chance_half") == 0) {
        saved_half = (int)get_u64(&r, INT32_MAX);
        space(&r);
        saved_sum = get_f64(&r);
        eol(&r);
    }
    h->chance_half_sum = saved_half == half                   ? saved_sum
                         : half > 0 && h->chance_run >= half ? h->chance_loss_sum * half / h->chance_run
                                                             : 0;
    /* Before version 3 NONFINITE_TEST_LOSS did not exist: not yet said. */
    h->test_loss_said = version >= 3 ? (int)line_u64(&r, "h.test_loss_said", 1) : 0;
    if (!r.failed && *r.p != '\0') {
        r.field = "(end)";
        bad(&r, "unexpected text after the last field");
    }
    return r.failed ? -1 : 0;
}

void ct_optim_format(const ct_optim_config *c, char *buf, size_t len) {
    const ct_schedule *s = &c->schedule;
    snprintf(buf, len,
             "%s lr=%a momentum=%a nesterov=%d beta1=%a beta2=%a eps=%a rho=%a weight_decay=%a clip_norm=%a "
             "schedule=%d step_size=%" PRIu64 " gamma=%a pct=%a div=%a final_div=%a final_frac=%a",
             ct_optim_kind_name(c->kind), (double)c->lr, (double)c->momentum, c->nesterov, (double)c->beta1,
             (double)c->beta2, (double)c->eps, (double)c->rho, (double)c->weight_decay, (double)c->clip_norm,
             (int)s->kind, s->step_size, (double)s->gamma, (double)s->pct, (double)s->div, (double)s->final_div,
             (double)s->final_frac);
}
