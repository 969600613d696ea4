/* A run's position (ct_train_state) and optimizer recipe as text, for the
 * checkpoint's metadata: one "name value..." line per field, integers in
 * decimal, doubles in C99 hex so that they come back bit for bit. The
 * parser takes the fields in the order written and refuses anything else. */
#ifndef CUTRAIN_SRC_TRAIN_STATE_TEXT_H
#define CUTRAIN_SRC_TRAIN_STATE_TEXT_H

#include <stddef.h>

#include "cutrain/checkpoint.h"
#include "cutrain/optim.h"

/* malloc'd, NUL-terminated; NULL when out of memory. */
char *ct_train_state_format(const ct_train_state *st);
/* st->health's configuration is kept; its state is read. `path` names the
 * file in errors. */
int ct_train_state_parse(const char *text, ct_train_state *st, const char *path, ct_error *err);

/* The optimizer and schedule settings that change the updates (not the
 * schedule's length, which is part of the state). */
void ct_optim_format(const ct_optim_config *c, char *buf, size_t len);

#endif
