/*
 * Checkpoints, resume and signals of a distributed run (see include/ps.h and
 * include/checkpoint.h).
 *
 * Rank 0 decides, during a step, whether a checkpoint follows it (every N
 * steps, every M seconds, at the end, on a signal) and whether the run stops
 * after it (a signal); the shards learn it with the step's ShardStat exchange,
 * so they all act alike. A checkpoint gathers each shard's values, AdamW m and v
 * and step count at rank 0 (ShardState messages), which writes the HDF5 file;
 * the workers meanwhile go on with the next step. A resume is the reverse: rank 0
 * reads the file, checks it against the config and the base model, broadcasts the
 * values and hands each shard its optimizer state; every rank starts at the
 * checkpoint's step. All randomness is a pure function of seeds and the global
 * sample index, so at the same rank count a resumed run is bitwise the run that
 * was never interrupted.
 */
#include <math.h>
#include <signal.h>
#include <time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "checkpoint.h"
#include "ps.h"
#include "wire.h"

/* ---------------------------------------------------------------- signals */

static volatile sig_atomic_t signals_seen;
static volatile long long first_signal_ms; /* written once, by the first signal's handler */
static long long repeat_window_ms = 1000;
static char ack[256];
static size_t ack_len;

/* A launcher may deliver one request twice (mpirun forwards it, and a batch
 * system may signal the whole process group): repeats within the window count
 * as the same request. The first is acknowledged at once (rank 0). */
static void on_signal(int sig) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts); /* async-signal-safe */
    long long ms = (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    if (!signals_seen) {
        signals_seen = 1;
        first_signal_ms = ms;
        if (ack_len) {
            ssize_t w = write(STDERR_FILENO, ack, ack_len);
            (void)w;
        }
        return;
    }
    if (ms - first_signal_ms >= repeat_window_ms) {
        static const char msg[] = "lora_worker: second signal: exiting now without a checkpoint\n";
        ssize_t w = write(STDERR_FILENO, msg, sizeof msg - 1);
        (void)w;
        _exit(128 + sig);
    }
}

void ps_signals_install(int rank, long repeat_ms) {
    repeat_window_ms = repeat_ms;
    ack_len = 0;
    if (rank == 0)
        ack_len = (size_t)snprintf(ack, sizeof ack, "lora_worker: signal received: stopping after this step (with a "
                                   "checkpoint when [checkpoint] dir is set); a second signal exits at once\n");
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGUSR1, &sa, NULL);
}

int ps_signal_seen(void) { return signals_seen > 0; }

/* ---------------------------------------------------------------- metrics */

void metrics_add(ps_state *r, int64_t step, double loss, double lr, double tps) {
    if (r->n_metrics == r->cap_metrics) {
        r->cap_metrics = r->cap_metrics ? 2 * r->cap_metrics : 256;
        r->m_step = realloc(r->m_step, sizeof(int64_t) * (size_t)r->cap_metrics);
        r->m_loss = realloc(r->m_loss, sizeof(double) * (size_t)r->cap_metrics);
        r->m_lr = realloc(r->m_lr, sizeof(double) * (size_t)r->cap_metrics);
        r->m_tps = realloc(r->m_tps, sizeof(double) * (size_t)r->cap_metrics);
        if (!r->m_step || !r->m_loss || !r->m_lr || !r->m_tps) ps_abort(&r->p, 1, "out of memory for metrics");
    }
    r->m_step[r->n_metrics] = step;
    r->m_loss[r->n_metrics] = loss;
    r->m_lr[r->n_metrics] = lr;
    r->m_tps[r->n_metrics] = tps;
    r->n_metrics++;
}

void evals_add(ps_state *r, int64_t step, int64_t epoch, const train_metrics *m) {
    if (r->n_evals == r->cap_evals) {
        r->cap_evals = r->cap_evals ? 2 * r->cap_evals : 16;
        r->ev_step = realloc(r->ev_step, sizeof(int64_t) * (size_t)r->cap_evals);
        r->ev_epoch = realloc(r->ev_epoch, sizeof(int64_t) * (size_t)r->cap_evals);
        r->ev_values = realloc(r->ev_values, sizeof(double) * CKPT_EVAL_N * (size_t)r->cap_evals);
        if (!r->ev_step || !r->ev_epoch || !r->ev_values) ps_abort(&r->p, 1, "out of memory for evaluations");
    }
    /* in ckpt_eval_names' order; NaN for what this task does not measure */
    int64_t n = r->n_evals;
    double *row = r->ev_values + n * CKPT_EVAL_N;
    model_task task = r->t.model.task;
    row[0] = m->loss;
    row[1] = task == TASK_CAUSAL_LM ? m->perplexity : NAN;
    row[2] = task == TASK_SEQ_CLS ? m->accuracy : NAN;
    row[3] = task == TASK_SEQ_CLS ? m->macro_f1 : NAN;
    row[4] = task == TASK_TOKEN_CLS ? m->precision : NAN;
    row[5] = task == TASK_TOKEN_CLS ? m->recall : NAN;
    row[6] = task == TASK_TOKEN_CLS ? m->f1 : NAN;
    row[7] = task == TASK_TOKEN_CLS ? m->token_accuracy : NAN;
    r->ev_step[n] = step;
    r->ev_epoch[n] = epoch;
    r->n_evals++;
}

static void row_metrics(const double *row, train_metrics *m) {
    memset(m, 0, sizeof *m);
    m->loss = row[0], m->perplexity = row[1], m->accuracy = row[2], m->macro_f1 = row[3];
    m->precision = row[4], m->recall = row[5], m->f1 = row[6], m->token_accuracy = row[7];
}

/* ---------------------------------------------------------------- decide */

void ckpt_decide(ps_state *r, int64_t step, int *stop, int *ckpt) {
    const run_config *c = &r->t.cfg;
    int last = step + 1 >= r->steps;
    *stop = (ps_signal_seen() || r->peer_stop) && !last;
    *ckpt = c->ckpt_dir[0] &&
            (last || *stop || (c->ckpt_every_steps > 0 && (step + 1) % c->ckpt_every_steps == 0) ||
             (c->save_epochs && train_epoch_ending(&r->t, step)) ||
             (c->ckpt_every_seconds > 0 && now_s() - r->last_ckpt_time >= c->ckpt_every_seconds));
}

/* ---------------------------------------------------------------- write */

static uint8_t *pack_state(ps_state *r, int shard, uint64_t lo, uint64_t n, const float *w, const float *m,
                           const float *v, size_t *len) {
    Lora__ShardState s = LORA__SHARD_STATE__INIT;
    s.wire_version = WIRE_VERSION;
    s.shard = (uint32_t)shard;
    s.offset = lo;
    s.count = n;
    s.values.data = (uint8_t *)w;
    s.values.len = n * 4;
    s.exp_avg.data = (uint8_t *)m;
    s.exp_avg.len = n * 4;
    s.exp_avg_sq.data = (uint8_t *)v;
    s.exp_avg_sq.len = n * 4;
    s.opt_steps = (uint64_t)r->opt_t;
    s.version = r->version;
    s.checksum = wire_state_checksum(&s);
    return wire_pack(&s.base, len);
}

void ckpt_collect_and_write(ps_state *r, int64_t steps_done) {
    ps_ctx *p = &r->p;
    uint64_t lo = p->lo[p->rank], n = p->hi[p->rank] - lo;
    if (p->rank != 0) {
        size_t len;
        uint8_t *buf = pack_state(r, p->rank, lo, n, r->t.ad.w + lo, r->m, r->v, &len);
        MPI_Request req;
        ps_isend(p, buf, len, 0, TAG_STATE, &req);
        PS_MPI(MPI_Wait(&req, MPI_STATUS_IGNORE));
        free(buf);
        return;
    }
    size_t N = p->n_params;
    float *W = xalloc_aligned(N * 4), *M = xalloc_aligned(N * 4), *V = xalloc_aligned(N * 4);
    memcpy(W + lo, r->t.ad.w + lo, n * 4);
    memcpy(M + lo, r->m, n * 4);
    memcpy(V + lo, r->v, n * 4);
    int64_t opt_t = r->opt_t;
    for (int s = 1; s < p->S; s++) {
        size_t len;
        uint8_t *buf = ps_recv(p, s, TAG_STATE, &len, NULL, NULL);
        struct lerr e;
        Lora__ShardState *m = wire_unpack_shard_state(buf, len, s, p->n_params, &e);
        free(buf);
        if (!m) ps_abort(p, 4, "%s", e.msg);
        memcpy(W + m->offset, m->values.data, m->count * 4);
        memcpy(M + m->offset, m->exp_avg.data, m->count * 4);
        memcpy(V + m->offset, m->exp_avg_sq.data, m->count * 4);
        if ((int64_t)m->opt_steps != opt_t)
            ps_abort(p, 4, "shard %d applied %llu AdamW steps, shard 0 %lld", s, (unsigned long long)m->opt_steps,
                     (long long)opt_t);
        lora__shard_state__free_unpacked(m, NULL);
    }
    const run_config *c = &r->t.cfg;
    char text[16384];
    rc_to_text(c, text, sizeof text);
    int64_t cursor = steps_done * r->G;
    ckpt_state st = {0};
    st.step = steps_done;
    st.epoch = r->t.order.n_win > 0 ? cursor / r->t.order.n_win : 0;
    st.tokens_seen = r->tokens_seen;
    st.ranks = p->size;
    st.data_cursor = cursor;
    st.opt_steps = opt_t;
    st.lr = c->lr;
    st.beta1 = c->beta1;
    st.beta2 = c->beta2;
    st.eps = c->eps;
    st.weight_decay = c->weight_decay;
    st.min_lr_ratio = c->min_lr_ratio;
    st.schedule_kind = c->schedule;
    st.warmup_steps = c->warmup_steps;
    st.total_steps = r->steps;
    st.init_seed = c->init_seed;
    st.data_seed = c->data_seed;
    st.dropout_seed = c->init_seed ^ 0x5eedull;
    st.seq_len = r->t.T;
    st.sampling = c->sampling;
    st.train_tokens = train_data_size(&r->t);
    st.config_text = text;
    st.model_path = c->model_path;
    st.model_size = r->model_size;
    st.model_hash = r->model_hash;
    st.n_metrics = r->n_metrics;
    st.m_step = r->m_step;
    st.m_loss = r->m_loss;
    st.m_lr = r->m_lr;
    st.m_tokens_per_s = r->m_tps;
    st.n_evals = r->n_evals;
    st.ev_step = r->ev_step;
    st.ev_epoch = r->ev_epoch;
    st.ev_values = r->ev_values;
    lora_adapter view = r->t.ad; /* the layout, with the gathered values */
    view.w = W;
    char path[4200];
    struct lerr e = {{0}};
    double t0 = now_s();
    if (ckpt_write(c->ckpt_dir, &st, &view, M, V, c->ckpt_keep, path, sizeof path, &e))
        fprintf(stderr, "lora_worker: warning: checkpoint after step %lld failed: %s (earlier checkpoints are kept)\n",
                (long long)steps_done, e.msg);
    else
        printf("checkpoint: %s (step %lld, %.0f ms)\n", path, (long long)steps_done, (now_s() - t0) * 1e3);
    fflush(stdout);
    r->last_ckpt_time = now_s();
    free(W);
    free(M);
    free(V);
}

/* ---------------------------------------------------------------- resume */

/* Lines of b that differ from a (INI text of two configs), reported. */
static void report_config_changes(const char *old_text, const char *new_text) {
    char section[64] = "";
    const char *q = new_text;
    while (*q) {
        const char *eol = strchr(q, '\n');
        size_t n = eol ? (size_t)(eol - q) : strlen(q);
        char line[1100];
        snprintf(line, sizeof line, "%.*s", (int)(n < sizeof line - 1 ? n : sizeof line - 1), q);
        if (line[0] == '[') snprintf(section, sizeof section, "%s", line);
        else if (strchr(line, '=')) {
            /* the same key in the old text, within the same section */
            const char *sec = strstr(old_text, section);
            char key[256];
            snprintf(key, sizeof key, "%.*s", (int)(strchr(line, '=') - line), line);
            const char *found = NULL;
            for (const char *o = sec; o && *o;) {
                const char *oe = strchr(o, '\n');
                size_t on = oe ? (size_t)(oe - o) : strlen(o);
                if (o != sec && o[0] == '[') break;
                if (on >= strlen(key) && !strncmp(o, key, strlen(key))) {
                    found = o;
                    if (on != n || strncmp(o, line, n)) {
                        const char *nv = line + strlen(key) + 1;
                        while (*nv == ' ') nv++;
                        printf("resume: config changed since the checkpoint: %s %.*s -> %s\n", section, (int)on, o, nv);
                    }
                    break;
                }
                o = oe ? oe + 1 : NULL;
            }
            if (!found) printf("resume: config key new since the checkpoint: %s %s\n", section, line);
        }
        q = eol ? eol + 1 : q + n;
    }
}

static int64_t step_of(const char *path) {
    const char *b = strrchr(path, '/');
    long long k = 0;
    if (sscanf(b ? b + 1 : path, "step_%lld.h5", &k) != 1) return 0;
    return (int64_t)k;
}

/* a and b (n_a, n_b names) hold the same names, in any order. */
static int same_names(char (*a)[LORA_NAME], int n_a, char (*b)[LORA_NAME], int n_b) {
    if (n_a != n_b) return 0;
    for (int i = 0; i < n_a; i++) {
        int j = 0;
        while (j < n_b && strcmp(a[i], b[j])) j++;
        if (j == n_b) return 0;
    }
    return 1;
}

/* "classifier,pooler" or "(none)" */
static void join_names(char *out, size_t cap, char (*names)[LORA_NAME], int n) {
    snprintf(out, cap, "%s", n ? "" : "(none)");
    for (int i = 0; i < n; i++) snprintf(out + strlen(out), cap - strlen(out), "%s%s", i ? "," : "", names[i]);
}

/* The checkpoint at path against this run: same base model, r, alpha,
 * adapted modules and whole tensors (modules_to_save) (errors start with
 * "resume: " and name the config key or the names); changed settings are
 * reported. */
static int resume_check(ps_state *r, const char *path, struct lerr *e) {
    ps_ctx *p = &r->p;
    const run_config *c = &r->t.cfg;
    ckpt_state st;
    lora_spec spec;
    if (ckpt_read_meta(path, &st, &spec, e)) return -1;
    int rc = -1;
    if (st.model_size != r->model_size || st.model_hash != r->model_hash) {
        lerr_set(e, "resume: [model] path: %s (%llu bytes, hash %016llx) is not the base model %s was trained on (%s, "
                 "%llu bytes, hash %016llx)", c->model_path, (unsigned long long)r->model_size,
                 (unsigned long long)r->model_hash, path, st.model_path, (unsigned long long)st.model_size,
                 (unsigned long long)st.model_hash);
        goto out;
    }
    if (st.step > 0 && st.data_cursor != st.step * r->G) {
        lerr_set(e, "resume: [data] batch_size x grad_accum make %lld sequences per step, but %s is at global sample "
                 "%lld after %lld steps (%lld per step): the data order would not continue; resume with the batch "
                 "settings it was written with", (long long)r->G, path, (long long)st.data_cursor, (long long)st.step,
                 (long long)(st.data_cursor / st.step));
        goto out;
    }
    int64_t named = step_of(path);
    if (named > 0 && named != st.step) {
        lerr_set(e, "resume: %s is named after step %lld but holds step %lld (renamed or hand-edited)", path,
                 (long long)named, (long long)st.step);
        goto out;
    }
    if (spec.r != r->t.ad.spec.r) {
        lerr_set(e, "resume: [lora] r = %d, but %s was trained with r = %d", r->t.ad.spec.r, path, spec.r);
        goto out;
    }
    if (spec.alpha != r->t.ad.spec.alpha || spec.rslora != r->t.ad.spec.rslora) {
        lerr_set(e, "resume: [lora] alpha = %g%s, but %s was trained with alpha = %g%s", r->t.ad.spec.alpha,
                 r->t.ad.spec.rslora ? " (rsLoRA)" : "", path, spec.alpha, spec.rslora ? " (rsLoRA)" : "");
        goto out;
    }
    if (!same_names(spec.save, spec.n_save, r->t.ad.spec.save, r->t.ad.spec.n_save)) {
        char mine[LORA_MAX_SAVE * LORA_NAME], theirs[LORA_MAX_SAVE * LORA_NAME];
        join_names(mine, sizeof mine, r->t.ad.spec.save, r->t.ad.spec.n_save);
        join_names(theirs, sizeof theirs, spec.save, spec.n_save);
        lerr_set(e, "resume: this run trains modules_to_save = %s as whole tensors, but %s was trained with "
                 "modules_to_save = %s", mine, path, theirs);
        goto out;
    }
    lora_adapter other;
    struct lerr e2;
    int same = model_adapter_create(&other, &spec, &r->t.model, 0, &e2) == 0;
    int n_other = same ? other.n_mod : 0;
    same = same && other.n_mod == r->t.ad.n_mod;
    for (int i = 0; same && i < other.n_mod; i++) same = other.mod[i].site == r->t.ad.mod[i].site;
    if (n_other) lora_free(&other);
    if (!same) {
        char mine[512] = "";
        for (int t = 0; t < c->n_targets; t++)
            snprintf(mine + strlen(mine), sizeof mine - strlen(mine), "%s%s", t ? "," : "", c->targets[t]);
        lerr_set(e, "resume: [lora] targets = %s adapt %d modules, but %s adapts %d other ones", mine, r->t.ad.n_mod,
                 path, n_other);
        goto out;
    }
    char text[16384];
    rc_to_text(c, text, sizeof text);
    report_config_changes(st.config_text ? st.config_text : "", text);
    if (st.ranks != p->size)
        printf("resume: %s was written by a run of %d ranks, this one has %d: it continues from global sample %lld, "
               "but not bitwise as an uninterrupted run would\n", path, st.ranks, p->size, (long long)st.data_cursor);
    rc = 0;
out:
    ckpt_state_free(&st);
    return rc;
}

void ckpt_resume(ps_state *r, const char *mode) {
    ps_ctx *p = &r->p;
    const run_config *c = &r->t.cfg;
    size_t N = p->n_params;
    float *M = NULL, *V = NULL;
    int64_t hdr[3] = {0, 0, 0}; /* start step, AdamW steps, tokens seen */
    if (p->rank == 0 && mode) {
        char path[4200] = "", warn[4096] = "";
        struct lerr e = {{0}};
        int is_auto = !strcmp(mode, "auto");
        int64_t below = INT64_MAX;
        if (is_auto && !c->ckpt_dir[0]) ps_abort(p, 1, "--resume auto needs [checkpoint] dir");
        M = xalloc_aligned(N * 4);
        V = xalloc_aligned(N * 4);
        for (;;) {
            if (is_auto) {
                int found = ckpt_find_latest_below(c->ckpt_dir, below, path, sizeof path, warn, sizeof warn, &e);
                if (warn[0]) fprintf(stderr, "lora_worker: %s", warn);
                if (found < 0) ps_abort(p, 1, "resume: %s", e.msg);
                if (!found) {
                    printf("resume: no valid checkpoint in %s: starting fresh\n", c->ckpt_dir);
                    break;
                }
            } else {
                snprintf(path, sizeof path, "%s", mode);
            }
            ckpt_state st;
            if (resume_check(r, path, &e) || ckpt_read(path, &st, &r->t.ad, M, V, &e)) {
                /* a file that validated but whose data does not read (a checksum) falls back to the one before */
                if (!is_auto || strstr(e.msg, "resume: ")) ps_abort(p, 1, "%s%s", strstr(e.msg, "resume: ") ? "" : "resume: ", e.msg);
                fprintf(stderr, "lora_worker: warning: skipping %s: %s\n", path, e.msg);
                below = step_of(path);
                continue;
            }
            hdr[0] = st.step;
            hdr[1] = st.opt_steps;
            hdr[2] = st.tokens_seen;
            for (int64_t i = 0; i < st.n_metrics; i++)
                metrics_add(r, st.m_step[i], st.m_loss[i], st.m_lr[i], st.m_tokens_per_s[i]);
            /* the evaluations so far, and the best adapter among them (so a worse epoch after the resume
             * does not replace out_dir/best) */
            for (int64_t i = 0; i < st.n_evals; i++) {
                train_metrics tm;
                row_metrics(st.ev_values + i * CKPT_EVAL_N, &tm);
                evals_add(r, st.ev_step[i], st.ev_epoch[i], &tm);
                double v;
                int gb;
                const char *best = r->t.cfg.metric_for_best;
                if (best[0] && !train_metric_value(&r->t, &tm, best, &v, &gb) && !isnan(v) &&
                    (r->best_epoch == 0 || (gb ? v > r->best_metric : v < r->best_metric)))
                    r->best_metric = v, r->best_epoch = st.ev_epoch[i];
            }
            printf("resume: %s: step %lld of %lld (global sample %lld, %lld AdamW steps)\n", path, (long long)st.step,
                   (long long)r->steps, (long long)st.data_cursor, (long long)st.opt_steps);
            if (st.n_evals)
                printf("resume: %lld evaluation%s so far%s", (long long)st.n_evals, st.n_evals == 1 ? "" : "s",
                       r->best_epoch ? "" : "\n");
            if (st.n_evals && r->best_epoch)
                printf("; the best %s so far %.4f (epoch %lld)\n", r->t.cfg.metric_for_best, r->best_metric,
                       (long long)r->best_epoch);
            ckpt_state_free(&st);
            break;
        }
    }
    PS_MPI(MPI_Bcast(hdr, 3, MPI_INT64_T, 0, p->comm)); /* collective */
    r->start_step = hdr[0];
    r->version = (uint64_t)hdr[0];
    r->tokens_seen = hdr[2];
    if (hdr[0] == 0) { /* fresh start */
        free(M);
        free(V);
        return;
    }
    /* the shards' optimizer state */
    if (p->is_server) {
        if (p->rank == 0) {
            for (int s = 1; s < p->S; s++) {
                size_t len;
                uint8_t *buf = pack_state(r, s, p->lo[s], p->hi[s] - p->lo[s], r->t.ad.w + p->lo[s], M + p->lo[s],
                                          V + p->lo[s], &len);
                MPI_Request req;
                ps_isend(p, buf, len, s, TAG_STATE, &req);
                PS_MPI(MPI_Wait(&req, MPI_STATUS_IGNORE));
                free(buf);
            }
            uint64_t lo = p->lo[0], n = p->hi[0] - lo;
            memcpy(r->m, M + lo, n * 4);
            memcpy(r->v, V + lo, n * 4);
        } else {
            size_t len;
            uint8_t *buf = ps_recv(p, 0, TAG_STATE, &len, NULL, NULL);
            struct lerr e;
            Lora__ShardState *m = wire_unpack_shard_state(buf, len, 0, p->n_params, &e);
            free(buf);
            if (!m) ps_abort(p, 4, "%s", e.msg);
            if (m->offset != p->lo[p->rank] || m->count != p->hi[p->rank] - p->lo[p->rank])
                ps_abort(p, 4, "resume: rank 0 sent the state of another key range");
            memcpy(r->m, m->exp_avg.data, m->count * 4);
            memcpy(r->v, m->exp_avg_sq.data, m->count * 4);
            lora__shard_state__free_unpacked(m, NULL);
        }
        r->opt_t = hdr[1];
    }
    free(M);
    free(V);
}
