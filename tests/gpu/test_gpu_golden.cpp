// The GPU goldens: each preset of tests/fixtures/golden/, rerun on the GPU
// with its .args (--device cuda in place of --device cpu --threads N, as
// tools/gpu-check's repro stage runs it), must match
// tests/fixtures/golden/gpu/PRESET.jsonl bit for bit. Those traces come from
// that repro stage on a GPU machine and are installed with
// `tools/regen-goldens --gpu-from DIR` (docs/regression-testing.md).
//
// Tolerance: none. docs/determinism.md promises the same bits on one GPU
// model with one CUDA/cuBLAS/cuDNN version (fixed-order reductions; cuBLAS
// with no atomics and a fixed workspace; cuDNN algorithms chosen once by
// heuristics). So a difference on the GPU the golden was recorded on means
// the code or a library changed how training computes: a deliberate change
// re-records the golden, anything else is a bug to find. On another GPU
// (the summary's "device": name, architecture, SM count) nothing is
// promised, and the test says so and skips; tools/gpu-check's repro stage
// compares such runs with the CPU golden's tolerances instead.
//
// The CUDA path settings are cleared for the rerun: the goldens are the
// default paths' (CUTRAIN_CUDA_DENSE_CHAIN and CUTRAIN_CUDA_CONV_BACKWARD
// choose other summation orders).
#include <gtest/gtest.h>

#include <stdlib.h>

#include <fstream>
#include <string>

#include "support/fixtures.h"

using namespace ct_test;

namespace {

std::string golden_dir() { return std::string(CT_FIXTURES_DIR) + "/golden"; }

std::string first_line(const std::string &path) {
    std::ifstream f(path);
    std::string line;
    std::getline(f, line);
    return line;
}

// The CPU golden's flags with the GPU's device: --device cpu becomes
// --device cuda and --threads N goes.
std::string gpu_flags(std::string flags) {
    const std::string cpu = "--device cpu";
    const size_t at = flags.find(cpu);
    if (at != std::string::npos) flags.replace(at, cpu.size(), "--device cuda");
    const size_t t = flags.find("--threads ");
    if (t != std::string::npos) {
        size_t end = flags.find(' ', t + 10);
        flags.erase(t, end == std::string::npos ? std::string::npos : end - t + 1);
    }
    return flags;
}

class GpuGolden : public ::testing::TestWithParam<const char *> {
  protected:
    void SetUp() override {
        char why[512] = "";
        if (!ct_cuda_available(why, sizeof why)) GTEST_SKIP() << "no usable GPU: " << why;
        data = mnist_dir();
        if (data.empty()) GTEST_SKIP() << "no MNIST: run tools/fetch-mnist or set CUTRAIN_MNIST_DIR";
    }
    std::string data;
    TempDir dir;
};

TEST(GpuGoldenFlags, AreTheCpuGoldensWithTheGpuDevice) {
    // Runs everywhere: the rewrite the GPU test relies on.
    EXPECT_EQ(gpu_flags("--model mlp --device cpu --threads 1 --seed 0 --max-steps 40"),
              "--model mlp --device cuda --seed 0 --max-steps 40");
    EXPECT_EQ(gpu_flags("--model cnn --device cpu --seed 0 --threads 12"), "--model cnn --device cuda --seed 0 ");
    for (const char *p : {"seed", "mlp", "cnn"}) {
        const std::string flags = gpu_flags(first_line(golden_dir() + "/" + p + ".args"));
        EXPECT_NE(flags.find("--device cuda"), std::string::npos) << p << ": " << flags;
        EXPECT_EQ(flags.find("--threads"), std::string::npos) << p << ": " << flags;
        EXPECT_EQ(flags.find("cpu"), std::string::npos) << p << ": " << flags;
    }
}

TEST_P(GpuGolden, RerunMatchesTheGpuGoldenBitForBit) {
    const std::string preset = GetParam();
    const std::string golden = golden_dir() + "/gpu/" + preset + ".jsonl";
    const auto golden_steps = jsonl_of_type(golden, "step");
    if (golden_steps.empty())
        GTEST_SKIP() << "no GPU golden for " << preset << " yet (" << golden
                     << "): tools/gpu-check --stages repro brings the traces back, tools/regen-goldens --gpu-from "
                        "installs them";
    const std::string log = dir.file(preset + ".jsonl");
    unsetenv("CUTRAIN_CUDA_DENSE_CHAIN");
    unsetenv("CUTRAIN_CUDA_CONV_BACKWARD");
    RunResult r = run_cutrain("train --quiet --data " + data + " --log-jsonl " + log + " " +
                              gpu_flags(first_line(golden_dir() + "/" + preset + ".args")));
    ASSERT_EQ(r.exit_code, 0) << r.out;
    const auto g_sum = jsonl_of_type(golden, "summary"), r_sum = jsonl_of_type(log, "summary");
    ASSERT_EQ(g_sum.size(), 1u) << golden;
    ASSERT_EQ(r_sum.size(), 1u) << log;
    const std::string recorded_on = json_string(g_sum[0], "device"), here = json_string(r_sum[0], "device");
    if (recorded_on != here)
        GTEST_SKIP() << preset << "'s GPU golden was recorded on " << recorded_on << "; this is " << here
                     << ": bits are promised on one GPU model only (docs/determinism.md)";
    r = run_cutrain("check " + log + " --golden " + golden);
    EXPECT_EQ(r.exit_code, 0) << r.out
                              << "On the GPU the golden was recorded on, any difference is a change in how training "
                                 "computes; if it is deliberate, see docs/regression-testing.md.";
    EXPECT_EQ(r.out, std::to_string(golden_steps.size()) + " step records, 1 epoch record and 0 diagnosis records match\n");
}

INSTANTIATE_TEST_SUITE_P(Presets, GpuGolden, ::testing::Values("seed", "mlp", "cnn"),
                         [](const ::testing::TestParamInfo<const char *> &info) { return std::string(info.param); });

}  // namespace
