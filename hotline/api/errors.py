"""JSON errors in the caller's language: {"error": {"code", "message", "field"}}."""

from __future__ import annotations

import logging

from flask import Flask, Response, jsonify, make_response, render_template, request
from flask_babel import gettext
from werkzeug.exceptions import BadRequest, HTTPException, MethodNotAllowed

from hotline.validation import N_, InputError

log = logging.getLogger("hotline.api")

HTTP_MESSAGES = {
    400: ("bad_request", N_("The request is malformed.")),
    401: ("unauthorized", N_("Invalid or missing API token.")),
    403: ("forbidden", N_("This token may not do that.")),
    404: ("not_found", N_("Not found.")),
    405: ("method_not_allowed", N_("Method not allowed.")),
    413: ("too_large", N_("Request body is too large.")),
    415: ("unsupported_media_type", N_("Request body must be JSON.")),
}


# NOTE: Werkzeug also raises 413 for a multipart body of more than MAX_FORM_PARTS (1000) parts, or with a
# field over MAX_FORM_MEMORY_SIZE, and that body gets this message too although it may be under the limit.
TOO_LARGE_MESSAGE = N_("Request body is too large; the limit is %(limit)s bytes.")
METHOD_NOT_ALLOWED_MESSAGE = N_("Method %(method)s is not allowed on this URL; use %(allowed)s.")
# Methods Flask and Werkzeug add to routes. The Allow header lists them, but a caller cannot use them instead.
IMPLICIT_METHODS = ("HEAD", "OPTIONS")


class PageInputError(BadRequest):
    """Bad input sent from a page: the 400 page shows the input error's own message instead of the generic one."""

    def __init__(self, error: InputError):
        super().__init__()
        self.input_error = error


class ApiError(Exception):
    def __init__(self, status: int, code: str, template: str, field: str | None = None, **params):
        if field is not None:
            params = {"field": field, **params}
        super().__init__(template)
        self.status = status
        self.code = code
        self.template = template
        self.field = field
        self.params = params
        # Response headers the error needs, such as the WWW-Authenticate challenge of a 401.
        self.headers: dict[str, str] = {}


def too_large_message() -> str:
    """Return the 413 message in the caller's language, with the limit in bytes."""
    return gettext(TOO_LARGE_MESSAGE, limit=request.max_content_length)


def log_too_large() -> None:
    log.warning("Request: rejected %s %s with a body over %s bytes (Content-Length: %s)", request.method,
                request.path, request.max_content_length, request.headers.get("Content-Length", "none, chunked"))


def error_response(status: int, code: str, template: str, field: str | None = None, params: dict | None = None):
    message = gettext(template, **params) if params else gettext(template)
    return jsonify({"error": {"code": code, "message": message, "field": field}}), status


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(InputError)
    def _input_error(error: InputError):
        return error_response(error.status, error.code, error.template, error.field, error.params)

    @app.errorhandler(ApiError)
    def _api_error(error: ApiError):
        response, status = error_response(error.status, error.code, error.template, error.field, error.params)
        response.headers.update(error.headers)
        return response, status

    @app.errorhandler(HTTPException)
    def _http_error(error: HTTPException):
        if error.code == 413:
            log_too_large()
        if not wants_json():
            return _html_error(error)
        if error.code == 413:
            return error_response(413, "too_large", TOO_LARGE_MESSAGE, params={"limit": request.max_content_length})
        if isinstance(error, MethodNotAllowed) and error.valid_methods:
            response, status = error_response(405, "method_not_allowed", METHOD_NOT_ALLOWED_MESSAGE,
                                              params={"method": request.method,
                                                      "allowed": ", ".join(_callable_methods(error.valid_methods))})
        else:
            code, template = HTTP_MESSAGES.get(error.code, ("http_error", N_("The request failed.")))
            response, status = error_response(error.code or 500, code, template)
        _copy_headers(error, response)
        return response, status

    @app.errorhandler(Exception)
    def _unexpected(error: Exception):
        log.exception("API: unhandled error on %s %s", request.method, request.path)
        if not wants_json():
            return _html_page(500, *PAGE_MESSAGES[500])
        return error_response(500, "internal_error", N_("Internal error; the request was not applied."))


PAGE_MESSAGES = {
    400: (N_("Invalid request"), N_("The page received a request it cannot handle. Go back and try again.")),
    403: (N_("Not allowed"), N_("Your account may not open this page. Ask a supervisor if you need it.")),
    404: (N_("Page not found"), N_("This page does not exist. Go back to the queue and try again.")),
    413: (N_("Form too large"), N_("The form was larger than the limit of %(kilobytes)s KB, so nothing was saved. "
                                   "Go back, shorten the longest text and send the form again.")),
    500: (N_("Something went wrong"), N_("The request was not applied. Try again; if it fails again, tell the "
                                          "system administrator.")),
}
# Agencies open offer links from an SMS, so their 404 points back to the SMS.
OFFER_LINK_NOT_FOUND = (N_("Link not valid"), N_("This link is wrong or no longer valid. Check the link in your SMS."))


def _copy_headers(error: HTTPException, response: Response) -> None:
    """Copy the exception's own headers, such as the Allow header RFC 9110 requires on a 405, onto `response`."""
    for name, value in error.get_headers():
        if name.lower() != "content-type":
            response.headers[name] = value


def _html_error(error: HTTPException):
    status = error.code or 500
    messages = PAGE_MESSAGES.get(status, (N_("Request failed"), N_("The request could not be handled.")))
    params = {}
    if status == 404 and request.path.startswith("/offers/"):
        messages = OFFER_LINK_NOT_FOUND
    if status == 413:
        params = {"kilobytes": f"{round(request.max_content_length / 1024, 1):g}"}
    if isinstance(error, PageInputError):
        messages, params = (messages[0], error.input_error.template), error.input_error.params
    response = make_response(_html_page(status, *messages, **params))
    _copy_headers(error, response)
    return response


def _html_page(status: int, title: str, message: str, **params):
    from hotline.i18n import current_language

    page = render_template("error.html", title=gettext(title), message=gettext(message, **params),
                           language=current_language())
    return page, status


def wants_json() -> bool:
    return request.path.startswith(("/api/", "/twilio/")) or request.accept_mimetypes.best == "application/json"


def _callable_methods(methods) -> list[str]:
    """Return the allowed methods without HEAD and OPTIONS, unless nothing else is allowed."""
    explicit = [method for method in methods if method not in IMPLICIT_METHODS]
    return explicit or list(methods)
