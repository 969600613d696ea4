// Issue 7's acceptance run on real MNIST: `mlp` for 2 epochs with
// --save-every, killed with SIGKILL part way, resumed from its checkpoint:
// every step and epoch record after the checkpoint equals the uninterrupted
// run's, and so do the final weights.
#include <gtest/gtest.h>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>

#include "support/fixtures.h"

using namespace ct_test;

namespace {

std::string meta_step(const std::string &path) {
    ct_st_file f;
    ct_error err;
    ct_error_clear(&err);
    if (ct_safetensors_read(path.c_str(), &f, &err) != 0) return "";
    const char *v = ct_safetensors_meta(&f, "step");
    std::string s = v ? v : "";
    ct_safetensors_free(&f);
    return s;
}

std::string without_timing(std::string line) {
    for (const char *key : {"\"seconds\":", "\"eval_seconds\":", "\"samples_per_s\":", "\"train_seconds\":"}) {
        size_t at = line.find(key);
        if (at == std::string::npos) continue;
        size_t end = line.find_first_of(",}", at);
        line.erase(at, end - at + (line[end] == ',' ? 1 : 0));
    }
    return line;
}

TEST(ResumeMnist, MlpKilledDuringTwoEpochsResumesToTheSameRecords) {
    std::string data = mnist_dir();
    if (data.empty()) GTEST_SKIP() << "no MNIST: run tools/fetch-mnist or set CUTRAIN_MNIST_DIR";
    TempDir dir;
    std::string common = " --quiet --model mlp --data " + data + " --epochs 2 --device cpu --threads 2 --seed 11";
    std::string full = dir.file("full.jsonl"), part = dir.file("part.jsonl"), rest = dir.file("rest.jsonl");
    std::string ckf = dir.file("full.st"), ck = dir.file("ck.st"), ck2 = dir.file("rest.st");
    ASSERT_EQ(run_cutrain("train" + common + " --log-jsonl " + full + " --save " + ckf).exit_code, 0);

    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
        if (!freopen("/dev/null", "w", stdout) || !freopen("/dev/null", "w", stderr)) _exit(126);
        std::string cmd = std::string(CT_CUTRAIN_EXE) + " train" + common + " --save-every 100 --save " + ck +
                          " --log-jsonl " + part;
        execl("/bin/sh", "sh", "-c", ("exec " + cmd).c_str(), (char *)nullptr);
        _exit(127);
    }
    // Kill it once a checkpoint past the first epoch (469 steps) exists.
    for (int i = 0; i < 6000; ++i) {
        std::string s = meta_step(ck);
        if (!s.empty() && std::strtoull(s.c_str(), nullptr, 10) >= 500) break;
        usleep(10000);
    }
    kill(pid, SIGKILL);
    int status = 0;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    ASSERT_TRUE(WIFSIGNALED(status)) << "the run finished before it could be killed";
    uint64_t step = std::strtoull(meta_step(ck).c_str(), nullptr, 10);
    ASSERT_GE(step, 500u);
    ASSERT_LT(step, 938u);

    RunResult r = run_cutrain("train" + common + " --resume " + ck + " --log-jsonl " + rest + " --save " + ck2);
    ASSERT_EQ(r.exit_code, 0) << r.out;
    auto all = jsonl_of_type(full, "step"), after = jsonl_of_type(rest, "step");
    ASSERT_EQ(all.size(), 938u);
    ASSERT_EQ(after.size(), 938u - step);
    for (size_t i = 0; i < after.size(); ++i) ASSERT_EQ(after[i], all[step + i]) << "step " << step + 1 + i;
    auto ef = jsonl_of_type(full, "epoch"), er = jsonl_of_type(rest, "epoch");
    ASSERT_EQ(ef.size(), 2u);
    ASSERT_EQ(er.size(), 1u);
    EXPECT_EQ(without_timing(er[0]), without_timing(ef[1]));
    // The final weights and optimizer state, bit for bit.
    ct_st_file a, b;
    ct_error err;
    ASSERT_EQ(ct_safetensors_read(ckf.c_str(), &a, &err), 0) << err.msg;
    ASSERT_EQ(ct_safetensors_read(ck2.c_str(), &b, &err), 0) << err.msg;
    ASSERT_EQ(a.n_tensors, b.n_tensors);
    for (int i = 0; i < a.n_tensors; ++i) {
        const ct_st_tensor *t = ct_safetensors_find(&b, a.tensors[i].name);
        ASSERT_NE(t, nullptr) << a.tensors[i].name;
        ASSERT_EQ(t->count, a.tensors[i].count);
        EXPECT_EQ(memcmp(t->data, a.tensors[i].data, t->count * sizeof(float)), 0) << t->name;
    }
    ct_safetensors_free(&a);
    ct_safetensors_free(&b);
    auto sf = jsonl_of_type(full, "summary"), sr = jsonl_of_type(rest, "summary");
    ASSERT_EQ(sr.size(), 1u);
    EXPECT_EQ(json_number(sr[0], "test_acc"), json_number(sf[0], "test_acc"));
}

}  // namespace
