/* cutrain show: a run's JSONL log told to a person (src/log/show.h). */
#include <stdio.h>
#include <string.h>

#include "src/cli/commands.h"
#include "src/io/jsonl_read.h"
#include "src/log/show.h"

#define USAGE                                                                                          \
    "usage: cutrain show RUN.jsonl\n\n"                                                                \
    "Tells what the log of a run (cutrain train --log-jsonl) says: how the run ended (or that it\n"     \
    "has no summary record: killed, still running or cut short), the epochs, every diagnosis with\n"   \
    "its step, layer and advice, which health flags were raised on which steps, and the loss from\n"   \
    "the first step to the last, with a line of one block per stretch of steps ('!' where a loss\n"     \
    "was NaN or Inf). Nothing is recomputed: every figure is a record's. A last line cut short (a\n"   \
    "run killed while writing, or still running) is left out and said so.\n\n"                        \
    "Exit status: 0 shown, 2 bad command line, 3 bad input file (not a cutrain log)."

int ct_cmd_show(int argc, char **argv) {
    ct_error err;
    ct_error_clear(&err);
    const char *path = NULL;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            puts(USAGE);
            return CT_EXIT_OK;
        }
        if (strncmp(argv[i], "-", 1) == 0 && argv[i][1] != '\0') {
            ct_fail(&err, CT_EXIT_USAGE, "%.100s: unknown flag (cutrain show takes one RUN.jsonl; see --help)",
                    argv[i]);
            return ct_cli_report(&err);
        }
        if (path) {
            ct_fail(&err, CT_EXIT_USAGE, "unexpected argument '%.200s' (one RUN.jsonl is shown; see --help)",
                    argv[i]);
            return ct_cli_report(&err);
        }
        path = argv[i];
    }
    if (!path) {
        ct_fail(&err, CT_EXIT_USAGE, "RUN.jsonl: required (the log of a run; see --help)");
        return ct_cli_report(&err);
    }
    ct_jsonl_file f;
    memset(&f, 0, sizeof f);
    int code = CT_EXIT_OK;
    if (ct_jsonl_read_cut(path, &f, &err) || ct_show_log(&f, stdout, &err)) {
        code = ct_cli_report(&err);
    } else if (fflush(stdout)) {
        ct_fail(&err, CT_EXIT_FAILURE, "stdout: write failed");
        code = ct_cli_report(&err);
    }
    ct_jsonl_free(&f);
    return code;
}
