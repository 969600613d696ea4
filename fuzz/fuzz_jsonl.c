/* JSONL logs as `cutrain check` reads them (run logs and goldens): the
 * indexer takes raw bytes, refuses with one line naming the file, line and
 * column, or indexes lines that all lie inside the input and all re-parse;
 * then the whole `cutrain check` runs in-process with the input as both the
 * run and the golden, which must never report a difference (a log equals
 * itself) and must end with 0 or 3; and `cutrain show`'s account of the log,
 * read as show reads it (a last line cut short allowed), is written to
 * /dev/null: it must succeed, or refuse with one line naming the file (show
 * type-checks the fields it prints, so a record with a string where a number
 * belongs is bad input, not a crash). */
#include <stdlib.h>
#include <string.h>

#include "fuzz/fuzz_support.h"
#include "src/cli/commands.h"
#include "src/io/jsonl_read.h"
#include "src/log/show.h"

static FILE *null_out(void) {
    static FILE *f;
    if (!f) f = fopen("/dev/null", "w");
    if (!f) ct_fuzz_fail("cannot open /dev/null");
    return f;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size > (1u << 20)) return 0;
    ct_jsonl_file f;
    ct_error err;
    ct_error_clear(&err);
    const int indexed = ct_jsonl_index((const char *)data, size, "fuzz.jsonl", &f, &err) == 0;
    const size_t indexed_lines = indexed ? f.n_lines : 0;
    if (!indexed) {
        ct_fuzz_check_error(&err, "fuzz.jsonl", NULL);
    } else {
        for (size_t i = 0; i < f.n_lines; ++i) {
            const ct_jsonl_line *l = &f.lines[i];
            if (l->offset > size || l->len > size - l->offset)
                ct_fuzz_fail("line %zu: [%zu, +%u) outside the %zu input bytes", i, l->offset, l->len, size);
            ct_json_doc *doc = malloc(sizeof *doc);
            if (!doc) ct_fuzz_fail("out of memory");
            if (ct_jsonl_parse_line(&f, i, doc) != 0) ct_fuzz_fail("indexed line %zu does not parse again", i);
            free(doc);
        }
        ct_jsonl_free(&f);
    }
    const char *path = ct_fuzz_file(0, data, size);
    char *argv[] = {(char *)path, "--golden", (char *)path, NULL};
    int rc = ct_cmd_check(3, argv);
    if (rc != CT_EXIT_OK && rc != CT_EXIT_BAD_INPUT) ct_fuzz_fail("check of a log against itself: exit status %d", rc);
    if (!indexed && rc == CT_EXIT_OK) ct_fuzz_fail("check accepted a log the indexer refused");

    ct_jsonl_file cut;
    ct_error_clear(&err);
    if (ct_jsonl_read_cut(path, &cut, &err) == 0) {
        if (indexed && (cut.n_lines != indexed_lines || cut.cut_tail))
            ct_fuzz_fail("the tolerant reader indexed %zu lines (cut %zu) of a log of %zu", cut.n_lines,
                         cut.cut_tail, indexed_lines);
        const int shown = ct_show_log(&cut, null_out(), &err);
        if (shown != 0) ct_fuzz_check_error(&err, path, NULL);
        ct_jsonl_free(&cut);
    } else {
        if (indexed) ct_fuzz_fail("the tolerant reader refused a log the strict one indexed: %s", err.msg);
        ct_fuzz_check_error(&err, path, NULL);
    }
    return 0;
}
