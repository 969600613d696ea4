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
    /* One line, always: a path or a parser's text must not break it. */
    for (char *p = err->msg; *p; ++p)
        if (*p == '\n' || *p == '\r') *p = ' ';
    return -1;
}

void ct_error_clear(ct_error *err) {
    if (!err) return;
    err->code = 0;
    err->msg[0] = '\0';
}
