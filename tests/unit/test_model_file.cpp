// The model-file format and the presets.
#include <gtest/gtest.h>

#include "support/fixtures.h"

using namespace ct_test;

namespace {

struct Parsed {
    int rc;
    ct_model_spec spec;
    ct_error err;
};

Parsed parse_text(const TempDir &dir, const std::string &text) {
    std::string path = dir.file("model.txt");
    write_text(path, text);
    Parsed p;
    ct_error_clear(&p.err);
    p.rc = ct_model_spec_parse_file(path.c_str(), &p.spec, &p.err);
    return p;
}

TEST(ModelFile, ParsesAKerasStyleFile) {
    TempDir dir;
    Parsed p = parse_text(dir,
                          "# an MLP\n"
                          "input 784\n"
                          "dense 256 activation=relu\n"
                          "dropout 0.2\n"
                          "dense 64 tanh name=hidden\n"
                          "dense 10 softmax   # output\n"
                          "loss sparse_categorical_crossentropy\n"
                          "optimizer sgd lr=0.05 momentum=0.9 nesterov=1 clipnorm=2\n"
                          "init he_normal\n"
                          "batch_size 64\n");
    ASSERT_EQ(p.rc, 0) << p.err.msg;
    EXPECT_EQ(p.spec.input_dim, 784);
    ASSERT_EQ(p.spec.n_layers, 4);
    EXPECT_EQ(p.spec.layers[0].kind, CT_LAYER_DENSE);
    EXPECT_EQ(p.spec.layers[0].units, 256);
    EXPECT_EQ(p.spec.layers[0].act, CT_ACT_RELU);
    EXPECT_STREQ(p.spec.layers[0].name, "dense1");
    EXPECT_EQ(p.spec.layers[1].kind, CT_LAYER_DROPOUT);
    EXPECT_FLOAT_EQ(p.spec.layers[1].rate, 0.2f);
    EXPECT_STREQ(p.spec.layers[1].name, "dropout1");
    EXPECT_STREQ(p.spec.layers[2].name, "hidden");
    EXPECT_EQ(p.spec.layers[2].act, CT_ACT_TANH);
    EXPECT_STREQ(p.spec.layers[3].name, "dense3");
    EXPECT_EQ(p.spec.layers[3].act, CT_ACT_SOFTMAX);
    EXPECT_EQ(p.spec.loss, CT_LOSS_XENT);
    EXPECT_EQ(p.spec.optim.kind, CT_OPT_SGD);
    EXPECT_FLOAT_EQ(p.spec.optim.lr, 0.05f);
    EXPECT_FLOAT_EQ(p.spec.optim.momentum, 0.9f);
    EXPECT_EQ(p.spec.optim.nesterov, 1);
    EXPECT_FLOAT_EQ(p.spec.optim.clip_norm, 2.0f);
    EXPECT_EQ(p.spec.init, CT_INIT_HE_NORMAL);
    EXPECT_EQ(p.spec.batch_size, 64);
}

TEST(ModelFile, DefaultsAreKeras) {
    TempDir dir;
    Parsed p = parse_text(dir, "input 4\ndense 3 softmax\n");
    ASSERT_EQ(p.rc, 0) << p.err.msg;
    EXPECT_EQ(p.spec.optim.kind, CT_OPT_ADAM);
    EXPECT_FLOAT_EQ(p.spec.optim.lr, 1e-3f);
    EXPECT_EQ(p.spec.batch_size, 32);
    EXPECT_EQ(p.spec.loss, CT_LOSS_XENT);
    EXPECT_EQ(p.spec.init, CT_INIT_GLOROT_UNIFORM);
}

// A UTF-8 byte-order mark first in the file (as some Windows editors write
// one) is not part of the first word; elsewhere it is nothing special.
TEST(ModelFile, AByteOrderMarkFirstIsSkipped) {
    TempDir dir;
    Parsed p = parse_text(dir, "\xEF\xBB\xBFinput 4\r\ndense 3 softmax\r\n");
    ASSERT_EQ(p.rc, 0) << p.err.msg;
    EXPECT_EQ(p.spec.input_dim, 4);
    p = parse_text(dir, "input 4\n\xEF\xBB\xBF" "dense 3 softmax\n");
    EXPECT_NE(p.rc, 0);
    EXPECT_NE(std::string(p.err.msg).find(":2: unknown directive"), std::string::npos) << p.err.msg;
}

struct BadCase {
    std::string text;
    const char *needle;  // must appear in the message
};

TEST(ModelFile, RejectsBadFilesNamingLineAndProblem) {
    const BadCase cases[] = {
        {"dense 10 softmax\n", "no 'input SIZE' line"},
        {"input 784\n", "no layers"},
        {"input 784\ninput 784\ndense 10 softmax\n", ":2: input: given twice"},
        {"input -3\ndense 10 softmax\n", ":1: input size"},
        {"input 784\ndense ten softmax\n", ":2: dense units"},
        {"input 784\ndense 10 swish\n", ":2: dense: unknown activation 'swish'"},
        {"input 784\ndropout 1.5\ndense 10 softmax\n", ":2: dropout"},
        {"input 784\ndense 10 softmax\nloss hinge\n", ":3: loss: unknown loss 'hinge'"},
        {"input 784\ndense 10 softmax\noptimizer adagrad\n", ":3: optimizer: unknown optimizer 'adagrad'"},
        {"input 784\ndense 10 softmax\noptimizer adam lr=-1\n", ":3: optimizer: lr=-1 is out of range"},
        {"input 784\ndense 10 softmax\noptimizer adam lr=nan\n", ":3: optimizer: lr: expected a number"},
        {"input 784\ndense 10 softmax\noptimizer adam frobnicate=1\n", "unknown setting 'frobnicate'"},
        {"input 784\ndense 10 softmax\nbatch_size 0\n", ":3: batch_size"},
        {"input 784\ndense 10 softmax\nlstm 32\n", ":3: unknown directive 'lstm'"},
        {"input 784\nconv2d 32 3 relu\nflatten\ndense 10 softmax\n", "conv2d needs a C x H x W input"},
        {"input 1 28 28\nconv2d 32 3 relu\ndense 10 softmax\n", "add a flatten layer"},
        {"input 1 4 4\nconv2d 8 5\nflatten\ndense 10 softmax\n", "a 5x5 kernel does not fit its 4x4 input"},
        {"input 1 28 28\nconv2d 8 3x\nflatten\ndense 10 softmax\n", ":2: conv2d: kernel"},
        {"input 1 28 28\nmaxpool2d 0\nflatten\ndense 10 softmax\n", ":2: maxpool2d"},
        {"input 1 28\ndense 10 softmax\n", ":1: input: expected"},
        {"input 784\ndense 10 softmax\ndropout 0.5\n", "the last layer must be dense"},
        {"input 784\ndense 1 sigmoid\n", "at least 2"},
        {"input 784\ndense 10 softmax\ndense 10 softmax\n", "softmax is only supported on the output layer"},
        {"input 784\ndense 10 softmax\noptimizer adam weight_decay=0.1\n", "weight_decay is only used by adamw"},
        // Layer names name the saved tensors and the JSONL's per-layer norms:
        // refused here, not by --save after the whole run.
        {"input 784\ndense 16 relu name=x\ndense 10 softmax name=x\n", "layers 1 and 2 are both named 'x'"},
        {"input 784\ndense 16 relu name=dense2\ndense 10 softmax\n", "layers 1 and 2 are both named 'dense2'"},
        {"input 784\ndense 16 relu name=" + std::string(32, 'a') + "\ndense 10 softmax\n", ":2: name: expected 1 to 31"},
        {"input 784\ndense 16 relu name=\ndense 10 softmax\n", ":2: name: expected 1 to 31"},
        {"input 784\ndense 16 relu name=a\xff\ndense 10 softmax\n", ":2: name: expected 1 to 31"},
        {"input 784\ndropout 0.1 name=a\"b\ndense 10 softmax\n", ":2: name: expected 1 to 31"},
        // Past what a step count can hold, or not whole (fuzz/corpus/model_file/crash-schedule-huge-step-size).
        {"input 784\ndense 10 softmax\nschedule step step_size=1e108\n", ":3: schedule: 'step_size=1e108' is not"},
        {"input 784\ndense 10 softmax\nschedule cosine total_steps=2.5\n", ":3: schedule: 'total_steps=2.5' is not"},
        {"input 784\ndense 10 softmax\nschedule cosine total_steps=18446744073709551616\n", "is not a known setting"},
        // Said twice, or said where nothing reads it: refused, not dropped.
        {"input 784\ndense 16 relu tanh\ndense 10 softmax\n", ":2: dense: two activations ('tanh' after 'relu')"},
        {"input 784\ndense 16 relu name=a name=b\ndense 10 softmax\n", ":2: dense: name given twice"},
        {"input 784\ndense 16 relu foo=1\ndense 10 softmax\n", ":2: dense: unknown setting 'foo=1'"},
        {"input 1 8 8\nconv2d 4 3 stride=1 stride=2\nflatten\ndense 10 softmax\n", ":2: conv2d: stride given twice"},
        {"input 1 8 8\nconv2d 4 3 dilation=2\nflatten\ndense 10 softmax\n", ":2: conv2d: unknown setting 'dilation=2'"},
        {"input 784\ndense 10 softmax\noptimizer adam lr=0.1 lr=0.2\n", ":3: optimizer: lr given twice"},
        {"input 784\ndense 10 softmax\noptimizer adam lr=1e-300\n",
         ":3: optimizer: lr=1e-300 is below what float32 can hold (it would be 0)"},
        {"input 784\ndense 10 softmax\noptimizer sgd momentum=1e-60\n",
         ":3: optimizer: momentum=1e-60 is below what float32 can hold (it would be 0)"},
        {"input 784\ndense 10 softmax\noptimizer adam lr=0.1 learning_rate=0.2\n",
         ":3: optimizer: learning_rate given twice (as lr and learning_rate, two names for one setting)"},
        {"input 784\ndense 10 softmax\noptimizer adam Epsilon=1e-7 EPS=1e-8\n", ":3: optimizer: EPS given twice"},
        {"input 784\ndense 10 softmax\noptimizer adam beta_1=0.8 beta1=0.9\n", ":3: optimizer: beta1 given twice"},
        {"input 784\ndense 10 softmax\noptimizer sgd clipnorm=1 global_clipnorm=2\n",
         ":3: optimizer: global_clipnorm given twice"},
        {"input 784\ndense 10 softmax\noptimizer sgd beta1=0.5\n", ":3: optimizer: sgd does not use beta1"},
        {"input 784\ndense 10 softmax\noptimizer rmsprop beta2=0.5\n", ":3: optimizer: rmsprop does not use beta2"},
        {"input 784\ndense 10 softmax\noptimizer adam momentum=0.9\n", ":3: optimizer: adam does not use momentum"},
        {"input 784\ndense 10 softmax\noptimizer sgd nesterov=1\n", ":3: optimizer: nesterov=1 needs momentum above 0"},
        {"input 784\ndense 10 softmax\noptimizer adam\noptimizer sgd\n", ":4: optimizer: given twice"},
        {"input 784\ndense 10 softmax\nloss mse\nloss mse\n", ":4: loss: given twice"},
        {"input 784\ndense 10 softmax\ninit he_normal\ninit he_uniform\n", ":4: init: given twice"},
        {"input 784\ndense 10 softmax\nbatch_size 8\nbatch_size 16\n", ":4: batch_size: given twice"},
        {"input 784\ndense 10 softmax\nschedule cosine\nschedule step\n", ":4: schedule: given twice"},
        {"input 784\ndense 10 softmax\nschedule cosine gamma=0.5\n",
         ":3: schedule: cosine has no setting gamma (its settings: total_steps final_frac)"},
        {"input 784\ndense 10 softmax\nschedule step gamma=0.5 gamma=0.2\n", ":3: schedule: gamma given twice"},
        {"input 784\ndense 10 softmax\nschedule constant pct=0.5\n", ":3: schedule: constant has no setting pct (its settings: none)"},
        {"input 784\ndense 10 softmax\nschedule cosine step_size=5\n", ":3: schedule: cosine has no setting step_size"},
        {"input 784\ndense 10 softmax\nschedule step total_steps=10\n", ":3: schedule: step has no setting total_steps"},
        {"input 784\ndense 10 softmax\nschedule step step_size=2 step_size=3\n", ":3: schedule: step_size given twice"},
        {"input 784\ndense 10 softmax\nschedule cosine total_steps=2 total_steps=3\n", ":3: schedule: total_steps given twice"},
        // "optim.*" is a checkpoint's optimizer state: a layer may not take the name.
        {"input 784\ndense 10 softmax name=optim\n", ":2: name: 'optim' is taken"},
    };
    TempDir dir;
    for (const BadCase &c : cases) {
        Parsed p = parse_text(dir, c.text);
        EXPECT_EQ(p.rc, -1) << c.text;
        EXPECT_EQ(p.err.code, CT_EXIT_BAD_INPUT) << c.text;
        EXPECT_NE(std::string(p.err.msg).find(dir.file("model.txt")), std::string::npos) << p.err.msg;
        EXPECT_NE(std::string(p.err.msg).find(c.needle), std::string::npos)
            << "text: " << c.text << "\nmessage: " << p.err.msg;
        EXPECT_EQ(std::string(p.err.msg).find('\n'), std::string::npos);
    }
}

TEST(ModelFile, MissingFileAndDirectoryAreErrors) {
    TempDir dir;
    ct_model_spec spec;
    ct_error err;
    ct_error_clear(&err);
    EXPECT_EQ(ct_model_spec_resolve(dir.file("nope.txt").c_str(), &spec, &err), -1);
    EXPECT_NE(std::string(err.msg).find("no such model preset or file"), std::string::npos) << err.msg;
    EXPECT_EQ(ct_model_spec_parse_file(dir.path().c_str(), &spec, &err), -1);
    EXPECT_NE(std::string(err.msg).find("not a regular model file"), std::string::npos) << err.msg;
}

TEST(ModelFile, BinaryGarbageIsRejected) {
    TempDir dir;
    std::vector<uint8_t> junk = {0x1f, 0x8b, 0x08, 0x00, 0xff, 0x00, 0x13, 0x37, '\n'};
    write_file(dir.file("junk"), junk);
    ct_model_spec spec;
    ct_error err;
    ct_error_clear(&err);
    EXPECT_EQ(ct_model_spec_parse_file(dir.file("junk").c_str(), &spec, &err), -1);
    EXPECT_NE(std::string(err.msg).find(dir.file("junk")), std::string::npos);
}

// A NUL byte hides the rest of its line from C string functions: a line
// that reads as valid up to the NUL must still be refused, not truncated.
TEST(ModelFile, NulByteInAValidLookingLineIsRejected) {
    TempDir dir;
    std::string text = std::string("input 784\ndense 10 softmax") + '\0' + "extra words\n";
    write_text(dir.file("nul.txt"), text);
    ct_model_spec spec;
    ct_error err;
    ct_error_clear(&err);
    EXPECT_EQ(ct_model_spec_parse_file(dir.file("nul.txt").c_str(), &spec, &err), -1);
    EXPECT_EQ(err.code, CT_EXIT_BAD_INPUT);
    EXPECT_NE(std::string(err.msg).find(dir.file("nul.txt") + ":2: binary data"), std::string::npos) << err.msg;
}

TEST(Presets, MatchDesign) {
    ct_model_spec s;
    ASSERT_EQ(ct_model_spec_preset("seed", &s), 0);
    ASSERT_EQ(s.n_layers, 2);
    EXPECT_EQ(s.input_dim, 784);
    EXPECT_EQ(s.layers[0].units, 10);
    EXPECT_EQ(s.layers[0].act, CT_ACT_RELU);
    EXPECT_EQ(s.layers[1].units, 10);
    EXPECT_EQ(s.layers[1].act, CT_ACT_SOFTMAX);
    EXPECT_EQ(s.batch_size, 32);
    EXPECT_EQ(s.optim.kind, CT_OPT_ADAM);
    EXPECT_FLOAT_EQ(s.optim.lr, 1e-3f);

    ASSERT_EQ(ct_model_spec_preset("mlp", &s), 0);
    ASSERT_EQ(s.n_layers, 3);
    EXPECT_EQ(s.layers[0].units, 512);
    EXPECT_EQ(s.layers[1].units, 512);
    EXPECT_EQ(s.layers[2].units, 10);
    EXPECT_EQ(s.batch_size, 128);
    EXPECT_EQ(ct_model_spec_classes(&s), 10);

    EXPECT_EQ(ct_model_spec_preset("resnet", &s), -1);
}

TEST(Presets, ParameterCountsAreTheTextbookOnes) {
    ct_backend *be = ct_backend_cpu_create(1, nullptr);
    ASSERT_NE(be, nullptr);
    ct_model_spec s;
    ct_model m;
    ct_error err;
    ASSERT_EQ(ct_model_spec_preset("mlp", &s), 0);
    ASSERT_EQ(ct_model_build(&m, &s, be, 4, 0, &err), 0) << err.msg;
    EXPECT_EQ(m.n_params, (size_t)(784 * 512 + 512 + 512 * 512 + 512 + 512 * 10 + 10));
    EXPECT_EQ(m.n_param_layers, 3);
    ct_model_free(&m);
    ASSERT_EQ(ct_model_spec_preset("seed", &s), 0);
    ASSERT_EQ(ct_model_build(&m, &s, be, 4, 0, &err), 0) << err.msg;
    EXPECT_EQ(m.n_params, (size_t)(784 * 10 + 10 + 10 * 10 + 10));
    ct_model_free(&m);
    ct_backend_destroy(be);
}

}  // namespace
