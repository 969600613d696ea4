// Parity: every op of the backend table (include/cutrain/backend.h) on the
// CUDA backend against the CPU reference (kernels/cpu/).
//
// Each test draws fresh random inputs (seeded std::mt19937, never all zeros),
// uploads the same bytes to ct_backend_cpu_create(1, ...) and to
// ct_backend_cuda_create(...) through ops->alloc/upload, runs the op on each,
// downloads through ops->download and compares, in this order:
//   1. the non-finite pattern: the same positions NaN, +Inf or -Inf on both
//      (a NaN's sign and payload are not compared: x86 and the GPU make
//      different default NaNs);
//   2. the finite values, within the op's tolerance in the table below.
// Outputs are filled with a finite sentinel before each op, so an element the
// GPU never writes shows up as a difference. Host argument structs (ds, a,
// cfg, buf, th, layer_begin) are scribbled over right after the call, since
// the contract says they are read when the op is called.
//
// Shapes: rows 1, 3, 31, 33, 127, 128, 1000; columns/classes 1 (where legal),
// 7, 10, 33, 512, 784; and the real model sizes (mlp: 128x784 -> 512,
// 512 -> 512, 512 -> 10; seed: 32x784 -> 10, 10 -> 10; evaluation chunks of
// 1000 rows). Planted: NaN, +Inf, -Inf, logits of +-1e4, equal logits,
// out-of-range labels, labels == classes-1, a batch of one, out-of-range
// gather indices; and the edge-of-float cases of tests/unit/test_stability.cpp
// (tests/support/extreme.h): logits of +-1e30 and large logits a unit apart,
// Adam with tiny, denormal and huge gradients (with and without clipping),
// MSE with predictions up to 3e18 and past the float range of the loss.
//
// Without a usable GPU (ct_cuda_available() == 0, which includes a build
// without the CUDA backend) every test reports SKIPPED.
//
// Elsewhere: the convolution and pooling entries in test_parity_conv.cpp,
// the dense chain (dense_chain_plan/_train) in test_parity_dense_chain.cpp.
//
// ---------------------------------------------------------------------------
// Tolerances. u = 2^-24 (float unit roundoff); c = CPU value, g = GPU value;
// a test passes an element when |g - c| <= the bound (finite elements).
//
// | op                   | bound                                        | why |
// |----------------------|----------------------------------------------|-----|
// | gemm                 | 2 (k+2) u (|alpha| sum_p |a_ip b_pj|          | fp32 cuBLAS vs OpenBLAS: each result is within (k+2)u of the
// |                      |            + |beta c_ij|)                    | exact value times that sum for ANY summation order (the classical
// |                      |                                              | dot-product bound, plus the alpha and beta roundings), so the two
// |                      |                                              | differ by at most twice that. Assumes cuBLAS runs true fp32
// |                      |                                              | (no TF32: its 10-bit mantissa misses this bound on purpose).
// | bias_act linear/relu | exact                                        | one float add, then a select: no rounding choice exists.
// | sigmoid, tanh fwd    | 6 ulp of c                                   | glibc expf/tanhf < 1 ulp, CUDA expf/tanhf <= 2 ulp, plus the add
// |                      |                                              | and the division (IEEE on both without fast-math).
// | softmax fwd          | 1e-6 |c| + 1e-30                             | expf (<= 2 ulp) and one normalisation; assumes the row sum is
// |                      |                                              | accumulated in double or a tree (a float running sum over 784
// |                      |                                              | terms could reach 5e-5).
// | act backward         | linear/relu exact; sigmoid/tanh 6 ulp of c   | nvcc contracts 1 - y*y into an FMA by default, which removes one
// |                      | + 2u |dy|; softmax 1e-6 |c| + 1e-6 y_i       | rounding of y*y (absolute u |dy|); softmax: the row dot product
// |                      | sum_j |dy_j y_j|                             | <dy, y> cancels, so its error is relative to sum |dy y|.
// | dbias                | sum_r (bound of dz[r,c]) + 1 ulp of c        | "exact or tight": a double column sum in another order can round
// |                      | + 1e-12 sum_r |dz[r,c]|                      | to the neighbouring float; dz's own differences add up.
// | softmax_xent loss    | 1e-6 (|c| + 1)                               | one double pass on the CPU; the loss of a confident row is
// |                      |                                              | log(1 + eps), whose error is absolute, hence the +1.
// | softmax_xent dlogits | 1e-6 |c| + 4u |grad_scale|                   | softmax - 1 at the label cancels; a float p carries u absolute.
// | row_correct          | exact                                        | argmax with ties to the lowest index; 0/1.
// | mse_onehot           | 1e-6 |c| (+ 4u |grad_scale| for dpred)       | as above.
// | loss_accumulate      | 1e-12 (|acc| + sum |row_loss|); correct exact| double sums in another order; the count of 0/1 is an integer.
// | dropout, gather      | bit-exact                                    | the same counter RNG (cutrain/rng.h) and one float rounding
// |                      |                                              | (x * s, scale * pixel) on both.
// | step_stats           | counts, flags, max |g|, correct, step/epoch  | counting and max do not depend on order; the sums are double
// |                      | exact; sums 1e-12 relative to the sum of     | accumulations of the same float inputs in another order (a float
// |                      | their terms' magnitudes                      | square or a float sum would miss this by 1e5). Measured on the
// |                      |                                              | CPU: a left-to-right double sum of the mlp's 669,706 squares and
// |                      |                                              | a 1024x256-way tree of them differ by about 3e-13 relative.
// | step_advance         | exact                                        | integers.
// | optimizer_step       | w and state: 1 ulp of c + 16u T, where T is  | Assumption: the GPU evaluates the same float expressions in the
// |                      | the magnitude of the terms that formed the   | CPU's order (Keras rules, optim.h); nvcc's default FMA contraction
// |                      | value (e.g. Adam m: b1|m| + (1-b1)|g|; w:    | may fuse a multiply-add, which moves the result by an ulp of the
// |                      | alpha T_m / (sqrt(v)+eps) + |w decay|);      | larger term, and the scalar coefficients (bias correction in
// |                      | t, flags, clip_scale exact; param_sumsq      | double, pow on the device vs glibc) may round an ulp apart. A
// |                      | 1e-12; update_sumsq 1e-12 against the sum    | missed bias correction, clip or decay is off by orders of
// |                      | recomputed from that backend's own w.        | magnitude more. A skipped step must leave w, state, t bit-identical.
// ---------------------------------------------------------------------------
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <memory>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "cutrain/cutrain.h"
#include "support/extreme.h"

namespace {

// ---- the tolerance table, as numbers --------------------------------------
constexpr double kU = 1.0 / 16777216.0;        // 2^-24
constexpr double kGemmFactor = 2.0;            // x (k+2) u sum|a||b|
constexpr double kActUlps = 6.0;               // sigmoid, tanh
constexpr double kActBackAbs = 2.0 * kU;       // x |dy|, sigmoid/tanh backward
constexpr double kSoftmaxRel = 1e-6;           // softmax forward and backward
constexpr double kSoftmaxAbs = 1e-30;          // below any probability that matters
constexpr double kXentRel = 1e-6;              // softmax_xent, mse_onehot
constexpr double kLossGradAbs = 4.0 * kU;      // x |grad_scale|
constexpr double kSumRel = 1e-12;              // double reductions in another order
constexpr double kOptimTermRel = 16.0 * kU;    // x the magnitude of an update's terms
constexpr double kBitExact = -1.0;             // "allowed" value meaning: same bits

constexpr float kPoison = -12345.678f;         // finite: unwritten outputs show up
const float kNaN = std::numeric_limits<float>::quiet_NaN();
const float kInf = std::numeric_limits<float>::infinity();

// ---- backends: created once per process, destroyed inside RUN_ALL_TESTS ----
struct Backends {
    bool gpu = false;
    std::string reason;
    std::string error;
    ct_backend *cpu = nullptr;
    ct_backend *cuda = nullptr;
};

Backends *g_backends = nullptr;

Backends &backends() {
    if (!g_backends) {
        g_backends = new Backends;
        Backends &s = *g_backends;
        char why[512] = "";
        s.gpu = ct_cuda_available(why, sizeof why) != 0;
        s.reason = std::string("no usable GPU: ") + why;
        if (s.gpu) {
            ct_error err;
            ct_error_clear(&err);
            s.cpu = ct_backend_cpu_create(1, &err);
            if (!s.cpu) s.error += std::string("ct_backend_cpu_create: ") + err.msg + "; ";
            ct_error_clear(&err);
            s.cuda = ct_backend_cuda_create(&err);
            if (!s.cuda) s.error += std::string("ct_backend_cuda_create: ") + err.msg;
        }
    }
    return *g_backends;
}

// Destroys the backends before main returns: after it, the CUDA runtime may
// already be torn down and a late cudaFree would fail the process.
class BackendsEnv : public ::testing::Environment {
  public:
    void TearDown() override {
        if (!g_backends) return;
        if (g_backends->cuda) ct_backend_destroy(g_backends->cuda);
        if (g_backends->cpu) ct_backend_destroy(g_backends->cpu);
        delete g_backends;
        g_backends = nullptr;
    }
};
::testing::Environment *const kBackendsEnv = ::testing::AddGlobalTestEnvironment(new BackendsEnv);

// ---- backend memory owned by one test ---------------------------------------
class Mem {
  public:
    explicit Mem(ct_backend *b) : b_(b) {}
    ~Mem() {
        for (auto it = ptrs_.rbegin(); it != ptrs_.rend(); ++it) b_->ops->free(b_, *it);
    }
    Mem(const Mem &) = delete;
    Mem &operator=(const Mem &) = delete;

    ct_backend *be() const { return b_; }
    const ct_backend_ops *ops() const { return b_->ops; }
    bool is_gpu() const { return b_->kind == CT_DEVICE_CUDA; }

    void *raw(size_t bytes) {
        ct_error err;
        ct_error_clear(&err);
        void *p = b_->ops->alloc(b_, bytes ? bytes : 1, &err);
        if (!p) throw std::runtime_error(std::string(b_->description) + ": alloc failed: " + err.msg);
        ptrs_.push_back(p);
        return p;
    }
    template <class T>
    T *put(const std::vector<T> &h) {
        T *p = static_cast<T *>(raw(h.size() * sizeof(T)));
        if (!h.empty()) b_->ops->upload(b_, p, h.data(), h.size() * sizeof(T));
        return p;
    }
    template <class T>
    T *filled(size_t n, T value) {
        return put(std::vector<T>(n, value));
    }
    template <class T>
    T *one(const T &value) {
        return put(std::vector<T>(1, value));
    }
    template <class T>
    std::vector<T> get(const T *p, size_t n) {
        std::vector<T> h(n);
        if (n) b_->ops->download(b_, h.data(), p, n * sizeof(T));
        return h;
    }
    template <class T>
    T get1(const T *p) {
        T v;
        b_->ops->download(b_, &v, p, sizeof(T));
        return v;
    }

  private:
    ct_backend *b_;
    std::vector<void *> ptrs_;
};

// ---- the fixture: every test starts with the GPU check ---------------------
class Parity : public ::testing::Test {
  protected:
    void SetUp() override {
        Backends &b = backends();
        const bool gpu_ok = b.gpu;
        if (!gpu_ok) GTEST_SKIP() << b.reason;
        ASSERT_TRUE(b.cpu && b.cuda) << "ct_cuda_available() said yes, but: " << b.error;
        cpu = b.cpu;
        gpu = b.cuda;
    }
    void TearDown() override {
        if (gpu) gpu->ops->sync(gpu);  // a device fault surfaces here, in this test
    }
    // Runs f(Mem&) on the CPU backend, then on the CUDA one; f returns host data.
    template <class F>
    auto both(F &&f) {
        Mem c(cpu);
        auto rc = f(c);
        Mem g(gpu);
        auto rg = f(g);
        return std::make_pair(std::move(rc), std::move(rg));
    }
    ct_backend *cpu = nullptr;
    ct_backend *gpu = nullptr;
};

template <class P>
class ParityP : public Parity, public ::testing::WithParamInterface<P> {};

// ---- inputs ------------------------------------------------------------------
uint32_t seed_of(const std::string &s) {
    uint32_t h = 2166136261u;  // FNV-1a: the same seed for the same case everywhere
    for (unsigned char ch : s) h = (h ^ ch) * 16777619u;
    return h;
}

std::string test_name() {
    const ::testing::TestInfo *t = ::testing::UnitTest::GetInstance()->current_test_info();
    return std::string(t->test_suite_name()) + "." + t->name();
}

std::vector<float> uniform(std::mt19937 &g, size_t n, float lo, float hi) {
    std::uniform_real_distribution<float> d(lo, hi);
    std::vector<float> v(n);
    for (float &x : v) {
        do x = d(g);
        while (x == 0.0f);
    }
    return v;
}

// ---- comparison --------------------------------------------------------------
enum class Kind { Finite, NaN, PosInf, NegInf };

template <class T>
Kind kind_of(T x) {
    if (std::isnan(x)) return Kind::NaN;
    if (std::isinf(x)) return x > 0 ? Kind::PosInf : Kind::NegInf;
    return Kind::Finite;
}

template <class T>
std::string show(T x) {
    std::ostringstream o;
    o.precision(std::numeric_limits<T>::max_digits10);
    o << x;
    return o.str();
}

double ulp_of(float x) {
    float a = std::fabs(x);
    if (std::isinf(a)) return 0.0;
    return (double)std::nextafter(a, kInf) - (double)a;
}

// Non-finite agreement first, then |g - c| <= allowed(i) on the finite ones
// (allowed(i) == kBitExact: the same bits).
template <class T>
::testing::AssertionResult agree(const std::string &what, const std::vector<T> &c, const std::vector<T> &g,
                                 const std::function<double(size_t)> &allowed) {
    if (c.size() != g.size())
        return ::testing::AssertionFailure() << what << ": " << c.size() << " CPU values, " << g.size() << " GPU";
    size_t bad_kind = 0;
    std::string first;
    for (size_t i = 0; i < c.size(); ++i) {
        if (kind_of(c[i]) == kind_of(g[i])) continue;
        if (bad_kind++ < 4) first += " [" + std::to_string(i) + "] cpu " + show(c[i]) + " gpu " + show(g[i]);
    }
    if (bad_kind)
        return ::testing::AssertionFailure() << what << ": the non-finite pattern differs at " << bad_kind << " of "
                                             << c.size() << " elements:" << first;
    size_t bad = 0;
    double worst = 0.0;
    for (size_t i = 0; i < c.size(); ++i) {
        if (kind_of(c[i]) != Kind::Finite) continue;
        double a = allowed(i);
        bool ok;
        double d = std::fabs((double)g[i] - (double)c[i]);
        if (a == kBitExact)
            ok = std::memcmp(&c[i], &g[i], sizeof(T)) == 0;
        else
            ok = d <= a;
        if (ok) continue;
        if (a > 0) worst = std::max(worst, d / a);
        if (bad++ < 4)
            first += " [" + std::to_string(i) + "] cpu " + show(c[i]) + " gpu " + show(g[i]) + " (|diff| " +
                     show(d) + (a == kBitExact ? ", bits must match)" : ", allowed " + show(a) + ")");
    }
    if (bad == 0) return ::testing::AssertionSuccess();
    auto f = ::testing::AssertionFailure();
    f << what << ": " << bad << " of " << c.size() << " elements outside the tolerance";
    if (worst > 0) f << " (worst " << worst << "x the bound)";
    return f << ":" << first;
}

template <class T>
::testing::AssertionResult agree_bits(const std::string &what, const std::vector<T> &c, const std::vector<T> &g) {
    return agree<T>(what, c, g, [](size_t) { return kBitExact; });
}

::testing::AssertionResult agree_exact(const std::string &what, const std::vector<float> &c,
                                       const std::vector<float> &g) {
    return agree<float>(what, c, g, [](size_t) { return 0.0; });
}

template <class T>
::testing::AssertionResult same_values(const std::string &what, const std::vector<T> &c, const std::vector<T> &g) {
    if (c.size() != g.size()) return ::testing::AssertionFailure() << what << ": sizes differ";
    size_t bad = 0;
    std::string first;
    for (size_t i = 0; i < c.size(); ++i)
        if (c[i] != g[i] && bad++ < 4)
            first += " [" + std::to_string(i) + "] cpu " + std::to_string(c[i]) + " gpu " + std::to_string(g[i]);
    if (bad == 0) return ::testing::AssertionSuccess();
    return ::testing::AssertionFailure() << what << ": " << bad << " of " << c.size() << " differ:" << first;
}

bool same_bytes(const void *a, const void *b, size_t n) { return std::memcmp(a, b, n) == 0; }

// A double compared as the table says for sums: same kind, then relative to mag.
::testing::AssertionResult sum_close_rel(const std::string &what, double c, double g, double mag, double rel) {
    if (kind_of(c) != kind_of(g))
        return ::testing::AssertionFailure() << what << ": cpu " << show(c) << " gpu " << show(g);
    if (kind_of(c) != Kind::Finite) return ::testing::AssertionSuccess();
    if (std::fabs(c - g) <= rel * mag) return ::testing::AssertionSuccess();
    return ::testing::AssertionFailure() << what << ": cpu " << show(c) << " gpu " << show(g) << " differ by "
                                         << show(std::fabs(c - g)) << " > " << show(rel) << " x " << show(mag);
}

::testing::AssertionResult sum_close(const std::string &what, double c, double g, double mag) {
    return sum_close_rel(what, c, g, mag, kSumRel);
}

// Higham's bound for a left-to-right double sum of n non-negative terms,
// relative to the sum: (n - 1) u, u = 2^-53. A GPU tree sum's bound is
// log2(n) u, far below kSumRel; a sequential CPU sum of 669706 squares can be
// off by a few 1e-12 (measured on an H100: 1.9e-12 against the tree sum).
double sequential_sum_rel(size_t n) { return std::max(kSumRel, (double)n * std::ldexp(1.0, -53)); }

std::string flag_names(uint32_t f) {
    std::string s;
    for (unsigned i = 0; i < CT_FLAG_COUNT; ++i)
        if (f & (1u << i)) s += std::string(s.empty() ? "" : "|") + ct_flag_name(i);
    return s.empty() ? "none" : s;
}

// Every field of two records: integers, flags, max and counts exact; the
// double sums as sum_close with the given magnitudes.
::testing::AssertionResult records_agree(const ct_step_record &c, const ct_step_record &g, double loss_mag,
                                         bool correct_exact = true) {
    std::ostringstream bad;
    auto exact = [&](const char *name, double a, double b) {
        if (kind_of(a) != kind_of(b) || (kind_of(a) == Kind::Finite && a != b))
            bad << " " << name << ": cpu " << show(a) << " gpu " << show(b) << ";";
    };
    auto sum = [&](const std::string &name, double a, double b, double mag) {
        auto r = sum_close(name, a, b, mag);
        if (!r) bad << " " << r.message() << ";";
    };
    exact("step", (double)c.step, (double)g.step);
    exact("epoch", c.epoch, g.epoch);
    exact("batch_size", c.batch_size, g.batch_size);
    if (c.flags != g.flags) bad << " flags: cpu " << flag_names(c.flags) << " gpu " << flag_names(g.flags) << ";";
    exact("n_layers", c.n_layers, g.n_layers);
    sum("loss_sum", c.loss_sum, g.loss_sum, loss_mag);
    if (correct_exact) exact("correct", c.correct, g.correct);
    sum("grad_sumsq", c.grad_sumsq, g.grad_sumsq, std::fabs(c.grad_sumsq));
    exact("grad_max_abs", c.grad_max_abs, g.grad_max_abs);
    exact("nonfinite_count", (double)c.nonfinite_count, (double)g.nonfinite_count);
    exact("zero_count", (double)c.zero_count, (double)g.zero_count);
    for (int l = 0; l < CT_MAX_PARAM_LAYERS; ++l) {
        sum("layer_grad_sumsq[" + std::to_string(l) + "]", c.layer_grad_sumsq[l], g.layer_grad_sumsq[l],
            std::fabs(c.layer_grad_sumsq[l]));
        if (c.layer_nonfinite[l] != g.layer_nonfinite[l])
            bad << " layer_nonfinite[" << l << "]: cpu " << c.layer_nonfinite[l] << " gpu " << g.layer_nonfinite[l]
                << ";";
    }
    if (c.layer_zero_all != g.layer_zero_all)
        bad << " layer_zero_all: cpu 0x" << std::hex << c.layer_zero_all << " gpu 0x" << g.layer_zero_all << std::dec
            << ";";
    if (bad.str().empty()) return ::testing::AssertionSuccess();
    return ::testing::AssertionFailure() << "records differ:" << bad.str();
}

// ---- a vtable check --------------------------------------------------------------
TEST_F(Parity, CudaBackendIsCompleteAndSaysWhatItIs) {
    EXPECT_EQ(gpu->kind, CT_DEVICE_CUDA);
    EXPECT_EQ(cpu->kind, CT_DEVICE_CPU);
    EXPECT_EQ(std::string(gpu->description).rfind("cuda", 0), 0u) << gpu->description;
    const ct_backend_ops *o = gpu->ops;
    const void *required[] = {
        (const void *)o->alloc,          (const void *)o->free,          (const void *)o->upload,
        (const void *)o->download,       (const void *)o->zero,          (const void *)o->sync,
        (const void *)o->host_alloc,     (const void *)o->host_free,     (const void *)o->download_async,
        (const void *)o->fence,          (const void *)o->fence_wait,    (const void *)o->gemm,
        (const void *)o->bias_act_forward, (const void *)o->bias_act_backward, (const void *)o->softmax_xent,
        (const void *)o->mse_onehot,     (const void *)o->loss_accumulate, (const void *)o->dropout_forward,
        (const void *)o->dropout_backward, (const void *)o->gather_batch, (const void *)o->step_stats,
        (const void *)o->optimizer_step, (const void *)o->step_advance, (const void *)o->step_finish,
    };
    for (size_t i = 0; i < sizeof required / sizeof required[0]; ++i) {
        EXPECT_NE(required[i], nullptr) << "op #" << i;
    }
    // Capture is optional, but all four or none.
    int capture = !!o->capture_begin + !!o->capture_end + !!o->graph_launch + !!o->graph_destroy;
    EXPECT_TRUE(capture == 0 || capture == 4) << capture << " of the 4 capture entries are set";
}

TEST_F(Parity, MemoryRoundTripZeroAndAFailedAllocation) {
    std::mt19937 rng(seed_of(test_name()));
    std::vector<float> h = uniform(rng, 1000 * 784 + 3, -5, 5);
    Mem m(gpu);
    float *d = m.put(h);
    EXPECT_TRUE(agree_bits("upload/download", h, m.get(d, h.size())));
    // A copy that starts and ends off any alignment.
    std::vector<float> part(37);
    gpu->ops->download(gpu, part.data(), d + 5, part.size() * sizeof(float));
    EXPECT_TRUE(same_bytes(part.data(), h.data() + 5, part.size() * sizeof(float)));
    gpu->ops->zero(gpu, d + 7, 11 * sizeof(float));
    std::vector<float> back = m.get(d, 20);
    for (int i = 0; i < 20; ++i) {
        EXPECT_EQ(back[i], (i >= 7 && i < 18) ? 0.0f : h[i]) << i;
    }

    // Far more than any GPU has: NULL and an error, and the backend still works.
    ct_error err;
    ct_error_clear(&err);
    void *huge = gpu->ops->alloc(gpu, (size_t)1 << 50, &err);
    EXPECT_EQ(huge, nullptr);
    EXPECT_NE(err.code, 0);
    EXPECT_STRNE(err.msg, "");
    if (huge) gpu->ops->free(gpu, huge);
    // The failed allocation must not linger as the "last error" of the next launch.
    ct_step_ctx ctx = {3, 1, 0, 0, 1};
    ct_step_ctx *dctx = m.one(ctx);
    float *y = m.filled<float>(h.size(), kPoison);
    gpu->ops->dropout_forward(gpu, h.size(), 0.5f, 7, 1, dctx, d, y);
    gpu->ops->sync(gpu);
    Mem c(cpu);
    float *cx = c.put(m.get(d, h.size())), *cy = c.filled<float>(h.size(), kPoison);  // x with its zeroed stretch
    cpu->ops->dropout_forward(cpu, h.size(), 0.5f, 7, 1, c.one(ctx), cx, cy);
    EXPECT_TRUE(agree_bits("dropout after a failed alloc", c.get(cy, h.size()), m.get(y, h.size())));
}

// ---- gemm ----------------------------------------------------------------------
struct GemmCase {
    int m, n, k, ta, tb;
    float alpha, beta;
    int pad;     // added to every leading dimension
    bool plant;  // NaN and +-Inf in A and B (and in C when beta != 0)
};

std::string scalar_tag(float x) {
    if (x == 0.0f) return "0";
    if (x == 1.0f) return "1";
    if (x == 0.5f) return "half";
    if (x == 0.25f) return "quarter";
    if (x == -2.0f) return "m2";
    return "x";
}

std::vector<GemmCase> gemm_cases() {
    std::vector<GemmCase> v = {
        // mlp: forward X W^T (N,T), dW = dZ^T X (T,N), dX = dZ W (N,N)
        {128, 512, 784, 0, 1, 1, 0, 0, false},
        {512, 784, 128, 1, 0, 1, 0, 0, false},
        {128, 512, 512, 0, 1, 1, 0, 0, false},
        {512, 512, 128, 1, 0, 1, 0, 0, false},
        {128, 512, 512, 0, 0, 1, 0, 0, false},
        {128, 10, 512, 0, 1, 1, 0, 0, false},
        {10, 512, 128, 1, 0, 1, 0, 0, false},
        {128, 512, 10, 0, 0, 1, 0, 0, false},
        // seed: 32x784 -> 10, 10 -> 10
        {32, 10, 784, 0, 1, 1, 0, 0, false},
        {10, 784, 32, 1, 0, 1, 0, 0, false},
        {32, 10, 10, 0, 1, 1, 0, 0, false},
        {10, 10, 32, 1, 0, 1, 0, 0, false},
        {32, 10, 10, 0, 0, 1, 0, 0, false},
        // an evaluation chunk of 1000 rows
        {1000, 512, 784, 0, 1, 1, 0, 0, false},
        // planted non-finite values, padded leading dimensions, k = 0, alpha = 0
        {31, 33, 10, 0, 1, 1, 0, 0, true},
        {33, 7, 127, 1, 1, 0.5f, 1, 0, true},
        {127, 10, 33, 1, 0, -2, 0.25f, 0, true},
        {33, 31, 10, 0, 0, 1, 0.25f, 5, false},
        {7, 10, 33, 1, 1, 1, 0, 3, false},
        {7, 5, 0, 0, 1, 1, 0, 0, false},
        {7, 5, 0, 1, 0, 1, 0.5f, 2, false},
        {31, 10, 7, 0, 1, 0, 0.5f, 0, false},
    };
    // Every row count against every column count; k, the transposes, alpha
    // and beta rotate so that each appears with many shapes.
    const int rows[] = {1, 3, 31, 33, 127, 128, 1000};
    const int cols[] = {1, 7, 10, 33, 512, 784};
    const float alphas[] = {1.0f, 0.5f, -2.0f};
    const float betas[] = {0.0f, 1.0f, 0.25f};
    int i = 0;
    for (int m : rows)
        for (int n : cols) {
            int k = cols[(i * 5 + 3) % 6];
            if ((long long)m * n * k > 120000000LL) k = 33;  // keeps the float64 bound quick
            v.push_back({m, n, k, i & 1, (i >> 1) & 1, alphas[i % 3], betas[(i / 3) % 3], 0, false});
            ++i;
        }
    return v;
}

std::string gemm_name(const ::testing::TestParamInfo<GemmCase> &info) {
    const GemmCase &c = info.param;
    std::ostringstream o;
    o << "c" << info.index << "_m" << c.m << "_n" << c.n << "_k" << c.k << "_" << (c.ta ? "T" : "N")
      << (c.tb ? "T" : "N") << "_a" << scalar_tag(c.alpha) << "_b" << scalar_tag(c.beta);
    if (c.pad) o << "_pad" << c.pad;
    if (c.plant) o << "_nonfinite";
    return o.str();
}

// Short descriptions for GoogleTest (and so for the CTest names it discovers).
void PrintTo(const GemmCase &c, std::ostream *os) {
    *os << "m" << c.m << " n" << c.n << " k" << c.k << " " << (c.ta ? "T" : "N") << (c.tb ? "T" : "N") << " alpha "
        << c.alpha << " beta " << c.beta << " pad " << c.pad << (c.plant ? " nonfinite" : "");
}

using GemmParity = ParityP<GemmCase>;

TEST_P(GemmParity, WithinTheSummationBound) {
    const GemmCase c = GetParam();
    std::mt19937 rng(seed_of(test_name()));
    const int a_rows = c.ta ? c.k : c.m, a_cols = c.ta ? c.m : c.k;
    const int b_rows = c.tb ? c.n : c.k, b_cols = c.tb ? c.k : c.n;
    const int lda = std::max(1, a_cols + c.pad), ldb = std::max(1, b_cols + c.pad), ldc = c.n + c.pad;
    std::vector<float> A = uniform(rng, (size_t)std::max(1, a_rows) * lda, -1, 1);
    std::vector<float> B = uniform(rng, (size_t)std::max(1, b_rows) * ldb, -1, 1);
    std::vector<float> C0 = uniform(rng, (size_t)c.m * ldc, -1, 1);
    auto opA = [&](int i, int p) -> float & { return c.ta ? A[(size_t)p * lda + i] : A[(size_t)i * lda + p]; };
    auto opB = [&](int p, int j) -> float & { return c.tb ? B[(size_t)j * ldb + p] : B[(size_t)p * ldb + j]; };
    // Padding columns of C hold a sentinel the op must leave alone.
    for (int i = 0; i < c.m; ++i)
        for (int j = c.n; j < ldc; ++j) C0[(size_t)i * ldc + j] = 4242.0f;
    // With beta == 0, C is not read: NaN there must not propagate.
    if (c.beta == 0.0f)
        for (int i = 0; i < c.m; ++i)
            for (int j = 0; j < c.n; ++j) C0[(size_t)i * ldc + j] = kNaN;
    if (c.plant && c.k > 0) {
        opA(0, 0) = kNaN;                 // row 0 of C: NaN
        opA(c.m - 1, c.k / 2) = -kInf;    // row m-1: +-Inf
        opB(c.k - 1, c.n / 2) = kInf;     // column n/2: +-Inf (NaN where it meets row m-1 with both signs)
        if (c.beta != 0.0f && c.m > 1) C0[(size_t)(c.m / 2) * ldc + (c.n - 1)] = kNaN;
    }

    auto [rc, rg] = both([&](Mem &m) {
        float *dA = m.put(A), *dB = m.put(B), *dC = m.put(C0);
        m.ops()->gemm(m.be(), c.ta, c.tb, c.m, c.n, c.k, c.alpha, dA, lda, dB, ldb, c.beta, dC, ldc);
        return m.get(dC, C0.size());
    });

    // The bound, from |op(A)| |op(B)| in float64 (the i-p-j order keeps it quick).
    std::vector<double> absprod((size_t)c.m * ldc, 0.0);
    {
        std::vector<double> absB((size_t)c.k * c.n);
        for (int p = 0; p < c.k; ++p)
            for (int j = 0; j < c.n; ++j) absB[(size_t)p * c.n + j] = std::fabs((double)opB(p, j));
        std::vector<double> row(c.n);
        for (int i = 0; i < c.m; ++i) {
            std::fill(row.begin(), row.end(), 0.0);
            for (int p = 0; p < c.k; ++p) {
                double a = std::fabs((double)opA(i, p));
                const double *b = &absB[(size_t)p * c.n];
                for (int j = 0; j < c.n; ++j) row[j] += a * b[j];
            }
            for (int j = 0; j < c.n; ++j) absprod[(size_t)i * ldc + j] = row[j];
        }
    }
    const double gamma = kGemmFactor * (c.k + 2) * kU;
    EXPECT_TRUE(agree<float>("C", rc, rg, [&](size_t idx) {
        int j = (int)(idx % ldc);
        if (j >= c.n) return kBitExact;  // padding: untouched
        double cterm = c.beta != 0.0f ? std::fabs((double)c.beta * C0[idx]) : 0.0;
        return gamma * (std::fabs((double)c.alpha) * absprod[idx] + cterm);
    }));
    // Padding untouched on the GPU (agree() only says both did the same).
    for (int i = 0; i < c.m; ++i)
        for (int j = c.n; j < ldc; ++j) {
            ASSERT_EQ(rg[(size_t)i * ldc + j], 4242.0f) << "padding C[" << i << "," << j << "]";
        }
    if (!c.plant) {
        size_t nonfinite = 0;
        for (int i = 0; i < c.m; ++i)
            for (int j = 0; j < c.n; ++j) nonfinite += !std::isfinite(rg[(size_t)i * ldc + j]);
        EXPECT_EQ(nonfinite, 0u) << "finite inputs gave non-finite outputs (beta == 0 read C?)";
    } else if (c.k > 0) {
        EXPECT_TRUE(std::isnan(rg[0])) << "NaN in row 0 of A did not reach C";
    }
}

INSTANTIATE_TEST_SUITE_P(Shapes, GemmParity, ::testing::ValuesIn(gemm_cases()), gemm_name);

// ---- bias + activation ---------------------------------------------------------
struct ActCase {
    ct_activation act;
    int rows, cols;
};

std::vector<ActCase> act_cases() {
    const std::pair<int, int> shapes[] = {{1, 1},     {1, 10},    {3, 7},     {31, 10},  {33, 33},  {127, 512},
                                          {128, 784}, {128, 512}, {1000, 10}, {32, 10},  {1000, 1}, {3, 784}};
    const ct_activation acts[] = {CT_ACT_LINEAR, CT_ACT_RELU, CT_ACT_SIGMOID, CT_ACT_TANH, CT_ACT_SOFTMAX};
    std::vector<ActCase> v;
    for (ct_activation a : acts)
        for (auto s : shapes) v.push_back({a, s.first, s.second});
    return v;
}

std::string act_name(const ::testing::TestParamInfo<ActCase> &info) {
    return std::string(ct_activation_name(info.param.act)) + "_r" + std::to_string(info.param.rows) + "_c" +
           std::to_string(info.param.cols);
}

void PrintTo(const ActCase &c, std::ostream *os) {
    *os << ct_activation_name(c.act) << " " << c.rows << "x" << c.cols;
}

// Plants NaN, +Inf, -Inf, +-1e4 and +-50 at fixed places when there is room.
void plant_specials(std::vector<float> &v) {
    size_t n = v.size();
    if (n < 8) return;
    v[n / 3] = kNaN;
    v[2 * n / 3] = kInf;
    v[n - 1] = -kInf;
    v[1] = 1e4f;
    v[n / 2] = -1e4f;
    v[n / 5] = 50.0f;
    v[n / 7 + 2] = -50.0f;
}

double act_forward_bound(ct_activation act, float c) {
    switch (act) {
    case CT_ACT_LINEAR:
    case CT_ACT_RELU: return 0.0;
    case CT_ACT_SIGMOID:
    case CT_ACT_TANH: return kActUlps * ulp_of(c);
    case CT_ACT_SOFTMAX: return kSoftmaxRel * std::fabs(c) + kSoftmaxAbs;
    }
    return 0.0;
}

using ActForwardParity = ParityP<ActCase>;

TEST_P(ActForwardParity, WithAndWithoutBias) {
    const ActCase c = GetParam();
    std::mt19937 rng(seed_of(test_name()));
    const size_t n = (size_t)c.rows * c.cols;
    std::vector<float> z = uniform(rng, n, -4, 4);
    std::vector<float> bias = uniform(rng, (size_t)c.cols, -1, 1);
    plant_specials(z);
    // A row of equal values (softmax: exactly uniform).
    if (c.rows >= 3)
        for (int j = 0; j < c.cols; ++j) z[(size_t)1 * c.cols + j] = 0.75f;
    for (int with_bias = 0; with_bias < 2; ++with_bias) {
        auto [rc, rg] = both([&](Mem &m) {
            float *y = m.put(z);
            const float *b = with_bias ? m.put(bias) : nullptr;
            m.ops()->bias_act_forward(m.be(), c.act, c.rows, c.cols, b, y);
            return m.get(y, n);
        });
        EXPECT_TRUE(agree<float>(with_bias ? "y (bias)" : "y (no bias)", rc, rg,
                                 [&](size_t i) { return act_forward_bound(c.act, rc[i]); }));
        if (c.act == CT_ACT_SOFTMAX && c.rows >= 3 && !with_bias) {
            for (int j = 0; j < c.cols; ++j) {
                EXPECT_NEAR(rg[(size_t)c.cols + j], 1.0 / c.cols, 1e-7) << "equal logits, column " << j;
            }
        }
    }
}

INSTANTIATE_TEST_SUITE_P(Shapes, ActForwardParity, ::testing::ValuesIn(act_cases()), act_name);

using ActBackwardParity = ParityP<ActCase>;

TEST_P(ActBackwardParity, DzAndDbias) {
    const ActCase c = GetParam();
    std::mt19937 rng(seed_of(test_name()));
    const size_t n = (size_t)c.rows * c.cols;
    // y: a real output of the activation (ReLU has its exact zeros, softmax rows sum to 1).
    std::vector<float> y;
    {
        Mem m(cpu);
        float *d = m.put(uniform(rng, n, -3, 3));
        cpu->ops->bias_act_forward(cpu, c.act, c.rows, c.cols, nullptr, d);
        y = m.get(d, n);
    }
    std::vector<float> dy = uniform(rng, n, -1, 1);
    if (n >= 8) {
        y[n / 3] = kNaN;     // ReLU: derivative 0 there; the others: NaN
        dy[n / 2] = kNaN;
        dy[2 * n / 3] = kInf;
        dy[n - 1] = -kInf;
    }
    for (int with_dbias = 0; with_dbias < 2; ++with_dbias) {
        struct Out {
            std::vector<float> dz, db;
        };
        auto [rc, rg] = both([&](Mem &m) {
            float *dy_d = m.put(dy);
            float *db = with_dbias ? m.filled<float>((size_t)c.cols, kPoison) : nullptr;
            m.ops()->bias_act_backward(m.be(), c.act, c.rows, c.cols, m.put(y), dy_d, db);
            return Out{m.get(dy_d, n), with_dbias ? m.get(db, (size_t)c.cols) : std::vector<float>()};
        });
        // Per-element bound of dz (see the table).
        std::vector<double> bound(n, 0.0);
        for (int r = 0; r < c.rows; ++r) {
            double rowdot = 0.0;
            if (c.act == CT_ACT_SOFTMAX)
                for (int j = 0; j < c.cols; ++j) rowdot += std::fabs((double)dy[(size_t)r * c.cols + j] * y[(size_t)r * c.cols + j]);
            for (int j = 0; j < c.cols; ++j) {
                size_t i = (size_t)r * c.cols + j;
                switch (c.act) {
                case CT_ACT_LINEAR:
                case CT_ACT_RELU: bound[i] = 0.0; break;
                case CT_ACT_SIGMOID:
                case CT_ACT_TANH: bound[i] = kActUlps * ulp_of(rc.dz[i]) + kActBackAbs * std::fabs(dy[i]); break;
                case CT_ACT_SOFTMAX:
                    bound[i] = kSoftmaxRel * std::fabs(rc.dz[i]) + kSoftmaxRel * std::fabs(y[i]) * rowdot + kSoftmaxAbs;
                    break;
                }
            }
        }
        EXPECT_TRUE(agree<float>("dz", rc.dz, rg.dz, [&](size_t i) { return bound[i]; }));
        if (!with_dbias) continue;
        EXPECT_TRUE(agree<float>("dbias", rc.db, rg.db, [&](size_t j) {
            double s = 0.0, mag = 0.0;
            for (int r = 0; r < c.rows; ++r) {
                size_t i = (size_t)r * c.cols + j;
                if (std::isfinite(bound[i])) s += bound[i];
                mag += std::fabs((double)rc.dz[i]);
            }
            return s + ulp_of(rc.db[j]) + kSumRel * mag;
        }));
    }
}

INSTANTIATE_TEST_SUITE_P(Shapes, ActBackwardParity, ::testing::ValuesIn(act_cases()), act_name);

// ---- losses --------------------------------------------------------------------
struct LossCase {
    int rows, classes;
    float spread;  // logits uniform in (-spread, spread)
};

std::vector<LossCase> loss_cases() {
    return {{1, 1, 5},    {1, 10, 5},   {3, 7, 5},     {31, 10, 5},  {33, 33, 5},  {128, 10, 5},  {1000, 10, 5},
            {127, 512, 5}, {32, 10, 5}, {3, 784, 5},  {1000, 1, 5}, {128, 10, 30}, {33, 7, 30},  {12, 10, 5}};
}

std::string loss_name(const ::testing::TestParamInfo<LossCase> &info) {
    return "r" + std::to_string(info.param.rows) + "_c" + std::to_string(info.param.classes) + "_spread" +
           std::to_string((int)info.param.spread);
}

void PrintTo(const LossCase &c, std::ostream *os) {
    *os << c.rows << " rows, " << c.classes << " classes, logits within " << c.spread;
}

// Random logits and labels, with the special rows of the contract first:
// label == classes-1, labels out of range (-1, classes, 1000, INT32_MAX,
// INT32_MIN), equal logits (label 0 and label classes-1: ties go to index 0),
// logits of +-1e4, NaN, +Inf, -Inf at the label and elsewhere.
void loss_inputs(std::mt19937 &rng, const LossCase &c, std::vector<float> &z, std::vector<int32_t> &labels) {
    const int C = c.classes;
    z = uniform(rng, (size_t)c.rows * C, -c.spread, c.spread);
    labels.resize((size_t)c.rows);
    std::uniform_int_distribution<int32_t> lab(0, C - 1);
    for (auto &l : labels) l = lab(rng);
    auto row = [&](int r) { return &z[(size_t)r * C]; };
    labels[0] = C - 1;
    if (c.rows > 1) labels[1] = -1;
    if (c.rows > 2) labels[2] = C;
    if (c.rows > 3) {
        std::fill(row(3), row(3) + C, 3.25f);
        labels[3] = 0;
    }
    if (c.rows > 4) {
        for (int j = 0; j < C; ++j) row(4)[j] = (j % 2) ? -1e4f : 1e4f;
        labels[4] = C > 1 ? 1 : 0;
    }
    if (c.rows > 5) {
        std::fill(row(5), row(5) + C, -7.5f);
        labels[5] = C - 1;
    }
    if (c.rows > 6) row(6)[C / 2] = kNaN;
    if (c.rows > 7) row(7)[0] = kInf;
    if (c.rows > 8) row(8)[labels[8]] = -kInf;
    if (c.rows > 9 && C > 1) row(9)[(labels[9] + 1) % C] = -kInf;
    if (c.rows > 10) labels[10] = 1000;
    if (c.rows > 11) labels[11] = std::numeric_limits<int32_t>::max();
    if (c.rows > 12) labels[12] = std::numeric_limits<int32_t>::min();
}

struct LossOut {
    std::vector<float> grad, loss, correct;
};

using XentParity = ParityP<LossCase>;

TEST_P(XentParity, LossGradientAndCorrect) {
    const LossCase c = GetParam();
    std::mt19937 rng(seed_of(test_name()));
    std::vector<float> z;
    std::vector<int32_t> labels;
    loss_inputs(rng, c, z, labels);
    const size_t n = z.size();
    const float scale = 1.0f / (float)c.rows;
    for (int with_grad = 0; with_grad < 2; ++with_grad) {
        auto [rc, rg] = both([&](Mem &m) {
            float *g = with_grad ? m.filled<float>(n, kPoison) : nullptr;
            float *loss = m.filled<float>((size_t)c.rows, kPoison), *cor = m.filled<float>((size_t)c.rows, kPoison);
            m.ops()->softmax_xent(m.be(), c.rows, c.classes, m.put(z), m.put(labels), scale, g, loss, cor);
            return LossOut{with_grad ? m.get(g, n) : std::vector<float>(), m.get(loss, (size_t)c.rows),
                           m.get(cor, (size_t)c.rows)};
        });
        EXPECT_TRUE(agree<float>("row_loss", rc.loss, rg.loss,
                                 [&](size_t i) { return kXentRel * (std::fabs(rc.loss[i]) + 1.0); }));
        EXPECT_TRUE(agree_exact("row_correct", rc.correct, rg.correct));
        if (with_grad) {
            EXPECT_TRUE(agree<float>("dlogits", rc.grad, rg.grad, [&](size_t i) {
                return kXentRel * std::fabs(rc.grad[i]) + kLossGradAbs * scale;
            }));
        }
        // The contract's fixed points, on the GPU's own numbers.
        EXPECT_TRUE(std::isfinite(rg.loss[0])) << "label == classes-1";
        if (c.rows > 1) {
            EXPECT_TRUE(std::isnan(rg.loss[1])) << "label -1";
        }
        if (c.rows > 2) {
            EXPECT_TRUE(std::isnan(rg.loss[2])) << "label == classes";
        }
        if (c.rows > 3) {
            EXPECT_NEAR(rg.loss[3], std::log((double)c.classes), 1e-6) << "equal logits";
            EXPECT_EQ(rg.correct[3], 1.0f) << "ties go to index 0";
        }
        if (c.rows > 5 && c.classes > 1) {
            EXPECT_EQ(rg.correct[5], 0.0f) << "ties go to index 0, not classes-1";
        }
        if (c.rows > 8 && c.classes > 1) {
            EXPECT_EQ(kind_of(rg.loss[8]), Kind::PosInf) << "-Inf logit at the label";
        }
        if (c.rows > 1 && with_grad) {
            for (int j = 0; j < c.classes; ++j) {
                EXPECT_EQ(rg.grad[(size_t)c.classes + j], 0.0f) << "bad label's gradient row";
            }
        }
        if (c.rows > 1) {
            EXPECT_EQ(rg.correct[1], 0.0f);
        }
    }
}

INSTANTIATE_TEST_SUITE_P(Shapes, XentParity, ::testing::ValuesIn(loss_cases()), loss_name);

using MseParity = ParityP<LossCase>;

TEST_P(MseParity, LossGradientAndCorrect) {
    const LossCase c = GetParam();
    std::mt19937 rng(seed_of(test_name()));
    std::vector<float> p;
    std::vector<int32_t> labels;
    loss_inputs(rng, c, p, labels);
    // Predictions mostly in (0, 1), as a softmax or sigmoid output would be.
    for (float &x : p)
        if (std::isfinite(x) && std::fabs(x) < 1e3f) x = 0.5f + x / (4.0f * c.spread);
    const size_t n = p.size();
    const float scale = 1.0f / (float)c.rows;
    for (int with_grad = 0; with_grad < 2; ++with_grad) {
        auto [rc, rg] = both([&](Mem &m) {
            float *g = with_grad ? m.filled<float>(n, kPoison) : nullptr;
            float *loss = m.filled<float>((size_t)c.rows, kPoison), *cor = m.filled<float>((size_t)c.rows, kPoison);
            m.ops()->mse_onehot(m.be(), c.rows, c.classes, m.put(p), m.put(labels), scale, g, loss, cor);
            return LossOut{with_grad ? m.get(g, n) : std::vector<float>(), m.get(loss, (size_t)c.rows),
                           m.get(cor, (size_t)c.rows)};
        });
        EXPECT_TRUE(agree<float>("row_loss", rc.loss, rg.loss, [&](size_t i) { return kXentRel * std::fabs(rc.loss[i]); }));
        EXPECT_TRUE(agree_exact("row_correct", rc.correct, rg.correct));
        if (with_grad) {
            EXPECT_TRUE(agree<float>("dpred", rc.grad, rg.grad, [&](size_t i) {
                return kXentRel * std::fabs(rc.grad[i]) + kLossGradAbs * scale;
            }));
        }
        if (c.rows > 1) {
            EXPECT_TRUE(std::isnan(rg.loss[1])) << "label -1";
        }
    }
}

INSTANTIATE_TEST_SUITE_P(Shapes, MseParity, ::testing::ValuesIn(loss_cases()), loss_name);

TEST_F(Parity, LossAccumulateAddsTheBatchToTheRunningSums) {
    std::mt19937 rng(seed_of(test_name()));
    for (int rows : {0, 1, 3, 33, 128, 1000}) {
        std::vector<float> loss = uniform(rng, (size_t)rows, 0, 3), cor((size_t)rows);
        for (float &x : cor) x = (float)(rng() % 2);
        const std::vector<double> acc0 = {1234.5678, 17.0};
        auto [rc, rg] = both([&](Mem &m) {
            double *acc = m.put(acc0);
            m.ops()->loss_accumulate(m.be(), rows, m.put(loss), m.put(cor), acc);
            // Twice: it accumulates, it does not overwrite.
            m.ops()->loss_accumulate(m.be(), rows, m.put(loss), m.put(cor), acc);
            return m.get(acc, 2);
        });
        double mag = std::fabs(acc0[0]);
        for (float x : loss) mag += 2.0 * std::fabs(x);
        EXPECT_TRUE(sum_close("loss sum, rows " + std::to_string(rows), rc[0], rg[0], mag));
        EXPECT_EQ(rc[1], rg[1]) << "correct count, rows " << rows;
        if (rows == 0) {
            EXPECT_EQ(rg[0], acc0[0]);
            EXPECT_EQ(rg[1], acc0[1]);
        }
    }
}

// ---- dropout -------------------------------------------------------------------
struct DropCase {
    size_t n;
    float rate;
    uint32_t layer;
    uint64_t step;
    bool in_place;
};

std::vector<DropCase> drop_cases() {
    return {{1, 0.5f, 0, 1, false},          {3, 0.2f, 1, 2, true},          {31, 0.5f, 2, 7, false},
            {33, 0.9f, 3, 1ull << 40, false}, {1000, 0.2f, 1, 12345, true},  {128 * 512, 0.5f, 1, 99, false},
            {1000 * 512, 0.2f, 3, 4242, false}, {1000, 0.0f, 1, 5, false},   {128 * 784, 0.0f, 0, 5, true},
            {7, 0.999f, 1, 3, false},        {127 * 33, 0.5f, 31, 0xFFFFFFFFull, false}};
}

std::string drop_name(const ::testing::TestParamInfo<DropCase> &info) {
    const DropCase &c = info.param;
    return "c" + std::to_string(info.index) + "_n" + std::to_string(c.n) + "_rate" +
           std::to_string((int)std::lround(c.rate * 1000)) + "permille_layer" + std::to_string(c.layer) +
           (c.in_place ? "_inplace" : "");
}

void PrintTo(const DropCase &c, std::ostream *os) {
    *os << "n " << c.n << " rate " << c.rate << " layer " << c.layer << " step " << c.step
        << (c.in_place ? " in place" : "");
}

using DropoutParity = ParityP<DropCase>;

TEST_P(DropoutParity, ForwardAndBackwardBitExact) {
    const DropCase c = GetParam();
    std::mt19937 rng(seed_of(test_name()));
    std::vector<float> x = uniform(rng, c.n, -2, 2), dy = uniform(rng, c.n, -1, 1);
    plant_specials(x);
    plant_specials(dy);
    const uint64_t seed = 0x5eedull + c.n;
    const ct_step_ctx ctx = {c.step, 2, 9, 1, 4};
    struct Out {
        std::vector<float> y, dx;
    };
    auto [rc, rg] = both([&](Mem &m) {
        ct_step_ctx *dctx = m.one(ctx);
        float *dx_in = m.put(x);
        float *y = c.in_place ? dx_in : m.filled<float>(c.n, kPoison);
        m.ops()->dropout_forward(m.be(), c.n, c.rate, seed, c.layer, dctx, dx_in, y);
        float *ddy = m.put(dy);
        float *dx = c.in_place ? ddy : m.filled<float>(c.n, kPoison);
        m.ops()->dropout_backward(m.be(), c.n, c.rate, seed, c.layer, dctx, ddy, dx);
        return Out{m.get(y, c.n), m.get(dx, c.n)};
    });
    EXPECT_TRUE(agree_bits("y", rc.y, rg.y));
    EXPECT_TRUE(agree_bits("dx", rc.dx, rg.dx));
    if (c.rate == 0.0f) {
        EXPECT_TRUE(agree_bits("rate 0 is a copy", x, rg.y));
    }
    if (c.rate > 0.0f && c.n >= 1000) {
        size_t dropped = 0;
        for (size_t i = 0; i < c.n; ++i) dropped += rg.y[i] == 0.0f;
        double expect = c.rate * c.n, sd = std::sqrt(c.n * c.rate * (1 - c.rate));
        EXPECT_NEAR((double)dropped, expect, 6 * sd + 1) << "the mask does not drop about rate*n";
    }
}

INSTANTIATE_TEST_SUITE_P(Cases, DropoutParity, ::testing::ValuesIn(drop_cases()), drop_name);

TEST_F(Parity, DropoutStreamComesFromCtxStep) {
    std::mt19937 rng(seed_of(test_name()));
    const size_t n = 128 * 512;
    std::vector<float> x = uniform(rng, n, -1, 1);
    std::vector<std::vector<float>> gpu_out;
    for (uint64_t step : {17ull, 18ull, (1ull << 33) + 17}) {
        ct_step_ctx ctx = {step, 1, 0, 0, 2};
        auto [rc, rg] = both([&](Mem &m) {
            float *y = m.filled<float>(n, kPoison);
            m.ops()->dropout_forward(m.be(), n, 0.5f, 99, 2, m.one(ctx), m.put(x), y);
            return m.get(y, n);
        });
        EXPECT_TRUE(agree_bits("y at step " + std::to_string(step), rc, rg));
        gpu_out.push_back(rg);
    }
    EXPECT_NE(gpu_out[0], gpu_out[1]) << "steps 17 and 18 drew the same mask";
    EXPECT_NE(gpu_out[0], gpu_out[2]) << "step 2^33+17 drew step 17's mask: the step is truncated to 32 bits";
}

// ---- gather --------------------------------------------------------------------
struct GatherCase {
    int rows;
    size_t elems, count;
    ct_elem_type type;
    uint32_t batch;
    size_t stride;
    float scale;
    bool bad;  // out-of-range indices planted
};

std::vector<GatherCase> gather_cases() {
    return {
        {128, 784, 1000, CT_ELEM_U8, 3, 128, 1.0f / 255.0f, true},
        {32, 784, 500, CT_ELEM_U8, 0, 32, 1.0f / 255.0f, false},
        {1, 1, 1, CT_ELEM_U8, 0, 1, 1.0f / 255.0f, false},
        {1, 7, 3, CT_ELEM_F32, 5, 1, 1.0f, true},
        {31, 33, 200, CT_ELEM_U8, 2, 40, 0.3f, true},
        {1000, 10, 1000, CT_ELEM_F32, 0, 1000, 0.5f, true},
        {33, 784, 64, CT_ELEM_F32, 1, 33, 1.0f / 255.0f, false},
        {127, 7, 10, CT_ELEM_U8, 4, 127, 1.0f / 255.0f, true},
        {1000, 784, 1000, CT_ELEM_U8, 1, 1000, 1.0f / 255.0f, true},
    };
}

std::string gather_name(const ::testing::TestParamInfo<GatherCase> &info) {
    const GatherCase &c = info.param;
    return "c" + std::to_string(info.index) + "_rows" + std::to_string(c.rows) + "_elems" + std::to_string(c.elems) +
           (c.type == CT_ELEM_U8 ? "_u8" : "_f32") + "_batch" + std::to_string(c.batch) + (c.bad ? "_badindex" : "");
}

void PrintTo(const GatherCase &c, std::ostream *os) {
    *os << c.rows << " rows of " << c.elems << (c.type == CT_ELEM_U8 ? " u8" : " f32") << " from " << c.count
        << ", batch " << c.batch << " stride " << c.stride << (c.bad ? ", bad indices" : "");
}

using GatherParity = ParityP<GatherCase>;

TEST_P(GatherParity, RowsAndLabelsBitExact) {
    const GatherCase c = GetParam();
    std::mt19937 rng(seed_of(test_name()));
    std::vector<uint8_t> img_u8;
    std::vector<float> img_f32;
    if (c.type == CT_ELEM_U8) {
        img_u8.resize(c.count * c.elems);
        for (auto &b : img_u8) b = (uint8_t)(rng() & 0xff);
    } else {
        img_f32 = uniform(rng, c.count * c.elems, -3, 3);
    }
    std::vector<uint8_t> lab(c.count);
    for (auto &l : lab) l = (uint8_t)(rng() % 10);
    // The order: stride entries per batch; batch c.batch is the one read.
    std::vector<int32_t> order((size_t)c.batch * c.stride + c.stride);
    for (auto &o : order) o = (int32_t)(rng() % c.count);
    int32_t *idx = &order[(size_t)c.batch * c.stride];
    if (c.bad) {
        idx[0] = -1;
        if (c.rows > 2) idx[c.rows / 2] = (int32_t)c.count;
        if (c.rows > 1) idx[c.rows - 1] = std::numeric_limits<int32_t>::max();
        if (c.rows > 3) idx[1] = std::numeric_limits<int32_t>::min();
    }
    const ct_step_ctx ctx = {77, 3, c.batch, 0, 1};
    struct Out {
        std::vector<float> x;
        std::vector<int32_t> labels;
    };
    auto [rc, rg] = both([&](Mem &m) {
        ct_device_dataset ds;
        std::memset(&ds, 0, sizeof ds);
        ds.images = c.type == CT_ELEM_U8 ? (const void *)m.put(img_u8) : (const void *)m.put(img_f32);
        ds.labels = m.put(lab);
        ds.elem_type = c.type;
        ds.count = c.count;
        ds.sample_elems = c.elems;
        ds.scale = c.scale;
        float *x = m.filled<float>((size_t)c.rows * c.elems, kPoison);
        int32_t *labels = m.filled<int32_t>((size_t)c.rows, 12345);
        m.ops()->gather_batch(m.be(), &ds, m.put(order), c.stride, m.one(ctx), c.rows, x, labels);
        std::memset(&ds, 0xA5, sizeof ds);  // a host struct: read at the call, not later
        return Out{m.get(x, (size_t)c.rows * c.elems), m.get(labels, (size_t)c.rows)};
    });
    EXPECT_TRUE(agree_bits("x", rc.x, rg.x));
    EXPECT_TRUE(same_values("labels", rc.labels, rg.labels));
    if (c.bad) {
        EXPECT_EQ(rg.labels[0], -1);
        EXPECT_TRUE(std::isnan(rg.x[0]));
    }
}

INSTANTIATE_TEST_SUITE_P(Cases, GatherParity, ::testing::ValuesIn(gather_cases()), gather_name);

// ---- step statistics --------------------------------------------------------------
enum : unsigned {
    P_NAN_GRAD = 1,      // NaN in layer 1
    P_PINF_GRAD = 2,     // +Inf in layer 0
    P_NINF_TAIL = 4,     // -Inf past the last layer
    P_ZERO_LAYER = 8,    // the last layer's gradient all zero, -0.0 among them
    P_NAN_LOSS = 16,     // a NaN row loss
    P_INF_LOSS = 32,     // a +Inf row loss
    P_ALL_ZERO = 64,     // every gradient zero
    P_MANY_NAN = 128,    // NaN every 97th element, +Inf every 1001st
};

struct StatsCase {
    const char *name;
    std::vector<size_t> layers;  // sizes
    size_t head, tail;           // floats before the first and after the last layer
    uint32_t rows;
    unsigned plant;
    double explode;              // exploding threshold as a multiple of ||g|| (0: off)
    uint32_t slot, ring_len;
};

const std::vector<size_t> kMlpLayers = {784 * 512 + 512, 512 * 512 + 512, 512 * 10 + 10};
const std::vector<size_t> kSeedLayers = {784 * 10 + 10, 10 * 10 + 10};

std::vector<StatsCase> stats_cases() {
    return {
        {"mlp", kMlpLayers, 0, 0, 128, 0, 0, 3, 5},
        {"mlp_nan_inf_exploding", kMlpLayers, 0, 0, 128, P_NAN_GRAD | P_PINF_GRAD, 0.5, 0, 1},
        {"mlp_zero_layer_not_exploding", kMlpLayers, 0, 0, 128, P_ZERO_LAYER, 2.0, 4, 5},
        {"seed", kSeedLayers, 0, 0, 32, 0, 0, 1, 3},
        {"seed_empty_batch", kSeedLayers, 0, 0, 0, 0, 0, 2, 3},
        {"sixteen_layers_head_tail", {1, 3, 7, 31, 33, 127, 128, 1000, 1, 7, 10, 33, 512, 784, 3, 1}, 5, 7, 1,
         P_NINF_TAIL | P_NAN_LOSS, 0, 6, 8},
        {"mlp_many_nonfinite", kMlpLayers, 0, 0, 1000, P_MANY_NAN | P_INF_LOSS, 0, 1, 2},
        {"seed_all_zero", kSeedLayers, 0, 0, 3, P_ALL_ZERO, 0, 0, 4},
        {"no_layers", {}, 1000, 0, 31, P_NAN_LOSS, 0, 0, 2},
        {"one_element_layers", {1, 1, 1}, 0, 0, 33, P_ZERO_LAYER, 0, 2, 3},
    };
}

std::string stats_name(const ::testing::TestParamInfo<StatsCase> &info) { return info.param.name; }

void PrintTo(const StatsCase &c, std::ostream *os) { *os << c.name; }

// A host record's bytes, filled with a sentinel (slots a step must not touch).
std::vector<ct_step_record> sentinel_ring(uint32_t len) {
    std::vector<ct_step_record> ring(len);
    std::memset(ring.data(), 0xA5, len * sizeof(ct_step_record));
    return ring;
}

using StatsParity = ParityP<StatsCase>;

TEST_P(StatsParity, RecordInTheCtxSlotOthersUntouched) {
    const StatsCase c = GetParam();
    std::mt19937 rng(seed_of(test_name()));
    std::vector<size_t> begin = {c.head};
    for (size_t s : c.layers) begin.push_back(begin.back() + s);
    const size_t n = begin.back() + c.tail;
    std::vector<float> grads = uniform(rng, n, -0.05f, 0.05f);
    std::vector<float> row_loss = uniform(rng, c.rows, 0.01f, 3.0f), row_correct(c.rows);
    for (float &x : row_correct) x = (float)(rng() % 2);
    const size_t nl = c.layers.size();
    if ((c.plant & P_NAN_GRAD) && nl > 1) grads[begin[1] + c.layers[1] / 2] = kNaN;
    if ((c.plant & P_PINF_GRAD) && nl > 0) grads[begin[0]] = kInf;
    if (c.plant & P_NINF_TAIL) grads[n - 1] = -kInf;
    if ((c.plant & P_ZERO_LAYER) && nl > 0)
        for (size_t i = begin[nl - 1]; i < begin[nl]; ++i) grads[i] = (i % 3) ? 0.0f : -0.0f;
    if (c.plant & P_ALL_ZERO) std::fill(grads.begin(), grads.end(), 0.0f);
    if (c.plant & P_MANY_NAN) {
        for (size_t i = 5; i < n; i += 97) grads[i] = kNaN;
        for (size_t i = 11; i < n; i += 1001) grads[i] = (i % 2) ? kInf : -kInf;
    }
    if ((c.plant & P_NAN_LOSS) && c.rows > 0) row_loss[c.rows / 2] = kNaN;
    if ((c.plant & P_INF_LOSS) && c.rows > 0) row_loss[c.rows - 1] = kInf;
    double sumsq = 0.0;
    for (float g : grads)
        if (std::isfinite(g)) sumsq += (double)g * g;
    ct_health_thresholds th = {1e-7, c.explode * std::sqrt(sumsq)};
    const ct_step_ctx ctx = {1001, 4, 17, c.slot, c.ring_len};
    const std::vector<ct_step_record> ring0 = sentinel_ring(c.ring_len);

    auto [rc, rg] = both([&](Mem &m) {
        std::vector<size_t> host_begin = begin;
        ct_stats_args a;
        std::memset(&a, 0, sizeof a);
        a.grads = m.put(grads);
        a.n = n;
        a.n_layers = (uint32_t)nl;
        a.layer_begin = host_begin.data();
        a.row_loss = m.put(row_loss);
        a.row_correct = m.put(row_correct);
        a.rows = c.rows;
        a.th = th;
        ct_step_record *ring = m.put(ring0);
        m.ops()->step_stats(m.be(), &a, m.one(ctx), ring);
        // Host structs are read at the call: scribbling now must change nothing.
        std::fill(host_begin.begin(), host_begin.end(), (size_t)0x5A5A5A5A);
        std::memset(&a, 0x5A, sizeof a);
        return m.get(ring, c.ring_len);
    });
    double loss_mag = 0.0;
    for (float l : row_loss)
        if (std::isfinite(l)) loss_mag += std::fabs(l);
    const ct_step_record &gc = rc[c.slot], &gg = rg[c.slot];
    EXPECT_TRUE(records_agree(gc, gg, loss_mag)) << "slot " << c.slot;
    // The other slots: untouched on both.
    for (uint32_t s = 0; s < c.ring_len; ++s) {
        if (s == c.slot) continue;
        EXPECT_TRUE(same_bytes(&rg[s], &ring0[s], sizeof(ct_step_record))) << "GPU wrote slot " << s;
        EXPECT_TRUE(same_bytes(&rc[s], &ring0[s], sizeof(ct_step_record))) << "CPU wrote slot " << s;
    }
    // The case's point, on the GPU's record (so a case cannot silently test nothing).
    EXPECT_EQ(gg.step, ctx.step);
    EXPECT_EQ(gg.epoch, ctx.epoch);
    EXPECT_EQ(gg.batch_size, c.rows);
    EXPECT_EQ(gg.clip_scale, 1.0);
    if (c.plant & (P_NAN_GRAD | P_PINF_GRAD | P_NINF_TAIL | P_MANY_NAN)) {
        EXPECT_TRUE(gg.flags & CT_FLAG_NONFINITE_GRAD);
    }
    if ((c.plant & P_NAN_GRAD) && nl > 1) {
        EXPECT_GE(gg.layer_nonfinite[1], 1u);
    }
    if (c.plant & (P_NAN_LOSS | P_INF_LOSS)) {
        EXPECT_TRUE(gg.flags & CT_FLAG_NONFINITE_LOSS);
    }
    if ((c.plant & P_ZERO_LAYER) && c.rows > 0) {
        EXPECT_TRUE(gg.flags & CT_FLAG_ZERO_GRAD) << flag_names(gg.flags);
        EXPECT_TRUE(gg.layer_zero_all & (1u << (nl - 1)));
    }
    if (c.rows == 0) {
        EXPECT_TRUE(gg.flags & CT_FLAG_EMPTY_BATCH);
        EXPECT_EQ(gg.layer_zero_all, 0u);
    }
    if (c.explode > 0) {
        EXPECT_EQ((gg.flags & CT_FLAG_EXPLODING_GRAD) != 0, c.explode < 1.0);
    }
    if (c.plant == 0 && c.rows > 0 && c.explode == 0) {
        EXPECT_EQ(gg.flags, 0u) << flag_names(gg.flags);
    }
}

INSTANTIATE_TEST_SUITE_P(Cases, StatsParity, ::testing::ValuesIn(stats_cases()), stats_name);

// ---- edge-of-float cases (the CPU's in tests/unit/test_stability.cpp) -------------
TEST_F(Parity, XentExtremeLogitsAsABatchAndAsBatchesOfOne) {
    std::vector<float> z;
    std::vector<int32_t> labels;
    ct_test::extreme_logit_rows(z, labels);
    const int C = ct_test::kExtremeClasses, rows = (int)labels.size();
    for (int one = 0; one < 2; ++one)
        for (int r = 0; r < (one ? rows : 1); ++r) {
            SCOPED_TRACE(one ? "batch of one, row " + std::to_string(r) : std::string("whole batch"));
            const int n_rows = one ? 1 : rows;
            const std::vector<float> zr = one ? std::vector<float>(z.begin() + (ptrdiff_t)r * C,
                                                                    z.begin() + (ptrdiff_t)(r + 1) * C)
                                              : z;
            const std::vector<int32_t> lr = one ? std::vector<int32_t>{labels[(size_t)r]} : labels;
            const float scale = 1.0f / (float)n_rows;
            auto [rc, rg] = both([&](Mem &m) {
                float *g = m.filled<float>(zr.size(), kPoison);
                float *loss = m.filled<float>((size_t)n_rows, kPoison), *cor = m.filled<float>((size_t)n_rows, kPoison);
                m.ops()->softmax_xent(m.be(), n_rows, C, m.put(zr), m.put(lr), scale, g, loss, cor);
                return LossOut{m.get(g, zr.size()), m.get(loss, (size_t)n_rows), m.get(cor, (size_t)n_rows)};
            });
            for (float x : rg.loss) EXPECT_TRUE(std::isfinite(x));
            for (float x : rg.grad) EXPECT_TRUE(std::isfinite(x));
            EXPECT_TRUE(agree<float>("row_loss", rc.loss, rg.loss,
                                     [&](size_t i) { return kXentRel * (std::fabs(rc.loss[i]) + 1.0); }));
            EXPECT_TRUE(agree_exact("row_correct", rc.correct, rg.correct));
            EXPECT_TRUE(agree<float>("dlogits", rc.grad, rg.grad, [&](size_t i) {
                return kXentRel * std::fabs(rc.grad[i]) + kLossGradAbs * scale;
            }));
        }
}

TEST_F(Parity, MseLargePredictions) {
    const int C = 10, rows = 4;
    std::vector<float> p((size_t)rows * C, 0.0f);
    p[9] = 3e18f;   // row 0, label 9
    p[10] = -1e18f; // row 1, label 3
    p[13] = 1.0f + std::ldexp(1.0f, -23);
    for (int c = 0; c < C; ++c) p[(size_t)2 * C + c] = -3e18f;  // row 2, label 0
    p[(size_t)3 * C + 4] = 1e20f;  // row 3: a loss past FLT_MAX, +inf on both
    const std::vector<int32_t> labels = {9, 3, 0, 0};
    const float scale = 1.0f / rows;
    auto [rc, rg] = both([&](Mem &m) {
        float *g = m.filled<float>(p.size(), kPoison);
        float *loss = m.filled<float>((size_t)rows, kPoison), *cor = m.filled<float>((size_t)rows, kPoison);
        m.ops()->mse_onehot(m.be(), rows, C, m.put(p), m.put(labels), scale, g, loss, cor);
        return LossOut{m.get(g, p.size()), m.get(loss, (size_t)rows), m.get(cor, (size_t)rows)};
    });
    EXPECT_TRUE(agree<float>("row_loss", rc.loss, rg.loss, [&](size_t i) { return kXentRel * std::fabs(rc.loss[i]); }));
    EXPECT_TRUE(agree_exact("row_correct", rc.correct, rg.correct));
    EXPECT_TRUE(agree<float>("dpred", rc.grad, rg.grad,
                             [&](size_t i) { return kXentRel * std::fabs(rc.grad[i]) + kLossGradAbs * scale; }));
    EXPECT_EQ(kind_of(rg.loss[3]), Kind::PosInf);
}

// ---- optimizer -----------------------------------------------------------------
enum class Opt { Sgd, SgdMomentum, SgdNesterov, Adam, AdamW, Rmsprop, RmspropMomentum };
const Opt kOpts[] = {Opt::Sgd,   Opt::SgdMomentum, Opt::SgdNesterov,    Opt::Adam,
                     Opt::AdamW, Opt::Rmsprop,     Opt::RmspropMomentum};

const char *opt_name(Opt o) {
    switch (o) {
    case Opt::Sgd: return "sgd";
    case Opt::SgdMomentum: return "sgd_momentum";
    case Opt::SgdNesterov: return "sgd_nesterov";
    case Opt::Adam: return "adam";
    case Opt::AdamW: return "adamw";
    case Opt::Rmsprop: return "rmsprop";
    case Opt::RmspropMomentum: return "rmsprop_momentum";
    }
    return "?";
}

ct_optim_config make_config(Opt o) {
    ct_optim_config cfg;
    switch (o) {
    case Opt::Sgd: cfg = ct_optim_defaults(CT_OPT_SGD); break;
    case Opt::SgdMomentum: cfg = ct_optim_defaults(CT_OPT_SGD); cfg.momentum = 0.9f; break;
    case Opt::SgdNesterov:
        cfg = ct_optim_defaults(CT_OPT_SGD);
        cfg.momentum = 0.9f;
        cfg.nesterov = 1;
        break;
    case Opt::Adam: cfg = ct_optim_defaults(CT_OPT_ADAM); break;
    case Opt::AdamW: cfg = ct_optim_defaults(CT_OPT_ADAMW); break;
    case Opt::Rmsprop: cfg = ct_optim_defaults(CT_OPT_RMSPROP); break;
    case Opt::RmspropMomentum: cfg = ct_optim_defaults(CT_OPT_RMSPROP); cfg.momentum = 0.9f; break;
    }
    return cfg;
}

// Inputs of one optimizer step: weights, gradients, state (second moments
// positive), the update count and the record step_stats would have written.
struct OptInputs {
    ct_optim_config cfg;
    std::vector<float> w, g, state;
    uint64_t t;
    std::vector<ct_step_record> ring;
    ct_step_ctx ctx;
    ct_health_thresholds th;
};

OptInputs opt_inputs(std::mt19937 &rng, Opt o, size_t n, uint32_t flags, uint32_t rows) {
    OptInputs in;
    in.cfg = make_config(o);
    in.w = uniform(rng, n, -1, 1);
    in.g = uniform(rng, n, -0.1f, 0.1f);
    const int slots = ct_optim_state_slots(&in.cfg);
    in.state.resize((size_t)slots * n);
    for (int s = 0; s < slots; ++s) {
        // Adam: m, v; RMSprop: mean square, momentum; SGD: velocity.
        bool positive = (in.cfg.kind == CT_OPT_ADAM || in.cfg.kind == CT_OPT_ADAMW) ? s == 1 : (in.cfg.kind == CT_OPT_RMSPROP && s == 0);
        std::vector<float> v = positive ? uniform(rng, n, 1e-6f, 1e-3f) : uniform(rng, n, -0.01f, 0.01f);
        std::copy(v.begin(), v.end(), in.state.begin() + (ptrdiff_t)((size_t)s * n));
    }
    in.t = 9;  // a resumed run: bias correction at t = 10
    in.ctx = {501, 2, 40, 2, 4};
    in.th = {1e-7, 1e4};
    in.ring = sentinel_ring(in.ctx.ring_len);
    ct_step_record &r = in.ring[in.ctx.slot];
    std::memset(&r, 0, sizeof r);
    r.step = in.ctx.step;
    r.epoch = in.ctx.epoch;
    r.batch_size = rows;
    r.flags = flags;
    r.n_layers = 1;
    r.loss_sum = 1.25 * rows;
    r.correct = rows / 2;
    r.clip_scale = 1.0;
    return in;
}

void finish_record(OptInputs &in) {
    double s = 0.0;
    for (float g : in.g)
        if (std::isfinite(g)) s += (double)g * g;
    in.ring[in.ctx.slot].grad_sumsq = s;
}

struct OptOut {
    std::vector<float> w, state;
    uint64_t t;
    std::vector<ct_step_record> ring;
};

OptOut run_optimizer(Mem &m, const OptInputs &in) {
    ct_optim_config cfg = in.cfg;
    ct_health_thresholds th = in.th;
    ct_optim_buffers buf;
    buf.params = m.put(in.w);
    buf.grads = m.put(in.g);
    buf.state = in.state.empty() ? nullptr : m.put(in.state);
    buf.t = m.one(in.t);
    buf.n = in.w.size();
    float *params = buf.params, *state = buf.state;
    uint64_t *t = buf.t;
    ct_step_record *ring = m.put(in.ring);
    m.ops()->optimizer_step(m.be(), &cfg, &buf, &th, m.one(in.ctx), ring);
    std::memset(&cfg, 0x5A, sizeof cfg);  // host structs: read at the call
    std::memset(&buf, 0x5A, sizeof buf);
    std::memset(&th, 0x5A, sizeof th);
    OptOut out;
    out.w = m.get(params, in.w.size());
    out.state = in.state.empty() ? std::vector<float>() : m.get(state, in.state.size());
    out.t = m.get1(t);
    out.ring = m.get(ring, in.ring.size());
    return out;
}

// The magnitudes T of the terms behind each new weight and state element
// (see the table): the allowed difference is 1 ulp + kOptimTermRel * T.
void optimizer_bounds(const OptInputs &in, double clip_scale, std::vector<double> &tw, std::vector<double> &ts) {
    const ct_optim_config &c = in.cfg;
    const size_t n = in.w.size();
    const float gs = (float)clip_scale;
    tw.assign(n, 0.0);
    ts.assign(in.state.size(), 0.0);
    const double t = (double)(in.t + 1);
    const double alpha = (double)c.lr * std::sqrt(1.0 - std::pow((double)c.beta2, t)) / (1.0 - std::pow((double)c.beta1, t));
    for (size_t i = 0; i < n; ++i) {
        const double g = std::fabs((double)(in.g[i] * gs)), w0 = std::fabs((double)in.w[i]);
        switch (c.kind) {
        case CT_OPT_SGD: {
            double v = c.momentum > 0 ? std::fabs((double)in.state[i]) : 0.0;
            double term = c.momentum * v + c.lr * g;
            tw[i] = 3.0 * term;
            if (c.momentum > 0) ts[i] = term;
            break;
        }
        case CT_OPT_ADAM:
        case CT_OPT_ADAMW: {
            double m0 = std::fabs((double)in.state[i]), v0 = in.state[n + i];
            double tm = c.beta1 * m0 + (1.0 - c.beta1) * g;
            double tv = c.beta2 * v0 + (1.0 - c.beta2) * g * g;
            ts[i] = tm;
            ts[n + i] = tv;
            double decay = c.kind == CT_OPT_ADAMW ? (double)c.lr * c.weight_decay * w0 : 0.0;
            tw[i] = alpha * tm / (std::sqrt(tv) + c.eps) + decay;
            break;
        }
        case CT_OPT_RMSPROP: {
            double ms = c.rho * (double)in.state[i] + (1.0 - c.rho) * g * g;
            double inc = c.lr * g / std::sqrt(ms + c.eps);
            ts[i] = ms;
            double term = inc;
            if (c.momentum > 0) {
                term = c.momentum * std::fabs((double)in.state[n + i]) + inc;
                ts[n + i] = term;
            }
            tw[i] = term;
            break;
        }
        }
    }
}

// References accumulate in long double (64-bit significand on x86-64): for
// the sizes here their own error is below 1e-13 relative, so what a check
// measures is the backend's summation error alone.
double sumsq_diff(const std::vector<float> &a, const std::vector<float> &b) {
    long double s = 0.0L;
    for (size_t i = 0; i < a.size(); ++i) {
        double d = (double)a[i] - (double)b[i];
        s += (long double)d * d;
    }
    return (double)s;
}

double sumsq(const std::vector<float> &a) {
    long double s = 0.0L;
    for (float x : a) s += (long double)x * x;
    return (double)s;
}

struct OptCase {
    Opt opt;
    int clip;  // 0 off, 1 clip below the norm (clips), 2 clip above the norm (does not)
};

std::vector<OptCase> opt_cases() {
    std::vector<OptCase> v;
    for (Opt o : kOpts)
        for (int clip = 0; clip < 3; ++clip) v.push_back({o, clip});
    return v;
}

std::string opt_case_name(const ::testing::TestParamInfo<OptCase> &info) {
    static const char *clip[] = {"noclip", "clipping", "clip_above_norm"};
    return std::string(opt_name(info.param.opt)) + "_" + clip[info.param.clip];
}

void PrintTo(const OptCase &c, std::ostream *os) { *os << opt_name(c.opt) << " clip mode " << c.clip; }

using OptimizerParity = ParityP<OptCase>;

TEST_P(OptimizerParity, OneStepAtEverySize) {
    const OptCase oc = GetParam();
    std::mt19937 rng(seed_of(test_name()));
    for (size_t n : {(size_t)1, (size_t)33, (size_t)1000, (size_t)669706}) {
        SCOPED_TRACE("n = " + std::to_string(n));
        OptInputs in = opt_inputs(rng, oc.opt, n, 0, 128);
        finish_record(in);
        const double norm = std::sqrt(in.ring[in.ctx.slot].grad_sumsq);
        in.cfg.clip_norm = oc.clip == 0 ? 0.0f : (float)(oc.clip == 1 ? 0.5 * norm : 2.0 * norm);
        auto [rc, rg] = both([&](Mem &m) { return run_optimizer(m, in); });
        const ct_step_record &c = rc.ring[in.ctx.slot], &g = rg.ring[in.ctx.slot];

        EXPECT_EQ(rg.t, in.t + 1);
        EXPECT_EQ(rc.t, rg.t);
        EXPECT_EQ(c.flags, g.flags) << "cpu " << flag_names(c.flags) << " gpu " << flag_names(g.flags);
        EXPECT_EQ(c.clip_scale, g.clip_scale);
        EXPECT_EQ((g.flags & CT_FLAG_CLIPPED) != 0, oc.clip == 1);
        if (oc.clip == 1) {
            EXPECT_LT(g.clip_scale, 1.0);
        }
        EXPECT_TRUE(sum_close_rel("param_sumsq", c.param_sumsq, g.param_sumsq, c.param_sumsq, sequential_sum_rel(n)));
        EXPECT_TRUE(sum_close("GPU update_sumsq vs its own weights", sumsq_diff(rg.w, in.w), g.update_sumsq,
                              sumsq_diff(rg.w, in.w)));
        EXPECT_TRUE(sum_close_rel("CPU update_sumsq vs its own weights", sumsq_diff(rc.w, in.w), c.update_sumsq,
                                  sumsq_diff(rc.w, in.w), sequential_sum_rel(n)));
        // Everything step_stats wrote is left as it was.
        ct_step_record expect = in.ring[in.ctx.slot];
        EXPECT_EQ(g.step, expect.step);
        EXPECT_EQ(g.loss_sum, expect.loss_sum);
        EXPECT_EQ(g.grad_sumsq, expect.grad_sumsq);
        EXPECT_EQ(g.batch_size, expect.batch_size);
        for (uint32_t s = 0; s < in.ctx.ring_len; ++s)
            if (s != in.ctx.slot) {
                EXPECT_TRUE(same_bytes(&rg.ring[s], &in.ring[s], sizeof(ct_step_record))) << "slot " << s;
            }

        std::vector<double> tw, ts;
        optimizer_bounds(in, c.clip_scale, tw, ts);
        EXPECT_TRUE(agree<float>("w", rc.w, rg.w, [&](size_t i) { return ulp_of(rc.w[i]) + kOptimTermRel * tw[i]; }));
        EXPECT_TRUE(agree<float>("state", rc.state, rg.state,
                                 [&](size_t i) { return ulp_of(rc.state[i]) + kOptimTermRel * ts[i]; }));
        // The step moved the weights (a no-op kernel would pass nothing above... but say it plainly).
        EXPECT_GT(g.update_sumsq, 0.0);
    }
}

INSTANTIATE_TEST_SUITE_P(Kinds, OptimizerParity, ::testing::ValuesIn(opt_cases()), opt_case_name);

// The edge-of-float optimizer cases (the CPU's in tests/unit/test_stability.cpp).
// Tiny and denormal gradients (no flushing to zero on the GPU: -ftz=false),
// huge ones within float, huge ones past it (v saturates to +inf and the
// weight does not move, as on the CPU) and the same clipped into range.
TEST_F(Parity, AdamTinyDenormalAndHugeGradients) {
    const std::pair<const char *, std::vector<float>> sets[] = {
        {"tiny", ct_test::tiny_gradients()},
        {"huge within float", ct_test::huge_gradients_within_float()},
        {"huge past float", ct_test::huge_gradients_past_float()},
    };
    for (const auto &set : sets)
        for (int clip = 0; clip < 2; ++clip) {
            SCOPED_TRACE(std::string(set.first) + (clip ? ", clipped to norm 1" : ""));
            const size_t n = set.second.size();
            OptInputs in;
            in.cfg = make_config(Opt::Adam);
            in.cfg.clip_norm = clip ? 1.0f : 0.0f;
            in.g = set.second;
            in.w.assign(n, 0.0f);
            for (size_t i = 0; i < n; i += 2) in.w[i] = 0.5f;  // zeros show the tiny steps
            in.state.assign(2 * n, 0.0f);
            in.t = 0;
            in.ctx = {1, 1, 0, 0, 1};
            in.th = {0.0, 0.0};
            in.ring = sentinel_ring(1);
            ct_step_record &r = in.ring[0];
            std::memset(&r, 0, sizeof r);
            r.step = 1;
            r.epoch = 1;
            r.batch_size = 32;
            r.n_layers = 1;
            r.clip_scale = 1.0;
            finish_record(in);
            auto [rc, rg] = both([&](Mem &m) { return run_optimizer(m, in); });
            const ct_step_record &c = rc.ring[0], &g = rg.ring[0];
            EXPECT_EQ(c.flags, g.flags) << "cpu " << flag_names(c.flags) << " gpu " << flag_names(g.flags);
            EXPECT_EQ(c.clip_scale, g.clip_scale);
            std::vector<double> tw, ts;
            optimizer_bounds(in, c.clip_scale, tw, ts);
            EXPECT_TRUE(
                agree<float>("w", rc.w, rg.w, [&](size_t i) { return ulp_of(rc.w[i]) + kOptimTermRel * tw[i]; }));
            EXPECT_TRUE(agree<float>("state", rc.state, rg.state,
                                     [&](size_t i) { return ulp_of(rc.state[i]) + kOptimTermRel * ts[i]; }));
            for (float x : rg.w) EXPECT_TRUE(std::isfinite(x));
        }
}

struct SkipCase {
    Opt opt;
    uint32_t flags;
    int skip_nonfinite;
    bool skipped;  // expected
};

std::vector<SkipCase> skip_cases() {
    std::vector<SkipCase> v;
    for (Opt o : kOpts) {
        v.push_back({o, CT_FLAG_NONFINITE_GRAD, 1, true});
        v.push_back({o, CT_FLAG_NONFINITE_LOSS, 1, true});
        v.push_back({o, CT_FLAG_EMPTY_BATCH, 0, true});
        v.push_back({o, CT_FLAG_NONFINITE_GRAD, 0, false});
    }
    return v;
}

std::string skip_name(const ::testing::TestParamInfo<SkipCase> &info) {
    const SkipCase &c = info.param;
    std::string f = c.flags == CT_FLAG_NONFINITE_GRAD ? "nonfinite_grad" : c.flags == CT_FLAG_NONFINITE_LOSS ? "nonfinite_loss" : "empty_batch";
    return std::string(opt_name(c.opt)) + "_" + f + (c.skip_nonfinite ? "_skip_on" : "_skip_off");
}

void PrintTo(const SkipCase &c, std::ostream *os) {
    *os << opt_name(c.opt) << " flags " << flag_names(c.flags) << " skip_nonfinite " << c.skip_nonfinite;
}

using OptimizerSkipParity = ParityP<SkipCase>;

TEST_P(OptimizerSkipParity, SkippedStepsLeaveEverythingBitIdentical) {
    const SkipCase sc = GetParam();
    std::mt19937 rng(seed_of(test_name()));
    const size_t n = 7960;  // the seed model's arena
    OptInputs in = opt_inputs(rng, sc.opt, n, sc.flags, sc.flags & CT_FLAG_EMPTY_BATCH ? 0 : 32);
    if (sc.flags & CT_FLAG_NONFINITE_GRAD) {
        in.g[17] = kNaN;
        in.g[n - 3] = kInf;
    }
    finish_record(in);
    in.cfg.skip_nonfinite = sc.skip_nonfinite;
    in.cfg.clip_norm = 1.0f;
    auto [rc, rg] = both([&](Mem &m) { return run_optimizer(m, in); });
    const ct_step_record &c = rc.ring[in.ctx.slot], &g = rg.ring[in.ctx.slot];
    EXPECT_EQ(c.flags, g.flags) << "cpu " << flag_names(c.flags) << " gpu " << flag_names(g.flags);
    EXPECT_EQ((g.flags & CT_FLAG_SKIPPED_UPDATE) != 0, sc.skipped) << flag_names(g.flags);
    EXPECT_TRUE(sum_close("param_sumsq", c.param_sumsq, g.param_sumsq, c.param_sumsq));
    if (sc.skipped) {
        // Skip on the device: w, state and t exactly as they were.
        EXPECT_TRUE(same_bytes(rg.w.data(), in.w.data(), n * sizeof(float))) << "GPU moved w on a skipped step";
        EXPECT_TRUE(same_bytes(rg.state.data(), in.state.data(), in.state.size() * sizeof(float)))
            << "GPU moved the optimizer state on a skipped step";
        EXPECT_EQ(rg.t, in.t) << "GPU counted a skipped step";
        EXPECT_EQ(g.update_sumsq, 0.0);
        EXPECT_EQ(g.clip_scale, 1.0);
        EXPECT_GT(g.param_sumsq, 0.0) << "||w|| is still reported on a skipped step";
    } else {
        // Applied anyway (--on-nan warn): the planted elements go non-finite on both.
        EXPECT_EQ(rg.t, in.t + 1);
        std::vector<double> tw, ts;
        optimizer_bounds(in, c.clip_scale, tw, ts);
        EXPECT_TRUE(agree<float>("w", rc.w, rg.w, [&](size_t i) { return ulp_of(rc.w[i]) + kOptimTermRel * tw[i]; }));
        EXPECT_TRUE(agree<float>("state", rc.state, rg.state,
                                 [&](size_t i) { return ulp_of(rc.state[i]) + kOptimTermRel * ts[i]; }));
        EXPECT_FALSE(std::isfinite(rg.w[17]));
        EXPECT_TRUE(std::isfinite(rg.w[18]));
    }
}

INSTANTIATE_TEST_SUITE_P(Kinds, OptimizerSkipParity, ::testing::ValuesIn(skip_cases()), skip_name);

TEST_F(Parity, VanishingUpdateFlagAgrees) {
    std::mt19937 rng(seed_of(test_name()));
    for (float lr : {1e-12f, 1e-2f}) {
        OptInputs in = opt_inputs(rng, Opt::Sgd, 1000, 0, 32);
        finish_record(in);
        in.cfg.lr = lr;
        auto [rc, rg] = both([&](Mem &m) { return run_optimizer(m, in); });
        const ct_step_record &c = rc.ring[in.ctx.slot], &g = rg.ring[in.ctx.slot];
        EXPECT_EQ(c.flags, g.flags) << "lr " << lr;
        EXPECT_EQ((g.flags & CT_FLAG_VANISHING_UPDATE) != 0, lr < 1e-6f) << "lr " << lr << ": " << flag_names(g.flags);
    }
}

// ---- step_advance ----------------------------------------------------------------
TEST_F(Parity, StepAdvanceWrapsTheSlot) {
    const ct_step_ctx starts[] = {{41, 3, 7, 3, 5}, {1, 1, 0, 0, 1}, {0xFFFFFFFFull, 9, 0xFFFFFFF0u, 62, 64}};
    for (const ct_step_ctx &s : starts) {
        auto [rc, rg] = both([&](Mem &m) {
            ct_step_ctx *d = m.one(s);
            std::vector<ct_step_ctx> seen;
            for (int i = 0; i < 7; ++i) {
                m.ops()->step_advance(m.be(), d);
                seen.push_back(m.get1(d));
            }
            return seen;
        });
        for (size_t i = 0; i < rc.size(); ++i) {
            SCOPED_TRACE("start step " + std::to_string(s.step) + ", advance " + std::to_string(i + 1));
            EXPECT_EQ(rg[i].step, s.step + i + 1);
            EXPECT_EQ(rg[i].epoch, s.epoch);
            EXPECT_EQ(rg[i].batch, (uint32_t)(s.batch + i + 1));
            EXPECT_EQ(rg[i].slot, (uint32_t)((s.slot + i + 1) % s.ring_len));
            EXPECT_EQ(rg[i].ring_len, s.ring_len);
            EXPECT_TRUE(same_bytes(&rc[i], &rg[i], sizeof(ct_step_ctx)));
        }
    }
}

// ---- fences and asynchronous read-back -----------------------------------------
TEST_F(Parity, DownloadAsyncAndFencesKeepOrder) {
    std::mt19937 rng(seed_of(test_name()));
    const size_t n = 1000 * 512;
    std::vector<float> x = uniform(rng, n, -1, 1);
    const ct_step_ctx ctx = {12, 1, 0, 0, 1};
    // The CPU's answers: dropout of x with layer 1, then with layer 2.
    std::vector<float> want1, want2;
    {
        Mem m(cpu);
        float *dx = m.put(x), *y = m.filled<float>(n, kPoison);
        ct_step_ctx *dctx = m.one(ctx);
        cpu->ops->dropout_forward(cpu, n, 0.5f, 3, 1, dctx, dx, y);
        want1 = m.get(y, n);
        cpu->ops->dropout_forward(cpu, n, 0.5f, 3, 2, dctx, dx, y);
        want2 = m.get(y, n);
    }
    ct_error err;
    ct_error_clear(&err);
    float *h1 = (float *)gpu->ops->host_alloc(gpu, n * sizeof(float), &err);
    ASSERT_NE(h1, nullptr) << err.msg;
    float *h2 = (float *)gpu->ops->host_alloc(gpu, n * sizeof(float), &err);
    ASSERT_NE(h2, nullptr) << err.msg;
    const std::pair<int, int> ids[] = {{0, 1}, {2, 3}, {3, 0}, {1, 1}};
    for (auto [a, b] : ids) {
        SCOPED_TRACE("fences " + std::to_string(a) + ", " + std::to_string(b));
        std::fill(h1, h1 + n, kPoison);
        std::fill(h2, h2 + n, kPoison);
        Mem m(gpu);
        float *dx = m.put(x), *y = m.filled<float>(n, kPoison);
        ct_step_ctx *dctx = m.one(ctx);
        gpu->ops->dropout_forward(gpu, n, 0.5f, 3, 1, dctx, dx, y);
        gpu->ops->download_async(gpu, h1, y, n * sizeof(float));
        gpu->ops->fence(gpu, a);
        // Work queued after the copy overwrites y; the first copy must not see it.
        gpu->ops->dropout_forward(gpu, n, 0.5f, 3, 2, dctx, dx, y);
        gpu->ops->download_async(gpu, h2, y, n * sizeof(float));
        gpu->ops->fence(gpu, b);
        if (a == b) {
            gpu->ops->fence_wait(gpu, b);  // the later mark covers both copies
        } else {
            gpu->ops->fence_wait(gpu, b);
            gpu->ops->fence_wait(gpu, a);
        }
        EXPECT_TRUE(agree_bits("first copy", want1, std::vector<float>(h1, h1 + n)));
        EXPECT_TRUE(agree_bits("second copy", want2, std::vector<float>(h2, h2 + n)));
    }
    // A long queue before the copy: fence_wait must really wait for it.
    {
        Mem m(gpu);
        const int M = 1000, N = 512, K = 784;
        float *A = m.put(uniform(rng, (size_t)M * K, -1, 1)), *B = m.put(uniform(rng, (size_t)N * K, -1, 1));
        float *C = m.filled<float>((size_t)M * N, 0.0f);
        for (int rep = 0; rep < 20; ++rep) gpu->ops->gemm(gpu, 0, 1, M, N, K, 0.01f, A, K, B, K, 1.0f, C, N);
        std::fill(h1, h1 + (size_t)M * N, kPoison);
        gpu->ops->download_async(gpu, h1, C, (size_t)M * N * sizeof(float));
        gpu->ops->fence(gpu, 2);
        gpu->ops->fence_wait(gpu, 2);
        std::vector<float> async(h1, h1 + (size_t)M * N);
        EXPECT_TRUE(agree_bits("async vs sync read of the same buffer", m.get(C, (size_t)M * N), async));
    }
    // A fence with nothing before it is already passed.
    gpu->ops->fence(gpu, 3);
    gpu->ops->fence_wait(gpu, 3);
    gpu->ops->host_free(gpu, h1);
    gpu->ops->host_free(gpu, h2);
}

// ---- capture and replay ------------------------------------------------------------
class CaptureParity : public Parity {
  protected:
    void SetUp() override {
        Parity::SetUp();
        if (IsSkipped() || HasFatalFailure()) return;
        if (!gpu->ops->capture_begin)
            GTEST_SKIP() << "this CUDA backend has no capture_begin (optional in backend.h)";
    }
    void *capture(const std::function<void()> &ops) {
        ct_error err;
        ct_error_clear(&err);
        if (gpu->ops->capture_begin(gpu, &err) != 0) {
            ADD_FAILURE() << "capture_begin: " << err.msg;
            return nullptr;
        }
        ops();
        void *graph = gpu->ops->capture_end(gpu, &err);
        if (!graph) ADD_FAILURE() << "capture_end: " << err.msg;
        return graph;
    }
};

// gather (ctx->batch) -> dropout (ctx->step) -> step_advance, captured once and
// replayed with the context moving on, against the CPU running the same ops.
TEST_F(CaptureParity, GatherDropoutAdvanceReplaysStepAfterStep) {
    std::mt19937 rng(seed_of(test_name()));
    const size_t count = 300, elems = 33;
    const int rows = 31;
    std::vector<uint8_t> img(count * elems), lab(count);
    for (auto &b : img) b = (uint8_t)(rng() & 0xff);
    for (auto &l : lab) l = (uint8_t)(rng() % 10);
    auto permutation = [&](bool bad) {
        std::vector<int32_t> o(count);
        for (size_t i = 0; i < count; ++i) o[i] = (int32_t)i;
        std::shuffle(o.begin(), o.end(), rng);
        if (bad) o[2 * rows + 3] = (int32_t)count + 5;  // batch 2 holds an out-of-range index
        return o;
    };
    const std::vector<int32_t> order1 = permutation(true), order2 = permutation(false);
    const ct_step_ctx ctx1 = {100, 1, 0, 0, 4}, ctx2 = {103, 2, 0, 3, 4};

    struct Side {
        Mem m;
        ct_device_dataset ds;
        int32_t *order;
        ct_step_ctx *ctx;
        float *x, *y;
        int32_t *labels;
        explicit Side(ct_backend *b) : m(b) {}
    };
    auto make = [&](ct_backend *b) {
        auto s = std::make_unique<Side>(b);
        std::memset(&s->ds, 0, sizeof s->ds);
        s->ds.images = s->m.put(img);
        s->ds.labels = s->m.put(lab);
        s->ds.elem_type = CT_ELEM_U8;
        s->ds.count = count;
        s->ds.sample_elems = elems;
        s->ds.scale = 1.0f / 255.0f;
        s->order = s->m.put(order1);
        s->ctx = s->m.one(ctx1);
        s->x = s->m.filled<float>((size_t)rows * elems, kPoison);
        s->y = s->m.filled<float>((size_t)rows * elems, kPoison);
        s->labels = s->m.filled<int32_t>((size_t)rows, 12345);
        return s;
    };
    auto queue = [&](Side &s) {
        ct_backend *b = s.m.be();
        b->ops->gather_batch(b, &s.ds, s.order, (size_t)rows, s.ctx, rows, s.x, s.labels);
        b->ops->dropout_forward(b, (size_t)rows * elems, 0.25f, 4242, 2, s.ctx, s.x, s.y);
        b->ops->step_advance(b, s.ctx);
    };
    auto c = make(cpu), g = make(gpu);
    void *graph = capture([&] { queue(*g); });
    ASSERT_NE(graph, nullptr);
    // Captured, not run.
    EXPECT_TRUE(agree_bits("x before any launch", std::vector<float>((size_t)rows * elems, kPoison),
                           g->m.get(g->x, (size_t)rows * elems)));
    ct_step_ctx now = g->m.get1(g->ctx);
    EXPECT_TRUE(same_bytes(&now, &ctx1, sizeof now)) << "capture ran step_advance";

    for (int launch = 0; launch < 5; ++launch) {
        SCOPED_TRACE("launch " + std::to_string(launch));
        if (launch == 3) {  // a new epoch, as the training loop starts one: new order, new ctx
            for (Side *s : {c.get(), g.get()}) {
                s->m.ops()->upload(s->m.be(), s->order, order2.data(), count * sizeof(int32_t));
                s->m.ops()->upload(s->m.be(), s->ctx, &ctx2, sizeof ctx2);
            }
        }
        queue(*c);
        gpu->ops->graph_launch(gpu, graph);
        EXPECT_TRUE(agree_bits("x", c->m.get(c->x, (size_t)rows * elems), g->m.get(g->x, (size_t)rows * elems)));
        EXPECT_TRUE(same_values("labels", c->m.get(c->labels, rows), g->m.get(g->labels, rows)));
        EXPECT_TRUE(agree_bits("dropout", c->m.get(c->y, (size_t)rows * elems), g->m.get(g->y, (size_t)rows * elems)));
        ct_step_ctx cc = c->m.get1(c->ctx), gc = g->m.get1(g->ctx);
        EXPECT_TRUE(same_bytes(&cc, &gc, sizeof cc)) << "ctx after the launch: gpu step " << gc.step << " batch "
                                                     << gc.batch << " slot " << gc.slot;
    }
    gpu->ops->graph_destroy(gpu, graph);
}

// step_stats -> optimizer_step -> step_advance over a 3-slot ring: the graph's
// replays give the same bits as the same ops called directly on the GPU,
// including a step with a NaN gradient that the optimizer must skip.
TEST_F(CaptureParity, StatsOptimizerAdvanceMatchDirectCalls) {
    std::mt19937 rng(seed_of(test_name()));
    std::vector<size_t> begin = {0, kSeedLayers[0], kSeedLayers[0] + kSeedLayers[1]};
    const size_t n = begin.back();
    const uint32_t rows = 32, ring_len = 3;
    ct_optim_config cfg = ct_optim_defaults(CT_OPT_ADAM);
    cfg.clip_norm = 0.05f;
    cfg.skip_nonfinite = 1;
    const int slots = ct_optim_state_slots(&cfg);
    const std::vector<float> w0 = uniform(rng, n, -0.5f, 0.5f);
    std::vector<std::vector<float>> grads, losses;
    for (int s = 0; s < 6; ++s) {
        grads.push_back(uniform(rng, n, -0.01f, 0.01f));
        losses.push_back(uniform(rng, rows, 0.1f, 2.5f));
    }
    grads[3][100] = kNaN;  // step 4: skipped
    const ct_health_thresholds th = {1e-7, 1e4};
    const ct_step_ctx ctx0 = {1, 1, 0, 0, ring_len};
    std::vector<float> correct(rows, 1.0f);

    struct Side {
        Mem m;
        float *w, *g, *state, *loss, *cor;
        uint64_t *t;
        ct_step_record *ring;
        ct_step_ctx *ctx;
        explicit Side(ct_backend *b) : m(b) {}
    };
    auto make = [&] {
        auto s = std::make_unique<Side>(gpu);
        s->w = s->m.put(w0);
        s->g = s->m.filled<float>(n, 0.0f);
        s->state = s->m.filled<float>((size_t)slots * n, 0.0f);
        s->t = s->m.one<uint64_t>(0);
        s->loss = s->m.filled<float>(rows, 0.0f);
        s->cor = s->m.put(correct);
        s->ring = s->m.put(sentinel_ring(ring_len));
        s->ctx = s->m.one(ctx0);
        return s;
    };
    auto queue = [&](Side &s) {
        std::vector<size_t> host_begin = begin;
        ct_stats_args a;
        std::memset(&a, 0, sizeof a);
        a.grads = s.g;
        a.n = n;
        a.n_layers = 2;
        a.layer_begin = host_begin.data();
        a.row_loss = s.loss;
        a.row_correct = s.cor;
        a.rows = rows;
        a.th = th;
        ct_optim_config c = cfg;
        ct_health_thresholds t = th;
        ct_optim_buffers buf = {s.w, s.g, s.state, s.t, n};
        gpu->ops->step_stats(gpu, &a, s.ctx, s.ring);
        gpu->ops->optimizer_step(gpu, &c, &buf, &t, s.ctx, s.ring);
        gpu->ops->step_advance(gpu, s.ctx);
        std::fill(host_begin.begin(), host_begin.end(), (size_t)0x5A5A5A5A);  // gone after the call
        std::memset(&a, 0x5A, sizeof a);
        std::memset(&buf, 0x5A, sizeof buf);
    };
    auto direct = make(), replay = make();
    void *graph = capture([&] { queue(*replay); });
    ASSERT_NE(graph, nullptr);
    std::vector<float> w_before;
    for (int s = 0; s < 6; ++s) {
        SCOPED_TRACE("step " + std::to_string(s + 1));
        for (Side *side : {direct.get(), replay.get()}) {
            gpu->ops->upload(gpu, side->g, grads[s].data(), n * sizeof(float));
            gpu->ops->upload(gpu, side->loss, losses[s].data(), rows * sizeof(float));
        }
        queue(*direct);
        gpu->ops->graph_launch(gpu, graph);
        auto rd = direct->m.get(direct->ring, ring_len), rr = replay->m.get(replay->ring, ring_len);
        EXPECT_TRUE(same_bytes(rd.data(), rr.data(), ring_len * sizeof(ct_step_record))) << "ring";
        auto wd = direct->m.get(direct->w, n), wr = replay->m.get(replay->w, n);
        EXPECT_TRUE(agree_bits("w", wd, wr));
        EXPECT_TRUE(agree_bits("state", direct->m.get(direct->state, (size_t)slots * n),
                               replay->m.get(replay->state, (size_t)slots * n)));
        EXPECT_EQ(direct->m.get1(direct->t), replay->m.get1(replay->t));
        ct_step_ctx cd = direct->m.get1(direct->ctx), cr = replay->m.get1(replay->ctx);
        EXPECT_TRUE(same_bytes(&cd, &cr, sizeof cd));
        const ct_step_record &rec = rr[(size_t)s % ring_len];
        EXPECT_EQ(rec.step, (uint64_t)s + 1) << "the record went to the wrong slot";
        if (s == 3) {
            EXPECT_TRUE(rec.flags & CT_FLAG_SKIPPED_UPDATE) << flag_names(rec.flags);
            EXPECT_TRUE(agree_bits("w across the skipped step", w_before, wr));
            EXPECT_EQ(replay->m.get1(replay->t), 3u);
        } else {
            EXPECT_FALSE(rec.flags & CT_FLAG_SKIPPED_UPDATE) << flag_names(rec.flags);
            EXPECT_TRUE(rec.flags & CT_FLAG_CLIPPED) << flag_names(rec.flags);
        }
        w_before = wr;
    }
    gpu->ops->graph_destroy(gpu, graph);
}

}  // namespace
