/* Record-by-record comparison of two JSONL logs (rules in compare.h). */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "src/log/compare.h"

/* Two parsed records and where they came from, for messages. */
typedef struct pair {
    const ct_jsonl_file *rf, *gf;
    const ct_jsonl_line *rl, *gl;
    const ct_json_doc *r, *g;
    const ct_compare_options *o;
    char *out; /* the difference, when there is one */
    size_t out_len;
} pair;

/* A message, cut at len: a long path must not turn it into two lines. */
static void put(char *out, size_t len, const char *fmt, ...) CT_PRINTF(3, 4);
static void put(char *out, size_t len, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(out, len, fmt, ap);
    va_end(ap);
}

static const char *const kind_word[] = {"step", "epoch", "diagnosis"};

/* "step 12", "epoch 1", "diagnosis DEAD_RELU at step 30": which record. */
static void label(const ct_jsonl_file *f, const ct_jsonl_line *l, char *buf, size_t len) {
    if (l->kind == CT_REC_STEP) {
        snprintf(buf, len, "step %llu", (unsigned long long)l->step);
    } else if (l->kind == CT_REC_EPOCH) {
        snprintf(buf, len, "epoch %llu", (unsigned long long)l->epoch);
    } else {
        /* The code as written: a validated string, so no raw quote or newline. */
        const int n = (int)(l->code_len < 60 ? l->code_len : 60);
        snprintf(buf, len, "diagnosis %.*s at step %llu", n, f->bytes + l->offset + l->code_off,
                 (unsigned long long)l->step);
    }
}

/* A value's text as written, shortened for a one-line message. */
static void raw(const ct_json_doc *d, uint32_t t, char *buf, size_t len) {
    const ct_json_token *x = &d->tok[t];
    const int quoted = x->kind == CT_JSON_STRING;
    const size_t start = x->start - (quoted ? 1u : 0u), n = x->len + (quoted ? 2u : 0u);
    if (n < 80)
        snprintf(buf, len, "%.*s", (int)n, d->text + start);
    else
        snprintf(buf, len, "%.*s...", 76, d->text + start);
}

static int ignored(ct_rec_kind kind, const char *key) {
    const size_t n = strlen(key);
    if (strcmp(key, "seconds") == 0) return 1;
    if (n > 8 && strcmp(key + n - 8, "_seconds") == 0) return 1;
    if (n > 6 && strcmp(key + n - 6, "_per_s") == 0) return 1;
    return kind == CT_REC_DIAGNOSIS && strcmp(key, "message") == 0;
}

static int identity(const char *path) {
    return strcmp(path, "type") == 0 || strcmp(path, "step") == 0 || strcmp(path, "epoch") == 0;
}

static void where(const pair *p, char *buf, size_t len) {
    char lab[96];
    label(p->gf, p->gl, lab, sizeof lab);
    snprintf(buf, len, "%s line %u (%s)", p->rf->name, p->rl->lineno, lab);
}

static int report_value(pair *p, const char *path, uint32_t rt, uint32_t gt, const ct_tolerance *tol) {
    char w[640], a[96], b[96];
    where(p, w, sizeof w);
    raw(p->r, rt, a, sizeof a);
    raw(p->g, gt, b, sizeof b);
    if (!tol) {
        put(p->out, p->out_len, "%s: %s = %s, but %s line %u has %s", w, path, a, p->gf->name, p->gl->lineno, b);
        return 1;
    }
    const double d = fabs(p->r->tok[rt].number - p->g->tok[gt].number);
    const double allowed = tol->atol + tol->rtol * fabs(p->g->tok[gt].number);
    put(p->out, p->out_len,
        "%s: %s = %s, but %s line %u has %s (|difference| %.3g > tolerance %.3g = atol %g + rtol %g x |golden|)",
        w, path, a, p->gf->name, p->gl->lineno, b, d, allowed, tol->atol, tol->rtol);
    return 1;
}

static int same_scalar_or_array(const ct_json_doc *r, uint32_t rt, const ct_json_doc *g, uint32_t gt);

static int compare_members(pair *p, uint32_t robj, uint32_t gobj, const char *prefix, int top);

/* 0 when equal, 1 when a difference was written to p->out. */
static int compare_value(pair *p, uint32_t rt, uint32_t gt, const char *path, int top) {
    const ct_json_token *x = &p->r->tok[rt], *y = &p->g->tok[gt];
    if (x->kind == CT_JSON_NUMBER && y->kind == CT_JSON_NUMBER) {
        const ct_tolerance exact = {0.0, 0.0};
        const ct_tolerance tol = top && identity(path) ? exact : ct_tol_for(p->o, path);
        if (fabs(x->number - y->number) <= tol.atol + tol.rtol * fabs(y->number)) return 0;
        return report_value(p, path, rt, gt, &tol);
    }
    if (x->kind == CT_JSON_OBJECT && y->kind == CT_JSON_OBJECT) return compare_members(p, rt, gt, path, 0);
    if (same_scalar_or_array(p->r, rt, p->g, gt)) return 0;
    return report_value(p, path, rt, gt, NULL);
}

/* Strings, literals and arrays of them: exact (numbers inside arrays too). */
static int same_scalar_or_array(const ct_json_doc *r, uint32_t rt, const ct_json_doc *g, uint32_t gt) {
    const ct_json_token *x = &r->tok[rt], *y = &g->tok[gt];
    if (x->kind != y->kind) return 0;
    switch (x->kind) {
    case CT_JSON_STRING: return ct_json_string_equal(r, rt, g, gt);
    case CT_JSON_NUMBER: return x->number == y->number;
    case CT_JSON_ARRAY:
    case CT_JSON_OBJECT: {
        if (x->count != y->count) return 0;
        /* Elements (or, for an object met inside an array, members in order). */
        uint32_t i = rt + 1, j = gt + 1;
        const uint32_t items = x->kind == CT_JSON_OBJECT ? 2 * x->count : x->count;
        for (uint32_t k = 0; k < items; k++) {
            if (!same_scalar_or_array(r, i, g, j)) return 0;
            i = r->tok[i].next;
            j = g->tok[j].next;
        }
        return 1;
    }
    default: return 1; /* null, true, false: the kind is the value */
    }
}

/* The key of member token k as a C string ("" when it does not fit). */
static void key_text(const ct_json_doc *d, uint32_t k, char *buf, size_t len) {
    const ct_json_token *t = &d->tok[k];
    if (t->len >= len) {
        buf[0] = '\0';
        return;
    }
    memcpy(buf, d->text + t->start, t->len);
    buf[t->len] = '\0';
}

/* Finds in object `obj` of d the member whose key equals key token `k` of
 * other (escapes resolved); the value's index or -1. */
static int find_same_key(const ct_json_doc *d, uint32_t obj, const ct_json_doc *other, uint32_t k) {
    uint32_t m = obj + 1;
    for (uint32_t i = 0; i < d->tok[obj].count; i++) {
        if (ct_json_string_equal(d, m, other, k)) return (int)(m + 1);
        m = d->tok[m + 1].next;
    }
    return -1;
}

static int compare_members(pair *p, uint32_t robj, uint32_t gobj, const char *prefix, int top) {
    const ct_rec_kind kind = p->gl->kind;
    char path[CT_TOL_FIELD_LEN * 2], key[CT_TOL_FIELD_LEN], w[640], v[96];
    /* Golden's fields in its order: the first one that differs is reported. */
    uint32_t k = gobj + 1;
    for (uint32_t i = 0; i < p->g->tok[gobj].count; i++, k = p->g->tok[k + 1].next) {
        key_text(p->g, k, key, sizeof key);
        if (top && ignored(kind, key)) continue;
        snprintf(path, sizeof path, "%s%s%s", prefix, *prefix ? "." : "", key);
        const int rv = find_same_key(p->r, robj, p->g, k);
        if (rv < 0) {
            where(p, w, sizeof w);
            raw(p->g, k + 1, v, sizeof v);
            put(p->out, p->out_len, "%s: no field '%s', but %s line %u has %s = %s", w, path, p->gf->name,
                p->gl->lineno, path, v);
            return 1;
        }
        if (compare_value(p, (uint32_t)rv, k + 1, path, top)) return 1;
    }
    /* Then fields only the run has: a new field means the golden is stale. */
    k = robj + 1;
    for (uint32_t i = 0; i < p->r->tok[robj].count; i++, k = p->r->tok[k + 1].next) {
        key_text(p->r, k, key, sizeof key);
        if (top && ignored(kind, key)) continue;
        if (find_same_key(p->g, gobj, p->r, k) >= 0) continue;
        snprintf(path, sizeof path, "%s%s%s", prefix, *prefix ? "." : "", key);
        where(p, w, sizeof w);
        raw(p->r, k + 1, v, sizeof v);
        put(p->out, p->out_len, "%s: field '%s' = %s is not in %s line %u", w, path, v, p->gf->name,
            p->gl->lineno);
        return 1;
    }
    return 0;
}

/* The next line of `kind` at or after i; n_lines when none. */
static size_t next_of(const ct_jsonl_file *f, ct_rec_kind kind, size_t i) {
    while (i < f->n_lines && f->lines[i].kind != kind) i++;
    return i;
}

/* The last record of `kind` before line index i, described for a message. */
static void last_before(const ct_jsonl_file *f, ct_rec_kind kind, size_t i, char *buf, size_t len) {
    size_t last = f->n_lines;
    for (size_t j = 0; j < i && j < f->n_lines; j++)
        if (f->lines[j].kind == kind) last = j;
    if (last == f->n_lines) {
        snprintf(buf, len, "it has no %s records", kind_word[kind]);
        return;
    }
    char lab[96];
    label(f, &f->lines[last], lab, sizeof lab);
    snprintf(buf, len, "its %s records end at %s, line %u", kind_word[kind], lab, f->lines[last].lineno);
}

/* Where a record only the run has would sit in the golden, in half lines
 * (2 x line + 1: just after that line): a diagnosis after the golden's step
 * record of its step, anything else after the golden's last record of its
 * kind; failing those, after the golden's last line. */
static uint64_t extra_pos(const ct_jsonl_file *golden, const ct_jsonl_line *extra, uint32_t last_of_kind) {
    if (extra->kind == CT_REC_DIAGNOSIS)
        for (size_t j = 0; j < golden->n_lines; j++)
            if (golden->lines[j].kind == CT_REC_STEP && golden->lines[j].step == extra->step)
                return 2 * (uint64_t)golden->lines[j].lineno + 1;
    if (last_of_kind) return 2 * (uint64_t)last_of_kind + 1;
    return golden->n_lines ? 2 * (uint64_t)golden->lines[golden->n_lines - 1].lineno + 1 : 1;
}

/* Walks one kind's records in both files to their first difference, and
 * says where in the golden it lies, in half lines: 2 x the golden line that
 * holds the record (or lacks it in the run), or extra_pos. */
static int compare_kind(const ct_jsonl_file *run, const ct_jsonl_file *golden, const ct_compare_options *o,
                        ct_rec_kind kind, ct_json_doc *rd, ct_json_doc *gd, char *out, size_t out_len, uint64_t *pos,
                        size_t *matched) {
    size_t i = next_of(run, kind, 0), j = next_of(golden, kind, 0);
    uint32_t last_golden = 0;
    char lab[96], ctx[160];
    *matched = 0;
    while (j < golden->n_lines) {
        const ct_jsonl_line *gl = &golden->lines[j];
        *pos = 2 * (uint64_t)gl->lineno;
        if (i >= run->n_lines) {
            label(golden, gl, lab, sizeof lab);
            last_before(run, kind, run->n_lines, ctx, sizeof ctx);
            put(out, out_len, "%s: missing %s (%s); %s line %u has it", run->name, lab, ctx, golden->name,
                gl->lineno);
            return 1;
        }
        /* Steps and epochs are numbered: a record one log lacks in the middle
         * is said as such, not as every field of the next one differing. */
        if (kind == CT_REC_STEP || kind == CT_REC_EPOCH) {
            const ct_jsonl_line *rl = &run->lines[i];
            const uint64_t rn = kind == CT_REC_STEP ? rl->step : rl->epoch, gn = kind == CT_REC_STEP ? gl->step : gl->epoch;
            char rlab[96];
            label(run, rl, rlab, sizeof rlab);
            label(golden, gl, lab, sizeof lab);
            if (rn > gn) {
                put(out, out_len, "%s line %u: missing %s (the run has %s next); %s line %u has it", run->name,
                    rl->lineno, lab, rlab, golden->name, gl->lineno);
                return 1;
            }
            if (rn < gn) {
                put(out, out_len, "%s line %u: extra %s (%s line %u has %s next)", run->name, rl->lineno, rlab,
                    golden->name, gl->lineno, lab);
                *pos = 2 * (uint64_t)gl->lineno - 1; /* just before the golden's next record */
                return 1;
            }
        }
        if (ct_jsonl_parse_line(run, i, rd) || ct_jsonl_parse_line(golden, j, gd)) return -1;
        pair p = {run, golden, &run->lines[i], gl, rd, gd, o, out, out_len};
        if (compare_members(&p, 0, 0, "", 1)) return 1;
        ++*matched;
        last_golden = gl->lineno;
        i = next_of(run, kind, i + 1);
        j = next_of(golden, kind, j + 1);
    }
    if (i < run->n_lines) {
        label(run, &run->lines[i], lab, sizeof lab);
        last_before(golden, kind, golden->n_lines, ctx, sizeof ctx);
        put(out, out_len, "%s line %u: extra %s (%s: %s)", run->name, run->lines[i].lineno, lab, golden->name, ctx);
        *pos = extra_pos(golden, &run->lines[i], last_golden);
        return 1;
    }
    return 0;
}

int ct_compare_logs(const ct_jsonl_file *run, const ct_jsonl_file *golden, const ct_compare_options *o,
                    ct_compare_result *res, ct_error *err) {
    memset(res, 0, sizeof *res);
    ct_json_doc *rd = malloc(sizeof *rd), *gd = malloc(sizeof *gd);
    char *line = malloc(sizeof res->line);
    if (!rd || !gd || !line) {
        free(rd);
        free(gd);
        free(line);
        return ct_fail(err, CT_EXIT_FAILURE, "out of memory comparing %s with %s", run->name, golden->name);
    }
    uint64_t best = UINT64_MAX;
    int rc = 0;
    for (int k = CT_REC_STEP; k <= CT_REC_DIAGNOSIS && rc >= 0; k++) {
        uint64_t pos;
        rc = compare_kind(run, golden, o, (ct_rec_kind)k, rd, gd, line, sizeof res->line, &pos, &res->matched[k]);
        if (rc == 1 && pos < best) {
            best = pos;
            res->differ = 1;
            memcpy(res->line, line, sizeof res->line);
        }
        if (rc == 1) rc = 0;
    }
    free(rd);
    free(gd);
    free(line);
    if (rc < 0) return ct_fail(err, CT_EXIT_FAILURE, "%s: a line indexed earlier no longer parses", run->name);
    return 0;
}
