// Fresh random test inputs (seeded, never all zeros) for the op tests.
#pragma once

#include <cstdint>
#include <random>
#include <vector>

namespace ct_test {

inline std::vector<float> random_vec(std::mt19937 &g, size_t n, float lo = -1.0f, float hi = 1.0f) {
    std::uniform_real_distribution<float> d(lo, hi);
    std::vector<float> v(n);
    for (auto &x : v) x = d(g);
    return v;
}

inline std::vector<int32_t> random_labels(std::mt19937 &g, int rows, int classes) {
    std::uniform_int_distribution<int32_t> d(0, classes - 1);
    std::vector<int32_t> v((size_t)rows);
    for (auto &x : v) x = d(g);
    return v;
}

}  // namespace ct_test
