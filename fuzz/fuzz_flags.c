/* The command lines of `cutrain train`, `eval` and `bench`, run in-process.
 * The input is text, one argument per line; the first line names the
 * command. Each run must end with an exit status from 0 to 5 (README), and
 * must never reach real work: each runs in an empty temporary directory, so
 * the default --data (data/mnist) is missing, and inputs that name anything
 * "mnist" are skipped, so a run stops at the data at the latest. */
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "fuzz/fuzz_support.h"
#include "src/cli/commands.h"

#define MAX_ARGS 64

static int names_mnist(const char *s) {
    for (; *s; ++s)
        if (strncasecmp(s, "mnist", 5) == 0) return 1;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size > 4096) return 0;
    char *text = malloc(size + 1);
    if (!text) ct_fuzz_fail("out of memory");
    memcpy(text, data, size);
    text[size] = '\0';
    char *argv[MAX_ARGS + 1];
    int argc = 0;
    for (char *line = text, *next; line && argc < MAX_ARGS; line = next) {
        next = strchr(line, '\n');
        if (next) *next++ = '\0';
        argv[argc++] = line;
    }
    argv[argc] = NULL;
    int skip = argc < 1;
    for (int i = 0; i < argc && !skip; ++i) skip = names_mnist(argv[i]);
    /* Back to the caller's directory afterwards: libFuzzer reads and writes
     * its corpus by relative paths between runs. */
    int here = open(".", O_RDONLY | O_DIRECTORY);
    if (here < 0 || chdir(ct_fuzz_dir()) != 0) ct_fuzz_fail("cannot enter %s", ct_fuzz_dir());
    int rc = 0;
    if (!skip && strcmp(argv[0], "train") == 0) rc = ct_cmd_train(argc - 1, argv + 1);
    else if (!skip && strcmp(argv[0], "eval") == 0) rc = ct_cmd_eval(argc - 1, argv + 1);
    else if (!skip && strcmp(argv[0], "bench") == 0) rc = ct_cmd_bench(argc - 1, argv + 1);
    if (fchdir(here) != 0) ct_fuzz_fail("cannot return to the starting directory");
    close(here);
    if (rc < 0 || rc > CT_EXIT_INTERRUPTED) ct_fuzz_fail("exit status %d for %s", rc, argv[0]);
    free(text);
    return 0;
}
