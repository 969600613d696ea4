// Analytic gradients of the CPU ops against central finite differences.
//
//     dL/dx_i ~ (L(x + h e_i) - L(x - h e_i)) / (x_i^+ - x_i^-)
//
// where x_i^+- are the float values actually stored (x_i +- h rounded), so the
// denominator is the step that was really taken. The scalar L is evaluated
// through the float ops and summed in double. Two error sources bound the
// agreement: truncation, h^2/6 |L'''| (zero for the quadratic MSE), and the
// float rounding of L, about 2^-24 |L| / h. The steps (1e-2) and tolerances
// below are set from those two terms with margin; a wrong sign, a missing
// factor, a transposed product or a mask from the wrong side is off by O(1).
//
// ReLU is not differentiable at 0: every check keeps its pre-activations at
// least 3h away from 0, so no step crosses the kink.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "kernels/cpu/cpu_ops.h"
#include "support/random.h"

namespace {

using Vec = std::vector<float>;

using ct_test::random_labels;
using ct_test::random_vec;

double sum_d(const Vec &v) {
    double s = 0.0;
    for (float x : v) s += x;
    return s;
}

struct GradTol {
    double h, atol, rtol;
};

// Compares grad[i] with the central difference of loss() in param[i], for
// every i. Reports the worst element.
::testing::AssertionResult matches_fd(Vec &param, const Vec &grad,
                                      const std::function<double()> &loss, GradTol t) {
    if (param.size() != grad.size()) return ::testing::AssertionFailure() << "size mismatch";
    size_t bad = 0, worst = 0;
    double worst_excess = -1.0, worst_fd = 0.0;
    for (size_t i = 0; i < param.size(); i++) {
        const float orig = param[i];
        const float xp = (float)(orig + t.h), xm = (float)(orig - t.h);
        param[i] = xp;
        const double lp = loss();
        param[i] = xm;
        const double lm = loss();
        param[i] = orig;
        const double fd = (lp - lm) / ((double)xp - (double)xm);
        const double err = std::fabs((double)grad[i] - fd);
        const double allowed = t.atol + t.rtol * std::fabs(fd);
        if (!(err <= allowed)) bad++;
        if (!(err - allowed <= worst_excess)) {
            worst_excess = err - allowed;
            worst = i;
            worst_fd = fd;
        }
    }
    if (bad == 0) return ::testing::AssertionSuccess();
    return ::testing::AssertionFailure() << bad << " of " << param.size()
                                         << " gradient elements off; worst [" << worst
                                         << "] analytic " << grad[worst] << " vs fd " << worst_fd;
}

// ---------------------------------------------------------------------------
// bias + activation: L = sum_rc w_rc * act(z + b)_rc, so dL/dy = w.

const ct_activation kActs[] = {CT_ACT_LINEAR, CT_ACT_RELU, CT_ACT_SIGMOID, CT_ACT_TANH,
                               CT_ACT_SOFTMAX};

// Truncation is h^2/6 * |act'''| (about 2e-5 for tanh at h = 1e-2); rounding
// of one float output over 2h is ~1e-5 (dbias sums `rows` such terms).
GradTol act_tol(ct_activation act) {
    switch (act) {
    case CT_ACT_LINEAR:
    case CT_ACT_RELU: return {1e-2, 2e-5, 1e-4};
    default: return {1e-2, 1e-4, 2e-3};
    }
}

TEST(CpuGradcheck, BiasActBackwardEveryActivation) {
    std::mt19937 g(601);
    const int shapes[][2] = {{1, 1}, {1, 10}, {3, 7}, {4, 33}, {7, 3}};
    for (ct_activation act : kActs)
        for (auto &s : shapes) {
            const int rows = s[0], cols = s[1];
            SCOPED_TRACE("act=" + std::to_string(act) + " " + std::to_string(rows) + "x" +
                         std::to_string(cols));
            const GradTol t = act_tol(act);
            Vec b = random_vec(g, (size_t)cols, -0.5f, 0.5f);
            // Pre-activations of magnitude 3h..2 with random sign, then z = pre - b:
            // no central step on z or b crosses ReLU's kink.
            Vec z = random_vec(g, (size_t)rows * cols, (float)(3 * t.h), 2.0f);
            for (int r = 0; r < rows; r++)
                for (int c = 0; c < cols; c++) {
                    float &v = z[(size_t)r * cols + c];
                    v = ((g() & 1) ? v : -v) - b[c];
                }
            const Vec w = random_vec(g, z.size(), -1.0f, 1.0f);

            auto loss = [&]() {
                Vec y = z;
                cpu_bias_act_forward(nullptr, act, rows, cols, b.data(), y.data());
                double s2 = 0.0;
                for (size_t i = 0; i < y.size(); i++) s2 += (double)w[i] * y[i];
                return s2;
            };
            Vec y = z;
            cpu_bias_act_forward(nullptr, act, rows, cols, b.data(), y.data());
            Vec dz = w, db((size_t)cols, NAN);
            cpu_bias_act_backward(nullptr, act, rows, cols, y.data(), dz.data(), db.data());

            EXPECT_TRUE(matches_fd(z, dz, loss, t)) << "dz";
            GradTol tb = t;
            tb.atol *= std::sqrt((double)rows); // rows rounding terms add up
            EXPECT_TRUE(matches_fd(b, db, loss, tb)) << "dbias";
        }
}

// ---------------------------------------------------------------------------
// losses: L = grad_scale * sum_r row_loss[r]

TEST(CpuGradcheck, SoftmaxXentGradient) {
    std::mt19937 g(602);
    const int shapes[][2] = {{1, 2}, {1, 10}, {4, 3}, {7, 10}, {3, 33}};
    for (auto &s : shapes) {
        const int rows = s[0], classes = s[1];
        SCOPED_TRACE(std::to_string(rows) + "x" + std::to_string(classes));
        Vec z = random_vec(g, (size_t)rows * classes, -3.0f, 3.0f);
        auto lab = random_labels(g, rows, classes);
        const float scale = 1.0f / (float)rows;
        Vec rl((size_t)rows), rc((size_t)rows);
        auto loss = [&]() {
            cpu_softmax_xent(nullptr, rows, classes, z.data(), lab.data(), scale, nullptr,
                             rl.data(), rc.data());
            return scale * sum_d(rl);
        };
        Vec dz(z.size(), NAN);
        cpu_softmax_xent(nullptr, rows, classes, z.data(), lab.data(), scale, dz.data(),
                         rl.data(), rc.data());
        // |L'''| <= 1 per logit (times scale); rounding ~ 2^-24 * 3 / 2h per row.
        EXPECT_TRUE(matches_fd(z, dz, loss, {1e-2, 5e-5, 2e-3}));
    }
}

TEST(CpuGradcheck, MseGradient) {
    std::mt19937 g(603);
    const int shapes[][2] = {{1, 2}, {1, 10}, {4, 3}, {7, 10}, {3, 33}};
    for (auto &s : shapes) {
        const int rows = s[0], classes = s[1];
        SCOPED_TRACE(std::to_string(rows) + "x" + std::to_string(classes));
        Vec p = random_vec(g, (size_t)rows * classes, -0.5f, 1.5f);
        auto lab = random_labels(g, rows, classes);
        const float scale = 1.0f / (float)rows;
        Vec rl((size_t)rows), rc((size_t)rows);
        auto loss = [&]() {
            cpu_mse_onehot(nullptr, rows, classes, p.data(), lab.data(), scale, nullptr,
                           rl.data(), rc.data());
            return scale * sum_d(rl);
        };
        Vec dp(p.size(), NAN);
        cpu_mse_onehot(nullptr, rows, classes, p.data(), lab.data(), scale, dp.data(),
                       rl.data(), rc.data());
        // Quadratic: no truncation error, only the float rounding of row_loss.
        EXPECT_TRUE(matches_fd(p, dp, loss, {1e-2, 1e-5, 1e-4}));
    }
}

// ---------------------------------------------------------------------------
// A two-layer network end to end:
//   A1 = X W1^T + b1, H = relu(A1), Z = H W2^T + b2, L = mean_r xent(Z_r, y_r)
// backward with the same ops the trainer uses:
//   dZ = (softmax - onehot)/N, dW2 = dZ^T H, db2 = colsum dZ, dH = dZ W2,
//   dA1 = dH * [H > 0], dW1 = dA1^T X, db1 = colsum dA1, dX = dA1 W1.

struct Net {
    int n, in, hid, cls;
    Vec X, W1, b1, W2, b2;
    std::vector<int32_t> y;

    // Forward; fills H and Z and returns the mean loss (dZ when non-NULL).
    double forward(Vec &H, Vec &Z, float *dZ) const {
        H.assign((size_t)n * hid, NAN);
        Z.assign((size_t)n * cls, NAN);
        cpu_gemm(nullptr, 0, 1, n, hid, in, 1.0f, X.data(), in, W1.data(), in, 0.0f, H.data(),
                 hid);
        cpu_bias_act_forward(nullptr, CT_ACT_RELU, n, hid, b1.data(), H.data());
        cpu_gemm(nullptr, 0, 1, n, cls, hid, 1.0f, H.data(), hid, W2.data(), hid, 0.0f,
                 Z.data(), cls);
        cpu_bias_act_forward(nullptr, CT_ACT_LINEAR, n, cls, b2.data(), Z.data());
        Vec rl((size_t)n), rc((size_t)n);
        const float scale = 1.0f / (float)n;
        cpu_softmax_xent(nullptr, n, cls, Z.data(), y.data(), scale, dZ, rl.data(), rc.data());
        return sum_d(rl) / n;
    }
    double loss() const {
        Vec H, Z;
        return forward(H, Z, nullptr);
    }

    // The smallest |pre-activation| of the hidden layer, in double.
    double min_abs_preact() const {
        double m = INFINITY;
        for (int r = 0; r < n; r++)
            for (int j = 0; j < hid; j++) {
                double a = b1[j];
                for (int i = 0; i < in; i++)
                    a += (double)X[(size_t)r * in + i] * W1[(size_t)j * in + i];
                m = std::fmin(m, std::fabs(a));
            }
        return m;
    }
};

struct NetGrads {
    Vec dX, dW1, db1, dW2, db2;
};

NetGrads backward(const Net &net) {
    const int n = net.n, in = net.in, hid = net.hid, cls = net.cls;
    Vec H, Z, dZ((size_t)n * cls);
    net.forward(H, Z, dZ.data());
    NetGrads gr{Vec((size_t)n * in, NAN), Vec((size_t)hid * in, NAN), Vec((size_t)hid, NAN),
                Vec((size_t)cls * hid, NAN), Vec((size_t)cls, NAN)};
    cpu_gemm(nullptr, 1, 0, cls, hid, n, 1.0f, dZ.data(), cls, H.data(), hid, 0.0f,
             gr.dW2.data(), hid);
    cpu_bias_act_backward(nullptr, CT_ACT_LINEAR, n, cls, Z.data(), dZ.data(), gr.db2.data());
    Vec dH((size_t)n * hid, NAN);
    cpu_gemm(nullptr, 0, 0, n, hid, cls, 1.0f, dZ.data(), cls, net.W2.data(), hid, 0.0f,
             dH.data(), hid);
    cpu_bias_act_backward(nullptr, CT_ACT_RELU, n, hid, H.data(), dH.data(), gr.db1.data());
    cpu_gemm(nullptr, 1, 0, hid, in, n, 1.0f, dH.data(), hid, net.X.data(), in, 0.0f,
             gr.dW1.data(), in);
    cpu_gemm(nullptr, 0, 0, n, in, hid, 1.0f, dH.data(), hid, net.W1.data(), in, 0.0f,
             gr.dX.data(), in);
    return gr;
}

// Draws networks until every hidden pre-activation is at least `margin` from
// 0. A step h on one entry of X, W1 (|entries| <= 1) or b1 moves a
// pre-activation by at most h, so margin = 3h keeps ReLU's kink out of reach.
Net make_net(std::mt19937 &g, int n, int in, int hid, int cls, double margin) {
    for (int attempt = 0; attempt < 100000; attempt++) {
        Net net{n,
                in,
                hid,
                cls,
                random_vec(g, (size_t)n * in, -1.0f, 1.0f),
                random_vec(g, (size_t)hid * in, -1.0f, 1.0f),
                random_vec(g, (size_t)hid, -0.5f, 0.5f),
                random_vec(g, (size_t)cls * hid, -1.0f, 1.0f),
                random_vec(g, (size_t)cls, -0.5f, 0.5f),
                random_labels(g, n, cls)};
        if (net.min_abs_preact() >= margin) return net;
    }
    ADD_FAILURE() << "no network without near-kink pre-activations";
    return Net{};
}

TEST(CpuGradcheck, DenseReluSoftmaxXentEndToEnd) {
    std::mt19937 g(604);
    const double h = 1e-2;
    // Batch of one, then an awkward batch; hidden and class counts odd on purpose.
    const int shapes[][4] = {{1, 7, 9, 4}, {5, 7, 9, 4}, {3, 33, 7, 10}};
    for (auto &s : shapes) {
        SCOPED_TRACE("n=" + std::to_string(s[0]) + " in=" + std::to_string(s[1]) +
                     " hid=" + std::to_string(s[2]) + " cls=" + std::to_string(s[3]));
        Net net = make_net(g, s[0], s[1], s[2], s[3], 3 * h);
        ASSERT_GT(net.n, 0);
        // Some units must be dead, or the ReLU mask is not being tested.
        {
            Vec H, Z;
            net.forward(H, Z, nullptr);
            size_t dead = 0;
            for (float v : H) dead += v == 0.0f;
            EXPECT_GT(dead, 0u);
            EXPECT_LT(dead, H.size());
        }
        NetGrads gr = backward(net);
        auto loss = [&]() { return net.loss(); };
        // Truncation h^2/6 |L'''| with |L'''| = O(1) through two layers: ~2e-5;
        // rounding of the float forward ~ n * 2^-24 * 2 / 2h: ~1e-5.
        const GradTol t{h, 1e-4, 5e-3};
        EXPECT_TRUE(matches_fd(net.W1, gr.dW1, loss, t)) << "dW1";
        EXPECT_TRUE(matches_fd(net.b1, gr.db1, loss, t)) << "db1";
        EXPECT_TRUE(matches_fd(net.W2, gr.dW2, loss, t)) << "dW2";
        EXPECT_TRUE(matches_fd(net.b2, gr.db2, loss, t)) << "db2";
        EXPECT_TRUE(matches_fd(net.X, gr.dX, loss, t)) << "dX";
    }
}

} // namespace
