// Every diagnosis of docs/troubleshooting.md end to end: the situation is
// built for real (a data file, a flag, a model, a custom data source) and
// the run's JSONL is checked for the exact code, step, layer and message.
// Small synthetic 8x8 data and a 64-16-10 model: each run is a few hundred
// steps at most.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "support/diagnostics.h"
#include "support/fixtures.h"

using namespace ct_test;

namespace {

const char *kModel = "input 64\ndense 16 relu\ndense 10 softmax\noptimizer adam lr=0.01\nbatch_size 32\n";

class Diagnoses : public ::testing::Test {
  protected:
    void SetUp() override {
        write_synthetic_mnist(dir.path(), 200, 50);  // 7 steps per epoch at batch 32
        write_text(model(), kModel);
    }
    std::string model() const { return dir.file("model.txt"); }
    std::string base() const { return train_cmd(model()); }
    std::string train_cmd(const std::string &model_file) const {
        return "train --quiet --device cpu --model " + model_file + " --data " + dir.path();
    }
    // Writes a model file beside the data and returns the command that trains it.
    std::string with_model(const std::string &name, const std::string &text) const {
        write_text(dir.file(name), text);
        return train_cmd(dir.file(name));
    }
    std::string train_images() const { return dir.file("train-images-idx3-ubyte"); }
    std::string train_labels() const { return dir.file("train-labels-idx1-ubyte"); }
    TempDir dir;
};

// The one diagnosis of a log, a warning said when the model was built
// (step 0) with this code and layer; its message ("" when there is not one).
std::string only_build_warning(const std::string &log, const char *code, const char *layer) {
    auto d = diagnoses(log);
    EXPECT_EQ(d.size(), 1u) << all_codes(log);
    if (d.size() != 1) return "";
    EXPECT_EQ(d[0].code, code);
    EXPECT_EQ(d[0].severity, "warning");
    EXPECT_EQ(d[0].step, 0.0);
    EXPECT_EQ(d[0].layer, layer);
    return d[0].message;
}

// ====================================================================== 1. empty data

TEST_F(Diagnoses, ZeroItemTrainSetFailsBeforeTrainingNamingTheFileAndCount) {
    // (The zero-item test set and --drop-last cases are in test_cli.cpp.)
    write_idx_u8(train_images(), {0, 8, 8}, {});
    write_idx_u8(train_labels(), {0}, {});
    std::string log = dir.file("never.jsonl");
    RunResult r = run_cutrain(base() + " --log-jsonl " + log);
    EXPECT_EQ(r.exit_code, CT_EXIT_BAD_INPUT) << r.out;
    EXPECT_TRUE(has(r.out, train_images() + ": the train set has 0 items")) << r.out;
    EXPECT_TRUE(has(r.out, "nothing to train on")) << r.out;
    EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 1) << r.out;
    EXPECT_FALSE(file_exists(log));
}


TEST_F(Diagnoses, EmptyBatchesFromASourceAreSkippedFlaggedAndCounted) {
    Net net(model());
    Source src(10);
    src.empty = {2, 7};  // steps 3 and 8 of epoch 1, 13 and 18 of epoch 2
    ct_data_source ds = src.source("gappy-loader");
    Outcome o = train_api(net, nullptr, &ds, net.options(2), dir.file("gappy.jsonl"));
    ASSERT_EQ(o.code, CT_EXIT_OK) << o.err;
    auto steps = jsonl_of_type(o.jsonl, "step");
    ASSERT_EQ(steps.size(), 20u);
    for (size_t i = 0; i < steps.size(); ++i) {
        int step = (int)json_number(steps[i], "step");
        EXPECT_EQ(step, (int)i + 1);
        bool empty = step == 3 || step == 8 || step == 13 || step == 18;
        EXPECT_EQ(has_flag(steps[i], "EMPTY_BATCH"), empty) << steps[i];
        EXPECT_EQ(has_flag(steps[i], "SKIPPED_UPDATE"), empty) << steps[i];
        if (empty) {
            EXPECT_EQ(json_number(steps[i], "batch_size"), 0.0) << steps[i];
            EXPECT_TRUE(std::isnan(json_number(steps[i], "loss"))) << steps[i];  // null: no mean of no rows
            EXPECT_EQ(json_number(steps[i], "update_ratio"), 0.0) << steps[i];
            EXPECT_FALSE(has_flag(steps[i], "ZERO_GRAD")) << steps[i];  // not a dead layer
        }
    }
    auto epochs = jsonl_of_type(o.jsonl, "epoch");
    ASSERT_EQ(epochs.size(), 2u);
    for (const std::string &e : epochs) {
        EXPECT_EQ(json_number(e, "empty_batches"), 2.0) << e;
        EXPECT_EQ(json_number(e, "skipped_steps"), 2.0) << e;
        EXPECT_EQ(json_number(e, "samples"), 8.0 * 32) << e;
        EXPECT_TRUE(std::isfinite(json_number(e, "test_acc"))) << e;
    }
    EXPECT_TRUE(with_code(o.jsonl, "EMPTY_DATA").empty()) << all_codes(o.jsonl);
    EXPECT_STREQ(o.sum.status, "completed");
    EXPECT_EQ(o.sum.steps, 20u);
}

TEST_F(Diagnoses, AllEmptyEpochStopsWithEmptyDataNamingTheSource) {
    Net net(model());
    std::vector<float> before = net.params();
    Source src(8);
    src.all_empty = true;
    ct_data_source ds = src.source("my-loader");
    Outcome o = train_api(net, nullptr, &ds, net.options(3), dir.file("empty.jsonl"));
    ASSERT_EQ(o.code, CT_EXIT_HEALTH_STOP) << o.err;
    EXPECT_EQ(src.calls, 8u);  // one epoch only

    auto d = diagnoses(o.jsonl);
    ASSERT_EQ(d.size(), 1u) << all_codes(o.jsonl);
    EXPECT_EQ(d[0].code, "EMPTY_DATA");
    EXPECT_EQ(d[0].severity, "error");
    EXPECT_EQ(d[0].step, 8.0);
    EXPECT_EQ(d[0].epoch, 1.0);
    EXPECT_EQ(d[0].layer, "");
    EXPECT_TRUE(has(d[0].message, "epoch 1: all 8 batches from the data source my-loader were empty")) << d[0].message;
    EXPECT_TRUE(has(d[0].message, "nothing was trained")) << d[0].message;

    auto steps = jsonl_of_type(o.jsonl, "step");
    ASSERT_EQ(steps.size(), 8u);
    for (const std::string &s : steps) {
        EXPECT_TRUE(has_flag(s, "EMPTY_BATCH")) << s;
        EXPECT_TRUE(has_flag(s, "SKIPPED_UPDATE")) << s;
    }
    auto epochs = jsonl_of_type(o.jsonl, "epoch");
    ASSERT_EQ(epochs.size(), 1u);
    EXPECT_EQ(json_number(epochs[0], "empty_batches"), 8.0);
    EXPECT_EQ(json_number(epochs[0], "skipped_steps"), 8.0);
    EXPECT_EQ(json_number(epochs[0], "samples"), 0.0);
    EXPECT_TRUE(std::isnan(json_number(epochs[0], "test_acc")));  // a stopped run is not evaluated
    auto sum = jsonl_of_type(o.jsonl, "summary");
    ASSERT_EQ(sum.size(), 1u);
    EXPECT_EQ(json_string(sum[0], "status"), "stopped");
    EXPECT_EQ(json_number(sum[0], "exit_code"), (double)CT_EXIT_HEALTH_STOP);
    EXPECT_EQ(json_number(sum[0], "steps"), 8.0);
    EXPECT_STREQ(o.sum.status, "stopped");
    EXPECT_EQ(net.params(), before);  // nothing was trained
}

TEST_F(Diagnoses, SourceThatRunsDryInALaterEpochStopsThere) {
    Net net(model());
    Source src(8);
    src.empty_from_epoch = 2;
    ct_data_source ds = src.source("dry-loader");
    Outcome o = train_api(net, nullptr, &ds, net.options(4), dir.file("dry.jsonl"));
    ASSERT_EQ(o.code, CT_EXIT_HEALTH_STOP) << o.err;
    auto d = diagnoses(o.jsonl);
    ASSERT_EQ(d.size(), 1u) << all_codes(o.jsonl);
    EXPECT_EQ(d[0].code, "EMPTY_DATA");
    EXPECT_EQ(d[0].step, 16.0);
    EXPECT_EQ(d[0].epoch, 2.0);
    EXPECT_TRUE(has(d[0].message, "epoch 2: all 8 batches from the data source dry-loader were empty")) << d[0].message;
    auto epochs = jsonl_of_type(o.jsonl, "epoch");
    ASSERT_EQ(epochs.size(), 2u);
    EXPECT_EQ(json_number(epochs[0], "empty_batches"), 0.0);
    EXPECT_TRUE(std::isfinite(json_number(epochs[0], "test_acc")));
    EXPECT_EQ(json_number(epochs[1], "empty_batches"), 8.0);
    EXPECT_EQ(o.sum.steps, 16u);
    EXPECT_EQ(o.sum.epochs, 2u);
}

// EMPTY_DATA judges a whole epoch: a run that --max-steps ends after the
// first few batches, all of them empty, has not seen the rest, which may
// well have rows. It completes, as any run at its step limit does.
TEST_F(Diagnoses, EmptyBatchesBeforeTheStepLimitAreNotAnEmptyEpoch) {
    Net net(model());
    Source src(10);
    src.empty = {0, 1, 2};
    ct_data_source ds = src.source("slow-start-loader");
    ct_train_options opt = net.options(1);
    opt.max_steps = 3;
    Outcome o = train_api(net, nullptr, &ds, opt, dir.file("slowstart.jsonl"));
    EXPECT_EQ(o.code, CT_EXIT_OK) << o.err;
    EXPECT_TRUE(with_code(o.jsonl, "EMPTY_DATA").empty()) << all_codes(o.jsonl);
    EXPECT_STREQ(o.sum.status, "completed");
    EXPECT_EQ(o.sum.steps, 3u);
    auto epochs = jsonl_of_type(o.jsonl, "epoch");
    ASSERT_EQ(epochs.size(), 1u);
    EXPECT_EQ(json_number(epochs[0], "empty_batches"), 3.0);
}

TEST_F(Diagnoses, SourceWithZeroBatchesPerEpochIsRefused) {
    Net net(model());
    Source src(0);
    ct_data_source ds = src.source("nothing");
    Outcome o = train_api(net, nullptr, &ds, net.options(1), dir.file("zero.jsonl"));
    EXPECT_EQ(o.code, -1);
    EXPECT_TRUE(has(o.err, "data source nothing: 0 batches per epoch")) << o.err;
    EXPECT_EQ(src.calls, 0u);
}

// ct_train on a dataset that yields no batch at all (zero items, or
// --drop-last with a batch larger than the set) must not "complete" a run
// that trained nothing: either an error before training naming the set and
// its count (as the CLI does, and as ct_train_source does for a source with
// 0 batches per epoch), or an EMPTY_DATA stop.
TEST_F(Diagnoses, ApiTrainOnADatasetWithNoBatchDoesNotCompleteSilently) {
    struct Case {
        int items, drop_last;
    } cases[] = {{0, 0}, {20, 1}};  // batch size 32
    for (const Case &c : cases) {
        Net net(model());
        ct_dataset train = synthetic_dataset(c.items, 8, 10, 1);
        ct_train_options opt = net.options(2);
        opt.drop_last = c.drop_last;
        std::string what = std::to_string(c.items) + " items" + (c.drop_last ? ", --drop-last" : "");
        Outcome o = train_api(net, &train, nullptr, opt, dir.file("nobatch.jsonl"));
        ct_dataset_free(&train);
        if (o.code == CT_EXIT_OK) {
            ADD_FAILURE() << what << ": ct_train returned CT_EXIT_OK, status " << o.sum.status << ", "
                          << o.sum.steps << " steps, no diagnosis (" << all_codes(o.jsonl) << ")";
            continue;
        }
        if (o.code < 0) {
            EXPECT_TRUE(has(o.err, "synthetic-images")) << what << ": " << o.err;
            EXPECT_TRUE(has(o.err, std::to_string(c.items))) << what << ": " << o.err;
        } else {
            EXPECT_EQ(o.code, CT_EXIT_HEALTH_STOP) << what;
            EXPECT_EQ(with_code(o.jsonl, "EMPTY_DATA").size(), 1u) << what << ": " << all_codes(o.jsonl);
            EXPECT_STRNE(o.sum.status, "completed") << what;
        }
    }
}

// ====================================================================== 2. loss vs output

TEST_F(Diagnoses, MseOnSoftmaxWarnsAtStepZeroAndStillLogsEveryStep) {
    std::string log = dir.file("mse.jsonl");
    RunResult r = run_cutrain(base() + " --loss mse --log-jsonl " + log);
    ASSERT_EQ(r.exit_code, 0) << r.out;
    const std::string msg = only_build_warning(log, "LOSS_OUTPUT_MISMATCH", "dense2");
    EXPECT_TRUE(has(msg, "mean_squared_error on the softmax output of dense2")) << msg;
    EXPECT_TRUE(has(msg, "Use --loss categorical_crossentropy")) << msg;
    // Said before training, shown on stderr even with --quiet.
    EXPECT_LT(first_index_of(log, "diagnosis"), first_index_of(log, "step"));
    EXPECT_TRUE(has(r.out, "warning [LOSS_OUTPUT_MISMATCH] in dense2: mean_squared_error")) << r.out;
    auto steps = jsonl_of_type(log, "step");
    ASSERT_EQ(steps.size(), 7u);
    for (size_t i = 0; i < steps.size(); ++i) {
        EXPECT_EQ(json_number(steps[i], "step"), (double)(i + 1));
        EXPECT_TRUE(std::isfinite(json_number(steps[i], "loss"))) << steps[i];
    }
    EXPECT_EQ(json_string(jsonl_of_type(log, "summary").at(0), "status"), "completed");
}

TEST_F(Diagnoses, CrossEntropyOnSigmoidWarnsSuggestingSoftmax) {
    std::string log = dir.file("sig.jsonl");
    RunResult r = run_cutrain(with_model("sigmoid.txt", "input 64\ndense 16 relu\ndense 10 sigmoid name=out\n"
                                                        "loss categorical_crossentropy\noptimizer adam lr=0.01\n"
                                                        "batch_size 32\n") +
                              " --log-jsonl " + log);
    ASSERT_EQ(r.exit_code, 0) << r.out;
    const std::string msg = only_build_warning(log, "LOSS_OUTPUT_MISMATCH", "out");
    EXPECT_TRUE(has(msg, "output layer out uses sigmoid")) << msg;
    EXPECT_TRUE(has(msg, "activation=softmax")) << msg;
    EXPECT_EQ(jsonl_of_type(log, "step").size(), 7u);
}

TEST_F(Diagnoses, FittingLossAndOutputSayNothing) {
    std::string log = dir.file("fit.jsonl");
    ASSERT_EQ(run_cutrain(base() + " --epochs 2 --log-jsonl " + log).exit_code, 0);
    EXPECT_TRUE(diagnoses(log).empty()) << all_codes(log);
}

// Momentum that swings the weights instead of settling them trains on
// (MNIST: 37% after an epoch, no runtime check fires), so it is said at build.
TEST_F(Diagnoses, ExtremeMomentumWarnsAtStepZeroNamingTheEffectiveRate) {
    const std::string layers = "input 64\ndense 16 relu\ndense 10 softmax\nbatch_size 32\n";
    std::string log = dir.file("momentum.jsonl");
    RunResult r = run_cutrain(with_model("swing.txt", layers + "optimizer sgd lr=0.01 momentum=0.999\n") +
                              " --log-jsonl " + log);
    ASSERT_EQ(r.exit_code, 0) << r.out;
    const std::string msg = only_build_warning(log, "MOMENTUM_TOO_LARGE", "");
    EXPECT_TRUE(has(msg, "lr/(1-momentum) = 10,")) << msg;
    EXPECT_TRUE(has(r.out, "warning [MOMENTUM_TOO_LARGE]: Momentum 0.999")) << r.out;
    EXPECT_EQ(jsonl_of_type(log, "step").size(), 7u);
    // The classic recipe, lr 0.1 with momentum 0.9, says nothing.
    ASSERT_EQ(run_cutrain(with_model("classic.txt", layers + "optimizer sgd lr=0.1 momentum=0.9\n") +
                          " --log-jsonl " + log).exit_code,
              0);
    EXPECT_TRUE(diagnoses(log).empty()) << all_codes(log);
}

// Betas under which Adam's step has no bound are named once the run
// diverges, instead of "lower the learning rate".
TEST_F(Diagnoses, DivergenceUnderUnboundedAdamBetasNamesTheBetas) {
    std::string log = dir.file("betas.jsonl");
    RunResult r = run_cutrain(with_model("betas.txt", "input 64\ndense 16 relu\ndense 10 softmax\n"
                                                      "optimizer adam lr=0.01 beta1=0.9 beta2=0.1\nbatch_size 32\n") +
                              " --epochs 30 --on-nan warn --health-chance-window 20 --log-jsonl " + log);
    ASSERT_EQ(r.exit_code, 0) << r.out;
    auto d = diagnoses(log);
    ASSERT_FALSE(d.empty()) << all_codes(log);
    for (const auto &x : d) {
        EXPECT_TRUE(has(x.message, "With beta2 0.1, not above beta1^2 (0.81), adam's step m/sqrt(v) has no bound"))
            << x.code << ": " << x.message;
        EXPECT_FALSE(has(x.message, "lower the learning rate")) << x.message;
    }
    EXPECT_TRUE(has(r.out, "With beta2 0.1")) << r.out;
    EXPECT_EQ(with_code(log, "EXPLODING_GRADIENTS").size(), 1u) << all_codes(log);
    EXPECT_EQ(with_code(log, "LOSS_AT_CHANCE").size(), 1u) << all_codes(log);
}

// ====================================================================== 3. vanishing, dead, chance

TEST_F(Diagnoses, TinyLearningRateVanishesAndStaysAtChance) {
    // 640 items: 20 steps per epoch, 300 steps in all.
    write_synthetic_mnist(dir.path(), 640, 50);
    std::string log = dir.file("tiny.jsonl");
    RunResult r = run_cutrain(base() + " --optimizer adam --lr 1e-10 --epochs 15 --max-steps 300 --log-jsonl " + log);
    ASSERT_EQ(r.exit_code, 0) << r.out;
    ASSERT_EQ(jsonl_of_type(log, "step").size(), 300u);

    auto v = with_code(log, "VANISHING_UPDATES");
    ASSERT_EQ(v.size(), 1u) << all_codes(log);
    EXPECT_EQ(v[0].severity, "warning");
    EXPECT_EQ(v[0].step, 100.0);  // the default window, from the first step
    EXPECT_EQ(v[0].layer, "");
    const std::string &vm = v[0].message;
    EXPECT_TRUE(has(vm, "step 100: for 100 steps")) << vm;
    size_t at = vm.find("geometric mean ");
    ASSERT_NE(at, std::string::npos) << vm;
    double measured = strtod(vm.c_str() + at + strlen("geometric mean "), nullptr);
    EXPECT_GT(measured, 0.0) << vm;
    EXPECT_LT(measured, 1e-7) << vm;
    EXPECT_TRUE(has(vm, "a healthy ratio is about 1e-3")) << vm;
    EXPECT_TRUE(has(vm, "The learning rate 1e-10 is far too small for adam: try --lr 1e-3")) << vm;

    auto c = with_code(log, "LOSS_AT_CHANCE");
    ASSERT_EQ(c.size(), 1u) << all_codes(log);
    EXPECT_EQ(c[0].severity, "warning");
    EXPECT_EQ(c[0].step, 200.0);
    EXPECT_TRUE(has(c[0].message, "for 200 steps")) << c[0].message;
    // Chance is the entropy of the training labels' frequencies, not ln 10:
    // the synthetic set's classes are not exactly balanced.
    EXPECT_TRUE(has(c[0].message, "the entropy of the training labels' frequencies")) << c[0].message;
    EXPECT_FALSE(has(c[0].message, "chance 2.3026")) << c[0].message;
    EXPECT_TRUE(has(c[0].message, "1e-10")) << c[0].message;

    EXPECT_EQ(diagnoses(log).size(), 2u) << all_codes(log);
    EXPECT_TRUE(has(r.out, "warning [VANISHING_UPDATES]: step 100")) << r.out;

    // The --health-* flags set the windows; 0 turns a check off.
    std::string flags = dir.file("flags.jsonl"), flags2 = dir.file("flags2.jsonl");
    r = run_cutrain(base() + " --lr 1e-10 --epochs 3 --health-vanishing-window 30 --health-chance-window 0"
                             " --log-jsonl " + flags);
    ASSERT_EQ(r.exit_code, 0) << r.out;
    auto fv = diagnoses(flags);
    ASSERT_EQ(fv.size(), 1u) << all_codes(flags);
    EXPECT_EQ(fv[0].code, "VANISHING_UPDATES");
    EXPECT_EQ(fv[0].step, 30.0);
    EXPECT_TRUE(has(fv[0].message, "for 30 steps")) << fv[0].message;
    r = run_cutrain(base() + " --lr 1e-10 --epochs 3 --health-vanishing-window 0 --health-chance-window 40"
                             " --log-jsonl " + flags2);
    ASSERT_EQ(r.exit_code, 0) << r.out;
    fv = diagnoses(flags2);
    ASSERT_EQ(fv.size(), 1u) << all_codes(flags2);
    EXPECT_EQ(fv[0].code, "LOSS_AT_CHANCE");
    EXPECT_EQ(fv[0].step, 40.0);
}

// A schedule's rate is what it is at each step: a cosine annealing to 0 over
// the run makes its last updates tiny by design (not "the gradients have
// vanished, lower the learning rate"); a cosine whose span ends before the
// run holds the rate at 0 after it, and the diagnosis names the schedule.
TEST_F(Diagnoses, ScheduleThatAnnealsTheRateIsNotVanishingGradients) {
    write_synthetic_mnist(dir.path(), 320, 50);  // 10 steps per epoch
    std::string cmd = with_model("cosine.txt", "input 64\ndense 16 relu\ndense 10 softmax\noptimizer sgd lr=0.001\n"
                                               "schedule cosine\nbatch_size 32\n");
    std::string log = dir.file("cosine.jsonl");
    RunResult r = run_cutrain(cmd + " --epochs 20 --health-vanishing-window 3 --health-chance-window 0"
                                    " --log-jsonl " + log);
    ASSERT_EQ(r.exit_code, 0) << r.out;
    // The last steps' updates are below the threshold, as the schedule plans.
    auto steps = jsonl_of_type(log, "step");
    ASSERT_EQ(steps.size(), 200u);
    EXPECT_TRUE(has_flag(steps.back(), "VANISHING_UPDATE")) << steps.back();
    EXPECT_TRUE(diagnoses(log).empty()) << all_codes(log);

    cmd = with_model("short.txt", "input 64\ndense 16 relu\ndense 10 softmax\noptimizer adam lr=0.01\n"
                                  "schedule cosine total_steps=10\nbatch_size 32\n");
    log = dir.file("short.jsonl");
    r = run_cutrain(cmd + " --epochs 3 --health-vanishing-window 5 --health-chance-window 0 --log-jsonl " + log);
    ASSERT_EQ(r.exit_code, 0) << r.out;
    auto d = with_code(log, "VANISHING_UPDATES");
    ASSERT_EQ(d.size(), 1u) << all_codes(log);
    EXPECT_EQ(d[0].step, 15.0);  // lr 0 from step 11 on
    const std::string &m = d[0].message;
    EXPECT_TRUE(has(m, "The cosine schedule has brought the learning rate down to 0 at step 15 (its base is 0.01)"))
        << m;
    EXPECT_TRUE(has(m, "its 10 steps have ended")) << m;
    EXPECT_FALSE(has(m, "is ordinary")) << m;
    EXPECT_FALSE(has(m, "lower the learning rate")) << m;
}

// A ReLU layer whose every bias is -100: no unit is ever active.
void kill_dense1(Net &net) {
    std::vector<float> p = net.params();
    const ct_layer &l = net.m.layers[net.m.param_layer[0]];
    ASSERT_STREQ(l.spec.name, "dense1");
    for (int u = 0; u < l.out_dim; ++u) p[l.b_off + (size_t)u] = -100.0f;
    ct_model_set_params(&net.m, p.data());
}

TEST_F(Diagnoses, DeadReluLayerIsNamedAfterTheDeadWindow) {
    ct_dataset train = synthetic_dataset(320, 8, 10, 1);  // 10 steps per epoch
    {
        Net net(model());
        kill_dense1(net);
        std::vector<float> before = net.params();
        ct_train_options opt = net.options(6);  // 60 steps; default dead window 50
        Outcome o = train_api(net, &train, nullptr, opt, dir.file("dead.jsonl"));
        ASSERT_EQ(o.code, CT_EXIT_OK) << o.err;
        auto d = with_code(o.jsonl, "DEAD_LAYER");
        ASSERT_EQ(d.size(), 1u) << all_codes(o.jsonl);
        EXPECT_EQ(d[0].severity, "warning");
        EXPECT_EQ(d[0].step, 50.0);
        EXPECT_EQ(d[0].layer, "dense1");
        EXPECT_TRUE(has(d[0].message, "step 50: the gradient of layer dense1 has been exactly zero for 50 steps"))
            << d[0].message;
        EXPECT_TRUE(has(d[0].message, "ReLU")) << d[0].message;
        for (const std::string &s : jsonl_of_type(o.jsonl, "step")) {
            EXPECT_TRUE(has_flag(s, "ZERO_GRAD")) << s;
            EXPECT_TRUE(has(s, "\"dense1\":0,")) << s;
        }
        // dense1 never moved; dense2's bias did.
        std::vector<float> after = net.params();
        const ct_layer &l1 = net.m.layers[net.m.param_layer[0]];
        for (size_t i = l1.w_off; i < l1.b_off + (size_t)l1.out_dim; ++i) ASSERT_EQ(after[i], before[i]) << i;
        EXPECT_NE(after, before);
    }
    {
        Net net(model());
        kill_dense1(net);
        ct_train_options opt = net.options(1);
        opt.health.dead_window = 5;
        Outcome o = train_api(net, &train, nullptr, opt, dir.file("dead5.jsonl"));
        ASSERT_EQ(o.code, CT_EXIT_OK) << o.err;
        auto d = with_code(o.jsonl, "DEAD_LAYER");
        ASSERT_EQ(d.size(), 1u) << all_codes(o.jsonl);
        EXPECT_EQ(d[0].step, 5.0);
        EXPECT_EQ(d[0].layer, "dense1");
        EXPECT_TRUE(has(d[0].message, "exactly zero for 5 steps")) << d[0].message;
    }
    {
        Net net(model());  // the same model alive: nothing to say
        Outcome o = train_api(net, &train, nullptr, net.options(6), dir.file("alive.jsonl"));
        ASSERT_EQ(o.code, CT_EXIT_OK) << o.err;
        EXPECT_TRUE(diagnoses(o.jsonl).empty()) << all_codes(o.jsonl);
        EXPECT_GT(o.sum.test_acc, 0.9);
    }
    ct_dataset_free(&train);
}

TEST_F(Diagnoses, DeadSecondReluLayerIsNamedNotTheLayersBeforeIt) {
    // 64-16-16-10: with every unit of dense2 inactive, dense2's gradient
    // and dense1's (which flows through dense2) are both exactly zero; only
    // the deepest, dense2, is named.
    std::string m3 = dir.file("deep.txt");
    write_text(m3, "input 64\ndense 16 relu\ndense 16 relu\ndense 10 softmax\noptimizer adam lr=0.01\nbatch_size 32\n");
    Net net(m3);
    std::vector<float> p = net.params();
    const ct_layer &l2 = net.m.layers[net.m.param_layer[1]];
    ASSERT_STREQ(l2.spec.name, "dense2");
    for (int u = 0; u < l2.out_dim; ++u) p[l2.b_off + (size_t)u] = -100.0f;
    ct_model_set_params(&net.m, p.data());
    ct_dataset train = synthetic_dataset(320, 8, 10, 1);
    ct_train_options opt = net.options(2);
    opt.health.dead_window = 10;
    Outcome o = train_api(net, &train, nullptr, opt, dir.file("deep.jsonl"));
    ct_dataset_free(&train);
    ASSERT_EQ(o.code, CT_EXIT_OK) << o.err;
    auto d = with_code(o.jsonl, "DEAD_LAYER");
    ASSERT_EQ(d.size(), 1u) << all_codes(o.jsonl);
    EXPECT_EQ(d[0].step, 10.0);
    EXPECT_EQ(d[0].layer, "dense2");
    EXPECT_TRUE(has(d[0].message, "layer dense2 has been exactly zero for 10 steps")) << d[0].message;
}

// ====================================================================== 4. non-finite

TEST_F(Diagnoses, InjectedNanStopsAtThatStepNamingTheOutputLayer) {
    std::string log = dir.file("stop.jsonl"), w = dir.file("w.safetensors");
    RunResult r = run_cutrain(base() + " --epochs 3 --inject-nan 3 --on-nan stop --save " + w + " --log-jsonl " + log);
    ASSERT_EQ(r.exit_code, CT_EXIT_HEALTH_STOP) << r.out;
    auto d = diagnoses(log);
    ASSERT_EQ(d.size(), 1u) << all_codes(log);
    EXPECT_EQ(d[0].code, "NONFINITE_GRAD");
    EXPECT_EQ(d[0].severity, "error");
    EXPECT_EQ(d[0].step, 3.0);
    EXPECT_EQ(d[0].epoch, 1.0);
    EXPECT_EQ(d[0].layer, "dense2");  // the output: first in backward order
    EXPECT_TRUE(has(d[0].message, "step 3: a gradient is NaN or Inf, first (in backward order) in layer dense2"))
        << d[0].message;
    EXPECT_TRUE(has(d[0].message, "training stopped (--on-nan stop)")) << d[0].message;
    auto steps = jsonl_of_type(log, "step");
    ASSERT_EQ(steps.size(), 3u);
    EXPECT_FALSE(has_flag(steps[1], "NONFINITE_GRAD")) << steps[1];
    EXPECT_TRUE(has_flag(steps[2], "NONFINITE_GRAD")) << steps[2];
    EXPECT_TRUE(has_flag(steps[2], "SKIPPED_UPDATE")) << steps[2];
    EXPECT_EQ(json_number(steps[2], "nonfinite"), 1.0);
    auto sum = jsonl_of_type(log, "summary");
    ASSERT_EQ(sum.size(), 1u);
    EXPECT_EQ(json_number(sum[0], "steps"), 3.0);
    EXPECT_EQ(json_string(sum[0], "status"), "stopped");
    EXPECT_EQ(json_number(sum[0], "exit_code"), (double)CT_EXIT_HEALTH_STOP);
    EXPECT_FALSE(file_exists(w));  // a stopped run saves nothing
    EXPECT_TRUE(has(r.out, "error [NONFINITE_GRAD] in dense2: step 3")) << r.out;
}

TEST_F(Diagnoses, InjectLayerNamesThatLayer) {
    std::string log = dir.file("layer.jsonl");
    RunResult r = run_cutrain(base() + " --inject-nan 3 --inject-layer dense1 --log-jsonl " + log);
    ASSERT_EQ(r.exit_code, CT_EXIT_HEALTH_STOP) << r.out;
    auto d = diagnoses(log);
    ASSERT_EQ(d.size(), 1u) << all_codes(log);
    EXPECT_EQ(d[0].code, "NONFINITE_GRAD");
    EXPECT_EQ(d[0].step, 3.0);
    EXPECT_EQ(d[0].layer, "dense1");
    EXPECT_TRUE(has(d[0].message, "in layer dense1 (1 non-finite values)")) << d[0].message;
    EXPECT_EQ(jsonl_of_type(log, "step").size(), 3u);

    r = run_cutrain(base() + " --inject-nan 3 --inject-layer dense9");
    EXPECT_EQ(r.exit_code, CT_EXIT_USAGE) << r.out;
    EXPECT_TRUE(has(r.out, "--inject-layer: the model has no layer with parameters named 'dense9'")) << r.out;
}

TEST_F(Diagnoses, OnNanSkipFinishesWithFiniteWeightsAndNormalAccuracy) {
    std::string clean = dir.file("clean.jsonl"), log = dir.file("skip.jsonl"), w = dir.file("skip.safetensors");
    ASSERT_EQ(run_cutrain(base() + " --epochs 3 --seed 5 --log-jsonl " + clean).exit_code, 0);
    RunResult r = run_cutrain(base() + " --epochs 3 --seed 5 --inject-nan 3 --on-nan skip --save " + w +
                              " --log-jsonl " + log);
    ASSERT_EQ(r.exit_code, 0) << r.out;
    auto d = diagnoses(log);
    ASSERT_EQ(d.size(), 1u) << all_codes(log);
    EXPECT_EQ(d[0].code, "NONFINITE_GRAD");
    EXPECT_EQ(d[0].severity, "warning");
    EXPECT_EQ(d[0].step, 3.0);
    EXPECT_EQ(d[0].layer, "dense2");
    EXPECT_TRUE(has(d[0].message, "the update was skipped (--on-nan skip)")) << d[0].message;

    auto steps = jsonl_of_type(log, "step");
    ASSERT_EQ(steps.size(), 21u);
    for (size_t i = 0; i < steps.size(); ++i) {
        bool injected = json_number(steps[i], "step") == 3.0;
        EXPECT_EQ(has_flag(steps[i], "SKIPPED_UPDATE"), injected) << steps[i];
        EXPECT_EQ(has_flag(steps[i], "NONFINITE_GRAD"), injected) << steps[i];
        EXPECT_FALSE(has_flag(steps[i], "NONFINITE_LOSS")) << steps[i];
    }
    EXPECT_EQ(json_number(steps[2], "update_ratio"), 0.0);
    auto epochs = jsonl_of_type(log, "epoch");
    ASSERT_EQ(epochs.size(), 3u);
    EXPECT_EQ(json_number(epochs[0], "skipped_steps"), 1.0);
    EXPECT_EQ(json_number(epochs[1], "skipped_steps"), 0.0);
    EXPECT_EQ(json_number(epochs[2], "skipped_steps"), 0.0);
    EXPECT_EQ(json_number(epochs[0], "empty_batches"), 0.0);
    auto sum = jsonl_of_type(log, "summary");
    ASSERT_EQ(sum.size(), 1u);
    EXPECT_EQ(json_string(sum[0], "status"), "completed");
    EXPECT_EQ(json_number(sum[0], "steps"), 21.0);
    double acc = json_number(sum[0], "test_acc"), clean_acc = json_number(jsonl_of_type(clean, "summary").at(0), "test_acc");
    EXPECT_GT(acc, 0.8);
    EXPECT_NEAR(acc, clean_acc, 0.05);

    // The checkpoint holds the weights and Adam's two moments: a skipped
    // step must have kept all three free of the NaN.
    std::vector<std::string> names;
    std::vector<float> v = safetensors_values(w, &names);
    ASSERT_EQ(v.size(), 3u * (64u * 16 + 16 + 16 * 10 + 10));
    EXPECT_EQ(names.size(), 12u);
    size_t bad = 0;
    for (float x : v) bad += !std::isfinite(x);
    EXPECT_EQ(bad, 0u);
}

TEST_F(Diagnoses, OnNanWarnLetsTheNanIntoTheWeightsAndGoesOn) {
    std::string log = dir.file("warn.jsonl"), w = dir.file("warn.safetensors");
    RunResult r = run_cutrain(base() + " --epochs 2 --inject-nan 3 --on-nan warn --save " + w + " --log-jsonl " + log);
    ASSERT_EQ(r.exit_code, 0) << r.out;
    auto d = diagnoses(log);
    ASSERT_EQ(d.size(), 1u) << all_codes(log);  // said once, not at every bad step
    EXPECT_EQ(d[0].code, "NONFINITE_GRAD");
    EXPECT_EQ(d[0].severity, "warning");
    EXPECT_EQ(d[0].step, 3.0);
    EXPECT_EQ(d[0].layer, "dense2");
    EXPECT_TRUE(has(d[0].message, "training goes on (--on-nan warn)")) << d[0].message;

    auto steps = jsonl_of_type(log, "step");
    ASSERT_EQ(steps.size(), 14u);  // the run did not stop
    EXPECT_TRUE(has_flag(steps[2], "NONFINITE_GRAD")) << steps[2];
    EXPECT_FALSE(has_flag(steps[2], "SKIPPED_UPDATE")) << steps[2];  // the update went through
    for (size_t i = 3; i < steps.size(); ++i) {
        // NaN in the weights: every later forward pass is NaN too.
        EXPECT_TRUE(has_flag(steps[i], "NONFINITE_LOSS")) << steps[i];
        EXPECT_FALSE(has_flag(steps[i], "SKIPPED_UPDATE")) << steps[i];
    }
    for (const std::string &e : jsonl_of_type(log, "epoch")) EXPECT_EQ(json_number(e, "skipped_steps"), 0.0) << e;
    auto sum = jsonl_of_type(log, "summary");
    ASSERT_EQ(sum.size(), 1u);
    EXPECT_EQ(json_string(sum[0], "status"), "completed");
    EXPECT_EQ(json_number(sum[0], "exit_code"), 0.0);
    std::vector<float> v = safetensors_values(w);
    size_t bad = 0;
    for (float x : v) bad += !std::isfinite(x);
    EXPECT_GT(bad, 0u);
}

TEST_F(Diagnoses, NanInputFromASourceStopsAtThatStep) {
    Net net(model());
    Source src(10);
    src.nan_batch = 4;  // step 5
    ct_data_source ds = src.source("nan-loader");
    ct_train_options opt = net.options(2);
    opt.drain_every = 4;
    Outcome o = train_api(net, nullptr, &ds, opt, dir.file("naninput.jsonl"));
    ASSERT_EQ(o.code, CT_EXIT_HEALTH_STOP) << o.err;
    auto d = diagnoses(o.jsonl);
    ASSERT_EQ(d.size(), 1u) << all_codes(o.jsonl);
    EXPECT_EQ(d[0].code, "NONFINITE_LOSS");
    EXPECT_EQ(d[0].severity, "error");
    EXPECT_EQ(d[0].step, 5.0);
    EXPECT_EQ(d[0].layer, "dense2");  // NaN reaches every layer's gradient; the output is first backward
    EXPECT_TRUE(has(d[0].message, "step 5: the loss is NaN or Inf")) << d[0].message;
    EXPECT_TRUE(has(d[0].message, "check the input data for NaN/Inf")) << d[0].message;
    EXPECT_EQ(jsonl_of_type(o.jsonl, "step").size(), 5u);
    EXPECT_EQ(o.sum.steps, 5u);
    // The weights are the last good ones: all finite.
    for (float x : net.params()) ASSERT_TRUE(std::isfinite(x));
}

// Under skip or warn a run whose every step is non-finite cannot recover:
// NONFINITE_PERSISTS stops it (exit 4) after the window, instead of a
// "completed" run that learnt nothing after the first diagnosis.
TEST_F(Diagnoses, NonfiniteEveryStepUnderSkipOrWarnStopsWithNonfinitePersists) {
    for (ct_nan_policy policy : {CT_ON_NAN_SKIP, CT_ON_NAN_WARN}) {
        Net net(model());
        Source src(10);
        src.nan_from = 2;  // steps 3, 4, ...
        ct_data_source ds = src.source("nan-loader");
        ct_train_options opt = net.options(2);
        opt.health.on_nan = policy;
        opt.health.nonfinite_window = 5;
        Outcome o = train_api(net, nullptr, &ds, opt, dir.file("persists.jsonl"));
        SCOPED_TRACE(ct_nan_policy_name(policy));
        EXPECT_EQ(o.code, CT_EXIT_HEALTH_STOP) << o.err;
        EXPECT_STREQ(o.sum.status, "stopped");
        EXPECT_EQ(o.sum.steps, 7u);
        EXPECT_EQ(jsonl_of_type(o.jsonl, "step").size(), 7u);
        auto d = diagnoses(o.jsonl);
        ASSERT_EQ(d.size(), 2u) << all_codes(o.jsonl);
        EXPECT_EQ(d[0].code, "NONFINITE_LOSS");
        EXPECT_EQ(d[0].severity, "warning");
        EXPECT_EQ(d[0].step, 3.0);
        EXPECT_EQ(d[1].code, "NONFINITE_PERSISTS");
        EXPECT_EQ(d[1].severity, "error");
        EXPECT_EQ(d[1].step, 7.0);
        EXPECT_TRUE(has(d[1].message, "for 5 steps in a row")) << d[1].message;
        EXPECT_TRUE(has(d[1].message, policy == CT_ON_NAN_SKIP ? "--on-nan skip" : "--on-nan warn")) << d[1].message;
        if (policy == CT_ON_NAN_SKIP)
            for (float x : net.params()) ASSERT_TRUE(std::isfinite(x));
    }
}

// A source that fails mid-run ends it "failed", and the steps it ran before
// are in the log with their diagnoses, as many as the summary counts.
TEST_F(Diagnoses, SourceFailureStillLogsTheStepsBeforeItAndTheirDiagnoses) {
    Net net(model());
    Source src(10);
    src.nan_batch = 1;   // step 2: skipped under --on-nan skip
    src.fail_batch = 3;  // before step 4
    ct_data_source ds = src.source("flaky-loader");
    ct_train_options opt = net.options(1);
    opt.health.on_nan = CT_ON_NAN_SKIP;
    Outcome o = train_api(net, nullptr, &ds, opt, dir.file("flaky.jsonl"));
    EXPECT_EQ(o.code, -1);
    EXPECT_TRUE(has(o.err, "the shard of batch 3 is gone")) << o.err;
    EXPECT_STREQ(o.sum.status, "failed");
    EXPECT_EQ(o.sum.steps, 3u);
    EXPECT_EQ(jsonl_of_type(o.jsonl, "step").size(), 3u);
    auto d = diagnoses(o.jsonl);
    ASSERT_EQ(d.size(), 1u) << all_codes(o.jsonl);
    EXPECT_EQ(d[0].code, "NONFINITE_LOSS");
    EXPECT_EQ(d[0].step, 2.0);

    // Under --on-nan stop the stop at step 2 came first: it is the outcome.
    Net net2(model());
    Source src2(10);
    src2.nan_batch = 1;
    src2.fail_batch = 3;
    ct_data_source ds2 = src2.source("flaky-loader");
    o = train_api(net2, nullptr, &ds2, net2.options(1), dir.file("flaky-stop.jsonl"));
    EXPECT_EQ(o.code, CT_EXIT_HEALTH_STOP) << o.err;
    EXPECT_STREQ(o.sum.status, "stopped");
    EXPECT_EQ(o.sum.steps, 2u);
    EXPECT_EQ(jsonl_of_type(o.jsonl, "step").size(), 2u);
    d = diagnoses(o.jsonl);
    ASSERT_EQ(d.size(), 1u) << all_codes(o.jsonl);
    EXPECT_EQ(d[0].code, "NONFINITE_LOSS");
    EXPECT_EQ(d[0].severity, "error");
}

// A label the output cannot represent is bad input, as in a labels file:
// an error naming where it is, not a NaN loss blamed on the learning rate.
TEST_F(Diagnoses, LabelOutsideTheClassesFromASourceFailsNamingTheBatchAndRow) {
    for (int32_t bad : {10, -1}) {
        Net net(model());
        Source src(10);
        src.bad_label_batch = 3;  // step 4
        src.bad_label = bad;
        ct_data_source ds = src.source("label-loader");
        Outcome o = train_api(net, nullptr, &ds, net.options(1), dir.file("badlabel.jsonl"));
        EXPECT_EQ(o.code, -1);
        EXPECT_TRUE(has(o.err, "data source label-loader: batch 3 row 3: label " + std::to_string(bad) +
                                   " is outside the model's 10 classes")) << o.err;
        EXPECT_TRUE(diagnoses(o.jsonl).empty()) << all_codes(o.jsonl);  // no NONFINITE_LOSS
        EXPECT_EQ(jsonl_of_type(o.jsonl, "step").size(), 3u);
        EXPECT_STREQ(o.sum.status, "failed");
        EXPECT_EQ(o.sum.exit_code, CT_EXIT_BAD_INPUT);
        for (float x : net.params()) ASSERT_TRUE(std::isfinite(x));
    }
}

TEST_F(Diagnoses, ApiTrainOnADatasetWithALabelOutsideTheClassesIsRefused) {
    Net net(model());
    ct_dataset train = synthetic_dataset(320, 8, 10, 1);
    train.labels[17] = 12;
    train.max_label = 12;
    Outcome o = train_api(net, &train, nullptr, net.options(1), dir.file("badset.jsonl"));
    ct_dataset_free(&train);
    EXPECT_EQ(o.code, -1);
    EXPECT_TRUE(has(o.err, "label 12 at index 17 is outside the model's 10 classes")) << o.err;
    EXPECT_TRUE(jsonl_of_type(o.jsonl, "step").empty());
}

// Items are indexed by int32_t; the IDX loader refuses a file of more, and a
// set handed to the API is refused the same way before anything reads it
// (its labels were read past their end, then the order wrapped negative).
TEST_F(Diagnoses, ApiTrainOnADatasetOfMoreItemsThanAnInt32IndexesIsRefused) {
    Net net(model());
    for (bool as_test : {false, true}) {
        SCOPED_TRACE(as_test ? "test set" : "training set");
        ct_dataset ok = synthetic_dataset(320, 8, 10, 1), huge = synthetic_dataset(40, 8, 10, 2);
        huge.count = (size_t)INT32_MAX + 1;  // only claimed: nothing may read past item 40
        const std::string log_path = dir.file("huge.jsonl");
        char names[CT_MAX_PARAM_LAYERS][32] = {"dense1", "dense2"};
        ct_log_options lo = {log_path.c_str(), nullptr, 1, 0, 2, names};
        ct_error err;
        ct_error_clear(&err);
        ct_logger *log = ct_logger_open(&lo, &err);
        ASSERT_NE(log, nullptr) << err.msg;
        ct_run_summary sum;
        const ct_train_options opt = net.options(1);
        const int code = ct_train(&net.m, as_test ? &ok : &huge, as_test ? &huge : &ok, &opt, log, &sum, &err);
        const std::string msg = err.msg;
        ct_logger_close(log, &err);
        huge.count = 40;
        ct_dataset_free(&ok);
        ct_dataset_free(&huge);
        EXPECT_EQ(code, -1);
        EXPECT_EQ(err.code, CT_EXIT_BAD_INPUT);
        EXPECT_TRUE(has(msg, "2147483648 items: at most 2147483647 can be indexed")) << msg;
        EXPECT_TRUE(jsonl_of_type(log_path, "step").empty());
    }
}

// ====================================================================== 5. exploding

TEST_F(Diagnoses, InputSpikeExplodesTheGradientAtThatStep) {
    Net net(model());
    Source src(40);
    // A corrupt batch: inputs 1e4 times too large and labels off by one.
    // (Scaled inputs alone are not enough here: on this separable data the
    // saturated softmax then matches every one-hot label exactly in float,
    // and the gradient of that step is exactly zero.)
    src.spike = 29;  // step 30; the 20-step window is full from step 21
    src.factor = 1e4f;
    src.spike_shifts_labels = true;
    ct_data_source ds = src.source("spiky");
    Outcome o = train_api(net, nullptr, &ds, net.options(1), dir.file("spike.jsonl"));
    ASSERT_EQ(o.code, CT_EXIT_OK) << o.err;
    std::string norms;
    for (const std::string &s : jsonl_of_type(o.jsonl, "step"))
        norms += std::to_string((int)json_number(s, "step")) + ":" + std::to_string(json_number(s, "grad_norm")) + " " +
                 flags_of(s) + "\n";
    auto d = with_code(o.jsonl, "EXPLODING_GRADIENTS");
    ASSERT_EQ(d.size(), 1u) << all_codes(o.jsonl) << "\n" << norms;
    EXPECT_EQ(d[0].severity, "warning");
    EXPECT_EQ(d[0].step, 30.0);
    EXPECT_EQ(d[0].layer, "");
    EXPECT_TRUE(has(d[0].message, "step 30: the gradient norm jumped to")) << d[0].message;
    EXPECT_TRUE(has(d[0].message, "over the previous 20 steps")) << d[0].message;
    EXPECT_TRUE(has(d[0].message, "Add --clip-grad-norm")) << d[0].message;
    EXPECT_TRUE(with_code(o.jsonl, "NONFINITE_GRAD").empty()) << all_codes(o.jsonl);
    EXPECT_TRUE(with_code(o.jsonl, "NONFINITE_LOSS").empty()) << all_codes(o.jsonl);

    // The record agrees: the norm at step 30 is > 100x the median before it.
    auto steps = jsonl_of_type(o.jsonl, "step");
    ASSERT_EQ(steps.size(), 40u);
    std::vector<double> prev;
    for (int s = 10; s < 29; ++s) prev.push_back(json_number(steps[s], "grad_norm"));
    std::sort(prev.begin(), prev.end());
    EXPECT_GT(json_number(steps[29], "grad_norm"), 100 * prev[prev.size() / 2]);

    // Without the spike: nothing.
    Net calm(model());
    Source plain(40);
    ct_data_source ps = plain.source("plain");
    Outcome c = train_api(calm, nullptr, &ps, calm.options(1), dir.file("plain.jsonl"));
    ASSERT_EQ(c.code, CT_EXIT_OK) << c.err;
    EXPECT_TRUE(diagnoses(c.jsonl).empty()) << all_codes(c.jsonl);
}

// ====================================================================== 6. input data

// Finite float32 test images so large that the model's logits overflow:
// training is fine, the test loss is NaN. Not silent: a warning that names
// the test file, once; the run still completes (exit 0).
TEST_F(Diagnoses, TestLossThatOverflowsWhileTrainingIsFineIsSaid) {
    std::vector<float> px(50 * 64);
    for (size_t i = 0; i < px.size(); ++i) px[i] = (float)(i % 7) / 7.0f;
    for (int j = 0; j < 64; j += 2) px[5 * 64 + j] = 3e38f;  // item 5
    std::string test_images = dir.file("t10k-images-idx3-ubyte");
    write_idx_f32(test_images, {50, 8, 8}, px);
    std::string log = dir.file("evalnan.jsonl");
    RunResult r = run_cutrain(base() + " --epochs 2 --log-jsonl " + log);
    ASSERT_EQ(r.exit_code, 0) << r.out;
    auto epochs = jsonl_of_type(log, "epoch");
    ASSERT_EQ(epochs.size(), 2u);
    EXPECT_TRUE(std::isnan(json_number(epochs[0], "test_loss"))) << epochs[0];  // null
    EXPECT_TRUE(std::isfinite(json_number(epochs[0], "train_loss"))) << epochs[0];
    auto d = diagnoses(log);
    ASSERT_EQ(d.size(), 1u) << all_codes(log);
    EXPECT_EQ(d[0].code, "NONFINITE_TEST_LOSS");
    EXPECT_EQ(d[0].severity, "warning");
    EXPECT_EQ(d[0].step, 7.0);  // the last step of epoch 1 (200 items, batch 32)
    EXPECT_EQ(d[0].epoch, 1.0);
    EXPECT_EQ(d[0].layer, "");
    EXPECT_TRUE(has(d[0].message, "epoch 1: the test loss is NaN or Inf while the training loss is finite")) << d[0].message;
    EXPECT_TRUE(has(d[0].message, test_images)) << d[0].message;
    EXPECT_TRUE(has(r.out, "warning [NONFINITE_TEST_LOSS]")) << r.out;
    EXPECT_EQ(json_string(jsonl_of_type(log, "summary")[0], "status"), "completed");
}

// Said once a run, a resumed run included: the flag travels in the
// checkpoint's health state as the other diagnoses' do.
TEST_F(Diagnoses, TestLossThatOverflowsIsNotSaidAgainAfterAResume) {
    std::vector<float> px(50 * 64);
    for (size_t i = 0; i < px.size(); ++i) px[i] = (float)(i % 7) / 7.0f;
    for (int j = 0; j < 64; j += 2) px[5 * 64 + j] = 3e38f;  // item 5
    write_idx_f32(dir.file("t10k-images-idx3-ubyte"), {50, 8, 8}, px);
    const std::string ck = dir.file("evalnan.safetensors"), first = dir.file("evalnan1.jsonl"),
                      second = dir.file("evalnan2.jsonl");
    RunResult r = run_cutrain(base() + " --epochs 1 --save " + ck + " --log-jsonl " + first);
    ASSERT_EQ(r.exit_code, 0) << r.out;
    auto said = diagnoses(first);
    ASSERT_EQ(said.size(), 1u) << all_codes(first);
    ASSERT_EQ(said[0].code, "NONFINITE_TEST_LOSS");
    r = run_cutrain(base() + " --epochs 2 --resume " + ck + " --log-jsonl " + second);
    ASSERT_EQ(r.exit_code, 0) << r.out;
    auto epochs = jsonl_of_type(second, "epoch");
    ASSERT_EQ(epochs.size(), 1u);
    EXPECT_TRUE(std::isnan(json_number(epochs[0], "test_loss"))) << epochs[0];  // the case is still there
    EXPECT_TRUE(diagnoses(second).empty()) << all_codes(second);
    EXPECT_FALSE(has(r.out, "NONFINITE_TEST_LOSS")) << r.out;
}

// Under --on-nan warn, a NaN gradient at an epoch's last step goes into the
// weights after that step's loss was taken: the epoch's training loss is
// finite and its test loss NaN. NONFINITE_GRAD has said why; blaming the
// test images file (NONFINITE_TEST_LOSS) would send the user to the wrong file.
TEST_F(Diagnoses, TestLossMadeNanByAWarnedNanUpdateDoesNotBlameTheTestFile) {
    std::string log = dir.file("warnnan.jsonl");
    RunResult r = run_cutrain(base() + " --epochs 1 --on-nan warn --inject-nan 7 --log-jsonl " + log);
    ASSERT_EQ(r.exit_code, 0) << r.out;
    auto epochs = jsonl_of_type(log, "epoch");
    ASSERT_EQ(epochs.size(), 1u);
    // The case itself: finite training loss, NaN test loss (step 7 is epoch 1's last: 200 items, batch 32).
    ASSERT_TRUE(std::isfinite(json_number(epochs[0], "train_loss"))) << epochs[0];
    ASSERT_TRUE(std::isnan(json_number(epochs[0], "test_loss"))) << epochs[0];
    auto d = diagnoses(log);
    ASSERT_EQ(d.size(), 1u) << all_codes(log);
    EXPECT_EQ(d[0].code, "NONFINITE_GRAD");
    EXPECT_FALSE(has(r.out, "NONFINITE_TEST_LOSS")) << r.out;
}

TEST_F(Diagnoses, NanInAFloatIdxImageFileFailsNamingTheFileAndElement) {
    // The synthetic images as float32 in [0, 1], one element NaN.
    auto bytes = read_file(train_images());
    ASSERT_EQ(bytes.size(), 16u + 200 * 64);
    std::vector<float> f(200 * 64);
    for (size_t i = 0; i < f.size(); ++i) f[i] = bytes[16 + i] / 255.0f;
    std::string images = train_images();
    write_idx_f32(images, {200, 8, 8}, f);
    std::string log = dir.file("ok.jsonl");
    RunResult ok = run_cutrain(base() + " --max-steps 3 --log-jsonl " + log);  // the float file itself is fine
    ASSERT_EQ(ok.exit_code, 0) << ok.out;
    EXPECT_EQ(jsonl_of_type(log, "step").size(), 3u);

    f[70] = NAN;  // item 1, value 6
    write_idx_f32(images, {200, 8, 8}, f);
    std::string never = dir.file("never.jsonl");
    RunResult r = run_cutrain(base() + " --log-jsonl " + never);
    EXPECT_EQ(r.exit_code, CT_EXIT_BAD_INPUT) << r.out;
    EXPECT_TRUE(has(r.out, images + ": float element 70 (item 1) is NaN")) << r.out;
    EXPECT_FALSE(file_exists(never));

    f[70] = 0.5f;
    f[200 * 64 - 1] = -INFINITY;
    write_idx_f32(images, {200, 8, 8}, f);
    r = run_cutrain(base());
    EXPECT_EQ(r.exit_code, CT_EXIT_BAD_INPUT) << r.out;
    EXPECT_TRUE(has(r.out, images + ": float element 12799 (item 199) is -Inf")) << r.out;
}

TEST_F(Diagnoses, ConstantImagesWarnAtStepZeroAndTrainingRuns) {
    auto bytes = read_file(train_images());
    for (size_t i = 10; i < 15; ++i) std::fill_n(bytes.begin() + 16 + (long)i * 64, 64, 0);
    write_file(train_images(), bytes);
    std::string log = dir.file("blank.jsonl");
    RunResult r = run_cutrain(base() + " --log-jsonl " + log);
    ASSERT_EQ(r.exit_code, 0) << r.out;
    const std::string msg = only_build_warning(log, "CONSTANT_IMAGES", "");
    EXPECT_EQ(msg.rfind(train_images() + ": ", 0), 0u) << msg;
    EXPECT_TRUE(has(msg, "5 of 200 images are constant")) << msg;
    EXPECT_TRUE(has(msg, "the first at index 10")) << msg;
    EXPECT_LT(first_index_of(log, "diagnosis"), first_index_of(log, "step"));
    EXPECT_EQ(jsonl_of_type(log, "step").size(), 7u);
    EXPECT_TRUE(has(r.out, "warning [CONSTANT_IMAGES]: " + train_images())) << r.out;
}

TEST_F(Diagnoses, LabelsOfASingleClassWarnNamingTheLabelsFile) {
    write_idx_u8(train_labels(), {200}, std::vector<uint8_t>(200, 4));
    std::string log = dir.file("onelabel.jsonl");
    RunResult r = run_cutrain(base() + " --log-jsonl " + log);
    ASSERT_EQ(r.exit_code, 0) << r.out;
    auto d = with_code(log, "LABELS_SINGLE_CLASS");
    ASSERT_EQ(d.size(), 1u) << all_codes(log);
    EXPECT_EQ(d[0].severity, "warning");
    EXPECT_EQ(d[0].step, 0.0);
    EXPECT_EQ(d[0].message.rfind(train_labels() + ": ", 0), 0u) << d[0].message;
    EXPECT_TRUE(has(d[0].message, "all 200 labels are 4")) << d[0].message;
    EXPECT_EQ(jsonl_of_type(log, "step").size(), 7u);
}

}  // namespace
