/* status.h: the one place where inferd's error codes become HTTP statuses, and where the
 * JSON error body is made.
 *
 * Every API error answer goes through inferd_status_respond_error so the status and the body
 * shape ({"error": "<one sentence naming the field>"}) never drift between handlers. The few
 * protocol answers that are not errors (a readiness probe saying "no", a wrong method) have
 * their statuses here too.
 */
#ifndef INFERD_API_STATUS_H
#define INFERD_API_STATUS_H

#include "http/server.h"

/* KServe v2: readiness endpoints answer 200 for true and a 4xx (400, as Triton) for false. */
#define INFERD_STATUS_NOT_READY 400
/* A feature the operator has turned off (repository control without
 * --allow-repository-control). */
#define INFERD_STATUS_FORBIDDEN 403
/* The path exists but not for this method. */
#define INFERD_STATUS_METHOD_NOT_ALLOWED 405

/* The HTTP status for a negative INFERD_E* code (500 for unknown codes; 200 for 0). Pure;
 * any thread. */
int inferd_status_from_code(int code);

/* Answers req with status inferd_status_from_code(code) and {"error": msg}; when even that
 * message cannot be allocated, with 503 and a fixed error saying so. Any thread that may
 * answer req (see inferd_http_respond). */
void inferd_status_respond_error(inferd_http_request *req, int code, const char *msg);

/* Answers req with the given status and JSON text (copied). Any thread that may answer req. */
void inferd_status_respond_json(inferd_http_request *req, int status, const char *json);

#endif
