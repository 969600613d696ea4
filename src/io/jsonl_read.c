/* JSONL logs: validate every line, index the records (see jsonl_read.h). */
#include "src/io/jsonl_read.h"
#include "src/io/memory_limit.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *const kind_names[] = {"step", "epoch", "diagnosis", "summary"};

static ct_rec_kind kind_of(const ct_json_doc *d, int type_tok) {
    for (int k = 0; k < CT_REC_OTHER; k++)
        if (ct_json_string_is(d, (uint32_t)type_tok, kind_names[k])) return (ct_rec_kind)k;
    return CT_REC_OTHER;
}

static const char *kind_word(ct_json_kind k) {
    switch (k) {
    case CT_JSON_NULL: return "null";
    case CT_JSON_FALSE:
    case CT_JSON_TRUE: return "a boolean";
    case CT_JSON_NUMBER: return "a number";
    case CT_JSON_STRING: return "a string";
    case CT_JSON_ARRAY: return "an array";
    case CT_JSON_OBJECT: return "an object";
    }
    return "a value";
}

/* A whole-number field of the record, or -1 with err naming it. */
static int whole(const ct_json_doc *d, const char *file, uint32_t lineno, const char *type, const char *field,
                 uint64_t *out, ct_error *err) {
    const int t = ct_json_find(d, 0, field);
    if (t < 0 || ct_json_u64(d, (uint32_t)t, out))
        return ct_fail(err, CT_EXIT_BAD_INPUT, "%s: line %u: %s record without a whole-number \"%s\" field", file,
                       lineno, type, field);
    return 0;
}

/* The fields that identify a record: what the comparison aligns on. */
static int identify(const ct_json_doc *d, const char *file, ct_jsonl_line *ln, ct_error *err) {
    if (d->tok[0].kind != CT_JSON_OBJECT)
        return ct_fail(err, CT_EXIT_BAD_INPUT, "%s: line %u: expected a JSON object (one record per line), got %s",
                       file, ln->lineno, kind_word(d->tok[0].kind));
    const int type = ct_json_find(d, 0, "type");
    if (type < 0 || d->tok[type].kind != CT_JSON_STRING)
        return ct_fail(err, CT_EXIT_BAD_INPUT,
                       "%s: line %u: no \"type\" string (expected a cutrain record: step, epoch, diagnosis or summary)",
                       file, ln->lineno);
    ln->kind = kind_of(d, type);
    switch (ln->kind) {
    case CT_REC_STEP:
        return whole(d, file, ln->lineno, "step", "step", &ln->step, err) ||
                       whole(d, file, ln->lineno, "step", "epoch", &ln->epoch, err)
                   ? -1
                   : 0;
    case CT_REC_EPOCH: return whole(d, file, ln->lineno, "epoch", "epoch", &ln->epoch, err);
    case CT_REC_DIAGNOSIS: {
        const int code = ct_json_find(d, 0, "code");
        if (code < 0 || d->tok[code].kind != CT_JSON_STRING)
            return ct_fail(err, CT_EXIT_BAD_INPUT, "%s: line %u: diagnosis record without a \"code\" string", file,
                           ln->lineno);
        ln->code_off = d->tok[code].start;
        ln->code_len = d->tok[code].len;
        return whole(d, file, ln->lineno, "diagnosis", "step", &ln->step, err);
    }
    default: return 0;
    }
}

/* Room for one more line: doubles, so the array never exceeds twice the
 * lines accepted so far (each at least 13 bytes of valid input: {"type":"x"}). */
static int grow(ct_jsonl_file *f, ct_error *err) {
    if (f->n_lines < f->cap) return 0;
    const size_t cap = f->cap ? 2 * f->cap : 64;
    ct_jsonl_line *p = realloc(f->lines, cap * sizeof *p);
    if (!p) return ct_fail(err, CT_EXIT_FAILURE, "%s: out of memory indexing %zu lines", f->name, cap);
    f->lines = p;
    f->cap = cap;
    return 0;
}

static void reset(ct_jsonl_file *f) {
    free(f->lines);
    free(f->owned);
    memset(f, 0, sizeof *f);
}

static int index_lines(ct_jsonl_file *f, int allow_cut_tail, ct_json_doc *doc, ct_error *err) {
    const char *s = f->bytes;
    size_t pos = 0;
    for (uint32_t lineno = 1; pos < f->size; lineno++) {
        const char *nl = memchr(s + pos, '\n', f->size - pos);
        const size_t len = nl ? (size_t)(nl - (s + pos)) : f->size - pos;
        if (!nl && allow_cut_tail) {
            f->cut_tail = len;
            break;
        }
        if (!nl)
            return ct_fail(err, CT_EXIT_BAD_INPUT,
                           "%s: line %u: truncated (the last line does not end with a newline; was the run killed "
                           "while writing?)",
                           f->name, lineno);
        if (len == 0 || (len == 1 && s[pos] == '\r'))
            return ct_fail(err, CT_EXIT_BAD_INPUT, "%s: line %u: empty line (expected one JSON object per line)",
                           f->name, lineno);
        if (lineno == UINT32_MAX) return ct_fail(err, CT_EXIT_BAD_INPUT, "%s: too many lines", f->name);
        ct_json_syntax syn = {0, NULL};
        if (ct_json_parse(s + pos, len, doc, &syn))
            return ct_fail(err, CT_EXIT_BAD_INPUT, "%s: line %u, column %zu: %s (expected one JSON object per line)",
                           f->name, lineno, syn.pos + 1, syn.what);
        ct_jsonl_line ln = {pos, (uint32_t)len, lineno, CT_REC_OTHER, 0, 0, 0, 0};
        if (identify(doc, f->name, &ln, err) || grow(f, err)) return -1;
        f->lines[f->n_lines++] = ln;
        f->n_kind[ln.kind]++;
        pos += len + 1;
    }
    return 0;
}

static int index_bytes(const char *bytes, size_t len, const char *name, int allow_cut_tail, ct_jsonl_file *out,
                       ct_error *err) {
    memset(out, 0, sizeof *out);
    snprintf(out->name, sizeof out->name, "%s", name ? name : "<input>");
    out->bytes = bytes;
    out->size = len;
    ct_json_doc *doc = malloc(sizeof *doc);
    if (!doc) return ct_fail(err, CT_EXIT_FAILURE, "%s: out of memory", out->name);
    const int rc = index_lines(out, allow_cut_tail, doc, err);
    free(doc);
    if (rc) {
        char keep[sizeof out->name];
        memcpy(keep, out->name, sizeof keep);
        reset(out);
        memcpy(out->name, keep, sizeof keep);
    }
    return rc;
}

int ct_jsonl_index(const char *bytes, size_t len, const char *name, ct_jsonl_file *out, ct_error *err) {
    return index_bytes(bytes, len, name, 0, out, err);
}

static int read_log(const char *path, int allow_cut_tail, ct_jsonl_file *out, ct_error *err) {
    memset(out, 0, sizeof *out);
    if (!path[0]) return ct_fail(err, CT_EXIT_USAGE, "expected the path of a JSONL log, got an empty argument");
    /* O_NONBLOCK: opening a FIFO with no writer would otherwise wait forever
     * before the regular-file check could refuse it. */
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) return ct_fail(err, CT_EXIT_BAD_INPUT, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) || !S_ISREG(st.st_mode)) {
        close(fd);
        return ct_fail(err, CT_EXIT_BAD_INPUT, "%s: not a regular file (expected a JSONL log)", path);
    }
    FILE *fp = fdopen(fd, "rb");
    if (!fp) {
        int e = errno;
        close(fd);
        return ct_fail(err, CT_EXIT_FAILURE, "%s: cannot read: %s", path, strerror(e));
    }
    /* No size is too large for a log: train writes about 300 bytes a step,
     * so a GiB is a few million steps (minutes of a small model). What cannot
     * work is a log larger than the memory it is read into. */
    const uint64_t memory = ct_memory_limit(NULL, NULL);
    if (memory && (uint64_t)st.st_size > memory) {
        fclose(fp);
        return ct_fail(err, CT_EXIT_FAILURE,
                       "%s: %" PRIu64 " bytes: a log is read whole, and this process may use %" PRIu64 " bytes of memory",
                       path, (uint64_t)st.st_size, memory);
    }
    const size_t size = (size_t)st.st_size;
    char *buf = malloc(size ? size : 1);
    if (!buf) {
        fclose(fp);
        return ct_fail(err, CT_EXIT_FAILURE, "%s: out of memory reading %zu bytes", path, size);
    }
    const size_t got = fread(buf, 1, size, fp);
    const int bad = ferror(fp);
    fclose(fp);
    if (bad || got != size) {
        free(buf);
        return ct_fail(err, CT_EXIT_BAD_INPUT, "%s: read failed (%zu of %zu bytes)", path, got, size);
    }
    if (index_bytes(buf, size, path, allow_cut_tail, out, err)) {
        free(buf);
        return -1;
    }
    out->owned = buf;
    return 0;
}

int ct_jsonl_read(const char *path, ct_jsonl_file *out, ct_error *err) { return read_log(path, 0, out, err); }

int ct_jsonl_read_cut(const char *path, ct_jsonl_file *out, ct_error *err) { return read_log(path, 1, out, err); }

void ct_jsonl_free(ct_jsonl_file *f) {
    if (f) reset(f);
}

int ct_jsonl_parse_line(const ct_jsonl_file *f, size_t i, ct_json_doc *doc) {
    if (i >= f->n_lines) return -1;
    return ct_json_parse(f->bytes + f->lines[i].offset, f->lines[i].len, doc, NULL);
}
