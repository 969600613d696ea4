// cpu_step_stats against a direct, element-by-element computation written
// here, on an arena of three layers of awkward sizes (a 7->5 dense layer with
// bias, a 13->7 one, and a single scalar), plus the flag rules.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "kernels/cpu/cpu_ops.h"

namespace {

const float kNaN = std::numeric_limits<float>::quiet_NaN();
const float kInf = std::numeric_limits<float>::infinity();

// A gradient arena with its layer table and one batch of per-row losses.
// Step 42 of epoch 3, record into slot 0 of a one-slot ring.
const ct_step_ctx kCtx = {42, 3, 0, 0, 1};

struct Batch {
    std::vector<float> grads;
    std::vector<size_t> begin;  // n_layers + 1 offsets
    std::vector<float> row_loss;
    std::vector<float> row_correct;
    ct_health_thresholds th{0.0, 0.0};

    ct_stats_args args() const {
        ct_stats_args a{};
        a.grads = grads.data();
        a.n = grads.size();
        a.n_layers = static_cast<uint32_t>(begin.size() - 1);
        a.layer_begin = begin.data();
        a.row_loss = row_loss.data();
        a.row_correct = row_correct.data();
        a.rows = static_cast<uint32_t>(row_loss.size());
        a.th = th;
        return a;
    }
};

// Layers of sizes 7*5+5, 13*7+13 and 1, starting `head` floats into the arena
// and followed by `tail` floats that belong to no layer.
Batch make_batch(uint32_t seed, size_t head = 0, size_t tail = 0, uint32_t rows = 10) {
    const size_t sizes[3] = {7 * 5 + 5, 13 * 7 + 13, 1};
    Batch b;
    b.begin.push_back(head);
    for (size_t s : sizes) b.begin.push_back(b.begin.back() + s);
    b.grads.resize(b.begin.back() + tail);
    std::mt19937 rng(seed);
    std::uniform_real_distribution<float> u(-2.0f, 2.0f);
    for (float &g : b.grads) g = u(rng);
    for (uint32_t r = 0; r < rows; ++r) {
        b.row_loss.push_back(std::uniform_real_distribution<float>(0.0f, 3.0f)(rng));
        b.row_correct.push_back(static_cast<float>(rng() % 2));
    }
    return b;
}

// The statistics computed the obvious way, one element at a time.
struct Direct {
    double loss = 0, correct = 0, sumsq = 0, max_abs = 0;
    uint64_t nonfinite = 0, zeros = 0;
    double layer_sumsq[3] = {0, 0, 0};
    uint32_t layer_nonfinite[3] = {0, 0, 0};
    uint32_t zero_all = 0;
};

int layer_of(const Batch &b, size_t i) {
    for (size_t l = 0; l + 1 < b.begin.size(); ++l)
        if (i >= b.begin[l] && i < b.begin[l + 1]) return static_cast<int>(l);
    return -1;
}

Direct direct(const Batch &b) {
    Direct d;
    for (size_t r = 0; r < b.row_loss.size(); ++r) {
        d.loss += b.row_loss[r];
        d.correct += b.row_correct[r];
    }
    bool nonzero_seen[3] = {false, false, false};
    for (size_t i = 0; i < b.grads.size(); ++i) {
        const float g = b.grads[i];
        const int l = layer_of(b, i);
        if (std::isnan(g) || std::isinf(g)) {
            d.nonfinite++;
            if (l >= 0) d.layer_nonfinite[l]++;
        } else {
            d.sumsq += double(g) * double(g);
            if (l >= 0) d.layer_sumsq[l] += double(g) * double(g);
            if (std::fabs(double(g)) > d.max_abs) d.max_abs = std::fabs(double(g));
        }
        if (g == 0.0f)
            d.zeros++;
        else if (l >= 0)
            nonzero_seen[l] = true;
    }
    for (int l = 0; l < 3; ++l)
        if (!nonzero_seen[l] && b.begin[l + 1] > b.begin[l]) d.zero_all |= 1u << l;
    return d;
}

ct_step_record run_stats(const Batch &b) {
    ct_step_record rec;
    std::memset(&rec, 0xA5, sizeof rec);  // garbage: the kernel must set every field
    const ct_stats_args a = b.args();
    cpu_step_stats(nullptr, &a, &kCtx, &rec);
    return rec;
}

// Sums are added in a different order from the direct loop; 1e-12 relative
// is far tighter than any real bug and far looser than reassociation error.
void expect_sums_match(const ct_step_record &rec, const Direct &d) {
    EXPECT_NEAR(rec.loss_sum, d.loss, 1e-12 * std::fabs(d.loss));
    EXPECT_EQ(rec.correct, d.correct);
    EXPECT_NEAR(rec.grad_sumsq, d.sumsq, 1e-12 * d.sumsq);
    EXPECT_EQ(rec.grad_max_abs, d.max_abs);
    EXPECT_EQ(rec.nonfinite_count, d.nonfinite);
    EXPECT_EQ(rec.zero_count, d.zeros);
    for (int l = 0; l < 3; ++l) {
        EXPECT_NEAR(rec.layer_grad_sumsq[l], d.layer_sumsq[l], 1e-12 * d.layer_sumsq[l]) << l;
        EXPECT_EQ(rec.layer_nonfinite[l], d.layer_nonfinite[l]) << l;
    }
    EXPECT_EQ(rec.layer_zero_all, d.zero_all);
}

TEST(StepStats, MatchesDirectComputation) {
    Batch b = make_batch(1);
    // A few exact zeros (one negative) inside layers that are otherwise
    // non-zero: counted, but no layer is "all zero".
    b.grads[3] = 0.0f;
    b.grads[50] = -0.0f;
    b.grads[60] = 0.0f;
    const ct_step_record rec = run_stats(b);
    const Direct d = direct(b);

    expect_sums_match(rec, d);
    EXPECT_EQ(d.zeros, 3u);
    EXPECT_EQ(rec.step, 42u);
    EXPECT_EQ(rec.epoch, 3u);
    EXPECT_EQ(rec.batch_size, 10u);
    EXPECT_EQ(rec.n_layers, 3u);
    EXPECT_EQ(rec.flags, 0u);
    EXPECT_EQ(rec.clip_scale, 1.0);
    EXPECT_EQ(rec.param_sumsq, 0.0);
    EXPECT_EQ(rec.update_sumsq, 0.0);
    for (int l = 3; l < CT_MAX_PARAM_LAYERS; ++l) {
        EXPECT_EQ(rec.layer_grad_sumsq[l], 0.0) << l;
        EXPECT_EQ(rec.layer_nonfinite[l], 0u) << l;
    }
}

TEST(StepStats, PerLayerSumsAddUpToTotal) {
    const Batch b = make_batch(2);
    const ct_step_record rec = run_stats(b);
    const double layers = rec.layer_grad_sumsq[0] + rec.layer_grad_sumsq[1] + rec.layer_grad_sumsq[2];
    EXPECT_NEAR(layers, rec.grad_sumsq, 1e-12 * rec.grad_sumsq);
    // The single-element layer's sum is exactly that element squared.
    const double g = b.grads[b.begin[2]];
    EXPECT_EQ(rec.layer_grad_sumsq[2], g * g);
}

TEST(StepStats, ElementsOutsideLayersCountTowardTotals) {
    Batch b = make_batch(3, /*head=*/3, /*tail=*/4);
    b.grads[0] = 100.0f;  // before layer 0: the largest magnitude overall
    b.grads[b.grads.size() - 1] = kNaN;  // after the last layer
    b.grads[b.grads.size() - 2] = 0.0f;
    const ct_step_record rec = run_stats(b);
    const Direct d = direct(b);

    expect_sums_match(rec, d);
    EXPECT_EQ(rec.grad_max_abs, 100.0);
    EXPECT_EQ(rec.nonfinite_count, 1u);
    EXPECT_EQ(rec.layer_nonfinite[0] + rec.layer_nonfinite[1] + rec.layer_nonfinite[2], 0u);
    // The total is the layers plus the finite elements outside them.
    double outside = 0.0;
    for (size_t i = 0; i < b.grads.size(); ++i)
        if (layer_of(b, i) < 0 && std::isfinite(b.grads[i])) outside += double(b.grads[i]) * b.grads[i];
    EXPECT_GE(outside, 100.0 * 100.0);
    const double layers = rec.layer_grad_sumsq[0] + rec.layer_grad_sumsq[1] + rec.layer_grad_sumsq[2];
    EXPECT_NEAR(rec.grad_sumsq, layers + outside, 1e-12 * rec.grad_sumsq);
    EXPECT_TRUE(rec.flags & CT_FLAG_NONFINITE_GRAD);
}

void expect_one_nonfinite_in_layer1(float bad) {
    Batch b = make_batch(4);
    const size_t at = b.begin[1] + 17;
    const Batch clean = b;
    b.grads[at] = bad;
    const ct_step_record rec = run_stats(b);
    const Direct d = direct(b);

    expect_sums_match(rec, d);
    EXPECT_TRUE(rec.flags & CT_FLAG_NONFINITE_GRAD);
    EXPECT_FALSE(rec.flags & CT_FLAG_NONFINITE_LOSS);
    EXPECT_EQ(rec.nonfinite_count, 1u);
    EXPECT_EQ(rec.layer_nonfinite[0], 0u);
    EXPECT_EQ(rec.layer_nonfinite[1], 1u);
    EXPECT_EQ(rec.layer_nonfinite[2], 0u);
    EXPECT_TRUE(std::isfinite(rec.grad_sumsq));
    EXPECT_TRUE(std::isfinite(rec.grad_max_abs));
    // Leaving the bad element out: the sums equal those of the clean arena
    // minus the replaced element's square.
    const ct_step_record ref = run_stats(clean);
    const double gone = double(clean.grads[at]) * double(clean.grads[at]);
    EXPECT_NEAR(rec.grad_sumsq, ref.grad_sumsq - gone, 1e-12 * ref.grad_sumsq);
    EXPECT_NEAR(rec.layer_grad_sumsq[1], ref.layer_grad_sumsq[1] - gone, 1e-12 * ref.grad_sumsq);
    EXPECT_EQ(rec.layer_grad_sumsq[0], ref.layer_grad_sumsq[0]);
    EXPECT_EQ(rec.layer_grad_sumsq[2], ref.layer_grad_sumsq[2]);
}

TEST(StepStats, NaNGradientIsCountedAndExcluded) { expect_one_nonfinite_in_layer1(kNaN); }
TEST(StepStats, PosInfGradientIsCountedAndExcluded) { expect_one_nonfinite_in_layer1(kInf); }
TEST(StepStats, NegInfGradientIsCountedAndExcluded) { expect_one_nonfinite_in_layer1(-kInf); }

TEST(StepStats, AllZeroLayerSetsZeroGrad) {
    Batch b = make_batch(5);
    for (size_t i = b.begin[1]; i < b.begin[2]; ++i) b.grads[i] = (i % 2) ? 0.0f : -0.0f;
    const ct_step_record rec = run_stats(b);
    const Direct d = direct(b);

    expect_sums_match(rec, d);
    EXPECT_TRUE(rec.flags & CT_FLAG_ZERO_GRAD);
    EXPECT_EQ(rec.layer_zero_all, 1u << 1);
    EXPECT_EQ(rec.layer_grad_sumsq[1], 0.0);
    EXPECT_EQ(rec.zero_count, uint64_t(13 * 7 + 13));
}

TEST(StepStats, SingleElementZeroLayerSetsItsBit) {
    Batch b = make_batch(6);
    b.grads[b.begin[2]] = 0.0f;
    const ct_step_record rec = run_stats(b);
    EXPECT_EQ(rec.layer_zero_all, 1u << 2);
    EXPECT_TRUE(rec.flags & CT_FLAG_ZERO_GRAD);
}

TEST(StepStats, NaNInOtherwiseZeroLayerIsNotAllZero) {
    Batch b = make_batch(7);
    for (size_t i = b.begin[0]; i < b.begin[1]; ++i) b.grads[i] = 0.0f;
    b.grads[b.begin[0] + 5] = kNaN;
    const ct_step_record rec = run_stats(b);
    EXPECT_EQ(rec.layer_zero_all, 0u);
    EXPECT_FALSE(rec.flags & CT_FLAG_ZERO_GRAD);
    EXPECT_TRUE(rec.flags & CT_FLAG_NONFINITE_GRAD);
    EXPECT_EQ(rec.zero_count, uint64_t(7 * 5 + 5 - 1));
}

TEST(StepStats, EmptyLayerIsNotAllZero) {
    Batch b = make_batch(8);
    // Insert a zero-length layer between layers 0 and 1.
    b.begin.insert(b.begin.begin() + 1, b.begin[1]);
    const ct_step_record rec = run_stats(b);
    EXPECT_EQ(rec.n_layers, 4u);
    EXPECT_EQ(rec.layer_zero_all, 0u);
    EXPECT_EQ(rec.layer_grad_sumsq[1], 0.0);
    EXPECT_FALSE(rec.flags & CT_FLAG_ZERO_GRAD);
}

TEST(StepStats, NaNRowLossSetsNonfiniteLoss) {
    Batch b = make_batch(9);
    b.row_loss[4] = kNaN;
    const ct_step_record rec = run_stats(b);
    EXPECT_TRUE(rec.flags & CT_FLAG_NONFINITE_LOSS);
    EXPECT_FALSE(rec.flags & CT_FLAG_NONFINITE_GRAD);
    EXPECT_TRUE(std::isnan(rec.loss_sum));
    EXPECT_EQ(rec.correct, direct(b).correct);
}

TEST(StepStats, InfRowLossSetsNonfiniteLoss) {
    Batch b = make_batch(10);
    b.row_loss[0] = kInf;
    const ct_step_record rec = run_stats(b);
    EXPECT_TRUE(rec.flags & CT_FLAG_NONFINITE_LOSS);
    EXPECT_TRUE(std::isinf(rec.loss_sum));
}

TEST(StepStats, RowSumsAreInRowOrder) {
    // 1 + 1e-8 + ... : a float accumulator would lose the small terms.
    Batch b = make_batch(11, 0, 0, 0);
    b.row_loss = {1.0f, 1e-8f, 1e-8f, 1e-8f};
    b.row_correct = {1.0f, 0.0f, 1.0f, 1.0f};
    const ct_step_record rec = run_stats(b);
    EXPECT_EQ(rec.loss_sum, ((1.0 + double(1e-8f)) + double(1e-8f)) + double(1e-8f));
    EXPECT_EQ(rec.correct, 3.0);
    EXPECT_EQ(rec.batch_size, 4u);
}

TEST(StepStats, EmptyBatch) {
    Batch b = make_batch(12, 0, 0, /*rows=*/0);
    std::fill(b.grads.begin(), b.grads.end(), 0.0f);  // no rows, no gradient
    ct_stats_args a = b.args();
    a.row_loss = nullptr;  // nothing may be read from the row arrays
    a.row_correct = nullptr;
    ct_step_record rec;
    std::memset(&rec, 0xA5, sizeof rec);
    cpu_step_stats(nullptr, &a, &kCtx, &rec);

    EXPECT_EQ(rec.flags, uint32_t(CT_FLAG_EMPTY_BATCH));
    EXPECT_EQ(rec.batch_size, 0u);
    EXPECT_EQ(rec.loss_sum, 0.0);
    EXPECT_EQ(rec.correct, 0.0);
    EXPECT_EQ(rec.layer_zero_all, 0u);
    EXPECT_EQ(rec.clip_scale, 1.0);
}

TEST(StepStats, ExplodingThreshold) {
    Batch b = make_batch(13);
    const double norm = std::sqrt(direct(b).sumsq);

    b.th.exploding_grad_norm = norm * 0.99;
    EXPECT_TRUE(run_stats(b).flags & CT_FLAG_EXPLODING_GRAD);
    b.th.exploding_grad_norm = norm * 1.01;
    EXPECT_FALSE(run_stats(b).flags & CT_FLAG_EXPLODING_GRAD);
    b.th.exploding_grad_norm = 0.0;  // off
    EXPECT_FALSE(run_stats(b).flags & CT_FLAG_EXPLODING_GRAD);
}

TEST(StepStats, NoLayerTableStillReducesEverything) {
    Batch b = make_batch(14);
    ct_stats_args a = b.args();
    a.n_layers = 0;
    ct_step_record rec;
    cpu_step_stats(nullptr, &a, &kCtx, &rec);
    const Direct d = direct(b);
    EXPECT_NEAR(rec.grad_sumsq, d.sumsq, 1e-12 * d.sumsq);
    EXPECT_EQ(rec.n_layers, 0u);
    EXPECT_EQ(rec.layer_grad_sumsq[0], 0.0);
    EXPECT_EQ(rec.layer_zero_all, 0u);
}

TEST(StepStats, BitIdenticalAcrossCalls) {
    Batch b = make_batch(15, 2, 3);
    b.grads[9] = kNaN;
    b.grads[70] = 0.0f;
    const ct_stats_args a = b.args();
    ct_step_record r1, r2;
    std::memset(&r1, 0x00, sizeof r1);
    std::memset(&r2, 0xFF, sizeof r2);  // different garbage, same result
    cpu_step_stats(nullptr, &a, &kCtx, &r1);
    cpu_step_stats(nullptr, &a, &kCtx, &r2);
    EXPECT_EQ(0, std::memcmp(&r1, &r2, sizeof r1));
}

}  // namespace

TEST(StepStats, WritesOnlyTheContextsRingSlot) {
    const Batch b = make_batch(77);
    const ct_stats_args a = b.args();
    ct_step_record ring[4];
    std::memset(ring, 0xA5, sizeof ring);
    ct_step_record untouched;
    std::memset(&untouched, 0xA5, sizeof untouched);
    const ct_step_ctx ctx = {9, 2, 5, 2, 4};
    cpu_step_stats(nullptr, &a, &ctx, ring);
    EXPECT_EQ(ring[2].step, 9u);
    EXPECT_EQ(ring[2].epoch, 2u);
    const ct_step_record direct = run_stats(b);
    EXPECT_EQ(ring[2].grad_sumsq, direct.grad_sumsq);
    for (int i : {0, 1, 3}) EXPECT_EQ(std::memcmp(&ring[i], &untouched, sizeof untouched), 0) << "slot " << i;
}
