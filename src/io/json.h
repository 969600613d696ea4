/* A strict, bounded JSON parser for one record (one JSONL line).
 *
 * Why its own: the goldens that `cutrain check` compares against are inputs
 * like any other, and this parser will be fuzzed (libFuzzer calls
 * ct_json_parse on raw bytes). So it reads only bytes[0, len) (no NUL
 * needed), allocates nothing (the caller's doc holds a fixed token pool),
 * recurses at most CT_JSON_MAX_DEPTH deep, and accepts RFC 8259 JSON only:
 * no comments, no trailing commas, no NaN/Infinity, no leading zeros, no
 * control characters or invalid UTF-8 in strings, no lone surrogates, no
 * duplicate keys in an object, nothing after the value. Numbers must fit a
 * double and be at most CT_JSON_MAX_NUMBER_LEN characters long (cutrain
 * writes at most about 24).
 *
 * The result is a flat token array in document order (jsmn style): an
 * object's members follow it as key, value, key, value...; a container's
 * `next` is the index just past everything inside it, so a caller skips a
 * value without recursion.
 */
#ifndef CUTRAIN_SRC_IO_JSON_H
#define CUTRAIN_SRC_IO_JSON_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define CT_JSON_MAX_TOKENS 512      /* a step record of 16 layers needs about 70 */
#define CT_JSON_MAX_DEPTH 16
#define CT_JSON_MAX_NUMBER_LEN 64
#define CT_JSON_MAX_TEXT (1u << 20) /* longest text parsed (1 MiB): a record is < 4 KiB */

typedef enum {
    CT_JSON_NULL = 0,
    CT_JSON_FALSE,
    CT_JSON_TRUE,
    CT_JSON_NUMBER,
    CT_JSON_STRING,
    CT_JSON_ARRAY,
    CT_JSON_OBJECT,
} ct_json_kind;

typedef struct ct_json_token {
    ct_json_kind kind;
    uint32_t start, len; /* the value's bytes; a string's exclude the quotes */
    uint32_t count;      /* array: elements; object: members (key-value pairs) */
    uint32_t next;       /* index of the first token after this value */
    double number;       /* CT_JSON_NUMBER */
} ct_json_token;

typedef struct ct_json_doc {
    const char *text; /* the parsed bytes (not copied: must outlive the doc) */
    uint32_t n;       /* tokens used; tok[0] is the top-level value          */
    ct_json_token tok[CT_JSON_MAX_TOKENS];
} ct_json_doc;

/* Where and why a parse failed: byte offset into the input, a fixed text. */
typedef struct ct_json_syntax {
    size_t pos;
    const char *what; /* e.g. "expected ',' or '}'" */
} ct_json_syntax;

/* Parses exactly one JSON value, with optional whitespace around it, from
 * bytes[0, len). 0 on success; -1 with *syn filled (when non-NULL). */
int ct_json_parse(const char *bytes, size_t len, ct_json_doc *doc, ct_json_syntax *syn);

/* The value of `key` in the object token `obj`; -1 when absent or obj is
 * not an object. */
int ct_json_find(const ct_json_doc *d, uint32_t obj, const char *key);
/* 1 when string token t decodes to the NUL-terminated UTF-8 text s. */
int ct_json_string_is(const ct_json_doc *d, uint32_t t, const char *s);
/* 1 when two string tokens decode to the same text (escapes resolved). */
int ct_json_string_equal(const ct_json_doc *a, uint32_t ta, const ct_json_doc *b, uint32_t tb);
/* The UTF-8 bytes of code point u (a Unicode scalar value) into out[0..3];
 * returns their count. Shared with the safetensors header parser. */
size_t ct_utf8_encode(uint32_t u, char *out);
/* Decodes string token t (escapes resolved) into buf as NUL-terminated UTF-8,
 * with control characters (C0, DEL, C1: they would act on a terminal)
 * replaced by '?', truncated to whole code points within cap - 1 bytes.
 * Returns the bytes written; 0 (and "") when t is not a string. */
size_t ct_json_string_copy(const ct_json_doc *d, uint32_t t, char *buf, size_t cap);
/* 0 and *out when token t is a whole number written without fraction,
 * exponent or sign, at most 2^53 (exact in a double); else -1. */
int ct_json_u64(const ct_json_doc *d, uint32_t t, uint64_t *out);

#ifdef __cplusplus
}
#endif
#endif
