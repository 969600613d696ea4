// Learning-rate schedules: values at the points that define them, and the
// optimizer stepping with the scheduled rate of the context's step.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "cutrain/schedule.h"
#include "kernels/cpu/cpu_ops.h"

namespace {

const double kPi = 3.141592653589793;

TEST(Schedule, ConstantIsTheRate) {
    ct_schedule s = ct_schedule_defaults(CT_SCHED_CONSTANT);
    for (uint64_t step : {1ull, 2ull, 1000000ull}) EXPECT_EQ(ct_schedule_lr(0.01f, &s, step), 0.01f);
}

TEST(Schedule, StepDecaysByGammaEveryStepSize) {
    ct_schedule s = ct_schedule_defaults(CT_SCHED_STEP);
    s.step_size = 10;
    s.gamma = 0.5f;
    EXPECT_EQ(ct_schedule_lr(0.8f, &s, 1), 0.8f);
    EXPECT_EQ(ct_schedule_lr(0.8f, &s, 10), 0.8f);
    EXPECT_EQ(ct_schedule_lr(0.8f, &s, 11), 0.4f);
    EXPECT_EQ(ct_schedule_lr(0.8f, &s, 21), 0.2f);
}

TEST(Schedule, CosineFromTheRateToTheFloor) {
    ct_schedule s = ct_schedule_defaults(CT_SCHED_COSINE);
    s.total_steps = 100;
    s.final_frac = 0.1f;
    EXPECT_FLOAT_EQ(ct_schedule_lr(1.0f, &s, 1), 1.0f);
    EXPECT_FLOAT_EQ(ct_schedule_lr(1.0f, &s, 51), 0.1f + 0.9f * 0.5f);
    EXPECT_FLOAT_EQ(ct_schedule_lr(1.0f, &s, 101), 0.1f);
    EXPECT_FLOAT_EQ(ct_schedule_lr(1.0f, &s, 500), 0.1f);  // held after the end
}

// PyTorch's OneCycleLR (anneal_strategy='cos', three_phase=False) written out.
double torch_onecycle(double max_lr, int total, double pct, double div, double final_div, int step_num) {
    double initial = max_lr / div, min_lr = initial / final_div;
    double end1 = pct * total - 1, end2 = total - 1;
    auto anneal = [](double a, double b, double p) { return b + (a - b) / 2.0 * (std::cos(kPi * p) + 1); };
    if (step_num <= end1) return anneal(initial, max_lr, step_num / end1);
    return anneal(max_lr, min_lr, (step_num - end1) / (end2 - end1));
}

TEST(Schedule, OneCycleMatchesPyTorch) {
    ct_schedule s = ct_schedule_defaults(CT_SCHED_ONECYCLE);
    s.total_steps = 2814;  // 3 epochs of 938 steps
    for (int step_num : {0, 1, 100, 843, 844, 1500, 2813}) {
        double want = torch_onecycle(0.01, 2814, 0.3, 25, 1e4, step_num);
        EXPECT_NEAR(ct_schedule_lr(0.01f, &s, (uint64_t)step_num + 1), want, 1e-7 * 0.01) << step_num;
    }
    EXPECT_FLOAT_EQ(ct_schedule_lr(0.01f, &s, 1), 0.01f / 25);
    EXPECT_NEAR(ct_schedule_lr(0.01f, &s, 2814), 0.01 / 25 / 1e4, 1e-12);
}

// Runs shorter than two steps per rising phase (pct * T < 2: `--max-steps 5`
// with the default pct), against PyTorch 1.13's OneCycleLR(max_lr=0.01,
// total_steps=T, cycle_momentum=False), read off its param_groups step by step.
TEST(Schedule, OneCycleMatchesPyTorchOnShortRuns) {
    const std::vector<std::vector<double>> torch_lrs = {
        {4e-08},
        {0.00811745653949763, 4e-08},
        {0.009944154354509118, 0.00462637102666975, 4e-08},
        {0.0003999999999999993, 0.00811745653949763, 0.0028306099820869924, 4e-08},
        {0.0003999999999999993, 0.009504846320134737, 0.0061126202193628925, 0.00188258346050237, 4e-08},
        {0.0003999999999999993, 0.009944154354509118, 0.00811745653949763, 0.00462637102666975,
         0.001334775301888306, 4e-08},
    };
    ct_schedule s = ct_schedule_defaults(CT_SCHED_ONECYCLE);
    for (size_t T = 1; T <= torch_lrs.size(); ++T) {
        s.total_steps = T;
        for (size_t i = 0; i < T; ++i)
            EXPECT_NEAR(ct_schedule_lr(0.01f, &s, i + 1), torch_lrs[T - 1][i], 1e-7 * 0.01) << "T " << T << " step " << i + 1;
    }
}

// pct * T == 1 puts PyTorch's first phase end at 0 (it divides 0 by 0 at step
// 0): the fall starts at the peak, the limit from pct * T just below 1.
TEST(Schedule, OneCycleWithARiseOfOneStepStartsAtThePeak) {
    ct_schedule s = ct_schedule_defaults(CT_SCHED_ONECYCLE);
    s.total_steps = 4;
    s.pct = 0.25f;
    EXPECT_FLOAT_EQ(ct_schedule_lr(0.01f, &s, 1), 0.01f);
    EXPECT_NEAR(ct_schedule_lr(0.01f, &s, 4), 0.01 / 25 / 1e4, 1e-12);
    for (uint64_t step = 1; step < 4; ++step)
        EXPECT_GT(ct_schedule_lr(0.01f, &s, step), ct_schedule_lr(0.01f, &s, step + 1)) << step;
}

// The CPU optimizer takes its rate from the schedule at ctx->step.
TEST(Schedule, OptimizerUsesTheScheduledRateOfTheStep) {
    ct_optim_config cfg{};
    cfg.kind = CT_OPT_SGD;
    cfg.lr = 1.0f;
    cfg.schedule = ct_schedule_defaults(CT_SCHED_STEP);
    cfg.schedule.step_size = 1;
    cfg.schedule.gamma = 0.5f;
    std::vector<float> w = {1.0f}, g = {0.25f};
    uint64_t t = 0;
    ct_optim_buffers buf{w.data(), g.data(), nullptr, &t, 1};
    for (uint64_t step = 1; step <= 3; ++step) {
        ct_step_record rec{};
        rec.batch_size = 1;
        rec.grad_sumsq = 0.0625;
        ct_step_ctx ctx = {step, 1, 0, 0, 1};
        cpu_optimizer_step(nullptr, &cfg, &buf, nullptr, &ctx, &rec);
    }
    // 1 - 0.25 * (1 + 0.5 + 0.25)
    EXPECT_FLOAT_EQ(w[0], 1.0f - 0.25f * 1.75f);
}

}  // namespace
