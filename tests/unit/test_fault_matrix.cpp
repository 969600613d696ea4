// The fault matrix on the CPU backend (tests/support/fault_matrix.h).
#include <gtest/gtest.h>

#include "support/fault_matrix.h"

using namespace ct_test;

namespace {

class FaultMatrix : public ::testing::TestWithParam<FaultCase> {
  protected:
    void SetUp() override {
        write_synthetic_mnist(dir.path(), 200, 50);
        write_text(dir.file("model.txt"), fault_matrix_model());
    }
    TempDir dir;
};

TEST_P(FaultMatrix, FoundAtThatStepAndLayerOnly) {
    check_planted_fault("cpu", dir, std::get<0>(GetParam()), std::get<1>(GetParam()), std::get<2>(GetParam()));
}

INSTANTIATE_TEST_SUITE_P(Cpu, FaultMatrix, fault_cases(), fault_case_name);

}  // namespace
