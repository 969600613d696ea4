// Training checkpoints end to end: what the file holds, that a resumed run
// writes the records an uninterrupted run writes, that a checkpoint for
// another model, recipe or data is refused, and that kill -9, a full disk
// and SIGINT leave a loadable checkpoint behind.
#include <gtest/gtest.h>

#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>

#include "support/fixtures.h"

using namespace ct_test;

namespace {

// Dropout and a one-cycle schedule with a fixed length: the two things whose
// state lives outside the weights (the RNG counter and the schedule's step).
const char *kModel =
    "input 64\ndense 24 relu\ndropout 0.25\ndense 10 softmax\noptimizer adam lr=0.01\n"
    "schedule onecycle total_steps=21\nbatch_size 32\n";
// Constant rate, for the runs that are stopped at a time the test does not
// choose (a resumed run's schedule length is the interrupted run's).
const char *kConstModel = "input 64\ndense 16 relu\ndense 10 softmax\noptimizer adam lr=0.01\nbatch_size 32\n";

struct Tensors {
    std::map<std::string, std::vector<float>> values;
    std::map<std::string, std::vector<uint64_t>> shapes;
    std::map<std::string, std::string> meta;
};

Tensors read_checkpoint(const std::string &path) {
    ct_st_file f;
    ct_error err;
    ct_error_clear(&err);
    Tensors t;
    if (ct_safetensors_read(path.c_str(), &f, &err) != 0) {
        ADD_FAILURE() << err.msg;
        return t;
    }
    for (int i = 0; i < f.n_tensors; ++i) {
        const ct_st_tensor &x = f.tensors[i];
        t.values[x.name].assign(x.data, x.data + x.count);
        t.shapes[x.name].assign(x.shape, x.shape + x.rank);
    }
    for (int i = 0; i < f.n_meta; ++i) t.meta[f.meta[i].key] = f.meta[i].value;
    ct_safetensors_free(&f);
    return t;
}

pid_t spawn(const std::vector<std::string> &args, rlim_t fsize = RLIM_INFINITY) {
    pid_t pid = fork();
    if (pid == 0) {
        if (!freopen("/dev/null", "w", stdout) || !freopen("/dev/null", "w", stderr)) _exit(126);
        if (fsize != RLIM_INFINITY) {
            struct rlimit rl = {fsize, fsize};
            setrlimit(RLIMIT_FSIZE, &rl);
            signal(SIGXFSZ, SIG_IGN);  // a write past the limit then fails with EFBIG, as on a full disk
        }
        std::vector<char *> argv;
        argv.push_back(const_cast<char *>(CT_CUTRAIN_EXE));
        for (const auto &a : args) argv.push_back(const_cast<char *>(a.c_str()));
        argv.push_back(nullptr);
        execv(CT_CUTRAIN_EXE, argv.data());
        _exit(127);
    }
    return pid;
}

int wait_status(pid_t pid) {
    int status = 0;
    EXPECT_EQ(waitpid(pid, &status, 0), pid);
    return status;
}

std::vector<std::string> split(const std::string &s) {
    std::vector<std::string> v;
    size_t i = 0;
    while (i < s.size()) {
        size_t j = s.find(' ', i);
        if (j == std::string::npos) j = s.size();
        if (j > i) v.push_back(s.substr(i, j - i));
        i = j + 1;
    }
    return v;
}

class Checkpoint : public ::testing::Test {
  protected:
    void SetUp() override {
        write_synthetic_mnist(dir.path(), 200, 50);
        write_text(model(), kModel);
        write_text(const_model(), kConstModel);
    }
    std::string model() const { return dir.file("model.txt"); }
    std::string const_model() const { return dir.file("const.txt"); }
    std::string base(const std::string &m = "") const {
        return "train --quiet --device cpu --threads 1 --seed 3 --model " + (m.empty() ? model() : m) + " --data " +
               dir.path();
    }
    TempDir dir;
};

TEST_F(Checkpoint, HoldsStateDictNamesOptimizerStateAndThePosition) {
    std::string ck = dir.file("ck.safetensors");
    ASSERT_EQ(run_cutrain(base() + " --epochs 3 --max-steps 10 --save " + ck).exit_code, 0);
    Tensors t = read_checkpoint(ck);
    EXPECT_EQ(t.meta["format"], "cutrain-checkpoint");
    EXPECT_EQ(t.meta["step"], "10");
    EXPECT_EQ(t.meta["epoch"], "2");  // 7 steps per epoch: 3 steps into the second
    EXPECT_EQ(t.meta["seed"], "3");
    EXPECT_EQ(t.meta["optim.t"], "10");
    EXPECT_NE(t.meta["model"].find("dense 24 relu"), std::string::npos) << t.meta["model"];
    EXPECT_EQ(t.shapes["dense1.weight"], (std::vector<uint64_t>{24, 64}));  // [out, in] as PyTorch's Linear
    EXPECT_EQ(t.shapes["dense1.bias"], (std::vector<uint64_t>{24}));
    EXPECT_EQ(t.shapes["dense2.weight"], (std::vector<uint64_t>{10, 24}));
    for (const char *p : {"dense1.weight", "dense1.bias", "dense2.weight", "dense2.bias"})
        for (const char *slot : {".exp_avg", ".exp_avg_sq"}) {
            std::string name = std::string("optim.") + p + slot;
            ASSERT_EQ(t.shapes.count(name), 1u) << name;
            EXPECT_EQ(t.shapes[name], t.shapes[p]) << name;
        }
    EXPECT_EQ(t.values.size(), 12u);
    // Adam's second moment is a mean of squares: positive after 10 steps.
    for (float v : t.values["optim.dense2.bias.exp_avg_sq"]) EXPECT_GT(v, 0.0f);
    EXPECT_FALSE(t.meta["cutrain.state.0"].empty());
}

// The run is cut at step 10 (mid-epoch) and resumed; with dropout and a
// one-cycle schedule every later step record is the one the uninterrupted
// run wrote, bit for bit, and so are the epoch records and the final
// weights and optimizer state.
TEST_F(Checkpoint, ResumedRunWritesTheRecordsOfAnUninterruptedRun) {
    std::string full = dir.file("full.jsonl"), p1 = dir.file("p1.jsonl"), p2 = dir.file("p2.jsonl");
    std::string ckf = dir.file("full.st"), ck1 = dir.file("p1.st"), ck2 = dir.file("p2.st");
    ASSERT_EQ(run_cutrain(base() + " --epochs 3 --log-jsonl " + full + " --save " + ckf).exit_code, 0);
    ASSERT_EQ(run_cutrain(base() + " --epochs 3 --max-steps 10 --log-jsonl " + p1 + " --save " + ck1).exit_code, 0);
    RunResult r = run_cutrain(base() + " --epochs 3 --resume " + ck1 + " --log-jsonl " + p2 + " --save " + ck2);
    ASSERT_EQ(r.exit_code, 0) << r.out;

    auto sf = read_lines(full);
    auto s1 = jsonl_of_type(p1, "step"), s2 = jsonl_of_type(p2, "step"), all = jsonl_of_type(full, "step");
    ASSERT_EQ(all.size(), 21u);
    ASSERT_EQ(s1.size(), 10u);
    ASSERT_EQ(s2.size(), 11u);
    for (size_t i = 0; i < 10; ++i) EXPECT_EQ(s1[i], all[i]);
    for (size_t i = 0; i < 11; ++i) EXPECT_EQ(s2[i], all[10 + i]);
    auto ef = untimed_of_type(full, "epoch"), e2 = untimed_of_type(p2, "epoch");
    ASSERT_EQ(ef.size(), 3u);
    ASSERT_EQ(e2.size(), 2u);  // the resumed second epoch, whole, and the third
    EXPECT_EQ(e2[0], ef[1]);
    EXPECT_EQ(e2[1], ef[2]);
    EXPECT_EQ(untimed_of_type(p2, "summary"), untimed_of_type(full, "summary"));
    // The resumed epoch's rate is its samples in this run over this run's
    // seconds of it: steps 11..14 (epoch 2 is steps 8..14, batch 32, of a
    // 200-item set whose last batch has 8), not the whole epoch's samples.
    auto ep2 = jsonl_of_type(p2, "epoch")[0];
    double in_this_run = 0;
    for (size_t i = 0; i < 4; ++i) in_this_run += json_number(s2[i], "batch_size");
    EXPECT_EQ(in_this_run, 3 * 32 + 8);
    EXPECT_NEAR(json_number(ep2, "samples_per_s") * json_number(ep2, "seconds"), in_this_run, 1e-3 * in_this_run)
        << ep2;

    Tensors a = read_checkpoint(ckf), b = read_checkpoint(ck2);
    EXPECT_EQ(a.values, b.values);
    EXPECT_EQ(a.meta["step"], "21");
    EXPECT_EQ(b.meta["step"], "21");
}

TEST_F(Checkpoint, AMismatchedCheckpointIsRefusedBeforeAnyOutput) {
    std::string ck = dir.file("ck.st"), log = dir.file("log.jsonl");
    ASSERT_EQ(run_cutrain(base() + " --epochs 3 --max-steps 10 --save " + ck).exit_code, 0);
    std::string other = dir.file("other");
    ASSERT_EQ(mkdir(other.c_str(), 0755), 0);
    write_synthetic_mnist(other, 200, 50, 8, 10, 2);  // same shapes, other pixels
    struct Case {
        std::string args;
        int code;
        std::string says;
    } cases[] = {
        {base(const_model()) + " --resume " + ck, CT_EXIT_BAD_INPUT, "model"},
        {base() + " --lr 0.02 --resume " + ck, CT_EXIT_BAD_INPUT, "lr=0.01"},
        {base() + " --batch-size 16 --resume " + ck, CT_EXIT_BAD_INPUT, "batch 32"},
        {base() + " --drop-last --resume " + ck, CT_EXIT_BAD_INPUT, "drop-last"},
        {"train --quiet --device cpu --threads 1 --model " + model() + " --data " + other + " --resume " + ck,
         CT_EXIT_BAD_INPUT, "training set of 200 items"},
        {"train --quiet --device cpu --threads 1 --seed 4 --model " + model() + " --data " + dir.path() +
             " --resume " + ck,
         CT_EXIT_USAGE, "seed 3"},
        {base() + " --resume " + dir.file("missing.st"), CT_EXIT_BAD_INPUT, "missing.st"},
        // Limits the checkpoint (step 10, in epoch 2) is already past.
        {base() + " --epochs 3 --max-steps 5 --resume " + ck, CT_EXIT_USAGE, "--max-steps 5: " + ck +
                                                                                 " is at step 10 already"},
        {base() + " --epochs 1 --resume " + ck, CT_EXIT_USAGE, "--epochs 1: " + ck + " is in epoch 2 already"},
        {base() + " --epochs 3 --inject-nan 4 --resume " + ck, CT_EXIT_USAGE,
         "--inject-nan 4: " + ck + " goes on from step 11, past it"},
        // Not in the model's description: named, in decimal.
        {base() + " --clip-grad-norm 2 --resume " + ck, CT_EXIT_BAD_INPUT,
         "the checkpoint's optimizer has clip_norm=0, this run's has 2"},
        {base() + " --save-every 5", CT_EXIT_USAGE, "--save-every"},
    };
    for (const auto &c : cases) {
        RunResult r = run_cutrain(c.args + " --log-jsonl " + log);
        EXPECT_EQ(r.exit_code, c.code) << c.args << "\n" << r.out;
        EXPECT_NE(r.out.find(c.says), std::string::npos) << c.args << "\n" << r.out;
        EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 1) << r.out;
        EXPECT_FALSE(file_exists(log)) << c.args;
    }
}

TEST_F(Checkpoint, AWeightsFileOrATruncatedCheckpointIsRefused) {
    std::string ck = dir.file("ck.st"), w = dir.file("init.st"), cut = dir.file("cut.st");
    ASSERT_EQ(run_cutrain(base() + " --max-steps 4 --save " + ck).exit_code, 0);
    ASSERT_EQ(run_cutrain("bench --quiet --device cpu --steps 1 --warmup 0 --repeats 1 --model " + model() +
                          " --data " + dir.path() + " --save-init " + w)
                  .exit_code,
              0);
    RunResult r = run_cutrain(base() + " --resume " + w);
    EXPECT_EQ(r.exit_code, CT_EXIT_BAD_INPUT) << r.out;
    EXPECT_NE(r.out.find("not a cutrain training checkpoint"), std::string::npos) << r.out;

    std::vector<uint8_t> bytes = read_file(ck);
    for (size_t keep : {size_t(4), size_t(100), bytes.size() / 2, bytes.size() - 1}) {
        write_file(cut, std::vector<uint8_t>(bytes.begin(), bytes.begin() + (long)keep));
        r = run_cutrain(base() + " --resume " + cut);
        EXPECT_EQ(r.exit_code, CT_EXIT_BAD_INPUT) << keep << ": " << r.out;
        EXPECT_NE(r.out.find(cut), std::string::npos) << r.out;
    }
}

// Writes `t` back as a safetensors file (names sorted, as the map holds them).
void write_checkpoint(const std::string &path, const Tensors &t) {
    std::vector<ct_st_tensor> ts;
    for (const auto &kv : t.values) {
        ct_st_tensor x = {};
        snprintf(x.name, sizeof x.name, "%s", kv.first.c_str());
        const auto &shape = t.shapes.at(kv.first);
        x.rank = (int)shape.size();
        for (int d = 0; d < x.rank; ++d) x.shape[d] = shape[d];
        x.count = kv.second.size();
        x.data = kv.second.data();
        ts.push_back(x);
    }
    std::vector<ct_st_meta> ms;
    for (const auto &kv : t.meta) {
        ct_st_meta m = {};
        snprintf(m.key, sizeof m.key, "%s", kv.first.c_str());
        snprintf(m.value, sizeof m.value, "%s", kv.second.c_str());
        ms.push_back(m);
    }
    ct_error err;
    ct_error_clear(&err);
    ASSERT_EQ(ct_safetensors_write(path.c_str(), ts.data(), (int)ts.size(), ms.data(), (int)ms.size(), &err), 0)
        << err.msg;
}

std::string replaced(std::string s, const std::string &from, const std::string &to) {
    size_t at = s.find(from);
    EXPECT_NE(at, std::string::npos) << from;
    if (at != std::string::npos) s.replace(at, from.size(), to);
    return s;
}

// A checkpoint that no run of cutrain's could have written (hand-edited or
// corrupt but well-formed) is refused naming the file and what is wrong,
// instead of training into a NaN the diagnosis would blame on the learning
// rate, or logging five million steps of a five-step epoch.
// Replaces from by to in whichever chunk of the state text holds it.
void edit_state(Tensors &t, const std::string &from, const std::string &to) {
    for (auto &kv : t.meta)
        if (kv.first.rfind("cutrain.state.", 0) == 0 && kv.second.find(from) != std::string::npos) {
            kv.second = replaced(kv.second, from, to);
            return;
        }
    ADD_FAILURE() << "no state chunk holds " << from;
}

TEST_F(Checkpoint, AStateNoRunCouldHaveWrittenIsRefused) {
    std::string ck = dir.file("ck.st"), bad = dir.file("bad.st"), log = dir.file("log.jsonl");
    ASSERT_EQ(run_cutrain(base(const_model()) + " --max-steps 4 --save " + ck).exit_code, 0);
    const Tensors good = read_checkpoint(ck);
    ASSERT_EQ(good.meta.at("optim.t"), "4");
    ASSERT_EQ(run_cutrain(base(const_model()) + " --max-steps 6 --resume " + ck).exit_code, 0) << "the file is fine";
    struct Case {
        const char *what;
        std::function<void(Tensors &)> edit;
        std::string says;
    } cases[] = {
        {"a weight is NaN", [](Tensors &t) { t.values["dense2.bias"][3] = NAN; },
         "tensor 'dense2.bias' holds NaN at index 3; expected finite values"},
        {"a moment is infinite", [](Tensors &t) { t.values["optim.dense1.weight.exp_avg"][0] = INFINITY; },
         "tensor 'optim.dense1.weight.exp_avg' holds an infinity at index 0"},
        {"a mean of squares is negative", [](Tensors &t) { t.values["optim.dense1.bias.exp_avg_sq"][2] = -1.0f; },
         "tensor 'optim.dense1.bias.exp_avg_sq' holds -1 at index 2; a mean of squares is never negative"},
        {"optim.t is negative", [](Tensors &t) { t.meta["optim.t"] = "-1"; },
         "metadata \"optim.t\" is \"-1\", expected an unsigned integer"},
        {"optim.t overflows", [](Tensors &t) { t.meta["optim.t"] = "99999999999999999999999"; },
         "expected an unsigned integer"},
        {"more updates than steps", [](Tensors &t) { t.meta["optim.t"] = "5"; },
         "metadata \"optim.t\" is 5, but 4 steps with 0 updates skipped make 4 updates"},
        // Adam's bias correction reads the count: resumed from 1, the run
        // would train differently from the one that wrote the file.
        {"fewer updates than steps", [](Tensors &t) { t.meta["optim.t"] = "1"; },
         "metadata \"optim.t\" is 1, but 4 steps with 0 updates skipped make 4 updates"},
        {"more skipped updates than steps", [](Tensors &t) { edit_state(t, "\nh.skipped_steps 0\n", "\nh.skipped_steps 9\n"); },
         "checkpoint state counts 9 skipped updates and 0 empty batches in 4 steps"},
        {"step out of line with the epoch",
         [](Tensors &t) { t.meta["cutrain.state.0"] = replaced(t.meta["cutrain.state.0"], "\nstep 4\n", "\nstep 5000000\n"); },
         "checkpoint state says step 5000000, but 4 steps into epoch 1 of 7-step epochs is step 4"},
        {"samples out of line with the steps",
         [](Tensors &t) { t.meta["cutrain.state.0"] = replaced(t.meta["cutrain.state.0"], "\nep_samples 128\n", "\nep_samples 0\n"); },
         "checkpoint state counts 0 samples in the 4 steps of the epoch so far; they hold 128"},
        {"a tensor it has no place for",
         [](Tensors &t) {
             t.values["optim.dense1.bias.momentum_buffer"] = t.values["dense1.bias"];
             t.shapes["optim.dense1.bias.momentum_buffer"] = t.shapes["dense1.bias"];
         },
         "tensor 'optim.dense1.bias.momentum_buffer' has no place in this run (not a parameter of the model nor a "
         "slot of adam's state)"},
        {"stopped by a health policy",
         [](Tensors &t) { t.meta["cutrain.state.0"] = replaced(t.meta["cutrain.state.0"], "\nh.stop 0\n", "\nh.stop 1\n"); },
         "checkpoint state says a health policy stopped the run"},
        {"a run of non-finite steps longer than their count",
         [](Tensors &t) { edit_state(t, "\nh.nonfinite_run 0\n", "\nh.nonfinite_run 3\n"); },
         "checkpoint state counts 0 non-finite steps (the last 3 in a row) in a run of 4 steps"},
        {"a state of a later version",
         [](Tensors &t) { t.meta["cutrain.state.0"] = replaced(t.meta["cutrain.state.0"], "version 3\n", "version 4\n"); },
         "written by another version of cutrain (expected 1 to 3)"},
    };
    for (const Case &c : cases) {
        SCOPED_TRACE(c.what);
        Tensors t = good;
        c.edit(t);
        write_checkpoint(bad, t);
        RunResult r = run_cutrain(base(const_model()) + " --max-steps 6 --resume " + bad + " --log-jsonl " + log);
        EXPECT_EQ(r.exit_code, CT_EXIT_BAD_INPUT) << r.out;
        EXPECT_NE(r.out.find("cutrain: error: " + bad + ": "), std::string::npos) << r.out;
        EXPECT_NE(r.out.find(c.says), std::string::npos) << r.out;
        EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 1) << r.out;
        EXPECT_FALSE(file_exists(log));
    }
}

// Version 1 of the state text had no h.nonfinite_run, version 2 no
// h.chance_half; such a checkpoint still resumes, to the records of a
// version 3 one (the run of non-finite steps starts at 0, which it is on any
// run that did not end in NaN; the chance block is short of its half here).
TEST_F(Checkpoint, AVersionOneStateStillResumes) {
    std::string ck = dir.file("ck.st"), v1 = dir.file("v1.st"), a = dir.file("a.jsonl"), b = dir.file("b.jsonl");
    ASSERT_EQ(run_cutrain(base(const_model()) + " --max-steps 4 --save " + ck).exit_code, 0);
    Tensors t = read_checkpoint(ck);
    ASSERT_EQ(t.meta.at("cutrain.state.0").rfind("version 3\n", 0), 0u) << t.meta.at("cutrain.state.0");
    t.meta["cutrain.state.0"] = replaced(t.meta["cutrain.state.0"], "version 3\n", "version 1\n");
    edit_state(t, "h.nonfinite_run 0\n", "");
    edit_state(t, "h.chance_half 100 0x0p+0\n", "");
    edit_state(t, "h.test_loss_said 0\n", "");
    write_checkpoint(v1, t);
    RunResult ra = run_cutrain(base(const_model()) + " --max-steps 6 --resume " + ck + " --log-jsonl " + a);
    RunResult rb = run_cutrain(base(const_model()) + " --max-steps 6 --resume " + v1 + " --log-jsonl " + b);
    ASSERT_EQ(ra.exit_code, 0) << ra.out;
    ASSERT_EQ(rb.exit_code, 0) << rb.out;
    auto sa = jsonl_of_type(a, "step"), sb = jsonl_of_type(b, "step");
    ASSERT_EQ(sa.size(), 2u);
    ASSERT_EQ(sb.size(), sa.size());
    for (size_t i = 0; i < sa.size(); ++i) EXPECT_EQ(sa[i], sb[i]) << i;
}

// The chance block's first half is kept with its length: resumed with the
// same --health-chance-window, LOSS_AT_CHANCE says what the run without a
// break says; resumed with another one, whose half the saved sum is not,
// the block is taken as flat so far. Reading the old half's sum as the new
// half's called a flat loss "falling from 4.71 to 1.19".
TEST_F(Checkpoint, TheChanceBlockResumesUnderTheSameOrAnotherWindow) {
    auto has = [](const std::string &hay, const std::string &needle) { return hay.find(needle) != std::string::npos; };
    // A rate of 1e-9: the loss stays where it starts, at chance.
    write_text(dir.file("flat.txt"),
               "input 64\ndense 16 relu\ndense 10 softmax\noptimizer adam lr=1e-9\nbatch_size 32\n");
    const std::string flat = base(dir.file("flat.txt")) + " --epochs 100";
    const std::string ck = dir.file("chance.st");
    ASSERT_EQ(run_cutrain(flat + " --max-steps 150 --save " + ck).exit_code, 0);  // 150 of a 200-step block
    auto chance_message = [&](const std::string &args, const std::string &log) {
        RunResult r = run_cutrain(flat + args + " --log-jsonl " + log);
        EXPECT_EQ(r.exit_code, 0) << r.out;
        for (const std::string &d : jsonl_of_type(log, "diagnosis"))
            if (json_string(d, "code") == "LOSS_AT_CHANCE") return json_string(d, "message");
        return std::string();
    };
    const std::string whole = chance_message(" --max-steps 210", dir.file("whole.jsonl"));
    ASSERT_TRUE(has(whole, "step 200: ")) << whole;
    EXPECT_EQ(chance_message(" --max-steps 210 --resume " + ck, dir.file("same.jsonl")), whole);

    const std::string other =
        chance_message(" --max-steps 160 --health-chance-window 100 --resume " + ck, dir.file("other.jsonl"));
    ASSERT_TRUE(has(other, "step 151: the loss has stayed at chance level for 151 steps")) << other;
    EXPECT_FALSE(has(other, "falling")) << other;
}

// A checkpoint that cannot be written (here: past RLIMIT_FSIZE, which fails
// the write with EFBIG as a full disk fails it with ENOSPC) stops the run
// with an error, and the previous checkpoint is left as it was.
TEST_F(Checkpoint, AFailedWriteLeavesThePreviousCheckpointIntact) {
    std::string ck = dir.file("ck.st");
    ASSERT_EQ(run_cutrain(base() + " --max-steps 4 --save " + ck).exit_code, 0);
    std::vector<uint8_t> before = read_file(ck);
    std::string log = dir.file("log.jsonl");
    pid_t pid = spawn(split(base() + " --epochs 3 --resume " + ck + " --save " + ck + " --save-every 2 --log-jsonl " + log),
                      before.size() / 2);
    int status = wait_status(pid);
    ASSERT_TRUE(WIFEXITED(status)) << "signal " << WTERMSIG(status);
    EXPECT_EQ(WEXITSTATUS(status), CT_EXIT_FAILURE);
    EXPECT_EQ(read_file(ck), before);
    std::string tmp = ck + ".tmp." + std::to_string(pid);
    EXPECT_FALSE(file_exists(tmp));
    // The log ends with a summary that says the run failed, at the step of
    // the first save (4 done, then 2 more), rather than with no summary.
    auto lines = read_lines(log);
    ASSERT_FALSE(lines.empty());
    EXPECT_EQ(lines.back().rfind("{\"type\":\"summary\",\"status\":\"failed\",\"exit_code\":1,", 0), 0u) << lines.back();
    EXPECT_EQ(json_number(lines.back(), "steps"), 6.0);
    RunResult shown = run_cutrain("show " + log);
    EXPECT_NE(shown.out.find("ended: failed (a checkpoint could not be written"), std::string::npos) << shown.out;
}

// The same limit on a log: the run fails with exit 1 and a message naming
// the log, instead of finishing with a silently short log; and it fails at
// the end of the epoch the log stopped in, not after every epoch left, with
// the weights so far in --save to resume from.
TEST_F(Checkpoint, ALogThatCannotBeWrittenMidRunIsAnError) {
    std::string log = dir.file("log.jsonl"), ck = dir.file("ck.st");
    pid_t pid = spawn(split(base() + " --epochs 3 --log-jsonl " + log), 3000);
    int status = wait_status(pid);
    ASSERT_TRUE(WIFEXITED(status)) << "signal " << WTERMSIG(status);
    EXPECT_EQ(WEXITSTATUS(status), CT_EXIT_FAILURE);
    RunResult r = run_cutrain(base(const_model()) + " --epochs 100000 --log-jsonl /dev/full --save " + ck);
    EXPECT_EQ(r.exit_code, CT_EXIT_FAILURE) << r.out;
    EXPECT_EQ(r.out, "cutrain: error: /dev/full: writing the log failed: No space left on device\n");
    Tensors t = read_checkpoint(ck);
    EXPECT_EQ(t.meta["step"], "7") << "the end of the first epoch (200 items, batch 32)";
    r = run_cutrain(base(const_model()) + " --epochs 2 --resume " + ck);
    EXPECT_EQ(r.exit_code, 0) << r.out;
}

// kill -9 at arbitrary moments of a run that checkpoints every step: the
// checkpoint left behind always loads, and a run resumed from the last one
// goes on exactly as a run that was never killed.
TEST_F(Checkpoint, KillNineLeavesALoadableCheckpointAndTheResumeMatches) {
    std::string ck = dir.file("ck.st");
    std::string args = base(const_model()) + " --epochs 100000 --save " + ck + " --save-every 1";
    uint64_t step = 0;
    for (int round = 0; round < 4; ++round) {
        pid_t pid = spawn(split(args));
        for (int i = 0; i < 500 && !file_exists(ck); ++i) usleep(2000);
        usleep(1000u * (unsigned)(round * 7));
        kill(pid, SIGKILL);
        int status = wait_status(pid);
        ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << "the run ended on its own";
        Tensors t = read_checkpoint(ck);
        ASSERT_EQ(t.meta["format"], "cutrain-checkpoint");
        step = std::strtoull(t.meta["step"].c_str(), nullptr, 10);
        EXPECT_GE(step, 1u);
        ::unlink(ck.c_str());
        // A stale temporary file of the killed writer may remain; it is never the checkpoint.
    }
    // Once more, then resume the last checkpoint for 25 steps and compare.
    pid_t pid = spawn(split(args));
    for (int i = 0; i < 500 && !file_exists(ck); ++i) usleep(2000);
    usleep(5000);
    kill(pid, SIGKILL);
    wait_status(pid);
    step = std::strtoull(read_checkpoint(ck).meta["step"].c_str(), nullptr, 10);
    ASSERT_GE(step, 1u);
    std::string until = std::to_string(step + 25), a = dir.file("resumed.jsonl"), b = dir.file("straight.jsonl");
    RunResult r = run_cutrain(base(const_model()) + " --epochs 100000 --resume " + ck + " --max-steps " + until +
                              " --log-jsonl " + a);
    ASSERT_EQ(r.exit_code, 0) << r.out;
    ASSERT_EQ(run_cutrain(base(const_model()) + " --epochs 100000 --max-steps " + until + " --log-jsonl " + b).exit_code,
              0);
    auto sa = jsonl_of_type(a, "step"), sb = jsonl_of_type(b, "step");
    ASSERT_EQ(sa.size(), 25u);
    ASSERT_EQ(sb.size(), step + 25);
    for (size_t i = 0; i < 25; ++i) EXPECT_EQ(sa[i], sb[step + i]);
}

// SIGINT (Ctrl-C), SIGTERM (kill, a scheduler) and SIGHUP (the terminal or
// ssh session went away) each stop at a step boundary, write the last
// records and a checkpoint of exactly that step, exit 5, and the checkpoint
// resumes.
TEST_F(Checkpoint, InterruptWritesACheckpointOfTheLastStep) {
    for (int sig : {SIGINT, SIGTERM, SIGHUP}) {
        SCOPED_TRACE(strsignal(sig));
        std::string ck = dir.file("ck.st"), log = dir.file("int.jsonl");
        remove(log.c_str());
        pid_t pid = spawn(split(base(const_model()) + " --epochs 100000 --save " + ck + " --log-jsonl " + log));
        for (int i = 0; i < 500 && jsonl_of_type(log, "epoch").empty(); ++i) usleep(10000);
        kill(pid, sig);
        int status = wait_status(pid);
        ASSERT_TRUE(WIFEXITED(status)) << "signal " << WTERMSIG(status);
        EXPECT_EQ(WEXITSTATUS(status), CT_EXIT_INTERRUPTED);
        auto sum = jsonl_of_type(log, "summary");
        ASSERT_EQ(sum.size(), 1u);
        double steps = json_number(sum[0], "steps");
        EXPECT_EQ(jsonl_of_type(log, "step").size(), (size_t)steps);
        Tensors t = read_checkpoint(ck);
        EXPECT_EQ(t.meta["step"], std::to_string((uint64_t)steps));
        RunResult r = run_cutrain(base(const_model()) + " --epochs 100000 --resume " + ck + " --max-steps " +
                                  std::to_string((uint64_t)steps + 3));
        EXPECT_EQ(r.exit_code, 0) << r.out;
    }
}

}  // namespace

namespace {

// What a review found resume getting wrong, each now right:
TEST_F(Checkpoint, ResumeKeepsToWhatTheRunWasAndSaysWhatItKeeps) {
    std::string ck = dir.file("ck.st"), log = dir.file("log.jsonl");
    // A running mean of squares that overflowed float32 to +Inf is a state a
    // run writes (docs/decisions.md, numerical edges): it resumes; a NaN or
    // -Inf there does not.
    ASSERT_EQ(run_cutrain(base() + " --max-steps 4 --save " + ck).exit_code, 0);
    Tensors t = read_checkpoint(ck);
    t.values["optim.dense1.weight.exp_avg_sq"][5] = INFINITY;
    std::string inf = dir.file("inf.st");
    write_checkpoint(inf, t);
    RunResult r = run_cutrain(base() + " --max-steps 6 --resume " + inf);
    EXPECT_EQ(r.exit_code, 0) << r.out;
    t.values["optim.dense1.weight.exp_avg_sq"][5] = NAN;
    write_checkpoint(inf, t);
    r = run_cutrain(base() + " --max-steps 6 --resume " + inf);
    EXPECT_EQ(r.exit_code, CT_EXIT_BAD_INPUT) << r.out;
    EXPECT_NE(r.out.find("holds NaN at index 5; expected finite values (cutrain writes such a file only after --on-nan warn"), std::string::npos)
        << r.out;

    // Saying the default schedule (constant) changes nothing, either way.
    ASSERT_EQ(run_cutrain(base(const_model()) + " --max-steps 4 --save " + ck).exit_code, 0);
    r = run_cutrain(base(const_model()) + " --lr-schedule constant --max-steps 6 --resume " + ck);
    EXPECT_EQ(r.exit_code, 0) << r.out;
    ASSERT_EQ(run_cutrain(base(const_model()) + " --lr-schedule constant --max-steps 4 --save " + ck).exit_code, 0);
    r = run_cutrain(base(const_model()) + " --max-steps 6 --resume " + ck);
    EXPECT_EQ(r.exit_code, 0) << r.out;

    // A resumed log goes on from the next step: the step-0 diagnoses (here
    // MSE on a softmax) are the first run's.
    ASSERT_EQ(run_cutrain(base() + " --loss mse --max-steps 4 --save " + ck + " --log-jsonl " + log).exit_code, 0);
    EXPECT_EQ(jsonl_of_type(log, "diagnosis").size(), 1u);
    r = run_cutrain(base() + " --loss mse --max-steps 6 --resume " + ck + " --log-jsonl " + log);
    ASSERT_EQ(r.exit_code, 0) << r.out;
    EXPECT_TRUE(jsonl_of_type(log, "diagnosis").empty()) << read_lines(log).at(0);

    // A schedule keeps the length it was saved with; a resume whose
    // settings would give another says so.
    ASSERT_EQ(run_cutrain(base() + " --lr-schedule cosine --epochs 2 --max-steps 4 --save " + ck).exit_code, 0);
    r = run_cutrain("train --device cpu --threads 1 --seed 3 --model " + model() + " --data " + dir.path() +
                    " --lr-schedule cosine --epochs 2 --resume " + ck + " --log-jsonl " + log);
    ASSERT_EQ(r.exit_code, 0) << r.out;
    EXPECT_NE(r.out.find("cutrain: --resume: the checkpoint's cosine schedule spans 4 steps and keeps that length "
                         "(this run's settings would make it 14)"),
              std::string::npos)
        << r.out;
}

// Convolutions of another stride or padding whose weights have the same
// shapes compute something else: a checkpoint of one is refused by the other.
TEST_F(Checkpoint, AConvModelOfAnotherStrideOrPaddingIsAnotherModel) {
    write_text(dir.file("a.txt"), "input 1 8 8\nconv2d 2 3 relu\nconv2d 2 3 relu stride=2\nflatten\ndense 10 softmax\n"
                                  "batch_size 32\n");
    write_text(dir.file("b.txt"), "input 1 8 8\nconv2d 2 3 relu stride=2 padding=1\nconv2d 2 3 relu\nflatten\n"
                                  "dense 10 softmax\nbatch_size 32\n");
    std::string ck = dir.file("a.st");
    ASSERT_EQ(run_cutrain(base(dir.file("a.txt")) + " --max-steps 3 --save " + ck).exit_code, 0);
    EXPECT_NE(read_checkpoint(ck).meta["model"].find("conv2d 2 3x3 relu stride=2 ->"), std::string::npos);
    RunResult r = run_cutrain(base(dir.file("b.txt")) + " --max-steps 5 --resume " + ck);
    EXPECT_EQ(r.exit_code, CT_EXIT_BAD_INPUT) << r.out;
    EXPECT_NE(r.out.find("stride=2 padding=1"), std::string::npos) << r.out;
    EXPECT_EQ(run_cutrain(base(dir.file("a.txt")) + " --max-steps 5 --resume " + ck).exit_code, 0);
}

}  // namespace
