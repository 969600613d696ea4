// Whole-model backward against central finite differences: every parameter
// of small models with every activation, dropout and both losses.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "support/fixtures.h"

namespace {

using Net = ct_test::OwnedModel;

ct_model_spec make_spec(ct_loss_kind loss, ct_activation out_act) {
    ct_model_spec s{};
    snprintf(s.name, sizeof s.name, "gradcheck");
    s.input_dim = 5;
    auto dense = [&](int units, ct_activation a) {
        ct_layer_spec &l = s.layers[s.n_layers++];
        l.kind = CT_LAYER_DENSE;
        l.units = units;
        l.act = a;
    };
    dense(7, CT_ACT_TANH);
    s.layers[s.n_layers].kind = CT_LAYER_DROPOUT;
    s.layers[s.n_layers++].rate = 0.3f;
    dense(6, CT_ACT_SIGMOID);
    dense(5, CT_ACT_RELU);
    dense(3, out_act);
    s.loss = loss;
    s.optim = ct_optim_defaults(CT_OPT_ADAM);
    s.batch_size = 3;
    ct_model_spec_name_layers(&s);
    return s;
}

// Mean loss of the batch in m->x / m->labels with the current parameters.
double mean_loss(ct_model &m, int rows, uint64_t seed) {
    ct_model_forward(&m, rows, 1, seed, m.ctx);
    ct_model_loss(&m, rows, 0);
    std::vector<float> loss(rows);
    m.be->ops->download(m.be, loss.data(), m.row_loss, rows * sizeof(float));
    double s = 0;
    for (float v : loss) s += v;
    return s / rows;
}

void check_model(ct_loss_kind loss, ct_activation out_act) {
    Net net;
    ct_error err;
    net.be = ct_backend_cpu_create(1, &err);
    ASSERT_NE(net.be, nullptr);
    ct_model_spec spec = make_spec(loss, out_act);
    ASSERT_EQ(ct_model_build(&net.m, &spec, net.be, 4, 11, &err), 0) << err.msg;
    ct_model &m = net.m;
    const int rows = 3;
    const uint64_t seed = 5, step = 9;
    std::mt19937 rng(3);
    std::uniform_real_distribution<float> u(-1.0f, 1.0f);
    std::vector<float> x(rows * 5);
    for (float &v : x) v = u(rng);
    std::vector<int32_t> labels = {2, 0, 1};
    net.be->ops->upload(net.be, m.x, x.data(), x.size() * sizeof(float));
    net.be->ops->upload(net.be, m.labels, labels.data(), labels.size() * sizeof(int32_t));
    const ct_step_ctx ctx = {step, 1, 0, 0, 1};  // dropout's mask depends on the step
    net.be->ops->upload(net.be, m.ctx, &ctx, sizeof ctx);

    // Keep every ReLU pre-activation at least ~0.5 from its kink, so no
    // finite-difference step crosses it: small weights (|W h| <= 0.45 since
    // h is a sigmoid output) and biases of +1 (live units) or -1 (dead ones).
    std::vector<float> w(m.n_params);
    ct_model_get_params(&m, w.data());
    const ct_layer &relu = m.layers[3];
    for (int i = 0; i < relu.out_dim * relu.in_dim; ++i) w[relu.w_off + i] *= 0.1f;
    for (int i = 0; i < relu.out_dim; ++i) w[relu.b_off + i] = i % 2 ? -1.0f : 1.0f;
    ct_model_set_params(&m, w.data());

    ct_model_forward(&m, rows, 1, seed, m.ctx);
    ct_model_loss(&m, rows, 1);
    ct_model_backward(&m, rows, seed, m.ctx);
    std::vector<float> g(m.n_params);
    net.be->ops->download(net.be, g.data(), m.grads, g.size() * sizeof(float));

    const float h = 1e-2f;
    int checked = 0;
    for (size_t i = 0; i < m.n_params; ++i) {
        float keep = w[i];
        w[i] = keep + h;
        ct_model_set_params(&m, w.data());
        double lp = mean_loss(m, rows, seed);
        w[i] = keep - h;
        ct_model_set_params(&m, w.data());
        double lm = mean_loss(m, rows, seed);
        w[i] = keep;
        double fd = (lp - lm) / (2.0 * h);
        EXPECT_NEAR(g[i], fd, 2e-3 + 2e-2 * std::fabs(fd)) << "parameter " << i;
        ++checked;
    }
    ct_model_set_params(&m, w.data());
    EXPECT_EQ(checked, (int)m.n_params);
    // The gradient is not trivially zero: the check above means something.
    double norm = 0;
    for (float v : g) norm += (double)v * v;
    EXPECT_GT(norm, 1e-6);
}

TEST(ModelGradcheck, SoftmaxCrossEntropy) { check_model(CT_LOSS_XENT, CT_ACT_SOFTMAX); }
TEST(ModelGradcheck, LogitsCrossEntropy) { check_model(CT_LOSS_XENT, CT_ACT_LINEAR); }
TEST(ModelGradcheck, SoftmaxMse) { check_model(CT_LOSS_MSE, CT_ACT_SOFTMAX); }
TEST(ModelGradcheck, SigmoidMse) { check_model(CT_LOSS_MSE, CT_ACT_SIGMOID); }

TEST(ModelInit, GlorotUniformBoundsAndDeterminism) {
    ct_error err;
    ct_backend *be = ct_backend_cpu_create(1, &err);
    ct_model_spec s;
    ASSERT_EQ(ct_model_spec_preset("mlp", &s), 0);
    ct_model a, b, c;
    ASSERT_EQ(ct_model_build(&a, &s, be, 2, 42, &err), 0);
    ASSERT_EQ(ct_model_build(&b, &s, be, 2, 42, &err), 0);
    ASSERT_EQ(ct_model_build(&c, &s, be, 2, 43, &err), 0);
    std::vector<float> wa(a.n_params), wb(a.n_params), wc(a.n_params);
    ct_model_get_params(&a, wa.data());
    ct_model_get_params(&b, wb.data());
    ct_model_get_params(&c, wc.data());
    EXPECT_EQ(0, memcmp(wa.data(), wb.data(), wa.size() * sizeof(float)));
    EXPECT_NE(0, memcmp(wa.data(), wc.data(), wa.size() * sizeof(float)));
    // First layer: limit sqrt(6 / (784 + 512)); uniform => variance limit^2 / 3.
    const ct_layer &l = a.layers[0];
    double limit = std::sqrt(6.0 / (784 + 512)), sum = 0, sq = 0, mx = 0;
    size_t n = (size_t)l.out_dim * l.in_dim;
    for (size_t i = 0; i < n; ++i) {
        double v = wa[l.w_off + i];
        sum += v;
        sq += v * v;
        mx = std::max(mx, std::fabs(v));
    }
    EXPECT_LE(mx, limit);
    EXPECT_GT(mx, 0.99 * limit);
    EXPECT_NEAR(sum / n, 0.0, 0.01 * limit);
    EXPECT_NEAR(sq / n, limit * limit / 3.0, 0.02 * limit * limit / 3.0);
    for (int i = 0; i < l.out_dim; ++i) EXPECT_EQ(wa[l.b_off + i], 0.0f);
    ct_model_free(&a);
    ct_model_free(&b);
    ct_model_free(&c);
    ct_backend_destroy(be);
}

}  // namespace
