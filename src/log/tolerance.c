/* Tolerances of `cutrain check`: parsing --tol, finding a field's tolerance,
 * and refusing overrides that name no field of the golden. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "src/io/parse.h"
#include "src/log/compare.h"

static int is_identity(const char *field) {
    return strcmp(field, "type") == 0 || strcmp(field, "step") == 0 || strcmp(field, "epoch") == 0;
}

static int field_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '.' ||
           c == '-';
}

static int bad_item(const char *flag, const char *item, size_t len, const char *why, ct_error *err) {
    return ct_fail(err, CT_EXIT_USAGE, "%s: expected FIELD=RTOL:ATOL[,FIELD=RTOL:ATOL...]%s, got '%.*s'", flag, why,
                   (int)(len > 200 ? 200 : len), item);
}

/* One non-negative finite number from [s, s+len). */
static int number(const char *s, size_t len, double *out) {
    char buf[64];
    if (len == 0 || len >= sizeof buf) return -1;
    memcpy(buf, s, len);
    buf[len] = '\0';
    return ct_parse_double(buf, out) || *out < 0.0 ? -1 : 0;
}

static int parse_item(const char *item, size_t len, const char *flag, ct_compare_options *o, ct_error *err) {
    const char *eq = memchr(item, '=', len);
    const char *colon = eq ? memchr(eq, ':', len - (size_t)(eq - item)) : NULL;
    if (!eq || !colon) return bad_item(flag, item, len, "", err);
    const size_t flen = (size_t)(eq - item);
    if (flen == 0 || flen >= CT_TOL_FIELD_LEN) return bad_item(flag, item, len, " with a field name", err);
    for (size_t i = 0; i < flen; i++)
        if (!field_char(item[i]))
            return bad_item(flag, item, len, " (field names are letters, digits, '_', '-' and '.')", err);
    ct_tolerance t;
    if (number(eq + 1, (size_t)(colon - eq - 1), &t.rtol) ||
        number(colon + 1, len - (size_t)(colon + 1 - item), &t.atol))
        return bad_item(flag, item, len, " with non-negative numbers", err);
    char field[CT_TOL_FIELD_LEN];
    memcpy(field, item, flen);
    field[flen] = '\0';
    if (is_identity(field))
        return ct_fail(err, CT_EXIT_USAGE, "%s: '%s' is always compared exactly (it says which records are compared)",
                       flag, field);
    /* A tolerance no comparison would ever read is a mistake to say, not to
     * drop: timing fields are skipped, names and lists compared exactly. */
    static const char *const no_number[] = {"flags", "code", "severity", "layer", "message", "status", "model", "device"};
    const size_t n = strlen(field);
    int timing = strcmp(field, "seconds") == 0 || (n > 8 && strcmp(field + n - 8, "_seconds") == 0) ||
                 (n > 6 && strcmp(field + n - 6, "_per_s") == 0);
    for (size_t i = 0; !timing && i < sizeof no_number / sizeof no_number[0]; i++)
        if (strcmp(field, no_number[i]) == 0)
            return ct_fail(err, CT_EXIT_USAGE, "%s: '%s' is not a number: it is compared exactly, no tolerance applies",
                           flag, field);
    if (timing)
        return ct_fail(err, CT_EXIT_USAGE, "%s: '%s' is a timing field, which is never compared", flag, field);
    for (int i = 0; i < o->n_over; i++)
        if (strcmp(o->over[i].field, field) == 0)
            return ct_fail(err, CT_EXIT_USAGE, "%s: '%s' given more than once", flag, field);
    if (o->n_over >= CT_TOL_MAX_OVERRIDES)
        return ct_fail(err, CT_EXIT_USAGE, "%s: more than %d fields", flag, CT_TOL_MAX_OVERRIDES);
    memcpy(o->over[o->n_over].field, field, flen + 1);
    o->over[o->n_over].tol = t;
    o->n_over++;
    return 0;
}

int ct_tol_parse(const char *spec, const char *flag, ct_compare_options *o, ct_error *err) {
    const char *p = spec;
    for (;;) {
        const char *comma = strchr(p, ',');
        const size_t len = comma ? (size_t)(comma - p) : strlen(p);
        if (parse_item(p, len, flag, o, err)) return -1;
        if (!comma) return 0;
        p = comma + 1;
    }
}

ct_tolerance ct_tol_for(const ct_compare_options *o, const char *path) {
    for (int i = 0; i < o->n_over; i++)
        if (strcmp(o->over[i].field, path) == 0) return o->over[i].tol;
    const char *dot = strchr(path, '.');
    if (dot) {
        const size_t top = (size_t)(dot - path);
        for (int i = 0; i < o->n_over; i++)
            if (strlen(o->over[i].field) == top && strncmp(o->over[i].field, path, top) == 0) return o->over[i].tol;
    }
    return o->dflt;
}

/* Whether `field` ("name" or "name.sub") is a field of the record in doc. */
static int has_field(const ct_json_doc *d, const char *field) {
    const char *dot = strchr(field, '.');
    if (!dot) return ct_json_find(d, 0, field) >= 0;
    char top[CT_TOL_FIELD_LEN];
    memcpy(top, field, (size_t)(dot - field));
    top[dot - field] = '\0';
    const int obj = ct_json_find(d, 0, top);
    return obj >= 0 && ct_json_find(d, (uint32_t)obj, dot + 1) >= 0;
}

int ct_tol_check_fields(const ct_compare_options *o, const ct_jsonl_file *golden, const char *flag, ct_error *err) {
    if (o->n_over == 0) return 0;
    int found[CT_TOL_MAX_OVERRIDES] = {0}, missing = o->n_over;
    ct_json_doc *doc = malloc(sizeof *doc);
    if (!doc) return ct_fail(err, CT_EXIT_FAILURE, "out of memory");
    for (size_t i = 0; i < golden->n_lines && missing > 0; i++) {
        const ct_rec_kind k = golden->lines[i].kind;
        if (k != CT_REC_STEP && k != CT_REC_EPOCH && k != CT_REC_DIAGNOSIS) continue;
        if (ct_jsonl_parse_line(golden, i, doc)) continue;
        for (int j = 0; j < o->n_over; j++)
            if (!found[j] && has_field(doc, o->over[j].field)) {
                found[j] = 1;
                missing--;
            }
    }
    free(doc);
    for (int j = 0; j < o->n_over; j++)
        if (!found[j])
            return ct_fail(err, CT_EXIT_USAGE, "%s: no field '%s' in the step, epoch or diagnosis records of %s", flag,
                           o->over[j].field, golden->name);
    return 0;
}
