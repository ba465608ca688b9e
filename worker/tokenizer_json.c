/*
 * tokenizer.json -> the tokenizer's structs. Every field is checked for its
 * type and range, and every message names the field by its path
 * ("model.merges[12]"); a component this code does not implement is an
 * error naming it, never skipped. Strings must be valid UTF-8 (cJSON keeps
 * what the file has; a JSON "\u0000" ends a string there).
 */
#include <cJSON.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer_int.h"

typedef struct {
    const char *file;
    struct lerr *e;
} J;

__attribute__((format(printf, 3, 4))) static int jerr(J *j, const char *path, const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return lerr_set(j->e, "%s: %s: %s", j->file, path, msg);
}

static const cJSON *jf(const cJSON *o, const char *k) { return cJSON_IsObject(o) ? cJSON_GetObjectItemCaseSensitive(o, k) : NULL; }
static int jnull(const cJSON *x) { return !x || cJSON_IsNull(x); }

static int jbool(J *j, const cJSON *o, const char *k, int def, const char *path) {
    const cJSON *x = jf(o, k);
    if (jnull(x)) return def;
    if (!cJSON_IsBool(x)) return jerr(j, path, "'%s' must be true or false", k);
    return cJSON_IsTrue(x);
}

/* A string field; def (possibly NULL) when missing or null. */
static int jstr(J *j, const cJSON *o, const char *k, const char *def, char **out, const char *path) {
    const cJSON *x = jf(o, k);
    *out = NULL;
    const char *s = def;
    if (!jnull(x)) {
        if (!cJSON_IsString(x)) return jerr(j, path, "'%s' must be a string", k);
        s = x->valuestring;
        if (tkz_utf8_valid(s, strlen(s)) != strlen(s)) return jerr(j, path, "'%s' is not valid UTF-8", k);
    }
    if (s && !(*out = strdup(s))) return jerr(j, path, "out of memory");
    return 0;
}

static int jint(J *j, const cJSON *o, const char *k, long long def, long long lo, long long hi, long long *out,
                const char *path) {
    const cJSON *x = jf(o, k);
    *out = def;
    if (jnull(x)) return 0;
    if (cJSON_IsNumber(x) && (x->valuedouble < (double)lo || x->valuedouble > (double)hi))
        return jerr(j, path, "'%s' = %g is out of range [%lld, %lld]", k, x->valuedouble, lo, hi);
    if (!cJSON_IsNumber(x) || !tkz_whole(x->valuedouble)) return jerr(j, path, "'%s' must be an integer", k);
    *out = (long long)x->valuedouble;
    if (*out < lo || *out > hi) return jerr(j, path, "'%s' = %lld is out of range [%lld, %lld]", k, *out, lo, hi);
    return 0;
}

/* A one-character string (Metaspace's replacement, a delimiter). */
static int jchar(J *j, const cJSON *o, const char *k, uint32_t def, uint32_t *out, const char *path) {
    char *s;
    if (jstr(j, o, k, NULL, &s, path)) return -1;
    if (!s) {
        if (!def) return jerr(j, path, "'%s' is missing", k);
        *out = def;
        return 0;
    }
    int l = 0;
    *out = *s ? tkz_u8dec(s, &l) : 0;
    int bad = !*s || s[l];
    free(s);
    return bad ? jerr(j, path, "'%s' must be exactly one character", k) : 0;
}

static const char *jtype(J *j, const cJSON *o, const char *path) {
    const cJSON *t = jf(o, "type");
    if (!cJSON_IsObject(o)) return jerr(j, path, "must be an object"), NULL;
    if (!cJSON_IsString(t)) return jerr(j, path, "has no \"type\" (files without one are not supported)"), NULL;
    return t->valuestring;
}

static int not_impl(J *j, const char *path, const char *what, const char *type) {
    return jerr(j, path, "%s type '%s' is not implemented", what, type);
}

/* {"String": s} or {"Regex": s} */
static int jpattern(J *j, const cJSON *o, tkz_re *re, const char *path) {
    const cJSON *p = jf(o, "pattern"), *s = jf(p, "String"), *r = jf(p, "Regex");
    char where[300];
    snprintf(where, sizeof where, "%s: %s.pattern", j->file, path);
    if (cJSON_IsString(s)) return tkz_re_compile(re, s->valuestring, strlen(s->valuestring), 1, where, j->e);
    if (cJSON_IsString(r)) return tkz_re_compile(re, r->valuestring, strlen(r->valuestring), 0, where, j->e);
    return jerr(j, path, "'pattern' must be {\"String\": ...} or {\"Regex\": ...}");
}

static int jbehavior(J *j, const cJSON *o, int def, const char *path) {
    const cJSON *b = jf(o, "behavior");
    if (jnull(b)) return def;
    static const char *names[] = {"Removed", "Isolated", "MergedWithPrevious", "MergedWithNext", "Contiguous"};
    for (int i = 0; cJSON_IsString(b) && i < 5; i++)
        if (!strcmp(b->valuestring, names[i])) return i;
    return jerr(j, path, "'behavior' must be one of Removed, Isolated, MergedWithPrevious, MergedWithNext, Contiguous");
}

static int jscheme(J *j, const cJSON *o, const char *path) {
    const cJSON *s = jf(o, "prepend_scheme");
    int scheme = PS_ALWAYS;
    if (!jnull(s)) {
        if (!cJSON_IsString(s)) return jerr(j, path, "'prepend_scheme' must be a string");
        if (!strcmp(s->valuestring, "always")) scheme = PS_ALWAYS;
        else if (!strcmp(s->valuestring, "first")) scheme = PS_FIRST;
        else if (!strcmp(s->valuestring, "never")) scheme = PS_NEVER;
        else return jerr(j, path, "'prepend_scheme' must be \"always\", \"first\" or \"never\"");
    }
    int aps = jbool(j, o, "add_prefix_space", 1, path);
    if (aps < 0) return -1;
    if (!aps) { /* the older field; HF refuses the combination below */
        if (scheme != PS_NEVER) return jerr(j, path, "add_prefix_space does not match declared prepend_scheme");
        scheme = PS_NEVER;
    }
    return scheme;
}

/* ---- normalizers ---- */
static int jnorm(J *j, const cJSON *o, tkz_norm *z, const char *path) {
    const char *type = jtype(j, o, path);
    if (!type) return -1;
    memset(z, 0, sizeof *z);
    if (!strcmp(type, "BertNormalizer")) {
        z->type = NZ_BERT;
        if ((z->clean_text = jbool(j, o, "clean_text", 1, path)) < 0 || (z->chinese = jbool(j, o, "handle_chinese_chars", 1, path)) < 0 ||
            (z->lowercase = jbool(j, o, "lowercase", 1, path)) < 0 || (z->strip_accents = jbool(j, o, "strip_accents", z->lowercase, path)) < 0)
            return -1;
    } else if (!strcmp(type, "NFC")) z->type = NZ_NFC;
    else if (!strcmp(type, "NFD")) z->type = NZ_NFD;
    else if (!strcmp(type, "NFKC")) z->type = NZ_NFKC;
    else if (!strcmp(type, "NFKD")) z->type = NZ_NFKD;
    else if (!strcmp(type, "Lowercase")) z->type = NZ_LOWER;
    else if (!strcmp(type, "StripAccents")) z->type = NZ_STRIP_ACCENTS;
    else if (!strcmp(type, "ByteLevel")) z->type = NZ_BYTELEVEL;
    else if (!strcmp(type, "Strip")) {
        z->type = NZ_STRIP;
        if ((z->left = jbool(j, o, "strip_left", 1, path)) < 0 || (z->right = jbool(j, o, "strip_right", 1, path)) < 0) return -1;
    } else if (!strcmp(type, "Replace") || !strcmp(type, "Prepend")) {
        int rep = type[0] == 'R';
        z->type = rep ? NZ_REPLACE : NZ_PREPEND;
        if (jstr(j, o, rep ? "content" : "prepend", NULL, &z->content, path)) return -1;
        if (!z->content) return jerr(j, path, "'%s' is missing", rep ? "content" : "prepend");
        z->content_len = strlen(z->content);
        if (rep && jpattern(j, o, &z->re, path)) return -1;
    } else if (!strcmp(type, "Sequence")) {
        z->type = NZ_SEQ;
        const cJSON *l = jf(o, "normalizers");
        if (!cJSON_IsArray(l)) return jerr(j, path, "'normalizers' must be a list");
        int n = cJSON_GetArraySize(l);
        if (!(z->sub = calloc((size_t)n + 1, sizeof *z->sub))) return jerr(j, path, "out of memory");
        for (int i = 0; i < n; i++) {
            char p[300];
            snprintf(p, sizeof p, "%s.normalizers[%d]", path, i);
            z->n_sub = i + 1;
            if (jnorm(j, cJSON_GetArrayItem(l, i), &z->sub[i], p)) return -1;
        }
    } else {
        return not_impl(j, path, "normalizer", type);
    }
    return 0;
}

/* ---- pre-tokenizers ---- */
static const char GPT2_RE[] = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
static const char WS_RE[] = "[" TKZ_WORD_CLASS "]+|[^" TKZ_WORD_CLASS "\\p{White_Space}]+";

static int jpre(J *j, const cJSON *o, tkz_pretok *p, const char *path) {
    const char *type = jtype(j, o, path);
    if (!type) return -1;
    memset(p, 0, sizeof *p);
    char where[300];
    snprintf(where, sizeof where, "%s: %s", j->file, path);
    if (!strcmp(type, "ByteLevel")) {
        p->type = PT_BYTELEVEL;
        if ((p->add_prefix_space = jbool(j, o, "add_prefix_space", 1, path)) < 0 || (p->use_regex = jbool(j, o, "use_regex", 1, path)) < 0)
            return -1;
        if (p->use_regex && tkz_re_compile(&p->re, GPT2_RE, strlen(GPT2_RE), 0, where, j->e)) return -1;
    } else if (!strcmp(type, "Split")) {
        p->type = PT_SPLIT;
        if (jpattern(j, o, &p->re, path) || (p->behavior = jbehavior(j, o, -2, path)) < 0 ||
            (p->invert = jbool(j, o, "invert", 0, path)) < 0)
            return p->behavior == -2 ? jerr(j, path, "'behavior' is missing") : -1;
    } else if (!strcmp(type, "Metaspace")) {
        p->type = PT_METASPACE;
        if (jchar(j, o, "replacement", 0, &p->repl, path) || (p->prepend_scheme = jscheme(j, o, path)) < 0 ||
            (p->split = jbool(j, o, "split", 1, path)) < 0)
            return -1;
    } else if (!strcmp(type, "BertPreTokenizer")) p->type = PT_BERT;
    else if (!strcmp(type, "Whitespace")) {
        p->type = PT_WHITESPACE;
        if (tkz_re_compile(&p->re, WS_RE, strlen(WS_RE), 0, where, j->e)) return -1;
    } else if (!strcmp(type, "WhitespaceSplit")) p->type = PT_WSSPLIT;
    else if (!strcmp(type, "Digits")) {
        p->type = PT_DIGITS;
        if ((p->individual_digits = jbool(j, o, "individual_digits", 0, path)) < 0) return -1;
    } else if (!strcmp(type, "Punctuation")) {
        p->type = PT_PUNCT;
        if ((p->behavior = jbehavior(j, o, BH_ISOLATED, path)) < 0) return -1;
    } else if (!strcmp(type, "CharDelimiterSplit")) {
        p->type = PT_DELIM;
        if (jchar(j, o, "delimiter", 0, &p->repl, path)) return -1;
    } else if (!strcmp(type, "Sequence")) {
        p->type = PT_SEQ;
        const cJSON *l = jf(o, "pretokenizers");
        if (!cJSON_IsArray(l)) return jerr(j, path, "'pretokenizers' must be a list");
        int n = cJSON_GetArraySize(l);
        if (!(p->sub = calloc((size_t)n + 1, sizeof *p->sub))) return jerr(j, path, "out of memory");
        for (int i = 0; i < n; i++) {
            char q[300];
            snprintf(q, sizeof q, "%s.pretokenizers[%d]", path, i);
            p->n_sub = i + 1;
            if (jpre(j, cJSON_GetArrayItem(l, i), &p->sub[i], q)) return -1;
        }
    } else {
        return not_impl(j, path, "pre-tokenizer", type);
    }
    return 0;
}

/* ---- models ---- */
static int jvocab(J *j, const cJSON *o, tkz_model *m, const char *path) {
    const cJSON *v = jf(o, "vocab");
    if (!cJSON_IsObject(v)) return jerr(j, path, "'vocab' must be an object {token: id}");
    char where[300];
    snprintf(where, sizeof where, "%s: %s.vocab", j->file, path);
    if (tkz_smap_init(&m->vocab, (size_t)cJSON_GetArraySize(v))) return jerr(j, path, "out of memory");
    for (const cJSON *x = v->child; x; x = x->next) {
        if (!cJSON_IsNumber(x) || !tkz_whole(x->valuedouble))
            return jerr(j, path, "vocab['%.80s'] must be an integer id", x->string);
        size_t n = strlen(x->string);
        if (tkz_utf8_valid(x->string, n) != n) return jerr(j, path, "vocab has a token that is not valid UTF-8");
        long long id = (long long)x->valuedouble;
        if (id < 0 || id >= TKZ_MAX_ID) return jerr(j, path, "vocab['%.80s'] = %lld is out of range", x->string, id);
        if (tkz_model_add(m, x->string, n, (int32_t)id, 0, where, j->e)) return -1;
    }
    return 0;
}

static int jmodel(J *j, const cJSON *o, tkz_model *m) {
    const char *path = "model";
    const char *type = jtype(j, o, path);
    if (!type) return -1;
    if (!strcmp(type, "BPE")) {
        m->type = MD_BPE;
        const cJSON *d = jf(o, "dropout");
        if (!jnull(d) && !(cJSON_IsNumber(d) && d->valuedouble == 0))
            return jerr(j, path, "BPE dropout (random merges) is not implemented");
        if (jstr(j, o, "unk_token", NULL, &m->unk_name, path) || jstr(j, o, "continuing_subword_prefix", NULL, &m->prefix, path) ||
            jstr(j, o, "end_of_word_suffix", NULL, &m->suffix, path) || (m->fuse_unk = jbool(j, o, "fuse_unk", 0, path)) < 0 ||
            (m->byte_fallback = jbool(j, o, "byte_fallback", 0, path)) < 0 || (m->ignore_merges = jbool(j, o, "ignore_merges", 0, path)) < 0)
            return -1;
        m->prefix_len = m->prefix ? strlen(m->prefix) : 0;
        m->suffix_len = m->suffix ? strlen(m->suffix) : 0;
        if (jvocab(j, o, m, path)) return -1;
        const cJSON *mg = jf(o, "merges");
        if (!cJSON_IsArray(mg)) return jerr(j, path, "'merges' must be a list");
        if (tkz_pmap_init(&m->merges, (size_t)cJSON_GetArraySize(mg))) return jerr(j, path, "out of memory");
        char where[300];
        snprintf(where, sizeof where, "%s: model.merges", j->file);
        uint32_t rank = 0;
        int i = 0;
        for (const cJSON *x = mg->child; x; x = x->next, i++) {
            const char *a, *b;
            size_t an, bn;
            if (cJSON_IsString(x)) { /* "a b"; "#version" lines are skipped as in merges.txt */
                const char *s = x->valuestring, *sp = strchr(s, ' ');
                if (!strncmp(s, "#version", 8)) continue;
                if (!sp || strchr(sp + 1, ' ')) return jerr(j, path, "merges[%d] = '%.80s' is not two tokens separated by one space", i, s);
                a = s, an = (size_t)(sp - s), b = sp + 1, bn = strlen(sp + 1);
            } else if (cJSON_IsArray(x) && cJSON_GetArraySize(x) == 2 && cJSON_IsString(x->child) && cJSON_IsString(x->child->next)) {
                a = x->child->valuestring, an = strlen(a), b = x->child->next->valuestring, bn = strlen(b);
            } else {
                return jerr(j, path, "merges[%d] must be \"a b\" or [\"a\", \"b\"]", i);
            }
            if (tkz_bpe_add_merge(m, a, an, b, bn, rank++, where, j->e)) return -1;
        }
        return 0;
    }
    if (!strcmp(type, "WordPiece") || !strcmp(type, "WordLevel")) {
        int wp = type[4] == 'P';
        m->type = wp ? MD_WORDPIECE : MD_WORDLEVEL;
        long long mc;
        if (jstr(j, o, "unk_token", wp ? "[UNK]" : "<unk>", &m->unk_name, path) ||
            (wp && jstr(j, o, "continuing_subword_prefix", "##", &m->prefix, path)) ||
            (wp && jint(j, o, "max_input_chars_per_word", 100, 0, 1LL << 40, &mc, path)))
            return -1;
        if (wp) m->max_chars = mc > 1 << 30 ? 1 << 30 : (int)mc;
        m->prefix_len = m->prefix ? strlen(m->prefix) : 0;
        return jvocab(j, o, m, path);
    }
    return not_impl(j, path, "model", type);
}

/* ---- post-processors ---- */
static int jtokpair(J *j, const cJSON *o, const char *k, int32_t *id, const char *path) {
    const cJSON *x = jf(o, k);
    if (!cJSON_IsArray(x) || cJSON_GetArraySize(x) != 2 || !cJSON_IsString(x->child) || !cJSON_IsNumber(x->child->next))
        return jerr(j, path, "'%s' must be [token, id]", k);
    double v = x->child->next->valuedouble;
    if (!tkz_whole(v) || v < 0 || v >= TKZ_MAX_ID) return jerr(j, path, "'%s' has a bad id", k);
    *id = (int32_t)v;
    return 0;
}

/* A template: a list of {"SpecialToken": {"id", "type_id"}} / {"Sequence": {"id": "A"|"B", "type_id"}},
 * or the string form "[CLS]:0 $A:0 [SEP]:0" (a string or a list of strings). */
static int jtemplate(J *j, const cJSON *o, const char *k, const cJSON *specials, tkz_piece **out, int *n_out,
                     const char *path) {
    const cJSON *l = jf(o, k);
    char *owned = NULL;
    cJSON *tmp = NULL;
    if (cJSON_IsString(l)) { /* split on spaces into a list of strings */
        tmp = cJSON_CreateArray();
        owned = strdup(l->valuestring);
        if (!tmp || !owned) return jerr(j, path, "out of memory");
        for (char *save, *w = strtok_r(owned, " ", &save); w; w = strtok_r(NULL, " ", &save))
            cJSON_AddItemToArray(tmp, cJSON_CreateString(w));
        l = tmp;
    }
    int rc = -1;
    if (!cJSON_IsArray(l)) {
        jerr(j, path, "'%s' must be a list", k);
        goto done;
    }
    int n = cJSON_GetArraySize(l);
    *out = calloc((size_t)n + 1, sizeof **out);
    if (!*out) {
        jerr(j, path, "out of memory");
        goto done;
    }
    for (int i = 0; i < n; i++) {
        const cJSON *x = cJSON_GetArrayItem(l, i), *st = jf(x, "SpecialToken"), *sq = jf(x, "Sequence");
        tkz_piece *p = &(*out)[i];
        *n_out = i + 1;
        char name[256] = "";
        long long type_id = 0;
        char q[300];
        snprintf(q, sizeof q, "%s.%s[%d]", path, k, i);
        if (cJSON_IsString(x)) { /* "$A", "$B:1", "$1", "[CLS]:0" */
            const char *s = x->valuestring, *colon = strrchr(s, ':');
            size_t nl = colon ? (size_t)(colon - s) : strlen(s);
            if (colon) {
                char *end;
                type_id = strtoll(colon + 1, &end, 10);
                if (*end || end == colon + 1 || type_id < 0 || type_id > 1 << 20) {
                    jerr(j, q, "bad type id in '%.80s'", s);
                    goto done;
                }
            }
            if (nl >= sizeof name) {
                jerr(j, q, "piece too long");
                goto done;
            }
            memcpy(name, s, nl);
            name[nl] = 0;
            if (name[0] == '$') {
                p->special = 0;
                if (!strcmp(name, "$") || !strcmp(name, "$A")) p->seq = 0;
                else if (!strcmp(name, "$B")) p->seq = 1;
                else if (name[1] >= '0' && name[1] <= '9') p->seq = 0, type_id = strtoll(name + 1, NULL, 10);
                else {
                    jerr(j, q, "bad sequence '%s'", name);
                    goto done;
                }
                p->type_id = (int)type_id;
                continue;
            }
            p->special = 1;
        } else if (cJSON_IsObject(sq)) {
            const cJSON *id = jf(sq, "id");
            if (!cJSON_IsString(id) || (strcmp(id->valuestring, "A") && strcmp(id->valuestring, "B"))) {
                jerr(j, q, "Sequence id must be \"A\" or \"B\"");
                goto done;
            }
            if (jint(j, sq, "type_id", 0, 0, 1 << 20, &type_id, q)) goto done;
            p->seq = id->valuestring[0] == 'B';
            p->type_id = (int)type_id;
            continue;
        } else if (cJSON_IsObject(st)) {
            const cJSON *id = jf(st, "id");
            if (!cJSON_IsString(id) || strlen(id->valuestring) >= sizeof name) {
                jerr(j, q, "SpecialToken id must be a string");
                goto done;
            }
            snprintf(name, sizeof name, "%s", id->valuestring);
            if (jint(j, st, "type_id", 0, 0, 1 << 20, &type_id, q)) goto done;
            p->special = 1;
        } else {
            jerr(j, q, "must be a SpecialToken or a Sequence");
            goto done;
        }
        p->type_id = (int)type_id;
        const cJSON *sp = jf(specials, name), *ids = jf(sp, "ids");
        if (!cJSON_IsArray(ids)) {
            jerr(j, q, "Missing SpecialToken(s) with id(s) `%s`", name);
            goto done;
        }
        p->n_ids = cJSON_GetArraySize(ids);
        if (!(p->ids = calloc((size_t)p->n_ids + 1, sizeof *p->ids))) {
            jerr(j, q, "out of memory");
            goto done;
        }
        for (int m = 0; m < p->n_ids; m++) {
            const cJSON *v = cJSON_GetArrayItem(ids, m);
            if (!cJSON_IsNumber(v) || !tkz_whole(v->valuedouble) || v->valuedouble < 0 ||
                v->valuedouble >= TKZ_MAX_ID) {
                jerr(j, q, "special_tokens['%s'].ids[%d] must be an id", name, m);
                goto done;
            }
            p->ids[m] = (int32_t)v->valuedouble;
        }
    }
    rc = 0;
done:
    free(owned);
    cJSON_Delete(tmp);
    return rc;
}

static int jpost(J *j, const cJSON *o, tkz_post *p, const char *path) {
    const char *type = jtype(j, o, path);
    if (!type) return -1;
    memset(p, 0, sizeof *p);
    if (!strcmp(type, "TemplateProcessing")) {
        p->type = PP_TEMPLATE;
        const cJSON *sp = jf(o, "special_tokens");
        if (!jnull(sp) && !cJSON_IsObject(sp)) return jerr(j, path, "'special_tokens' must be an object");
        if (jtemplate(j, o, "single", sp, &p->single, &p->n_single, path) || jtemplate(j, o, "pair", sp, &p->pair, &p->n_pair, path))
            return -1;
        int a = 0, b = 0;
        for (int i = 0; i < p->n_pair; i++)
            if (!p->pair[i].special) *(p->pair[i].seq ? &b : &a) = 1;
        if (!a || !b) return jerr(j, path, "Template for `pair` must use both sequences");
    } else if (!strcmp(type, "BertProcessing") || !strcmp(type, "RobertaProcessing")) {
        p->type = type[0] == 'B' ? PP_BERT : PP_ROBERTA;
        if (jtokpair(j, o, "sep", &p->sep, path) || jtokpair(j, o, "cls", &p->cls, path)) return -1;
    } else if (!strcmp(type, "ByteLevel")) {
        p->type = PP_BYTELEVEL;
    } else if (!strcmp(type, "Sequence")) {
        p->type = PP_SEQ;
        const cJSON *l = jf(o, "processors");
        if (!cJSON_IsArray(l)) return jerr(j, path, "'processors' must be a list");
        int n = cJSON_GetArraySize(l);
        if (!(p->sub = calloc((size_t)n + 1, sizeof *p->sub))) return jerr(j, path, "out of memory");
        for (int i = 0; i < n; i++) {
            char q[300];
            snprintf(q, sizeof q, "%s.processors[%d]", path, i);
            p->n_sub = i + 1;
            if (jpost(j, cJSON_GetArrayItem(l, i), &p->sub[i], q)) return -1;
        }
    } else {
        return not_impl(j, path, "post-processor", type);
    }
    return 0;
}

/* ---- decoders ---- */
static int jdec(J *j, const cJSON *o, tkz_dec *d, const char *path) {
    const char *type = jtype(j, o, path);
    if (!type) return -1;
    memset(d, 0, sizeof *d);
    long long a, b;
    if (!strcmp(type, "ByteLevel")) d->type = DC_BYTELEVEL;
    else if (!strcmp(type, "WordPiece")) {
        d->type = DC_WORDPIECE;
        if (jstr(j, o, "prefix", "##", &d->s1, path) || (d->cleanup = jbool(j, o, "cleanup", 1, path)) < 0) return -1;
    } else if (!strcmp(type, "Metaspace")) {
        d->type = DC_METASPACE;
        if (jchar(j, o, "replacement", 0, &d->cp, path) || (d->prepend_scheme = jscheme(j, o, path)) < 0) return -1;
    } else if (!strcmp(type, "BPEDecoder")) {
        d->type = DC_BPE;
        if (jstr(j, o, "suffix", "</w>", &d->s1, path)) return -1;
    } else if (!strcmp(type, "ByteFallback")) d->type = DC_BYTEFALLBACK;
    else if (!strcmp(type, "Fuse")) d->type = DC_FUSE;
    else if (!strcmp(type, "Strip")) {
        d->type = DC_STRIP;
        if (jchar(j, o, "content", 0, &d->cp, path) || jint(j, o, "start", 0, 0, 1 << 20, &a, path) ||
            jint(j, o, "stop", 0, 0, 1 << 20, &b, path))
            return -1;
        d->start = (int)a;
        d->stop = (int)b;
    } else if (!strcmp(type, "Replace")) {
        d->type = DC_REPLACE;
        if (jstr(j, o, "content", NULL, &d->s1, path) || jpattern(j, o, &d->re, path)) return -1;
        if (!d->s1) return jerr(j, path, "'content' is missing");
    } else if (!strcmp(type, "CTC")) {
        d->type = DC_CTC;
        if (jstr(j, o, "pad_token", "<pad>", &d->s1, path) || jstr(j, o, "word_delimiter_token", "|", &d->s2, path) ||
            (d->cleanup = jbool(j, o, "cleanup", 1, path)) < 0)
            return -1;
    } else if (!strcmp(type, "Sequence")) {
        d->type = DC_SEQ;
        const cJSON *l = jf(o, "decoders");
        if (!cJSON_IsArray(l)) return jerr(j, path, "'decoders' must be a list");
        int n = cJSON_GetArraySize(l);
        if (!(d->sub = calloc((size_t)n + 1, sizeof *d->sub))) return jerr(j, path, "out of memory");
        for (int i = 0; i < n; i++) {
            char q[300];
            snprintf(q, sizeof q, "%s.decoders[%d]", path, i);
            d->n_sub = i + 1;
            if (jdec(j, cJSON_GetArrayItem(l, i), &d->sub[i], q)) return -1;
        }
    } else {
        return not_impl(j, path, "decoder", type);
    }
    return 0;
}

/* ---- truncation, padding, added tokens ---- */
static int jenum(J *j, const cJSON *o, const char *k, const char *a, const char *b, const char *c, int def, const char *path) {
    const cJSON *x = jf(o, k);
    if (jnull(x)) return def;
    if (cJSON_IsString(x)) {
        if (!strcmp(x->valuestring, a)) return 0;
        if (!strcmp(x->valuestring, b)) return 1;
        if (c && !strcmp(x->valuestring, c)) return 2;
    }
    return jerr(j, path, "'%s' must be %s, %s%s%s", k, a, b, c ? " or " : "", c ? c : "");
}

static int jtrunc_pad(J *j, const cJSON *root, tkz *t) {
    const cJSON *tr = jf(root, "truncation"), *pd = jf(root, "padding");
    long long v;
    if (!jnull(tr)) {
        if (!cJSON_IsObject(tr)) return jerr(j, "truncation", "must be an object or null");
        t->trunc.on = 1;
        if (jint(j, tr, "max_length", -1, 0, 1LL << 40, &v, "truncation")) return -1;
        if (v < 0) return jerr(j, "truncation", "'max_length' is missing");
        t->trunc.max_length = (size_t)v;
        if (jint(j, tr, "stride", 0, 0, 1LL << 40, &v, "truncation")) return -1;
        t->trunc.stride = (size_t)v;
        if ((t->trunc.strategy = jenum(j, tr, "strategy", "LongestFirst", "OnlyFirst", "OnlySecond", 0, "truncation")) < 0 ||
            (t->trunc.left = jenum(j, tr, "direction", "Right", "Left", NULL, 0, "truncation")) < 0)
            return -1;
    }
    if (!jnull(pd)) {
        if (!cJSON_IsObject(pd)) return jerr(j, "padding", "must be an object or null");
        t->pad.on = 1;
        const cJSON *st = jf(pd, "strategy"), *fx = jf(st, "Fixed");
        if (cJSON_IsObject(st) && cJSON_IsNumber(fx) && fx->valuedouble >= 1 && fx->valuedouble <= TKZ_MAX_PAD &&
            tkz_whole(fx->valuedouble))
            t->pad.fixed = (size_t)fx->valuedouble;
        else if (!(cJSON_IsString(st) && !strcmp(st->valuestring, "BatchLongest")))
            return jerr(j, "padding", "'strategy' must be \"BatchLongest\" or {\"Fixed\": n} (1 <= n <= %d)", TKZ_MAX_PAD);
        if ((t->pad.left = jenum(j, pd, "direction", "Right", "Left", NULL, 0, "padding")) < 0 ||
            jint(j, pd, "pad_to_multiple_of", 0, 0, TKZ_MAX_PAD, &v, "padding"))
            return -1;
        t->pad.multiple = (size_t)v;
        if (jint(j, pd, "pad_id", 0, 0, TKZ_MAX_ID - 1, &v, "padding")) return -1;
        t->pad.pad_id = (int32_t)v;
        if (jint(j, pd, "pad_type_id", 0, 0, 1 << 20, &v, "padding")) return -1;
        t->pad.pad_type_id = (int32_t)v;
    }
    return 0;
}

static int jadded(J *j, const cJSON *root, tkz *t) {
    const cJSON *l = jf(root, "added_tokens");
    if (jnull(l)) return tkz_add_tokens(t, NULL, 0, j->e);
    if (!cJSON_IsArray(l)) return jerr(j, "added_tokens", "must be a list");
    int n = cJSON_GetArraySize(l), rc = -1;
    tkz_added *v = calloc((size_t)n + 1, sizeof *v);
    if (!v) return jerr(j, "added_tokens", "out of memory");
    for (int i = 0; i < n; i++) {
        const cJSON *x = cJSON_GetArrayItem(l, i);
        char q[64];
        snprintf(q, sizeof q, "added_tokens[%d]", i);
        int sp, sw, ls, rs, nz;
        if (!cJSON_IsObject(x)) {
            jerr(j, q, "must be an object");
            goto done;
        }
        if (jstr(j, x, "content", NULL, &v[i].content, q)) goto done;
        if (!v[i].content) {
            jerr(j, q, "'content' is missing");
            goto done;
        }
        if ((sp = jbool(j, x, "special", 0, q)) < 0 || (sw = jbool(j, x, "single_word", 0, q)) < 0 ||
            (ls = jbool(j, x, "lstrip", 0, q)) < 0 || (rs = jbool(j, x, "rstrip", 0, q)) < 0 ||
            (nz = jbool(j, x, "normalized", !sp, q)) < 0)
            goto done;
        v[i].len = strlen(v[i].content);
        v[i].special = (uint8_t)sp, v[i].single_word = (uint8_t)sw, v[i].lstrip = (uint8_t)ls, v[i].rstrip = (uint8_t)rs;
        v[i].normalized = (uint8_t)nz;
    }
    rc = tkz_add_tokens(t, v, n, j->e);
done:
    for (int i = 0; i < n; i++) free(v[i].content);
    free(v);
    return rc;
}

/* The post-processor's special-token ids against the vocabulary (the model's
 * and the added tokens'): an id past it would be handed to the model's
 * embedding as is (HF does not check them either). */
static int jpost_ids(J *j, const tkz_post *p, int vocab, const char *path) {
    for (int k = 0; k < 2; k++) {
        const tkz_piece *pc = k ? p->pair : p->single;
        int n = k ? p->n_pair : p->n_single;
        for (int i = 0; i < n; i++)
            for (int m = 0; pc[i].special && m < pc[i].n_ids; m++)
                if (pc[i].ids[m] >= vocab)
                    return jerr(j, path, "%s[%d]: special token id %d (special_tokens ids) is outside the vocabulary (size %d)",
                                k ? "pair" : "single", i, pc[i].ids[m], vocab);
    }
    if (p->type == PP_BERT || p->type == PP_ROBERTA) {
        if (p->sep >= vocab) return jerr(j, path, "'sep' id %d is outside the vocabulary (size %d)", p->sep, vocab);
        if (p->cls >= vocab) return jerr(j, path, "'cls' id %d is outside the vocabulary (size %d)", p->cls, vocab);
    }
    for (int i = 0; i < p->n_sub; i++) {
        char q[300];
        snprintf(q, sizeof q, "%s.processors[%d]", path, i);
        if (jpost_ids(j, &p->sub[i], vocab, q)) return -1;
    }
    return 0;
}

int tkz_load_json(tkz *t, const char *json, size_t len, struct lerr *e) {
    J j = {t->name, e};
    cJSON *root = cJSON_ParseWithLength(json, len);
    if (!root) return lerr_set(e, "%s: not valid JSON (near byte %zu)", t->name, (size_t)(cJSON_GetErrorPtr() ? cJSON_GetErrorPtr() - json : 0));
    int rc = -1;
    const cJSON *ver = jf(root, "version");
    if (!cJSON_IsObject(root)) {
        jerr(&j, "(top)", "must be an object");
        goto done;
    }
    if (!jnull(ver) && !(cJSON_IsString(ver) && !strcmp(ver->valuestring, "1.0"))) {
        jerr(&j, "version", "Unknown tokenizer version (1.0 expected)");
        goto done;
    }
    const cJSON *x;
    if (jnull(x = jf(root, "model"))) {
        jerr(&j, "model", "is missing");
        goto done;
    }
    if (jmodel(&j, x, &t->model)) goto done;
    if (!jnull(x = jf(root, "normalizer"))) {
        if (!(t->norm = calloc(1, sizeof *t->norm))) {
            lerr_set(e, "%s: out of memory", t->name);
            goto done;
        }
        if (jnorm(&j, x, t->norm, "normalizer")) goto done;
    }
    if (!jnull(x = jf(root, "pre_tokenizer"))) {
        if (!(t->pre = calloc(1, sizeof *t->pre))) {
            lerr_set(e, "%s: out of memory", t->name);
            goto done;
        }
        if (jpre(&j, x, t->pre, "pre_tokenizer")) goto done;
    }
    if (!jnull(x = jf(root, "post_processor"))) {
        if (!(t->post = calloc(1, sizeof *t->post))) {
            lerr_set(e, "%s: out of memory", t->name);
            goto done;
        }
        if (jpost(&j, x, t->post, "post_processor")) goto done;
    }
    if (!jnull(x = jf(root, "decoder"))) {
        if (!(t->dec = calloc(1, sizeof *t->dec))) {
            lerr_set(e, "%s: out of memory", t->name);
            goto done;
        }
        if (jdec(&j, x, t->dec, "decoder")) goto done;
    }
    if (jtrunc_pad(&j, root, t) || jadded(&j, root, t)) goto done;
    if (t->post && jpost_ids(&j, t->post, tkz_vocab_size(t), "post_processor")) goto done;
    if (t->pad.on && t->pad.pad_id >= tkz_vocab_size(t)) {
        jerr(&j, "padding", "'pad_id' %d is outside the vocabulary (size %d)", t->pad.pad_id, tkz_vocab_size(t));
        goto done;
    }
    rc = 0;
done:
    cJSON_Delete(root);
    return rc;
}
