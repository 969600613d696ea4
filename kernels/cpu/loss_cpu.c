/* Losses over a batch of rows, value and gradient in one pass.
 *
 * Softmax cross-entropy on logits z with integer label y:
 *     m       = max_c z_c
 *     lse     = m + log sum_c e^(z_c - m)          (no overflow for any z)
 *     loss    = lse - z_y = log sum_c e^(z_c - m) - (z_y - m)
 *     dloss/dz_c = softmax(z)_c - [c == y]          (scaled by grad_scale)
 *
 * Mean squared error against the one-hot target t = onehot(y), Keras style
 * (mean over the classes):
 *     loss    = (1/C) sum_c (p_c - t_c)^2
 *     dloss/dp_c = 2 (p_c - t_c) / C                (scaled by grad_scale)
 *
 * correct = [argmax_c == y], ties going to the lowest index (as numpy).
 * A label outside [0, C) must have been rejected by the loader; if one slips
 * through, nothing is read out of bounds: the row's loss is NaN so the health
 * checks flag the step, its gradient row is 0 and it does not count as correct.
 * Row sums are in double and in a fixed order (bit-reproducible reference).
 */
#include <math.h>
#include <string.h>

#include "kernels/cpu/cpu_ops.h"

/* Strict > keeps the first of equal maxima, matching numpy's argmax. */
static int argmax_row(int classes, const float *z) {
    int best = 0;
    for (int c = 1; c < classes; c++)
        if (z[c] > z[best]) best = c;
    return best;
}

static int label_ok(int32_t label, int classes) { return label >= 0 && label < classes; }

static void bad_row(int classes, float *grad_row, float *row_loss, float *row_correct) {
    *row_loss = NAN;
    *row_correct = 0.0f;
    if (grad_row && classes > 0) memset(grad_row, 0, (size_t)classes * sizeof(float));
}

/* One row of softmax cross-entropy. The loss is formed as log(sum) plus the
 * label's distance below the maximum, never as lse - z_y, so two large equal
 * numbers are never subtracted: equal logits give exactly log(C). */
static void xent_row(int classes, const float *z, int32_t label, float grad_scale,
                     float *grad_row, float *row_loss, float *row_correct) {
    int amax = argmax_row(classes, z);
    double m = z[amax];
    double sum = 0.0;
    for (int c = 0; c < classes; c++) sum += exp((double)z[c] - m);
    *row_loss = (float)(log(sum) + (m - (double)z[label]));
    *row_correct = amax == label ? 1.0f : 0.0f;
    if (!grad_row) return;
    for (int c = 0; c < classes; c++) {
        double p = exp((double)z[c] - m) / sum;
        grad_row[c] = (float)((double)grad_scale * (p - (c == label ? 1.0 : 0.0)));
    }
}

void cpu_softmax_xent(ct_backend *b, int rows, int classes, const float *logits,
                      const int32_t *labels, float grad_scale, float *dlogits, float *row_loss,
                      float *row_correct) {
    (void)b;
    if (classes < 0) return;
    for (int r = 0; r < rows; r++) {
        size_t off = (size_t)r * (size_t)classes;
        float *g = dlogits ? dlogits + off : NULL;
        if (!label_ok(labels[r], classes))
            bad_row(classes, g, row_loss + r, row_correct + r);
        else
            xent_row(classes, logits + off, labels[r], grad_scale, g, row_loss + r,
                     row_correct + r);
    }
}

static void mse_row(int classes, const float *p, int32_t label, float grad_scale,
                    float *grad_row, float *row_loss, float *row_correct) {
    double sq = 0.0;
    for (int c = 0; c < classes; c++) {
        double d = (double)p[c] - (c == label ? 1.0 : 0.0);
        sq += d * d;
        if (grad_row) grad_row[c] = (float)((double)grad_scale * 2.0 * d / classes);
    }
    *row_loss = (float)(sq / classes);
    *row_correct = argmax_row(classes, p) == label ? 1.0f : 0.0f;
}

void cpu_mse_onehot(ct_backend *b, int rows, int classes, const float *pred,
                    const int32_t *labels, float grad_scale, float *dpred, float *row_loss,
                    float *row_correct) {
    (void)b;
    if (classes < 0) return;
    for (int r = 0; r < rows; r++) {
        size_t off = (size_t)r * (size_t)classes;
        float *g = dpred ? dpred + off : NULL;
        if (!label_ok(labels[r], classes))
            bad_row(classes, g, row_loss + r, row_correct + r);
        else
            mse_row(classes, pred + off, labels[r], grad_scale, g, row_loss + r,
                    row_correct + r);
    }
}

/* The batch sums are formed first and then added, so an epoch total is a sum
 * of per-batch sums: the same grouping a device reduction produces. */
void cpu_loss_accumulate(ct_backend *b, int rows, const float *row_loss,
                         const float *row_correct, double *acc) {
    (void)b;
    double loss = 0.0, correct = 0.0;
    for (int r = 0; r < rows; r++) {
        loss += row_loss[r];
        correct += row_correct[r];
    }
    acc[0] += loss;
    acc[1] += correct;
}
