/* Step record: flag names and the values derived from the raw sums.
 *
 * The record carries sums, not ratios, so every backend fills the same
 * reduction and the division happens once, here, on the host.
 */
#include "cutrain/record.h"

#include <math.h>
#include <stddef.h>

/* Indexed by bit position; these are the JSONL spellings. */
static const char *const flag_names[CT_FLAG_COUNT] = {
    "NONFINITE_LOSS", "NONFINITE_GRAD", "ZERO_GRAD",      "VANISHING_UPDATE",
    "EXPLODING_GRAD", "EMPTY_BATCH",    "SKIPPED_UPDATE", "CLIPPED",
};

const char *ct_flag_name(unsigned bit_index) {
    return bit_index < CT_FLAG_COUNT ? flag_names[bit_index] : NULL;
}

/* An empty batch has no mean: NaN says so rather than pretending 0 loss. */
double ct_record_loss(const ct_step_record *r) {
    return r->batch_size ? r->loss_sum / (double)r->batch_size : NAN;
}

double ct_record_accuracy(const ct_step_record *r) {
    return r->batch_size ? r->correct / (double)r->batch_size : NAN;
}

double ct_record_grad_norm(const ct_step_record *r) { return sqrt(r->grad_sumsq); }

/* All-zero weights (e.g. a freshly zeroed bias arena) have no meaningful
 * relative update; 0 keeps the value finite in the logs. */
double ct_record_update_ratio(const ct_step_record *r) {
    if (r->param_sumsq == 0.0) return 0.0;
    return sqrt(r->update_sumsq) / sqrt(r->param_sumsq);
}
