// Training on the GPU end to end: through the cutrain command (--device cuda
// and --device auto) and through the C API (a model built on the CUDA
// backend, one step's ops run by hand, a planted NaN/Inf/zero gradient).
//
// Suites:
//   GpuCommand  the command on small synthetic data (no MNIST needed)
//   GpuMnist    the command on real MNIST (skipped without all four files:
//               data/mnist, ../shared/data/mnist or $CUTRAIN_MNIST_DIR)
//   GpuApi      the C API on synthetic data
// Every test is skipped (GTEST_SKIP) without a usable GPU.
//
// Tolerances
//   same device, same seed:  step records identical, byte for byte (the
//                            backend's reductions are fixed-order and the
//                            counter RNG does not depend on scheduling).
//   GPU vs CPU loss trace:   first step 1e-5 relative (same weights, same
//                            batch: only the fp32 GEMM summation order differs,
//                            cuBLAS vs OpenBLAS, ~1e-7 per product sum);
//                            steps 1-50 1e-3 relative: those rounding
//                            differences change the weights by ~1e-7
//                            relative per step, and Adam's m/sqrt(v)
//                            amplifies them for elements whose gradient is
//                            near 0, so the traces drift apart slowly; a
//                            wrong kernel is off by far more than 1e-3 within
//                            a few steps. (Not yet measured on a GPU.)
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "support/fixtures.h"

using namespace ct_test;

namespace {

bool starts_with(const std::string &s, const std::string &prefix) { return s.rfind(prefix, 0) == 0; }

// The banner, "cutrain <version>: <model> on <backend>; ...": the first line
// the command prints on stdout. (Lines on stderr start "cutrain: ", and with
// 2>&1 into a pipe they may come before it.)
std::string banner(const std::string &out) {
    size_t at = 0;
    while (at < out.size()) {
        size_t end = out.find('\n', at);
        std::string line = out.substr(at, end == std::string::npos ? std::string::npos : end - at);
        if (starts_with(line, "cutrain ")) return line;
        if (end == std::string::npos) break;
        at = end + 1;
    }
    return "";
}

class GpuTest : public ::testing::Test {
  protected:
    void SetUp() override {
        char why[512] = "";
        const bool gpu = ct_cuda_available(why, sizeof why) != 0;
        if (!gpu) GTEST_SKIP() << "no usable GPU: " << why;
    }
    TempDir dir;
};

// ---- the command on synthetic data ------------------------------------------
class GpuCommand : public GpuTest {
  protected:
    // 28x28 synthetic items (the presets' 784 inputs), standard MNIST names.
    std::string synthetic(int n_train = 300, int n_test = 100) {
        write_synthetic_mnist(dir.path(), n_train, n_test, 28);
        return dir.path();
    }
};

TEST_F(GpuCommand, DeviceAutoTrainsOnCuda) {
    std::string data = synthetic();
    std::string log = dir.file("auto.jsonl");
    RunResult r = run_cutrain("train --device auto --model seed --max-steps 3 --data " + data + " --log-jsonl " + log);
    ASSERT_EQ(r.exit_code, 0) << r.out;
    EXPECT_EQ(r.out.find("no usable GPU"), std::string::npos) << r.out;
    // The first line printed names the backend: "... on cuda (<name>, sm_XY, N SMs); ...".
    EXPECT_NE(banner(r.out).find(" on cuda"), std::string::npos) << r.out;
    auto sum = jsonl_of_type(log, "summary");
    ASSERT_EQ(sum.size(), 1u);
    EXPECT_TRUE(starts_with(json_string(sum[0], "device"), "cuda")) << sum[0];
}

TEST_F(GpuCommand, DeviceCudaTrainsEvaluatesAndSaysCuda) {
    std::string data = synthetic();
    std::string log = dir.file("cuda.jsonl"), w = dir.file("w.safetensors"), ev = dir.file("eval.jsonl");
    RunResult r = run_cutrain("train --quiet --device cuda --model seed --epochs 3 --lr 0.01 --seed 4 --data " + data +
                              " --log-jsonl " + log + " --save " + w);
    ASSERT_EQ(r.exit_code, 0) << r.out;
    auto steps = jsonl_of_type(log, "step");
    EXPECT_EQ(steps.size(), 3u * 10u);  // ceil(300 / 32) = 10: nine full batches (the graph) and one of 12
    EXPECT_EQ(json_number(steps[9], "batch_size"), 12.0);
    for (const auto &s : steps) EXPECT_EQ(s.find("NONFINITE"), std::string::npos) << s;
    auto sum = jsonl_of_type(log, "summary");
    ASSERT_EQ(sum.size(), 1u);
    EXPECT_TRUE(starts_with(json_string(sum[0], "device"), "cuda")) << sum[0];
    EXPECT_EQ(json_string(sum[0], "status"), "completed");
    EXPECT_GT(json_number(sum[0], "test_acc"), 0.9) << sum[0];  // 0.99 on the CPU
    // Loss goes down over the run, on the GPU's own records.
    EXPECT_LT(json_number(steps.back(), "loss"), 0.3 * json_number(steps.front(), "loss"));

    // The saved weights evaluate to the same accuracy on the GPU.
    r = run_cutrain("eval --quiet --device cuda --model seed --data " + data + " --weights " + w + " --log-jsonl " + ev);
    ASSERT_EQ(r.exit_code, 0) << r.out;
    auto esum = jsonl_of_type(ev, "summary");
    ASSERT_EQ(esum.size(), 1u);
    EXPECT_EQ(json_number(esum[0], "test_acc"), json_number(sum[0], "test_acc"));
    EXPECT_TRUE(starts_with(json_string(esum[0], "device"), "cuda")) << esum[0];
}

// The "flags":[...] list of a step line.
std::string flags_field(const std::string &line) {
    size_t at = line.find("\"flags\":[");
    if (at == std::string::npos) return "(none)";
    return line.substr(at + 9, line.find(']', at) - at - 9);
}

// --inject-nan 5: step 5 runs outside the captured graph (steps 2.. of full
// batches replay it) with one NaN written into dense1's gradient; the record
// of step 5 says so, the others do not, and the policy acts on it.
TEST_F(GpuCommand, InjectedNaNIsFlaggedAtItsStepBetweenGraphReplays) {
    std::string data = synthetic();
    const std::string base = "train --quiet --model seed --epochs 1 --seed 3 --drain-every 2 --data " + data;
    std::string clean = dir.file("clean.jsonl"), skip = dir.file("skip.jsonl"), cpu_skip = dir.file("cpu.jsonl"),
                stop = dir.file("stop.jsonl");
    ASSERT_EQ(run_cutrain(base + " --device cuda --log-jsonl " + clean).exit_code, 0);
    RunResult r = run_cutrain(base + " --device cuda --inject-nan 5 --inject-layer dense1 --on-nan skip --log-jsonl " + skip);
    ASSERT_EQ(r.exit_code, 0) << r.out;
    auto sc = jsonl_of_type(clean, "step"), ss = jsonl_of_type(skip, "step");
    ASSERT_EQ(ss.size(), 10u);
    ASSERT_EQ(sc.size(), 10u);
    for (size_t i = 0; i < 4; ++i) EXPECT_EQ(ss[i], sc[i]) << "step " << i + 1 << " ran before the fault";
    EXPECT_EQ(json_number(ss[4], "step"), 5.0);
    EXPECT_NE(flags_field(ss[4]).find("NONFINITE_GRAD"), std::string::npos) << ss[4];
    EXPECT_NE(flags_field(ss[4]).find("SKIPPED_UPDATE"), std::string::npos) << ss[4];
    EXPECT_EQ(json_number(ss[4], "nonfinite"), 1.0) << ss[4];
    for (size_t i = 0; i < ss.size(); ++i) {
        if (i != 4) EXPECT_EQ(flags_field(ss[i]), "") << ss[i];
    }
    auto diag = jsonl_of_type(skip, "diagnosis");
    ASSERT_FALSE(diag.empty());
    EXPECT_EQ(json_string(diag[0], "code"), "NONFINITE_GRAD");
    EXPECT_EQ(json_number(diag[0], "step"), 5.0);
    EXPECT_EQ(json_string(diag[0], "layer"), "dense1");
    // The CPU flags the same steps the same way.
    ASSERT_EQ(run_cutrain(base + " --device cpu --inject-nan 5 --inject-layer dense1 --on-nan skip --log-jsonl " +
                          cpu_skip).exit_code, 0);
    auto cs = jsonl_of_type(cpu_skip, "step");
    ASSERT_EQ(cs.size(), ss.size());
    for (size_t i = 0; i < cs.size(); ++i) EXPECT_EQ(flags_field(ss[i]), flags_field(cs[i])) << "step " << i + 1;

    r = run_cutrain(base + " --device cuda --inject-nan 5 --inject-layer dense1 --log-jsonl " + stop);
    EXPECT_EQ(r.exit_code, CT_EXIT_HEALTH_STOP) << r.out;
    diag = jsonl_of_type(stop, "diagnosis");
    ASSERT_FALSE(diag.empty());
    EXPECT_EQ(json_string(diag[0], "severity"), "error");
    EXPECT_EQ(json_number(diag[0], "step"), 5.0);
    EXPECT_EQ(json_string(diag[0], "layer"), "dense1");
}

// Dropout (the counter RNG on the device), a partial last batch (the ops
// outside the captured graph) and AdamW: the same seed gives the same bytes,
// and the GPU follows the CPU.
TEST_F(GpuCommand, DropoutModelSameSeedSameRecordsAndFollowsTheCpu) {
    std::string data = synthetic(200, 50);
    std::string model = dir.file("model.txt");
    write_text(model, "input 784\ndense 64 relu\ndropout 0.3\ndense 32 tanh\ndense 10 softmax\n"
                      "optimizer adamw lr=0.003\nbatch_size 32\n");
    auto run = [&](const std::string &device, const std::string &name, const std::string &extra = "") {
        std::string log = dir.file(name + ".jsonl");
        RunResult r = run_cutrain("train --quiet --device " + device + " --model " + model + " --data " + data +
                                  " --epochs 3 --seed 21 --log-jsonl " + log + extra);
        EXPECT_EQ(r.exit_code, 0) << r.out;
        return jsonl_of_type(log, "step");
    };
    auto a = run("cuda", "a"), b = run("cuda", "b"), c = run("cuda", "c", " --drain-every 3");
    ASSERT_EQ(a.size(), 3u * 7u);  // ceil(200 / 32) = 7, the last of 8 rows
    EXPECT_EQ(a, b) << "two GPU runs with the same seed differ";
    EXPECT_EQ(a, c) << "the ring's drain interval changed the records";
    auto cpu = run("cpu", "cpu");
    ASSERT_EQ(cpu.size(), a.size());
    double l0g = json_number(a[0], "loss"), l0c = json_number(cpu[0], "loss");
    EXPECT_NEAR(l0g, l0c, 1e-5 * std::fabs(l0c)) << "step 1: same weights, same batch, same dropout mask";
    for (size_t i = 0; i < a.size(); ++i) {
        double g = json_number(a[i], "loss"), cl = json_number(cpu[i], "loss");
        EXPECT_NEAR(g, cl, 1e-3 * std::fabs(cl)) << "step " << i + 1;
    }
}

// ---- the command on MNIST -------------------------------------------------------
class GpuMnist : public GpuTest {
  protected:
    void SetUp() override {
        GpuTest::SetUp();
        if (IsSkipped()) return;
        data = mnist_dir();
        char images[1024], labels[1024];
        ct_error err;
        ct_error_clear(&err);
        if (data.empty() || ct_mnist_find(data.c_str(), "train", images, labels, sizeof images, &err) ||
            ct_mnist_find(data.c_str(), "test", images, labels, sizeof images, &err))
            GTEST_SKIP() << "no complete MNIST (" << (data.empty() ? "none found" : err.msg)
                         << "): run tools/fetch-mnist or set CUTRAIN_MNIST_DIR";
    }
    std::string data;
};

TEST_F(GpuMnist, MlpOneEpochReaches96Percent) {
    std::string log = dir.file("mlp.jsonl");
    RunResult r = run_cutrain("train --quiet --device cuda --model mlp --epochs 1 --seed 7 --data " + data +
                              " --log-jsonl " + log);
    ASSERT_EQ(r.exit_code, 0) << r.out;
    auto steps = jsonl_of_type(log, "step");
    EXPECT_EQ(steps.size(), 469u);  // ceil(60000 / 128)
    for (const auto &s : steps) EXPECT_EQ(s.find("NONFINITE"), std::string::npos) << s;
    auto sum = jsonl_of_type(log, "summary");
    ASSERT_EQ(sum.size(), 1u);
    double acc = json_number(sum[0], "test_acc");
    EXPECT_GE(acc, 0.96) << sum[0];
    EXPECT_LE(acc, 0.99) << "suspiciously high for one epoch: is the test set the training set?";
    EXPECT_TRUE(starts_with(json_string(sum[0], "device"), "cuda")) << sum[0];
}

TEST_F(GpuMnist, SameSeedGivesIdenticalStepRecords) {
    auto run = [&](const std::string &name, const std::string &seed) {
        std::string log = dir.file(name + ".jsonl");
        RunResult r = run_cutrain("train --quiet --device cuda --model mlp --max-steps 200 --seed " + seed +
                                  " --data " + data + " --log-jsonl " + log);
        EXPECT_EQ(r.exit_code, 0) << r.out;
        return jsonl_of_type(log, "step");
    };
    auto a = run("a", "11"), b = run("b", "11"), other = run("other", "12");
    ASSERT_EQ(a.size(), 200u);
    ASSERT_EQ(b.size(), 200u);
    for (size_t i = 0; i < a.size(); ++i) ASSERT_EQ(a[i], b[i]) << "first difference at step " << i + 1;
    ASSERT_FALSE(other.empty());
    EXPECT_NE(a[0], other[0]) << "seed 12 gave seed 11's first step";
}

TEST_F(GpuMnist, LossTraceFollowsTheCpuForFiftySteps) {
    auto run = [&](const std::string &device) {
        std::string log = dir.file(device + ".jsonl");
        RunResult r = run_cutrain("train --quiet --device " + device + " --model mlp --max-steps 50 --seed 5 --data " +
                                  data + " --log-jsonl " + log);
        EXPECT_EQ(r.exit_code, 0) << r.out;
        return jsonl_of_type(log, "step");
    };
    auto g = run("cuda"), c = run("cpu");
    ASSERT_EQ(g.size(), 50u);
    ASSERT_EQ(c.size(), 50u);
    EXPECT_NEAR(json_number(g[0], "loss"), json_number(c[0], "loss"), 1e-5 * json_number(c[0], "loss"));
    EXPECT_NEAR(json_number(g[0], "grad_norm"), json_number(c[0], "grad_norm"), 1e-4 * json_number(c[0], "grad_norm"));
    for (size_t i = 0; i < g.size(); ++i) {
        double lg = json_number(g[i], "loss"), lc = json_number(c[i], "loss");
        EXPECT_NEAR(lg, lc, 1e-3 * std::fabs(lc)) << "step " << i + 1 << "\ngpu " << g[i] << "\ncpu " << c[i];
    }
}

// seed as one dense-chain kernel (CUTRAIN_CUDA_DENSE_CHAIN=on,
// kernels/cuda/dense_chain_cuda.cu) in the real command: the captured graph
// replays it, the records are the same twice, and the loss trace follows
// the CPU's as the ops one by one do (same tolerances as above). Step 1 of a
// run is the same batch on both devices, so the chain's first loss must
// agree to 1e-5.
TEST_F(GpuMnist, SeedAsOneDenseChainKernelRepeatsItselfAndFollowsTheCpu) {
    ScopedEnv on("CUTRAIN_CUDA_DENSE_CHAIN", "on");
    auto run = [&](const std::string &name, const std::string &device, int steps) {
        std::string log = dir.file(name + ".jsonl");
        RunResult r = run_cutrain("train --quiet --device " + device + " --model seed --max-steps " +
                                  std::to_string(steps) + " --seed 5 --data " + data + " --log-jsonl " + log);
        EXPECT_EQ(r.exit_code, 0) << r.out;
        return jsonl_of_type(log, "step");
    };
    auto a = run("a", "cuda", 200), b = run("b", "cuda", 200), c = run("cpu", "cpu", 50);
    ASSERT_EQ(a.size(), 200u);
    ASSERT_EQ(b.size(), 200u);
    ASSERT_EQ(c.size(), 50u);
    for (size_t i = 0; i < a.size(); ++i) ASSERT_EQ(a[i], b[i]) << "first difference at step " << i + 1;
    EXPECT_NEAR(json_number(a[0], "loss"), json_number(c[0], "loss"), 1e-5 * json_number(c[0], "loss"));
    for (size_t i = 0; i < c.size(); ++i) {
        double lg = json_number(a[i], "loss"), lc = json_number(c[i], "loss");
        EXPECT_NEAR(lg, lc, 1e-3 * std::fabs(lc)) << "step " << i + 1 << "\ngpu " << a[i] << "\ncpu " << c[i];
    }
}

// The statistics, update and step advance as one kernel
// (CUTRAIN_CUDA_STEP_FINISH=on, kernels/cuda/step_finish_kernel.cuh) change
// no bit of a run: seed's 200 step records are the same with and without it,
// after the ops one by one and after the dense chain. The two-kernel step
// (chain + finish) is the one the benchmarks time as seed-fused.
TEST_F(GpuMnist, StepFinishAsOneKernelChangesNoBitOfARun) {
    auto run = [&](const std::string &name, const char *chain, const char *finish) {
        ScopedEnv c("CUTRAIN_CUDA_DENSE_CHAIN", chain), f("CUTRAIN_CUDA_STEP_FINISH", finish);
        std::string log = dir.file(name + ".jsonl");
        RunResult r = run_cutrain("train --quiet --device cuda --model seed --max-steps 200 --optimizer adam "
                                  "--clip-grad-norm 0.5 --seed 9 --data " + data + " --log-jsonl " + log);
        EXPECT_EQ(r.exit_code, 0) << r.out;
        return jsonl_of_type(log, "step");
    };
    const auto ops = run("ops", "off", "off"), ops_finish = run("ops-finish", "off", "on");
    const auto chain = run("chain", "on", "off"), chain_finish = run("chain-finish", "on", "on");
    ASSERT_EQ(ops.size(), 200u);
    ASSERT_EQ(ops_finish.size(), 200u);
    ASSERT_EQ(chain.size(), 200u);
    ASSERT_EQ(chain_finish.size(), 200u);
    for (size_t i = 0; i < ops.size(); ++i) ASSERT_EQ(ops[i], ops_finish[i]) << "ops: first difference at step " << i + 1;
    for (size_t i = 0; i < chain.size(); ++i)
        ASSERT_EQ(chain[i], chain_finish[i]) << "chain: first difference at step " << i + 1;
}

TEST_F(GpuCommand, UnknownStepFinishSettingIsAUsageErrorEvenWithDeviceAuto) {
    std::string data = synthetic();
    for (const char *device : {"cuda", "auto"}) {
        SCOPED_TRACE(device);
        RunResult r;
        {
            ScopedEnv bad("CUTRAIN_CUDA_STEP_FINISH", "1");
            r = run_cutrain(std::string("train --quiet --device ") + device + " --model seed --epochs 1 --data " + data);
        }
        EXPECT_EQ(r.exit_code, 2) << r.out;
        EXPECT_NE(r.out.find("CUTRAIN_CUDA_STEP_FINISH"), std::string::npos) << r.out;
    }
}

// Each path setting is checked when the backend is made, so a typo is a
// usage error for every model, not only for one the setting applies to
// (mlp is no dense chain and has no convolution).
TEST_F(GpuCommand, UnknownPathSettingsAreUsageErrorsWhateverTheModel) {
    std::string data = synthetic();
    // variable, bad value, what the message must name
    const char *vars[][3] = {{"CUTRAIN_CUDA_DENSE_CHAIN", "fast", "CUTRAIN_CUDA_DENSE_CHAIN"},
                             {"CUTRAIN_CUDA_CONV_BACKWARD", "gemm:0", "CUTRAIN_CUDA_CONV_BACKWARD=gemm:0"}};
    for (const auto &v : vars)
        for (const char *model : {"seed", "mlp"}) {
            SCOPED_TRACE(std::string(v[0]) + " " + model);
            RunResult r;
            {
                ScopedEnv bad(v[0], v[1]);
                r = run_cutrain(std::string("train --quiet --device cuda --max-steps 2 --model ") + model +
                                " --data " + data);
            }
            EXPECT_EQ(r.exit_code, 2) << r.out;
            EXPECT_NE(r.out.find(v[2]), std::string::npos) << r.out;
        }
}

// ---- the C API: a planted NaN / Inf / zero gradient -------------------------------
enum class Plant { NaN, PosInf, NegInfNoSkip, ZeroLayer };

struct Planted {
    std::vector<ct_step_record> recs;       // steps 1, 2, 3
    std::vector<float> before, after;       // parameters around step 2's update
    uint64_t t_after = 0;                   // updates counted after step 2
    std::vector<float> final_params;        // after step 3
    size_t n_params = 0;
    size_t planted_at = 0;                  // arena index of the planted element
    int n_layers = 0;
    std::vector<size_t> begin;
};

// Builds mlp (784-512-512-10, Adam) on `be`, runs three steps by hand on
// synthetic 28x28 data, and at step 2 overwrites the gradient arena between
// backward and step_stats: one element of `layer` (NaN / +Inf / -Inf) or the
// whole layer (zero). Records go to a 3-slot ring, one slot per step.
Planted run_planted(ct_backend *be, Plant plant, int layer, int skip) {
    Planted out;
    ct_error err;
    ct_error_clear(&err);
    ct_model_spec spec;
    EXPECT_EQ(ct_model_spec_preset("mlp", &spec), 0);
    const int rows = 32;
    const uint64_t seed = 3;
    ct_model m;
    if (ct_model_build(&m, &spec, be, rows, seed, &err) != 0) {
        ADD_FAILURE() << "ct_model_build: " << err.msg;
        return out;
    }
    ct_dataset ds = synthetic_dataset(256, 28, 10, 5);
    ct_device_data dd;
    if (ct_device_data_upload(be, &ds, &dd, &err) != 0) {
        ADD_FAILURE() << "ct_device_data_upload: " << err.msg;
        ct_model_free(&m);
        ct_dataset_free(&ds);
        return out;
    }
    const ct_backend_ops *o = be->ops;
    const uint32_t ring_len = 3;
    auto *ring = static_cast<ct_step_record *>(o->alloc(be, ring_len * sizeof(ct_step_record), &err));
    EXPECT_NE(ring, nullptr) << err.msg;
    o->zero(be, ring, ring_len * sizeof(ct_step_record));
    ct_step_ctx ctx = {1, 1, 0, 0, ring_len};
    o->upload(be, m.ctx, &ctx, sizeof ctx);

    ct_optim_config cfg = spec.optim;
    cfg.skip_nonfinite = skip;
    const ct_health_thresholds th = {1e-7, 1e4};
    out.n_params = m.n_params;
    out.n_layers = m.n_param_layers;
    out.begin.assign(m.param_begin, m.param_begin + m.n_param_layers + 1);
    const size_t lo = m.param_begin[layer], hi = m.param_begin[layer + 1];
    out.planted_at = lo + (hi - lo) / 3;

    for (int step = 1; step <= 3; ++step) {
        o->gather_batch(be, &dd.ds, dd.order, (size_t)rows, m.ctx, rows, m.x, m.labels);
        ct_model_forward(&m, rows, 1, seed, m.ctx);
        ct_model_loss(&m, rows, 1);
        ct_model_backward(&m, rows, seed, m.ctx);
        if (step == 2) {
            float v = plant == Plant::NaN ? NAN : plant == Plant::PosInf ? INFINITY : -INFINITY;
            if (plant == Plant::ZeroLayer)
                o->zero(be, m.grads + lo, (hi - lo) * sizeof(float));
            else
                o->upload(be, m.grads + out.planted_at, &v, sizeof v);  // 4 bytes into the device arena
            out.before.resize(m.n_params);
            ct_model_get_params(&m, out.before.data());
        }
        ct_stats_args a;
        std::memset(&a, 0, sizeof a);
        a.grads = m.grads;
        a.n = m.n_params;
        a.n_layers = (uint32_t)m.n_param_layers;
        a.layer_begin = m.param_begin;
        a.row_loss = m.row_loss;
        a.row_correct = m.row_correct;
        a.rows = (uint32_t)rows;
        a.th = th;
        o->step_stats(be, &a, m.ctx, ring);
        ct_optim_buffers buf = {m.params, m.grads, m.opt_state, m.opt_t, m.n_params};
        o->optimizer_step(be, &cfg, &buf, &th, m.ctx, ring);
        if (step == 2) {
            out.after.resize(m.n_params);
            ct_model_get_params(&m, out.after.data());
            o->download(be, &out.t_after, m.opt_t, sizeof out.t_after);
        }
        o->step_advance(be, m.ctx);
    }
    out.recs.resize(ring_len);
    o->download(be, out.recs.data(), ring, ring_len * sizeof(ct_step_record));
    out.final_params.resize(m.n_params);
    ct_model_get_params(&m, out.final_params.data());
    o->free(be, ring);
    ct_device_data_free(be, &dd);
    ct_dataset_free(&ds);
    ct_model_free(&m);
    return out;
}

std::string flags_of(uint32_t f) {
    std::string s;
    for (unsigned i = 0; i < CT_FLAG_COUNT; ++i)
        if (f & (1u << i)) s += std::string(s.empty() ? "" : "|") + ct_flag_name(i);
    return s.empty() ? "none" : s;
}

class GpuApi : public GpuTest {
  protected:
    void SetUp() override {
        GpuTest::SetUp();
        if (IsSkipped()) return;
        ct_error err;
        ct_error_clear(&err);
        gpu = ct_backend_cuda_create(&err);
        ASSERT_NE(gpu, nullptr) << err.msg;
        ct_error_clear(&err);
        cpu = ct_backend_cpu_create(0, &err);
        ASSERT_NE(cpu, nullptr) << err.msg;
    }
    void TearDown() override {
        if (gpu) ct_backend_destroy(gpu);
        if (cpu) ct_backend_destroy(cpu);
    }
    // The same scenario on both backends: the GPU's health fields must be the
    // CPU's: flags at every step; the counts at steps 1 and 2, where they are
    // fixed by construction (at step 3 after a poisoned weight, how far NaN
    // spreads depends on which ReLU units are alive, and a unit at z ~ 0 may
    // round to either side on the two backends).
    void expect_same_health(const Planted &g, const Planted &c) {
        ASSERT_EQ(g.recs.size(), c.recs.size());
        for (size_t s = 0; s < g.recs.size(); ++s) {
            const ct_step_record &rg = g.recs[s], &rc = c.recs[s];
            EXPECT_EQ(rg.flags, rc.flags) << "step " << s + 1 << ": gpu " << flags_of(rg.flags) << ", cpu "
                                          << flags_of(rc.flags);
            if (s == 2) continue;
            EXPECT_EQ(rg.nonfinite_count, rc.nonfinite_count) << "step " << s + 1;
            EXPECT_EQ(rg.layer_zero_all, rc.layer_zero_all) << "step " << s + 1;
            for (int l = 0; l < CT_MAX_PARAM_LAYERS; ++l)
                EXPECT_EQ(rg.layer_nonfinite[l], rc.layer_nonfinite[l]) << "step " << s + 1 << " layer " << l;
        }
    }
    ct_backend *gpu = nullptr;
    ct_backend *cpu = nullptr;
};

// Step 1 clean, step 2 flagged where the fault was planted, step 3 clean again
// (backward rewrites the whole arena, and the skipped update kept w finite).
void expect_nonfinite_at_step_2(const Planted &p, int layer, bool skipped) {
    ASSERT_EQ(p.recs.size(), 3u);
    const uint32_t bad = CT_FLAG_NONFINITE_GRAD | CT_FLAG_NONFINITE_LOSS | CT_FLAG_ZERO_GRAD | CT_FLAG_SKIPPED_UPDATE;
    EXPECT_EQ(p.recs[0].step, 1u);
    EXPECT_EQ(p.recs[0].flags & bad, 0u) << flags_of(p.recs[0].flags);
    const ct_step_record &r = p.recs[1];
    EXPECT_EQ(r.step, 2u);
    EXPECT_TRUE(r.flags & CT_FLAG_NONFINITE_GRAD) << flags_of(r.flags);
    EXPECT_FALSE(r.flags & CT_FLAG_NONFINITE_LOSS) << "the loss was finite; only a gradient was planted";
    EXPECT_EQ(r.nonfinite_count, 1u);
    for (int l = 0; l < p.n_layers; ++l) EXPECT_EQ(r.layer_nonfinite[l], l == layer ? 1u : 0u) << "layer " << l;
    EXPECT_EQ((r.flags & CT_FLAG_SKIPPED_UPDATE) != 0, skipped) << flags_of(r.flags);
    EXPECT_TRUE(std::isfinite(r.grad_sumsq) && r.grad_sumsq > 0) << "the norm leaves the planted element out";
}

TEST_F(GpuApi, PlantedNaNGradientIsFlaggedAndSkippedAtItsStep) {
    for (int layer : {0, 1, 2}) {
        SCOPED_TRACE("layer " + std::to_string(layer));
        Planted g = run_planted(gpu, Plant::NaN, layer, 1);
        ASSERT_FALSE(g.recs.empty());
        expect_nonfinite_at_step_2(g, layer, true);
        EXPECT_EQ(std::memcmp(g.before.data(), g.after.data(), g.n_params * sizeof(float)), 0)
            << "a skipped step changed the parameters on the GPU";
        EXPECT_EQ(g.t_after, 1u) << "only step 1's update counts";
        EXPECT_EQ(g.recs[2].flags & (CT_FLAG_NONFINITE_GRAD | CT_FLAG_SKIPPED_UPDATE), 0u) << flags_of(g.recs[2].flags);
        Planted c = run_planted(cpu, Plant::NaN, layer, 1);
        expect_same_health(g, c);
    }
}

TEST_F(GpuApi, PlantedInfGradientIsFlaggedAndSkippedAtItsStep) {
    const int layer = 1;
    Planted g = run_planted(gpu, Plant::PosInf, layer, 1);
    ASSERT_FALSE(g.recs.empty());
    expect_nonfinite_at_step_2(g, layer, true);
    EXPECT_EQ(std::memcmp(g.before.data(), g.after.data(), g.n_params * sizeof(float)), 0);
    EXPECT_EQ(g.t_after, 1u);
    expect_same_health(g, run_planted(cpu, Plant::PosInf, layer, 1));
}

TEST_F(GpuApi, PlantedInfWithoutSkipPoisonsExactlyThatWeight) {
    // --on-nan warn: the update is applied; Adam turns -Inf into NaN (Inf/Inf)
    // at that one weight, and step 3's forward pass then sees it.
    const int layer = 2;
    Planted g = run_planted(gpu, Plant::NegInfNoSkip, layer, 0);
    ASSERT_FALSE(g.recs.empty());
    expect_nonfinite_at_step_2(g, layer, false);
    EXPECT_EQ(g.t_after, 2u);
    size_t nonfinite = 0;
    for (size_t i = 0; i < g.n_params; ++i) nonfinite += !std::isfinite(g.after[i]);
    EXPECT_EQ(nonfinite, 1u);
    EXPECT_FALSE(std::isfinite(g.after[g.planted_at]));
    EXPECT_TRUE(g.recs[2].flags & CT_FLAG_NONFINITE_LOSS) << "step 3 ran with a NaN weight: " << flags_of(g.recs[2].flags);
    expect_same_health(g, run_planted(cpu, Plant::NegInfNoSkip, layer, 0));
}

TEST_F(GpuApi, ZeroedLayerGradientIsFlaggedWithItsLayerBit) {
    for (int layer : {0, 2}) {
        SCOPED_TRACE("layer " + std::to_string(layer));
        Planted g = run_planted(gpu, Plant::ZeroLayer, layer, 1);
        ASSERT_FALSE(g.recs.empty());
        EXPECT_EQ(g.recs[0].flags & CT_FLAG_ZERO_GRAD, 0u);
        const ct_step_record &r = g.recs[1];
        EXPECT_TRUE(r.flags & CT_FLAG_ZERO_GRAD) << flags_of(r.flags);
        EXPECT_EQ(r.layer_zero_all, 1u << layer);
        EXPECT_EQ(r.layer_grad_sumsq[layer], 0.0);
        EXPECT_EQ(r.flags & (CT_FLAG_NONFINITE_GRAD | CT_FLAG_SKIPPED_UPDATE), 0u) << "a zero gradient is no reason to skip";
        EXPECT_EQ(g.t_after, 2u);
        EXPECT_NE(std::memcmp(g.before.data(), g.after.data(), g.n_params * sizeof(float)), 0);
        EXPECT_EQ(g.recs[2].flags & CT_FLAG_ZERO_GRAD, 0u) << flags_of(g.recs[2].flags);
        expect_same_health(g, run_planted(cpu, Plant::ZeroLayer, layer, 1));
    }
}

}  // namespace

namespace {

// Checkpoints on the GPU: a run cut at step 14 (mid-epoch, inside the ring
// and after the graph was captured) and resumed with --save-every between
// graph replays writes the uninterrupted run's step records, bit for bit
// (the CPU twin is tests/unit/test_checkpoint.cpp).
TEST_F(GpuCommand, ResumedRunWritesTheRecordsOfAnUninterruptedRun) {
    std::string data = synthetic(700, 100);
    std::string m = dir.file("m.txt");
    write_text(m, "input 784\ndense 64 relu\ndropout 0.25\ndense 10 softmax\noptimizer adam lr=0.003\n"
                  "schedule onecycle total_steps=66\nbatch_size 32\n");
    std::string base = "train --quiet --device cuda --seed 2 --epochs 3 --drain-every 4 --model " + m + " --data " + data;
    std::string full = dir.file("full.jsonl"), p1 = dir.file("p1.jsonl"), p2 = dir.file("p2.jsonl");
    std::string ck = dir.file("ck.st"), ck2 = dir.file("ck2.st"), ckf = dir.file("ckf.st");
    ASSERT_EQ(run_cutrain(base + " --log-jsonl " + full + " --save " + ckf).exit_code, 0);
    ASSERT_EQ(run_cutrain(base + " --max-steps 14 --log-jsonl " + p1 + " --save " + ck).exit_code, 0);
    RunResult r = run_cutrain(base + " --resume " + ck + " --save-every 5 --save " + ck2 + " --log-jsonl " + p2);
    ASSERT_EQ(r.exit_code, 0) << r.out;
    auto all = jsonl_of_type(full, "step"), a = jsonl_of_type(p1, "step"), b = jsonl_of_type(p2, "step");
    ASSERT_EQ(all.size(), 66u);  // ceil(700 / 32) = 22 per epoch
    ASSERT_EQ(a.size(), 14u);
    ASSERT_EQ(b.size(), 52u);
    for (size_t i = 0; i < a.size(); ++i) EXPECT_EQ(a[i], all[i]);
    for (size_t i = 0; i < b.size(); ++i) EXPECT_EQ(b[i], all[14 + i]);
    EXPECT_EQ(read_file(ckf).size(), read_file(ck2).size());
}

}  // namespace
