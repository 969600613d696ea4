// SIGINT, SIGTERM and SIGHUP as the commands take them (src/cli/common.h),
// in-process so that a signal can land at an exact point: an inherited
// "ignore" is kept, the handlers go back as they were, and a signal that
// came while the inputs loaded leaves the logs unopened.
#include <gtest/gtest.h>

#include <signal.h>

#include <string>
#include <vector>

#include "support/diagnostics.h"
#include "support/fixtures.h"

extern "C" {
#include "src/cli/commands.h"
#include "src/cli/common.h"
}

using namespace ct_test;

namespace {

// Runs a command (ct_cmd_train, ct_cmd_eval) in this process on args.
int run_in_process(int (*cmd)(int, char **), std::vector<std::string> args) {
    std::vector<char *> argv;
    for (auto &a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    return cmd((int)args.size(), argv.data());
}

void (*handler_of(int sig))(int) {
    struct sigaction sa;
    sigaction(sig, nullptr, &sa);
    return sa.sa_handler;
}

class StopSignals : public ::testing::Test {
  protected:
    void SetUp() override {
        for (int s : {SIGINT, SIGTERM, SIGHUP}) sigaction(s, nullptr, &saved_[s]);
        ct_cli_stop_signal = 0;
    }
    void TearDown() override {
        ct_cli_release_stop_signals();
        for (int s : {SIGINT, SIGTERM, SIGHUP}) sigaction(s, &saved_[s], nullptr);
        ct_cli_stop_signal = 0;
    }
    struct sigaction saved_[NSIG];
};

TEST_F(StopSignals, CaughtSignalsSetTheFlagAndAnIgnoredOneStaysIgnored) {
    signal(SIGHUP, SIG_IGN);  // as nohup leaves it
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    ct_cli_catch_stop_signals();
    EXPECT_EQ(handler_of(SIGHUP), SIG_IGN);
    raise(SIGHUP);
    EXPECT_EQ(ct_cli_stop_signal, 0);
    raise(SIGTERM);
    EXPECT_EQ(ct_cli_stop_signal, SIGTERM);
    raise(SIGINT);  // a second signal sets the flag again, it does not kill
    EXPECT_EQ(ct_cli_stop_signal, SIGINT);
    ct_cli_release_stop_signals();
    EXPECT_EQ(handler_of(SIGINT), SIG_DFL);
    EXPECT_EQ(handler_of(SIGTERM), SIG_DFL);
    EXPECT_EQ(handler_of(SIGHUP), SIG_IGN);
}

TEST_F(StopSignals, InterruptedWhileTheInputsLoadedLeavesTheOldLogsAsTheyWere) {
    TempDir dir;
    write_synthetic_mnist(dir.path(), 100, 20);
    write_text(dir.file("model.txt"), "input 64\ndense 10 softmax\n");
    std::string jsonl = dir.file("run.jsonl"), csv = dir.file("run.csv");
    write_text(jsonl, "an old log\n");
    write_text(csv, "an old table\n");
    ct_cli_stop_signal = SIGTERM;  // as if it came while the data was read
    EXPECT_EQ(run_in_process(ct_cmd_train, {"--quiet", "--device", "cpu", "--model", dir.file("model.txt"), "--data",
                                            dir.path(), "--log-jsonl", jsonl, "--log-csv", csv, "--save",
                                            dir.file("w.safetensors")}),
              CT_EXIT_INTERRUPTED);
    EXPECT_EQ(read_lines(jsonl), std::vector<std::string>{"an old log"});
    EXPECT_EQ(read_lines(csv), std::vector<std::string>{"an old table"});
    EXPECT_FALSE(file_exists(dir.file("w.safetensors")));
    // The command gave the handlers back as it found them.
    EXPECT_EQ(handler_of(SIGTERM), saved_[SIGTERM].sa_handler);

    // eval scores first and opens its log after: a signal that came while
    // it evaluated leaves the old log too.
    ct_cli_stop_signal = 0;
    ASSERT_EQ(run_in_process(ct_cmd_train, {"--quiet", "--device", "cpu", "--model", dir.file("model.txt"), "--data",
                                            dir.path(), "--max-steps", "2", "--save", dir.file("w.safetensors")}),
              0);
    const std::vector<std::string> eval = {"--quiet", "--device", "cpu", "--model", dir.file("model.txt"), "--data",
                                           dir.path(), "--weights", dir.file("w.safetensors"), "--log-jsonl", jsonl};
    ct_cli_stop_signal = SIGINT;
    EXPECT_EQ(run_in_process(ct_cmd_eval, eval), CT_EXIT_INTERRUPTED);
    EXPECT_EQ(read_lines(jsonl), std::vector<std::string>{"an old log"});
    ct_cli_stop_signal = 0;
    EXPECT_EQ(run_in_process(ct_cmd_eval, eval), 0);
    EXPECT_NE(read_lines(jsonl).at(0).find("\"status\":\"evaluated\""), std::string::npos);
}

// A stop that comes after an epoch's last step (here while the source
// fills it; from a terminal, during the test evaluation or a checkpoint
// write) ends the run at that epoch's end: no record of an epoch that never
// started, and no second evaluation.
TEST_F(StopSignals, AStopAfterAnEpochsLastStepEndsTheRunThere) {
    TempDir dir;
    write_text(dir.file("model.txt"), "input 64\ndense 16 relu\ndense 10 softmax\noptimizer adam lr=0.01\nbatch_size 32\n");
    Net net(dir.file("model.txt"));
    Source src(4);
    struct Stopping {
        ct_data_source inner;
        volatile sig_atomic_t *flag;
    } stopping = {src.source("stopping"), &ct_cli_stop_signal};
    ct_data_source ds = {"stopping", &stopping, 4,
                         [](void *user, uint32_t epoch, uint64_t batch, int max_rows, float *x, int32_t *labels,
                            ct_error *err) {
                             auto *s = static_cast<Stopping *>(user);
                             if (epoch == 1 && batch == 3) *s->flag = SIGINT;  // the epoch's last batch
                             return s->inner.next_batch(s->inner.user, epoch, batch, max_rows, x, labels, err);
                         }};
    ct_train_options opt = net.options(3);
    opt.interrupt = &ct_cli_stop_signal;
    Outcome o = train_api(net, nullptr, &ds, opt, dir.file("run.jsonl"));
    EXPECT_EQ(o.code, CT_EXIT_INTERRUPTED) << o.err;
    EXPECT_EQ(jsonl_of_type(o.jsonl, "step").size(), 4u);
    auto epochs = jsonl_of_type(o.jsonl, "epoch");
    ASSERT_EQ(epochs.size(), 1u);
    EXPECT_EQ(json_number(epochs[0], "steps"), 4.0);
    EXPECT_EQ(o.sum.steps, 4u);
    EXPECT_EQ(o.sum.epochs, 1u);
    // Set before the run: it stops before the first step, with no epoch.
    Net fresh(dir.file("model.txt"));
    Source plain(4);
    ct_data_source pds = plain.source("plain");
    ct_cli_stop_signal = SIGTERM;
    o = train_api(fresh, nullptr, &pds, opt, dir.file("none.jsonl"));
    EXPECT_EQ(o.code, CT_EXIT_INTERRUPTED) << o.err;
    EXPECT_TRUE(jsonl_of_type(o.jsonl, "epoch").empty());
    EXPECT_EQ(o.sum.steps, 0u);
}

}  // namespace
