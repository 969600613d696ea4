// Convolution and max pooling, CPU against CUDA (cuDNN for the convolution):
// the same random inputs on both, NaN agreement first, then values within
// the fp32 summation-order bound |gpu - cpu| <= 2 K u M, where u = 2^-24, K
// the length of each sum and M the same operation on |x| and |w| (so the
// bound scales with the terms, not with a cancelled result). Pooling does no
// arithmetic and must agree bit for bit. Skipped without a GPU.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string>
#include <random>
#include <vector>

#include "kernels/cpu/cpu_ops.h"
#include "support/fixtures.h"
#include "cuda_fixture.h"

namespace {

using Vec = std::vector<float>;
const double kU = 1.0 / 16777216.0;


Vec random_vec(std::mt19937 &g, size_t n) {
    std::uniform_real_distribution<float> u(-1.0f, 1.0f);
    Vec v(n);
    for (float &x : v) x = u(g);
    return v;
}

Vec absv(const Vec &v) {
    Vec a(v);
    for (float &x : a) x = std::fabs(x);
    return a;
}

void expect_close(const Vec &got, const Vec &want, const Vec &mag, double k, const char *what) {
    ASSERT_EQ(got.size(), want.size());
    size_t bad = 0;
    for (size_t i = 0; i < got.size(); ++i) {
        bool nan_g = std::isnan(got[i]), nan_w = std::isnan(want[i]);
        double tol = 2.0 * k * kU * mag[i] + 1e-30;
        bool ok = nan_g == nan_w && (nan_g || std::fabs((double)got[i] - want[i]) <= tol);
        if (!ok && bad++ < 3) ADD_FAILURE() << what << "[" << i << "] gpu " << got[i] << " cpu " << want[i] << " tol " << tol;
    }
    EXPECT_EQ(bad, 0u) << what;
}

struct Case {
    int n, c, h, w, k, r, s, stride, pad;
};

// The GPU backward paths (conv_cuda.cu): cuDNN, im2col + cuBLAS in one pass
// per plan-sized batch, and the same in passes of 2 samples (dw summed over
// passes). Chosen by the environment at plan time; restored after.
const char *const kBackwardPaths[] = {"cudnn", "gemm", "gemm:2"};
const char *const kBackwardVar = "CUTRAIN_CUDA_CONV_BACKWARD";

class ConvParity : public CudaFixture {
  protected:
    void SetUp() override {
        CudaFixture::SetUp();
        if (IsSkipped() || HasFatalFailure()) return;
        ct_error err;
        ct_error_clear(&err);
        cpu = ct_backend_cpu_create(1, &err);
        ASSERT_NE(cpu, nullptr) << err.msg;
    }
    void TearDown() override {
        if (cpu) ct_backend_destroy(cpu);
        CudaFixture::TearDown();
    }
    // Forward, then backward, of one shape on both backends from the same
    // random inputs, each output within its summation-order bound.
    void check_case(const Case &cs, std::mt19937 &g) {
        ct_conv_shape sh = {cs.n, cs.c, cs.h, cs.w, cs.k, cs.r, cs.s, cs.stride, cs.pad,
                            (cs.h + 2 * cs.pad - cs.r) / cs.stride + 1, (cs.w + 2 * cs.pad - cs.s) / cs.stride + 1};
        SCOPED_TRACE(::testing::Message() << "n" << cs.n << " c" << cs.c << " " << cs.h << "x" << cs.w << " k" << cs.k
                                          << " " << cs.r << "x" << cs.s << " s" << cs.stride << " p" << cs.pad);
        size_t nx = (size_t)cs.n * cs.c * cs.h * cs.w, nw = (size_t)cs.k * cs.c * cs.r * cs.s;
        size_t ny = (size_t)cs.n * cs.k * sh.out_h * sh.out_w;
        Vec x = random_vec(g, nx), w = random_vec(g, nw), b = random_vec(g, cs.k), dy = random_vec(g, ny);
        size_t ws_cpu = 0, ws_gpu = 0;
        ct_error err;
        ct_error_clear(&err);
        void *pc = cpu->ops->conv_plan(cpu, &sh, 1, &ws_cpu, &err);
        void *pg = gpu->ops->conv_plan(gpu, &sh, 1, &ws_gpu, &err);
        ASSERT_NE(pc, nullptr) << err.msg;
        ASSERT_NE(pg, nullptr) << err.msg;
        std::vector<unsigned char> wsc(ws_cpu + 1);
        void *wsg = ws_gpu ? gpu->ops->alloc(gpu, ws_gpu, &err) : nullptr;
        if (wsg) owned.push_back(wsg);

        // forward: bound from the same convolution of |x|, |w|, |b|
        Vec yc(ny), mag(ny);
        cpu->ops->conv2d_forward(cpu, pc, &sh, x.data(), w.data(), b.data(), yc.data(), wsc.data());
        cpu->ops->conv2d_forward(cpu, pc, &sh, absv(x).data(), absv(w).data(), absv(b).data(), mag.data(), wsc.data());
        float *gy = up(Vec(ny, 7.0f));
        gpu->ops->conv2d_forward(gpu, pg, &sh, up(x), up(w), up(b), gy, wsg);
        expect_close(down(gy, ny), yc, mag, cs.c * cs.r * cs.s + 1, "y");

        // backward
        Vec dxc(nx), dwc(nw), dbc(cs.k), mdx(nx), mdw(nw), mdb(cs.k);
        cpu->ops->conv2d_backward(cpu, pc, &sh, x.data(), w.data(), dy.data(), dxc.data(), dwc.data(), dbc.data(),
                                  wsc.data());
        cpu->ops->conv2d_backward(cpu, pc, &sh, absv(x).data(), absv(w).data(), absv(dy).data(), mdx.data(),
                                  mdw.data(), mdb.data(), wsc.data());
        float *gdx = up(Vec(nx, 7.0f)), *gdw = up(Vec(nw, 7.0f)), *gdb = up(Vec(cs.k, 7.0f));
        gpu->ops->conv2d_backward(gpu, pg, &sh, up(x), up(w), up(dy), gdx, gdw, gdb, wsg);
        expect_close(down(gdx, nx), dxc, mdx, cs.k * cs.r * cs.s, "dx");
        expect_close(down(gdw, nw), dwc, mdw, (double)cs.n * sh.out_h * sh.out_w, "dw");
        expect_close(down(gdb, cs.k), dbc, mdb, (double)cs.n * sh.out_h * sh.out_w, "dbias");
        cpu->ops->conv_plan_free(cpu, pc);
        gpu->ops->conv_plan_free(gpu, pg);
    }

    ct_backend *cpu = nullptr;
};

TEST_F(ConvParity, ForwardAndBackwardAtAwkwardAndRealShapes) {
    const Case cases[] = {{1, 1, 28, 28, 32, 3, 3, 1, 0},  {64, 32, 26, 26, 64, 3, 3, 1, 0}, {3, 3, 7, 5, 5, 3, 2, 2, 1},
                          {2, 1, 5, 5, 1, 1, 1, 1, 0},     {5, 7, 9, 9, 3, 5, 5, 1, 2},     {1, 2, 4, 4, 3, 3, 3, 2, 1}};
    for (const char *path : kBackwardPaths) {
        ct_test::ScopedEnv use(kBackwardVar, path);
        SCOPED_TRACE(std::string("backward path ") + path);
        std::mt19937 g(11);
        for (const Case &cs : cases) check_case(cs, g);
    }
}

TEST_F(ConvParity, SmallerBatchThanPlannedUsesThePlan) {
    for (const char *path : kBackwardPaths) {
        ct_test::ScopedEnv use(kBackwardVar, path);
        SCOPED_TRACE(std::string("backward path ") + path);
        ct_conv_shape sh = {64, 1, 28, 28, 32, 3, 3, 1, 0, 26, 26};
        size_t ws = 0, ws_gpu = 0;
        ct_error err;
        ct_error_clear(&err);
        void *pc = cpu->ops->conv_plan(cpu, &sh, 1, &ws, &err);
        ASSERT_NE(pc, nullptr) << err.msg;
        void *pg = gpu->ops->conv_plan(gpu, &sh, 1, &ws_gpu, &err);
        ASSERT_NE(pg, nullptr) << err.msg;
        void *wsg = ws_gpu ? gpu->ops->alloc(gpu, ws_gpu, &err) : nullptr;
        if (wsg) owned.push_back(wsg);
        std::vector<unsigned char> wsc(ws + 1);
        std::mt19937 g(12);
        sh.n = 5;  // a partial batch
        const size_t nx = 5 * 784, nw = 32 * 9, ny = 5 * 32 * 26 * 26;
        Vec x = random_vec(g, nx), w = random_vec(g, nw), b = random_vec(g, 32), dy = random_vec(g, ny);
        Vec yc(ny), mag(ny);
        cpu->ops->conv2d_forward(cpu, pc, &sh, x.data(), w.data(), b.data(), yc.data(), wsc.data());
        cpu->ops->conv2d_forward(cpu, pc, &sh, absv(x).data(), absv(w).data(), absv(b).data(), mag.data(),
                                 wsc.data());
        float *gy = up(Vec(ny, 7.0f));
        gpu->ops->conv2d_forward(gpu, pg, &sh, up(x), up(w), up(b), gy, wsg);
        expect_close(down(gy, ny), yc, mag, 10, "y");

        Vec dxc(nx), dwc(nw), dbc(32), mdx(nx), mdw(nw), mdb(32);
        cpu->ops->conv2d_backward(cpu, pc, &sh, x.data(), w.data(), dy.data(), dxc.data(), dwc.data(), dbc.data(),
                                  wsc.data());
        cpu->ops->conv2d_backward(cpu, pc, &sh, absv(x).data(), absv(w).data(), absv(dy).data(), mdx.data(),
                                  mdw.data(), mdb.data(), wsc.data());
        float *gdx = up(Vec(nx, 7.0f)), *gdw = up(Vec(nw, 7.0f)), *gdb = up(Vec(32, 7.0f));
        gpu->ops->conv2d_backward(gpu, pg, &sh, up(x), up(w), up(dy), gdx, gdw, gdb, wsg);
        expect_close(down(gdx, nx), dxc, mdx, 32 * 9, "dx");
        expect_close(down(gdw, nw), dwc, mdw, 5.0 * 26 * 26, "dw");
        expect_close(down(gdb, 32), dbc, mdb, 5.0 * 26 * 26, "dbias");
        gpu->ops->conv_plan_free(gpu, pg);
        cpu->ops->conv_plan_free(cpu, pc);
    }
}

// The im2col + cuBLAS backward in several passes (dw summed across them)
// gives the same bits twice, whatever the outputs held before.
TEST_F(ConvParity, GemmBackwardIsBitReproducible) {
    ct_test::ScopedEnv use(kBackwardVar, "gemm:3");
    ct_conv_shape sh = {7, 3, 9, 9, 5, 3, 3, 1, 1, 9, 9};
    size_t ws_gpu = 0;
    ct_error err;
    ct_error_clear(&err);
    void *pg = gpu->ops->conv_plan(gpu, &sh, 1, &ws_gpu, &err);
    ASSERT_NE(pg, nullptr) << err.msg;
    void *wsg = ws_gpu ? gpu->ops->alloc(gpu, ws_gpu, &err) : nullptr;
    if (wsg) owned.push_back(wsg);
    std::mt19937 g(14);
    const size_t nx = 7 * 3 * 81, nw = 5 * 3 * 9, ny = 7 * 5 * 81;
    float *x = up(random_vec(g, nx)), *w = up(random_vec(g, nw)), *dy = up(random_vec(g, ny));
    Vec dx[2], dw[2];
    for (int run = 0; run < 2; ++run) {
        float *gdx = up(Vec(nx, run ? NAN : 3.0f)), *gdw = up(Vec(nw, run ? NAN : -3.0f));
        gpu->ops->conv2d_backward(gpu, pg, &sh, x, w, dy, gdx, gdw, nullptr, wsg);
        dx[run] = down(gdx, nx);
        dw[run] = down(gdw, nw);
    }
    EXPECT_EQ(std::memcmp(dx[0].data(), dx[1].data(), nx * sizeof(float)), 0);
    EXPECT_EQ(std::memcmp(dw[0].data(), dw[1].data(), nw * sizeof(float)), 0);
    for (float v : dw[0]) ASSERT_TRUE(std::isfinite(v));
    gpu->ops->conv_plan_free(gpu, pg);
}

// A value the plan does not know is refused with the variable's name, as a
// usage error (like CUTRAIN_CUDA_DENSE_CHAIN and CUTRAIN_CUDA_STEP_FINISH).
TEST_F(ConvParity, UnknownBackwardPathIsRefusedAtPlanTime) {
    for (const char *bad : {"fast", "gemm:0", "gemm:", "gemm:2x", "GEMM"}) {
        ct_test::ScopedEnv use(kBackwardVar, bad);
        ct_conv_shape sh = {4, 1, 8, 8, 2, 3, 3, 1, 0, 6, 6};
        size_t ws = 0;
        ct_error err;
        ct_error_clear(&err);
        void *pg = gpu->ops->conv_plan(gpu, &sh, 1, &ws, &err);
        EXPECT_EQ(pg, nullptr) << bad;
        EXPECT_NE(std::string(err.msg).find("CUTRAIN_CUDA_CONV_BACKWARD=" + std::string(bad) + ":"),
                  std::string::npos)
            << err.msg;
        EXPECT_EQ(err.code, CT_EXIT_USAGE) << bad;
        if (pg) gpu->ops->conv_plan_free(gpu, pg);
    }
}

TEST_F(ConvParity, MaxPoolIsBitIdenticalIncludingTiesAndNaN) {
    std::mt19937 g(13);
    const int shapes[][4] = {{64, 64, 24, 24}, {1, 1, 5, 7}, {3, 2, 9, 9}};
    for (auto &s : shapes) {
        int n = s[0], c = s[1], h = s[2], w = s[3], size = 2;
        size_t nx = (size_t)n * c * h * w, ny = (size_t)n * c * (h / size) * (w / size);
        Vec x = random_vec(g, nx), dy = random_vec(g, ny);
        for (size_t i = 0; i < nx; i += 17) x[i] = x[i + 1 < nx ? i + 1 : i];  // ties
        x[nx / 2] = NAN;
        Vec yc(ny), dxc(nx);
        cpu->ops->maxpool_forward(cpu, n, c, h, w, size, x.data(), yc.data());
        cpu->ops->maxpool_backward(cpu, n, c, h, w, size, x.data(), yc.data(), dy.data(), dxc.data());
        float *gx = up(x), *gyp = up(Vec(ny, 7.0f)), *gdx = up(Vec(nx, 7.0f));
        gpu->ops->maxpool_forward(gpu, n, c, h, w, size, gx, gyp);
        Vec yg = down(gyp, ny);
        gpu->ops->maxpool_backward(gpu, n, c, h, w, size, gx, gyp, up(dy), gdx);
        Vec dxg = down(gdx, nx);
        EXPECT_EQ(0, std::memcmp(yg.data(), yc.data(), ny * sizeof(float)));
        EXPECT_EQ(0, std::memcmp(dxg.data(), dxc.data(), nx * sizeof(float)));
    }
}

}  // namespace
