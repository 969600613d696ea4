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
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "cutrain/cutrain.h"
#include "support/host_blocks.h"

namespace ct_test {

using ChainVec = std::vector<float>;

struct ChainShape {
    std::vector<int> dim;            // dim[0] inputs, then each layer's outputs
    std::vector<ct_activation> act;  // one per layer
    int mse;
    int rows, max_rows;
    bool nan_input, bad_label;
    // The batch gathered by the op itself from a resident dataset:
    // 0 no (x and labels are inputs), 1 from uint8 samples, 2 from float32.
    // With a gather, nan_input puts an index outside the dataset in the
    // batch (a NaN row and label -1), and bad_label a label byte past the
    // classes.
    int gather = 0;

    std::string describe() const {
        std::string d = "dims";
        for (int v : dim) d += " " + std::to_string(v);
        return d + ", rows " + std::to_string(rows) + (mse ? ", mse" : ", xent") + (nan_input ? ", nan input" : "") +
               (bad_label ? ", bad label" : "") + (gather == 1 ? ", gathered from bytes" : "") +
               (gather == 2 ? ", gathered from floats" : "");
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
        {{784, 10, 10}, {R, N}, 0, 32, 32, false, false, 1},  // seed's real step: MNIST-like bytes
        {{784, 10, 10}, {R, N}, 0, 1, 32, false, false, 1},   // the batch of one, gathered
        {{13, 9, 4}, {T, N}, 0, 5, 7, true, true, 2},         // floats, an index out of range, a bad label
    };
}

// One chain's inputs on the host.
struct ChainHost {
    ChainVec x;
    std::vector<int32_t> labels;
    std::vector<ChainVec> w, b;
    // With a gather: the dataset, the epoch's order and where the batch is.
    std::vector<uint8_t> images_u8, labels_u8;
    ChainVec images_f32;
    size_t count = 0;
    float scale = 1.0f;
    std::vector<int32_t> order;
    size_t stride = 0;
    ct_step_ctx ctx{};
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
    if (s.gather) {
        // Three batches' worth of samples and an order over them; the op
        // gathers the third batch (ctx.batch 2), not the first.
        h.stride = (size_t)s.max_rows;
        h.count = 3 * h.stride + 5;
        const size_t elems = (size_t)s.dim[0];
        if (s.gather == 1) {
            h.images_u8.resize(h.count * elems);
            for (uint8_t &v : h.images_u8) v = (uint8_t)(g() & 0xff);
            h.scale = 1.0f / 255.0f;
        } else {
            h.images_f32.resize(h.count * elems);
            for (float &v : h.images_f32) v = 2.0f * u(g);
            h.scale = 0.5f;
        }
        h.labels_u8.resize(h.count);
        for (uint8_t &l : h.labels_u8) l = (uint8_t)(g() % classes);
        h.order.resize(3 * h.stride);
        for (size_t i = 0; i < h.order.size(); ++i) h.order[i] = (int32_t)((i * 7 + 3) % h.count);
        h.ctx.batch = 2;
        h.ctx.step = 3;
        h.ctx.epoch = 1;
        int32_t *batch = h.order.data() + 2 * h.stride;
        if (s.nan_input) batch[s.rows / 2] = (int32_t)h.count;  // outside the dataset
        if (s.bad_label) h.labels_u8[(size_t)batch[s.rows - 1]] = (uint8_t)classes;
        return h;
    }
    if (s.nan_input) h.x[h.x.size() / 2] = NAN;
    if (s.bad_label) h.labels[s.rows - 1] = classes;
    return h;
}

// Where the op runs: memory it reads and writes, and the call.
class ChainRunner {
  public:
    virtual ~ChainRunner() = default;
    // A copy of n bytes (n may be 0) where the op can read and write it.
    virtual void *put_bytes(const void *p, size_t n) = 0;
    virtual void get_bytes(void *host, const void *p, size_t n) = 0;
    virtual void train(const ct_dense_chain &c, int rows) = 0;

    template <typename T>
    T *put(const std::vector<T> &v) {
        return (T *)put_bytes(v.data(), v.size() * sizeof(T));
    }
    template <typename T>
    std::vector<T> get(const T *p, size_t n) {
        std::vector<T> v(n);
        get_bytes(v.data(), p, n * sizeof(T));
        return v;
    }
};

// Host memory (HostBlocks: exact-size buffers); the call is a function (the
// CPU reference, an emulated kernel).
class HostChainRunner : public ChainRunner {
  public:
    explicit HostChainRunner(std::function<void(const ct_dense_chain &, int)> op) : op_(std::move(op)) {}
    void *put_bytes(const void *p, size_t n) override { return mem_.put_bytes(p, n); }
    void get_bytes(void *host, const void *p, size_t n) override { HostBlocks::get_bytes(host, p, n); }
    void train(const ct_dense_chain &c, int rows) override { op_(c, rows); }

  private:
    std::function<void(const ct_dense_chain &, int)> op_;
    HostBlocks mem_;
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
// layer, then row_loss and row_correct, and with a gather x and the labels
// (as floats). Outputs start as a finite poison, so one the op never writes
// shows up.
inline std::vector<ChainVec> run_chain(const ChainShape &s, const ChainHost &h, ChainRunner &where) {
    const int L = (int)s.act.size();
    ct_dense_chain c = chain_description(s);
    auto out = [&](size_t n) { return where.put(ChainVec(n, -12345.678f)); };
    if (s.gather) {
        c.x = out((size_t)s.rows * s.dim[0]);
        c.labels = where.put(std::vector<int32_t>(s.rows, 12345));
        ct_device_dataset &ds = c.gather_ds;
        ds.elem_type = s.gather == 1 ? CT_ELEM_U8 : CT_ELEM_F32;
        ds.images = s.gather == 1 ? (const void *)where.put(h.images_u8) : (const void *)where.put(h.images_f32);
        ds.labels = where.put(h.labels_u8);
        ds.count = h.count;
        ds.sample_elems = (size_t)s.dim[0];
        ds.scale = h.scale;
        c.gather_order = where.put(h.order);
        c.gather_stride = h.stride;
        c.gather_ctx = where.put(std::vector<ct_step_ctx>{h.ctx});
    } else {
        c.x = where.put(h.x);
        c.labels = where.put(h.labels);
    }
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
    if (s.gather) {
        r.push_back(where.get(c.x, (size_t)s.rows * s.dim[0]));
        const std::vector<int32_t> labels = where.get(c.labels, s.rows);
        r.emplace_back(labels.begin(), labels.end());
    }
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
    if (s.gather) {  // the gather is one rounding of one product: the same bits
        ASSERT_EQ(got.size(), (size_t)4 * L + 4);
        for (int t : {4 * L + 2, 4 * L + 3}) {
            ASSERT_EQ(got[t].size(), want[t].size());
            EXPECT_EQ(0, std::memcmp(got[t].data(), want[t].data(), got[t].size() * sizeof(float)))
                << (t == 4 * L + 2 ? "gathered x" : "gathered labels");
        }
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
