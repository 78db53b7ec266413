"""Open311 GeoReport v2 (JSON only) for platforms such as 12345: services, and referrals as service requests.

A service request is a ticket filed as a referral under the token's source; its service_request_id is
the ticket number. `api_key` (query string, or form field of a POST) carries a source token: POST needs
referrals:write, reading requests needs referrals:read, and a token reads only its own source's
requests. Errors follow the GeoReport format, a list of {"code", "description"}.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from flask import Blueprint, current_app, jsonify, request
from flask_babel import gettext
from sqlmodel import Session, select
from werkzeug.exceptions import HTTPException

from hotline import intake
from hotline.api import schemas
from hotline.api.auth import Caller, authenticate_secret, required_scope
from hotline.api.errors import HTTP_MESSAGES, ApiError, log_too_large, too_large_message
from hotline.api.idempotency import run_idempotent
from hotline.clock import isoformat, now
from hotline.models import Ticket
from hotline.towns import all_towns, town_names
from hotline.validation import N_, InputError, unknown_value
from hotline.vocabulary import FINAL_STATUSES, FLAGS, STATUSES, label

bp = Blueprint("open311", __name__, url_prefix="/open311/v2")

AGENCY_RESPONSIBLE = "青浦区殡仪馆白事服务专线 59200496"
GROUP = "殡葬服务"
DEFAULT_WINDOW = timedelta(days=90)
MAX_RESULTS = 1000
MAX_IDS = 100


@dataclass(frozen=True)
class Service:
    code: str
    name: str
    description: str
    category: str
    needs: tuple[str, ...]
    keywords: str


# GeoReport service codes and the referral each one files. docs/api.md shows the same table.
SERVICES = (
    Service("consultation", "治丧咨询", "殡葬政策、流程、费用与补贴咨询。", "consultation", (), "咨询,补贴,骨灰寄存"),
    Service("body_transport", "遗体接运", "在家中或养老机构去世，需要接运遗体。", "agency_service", ("body_transport",),
            "接运,去世,遗体"),
    Service("funeral_arrangement", "殡葬代理服务", "委托殡葬代理机构办理治丧事务。", "agency_service",
            ("funeral_arrangement",), "代理,治丧"),
    Service("assisted_application", "身故一件事帮办", "代办公民身故“一件事”相关手续。", "assisted_application",
            ("death_procedures",), "帮办,一件事,手续"),
    Service("eco_burial", "生态葬", "海葬、树葬等生态安葬的咨询与预约。", "eco_burial", ("eco_burial",),
            "海葬,树葬,生态"),
    Service("complaint", "投诉", "对殡葬服务或代理机构的投诉。", "complaint", (), "投诉"),
)
SERVICES_BY_CODE = {service.code: service for service in SERVICES}

_param = schemas.optional_text
OPEN311_REQUEST = {
    "type": "object",
    "title": "Open311Request",
    "description": "Form fields of a GeoReport v2 POST; a request needs a town, from attribute[town] or "
                   "named in address_string.",
    "properties": {
        "service_code": {"type": "string", "enum": list(SERVICES_BY_CODE)},
        "jurisdiction_id": _param(64, "Accepted and ignored: the hotline serves Qingpu District only."),
        "phone": schemas.required_text(40, "Resident's mobile, or landline with its area code; one number only."),
        "first_name": _param(32),
        "last_name": _param(32),
        "description": _param(2000),
        "address_string": _param(200, "Address; its town is taken from it when attribute[town] is absent."),
        "lat": _param(32, "Accepted and ignored."),
        "long": _param(32, "Accepted and ignored."),
        "address_id": _param(64, "Accepted and ignored."),
        "email": _param(200, "Accepted and ignored."),
        "device_id": _param(64, "Accepted and ignored."),
        "account_id": _param(64, "Accepted and ignored."),
        "media_url": _param(500, "Accepted and ignored."),
        "attribute[town]": _param(32, "Name or statistical code of a Qingpu town (街镇)."),
        "attribute[committee]": _param(64),
        "attribute[external_id]": _param(64, "The platform's own id; the same id again returns the same request."),
        "attribute[flags][]": {"type": "array", "items": {"type": "string", "enum": list(FLAGS)}},
    },
    "required": ["service_code", "phone"],
    "additionalProperties": False,
}

# Referral fields as GeoReport calls them, so an error names the parameter the client sent.
PARAMETERS = {
    "external_id": "attribute[external_id]",
    "category": "service_code",
    "flags": "attribute[flags][]",
    "note": "description",
    "resident": "phone",
    "resident.name": "last_name",
    "resident.phone": "phone",
    "resident.town": "attribute[town]",
    "resident.committee": "attribute[committee]",
    "resident.address": "address_string",
}


def runtime():
    return current_app.extensions["hotline"]


@bp.errorhandler(ApiError)
@bp.errorhandler(InputError)
def _error(error: ApiError | InputError):
    status = error.status if error.status in (401, 403, 404, 429) else 400
    params = dict(error.params)
    for key in ("field", "other_field"):
        if key in params:
            params[key] = PARAMETERS.get(params[key], params[key])
    description = gettext(error.template, **params) if params else gettext(error.template)
    return jsonify([{"code": status, "description": description}]), status


@bp.errorhandler(HTTPException)
def _http_error(error: HTTPException):
    """Return an HTTP error raised in a GeoReport view, such as 413 for an oversized POST, in GeoReport's format."""
    status = error.code or 500
    if status == 413:
        log_too_large()
        description = too_large_message()
    else:
        description = gettext(HTTP_MESSAGES.get(status, (None, N_("The request failed.")))[1])
    return jsonify([{"code": status, "description": description}]), status


@bp.get("/services.json")
def list_services():
    """The service list; it needs no api_key."""
    return jsonify([
        {"service_code": service.code, "service_name": service.name, "description": service.description,
         "metadata": True, "type": "realtime", "keywords": service.keywords, "group": GROUP}
        for service in SERVICES
    ])


@bp.get("/services/<service_code>.json")
def service_definition(service_code: str):
    """The attributes a request of this service may carry."""
    if service_code not in SERVICES_BY_CODE:
        raise ApiError(404, "not_found", N_("Service %(service_code)s does not exist."), service_code=service_code)
    with runtime().transaction() as session:
        towns = [{"key": town.name, "name": town.name} for town in all_towns(session)]
    return jsonify({"service_code": service_code, "attributes": _attributes(towns)})


def _attributes(towns: list[dict[str, str]]) -> list[dict[str, Any]]:
    return [
        {"variable": True, "code": "town", "datatype": "singlevaluelist", "required": False, "order": 1,
         "datatype_description": "青浦区街镇名称", "description": "居民所在街镇；address_string 未写明街镇时必填。",
         "values": towns},
        {"variable": True, "code": "committee", "datatype": "string", "required": False, "order": 2,
         "datatype_description": "最多 64 个字", "description": "居民所在居委或村委。"},
        {"variable": True, "code": "external_id", "datatype": "string", "required": False, "order": 3,
         "datatype_description": "最多 64 个字符",
         "description": "平台自己的工单编号；同一编号重复提交返回同一工单，请在重试时带上。"},
        {"variable": True, "code": "flags", "datatype": "multivaluelist", "required": False, "order": 4,
         "datatype_description": "可多选", "description": "居民困难情况；每项将优先级提高一级。",
         "values": [{"key": code, "name": names[0]} for code, names in FLAGS.items()]},
    ]


@bp.post("/requests.json")
def create_request():
    """File a service request as a referral from the token's source."""
    caller = _caller()
    params = _form()
    schemas.validate(OPEN311_REQUEST, params)
    service = SERVICES_BY_CODE[params["service_code"]]

    def work(session: Session):
        body = referral_body(session, service, params)
        result = intake.take_referral(session, runtime(), caller.source, body, caller.token_id, now())
        return result.created, result.ticket.number

    created, number = run_idempotent(runtime(), work)
    response = jsonify([{"service_request_id": number, "service_notice": _notice(service), "account_id": None}])
    response.status_code = 201 if created else 200
    return response


def _notice(service: Service) -> str:
    if service.category == "agency_service":
        return "专线将尽快来电联系家属并安排接运或代理服务；紧急情况请直接拨打 59200496。"
    return "专线将在工作时间内来电联系；紧急情况请直接拨打 59200496。"


def _form() -> dict[str, Any]:
    """The POST parameters as one value each, except attribute[flags][], which may repeat."""
    form = request.form
    params: dict[str, Any] = {key: form.get(key) for key in form if key != "attribute[flags][]"}
    if "attribute[flags][]" in form:
        params["attribute[flags][]"] = form.getlist("attribute[flags][]")
    params.pop("api_key", None)
    return params


def referral_body(session: Session, service: Service, params: dict[str, Any]) -> dict[str, Any]:
    """The referral that a GeoReport request stands for; intake then validates it like any other."""
    name = "".join(part for part in (params.get("last_name"), params.get("first_name")) if part) or None
    return {
        "external_id": params.get("attribute[external_id]") or f"open311-{uuid.uuid4().hex}",
        "category": service.category,
        "needs": list(service.needs),
        "flags": params.get("attribute[flags][]") or [],
        "note": params.get("description"),
        "resident": {
            "name": name,
            "phone": params.get("phone"),
            "town": params.get("attribute[town]") or _town_in(session, params.get("address_string")),
            "committee": params.get("attribute[committee]"),
            "address": params.get("address_string"),
        },
    }


def _town_in(session: Session, address: str | None) -> str | None:
    """The first Qingpu town whose name the address contains, if any."""
    for town in all_towns(session):
        if address and town.name in address:
            return town.name
    return None


@bp.get("/requests.json")
def list_requests():
    """The source's service requests, newest first: by id, or filtered by service, status and time."""
    caller = _caller()
    query = select(Ticket).where(Ticket.source == caller.source).where(Ticket.external_id.is_not(None))
    ids = _ids_arg()
    if ids:
        query = query.where(Ticket.number.in_(ids))
    else:
        query = _filtered(query)
    with runtime().transaction() as session:
        rows = session.exec(query.order_by(Ticket.created_at.desc(), Ticket.id.desc()).limit(MAX_RESULTS)).all()
        towns = town_names(session)
    items = [service_request(ticket, towns) for ticket in rows]
    service_code = request.args.get("service_code")
    if service_code and not ids:
        items = [item for item in items if item["service_code"] == service_code]
    return jsonify(items)


@bp.get("/requests/<service_request_id>.json")
def get_request(service_request_id: str):
    caller = _caller()
    with runtime().transaction() as session:
        ticket = session.exec(
            select(Ticket).where(Ticket.number == service_request_id).where(Ticket.source == caller.source)
            .where(Ticket.external_id.is_not(None))
        ).first()
        if ticket is None:
            raise ApiError(404, "not_found", N_("Service request %(service_request_id)s was not found."),
                           service_request_id=service_request_id)
        return jsonify([service_request(ticket, town_names(session))])


def _caller() -> Caller:
    """Authenticate the api_key parameter; only a source token with the route's scope passes."""
    api_key = request.args.get("api_key")
    if api_key is None and request.method == "POST":
        api_key = request.form.get("api_key")
    caller = authenticate_secret(api_key)
    if caller.source is None:
        raise ApiError(403, "forbidden", N_("This token may not do that."))
    scope = required_scope(request.method, request.url_rule.rule)
    if scope is not None and not caller.has_scope(scope):
        raise ApiError(403, "insufficient_scope", N_("This token lacks the scope %(scope)s; ask the hotline's "
                                                     "administrator for a token with it."), scope=scope)
    return caller


def _ids_arg() -> list[str]:
    raw = request.args.get("service_request_id") or ""
    ids = [part.strip() for part in raw.split(",") if part.strip()]
    if len(ids) > MAX_IDS:
        raise InputError("invalid_value", N_("Give at most %(limit)s values for %(field)s."),
                         field="service_request_id", limit=MAX_IDS)
    return ids


def _filtered(query):
    service_code = request.args.get("service_code")
    if service_code:
        if service_code not in SERVICES_BY_CODE:
            raise unknown_value("service_code", service_code, list(SERVICES_BY_CODE))
        query = query.where(Ticket.category == SERVICES_BY_CODE[service_code].category)

    statuses = [part.strip() for part in (request.args.get("status") or "").split(",") if part.strip()]
    for status in statuses:
        if status not in ("open", "closed"):
            raise unknown_value("status", status, ["open", "closed"])
    if statuses == ["open"]:
        query = query.where(Ticket.status.not_in(FINAL_STATUSES))
    elif statuses == ["closed"]:
        query = query.where(Ticket.status.in_(FINAL_STATUSES))

    end = _instant_arg("end_date") or now()
    start = _instant_arg("start_date") or end - DEFAULT_WINDOW
    return query.where(Ticket.created_at >= start).where(Ticket.created_at <= end)


def _instant_arg(name: str) -> datetime | None:
    raw = request.args.get(name)
    if not raw:
        return None
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:
        value = None
    if value is None or value.tzinfo is None:
        raise InputError("invalid_type", N_("Field %(field)s must be an ISO 8601 instant with its offset, such as "
                                            "2026-12-07T08:00:00+08:00."), field=name)
    return value


def service_code_of(ticket: Ticket) -> str:
    """The service a ticket falls under now; an operator may have re-filed it since it was requested."""
    needs = set(ticket.needs or [])
    for service in SERVICES:
        if service.category == ticket.category and set(service.needs) <= needs and service.needs:
            return service.code
    for service in SERVICES:
        if service.category == ticket.category:
            return service.code
    return "consultation"


def service_request(ticket: Ticket, towns: dict[str, str]) -> dict[str, Any]:
    """A ticket as a GeoReport service request. The address is the town and committee only."""
    service = SERVICES_BY_CODE[service_code_of(ticket)]
    place = "".join(part for part in (towns.get(ticket.town_code or ""), ticket.committee) if part) or None
    return {
        "service_request_id": ticket.number,
        "status": "closed" if ticket.status in FINAL_STATUSES else "open",
        "status_notes": label(STATUSES, ticket.status, "zh"),
        "service_name": service.name,
        "service_code": service.code,
        "description": ticket.note,
        "agency_responsible": AGENCY_RESPONSIBLE,
        "service_notice": _notice(service),
        "requested_datetime": isoformat(ticket.created_at),
        "updated_datetime": isoformat(ticket.updated_at),
        "expected_datetime": isoformat(ticket.due_at),
        "address": place,
        "address_id": None,
        "zipcode": None,
        "lat": None,
        "long": None,
        "media_url": None,
    }
