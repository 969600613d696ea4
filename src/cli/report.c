/* The one place an error reaches the user: kept out of main.c so the
 * subcommands link without main() (the flags fuzzer calls them in-process). */
#include <stdio.h>

#include "src/cli/commands.h"

int ct_cli_report(const ct_error *err) {
    fprintf(stderr, "cutrain: error: %s\n", err->msg[0] ? err->msg : "unknown error");
    return err->code ? err->code : CT_EXIT_FAILURE;
}
