/*
 * Model folders without tokenizer.json, built as transformers builds them
 * (models/gpt2/tokenization_gpt2.py, models/bert/tokenization_bert.py,
 * tokenization_utils_base.load_vocab_and_merges):
 *  - vocab.json + merges.txt: BPE, ByteLevel pre-tokenizer (add_prefix_space
 *    from tokenizer_config.json, default false), ByteLevel decoder, no
 *    post-processor; merges.txt lines are stripped, empty and '#' lines
 *    skipped, and a line that is not two whitespace-separated tokens is
 *    skipped (as transformers does);
 *  - vocab.txt: WordPiece (one token per line, "\n", "\r\n" or "\r"; a token
 *    given twice keeps its later line), BertNormalizer (do_lower_case,
 *    tokenize_chinese_chars, strip_accents from tokenizer_config.json),
 *    BertPreTokenizer, WordPiece decoder, "[CLS] $A [SEP]" / "... $B:1 [SEP]:1".
 * Special tokens: tokenizer_config.json's added_tokens_decoder and its
 * *_token entries, else the class defaults (<|endoftext|>; [UNK] [SEP] [PAD]
 * [CLS] [MASK]).
 */
#include <cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "tokenizer_int.h"
#include "util.h"

#define MAX_FILE ((size_t)1 << 30)

static int exists(const char *dir, const char *name, char *path, size_t cap) {
    struct stat sb;
    snprintf(path, cap, "%s/%s", dir, name);
    return stat(path, &sb) == 0;
}

/* Python's str.isspace for the strip()/split() of merges.txt lines. */
static int py_space(uint32_t c) { return tkz_is_whitespace(c) || (c >= 0x1C && c <= 0x1F); }

static size_t skip_space(const char *s, size_t i, size_t n, int want_space) {
    while (i < n) {
        int l;
        uint32_t c = tkz_u8dec(s + i, &l);
        if (py_space(c) != want_space) break;
        i += (size_t)l;
    }
    return i;
}

/* The token named by a *_token entry: a string or {"content": ...}. */
static const char *tok_name(const cJSON *x) {
    if (cJSON_IsString(x)) return x->valuestring;
    const cJSON *c = cJSON_IsObject(x) ? cJSON_GetObjectItemCaseSensitive(x, "content") : NULL;
    return cJSON_IsString(c) ? c->valuestring : NULL;
}

static int cfg_bool(const cJSON *cfg, const char *k, int def) {
    const cJSON *x = cfg ? cJSON_GetObjectItemCaseSensitive(cfg, k) : NULL;
    return cJSON_IsBool(x) ? cJSON_IsTrue(x) : def;
}

/* Special tokens from the config (or the defaults), registered as HF's
 * added tokens: special, not normalized. */
static int add_specials(tkz *t, const cJSON *cfg, const char *const *keys, const char *const *defaults, int nk,
                        struct lerr *e) {
    tkz_added v[64];
    int n = 0;
    const cJSON *dec = cfg ? cJSON_GetObjectItemCaseSensitive(cfg, "added_tokens_decoder") : NULL;
    for (const cJSON *x = cJSON_IsObject(dec) ? dec->child : NULL; x && n < 48; x = x->next) {
        const char *c = tok_name(x);
        if (!c || !*c || tkz_utf8_valid(c, strlen(c)) != strlen(c)) continue;
        tkz_added a = {0};
        a.content = strdup(c);
        a.len = strlen(c);
        a.special = (uint8_t)cfg_bool(x, "special", 1);
        a.normalized = (uint8_t)cfg_bool(x, "normalized", !a.special);
        a.lstrip = (uint8_t)cfg_bool(x, "lstrip", 0);
        a.rstrip = (uint8_t)cfg_bool(x, "rstrip", 0);
        a.single_word = (uint8_t)cfg_bool(x, "single_word", 0);
        if (!a.content) return lerr_set(e, "%s: out of memory", t->name);
        v[n++] = a;
    }
    for (int k = 0; k < nk && n < 64; k++) {
        const cJSON *x = cfg ? cJSON_GetObjectItemCaseSensitive(cfg, keys[k]) : NULL;
        const char *c = x ? tok_name(x) : defaults[k];
        if (!c || !*c || tkz_utf8_valid(c, strlen(c)) != strlen(c)) continue;
        tkz_added a = {0};
        a.content = strdup(c);
        a.len = strlen(c);
        a.special = 1;
        if (!a.content) return lerr_set(e, "%s: out of memory", t->name);
        v[n++] = a;
    }
    int rc = tkz_add_tokens(t, v, n, e);
    for (int i = 0; i < n; i++) free(v[i].content);
    return rc;
}

static int load_gpt2(tkz *t, const char *vpath, const char *mpath, const cJSON *cfg, struct lerr *e) {
    tkz_model *m = &t->model;
    m->type = MD_BPE;
    char *vj = read_text_file(vpath, MAX_FILE, e);
    if (!vj) return -1;
    cJSON *v = cJSON_Parse(vj);
    free(vj);
    if (!cJSON_IsObject(v)) {
        cJSON_Delete(v);
        return lerr_set(e, "%s: not a JSON object {token: id}", vpath);
    }
    int rc = tkz_smap_init(&m->vocab, (size_t)cJSON_GetArraySize(v)) ? lerr_set(e, "%s: out of memory", vpath) : 0;
    for (const cJSON *x = v->child; x && !rc; x = x->next) {
        size_t n = strlen(x->string);
        if (!cJSON_IsNumber(x) || !tkz_whole(x->valuedouble) || x->valuedouble < 0 ||
            x->valuedouble >= TKZ_MAX_ID)
            rc = lerr_set(e, "%s: the id of '%.80s' is not an integer in [0, %d)", vpath, x->string, TKZ_MAX_ID);
        else if (tkz_utf8_valid(x->string, n) != n)
            rc = lerr_set(e, "%s: a token is not valid UTF-8", vpath);
        else
            rc = tkz_model_add(m, x->string, n, (int32_t)x->valuedouble, 1, vpath, e);
    }
    cJSON_Delete(v);
    if (rc) return -1;
    char *mt = read_text_file(mpath, MAX_FILE, e);
    if (!mt) return -1;
    size_t len = strlen(mt);
    if (tkz_utf8_valid(mt, len) != len) {
        free(mt);
        return lerr_set(e, "%s: not valid UTF-8", mpath);
    }
    uint32_t rank = 0;
    for (size_t i = 0; i < len && !rc;) {
        const char *nl = memchr(mt + i, '\n', len - i);
        size_t end = nl ? (size_t)(nl - mt) : len;
        size_t a0 = skip_space(mt, i, end, 1), a1 = skip_space(mt, a0, end, 0);
        size_t b0 = skip_space(mt, a1, end, 1), b1 = skip_space(mt, b0, end, 0);
        size_t c0 = skip_space(mt, b1, end, 1);
        if (a1 > a0 && mt[a0] != '#' && b1 > b0 && c0 == end) {
            char where[4300];
            snprintf(where, sizeof where, "%s: line %u", mpath, rank + 1);
            rc = tkz_bpe_add_merge(m, mt + a0, a1 - a0, mt + b0, b1 - b0, rank++, where, e);
        }
        i = end + 1;
    }
    free(mt);
    if (rc) return -1;
    if (!(t->pre = calloc(1, sizeof *t->pre)) || !(t->dec = calloc(1, sizeof *t->dec))) return lerr_set(e, "out of memory");
    t->pre->type = PT_BYTELEVEL;
    t->pre->add_prefix_space = cfg_bool(cfg, "add_prefix_space", 0);
    t->pre->use_regex = 1;
    static const char re[] = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
    if (tkz_re_compile(&t->pre->re, re, strlen(re), 0, "ByteLevel", e)) return -1;
    t->dec->type = DC_BYTELEVEL;
    static const char *const keys[] = {"unk_token", "bos_token", "eos_token", "pad_token"};
    static const char *const defs[] = {"<|endoftext|>", "<|endoftext|>", "<|endoftext|>", NULL};
    return add_specials(t, cfg, keys, defs, 4, e);
}

static int load_bert(tkz *t, const char *path, const cJSON *cfg, struct lerr *e) {
    tkz_model *m = &t->model;
    m->type = MD_WORDPIECE;
    char *txt = read_text_file(path, MAX_FILE, e);
    if (!txt) return -1;
    size_t len = strlen(txt);
    if (tkz_utf8_valid(txt, len) != len) {
        free(txt);
        return lerr_set(e, "%s: not valid UTF-8", path);
    }
    int rc = tkz_smap_init(&m->vocab, 32768) ? lerr_set(e, "%s: out of memory", path) : 0;
    int32_t id = 0;
    for (size_t i = 0; i < len && !rc; id++) {
        size_t end = i;
        while (end < len && txt[end] != '\n' && txt[end] != '\r') end++;
        rc = tkz_model_add(m, txt + i, end - i, id, 1, path, e);
        if (end < len && txt[end] == '\r' && end + 1 < len && txt[end + 1] == '\n') end++;
        i = end + 1;
    }
    free(txt);
    if (rc) return -1;
    static const char *const keys[] = {"unk_token", "sep_token", "pad_token", "cls_token", "mask_token"};
    static const char *const defs[] = {"[UNK]", "[SEP]", "[PAD]", "[CLS]", "[MASK]"};
    const char *names[5];
    for (int k = 0; k < 5; k++) {
        const cJSON *x = cfg ? cJSON_GetObjectItemCaseSensitive(cfg, keys[k]) : NULL;
        names[k] = x ? tok_name(x) : defs[k];
        if (!names[k]) names[k] = defs[k];
    }
    if (!(m->unk_name = strdup(names[0])) || !(m->prefix = strdup("##"))) return lerr_set(e, "out of memory");
    m->prefix_len = 2;
    m->max_chars = 100;
    if (!(t->norm = calloc(1, sizeof *t->norm)) || !(t->pre = calloc(1, sizeof *t->pre)) ||
        !(t->dec = calloc(1, sizeof *t->dec)) || !(t->post = calloc(1, sizeof *t->post)))
        return lerr_set(e, "out of memory");
    t->norm->type = NZ_BERT;
    t->norm->clean_text = 1;
    t->norm->chinese = cfg_bool(cfg, "tokenize_chinese_chars", 1);
    t->norm->lowercase = cfg_bool(cfg, "do_lower_case", 1);
    t->norm->strip_accents = cfg_bool(cfg, "strip_accents", t->norm->lowercase);
    t->pre->type = PT_BERT;
    t->dec->type = DC_WORDPIECE;
    t->dec->cleanup = 1;
    if (!(t->dec->s1 = strdup("##"))) return lerr_set(e, "out of memory");
    if (add_specials(t, cfg, keys, defs, 5, e)) return -1;
    int32_t cls = tkz_token_to_id(t, names[3]), sep = tkz_token_to_id(t, names[1]);
    if (cls < 0) cls = 2;
    if (sep < 0) sep = 3;
    tkz_post *p = t->post;
    p->type = PP_TEMPLATE;
    p->single = calloc(3, sizeof *p->single);
    p->pair = calloc(5, sizeof *p->pair);
    if (!p->single || !p->pair) return lerr_set(e, "out of memory");
    int32_t seq[5] = {cls, -1, sep, -1, sep}, types[5] = {0, 0, 0, 1, 1};
    for (int i = 0; i < 5; i++) {
        tkz_piece x = {.special = seq[i] >= 0, .seq = i == 3, .type_id = types[i]};
        if (x.special) {
            if (!(x.ids = malloc(sizeof *x.ids))) return lerr_set(e, "out of memory");
            x.ids[0] = seq[i];
            x.n_ids = 1;
        }
        p->pair[p->n_pair++] = x;
        if (i < 3) {
            tkz_piece y = x;
            if (x.special && !(y.ids = malloc(sizeof *y.ids))) return lerr_set(e, "out of memory");
            if (x.special) y.ids[0] = seq[i];
            p->single[p->n_single++] = y;
        }
    }
    return 0;
}

int tkz_load_legacy(tkz *t, const char *dir, struct lerr *e) {
    char vj[4200], mt[4200], vt[4200], cf[4200];
    int gpt2 = exists(dir, "vocab.json", vj, sizeof vj) && exists(dir, "merges.txt", mt, sizeof mt);
    int bert = !gpt2 && exists(dir, "vocab.txt", vt, sizeof vt);
    if (!gpt2 && !bert) return 0;
    cJSON *cfg = NULL;
    if (exists(dir, "tokenizer_config.json", cf, sizeof cf)) {
        char *s = read_text_file(cf, MAX_FILE, e);
        if (!s) return -1;
        cfg = cJSON_Parse(s);
        free(s);
        if (!cJSON_IsObject(cfg)) {
            cJSON_Delete(cfg);
            return lerr_set(e, "%s: not a JSON object", cf);
        }
    }
    int rc = gpt2 ? load_gpt2(t, vj, mt, cfg, e) : load_bert(t, vt, cfg, e);
    cJSON_Delete(cfg);
    return rc ? -1 : 1;
}
