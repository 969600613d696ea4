// The fault matrix of the hardening issue, shared by the CPU suite
// (tests/unit/test_fault_matrix.cpp) and the GPU suite (tests/gpu/): a NaN,
// +Inf, -Inf or an all-zero gradient planted with --inject-nan/--inject-kind
// in a chosen layer at a chosen step must be found at exactly that step and
// in that layer, and nowhere else.
#pragma once

#include <gtest/gtest.h>

#include <string>
#include <tuple>

#include "support/diagnostics.h"
#include "support/fixtures.h"

namespace ct_test {

// 64 -> dense 16 relu -> dense 10 softmax on 200 synthetic items: 7 steps an
// epoch, the 7th a partial batch of 8 rows; step 4 is a graph replay on the GPU.
inline const char *fault_matrix_model() {
    return "input 64\ndense 16 relu\ndense 10 softmax\noptimizer adam lr=0.01\nbatch_size 32\n";
}

// The per-layer gradient norm of a step record as text ("null", "0", or a number).
inline std::string layer_norm_text(const std::string &step, const std::string &layer) {
    std::string key = "\"" + layer + "\":";
    size_t at = step.find("\"layer_grad_norms\":{");
    if (at == std::string::npos) return "?";
    at = step.find(key, at);
    if (at == std::string::npos) return "?";
    at += key.size();
    size_t end = step.find_first_of(",}", at);
    return step.substr(at, end - at);
}

inline void check_planted_fault(const std::string &device, const TempDir &dir, const std::string &kind,
                                const std::string &layer, int step) {
    const std::string other = layer == "dense1" ? "dense2" : "dense1";
    const std::string log = dir.file("fault.jsonl");
    const std::string args = "train --quiet --device " + device + " --model " + dir.file("model.txt") + " --data " +
                             dir.path() + " --epochs 2 --max-steps 9 --inject-nan " + std::to_string(step) + " --inject-kind " +
                             kind + " --inject-layer " + layer + " --log-jsonl " + log;
    const bool zero = kind == "zero";
    // skip: the run goes on with clean weights, so every other step can be
    // seen to be clean (warn would let the NaN into the weights).
    RunResult r = run_cutrain(args + " --on-nan skip");
    ASSERT_EQ(r.exit_code, 0) << r.out;
    auto steps = jsonl_of_type(log, "step");
    ASSERT_EQ(steps.size(), 9u);
    for (size_t i = 0; i < steps.size(); ++i) {
        const std::string &s = steps[i];
        const bool here = (int)i + 1 == step;
        EXPECT_EQ(has_flag(s, "NONFINITE_GRAD"), here && !zero) << s;
        EXPECT_EQ(has_flag(s, "ZERO_GRAD"), here && zero) << s;
        EXPECT_EQ(has_flag(s, "SKIPPED_UPDATE"), here && !zero) << s;
        if (!here) continue;
        EXPECT_EQ(layer_norm_text(s, layer), zero ? "0" : "null") << s;
        const std::string o = layer_norm_text(s, other);
        EXPECT_TRUE(o != "null" && o != "0" && o != "?") << s;  // the other layer is untouched
        EXPECT_EQ(json_number(s, "nonfinite"), zero ? 0.0 : 1.0) << s;
    }
    auto d = diagnoses(log);
    if (zero) {
        EXPECT_TRUE(d.empty()) << all_codes(log);  // one dead step is not a dead layer
    } else {
        ASSERT_EQ(d.size(), 1u) << all_codes(log);
        EXPECT_EQ(d[0].code, "NONFINITE_GRAD");
        EXPECT_EQ(d[0].step, (double)step);
        EXPECT_EQ(d[0].layer, layer);
    }
    if (zero) return;
    // stop (the default): exit 4 at that step, nothing logged after it.
    r = run_cutrain(args);
    EXPECT_EQ(r.exit_code, CT_EXIT_HEALTH_STOP) << r.out;
    EXPECT_EQ(jsonl_of_type(log, "step").size(), (size_t)step);
    auto sum = jsonl_of_type(log, "summary");
    ASSERT_EQ(sum.size(), 1u);
    EXPECT_EQ(json_number(sum[0], "steps"), (double)step);
}

// Every kind x layer x step, for the instantiations' names.
using FaultCase = std::tuple<std::string, std::string, int>;
inline std::string fault_case_name(const ::testing::TestParamInfo<FaultCase> &info) {
    std::string kind = std::get<0>(info.param);
    if (kind == "-inf") kind = "neginf";
    return kind + "_" + std::get<1>(info.param) + "_step" + std::to_string(std::get<2>(info.param));
}
inline auto fault_cases() {
    return ::testing::Combine(::testing::Values("nan", "inf", "-inf", "zero"), ::testing::Values("dense1", "dense2"),
                              ::testing::Values(1, 4, 7));
}

}  // namespace ct_test
