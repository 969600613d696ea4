/* IDX reader. The whole file is validated before the caller sees a byte:
 * every size is checked against what the file really holds, so a hostile or
 * damaged header can neither make us allocate gigabytes nor read past the
 * data. gzip is recognised by its magic (names lie: mirrors rename files) and
 * decoded with zlib's inflate directly rather than gzread, because gzread
 * reports a stream that ends early as an ordinary end of file. */
#include "cutrain/data.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

#define IDX_IN_CHUNK ((size_t)1 << 16)
/* First buffer for data whose real length we cannot know in advance (gzip,
 * pipes); it doubles as data arrives, so memory stays within 2x of what the
 * file actually delivered, whatever the header claims. */
#define IDX_FIRST_ALLOC ((size_t)1 << 20)
/* Counting trailing bytes stops here: enough for the message, and a device
 * such as /dev/zero must not keep us reading for ever. */
#define IDX_TRAILING_COUNT_CAP ((uint64_t)1 << 30)

typedef struct idx_src {
    const char *path;
    ct_error *err;
    FILE *f;
    int is_gz;
    int is_regular;      /* raw size known from fstat                   */
    uint64_t file_size;
    /* raw: bytes peeked while sniffing the magic, served before the FILE */
    const unsigned char *peek_next;
    size_t peek_avail;
    /* gzip */
    z_stream zs;
    int zs_live;
    int input_eof;
    int member_done;     /* a gzip member ended with a good CRC and length */
    int members;         /* members completed so far                     */
    uint64_t out_since_reset;
    uint64_t compressed_in;
    uint64_t decompressed;
    unsigned char in[IDX_IN_CHUNK];
} idx_src;

static uint32_t be32(const unsigned char *p) {
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static void format_dims(const uint32_t *dims, int rank, char *buf, size_t len) {
    size_t used = 0;
    buf[0] = '\0';
    for (int i = 0; i < rank && used < len; ++i) {
        int n = snprintf(buf + used, len - used, "%s%" PRIu32, i ? " x " : "", dims[i]);
        if (n < 0) return;
        used += (size_t)n;
    }
}

static int read_error(idx_src *s) {
    return ct_fail(s->err, CT_EXIT_BAD_INPUT, "%s: read error: %s", s->path, strerror(errno));
}

/* ---- opening --------------------------------------------------------- */

static int src_start_gzip(idx_src *s, size_t peeked) {
    /* 16 + MAX_WBITS: expect a gzip wrapper and check its CRC and length. */
    if (inflateInit2(&s->zs, 16 + MAX_WBITS) != Z_OK)
        return ct_fail(s->err, CT_EXIT_FAILURE, "%s: cannot start gzip decoding: out of memory",
                       s->path);
    s->zs_live = 1;
    s->zs.next_in = s->in;
    s->zs.avail_in = (uInt)peeked;
    s->compressed_in = peeked;
    return 0;
}

static int src_open(idx_src *s, const char *path, ct_error *err) {
    s->path = path;
    s->err = err;
    s->f = fopen(path, "rb");
    if (!s->f) return ct_fail(err, CT_EXIT_BAD_INPUT, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(s->f), &st) != 0)
        return ct_fail(err, CT_EXIT_BAD_INPUT, "%s: cannot stat: %s", path, strerror(errno));
    if (S_ISDIR(st.st_mode))
        return ct_fail(err, CT_EXIT_BAD_INPUT, "%s: is a directory: expected an IDX file", path);
    s->is_regular = S_ISREG(st.st_mode);
    s->file_size = s->is_regular ? (uint64_t)st.st_size : 0;
    /* Sniff two bytes without seeking, so pipes work too. */
    size_t peeked = fread(s->in, 1, 2, s->f);
    if (peeked < 2 && ferror(s->f)) return read_error(s);
    s->is_gz = peeked == 2 && s->in[0] == 0x1f && s->in[1] == 0x8b;
    if (s->is_gz) return src_start_gzip(s, peeked);
    s->peek_next = s->in;
    s->peek_avail = peeked;
    return 0;
}

static void src_close(idx_src *s) {
    if (s->zs_live) inflateEnd(&s->zs);
    if (s->f) fclose(s->f);
}

/* ---- reading: both return got < n only at a clean end of the data ---- */

static int raw_read(idx_src *s, unsigned char *dst, size_t n, size_t *got) {
    size_t take = n < s->peek_avail ? n : s->peek_avail;
    if (take) memcpy(dst, s->peek_next, take);
    s->peek_next += take;
    s->peek_avail -= take;
    *got = take;
    if (take == n) return 0;
    size_t m = fread(dst + take, 1, n - take, s->f);
    *got += m;
    if (m < n - take && ferror(s->f)) return read_error(s);
    return 0;
}

static int gz_fill(idx_src *s) {
    size_t n = fread(s->in, 1, sizeof s->in, s->f);
    if (n == 0) {
        if (ferror(s->f)) return read_error(s);
        s->input_eof = 1;
    }
    s->zs.next_in = s->in;
    s->zs.avail_in = (uInt)n;
    s->compressed_in += n;
    return 0;
}

static int gz_error(idx_src *s, int rc) {
    if (rc == Z_MEM_ERROR)
        return ct_fail(s->err, CT_EXIT_FAILURE, "%s: out of memory while decompressing", s->path);
    if (rc == Z_BUF_ERROR)
        return ct_fail(s->err, CT_EXIT_BAD_INPUT,
                       "%s: truncated gzip stream: it ends after %" PRIu64
                       " compressed bytes (%" PRIu64
                       " decompressed) without its end marker and checksum",
                       s->path, s->compressed_in, s->decompressed);
    const char *why = s->zs.msg ? s->zs.msg : "unknown error";
    if (s->members > 0 && s->out_since_reset == 0)
        return ct_fail(s->err, CT_EXIT_BAD_INPUT,
                       "%s: corrupt gzip stream: bytes after its end are not another gzip "
                       "member (%s)",
                       s->path, why);
    return ct_fail(s->err, CT_EXIT_BAD_INPUT,
                   "%s: corrupt gzip stream (%s) after %" PRIu64 " decompressed bytes", s->path,
                   why, s->decompressed);
}

/* A finished member followed by more input is another member (what
 * `cat a.gz b.gz` makes, and gzip itself accepts). Returns 1 at the end. */
static int gz_at_end(idx_src *s) {
    if (!s->member_done) return 0;
    if (s->zs.avail_in == 0 && s->input_eof) return 1;
    if (s->zs.avail_in == 0) return 0; /* refill first: there may be more */
    inflateReset(&s->zs);
    s->member_done = 0;
    s->out_since_reset = 0;
    return 0;
}

static int gz_read(idx_src *s, unsigned char *dst, size_t n, size_t *got) {
    *got = 0;
    while (*got < n) {
        if (s->zs.avail_in == 0 && !s->input_eof && gz_fill(s) != 0) return -1;
        if (gz_at_end(s)) break;
        if (s->member_done) continue;
        size_t want = n - *got;
        if (want > UINT_MAX) want = UINT_MAX;
        s->zs.next_out = dst + *got;
        s->zs.avail_out = (uInt)want;
        int rc = inflate(&s->zs, Z_NO_FLUSH);
        size_t made = want - s->zs.avail_out;
        *got += made;
        s->decompressed += made;
        s->out_since_reset += made;
        if (rc == Z_STREAM_END) {
            s->member_done = 1;
            s->members++;
        } else if (rc == Z_BUF_ERROR && s->zs.avail_in == 0 && !s->input_eof) {
            continue; /* wants input; the loop refills */
        } else if (rc != Z_OK) {
            return gz_error(s, rc);
        }
    }
    return 0;
}

static int src_read(idx_src *s, void *dst, size_t n, size_t *got) {
    return s->is_gz ? gz_read(s, dst, n, got) : raw_read(s, dst, n, got);
}

/* ---- the header ------------------------------------------------------ */

static const char *idx_type_name(unsigned type) {
    switch (type) {
    case 0x08: return "unsigned byte";
    case 0x09: return "signed byte";
    case 0x0B: return "int16";
    case 0x0C: return "int32";
    case 0x0D: return "float32";
    case 0x0E: return "float64";
    default: return "not an IDX type";
    }
}

static int truncated_header(idx_src *s, size_t need, size_t got, const char *what) {
    if (got == 0)
        return ct_fail(s->err, CT_EXIT_BAD_INPUT, "%s: empty file: expected an IDX file%s",
                       s->path, s->is_gz ? " (the gzip stream decompresses to nothing)" : "");
    return ct_fail(s->err, CT_EXIT_BAD_INPUT,
                   "%s: truncated header: the file%s holds %zu bytes, %s needs %zu", s->path,
                   s->is_gz ? " (decompressed)" : "", got, what, need);
}

static int read_prefix(idx_src *s, ct_idx *out) {
    unsigned char b[4];
    size_t got;
    if (src_read(s, b, sizeof b, &got) != 0) return -1;
    if (got < sizeof b)
        return truncated_header(s, sizeof b, got, "an IDX header (00 00 <type> <rank>)");
    if (b[0] != 0 || b[1] != 0)
        return ct_fail(s->err, CT_EXIT_BAD_INPUT,
                       "%s: bad magic 0x%08" PRIx32 ": expected an IDX file (00 00 <type> <rank>)",
                       s->path, be32(b));
    if (b[2] != CT_ELEM_U8 && b[2] != CT_ELEM_F32)
        return ct_fail(s->err, CT_EXIT_BAD_INPUT,
                       "%s: unsupported element type 0x%02X (%s): expected 0x08 (unsigned byte) "
                       "or 0x0D (float32)",
                       s->path, b[2], idx_type_name(b[2]));
    if (b[3] < 1 || b[3] > CT_IDX_MAX_RANK)
        return ct_fail(s->err, CT_EXIT_BAD_INPUT, "%s: bad rank %u: expected 1 to %d dimensions",
                       s->path, b[3], CT_IDX_MAX_RANK);
    out->elem_type = (ct_elem_type)b[2];
    out->rank = b[3];
    return 0;
}

static int read_dims(idx_src *s, ct_idx *out) {
    unsigned char b[4 * CT_IDX_MAX_RANK];
    size_t need = 4 * (size_t)out->rank, got;
    if (src_read(s, b, need, &got) != 0) return -1;
    if (got < need) {
        char what[64];
        snprintf(what, sizeof what, "a rank %d IDX header", out->rank);
        return truncated_header(s, 4 + need, 4 + got, what);
    }
    for (int i = 0; i < out->rank; ++i) out->dims[i] = be32(b + 4 * i);
    return 0;
}

/* Item dimensions must be > 0; dims[0] may be 0 so the caller can say
 * "empty dataset" rather than us saying something vaguer. */
static int check_dims(idx_src *s, const ct_idx *idx) {
    char dims[96];
    for (int i = 1; i < idx->rank; ++i) {
        if (idx->dims[i] != 0) continue;
        format_dims(idx->dims, idx->rank, dims, sizeof dims);
        return ct_fail(s->err, CT_EXIT_BAD_INPUT,
                       "%s: dimension %d is 0 (dims %s): only the item count, dimension 0, may "
                       "be 0",
                       s->path, i, dims);
    }
    return 0;
}

static int mul_overflows(size_t a, size_t b, size_t *out) {
    if (b != 0 && a > SIZE_MAX / b) return 1;
    *out = a * b;
    return 0;
}

/* Every product is checked, not just the last: two wrapped factors can
 * multiply back to a small, plausible size. */
static int compute_sizes(idx_src *s, ct_idx *idx, size_t *bytes) {
    size_t item = 1, elems = 0;
    int bad = 0;
    for (int i = 1; i < idx->rank && !bad; ++i) bad = mul_overflows(item, idx->dims[i], &item);
    bad = bad || mul_overflows(item, idx->dims[0], &elems);
    size_t esize = idx->elem_type == CT_ELEM_F32 ? 4 : 1;
    bad = bad || mul_overflows(elems, esize, bytes);
    if (bad) {
        char dims[96];
        format_dims(idx->dims, idx->rank, dims, sizeof dims);
        return ct_fail(s->err, CT_EXIT_BAD_INPUT,
                       "%s: dims %s of %s overflow: the data would exceed %zu bytes", s->path,
                       dims, idx_type_name(idx->elem_type), (size_t)SIZE_MAX);
    }
    idx->count = idx->dims[0];
    idx->item_elems = item;
    return 0;
}

/* Items are indexed by int32_t (each epoch's shuffled order, the batch
 * gather on every backend): past INT32_MAX items the indices would wrap to
 * negative ones. Judged after the file's size, so a header that only
 * claims so many items is reported as the short file it is. */
static int check_count(idx_src *s, const ct_idx *idx) {
    if (idx->dims[0] <= (uint32_t)INT32_MAX) return 0;
    return ct_fail(s->err, CT_EXIT_BAD_INPUT, "%s: %" PRIu32 " items: at most %" PRId32 " can be indexed", s->path,
                   idx->dims[0], INT32_MAX);
}

/* ---- the data -------------------------------------------------------- */

static int size_mismatch(idx_src *s, uint64_t declared, uint64_t held, int at_least) {
    const char *dec = s->is_gz ? " (decompressed)" : "";
    if (held < declared)
        return ct_fail(s->err, CT_EXIT_BAD_INPUT,
                       "%s: truncated: header declares %" PRIu64
                       " bytes of data, file%s holds %" PRIu64,
                       s->path, declared, dec, held);
    uint64_t extra = held - declared;
    return ct_fail(s->err, CT_EXIT_BAD_INPUT,
                   "%s: %s%" PRIu64 " trailing byte%s: header declares %" PRIu64
                   " bytes of data, file%s holds %s%" PRIu64,
                   s->path, at_least ? "at least " : "", extra, extra == 1 ? "" : "s", declared,
                   dec, at_least ? "at least " : "", held);
}

/* Raw files of known size are judged before a byte is allocated. */
static int check_raw_size(idx_src *s, const ct_idx *idx, size_t bytes) {
    if (s->is_gz || !s->is_regular) return 0;
    uint64_t header = 4 + 4 * (uint64_t)idx->rank;
    /* A file that changed since fstat could be shorter than what we read. */
    uint64_t held = s->file_size > header ? s->file_size - header : 0;
    return held == bytes ? 0 : size_mismatch(s, bytes, held, 0);
}

static int grow(idx_src *s, unsigned char **buf, size_t *cap, size_t bytes) {
    size_t want = *cap > bytes / 2 ? bytes : *cap * 2;
    unsigned char *p = realloc(*buf, want);
    if (!p)
        return ct_fail(s->err, CT_EXIT_FAILURE, "%s: out of memory: %zu bytes for the data",
                       s->path, want);
    *buf = p;
    *cap = want;
    return 0;
}

static int read_data(idx_src *s, size_t bytes, unsigned char **data) {
    int known = !s->is_gz && s->is_regular;
    size_t cap = known || bytes < IDX_FIRST_ALLOC ? bytes : IDX_FIRST_ALLOC;
    /* At least one byte so that success always yields a non-NULL pointer. */
    unsigned char *buf = malloc(cap ? cap : 1);
    if (!buf)
        return ct_fail(s->err, CT_EXIT_FAILURE, "%s: out of memory: %zu bytes for the data",
                       s->path, cap);
    size_t have = 0;
    while (have < bytes) {
        if (have == cap && grow(s, &buf, &cap, bytes) != 0) goto fail;
        size_t got;
        if (src_read(s, buf + have, cap - have, &got) != 0) goto fail;
        have += got;
        if (have < cap) break; /* the data ended */
    }
    if (have < bytes) {
        size_mismatch(s, bytes, have, 0);
        goto fail;
    }
    *data = buf;
    return 0;
fail:
    free(buf);
    return -1;
}

/* Reading on to the true end also makes zlib check the CRC and length. */
static int check_no_trailing(idx_src *s, size_t bytes) {
    if (!s->is_gz && s->is_regular) return 0; /* settled by check_raw_size */
    unsigned char scratch[4096];
    uint64_t extra = 0;
    size_t got;
    do {
        if (src_read(s, scratch, sizeof scratch, &got) != 0) return -1;
        extra += got;
    } while (got == sizeof scratch && extra < IDX_TRAILING_COUNT_CAP);
    if (extra == 0) return 0;
    return size_mismatch(s, bytes, bytes + extra, got == sizeof scratch);
}

/* IDX floats are big-endian; convert in place and refuse NaN and Inf here,
 * where the file and the element can still be named. */
static int convert_floats(idx_src *s, ct_idx *idx) {
    unsigned char *p = idx->data;
    size_t n = idx->count * idx->item_elems;
    for (size_t i = 0; i < n; ++i, p += 4) {
        uint32_t u = be32(p);
        float f;
        memcpy(&f, &u, sizeof f);
        if (!isfinite(f))
            return ct_fail(s->err, CT_EXIT_BAD_INPUT,
                           "%s: float element %zu (item %zu) is %s: expected finite values",
                           s->path, i, i / idx->item_elems,
                           isnan(f) ? "NaN" : (f > 0 ? "+Inf" : "-Inf"));
        memcpy(p, &f, sizeof f);
    }
    return 0;
}

static int load_from(idx_src *s, ct_idx *out) {
    size_t bytes = 0;
    unsigned char *data = NULL;
    if (read_prefix(s, out) != 0 || read_dims(s, out) != 0 || check_dims(s, out) != 0 ||
        compute_sizes(s, out, &bytes) != 0 || check_raw_size(s, out, bytes) != 0 || check_count(s, out) != 0 ||
        read_data(s, bytes, &data) != 0)
        return -1;
    out->data = data;
    if (check_no_trailing(s, bytes) != 0) return -1;
    if (out->elem_type == CT_ELEM_F32) return convert_floats(s, out);
    return 0;
}

int ct_idx_load(const char *path, ct_idx *out, ct_error *err) {
    memset(out, 0, sizeof *out);
    if (!path) return ct_fail(err, CT_EXIT_BAD_INPUT, "(null): no IDX file path given");
    /* The 64 KiB input buffer lives on the heap, not the stack. */
    idx_src *s = calloc(1, sizeof *s);
    if (!s) return ct_fail(err, CT_EXIT_FAILURE, "%s: out of memory", path);
    int rc = src_open(s, path, err);
    if (rc == 0) rc = load_from(s, out);
    src_close(s);
    free(s);
    if (rc != 0) ct_idx_free(out);
    return rc;
}

void ct_idx_free(ct_idx *idx) {
    if (!idx) return;
    free(idx->data);
    memset(idx, 0, sizeof *idx);
}
