// The GPU's im2col + cuBLAS convolution backward (kernels/cuda/conv_gemm_cuda.cu)
// checked on the CPU: its index math and its cuBLAS arguments are the
// functions of kernels/cuda/conv_gemm_math.h, run here exactly as the kernels
// run them, with cublasSgemmStridedBatched replaced by its column-major
// definition, against the CPU backend's backward. What this cannot check is
// cuBLAS itself and the launches; the GPU parity tests do (label gpu).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "kernels/cpu/cpu_ops.h"
#include "kernels/cuda/conv_gemm_math.h"

namespace {

using Vec = std::vector<float>;
const double kU = 1.0 / 16777216.0;

// cublasSgemmStridedBatched with alpha 1, beta 0, by its definition:
// C_b[i + j*ldc] = sum_l op(A_b)[i, l] * op(B_b)[l, j], column-major, float
// products summed in double (the test's bound covers any order). First the
// argument rules real cuBLAS enforces (CUBLAS_STATUS_INVALID_VALUE
// otherwise), and that no two C_b overlap, which it does not check.
void batched_gemm(const ct_batched_gemm &g, const float *A, const float *B, float *C, int batch) {
    ASSERT_GE(g.m, 0);
    ASSERT_GE(g.n, 0);
    ASSERT_GE(g.k, 0);
    ASSERT_GE(batch, 0);
    ASSERT_GE(g.lda, std::max(1, g.trans_a ? g.k : g.m));
    ASSERT_GE(g.ldb, std::max(1, g.trans_b ? g.n : g.k));
    ASSERT_GE(g.ldc, std::max(1, g.m));
    if (batch > 1) ASSERT_GE(g.stride_c, (long long)g.ldc * g.n);
    for (int b = 0; b < batch; ++b) {
        const float *a = A + b * g.stride_a, *bb = B + b * g.stride_b;
        float *c = C + b * g.stride_c;
        for (int i = 0; i < g.m; ++i)
            for (int j = 0; j < g.n; ++j) {
                double acc = 0;
                for (int l = 0; l < g.k; ++l) {
                    const float av = g.trans_a ? a[l + (size_t)i * g.lda] : a[i + (size_t)l * g.lda];
                    const float bv = g.trans_b ? bb[j + (size_t)l * g.ldb] : bb[l + (size_t)j * g.ldb];
                    acc += (double)av * bv;
                }
                c[i + (size_t)j * g.ldc] = (float)acc;
            }
    }
}

// cuda_conv_gemm_backward's loop with each kernel's grid-stride body run
// serially (every element is independent within a launch).
void gemm_backward(const ct_conv_shape &s, int chunk, const float *x, const float *w, const float *dy, float *dx,
                   float *dw) {
    const size_t crs = (size_t)s.c * s.r * s.s, pq = (size_t)s.out_h * s.out_w;
    const size_t x_per = (size_t)s.c * s.h * s.w, y_per = (size_t)s.k * pq, w_n = (size_t)s.k * crs;
    std::vector<float> ws(ct_conv_gemm_workspace_floats(&s, (size_t)chunk), NAN);
    float *col = ws.data(), *part = col + ct_conv_gemm_part_offset(&s, (size_t)chunk);
    const ct_batched_gemm g_dw = ct_conv_gemm_dw(&s), g_dcol = ct_conv_gemm_dcol(&s);
    for (int b0 = 0; b0 < s.n; b0 += chunk) {
        const int rows = s.n - b0 < chunk ? s.n - b0 : chunk;
        const float *xb = x + (size_t)b0 * x_per, *dyb = dy + (size_t)b0 * y_per;
        for (size_t t = 0; t < (size_t)rows * crs * pq; ++t) col[t] = ct_im2col_at(&s, xb, t);
        batched_gemm(g_dw, col, dyb, part, rows);
        for (size_t e = 0; e < w_n; ++e) dw[e] = ct_sum_samples_at(w_n, rows, b0 == 0, part, dw, e);
        batched_gemm(g_dcol, dyb, w, col, rows);
        for (size_t t = 0; t < (size_t)rows * x_per; ++t) dx[(size_t)b0 * x_per + t] = ct_col2im_at(&s, col, t);
    }
}

Vec random_vec(std::mt19937 &g, size_t n) {
    std::uniform_real_distribution<float> u(-1.0f, 1.0f);
    Vec v(n);
    for (float &x : v) x = u(g);
    return v;
}

Vec absv(Vec v) {
    for (float &x : v) x = std::fabs(x);
    return v;
}

void expect_close(const Vec &got, const Vec &want, const Vec &mag, double k, const char *what) {
    ASSERT_EQ(got.size(), want.size());
    size_t bad = 0;
    for (size_t i = 0; i < got.size(); ++i) {
        const double tol = 2.0 * k * kU * mag[i] + 1e-30;
        if (!(std::fabs((double)got[i] - want[i]) <= tol) && bad++ < 3)
            ADD_FAILURE() << what << "[" << i << "] gemm path " << got[i] << " cpu " << want[i] << " tol " << tol;
    }
    EXPECT_EQ(bad, 0u) << what;
}

struct Case {
    int n, c, h, w, k, r, s, stride, pad;
};

TEST(ConvGemmMath, MatchesTheCpuBackwardAtAwkwardShapesAndChunks) {
    // The conv parity test's shapes (conv2 of the MNIST CNN at 3 samples,
    // not 64, to keep the naive GEMM quick) and one of every padding/stride mix.
    const Case cases[] = {{1, 1, 28, 28, 32, 3, 3, 1, 0}, {3, 32, 26, 26, 64, 3, 3, 1, 0}, {3, 3, 7, 5, 5, 3, 2, 2, 1},
                          {2, 1, 5, 5, 1, 1, 1, 1, 0},    {5, 7, 9, 9, 3, 5, 5, 1, 2},     {1, 2, 4, 4, 3, 3, 3, 2, 1},
                          {7, 3, 9, 9, 5, 3, 3, 1, 1},    {4, 2, 6, 7, 3, 2, 3, 3, 2}};
    std::mt19937 g(21);
    for (const Case &cs : cases) {
        ct_conv_shape sh = {cs.n, cs.c, cs.h, cs.w, cs.k, cs.r, cs.s, cs.stride, cs.pad,
                            (cs.h + 2 * cs.pad - cs.r) / cs.stride + 1, (cs.w + 2 * cs.pad - cs.s) / cs.stride + 1};
        const size_t nx = (size_t)cs.n * cs.c * cs.h * cs.w, nw = (size_t)cs.k * cs.c * cs.r * cs.s;
        const size_t ny = (size_t)cs.n * cs.k * sh.out_h * sh.out_w;
        const Vec x = random_vec(g, nx), w = random_vec(g, nw), dy = random_vec(g, ny);

        size_t ws = 0;
        ct_error err;
        ct_error_clear(&err);
        void *plan = cpu_conv_plan(nullptr, &sh, 1, &ws, &err);
        ASSERT_NE(plan, nullptr) << err.msg;
        std::vector<unsigned char> wsc(ws + 1);
        Vec dxc(nx), dwc(nw), dbc(cs.k), mdx(nx), mdw(nw), mdb(cs.k);
        cpu_conv2d_backward(nullptr, plan, &sh, x.data(), w.data(), dy.data(), dxc.data(), dwc.data(), dbc.data(),
                            wsc.data());
        cpu_conv2d_backward(nullptr, plan, &sh, absv(x).data(), absv(w).data(), absv(dy).data(), mdx.data(),
                            mdw.data(), mdb.data(), wsc.data());
        cpu_conv_plan_free(nullptr, plan);

        for (int chunk : {1, 2, 3, cs.n}) {
            if (chunk > cs.n) continue;
            SCOPED_TRACE(::testing::Message() << "n" << cs.n << " c" << cs.c << " " << cs.h << "x" << cs.w << " k"
                                              << cs.k << " " << cs.r << "x" << cs.s << " stride " << cs.stride
                                              << " pad " << cs.pad << ", " << chunk << " samples per pass");
            Vec dx(nx, NAN), dw(nw, NAN);  // NaN: every element must be written
            gemm_backward(sh, chunk, x.data(), w.data(), dy.data(), dx.data(), dw.data());
            expect_close(dx, dxc, mdx, cs.k * cs.r * cs.s, "dx");
            expect_close(dw, dwc, mdw, (double)cs.n * sh.out_h * sh.out_w, "dw");
        }
    }
}

// The workspace layout the buffers above use: the columns, then the
// partials on a 64-float boundary; and the planned chunk is the most
// samples whose workspace fits the cap.
TEST(ConvGemmMath, WorkspaceHoldsTheColumnsAndThePartials) {
    ct_conv_shape sh = {64, 32, 26, 26, 64, 3, 3, 1, 0, 24, 24};  // cnn's conv2
    EXPECT_EQ(ct_conv_gemm_part_offset(&sh, 1), (size_t)288 * 576);  // already a multiple of 64
    EXPECT_EQ(ct_conv_gemm_workspace_floats(&sh, 3), (size_t)3 * 288 * 576 + (size_t)3 * 64 * 288);
    ct_conv_shape odd = {5, 3, 7, 7, 2, 3, 3, 1, 0, 5, 5};  // CRS 27, PQ 25: 675 floats a sample
    EXPECT_EQ(ct_conv_gemm_part_offset(&odd, 1), 704u);
    EXPECT_EQ(ct_conv_gemm_part_offset(&odd, 2), 1408u);
    EXPECT_EQ(ct_conv_gemm_workspace_floats(&odd, 2), 1408u + 2 * 2 * 27);
    for (const ct_conv_shape &c : {sh, odd}) {
        for (size_t cap : {(size_t)1 << 28, (size_t)1 << 20, (size_t)100000, (size_t)4096}) {
            const int chunk = ct_conv_gemm_chunk(&c, cap);
            const size_t cap_f = cap / sizeof(float);
            if (ct_conv_gemm_workspace_floats(&c, 1) > cap_f) {
                EXPECT_EQ(chunk, 0) << cap;
                continue;
            }
            ASSERT_GE(chunk, 1) << cap;
            EXPECT_LE(chunk, c.n) << cap;
            EXPECT_LE(ct_conv_gemm_workspace_floats(&c, (size_t)chunk), cap_f) << cap;
            if (chunk < c.n) EXPECT_GT(ct_conv_gemm_workspace_floats(&c, (size_t)chunk + 1), cap_f) << cap;
        }
    }
    // The pad can take a sample back: 2 x 675 + 2 x 54 = 1458 floats, padded 1516.
    ct_conv_shape pad = odd;
    EXPECT_EQ(ct_conv_gemm_chunk(&pad, 1500 * sizeof(float)), 1);
    EXPECT_EQ(ct_conv_gemm_chunk(&pad, 1516 * sizeof(float)), 2);
    const ct_batched_gemm dw = ct_conv_gemm_dw(&sh), dcol = ct_conv_gemm_dcol(&sh);
    // Each C_b fits its stride, so batches never overlap.
    EXPECT_GE(dw.stride_c, (long long)dw.ldc * dw.n);
    EXPECT_GE(dcol.stride_c, (long long)dcol.ldc * dcol.n);
    EXPECT_EQ(dcol.stride_b, 0);  // w is shared by the whole batch
}

}  // namespace
