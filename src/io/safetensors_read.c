/* safetensors reading; the layout, and what the reader refuses, are
 * described in include/cutrain/checkpoint.h.
 *
 * The reader trusts nothing in the file: the header length is checked
 * against the file size (and the reference implementation's 100 MB limit)
 * before anything is allocated, the JSON is parsed by a small strict parser
 * that knows the one shape a safetensors header has (so nesting can never
 * recurse), and every tensor's range is checked against its shape, the data
 * section and the other tensors before a pointer into the data is handed
 * out. Every error names the file first: "<path>: <what is wrong>". */
#include "cutrain/checkpoint.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "src/io/json.h" /* ct_utf8_encode */
#include "src/io/safetensors_format.h"

static int io_errno(void) { return errno ? errno : EIO; }

typedef struct st_range {
    uint64_t begin, end;
} st_range;

typedef struct st_reader {
    const char *path;
    ct_error *err;
    FILE *f;
    uint64_t file_size;
    char *header; /* header_len bytes, not NUL-terminated */
    size_t header_len;
    size_t pos; /* JSON cursor into header */
    uint64_t data_size;
    ct_st_tensor *tensors;
    st_range *ranges; /* data_offsets of tensors[i] */
    int n_tensors, cap_tensors;
    ct_st_meta *meta;
    int n_meta, cap_meta;
    int seen_meta;
    void *blob;
} st_reader;

static int rfail(st_reader *r, const char *fmt, ...) CT_PRINTF(2, 3);
static int jfail(st_reader *r, const char *fmt, ...) CT_PRINTF(2, 3);

static int rfail(st_reader *r, const char *fmt, ...) {
    char what[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    return ct_fail(r->err, CT_EXIT_BAD_INPUT, "%s: %s", r->path, what);
}

static int out_of_memory(st_reader *r, const char *what) {
    return ct_fail(r->err, CT_EXIT_FAILURE, "%s: out of memory reading %s", r->path, what);
}

/* A JSON syntax error, located so the header can be inspected by hand. */
static int jfail(st_reader *r, const char *fmt, ...) {
    char what[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    return rfail(r, "malformed header JSON at header byte %zu: %s", r->pos, what);
}

static int peek(const st_reader *r) {
    return r->pos < r->header_len ? (unsigned char)r->header[r->pos] : -1;
}

static int jfail_expected(st_reader *r, const char *expected) {
    int c = peek(r);
    if (c < 0) return jfail(r, "expected %s, found the end of the header", expected);
    if (c >= 0x20 && c < 0x7f) return jfail(r, "expected %s, found '%c'", expected, c);
    return jfail(r, "expected %s, found byte 0x%02x", expected, (unsigned)c);
}

static void skip_ws(st_reader *r) {
    for (int c = peek(r); c == ' ' || c == '\t' || c == '\n' || c == '\r'; c = peek(r)) r->pos++;
}

static int expect_char(st_reader *r, char c, const char *expected) {
    skip_ws(r);
    if (peek(r) != (unsigned char)c) return jfail_expected(r, expected);
    r->pos++;
    return 0;
}

/* After a member: 1 when another follows (',' consumed), 0 at the closing
 * bracket (consumed), -1 on anything else. */
static int next_member(st_reader *r, char close, const char *expected) {
    skip_ws(r);
    int c = peek(r);
    if (c == ',' || c == (unsigned char)close) {
        r->pos++;
        return c == ',';
    }
    jfail_expected(r, expected);
    return -1;
}

static int parse_hex4(st_reader *r, uint32_t *out) {
    uint32_t v = 0;
    for (int i = 0; i < 4; ++i) {
        int c = peek(r);
        uint32_t d;
        if (c >= '0' && c <= '9')
            d = (uint32_t)(c - '0');
        else if (c >= 'a' && c <= 'f')
            d = (uint32_t)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F')
            d = (uint32_t)(c - 'A' + 10);
        else
            return jfail_expected(r, "4 hex digits after \\u");
        v = (v << 4) | d;
        r->pos++;
    }
    *out = v;
    return 0;
}

/* \uXXXX, with UTF-16 surrogate pairs joined; the cursor is on the 'u'. */
static int parse_unicode_escape(st_reader *r, char *out, size_t *n) {
    r->pos++;
    uint32_t cp = 0;
    if (parse_hex4(r, &cp) != 0) return -1;
    if (cp >= 0xdc00 && cp <= 0xdfff) return jfail(r, "unpaired UTF-16 surrogate \\u%04x", (unsigned)cp);
    if (cp >= 0xd800 && cp <= 0xdbff) {
        if (r->header_len - r->pos < 2 || r->header[r->pos] != '\\' || r->header[r->pos + 1] != 'u')
            return jfail(r, "unpaired UTF-16 surrogate \\u%04x", (unsigned)cp);
        r->pos += 2;
        uint32_t lo = 0;
        if (parse_hex4(r, &lo) != 0) return -1;
        if (lo < 0xdc00 || lo > 0xdfff) return jfail(r, "unpaired UTF-16 surrogate \\u%04x", (unsigned)cp);
        cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
    }
    /* Names and values become C strings: a NUL would silently cut them. */
    if (cp == 0) return jfail(r, "\\u0000 in a string");
    *n = ct_utf8_encode(cp, out);
    return 0;
}

/* One escape sequence; the cursor is on the backslash. */
static int parse_escape(st_reader *r, char *out, size_t *n) {
    r->pos++;
    int c = peek(r);
    *n = 1;
    switch (c) {
    case '"': case '\\': case '/': out[0] = (char)c; break;
    case 'b': out[0] = '\b'; break;
    case 'f': out[0] = '\f'; break;
    case 'n': out[0] = '\n'; break;
    case 'r': out[0] = '\r'; break;
    case 't': out[0] = '\t'; break;
    case 'u': return parse_unicode_escape(r, out, n);
    default: return jfail_expected(r, "an escape character after '\\'");
    }
    r->pos++;
    return 0;
}

/* Decodes a JSON string into buf (at most cap-1 bytes and a NUL); `what`
 * names it in the message when it does not fit. The header was checked to
 * be UTF-8 as a whole, so raw bytes are copied as they are. */
static int parse_string(st_reader *r, char *buf, size_t cap, const char *what) {
    skip_ws(r);
    if (peek(r) != '"') return jfail_expected(r, "a string");
    r->pos++;
    size_t len = 0;
    for (;;) {
        int c = peek(r);
        char bytes[4];
        size_t k = 1;
        if (c < 0) return jfail(r, "unterminated string");
        if (c == '"') break;
        if (c == '\\') {
            if (parse_escape(r, bytes, &k) != 0) return -1;
        } else if (c < 0x20) {
            return jfail(r, "control character 0x%02x inside a string", (unsigned)c);
        } else {
            bytes[0] = (char)c;
            r->pos++;
        }
        if (k > cap - 1 - len) return rfail(r, "%s in the header is longer than %zu bytes", what, cap - 1);
        memcpy(buf + len, bytes, k);
        len += k;
    }
    r->pos++;
    buf[len] = '\0';
    return 0;
}

static int parse_u64(st_reader *r, uint64_t *out) {
    skip_ws(r);
    int c = peek(r);
    if (c == '-') return jfail(r, "negative number");
    if (c < '0' || c > '9') return jfail_expected(r, "a non-negative integer");
    size_t start = r->pos;
    uint64_t v = 0;
    for (c = peek(r); c >= '0' && c <= '9'; c = peek(r)) {
        unsigned d = (unsigned)(c - '0');
        if (v > (UINT64_MAX - d) / 10) return jfail(r, "integer larger than 2^64-1");
        v = v * 10 + d;
        r->pos++;
    }
    if (r->pos - start > 1 && r->header[start] == '0') {
        r->pos = start;
        return jfail(r, "number with a leading zero");
    }
    if (c == '.' || c == 'e' || c == 'E')
        return jfail(r, "expected an integer, found a fraction or exponent");
    *out = v;
    return 0;
}

/* Stores up to max values but counts them all, so the caller can say how
 * many there were. */
static int parse_u64_array(st_reader *r, uint64_t *out, int max, int *n) {
    if (expect_char(r, '[', "'['") != 0) return -1;
    *n = 0;
    skip_ws(r);
    if (peek(r) == ']') {
        r->pos++;
        return 0;
    }
    for (int more = 1; more;) {
        uint64_t v = 0;
        if (parse_u64(r, &v) != 0) return -1;
        if (*n < max) out[*n] = v;
        ++*n; /* bounded: the header holds at most 50M numbers */
        more = next_member(r, ']', "',' or ']'");
        if (more < 0) return -1;
    }
    return 0;
}

static int parse_dtype(st_reader *r, const char *name) {
    char dtype[16];
    if (parse_string(r, dtype, sizeof dtype, "a dtype") != 0) return -1;
    if (strcmp(dtype, "F32") != 0)
        return rfail(r, "tensor %s has dtype %s; cutrain reads F32 only", name, dtype);
    return 0;
}

static int parse_shape(st_reader *r, ct_st_tensor *t) {
    int rank;
    if (parse_u64_array(r, t->shape, CT_ST_MAX_RANK, &rank) != 0) return -1;
    if (rank > CT_ST_MAX_RANK)
        return rfail(r, "tensor %s has rank %d; cutrain reads rank <= %d", t->name, rank, CT_ST_MAX_RANK);
    t->rank = rank;
    return 0;
}

static int parse_offsets(st_reader *r, const char *name, st_range *range) {
    uint64_t off[2];
    int n;
    if (parse_u64_array(r, off, 2, &n) != 0) return -1;
    if (n != 2) return rfail(r, "tensor %s has %d data_offsets; expected [begin, end]", name, n);
    range->begin = off[0];
    range->end = off[1];
    return 0;
}

/* {"dtype": "F32", "shape": [...], "data_offsets": [b, e]}, in any order,
 * each exactly once and nothing else. */
static int parse_tensor(st_reader *r, ct_st_tensor *t, st_range *range) {
    static const char *const fields[3] = {"dtype", "shape", "data_offsets"};
    int seen[3] = {0, 0, 0};
    if (expect_char(r, '{', "'{' opening a tensor entry") != 0) return -1;
    skip_ws(r);
    int more = peek(r) != '}';
    if (!more) r->pos++;
    while (more) {
        char key[64];
        if (parse_string(r, key, sizeof key, "a tensor field name") != 0) return -1;
        if (expect_char(r, ':', "':'") != 0) return -1;
        int f = 0;
        while (f < 3 && strcmp(key, fields[f]) != 0) ++f;
        if (f == 3) return rfail(r, "tensor %s has unknown field \"%s\"", t->name, key);
        if (seen[f]++) return rfail(r, "tensor %s has field \"%s\" twice", t->name, key);
        int rc = f == 0   ? parse_dtype(r, t->name)
                 : f == 1 ? parse_shape(r, t)
                          : parse_offsets(r, t->name, range);
        if (rc != 0) return -1;
        more = next_member(r, '}', "',' or '}'");
        if (more < 0) return -1;
    }
    for (int f = 0; f < 3; ++f)
        if (!seen[f]) return rfail(r, "tensor %s has no \"%s\"", t->name, fields[f]);
    return 0;
}

static int add_meta(st_reader *r) {
    if (r->n_meta == CT_ST_MAX_META) return rfail(r, "more than %d metadata entries", CT_ST_MAX_META);
    if (r->n_meta == r->cap_meta) {
        int cap = r->cap_meta ? 2 * r->cap_meta : 8;
        ct_st_meta *m = realloc(r->meta, (size_t)cap * sizeof *m);
        if (!m) return out_of_memory(r, "the metadata");
        r->meta = m;
        r->cap_meta = cap;
    }
    memset(&r->meta[r->n_meta], 0, sizeof r->meta[0]);
    r->n_meta++;
    return 0;
}

/* "__metadata__": {str: str, ...}: the one nested object the format has. */
static int parse_metadata(st_reader *r) {
    if (r->seen_meta++) return rfail(r, "duplicate key \"__metadata__\"");
    if (expect_char(r, '{', "'{' opening __metadata__") != 0) return -1;
    skip_ws(r);
    int more = peek(r) != '}';
    if (!more) r->pos++;
    while (more) {
        if (add_meta(r) != 0) return -1;
        ct_st_meta *m = &r->meta[r->n_meta - 1];
        if (parse_string(r, m->key, sizeof m->key, "a metadata key") != 0) return -1;
        if (expect_char(r, ':', "':'") != 0) return -1;
        if (parse_string(r, m->value, sizeof m->value, "a metadata value") != 0) return -1;
        more = next_member(r, '}', "',' or '}'");
        if (more < 0) return -1;
    }
    return 0;
}

static int add_tensor(st_reader *r, const char *name) {
    if (!*name) return rfail(r, "empty tensor name in the header");
    if (r->n_tensors == CT_ST_MAX_TENSORS) return rfail(r, "more than %d tensors", CT_ST_MAX_TENSORS);
    if (r->n_tensors == r->cap_tensors) {
        int cap = r->cap_tensors ? 2 * r->cap_tensors : 16;
        ct_st_tensor *t = realloc(r->tensors, (size_t)cap * sizeof *t);
        if (!t) return out_of_memory(r, "the header");
        r->tensors = t;
        st_range *g = realloc(r->ranges, (size_t)cap * sizeof *g);
        if (!g) return out_of_memory(r, "the header");
        r->ranges = g;
        r->cap_tensors = cap;
    }
    ct_st_tensor *t = &r->tensors[r->n_tensors];
    memset(t, 0, sizeof *t);
    memcpy(t->name, name, strlen(name) + 1);
    memset(&r->ranges[r->n_tensors], 0, sizeof r->ranges[0]);
    r->n_tensors++;
    return 0;
}

static int parse_member(st_reader *r) {
    char name[CT_ST_MAX_NAME];
    if (parse_string(r, name, sizeof name, "a tensor name") != 0) return -1;
    if (expect_char(r, ':', "':'") != 0) return -1;
    if (strcmp(name, "__metadata__") == 0) return parse_metadata(r);
    if (add_tensor(r, name) != 0) return -1;
    return parse_tensor(r, &r->tensors[r->n_tensors - 1], &r->ranges[r->n_tensors - 1]);
}

static int parse_header(st_reader *r) {
    size_t bad = ct_st_utf8_invalid_at((const unsigned char *)r->header, r->header_len);
    if (bad != r->header_len) return rfail(r, "header is not valid UTF-8 (header byte %zu)", bad);
    skip_ws(r);
    if (peek(r) != '{') return rfail(r, "the header is not a JSON object");
    r->pos++;
    skip_ws(r);
    int more = peek(r) != '}';
    if (!more) r->pos++;
    while (more) {
        if (parse_member(r) != 0) return -1;
        more = next_member(r, '}', "',' or '}'");
        if (more < 0) return -1;
    }
    /* Only the writers' space padding may follow the object. */
    skip_ws(r);
    if (r->pos != r->header_len) return jfail(r, "unexpected text after the header object");
    return 0;
}

/* One tensor's range against its shape and the data section. */
static int check_tensor_range(st_reader *r, ct_st_tensor *t, const st_range *g) {
    if (g->begin > g->end)
        return rfail(r, "tensor %s has data_offsets [%llu, %llu] with begin after end", t->name,
                     (unsigned long long)g->begin, (unsigned long long)g->end);
    if (ct_st_shape_count(t->shape, t->rank, &t->count) != 0)
        return rfail(r, "tensor %s has a shape whose element count overflows 64 bits", t->name);
    uint64_t bytes = g->end - g->begin;
    if (t->count > UINT64_MAX / 4 || t->count * 4 != bytes)
        return rfail(r, "tensor %s has %llu elements but data_offsets [%llu, %llu] span %llu bytes", t->name,
                     (unsigned long long)t->count, (unsigned long long)g->begin, (unsigned long long)g->end,
                     (unsigned long long)bytes);
    /* The data is handed out as float*, straight into the malloc'ed blob. */
    if (g->begin % 4 != 0)
        return rfail(r, "tensor %s starts at data byte %llu, not a multiple of 4", t->name,
                     (unsigned long long)g->begin);
    if (g->end > r->data_size)
        return rfail(r, "tensor %s ends at data byte %llu but the data section is %llu bytes", t->name,
                     (unsigned long long)g->end, (unsigned long long)r->data_size);
    return 0;
}

/* Returns 0 when names[0..n) are distinct; says which is not otherwise. */
static int check_distinct(st_reader *r, const char **names, int n, const char *what) {
    if (n < 2) return 0;
    const char *dup = ct_st_first_duplicate(names, (size_t)n);
    return dup ? rfail(r, "duplicate %s \"%s\"", what, dup) : 0;
}

static int check_unique_names(st_reader *r) {
    int n = r->n_tensors > r->n_meta ? r->n_tensors : r->n_meta;
    if (n < 2) return 0;
    const char **names = malloc((size_t)n * sizeof *names);
    if (!names) return out_of_memory(r, "the header");
    for (int i = 0; i < r->n_tensors; ++i) names[i] = r->tensors[i].name;
    int rc = check_distinct(r, names, r->n_tensors, "tensor name");
    for (int i = 0; i < r->n_meta; ++i) names[i] = r->meta[i].key;
    if (rc == 0) rc = check_distinct(r, names, r->n_meta, "metadata key");
    free(names);
    return rc;
}

typedef struct st_sorted {
    uint64_t begin, end;
    int index;
} st_sorted;

static int cmp_begin(const void *a, const void *b) {
    const st_sorted *x = a, *y = b;
    /* Ties by header order, so the message names the tensors in a stable order. */
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    return (x->index > y->index) - (x->index < y->index);
}

/* Overlap among non-empty ranges (an empty range holds no bytes, so it
 * cannot overlap anything), then bytes past the last tensor, which a
 * well-formed file never has. Gaps between tensors are tolerated. */
static int check_overlap_and_tail(st_reader *r) {
    st_sorted *s = malloc(((size_t)r->n_tensors + 1) * sizeof *s);
    if (!s) return out_of_memory(r, "the header");
    int n = 0;
    uint64_t last_end = 0;
    for (int i = 0; i < r->n_tensors; ++i) {
        if (r->ranges[i].end > last_end) last_end = r->ranges[i].end;
        if (r->ranges[i].begin == r->ranges[i].end) continue;
        s[n++] = (st_sorted){r->ranges[i].begin, r->ranges[i].end, i};
    }
    qsort(s, (size_t)n, sizeof *s, cmp_begin);
    int rc = 0;
    for (int i = 1; i < n && rc == 0; ++i)
        if (s[i].begin < s[i - 1].end)
            rc = rfail(r, "tensors %s and %s overlap", r->tensors[s[i - 1].index].name,
                       r->tensors[s[i].index].name);
    free(s);
    if (rc == 0 && last_end < r->data_size)
        rc = rfail(r, "%llu bytes after the last tensor", (unsigned long long)(r->data_size - last_end));
    return rc;
}

static int check_layout(st_reader *r) {
    if (check_unique_names(r) != 0) return -1;
    for (int i = 0; i < r->n_tensors; ++i)
        if (check_tensor_range(r, &r->tensors[i], &r->ranges[i]) != 0) return -1;
    return check_overlap_and_tail(r);
}

static int read_exact(st_reader *r, void *buf, size_t n) {
    errno = 0;
    if (fread(buf, 1, n, r->f) == n) return 0;
    if (ferror(r->f)) return rfail(r, "cannot read: %s", strerror(io_errno()));
    return rfail(r, "cannot read: the file ended early (changed while reading?)");
}

static int open_input(st_reader *r) {
    /* O_NONBLOCK so that a FIFO given by mistake is refused below instead of
     * hanging in open() until some writer appears; it does nothing to a
     * regular file. */
    int fd = open(r->path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) return rfail(r, "cannot open: %s", strerror(io_errno()));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = io_errno();
        (void)close(fd);
        return rfail(r, "cannot read: %s", strerror(e));
    }
    /* The size checks below mean nothing for a pipe or a directory. */
    if (!S_ISREG(st.st_mode)) {
        (void)close(fd);
        return rfail(r, "not a regular file");
    }
    r->file_size = (uint64_t)st.st_size;
    r->f = fdopen(fd, "rb");
    if (!r->f) {
        int e = io_errno();
        (void)close(fd);
        return rfail(r, "cannot read: %s", strerror(e));
    }
    return 0;
}

/* The length field, checked against the file before anything is allocated. */
static int read_header_length(st_reader *r) {
    if (r->file_size < 8)
        return rfail(r, "file is %llu bytes, too short for the 8-byte header length",
                     (unsigned long long)r->file_size);
    unsigned char len[8];
    if (read_exact(r, len, sizeof len) != 0) return -1;
    uint64_t n = ct_st_load_le64(len);
    if (n > CT_ST_MAX_HEADER)
        return rfail(r, "header length %llu exceeds the %llu-byte limit", (unsigned long long)n,
                     CT_ST_MAX_HEADER);
    if (n > r->file_size - 8)
        return rfail(r, "header length %llu is more than the %llu bytes that follow it",
                     (unsigned long long)n, (unsigned long long)(r->file_size - 8));
    r->header_len = (size_t)n;
    r->data_size = r->file_size - 8 - n;
    return 0;
}

static int read_header(st_reader *r) {
    r->header = malloc(r->header_len ? r->header_len : 1);
    if (!r->header) return out_of_memory(r, "the header");
    return read_exact(r, r->header, r->header_len);
}

/* The whole data section in one blob; the tensors point into it. */
static int read_data(st_reader *r) {
    if (r->data_size > SIZE_MAX)
        return rfail(r, "data section of %llu bytes does not fit in memory",
                     (unsigned long long)r->data_size);
    r->blob = malloc(r->data_size ? (size_t)r->data_size : 1);
    if (!r->blob) return out_of_memory(r, "the tensor data");
    if (read_exact(r, r->blob, (size_t)r->data_size) != 0) return -1;
    int swap = !ct_st_host_is_little_endian();
    for (int i = 0; i < r->n_tensors; ++i) {
        unsigned char *p = (unsigned char *)r->blob + r->ranges[i].begin;
        if (swap) ct_st_swap_floats_in_place(p, r->tensors[i].count);
        r->tensors[i].data = (const float *)(void *)p;
    }
    return 0;
}

static void reader_free(st_reader *r) {
    /* Opened for reading only: a failing fclose loses nothing. */
    if (r->f) (void)fclose(r->f);
    free(r->header);
    free(r->tensors);
    free(r->ranges);
    free(r->meta);
    free(r->blob);
}

int ct_safetensors_read(const char *path, ct_st_file *out, ct_error *err) {
    if (!out)
        return ct_fail(err, CT_EXIT_FAILURE, "%s: no place to read the checkpoint into", path ? path : "");
    memset(out, 0, sizeof *out);
    if (!path || !*path) return ct_fail(err, CT_EXIT_BAD_INPUT, "checkpoint path is empty");
    st_reader r;
    memset(&r, 0, sizeof r);
    r.path = path;
    r.err = err;
    int rc = open_input(&r);
    if (rc == 0) rc = read_header_length(&r);
    if (rc == 0) rc = read_header(&r);
    if (rc == 0) rc = parse_header(&r);
    if (rc == 0) rc = check_layout(&r);
    if (rc == 0) rc = read_data(&r);
    if (rc == 0) {
        out->n_tensors = r.n_tensors;
        out->tensors = r.tensors;
        out->n_meta = r.n_meta;
        out->meta = r.meta;
        out->blob = r.blob;
        r.tensors = NULL;
        r.meta = NULL;
        r.blob = NULL;
    }
    reader_free(&r);
    return rc;
}

const ct_st_tensor *ct_safetensors_find(const ct_st_file *f, const char *name) {
    if (!f || !name) return NULL;
    for (int i = 0; i < f->n_tensors; ++i)
        if (strcmp(f->tensors[i].name, name) == 0) return &f->tensors[i];
    return NULL;
}

const char *ct_safetensors_meta(const ct_st_file *f, const char *key) {
    if (!f || !key) return NULL;
    for (int i = 0; i < f->n_meta; ++i)
        if (strcmp(f->meta[i].key, key) == 0) return f->meta[i].value;
    return NULL;
}

void ct_safetensors_free(ct_st_file *f) {
    if (!f) return;
    free(f->tensors);
    free(f->meta);
    free(f->blob);
    memset(f, 0, sizeof *f);
}
