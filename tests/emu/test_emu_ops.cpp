// The rest of the CUDA backend's own kernels (those not behind cuBLAS or
// cuDNN): max pooling, dropout, the batch gather and the losses, their
// device code (kernels/cuda/*_kernel.cuh) run on the CPU by the fiber
// emulator against the CPU backend's ops, with the launchers' grids for a
// 2-SM GPU (so the grid-stride loops wrap). Pooling, dropout, the gather and
// the losses' argmax and MSE gradient are the CPU's bits; the cross-entropy
// sums a row in another order (a tree over lanes), so its float outputs may
// differ in the last bit; the accumulated batch sums likewise. Every buffer
// has one element more than the op's (never a null pointer), which neither
// side may touch.
#include "emu/cuda_emu.h"
// The device code, after the emulator's definitions of the CUDA keywords.
#include "kernels/cuda/dropout_kernel.cuh"
#include "kernels/cuda/gather_kernel.cuh"
#include "kernels/cuda/loss_kernel.cuh"
#include "kernels/cuda/pool_kernel.cuh"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "kernels/cpu/cpu_ops.h"

namespace {

constexpr int kSmCount = 2;
const float kNaN = std::numeric_limits<float>::quiet_NaN();
const float kInf = std::numeric_limits<float>::infinity();

std::vector<float> draw(std::mt19937 &g, size_t n, float lo, float hi) {
    std::uniform_real_distribution<float> d(lo, hi);
    std::vector<float> v(n);
    for (float &x : v) x = d(g);
    return v;
}

template <typename T>
::testing::AssertionResult same_bits(const std::vector<T> &a, const std::vector<T> &b) {
    if (a.size() != b.size()) return ::testing::AssertionFailure() << "sizes " << a.size() << " and " << b.size();
    for (size_t i = 0; i < a.size(); ++i)
        if (std::memcmp(&a[i], &b[i], sizeof(T)) != 0)
            return ::testing::AssertionFailure() << "first difference at " << i << ": " << a[i] << " vs " << b[i];
    return ::testing::AssertionSuccess();
}

// NaN where the CPU has NaN, equal infinities, finite values within rel of
// the CPU's (plus abs for values near 0).
::testing::AssertionResult close(const std::vector<float> &got, const std::vector<float> &cpu, double rel,
                                 double abs) {
    if (got.size() != cpu.size()) return ::testing::AssertionFailure() << "sizes differ";
    for (size_t i = 0; i < got.size(); ++i) {
        const float a = got[i], b = cpu[i];
        const bool ok = std::isnan(b) ? std::isnan(a)
                        : !std::isfinite(b) ? a == b
                                            : std::fabs((double)a - b) <= rel * std::fabs(b) + abs;
        if (!ok) return ::testing::AssertionFailure() << "at " << i << ": " << a << " vs cpu " << b;
    }
    return ::testing::AssertionSuccess();
}

// ---- max pooling -------------------------------------------------------------

struct PoolShape {
    int n, c, h, w, size;
};

// pool_cuda.cu's launches, emulated (the backward's memset, only where rows
// or columns are cut off, as the host's).
void emu_pool_forward(const PoolShape &s, const float *x, float *y) {
    if (s.n <= 0 || s.c <= 0 || s.size <= 0 || s.h < s.size || s.w < s.size) return;
    const int oh = s.h / s.size, ow = s.w / s.size;
    const size_t total = (size_t)s.n * s.c * oh * ow;
    ct_emu::launch(pool_blocks(kSmCount, total), CT_POOL_THREADS,
                   [&] { maxpool_forward_kernel(total, s.h, s.w, s.size, oh, ow, x, y); });
}

void emu_pool_backward(const PoolShape &s, const float *x, const float *y, const float *dy, float *dx) {
    if (s.n <= 0 || s.c <= 0 || s.h <= 0 || s.w <= 0) return;
    const bool windows = s.size > 0 && s.h >= s.size && s.w >= s.size;
    if (!windows || s.h % s.size != 0 || s.w % s.size != 0)
        std::memset(dx, 0, (size_t)s.n * s.c * s.h * s.w * sizeof(float));
    if (!windows) return;
    const int oh = s.h / s.size, ow = s.w / s.size;
    const size_t total = (size_t)s.n * s.c * oh * ow;
    ct_emu::launch(pool_blocks(kSmCount, total), CT_POOL_THREADS,
                   [&] { maxpool_backward_kernel(total, s.h, s.w, s.size, oh, ow, x, y, dy, dx); });
}

// dx starts as a finite poison, so an element the backward leaves unwritten
// shows up.
TEST(EmuPool, ForwardAndBackwardAreTheCpuBitsWithTiesNaNAndCutOffEdges) {
    const PoolShape shapes[] = {{1, 1, 2, 2, 2}, {2, 3, 5, 7, 2}, {3, 2, 6, 6, 3}, {2, 4, 24, 24, 2},
                                {1, 2, 4, 5, 1}, {1, 1, 1, 3, 2}};
    unsigned seed = 1;
    for (const PoolShape &s : shapes) {
        SCOPED_TRACE(std::to_string(s.n) + "x" + std::to_string(s.c) + "x" + std::to_string(s.h) + "x" +
                     std::to_string(s.w) + " size " + std::to_string(s.size));
        std::mt19937 g(seed++);
        const size_t nx = (size_t)s.n * s.c * s.h * s.w;
        const size_t ny = s.h >= s.size && s.w >= s.size ? (size_t)s.n * s.c * (s.h / s.size) * (s.w / s.size) : 0;
        // Four levels only, so windows hold ties; a NaN and an infinity planted.
        std::vector<float> x = draw(g, nx + 1, 0, 4);
        for (float &v : x) v = std::floor(v);
        if (nx > 6) {
            x[nx / 2] = kNaN;
            x[nx / 3] = kInf;
        }
        const std::vector<float> dy = draw(g, ny + 1, -1, 1);
        std::vector<float> y_cpu(ny + 1, 7.0f), y_got(ny + 1, 7.0f), dx_cpu(nx + 1, 7.0f), dx_got(nx + 1, 7.0f);
        cpu_maxpool_forward(nullptr, s.n, s.c, s.h, s.w, s.size, x.data(), y_cpu.data());
        emu_pool_forward(s, x.data(), y_got.data());
        EXPECT_TRUE(same_bits(y_got, y_cpu)) << "y";
        cpu_maxpool_backward(nullptr, s.n, s.c, s.h, s.w, s.size, x.data(), y_cpu.data(), dy.data(), dx_cpu.data());
        emu_pool_backward(s, x.data(), y_cpu.data(), dy.data(), dx_got.data());
        EXPECT_TRUE(same_bits(dx_got, dx_cpu)) << "dx";
    }
}

// ---- dropout -----------------------------------------------------------------

TEST(EmuDropout, TheCpuMaskAndScaleForwardBackwardAndInPlace) {
    unsigned seed = 10;
    for (size_t n : {size_t{1}, size_t{255}, size_t{1000}, size_t{4099}})
        for (float rate : {0.1f, 0.5f, 0.9f})
            for (int in_place = 0; in_place < 2; ++in_place) {
                SCOPED_TRACE("n " + std::to_string(n) + " rate " + std::to_string(rate) +
                             (in_place ? " in place" : ""));
                std::mt19937 g(seed++);
                std::vector<float> x = draw(g, n + 1, -2, 2);
                x[n / 2] = kNaN;
                const ct_step_ctx ctx = {77, 1, 3, 0, 1};
                const uint32_t layer = 2;
                const uint64_t rng_seed = 12345;
                std::vector<float> cpu(n + 1, 7.0f), got(n + 1, 7.0f);
                cpu_dropout_forward(nullptr, n, rate, rng_seed, layer, &ctx, x.data(), cpu.data());
                // dropout_cuda.cu: the scale rounded once on the host, then the kernel.
                const float s = 1.0f / (1.0f - rate);
                if (in_place) {
                    got = x;
                    got[n] = 7.0f;
                }
                const float *in = in_place ? got.data() : x.data();
                ct_emu::launch(dropout_blocks(kSmCount, n), CT_DROPOUT_THREADS,
                               [&] { dropout_kernel(n, rate, s, rng_seed, layer, &ctx, in, got.data()); });
                EXPECT_TRUE(same_bits(got, cpu));
                size_t kept = 0;
                for (size_t i = 0; i < n; ++i) kept += got[i] != 0.0f;
                if (n >= 1000) EXPECT_NEAR((double)kept / n, 1.0 - rate, 0.05);
            }
}

// ---- the batch gather ----------------------------------------------------------

TEST(EmuGather, RowsAndLabelsAreTheCpuBitsWithIndicesOutsideTheDataset) {
    unsigned seed = 20;
    for (int is_u8 = 0; is_u8 < 2; ++is_u8)
        for (size_t elems : {size_t{1}, size_t{3}, size_t{257}, size_t{784}})
            for (int rows : {1, 5, 33}) {
                SCOPED_TRACE(std::string(is_u8 ? "bytes" : "floats") + ", " + std::to_string(elems) + " elements, " +
                             std::to_string(rows) + " rows");
                std::mt19937 g(seed++);
                const size_t count = 50, stride = (size_t)rows + 2;
                std::vector<uint8_t> bytes(count * elems + 1), labels(count + 1);
                for (uint8_t &v : bytes) v = (uint8_t)(g() % 256);
                for (uint8_t &v : labels) v = (uint8_t)(g() % 10);
                const std::vector<float> floats = draw(g, count * elems + 1, -3, 3);
                ct_device_dataset ds;
                std::memset(&ds, 0, sizeof ds);
                ds.images = is_u8 ? (const void *)bytes.data() : (const void *)floats.data();
                ds.labels = labels.data();
                ds.elem_type = is_u8 ? CT_ELEM_U8 : CT_ELEM_F32;
                ds.count = count;
                ds.sample_elems = elems;
                ds.scale = is_u8 ? 1.0f / 255.0f : 0.5f;
                // Three batches' worth of order; this is batch 2. Its last row
                // points past the dataset, and with 5+ rows one is negative.
                std::vector<int32_t> order(3 * stride + 1);
                for (int32_t &o : order) o = (int32_t)(g() % count);
                const size_t at = 2 * stride;
                order[at + (size_t)rows - 1] = (int32_t)count;
                if (rows >= 5) order[at + 1] = -3;
                const ct_step_ctx ctx = {9, 1, 2, 0, 1};
                std::vector<float> x_cpu((size_t)rows * elems + 1, 7.0f), x_got = x_cpu;
                std::vector<int32_t> l_cpu((size_t)rows + 1, 99), l_got = l_cpu;
                cpu_gather_batch(nullptr, &ds, order.data(), stride, &ctx, rows, x_cpu.data(), l_cpu.data());
                ct_emu::launch((unsigned)rows, CT_GATHER_THREADS, [&] {
                    gather_kernel(ds.images, ds.labels, is_u8, ds.count, ds.sample_elems, ds.scale, order.data(),
                                  stride, &ctx, x_got.data(), l_got.data());
                });
                EXPECT_TRUE(same_bits(x_got, x_cpu)) << "x";
                EXPECT_TRUE(same_bits(l_got, l_cpu)) << "labels";
                EXPECT_EQ(l_got[(size_t)rows - 1], -1);
            }
}

// ---- losses --------------------------------------------------------------------

TEST(EmuLoss, CrossEntropyAndMseValueGradientAndCorrectMatchTheCpu) {
    unsigned seed = 40;
    for (int mse = 0; mse < 2; ++mse)
        for (int classes : {1, 2, 10, 33, 100})
            for (int rows : {1, 7, 33})
                for (int with_grad = 0; with_grad < 2; ++with_grad) {
                    SCOPED_TRACE(std::string(mse ? "mse" : "xent") + ", " + std::to_string(rows) + " x " +
                                 std::to_string(classes) + (with_grad ? ", gradient" : ""));
                    std::mt19937 g(seed++);
                    const size_t n = (size_t)rows * classes;
                    std::vector<float> z = draw(g, n + 1, -5, 5);
                    std::vector<int32_t> labels((size_t)rows + 1);
                    for (int32_t &l : labels) l = (int32_t)(g() % (unsigned)classes);
                    if (rows >= 7) {
                        labels[1] = classes;  // out of range: NaN loss, zero gradient row
                        labels[2] = -1;
                        for (int c = 0; c < classes; ++c) z[3 * (size_t)classes + c] = 0.5f;  // all tied
                        z[4 * (size_t)classes] = 1e4f;
                        z[5 * (size_t)classes + (size_t)(classes - 1)] = -1e4f;
                        z[6 * (size_t)classes] = kNaN;
                    }
                    const float scale = 1.0f / (float)rows;
                    std::vector<float> d_cpu(n + 1, 7.0f), d_got = d_cpu, l_cpu((size_t)rows + 1, 7.0f), l_got = l_cpu,
                                       c_cpu = l_cpu, c_got = l_cpu;
                    float *dc = with_grad ? d_cpu.data() : nullptr, *dg = with_grad ? d_got.data() : nullptr;
                    if (mse) {
                        cpu_mse_onehot(nullptr, rows, classes, z.data(), labels.data(), scale, dc, l_cpu.data(),
                                       c_cpu.data());
                        ct_emu::launch(loss_row_blocks(rows), CT_LOSS_THREADS, [&] {
                            mse_onehot_kernel(rows, classes, z.data(), labels.data(), scale, dg, l_got.data(),
                                              c_got.data());
                        });
                    } else {
                        cpu_softmax_xent(nullptr, rows, classes, z.data(), labels.data(), scale, dc, l_cpu.data(),
                                         c_cpu.data());
                        ct_emu::launch(loss_row_blocks(rows), CT_LOSS_THREADS, [&] {
                            softmax_xent_kernel(rows, classes, z.data(), labels.data(), scale, dg, l_got.data(),
                                                c_got.data());
                        });
                    }
                    EXPECT_TRUE(same_bits(c_got, c_cpu)) << "correct";
                    EXPECT_TRUE(close(l_got, l_cpu, 4e-7, 1e-12)) << "row loss";
                    if (mse) {
                        EXPECT_TRUE(same_bits(d_got, d_cpu)) << "gradient";
                    } else {
                        EXPECT_TRUE(close(d_got, d_cpu, 4e-7, 1e-12)) << "gradient";
                    }
                }
}

TEST(EmuLoss, AccumulateAddsTheBatchSumsToTheRunningTotals) {
    unsigned seed = 60;
    for (int rows : {1, 255, 256, 600}) {
        SCOPED_TRACE(std::to_string(rows) + " rows");
        std::mt19937 g(seed++);
        const std::vector<float> loss = draw(g, (size_t)rows + 1, 0, 3);
        std::vector<float> correct((size_t)rows + 1);
        for (float &c : correct) c = (float)(g() % 2);
        double acc_cpu[3] = {10.5, 3.0, 7.0}, acc_got[3] = {10.5, 3.0, 7.0};
        cpu_loss_accumulate(nullptr, rows, loss.data(), correct.data(), acc_cpu);
        ct_emu::launch(1, CT_LOSS_THREADS, [&] { loss_accumulate_kernel(rows, loss.data(), correct.data(), acc_got); });
        EXPECT_NEAR(acc_got[0], acc_cpu[0], 1e-12 * acc_cpu[0]);
        EXPECT_EQ(acc_got[1], acc_cpu[1]);  // whole numbers: exact in any order
        EXPECT_EQ(acc_got[2], 7.0);
        EXPECT_NE(acc_got[0], 10.5);
    }
}

}  // namespace
