/*
 * The signal contract of lora_worker (coordinator/run_ckpt.c): the first
 * SIGTERM, SIGINT or SIGUSR1 is recorded (the run stops after the current step
 * with a checkpoint) and acknowledged at once on rank 0; repeats within the
 * window (a parameter; lora_worker's is PS_SIGNAL_REPEAT_MS) are the same
 * request (launchers may deliver one twice); a second signal later ends the
 * process at once with 128 + the signal number. Each case runs in a child
 * process. A worker's signal passed on to rank 0: tests/ps_faults.sh.
 */
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ps.h"
#include "testutil.h"

/* Child: install (as `rank`, with the repeat window given), send the signals,
 * report. Exit 0 if it survived with the request recorded. */
static int child(int rank, long window_ms, int sig1, int sig2) {
    ps_signals_install(rank, window_ms);
    if (ps_signal_seen()) return 10;
    raise(sig1);
    if (!ps_signal_seen()) return 11;
    if (sig2) raise(sig2);
    return 0;
}

/* Runs child() in a fork with its stderr into err (cap bytes); returns its
 * exit status, or 1000 + the signal that ended it. */
static int run(int rank, long window_ms, int sig1, int sig2, char *err, size_t cap) {
    int fd[2];
    if (pipe(fd)) return -1;
    pid_t pid = fork();
    if (pid == 0) {
        dup2(fd[1], STDERR_FILENO);
        close(fd[0]);
        _exit(child(rank, window_ms, sig1, sig2));
    }
    close(fd[1]);
    size_t n = 0;
    ssize_t k;
    while (n + 1 < cap && (k = read(fd[0], err + n, cap - 1 - n)) > 0) n += (size_t)k;
    err[n] = 0;
    close(fd[0]);
    int st;
    waitpid(pid, &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 1000 + WTERMSIG(st);
}

int main(void) {
    int sigs[3] = {SIGTERM, SIGINT, SIGUSR1};
    const char *names[3] = {"SIGTERM", "SIGINT", "SIGUSR1"};
    char err[1024];
    for (int i = 0; i < 3; i++) {
        int rc = run(0, PS_SIGNAL_REPEAT_MS, sigs[i], 0, err, sizeof err);
        CHECK(rc == 0, "a first %s is recorded and the process goes on (got %d)", names[i], rc);
        CHECK(strstr(err, "signal received: stopping after this step") && strstr(err, "a second signal exits at once"),
              "rank 0 acknowledges a first %s at once: '%s'", names[i], err);
    }
    int rc = run(3, PS_SIGNAL_REPEAT_MS, SIGTERM, 0, err, sizeof err);
    CHECK(rc == 0 && err[0] == 0, "another rank records a signal silently (rank 0 reports it): rc %d, '%s'", rc, err);
    /* the window is a parameter: no sleeping to get either side of it */
    rc = run(0, 3600 * 1000L, SIGTERM, SIGTERM, err, sizeof err);
    CHECK(rc == 0, "a repeat within the window is the same request (got %d)", rc);
    rc = run(0, 0, SIGTERM, SIGINT, err, sizeof err);
    CHECK(rc == 128 + SIGINT, "a second signal after the window exits at once with 128+%d (got %d)", SIGINT, rc);
    CHECK(strstr(err, "second signal: exiting now without a checkpoint") != NULL, "and says so: '%s'", err);
    rc = run(1, 0, SIGUSR1, SIGTERM, err, sizeof err);
    CHECK(rc == 128 + SIGTERM, "SIGUSR1 then SIGTERM: exit %d (got %d)", 128 + SIGTERM, rc);
    return tu_end("test_signals");
}
