// Test support: temporary directories, small IDX files, synthetic datasets,
// and running the cutrain command.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "cutrain/cutrain.h"

namespace ct_test {

// Sets (or, with value nullptr, unsets) an environment variable for a
// scope, and puts back what was there before on destruction.
class ScopedEnv {
  public:
    ScopedEnv(const char *var, const char *value);
    ~ScopedEnv();
    ScopedEnv(const ScopedEnv &) = delete;
    ScopedEnv &operator=(const ScopedEnv &) = delete;

  private:
    std::string var_, old_;
    bool had_ = false;
};

// A model and the backend it is built on, freed together (either may be
// left unset when a test fails before building it).
struct OwnedModel {
    ct_backend *be = nullptr;
    ct_model m{};
    OwnedModel() = default;
    OwnedModel(const OwnedModel &) = delete;
    OwnedModel &operator=(const OwnedModel &) = delete;
    ~OwnedModel() {
        ct_model_free(&m);
        if (be) ct_backend_destroy(be);
    }
};

// A fresh directory under $TMPDIR, removed (recursively) on destruction.
class TempDir {
  public:
    TempDir();
    ~TempDir();
    TempDir(const TempDir &) = delete;
    TempDir &operator=(const TempDir &) = delete;
    const std::string &path() const { return path_; }
    std::string file(const std::string &name) const { return path_ + "/" + name; }

  private:
    std::string path_;
};

// Writes an IDX file of unsigned bytes with the given dims (big-endian header).
void write_idx_u8(const std::string &path, const std::vector<uint32_t> &dims, const std::vector<uint8_t> &data,
                  bool gzip = false);
std::vector<uint8_t> read_file(const std::string &path);
// A complete single-member gzip stream of raw, as gzip(1) writes it.
std::vector<uint8_t> gzip_bytes(const std::vector<uint8_t> &raw);
void write_file(const std::string &path, const std::vector<uint8_t> &bytes);
void write_text(const std::string &path, const std::string &text);
bool file_exists(const std::string &path);

// A learnable synthetic "MNIST": n items of side x side bytes, `classes`
// labels, each class a distinct bright blob plus noise. Written with the
// standard MNIST file names into dir (train and t10k).
void write_synthetic_mnist(const std::string &dir, int n_train, int n_test, int side = 8, int classes = 10,
                           uint32_t seed = 1);

// The small model the synthetic data is trained with, built by hand (the
// C API path, no model file): 64 -> dense 16 relu -> dense 10 out_act,
// Adam with Keras's defaults, batch 32, layers named.
ct_model_spec synthetic_spec(const char *name, ct_activation out_act, ct_loss_kind loss);

// The same data in memory, for the C API.
ct_dataset synthetic_dataset(int n, int side, int classes, uint32_t seed);

struct RunResult {
    int exit_code;
    std::string out;  // stdout and stderr together
};
// Runs `cutrain <args>` (the built executable), capturing its output.
RunResult run_cutrain(const std::string &args);
// Runs a shell command line with stderr into stdout.
RunResult run_command(const std::string &cmd);

// The real MNIST directory: $CUTRAIN_MNIST_DIR, <repo>/data/mnist, or
// <repo>/../shared/data/mnist; "" when none has the files.
std::string mnist_dir();

// Lines of a text file, and JSONL lines whose "type" is `type`.
std::vector<std::string> read_lines(const std::string &path);
std::vector<std::string> jsonl_of_type(const std::string &path, const std::string &type);
// A JSONL record without its timing fields (seconds, eval_seconds,
// train_seconds, samples_per_s), which no two runs share; and the records of
// one type so stripped.
std::string untimed(const std::string &line);
std::vector<std::string> untimed_of_type(const std::string &path, const std::string &type);
// The number after "key": in a JSON line (NaN when absent or null).
double json_number(const std::string &line, const std::string &key);
// The string after "key": in a JSON line ("" when absent or null). Handles
// the escapes ct_json_string writes for quotes and backslashes.
std::string json_string(const std::string &line, const std::string &key);

}  // namespace ct_test
