/* The loss curve of a run (see include/plot.h). */
#define _POSIX_C_SOURCE 200809L
#include "plot.h"

#include <cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* The first metric of an evaluation line other than the loss, in this order. */
static const char *const k_metrics[] = {"accuracy", "f1", "macro_f1", "token_accuracy", "perplexity", NULL};

int plot_metrics(const char *metrics_path, const char *out_png, struct lerr *e) {
    FILE *in = fopen(metrics_path, "r");
    if (!in) return lerr_set(e, "%s: cannot open: %s", metrics_path, strerror(errno));
    char tmpl[] = "/tmp/lora-plot-XXXXXX";
    if (!mkdtemp(tmpl)) {
        fclose(in);
        return lerr_set(e, "cannot create a temporary directory: %s", strerror(errno));
    }
    char train_path[64], val_path[64], script_path[64], err_path[64];
    snprintf(train_path, sizeof train_path, "%s/train.dat", tmpl);
    snprintf(val_path, sizeof val_path, "%s/val.dat", tmpl);
    snprintf(script_path, sizeof script_path, "%s/plot.gp", tmpl);
    snprintf(err_path, sizeof err_path, "%s/gnuplot.err", tmpl);
    FILE *ft = fopen(train_path, "w"), *fv = fopen(val_path, "w");
    int rc = -1;
    long n_train = 0, n_val = 0, lineno = 0;
    const char *metric = NULL;
    char *line = NULL;
    size_t cap = 0;
    if (!ft || !fv) {
        lerr_set(e, "%s: cannot write", tmpl);
        goto out;
    }
    while (getline(&line, &cap, in) > 0) {
        lineno++;
        if (line[strspn(line, " \t\r\n")] == 0) continue;
        cJSON *j = cJSON_Parse(line);
        if (!cJSON_IsObject(j)) {
            cJSON_Delete(j);
            lerr_set(e, "%s:%ld: not a JSON object", metrics_path, lineno);
            goto out;
        }
        const cJSON *step = cJSON_GetObjectItemCaseSensitive(j, "step");
        if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "eval"))) {
            const cJSON *vl = cJSON_GetObjectItemCaseSensitive(j, "val_loss");
            if (!cJSON_IsNumber(step) || !cJSON_IsNumber(vl)) {
                cJSON_Delete(j);
                lerr_set(e, "%s:%ld: an evaluation line needs numbers \"step\" and \"val_loss\"", metrics_path, lineno);
                goto out;
            }
            if (!metric)
                for (int k = 0; k_metrics[k]; k++)
                    if (cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(j, k_metrics[k]))) {
                        metric = k_metrics[k];
                        break;
                    }
            const cJSON *mv = metric ? cJSON_GetObjectItemCaseSensitive(j, metric) : NULL;
            fprintf(fv, "%g %.9g %.9g\n", step->valuedouble, vl->valuedouble, cJSON_IsNumber(mv) ? mv->valuedouble : 0.0);
            n_val++;
        } else if (cJSON_IsNumber(step)) {
            const cJSON *loss = cJSON_GetObjectItemCaseSensitive(j, "loss");
            if (cJSON_IsNumber(loss) && !cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "skipped"))) {
                fprintf(ft, "%g %.9g\n", step->valuedouble, loss->valuedouble);
                n_train++;
            }
        }
        cJSON_Delete(j);
    }
    if (!n_train && !n_val) {
        lerr_set(e, "%s: no step or evaluation lines to plot", metrics_path);
        goto out;
    }
    fclose(ft);
    fclose(fv);
    ft = fv = NULL;
    FILE *gp = fopen(script_path, "w");
    if (!gp) {
        lerr_set(e, "%s: cannot write", script_path);
        goto out;
    }
    fprintf(gp, "set terminal pngcairo size 960,540 font 'sans,11'\nset output '%s'\nset grid\n", out_png);
    fprintf(gp, "set xlabel 'step'\nset ylabel 'loss'\nset key outside bottom center horizontal\n");
    fprintf(gp, "set title 'training and validation loss%s%s'\n", metric ? ", " : "", metric ? metric : "");
    if (metric) fprintf(gp, "set y2label '%s'\nset y2tics\nset ytics nomirror\n", metric);
    fprintf(gp, "plot ");
    int any = 0;
    if (n_train) fprintf(gp, "'%s' using 1:2 with lines lw 1.5 title 'training loss'", train_path), any = 1;
    if (n_val) {
        fprintf(gp, "%s'%s' using 1:2 with linespoints lw 2 pt 7 title 'validation loss'", any ? ", " : "", val_path);
        if (metric) fprintf(gp, ", '%s' using 1:3 axes x1y2 with linespoints lw 2 pt 5 title '%s'", val_path, metric);
    }
    fprintf(gp, "\n");
    fclose(gp);
    pid_t pid = fork();
    if (pid < 0) {
        lerr_set(e, "fork: %s", strerror(errno));
        goto out;
    }
    if (pid == 0) { /* gnuplot's messages go to a file: shown only when it fails */
        FILE *ef = fopen(err_path, "w");
        if (ef) dup2(fileno(ef), 2);
        execlp("gnuplot", "gnuplot", script_path, (char *)NULL);
        _exit(127);
    }
    int st = 0;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
    }
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        if (WIFEXITED(st) && WEXITSTATUS(st) == 127)
            lerr_set(e, "gnuplot is not installed (Debian: apt-get install gnuplot-nox)");
        else {
            char msg[300] = "";
            FILE *ef = fopen(err_path, "r");
            if (ef) {
                size_t k = fread(msg, 1, sizeof msg - 1, ef);
                msg[k] = 0;
                fclose(ef);
                for (char *q = msg; *q; q++)
                    if (*q == '\n') *q = ' ';
            }
            lerr_set(e, "gnuplot failed drawing %s (exit status %d): %s", out_png, WIFEXITED(st) ? WEXITSTATUS(st) : -1,
                     msg);
        }
        goto out;
    }
    rc = 0;
out:
    free(line);
    fclose(in);
    if (ft) fclose(ft);
    if (fv) fclose(fv);
    remove(train_path);
    remove(val_path);
    remove(script_path);
    remove(err_path);
    rmdir(tmpl);
    return rc;
}
