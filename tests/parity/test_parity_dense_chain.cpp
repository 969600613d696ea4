// The dense chain as one op: the CUDA kernel (kernels/cuda/dense_chain_cuda.cu,
// offered when CUTRAIN_CUDA_DENSE_CHAIN=on) against the CPU reference
// (kernels/cpu/dense_chain_cpu.c, the ops one by one), from the same random
// weights, inputs and labels (never zeros), at awkward shapes: a batch of
// one, odd widths, a width of one, four layers, both losses, every
// elementwise activation, seed's real size, a NaN planted in the input and
// a label out of range.
//
// Order of the checks, per tensor: the non-finite pattern first (the same
// positions NaN or infinite), then the finite values. Tolerance: |gpu - cpu|
// <= 1e-4 * (the tensor's largest |cpu|) + 1e-6 |cpu|. Why that and not the
// per-op bounds of test_parity.cpp: the chain's three GEMMs sum in their own
// order, and their differences travel through the later layers, where a
// per-element bound would have to follow every path; a reordered fp32 sum
// moves a value by about 1e-7 of the tensor's scale here, while a wrong
// index, pointer, activation or scale moves it by the scale itself. Row
// correctness must match except on rows whose two largest CPU logits lie
// within that tolerance of each other. Also: the same bits from two runs,
// and the plan's refusals. Skipped without a GPU.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "kernels/cpu/cpu_ops.h"
#include "support/fixtures.h"
#include "cuda_fixture.h"

namespace {

using Vec = std::vector<float>;

constexpr const char *kVar = "CUTRAIN_CUDA_DENSE_CHAIN";

struct Shape {
    std::vector<int> dim;                  // dim[0] inputs, then each layer's outputs
    std::vector<ct_activation> act;        // one per layer
    int mse;
    int rows, max_rows;
    bool nan_input, bad_label;
};

// One chain's tensors on the host.
struct HostChain {
    Vec x;
    std::vector<int32_t> labels;
    std::vector<Vec> w, b;
};

void expect_close(const Vec &gpu, const Vec &cpu, const std::string &what) {
    ASSERT_EQ(gpu.size(), cpu.size()) << what;
    double scale = 0.0;
    for (float v : cpu)
        if (std::isfinite(v)) scale = std::max(scale, (double)std::fabs(v));
    size_t bad = 0;
    for (size_t i = 0; i < cpu.size(); ++i) {
        const bool fc = std::isfinite(cpu[i]), fg = std::isfinite(gpu[i]);
        bool ok;
        if (!fc || !fg)
            ok = (std::isnan(cpu[i]) && std::isnan(gpu[i])) || (!std::isnan(cpu[i]) && cpu[i] == gpu[i]);
        else
            ok = std::fabs((double)gpu[i] - cpu[i]) <= 1e-4 * scale + 1e-6 * std::fabs(cpu[i]);
        if (!ok && bad++ < 3) ADD_FAILURE() << what << "[" << i << "] gpu " << gpu[i] << " cpu " << cpu[i];
    }
    EXPECT_EQ(bad, 0u) << what << " (scale " << scale << ")";
}

class DenseChainParity : public CudaFixture {
  protected:
    static HostChain draw(const Shape &s, std::mt19937 &g) {
        std::uniform_real_distribution<float> u(-1.0f, 1.0f);
        HostChain h;
        h.x.resize((size_t)s.rows * s.dim[0]);
        for (float &v : h.x) v = u(g);
        const int L = (int)s.act.size(), classes = s.dim[L];
        h.labels.resize(s.rows);
        for (int32_t &l : h.labels) l = (int32_t)(g() % classes);
        for (int i = 0; i < L; ++i) {
            // Glorot-sized weights keep every layer's values near 1.
            const float lim = std::sqrt(6.0f / (s.dim[i] + s.dim[i + 1]));
            Vec w((size_t)s.dim[i + 1] * s.dim[i]), b(s.dim[i + 1]);
            for (float &v : w) v = lim * u(g);
            for (float &v : b) v = 0.1f * u(g);
            h.w.push_back(w);
            h.b.push_back(b);
        }
        if (s.nan_input) h.x[h.x.size() / 2] = NAN;
        if (s.bad_label) h.labels[s.rows - 1] = classes;
        return h;
    }

    // Runs the chain on the CPU (host vectors) or on the GPU (uploaded copies)
    // and returns every output: y_i, dz_i, dw_i, db_i per layer, then
    // row_loss and row_correct. Outputs start as a finite poison, so one the
    // op never writes shows up.
    std::vector<Vec> run(const Shape &s, const HostChain &h, bool on_gpu, void *plan) {
        const int L = (int)s.act.size();
        ct_dense_chain c;
        std::memset(&c, 0, sizeof c);
        c.n_layers = L;
        for (int i = 0; i <= L; ++i) c.dim[i] = s.dim[i];
        c.mse = s.mse;
        std::vector<Vec> host_out;  // backing store on the CPU
        host_out.reserve(4 * L + 2);
        auto out = [&](size_t n) -> float * {
            Vec v(n + 1, -12345.678f);
            if (on_gpu) return up(v);
            host_out.push_back(v);
            return host_out.back().data();
        };
        std::vector<int32_t> labels = h.labels;
        Vec x = h.x;
        std::vector<Vec> w = h.w, b = h.b;
        c.x = on_gpu ? up(x) : x.data();
        c.labels = on_gpu ? up(labels) : labels.data();
        for (int i = 0; i < L; ++i) {
            c.act[i] = s.act[i];
            c.w[i] = on_gpu ? up(w[i]) : w[i].data();
            c.bias[i] = on_gpu ? up(b[i]) : b[i].data();
            c.y[i] = out((size_t)s.rows * s.dim[i + 1]);
            c.dy[i] = out((size_t)s.rows * s.dim[i + 1]);
            c.dw[i] = out(w[i].size());
            c.dbias[i] = out(b[i].size());
        }
        c.row_loss = out(s.rows);
        c.row_correct = out(s.rows);
        ct_backend *be = on_gpu ? gpu : nullptr;
        if (on_gpu)
            gpu->ops->dense_chain_train(gpu, plan, &c, s.rows);
        else
            cpu_dense_chain_train(be, plan, &c, s.rows);
        std::memset(&c.dim, 0x55, sizeof c.dim);  // the contract: read when called
        auto get = [&](const float *p, size_t n) { return on_gpu ? down(p, n) : Vec(p, p + n); };
        std::vector<Vec> r;
        for (int i = 0; i < L; ++i) {
            const size_t n = (size_t)s.rows * s.dim[i + 1];
            r.push_back(get(c.y[i], n));
            r.push_back(get(c.dy[i], n));
            r.push_back(get(c.dw[i], h.w[i].size()));
            r.push_back(get(c.dbias[i], h.b[i].size()));
        }
        r.push_back(get(c.row_loss, s.rows));
        r.push_back(get(c.row_correct, s.rows));
        return r;
    }

    void *plan_for(const Shape &s, ct_error *err) {
        const int L = (int)s.act.size();
        ct_dense_chain c;
        std::memset(&c, 0, sizeof c);
        c.n_layers = L;
        for (int i = 0; i <= L; ++i) c.dim[i] = s.dim[i];
        for (int i = 0; i < L; ++i) c.act[i] = s.act[i];
        c.mse = s.mse;
        return gpu->ops->dense_chain_plan(gpu, &c, s.max_rows, err);
    }

    void check(const Shape &s, unsigned seed) {
        std::string dims;
        for (int d : s.dim) dims += std::to_string(d) + " ";
        SCOPED_TRACE("dims " + dims + "rows " + std::to_string(s.rows) + (s.mse ? " mse" : " xent") +
                     (s.nan_input ? " nan-input" : "") + (s.bad_label ? " bad-label" : ""));
        std::mt19937 g(seed);
        HostChain h = draw(s, g);
        ct_error err;
        ct_error_clear(&err);
        void *plan = plan_for(s, &err);
        ASSERT_NE(plan, nullptr) << "CUDA declined the chain: " << err.msg;
        std::vector<Vec> want = run(s, h, false, nullptr), got = run(s, h, true, plan);
        const int L = (int)s.act.size();
        const char *names[] = {"y", "dz", "dw", "dbias"};
        for (int i = 0; i < L; ++i)
            for (int k = 0; k < 4; ++k)
                expect_close(got[4 * i + k], want[4 * i + k], std::string(names[k]) + std::to_string(i));
        expect_close(got[4 * L], want[4 * L], "row_loss");
        const Vec &logits = want[4 * (L - 1)];
        const int classes = s.dim[L];
        for (int r = 0; r < s.rows; ++r) {
            Vec row(logits.begin() + (size_t)r * classes, logits.begin() + (size_t)(r + 1) * classes);
            std::sort(row.begin(), row.end(), [](float a, float b) { return a > b; });
            const bool near_tie = classes > 1 && std::fabs(row[0] - row[1]) <= 1e-4 * std::fabs(row[0]) + 1e-6;
            if (!near_tie) EXPECT_EQ(got[4 * L + 1][r], want[4 * L + 1][r]) << "row_correct[" << r << "]";
        }
        // The same bits again.
        std::vector<Vec> again = run(s, h, true, plan);
        for (size_t t = 0; t < got.size(); ++t)
            EXPECT_EQ(0, std::memcmp(got[t].data(), again[t].data(), got[t].size() * sizeof(float))) << "tensor " << t;
        gpu->ops->dense_chain_plan_free(gpu, plan);
    }

};

TEST_F(DenseChainParity, AwkwardAndRealShapesMatchTheCpu) {
    ct_test::ScopedEnv on(kVar, "on");
    const ct_activation R = CT_ACT_RELU, S = CT_ACT_SIGMOID, T = CT_ACT_TANH, N = CT_ACT_LINEAR;
    const Shape shapes[] = {
        {{784, 10, 10}, {R, N}, 0, 32, 32, false, false},  // seed, a full batch
        {{784, 10, 10}, {R, N}, 0, 17, 32, false, false},  // seed, the epoch's last batch
        {{784, 10, 10}, {R, N}, 0, 1, 32, false, false},   // a batch of one
        {{7, 33, 5}, {T, N}, 0, 3, 5, false, false},
        {{13, 1, 3}, {S, N}, 0, 31, 31, false, false},     // a width of one
        {{100, 37, 29, 11}, {R, T, S}, 1, 33, 40, false, false},
        {{5, 4, 4, 4, 2}, {S, T, R, N}, 0, 9, 9, false, false},
        {{784, 10, 10}, {R, N}, 0, 32, 32, true, false},   // a NaN pixel
        {{33, 9, 10}, {R, N}, 0, 7, 7, false, true},       // a label out of range
        {{33, 9, 10}, {R, S}, 1, 7, 7, false, true},
        {{784, 10, 10}, {R, N}, 0, 256, 256, false, false}, // seed at batch 256: near the plan's limit
    };
    unsigned seed = 1;
    for (const Shape &s : shapes) check(s, seed++);
}

TEST_F(DenseChainParity, PlanOffersTheChainOnlyWhenAskedAndWithinItsLimits) {
    const Shape seed_shape = {{784, 10, 10}, {CT_ACT_RELU, CT_ACT_LINEAR}, 0, 32, 32, false, false};
    ct_error err;
    for (const char *off : {(const char *)nullptr, "off", ""}) {
        ct_test::ScopedEnv e(kVar, off);
        ct_error_clear(&err);
        EXPECT_EQ(plan_for(seed_shape, &err), nullptr) << (off ? off : "(unset)");
        EXPECT_EQ(err.code, 0) << "declining is no error: " << err.msg;
    }
    for (const char *bad : {"1", "ON", "yes", "auto"}) {
        ct_test::ScopedEnv e(kVar, bad);
        ct_error_clear(&err);
        EXPECT_EQ(plan_for(seed_shape, &err), nullptr) << bad;
        EXPECT_NE(err.code, 0) << bad;
        EXPECT_NE(std::string(err.msg).find(kVar), std::string::npos) << err.msg;
    }
    ct_test::ScopedEnv on(kVar, "on");
    Shape softmax = seed_shape;
    softmax.act[1] = CT_ACT_SOFTMAX;
    Shape big = seed_shape;  // mlp: far past what one block should take
    big.dim = {784, 512, 512, 10};
    big.act = {CT_ACT_RELU, CT_ACT_RELU, CT_ACT_LINEAR};
    big.max_rows = big.rows = 128;
    for (const Shape *s : {&softmax, &big}) {
        ct_error_clear(&err);
        EXPECT_EQ(plan_for(*s, &err), nullptr);
        EXPECT_EQ(err.code, 0) << err.msg;
    }
}

}  // namespace
