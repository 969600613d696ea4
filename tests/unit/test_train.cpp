// The training loop on a small learnable synthetic problem, through the C API.
#include <gtest/gtest.h>

#include <cmath>
#include <numeric>

#include "support/fixtures.h"

using namespace ct_test;

namespace {

struct Trained {
    int code;
    ct_run_summary sum;
    std::string jsonl;
};

// Trains a small MLP on synthetic 8x8 data and logs to dir/name.jsonl.
Trained train_synthetic(const TempDir &dir, const std::string &name, ct_train_options *override_opt = nullptr,
                        int n_train = 300, int n_test = 100, ct_optim_config *optim = nullptr) {
    ct_error err;
    ct_error_clear(&err);
    ct_backend *be = ct_backend_cpu_create(1, &err);
    ct_model_spec s = synthetic_spec("synthetic", CT_ACT_SOFTMAX, CT_LOSS_XENT);
    if (optim) s.optim = *optim;
    else s.optim.lr = 0.01f;
    ct_train_options opt = override_opt ? *override_opt : ct_train_defaults(&s);
    if (!override_opt) {
        opt.epochs = 3;
        opt.seed = 7;
    }
    ct_model m;
    EXPECT_EQ(ct_model_build(&m, &s, be, 64, opt.seed, &err), 0) << err.msg;
    ct_dataset train = synthetic_dataset(n_train, 8, 10, 1), test = synthetic_dataset(n_test, 8, 10, 2);
    std::string path = dir.file(name + ".jsonl");
    char names[CT_MAX_PARAM_LAYERS][32] = {"dense1", "dense2"};
    ct_log_options lo = {path.c_str(), nullptr, 1, 0, 2, names};
    ct_logger *log = ct_logger_open(&lo, &err);
    EXPECT_NE(log, nullptr) << err.msg;
    Trained t;
    t.code = ct_train(&m, &train, &test, &opt, log, &t.sum, &err);
    EXPECT_GE(t.code, 0) << err.msg;
    EXPECT_EQ(ct_logger_close(log, &err), 0);
    t.jsonl = path;
    ct_model_free(&m);
    ct_dataset_free(&train);
    ct_dataset_free(&test);
    ct_backend_destroy(be);
    return t;
}

TEST(Train, LearnsASyntheticProblem) {
    TempDir dir;
    Trained t = train_synthetic(dir, "run");
    ASSERT_EQ(t.code, CT_EXIT_OK);
    auto steps = jsonl_of_type(t.jsonl, "step");
    auto epochs = jsonl_of_type(t.jsonl, "epoch");
    ASSERT_EQ(steps.size(), 3u * 10u);  // ceil(300 / 32) = 10 steps per epoch
    ASSERT_EQ(epochs.size(), 3u);
    double first = json_number(steps.front(), "loss"), last = json_number(steps.back(), "loss");
    EXPECT_NEAR(first, std::log(10.0), 0.5);  // untrained: close to chance
    EXPECT_LT(last, 0.5 * first);
    EXPECT_LT(json_number(epochs[2], "train_loss"), json_number(epochs[0], "train_loss"));
    EXPECT_GT(t.sum.test_acc, 0.9);
    EXPECT_STREQ(t.sum.status, "completed");
    EXPECT_EQ(jsonl_of_type(t.jsonl, "summary").size(), 1u);
}

TEST(Train, SameSeedSameBitsOtherSeedOtherBits) {
    TempDir dir;
    Trained a = train_synthetic(dir, "a"), b = train_synthetic(dir, "b");
    auto sa = jsonl_of_type(a.jsonl, "step"), sb = jsonl_of_type(b.jsonl, "step");
    ASSERT_EQ(sa.size(), sb.size());
    for (size_t i = 0; i < sa.size(); ++i) EXPECT_EQ(sa[i], sb[i]) << "step " << i + 1;

    ct_model_spec dummy{};
    dummy.batch_size = 32;
    ct_train_options opt = ct_train_defaults(&dummy);
    opt.epochs = 3;
    opt.seed = 8;
    Trained c = train_synthetic(dir, "c", &opt);
    auto sc = jsonl_of_type(c.jsonl, "step");
    ASSERT_EQ(sc.size(), sa.size());
    EXPECT_NE(sa[0], sc[0]);
}

TEST(Train, PartialLastBatchIsWeightedByItsRealSize) {
    TempDir dir;
    ct_model_spec dummy{};
    dummy.batch_size = 32;
    ct_train_options opt = ct_train_defaults(&dummy);
    opt.epochs = 1;
    opt.seed = 3;
    Trained t = train_synthetic(dir, "partial", &opt, 70, 30);  // batches of 32, 32, 6
    auto steps = jsonl_of_type(t.jsonl, "step");
    ASSERT_EQ(steps.size(), 3u);
    EXPECT_EQ(json_number(steps[2], "batch_size"), 6.0);
    double weighted = 0;
    for (auto &s : steps) weighted += json_number(s, "loss") * json_number(s, "batch_size");
    auto ep = jsonl_of_type(t.jsonl, "epoch");
    ASSERT_EQ(ep.size(), 1u);
    EXPECT_NEAR(json_number(ep[0], "train_loss"), weighted / 70.0, 1e-6);
    EXPECT_EQ(json_number(ep[0], "samples"), 70.0);
}

// A batch larger than the training set holds the whole set, so the model
// needs rows for the set, not for the batch size: --batch-size 65536 on a
// small set planned 65536 rows (40 GB of activations for cnn) for steps of
// a few hundred. The model here is built for 64 rows and trains batches of
// 500 on 40 items, one step of all 40 an epoch.
TEST(Train, ABatchLargerThanTheDataNeedsRowsForTheDataOnly) {
    EXPECT_EQ(ct_train_plan_rows(100, 65536), 1000);  // evaluation's chunks of 1000
    EXPECT_EQ(ct_train_plan_rows(60000, 65536), 60000);
    EXPECT_EQ(ct_train_plan_rows(60000, 2048), 2048);
    EXPECT_EQ(ct_train_plan_rows(60000, 32), 1000);

    TempDir dir;
    ct_model_spec dummy{};
    dummy.batch_size = 500;
    ct_train_options opt = ct_train_defaults(&dummy);
    opt.epochs = 2;
    Trained t = train_synthetic(dir, "bigbatch", &opt, 40, 30);
    ASSERT_EQ(t.code, CT_EXIT_OK);
    auto steps = jsonl_of_type(t.jsonl, "step");
    ASSERT_EQ(steps.size(), 2u);
    for (auto &s : steps) EXPECT_EQ(json_number(s, "batch_size"), 40.0);
    auto ep = jsonl_of_type(t.jsonl, "epoch");
    ASSERT_EQ(ep.size(), 2u);
    EXPECT_EQ(json_number(ep[1], "samples"), 40.0);
}

TEST(Train, DropLastAndMaxSteps) {
    TempDir dir;
    ct_model_spec dummy{};
    dummy.batch_size = 32;
    ct_train_options opt = ct_train_defaults(&dummy);
    opt.epochs = 2;
    opt.drop_last = 1;
    Trained t = train_synthetic(dir, "droplast", &opt, 70, 30);
    auto steps = jsonl_of_type(t.jsonl, "step");
    ASSERT_EQ(steps.size(), 4u);  // 2 full batches per epoch
    for (auto &s : steps) EXPECT_EQ(json_number(s, "batch_size"), 32.0);
    EXPECT_EQ(ct_steps_per_epoch(70, 32, 1), 2u);
    EXPECT_EQ(ct_steps_per_epoch(70, 32, 0), 3u);
    EXPECT_EQ(ct_steps_per_epoch(20, 32, 1), 0u);
    // The rows those steps train: 32, 32 and the 6 left, epoch after epoch.
    EXPECT_EQ(ct_samples_in_steps(70, 32, 0, 2), 64u);
    EXPECT_EQ(ct_samples_in_steps(70, 32, 0, 3), 70u);
    EXPECT_EQ(ct_samples_in_steps(70, 32, 0, 7), 70u + 70u + 32u);
    EXPECT_EQ(ct_samples_in_steps(70, 32, 1, 5), 5u * 32u);
    EXPECT_EQ(ct_samples_in_steps(20, 32, 0, 4), 4u * 20u);  // a batch larger than the data holds all of it
    EXPECT_EQ(ct_samples_in_steps(20, 32, 1, 4), 0u);

    opt.drop_last = 0;
    opt.epochs = 5;
    opt.max_steps = 4;
    Trained m = train_synthetic(dir, "maxsteps", &opt, 70, 30);
    EXPECT_EQ(jsonl_of_type(m.jsonl, "step").size(), 4u);
    auto ep = jsonl_of_type(m.jsonl, "epoch");
    ASSERT_EQ(ep.size(), 2u);  // 3 steps, then 1 step and a final evaluation
    EXPECT_EQ(json_number(ep[1], "steps"), 1.0);
    EXPECT_TRUE(std::isfinite(json_number(ep[1], "test_acc")));
    EXPECT_EQ(m.sum.steps, 4u);
}

TEST(Train, DivergenceStopsWithADiagnosisAndKeepsLastGoodWeights) {
    TempDir dir;
    ct_optim_config sgd = ct_optim_defaults(CT_OPT_SGD);
    sgd.lr = 1e30f;  // absurd on purpose: overflows to Inf, then NaN, within a few steps
    ct_model_spec dummy{};
    dummy.batch_size = 32;
    ct_train_options opt = ct_train_defaults(&dummy);
    opt.epochs = 20;
    opt.drain_every = 4;
    Trained t = train_synthetic(dir, "nan", &opt, 300, 100, &sgd);
    ASSERT_EQ(t.code, CT_EXIT_HEALTH_STOP);
    auto diag = jsonl_of_type(t.jsonl, "diagnosis");
    ASSERT_GE(diag.size(), 1u);
    EXPECT_NE(diag[0].find("NONFINITE"), std::string::npos) << diag[0];
    auto steps = jsonl_of_type(t.jsonl, "step");
    ASSERT_FALSE(steps.empty());
    // The run ends at the first non-finite step, whose update was skipped:
    // steps the device ran after it (the host reads records a ring half
    // behind) are neither logged nor counted.
    double bad = json_number(diag[0], "step");
    EXPECT_EQ(json_number(steps.back(), "step"), bad);
    EXPECT_NE(steps.back().find("NONFINITE"), std::string::npos) << steps.back();
    EXPECT_NE(steps.back().find("SKIPPED_UPDATE"), std::string::npos) << steps.back();
    for (size_t i = 0; i + 1 < steps.size(); ++i) EXPECT_EQ(steps[i].find("NONFINITE"), std::string::npos) << steps[i];
    EXPECT_EQ(t.sum.steps, (uint64_t)bad);
    auto sum = jsonl_of_type(t.jsonl, "summary");
    ASSERT_EQ(sum.size(), 1u);
    EXPECT_NE(sum[0].find("\"status\":\"stopped\""), std::string::npos);
}

}  // namespace
