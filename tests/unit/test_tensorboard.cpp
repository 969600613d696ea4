// The TensorBoard sink (src/log/tensorboard.c, src/log/tfevents.c): the wire
// format against known answers from real TensorFlow files, and a training
// run's event file read back by a decoder written here from the format's
// definition (its own bitwise CRC-32C, its own protobuf walk), record for
// record against the run's JSONL.
#include <gtest/gtest.h>

#include <dirent.h>
#include <sys/stat.h>

#include <cmath>
#include <cstring>
#include <functional>
#include <stdexcept>
#include <map>
#include <string>
#include <vector>

#include "support/fixtures.h"

extern "C" {
#include "src/log/tfevents.h"
}

using namespace ct_test;

namespace {

std::vector<uint8_t> bytes(const char *s, size_t n) { return std::vector<uint8_t>(s, s + n); }

// ---- a reader, independent of the writer ----------------------------------

uint32_t crc32c_bitwise(const uint8_t *p, size_t n) {
    uint32_t c = 0xffffffffu;
    for (size_t i = 0; i < n; ++i) {
        c ^= p[i];
        for (int k = 0; k < 8; ++k) c = (c & 1u) ? (c >> 1) ^ 0x82f63b78u : c >> 1;
    }
    return ~c;
}

uint32_t masked(const uint8_t *p, size_t n) {
    uint32_t c = crc32c_bitwise(p, n);
    return ((c >> 15) | (c << 17)) + 0xa282ead8u;
}

uint64_t le(const uint8_t *p, int n) {
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; --i) v = (v << 8) | p[i];
    return v;
}

struct Field {
    unsigned number, wire;
    uint64_t scalar;              // varint, or the raw bits of a fixed32/fixed64
    std::vector<uint8_t> payload;  // length-delimited
};

// One protobuf message's fields, in order; throws on a malformed message.
std::vector<Field> fields_of(const std::vector<uint8_t> &m) {
    std::vector<Field> out;
    size_t i = 0;
    auto varint = [&]() {
        uint64_t v = 0;
        for (int shift = 0;; shift += 7) {
            if (i >= m.size() || shift > 63) throw std::runtime_error("bad varint");
            uint8_t b = m[i++];
            v |= (uint64_t)(b & 0x7f) << shift;
            if (!(b & 0x80)) return v;
        }
    };
    while (i < m.size()) {
        uint64_t key = varint();
        Field f{(unsigned)(key >> 3), (unsigned)(key & 7), 0, {}};
        if (f.wire == 0) {
            f.scalar = varint();
        } else if (f.wire == 1 || f.wire == 5) {
            size_t n = f.wire == 1 ? 8 : 4;
            if (m.size() - i < n) throw std::runtime_error("short fixed field");
            f.scalar = le(m.data() + i, (int)n);
            i += n;
        } else if (f.wire == 2) {
            uint64_t n = varint();
            if (m.size() - i < n) throw std::runtime_error("short length-delimited field");
            f.payload.assign(m.begin() + (long)i, m.begin() + (long)(i + n));
            i += n;
        } else {
            throw std::runtime_error("unexpected wire type");
        }
        out.push_back(f);
    }
    return out;
}

std::string text_of(const std::vector<uint8_t> &p) { return std::string(p.begin(), p.end()); }

struct Value {
    std::string tag;
    bool scalar = false;
    float simple = NAN;
    std::string plugin, text;
    int dtype = -1, data_class = 0;
    std::vector<uint64_t> shape;
};

struct Event {
    double wall_time = NAN;
    uint64_t step = 0;
    std::string file_version;
    std::vector<Value> values;
    const Value *find(const std::string &tag) const {
        for (const Value &v : values)
            if (v.tag == tag) return &v;
        return nullptr;
    }
};

Value value_of(const std::vector<uint8_t> &m) {
    Value v;
    for (const Field &f : fields_of(m)) {
        if (f.number == 1) v.tag = text_of(f.payload);
        if (f.number == 2 && f.wire == 5) {
            uint32_t bits = (uint32_t)f.scalar;
            memcpy(&v.simple, &bits, 4);
            v.scalar = true;
        }
        if (f.number == 9)
            for (const Field &g : fields_of(f.payload)) {
                if (g.number == 1)
                    for (const Field &h : fields_of(g.payload))
                        if (h.number == 1) v.plugin = text_of(h.payload);
                if (g.number == 4) v.data_class = (int)g.scalar;
            }
        if (f.number == 8)
            for (const Field &g : fields_of(f.payload)) {
                if (g.number == 1) v.dtype = (int)g.scalar;
                if (g.number == 2)
                    for (const Field &dim : fields_of(g.payload))
                        if (dim.number == 2)
                            for (const Field &size : fields_of(dim.payload))
                                if (size.number == 1) v.shape.push_back(size.scalar);
                if (g.number == 8) v.text = text_of(g.payload);
            }
    }
    return v;
}

Event event_of(const std::vector<uint8_t> &m) {
    Event e;
    for (const Field &f : fields_of(m)) {
        if (f.number == 1 && f.wire == 1) memcpy(&e.wall_time, &f.scalar, 8);
        if (f.number == 2) e.step = f.scalar;
        if (f.number == 3) e.file_version = text_of(f.payload);
        if (f.number == 5)
            for (const Field &g : fields_of(f.payload))
                if (g.number == 1) e.values.push_back(value_of(g.payload));
    }
    return e;
}

// Every record of an event file, each checked against its two CRCs.
std::vector<Event> read_events(const std::string &path) {
    std::vector<uint8_t> b = read_file(path);
    std::vector<Event> out;
    size_t i = 0;
    while (i < b.size()) {
        if (b.size() - i < 12) throw std::runtime_error("truncated record header");
        uint64_t n = le(&b[i], 8);
        if ((uint32_t)le(&b[i + 8], 4) != masked(&b[i], 8)) throw std::runtime_error("bad length CRC");
        if (b.size() - i - 12 < n + 4) throw std::runtime_error("truncated record");
        const uint8_t *data = &b[i + 12];
        if ((uint32_t)le(data + n, 4) != masked(data, n)) throw std::runtime_error("bad data CRC");
        out.push_back(event_of(std::vector<uint8_t>(data, data + n)));
        i += 12 + n + 4;
    }
    return out;
}

std::vector<std::string> event_files(const std::string &dir) {
    std::vector<std::string> out;
    if (DIR *d = opendir(dir.c_str())) {
        while (struct dirent *e = readdir(d))
            if (strstr(e->d_name, "tfevents")) out.push_back(dir + "/" + e->d_name);
        closedir(d);
    }
    return out;
}

// ---- the wire format -------------------------------------------------------

TEST(TfEvents, Crc32cMatchesPublishedCheckValues) {
    EXPECT_EQ(ct_crc32c("123456789", 9), 0xe3069283u);  // the CRC catalogue's check value
    std::vector<uint8_t> zeros(32, 0);
    EXPECT_EQ(ct_crc32c(zeros.data(), zeros.size()), 0x8a9136aau);  // RFC 3720, B.4
    // The masked CRC of the Event{file_version: "CRC test, one two"} in a file TensorFlow wrote.
    EXPECT_EQ(ct_tfrecord_masked_crc("\x1a\x11" "CRC test, one two", 19), 0x5794d08au);
    std::vector<uint8_t> any(1000);
    for (size_t i = 0; i < any.size(); ++i) any[i] = (uint8_t)(i * 7 + 3);
    EXPECT_EQ(ct_crc32c(any.data(), any.size()), crc32c_bitwise(any.data(), any.size()));
}

std::vector<uint8_t> written(const std::function<void(FILE *)> &write) {
    TempDir dir;
    std::string path = dir.file("f");
    FILE *f = fopen(path.c_str(), "wb");
    write(f);
    fclose(f);
    return read_file(path);
}

// The bytes of an event file written by TensorFlow's own protobuf and
// record writer (the serialisation test of the tensorboard_logger package):
// the file_version event and two scalars, all at wall time 256.5.
TEST(TfEvents, ScalarEventsAreByteIdenticalToTensorFlows) {
    const char ref[] =
        "\x18\x00\x00\x00\x00\x00\x00\x00\xa3\x7fK\"\t\x00\x00\x00\x00\x00\x08p@\x1a\rbrain.Event:2\xbc\x98!+"
        "\x19\x00\x00\x00\x00\x00\x00\x00\x8b\xf1\x08(\t\x00\x00\x00\x00\x00\x08p@\x10\x01*\x0c\n\n\n\x03v/1"
        "\x15\x00\x00\xc0?,\xec\xc0\x87"
        "\x1a\x00\x00\x00\x00\x00\x00\x00\x12\x9b\xd8-\t\x00\x00\x00\x00\x00\x08p@\x10\x02*\r\n\x0b\n\x04v/22"
        "\x15\x00\x00\x80" "A\x8f\xa3\xb6\x88";
    auto got = written([](FILE *f) {
        ct_pb e, s;
        ct_pb_reset(&e);
        ct_tb_event(&e, 256.5, 0, nullptr);
        ASSERT_EQ(ct_tfrecord_write(f, &e), 0);
        const std::pair<const char *, float> scalars[] = {{"v/1", 1.5f}, {"v/22", 16.0f}};
        for (uint64_t step = 1; step <= 2; ++step) {
            ct_pb_reset(&e);
            ct_pb_reset(&s);
            ct_tb_scalar_value(&s, scalars[step - 1].first, scalars[step - 1].second);
            ct_tb_event(&e, 256.5, step, &s);
            ASSERT_EQ(ct_tfrecord_write(f, &e), 0);
        }
    });
    EXPECT_EQ(got, bytes(ref, sizeof ref - 1));
}

// The form PyTorch's SummaryWriter.add_text writes (its expected proto in
// PyTorch's tests): a DT_STRING tensor of shape [1] for the plugin "text".
TEST(TfEvents, TextSummaryIsAStringTensorForTheTextPlugin) {
    auto got = written([](FILE *f) {
        ct_pb e, s;
        ct_pb_reset(&e);
        ct_pb_reset(&s);
        ct_tb_text_value(&s, "diagnosis/X", "warning [X]: a sentence");
        ct_tb_event(&e, 1.0, 12, &s);
        ASSERT_EQ(ct_tfrecord_write(f, &e), 0);
    });
    TempDir dir;
    write_file(dir.file("e"), got);
    auto ev = read_events(dir.file("e"));
    ASSERT_EQ(ev.size(), 1u);
    EXPECT_EQ(ev[0].step, 12u);
    ASSERT_EQ(ev[0].values.size(), 1u);
    const Value &v = ev[0].values[0];
    EXPECT_EQ(v.tag, "diagnosis/X");
    EXPECT_EQ(v.plugin, "text");
    EXPECT_EQ(v.dtype, 7);  // DT_STRING
    EXPECT_EQ(v.shape, std::vector<uint64_t>{1});
    EXPECT_EQ(v.data_class, 2);  // DATA_CLASS_TENSOR
    EXPECT_EQ(v.text, "warning [X]: a sentence");
    EXPECT_FALSE(v.scalar);
}

// A message that does not fit its buffer is refused whole, never written cut.
TEST(TfEvents, AnOverflowingMessageIsNotWritten) {
    auto got = written([](FILE *f) {
        ct_pb e, s;
        ct_pb_reset(&e);
        ct_pb_reset(&s);
        std::string tag(sizeof s.buf, 't');
        ct_tb_scalar_value(&s, tag.c_str(), 1.0f);
        EXPECT_TRUE(s.overflow);
        ct_tb_event(&e, 1.0, 1, &s);
        EXPECT_TRUE(e.overflow);
        EXPECT_EQ(ct_tfrecord_write(f, &e), -1);
    });
    EXPECT_TRUE(got.empty());
}

// ---- the sink's directory ---------------------------------------------------

// A log directory that cannot be made all the way down (here a name past
// NAME_MAX at the bottom) leaves none of the directories made above it.
TEST(TensorBoardDir, AFailedMkdirTakesAwayTheParentsItMade) {
    TempDir dir;
    const std::string tb = dir.file("x/y/" + std::string(300, 'z'));
    ct_log_options lo = {};
    lo.quiet = 1;
    lo.tensorboard_dir = tb.c_str();
    ct_error err;
    ct_error_clear(&err);
    ct_logger *lg = ct_logger_open(&lo, &err);
    EXPECT_EQ(lg, nullptr);
    if (lg) ct_logger_close(lg, nullptr);
    EXPECT_EQ(err.code, CT_EXIT_BAD_INPUT);
    EXPECT_NE(std::string(err.msg).find("cannot make the TensorBoard log directory"), std::string::npos) << err.msg;
    EXPECT_FALSE(file_exists(dir.file("x"))) << "x (and x/y) were made and left";
}

// ---- the sink in a training run --------------------------------------------

const char *kModel = "input 64\ndense 16 relu\ndense 10 softmax\noptimizer adam lr=0.01\nbatch_size 32\n";

class TensorBoardRun : public ::testing::Test {
  protected:
    void SetUp() override {
        write_synthetic_mnist(dir.path(), 200, 50);
        write_text(dir.file("model.txt"), kModel);
    }
    std::string base() const {
        return "train --quiet --device cpu --model " + dir.file("model.txt") + " --data " + dir.path();
    }
    TempDir dir;
};

// Every step, epoch and diagnosis of the JSONL is in the event file, at the
// same step, with the same values (as float32, TensorBoard's scalar type).
TEST_F(TensorBoardRun, HoldsTheRunsRecordsAsTheJsonlDoes) {
    std::string tb = dir.file("runs/a"), log = dir.file("run.jsonl");
    // MSE on the softmax output: a warning diagnosis at step 0.
    RunResult r = run_cutrain(base() + " --epochs 2 --loss mse --log-jsonl " + log + " --log-tensorboard " + tb);
    ASSERT_EQ(r.exit_code, 0) << r.out;
    auto files = event_files(tb);
    ASSERT_EQ(files.size(), 1u) << "the directory, made with its parent, holds one event file";
    std::vector<Event> ev = read_events(files[0]);
    ASSERT_FALSE(ev.empty());
    EXPECT_EQ(ev[0].file_version, "brain.Event:2");
    EXPECT_GT(ev[0].wall_time, 1.5e9);  // seconds since 1970, not a monotonic clock

    std::vector<const Event *> steps, epochs, diags;
    for (const Event &e : ev) {
        if (e.find("step/loss")) steps.push_back(&e);
        if (e.find("epoch/train_loss")) epochs.push_back(&e);
        for (const Value &v : e.values)
            if (v.tag.rfind("diagnosis/", 0) == 0) diags.push_back(&e);
    }
    auto jsteps = jsonl_of_type(log, "step");
    ASSERT_EQ(steps.size(), jsteps.size());
    ASSERT_EQ(jsteps.size(), 14u);
    for (size_t i = 0; i < steps.size(); ++i) {
        SCOPED_TRACE(jsteps[i]);
        EXPECT_EQ((double)steps[i]->step, json_number(jsteps[i], "step"));
        for (const char *key : {"loss", "acc", "grad_norm", "max_abs_grad", "update_ratio"}) {
            const Value *v = steps[i]->find(std::string("step/") + key);
            ASSERT_NE(v, nullptr) << key;
            EXPECT_FLOAT_EQ(v->simple, (float)json_number(jsteps[i], key)) << key;
        }
        for (const char *layer : {"dense1", "dense2"}) {
            const Value *v = steps[i]->find(std::string("layer_grad_norm/") + layer);
            ASSERT_NE(v, nullptr) << layer;
            EXPECT_GT(v->simple, 0.0f);
        }
    }
    auto jepochs = jsonl_of_type(log, "epoch");
    ASSERT_EQ(epochs.size(), 2u);
    ASSERT_EQ(jepochs.size(), 2u);
    for (size_t i = 0; i < epochs.size(); ++i) {
        EXPECT_EQ(epochs[i]->step, 7u * (i + 1));  // at the epoch's last step
        for (const char *key : {"train_loss", "train_acc", "test_loss", "test_acc", "samples_per_s"})
            EXPECT_FLOAT_EQ(epochs[i]->find(std::string("epoch/") + key)->simple,
                            (float)json_number(jepochs[i], key))
                << key;
    }
    auto jdiags = jsonl_of_type(log, "diagnosis");
    ASSERT_EQ(diags.size(), jdiags.size());
    ASSERT_GE(diags.size(), 1u);
    const std::string code = json_string(jdiags[0], "code");
    EXPECT_EQ(code, "LOSS_OUTPUT_MISMATCH");
    EXPECT_EQ(diags[0]->step, 0u);
    const Value *d = diags[0]->find("diagnosis/" + code);
    ASSERT_NE(d, nullptr);
    EXPECT_NE(d->text.find(json_string(jdiags[0], "message")), std::string::npos) << d->text;
}

// A second run into the same directory adds its own file; it never writes
// into the first one's.
TEST_F(TensorBoardRun, ASecondRunAddsAFile) {
    std::string tb = dir.file("tb");
    ASSERT_EQ(run_cutrain(base() + " --max-steps 3 --log-tensorboard " + tb).exit_code, 0);
    auto first = event_files(tb);
    ASSERT_EQ(first.size(), 1u);
    auto before = read_file(first[0]);
    ASSERT_EQ(run_cutrain(base() + " --max-steps 4 --log-tensorboard " + tb).exit_code, 0);
    auto files = event_files(tb);
    ASSERT_EQ(files.size(), 2u);
    EXPECT_EQ(read_file(first[0]), before);
    size_t steps = 0;
    for (const auto &f : files)
        for (const Event &e : read_events(f)) steps += e.find("step/loss") != nullptr;
    EXPECT_EQ(steps, 3u + 4u);
}

// A run the health policy stops keeps its events up to the stop: the point
// of a log is the run that went wrong.
TEST_F(TensorBoardRun, AStoppedRunKeepsItsEventsWithTheNonFiniteStep) {
    std::string tb = dir.file("tb");
    RunResult r = run_cutrain(base() + " --inject-nan 4 --on-nan stop --log-tensorboard " + tb);
    ASSERT_NE(r.exit_code, 0) << r.out;
    auto files = event_files(tb);
    ASSERT_EQ(files.size(), 1u);
    std::vector<Event> ev = read_events(files[0]);
    uint64_t last = 0;
    bool diagnosed = false;
    for (const Event &e : ev) {
        if (e.find("step/loss")) last = e.step;
        if (e.find("diagnosis/NONFINITE_GRAD")) diagnosed = e.step == 4;
    }
    EXPECT_EQ(last, 4u);
    EXPECT_TRUE(diagnosed) << r.out;
}

}  // namespace
