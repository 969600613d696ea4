// The strict JSON parser (src/io/json.c) and the JSONL log reader
// (src/io/jsonl_read.c) that `cutrain check` stands on: what they accept,
// what they refuse with which line and column, and that they never read
// outside the bytes they are given (every input here lives in a buffer of
// exactly its length, with no terminating NUL).
#include <gtest/gtest.h>

#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include <unistd.h>

#include "src/io/json.h"
#include "src/io/jsonl_read.h"
#include "src/io/memory_limit.h"
#include "support/fixtures.h"

namespace {

// The text in a heap buffer of exactly its size: a read past the end is a
// read past the allocation (what ASan and the fuzzer will catch).
struct Exact {
    std::vector<char> bytes;
    explicit Exact(const std::string &s) : bytes(s.begin(), s.end()) {}
    const char *data() const { return bytes.empty() ? nullptr : bytes.data(); }
    size_t size() const { return bytes.size(); }
};

struct Parsed {
    int rc;
    ct_json_syntax syn{0, nullptr};
    std::unique_ptr<ct_json_doc> doc{new ct_json_doc};
};

Parsed parse(const std::string &s) {
    Parsed p;
    Exact e(s);
    p.rc = ct_json_parse(e.data(), e.size(), p.doc.get(), &p.syn);
    // The doc points into e; tests below only look at tokens' numbers and
    // positions once e is gone, never at the text.
    return p;
}

TEST(Json, ParsesARecordIntoFlatTokens) {
    const std::string s =
        R"({"type":"step","step":12,"loss":2.5e-1,"flags":["CLIPPED"],"n":{"a":null,"b":true},"x":-0.5})";
    ct_json_doc doc;
    ASSERT_EQ(ct_json_parse(s.data(), s.size(), &doc, nullptr), 0);
    ASSERT_EQ(doc.tok[0].kind, CT_JSON_OBJECT);
    EXPECT_EQ(doc.tok[0].count, 6u);
    EXPECT_EQ(doc.tok[0].next, doc.n);
    const int step = ct_json_find(&doc, 0, "step");
    ASSERT_GE(step, 0);
    uint64_t v = 0;
    EXPECT_EQ(ct_json_u64(&doc, (uint32_t)step, &v), 0);
    EXPECT_EQ(v, 12u);
    const int loss = ct_json_find(&doc, 0, "loss");
    ASSERT_GE(loss, 0);
    EXPECT_EQ(doc.tok[loss].number, 0.25);
    EXPECT_NE(ct_json_u64(&doc, (uint32_t)loss, &v), 0) << "not a whole number";
    const int x = ct_json_find(&doc, 0, "x");
    EXPECT_EQ(doc.tok[x].number, -0.5);
    EXPECT_NE(ct_json_u64(&doc, (uint32_t)x, &v), 0) << "negative";
    const int flags = ct_json_find(&doc, 0, "flags");
    ASSERT_GE(flags, 0);
    EXPECT_EQ(doc.tok[flags].kind, CT_JSON_ARRAY);
    EXPECT_EQ(doc.tok[flags].count, 1u);
    EXPECT_TRUE(ct_json_string_is(&doc, (uint32_t)flags + 1, "CLIPPED"));
    const int n = ct_json_find(&doc, 0, "n");
    ASSERT_GE(n, 0);
    const int a = ct_json_find(&doc, (uint32_t)n, "a"), b = ct_json_find(&doc, (uint32_t)n, "b");
    ASSERT_GE(a, 0);
    ASSERT_GE(b, 0);
    EXPECT_EQ(doc.tok[a].kind, CT_JSON_NULL);
    EXPECT_EQ(doc.tok[b].kind, CT_JSON_TRUE);
    EXPECT_EQ(ct_json_find(&doc, 0, "missing"), -1);
    EXPECT_EQ(ct_json_find(&doc, (uint32_t)step, "x"), -1) << "not an object";
    // Skipping a value by `next` lands on the following key.
    EXPECT_TRUE(ct_json_string_is(&doc, doc.tok[n].next, "x"));
}

TEST(Json, EscapesAreResolvedWhenStringsAreCompared) {
    const std::string s = R"(["A\u0042C", "ABC", "\u00e9", "é", "\ud83d\ude00", "😀", "a\"b\\c\/", "a\"b\\c/"])";
    ct_json_doc doc;
    ASSERT_EQ(ct_json_parse(s.data(), s.size(), &doc, nullptr), 0);
    ASSERT_EQ(doc.tok[0].count, 8u);
    for (uint32_t i = 1; i < 9; i += 2) {
        EXPECT_TRUE(ct_json_string_equal(&doc, i, &doc, i + 1)) << "pair at token " << i;
        EXPECT_FALSE(ct_json_string_equal(&doc, i, &doc, i == 1 ? 3 : 1));
    }
    EXPECT_TRUE(ct_json_string_is(&doc, 1, "ABC"));
    EXPECT_TRUE(ct_json_string_is(&doc, 3, "é"));
    EXPECT_FALSE(ct_json_string_is(&doc, 1, "AB"));
    EXPECT_FALSE(ct_json_string_is(&doc, 1, "ABCD"));
}

TEST(Json, StringCopyDecodesReplacesControlsAndCutsOnCodePoints) {
    const std::string s = R"(["A\u0042\u00e9\ud83d\ude00", "x\u001b[1m\ty\u007f\u0085z", 3])";
    ct_json_doc doc;
    ASSERT_EQ(ct_json_parse(s.data(), s.size(), &doc, nullptr), 0);
    char buf[32];
    EXPECT_EQ(ct_json_string_copy(&doc, 1, buf, sizeof buf), 8u);  // A, B, e-acute (2 bytes), U+1F600 (4)
    EXPECT_STREQ(buf, "AB\xc3\xa9\xf0\x9f\x98\x80");
    // ESC, TAB, DEL and the C1 control U+0085 become '?'.
    EXPECT_EQ(ct_json_string_copy(&doc, 2, buf, sizeof buf), 10u);
    EXPECT_STREQ(buf, "x?[1m?y??z");
    // Room for "AB" and half of the e-acute: the e-acute is left out whole.
    EXPECT_EQ(ct_json_string_copy(&doc, 1, buf, 4), 2u);
    EXPECT_STREQ(buf, "AB");
    EXPECT_EQ(ct_json_string_copy(&doc, 1, buf, 1), 0u);
    EXPECT_STREQ(buf, "");
    // Not a string: nothing.
    EXPECT_EQ(ct_json_string_copy(&doc, 3, buf, sizeof buf), 0u);
    EXPECT_STREQ(buf, "");
}

struct Bad {
    const char *text;
    size_t column;  // 1-based, where the parser stopped
    const char *what;
};

TEST(Json, RefusesWhatIsNotStrictJsonAndSaysWhere) {
    const Bad cases[] = {
        {"", 1, "expected a value"},
        {"{", 2, "unterminated object"},
        {R"({"a":1,})", 8, "expected a string key"},
        {R"({"a":1 "b":2})", 8, "expected ',' or '}'"},
        {R"({"a" 1})", 6, "expected ':'"},
        {R"({a:1})", 2, "expected a string key"},
        {R"({"a":NaN})", 6, "expected a value"},
        {R"({"a":Infinity})", 6, "expected a value"},
        {R"({"a":01})", 7, "leading zero"},
        {R"({"a":1.})", 8, "expected a digit after '.'"},
        {R"({"a":.5})", 6, "expected a value"},
        {R"({"a":1e})", 8, "exponent"},
        {R"({"a":+1})", 6, "expected a value"},
        {R"({"a":1e999})", 6, "out of the range"},
        {R"({"a":tru})", 6, "expected a value"},
        {R"({"a":"x)", 8, "unterminated string"},
        {"{\"a\":\"x\ty\"}", 8, "control character"},
        {R"({"a":"\x"})", 8, "invalid escape"},
        {R"({"a":"\u12G4"})", 11, "hex digits"},
        {R"({"a":"\udc00"})", 13, "lone low surrogate"},
        {R"({"a":"\ud800x"})", 13, "high surrogate"},
        {"{\"a\":\"\xff\"}", 7, "invalid UTF-8"},
        {"{\"a\":\"\xc0\xaf\"}", 7, "invalid UTF-8"},     // overlong '/'
        {"{\"a\":\"\xed\xa0\x80\"}", 8, "invalid UTF-8"}, // a surrogate in UTF-8
        {"{\"a\":\"\xe2\x82\"}", 9, "invalid UTF-8"},      // cut short
        {R"({"a":1,"a":2})", 8, "duplicate key"},
        {R"({"a":1} x)", 9, "unexpected text after the value"},
        {R"({"a":1}{})", 8, "unexpected text after the value"},
        {R"([1,2,])", 6, "expected a value"},
        {R"([1 2])", 4, "expected ',' or ']'"},
    };
    for (const Bad &c : cases) {
        SCOPED_TRACE(c.text);
        Parsed p = parse(c.text);
        ASSERT_EQ(p.rc, -1);
        ASSERT_NE(p.syn.what, nullptr);
        EXPECT_NE(std::string(p.syn.what).find(c.what), std::string::npos) << p.syn.what;
        EXPECT_EQ(p.syn.pos + 1, c.column) << p.syn.what;
    }
}

TEST(Json, BoundsOnDepthTokensAndNumberLength) {
    // 16 levels parse, 17 do not (the recursion is bounded, not the stack's luck).
    std::string ok16 = std::string(15, '[') + "[]" + std::string(15, ']');
    EXPECT_EQ(parse(ok16).rc, 0);
    Parsed deep = parse(std::string(17, '[') + std::string(17, ']'));
    ASSERT_EQ(deep.rc, -1);
    EXPECT_NE(std::string(deep.syn.what).find("nested more than 16"), std::string::npos);
    Parsed very_deep = parse(std::string(100000, '['));
    EXPECT_EQ(very_deep.rc, -1);

    // The token pool: 511 numbers plus their array fit, 512 do not.
    std::string many = "[0";
    for (int i = 1; i < CT_JSON_MAX_TOKENS - 1; ++i) many += ",0";
    EXPECT_EQ(parse(many + "]").rc, 0);
    Parsed too_many = parse(many + ",0]");
    ASSERT_EQ(too_many.rc, -1);
    EXPECT_NE(std::string(too_many.syn.what).find("too many values"), std::string::npos);

    EXPECT_EQ(parse("1." + std::string(61, '5')).rc, 0) << "63 characters";
    Parsed longnum = parse("1." + std::string(62, '5'));
    ASSERT_EQ(longnum.rc, -1);
    EXPECT_NE(std::string(longnum.syn.what).find("longer than 63"), std::string::npos);
    EXPECT_EQ(parse("1e-400").rc, 0) << "underflow to 0 is a number";
    EXPECT_EQ(parse("9007199254740993").rc, 0);
}

// ---- the log reader --------------------------------------------------------

const char *kLog =
    R"({"type":"step","epoch":1,"step":1,"loss":2.5,"flags":[]})"
    "\n"
    R"({"type":"diagnosis","code":"DEAD_RELU","severity":"warning","step":1,"epoch":1,"layer":"dense1","message":"m"})"
    "\n"
    R"({"type":"epoch","epoch":1,"steps":1,"samples":32,"seconds":0.1})"
    "\n"
    R"({"type":"summary","status":"completed"})"
    "\n"
    R"({"type":"future","x":1})"
    "\n";

TEST(JsonlRead, IndexesEveryRecordByKind) {
    Exact e(kLog);
    ct_jsonl_file f;
    ct_error err;
    ct_error_clear(&err);
    ASSERT_EQ(ct_jsonl_index(e.data(), e.size(), "log.jsonl", &f, &err), 0) << err.msg;
    ASSERT_EQ(f.n_lines, 5u);
    EXPECT_EQ(f.n_kind[CT_REC_STEP], 1u);
    EXPECT_EQ(f.n_kind[CT_REC_DIAGNOSIS], 1u);
    EXPECT_EQ(f.n_kind[CT_REC_EPOCH], 1u);
    EXPECT_EQ(f.n_kind[CT_REC_SUMMARY], 1u);
    EXPECT_EQ(f.n_kind[CT_REC_OTHER], 1u);
    EXPECT_EQ(f.lines[0].step, 1u);
    EXPECT_EQ(f.lines[1].lineno, 2u);
    EXPECT_EQ(std::string(f.bytes + f.lines[1].offset + f.lines[1].code_off, f.lines[1].code_len), "DEAD_RELU");
    EXPECT_EQ(f.lines[2].epoch, 1u);
    ct_json_doc doc;
    ASSERT_EQ(ct_jsonl_parse_line(&f, 2, &doc), 0);
    EXPECT_EQ(doc.tok[ct_json_find(&doc, 0, "samples")].number, 32.0);
    EXPECT_EQ(ct_jsonl_parse_line(&f, 5, &doc), -1);
    ct_jsonl_free(&f);
}

TEST(JsonlRead, RefusesBadLogsNamingFileAndLine) {
    const std::string good = R"({"type":"step","epoch":1,"step":1})"
                             "\n";
    const std::pair<std::string, std::string> cases[] = {
        {good + good + "{\"type\":\"step\",\"epoch\":1,\"step\":3", "log.jsonl: line 3: truncated"},
        {good + "\n" + good, "log.jsonl: line 2: empty line"},
        {good + "[1,2]\n", "log.jsonl: line 2: expected a JSON object (one record per line), got an array"},
        {"hello\n", "log.jsonl: line 1, column 1: expected a value"},
        {good + good + good + "{\"type\":\"step\",\"epoch\":1,\"step\":1,}\n",
         "log.jsonl: line 4, column 35: expected a string key"},
        {"{\"kind\":\"step\"}\n", "log.jsonl: line 1: no \"type\" string"},
        {"{\"type\":7}\n", "log.jsonl: line 1: no \"type\" string"},
        {"{\"type\":\"step\",\"epoch\":1}\n", "line 1: step record without a whole-number \"step\" field"},
        {"{\"type\":\"step\",\"epoch\":1,\"step\":1.5}\n", "line 1: step record without a whole-number \"step\" field"},
        {"{\"type\":\"step\",\"epoch\":-1,\"step\":1}\n", "line 1: step record without a whole-number \"epoch\" field"},
        {"{\"type\":\"epoch\",\"epoch\":null}\n", "line 1: epoch record without a whole-number \"epoch\" field"},
        {"{\"type\":\"diagnosis\",\"step\":3}\n", "line 1: diagnosis record without a \"code\" string"},
        {"{\"type\":\"diagnosis\",\"code\":\"X\"}\n", "line 1: diagnosis record without a whole-number \"step\" field"},
        {std::string("\x1f\x8b\x08\x00", 4) + "\n", "log.jsonl: line 1, column 1: expected a value"},
        {std::string("{\"type\":\"step\"\0}\n", 17), "log.jsonl: line 1, column 15: expected ',' or '}'"},
    };
    for (const auto &c : cases) {
        SCOPED_TRACE(c.first);
        Exact e(c.first);
        ct_jsonl_file f;
        ct_error err;
        ct_error_clear(&err);
        ASSERT_EQ(ct_jsonl_index(e.data(), e.size(), "log.jsonl", &f, &err), -1);
        EXPECT_EQ(err.code, CT_EXIT_BAD_INPUT);
        EXPECT_NE(std::string(err.msg).find(c.second), std::string::npos) << err.msg;
        EXPECT_EQ(std::string(err.msg).find('\n'), std::string::npos);
        EXPECT_EQ(f.lines, nullptr) << "nothing kept after a failure";
        EXPECT_EQ(f.n_lines, 0u);
    }
}

// Every cut of a valid log is either a whole number of lines (accepted,
// with exactly those records) or ends mid-line (refused as truncated).
TEST(JsonlRead, EveryPrefixIsWholeLinesOrTruncated) {
    const std::string log = kLog;
    size_t lines = 0;
    for (size_t cut = 0; cut <= log.size(); ++cut) {
        Exact e(log.substr(0, cut));
        ct_jsonl_file f;
        ct_error err;
        ct_error_clear(&err);
        const int rc = ct_jsonl_index(e.data(), e.size(), "cut.jsonl", &f, &err);
        if (cut == 0 || log[cut - 1] == '\n') {
            ASSERT_EQ(rc, 0) << "cut " << cut << ": " << err.msg;
            EXPECT_EQ(f.n_lines, lines);
            lines++;
        } else {
            ASSERT_EQ(rc, -1) << "cut " << cut;
            EXPECT_NE(std::string(err.msg).find("truncated"), std::string::npos) << err.msg;
        }
        ct_jsonl_free(&f);
    }
}

// Random corruptions of a valid log: refused as bad input or accepted,
// never anything else (a stand-in for the fuzzer on every CI run).
TEST(JsonlRead, CorruptedLogsAreRefusedOrAcceptedNeverMisread) {
    std::mt19937 rng(7);
    const std::string log = kLog;
    const char alphabet[] = "{}[]\",:0123456789.eE+-\\u \n\x01\x80\xff" "abtrnl";
    for (int trial = 0; trial < 3000; ++trial) {
        std::string s = log;
        const int edits = 1 + (int)(rng() % 4);
        for (int k = 0; k < edits; ++k) {
            const size_t at = rng() % s.size();
            const char c = alphabet[rng() % (sizeof alphabet - 1)];
            switch (rng() % 3) {
            case 0: s[at] = c; break;
            case 1: s.insert(s.begin() + (ptrdiff_t)at, c); break;
            default: s.erase(s.begin() + (ptrdiff_t)at); break;
            }
            if (s.empty()) s = "x";
        }
        Exact e(s);
        ct_jsonl_file f;
        ct_error err;
        ct_error_clear(&err);
        const int rc = ct_jsonl_index(e.data(), e.size(), "fuzz.jsonl", &f, &err);
        if (rc == 0) {
            for (size_t i = 0; i < f.n_lines; ++i) {
                ASSERT_LE(f.lines[i].offset + f.lines[i].len, e.size());
                ct_json_doc doc;
                ASSERT_EQ(ct_jsonl_parse_line(&f, i, &doc), 0);
            }
        } else {
            ASSERT_EQ(err.code, CT_EXIT_BAD_INPUT) << err.msg;
            ASSERT_EQ(std::string(err.msg).rfind("fuzz.jsonl: ", 0), 0u) << err.msg;
        }
        ct_jsonl_free(&f);
    }
}

// A log is refused for its size only when it cannot fit in memory (a
// resource failure, exit 1), not past a fixed GiB: train writes a GiB in a
// few million steps (4.2 million steps of a small model took 23 s), and show
// and check called that log "not a JSONL log". Sparse files: a size costs no
// disk, and only the accepted one is read.
TEST(JsonlRead, ALogIsRefusedForItsSizeOnlyWhenItCannotFitInMemory) {
    // The least of physical memory and this process's cgroup limits (test_memory_limit.cpp).
    const uint64_t memory = ct_memory_limit(nullptr, nullptr);
    ASSERT_GT(memory, 0u);
    ct_test::TempDir dir;
    const std::string huge = dir.file("huge.jsonl");
    ct_test::write_text(huge, "");
    ASSERT_EQ(truncate(huge.c_str(), (off_t)(memory + 1)), 0);
    ct_jsonl_file f;
    ct_error err;
    ct_error_clear(&err);
    ASSERT_EQ(ct_jsonl_read(huge.c_str(), &f, &err), -1);
    EXPECT_EQ(err.code, CT_EXIT_FAILURE) << err.msg;
    EXPECT_NE(std::string(err.msg).find(huge + ": " + std::to_string(memory + 1) + " bytes: a log is read whole, and this process may use"),
              std::string::npos)
        << err.msg;

    if (memory < ((uint64_t)8 << 30)) GTEST_SKIP() << "skipped: reading a log past a GiB needs more memory than this";
    const std::string big = dir.file("big.jsonl");
    ct_test::write_text(big, "");
    ASSERT_EQ(truncate(big.c_str(), ((off_t)1 << 30) + 1), 0);
    ct_error_clear(&err);
    ASSERT_EQ(ct_jsonl_read(big.c_str(), &f, &err), -1);  // read, and judged by what it holds: no newline
    EXPECT_EQ(err.code, CT_EXIT_BAD_INPUT) << err.msg;
    EXPECT_NE(std::string(err.msg).find(big + ": line 1: truncated"), std::string::npos) << err.msg;
}

TEST(JsonlRead, FileErrorsNameThePath) {
    ct_jsonl_file f;
    ct_error err;
    ct_error_clear(&err);
    ASSERT_EQ(ct_jsonl_read("/nonexistent/run.jsonl", &f, &err), -1);
    EXPECT_EQ(err.code, CT_EXIT_BAD_INPUT);
    EXPECT_NE(std::string(err.msg).find("/nonexistent/run.jsonl: cannot open"), std::string::npos) << err.msg;
    ct_error_clear(&err);
    ASSERT_EQ(ct_jsonl_read("/", &f, &err), -1);
    EXPECT_NE(std::string(err.msg).find("/: not a regular file"), std::string::npos) << err.msg;
}

}  // namespace
