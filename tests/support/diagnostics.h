// Helpers of the end-to-end diagnosis tests, shared by the CPU suite
// (tests/unit/test_diagnoses.cpp) and its GPU twin (tests/gpu/): reading
// diagnoses and flags from JSONL, a small model built through the C API on
// either backend, and a custom data source that can be told to misbehave.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "support/fixtures.h"

namespace ct_test {

inline bool has(const std::string &hay, const std::string &needle) { return hay.find(needle) != std::string::npos; }

struct Diag {
    std::string code, severity, layer, message, line;
    double step, epoch;
};

inline std::vector<Diag> diagnoses(const std::string &jsonl) {
    std::vector<Diag> out;
    for (const std::string &l : jsonl_of_type(jsonl, "diagnosis"))
        out.push_back({json_string(l, "code"), json_string(l, "severity"), json_string(l, "layer"),
                       json_string(l, "message"), l, json_number(l, "step"), json_number(l, "epoch")});
    return out;
}

inline std::vector<Diag> with_code(const std::string &jsonl, const std::string &code) {
    std::vector<Diag> out;
    for (const Diag &d : diagnoses(jsonl))
        if (d.code == code) out.push_back(d);
    return out;
}

inline std::string all_codes(const std::string &jsonl) {
    std::string s;
    for (const Diag &d : diagnoses(jsonl)) s += d.code + "@" + std::to_string((long long)d.step) + " ";
    return s;
}

// The flags list of a step record.
inline std::string flags_of(const std::string &step_line) {
    size_t at = step_line.find("\"flags\":[");
    if (at == std::string::npos) return "";
    size_t end = step_line.find(']', at);
    return step_line.substr(at, end - at + 1);
}
inline bool has_flag(const std::string &step_line, const char *flag) {
    return has(flags_of(step_line), std::string("\"") + flag + "\"");
}

// Index of the first line of `type` in the file (-1 when none).
inline long first_index_of(const std::string &jsonl, const std::string &type) {
    auto lines = read_lines(jsonl);
    for (size_t i = 0; i < lines.size(); ++i)
        if (has(lines[i], "\"type\":\"" + type + "\"")) return (long)i;
    return -1;
}

// A float32 IDX file written by hand: 00 00 0D <rank>, big-endian dims,
// big-endian IEEE floats.
inline void write_idx_f32(const std::string &path, const std::vector<uint32_t> &dims, const std::vector<float> &data) {
    std::vector<uint8_t> b = {0, 0, 0x0D, (uint8_t)dims.size()};
    auto be32 = [&b](uint32_t x) {
        for (int s = 24; s >= 0; s -= 8) b.push_back((uint8_t)(x >> s));
    };
    for (uint32_t d : dims) be32(d);
    for (float f : data) {
        uint32_t u;
        memcpy(&u, &f, sizeof u);
        be32(u);
    }
    write_file(path, b);
}

// Every value of every tensor of a safetensors file; fails the test when
// the file cannot be read.
inline std::vector<float> safetensors_values(const std::string &path, std::vector<std::string> *names = nullptr) {
    ct_st_file f;
    ct_error err;
    ct_error_clear(&err);
    std::vector<float> v;
    if (ct_safetensors_read(path.c_str(), &f, &err) != 0) {
        ADD_FAILURE() << "cannot read " << path << ": " << err.msg;
        return v;
    }
    for (int t = 0; t < f.n_tensors; ++t) {
        if (names) names->push_back(f.tensors[t].name);
        v.insert(v.end(), f.tensors[t].data, f.tensors[t].data + f.tensors[t].count);
    }
    ct_safetensors_free(&f);
    return v;
}

// A small model for the C API cases, on the CPU backend (one thread) or the
// GPU: a model file (the suites use 64-16 relu-10 softmax, Adam), read with
// the model-file parser.
struct Net {
    ct_error err;
    ct_backend *be = nullptr;
    ct_model m;
    ct_model_spec s;

    explicit Net(const std::string &model_file, uint64_t seed = 7, ct_device_kind kind = CT_DEVICE_CPU) {
        ct_error_clear(&err);
        memset(&m, 0, sizeof m);
        memset(&s, 0, sizeof s);
        be = kind == CT_DEVICE_CPU ? ct_backend_cpu_create(1, &err) : ct_backend_cuda_create(&err);
        EXPECT_NE(be, nullptr) << err.msg;
        if (!be) return;
        EXPECT_EQ(ct_model_spec_parse_file(model_file.c_str(), &s, &err), 0) << err.msg;
        EXPECT_EQ(ct_model_build(&m, &s, be, 64, seed, &err), 0) << err.msg;
    }
    ~Net() {
        ct_model_free(&m);
        if (be) ct_backend_destroy(be);
    }
    std::vector<float> params() {
        std::vector<float> p(m.n_params);
        ct_model_get_params(&m, p.data());
        return p;
    }
    ct_train_options options(int epochs) {
        ct_train_options o = ct_train_defaults(&s);
        o.epochs = epochs;
        o.seed = 7;
        return o;
    }
};

struct Outcome {
    int code;
    ct_run_summary sum;
    std::string jsonl;
    std::string err;
};

// Trains net on a dataset (src == nullptr) or a data source, logging to path.
inline Outcome train_api(Net &net, const ct_dataset *train, const ct_data_source *src, const ct_train_options &opt,
                  const std::string &path) {
    ct_error err;
    ct_error_clear(&err);
    ct_dataset test = synthetic_dataset(50, 8, 10, 2);
    char names[CT_MAX_PARAM_LAYERS][32] = {"dense1", "dense2"};
    ct_log_options lo = {path.c_str(), nullptr, 1, 0, 2, names};
    ct_logger *log = ct_logger_open(&lo, &err);
    EXPECT_NE(log, nullptr) << err.msg;
    Outcome o;
    memset(&o.sum, 0, sizeof o.sum);
    o.code = src ? ct_train_source(&net.m, src, &test, &opt, log, &o.sum, &err)
                 : ct_train(&net.m, train, &test, &opt, log, &o.sum, &err);
    o.err = err.msg;
    EXPECT_EQ(ct_logger_close(log, &err), 0) << err.msg;
    o.jsonl = path;
    ct_dataset_free(&test);
    return o;
}

// A data source over an in-memory synthetic set: rows wrap around it.
// Batches listed in `empty` have zero rows; batch `spike` has its inputs
// multiplied by `factor` (and, with spike_shifts_labels, every label moved
// to the next class).
struct Source {
    ct_dataset ds;
    uint64_t per_epoch;
    std::vector<uint64_t> empty;  // batch indices (within an epoch) that are empty
    bool all_empty = false;
    uint32_t empty_from_epoch = 0;  // every batch of this epoch and later is empty (0: none)
    int64_t nan_batch = -1;         // global batch index with a NaN input
    int64_t nan_from = -1;          // every global batch from this one has a NaN input
    int64_t spike = -1;  // global batch index (0-based over the run)
    float factor = 1.0f;
    bool spike_shifts_labels = false;  // the spike batch's labels are wrong too
    int64_t bad_label_batch = -1;      // global batch index whose row 3 has label bad_label
    int64_t fail_batch = -1;           // global batch index that fails (returns -1)
    int32_t bad_label = 10;
    uint64_t calls = 0;

    explicit Source(uint64_t batches_per_epoch) : ds(synthetic_dataset(320, 8, 10, 1)), per_epoch(batches_per_epoch) {}
    ~Source() { ct_dataset_free(&ds); }

    static int next(void *user, uint32_t epoch, uint64_t batch, int max_rows, float *x, int32_t *labels,
                    ct_error *err) {
        Source *s = static_cast<Source *>(user);
        ++s->calls;
        if ((int64_t)((uint64_t)(epoch - 1) * s->per_epoch + batch) == s->fail_batch)
            return ct_fail(err, CT_EXIT_BAD_INPUT, "loader: the shard of batch %llu is gone",
                           (unsigned long long)batch);
        if (s->all_empty || (s->empty_from_epoch && epoch >= s->empty_from_epoch) ||
            std::find(s->empty.begin(), s->empty.end(), batch) != s->empty.end())
            return 0;
        uint64_t global = (uint64_t)(epoch - 1) * s->per_epoch + batch;
        const uint8_t *img = static_cast<const uint8_t *>(s->ds.images);
        for (int r = 0; r < max_rows; ++r) {
            size_t i = (size_t)((global * (uint64_t)max_rows + (uint64_t)r) % s->ds.count);
            float scale = (int64_t)global == s->spike ? s->factor : 1.0f;
            for (int j = 0; j < 64; ++j) x[(size_t)r * 64 + j] = scale * (float)img[i * 64 + j] / 255.0f;
            labels[r] = s->ds.labels[i];
            if ((int64_t)global == s->spike && s->spike_shifts_labels) labels[r] = (labels[r] + 1) % 10;
        }
        if ((int64_t)global == s->nan_batch || (s->nan_from >= 0 && (int64_t)global >= s->nan_from))
            x[5] = NAN;  // one bad input value in row 0
        if ((int64_t)global == s->bad_label_batch) labels[3] = s->bad_label;
        return max_rows;
    }
    ct_data_source source(const char *name) { return ct_data_source{name, this, per_epoch, &Source::next}; }
};

}  // namespace ct_test
