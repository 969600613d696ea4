// The CPU backend's compute ops against float64 references written here.
//
// Every op runs on fresh random inputs (seeded std::mt19937, never all zeros)
// at awkward sizes (1, 3, 7, 31, 33, 65, 127, a batch of one) and at the real
// model sizes (128x784 * 512, 32x10). The ops are called directly with
// b == NULL. Tolerances, per op:
//   gemm            |C - ref| <= (k + 4) * 2^-24 * (|alpha| sum_p |a||b| + |beta c|):
//                   the classical worst-case bound for a length-k float dot product
//                   plus the alpha/beta/add roundings; any indexing error is O(1).
//   linear, relu    exact (one float add, then a select).
//   sigmoid, tanh   |y - ref| <= 2e-7 + 2e-6 |ref| (a few ulps of expf/tanhf).
//   softmax         |y - ref| <= 1e-7 + 4e-6 |ref|.
//   act backward    linear/relu exact; sigmoid/tanh/softmax 1e-7 + 4e-6 |ref|;
//                   dbias exactly the double row-order column sum of dz, rounded.
//   softmax_xent    loss 1e-6 + 2e-6 |ref|, dlogits 1e-8 + 1e-5 |ref| (times scale).
//   mse_onehot      loss and dpred 1e-8 + 2e-6 |ref|.
//   loss_accumulate exact (double sum in row order).
//   dropout         mask exactly as specified; kept values 2^-22 relative to x/(1-rate).
//   gather          exact (one rounding of a product that is exact in double).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "cutrain/rng.h"
#include "kernels/cpu/cpu_ops.h"
#include "support/random.h"

namespace {

using Vec = std::vector<float>;

using ct_test::random_labels;
using ct_test::random_vec;

// Reports the first few elements outside |got - ref| <= atol + rtol |ref|.
::testing::AssertionResult all_close(const float *got, const double *ref, size_t n, double atol,
                                     double rtol) {
    size_t bad = 0;
    std::string first;
    for (size_t i = 0; i < n; i++) {
        double err = std::fabs((double)got[i] - ref[i]);
        if (!(err <= atol + rtol * std::fabs(ref[i]))) {
            if (bad < 3)
                first += " [" + std::to_string(i) + "] got " + std::to_string(got[i]) +
                         " want " + std::to_string(ref[i]);
            bad++;
        }
    }
    if (bad == 0) return ::testing::AssertionSuccess();
    return ::testing::AssertionFailure() << bad << " of " << n << " elements off:" << first;
}

::testing::AssertionResult all_close(const Vec &got, const std::vector<double> &ref, double atol,
                                     double rtol) {
    if (got.size() != ref.size()) return ::testing::AssertionFailure() << "size mismatch";
    return all_close(got.data(), ref.data(), got.size(), atol, rtol);
}

bool same_bits(const Vec &a, const Vec &b) {
    return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

const float kU = 1.0f / 16777216.0f; // 2^-24, float unit roundoff

// ---------------------------------------------------------------------------
// gemm

struct GemmCase {
    int ta, tb, m, n, k, pad; // pad: extra columns in every leading dimension
    float alpha, beta;
};

// Stored operand shapes: A is [m,k] or [k,m]; B is [k,n] or [n,k].
double op_a(const Vec &A, int lda, int ta, int i, int p) {
    return ta ? A[(size_t)p * lda + i] : A[(size_t)i * lda + p];
}
double op_b(const Vec &B, int ldb, int tb, int p, int j) {
    return tb ? B[(size_t)j * ldb + p] : B[(size_t)p * ldb + j];
}

using GemmFn = void (*)(int, int, int, int, int, float, const float *, int, const float *, int, float, float *, int);

void table_gemm(int ta, int tb, int m, int n, int k, float alpha, const float *A, int lda, const float *B, int ldb,
                float beta, float *C, int ldc) {
    cpu_gemm(nullptr, ta, tb, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc);
}

void run_gemm_case(const GemmCase &c, std::mt19937 &g, GemmFn gemm = table_gemm) {
    SCOPED_TRACE("ta=" + std::to_string(c.ta) + " tb=" + std::to_string(c.tb) +
                 " m=" + std::to_string(c.m) + " n=" + std::to_string(c.n) +
                 " k=" + std::to_string(c.k) + " pad=" + std::to_string(c.pad));
    int a_rows = c.ta ? c.k : c.m, a_cols = c.ta ? c.m : c.k;
    int b_rows = c.tb ? c.n : c.k, b_cols = c.tb ? c.k : c.n;
    int lda = a_cols + c.pad, ldb = b_cols + c.pad, ldc = c.n + c.pad;
    Vec A = random_vec(g, (size_t)a_rows * lda), B = random_vec(g, (size_t)b_rows * ldb);
    Vec C = random_vec(g, (size_t)c.m * ldc);
    const float kSentinel = 12345.0f;
    // Padding: NaN in the inputs (reading it would poison the result), a
    // sentinel in C (writing it would be caught).
    for (int r = 0; r < a_rows; r++)
        for (int j = a_cols; j < lda; j++) A[(size_t)r * lda + j] = NAN;
    for (int r = 0; r < b_rows; r++)
        for (int j = b_cols; j < ldb; j++) B[(size_t)r * ldb + j] = NAN;
    for (int r = 0; r < c.m; r++)
        for (int j = c.n; j < ldc; j++) C[(size_t)r * ldc + j] = kSentinel;
    Vec C0 = C;

    gemm(c.ta, c.tb, c.m, c.n, c.k, c.alpha, A.data(), lda, B.data(), ldb, c.beta, C.data(), ldc);

    size_t bad = 0;
    for (int i = 0; i < c.m; i++) {
        for (int j = 0; j < c.n; j++) {
            double dot = 0.0, mag = 0.0;
            for (int p = 0; p < c.k; p++) {
                double t = op_a(A, lda, c.ta, i, p) * op_b(B, ldb, c.tb, p, j);
                dot += t;
                mag += std::fabs(t);
            }
            double c0 = C0[(size_t)i * ldc + j];
            double ref = c.alpha * dot + c.beta * c0;
            double tol = (c.k + 4) * (double)kU *
                         (std::fabs(c.alpha) * mag + std::fabs(c.beta * c0)) + 1e-30;
            double got = C[(size_t)i * ldc + j];
            if (!(std::fabs(got - ref) <= tol) && bad++ < 3)
                ADD_FAILURE() << "C[" << i << "," << j << "] = " << got << ", want " << ref
                              << " +- " << tol;
        }
        for (int j = c.n; j < ldc; j++)
            if (C[(size_t)i * ldc + j] != kSentinel && bad++ < 3)
                ADD_FAILURE() << "gemm wrote C padding at row " << i << " col " << j;
    }
    EXPECT_EQ(bad, 0u);
}

TEST(CpuOps, GemmAllTransposesAwkwardSizes) {
    std::mt19937 g(101);
    const int shapes[][3] = {{1, 1, 1},   {3, 7, 31},   {7, 1, 3},   {1, 33, 65},
                             {31, 33, 7}, {33, 65, 127}, {65, 3, 33}, {127, 31, 1}};
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++)
            for (auto &s : shapes) {
                run_gemm_case({ta, tb, s[0], s[1], s[2], 0, 1.0f, 0.0f}, g);
                run_gemm_case({ta, tb, s[0], s[1], s[2], 3, -0.75f, 0.5f}, g);
                run_gemm_case({ta, tb, s[0], s[1], s[2], 17, 1.25f, -1.5f}, g);
            }
}

// The plain-loop GEMM that builds without a CBLAS use, to the same bound.
TEST(CpuOps, GemmLoopFallbackAllTransposes) {
    std::mt19937 g(103);
    const int shapes[][3] = {{1, 1, 1}, {3, 7, 31}, {33, 65, 127}, {65, 3, 33}};
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++)
            for (auto &s : shapes) {
                run_gemm_case({ta, tb, s[0], s[1], s[2], 0, 1.0f, 0.0f}, g, cpu_gemm_loop);
                run_gemm_case({ta, tb, s[0], s[1], s[2], 3, -0.75f, 0.5f}, g, cpu_gemm_loop);
            }
}

// The three products of a dense 784 -> 512 layer on a batch of 128.
TEST(CpuOps, GemmRealModelSizes) {
    std::mt19937 g(102);
    run_gemm_case({0, 1, 128, 512, 784, 0, 1.0f, 0.0f}, g); // Y = X W^T
    run_gemm_case({1, 0, 512, 784, 128, 0, 1.0f, 1.0f}, g); // dW += dZ^T X
    run_gemm_case({0, 0, 128, 784, 512, 0, 1.0f, 0.0f}, g); // dX = dZ W
    run_gemm_case({0, 1, 32, 10, 512, 5, 0.5f, 0.25f}, g);  // the 512 -> 10 head, padded
}

TEST(CpuOps, GemmBetaZeroOverwritesNaN) {
    std::mt19937 g(103);
    for (int k : {0, 1, 7}) {
        const int m = 3, n = 5;
        Vec A = random_vec(g, (size_t)m * 7 + 1), B = random_vec(g, (size_t)7 * n + 1);
        Vec C((size_t)m * n, NAN);
        cpu_gemm(nullptr, 0, 0, m, n, k, 1.0f, A.data(), k > 0 ? k : 1, B.data(), n, 0.0f,
                 C.data(), n);
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++) {
                double ref = 0.0;
                for (int p = 0; p < k; p++) ref += (double)A[(size_t)i * k + p] * B[(size_t)p * n + j];
                EXPECT_NEAR(C[(size_t)i * n + j], ref, 1e-5) << "k=" << k;
                if (k == 0) {
                    EXPECT_EQ(C[(size_t)i * n + j], 0.0f);
                }
            }
    }
}

TEST(CpuOps, GemmKZeroScalesByBeta) {
    std::mt19937 g(104);
    const int m = 4, n = 6, ldc = 9;
    Vec C = random_vec(g, (size_t)m * ldc), C0 = C;
    float dummy = NAN;
    cpu_gemm(nullptr, 1, 1, m, n, 0, 2.0f, &dummy, 1, &dummy, 1, -0.5f, C.data(), ldc);
    for (int i = 0; i < m; i++)
        for (int j = 0; j < ldc; j++) {
            float want = j < n ? -0.5f * C0[(size_t)i * ldc + j] : C0[(size_t)i * ldc + j];
            EXPECT_EQ(C[(size_t)i * ldc + j], want) << i << "," << j;
        }
}

TEST(CpuOps, GemmEmptyOutputTouchesNothing) {
    Vec C(8, 7.0f);
    float dummy = NAN;
    cpu_gemm(nullptr, 0, 0, 0, 4, 3, 1.0f, &dummy, 3, &dummy, 4, 0.0f, C.data(), 4);
    cpu_gemm(nullptr, 0, 0, 2, 0, 3, 1.0f, &dummy, 3, &dummy, 1, 0.0f, C.data(), 1);
    for (float v : C) EXPECT_EQ(v, 7.0f);
}

// ---------------------------------------------------------------------------
// bias + activation

const ct_activation kActs[] = {CT_ACT_LINEAR, CT_ACT_RELU, CT_ACT_SIGMOID, CT_ACT_TANH,
                               CT_ACT_SOFTMAX};
const int kActShapes[][2] = {{1, 1},  {1, 10},  {3, 7},   {7, 3},    {31, 33},
                             {33, 65}, {65, 127}, {32, 10}, {128, 512}, {1, 512}};

std::vector<double> act_forward_ref(ct_activation act, int rows, int cols, const Vec &z,
                                    const float *bias) {
    std::vector<double> y((size_t)rows * cols);
    for (int r = 0; r < rows; r++) {
        double *yr = &y[(size_t)r * cols];
        for (int c = 0; c < cols; c++) {
            // The bias add is a float op in the contract; its exact value is
            // the float sum, which double represents exactly.
            float zf = z[(size_t)r * cols + c] + (bias ? bias[c] : 0.0f);
            double v = zf;
            switch (act) {
            case CT_ACT_LINEAR: yr[c] = v; break;
            case CT_ACT_RELU: yr[c] = v > 0 ? v : 0.0; break;
            case CT_ACT_SIGMOID: yr[c] = 1.0 / (1.0 + std::exp(-v)); break;
            case CT_ACT_TANH: yr[c] = std::tanh(v); break;
            case CT_ACT_SOFTMAX: yr[c] = v; break;
            }
        }
        if (act == CT_ACT_SOFTMAX) {
            double m = yr[0], s = 0.0;
            for (int c = 1; c < cols; c++) m = std::max(m, yr[c]);
            for (int c = 0; c < cols; c++) s += std::exp(yr[c] - m);
            for (int c = 0; c < cols; c++) yr[c] = std::exp(yr[c] - m) / s;
        }
    }
    return y;
}

struct Tol {
    double atol, rtol;
};
Tol forward_tol(ct_activation act) {
    switch (act) {
    case CT_ACT_LINEAR:
    case CT_ACT_RELU: return {0.0, 0.0};
    case CT_ACT_SIGMOID:
    case CT_ACT_TANH: return {2e-7, 2e-6};
    default: return {1e-7, 4e-6};
    }
}

TEST(CpuOps, BiasActForwardMatchesReference) {
    std::mt19937 g(201);
    for (ct_activation act : kActs)
        for (auto &s : kActShapes)
            for (int with_bias = 0; with_bias < 2; with_bias++) {
                int rows = s[0], cols = s[1];
                SCOPED_TRACE("act=" + std::to_string(act) + " " + std::to_string(rows) + "x" +
                             std::to_string(cols) + " bias=" + std::to_string(with_bias));
                Vec z = random_vec(g, (size_t)rows * cols, -4.0f, 4.0f);
                Vec bias = random_vec(g, (size_t)cols);
                const float *bp = with_bias ? bias.data() : nullptr;
                Vec y = z;
                cpu_bias_act_forward(nullptr, act, rows, cols, bp, y.data());
                Tol t = forward_tol(act);
                EXPECT_TRUE(all_close(y, act_forward_ref(act, rows, cols, z, bp), t.atol, t.rtol));
                if (act == CT_ACT_SOFTMAX)
                    for (int r = 0; r < rows; r++) {
                        double sum = 0.0;
                        for (int c = 0; c < cols; c++) sum += y[(size_t)r * cols + c];
                        EXPECT_NEAR(sum, 1.0, 1e-6) << "row " << r;
                    }
            }
}

TEST(CpuOps, SaturatingActivationsStayFinite) {
    Vec z = {100.0f, -100.0f, 1e4f, -1e4f, 88.8f, -88.8f, 0.0f};
    const int n = (int)z.size();
    Vec y = z;
    cpu_bias_act_forward(nullptr, CT_ACT_SIGMOID, 1, n, nullptr, y.data());
    EXPECT_EQ(y[0], 1.0f);
    EXPECT_EQ(y[2], 1.0f);
    EXPECT_EQ(y[4], 1.0f);
    for (int i : {1, 3, 5}) {
        EXPECT_TRUE(std::isfinite(y[i]));
        EXPECT_GE(y[i], 0.0f);
    }
    EXPECT_LT(y[1], 1e-40f); // e^-100 = 3.7e-44: at or below float's subnormal range
    EXPECT_EQ(y[3], 0.0f);
    EXPECT_EQ(y[6], 0.5f);

    y = z;
    cpu_bias_act_forward(nullptr, CT_ACT_TANH, 1, n, nullptr, y.data());
    EXPECT_EQ(y[0], 1.0f);
    EXPECT_EQ(y[1], -1.0f);
    EXPECT_EQ(y[2], 1.0f);
    EXPECT_EQ(y[3], -1.0f);

    // Softmax of a row spanning +-1e4: one-hot on the maximum, no NaN.
    y = z;
    cpu_bias_act_forward(nullptr, CT_ACT_SOFTMAX, 1, n, nullptr, y.data());
    for (int i = 0; i < n; i++) EXPECT_EQ(y[i], i == 2 ? 1.0f : 0.0f) << i;
}

TEST(CpuOps, ReluKeepsNaNVisible) {
    Vec y = {NAN, -1.0f, 2.0f};
    cpu_bias_act_forward(nullptr, CT_ACT_RELU, 1, 3, nullptr, y.data());
    EXPECT_TRUE(std::isnan(y[0]));
    EXPECT_EQ(y[1], 0.0f);
    EXPECT_EQ(y[2], 2.0f);
}

std::vector<double> act_backward_ref(ct_activation act, int rows, int cols, const Vec &y,
                                     const Vec &dy) {
    std::vector<double> dz((size_t)rows * cols);
    for (int r = 0; r < rows; r++) {
        const size_t o = (size_t)r * cols;
        double dot = 0.0;
        for (int c = 0; c < cols; c++) dot += (double)dy[o + c] * y[o + c];
        for (int c = 0; c < cols; c++) {
            double yv = y[o + c], g = dy[o + c];
            switch (act) {
            case CT_ACT_LINEAR: dz[o + c] = g; break;
            case CT_ACT_RELU: dz[o + c] = yv > 0 ? g : 0.0; break;
            case CT_ACT_SIGMOID: dz[o + c] = g * yv * (1.0 - yv); break;
            case CT_ACT_TANH: dz[o + c] = g * (1.0 - yv * yv); break;
            case CT_ACT_SOFTMAX: dz[o + c] = yv * (g - dot); break;
            }
        }
    }
    return dz;
}

TEST(CpuOps, BiasActBackwardMatchesReference) {
    std::mt19937 g(202);
    for (ct_activation act : kActs)
        for (auto &s : kActShapes) {
            int rows = s[0], cols = s[1];
            SCOPED_TRACE("act=" + std::to_string(act) + " " + std::to_string(rows) + "x" +
                         std::to_string(cols));
            // y is a genuine output of the activation (relu: about half zeros).
            Vec y = random_vec(g, (size_t)rows * cols, -3.0f, 3.0f);
            cpu_bias_act_forward(nullptr, act, rows, cols, nullptr, y.data());
            Vec dy0 = random_vec(g, y.size());
            std::vector<double> ref = act_backward_ref(act, rows, cols, y, dy0);

            Vec dz = dy0, dbias((size_t)cols, NAN);
            cpu_bias_act_backward(nullptr, act, rows, cols, y.data(), dz.data(), dbias.data());
            Tol t = (act == CT_ACT_LINEAR || act == CT_ACT_RELU) ? Tol{0.0, 0.0}
                                                                 : Tol{1e-7, 4e-6};
            EXPECT_TRUE(all_close(dz, ref, t.atol, t.rtol));

            // dbias: the column sums of the op's own dz, in double, in row order.
            std::vector<double> col((size_t)cols, 0.0);
            for (int r = 0; r < rows; r++)
                for (int c = 0; c < cols; c++) col[c] += dz[(size_t)r * cols + c];
            for (int c = 0; c < cols; c++) EXPECT_EQ(dbias[c], (float)col[c]) << "col " << c;

            // Without dbias: the same dz.
            Vec dz2 = dy0;
            cpu_bias_act_backward(nullptr, act, rows, cols, y.data(), dz2.data(), nullptr);
            EXPECT_TRUE(same_bits(dz, dz2));
        }
}

// ---------------------------------------------------------------------------
// losses

struct XentRef {
    std::vector<double> loss, correct, grad;
};

XentRef xent_ref(int rows, int classes, const Vec &z, const std::vector<int32_t> &lab,
                 double scale) {
    XentRef o{std::vector<double>(rows), std::vector<double>(rows),
              std::vector<double>((size_t)rows * classes)};
    for (int r = 0; r < rows; r++) {
        const float *zr = &z[(size_t)r * classes];
        int am = 0;
        for (int c = 1; c < classes; c++)
            if (zr[c] > zr[am]) am = c;
        double m = zr[am], s = 0.0;
        for (int c = 0; c < classes; c++) s += std::exp(zr[c] - m);
        o.loss[r] = std::log(s) + m - zr[lab[r]];
        o.correct[r] = am == lab[r];
        for (int c = 0; c < classes; c++)
            o.grad[(size_t)r * classes + c] = scale * (std::exp(zr[c] - m) / s - (c == lab[r]));
    }
    return o;
}

struct LossOut {
    Vec loss, correct, grad;
    LossOut(int rows, int classes)
        : loss(rows, NAN), correct(rows, NAN), grad((size_t)rows * classes, NAN) {}
};

const int kLossShapes[][2] = {{1, 1}, {1, 10}, {3, 2}, {7, 3}, {31, 7}, {33, 10},
                              {32, 10}, {65, 33}, {128, 10}, {127, 127}};

TEST(CpuOps, SoftmaxXentMatchesReference) {
    std::mt19937 g(301);
    for (auto &s : kLossShapes)
        for (float scale : {1.0f, 0.03125f, -0.7f}) {
            int rows = s[0], classes = s[1];
            SCOPED_TRACE(std::to_string(rows) + "x" + std::to_string(classes) +
                         " scale=" + std::to_string(scale));
            Vec z = random_vec(g, (size_t)rows * classes, -6.0f, 6.0f);
            auto lab = random_labels(g, rows, classes);
            LossOut o(rows, classes);
            cpu_softmax_xent(nullptr, rows, classes, z.data(), lab.data(), scale, o.grad.data(),
                             o.loss.data(), o.correct.data());
            XentRef ref = xent_ref(rows, classes, z, lab, scale);
            EXPECT_TRUE(all_close(o.loss, ref.loss, 1e-6, 2e-6));
            EXPECT_TRUE(all_close(o.correct, ref.correct, 0.0, 0.0));
            EXPECT_TRUE(all_close(o.grad, ref.grad, 1e-8 * std::fabs(scale), 1e-5));

            // dlogits == NULL: the same loss and correctness.
            LossOut o2(rows, classes);
            cpu_softmax_xent(nullptr, rows, classes, z.data(), lab.data(), scale, nullptr,
                             o2.loss.data(), o2.correct.data());
            EXPECT_TRUE(same_bits(o.loss, o2.loss));
            EXPECT_TRUE(same_bits(o.correct, o2.correct));
        }
}

TEST(CpuOps, SoftmaxXentHugeLogitsStayExact) {
    // Rows over {+1e4, -1e4}: e^(2e4) overflows anything, the stable form does not.
    const int classes = 10;
    Vec z = {1e4f,  -1e4f, -1e4f, -1e4f, -1e4f, -1e4f, -1e4f, -1e4f, -1e4f, -1e4f,  // label 0
             1e4f,  -1e4f, -1e4f, -1e4f, -1e4f, -1e4f, -1e4f, -1e4f, -1e4f, -1e4f,  // label 5
             -1e4f, 1e4f,  -1e4f, 1e4f,  -1e4f, -1e4f, -1e4f, -1e4f, -1e4f, -1e4f,  // label 3
             -1e4f, -1e4f, -1e4f, -1e4f, -1e4f, -1e4f, -1e4f, -1e4f, -1e4f, -1e4f}; // label 9
    std::vector<int32_t> lab = {0, 5, 3, 9};
    const int rows = 4;
    LossOut o(rows, classes);
    cpu_softmax_xent(nullptr, rows, classes, z.data(), lab.data(), 1.0f, o.grad.data(),
                     o.loss.data(), o.correct.data());
    EXPECT_EQ(o.loss[0], 0.0f);           // label holds the only maximum
    EXPECT_EQ(o.loss[1], 2e4f);           // 1e4 - (-1e4): e^-2e4 vanishes in the sum
    EXPECT_EQ(o.loss[2], (float)std::log(2.0)); // two equal maxima, label is one of them
    EXPECT_EQ(o.loss[3], (float)std::log(10.0)); // all equal
    EXPECT_EQ(o.correct[0], 1.0f);
    EXPECT_EQ(o.correct[1], 0.0f);
    EXPECT_EQ(o.correct[2], 0.0f); // tie between 1 and 3 goes to 1
    EXPECT_EQ(o.correct[3], 0.0f); // tie over all goes to 0
    for (float v : o.grad) EXPECT_TRUE(std::isfinite(v));
    EXPECT_EQ(o.grad[0], 0.0f);
    EXPECT_EQ(o.grad[1 * classes + 0], 1.0f);
    EXPECT_EQ(o.grad[1 * classes + 5], -1.0f);
    EXPECT_EQ(o.grad[2 * classes + 1], 0.5f);
    EXPECT_EQ(o.grad[2 * classes + 3], -0.5f);
    EXPECT_FLOAT_EQ(o.grad[3 * classes + 9], 0.1f - 1.0f);
    EXPECT_FLOAT_EQ(o.grad[3 * classes + 4], 0.1f);
}

TEST(CpuOps, SoftmaxXentEqualLogitsGiveLogClasses) {
    std::mt19937 g(302);
    for (int classes : {1, 2, 3, 7, 10, 31, 33, 127})
        for (float v : {0.0f, 3.7f, -1e4f, 1e4f, -55.5f}) {
            const int rows = 3;
            Vec z((size_t)rows * classes, v);
            auto lab = random_labels(g, rows, classes);
            lab[0] = 0;
            LossOut o(rows, classes);
            const float scale = 0.25f;
            cpu_softmax_xent(nullptr, rows, classes, z.data(), lab.data(), scale, o.grad.data(),
                             o.loss.data(), o.correct.data());
            for (int r = 0; r < rows; r++) {
                SCOPED_TRACE("classes=" + std::to_string(classes) + " v=" + std::to_string(v));
                EXPECT_EQ(o.loss[r], (float)std::log((double)classes));
                EXPECT_EQ(o.correct[r], lab[r] == 0 ? 1.0f : 0.0f);
                for (int c = 0; c < classes; c++)
                    EXPECT_FLOAT_EQ(o.grad[(size_t)r * classes + c],
                                    scale * (1.0f / classes - (c == lab[r] ? 1.0f : 0.0f)));
            }
        }
}

TEST(CpuOps, ArgmaxTiesGoToLowestIndex) {
    Vec z = {1.0f, 5.0f, 5.0f, 2.0f, 1.0f, 5.0f, 5.0f, 2.0f};
    std::vector<int32_t> lab = {1, 2};
    LossOut o(2, 4), m(2, 4);
    cpu_softmax_xent(nullptr, 2, 4, z.data(), lab.data(), 1.0f, nullptr, o.loss.data(),
                     o.correct.data());
    cpu_mse_onehot(nullptr, 2, 4, z.data(), lab.data(), 1.0f, nullptr, m.loss.data(),
                   m.correct.data());
    EXPECT_EQ(o.correct[0], 1.0f);
    EXPECT_EQ(o.correct[1], 0.0f);
    EXPECT_EQ(m.correct[0], 1.0f);
    EXPECT_EQ(m.correct[1], 0.0f);
}

XentRef mse_ref(int rows, int classes, const Vec &p, const std::vector<int32_t> &lab,
                double scale) {
    XentRef o{std::vector<double>(rows), std::vector<double>(rows),
              std::vector<double>((size_t)rows * classes)};
    for (int r = 0; r < rows; r++) {
        const float *pr = &p[(size_t)r * classes];
        double sq = 0.0;
        int am = 0;
        for (int c = 0; c < classes; c++) {
            double d = pr[c] - (c == lab[r] ? 1.0 : 0.0);
            sq += d * d;
            o.grad[(size_t)r * classes + c] = scale * 2.0 * d / classes;
            if (pr[c] > pr[am]) am = c;
        }
        o.loss[r] = sq / classes;
        o.correct[r] = am == lab[r];
    }
    return o;
}

TEST(CpuOps, MseOnehotMatchesReference) {
    std::mt19937 g(303);
    for (auto &s : kLossShapes)
        for (float scale : {1.0f, 0.03125f}) {
            int rows = s[0], classes = s[1];
            SCOPED_TRACE(std::to_string(rows) + "x" + std::to_string(classes));
            Vec p = random_vec(g, (size_t)rows * classes, -0.5f, 1.5f);
            auto lab = random_labels(g, rows, classes);
            LossOut o(rows, classes);
            cpu_mse_onehot(nullptr, rows, classes, p.data(), lab.data(), scale, o.grad.data(),
                           o.loss.data(), o.correct.data());
            XentRef ref = mse_ref(rows, classes, p, lab, scale);
            EXPECT_TRUE(all_close(o.loss, ref.loss, 1e-8, 2e-6));
            EXPECT_TRUE(all_close(o.correct, ref.correct, 0.0, 0.0));
            EXPECT_TRUE(all_close(o.grad, ref.grad, 1e-8, 2e-6));

            LossOut o2(rows, classes);
            cpu_mse_onehot(nullptr, rows, classes, p.data(), lab.data(), scale, nullptr,
                           o2.loss.data(), o2.correct.data());
            EXPECT_TRUE(same_bits(o.loss, o2.loss));
            EXPECT_TRUE(same_bits(o.correct, o2.correct));
        }
}

TEST(CpuOps, MseOfPerfectPredictionIsZero) {
    const int classes = 10;
    Vec p(2 * classes, 0.0f);
    p[3] = 1.0f;
    p[classes + 9] = 1.0f;
    std::vector<int32_t> lab = {3, 9};
    LossOut o(2, classes);
    cpu_mse_onehot(nullptr, 2, classes, p.data(), lab.data(), 1.0f, o.grad.data(), o.loss.data(),
                   o.correct.data());
    EXPECT_EQ(o.loss[0], 0.0f);
    EXPECT_EQ(o.loss[1], 0.0f);
    EXPECT_EQ(o.correct[0], 1.0f);
    EXPECT_EQ(o.correct[1], 1.0f);
    for (float v : o.grad) EXPECT_EQ(v, 0.0f);
}

// An invalid label must not be read through: NaN loss (for the health flags),
// zero gradient row, not correct; the other rows are unaffected.
TEST(CpuOps, OutOfRangeLabelGivesNaNRowLoss) {
    std::mt19937 g(304);
    const int rows = 5, classes = 10;
    Vec z = random_vec(g, (size_t)rows * classes, -3.0f, 3.0f);
    std::vector<int32_t> good = {1, 2, 3, 4, 5};
    std::vector<int32_t> bad = {-1, 2, 10, 4, 1 << 30};
    using Fn = void (*)(ct_backend *, int, int, const float *, const int32_t *, float, float *,
                        float *, float *);
    for (Fn fn : {(Fn)cpu_softmax_xent, (Fn)cpu_mse_onehot}) {
        LossOut ok(rows, classes), o(rows, classes);
        fn(nullptr, rows, classes, z.data(), good.data(), 1.0f, ok.grad.data(), ok.loss.data(),
           ok.correct.data());
        fn(nullptr, rows, classes, z.data(), bad.data(), 1.0f, o.grad.data(), o.loss.data(),
           o.correct.data());
        for (int r = 0; r < rows; r++) {
            bool invalid = bad[r] < 0 || bad[r] >= classes;
            if (invalid) {
                EXPECT_TRUE(std::isnan(o.loss[r])) << r;
                EXPECT_EQ(o.correct[r], 0.0f) << r;
                for (int c = 0; c < classes; c++) EXPECT_EQ(o.grad[(size_t)r * classes + c], 0.0f);
            } else {
                EXPECT_EQ(o.loss[r], ok.loss[r]);
                EXPECT_EQ(o.correct[r], ok.correct[r]);
                for (int c = 0; c < classes; c++)
                    EXPECT_EQ(o.grad[(size_t)r * classes + c], ok.grad[(size_t)r * classes + c]);
            }
        }
        // Without a gradient buffer as well.
        LossOut o2(rows, classes);
        fn(nullptr, rows, classes, z.data(), bad.data(), 1.0f, nullptr, o2.loss.data(),
           o2.correct.data());
        EXPECT_TRUE(std::isnan(o2.loss[0]));
    }
}

TEST(CpuOps, LossAccumulateSumsInRowOrder) {
    std::mt19937 g(305);
    for (int rows : {0, 1, 3, 32, 127, 128}) {
        Vec loss = random_vec(g, (size_t)rows, 0.0f, 5.0f);
        Vec correct((size_t)rows);
        for (auto &c : correct) c = (float)(g() & 1);
        double acc[2] = {1.5, 7.0};
        double want_l = 0.0, want_c = 0.0;
        for (int r = 0; r < rows; r++) {
            want_l += loss[r];
            want_c += correct[r];
        }
        cpu_loss_accumulate(nullptr, rows, loss.data(), correct.data(), acc);
        EXPECT_EQ(acc[0], 1.5 + want_l) << rows;
        EXPECT_EQ(acc[1], 7.0 + want_c) << rows;
        // A second batch adds on top.
        cpu_loss_accumulate(nullptr, rows, loss.data(), correct.data(), acc);
        EXPECT_EQ(acc[0], 1.5 + want_l + want_l) << rows;
    }
    float nan_loss[2] = {1.0f, NAN}, c2[2] = {1.0f, 0.0f};
    double acc[2] = {0.0, 0.0};
    cpu_loss_accumulate(nullptr, 2, nan_loss, c2, acc);
    EXPECT_TRUE(std::isnan(acc[0]));
    EXPECT_EQ(acc[1], 1.0);
}

// ---------------------------------------------------------------------------
// dropout

// The ops read the step from a ctx; the tests speak of (seed, step, layer),
// whose stream is CT_STREAM_DROPOUT(step, layer).
void drop_forward(size_t n, float rate, uint64_t seed, uint64_t step, uint32_t layer, const float *x, float *y) {
    ct_step_ctx ctx = {step, 1, 0, 0, 1};
    cpu_dropout_forward(nullptr, n, rate, seed, layer, &ctx, x, y);
}

void drop_backward(size_t n, float rate, uint64_t seed, uint64_t step, uint32_t layer, const float *dy,
                   float *dx) {
    ct_step_ctx ctx = {step, 1, 0, 0, 1};
    cpu_dropout_backward(nullptr, n, rate, seed, layer, &ctx, dy, dx);
}

// Batch 0 of an order list: the indices themselves.
const ct_step_ctx kBatch0 = {1, 1, 0, 0, 1};

Vec nonzero_vec(std::mt19937 &g, size_t n) {
    Vec v = random_vec(g, n, 0.5f, 2.0f);
    for (auto &x : v)
        if (g() & 1) x = -x;
    return v;
}

TEST(CpuOps, DropoutMaskAndScaleAsSpecified) {
    std::mt19937 g(401);
    const size_t n = 100003;
    Vec x = nonzero_vec(g, n);
    for (float rate : {0.1f, 0.25f, 0.5f, 0.9f}) {
        SCOPED_TRACE("rate=" + std::to_string(rate));
        const uint64_t seed = 0x5eedull, stream = CT_STREAM_DROPOUT(17, 2);
        Vec y(n, NAN);
        drop_forward(n, rate, seed, 17, 2, x.data(), y.data());
        size_t kept = 0, wrong = 0;
        for (size_t i = 0; i < n; i++) {
            bool keep = ct_rng_uniform(seed, stream, i) >= rate;
            double want = keep ? x[i] / (1.0 - rate) : 0.0;
            if (keep) kept++;
            bool ok = keep ? std::fabs(y[i] - want) <= 4.0 * kU * std::fabs(want) : y[i] == 0.0f;
            if (!ok && wrong++ < 3) ADD_FAILURE() << "y[" << i << "] = " << y[i] << " want " << want;
        }
        EXPECT_EQ(wrong, 0u);
        // Binomial: 5 standard deviations of the kept fraction.
        double p = 1.0 - rate, frac = (double)kept / n;
        EXPECT_NEAR(frac, p, 5.0 * std::sqrt(p * (1 - p) / n));
    }
}

TEST(CpuOps, DropoutIsAPureFunctionOfSeedAndStream) {
    std::mt19937 g(402);
    const size_t n = 100000;
    const float rate = 0.5f;
    Vec x = nonzero_vec(g, n);
    Vec a(n), b2(n), c(n), d(n);
    drop_forward(n, rate, 7, 1, 0, x.data(), a.data());
    drop_forward(n, rate, 7, 1, 0, x.data(), b2.data());
    drop_forward(n, rate, 7, 1, 1, x.data(), c.data());
    drop_forward(n, rate, 8, 1, 0, x.data(), d.data());
    EXPECT_TRUE(same_bits(a, b2));
    size_t diff_stream = 0, diff_seed = 0;
    for (size_t i = 0; i < n; i++) {
        diff_stream += (a[i] == 0.0f) != (c[i] == 0.0f);
        diff_seed += (a[i] == 0.0f) != (d[i] == 0.0f);
    }
    // Independent masks disagree on 2 p (1-p) = half of the elements.
    EXPECT_NEAR((double)diff_stream / n, 0.5, 0.01);
    EXPECT_NEAR((double)diff_seed / n, 0.5, 0.01);

    // A prefix of a longer call is the shorter call: no dependence on n.
    Vec shortv(1000);
    drop_forward(1000, rate, 7, 1, 0, x.data(), shortv.data());
    EXPECT_EQ(std::memcmp(shortv.data(), a.data(), 1000 * sizeof(float)), 0);
}

TEST(CpuOps, DropoutBackwardUsesTheForwardMask) {
    std::mt19937 g(403);
    for (size_t n : {(size_t)1, (size_t)3, (size_t)33, (size_t)65537})
        for (float rate : {0.2f, 0.5f}) {
            Vec x = nonzero_vec(g, n), dy = nonzero_vec(g, n);
            Vec y(n), dx(n);
            drop_forward(n, rate, 99, 5, 0, x.data(), y.data());
            drop_backward(n, rate, 99, 5, 0, dy.data(), dx.data());
            const double s = 1.0 / (1.0 - rate);
            size_t wrong = 0;
            for (size_t i = 0; i < n; i++) {
                bool kept = y[i] != 0.0f;
                bool ok = kept ? std::fabs(dx[i] - dy[i] * s) <= 4.0 * kU * std::fabs(dy[i] * s)
                               : dx[i] == 0.0f;
                if (!ok && wrong++ < 3)
                    ADD_FAILURE() << "dx[" << i << "] = " << dx[i] << " for dy " << dy[i]
                                  << (kept ? " (kept)" : " (dropped)");
            }
            EXPECT_EQ(wrong, 0u);
            // The same map in both directions: same input, same bits.
            Vec fx(n), bx(n);
            drop_forward(n, rate, 99, 5, 0, dy.data(), fx.data());
            drop_backward(n, rate, 99, 5, 0, dy.data(), bx.data());
            EXPECT_TRUE(same_bits(fx, bx));
        }
}

TEST(CpuOps, DropoutInPlaceAndRateZero) {
    std::mt19937 g(404);
    const size_t n = 4099;
    Vec x = nonzero_vec(g, n);
    Vec out(n), inplace = x;
    drop_forward(n, 0.3f, 1, 2, 0, x.data(), out.data());
    drop_forward(n, 0.3f, 1, 2, 0, inplace.data(), inplace.data());
    EXPECT_TRUE(same_bits(out, inplace));
    Vec bout(n), binplace = x;
    drop_backward(n, 0.3f, 1, 2, 0, x.data(), bout.data());
    drop_backward(n, 0.3f, 1, 2, 0, binplace.data(), binplace.data());
    EXPECT_TRUE(same_bits(bout, binplace));

    // rate 0: an exact copy, out of place and in place, both directions.
    Vec copy(n, NAN);
    drop_forward(n, 0.0f, 1, 2, 0, x.data(), copy.data());
    EXPECT_TRUE(same_bits(copy, x));
    Vec same = x;
    drop_forward(n, 0.0f, 1, 2, 0, same.data(), same.data());
    EXPECT_TRUE(same_bits(same, x));
    Vec bcopy(n, NAN);
    drop_backward(n, 0.0f, 1, 2, 0, x.data(), bcopy.data());
    EXPECT_TRUE(same_bits(bcopy, x));

    // n == 0 touches nothing; rate 1 drops everything without 0 * inf = NaN.
    float sentinel = 3.0f;
    drop_forward(0, 0.5f, 1, 2, 0, x.data(), &sentinel);
    EXPECT_EQ(sentinel, 3.0f);
    Vec all(n, NAN);
    drop_forward(n, 1.0f, 1, 2, 0, x.data(), all.data());
    for (float v : all) ASSERT_EQ(v, 0.0f);
}

// ---------------------------------------------------------------------------
// gather

template <typename T>
void check_gather(const std::vector<T> &images, const std::vector<uint8_t> &labels,
                  ct_elem_type type, size_t count, size_t elems, float scale,
                  const std::vector<int32_t> &idx) {
    ct_device_dataset ds{};
    ds.images = images.data();
    ds.labels = labels.data();
    ds.elem_type = type;
    ds.count = count;
    ds.sample_elems = elems;
    ds.scale = scale;
    const int rows = (int)idx.size();
    Vec x((size_t)rows * elems, NAN);
    std::vector<int32_t> lab((size_t)rows, -7);
    cpu_gather_batch(nullptr, &ds, idx.data(), 0, &kBatch0, rows, x.data(), lab.data());
    size_t bad = 0;
    for (int r = 0; r < rows; r++) {
        EXPECT_EQ(lab[r], (int32_t)labels[idx[r]]) << "row " << r;
        for (size_t j = 0; j < elems; j++) {
            // float * (byte or float) is exact in double; the op rounds it once.
            float want = (float)((double)scale * (double)images[(size_t)idx[r] * elems + j]);
            if (x[(size_t)r * elems + j] != want && bad++ < 3)
                ADD_FAILURE() << "x[" << r << "," << j << "] = " << x[(size_t)r * elems + j]
                              << " want " << want;
        }
    }
    EXPECT_EQ(bad, 0u);
}

TEST(CpuOps, GatherFromUint8Dataset) {
    std::mt19937 g(501);
    for (size_t elems : {(size_t)1, (size_t)3, (size_t)784}) {
        const size_t count = 37;
        std::vector<uint8_t> img(count * elems), lab(count);
        for (auto &v : img) v = (uint8_t)(g() & 0xff);
        img[0] = 0;
        img[count * elems - 1] = 255;
        for (auto &v : lab) v = (uint8_t)(g() % 10);
        for (int rows : {1, 7, 32, 128}) {
            std::vector<int32_t> idx((size_t)rows);
            for (auto &i : idx) i = (int32_t)(g() % count); // repeats and any order
            idx[0] = (int32_t)count - 1;
            check_gather(img, lab, CT_ELEM_U8, count, elems, 1.0f / 255.0f, idx);
        }
    }
}

TEST(CpuOps, GatherFromFloat32Dataset) {
    std::mt19937 g(502);
    for (size_t elems : {(size_t)1, (size_t)31, (size_t)784}) {
        const size_t count = 65;
        Vec img = random_vec(g, count * elems, -3.0f, 3.0f);
        std::vector<uint8_t> lab(count);
        for (auto &v : lab) v = (uint8_t)(g() % 10);
        for (float scale : {1.0f, 0.37f}) {
            std::vector<int32_t> idx(33);
            for (auto &i : idx) i = (int32_t)(g() % count);
            check_gather(img, lab, CT_ELEM_F32, count, elems, scale, idx);
        }
    }
}

TEST(CpuOps, GatherOutOfRangeIndexPoisonsTheRow) {
    std::vector<uint8_t> img = {1, 2, 3, 4, 5, 6}, lab = {7, 8, 9};
    ct_device_dataset ds{img.data(), lab.data(), CT_ELEM_U8, 3, 2, 1.0f};
    std::vector<int32_t> idx = {2, 3, -1, 0};
    Vec x(8, 0.0f);
    std::vector<int32_t> out(4, 0);
    cpu_gather_batch(nullptr, &ds, idx.data(), 0, &kBatch0, 4, x.data(), out.data());
    EXPECT_EQ(x[0], 5.0f);
    EXPECT_EQ(x[1], 6.0f);
    EXPECT_EQ(out[0], 9);
    for (int r : {1, 2}) {
        EXPECT_TRUE(std::isnan(x[2 * r]) && std::isnan(x[2 * r + 1])) << r;
        EXPECT_EQ(out[r], -1) << r;
    }
    EXPECT_EQ(x[6], 1.0f);
    EXPECT_EQ(out[3], 7);
}

} // namespace

namespace {
TEST(CpuOps, GatherReadsItsBatchOfTheOrderFromTheContext) {
    std::vector<uint8_t> images(10 * 2), labels(10);
    for (int i = 0; i < 10; ++i) {
        images[2 * i] = (uint8_t)(10 * i);
        images[2 * i + 1] = (uint8_t)(10 * i + 1);
        labels[i] = (uint8_t)(9 - i);
    }
    ct_device_dataset ds = {images.data(), labels.data(), CT_ELEM_U8, 10, 2, 1.0f};
    std::vector<int32_t> order = {9, 8, 7, 6, 5, 4, 3, 2, 1, 0};
    const ct_step_ctx ctx = {5, 1, 2, 0, 1};  // batch 2 of stride 3: order[6..8]
    std::vector<float> x(3 * 2);
    std::vector<int32_t> y(3);
    cpu_gather_batch(nullptr, &ds, order.data(), 3, &ctx, 3, x.data(), y.data());
    EXPECT_EQ(x, (std::vector<float>{30, 31, 20, 21, 10, 11}));
    EXPECT_EQ(y, (std::vector<int32_t>{6, 7, 8}));
}
}  // namespace
