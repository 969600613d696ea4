// The CPU convolution and max pooling against float64 references written here
// and against central finite differences.
//
// Conventions are those of include/cutrain/backend.h: NCHW, w [k, c, r, s],
//   y[n,k,p,q] = bias[k] + sum_{c,i,j} w[k,c,i,j] x[n,c, p*st - pad + i, q*st - pad + j].
// The references below are the direct loops of that formula (7 deep), in
// double, sharing no code with kernels/cpu/conv_cpu.c (no im2col, no GEMM).
// Inputs are seeded std::mt19937 uniforms, never zeros. Every call gets a
// workspace of exactly the planned size poisoned with NaN and followed by a
// guard band of sentinels, and outputs poisoned with NaN: a result that
// reads stale workspace, writes past it, or leaves an output unwritten fails.
//
// Tolerances (u = 2^-24, the float unit roundoff; "mag" = the sum of the
// absolute values of the terms of the reference sum):
//   conv forward   |y - ref|  <= (c*r*s + 2) u mag: the classical worst-case
//                  bound for a float dot product of c*r*s terms in any order
//                  (BLAS blocking, FMA or not) plus the bias add. An indexing
//                  error (a wrong tap, a missed pad) is O(one term) >> this.
//   conv dw        |dw - ref| <= (n*p*q + 4) u mag: the same bound for the
//                  n*p*q-term sum, however it is split into chunks and blocks.
//   conv dx        |dx - ref| <= (k*r*s + 2) u mag: k-term GEMM sums, then at
//                  most r*s float adds in col2im: k*r*s terms in all.
//   conv dbias     exact: the double sum in the documented order (n, p, q),
//                  rounded once, recomputed here in that order.
//   finite diffs   L = sum y*g is exactly linear in each of x, w, bias, so a
//                  central difference has no truncation error at any step;
//                  h = 0.25 makes the float rounding of y (~1e-6 per output)
//                  small against 2h. |grad - fd| <= 5e-6 + 5e-6 |fd|: the
//                  worst error seen is 1/25 of that (recorded as the test
//                  property worst_fd_ratio_*), the margin leaves room for
//                  other BLAS kernels; a wrong sign, tap or factor is off by
//                  O(|g x|) ~ 0.1 or more.
//   maxpool        exact, forward and backward (a max and a routing: no
//                  arithmetic).
//   determinism    bit-identical across repeated calls with differently
//                  poisoned workspaces.
//
// The awkward shapes run under several plans (the default chunking, 1 and 2
// samples per chunk, a plan for a larger batch than the call's), so the
// multi-chunk, partial-chunk and short-batch paths are all compared with the
// reference. The MNIST CNN shapes (n = 64) are checked on random subsamples
// (2000 outputs per layer, 200 dw and 2000 dx elements; dbias and the pool
// in full): the full float64 reference would take minutes.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include <time.h>

#include "kernels/cpu/cpu_ops.h"

namespace {

using Vec = std::vector<float>;
using DVec = std::vector<double>;

const double kU = 1.0 / 16777216.0; // 2^-24

Vec random_vec(std::mt19937 &g, size_t n, float lo = -1.0f, float hi = 1.0f) {
    std::uniform_real_distribution<float> d(lo, hi);
    Vec v(n);
    for (auto &x : v) x = d(g);
    return v;
}

bool same_bits(const Vec &a, const Vec &b) {
    return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

ct_conv_shape make_shape(int n, int c, int h, int w, int k, int r, int s, int stride, int pad) {
    ct_conv_shape sh{};
    sh.n = n, sh.c = c, sh.h = h, sh.w = w, sh.k = k, sh.r = r, sh.s = s, sh.stride = stride, sh.pad = pad;
    if (stride > 0) { // the invalid-shape test passes stride 0
        sh.out_h = (h + 2 * pad - r) / stride + 1;
        sh.out_w = (w + 2 * pad - s) / stride + 1;
    }
    return sh;
}

std::string describe(const ct_conv_shape &s) {
    char buf[160];
    std::snprintf(buf, sizeof buf, "n=%d c=%d %dx%d k=%d kernel %dx%d stride %d pad %d -> %dx%d", s.n, s.c,
                  s.h, s.w, s.k, s.r, s.s, s.stride, s.pad, s.out_h, s.out_w);
    return buf;
}

size_t x_len(const ct_conv_shape &s) { return (size_t)s.n * s.c * s.h * s.w; }
size_t w_len(const ct_conv_shape &s) { return (size_t)s.k * s.c * s.r * s.s; }
size_t y_len(const ct_conv_shape &s) { return (size_t)s.n * s.k * s.out_h * s.out_w; }

// Index helpers for NCHW and KCRS.
size_t xi(const ct_conv_shape &s, int n, int c, int h, int w) {
    return (((size_t)n * s.c + c) * s.h + h) * s.w + w;
}
size_t wi(const ct_conv_shape &s, int k, int c, int i, int j) {
    return (((size_t)k * s.c + c) * s.r + i) * s.s + j;
}
size_t yi(const ct_conv_shape &s, int n, int k, int p, int q) {
    return (((size_t)n * s.k + k) * s.out_h + p) * s.out_w + q;
}

// ---------------------------------------------------------------------------
// float64 references

struct RefOut {
    double val = 0.0, mag = 0.0;
};

// One output of the forward formula, with the magnitude of its terms.
RefOut ref_y(const ct_conv_shape &s, const Vec &x, const Vec &w, const Vec *bias, int n, int k, int p, int q) {
    RefOut r;
    if (bias) r.val = (*bias)[k], r.mag = std::fabs((*bias)[k]);
    for (int c = 0; c < s.c; c++)
        for (int i = 0; i < s.r; i++)
            for (int j = 0; j < s.s; j++) {
                int ih = p * s.stride - s.pad + i, iw = q * s.stride - s.pad + j;
                if (ih < 0 || ih >= s.h || iw < 0 || iw >= s.w) continue;
                double t = (double)w[wi(s, k, c, i, j)] * x[xi(s, n, c, ih, iw)];
                r.val += t;
                r.mag += std::fabs(t);
            }
    return r;
}

// dw[k,c,i,j] = sum_{n,p,q} dy[n,k,p,q] x[n,c, p*st - pad + i, q*st - pad + j].
RefOut ref_dw(const ct_conv_shape &s, const Vec &x, const Vec &dy, int k, int c, int i, int j) {
    RefOut r;
    for (int n = 0; n < s.n; n++)
        for (int p = 0; p < s.out_h; p++)
            for (int q = 0; q < s.out_w; q++) {
                int ih = p * s.stride - s.pad + i, iw = q * s.stride - s.pad + j;
                if (ih < 0 || ih >= s.h || iw < 0 || iw >= s.w) continue;
                double t = (double)dy[yi(s, n, k, p, q)] * x[xi(s, n, c, ih, iw)];
                r.val += t;
                r.mag += std::fabs(t);
            }
    return r;
}

// dx[n,c,ih,iw] = sum over (k, i, j) with ih = p*st - pad + i, iw likewise
// (p, q integral and in range) of w[k,c,i,j] dy[n,k,p,q].
RefOut ref_dx(const ct_conv_shape &s, const Vec &w, const Vec &dy, int n, int c, int ih, int iw) {
    RefOut r;
    for (int k = 0; k < s.k; k++)
        for (int i = 0; i < s.r; i++)
            for (int j = 0; j < s.s; j++) {
                int ph = ih + s.pad - i, pw = iw + s.pad - j;
                if (ph < 0 || pw < 0 || ph % s.stride || pw % s.stride) continue;
                int p = ph / s.stride, q = pw / s.stride;
                if (p >= s.out_h || q >= s.out_w) continue;
                double t = (double)w[wi(s, k, c, i, j)] * dy[yi(s, n, k, p, q)];
                r.val += t;
                r.mag += std::fabs(t);
            }
    return r;
}

// The documented order: k outermost, then n, then p*Q + q, in double.
Vec ref_dbias(const ct_conv_shape &s, const Vec &dy) {
    Vec db((size_t)s.k);
    for (int k = 0; k < s.k; k++) {
        double acc = 0.0;
        for (int n = 0; n < s.n; n++)
            for (int p = 0; p < s.out_h; p++)
                for (int q = 0; q < s.out_w; q++) acc += dy[yi(s, n, k, p, q)];
        db[(size_t)k] = (float)acc;
    }
    return db;
}

// Collects the first few failures of |got - ref| <= (terms + extra) u mag.
struct Checker {
    explicit Checker(const char *w) : what(w) {}
    const char *what;
    size_t bad = 0, checked = 0;
    std::string first;
    void check(float got, const RefOut &r, double terms, const std::string &where) {
        checked++;
        double tol = terms * kU * r.mag + 1e-30;
        if (std::fabs((double)got - r.val) <= tol) return;
        if (bad++ < 3) first += " " + where + " got " + std::to_string(got) + " want " + std::to_string(r.val);
    }
    ::testing::AssertionResult result() const {
        if (bad == 0) return ::testing::AssertionSuccess();
        return ::testing::AssertionFailure() << what << ": " << bad << " of " << checked << " off:" << first;
    }
};

// ---------------------------------------------------------------------------
// A planned convolution with a poisoned, guarded workspace.

const float kGuard = 4242.0f;
const size_t kGuardFloats = 64;

struct Conv {
    ct_conv_shape planned;
    void *plan = nullptr;
    size_t ws_bytes = 0;
    Vec ws; // ws_bytes / 4 floats of workspace, then the guard band

    Conv(const ct_conv_shape &s, int chunk = 0) : planned(s) {
        ct_error err{};
        plan = cpu_conv_plan_chunked(nullptr, &s, chunk, &ws_bytes, &err);
        EXPECT_NE(plan, nullptr) << err.msg;
        EXPECT_EQ(ws_bytes % sizeof(float), 0u);
        ws.assign(ws_bytes / sizeof(float) + kGuardFloats, NAN);
    }
    ~Conv() { cpu_conv_plan_free(nullptr, plan); }
    Conv(const Conv &) = delete;
    Conv &operator=(const Conv &) = delete;

    void poison(float v) {
        std::fill(ws.begin(), ws.end() - kGuardFloats, v);
        std::fill(ws.end() - kGuardFloats, ws.end(), kGuard);
    }
    bool guard_intact() const {
        for (size_t i = ws.size() - kGuardFloats; i < ws.size(); i++)
            if (ws[i] != kGuard) return false;
        return true;
    }
    void forward(const ct_conv_shape &s, const Vec &x, const Vec &w, const Vec *bias, Vec &y, float p = NAN) {
        poison(p);
        y.assign(y_len(s), NAN);
        cpu_conv2d_forward(nullptr, plan, &s, x.data(), w.data(), bias ? bias->data() : nullptr, y.data(),
                           ws.data());
        EXPECT_TRUE(guard_intact()) << "forward wrote past the planned workspace";
    }
    // dx_out == nullptr: no dx asked for.
    void backward(const ct_conv_shape &s, const Vec &x, const Vec &w, const Vec &dy, Vec *dx, Vec &dw, Vec *db,
                  float p = NAN) {
        poison(p);
        if (dx) dx->assign(x_len(s), NAN);
        dw.assign(w_len(s), NAN);
        if (db) db->assign((size_t)s.k, NAN);
        cpu_conv2d_backward(nullptr, plan, &s, x.data(), w.data(), dy.data(), dx ? dx->data() : nullptr,
                            dw.data(), db ? db->data() : nullptr, ws.data());
        EXPECT_TRUE(guard_intact()) << "backward wrote past the planned workspace";
    }
};

// The awkward shapes: batch 1 and 3, c 1 and 3, 5x7 and 28x28, kernels 1x1,
// 3x3, 5x5, 3x2, 2x3, strides 1, 2 and 3 (a stride larger than the kernel
// skips input pixels), pads 0, 1, 2, odd k. Some pads exceed what
// the kernel reaches, so whole output rows/columns see only padding.
const int kShapes[][9] = {
    // n  c   h   w  k  r  s st pad
    {1, 1, 5, 7, 1, 1, 1, 1, 0},   {3, 3, 5, 7, 5, 3, 3, 1, 1},   {3, 1, 5, 7, 3, 3, 2, 2, 0},
    {1, 3, 5, 7, 7, 5, 5, 1, 2},   {3, 3, 5, 7, 5, 5, 5, 2, 2},   {3, 3, 5, 7, 3, 1, 1, 2, 1},
    {3, 1, 5, 7, 1, 3, 3, 2, 2},   {1, 1, 5, 7, 3, 5, 5, 1, 0},   {3, 1, 28, 28, 5, 3, 3, 1, 0},
    {1, 3, 28, 28, 3, 5, 5, 2, 1}, {3, 3, 28, 28, 7, 3, 2, 2, 1}, {3, 3, 28, 28, 5, 3, 3, 1, 1},
    {3, 2, 7, 5, 3, 2, 3, 1, 2},   {3, 2, 7, 8, 3, 3, 2, 3, 1},   {1, 1, 9, 9, 2, 2, 2, 3, 0},
    {2, 2, 2, 1, 3, 11, 5, 2, 5}, // pad 5: some kernel columns see no pixel at any output
};

ct_conv_shape shape_at(int idx) {
    const int *a = kShapes[idx];
    return make_shape(a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8]);
}
const int kNumShapes = (int)(sizeof kShapes / sizeof kShapes[0]);

// Plans to try for a shape: the default, one sample per chunk, and two per
// chunk (with n = 3: a full chunk then a partial one); each also planned for
// a batch 2 larger than the call's, as the last short batch of an epoch is.
struct PlanVariant {
    int chunk, extra_n;
};
const PlanVariant kVariants[] = {{0, 0}, {1, 0}, {2, 0}, {0, 2}, {2, 2}};

void check_forward(const ct_conv_shape &s, const Vec &x, const Vec &w, const Vec *bias, const Vec &y) {
    Checker ck("y");
    const double terms = (double)s.c * s.r * s.s + 2;
    for (int n = 0; n < s.n; n++)
        for (int k = 0; k < s.k; k++)
            for (int p = 0; p < s.out_h; p++)
                for (int q = 0; q < s.out_w; q++)
                    ck.check(y[yi(s, n, k, p, q)], ref_y(s, x, w, bias, n, k, p, q), terms,
                             "[" + std::to_string(n) + "," + std::to_string(k) + "," + std::to_string(p) + "," +
                                 std::to_string(q) + "]");
    EXPECT_TRUE(ck.result());
}

void check_backward(const ct_conv_shape &s, const Vec &x, const Vec &w, const Vec &dy, const Vec *dx,
                    const Vec &dw, const Vec *db) {
    Checker cw("dw");
    const double wterms = (double)s.n * s.out_h * s.out_w + 4;
    for (int k = 0; k < s.k; k++)
        for (int c = 0; c < s.c; c++)
            for (int i = 0; i < s.r; i++)
                for (int j = 0; j < s.s; j++)
                    cw.check(dw[wi(s, k, c, i, j)], ref_dw(s, x, dy, k, c, i, j), wterms,
                             "[" + std::to_string(k) + "," + std::to_string(c) + "," + std::to_string(i) + "," +
                                 std::to_string(j) + "]");
    EXPECT_TRUE(cw.result());
    if (dx) {
        Checker cx("dx");
        const double xterms = (double)s.k * s.r * s.s + 2;
        for (int n = 0; n < s.n; n++)
            for (int c = 0; c < s.c; c++)
                for (int h = 0; h < s.h; h++)
                    for (int ww = 0; ww < s.w; ww++)
                        cx.check((*dx)[xi(s, n, c, h, ww)], ref_dx(s, w, dy, n, c, h, ww), xterms,
                                 "[" + std::to_string(n) + "," + std::to_string(c) + "," + std::to_string(h) +
                                     "," + std::to_string(ww) + "]");
        EXPECT_TRUE(cx.result());
    }
    if (db) {
        EXPECT_TRUE(same_bits(*db, ref_dbias(s, dy))) << "dbias is not the (n, p, q)-order double sum";
    }
}

// ---------------------------------------------------------------------------
// convolution against the references

TEST(Conv, ForwardAwkwardShapes) {
    std::mt19937 g(901);
    for (int si = 0; si < kNumShapes; si++) {
        const ct_conv_shape s = shape_at(si);
        const Vec x = random_vec(g, x_len(s)), w = random_vec(g, w_len(s)), bias = random_vec(g, (size_t)s.k);
        for (const PlanVariant &v : kVariants) {
            SCOPED_TRACE(describe(s) + " chunk " + std::to_string(v.chunk) + " planned n+" +
                         std::to_string(v.extra_n));
            ct_conv_shape planned = s;
            planned.n += v.extra_n;
            Conv conv(planned, v.chunk);
            Vec y;
            conv.forward(s, x, w, &bias, y);
            check_forward(s, x, w, &bias, y);
            if (v.chunk == 0 && v.extra_n == 0) {
                conv.forward(s, x, w, nullptr, y); // no bias
                check_forward(s, x, w, nullptr, y);
            }
        }
    }
}

TEST(Conv, BackwardAwkwardShapes) {
    std::mt19937 g(902);
    for (int si = 0; si < kNumShapes; si++) {
        const ct_conv_shape s = shape_at(si);
        const Vec x = random_vec(g, x_len(s)), w = random_vec(g, w_len(s)), dy = random_vec(g, y_len(s));
        for (const PlanVariant &v : kVariants) {
            SCOPED_TRACE(describe(s) + " chunk " + std::to_string(v.chunk) + " planned n+" +
                         std::to_string(v.extra_n));
            ct_conv_shape planned = s;
            planned.n += v.extra_n;
            Conv conv(planned, v.chunk);
            Vec dx, dw, db;
            conv.backward(s, x, w, dy, &dx, dw, &db);
            check_backward(s, x, w, dy, &dx, dw, &db);
            // Without dx (and dbias): dw must not change by a bit.
            Vec dw2;
            conv.backward(s, x, w, dy, nullptr, dw2, nullptr);
            EXPECT_TRUE(same_bits(dw, dw2)) << "dw differs when dx is not asked for";
        }
    }
}

// An empty batch still overwrites dw and dbias (with zeros) and writes no y/dx.
TEST(Conv, EmptyBatchZeroesGradients) {
    std::mt19937 g(903);
    ct_conv_shape s = make_shape(3, 2, 5, 7, 3, 3, 3, 1, 1);
    Conv conv(s);
    const Vec x = random_vec(g, x_len(s)), w = random_vec(g, w_len(s)), dy = random_vec(g, y_len(s));
    s.n = 0;
    Vec dw, db;
    conv.backward(s, x, w, dy, nullptr, dw, &db);
    for (float v : dw) EXPECT_EQ(v, 0.0f);
    for (float v : db) EXPECT_EQ(v, 0.0f);
    Vec y(4, 7.0f);
    cpu_conv2d_forward(nullptr, conv.plan, &s, x.data(), w.data(), nullptr, y.data(), conv.ws.data());
    for (float v : y) EXPECT_EQ(v, 7.0f);
}

// dbias sums in double, in (n, p, q) order. dy = [1, 2^60, -2^60] along n
// gives 0 in that order and 1 in reverse; [2^24, 1, 1] gives 2^24 + 2 in
// double and 2^24 in a float accumulator.
TEST(Conv, DbiasIsADoubleSumInBatchOrder) {
    const ct_conv_shape s = make_shape(3, 1, 1, 1, 2, 1, 1, 1, 0);
    Conv conv(s);
    const float big = std::ldexp(1.0f, 60), f24 = std::ldexp(1.0f, 24);
    const Vec x = {1, 1, 1}, w = {1, 1};
    const Vec dy = {1, f24, big, 1, -big, 1}; // [n][k]: k = 0 gets 1, big, -big
    Vec dw, db;
    conv.backward(s, x, w, dy, nullptr, dw, &db);
    EXPECT_EQ(db[0], 0.0f);
    EXPECT_EQ(db[1], f24 + 2.0f);
}

TEST(Conv, PlanRejectsInvalidShapes) {
    ct_conv_shape bad[5];
    bad[0] = make_shape(0, 1, 5, 5, 1, 3, 3, 1, 0); // no rows
    bad[1] = make_shape(1, 1, 5, 5, 1, 3, 3, 0, 0); // stride 0 (out_h set below)
    bad[1].out_h = bad[1].out_w = 3;
    bad[2] = make_shape(1, 1, 5, 5, 1, 7, 3, 1, 0); // kernel taller than the padded input
    bad[3] = make_shape(1, 1, 5, 5, 1, 3, 3, 1, 0);
    bad[3].out_w = 4; // inconsistent output width
    bad[4] = make_shape(1, 1, 5, 5, 1, 3, 3, 1, -1); // negative pad
    for (auto &s : bad) {
        ct_error err{};
        size_t ws = 12345;
        EXPECT_EQ(cpu_conv_plan(nullptr, &s, 1, &ws, &err), nullptr) << describe(s);
        EXPECT_NE(err.code, 0);
        EXPECT_GT(std::strlen(err.msg), 0u);
    }
}

// ---------------------------------------------------------------------------
// finite differences of L = sum y * g

// Central differences of loss() in every element of param against grad.
void fd_check(Vec &param, const Vec &grad, const std::function<double()> &loss, const char *what) {
    const double h = 0.25, atol = 5e-6, rtol = 5e-6;
    size_t bad = 0;
    double worst = 0.0;
    std::string first;
    for (size_t i = 0; i < param.size(); i++) {
        const float orig = param[i], xp = (float)(orig + h), xm = (float)(orig - h);
        param[i] = xp;
        const double lp = loss();
        param[i] = xm;
        const double lm = loss();
        param[i] = orig;
        const double fd = (lp - lm) / ((double)xp - (double)xm);
        const double err = std::fabs((double)grad[i] - fd);
        worst = std::max(worst, err / (atol + rtol * std::fabs(fd)));
        if (!(err <= atol + rtol * std::fabs(fd)) && bad++ < 3)
            first += " [" + std::to_string(i) + "] analytic " + std::to_string(grad[i]) + " fd " +
                     std::to_string(fd);
    }
    EXPECT_EQ(bad, 0u) << what << ": " << bad << " of " << param.size() << " off:" << first;
    ::testing::Test::RecordProperty(std::string("worst_fd_ratio_") + what, std::to_string(worst));
}

TEST(Conv, BackwardMatchesFiniteDifferences) {
    std::mt19937 g(904);
    const int shapes[][9] = {
        {2, 2, 5, 7, 3, 3, 3, 1, 1}, {3, 1, 5, 7, 2, 3, 2, 2, 0}, {1, 3, 5, 7, 3, 5, 5, 2, 2},
        {2, 2, 7, 5, 3, 1, 1, 2, 1},
    };
    for (auto &a : shapes) {
        const ct_conv_shape s = make_shape(a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8]);
        SCOPED_TRACE(describe(s));
        Vec x = random_vec(g, x_len(s)), w = random_vec(g, w_len(s)), bias = random_vec(g, (size_t)s.k);
        const Vec gy = random_vec(g, y_len(s));
        Conv conv(s, 2); // two samples per chunk: the chunk boundary is crossed
        auto loss = [&]() {
            Vec y;
            conv.forward(s, x, w, &bias, y);
            double l = 0.0;
            for (size_t i = 0; i < y.size(); i++) l += (double)y[i] * gy[i];
            return l;
        };
        Vec dx, dw, db;
        conv.backward(s, x, w, gy, &dx, dw, &db);
        fd_check(x, dx, loss, "dx");
        fd_check(w, dw, loss, "dw");
        fd_check(bias, db, loss, "dbias");
    }
}

// ---------------------------------------------------------------------------
// max pooling

// y and the argmax (offset into the plane, -1: none) of one window, written
// independently of pool_cpu.c: NaN if any element is NaN, and the first
// row-major position that is NaN (if any) or else equals the maximum.
struct PoolRef {
    float y;
    long at;
};

PoolRef pool_ref(const Vec &x, size_t plane, int w, int oh_i, int ow_j, int size) {
    std::vector<float> vals;
    std::vector<long> offs;
    for (int i = 0; i < size; i++)
        for (int j = 0; j < size; j++) {
            long off = (long)(oh_i * size + i) * w + (ow_j * size + j);
            vals.push_back(x[plane + (size_t)off]);
            offs.push_back(off);
        }
    for (size_t t = 0; t < vals.size(); t++)
        if (std::isnan(vals[t])) return {NAN, offs[t]};
    size_t best = 0;
    for (size_t t = 1; t < vals.size(); t++)
        if (vals[t] > vals[best]) best = t; // strict: ties keep the first
    return {vals[best], offs[best]};
}

void check_pool(int n, int c, int h, int w, int size, const Vec &x, const Vec &dy) {
    SCOPED_TRACE("pool n=" + std::to_string(n) + " c=" + std::to_string(c) + " " + std::to_string(h) + "x" +
                 std::to_string(w) + " size " + std::to_string(size));
    const int oh = h / size, ow = w / size;
    Vec y((size_t)n * c * oh * ow, 12345.0f), dx(x.size(), NAN);
    cpu_maxpool_forward(nullptr, n, c, h, w, size, x.data(), y.data());
    cpu_maxpool_backward(nullptr, n, c, h, w, size, x.data(), y.data(), dy.data(), dx.data());
    Vec want_dx(x.size(), 0.0f);
    size_t bad_y = 0;
    for (int pl = 0; pl < n * c; pl++)
        for (int i = 0; i < oh; i++)
            for (int j = 0; j < ow; j++) {
                const size_t plane = (size_t)pl * h * w, t = ((size_t)pl * oh + i) * ow + j;
                PoolRef r = pool_ref(x, plane, w, i, j, size);
                bool ok = std::isnan(r.y) ? std::isnan(y[t]) : std::memcmp(&y[t], &r.y, sizeof(float)) == 0;
                if (!ok && bad_y++ < 3)
                    ADD_FAILURE() << "y[" << t << "] = " << y[t] << ", want " << r.y;
                want_dx[plane + (size_t)r.at] = dy[t];
            }
    EXPECT_EQ(bad_y, 0u);
    size_t bad_dx = 0;
    for (size_t i = 0; i < dx.size(); i++)
        if (std::memcmp(&dx[i], &want_dx[i], sizeof(float)) != 0 && bad_dx++ < 3)
            ADD_FAILURE() << "dx[" << i << "] = " << dx[i] << ", want " << want_dx[i];
    EXPECT_EQ(bad_dx, 0u);
}

// A pool with no whole window has an empty output, which the caller may pass
// as NULL: nothing is written to y, and dx is all zeros. (Offsetting a NULL
// y, even by 0, was undefined behaviour that UBSan stopped on.)
TEST(MaxPool, NoWholeWindowWritesNothingAndZeroesDx) {
    Vec x(2 * 3 * 8, 1.0f), dx(x.size(), NAN);
    cpu_maxpool_forward(nullptr, 2, 1, 3, 8, 4, x.data(), nullptr);
    cpu_maxpool_backward(nullptr, 2, 1, 3, 8, 4, x.data(), nullptr, nullptr, dx.data());
    for (float v : dx) EXPECT_EQ(v, 0.0f);
}

TEST(MaxPool, RandomShapesWithFloorCutOff) {
    std::mt19937 g(911);
    const int shapes[][5] = {{1, 1, 4, 4, 2}, {3, 2, 5, 7, 2}, {2, 3, 7, 5, 3}, {1, 2, 3, 3, 1},
                             {2, 1, 2, 9, 2}, {1, 1, 5, 5, 5}, {3, 3, 28, 28, 2}, {2, 2, 3, 8, 4}};
    for (auto &s : shapes) {
        const size_t len = (size_t)s[0] * s[1] * s[2] * s[3];
        Vec x = random_vec(g, len);
        // The cut-off rows and columns hold the largest values: picking them
        // up (a ceil instead of a floor) would change y.
        for (size_t i = 0; i < len; i++) {
            int col = (int)(i % s[3]), row = (int)(i / s[3] % s[2]);
            if (row >= s[2] / s[4] * s[4] || col >= s[3] / s[4] * s[4]) x[i] = 100.0f + (float)i;
        }
        check_pool(s[0], s[1], s[2], s[3], s[4], x, random_vec(g, len));
    }
}

// Values from {-1, 0, 1, 2}: most windows hold ties, and the first wins.
TEST(MaxPool, TiesGoToTheFirstPosition) {
    std::mt19937 g(912);
    std::uniform_int_distribution<int> d(-1, 2);
    for (int size : {2, 3}) {
        const int n = 2, c = 3, h = 7, w = 8;
        Vec x((size_t)n * c * h * w);
        for (auto &v : x) v = (float)d(g);
        check_pool(n, c, h, w, size, x, random_vec(g, x.size(), 0.5f, 1.5f));
    }
    // By hand: one 2x2 window [[3, 5], [5, 5]] sends dy to (0, 1) only; the
    // signed zeros [[-0, +0], [-0, +0]] (all equal) give y = -0 and send it
    // to (0, 0).
    Vec x = {3, 5, 5, 5}, y(1), dy = {7}, dx(4, NAN);
    cpu_maxpool_forward(nullptr, 1, 1, 2, 2, 2, x.data(), y.data());
    cpu_maxpool_backward(nullptr, 1, 1, 2, 2, 2, x.data(), y.data(), dy.data(), dx.data());
    EXPECT_EQ(y[0], 5.0f);
    EXPECT_EQ(dx, (Vec{0, 7, 0, 0}));
    x = {-0.0f, 0.0f, -0.0f, 0.0f};
    dx.assign(4, NAN);
    cpu_maxpool_forward(nullptr, 1, 1, 2, 2, 2, x.data(), y.data());
    cpu_maxpool_backward(nullptr, 1, 1, 2, 2, 2, x.data(), y.data(), dy.data(), dx.data());
    EXPECT_TRUE(std::signbit(y[0])) << "y is the first maximum in scan order: -0 here";
    EXPECT_EQ(dx, (Vec{7, 0, 0, 0}));
}

// A NaN anywhere in a window makes its output NaN (first, middle or last in
// scan order, next to +Inf too), and the gradient goes to the window's first
// NaN. NaN in the cut-off border changes nothing.
TEST(MaxPool, NaNPropagates) {
    std::mt19937 g(913);
    const int n = 2, c = 2, h = 7, w = 9, size = 3;
    Vec x = random_vec(g, (size_t)n * c * h * w);
    std::uniform_int_distribution<size_t> pick(0, x.size() - 1);
    for (int t = 0; t < 12; t++) x[pick(g)] = NAN;
    x[0] = NAN;                                      // first in its window
    x[(size_t)h * w + 2 * w + 2] = NAN;              // last of plane 1's first window
    x[(size_t)h * w + 2 * w + 1] = INFINITY;         // beside it
    x[(size_t)2 * h * w + 6 * w + 4] = NAN;          // row 6: cut off (7 / 3 = 2 windows)
    check_pool(n, c, h, w, size, x, random_vec(g, x.size()));
    // By hand: [[1, NaN], [NaN, 9]] -> NaN, gradient to (0, 1).
    Vec hx = {1, NAN, NAN, 9}, y(1), dy = {3}, dx(4, 5.0f);
    cpu_maxpool_forward(nullptr, 1, 1, 2, 2, 2, hx.data(), y.data());
    cpu_maxpool_backward(nullptr, 1, 1, 2, 2, 2, hx.data(), y.data(), dy.data(), dx.data());
    EXPECT_TRUE(std::isnan(y[0]));
    EXPECT_EQ(dx, (Vec{0, 3, 0, 0}));
}

// ---------------------------------------------------------------------------
// The MNIST CNN at batch 64: conv 1->32 3x3, ReLU, conv 32->64 3x3, pool 2.
// The full float64 reference is minutes; a random subsample of outputs and
// gradient elements is checked instead (any indexing error shows in most).

const int kBatch = 64;

struct Mnist {
    ct_conv_shape c1 = make_shape(kBatch, 1, 28, 28, 32, 3, 3, 1, 0);
    ct_conv_shape c2 = make_shape(kBatch, 32, 26, 26, 64, 3, 3, 1, 0);
    Vec x, w1, b1, w2, b2;
    explicit Mnist(std::mt19937 &g) {
        x = random_vec(g, x_len(c1), 0.0f, 1.0f); // pixels
        w1 = random_vec(g, w_len(c1), -1.0f / 3, 1.0f / 3); // PyTorch's default bound 1/sqrt(fan_in)
        b1 = random_vec(g, (size_t)c1.k, -1.0f / 3, 1.0f / 3);
        const float bound2 = 1.0f / std::sqrt(32.0f * 9.0f);
        w2 = random_vec(g, w_len(c2), -bound2, bound2);
        b2 = random_vec(g, (size_t)c2.k, -bound2, bound2);
    }
};

Vec relu(Vec v) {
    for (auto &t : v) t = t > 0.0f ? t : 0.0f;
    return v;
}

TEST(Conv, MnistCnnShapesForward) {
    std::mt19937 g(921);
    Mnist m(g);
    Conv conv1(m.c1), conv2(m.c2);
    Vec y1, y2;
    conv1.forward(m.c1, m.x, m.w1, &m.b1, y1);
    const Vec a1 = relu(y1);
    conv2.forward(m.c2, a1, m.w2, &m.b2, y2);
    ASSERT_EQ(y2.size(), (size_t)kBatch * 64 * 24 * 24);

    for (int layer = 0; layer < 2; layer++) {
        const ct_conv_shape &s = layer ? m.c2 : m.c1;
        const Vec &in = layer ? a1 : m.x, &w = layer ? m.w2 : m.w1, &b = layer ? m.b2 : m.b1;
        const Vec &y = layer ? y2 : y1;
        Checker ck(layer ? "conv2 y" : "conv1 y");
        std::uniform_int_distribution<size_t> pick(0, y.size() - 1);
        for (int t = 0; t < 2000; t++) {
            size_t i = pick(g);
            int q = (int)(i % s.out_w), p = (int)(i / s.out_w % s.out_h), k = (int)(i / s.out_w / s.out_h % s.k),
                n = (int)(i / s.out_w / s.out_h / s.k);
            ck.check(y[i], ref_y(s, in, w, &b, n, k, p, q), (double)s.c * s.r * s.s + 2, std::to_string(i));
        }
        EXPECT_TRUE(ck.result());
    }
    // The pool over every output, exactly.
    check_pool(kBatch, 64, 24, 24, 2, relu(y2), random_vec(g, y2.size()));
}

TEST(Conv, MnistCnnShapesBackward) {
    std::mt19937 g(922);
    Mnist m(g);
    const Vec a1 = relu(random_vec(g, x_len(m.c2), -1.0f, 2.0f)); // a plausible ReLU output
    const Vec dy2 = random_vec(g, y_len(m.c2), -1e-3f, 1e-3f), dy1 = random_vec(g, y_len(m.c1), -1e-3f, 1e-3f);
    Conv conv1(m.c1), conv2(m.c2);
    Vec dx2, dw2, db2, dw1, db1;
    conv2.backward(m.c2, a1, m.w2, dy2, &dx2, dw2, &db2);
    conv1.backward(m.c1, m.x, m.w1, dy1, nullptr, dw1, &db1); // the input layer: no dx

    EXPECT_TRUE(same_bits(db2, ref_dbias(m.c2, dy2)));
    EXPECT_TRUE(same_bits(db1, ref_dbias(m.c1, dy1)));
    const ct_conv_shape &s = m.c2;
    Checker cw("conv2 dw"), cx("conv2 dx"), cw1("conv1 dw");
    std::uniform_int_distribution<size_t> pick_w(0, dw2.size() - 1), pick_x(0, dx2.size() - 1);
    for (int t = 0; t < 200; t++) {
        size_t i = pick_w(g);
        int j = (int)(i % 3), ii = (int)(i / 3 % 3), c = (int)(i / 9 % s.c), k = (int)(i / 9 / s.c);
        cw.check(dw2[i], ref_dw(s, a1, dy2, k, c, ii, j), (double)s.n * s.out_h * s.out_w + 4, std::to_string(i));
    }
    for (int t = 0; t < 2000; t++) {
        size_t i = pick_x(g);
        int ww = (int)(i % s.w), h = (int)(i / s.w % s.h), c = (int)(i / s.w / s.h % s.c),
            n = (int)(i / s.w / s.h / s.c);
        cx.check(dx2[i], ref_dx(s, m.w2, dy2, n, c, h, ww), (double)s.k * 9 + 2, std::to_string(i));
    }
    const ct_conv_shape &s1 = m.c1;
    for (int k = 0; k < s1.k; k++)
        for (int i = 0; i < 3; i++)
            for (int j = 0; j < 3; j++)
                cw1.check(dw1[wi(s1, k, 0, i, j)], ref_dw(s1, m.x, dy1, k, 0, i, j),
                          (double)s1.n * s1.out_h * s1.out_w + 4, std::to_string(k));
    EXPECT_TRUE(cw.result());
    EXPECT_TRUE(cx.result());
    EXPECT_TRUE(cw1.result());
}

// Same inputs, differently poisoned workspaces (NaN, +Inf, a number):
// bit-identical outputs and gradients.
TEST(Conv, DeterministicAndWorkspaceIndependent) {
    std::mt19937 g(931);
    Mnist m(g);
    const Vec a1 = relu(random_vec(g, x_len(m.c2), -1.0f, 2.0f)), dy = random_vec(g, y_len(m.c2));
    Conv conv(m.c2);
    Vec y0, dx0, dw0, db0;
    conv.forward(m.c2, a1, m.w2, &m.b2, y0, NAN);
    conv.backward(m.c2, a1, m.w2, dy, &dx0, dw0, &db0, NAN);
    for (float poison : {INFINITY, -3.5f}) {
        Vec y, dx, dw, db;
        conv.forward(m.c2, a1, m.w2, &m.b2, y, poison);
        conv.backward(m.c2, a1, m.w2, dy, &dx, dw, &db, poison);
        EXPECT_TRUE(same_bits(y, y0)) << "poison " << poison;
        EXPECT_TRUE(same_bits(dx, dx0)) << "poison " << poison;
        EXPECT_TRUE(same_bits(dw, dw0)) << "poison " << poison;
        EXPECT_TRUE(same_bits(db, db0)) << "poison " << poison;
    }
}

} // namespace
