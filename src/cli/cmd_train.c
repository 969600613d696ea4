/* cutrain train: validate everything, then train and log. The order matters:
 * flags, model, data and output paths are all checked before the first log
 * file is created, so bad input leaves nothing behind. */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "src/cli/args.h"
#include "src/cli/commands.h"
#include "src/cli/common.h"

typedef struct train_flags {
    const char *model, *data, *device, *optimizer, *loss, *init, *on_nan, *jsonl, *csv, *tensorboard, *save, *inject_layer;
    const char *resume, *inject_kind;
    uint64_t save_every;
    const char *schedule;
    const char *init_weights; /* --init-weights: start from these instead of --init's draw */
    double lr_pct, lr_gamma;
    uint64_t lr_step_size;
    int epochs, batch_size, threads, drop_last, quiet, drain_every;
    uint64_t seed, max_steps, inject_nan;
    double lr, clip;
    ct_health_config health;
} train_flags;

static const char *const init_choices[] = {"glorot_uniform", "he_uniform", "he_normal", NULL};
static const char *const on_nan_choices[] = {"stop", "skip", "warn", NULL};
static const char *const inject_choices[] = {"nan", "inf", "-inf", "zero", NULL}; /* CT_INJECT_* order */
static const char *const schedule_choices[] = {"constant", "step", "cosine", "onecycle", NULL};

#define USAGE                                                                                                     \
    "usage: cutrain train [--model PRESET|FILE] [--data DIR] [--epochs N] [options]\n\n"                           \
    "Trains a model on MNIST-format IDX data and evaluates it on the test split after every epoch.\n"              \
    "Presets: seed (784-10-10, Adam 1e-3, batch 32), mlp (784-512-512-10, Adam 1e-3, batch 128),\n"            \
    "cnn (PyTorch's MNIST example: conv 32, conv 64, max-pool, dropout, dense 128, 10; batch 64)."

/* Applies command-line overrides to the model's own recipe. */
static int apply_overrides(ct_model_spec *spec, const train_flags *f, const ct_arg *args, int n, ct_error *err) {
    if (ct_cli_apply_recipe(spec, f->optimizer, f->lr, f->batch_size, err)) return -1;
    /* float32 settings: a value that rounds to 0 would silently turn the
     * clipping off, or the step schedule's rate to 0. */
    const struct {
        const char *flag;
        double v;
    } floats[] = {{"--clip-grad-norm", f->clip}, {"--lr-gamma", f->lr_gamma}, {"--lr-pct", f->lr_pct}};
    for (size_t i = 0; i < sizeof floats / sizeof floats[0]; ++i)
        if (ct_args_seen(args, n, floats[i].flag) && floats[i].v > 0 && (float)floats[i].v == 0.0f)
            return ct_fail(err, CT_EXIT_USAGE, "%s: %g is below what float32 can hold (it would be 0)", floats[i].flag,
                           floats[i].v);
    if (ct_args_seen(args, n, "--clip-grad-norm")) spec->optim.clip_norm = (float)f->clip;
    if (ct_args_seen(args, n, "--loss")) spec->loss = (ct_loss_kind)ct_loss_parse(f->loss);
    if (ct_args_seen(args, n, "--init")) spec->init = (ct_init_kind)ct_init_parse(f->init);
    if (f->init_weights && ct_args_seen(args, n, "--init"))
        return ct_fail(err, CT_EXIT_USAGE, "--init-weights: the weights come from %s; drop --init", f->init_weights);
    if (f->resume && (f->init_weights || ct_args_seen(args, n, "--init")))
        return ct_fail(err, CT_EXIT_USAGE, "--resume: the weights come from the checkpoint %s; drop %s", f->resume,
                       f->init_weights ? "--init-weights" : "--init");
    if (ct_args_seen(args, n, "--lr-schedule")) {
        for (int k = 0; schedule_choices[k]; ++k)
            if (strcmp(f->schedule, schedule_choices[k]) == 0) spec->optim.schedule = ct_schedule_defaults((ct_schedule_kind)k);
    }
    /* A setting of a schedule the run does not have would be dropped without
     * a word; say which schedule it belongs to instead. */
    const struct {
        const char *flag;
        ct_schedule_kind kind;
    } owned[] = {{"--lr-pct", CT_SCHED_ONECYCLE}, {"--lr-step-size", CT_SCHED_STEP}, {"--lr-gamma", CT_SCHED_STEP}};
    for (size_t i = 0; i < sizeof owned / sizeof owned[0]; ++i)
        if (ct_args_seen(args, n, owned[i].flag) && spec->optim.schedule.kind != owned[i].kind)
            return ct_fail(err, CT_EXIT_USAGE, "%s: a setting of the %s schedule; this run's schedule is %s (add --lr-schedule %s)",
                           owned[i].flag, schedule_choices[owned[i].kind], schedule_choices[spec->optim.schedule.kind],
                           schedule_choices[owned[i].kind]);
    if (ct_args_seen(args, n, "--lr-pct")) spec->optim.schedule.pct = (float)f->lr_pct;
    if (ct_args_seen(args, n, "--lr-gamma")) spec->optim.schedule.gamma = (float)f->lr_gamma;
    if (ct_args_seen(args, n, "--lr-step-size")) {
        if (f->lr_step_size == 0) return ct_fail(err, CT_EXIT_USAGE, "--lr-step-size: expected at least 1, got 0");
        spec->optim.schedule.step_size = f->lr_step_size;
    }
    return ct_model_spec_validate(spec, err);
}

static int check_batches(const ct_dataset *train, const ct_train_options *o, ct_error *err) {
    const uint64_t spe = ct_steps_per_epoch(train->count, o->batch_size, o->drop_last);
    if (spe == 0)
        return ct_fail(err, CT_EXIT_USAGE,
                       "--batch-size %d with --drop-last leaves no full batch from the %zu items of %s; "
                       "use a batch size of at most %zu or drop --drop-last",
                       o->batch_size, train->count, train->images_path, train->count);
    /* A fault planted past the run's last step would never be planted. */
    uint64_t last = spe * (uint64_t)o->epochs;
    if (o->max_steps && o->max_steps < last) last = o->max_steps;
    if (o->inject_nan_step > last)
        return ct_fail(err, CT_EXIT_USAGE, "--inject-nan %llu: the run ends at step %llu (%s)",
                       (unsigned long long)o->inject_nan_step, (unsigned long long)last,
                       o->max_steps && o->max_steps == last ? "--max-steps" : "--epochs x steps per epoch");
    return 0;
}

static int prepare_outputs(const train_flags *f, const ct_dataset *train, const ct_dataset *test, ct_error *err) {
    if (f->jsonl && ct_cli_check_writable(f->jsonl, "--log-jsonl", err)) return -1;
    if (f->csv && ct_cli_check_writable(f->csv, "--log-csv", err)) return -1;
    if (f->tensorboard && ct_cli_check_log_dir(f->tensorboard, "--log-tensorboard", err)) return -1;
    if (f->save && ct_cli_check_replaceable(f->save, "--save", err)) return -1;
    /* --resume FILE --save FILE goes on saving where it left off: the one
     * output that may replace an input. */
    ct_cli_file files[11] = {{"--log-jsonl", f->jsonl, 1},
                             {"--log-csv", f->csv, 1},
                             {"--save", f->save, 1},
                             {"--log-tensorboard", f->tensorboard, 1},
                             {"--resume", f->resume, 0, "--save"},
                             {"--init-weights", f->init_weights, 0}};
    int n = 6 + ct_cli_input_files(f->model, train, test, files + 6);
    return ct_cli_check_distinct(files, n, err);
}

static int resolve_inject_layer(const ct_model *m, const char *name, ct_train_options *opt, ct_error *err) {
    for (int i = 0; i < m->n_param_layers; ++i)
        if (strcmp(m->layers[m->param_layer[i]].spec.name, name) == 0) {
            opt->inject_nan_layer = i;
            return 0;
        }
    return ct_fail(err, CT_EXIT_USAGE, "--inject-layer: the model has no layer with parameters named '%s'", name);
}

/* The checkpoint sets the seed (weights, order and dropout all derive from
 * it); a --seed that says otherwise is a mistake worth stopping for. */
static int resume_from(ct_model *m, const ct_dataset *train, const train_flags *f, const ct_arg *args, int n,
                       ct_train_options *opt, ct_train_state *st, ct_error *err) {
    if (ct_train_load_checkpoint(m, train, opt, f->resume, st, err)) return -1;
    if (ct_args_seen(args, n, "--seed") && f->seed != st->seed)
        return ct_fail(err, CT_EXIT_USAGE, "--seed %llu: %s was written by a run with seed %llu",
                       (unsigned long long)f->seed, f->resume, (unsigned long long)st->seed);
    opt->seed = st->seed;
    opt->resume = st;
    /* Limits the checkpoint is already past would end the run at once as
     * "completed" with nothing done; --max-steps and --epochs count the whole
     * run, across resumes. */
    if (opt->max_steps && opt->max_steps < st->step)
        return ct_fail(err, CT_EXIT_USAGE,
                       "--max-steps %llu: %s is at step %llu already (--max-steps counts the steps of the whole run)",
                       (unsigned long long)opt->max_steps, f->resume, (unsigned long long)st->step);
    const uint32_t least = st->epoch_steps ? st->epoch : st->epoch - 1;
    if ((uint32_t)opt->epochs < least)
        return ct_fail(err, CT_EXIT_USAGE, "--epochs %d: %s is %s epoch %u already (--epochs counts the whole run)",
                       opt->epochs, f->resume, st->epoch_steps ? "in" : "past", least);
    if (opt->inject_nan_step && opt->inject_nan_step <= st->step)
        return ct_fail(err, CT_EXIT_USAGE, "--inject-nan %llu: %s goes on from step %llu, past it",
                       (unsigned long long)opt->inject_nan_step, f->resume, (unsigned long long)st->step + 1);
    return 0;
}

int ct_cmd_train(int argc, char **argv) {
    train_flags f = {.model = "mlp", .data = "data/mnist", .device = "auto", .on_nan = "stop", .epochs = 1,
                     .drain_every = 32, .health = ct_health_defaults()};
    ct_health_config *hc = &f.health;
    ct_arg args[] = {
        {"--model", ARG_STRING, &f.model, 0, 0, 0, "PRESET|FILE", "seed, mlp, cnn, or a model file (default mlp)"},
        {"--data", ARG_STRING, &f.data, 0, 0, 0, "DIR", "directory with the MNIST IDX files (default data/mnist)"},
        {"--epochs", ARG_INT, &f.epochs, 1, 100000, 0, "N", "passes over the training set (default 1)"},
        {"--batch-size", ARG_INT, &f.batch_size, 1, 65536, 0, "N", "rows per step (default: the model's)"},
        {"--lr", ARG_DOUBLE, &f.lr, 0, 10, 1, "X", "learning rate (default: the model's)"},
        {"--optimizer", ARG_CHOICE, &f.optimizer, 0, 0, 0, "NAME", "sgd|adam|adamw|rmsprop, Keras defaults",
         ct_optimizer_choices},
        {"--loss", ARG_CHOICE, &f.loss, 0, 0, 0, "NAME", CT_CLI_LOSS_HELP, ct_loss_choices},
        {"--init", ARG_CHOICE, &f.init, 0, 0, 0, "NAME", "glorot_uniform|he_uniform|he_normal", init_choices},
        {"--init-weights", ARG_STRING, &f.init_weights, 0, 0, 0, "FILE",
         "start from these weights (safetensors, the names and shapes --save writes)"},
        {"--clip-grad-norm", ARG_DOUBLE, &f.clip, 0, 1e12, 1, "X", "scale gradients to a global norm of at most X"},
        {"--lr-schedule", ARG_CHOICE, &f.schedule, 0, 0, 0, "NAME", "constant|step|cosine|onecycle over the run",
         schedule_choices},
        {"--lr-pct", ARG_DOUBLE, &f.lr_pct, 0, 1, 1, "X", "onecycle: fraction of the run rising to --lr (0.3)"},
        {"--lr-step-size", ARG_U64, &f.lr_step_size, 0, 0, 0, "N", "step: multiply by --lr-gamma every N steps"},
        {"--lr-gamma", ARG_DOUBLE, &f.lr_gamma, 0, 1, 1, "X", "step: the factor (0.1)"},
        {"--seed", ARG_U64, &f.seed, 0, 0, 0, "N", "seed for weights, shuffling and dropout (default 0)"},
        {"--device", ARG_CHOICE, &f.device, 0, 0, 0, "auto|cpu|cuda", "where to train (default auto)",
         ct_device_choices},
        {"--threads", ARG_INT, &f.threads, 1, 1024, 0, "N", "CPU threads (default: the CPUs this process may use)"},
        {"--drop-last", ARG_FLAG, &f.drop_last, 0, 0, 0, NULL, "drop a final batch smaller than the batch size"},
        {"--max-steps", ARG_U64, &f.max_steps, 0, 0, 0, "N", "stop after N steps in all (default: no limit)"},
        {"--on-nan", ARG_CHOICE, &f.on_nan, 0, 0, 0, "stop|skip|warn",
         "on a NaN/Inf loss or gradient: stop (default), skip the update, or warn", on_nan_choices},
        {"--log-jsonl", ARG_STRING, &f.jsonl, 0, 0, 0, "FILE", "write every step, epoch and diagnosis as JSONL"},
        {"--log-csv", ARG_STRING, &f.csv, 0, 0, 0, "FILE", "write one CSV row per epoch"},
        {"--log-tensorboard", ARG_STRING, &f.tensorboard, 0, 0, 0, "DIR",
         "write steps, epochs and diagnoses as a TensorBoard event file in DIR (made if missing)"},
        {"--save", ARG_STRING, &f.save, 0, 0, 0, "FILE",
         "write a training checkpoint (safetensors: weights, optimizer state, position) when the run ends"},
        {"--save-every", ARG_U64, &f.save_every, 0, 0, 0, "N", "... and every N steps (needs --save)"},
        {"--resume", ARG_STRING, &f.resume, 0, 0, 0, "FILE",
         "go on from a checkpoint of --save, with the same model, data and flags"},
        {"--drain-every", ARG_INT, &f.drain_every, 1, 4096, 0, "N", "steps between reads of the record ring (32)"},
        {"--inject-nan", ARG_U64, &f.inject_nan, 0, 0, 0, "STEP", "fault injection: poison one gradient value at STEP"},
        {"--inject-layer", ARG_STRING, &f.inject_layer, 0, 0, 0, "NAME", "... in this layer (default: the output)"},
        {"--inject-kind", ARG_CHOICE, &f.inject_kind, 0, 0, 0, "nan|inf|-inf|zero",
         "... what is planted (nan; zero: the layer's whole gradient)", inject_choices},
        {"--health-vanishing-ratio", ARG_DOUBLE, &hc->vanishing_ratio, 0, 1, 0, "X",
         "an update with ||dw||/||w|| below X is vanishing (1e-7)"},
        {"--health-vanishing-window", ARG_INT, &hc->vanishing_window, 0, 1000000, 0, "N",
         "vanishing for N updates in a row: diagnosis (100; 0 off)"},
        {"--health-dead-window", ARG_INT, &hc->dead_window, 0, 1000000, 0, "N",
         "a layer's gradient exactly zero N steps: diagnosis (50; 0 off)"},
        {"--health-explode-factor", ARG_DOUBLE, &hc->explode_factor, 1, 1e30, 1, "X",
         "||g|| above X times its recent median: diagnosis (100)"},
        {"--health-explode-window", ARG_INT, &hc->explode_window, 0, CT_HEALTH_MAX_WINDOW, 0, "N",
         "steps in that median (20; 0 off)"},
        {"--health-chance-window", ARG_INT, &hc->chance_window, 0, 1000000, 0, "N",
         "loss at or above chance level N steps: diagnosis (200; 0 off)"},
        {"--health-chance-tolerance", ARG_DOUBLE, &hc->chance_tolerance, 0, 1, 0, "X",
         "\"at chance\": no more than X below chance, or above it (0.02)"},
        {"--health-nonfinite-window", ARG_INT, &hc->nonfinite_window, 0, 1000000, 0, "N",
         "NaN/Inf N steps in a row under --on-nan skip|warn: stop, exit 4 (100; 0 off)"},
        {"--quiet", ARG_FLAG, &f.quiet, 0, 0, 0, NULL, "no terminal output except errors and diagnoses"},
    };
    int n = (int)(sizeof args / sizeof args[0]);
    ct_error err;
    ct_error_clear(&err);
    int rc = ct_args_parse(argc, argv, args, n, USAGE, &err);
    if (rc == 1) return CT_EXIT_OK;
    if (rc) return ct_cli_report(&err);

    ct_model_spec spec;
    if (ct_model_spec_resolve(f.model, &spec, &err) || apply_overrides(&spec, &f, args, n, &err))
        return ct_cli_report(&err);
    ct_train_options opt = ct_train_defaults(&spec);
    opt.epochs = f.epochs;
    opt.seed = f.seed;
    opt.drop_last = f.drop_last;
    opt.max_steps = f.max_steps;
    opt.health = f.health;
    opt.health.on_nan = (ct_nan_policy)ct_nan_policy_parse(f.on_nan);
    opt.inject_nan_step = f.inject_nan;
    for (int k = 0; f.inject_kind && inject_choices[k]; ++k)
        if (strcmp(f.inject_kind, inject_choices[k]) == 0) opt.inject_kind = k;
    opt.drain_every = f.drain_every;
    opt.interrupt = &ct_cli_stop_signal;
    opt.save_path = f.save;
    opt.save_every = f.save_every;
    if ((f.inject_kind || f.inject_layer) && !ct_args_seen(args, n, "--inject-nan")) {
        ct_fail(&err, CT_EXIT_USAGE, "%s: needs --inject-nan STEP to say when", f.inject_kind ? "--inject-kind" : "--inject-layer");
        return ct_cli_report(&err);
    }
    if (ct_args_seen(args, n, "--inject-nan") && f.inject_nan == 0) {
        ct_fail(&err, CT_EXIT_USAGE, "--inject-nan: expected a step of 1 or more (steps count from 1), got 0");
        return ct_cli_report(&err);
    }
    if (ct_args_seen(args, n, "--health-nonfinite-window") && opt.health.on_nan == CT_ON_NAN_STOP) {
        ct_fail(&err, CT_EXIT_USAGE,
                "--health-nonfinite-window: has no effect with --on-nan stop, which stops at the first NaN/Inf "
                "(add --on-nan skip or warn)");
        return ct_cli_report(&err);
    }
    if (f.save_every && !f.save) {
        ct_fail(&err, CT_EXIT_USAGE, "--save-every %llu: needs --save FILE to say where",
                (unsigned long long)f.save_every);
        return ct_cli_report(&err);
    }

    ct_dataset train, test;
    memset(&train, 0, sizeof train);
    memset(&test, 0, sizeof test);
    ct_backend *be = NULL;
    ct_logger *log = NULL;
    ct_model model;
    memset(&model, 0, sizeof model);
    ct_train_state resume;
    ct_cli_note device_note;
    int code = CT_EXIT_FAILURE;
    ct_cli_catch_stop_signals();
    if (ct_cli_load_split(f.data, "train", &spec, &train, &err) ||
        ct_cli_load_split(f.data, "test", &spec, &test, &err) || check_batches(&train, &opt, &err) ||
        prepare_outputs(&f, &train, &test, &err) || !(be = ct_cli_backend(f.device, f.threads, &device_note, &err))) {
        code = ct_cli_report(&err);
        goto out;
    }
    /* Evaluation reuses the training buffers in chunks of at least 1000 rows. */
    int max_rows = ct_train_plan_rows(train.count, spec.batch_size);
    if (ct_model_build(&model, &spec, be, max_rows, f.seed, &err) ||
        (f.init_weights && ct_model_load_weights(&model, f.init_weights, &err)) ||
        (f.inject_layer && resolve_inject_layer(&model, f.inject_layer, &opt, &err)) ||
        (f.resume && resume_from(&model, &train, &f, args, n, &opt, &resume, &err))) {
        code = ct_cli_report(&err);
        goto out;
    }
    char names[CT_MAX_PARAM_LAYERS][32];
    for (int i = 0; i < model.n_param_layers; ++i) memcpy(names[i], model.layers[model.param_layer[i]].spec.name, 32);
    ct_log_options lo = {f.jsonl, f.csv, f.quiet, isatty(STDOUT_FILENO), model.n_param_layers,
                         (const char(*)[32])names, f.tensorboard};
    /* Stopped while the inputs loaded: the logs (which would empty an old
     * one) are not opened. From here on, the trainer stops at its first step
     * and logs that it was interrupted. */
    if (ct_cli_interrupted_before("training began", &err) || !(log = ct_logger_open(&lo, &err))) {
        code = ct_cli_report(&err);
        goto out;
    }
    ct_cli_note_print(&device_note, f.quiet);
    /* A resumed run's log goes on from the checkpoint's next step: the
     * step-0 diagnoses are in the first run's log already. */
    if (!f.resume) ct_cli_log_build_diagnoses(log, &spec, &train, &test);
    if (!f.quiet) {
        char desc[512];
        ct_model_spec_describe(&spec, desc, sizeof desc);
        printf("cutrain %s: %s on %s; %zu train / %zu test items; %zu parameters; seed %llu\n", CUTRAIN_VERSION,
               desc, be->description, train.count, test.count, model.n_params, (unsigned long long)opt.seed);
        if (opt.resume)
            printf("resuming from %s: %llu steps done, epoch %u\n", f.resume,
                   (unsigned long long)resume.step, resume.epoch);
        fflush(stdout); /* before any diagnosis on stderr */
    }
    ct_run_summary sum;
    code = ct_train(&model, &train, &test, &opt, log, &sum, &err);
    if (code < 0) {
        code = ct_cli_report(&err);
    }
    ct_error cerr;
    ct_error_clear(&cerr);
    if (ct_logger_close(log, &cerr) && code == CT_EXIT_OK) code = ct_cli_report(&cerr);
    log = NULL;
out:
    if (log) ct_logger_close(log, NULL);
    ct_model_free(&model);
    if (be) ct_backend_destroy(be);
    ct_dataset_free(&train);
    ct_dataset_free(&test);
    /* Only now: a second signal while the last records and the checkpoint
     * were written sets the flag again rather than killing mid-write. */
    ct_cli_release_stop_signals();
    return code;
}
