/* Loading a checkpoint for a run: the model's tensors come back through
 * ct_checkpoint_load; here the run's own settings are checked against the
 * ones the checkpoint was written with, so that a resume either reproduces
 * the interrupted run or is refused with the reason. */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "src/train/train_internal.h"

static int check_run(const ct_dataset *train, const ct_train_options *opt, const char *path, const ct_train_state *st,
                     ct_error *err) {
    if (st->batch_size != opt->batch_size)
        return ct_fail(err, CT_EXIT_BAD_INPUT, "%s: written with batch size %d, this run has %d", path,
                       st->batch_size, opt->batch_size);
    if (st->drop_last != (opt->drop_last != 0))
        return ct_fail(err, CT_EXIT_BAD_INPUT, "%s: written %s --drop-last, this run is %s it", path,
                       st->drop_last ? "with" : "without", opt->drop_last ? "with" : "without");
    if (train && (st->train_count != train->count || st->train_crc != ct_dataset_crc32(train)))
        return ct_fail(err, CT_EXIT_BAD_INPUT,
                       "%s: written for a training set of %" PRIu64 " items (CRC-32 %08x); %s has %zu items "
                       "(CRC-32 %08x)",
                       path, st->train_count, st->train_crc, train->images_path, train->count,
                       ct_dataset_crc32(train));
    if (train && st->epoch_steps > ct_steps_per_epoch(train->count, opt->batch_size, opt->drop_last))
        return ct_fail(err, CT_EXIT_BAD_INPUT, "%s: checkpoint state says %" PRIu64 " steps into an epoch of %" PRIu64,
                       path, st->epoch_steps, ct_steps_per_epoch(train->count, opt->batch_size, opt->drop_last));
    if (st->epoch == 0)
        return ct_fail(err, CT_EXIT_BAD_INPUT, "%s: checkpoint state names epoch 0; epochs count from 1", path);
    /* The counters of a run cutrain wrote agree with one another; a state
     * that does not is a corrupt or hand-made file, and training from it
     * would log nonsense (5,000,000 steps in a 5-step epoch). */
    if (st->health.stop)
        return ct_fail(err, CT_EXIT_BAD_INPUT,
                       "%s: checkpoint state says a health policy stopped the run; no checkpoint is written then", path);
    if ((uint64_t)st->health.nonfinite_run > st->health.nonfinite_steps || st->health.nonfinite_steps > st->step)
        return ct_fail(err, CT_EXIT_BAD_INPUT,
                       "%s: checkpoint state counts %" PRIu64 " non-finite steps (the last %d in a row) in a run of %" PRIu64
                       " steps",
                       path, st->health.nonfinite_steps, st->health.nonfinite_run, st->step);
    if (train) {
        const uint64_t spe = ct_steps_per_epoch(train->count, opt->batch_size, opt->drop_last);
        const uint64_t want = (uint64_t)(st->epoch - 1) * spe + st->epoch_steps;
        if (st->step != want)
            return ct_fail(err, CT_EXIT_BAD_INPUT,
                           "%s: checkpoint state says step %" PRIu64 ", but %" PRIu64 " steps into epoch %u of %" PRIu64
                           "-step epochs is step %" PRIu64,
                           path, st->step, st->epoch_steps, st->epoch, spe, want);
        uint64_t samples = st->epoch_steps * (uint64_t)opt->batch_size;
        if (!opt->drop_last && samples > train->count) samples = train->count;
        if (st->ep_samples != samples)
            return ct_fail(err, CT_EXIT_BAD_INPUT,
                           "%s: checkpoint state counts %" PRIu64 " samples in the %" PRIu64
                           " steps of the epoch so far; they hold %" PRIu64,
                           path, st->ep_samples, st->epoch_steps, samples);
    }
    /* The optimizer counts its updates: one a step, none for a step whose
     * update was skipped (--on-nan skip), none or one for an empty batch.
     * Adam's bias correction reads the count, so a wrong one changes the run. */
    const uint64_t skipped = st->health.skipped_steps, empty = st->health.empty_batches;
    if (skipped > st->step || empty > st->step - skipped)
        return ct_fail(err, CT_EXIT_BAD_INPUT,
                       "%s: checkpoint state counts %" PRIu64 " skipped updates and %" PRIu64 " empty batches in %" PRIu64
                       " steps",
                       path, skipped, empty, st->step);
    const uint64_t most = st->step - skipped, least = most - empty;
    if (st->optim_t > most || st->optim_t < least) {
        if (empty)
            return ct_fail(err, CT_EXIT_BAD_INPUT,
                           "%s: metadata \"optim.t\" is %" PRIu64 ", but %" PRIu64 " steps with %" PRIu64
                           " updates skipped and %" PRIu64 " empty batches make %" PRIu64 " to %" PRIu64 " updates",
                           path, st->optim_t, st->step, skipped, empty, least, most);
        return ct_fail(err, CT_EXIT_BAD_INPUT,
                       "%s: metadata \"optim.t\" is %" PRIu64 ", but %" PRIu64 " steps with %" PRIu64
                       " updates skipped make %" PRIu64 " updates",
                       path, st->optim_t, st->step, skipped, most);
    }
    return 0;
}

/* The run's settings are checked against the state that comes with the
 * checkpoint's tensors, so the model's own parameters and optimizer state
 * wait on the host meanwhile and are put back when the checkpoint is
 * refused: a caller that then trains afresh does so from its own weights,
 * not the refused run's. (ct_checkpoint_load itself changes nothing when
 * it fails.) */
int ct_train_load_checkpoint(ct_model *m, const ct_dataset *train, const ct_train_options *opt, const char *path,
                             ct_train_state *st, ct_error *err) {
    memset(st, 0, sizeof *st);
    ct_train_health_init(m, opt, &st->health);
    ct_backend *be = m->be;
    const size_t n = m->n_params, slots = (size_t)ct_optim_state_slots(&m->spec.optim);
    float *keep = malloc((n ? (1 + slots) * n : 1) * sizeof(float));
    if (!keep) return ct_fail(err, CT_EXIT_FAILURE, "%s: out of host memory for the model's %zu parameters", path, n);
    uint64_t t = 0;
    ct_model_get_params(m, keep);
    if (slots) be->ops->download(be, keep + n, m->opt_state, slots * n * sizeof(float));
    be->ops->download(be, &t, m->opt_t, sizeof t);
    int rc = ct_checkpoint_load(m, st, path, err);
    if (rc == 0 && (rc = check_run(train, opt, path, st, err)) != 0) {
        ct_model_set_params(m, keep);
        if (slots) be->ops->upload(be, m->opt_state, keep + n, slots * n * sizeof(float));
        be->ops->upload(be, m->opt_t, &t, sizeof t);
    }
    free(keep);
    return rc;
}
