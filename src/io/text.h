/* Text that came from outside (paths, words of a file, a log's strings) on
 * its way to a terminal or a JSON file: what UTF-8 is well formed, and which
 * characters would not show as themselves. */
#ifndef CUTRAIN_SRC_IO_TEXT_H
#define CUTRAIN_SRC_IO_TEXT_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Length (2 to 4) of the well-formed UTF-8 sequence of a character at s,
 * of at most n bytes, with its code point in *cp; 0 when the bytes there
 * are not one (an ASCII byte included). */
size_t ct_utf8_sequence(const unsigned char *s, size_t n, uint32_t *cp);

/* 1 for a character that prints as nothing or as a blank, and so would
 * hide what a message quotes: no-break and zero-width spaces, joiners,
 * direction marks, variation selectors, fillers, tags, the byte-order mark. */
int ct_char_invisible(uint32_t u);

/* Writes s for a terminal, one line: printable ASCII and printable UTF-8 as
 * they are, other bytes (C0 and C1 controls, DEL, bytes that are not UTF-8)
 * as \xNN, invisible characters as <U+XXXX>. */
void ct_put_escaped(FILE *f, const char *s);

#ifdef __cplusplus
}
#endif

#endif
