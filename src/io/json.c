/* Strict, bounded JSON (see json.h for the rules and why). Recursive descent
 * over a cursor that never passes `end`; every read checks the bound first. */
#include "src/io/json.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct parser {
    const char *s;
    size_t pos, end;
    ct_json_doc *doc;
    ct_json_syntax *syn;
} parser;

static int fail(parser *p, const char *what) {
    if (p->syn) {
        p->syn->pos = p->pos;
        p->syn->what = what;
    }
    return -1;
}

static int at_end(const parser *p) { return p->pos >= p->end; }
static unsigned char peek(const parser *p) { return at_end(p) ? 0 : (unsigned char)p->s[p->pos]; }

static void skip_ws(parser *p) {
    while (!at_end(p)) {
        const char c = p->s[p->pos];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r') break;
        p->pos++;
    }
}

static int new_token(parser *p, ct_json_kind kind, uint32_t *idx) {
    if (p->doc->n >= CT_JSON_MAX_TOKENS) return fail(p, "too many values in one record (more than 512)");
    *idx = p->doc->n++;
    ct_json_token *t = &p->doc->tok[*idx];
    memset(t, 0, sizeof *t);
    t->kind = kind;
    t->start = (uint32_t)p->pos;
    return 0;
}

static int hex4(parser *p, unsigned *out) {
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        const unsigned char c = peek(p);
        unsigned d;
        if (c >= '0' && c <= '9') d = c - '0';
        else if (c >= 'a' && c <= 'f') d = c - 'a' + 10;
        else if (c >= 'A' && c <= 'F') d = c - 'A' + 10;
        else return fail(p, "expected 4 hex digits after \\u");
        v = v * 16 + d;
        p->pos++;
    }
    *out = v;
    return 0;
}

/* After the backslash. A high surrogate must be followed by a low one. */
static int escape(parser *p) {
    const unsigned char c = peek(p);
    if (at_end(p)) return fail(p, "unterminated string");
    if (c && strchr("\"\\/bfnrt", c)) {
        p->pos++;
        return 0;
    }
    if (c != 'u') return fail(p, "invalid escape in a string");
    p->pos++;
    unsigned u;
    if (hex4(p, &u)) return -1;
    if (u >= 0xDC00 && u <= 0xDFFF) return fail(p, "lone low surrogate in a string");
    if (u < 0xD800 || u > 0xDBFF) return 0;
    if (p->end - p->pos < 2 || p->s[p->pos] != '\\' || p->s[p->pos + 1] != 'u')
        return fail(p, "high surrogate not followed by a low one");
    p->pos += 2;
    if (hex4(p, &u)) return -1;
    if (u < 0xDC00 || u > 0xDFFF) return fail(p, "high surrogate not followed by a low one");
    return 0;
}

/* One UTF-8 sequence starting at a byte >= 0x80 (RFC 3629: no overlongs, no
 * surrogates, nothing above U+10FFFF). */
static int utf8(parser *p) {
    const unsigned char c = peek(p);
    unsigned char lo = 0x80, hi = 0xBF;
    int more;
    if (c >= 0xC2 && c <= 0xDF) more = 1;
    else if (c == 0xE0) more = 2, lo = 0xA0;
    else if (c == 0xED) more = 2, hi = 0x9F;
    else if (c >= 0xE1 && c <= 0xEF) more = 2;
    else if (c == 0xF0) more = 3, lo = 0x90;
    else if (c == 0xF4) more = 3, hi = 0x8F;
    else if (c >= 0xF1 && c <= 0xF3) more = 3;
    else return fail(p, "invalid UTF-8 in a string");
    p->pos++;
    for (int i = 0; i < more; i++) {
        const unsigned char d = peek(p);
        if (at_end(p) || d < lo || d > hi) return fail(p, "invalid UTF-8 in a string");
        lo = 0x80, hi = 0xBF; /* only the first continuation byte is narrowed */
        p->pos++;
    }
    return 0;
}

static int string(parser *p, uint32_t *out) {
    uint32_t idx;
    p->pos++; /* the opening quote */
    if (new_token(p, CT_JSON_STRING, &idx)) return -1;
    for (;;) {
        if (at_end(p)) return fail(p, "unterminated string");
        const unsigned char c = peek(p);
        if (c == '"') break;
        if (c < 0x20) return fail(p, "control character in a string (must be escaped)");
        if (c == '\\') {
            p->pos++;
            if (escape(p)) return -1;
        } else if (c >= 0x80) {
            if (utf8(p)) return -1;
        } else {
            p->pos++;
        }
    }
    ct_json_token *t = &p->doc->tok[idx];
    t->len = (uint32_t)(p->pos - t->start);
    t->next = idx + 1;
    p->pos++; /* the closing quote */
    if (out) *out = idx;
    return 0;
}

static int digits(parser *p) {
    if (!(peek(p) >= '0' && peek(p) <= '9')) return -1;
    while (peek(p) >= '0' && peek(p) <= '9') p->pos++;
    return 0;
}

/* -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)? */
static int number(parser *p) {
    uint32_t idx;
    if (new_token(p, CT_JSON_NUMBER, &idx)) return -1;
    const size_t start = p->pos;
    if (peek(p) == '-') p->pos++;
    if (peek(p) == '0') {
        p->pos++;
        if (peek(p) >= '0' && peek(p) <= '9') return fail(p, "leading zero in a number");
    } else if (digits(p)) {
        return fail(p, "expected a digit");
    }
    if (peek(p) == '.') {
        p->pos++;
        if (digits(p)) return fail(p, "expected a digit after '.'");
    }
    if (peek(p) == 'e' || peek(p) == 'E') {
        p->pos++;
        if (peek(p) == '+' || peek(p) == '-') p->pos++;
        if (digits(p)) return fail(p, "expected a digit in the exponent");
    }
    const size_t len = p->pos - start;
    if (len >= CT_JSON_MAX_NUMBER_LEN) {
        p->pos = start;
        return fail(p, "number longer than 63 characters");
    }
    /* strtod needs a terminated copy; the grammar above is stricter than
     * strtod's, so it reads exactly these characters. */
    char buf[CT_JSON_MAX_NUMBER_LEN];
    memcpy(buf, p->s + start, len);
    buf[len] = '\0';
    errno = 0;
    const double v = strtod(buf, NULL);
    if (!isfinite(v) || (errno == ERANGE && fabs(v) > 1.0)) {
        p->pos = start;
        return fail(p, "number out of the range of a double");
    }
    ct_json_token *t = &p->doc->tok[idx];
    t->len = (uint32_t)len;
    t->number = v;
    t->next = idx + 1;
    return 0;
}

static int literal(parser *p, const char *word, ct_json_kind kind) {
    const size_t n = strlen(word);
    if (p->end - p->pos < n || memcmp(p->s + p->pos, word, n) != 0) return fail(p, "expected a value");
    uint32_t idx;
    if (new_token(p, kind, &idx)) return -1;
    p->pos += n;
    p->doc->tok[idx].len = (uint32_t)n;
    p->doc->tok[idx].next = idx + 1;
    return 0;
}

static int value(parser *p, int depth);

static int array(parser *p, int depth) {
    uint32_t idx;
    if (new_token(p, CT_JSON_ARRAY, &idx)) return -1;
    p->pos++;
    skip_ws(p);
    uint32_t count = 0;
    if (peek(p) == ']') {
        p->pos++;
    } else {
        for (;;) {
            if (value(p, depth + 1)) return -1;
            count++;
            skip_ws(p);
            if (peek(p) == ',') {
                p->pos++;
                continue;
            }
            if (peek(p) == ']') {
                p->pos++;
                break;
            }
            return fail(p, at_end(p) ? "unterminated array" : "expected ',' or ']'");
        }
    }
    ct_json_token *t = &p->doc->tok[idx];
    t->count = count;
    t->len = (uint32_t)(p->pos - t->start);
    t->next = p->doc->n;
    return 0;
}

static int object(parser *p, int depth) {
    uint32_t idx;
    if (new_token(p, CT_JSON_OBJECT, &idx)) return -1;
    p->pos++;
    skip_ws(p);
    uint32_t count = 0;
    if (peek(p) == '}') {
        p->pos++;
    } else {
        for (;;) {
            skip_ws(p);
            if (peek(p) != '"') return fail(p, at_end(p) ? "unterminated object" : "expected a string key");
            const size_t key_pos = p->pos;
            uint32_t key;
            if (string(p, &key)) return -1;
            /* Duplicate keys would make "the value of a field" ambiguous. */
            for (uint32_t k = idx + 1; k < key; k = p->doc->tok[k + 1].next)
                if (ct_json_string_equal(p->doc, k, p->doc, key)) {
                    p->pos = key_pos;
                    return fail(p, "duplicate key in an object");
                }
            skip_ws(p);
            if (peek(p) != ':') return fail(p, "expected ':' after a key");
            p->pos++;
            if (value(p, depth + 1)) return -1;
            count++;
            skip_ws(p);
            if (peek(p) == ',') {
                p->pos++;
                continue;
            }
            if (peek(p) == '}') {
                p->pos++;
                break;
            }
            return fail(p, at_end(p) ? "unterminated object" : "expected ',' or '}'");
        }
    }
    ct_json_token *t = &p->doc->tok[idx];
    t->count = count;
    t->len = (uint32_t)(p->pos - t->start);
    t->next = p->doc->n;
    return 0;
}

static int value(parser *p, int depth) {
    if (depth > CT_JSON_MAX_DEPTH) return fail(p, "nested more than 16 levels deep");
    skip_ws(p);
    if (at_end(p)) return fail(p, "expected a value, got the end of the line");
    const unsigned char c = peek(p);
    switch (c) {
    case '{': return object(p, depth);
    case '[': return array(p, depth);
    case '"': return string(p, NULL);
    case 't': return literal(p, "true", CT_JSON_TRUE);
    case 'f': return literal(p, "false", CT_JSON_FALSE);
    case 'n': return literal(p, "null", CT_JSON_NULL);
    default:
        if (c == '-' || (c >= '0' && c <= '9')) return number(p);
        return fail(p, "expected a value");
    }
}

int ct_json_parse(const char *bytes, size_t len, ct_json_doc *doc, ct_json_syntax *syn) {
    parser p = {bytes, 0, len, doc, syn};
    doc->text = bytes;
    doc->n = 0;
    if (len > CT_JSON_MAX_TEXT) return fail(&p, "longer than 1 MiB");
    if (value(&p, 1)) return -1;
    skip_ws(&p);
    if (!at_end(&p)) return fail(&p, "unexpected text after the value");
    return 0;
}

/* ---- reading parsed tokens ------------------------------------------------ */

/* The next code point of bytes [*i, end): a validated string token's when
 * `escapes` (backslash escapes resolved), else plain UTF-8 text. */
static uint32_t next_cp(const char *s, size_t *i, size_t end, int escapes) {
    const unsigned char c = (unsigned char)s[*i];
    if (escapes && c == '\\' && *i + 1 < end) {
        const char e = s[*i + 1];
        *i += 2;
        switch (e) {
        case 'b': return '\b';
        case 'f': return '\f';
        case 'n': return '\n';
        case 'r': return '\r';
        case 't': return '\t';
        case 'u': break;
        default: return (unsigned char)e;
        }
        uint32_t u = 0;
        for (int k = 0; k < 4 && *i < end; k++, (*i)++) {
            const char h = s[*i];
            u = u * 16 + (uint32_t)(h <= '9' ? h - '0' : (h | 0x20) - 'a' + 10);
        }
        if (u >= 0xD800 && u <= 0xDBFF && *i + 6 <= end) {
            uint32_t lo = 0;
            *i += 2; /* the "\u" of the low half, which the parser required */
            for (int k = 0; k < 4; k++, (*i)++) {
                const char h = s[*i];
                lo = lo * 16 + (uint32_t)(h <= '9' ? h - '0' : (h | 0x20) - 'a' + 10);
            }
            u = 0x10000 + ((u - 0xD800) << 10) + (lo - 0xDC00);
        }
        return u;
    }
    int more = c >= 0xF0 ? 3 : c >= 0xE0 ? 2 : c >= 0xC0 ? 1 : 0;
    uint32_t u = more ? (c & (0x3F >> more)) : c;
    (*i)++;
    for (; more > 0 && *i < end; more--, (*i)++) u = (u << 6) | ((unsigned char)s[*i] & 0x3F);
    return u;
}

int ct_json_string_equal(const ct_json_doc *a, uint32_t ta, const ct_json_doc *b, uint32_t tb) {
    const ct_json_token *x = &a->tok[ta], *y = &b->tok[tb];
    if (x->kind != CT_JSON_STRING || y->kind != CT_JSON_STRING) return 0;
    size_t i = x->start, j = y->start;
    const size_t ie = x->start + (size_t)x->len, je = y->start + (size_t)y->len;
    while (i < ie && j < je)
        if (next_cp(a->text, &i, ie, 1) != next_cp(b->text, &j, je, 1)) return 0;
    return i >= ie && j >= je;
}

int ct_json_string_is(const ct_json_doc *d, uint32_t t, const char *s) {
    const ct_json_token *x = &d->tok[t];
    if (x->kind != CT_JSON_STRING) return 0;
    size_t i = x->start, j = 0;
    const size_t ie = x->start + (size_t)x->len, je = strlen(s);
    while (i < ie && j < je)
        if (next_cp(d->text, &i, ie, 1) != next_cp(s, &j, je, 0)) return 0;
    return i >= ie && j >= je;
}

int ct_json_find(const ct_json_doc *d, uint32_t obj, const char *key) {
    if (obj >= d->n || d->tok[obj].kind != CT_JSON_OBJECT) return -1;
    uint32_t k = obj + 1;
    for (uint32_t m = 0; m < d->tok[obj].count; m++) {
        if (ct_json_string_is(d, k, key)) return (int)(k + 1);
        k = d->tok[k + 1].next;
    }
    return -1;
}

int ct_json_u64(const ct_json_doc *d, uint32_t t, uint64_t *out) {
    const ct_json_token *x = &d->tok[t];
    if (x->kind != CT_JSON_NUMBER) return -1;
    for (uint32_t i = 0; i < x->len; i++) {
        const char c = d->text[x->start + i];
        if (c < '0' || c > '9') return -1;
    }
    if (x->number > 9007199254740992.0) return -1;
    *out = (uint64_t)x->number;
    return 0;
}

size_t ct_utf8_encode(uint32_t u, char *out) {
    if (u < 0x80) {
        out[0] = (char)u;
        return 1;
    }
    if (u < 0x800) {
        out[0] = (char)(0xC0 | (u >> 6));
        out[1] = (char)(0x80 | (u & 0x3F));
        return 2;
    }
    if (u < 0x10000) {
        out[0] = (char)(0xE0 | (u >> 12));
        out[1] = (char)(0x80 | ((u >> 6) & 0x3F));
        out[2] = (char)(0x80 | (u & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (u >> 18));
    out[1] = (char)(0x80 | ((u >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((u >> 6) & 0x3F));
    out[3] = (char)(0x80 | (u & 0x3F));
    return 4;
}

size_t ct_json_string_copy(const ct_json_doc *d, uint32_t t, char *buf, size_t cap) {
    if (cap == 0) return 0;
    buf[0] = '\0';
    if (t >= d->n || d->tok[t].kind != CT_JSON_STRING) return 0;
    const ct_json_token *x = &d->tok[t];
    size_t i = x->start, n = 0;
    const size_t end = x->start + (size_t)x->len;
    while (i < end) {
        uint32_t u = next_cp(d->text, &i, end, 1);
        /* C0, DEL and C1 controls would act on a terminal: shown as '?'. */
        if (u < 0x20 || (u >= 0x7F && u < 0xA0)) u = '?';
        char enc[4];
        const size_t k = ct_utf8_encode(u, enc);
        if (n + k >= cap) break; /* whole code points only */
        memcpy(buf + n, enc, k);
        n += k;
    }
    buf[n] = '\0';
    return n;
}

