/*
 * The pure pieces of `lora prep` (include/prep.h): UTF-8 checking and
 * repair as Python's decoder with errors="replace", RFC 4180 and GLUE-TSV
 * record splitting, run_ner's label alignment, the seeded held-out
 * selection; and ds_write read back by ds_open.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dataset.h"
#include "prep.h"
#include "testutil.h"

static void test_utf8(void) {
    size_t bad = 99, n;
    char *o;
    CHECK(prep_utf8_fix("plain é 中 😀", strlen("plain é 中 😀"), &bad, NULL, NULL) == 0 && bad == 99,
          "valid text: no error");
    /* Python: b"a\xffb\xe4\xb8c\xed\xa0\x80d\xf0\x9f\x98".decode(errors="replace") ==
     * "a\ufffdb\ufffdc\ufffd\ufffd\ufffdd\ufffd": a truncated sequence is one, a surrogate's bytes three */
    const char in[] = "a\xff" "b\xe4\xb8" "c\xed\xa0\x80" "d\xf0\x9f\x98";
    long k = prep_utf8_fix(in, sizeof in - 1, &bad, &o, &n);
    const char want[] = "a\xEF\xBF\xBD" "b\xEF\xBF\xBD" "c\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD" "d\xEF\xBF\xBD";
    CHECK(k == 6 && bad == 1, "6 invalid sequences, the first at byte 1 (got %ld at %zu)", k, bad);
    CHECK(n == sizeof want - 1 && !memcmp(o, want, n), "replacement as Python's (got %zu bytes)", n);
    free(o);
    /* overlong forms and past U+10FFFF */
    CHECK(prep_utf8_fix("\xc0\xaf", 2, &bad, NULL, NULL) == 2, "an overlong 2-byte form: 2 bytes, 2 errors");
    CHECK(prep_utf8_fix("\xe0\x80\xaf", 3, &bad, NULL, NULL) == 3, "an overlong 3-byte form: 3 errors");
    CHECK(prep_utf8_fix("\xf4\x90\x80\x80", 4, &bad, NULL, NULL) == 4, "past U+10FFFF: 4 errors");
    CHECK(prep_utf8_fix("\xf4\x8f\xbf\xbf", 4, &bad, NULL, NULL) == 0, "U+10FFFF is valid");
}

static int field_is(const prep_record *r, int i, const char *s) {
    return i < r->n && r->len[i] == strlen(s) && !memcmp(r->buf + r->off[i], s, r->len[i]);
}

static void test_split(void) {
    prep_record r = {0};
    size_t used;
    int lines;
    struct lerr e;
    const char *csv = "a,\"b,c\",\"say \"\"hi\"\"\",\r\n\"two\nlines\",x\nlast";
    CHECK(!prep_split_record(csv, strlen(csv), ',', 1, &r, &used, &lines, &e), "CSV record 1: %s", e.msg);
    CHECK(r.n == 4 && field_is(&r, 0, "a") && field_is(&r, 1, "b,c") && field_is(&r, 2, "say \"hi\"") &&
              field_is(&r, 3, ""), "quoted separator, doubled quote, empty last field (n %d)", r.n);
    CHECK(lines == 1 && used == strlen("a,\"b,c\",\"say \"\"hi\"\"\",\r\n"), "CRLF ends it (used %zu)", used);
    size_t at = used;
    CHECK(!prep_split_record(csv + at, strlen(csv) - at, ',', 1, &r, &used, &lines, &e), "CSV record 2: %s", e.msg);
    CHECK(r.n == 2 && field_is(&r, 0, "two\nlines") && field_is(&r, 1, "x") && lines == 2,
          "a newline inside quotes: 2 line ends (n %d, lines %d)", r.n, lines);
    at += used;
    CHECK(!prep_split_record(csv + at, strlen(csv) - at, ',', 1, &r, &used, &lines, &e) && r.n == 1 &&
              field_is(&r, 0, "last") && lines == 0, "a last line without a newline");
    CHECK(prep_split_record("\"open,x\n", 8, ',', 1, &r, &used, &lines, &e) < 0 && strstr(e.msg, "not closed"),
          "an unterminated quote is an error: %s", e.msg);
    CHECK(prep_split_record("\"a\"b,c\n", 7, ',', 1, &r, &used, &lines, &e) < 0 && strstr(e.msg, "after the closing"),
          "a character after a closing quote is an error: %s", e.msg);
    /* a quote inside an unquoted field is text; a later quoted field still spans lines */
    const char *odd = "a\"b,\"x\ny\",z\nnext";
    CHECK(!prep_split_record(odd, strlen(odd), ',', 1, &r, &used, &lines, &e) && r.n == 3 && field_is(&r, 0, "a\"b") &&
              field_is(&r, 1, "x\ny") && field_is(&r, 2, "z") && used == strlen(odd) - 4,
          "a stray quote, then a quoted newline (n %d, used %zu)", r.n, used);
    /* GLUE's TSV: no quoting, quotes are text */
    const char *tsv = "he said \"no\" , twice \t0\n";
    CHECK(!prep_split_record(tsv, strlen(tsv), '\t', 0, &r, &used, &lines, &e) && r.n == 2 &&
              field_is(&r, 0, "he said \"no\" , twice ") && field_is(&r, 1, "0"), "TSV keeps quotes and commas");
    prep_record_free(&r);
}

static void test_align(void) {
    /* [CLS] Jo ##hn lives in Lon ##don [SEP] [PAD]: words John=B-PER(1) lives=O(0) in=O Lon..=B-LOC(3) */
    int32_t wid[9] = {-1, 0, 0, 1, 2, 3, 3, -1, -1}, wl[4] = {1, 0, 0, 3}, out[9];
    int32_t b_to_i[5] = {0, 2, 2, 4, 4}; /* 1 B-PER -> 2 I-PER, 3 B-LOC -> 4 I-LOC */
    prep_align_labels(out, wid, 9, wl, 0, NULL);
    int32_t first[9] = {-100, 1, -100, 0, 0, 3, -100, -100, -100};
    CHECK(!memcmp(out, first, sizeof out), "the first piece labeled, the rest and specials -100");
    prep_align_labels(out, wid, 9, wl, 1, b_to_i);
    int32_t all[9] = {-100, 1, 2, 0, 0, 3, 4, -100, -100};
    CHECK(!memcmp(out, all, sizeof out), "label_all_tokens: later pieces get I-X");
    prep_align_labels(out, wid, 9, wl, 1, NULL);
    CHECK(out[2] == 1 && out[6] == 3, "label_all_tokens without a B->I map: the word's label");
}

static void test_select(void) {
    uint8_t a[1000], b[1000], c[1000];
    CHECK(prep_split_select(a, 1000, 0.1, 5) == 100, "10%% of 1000 is 100");
    prep_split_select(b, 1000, 0.1, 5);
    prep_split_select(c, 1000, 0.1, 6);
    int n = 0, lo = 0;
    for (int i = 0; i < 1000; i++) n += a[i], lo += a[i] && i < 500;
    CHECK(n == 100 && !memcmp(a, b, sizeof a) && memcmp(a, c, sizeof a), "seeded: same seed same set, another differs");
    CHECK(lo > 30 && lo < 70, "spread over the file (%d of 100 in the first half)", lo);
    CHECK(prep_split_select(a, 7, 0.25, 1) == 2 && prep_split_select(a, 7, 0.0, 1) == 0, "rounding: 7 x 0.25 -> 2");
    CHECK(prep_split_select(a, 7, 1.0, 1) == -1, "a fraction of 1 is refused");
    int32_t v;
    CHECK(prep_parse_label_id("12", 2, &v) && v == 12 && !prep_parse_label_id("1a", 2, &v) &&
              !prep_parse_label_id("-1", 2, &v) && !prep_parse_label_id("", 0, &v), "label ids");
}

static void test_ds_roundtrip(void) {
    char path[] = "/tmp/test_prep_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0, "temp file");
    close(fd);
    int32_t ids[6] = {2, 7, 3, 2, 9, 0}, mask[6] = {1, 1, 1, 1, 1, 0}, types[6] = {0, 0, 0, 0, 1, 0};
    int32_t lab[6] = {-100, 1, -100, -100, 0, -100};
    const char *names[2] = {"O", "B-X"};
    struct lerr e = {{0}};
    CHECK(!ds_write(path, TASK_TOKEN_CLS, 2, 3, ids, mask, types, lab, names, 2, &e), "ds_write: %s", e.msg);
    ds_file *d = ds_open(path, TASK_TOKEN_CLS, 2, 10, 8, &e);
    CHECK(d != NULL, "ds_open reads what ds_write wrote: %s", e.msg);
    if (d) {
        int32_t t[3], m[3], y[3], ty[3];
        ds_get(d, 1, 0, t, m, ty, y);
        CHECK(ds_count(d) == 2 && ds_seq_len(d) == 3 && ds_has_mask(d) && ds_has_types(d) && t[1] == 9 && m[2] == 0 &&
                  ty[1] == 1 && y[1] == 0 && y[0] == -100, "example 1 back");
        ds_close(d);
    }
    CHECK(!ds_open(path, TASK_SEQ_CLS, 2, 10, 8, &e) && strstr(e.msg, "TOKEN_CLS"), "another task refused: %s", e.msg);
    unlink(path);
}

int main(void) {
    test_utf8();
    test_split();
    test_align();
    test_select();
    test_ds_roundtrip();
    return tu_end("test_prep");
}
