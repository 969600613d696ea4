// ct_atomic_file, the all-or-nothing writer under checkpoints and
// `bench --json`: the new contents appear only on commit, a replaced file
// keeps its mode, a failure or an abort leaves the old file and no
// temporary, and a link planted at the temporary name is never followed.
#include <gtest/gtest.h>

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>

#include "src/io/atomic_file.h"
#include "support/fixtures.h"

namespace fs = std::filesystem;
using namespace ct_test;

namespace {

std::string text_of(const std::string &path) {
    std::vector<uint8_t> b = read_file(path);
    return std::string(b.begin(), b.end());
}

std::string temp_name(const std::string &path) { return path + ".tmp." + std::to_string((long)getpid()); }

size_t entries(const std::string &dir) {
    size_t n = 0;
    for (auto it = fs::directory_iterator(dir); it != fs::directory_iterator(); ++it) ++n;
    return n;
}

TEST(AtomicFile, TheContentsAppearOnlyOnCommitAndNoTemporaryIsLeft) {
    TempDir d;
    const std::string p = d.file("out.json");
    write_text(p, "old");
    ct_atomic_file af;
    ASSERT_EQ(ct_atomic_open(&af, p.c_str()), 0);
    ASSERT_EQ(std::fputs("new contents", af.f) >= 0, true);
    ASSERT_EQ(std::fflush(af.f), 0);
    EXPECT_EQ(text_of(p), "old"); // written, flushed, not yet committed
    EXPECT_TRUE(file_exists(temp_name(p)));
    ASSERT_EQ(ct_atomic_commit(&af, p.c_str()), 0);
    EXPECT_EQ(text_of(p), "new contents");
    EXPECT_EQ(entries(d.path()), 1u);
    EXPECT_EQ(af.f, nullptr);
    EXPECT_EQ(af.tmp, nullptr);
}

// A name as long as a file system allows (255 bytes) is still writable:
// the temporary's name is cut to leave room for its suffix.
TEST(AtomicFile, ANameOfTheLongestLengthIsWritable) {
    TempDir d;
    const std::string p = d.file(std::string(255, 'a'));
    ct_atomic_file af;
    ASSERT_EQ(ct_atomic_open(&af, p.c_str()), 0);
    const std::string tmp = af.tmp;
    EXPECT_EQ(tmp.size() - d.path().size() - 1, 255u);
    const std::string suffix = ".tmp." + std::to_string((long)getpid());
    EXPECT_EQ(tmp.substr(tmp.size() - suffix.size()), suffix);
    ASSERT_EQ(std::fputs("long", af.f) >= 0, true);
    ASSERT_EQ(ct_atomic_commit(&af, p.c_str()), 0);
    EXPECT_EQ(text_of(p), "long");
    EXPECT_EQ(entries(d.path()), 1u);
}

TEST(AtomicFile, AReplacedFileKeepsItsModeAndANewOneTakesTheUmask) {
    TempDir d;
    const std::string kept = d.file("kept"), fresh = d.file("fresh");
    write_text(kept, "old");
    ASSERT_EQ(chmod(kept.c_str(), 0640), 0);
    const mode_t old_mask = umask(022);
    for (const std::string &p : {kept, fresh}) {
        ct_atomic_file af;
        ASSERT_EQ(ct_atomic_open(&af, p.c_str()), 0);
        std::fputs("x", af.f);
        ASSERT_EQ(ct_atomic_commit(&af, p.c_str()), 0);
    }
    umask(old_mask);
    struct stat st;
    ASSERT_EQ(stat(kept.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 07777, 0640u);
    ASSERT_EQ(stat(fresh.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 07777, 0644u);
}

TEST(AtomicFile, AnAbortLeavesTheOldFileAndNoTemporary) {
    TempDir d;
    const std::string p = d.file("ckpt");
    write_text(p, "old");
    ct_atomic_file af;
    ASSERT_EQ(ct_atomic_open(&af, p.c_str()), 0);
    std::fputs("half of the new", af.f);
    ct_atomic_abort(&af);
    EXPECT_EQ(text_of(p), "old");
    EXPECT_EQ(entries(d.path()), 1u);
}

TEST(AtomicFile, AFailedRenameReportsItsErrnoAndRemovesTheTemporary) {
    TempDir d;
    const std::string p = d.file("a_directory");
    ASSERT_TRUE(fs::create_directory(p));
    write_text(p + "/inside", "keeps the directory non-empty");
    ct_atomic_file af;
    ASSERT_EQ(ct_atomic_open(&af, p.c_str()), 0);
    std::fputs("x", af.f);
    const int e = ct_atomic_commit(&af, p.c_str());
    EXPECT_TRUE(e == EISDIR || e == ENOTEMPTY || e == EEXIST) << std::strerror(e);
    EXPECT_FALSE(file_exists(temp_name(p)));
    EXPECT_TRUE(fs::is_directory(p));
    EXPECT_EQ(entries(d.path()), 1u);
}

TEST(AtomicFile, ADirectoryThatDoesNotExistIsReportedAndNothingIsCreated) {
    TempDir d;
    const std::string p = d.file("missing/out");
    ct_atomic_file af;
    EXPECT_EQ(ct_atomic_open(&af, p.c_str()), ENOENT);
    EXPECT_EQ(af.f, nullptr);
    EXPECT_EQ(af.tmp, nullptr);
    EXPECT_EQ(entries(d.path()), 0u);
}

TEST(AtomicFile, ALinkPlantedAtTheTemporaryNameIsNotFollowed) {
    TempDir d;
    const std::string p = d.file("out"), victim = d.file("victim");
    write_text(victim, "precious");
    ASSERT_EQ(symlink(victim.c_str(), temp_name(p).c_str()), 0);
    ct_atomic_file af;
    ASSERT_EQ(ct_atomic_open(&af, p.c_str()), 0);
    std::fputs("new", af.f);
    ASSERT_EQ(ct_atomic_commit(&af, p.c_str()), 0);
    EXPECT_EQ(text_of(victim), "precious");
    EXPECT_EQ(text_of(p), "new");
    EXPECT_FALSE(fs::is_symlink(p));
    EXPECT_EQ(entries(d.path()), 2u);
}

} // namespace
