/* IDX through the gzip path: the input (after one control byte) is an IDX
 * file that this target compresses itself, so the fuzzer explores IDX
 * headers and sizes behind valid gzip streams, which mutating compressed
 * bytes rarely reaches. The control byte chooses one member, two members
 * (as `cat a.gz b.gz` makes), or a stream cut short by up to 31 bytes. */
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "cutrain/data.h"
#include "fuzz/fuzz_support.h"

/* Appends one gzip member of src to out (capacity cap); returns bytes written. */
static size_t gzip_member(const uint8_t *src, size_t n, uint8_t *out, size_t cap) {
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    if (deflateInit2(&zs, 1, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY) != Z_OK)
        ct_fuzz_fail("deflateInit2 failed");
    zs.next_in = (Bytef *)src;
    zs.avail_in = (uInt)n;
    zs.next_out = out;
    zs.avail_out = (uInt)cap;
    if (deflate(&zs, Z_FINISH) != Z_STREAM_END) ct_fuzz_fail("deflate did not finish");
    size_t made = zs.total_out;
    deflateEnd(&zs);
    return made;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1 || size > (1u << 20)) return 0;
    unsigned mode = data[0];
    const uint8_t *idx_bytes = data + 1;
    size_t n = size - 1;
    size_t cap = 2 * (compressBound((uLong)n) + 64);
    uint8_t *gz = malloc(cap);
    if (!gz) ct_fuzz_fail("out of memory");
    size_t len;
    if (mode % 3 == 1) {
        len = gzip_member(idx_bytes, n / 2, gz, cap);
        len += gzip_member(idx_bytes + n / 2, n - n / 2, gz + len, cap - len);
    } else {
        len = gzip_member(idx_bytes, n, gz, cap);
        if (mode % 3 == 2) {
            size_t cut = (mode >> 3) % 32 + 1;
            len = len > cut ? len - cut : 0;
        }
    }
    const char *path = ct_fuzz_file(0, gz, len);
    free(gz);
    ct_idx idx;
    ct_error err;
    ct_error_clear(&err);
    if (ct_idx_load(path, &idx, &err) != 0) {
        ct_fuzz_check_error(&err, path, NULL);
        return 0;
    }
    if (mode % 3 == 2) ct_fuzz_fail("accepted a gzip stream without its end");
    size_t esize = idx.elem_type == CT_ELEM_F32 ? 4 : 1;
    size_t bytes = idx.count * idx.item_elems * esize;
    if (bytes + 4 + 4 * (size_t)idx.rank != n)
        ct_fuzz_fail("accepted %zu data bytes from %zu decompressed", bytes, n);
    ct_fuzz_touch(idx.data, bytes);
    ct_idx_free(&idx);
    return 0;
}
