/*
 * Configuration: a JSON file plus command-line flags, both validated by one
 * table of options (Redis's table-driven config).
 *
 * A daemon describes its settings as an array of struct mcos_cfg_opt, each
 * naming a dotted JSON key ("tiers.dram.bytes"), an optional long flag
 * ("dram-bytes"), a type, bounds, a default and help text, and the offset
 * of the field it fills.  Values are applied in order: defaults, then the
 * file, then flags, so a flag always wins.  Every value from any source
 * goes through the same parser, and every error names the source, the key
 * and what was wrong:
 *
 *     config file /etc/mcos/agent.json: key 'tiers.dram.bytes': expected
 *     a size such as 4GiB or 1048576, got "lots"
 *
 * A bad value changes nothing already set: the struct keeps the last good
 * value for that field.  Unknown keys and unknown flags are errors.
 *
 * This module owns jansson's error reporting for config files.
 *
 * Thread-safety: none needed; used at start-up on one thread.
 */
#ifndef MCOS_CONFIG_H
#define MCOS_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

enum mcos_cfg_type {
    MCOS_CFG_STRING, /* char * (owned by the struct, freed by cfg_free) */
    MCOS_CFG_UINT,   /* uint64_t: an integer */
    MCOS_CFG_BYTES,  /* uint64_t: an integer or "4GiB", "512MiB", ... */
    MCOS_CFG_MS,     /* uint64_t: a duration in ms: 1500 or "1.5s" */
    MCOS_CFG_BOOL,   /* bool: true/false (flags: --x, --x=true, --x=no) */
};

struct mcos_cfg_opt {
    const char *key;         /* dotted JSON path */
    const char *flag;        /* long flag without "--", or NULL */
    enum mcos_cfg_type type; /* how to parse it */
    size_t offset;           /* offsetof the field in the target struct */
    uint64_t min;            /* numbers: smallest accepted value */
    uint64_t max;            /* numbers: largest (0: no limit) */
    const char *def;         /* default, as text; NULL: none (0/NULL) */
    const char *help;        /* one line for --help */
};

#define MCOS_CFG_ERR_LEN 256

/* Sets every option to its default.  Returns 0, or -EINVAL if a default
 * does not parse (a programming error, reported in `err`). */
int mcos_cfg_defaults(const struct mcos_cfg_opt *, size_t n, void *target,
                      char *err, size_t errlen);

/* Loads a JSON file over the current values. */
int mcos_cfg_load_file(const struct mcos_cfg_opt *, size_t n, void *target,
                       const char *path, char *err, size_t errlen);

/* Loads a JSON document given as text (source names it in errors). */
int mcos_cfg_load_string(const struct mcos_cfg_opt *, size_t n, void *target,
                         const char *text, const char *source, char *err,
                         size_t errlen);

/* Sets one option by key or flag name from text. */
int mcos_cfg_set(const struct mcos_cfg_opt *, size_t n, void *target,
                 const char *name, const char *value, const char *source,
                 char *err, size_t errlen);

/* Parses argv.  Recognises --help (sets *help), --version (sets *version),
 * --config FILE (loaded before any other flag is applied, wherever it
 * stands), and every option's flag as --flag VALUE or --flag=VALUE.  Any
 * positional argument is an error. */
int mcos_cfg_parse_args(const struct mcos_cfg_opt *, size_t n, void *target,
                        int argc, char **argv, bool *help, bool *version,
                        char *err, size_t errlen);

/* Prints the flags, their defaults and help. */
void mcos_cfg_print_help(const struct mcos_cfg_opt *, size_t n, FILE *);

/* Frees the strings the options own. */
void mcos_cfg_free(const struct mcos_cfg_opt *, size_t n, void *target);

/* Checks that `url` uses one of `schemes` (a NULL-terminated list such as
 * {"tcp", "ipc", NULL}) and, for tcp and http, names a host and a port in
 * 1-65535.  `key` names the setting in the message. */
int mcos_check_url(const char *key, const char *url,
                   const char *const *schemes, char *err, size_t errlen);

/* Parsers shared with the CLI and the HTTP API so that every entry point
 * accepts the same syntax.  Each returns 0 or -EINVAL. */
int mcos_parse_uint(const char *s, uint64_t *out);
int mcos_parse_bytes(const char *s, uint64_t *out);
int mcos_parse_ms(const char *s, uint64_t *out);
int mcos_parse_bool(const char *s, bool *out);

#endif /* MCOS_CONFIG_H */
