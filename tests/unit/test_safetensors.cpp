// safetensors writing and reading: round trips (ranks 0..4, an empty
// tensor, special float values, metadata that needs escaping), the exact
// byte layout the reference writer produces, atomic replacement, write
// failures, and a table of malformed files that must each be refused with
// the path in the message -- plus every truncation and many single-byte
// corruptions of a good file, which must never crash or leak.
#include <gtest/gtest.h>

#include <signal.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "cutrain/checkpoint.h"

namespace fs = std::filesystem;

namespace {

// A tensor description the test owns; view() lends it to the C API.
struct Tensor {
    std::string name;
    std::vector<uint64_t> shape;
    std::vector<float> data;

    ct_st_tensor view() const {
        ct_st_tensor t;
        std::memset(&t, 0, sizeof t);
        std::snprintf(t.name, sizeof t.name, "%s", name.c_str());
        t.rank = static_cast<int>(shape.size());
        t.count = 1;
        for (size_t d = 0; d < shape.size(); ++d) {
            t.shape[d] = shape[d];
            t.count *= shape[d];
        }
        t.data = data.empty() ? nullptr : data.data();
        return t;
    }
};

Tensor RandomTensor(const std::string &name, std::vector<uint64_t> shape, std::mt19937 &rng) {
    uint64_t n = 1;
    for (uint64_t d : shape) n *= d;
    std::normal_distribution<float> dist(0.0f, 1.0f);
    std::vector<float> data(n);
    for (float &x : data) x = dist(rng);
    return Tensor{name, std::move(shape), std::move(data)};
}

ct_st_meta Meta(const std::string &key, const std::string &value) {
    ct_st_meta m;
    std::memset(&m, 0, sizeof m);
    std::snprintf(m.key, sizeof m.key, "%s", key.c_str());
    std::snprintf(m.value, sizeof m.value, "%s", value.c_str());
    return m;
}

std::string Le64(uint64_t v) {
    std::string s(8, '\0');
    for (int i = 0; i < 8; ++i) s[i] = static_cast<char>((v >> (8 * i)) & 0xff);
    return s;
}

uint64_t ReadLe64(const std::string &s) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(s[i]);
    return v;
}

// A safetensors file: length, header JSON as given, data.
std::string StFile(const std::string &json, const std::string &data = std::string()) {
    return Le64(json.size()) + json + data;
}

std::string Zeros(size_t n) { return std::string(n, '\0'); }

std::string FloatBytes(const std::vector<float> &v) {
    std::string s(v.size() * 4, '\0');
    if (!v.empty()) std::memcpy(&s[0], v.data(), s.size());
    return s;
}

bool HostIsLittleEndian() {
    const uint32_t one = 1;
    unsigned char b;
    std::memcpy(&b, &one, 1);
    return b == 1;
}

class SafetensorsTest : public ::testing::Test {
  protected:
    void SetUp() override {
        std::string tmpl = (fs::temp_directory_path() / "ct_st_XXXXXX").string();
        ASSERT_NE(mkdtemp(&tmpl[0]), nullptr);
        dir_ = tmpl;
        ct_error_clear(&err_);
        std::memset(&file_, 0, sizeof file_);
    }
    void TearDown() override {
        ct_safetensors_free(&file_);
        std::error_code ec;
        fs::permissions(dir_, fs::perms::owner_all, fs::perm_options::add, ec);
        fs::remove_all(dir_, ec);
    }

    std::string Path(const std::string &name) const { return (fs::path(dir_) / name).string(); }

    void WriteRaw(const std::string &path, const std::string &bytes) {
        std::ofstream out(path, std::ios::binary | std::ios::trunc);
        out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
        ASSERT_TRUE(out.good()) << path;
    }

    static std::string ReadRaw(const std::string &path) {
        std::ifstream in(path, std::ios::binary);
        return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    }

    std::vector<std::string> Entries() const {
        std::vector<std::string> names;
        for (const auto &e : fs::directory_iterator(dir_)) names.push_back(e.path().filename().string());
        return names;
    }

    bool AnyTempFile() const {
        for (const std::string &n : Entries())
            if (n.find(".tmp.") != std::string::npos) return true;
        return false;
    }

    int Write(const std::string &path, const std::vector<Tensor> &ts,
              const std::vector<ct_st_meta> &meta = {}) {
        std::vector<ct_st_tensor> views;
        for (const Tensor &t : ts) views.push_back(t.view());
        return ct_safetensors_write(path.c_str(), views.data(), static_cast<int>(views.size()), meta.data(),
                                    static_cast<int>(meta.size()), &err_);
    }

    // A refused read: -1, a bad-input code, the path first, the reason, and
    // an output left empty (so a caller's free is harmless and nothing leaks).
    void ExpectRefused(const std::string &bytes, const std::string &reason, const std::string &label) {
        SCOPED_TRACE(label);
        std::string path = Path("bad.safetensors");
        WriteRaw(path, bytes);
        ct_error err;
        ct_error_clear(&err);
        ct_st_file f;
        std::memset(&f, 0xab, sizeof f); // the reader must not depend on a cleared output
        ASSERT_EQ(ct_safetensors_read(path.c_str(), &f, &err), -1);
        EXPECT_EQ(err.code, CT_EXIT_BAD_INPUT);
        EXPECT_EQ(std::string(err.msg).rfind(path + ": ", 0), 0u) << err.msg;
        EXPECT_NE(std::string(err.msg).find(reason), std::string::npos) << err.msg;
        EXPECT_EQ(std::strchr(err.msg, '\n'), nullptr);
        EXPECT_EQ(f.n_tensors, 0);
        EXPECT_EQ(f.tensors, nullptr);
        EXPECT_EQ(f.n_meta, 0);
        EXPECT_EQ(f.meta, nullptr);
        EXPECT_EQ(f.blob, nullptr);
        ct_safetensors_free(&f);
    }

    std::string dir_;
    ct_error err_;
    ct_st_file file_;
};

// Several tensors of each rank the engine uses, an empty one between two
// others, and metadata with quotes, backslashes, control characters and
// multi-byte UTF-8.
struct Fixture {
    std::vector<Tensor> tensors;
    std::vector<ct_st_meta> meta;
};

Fixture MakeFixture() {
    std::mt19937 rng(1234);
    Fixture f;
    f.tensors.push_back(RandomTensor("layer0.weight", {3, 5}, rng));
    f.tensors.push_back(RandomTensor("layer0.bias", {7}, rng));
    // Values whose bits a careless conversion would change.
    f.tensors[1].data[0] = std::numeric_limits<float>::quiet_NaN();
    f.tensors[1].data[1] = std::numeric_limits<float>::infinity();
    f.tensors[1].data[2] = -0.0f;
    f.tensors[1].data[3] = std::numeric_limits<float>::denorm_min();
    f.tensors.push_back(Tensor{"empty", {0, 3}, {}});
    f.tensors.push_back(RandomTensor("conv.kernel", {2, 3, 1, 4}, rng));
    f.tensors.push_back(RandomTensor("scale", {}, rng));
    f.tensors.push_back(RandomTensor("odd \"name\" \\ \xc3\xa9", {2}, rng));
    f.meta.push_back(Meta("format", "pt"));
    f.meta.push_back(Meta("quote", "say \"hi\" \\ back\\slash"));
    f.meta.push_back(Meta("unicode", "h\xc3\xa9llo \xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x99\x82"));
    f.meta.push_back(Meta("control", "line1\nline2\ttab\x01"));
    f.meta.push_back(Meta("empty", ""));
    return f;
}

TEST_F(SafetensorsTest, RoundTripKeepsNamesShapesBitsAndMetadata) {
    Fixture fx = MakeFixture();
    std::string path = Path("model.safetensors");
    ASSERT_EQ(Write(path, fx.tensors, fx.meta), 0) << err_.msg;
    ASSERT_EQ(ct_safetensors_read(path.c_str(), &file_, &err_), 0) << err_.msg;

    ASSERT_EQ(file_.n_tensors, static_cast<int>(fx.tensors.size()));
    for (size_t i = 0; i < fx.tensors.size(); ++i) {
        const Tensor &want = fx.tensors[i];
        const ct_st_tensor &got = file_.tensors[i]; // the order written is the order read
        SCOPED_TRACE(want.name);
        EXPECT_STREQ(got.name, want.name.c_str());
        ASSERT_EQ(got.rank, static_cast<int>(want.shape.size()));
        for (int d = 0; d < got.rank; ++d) EXPECT_EQ(got.shape[d], want.shape[d]);
        EXPECT_EQ(got.count, want.view().count);
        ASSERT_NE(got.data, nullptr);
        EXPECT_EQ(reinterpret_cast<uintptr_t>(got.data) % alignof(float), 0u);
        if (got.count > 0) EXPECT_EQ(std::memcmp(got.data, want.data.data(), got.count * 4), 0);
        EXPECT_EQ(ct_safetensors_find(&file_, want.name.c_str()), &got);
    }
    EXPECT_EQ(ct_safetensors_find(&file_, "scale")->rank, 0);
    EXPECT_EQ(ct_safetensors_find(&file_, "scale")->count, 1u);
    EXPECT_EQ(ct_safetensors_find(&file_, "empty")->count, 0u);
    EXPECT_TRUE(std::isnan(ct_safetensors_find(&file_, "layer0.bias")->data[0]));
    EXPECT_TRUE(std::signbit(ct_safetensors_find(&file_, "layer0.bias")->data[2]));
    EXPECT_EQ(ct_safetensors_find(&file_, "nope"), nullptr);

    ASSERT_EQ(file_.n_meta, static_cast<int>(fx.meta.size()));
    for (const ct_st_meta &m : fx.meta) {
        const char *v = ct_safetensors_meta(&file_, m.key);
        ASSERT_NE(v, nullptr) << m.key;
        EXPECT_STREQ(v, m.value) << m.key;
    }
    EXPECT_EQ(ct_safetensors_meta(&file_, "absent"), nullptr);

    ct_safetensors_free(&file_);
    EXPECT_EQ(file_.tensors, nullptr);
    ct_safetensors_free(&file_); // twice is harmless
}

// What the reference reader relies on: the 8-byte little-endian length, a
// compact JSON header padded with spaces to a multiple of 8, each tensor
// entry in the reference layout, and the data packed in the order given.
TEST_F(SafetensorsTest, FileLayoutMatchesTheReferenceWriter) {
    Fixture fx = MakeFixture();
    std::string path = Path("model.safetensors");
    ASSERT_EQ(Write(path, fx.tensors, fx.meta), 0) << err_.msg;
    std::string bytes = ReadRaw(path);
    ASSERT_GE(bytes.size(), 8u);
    uint64_t n = ReadLe64(bytes);
    EXPECT_EQ(n % 8, 0u);
    uint64_t data_bytes = 0;
    for (const Tensor &t : fx.tensors) data_bytes += t.data.size() * 4;
    ASSERT_EQ(bytes.size(), 8 + n + data_bytes);

    std::string json = bytes.substr(8, n);
    size_t last = json.find_last_not_of(' ');
    ASSERT_NE(last, std::string::npos);
    EXPECT_EQ(json[last], '}');
    EXPECT_LT(json.size() - (last + 1), 8u); // no more padding than alignment needs
    EXPECT_EQ(json.rfind("{\"__metadata__\":{\"format\":\"pt\",", 0), 0u) << json;
    EXPECT_NE(json.find("\"quote\":\"say \\\"hi\\\" \\\\ back\\\\slash\""), std::string::npos) << json;
    EXPECT_NE(json.find("\"control\":\"line1\\nline2\\ttab\\u0001\""), std::string::npos) << json;
    EXPECT_NE(json.find("\"unicode\":\"h\xc3\xa9llo"), std::string::npos) << json; // raw UTF-8, as serde_json
    EXPECT_NE(json.find("\"empty\":\"\""), std::string::npos) << json;

    uint64_t offset = 0;
    for (const Tensor &t : fx.tensors) {
        std::string name_json = t.name == "odd \"name\" \\ \xc3\xa9" ? "\"odd \\\"name\\\" \\\\ \xc3\xa9\""
                                                                     : "\"" + t.name + "\"";
        std::string shape;
        for (size_t d = 0; d < t.shape.size(); ++d) shape += (d ? "," : "") + std::to_string(t.shape[d]);
        uint64_t end = offset + t.data.size() * 4;
        std::string entry = name_json + ":{\"dtype\":\"F32\",\"shape\":[" + shape + "],\"data_offsets\":[" +
                            std::to_string(offset) + "," + std::to_string(end) + "]}";
        EXPECT_NE(json.find(entry), std::string::npos) << entry << "\n" << json;
        if (HostIsLittleEndian())
            EXPECT_EQ(bytes.substr(8 + n + offset, end - offset), FloatBytes(t.data)) << t.name;
        offset = end;
    }
}

// The exact bytes of safetensors.torch.save_file({"a": torch.zeros(2)}):
// 54 bytes of JSON, 2 spaces of padding, 8 zero bytes of data.
const char kPythonHeader[] = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}  ";

std::string PythonFile() {
    std::string json(kPythonHeader, sizeof kPythonHeader - 1);
    return std::string("\x38\0\0\0\0\0\0\0", 8) + json + Zeros(8);
}

TEST_F(SafetensorsTest, ReadsWhatTheReferenceWriterProduces) {
    ASSERT_EQ(PythonFile().size(), 8u + 56u + 8u);
    std::string path = Path("python.safetensors");
    WriteRaw(path, PythonFile());
    ASSERT_EQ(ct_safetensors_read(path.c_str(), &file_, &err_), 0) << err_.msg;
    ASSERT_EQ(file_.n_tensors, 1);
    EXPECT_EQ(file_.n_meta, 0);
    const ct_st_tensor *a = ct_safetensors_find(&file_, "a");
    ASSERT_NE(a, nullptr);
    EXPECT_EQ(a->rank, 1);
    EXPECT_EQ(a->shape[0], 2u);
    EXPECT_EQ(a->count, 2u);
    EXPECT_EQ(a->data[0], 0.0f);
    EXPECT_EQ(a->data[1], 0.0f);
}

TEST_F(SafetensorsTest, WritesTheSameBytesAsTheReferenceWriter) {
    std::string path = Path("ours.safetensors");
    ASSERT_EQ(Write(path, {Tensor{"a", {2}, {0.0f, 0.0f}}}), 0) << err_.msg;
    EXPECT_EQ(ReadRaw(path), PythonFile());
}

// Other writers may order keys differently, use whitespace, escapes, and
// leave gaps between tensors; all of that is valid safetensors.
TEST_F(SafetensorsTest, AcceptsOtherValidSpellings) {
    std::string json = " {\n  \"b\" : {\"data_offsets\": [8, 12], \"shape\": [1], \"dtype\": \"F32\"},\r\n"
                       "\t\"__metadata__\": {\"k\\u00e9\\ud83d\\ude42\\/\": \"v\\\"\\\\\\b\\f\\n\\r\\t\"},"
                       " \"\\u0061\": {\"dtype\": \"F32\", \"shape\": [], \"data_offsets\": [0, 4]} }   ";
    std::vector<float> a = {1.5f}, b = {-2.25f};
    std::string data = FloatBytes(a) + Zeros(4) + FloatBytes(b); // a 4-byte gap in the middle
    std::string path = Path("other.safetensors");
    WriteRaw(path, StFile(json, data));
    ASSERT_EQ(ct_safetensors_read(path.c_str(), &file_, &err_), 0) << err_.msg;
    ASSERT_EQ(file_.n_tensors, 2);
    EXPECT_STREQ(file_.tensors[0].name, "b"); // header order is kept
    if (HostIsLittleEndian()) {
        EXPECT_EQ(ct_safetensors_find(&file_, "a")->data[0], 1.5f);
        EXPECT_EQ(ct_safetensors_find(&file_, "b")->data[0], -2.25f);
    }
    EXPECT_EQ(ct_safetensors_find(&file_, "a")->rank, 0);
    EXPECT_STREQ(ct_safetensors_meta(&file_, "k\xc3\xa9\xf0\x9f\x99\x82/"), "v\"\\\b\f\n\r\t");
}

TEST_F(SafetensorsTest, AcceptsEmptyFilesAndEmptyTensors) {
    std::string path = Path("empty.safetensors");
    ASSERT_EQ(Write(path, {}), 0) << err_.msg;
    EXPECT_EQ(ReadRaw(path), StFile("{}      "));
    ASSERT_EQ(ct_safetensors_read(path.c_str(), &file_, &err_), 0) << err_.msg;
    EXPECT_EQ(file_.n_tensors, 0);
    ct_safetensors_free(&file_);

    ASSERT_EQ(Write(path, {Tensor{"z", {4, 0}, {}}}, {Meta("only", "meta")}), 0) << err_.msg;
    ASSERT_EQ(ct_safetensors_read(path.c_str(), &file_, &err_), 0) << err_.msg;
    ASSERT_EQ(file_.n_tensors, 1);
    EXPECT_EQ(file_.tensors[0].count, 0u);
    EXPECT_STREQ(ct_safetensors_meta(&file_, "only"), "meta");
}

TEST_F(SafetensorsTest, WriteReplacesAnExistingFileAtomically) {
    std::mt19937 rng(7);
    std::string path = Path("ckpt.safetensors");
    ASSERT_EQ(Write(path, {RandomTensor("w", {64}, rng)}, {Meta("step", "1")}), 0) << err_.msg;
    Tensor second = RandomTensor("w", {3, 2}, rng);
    ASSERT_EQ(Write(path, {second}, {Meta("step", "2")}), 0) << err_.msg;
    EXPECT_EQ(Entries(), std::vector<std::string>{"ckpt.safetensors"});

    ASSERT_EQ(ct_safetensors_read(path.c_str(), &file_, &err_), 0) << err_.msg;
    EXPECT_STREQ(ct_safetensors_meta(&file_, "step"), "2");
    ASSERT_EQ(file_.n_tensors, 1);
    EXPECT_EQ(file_.tensors[0].count, 6u);
    EXPECT_EQ(std::memcmp(file_.tensors[0].data, second.data.data(), 24), 0);
}

TEST_F(SafetensorsTest, WriteIntoAMissingDirectoryFailsAndLeavesNothing) {
    std::string path = Path("no/such/dir/ckpt.safetensors");
    ASSERT_EQ(Write(path, {Tensor{"a", {2}, {1.0f, 2.0f}}}), -1);
    EXPECT_EQ(err_.code, CT_EXIT_BAD_INPUT);
    EXPECT_EQ(std::string(err_.msg), path + ": cannot write checkpoint: " + std::strerror(ENOENT));
    EXPECT_TRUE(Entries().empty());
}

TEST_F(SafetensorsTest, WriteOverADirectoryFailsAndLeavesNoTempFile) {
    std::string path = Path("adir");
    fs::create_directory(path);
    ASSERT_EQ(Write(path, {Tensor{"a", {1}, {1.0f}}}), -1);
    EXPECT_EQ(std::string(err_.msg).rfind(path + ": cannot write checkpoint: ", 0), 0u) << err_.msg;
    EXPECT_FALSE(AnyTempFile());
    EXPECT_TRUE(fs::is_directory(path));
}

// The rename would replace whatever has the name: a link (not the file it
// points to), a device such as /dev/null, a FIFO. Each is refused, untouched.
TEST_F(SafetensorsTest, WriteRefusesToReplaceALinkADeviceOrAFifo) {
    std::string target = Path("target"), link = Path("link"), fifo = Path("fifo");
    std::ofstream(target) << "kept";
    fs::create_symlink(target, link);
    ASSERT_EQ(mkfifo(fifo.c_str(), 0644), 0);
    const std::pair<std::string, const char *> cases[] = {
        {link, "a symbolic link"}, {fifo, "a FIFO"}, {"/dev/null", "a device"}};
    for (const auto &c : cases) {
        SCOPED_TRACE(c.first);
        ASSERT_EQ(Write(c.first, {Tensor{"a", {1}, {1.0f}}}), -1);
        EXPECT_EQ(err_.code, CT_EXIT_BAD_INPUT);
        EXPECT_EQ(std::string(err_.msg).rfind(c.first + ": cannot write checkpoint: it is " + c.second + "; ", 0), 0u)
            << err_.msg;
    }
    EXPECT_TRUE(fs::is_symlink(link));
    EXPECT_TRUE(fs::is_fifo(fifo));
    std::string kept;
    std::ifstream(target) >> kept;
    EXPECT_EQ(kept, "kept");
    EXPECT_FALSE(AnyTempFile());
}

// A replaced checkpoint keeps its permission bits (a private one stays private).
TEST_F(SafetensorsTest, WriteKeepsTheReplacedFilesMode) {
    std::string path = Path("ckpt.safetensors");
    ASSERT_EQ(Write(path, {Tensor{"a", {1}, {1.0f}}}), 0) << err_.msg;
    ASSERT_EQ(chmod(path.c_str(), 0600), 0);
    ASSERT_EQ(Write(path, {Tensor{"a", {1}, {2.0f}}}), 0) << err_.msg;
    struct stat st;
    ASSERT_EQ(stat(path.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 07777, 0600u);
}

TEST_F(SafetensorsTest, WriteIntoAnUnwritableDirectoryFails) {
    if (geteuid() == 0) GTEST_SKIP() << "root writes anywhere; the permission check cannot be tested";
    std::string sub = Path("ro");
    fs::create_directory(sub);
    fs::permissions(sub, fs::perms::owner_read | fs::perms::owner_exec);
    std::string path = sub + "/ckpt.safetensors";
    ASSERT_EQ(Write(path, {Tensor{"a", {1}, {1.0f}}}), -1);
    EXPECT_EQ(std::string(err_.msg), path + ": cannot write checkpoint: " + std::strerror(EACCES));
    fs::permissions(sub, fs::perms::owner_all);
    EXPECT_TRUE(fs::is_empty(sub));
}

// A disk that fills part way, simulated with a file-size limit (which also
// binds root): the old checkpoint must survive and the temp file must go.
TEST_F(SafetensorsTest, WriteFailingPartWayKeepsTheOldFile) {
    std::string path = Path("ckpt.safetensors");
    ASSERT_EQ(Write(path, {Tensor{"old", {1}, {42.0f}}}), 0) << err_.msg;
    std::string before = ReadRaw(path);

    std::mt19937 rng(3);
    Tensor big = RandomTensor("big", {1 << 18}, rng); // 1 MiB
    struct rlimit saved;
    ASSERT_EQ(getrlimit(RLIMIT_FSIZE, &saved), 0);
    void (*old_handler)(int) = signal(SIGXFSZ, SIG_IGN);
    struct rlimit small = saved;
    small.rlim_cur = 64 * 1024;
    ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &small), 0);
    int rc = Write(path, {big});
    ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &saved), 0);
    signal(SIGXFSZ, old_handler);

    EXPECT_EQ(rc, -1);
    EXPECT_EQ(err_.code, CT_EXIT_FAILURE);
    EXPECT_EQ(std::string(err_.msg), path + ": cannot write checkpoint: " + std::strerror(EFBIG));
    EXPECT_EQ(ReadRaw(path), before);
    EXPECT_EQ(Entries(), std::vector<std::string>{"ckpt.safetensors"});
}

TEST_F(SafetensorsTest, WriteRefusesInvalidTensorsAndMetadata) {
    std::string path = Path("ckpt.safetensors");
    auto refused = [&](std::vector<ct_st_tensor> ts, std::vector<ct_st_meta> meta,
                       const std::string &reason) {
        SCOPED_TRACE(reason);
        ct_error_clear(&err_);
        EXPECT_EQ(ct_safetensors_write(path.c_str(), ts.data(), static_cast<int>(ts.size()), meta.data(),
                                       static_cast<int>(meta.size()), &err_),
                  -1);
        EXPECT_EQ(std::string(err_.msg).rfind(path + ": cannot write checkpoint: ", 0), 0u) << err_.msg;
        EXPECT_NE(std::string(err_.msg).find(reason), std::string::npos) << err_.msg;
        EXPECT_TRUE(Entries().empty());
    };
    Tensor a{"a", {2}, {1.0f, 2.0f}};
    ct_st_tensor good = a.view();

    ct_st_tensor t = good;
    t.name[0] = '\0';
    refused({t}, {}, "tensor 0 has an empty name");
    t = good;
    std::memset(t.name, 'x', sizeof t.name);
    refused({good, t}, {}, "tensor 1 has a name of 128 bytes or more");
    refused({good, good}, {}, "duplicate tensor name \"a\"");
    t = good;
    std::snprintf(t.name, sizeof t.name, "__metadata__");
    refused({t}, {}, "reserved");
    t = good;
    std::snprintf(t.name, sizeof t.name, "bad\xff");
    refused({t}, {}, "not valid UTF-8");
    t = good;
    t.rank = CT_ST_MAX_RANK + 1;
    refused({t}, {}, "has rank 9");
    t = good;
    t.rank = -1;
    refused({t}, {}, "has rank -1");
    t = good;
    t.count = 3;
    refused({t}, {}, "has count 3 but its shape holds 2");
    t = good;
    t.data = nullptr;
    refused({t}, {}, "has no data");
    t = good;
    t.rank = 3;
    t.shape[0] = t.shape[1] = t.shape[2] = uint64_t(1) << 32;
    refused({t}, {}, "overflows");
    refused({good}, {Meta("k", "1"), Meta("k", "2")}, "duplicate metadata key \"k\"");
    ct_st_meta m = Meta("k", "v");
    std::memset(m.value, 'v', sizeof m.value);
    refused({good}, {m}, "metadata entry 0 is not NUL-terminated");
    refused({good}, {Meta("k", "\xc0\x80")}, "metadata entry 0 is not valid UTF-8");
}

TEST_F(SafetensorsTest, ReadNamesThePathWhenTheFileIsMissingOrNotAFile) {
    std::string path = Path("missing.safetensors");
    ASSERT_EQ(ct_safetensors_read(path.c_str(), &file_, &err_), -1);
    EXPECT_EQ(std::string(err_.msg), path + ": cannot open: " + std::strerror(ENOENT));
    EXPECT_EQ(err_.code, CT_EXIT_BAD_INPUT);
    ASSERT_EQ(ct_safetensors_read(dir_.c_str(), &file_, &err_), -1);
    EXPECT_EQ(std::string(err_.msg), dir_ + ": not a regular file");
    // A FIFO with no writer: refused at once, not waited on.
    std::string fifo = Path("fifo");
    ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
    ASSERT_EQ(ct_safetensors_read(fifo.c_str(), &file_, &err_), -1);
    EXPECT_EQ(std::string(err_.msg), fifo + ": not a regular file");
}

// ---------------------------------------------------------------------------
// Malformed files

const std::string kGoodEntry = "{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}";

std::string TwoTensors(const std::string &name1, const std::string &entry1, const std::string &name2,
                       const std::string &entry2, size_t data_bytes) {
    return StFile("{\"" + name1 + "\":" + entry1 + ",\"" + name2 + "\":" + entry2 + "}", Zeros(data_bytes));
}

std::string OneTensor(const std::string &entry, const std::string &data = Zeros(8)) {
    return StFile("{\"a\":" + entry + "}", data);
}

TEST_F(SafetensorsTest, RefusesATruncatedLengthField) {
    std::string good = PythonFile();
    for (size_t n = 0; n < 8; ++n)
        ExpectRefused(good.substr(0, n), "too short for the 8-byte header length",
                      "length cut at " + std::to_string(n));
}

TEST_F(SafetensorsTest, RefusesHeaderLengthsTheFileCannotHold) {
    std::string good = PythonFile();
    std::string body = good.substr(8);
    ExpectRefused(Le64(body.size() + 1) + body, "more than the 64 bytes that follow it",
                  "N one past the file");
    ExpectRefused(Le64(uint64_t(1) << 63) + body, "exceeds the 100000000-byte limit", "N = 2^63");
    ExpectRefused(Le64(UINT64_MAX) + body, "exceeds the 100000000-byte limit", "N = 2^64-1");
    ExpectRefused(Le64(0) + body, "not a JSON object", "N = 0");
}

// Above the 100 MB limit but within the file: refused before the header is
// read, so it costs nothing (the file is sparse).
TEST_F(SafetensorsTest, RefusesAHeaderAboveTheLimitEvenWhenTheFileHoldsIt) {
    std::string path = Path("huge.safetensors");
    WriteRaw(path, Le64(100000001));
    ASSERT_EQ(truncate(path.c_str(), 8 + 100000001 + 8), 0);
    ASSERT_EQ(ct_safetensors_read(path.c_str(), &file_, &err_), -1);
    EXPECT_EQ(std::string(err_.msg), path + ": header length 100000001 exceeds the 100000000-byte limit");
}

struct BadCase {
    const char *label;
    std::string bytes;
    const char *reason;
};

std::vector<BadCase> MalformedJson() {
    const char *json = "malformed header JSON";
    return {
        {"empty object text", StFile("        "), "not a JSON object"},
        {"array at top", StFile("[]"), "not a JSON object"},
        {"string at top", StFile("\"a\""), "not a JSON object"},
        {"number at top", StFile("12"), "not a JSON object"},
        {"unclosed object", StFile("{"), json},
        {"closing only", StFile("}"), "not a JSON object"},
        {"missing value", StFile("{\"a\":}"), json},
        {"missing colon", StFile("{\"a\" " + kGoodEntry + "}", Zeros(8)), "expected ':'"},
        {"trailing comma", StFile("{\"a\":" + kGoodEntry + ",}", Zeros(8)), "expected a string"},
        {"trailing comma in shape", OneTensor("{\"dtype\":\"F32\",\"shape\":[2,],\"data_offsets\":[0,8]}"),
         json},
        {"two objects", StFile("{}{}"), "unexpected text after the header object"},
        {"garbage after object", StFile("{} x"), "unexpected text after the header object"},
        {"NUL padding", StFile(std::string("{}\0\0", 4)), "unexpected text after the header object"},
        {"single quotes", StFile("{'a':1}"), "expected a string"},
        {"unquoted key", StFile("{a:1}"), "expected a string"},
        {"unterminated string", StFile("{\"abc"), "unterminated string"},
        {"bad escape", StFile("{\"a\\x\":" + kGoodEntry + "}", Zeros(8)), "escape"},
        {"short unicode escape", StFile("{\"a\\u12\":" + kGoodEntry + "}", Zeros(8)), "4 hex digits"},
        {"non-hex unicode escape", StFile("{\"a\\u12G4\":" + kGoodEntry + "}", Zeros(8)), "4 hex digits"},
        {"lone high surrogate", StFile("{\"a\\ud800\":" + kGoodEntry + "}", Zeros(8)),
         "unpaired UTF-16 surrogate"},
        {"lone low surrogate", StFile("{\"a\\udc00\":" + kGoodEntry + "}", Zeros(8)),
         "unpaired UTF-16 surrogate"},
        {"escaped NUL", StFile("{\"a\\u0000\":" + kGoodEntry + "}", Zeros(8)), "\\u0000"},
        {"raw control character", StFile("{\"a\tb\":" + kGoodEntry + "}", Zeros(8)),
         "control character 0x09"},
        {"invalid UTF-8", StFile("{\"a\xff\":" + kGoodEntry + "}", Zeros(8)), "not valid UTF-8"},
        {"overlong UTF-8", StFile("{\"a\xc0\xaf\":" + kGoodEntry + "}", Zeros(8)), "not valid UTF-8"},
        {"UTF-8 surrogate", StFile("{\"a\xed\xa0\x80\":" + kGoodEntry + "}", Zeros(8)), "not valid UTF-8"},
        {"cut UTF-8", StFile("{\"a\":" + kGoodEntry + "}\xe6\x97", Zeros(8)), "not valid UTF-8"},
        {"tensor is a number", OneTensor("5"), "expected '{'"},
        {"tensor is null", OneTensor("null"), "expected '{'"},
        {"metadata is a string", StFile("{\"__metadata__\":\"x\"}"), "expected '{'"},
        {"metadata value is a number", StFile("{\"__metadata__\":{\"k\":1}}"), "expected a string"},
        {"metadata value is an object", StFile("{\"__metadata__\":{\"k\":{}}}"), "expected a string"},
        {"metadata is null", StFile("{\"__metadata__\":null}"), "expected '{'"},
    };
}

TEST_F(SafetensorsTest, RefusesMalformedJson) {
    for (const BadCase &c : MalformedJson()) ExpectRefused(c.bytes, c.reason, c.label);
}

std::vector<BadCase> BadTensors() {
    auto entry = [](const std::string &dtype, const std::string &shape, const std::string &offsets) {
        return "{\"dtype\":" + dtype + ",\"shape\":" + shape + ",\"data_offsets\":" + offsets + "}";
    };
    return {
        {"BF16", OneTensor(entry("\"BF16\"", "[4]", "[0,8]")),
         "tensor a has dtype BF16; cutrain reads F32 only"},
        {"F64", OneTensor(entry("\"F64\"", "[1]", "[0,8]")),
         "tensor a has dtype F64; cutrain reads F32 only"},
        {"lowercase f32", OneTensor(entry("\"f32\"", "[2]", "[0,8]")), "has dtype f32"},
        {"dtype not a string", OneTensor(entry("32", "[2]", "[0,8]")), "expected a string"},
        {"long dtype", OneTensor(entry("\"" + std::string(100, 'F') + "\"", "[2]", "[0,8]")),
         "a dtype in the header is longer than 15 bytes"},
        {"shape mismatch", OneTensor(entry("\"F32\"", "[3]", "[0,8]")),
         "tensor a has 3 elements but data_offsets [0, 8] span 8 bytes"},
        {"rank-0 mismatch", OneTensor(entry("\"F32\"", "[]", "[0,8]")), "has 1 elements"},
        {"zero dim with bytes", OneTensor(entry("\"F32\"", "[0,2]", "[0,8]")), "has 0 elements"},
        {"end past data", OneTensor(entry("\"F32\"", "[4]", "[0,16]")),
         "tensor a ends at data byte 16 but the data section is 8 bytes"},
        {"begin past data", OneTensor(entry("\"F32\"", "[0]", "[12,12]")), "ends at data byte 12"},
        {"begin after end", OneTensor(entry("\"F32\"", "[2]", "[8,0]")),
         "data_offsets [8, 0] with begin after end"},
        {"unaligned offset", OneTensor(entry("\"F32\"", "[1]", "[2,6]")),
         "starts at data byte 2, not a multiple of 4"},
        {"one offset", OneTensor(entry("\"F32\"", "[2]", "[8]")), "has 1 data_offsets"},
        {"three offsets", OneTensor(entry("\"F32\"", "[2]", "[0,8,8]")), "has 3 data_offsets"},
        {"offsets not an array", OneTensor(entry("\"F32\"", "[2]", "8")), "expected '['"},
        {"rank 9", OneTensor(entry("\"F32\"", "[1,1,1,1,1,1,1,1,2]", "[0,8]")),
         "tensor a has rank 9; cutrain reads rank <= 8"},
        {"shape overflows", OneTensor(entry("\"F32\"", "[4294967296,4294967296,2]", "[0,8]")),
         "element count overflows"},
        {"bytes overflow", OneTensor(entry("\"F32\"", "[4611686018427387904]", "[0,8]")), "span 8 bytes"},
        {"shape number too big", OneTensor(entry("\"F32\"", "[18446744073709551616]", "[0,8]")),
         "integer larger than 2^64-1"},
        {"non-numeric shape", OneTensor(entry("\"F32\"", "[\"2\"]", "[0,8]")),
         "expected a non-negative integer"},
        {"shape is a string", OneTensor(entry("\"F32\"", "\"2\"", "[0,8]")), "expected '['"},
        {"shape is null", OneTensor(entry("\"F32\"", "null", "[0,8]")), "expected '['"},
        {"shape true", OneTensor(entry("\"F32\"", "[true]", "[0,8]")), "expected a non-negative integer"},
        {"negative dim", OneTensor(entry("\"F32\"", "[-2]", "[0,8]")), "negative number"},
        {"negative offset", OneTensor(entry("\"F32\"", "[2]", "[-8,0]")), "negative number"},
        {"fractional dim", OneTensor(entry("\"F32\"", "[2.0]", "[0,8]")), "fraction or exponent"},
        {"exponent dim", OneTensor(entry("\"F32\"", "[2e0]", "[0,8]")), "fraction or exponent"},
        {"leading zero", OneTensor(entry("\"F32\"", "[02]", "[0,8]")), "leading zero"},
        {"plus sign", OneTensor(entry("\"F32\"", "[+2]", "[0,8]")), "expected a non-negative integer"},
        {"missing dtype", OneTensor("{\"shape\":[2],\"data_offsets\":[0,8]}"), "tensor a has no \"dtype\""},
        {"missing offsets", OneTensor("{\"dtype\":\"F32\",\"shape\":[2]}"),
         "tensor a has no \"data_offsets\""},
        {"empty entry", OneTensor("{}"), "tensor a has no \"dtype\""},
        {"unknown field", OneTensor("{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8],\"x\":[]}"),
         "tensor a has unknown field \"x\""},
        {"field twice", OneTensor("{\"dtype\":\"F32\",\"shape\":[2],\"shape\":[2],\"data_offsets\":[0,8]}"),
         "tensor a has field \"shape\" twice"},
        {"empty name", StFile("{\"\":" + kGoodEntry + "}", Zeros(8)), "empty tensor name"},
        {"duplicate names", StFile("{\"a\":" + kGoodEntry + ",\"a\":" + kGoodEntry + "}", Zeros(8)),
         "duplicate tensor name \"a\""},
        {"duplicate metadata", StFile("{\"__metadata__\":{},\"__metadata__\":{}}"),
         "duplicate key \"__metadata__\""},
        {"duplicate metadata key", StFile("{\"__metadata__\":{\"k\":\"1\",\"k\":\"2\"}}"),
         "duplicate metadata key \"k\""},
        {"overlap",
         TwoTensors("a", entry("\"F32\"", "[2]", "[0,8]"), "b", entry("\"F32\"", "[2]", "[4,12]"), 12),
         "tensors a and b overlap"},
        {"same range", TwoTensors("a", kGoodEntry, "b", kGoodEntry, 8), "tensors a and b overlap"},
        {"contained range",
         TwoTensors("b", entry("\"F32\"", "[1]", "[4,8]"), "a", entry("\"F32\"", "[4]", "[0,16]"), 16),
         "tensors a and b overlap"},
        {"trailing garbage", OneTensor(kGoodEntry, Zeros(12)), "4 bytes after the last tensor"},
        {"data but no tensors", StFile("{}      ", Zeros(3)), "3 bytes after the last tensor"},
    };
}

TEST_F(SafetensorsTest, RefusesInconsistentTensors) {
    for (const BadCase &c : BadTensors()) ExpectRefused(c.bytes, c.reason, c.label);
}

// The parser never recurses and never buffers more than a field can hold,
// so depth and length cost nothing but a clean refusal.
TEST_F(SafetensorsTest, RefusesDeepNestingAndHugeStrings) {
    const size_t deep = 1 << 20;
    ExpectRefused(StFile(std::string(deep, '[') + std::string(deep, ']')), "not a JSON object",
                  "deep arrays");
    ExpectRefused(StFile(std::string(deep, '{') + std::string(deep, '}')), "expected a string",
                  "deep objects");
    ExpectRefused(OneTensor("{\"dtype\":\"F32\",\"shape\":" + std::string(deep, '[') + "2" +
                            std::string(deep, ']') + ",\"data_offsets\":[0,8]}"),
                  "expected a non-negative integer", "deep shape");
    ExpectRefused(StFile("{\"__metadata__\":{\"k\":" + std::string(deep, '{') + "}}"), "expected a string",
                  "deep metadata");
    ExpectRefused(StFile("{\"" + std::string(4 << 20, 'n') + "\":" + kGoodEntry + "}", Zeros(8)),
                  "a tensor name in the header is longer than 127 bytes", "4 MB name");
    ExpectRefused(StFile("{\"" + std::string(128, 'n') + "\":" + kGoodEntry + "}", Zeros(8)),
                  "longer than 127 bytes", "128-byte name");
    ExpectRefused(StFile("{\"__metadata__\":{\"k\":\"" + std::string(1024, 'v') + "\"}}"),
                  "a metadata value in the header is longer than 1023 bytes", "1024-byte value");
    ExpectRefused(StFile("{\"__metadata__\":{\"" + std::string(64, 'k') + "\":\"v\"}}"),
                  "a metadata key in the header is longer than 63 bytes", "64-byte key");
    // An escape that expands past the limit at the very end.
    ExpectRefused(StFile("{\"" + std::string(126, 'n') + "\\u00e9\":" + kGoodEntry + "}", Zeros(8)),
                  "longer than 127 bytes", "escape past the name limit");
    ExpectRefused(StFile("{\"" + std::string(4 << 20, 'n')), "longer than 127 bytes",
                  "unterminated 4 MB name");

    std::string many = "{\"__metadata__\":{";
    for (int i = 0; i <= 4096; ++i) many += (i ? ",\"" : "\"") + std::to_string(i) + "\":\"\"";
    ExpectRefused(StFile(many + "}}"), "more than 4096 metadata entries", "too many metadata entries");
}

// The longest names and values the structs hold do round trip.
TEST_F(SafetensorsTest, LongestNamesAndValuesRoundTrip) {
    std::string name(CT_ST_MAX_NAME - 1, 'n');
    ct_st_meta m = Meta(std::string(63, 'k'), "");
    std::memset(m.value, 'v', sizeof m.value - 1);
    std::string path = Path("long.safetensors");
    ASSERT_EQ(Write(path, {Tensor{name, {1}, {3.0f}}}, {m}), 0) << err_.msg;
    ASSERT_EQ(ct_safetensors_read(path.c_str(), &file_, &err_), 0) << err_.msg;
    ASSERT_NE(ct_safetensors_find(&file_, name.c_str()), nullptr);
    EXPECT_EQ(std::strlen(ct_safetensors_meta(&file_, m.key)), 1023u);
}

// Every prefix of a good file is refused: either the header is cut, or the
// last tensor (which is not empty) runs past the data.
TEST_F(SafetensorsTest, RefusesEveryTruncationOfAGoodFile) {
    Fixture fx = MakeFixture();
    std::string path = Path("good.safetensors");
    ASSERT_EQ(Write(path, fx.tensors, fx.meta), 0) << err_.msg;
    std::string good = ReadRaw(path);
    for (size_t n = 0; n < good.size(); ++n) {
        ct_error err;
        ct_st_file f;
        WriteRaw(path, good.substr(0, n));
        ASSERT_EQ(ct_safetensors_read(path.c_str(), &f, &err), -1) << "cut at " << n;
        ASSERT_EQ(std::string(err.msg).rfind(path + ": ", 0), 0u) << err.msg;
        ASSERT_EQ(f.blob, nullptr);
    }
}

// Single-byte corruptions anywhere in the length or header: each read either
// succeeds with a consistent result or is refused with the path, and never
// crashes (the suite also runs under ASan, which turns an overrun or a leak
// into a failure here).
TEST_F(SafetensorsTest, SurvivesSingleByteCorruptions) {
    Fixture fx = MakeFixture();
    std::string path = Path("good.safetensors");
    ASSERT_EQ(Write(path, fx.tensors, fx.meta), 0) << err_.msg;
    const std::string good = ReadRaw(path);
    const size_t header_end = 8 + ReadLe64(good);
    const char replacements[] = {'\0', '\xff', '"', '\\', '{', '}', '[', ']', ',', ':', '9', '0', ' ', 'u'};
    int accepted = 0, refused = 0;
    for (size_t i = 0; i < header_end; ++i) {
        for (char c : replacements) {
            if (good[i] == c) continue;
            std::string bad = good;
            bad[i] = c;
            WriteRaw(path, bad);
            ct_error err;
            ct_st_file f;
            if (ct_safetensors_read(path.c_str(), &f, &err) == 0) {
                ++accepted;
                uint64_t data_size = bad.size() - header_end;
                for (int t = 0; t < f.n_tensors; ++t) {
                    const char *begin = static_cast<const char *>(f.blob);
                    const char *p = reinterpret_cast<const char *>(f.tensors[t].data);
                    ASSERT_TRUE(p >= begin && p + f.tensors[t].count * 4 <= begin + data_size) << i;
                }
                ct_safetensors_free(&f);
            } else {
                ++refused;
                ASSERT_EQ(std::string(err.msg).rfind(path + ": ", 0), 0u) << err.msg;
            }
        }
    }
    EXPECT_GT(refused, 0);
    EXPECT_GT(accepted, 0); // e.g. a changed digit in a tensor name
}

} // namespace
