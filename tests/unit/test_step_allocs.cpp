// "Memory is planned once when the model is built; the training step
// allocates nothing" (DESIGN.md, "Arenas, not mallocs"): a run of many steps
// over several epochs makes exactly the heap allocations of a run of three
// steps, for every optimizer, both losses, dense and convolutional models
// with dropout, clipping and a schedule, with the JSONL, CSV and TensorBoard
// sinks on. What a run allocates once (its ring, the uploaded data, a log's
// stdio buffer) is the same in both, so the difference is the steps' and the
// epochs'.
//
// Counted by interposing malloc and its kin in this test binary. The BLAS's
// own allocations (OpenBLAS: a job array per threaded GEMM, some
// small-matrix kernels' scratch) are the library's, not cutrain's, and are
// left out by the address of their caller. A sanitizer build has its own allocator in these
// names: there the test reports skipped.
#include <gtest/gtest.h>

#include <dlfcn.h>
#include <link.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "support/fixtures.h"

#if defined(__SANITIZE_ADDRESS__)
#define CT_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(memory_sanitizer) || __has_feature(thread_sanitizer)
#define CT_SANITIZED 1
#endif
#endif

using namespace ct_test;

namespace {

std::atomic<bool> g_counting{false};
std::atomic<long> g_allocs{0};

// Where the BLAS's code lies: its loaded segments, found once before counting.
struct Range {
    uintptr_t lo, hi;
};
Range g_blas[16];
int g_n_blas = 0;
const char *g_blas_file = nullptr;

// The library that defines cblas_sgemm, whatever its file is called (Debian's
// libblas.so.3 alternative may be OpenBLAS, BLIS or ATLAS); none without a
// CBLAS (the plain-loop GEMM, which allocates nothing).
const char *blas_file() {
    void *sym = dlsym(RTLD_DEFAULT, "cblas_sgemm");
    Dl_info info;
    return sym && dladdr(sym, &info) && info.dli_fname ? info.dli_fname : nullptr;
}

int note_blas(struct dl_phdr_info *info, size_t, void *) {
    const char *name = info->dlpi_name;
    if (!name || !(std::strstr(name, "openblas") || (g_blas_file && std::strcmp(name, g_blas_file) == 0))) return 0;
    for (int i = 0; i < info->dlpi_phnum && g_n_blas < 16; ++i)
        if (info->dlpi_phdr[i].p_type == PT_LOAD) {
            uintptr_t lo = info->dlpi_addr + info->dlpi_phdr[i].p_vaddr;
            g_blas[g_n_blas++] = {lo, lo + info->dlpi_phdr[i].p_memsz};
        }
    return 0;
}

bool from_blas(void *caller) {
    const uintptr_t a = reinterpret_cast<uintptr_t>(caller);
    for (int i = 0; i < g_n_blas; ++i)
        if (a >= g_blas[i].lo && a < g_blas[i].hi) return true;
    return false;
}

void note(void *caller) {
    if (g_counting.load(std::memory_order_relaxed) && !from_blas(caller)) g_allocs.fetch_add(1);
}

}  // namespace

#ifndef CT_SANITIZED
extern "C" {
void *__libc_malloc(size_t);
void *__libc_calloc(size_t, size_t);
void *__libc_realloc(void *, size_t);
void *__libc_memalign(size_t, size_t);
void __libc_free(void *);

void *malloc(size_t n) noexcept {
    note(__builtin_return_address(0));
    return __libc_malloc(n);
}
void *calloc(size_t k, size_t n) noexcept {
    note(__builtin_return_address(0));
    return __libc_calloc(k, n);
}
void *realloc(void *p, size_t n) noexcept {
    note(__builtin_return_address(0));
    return __libc_realloc(p, n);
}
void *aligned_alloc(size_t a, size_t n) noexcept {
    note(__builtin_return_address(0));
    return __libc_memalign(a, n);
}
void *memalign(size_t a, size_t n) noexcept {
    note(__builtin_return_address(0));
    return __libc_memalign(a, n);
}
int posix_memalign(void **out, size_t a, size_t n) noexcept {
    note(__builtin_return_address(0));
    void *p = __libc_memalign(a, n);
    if (!p) return ENOMEM;
    *out = p;
    return 0;
}
void free(void *p) noexcept { __libc_free(p); }
}
#endif

namespace {

struct Recipe {
    const char *name;
    const char *model;  // a model file's text
};

// Heap allocations made by ct_train over max_steps steps (evaluation and
// every sink included), the model built and the logs opened beforehand.
long allocs_of_run(const TempDir &dir, const Recipe &r, uint64_t max_steps) {
    ct_error err;
    ct_error_clear(&err);
    const std::string model_path = dir.file(std::string(r.name) + ".txt");
    write_text(model_path, r.model);
    ct_model_spec spec;
    EXPECT_EQ(ct_model_spec_parse_file(model_path.c_str(), &spec, &err), 0) << err.msg;
    OwnedModel om;
    om.be = ct_backend_cpu_create(1, &err);
    EXPECT_NE(om.be, nullptr) << err.msg;
    EXPECT_EQ(ct_model_build(&om.m, &spec, om.be, 1000, 3, &err), 0) << err.msg;
    ct_dataset train = synthetic_dataset(50, 8, 10, 1), test = synthetic_dataset(20, 8, 10, 2);
    ct_train_options opt = ct_train_defaults(&spec);
    opt.epochs = 1000;
    opt.max_steps = max_steps;
    opt.drain_every = 4;  // many drains of the record ring, half-filled at epoch ends
    opt.health.on_nan = CT_ON_NAN_SKIP;
    const std::string tag = std::string(r.name) + std::to_string(max_steps);
    const std::string jsonl = dir.file(tag + ".jsonl"), csv = dir.file(tag + ".csv"), tb = dir.file(tag + ".tb");
    char names[CT_MAX_PARAM_LAYERS][32];
    for (int i = 0; i < om.m.n_param_layers; ++i)
        std::memcpy(names[i], om.m.layers[om.m.param_layer[i]].spec.name, 32);
    ct_log_options lo = {jsonl.c_str(), csv.c_str(), 1, 0, om.m.n_param_layers, names, tb.c_str(), 0};
    ct_logger *log = ct_logger_open(&lo, &err);
    EXPECT_NE(log, nullptr) << err.msg;
    ct_run_summary sum;
    g_allocs = 0;
    g_counting = true;
    const int code = ct_train(&om.m, &train, &test, &opt, log, &sum, &err);
    g_counting = false;
    EXPECT_EQ(code, CT_EXIT_OK) << err.msg;
    EXPECT_EQ(sum.steps, max_steps);
    EXPECT_EQ(ct_logger_close(log, &err), 0) << err.msg;
    ct_dataset_free(&train);
    ct_dataset_free(&test);
    return g_allocs.load();
}

TEST(StepAllocs, ATrainingStepAllocatesNothing) {
#ifdef CT_SANITIZED
    GTEST_SKIP() << "skipped: a sanitizer's allocator owns malloc here";
#else
    g_blas_file = blas_file();
    dl_iterate_phdr(note_blas, nullptr);
    const Recipe recipes[] = {
        {"adam_xent", "input 64\ndense 16 relu\ndense 10 softmax\noptimizer adam lr=0.01\nbatch_size 8\n"},
        {"sgd_momentum_mse",
         "input 64\ndense 16 tanh\ndropout 0.3\ndense 10 softmax\nloss mse\noptimizer sgd lr=0.05 momentum=0.9 "
         "clipnorm=1\nbatch_size 7\n"},
        {"rmsprop_conv",
         "input 1 8 8\nconv2d 4 3 relu\nconv2d 6 3 relu padding=1\nmaxpool2d 2\ndropout 0.25\nflatten\ndense 16 "
         "relu\ndense 10 softmax\noptimizer rmsprop lr=0.001\nbatch_size 6\n"},
        {"adamw_onecycle", "input 64\ndense 12 sigmoid\ndense 10 softmax\noptimizer adamw lr=0.01\nschedule onecycle\n"
                           "batch_size 16\n"},
    };
    TempDir dir;
    for (const Recipe &r : recipes) {
        SCOPED_TRACE(r.name);
        allocs_of_run(dir, r, 3);  // first: whatever the process sets up once (stdio, the C library's own)
        const long few = allocs_of_run(dir, r, 3);
        const long many = allocs_of_run(dir, r, 40);  // several epochs of 50 items, each ending in a short batch
        EXPECT_EQ(many, few) << "a run of 40 steps made " << many - few << " more heap allocations than one of 3";
    }
#endif
}

}  // namespace
