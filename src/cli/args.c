#include "src/cli/args.h"

#include <math.h>
#include <string.h>

#include "src/io/parse.h"

const ct_arg *ct_args_find(const ct_arg *args, int n, const char *name) {
    for (int i = 0; i < n; ++i)
        if (strcmp(args[i].name, name) == 0) return &args[i];
    return NULL;
}

int ct_args_seen(const ct_arg *args, int n, const char *name) {
    const ct_arg *a = ct_args_find(args, n, name);
    return a && a->seen;
}

static void choices_text(const ct_arg *a, char *buf, size_t len) {
    size_t used = 0;
    buf[0] = '\0';
    for (int i = 0; a->choices[i] && used < len; ++i)
        used += (size_t)snprintf(buf + used, len - used, "%s%s", i ? "|" : "", a->choices[i]);
}

static int bad_value(const ct_arg *a, const char *v, ct_error *err) {
    char want[160];
    switch (a->kind) {
    case ARG_INT:
        snprintf(want, sizeof want, "a whole number from %.0f to %.0f", a->min, a->max);
        break;
    case ARG_U64:
        snprintf(want, sizeof want, "a whole number from 0 to 18446744073709551615");
        break;
    case ARG_DOUBLE:
        if (a->min_exclusive)
            snprintf(want, sizeof want, "a number greater than %g and at most %g", a->min, a->max);
        else
            snprintf(want, sizeof want, "a number from %g to %g", a->min, a->max);
        break;
    case ARG_CHOICE: {
        char c[120];
        choices_text(a, c, sizeof c);
        snprintf(want, sizeof want, "one of %s", c);
        break;
    }
    default:
        snprintf(want, sizeof want, "a value");
    }
    return ct_fail(err, CT_EXIT_USAGE, "%s: expected %s, got '%s'", a->name, want, v);
}

static int set_value(ct_arg *a, const char *v, ct_error *err) {
    switch (a->kind) {
    case ARG_INT: {
        long x;
        if (ct_parse_long(v, (long)a->min, (long)a->max, &x)) return bad_value(a, v, err);
        *(int *)a->dst = (int)x;
        return 0;
    }
    case ARG_U64:
        /* "+5" as the other whole-number flags take it (strtol's sign). */
        if (ct_parse_u64(v[0] == '+' ? v + 1 : v, (uint64_t *)a->dst)) return bad_value(a, v, err);
        return 0;
    case ARG_DOUBLE: {
        double x;
        if (ct_parse_double(v, &x) || x < a->min || x > a->max || (a->min_exclusive && x == a->min))
            return bad_value(a, v, err);
        *(double *)a->dst = x;
        return 0;
    }
    case ARG_STRING:
        if (!*v) return ct_fail(err, CT_EXIT_USAGE, "%s: expected %s, got an empty value", a->name, a->metavar);
        /* Paths go into fixed buffers further on (and messages quote them):
         * one cut to fit would name another file. */
        if (strlen(v) > CT_ARG_MAX_STRING)
            return ct_fail(err, CT_EXIT_USAGE, "%s: expected %s of at most %d bytes, got %zu", a->name, a->metavar,
                           CT_ARG_MAX_STRING, strlen(v));
        *(const char **)a->dst = v;
        return 0;
    case ARG_CHOICE:
        for (int i = 0; a->choices[i]; ++i)
            if (strcmp(a->choices[i], v) == 0) {
                *(const char **)a->dst = a->choices[i];
                return 0;
            }
        return bad_value(a, v, err);
    case ARG_FLAG:
        *(int *)a->dst = 1;
        return 0;
    }
    return -1;
}

int ct_args_parse(int argc, char **argv, ct_arg *args, int n, const char *usage, ct_error *err) {
    for (int i = 0; i < argc; ++i) {
        const char *tok = argv[i];
        if (strcmp(tok, "--help") == 0 || strcmp(tok, "-h") == 0) {
            ct_args_help(stdout, usage, args, n);
            return 1;
        }
        if (strncmp(tok, "--", 2) != 0)
            return ct_fail(err, CT_EXIT_USAGE, "unexpected argument '%s' (flags start with --; see --help)", tok);
        char name[64];
        const char *eq = strchr(tok, '=');
        size_t len = eq ? (size_t)(eq - tok) : strlen(tok);
        if (len >= sizeof name) return ct_fail(err, CT_EXIT_USAGE, "unknown flag '%.60s...' (see --help)", tok);
        memcpy(name, tok, len);
        name[len] = '\0';
        ct_arg *a = (ct_arg *)ct_args_find(args, n, name);
        if (!a) return ct_fail(err, CT_EXIT_USAGE, "unknown flag '%s' (see --help)", name);
        if (a->seen) return ct_fail(err, CT_EXIT_USAGE, "%s: given more than once", name);
        a->seen = 1;
        if (a->kind == ARG_FLAG) {
            if (eq) return ct_fail(err, CT_EXIT_USAGE, "%s: takes no value", name);
            *(int *)a->dst = 1;
            continue;
        }
        /* "--epochs --log-jsonl x" is a forgotten value, not an epoch count of "--log-jsonl". */
        const char *v = eq ? eq + 1 : (i + 1 < argc && strncmp(argv[i + 1], "--", 2) != 0 ? argv[++i] : NULL);
        if (!v) return ct_fail(err, CT_EXIT_USAGE, "%s: missing value (%s)", name, a->metavar);
        if (set_value(a, v, err)) return -1;
    }
    return 0;
}

void ct_args_help(FILE *f, const char *usage, const ct_arg *args, int n) {
    fprintf(f, "%s\n\nOptions:\n", usage);
    for (int i = 0; i < n; ++i) {
        char left[64];
        snprintf(left, sizeof left, "%s%s%s", args[i].name, args[i].metavar ? " " : "",
                 args[i].metavar ? args[i].metavar : "");
        fprintf(f, "  %-26s %s\n", left, args[i].help);
    }
    fprintf(f, "  %-26s %s\n", "--help", "show this help");
}
