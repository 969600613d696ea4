// The dense chain's CUDA kernel (kernels/cuda/dense_chain_kernel.cuh), its
// device code run on the CPU by the fiber emulator, against the CPU
// reference (kernels/cpu/dense_chain_cpu.c) at the parity test's awkward
// shapes and tolerances (tests/support/dense_chain_cases.h). Each case runs
// twice, threads scheduled in ascending and then descending order between
// barriers: the two must give the same bits, or a thread reads what another
// writes in the same phase. What this cannot see (the GPU's expf/tanhf/exp/
// log, its memory model, its speed) the GPU parity test checks where there
// is a GPU.
#include "emu/cuda_emu.h"
// The device code, after the emulator's definitions of the CUDA keywords.
#include "kernels/cuda/dense_chain_kernel.cuh"

#include <gtest/gtest-spi.h>
#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

#include "kernels/cpu/cpu_ops.h"
#include "support/dense_chain_cases.h"

namespace {

using ct_test::ChainShape;
using ct_test::ChainVec;

void emulate(const ct_dense_chain &c, int rows, ct_emu::Order order) {
    ct_emu::launch(1, CHAIN_THREADS, [&] { dense_chain_kernel(c, rows); }, order);
}

TEST(EmuDenseChain, AwkwardAndRealShapesMatchTheCpuInBothThreadOrders) {
    unsigned seed = 1;
    for (const ChainShape &s : ct_test::awkward_chain_shapes()) {
        SCOPED_TRACE(s.describe());
        std::mt19937 g(seed++);
        const ct_test::ChainHost h = ct_test::draw_chain(s, g);
        ct_test::HostChainRunner cpu([](const ct_dense_chain &c, int rows) {
            cpu_dense_chain_train(nullptr, nullptr, &c, rows);
        });
        ct_test::HostChainRunner up([](const ct_dense_chain &c, int rows) {
            emulate(c, rows, ct_emu::Order::kAscending);
        });
        ct_test::HostChainRunner down([](const ct_dense_chain &c, int rows) {
            emulate(c, rows, ct_emu::Order::kDescending);
        });
        const std::vector<ChainVec> want = run_chain(s, h, cpu), got = run_chain(s, h, up);
        ct_test::expect_chain_close(s, got, want);
        ct_test::expect_chain_same_bits(got, run_chain(s, h, down));
    }
}

// The comparison has teeth: the kernel run on a description with one
// layer's activation swapped (what a wrong index into act[] would do) fails it.
TEST(EmuDenseChain, AWrongActivationFailsTheComparison) {
    const ChainShape s = ct_test::awkward_chain_shapes()[5];  // relu, tanh, sigmoid, mse
    std::mt19937 g(5);
    const ct_test::ChainHost h = ct_test::draw_chain(s, g);
    ct_test::HostChainRunner cpu([](const ct_dense_chain &c, int rows) {
        cpu_dense_chain_train(nullptr, nullptr, &c, rows);
    });
    ct_test::HostChainRunner wrong([](const ct_dense_chain &c, int rows) {
        ct_dense_chain w = c;
        w.act[1] = CT_ACT_SIGMOID;
        emulate(w, rows, ct_emu::Order::kAscending);
    });
    const std::vector<ChainVec> want = run_chain(s, h, cpu), got = run_chain(s, h, wrong);
    ::testing::TestPartResultArray failures;
    {
        ::testing::ScopedFakeTestPartResultReporter catcher(&failures);
        ct_test::expect_chain_close(s, got, want);
    }
    bool names_y1 = false;
    for (int i = 0; i < failures.size(); ++i)
        names_y1 = names_y1 || std::string(failures.GetTestPartResult(i).message()).find("y1") != std::string::npos;
    EXPECT_TRUE(names_y1) << failures.size() << " failures, none about y1";
}

}  // namespace
