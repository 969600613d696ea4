// The op window behind `cutrain bench --ops` (src/train/op_window.h): it
// runs the first k compute ops of a step on the CPU backend and cuts the
// rest, names each op, starts a step at the batch's gather, and passes
// memory and every other non-compute entry whatever its limit.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "cutrain/cutrain.h"
#include "src/train/op_window.h"

namespace {

class OpWindow : public ::testing::Test {
  protected:
    void SetUp() override {
        ct_error err;
        ct_error_clear(&err);
        inner_ = ct_backend_cpu_create(1, &err);
        ASSERT_NE(inner_, nullptr) << err.msg;
        ct_op_window_init(&w_, inner_);
    }
    void TearDown() override {
        if (inner_) ct_backend_destroy(inner_);
    }
    ct_backend *inner_ = nullptr;
    ct_op_window w_;
};

// The table as an array of entries: every member is a function pointer.
using Entry = void (*)(void);
constexpr size_t kEntries = sizeof(ct_backend_ops) / sizeof(Entry);

std::vector<Entry> entries(const ct_backend_ops *o) {
    std::vector<Entry> v(kEntries);
    std::memcpy(v.data(), o, sizeof *o);
    return v;
}

TEST_F(OpWindow, OffersExactlyTheEntriesOfTheBackendItWraps) {
    static_assert(sizeof(ct_backend_ops) % sizeof(Entry) == 0, "the table holds function pointers only");
    // The CPU backend: capture is absent, the rest present (but destroy:
    // the window owns nothing).
    auto a = entries(inner_->ops), b = entries(w_.outer.ops);
    for (size_t i = 1; i < kEntries; ++i) EXPECT_EQ(a[i] != nullptr, b[i] != nullptr) << "entry " << i;
    EXPECT_EQ(w_.outer.ops->destroy, nullptr);
    EXPECT_EQ(w_.outer.ops->capture_begin, nullptr);
    EXPECT_EQ(w_.outer.kind, inner_->kind);
    EXPECT_STREQ(w_.outer.description, inner_->description);

    // A table with holes: the window has the same holes.
    ct_backend_ops sparse;
    std::memcpy(&sparse, inner_->ops, sizeof sparse);
    sparse.gemm = nullptr;
    sparse.dense_chain_train = nullptr;
    sparse.fence = nullptr;
    ct_backend holey = *inner_;
    holey.ops = &sparse;
    ct_op_window w2;
    ct_op_window_init(&w2, &holey);
    EXPECT_EQ(w2.outer.ops->gemm, nullptr);
    EXPECT_EQ(w2.outer.ops->dense_chain_train, nullptr);
    EXPECT_EQ(w2.outer.ops->fence, nullptr);
    EXPECT_NE(w2.outer.ops->bias_act_forward, nullptr);
}

TEST_F(OpWindow, RunsTheFirstKOpsOfEachStepAndNamesThemAll) {
    // Three samples of 4 bytes; a step: gather 2 rows, gemm [2,4]x[6,4]^T,
    // bias + ReLU.
    const uint8_t images[12] = {10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 110, 120};
    const uint8_t labels[3] = {1, 2, 3};
    ct_device_dataset ds = {images, labels, CT_ELEM_U8, 3, 4, 1.0f / 255.0f};
    const int32_t order[2] = {2, 0};
    ct_step_ctx ctx = {1, 1, 0, 0, 1};
    std::vector<float> W(24), bias(6);
    for (int i = 0; i < 24; ++i) W[i] = 0.25f * (float)((i * 7) % 11) - 1.0f;
    for (int i = 0; i < 6; ++i) bias[i] = 0.5f - 0.3f * (float)i;

    // The reference: the three ops on the CPU backend itself.
    std::vector<float> x_ref(8), y_gemm(12), y_ref(12);
    int32_t lab_ref[2];
    const ct_backend_ops *o = inner_->ops;
    o->gather_batch(inner_, &ds, order, 2, &ctx, 2, x_ref.data(), lab_ref);
    o->gemm(inner_, 0, 1, 2, 6, 4, 1.0f, x_ref.data(), 4, W.data(), 4, 0.0f, y_gemm.data(), 6);
    y_ref = y_gemm;
    o->bias_act_forward(inner_, CT_ACT_RELU, 2, 6, bias.data(), y_ref.data());
    ASSERT_NE(y_gemm, y_ref); // the third op changes something

    ct_backend *b = &w_.outer;
    for (int limit = 0; limit <= 3; ++limit) {
        SCOPED_TRACE(limit);
        ct_op_window_reset(&w_, limit);
        for (int step = 0; step < 2; ++step) { // the gather starts each step: the same cut twice
            std::vector<float> x(8, 7.0f), y(12, 7.0f);
            int32_t lab[2] = {-5, -5};
            b->ops->gather_batch(b, &ds, order, 2, &ctx, 2, x.data(), lab);
            b->ops->gemm(b, 0, 1, 2, 6, 4, 1.0f, x.data(), 4, W.data(), 4, 0.0f, y.data(), 6);
            b->ops->bias_act_forward(b, CT_ACT_RELU, 2, 6, bias.data(), y.data());
            EXPECT_EQ(w_.count, 3);
            EXPECT_EQ(x, limit >= 1 ? x_ref : std::vector<float>(8, 7.0f));
            EXPECT_EQ(lab[0], limit >= 1 ? lab_ref[0] : -5);
            EXPECT_EQ(y, limit >= 3 ? y_ref : limit == 2 ? y_gemm : std::vector<float>(12, 7.0f));
        }
        EXPECT_EQ(w_.dropped, 2 * (3 - limit));
    }
    EXPECT_STREQ(w_.labels[0], "gather_batch 2x4");
    EXPECT_STREQ(w_.labels[1], "gemm NT 2x6x4");
    EXPECT_STREQ(w_.labels[2], "bias_act_forward relu 2x6");

    // No limit: everything runs; a reset clears the counts.
    ct_op_window_reset(&w_, -1);
    std::vector<float> y(12, 7.0f);
    b->ops->gemm(b, 0, 1, 2, 6, 4, 1.0f, x_ref.data(), 4, W.data(), 4, 0.0f, y.data(), 6);
    EXPECT_EQ(y, y_gemm);
    EXPECT_EQ(w_.count, 1);
    EXPECT_EQ(w_.dropped, 0);
}

// A cut step still goes on to the next batch: the advance is never cut, and
// a cut step_finish advances instead of updating.
TEST_F(OpWindow, ACutStepStillAdvances) {
    ct_backend *b = &w_.outer;
    ct_step_ctx ctx = {1, 1, 0, 0, 4};
    ct_op_window_reset(&w_, 0);
    b->ops->step_advance(b, &ctx);
    EXPECT_EQ(ctx.step, 2u);
    EXPECT_EQ(ctx.batch, 1u);
    EXPECT_EQ(ctx.slot, 1u);
    EXPECT_EQ(w_.count, 1);
    EXPECT_STREQ(w_.labels[0], "step_advance");

    // step_finish cut: parameters, state and t untouched, the step advanced.
    std::vector<float> w = {0.5f, -0.25f, 1.0f}, g = {0.1f, 0.2f, -0.3f}, state(6, 0.0f);
    uint64_t t = 0;
    std::vector<float> row_loss = {0.7f}, row_correct = {1.0f};
    const size_t layer_begin[2] = {0, 3};
    ct_stats_args a = {};
    a.grads = g.data();
    a.n = 3;
    a.n_layers = 1;
    a.layer_begin = layer_begin;
    a.row_loss = row_loss.data();
    a.row_correct = row_correct.data();
    a.rows = 1;
    ct_optim_config cfg = ct_optim_defaults(CT_OPT_ADAM);
    ct_optim_buffers buf = {w.data(), g.data(), state.data(), &t, 3};
    ct_health_thresholds th = {};
    std::vector<ct_step_record> ring(4);
    const std::vector<float> w0 = w;
    b->ops->step_finish(b, &a, &cfg, &buf, &th, &ctx, ring.data());
    EXPECT_EQ(w, w0);
    EXPECT_EQ(t, 0u);
    EXPECT_EQ(ctx.step, 3u);
    EXPECT_EQ(ctx.slot, 2u);
    EXPECT_EQ(w_.dropped, 1);
    EXPECT_STREQ(w_.labels[1], "step_finish adam 3 params");

    // Not cut: the update happens (and the step advances once, not twice).
    ct_op_window_reset(&w_, -1);
    b->ops->step_finish(b, &a, &cfg, &buf, &th, &ctx, ring.data());
    EXPECT_NE(w, w0);
    EXPECT_EQ(t, 1u);
    EXPECT_EQ(ctx.step, 4u);
}

TEST_F(OpWindow, PassesMemoryWhateverItsLimit) {
    ct_op_window_reset(&w_, 0);
    ct_backend *b = &w_.outer;
    ct_error err;
    ct_error_clear(&err);
    float *p = static_cast<float *>(b->ops->alloc(b, 4 * sizeof(float), &err));
    ASSERT_NE(p, nullptr) << err.msg;
    const float src[4] = {1.5f, -2.0f, 3.25f, 4.0f};
    b->ops->upload(b, p, src, sizeof src);
    float back[4] = {0, 0, 0, 0};
    b->ops->download(b, back, p, sizeof back);
    EXPECT_EQ(std::memcmp(back, src, sizeof src), 0);
    b->ops->zero(b, p, sizeof src);
    b->ops->download(b, back, p, sizeof back);
    for (float v : back) EXPECT_EQ(v, 0.0f);
    b->ops->free(b, p);
    EXPECT_EQ(w_.count, 0);
    EXPECT_EQ(w_.dropped, 0);
}

}  // namespace
