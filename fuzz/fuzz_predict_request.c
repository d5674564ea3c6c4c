/* fuzz_predict_request.c: the text API's request parsers and answer formatters: the /v1
 * predict body, texts from a KServe BYTES tensor, the JSON-path locator behind "instances[3]
 * is not valid UTF-8", and the predictions JSON (with made-up scores) for each parsed text; the
 * same body through a one-text and a list per-team route, formatted in the route's shape. The
 * input is the request body as is. */
#include <stdint.h>
#include <string.h>

#include "api/jsonpos.h"
#include "api/textreq.h"
#include "util/alloc.h"

/* Parses the body through route rt and formats an answer for its texts. */
static void route_case(const uint8_t *data, size_t size, const inferd_config_route *rt,
                       const inferd_textreq_limits *lim) {
    inferd_textreq_predict r;
    inferd_error err;
    if (inferd_textreq_parse_route(data, size, rt, lim, &r, &err) == 0) {
        if (r.n_items == 0 || r.n_items > lim->max_items || (!rt->batch && r.n_items != 1))
            __builtin_trap();
        static inferd_text_result res[64];
        static inferd_pipeline_score top[2];
        for (size_t i = 0; i < r.n_items; i++) {
            // Labels are given, so no pipeline is needed to name them.
            res[i] = (inferd_text_result){.best = {.index = (int32_t)(r.items[i].len % 3),
                                                   .score = (float)r.items[i].len / 7.0f,
                                                   .label = i % 2 ? "a\"b" : "label"},
                                          .top = top,
                                          .n_top = i % 3};
            top[0] = top[1] = res[i].best;
        }
        inferd_strbuf b;
        inferd_strbuf_init(&b);
        inferd_textreq_format_route(&b, rt, NULL, res, r.n_items);
        inferd_strbuf_deinit(&b);
    }
    inferd_textreq_predict_deinit(&r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const inferd_textreq_limits lim = {.max_items = 64, .max_bytes = 4096};
    inferd_textreq_predict r;
    inferd_error err;
    if (inferd_textreq_parse_predict(data, size, &lim, &r, &err) == 0) {
        // Every text must be within the body's own strings and the limits.
        size_t total = 0;
        for (size_t i = 0; i < r.n_items; i++)
            total += r.items[i].len;
        if (r.n_items == 0 || r.n_items > lim.max_items || total > lim.max_items * lim.max_bytes)
            __builtin_trap();
    }
    inferd_textreq_predict_deinit(&r);

    static const inferd_config_route one = {
        .path = "/p", .input = "text", .label = "category", .score = "confidence"};
    static const inferd_config_route list = {.path = "/q",
                                             .input = "texts",
                                             .batch = 1,
                                             .label = "label",
                                             .top_k = "candidates",
                                             .results = "predictions"};
    route_case(data, size, &one, &lim);
    route_case(data, size, &list, &lim);

    // The same bytes as a BYTES tensor of up to 8 elements.
    inferd_text_item items[64];
    size_t n;
    for (int64_t count = 1; count <= 8; count++) {
        inferd_tensor t = {.dtype = INFERD_DTYPE_STRING,
                           .rank = 1,
                           .dims = {count},
                           .data = (void *)data,
                           .nbytes = size};
        if (inferd_textreq_items_from_tensor(&t, &lim, items, &n, &err) == 0)
            for (size_t i = 0; i < n; i++)
                if ((const uint8_t *)items[i].text < data ||
                    (const uint8_t *)items[i].text + items[i].len > data + size)
                    __builtin_trap();
    }

    char path[32];
    for (size_t pos = 0; pos <= size && pos < 64; pos++) {
        inferd_jsonpos_string_path((const char *)data, size, pos, path, sizeof path);
        if (strlen(path) >= sizeof path)
            __builtin_trap();
    }
    return 0;
}
