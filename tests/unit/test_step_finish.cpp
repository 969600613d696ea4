// step_finish on the CPU backend: the same bits as step_stats,
// optimizer_step and step_advance called in turn (the trainer calls the one
// op whenever it queues both the statistics and the update), at the cases of
// tests/support/step_finish_cases.h, with each case's flags checked.
#include <gtest/gtest.h>

#include <random>

#include "cutrain/cutrain.h"
#include "support/step_finish_cases.h"

namespace {

class CpuStepFinish : public ::testing::Test {
  protected:
    void SetUp() override {
        ct_error err;
        ct_error_clear(&err);
        b_ = ct_backend_cpu_create(1, &err);
        ASSERT_NE(b_, nullptr) << err.msg;
    }
    void TearDown() override {
        if (b_) ct_backend_destroy(b_);
    }
    ct_backend *b_ = nullptr;
};

TEST_F(CpuStepFinish, TheOneOpGivesTheBitsOfTheThree) {
    ct_backend *b = b_;
    ct_test::HostStepRunner one([b](const ct_stats_args &a, const ct_optim_config &cfg, const ct_optim_buffers &buf,
                                    const ct_health_thresholds &th, ct_step_ctx *ctx, ct_step_record *ring) {
        b->ops->step_finish(b, &a, &cfg, &buf, &th, ctx, ring);
    });
    ct_test::HostStepRunner three([b](const ct_stats_args &a, const ct_optim_config &cfg,
                                      const ct_optim_buffers &buf, const ct_health_thresholds &th, ct_step_ctx *ctx,
                                      ct_step_record *ring) {
        b->ops->step_stats(b, &a, ctx, ring);
        b->ops->optimizer_step(b, &cfg, &buf, &th, ctx, ring);
        b->ops->step_advance(b, ctx);
    });
    unsigned seed = 1;
    for (const ct_test::StepCase &c : ct_test::step_finish_cases()) {
        SCOPED_TRACE(c.name);
        std::mt19937 g(seed++);
        const ct_test::StepHost h = ct_test::draw_step(c, g);
        const ct_test::StepOut want = ct_test::run_step(c, h, three), got = ct_test::run_step(c, h, one);
        ct_test::expect_step_case_point(c, h, got);
        ct_test::expect_step_same_bits(got, want);
    }
}

}  // namespace
