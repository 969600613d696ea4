// The health checks on hand-made step records (ct_health_observe), the
// model check (ct_health_check_model) and the data-content check
// (ct_dataset_check_content): exact codes, steps, layers and message
// keywords, with no training involved.
#include <gtest/gtest.h>

#include <climits>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "support/fixtures.h"

namespace {

const char kNames[3][32] = {"dense1", "dense2", "dense3"};

// Every check off; each test switches on the one it is about.
ct_health_config all_off() {
    ct_health_config c = ct_health_defaults();
    c.vanishing_window = 0;
    c.dead_window = 0;
    c.explode_window = 0;
    c.chance_window = 0;
    return c;
}

// A healthy record of a 3-layer model: finite loss well below ln 10,
// ||g|| = grad_norm, ||dw||/||w|| = 1e-3, no flags.
ct_step_record healthy(uint64_t step, double loss = 1.0, double grad_norm = 1.0) {
    ct_step_record r;
    memset(&r, 0, sizeof r);
    r.step = step;
    r.epoch = 1;
    r.batch_size = 32;
    r.n_layers = 3;
    r.loss_sum = loss * 32;
    r.correct = 16;
    r.grad_sumsq = grad_norm * grad_norm;
    r.grad_max_abs = grad_norm;
    r.param_sumsq = 1.0;
    r.update_sumsq = 1e-6;
    r.clip_scale = 1.0;
    for (int i = 0; i < 3; ++i) r.layer_grad_sumsq[i] = r.grad_sumsq / 3;
    return r;
}

// A step whose update was vanishing: ||dw||/||w|| = ratio, flagged.
ct_step_record vanishing(uint64_t step, double ratio = 1e-9) {
    ct_step_record r = healthy(step);
    r.update_sumsq = ratio * ratio;
    r.flags |= CT_FLAG_VANISHING_UPDATE;
    return r;
}

ct_step_record empty_batch(uint64_t step) {
    ct_step_record r = healthy(step);
    r.batch_size = 0;
    r.loss_sum = 0;
    r.correct = 0;
    r.grad_sumsq = 0;
    r.grad_max_abs = 0;
    r.update_sumsq = 0;
    for (int i = 0; i < 3; ++i) r.layer_grad_sumsq[i] = 0;
    r.flags = CT_FLAG_EMPTY_BATCH | CT_FLAG_SKIPPED_UPDATE;
    return r;
}

struct Said {
    std::string code, severity, layer, message;
    uint64_t step;
    uint32_t epoch;
};

// A health monitor plus everything it has said so far.
struct Monitor {
    ct_health h;
    std::vector<Said> said;

    explicit Monitor(const ct_health_config &cfg, float lr = 0.001f, const char *optimizer = "adam",
                     int classes = 10, int n_layers = 3) {
        ct_health_init(&h, &cfg, lr, optimizer, classes, n_layers, kNames);
    }
    // Observes one record; returns what it said at that record.
    std::vector<Said> observe(const ct_step_record &r) {
        ct_diagnosis d[CT_HEALTH_MAX_DIAG];
        int n = ct_health_observe(&h, &r, d);
        EXPECT_GE(n, 0);
        EXPECT_LE(n, CT_HEALTH_MAX_DIAG);
        std::vector<Said> now;
        for (int i = 0; i < n; ++i) {
            now.push_back({d[i].code, d[i].severity ? d[i].severity : "", d[i].layer, d[i].message, d[i].step,
                           d[i].epoch});
            said.push_back(now.back());
        }
        return now;
    }
    std::vector<Said> of(const std::string &code) const {
        std::vector<Said> out;
        for (const Said &s : said)
            if (s.code == code) out.push_back(s);
        return out;
    }
};

bool has(const std::string &hay, const std::string &needle) { return hay.find(needle) != std::string::npos; }

// ---------------------------------------------------------------- healthy

TEST(Health, DefaultsAreTheDocumentedOnes) {
    ct_health_config c = ct_health_defaults();
    EXPECT_EQ(c.on_nan, CT_ON_NAN_STOP);
    EXPECT_EQ(c.vanishing_ratio, 1e-7);
    EXPECT_EQ(c.vanishing_window, 100);
    EXPECT_EQ(c.dead_window, 50);
    EXPECT_EQ(c.explode_factor, 100.0);
    EXPECT_EQ(c.explode_window, 20);
    EXPECT_EQ(c.chance_window, 200);
    EXPECT_EQ(c.chance_tolerance, 0.02);
    EXPECT_EQ(c.nonfinite_window, 100);
}

TEST(Health, NanPolicyNamesRoundTrip) {
    EXPECT_EQ(ct_nan_policy_parse("stop"), CT_ON_NAN_STOP);
    EXPECT_EQ(ct_nan_policy_parse("SKIP"), CT_ON_NAN_SKIP);
    EXPECT_EQ(ct_nan_policy_parse("warn"), CT_ON_NAN_WARN);
    EXPECT_EQ(ct_nan_policy_parse("ignore"), -1);
    EXPECT_STREQ(ct_nan_policy_name(CT_ON_NAN_STOP), "stop");
    EXPECT_STREQ(ct_nan_policy_name(CT_ON_NAN_SKIP), "skip");
    EXPECT_STREQ(ct_nan_policy_name(CT_ON_NAN_WARN), "warn");
}

TEST(Health, HealthyTrainingSaysNothing) {
    // Every check on with its default window; 1000 healthy steps whose loss
    // falls from 2.0 (below chance, ln 10 = 2.30) and whose gradient norm
    // wobbles by +-30%.
    Monitor m(ct_health_defaults());
    for (uint64_t s = 1; s <= 1000; ++s) {
        double loss = 0.1 + 1.9 * std::exp(-(double)s / 300.0);
        double norm = 1.0 + 0.3 * std::sin((double)s);
        m.observe(healthy(s, loss, norm));
    }
    EXPECT_TRUE(m.said.empty()) << m.said[0].code << ": " << m.said[0].message;
    EXPECT_EQ(m.h.stop, 0);
    EXPECT_EQ(m.h.nonfinite_steps, 0u);
    EXPECT_EQ(m.h.skipped_steps, 0u);
    EXPECT_EQ(m.h.empty_batches, 0u);
}

TEST(Health, CountsEmptyAndSkippedSteps) {
    Monitor m(all_off());
    m.observe(healthy(1));
    m.observe(empty_batch(2));
    m.observe(empty_batch(3));
    ct_step_record skipped = healthy(4);
    skipped.flags |= CT_FLAG_SKIPPED_UPDATE;
    m.observe(skipped);
    EXPECT_EQ(m.h.empty_batches, 2u);
    EXPECT_EQ(m.h.skipped_steps, 3u);  // empty batches are skipped updates too
    EXPECT_TRUE(m.said.empty());
}

TEST(Health, InitClampsTheExplodeWindow) {
    ct_health_config c = all_off();
    c.explode_window = CT_HEALTH_MAX_WINDOW * 4;
    Monitor m(c);
    EXPECT_EQ(m.h.cfg.explode_window, CT_HEALTH_MAX_WINDOW);
    EXPECT_EQ(m.h.n_layers, 3);
    EXPECT_STREQ(m.h.layer_names[2], "dense3");
}

// ---------------------------------------------------------------- non-finite

TEST(Health, NonfiniteGradNamesTheFirstLayerInBackwardOrderAndStops) {
    Monitor m(all_off(), 0.01f);
    for (uint64_t s = 1; s <= 4; ++s) EXPECT_TRUE(m.observe(healthy(s)).empty());
    ct_step_record bad = healthy(5);
    bad.flags |= CT_FLAG_NONFINITE_GRAD;
    bad.nonfinite_count = 7;
    bad.layer_nonfinite[0] = 5;  // dense1: earlier in the forward pass
    bad.layer_nonfinite[2] = 2;  // dense3: the output, first in backward order
    auto d = m.observe(bad);
    ASSERT_EQ(d.size(), 1u);
    EXPECT_EQ(d[0].code, "NONFINITE_GRAD");
    EXPECT_EQ(d[0].severity, "error");
    EXPECT_EQ(d[0].step, 5u);
    EXPECT_EQ(d[0].epoch, 1u);
    EXPECT_EQ(d[0].layer, "dense3");
    EXPECT_TRUE(has(d[0].message, "step 5")) << d[0].message;
    EXPECT_TRUE(has(d[0].message, "layer dense3 (2 non-finite values)")) << d[0].message;
    EXPECT_TRUE(has(d[0].message, "--on-nan stop")) << d[0].message;
    EXPECT_TRUE(has(d[0].message, "--clip-grad-norm")) << d[0].message;
    EXPECT_TRUE(has(d[0].message, "0.01")) << d[0].message;
    EXPECT_EQ(m.h.stop, 1);
    EXPECT_EQ(m.h.nonfinite_steps, 1u);

    // Said once: a second bad step is counted, not repeated.
    bad.step = 6;
    EXPECT_TRUE(m.observe(bad).empty());
    EXPECT_EQ(m.h.nonfinite_steps, 2u);
}

TEST(Health, NonfiniteNamesAMiddleLayerWhenTheDeeperOnesAreFinite) {
    Monitor m(all_off());
    ct_step_record bad = healthy(3);
    bad.flags |= CT_FLAG_NONFINITE_GRAD;
    bad.nonfinite_count = 4;
    bad.layer_nonfinite[0] = 3;
    bad.layer_nonfinite[1] = 1;
    auto d = m.observe(bad);
    ASSERT_EQ(d.size(), 1u);
    EXPECT_EQ(d[0].layer, "dense2");
    EXPECT_TRUE(has(d[0].message, "layer dense2 (1 non-finite values)")) << d[0].message;
}

TEST(Health, NonfiniteLossWinsOverGradAndPoliciesSetSeverity) {
    struct Case {
        ct_nan_policy policy;
        const char *severity, *then;
        int stop;
    } cases[] = {
        {CT_ON_NAN_STOP, "error", "training stopped (--on-nan stop)", 1},
        {CT_ON_NAN_SKIP, "warning", "the update was skipped (--on-nan skip)", 0},
        {CT_ON_NAN_WARN, "warning", "training goes on (--on-nan warn)", 0},
    };
    for (const Case &c : cases) {
        ct_health_config cfg = all_off();
        cfg.on_nan = c.policy;
        Monitor m(cfg);
        ct_step_record bad = healthy(9);
        bad.flags |= CT_FLAG_NONFINITE_LOSS | CT_FLAG_NONFINITE_GRAD;
        bad.loss_sum = NAN;
        bad.nonfinite_count = 30;
        bad.layer_nonfinite[0] = bad.layer_nonfinite[1] = bad.layer_nonfinite[2] = 10;
        auto d = m.observe(bad);
        ASSERT_EQ(d.size(), 1u) << c.then;
        EXPECT_EQ(d[0].code, "NONFINITE_LOSS");
        EXPECT_EQ(d[0].severity, c.severity);
        EXPECT_EQ(d[0].step, 9u);
        EXPECT_EQ(d[0].layer, "dense3");
        EXPECT_TRUE(has(d[0].message, "the loss is NaN or Inf")) << d[0].message;
        EXPECT_TRUE(has(d[0].message, c.then)) << d[0].message;
        EXPECT_EQ(m.h.stop, c.stop) << c.then;
    }
}

TEST(Health, NonfiniteLossWithoutABadLayerNamesNoLayer) {
    Monitor m(all_off());
    ct_step_record bad = healthy(2);
    bad.flags |= CT_FLAG_NONFINITE_LOSS;
    bad.loss_sum = INFINITY;
    auto d = m.observe(bad);
    ASSERT_EQ(d.size(), 1u);
    EXPECT_EQ(d[0].code, "NONFINITE_LOSS");
    EXPECT_EQ(d[0].layer, "");
    EXPECT_FALSE(has(d[0].message, "first (in backward order)")) << d[0].message;
}

// ---------------------------------------------------------------- vanishing

// Under skip or warn a run whose every step is NaN/Inf would end
// "completed" having learnt nothing: a run of nonfinite_window of them in a
// row stops it (error, h->stop), once; a finite step starts the count over,
// an empty batch does not; with --on-nan stop the first NaN already stops.
TEST(Health, NonfiniteStepsInARowStopASkipOrWarnRun) {
    auto nan_step = [](uint64_t s) {
        ct_step_record r = healthy(s);
        r.flags |= CT_FLAG_NONFINITE_LOSS | CT_FLAG_SKIPPED_UPDATE;
        return r;
    };
    ct_health_config cfg = all_off();
    cfg.nonfinite_window = 5;
    for (ct_nan_policy policy : {CT_ON_NAN_SKIP, CT_ON_NAN_WARN}) {
        cfg.on_nan = policy;
        Monitor m(cfg, 10.0f, "sgd");
        auto first = m.observe(nan_step(1));
        ASSERT_EQ(first.size(), 1u);
        EXPECT_EQ(first[0].code, "NONFINITE_LOSS");
        for (uint64_t s = 2; s <= 4; ++s) EXPECT_TRUE(m.observe(nan_step(s)).empty()) << s;
        EXPECT_TRUE(m.observe(healthy(5)).empty());  // finite: the count starts over
        EXPECT_TRUE(m.observe(empty_batch(6)).empty());
        for (uint64_t s = 7; s <= 10; ++s) EXPECT_TRUE(m.observe(nan_step(s)).empty()) << s;
        EXPECT_TRUE(m.observe(empty_batch(11)).empty());  // an empty batch does not break the run
        EXPECT_EQ(m.h.nonfinite_run, 4);
        EXPECT_FALSE(m.h.stop);
        auto d = m.observe(nan_step(12));
        ASSERT_EQ(d.size(), 1u);
        EXPECT_EQ(d[0].code, "NONFINITE_PERSISTS");
        EXPECT_EQ(d[0].severity, "error");
        EXPECT_EQ(d[0].step, 12u);
        EXPECT_TRUE(m.h.stop);
        EXPECT_TRUE(has(d[0].message, "for 5 steps in a row")) << d[0].message;
        EXPECT_TRUE(has(d[0].message, "now 10")) << d[0].message;
        EXPECT_EQ(has(d[0].message, "--on-nan warn let NaN/Inf into the weights"), policy == CT_ON_NAN_WARN)
            << d[0].message;
        EXPECT_EQ(has(d[0].message, "--on-nan skip has skipped every one"), policy == CT_ON_NAN_SKIP) << d[0].message;
    }
    {
        cfg.on_nan = CT_ON_NAN_STOP;
        cfg.nonfinite_window = 1;
        Monitor m(cfg);
        auto d = m.observe(nan_step(1));
        ASSERT_EQ(d.size(), 1u);
        EXPECT_EQ(d[0].code, "NONFINITE_LOSS");  // stop speaks for itself
    }
    {
        cfg.on_nan = CT_ON_NAN_SKIP;
        cfg.nonfinite_window = 0;  // off
        Monitor m(cfg);
        for (uint64_t s = 1; s <= 300; ++s) m.observe(nan_step(s));
        EXPECT_EQ(m.said.size(), 1u);
        EXPECT_FALSE(m.h.stop);
    }
}

TEST(Health, VanishingFiresOnceAfterTheWindowAndResetsOnAHealthyStep) {
    ct_health_config cfg = all_off();
    cfg.vanishing_window = 5;
    Monitor m(cfg, 1e-10f, "adam");
    for (uint64_t s = 1; s <= 4; ++s) EXPECT_TRUE(m.observe(vanishing(s)).empty()) << s;
    EXPECT_TRUE(m.observe(healthy(5)).empty());  // the run of 4 starts over
    for (uint64_t s = 6; s <= 9; ++s) EXPECT_TRUE(m.observe(vanishing(s)).empty()) << s;
    auto d = m.observe(vanishing(10));  // the 5th in a row
    ASSERT_EQ(d.size(), 1u);
    EXPECT_EQ(d[0].code, "VANISHING_UPDATES");
    EXPECT_EQ(d[0].severity, "warning");
    EXPECT_EQ(d[0].step, 10u);
    EXPECT_EQ(d[0].layer, "");
    EXPECT_TRUE(has(d[0].message, "for 5 steps")) << d[0].message;
    EXPECT_TRUE(has(d[0].message, "below 1e-07")) << d[0].message;
    EXPECT_TRUE(has(d[0].message, "geometric mean 1e-09")) << d[0].message;  // the measured ratio
    EXPECT_TRUE(has(d[0].message, "about 1e-3")) << d[0].message;             // the typical one
    EXPECT_TRUE(has(d[0].message, "learning rate 1e-10")) << d[0].message;
    EXPECT_TRUE(has(d[0].message, "adam: try --lr 1e-3")) << d[0].message;
    for (uint64_t s = 11; s <= 100; ++s) EXPECT_TRUE(m.observe(vanishing(s)).empty()) << s;
    EXPECT_EQ(m.of("VANISHING_UPDATES").size(), 1u);
    EXPECT_EQ(m.h.stop, 0);
}

TEST(Health, VanishingReportsTheGeometricMeanOfTheRun) {
    ct_health_config cfg = all_off();
    cfg.vanishing_window = 2;
    Monitor m(cfg, 1e-6f, "sgd");
    m.observe(vanishing(1, 1e-8));
    auto d = m.observe(vanishing(2, 1e-10));
    ASSERT_EQ(d.size(), 1u);
    EXPECT_TRUE(has(d[0].message, "geometric mean 1e-09")) << d[0].message;
    EXPECT_TRUE(has(d[0].message, "learning rate 1e-06 is far too small for sgd: try --lr 0.01")) << d[0].message;
}

// With an ordinary learning rate the cause is elsewhere: weights grown huge,
// or gradients that have vanished.
TEST(Health, VanishingWithAnOrdinaryLearningRateNamesTheOtherCause) {
    ct_health_config cfg = all_off();
    cfg.vanishing_window = 3;
    {
        Monitor m(cfg, 0.001f, "adam");
        for (uint64_t s = 1; s <= 3; ++s) {
            ct_step_record r = vanishing(s);
            r.grad_sumsq = 1e-12;  // ||g|| = 1e-6
            m.observe(r);
        }
        ASSERT_EQ(m.said.size(), 1u);
        const std::string &msg = m.said[0].message;
        EXPECT_EQ(m.said[0].step, 3u);
        EXPECT_TRUE(has(msg, "learning rate 0.001 is ordinary for adam")) << msg;
        EXPECT_TRUE(has(msg, "gradients have nearly vanished (geometric mean ||g|| 1e-06)")) << msg;
        EXPECT_FALSE(has(msg, "far too small")) << msg;
    }
    {
        Monitor m(cfg, 0.01f, "sgd");
        for (uint64_t s = 1; s <= 3; ++s) {
            ct_step_record r = vanishing(s);
            r.param_sumsq = 1e16;  // ||w|| = 1e8
            r.update_sumsq = 1e16 * 1e-18;
            m.observe(r);
        }
        ASSERT_EQ(m.said.size(), 1u);
        const std::string &msg = m.said[0].message;
        EXPECT_TRUE(has(msg, "weights have grown huge (||w|| about 1e+08)")) << msg;
        EXPECT_TRUE(has(msg, "lower the learning rate (now 0.01)")) << msg;
        EXPECT_TRUE(has(msg, "--clip-grad-norm")) << msg;
        EXPECT_FALSE(has(msg, "invites")) << msg;  // 0.01 is an ordinary rate for sgd
    }
}

// A rate far above the ordinary ones is never called ordinary: with sgd at
// 5 the gradients vanish because the first steps killed the units.
TEST(Health, VanishingUnderAHugeLearningRateBlamesTheRate) {
    ct_health_config cfg = all_off();
    cfg.vanishing_window = 3;
    for (int huge_w = 0; huge_w < 2; ++huge_w) {
        Monitor m(cfg, 5.0f, "sgd");
        for (uint64_t s = 1; s <= 3; ++s) {
            ct_step_record r = vanishing(s);
            r.grad_sumsq = 1e-12;
            if (huge_w) {
                r.param_sumsq = 1e56;  // ||w|| = 1e28
                r.update_sumsq = 1e56 * 1e-18;
            }
            m.observe(r);
        }
        ASSERT_EQ(m.said.size(), 1u);
        const std::string &msg = m.said[0].message;
        EXPECT_FALSE(has(msg, "ordinary")) << msg;
        EXPECT_TRUE(has(msg, huge_w ? "which a learning rate this large for the optimizer invites"
                                    : "under a learning rate of 5, very large for sgd")) << msg;
        EXPECT_TRUE(has(msg, "ower the learning rate")) << msg;
    }
}

// Tiny updates from healthy gradients under a tiny clip norm: the message
// names the clip, not vanished gradients or the learning rate.
TEST(Health, VanishingUnderATinyClipNamesTheClip) {
    ct_health_config cfg = all_off();
    cfg.vanishing_window = 3;
    for (int clipped = 0; clipped < 2; ++clipped) {
        Monitor m(cfg, 0.01f, "sgd");
        m.h.clip_norm = 1e-5f;
        for (uint64_t s = 1; s <= 3; ++s) {
            ct_step_record r = vanishing(s);
            r.grad_sumsq = 1.96;  // ||g|| = 1.4
            if (clipped) {
                r.flags |= CT_FLAG_CLIPPED;
                r.clip_scale = 1e-5 / 1.4;
            }
            m.observe(r);
        }
        ASSERT_EQ(m.said.size(), 1u);
        const std::string &msg = m.said[0].message;
        EXPECT_EQ(has(msg, "--clip-grad-norm 1e-05 scales each update by 7.1e-06"), clipped == 1) << msg;
        EXPECT_EQ(has(msg, "gradients have nearly vanished"), clipped == 0) << msg;
    }
}

// The floor of the "ordinary" learning rates (1e-5 for Adam-like
// optimizers, 1e-4 for SGD) is itself ordinary: --lr 1e-5 with Adam must
// not be called "far too small". The float learning rate 1e-5f is
// 9.99999975e-06, just below the double 1e-5, so a plain `lr < 1e-5`
// comparison misjudges exactly the documented boundary.
TEST(Health, VanishingLearningRateAtTheOrdinaryFloorIsOrdinary) {
    ct_health_config cfg = all_off();
    cfg.vanishing_window = 2;
    const struct {
        float lr;
        const char *optimizer;
    } cases[] = {{1e-5f, "adam"}, {1e-4f, "sgd"}};
    for (const auto &c : cases) {
        Monitor m(cfg, c.lr, c.optimizer);
        m.observe(vanishing(1));
        m.observe(vanishing(2));
        ASSERT_EQ(m.said.size(), 1u);
        EXPECT_FALSE(has(m.said[0].message, "far too small")) << c.optimizer << ": " << m.said[0].message;
        EXPECT_TRUE(has(m.said[0].message, std::string("is ordinary for ") + c.optimizer)) << m.said[0].message;
    }
    // Just below the floor is the learning rate's fault.
    Monitor below(cfg, 5e-6f, "adam");
    below.observe(vanishing(1));
    below.observe(vanishing(2));
    ASSERT_EQ(below.said.size(), 1u);
    EXPECT_TRUE(has(below.said[0].message, "far too small for adam")) << below.said[0].message;
}

// A cosine or one-cycle schedule anneals the rate toward 0 within its span
// (one-cycle warms up from lr/div, too): small updates there are the plan,
// not gradients that vanished. Past its span the rate stays at its last
// value for good, and a step schedule's decay never lifts: said then,
// naming the schedule, never "the learning rate is ordinary, lower it".
TEST(Health, VanishingUnderAScheduleIsJudgedAtTheBaseRateAndNamesTheSchedule) {
    ct_health_config cfg = all_off();
    cfg.vanishing_window = 3;
    ct_optim_config sgd = ct_optim_defaults(CT_OPT_SGD);
    sgd.lr = 0.001f;
    // The tail of a 100-step cosine: the rate at steps 98-100 is 2.2e-3 to
    // 2.5e-4 of the base; updates of 2e-8 of ||w|| would be 9e-6 or more at
    // the base rate.
    sgd.schedule = ct_schedule_defaults(CT_SCHED_COSINE);
    sgd.schedule.total_steps = 100;
    {
        Monitor m(cfg, sgd.lr, "sgd");
        ct_health_set_optimizer(&m.h, &sgd);
        for (uint64_t s = 98; s <= 100; ++s) EXPECT_TRUE(m.observe(vanishing(s, 2e-8)).empty()) << s;
    }
    // A real vanishing within the span is still said, as before.
    {
        Monitor m(cfg, sgd.lr, "sgd");
        ct_health_set_optimizer(&m.h, &sgd);
        for (uint64_t s = 98; s <= 100; ++s) m.observe(vanishing(s, 1e-20));
        ASSERT_EQ(m.of("VANISHING_UPDATES").size(), 1u);
        EXPECT_FALSE(has(m.said[0].message, "schedule")) << m.said[0].message;
    }
    // Past the span: lr 0 from step 101 on, every update exactly 0.
    {
        Monitor m(cfg, sgd.lr, "sgd");
        ct_health_set_optimizer(&m.h, &sgd);
        for (uint64_t s = 101; s <= 103; ++s) m.observe(vanishing(s, 0.0));
        auto d = m.of("VANISHING_UPDATES");
        ASSERT_EQ(d.size(), 1u);
        EXPECT_EQ(d[0].step, 103u);
        const std::string &msg = d[0].message;
        EXPECT_TRUE(has(msg, "The cosine schedule has brought the learning rate down to 0 at step 103 (its base is "
                             "0.001)")) << msg;
        EXPECT_TRUE(has(msg, "its 100 steps have ended")) << msg;
        EXPECT_TRUE(has(msg, "(geometric mean 0)")) << msg;  // every update exactly 0, not "1e-300"
        EXPECT_FALSE(has(msg, "is ordinary")) << msg;
        EXPECT_FALSE(has(msg, "gradients have nearly vanished")) << msg;
    }
    // A step schedule that has decayed an ordinary rate to 1e-9.
    ct_optim_config adam = ct_optim_defaults(CT_OPT_ADAM);
    adam.schedule = ct_schedule_defaults(CT_SCHED_STEP);
    adam.schedule.step_size = 10;
    adam.schedule.gamma = 0.01f;
    {
        Monitor m(cfg, adam.lr, "adam");
        ct_health_set_optimizer(&m.h, &adam);
        for (uint64_t s = 31; s <= 33; ++s) m.observe(vanishing(s));
        auto d = m.of("VANISHING_UPDATES");
        ASSERT_EQ(d.size(), 1u);
        const std::string &msg = d[0].message;
        EXPECT_TRUE(has(msg, "The step schedule has brought the learning rate down to 1e-09 at step 33")) << msg;
        EXPECT_TRUE(has(msg, "multiplies the rate by 0.01 every 10 steps")) << msg;
        EXPECT_FALSE(has(msg, "is ordinary")) << msg;
    }
}

TEST(Health, VanishingIgnoresSkippedAndEmptySteps) {
    ct_health_config cfg = all_off();
    cfg.vanishing_window = 5;
    Monitor m(cfg);
    for (uint64_t s = 1; s <= 3; ++s) m.observe(vanishing(s));
    ct_step_record skipped = healthy(4);  // no update: says nothing about its size
    skipped.flags |= CT_FLAG_SKIPPED_UPDATE;
    skipped.update_sumsq = 0;
    EXPECT_TRUE(m.observe(skipped).empty());
    EXPECT_TRUE(m.observe(empty_batch(5)).empty());
    EXPECT_TRUE(m.observe(vanishing(6)).empty());
    auto d = m.observe(vanishing(7));  // the 5th vanishing update
    ASSERT_EQ(d.size(), 1u);
    EXPECT_EQ(d[0].step, 7u);
}

TEST(Health, VanishingWindowZeroIsOff) {
    Monitor m(all_off());
    for (uint64_t s = 1; s <= 1000; ++s) m.observe(vanishing(s));
    EXPECT_TRUE(m.said.empty());
}

// ---------------------------------------------------------------- dead layer

// A step whose first layer's gradient is exactly zero (a dead ReLU layer).
ct_step_record dead1(uint64_t step) {
    ct_step_record r = healthy(step);
    r.layer_zero_all = 1u << 0;
    r.layer_grad_sumsq[0] = 0;
    r.flags |= CT_FLAG_ZERO_GRAD;
    return r;
}

TEST(Health, DeadLayerFiresOnceAfterTheWindowAndResetsOnANonZeroStep) {
    ct_health_config cfg = all_off();
    cfg.dead_window = 4;
    Monitor m(cfg, 0.001f);
    for (uint64_t s = 1; s <= 3; ++s) EXPECT_TRUE(m.observe(dead1(s)).empty()) << s;
    EXPECT_TRUE(m.observe(healthy(4)).empty());  // one non-zero gradient: starts over
    for (uint64_t s = 5; s <= 7; ++s) EXPECT_TRUE(m.observe(dead1(s)).empty()) << s;
    auto d = m.observe(dead1(8));
    ASSERT_EQ(d.size(), 1u);
    EXPECT_EQ(d[0].code, "DEAD_LAYER");
    EXPECT_EQ(d[0].severity, "warning");
    EXPECT_EQ(d[0].step, 8u);
    EXPECT_EQ(d[0].layer, "dense1");
    EXPECT_TRUE(has(d[0].message, "layer dense1 has been exactly zero for 4 steps")) << d[0].message;
    EXPECT_TRUE(has(d[0].message, "ReLU")) << d[0].message;
    EXPECT_TRUE(has(d[0].message, "he_uniform")) << d[0].message;
    EXPECT_FALSE(has(d[0].message, "zero from the first step")) << d[0].message;
    for (uint64_t s = 9; s <= 50; ++s) EXPECT_TRUE(m.observe(dead1(s)).empty()) << s;
    EXPECT_EQ(m.of("DEAD_LAYER").size(), 1u);
}

// The runs nothing ends once they are said (a layer that stays dead; NaN
// steps with the nonfinite window off) stop counting at INT_MAX rather than
// wrap to a negative count after 2^31 steps, which the next checkpoint would
// hold and no resume would take.
TEST(Health, RunsThatNothingEndsStopCountingAtIntMax) {
    ct_health_config cfg = all_off();
    cfg.dead_window = 4;
    cfg.on_nan = CT_ON_NAN_SKIP;
    cfg.nonfinite_window = 0;
    Monitor m(cfg, 0.001f);
    for (uint64_t s = 1; s <= 4; ++s) m.observe(dead1(s));
    ASSERT_EQ(m.of("DEAD_LAYER").size(), 1u);
    m.h.dead_run[0] = INT_MAX - 1;  // as after 2^31 - 2 steps of a dead layer
    for (uint64_t s = 5; s <= 7; ++s) EXPECT_TRUE(m.observe(dead1(s)).empty()) << s;
    EXPECT_EQ(m.h.dead_run[0], INT_MAX);

    ct_step_record nan = healthy(8);
    nan.flags |= CT_FLAG_NONFINITE_LOSS | CT_FLAG_SKIPPED_UPDATE;
    m.observe(nan);
    m.h.nonfinite_run = INT_MAX - 1;
    for (uint64_t s = 9; s <= 11; ++s) {
        nan.step = s;
        EXPECT_TRUE(m.observe(nan).empty()) << s;
    }
    EXPECT_EQ(m.h.nonfinite_run, INT_MAX);
    EXPECT_FALSE(m.h.stop);
}

// How the layer died decides the advice: dead from the first step is the
// starting point's fault (weights, inputs), not the learning rate's; dead
// after NaN entered the weights under --on-nan warn is the NaN's.
TEST(Health, DeadLayerAdviceFollowsHowTheLayerDied) {
    ct_health_config cfg = all_off();
    cfg.dead_window = 4;
    {
        Monitor m(cfg, 0.001f);
        for (uint64_t s = 1; s <= 4; ++s) m.observe(dead1(s));
        ASSERT_EQ(m.said.size(), 1u);
        const std::string &msg = m.said[0].message;
        EXPECT_TRUE(has(msg, "zero from the first step")) << msg;
        EXPECT_TRUE(has(msg, "initial weights")) << msg;
        EXPECT_FALSE(has(msg, "Lower the learning rate")) << msg;
    }
    {
        // Empty batches first (a custom source): no step ever had rows the
        // layer learnt from, so it was still dead from the start.
        Monitor m(cfg, 0.001f);
        m.observe(empty_batch(1));
        m.observe(empty_batch(2));
        for (uint64_t s = 3; s <= 6; ++s) m.observe(dead1(s));
        ASSERT_EQ(m.said.size(), 1u);
        const std::string &msg = m.said[0].message;
        EXPECT_EQ(m.said[0].step, 6u);
        EXPECT_TRUE(has(msg, "zero from the first step")) << msg;
        EXPECT_FALSE(has(msg, "Lower the learning rate")) << msg;
    }
    for (ct_nan_policy policy : {CT_ON_NAN_WARN, CT_ON_NAN_SKIP}) {
        cfg.on_nan = policy;
        Monitor m(cfg, 0.001f);
        m.observe(healthy(1));
        ct_step_record nan = healthy(2);
        nan.flags |= CT_FLAG_NONFINITE_GRAD;
        nan.nonfinite_count = 1;
        m.observe(nan);
        for (uint64_t s = 3; s <= 6; ++s) m.observe(dead1(s));
        auto dead = m.of("DEAD_LAYER");
        ASSERT_EQ(dead.size(), 1u);
        // skip kept the NaN out of the weights: the usual advice holds.
        EXPECT_EQ(has(dead[0].message, "--on-nan warn trains on them"), policy == CT_ON_NAN_WARN) << dead[0].message;
        EXPECT_EQ(has(dead[0].message, "Lower the learning rate"), policy == CT_ON_NAN_SKIP) << dead[0].message;
    }
}

TEST(Health, DeadLayerNamesOnlyTheDeepestAllZeroLayer) {
    ct_health_config cfg = all_off();
    cfg.dead_window = 3;
    Monitor m(cfg);
    for (uint64_t s = 1; s <= 20; ++s) {
        ct_step_record r = healthy(s);
        r.layer_zero_all = (1u << 0) | (1u << 1);  // dense2 dead: dense1 gets no gradient either
        r.flags |= CT_FLAG_ZERO_GRAD;
        auto d = m.observe(r);
        if (s == 3) {
            ASSERT_EQ(d.size(), 1u);
            EXPECT_EQ(d[0].layer, "dense2");
            EXPECT_TRUE(has(d[0].message, "layer dense2")) << d[0].message;
        } else {
            EXPECT_TRUE(d.empty()) << s << ": " << d[0].layer;
        }
    }
    auto all = m.of("DEAD_LAYER");
    ASSERT_EQ(all.size(), 1u);
    EXPECT_EQ(all[0].step, 3u);
}

TEST(Health, DeadLayerIgnoresEmptyBatchesAndWindowZeroIsOff) {
    ct_health_config cfg = all_off();
    cfg.dead_window = 3;
    Monitor m(cfg);
    auto dead3 = [](uint64_t s) {
        ct_step_record r = healthy(s);
        r.layer_zero_all = 1u << 2;
        return r;
    };
    m.observe(dead3(1));
    m.observe(dead3(2));
    ct_step_record e = empty_batch(3);
    e.layer_zero_all = 0x7;  // an empty batch says nothing about dead layers
    EXPECT_TRUE(m.observe(e).empty());
    auto d = m.observe(dead3(4));
    ASSERT_EQ(d.size(), 1u);
    EXPECT_EQ(d[0].step, 4u);
    EXPECT_EQ(d[0].layer, "dense3");

    Monitor off(all_off());
    for (uint64_t s = 1; s <= 500; ++s) off.observe(dead3(s));
    EXPECT_TRUE(off.said.empty());
}

// ---------------------------------------------------------------- exploding

// A divergence takes off in the first steps, before a window of 20 norms
// exists: from the third step on, a step is judged against the median of
// the norms so far.
TEST(Health, ExplodeJudgesFromTheThirdStepBeforeTheWindowFills) {
    ct_health_config cfg = all_off();
    cfg.explode_window = 20;
    cfg.explode_factor = 100;
    {
        Monitor m(cfg, 5.0f, "sgd");
        EXPECT_TRUE(m.observe(healthy(1, 1.0, 1.0)).empty());
        EXPECT_TRUE(m.observe(healthy(2, 1.0, 1e4)).empty());  // one norm before it: not judged
        EXPECT_TRUE(m.observe(healthy(3, 1.0, 2.0)).empty());  // median of [1, 1e4]: 1e4
        auto d = m.observe(healthy(4, 1.0, 3.4e5));               // median of [1, 1e4, 2]: 2
        ASSERT_EQ(d.size(), 1u);
        EXPECT_EQ(d[0].code, "EXPLODING_GRADIENTS");
        EXPECT_EQ(d[0].step, 4u);
        EXPECT_TRUE(has(d[0].message, "median of 2 over the previous 3 steps")) << d[0].message;
    }
    {
        cfg.explode_window = 2;  // a window below the minimum: judged once it is full
        Monitor m(cfg);
        EXPECT_TRUE(m.observe(healthy(1, 1.0, 1.0)).empty());
        EXPECT_TRUE(m.observe(healthy(2, 1.0, 1.0)).empty());
        ASSERT_EQ(m.observe(healthy(3, 1.0, 1e3)).size(), 1u);
    }
}

TEST(Health, ExplodeFiresOnceAtTheJumpAndSuggestsClipping) {
    ct_health_config cfg = all_off();
    cfg.explode_window = 20;
    cfg.explode_factor = 100;
    Monitor m(cfg, 0.001f);
    for (uint64_t s = 1; s <= 20; ++s) EXPECT_TRUE(m.observe(healthy(s, 1.0, 2.0)).empty());
    EXPECT_TRUE(m.observe(healthy(21, 1.0, 200.0)).empty());  // exactly 100x: not above
    auto d = m.observe(healthy(22, 1.0, 2000.0));
    ASSERT_EQ(d.size(), 1u);
    EXPECT_EQ(d[0].code, "EXPLODING_GRADIENTS");
    EXPECT_EQ(d[0].severity, "warning");
    EXPECT_EQ(d[0].step, 22u);
    EXPECT_EQ(d[0].layer, "");
    EXPECT_TRUE(has(d[0].message, "jumped to 2e+03")) << d[0].message;
    EXPECT_TRUE(has(d[0].message, "1000 times its median of 2 over the previous 20 steps")) << d[0].message;
    EXPECT_TRUE(has(d[0].message, "--clip-grad-norm")) << d[0].message;
    EXPECT_TRUE(has(d[0].message, "0.001")) << d[0].message;
    for (uint64_t s = 23; s <= 60; ++s) EXPECT_TRUE(m.observe(healthy(s, 1.0, s % 2 ? 2.0 : 1e6)).empty());
    EXPECT_EQ(m.of("EXPLODING_GRADIENTS").size(), 1u);
}

TEST(Health, ExplodeSkipsNonfiniteAndEmptyStepsAndWindowZeroIsOff) {
    ct_health_config cfg = all_off();
    cfg.explode_window = 3;
    Monitor m(cfg);
    m.observe(healthy(1, 1.0, 1.0));
    m.observe(healthy(2, 1.0, 1.0));
    ct_step_record bad = healthy(3, 1.0, 1e6);  // finite part huge, but a NaN: the NaN check speaks
    bad.flags |= CT_FLAG_NONFINITE_GRAD;
    bad.nonfinite_count = 1;
    for (const Said &s : m.observe(bad)) EXPECT_EQ(s.code, "NONFINITE_GRAD");
    EXPECT_TRUE(m.observe(empty_batch(4)).empty());
    EXPECT_EQ(m.h.norms_n, 2);  // neither entered the window
    m.observe(healthy(5, 1.0, 1.0));
    auto d = m.observe(healthy(6, 1.0, 1e6));
    ASSERT_EQ(d.size(), 1u);
    EXPECT_EQ(d[0].step, 6u);

    Monitor off(all_off());
    for (uint64_t s = 1; s <= 100; ++s) off.observe(healthy(s, 1.0, s == 50 ? 1e9 : 1.0));
    EXPECT_TRUE(off.said.empty());
}

// ---------------------------------------------------------------- chance

TEST(Health, ChanceFiresOnBlockMeansNotSingleSteps) {
    ct_health_config cfg = all_off();
    cfg.chance_window = 10;
    Monitor m(cfg, 1e-10f);
    const double ln10 = std::log(10.0);
    // Every single loss is 0.1 away from ln 10 (outside the 2% band of
    // 0.046), but their block mean is ln 10 exactly.
    for (uint64_t s = 1; s <= 9; ++s) EXPECT_TRUE(m.observe(healthy(s, ln10 + (s % 2 ? 0.1 : -0.1))).empty());
    auto d = m.observe(healthy(10, ln10 - 0.1));
    ASSERT_EQ(d.size(), 1u);
    EXPECT_EQ(d[0].code, "LOSS_AT_CHANCE");
    EXPECT_EQ(d[0].severity, "warning");
    EXPECT_EQ(d[0].step, 10u);
    EXPECT_EQ(d[0].layer, "");
    EXPECT_TRUE(has(d[0].message, "for 10 steps")) << d[0].message;
    EXPECT_TRUE(has(d[0].message, "chance 2.3026, ln 10")) << d[0].message;
    EXPECT_TRUE(has(d[0].message, "mean 2.3026")) << d[0].message;
    EXPECT_TRUE(has(d[0].message, "1e-10")) << d[0].message;
    for (uint64_t s = 11; s <= 100; ++s) EXPECT_TRUE(m.observe(healthy(s, ln10)).empty());
    EXPECT_EQ(m.of("LOSS_AT_CHANCE").size(), 1u);
}

TEST(Health, ChanceJudgesWholeBlocksNotASlidingWindow) {
    ct_health_config cfg = all_off();
    cfg.chance_window = 10;
    Monitor m(cfg);
    const double ln10 = std::log(10.0);
    // Steps 1-5 learning (loss 1.0), then at chance from step 6. A sliding
    // window would be at chance at step 15; the block of steps 1-10 is not,
    // so the first block that is ends at step 20.
    for (uint64_t s = 1; s <= 5; ++s) m.observe(healthy(s, 1.0));
    for (uint64_t s = 6; s <= 19; ++s) EXPECT_TRUE(m.observe(healthy(s, ln10)).empty()) << s;
    auto d = m.observe(healthy(20, ln10));
    ASSERT_EQ(d.size(), 1u);
    EXPECT_EQ(d[0].code, "LOSS_AT_CHANCE");
    EXPECT_EQ(d[0].step, 20u);
}

TEST(Health, ChanceUsesTheToleranceAndTheClassCount) {
    ct_health_config cfg = all_off();
    cfg.chance_window = 4;
    cfg.chance_tolerance = 0.02;
    const double ln10 = std::log(10.0);
    {
        Monitor m(cfg);  // 3% below ln 10: learning something
        for (uint64_t s = 1; s <= 40; ++s) m.observe(healthy(s, ln10 * 0.97));
        EXPECT_TRUE(m.said.empty());
    }
    {
        Monitor m(cfg);  // 1% below: at chance
        for (uint64_t s = 1; s <= 4; ++s) m.observe(healthy(s, ln10 * 0.99));
        ASSERT_EQ(m.of("LOSS_AT_CHANCE").size(), 1u);
        EXPECT_EQ(m.said[0].step, 4u);
    }
    {
        Monitor m(cfg, 0.001f, "adam", 2);  // two classes: chance is ln 2
        for (uint64_t s = 1; s <= 4; ++s) m.observe(healthy(s, std::log(2.0)));
        ASSERT_EQ(m.said.size(), 1u);
        EXPECT_TRUE(has(m.said[0].message, "chance 0.6931, ln 2")) << m.said[0].message;
    }
}

// A block near chance whose loss falls across it is a model that learns,
// slowly: the message says so (and, under a small rate, to raise it)
// instead of "no better than a guess". A flat block is at chance as before.
TEST(Health, ChanceOnAFallingBlockSaysTheModelLearnsSlowly) {
    ct_health_config cfg = all_off();
    cfg.chance_window = 4;  // halves of 2; ln 10 = 2.3026, tolerance 2%
    const double falling[] = {2.40, 2.38, 2.30, 2.28}, flat[] = {2.31, 2.30, 2.31, 2.30};
    {
        Monitor m(cfg, 1e-4f, "sgd");
        for (uint64_t s = 1; s <= 4; ++s) m.observe(healthy(s, falling[s - 1]));
        auto d = m.of("LOSS_AT_CHANCE");
        ASSERT_EQ(d.size(), 1u);
        EXPECT_EQ(d[0].step, 4u);
        const std::string &msg = d[0].message;
        EXPECT_TRUE(has(msg, "near chance level for 4 steps (mean 2.3400")) << msg;
        EXPECT_TRUE(has(msg, "falling (from a mean of 2.3900 over the first half of them to 2.2900")) << msg;
        EXPECT_TRUE(has(msg, "learns, but slowly")) << msg;
        EXPECT_TRUE(has(msg, "the learning rate (now 0.0001) is too small for sgd: try --lr 0.01")) << msg;
        EXPECT_FALSE(has(msg, "no better than a guess")) << msg;
    }
    {
        Monitor m(cfg, 0.01f, "sgd");
        for (uint64_t s = 1; s <= 4; ++s) m.observe(healthy(s, falling[s - 1]));
        ASSERT_EQ(m.said.size(), 1u);
        EXPECT_TRUE(has(m.said[0].message, "learning rate (now 0.01) is usual for sgd")) << m.said[0].message;
    }
    {
        Monitor m(cfg, 1e-4f, "sgd");
        for (uint64_t s = 1; s <= 4; ++s) m.observe(healthy(s, flat[s - 1]));
        ASSERT_EQ(m.said.size(), 1u);
        EXPECT_TRUE(has(m.said[0].message, "no better than a guess")) << m.said[0].message;
        EXPECT_FALSE(has(m.said[0].message, "falling")) << m.said[0].message;
    }
}

// Above chance is no better than at it (a run stuck at 2.35 against ln 10 =
// 2.30 was silent when only a band around chance counted); far above it,
// the message says the model is confidently wrong.
TEST(Health, ALossAboveChanceCountsAndFarAboveSaysConfidentlyWrong) {
    ct_health_config cfg = all_off();
    cfg.chance_window = 4;
    const double ln10 = std::log(10.0);
    {
        Monitor m(cfg);
        for (uint64_t s = 1; s <= 4; ++s) m.observe(healthy(s, 2.354));
        ASSERT_EQ(m.of("LOSS_AT_CHANCE").size(), 1u);
        EXPECT_TRUE(has(m.said[0].message, "stayed at chance level")) << m.said[0].message;
    }
    {
        Monitor m(cfg);
        for (uint64_t s = 1; s <= 4; ++s) m.observe(healthy(s, 1.7e5));
        ASSERT_EQ(m.of("LOSS_AT_CHANCE").size(), 1u);
        EXPECT_TRUE(has(m.said[0].message, "far above chance level")) << m.said[0].message;
        EXPECT_TRUE(has(m.said[0].message, "confidently wrong")) << m.said[0].message;
    }
    {
        Monitor m(cfg);  // a block just under 2x chance is plain "at chance"
        for (uint64_t s = 1; s <= 4; ++s) m.observe(healthy(s, 1.99 * ln10));
        ASSERT_EQ(m.said.size(), 1u);
        EXPECT_FALSE(has(m.said[0].message, "far above")) << m.said[0].message;
    }
}

// When an optimizer setting makes divergence likely, the divergence
// diagnoses name it instead of their generic advice, whole (not cut off).
TEST(Health, DivergenceAdviceNamesTheOptimizerSettingWhenOneIsTheLikelyCause) {
    ct_health_config cfg = all_off();
    cfg.chance_window = 4;
    cfg.explode_window = 20;
    cfg.dead_window = 3;
    ct_optim_config adam = ct_optim_defaults(CT_OPT_ADAM);
    adam.beta2 = 0.5f;
    ct_optim_config sgd = ct_optim_defaults(CT_OPT_SGD);
    sgd.lr = 0.01f;
    sgd.momentum = 0.999f;
    const struct {
        const ct_optim_config *optim;
        const char *advice;
    } cases[] = {{&adam, "With beta2 0.5, not above beta1^2 (0.81), adam's step m/sqrt(v) has no bound"},
                 {&sgd, "Momentum 0.999 turns sgd's lr 0.01 into steps of lr/(1-momentum) = 10"}};
    for (const auto &c : cases) {
        ct_health_config nan_cfg = cfg;
        nan_cfg.on_nan = CT_ON_NAN_SKIP;  // (under warn, a dead layer blames the NaN)
        Monitor m(nan_cfg, c.optim->lr, ct_optim_kind_name(c.optim->kind));
        ct_health_set_optimizer(&m.h, c.optim);
        for (uint64_t s = 1; s <= 4; ++s) m.observe(healthy(s, 1e3, 2.0));
        m.observe(healthy(5, 1.0, 2e4));
        ct_step_record nan_step = healthy(6);
        nan_step.flags |= CT_FLAG_NONFINITE_GRAD;
        nan_step.nonfinite_count = 1;
        m.observe(nan_step);
        // dense3 learnt for a while, then died: the "lower the rate" branch
        for (uint64_t s = 7; s <= 9; ++s) {
            ct_step_record r = healthy(s);
            r.layer_zero_all = 1u << 2;
            m.observe(r);
        }
        const char *codes[] = {"LOSS_AT_CHANCE", "EXPLODING_GRADIENTS", "NONFINITE_GRAD", "DEAD_LAYER"};
        for (const char *code : codes) {
            auto d = m.of(code);
            ASSERT_EQ(d.size(), 1u) << code;
            const std::string &msg = d[0].message;
            EXPECT_TRUE(has(msg, c.advice)) << msg;
            EXPECT_FALSE(has(msg, "Typically the learning rate")) << msg;
            EXPECT_LT(msg.size(), sizeof(ct_diagnosis{}.message) - 1) << msg;  // room left: nothing cut
            EXPECT_TRUE(msg.back() == '.') << msg;
        }
        EXPECT_TRUE(has(m.of("EXPLODING_GRADIENTS")[0].message, "Or add --clip-grad-norm 20.")) << m.said[1].message;
        EXPECT_TRUE(has(m.of("NONFINITE_GRAD")[0].message, "Check the input data for NaN/Inf too.")) << m.said[2].message;
    }
    // Ordinary settings: the generic advice, and near-miss betas count as ordinary.
    ct_optim_config fine[] = {ct_optim_defaults(CT_OPT_ADAM), ct_optim_defaults(CT_OPT_SGD), adam};
    fine[2].beta1 = 0.7f;  // 0.49 < 0.5
    for (const ct_optim_config &o : fine) {
        Monitor m(cfg, o.lr, ct_optim_kind_name(o.kind));
        ct_health_set_optimizer(&m.h, &o);
        EXPECT_STREQ(m.h.optim_advice, "");
        for (uint64_t s = 1; s <= 4; ++s) m.observe(healthy(s, 1e3));
        ASSERT_EQ(m.of("LOSS_AT_CHANCE").size(), 1u);
        EXPECT_TRUE(has(m.said[0].message, "Typically the learning rate")) << m.said[0].message;
    }
}

// The trainer sets chance from the labels (their entropy) or turns the
// check off (MSE): the check uses what it is given.
TEST(Health, ChanceIsTheLevelTheTrainerSetAndZeroTurnsItOff) {
    ct_health_config cfg = all_off();
    cfg.chance_window = 4;
    {
        Monitor m(cfg);
        m.h.chance_loss = std::log(3.0);
        snprintf(m.h.chance_what, sizeof m.h.chance_what, "three classes");
        for (uint64_t s = 1; s <= 4; ++s) m.observe(healthy(s, 1.16));
        ASSERT_EQ(m.said.size(), 1u);
        EXPECT_TRUE(has(m.said[0].message, "chance 1.0986, three classes")) << m.said[0].message;
    }
    {
        Monitor m(cfg);
        m.h.chance_loss = 0;
        for (uint64_t s = 1; s <= 40; ++s) m.observe(healthy(s, 5.0));
        EXPECT_TRUE(m.said.empty());
    }
}

TEST(Health, ChanceSkipsEmptyBatchesRestartsOnNonFiniteAndWindowZeroIsOff) {
    ct_health_config cfg = all_off();
    cfg.chance_window = 4;
    const double ln10 = std::log(10.0);
    Monitor m(cfg);
    m.observe(healthy(1, ln10));
    m.observe(empty_batch(2));  // no loss at all: not part of a block
    m.observe(healthy(3, ln10));
    ct_step_record bad = healthy(4, ln10);
    bad.loss_sum = NAN;
    bad.flags |= CT_FLAG_NONFINITE_LOSS;
    m.observe(bad);  // the block starts over (the NaN check speaks for it)
    EXPECT_TRUE(m.of("LOSS_AT_CHANCE").empty());
    for (uint64_t s = 5; s <= 7; ++s) m.observe(healthy(s, ln10));
    EXPECT_TRUE(m.of("LOSS_AT_CHANCE").empty());
    m.observe(healthy(8, ln10));
    auto c = m.of("LOSS_AT_CHANCE");
    ASSERT_EQ(c.size(), 1u);
    EXPECT_EQ(c[0].step, 8u);

    Monitor off(all_off());
    for (uint64_t s = 1; s <= 1000; ++s) off.observe(healthy(s, ln10));
    EXPECT_TRUE(off.said.empty());
}

// ---------------------------------------------------------------- several at once

TEST(Health, SeveralChecksCanSpeakAtTheSameStep) {
    ct_health_config cfg = ct_health_defaults();
    cfg.vanishing_window = 3;
    cfg.chance_window = 3;
    cfg.dead_window = 3;
    cfg.explode_window = 0;
    Monitor m(cfg, 1e-10f);
    for (uint64_t s = 1; s <= 3; ++s) {
        ct_step_record r = vanishing(s);
        r.loss_sum = std::log(10.0) * r.batch_size;
        r.layer_zero_all = 1u << 0;
        m.observe(r);
    }
    ASSERT_EQ(m.said.size(), 3u);
    EXPECT_EQ(m.said[0].code, "VANISHING_UPDATES");
    EXPECT_EQ(m.said[1].code, "DEAD_LAYER");
    EXPECT_EQ(m.said[2].code, "LOSS_AT_CHANCE");
    for (const Said &s : m.said) EXPECT_EQ(s.step, 3u) << s.code;
}

// ---------------------------------------------------------------- model check

ct_model_spec two_layer(ct_activation out_act, ct_loss_kind loss) {
    return ct_test::synthetic_spec("m", out_act, loss);
}

TEST(Health, ModelCheckMseOnSoftmaxSuggestsCrossEntropy) {
    ct_model_spec s = two_layer(CT_ACT_SOFTMAX, CT_LOSS_MSE);
    ct_diagnosis d[4];
    ASSERT_EQ(ct_health_check_model(&s, d, 4), 1);
    EXPECT_STREQ(d[0].code, "LOSS_OUTPUT_MISMATCH");
    EXPECT_STREQ(d[0].severity, "warning");
    EXPECT_EQ(d[0].step, 0u);
    EXPECT_EQ(d[0].epoch, 0u);
    EXPECT_STREQ(d[0].layer, "dense2");
    std::string msg = d[0].message;
    EXPECT_TRUE(has(msg, "mean_squared_error on the softmax output of dense2")) << msg;
    EXPECT_TRUE(has(msg, "--loss categorical_crossentropy")) << msg;
}

TEST(Health, ModelCheckCrossEntropyOnSquashedOutputSuggestsSoftmax) {
    const struct {
        ct_activation act;
        const char *name;
    } cases[] = {{CT_ACT_SIGMOID, "sigmoid"}, {CT_ACT_TANH, "tanh"}, {CT_ACT_RELU, "relu"}};
    for (const auto &c : cases) {
        ct_model_spec s = two_layer(c.act, CT_LOSS_XENT);
        snprintf(s.layers[1].name, sizeof s.layers[1].name, "out");
        ct_diagnosis d[4];
        ASSERT_EQ(ct_health_check_model(&s, d, 4), 1) << c.name;
        EXPECT_STREQ(d[0].code, "LOSS_OUTPUT_MISMATCH");
        EXPECT_STREQ(d[0].severity, "warning");
        EXPECT_EQ(d[0].step, 0u);
        EXPECT_STREQ(d[0].layer, "out");
        std::string msg = d[0].message;
        EXPECT_TRUE(has(msg, "output layer out uses " + std::string(c.name))) << msg;
        EXPECT_TRUE(has(msg, "activation=softmax")) << msg;
    }
}

TEST(Health, ModelCheckIsQuietOnFittingPairsAndRespectsMax) {
    const struct {
        ct_activation act;
        ct_loss_kind loss;
    } fine[] = {{CT_ACT_SOFTMAX, CT_LOSS_XENT},
                {CT_ACT_LINEAR, CT_LOSS_XENT},
                {CT_ACT_LINEAR, CT_LOSS_MSE},
                {CT_ACT_SIGMOID, CT_LOSS_MSE}};
    for (const auto &c : fine) {
        ct_model_spec s = two_layer(c.act, c.loss);
        ct_diagnosis d[4];
        EXPECT_EQ(ct_health_check_model(&s, d, 4), 0) << ct_activation_name(c.act) << " " << ct_loss_name(c.loss);
    }
    ct_model_spec s = two_layer(CT_ACT_SOFTMAX, CT_LOSS_MSE);
    ct_diagnosis d[1];
    EXPECT_EQ(ct_health_check_model(&s, d, 0), 0);
    // The presets fit, and their optimizers are ordinary.
    for (const char *preset : {"seed", "mlp", "cnn"}) {
        ct_model_spec p;
        ct_diagnosis all[4];
        ASSERT_EQ(ct_model_spec_preset(preset, &p), 0) << preset;
        EXPECT_EQ(ct_health_check_model(&p, all, 4), 0) << preset;
    }
}

ct_model_spec with_optimizer(ct_optimizer_kind kind, float lr, float momentum) {
    ct_model_spec s = two_layer(CT_ACT_SOFTMAX, CT_LOSS_XENT);
    s.optim = ct_optim_defaults(kind);
    s.optim.lr = lr;
    s.optim.momentum = momentum;
    return s;
}

TEST(Health, ModelCheckWarnsOfMomentumThatMultipliesTheRateFarPastAnOrdinaryOne) {
    ct_model_spec s = with_optimizer(CT_OPT_SGD, 0.01f, 0.999f);
    ct_diagnosis d[4];
    ASSERT_EQ(ct_health_check_model(&s, d, 4), 1);
    EXPECT_STREQ(d[0].code, "MOMENTUM_TOO_LARGE");
    EXPECT_STREQ(d[0].severity, "warning");
    EXPECT_EQ(d[0].step, 0u);
    EXPECT_STREQ(d[0].layer, "");
    std::string msg = d[0].message;
    EXPECT_TRUE(has(msg, "Momentum 0.999 turns sgd's lr 0.01 into steps of lr/(1-momentum) = 10,")) << msg;
    EXPECT_TRUE(has(msg, "largest ordinary rate for sgd (1)")) << msg;
    EXPECT_TRUE(has(msg, "lower the momentum to 0.9 or the learning rate to 0.001.")) << msg;

    s = with_optimizer(CT_OPT_RMSPROP, 0.01f, 0.99f);  // RMSprop's steps are normalised: 0.1 is large
    ASSERT_EQ(ct_health_check_model(&s, d, 4), 1);
    EXPECT_TRUE(has(d[0].message, "largest ordinary rate for rmsprop (0.1)")) << d[0].message;
    s = with_optimizer(CT_OPT_SGD, 0.21f, 0.9f);  // 2.1: just past twice the ceiling
    EXPECT_EQ(ct_health_check_model(&s, d, 4), 1);

    // The classic recipes come to an effective rate of 1 or less; a large
    // rate without momentum is the runtime checks' business, and Adam's
    // beta1 is an average, not a momentum that adds up.
    const struct {
        ct_optimizer_kind kind;
        float lr, momentum;
    } quiet[] = {{CT_OPT_SGD, 0.1f, 0.9f},      {CT_OPT_SGD, 0.01f, 0.99f}, {CT_OPT_SGD, 0.2f, 0.9f},
                 {CT_OPT_SGD, 1.5f, 0.0f},      {CT_OPT_RMSPROP, 0.001f, 0.9f}, {CT_OPT_ADAM, 0.01f, 0.999f},
                 {CT_OPT_ADAMW, 0.01f, 0.999f}};
    for (const auto &c : quiet) {
        s = with_optimizer(c.kind, c.lr, c.momentum);
        EXPECT_EQ(ct_health_check_model(&s, d, 4), 0) << ct_optim_kind_name(c.kind) << " " << c.lr << " " << c.momentum;
    }
    // Both warnings, within max.
    s = with_optimizer(CT_OPT_SGD, 0.01f, 0.999f);
    s.loss = CT_LOSS_MSE;
    ASSERT_EQ(ct_health_check_model(&s, d, 4), 2);
    EXPECT_STREQ(d[0].code, "LOSS_OUTPUT_MISMATCH");
    EXPECT_STREQ(d[1].code, "MOMENTUM_TOO_LARGE");
    EXPECT_EQ(ct_health_check_model(&s, d, 1), 1);
    EXPECT_STREQ(d[0].code, "LOSS_OUTPUT_MISMATCH");
}

// ---------------------------------------------------------------- data content

struct OwnedDataset {
    ct_dataset ds;
    OwnedDataset(size_t n, size_t elems, ct_elem_type type) {
        memset(&ds, 0, sizeof ds);
        ds.elem_type = type;
        ds.count = n;
        ds.sample_elems = elems;
        size_t bytes = n * elems * (type == CT_ELEM_U8 ? 1 : sizeof(float));
        ds.images = calloc(bytes ? bytes : 1, 1);
        ds.labels = (uint8_t *)calloc(n ? n : 1, 1);
        snprintf(ds.images_path, sizeof ds.images_path, "/data/x-images-idx3-ubyte");
        snprintf(ds.labels_path, sizeof ds.labels_path, "/data/x-labels-idx1-ubyte");
        // Varied images and labels: nothing to say.
        for (size_t i = 0; i < n; ++i) {
            ds.labels[i] = (uint8_t)(i % 10);
            for (size_t j = 0; j < elems; ++j) set(i, j, (float)((i + j) % 7));
        }
        ds.max_label = n ? (n < 10 ? (int)n - 1 : 9) : -1;
    }
    ~OwnedDataset() { ct_dataset_free(&ds); }
    void set(size_t i, size_t j, float v) {
        if (ds.elem_type == CT_ELEM_U8)
            ((uint8_t *)ds.images)[i * ds.sample_elems + j] = (uint8_t)v;
        else
            ((float *)ds.images)[i * ds.sample_elems + j] = v;
    }
    void make_constant(size_t i, float v) {
        for (size_t j = 0; j < ds.sample_elems; ++j) set(i, j, v);
    }
};

TEST(Health, DataContentVariedDataSaysNothing) {
    for (ct_elem_type t : {CT_ELEM_U8, CT_ELEM_F32}) {
        OwnedDataset d(50, 64, t);
        ct_diagnosis out[4];
        EXPECT_EQ(ct_dataset_check_content(&d.ds, 0, out, 4), 0);
    }
    OwnedDataset empty(0, 64, CT_ELEM_U8);
    ct_diagnosis out[4];
    EXPECT_EQ(ct_dataset_check_content(&empty.ds, 0, out, 4), 0);
}

// The level LOSS_AT_CHANCE judges against: ln k for k balanced classes,
// less for unbalanced ones, 0 for one class or none.
TEST(Health, LabelEntropyIsTheLossOfGuessingTheClassFrequencies) {
    OwnedDataset ten(50, 4, CT_ELEM_U8);  // labels 0..9, five each
    EXPECT_NEAR(ct_dataset_label_entropy(&ten.ds), std::log(10.0), 1e-12);
    OwnedDataset three(30, 4, CT_ELEM_U8);
    for (size_t i = 0; i < 30; ++i) three.ds.labels[i] = (uint8_t)(3 + i % 3);
    EXPECT_NEAR(ct_dataset_label_entropy(&three.ds), std::log(3.0), 1e-12);
    OwnedDataset skewed(4, 4, CT_ELEM_U8);  // 3 of class 0, 1 of class 7
    skewed.ds.labels[0] = skewed.ds.labels[1] = skewed.ds.labels[2] = 0;
    skewed.ds.labels[3] = 7;
    EXPECT_NEAR(ct_dataset_label_entropy(&skewed.ds), -(0.75 * std::log(0.75) + 0.25 * std::log(0.25)), 1e-12);
    OwnedDataset one(20, 4, CT_ELEM_U8);
    for (size_t i = 0; i < 20; ++i) one.ds.labels[i] = 4;
    EXPECT_EQ(ct_dataset_label_entropy(&one.ds), 0.0);
    EXPECT_FALSE(std::signbit(ct_dataset_label_entropy(&one.ds)));
    OwnedDataset none(0, 4, CT_ELEM_U8);
    EXPECT_EQ(ct_dataset_label_entropy(&none.ds), 0.0);
}

TEST(Health, DataContentLabelsOfOneClass) {
    OwnedDataset d(40, 64, CT_ELEM_U8);
    memset(d.ds.labels, 7, 40);
    d.ds.max_label = 7;
    ct_diagnosis out[4];
    ASSERT_EQ(ct_dataset_check_content(&d.ds, 0, out, 4), 1);
    EXPECT_STREQ(out[0].code, "LABELS_SINGLE_CLASS");
    EXPECT_STREQ(out[0].severity, "warning");
    EXPECT_EQ(out[0].step, 0u);
    std::string msg = out[0].message;
    EXPECT_EQ(msg.rfind("/data/x-labels-idx1-ubyte: ", 0), 0u) << msg;
    EXPECT_TRUE(has(msg, "all 40 labels are 7")) << msg;
    EXPECT_TRUE(has(msg, "cannot learn from a single class")) << msg;

    // The test split: nothing stops learning, but its accuracy means little.
    ASSERT_EQ(ct_dataset_check_content(&d.ds, 1, out, 4), 1);
    msg = out[0].message;
    EXPECT_STREQ(out[0].code, "LABELS_SINGLE_CLASS");
    EXPECT_TRUE(has(msg, "all 40 test labels are 7: the test accuracy will only say how often the model predicts 7"))
        << msg;
    EXPECT_FALSE(has(msg, "cannot learn")) << msg;

    // One differing label anywhere (even the last) is enough.
    d.ds.labels[39] = 2;
    EXPECT_EQ(ct_dataset_check_content(&d.ds, 0, out, 4), 0);
    // A single item is not "one class".
    OwnedDataset one(1, 64, CT_ELEM_U8);
    EXPECT_EQ(ct_dataset_check_content(&one.ds, 0, out, 4), 0);
}

TEST(Health, DataContentConstantImagesNameTheFirstIndex) {
    for (ct_elem_type t : {CT_ELEM_U8, CT_ELEM_F32}) {
        OwnedDataset d(30, 64, t);
        d.make_constant(12, 0);
        d.make_constant(4, 3);
        d.make_constant(25, 5);
        ct_diagnosis out[4];
        ASSERT_EQ(ct_dataset_check_content(&d.ds, 0, out, 4), 1) << (int)t;
        EXPECT_STREQ(out[0].code, "CONSTANT_IMAGES");
        EXPECT_STREQ(out[0].severity, "warning");
        EXPECT_EQ(out[0].step, 0u);
        std::string msg = out[0].message;
        EXPECT_EQ(msg.rfind("/data/x-images-idx3-ubyte: ", 0), 0u) << msg;
        EXPECT_TRUE(has(msg, "3 of 30 images are constant")) << msg;
        EXPECT_TRUE(has(msg, "the first at index 4")) << msg;
    }
    // The first item counts too.
    OwnedDataset d(5, 64, CT_ELEM_U8);
    d.make_constant(0, 0);
    ct_diagnosis out[4];
    ASSERT_EQ(ct_dataset_check_content(&d.ds, 0, out, 4), 1);
    EXPECT_TRUE(has(out[0].message, "1 of 5 images are constant")) << out[0].message;
    EXPECT_TRUE(has(out[0].message, "the first at index 0")) << out[0].message;
    // An image of one value is not "constant".
    OwnedDataset scalar(5, 1, CT_ELEM_U8);
    EXPECT_EQ(ct_dataset_check_content(&scalar.ds, 0, out, 4), 0);
}

TEST(Health, DataContentBothWarningsAndMax) {
    OwnedDataset d(20, 64, CT_ELEM_U8);
    memset(d.ds.labels, 1, 20);
    d.make_constant(9, 0);
    ct_diagnosis out[4];
    ASSERT_EQ(ct_dataset_check_content(&d.ds, 0, out, 4), 2);
    EXPECT_STREQ(out[0].code, "LABELS_SINGLE_CLASS");
    EXPECT_STREQ(out[1].code, "CONSTANT_IMAGES");
    EXPECT_TRUE(has(out[1].message, "the first at index 9")) << out[1].message;
    ASSERT_EQ(ct_dataset_check_content(&d.ds, 0, out, 1), 1);
    EXPECT_STREQ(out[0].code, "LABELS_SINGLE_CLASS");
    EXPECT_EQ(ct_dataset_check_content(&d.ds, 0, out, 0), 0);
}

}  // namespace
