// The malformed-input corpus: broken files and nonsense flags, each given to
// the cutrain command with every output flag set. For every entry the
// promise of docs/reliability.md must hold: a documented exit status below
// 128, exactly one line "cutrain: error: ..." naming the file or flag, and no
// file created or changed anywhere (no log, no weights, no temporary file).
// The broken files are made here from a small valid synthetic set, so each
// entry says in code what is wrong with its input.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <functional>
#include <map>
#include <utility>

#include "support/fixtures.h"

using namespace ct_test;
namespace fs = std::filesystem;

namespace {

const char *kModel = "input 64\ndense 16 relu\ndense 10 softmax\nbatch_size 32\n";
const int kTrain = 200, kTest = 50;

// The places one case works in: a valid data set, a model file and weights
// for it, and an empty directory for the outputs.
struct Env {
    TempDir tmp;
    std::string data, out, model, weights;
    std::string images() const { return data + "/train-images-idx3-ubyte"; }
    std::string labels() const { return data + "/train-labels-idx1-ubyte"; }
    std::string test_images() const { return data + "/t10k-images-idx3-ubyte"; }
    std::string test_labels() const { return data + "/t10k-labels-idx1-ubyte"; }
};

using Setup = std::function<void(Env &)>;
// Flags that replace the command's defaults ("" as the value: drop the flag;
// a value of "-" : a flag without a value).
using Flags = std::vector<std::pair<std::string, std::string>>;

struct Case {
    std::string name;
    std::string command;  // train, eval or bench
    Setup setup;
    Flags flags;
    int status;
    // What the message must name, with {data}, {out}, {model}, {weights}
    // replaced by the case's paths.
    std::string names;
    // For cases made with permission bits, which root's access ignores: the
    // path that must now refuse this process, and how (R_OK or W_OK).
    std::string locked = "";
    int locked_mode = 0;
};

// gtest prints a case by its name, not its bytes.
void PrintTo(const Case &c, std::ostream *os) { *os << c.name; }

std::string expand(std::string s, const Env &e) {
    const std::pair<const char *, const std::string *> vars[] = {
        {"{data}", &e.data}, {"{out}", &e.out}, {"{model}", &e.model}, {"{weights}", &e.weights}};
    for (const auto &v : vars)
        for (size_t at; (at = s.find(v.first)) != std::string::npos;) s.replace(at, strlen(v.first), *v.second);
    return s;
}

Flags defaults(const std::string &command) {
    if (command == "train")
        return {{"--model", "{model}"},
                {"--data", "{data}"},
                {"--max-steps", "2"},
                {"--log-jsonl", "{out}/run.jsonl"},
                {"--log-csv", "{out}/run.csv"},
                {"--log-tensorboard", "{out}/tb/run"},
                {"--save", "{out}/w.safetensors"}};
    if (command == "eval")
        return {{"--model", "{model}"}, {"--data", "{data}"}, {"--weights", "{weights}"}, {"--log-jsonl", "{out}/eval.jsonl"}};
    return {{"--model", "{model}"},  {"--data", "{data}"},       {"--steps", "2"},
            {"--warmup", "0"},       {"--repeats", "1"},         {"--json", "{out}/bench.json"},
            {"--save-init", "{out}/init.safetensors"}};
}

std::string command_line(const Case &c, const Env &e) {
    Flags flags = defaults(c.command);
    for (const auto &f : c.flags) {
        auto at = std::find_if(flags.begin(), flags.end(), [&](const auto &d) { return d.first == f.first; });
        if (at != flags.end()) at->second = f.second;
        else flags.push_back(f);
    }
    // Not --quiet: the one line must hold for what a user types.
    std::string line = c.command + " --device cpu";
    for (const auto &f : flags) {
        if (f.second.empty()) continue;
        line += " '" + expand(f.first, e) + "'";
        if (f.second != "-") line += " '" + expand(f.second, e) + "'";
    }
    return line;
}

// Every path under dir with its size and mode: what a run must not change.
std::map<std::string, std::pair<uintmax_t, unsigned>> snapshot(const std::string &dir) {
    std::map<std::string, std::pair<uintmax_t, unsigned>> files;
    std::error_code ec;
    for (auto it = fs::recursive_directory_iterator(dir, fs::directory_options::skip_permission_denied, ec);
         it != fs::recursive_directory_iterator(); it.increment(ec)) {
        if (ec) break;
        struct stat st;
        if (lstat(it->path().c_str(), &st) != 0) continue;
        files[it->path().string()] = {S_ISREG(st.st_mode) ? (uintmax_t)st.st_size : 0, (unsigned)st.st_mode};
    }
    return files;
}

// ---- making broken files ------------------------------------------------

std::vector<uint8_t> bytes_of(const std::string &path) { return read_file(path); }

// A file of the valid set, changed by f and written back.
Setup edit(std::string (Env::*which)() const, std::function<void(std::vector<uint8_t> &)> f) {
    return [which, f](Env &e) {
        std::string path = (e.*which)();
        auto b = bytes_of(path);
        f(b);
        write_file(path, b);
    };
}

Setup cut_at(std::string (Env::*which)() const, size_t n) {
    return edit(which, [n](std::vector<uint8_t> &b) { b.resize(std::min(n, b.size())); });
}

Setup flip(std::string (Env::*which)() const, size_t at, uint8_t mask) {
    return edit(which, [at, mask](std::vector<uint8_t> &b) { b.at(at) ^= mask; });
}

void put_be32(std::vector<uint8_t> &b, size_t at, uint32_t v) {
    for (int i = 0; i < 4; ++i) b.at(at + i) = (uint8_t)(v >> (24 - 8 * i));
}

// Replaces the train images with a header of the given type and dims and a
// few data bytes: the file holds far less than the header declares.
Setup declare(uint8_t type, std::vector<uint32_t> dims, bool gzip) {
    return [=](Env &e) {
        std::vector<uint8_t> b = {0, 0, type, (uint8_t)dims.size()};
        for (uint32_t d : dims) {
            b.resize(b.size() + 4);
            put_be32(b, b.size() - 4, d);
        }
        b.insert(b.end(), 64, 7);
        if (gzip) {
            unlink(e.images().c_str());
            write_file(e.images() + ".gz", gzip_bytes(b));
        } else {
            write_file(e.images(), b);
        }
    };
}

// Replaces a file of the set by its gzip stream (name + ".gz"), changed by f.
Setup gz(std::string (Env::*which)() const, std::function<void(std::vector<uint8_t> &)> f) {
    return [which, f](Env &e) {
        std::string path = (e.*which)();
        auto z = gzip_bytes(bytes_of(path));
        f(z);
        unlink(path.c_str());
        write_file(path + ".gz", z);
    };
}

Setup remove_file(std::string (Env::*which)() const) {
    return [which](Env &e) { unlink((e.*which)().c_str()); };
}

Setup dir_instead(std::string (Env::*which)() const) {
    return [which](Env &e) {
        unlink((e.*which)().c_str());
        mkdir((e.*which)().c_str(), 0755);
    };
}

Setup chmod_000(std::string (Env::*which)() const) {
    return [which](Env &e) { chmod((e.*which)().c_str(), 0); };
}

Setup text_model(const std::string &text) {
    return [text](Env &e) { write_text(e.model, text); };
}

Setup rewrite_idx(std::string (Env::*which)() const, std::vector<uint32_t> dims, size_t n_bytes, uint8_t value = 1) {
    return [=](Env &e) { write_idx_u8((e.*which)(), dims, std::vector<uint8_t>(n_bytes, value)); };
}

Setup nothing() {
    return [](Env &) {};
}

// ---- the corpus -----------------------------------------------------------

// Weights that fit kModel, with w1[7] as given (defined below).
void write_weights(const std::string &path, float w1_7 = 0.01f);

std::vector<Case> file_cases() {
    using E = Env;
    const size_t img_bytes = 16 + (size_t)kTrain * 64, lab_bytes = 8 + (size_t)kTrain;
    std::vector<Case> c = {
        // IDX headers cut inside and after each field (images: magic, type,
        // rank, 3 dims; labels: 1 dim), then inside the data.
        {"images_empty", "train", cut_at(&E::images, 0), {}, 3, "{data}/train-images-idx3-ubyte: empty file"},
        {"images_cut_in_magic", "train", cut_at(&E::images, 2), {}, 3, "{data}/train-images-idx3-ubyte: truncated header"},
        {"images_cut_before_rank", "train", cut_at(&E::images, 3), {}, 3, "{data}/train-images-idx3-ubyte: truncated header"},
        {"images_cut_after_rank", "train", cut_at(&E::images, 4), {}, 3, "{data}/train-images-idx3-ubyte: truncated header"},
        {"images_cut_in_dim0", "train", cut_at(&E::images, 6), {}, 3, "{data}/train-images-idx3-ubyte: truncated header"},
        {"images_cut_after_dim0", "train", cut_at(&E::images, 8), {}, 3, "{data}/train-images-idx3-ubyte: truncated header"},
        {"images_cut_in_dim1", "train", cut_at(&E::images, 11), {}, 3, "{data}/train-images-idx3-ubyte: truncated header"},
        {"images_cut_after_dim1", "train", cut_at(&E::images, 12), {}, 3, "{data}/train-images-idx3-ubyte: truncated header"},
        {"images_cut_in_dim2", "train", cut_at(&E::images, 15), {}, 3, "{data}/train-images-idx3-ubyte: truncated header"},
        {"images_header_only", "train", cut_at(&E::images, 16), {}, 3, "{data}/train-images-idx3-ubyte: truncated"},
        {"images_cut_in_data", "train", cut_at(&E::images, img_bytes - 1), {}, 3, "{data}/train-images-idx3-ubyte: truncated"},
        {"images_trailing_bytes", "train", edit(&E::images, [](auto &b) { b.insert(b.end(), 3, 0); }), {}, 3,
         "{data}/train-images-idx3-ubyte: 3 trailing bytes"},
        {"labels_empty", "train", cut_at(&E::labels, 0), {}, 3, "{data}/train-labels-idx1-ubyte: empty file"},
        {"labels_cut_in_dim0", "train", cut_at(&E::labels, 6), {}, 3, "{data}/train-labels-idx1-ubyte: truncated header"},
        {"labels_header_only", "train", cut_at(&E::labels, 8), {}, 3, "{data}/train-labels-idx1-ubyte: truncated"},
        {"labels_cut_in_data", "train", cut_at(&E::labels, lab_bytes - 5), {}, 3, "{data}/train-labels-idx1-ubyte: truncated"},
        {"test_images_cut_in_data", "train", cut_at(&E::test_images, 100), {}, 3, "{data}/t10k-images-idx3-ubyte: truncated"},
        {"test_labels_cut_in_header", "train", cut_at(&E::test_labels, 5), {}, 3, "{data}/t10k-labels-idx1-ubyte: truncated header"},

        // Single flipped bits in each header field, and in a label.
        {"images_magic_bit", "train", flip(&E::images, 1, 0x10), {}, 3, "{data}/train-images-idx3-ubyte: bad magic"},
        {"images_type_bit", "train", flip(&E::images, 2, 0x01), {}, 3, "{data}/train-images-idx3-ubyte: unsupported element type 0x09"},
        {"images_rank_bit", "train", flip(&E::images, 3, 0x04), {}, 3, "{data}/train-images-idx3-ubyte: bad rank 7"},
        {"images_rank_zero", "train", flip(&E::images, 3, 0x03), {}, 3, "{data}/train-images-idx3-ubyte: bad rank 0"},
        {"images_dim0_high_bit", "train", flip(&E::images, 4, 0x80), {}, 3, "{data}/train-images-idx3-ubyte: truncated"},
        {"images_dim1_low_bit", "train", flip(&E::images, 11, 0x01), {}, 3,
         "{data}/train-images-idx3-ubyte: truncated: header declares 14400 bytes of data, file holds 12800"},
        {"images_dim2_zero", "train", edit(&E::images, [](auto &b) { put_be32(b, 12, 0); }), {}, 3,
         "{data}/train-images-idx3-ubyte: dimension 2 is 0"},
        {"labels_magic_bit", "train", flip(&E::labels, 0, 0x01), {}, 3, "{data}/train-labels-idx1-ubyte: bad magic"},
        {"labels_type_float", "train", flip(&E::labels, 2, 0x05), {}, 3,
         "{data}/train-labels-idx1-ubyte: truncated: header declares 800 bytes of data, file holds 200"},
        {"labels_rank_bit", "train", flip(&E::labels, 3, 0x02), {}, 3, "{data}/train-labels-idx1-ubyte: truncated: header declares"},
        {"label_value_bit", "train", flip(&E::labels, 8 + 17, 0x80), {}, 3,
         "{data}/train-labels-idx1-ubyte: label"},

        // Dimension products that overflow 32 bits (would be 4 GiB and more:
        // refused by size, nothing allocated) and 64 bits (refused as overflow).
        {"dims_overflow_32_bits", "train", declare(0x08, {65536, 65536, 1}, false), {}, 3,
         "{data}/train-images-idx3-ubyte: truncated: header declares 4294967296 bytes"},
        {"dims_overflow_32_bits_gzip", "train", declare(0x08, {65536, 256, 256}, true), {}, 3,
         "{data}/train-images-idx3-ubyte.gz: truncated: header declares 4294967296 bytes"},
        {"dims_overflow_64_bits", "train", declare(0x08, {0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF}, false), {}, 3,
         "{data}/train-images-idx3-ubyte: dims 4294967295 x 4294967295 x 4294967295 of unsigned byte overflow"},
        {"dims_overflow_64_bits_rank4", "train", declare(0x08, {65536, 65536, 65536, 65536}, false), {}, 3,
         "{data}/train-images-idx3-ubyte: dims 65536 x 65536 x 65536 x 65536 of unsigned byte overflow"},
        {"dims_overflow_64_bits_float_bytes", "train", declare(0x0D, {0x40000000, 0x40000000, 4}, false), {}, 3,
         "{data}/train-images-idx3-ubyte: dims 1073741824 x 1073741824 x 4 of float32 overflow"},
        {"dims_overflow_64_bits_gzip", "train", declare(0x08, {0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF}, true), {}, 3,
         "{data}/train-images-idx3-ubyte.gz: dims 4294967295 x 4294967295 x 4294967295 of unsigned byte overflow"},

        // Labels that do not match the images.
        {"labels_fewer_than_images", "train", rewrite_idx(&E::labels, {kTrain - 1}, kTrain - 1), {}, 3,
         "{data}/train-images-idx3-ubyte: 200 images but {data}/train-labels-idx1-ubyte holds 199 labels"},
        {"labels_more_than_images", "train", rewrite_idx(&E::test_labels, {kTest + 1}, kTest + 1), {}, 3,
         "{data}/t10k-images-idx3-ubyte: 50 images but {data}/t10k-labels-idx1-ubyte holds 51 labels"},
        {"labels_rank_2", "train", rewrite_idx(&E::labels, {kTrain, 1}, kTrain), {}, 3,
         "{data}/train-labels-idx1-ubyte: labels have rank 2"},
        {"labels_beyond_classes", "train", rewrite_idx(&E::test_labels, {kTest}, kTest, 10), {}, 3,
         "{data}/t10k-labels-idx1-ubyte: label 10 at index 0 is outside the model's 10 classes"},
        {"images_rank_1", "train", rewrite_idx(&E::images, {kTrain}, kTrain), {}, 3,
         "{data}/train-images-idx3-ubyte: images have rank 1"},
        {"images_of_another_size", "train", rewrite_idx(&E::images, {kTrain, 7, 7}, (size_t)kTrain * 49), {}, 3,
         "{data}/train-images-idx3-ubyte: items have 49 values but the model's input is 64"},
        // As many pixels, another shape: a convolution would read scrambled neighbours.
        {"images_of_another_shape_for_a_conv_model", "train",
         [](Env &e) {
             write_text(e.model, "input 1 8 8\nconv2d 4 3 relu\nflatten\ndense 10 softmax\nbatch_size 32\n");
             rewrite_idx(&E::images, {kTrain, 4, 16}, (size_t)kTrain * 64)(e);
         },
         {}, 3, "{data}/train-images-idx3-ubyte: images are 4 x 16 with one channel but the model's input is 8 x 8 with 1"},
        {"test_images_of_another_shape_for_a_conv_model", "eval",
         [](Env &e) {
             write_text(e.model, "input 1 8 8\nconv2d 4 3 relu\nflatten\ndense 10 softmax\nbatch_size 32\n");
             rewrite_idx(&E::test_images, {kTest, 16, 4}, (size_t)kTest * 64)(e);
         },
         {}, 3, "{data}/t10k-images-idx3-ubyte: images are 16 x 4 with one channel but the model's input is 8 x 8 with 1"},
        {"images_of_one_channel_for_a_two_channel_model", "train",
         [](Env &e) { write_text(e.model, "input 4 4 4\nconv2d 4 3 relu\nflatten\ndense 10 softmax\nbatch_size 32\n"); },
         {}, 3, "{data}/train-images-idx3-ubyte: images are 8 x 8 with one channel but the model's input is 4 x 4 with 4"},
        {"train_set_empty", "train",
         [](Env &e) {
             write_idx_u8(e.images(), {0, 8, 8}, {});
             write_idx_u8(e.labels(), {0}, {});
         },
         {}, 3, "{data}/train-images-idx3-ubyte: the train set has 0 items"},

        // gzip streams cut or corrupted.
        {"gzip_cut_in_half", "train", gz(&E::images, [](auto &z) { z.resize(z.size() / 2); }), {}, 3,
         "{data}/train-images-idx3-ubyte.gz: truncated gzip stream"},
        {"gzip_cut_in_trailer", "train", gz(&E::images, [](auto &z) { z.resize(z.size() - 3); }), {}, 3,
         "{data}/train-images-idx3-ubyte.gz: truncated gzip stream"},
        {"gzip_cut_in_header", "train", gz(&E::labels, [](auto &z) { z.resize(5); }), {}, 3,
         "{data}/train-labels-idx1-ubyte.gz: truncated gzip stream"},
        {"gzip_crc_bit", "train", gz(&E::images, [](auto &z) { z[z.size() - 6] ^= 0x01; }), {}, 3,
         "{data}/train-images-idx3-ubyte.gz: corrupt gzip stream"},
        {"gzip_length_bit", "train", gz(&E::images, [](auto &z) { z[z.size() - 2] ^= 0x01; }), {}, 3,
         "{data}/train-images-idx3-ubyte.gz: corrupt gzip stream"},
        {"gzip_deflate_bits", "train", gz(&E::images, [](auto &z) { z[z.size() / 2] ^= 0xFF; }), {}, 3,
         "{data}/train-images-idx3-ubyte.gz: corrupt gzip stream"},
        {"gzip_trailing_garbage", "train", gz(&E::test_images, [](auto &z) { z.insert(z.end(), {'j', 'u', 'n', 'k'}); }),
         {}, 3, "{data}/t10k-images-idx3-ubyte.gz: corrupt gzip stream: bytes after its end"},
        {"gzip_of_nothing", "train",
         [](Env &e) {
             unlink(e.labels().c_str());
             write_file(e.labels() + ".gz", gzip_bytes({}));
         },
         {}, 3, "{data}/train-labels-idx1-ubyte.gz: empty file"},

        // Missing and unreadable inputs.
        {"data_dir_missing", "train", nothing(), {{"--data", "{out}/nowhere"}}, 3, "{out}/nowhere: cannot open MNIST directory"},
        {"data_dir_is_a_file", "train", nothing(), {{"--data", "{model}"}}, 3, "{model}: not a directory"},
        {"images_missing", "train", remove_file(&E::images), {}, 3, "{data}: no MNIST train images"},
        {"test_labels_missing", "train", remove_file(&E::test_labels), {}, 3, "{data}: no MNIST test labels"},
        {"images_is_a_directory", "train", dir_instead(&E::images), {}, 3,
         "{data}/train-images-idx3-ubyte: expected the MNIST train images as a file, found a directory"},
        {"images_unreadable", "train", chmod_000(&E::images), {}, 3, "{data}/train-images-idx3-ubyte: cannot open",
         "{data}/train-images-idx3-ubyte", R_OK},
        {"model_missing", "train", nothing(), {{"--model", "{out}/none.txt"}}, 3, "{out}/none.txt: no such model preset or file (presets: seed, mlp, cnn)"},
        {"model_is_a_directory", "train", nothing(), {{"--model", "{data}"}}, 3, "{data}: is not a regular model file"},
        {"model_unreadable", "train", [](Env &e) { chmod(e.model.c_str(), 0); }, {}, 3, "{model}: cannot open", "{model}",
         R_OK},
        {"model_binary", "train", text_model(std::string("input 64") + '\0' + "\x01\x02\ndense 10 softmax\n"), {}, 3,
         "{model}:1: binary data"},
        {"model_unknown_directive", "train", text_model("input 64\nlstm 10\n"), {}, 3, "{model}:2: unknown directive 'lstm'"},
        {"model_too_large", "train", text_model(std::string(2 << 20, '#')), {}, 3, "{model}: 2097152 bytes is too large"},
        {"model_negative_units", "train", text_model("input 64\ndense -3 relu\ndense 10 softmax\n"), {}, 3,
         "{model}:2: dense units: expected a whole number"},
        {"model_dropout_rate_1", "train", text_model("input 64\ndropout 1\ndense 10 softmax\n"), {}, 3,
         "{model}:2: dropout: expected 'dropout RATE' with RATE in [0, 1)"},
        {"model_lr_nan", "train", text_model("input 64\ndense 10 softmax\noptimizer adam lr=nan\n"), {}, 3,
         "{model}:3: optimizer: lr: expected a number"},
        {"model_input_overflow", "train", text_model("input 1048576 1048576 1048576\ndense 10 softmax\n"), {}, 3,
         "{model}:1: input: 1048576 x 1048576 x 1048576 values per item is too large"},
        {"model_duplicate_layer_names", "train", text_model("input 64\ndense 16 relu name=h\ndense 10 softmax name=h\n"),
         {}, 3, "{model}: layers 1 and 2 are both named 'h'"},
        {"model_layer_name_not_plain", "train", text_model("input 64\ndense 16 relu name=a\xff\ndense 10 softmax\n"), {}, 3,
         "{model}:2: name: expected 1 to 31 letters"},
        {"model_batch_size_zero", "train", text_model("input 64\ndense 10 softmax\nbatch_size 0\n"), {}, 3,
         "{model}:3: batch_size: expected a whole number"},
        {"weights_missing", "eval", nothing(), {{"--weights", "{out}/none.safetensors"}}, 3,
         "{out}/none.safetensors: cannot open"},
        {"weights_is_a_directory", "eval", nothing(), {{"--weights", "{data}"}}, 3, "{data}: not a regular file"},
        {"weights_unreadable", "eval", [](Env &e) { chmod(e.weights.c_str(), 0); }, {}, 3, "{weights}: cannot open",
         "{weights}", R_OK},
        {"weights_truncated", "eval",
         [](Env &e) {
             auto b = bytes_of(e.weights);
             b.resize(b.size() - 10);
             write_file(e.weights, b);
         },
         {}, 3, "{weights}: tensor"},
        {"weights_header_length_huge", "eval",
         [](Env &e) {
             auto b = bytes_of(e.weights);
             b[5] = 0x10;  // the length field now says 2^44 bytes and more
             write_file(e.weights, b);
         },
         {}, 3, "{weights}: header length"},
        {"weights_header_cut", "eval", [](Env &e) { write_file(e.weights, {8, 0, 0}); }, {}, 3,
         "{weights}: file is 3 bytes, too short"},
        {"model_adam_eps_zero", "train", text_model("input 64\ndense 16 relu\ndense 10 softmax\noptimizer adam eps=0\n"),
         {}, 3, "{model}: eps=0 with adam divides 0 by 0"},
        {"weights_nan", "eval", [](Env &e) { write_weights(e.weights, NAN); }, {}, 3,
         "{weights}: tensor 'dense1.weight' holds NaN at index 7; expected finite values"},
        {"init_weights_inf", "train", [](Env &e) { write_weights(e.weights, -INFINITY); },
         {{"--init-weights", "{weights}"}}, 3,
         "{weights}: tensor 'dense1.weight' holds an infinity at index 7; expected finite values"},
        {"weights_with_a_tensor_the_model_lacks", "eval",
         [](Env &e) {
             float v[3] = {1, 2, 3};
             ct_st_tensor t[5] = {};
             ct_st_file f;
             ct_error err;
             ct_error_clear(&err);
             ASSERT_EQ(ct_safetensors_read(e.weights.c_str(), &f, &err), 0) << err.msg;
             for (int i = 0; i < 4; ++i) t[i] = f.tensors[i];
             snprintf(t[4].name, sizeof t[4].name, "dense3.weight");
             t[4].rank = 1;
             t[4].shape[0] = 3;
             t[4].count = 3;
             t[4].data = v;
             ASSERT_EQ(ct_safetensors_write((e.weights + ".new").c_str(), t, 5, nullptr, 0, &err), 0) << err.msg;
             ct_safetensors_free(&f);
             rename((e.weights + ".new").c_str(), e.weights.c_str());
         },
         {}, 3, "{weights}: tensor 'dense3.weight' is not a parameter of the model (its layers with parameters: dense1, dense2)"},
        {"weights_of_another_model", "eval", text_model("input 64\ndense 12 relu\ndense 10 softmax\n"), {}, 3,
         "{weights}: tensor 'dense1.weight' has shape [16, 64], the model expects [12, 64]"},
        {"weights_shape_overflow", "eval",
         [](Env &e) {
             std::string h = R"({"dense1.weight":{"dtype":"F32","shape":[4294967296,4294967296,16],"data_offsets":[0,0]}})";
             std::vector<uint8_t> b(8 + h.size(), 0);
             b[0] = (uint8_t)h.size();
             memcpy(b.data() + 8, h.data(), h.size());
             write_file(e.weights, b);
         },
         {}, 3, "{weights}: tensor dense1.weight has a shape whose element count overflows 64 bits"},

        // Output paths that cannot be written: refused before any work.
        {"log_jsonl_dir_missing", "train", nothing(), {{"--log-jsonl", "{out}/no/run.jsonl"}}, 3,
         "{out}/no/run.jsonl: --log-jsonl: directory '{out}/no' does not exist"},
        {"log_jsonl_is_a_directory", "train", [](Env &e) { mkdir((e.out + "/d").c_str(), 0755); },
         {{"--log-jsonl", "{out}/d"}}, 3, "{out}/d: --log-jsonl names a directory"},
        {"log_jsonl_under_a_file", "train", [](Env &e) { write_text(e.out + "/f", "x"); },
         {{"--log-jsonl", "{out}/f/run.jsonl"}}, 3, "{out}/f/run.jsonl: --log-jsonl: '{out}/f' is not a directory"},
        {"log_jsonl_dir_read_only", "train", [](Env &e) { mkdir((e.out + "/ro").c_str(), 0555); },
         {{"--log-jsonl", "{out}/ro/run.jsonl"}}, 3, "{out}/ro/run.jsonl: --log-jsonl: directory '{out}/ro' is not writable",
         "{out}/ro", W_OK},
        {"log_csv_dir_missing", "train", nothing(), {{"--log-csv", "{out}/no/run.csv"}}, 3,
         "{out}/no/run.csv: --log-csv: directory '{out}/no' does not exist"},
        {"log_tensorboard_is_a_file", "train", [](Env &e) { write_text(e.out + "/f", "x"); },
         {{"--log-tensorboard", "{out}/f"}}, 3, "{out}/f: --log-tensorboard: '{out}/f' is not a directory"},
        {"log_tensorboard_under_a_file", "train", [](Env &e) { write_text(e.out + "/f", "x"); },
         {{"--log-tensorboard", "{out}/f/a/b"}}, 3, "{out}/f/a/b: --log-tensorboard: '{out}/f' is not a directory"},
        {"log_tensorboard_dir_read_only", "train", [](Env &e) { mkdir((e.out + "/ro").c_str(), 0555); },
         {{"--log-tensorboard", "{out}/ro/a/b"}}, 3,
         "{out}/ro/a/b: --log-tensorboard: directory '{out}/ro' is not writable", "{out}/ro", W_OK},
        {"log_tensorboard_empty", "train", nothing(), {{"--log-tensorboard", ""}, {"--log-tensorboard=", "-"}}, 2,
         "--log-tensorboard: expected DIR, got an empty value"},
        {"save_dir_missing", "train", nothing(), {{"--save", "{out}/no/w.safetensors"}}, 3,
         "{out}/no/w.safetensors: --save: directory '{out}/no' does not exist"},
        {"save_is_a_fifo", "train", [](Env &e) { mkfifo((e.out + "/p").c_str(), 0644); }, {{"--save", "{out}/p"}}, 3,
         "{out}/p: cannot write checkpoint: it is a FIFO"},
        {"save_is_a_symlink", "train", [](Env &e) { symlink((e.out + "/t").c_str(), (e.out + "/l").c_str()); },
         {{"--save", "{out}/l"}}, 3, "{out}/l: cannot write checkpoint: it is a symbolic link"},
        {"save_is_a_device", "train", nothing(), {{"--save", "/dev/null"}}, 3,
         "/dev/null: cannot write checkpoint: it is a device"},
        {"save_is_read_only", "train", [](Env &e) { write_text(e.out + "/ro.st", "x"); chmod((e.out + "/ro.st").c_str(), 0444); },
         {{"--save", "{out}/ro.st"}}, 3, "{out}/ro.st: --save: the file is not writable", "{out}/ro.st", W_OK},
        {"log_csv_read_only", "train", [](Env &e) { write_text(e.out + "/ro.csv", "x"); chmod((e.out + "/ro.csv").c_str(), 0444); },
         {{"--log-csv", "{out}/ro.csv"}}, 3, "{out}/ro.csv: --log-csv: the file is not writable", "{out}/ro.csv", W_OK},
        {"bench_save_init_is_a_fifo", "bench", [](Env &e) { mkfifo((e.out + "/p").c_str(), 0644); },
         {{"--save-init", "{out}/p"}}, 3, "{out}/p: cannot write checkpoint: it is a FIFO"},
        {"clip_grad_norm_below_float32", "train", nothing(), {{"--clip-grad-norm", "1e-320"}}, 2,
         "--clip-grad-norm: 9.99989e-321 is below what float32 can hold"},
        {"lr_gamma_below_float32", "train", nothing(), {{"--lr-schedule", "step"}, {"--lr-gamma", "1e-320"}}, 2,
         "--lr-gamma: 9.99989e-321 is below what float32 can hold"},
        // Settings of something the run does not have: said, not dropped.
        {"lr_gamma_without_the_step_schedule", "train", nothing(), {{"--lr-gamma", "0.5"}}, 2,
         "--lr-gamma: a setting of the step schedule; this run's schedule is constant (add --lr-schedule step)"},
        {"lr_pct_without_onecycle", "train", nothing(), {{"--lr-schedule", "cosine"}, {"--lr-pct", "0.2"}}, 2,
         "--lr-pct: a setting of the onecycle schedule; this run's schedule is cosine"},
        {"inject_kind_without_inject_nan", "train", nothing(), {{"--inject-kind", "inf"}}, 2,
         "--inject-kind: needs --inject-nan STEP"},
        {"nonfinite_window_with_on_nan_stop", "train", nothing(), {{"--health-nonfinite-window", "10"}}, 2,
         "--health-nonfinite-window: has no effect with --on-nan stop"},
        {"inject_nan_at_step_zero", "train", nothing(), {{"--inject-nan", "0"}}, 2,
         "--inject-nan: expected a step of 1 or more (steps count from 1), got 0"},
        {"inject_nan_past_the_run", "train", nothing(), {{"--inject-nan", "3"}}, 2,
         "--inject-nan 3: the run ends at step 2 (--max-steps)"},
        {"bench_time_to_accuracy_with_throughput_settings", "bench", nothing(), {{"--time-to-accuracy", "0.5"}}, 2,
         "--steps: a setting of the throughput runs, which --time-to-accuracy replaces"},
        {"bench_seeds_without_time_to_accuracy", "bench", nothing(), {{"--seeds", "2"}}, 2,
         "--seeds: a setting of --time-to-accuracy A, which is not given"},
        // A directory that passes for writable but takes no new file: tried
        // before training, not found out after it.
        {"save_where_no_file_can_be_made", "train", nothing(), {{"--save", "/proc/w.safetensors"}}, 3,
         "/proc/w.safetensors: --save: "},  // root: "cannot create a file there"; others: "not writable"
        {"save_name_too_long", "train", nothing(), {{"--save", "{out}/" + std::string(256, 's')}}, 3,
         "--save: a file name of 256 bytes; at most 255"},
        {"bench_json_name_too_long", "bench", nothing(), {{"--json", "{out}/" + std::string(256, 'j')}}, 3,
         "--json: a file name of 256 bytes; at most 255"},
        {"log_path_too_long", "train", nothing(), {{"--log-jsonl", "{out}/" + std::string(1100, 'l')}}, 2,
         "--log-jsonl: expected FILE of at most 1023 bytes, got"},
        {"save_ends_in_a_slash", "train", nothing(), {{"--save", "{out}/w.st/"}}, 3,
         "{out}/w.st/: --save names a directory; expected a file path"},
        {"log_jsonl_ends_in_a_slash", "train", nothing(), {{"--log-jsonl", "{out}/r.jsonl/"}}, 3,
         "{out}/r.jsonl/: --log-jsonl names a directory; expected a file path"},
        {"save_is_a_directory", "train", [](Env &e) { mkdir((e.out + "/w").c_str(), 0755); }, {{"--save", "{out}/w"}}, 3,
         "{out}/w: --save names a directory"},
        {"eval_log_dir_missing", "eval", nothing(), {{"--log-jsonl", "{out}/no/e.jsonl"}}, 3,
         "{out}/no/e.jsonl: --log-jsonl: directory '{out}/no' does not exist"},
        {"bench_json_dir_missing", "bench", nothing(), {{"--json", "{out}/no/b.json"}}, 3,
         "{out}/no/b.json: --json: directory '{out}/no' does not exist"},
        // Two outputs in one file, or an output over an input: refused as a bad command line.
        {"outputs_jsonl_and_save_one_file", "train", nothing(), {{"--save", "{out}/run.jsonl"}}, 2,
         "--log-jsonl {out}/run.jsonl: the same file as --save {out}/run.jsonl"},
        {"outputs_jsonl_and_csv_one_file", "train", nothing(), {{"--log-csv", "{out}/../out/run.jsonl"}}, 2,
         "--log-jsonl {out}/run.jsonl: the same file as --log-csv {out}/../out/run.jsonl"},
        {"log_over_the_resumed_checkpoint", "train", nothing(), {{"--resume", "{weights}"}, {"--log-csv", "{weights}"}}, 2,
         "--log-csv {weights}: the same file as the input {weights} of --resume"},
        {"save_over_the_init_weights", "train", nothing(), {{"--init-weights", "{weights}"}, {"--save", "{weights}"}}, 2,
         "--save {weights}: the same file as the input {weights} of --init-weights"},
        {"output_over_the_model", "train", nothing(), {{"--log-csv", "{model}"}}, 2,
         "--log-csv {model}: the same file as the input {model} of --model"},
        {"output_over_the_labels", "train", nothing(), {{"--save", "{data}/train-labels-idx1-ubyte"}}, 2,
         "--save {data}/train-labels-idx1-ubyte: the same file as the input {data}/train-labels-idx1-ubyte of --data"},
        {"eval_log_over_the_weights", "eval", nothing(), {{"--log-jsonl", "{weights}"}}, 2,
         "--log-jsonl {weights}: the same file as the input {weights} of --weights"},
        {"bench_json_and_save_init_one_file", "bench", nothing(), {{"--save-init", "{out}/bench.json"}}, 2,
         "--json {out}/bench.json: the same file as --save-init {out}/bench.json"},
        {"bench_save_init_is_a_directory", "bench", [](Env &e) { mkdir((e.out + "/i").c_str(), 0755); },
         {{"--save-init", "{out}/i"}}, 3, "{out}/i: --save-init names a directory"},
    };
    return c;
}

// Every numeric flag of the three commands, each with values no flag takes.
std::vector<Case> flag_cases() {
    const std::vector<std::pair<std::string, std::vector<std::string>>> numeric = {
        {"train",
         {"--epochs", "--batch-size", "--lr", "--clip-grad-norm", "--lr-pct", "--lr-step-size", "--lr-gamma",
          "--seed", "--threads", "--max-steps", "--save-every", "--drain-every", "--inject-nan", "--health-vanishing-ratio",
          "--health-vanishing-window", "--health-dead-window", "--health-explode-factor",
          "--health-explode-window", "--health-chance-window", "--health-chance-tolerance",
          "--health-nonfinite-window"}},
        {"eval", {"--batch-size", "--threads", "--epochs", "--lr", "--seed"}},
        {"bench",
         {"--threads", "--batch-size", "--lr", "--steps", "--warmup", "--repeats", "--epochs", "--seed",
          "--time-to-accuracy", "--seeds", "--max-epochs"}},
    };
    const std::pair<const char *, const char *> nonsense[] = {
        {"word", "abc"},      {"negative", "-5"},         {"nan", "nan"},          {"inf", "inf"},
        {"huge", "1e999999"}, {"trailing_junk", "12x"},   {"empty", ""},
        {"beyond_u64", "18446744073709551616"},
    };
    // Flags where 0 is nonsense too (bench --epochs 0 means "estimate").
    const std::vector<std::string> no_zero = {
        "train --epochs",       "train --batch-size",   "train --threads", "train --drain-every",
        "train --lr-step-size", "train --lr",           "train --lr-gamma", "train --lr-pct",
        "train --clip-grad-norm", "eval --batch-size", "eval --threads",  "eval --epochs", "eval --lr", "bench --threads",
        "bench --batch-size",   "bench --lr",           "bench --steps",   "bench --repeats",
        "bench --seeds",        "bench --max-epochs",   "bench --time-to-accuracy"};
    std::vector<Case> cases;
    auto add = [&](const std::string &cmd, const std::string &flag, const char *what, const char *value) {
        std::string id = cmd + "_" + flag.substr(2) + "_" + what;
        std::replace(id.begin(), id.end(), '-', '_');
        // "--flag=" passes an empty value; a separate "" would read as no value.
        Flags f = {{flag + "=" + value, "-"}};
        cases.push_back({id, cmd, nothing(), f, 2, "cutrain: error: " + flag + ": "});
    };
    for (const auto &cmd : numeric)
        for (const std::string &flag : cmd.second) {
            for (const auto &v : nonsense) {
                // 1.8e19 is a fine factor ("explode above 1.8e19 x the median"): not nonsense there.
                if (flag == "--health-explode-factor" && std::string(v.first) == "beyond_u64") continue;
                add(cmd.first, flag, v.first, v.second);
            }
            if (std::find(no_zero.begin(), no_zero.end(), cmd.first + " " + flag) != no_zero.end())
                add(cmd.first, flag, "zero", "0");
        }
    return cases;
}

std::vector<Case> all_cases() {
    auto c = file_cases();
    auto f = flag_cases();
    c.insert(c.end(), f.begin(), f.end());
    return c;
}

// Weights that fit kModel, so eval gets as far as the case lets it.
void write_weights(const std::string &path, float w1_7) {
    std::vector<float> w1(16 * 64, 0.01f), b1(16, 0.0f), w2(10 * 16, 0.02f), b2(10, 0.0f);
    w1[7] = w1_7;
    ct_st_tensor t[4] = {};
    const std::pair<const char *, std::vector<float> *> named[4] = {
        {"dense1.weight", &w1}, {"dense1.bias", &b1}, {"dense2.weight", &w2}, {"dense2.bias", &b2}};
    const std::vector<uint64_t> shapes[4] = {{16, 64}, {16}, {10, 16}, {10}};
    for (int i = 0; i < 4; ++i) {
        snprintf(t[i].name, sizeof t[i].name, "%s", named[i].first);
        t[i].rank = (int)shapes[i].size();
        for (int d = 0; d < t[i].rank; ++d) t[i].shape[d] = shapes[i][d];
        t[i].count = named[i].second->size();
        t[i].data = named[i].second->data();
    }
    ct_error err;
    if (ct_safetensors_write(path.c_str(), t, 4, nullptr, 0, &err) != 0) throw std::runtime_error(err.msg);
}

class Malformed : public ::testing::TestWithParam<Case> {
  protected:
    void SetUp() override {
        e.data = e.tmp.file("data");
        e.out = e.tmp.file("out");
        e.model = e.tmp.file("model.txt");
        e.weights = e.tmp.file("w.safetensors");
        mkdir(e.data.c_str(), 0755);
        mkdir(e.out.c_str(), 0755);
        write_synthetic_mnist(e.data, kTrain, kTest);
        write_text(e.model, kModel);
        write_weights(e.weights);
    }
    void TearDown() override {
        // Make whatever a case locked readable again, so TempDir can remove it.
        for (const auto &f : snapshot(e.tmp.path())) chmod(f.first.c_str(), S_ISDIR(f.second.second) ? 0755 : 0644);
        chmod(e.images().c_str(), 0644);
        chmod(e.model.c_str(), 0644);
        chmod(e.weights.c_str(), 0644);
    }
    Env e;
};

TEST_P(Malformed, FailsWithOneLineNamingTheInputAndLeavesNothing) {
    const Case &c = GetParam();
    c.setup(e);
    if (!c.locked.empty() && access(expand(c.locked, e).c_str(), c.locked_mode) == 0)
        GTEST_SKIP() << expand(c.locked, e) << " is still " << (c.locked_mode == R_OK ? "readable" : "writable")
                     << " after chmod: this process has root's file access (uid " << geteuid()
                     << "), which permission bits do not limit, so this case cannot be made here";
    auto before = snapshot(e.tmp.path());
    std::string line = command_line(c, e);
    RunResult r = run_cutrain(line);
    SCOPED_TRACE("cutrain " + line);

    EXPECT_EQ(r.exit_code, c.status) << r.out;
    EXPECT_GT(r.exit_code, 0);
    EXPECT_LT(r.exit_code, 128);
    EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 1) << r.out;
    EXPECT_EQ(r.out.rfind("cutrain: error: ", 0), 0u) << r.out;
    EXPECT_NE(r.out.find(expand(c.names, e)), std::string::npos)
        << "expected the message to contain: " << expand(c.names, e) << "\ngot: " << r.out;
    EXPECT_EQ(snapshot(e.tmp.path()), before) << "the run created, removed or changed files";
}

std::string case_name(const ::testing::TestParamInfo<Case> &info) { return info.param.name; }

INSTANTIATE_TEST_SUITE_P(Corpus, Malformed, ::testing::ValuesIn(all_cases()), case_name);

// The corpus is as large as docs/reliability.md says it is.
TEST(MalformedCorpus, HasAtLeastFiftyFilesAndFlagSets) {
    EXPECT_GE(file_cases().size(), 50u);
    EXPECT_GE(flag_cases().size(), 50u);
}

}  // namespace
