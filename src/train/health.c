/* Diagnoses from step records. Each check keeps the little state it needs
 * (has it already spoken, how long has a condition lasted) so that a
 * diagnosis is said once, at the step it became true, with the figures that
 * made it true. Codes are stable: tools match on them (docs/troubleshooting.md). */
#include "cutrain/health.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cutrain/model.h"

static const char *const policy_names[] = {"stop", "skip", "warn"};

const char *ct_nan_policy_name(ct_nan_policy p) { return (unsigned)p < 3 ? policy_names[p] : "?"; }

int ct_nan_policy_parse(const char *s) {
    for (int i = 0; i < 3; ++i)
        if (strcasecmp(s, policy_names[i]) == 0) return i;
    return -1;
}

ct_health_config ct_health_defaults(void) {
    ct_health_config c;
    memset(&c, 0, sizeof c);
    c.on_nan = CT_ON_NAN_STOP;
    c.vanishing_ratio = 1e-7;  /* healthy steps move weights by ~1e-3 of their norm */
    c.vanishing_window = 100;
    c.dead_window = 50;
    c.explode_factor = 100.0;  /* two orders of magnitude */
    c.explode_window = 20;
    c.chance_window = 200;
    c.chance_tolerance = 0.02; /* no lower than 2% below chance */
    c.nonfinite_window = 100;  /* skip or warn cannot recover from this many */
    return c;
}

void ct_health_init(ct_health *h, const ct_health_config *cfg, float lr, const char *optimizer, int classes,
                    int n_layers, const char (*layer_names)[32]) {
    memset(h, 0, sizeof *h);
    h->cfg = *cfg;
    if (h->cfg.explode_window > CT_HEALTH_MAX_WINDOW) h->cfg.explode_window = CT_HEALTH_MAX_WINDOW;
    h->lr = lr;
    h->optimizer = optimizer ? optimizer : "the optimizer";
    if (classes >= 2) {
        h->chance_loss = log((double)classes);
        snprintf(h->chance_what, sizeof h->chance_what, "ln %d", classes);
    }
    h->n_layers = n_layers < CT_MAX_PARAM_LAYERS ? n_layers : CT_MAX_PARAM_LAYERS;
    for (int i = 0; i < h->n_layers; ++i) snprintf(h->layer_names[i], 32, "%s", layer_names[i]);
}

static ct_diagnosis *emit(ct_diagnosis *out, int *n, const char *code, const char *severity,
                          const ct_step_record *r, const char *layer) {
    ct_diagnosis *d = &out[(*n)++];
    memset(d, 0, sizeof *d);
    snprintf(d->code, sizeof d->code, "%s", code);
    d->severity = severity;
    d->step = r ? r->step : 0;
    d->epoch = r ? r->epoch : 0;
    snprintf(d->layer, sizeof d->layer, "%s", layer ? layer : "");
    return d;
}

/* Where a message written by snprintf ends, for the next part to follow:
 * its length, or the last byte when it was cut. */
static size_t message_end(int written, size_t size) {
    return written > 0 && (size_t)written < size ? (size_t)written : size - 1;
}

/* One more step in a run of steps. A run only has to reach its window, but
 * one that nothing ends (a layer dead after it was named, NaN steps with the
 * nonfinite window off) would pass INT_MAX after 2^31 steps, reachable with
 * --epochs 100000 at batch 1, and its negative count would make the next
 * checkpoint one no resume takes. It stops at INT_MAX instead. */
static int count_up(int *run) {
    if (*run < INT_MAX) ++*run;
    return *run;
}

/* The first layer in backward order (the output side) whose gradient is not
 * finite: where the non-finite values entered the backward pass. */
static int first_nonfinite_layer(const ct_health *h, const ct_step_record *r) {
    int n = (int)r->n_layers < h->n_layers ? (int)r->n_layers : h->n_layers;
    for (int i = n - 1; i >= 0; --i)
        if (r->layer_nonfinite[i]) return i;
    return -1;
}

/* Under skip or warn a run can go on with every step non-finite (weights
 * so large every forward pass overflows, or NaN in them): it would end
 * "completed" having learnt nothing after the first diagnosis. A run of
 * such steps ends it like --on-nan stop. */
static void check_nonfinite_run(ct_health *h, const ct_step_record *r, ct_diagnosis *out, int *n) {
    if (h->cfg.on_nan == CT_ON_NAN_STOP || h->cfg.nonfinite_window <= 0 || h->stop ||
        h->nonfinite_run < h->cfg.nonfinite_window)
        return;
    ct_diagnosis *d = emit(out, n, "NONFINITE_PERSISTS", "error", r, NULL);
    if (h->cfg.on_nan == CT_ON_NAN_WARN)
        snprintf(d->message, sizeof d->message,
                 "step %llu: the loss or a gradient has been NaN or Inf for %d steps in a row: --on-nan warn let "
                 "NaN/Inf into the weights, and no step can recover from that; training stopped. Rerun with "
                 "--on-nan stop or skip, and lower the learning rate (now %g) or add --clip-grad-norm 1.0.",
                 (unsigned long long)r->step, h->nonfinite_run, (double)h->lr);
    else
        snprintf(d->message, sizeof d->message,
                 "step %llu: the loss or a gradient has been NaN or Inf for %d steps in a row, so --on-nan skip "
                 "has skipped every one of their updates: the weights are stuck where every step overflows; "
                 "training stopped. Lower the learning rate (now %g) or add --clip-grad-norm 1.0.",
                 (unsigned long long)r->step, h->nonfinite_run, (double)h->lr);
    h->stop = 1;
}

static void check_nonfinite(ct_health *h, const ct_step_record *r, ct_diagnosis *out, int *n) {
    if (!(r->flags & (CT_FLAG_NONFINITE_LOSS | CT_FLAG_NONFINITE_GRAD))) {
        if (!(r->flags & CT_FLAG_EMPTY_BATCH)) h->nonfinite_run = 0;
        return;
    }
    ++h->nonfinite_steps;
    count_up(&h->nonfinite_run);
    if (h->nonfinite_said) return;
    h->nonfinite_said = 1;
    int li = first_nonfinite_layer(h, r);
    const char *layer = li >= 0 ? h->layer_names[li] : NULL;
    const char *code = (r->flags & CT_FLAG_NONFINITE_LOSS) ? "NONFINITE_LOSS" : "NONFINITE_GRAD";
    const char *sev = h->cfg.on_nan == CT_ON_NAN_STOP ? "error" : "warning";
    ct_diagnosis *d = emit(out, n, code, sev, r, layer);
    const char *what = (r->flags & CT_FLAG_NONFINITE_LOSS) ? "the loss is NaN or Inf" : "a gradient is NaN or Inf";
    const char *then = h->cfg.on_nan == CT_ON_NAN_STOP   ? "training stopped (--on-nan stop)"
                       : h->cfg.on_nan == CT_ON_NAN_SKIP ? "the update was skipped (--on-nan skip)"
                                                         : "training goes on (--on-nan warn)";
    char where[96] = "";
    if (layer)
        snprintf(where, sizeof where, ", first (in backward order) in layer %s (%u non-finite values)", layer,
                 r->layer_nonfinite[li]);
    if (h->optim_advice[0])
        snprintf(d->message, sizeof d->message, "step %llu: %s%s; %s. %s Check the input data for NaN/Inf too.",
                 (unsigned long long)r->step, what, where, then, h->optim_advice);
    else
        snprintf(d->message, sizeof d->message,
                 "step %llu: %s%s; %s. Lower the learning rate (now %g) or add --clip-grad-norm 1.0, and check the "
                 "input data for NaN/Inf.",
                 (unsigned long long)r->step, what, where, then, (double)h->lr);
    if (h->cfg.on_nan == CT_ON_NAN_STOP) h->stop = 1;
}

/* The smallest learning rate that is still ordinary for the optimizer:
 * below it, a vanishing update is the learning rate's fault; above it, the
 * gradients themselves have (nearly) vanished. */
static double ordinary_lr_floor(const char *optimizer) { return strcmp(optimizer, "sgd") == 0 ? 1e-4 : 1e-5; }
/* And the largest: above it, calling the rate ordinary would mislead. */
static double ordinary_lr_ceiling(const char *optimizer) { return strcmp(optimizer, "sgd") == 0 ? 1.0 : 0.1; }

/* SGD's and RMSprop's momentum m adds up the steps of a steady gradient into
 * steps of lr/(1-m): the rate the weights see. 0 without momentum. */
static double momentum_effective_lr(const ct_optim_config *o) {
    if ((o->kind != CT_OPT_SGD && o->kind != CT_OPT_RMSPROP) || !(o->momentum > 0.0f)) return 0;
    return (double)o->lr / (1.0 - (double)o->momentum);
}

/* Above twice the largest ordinary rate: plain SGD at --lr 2 already stalls
 * MNIST's models, while the classic lr 0.1 with momentum 0.9 (and 0.01 with
 * 0.99) comes to exactly 1 and trains well (docs/decisions.md). */
static int momentum_advice(const ct_optim_config *o, char *buf, size_t size) {
    const char *name = ct_optim_kind_name(o->kind);
    double eff = momentum_effective_lr(o), ceiling = ordinary_lr_ceiling(name);
    if (!(eff > 2.0 * ceiling)) return 0;
    snprintf(buf, size,
             "Momentum %g turns %s's lr %g into steps of lr/(1-momentum) = %.3g, %.3g times the largest "
             "ordinary rate for %s (%g), so the weights swing instead of settling: lower the momentum to 0.9 or the "
             "learning rate to %.3g.",
             (double)o->momentum, name, (double)o->lr, eff, eff / ceiling, name, ceiling,
             ceiling * (1.0 - (double)o->momentum));
    return 1;
}

/* Adam's step m/sqrt(v) is bounded, by Cauchy-Schwarz over the two moving
 * averages, only when beta1^2 < beta2; otherwise a run of shrinking
 * gradients makes it as large as it likes. Runs with beta1^2 just above
 * beta2 (0.99/0.9) often train, so this is named only once a run diverges. */
static int adam_betas_advice(const ct_optim_config *o, char *buf, size_t size) {
    if (o->kind != CT_OPT_ADAM && o->kind != CT_OPT_ADAMW) return 0;
    double b1 = o->beta1, b2 = o->beta2;
    if (b1 * b1 < b2) return 0;
    snprintf(buf, size,
             "With beta2 %g, not above beta1^2 (%.3g), %s's step m/sqrt(v) has no bound, and shrinking "
             "gradients blow it up: use beta2 near 0.999 (the default).",
             b2, b1 * b1, ct_optim_kind_name(o->kind));
    return 1;
}

void ct_health_set_optimizer(ct_health *h, const ct_optim_config *o) {
    h->schedule = o->schedule;
    h->optim_advice[0] = '\0';
    if (!momentum_advice(o, h->optim_advice, sizeof h->optim_advice))
        adam_betas_advice(o, h->optim_advice, sizeof h->optim_advice);
}

/* Cosine and one-cycle anneal the rate toward 0 (one-cycle also warms up
 * from lr/div) within their span: there a small update is the plan, and the
 * update is judged by what it would be at the base rate. Past the span the
 * rate stays at the schedule's last value for good, and a step schedule's
 * decay never lifts: updates that vanish there are judged as they are, and
 * the message names the schedule. */
static int schedule_anneals(const ct_health *h, uint64_t step) {
    const ct_schedule *s = &h->schedule;
    return (s->kind == CT_SCHED_COSINE || s->kind == CT_SCHED_ONECYCLE) && step <= s->total_steps;
}

/* Whether this update counts toward a run of vanishing ones. */
static int update_vanishes(const ct_health *h, const ct_step_record *r, double ratio) {
    if (!(r->flags & CT_FLAG_VANISHING_UPDATE)) return 0;
    if (!schedule_anneals(h, r->step) || !(h->lr > 0.0f)) return 1;
    const double scale = (double)ct_schedule_lr(h->lr, &h->schedule, r->step) / (double)h->lr;
    return scale > 0 && ratio / scale < h->cfg.vanishing_ratio;
}

/* Why a schedule's rate has stayed too small to move the weights, and what
 * to change: the schedule, not the base rate. */
static void schedule_message(const ct_health *h, uint64_t step, float step_lr, char *buf, size_t size) {
    const ct_schedule *s = &h->schedule;
    const char *name = s->kind == CT_SCHED_STEP ? "step" : s->kind == CT_SCHED_COSINE ? "cosine" : "one-cycle";
    int used = snprintf(buf, size, "The %s schedule has brought the learning rate down to %g at step %llu (its base "
                        "is %g), far below an ordinary rate for %s: ",
                        name, (double)step_lr, (unsigned long long)step, (double)h->lr, h->optimizer);
    size_t at = message_end(used, size);
    if (s->kind == CT_SCHED_STEP)
        snprintf(buf + at, size - at,
                 "it multiplies the rate by %g every %llu steps. Raise the gamma or the step size (--lr-gamma, "
                 "--lr-step-size), or end the run sooner.",
                 (double)s->gamma, (unsigned long long)s->step_size);
    else
        snprintf(buf + at, size - at,
                 "its %llu steps have ended, and past them the rate stays at its last value. Make the schedule span "
                 "the run (total_steps), or end the run at step %llu.",
                 (unsigned long long)s->total_steps, (unsigned long long)s->total_steps);
}

/* Only steps that updated the weights say anything about the update size. */
static void check_vanishing(ct_health *h, const ct_step_record *r, ct_diagnosis *out, int *n) {
    if (h->vanishing_said || h->cfg.vanishing_window <= 0) return;
    if (r->flags & (CT_FLAG_SKIPPED_UPDATE | CT_FLAG_EMPTY_BATCH)) return;
    double ratio = ct_record_update_ratio(r), gnorm = ct_record_grad_norm(r), wnorm = sqrt(r->param_sumsq);
    if (!update_vanishes(h, r, ratio)) {
        h->vanishing_run = 0;
        h->vanishing_log_sum = h->vanishing_log_grad = h->vanishing_log_weight = 0;
        return;
    }
    ++h->vanishing_run;
    h->vanishing_log_sum += log(ratio > 1e-300 ? ratio : 1e-300);
    h->vanishing_log_grad += log(gnorm > 1e-300 ? gnorm : 1e-300);
    h->vanishing_log_weight += log(wnorm > 1e-300 ? wnorm : 1e-300);
    if (h->vanishing_run < h->cfg.vanishing_window) return;
    h->vanishing_said = 1;
    double mean = exp(h->vanishing_log_sum / h->vanishing_run), gmean = exp(h->vanishing_log_grad / h->vanishing_run);
    /* The logs are floored at 1e-300 to stay finite: a run of updates that
     * were all exactly 0 (a learning rate of 0) has a mean of 0, not 1e-300. */
    if (mean < 2e-300) mean = 0; /* exp(log(1e-300)) rounds a hair above it */
    double wmean = exp(h->vanishing_log_weight / h->vanishing_run);
    ct_diagnosis *d = emit(out, n, "VANISHING_UPDATES", "warning", r, NULL);
    int n0 = snprintf(d->message, sizeof d->message,
                      "step %llu: for %d steps the update-to-weight ratio ||dw||/||w|| has stayed below %g (geometric "
                      "mean %.2g), so the weights barely move; a healthy ratio is about 1e-3. ",
                      (unsigned long long)r->step, h->vanishing_run, h->cfg.vanishing_ratio, mean);
    size_t used = message_end(n0, sizeof d->message);
    const int huge_lr = h->lr > (float)ordinary_lr_ceiling(h->optimizer);
    const float step_lr = ct_schedule_lr(h->lr, &h->schedule, r->step);
    if (h->lr < (float)ordinary_lr_floor(h->optimizer)) /* the float rate: --lr 1e-5 is ordinary */
        snprintf(d->message + used, sizeof d->message - used,
                 "The learning rate %g is far too small for %s: try %s.", (double)h->lr, h->optimizer,
                 strcmp(h->optimizer, "sgd") == 0 ? "--lr 0.01" : "--lr 1e-3");
    else if (step_lr < (float)ordinary_lr_floor(h->optimizer) && !schedule_anneals(h, r->step))
        /* An ordinary base rate that the schedule has brought down for good. */
        schedule_message(h, r->step, step_lr, d->message + used, sizeof d->message - used);
    else if ((r->flags & CT_FLAG_CLIPPED) && h->clip_norm > 0 && r->clip_scale < 1e-3)
        /* Tiny updates from healthy gradients: the clip, not the gradients. */
        snprintf(d->message + used, sizeof d->message - used,
                 "The gradients are not small (||g|| about %.2g), but --clip-grad-norm %g scales each update by "
                 "%.2g: raise the clip norm (1.0 is usual) or leave clipping off.",
                 gmean, (double)h->clip_norm, r->clip_scale);
    else if (wmean > 1e6 && h->optim_advice[0])
        snprintf(d->message + used, sizeof d->message - used,
                 "The weights have grown huge (||w|| about %.2g) after a divergence. %s", wmean, h->optim_advice);
    else if (wmean > 1e6)
        snprintf(d->message + used, sizeof d->message - used,
                 "The weights have grown huge (||w|| about %.2g), typically after a divergence%s: lower the "
                 "learning rate (now %g) or add --clip-grad-norm 1.0.",
                 wmean, huge_lr ? ", which a learning rate this large for the optimizer invites" : "", (double)h->lr);
    else if (huge_lr)
        snprintf(d->message + used, sizeof d->message - used,
                 "The gradients have nearly vanished (geometric mean ||g|| %.2g) under a learning rate of %g, very "
                 "large for %s: a first step that large typically saturates or kills the units (see DEAD_LAYER). "
                 "Lower the learning rate (try %s).",
                 gmean, (double)h->lr, h->optimizer, strcmp(h->optimizer, "sgd") == 0 ? "--lr 0.01" : "--lr 1e-3");
    else
        snprintf(d->message + used, sizeof d->message - used,
                 "The learning rate %g is ordinary for %s, but the gradients have nearly vanished (geometric mean "
                 "||g|| %.2g): the network is saturated or dead (see DEAD_LAYER); lower the learning rate or "
                 "change the initialisation.",
                 (double)h->lr, h->optimizer, gmean);
}

static void check_dead_layers(ct_health *h, const ct_step_record *r, ct_diagnosis *out, int *n) {
    if (h->cfg.dead_window <= 0 || (r->flags & CT_FLAG_EMPTY_BATCH)) return;
    int layers = (int)r->n_layers < h->n_layers ? (int)r->n_layers : h->n_layers;
    /* Deepest first: a dead ReLU layer zeroes its own gradient and every
     * gradient before it; the deepest all-zero layer is where it starts. */
    for (int i = layers - 1; i >= 0; --i) {
        if (!(r->layer_zero_all & (1u << i))) {
            h->dead_run[i] = 0;
            continue;
        }
        if (count_up(&h->dead_run[i]) < h->cfg.dead_window || (h->dead_said & (1u << i))) continue;
        if (*n == CT_HEALTH_MAX_DIAG) return;
        h->dead_said |= 1u << i;
        /* Layers before an already-named dead layer follow from it: say it once. */
        if (h->dead_said & ~((1u << (i + 1)) - 1u)) continue;
        ct_diagnosis *d = emit(out, n, "DEAD_LAYER", "warning", r, h->layer_names[i]);
        int used = snprintf(d->message, sizeof d->message,
                            "step %llu: the gradient of layer %s has been exactly zero for %d steps, so it (and every "
                            "layer before it) has stopped learning",
                            (unsigned long long)r->step, h->layer_names[i], h->dead_run[i]);
        size_t at = message_end(used, sizeof d->message);
        /* The advice depends on how it died: the learning rate is only to
         * blame when the layer once learnt. */
        if (h->nonfinite_said && h->cfg.on_nan == CT_ON_NAN_WARN)
            snprintf(d->message + at, sizeof d->message - at,
                     "; NaN/Inf entered the weights earlier (the NONFINITE diagnosis) and --on-nan warn trains on "
                     "them. Fix that first: rerun with --on-nan stop or skip.");
        /* Empty batches are left out of the run and taught nothing: a layer
         * dead at every step with rows has never learnt. */
        else if ((uint64_t)h->dead_run[i] >= r->step - h->empty_batches)
            snprintf(d->message + at, sizeof d->message - at,
                     "; it was zero from the first step, so the cause is where training started, not the training: "
                     "check the initial weights (a bias far below zero silences every ReLU unit) and the inputs "
                     "(see CONSTANT_IMAGES).");
        else if (h->optim_advice[0])
            snprintf(d->message + at, sizeof d->message - at, "; typically every ReLU unit after it is inactive. %s",
                     h->optim_advice);
        else
            snprintf(d->message + at, sizeof d->message - at,
                     "; typically every ReLU unit after it is inactive. Lower the learning rate (now %g), use --init "
                     "he_uniform, or a smoother activation.",
                     (double)h->lr);
    }
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void check_exploding(ct_health *h, const ct_step_record *r, ct_diagnosis *out, int *n) {
    int w = h->cfg.explode_window;
    if (w <= 0 || (r->flags & CT_FLAG_EMPTY_BATCH)) return;
    double norm = ct_record_grad_norm(r);
    if (!isfinite(norm) || r->nonfinite_count) return; /* the non-finite check speaks for those */
    /* Judged once CT_HEALTH_EXPLODE_MIN norms precede the step (from the
     * fourth step on), against the median of the norms so far until the
     * window fills: a divergence usually takes off in the first handful of
     * steps, before any full window exists. */
    const int have = h->norms_n, need = w < CT_HEALTH_EXPLODE_MIN ? w : CT_HEALTH_EXPLODE_MIN;
    if (!h->explode_said && have >= need) {
        double sorted[CT_HEALTH_MAX_WINDOW];
        memcpy(sorted, h->norms, (size_t)have * sizeof(double));
        qsort(sorted, (size_t)have, sizeof(double), cmp_double);
        double median = sorted[have / 2];
        if (median > 0 && norm > h->cfg.explode_factor * median) {
            h->explode_said = 1;
            ct_diagnosis *d = emit(out, n, "EXPLODING_GRADIENTS", "warning", r, NULL);
            int used = snprintf(d->message, sizeof d->message,
                                "step %llu: the gradient norm jumped to %.3g, %.0f times its median of %.3g over the "
                                "previous %d steps; training may diverge. ",
                                (unsigned long long)r->step, norm, norm / median, median, have);
            size_t at = message_end(used, sizeof d->message);
            if (h->optim_advice[0])
                snprintf(d->message + at, sizeof d->message - at, "%s Or add --clip-grad-norm %.3g.", h->optim_advice,
                         10.0 * median);
            else
                snprintf(d->message + at, sizeof d->message - at,
                         "Add --clip-grad-norm %.3g (or 1.0) or lower the learning rate (now %g).", 10.0 * median,
                         (double)h->lr);
        }
    }
    h->norms[h->norms_at] = norm;
    h->norms_at = (h->norms_at + 1) % w;
    if (h->norms_n < w) ++h->norms_n;
}

/* Keras's default rate of the optimizer: what "try a larger one" means. */
static double usual_lr(const char *optimizer) { return strcmp(optimizer, "sgd") == 0 ? 0.01 : 1e-3; }

/* Judged on the mean loss of consecutive blocks of chance_window steps: a
 * single batch's loss is too noisy to stay inside a 2% band for long even
 * when the model has learnt nothing. */
static void check_chance(ct_health *h, const ct_step_record *r, ct_diagnosis *out, int *n) {
    if (h->chance_said || h->cfg.chance_window <= 0 || !(h->chance_loss > 0) || r->batch_size == 0) return;
    double loss = ct_record_loss(r);
    if (!isfinite(loss)) {
        h->chance_run = 0;
        h->chance_loss_sum = h->chance_half_sum = 0;
        return;
    }
    h->chance_loss_sum += loss;
    const int half = h->cfg.chance_window / 2;
    if (++h->chance_run == half) h->chance_half_sum = h->chance_loss_sum;
    if (h->chance_run < h->cfg.chance_window) return;
    /* At chance or above it: a loss worse than guessing the class
     * frequencies has learnt no more than one at chance. */
    double chance = h->chance_loss, mean = h->chance_loss_sum / h->chance_run;
    if (!(mean >= (1.0 - h->cfg.chance_tolerance) * chance)) {
        h->chance_run = 0;
        h->chance_loss_sum = h->chance_half_sum = 0;
        return;
    }
    h->chance_said = 1;
    ct_diagnosis *d = emit(out, n, "LOSS_AT_CHANCE", "warning", r, NULL);
    const int far = mean > 2.0 * chance;
    /* A block whose second half is below its first by more than half the
     * tolerance band is learning, only slowly (a small learning rate): it
     * is near chance, not stuck there, and the message says so. */
    const double first = half > 0 ? h->chance_half_sum / half : 0;
    const double second = half > 0 ? (h->chance_loss_sum - h->chance_half_sum) / (h->chance_run - half) : 0;
    const int falling = !far && half > 0 && second < first - 0.5 * h->cfg.chance_tolerance * chance;
    int used;
    if (falling)
        used = snprintf(d->message, sizeof d->message,
                        "step %llu: the loss has stayed near chance level for %d steps (mean %.4f; chance %.4f, %s), "
                        "though it is falling (from a mean of %.4f over the first half of them to %.4f over the "
                        "second): the model learns, but slowly. ",
                        (unsigned long long)r->step, h->chance_run, mean, chance, h->chance_what, first, second);
    else
        used = snprintf(d->message, sizeof d->message,
                        far ? "step %llu: the loss has stayed far above chance level for %d steps (mean %.4g; chance "
                              "%.4f, %s): the model is confidently wrong, worse than guessing. "
                            : "step %llu: the loss has stayed at chance level for %d steps (mean %.4f; chance %.4f, "
                              "%s): the model predicts no better than a guess from the class frequencies. ",
                        (unsigned long long)r->step, h->chance_run, mean, chance, h->chance_what);
    size_t at = message_end(used, sizeof d->message);
    if (h->optim_advice[0])
        snprintf(d->message + at, sizeof d->message - at, "%s", h->optim_advice);
    else if (falling && h->lr < (float)usual_lr(h->optimizer))
        snprintf(d->message + at, sizeof d->message - at,
                 "Typically the learning rate (now %g) is too small for %s: try --lr %g.", (double)h->lr, h->optimizer,
                 usual_lr(h->optimizer));
    else if (falling)
        snprintf(d->message + at, sizeof d->message - at,
                 "The learning rate (now %g) is usual for %s: check that the inputs are scaled, and give it more "
                 "steps before judging.",
                 (double)h->lr, h->optimizer);
    else if (far)
        snprintf(d->message + at, sizeof d->message - at,
                 "Typically the learning rate (now %g) is too large or the initial weights are far too big.",
                 (double)h->lr);
    else
        snprintf(d->message + at, sizeof d->message - at,
                 "Check that labels match the images, that the learning rate (now %g) is neither tiny nor huge, and "
                 "that the inputs are scaled.",
                 (double)h->lr);
}

int ct_health_observe(ct_health *h, const ct_step_record *r, ct_diagnosis *out) {
    int n = 0;
    if (r->flags & CT_FLAG_EMPTY_BATCH) ++h->empty_batches;
    if (r->flags & CT_FLAG_SKIPPED_UPDATE) ++h->skipped_steps;
    check_nonfinite(h, r, out, &n);
    check_nonfinite_run(h, r, out, &n);
    check_vanishing(h, r, out, &n);
    check_dead_layers(h, r, out, &n);
    check_exploding(h, r, out, &n);
    check_chance(h, r, out, &n);
    return n;
}

int ct_health_check_model(const ct_model_spec *spec, ct_diagnosis *out, int max) {
    int n = 0;
    const ct_layer_spec *last = &spec->layers[spec->n_layers - 1];
    if (max <= 0) return 0;
    if (spec->loss == CT_LOSS_MSE && last->act == CT_ACT_SOFTMAX) {
        ct_diagnosis *d = emit(out, &n, "LOSS_OUTPUT_MISMATCH", "warning", NULL, last->name);
        snprintf(d->message, sizeof d->message,
                 "mean_squared_error on the softmax output of %s with one-hot targets: its gradient shrinks as the "
                 "softmax saturates, so a wrong confident prediction barely learns. Use --loss "
                 "categorical_crossentropy, the loss that fits a softmax classifier.",
                 last->name);
    } else if (spec->loss == CT_LOSS_XENT && last->act != CT_ACT_SOFTMAX && last->act != CT_ACT_LINEAR) {
        ct_diagnosis *d = emit(out, &n, "LOSS_OUTPUT_MISMATCH", "warning", NULL, last->name);
        snprintf(d->message, sizeof d->message,
                 "categorical_crossentropy expects class probabilities, but the output layer %s uses %s: its "
                 "outputs are taken as logits after the %s, which limits them and slows learning. Use "
                 "activation=softmax (or linear, for logits) on the output layer.",
                 last->name, ct_activation_name(last->act), ct_activation_name(last->act));
    }
    char advice[sizeof out->message];
    if (n < max && momentum_advice(&spec->optim, advice, sizeof advice)) {
        ct_diagnosis *d = emit(out, &n, "MOMENTUM_TOO_LARGE", "warning", NULL, NULL);
        snprintf(d->message, sizeof d->message, "%s", advice);
    }
    return n;
}
