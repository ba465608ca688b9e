/*
 * plot_: the loss curve of a run as a picture, from its metrics file ([train]
 * metrics: JSON lines with "step" and "loss", and evaluation lines with
 * "eval": true, "val_loss" and the task's metric), drawn by gnuplot (Debian's
 * gnuplot-nox, run as a separate program: the plot is a file, not a library
 * dependency of the engine).
 */
#ifndef PLOT_H
#define PLOT_H

#include "lerr.h"

/* Writes out (PNG) with the training loss and validation loss against steps,
 * and the evaluation metric (accuracy, f1, perplexity...) when there is one.
 * Errors name the file and line (a line that is not JSON, no step lines) or
 * gnuplot's failure. */
int plot_metrics(const char *metrics_path, const char *out_png, struct lerr *e);

#endif
