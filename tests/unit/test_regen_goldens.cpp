// tools/regen-goldens --gpu-from: what it takes as a GPU golden (a completed
// run of the preset on a CUDA device, with the preset's seed and as many
// steps as the CPU golden, repeated exactly by the repro stage's second run,
// all presets on one device) and what it refuses, leaving the golden folder
// as it was: every preset is checked before any is written. Run on a scratch
// copy of a golden folder (--golden-dir), with traces written here.
#include <gtest/gtest.h>

#include <libgen.h>
#include <stdlib.h>

#include <string>

#include "support/fixtures.h"

using namespace ct_test;

namespace {

const std::string kScript = CT_SOURCE_DIR "/tools/regen-goldens";

RunResult run_script(const std::string &args) { return run_command(kScript + " " + args); }

// The folder of the built cutrain, for --build (the second run is compared with `cutrain check`).
std::string build_dir() {
    std::string exe = CT_CUTRAIN_EXE;
    return dirname(&exe[0]);
}

const std::string kH100 = "cuda (NVIDIA H100 80GB HBM3, sm_90, 132 SMs)";

// A trace of `steps` step records, an epoch record and a summary.
std::string trace(int steps, const std::string &device, const std::string &model = "seed",
                  const std::string &status = "completed", double loss = 2.3, int seed = 0) {
    std::string s;
    for (int i = 1; i <= steps; ++i)
        s += "{\"type\":\"step\",\"epoch\":1,\"step\":" + std::to_string(i) + ",\"loss\":" + std::to_string(loss) +
             ",\"flags\":[]}\n";
    s += "{\"type\":\"epoch\",\"epoch\":1,\"steps\":" + std::to_string(steps) + "}\n";
    s += "{\"type\":\"summary\",\"status\":\"" + status + "\",\"exit_code\":0,\"steps\":" + std::to_string(steps) +
         ",\"model\":\"" + model + "\",\"device\":\"" + device + "\",\"seed\":" +
         std::to_string(seed) + "}\n";
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
    // No build and no second run (--allow-unrepeated): only the checks of the trace itself run.
    RunResult install(const std::string &extra = "") {
        return run_script("--gpu-from " + from + " --golden-dir " + golden + " --build " + dir.file("no-build") +
                          " --allow-unrepeated " + extra + " seed");
    }
    // With the build, so that PRESET.run2.jsonl is compared; `presets` as named on the command line.
    RunResult install_checked(const std::string &extra = "", const std::string &presets = "seed") {
        return run_script("--gpu-from " + from + " --golden-dir " + golden + " --build " + build_dir() + " " + extra +
                          " " + presets);
    }
    void add_mlp() {
        write_text(golden + "/mlp.args", "--model mlp --device cpu --threads 1 --seed 0 --max-steps 2\n");
        write_text(golden + "/mlp.jsonl", trace(2, "cpu (OpenBLAS, 1 threads)", "mlp"));
    }
    std::string installed(const std::string &p = "seed") const { return golden + "/gpu/" + p + ".jsonl"; }
    TempDir dir;
    std::string golden, from;
};

TEST_F(RegenGpuGoldens, InstallsACompletedGpuRunOfThePreset) {
    const std::string t = trace(3, kH100);
    write_text(from + "/seed.jsonl", t);
    write_text(from + "/seed.run2.jsonl", t);
    RunResult r = install_checked("--dry-run");
    ASSERT_EQ(r.exit_code, 0) << r.out;
    EXPECT_FALSE(file_exists(installed())) << "--dry-run wrote " << installed();
    EXPECT_FALSE(file_exists(golden + "/gpu")) << "--dry-run made " << golden << "/gpu";
    r = install_checked();
    ASSERT_EQ(r.exit_code, 0) << r.out;
    EXPECT_NE(r.out.find("3 step records, 1 epoch record"), std::string::npos) << "run2 not compared: " << r.out;
    EXPECT_NE(r.out.find("new GPU golden"), std::string::npos) << r.out;
    EXPECT_EQ(read_lines(installed()), read_lines(from + "/seed.jsonl"));
}

TEST_F(RegenGpuGoldens, RefusesARunWhoseDeterminismWasNotShown) {
    write_text(from + "/seed.jsonl", trace(3, kH100));
    RunResult r = install_checked();  // no seed.run2.jsonl
    EXPECT_EQ(r.exit_code, 2) << r.out;
    EXPECT_NE(r.out.find("determinism was not shown"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("--allow-unrepeated"), std::string::npos) << r.out;
    EXPECT_FALSE(file_exists(golden + "/gpu")) << r.out;
    write_text(from + "/seed.run2.jsonl", trace(3, kH100, "seed", "completed", 2.4));  // another loss
    r = install_checked();
    EXPECT_EQ(r.exit_code, 2) << r.out;
    EXPECT_NE(r.out.find("not shown to be deterministic"), std::string::npos) << r.out;
    EXPECT_FALSE(file_exists(golden + "/gpu")) << r.out;
    write_text(from + "/seed.run2.jsonl", trace(2, kH100, "seed", "stopped"));  // stopped part-way
    r = install_checked();
    EXPECT_EQ(r.exit_code, 2) << r.out;
    EXPECT_NE(r.out.find("seed.run2.jsonl: not a completed run"), std::string::npos) << r.out;
    EXPECT_FALSE(file_exists(golden + "/gpu")) << r.out;
    ASSERT_EQ(system(("rm " + from + "/seed.run2.jsonl").c_str()), 0);
    r = install_checked("--allow-unrepeated");
    ASSERT_EQ(r.exit_code, 0) << r.out;
    EXPECT_NE(r.out.find("NOT SHOWN"), std::string::npos) << r.out;
    EXPECT_EQ(read_lines(installed()), read_lines(from + "/seed.jsonl"));
}

TEST_F(RegenGpuGoldens, InstallsEveryPresetOrNone) {
    add_mlp();
    write_text(from + "/seed.jsonl", trace(3, kH100));
    write_text(from + "/seed.run2.jsonl", trace(3, kH100));
    write_text(from + "/mlp.jsonl", trace(2, kH100, "mlp", "stopped"));  // checked after seed
    write_text(from + "/mlp.run2.jsonl", trace(2, kH100, "mlp"));
    RunResult r = install_checked("", "seed mlp");
    EXPECT_EQ(r.exit_code, 2) << r.out;
    EXPECT_NE(r.out.find("mlp.jsonl: not a completed run"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("nothing was installed"), std::string::npos) << r.out;
    EXPECT_FALSE(file_exists(installed("seed"))) << "seed installed although mlp was refused";
    // Every preset from one device.
    write_text(from + "/mlp.jsonl", trace(2, "cuda (NVIDIA H200, sm_90, 132 SMs)", "mlp"));
    r = install_checked("", "seed mlp");
    EXPECT_EQ(r.exit_code, 2) << r.out;
    EXPECT_NE(r.out.find("more than one device"), std::string::npos) << r.out;
    EXPECT_FALSE(file_exists(installed("seed"))) << r.out;
    write_text(from + "/mlp.jsonl", trace(2, kH100, "mlp"));
    r = install_checked("", "seed mlp");
    ASSERT_EQ(r.exit_code, 0) << r.out;
    EXPECT_EQ(read_lines(installed("seed")), read_lines(from + "/seed.jsonl"));
    EXPECT_EQ(read_lines(installed("mlp")), read_lines(from + "/mlp.jsonl"));
    // One preset alone must match the device of the GPU goldens it leaves in place.
    write_text(from + "/seed.jsonl", trace(3, "cuda (NVIDIA H200, sm_90, 132 SMs)"));
    r = install_checked("", "seed");
    EXPECT_EQ(r.exit_code, 2) << r.out;
    EXPECT_NE(r.out.find("mlp (installed)"), std::string::npos) << r.out;
    EXPECT_EQ(read_lines(installed("seed")), read_lines(from + "/seed.run2.jsonl")) << "seed replaced";
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
        {trace(3, gpu, "seed", "completed", 2.3, 1), "a run with seed 1; seed.args trains with seed 0"},
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
