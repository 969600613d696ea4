#include "src/io/text.h"

#include <string.h>

size_t ct_utf8_sequence(const unsigned char *s, size_t n, uint32_t *cp) {
    const size_t len = s[0] >= 0xC2 && s[0] <= 0xDF   ? 2
                       : s[0] >= 0xE0 && s[0] <= 0xEF ? 3
                       : s[0] >= 0xF0 && s[0] <= 0xF4 ? 4
                                                      : 0;
    if (len == 0 || len > n) return 0;
    uint32_t u = s[0] & (0x7Fu >> len);
    for (size_t i = 1; i < len; ++i) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        u = (u << 6) | (s[i] & 0x3Fu);
    }
    if ((len == 3 && u < 0x800) || (len == 4 && (u < 0x10000 || u > 0x10FFFF)) || (u >= 0xD800 && u <= 0xDFFF))
        return 0;
    *cp = u;
    return len;
}

int ct_char_invisible(uint32_t u) {
    static const uint32_t ranges[][2] = {
        {0x00A0, 0x00A0},   {0x00AD, 0x00AD},   {0x034F, 0x034F},   {0x061C, 0x061C},   {0x115F, 0x1160},
        {0x17B4, 0x17B5},   {0x180B, 0x180F},   {0x2000, 0x200F},   {0x2028, 0x202F},   {0x205F, 0x206F},
        {0x3000, 0x3000},   {0x3164, 0x3164},   {0xFE00, 0xFE0F},   {0xFEFF, 0xFEFF},   {0xFFA0, 0xFFA0},
        {0xFFF0, 0xFFFB},   {0x1D173, 0x1D17A}, {0xE0000, 0xE0FFF},
    };
    for (size_t i = 0; i < sizeof ranges / sizeof ranges[0]; ++i)
        if (u >= ranges[i][0] && u <= ranges[i][1]) return 1;
    return 0;
}

void ct_put_escaped(FILE *f, const char *s) {
    const unsigned char *b = (const unsigned char *)s;
    const size_t n = strlen(s);
    for (size_t i = 0; i < n;) {
        uint32_t u = 0;
        size_t k;
        if (b[i] >= 0x20 && b[i] < 0x7F) {
            fputc(b[i++], f);
        } else if (b[i] >= 0x80 && (k = ct_utf8_sequence(b + i, n - i, &u)) > 0 && u >= 0xA0) {
            if (ct_char_invisible(u))
                fprintf(f, "<U+%04X>", (unsigned)u);
            else
                fwrite(b + i, 1, k, f);
            i += k;
        } else {
            fprintf(f, "\\x%02X", b[i++]); /* C0, DEL, C1 (as its bytes), or not UTF-8 */
        }
    }
}
