#ifndef CUTRAIN_CLI_COMMANDS_H
#define CUTRAIN_CLI_COMMANDS_H
#include "cutrain/error.h"
/* Each returns the process exit status (CT_EXIT_*). argv excludes the command name. */
int ct_cmd_train(int argc, char **argv);
int ct_cmd_eval(int argc, char **argv);
int ct_cmd_bench(int argc, char **argv);
int ct_cmd_check(int argc, char **argv);
int ct_cmd_show(int argc, char **argv);
/* Prints "cutrain: error: <msg>" on stderr and returns err->code. */
int ct_cli_report(const ct_error *err);
#endif
