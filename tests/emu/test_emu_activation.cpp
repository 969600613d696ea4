// Bias + activation on the GPU (kernels/cuda/activation_kernel.cuh), its
// device code run on the CPU by the fiber emulator against the CPU backend's
// bias_act_forward and bias_act_backward, at awkward shapes (a 1x1 block, a
// width of one, odd sizes, 784 columns, row counts past the column sums'
// batch of 32), with and without a bias or dbias, with NaN, infinities and
// large values planted. The launches mirror activation_cuda.cu's choice of
// kernels; the grids are those of a 2-SM GPU, so the grid-stride loops wrap.
// Elementwise results are the CPU's bits (both use the host's expf/tanhf
// here); softmax sums its row in another order, so its values may differ in
// the last bit of the double sum before rounding to float. Every buffer has
// one element more than the op's (never a null pointer, even at 0 rows),
// which neither side may touch.
#include "emu/cuda_emu.h"
// The device code, after the emulator's definitions of the CUDA keywords.
#include "kernels/cuda/activation_kernel.cuh"

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

struct Shape {
    int rows, cols;
};

const Shape kShapes[] = {{1, 1}, {1, 10}, {3, 7}, {31, 10}, {33, 33}, {64, 5}, {100, 3}, {3, 784}, {0, 4}};
const ct_activation kActs[] = {CT_ACT_LINEAR, CT_ACT_RELU, CT_ACT_SIGMOID, CT_ACT_TANH, CT_ACT_SOFTMAX};

std::string describe(ct_activation act, const Shape &s) {
    return std::string(ct_activation_name(act)) + " " + std::to_string(s.rows) + "x" + std::to_string(s.cols);
}

std::vector<float> draw(std::mt19937 &g, size_t n, float lo, float hi) {
    std::uniform_real_distribution<float> d(lo, hi);
    std::vector<float> v(n);
    for (float &x : v) x = d(g);
    if (n >= 8) {
        v[n / 3] = std::numeric_limits<float>::quiet_NaN();
        v[2 * n / 3] = std::numeric_limits<float>::infinity();
        v[n - 1] = -std::numeric_limits<float>::infinity();
        v[n / 5] = 1e4f;
        v[n / 7] = -1e4f;
    }
    return v;
}

// NaN where the CPU has NaN, equal infinities, and finite values the CPU's
// bits (rel 0) or within rel of them.
void expect_close(const std::vector<float> &got, const std::vector<float> &cpu, double rel, const char *what) {
    ASSERT_EQ(got.size(), cpu.size());
    for (size_t i = 0; i < got.size(); ++i) {
        const float a = got[i], b = cpu[i];
        if (std::isnan(b)) {
            EXPECT_TRUE(std::isnan(a)) << what << "[" << i << "]: " << a << ", cpu NaN";
        } else if (rel == 0.0 || !std::isfinite(b)) {
            EXPECT_EQ(std::memcmp(&a, &b, sizeof a), 0) << what << "[" << i << "]: " << a << ", cpu " << b;
        } else {
            EXPECT_NEAR(a, b, rel * std::fabs(b) + 1e-30) << what << "[" << i << "]";
        }
    }
}

// activation_cuda.cu's forward launches, emulated.
void emu_forward(ct_activation act, int rows, int cols, const float *bias, float *y) {
    if (rows <= 0 || cols <= 0) return;
    if (act == CT_ACT_SOFTMAX) {
        ct_emu::launch(act_row_blocks(rows), CT_ACT_THREADS, [&] { softmax_kernel(rows, cols, bias, y); });
        return;
    }
    if (act == CT_ACT_LINEAR && !bias) return;
    const size_t n = (size_t)rows * (size_t)cols;
    ct_emu::launch(act_elementwise_blocks(kSmCount, n), CT_ACT_THREADS, [&] { bias_act_kernel(act, n, cols, bias, y); });
}

// activation_cuda.cu's backward launches, emulated; `fused` false takes the
// two-kernel path the launcher no longer uses with a dbias, for comparison.
void emu_backward(ct_activation act, int rows, int cols, const float *y, float *dy, float *dbias, bool fused = true) {
    if (cols <= 0 || rows < 0) return;
    const bool elementwise = act != CT_ACT_SOFTMAX && act != CT_ACT_LINEAR;
    if (fused && dbias && elementwise) {
        ct_emu::launch(act_colsum_blocks(cols), COLSUM_THREADS,
                       [&] { act_back_colsum_kernel(act, rows, cols, y, dy, dbias); });
        return;
    }
    if (rows > 0) {
        if (act == CT_ACT_SOFTMAX) {
            ct_emu::launch(act_row_blocks(rows), CT_ACT_THREADS, [&] { softmax_back_kernel(rows, cols, y, dy); });
        } else if (elementwise) {
            const size_t n = (size_t)rows * (size_t)cols;
            ct_emu::launch(act_elementwise_blocks(kSmCount, n), CT_ACT_THREADS,
                           [&] { act_back_kernel(act, n, y, dy); });
        }
    }
    if (dbias)
        ct_emu::launch(act_colsum_blocks(cols), COLSUM_THREADS, [&] { column_sums_kernel(rows, cols, dy, dbias); });
}

TEST(EmuActivation, ForwardWithAndWithoutBiasMatchesTheCpu) {
    unsigned seed = 1;
    for (ct_activation act : kActs)
        for (const Shape &s : kShapes)
            for (int with_bias = 0; with_bias < 2; ++with_bias) {
                SCOPED_TRACE(describe(act, s) + (with_bias ? ", bias" : ""));
                std::mt19937 g(seed++);
                const size_t n = (size_t)s.rows * s.cols;
                const std::vector<float> z = draw(g, n + 1, -6, 6), bias = draw(g, (size_t)s.cols + 1, -1, 1);
                std::vector<float> cpu = z, got = z;
                cpu_bias_act_forward(nullptr, act, s.rows, s.cols, with_bias ? bias.data() : nullptr, cpu.data());
                emu_forward(act, s.rows, s.cols, with_bias ? bias.data() : nullptr, got.data());
                expect_close(got, cpu, act == CT_ACT_SOFTMAX ? 2.5e-7 : 0.0, "y");
            }
}

TEST(EmuActivation, BackwardWithAndWithoutDbiasMatchesTheCpu) {
    unsigned seed = 1000;
    for (ct_activation act : kActs)
        for (const Shape &s : kShapes)
            for (int with_dbias = 0; with_dbias < 2; ++with_dbias) {
                SCOPED_TRACE(describe(act, s) + (with_dbias ? ", dbias" : ""));
                std::mt19937 g(seed++);
                const size_t n = (size_t)s.rows * s.cols;
                // y: a real output of the activation (ReLU's exact zeros, softmax rows summing to 1).
                std::vector<float> y = draw(g, n + 1, -3, 3);
                cpu_bias_act_forward(nullptr, act, s.rows, s.cols, nullptr, y.data());
                const std::vector<float> dy = draw(g, n + 1, -1, 1);
                std::vector<float> dz_cpu = dy, dz_got = dy;
                // A finite poison: a dbias the op never writes shows up.
                std::vector<float> db_cpu((size_t)s.cols + 1, 7.0f), db_got((size_t)s.cols + 1, 7.0f);
                cpu_bias_act_backward(nullptr, act, s.rows, s.cols, y.data(), dz_cpu.data(),
                                      with_dbias ? db_cpu.data() : nullptr);
                emu_backward(act, s.rows, s.cols, y.data(), dz_got.data(), with_dbias ? db_got.data() : nullptr);
                const double rel = act == CT_ACT_SOFTMAX ? 2.5e-7 : 0.0;
                expect_close(dz_got, dz_cpu, rel, "dz");
                // dbias sums dz in row order on both: the CPU's bits whenever dz is.
                expect_close(db_got, db_cpu, act == CT_ACT_SOFTMAX ? 1e-5 : 0.0, "dbias");
            }
}

// The one-pass kernel gives the bits of the two it replaces, at row counts
// below, at and past its batch of 32 rows.
TEST(EmuActivation, DzAndDbiasInOnePassGiveTheBitsOfTheTwoKernels) {
    unsigned seed = 2000;
    for (ct_activation act : {CT_ACT_RELU, CT_ACT_SIGMOID, CT_ACT_TANH})
        for (const Shape &s : {Shape{1, 1}, Shape{31, 70}, Shape{32, 65}, Shape{97, 3}, Shape{0, 5}}) {
            SCOPED_TRACE(describe(act, s));
            std::mt19937 g(seed++);
            const size_t n = (size_t)s.rows * s.cols;
            const std::vector<float> y = draw(g, n + 1, -1, 1), dy = draw(g, n + 1, -1, 1);
            std::vector<float> dz1 = dy, dz2 = dy, db1((size_t)s.cols + 1, 7.0f), db2((size_t)s.cols + 1, 7.0f);
            emu_backward(act, s.rows, s.cols, y.data(), dz1.data(), db1.data(), true);
            emu_backward(act, s.rows, s.cols, y.data(), dz2.data(), db2.data(), false);
            expect_close(dz1, dz2, 0.0, "dz");
            expect_close(db1, db2, 0.0, "dbias");
            for (int c = 0; c < s.cols; ++c) EXPECT_NE(db1[(size_t)c], 7.0f) << "dbias[" << c << "] left unwritten";
            EXPECT_EQ(db1[(size_t)s.cols], 7.0f) << "written past dbias";
        }
}

}  // namespace
