#include "cutrain/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int ct_fail(ct_error *err, int code, const char *fmt, ...) {
    if (!err) return -1;
    err->code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
    /* One line of text, always: a path, a flag value or a file's bytes
     * quoted in the message must not break the line, nor send the terminal
     * control sequences (ESC, backspace). Bytes from 0x80 stay: UTF-8 paths. */
    for (char *p = err->msg; *p; ++p) {
        unsigned char c = (unsigned char)*p;
        if (c == '\n' || c == '\r' || c == '\t') *p = ' ';
        else if (c < 0x20 || c == 0x7f) *p = '?';
    }
    return -1;
}

void ct_error_clear(ct_error *err) {
    if (!err) return;
    err->code = 0;
    err->msg[0] = '\0';
}
