/*
 * run_config: the INI run configuration (include/run_config.h).
 *
 * One table (rc_keys) lists every key: its section, name, type, field and
 * allowed range. Loading a file, a --set override, validation and rc_to_text
 * all walk that table, so a key added there is parsed, checked and written
 * back with no other change.
 *
 * libinih does the INI syntax. Two of its build settings matter here:
 *  - it reads lines through a buffer of INI_MAX_LINE (200 in Debian's build)
 *    and gives the handler no line number. Our reader (rc_reader) counts lines
 *    itself and refuses a longer line instead of letting inih split it;
 *  - multi-line values are on: an indented line continues the previous key.
 *    The reader strips leading blanks, so indentation is harmless and a
 *    continuation never happens.
 * Values lose surrounding blanks and a " ;" comment, so a value cannot hold
 * " ;" (paths with it need a --set override).
 *
 * Every function returns its error (-1 and a message in struct lerr naming
 * file:line or the --set argument, the [section] and the key); none exits.
 */
#define _POSIX_C_SOURCE 200809L
#include "run_config.h"

#include <errno.h>
#include <float.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <ini.h>

typedef enum { K_INT, K_I64, K_U64, K_FLOAT, K_BOOL, K_STR, K_TARGETS, K_ENUM } rc_kind;
typedef enum { R_ANY, R_GT0, R_GE0, R_GE1, R_GE2, R_UNIT_OPEN, R_UNIT, R_THREADS } rc_range;
#define RC_MAX_THREADS 1024 /* OpenMP's runtime fails or crashes creating tens of thousands */

typedef struct {
    const char *section, *key;
    rc_kind kind;
    size_t off;               /* offsetof(run_config, field) */
    rc_range range;
    const char *const *words; /* K_ENUM: NULL-terminated, index = value */
} rc_key;

static const char *const sampling_words[] = {"shuffle", "random", NULL};
static const char *const schedule_words[] = {"constant", "cosine", "linear", NULL};
static const char *const dtype_words[] = {"fp32", "bf16", "fp16", NULL};
static const char *const nan_words[] = {"skip", "abort", NULL};

#define F(field) offsetof(run_config, field)
static const rc_key rc_keys[] = {
    {"model", "path", K_STR, F(model_path), R_ANY, NULL},
    {"lora", "r", K_INT, F(r), R_GT0, NULL},
    {"lora", "alpha", K_FLOAT, F(alpha), R_ANY, NULL},
    {"lora", "rslora", K_BOOL, F(rslora), R_ANY, NULL},
    {"lora", "dropout", K_FLOAT, F(dropout), R_UNIT_OPEN, NULL},
    {"lora", "targets", K_TARGETS, F(targets), R_ANY, NULL},
    {"lora", "init_seed", K_U64, F(init_seed), R_ANY, NULL},
    {"lora", "init_from", K_STR, F(init_from), R_ANY, NULL},
    {"lora", "full_finetune", K_BOOL, F(full_finetune), R_ANY, NULL},
    {"lora", "modules_to_save", K_STR, F(modules_to_save), R_ANY, NULL},
    {"data", "train", K_STR, F(train_path), R_ANY, NULL},
    {"data", "val", K_STR, F(val_path), R_ANY, NULL},
    {"data", "seq_len", K_INT, F(seq_len), R_GE2, NULL},
    {"data", "batch_size", K_INT, F(batch_size), R_GE1, NULL},
    {"data", "grad_accum", K_INT, F(grad_accum), R_GE1, NULL},
    {"data", "sampling", K_ENUM, F(sampling), R_ANY, sampling_words},
    {"data", "seed", K_U64, F(data_seed), R_ANY, NULL},
    {"data", "val_windows", K_INT, F(val_windows), R_GE1, NULL},
    {"optim", "lr", K_FLOAT, F(lr), R_GE0, NULL},
    {"optim", "beta1", K_FLOAT, F(beta1), R_UNIT_OPEN, NULL},
    {"optim", "beta2", K_FLOAT, F(beta2), R_UNIT_OPEN, NULL},
    {"optim", "eps", K_FLOAT, F(eps), R_GT0, NULL},
    {"optim", "weight_decay", K_FLOAT, F(weight_decay), R_GE0, NULL},
    {"optim", "schedule", K_ENUM, F(schedule), R_ANY, schedule_words},
    {"optim", "warmup_steps", K_I64, F(warmup_steps), R_GE0, NULL},
    {"optim", "min_lr_ratio", K_FLOAT, F(min_lr_ratio), R_UNIT, NULL},
    {"optim", "grad_clip", K_FLOAT, F(grad_clip), R_GE0, NULL},
    {"train", "steps", K_I64, F(steps), R_GE0, NULL},
    {"train", "epochs", K_FLOAT, F(epochs), R_GE0, NULL},
    {"train", "eval_every", K_I64, F(eval_every), R_GE0, NULL},
    {"train", "eval_epochs", K_BOOL, F(eval_epochs), R_ANY, NULL},
    {"train", "save_epochs", K_BOOL, F(save_epochs), R_ANY, NULL},
    {"train", "metric_for_best", K_STR, F(metric_for_best), R_ANY, NULL},
    {"train", "log_every", K_I64, F(log_every), R_GE1, NULL},
    {"train", "threads", K_INT, F(threads), R_THREADS, NULL},
    {"train", "out_dir", K_STR, F(out_dir), R_ANY, NULL},
    {"train", "metrics", K_STR, F(metrics_path), R_ANY, NULL},
    {"train", "plot", K_STR, F(plot_path), R_ANY, NULL},
    {"checkpoint", "dir", K_STR, F(ckpt_dir), R_ANY, NULL},
    {"checkpoint", "every_steps", K_I64, F(ckpt_every_steps), R_GE0, NULL},
    {"checkpoint", "every_seconds", K_FLOAT, F(ckpt_every_seconds), R_GE0, NULL},
    {"checkpoint", "keep", K_INT, F(ckpt_keep), R_GE0, NULL},
    {"system", "servers", K_INT, F(servers), R_GE1, NULL},
    {"system", "staleness", K_INT, F(staleness), R_GE0, NULL},
    {"system", "ssp_lookahead", K_BOOL, F(ssp_lookahead), R_ANY, NULL},
    {"system", "grad_dtype", K_ENUM, F(grad_dtype), R_ANY, dtype_words},
    {"system", "param_dtype", K_ENUM, F(param_dtype), R_ANY, dtype_words},
    {"system", "nan_policy", K_ENUM, F(nan_policy), R_ANY, nan_words},
    {"system", "max_skipped_steps", K_INT, F(max_skipped), R_GE0, NULL},
};
#undef F
#define RC_NKEYS (sizeof rc_keys / sizeof rc_keys[0])

/* Copies s into a fixed field, zero-filling the rest (so that two configs with
 * the same values compare equal with memcmp). */
static void set_str(char *dst, size_t cap, const char *s) {
    size_t n = strlen(s);
    if (n >= cap) n = cap - 1;
    memset(dst, 0, cap);
    memcpy(dst, s, n);
}

void rc_defaults(run_config *c) {
    memset(c, 0, sizeof *c);
    c->r = 8;
    c->alpha = 16.0f;
    set_str(c->targets[0], sizeof c->targets[0], "c_attn");
    c->n_targets = 1;
    c->init_seed = 42;
    c->seq_len = 256;
    c->batch_size = 8;
    c->grad_accum = 1;
    c->sampling = 0;
    c->data_seed = 1234;
    c->val_windows = 40;
    c->lr = 2e-3f;
    c->beta1 = 0.9f;
    c->beta2 = 0.999f;
    c->eps = 1e-8f;
    c->steps = 100;
    c->log_every = 1;
    c->servers = 1;
    c->ssp_lookahead = 1;
    c->ckpt_keep = 3;
    c->max_skipped = 5;
}

/* "must be > 0" for a value outside the range, NULL inside it. */
static const char *range_violation(rc_range r, double x) {
    switch (r) {
    case R_ANY: return NULL;
    case R_GT0: return x > 0 ? NULL : "must be > 0";
    case R_GE0: return x >= 0 ? NULL : "must be >= 0";
    case R_GE1: return x >= 1 ? NULL : "must be >= 1";
    case R_GE2: return x >= 2 ? NULL : "must be >= 2";
    case R_UNIT_OPEN: return x >= 0 && x < 1 ? NULL : "must be in [0, 1)";
    case R_UNIT: return x >= 0 && x <= 1 ? NULL : "must be in [0, 1]";
    case R_THREADS: return x >= 0 && x <= RC_MAX_THREADS ? NULL : "must be in [0, 1024] (0: the library's default)";
    }
    return NULL;
}

static int parse_i64(const char *s, long long *out) {
    char *end;
    errno = 0;
    long long x = strtoll(s, &end, 10);
    if (end == s || *end != '\0') return -1;
    if (errno == ERANGE) return x > 0 ? 1 : 2; /* an integer, too large / too small */
    *out = x;
    return 0;
}

static int parse_u64(const char *s, unsigned long long *out) {
    char *end;
    const char *p = s;
    while (*p == ' ' || *p == '\t') p++;
    if (*p == '-') return -1; /* strtoull would wrap it around */
    errno = 0;
    unsigned long long x = strtoull(s, &end, 10);
    if (end == s || *end != '\0' || errno == ERANGE) return -1;
    *out = x;
    return 0;
}

/* A finite number that fits a float (underflow to 0 or a subnormal is kept:
 * the range check decides whether it is acceptable). */
static int parse_float(const char *s, float *out) {
    char *end;
    errno = 0;
    double x = strtod(s, &end);
    if (end == s || *end != '\0' || !isfinite(x) || fabs(x) > (double)FLT_MAX) return -1;
    *out = (float)x;
    return 0;
}

static int parse_bool(const char *s, int *out) {
    static const char *const yes[] = {"true", "1", "yes", "on"}, *const no[] = {"false", "0", "no", "off"};
    for (int i = 0; i < 4; i++) {
        if (strcasecmp(s, yes[i]) == 0) return *out = 1, 0;
        if (strcasecmp(s, no[i]) == 0) return *out = 0, 0;
    }
    return -1;
}

/* Comma-separated names, blanks trimmed, into c->targets. */
/* 1 when rc_to_text could not write value back so that it reads the same (a
 * --set value can hold anything): a control character, or a ';' that inih
 * takes for a comment: after a blank, or first (rc_to_text writes "key = value",
 * so a leading ';' follows the blank after '='; found by fuzz_run_config). */
static int ini_unsafe(const char *value) {
    if (value[0] == ';') return 1;
    for (const char *q = value; *q; q++)
        if ((unsigned char)*q < 0x20 || ((*q == ' ' || *q == '\t') && q[1] == ';')) return 1;
    return 0;
}

/* -1 with a message when rc_to_text's line "key = value" (value n characters)
 * would be longer than inih reads (ini_max_line - 1; a --set value can be
 * longer than a file's line, and then could not be written back; found by
 * fuzz_run_config). */
static int too_long_line(const rc_key *k, size_t n, const char *where, struct lerr *e) {
    size_t line = strlen(k->key) + 3 + n;
    if (line <= (size_t)ini_max_line - 1) return 0;
    return lerr_set(e, "%s: [%s] %s: the line 'key = value' would be %zu characters, longer than a config file's line "
                    "may be (%d)", where, k->section, k->key, line, ini_max_line - 1);
}

static int parse_targets(run_config *c, const char *s, const char *where, struct lerr *e) {
    char names[RC_MAX_TARGETS][128];
    int n = 0;
    const char *p = s;
    for (;;) {
        const char *comma = strchr(p, ',');
        const char *stop = comma ? comma : p + strlen(p);
        while (p < stop && (*p == ' ' || *p == '\t')) p++;
        const char *q = stop;
        while (q > p && (q[-1] == ' ' || q[-1] == '\t')) q--;
        size_t len = (size_t)(q - p);
        if (len == 0) return lerr_set(e, "%s: [lora] targets = '%s' has an empty name", where, s);
        if (len >= sizeof names[0])
            return lerr_set(e, "%s: [lora] targets: name '%.*s...' is longer than %zu characters", where, 40, p,
                            sizeof names[0] - 1);
        if (n == RC_MAX_TARGETS)
            return lerr_set(e, "%s: [lora] targets: more than %d names", where, RC_MAX_TARGETS);
        memcpy(names[n], p, len);
        names[n][len] = '\0';
        n++;
        if (!comma) break;
        p = comma + 1;
    }
    memset(c->targets, 0, sizeof c->targets);
    for (int i = 0; i < n; i++) memcpy(c->targets[i], names[i], strlen(names[i]) + 1);
    c->n_targets = n;
    return 0;
}

static const rc_key *find_key(const char *section, const char *key, int *section_known) {
    *section_known = 0;
    for (size_t i = 0; i < RC_NKEYS; i++) {
        if (strcmp(rc_keys[i].section, section) != 0) continue;
        *section_known = 1;
        if (strcmp(rc_keys[i].key, key) == 0) return &rc_keys[i];
    }
    return NULL;
}

static void words_joined(const char *const *w, char *buf, size_t cap) {
    buf[0] = '\0';
    for (int i = 0; w[i]; i++) {
        size_t len = strlen(buf);
        snprintf(buf + len, cap - len, "%s%s", i ? "|" : "", w[i]);
    }
}

/* Parses value into the field of section.key; where prefixes messages. */
static int rc_apply(run_config *c, const char *section, const char *key, const char *value, const char *where,
                    struct lerr *e) {
    int section_known;
    if (section[0] == '\0') return lerr_set(e, "%s: key '%s' is outside any [section]", where, key);
    const rc_key *k = find_key(section, key, &section_known);
    if (!section_known) return lerr_set(e, "%s: unknown section [%s] (key '%s')", where, section, key);
    if (!k) return lerr_set(e, "%s: unknown key '%s' in section [%s]", where, key, section);
    char *field = (char *)c + k->off;
    const char *bad;
    switch (k->kind) {
    case K_INT:
    case K_I64: {
        long long x;
        int pr = parse_i64(value, &x);
        if (pr > 0)
            return lerr_set(e, "%s: [%s] %s = '%s' is too %s (a 64-bit integer)", where, section, key, value,
                            pr == 1 ? "large" : "small");
        if (pr != 0) return lerr_set(e, "%s: [%s] %s = '%s' is not an integer", where, section, key, value);
        if (k->kind == K_INT && (x < INT_MIN || x > INT_MAX))
            return lerr_set(e, "%s: [%s] %s = '%s' is too %s (a 32-bit integer: %d to %d)", where, section, key, value,
                            x > 0 ? "large" : "small", INT_MIN, INT_MAX);
        if ((bad = range_violation(k->range, (double)x)))
            return lerr_set(e, "%s: [%s] %s %s, got %lld", where, section, key, bad, x);
        if (k->kind == K_INT) *(int *)field = (int)x;
        else *(int64_t *)field = (int64_t)x;
        return 0;
    }
    case K_U64: {
        unsigned long long x;
        if (parse_u64(value, &x) != 0)
            return lerr_set(e, "%s: [%s] %s = '%s' is not an unsigned integer", where, section, key, value);
        *(uint64_t *)field = (uint64_t)x;
        return 0;
    }
    case K_FLOAT: {
        float x;
        if (parse_float(value, &x) != 0)
            return lerr_set(e, "%s: [%s] %s = '%s' is not a finite number", where, section, key, value);
        if ((bad = range_violation(k->range, x)))
            return lerr_set(e, "%s: [%s] %s %s, got %.9g", where, section, key, bad, (double)x);
        *(float *)field = x;
        return 0;
    }
    case K_BOOL:
        if (parse_bool(value, (int *)field) != 0)
            return lerr_set(e, "%s: [%s] %s = '%s' is not a boolean (true|false|yes|no|1|0)", where, section, key,
                            value);
        return 0;
    case K_STR:
        if (strlen(value) >= RC_PATH)
            return lerr_set(e, "%s: [%s] %s is longer than %d characters", where, section, key, RC_PATH - 1);
        if (ini_unsafe(value))
            return lerr_set(e, "%s: [%s] %s = '%s' starts with ';' or holds a control character or ' ;' (an INI comment)",
                            where, section, key, value);
        if (too_long_line(k, strlen(value), where, e)) return -1;
        set_str(field, RC_PATH, value);
        return 0;
    case K_TARGETS:
        if (ini_unsafe(value))
            return lerr_set(e, "%s: [%s] %s = '%s' starts with ';' or holds a control character or ' ;' (an INI comment)",
                            where, section, key, value);
        if (parse_targets(c, value, where, e)) return -1;
        size_t n = 0;
        for (int t = 0; t < c->n_targets; t++) n += strlen(c->targets[t]) + (t > 0);
        return too_long_line(k, n, where, e);
    case K_ENUM:
        for (int i = 0; k->words[i]; i++) {
            if (strcasecmp(value, k->words[i]) == 0) {
                *(int *)field = i;
                return 0;
            }
        }
        char words[128];
        words_joined(k->words, words, sizeof words);
        return lerr_set(e, "%s: [%s] %s = '%s' is not one of %s", where, section, key, value, words);
    }
    return lerr_set(e, "%s: [%s] %s: internal error (unknown key type)", where, section, key);
}

/* ---- loading a file ---- */

typedef struct {
    run_config *c;
    const char *path;
    FILE *fp;
    int line;       /* number of the line inih is working on */
    int lines_done; /* complete lines read so far */
    int failed;     /* line of the first error found here (0: none) */
    int seen[RC_NKEYS]; /* line where each key was set (0: not yet) */
    struct lerr *e;
} rc_ctx;

/* inih's line source: fgets that numbers lines, strips leading blanks (see the
 * file comment) and stops the parse at a line longer than inih's buffer. */
static char *rc_reader(char *str, int num, void *stream) {
    rc_ctx *x = stream;
    if (x->failed) return NULL;
    char *r = fgets(str, num, x->fp);
    if (!r) return NULL;
    x->line = ++x->lines_done;
    size_t len = strlen(r);
    if ((len == 0 || r[len - 1] != '\n') && !feof(x->fp)) {
        /* fgets stopped early: a NUL byte, or the buffer is full */
        if (len + 1 < (size_t)num) {
            x->failed = x->line;
            lerr_set(x->e, "%s:%d: line contains a NUL byte (not a text file?)", x->path, x->line);
            return NULL;
        }
        int ch = fgetc(x->fp);
        if (ch != EOF && ch != '\n') {
            x->failed = x->line;
            lerr_set(x->e, "%s:%d: line longer than %d characters (the INI reader's limit)", x->path, x->line,
                     num - 1);
            return NULL;
        }
    }
    size_t lead = strspn(r, " \t");
    if (lead) memmove(r, r + lead, len - lead + 1);
    return r;
}

static int rc_handler(void *user, const char *section, const char *name, const char *value) {
    rc_ctx *x = user;
    if (x->failed) return 0;
    char where[RC_PATH + 32];
    snprintf(where, sizeof where, "%s:%d", x->path, x->line);
    int known;
    const rc_key *k = find_key(section, name, &known);
    if (k && x->seen[k - rc_keys]) {
        lerr_set(x->e, "%s: [%s] %s is set twice (lines %d and %d); keep one", x->path, section, name,
                 x->seen[k - rc_keys], x->line);
        x->failed = x->line;
        return 0;
    }
    if (k) x->seen[k - rc_keys] = x->line;
    if (rc_apply(x->c, section, name, value, where, x->e) != 0) {
        x->failed = x->line;
        return 0;
    }
    return 1;
}

int rc_load(run_config *c, const char *path, struct lerr *e) {
    FILE *fp = fopen(path, "r");
    if (!fp) return lerr_set(e, "%s: cannot open: %s", path, strerror(errno));
    run_config *tmp = malloc(sizeof *tmp); /* applied only when the whole file is good */
    if (!tmp) {
        fclose(fp);
        return lerr_set(e, "%s: out of memory", path);
    }
    *tmp = *c;
    rc_ctx x = {.c = tmp, .path = path, .fp = fp, .e = e};
    int rc = ini_parse_stream(rc_reader, &x, rc_handler, &x);
    int read_err = ferror(fp) ? (errno ? errno : EIO) : 0;
    fclose(fp);
    /* inih returns the line of the first error, its own (syntax) or ours */
    if (rc > 0 && (!x.failed || rc < x.failed))
        lerr_set(e, "%s:%d: cannot parse this line (expected [section] or key = value)", path, rc);
    else if (!x.failed && rc < 0)
        lerr_set(e, "%s: out of memory while parsing", path);
    else if (!x.failed && read_err)
        lerr_set(e, "%s: read error: %s", path, strerror(read_err));
    if (x.failed || rc != 0 || read_err) {
        free(tmp);
        return -1;
    }
    set_str(tmp->source, sizeof tmp->source, path);
    *c = *tmp;
    free(tmp);
    return 0;
}

/* ---- --set ---- */

static void trim(char *s) {
    size_t lead = strspn(s, " \t");
    memmove(s, s + lead, strlen(s + lead) + 1);
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t')) s[--n] = '\0';
}

int rc_set(run_config *c, const char *assignment, struct lerr *e) {
    const char *eq = strchr(assignment, '=');
    const char *dot = strchr(assignment, '.');
    if (!eq || !dot || dot > eq)
        return lerr_set(e, "--set '%s': expected section.key=value (e.g. --set optim.lr=1e-3)", assignment);
    size_t slen = (size_t)(dot - assignment), klen = (size_t)(eq - dot - 1);
    if (slen >= 64 || klen >= 64) return lerr_set(e, "--set '%.80s': unknown section or key", assignment);
    char section[64], key[64];
    memcpy(section, assignment, slen);
    section[slen] = '\0';
    memcpy(key, dot + 1, klen);
    key[klen] = '\0';
    trim(section);
    trim(key);
    char *value = strdup(eq + 1);
    if (!value) return lerr_set(e, "--set: out of memory");
    trim(value);
    char where[160];
    snprintf(where, sizeof where, "--set %s.%s", section, key);
    run_config *tmp = malloc(sizeof *tmp);
    if (!tmp) {
        free(value);
        return lerr_set(e, "--set: out of memory");
    }
    *tmp = *c;
    int rc = rc_apply(tmp, section, key, value, where, e);
    if (rc == 0) *c = *tmp;
    free(tmp);
    free(value);
    return rc;
}

/* ---- validation ---- */

int rc_validate(const run_config *c, struct lerr *e) {
    const char *src = c->source[0] ? c->source : "config";
    for (size_t i = 0; i < RC_NKEYS; i++) {
        const rc_key *k = &rc_keys[i];
        const char *field = (const char *)c + k->off;
        const char *bad;
        double x;
        switch (k->kind) {
        case K_INT: x = *(const int *)field; break;
        case K_I64: x = (double)*(const int64_t *)field; break;
        case K_FLOAT:
            x = *(const float *)field;
            if (!isfinite(x)) return lerr_set(e, "%s: [%s] %s is not finite", src, k->section, k->key);
            break;
        case K_ENUM: {
            int v = *(const int *)field, n = 0;
            while (k->words[n]) n++;
            if (v < 0 || v >= n) return lerr_set(e, "%s: [%s] %s has no meaning for %d", src, k->section, k->key, v);
            continue;
        }
        default: continue;
        }
        if ((bad = range_violation(k->range, x)))
            return lerr_set(e, "%s: [%s] %s %s, got %.9g", src, k->section, k->key, bad, x);
    }
    if (!c->model_path[0]) return lerr_set(e, "%s: [model] path is not set (an HF model folder)", src);
    if (!c->train_path[0]) return lerr_set(e, "%s: [data] train is not set (a token file)", src);
    if (c->plot_path[0] && !c->metrics_path[0])
        return lerr_set(e, "%s: [train] plot draws [train] metrics, which is not set", src);
    if (c->n_targets < 1 || c->n_targets > RC_MAX_TARGETS)
        return lerr_set(e, "%s: [lora] targets must name 1 to %d modules, has %d", src, RC_MAX_TARGETS, c->n_targets);
    for (int i = 0; i < c->n_targets; i++)
        if (!c->targets[i][0] || !memchr(c->targets[i], '\0', sizeof c->targets[i]))
            return lerr_set(e, "%s: [lora] targets: name %d is empty or unterminated", src, i + 1);
    if ((int64_t)c->batch_size * c->grad_accum > INT_MAX)
        return lerr_set(e, "%s: [data] batch_size * grad_accum = %lld is too large", src,
                        (long long)c->batch_size * c->grad_accum);
    if (c->rslora != 0 && c->rslora != 1)
        return lerr_set(e, "%s: [lora] rslora must be 0 or 1, got %d", src, c->rslora);
    return 0;
}

/* ---- writing ---- */

typedef struct {
    char *buf;
    int cap, len;
} rc_out;

static void out_printf(rc_out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void out_printf(rc_out *o, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int room = o->len < o->cap ? o->cap - o->len : 0;
    int n = vsnprintf(room ? o->buf + o->len : NULL, (size_t)room, fmt, ap);
    va_end(ap);
    if (n > 0) o->len += n;
}

int rc_to_text(const run_config *c, char *buf, int cap) {
    rc_out o = {buf, cap > 0 ? cap : 0, 0};
    if (o.cap > 0) buf[0] = '\0';
    const char *section = "";
    for (size_t i = 0; i < RC_NKEYS; i++) {
        const rc_key *k = &rc_keys[i];
        const char *field = (const char *)c + k->off;
        if (strcmp(section, k->section) != 0) {
            out_printf(&o, "%s[%s]\n", i ? "\n" : "", k->section);
            section = k->section;
        }
        out_printf(&o, "%s = ", k->key);
        switch (k->kind) {
        case K_INT: out_printf(&o, "%d", *(const int *)field); break;
        case K_I64: out_printf(&o, "%" PRId64, *(const int64_t *)field); break;
        case K_U64: out_printf(&o, "%" PRIu64, *(const uint64_t *)field); break;
        case K_FLOAT: {
            /* the shortest decimal that reads back as the same float (0.002, not 0.00200000009) */
            float f = *(const float *)field;
            char num[32];
            for (int prec = 1; prec <= 9; prec++) {
                snprintf(num, sizeof num, "%.*g", prec, (double)f);
                if (strtof(num, NULL) == f) break;
            }
            out_printf(&o, "%s", num);
            break;
        }
        case K_BOOL: out_printf(&o, "%s", *(const int *)field ? "true" : "false"); break;
        case K_STR: out_printf(&o, "%.*s", RC_PATH - 1, field); break;
        case K_TARGETS:
            for (int t = 0; t < c->n_targets && t < RC_MAX_TARGETS; t++)
                out_printf(&o, "%s%.127s", t ? "," : "", c->targets[t]);
            break;
        case K_ENUM: {
            int v = *(const int *)field, n = 0;
            while (k->words[n]) n++;
            if (v >= 0 && v < n) out_printf(&o, "%s", k->words[v]);
            else out_printf(&o, "%d", v); /* rc_validate rejects it; rc_load will too */
            break;
        }
        }
        out_printf(&o, "\n");
    }
    return o.len;
}

/* One line of s at *pos into a NUL-terminated copy (at most cap - 1 bytes); 0 at the end. */
static int next_line(const char *s, size_t *pos, char *line, size_t cap) {
    if (!s[*pos]) return 0;
    size_t n = strcspn(s + *pos, "\n");
    size_t k = n < cap - 1 ? n : cap - 1;
    memcpy(line, s + *pos, k);
    line[k] = 0;
    *pos += n + (s[*pos + n] == '\n');
    return 1;
}

int rc_first_difference(const char *a, const char *b, char *out, size_t cap) {
    size_t pa = 0, pb = 0;
    char la[RC_PATH + 64], lb[RC_PATH + 64], sec[64] = "";
    for (;;) {
        int ha = next_line(a, &pa, la, sizeof la), hb = next_line(b, &pb, lb, sizeof lb);
        if (!ha && !hb) return 0;
        if (ha && hb && !strcmp(la, lb)) {
            if (la[0] == '[') snprintf(sec, sizeof sec, "%.*s", (int)strcspn(la, "\n"), la);
            continue;
        }
        const char *ea = ha ? strstr(la, " = ") : NULL, *eb = hb ? strstr(lb, " = ") : NULL;
        if (ea && eb && ea - la == eb - lb && !strncmp(la, lb, (size_t)(ea - la)))
            snprintf(out, cap, "%s %.*s = '%s' here, '%s' there", sec, (int)(ea - la), la, ea + 3, eb + 3);
        else
            snprintf(out, cap, "after %s: '%s' here, '%s' there", sec[0] ? sec : "the start", ha ? la : "(end)",
                     hb ? lb : "(end)");
        return 1;
    }
}
