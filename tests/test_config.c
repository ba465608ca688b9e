/* test_config: INI run configuration: defaults, loading, every error class,
 * --set overrides, validation and the rc_to_text round trip. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "run_config.h"
#include "testutil.h"

static char dir[64];
static char path[128];

/* Writes text to a fresh temp INI file; returns its path. */
static const char *write_ini(const char *text) {
    static int n;
    snprintf(path, sizeof path, "%s/c%d.ini", dir, n++);
    FILE *fp = fopen(path, "w");
    if (!fp) {
        perror(path);
        exit(1);
    }
    fputs(text, fp);
    fclose(fp);
    return path;
}

static void test_defaults(void) {
    run_config c;
    rc_defaults(&c);
    CHECK(c.r == 8 && c.alpha == 16.0f && c.rslora == 0 && c.dropout == 0.0f, "lora defaults");
    CHECK(c.n_targets == 1 && strcmp(c.targets[0], "c_attn") == 0, "targets default");
    CHECK(c.init_seed == 42 && c.init_from[0] == '\0', "init defaults");
    CHECK(c.seq_len == 256 && c.batch_size == 8 && c.grad_accum == 1 && c.sampling == 0 && c.data_seed == 1234 &&
              c.val_windows == 40,
          "data defaults");
    CHECK(c.lr == 2e-3f && c.beta1 == 0.9f && c.beta2 == 0.999f && c.eps == 1e-8f && c.weight_decay == 0.0f &&
              c.schedule == 0 && c.warmup_steps == 0 && c.min_lr_ratio == 0.0f && c.grad_clip == 0.0f,
          "optim defaults");
    CHECK(c.steps == 100 && c.eval_every == 0 && c.log_every == 1 && c.threads == 0 && c.out_dir[0] == '\0',
          "train defaults");
    CHECK(c.servers == 1 && c.staleness == 0 && c.grad_dtype == 0 && c.nan_policy == 0, "system defaults");
    CHECK(c.model_path[0] == '\0' && c.train_path[0] == '\0' && c.val_path[0] == '\0' && c.source[0] == '\0',
          "paths empty");
}

static void test_load(void) {
    run_config c;
    struct lerr e = {{0}};
    rc_defaults(&c);
    const char *p = write_ini("# a full config\n"
                              "[model]\n"
                              "path = demo/tiny-gpt2-pydocs\n"
                              "\n"
                              "[lora]\n"
                              "r = 4\n"
                              "  alpha = 8   ; indented, with a comment\n"
                              "rslora = yes\n"
                              "dropout = 0.05\n"
                              "targets = c_attn , c_proj,  c_fc\n"
                              "init_seed = 18446744073709551615\n"
                              "init_from = adapters/start\n"
                              "[data]\r\n"
                              "train = demo/wordnet.train.bin\r\n"
                              "val = demo/wordnet.val.bin\n"
                              "seq_len = 64\n"
                              "batch_size = 4\n"
                              "grad_accum = 2\n"
                              "sampling = random\n"
                              "seed = 7\n"
                              "val_windows = 10\n"
                              "[optim]\n"
                              "lr = 5e-3\n"
                              "beta1 = 0.8\n"
                              "beta2 = 0.95\n"
                              "eps = 1e-6\n"
                              "weight_decay = 0.01\n"
                              "schedule = cosine\n"
                              "warmup_steps = 10\n"
                              "min_lr_ratio = 0.1\n"
                              "grad_clip = 1.0\n"
                              "[train]\n"
                              "steps = 500\n"
                              "eval_every = 50\n"
                              "log_every = 5\n"
                              "threads = 2\n"
                              "out_dir = out/run1\n"
                              "[system]\n"
                              "servers = 3\n"
                              "staleness = 1\n"
                              "grad_dtype = bf16\n"
                              "nan_policy = abort\n");
    CHECK(rc_load(&c, p, &e) == 0, "load: %s", e.msg);
    CHECK(strcmp(c.model_path, "demo/tiny-gpt2-pydocs") == 0, "model path '%s'", c.model_path);
    CHECK(c.r == 4 && c.alpha == 8.0f && c.rslora == 1 && c.dropout == 0.05f, "lora values");
    CHECK(c.n_targets == 3 && strcmp(c.targets[0], "c_attn") == 0 && strcmp(c.targets[1], "c_proj") == 0 &&
              strcmp(c.targets[2], "c_fc") == 0,
          "targets trimmed: %d '%s' '%s' '%s'", c.n_targets, c.targets[0], c.targets[1], c.targets[2]);
    CHECK(c.init_seed == 18446744073709551615ull && strcmp(c.init_from, "adapters/start") == 0, "init");
    CHECK(strcmp(c.train_path, "demo/wordnet.train.bin") == 0 && strcmp(c.val_path, "demo/wordnet.val.bin") == 0,
          "data paths (CRLF lines) '%s'", c.train_path);
    CHECK(c.seq_len == 64 && c.batch_size == 4 && c.grad_accum == 2 && c.sampling == 1 && c.data_seed == 7 &&
              c.val_windows == 10,
          "data values");
    CHECK(c.lr == 5e-3f && c.beta1 == 0.8f && c.beta2 == 0.95f && c.eps == 1e-6f && c.weight_decay == 0.01f &&
              c.schedule == 1 && c.warmup_steps == 10 && c.min_lr_ratio == 0.1f && c.grad_clip == 1.0f,
          "optim values");
    CHECK(c.steps == 500 && c.eval_every == 50 && c.log_every == 5 && c.threads == 2 &&
              strcmp(c.out_dir, "out/run1") == 0,
          "train values");
    CHECK(c.servers == 3 && c.staleness == 1 && c.grad_dtype == 1 && c.nan_policy == 1, "system values");
    CHECK(strcmp(c.source, p) == 0, "source '%s'", c.source);
    CHECK(rc_validate(&c, &e) == 0, "validate: %s", e.msg);

    /* a second file changes only what it names */
    p = write_ini("[optim]\nlr = 1e-4\nschedule = LINEAR\n");
    CHECK(rc_load(&c, p, &e) == 0, "overlay: %s", e.msg);
    CHECK(c.lr == 1e-4f && c.schedule == 2 && c.r == 4 && c.beta2 == 0.95f, "overlay keeps the rest");

    /* an empty file is fine */
    rc_defaults(&c);
    p = write_ini("");
    CHECK(rc_load(&c, p, &e) == 0 && c.r == 8, "empty file: %s", e.msg);
}

/* Loads text expecting failure; the message must contain every needle. */
static void expect_error(const char *text, const char *n1, const char *n2, const char *n3) {
    run_config c, before;
    struct lerr e = {{0}};
    rc_defaults(&c);
    before = c;
    const char *p = write_ini(text);
    int rc = rc_load(&c, p, &e);
    CHECK(rc == -1, "accepted: %s", text);
    CHECK(strstr(e.msg, p) != NULL, "message names the file: %s", e.msg);
    CHECK(strstr(e.msg, n1) != NULL && (!n2 || strstr(e.msg, n2)) && (!n3 || strstr(e.msg, n3)),
          "message '%s' lacks '%s' / '%s' / '%s'", e.msg, n1, n2 ? n2 : "", n3 ? n3 : "");
    CHECK(memcmp(&c, &before, sizeof c) == 0, "a failed load leaves the config as it was (%s)", n1);
}

static void test_errors(void) {
    expect_error("[lora]\nr = 4\n[lroa]\nr = 4\n", ":4:", "unknown section [lroa]", NULL);
    expect_error("[lora]\nr = 4\nfoo = 1\n", ":3:", "unknown key 'foo' in section [lora]", NULL);
    expect_error("[lora]\nr = abc\n", ":2:", "[lora] r = 'abc' is not an integer", NULL);
    expect_error("[lora]\nr = 8x\n", ":2:", "[lora] r = '8x' is not an integer", NULL);
    expect_error("[lora]\nr =\n", ":2:", "[lora] r = '' is not an integer", NULL);
    expect_error("[lora]\nr = 99999999999\n", ":2:", "[lora] r = '99999999999' is too large (a 32-bit integer", NULL);
    expect_error("[train]\nsteps = 99999999999999999999\n", ":2:", "[train] steps", "is too large (a 64-bit integer)");
    expect_error("[lora]\nr = 4\nalpha = 8\nr = 8\n", "[lora] r is set twice (lines 2 and 4)", NULL, NULL);
    expect_error("[lora]\nr = 0\n", ":2:", "[lora] r must be > 0, got 0", NULL);
    expect_error("[lora]\nr = -3\n", ":2:", "[lora] r must be > 0, got -3", NULL);
    expect_error("[lora]\ndropout = 1\n", ":2:", "[lora] dropout must be in [0, 1), got 1", NULL);
    expect_error("[lora]\ndropout = -0.1\n", ":2:", "[lora] dropout", "[0, 1)");
    expect_error("[lora]\nalpha = 1.5.2\n", ":2:", "[lora] alpha = '1.5.2' is not a finite number", NULL);
    expect_error("[lora]\nrslora = maybe\n", ":2:", "[lora] rslora = 'maybe'", "boolean");
    expect_error("[lora]\ntargets = q_proj,,v_proj\n", ":2:", "[lora] targets", "empty");
    expect_error("[lora]\ntargets =\n", ":2:", "[lora] targets", "empty");
    expect_error("[lora]\ninit_seed = -1\n", ":2:", "[lora] init_seed = '-1'", NULL);
    expect_error("[data]\nseq_len = 1\n", ":2:", "[data] seq_len must be >= 2, got 1", NULL);
    expect_error("[data]\nbatch_size = 0\n", ":2:", "[data] batch_size must be >= 1, got 0", NULL);
    expect_error("[data]\ngrad_accum = 0\n", ":2:", "[data] grad_accum must be >= 1", NULL);
    expect_error("[data]\nval_windows = 0\n", ":2:", "[data] val_windows must be >= 1", NULL);
    expect_error("[data]\nsampling = sequential\n", ":2:", "[data] sampling = 'sequential' is not one of shuffle|random",
                 NULL);
    expect_error("[optim]\nlr = -1e-3\n", ":2:", "[optim] lr must be >= 0, got -0.001", NULL);
    expect_error("[optim]\nlr = nan\n", ":2:", "[optim] lr = 'nan' is not a finite number", NULL);
    expect_error("[optim]\nlr = 1e40\n", ":2:", "[optim] lr = '1e40'", NULL);
    expect_error("[optim]\nbeta1 = 1\n", ":2:", "[optim] beta1 must be in [0, 1), got 1", NULL);
    expect_error("[optim]\nbeta2 = -0.5\n", ":2:", "[optim] beta2 must be in [0, 1)", NULL);
    expect_error("[optim]\neps = 0\n", ":2:", "[optim] eps must be > 0, got 0", NULL);
    expect_error("[optim]\neps = 1e-60\n", ":2:", "[optim] eps must be > 0", NULL); /* underflows the float */
    expect_error("[optim]\nweight_decay = -0.01\n", ":2:", "[optim] weight_decay must be >= 0", NULL);
    expect_error("[optim]\nschedule = exponential\n", ":2:", "[optim] schedule = 'exponential'",
                 "constant|cosine|linear");
    expect_error("[optim]\nmin_lr_ratio = 2\n", ":2:", "[optim] min_lr_ratio must be in [0, 1]", NULL);
    expect_error("[train]\nsteps = -1\n", ":2:", "[train] steps must be >= 0, got -1", NULL);
    expect_error("[system]\nservers = 0\n", ":2:", "[system] servers must be >= 1, got 0", NULL);
    expect_error("[system]\nstaleness = -1\n", ":2:", "[system] staleness must be >= 0, got -1", NULL);
    expect_error("[system]\ngrad_dtype = fp8\n", ":2:", "[system] grad_dtype = 'fp8' is not one of fp32|bf16|fp16",
                 NULL);
    expect_error("[system]\nnan_policy = ignore\n", ":2:", "[system] nan_policy = 'ignore'", "skip|abort");
    expect_error("r = 4\n", ":1:", "key 'r' is outside any [section]", NULL);
    expect_error("[lora]\nr = 4\njust words\n", ":3:", "cannot parse", NULL);
    expect_error("[lora\nr = 4\n", ":1:", "cannot parse", NULL);
    /* the first error is the one reported */
    expect_error("[lora]\nr = x\nalpha = y\n[bogus]\nk = 1\n", ":2:", "[lora] r = 'x'", NULL);

    /* a line longer than inih's buffer is refused, not split */
    char long_text[600];
    snprintf(long_text, sizeof long_text, "[model]\npath = /%0300d\n", 0);
    expect_error(long_text, ":2:", "longer than", NULL);
    /* ... and a line that just fits is read */
    run_config c;
    struct lerr e = {{0}};
    rc_defaults(&c);
    char fit[300];
    snprintf(fit, sizeof fit, "[model]\npath = %0192d\n[lora]\nr = 5\n", 0); /* 199 characters */
    CHECK(strlen(strchr(fit, '\n') + 1) - strlen(strstr(fit, "\n[lora]")) == 199, "line of 199 characters");
    CHECK(rc_load(&c, write_ini(fit), &e) == 0 && strlen(c.model_path) == 192 && c.r == 5, "199-char line: %s", e.msg);

    /* a NUL byte */
    const char *p = write_ini("");
    FILE *fp = fopen(p, "wb");
    fwrite("[lora]\nr = 4\0junk\nalpha = 2\n", 1, 28, fp);
    fclose(fp);
    rc_defaults(&c);
    CHECK(rc_load(&c, p, &e) == -1 && strstr(e.msg, ":2:"), "NUL byte: %s", e.msg);

    /* a missing file */
    snprintf(path, sizeof path, "%s/none.ini", dir);
    CHECK(rc_load(&c, path, &e) == -1, "missing file loaded");
    char want[200];
    snprintf(want, sizeof want, "%s: cannot open: No such file or directory", path);
    CHECK(strcmp(e.msg, want) == 0, "missing: '%s'", e.msg);
    CHECK(rc_load(&c, dir, &e) == -1, "a directory loaded");
}

static void test_set(void) {
    run_config c;
    struct lerr e = {{0}};
    rc_defaults(&c);
    CHECK(rc_set(&c, "optim.lr=1e-4", &e) == 0 && c.lr == 1e-4f, "set lr: %s", e.msg);
    CHECK(rc_set(&c, " lora.targets = q_proj, v_proj ", &e) == 0 && c.n_targets == 2 &&
              strcmp(c.targets[1], "v_proj") == 0,
          "set targets: %s", e.msg);
    CHECK(rc_set(&c, "model.path=/a/b=c.d", &e) == 0 && strcmp(c.model_path, "/a/b=c.d") == 0, "value with = and .");
    CHECK(rc_set(&c, "data.sampling=random", &e) == 0 && c.sampling == 1, "set enum");
    CHECK(rc_set(&c, "lora.r=abc", &e) == -1 && strstr(e.msg, "--set lora.r") &&
              strstr(e.msg, "[lora] r = 'abc' is not an integer"),
          "set error: %s", e.msg);
    CHECK(c.r == 8, "failed --set leaves r");
    CHECK(rc_set(&c, "lora.r=0", &e) == -1 && strstr(e.msg, "--set lora.r: [lora] r must be > 0, got 0"), "%s",
          e.msg);
    CHECK(rc_set(&c, "lora.foo=1", &e) == -1 && strstr(e.msg, "unknown key 'foo' in section [lora]"), "%s", e.msg);
    CHECK(rc_set(&c, "nope.r=1", &e) == -1 && strstr(e.msg, "unknown section [nope]"), "%s", e.msg);
    CHECK(rc_set(&c, "lr=1", &e) == -1 && strstr(e.msg, "section.key=value"), "%s", e.msg);
    CHECK(rc_set(&c, "optim.lr", &e) == -1 && strstr(e.msg, "section.key=value"), "%s", e.msg);
    CHECK(rc_set(&c, "", &e) == -1, "empty --set");
    CHECK(rc_set(&c, "model.path=a\nb", &e) == -1 && strstr(e.msg, "control character"), "newline: %s", e.msg);
    CHECK(rc_set(&c, "model.path=a ;b", &e) == -1 && strstr(e.msg, "' ;'"), "comment: %s", e.msg);
    /* a leading ';' is a comment once rc_to_text writes "key = ;b" (found by fuzz_run_config) */
    CHECK(rc_set(&c, "lora.init_from=;b", &e) == -1 && strstr(e.msg, "[lora] init_from = ';b' starts with ';'"),
          "leading ';': %s", e.msg);
    CHECK(rc_set(&c, "lora.targets=;c_attn", &e) == -1 && strstr(e.msg, "[lora] targets = ';c_attn' starts with ';'"),
          "leading ';' in targets: %s", e.msg);
    CHECK(rc_set(&c, "lora.targets=c_attn ;x", &e) == -1 && strstr(e.msg, "' ;'"), "' ;' in targets: %s", e.msg);
    CHECK(rc_set(&c, "lora.init_from=a;b", &e) == 0 && !strcmp(c.init_from, "a;b"), "';' inside: %s", e.msg);
    rc_set(&c, "lora.init_from=", &e);
    /* what a config file's line cannot hold, --set cannot set: rc_to_text could not write it back (fuzz_run_config) */
    char big[400] = "lora.targets=";
    for (int i = 0; i < 20; i++) strcat(big, i ? ", attn.c_attn" : "attn.c_attn");
    CHECK(rc_set(&c, big, &e) == -1 && strstr(e.msg, "[lora] targets: the line 'key = value' would be 249 characters"),
          "long targets: %s", e.msg);
    memset(big, 'p', sizeof big - 1);
    big[sizeof big - 1] = 0;
    memcpy(big, "model.path=", 11);
    CHECK(rc_set(&c, big, &e) == -1 && strstr(e.msg, "longer than a config file's line may be (199)"), "long path: %s", e.msg);
    big[192] = 0; /* "path = " + 181 characters: 188, fits */
    CHECK(rc_set(&c, big, &e) == 0, "a path that fits: %s", e.msg);
}

static void test_validate(void) {
    run_config c;
    struct lerr e = {{0}};
    rc_defaults(&c);
    CHECK(rc_validate(&c, &e) == -1 && strstr(e.msg, "[model] path"), "defaults lack a model: %s", e.msg);
    rc_set(&c, "model.path=m", &e);
    CHECK(rc_validate(&c, &e) == -1 && strstr(e.msg, "[data] train"), "defaults lack data: %s", e.msg);
    rc_set(&c, "data.train=t.bin", &e);
    CHECK(rc_validate(&c, &e) == 0, "valid: %s", e.msg);
    run_config bad = c;
    bad.r = 0;
    CHECK(rc_validate(&bad, &e) == -1 && strstr(e.msg, "[lora] r must be > 0, got 0"), "r = 0: %s", e.msg);
    bad = c;
    bad.seq_len = 1;
    CHECK(rc_validate(&bad, &e) == -1 && strstr(e.msg, "seq_len"), "seq_len 1: %s", e.msg);
    bad = c;
    bad.n_targets = 0;
    CHECK(rc_validate(&bad, &e) == -1 && strstr(e.msg, "targets"), "no targets: %s", e.msg);
    bad = c;
    bad.schedule = 7;
    CHECK(rc_validate(&bad, &e) == -1 && strstr(e.msg, "schedule"), "schedule 7: %s", e.msg);
    bad = c;
    bad.beta2 = 1.0f;
    CHECK(rc_validate(&bad, &e) == -1 && strstr(e.msg, "beta2"), "beta2 1: %s", e.msg);
}

static void test_roundtrip(void) {
    run_config c, back;
    struct lerr e = {{0}};
    rc_defaults(&c);
    const char *sets[] = {"model.path=demo/tiny-gpt2-pydocs",
                          "lora.r=16",
                          "lora.alpha=0.1",
                          "lora.rslora=true",
                          "lora.dropout=0.3333333",
                          "lora.targets=q_proj,k_proj,v_proj,o_proj",
                          "lora.init_seed=18446744073709551615",
                          "lora.init_from=some dir/with spaces",
                          "data.train=demo/wordnet.train.bin",
                          "data.val=demo/wordnet.val.bin",
                          "data.seq_len=128",
                          "data.sampling=random",
                          "data.seed=99",
                          "optim.lr=3.14159e-4",
                          "optim.beta2=0.98",
                          "optim.eps=1e-7",
                          "optim.weight_decay=0.01",
                          "optim.schedule=linear",
                          "optim.warmup_steps=1000000000000",
                          "optim.min_lr_ratio=0.05",
                          "optim.grad_clip=0.7",
                          "train.steps=12345",
                          "train.out_dir=out",
                          "system.servers=4",
                          "system.staleness=2",
                          "system.grad_dtype=fp16",
                          "system.nan_policy=abort"};
    for (size_t i = 0; i < sizeof sets / sizeof sets[0]; i++)
        CHECK(rc_set(&c, sets[i], &e) == 0, "%s: %s", sets[i], e.msg);
    char text[8192];
    int n = rc_to_text(&c, text, sizeof text);
    CHECK(n > 0 && n < (int)sizeof text && (int)strlen(text) == n, "rc_to_text length %d", n);
    CHECK(strstr(text, "[lora]\nr = 16\n") && strstr(text, "targets = q_proj,k_proj,v_proj,o_proj\n") &&
              strstr(text, "rslora = true\n") && strstr(text, "schedule = linear\n"),
          "text:\n%s", text);
    const char *p = write_ini(text);
    rc_defaults(&back);
    CHECK(rc_load(&back, p, &e) == 0, "reload: %s", e.msg);
    CHECK(strcmp(back.source, p) == 0, "source");
    memcpy(back.source, c.source, sizeof c.source);
    CHECK(memcmp(&c, &back, sizeof c) == 0, "rc_load(rc_to_text(c)) == c");
    /* loading onto other values gives the same struct: the text is complete */
    run_config other;
    rc_defaults(&other);
    rc_set(&other, "lora.targets=a,b,c,d,e,f", &e);
    rc_set(&other, "optim.lr=0.5", &e);
    CHECK(rc_load(&other, p, &e) == 0, "reload onto other: %s", e.msg);
    memcpy(other.source, c.source, sizeof c.source);
    CHECK(memcmp(&c, &other, sizeof c) == 0, "text overrides every field");

    /* defaults round-trip too */
    rc_defaults(&c);
    rc_to_text(&c, text, sizeof text);
    rc_defaults(&back);
    rc_set(&back, "optim.lr=1", &e);
    CHECK(rc_load(&back, write_ini(text), &e) == 0, "defaults reload: %s", e.msg);
    memset(back.source, 0, sizeof back.source);
    CHECK(memcmp(&c, &back, sizeof c) == 0, "defaults round trip");

    /* truncation: returns the length it needed, always terminated */
    char small[16];
    int need = rc_to_text(&c, small, sizeof small);
    CHECK(need == (int)strlen(text) && strlen(small) == sizeof small - 1, "truncated: need %d", need);
    CHECK(rc_to_text(&c, NULL, 0) == need, "size query");
}

/* The first differing key of two configs, for the message of a rank whose config is not rank 0's. */
static void test_first_difference(void) {
    run_config a, b;
    rc_defaults(&a);
    rc_defaults(&b);
    struct lerr e = {{0}};
    CHECK(rc_set(&b, "optim.lr=1e-3", &e) == 0 && rc_set(&b, "train.steps=7", &e) == 0, "%s", e.msg);
    char ta[16384], tb[16384], d[512] = "";
    rc_to_text(&a, ta, sizeof ta);
    rc_to_text(&b, tb, sizeof tb);
    CHECK(rc_first_difference(ta, ta, d, sizeof d) == 0, "a text equals itself");
    CHECK(rc_first_difference(ta, tb, d, sizeof d) == 1 && strstr(d, "[optim] lr = '") && strstr(d, "' here, '0.001' there"),
          "first difference: %s", d);
    CHECK(rc_first_difference(ta, "[model]\n", d, sizeof d) == 1 && strstr(d, "(end)"), "a shorter text: %s", d);
}

int main(void) {
    snprintf(dir, sizeof dir, "/tmp/test_config.XXXXXX");
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    test_defaults();
    test_load();
    test_errors();
    test_set();
    test_validate();
    test_roundtrip();
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
    test_first_difference();
    return tu_end("test_config");
}
