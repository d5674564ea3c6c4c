/* textcall.h: one text request's way through a model version: tokenize every text on the
 * calling (HTTP) thread, queue each text to the version's batcher as a request of its own, and
 * join the predictions back in request order.
 *
 * DESIGN
 * inferd_textcall_submit encodes the texts one after the other with the pipeline, into token
 * buffers that belong to the calling thread and are reused by its next request (one
 * tokenizer scratch and one id buffer per thread, grown to the largest request seen, so after
 * warm-up tokenizing allocates nothing). Any text that fails to encode (invalid UTF-8, too
 * long without truncation) fails the whole request with a message naming the item, before
 * anything is queued. The call then takes one allocation, an arena that holds each text's
 * [1, L] token tensors (assembled by the pipeline at the text's own length L), its scheduler
 * request and its result, and queues all texts at once with inferd_sched_submit_all (all or
 * none). The batcher is then free to put the texts of one request into different batches,
 * next to other requests' texts of similar length (length buckets), padding within a batch.
 *
 * Each text's completion runs on the worker that ran its batch: it turns the model's row of
 * scores into the text's prediction (the pipeline's postprocessing) and counts down. The last
 * one calls done once with every prediction in request order (or the first error), then the
 * arena is freed. No thread waits for a batch meanwhile.
 *
 * Threads: submit on any thread (each thread keeps its own buffers); done on a worker.
 */
#ifndef INFERD_API_TEXTCALL_H
#define INFERD_API_TEXTCALL_H

#include <stddef.h>
#include <stdint.h>

#include "api/textreq.h"
#include "prep/pipeline.h"
#include "sched/sched.h"
#include "sched/stats.h"
#include "util/error.h"
#include "util/tensor.h"

/* Called exactly once per successful submit, on a worker thread. status 0: results[0..n) are
 * the predictions in request order (valid during the call only); otherwise err says why
 * (the first text to fail; every text has completed by then). */
typedef void (*inferd_textcall_done_fn)(void *user, int status, const inferd_error *err,
                                        const inferd_text_result *results, size_t n);

typedef struct inferd_textcall_options {
    const inferd_pipeline *pipeline; /* must outlive the call (the caller holds the version) */
    inferd_sched_queue *queue;
    const inferd_tensor_desc *inputs; /* the queue's inputs, in order */
    int n_inputs;
    const inferd_tensor_desc *outputs; /* the queue's outputs, in order */
    int n_outputs;
    int max_batch;       /* the queue's; 0: the model has no batch dim */
    int64_t timeout_us;  /* per text; 0: the queue's default */
    inferd_stats *stats; /* tokenize time and text counts go here; may be NULL */
    inferd_textcall_done_fn done;
    void *user;
} inferd_textcall_options;

/* Tokenizes items[0..n) on the calling thread and queues them. On success returns 0 and
 * done will be called exactly once; the texts may be freed as soon as this returns. On
 * failure returns a negative code with err filled, nothing is queued and done is never
 * called: INFERD_EINVAL / INFERD_ETOOLARGE from tokenizing (naming the item: "text item 3 is
 * not valid UTF-8 (byte offset 17)"), INFERD_EUNSUPPORTED (a model the text path cannot
 * feed), INFERD_EBUSY / INFERD_EUNAVAIL from admission, INFERD_EINTERNAL. Any thread. */
int inferd_textcall_submit(const inferd_textcall_options *o, const inferd_text_item *items,
                           size_t n, inferd_error *err);

/* Frees the calling thread's tokenizing buffers now (they are also freed when the thread
 * exits). For tests and tools. */
void inferd_textcall_thread_cleanup(void);

#endif
