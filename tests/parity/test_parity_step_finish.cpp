// The end of a step as one op on the GPU: step_finish on a backend created
// with CUTRAIN_CUDA_STEP_FINISH=on (one kernel for an arena of up to
// FINISH_MAX_PARAMS elements) and on one without it (the statistics, then the
// optimizer advancing the step in its last block) against step_stats +
// optimizer_step + step_advance, bit for bit, at the cases of
// tests/support/step_finish_cases.h plus an arena past the limit (where the
// op queues the two full-grid kernels itself); then the op captured in a graph and replayed
// step after step; then the setting's refusal of a value it does not know.
// Skipped without a GPU. (tests/emu runs the same kernels' device code on
// the CPU against the same cases in every CI run.)
#include <gtest/gtest.h>

#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "cutrain/cutrain.h"
#include "support/fixtures.h"
#include "support/step_finish_cases.h"

namespace {

using ct_test::StepCase;
using ct_test::StepHost;
using ct_test::StepOut;

constexpr const char *kVar = "CUTRAIN_CUDA_STEP_FINISH";

struct BackendDeleter {
    void operator()(ct_backend *b) const { ct_backend_destroy(b); }
};
using Backend = std::unique_ptr<ct_backend, BackendDeleter>;

// A CUDA backend created with the setting at `value` (nullptr: unset).
Backend cuda_with(const char *value, ct_error *err) {
    if (value) {
        ct_test::ScopedEnv env(kVar, value);
        return Backend(ct_backend_cuda_create(err));
    }
    ct_test::ScopedEnv env(kVar, "");
    return Backend(ct_backend_cuda_create(err));
}

// Device memory of one backend, freed with the runner; the op is the one
// step_finish entry (fused) or the three entries in turn.
class GpuStepRunner : public ct_test::StepRunner {
  public:
    GpuStepRunner(ct_backend *b, bool as_one) : b_(b), as_one_(as_one) {}
    ~GpuStepRunner() override {
        for (void *p : owned_) b_->ops->free(b_, p);
    }
    void *put_bytes(const void *p, size_t n) override {
        void *d = b_->ops->alloc(b_, n + 4, nullptr);  // 4 spare bytes: never an empty allocation
        owned_.push_back(d);
        if (n) b_->ops->upload(b_, d, p, n);
        return d;
    }
    void get_bytes(void *host, const void *p, size_t n) override {
        if (n) b_->ops->download(b_, host, p, n);
    }
    void finish(const ct_stats_args &a, const ct_optim_config &cfg, const ct_optim_buffers &buf,
                const ct_health_thresholds &th, ct_step_ctx *ctx, ct_step_record *ring) override {
        if (as_one_) {
            b_->ops->step_finish(b_, &a, &cfg, &buf, &th, ctx, ring);
        } else {
            b_->ops->step_stats(b_, &a, ctx, ring);
            b_->ops->optimizer_step(b_, &cfg, &buf, &th, ctx, ring);
            b_->ops->step_advance(b_, ctx);
        }
    }

  private:
    ct_backend *b_;
    bool as_one_;
    std::vector<void *> owned_;
};

class StepFinishParity : public ::testing::Test {
  protected:
    void SetUp() override {
        char why[256];
        if (!ct_cuda_available(why, sizeof why)) GTEST_SKIP() << "no GPU: " << why;
        ct_error err;
        ct_error_clear(&err);
        plain_ = cuda_with(nullptr, &err);
        ASSERT_NE(plain_, nullptr) << err.msg;
        fused_ = cuda_with("on", &err);
        ASSERT_NE(fused_, nullptr) << err.msg;
    }
    Backend plain_, fused_;
};

TEST_F(StepFinishParity, TheOneKernelGivesTheBitsOfTheThreeOps) {
    std::vector<StepCase> cases = ct_test::step_finish_cases();
    // Past the one kernel's limit: the op queues the three kernels itself.
    cases.push_back({"past_the_limit_adam", 5, {30000, 2999}, 3, 32, CT_OPT_ADAM, 1e-3f, 0, 0, 0, 0,
                     CT_SCHED_CONSTANT, ct_test::kPlantNone, 0, 1e-7, 0, 1});
    unsigned seed = 1;
    for (const StepCase &c : cases) {
        SCOPED_TRACE(c.name);
        std::mt19937 g(seed++);
        const StepHost h = ct_test::draw_step(c, g);
        GpuStepRunner three(plain_.get(), false), one(fused_.get(), true), folded(plain_.get(), true);
        const StepOut want = ct_test::run_step(c, h, three), got = ct_test::run_step(c, h, one);
        ct_test::expect_step_case_point(c, h, got);
        ct_test::expect_step_same_bits(got, want);
        // The setting off: statistics, then the optimizer advancing the step in its last block.
        ct_test::expect_step_same_bits(ct_test::run_step(c, h, folded), want);
    }
}

// Captured once and replayed: each replay reads the step, slot and t the
// previous one left on the device, as in training (src/train/train.c).
TEST_F(StepFinishParity, ReplayedStepAfterStepMatchesTheThreeOpsCalledDirectly) {
    StepCase c = ct_test::step_finish_cases()[1];  // seed, Adam, slot 3 of 4
    c.clip = 0.05f;
    std::mt19937 g(42);
    const StepHost h = ct_test::draw_step(c, g);
    ct_backend *fb = fused_.get();
    ASSERT_NE(fb->ops->capture_begin, nullptr);
    GpuStepRunner three(plain_.get(), false), one(fb, true);

    // Both sides' buffers, from the same host inputs.
    struct Side {
        ct_stats_args a;
        ct_optim_buffers buf;
        ct_step_ctx *ctx;
        ct_step_record *ring;
    };
    auto make = [&](ct_test::StepRunner &r) {
        Side s;
        std::memset(&s.a, 0, sizeof s.a);
        s.a.grads = r.put(h.grads);
        s.a.n = h.stats_n;
        s.a.n_layers = (uint32_t)c.layers.size();
        s.a.layer_begin = h.layer_begin.data();
        s.a.row_loss = r.put(h.row_loss);
        s.a.row_correct = r.put(h.row_correct);
        s.a.rows = c.rows;
        s.a.th = h.th;
        s.buf.params = r.put(h.w);
        s.buf.grads = s.a.grads;
        s.buf.state = r.put(h.state);
        s.buf.t = r.put_one(h.t);
        s.buf.n = h.w.size();
        s.ctx = r.put_one(h.ctx);
        s.ring = r.put(h.ring);
        return s;
    };
    Side direct = make(three), replay = make(one);
    ct_error err;
    ct_error_clear(&err);
    ASSERT_EQ(fb->ops->capture_begin(fb, &err), 0) << err.msg;
    one.finish(replay.a, h.cfg, replay.buf, h.th, replay.ctx, replay.ring);
    void *graph = fb->ops->capture_end(fb, &err);
    ASSERT_NE(graph, nullptr) << err.msg;
    for (int s = 0; s < 6; ++s) {
        SCOPED_TRACE("step " + std::to_string(s + 1));
        three.finish(direct.a, h.cfg, direct.buf, h.th, direct.ctx, direct.ring);
        fb->ops->graph_launch(fb, graph);
        StepOut d, r;
        d.ring = three.get(direct.ring, h.ring.size());
        r.ring = one.get(replay.ring, h.ring.size());
        d.w = three.get(direct.buf.params, h.w.size());
        r.w = one.get(replay.buf.params, h.w.size());
        d.state = three.get(direct.buf.state, h.state.size());
        r.state = one.get(replay.buf.state, h.state.size());
        d.t = three.get(direct.buf.t, 1)[0];
        r.t = one.get(replay.buf.t, 1)[0];
        d.ctx = three.get(direct.ctx, 1)[0];
        r.ctx = one.get(replay.ctx, 1)[0];
        ct_test::expect_step_same_bits(r, d);
        EXPECT_EQ(r.t, h.t + (uint64_t)s + 1);
        EXPECT_TRUE(r.ring[(c.slot + (uint32_t)s) % c.ring_len].flags & CT_FLAG_CLIPPED);
    }
    fb->ops->graph_destroy(fb, graph);
}

TEST(StepFinishSetting, AnUnknownValueIsAUsageErrorAtCreate) {
    char why[256];
    if (!ct_cuda_available(why, sizeof why)) GTEST_SKIP() << "no GPU: " << why;
    ct_error err;
    ct_error_clear(&err);
    Backend b = cuda_with("yes", &err);
    EXPECT_EQ(b, nullptr);
    EXPECT_EQ(err.code, CT_EXIT_USAGE);
    EXPECT_NE(std::string(err.msg).find("CUTRAIN_CUDA_STEP_FINISH"), std::string::npos) << err.msg;
    EXPECT_NE(std::string(err.msg).find("yes"), std::string::npos) << err.msg;
}

}  // namespace
