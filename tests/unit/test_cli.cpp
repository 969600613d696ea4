// The cutrain command end to end on small synthetic MNIST-format data:
// the contracts of README.md (flags, JSONL, exit statuses, messages).
#include <gtest/gtest.h>

#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>

#include "support/fixtures.h"

using namespace ct_test;

namespace {

const char *kModel = "input 64\ndense 16 relu\ndense 10 softmax\noptimizer adam lr=0.01\nbatch_size 32\n";

class Cli : public ::testing::Test {
  protected:
    void SetUp() override {
        write_synthetic_mnist(dir.path(), 200, 50);
        write_text(model(), kModel);
    }
    std::string model() const { return dir.file("model.txt"); }
    // Without --device: each test adds it (the flag may be given once).
    std::string base_any() const { return "train --quiet --model " + model() + " --data " + dir.path(); }
    std::string base() const { return base_any() + " --device cpu"; }
    TempDir dir;
};

TEST_F(Cli, HelpAndUnknownCommand) {
    RunResult r = run_cutrain("train --help");
    EXPECT_EQ(r.exit_code, 0);
    EXPECT_NE(r.out.find("--log-jsonl"), std::string::npos);
    EXPECT_NE(r.out.find("--on-nan"), std::string::npos);
    r = run_cutrain("eval --help");
    EXPECT_EQ(r.exit_code, 0);
    EXPECT_NE(r.out.find("--weights"), std::string::npos);
    r = run_cutrain("frobnicate");
    EXPECT_EQ(r.exit_code, CT_EXIT_USAGE);
    EXPECT_NE(r.out.find("unknown command 'frobnicate'"), std::string::npos);
    r = run_cutrain("\"$(printf 'tr\\033[31main\\377')\"");  // ESC and a byte that is not UTF-8
    EXPECT_EQ(r.exit_code, CT_EXIT_USAGE);
    EXPECT_EQ(r.out.rfind("cutrain: error: unknown command 'tr?[31main\\xFF' (expected", 0), 0u) << r.out;
    r = run_cutrain("");
    EXPECT_EQ(r.exit_code, CT_EXIT_USAGE);
    EXPECT_EQ(r.out, "cutrain: error: no command given (expected train, eval, bench, check or show; see cutrain --help)\n");
    r = run_cutrain("--help");
    EXPECT_EQ(r.exit_code, 0);
    EXPECT_NE(r.out.find("--version"), std::string::npos) << r.out;
    r = run_cutrain("--version");
    EXPECT_EQ(r.exit_code, 0);
    EXPECT_EQ(r.out.rfind("cutrain ", 0), 0u) << r.out;
}

TEST_F(Cli, TrainsAndWritesTheJsonlContract) {
    std::string log = dir.file("run.jsonl"), csv = dir.file("run.csv");
    RunResult r = run_cutrain(base() + " --epochs 2 --seed 7 --log-jsonl " + log + " --log-csv " + csv);
    ASSERT_EQ(r.exit_code, 0) << r.out;
    auto steps = jsonl_of_type(log, "step");
    ASSERT_EQ(steps.size(), 2u * 7u);  // ceil(200 / 32) = 7
    for (const char *key : {"\"epoch\":", "\"step\":", "\"loss\":", "\"acc\":", "\"grad_norm\":",
                            "\"update_ratio\":", "\"flags\":["})
        EXPECT_NE(steps[0].find(key), std::string::npos) << key << " in " << steps[0];
    EXPECT_EQ(json_number(steps[0], "step"), 1.0);
    EXPECT_EQ(json_number(steps.back(), "step"), 14.0);
    auto epochs = jsonl_of_type(log, "epoch");
    ASSERT_EQ(epochs.size(), 2u);
    for (const char *key : {"train_loss", "train_acc", "test_loss", "test_acc", "seconds", "samples_per_s"})
        EXPECT_TRUE(std::isfinite(json_number(epochs[1], key))) << key;
    auto sum = jsonl_of_type(log, "summary");
    ASSERT_EQ(sum.size(), 1u);
    EXPECT_NE(sum[0].find("\"status\":\"completed\""), std::string::npos);
    EXPECT_EQ(json_number(sum[0], "steps"), 14.0);
    EXPECT_GT(json_number(sum[0], "test_acc"), 0.8);
    auto rows = read_lines(csv);
    ASSERT_EQ(rows.size(), 3u);
    EXPECT_EQ(rows[0].rfind("epoch,steps,", 0), 0u);
}

TEST_F(Cli, SameSeedGivesIdenticalLossTraces) {
    std::string a = dir.file("a.jsonl"), b = dir.file("b.jsonl");
    ASSERT_EQ(run_cutrain(base() + " --seed 3 --max-steps 6 --log-jsonl " + a).exit_code, 0);
    ASSERT_EQ(run_cutrain(base() + " --seed 3 --max-steps 6 --log-jsonl " + b).exit_code, 0);
    auto sa = jsonl_of_type(a, "step"), sb = jsonl_of_type(b, "step");
    ASSERT_EQ(sa.size(), 6u);
    EXPECT_EQ(sa, sb);
    // A sign on a whole number reads as every numeric flag reads it.
    ASSERT_EQ(run_cutrain(base() + " --seed +3 --max-steps +6 --log-jsonl " + b).exit_code, 0);
    EXPECT_EQ(jsonl_of_type(b, "step"), sa);
    for (const char *bad : {" --seed ++3", " --seed +-3", " --seed -3", " --seed +", " --max-steps ' 6'"}) {
        RunResult r = run_cutrain(base() + bad + " --log-jsonl " + b);
        EXPECT_EQ(r.exit_code, CT_EXIT_USAGE) << bad << ": " << r.out;
    }
}

// --lr-schedule and its settings reach the optimizer exactly as the model
// file's schedule line does (the same step records, bit for bit), and they
// change the run (a constant rate gives other records).
TEST_F(Cli, ScheduleFlagsActAsTheModelFilesScheduleLine) {
    const std::string run = " --seed 3 --max-steps 6 --log-jsonl ";
    std::string c = dir.file("constant.jsonl");
    ASSERT_EQ(run_cutrain(base() + run + c).exit_code, 0);
    auto constant = jsonl_of_type(c, "step");
    ASSERT_EQ(constant.size(), 6u);
    struct Case {
        const char *flags, *line;
    } cases[] = {
        {"--lr-schedule step --lr-step-size 2 --lr-gamma 0.5", "schedule step step_size=2 gamma=0.5\n"},
        {"--lr-schedule onecycle --lr-pct 0.25", "schedule onecycle pct=0.25\n"},
        {"--lr-schedule cosine", "schedule cosine\n"},
    };
    for (const Case &k : cases) {
        SCOPED_TRACE(k.flags);
        std::string file_model = dir.file("scheduled.txt"), a = dir.file("a.jsonl"), b = dir.file("b.jsonl");
        write_text(file_model, std::string(kModel) + k.line);
        RunResult r = run_cutrain(base() + " " + k.flags + run + a);
        ASSERT_EQ(r.exit_code, 0) << r.out;
        r = run_cutrain("train --quiet --device cpu --model " + file_model + " --data " + dir.path() + run + b);
        ASSERT_EQ(r.exit_code, 0) << r.out;
        auto sa = jsonl_of_type(a, "step");
        EXPECT_EQ(sa, jsonl_of_type(b, "step"));
        EXPECT_NE(sa, constant);
    }
    // The flag also overrides a file's schedule: constant is constant.
    std::string file_model = dir.file("stepped.txt"), d = dir.file("d.jsonl");
    write_text(file_model, std::string(kModel) + "schedule step step_size=1 gamma=0.5\n");
    RunResult r = run_cutrain("train --quiet --device cpu --lr-schedule constant --model " + file_model + " --data " +
                              dir.path() + run + d);
    ASSERT_EQ(r.exit_code, 0) << r.out;
    EXPECT_EQ(jsonl_of_type(d, "step"), constant);
}

// What train and bench print on stdout is part of their result: a write that
// fails (here: /dev/full, a full disk) fails the command, one line on stderr.
TEST_F(Cli, AStdoutThatCannotBeWrittenFailsTheCommand) {
    std::string w = dir.file("w.safetensors"), log = dir.file("o.jsonl");
    ASSERT_EQ(run_cutrain(base() + " --max-steps 3 --save " + w).exit_code, 0);
    const std::string common = " --device cpu --model " + model() + " --data " + dir.path() + " --log-jsonl " + log;
    for (const std::string &cmd : {"train --max-steps 2" + common, "eval --weights " + w + common,
                                   "bench --steps 2 --warmup 0 --repeats 1" + common}) {
        SCOPED_TRACE(cmd);
        RunResult r = run_command("(" + std::string(CT_CUTRAIN_EXE) + " " + cmd + " > /dev/full)");
        EXPECT_EQ(r.exit_code, CT_EXIT_FAILURE) << r.out;
        // One line; the reason (ENOSPC) is named when the last flush met it,
        // not when an earlier buffered write did.
        EXPECT_EQ(r.out.rfind("cutrain: error: stdout: write failed", 0), 0u) << r.out;
        EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 1) << r.out;
        // The log's summary says what the exit says.
        auto sum = jsonl_of_type(log, "summary");
        ASSERT_EQ(sum.size(), 1u);
        EXPECT_NE(sum[0].find("\"status\":\"failed\",\"exit_code\":1,"), std::string::npos) << sum[0];
    }
    // With --quiet, train prints nothing there, and nothing fails.
    EXPECT_EQ(run_command("(" + std::string(CT_CUTRAIN_EXE) + " " + base() + " --max-steps 2 > /dev/full)").exit_code,
              0);
}

std::vector<std::string> split_lines(const std::string &text) {
    std::vector<std::string> lines;
    size_t at = 0;
    for (size_t nl; (nl = text.find('\n', at)) != std::string::npos; at = nl + 1) lines.push_back(text.substr(at, nl - at));
    if (at < text.size()) lines.push_back(text.substr(at));
    return lines;
}

// A closed stdout must not hand its descriptor to the JSONL log (the
// terminal's lines would land among the records); a reader that goes away
// (| head) makes stdout's writes fail, not the process die: the run ends,
// its log has its summary and --save its checkpoint, and the exit is 1.
TEST_F(Cli, AClosedOrBrokenStdoutNeitherPollutesTheLogNorKillsTheRun) {
    const std::string log = dir.file("run.jsonl"), ck = dir.file("ck.st");
    const std::string train = std::string(CT_CUTRAIN_EXE) + " train --device cpu --model " + model() + " --data " +
                              dir.path() + " --epochs 3 --log-jsonl " + log;
    RunResult r = run_command("(" + train + " >&-)");
    EXPECT_EQ(r.exit_code, 0) << r.out;
    for (const std::string &line : read_lines(log)) EXPECT_EQ(line.rfind("{\"type\":", 0), 0u) << line;
    EXPECT_EQ(jsonl_of_type(log, "summary").size(), 1u);

    // A pipe whose reader is gone before the run starts (as | head's is soon
    // after its first line; made so here so that no timing decides it).
    int fds[2];
    ASSERT_EQ(pipe(fds), 0);
    close(fds[0]);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(fds[1], STDOUT_FILENO);
        int null = open("/dev/null", O_WRONLY);
        dup2(null, STDERR_FILENO);
        execl(CT_CUTRAIN_EXE, CT_CUTRAIN_EXE, "train", "--device", "cpu", "--model", model().c_str(), "--data",
              dir.path().c_str(), "--epochs", "3", "--log-jsonl", log.c_str(), "--save", ck.c_str(), (char *)nullptr);
        _exit(127);
    }
    close(fds[1]);
    int status = 0;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    ASSERT_TRUE(WIFEXITED(status)) << "killed by signal " << WTERMSIG(status);
    EXPECT_EQ(WEXITSTATUS(status), CT_EXIT_FAILURE);
    EXPECT_EQ(jsonl_of_type(log, "summary").size(), 1u);
    EXPECT_TRUE(file_exists(ck));
}

// A disk that takes not one byte (here ulimit -f 0): the run fails with one
// line naming the log, and leaves no empty log file and no TensorBoard
// directory behind.
TEST_F(Cli, LogsTheDiskTookNothingOfAreNotLeftEmpty) {
    const std::string log = dir.file("run.jsonl"), tb = dir.file("tb/run");
    RunResult r = run_command("(ulimit -S -f 0; exec " + std::string(CT_CUTRAIN_EXE) + " " + base() +
                              " --epochs 2 --log-jsonl " + log + " --log-tensorboard " + tb + ")");
    EXPECT_EQ(r.exit_code, CT_EXIT_FAILURE) << r.out;
    EXPECT_EQ(r.out, "cutrain: error: " + log + ": writing the log failed: File too large\n");
    EXPECT_FALSE(file_exists(log));
    EXPECT_FALSE(file_exists(dir.file("tb")));
}

// Two runs given one log: the second is refused while the first holds it
// (here the test holds the lock), and the log is left as it was.
TEST_F(Cli, ALogAnotherRunIsWritingIsRefused) {
    const std::string csv = dir.file("run.csv"), log = dir.file("new.jsonl");
    write_text(csv, "the first run's rows\n");
    int fd = open(csv.c_str(), O_WRONLY);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(flock(fd, LOCK_EX | LOCK_NB), 0);
    RunResult r = run_cutrain(base() + " --max-steps 2 --log-jsonl " + log + " --log-csv " + csv);
    EXPECT_EQ(r.exit_code, CT_EXIT_BAD_INPUT) << r.out;
    EXPECT_EQ(r.out, "cutrain: error: " + csv + ": another process is writing this CSV log (a second run given the "
                                                 "same path?)\n");
    EXPECT_EQ(read_lines(csv), std::vector<std::string>{"the first run's rows"});
    EXPECT_FALSE(file_exists(log)) << "the JSONL log it had made (and locked) was left";
    close(fd);
    EXPECT_EQ(run_cutrain(base() + " --max-steps 2 --log-csv " + csv).exit_code, 0) << "free once the lock is gone";
}

// A model too large for memory: exit 1, one line naming the model file,
// what was asked for, and the rows it was built for; no log left behind.
TEST_F(Cli, AModelTooLargeForMemoryIsNamed) {
    const std::string big = dir.file("big.txt"), log = dir.file("run.jsonl");
    write_text(big, "input 64\ndense 1048576 relu\ndense 1048576 relu\ndense 10 softmax\nbatch_size 65536\n");
    RunResult r = run_cutrain("train --quiet --device cpu --model " + big + " --data " + dir.path() +
                              " --log-jsonl " + log);
    // Under ASan (tools/ci-hardening, allocator_may_return_null=1) the
    // sanitizer adds its own "==PID==WARNING: ... failed to allocate" line.
    std::string kept;
    for (const std::string &line : split_lines(r.out))
        if (line.rfind("==", 0) != 0) kept += line + "\n";
    r.out = kept;
    EXPECT_EQ(r.exit_code, CT_EXIT_FAILURE) << r.out;
    EXPECT_EQ(r.out.rfind("cutrain: error: " + big + ": cpu: out of memory allocating ", 0), 0u) << r.out;
    // The batch of 65536 is larger than the small training set, so the model
    // is built for the rows that set fills, at least evaluation's 1000.
    EXPECT_NE(r.out.find("(building the model for 1000 rows at a time)"), std::string::npos) << r.out;
    EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 1) << r.out;
    EXPECT_FALSE(file_exists(log));
}

struct FlagCase {
    const char *flags;
    const char *needle;
};

TEST_F(Cli, NonsenseFlagsAreRejectedBeforeAnyWork) {
    const FlagCase cases[] = {
        {"--lr -1", "--lr: expected a number greater than 0"},
        {"--lr nan", "--lr: expected a number"},
        {"--lr 1e9", "--lr: expected a number"},
        {"--lr 0", "--lr: expected a number greater than 0"},
        {"--batch-size 0", "--batch-size: expected a whole number"},
        {"--batch-size 12abc", "--batch-size: expected a whole number"},
        {"--epochs -2", "--epochs: expected a whole number"},
        {"--optimizer adagrad", "--optimizer: expected one of sgd|adam|adamw|rmsprop"},
        {"--device gpu", "--device: expected one of auto|cpu|cuda"},
        {"--device cpu --device cpu", "--device: given more than once"},
        {"--on-nan ignore", "--on-nan: expected one of stop|skip|warn"},
        {"--seed -1", "--seed: expected a whole number"},
        {"--clip-grad-norm -3", "--clip-grad-norm"},
        {"--health-chance-tolerance 2", "--health-chance-tolerance: expected a number from 0 to 1, got '2'"},
        {"--frobnicate 3", "unknown flag '--frobnicate'"},
        {"--epochs", "--epochs: missing value"},
        {"--epochs 1 --epochs 2", "--epochs: given more than once"},
    };
    for (const FlagCase &c : cases) {
        std::string log = dir.file("never.jsonl");
        RunResult r = run_cutrain(base_any() + " " + c.flags + " --log-jsonl " + log);
        EXPECT_EQ(r.exit_code, CT_EXIT_USAGE) << c.flags << "\n" << r.out;
        EXPECT_NE(r.out.find(c.needle), std::string::npos) << c.flags << "\n" << r.out;
        EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 1) << r.out;
        EXPECT_FALSE(file_exists(log)) << c.flags;
    }
}

TEST_F(Cli, TruncatedImagesNameTheFile) {
    std::string images = dir.file("train-images-idx3-ubyte");
    auto bytes = read_file(images);
    bytes.resize(bytes.size() / 2);
    write_file(images, bytes);
    std::string log = dir.file("never.jsonl");
    RunResult r = run_cutrain(base() + " --log-jsonl " + log);
    EXPECT_EQ(r.exit_code, CT_EXIT_BAD_INPUT) << r.out;
    EXPECT_NE(r.out.find(images), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("truncated"), std::string::npos) << r.out;
    EXPECT_FALSE(file_exists(log));
}

TEST_F(Cli, LabelsOutsideTheModelsClasses) {
    std::vector<uint8_t> labels(200, 3);
    labels[17] = 12;
    write_idx_u8(dir.file("train-labels-idx1-ubyte"), {200}, labels);
    RunResult r = run_cutrain(base());
    EXPECT_EQ(r.exit_code, CT_EXIT_BAD_INPUT) << r.out;
    EXPECT_NE(r.out.find(dir.file("train-labels-idx1-ubyte")), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("label 12 at index 17"), std::string::npos) << r.out;
}

TEST_F(Cli, EmptyDatasetsAndBatchesThatCannotBeFilled) {
    write_idx_u8(dir.file("t10k-images-idx3-ubyte"), {0, 8, 8}, {});
    write_idx_u8(dir.file("t10k-labels-idx1-ubyte"), {0}, {});
    RunResult r = run_cutrain(base());
    EXPECT_EQ(r.exit_code, CT_EXIT_BAD_INPUT) << r.out;
    EXPECT_NE(r.out.find("0 items"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("t10k-images-idx3-ubyte"), std::string::npos) << r.out;

    write_synthetic_mnist(dir.path(), 200, 50);
    r = run_cutrain(base() + " --batch-size 500 --drop-last");
    EXPECT_EQ(r.exit_code, CT_EXIT_USAGE) << r.out;
    EXPECT_NE(r.out.find("leaves no full batch from the 200 items of " + dir.file("train-images-idx3-ubyte")),
              std::string::npos)
        << r.out;
}

TEST_F(Cli, InputSizeMismatch) {
    RunResult r = run_cutrain("train --quiet --device cpu --model mlp --data " + dir.path());
    EXPECT_EQ(r.exit_code, CT_EXIT_BAD_INPUT) << r.out;
    EXPECT_NE(r.out.find("items have 64 values but the model's input is 784"), std::string::npos) << r.out;
}

TEST_F(Cli, UnwritableLogPathFailsBeforeTrainingAndLeavesNothing) {
    std::string log = dir.file("no/such/dir/run.jsonl");
    RunResult r = run_cutrain(base() + " --log-jsonl " + log);
    EXPECT_EQ(r.exit_code, CT_EXIT_BAD_INPUT) << r.out;
    EXPECT_NE(r.out.find(log), std::string::npos) << r.out;
    r = run_cutrain(base() + " --log-jsonl " + dir.file("ok.jsonl") + " --log-csv " + dir.path());
    EXPECT_EQ(r.exit_code, CT_EXIT_BAD_INPUT) << r.out;
    EXPECT_NE(r.out.find("names a directory"), std::string::npos) << r.out;
    EXPECT_FALSE(file_exists(dir.file("ok.jsonl")));
}

// Two outputs may share /dev/null: only regular files count as the same file.
TEST_F(Cli, LogsMayBothGoToDevNull) {
    RunResult r = run_cutrain(base() + " --max-steps 2 --log-jsonl /dev/null --log-csv /dev/null");
    EXPECT_EQ(r.exit_code, 0) << r.out;
}

TEST_F(Cli, MissingDataDirectory) {
    RunResult r = run_cutrain("train --quiet --device cpu --model " + model() + " --data " + dir.file("nowhere"));
    EXPECT_EQ(r.exit_code, CT_EXIT_BAD_INPUT) << r.out;
    EXPECT_NE(r.out.find(dir.file("nowhere")), std::string::npos) << r.out;
}

// eval takes the design's shared flags: --loss chooses the test loss, and
// the settings of training are checked but change nothing, so a train
// command line becomes an eval one by its first word.
TEST_F(Cli, EvalTakesTheSharedFlags) {
    std::string w = dir.file("w.safetensors");
    ASSERT_EQ(run_cutrain(base() + " --epochs 2 --save " + w).exit_code, 0);
    const std::string eval = "eval --quiet --device cpu --model " + model() + " --data " + dir.path() + " --weights " + w;
    auto summary = [&](const std::string &flags) {
        std::string ev = dir.file("eval.jsonl");
        RunResult r = run_cutrain(eval + flags + " --log-jsonl " + ev);
        EXPECT_EQ(r.exit_code, 0) << flags << ": " << r.out;
        return jsonl_of_type(ev, "summary").at(0);
    };
    std::string plain = summary(""), trainish = summary(" --seed 9 --lr 0.5 --epochs 3 --optimizer sgd"),
                mse = summary(" --loss mse");
    EXPECT_EQ(json_number(trainish, "test_loss"), json_number(plain, "test_loss"));
    EXPECT_EQ(json_number(trainish, "test_acc"), json_number(plain, "test_acc"));
    EXPECT_EQ(json_number(mse, "test_acc"), json_number(plain, "test_acc"));
    EXPECT_NE(json_number(mse, "test_loss"), json_number(plain, "test_loss"));
    EXPECT_LT(json_number(mse, "test_loss"), 1.0);  // a mean of squares of probabilities' errors
    for (const char *bad : {" --lr -1", " --lr 1e-40", " --epochs 0", " --optimizer nesterov", " --loss hinge"}) {
        RunResult r = run_cutrain(eval + bad);
        EXPECT_EQ(r.exit_code, CT_EXIT_USAGE) << bad << ": " << r.out;
        EXPECT_NE(r.out.find(std::string(bad).substr(1, std::string(bad).find(' ', 1) - 1)), std::string::npos) << r.out;
    }
}

TEST_F(Cli, SavedWeightsEvaluateToTheSameAccuracy) {
    std::string log = dir.file("run.jsonl"), w = dir.file("w.safetensors"), ev = dir.file("eval.jsonl");
    ASSERT_EQ(run_cutrain(base() + " --epochs 2 --log-jsonl " + log + " --save " + w).exit_code, 0);
    ASSERT_TRUE(file_exists(w));
    RunResult r = run_cutrain("eval --quiet --device cpu --model " + model() + " --data " + dir.path() +
                              " --weights " + w + " --log-jsonl " + ev);
    ASSERT_EQ(r.exit_code, 0) << r.out;
    double trained = json_number(jsonl_of_type(log, "summary").at(0), "test_acc");
    double evaluated = json_number(jsonl_of_type(ev, "summary").at(0), "test_acc");
    EXPECT_EQ(trained, evaluated);

    // Weights of another model are refused, naming the tensor.
    write_text(dir.file("other.txt"), "input 64\ndense 12 relu\ndense 10 softmax\n");
    r = run_cutrain("eval --quiet --device cpu --model " + dir.file("other.txt") + " --data " + dir.path() +
                    " --weights " + w);
    EXPECT_EQ(r.exit_code, CT_EXIT_BAD_INPUT) << r.out;
    EXPECT_NE(r.out.find("dense1.weight"), std::string::npos) << r.out;

    // Tensors of the same shapes for layers of another activation: the file
    // names the model it was written for, and that is checked too.
    write_text(dir.file("tanh.txt"), "input 64\ndense 16 tanh\ndense 10 softmax\n");
    r = run_cutrain("eval --quiet --device cpu --model " + dir.file("tanh.txt") + " --data " + dir.path() +
                    " --weights " + w);
    EXPECT_EQ(r.exit_code, CT_EXIT_BAD_INPUT) << r.out;
    EXPECT_NE(r.out.find(w + ": written for the layers '64 -> dense 16 relu -> dense 10 softmax', but this model's are "
                             "'64 -> dense 16 tanh -> dense 10 softmax'"),
              std::string::npos)
        << r.out;

    // A batch larger than the test set (50 items) is one pass over it, not a
    // buffer of the batch's size.
    r = run_cutrain("eval --quiet --device cpu --batch-size 65536 --model " + model() + " --data " + dir.path() +
                    " --weights " + w + " --log-jsonl " + ev);
    ASSERT_EQ(r.exit_code, 0) << r.out;
    EXPECT_EQ(json_number(jsonl_of_type(ev, "summary").at(0), "test_acc"), trained);
}

TEST_F(Cli, DeviceSelection) {
    char why[256];
    if (ct_cuda_available(why, sizeof why)) GTEST_SKIP() << "a GPU is present; this checks the no-GPU path";
    RunResult r = run_cutrain(base_any() + " --device cuda");
    EXPECT_NE(r.exit_code, 0);
    EXPECT_NE(r.out.find("cuda"), std::string::npos) << r.out;
    r = run_cutrain("train --device auto --max-steps 2 --model " + model() + " --data " + dir.path());
    EXPECT_EQ(r.exit_code, 0) << r.out;
    EXPECT_NE(r.out.find("no usable GPU"), std::string::npos) << r.out;
}

// An error quotes what it was given, which may hold anything: control
// bytes and newlines (made '?' and ' ' by ct_fail), bytes that are not UTF-8,
// C1 controls and characters that print as nothing (escaped by the report)
// all leave one line that shows what is there; printable non-ASCII is kept.
TEST_F(Cli, AnErrorShowsWhatItQuotesOnOneLineAndEscaped) {
    write_text(dir.file("m1.txt"), "input 64\ndense\xc2\xa0" "16 relu\ndense 10 softmax\n");
    RunResult r = run_cutrain("train --quiet --device cpu --data " + dir.path() + " --model " + dir.file("m1.txt"));
    EXPECT_EQ(r.exit_code, CT_EXIT_BAD_INPUT) << r.out;
    EXPECT_NE(r.out.find("unknown directive 'dense<U+00A0>16'"), std::string::npos) << r.out;
    write_text(dir.file("m2.txt"), "input 64\nfoo\xff\x1b[2J\xc2\x9b\xc3\xa9\ndense 10 softmax\n");
    r = run_cutrain("train --quiet --device cpu --data " + dir.path() + " --model " + dir.file("m2.txt"));
    EXPECT_EQ(r.exit_code, CT_EXIT_BAD_INPUT) << r.out;
    // (ct_fail has already made the ESC a '?'.)
    EXPECT_NE(r.out.find("unknown directive 'foo\\xFF?[2J\\xC2\\x9B\xc3\xa9'"), std::string::npos) << r.out;
    // A file name with a newline in it: still one line.
    const std::string odd = dir.file("two\nlines");
    r = run_cutrain("eval --quiet --device cpu --model " + model() + " --data " + dir.path() + " --weights '" + odd + "'");
    EXPECT_EQ(r.exit_code, CT_EXIT_BAD_INPUT) << r.out;
    EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 1) << r.out;
    EXPECT_NE(r.out.find("two lines"), std::string::npos) << r.out;
}

// A path with an ESC and a byte that is not UTF-8, quoted by a warning and
// by the log's strings: the warning is one escaped line, and the log stays
// one that show reads (JSON is UTF-8: the byte becomes U+FFFD).
TEST_F(Cli, AnOddPathInAWarningAndInTheLogStaysReadable) {
    const std::string odd = dir.file("d\x1b[7m\xff");
    ASSERT_EQ(mkdir(odd.c_str(), 0755), 0);
    write_synthetic_mnist(odd, 60, 20, 8, 1);  // one class: a warning that names the labels file
    const std::string m = odd + "/m\xff.txt", log = dir.file("odd.jsonl");
    write_text(m, "input 64\ndense 10 softmax\n");
    RunResult r = run_cutrain("train --quiet --device cpu --max-steps 2 --model '" + m + "' --data '" + odd +
                              "' --log-jsonl " + log);
    ASSERT_EQ(r.exit_code, 0) << r.out;
    EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 2) << r.out;  // the train and the test labels
    EXPECT_NE(r.out.find("[LABELS_SINGLE_CLASS]: " + dir.file("d\\x1B[7m\\xFF/train-labels-idx1-ubyte")), std::string::npos)
        << r.out;
    EXPECT_EQ(r.out.find('\x1b'), std::string::npos) << r.out;
    auto sum = jsonl_of_type(log, "summary");
    ASSERT_EQ(sum.size(), 1u);
    EXPECT_NE(sum[0].find("m\\ufffd.txt"), std::string::npos) << sum[0];
    r = run_cutrain("show " + log);
    EXPECT_EQ(r.exit_code, 0) << r.out;
}

// --device auto's note on the CPU fallback waits until the inputs have been
// checked, so a bad one still gets one line on the terminal: the error.
TEST_F(Cli, AutoDeviceNoteDoesNotPrecedeAnInputError) {
    std::string junk = dir.file("junk.safetensors");
    write_text(junk, "not a safetensors file\n");
    const std::string common = " --model " + model() + " --data " + dir.path() + " --device auto";
    for (const std::string &line : {"eval --weights " + junk + common, "train --max-steps 2 --init-weights " + junk + common,
                                    "train --max-steps 2 --resume " + junk + common}) {
        RunResult r = run_cutrain(line);
        SCOPED_TRACE(line);
        EXPECT_EQ(r.exit_code, CT_EXIT_BAD_INPUT) << r.out;
        EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 1) << r.out;
        EXPECT_EQ(r.out.rfind("cutrain: error: " + junk, 0), 0u) << r.out;
    }
}

}  // namespace

namespace {

// SIGINT stops the run at a step boundary with the records, the epoch and
// the summary written, and exit status 5.
TEST_F(Cli, InterruptStopsAtAStepBoundaryAndWritesTheSummary) {
    std::string log = dir.file("int.jsonl");
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
        freopen("/dev/null", "w", stdout);
        freopen("/dev/null", "w", stderr);
        execl(CT_CUTRAIN_EXE, CT_CUTRAIN_EXE, "train", "--quiet", "--device", "cpu", "--model", model().c_str(),
              "--data", dir.path().c_str(), "--epochs", "100000", "--log-jsonl", log.c_str(), (char *)nullptr);
        _exit(127);
    }
    // Wait until training has visibly started, then interrupt.
    for (int i = 0; i < 200 && jsonl_of_type(log, "epoch").empty(); ++i) usleep(20000);
    kill(pid, SIGINT);
    int status = 0;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    ASSERT_TRUE(WIFEXITED(status)) << "killed by signal " << WTERMSIG(status);
    EXPECT_EQ(WEXITSTATUS(status), CT_EXIT_INTERRUPTED);
    auto lines = read_lines(log);
    ASSERT_FALSE(lines.empty());
    EXPECT_NE(lines.back().find("\"type\":\"summary\""), std::string::npos) << lines.back();
    EXPECT_NE(lines.back().find("\"status\":\"interrupted\""), std::string::npos) << lines.back();
    EXPECT_EQ(json_number(lines.back(), "exit_code"), 5.0);
    // Every step that ran has its record, numbered without gaps.
    auto steps = jsonl_of_type(log, "step");
    ASSERT_FALSE(steps.empty());
    for (size_t i = 0; i < steps.size(); ++i) EXPECT_EQ(json_number(steps[i], "step"), (double)(i + 1));
    EXPECT_EQ(json_number(lines.back(), "steps"), (double)steps.size());
}

}  // namespace
