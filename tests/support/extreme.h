// Inputs at the edges of float, shared by the CPU stability tests
// (tests/unit/test_stability.cpp) and their GPU parity twins
// (tests/parity/test_parity.cpp), so both backends see the same cases.
#pragma once

#include <cstdint>
#include <vector>

namespace ct_test {

// Rows of 10 logits with their labels: +-1e4 one-hot both ways, alternating
// +-1e4, 1e4 - k (large logits a unit apart), all equal at 1e4, -1e4 and 0,
// +-1e30, and a mix of small values with two equal maxima of 1e4.
constexpr int kExtremeClasses = 10;
void extreme_logit_rows(std::vector<float> &z, std::vector<int32_t> &labels);

// Gradients for Adam: tiny (1e-30, whose square underflows; 1e-38; the
// denormals 1e-40 and 2^-149; 0), huge within float (|g| <= 1.8e19, whose
// square fits) and past it (1e30, -1e30, 3e38, whose square does not, then
// an ordinary 0.5 beside them).
std::vector<float> tiny_gradients();
std::vector<float> huge_gradients_within_float();
std::vector<float> huge_gradients_past_float();

}  // namespace ct_test
