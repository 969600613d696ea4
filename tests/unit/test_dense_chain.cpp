// The dense chain (a network of dense layers run as one op, backend.h): the
// model hands the op a description of its own buffers, and the CPU
// reference (kernels/cpu/dense_chain_cpu.c) must give exactly what the ops
// one by one give through ct_model_forward / _loss / _backward. Two models
// built alike on the CPU, one stepped each way, must agree bit for bit in
// every activation, activation gradient, parameter gradient and row loss.
// A wrong pointer, offset, activation or loss in the description (or a
// reference that drifts from model.c's recipe) shows up as a difference.
// The same holds with the batch's gather folded into the op.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "support/fixtures.h"

namespace {

using Net = ct_test::OwnedModel;

ct_model_spec dense_spec(const std::vector<std::pair<int, ct_activation>> &layers, int input, ct_loss_kind loss,
                         bool flatten_first = false) {
    ct_model_spec s{};
    snprintf(s.name, sizeof s.name, "chain");
    s.input_dim = input;
    if (flatten_first) s.layers[s.n_layers++].kind = CT_LAYER_FLATTEN;
    for (auto &l : layers) {
        ct_layer_spec &d = s.layers[s.n_layers++];
        d.kind = CT_LAYER_DENSE;
        d.units = l.first;
        d.act = l.second;
    }
    s.loss = loss;
    s.optim = ct_optim_defaults(CT_OPT_ADAM);
    s.batch_size = 8;
    ct_model_spec_name_layers(&s);
    return s;
}

template <typename T>
std::vector<T> down(ct_model &m, const T *p, size_t n) {
    std::vector<T> v(n);
    m.be->ops->download(m.be, v.data(), p, n * sizeof(T));
    return v;
}

void expect_same_bits(const std::vector<float> &a, const std::vector<float> &b, const std::string &what) {
    ASSERT_EQ(a.size(), b.size()) << what;
    for (size_t i = 0; i < a.size(); ++i)
        ASSERT_EQ(0, std::memcmp(&a[i], &b[i], sizeof(float))) << what << "[" << i << "]: " << a[i] << " vs " << b[i];
}

// Two models built alike (same spec, seed and backend kind), each on its own backend.
void build_twins(const ct_model_spec &spec, int max_rows, Net &a, Net &b) {
    ct_error err;
    ct_error_clear(&err);
    a.be = ct_backend_cpu_create(1, &err);
    b.be = ct_backend_cpu_create(1, &err);
    ASSERT_TRUE(a.be && b.be) << err.msg;
    ASSERT_EQ(ct_model_build(&a.m, &spec, a.be, max_rows, 21, &err), 0) << err.msg;
    ASSERT_EQ(ct_model_build(&b.m, &spec, b.be, max_rows, 21, &err), 0) << err.msg;
}

// Steps `rows` rows of random inputs through both models and compares.
void check_spec(const ct_model_spec &spec, int max_rows, int rows, bool bad_label) {
    SCOPED_TRACE(std::string("rows ") + std::to_string(rows) + (bad_label ? ", one label out of range" : ""));
    Net a, b;
    ASSERT_NO_FATAL_FAILURE(build_twins(spec, max_rows, a, b));
    ASSERT_NE(a.m.chain_plan, nullptr) << "the CPU offers the chain for every dense model";

    std::mt19937 g(rows * 7 + 1);
    std::uniform_real_distribution<float> u(-1.0f, 1.0f);
    std::vector<float> x((size_t)rows * spec.input_dim);
    for (float &v : x) v = u(g);
    std::vector<int32_t> labels(rows);
    const int classes = a.m.classes;
    for (int r = 0; r < rows; ++r) labels[r] = (int32_t)(g() % classes);
    if (bad_label) labels[rows / 2] = classes;  // a NaN row loss and a zero gradient row
    for (Net *n : {&a, &b}) {
        n->be->ops->upload(n->be, n->m.x, x.data(), x.size() * sizeof(float));
        n->be->ops->upload(n->be, n->m.labels, labels.data(), labels.size() * sizeof(int32_t));
        n->be->ops->zero(n->be, n->m.grads, n->m.n_params * sizeof(float));
    }
    // Poison b's outputs differently from a's, so an output the chain never
    // writes cannot match by accident.
    std::vector<float> poison(a.m.n_params, 7.0f);
    a.be->ops->upload(a.be, a.m.grads, poison.data(), poison.size() * sizeof(float));

    ct_model_train_pass(&a.m, nullptr, nullptr, 0, rows, 5, a.m.ctx);
    ct_model_forward(&b.m, rows, 1, 5, b.m.ctx);
    ct_model_loss(&b.m, rows, 1);
    ct_model_backward(&b.m, rows, 5, b.m.ctx);

    expect_same_bits(down(a.m, a.m.grads, a.m.n_params), down(b.m, b.m.grads, b.m.n_params), "grads");
    expect_same_bits(down(a.m, a.m.row_loss, rows), down(b.m, b.m.row_loss, rows), "row_loss");
    expect_same_bits(down(a.m, a.m.row_correct, rows), down(b.m, b.m.row_correct, rows), "row_correct");
    for (int i = 0; i < a.m.n_layers; ++i) {
        const ct_layer &la = a.m.layers[i], &lb = b.m.layers[i];
        if (la.spec.kind != CT_LAYER_DENSE) continue;
        const size_t n = (size_t)rows * la.out_dim;
        expect_same_bits(down(a.m, la.y, n), down(b.m, lb.y, n), std::string(la.spec.name) + ".y");
        expect_same_bits(down(a.m, la.dy, n), down(b.m, lb.dy, n), std::string(la.spec.name) + ".dz");
    }
}

TEST(DenseChain, SeedPresetGivesTheOpsBitsAtOneOddAndFullBatches) {
    ct_model_spec spec;
    ASSERT_EQ(ct_model_spec_preset("seed", &spec), 0);
    for (int rows : {1, 7, 32}) check_spec(spec, 32, rows, false);
    check_spec(spec, 32, 31, true);
}

TEST(DenseChain, EveryActivationAndBothLossesGiveTheOpsBits) {
    const auto xent = dense_spec({{13, CT_ACT_TANH}, {9, CT_ACT_SIGMOID}, {33, CT_ACT_RELU}, {5, CT_ACT_LINEAR}}, 17,
                                 CT_LOSS_XENT);
    const auto mse = dense_spec({{6, CT_ACT_RELU}, {4, CT_ACT_SIGMOID}}, 3, CT_LOSS_MSE);
    const auto mse_softmax = dense_spec({{6, CT_ACT_TANH}, {4, CT_ACT_SOFTMAX}}, 3, CT_LOSS_MSE);  // softmax kept
    const auto flat = dense_spec({{10, CT_ACT_RELU}, {3, CT_ACT_SOFTMAX}}, 25, CT_LOSS_XENT, true);
    for (const auto *s : {&xent, &mse, &mse_softmax, &flat}) {
        SCOPED_TRACE(s == &xent ? "xent" : s == &mse ? "mse" : s == &mse_softmax ? "mse on softmax" : "flatten first");
        check_spec(*s, 9, 9, false);
        check_spec(*s, 9, 1, false);
        check_spec(*s, 9, 4, true);
    }
}

// The train pass with the batch's gather folded into the op (what train.c
// queues) against gather_batch and then the ops: the same bits in x, the
// labels and everything after, from bytes and from floats, with an index
// outside the dataset in the batch (a NaN row, label -1).
TEST(DenseChain, TheGatherFoldedInGivesTheBitsOfGatherThenTheOps) {
    ct_model_spec spec;
    ASSERT_EQ(ct_model_spec_preset("seed", &spec), 0);
    const int rows = 32, stride = 32;
    for (ct_elem_type type : {CT_ELEM_U8, CT_ELEM_F32}) {
        SCOPED_TRACE(type == CT_ELEM_U8 ? "bytes" : "floats");
        Net a, b;
        ASSERT_NO_FATAL_FAILURE(build_twins(spec, rows, a, b));

        std::mt19937 g(type);
        const size_t count = 70, elems = (size_t)spec.input_dim;
        std::vector<uint8_t> bytes(count * elems), labels(count);
        std::vector<float> floats(count * elems);
        for (uint8_t &v : bytes) v = (uint8_t)(g() & 0xff);
        for (float &v : floats) v = (float)(g() % 2001) / 1000.0f - 1.0f;
        for (uint8_t &v : labels) v = (uint8_t)(g() % 10);
        ct_device_dataset ds{};  // the CPU backend's memory is the host's
        ds.elem_type = type;
        ds.images = type == CT_ELEM_U8 ? (const void *)bytes.data() : (const void *)floats.data();
        ds.labels = labels.data();
        ds.count = count;
        ds.sample_elems = elems;
        ds.scale = type == CT_ELEM_U8 ? 1.0f / 255.0f : 0.75f;
        std::vector<int32_t> order(3 * stride);
        for (size_t i = 0; i < order.size(); ++i) order[i] = (int32_t)((i * 11 + 5) % count);
        order[stride + 4] = (int32_t)count;  // in batch 1, outside the dataset

        for (Net *n : {&a, &b}) {
            ct_step_ctx ctx;
            n->be->ops->download(n->be, &ctx, n->m.ctx, sizeof ctx);
            ctx.batch = 1;
            n->be->ops->upload(n->be, n->m.ctx, &ctx, sizeof ctx);
        }
        ct_model_train_pass(&a.m, &ds, order.data(), stride, rows, 5, a.m.ctx);
        b.be->ops->gather_batch(b.be, &ds, order.data(), stride, b.m.ctx, rows, b.m.x, b.m.labels);
        ct_model_forward(&b.m, rows, 1, 5, b.m.ctx);
        ct_model_loss(&b.m, rows, 1);
        ct_model_backward(&b.m, rows, 5, b.m.ctx);

        const std::vector<float> xa = down(a.m, a.m.x, rows * elems), xb = down(b.m, b.m.x, rows * elems);
        expect_same_bits(xa, xb, "x");
        EXPECT_TRUE(std::isnan(xa[4 * elems])) << "the row of the index outside the dataset";
        EXPECT_EQ(xa[elems], ds.scale * (type == CT_ELEM_U8 ? (float)bytes[(size_t)order[stride + 1] * elems]
                                                            : floats[(size_t)order[stride + 1] * elems]))
            << "row 1 is sample order[stride + 1]: batch 1, not batch 0";
        const std::vector<int32_t> la = down(a.m, a.m.labels, rows), lb = down(b.m, b.m.labels, rows);
        EXPECT_EQ(la, lb);
        EXPECT_EQ(la[4], -1);
        EXPECT_EQ(la[0], (int32_t)labels[(size_t)order[stride]]);
        expect_same_bits(down(a.m, a.m.grads, a.m.n_params), down(b.m, b.m.grads, b.m.n_params), "grads");
        expect_same_bits(down(a.m, a.m.row_loss, rows), down(b.m, b.m.row_loss, rows), "row_loss");
    }
}

TEST(DenseChain, DescriptionNamesTheModelsOwnBuffers) {
    ct_model_spec spec = dense_spec({{12, CT_ACT_RELU}, {8, CT_ACT_TANH}, {4, CT_ACT_SOFTMAX}}, 6, CT_LOSS_XENT);
    Net n;
    ct_error err;
    ct_error_clear(&err);
    n.be = ct_backend_cpu_create(1, &err);
    ASSERT_EQ(ct_model_build(&n.m, &spec, n.be, 5, 1, &err), 0) << err.msg;
    const ct_dense_chain &c = n.m.chain;
    ASSERT_EQ(c.n_layers, 3);
    const int dims[] = {6, 12, 8, 4};
    for (int i = 0; i <= 3; ++i) EXPECT_EQ(c.dim[i], dims[i]) << i;
    EXPECT_EQ(c.act[0], CT_ACT_RELU);
    EXPECT_EQ(c.act[1], CT_ACT_TANH);
    EXPECT_EQ(c.act[2], CT_ACT_LINEAR) << "a softmax output under cross-entropy is fused into the loss";
    EXPECT_EQ(c.mse, 0);
    for (int i = 0; i < 3; ++i) {
        const ct_layer &l = n.m.layers[i];
        EXPECT_EQ(c.w[i], n.m.params + l.w_off);
        EXPECT_EQ(c.bias[i], n.m.params + l.b_off);
        EXPECT_EQ(c.dw[i], n.m.grads + l.w_off);
        EXPECT_EQ(c.dbias[i], n.m.grads + l.b_off);
        EXPECT_EQ(c.y[i], l.y);
        EXPECT_EQ(c.dy[i], l.dy);
    }
    EXPECT_EQ(c.x, n.m.x);
    EXPECT_EQ(c.labels, n.m.labels);
}

TEST(DenseChain, ModelsThatAreNoChainKeepTheOpsOneByOne) {
    ct_error err;
    ct_error_clear(&err);
    ct_backend *be = ct_backend_cpu_create(1, &err);
    ASSERT_NE(be, nullptr);
    ct_model_spec with_dropout = dense_spec({{8, CT_ACT_RELU}, {3, CT_ACT_SOFTMAX}}, 5, CT_LOSS_XENT);
    // dense, dropout, dense
    with_dropout.layers[2] = with_dropout.layers[1];
    with_dropout.layers[1] = ct_layer_spec{};
    with_dropout.layers[1].kind = CT_LAYER_DROPOUT;
    with_dropout.layers[1].rate = 0.5f;
    with_dropout.n_layers = 3;
    ct_model_spec_name_layers(&with_dropout);
    std::vector<std::pair<int, ct_activation>> nine(CT_DENSE_CHAIN_MAX + 1, {4, CT_ACT_RELU});
    nine.back().second = CT_ACT_SOFTMAX;
    ct_model_spec too_long = dense_spec(nine, 5, CT_LOSS_XENT);
    ct_model_spec cnn;
    ASSERT_EQ(ct_model_spec_preset("cnn", &cnn), 0);
    for (const ct_model_spec *s : {&with_dropout, &too_long, &cnn}) {
        ct_model m;
        ASSERT_EQ(ct_model_build(&m, s, be, 4, 1, &err), 0) << err.msg;
        EXPECT_EQ(m.chain_plan, nullptr) << s->name << " " << s->n_layers << " layers";
        ct_model_free(&m);
    }
    ct_backend_destroy(be);
}

}  // namespace
