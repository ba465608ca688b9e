/* test_ckpt_kill: a checkpoint writer killed by SIGKILL at 100 seeded random
 * moments of its write (the seed is printed; LORA_TEST_SEED repeats a run,
 * LORA_CKPT_KILL_TRIALS changes the count). After every kill the previous
 * checkpoint is byte for byte what it was, and the newest valid one
 * (ckpt_find_latest, what --resume auto uses) is either that one, or, when
 * the kill came after the rename, the new one with exactly its values; never
 * a damaged file, never a warning. The moments are spread over the measured
 * duration of a write, so most kills land inside it: the test fails if too
 * few did (then it would prove nothing). */
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ckpt_testlib.h"

static double now_us(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}

static char *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *b = read_all(f, len);
    fclose(f);
    return b;
}

/* 1 if path holds exactly the len bytes of want */
static int same_bytes(const char *path, const char *want, size_t len) {
    size_t n = 0;
    char *got = slurp(path, &n);
    int ok = got && n == len && !memcmp(got, want, len);
    free(got);
    return ok;
}

/* Reads path into a fresh adapter of a's layout: 1 if its values, m and v
 * equal the expected ones and its step is `step`. */
static int reads_as(const char *path, int64_t step, const float *w, const float *m, const float *v, size_t n,
                    struct lerr *e) {
    lora_adapter b;
    if (make_adapter(&b, 96, 8, 0, 1)) return 0;
    float *m2 = malloc(n * 4), *v2 = malloc(n * 4);
    ckpt_state got;
    int ok = m2 && v2 && ckpt_read(path, &got, &b, m2, v2, e) == 0;
    if (ok) {
        ok = got.step == step && !memcmp(b.w, w, n * 4) && !memcmp(m2, m, n * 4) && !memcmp(v2, v, n * 4);
        ckpt_state_free(&got);
    }
    free(m2), free(v2);
    lora_free(&b);
    return ok;
}

static uint64_t rng_next(uint64_t *s) { /* splitmix64 */
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

int main(void) {
    const char *se = getenv("LORA_TEST_SEED"), *tr = getenv("LORA_CKPT_KILL_TRIALS");
    uint64_t seed = se && *se ? strtoull(se, NULL, 10) : 20261202ull, rs = seed;
    int trials = tr && *tr ? atoi(tr) : 100;
    if (trials < 1) trials = 1;
    char root[] = "/tmp/test_ckpt_kill.XXXXXX";
    if (!mkdtemp(root)) {
        perror("mkdtemp");
        return 1;
    }
    char dir[512], cal[512], p5[600], p6[600], path[600], warn[2048], ls[4096];
    snprintf(dir, sizeof dir, "%s/run", root);
    snprintf(cal, sizeof cal, "%s/calibrate", root);
    snprintf(p5, sizeof p5, "%s/step_00000005.h5", dir);
    snprintf(p6, sizeof p6, "%s/step_00000006.h5", dir);
    struct lerr e;
    e.msg[0] = 0;
    lora_adapter a;
    if (make_adapter(&a, 96, 8, 0, 1)) return tu_end("test_ckpt_kill");
    size_t n = a.n_params;
    float *w5 = malloc(n * 4), *w6 = malloc(n * 4), *m = malloc(n * 4), *v = malloc(n * 4);
    fill(w5, n, 105, 0), fill(w6, n, 106, 0), fill(m, n, 7, 0), fill(v, n, 8, 1);
    ckpt_state st;
    for (int s = 4; s <= 5; s++) {
        fill(a.w, n, 100 + (uint64_t)s, 0);
        make_state(&st, s);
        CHECK(ckpt_write(dir, &st, &a, m, v, 2, NULL, 0, &e) == 0, "step %d: %s", s, e.msg);
    }
    size_t len5 = 0;
    char *bytes5 = slurp(p5, &len5);
    CHECK(bytes5 && len5 > 0, "%s: cannot read it back", p5);

    /* how long one write of step 6 takes here (the median of 5) */
    double t[5];
    memcpy(a.w, w6, n * 4);
    make_state(&st, 6);
    for (int i = 0; i < 5; i++) {
        double t0 = now_us();
        CHECK(ckpt_write(cal, &st, &a, m, v, 1, NULL, 0, &e) == 0, "calibration write: %s", e.msg);
        t[i] = now_us() - t0;
    }
    for (int i = 0; i < 5; i++)
        for (int j = i + 1; j < 5; j++)
            if (t[j] < t[i]) {
                double x = t[i];
                t[i] = t[j], t[j] = x;
            }
    double span = 1.25 * t[2];
    printf("  seed %llu (LORA_TEST_SEED=%llu repeats it), %d kills at moments in [0, %.0f us] of a %.0f us write\n",
           (unsigned long long)seed, (unsigned long long)seed, trials, span, t[2]);

    int before_tmp = 0, mid = 0, after_rename = 0, finished = 0, bad = 0;
    for (int k = 0; k < trials && bad < 5; k++) {
        double delay = (double)(rng_next(&rs) >> 11) / 9007199254740992.0 * span;
        int fds[2];
        if (pipe(fds)) {
            CHECK(0, "pipe: %s", strerror(errno));
            break;
        }
        fflush(stdout), fflush(stderr);
        pid_t pid = fork();
        if (pid == 0) {
            close(fds[0]);
            char go = 1;
            if (write(fds[1], &go, 1) != 1) _exit(3);
            int rc = ckpt_write(dir, &st, &a, m, v, 2, NULL, 0, &e);
            _exit(rc == 0 ? 0 : 2);
        }
        close(fds[1]);
        char go = 0;
        ssize_t got = read(fds[0], &go, 1);
        close(fds[0]);
        struct timespec d = {(time_t)(delay / 1e6), (long)(delay - (double)(time_t)(delay / 1e6) * 1e6) * 1000};
        if (got == 1) nanosleep(&d, NULL);
        kill(pid, SIGKILL);
        int wst = 0;
        waitpid(pid, &wst, 0);
        char tmpname[128];
        snprintf(tmpname, sizeof tmpname, ".step_00000006.h5.tmp.%ld", (long)pid);
        list_dir(dir, "", ls, sizeof ls);
        int has6 = file_size(p6) >= 0, has_tmp = strstr(ls, tmpname) != NULL;
        if (WIFEXITED(wst)) {
            finished++;
            if (WEXITSTATUS(wst) != 0) CHECK(0, "trial %d: the writer failed on its own (exit %d)", k, WEXITSTATUS(wst));
        } else if (has6) {
            after_rename++;
        } else if (has_tmp) {
            mid++;
        } else {
            before_tmp++;
        }
        /* the previous checkpoint is untouched, and the newest valid one is the right one */
        int ok = same_bytes(p5, bytes5, len5);
        CHECK(ok, "trial %d (kill after %.0f us): %s changed", k, delay, p5);
        warn[0] = 0;
        int rc = ckpt_find_latest(dir, path, sizeof path, warn, sizeof warn, &e);
        int want6 = has6;
        int right = rc == 1 && !warn[0] && !strcmp(path, want6 ? p6 : p5) &&
                    reads_as(path, want6 ? 6 : 5, want6 ? w6 : w5, m, v, n, &e);
        CHECK(right, "trial %d (kill after %.0f us; %s): find_latest rc %d '%s' warn '%s' (want %s): %s", k, delay,
              has6 ? "after the rename" : has_tmp ? "mid-write" : "before the temporary", rc, path, warn,
              want6 ? p6 : p5, e.msg);
        if (!ok || !right) bad++;
        /* at most this writer's temporary: every earlier one was removed by the writer after it */
        int tmps = 0;
        for (const char *q = ls; (q = strstr(q, ".h5.tmp.")); q++) tmps++;
        CHECK(tmps <= 1, "trial %d: %d temporaries left:\n%s", k, tmps, ls);
        if (has6 && unlink(p6)) CHECK(0, "unlink %s: %s", p6, strerror(errno));
    }
    printf("  kills: %d mid-write (a temporary left), %d before the temporary existed, %d after the rename; "
           "%d writes finished first\n",
           mid, before_tmp, after_rename, finished);
    CHECK(bad == 0, "%d trials left a damaged or wrong newest checkpoint (stopped after 5)", bad);
    CHECK(mid * 4 >= trials, "only %d of %d kills landed in the middle of a write", mid, trials);

    /* the next complete write removes the last temporary and is the newest */
    CHECK(ckpt_write(dir, &st, &a, m, v, 2, NULL, 0, &e) == 0, "final write: %s", e.msg);
    list_dir(dir, "", ls, sizeof ls);
    CHECK(!strstr(ls, ".tmp.") && !strcmp(ls, "step_00000005.h5\nstep_00000006.h5\n"), "after a clean write:\n%s", ls);
    CHECK(ckpt_find_latest(dir, path, sizeof path, warn, sizeof warn, &e) == 1 && !strcmp(path, p6) &&
              reads_as(p6, 6, w6, m, v, n, &e),
          "the clean write: %s %s", path, e.msg);

    free(bytes5), free(w5), free(w6), free(m), free(v);
    lora_free(&a);
    tu_scratch_done(root);
    return tu_end("test_ckpt_kill");
}
