/*
 * Merging an adapter into the base: W' = W + scale * (B A)^T for GPT-2's
 * Conv1D (in, out) weights, computed as peft's merge does.
 */
#ifndef MERGE_H
#define MERGE_H

#include "gpt2.h"
#include "lora.h"

/* out becomes a self-contained model (weights owned, fp32) equal to base with
 * a merged in. base stays untouched. */
void gpt2_merge(gpt2 *out, const gpt2 *base, const lora_adapter *a);

/* Writes out_dir/model.safetensors with the base file's keys and dtypes (merged
 * weights rounded back to the base's dtype) and copies the base folder's other
 * small files (config.json, tokenizer files). */
int gpt2_save_merged(const gpt2 *base, const lora_adapter *a, const char *out_dir, struct lerr *e);

#endif
