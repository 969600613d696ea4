/* The one place an error reaches the user: kept out of main.c so the
 * subcommands link without main() (the flags fuzzer calls them in-process). */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "src/cli/commands.h"

/* Length of the well-formed UTF-8 sequence at s (at most n bytes) and its
 * code point, or 0 when the bytes are not one. */
static size_t utf8_sequence(const unsigned char *s, size_t n, uint32_t *cp) {
    size_t len = s[0] >= 0xC2 && s[0] <= 0xDF ? 2 : s[0] >= 0xE0 && s[0] <= 0xEF ? 3 : s[0] >= 0xF0 && s[0] <= 0xF4 ? 4 : 0;
    if (len == 0 || len > n) return 0;
    uint32_t u = s[0] & (0x7F >> len);
    for (size_t i = 1; i < len; ++i) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        u = (u << 6) | (s[i] & 0x3F);
    }
    if ((len == 3 && u < 0x800) || (len == 4 && (u < 0x10000 || u > 0x10FFFF)) || (u >= 0xD800 && u <= 0xDFFF))
        return 0;
    *cp = u;
    return len;
}

/* A character that prints as nothing, or as a space, and so would hide
 * what the message quotes: no-break and zero-width spaces, the byte-order
 * mark, line and paragraph separators, direction marks. */
static int invisible(uint32_t u) {
    return u == 0xA0 || u == 0xAD || (u >= 0x2000 && u <= 0x200F) || (u >= 0x2028 && u <= 0x202F) ||
           (u >= 0x2060 && u <= 0x206F) || u == 0xFEFF;
}

/* Messages quote what the user gave (paths, words of a model file), which
 * may hold anything. ct_fail has already made C0 controls '?' (and line
 * breaks spaces); left are C1 controls (ESC's 8-bit twin among them),
 * bytes that are not UTF-8 and characters that print as nothing. Those are
 * written as \xNN or <U+XXXX>, so the error stays one line that shows what
 * is there. */
static void put_escaped(FILE *f, const char *msg) {
    const unsigned char *s = (const unsigned char *)msg;
    size_t n = strlen(msg);
    for (size_t i = 0; i < n;) {
        uint32_t u;
        size_t k;
        if (s[i] >= 0x20 && s[i] < 0x7F) {
            fputc(s[i++], f);
        } else if (s[i] >= 0x80 && (k = utf8_sequence(s + i, n - i, &u)) > 0 && u >= 0xA0) {
            if (invisible(u))
                fprintf(f, "<U+%04X>", (unsigned)u);
            else
                fwrite(s + i, 1, k, f);
            i += k;
        } else {
            fprintf(f, "\\x%02X", s[i++]); /* C0, DEL, C1 (as its bytes) or not UTF-8 */
        }
    }
}

int ct_cli_report(const ct_error *err) {
    fputs("cutrain: error: ", stderr);
    put_escaped(stderr, err->msg[0] ? err->msg : "unknown error");
    fputc('\n', stderr);
    return err->code ? err->code : CT_EXIT_FAILURE;
}
