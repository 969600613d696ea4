#include "support/extreme.h"

#include <cmath>

namespace ct_test {

void extreme_logit_rows(std::vector<float> &z, std::vector<int32_t> &labels) {
    const int C = kExtremeClasses;
    z.clear();
    labels.clear();
    auto row = [&](const std::vector<float> &v, int label) {
        z.insert(z.end(), v.begin(), v.end());
        labels.push_back(label);
    };
    std::vector<float> one_hot_big(C, -1e4f);
    one_hot_big[0] = 1e4f;
    row(one_hot_big, 0);  // the label holds the only maximum: loss 0
    row(one_hot_big, 3);  // 2e4 below it: e^-2e4 vanishes, the loss does not
    std::vector<float> last_big(C, -1e4f);
    last_big[C - 1] = 1e4f;
    row(last_big, C - 1);
    std::vector<float> alternating(C);
    for (int c = 0; c < C; ++c) alternating[(size_t)c] = c % 2 ? -1e4f : 1e4f;
    row(alternating, 1);  // 2e4 + log 5
    std::vector<float> close(C);
    for (int c = 0; c < C; ++c) close[(size_t)c] = 1e4f - (float)c;  // exact floats a unit apart
    row(close, C - 1);  // log sum e^-k + 9: the offset must cancel exactly
    row(std::vector<float>(C, 1e4f), 4);   // all equal: log 10
    row(std::vector<float>(C, -1e4f), 0);  // all equal: log 10, correct (ties to 0)
    row(std::vector<float>(C, 0.0f), 9);
    std::vector<float> huge(C, 0.0f);
    huge[2] = 1e30f;
    huge[5] = -1e30f;
    row(huge, 5);  // 2e30: still a float
    row(huge, 7);  // 1e30
    row({-3.5f, 2.25f, 1e4f, 0.5f, -1e4f, 4.75f, -0.125f, 1e4f, 3.0f, -2.0f}, 7);  // two maxima, label the second
}

std::vector<float> tiny_gradients() {
    return {1e-30f, -1e-30f, 1e-38f, 1e-40f, -std::ldexp(1.0f, -149), 0.0f, 1e-30f};
}

std::vector<float> huge_gradients_within_float() { return {1e18f, -1e18f, 1.8e19f, 3e18f}; }

std::vector<float> huge_gradients_past_float() { return {1e30f, -1e30f, 3e38f, 0.5f}; }

}  // namespace ct_test
