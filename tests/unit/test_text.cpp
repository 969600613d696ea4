// src/io/text.h: what of outside text shows as itself on a terminal.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "src/io/text.h"

namespace {

std::string escaped(const std::string &s) {
    char *buf = nullptr;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    ct_put_escaped(f, s.c_str());
    fclose(f);
    std::string out(buf, len);
    free(buf);
    return out;
}

TEST(Text, PrintableTextIsKeptAndTheRestIsShownByItsCode) {
    EXPECT_EQ(escaped("plain ASCII ~"), "plain ASCII ~");
    EXPECT_EQ(escaped("caf\xc3\xa9 \xe4\xb8\xad \xf0\x9f\x98\x80"), "caf\xc3\xa9 \xe4\xb8\xad \xf0\x9f\x98\x80");
    EXPECT_EQ(escaped("a\tb\x1b[2J\x7f"), "a\\x09b\\x1B[2J\\x7F");
    EXPECT_EQ(escaped("c1 \xc2\x9b"), "c1 \\xC2\\x9B");                       // a C1 control, as its bytes
    EXPECT_EQ(escaped("bad \xff\xc3(\xe2\x82"), "bad \\xFF\\xC3(\\xE2\\x82");  // not UTF-8, cut short
    EXPECT_EQ(escaped("\xc0\xaf \xed\xa0\x80"), "\\xC0\\xAF \\xED\\xA0\\x80");  // overlong, a surrogate
}

TEST(Text, CharactersThatPrintAsNothingOrABlankAreNamed) {
    const struct {
        const char *utf8, *shown;
    } cases[] = {
        {"\xc2\xa0", "<U+00A0>"},       {"\xc2\xad", "<U+00AD>"},     {"\xcd\x8f", "<U+034F>"},
        {"\xd8\x9c", "<U+061C>"},       {"\xe1\xa0\x8e", "<U+180E>"}, {"\xe2\x80\x8b", "<U+200B>"},
        {"\xe2\x80\xae", "<U+202E>"},   {"\xe3\x80\x80", "<U+3000>"}, {"\xe3\x85\xa4", "<U+3164>"},
        {"\xef\xb8\x8f", "<U+FE0F>"},   {"\xef\xbb\xbf", "<U+FEFF>"}, {"\xf3\xa0\x80\x81", "<U+E0001>"},
    };
    for (const auto &c : cases) EXPECT_EQ(escaped(std::string("a") + c.utf8 + "b"), std::string("a") + c.shown + "b");
    EXPECT_FALSE(ct_char_invisible(0xE9));
    EXPECT_FALSE(ct_char_invisible(0x4E2D));
}

}  // namespace
