// The fault matrix on the CUDA backend (tests/support/fault_matrix.h):
// planted between backward and the fused statistics reduction, found by the
// device's reduction, read back from the ring. Skipped without a GPU.
#include <gtest/gtest.h>

#include "support/fault_matrix.h"

using namespace ct_test;

namespace {

class GpuFaultMatrix : public ::testing::TestWithParam<FaultCase> {
  protected:
    void SetUp() override {
        char why[512] = "";
        if (!ct_cuda_available(why, sizeof why)) GTEST_SKIP() << "no usable GPU: " << why;
        write_synthetic_mnist(dir.path(), 200, 50);
        write_text(dir.file("model.txt"), fault_matrix_model());
    }
    TempDir dir;
};

TEST_P(GpuFaultMatrix, FoundAtThatStepAndLayerOnly) {
    check_planted_fault("cuda", dir, std::get<0>(GetParam()), std::get<1>(GetParam()), std::get<2>(GetParam()));
}

INSTANTIATE_TEST_SUITE_P(Cuda, GpuFaultMatrix, fault_cases(), fault_case_name);

}  // namespace
