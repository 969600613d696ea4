// What the PyTorch interop (benchmarks/peers/torch_parity.py, docs/interop.md) relies on:
// the batch order the script recomputes in Python, and `cutrain train --init-weights`.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "cutrain/checkpoint.h"
#include "cutrain/data.h"
#include "support/fixtures.h"

using namespace ct_test;

namespace {

// torch_parity.py's SHUFFLE_PINS holds these same numbers and checks its own Fisher-Yates against
// them, so a change to ct_shuffle_indices (or to the script) breaks one side or the other.
struct Pin {
    size_t n;
    uint64_t seed;
    uint32_t epoch;
    int32_t first[8];
    uint64_t weighted_sum;  // sum over i of i * order[i]
};

TEST(ShufflePins, MatchTheParityScript) {
    const Pin pins[] = {
        {60000, 1, 1, {5648, 43251, 28291, 46450, 28522, 46911, 24696, 21841}, 54114803380481ull},
        {1000, 0x123456789abcdefull, 9, {669, 64, 482, 483, 498, 812, 795, 752}, 248607711ull},
        {60000, 0xffffffffffffffffull, 4000000000u, {35420, 4896, 17391, 16223, 2517, 55645, 55452, 1554},
         53940449845779ull},
    };
    for (const Pin &p : pins) {
        std::vector<int32_t> order(p.n);
        ct_shuffle_indices(order.data(), p.n, p.seed, p.epoch);
        for (int i = 0; i < 8; ++i) EXPECT_EQ(order[i], p.first[i]) << "n " << p.n << " position " << i;
        uint64_t sum = 0;
        for (size_t i = 0; i < p.n; ++i) sum += (uint64_t)i * (uint64_t)order[i];
        EXPECT_EQ(sum, p.weighted_sum) << "n " << p.n;
    }
}

const char *kModel = "input 64\ndense 16 relu\ndense 10 softmax\noptimizer adam lr=0.01\nbatch_size 32\n";

class InitWeights : public ::testing::Test {
  protected:
    void SetUp() override {
        write_synthetic_mnist(dir.path(), 200, 50);
        write_text(model(), kModel);
    }
    std::string model() const { return dir.file("model.txt"); }
    std::string train() const {
        return "train --quiet --device cpu --max-steps 3 --model " + model() + " --data " + dir.path();
    }
    // Every weight and bias zero, as a PyTorch user could write them: the logits are then all 0.
    void write_zeros(const std::string &path) {
        static const float zeros[64 * 16] = {0};
        ct_st_tensor t[4];
        std::memset(t, 0, sizeof t);
        const char *names[4] = {"dense1.weight", "dense1.bias", "dense2.weight", "dense2.bias"};
        const uint64_t shapes[4][2] = {{16, 64}, {16, 0}, {10, 16}, {10, 0}};
        for (int i = 0; i < 4; ++i) {
            std::snprintf(t[i].name, sizeof t[i].name, "%s", names[i]);
            t[i].rank = shapes[i][1] ? 2 : 1;
            t[i].shape[0] = shapes[i][0];
            t[i].shape[1] = shapes[i][1];
            t[i].count = shapes[i][0] * (shapes[i][1] ? shapes[i][1] : 1);
            t[i].data = zeros;
        }
        ct_error err;
        ct_error_clear(&err);
        ASSERT_EQ(ct_safetensors_write(path.c_str(), t, 4, nullptr, 0, &err), 0) << err.msg;
    }
    std::vector<double> losses(const std::string &log) {
        std::vector<double> out;
        for (const std::string &l : jsonl_of_type(log, "step")) out.push_back(json_number(l, "loss"));
        return out;
    }
    TempDir dir;
};

TEST_F(InitWeights, TrainingStartsFromTheFile) {
    std::string w = dir.file("zeros.safetensors"), log = dir.file("z.jsonl"), plain = dir.file("p.jsonl");
    write_zeros(w);
    RunResult r = run_cutrain(train() + " --init-weights " + w + " --log-jsonl " + log);
    ASSERT_EQ(r.exit_code, 0) << r.out;
    // All-zero logits: the first loss is ln 10 exactly (up to float), which Glorot weights never give.
    EXPECT_NEAR(losses(log).at(0), std::log(10.0), 1e-6);
    ASSERT_EQ(run_cutrain(train() + " --log-jsonl " + plain).exit_code, 0);
    EXPECT_GT(std::fabs(losses(plain).at(0) - std::log(10.0)), 1e-4);
}

TEST_F(InitWeights, TheSeedsOwnWeightsReproduceTheRunBitForBit) {
    std::string w = dir.file("init.safetensors"), a = dir.file("a.jsonl"), b = dir.file("b.jsonl");
    RunResult r = run_cutrain("bench --quiet --device cpu --steps 1 --warmup 0 --repeats 1 --seed 5 --model " +
                              model() + " --data " + dir.path() + " --save-init " + w);
    ASSERT_EQ(r.exit_code, 0) << r.out;
    ASSERT_EQ(run_cutrain(train() + " --seed 5 --log-jsonl " + a).exit_code, 0);
    ASSERT_EQ(run_cutrain(train() + " --seed 5 --init-weights " + w + " --log-jsonl " + b).exit_code, 0);
    EXPECT_EQ(losses(a).size(), 3u);
    EXPECT_EQ(losses(a), losses(b));
}

TEST_F(InitWeights, BadFilesAreRefusedBeforeAnyOutput) {
    std::string log = dir.file("run.jsonl"), missing = dir.file("missing.safetensors");
    RunResult r = run_cutrain(train() + " --init-weights " + missing + " --log-jsonl " + log);
    EXPECT_EQ(r.exit_code, CT_EXIT_BAD_INPUT) << r.out;
    EXPECT_NE(r.out.find(missing), std::string::npos) << r.out;
    EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 1) << "one line: " << r.out;
    EXPECT_FALSE(file_exists(log));

    // Weights of another model: the message names the tensor and both shapes.
    std::string other = dir.file("other.txt"), w = dir.file("other.safetensors");
    write_text(other, "input 64\ndense 12 relu\ndense 10 softmax\n");
    ASSERT_EQ(run_cutrain("bench --quiet --device cpu --steps 1 --warmup 0 --repeats 1 --model " + other +
                          " --data " + dir.path() + " --save-init " + w)
                  .exit_code,
              0);
    r = run_cutrain(train() + " --init-weights " + w + " --log-jsonl " + log);
    EXPECT_EQ(r.exit_code, CT_EXIT_BAD_INPUT) << r.out;
    EXPECT_NE(r.out.find("dense1.weight"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("[12, 64]"), std::string::npos) << r.out;
    EXPECT_FALSE(file_exists(log));

    // Not a safetensors file at all.
    write_text(dir.file("junk.safetensors"), "not a checkpoint");
    r = run_cutrain(train() + " --init-weights " + dir.file("junk.safetensors"));
    EXPECT_EQ(r.exit_code, CT_EXIT_BAD_INPUT) << r.out;
    EXPECT_NE(r.out.find("junk.safetensors"), std::string::npos) << r.out;
}

TEST_F(InitWeights, ConflictsWithInit) {
    std::string w = dir.file("zeros.safetensors");
    write_zeros(w);
    RunResult r = run_cutrain(train() + " --init he_uniform --init-weights " + w);
    EXPECT_EQ(r.exit_code, CT_EXIT_USAGE) << r.out;
    EXPECT_NE(r.out.find("--init-weights"), std::string::npos) << r.out;
}

}  // namespace
