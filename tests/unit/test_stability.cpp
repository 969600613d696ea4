// Numerical stability at the edges of float, on the CPU backend through its
// table (ct_backend_cpu_create, ops->alloc/upload/download), against
// references in long double (64-bit significand on x86-64):
//   - softmax cross-entropy for logits of +-1e4 and +-1e30, all-equal logits,
//     large logits a few units apart, and each row again as a batch of one:
//     loss and gradient finite and correctly rounded. The kernel works in
//     double and rounds once to float, so the bound is half an ulp of the
//     float result plus the double's own error (1e-14 of the terms), which
//     only matters when the exact value lies next to a float rounding point.
//   - Adam (include/cutrain/optim.h) with tiny gradients (1e-30, whose square
//     underflows, and denormals down to 2^-149) and huge ones (1e18..1e19,
//     whose square still fits a float; 1e30 and 3e38, whose square does not),
//     and with clipping. Per-element arithmetic is float, as in Keras: each
//     result is within 1 ulp plus 16 u of the magnitude of the terms that
//     formed it (the parity table's bound), and where an operand is
//     denormal, within a few denormal spacings (2^-149) divided by eps.
//   - MSE against one-hot targets with predictions up to 3e18 (errors whose
//     squares need double), and past the float range of the loss.
#include <gtest/gtest.h>

#include <cfloat>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "cutrain/cutrain.h"
#include "support/extreme.h"

namespace {

using namespace ct_test;
using LD = long double;
const double kU = 1.0 / 16777216.0;        // 2^-24
const double kDenorm = std::ldexp(1.0, -149);  // float's smallest step
const float kInf = std::numeric_limits<float>::infinity();

double ulp_of(double x) {
    const float a = std::fabs((float)x);
    if (std::isinf(a)) return 0.0;
    return (double)std::nextafter(a, kInf) - (double)a;
}

// The CPU backend, one thread, with memory from its own table.
class Cpu {
  public:
    Cpu() {
        ct_error err;
        ct_error_clear(&err);
        b_ = ct_backend_cpu_create(1, &err);
        if (!b_) ADD_FAILURE() << err.msg;
    }
    ~Cpu() {
        for (void *p : ptrs_) b_->ops->free(b_, p);
        if (b_) ct_backend_destroy(b_);
    }
    Cpu(const Cpu &) = delete;
    Cpu &operator=(const Cpu &) = delete;
    ct_backend *be() const { return b_; }
    const ct_backend_ops *ops() const { return b_->ops; }
    template <class T>
    T *put(const std::vector<T> &h) {
        ct_error err;
        ct_error_clear(&err);
        T *p = static_cast<T *>(b_->ops->alloc(b_, h.size() * sizeof(T) + 1, &err));
        EXPECT_NE(p, nullptr) << err.msg;
        ptrs_.push_back(p);
        if (!h.empty()) b_->ops->upload(b_, p, h.data(), h.size() * sizeof(T));
        return p;
    }
    template <class T>
    std::vector<T> get(const T *p, size_t n) {
        std::vector<T> h(n);
        b_->ops->download(b_, h.data(), p, n * sizeof(T));
        return h;
    }

  private:
    ct_backend *b_ = nullptr;
    std::vector<void *> ptrs_;
};

// ---- softmax cross-entropy ---------------------------------------------------

struct Loss {
    std::vector<float> loss, correct, grad;
};

Loss run_xent(Cpu &cpu, int rows, int classes, const std::vector<float> &z, const std::vector<int32_t> &labels,
              float scale) {
    float *g = cpu.put(std::vector<float>(z.size(), -7.0f));
    float *loss = cpu.put(std::vector<float>((size_t)rows, -7.0f));
    float *cor = cpu.put(std::vector<float>((size_t)rows, -7.0f));
    cpu.ops()->softmax_xent(cpu.be(), rows, classes, cpu.put(z), cpu.put(labels), scale, g, loss, cor);
    return {cpu.get(loss, (size_t)rows), cpu.get(cor, (size_t)rows), cpu.get(g, z.size())};
}

// One row: the loss, its argmax and dL/dz, all in long double.
struct XentRow {
    LD loss, terms;  // terms: |log s| + |m - z_y|, the magnitudes the double added
    int argmax;
    std::vector<LD> grad;
};

XentRow xent_ref(const float *z, int classes, int label, LD scale) {
    XentRow r{0, 0, 0, std::vector<LD>((size_t)classes)};
    for (int c = 1; c < classes; ++c)
        if (z[c] > z[r.argmax]) r.argmax = c;
    const LD m = z[r.argmax];
    LD s = 0;
    for (int c = 0; c < classes; ++c) s += expl((LD)z[c] - m);
    r.loss = logl(s) + (m - (LD)z[label]);
    r.terms = fabsl(logl(s)) + fabsl(m - (LD)z[label]);
    for (int c = 0; c < classes; ++c) r.grad[(size_t)c] = scale * (expl((LD)z[c] - m) / s - (c == label ? 1 : 0));
    return r;
}

::testing::AssertionResult xent_close(const Loss &got, size_t r, int classes, const XentRow &ref, LD scale,
                                      int label) {
    std::string bad;
    const double loss = (double)ref.loss;
    if (!std::isfinite(got.loss[r]) || std::fabs(got.loss[r] - loss) > 0.5 * ulp_of(loss) + 1e-14 * (double)ref.terms)
        bad += " loss " + std::to_string(got.loss[r]) + " want " + std::to_string(loss) + ";";
    if (got.correct[r] != (ref.argmax == label ? 1.0f : 0.0f)) bad += " correct;";
    for (int c = 0; c < classes; ++c) {
        const float g = got.grad[r * (size_t)classes + (size_t)c];
        const double want = (double)ref.grad[(size_t)c];
        if (!std::isfinite(g) || std::fabs(g - want) > 0.5 * ulp_of(want) + 1e-15 * (double)fabsl(scale))
            bad += " grad[" + std::to_string(c) + "] " + std::to_string(g) + " want " + std::to_string(want) + ";";
    }
    if (bad.empty()) return ::testing::AssertionSuccess();
    return ::testing::AssertionFailure() << "row " << r << ":" << bad;
}

TEST(Stability, SoftmaxXentExtremeLogitsAreFiniteAndCorrectlyRounded) {
    std::vector<float> z;
    std::vector<int32_t> labels;
    extreme_logit_rows(z, labels);
    const int C = kExtremeClasses, rows = (int)labels.size();
    Cpu cpu;
    const float scale = 1.0f / (float)rows;  // the trainer's 1/N
    Loss batch = run_xent(cpu, rows, C, z, labels, scale);
    for (int r = 0; r < rows; ++r) {
        const XentRow ref = xent_ref(&z[(size_t)r * C], C, labels[(size_t)r], scale);
        EXPECT_TRUE(xent_close(batch, (size_t)r, C, ref, scale, labels[(size_t)r]));
    }
    // The fixed points, stated outright.
    EXPECT_EQ(batch.loss[0], 0.0f);
    EXPECT_EQ(batch.loss[1], 2e4f);
    EXPECT_EQ(batch.loss[5], (float)std::log(10.0));
    EXPECT_EQ(batch.loss[6], (float)std::log(10.0));
    EXPECT_EQ(batch.correct[6], 1.0f);
    EXPECT_EQ(batch.loss[8], 2e30f);
    EXPECT_EQ(batch.correct[10], 0.0f) << "the tie goes to index 2, not the label 7";

    // A batch of one: the same numbers for each row on its own (scale 1).
    for (int r = 0; r < rows; ++r) {
        SCOPED_TRACE("batch of one, row " + std::to_string(r));
        const std::vector<float> zr(z.begin() + (ptrdiff_t)r * C, z.begin() + (ptrdiff_t)(r + 1) * C);
        Loss one = run_xent(cpu, 1, C, zr, {labels[(size_t)r]}, 1.0f);
        EXPECT_TRUE(xent_close(one, 0, C, xent_ref(zr.data(), C, labels[(size_t)r], 1.0L), 1.0L, labels[(size_t)r]));
        EXPECT_EQ(std::memcmp(&one.loss[0], &batch.loss[(size_t)r], sizeof(float)), 0) << "rows are independent";
    }
}

TEST(Stability, SoftmaxXentEqualLogitsForEveryClassCount) {
    Cpu cpu;
    for (int classes : {1, 2, 3, 10, 33, 1000})
        for (float v : {-1e30f, -1e4f, 0.0f, 1e4f, 1e30f}) {
            SCOPED_TRACE("classes " + std::to_string(classes) + " value " + std::to_string(v));
            std::vector<float> z((size_t)classes, v);
            const int label = classes - 1;
            Loss one = run_xent(cpu, 1, classes, z, {label}, 1.0f);
            EXPECT_EQ(one.loss[0], (float)std::log((double)classes));
            EXPECT_TRUE(xent_close(one, 0, classes, xent_ref(z.data(), classes, label, 1.0L), 1.0L, label));
        }
}

// ---- Adam --------------------------------------------------------------------

struct AdamRun {
    std::vector<float> w, m, v;
    ct_step_record rec;
};

// One optimizer step through the table, with the record step_stats would
// have left (grad_sumsq over the gradients, in double).
AdamRun adam_step(Cpu &cpu, const ct_optim_config &cfg, const std::vector<float> &w, const std::vector<float> &g,
                  const std::vector<float> &state, uint64_t t) {
    const size_t n = w.size();
    ct_step_record rec;
    std::memset(&rec, 0, sizeof rec);
    rec.step = t + 1;
    rec.epoch = 1;
    rec.batch_size = 32;
    rec.n_layers = 1;
    rec.clip_scale = 1.0;
    for (float x : g) rec.grad_sumsq += (double)x * (double)x;
    ct_optim_buffers buf;
    buf.params = cpu.put(w);
    buf.grads = cpu.put(g);
    buf.state = cpu.put(state);
    buf.t = cpu.put(std::vector<uint64_t>{t});
    buf.n = n;
    const ct_step_ctx ctx = {t + 1, 1, 0, 0, 1};
    const ct_health_thresholds th = {0.0, 0.0};
    ct_step_record *ring = cpu.put(std::vector<ct_step_record>{rec});
    float *params = buf.params, *st = buf.state;
    cpu.ops()->optimizer_step(cpu.be(), &cfg, &buf, &th, cpu.put(std::vector<ct_step_ctx>{ctx}), ring);
    AdamRun out;
    out.w = cpu.get(params, n);
    std::vector<float> s = cpu.get(st, 2 * n);
    out.m.assign(s.begin(), s.begin() + (ptrdiff_t)n);
    out.v.assign(s.begin() + (ptrdiff_t)n, s.end());
    out.rec = cpu.get(ring, 1)[0];
    return out;
}

// optim.h's Adam in long double, from the config's own (float) coefficients:
// m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
// w -= lr sqrt(1-b2^t)/(1-b1^t) m/(sqrt(v)+eps). T is the update's size.
struct AdamRef {
    std::vector<LD> w, m, v, t_w;
};

AdamRef adam_ref(const ct_optim_config &c, const std::vector<LD> &w, const std::vector<LD> &m,
                 const std::vector<LD> &v, const std::vector<LD> &g, uint64_t t) {
    const LD b1 = c.beta1, b2 = c.beta2, eps = c.eps;
    const LD alpha = (LD)c.lr * sqrtl(1 - powl(b2, (LD)t)) / (1 - powl(b1, (LD)t));
    AdamRef r{w, m, v, std::vector<LD>(w.size())};
    for (size_t i = 0; i < w.size(); ++i) {
        r.m[i] = b1 * m[i] + (1 - b1) * g[i];
        r.v[i] = b2 * v[i] + (1 - b2) * g[i] * g[i];
        const LD step = alpha * r.m[i] / (sqrtl(r.v[i]) + eps);
        r.w[i] = w[i] - step;
        r.t_w[i] = fabsl(step);
    }
    return r;
}

// 1 ulp + 16 u of the term's magnitude; a few denormal steps amplified by the
// smallest divisor (eps) when the operands were denormal.
::testing::AssertionResult near_ref(const char *what, size_t i, float got, LD want, LD term, double eps) {
    const double allowed = ulp_of((double)want) + 16 * kU * (double)term + 4 * kDenorm / eps;
    if (std::isfinite(got) && std::fabs((double)got - (double)want) <= allowed) return ::testing::AssertionSuccess();
    return ::testing::AssertionFailure() << what << "[" << i << "] = " << got << ", formula " << (double)want
                                         << " (allowed " << allowed << ")";
}

TEST(Stability, AdamTinyAndDenormalGradientsMatchTheFormula) {
    Cpu cpu;
    const ct_optim_config cfg = ct_optim_defaults(CT_OPT_ADAM);
    // 1e-30: its square (1e-60) underflows to 0 in float, so v stays 0 and
    // eps alone divides. 1e-38 is just above float's smallest normal; 1e-40
    // and 2^-149 are denormal. Weights at 0 show the tiny updates.
    const std::vector<float> g = tiny_gradients();
    std::vector<float> w = {0.5f, -0.25f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f}, state(2 * g.size(), 0.0f);
    std::vector<LD> rw(w.begin(), w.end()), rm(g.size(), 0), rv(g.size(), 0), rg(g.begin(), g.end());
    for (uint64_t t = 0; t < 3; ++t) {
        SCOPED_TRACE("t = " + std::to_string(t + 1));
        AdamRun a = adam_step(cpu, cfg, w, g, state, t);
        AdamRef ref = adam_ref(cfg, rw, rm, rv, rg, t + 1);
        for (size_t i = 0; i < g.size(); ++i) {
            EXPECT_TRUE(near_ref("w", i, a.w[i], ref.w[i], ref.t_w[i], cfg.eps));
            EXPECT_TRUE(near_ref("m", i, a.m[i], ref.m[i], fabsl(ref.m[i]), 1.0));
            EXPECT_TRUE(near_ref("v", i, a.v[i], ref.v[i], ref.v[i], 1.0));
        }
        EXPECT_TRUE(std::isfinite(a.rec.update_sumsq));
        // The next step's reference starts from this step's float state, so
        // each step is held to its own bound (errors do not pile up).
        w = a.w;
        state = a.m;
        state.insert(state.end(), a.v.begin(), a.v.end());
        rw.assign(a.w.begin(), a.w.end());
        rm.assign(a.m.begin(), a.m.end());
        rv.assign(a.v.begin(), a.v.end());
    }
    // The updates happened, against the sign of g: each step moves a 1e-30
    // gradient's weight by alpha*m/eps, about 3e-28 (eps, not sqrt(v), divides).
    EXPECT_LT(w[6], -5e-28f);
    EXPECT_LT(w[2], 0.0f);
    EXPECT_LT(w[3], 0.0f);
    // 0.1 x 2^-149 rounds to 0 in float: no step (the formula's is 4e-43,
    // inside the denormal bound above), and never one the wrong way.
    EXPECT_GE(w[4], 0.0f);
    EXPECT_EQ(w[5], 0.0f) << "a zero gradient moves nothing";
}

TEST(Stability, AdamHugeGradientsWithinFloatMatchTheFormula) {
    Cpu cpu;
    const ct_optim_config cfg = ct_optim_defaults(CT_OPT_ADAM);
    // |g| <= 1.8e19: g*g <= 3.4e38 still fits a float, and the step is
    // about lr against the sign of g, however large g is.
    const std::vector<float> g = huge_gradients_within_float();
    std::vector<float> w = {0.5f, -0.25f, 0.0f, 1.0f}, state(2 * g.size(), 0.0f);
    std::vector<LD> rw(w.begin(), w.end()), rm(g.size(), 0), rv(g.size(), 0), rg(g.begin(), g.end());
    for (uint64_t t = 0; t < 3; ++t) {
        SCOPED_TRACE("t = " + std::to_string(t + 1));
        AdamRun a = adam_step(cpu, cfg, w, g, state, t);
        AdamRef ref = adam_ref(cfg, rw, rm, rv, rg, t + 1);
        for (size_t i = 0; i < g.size(); ++i) {
            EXPECT_TRUE(near_ref("w", i, a.w[i], ref.w[i], ref.t_w[i], cfg.eps));
            EXPECT_TRUE(near_ref("m", i, a.m[i], ref.m[i], fabsl(ref.m[i]), 1.0));
            EXPECT_TRUE(near_ref("v", i, a.v[i], ref.v[i], ref.v[i], 1.0));
            EXPECT_NEAR((double)ref.t_w[i], 1e-3, 1e-6) << "the formula's step is lr";
        }
        // The next step's reference starts from this step's float state, so
        // each step is held to its own bound (errors do not pile up).
        w = a.w;
        state = a.m;
        state.insert(state.end(), a.v.begin(), a.v.end());
        rw.assign(a.w.begin(), a.w.end());
        rm.assign(a.m.begin(), a.m.end());
        rv.assign(a.v.begin(), a.v.end());
    }
}

// Past |g| ~ 1.8e19 the second moment (1-b2) g^2 no longer fits a float32:
// v becomes +inf, m stays finite, so m*alpha/(sqrt(v)+eps) is 0 and the
// weight does not move, then or on any later step (b2*inf is inf). Keras and
// PyTorch in float32 do the same. The weights stay finite and the step is
// flagged (EXPLODING_GRAD, from step_stats), but the element is frozen: the
// remedy is --clip-grad-norm, which scales g before it reaches the moments
// (next test). Recorded in docs/decisions.md.
TEST(Stability, AdamGradientsPastFloatRangeSaturateVAndFreezeTheWeight) {
    Cpu cpu;
    const ct_optim_config cfg = ct_optim_defaults(CT_OPT_ADAM);
    const std::vector<float> g = huge_gradients_past_float();
    const std::vector<float> w = {0.5f, -0.25f, 0.0f, 0.75f}, state(2 * g.size(), 0.0f);
    AdamRun a = adam_step(cpu, cfg, w, g, state, 0);
    AdamRef ref = adam_ref(cfg, std::vector<LD>(w.begin(), w.end()), {0, 0, 0, 0}, {0, 0, 0, 0},
                           std::vector<LD>(g.begin(), g.end()), 1);
    for (size_t i = 0; i < 3; ++i) {
        EXPECT_TRUE(near_ref("m", i, a.m[i], ref.m[i], fabsl(ref.m[i]), 1.0));
        EXPECT_GT(ref.v[i], (LD)FLT_MAX);
        EXPECT_EQ(a.v[i], kInf) << i;
        EXPECT_EQ(a.w[i], w[i]) << i << ": no step, where the formula steps by lr";
    }
    EXPECT_TRUE(near_ref("w", 3, a.w[3], ref.w[3], ref.t_w[3], cfg.eps)) << "the other elements are untouched by it";
    EXPECT_TRUE(std::isfinite(a.rec.update_sumsq));
    EXPECT_TRUE(std::isfinite(a.rec.param_sumsq));
    // A normal gradient afterwards: still no step for the saturated elements.
    std::vector<float> s2 = a.m;
    s2.insert(s2.end(), a.v.begin(), a.v.end());
    AdamRun b = adam_step(cpu, cfg, a.w, {0.1f, 0.1f, 0.1f, 0.1f}, s2, 1);
    for (size_t i = 0; i < 3; ++i) {
        EXPECT_EQ(b.w[i], w[i]) << i;
        EXPECT_EQ(b.v[i], kInf) << i;
        EXPECT_TRUE(std::isfinite(b.m[i])) << i;
    }
    EXPECT_NE(b.w[3], a.w[3]);
}

TEST(Stability, AdamClipsHugeGradientsIntoTheFormula) {
    Cpu cpu;
    ct_optim_config cfg = ct_optim_defaults(CT_OPT_ADAM);
    cfg.clip_norm = 1.0f;
    const std::vector<float> g = huge_gradients_past_float();
    const std::vector<float> w = {0.5f, -0.25f, 0.0f, 0.75f};
    AdamRun a = adam_step(cpu, cfg, w, g, std::vector<float>(2 * g.size(), 0.0f), 0);
    EXPECT_TRUE(a.rec.flags & CT_FLAG_CLIPPED);
    // The kernel scales g by (float)clip_scale: the formula gets those g.
    const float gs = (float)a.rec.clip_scale;
    std::vector<LD> clipped;
    for (float x : g) clipped.push_back((LD)(x * gs));
    AdamRef ref = adam_ref(cfg, std::vector<LD>(w.begin(), w.end()), {0, 0, 0, 0}, {0, 0, 0, 0}, clipped, 1);
    for (size_t i = 0; i < g.size(); ++i) {
        EXPECT_TRUE(near_ref("w", i, a.w[i], ref.w[i], ref.t_w[i], cfg.eps));
        EXPECT_TRUE(near_ref("v", i, a.v[i], ref.v[i], ref.v[i], 1.0));
    }
    EXPECT_NEAR(a.w[2], -1e-3, 1e-6) << "3e38 clipped still steps by lr";
}

// ---- MSE -----------------------------------------------------------------------

TEST(Stability, MseLargePredictionsMatchALongDoubleReference) {
    // Targets are one-hot, so "large" is the prediction: errors of 1e18 and
    // 3e18 have squares (1e36, 9e36) that only a double sum holds before the
    // mean brings them back to float; 1 + 2^-23 at the label is the smallest
    // non-zero error there.
    const int C = 10;
    std::vector<float> p = {1e18f, -1e18f, 0, 0, 0, 0, 0, 0, 0, 3e18f,  // label 9
                            0, 0, 0, 1.0f + std::ldexp(1.0f, -23), 0, 0, 0, 0, 0, 0,  // label 3
                            -3e18f, -3e18f, -3e18f, -3e18f, -3e18f, -3e18f, -3e18f, -3e18f, -3e18f, -3e18f};  // 0
    const std::vector<int32_t> labels = {9, 3, 0};
    const int rows = 3;
    const float scale = 1.0f / rows;
    Cpu cpu;
    float *g = cpu.put(std::vector<float>(p.size(), -7.0f));
    float *loss = cpu.put(std::vector<float>(rows, -7.0f)), *cor = cpu.put(std::vector<float>(rows, -7.0f));
    cpu.ops()->mse_onehot(cpu.be(), rows, C, cpu.put(p), cpu.put(labels), scale, g, loss, cor);
    const std::vector<float> got_loss = cpu.get(loss, rows), got_grad = cpu.get(g, p.size());
    for (int r = 0; r < rows; ++r) {
        LD sq = 0;
        for (int c = 0; c < C; ++c) {
            const LD d = (LD)p[(size_t)r * C + (size_t)c] - (c == labels[(size_t)r] ? 1 : 0);
            sq += d * d;
            const double want = (double)((LD)scale * 2 * d / C);
            const float got = got_grad[(size_t)r * C + (size_t)c];
            EXPECT_TRUE(std::isfinite(got));
            EXPECT_LE(std::fabs((double)got - want), 0.5 * ulp_of(want) + 1e-15 * std::fabs(want))
                << "row " << r << " class " << c << ": " << got << " want " << want;
        }
        const double want = (double)(sq / C);
        EXPECT_TRUE(std::isfinite(got_loss[(size_t)r]));
        EXPECT_LE(std::fabs((double)got_loss[(size_t)r] - want), 0.5 * ulp_of(want) + 1e-15 * want)
            << "row " << r << ": " << got_loss[(size_t)r] << " want " << want;
    }
    EXPECT_EQ(got_loss[1], (float)(std::ldexp(1.0, -46) / C));
}

TEST(Stability, MseLossPastTheFloatRangeIsInfiniteNotWrapped) {
    // An error of 1e20 has a mean square of 1e39 > FLT_MAX: the float loss is
    // +inf (what rounding to float means), so NONFINITE_LOSS flags the step;
    // the gradient, 2e19/10, is finite and exact.
    Cpu cpu;
    std::vector<float> p(10, 0.0f);
    p[4] = 1e20f;
    float *g = cpu.put(std::vector<float>(10, -7.0f));
    float *loss = cpu.put(std::vector<float>(1, -7.0f)), *cor = cpu.put(std::vector<float>(1, -7.0f));
    cpu.ops()->mse_onehot(cpu.be(), 1, 10, cpu.put(p), cpu.put(std::vector<int32_t>{0}), 1.0f, g, loss, cor);
    EXPECT_EQ(cpu.get(loss, 1)[0], kInf);
    const std::vector<float> grad = cpu.get(g, 10);
    EXPECT_EQ(grad[4], (float)(2.0 * 1e20f / 10));
    EXPECT_EQ(grad[0], -0.2f);
}

}  // namespace
