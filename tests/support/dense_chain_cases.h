// The dense chain's test cases, shared by the GPU parity test
// (tests/parity/test_parity_dense_chain.cpp: the CUDA op) and the emulated
// kernel test (tests/emu/test_emu_dense_chain.cpp: the same kernel's device
// code run on the CPU): the shapes, fresh random inputs (never zeros), one
// run of the op on any memory, and the comparison with the CPU reference.
//
// Order of the checks, per tensor: the non-finite pattern first (the same
// positions NaN or infinite), then the finite values. Tolerance: |got - cpu|
// <= 1e-4 * (the tensor's largest |cpu|) + 1e-6 |cpu|. Why that and not the
// per-op bounds of test_parity.cpp: the chain's three GEMMs sum in their own
// order, and their differences travel through the later layers, where a
// per-element bound would have to follow every path; a reordered fp32 sum
// moves a value by about 1e-7 of the tensor's scale here, while a wrong
// index, pointer, activation or scale moves it by the scale itself. Row
// correctness must match except on rows whose two largest CPU logits lie
// within that tolerance of each other.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <deque>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "cutrain/cutrain.h"

namespace ct_test {

using ChainVec = std::vector<float>;

struct ChainShape {
    std::vector<int> dim;            // dim[0] inputs, then each layer's outputs
    std::vector<ct_activation> act;  // one per layer
    int mse;
    int rows, max_rows;
    bool nan_input, bad_label;

    std::string describe() const {
        std::string d = "dims";
        for (int v : dim) d += " " + std::to_string(v);
        return d + ", rows " + std::to_string(rows) + (mse ? ", mse" : ", xent") + (nan_input ? ", nan input" : "") +
               (bad_label ? ", bad label" : "");
    }
};

// The awkward shapes every implementation of the op is checked at.
inline std::vector<ChainShape> awkward_chain_shapes() {
    const ct_activation R = CT_ACT_RELU, S = CT_ACT_SIGMOID, T = CT_ACT_TANH, N = CT_ACT_LINEAR;
    return {
        {{784, 10, 10}, {R, N}, 0, 32, 32, false, false},    // seed, a full batch
        {{784, 10, 10}, {R, N}, 0, 17, 32, false, false},    // seed, the epoch's last batch
        {{784, 10, 10}, {R, N}, 0, 1, 32, false, false},     // a batch of one
        {{7, 33, 5}, {T, N}, 0, 3, 5, false, false},
        {{13, 1, 3}, {S, N}, 0, 31, 31, false, false},       // a width of one
        {{100, 37, 29, 11}, {R, T, S}, 1, 33, 40, false, false},
        {{5, 4, 4, 4, 2}, {S, T, R, N}, 0, 9, 9, false, false},
        {{784, 10, 10}, {R, N}, 0, 32, 32, true, false},     // a NaN pixel
        {{33, 9, 10}, {R, N}, 0, 7, 7, false, true},         // a label out of range
        {{33, 9, 10}, {R, S}, 1, 7, 7, false, true},
        {{784, 10, 10}, {R, N}, 0, 256, 256, false, false},  // seed at batch 256: near the plan's limit
    };
}

// One chain's inputs on the host.
struct ChainHost {
    ChainVec x;
    std::vector<int32_t> labels;
    std::vector<ChainVec> w, b;
};

inline ChainHost draw_chain(const ChainShape &s, std::mt19937 &g) {
    std::uniform_real_distribution<float> u(-1.0f, 1.0f);
    ChainHost h;
    h.x.resize((size_t)s.rows * s.dim[0]);
    for (float &v : h.x) v = u(g);
    const int L = (int)s.act.size(), classes = s.dim[L];
    h.labels.resize(s.rows);
    for (int32_t &l : h.labels) l = (int32_t)(g() % classes);
    for (int i = 0; i < L; ++i) {
        // Glorot-sized weights keep every layer's values near 1.
        const float lim = std::sqrt(6.0f / (s.dim[i] + s.dim[i + 1]));
        ChainVec w((size_t)s.dim[i + 1] * s.dim[i]), b(s.dim[i + 1]);
        for (float &v : w) v = lim * u(g);
        for (float &v : b) v = 0.1f * u(g);
        h.w.push_back(w);
        h.b.push_back(b);
    }
    if (s.nan_input) h.x[h.x.size() / 2] = NAN;
    if (s.bad_label) h.labels[s.rows - 1] = classes;
    return h;
}

// Where the op runs: memory it reads and writes, and the call.
class ChainRunner {
  public:
    virtual ~ChainRunner() = default;
    virtual float *put(const ChainVec &v) = 0;
    virtual int32_t *put_labels(const std::vector<int32_t> &v) = 0;
    virtual ChainVec get(const float *p, size_t n) = 0;
    virtual void train(const ct_dense_chain &c, int rows) = 0;
};

// Host memory; the call is a function (the CPU reference, an emulated kernel).
class HostChainRunner : public ChainRunner {
  public:
    explicit HostChainRunner(std::function<void(const ct_dense_chain &, int)> op) : op_(std::move(op)) {}
    float *put(const ChainVec &v) override {
        floats_.push_back(v);
        floats_.back().push_back(0.0f);  // never an empty allocation
        return floats_.back().data();
    }
    int32_t *put_labels(const std::vector<int32_t> &v) override {
        ints_.push_back(v);
        return ints_.back().data();
    }
    ChainVec get(const float *p, size_t n) override { return ChainVec(p, p + n); }
    void train(const ct_dense_chain &c, int rows) override { op_(c, rows); }

  private:
    std::function<void(const ct_dense_chain &, int)> op_;
    std::deque<ChainVec> floats_;  // a deque: pointers into it stay valid
    std::deque<std::vector<int32_t>> ints_;
};

inline ct_dense_chain chain_description(const ChainShape &s) {
    ct_dense_chain c;
    std::memset(&c, 0, sizeof c);
    c.n_layers = (int)s.act.size();
    for (int i = 0; i <= c.n_layers; ++i) c.dim[i] = s.dim[i];
    for (int i = 0; i < c.n_layers; ++i) c.act[i] = s.act[i];
    c.mse = s.mse;
    return c;
}

// Runs the op once and returns every output: y_i, dz_i, dw_i, db_i per
// layer, then row_loss and row_correct. Outputs start as a finite poison,
// so one the op never writes shows up.
inline std::vector<ChainVec> run_chain(const ChainShape &s, const ChainHost &h, ChainRunner &where) {
    const int L = (int)s.act.size();
    ct_dense_chain c = chain_description(s);
    auto out = [&](size_t n) { return where.put(ChainVec(n, -12345.678f)); };
    c.x = where.put(h.x);
    c.labels = where.put_labels(h.labels);
    for (int i = 0; i < L; ++i) {
        c.w[i] = where.put(h.w[i]);
        c.bias[i] = where.put(h.b[i]);
        c.y[i] = out((size_t)s.rows * s.dim[i + 1]);
        c.dy[i] = out((size_t)s.rows * s.dim[i + 1]);
        c.dw[i] = out(h.w[i].size());
        c.dbias[i] = out(h.b[i].size());
    }
    c.row_loss = out(s.rows);
    c.row_correct = out(s.rows);
    where.train(c, s.rows);
    std::memset(&c.dim, 0x55, sizeof c.dim);  // the contract: the description is read when called
    std::vector<ChainVec> r;
    for (int i = 0; i < L; ++i) {
        const size_t n = (size_t)s.rows * s.dim[i + 1];
        r.push_back(where.get(c.y[i], n));
        r.push_back(where.get(c.dy[i], n));
        r.push_back(where.get(c.dw[i], h.w[i].size()));
        r.push_back(where.get(c.dbias[i], h.b[i].size()));
    }
    r.push_back(where.get(c.row_loss, s.rows));
    r.push_back(where.get(c.row_correct, s.rows));
    return r;
}

inline void expect_chain_tensor_close(const ChainVec &got, const ChainVec &cpu, const std::string &what) {
    ASSERT_EQ(got.size(), cpu.size()) << what;
    double scale = 0.0;
    for (float v : cpu)
        if (std::isfinite(v)) scale = std::max(scale, (double)std::fabs(v));
    size_t bad = 0;
    for (size_t i = 0; i < cpu.size(); ++i) {
        const bool fc = std::isfinite(cpu[i]), fg = std::isfinite(got[i]);
        bool ok;
        if (!fc || !fg)
            ok = (std::isnan(cpu[i]) && std::isnan(got[i])) || (!std::isnan(cpu[i]) && cpu[i] == got[i]);
        else
            ok = std::fabs((double)got[i] - cpu[i]) <= 1e-4 * scale + 1e-6 * std::fabs(cpu[i]);
        if (!ok && bad++ < 3) ADD_FAILURE() << what << "[" << i << "] got " << got[i] << " cpu " << cpu[i];
    }
    EXPECT_EQ(bad, 0u) << what << " (scale " << scale << ")";
}

// Every output of run_chain against the CPU reference's.
inline void expect_chain_close(const ChainShape &s, const std::vector<ChainVec> &got,
                               const std::vector<ChainVec> &want) {
    const int L = (int)s.act.size();
    ASSERT_EQ(got.size(), want.size());
    const char *names[] = {"y", "dz", "dw", "dbias"};
    for (int i = 0; i < L; ++i)
        for (int k = 0; k < 4; ++k)
            expect_chain_tensor_close(got[4 * i + k], want[4 * i + k], std::string(names[k]) + std::to_string(i));
    expect_chain_tensor_close(got[4 * L], want[4 * L], "row_loss");
    const ChainVec &logits = want[4 * (L - 1)];
    const int classes = s.dim[L];
    for (int r = 0; r < s.rows; ++r) {
        ChainVec row(logits.begin() + (size_t)r * classes, logits.begin() + (size_t)(r + 1) * classes);
        std::sort(row.begin(), row.end(), [](float a, float b) { return a > b; });
        const bool near_tie = classes > 1 && std::fabs(row[0] - row[1]) <= 1e-4 * std::fabs(row[0]) + 1e-6;
        if (!near_tie) EXPECT_EQ(got[4 * L + 1][r], want[4 * L + 1][r]) << "row_correct[" << r << "]";
    }
}

inline void expect_chain_same_bits(const std::vector<ChainVec> &a, const std::vector<ChainVec> &b) {
    ASSERT_EQ(a.size(), b.size());
    for (size_t t = 0; t < a.size(); ++t) {
        ASSERT_EQ(a[t].size(), b[t].size()) << "tensor " << t;
        EXPECT_EQ(0, std::memcmp(a[t].data(), b[t].data(), a[t].size() * sizeof(float))) << "tensor " << t;
    }
}

}  // namespace ct_test
