// cpu_optimizer_step against steps worked out by hand in double, the skip,
// clip and vanishing-update rules, the optimizer config helpers, and the
// values record.c derives from a step record.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "kernels/cpu/cpu_ops.h"

namespace {

const float kNaN = std::numeric_limits<float>::quiet_NaN();

// The kernel works in float on weights of magnitude <= 1: a few float ulps
// (6e-8 each near 0.5) over three steps, plus the float rounding of the
// coefficients (0.9f vs 0.9), stay well below this; a wrong rule does not.
const double kTol = 3e-7;

// One parameter arena with its optimizer state, stepped like the trainer does.
struct Opt {
    ct_optim_config cfg;
    std::vector<float> w;
    std::vector<float> state;
    uint64_t t = 0;
    ct_health_thresholds th{0.0, 0.0};

    Opt(const ct_optim_config &c, std::vector<float> w0)
        : cfg(c), w(std::move(w0)),
          state(static_cast<size_t>(ct_optim_state_slots(&c)) * w.size(), 0.0f) {}

    float &slot(int s, size_t i) { return state[s * w.size() + i]; }

    // The record as step_stats would leave it: grad_sumsq over finite
    // elements, clip_scale 1, and the given flags.
    ct_step_record step(const std::vector<float> &g, uint32_t flags = 0) {
        ct_step_record rec;
        std::memset(&rec, 0, sizeof rec);
        rec.batch_size = 1;
        rec.clip_scale = 1.0;
        rec.flags = flags;
        for (float x : g)
            if (std::isfinite(x)) rec.grad_sumsq += double(x) * double(x);
        ct_optim_buffers buf{w.data(), g.data(), state.empty() ? nullptr : state.data(), &t,
                             w.size()};
        const ct_step_ctx ctx = {1, 1, 0, 0, 1};
        cpu_optimizer_step(nullptr, &cfg, &buf, &th, &ctx, &rec);
        return rec;
    }
};

ct_optim_config sgd(float lr, float momentum, int nesterov) {
    ct_optim_config c = ct_optim_defaults(CT_OPT_SGD);
    c.lr = lr;
    c.momentum = momentum;
    c.nesterov = nesterov;
    return c;
}

void expect_weights(const std::vector<float> &w, const std::vector<double> &want, const char *what) {
    ASSERT_EQ(w.size(), want.size());
    for (size_t i = 0; i < w.size(); ++i) EXPECT_NEAR(w[i], want[i], kTol) << what << " w[" << i << "]";
}

// ---------------------------------------------------------------- SGD

TEST(OptimSgd, PlainStepsAndSums) {
    Opt o(sgd(0.1f, 0.0f, 0), {1.0f, -0.5f, 0.25f});
    ASSERT_TRUE(o.state.empty());

    // w -= 0.1*g with g = (0.5, -1, 2): (1-0.05, -0.5+0.1, 0.25-0.2)
    ct_step_record r = o.step({0.5f, -1.0f, 2.0f});
    expect_weights(o.w, {0.95, -0.4, 0.05}, "step 1");
    EXPECT_EQ(o.t, 1u);
    // param_sumsq is over the weights before the step: 1 + 0.25 + 0.0625.
    EXPECT_DOUBLE_EQ(r.param_sumsq, 1.3125);
    // update_sumsq = 0.05^2 + 0.1^2 + 0.2^2
    EXPECT_NEAR(r.update_sumsq, 0.0025 + 0.01 + 0.04, 1e-7);
    EXPECT_EQ(r.clip_scale, 1.0);
    EXPECT_EQ(r.flags, 0u);

    // g = (-0.25, 0.5, 1): (0.95+0.025, -0.4-0.05, 0.05-0.1)
    r = o.step({-0.25f, 0.5f, 1.0f});
    expect_weights(o.w, {0.975, -0.45, -0.05}, "step 2");
    EXPECT_NEAR(r.param_sumsq, 0.95 * 0.95 + 0.4 * 0.4 + 0.05 * 0.05, 1e-7);
    EXPECT_NEAR(r.update_sumsq, 0.025 * 0.025 + 0.05 * 0.05 + 0.1 * 0.1, 1e-7);
    EXPECT_EQ(o.t, 2u);
}

TEST(OptimSgd, Momentum) {
    Opt o(sgd(0.1f, 0.9f, 0), {1.0f, -0.5f});
    ASSERT_EQ(o.state.size(), 2u);
    const std::vector<float> g = {0.5f, -1.0f};
    // w[0], g = 0.5:  v1 = -0.05            w1 = 0.95
    //                 v2 = 0.9*v1 - 0.05 = -0.095    w2 = 0.855
    //                 v3 = 0.9*v2 - 0.05 = -0.1355   w3 = 0.7195
    // w[1], g = -1:   v1 = 0.1   w1 = -0.4;  v2 = 0.19  w2 = -0.21;  v3 = 0.271  w3 = 0.061
    o.step(g);
    expect_weights(o.w, {0.95, -0.4}, "step 1");
    EXPECT_NEAR(o.slot(0, 0), -0.05, kTol);
    EXPECT_NEAR(o.slot(0, 1), 0.1, kTol);
    o.step(g);
    expect_weights(o.w, {0.855, -0.21}, "step 2");
    o.step(g);
    expect_weights(o.w, {0.7195, 0.061}, "step 3");
    EXPECT_NEAR(o.slot(0, 0), -0.1355, kTol);
    EXPECT_NEAR(o.slot(0, 1), 0.271, kTol);
}

TEST(OptimSgd, Nesterov) {
    Opt o(sgd(0.1f, 0.9f, 1), {1.0f, -0.5f});
    const std::vector<float> g = {0.5f, -1.0f};
    // Same velocities as plain momentum; the step is 0.9*v - 0.1*g:
    // w[0]: 1 + (0.9*-0.05 - 0.05) = 0.905;  + (0.9*-0.095 - 0.05) = 0.7695;
    //       + (0.9*-0.1355 - 0.05) = 0.59755
    // w[1]: -0.5 + (0.09 + 0.1) = -0.31;  + (0.171 + 0.1) = -0.039;  + (0.2439 + 0.1) = 0.3049
    o.step(g);
    expect_weights(o.w, {0.905, -0.31}, "step 1");
    o.step(g);
    expect_weights(o.w, {0.7695, -0.039}, "step 2");
    o.step(g);
    expect_weights(o.w, {0.59755, 0.3049}, "step 3");
    EXPECT_NEAR(o.slot(0, 0), -0.1355, kTol);
}

// ---------------------------------------------------------------- Adam

TEST(OptimAdam, FirstStepMovesByLrTimesSign) {
    // At t=1 the bias correction makes m_hat = g and v_hat = g^2, so each
    // weight moves by lr*|g|/(|g| + eps') ~ lr against the sign of g, where
    // eps' = eps/sqrt(1-0.999); for |g| >= 0.05 that shortens it by < 7e-8.
    const std::vector<float> w0 = {0.5f, -0.3f, 0.1f, 0.0f};
    Opt o(ct_optim_defaults(CT_OPT_ADAM), w0);
    o.step({0.2f, -0.4f, 3.0f, -0.05f});
    const double sign[4] = {1, -1, 1, -1};
    for (size_t i = 0; i < 4; ++i)
        EXPECT_NEAR(double(o.w[i]) - double(w0[i]), -1e-3 * sign[i], 1e-7) << i;
}

TEST(OptimAdam, ThreeStepsByHand) {
    Opt o(ct_optim_defaults(CT_OPT_ADAM), {0.5f, -0.3f, 0.1f});
    const double g[3][3] = {{0.2, -0.4, 1e-3}, {0.1, 0.3, 1e-3}, {-0.5, 0.3, 0.0}};
    double w[3] = {0.5, -0.3, 0.1}, m[3] = {0, 0, 0}, v[3] = {0, 0, 0};
    for (int t = 1; t <= 3; ++t) {
        // alpha_t = lr * sqrt(1 - 0.999^t) / (1 - 0.9^t)
        const double alpha = 1e-3 * std::sqrt(1 - std::pow(0.999, t)) / (1 - std::pow(0.9, t));
        for (int i = 0; i < 3; ++i) {
            m[i] = 0.9 * m[i] + 0.1 * g[t - 1][i];
            v[i] = 0.999 * v[i] + 0.001 * g[t - 1][i] * g[t - 1][i];
            w[i] -= alpha * m[i] / (std::sqrt(v[i]) + 1e-7);
        }
        o.step({float(g[t - 1][0]), float(g[t - 1][1]), float(g[t - 1][2])});
        expect_weights(o.w, {w[0], w[1], w[2]}, ("t=" + std::to_string(t)).c_str());
        for (int i = 0; i < 3; ++i) {
            // 1 - 0.9f and 1 - 0.999f are 2.4e-7 and 1.3e-5 off in relative
            // terms, exactly as in Keras's float32 arithmetic.
            EXPECT_NEAR(o.slot(0, i), m[i], 1e-6 * std::fabs(m[i]) + 1e-12) << "m t=" << t;
            EXPECT_NEAR(o.slot(1, i), v[i], 3e-5 * std::fabs(v[i]) + 1e-15) << "v t=" << t;
        }
        EXPECT_EQ(o.t, uint64_t(t));
    }
    // Spot-check the hand numbers themselves for weight 0 at t=1:
    // m = 0.1*0.2 = 0.02, v = 0.001*0.04 = 4e-5, alpha = 1e-3*sqrt(1e-3)/0.1,
    // step = alpha * 0.02 / (sqrt(4e-5) + 1e-7) = 1e-3 * 0.99998419...
}

TEST(OptimAdam, BiasCorrectionUsesResumedT) {
    // Resuming at t=999: the step is t=1000, where 0.9^1000 ~ 0 and
    // 1 - 0.999^1000 = 1 - e^(1000 ln 0.999) ~ 0.632.
    Opt o(ct_optim_defaults(CT_OPT_ADAM), {0.5f});
    o.t = 999;
    o.slot(0, 0) = 0.01f;
    o.slot(1, 0) = 1e-4f;
    o.step({0.1f});
    const double m = 0.9 * 0.01 + 0.1 * 0.1;     // 0.019
    const double v = 0.999 * 1e-4 + 0.001 * 0.01; // 1.099e-4
    const double alpha = 1e-3 * std::sqrt(1 - std::pow(0.999, 1000)) / (1 - std::pow(0.9, 1000));
    EXPECT_EQ(o.t, 1000u);
    EXPECT_NEAR(o.w[0], 0.5 - alpha * m / (std::sqrt(v) + 1e-7), kTol);
    EXPECT_NEAR(0.5 - o.w[0], 1.441e-3, 1e-6);  // ~7.95e-4 * 0.019 / 0.01048
}

TEST(OptimAdamW, DecayThenAdam) {
    ct_optim_config c = ct_optim_defaults(CT_OPT_ADAMW);
    c.lr = 0.01f;
    c.weight_decay = 0.1f;  // lr*wd = 1e-3: large enough to see in float
    Opt o(c, {0.5f, -0.3f});
    const double g[2][2] = {{0.2, -0.4}, {0.1, 0.3}};
    double w[2] = {0.5, -0.3}, m[2] = {0, 0}, v[2] = {0, 0};
    for (int t = 1; t <= 2; ++t) {
        const double alpha = 0.01 * std::sqrt(1 - std::pow(0.999, t)) / (1 - std::pow(0.9, t));
        for (int i = 0; i < 2; ++i) {
            w[i] -= 0.01 * 0.1 * w[i];  // decoupled decay on the old weight
            m[i] = 0.9 * m[i] + 0.1 * g[t - 1][i];
            v[i] = 0.999 * v[i] + 0.001 * g[t - 1][i] * g[t - 1][i];
            w[i] -= alpha * m[i] / (std::sqrt(v[i]) + 1e-7);
        }
        o.step({float(g[t - 1][0]), float(g[t - 1][1])});
        expect_weights(o.w, {w[0], w[1]}, ("t=" + std::to_string(t)).c_str());
    }
    // t=1 for weight 0: 0.5*(1 - 1e-3) - 0.01 (Adam's ~lr step) = 0.4895
    // (checked loosely: eps shaves ~2e-7 off the Adam part)
}

TEST(OptimAdamW, ZeroGradientOnlyDecays) {
    ct_optim_config c = ct_optim_defaults(CT_OPT_ADAMW);  // lr 1e-3, wd 0.004
    Opt aw(c, {0.5f, -0.25f});
    aw.step({0.0f, 0.0f});
    // w *= 1 - 1e-3*0.004; Adam's part is 0/(0+eps) = 0.
    EXPECT_NEAR(aw.w[0], 0.5 * (1 - 4e-6), 3e-8);
    EXPECT_NEAR(aw.w[1], -0.25 * (1 - 4e-6), 3e-8);
    EXPECT_NE(aw.w[0], 0.5f);

    Opt a(ct_optim_defaults(CT_OPT_ADAM), {0.5f, -0.25f});
    a.step({0.0f, 0.0f});
    EXPECT_EQ(a.w[0], 0.5f);
    EXPECT_EQ(a.w[1], -0.25f);
}

// ---------------------------------------------------------------- RMSprop

ct_optim_config rmsprop(float momentum) {
    ct_optim_config c = ct_optim_defaults(CT_OPT_RMSPROP);
    c.lr = 0.01f;
    c.momentum = momentum;
    return c;
}

TEST(OptimRmsprop, PlainStepsByHand) {
    Opt o(rmsprop(0.0f), {0.5f, -0.3f});
    ASSERT_EQ(o.state.size(), 2u);  // one slot
    const double g[3][2] = {{0.2, -0.4}, {0.1, 0.3}, {-0.2, 0.0}};
    double w[2] = {0.5, -0.3}, v[2] = {0, 0};
    for (int t = 1; t <= 3; ++t) {
        for (int i = 0; i < 2; ++i) {
            v[i] = 0.9 * v[i] + 0.1 * g[t - 1][i] * g[t - 1][i];
            w[i] -= 0.01 * g[t - 1][i] / std::sqrt(v[i] + 1e-7);
        }
        o.step({float(g[t - 1][0]), float(g[t - 1][1])});
        expect_weights(o.w, {w[0], w[1]}, ("t=" + std::to_string(t)).c_str());
        EXPECT_NEAR(o.slot(0, 0), v[0], 1e-6 * v[0]);
        if (t == 1) {
            // First step: lr*g/sqrt(0.1 g^2) = 0.01/sqrt(0.1) = 0.0316 against sign(g).
            EXPECT_NEAR(o.w[0], 0.5 - 0.0316228, 1e-6);
            EXPECT_NEAR(o.w[1], -0.3 + 0.0316228, 1e-6);
        }
    }
}

TEST(OptimRmsprop, MomentumStepsByHand) {
    Opt o(rmsprop(0.5f), {0.5f, -0.3f});
    ASSERT_EQ(o.state.size(), 4u);  // mean square, then momentum buffer
    const double g[3][2] = {{0.2, -0.4}, {0.1, 0.3}, {-0.2, 0.0}};
    double w[2] = {0.5, -0.3}, v[2] = {0, 0}, u[2] = {0, 0};
    for (int t = 1; t <= 3; ++t) {
        for (int i = 0; i < 2; ++i) {
            v[i] = 0.9 * v[i] + 0.1 * g[t - 1][i] * g[t - 1][i];
            u[i] = 0.5 * u[i] + 0.01 * g[t - 1][i] / std::sqrt(v[i] + 1e-7);
            w[i] -= u[i];
        }
        o.step({float(g[t - 1][0]), float(g[t - 1][1])});
        expect_weights(o.w, {w[0], w[1]}, ("t=" + std::to_string(t)).c_str());
        EXPECT_NEAR(o.slot(0, 1), v[1], 1e-6 * v[1]);
        EXPECT_NEAR(o.slot(1, 0), u[0], 1e-6 * std::fabs(u[0]));
        EXPECT_NEAR(o.slot(1, 1), u[1], 1e-6 * std::fabs(u[1]));
    }
}

// ---------------------------------------------------------------- clipping

TEST(OptimClip, GlobalNormClipScalesTheStep) {
    ct_optim_config c = sgd(1.0f, 0.0f, 0);
    c.clip_norm = 1.0f;
    Opt o(c, {0.0f, 0.0f, 0.0f});
    // ||(3, 4, 0)|| = 5 > 1: scale 1/5, so w = -(0.6, 0.8, 0).
    const ct_step_record r = o.step({3.0f, 4.0f, 0.0f});
    EXPECT_TRUE(r.flags & CT_FLAG_CLIPPED);
    EXPECT_DOUBLE_EQ(r.clip_scale, 0.2);
    expect_weights(o.w, {-0.6, -0.8, 0.0}, "clipped");
    EXPECT_NEAR(r.update_sumsq, 1.0, 1e-6);  // the clipped step has norm clip_norm * lr
}

TEST(OptimClip, NoClipAtOrBelowTheNorm) {
    for (float clip : {5.0f, 10.0f, 0.0f}) {
        ct_optim_config c = sgd(1.0f, 0.0f, 0);
        c.clip_norm = clip;
        Opt o(c, {0.0f, 0.0f});
        const ct_step_record r = o.step({3.0f, 4.0f});
        EXPECT_FALSE(r.flags & CT_FLAG_CLIPPED) << clip;
        EXPECT_EQ(r.clip_scale, 1.0) << clip;
        expect_weights(o.w, {-3.0, -4.0}, "unclipped");
    }
}

TEST(OptimClip, ClipFeedsTheMoments) {
    ct_optim_config c = ct_optim_defaults(CT_OPT_ADAM);
    c.clip_norm = 0.5f;
    Opt o(c, {0.5f, -0.3f});
    // ||(3, 4)|| = 5: g becomes (0.3, 0.4); m = 0.1*g, v = 0.001*g^2.
    o.step({3.0f, 4.0f});
    // (1 - 0.9f) is 2.4e-7 off 0.1 in relative terms, hence 1e-6 relative.
    EXPECT_NEAR(o.slot(0, 0), 0.03, 0.03e-6);
    EXPECT_NEAR(o.slot(0, 1), 0.04, 0.04e-6);
    EXPECT_NEAR(o.slot(1, 1), 0.001 * 0.16, 1e-8);  // (1 - 0.999f) is 1.3e-5 off
}

// ---------------------------------------------------------------- skipping

Opt adam_with_history() {
    ct_optim_config c = ct_optim_defaults(CT_OPT_ADAM);
    c.skip_nonfinite = 1;
    c.clip_norm = 0.01f;  // would clip these gradients if the step ran
    Opt o(c, {0.5f, -0.3f});
    o.state = {0.01f, 0.02f, 1e-4f, 2e-4f};
    o.t = 7;
    o.th.vanishing_update_ratio = 1e-3;  // a zero update would trip it
    return o;
}

void expect_untouched(const Opt &o, const ct_step_record &r) {
    EXPECT_EQ(o.w, (std::vector<float>{0.5f, -0.3f}));
    EXPECT_EQ(o.state, (std::vector<float>{0.01f, 0.02f, 1e-4f, 2e-4f}));
    EXPECT_EQ(o.t, 7u);
    EXPECT_TRUE(r.flags & CT_FLAG_SKIPPED_UPDATE);
    EXPECT_FALSE(r.flags & CT_FLAG_VANISHING_UPDATE);
    EXPECT_FALSE(r.flags & CT_FLAG_CLIPPED);
    EXPECT_EQ(r.clip_scale, 1.0);
    EXPECT_EQ(r.update_sumsq, 0.0);
    EXPECT_EQ(r.param_sumsq, double(0.5f) * 0.5f + double(-0.3f) * -0.3f);
}

TEST(OptimSkip, NonfiniteGradientSkipsWhenAsked) {
    Opt o = adam_with_history();
    const ct_step_record r = o.step({kNaN, 0.1f}, CT_FLAG_NONFINITE_GRAD);
    expect_untouched(o, r);
    EXPECT_TRUE(r.flags & CT_FLAG_NONFINITE_GRAD);  // the input flags survive
}

TEST(OptimSkip, NonfiniteLossSkipsWhenAsked) {
    Opt o = adam_with_history();
    expect_untouched(o, o.step({0.2f, 0.1f}, CT_FLAG_NONFINITE_LOSS));
}

TEST(OptimSkip, EmptyBatchAlwaysSkips) {
    Opt o = adam_with_history();
    o.cfg.skip_nonfinite = 0;
    expect_untouched(o, o.step({0.2f, 0.1f}, CT_FLAG_EMPTY_BATCH));
}

TEST(OptimSkip, NaNPropagatesWithoutSkip) {
    Opt o = adam_with_history();
    o.cfg.skip_nonfinite = 0;
    o.cfg.clip_norm = 0.0f;
    const ct_step_record r = o.step({kNaN, 0.1f}, CT_FLAG_NONFINITE_GRAD);
    EXPECT_FALSE(r.flags & CT_FLAG_SKIPPED_UPDATE);
    EXPECT_EQ(o.t, 8u);
    EXPECT_TRUE(std::isnan(o.w[0]));
    EXPECT_TRUE(std::isnan(o.slot(0, 0)));
    EXPECT_TRUE(std::isnan(o.slot(1, 0)));
    // The finite element still took its Adam step at t=8.
    const double m = 0.9 * 0.02 + 0.1 * 0.1, v = 0.999 * 2e-4 + 0.001 * 0.01;
    const double alpha = 1e-3 * std::sqrt(1 - std::pow(0.999, 8)) / (1 - std::pow(0.9, 8));
    EXPECT_NEAR(o.w[1], -0.3 - alpha * m / (std::sqrt(v) + 1e-7), kTol);
    EXPECT_TRUE(std::isnan(r.update_sumsq));
    EXPECT_FALSE(r.flags & CT_FLAG_VANISHING_UPDATE);
}

// ---------------------------------------------------------------- vanishing

std::vector<float> small_weights(size_t n) {
    std::vector<float> w(n);
    for (size_t i = 0; i < n; ++i) w[i] = (i % 2 ? -0.05f : 0.05f) * (1.0f + float(i) / float(n));
    return w;
}

std::vector<float> random_grads(size_t n, uint32_t seed) {
    std::mt19937 rng(seed);
    std::uniform_real_distribution<float> u(-1.0f, 1.0f);
    std::vector<float> g(n);
    for (float &x : g) x = u(rng);
    return g;
}

TEST(OptimVanishing, TinyLearningRateIsFlagged) {
    ct_optim_config c = ct_optim_defaults(CT_OPT_ADAM);
    c.lr = 1e-10f;
    Opt o(c, small_weights(32));
    o.th.vanishing_update_ratio = 1e-6;
    const ct_step_record r = o.step(random_grads(32, 1));
    // Each weight would move by ~1e-10, a fiftieth of a float ulp at 0.05.
    EXPECT_TRUE(r.flags & CT_FLAG_VANISHING_UPDATE);
    EXPECT_FALSE(r.flags & CT_FLAG_SKIPPED_UPDATE);
    EXPECT_EQ(o.t, 1u);
    EXPECT_LT(std::sqrt(r.update_sumsq / r.param_sumsq), 1e-6);
}

TEST(OptimVanishing, DefaultLearningRateIsNotFlagged) {
    Opt o(ct_optim_defaults(CT_OPT_ADAM), small_weights(32));
    o.th.vanishing_update_ratio = 1e-6;
    const std::vector<float> before = o.w;
    const ct_step_record r = o.step(random_grads(32, 1));
    EXPECT_FALSE(r.flags & CT_FLAG_VANISHING_UPDATE);

    // The sums are exactly what the arrays say, accumulated in double.
    double p = 0, u = 0;
    for (size_t i = 0; i < before.size(); ++i) {
        p += double(before[i]) * double(before[i]);
        const double d = double(o.w[i]) - double(before[i]);
        u += d * d;
    }
    EXPECT_DOUBLE_EQ(r.param_sumsq, p);
    EXPECT_DOUBLE_EQ(r.update_sumsq, u);
    // ~1e-3 steps on ~0.07 weights: a ratio of a few percent.
    EXPECT_NEAR(std::sqrt(u / p), 1e-3 / std::sqrt(p / 32), 1e-3);
}

TEST(OptimVanishing, OffWhenThresholdIsZero) {
    ct_optim_config c = ct_optim_defaults(CT_OPT_ADAM);
    c.lr = 1e-10f;
    Opt o(c, small_weights(8));
    EXPECT_FALSE(o.step(random_grads(8, 2)).flags & CT_FLAG_VANISHING_UPDATE);
}

TEST(OptimVanishing, ZeroWeightsAreNotFlagged) {
    Opt o(sgd(0.0f, 0.0f, 0), {0.0f, 0.0f});
    o.th.vanishing_update_ratio = 1e-6;
    const ct_step_record r = o.step({1.0f, 1.0f});
    EXPECT_EQ(r.param_sumsq, 0.0);
    EXPECT_FALSE(r.flags & CT_FLAG_VANISHING_UPDATE);
}

// ---------------------------------------------------------------- config

TEST(OptimConfig, KerasDefaults) {
    const ct_optim_config s = ct_optim_defaults(CT_OPT_SGD);
    EXPECT_EQ(s.kind, CT_OPT_SGD);
    EXPECT_EQ(s.lr, 0.01f);
    EXPECT_EQ(s.momentum, 0.0f);
    EXPECT_EQ(s.nesterov, 0);

    for (ct_optimizer_kind k : {CT_OPT_ADAM, CT_OPT_ADAMW}) {
        const ct_optim_config a = ct_optim_defaults(k);
        EXPECT_EQ(a.kind, k);
        EXPECT_EQ(a.lr, 1e-3f);
        EXPECT_EQ(a.beta1, 0.9f);
        EXPECT_EQ(a.beta2, 0.999f);
        EXPECT_EQ(a.eps, 1e-7f);
        EXPECT_EQ(a.weight_decay, k == CT_OPT_ADAMW ? 0.004f : 0.0f);
    }

    const ct_optim_config r = ct_optim_defaults(CT_OPT_RMSPROP);
    EXPECT_EQ(r.lr, 1e-3f);
    EXPECT_EQ(r.rho, 0.9f);
    EXPECT_EQ(r.momentum, 0.0f);
    EXPECT_EQ(r.eps, 1e-7f);

    for (ct_optimizer_kind k : {CT_OPT_SGD, CT_OPT_ADAM, CT_OPT_ADAMW, CT_OPT_RMSPROP}) {
        EXPECT_EQ(ct_optim_defaults(k).clip_norm, 0.0f);
        EXPECT_EQ(ct_optim_defaults(k).skip_nonfinite, 0);
    }
}

TEST(OptimConfig, ParseKind) {
    EXPECT_EQ(ct_optim_parse_kind("sgd"), CT_OPT_SGD);
    EXPECT_EQ(ct_optim_parse_kind("Adam"), CT_OPT_ADAM);
    EXPECT_EQ(ct_optim_parse_kind("ADAMW"), CT_OPT_ADAMW);
    EXPECT_EQ(ct_optim_parse_kind("RMSprop"), CT_OPT_RMSPROP);
    EXPECT_EQ(ct_optim_parse_kind("adagrad"), -1);
    EXPECT_EQ(ct_optim_parse_kind("adam "), -1);
    EXPECT_EQ(ct_optim_parse_kind("ada"), -1);
    EXPECT_EQ(ct_optim_parse_kind(""), -1);
    EXPECT_EQ(ct_optim_parse_kind(nullptr), -1);
    for (ct_optimizer_kind k : {CT_OPT_SGD, CT_OPT_ADAM, CT_OPT_ADAMW, CT_OPT_RMSPROP})
        EXPECT_EQ(ct_optim_parse_kind(ct_optim_kind_name(k)), int(k));
    EXPECT_STREQ(ct_optim_kind_name(CT_OPT_RMSPROP), "rmsprop");
}

TEST(OptimConfig, StateSlots) {
    ct_optim_config c = ct_optim_defaults(CT_OPT_SGD);
    EXPECT_EQ(ct_optim_state_slots(&c), 0);
    c.momentum = 0.9f;
    EXPECT_EQ(ct_optim_state_slots(&c), 1);
    c = ct_optim_defaults(CT_OPT_ADAM);
    EXPECT_EQ(ct_optim_state_slots(&c), 2);
    c = ct_optim_defaults(CT_OPT_ADAMW);
    EXPECT_EQ(ct_optim_state_slots(&c), 2);
    c = ct_optim_defaults(CT_OPT_RMSPROP);
    EXPECT_EQ(ct_optim_state_slots(&c), 1);
    c.momentum = 0.9f;
    EXPECT_EQ(ct_optim_state_slots(&c), 2);
}

// ---------------------------------------------------------------- record.c

TEST(Record, FlagNamesMatchBits) {
    const struct {
        uint32_t bit;
        const char *name;
    } flags[] = {
        {CT_FLAG_NONFINITE_LOSS, "NONFINITE_LOSS"}, {CT_FLAG_NONFINITE_GRAD, "NONFINITE_GRAD"},
        {CT_FLAG_ZERO_GRAD, "ZERO_GRAD"},           {CT_FLAG_VANISHING_UPDATE, "VANISHING_UPDATE"},
        {CT_FLAG_EXPLODING_GRAD, "EXPLODING_GRAD"}, {CT_FLAG_EMPTY_BATCH, "EMPTY_BATCH"},
        {CT_FLAG_SKIPPED_UPDATE, "SKIPPED_UPDATE"}, {CT_FLAG_CLIPPED, "CLIPPED"},
    };
    ASSERT_EQ(sizeof flags / sizeof flags[0], size_t(CT_FLAG_COUNT));
    for (const auto &f : flags) {
        unsigned idx = 0;
        while ((1u << idx) != f.bit) ++idx;
        ASSERT_NE(ct_flag_name(idx), nullptr) << idx;
        EXPECT_STREQ(ct_flag_name(idx), f.name);
    }
    EXPECT_EQ(ct_flag_name(CT_FLAG_COUNT), nullptr);
    EXPECT_EQ(ct_flag_name(31), nullptr);
    EXPECT_EQ(ct_flag_name(~0u), nullptr);
}

TEST(Record, DerivedValues) {
    ct_step_record r;
    std::memset(&r, 0, sizeof r);
    r.batch_size = 4;
    r.loss_sum = 2.0;
    r.correct = 3.0;
    r.grad_sumsq = 9.0;
    r.param_sumsq = 16.0;
    r.update_sumsq = 4.0;
    EXPECT_DOUBLE_EQ(ct_record_loss(&r), 0.5);
    EXPECT_DOUBLE_EQ(ct_record_accuracy(&r), 0.75);
    EXPECT_DOUBLE_EQ(ct_record_grad_norm(&r), 3.0);
    EXPECT_DOUBLE_EQ(ct_record_update_ratio(&r), 0.5);  // sqrt(4)/sqrt(16)

    r.batch_size = 0;
    EXPECT_TRUE(std::isnan(ct_record_loss(&r)));
    EXPECT_TRUE(std::isnan(ct_record_accuracy(&r)));
    r.param_sumsq = 0.0;
    EXPECT_EQ(ct_record_update_ratio(&r), 0.0);
}

TEST(Record, UpdateRatioOfAStep) {
    // The ratio the vanishing test uses, for SGD lr 0.1 on w = (3, 4), g = (1, 0):
    // ||dw|| = 0.1, ||w|| = 5, ratio 0.02.
    Opt o(sgd(0.1f, 0.0f, 0), {3.0f, 4.0f});
    const ct_step_record r = o.step({1.0f, 0.0f});
    EXPECT_NEAR(ct_record_update_ratio(&r), 0.02, 1e-7);
}

}  // namespace
