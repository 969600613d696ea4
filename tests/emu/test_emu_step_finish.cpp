// The end of a step on the GPU, its device code run on the CPU by the fiber
// emulator: the statistics and optimizer kernels with their full grids
// (kernels/cuda/stats_kernel.cuh, optim_kernel.cuh) against the CPU backend
// (also with the step advance folded into the optimizer's last block, as
// step_finish queues them for a large arena), and the one-block kernel that fuses them (step_finish_kernel.cuh) against
// those two kernels, bit for bit, its threads scheduled in both orders. The
// cases are tests/support/step_finish_cases.h, which the GPU parity test
// runs on a GPU too.
#include "emu/cuda_emu.h"
// The device code, after the emulator's definitions of the CUDA keywords.
#include "kernels/cuda/step_finish_kernel.cuh"

#include <gtest/gtest-spi.h>
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "cutrain/cutrain.h"
#include "kernels/cpu/cpu_ops.h"
#include "support/step_finish_cases.h"

namespace {

using ct_test::StepCase;
using ct_test::StepHost;
using ct_test::StepOut;

// The full-grid kernels as step_cuda.cu queues them, with their scratch:
// for the three ops (fold false), or for step_finish past the one kernel's
// limit (fold true: the optimizer's last block advances the step).
void emulate_grids(const ct_stats_args &a, const ct_optim_config &cfg, const ct_optim_buffers &buf,
                   const ct_health_thresholds &th, ct_step_ctx *ctx, ct_step_record *ring, bool fold) {
    std::vector<double> partials((size_t)CT_CUDA_MAX_PARTIAL_BLOCKS * CT_CUDA_PARTIAL_STRIDE);
    unsigned done[2] = {0, 0};
    stats_plan sp;
    ASSERT_TRUE(stats_make_plan(&a, &sp));
    ct_emu::launch(sp.nblocks > 0 ? sp.nblocks : 1, STATS_THREADS, [&] {
        stats_kernel(a.grads, sp, partials.data(), &done[0], a.row_loss, a.row_correct, a.rows,
                     a.th.exploding_grad_norm, ctx, ring);
    });
    const optim_plan op = optim_make_plan(&cfg, &th, buf.n);
    ct_emu::launch(op.nblocks > 0 ? op.nblocks : 1, OPT_THREADS, [&] {
        optim_kernel(op, buf.params, buf.grads, buf.state, buf.t, ctx, ring, partials.data(), &done[1],
                     fold ? ctx : nullptr);
    });
    if (!fold) ct_emu::launch(1, 1, [&] { step_advance_kernel(ctx); });
    // The last block of each pass puts its counter back for the next one.
    EXPECT_EQ(done[0], 0u);
    EXPECT_EQ(done[1], 0u);
}

void emulate_one(const ct_stats_args &a, const ct_optim_config &cfg, const ct_optim_buffers &buf,
                 const ct_health_thresholds &th, ct_step_ctx *ctx, ct_step_record *ring, ct_emu::Order order) {
    ASSERT_LE(a.n, (size_t)FINISH_MAX_PARAMS);
    ASSERT_LE(buf.n, (size_t)FINISH_MAX_PARAMS);
    stats_plan sp;
    ASSERT_TRUE(stats_make_plan(&a, &sp));
    const optim_plan op = optim_make_plan(&cfg, &th, buf.n);
    ct_emu::launch(1, FINISH_THREADS, [&] {
        step_finish_kernel(a.grads, sp, a.row_loss, a.row_correct, a.rows, a.th.exploding_grad_norm, op, buf.params,
                           buf.grads, buf.state, buf.t, ctx, ring);
    }, order);
}

ct_test::HostStepRunner grids_runner(bool fold) {
    return ct_test::HostStepRunner([fold](const ct_stats_args &a, const ct_optim_config &cfg,
                                          const ct_optim_buffers &buf, const ct_health_thresholds &th,
                                          ct_step_ctx *ctx, ct_step_record *ring) {
        emulate_grids(a, cfg, buf, th, ctx, ring, fold);
    });
}

ct_test::HostStepRunner one_runner(ct_emu::Order order) {
    return ct_test::HostStepRunner([order](const ct_stats_args &a, const ct_optim_config &cfg,
                                           const ct_optim_buffers &buf, const ct_health_thresholds &th,
                                           ct_step_ctx *ctx, ct_step_record *ring) {
        emulate_one(a, cfg, buf, th, ctx, ring, order);
    });
}

// |a - b| within rel of the larger magnitude (and both NaN, or both the same infinity).
::testing::AssertionResult close(const char *what, double a, double b, double rel) {
    if (std::isnan(a) && std::isnan(b)) return ::testing::AssertionSuccess();
    if (a == b) return ::testing::AssertionSuccess();
    if (std::isfinite(a) && std::isfinite(b) && std::fabs(a - b) <= rel * std::max(std::fabs(a), std::fabs(b)))
        return ::testing::AssertionSuccess();
    return ::testing::AssertionFailure() << what << ": " << a << " vs " << b;
}

// The kernels' sums (grad_sumsq, the layers', param_sumsq, update_sumsq) add
// in another order than the CPU's, in double: a relative 1e-12 covers the
// reassociation of at most 32,768 terms of one sign. Everything else in the
// record is exact, and so are w and state unless clipping scales the
// gradient by a factor computed from that sum.
void expect_close_to_cpu(const StepCase &c, const StepOut &got, const StepOut &cpu) {
    const double rel = 1e-12;
    ASSERT_EQ(got.ring.size(), cpu.ring.size());
    const ct_step_record &g = got.ring[c.slot], &r = cpu.ring[c.slot];
    EXPECT_EQ(g.step, r.step);
    EXPECT_EQ(g.epoch, r.epoch);
    EXPECT_EQ(g.batch_size, r.batch_size);
    EXPECT_EQ(g.flags, r.flags);
    EXPECT_EQ(g.n_layers, r.n_layers);
    EXPECT_TRUE(close("loss_sum", g.loss_sum, r.loss_sum, 0.0));  // row order on both
    EXPECT_EQ(g.correct, r.correct);
    EXPECT_TRUE(close("grad_sumsq", g.grad_sumsq, r.grad_sumsq, rel));
    EXPECT_EQ(g.grad_max_abs, r.grad_max_abs);
    EXPECT_TRUE(close("param_sumsq", g.param_sumsq, r.param_sumsq, rel));
    EXPECT_TRUE(close("update_sumsq", g.update_sumsq, r.update_sumsq, c.clip > 0 ? 1e-6 : rel));
    EXPECT_TRUE(close("clip_scale", g.clip_scale, r.clip_scale, rel));
    EXPECT_EQ(g.nonfinite_count, r.nonfinite_count);
    EXPECT_EQ(g.zero_count, r.zero_count);
    for (int l = 0; l < CT_MAX_PARAM_LAYERS; ++l) {
        EXPECT_TRUE(close("layer_grad_sumsq", g.layer_grad_sumsq[l], r.layer_grad_sumsq[l], rel)) << "layer " << l;
        EXPECT_EQ(g.layer_nonfinite[l], r.layer_nonfinite[l]) << "layer " << l;
    }
    EXPECT_EQ(g.layer_zero_all, r.layer_zero_all);
    for (size_t s = 0; s < got.ring.size(); ++s)
        if (s != c.slot) EXPECT_EQ(std::memcmp(&got.ring[s], &cpu.ring[s], sizeof got.ring[s]), 0) << "slot " << s;
    ASSERT_EQ(got.w.size(), cpu.w.size());
    ASSERT_EQ(got.state.size(), cpu.state.size());
    if (c.clip > 0) {
        for (size_t i = 0; i < got.w.size(); ++i) ASSERT_TRUE(close("w", got.w[i], cpu.w[i], 1e-6)) << "w[" << i << "]";
        for (size_t i = 0; i < got.state.size(); ++i)
            ASSERT_TRUE(close("state", got.state[i], cpu.state[i], 1e-6)) << "state[" << i << "]";
    } else {
        EXPECT_TRUE(ct_test::same_bytes(got.w.data(), cpu.w.data(), got.w.size() * sizeof(float))) << "w differs";
        EXPECT_TRUE(ct_test::same_bytes(got.state.data(), cpu.state.data(), got.state.size() * sizeof(float)))
            << "state differs";
    }
    EXPECT_EQ(got.t, cpu.t);
    EXPECT_EQ(std::memcmp(&got.ctx, &cpu.ctx, sizeof got.ctx), 0) << "ctx differs";
}

class EmuStepFinish : public ::testing::Test {
  protected:
    void SetUp() override {
        ct_error err;
        ct_error_clear(&err);
        cpu_ = ct_backend_cpu_create(1, &err);
        ASSERT_NE(cpu_, nullptr) << err.msg;
    }
    void TearDown() override {
        if (cpu_) ct_backend_destroy(cpu_);
    }
    ct_test::HostStepRunner cpu_runner() {
        ct_backend *b = cpu_;
        return ct_test::HostStepRunner([b](const ct_stats_args &a, const ct_optim_config &cfg,
                                           const ct_optim_buffers &buf, const ct_health_thresholds &th,
                                           ct_step_ctx *ctx, ct_step_record *ring) {
            cpu_step_finish(b, &a, &cfg, &buf, &th, ctx, ring);
        });
    }
    ct_backend *cpu_ = nullptr;
};

TEST_F(EmuStepFinish, TheStatsAndOptimizerKernelsAgreeWithTheCpuAndFoldTheAdvance) {
    unsigned seed = 1;
    for (const StepCase &c : ct_test::step_finish_cases()) {
        SCOPED_TRACE(c.name);
        std::mt19937 g(seed++);
        const StepHost h = ct_test::draw_step(c, g);
        ct_test::HostStepRunner cpu = cpu_runner(), three = grids_runner(false), folded = grids_runner(true);
        const StepOut want = ct_test::run_step(c, h, cpu), got = ct_test::run_step(c, h, three);
        ct_test::expect_step_case_point(c, h, want);
        expect_close_to_cpu(c, got, want);
        // step_finish past the one kernel's limit: the advance in the optimizer's last block.
        ct_test::expect_step_same_bits(ct_test::run_step(c, h, folded), got);
    }
}

// Past 1024 blocks x 256 threads (262,144 elements) an optimizer thread
// takes several elements, whose loads it issues in batches of
// OPT_LOAD_BATCH: an arena of mlp's layers and one past four such batches.
TEST_F(EmuStepFinish, TheFullGridKernelsAgreeWithTheCpuWhereAThreadHasSeveralElements) {
    using K = ct_optimizer_kind;
    const std::vector<StepCase> cases = {
        {"mlp_adam", 0, {401920, 262656, 5130}, 0, 128, K::CT_OPT_ADAM, 1e-3f, 0, 0, 0, 0, CT_SCHED_CONSTANT,
         ct_test::kPlantNone, 0, 1e-7, 0, 1},
        {"past_four_batches_rmsprop_momentum_nonfinite", 3, {700000, 400001}, 2, 64, K::CT_OPT_RMSPROP, 1e-3f, 0.9f, 0,
         0, 0, CT_SCHED_CONSTANT, ct_test::kPlantNonfiniteGrad, 0, 1e-7, 1, 2},
    };
    unsigned seed = 500;
    for (const StepCase &c : cases) {
        SCOPED_TRACE(c.name);
        std::mt19937 g(seed++);
        const StepHost h = ct_test::draw_step(c, g);
        ct_test::HostStepRunner cpu = cpu_runner(), folded = grids_runner(true);
        const StepOut want = ct_test::run_step(c, h, cpu), got = ct_test::run_step(c, h, folded);
        ct_test::expect_step_case_point(c, h, want);
        expect_close_to_cpu(c, got, want);
    }
}

TEST_F(EmuStepFinish, TheOneKernelGivesTheBitsOfTheThreeInBothThreadOrders) {
    unsigned seed = 100;
    for (const StepCase &c : ct_test::step_finish_cases()) {
        SCOPED_TRACE(c.name);
        std::mt19937 g(seed++);
        const StepHost h = ct_test::draw_step(c, g);
        ct_test::HostStepRunner three = grids_runner(false), up = one_runner(ct_emu::Order::kAscending),
                                down = one_runner(ct_emu::Order::kDescending);
        const StepOut want = ct_test::run_step(c, h, three), got = ct_test::run_step(c, h, up);
        ct_test::expect_step_case_point(c, h, got);
        ct_test::expect_step_same_bits(got, want);
        ct_test::expect_step_same_bits(ct_test::run_step(c, h, down), want);
    }
}

// The comparison has teeth: the one kernel given a stats plan whose chunk is
// half the real one (what a wrong block -> range mapping would do: the same
// elements, summed in another order) no longer gives the three's bits.
TEST_F(EmuStepFinish, AnotherSummationOrderFailsTheComparison) {
    const StepCase c = ct_test::step_finish_cases()[0];  // seed
    std::mt19937 g(7);
    const StepHost h = ct_test::draw_step(c, g);
    ct_test::HostStepRunner three = grids_runner(false);
    ct_test::HostStepRunner halved([](const ct_stats_args &a, const ct_optim_config &cfg, const ct_optim_buffers &buf,
                                      const ct_health_thresholds &th, ct_step_ctx *ctx, ct_step_record *ring) {
        stats_plan sp;
        ASSERT_TRUE(stats_make_plan(&a, &sp));
        sp.chunk /= 2;
        unsigned total = 0;
        for (unsigned s = 0; s < sp.nseg; ++s) {
            sp.first_block[s] = total;
            const unsigned long long len = seg_hi(sp, s) - seg_lo(sp, s);
            total += (unsigned)(len / sp.chunk + (len % sp.chunk != 0));
        }
        sp.first_block[sp.nseg] = sp.nblocks = total;
        const optim_plan op = optim_make_plan(&cfg, &th, buf.n);
        ct_emu::launch(1, FINISH_THREADS, [&] {
            step_finish_kernel(a.grads, sp, a.row_loss, a.row_correct, a.rows, a.th.exploding_grad_norm, op,
                               buf.params, buf.grads, buf.state, buf.t, ctx, ring);
        });
    });
    const StepOut want = ct_test::run_step(c, h, three), got = ct_test::run_step(c, h, halved);
    EXPECT_NONFATAL_FAILURE(ct_test::expect_step_same_bits(got, want), "ring slot 0 differs");
    // Only the sums' last bits moved: counts, flags and the update agree.
    const ct_step_record &a = got.ring[0], &b = want.ring[0];
    EXPECT_NE(a.grad_sumsq, b.grad_sumsq);
    EXPECT_NEAR(a.grad_sumsq, b.grad_sumsq, 1e-12 * b.grad_sumsq);
    EXPECT_EQ(a.zero_count, b.zero_count);
    EXPECT_EQ(a.flags, b.flags);
    EXPECT_TRUE(ct_test::same_bytes(got.w.data(), want.w.data(), got.w.size() * sizeof(float)));
}

}  // namespace
