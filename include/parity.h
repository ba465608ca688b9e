/*
 * The parity check against a fixture folder made by HF transformers + peft
 * (format: tests/fixtures/README.md). It loads everything with the project's
 * own loaders and compares, per tensor, the relative error |ours - ref|_2 /
 * |ref|_2 and the max absolute difference: base logits; logits and loss with
 * the lora-init adapter; every adapter gradient; the losses of the AdamW steps
 * and the trained adapter; trained and merged logits; the merged weights; and
 * peft's trainable/all parameter counts.
 */
#ifndef PARITY_H
#define PARITY_H

#include <stdio.h>

#define PARITY_TOL 1e-4

/* Returns 0 when every relative error is <= tol, 1 when some check failed,
 * 2 when the folder cannot be checked (missing files, unsupported family);
 * messages go to out / stderr. */
int parity_run(const char *dir, double tol, FILE *out);

#endif
