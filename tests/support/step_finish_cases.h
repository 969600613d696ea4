// The end-of-step cases (step_stats, optimizer_step, step_advance: the
// step_finish op), shared by the GPU parity test
// (tests/parity/test_parity_step_finish.cpp: the fused kernel against the
// three on a GPU) and the emulated kernel test
// (tests/emu/test_emu_step_finish.cpp: the same device code on the CPU, and
// the three against the CPU reference): the arenas, fresh random inputs
// (never zeros) with the planted values each case is about, one run on any
// memory, and the comparisons.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "cutrain/cutrain.h"
#include "support/host_blocks.h"

namespace ct_test {

enum StepPlant : unsigned {
    kPlantNone = 0,
    kPlantNonfiniteGrad = 1u << 0,  // a NaN in layer 0, +Inf and -Inf elsewhere
    kPlantZeroLayer = 1u << 1,      // the last layer's gradient all +0.0 / -0.0
    kPlantNanLoss = 1u << 2,        // one row's loss NaN
    kPlantDenormals = 1u << 3,      // denormal gradients and weights, and -0.0
    kPlantNoGradStats = 1u << 4,    // the statistics over 0 elements (--grad-stats off)
};

struct StepCase {
    std::string name;
    size_t head;                  // elements before the first layer
    std::vector<size_t> layers;   // each parametric layer's elements
    size_t tail;                  // elements after the last
    uint32_t rows;                // 0: an empty batch
    ct_optimizer_kind opt;
    float lr;
    float momentum;               // SGD, RMSprop
    int nesterov;
    float clip;                   // 0: off
    int skip_nonfinite;
    ct_schedule_kind schedule;
    unsigned plant;
    double exploding;             // the threshold as a multiple of ||g||; 0: off
    double vanishing;             // ||dw||/||w|| threshold
    uint32_t slot, ring_len;

    size_t n() const {
        size_t s = head + tail;
        for (size_t l : layers) s += l;
        return s;
    }
};

// The cases every implementation is checked at: seed's real arena, odd and
// tiny layers, more layers than a record names, the arena limit of the one
// kernel, every optimizer, and each flag made to fire.
inline std::vector<StepCase> step_finish_cases() {
    const std::vector<size_t> seed = {7850, 110};
    std::vector<size_t> many;
    for (int i = 0; i < CT_MAX_PARAM_LAYERS + 3; ++i) many.push_back((size_t)(17 + 29 * i));
    using K = ct_optimizer_kind;
    return {
        {"seed_sgd", 0, seed, 0, 32, K::CT_OPT_SGD, 0.01f, 0.0f, 0, 0, 0, CT_SCHED_CONSTANT, kPlantNone, 0, 1e-7, 0, 1},
        {"seed_adam_last_batch", 0, seed, 0, 17, K::CT_OPT_ADAM, 1e-3f, 0, 0, 0, 0, CT_SCHED_CONSTANT, kPlantNone, 0,
         1e-7, 3, 4},
        {"odd_layers_adamw_cosine_clipped", 3, {1, 300, 4097, 33}, 5, 1, K::CT_OPT_ADAMW, 3e-3f, 0, 0, 0.05f, 0,
         CT_SCHED_COSINE, kPlantNone, 0, 1e-7, 1, 3},
        {"nonfinite_skipped_rmsprop_momentum", 0, {700, 9, 10}, 0, 8, K::CT_OPT_RMSPROP, 1e-3f, 0.9f, 0, 0, 1,
         CT_SCHED_CONSTANT, kPlantNonfiniteGrad | kPlantZeroLayer, 0, 1e-7, 2, 5},
        {"nonfinite_not_skipped_sgd_nesterov", 2, {513, 255}, 1, 5, K::CT_OPT_SGD, 0.1f, 0.9f, 1, 0, 0,
         CT_SCHED_STEP, kPlantNonfiniteGrad | kPlantNanLoss, 0, 1e-7, 0, 2},
        {"empty_batch_sgd_momentum", 0, seed, 0, 0, K::CT_OPT_SGD, 0.01f, 0.9f, 0, 0, 0, CT_SCHED_CONSTANT,
         kPlantNone, 0, 1e-7, 0, 1},
        {"more_layers_than_a_record_rmsprop", 1, many, 7, 12, K::CT_OPT_RMSPROP, 1e-3f, 0, 0, 0, 0,
         CT_SCHED_ONECYCLE, kPlantZeroLayer, 0, 1e-7, 0, 1},
        {"arena_limit_adam_exploding", 0, {16384, 16383}, 1, 64, K::CT_OPT_ADAM, 1e-3f, 0, 0, 0, 0,
         CT_SCHED_CONSTANT, kPlantNone, 0.5, 1e-7, 0, 1},
        {"vanishing_sgd", 0, {4096, 4096, 1}, 0, 3, K::CT_OPT_SGD, 1e-6f, 0, 0, 0, 0, CT_SCHED_CONSTANT, kPlantNone,
         0, 1e-3, 0, 1},
        {"denormals_adamw", 0, {999}, 0, 2, K::CT_OPT_ADAMW, 1e-3f, 0, 0, 0, 0, CT_SCHED_CONSTANT, kPlantDenormals, 0,
         1e-7, 0, 1},
        {"no_grad_stats_sgd", 0, seed, 0, 32, K::CT_OPT_SGD, 0.01f, 0.5f, 0, 0, 0, CT_SCHED_CONSTANT,
         kPlantNoGradStats, 0, 1e-7, 0, 1},
        {"no_layer_table_one_element", 1, {}, 0, 1, K::CT_OPT_ADAM, 1e-3f, 0, 0, 0, 0, CT_SCHED_CONSTANT, kPlantNone,
         0, 1e-7, 0, 1},
        {"no_parameters", 0, {}, 0, 4, K::CT_OPT_SGD, 0.01f, 0, 0, 0, 0, CT_SCHED_CONSTANT, kPlantNone, 0, 1e-7, 0, 1},
    };
}

// One case's inputs on the host.
struct StepHost {
    std::vector<float> grads, w, state, row_loss, row_correct;
    std::vector<size_t> layer_begin;  // empty: no layer table
    uint64_t t = 0;
    std::vector<ct_step_record> ring;
    ct_step_ctx ctx{};
    ct_optim_config cfg{};
    ct_health_thresholds th{};
    size_t stats_n = 0;
};

inline std::vector<float> uniform_floats(std::mt19937 &g, size_t n, float lo, float hi) {
    std::uniform_real_distribution<float> d(lo, hi);
    std::vector<float> v(n);
    for (float &x : v) x = d(g);
    return v;
}

inline StepHost draw_step(const StepCase &c, std::mt19937 &g) {
    StepHost h;
    const size_t n = c.n();
    h.grads = uniform_floats(g, n, -0.05f, 0.05f);
    h.w = uniform_floats(g, n, -0.5f, 0.5f);
    h.cfg = ct_optim_defaults(c.opt);
    h.cfg.lr = c.lr;
    h.cfg.momentum = c.momentum;
    h.cfg.nesterov = c.nesterov;
    h.cfg.clip_norm = c.clip;
    h.cfg.skip_nonfinite = c.skip_nonfinite;
    h.cfg.schedule = ct_schedule_defaults(c.schedule);
    h.cfg.schedule.total_steps = 1000;
    h.cfg.schedule.step_size = 100;
    if (c.opt == CT_OPT_ADAMW) h.cfg.weight_decay = 0.01f;
    const int slots = ct_optim_state_slots(&h.cfg);
    for (int s = 0; s < slots; ++s) {
        // Second moments (Adam's v, RMSprop's mean square) must be positive.
        const bool positive = ((c.opt == CT_OPT_ADAM || c.opt == CT_OPT_ADAMW) && s == 1) ||
                              (c.opt == CT_OPT_RMSPROP && s == 0);
        const std::vector<float> v =
            positive ? uniform_floats(g, n, 1e-6f, 1e-3f) : uniform_floats(g, n, -0.01f, 0.01f);
        h.state.insert(h.state.end(), v.begin(), v.end());
    }
    h.row_loss = uniform_floats(g, c.rows, 0.01f, 3.0f);
    h.row_correct.resize(c.rows);
    for (float &x : h.row_correct) x = (float)(g() % 2);

    if (!c.layers.empty()) {
        h.layer_begin.push_back(c.head);
        for (size_t l : c.layers) h.layer_begin.push_back(h.layer_begin.back() + l);
    }
    const float inf = std::numeric_limits<float>::infinity();
    if ((c.plant & kPlantNonfiniteGrad) && !c.layers.empty()) {
        h.grads[c.head + c.layers[0] / 2] = std::numeric_limits<float>::quiet_NaN();
        h.grads[c.head] = inf;
        h.grads[n - 1] = -inf;
    }
    if ((c.plant & kPlantZeroLayer) && !c.layers.empty())
        for (size_t i = h.layer_begin[c.layers.size() - 1]; i < h.layer_begin[c.layers.size()]; ++i)
            h.grads[i] = (i % 3) ? 0.0f : -0.0f;
    if ((c.plant & kPlantNanLoss) && c.rows > 0) h.row_loss[c.rows / 2] = std::numeric_limits<float>::quiet_NaN();
    if (c.plant & kPlantDenormals) {
        for (size_t i = 0; i < n; i += 7) h.grads[i] = std::numeric_limits<float>::denorm_min() * (float)(1 + i % 5);
        for (size_t i = 3; i < n; i += 11) h.grads[i] = -0.0f;
        for (size_t i = 5; i < n; i += 13) h.w[i] = -std::numeric_limits<float>::denorm_min() * 3.0f;
    }
    h.stats_n = (c.plant & kPlantNoGradStats) ? 0 : n;

    double sumsq = 0.0;
    for (float x : h.grads)
        if (std::isfinite(x)) sumsq += (double)x * x;
    h.th.vanishing_update_ratio = c.vanishing;
    h.th.exploding_grad_norm = c.exploding * std::sqrt(sumsq);
    h.t = 9;  // a resumed run: Adam's bias correction at t = 10
    h.ctx = {501, 2, 40, c.slot, c.ring_len};
    // Every slot a finite poison: a field nobody writes shows up, and a
    // slot that should stay untouched must keep it.
    h.ring.resize(c.ring_len);
    for (ct_step_record &r : h.ring) std::memset(&r, 0x41, sizeof r);
    return h;
}

// Everything the end of a step writes.
struct StepOut {
    std::vector<ct_step_record> ring;
    std::vector<float> w, state;
    uint64_t t = 0;
    ct_step_ctx ctx{};
};

// Where it runs: memory it reads and writes, and the call.
class StepRunner {
  public:
    virtual ~StepRunner() = default;
    virtual void *put_bytes(const void *p, size_t n) = 0;
    virtual void get_bytes(void *host, const void *p, size_t n) = 0;
    virtual void finish(const ct_stats_args &a, const ct_optim_config &cfg, const ct_optim_buffers &buf,
                        const ct_health_thresholds &th, ct_step_ctx *ctx, ct_step_record *ring) = 0;

    template <typename T>
    T *put(const std::vector<T> &v) {
        return (T *)put_bytes(v.data(), v.size() * sizeof(T));
    }
    template <typename T>
    T *put_one(const T &v) {
        return (T *)put_bytes(&v, sizeof v);
    }
    template <typename T>
    std::vector<T> get(const T *p, size_t n) {
        std::vector<T> v(n);
        get_bytes(v.data(), p, n * sizeof(T));
        return v;
    }
};

using StepFn = std::function<void(const ct_stats_args &, const ct_optim_config &, const ct_optim_buffers &,
                                  const ct_health_thresholds &, ct_step_ctx *, ct_step_record *)>;

// Host memory (HostBlocks: exact-size buffers); the call is a function (the
// CPU reference, an emulated kernel).
class HostStepRunner : public StepRunner {
  public:
    explicit HostStepRunner(StepFn op) : op_(std::move(op)) {}
    void *put_bytes(const void *p, size_t n) override { return mem_.put_bytes(p, n); }
    void get_bytes(void *host, const void *p, size_t n) override { HostBlocks::get_bytes(host, p, n); }
    void finish(const ct_stats_args &a, const ct_optim_config &cfg, const ct_optim_buffers &buf,
                const ct_health_thresholds &th, ct_step_ctx *ctx, ct_step_record *ring) override {
        op_(a, cfg, buf, th, ctx, ring);
    }

  private:
    StepFn op_;
    HostBlocks mem_;
};

inline StepOut run_step(const StepCase &c, const StepHost &h, StepRunner &where) {
    ct_stats_args a;
    std::memset(&a, 0, sizeof a);
    a.grads = where.put(h.grads);
    a.n = h.stats_n;
    a.n_layers = (uint32_t)c.layers.size();
    a.layer_begin = h.layer_begin.empty() ? nullptr : h.layer_begin.data();  // host, read at the call
    a.row_loss = where.put(h.row_loss);
    a.row_correct = where.put(h.row_correct);
    a.rows = c.rows;
    a.th = h.th;
    ct_optim_buffers buf;
    buf.params = where.put(h.w);
    buf.grads = a.grads;
    buf.state = h.state.empty() ? nullptr : where.put(h.state);
    buf.t = where.put_one(h.t);
    buf.n = h.w.size();
    ct_step_ctx *ctx = where.put_one(h.ctx);
    ct_step_record *ring = where.put(h.ring);
    where.finish(a, h.cfg, buf, h.th, ctx, ring);
    StepOut out;
    out.ring = where.get(ring, h.ring.size());
    out.w = where.get(buf.params, h.w.size());
    if (buf.state) out.state = where.get(buf.state, h.state.size());
    out.t = where.get(buf.t, 1)[0];
    out.ctx = where.get(ctx, 1)[0];
    return out;
}

// n bytes equal (n may be 0, with null pointers: an empty vector's data()).
inline bool same_bytes(const void *a, const void *b, size_t n) { return n == 0 || std::memcmp(a, b, n) == 0; }

// Bit for bit: every byte of every slot, w, state, t and ctx.
inline void expect_step_same_bits(const StepOut &a, const StepOut &b) {
    ASSERT_EQ(a.ring.size(), b.ring.size());
    for (size_t s = 0; s < a.ring.size(); ++s)
        EXPECT_EQ(std::memcmp(&a.ring[s], &b.ring[s], sizeof a.ring[s]), 0) << "ring slot " << s << " differs";
    ASSERT_EQ(a.w.size(), b.w.size());
    EXPECT_TRUE(same_bytes(a.w.data(), b.w.data(), a.w.size() * sizeof(float))) << "w differs";
    ASSERT_EQ(a.state.size(), b.state.size());
    EXPECT_TRUE(same_bytes(a.state.data(), b.state.data(), a.state.size() * sizeof(float))) << "state differs";
    EXPECT_EQ(a.t, b.t);
    EXPECT_EQ(std::memcmp(&a.ctx, &b.ctx, sizeof a.ctx), 0) << "ctx differs";
}

// The flags a case is about, on one result, so that a case cannot silently
// test nothing.
inline void expect_step_case_point(const StepCase &c, const StepHost &h, const StepOut &o) {
    const ct_step_record &r = o.ring[c.slot];
    EXPECT_EQ(r.step, h.ctx.step);
    EXPECT_EQ(r.batch_size, c.rows);
    EXPECT_EQ(o.ctx.step, h.ctx.step + 1);
    EXPECT_EQ(o.ctx.batch, h.ctx.batch + 1);
    EXPECT_EQ(o.ctx.slot, (c.slot + 1) % c.ring_len);
    const bool skipped = c.rows == 0 || (c.skip_nonfinite && (c.plant & (kPlantNonfiniteGrad | kPlantNanLoss)));
    EXPECT_EQ((r.flags & CT_FLAG_SKIPPED_UPDATE) != 0, skipped);
    EXPECT_EQ(o.t, skipped ? h.t : h.t + 1);
    if (c.rows == 0) EXPECT_TRUE(r.flags & CT_FLAG_EMPTY_BATCH);
    if ((c.plant & kPlantNonfiniteGrad) && h.stats_n) EXPECT_TRUE(r.flags & CT_FLAG_NONFINITE_GRAD);
    if (c.plant & kPlantNanLoss) EXPECT_TRUE(r.flags & CT_FLAG_NONFINITE_LOSS);
    if ((c.plant & kPlantZeroLayer) && c.rows > 0 && c.layers.size() <= CT_MAX_PARAM_LAYERS)
        EXPECT_TRUE(r.flags & CT_FLAG_ZERO_GRAD);
    if (c.exploding > 0) EXPECT_TRUE(r.flags & CT_FLAG_EXPLODING_GRAD);
    if (c.clip > 0) EXPECT_TRUE(r.flags & CT_FLAG_CLIPPED);
    if (c.vanishing > 1e-6) EXPECT_TRUE(r.flags & CT_FLAG_VANISHING_UPDATE);
    if (!skipped && !h.w.empty() && !(c.plant & kPlantNonfiniteGrad)) EXPECT_GT(r.update_sumsq, 0.0);
    if (h.stats_n == 0) EXPECT_EQ(r.grad_sumsq, 0.0);
    // The slots around this step's: untouched.
    for (size_t s = 0; s < o.ring.size(); ++s)
        if (s != c.slot) EXPECT_EQ(std::memcmp(&o.ring[s], &h.ring[s], sizeof o.ring[s]), 0) << "slot " << s;
}

}  // namespace ct_test
