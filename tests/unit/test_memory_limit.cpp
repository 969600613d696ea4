// ct_memory_limit: the memory a file read whole must fit, physical memory
// or a container's cgroup limit, whichever is less. Read from a control
// group tree built here, in both cgroup versions' layouts.
#include <gtest/gtest.h>

#include <sys/stat.h>
#include <unistd.h>

#include <string>

#include "src/io/memory_limit.h"
#include "support/fixtures.h"

namespace {

uint64_t physical() {
    const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    return (uint64_t)pages * (uint64_t)page;
}

TEST(MemoryLimit, WithoutACgroupLimitItIsPhysicalMemory) {
    ASSERT_GT(physical(), 0u);
    ct_test::TempDir root;
    EXPECT_EQ(ct_memory_limit(root.path().c_str()), physical());  // no limit files
    ct_test::write_text(root.file("memory.max"), "max\n");            // v2, unlimited
    EXPECT_EQ(ct_memory_limit(root.path().c_str()), physical());
    ASSERT_EQ(mkdir(root.file("memory").c_str(), 0755), 0);
    ct_test::write_text(root.file("memory/memory.limit_in_bytes"), "9223372036854771712\n");  // v1, unlimited
    EXPECT_EQ(ct_memory_limit(root.path().c_str()), physical());
}

TEST(MemoryLimit, ACgroupLimitBelowPhysicalMemoryIsTheLimit) {
    const uint64_t limit = physical() / 3;
    ASSERT_GT(limit, 0u);
    ct_test::TempDir v2;
    ct_test::write_text(v2.file("memory.max"), std::to_string(limit) + "\n");
    EXPECT_EQ(ct_memory_limit(v2.path().c_str()), limit);

    ct_test::TempDir v1;
    ASSERT_EQ(mkdir(v1.file("memory").c_str(), 0755), 0);
    ct_test::write_text(v1.file("memory/memory.limit_in_bytes"), std::to_string(limit - 4096) + "\n");
    EXPECT_EQ(ct_memory_limit(v1.path().c_str()), limit - 4096);

    // Both present: the lesser.
    ct_test::write_text(v1.file("memory.max"), std::to_string(limit) + "\n");
    EXPECT_EQ(ct_memory_limit(v1.path().c_str()), limit - 4096);
}

TEST(MemoryLimit, ALimitFileThatIsNotANumberIsNoLimit) {
    ct_test::TempDir root;
    ct_test::write_text(root.file("memory.max"), "12abc\n");
    EXPECT_EQ(ct_memory_limit(root.path().c_str()), physical());
    ct_test::write_text(root.file("memory.max"), "");
    EXPECT_EQ(ct_memory_limit(root.path().c_str()), physical());
}

TEST(MemoryLimit, TheSystemsLimitIsAtMostPhysicalMemory) {
    const uint64_t limit = ct_memory_limit(nullptr);
    EXPECT_GT(limit, 0u);
    EXPECT_LE(limit, physical());
}

}  // namespace
