// ct_train and ct_train_source used the ways a library's caller can get
// wrong: sets that do not fit the model, hand-made dataset structs, missing
// pointers, a model trained twice. Each either works as documented or is
// refused with an error; none may read out of bounds or train on garbage.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "support/fixtures.h"

using namespace ct_test;

namespace {

// A model of synthetic_spec on the CPU, the synthetic train and test sets,
// and a logger that writes nothing.
struct Rig {
    OwnedModel om;
    ct_model_spec spec;
    ct_dataset train{}, test{};
    ct_logger *log = nullptr;
    ct_train_options opt;
    ct_run_summary sum{};
    ct_error err;

    explicit Rig(const ct_optim_config *optim = nullptr) {
        ct_error_clear(&err);
        spec = synthetic_spec("api", CT_ACT_SOFTMAX, CT_LOSS_XENT);
        if (optim) spec.optim = *optim;
        spec.optim.lr = 0.01f;
        opt = ct_train_defaults(&spec);
        opt.seed = 3;
        om.be = ct_backend_cpu_create(1, &err);
        EXPECT_NE(om.be, nullptr) << err.msg;
        EXPECT_EQ(ct_model_build(&om.m, &spec, om.be, 64, opt.seed, &err), 0) << err.msg;
        train = synthetic_dataset(200, 8, 10, 1);
        test = synthetic_dataset(50, 8, 10, 2);
        ct_log_options lo{};
        lo.quiet = 1;
        log = ct_logger_open(&lo, &err);
        EXPECT_NE(log, nullptr) << err.msg;
    }
    ~Rig() {
        ct_logger_close(log, nullptr);
        ct_dataset_free(&train);
        ct_dataset_free(&test);
    }
    int run() {
        ct_error_clear(&err);
        return ct_train(&om.m, &train, &test, &opt, log, &sum, &err);
    }
};

// Replaces ds by a set of n items of `elems` bytes each, labels 0..9.
void reshape(ct_dataset *ds, int n, size_t elems) {
    ct_dataset_free(ds);
    *ds = synthetic_dataset(n, 1, 10, 5);
    free(ds->images);
    ds->images = calloc((size_t)n * elems, 1);
    ds->sample_elems = elems;
    ds->image_dims[0] = ds->image_dims[1] = 0;
}

}  // namespace

// A test set of narrower items than the model's input was read with the
// model's row stride: the test score was of rows spliced from two items.
TEST(TrainApi, ATestSetOfNarrowerItemsIsRefused) {
    Rig r;
    reshape(&r.test, 50, 32);
    EXPECT_EQ(r.run(), -1);
    EXPECT_EQ(r.err.code, CT_EXIT_BAD_INPUT);
    EXPECT_NE(std::string(r.err.msg).find("32 values"), std::string::npos) << r.err.msg;
    EXPECT_NE(std::string(r.err.msg).find("input is 64"), std::string::npos) << r.err.msg;
}

// Wider items were gathered past the end of the model's input buffer.
TEST(TrainApi, SetsOfWiderItemsAreRefused) {
    Rig r;
    reshape(&r.test, 50, 256);
    EXPECT_EQ(r.run(), -1);
    EXPECT_EQ(r.err.code, CT_EXIT_BAD_INPUT);
    Rig t;
    reshape(&t.train, 200, 256);
    EXPECT_EQ(t.run(), -1);
    EXPECT_EQ(t.err.code, CT_EXIT_BAD_INPUT);
    EXPECT_NE(std::string(t.err.msg).find("256 values"), std::string::npos) << t.err.msg;
}

// An element type that is neither bytes nor floats sized nothing right.
TEST(TrainApi, AnUnknownElementTypeIsRefused) {
    Rig r;
    r.train.elem_type = (ct_elem_type)7;
    EXPECT_EQ(r.run(), -1);
    EXPECT_EQ(r.err.code, CT_EXIT_BAD_INPUT);
}

// max_label is a field the caller fills; the label check trusted it and let
// label 200 through to the loss, whose NaN rows the run then blamed on the
// learning rate (NONFINITE_LOSS, "lower the learning rate").
TEST(TrainApi, ALabelPastTheOutputIsRefusedWhateverMaxLabelSays) {
    Rig r;
    r.train.labels[5] = 200;
    r.train.max_label = 0;
    EXPECT_EQ(r.run(), -1);
    EXPECT_EQ(r.err.code, CT_EXIT_BAD_INPUT);
    EXPECT_NE(std::string(r.err.msg).find("label 200 at index 5"), std::string::npos) << r.err.msg;
    Rig t;
    t.test.labels[7] = 10;
    t.test.max_label = 9;
    EXPECT_EQ(t.run(), -1);
    EXPECT_NE(std::string(t.err.msg).find("label 10 at index 7"), std::string::npos) << t.err.msg;
}

// The test set is optional: NULL trains without evaluating (it was read
// unconditionally, a NULL dereference even with evaluate off).
TEST(TrainApi, NoTestSetTrainsWithoutEvaluating) {
    Rig r;
    r.opt.epochs = 2;
    ct_error_clear(&r.err);
    ASSERT_EQ(ct_train(&r.om.m, &r.train, nullptr, &r.opt, r.log, &r.sum, &r.err), CT_EXIT_OK) << r.err.msg;
    EXPECT_EQ(r.sum.steps, 2u * 7u);  // ceil(200 / 32) = 7 steps an epoch
    EXPECT_EQ(r.sum.epochs, 2u);
    EXPECT_TRUE(std::isnan(r.sum.test_acc));
    // A target accuracy without an evaluation could never be reached: the
    // run would go on to its last epoch without a word.
    r.opt.target_acc = 0.5;
    EXPECT_EQ(ct_train(&r.om.m, &r.train, nullptr, &r.opt, r.log, &r.sum, &r.err), -1);
    EXPECT_EQ(r.err.code, CT_EXIT_USAGE);
    r.opt.evaluate = 0;
    EXPECT_EQ(r.run(), -1);
    EXPECT_EQ(r.err.code, CT_EXIT_USAGE);
    r.opt.evaluate = 1;
    r.test.count = 0;
    EXPECT_EQ(r.run(), -1);
    EXPECT_NE(std::string(r.err.msg).find("test set is empty"), std::string::npos) << r.err.msg;
}

// The model, the options, the logger and the summary are required: a NULL
// one is an error, not a crash (a caller that wants no logs opens a quiet
// logger with no paths). err may be NULL.
TEST(TrainApi, MissingRequiredPointersAreErrors) {
    Rig r;
    ct_error &e = r.err;
    EXPECT_EQ(ct_train(&r.om.m, &r.train, &r.test, &r.opt, nullptr, &r.sum, &e), -1);
    EXPECT_EQ(e.code, CT_EXIT_USAGE);
    EXPECT_NE(std::string(e.msg).find("logger"), std::string::npos) << e.msg;
    ct_error_clear(&e);
    EXPECT_EQ(ct_train(&r.om.m, &r.train, &r.test, nullptr, r.log, &r.sum, &e), -1);
    EXPECT_EQ(e.code, CT_EXIT_USAGE);
    ct_error_clear(&e);
    EXPECT_EQ(ct_train(&r.om.m, &r.train, &r.test, &r.opt, r.log, nullptr, &e), -1);
    EXPECT_EQ(e.code, CT_EXIT_USAGE);
    ct_error_clear(&e);
    EXPECT_EQ(ct_train(nullptr, &r.train, &r.test, &r.opt, r.log, &r.sum, &e), -1);
    EXPECT_EQ(e.code, CT_EXIT_USAGE);
    ct_error_clear(&e);
    EXPECT_EQ(ct_train(&r.om.m, nullptr, &r.test, &r.opt, r.log, &r.sum, &e), -1);
    EXPECT_EQ(e.code, CT_EXIT_USAGE);
    EXPECT_EQ(ct_train(&r.om.m, &r.train, &r.test, &r.opt, r.log, &r.sum, nullptr), CT_EXIT_OK);
}

// Each ct_train is a run of its own: step 1, epoch 1, the schedule from its
// start, and the optimizer's state from zero, on the weights the model holds.
// The state used to carry over while the counters restarted, so the second
// run's checkpoint held Adam's t = 14 at step 7 and its resume was refused
// as corrupt ("optim.t is 14, but 7 steps ... make 7 updates").
TEST(TrainApi, ASecondRunIsAFreshRunFromTheWeightsItFinds) {
    TempDir dir;
    const std::string ckpt = dir.file("second.safetensors");
    Rig r;
    ASSERT_EQ(r.run(), CT_EXIT_OK) << r.err.msg;
    std::vector<float> after_first(r.om.m.n_params), twice(r.om.m.n_params), fresh(r.om.m.n_params);
    ct_model_get_params(&r.om.m, after_first.data());
    r.opt.save_path = ckpt.c_str();
    ASSERT_EQ(r.run(), CT_EXIT_OK) << r.err.msg;
    ct_model_get_params(&r.om.m, twice.data());

    // The same as a new model given the first run's weights and trained once.
    Rig f;
    ct_model_set_params(&f.om.m, after_first.data());
    ASSERT_EQ(f.run(), CT_EXIT_OK) << f.err.msg;
    ct_model_get_params(&f.om.m, fresh.data());
    EXPECT_EQ(0, memcmp(twice.data(), fresh.data(), twice.size() * sizeof(float)));

    // And its checkpoint resumes.
    Rig g;
    ct_train_state st;
    EXPECT_EQ(ct_train_load_checkpoint(&g.om.m, &g.train, &g.opt, ckpt.c_str(), &st, &g.err), 0) << g.err.msg;
    EXPECT_EQ(st.step, 7u);
    EXPECT_EQ(st.optim_t, 7u);
}

// Options zeroed rather than taken from ct_train_defaults: no epochs used
// to "complete" with 0 steps and no word of why.
TEST(TrainApi, NoEpochsIsAnError) {
    Rig r;
    r.opt.epochs = 0;
    EXPECT_EQ(r.run(), -1);
    EXPECT_EQ(r.err.code, CT_EXIT_USAGE);
    EXPECT_NE(std::string(r.err.msg).find("epochs"), std::string::npos) << r.err.msg;
    r.opt.epochs = -3;
    EXPECT_EQ(r.run(), -1);
    EXPECT_EQ(r.err.code, CT_EXIT_USAGE);
    ct_train_options zero{};
    zero.batch_size = 32;
    zero.drain_every = 8;
    r.opt = zero;
    EXPECT_EQ(r.run(), -1);
    EXPECT_EQ(r.err.code, CT_EXIT_USAGE);
}

// train.h: "opt->seed must be the checkpoint's". Another seed reshuffled the
// resumed epochs, so the resume no longer gave the records of the run it
// continues, without a word.
TEST(TrainApi, AResumeWithAnotherSeedIsRefused) {
    TempDir dir;
    const std::string ckpt = dir.file("c.safetensors");
    Rig r;
    r.opt.save_path = ckpt.c_str();
    r.opt.max_steps = 3;
    ASSERT_EQ(r.run(), CT_EXIT_OK) << r.err.msg;
    Rig g;
    ct_train_state st;
    ASSERT_EQ(ct_train_load_checkpoint(&g.om.m, &g.train, &g.opt, ckpt.c_str(), &st, &g.err), 0) << g.err.msg;
    g.opt.resume = &st;
    g.opt.seed = st.seed + 1;
    EXPECT_EQ(g.run(), -1);
    EXPECT_EQ(g.err.code, CT_EXIT_USAGE);
    EXPECT_NE(std::string(g.err.msg).find("seed"), std::string::npos) << g.err.msg;
    g.opt.seed = st.seed;
    EXPECT_EQ(g.run(), CT_EXIT_OK) << g.err.msg;
    EXPECT_EQ(g.sum.steps, 7u);
}

// A refused checkpoint leaves the model as it was: the checks of the run's
// settings came after the weights and optimizer state were loaded, so a
// caller that fell back to training afresh trained from the refused
// checkpoint's weights.
TEST(TrainApi, ARefusedCheckpointLeavesTheModelAlone) {
    TempDir dir;
    const std::string ckpt = dir.file("c.safetensors");
    Rig r;
    r.opt.save_path = ckpt.c_str();
    ASSERT_EQ(r.run(), CT_EXIT_OK) << r.err.msg;
    Rig g;
    std::vector<float> before(g.om.m.n_params), after(g.om.m.n_params);
    ct_model_get_params(&g.om.m, before.data());
    g.opt.batch_size = 16;
    ct_train_state st;
    EXPECT_EQ(ct_train_load_checkpoint(&g.om.m, &g.train, &g.opt, ckpt.c_str(), &st, &g.err), -1);
    EXPECT_NE(std::string(g.err.msg).find("batch size 32"), std::string::npos) << g.err.msg;
    ct_model_get_params(&g.om.m, after.data());
    EXPECT_EQ(0, memcmp(before.data(), after.data(), before.size() * sizeof(float)));
    uint64_t t = 1;
    g.om.be->ops->download(g.om.be, &t, g.om.m.opt_t, sizeof t);
    EXPECT_EQ(t, 0u);
}

// ... and so does every optimizer's state, of 0, 1 or 2 slots, with its
// update count: a model that has trained keeps its own moments for a caller
// that goes on without the refused checkpoint.
TEST(TrainApi, ARefusedCheckpointLeavesEveryOptimizersStateAlone) {
    struct Kind {
        ct_optimizer_kind kind;
        float momentum;
        int slots;
    };
    const Kind kinds[] = {{CT_OPT_SGD, 0.0f, 0},     {CT_OPT_SGD, 0.9f, 1}, {CT_OPT_RMSPROP, 0.0f, 1},
                          {CT_OPT_RMSPROP, 0.9f, 2}, {CT_OPT_ADAM, 0.0f, 2}, {CT_OPT_ADAMW, 0.0f, 2}};
    for (const Kind &k : kinds) {
        ct_optim_config oc = ct_optim_defaults(k.kind);
        if (k.kind == CT_OPT_SGD || k.kind == CT_OPT_RMSPROP) oc.momentum = k.momentum;
        SCOPED_TRACE(std::string(ct_optim_kind_name(k.kind)) + " momentum " + std::to_string(k.momentum));
        TempDir dir;
        const std::string ckpt = dir.file("c.safetensors");
        Rig w(&oc);
        w.opt.save_path = ckpt.c_str();
        w.opt.max_steps = 3;
        ASSERT_EQ(w.run(), CT_EXIT_OK) << w.err.msg;
        Rig g(&oc);  // trained further than the checkpoint: other weights, state and count
        g.opt.max_steps = 5;
        ASSERT_EQ(g.run(), CT_EXIT_OK) << g.err.msg;
        const size_t n = g.om.m.n_params, slots = (size_t)ct_optim_state_slots(&g.om.m.spec.optim);
        ASSERT_EQ(slots, (size_t)k.slots);
        ct_backend *be = g.om.be;
        std::vector<float> before((1 + slots) * n), after((1 + slots) * n);
        uint64_t t_before = 0, t_after = 0;
        ct_model_get_params(&g.om.m, before.data());
        if (slots) be->ops->download(be, before.data() + n, g.om.m.opt_state, slots * n * sizeof(float));
        be->ops->download(be, &t_before, g.om.m.opt_t, sizeof t_before);
        ASSERT_EQ(t_before, 5u);
        g.opt.batch_size = 16;
        ct_train_state st;
        EXPECT_EQ(ct_train_load_checkpoint(&g.om.m, &g.train, &g.opt, ckpt.c_str(), &st, &g.err), -1);
        EXPECT_NE(std::string(g.err.msg).find("batch size 32"), std::string::npos) << g.err.msg;
        ct_model_get_params(&g.om.m, after.data());
        if (slots) be->ops->download(be, after.data() + n, g.om.m.opt_state, slots * n * sizeof(float));
        be->ops->download(be, &t_after, g.om.m.opt_t, sizeof t_after);
        EXPECT_EQ(0, memcmp(before.data(), after.data(), before.size() * sizeof(float)));
        EXPECT_EQ(t_after, 5u);
    }
}

// epochs and max_steps count the whole run, across resumes: limits the
// checkpoint is already past ended the resumed run at once, "completed"
// with nothing done (the command refused them; the library did not).
TEST(TrainApi, AResumePastItsLimitsIsRefused) {
    TempDir dir;
    const std::string ckpt = dir.file("c.safetensors");
    Rig r;
    r.opt.save_path = ckpt.c_str();
    r.opt.epochs = 2;
    ASSERT_EQ(r.run(), CT_EXIT_OK) << r.err.msg;  // 14 steps, past epoch 2
    Rig g;
    ct_train_state st;
    ASSERT_EQ(ct_train_load_checkpoint(&g.om.m, &g.train, &g.opt, ckpt.c_str(), &st, &g.err), 0) << g.err.msg;
    g.opt.resume = &st;
    g.opt.epochs = 1;
    EXPECT_EQ(g.run(), -1);
    EXPECT_EQ(g.err.code, CT_EXIT_USAGE);
    EXPECT_NE(std::string(g.err.msg).find("past epoch 2"), std::string::npos) << g.err.msg;
    g.opt.epochs = 3;
    g.opt.max_steps = 10;
    EXPECT_EQ(g.run(), -1);
    EXPECT_EQ(g.err.code, CT_EXIT_USAGE);
    EXPECT_NE(std::string(g.err.msg).find("step 14"), std::string::npos) << g.err.msg;
    g.opt.max_steps = 0;
    ASSERT_EQ(g.run(), CT_EXIT_OK) << g.err.msg;
    EXPECT_EQ(g.sum.steps, 21u);
}

// NULL where a pointer is required, in the calls that start a program's
// use of the library: an error naming what is missing, not a crash.
TEST(TrainApi, RequiredPointersOfTheSetupCallsAreChecked) {
    ct_error err;
    ct_error_clear(&err);
    ct_log_options lo{};
    lo.quiet = 1;
    lo.n_layers = 2;  // names for two layers, but no names
    EXPECT_EQ(ct_logger_open(&lo, &err), nullptr);
    EXPECT_EQ(err.code, CT_EXIT_USAGE);
    EXPECT_NE(std::string(err.msg).find("layer_names"), std::string::npos) << err.msg;
    ct_error_clear(&err);
    EXPECT_EQ(ct_logger_open(nullptr, &err), nullptr);
    EXPECT_EQ(err.code, CT_EXIT_USAGE);

    ct_dataset ds;
    ct_error_clear(&err);
    EXPECT_EQ(ct_dataset_load(nullptr, "labels", &ds, &err), -1);
    EXPECT_EQ(err.code, CT_EXIT_USAGE);

    ct_model_spec s = synthetic_spec("api", CT_ACT_SOFTMAX, CT_LOSS_XENT);
    ct_model m;
    ct_error_clear(&err);
    EXPECT_EQ(ct_model_build(&m, &s, nullptr, 64, 1, &err), -1);
    EXPECT_EQ(err.code, CT_EXIT_USAGE);
    ct_model_free(&m);  // a failed build leaves a model that frees as empty
}
