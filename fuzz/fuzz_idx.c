/* IDX files as they arrive, raw or gzip (the loader tells them apart by the
 * gzip magic): ct_idx_load either refuses the file with a one-line message
 * naming it, or returns exactly as many elements as the header declares. */
#include <string.h>

#include "cutrain/data.h"
#include "fuzz/fuzz_support.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = ct_fuzz_file(0, data, size);
    ct_idx idx;
    ct_error err;
    ct_error_clear(&err);
    if (ct_idx_load(path, &idx, &err) != 0) {
        ct_fuzz_check_error(&err, path, NULL);
        return 0;
    }
    if (idx.rank < 1 || idx.rank > CT_IDX_MAX_RANK) ct_fuzz_fail("accepted rank %d", idx.rank);
    size_t item = 1;
    for (int i = 1; i < idx.rank; ++i) item *= idx.dims[i];
    if (idx.count != idx.dims[0] || idx.item_elems != item)
        ct_fuzz_fail("count %zu / item %zu disagree with the dims", idx.count, idx.item_elems);
    size_t esize = idx.elem_type == CT_ELEM_F32 ? 4 : 1;
    size_t bytes = idx.count * idx.item_elems * esize;
    /* The header counts as 4 + 4 * rank bytes: a raw file holds no more. */
    if (size > 0 && data[0] != 0x1f && bytes + 4 + 4 * (size_t)idx.rank != size)
        ct_fuzz_fail("accepted %zu data bytes from a raw file of %zu", bytes, size);
    if (!idx.data) ct_fuzz_fail("success without data");
    ct_fuzz_touch(idx.data, bytes);
    ct_idx_free(&idx);
    return 0;
}
