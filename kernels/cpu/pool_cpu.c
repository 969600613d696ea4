/* Max pooling over non-overlapping size x size windows, NCHW.
 *
 * Index conventions: x [N, C, H, W] -> y [N, C, OH, OW], OH = H / size,
 * OW = W / size (floor: the last H % size rows and W % size columns are in
 * no window), and
 *     y[n,c,oh,ow] = max_{i,j < size} x[n,c, oh*size + i, ow*size + j].
 * The window is scanned in row-major (i, j) order.
 *
 * NaN: the max of a window holding a NaN is NaN (a comparison-based max
 * would silently drop it, hiding a broken step from the health checks).
 *
 * Backward, from x and y alone (no stored argmax, so nothing to keep between
 * the passes): the window's gradient dy[n,c,oh,ow] goes to the FIRST position
 * in scan order where x equals y - or, when y is NaN, where x is NaN (NaN
 * equals nothing; this is PyTorch's choice too, which records the first NaN
 * as the argmax). Every other dx element, including the rows and columns cut
 * off by the floor, is 0. Windows do not overlap, so each dx element gets at
 * most one value and the result is exact.
 */
#include <math.h>
#include <string.h>

#include "kernels/cpu/cpu_ops.h"

/* NaN-propagating max of one window: once m is NaN no comparison replaces it,
 * and a NaN candidate replaces any number. */
static float window_max(const float *x, int w, int size) {
    float m = x[0];
    for (int i = 0; i < size; i++)
        for (int j = 0; j < size; j++) {
            const float v = x[(size_t)i * (size_t)w + (size_t)j];
            if (v > m || isnan(v)) m = v;
        }
    return m;
}

/* Offset (i*w + j) of the first scan position matching m, or -1 if none
 * (y not this window's max: then the window gets no gradient). */
static long first_match(const float *x, int w, int size, float m) {
    const int m_nan = isnan(m);
    for (int i = 0; i < size; i++)
        for (int j = 0; j < size; j++) {
            const float v = x[(size_t)i * (size_t)w + (size_t)j];
            if (v == m || (m_nan && isnan(v))) return (long)i * w + j;
        }
    return -1;
}

void cpu_maxpool_forward(ct_backend *b, int n, int c, int h, int w, int size, const float *x, float *y) {
    (void)b;
    if (n <= 0 || c <= 0 || size <= 0) return;
    const int oh = h / size, ow = w / size;
    const size_t planes = (size_t)n * (size_t)c;
    for (size_t pl = 0; pl < planes; pl++) {
        const float *xp = x + pl * (size_t)h * (size_t)w;
        float *yp = y + pl * (size_t)oh * (size_t)ow;
        for (int i = 0; i < oh; i++)
            for (int j = 0; j < ow; j++)
                yp[(size_t)i * ow + j] = window_max(xp + (size_t)i * size * w + (size_t)j * size, w, size);
    }
}

void cpu_maxpool_backward(ct_backend *b, int n, int c, int h, int w, int size, const float *x, const float *y,
                          const float *dy, float *dx) {
    (void)b;
    if (n <= 0 || c <= 0 || h <= 0 || w <= 0) return;
    const size_t planes = (size_t)n * (size_t)c, hw = (size_t)h * (size_t)w;
    memset(dx, 0, planes * hw * sizeof *dx);
    if (size <= 0) return;
    const int oh = h / size, ow = w / size;
    for (size_t pl = 0; pl < planes; pl++) {
        const float *xp = x + pl * hw;
        float *dxp = dx + pl * hw;
        const size_t o = pl * (size_t)oh * (size_t)ow;
        for (int i = 0; i < oh; i++)
            for (int j = 0; j < ow; j++) {
                const size_t corner = (size_t)i * size * w + (size_t)j * size;
                const size_t t = o + (size_t)i * ow + j;
                const long at = first_match(xp + corner, w, size, y[t]);
                if (at >= 0) dxp[corner + (size_t)at] = dy[t];
            }
    }
}
