// cutrain bench on small synthetic data: the JSON contract and time to
// accuracy. (What the figures are is measured in benchmarks/, never here.)
#include <gtest/gtest.h>

#include <cmath>

#include "support/fixtures.h"

using namespace ct_test;

namespace {

class Bench : public ::testing::Test {
  protected:
    void SetUp() override {
        write_synthetic_mnist(dir.path(), 300, 100);
        write_text(dir.file("model.txt"), "input 64\ndense 16 relu\ndense 10 softmax\noptimizer adam lr=0.01\nbatch_size 32\n");
    }
    std::string base() const {
        return "bench --quiet --device cpu --threads 1 --model " + dir.file("model.txt") + " --data " + dir.path();
    }
    TempDir dir;
};

TEST_F(Bench, WritesTheFiguresAsJson) {
    std::string json = dir.file("b.json"), init = dir.file("init.safetensors");
    RunResult r = run_cutrain(base() + " --steps 20 --warmup 2 --repeats 3 --epochs 1 --json " + json +
                              " --save-init " + init);
    ASSERT_EQ(r.exit_code, 0) << r.out;
    auto lines = read_lines(json);
    ASSERT_EQ(lines.size(), 1u);
    for (const char *key : {"samples_per_s", "samples_per_s_min", "samples_per_s_max", "steps_per_s", "epoch_s"})
        EXPECT_GT(json_number(lines[0], key), 0.0) << key;
    EXPECT_TRUE(std::isfinite(json_number(lines[0], "stats_overhead")));
    EXPECT_EQ(json_number(lines[0], "batch_size"), 32.0);
    EXPECT_LE(json_number(lines[0], "samples_per_s_min"), json_number(lines[0], "samples_per_s"));
    EXPECT_GE(json_number(lines[0], "samples_per_s_max"), json_number(lines[0], "samples_per_s"));
    EXPECT_NE(lines[0].find("\"device\":\"cpu"), std::string::npos);
    EXPECT_NE(lines[0].find("\"epoch_s_measured\":true"), std::string::npos);
    // The initial weights are the model's, readable as safetensors.
    ct_st_file f;
    ct_error err;
    ct_error_clear(&err);
    ASSERT_EQ(ct_safetensors_read(init.c_str(), &f, &err), 0) << err.msg;
    const ct_st_tensor *w = ct_safetensors_find(&f, "dense1.weight");
    ASSERT_NE(w, nullptr);
    EXPECT_EQ(w->shape[0], 16u);
    EXPECT_EQ(w->shape[1], 64u);
    ct_safetensors_free(&f);
}

TEST_F(Bench, TimeToAccuracyOverSeeds) {
    std::string json = dir.file("tta.json");
    RunResult r = run_cutrain(base() + " --time-to-accuracy 0.9 --seeds 2 --max-epochs 20 --json " + json);
    ASSERT_EQ(r.exit_code, 0) << r.out;
    auto lines = read_lines(json);
    ASSERT_EQ(lines.size(), 2u);
    for (auto &l : lines) {
        EXPECT_NE(l.find("\"reached\":true"), std::string::npos) << l;
        EXPECT_GE(json_number(l, "test_acc"), 0.9);
        EXPECT_GT(json_number(l, "train_seconds"), 0.0);
    }
    EXPECT_NE(json_number(lines[0], "seed"), json_number(lines[1], "seed"));
}

TEST_F(Bench, RejectsNonsense) {
    RunResult r = run_cutrain(base() + " --repeats 0");
    EXPECT_EQ(r.exit_code, CT_EXIT_USAGE) << r.out;
    EXPECT_NE(r.out.find("--repeats"), std::string::npos);
    r = run_cutrain(base() + " --time-to-accuracy 1.5");
    EXPECT_EQ(r.exit_code, CT_EXIT_USAGE) << r.out;
}

}  // namespace
