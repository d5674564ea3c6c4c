#include "api/status.h"

#include <string.h>

#include "api/strbuf.h"
#include "util/error.h"

static const struct {
    int code;
    int status;
} table[] = {
    {INFERD_OK, 200},
    {INFERD_EINVAL, 400},       /* malformed JSON, wrong datatype, shape or size, bad input */
    {INFERD_ENOTFOUND, 404},    /* unknown model, version or path */
    {INFERD_EUNAVAIL, 503},     /* loading, failed to load, shutting down, deadline unmeetable */
    {INFERD_EUNSUPPORTED, 400}, /* a valid request for a feature we do not have */
    {INFERD_EINTERNAL, 500},    /* our bug or the OS */
    {INFERD_ECANCELLED, 503},   /* cancelled before it ran */
    {INFERD_EBUSY, 429},        /* admission control: the model's queue is full */
    {INFERD_ETOOLARGE, 413},    /* over a configured size limit */
};

int inferd_status_from_code(int code) {
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
        if (table[i].code == code)
            return table[i].status;
    return 500;
}

void inferd_status_respond_json(inferd_http_request *req, int status, const char *json) {
    inferd_http_respond_text(req, status, "application/json", json); // copied by the server
}

void inferd_status_respond_error(inferd_http_request *req, int code, const char *msg) {
    inferd_strbuf b;
    inferd_strbuf_init(&b);
    inferd_strbuf_appends(&b, "{\"error\":");
    inferd_strbuf_append_json_string(&b, msg, strlen(msg));
    inferd_strbuf_appends(&b, "}");
    size_t len;
    char *body = inferd_strbuf_take(&b, &len);
    if (!body) { // out of memory for the message itself: a fixed 503 that says so
        inferd_http_respond_no_memory(req);
        return;
    }
    inferd_http_respond(req, inferd_status_from_code(code), "application/json", body, len, NULL);
}
