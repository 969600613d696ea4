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

/* The NaN-propagating max step: a NaN candidate replaces any number, and
 * once m is NaN no comparison replaces it. */
static inline float max_step(float m, float v) { return (v > m || isnan(v)) ? v : m; }

/* One row of outputs, out[o] = max of the window at (oh, o), its input rows
 * starting at r0. The loops run over o innermost (long, branch-free) but
 * each window still sees its elements in row-major (i, j) order. */
static void pool_row(const float *r0, int w, int ow, int size, float *out) {
    for (int o = 0; o < ow; o++) out[o] = r0[(size_t)o * size];
    for (int i = 0; i < size; i++) {
        const float *row = r0 + (size_t)i * (size_t)w;
        for (int j = i == 0 ? 1 : 0; j < size; j++)
            for (int o = 0; o < ow; o++) out[o] = max_step(out[o], row[(size_t)o * size + j]);
    }
}

void cpu_maxpool_forward(ct_backend *b, int n, int c, int h, int w, int size, const float *x, float *y) {
    (void)b;
    if (n <= 0 || c <= 0 || size <= 0) return;
    const int oh = h / size, ow = w / size;
    /* No window fits: y is empty and may be NULL, and even NULL + 0 is
     * undefined in C (UBSan stops on it). */
    if (oh <= 0 || ow <= 0) return;
    const size_t planes = (size_t)n * (size_t)c;
    for (size_t pl = 0; pl < planes; pl++) {
        const float *xp = x + pl * (size_t)h * (size_t)w;
        float *yp = y + pl * (size_t)oh * (size_t)ow;
        for (int i = 0; i < oh; i++) pool_row(xp + (size_t)i * size * w, w, ow, size, yp + (size_t)i * ow);
    }
}

/* Does x take the gradient of a window whose max is m? 0 or 1 (isnan alone
 * only promises nonzero, and the callers combine flags bitwise). */
static inline int matches(float x, float m) { return (x == m) | (isnan(x) && isnan(m)); }

/* Offset (i*w + j) of the first position in scan order matching m, or -1 if
 * none (y not this window's max: the window then passes no gradient). */
static long first_match(const float *x, int w, int size, float m) {
    for (int i = 0; i < size; i++)
        for (int j = 0; j < size; j++)
            if (matches(x[(size_t)i * w + j], m)) return (long)i * w + j;
    return -1;
}

/* Any size: each band of `size` input rows is zeroed, then each of its
 * windows writes its one value (the band is in cache by then). */
static void unpool_band(const float *x0, int w, int ow, int size, const float *yrow, const float *dyrow,
                        float *dx0) {
    memset(dx0, 0, (size_t)size * w * sizeof *dx0);
    for (int o = 0; o < ow; o++) {
        const long at = first_match(x0 + (size_t)o * size, w, size, yrow[o]);
        if (at >= 0) dx0[(size_t)o * size + (size_t)at] = dyrow[o];
    }
}

/* size == 2, the common case, straight-line: the four positions' claims are
 * resolved with flags and every dx element of the band is written once,
 * without a data-dependent branch (random ties would mispredict it). */
static void unpool_band2(const float *x0, int w, int ow, const float *yrow, const float *dyrow, float *dx0) {
    const float *r0 = x0, *r1 = x0 + w;
    float *d0 = dx0, *d1 = dx0 + w;
    for (int o = 0; o < ow; o++) {
        const float m = yrow[o], g = dyrow[o];
        const int a = matches(r0[2 * o], m), b = matches(r0[2 * o + 1], m) & !a,
                  c = matches(r1[2 * o], m) & !(a | b), d = matches(r1[2 * o + 1], m) & !(a | b | c);
        d0[2 * o] = a ? g : 0.0f;
        d0[2 * o + 1] = b ? g : 0.0f;
        d1[2 * o] = c ? g : 0.0f;
        d1[2 * o + 1] = d ? g : 0.0f;
    }
    for (int col = 2 * ow; col < w; col++) d0[col] = d1[col] = 0.0f; /* cut off by the floor */
}

static void unpool_plane(int h, int w, int size, const float *xp, const float *yp, const float *dyp, float *dxp) {
    const int oh = h / size, ow = w / size;
    for (int i = 0; i < oh; i++) {
        const size_t band = (size_t)i * size * w;
        if (size == 2)
            unpool_band2(xp + band, w, ow, yp + (size_t)i * ow, dyp + (size_t)i * ow, dxp + band);
        else
            unpool_band(xp + band, w, ow, size, yp + (size_t)i * ow, dyp + (size_t)i * ow, dxp + band);
    }
    const size_t done = (size_t)oh * size * w; /* the rows cut off by the floor */
    memset(dxp + done, 0, ((size_t)h * w - done) * sizeof *dxp);
}

void cpu_maxpool_backward(ct_backend *b, int n, int c, int h, int w, int size, const float *x, const float *y,
                          const float *dy, float *dx) {
    (void)b;
    if (n <= 0 || c <= 0 || h <= 0 || w <= 0) return;
    const size_t planes = (size_t)n * (size_t)c, hw = (size_t)h * (size_t)w;
    const size_t ohw = size > 0 ? (size_t)(h / size) * (size_t)(w / size) : 0;
    if (ohw == 0) { /* no window fits (y and dy may be NULL): every element is cut off */
        memset(dx, 0, planes * hw * sizeof *dx);
        return;
    }
    for (size_t pl = 0; pl < planes; pl++)
        unpool_plane(h, w, size, x + pl * hw, y + pl * ohw, dy + pl * ohw, dx + pl * hw);
}
