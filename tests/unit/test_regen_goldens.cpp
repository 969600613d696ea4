// tools/regen-goldens --gpu-from: what it takes as a GPU golden (a completed
// run of the preset on a CUDA device, as many steps as the CPU golden) and
// what it refuses, leaving the golden folder as it was. Run on a scratch
// copy of a golden folder (--golden-dir), with traces written here.
#include <gtest/gtest.h>

#include <stdlib.h>

#include <string>

#include "support/fixtures.h"

using namespace ct_test;

namespace {

const std::string kScript = CT_SOURCE_DIR "/tools/regen-goldens";

RunResult run_script(const std::string &args) { return run_command(kScript + " " + args); }

// A trace of `steps` step records, an epoch record and a summary.
std::string trace(int steps, const std::string &device, const std::string &model = "seed",
                  const std::string &status = "completed") {
    std::string s;
    for (int i = 1; i <= steps; ++i)
        s += "{\"type\":\"step\",\"epoch\":1,\"step\":" + std::to_string(i) + ",\"loss\":2.3,\"flags\":[]}\n";
    s += "{\"type\":\"epoch\",\"epoch\":1,\"steps\":" + std::to_string(steps) + "}\n";
    s += "{\"type\":\"summary\",\"status\":\"" + status + "\",\"exit_code\":0,\"steps\":" + std::to_string(steps) +
         ",\"model\":\"" + model + "\",\"device\":\"" + device + "\",\"seed\":0}\n";
    return s;
}

class RegenGpuGoldens : public ::testing::Test {
  protected:
    void SetUp() override {
        golden = dir.file("golden");
        from = dir.file("golden-gpu");
        ASSERT_EQ(system(("mkdir -p " + golden + " " + from).c_str()), 0);
        write_text(golden + "/check.args", "--rtol 1e-5\n");
        write_text(golden + "/seed.args", "--model seed --device cpu --threads 1 --seed 0 --max-steps 3\n");
        write_text(golden + "/seed.jsonl", trace(3, "cpu (OpenBLAS, 1 threads)"));
    }
    // No build: nothing to compare with, so only the checks run.
    RunResult install(const std::string &extra = "") {
        return run_script("--gpu-from " + from + " --golden-dir " + golden + " --build " + dir.file("no-build") + " " +
                          extra + " seed");
    }
    std::string installed() const { return golden + "/gpu/seed.jsonl"; }
    TempDir dir;
    std::string golden, from;
};

TEST_F(RegenGpuGoldens, InstallsACompletedGpuRunOfThePreset) {
    const std::string t = trace(3, "cuda (NVIDIA H100 80GB HBM3, sm_90, 132 SMs)");
    write_text(from + "/seed.jsonl", t);
    RunResult r = install("--dry-run");
    ASSERT_EQ(r.exit_code, 0) << r.out;
    EXPECT_FALSE(file_exists(installed())) << "--dry-run wrote " << installed();
    r = install();
    ASSERT_EQ(r.exit_code, 0) << r.out;
    EXPECT_NE(r.out.find("new GPU golden"), std::string::npos) << r.out;
    EXPECT_EQ(read_lines(installed()), read_lines(from + "/seed.jsonl"));
}

TEST_F(RegenGpuGoldens, RefusesWhatIsNotOneAndLeavesTheGoldenAsItWas) {
    const std::string gpu = "cuda (NVIDIA H100 80GB HBM3, sm_90, 132 SMs)";
    write_text(from + "/seed.jsonl", trace(3, gpu));
    ASSERT_EQ(install().exit_code, 0);
    const auto before = read_lines(installed());
    struct Case {
        std::string trace, needle;
    } cases[] = {
        {trace(3, "cpu (OpenBLAS, 2 threads)"), "not a GPU run"},
        {trace(4, gpu), "4 step records, the CPU golden has 3"},
        {trace(3, gpu, "mlp"), "not a run of the preset seed"},
        {trace(2, gpu, "seed", "stopped"), "not a completed run"},
    };
    for (const Case &c : cases) {
        write_text(from + "/seed.jsonl", c.trace);
        RunResult r = install();
        EXPECT_EQ(r.exit_code, 2) << r.out;
        EXPECT_NE(r.out.find(c.needle), std::string::npos) << r.out;
        EXPECT_EQ(read_lines(installed()), before) << c.needle;
    }
    ASSERT_EQ(system(("rm " + from + "/seed.jsonl").c_str()), 0);
    RunResult r = install();
    EXPECT_EQ(r.exit_code, 2) << r.out;
    EXPECT_NE(r.out.find("not found"), std::string::npos) << r.out;
}

}  // namespace
