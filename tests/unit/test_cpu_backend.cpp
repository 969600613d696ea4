// Creating the CPU backend: how many BLAS threads it runs, and that its
// description (the banner, the summary record's "device", what "the same
// thread count" means for determinism) names the count that really runs.
#include <gtest/gtest.h>

#include <dlfcn.h>
#include <sched.h>

#include <string>

#include "cutrain/cutrain.h"

namespace {

// The thread count OpenBLAS will use, asked of OpenBLAS itself; -1 when
// the build uses another BLAS (which runs one thread).
int blas_threads() {
    using get_fn = int (*)(void);
    auto get = reinterpret_cast<get_fn>(dlsym(RTLD_DEFAULT, "openblas_get_num_threads"));
    return get ? get() : -1;
}

std::string thread_words(int n) { return std::to_string(n) + (n == 1 ? " thread)" : " threads)"); }

// Without --threads, the backend runs as many threads as there are CPUs the
// process may run on (taskset, a cpuset), not as many as the machine has:
// 64 BLAS threads bound to 2 cores spin against each other.
TEST(CpuBackend, TheDefaultThreadCountIsTheCpusTheProcessMayRunOn) {
    cpu_set_t all;
    ASSERT_EQ(sched_getaffinity(0, sizeof all, &all), 0);
    int first = 0;
    while (!CPU_ISSET(first, &all)) ++first;
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(first, &one);
    ASSERT_EQ(sched_setaffinity(0, sizeof one, &one), 0);
    ct_error err;
    ct_error_clear(&err);
    ct_backend *be = ct_backend_cpu_create(0, &err);
    ASSERT_EQ(sched_setaffinity(0, sizeof all, &all), 0);
    ASSERT_NE(be, nullptr) << err.msg;
    EXPECT_EQ(be->threads, 1);
    EXPECT_NE(std::string(be->description).find("1 thread)"), std::string::npos) << be->description;
    if (blas_threads() >= 0) EXPECT_EQ(blas_threads(), 1);
    ct_backend_destroy(be);
}

// OpenBLAS caps the count at its build's limit (64 on Debian) without a
// word. A count asked for runs as asked, or is refused naming the flag and
// the limit; the description never names a count that is not running.
TEST(CpuBackend, AThreadCountIsRunAsAskedOrRefused) {
    for (int asked : {1, 3, 64, 65, 1024}) {
        SCOPED_TRACE("--threads " + std::to_string(asked));
        ct_error err;
        ct_error_clear(&err);
        ct_backend *be = ct_backend_cpu_create(asked, &err);
        if (!be) {
            EXPECT_EQ(err.code, CT_EXIT_USAGE);
            EXPECT_NE(std::string(err.msg).find("--threads " + std::to_string(asked) + ": "), std::string::npos)
                << err.msg;
            EXPECT_NE(std::string(err.msg).find("at most"), std::string::npos) << err.msg;
            continue;
        }
        const int runs = blas_threads() >= 0 ? blas_threads() : 1;
        EXPECT_EQ(be->threads, runs);
        EXPECT_NE(std::string(be->description).find(" " + thread_words(runs)), std::string::npos)
            << be->description;
        if (blas_threads() >= 0) EXPECT_EQ(runs, asked) << be->description;
        ct_backend_destroy(be);
    }
}

}  // namespace
