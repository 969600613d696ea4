// ct_fail: what every error message is made of.
#include <gtest/gtest.h>

#include "cutrain/error.h"

namespace {

// A value quoted from outside (a flag, a path, a file's bytes) cannot break
// the message's one line or reach the terminal as a control sequence.
TEST(Error, QuotedTextStaysOneLineOfPrintableText) {
    ct_error err;
    ct_error_clear(&err);
    EXPECT_EQ(ct_fail(&err, CT_EXIT_USAGE, "--lr: got '%s'", "1\n2\r3\t4\x1b[2K5\b6\x7f" "7"), -1);
    EXPECT_EQ(err.code, CT_EXIT_USAGE);
    EXPECT_STREQ(err.msg, "--lr: got '1 2 3 4?[2K5?6?7'");
}

TEST(Error, Utf8PathsAreKept) {
    ct_error err;
    ct_error_clear(&err);
    ct_fail(&err, CT_EXIT_BAD_INPUT, "%s: cannot open", "/données/modèle.txt");
    EXPECT_STREQ(err.msg, "/données/modèle.txt: cannot open");
}

TEST(Error, NullErrorIsAllowed) { EXPECT_EQ(ct_fail(nullptr, CT_EXIT_FAILURE, "x"), -1); }

}  // namespace
