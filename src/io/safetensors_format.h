/* What the safetensors reader (safetensors_read.c) and writer
 * (safetensors_write.c) share: the format's limits, its byte order, and the
 * checks both make, so that a file the writer produces is always one the
 * reader (and the reference implementation) accepts. */
#ifndef CUTRAIN_SRC_IO_SAFETENSORS_FORMAT_H
#define CUTRAIN_SRC_IO_SAFETENSORS_FORMAT_H

#include <float.h>
#include <stddef.h>
#include <stdint.h>

/* The data section is copied byte for byte into floats: that is only right
 * where float is IEEE-754 binary32, which is what "F32" means in the file. */
_Static_assert(sizeof(float) == 4 && FLT_MANT_DIG == 24 && FLT_MAX_EXP == 128,
               "safetensors F32 needs float to be IEEE-754 binary32");

/* The reference implementation refuses larger headers; so do we, which also
 * bounds what a hostile header can make us allocate. */
#define CT_ST_MAX_HEADER 100000000ull
/* Each ct_st_tensor / ct_st_meta is far bigger than the JSON that produces
 * it; these caps stop a header of tiny entries from expanding into
 * gigabytes. Real checkpoints have a few thousand tensors and a handful of
 * metadata entries. */
#define CT_ST_MAX_TENSORS (1 << 20)
#define CT_ST_MAX_META 4096
/* Writers pad the header so the data starts 8-aligned in the file. */
#define CT_ST_HEADER_ALIGN 8

#ifdef __cplusplus
extern "C" {
#endif

/* Byte order: the file is little-endian whatever the host is. */
int ct_st_host_is_little_endian(void);
uint32_t ct_st_swap32(uint32_t v);
void ct_st_swap_floats_in_place(void *p, uint64_t count);
uint64_t ct_st_load_le64(const unsigned char *b);
void ct_st_store_le64(unsigned char *b, uint64_t v);

/* Product of the dims; -1 when it overflows. Multiplies in file order like
 * the reference implementation, so both accept and refuse the same shapes. */
int ct_st_shape_count(const uint64_t *shape, int rank, uint64_t *count);

/* Index of the first byte that does not start a well-formed UTF-8 sequence
 * (overlong forms, surrogates and code points past U+10FFFF included), or n
 * when all of s is valid. The reference reader refuses headers that are not
 * UTF-8, so the writer must never produce one either. */
size_t ct_st_utf8_invalid_at(const unsigned char *s, size_t n);

/* Sorts names in place; returns a name that occurs twice, or NULL. */
const char *ct_st_first_duplicate(const char **names, size_t n);

#ifdef __cplusplus
}
#endif

#endif
