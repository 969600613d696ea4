// The fixture the parity files share: a CUDA backend per test (the test is
// skipped without a usable GPU), and device copies of host vectors that are
// freed with it.
#ifndef CUTRAIN_TESTS_PARITY_CUDA_FIXTURE_H
#define CUTRAIN_TESTS_PARITY_CUDA_FIXTURE_H

#include <gtest/gtest.h>

#include <vector>

#include "cutrain/cutrain.h"

class CudaFixture : public ::testing::Test {
  protected:
    void SetUp() override {
        char why[256];
        if (!ct_cuda_available(why, sizeof why)) GTEST_SKIP() << "no GPU: " << why;
        ct_error err;
        ct_error_clear(&err);
        gpu = ct_backend_cuda_create(&err);
        ASSERT_NE(gpu, nullptr) << err.msg;
    }
    void TearDown() override {
        for (void *p : owned) gpu->ops->free(gpu, p);
        if (gpu) ct_backend_destroy(gpu);
    }
    // A device copy of v (4 spare bytes, so an empty vector still allocates).
    template <typename T>
    T *up(const std::vector<T> &v) {
        void *p = gpu->ops->alloc(gpu, v.size() * sizeof(T) + 4, nullptr);
        owned.push_back(p);
        gpu->ops->upload(gpu, p, v.data(), v.size() * sizeof(T));
        return (T *)p;
    }
    template <typename T>
    std::vector<T> down(const T *p, size_t n) {
        std::vector<T> v(n);
        gpu->ops->download(gpu, v.data(), p, n * sizeof(T));
        return v;
    }

    ct_backend *gpu = nullptr;
    std::vector<void *> owned;
};

#endif
