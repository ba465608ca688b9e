/*
 * fuzz_run_config: the INI run config (worker/run_config.c). An input whose
 * first byte is '!' is one --set assignment (rc_set: "section.key=value");
 * any other is a config file (rc_load, through a temporary file). What was
 * accepted must survive the round trip the checkpoints and the rank
 * comparison rely on: rc_to_text, loaded again, gives the same text. Seeds:
 * the .ini files of configs/ and tests/.
 */
#include "fuzz_util.h"
#include "run_config.h"

static char text_a[1 << 16], text_b[1 << 16];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size > (1 << 16)) return 0;
    static run_config c, c2;
    struct lerr e;
    e.msg[0] = 0;
    rc_defaults(&c);
    int rc;
    if (size && data[0] == '!') {
        char *s = fuzz_text(data + 1, size - 1);
        rc = rc_set(&c, s, &e);
        free(s);
        fuzz_need_msg(rc != 0, &e, "rc_set");
    } else {
        rc = rc_load(&c, fuzz_file("run.ini", data, size), &e);
        fuzz_need_msg(rc != 0, &e, "rc_load");
    }
    if (rc != 0) return 0;
    e.msg[0] = 0;
    fuzz_need_msg(rc_validate(&c, &e) != 0, &e, "rc_validate");
    int n = rc_to_text(&c, text_a, sizeof text_a);
    if (n < 0 || n >= (int)sizeof text_a) abort();
    rc_defaults(&c2);
    if (rc_load(&c2, fuzz_file("again.ini", text_a, (size_t)n), &e) != 0) {
        fprintf(stderr, "fuzz: rc_to_text's output does not load again: %s\n--- text:\n%s", e.msg, text_a);
        abort();
    }
    rc_to_text(&c2, text_b, sizeof text_b);
    if (strcmp(text_a, text_b)) {
        char diff[512];
        rc_first_difference(text_a, text_b, diff, sizeof diff);
        fprintf(stderr, "fuzz: rc_to_text does not round-trip: %s\n", diff);
        abort();
    }
    return 0;
}
