#include "config.h"
#include "error.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

int
mcos_parse_uint(const char *s, uint64_t *out)
{
    char *end;
    unsigned long long v;

    if (!s || !isdigit((unsigned char)*s)) {
        return -EINVAL;
    }
    errno = 0;
    v = strtoull(s, &end, 10);
    if (errno || *end) {
        return -EINVAL;
    }
    *out = v;
    return 0;
}

struct unit {
    const char *unit; /* suffix, case-insensitive */
    double factor;    /* what one of it is worth */
};

/* Parses "<number><unit>" where number may have a fraction; multiplies by
 * the unit's factor and checks for overflow. */
static int
parse_scaled(const char *s, const struct unit *units, size_t n_units,
             uint64_t *out)
{
    char *end;
    double v;

    if (!s || !(isdigit((unsigned char)*s) || *s == '.')) {
        return -EINVAL;
    }
    errno = 0;
    v = strtod(s, &end);
    if (errno || end == s || !isfinite(v) || v < 0) {
        return -EINVAL;
    }
    while (*end == ' ') {
        end++;
    }
    for (size_t i = 0; i < n_units; i++) {
        if (!strcasecmp(end, units[i].unit)) {
            double r = v * units[i].factor;

            if (r >= 18446744073709551616.0 || r != floor(r)) {
                return -EINVAL;
            }
            *out = (uint64_t)r;
            return 0;
        }
    }
    return -EINVAL;
}

int
mcos_parse_bytes(const char *s, uint64_t *out)
{
    static const struct unit units[] = {
        {"", 1.0},       {"B", 1.0},      {"K", 0x1p10},   {"KiB", 0x1p10},
        {"KB", 0x1p10},  {"M", 0x1p20},   {"MiB", 0x1p20}, {"MB", 0x1p20},
        {"G", 0x1p30},   {"GiB", 0x1p30}, {"GB", 0x1p30},  {"T", 0x1p40},
        {"TiB", 0x1p40}, {"TB", 0x1p40},
    };

    if (mcos_parse_uint(s, out) == 0) {
        return 0;
    }
    return parse_scaled(s, units, sizeof units / sizeof units[0], out);
}

int
mcos_parse_ms(const char *s, uint64_t *out)
{
    static const struct unit units[] = {
        {"", 1.0},      {"ms", 1.0},      {"s", 1000.0},
        {"m", 60000.0}, {"min", 60000.0}, {"h", 3600000.0},
    };

    if (mcos_parse_uint(s, out) == 0) {
        return 0;
    }
    return parse_scaled(s, units, sizeof units / sizeof units[0], out);
}

int
mcos_parse_bool(const char *s, bool *out)
{
    if (!strcasecmp(s, "true") || !strcasecmp(s, "yes") || !strcmp(s, "1") ||
        !strcasecmp(s, "on")) {
        *out = true;
        return 0;
    }
    if (!strcasecmp(s, "false") || !strcasecmp(s, "no") || !strcmp(s, "0") ||
        !strcasecmp(s, "off")) {
        *out = false;
        return 0;
    }
    return -EINVAL;
}

static const char *
type_expectation(const struct mcos_cfg_opt *o)
{
    switch (o->type) {
    case MCOS_CFG_STRING:
        return "a string";
    case MCOS_CFG_UINT:
        return "a non-negative integer";
    case MCOS_CFG_BYTES:
        return "a size such as 4GiB or 1048576";
    case MCOS_CFG_MS:
        return "a duration such as 1500 (ms) or 1.5s";
    case MCOS_CFG_BOOL:
        return "true or false";
    }
    return "a value";
}

/* Parses `value` for `o` and stores it; on error stores nothing.  With a
 * NULL target it only validates. */
static int
apply_text(const struct mcos_cfg_opt *o, void *target, const char *value,
           const char *source, char *err, size_t errlen)
{
    char *field = target ? (char *)target + o->offset : NULL;
    uint64_t u = 0;
    bool b;
    int r = 0;

    switch (o->type) {
    case MCOS_CFG_STRING: {
        char *copy;

        if (!field) {
            return 0;
        }
        copy = strdup(value);

        if (!copy) {
            return -ENOMEM;
        }
        free(*(char **)field);
        *(char **)field = copy;
        return 0;
    }
    case MCOS_CFG_BOOL:
        if (mcos_parse_bool(value, &b)) {
            goto bad;
        }
        if (field) {
            *(bool *)field = b;
        }
        return 0;
    case MCOS_CFG_UINT:
        r = mcos_parse_uint(value, &u);
        break;
    case MCOS_CFG_BYTES:
        r = mcos_parse_bytes(value, &u);
        break;
    case MCOS_CFG_MS:
        r = mcos_parse_ms(value, &u);
        break;
    }
    if (r) {
        goto bad;
    }
    if (u < o->min || (o->max && u > o->max)) {
        if (o->max) {
            mcos_seterr(err, errlen,
                        "%s: key '%s': %s is out of range (%" PRIu64
                        " to %" PRIu64 ")",
                        source, o->key, value, o->min, o->max);
        } else {
            mcos_seterr(err, errlen,
                        "%s: key '%s': %s is below the minimum %" PRIu64,
                        source, o->key, value, o->min);
        }
        return -EINVAL;
    }
    if (field) {
        *(uint64_t *)field = u;
    }
    return 0;

bad:
    mcos_seterr(err, errlen, "%s: key '%s': expected %s, got \"%s\"", source,
                o->key, type_expectation(o), value);
    return -EINVAL;
}

int
mcos_cfg_defaults(const struct mcos_cfg_opt *opts, size_t n, void *target,
                  char *err, size_t errlen)
{
    for (size_t i = 0; i < n; i++) {
        int r;

        if (!opts[i].def) {
            continue;
        }
        r = apply_text(&opts[i], target, opts[i].def, "default", err, errlen);
        if (r) {
            return r;
        }
    }
    return 0;
}

static const struct mcos_cfg_opt *
find_key(const struct mcos_cfg_opt *opts, size_t n, const char *key)
{
    for (size_t i = 0; i < n; i++) {
        if (!strcmp(opts[i].key, key)) {
            return &opts[i];
        }
    }
    return NULL;
}

static bool
is_prefix_of_some_key(const struct mcos_cfg_opt *opts, size_t n,
                      const char *path)
{
    size_t len = strlen(path);

    for (size_t i = 0; i < n; i++) {
        if (!strncmp(opts[i].key, path, len) && opts[i].key[len] == '.') {
            return true;
        }
    }
    return false;
}

/* Applies one JSON value to its option, converting it to text first so
 * that the file and the flags share one parser. */
static int
apply_json(const struct mcos_cfg_opt *o, void *target, json_t *v,
           const char *source, char *err, size_t errlen)
{
    char buf[64];
    const char *text;

    switch (json_typeof(v)) {
    case JSON_STRING:
        if (o->type == MCOS_CFG_UINT || o->type == MCOS_CFG_BOOL) {
            goto wrong_type;
        }
        text = json_string_value(v);
        break;
    case JSON_INTEGER:
        if (o->type == MCOS_CFG_STRING || o->type == MCOS_CFG_BOOL) {
            goto wrong_type;
        }
        if (json_integer_value(v) < 0) {
            mcos_seterr(err, errlen, "%s: key '%s': must not be negative",
                        source, o->key);
            return -EINVAL;
        }
        snprintf(buf, sizeof buf, "%" JSON_INTEGER_FORMAT,
                 json_integer_value(v));
        text = buf;
        break;
    case JSON_TRUE:
    case JSON_FALSE:
        if (o->type != MCOS_CFG_BOOL) {
            goto wrong_type;
        }
        text = json_is_true(v) ? "true" : "false";
        break;
    default:
        goto wrong_type;
    }
    return apply_text(o, target, text, source, err, errlen);

wrong_type:
    mcos_seterr(err, errlen, "%s: key '%s': expected %s", source, o->key,
                type_expectation(o));
    return -EINVAL;
}

static int
apply_object(const struct mcos_cfg_opt *opts, size_t n, void *target,
             json_t *obj, const char *prefix, const char *source, char *err,
             size_t errlen)
{
    const char *k;
    json_t *v;

    json_object_foreach(obj, k, v)
    {
        char path[256];
        const struct mcos_cfg_opt *o;
        int r;

        snprintf(path, sizeof path, "%s%s%s", prefix, *prefix ? "." : "", k);
        o = find_key(opts, n, path);
        if (o) {
            r = apply_json(o, target, v, source, err, errlen);
        } else if (json_is_object(v) && is_prefix_of_some_key(opts, n, path)) {
            r = apply_object(opts, n, target, v, path, source, err, errlen);
        } else {
            mcos_seterr(err, errlen, "%s: unknown key '%s'", source, path);
            r = -EINVAL;
        }
        if (r) {
            return r;
        }
    }
    return 0;
}

/* Validates the whole document before applying any of it, so a file with
 * one bad value changes nothing: a dry run (NULL target) first. */
static int
apply_document(const struct mcos_cfg_opt *opts, size_t n, void *target,
               json_t *root, const char *source, char *err, size_t errlen)
{
    int r;

    if (!json_is_object(root)) {
        mcos_seterr(err, errlen, "%s: the top level must be a JSON object",
                    source);
        return -EINVAL;
    }
    r = apply_object(opts, n, NULL, root, "", source, err, errlen);
    if (r) {
        return r;
    }
    return apply_object(opts, n, target, root, "", source, err, errlen);
}

int
mcos_cfg_load_string(const struct mcos_cfg_opt *opts, size_t n, void *target,
                     const char *text, const char *source, char *err,
                     size_t errlen)
{
    json_error_t jerr;
    json_t *root = json_loads(text, JSON_REJECT_DUPLICATES, &jerr);
    int r;

    if (!root) {
        mcos_seterr(err, errlen, "%s: line %d column %d: %s", source,
                    jerr.line, jerr.column, jerr.text);
        return -EINVAL;
    }
    r = apply_document(opts, n, target, root, source, err, errlen);
    json_decref(root);
    return r;
}

int
mcos_cfg_load_file(const struct mcos_cfg_opt *opts, size_t n, void *target,
                   const char *path, char *err, size_t errlen)
{
    char source[300];
    json_error_t jerr;
    json_t *root;
    FILE *f;
    int r;

    snprintf(source, sizeof source, "config file %s", path);
    f = fopen(path, "r");
    if (!f) {
        r = -errno;
        mcos_seterr(err, errlen, "%s: %s", source, strerror(-r));
        return r;
    }
    root = json_loadf(f, JSON_REJECT_DUPLICATES, &jerr);
    fclose(f);
    if (!root) {
        mcos_seterr(err, errlen, "%s: line %d column %d: %s", source,
                    jerr.line, jerr.column, jerr.text);
        return -EINVAL;
    }
    r = apply_document(opts, n, target, root, source, err, errlen);
    json_decref(root);
    return r;
}

static const struct mcos_cfg_opt *
find_name(const struct mcos_cfg_opt *opts, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++) {
        if ((opts[i].flag && !strcmp(opts[i].flag, name)) ||
            !strcmp(opts[i].key, name)) {
            return &opts[i];
        }
    }
    return NULL;
}

int
mcos_cfg_set(const struct mcos_cfg_opt *opts, size_t n, void *target,
             const char *name, const char *value, const char *source,
             char *err, size_t errlen)
{
    const struct mcos_cfg_opt *o = find_name(opts, n, name);

    if (!o) {
        mcos_seterr(err, errlen, "%s: unknown key '%s'", source, name);
        return -ENOENT;
    }
    return apply_text(o, target, value, source, err, errlen);
}

int
mcos_cfg_parse_args(const struct mcos_cfg_opt *opts, size_t n, void *target,
                    int argc, char **argv, bool *help, bool *version,
                    char *err, size_t errlen)
{
    const char *config = NULL;
    int r;

    *help = false;
    *version = false;

    /* First pass: --help, --version, --config, and syntax. */
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];

        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            *help = true;
            return 0;
        }
        if (!strcmp(a, "--version") || !strcmp(a, "-V")) {
            *version = true;
            return 0;
        }
        if (strncmp(a, "--", 2)) {
            mcos_seterr(err, errlen, "unexpected argument '%s' (see --help)",
                        a);
            return -EINVAL;
        }
        if (!strcmp(a, "--config") || !strncmp(a, "--config=", 9)) {
            if (a[8] == '=') {
                config = a + 9;
            } else if (i + 1 < argc) {
                config = argv[++i];
            } else {
                mcos_seterr(err, errlen, "option '--config' needs a value");
                return -EINVAL;
            }
            continue;
        }
        const char *eq = strchr(a, '=');
        char name[128];
        size_t len = eq ? (size_t)(eq - a - 2) : strlen(a + 2);
        const struct mcos_cfg_opt *o;

        if (len >= sizeof name) {
            mcos_seterr(err, errlen, "unknown option '%s' (see --help)", a);
            return -EINVAL;
        }
        memcpy(name, a + 2, len);
        name[len] = '\0';
        o = NULL;
        for (size_t k = 0; k < n; k++) {
            if (opts[k].flag && !strcmp(opts[k].flag, name)) {
                o = &opts[k];
            }
        }
        if (!o) {
            mcos_seterr(err, errlen, "unknown option '--%s' (see --help)",
                        name);
            return -EINVAL;
        }
        if (!eq && o->type != MCOS_CFG_BOOL) {
            if (i + 1 >= argc) {
                mcos_seterr(err, errlen, "option '--%s' needs a value", name);
                return -EINVAL;
            }
            i++;
        }
    }

    if (config) {
        r = mcos_cfg_load_file(opts, n, target, config, err, errlen);
        if (r) {
            return r;
        }
    }

    /* Second pass: apply flags over the file. */
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *eq = strchr(a, '=');
        char name[128];
        char source[160];
        size_t len;
        const struct mcos_cfg_opt *o = NULL;
        const char *value;

        if (!strcmp(a, "--config")) {
            i++;
            continue;
        }
        if (!strncmp(a, "--config=", 9)) {
            continue;
        }
        len = eq ? (size_t)(eq - a - 2) : strlen(a + 2);
        memcpy(name, a + 2, len);
        name[len] = '\0';
        for (size_t k = 0; k < n; k++) {
            if (opts[k].flag && !strcmp(opts[k].flag, name)) {
                o = &opts[k];
            }
        }
        if (eq) {
            value = eq + 1;
        } else if (o->type == MCOS_CFG_BOOL) {
            value = "true";
        } else {
            value = argv[++i];
        }
        snprintf(source, sizeof source, "option --%s", name);
        r = apply_text(o, target, value, source, err, errlen);
        if (r) {
            return r;
        }
    }
    return 0;
}

void
mcos_cfg_print_help(const struct mcos_cfg_opt *opts, size_t n, FILE *f)
{
    fprintf(f, "  %-28s %s\n", "--config FILE",
            "JSON config file (flags override it)");
    for (size_t i = 0; i < n; i++) {
        char left[64];

        if (!opts[i].flag) {
            continue;
        }
        if (opts[i].type == MCOS_CFG_BOOL) {
            snprintf(left, sizeof left, "--%s", opts[i].flag);
        } else {
            snprintf(left, sizeof left, "--%s VALUE", opts[i].flag);
        }
        fprintf(f, "  %-28s %s", left, opts[i].help);
        if (opts[i].def && *opts[i].def) {
            fprintf(f, " [%s]", opts[i].def);
        }
        fprintf(f, "\n  %-28s (config key: %s)\n", "", opts[i].key);
    }
    fprintf(f, "  %-28s %s\n  %-28s %s\n", "--help", "show this help",
            "--version", "show the version");
}

void
mcos_cfg_free(const struct mcos_cfg_opt *opts, size_t n, void *target)
{
    for (size_t i = 0; i < n; i++) {
        if (opts[i].type == MCOS_CFG_STRING) {
            char **p = (char **)((char *)target + opts[i].offset);

            free(*p);
            *p = NULL;
        }
    }
}

int
mcos_check_url(const char *key, const char *url, const char *const *schemes,
               char *err, size_t errlen)
{
    const char *sep = url ? strstr(url, "://") : NULL;
    char want[128] = "";
    size_t n = 0;

    for (size_t i = 0; schemes[i]; i++) {
        n += (size_t)snprintf(
            want + n, sizeof want - n, "%s%s://%s",
            i ? (schemes[i + 1] ? ", " : " or ") : "", schemes[i],
            strcmp(schemes[i], "ipc") ? "HOST:PORT" : "/PATH");
        if (n >= sizeof want) {
            break;
        }
    }
    for (size_t i = 0; sep && schemes[i]; i++) {
        size_t len = strlen(schemes[i]);
        const char *rest = sep + 3;
        const char *colon;
        uint64_t port;

        if ((size_t)(sep - url) != len || strncmp(url, schemes[i], len)) {
            continue;
        }
        if (!strcmp(schemes[i], "ipc")) {
            if (!*rest) {
                break;
            }
            return 0;
        }
        /* host:port, host may be [v6] */
        colon = strrchr(rest, ':');
        if (!colon || colon == rest || strchr(colon, '/') ||
            mcos_parse_uint(colon + 1, &port) || port == 0 || port > 65535) {
            break;
        }
        return 0;
    }
    mcos_seterr(err, errlen, "%s: '%s' is not a valid address (want %s)", key,
                url ? url : "", want);
    return -EINVAL;
}
