/* cutrain check: compare a run's JSONL log with a golden one, record by
 * record, within stated tolerances (rules in src/log/compare.h). */
#include <stdio.h>
#include <string.h>

#include "src/cli/args.h"
#include "src/cli/commands.h"
#include "src/io/jsonl_read.h"
#include "src/log/compare.h"

#define USAGE                                                                                          \
    "usage: cutrain check RUN.jsonl --golden GOLDEN.jsonl [--rtol X] [--atol X] [--tol SPEC]\n\n"      \
    "Compares the step, epoch and diagnosis records of RUN with those of GOLDEN (both written by\n"    \
    "`cutrain train --log-jsonl`), field by field, in order. Timing fields (seconds, *_seconds,\n"     \
    "*_per_s), a diagnosis's message and summary records are not compared; type, step and epoch\n"     \
    "always exactly. A number matches when |run - golden| <= atol + rtol * |golden|; null matches\n"   \
    "only null; strings and flags match exactly. By default rtol = atol = 0: the printed numbers\n"   \
    "must be identical (a run is deterministic for a given seed, device and thread count).\n\n"      \
    "--tol SPEC overrides the tolerance of some fields: SPEC is FIELD=RTOL:ATOL, comma-separated,\n"   \
    "e.g. --tol loss=1e-6:0,acc=0:0.0625,layer_grad_norms=1e-5:1e-9. FIELD is a record field\n"        \
    "(loss, grad_norm, test_acc, ...), a whole object (layer_grad_norms) or one of its members\n"     \
    "(layer_grad_norms.dense1); every FIELD must occur in GOLDEN.\n\n"                                 \
    "Prints \"N step records, M epoch records and K diagnosis records match\" and exits 0, or prints\n" \
    "the first difference (file, line, step, field, both values, the tolerance) and exits 6.\n"       \
    "Exit status: 0 match, 6 differ, 2 bad command line, 3 bad input file, 1 runtime failure."

/* The one argument that is not a flag (RUN), taken out of argv so the
 * table parser sees flags only. A flag's separate value is skipped, so
 * `--golden G RUN` and `RUN --golden G` both work. */
static int take_positional(int argc, char **argv, const ct_arg *args, int n, const char **run, char **rest,
                           int *n_rest, ct_error *err) {
    *n_rest = 0;
    for (int i = 0; i < argc; i++) {
        const char *tok = argv[i];
        if (strncmp(tok, "--", 2) == 0 || strcmp(tok, "-h") == 0) {
            rest[(*n_rest)++] = argv[i];
            const ct_arg *a = ct_args_find(args, n, tok);
            if (a && a->kind != ARG_FLAG && i + 1 < argc && strncmp(argv[i + 1], "--", 2) != 0)
                rest[(*n_rest)++] = argv[++i];
            continue;
        }
        if (*run)
            return ct_fail(err, CT_EXIT_USAGE, "unexpected argument '%s' (one RUN.jsonl is compared; see --help)",
                           tok);
        *run = tok;
    }
    return 0;
}

static const char *plural(size_t n, const char *word, char *buf, size_t len) {
    snprintf(buf, len, "%zu %s record%s", n, word, n == 1 ? "" : "s");
    return buf;
}

int ct_cmd_check(int argc, char **argv) {
    const char *golden_path = NULL, *tol_spec = NULL, *run_path = NULL;
    ct_compare_options opt;
    memset(&opt, 0, sizeof opt);
    ct_arg args[] = {
        {"--golden", ARG_STRING, &golden_path, 0, 0, 0, "FILE", "the reference log (required)"},
        {"--rtol", ARG_DOUBLE, &opt.dflt.rtol, 0, 1e300, 0, "X", "relative tolerance of every number (default 0)"},
        {"--atol", ARG_DOUBLE, &opt.dflt.atol, 0, 1e300, 0, "X", "absolute tolerance of every number (default 0)"},
        {"--tol", ARG_STRING, &tol_spec, 0, 0, 0, "SPEC", "per-field FIELD=RTOL:ATOL[,...] (see above)"},
    };
    const int n = (int)(sizeof args / sizeof args[0]);
    ct_error err;
    ct_error_clear(&err);
    /* The flags are a subsequence of argv: compacted in place. */
    int n_rest = 0;
    if (take_positional(argc, argv, args, n, &run_path, argv, &n_rest, &err)) return ct_cli_report(&err);
    const int rc = ct_args_parse(n_rest, argv, args, n, USAGE, &err);
    if (rc == 1) return CT_EXIT_OK;
    if (rc) return ct_cli_report(&err);
    if (!run_path) {
        ct_fail(&err, CT_EXIT_USAGE, "RUN.jsonl: required (the log of the run to check; see --help)");
        return ct_cli_report(&err);
    }
    if (!golden_path) {
        ct_fail(&err, CT_EXIT_USAGE, "--golden: required (the reference log, e.g. tests/fixtures/golden/mlp.jsonl)");
        return ct_cli_report(&err);
    }
    if (tol_spec && ct_tol_parse(tol_spec, "--tol", &opt, &err)) return ct_cli_report(&err);

    ct_jsonl_file run, golden;
    memset(&run, 0, sizeof run);
    memset(&golden, 0, sizeof golden);
    int code = CT_EXIT_OK;
    if (ct_jsonl_read(golden_path, &golden, &err) || ct_jsonl_read(run_path, &run, &err)) {
        code = ct_cli_report(&err);
        goto out;
    }
    if (golden.n_kind[CT_REC_STEP] + golden.n_kind[CT_REC_EPOCH] + golden.n_kind[CT_REC_DIAGNOSIS] == 0) {
        ct_fail(&err, CT_EXIT_BAD_INPUT,
                "%s: no step, epoch or diagnosis records to compare (expected a log of cutrain train --log-jsonl)",
                golden_path);
        code = ct_cli_report(&err);
        goto out;
    }
    ct_compare_result res;
    if (ct_tol_check_fields(&opt, &golden, "--tol", &err) || ct_compare_logs(&run, &golden, &opt, &res, &err)) {
        code = ct_cli_report(&err);
        goto out;
    }
    if (res.differ) {
        printf("%s\n", res.line);
        code = CT_EXIT_MISMATCH;
    } else {
        char a[64], b[64], c[64];
        printf("%s, %s and %s match\n", plural(res.matched[CT_REC_STEP], "step", a, sizeof a),
               plural(res.matched[CT_REC_EPOCH], "epoch", b, sizeof b),
               plural(res.matched[CT_REC_DIAGNOSIS], "diagnosis", c, sizeof c));
    }
    if (fflush(stdout)) {
        ct_fail(&err, CT_EXIT_FAILURE, "stdout: write failed");
        code = ct_cli_report(&err);
    }
out:
    ct_jsonl_free(&run);
    ct_jsonl_free(&golden);
    return code;
}
