// Fashion-MNIST (Debian's dataset-fashion-mnist, which tools/setup installs):
// the same IDX format, so --data pointed at it just works.
#include <gtest/gtest.h>

#include "support/fixtures.h"

using namespace ct_test;

namespace {

const char *kFashion = "/usr/share/datasets/fashion-mnist";

TEST(Fashion, MlpOneEpochOnFashionMnist) {
    if (!file_exists(std::string(kFashion) + "/train-images-idx3-ubyte.gz"))
        GTEST_SKIP() << "no Fashion-MNIST: apt-get install dataset-fashion-mnist (tools/setup does)";
    TempDir dir;
    std::string log = dir.file("fashion.jsonl");
    RunResult r = run_cutrain(std::string("train --quiet --model mlp --device cpu --seed 7 --epochs 1 --data ") +
                              kFashion + " --log-jsonl " + log);
    ASSERT_EQ(r.exit_code, 0) << r.out;
    EXPECT_EQ(jsonl_of_type(log, "step").size(), 469u);
    // PyTorch's MLP on Fashion-MNIST: about 84-86% after one epoch.
    EXPECT_GE(json_number(jsonl_of_type(log, "summary").at(0), "test_acc"), 0.82);
    EXPECT_EQ(jsonl_of_type(log, "diagnosis"), std::vector<std::string>{});
}

}  // namespace
