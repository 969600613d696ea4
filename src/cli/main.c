/* cutrain: the command-line entry point. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cutrain/cutrain.h"
#include "src/cli/commands.h"

static void usage(FILE *f) {
    fputs("usage: cutrain <command> [options]\n\n"
          "Commands:\n"
          "  train   train a model (see cutrain train --help)\n"
          "  eval    evaluate saved weights on a test set (see cutrain eval --help)\n"
          "  bench   time training steps and time to accuracy (see cutrain bench --help)\n"
          "  check   compare a run's JSONL log with a golden one (see cutrain check --help)\n"
          "  show    tell what a run's JSONL log says (see cutrain show --help)\n"
          "  --version  print the version\n\n"
          "Exit status: 0 done, 1 runtime failure, 2 bad command line, 3 bad input file,\n"
          "             4 stopped by a health policy, 5 interrupted, 6 check: the logs differ.\n",
          f);
}

static int dispatch(int argc, char **argv) {
    if (argc < 2) {
        fputs("cutrain: error: no command given (expected train, eval, bench, check or show; see cutrain --help)\n",
              stderr);
        return CT_EXIT_USAGE;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "train") == 0) return ct_cmd_train(argc - 2, argv + 2);
    if (strcmp(cmd, "eval") == 0) return ct_cmd_eval(argc - 2, argv + 2);
    if (strcmp(cmd, "bench") == 0) return ct_cmd_bench(argc - 2, argv + 2);
    if (strcmp(cmd, "check") == 0) return ct_cmd_check(argc - 2, argv + 2);
    if (strcmp(cmd, "show") == 0) return ct_cmd_show(argc - 2, argv + 2);
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
        usage(stdout);
        return CT_EXIT_OK;
    }
    if (strcmp(cmd, "--version") == 0) {
        printf("cutrain %s\n", CUTRAIN_VERSION);
        return CT_EXIT_OK;
    }
    ct_error err;
    ct_error_clear(&err);
    ct_fail(&err, CT_EXIT_USAGE, "unknown command '%.200s' (expected train, eval, bench, check or show; see cutrain --help)",
            cmd);
    return ct_cli_report(&err);
}

/* What a command printed on stdout (the figures of bench, the summary of
 * train) is part of its result: a write that failed (a full disk, a closed
 * pipe) fails the command, as it already does in show and check, which say
 * so themselves. */
int main(int argc, char **argv) {
    /* A closed stdin, stdout or stderr would hand its number to the first
     * file opened, and the terminal's lines would land in the JSONL log. */
    for (int fd = 0; fd <= 2; ++fd)
        if (fcntl(fd, F_GETFD) < 0 && errno == EBADF) {
            int null = open("/dev/null", O_RDWR);
            if (null >= 0 && null != fd) {
                dup2(null, fd);
                close(null);
            }
        }
    /* A file-size limit (ulimit -f), and for the commands that train, a
     * reader that went away (| head), make the write fail (EFBIG, EPIPE),
     * which every output checks, instead of killing the process mid-record
     * with no message, no summary, no checkpoint and a temporary file left
     * behind. show and check only read: for them | head ends them quietly,
     * as it does any Unix filter. */
    signal(SIGXFSZ, SIG_IGN);
    if (argc >= 2 && (strcmp(argv[1], "train") == 0 || strcmp(argv[1], "eval") == 0 || strcmp(argv[1], "bench") == 0))
        signal(SIGPIPE, SIG_IGN);
    int rc = dispatch(argc, argv);
    errno = 0;
    const int flushed = fflush(stdout) == 0;
    const int e = errno;
    if ((!flushed || ferror(stdout)) && rc == CT_EXIT_OK) {
        /* errno is the flush's; an earlier failed write left only the flag */
        fprintf(stderr, "cutrain: error: stdout: write failed%s%s\n", e ? ": " : "", e ? strerror(e) : "");
        rc = CT_EXIT_FAILURE;
    }
    return rc;
}
