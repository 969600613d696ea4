/* Bias + activation, forward and backward, on a row-major [rows, cols] block.
 *
 * Forward, in place on y (which holds z = X W^T on entry):
 *     z[r,c]   = y[r,c] + bias[c]                    (bias may be NULL)
 *     linear   y = z
 *     relu     y = max(z, 0)
 *     sigmoid  y = 1 / (1 + e^-z)
 *     tanh     y = tanh z
 *     softmax  y[r,c] = e^(z[r,c] - m_r) / sum_j e^(z[r,j] - m_r),  m_r = max_j z[r,j]
 *
 * Backward works from the OUTPUT y, so the pre-activation never has to be
 * kept. dy holds dL/dy on entry and dL/dz on return:
 *     linear   dz = dy
 *     relu     dz = dy * [y > 0]
 *     sigmoid  dz = dy * y (1 - y)
 *     tanh     dz = dy * (1 - y^2)
 *     softmax  dz[r,c] = y[r,c] * (dy[r,c] - sum_j dy[r,j] y[r,j])
 *     dbias[c] = sum_r dz[r,c]                       (when dbias is non-NULL)
 *
 * Reductions (softmax denominators, dbias) accumulate in double in a fixed
 * order, so the result is bit-reproducible and serves as the reference.
 */
#include <math.h>

#include "kernels/cpu/cpu_ops.h"

/* Written so that NaN passes through (NaN <= 0 is false): a non-finite
 * pre-activation must stay visible to the health checks, not become 0. */
static inline float relu(float z) { return z <= 0.0f ? 0.0f : z; }

/* Two branches so that e^|z| is never formed: e^z / (1 + e^z) is inf/inf =
 * NaN for z >> 0, and 1 / (1 + e^-z) overflows e^-z for z << 0. Each branch
 * only exponentiates -|z|, so both ends saturate cleanly to 1 and to 0. */
static inline float sigmoid(float z) {
    if (z >= 0.0f) return 1.0f / (1.0f + expf(-z));
    float e = expf(z);
    return e / (1.0f + e);
}

static void add_bias(int cols, const float *bias, float *row) {
    if (!bias) return;
    for (int c = 0; c < cols; c++) row[c] += bias[c];
}

/* Subtracting the row maximum keeps every exponent <= 0, so no overflow, and
 * at least one term is exactly 1, so the denominator is >= 1. */
static void softmax_row(int cols, float *row) {
    float m = row[0];
    for (int c = 1; c < cols; c++)
        if (row[c] > m) m = row[c];
    double sum = 0.0;
    for (int c = 0; c < cols; c++) {
        row[c] = expf(row[c] - m);
        sum += row[c];
    }
    for (int c = 0; c < cols; c++) row[c] = (float)((double)row[c] / sum);
}

static void act_row(ct_activation act, int cols, float *row) {
    switch (act) {
    case CT_ACT_LINEAR: break;
    case CT_ACT_RELU:
        for (int c = 0; c < cols; c++) row[c] = relu(row[c]);
        break;
    case CT_ACT_SIGMOID:
        for (int c = 0; c < cols; c++) row[c] = sigmoid(row[c]);
        break;
    case CT_ACT_TANH:
        for (int c = 0; c < cols; c++) row[c] = tanhf(row[c]);
        break;
    case CT_ACT_SOFTMAX: softmax_row(cols, row); break;
    }
}

void cpu_bias_act_forward(ct_backend *b, ct_activation act, int rows, int cols,
                          const float *bias, float *y) {
    (void)b;
    if (rows <= 0 || cols <= 0) return;
    for (int r = 0; r < rows; r++) {
        float *row = y + (size_t)r * (size_t)cols;
        add_bias(cols, bias, row);
        act_row(act, cols, row);
    }
}

/* The softmax Jacobian is dense within a row; contracting it with dy gives
 * y * (dy - <dy, y>), one dot product per row instead of a cols^2 matrix.
 * The subtraction cancels when dy is nearly constant, hence double. */
static void softmax_back_row(int cols, const float *y, float *dy) {
    double dot = 0.0;
    for (int c = 0; c < cols; c++) dot += (double)dy[c] * (double)y[c];
    for (int c = 0; c < cols; c++) dy[c] = (float)((double)y[c] * ((double)dy[c] - dot));
}

static void act_back_row(ct_activation act, int cols, const float *y, float *dy) {
    switch (act) {
    case CT_ACT_LINEAR: break;
    case CT_ACT_RELU:
        for (int c = 0; c < cols; c++) dy[c] = y[c] > 0.0f ? dy[c] : 0.0f;
        break;
    case CT_ACT_SIGMOID:
        for (int c = 0; c < cols; c++) dy[c] *= y[c] * (1.0f - y[c]);
        break;
    case CT_ACT_TANH:
        for (int c = 0; c < cols; c++) dy[c] *= 1.0f - y[c] * y[c];
        break;
    case CT_ACT_SOFTMAX: softmax_back_row(cols, y, dy); break;
    }
}

/* Column sums, each in double and in row order. Columns go in blocks that fit
 * a stack buffer, so the matrix is read row by row (cache friendly) without
 * allocating: an op must not fail on valid arguments. */
#define DBIAS_BLOCK 256
static void column_sums(int rows, int cols, const float *dz, float *dbias) {
    double acc[DBIAS_BLOCK];
    for (int c0 = 0; c0 < cols; c0 += DBIAS_BLOCK) {
        int w = cols - c0 < DBIAS_BLOCK ? cols - c0 : DBIAS_BLOCK;
        for (int j = 0; j < w; j++) acc[j] = 0.0;
        for (int r = 0; r < rows; r++) {
            const float *row = dz + (size_t)r * (size_t)cols + c0;
            for (int j = 0; j < w; j++) acc[j] += row[j];
        }
        for (int j = 0; j < w; j++) dbias[c0 + j] = (float)acc[j];
    }
}

void cpu_bias_act_backward(ct_backend *b, ct_activation act, int rows, int cols,
                           const float *y, float *dy, float *dbias) {
    (void)b;
    if (cols <= 0 || rows < 0) return;
    for (int r = 0; r < rows; r++) {
        size_t off = (size_t)r * (size_t)cols;
        act_back_row(act, cols, y + off, dy + off);
    }
    /* Overwritten, not accumulated; an empty batch gives a zero dbias. */
    if (dbias) column_sums(rows, cols, dy, dbias);
}
