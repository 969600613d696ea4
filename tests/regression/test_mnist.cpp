// The reference models on real MNIST, on the CPU, through the command:
// the accuracy bars of the foundation issue. Needs the data (tools/setup
// puts it in data/mnist); skipped, not passed, without it.
#include <gtest/gtest.h>

#include "support/fixtures.h"

using namespace ct_test;

namespace {

class Mnist : public ::testing::Test {
  protected:
    void SetUp() override {
        data = mnist_dir();
        if (data.empty()) GTEST_SKIP() << "no MNIST: run tools/fetch-mnist or set CUTRAIN_MNIST_DIR";
    }
    std::string data;
    TempDir dir;
};

TEST_F(Mnist, MlpOneEpochReaches96Percent) {
    std::string log = dir.file("mlp.jsonl");
    RunResult r = run_cutrain("train --quiet --model mlp --data " + data +
                              " --epochs 1 --device cpu --seed 7 --log-jsonl " + log);
    ASSERT_EQ(r.exit_code, 0) << r.out;
    EXPECT_EQ(jsonl_of_type(log, "step").size(), 469u);  // ceil(60000 / 128)
    auto sum = jsonl_of_type(log, "summary");
    ASSERT_EQ(sum.size(), 1u);
    double acc = json_number(sum[0], "test_acc");
    EXPECT_GE(acc, 0.96) << sum[0];
    // PyTorch with the same recipe: 96.5-97.1% after one epoch.
    EXPECT_LE(acc, 0.99) << "suspiciously high for one epoch: is the test set the training set?";
    // A healthy preset must not raise false alarms.
    EXPECT_EQ(jsonl_of_type(log, "diagnosis"), std::vector<std::string>{});
}

TEST_F(Mnist, SeedModelTwoEpochsReaches90Percent) {
    std::string log = dir.file("seed.jsonl");
    RunResult r = run_cutrain("train --quiet --model seed --data " + data +
                              " --epochs 2 --device cpu --seed 7 --log-jsonl " + log);
    ASSERT_EQ(r.exit_code, 0) << r.out;
    EXPECT_EQ(jsonl_of_type(log, "step").size(), 2u * 1875u);  // 60000 / 32
    double acc = json_number(jsonl_of_type(log, "summary").at(0), "test_acc");
    EXPECT_GE(acc, 0.90);
    EXPECT_EQ(jsonl_of_type(log, "diagnosis"), std::vector<std::string>{});
}

}  // namespace

namespace {

// The CNN on the CPU, shortened to one epoch to keep CI's run in minutes
// (the 3-epoch >= 99.0% runs are recorded in benchmarks/results/); a 1-epoch
// run of the preset measured 98.73% here, so the bar is 98.0%.
TEST_F(Mnist, CnnOneEpochOnTheCpuReaches98Percent) {
    std::string log = dir.file("cnn.jsonl");
    RunResult r = run_cutrain("train --quiet --model cnn --data " + data +
                              " --epochs 1 --device cpu --seed 1 --log-jsonl " + log);
    ASSERT_EQ(r.exit_code, 0) << r.out;
    EXPECT_EQ(jsonl_of_type(log, "step").size(), 938u);  // ceil(60000 / 64)
    EXPECT_GE(json_number(jsonl_of_type(log, "summary").at(0), "test_acc"), 0.98);
    EXPECT_EQ(jsonl_of_type(log, "diagnosis"), std::vector<std::string>{});
}

}  // namespace
