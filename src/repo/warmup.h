/* warmup.h: one run of a freshly loaded model version before it serves.
 *
 * A version that is about to become a model's default (a version switch, a reload) runs once
 * first, on the loader thread: the run builds the plan for a common input shape, faults in the
 * arena and the weights' pages, and proves that the model runs at all, so the first requests
 * after the switch neither pay for that nor find a broken model. A failed run keeps the old
 * version serving, with the reason.
 *
 * The inputs come from config.json "warmup" (rows, sequence length, a text for a version with
 * a pipeline) or are generated from the model's inputs: batch 1, dynamic dims 8, integer
 * inputs 1 (token ids that every vocabulary has; 0 for inputs whose name says "type"), floats
 * 0. A version with a pipeline encodes a short text with its own tokenizer instead, so the
 * ids are its own.
 */
#ifndef INFERD_REPO_WARMUP_H
#define INFERD_REPO_WARMUP_H

#include "prep/pipeline.h"
#include "repo/config.h"
#include "repo/repo.h"
#include "util/error.h"

/* Runs m once with 1 thread on inputs built as above (p: the version's pipeline or NULL;
 * max_batch: the version's effective max batch). Returns 0 after a successful run, 1 when no
 * input could be generated (a BYTES input without a pipeline: nothing was run), or a negative
 * code with err saying what failed ("warm-up run failed: ..."). The model's outputs are freed.
 * Any thread (the loader's). */
int inferd_warmup_run(const inferd_repo_model *m, const inferd_pipeline *p, int max_batch,
                      const inferd_config *cfg, inferd_error *err);

#endif
