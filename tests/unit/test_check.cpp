// `cutrain check` end to end: real runs on small synthetic data (the same
// seed gives identical records; one changed hyperparameter is reported at
// its first step and field), hand-written logs for each comparison rule,
// the --tol syntax, and malformed inputs named by file and line.
#include <gtest/gtest.h>

#include <sys/stat.h>

#include <algorithm>
#include <string>
#include <vector>

#include "src/log/compare.h"
#include "support/fixtures.h"

using namespace ct_test;

namespace {

const char *kModel = "input 64\ndense 16 relu\ndense 10 softmax\noptimizer adam lr=0.01\nbatch_size 32\n";

bool has(const std::string &out, const std::string &needle) { return out.find(needle) != std::string::npos; }

// ---- real runs -------------------------------------------------------------

class CheckRuns : public ::testing::Test {
  protected:
    void SetUp() override {
        write_synthetic_mnist(dir.path(), 200, 50);
        write_text(dir.file("model.txt"), kModel);
    }
    // One thread: the BLAS partition, and so every bit, is fixed. 200
    // samples at batch 32 make 7 steps an epoch.
    std::string train(const std::string &log, const std::string &extra = "", int steps = 6) {
        RunResult r = run_cutrain("train --quiet --device cpu --threads 1 --seed 3 --max-steps " +
                                  std::to_string(steps) + " --model " +
                                  dir.file("model.txt") + " --data " + dir.path() + " --log-jsonl " + log + " " +
                                  extra);
        EXPECT_EQ(r.exit_code, 0) << r.out;
        return log;
    }
    TempDir dir;
};

TEST_F(CheckRuns, SameSeedGivesIdenticalRecordsAndCheckPasses) {
    const std::string a = train(dir.file("a.jsonl")), b = train(dir.file("b.jsonl"));
    ASSERT_EQ(jsonl_of_type(a, "step").size(), 6u);
    EXPECT_EQ(jsonl_of_type(a, "step"), jsonl_of_type(b, "step"));
    RunResult r = run_cutrain("check " + b + " --golden " + a);
    EXPECT_EQ(r.exit_code, 0) << r.out;
    EXPECT_EQ(r.out, "6 step records, 1 epoch record and 0 diagnosis records match\n");
    // The flags may come in either order around RUN.
    r = run_cutrain("check --golden " + a + " " + b);
    EXPECT_EQ(r.exit_code, 0) << r.out;
}

TEST_F(CheckRuns, ADifferentLearningRateIsReportedAtItsFirstStepAndField) {
    const std::string a = train(dir.file("a.jsonl")), b = train(dir.file("b.jsonl"), "--lr 0.011");
    RunResult r = run_cutrain("check " + b + " --golden " + a);
    EXPECT_EQ(r.exit_code, CT_EXIT_MISMATCH) << r.out;
    // Step 1's loss and gradients come from the same initial weights; the
    // update is the first thing the learning rate touches.
    EXPECT_TRUE(has(r.out, b + " line 1 (step 1): update_ratio = ")) << r.out;
    EXPECT_TRUE(has(r.out, "but " + a + " line 1 has ")) << r.out;
    EXPECT_TRUE(has(r.out, "> tolerance 0 = atol 0 + rtol 0 x |golden|")) << r.out;
    EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 1) << "one line: " << r.out;

    // Tolerating update_ratio moves the first difference to step 2's loss.
    r = run_cutrain("check " + b + " --golden " + a + " --tol update_ratio=1:0");
    EXPECT_EQ(r.exit_code, CT_EXIT_MISMATCH) << r.out;
    EXPECT_TRUE(has(r.out, b + " line 2 (step 2): loss = ")) << r.out;
}

TEST_F(CheckRuns, AShorterRunIsMissingItsNextStep) {
    const std::string a = train(dir.file("a.jsonl")), c = train(dir.file("c.jsonl"), "", 4);
    // c's records equal a's as far as they go (same seed; the schedule is
    // constant), so what is reported is the first step c lacks.
    RunResult r = run_cutrain("check " + c + " --golden " + a);
    EXPECT_EQ(r.exit_code, CT_EXIT_MISMATCH) << r.out;
    EXPECT_TRUE(has(r.out, c + ": missing step 5 (its step records end at step 4, line 4); " + a + " line 5 has it"))
        << r.out;
    r = run_cutrain("check " + a + " --golden " + c);
    EXPECT_EQ(r.exit_code, CT_EXIT_MISMATCH) << r.out;
    EXPECT_TRUE(has(r.out, a + " line 5: extra step 5 (" + c + ": its step records end at step 4, line 4)")) << r.out;
}

TEST_F(CheckRuns, ACutOffLogIsBadInput) {
    const std::string a = train(dir.file("a.jsonl"));
    std::string text;
    for (const std::string &l : read_lines(a)) text += l + "\n";
    write_text(dir.file("cut.jsonl"), text.substr(0, text.size() - 20));
    const size_t lines = read_lines(a).size();
    RunResult r = run_cutrain("check " + dir.file("cut.jsonl") + " --golden " + a);
    EXPECT_EQ(r.exit_code, CT_EXIT_BAD_INPUT) << r.out;
    EXPECT_TRUE(has(r.out, "cutrain: error: " + dir.file("cut.jsonl") + ": line " + std::to_string(lines) +
                               ": truncated"))
        << r.out;
}

// ---- the comparison rules, on hand-written logs ------------------------------

class CheckRules : public ::testing::Test {
  protected:
    std::string log(const std::string &name, const std::vector<std::string> &lines) {
        std::string text;
        for (const std::string &l : lines) text += l + "\n";
        write_text(dir.file(name), text);
        return dir.file(name);
    }
    RunResult check(const std::string &run, const std::string &golden, const std::string &flags = "") {
        return run_cutrain("check " + run + " --golden " + golden + " " + flags);
    }
    TempDir dir;
};

std::string step(int n, const std::string &loss, const std::string &extra = "") {
    return R"({"type":"step","epoch":1,"step":)" + std::to_string(n) + R"(,"loss":)" + loss +
           R"(,"acc":0.5,"layer_grad_norms":{"dense1":1.5,"dense2":0.25},"flags":[])" + extra + "}";
}

const std::string kEpoch =
    R"({"type":"epoch","epoch":1,"steps":2,"samples":64,"train_loss":1,"test_acc":0.5,"seconds":0.25,)"
    R"("eval_seconds":0.5,"samples_per_s":256})";
const std::string kDiag =
    R"({"type":"diagnosis","code":"DEAD_RELU","severity":"warning","step":2,"epoch":1,"layer":"dense1","message":"a")";

TEST_F(CheckRules, TimingFieldsMessagesAndSummariesAreNotCompared) {
    const std::string g = log("g.jsonl", {step(1, "2.5"), step(2, "2"), kDiag + "}", kEpoch,
                                          R"({"type":"summary","status":"completed","device":"cpu","seconds":1})"});
    std::string epoch = kEpoch;
    epoch.replace(epoch.find("\"seconds\":0.25"), 14, "\"seconds\":9.75");
    epoch.replace(epoch.find("\"eval_seconds\":0.5"), 18, "\"eval_seconds\":7.5");
    epoch.replace(epoch.find("\"samples_per_s\":256"), 19, "\"samples_per_s\":1");
    std::string diag = kDiag;
    diag.replace(diag.find("\"message\":\"a\""), 13, "\"message\":\"reworded\"");
    const std::string r = log("r.jsonl", {step(1, "2.5"), step(2, "2"), diag + "}", epoch,
                                          R"({"type":"summary","status":"stopped","device":"cuda","seconds":9})"});
    RunResult res = check(r, g);
    EXPECT_EQ(res.exit_code, 0) << res.out;
    EXPECT_EQ(res.out, "2 step records, 1 epoch record and 1 diagnosis record match\n");
}

TEST_F(CheckRules, NullMatchesOnlyNull) {
    const std::string g = log("g.jsonl", {step(1, "null")});
    EXPECT_EQ(check(log("same.jsonl", {step(1, "null")}), g).exit_code, 0);
    RunResult res = check(log("num.jsonl", {step(1, "2.5")}), g, "--atol 1e300");
    EXPECT_EQ(res.exit_code, CT_EXIT_MISMATCH) << res.out;
    EXPECT_TRUE(has(res.out, "(step 1): loss = 2.5, but " + g + " line 1 has null")) << res.out;
    res = check(g, log("num2.jsonl", {step(1, "2.5")}), "--atol 1e300");
    EXPECT_EQ(res.exit_code, CT_EXIT_MISMATCH) << res.out;
    EXPECT_TRUE(has(res.out, "loss = null, but")) << res.out;
}

TEST_F(CheckRules, TolerancesAreAbsolutePlusRelativeToTheGolden) {
    const std::string g = log("g.jsonl", {step(1, "1")}), r = log("r.jsonl", {step(1, "1.5")});
    EXPECT_EQ(check(r, g).exit_code, CT_EXIT_MISMATCH);
    EXPECT_EQ(check(r, g, "--atol 0.5").exit_code, 0);
    EXPECT_EQ(check(r, g, "--rtol 0.5").exit_code, 0);  // 0.5 x |1|
    EXPECT_EQ(check(r, g, "--rtol 0.25 --atol 0.25").exit_code, 0);
    RunResult res = check(r, g, "--rtol 0.25 --atol 0.125");
    EXPECT_EQ(res.exit_code, CT_EXIT_MISMATCH);
    EXPECT_TRUE(has(res.out, "loss = 1.5, but " + g + " line 1 has 1 (|difference| 0.5 > tolerance 0.375 = atol 0.125 "
                             "+ rtol 0.25 x |golden|)"))
        << res.out;
    // Relative to the golden, not the run: 1 vs golden 1.5 passes rtol 1/3.
    EXPECT_EQ(check(g, r, "--rtol 0.34").exit_code, 0);
    // A per-field override, and the default still holds elsewhere.
    EXPECT_EQ(check(r, g, "--tol loss=0:0.5").exit_code, 0);
    const std::string r2 = log("r2.jsonl", {step(1, "1.5", R"(,"extra_acc":1)")});
    const std::string g2 = log("g2.jsonl", {step(1, "1", R"(,"extra_acc":2)")});
    res = check(r2, g2, "--tol loss=0:0.5");
    EXPECT_TRUE(has(res.out, "extra_acc = 1, but")) << res.out;
}

TEST_F(CheckRules, LayerNormOverridesApplyToTheObjectOrOneMember) {
    const std::string g = log("g.jsonl", {step(1, "1")});
    std::string s = step(1, "1");
    s.replace(s.find("\"dense1\":1.5"), 12, "\"dense1\":1.75");
    s.replace(s.find("\"dense2\":0.25"), 13, "\"dense2\":0.5");
    const std::string r = log("r.jsonl", {s});
    RunResult res = check(r, g);
    EXPECT_TRUE(has(res.out, "(step 1): layer_grad_norms.dense1 = 1.75, but")) << res.out;
    EXPECT_EQ(check(r, g, "--tol layer_grad_norms=0:0.25").exit_code, 0);
    res = check(r, g, "--tol layer_grad_norms.dense1=0:0.25");
    EXPECT_EQ(res.exit_code, CT_EXIT_MISMATCH);
    EXPECT_TRUE(has(res.out, "layer_grad_norms.dense2 = 0.5, but")) << res.out;
    // The member's own override wins over the object's.
    EXPECT_EQ(check(r, g, "--tol layer_grad_norms=0:0.25,layer_grad_norms.dense1=0:0").exit_code, CT_EXIT_MISMATCH);
}

TEST_F(CheckRules, FlagsFieldsAndIdentityAreExact) {
    const std::string g = log("g.jsonl", {step(1, "1"), step(2, "1")});
    std::string flagged = step(2, "1");
    flagged.replace(flagged.find("\"flags\":[]"), 10, R"("flags":["CLIPPED"])");
    RunResult res = check(log("f.jsonl", {step(1, "1"), flagged}), g, "--atol 1e300");
    EXPECT_EQ(res.exit_code, CT_EXIT_MISMATCH);
    EXPECT_TRUE(has(res.out, "line 2 (step 2): flags = [\"CLIPPED\"], but " + g + " line 2 has []")) << res.out;

    // A record one log lacks in the middle is named as missing (or extra),
    // not reported as the next record's step number differing.
    res = check(log("s.jsonl", {step(1, "1"), step(3, "1")}), g, "--atol 1e300");
    EXPECT_EQ(res.exit_code, CT_EXIT_MISMATCH);
    EXPECT_TRUE(has(res.out, "s.jsonl line 2: missing step 2 (the run has step 3 next); " + g + " line 2 has it"))
        << res.out;
    res = check(log("e.jsonl", {step(1, "1"), step(2, "1")}), log("h.jsonl", {step(2, "1")}), "--atol 1e300");
    EXPECT_EQ(res.exit_code, CT_EXIT_MISMATCH);
    EXPECT_TRUE(has(res.out, "e.jsonl line 1: extra step 1 (")) << res.out;
    EXPECT_TRUE(has(res.out, "h.jsonl line 1 has step 2 next)")) << res.out;

    res = check(log("x.jsonl", {step(1, "1"), step(2, "1", R"(,"new_field":3)")}), g);
    EXPECT_TRUE(has(res.out, "line 2 (step 2): field 'new_field' = 3 is not in " + g + " line 2")) << res.out;
    res = check(g, log("y.jsonl", {step(1, "1"), step(2, "1", R"(,"old_field":3)")}));
    EXPECT_TRUE(has(res.out, "line 2 (step 2): no field 'old_field', but")) << res.out;
}

TEST_F(CheckRules, DiagnosesAreComparedAndTheEarliestDifferenceIsReported) {
    const std::string g = log("g.jsonl", {step(1, "1"), step(2, "1"), kDiag + "}", step(3, "1"), kEpoch});
    // No diagnosis in the run: reported at the golden line that has it.
    RunResult res = check(log("a.jsonl", {step(1, "1"), step(2, "1"), step(3, "1"), kEpoch}), g);
    EXPECT_EQ(res.exit_code, CT_EXIT_MISMATCH);
    EXPECT_TRUE(has(res.out, "a.jsonl: missing diagnosis DEAD_RELU at step 2 (it has no diagnosis records); " + g +
                                 " line 3 has it"))
        << res.out;
    // Another code at the same step.
    std::string other = kDiag;
    other.replace(other.find("DEAD_RELU"), 9, "VANISHING");
    res = check(log("b.jsonl", {step(1, "1"), step(2, "1"), other + "}", step(3, "1"), kEpoch}), g);
    EXPECT_TRUE(has(res.out, "line 3 (diagnosis DEAD_RELU at step 2): code = \"VANISHING\", but")) << res.out;
    // A later step differs too, and a diagnosis a line later (as a GPU
    // drains its records later): the diagnosis is still the first difference.
    res = check(log("c.jsonl", {step(1, "1"), step(2, "1"), step(3, "7"), other + "}", kEpoch}), g);
    EXPECT_TRUE(has(res.out, "c.jsonl line 4 (diagnosis DEAD_RELU at step 2): code")) << res.out;
    // Order of records of different kinds does not matter by itself.
    res = check(log("d.jsonl", {step(1, "1"), step(2, "1"), step(3, "1"), kDiag + "}", kEpoch}), g);
    EXPECT_EQ(res.exit_code, 0) << res.out;

    // A diagnosis only the run has sits after the step it names.
    const std::string quiet = log("quiet.jsonl", {step(1, "1"), step(2, "1"), step(3, "1"), kEpoch});
    res = check(log("e.jsonl", {step(1, "1"), step(2, "1"), kDiag + "}", step(3, "7"), kEpoch}), quiet);
    EXPECT_TRUE(has(res.out, "e.jsonl line 3: extra diagnosis DEAD_RELU at step 2 (" + quiet +
                                 ": it has no diagnosis records)"))
        << res.out;
    res = check(log("f.jsonl", {step(1, "7"), step(2, "1"), kDiag + "}", step(3, "1"), kEpoch}), quiet);
    EXPECT_TRUE(has(res.out, "f.jsonl line 1 (step 1): loss = 7")) << res.out;
}

// ---- the command line ----------------------------------------------------------

TEST_F(CheckRules, TolSyntaxAndOtherFlagErrors) {
    const std::string g = log("g.jsonl", {step(1, "1"), kEpoch});
    const std::pair<std::string, std::string> cases[] = {
        {"--tol loss", "--tol: expected FIELD=RTOL:ATOL[,FIELD=RTOL:ATOL...], got 'loss'"},
        {"--tol loss=1e-6", "--tol: expected FIELD=RTOL:ATOL[,FIELD=RTOL:ATOL...], got 'loss=1e-6'"},
        {"--tol loss=-1:0", "with non-negative numbers, got 'loss=-1:0'"},
        {"--tol loss=a:b", "with non-negative numbers, got 'loss=a:b'"},
        {"--tol loss=1:nan", "with non-negative numbers, got 'loss=1:nan'"},
        {"--tol =1:1", "with a field name, got '=1:1'"},
        {"--tol lo+s=1:1", "field names are letters"},
        {"--tol loss=1:1,", "got ''"},
        {"--tol loss=1:1,loss=2:2", "--tol: 'loss' given more than once"},
        {"--tol step=1:1", "--tol: 'step' is always compared exactly"},
        {"--tol seconds=1:0", "--tol: 'seconds' is a timing field, which is never compared"},
        {"--tol samples_per_s=1:0", "--tol: 'samples_per_s' is a timing field"},
        {"--tol flags=1:1", "--tol: 'flags' is not a number: it is compared exactly"},
        {"--tol los=1:1", "--tol: no field 'los' in the step, epoch or diagnosis records of " + g},
        {"--tol layer_grad_norms.dense9=1:1", "no field 'layer_grad_norms.dense9'"},
        {"--rtol -1", "--rtol: expected a number from 0"},
        {"--atol x", "--atol: expected a number from 0"},
        {"--frob", "unknown flag '--frob'"},
    };
    for (const auto &c : cases) {
        SCOPED_TRACE(c.first);
        RunResult r = check(g, g, c.first);
        EXPECT_EQ(r.exit_code, CT_EXIT_USAGE) << r.out;
        EXPECT_EQ(r.out.rfind("cutrain: error: ", 0), 0u) << r.out;
        EXPECT_TRUE(has(r.out, c.second)) << r.out;
    }
    // Known fields are accepted, nested ones included.
    EXPECT_EQ(check(g, g, "--tol loss=1e-6:0,test_acc=0:1e-4,layer_grad_norms.dense2=0:1").exit_code, 0);
    RunResult r = run_cutrain("check " + g);
    EXPECT_EQ(r.exit_code, CT_EXIT_USAGE);
    EXPECT_TRUE(has(r.out, "cutrain: error: --golden: required")) << r.out;
    r = run_cutrain("check --golden " + g);
    EXPECT_EQ(r.exit_code, CT_EXIT_USAGE);
    EXPECT_TRUE(has(r.out, "cutrain: error: RUN.jsonl: required")) << r.out;
    r = run_cutrain("check " + g + " " + g + " --golden " + g);
    EXPECT_EQ(r.exit_code, CT_EXIT_USAGE);
    EXPECT_TRUE(has(r.out, "unexpected argument")) << r.out;
    r = run_cutrain("check --help");
    EXPECT_EQ(r.exit_code, 0);
    EXPECT_TRUE(has(r.out, "FIELD=RTOL:ATOL")) << r.out;
    EXPECT_TRUE(has(r.out, "exits 6")) << r.out;
}

TEST(CheckTolerance, ParseAndLookUp) {
    ct_compare_options o{};
    o.dflt = {1e-3, 1e-9};
    ct_error err;
    ct_error_clear(&err);
    ASSERT_EQ(ct_tol_parse("loss=1e-6:0,layer_grad_norms=0:0.5,layer_grad_norms.conv1=2:3", "--tol", &o, &err), 0)
        << err.msg;
    ASSERT_EQ(o.n_over, 3);
    ct_tolerance t = ct_tol_for(&o, "loss");
    EXPECT_EQ(t.rtol, 1e-6);
    EXPECT_EQ(t.atol, 0.0);
    t = ct_tol_for(&o, "layer_grad_norms.dense1");
    EXPECT_EQ(t.rtol, 0.0);
    EXPECT_EQ(t.atol, 0.5);
    t = ct_tol_for(&o, "layer_grad_norms.conv1");
    EXPECT_EQ(t.rtol, 2.0);
    EXPECT_EQ(t.atol, 3.0);
    t = ct_tol_for(&o, "grad_norm");
    EXPECT_EQ(t.rtol, 1e-3);
    EXPECT_EQ(t.atol, 1e-9);
    t = ct_tol_for(&o, "loss_extra");  // a prefix is not the field
    EXPECT_EQ(t.rtol, 1e-3);
    ASSERT_EQ(ct_tol_parse("acc=0:0.03125", "--tol", &o, &err), 0) << "appends";
    EXPECT_EQ(ct_tol_for(&o, "acc").atol, 0.03125);
    EXPECT_EQ(ct_tol_parse("epoch=0:1", "--tol", &o, &err), -1);
    EXPECT_EQ(err.code, CT_EXIT_USAGE);
}

TEST_F(CheckRules, MalformedFilesAreBadInputNamingFileAndLine) {
    const std::string g = log("g.jsonl", {step(1, "1"), kEpoch});
    write_text(dir.file("notjson.jsonl"), "epoch,steps,samples\n1,2,64\n");
    write_text(dir.file("array.jsonl"), step(1, "1") + "\n[1,2]\n");
    write_text(dir.file("trunc.jsonl"), step(1, "1") + "\n" + step(2, "1"));
    write_text(dir.file("onlysummary.jsonl"), "{\"type\":\"summary\",\"status\":\"evaluated\"}\n");
    write_text(dir.file("empty.jsonl"), "");
    write_text(dir.file("badnum.jsonl"), step(1, "1") + "\n" + step(2, "NaN") + "\n");
    const std::pair<std::string, std::string> cases[] = {
        {"notjson.jsonl", "notjson.jsonl: line 1, column 1: expected a value (expected one JSON object per line)"},
        {"array.jsonl", "array.jsonl: line 2: expected a JSON object (one record per line), got an array"},
        {"trunc.jsonl", "trunc.jsonl: line 2: truncated (the last line does not end with a newline"},
        {"onlysummary.jsonl", "onlysummary.jsonl: no step, epoch or diagnosis records to compare"},
        {"empty.jsonl", "empty.jsonl: no step, epoch or diagnosis records to compare"},
        {"badnum.jsonl", "badnum.jsonl: line 2, column 42: expected a value"},
        {"missing.jsonl", "missing.jsonl: cannot open: No such file or directory"},
        // A FIFO with no writer: refused at once, not waited on.
        {"fifo.jsonl", "fifo.jsonl: not a regular file (expected a JSONL log)"},
    };
    ASSERT_EQ(mkfifo(dir.file("fifo.jsonl").c_str(), 0644), 0);
    for (const auto &c : cases) {
        SCOPED_TRACE(c.first);
        RunResult r = check(g, dir.file(c.first));
        EXPECT_EQ(r.exit_code, CT_EXIT_BAD_INPUT) << r.out;
        EXPECT_TRUE(has(r.out, "cutrain: error: " + dir.path() + "/" + c.second)) << r.out;
        EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 1) << "one line: " << r.out;
    }
    // The run is read as strictly, and named.
    RunResult r = check(dir.file("trunc.jsonl"), g);
    EXPECT_EQ(r.exit_code, CT_EXIT_BAD_INPUT) << r.out;
    EXPECT_TRUE(has(r.out, "trunc.jsonl: line 2: truncated")) << r.out;
    // An empty run is a difference (a run that logged nothing), not bad input.
    r = check(dir.file("empty.jsonl"), g);
    EXPECT_EQ(r.exit_code, CT_EXIT_MISMATCH) << r.out;
    EXPECT_TRUE(has(r.out, "empty.jsonl: missing step 1 (it has no step records)")) << r.out;
}

}  // namespace
