// The CPU backend's AVX2 and AVX-512 twins (kernels/cpu/simd_cpu.h, reduce_lanes.h) give
// the reference's bits, and the reference computes what its header says.
//
// The lane reductions are compared directly, both twins in one process, on
// random data salted with the values that take the masked paths (NaN, +-Inf,
// +-0, denormals, +-FLT_MAX) at lengths around the 8-lane block and at
// unaligned starts. The optimizer rules' twins are chosen once per process,
// as are dropout's, so they are compared end to end: the same training run
// with CUTRAIN_CPU_SIMD=auto, avx2 and generic must write the same records and
// the same weights.
#include <gtest/gtest.h>

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "kernels/cpu/reduce_lanes.h"
#include "kernels/cpu/simd_cpu.h"
#include "support/fixtures.h"

using namespace ct_test;

namespace {

const size_t kLengths[] = {0, 1, 7, 8, 9, 15, 16, 17, 31, 33, 1000, 1024, 1031, 100003};

// Normal-ish gradients with the special values salted in at random places.
std::vector<float> salted(size_t n, uint32_t seed) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> normal(0.0f, 1e-2f);
    std::uniform_int_distribution<int> pick(0, 40);
    const float specials[] = {NAN, INFINITY, -INFINITY, 0.0f, -0.0f, 1e-40f, -1e-42f, FLT_MAX, -FLT_MAX, FLT_MIN};
    std::vector<float> v(n);
    for (auto &x : v) {
        const int p = pick(rng);
        x = p < 10 ? specials[p] : normal(rng);
    }
    return v;
}

bool same_bits(double a, double b) { return std::memcmp(&a, &b, sizeof a) == 0; }

bool have_avx2() {
#if CT_HAVE_X86_SIMD
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("popcnt");
#else
    return false;
#endif
}

TEST(SimdTwins, GradPartialReferenceComputesItsDefinition) {
    for (size_t n : kLengths) {
        const std::vector<float> g = salted(n, 11u + (uint32_t)n);
        long double sumsq = 0;
        double max_abs = 0;
        uint64_t nonfinite = 0, zeros = 0;
        for (float x : g) {
            if (!std::isfinite(x)) {
                ++nonfinite;
                continue;
            }
            if (x == 0.0f) ++zeros;
            sumsq += (long double)x * (long double)x;
            max_abs = std::fmax(max_abs, std::fabs((double)x));
        }
        const ct_grad_partial p = cpu_grad_partial_ref(g.data(), n);
        SCOPED_TRACE("n = " + std::to_string(n));
        EXPECT_EQ(p.nonfinite, nonfinite);
        EXPECT_EQ(p.zeros, zeros);
        EXPECT_EQ(p.max_abs, max_abs);  // a maximum does not round
        // FLT_MAX^2 is far inside double's range; n squares, each exact,
        // summed in 8 lanes: relative error below n * 2^-53.
        EXPECT_NEAR((double)sumsq, p.sumsq, (double)sumsq * 1e-15 * (double)(n + 1));
    }
}

TEST(SimdTwins, GradPartialAvx2GivesTheReferenceBits) {
    if (!have_avx2()) GTEST_SKIP() << "this CPU has no AVX2: only the reference runs here";
    for (size_t n : kLengths)
        for (size_t offset : {0, 1, 3}) {  // unaligned starts, as layers begin anywhere in the arena
            const std::vector<float> buf = salted(n + offset, 23u + (uint32_t)(n * 4 + offset));
            const float *g = buf.data() + offset;
            const ct_grad_partial r = cpu_grad_partial_ref(g, n), v = cpu_grad_partial_avx2(g, n);
            SCOPED_TRACE("n = " + std::to_string(n) + ", offset " + std::to_string(offset));
            EXPECT_TRUE(same_bits(r.sumsq, v.sumsq)) << r.sumsq << " vs " << v.sumsq;
            EXPECT_TRUE(same_bits(r.max_abs, v.max_abs)) << r.max_abs << " vs " << v.max_abs;
            EXPECT_EQ(r.nonfinite, v.nonfinite);
            EXPECT_EQ(r.zeros, v.zeros);
        }
}

// Old and new weights of an update: the sums go on across calls of 1024
// (the optimizer's block) and end with a partial one.
void update_pair(size_t n, uint32_t seed, std::vector<float> *w0, std::vector<float> *w1) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> w(0.0f, 0.1f), step(0.0f, 1e-4f);
    w0->resize(n);
    w1->resize(n);
    for (size_t i = 0; i < n; ++i) {
        (*w0)[i] = w(rng);
        (*w1)[i] = (*w0)[i] + step(rng);
    }
}

template <typename F>
ct_update_lanes update_in_blocks(F f, const std::vector<float> &w0, const std::vector<float> &w1) {
    ct_update_lanes ls;
    std::memset(&ls, 0, sizeof ls);
    for (size_t b = 0; b < w0.size(); b += 1024) {
        const size_t len = std::min<size_t>(1024, w0.size() - b);
        f(&ls, w0.data() + b, w1.data() + b, len);
    }
    return ls;
}

TEST(SimdTwins, UpdateLanesReferenceComputesItsDefinition) {
    for (size_t n : kLengths) {
        std::vector<float> w0, w1;
        update_pair(n, 5u + (uint32_t)n, &w0, &w1);
        long double p = 0, u = 0;
        for (size_t i = 0; i < n; ++i) {
            const long double d = (long double)((double)w1[i] - (double)w0[i]);
            p += (long double)w0[i] * (long double)w0[i];
            u += d * d;
        }
        const ct_update_lanes ls = update_in_blocks(cpu_update_lanes_ref, w0, w1);
        SCOPED_TRACE("n = " + std::to_string(n));
        EXPECT_NEAR((double)p, cpu_lanes_sum(ls.p), (double)p * 1e-15 * (double)(n + 1));
        EXPECT_NEAR((double)u, cpu_lanes_sum(ls.u), (double)u * 1e-15 * (double)(n + 1));
        // Element i lands in lane i % 8: the first element alone fills lane 0.
        if (n == 1) EXPECT_EQ(ls.p[0], (double)w0[0] * (double)w0[0]);
    }
}

TEST(SimdTwins, UpdateLanesAvx2GivesTheReferenceBits) {
    if (!have_avx2()) GTEST_SKIP() << "this CPU has no AVX2: only the reference runs here";
    for (size_t n : kLengths) {
        std::vector<float> w0, w1;
        update_pair(n, 7u + (uint32_t)n, &w0, &w1);
        const ct_update_lanes r = update_in_blocks(cpu_update_lanes_ref, w0, w1);
        const ct_update_lanes v = update_in_blocks(cpu_update_lanes_avx2, w0, w1);
        SCOPED_TRACE("n = " + std::to_string(n));
        for (int k = 0; k < CT_LANES; ++k) {
            EXPECT_TRUE(same_bits(r.p[k], v.p[k])) << "lane " << k;
            EXPECT_TRUE(same_bits(r.u[k], v.u[k])) << "lane " << k;
        }
    }
}

// The environment variable is read once per process, so the two runs are
// two processes.
struct RunOutput {
    std::vector<std::string> records;
    std::vector<uint8_t> tensors;
};

RunOutput train_once(const std::string &args, const std::string &dir, const std::string &level) {
    const std::string log = dir + "/" + level + ".jsonl", weights = dir + "/" + level + ".safetensors";
    RunResult r;
    {
        ScopedEnv simd("CUTRAIN_CPU_SIMD", level.c_str());
        r = run_cutrain(args + " --log-jsonl " + log + " --save " + weights);
    }
    EXPECT_EQ(r.exit_code, 0) << r.out;
    RunOutput o;
    o.records = untimed_of_type(log, "step");
    for (const std::string &s : untimed_of_type(log, "epoch")) o.records.push_back(s);
    // The tensors (weights and optimizer state), not the header: its
    // metadata holds the run's training time.
    const std::vector<uint8_t> file = read_file(weights);
    uint64_t header = 0;
    if (file.size() >= 8)
        for (int i = 7; i >= 0; --i) header = header << 8 | file[(size_t)i];
    EXPECT_LE(8 + header, file.size()) << weights;
    if (8 + header <= file.size()) o.tensors.assign(file.begin() + 8 + (ptrdiff_t)header, file.end());
    return o;
}

class SimdTwinsTrain : public ::testing::TestWithParam<const char *> {};

// auto is the best level this CPU has (AVX-512 where it has it), avx2 caps
// it at AVX2, generic runs the references: every optimizer rule, dropout
// and the statistics must come out the same at each.
TEST_P(SimdTwinsTrain, EveryLevelWritesTheSameRecordsAndWeights) {
    if (!have_avx2()) GTEST_SKIP() << "this CPU has no AVX2: every level would take the reference path";
    TempDir dir;
    write_synthetic_mnist(dir.path(), 96, 32);
    const std::string model = dir.file("model.txt");
    write_text(model, std::string("input 64\ndense 24 relu\ndropout 0.3\ndense 10 softmax\n") + GetParam() +
                          "\nbatch_size 32\n");
    const std::string args = "train --quiet --device cpu --threads 1 --seed 3 --epochs 2 --data " + dir.path() +
                             " --model " + model;
    const RunOutput best = train_once(args, dir.path(), "auto");
    ASSERT_EQ(best.records.size(), 8u);  // 3 steps and an epoch record, twice
    EXPECT_FALSE(best.tensors.empty());
    for (const char *level : {"avx2", "generic"}) {
        const RunOutput o = train_once(args, dir.path(), level);
        EXPECT_EQ(best.records, o.records) << level;
        EXPECT_TRUE(best.tensors == o.tensors) << level << ": the checkpoints hold different weights or optimizer state";
    }
}

// A typo in the variable is an error that names it, not silently the default.
TEST(SimdTwins, AnUnknownValueIsAUsageErrorNamingTheVariable) {
    TempDir dir;
    write_synthetic_mnist(dir.path(), 64, 32);
    write_text(dir.file("model.txt"), "input 64\ndense 10 softmax\n");
    const std::string args =
        "train --quiet --device cpu --max-steps 1 --model " + dir.file("model.txt") + " --data " + dir.path();
    for (const char *bad : {"off", "avx512", "GENERIC"}) {
        RunResult r;
        {
            ScopedEnv simd("CUTRAIN_CPU_SIMD", bad);
            r = run_cutrain(args);
        }
        EXPECT_EQ(r.exit_code, 2) << bad << ": " << r.out;
        EXPECT_NE(r.out.find(std::string("CUTRAIN_CPU_SIMD=") + bad), std::string::npos) << r.out;
        EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 1) << r.out;
    }
    for (const char *good : {"auto", "avx2", "generic", ""}) {
        RunResult ok;
        {
            ScopedEnv simd("CUTRAIN_CPU_SIMD", good);
            ok = run_cutrain(args);
        }
        EXPECT_EQ(ok.exit_code, 0) << good << ": " << ok.out;
    }
}

const char *const kRules[] = {"optimizer adam lr=0.01",
                              "optimizer adamw lr=0.01 weight_decay=0.05",
                              "optimizer sgd lr=0.1 momentum=0.9 nesterov=1",
                              "optimizer sgd lr=0.1",
                              "optimizer rmsprop lr=0.01 momentum=0.5",
                              "optimizer adam lr=0.01 clipnorm=0.05"};
const char *const kRuleNames[] = {"adam", "adamw", "sgd_nesterov", "sgd", "rmsprop", "adam_clipped"};

std::string rule_name(const ::testing::TestParamInfo<const char *> &i) { return kRuleNames[i.index]; }

INSTANTIATE_TEST_SUITE_P(Rules, SimdTwinsTrain, ::testing::ValuesIn(kRules), rule_name);

}  // namespace
