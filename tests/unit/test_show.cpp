// cutrain show: what it tells of real logs (a completed run, a health stop, a
// killed run, a resumed one) and how it treats logs it cannot trust.
#include <gtest/gtest.h>

#include <string>

#include "support/fixtures.h"

using namespace ct_test;

namespace {

class Show : public ::testing::Test {
  protected:
    void SetUp() override {
        write_synthetic_mnist(dir.path(), 96, 32);
        write_text(model(), "input 64\ndense 16 relu\ndense 10 softmax\noptimizer adam lr=0.01\nbatch_size 32\n");
    }
    std::string model() const { return dir.file("model.txt"); }
    std::string train(const std::string &log, const std::string &extra) {
        const RunResult r = run_cutrain("train --quiet --device cpu --seed 1 --data " + dir.path() + " --model " +
                                        model() + " --log-jsonl " + log + " " + extra);
        last_train_exit = r.exit_code;
        return r.out;
    }
    static size_t count(const std::string &s, const std::string &what) {
        size_t n = 0;
        for (size_t at = s.find(what); at != std::string::npos; at = s.find(what, at + 1)) ++n;
        return n;
    }
    TempDir dir;
    int last_train_exit = -1;
};

TEST_F(Show, ACompletedRunShowsItsEndEpochsAndLoss) {
    const std::string log = dir.file("run.jsonl");
    train(log, "--epochs 2");
    ASSERT_EQ(last_train_exit, 0);
    const RunResult r = run_cutrain("show " + log);
    ASSERT_EQ(r.exit_code, 0) << r.out;
    EXPECT_NE(r.out.find("ended: completed, exit status 0, after 6 steps in 2 epochs"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("test accuracy"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("\nepoch    steps"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("\n    1 "), std::string::npos) << r.out;  // one row per epoch
    EXPECT_NE(r.out.find("\n    2 "), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("diagnoses: none"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("steps: 6 records, steps 1 to 6\n"), std::string::npos) << r.out;
    // The first loss is the first step record's, printed to 4 digits.
    const std::string step1 = jsonl_of_type(log, "step").at(0);
    char want[64];
    snprintf(want, sizeof want, "loss: first %.4g (step 1)", json_number(step1, "loss"));
    EXPECT_NE(r.out.find(want), std::string::npos) << r.out;
    EXPECT_EQ(count(r.out, "\u2581") + count(r.out, "\u2588") + count(r.out, "\u2584") + count(r.out, "\u2585") +
                  count(r.out, "\u2582") + count(r.out, "\u2583") + count(r.out, "\u2586") + count(r.out, "\u2587"),
              6u)
        << "one block per step when there are fewer steps than columns\n"
        << r.out;
}

TEST_F(Show, AHealthStopShowsTheDiagnosisAndTheFlags) {
    const std::string log = dir.file("nan.jsonl");
    train(log, "--epochs 2 --inject-nan 2 --inject-kind inf");
    ASSERT_EQ(last_train_exit, 4);
    const RunResult r = run_cutrain("show " + log);
    ASSERT_EQ(r.exit_code, 0) << r.out;
    EXPECT_NE(r.out.find("stopped by a health policy"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("exit status 4"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("step 2  NONFINITE_GRAD (error, layer dense2)"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("NONFINITE_GRAD       1 step (step 2)"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("no test evaluation"), std::string::npos) << r.out;
}

TEST_F(Show, AKilledRunHasNoSummaryAndACutLastLineIsLeftOut) {
    const std::string log = dir.file("run.jsonl"), cut = dir.file("cut.jsonl");
    train(log, "--epochs 2");
    ASSERT_EQ(last_train_exit, 0);
    // Keep the first four records and half of the fifth: a kill mid-write.
    const std::vector<std::string> lines = read_lines(log);
    ASSERT_GE(lines.size(), 5u);
    std::string text;
    for (int i = 0; i < 4; ++i) text += lines[(size_t)i] + "\n";
    text += lines[4].substr(0, lines[4].size() / 2);
    write_text(cut, text);
    const RunResult r = run_cutrain("show " + cut);
    ASSERT_EQ(r.exit_code, 0) << r.out;
    EXPECT_NE(r.out.find("no summary record: the run did not finish"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("the last line (" + std::to_string(lines[4].size() / 2) + " bytes) is cut short"),
              std::string::npos)
        << r.out;
    // cutrain check, which compares, still refuses such a log.
    const RunResult c = run_cutrain("check " + cut + " --golden " + log);
    EXPECT_EQ(c.exit_code, 3) << c.out;
}

TEST_F(Show, AResumedRunSaysWhereItsStepsStart) {
    const std::string first = dir.file("a.jsonl"), second = dir.file("b.jsonl"), ck = dir.file("ck.safetensors");
    train(first, "--epochs 2 --max-steps 4 --save " + ck);
    ASSERT_EQ(last_train_exit, 0);
    train(second, "--epochs 2 --resume " + ck);
    ASSERT_EQ(last_train_exit, 0);
    const RunResult r = run_cutrain("show " + second);
    ASSERT_EQ(r.exit_code, 0) << r.out;
    EXPECT_NE(r.out.find("steps 5 to 6 (a resumed run logs from its checkpoint's next step)"), std::string::npos)
        << r.out;
}

// A null loss (NaN/Inf in the run) is counted and marked '!', a gap in the
// step numbering is named, and positions are then given as records.
TEST_F(Show, NullLossesAndGapsInTheStepsAreSaid) {
    const std::string log = dir.file("gaps.jsonl");
    std::string text;
    const char *losses[] = {"2.5", "null", "1.5", "0.5"};
    const int steps[] = {1, 2, 3, 7};
    for (int i = 0; i < 4; ++i)
        text += "{\"type\":\"step\",\"epoch\":1,\"step\":" + std::to_string(steps[i]) + ",\"loss\":" + losses[i] +
                ",\"flags\":[" + (i == 1 ? "\"NONFINITE_LOSS\"" : "") + "]}\n";
    write_text(log, text);
    const RunResult r = run_cutrain("show " + log);
    ASSERT_EQ(r.exit_code, 0) << r.out;
    EXPECT_NE(r.out.find("steps: 4 records, steps 1 to 7; 1 gap in the numbering, the first after step 3 (next: 7)"),
              std::string::npos)
        << r.out;
    EXPECT_NE(r.out.find("loss: first 2.5 (record 1), lowest 0.5 (record 4), last 0.5; 1 step with a NaN/Inf loss"),
              std::string::npos)
        << r.out;
    // 2.5 the highest, null '!', 1.5 half way (level 3.5 of 0-7 rounds to 4), 0.5 the lowest.
    EXPECT_NE(r.out.find("  \u2588!\u2585\u2581\n"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("NONFINITE_LOSS       1 step (step 2)"), std::string::npos) << r.out;
}

TEST_F(Show, ControlCharactersFromTheLogNeverReachTheTerminal) {
    const std::string log = dir.file("evil.jsonl");
    write_text(log,
               "{\"type\":\"diagnosis\",\"code\":\"X\\u001b[2J\",\"severity\":\"warning\",\"step\":3,\"epoch\":1,"
               "\"layer\":\"d\\u0007\",\"message\":\"clear\\u001b]0;title\\u0007 \\u009b and \\u00e9\"}\n"
               "{\"type\":\"summary\",\"status\":\"completed\",\"exit_code\":0,\"test_acc\":0.5,\"test_loss\":1,"
               "\"steps\":3,\"epochs\":1,\"seconds\":1,\"model\":\"m\\u001b\",\"device\":\"cpu\",\"seed\":1,"
               "\"params\":10}\n");
    const RunResult r = run_cutrain("show " + log);
    ASSERT_EQ(r.exit_code, 0) << r.out;
    for (char c : r.out) {
        const unsigned char u = (unsigned char)c;
        EXPECT_FALSE(u < 0x20 && c != '\n') << "control byte " << (int)u << " in\n" << r.out;
    }
    EXPECT_EQ(r.out.find("\xc2\x9b"), std::string::npos) << "a C1 control (U+009B) was printed";
    EXPECT_NE(r.out.find("X?[2J"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("and \xc3\xa9"), std::string::npos) << "printable non-ASCII is kept\n" << r.out;
}

// Any number may stand where an exit status belongs; only one that can be an
// exit status is shown as one (a huge one once made an out-of-range cast).
TEST_F(Show, AnExitStatusOutOfRangeIsNotConverted) {
    const std::string log = dir.file("odd.jsonl");
    write_text(log,
               "{\"type\":\"summary\",\"status\":\"odd\",\"exit_code\":-99999999999999999999,\"test_acc\":0.5,"
               "\"test_loss\":1,\"steps\":0,\"epochs\":0,\"seconds\":1,\"model\":\"m\",\"device\":\"cpu\",\"seed\":1,"
               "\"params\":10}\n");
    const RunResult r = run_cutrain("show " + log);
    ASSERT_EQ(r.exit_code, 0) << r.out;
    EXPECT_NE(r.out.find("ended: odd, exit status -1,"), std::string::npos) << r.out;
}

TEST_F(Show, WhatIsNotALogIsABadInputNamingTheFile) {
    struct Bad {
        const char *name, *text;
    } bad[] = {{"empty.jsonl", ""},
               {"notjson.jsonl", "hello\n"},
               {"notype.jsonl", "{\"step\":1}\n"},
               {"onlycut.jsonl", "{\"type\":\"step\""},
               // A number field holding something else: refused, not shown as a missing value.
               {"stringloss.jsonl", "{\"type\":\"step\",\"epoch\":1,\"step\":1,\"loss\":\"2.3\",\"flags\":[]}\n"},
               {"arraysteps.jsonl", "{\"type\":\"summary\",\"status\":\"completed\",\"steps\":[1]}\n"}};
    for (const Bad &b : bad) {
        const std::string p = dir.file(b.name);
        write_text(p, b.text);
        const RunResult r = run_cutrain("show " + p);
        EXPECT_EQ(r.exit_code, 3) << b.name << ": " << r.out;
        EXPECT_NE(r.out.find("cutrain: error: " + p), std::string::npos) << r.out;
        EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 1) << r.out;
    }
    const RunResult r = run_cutrain("show " + dir.file("stringloss.jsonl"));
    EXPECT_NE(r.out.find("stringloss.jsonl: line 1: \"loss\" is a string; expected a number or null"), std::string::npos)
        << r.out;
    EXPECT_EQ(run_cutrain("show " + dir.file("missing.jsonl")).exit_code, 3);
    EXPECT_EQ(run_cutrain("show").exit_code, 2);
    const RunResult empty = run_cutrain("show ''");
    EXPECT_EQ(empty.exit_code, 2) << empty.out;
    EXPECT_EQ(empty.out, "cutrain: error: expected the path of a JSONL log, got an empty argument\n");
    EXPECT_EQ(run_cutrain("show a.jsonl b.jsonl").exit_code, 2);
    EXPECT_EQ(run_cutrain("show --steps 3 a.jsonl").exit_code, 2);
    EXPECT_EQ(run_cutrain("show --help").exit_code, 0);
}

}  // namespace
