// The emulator itself (cuda_emu.h): barriers and shuffles mean what they
// mean on the GPU, a kernel that races between its phases gives different
// results in the two thread orders, and a barrier that can never open is
// reported instead of hanging.
#include "emu/cuda_emu.h"

#include <gtest/gtest.h>

#include <numeric>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

using ct_emu::Order;

// Each thread writes its slot, then reads its neighbour's.
std::vector<unsigned> neighbours(unsigned threads, bool with_barrier, Order order) {
    std::vector<unsigned> a(threads, 0), b(threads, 0);
    ct_emu::launch(
        1, threads,
        [&] {
            const unsigned t = threadIdx.x;
            a[t] = t + 1;
            if (with_barrier) __syncthreads();
            b[t] = a[(t + 1) % blockDim.x];
        },
        order);
    return b;
}

TEST(EmuRuntime, SyncthreadsMakesEveryWriteBeforeItVisibleAfterIt) {
    for (Order o : {Order::kAscending, Order::kDescending}) {
        const std::vector<unsigned> b = neighbours(77, true, o);
        for (unsigned t = 0; t < 77; ++t) EXPECT_EQ(b[t], (t + 1) % 77 + 1) << t;
    }
}

TEST(EmuRuntime, ARaceBetweenPhasesShowsAsADifferenceBetweenTheOrders) {
    EXPECT_NE(neighbours(77, false, Order::kAscending), neighbours(77, false, Order::kDescending));
}

// An xor-tree sum over the warp, as the kernels reduce: every lane ends with
// the whole warp's sum; in a partial last warp, with that warp's lanes only.
TEST(EmuRuntime, XorShufflesSumOverFullAndPartialWarps) {
    const unsigned threads = 40;  // a full warp and one of 8 lanes
    std::vector<double> got(threads, -1.0);
    std::vector<int> ints(threads, -1);
    ct_emu::launch(1, threads, [&] {
        const unsigned t = threadIdx.x;
        const unsigned mask = t < 32 ? 0xffffffffu : 0xffu;
        double v = (double)t;
        int n = 1;
        for (int off = 16; off > 0; off >>= 1) {
            v += __shfl_xor_sync(mask, v, off);
            n += __shfl_xor_sync(mask, n, off);
        }
        got[t] = v;
        ints[t] = n;
    });
    for (unsigned t = 0; t < 32; ++t) {
        EXPECT_EQ(got[t], 31.0 * 32.0 / 2.0) << t;
        EXPECT_EQ(ints[t], 32) << t;
    }
    // Lanes 0..7 of the second warp: partners past lane 7 give the lane's own
    // value, so offsets 16 and 8 double it; 4, 2, 1 sum the eight.
    for (unsigned t = 32; t < 40; ++t) {
        EXPECT_EQ(got[t], 4.0 * (32 + 33 + 34 + 35 + 36 + 37 + 38 + 39)) << t;
        EXPECT_EQ(ints[t], 32) << t;
    }
}

TEST(EmuRuntime, BlocksRunOneAfterAnotherWithTheirOwnIndex) {
    std::vector<int> seen(5 * 33, -1);
    ct_emu::launch(5, 33, [&] {
        EXPECT_EQ(gridDim.x, 5u);
        seen[blockIdx.x * blockDim.x + threadIdx.x] = (int)blockIdx.x;
    });
    for (size_t i = 0; i < seen.size(); ++i) EXPECT_EQ(seen[i], (int)(i / 33)) << i;
}

std::string launch_error(unsigned threads, const std::function<void()> &kernel) {
    try {
        ct_emu::launch(1, threads, kernel);
    } catch (const std::runtime_error &e) {
        return e.what();
    }
    return "";
}

TEST(EmuRuntime, ABarrierAThreadSkipsIsReportedNotHung) {
    const std::string e = launch_error(64, [] {
        if (threadIdx.x == 5) return;
        __syncthreads();
    });
    EXPECT_NE(e.find("__syncthreads() reached by 63 of 64 threads"), std::string::npos) << e;
}

TEST(EmuRuntime, AShuffleOneLaneSkipsIsReportedNotHung) {
    const std::string e = launch_error(64, [] {
        float v = 1.0f;
        if (threadIdx.x != 40) v = __shfl_xor_sync(threadIdx.x < 32 ? 0xffffffffu : 0xffffffffu, v, 1);
        (void)v;
    });
    EXPECT_NE(e.find("the shuffle of warp 1 reached by 31 of 32"), std::string::npos) << e;
}

TEST(EmuRuntime, APartialMaskIsRefusedByName) {
    const std::string e = launch_error(32, [] { (void)__shfl_xor_sync(0xffffu, 1.0f, 1); });
    EXPECT_NE(e.find("mask 65535"), std::string::npos) << e;
    // The emulator is usable again after a failed launch.
    EXPECT_EQ(neighbours(8, true, Order::kAscending)[7], 1u);
}

}  // namespace
