/* cutrain eval: load saved weights into a model and score the test split. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "src/cli/args.h"
#include "src/cli/commands.h"
#include "src/cli/common.h"
#include "src/io/clock.h"

#define USAGE                                                                                   \
    "usage: cutrain eval --weights FILE [--model PRESET|FILE] [--data DIR] [options]\n\n"       \
    "Evaluates weights saved by `cutrain train --save FILE` (or any safetensors file with the\n" \
    "same names and shapes) on the test split of DIR."

/* The training flags eval takes are checked as train checks them (an lr
 * that float32 cannot hold included), on a copy: they change nothing. */
static int check_training_flags(const ct_model_spec *spec, const char *optimizer, double lr, ct_error *err) {
    ct_model_spec copy = *spec;
    return ct_cli_apply_recipe(&copy, optimizer, lr, 0, err);
}

static int set_loss(ct_model_spec *spec, const char *loss, ct_error *err) {
    spec->loss = (ct_loss_kind)ct_loss_parse(loss);
    return ct_model_spec_validate(spec, err);
}

int ct_cmd_eval(int argc, char **argv) {
    const char *model = "mlp", *data = "data/mnist", *device = "auto", *weights = NULL, *jsonl = NULL, *loss_name = NULL;
    int batch = 1000, threads = 0, quiet = 0;
    /* Settings of training, taken (and checked) so that a train command line
     * can be turned into an eval one by its first word; they change nothing. */
    const char *optimizer = NULL;
    int epochs = 0;
    double lr = 0;
    uint64_t seed = 0;
    ct_arg args[] = {
        {"--model", ARG_STRING, &model, 0, 0, 0, "PRESET|FILE", "the model the weights belong to (default mlp)"},
        {"--weights", ARG_STRING, &weights, 0, 0, 0, "FILE", "safetensors file with the weights (required)"},
        {"--data", ARG_STRING, &data, 0, 0, 0, "DIR", "directory with the MNIST IDX files (default data/mnist)"},
        {"--batch-size", ARG_INT, &batch, 1, 65536, 0, "N", "rows per forward pass (default 1000)"},
        {"--device", ARG_CHOICE, &device, 0, 0, 0, "auto|cpu|cuda", "where to run (default auto)", ct_device_choices},
        {"--threads", ARG_INT, &threads, 1, 1024, 0, "N", "CPU threads (default: the CPUs this process may use)"},
        {"--loss", ARG_CHOICE, &loss_name, 0, 0, 0, "NAME", "the test loss's: " CT_CLI_LOSS_HELP, ct_loss_choices},
        {"--log-jsonl", ARG_STRING, &jsonl, 0, 0, 0, "FILE", "write a summary record as JSONL"},
        {"--epochs", ARG_INT, &epochs, 1, 100000, 0, "N", "training only: accepted, no effect"},
        {"--lr", ARG_DOUBLE, &lr, 0, 10, 1, "X", "training only: accepted, no effect"},
        {"--optimizer", ARG_CHOICE, &optimizer, 0, 0, 0, "NAME", "training only: accepted, no effect",
         ct_optimizer_choices},
        {"--seed", ARG_U64, &seed, 0, 0, 0, "N", "training only: accepted, no effect"},
        {"--quiet", ARG_FLAG, &quiet, 0, 0, 0, NULL, "print nothing but errors"},
    };
    int n = (int)(sizeof args / sizeof args[0]);
    ct_error err;
    ct_error_clear(&err);
    int rc = ct_args_parse(argc, argv, args, n, USAGE, &err);
    if (rc == 1) return CT_EXIT_OK;
    if (rc) return ct_cli_report(&err);
    if (!weights) {
        ct_fail(&err, CT_EXIT_USAGE, "--weights: required (a file written by cutrain train --save)");
        return ct_cli_report(&err);
    }
    ct_model_spec spec;
    ct_dataset test;
    memset(&test, 0, sizeof test);
    ct_backend *be = NULL;
    ct_model m;
    memset(&m, 0, sizeof m);
    ct_logger *log = NULL;
    ct_device_data d;
    memset(&d, 0, sizeof d);
    ct_cli_note device_note;
    int code = CT_EXIT_OK;
    ct_cli_catch_stop_signals();
    ct_cli_file files[8] = {{"--log-jsonl", jsonl, 1}, {"--weights", weights, 0}};
    if (ct_model_spec_resolve(model, &spec, &err) || check_training_flags(&spec, optimizer, lr, &err) ||
        (loss_name && set_loss(&spec, loss_name, &err)) ||
        ct_cli_load_split(data, "test", &spec, &test, &err) ||
        (jsonl && ct_cli_check_writable(jsonl, "--log-jsonl", &err)) ||
        ct_cli_check_distinct(files, 2 + ct_cli_input_files(model, NULL, &test, files + 2), &err) ||
        !(be = ct_cli_backend(device, threads, &device_note, &err)) ||
        /* no buffer larger than the test set: its rows are all a pass can take */
        ct_model_build(&m, &spec, be, batch < (int)test.count ? batch : (int)test.count, 0, &err) ||
        ct_model_load_weights(&m, weights, &err) || ct_device_data_upload(be, &test, &d, &err)) {
        code = ct_cli_report(&err);
        goto out;
    }
    /* The score first, the log after: a stop signal during the evaluation
     * (which does not look at it) leaves an old log as it was. */
    ct_cli_note_print(&device_note, quiet);
    double t0 = ct_now(), loss, acc;
    ct_evaluate(&m, &d, &loss, &acc);
    ct_run_summary s = {.status = "evaluated", .exit_code = 0, .test_loss = loss, .test_acc = acc,
                        .seconds = ct_now() - t0, .model = spec.name, .device = be->description,
                        .params = m.n_params};
    ct_log_options lo = {jsonl, NULL, quiet, 0, 0, NULL, NULL};
    if (ct_cli_interrupted_before("the result was written", &err) || !(log = ct_logger_open(&lo, &err))) {
        code = ct_cli_report(&err);
        goto out;
    }
    if (ct_log_summary(log, &s, &err)) code = ct_cli_report(&err);
    if (ct_logger_close(log, &err) && code == CT_EXIT_OK) code = ct_cli_report(&err);
    log = NULL;
out:
    if (log) ct_logger_close(log, NULL);
    ct_device_data_free(be, &d);
    ct_model_free(&m);
    if (be) ct_backend_destroy(be);
    ct_dataset_free(&test);
    ct_cli_release_stop_signals();
    return code;
}
