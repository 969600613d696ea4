/* safetensors writing: the tensors and metadata are checked as the reader
 * will check them (names, shapes, UTF-8, duplicates), the header is built
 * in the reference writer's layout, and the file is written all or nothing
 * (ct_atomic_file). The layout is described in include/cutrain/checkpoint.h. */
#include "cutrain/checkpoint.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "src/io/atomic_file.h"
#include "src/io/safetensors_format.h"

static int write_fail(ct_error *err, int code, const char *path, const char *fmt, ...) CT_PRINTF(4, 5);

static int write_fail(ct_error *err, int code, const char *path, const char *fmt, ...) {
    char what[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    return ct_fail(err, code, "%s: cannot write checkpoint: %s", path, what);
}

typedef struct strbuf {
    char *p;
    size_t len, cap;
    int oom; /* sticky, so the builder can append freely and check once */
} strbuf;

static void sb_putn(strbuf *b, const char *s, size_t n) {
    if (b->oom || n == 0) return;
    if (n > b->cap - b->len) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap - b->len < n) {
            if (cap > SIZE_MAX / 2) {
                b->oom = 1;
                return;
            }
            cap *= 2;
        }
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
}

static void sb_puts(strbuf *b, const char *s) { sb_putn(b, s, strlen(s)); }

static void sb_putc(strbuf *b, char c) { sb_putn(b, &c, 1); }

static void sb_put_u64(strbuf *b, uint64_t v) {
    char num[24];
    snprintf(num, sizeof num, "%llu", (unsigned long long)v);
    sb_puts(b, num);
}

/* Escapes as serde_json (the reference writer) does, so identical input
 * gives identical bytes. */
static void sb_put_json_string(strbuf *b, const char *s) {
    sb_putc(b, '"');
    for (const unsigned char *p = (const unsigned char *)s; *p; ++p) {
        switch (*p) {
        case '"': sb_puts(b, "\\\""); break;
        case '\\': sb_puts(b, "\\\\"); break;
        case '\b': sb_puts(b, "\\b"); break;
        case '\f': sb_puts(b, "\\f"); break;
        case '\n': sb_puts(b, "\\n"); break;
        case '\r': sb_puts(b, "\\r"); break;
        case '\t': sb_puts(b, "\\t"); break;
        default:
            if (*p < 0x20) {
                char u[8];
                snprintf(u, sizeof u, "\\u%04x", (unsigned)*p);
                sb_puts(b, u);
            } else {
                sb_putc(b, (char)*p);
            }
        }
    }
    sb_putc(b, '"');
}

/* Length of a string held in a fixed array, or -1 when the array holds no
 * terminating NUL (a caller that filled all of it). */
static long bounded_len(const char *s, size_t cap) {
    const char *end = memchr(s, '\0', cap);
    return end ? (long)(end - s) : -1;
}

static int validate_tensor(const char *path, const ct_st_tensor *t, int i, ct_error *err) {
    long len = bounded_len(t->name, sizeof t->name);
    if (len < 0)
        return write_fail(err, CT_EXIT_FAILURE, path, "tensor %d has a name of %d bytes or more", i,
                          CT_ST_MAX_NAME);
    if (len == 0) return write_fail(err, CT_EXIT_FAILURE, path, "tensor %d has an empty name", i);
    if (ct_st_utf8_invalid_at((const unsigned char *)t->name, (size_t)len) != (size_t)len)
        return write_fail(err, CT_EXIT_FAILURE, path, "tensor %d has a name that is not valid UTF-8", i);
    /* The reader would take this tensor for the metadata. */
    if (strcmp(t->name, "__metadata__") == 0)
        return write_fail(err, CT_EXIT_FAILURE, path, "the name __metadata__ is reserved for metadata");
    if (t->rank < 0 || t->rank > CT_ST_MAX_RANK)
        return write_fail(err, CT_EXIT_FAILURE, path, "tensor %s has rank %d; expected 0 to %d", t->name,
                          t->rank, CT_ST_MAX_RANK);
    uint64_t count;
    if (ct_st_shape_count(t->shape, t->rank, &count) != 0 || count > UINT64_MAX / 4)
        return write_fail(err, CT_EXIT_FAILURE, path, "tensor %s has a shape whose size overflows 64 bits",
                          t->name);
    if (count != t->count)
        return write_fail(err, CT_EXIT_FAILURE, path, "tensor %s has count %llu but its shape holds %llu",
                          t->name, (unsigned long long)t->count, (unsigned long long)count);
    if (count > 0 && !t->data)
        return write_fail(err, CT_EXIT_FAILURE, path, "tensor %s has no data", t->name);
    return 0;
}

static int validate_tensors(const char *path, const ct_st_tensor *t, int n, ct_error *err) {
    uint64_t total = 0;
    for (int i = 0; i < n; ++i) {
        if (validate_tensor(path, &t[i], i, err) != 0) return -1;
        if (t[i].count * 4 > UINT64_MAX - total)
            return write_fail(err, CT_EXIT_FAILURE, path, "the tensors total more than 2^64 bytes");
        total += t[i].count * 4;
    }
    if (n < 2) return 0;
    const char **names = malloc((size_t)n * sizeof *names);
    if (!names) return write_fail(err, CT_EXIT_FAILURE, path, "out of memory");
    for (int i = 0; i < n; ++i) names[i] = t[i].name;
    const char *dup = ct_st_first_duplicate(names, (size_t)n);
    int rc = dup ? write_fail(err, CT_EXIT_FAILURE, path, "duplicate tensor name \"%s\"", dup) : 0;
    free(names);
    return rc;
}

static int validate_meta(const char *path, const ct_st_meta *m, int n, ct_error *err) {
    for (int i = 0; i < n; ++i) {
        long klen = bounded_len(m[i].key, sizeof m[i].key);
        long vlen = bounded_len(m[i].value, sizeof m[i].value);
        if (klen < 0 || vlen < 0)
            return write_fail(err, CT_EXIT_FAILURE, path, "metadata entry %d is not NUL-terminated", i);
        if (ct_st_utf8_invalid_at((const unsigned char *)m[i].key, (size_t)klen) != (size_t)klen ||
            ct_st_utf8_invalid_at((const unsigned char *)m[i].value, (size_t)vlen) != (size_t)vlen)
            return write_fail(err, CT_EXIT_FAILURE, path, "metadata entry %d is not valid UTF-8", i);
    }
    if (n < 2) return 0;
    const char **keys = malloc((size_t)n * sizeof *keys);
    if (!keys) return write_fail(err, CT_EXIT_FAILURE, path, "out of memory");
    for (int i = 0; i < n; ++i) keys[i] = m[i].key;
    const char *dup = ct_st_first_duplicate(keys, (size_t)n);
    int rc = dup ? write_fail(err, CT_EXIT_FAILURE, path, "duplicate metadata key \"%s\"", dup) : 0;
    free(keys);
    return rc;
}

/* The reference writer's layout: compact JSON, __metadata__ first (and only
 * when there is some), tensors in data order, then spaces up to a multiple
 * of 8 so the data after the 8-byte length starts 8-aligned in the file. */
static int build_header(const ct_st_tensor *t, int n, const ct_st_meta *m, int n_meta, strbuf *b) {
    sb_putc(b, '{');
    if (n_meta > 0) {
        sb_puts(b, "\"__metadata__\":{");
        for (int i = 0; i < n_meta; ++i) {
            if (i) sb_putc(b, ',');
            sb_put_json_string(b, m[i].key);
            sb_putc(b, ':');
            sb_put_json_string(b, m[i].value);
        }
        sb_putc(b, '}');
    }
    uint64_t offset = 0;
    for (int i = 0; i < n; ++i) {
        if (i || n_meta > 0) sb_putc(b, ',');
        sb_put_json_string(b, t[i].name);
        sb_puts(b, ":{\"dtype\":\"F32\",\"shape\":[");
        for (int d = 0; d < t[i].rank; ++d) {
            if (d) sb_putc(b, ',');
            sb_put_u64(b, t[i].shape[d]);
        }
        sb_puts(b, "],\"data_offsets\":[");
        sb_put_u64(b, offset);
        sb_putc(b, ',');
        offset += t[i].count * 4;
        sb_put_u64(b, offset);
        sb_puts(b, "]}");
    }
    sb_putc(b, '}');
    while (!b->oom && b->len % CT_ST_HEADER_ALIGN) sb_putc(b, ' ');
    return b->oom ? -1 : 0;
}

/* fwrite need not set errno; a failure must still say something. */
static int io_errno(void) { return errno ? errno : EIO; }

static int write_floats_le(FILE *f, const float *data, uint64_t count) {
    if (ct_st_host_is_little_endian()) {
        const unsigned char *p = (const unsigned char *)data;
        uint64_t left = count * 4;
        while (left > 0) {
            /* Chunked so a huge tensor never needs a size_t wider than 32 bits. */
            size_t chunk = left > (1u << 30) ? (size_t)(1u << 30) : (size_t)left;
            if (fwrite(p, 1, chunk, f) != chunk) return -1;
            p += chunk;
            left -= chunk;
        }
        return 0;
    }
    uint32_t buf[1024];
    for (uint64_t i = 0; i < count;) {
        size_t k = count - i < 1024 ? (size_t)(count - i) : 1024;
        memcpy(buf, data + i, k * 4);
        for (size_t j = 0; j < k; ++j) buf[j] = ct_st_swap32(buf[j]);
        if (fwrite(buf, 4, k, f) != k) return -1;
        i += k;
    }
    return 0;
}

static int write_contents(FILE *f, const strbuf *hdr, const ct_st_tensor *t, int n) {
    unsigned char len[8];
    ct_st_store_le64(len, hdr->len);
    if (fwrite(len, 1, sizeof len, f) != sizeof len) return -1;
    if (fwrite(hdr->p, 1, hdr->len, f) != hdr->len) return -1;
    for (int i = 0; i < n; ++i)
        if (t[i].count > 0 && write_floats_le(f, t[i].data, t[i].count) != 0) return -1;
    return 0;
}

static const char *kind_of(mode_t m) {
    if (S_ISLNK(m)) return "a symbolic link";
    if (S_ISDIR(m)) return "a directory";
    if (S_ISFIFO(m)) return "a FIFO";
    if (S_ISCHR(m) || S_ISBLK(m)) return "a device";
    if (S_ISSOCK(m)) return "a socket";
    return "not a regular file";
}

int ct_safetensors_check_destination(const char *path, ct_error *err) {
    struct stat st;
    if (lstat(path, &st) != 0) return 0; /* a new name */
    if (!S_ISREG(st.st_mode))
        return write_fail(err, CT_EXIT_BAD_INPUT, path,
                          "it is %s; expected a regular file or a new name (a checkpoint is written beside "
                          "the path and renamed over it, which would replace it)",
                          kind_of(st.st_mode));
    if (access(path, W_OK) != 0)
        return write_fail(err, CT_EXIT_BAD_INPUT, path, "the file is read-only (%s)", strerror(errno));
    return 0;
}

static int write_atomically(const char *path, const strbuf *hdr, const ct_st_tensor *t, int n,
                            ct_error *err) {
    if (ct_safetensors_check_destination(path, err)) return -1;
    ct_atomic_file af;
    int e = ct_atomic_open(&af, path);
    /* Not being able to create the file at all is a bad output path (like a
     * bad log path); failing part way is a runtime failure (disk full). */
    if (e) return write_fail(err, e == ENOMEM ? CT_EXIT_FAILURE : CT_EXIT_BAD_INPUT, path, "%s", strerror(e));
    errno = 0;
    if (write_contents(af.f, hdr, t, n) != 0) {
        e = io_errno();
        ct_atomic_abort(&af);
    } else {
        e = ct_atomic_commit(&af, path);
    }
    return e ? write_fail(err, CT_EXIT_FAILURE, path, "%s", strerror(e)) : 0;
}

int ct_safetensors_write(const char *path, const ct_st_tensor *tensors, int n_tensors, const ct_st_meta *meta,
                         int n_meta, ct_error *err) {
    if (!path || !*path) return ct_fail(err, CT_EXIT_FAILURE, "cannot write checkpoint: empty path");
    if (n_tensors < 0 || n_meta < 0 || (n_tensors > 0 && !tensors) || (n_meta > 0 && !meta))
        return write_fail(err, CT_EXIT_FAILURE, path, "invalid tensor or metadata list");
    if (validate_tensors(path, tensors, n_tensors, err) != 0) return -1;
    if (validate_meta(path, meta, n_meta, err) != 0) return -1;
    strbuf hdr = {0};
    if (build_header(tensors, n_tensors, meta, n_meta, &hdr) != 0) {
        free(hdr.p);
        return write_fail(err, CT_EXIT_FAILURE, path, "out of memory");
    }
    int rc = write_atomically(path, &hdr, tensors, n_tensors, err);
    free(hdr.p);
    return rc;
}

