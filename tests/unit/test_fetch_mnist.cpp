// tools/fetch-mnist, offline: it copies from a --from directory of small fake
// files whose sums come from a --sums file, so every run is fast and the
// verification has something real to accept or reject.
#include <gtest/gtest.h>

#include "support/fixtures.h"
#include <sys/wait.h>
#include <zlib.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "cutrain/data.h"

namespace fs = std::filesystem;
using Bytes = std::vector<uint8_t>;

namespace {

const std::string kScript = CT_SOURCE_DIR "/tools/fetch-mnist";

// The fake files' content and the SHA-256 of that content (`sha256sum`).
struct Fake {
    const char *name;
    const char *content;
    const char *sha256;
    bool gz;  // stored gzip-compressed in the source
};

const Fake kFakes[] = {
    {"train-images-idx3-ubyte", "fake train images\n",
     "939b31af4a1c2c65d93c2fe485bd2a3bfc12aa3ce46526e3efa787f1b8eb001e", false},
    {"train-labels-idx1-ubyte", "fake train labels\n",
     "5ae26efe0f139d006892b7d6965b2c35adf03b7040e27db8a239140aa2d2b78a", true},
    {"t10k-images-idx3-ubyte", "fake t10k images\n",
     "338bfee528c262d1f29dc7a9592cd55f79dc70e8cfa97ac8bd1b880afb4ac652", true},
    {"t10k-labels-idx1-ubyte", "fake t10k labels\n",
     "ea649e070da5059b60f644a918fb40e52cf25972c7fa53ef46e651e950b85b10", false},
};

Bytes to_bytes(const std::string &s) { return Bytes(s.begin(), s.end()); }


void write_file(const std::string &path, const Bytes &b) {
    std::ofstream f(path, std::ios::binary | std::ios::trunc);
    f.write(reinterpret_cast<const char *>(b.data()), static_cast<std::streamsize>(b.size()));
    if (!f) throw std::runtime_error("cannot write " + path);
}

Bytes read_file(const std::string &path) {
    std::ifstream f(path, std::ios::binary);
    return Bytes(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}

std::string shell_quote(const std::string &s) {
    std::string q = "'";
    for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
    return q + "'";
}

bool has(const std::string &text, const std::string &needle) {
    return text.find(needle) != std::string::npos;
}

size_t count_lines(const std::string &s) {
    size_t n = 0;
    for (char c : s) n += c == '\n';
    return n;
}

struct Result {
    int status = -1;
    std::string out;
    std::string err;
};

class FetchMnist : public ::testing::Test {
  protected:
    void SetUp() override {
        std::string tmpl = (fs::temp_directory_path() / "cutrain-fetch-XXXXXX").string();
        ASSERT_NE(nullptr, mkdtemp(tmpl.data()));
        root = tmpl;
        src = root + "/src";
        parent = root + "/out";
        dest = parent + "/mnist";
        sums = root + "/sums";
        fs::create_directories(src);
        fs::create_directories(parent);
        std::string text;
        for (const Fake &f : kFakes) {
            put_source(f.name, to_bytes(f.content), f.gz);
            text += std::string(f.sha256) + "  " + f.name + "\n";
        }
        write_file(sums, to_bytes(text));
    }
    void TearDown() override {
        std::error_code ec;
        fs::remove_all(root, ec);
    }

    // Replaces NAME in the source by CONTENT, raw or as NAME.gz.
    void put_source(const std::string &name, const Bytes &content, bool gz) {
        fs::remove(src + "/" + name);
        fs::remove(src + "/" + name + ".gz");
        write_file(src + "/" + name + (gz ? ".gz" : ""), gz ? ct_test::gzip_bytes(content) : content);
    }

    // Runs the script (the checkout's, or a copy elsewhere) with args.
    Result run(const std::string &args, const std::string &script = kScript) {
        std::string errfile = root + "/stderr.txt";
        std::string cmd = "env -u CUTRAIN_MNIST_SOURCE " + shell_quote(script) + " " + args +
                          " 2>" + shell_quote(errfile);
        Result r;
        FILE *p = popen(cmd.c_str(), "r");
        if (!p) return r;
        char buf[4096];
        size_t n;
        while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) r.out.append(buf, n);
        int st = pclose(p);
        r.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
        Bytes e = read_file(errfile);
        r.err.assign(e.begin(), e.end());
        return r;
    }

    Result fetch(const std::string &extra = "") {
        return run("--offline --from " + shell_quote(src) + " --dest " + shell_quote(dest) +
                   " --sums " + shell_quote(sums) + (extra.empty() ? "" : " " + extra));
    }

    // Everything in the destination's parent: the destination itself and any
    // staging directory left behind.
    std::vector<std::string> parent_entries() {
        std::vector<std::string> names;
        for (const auto &e : fs::directory_iterator(parent)) names.push_back(e.path().filename());
        return names;
    }

    void expect_installed() {
        for (const Fake &f : kFakes) {
            std::string stored = dest + "/" + f.name + (f.gz ? ".gz" : "");
            EXPECT_TRUE(fs::is_regular_file(stored)) << stored;
            EXPECT_EQ(read_file(src + "/" + f.name + (f.gz ? ".gz" : "")), read_file(stored))
                << stored;
        }
    }

    std::string root, src, parent, dest, sums;
};

TEST_F(FetchMnist, CopiesAndVerifies) {
    Result r = fetch();
    ASSERT_EQ(0, r.status) << r.out << r.err;
    EXPECT_TRUE(has(r.out, "verified")) << r.out;
    expect_installed();
    // Stored as they came: no raw copy of a gzip file and vice versa.
    EXPECT_FALSE(fs::exists(dest + "/train-labels-idx1-ubyte"));
    EXPECT_FALSE(fs::exists(dest + "/train-images-idx3-ubyte.gz"));
    EXPECT_EQ(std::vector<std::string>{"mnist"}, parent_entries());
    // The reader finds what the tool installed.
    char images[1024], labels[1024];
    ct_error err{};
    ASSERT_EQ(0, ct_mnist_find(dest.c_str(), "train", images, labels, sizeof images, &err))
        << err.msg;
    EXPECT_EQ(dest + "/train-labels-idx1-ubyte.gz", labels);
}

TEST_F(FetchMnist, VerifiedFilesAreLeftAlone) {
    ASSERT_EQ(0, fetch().status);
    // With the source gone, only the "already there" path can succeed.
    fs::remove_all(src);
    Result r = fetch();
    EXPECT_EQ(0, r.status) << r.out << r.err;
    EXPECT_TRUE(has(r.out, "already present and verified")) << r.out;
    EXPECT_EQ(std::vector<std::string>{"mnist"}, parent_entries());
}

TEST_F(FetchMnist, CorruptedFileIsRejectedAndNothingInstalled) {
    put_source("train-images-idx3-ubyte", to_bytes("fake train images, corrupted\n"), false);
    Result r = fetch();
    EXPECT_EQ(1, r.status) << r.out << r.err;
    EXPECT_EQ(1u, count_lines(r.err)) << r.err;
    EXPECT_TRUE(has(r.err, "train-images-idx3-ubyte")) << r.err;
    EXPECT_TRUE(has(r.err, "SHA-256 mismatch")) << r.err;
    EXPECT_TRUE(has(r.err, kFakes[0].sha256)) << r.err;
    EXPECT_TRUE(has(r.err, "f2e1f4e00394e6a9902567d0d031ccf165458c975ae1c1e9ed7cc1083b8ab821"))
        << r.err;
    EXPECT_FALSE(fs::exists(dest));
    EXPECT_TRUE(parent_entries().empty());
}

// A source nobody named (../shared/data/mnist beside the checkout) that
// holds a bad copy is passed over for the next source, not the end of the
// run; offline there is no next one, and that is what it says. A named source
// (--from, above) stays strict.
TEST_F(FetchMnist, ABadCopyInTheSharedDirectoryIsPassedOver) {
    const std::string repo = root + "/repo", shared = root + "/shared/data";
    fs::create_directories(repo + "/tools");
    fs::create_directories(shared);
    fs::copy_file(kScript, repo + "/tools/fetch-mnist");
    fs::permissions(repo + "/tools/fetch-mnist", fs::perms::owner_all);
    fs::create_directory_symlink(src, shared + "/mnist");
    const std::string args = "--offline --dest " + shell_quote(dest) + " --sums " + shell_quote(sums);
    Result r = run(args, repo + "/tools/fetch-mnist");
    ASSERT_EQ(0, r.status) << r.out << r.err;  // a good copy is used
    fs::remove_all(dest);
    put_source("train-images-idx3-ubyte", to_bytes("fake train images, corrupted\n"), false);
    r = run(args, repo + "/tools/fetch-mnist");
    EXPECT_EQ(1, r.status) << r.out << r.err;
    const std::string said = r.out + r.err;  // notes on stdout, the error on stderr
    EXPECT_TRUE(has(said, "train-images-idx3-ubyte: not the MNIST file its checksum names")) << said;
    EXPECT_TRUE(has(said, "trying the next source")) << said;
    EXPECT_TRUE(has(r.err, "--offline forbids the network")) << r.err;
    EXPECT_FALSE(fs::exists(dest));
}

TEST_F(FetchMnist, CorruptedGzipIsRejected) {
    Bytes gz = ct_test::gzip_bytes(to_bytes(kFakes[2].content));
    gz.resize(gz.size() - 4);  // lose the length trailer
    write_file(src + "/t10k-images-idx3-ubyte.gz", gz);
    Result r = fetch();
    EXPECT_EQ(1, r.status) << r.out << r.err;
    EXPECT_EQ(1u, count_lines(r.err)) << r.err;
    EXPECT_TRUE(has(r.err, "t10k-images-idx3-ubyte")) << r.err;
    EXPECT_FALSE(fs::exists(dest));
    EXPECT_TRUE(parent_entries().empty());
}

TEST_F(FetchMnist, ABadFileInTheDestinationIsReplaced) {
    fs::create_directories(dest);
    write_file(dest + "/train-labels-idx1-ubyte", to_bytes("stale\n"));  // raw would win
    write_file(dest + "/README", to_bytes("mine\n"));
    Result r = fetch();
    ASSERT_EQ(0, r.status) << r.out << r.err;
    expect_installed();
    EXPECT_FALSE(fs::exists(dest + "/train-labels-idx1-ubyte"));
    EXPECT_EQ(to_bytes("mine\n"), read_file(dest + "/README"));
}

TEST_F(FetchMnist, DottedSpellingIsStoredUnderTheStandardName) {
    fs::rename(src + "/t10k-labels-idx1-ubyte", src + "/t10k-labels.idx1-ubyte");
    Result r = fetch();
    ASSERT_EQ(0, r.status) << r.out << r.err;
    EXPECT_EQ(to_bytes(kFakes[3].content), read_file(dest + "/t10k-labels-idx1-ubyte"));
}

TEST_F(FetchMnist, AnIncompleteSourceIsAnError) {
    fs::remove(src + "/t10k-labels-idx1-ubyte");
    Result r = fetch();
    EXPECT_EQ(1, r.status) << r.out << r.err;
    EXPECT_TRUE(has(r.err, src + ": no t10k-labels-idx1-ubyte")) << r.err;
    EXPECT_FALSE(fs::exists(dest));
    EXPECT_TRUE(parent_entries().empty());
}

TEST_F(FetchMnist, SumsFileMustCoverEveryFile) {
    write_file(sums, to_bytes(std::string(kFakes[0].sha256) + "  " + kFakes[0].name + "\n"));
    Result r = fetch();
    EXPECT_EQ(1, r.status) << r.out << r.err;
    EXPECT_TRUE(has(r.err, "no SHA-256 for train-labels-idx1-ubyte")) << r.err;
    EXPECT_FALSE(fs::exists(dest));
}

TEST_F(FetchMnist, HelpAndBadArguments) {
    Result h = run("--help");
    EXPECT_EQ(0, h.status);
    for (const char *opt : {"Usage", "--dest", "--from", "--sums", "--offline"})
        EXPECT_TRUE(has(h.out, opt)) << h.out;
    Result bad = run("--no-such-option");
    EXPECT_EQ(2, bad.status);
    EXPECT_TRUE(has(bad.err, "--no-such-option")) << bad.err;
    EXPECT_EQ(2, run("--dest").status);
}

// The sums shipped in tools/mnist.sha256 accept the real files.
TEST_F(FetchMnist, ShippedSumsMatchTheRealMnist) {
    const std::string real = CT_SOURCE_DIR "/../shared/data/mnist";
    char images[1024], labels[1024];
    ct_error err{};
    if (ct_mnist_find(real.c_str(), "test", images, labels, sizeof images, &err) != 0)
        GTEST_SKIP() << "no MNIST beside the repository: " << err.msg;
    Result r = run("--offline --from " + shell_quote(real) + " --dest " + shell_quote(dest));
    ASSERT_EQ(0, r.status) << r.out << r.err;
    ct_dataset ds{};
    ASSERT_EQ(0, ct_mnist_find(dest.c_str(), "test", images, labels, sizeof images, &err));
    ASSERT_EQ(0, ct_dataset_load(images, labels, &ds, &err)) << err.msg;
    EXPECT_EQ(10000u, ds.count);
    ct_dataset_free(&ds);
}

}  // namespace
