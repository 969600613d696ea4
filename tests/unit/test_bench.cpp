// cutrain bench on small synthetic data: the JSON contract and time to
// accuracy. (What the figures are is measured in benchmarks/, never here.)
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "support/fixtures.h"

using namespace ct_test;

namespace {

class Bench : public ::testing::Test {
  protected:
    void SetUp() override {
        write_synthetic_mnist(dir.path(), 300, 100);
        write_text(dir.file("model.txt"), "input 64\ndense 16 relu\ndense 10 softmax\noptimizer adam lr=0.01\nbatch_size 32\n");
    }
    std::string base() const {
        return "bench --quiet --device cpu --threads 1 --model " + dir.file("model.txt") + " --data " + dir.path();
    }
    TempDir dir;
};

TEST_F(Bench, WritesTheFiguresAsJson) {
    std::string json = dir.file("b.json"), init = dir.file("init.safetensors");
    RunResult r = run_cutrain(base() + " --steps 20 --warmup 2 --repeats 3 --epochs 1 --json " + json +
                              " --save-init " + init);
    ASSERT_EQ(r.exit_code, 0) << r.out;
    auto lines = read_lines(json);
    ASSERT_EQ(lines.size(), 1u);
    for (const char *key : {"samples_per_s", "samples_per_s_min", "samples_per_s_max", "steps_per_s", "epoch_s"})
        EXPECT_GT(json_number(lines[0], key), 0.0) << key;
    EXPECT_TRUE(std::isfinite(json_number(lines[0], "stats_overhead")));
    EXPECT_EQ(json_number(lines[0], "batch_size"), 32.0);
    EXPECT_LE(json_number(lines[0], "samples_per_s_min"), json_number(lines[0], "samples_per_s"));
    EXPECT_GE(json_number(lines[0], "samples_per_s_max"), json_number(lines[0], "samples_per_s"));
    EXPECT_NE(lines[0].find("\"device\":\"cpu"), std::string::npos);
    EXPECT_NE(lines[0].find("\"loss\":\"categorical_crossentropy\""), std::string::npos) << lines[0];
    EXPECT_NE(lines[0].find("\"epoch_s_measured\":true"), std::string::npos);
    // The initial weights are the model's, readable as safetensors.
    ct_st_file f;
    ct_error err;
    ct_error_clear(&err);
    ASSERT_EQ(ct_safetensors_read(init.c_str(), &f, &err), 0) << err.msg;
    const ct_st_tensor *w = ct_safetensors_find(&f, "dense1.weight");
    ASSERT_NE(w, nullptr);
    EXPECT_EQ(w->shape[0], 16u);
    EXPECT_EQ(w->shape[1], 64u);
    ct_safetensors_free(&f);
}

TEST_F(Bench, TimeToAccuracyOverSeeds) {
    std::string json = dir.file("tta.json");
    RunResult r = run_cutrain(base() + " --time-to-accuracy 0.9 --seeds 2 --max-epochs 20 --json " + json);
    ASSERT_EQ(r.exit_code, 0) << r.out;
    auto lines = read_lines(json);
    ASSERT_EQ(lines.size(), 2u);
    for (auto &l : lines) {
        EXPECT_NE(l.find("\"reached\":true"), std::string::npos) << l;
        EXPECT_GE(json_number(l, "test_acc"), 0.9);
        EXPECT_GT(json_number(l, "train_seconds"), 0.0);
    }
    EXPECT_NE(json_number(lines[0], "seed"), json_number(lines[1], "seed"));
}

// --log-jsonl: the runs' diagnoses and one summary record (the design's
// record types only), with the steps of every run and the figures; --loss
// reaches the model, and its misfit with the softmax output is said as
// train says it, at step 0.
TEST_F(Bench, LogsDiagnosesAndOneSummaryAsJsonl) {
    std::string log = dir.file("b.jsonl");
    RunResult r = run_cutrain(base() + " --steps 20 --warmup 2 --repeats 3 --loss mse --log-jsonl " + log);
    ASSERT_EQ(r.exit_code, 0) << r.out;
    auto lines = read_lines(log);
    ASSERT_EQ(lines.size(), 2u);
    EXPECT_EQ(lines[0].rfind("{\"type\":\"diagnosis\",\"code\":\"LOSS_OUTPUT_MISMATCH\",", 0), 0u) << lines[0];
    EXPECT_NE(r.out.find("[LOSS_OUTPUT_MISMATCH]"), std::string::npos) << r.out;
    const std::string &s = lines[1];
    EXPECT_EQ(s.rfind("{\"type\":\"summary\",\"status\":\"completed\",", 0), 0u) << s;
    EXPECT_EQ(json_number(s, "steps"), 2.0 + 3 * 2 * 20);  // warm-up, then each repeat with statistics on and off
    EXPECT_NE(s.find("\"test_acc\":null"), std::string::npos) << s;
    EXPECT_NE(s.find("\"command\":\"bench\""), std::string::npos) << s;
    EXPECT_NE(s.find("\"loss\":\"mse\""), std::string::npos) << s;
    EXPECT_GT(json_number(s, "samples_per_s"), 0.0);
    EXPECT_GT(json_number(s, "train_seconds"), 0.0);

    // A learning rate that cannot move the weights: time to accuracy logs
    // each seed's diagnosis, then the summary with the seeds' median accuracy.
    r = run_cutrain(base() + " --lr 1e-10 --time-to-accuracy 0.9 --seeds 2 --max-epochs 12 --log-jsonl " + log);
    ASSERT_EQ(r.exit_code, 0) << r.out;
    lines = read_lines(log);
    ASSERT_GE(lines.size(), 3u);
    for (size_t i = 0; i + 1 < lines.size(); ++i)
        EXPECT_EQ(lines[i].rfind("{\"type\":\"diagnosis\",", 0), 0u) << lines[i];
    EXPECT_EQ(std::count_if(lines.begin(), lines.end(),
                            [](const std::string &l) { return l.find("VANISHING_UPDATES") != std::string::npos; }),
              2);
    const std::string &t = lines.back();
    EXPECT_EQ(t.rfind("{\"type\":\"summary\",\"status\":\"completed\",", 0), 0u) << t;
    EXPECT_EQ(json_number(t, "seeds_reached"), 0.0);
    EXPECT_NE(t.find("\"time_to_accuracy_s\":null"), std::string::npos) << t;
    EXPECT_GT(json_number(t, "test_acc"), 0.0);
    EXPECT_LT(json_number(t, "test_acc"), 0.5);
    EXPECT_EQ(json_number(t, "steps"), 2.0 * 12 * 10);  // ceil(300 / 32) steps an epoch
    EXPECT_EQ(json_number(t, "epochs"), 2.0 * 12);
    RunResult shown = run_cutrain("show " + log);
    EXPECT_EQ(shown.exit_code, 0) << shown.out;
    EXPECT_NE(shown.out.find("; test accuracy "), std::string::npos) << shown.out;
    EXPECT_EQ(shown.out.find("test loss"), std::string::npos) << shown.out;
}

// The steps asked for all run, however many epochs of a small data set
// they take (10 steps an epoch here: 10,500 steps are 1,050 epochs, past a
// cap of 1,000 epochs that once cut the runs short and inflated samples/s).
TEST_F(Bench, EveryStepAskedForRunsOnASmallDataSet) {
    std::string log = dir.file("b.jsonl");
    RunResult r = run_cutrain(base() + " --steps 10500 --warmup 0 --repeats 1 --log-jsonl " + log);
    ASSERT_EQ(r.exit_code, 0) << r.out;
    auto lines = read_lines(log);
    ASSERT_EQ(lines.size(), 1u);
    EXPECT_EQ(json_number(lines[0], "steps"), 2.0 * 10500);
}

// samples/s counts the rows the timed steps trained: a batch larger than
// the data (300 items) trains 300 rows a step, and an epoch's last batch
// its remainder, not --batch-size rows. The figures share their run times,
// so samples/s over steps/s is the rows a step, whatever the machine's speed
// (to the 9 digits the JSON holds).
TEST_F(Bench, SamplesPerSecondCountTheRowsTrained) {
    const struct {
        int batch, steps;
        double rows_per_step;
    } cases[] = {{500, 4, 300.0}, {128, 6, 100.0} /* 128, 128, 44, twice */, {100, 6, 100.0}};
    for (const auto &k : cases) {
        SCOPED_TRACE("--batch-size " + std::to_string(k.batch));
        std::string json = dir.file("rows" + std::to_string(k.batch) + ".json");
        RunResult r = run_cutrain(base() + " --batch-size " + std::to_string(k.batch) + " --steps " +
                                  std::to_string(k.steps) + " --warmup 0 --repeats 3 --json " + json);
        ASSERT_EQ(r.exit_code, 0) << r.out;
        auto lines = read_lines(json);
        ASSERT_EQ(lines.size(), 1u);
        const double ratio = json_number(lines[0], "samples_per_s") / json_number(lines[0], "steps_per_s");
        EXPECT_NEAR(ratio, k.rows_per_step, 1e-6 * k.rows_per_step) << lines[0];
    }
}

// --phases and --ops on a small network with every kind of layer: the
// parts of a step, then its ops in the order the trainer queues them, each
// named by the backend call and its shape, their figures adding up to the
// whole step.
TEST_F(Bench, WritesThePartsAndTheOpsOfAStep) {
    write_text(dir.file("conv.txt"), "input 1 8 8\nconv2d 4 3 relu\nmaxpool2d 2\ndropout 0.25\nflatten\n"
                                     "dense 10 softmax\nbatch_size 32\n");
    std::string json = dir.file("ops.json");
    RunResult r = run_cutrain("bench --device cpu --threads 1 --model " + dir.file("conv.txt") + " --data " +
                              dir.path() + " --steps 4 --warmup 1 --repeats 1 --phases --ops --json " + json);
    ASSERT_EQ(r.exit_code, 0) << r.out;
    std::vector<std::string> phases, ops;
    for (auto &l : read_lines(json)) {
        if (l.find("\"kind\":\"phase\"") != std::string::npos) phases.push_back(l);
        if (l.find("\"kind\":\"op\"") != std::string::npos) ops.push_back(l);
    }
    ASSERT_EQ(phases.size(), 6u);
    const char *phase_names[] = {"gather", "forward", "loss", "backward", "statistics", "update"};
    for (size_t i = 0; i < 6; ++i) EXPECT_EQ(json_string(phases[i], "phase"), phase_names[i]);

    const std::vector<std::string> want = {
        "none",
        "gather_batch 32x64",
        "conv2d_forward 32x1x8x8 * 4x1x3x3",
        "bias_act_forward relu 32x144 (no bias)",
        "maxpool_forward 32x4x6x6 /2",
        "dropout_forward 1152 rate 0.25",
        "gemm NT 32x10x36",
        "bias_act_forward linear 32x10",
        "softmax_xent 32x10",
        "bias_act_backward linear 32x10 + dbias",
        "gemm TN 10x36x32",
        "gemm NN 32x36x10",
        "dropout_backward 1152 rate 0.25",
        "maxpool_backward 32x4x6x6 /2",
        "bias_act_backward relu 32x144",
        "conv2d_backward 32x1x8x8 * 4x1x3x3 (no dx)",
        "step_finish adam 410 params",
    };
    ASSERT_EQ(ops.size(), want.size()) << r.out;
    double sum = 0.0;
    for (size_t i = 0; i < ops.size(); ++i) {
        EXPECT_EQ(json_string(ops[i], "op"), want[i]);
        EXPECT_EQ(json_number(ops[i], "index"), (double)i);
        sum += json_number(ops[i], "us_per_step");
        EXPECT_NEAR(json_number(ops[i], "cumulative_us_per_step"), sum, 1e-6 * std::fabs(sum) + 1e-9);
    }
    EXPECT_GT(json_number(ops.back(), "cumulative_us_per_step"), 0.0);
    EXPECT_NE(r.out.find("whole step"), std::string::npos);
}

// Big-endian float32 IDX images, every pixel `v`.
void write_idx_f32(const std::string &path, uint32_t n, uint32_t side, float v) {
    std::vector<uint8_t> b = {0, 0, 0x0d, 3};
    for (uint32_t d : {n, side, side})
        for (int k = 3; k >= 0; --k) b.push_back((uint8_t)(d >> (8 * k)));
    uint32_t bits;
    memcpy(&bits, &v, 4);
    for (uint32_t i = 0; i < n * side * side; ++i)
        for (int k = 3; k >= 0; --k) b.push_back((uint8_t)(bits >> (8 * k)));
    write_file(path, b);
}

// A run that a health policy stops has no figure: exit 4 (a health stop, as
// train gives), the diagnosis, and --json left as it was, not emptied.
TEST_F(Bench, AHealthStopIsExitFourAndLeavesTheJsonAsItWas) {
    // Finite pixels whose products overflow float32: the loss is NaN at step 1.
    write_idx_f32(dir.file("train-images-idx3-ubyte"), 300, 8, 3e38f);
    std::string json = dir.file("b.json");
    write_text(json, "old\n");
    RunResult r = run_cutrain(base() + " --steps 20 --warmup 0 --repeats 1 --json " + json);
    EXPECT_EQ(r.exit_code, CT_EXIT_HEALTH_STOP) << r.out;
    EXPECT_NE(r.out.find("[NONFINITE_"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("cutrain: error: bench: a health policy stopped the timed run"), std::string::npos) << r.out;
    EXPECT_EQ(read_lines(json), std::vector<std::string>{"old"});
    // The log says so too: the diagnosis, then a summary with the status.
    std::string log = dir.file("b.jsonl");
    r = run_cutrain(base() + " --steps 20 --warmup 0 --repeats 1 --log-jsonl " + log);
    EXPECT_EQ(r.exit_code, CT_EXIT_HEALTH_STOP) << r.out;
    // (Before them, what the data's check says of pixels this large.)
    auto nonfinite = [](const std::vector<std::string> &ls) {
        return std::count_if(ls.begin(), ls.end(),
                             [](const std::string &l) { return l.find("\"code\":\"NONFINITE_") != std::string::npos; });
    };
    auto lines = read_lines(log);
    ASSERT_FALSE(lines.empty());
    for (size_t i = 0; i + 1 < lines.size(); ++i)
        EXPECT_EQ(lines[i].rfind("{\"type\":\"diagnosis\",", 0), 0u) << lines[i];
    EXPECT_EQ(nonfinite(lines), 1);
    EXPECT_EQ(lines.back().rfind("{\"type\":\"summary\",\"status\":\"stopped\",\"exit_code\":4,", 0), 0u)
        << lines.back();
    // Time to accuracy, every seed stopped: no figure either, and the same exit.
    r = run_cutrain(base() + " --time-to-accuracy 0.5 --seeds 2 --max-epochs 1 --json " + json + " --log-jsonl " + log);
    EXPECT_EQ(r.exit_code, CT_EXIT_HEALTH_STOP) << r.out;
    EXPECT_NE(r.out.find("cutrain: error: bench: a health policy stopped the run of every seed"), std::string::npos)
        << r.out;
    EXPECT_EQ(read_lines(json), std::vector<std::string>{"old"});
    lines = read_lines(log);
    ASSERT_FALSE(lines.empty());
    EXPECT_EQ(nonfinite(lines), 2);  // one for each seed
    EXPECT_EQ(lines.back().rfind("{\"type\":\"summary\",\"status\":\"stopped\",\"exit_code\":4,", 0), 0u)
        << lines.back();
}

// --json is all or nothing: a write that fails (here a file-size limit, as a
// full disk fails it) leaves the old file as it was and no temporary file.
TEST_F(Bench, AJsonThatCannotBeWrittenLeavesTheOldOne) {
    std::string json = dir.file("b.json");
    write_text(json, "old\n");
    RunResult r = run_command("(ulimit -S -f 0; exec " + std::string(CT_CUTRAIN_EXE) + " " + base() +
                              " --steps 3 --warmup 0 --repeats 1 --json " + json + ")");
    EXPECT_EQ(r.exit_code, CT_EXIT_FAILURE) << r.out;
    EXPECT_EQ(r.out, "cutrain: error: " + json + ": writing the JSON output failed: File too large\n");
    EXPECT_EQ(read_lines(json), std::vector<std::string>{"old"});
    RunResult ls = run_command("ls " + dir.path() + " | grep -c tmp");
    EXPECT_EQ(ls.out, "0\n") << "a temporary file was left";
}

TEST_F(Bench, RejectsNonsense) {
    RunResult r = run_cutrain(base() + " --repeats 0");
    EXPECT_EQ(r.exit_code, CT_EXIT_USAGE) << r.out;
    EXPECT_NE(r.out.find("--repeats"), std::string::npos);
    r = run_cutrain(base() + " --time-to-accuracy 1.5");
    EXPECT_EQ(r.exit_code, CT_EXIT_USAGE) << r.out;
}

}  // namespace
