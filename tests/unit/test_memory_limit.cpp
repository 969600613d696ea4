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

// No /proc/self/cgroup file: the process is taken to be in the tree's top group.
const char *const kNoGroup = "/nonexistent/cgroup";

uint64_t physical() {
    const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    return (uint64_t)pages * (uint64_t)page;
}

TEST(MemoryLimit, WithoutACgroupLimitItIsPhysicalMemory) {
    ASSERT_GT(physical(), 0u);
    ct_test::TempDir root;
    EXPECT_EQ(ct_memory_limit(root.path().c_str(), kNoGroup), physical());  // no limit files
    ct_test::write_text(root.file("memory.max"), "max\n");            // v2, unlimited
    EXPECT_EQ(ct_memory_limit(root.path().c_str(), kNoGroup), physical());
    ASSERT_EQ(mkdir(root.file("memory").c_str(), 0755), 0);
    ct_test::write_text(root.file("memory/memory.limit_in_bytes"), "9223372036854771712\n");  // v1, unlimited
    EXPECT_EQ(ct_memory_limit(root.path().c_str(), kNoGroup), physical());
}

TEST(MemoryLimit, ACgroupLimitBelowPhysicalMemoryIsTheLimit) {
    const uint64_t limit = physical() / 3;
    ASSERT_GT(limit, 0u);
    ct_test::TempDir v2;
    ct_test::write_text(v2.file("memory.max"), std::to_string(limit) + "\n");
    EXPECT_EQ(ct_memory_limit(v2.path().c_str(), kNoGroup), limit);

    ct_test::TempDir v1;
    ASSERT_EQ(mkdir(v1.file("memory").c_str(), 0755), 0);
    ct_test::write_text(v1.file("memory/memory.limit_in_bytes"), std::to_string(limit - 4096) + "\n");
    EXPECT_EQ(ct_memory_limit(v1.path().c_str(), kNoGroup), limit - 4096);

    // Both present: the lesser.
    ct_test::write_text(v1.file("memory.max"), std::to_string(limit) + "\n");
    EXPECT_EQ(ct_memory_limit(v1.path().c_str(), kNoGroup), limit - 4096);
}

TEST(MemoryLimit, ALimitFileThatIsNotANumberIsNoLimit) {
    ct_test::TempDir root;
    ct_test::write_text(root.file("memory.max"), "12abc\n");
    EXPECT_EQ(ct_memory_limit(root.path().c_str(), kNoGroup), physical());
    ct_test::write_text(root.file("memory.max"), "");
    EXPECT_EQ(ct_memory_limit(root.path().c_str(), kNoGroup), physical());
}

// Without a cgroup namespace (a Slurm job, a systemd unit, a sandbox) the
// process's group is deep in the tree, whose top has no limit: its own
// limit, or one of a group above it, was not read, and a log past it was
// read until the kernel killed the process.
TEST(MemoryLimit, TheProcesssOwnGroupAndTheGroupsAboveItAreRead) {
    const uint64_t limit = physical() / 3;
    ASSERT_GT(limit, 0u);
    ct_test::TempDir v2;
    ASSERT_EQ(mkdir(v2.file("slurm").c_str(), 0755), 0);
    ASSERT_EQ(mkdir(v2.file("slurm/job_7").c_str(), 0755), 0);
    ct_test::write_text(v2.file("slurm/memory.max"), std::to_string(limit) + "\n");
    ct_test::write_text(v2.file("slurm/job_7/memory.max"), "max\n");
    const std::string self = v2.file("self_cgroup");
    ct_test::write_text(self, "0::/slurm/job_7\n");
    EXPECT_EQ(ct_memory_limit(v2.path().c_str(), self.c_str()), limit);  // the group above
    ct_test::write_text(v2.file("slurm/job_7/memory.max"), std::to_string(limit - 8192) + "\n");
    EXPECT_EQ(ct_memory_limit(v2.path().c_str(), self.c_str()), limit - 8192);  // its own, the lesser

    ct_test::TempDir v1;
    ASSERT_EQ(mkdir(v1.file("memory").c_str(), 0755), 0);
    ASSERT_EQ(mkdir(v1.file("memory/process_api").c_str(), 0755), 0);
    ASSERT_EQ(mkdir(v1.file("memory/process_api/0e44").c_str(), 0755), 0);
    ct_test::write_text(v1.file("memory/memory.limit_in_bytes"), "9223372036854771712\n");
    ct_test::write_text(v1.file("memory/process_api/0e44/memory.limit_in_bytes"), std::to_string(limit) + "\n");
    const std::string self1 = v1.file("self_cgroup");
    ct_test::write_text(self1, "9:name=systemd:/\n4:cpu,memory:/process_api/0e44\n0::/\n");
    EXPECT_EQ(ct_memory_limit(v1.path().c_str(), self1.c_str()), limit);

    // A container that sees its own group at the top, under its host's path:
    // the levels that are not there are skipped, the top's limit is read.
    ct_test::TempDir mounted;
    ASSERT_EQ(mkdir(mounted.file("memory").c_str(), 0755), 0);
    ct_test::write_text(mounted.file("memory/memory.limit_in_bytes"), std::to_string(limit) + "\n");
    const std::string self2 = mounted.file("self_cgroup");
    ct_test::write_text(self2, "4:memory:/docker/4f2a\n");
    EXPECT_EQ(ct_memory_limit(mounted.path().c_str(), self2.c_str()), limit);
}

TEST(MemoryLimit, TheSystemsLimitIsAtMostPhysicalMemory) {
    const uint64_t limit = ct_memory_limit(nullptr, nullptr);
    EXPECT_GT(limit, 0u);
    EXPECT_LE(limit, physical());
}

}  // namespace
