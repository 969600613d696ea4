/* The safetensors format's shared pieces (safetensors_format.h). */
#include "src/io/safetensors_format.h"

#include <stdlib.h>
#include <string.h>

int ct_st_host_is_little_endian(void) {
    const uint32_t one = 1;
    unsigned char first;
    memcpy(&first, &one, 1);
    return first == 1;
}

uint32_t ct_st_swap32(uint32_t v) {
    return (v >> 24) | ((v >> 8) & 0xff00u) | ((v << 8) & 0xff0000u) | (v << 24);
}

void ct_st_swap_floats_in_place(void *p, uint64_t count) {
    unsigned char *b = p;
    for (uint64_t i = 0; i < count; ++i) {
        uint32_t w;
        memcpy(&w, b + 4 * i, 4);
        w = ct_st_swap32(w);
        memcpy(b + 4 * i, &w, 4);
    }
}

uint64_t ct_st_load_le64(const unsigned char *b) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; --i) v = (v << 8) | b[i];
    return v;
}

void ct_st_store_le64(unsigned char *b, uint64_t v) {
    for (int i = 0; i < 8; ++i) {
        b[i] = (unsigned char)(v & 0xffu);
        v >>= 8;
    }
}

int ct_st_shape_count(const uint64_t *shape, int rank, uint64_t *count) {
    uint64_t c = 1;
    for (int i = 0; i < rank; ++i) {
        if (shape[i] != 0 && c > UINT64_MAX / shape[i]) return -1;
        c *= shape[i];
    }
    *count = c;
    return 0;
}

size_t ct_st_utf8_invalid_at(const unsigned char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        if (c < 0x80) {
            ++i;
            continue;
        }
        size_t len;
        uint32_t cp, min;
        if ((c & 0xe0u) == 0xc0u) {
            len = 2, cp = c & 0x1fu, min = 0x80;
        } else if ((c & 0xf0u) == 0xe0u) {
            len = 3, cp = c & 0x0fu, min = 0x800;
        } else if ((c & 0xf8u) == 0xf0u) {
            len = 4, cp = c & 0x07u, min = 0x10000;
        } else {
            return i;
        }
        if (n - i < len) return i;
        for (size_t k = 1; k < len; ++k) {
            if ((s[i + k] & 0xc0u) != 0x80u) return i;
            cp = (cp << 6) | (s[i + k] & 0x3fu);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return i;
        i += len;
    }
    return n;
}

static int cmp_str_ptr(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

const char *ct_st_first_duplicate(const char **names, size_t n) {
    if (n < 2) return NULL;
    qsort(names, n, sizeof *names, cmp_str_ptr);
    for (size_t i = 1; i < n; ++i)
        if (strcmp(names[i - 1], names[i]) == 0) return names[i];
    return NULL;
}

