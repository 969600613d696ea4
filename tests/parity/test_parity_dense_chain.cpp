// The dense chain as one op: the CUDA kernel (kernels/cuda/dense_chain_cuda.cu,
// offered when CUTRAIN_CUDA_DENSE_CHAIN=on) against the CPU reference
// (kernels/cpu/dense_chain_cpu.c, the ops one by one), from the same random
// weights, inputs and labels (never zeros), at the awkward shapes of
// tests/support/dense_chain_cases.h (a batch of one, odd widths, a width of
// one, four layers, both losses, every elementwise activation, seed's real
// size, a NaN planted in the input, a label out of range, the batch
// gathered by the op from bytes and from floats), with its tolerances. Also: the same bits from two runs, and the plan's refusals.
// Skipped without a GPU. (tests/emu runs the same kernel's device code on
// the CPU against the same cases in every CI run.)
#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "kernels/cpu/cpu_ops.h"
#include "support/dense_chain_cases.h"
#include "support/fixtures.h"
#include "cuda_fixture.h"

namespace {

using ct_test::ChainShape;
using ct_test::ChainVec;

constexpr const char *kVar = "CUTRAIN_CUDA_DENSE_CHAIN";

class DenseChainParity : public CudaFixture {
  protected:
    // Device memory from the fixture; the op through the backend table.
    class GpuRunner : public ct_test::ChainRunner {
      public:
        GpuRunner(DenseChainParity &f, void *plan) : f_(f), plan_(plan) {}
        void *put_bytes(const void *p, size_t n) override {
            void *d = f_.gpu->ops->alloc(f_.gpu, n + 4, nullptr);  // 4 spare bytes: never an empty allocation
            f_.owned.push_back(d);
            if (n) f_.gpu->ops->upload(f_.gpu, d, p, n);
            return d;
        }
        void get_bytes(void *host, const void *p, size_t n) override {
            if (n) f_.gpu->ops->download(f_.gpu, host, p, n);
        }
        void train(const ct_dense_chain &c, int rows) override { f_.gpu->ops->dense_chain_train(f_.gpu, plan_, &c, rows); }

      private:
        DenseChainParity &f_;
        void *plan_;
    };

    void *plan_for(const ChainShape &s, ct_error *err) {
        const ct_dense_chain c = ct_test::chain_description(s);
        return gpu->ops->dense_chain_plan(gpu, &c, s.max_rows, err);
    }

    void check(const ChainShape &s, unsigned seed) {
        SCOPED_TRACE(s.describe());
        std::mt19937 g(seed);
        const ct_test::ChainHost h = ct_test::draw_chain(s, g);
        ct_error err;
        ct_error_clear(&err);
        void *plan = plan_for(s, &err);
        ASSERT_NE(plan, nullptr) << "CUDA declined the chain: " << err.msg;
        ct_test::HostChainRunner cpu([](const ct_dense_chain &c, int rows) {
            cpu_dense_chain_train(nullptr, nullptr, &c, rows);
        });
        GpuRunner on_gpu(*this, plan);
        const std::vector<ChainVec> want = run_chain(s, h, cpu), got = run_chain(s, h, on_gpu);
        ct_test::expect_chain_close(s, got, want);
        ct_test::expect_chain_same_bits(got, run_chain(s, h, on_gpu));
        gpu->ops->dense_chain_plan_free(gpu, plan);
    }
};

TEST_F(DenseChainParity, AwkwardAndRealShapesMatchTheCpu) {
    ct_test::ScopedEnv on(kVar, "on");
    unsigned seed = 1;
    for (const ChainShape &s : ct_test::awkward_chain_shapes()) check(s, seed++);
}

TEST_F(DenseChainParity, PlanOffersTheChainOnlyWhenAskedAndWithinItsLimits) {
    const ChainShape seed_shape = {{784, 10, 10}, {CT_ACT_RELU, CT_ACT_LINEAR}, 0, 32, 32, false, false};
    ct_error err;
    for (const char *off : {(const char *)nullptr, "off", ""}) {
        ct_test::ScopedEnv e(kVar, off);
        ct_error_clear(&err);
        EXPECT_EQ(plan_for(seed_shape, &err), nullptr) << (off ? off : "(unset)");
        EXPECT_EQ(err.code, 0) << "declining is no error: " << err.msg;
    }
    for (const char *bad : {"1", "ON", "yes", "auto"}) {
        ct_test::ScopedEnv e(kVar, bad);
        ct_error_clear(&err);
        EXPECT_EQ(plan_for(seed_shape, &err), nullptr) << bad;
        EXPECT_NE(err.code, 0) << bad;
        EXPECT_NE(std::string(err.msg).find(kVar), std::string::npos) << err.msg;
    }
    ct_test::ScopedEnv on(kVar, "on");
    ChainShape softmax = seed_shape;
    softmax.act[1] = CT_ACT_SOFTMAX;
    ChainShape big = seed_shape;  // mlp: far past what one block should take
    big.dim = {784, 512, 512, 10};
    big.act = {CT_ACT_RELU, CT_ACT_RELU, CT_ACT_LINEAR};
    big.max_rows = big.rows = 128;
    for (const ChainShape *s : {&softmax, &big}) {
        ct_error_clear(&err);
        EXPECT_EQ(plan_for(*s, &err), nullptr);
        EXPECT_EQ(err.code, 0) << err.msg;
    }
}

}  // namespace
