/* The one place an error reaches the user: kept out of main.c so the
 * subcommands link without main() (the flags fuzzer calls them in-process). */
#include <stdio.h>

#include "src/cli/commands.h"
#include "src/io/text.h"

/* Messages quote what the user gave (paths, words of a model file), which
 * may hold anything. ct_fail has already made C0 controls '?' (and line
 * breaks spaces); ct_put_escaped shows what is left that would not show as
 * itself (C1 controls, bytes that are not UTF-8, characters that print as
 * nothing) as \xNN or <U+XXXX>, so the error stays one line. */
int ct_cli_report(const ct_error *err) {
    fputs("cutrain: error: ", stderr);
    ct_put_escaped(stderr, err->msg[0] ? err->msg : "unknown error");
    fputc('\n', stderr);
    return err->code ? err->code : CT_EXIT_FAILURE;
}
