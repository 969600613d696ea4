/* Reading a JSONL log written by `cutrain train --log-jsonl`: every line
 * validated (strict JSON, one object, a "type", the fields that identify the
 * record), then indexed by line so a comparison can re-parse any record.
 *
 * ct_jsonl_index is the fuzzing entry point: it takes raw bytes and a length,
 * reads nothing outside them, and allocates only in proportion to the valid
 * records it has accepted (never from a count the input claims).
 */
#ifndef CUTRAIN_SRC_IO_JSONL_READ_H
#define CUTRAIN_SRC_IO_JSONL_READ_H

#include <stddef.h>
#include <stdint.h>

#include "cutrain/error.h"
#include "src/io/json.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    CT_REC_STEP = 0,
    CT_REC_EPOCH,
    CT_REC_DIAGNOSIS,
    CT_REC_SUMMARY,
    CT_REC_OTHER, /* a "type" this version does not know: kept, never compared */
    CT_REC_KINDS,
} ct_rec_kind;

typedef struct ct_jsonl_line {
    size_t offset;   /* of the line's first byte in the log's bytes */
    uint32_t len;    /* without the newline                         */
    uint32_t lineno; /* 1-based                                     */
    ct_rec_kind kind;
    uint64_t step;   /* step and diagnosis records                  */
    uint64_t epoch;  /* step and epoch records                      */
    uint32_t code_off, code_len; /* diagnosis: its code's bytes, from the line's start */
} ct_jsonl_line;

typedef struct ct_jsonl_file {
    char name[512];     /* the path, for messages */
    const char *bytes;  /* the whole log (not owned unless == owned) */
    size_t size;
    char *owned;
    ct_jsonl_line *lines;
    size_t n_lines, cap;
    size_t n_kind[CT_REC_KINDS];
    size_t cut_tail;    /* ct_jsonl_read_cut: bytes of a last line without its newline, left out */
} ct_jsonl_file;

/* Validates and indexes bytes[0, len) as a log named `name` (for messages);
 * bytes must outlive out. 0 on success; -1 with err (CT_EXIT_BAD_INPUT:
 * "<name>: line N, column C: <what>") and out left empty. */
int ct_jsonl_index(const char *bytes, size_t len, const char *name, ct_jsonl_file *out, ct_error *err);
/* Reads the file at path, then ct_jsonl_index. The log is held whole in
 * memory: one larger than the memory this process may use (ct_memory_limit:
 * the machine's, or the limit of its cgroup or of one above it) is refused
 * before it is read (CT_EXIT_FAILURE), whatever its size below that (a long
 * run's log passes a GiB). */
int ct_jsonl_read(const char *path, ct_jsonl_file *out, ct_error *err);
/* ct_jsonl_read for a log that may end mid-line (a run killed while
 * writing, or still running): a last line without its newline is left out
 * and its length put in out->cut_tail; every other rule holds. */
int ct_jsonl_read_cut(const char *path, ct_jsonl_file *out, ct_error *err);
void ct_jsonl_free(ct_jsonl_file *f);
/* Parses indexed line i into doc (cannot fail on a line that was indexed;
 * returns -1 only when i is out of range). */
int ct_jsonl_parse_line(const ct_jsonl_file *f, size_t i, ct_json_doc *doc);

#ifdef __cplusplus
}
#endif
#endif
