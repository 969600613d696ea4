// The data layer: IDX loading (raw and gzip, every way a file can be wrong),
// datasets, finding MNIST, the epoch shuffle, and the real MNIST when present.
// Fixtures are written at run time by the test's own IDX writer (and the shared gzip one), so
// every malformed case is built byte by byte in plain sight.
#include <gtest/gtest.h>

#include "support/fixtures.h"
#include <zlib.h>

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <string>
#include <vector>

#ifdef __linux__
#include <sys/resource.h>
#include <unistd.h>
#endif

#include "cutrain/data.h"
#include "cutrain/rng.h"

namespace fs = std::filesystem;
using Bytes = std::vector<uint8_t>;

namespace {

// ---- fixture writers ------------------------------------------------------

class TempDir {
  public:
    TempDir() {
        std::string tmpl = (fs::temp_directory_path() / "cutrain-data-XXXXXX").string();
        if (!mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed");
        path_ = tmpl;
    }
    ~TempDir() {
        std::error_code ec;
        fs::remove_all(path_, ec);
    }
    const std::string &path() const { return path_; }
    std::string operator/(const std::string &name) const { return path_ + "/" + name; }

  private:
    std::string path_;
};

void put_be32(Bytes &b, uint32_t v) {
    for (int s = 24; s >= 0; s -= 8) b.push_back(static_cast<uint8_t>(v >> s));
}

Bytes idx_header(uint8_t type, const std::vector<uint32_t> &dims) {
    Bytes b = {0, 0, type, static_cast<uint8_t>(dims.size())};
    for (uint32_t d : dims) put_be32(b, d);
    return b;
}

Bytes idx_u8(const std::vector<uint32_t> &dims, const Bytes &data) {
    Bytes b = idx_header(CT_ELEM_U8, dims);
    b.insert(b.end(), data.begin(), data.end());
    return b;
}

Bytes idx_f32(const std::vector<uint32_t> &dims, const std::vector<float> &values) {
    Bytes b = idx_header(CT_ELEM_F32, dims);
    for (float f : values) {
        uint32_t u;
        std::memcpy(&u, &f, sizeof u);
        put_be32(b, u);
    }
    return b;
}


// Incompressible bytes, so a gzip of them is as long as they are and a cut
// or a flipped byte lands in the middle of real deflate data.
Bytes noise(size_t n, uint32_t seed) {
    Bytes b(n);
    uint32_t x = seed * 2654435761u + 1;
    for (auto &v : b) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        v = static_cast<uint8_t>(x >> 24);
    }
    return b;
}

void write_file(const std::string &path, const Bytes &b) {
    std::ofstream f(path, std::ios::binary | std::ios::trunc);
    f.write(reinterpret_cast<const char *>(b.data()), static_cast<std::streamsize>(b.size()));
    if (!f) throw std::runtime_error("cannot write " + path);
}

Bytes concat(Bytes a, const Bytes &b) {
    a.insert(a.end(), b.begin(), b.end());
    return a;
}

bool has(const std::string &msg, const std::string &needle) {
    return msg.find(needle) != std::string::npos;
}

// ---- the IDX loader -------------------------------------------------------

class IdxLoad : public ::testing::Test {
  protected:
    std::string put(const std::string &name, const Bytes &b) {
        std::string p = tmp / name;
        write_file(p, b);
        return p;
    }

    // Loads and expects success; the caller frees.
    ct_idx load_ok(const std::string &path) {
        ct_idx idx;
        ct_error err{};
        EXPECT_EQ(0, ct_idx_load(path.c_str(), &idx, &err)) << err.msg;
        return idx;
    }

    // Expects failure with one line that starts with "<path>: " and holds
    // every keyword; the output struct must come back empty.
    std::string expect_fail(const std::string &path, std::vector<std::string> keywords) {
        ct_idx idx;
        std::memset(&idx, 0x5a, sizeof idx);
        ct_error err{};
        EXPECT_EQ(-1, ct_idx_load(path.c_str(), &idx, &err)) << path;
        std::string msg = err.msg;
        EXPECT_EQ(CT_EXIT_BAD_INPUT, err.code) << msg;
        EXPECT_EQ(0u, msg.rfind(path + ": ", 0)) << msg;
        EXPECT_EQ(std::string::npos, msg.find('\n')) << msg;
        for (const auto &k : keywords)
            EXPECT_TRUE(has(msg, k)) << "missing \"" << k << "\" in: " << msg;
        EXPECT_EQ(nullptr, idx.data);
        EXPECT_EQ(0u, idx.count);
        return msg;
    }

    // The same content written raw and gzip-compressed must fail the same way.
    void expect_fail_both(const std::string &name, const Bytes &raw,
                          const std::vector<std::string> &keywords) {
        expect_fail(put(name, raw), keywords);
        expect_fail(put(name + ".gz", ct_test::gzip_bytes(raw)), keywords);
    }

    TempDir tmp;
};

TEST_F(IdxLoad, U8Rank1RawAndGzip) {
    Bytes data = {0, 1, 2, 250, 255};
    Bytes file = idx_u8({5}, data);
    for (const auto &p : {put("l.idx", file), put("l.idx.gz", ct_test::gzip_bytes(file))}) {
        ct_idx idx = load_ok(p);
        EXPECT_EQ(CT_ELEM_U8, idx.elem_type);
        EXPECT_EQ(1, idx.rank);
        EXPECT_EQ(5u, idx.dims[0]);
        EXPECT_EQ(5u, idx.count);
        EXPECT_EQ(1u, idx.item_elems);
        ASSERT_NE(nullptr, idx.data);
        EXPECT_EQ(0, std::memcmp(idx.data, data.data(), data.size()));
        ct_idx_free(&idx);
        EXPECT_EQ(nullptr, idx.data);
    }
}

TEST_F(IdxLoad, U8Rank3RawAndGzip) {
    Bytes data = noise(3 * 4 * 5, 7);
    Bytes file = idx_u8({3, 4, 5}, data);
    for (const auto &p : {put("i.idx", file), put("i.idx.gz", ct_test::gzip_bytes(file))}) {
        ct_idx idx = load_ok(p);
        EXPECT_EQ(3, idx.rank);
        EXPECT_EQ(3u, idx.dims[0]);
        EXPECT_EQ(4u, idx.dims[1]);
        EXPECT_EQ(5u, idx.dims[2]);
        EXPECT_EQ(3u, idx.count);
        EXPECT_EQ(20u, idx.item_elems);
        EXPECT_EQ(0, std::memcmp(idx.data, data.data(), data.size()));
        ct_idx_free(&idx);
    }
}

TEST_F(IdxLoad, F32Rank2RoundTripsExactly) {
    std::vector<float> v = {0.0f, -0.0f, 1.0f, -1.5f, 3.14159274f, 1e-40f /* subnormal */,
                            FLT_MAX, -FLT_MIN, 123456.789f, 0.1f, 255.0f, -7e-3f};
    Bytes file = idx_f32({4, 3}, v);
    for (const auto &p : {put("f.idx", file), put("f.idx.gz", ct_test::gzip_bytes(file))}) {
        ct_idx idx = load_ok(p);
        EXPECT_EQ(CT_ELEM_F32, idx.elem_type);
        EXPECT_EQ(4u, idx.count);
        EXPECT_EQ(3u, idx.item_elems);
        // Bitwise: the byte swap must not round, and -0.0 must stay -0.0.
        EXPECT_EQ(0, std::memcmp(idx.data, v.data(), v.size() * sizeof(float)));
        ct_idx_free(&idx);
    }
}

TEST_F(IdxLoad, Rank4Loads) {
    Bytes data = noise(2 * 3 * 4 * 5, 3);
    ct_idx idx = load_ok(put("r4.idx", idx_u8({2, 3, 4, 5}, data)));
    EXPECT_EQ(4, idx.rank);
    EXPECT_EQ(60u, idx.item_elems);
    EXPECT_EQ(0, std::memcmp(idx.data, data.data(), data.size()));
    ct_idx_free(&idx);
}

TEST_F(IdxLoad, GzipIsDetectedByContentNotName) {
    Bytes data = noise(64, 1);
    Bytes file = idx_u8({8, 8}, data);
    for (const auto &p : {put("gz-named-plainly.idx", ct_test::gzip_bytes(file)), put("raw-named.gz", file)}) {
        ct_idx idx = load_ok(p);
        EXPECT_EQ(8u, idx.count);
        EXPECT_EQ(0, std::memcmp(idx.data, data.data(), data.size()));
        ct_idx_free(&idx);
    }
}

TEST_F(IdxLoad, LargeGzipCrossesBufferBoundaries) {
    // 3 MB: more than the first allocation and many input chunks.
    Bytes data = noise(3 * 1000 * 1000, 11);
    Bytes file = idx_u8({3000, 1000}, data);
    ct_idx idx = load_ok(put("big.idx.gz", ct_test::gzip_bytes(file)));
    EXPECT_EQ(3000u, idx.count);
    EXPECT_EQ(0, std::memcmp(idx.data, data.data(), data.size()));
    ct_idx_free(&idx);
}

TEST_F(IdxLoad, ConcatenatedGzipMembersLoad) {
    // `cat a.gz b.gz` is a valid gzip file holding a then b.
    Bytes data = noise(100, 5);
    Bytes file = idx_u8({10, 10}, data);
    Bytes head(file.begin(), file.begin() + 37), tail(file.begin() + 37, file.end());
    ct_idx idx = load_ok(put("two.idx.gz", concat(ct_test::gzip_bytes(head), ct_test::gzip_bytes(tail))));
    EXPECT_EQ(10u, idx.count);
    EXPECT_EQ(0, std::memcmp(idx.data, data.data(), data.size()));
    ct_idx_free(&idx);
}

TEST_F(IdxLoad, ZeroCountLoadsSoTheCallerCanNameTheProblem) {
    Bytes file = idx_header(CT_ELEM_U8, {0, 28, 28});
    for (const auto &p : {put("empty.idx", file), put("empty.idx.gz", ct_test::gzip_bytes(file))}) {
        ct_idx idx = load_ok(p);
        EXPECT_EQ(0u, idx.count);
        EXPECT_EQ(784u, idx.item_elems);
        ct_idx_free(&idx);
    }
}

TEST_F(IdxLoad, BadMagic) {
    Bytes file = {0x12, 0x34, 0xab, 0xcd, 0, 0, 0, 1, 0};
    std::string msg =
        expect_fail(put("t.idx", file), {"bad magic 0x1234abcd", "expected an IDX file"});
    EXPECT_EQ(tmp / "t.idx" + ": bad magic 0x1234abcd: expected an IDX file (00 00 <type> <rank>)",
              msg);
    expect_fail(put("t.idx.gz", ct_test::gzip_bytes(file)), {"bad magic 0x1234abcd"});
}

TEST_F(IdxLoad, UnsupportedType) {
    expect_fail_both("f64.idx", concat(idx_header(0x0E, {1}), Bytes(8)),
                     {"element type 0x0E", "float64", "expected 0x08"});
    expect_fail_both("t07.idx", concat(idx_header(0x07, {1}), Bytes(1)), {"element type 0x07"});
}

TEST_F(IdxLoad, RankZeroAndFive) {
    expect_fail_both("r0.idx", {0, 0, 0x08, 0}, {"rank 0", "expected 1 to 4"});
    expect_fail_both("r5.idx", concat(idx_header(0x08, {1, 1, 1, 1, 1}), Bytes(1)),
                     {"rank 5", "expected 1 to 4"});
}

TEST_F(IdxLoad, ZeroItemDimension) {
    expect_fail_both("z.idx", idx_header(0x08, {2, 0, 3}), {"dimension 1 is 0", "2 x 0 x 3"});
    expect_fail_both("z2.idx", idx_header(0x0D, {2, 3, 0}), {"dimension 2 is 0"});
}

TEST_F(IdxLoad, TruncatedInTheHeader) {
    expect_fail_both("h0.idx", {}, {"empty file"});
    expect_fail_both("h1.idx", {0}, {"truncated header", "holds 1 bytes"});
    expect_fail_both("h2.idx", {0, 0}, {"truncated header", "holds 2 bytes", "needs 4"});
    expect_fail_both("h3.idx", {0, 0, 8}, {"truncated header", "holds 3 bytes", "needs 4"});
    // Rank 3 needs 16 header bytes; cut after one and a half dims.
    Bytes mid = idx_header(0x08, {60000, 28, 28});
    mid.resize(10);
    expect_fail_both("hmid.idx", mid,
                     {"truncated header", "holds 10 bytes", "rank 3 IDX header needs 16"});
}

TEST_F(IdxLoad, TruncatedData) {
    Bytes short_file = idx_u8({4, 3}, noise(10, 2));
    expect_fail(put("short.idx", short_file),
                {"truncated: header declares 12 bytes of data, file holds 10"});
    expect_fail(put("short.idx.gz", ct_test::gzip_bytes(short_file)),
                {"truncated: header declares 12 bytes of data", "holds 10"});
    Bytes short_f32 = concat(idx_header(0x0D, {2, 2}), Bytes(15));
    expect_fail_both("short_f32.idx", short_f32, {"truncated", "declares 16 bytes", "holds 15"});
}

TEST_F(IdxLoad, TrailingBytes) {
    Bytes long_file = idx_u8({4}, noise(6, 3));
    expect_fail(put("long.idx", long_file), {"2 trailing bytes", "declares 4 bytes", "holds 6"});
    expect_fail(put("long.idx.gz", ct_test::gzip_bytes(long_file)), {"2 trailing bytes", "declares 4", "holds 6"});
    // An empty set with leftovers is not empty.
    expect_fail_both("long0.idx", concat(idx_header(0x08, {0, 2}), Bytes(1)), {"1 trailing byte:"});
}

TEST_F(IdxLoad, GzipCutShort) {
    Bytes gz = ct_test::gzip_bytes(idx_u8({40, 100}, noise(4000, 4)));
    ASSERT_GT(gz.size(), 3000u);
    Bytes half(gz.begin(), gz.begin() + static_cast<long>(gz.size() / 2));
    expect_fail(put("half.idx.gz", half), {"truncated gzip stream"});
    // All the data but no CRC/length trailer: gzread would call this a
    // normal end of file.
    Bytes no_trailer(gz.begin(), gz.end() - 8);
    expect_fail(put("notrailer.idx.gz", no_trailer), {"truncated gzip stream"});
    Bytes one_short(gz.begin(), gz.end() - 1);
    expect_fail(put("oneshort.idx.gz", one_short), {"truncated gzip stream"});
    // Just the gzip magic.
    expect_fail(put("magiconly.gz", {0x1f, 0x8b}), {"truncated gzip stream"});
}

TEST_F(IdxLoad, GzipCorrupt) {
    Bytes gz = ct_test::gzip_bytes(idx_u8({40, 100}, noise(4000, 5)));
    Bytes mid = gz;
    mid[mid.size() / 2] ^= 0x55;
    expect_fail(put("flip.idx.gz", mid), {"corrupt gzip stream"});
    Bytes crc = gz;
    crc[crc.size() - 6] ^= 0x01;  // in the CRC-32
    expect_fail(put("crc.idx.gz", crc), {"corrupt gzip stream", "incorrect data check"});
    Bytes len = gz;
    len[len.size() - 2] ^= 0x01;  // in ISIZE
    expect_fail(put("len.idx.gz", len), {"corrupt gzip stream", "incorrect length check"});
    // In compressible data a flip breaks the deflate codes themselves.
    Bytes pattern(4000);
    for (size_t i = 0; i < pattern.size(); ++i) pattern[i] = static_cast<uint8_t>(i * i % 13);
    Bytes codes = ct_test::gzip_bytes(idx_u8({40, 100}, pattern));
    codes[codes.size() / 2] ^= 0xff;
    expect_fail(put("codes.idx.gz", codes), {"corrupt gzip stream"});
    expect_fail(put("garbage.idx.gz", concat(gz, {'j', 'u', 'n', 'k'})),
                {"corrupt gzip stream", "not another gzip member"});
}

TEST_F(IdxLoad, SizesThatOverflow64Bits) {
    // 65536^4 = 2^64 wraps to exactly 0, which would pass for an empty set.
    expect_fail_both("o4.idx", idx_header(0x08, {65536, 65536, 65536, 65536}), {"overflow"});
    // 2^62 float elements: 2^64 bytes, again 0 after wrapping.
    expect_fail_both("of.idx", idx_header(0x0D, {0x80000000u, 0x80000000u}), {"overflow"});
    expect_fail_both("omax.idx",
                     idx_header(0x08, {0xFFFFFFFFu, 0xFFFFFFFFu, 0xFFFFFFFFu, 0xFFFFFFFFu}),
                     {"overflow", "4294967295 x 4294967295"});
    // The item size alone overflows even with no items.
    expect_fail_both("oitem.idx", idx_header(0x0D, {0, 0xFFFFFFFFu, 0xFFFFFFFFu, 0xFFFFFFFFu}),
                     {"overflow"});
}

// Items are indexed by int32_t: a file that really holds 2^31 one-byte items
// (a sparse file: the size is what counts, and nothing is read) is refused
// before its data is read, rather than loaded and then gathered through
// indices that wrap to negative ones. One item fewer is within the limit,
// and the file's size is still judged first.
TEST_F(IdxLoad, MoreItemsThanAnInt32IndexesAreRefused) {
    const uint32_t too_many = 0x80000000u;
    const std::string path = put("many.idx", idx_header(CT_ELEM_U8, {too_many, 1}));
    ASSERT_EQ(0, truncate(path.c_str(), 12 + static_cast<off_t>(too_many)));
    expect_fail(path, {"2147483648 items", "at most 2147483647"});
    // A header that only claims them is the short file it is.
    expect_fail(put("claims.idx", idx_header(CT_ELEM_U8, {too_many, 1})), {"truncated"});
}

// Sizes that wrap in 32-bit arithmetic to exactly the bytes present: an
// implementation computing in uint32_t would accept them.
struct Wrap32 {
    const char *name;
    Bytes file;
};

std::vector<Wrap32> wrap32_cases() {
    // 65537 x 65536 = 2^32 + 2^16 bytes; wraps to 65536, which is what follows.
    Bytes u8 = concat(idx_header(0x08, {65537, 65536}), noise(65536, 9));
    // 0x40000001 floats = 2^32 + 4 bytes; wraps to 4.
    Bytes f32 = concat(idx_header(0x0D, {0x40000001u, 1}), Bytes(4));
    return {{"w32u8.idx", u8}, {"w32u8.idx.gz", ct_test::gzip_bytes(u8)}, {"w32f.idx", f32},
            {"w32f.idx.gz", ct_test::gzip_bytes(f32)}};
}

const char *wrap32_keyword() {
    return sizeof(size_t) > 4 ? "truncated: header declares" : "overflow";
}

TEST_F(IdxLoad, SizesThatWrap32BitsAreCaught) {
    for (const auto &c : wrap32_cases()) expect_fail(put(c.name, c.file), {wrap32_keyword()});
    std::string msg = expect_fail(put("w.idx", wrap32_cases()[0].file), {});
    if (sizeof(size_t) > 4) EXPECT_TRUE(has(msg, "declares 4295032832 bytes")) << msg;
}

#ifdef __linux__
// The child gets an address-space limit of what it already maps plus 256 MiB,
// so trying to allocate the 4 GiB these headers declare fails as "out of
// memory" instead of the expected size error.
size_t mapped_bytes() {
    unsigned long pages = 0;
    FILE *f = std::fopen("/proc/self/statm", "r");
    if (f) {
        if (std::fscanf(f, "%lu", &pages) != 1) pages = 0;
        std::fclose(f);
    }
    return pages * static_cast<size_t>(sysconf(_SC_PAGESIZE));
}

void load_with_address_limit(const std::string &path) {
    rlim_t limit = mapped_bytes() + (256u << 20);
    rlimit rl{limit, limit};
    if (setrlimit(RLIMIT_AS, &rl) != 0) _exit(2);
    ct_idx idx;
    ct_error err{};
    int rc = ct_idx_load(path.c_str(), &idx, &err);
    bool ok = rc == -1 && has(err.msg, wrap32_keyword());
    std::fprintf(stderr, "%s\n", err.msg);
    _exit(ok ? 0 : 1);
}

TEST_F(IdxLoad, HugeDeclaredSizeAllocatesNothingLikeIt) {
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
    GTEST_SKIP() << "sanitizers reserve terabytes of address space; RLIMIT_AS cannot apply";
#endif
    for (const auto &c : wrap32_cases()) {
        std::string p = put(c.name, c.file);
        EXPECT_EXIT(load_with_address_limit(p), ::testing::ExitedWithCode(0), "") << c.name;
    }
}
#endif

TEST_F(IdxLoad, FloatNaNAndInfNameTheElement) {
    std::vector<float> v(6, 1.0f);
    v[4] = std::nanf("");
    expect_fail_both("nan.idx", idx_f32({2, 3}, v), {"float element 4 (item 1) is NaN"});
    std::vector<float> w(6, 0.5f);
    w[0] = INFINITY;
    expect_fail_both("inf.idx", idx_f32({3, 2}, w), {"float element 0 (item 0) is +Inf"});
    w[0] = 0.5f;
    w[5] = -INFINITY;
    expect_fail_both("ninf.idx", idx_f32({3, 2}, w), {"float element 5 (item 2) is -Inf"});
}

TEST_F(IdxLoad, MissingFile) {
    std::string p = tmp / "no-such-file.idx";
    std::string msg = expect_fail(p, {"cannot open"});
    EXPECT_EQ(p + ": cannot open: " + std::strerror(ENOENT), msg);
}

TEST_F(IdxLoad, Directory) {
    fs::create_directory(tmp / "adir");
    expect_fail(tmp / "adir", {"is a directory"});
}

// ---- datasets -------------------------------------------------------------

class Dataset : public IdxLoad {
  protected:
    ct_dataset ds{};
    ct_error err{};
    void TearDown() override { ct_dataset_free(&ds); }
};

TEST_F(Dataset, LoadsAMatchingPair) {
    Bytes pixels = noise(3 * 2 * 2, 6);
    std::string im = put("im.idx", idx_u8({3, 2, 2}, pixels));
    std::string lb = put("lb.idx.gz", ct_test::gzip_bytes(idx_u8({3}, {0, 7, 2})));
    ASSERT_EQ(0, ct_dataset_load(im.c_str(), lb.c_str(), &ds, &err)) << err.msg;
    EXPECT_EQ(im, ds.images_path);
    EXPECT_EQ(lb, ds.labels_path);
    EXPECT_EQ(CT_ELEM_U8, ds.elem_type);
    EXPECT_EQ(3u, ds.count);
    EXPECT_EQ(4u, ds.sample_elems);
    EXPECT_EQ(2u, ds.image_dims[0]);
    EXPECT_EQ(2u, ds.image_dims[1]);
    EXPECT_EQ(7, ds.max_label);
    EXPECT_EQ(0, std::memcmp(ds.images, pixels.data(), pixels.size()));
    EXPECT_EQ(0, ds.labels[0]);
    EXPECT_EQ(7, ds.labels[1]);
    EXPECT_EQ(2, ds.labels[2]);
    EXPECT_EQ(0, ct_dataset_check_labels(&ds, 8, &err)) << err.msg;
    EXPECT_EQ(-1, ct_dataset_check_labels(&ds, 7, &err));
    EXPECT_EQ(lb + ": label 7 at index 1 is outside the model's 7 classes", std::string(err.msg));
    EXPECT_EQ(CT_EXIT_BAD_INPUT, err.code);
}

TEST_F(Dataset, Rank2FloatImagesHaveNoImageDims) {
    std::vector<float> v = {0.f, 1.f, 2.f, 3.f, 4.f, 5.f};
    std::string im = put("im.idx", idx_f32({2, 3}, v));
    std::string lb = put("lb.idx", idx_u8({2}, {1, 1}));
    ASSERT_EQ(0, ct_dataset_load(im.c_str(), lb.c_str(), &ds, &err)) << err.msg;
    EXPECT_EQ(CT_ELEM_F32, ds.elem_type);
    EXPECT_EQ(3u, ds.sample_elems);
    EXPECT_EQ(0u, ds.image_dims[0]);
    EXPECT_EQ(0u, ds.image_dims[1]);
    EXPECT_EQ(5.f, static_cast<float *>(ds.images)[5]);
    EXPECT_EQ(1, ds.max_label);
}

TEST_F(Dataset, FirstOutOfRangeLabelIsNamed) {
    Bytes labels(400);
    for (size_t i = 0; i < labels.size(); ++i) labels[i] = static_cast<uint8_t>(i % 10);
    labels[345] = 12;
    labels[350] = 200;
    std::string im = put("im.idx", idx_u8({400, 1}, Bytes(400)));
    std::string lb = put("lb.idx", idx_u8({400}, labels));
    ASSERT_EQ(0, ct_dataset_load(im.c_str(), lb.c_str(), &ds, &err)) << err.msg;
    EXPECT_EQ(200, ds.max_label);
    EXPECT_EQ(-1, ct_dataset_check_labels(&ds, 10, &err));
    EXPECT_EQ(lb + ": label 12 at index 345 is outside the model's 10 classes",
              std::string(err.msg));
    EXPECT_EQ(0, ct_dataset_check_labels(&ds, 201, &err));
}

TEST_F(Dataset, CountMismatchNamesBothFilesAndCounts) {
    std::string im = put("im.idx", idx_u8({3, 2}, Bytes(6)));
    std::string lb = put("lb.idx", idx_u8({4}, {0, 1, 2, 3}));
    EXPECT_EQ(-1, ct_dataset_load(im.c_str(), lb.c_str(), &ds, &err));
    std::string msg = err.msg;
    EXPECT_EQ(im + ": 3 images but " + lb + " holds 4 labels: the counts must match", msg);
    EXPECT_EQ(nullptr, ds.images);
    EXPECT_EQ(nullptr, ds.labels);
}

TEST_F(Dataset, LabelsMustBeRank1Bytes) {
    std::string im = put("im.idx", idx_u8({2, 2}, Bytes(4)));
    std::string lb2 = put("lb2.idx", idx_u8({2, 1}, {0, 1}));
    EXPECT_EQ(-1, ct_dataset_load(im.c_str(), lb2.c_str(), &ds, &err));
    EXPECT_EQ(0u, std::string(err.msg).rfind(lb2 + ": labels have rank 2", 0)) << err.msg;
    std::string lbf = put("lbf.idx", idx_f32({2}, {0.f, 1.f}));
    EXPECT_EQ(-1, ct_dataset_load(im.c_str(), lbf.c_str(), &ds, &err));
    EXPECT_EQ(0u, std::string(err.msg).rfind(lbf + ": labels are float32", 0)) << err.msg;
}

TEST_F(Dataset, ImagesMustHaveRankAtLeast2) {
    std::string im = put("im.idx", idx_u8({2}, {5, 6}));
    std::string lb = put("lb.idx", idx_u8({2}, {0, 1}));
    EXPECT_EQ(-1, ct_dataset_load(im.c_str(), lb.c_str(), &ds, &err));
    EXPECT_EQ(0u, std::string(err.msg).rfind(im + ": images have rank 1", 0)) << err.msg;
}

TEST_F(Dataset, ErrorsFromEitherFileNameThatFile) {
    std::string im = put("im.idx", idx_u8({2, 2}, Bytes(4)));
    std::string missing = tmp / "missing-labels.idx";
    EXPECT_EQ(-1, ct_dataset_load(im.c_str(), missing.c_str(), &ds, &err));
    EXPECT_EQ(0u, std::string(err.msg).rfind(missing + ": cannot open", 0)) << err.msg;
    std::string bad = put("bad.idx", {1, 2, 3, 4});
    EXPECT_EQ(-1, ct_dataset_load(bad.c_str(), missing.c_str(), &ds, &err));
    EXPECT_EQ(0u, std::string(err.msg).rfind(bad + ": bad magic", 0)) << err.msg;
}

TEST_F(Dataset, EmptySetLoadsWithCountZero) {
    std::string im = put("im.idx", idx_header(0x08, {0, 28, 28}));
    std::string lb = put("lb.idx.gz", ct_test::gzip_bytes(idx_header(0x08, {0})));
    ASSERT_EQ(0, ct_dataset_load(im.c_str(), lb.c_str(), &ds, &err)) << err.msg;
    EXPECT_EQ(0u, ds.count);
    EXPECT_EQ(784u, ds.sample_elems);
    EXPECT_EQ(28u, ds.image_dims[0]);
    EXPECT_EQ(-1, ds.max_label);
    EXPECT_EQ(0, ct_dataset_check_labels(&ds, 10, &err));
}

// ---- finding MNIST --------------------------------------------------------

class MnistFind : public ::testing::Test {
  protected:
    void touch(const std::string &name) { write_file(tmp / name, {0}); }
    int find(const std::string &dir, const char *split) {
        return ct_mnist_find(dir.c_str(), split, images, labels, sizeof images, &err);
    }
    TempDir tmp;
    char images[512];
    char labels[512];
    ct_error err{};
};

TEST_F(MnistFind, FindsRawFiles) {
    for (const char *n : {"train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                          "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"})
        touch(n);
    ASSERT_EQ(0, find(tmp.path(), "train")) << err.msg;
    EXPECT_EQ(tmp / "train-images-idx3-ubyte", images);
    EXPECT_EQ(tmp / "train-labels-idx1-ubyte", labels);
    ASSERT_EQ(0, find(tmp.path() + "/", "test")) << err.msg;
    EXPECT_EQ(tmp / "t10k-images-idx3-ubyte", images);
    EXPECT_EQ(tmp / "t10k-labels-idx1-ubyte", labels);
}

TEST_F(MnistFind, FindsGzFiles) {
    touch("t10k-images-idx3-ubyte.gz");
    touch("t10k-labels-idx1-ubyte.gz");
    ASSERT_EQ(0, find(tmp.path(), "test")) << err.msg;
    EXPECT_EQ(tmp / "t10k-images-idx3-ubyte.gz", images);
    EXPECT_EQ(tmp / "t10k-labels-idx1-ubyte.gz", labels);
}

TEST_F(MnistFind, PrefersUncompressed) {
    touch("train-images-idx3-ubyte.gz");
    touch("train-images-idx3-ubyte");
    touch("train-labels-idx1-ubyte.gz");
    touch("train-labels.idx1-ubyte");  // the dotted spelling, raw, beats .gz too
    ASSERT_EQ(0, find(tmp.path(), "train")) << err.msg;
    EXPECT_EQ(tmp / "train-images-idx3-ubyte", images);
    EXPECT_EQ(tmp / "train-labels.idx1-ubyte", labels);
}

TEST_F(MnistFind, AcceptsTheDottedSpelling) {
    touch("t10k-images.idx3-ubyte.gz");
    touch("t10k-labels.idx1-ubyte");
    ASSERT_EQ(0, find(tmp.path(), "test")) << err.msg;
    EXPECT_EQ(tmp / "t10k-images.idx3-ubyte.gz", images);
    EXPECT_EQ(tmp / "t10k-labels.idx1-ubyte", labels);
}

TEST_F(MnistFind, SaysWhatItLookedForAndWhere) {
    EXPECT_EQ(-1, find(tmp.path(), "train"));
    EXPECT_EQ(CT_EXIT_BAD_INPUT, err.code);
    EXPECT_EQ(0u, std::string(err.msg).rfind(tmp.path() +
                                                 ": no MNIST train images: expected "
                                                 "train-images-idx3-ubyte or "
                                                 "train-images-idx3-ubyte.gz",
                                             0))
        << err.msg;
    EXPECT_STREQ("", images);
    touch("t10k-images-idx3-ubyte.gz");
    EXPECT_EQ(-1, find(tmp.path(), "test"));
    EXPECT_EQ(0u, std::string(err.msg).rfind(tmp.path() +
                                                 ": no MNIST test labels: expected "
                                                 "t10k-labels-idx1-ubyte or "
                                                 "t10k-labels-idx1-ubyte.gz",
                                             0))
        << err.msg;
}

// A directory or a dangling link of the right name is not a missing file:
// the message says what is there. A file under another accepted name wins.
TEST_F(MnistFind, ADirectoryOrDanglingLinkWithTheNameIsSaidToBeOne) {
    fs::create_directory(tmp / "train-images-idx3-ubyte");
    touch("train-labels-idx1-ubyte");
    EXPECT_EQ(-1, find(tmp.path(), "train"));
    EXPECT_TRUE(has(err.msg, tmp / "train-images-idx3-ubyte" + ": expected the MNIST train images as a file, found a directory"))
        << err.msg;
    fs::remove(tmp / "train-labels-idx1-ubyte");
    fs::create_symlink(tmp / "nowhere", tmp / "train-labels-idx1-ubyte");
    touch("train-images-idx3-ubyte.gz");
    EXPECT_EQ(-1, find(tmp.path(), "train"));
    EXPECT_TRUE(has(err.msg, "train-labels-idx1-ubyte: expected the MNIST train labels as a file, found a symbolic "
                             "link to nothing"))
        << err.msg;
    touch("train-labels-idx1-ubyte.gz");
    EXPECT_EQ(0, find(tmp.path(), "train")) << err.msg;
}

TEST_F(MnistFind, MissingDirectoryAndBadSplit) {
    std::string dir = tmp / "nowhere";
    EXPECT_EQ(-1, find(dir, "train"));
    EXPECT_EQ(0u, std::string(err.msg).rfind(dir + ": cannot open MNIST directory", 0)) << err.msg;
    EXPECT_EQ(-1, find(tmp.path(), "validation"));
    EXPECT_TRUE(has(err.msg, "\"validation\"")) << err.msg;
}

// ---- the epoch shuffle ----------------------------------------------------

std::vector<int32_t> shuffled(size_t n, uint64_t seed, uint32_t epoch) {
    std::vector<int32_t> v(n, -1);
    ct_shuffle_indices(v.data(), n, seed, epoch);
    return v;
}

TEST(Shuffle, IsAPermutation) {
    std::vector<int32_t> v = shuffled(1000, 42, 1);
    std::vector<int32_t> sorted = v;
    std::sort(sorted.begin(), sorted.end());
    std::vector<int32_t> iota(1000);
    std::iota(iota.begin(), iota.end(), 0);
    EXPECT_EQ(iota, sorted);
    EXPECT_NE(iota, v);
}

TEST(Shuffle, DependsOnlyOnSeedEpochAndN) {
    EXPECT_EQ(shuffled(500, 7, 3), shuffled(500, 7, 3));
    EXPECT_NE(shuffled(500, 7, 3), shuffled(500, 7, 4));
    EXPECT_NE(shuffled(500, 7, 3), shuffled(500, 8, 3));
}

TEST(Shuffle, IsTheSpecifiedFisherYates) {
    // The exact algorithm is part of the contract (resume, other backends).
    const size_t n = 257;
    const uint64_t seed = 0x123456789abcdefull;
    const uint32_t epoch = 9;
    std::vector<int32_t> ref(n);
    std::iota(ref.begin(), ref.end(), 0);
    for (size_t i = n - 1; i >= 1; --i) {
        uint32_t j = ct_rng_below(seed, CT_STREAM_SHUFFLE(epoch), i, static_cast<uint32_t>(i + 1));
        std::swap(ref[i], ref[j]);
    }
    EXPECT_EQ(ref, shuffled(n, seed, epoch));
}

TEST(Shuffle, TinySizes) {
    int32_t sentinel = 77;
    ct_shuffle_indices(&sentinel, 0, 1, 1);
    EXPECT_EQ(77, sentinel);
    EXPECT_EQ(std::vector<int32_t>{0}, shuffled(1, 1, 1));
    std::vector<int32_t> two = shuffled(2, 1, 1);
    std::sort(two.begin(), two.end());
    EXPECT_EQ((std::vector<int32_t>{0, 1}), two);
}

// ---- the real MNIST -------------------------------------------------------

// CUTRAIN_MNIST_DIR is used as given (a wrong one should fail loudly); the
// fallbacks only count when they hold the files.
std::string real_mnist_dir() {
    if (const char *e = std::getenv("CUTRAIN_MNIST_DIR"); e && *e) return e;
    for (const char *d : {CT_SOURCE_DIR "/data/mnist", CT_SOURCE_DIR "/../shared/data/mnist"}) {
        char im[1024], lb[1024];
        ct_error err{};
        if (ct_mnist_find(d, "train", im, lb, sizeof im, &err) == 0) return d;
    }
    return "";
}

void check_real_split(const std::string &dir, const char *split, size_t count,
                      const std::vector<size_t> &per_class) {
    char im[1024], lb[1024];
    ct_error err{};
    ASSERT_EQ(0, ct_mnist_find(dir.c_str(), split, im, lb, sizeof im, &err)) << err.msg;
    ct_dataset ds{};
    ASSERT_EQ(0, ct_dataset_load(im, lb, &ds, &err)) << err.msg;
    EXPECT_EQ(count, ds.count);
    EXPECT_EQ(CT_ELEM_U8, ds.elem_type);
    EXPECT_EQ(784u, ds.sample_elems);
    EXPECT_EQ(28u, ds.image_dims[0]);
    EXPECT_EQ(28u, ds.image_dims[1]);
    EXPECT_EQ(9, ds.max_label);
    EXPECT_EQ(0, ct_dataset_check_labels(&ds, 10, &err)) << err.msg;
    std::vector<size_t> hist(10, 0);
    for (size_t i = 0; i < ds.count; ++i) hist[ds.labels[i]]++;
    EXPECT_EQ(per_class, hist) << split;
    const uint8_t *px = static_cast<const uint8_t *>(ds.images);
    EXPECT_EQ(255, *std::max_element(px, px + ds.count * ds.sample_elems));
    EXPECT_EQ(0, px[0]);  // the corner of the first digit is background
    ct_dataset_free(&ds);
}

TEST(RealMnist, LoadsWithTheKnownCounts) {
    std::string dir = real_mnist_dir();
    if (dir.empty()) GTEST_SKIP() << "no MNIST: set CUTRAIN_MNIST_DIR or run tools/fetch-mnist";
    check_real_split(dir, "train", 60000,
                     {5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949});
    check_real_split(dir, "test", 10000, {980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009});
}

}  // namespace
