// The diagnoses of docs/troubleshooting.md on the GPU, end to end: the same
// situations as tests/unit/test_diagnoses.cpp, trained with --device cuda (or
// the CUDA backend through the C API), asserting the same codes, steps and
// layers. The health checks are backend-independent; what these prove is
// that the GPU's step records (flags, norms, update ratios, zero counts
// from the fused reduction, drained from the ring) carry what they need.
// Skipped, not passed, without a GPU.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "support/diagnostics.h"
#include "support/fixtures.h"

using namespace ct_test;

namespace {

const char *kModel = "input 64\ndense 16 relu\ndense 10 softmax\noptimizer adam lr=0.01\nbatch_size 32\n";

class GpuDiagnoses : public ::testing::Test {
  protected:
    void SetUp() override {
        char why[512] = "";
        if (!ct_cuda_available(why, sizeof why)) GTEST_SKIP() << "no usable GPU: " << why;
        write_synthetic_mnist(dir.path(), 200, 50);  // 7 steps per epoch at batch 32
        write_text(model(), kModel);
    }
    std::string model() const { return dir.file("model.txt"); }
    std::string base() const { return "train --quiet --device cuda --model " + model() + " --data " + dir.path(); }
    TempDir dir;
};

TEST_F(GpuDiagnoses, MseOnSoftmaxWarnsAtStepZeroAndStillLogsEveryStep) {
    std::string log = dir.file("mse.jsonl");
    RunResult r = run_cutrain(base() + " --loss mse --log-jsonl " + log);
    ASSERT_EQ(r.exit_code, 0) << r.out;
    auto d = diagnoses(log);
    ASSERT_EQ(d.size(), 1u) << all_codes(log);
    EXPECT_EQ(d[0].code, "LOSS_OUTPUT_MISMATCH");
    EXPECT_EQ(d[0].step, 0.0);
    EXPECT_EQ(d[0].layer, "dense2");
    auto steps = jsonl_of_type(log, "step");
    ASSERT_EQ(steps.size(), 7u);
    for (size_t i = 0; i < steps.size(); ++i) {
        EXPECT_EQ(json_number(steps[i], "step"), (double)(i + 1));
        EXPECT_TRUE(std::isfinite(json_number(steps[i], "loss"))) << steps[i];
    }
}

TEST_F(GpuDiagnoses, HealthyRunSaysNothing) {
    std::string log = dir.file("fit.jsonl");
    ASSERT_EQ(run_cutrain(base() + " --epochs 4 --log-jsonl " + log).exit_code, 0);
    EXPECT_TRUE(diagnoses(log).empty()) << all_codes(log);
}

// Adam at 1e-10: the update ratio from the GPU's reduction is tiny (it keeps
// its sums in double, so 1e-9-scale ratios do not round to zero), and the
// loss stays at ln 10.
TEST_F(GpuDiagnoses, TinyLearningRateVanishesAndStaysAtChance) {
    write_synthetic_mnist(dir.path(), 640, 50);  // 20 steps per epoch
    std::string log = dir.file("tiny.jsonl");
    RunResult r = run_cutrain(base() + " --optimizer adam --lr 1e-10 --epochs 15 --max-steps 300 --log-jsonl " + log);
    ASSERT_EQ(r.exit_code, 0) << r.out;
    auto steps = jsonl_of_type(log, "step");
    ASSERT_EQ(steps.size(), 300u);
    for (const auto &s : steps) {
        double ratio = json_number(s, "update_ratio");
        EXPECT_GT(ratio, 0.0) << s;
        EXPECT_LT(ratio, 1e-7) << s;
    }
    auto v = with_code(log, "VANISHING_UPDATES");
    ASSERT_EQ(v.size(), 1u) << all_codes(log);
    EXPECT_EQ(v[0].step, 100.0);
    EXPECT_TRUE(has(v[0].message, "The learning rate 1e-10 is far too small for adam")) << v[0].message;
    auto c = with_code(log, "LOSS_AT_CHANCE");
    ASSERT_EQ(c.size(), 1u) << all_codes(log);
    EXPECT_EQ(c[0].step, 200.0);
    EXPECT_EQ(diagnoses(log).size(), 2u) << all_codes(log);
}

TEST_F(GpuDiagnoses, DeadReluLayerIsNamedAfterTheDeadWindow) {
    ct_dataset train = synthetic_dataset(320, 8, 10, 1);  // 10 steps per epoch
    Net net(model(), 7, CT_DEVICE_CUDA);
    ASSERT_NE(net.be, nullptr) << net.err.msg;
    std::vector<float> p = net.params();
    const ct_layer &l = net.m.layers[net.m.param_layer[0]];
    for (int u = 0; u < l.out_dim; ++u) p[l.b_off + (size_t)u] = -100.0f;  // no unit ever active
    ct_model_set_params(&net.m, p.data());
    Outcome o = train_api(net, &train, nullptr, net.options(6), dir.file("dead.jsonl"));
    ASSERT_EQ(o.code, CT_EXIT_OK) << o.err;
    auto d = with_code(o.jsonl, "DEAD_LAYER");
    ASSERT_EQ(d.size(), 1u) << all_codes(o.jsonl);
    EXPECT_EQ(d[0].step, 50.0);
    EXPECT_EQ(d[0].layer, "dense1");
    for (const std::string &s : jsonl_of_type(o.jsonl, "step")) {
        EXPECT_TRUE(has_flag(s, "ZERO_GRAD")) << s;
        EXPECT_TRUE(has(s, "\"dense1\":0,")) << s;
    }
    std::vector<float> after = net.params();
    for (size_t i = l.w_off; i < l.b_off + (size_t)l.out_dim; ++i) ASSERT_EQ(after[i], p[i]) << i;
    ct_dataset_free(&train);
}

TEST_F(GpuDiagnoses, InputSpikeExplodesTheGradientAtThatStep) {
    Net net(model(), 7, CT_DEVICE_CUDA);
    ASSERT_NE(net.be, nullptr) << net.err.msg;
    Source src(40);
    src.spike = 29;  // step 30
    src.factor = 1e4f;
    src.spike_shifts_labels = true;
    ct_data_source ds = src.source("spiky");
    Outcome o = train_api(net, nullptr, &ds, net.options(1), dir.file("spike.jsonl"));
    ASSERT_EQ(o.code, CT_EXIT_OK) << o.err;
    auto d = with_code(o.jsonl, "EXPLODING_GRADIENTS");
    ASSERT_EQ(d.size(), 1u) << all_codes(o.jsonl);
    EXPECT_EQ(d[0].step, 30.0);
    EXPECT_TRUE(has(d[0].message, "Add --clip-grad-norm")) << d[0].message;
    EXPECT_TRUE(with_code(o.jsonl, "NONFINITE_GRAD").empty()) << all_codes(o.jsonl);
}

TEST_F(GpuDiagnoses, AllEmptyEpochStopsWithEmptyDataNamingTheSource) {
    Net net(model(), 7, CT_DEVICE_CUDA);
    ASSERT_NE(net.be, nullptr) << net.err.msg;
    std::vector<float> before = net.params();
    Source src(8);
    src.all_empty = true;
    ct_data_source ds = src.source("my-loader");
    Outcome o = train_api(net, nullptr, &ds, net.options(3), dir.file("empty.jsonl"));
    ASSERT_EQ(o.code, CT_EXIT_HEALTH_STOP) << o.err;
    auto d = diagnoses(o.jsonl);
    ASSERT_EQ(d.size(), 1u) << all_codes(o.jsonl);
    EXPECT_EQ(d[0].code, "EMPTY_DATA");
    EXPECT_EQ(d[0].step, 8.0);
    for (const std::string &s : jsonl_of_type(o.jsonl, "step")) EXPECT_TRUE(has_flag(s, "EMPTY_BATCH")) << s;
    EXPECT_EQ(net.params(), before);
}

// --on-nan skip on the device: the optimizer reads the reduction's flag
// word and leaves weights and Adam's moments untouched on that step.
TEST_F(GpuDiagnoses, OnNanSkipKeepsWeightsAndOptimizerStateFinite) {
    std::string log = dir.file("skip.jsonl"), w = dir.file("skip.st");
    RunResult r = run_cutrain(base() + " --epochs 3 --seed 5 --inject-nan 3 --on-nan skip --save " + w +
                              " --log-jsonl " + log);
    ASSERT_EQ(r.exit_code, 0) << r.out;
    auto d = diagnoses(log);
    ASSERT_EQ(d.size(), 1u) << all_codes(log);
    EXPECT_EQ(d[0].code, "NONFINITE_GRAD");
    EXPECT_EQ(d[0].step, 3.0);
    auto steps = jsonl_of_type(log, "step");
    ASSERT_EQ(steps.size(), 21u);
    EXPECT_TRUE(has_flag(steps[2], "SKIPPED_UPDATE")) << steps[2];
    EXPECT_EQ(json_number(steps[2], "update_ratio"), 0.0);
    std::vector<float> v = safetensors_values(w);
    ASSERT_EQ(v.size(), 3u * (64u * 16 + 16 + 16 * 10 + 10));
    size_t bad = 0;
    for (float x : v) bad += !std::isfinite(x);
    EXPECT_EQ(bad, 0u);
}

}  // namespace
