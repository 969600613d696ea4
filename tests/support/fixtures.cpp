#include "support/fixtures.h"

#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <random>
#include <sstream>
#include <stdexcept>

namespace ct_test {

ScopedEnv::ScopedEnv(const char *var, const char *value) : var_(var) {
    const char *old = std::getenv(var);
    had_ = old != nullptr;
    if (had_) old_ = old;
    if (value)
        setenv(var, value, 1);
    else
        unsetenv(var);
}

ScopedEnv::~ScopedEnv() {
    if (had_)
        setenv(var_.c_str(), old_.c_str(), 1);
    else
        unsetenv(var_.c_str());
}

TempDir::TempDir() {
    const char *base = getenv("TMPDIR");
    std::string tmpl = std::string(base && *base ? base : "/tmp") + "/cutrain-test-XXXXXX";
    std::vector<char> buf(tmpl.begin(), tmpl.end());
    buf.push_back('\0');
    if (!mkdtemp(buf.data())) throw std::runtime_error("mkdtemp failed");
    path_ = buf.data();
}

TempDir::~TempDir() {
    std::string cmd = "rm -rf '" + path_ + "'";
    if (system(cmd.c_str()) != 0) { /* best effort */
    }
}

static void put_be32(std::vector<uint8_t> &v, uint32_t x) {
    for (int s = 24; s >= 0; s -= 8) v.push_back((uint8_t)(x >> s));
}

void write_file(const std::string &path, const std::vector<uint8_t> &bytes) {
    std::ofstream f(path, std::ios::binary);
    f.write(reinterpret_cast<const char *>(bytes.data()), (std::streamsize)bytes.size());
    if (!f) throw std::runtime_error("cannot write " + path);
}

void write_text(const std::string &path, const std::string &text) {
    write_file(path, std::vector<uint8_t>(text.begin(), text.end()));
}

std::vector<uint8_t> read_file(const std::string &path) {
    std::ifstream f(path, std::ios::binary);
    return std::vector<uint8_t>((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

std::vector<uint8_t> gzip_bytes(const std::vector<uint8_t> &raw) {
    z_stream zs{};
    if (deflateInit2(&zs, Z_BEST_COMPRESSION, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY) != Z_OK)
        throw std::runtime_error("deflateInit2 failed");
    std::vector<uint8_t> out(deflateBound(&zs, raw.size()) + 32);
    zs.next_in = const_cast<uint8_t *>(raw.data());
    zs.avail_in = static_cast<uInt>(raw.size());
    zs.next_out = out.data();
    zs.avail_out = static_cast<uInt>(out.size());
    int rc = deflate(&zs, Z_FINISH);
    out.resize(zs.total_out);
    deflateEnd(&zs);
    if (rc != Z_STREAM_END) throw std::runtime_error("deflate did not finish");
    return out;
}

bool file_exists(const std::string &path) {
    struct stat st;
    return stat(path.c_str(), &st) == 0;
}

void write_idx_u8(const std::string &path, const std::vector<uint32_t> &dims, const std::vector<uint8_t> &data,
                  bool gzip) {
    std::vector<uint8_t> bytes = {0, 0, 0x08, (uint8_t)dims.size()};
    for (uint32_t d : dims) put_be32(bytes, d);
    bytes.insert(bytes.end(), data.begin(), data.end());
    if (!gzip) return write_file(path, bytes);
    gzFile g = gzopen(path.c_str(), "wb");
    if (!g || gzwrite(g, bytes.data(), (unsigned)bytes.size()) != (int)bytes.size() || gzclose(g) != Z_OK)
        throw std::runtime_error("cannot gzip " + path);
}

static void synth(int n, int side, int classes, uint32_t seed, std::vector<uint8_t> &img, std::vector<uint8_t> &lab) {
    std::mt19937 rng(seed);
    std::uniform_int_distribution<int> noise(0, 40), cls(0, classes - 1);
    int pix = side * side;
    img.assign((size_t)n * pix, 0);
    lab.assign((size_t)n, 0);
    for (int i = 0; i < n; ++i) {
        int c = cls(rng);
        lab[i] = (uint8_t)c;
        for (int p = 0; p < pix; ++p) {
            // class c lights up every pixel p with p % classes == c
            int v = noise(rng) + ((p % classes) == c ? 180 : 0);
            img[(size_t)i * pix + p] = (uint8_t)(v > 255 ? 255 : v);
        }
    }
}

void write_synthetic_mnist(const std::string &dir, int n_train, int n_test, int side, int classes, uint32_t seed) {
    std::vector<uint8_t> img, lab;
    synth(n_train, side, classes, seed, img, lab);
    write_idx_u8(dir + "/train-images-idx3-ubyte", {(uint32_t)n_train, (uint32_t)side, (uint32_t)side}, img);
    write_idx_u8(dir + "/train-labels-idx1-ubyte", {(uint32_t)n_train}, lab);
    synth(n_test, side, classes, seed + 1000, img, lab);
    write_idx_u8(dir + "/t10k-images-idx3-ubyte", {(uint32_t)n_test, (uint32_t)side, (uint32_t)side}, img);
    write_idx_u8(dir + "/t10k-labels-idx1-ubyte", {(uint32_t)n_test}, lab);
}

ct_model_spec synthetic_spec(const char *name, ct_activation out_act, ct_loss_kind loss) {
    ct_model_spec s{};
    snprintf(s.name, sizeof s.name, "%s", name);
    s.input_dim = 64;
    s.n_layers = 2;
    s.layers[0].kind = CT_LAYER_DENSE;
    s.layers[0].units = 16;
    s.layers[0].act = CT_ACT_RELU;
    s.layers[1].kind = CT_LAYER_DENSE;
    s.layers[1].units = 10;
    s.layers[1].act = out_act;
    s.loss = loss;
    s.optim = ct_optim_defaults(CT_OPT_ADAM);
    s.batch_size = 32;
    ct_model_spec_name_layers(&s);
    return s;
}

ct_dataset synthetic_dataset(int n, int side, int classes, uint32_t seed) {
    std::vector<uint8_t> img, lab;
    synth(n, side, classes, seed, img, lab);
    ct_dataset ds;
    memset(&ds, 0, sizeof ds);
    ds.elem_type = CT_ELEM_U8;
    ds.count = (size_t)n;
    ds.sample_elems = (size_t)side * side;
    ds.image_dims[0] = ds.image_dims[1] = (uint32_t)side;
    ds.images = malloc(img.size() ? img.size() : 1);
    ds.labels = (uint8_t *)malloc(lab.size() ? lab.size() : 1);
    // An empty vector's data() may be NULL, which memcpy must not get even for 0 bytes.
    if (!img.empty()) memcpy(ds.images, img.data(), img.size());
    if (!lab.empty()) memcpy(ds.labels, lab.data(), lab.size());
    ds.max_label = classes - 1;
    snprintf(ds.images_path, sizeof ds.images_path, "synthetic-images");
    snprintf(ds.labels_path, sizeof ds.labels_path, "synthetic-labels");
    return ds;
}

RunResult run_cutrain(const std::string &args) { return run_command(std::string(CT_CUTRAIN_EXE) + " " + args); }

RunResult run_command(const std::string &command) {
    std::string cmd = command + " 2>&1";
    FILE *p = popen(cmd.c_str(), "r");
    if (!p) throw std::runtime_error("popen failed");
    std::string out;
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
    int status = pclose(p);
    int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
    return {code, out};
}

static bool has_mnist(const std::string &dir) {
    return file_exists(dir + "/train-images-idx3-ubyte") || file_exists(dir + "/train-images-idx3-ubyte.gz");
}

std::string mnist_dir() {
    const char *env = getenv("CUTRAIN_MNIST_DIR");
    if (env && *env && has_mnist(env)) return env;
    std::string repo = CT_SOURCE_DIR;
    for (const std::string &d : {repo + "/data/mnist", repo + "/../shared/data/mnist"})
        if (has_mnist(d)) return d;
    return "";
}

std::vector<std::string> read_lines(const std::string &path) {
    std::ifstream f(path);
    std::vector<std::string> lines;
    for (std::string line; std::getline(f, line);) lines.push_back(line);
    return lines;
}

std::vector<std::string> jsonl_of_type(const std::string &path, const std::string &type) {
    std::vector<std::string> out;
    std::string tag = "\"type\":\"" + type + "\"";
    for (const std::string &l : read_lines(path))
        if (l.find(tag) != std::string::npos) out.push_back(l);
    return out;
}

std::string untimed(const std::string &line) {
    std::string out;
    size_t i = 0;
    while (i < line.size()) {
        size_t q = line.find('"', i);
        if (q == std::string::npos) break;
        size_t e = line.find('"', q + 1);
        std::string key = line.substr(q + 1, e - q - 1);
        bool timing = key == "seconds" || key == "eval_seconds" || key == "samples_per_s" || key == "train_seconds";
        size_t end = e + 1;
        if (timing && end < line.size() && line[end] == ':') {
            end = line.find_first_of(",}", end);
            out += line.substr(i, q - i);
            i = line[end] == ',' ? end + 1 : end;
            continue;
        }
        out += line.substr(i, end - i);
        i = end;
    }
    return out + line.substr(i);
}

std::vector<std::string> untimed_of_type(const std::string &path, const std::string &type) {
    std::vector<std::string> v = jsonl_of_type(path, type);
    for (auto &l : v) l = untimed(l);
    return v;
}

double json_number(const std::string &line, const std::string &key) {
    std::string k = "\"" + key + "\":";
    size_t at = line.find(k);
    if (at == std::string::npos) return NAN;
    const char *s = line.c_str() + at + k.size();
    if (strncmp(s, "null", 4) == 0) return NAN;
    return strtod(s, nullptr);
}

std::string json_string(const std::string &line, const std::string &key) {
    std::string k = "\"" + key + "\":";
    size_t at = line.find(k);
    if (at == std::string::npos) return "";
    at += k.size();
    if (line.compare(at, 4, "null") == 0 || line[at] != '"') return "";
    std::string out;
    for (size_t i = at + 1; i < line.size() && line[i] != '"'; ++i) {
        if (line[i] == '\\' && i + 1 < line.size()) ++i;
        out.push_back(line[i]);
    }
    return out;
}

}  // namespace ct_test
