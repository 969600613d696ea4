/* Diagnoses from step records. Each check keeps the little state it needs
 * (has it already spoken, how long has a condition lasted) so that a
 * diagnosis is said once, at the step it became true. */
#include "cutrain/health.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

static const char *const policy_names[] = {"stop", "skip", "warn"};

const char *ct_nan_policy_name(ct_nan_policy p) { return (unsigned)p < 3 ? policy_names[p] : "?"; }

int ct_nan_policy_parse(const char *s) {
    for (int i = 0; i < 3; ++i)
        if (strcasecmp(s, policy_names[i]) == 0) return i;
    return -1;
}

void ct_health_init(ct_health *h, ct_nan_policy policy, float lr, int n_layers, const char (*layer_names)[32]) {
    memset(h, 0, sizeof *h);
    h->policy = policy;
    h->lr = lr;
    h->n_layers = n_layers < CT_MAX_PARAM_LAYERS ? n_layers : CT_MAX_PARAM_LAYERS;
    for (int i = 0; i < h->n_layers; ++i) snprintf(h->layer_names[i], 32, "%s", layer_names[i]);
}

static ct_diagnosis *emit(ct_diagnosis *out, int *n, const char *code, const char *severity,
                          const ct_step_record *r, const char *layer) {
    ct_diagnosis *d = &out[(*n)++];
    memset(d, 0, sizeof *d);
    snprintf(d->code, sizeof d->code, "%s", code);
    d->severity = severity;
    d->step = r->step;
    d->epoch = r->epoch;
    snprintf(d->layer, sizeof d->layer, "%s", layer ? layer : "");
    return d;
}

/* The first layer in backward order (the output side) whose gradient is not
 * finite: where the non-finite values entered the backward pass. */
static int first_nonfinite_layer(const ct_health *h, const ct_step_record *r) {
    int n = (int)r->n_layers < h->n_layers ? (int)r->n_layers : h->n_layers;
    for (int i = n - 1; i >= 0; --i)
        if (r->layer_nonfinite[i]) return i;
    return -1;
}

static void check_nonfinite(ct_health *h, const ct_step_record *r, ct_diagnosis *out, int *n) {
    if (!(r->flags & (CT_FLAG_NONFINITE_LOSS | CT_FLAG_NONFINITE_GRAD))) return;
    ++h->nonfinite_steps;
    if (h->nonfinite_reported) return;
    h->nonfinite_reported = 1;
    int li = first_nonfinite_layer(h, r);
    const char *layer = li >= 0 ? h->layer_names[li] : NULL;
    const char *code = (r->flags & CT_FLAG_NONFINITE_LOSS) ? "NONFINITE_LOSS" : "NONFINITE_GRAD";
    const char *sev = h->policy == CT_ON_NAN_STOP ? "error" : "warning";
    ct_diagnosis *d = emit(out, n, code, sev, r, layer);
    const char *what = (r->flags & CT_FLAG_NONFINITE_LOSS) ? "the loss is NaN or Inf" : "a gradient is NaN or Inf";
    const char *then = h->policy == CT_ON_NAN_STOP   ? "training stopped (--on-nan stop)"
                       : h->policy == CT_ON_NAN_SKIP ? "the update was skipped (--on-nan skip)"
                                                     : "training goes on (--on-nan warn)";
    char where[96] = "";
    if (layer)
        snprintf(where, sizeof where, ", first in layer %s (%u non-finite values)", layer, r->layer_nonfinite[li]);
    snprintf(d->message, sizeof d->message,
             "step %llu: %s%s; %s. Lower the learning rate (now %g) or add --clip-grad-norm 1.0, and check the "
             "input data for NaN/Inf.",
             (unsigned long long)r->step, what, where, then, (double)h->lr);
    if (h->policy == CT_ON_NAN_STOP) h->stop = 1;
}

int ct_health_observe(ct_health *h, const ct_step_record *r, ct_diagnosis *out) {
    int n = 0;
    if (r->flags & CT_FLAG_EMPTY_BATCH) ++h->empty_batches;
    if (r->flags & CT_FLAG_SKIPPED_UPDATE) ++h->skipped_steps;
    check_nonfinite(h, r, out, &n);
    return n;
}
