/*
 * The signal contract of lora_worker (coordinator/run_ckpt.c): the first
 * SIGTERM, SIGINT or SIGUSR1 is recorded (the run stops after the current step
 * with a checkpoint); repeats within a second are the same request (launchers
 * may deliver one twice); a second signal later ends the process at once with
 * 128 + the signal number. Each case runs in a child process.
 */
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ps.h"
#include "testutil.h"

static void nap(double s) {
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    while (nanosleep(&ts, &ts) != 0) {
    }
}

/* Child: install, send the signals with the gaps given, report. Exit 0 if it
 * survived with the request recorded. */
static int child(int sig1, int sig2, double gap) {
    ps_signals_install();
    if (ps_signal_seen()) return 10;
    raise(sig1);
    if (!ps_signal_seen()) return 11;
    if (sig2) {
        nap(gap);
        raise(sig2);
    }
    return 0;
}

static int run(int sig1, int sig2, double gap) {
    pid_t pid = fork();
    if (pid == 0) _exit(child(sig1, sig2, gap));
    int st;
    waitpid(pid, &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 1000 + WTERMSIG(st);
}

int main(void) {
    int sigs[3] = {SIGTERM, SIGINT, SIGUSR1};
    const char *names[3] = {"SIGTERM", "SIGINT", "SIGUSR1"};
    for (int i = 0; i < 3; i++) {
        int rc = run(sigs[i], 0, 0);
        CHECK(rc == 0, "a first %s is recorded and the process goes on (got %d)", names[i], rc);
    }
    int rc = run(SIGTERM, SIGTERM, 0.1);
    CHECK(rc == 0, "a repeat within a second is the same request (got %d)", rc);
    rc = run(SIGTERM, SIGINT, 1.2);
    CHECK(rc == 128 + SIGINT, "a second signal after a second exits at once with 128+%d (got %d)", SIGINT, rc);
    rc = run(SIGUSR1, SIGTERM, 1.2);
    CHECK(rc == 128 + SIGTERM, "SIGUSR1 then SIGTERM: exit %d (got %d)", 128 + SIGTERM, rc);
    return tu_end("test_signals");
}
