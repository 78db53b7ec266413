"""Who may open which staff page and send which form: anonymous visitors, operators, supervisors, admins.

Also the login itself: sessions, the audit rows, the lockout after five failures and CSRF on every form.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
import time_machine
from sqlmodel import select
from web_helpers import PASSWORD, csrf_token, log_in, post_form, refer

from hotline.models import Agency, LoginAttempt, Ticket, TicketEvent, User

MONDAY_MORNING = datetime.fromisoformat("2026-12-07T09:00:00+08:00")
ROLES = ("operator", "supervisor", "admin")


@pytest.fixture
def number(client, seeded):
    with time_machine.travel(MONDAY_MORNING, tick=False):
        return refer(client, seeded["community_worker"], "AUTH-1")


SUPERVISOR_PAGES = ("/audit/logins", "/supervisor/agencies/1")
# A supervisor's form: the status change of agency 1. Without confirmed=yes it returns a confirmation page.
AGENCY_STATUS_FORM = ("/supervisor/agencies/1/status", {"status": "watch", "reason": "核查", "from_status": "approved"})


def _pages(number):
    return ["/", "/queue/rows", f"/tickets/{number}", "/tickets/new", *SUPERVISOR_PAGES]


def _forms(number):
    """Every staff form with a body that the form accepts."""
    return [
        ("/queue/claim-next", {}),
        (f"/tickets/{number}/claim", {}),
        (f"/tickets/{number}/status", {"to": "waiting", "reason": "家属稍后回电"}),
        ("/tickets/new", {"channel": "walk_in", "category": "consultation"}),
        ("/logout", {}),
    ]


@time_machine.travel(MONDAY_MORNING, tick=False)
def test_anonymous_pages_redirect_to_login(client, number):
    for path in _pages(number):
        response = client.get(path)

        assert response.status_code == 302, path
        assert response.location.startswith("/login?next="), path


@time_machine.travel(MONDAY_MORNING, tick=False)
def test_anonymous_forms_redirect_to_login_and_change_nothing(client, runtime, number):
    for path, data in _forms(number):
        response = client.post(path, data={**data, "csrf_token": csrf_token(client)})

        assert response.status_code == 302, path
        assert response.location.startswith("/login"), path
    with runtime.transaction() as session:
        ticket = session.exec(select(Ticket).where(Ticket.number == number)).one()
        assert ticket.assigned_to_id is None
        assert ticket.status == "new"
        assert len(session.exec(select(Ticket)).all()) == 1


@pytest.mark.parametrize("role", ROLES)
@time_machine.travel(MONDAY_MORNING, tick=False)
def test_staff_pages_by_role(client, number, role):
    assert log_in(client, role).status_code == 302

    for path in _pages(number):
        response = client.get(path)

        allowed = path not in SUPERVISOR_PAGES or role in ("supervisor", "admin")
        assert response.status_code == (200 if allowed else 403), path


@pytest.mark.parametrize("role", ROLES)
@time_machine.travel(MONDAY_MORNING, tick=False)
def test_staff_forms_by_role(client, runtime, number, role):
    log_in(client, role)

    statuses = [post_form(client, path, data).status_code for path, data in _forms(number)]

    assert statuses == [302] * len(statuses)
    with runtime.transaction() as session:
        user = session.exec(select(User).where(User.username == role)).one()
        tickets = session.exec(select(Ticket).order_by(Ticket.id)).all()
        assert tickets[0].assigned_to_id == user.id
        assert tickets[0].status == "waiting"
        assert len(tickets) == 2
    assert client.get("/").status_code == 302, "logout ended the session"


@time_machine.travel(MONDAY_MORNING, tick=False)
def test_anonymous_agency_form_to_login(client, runtime, number):
    path, data = AGENCY_STATUS_FORM

    response = client.post(path, data={**data, "confirmed": "yes", "csrf_token": csrf_token(client)})

    assert response.status_code == 302
    assert response.location.startswith("/login?next=")
    with runtime.transaction() as session:
        assert session.get(Agency, 1).status == "approved"


@pytest.mark.parametrize("role", ROLES)
@time_machine.travel(MONDAY_MORNING, tick=False)
def test_agency_status_form_by_role(client, runtime, number, role):
    log_in(client, role)
    path, data = AGENCY_STATUS_FORM

    confirmation = post_form(client, path, data)
    applied = post_form(client, path, {**data, "confirmed": "yes"})

    supervisor = role in ("supervisor", "admin")
    assert confirmation.status_code == (200 if supervisor else 403)
    assert applied.status_code == (302 if supervisor else 403)
    with runtime.transaction() as session:
        assert session.get(Agency, 1).status == ("watch" if supervisor else "approved")


@time_machine.travel(MONDAY_MORNING, tick=False)
def test_forms_without_csrf_token_are_refused(client, runtime, number):
    assert client.post("/login", data={"username": "operator", "password": PASSWORD}).status_code == 400
    log_in(client, "operator")

    for path, data in _forms(number):
        assert client.post(path, data=data).status_code == 400, path
        assert client.post(path, data={**data, "csrf_token": "forged"}).status_code == 400, path

    with runtime.transaction() as session:
        ticket = session.exec(select(Ticket).where(Ticket.number == number)).one()
        assert (ticket.assigned_to_id, ticket.status) == (None, "new")
    assert client.get("/").status_code == 200, "the refused logout kept the session"


@time_machine.travel(MONDAY_MORNING, tick=False)
def test_api_and_webhooks_need_no_csrf_token(client, seeded):
    number = refer(client, seeded["community_worker"], "API-1")

    response = client.post(f"/api/v1/tickets/{number}/claim", headers={"Authorization": f"Bearer {seeded['operator']}"})

    assert response.status_code == 200
    assert client.post("/twilio/voice", data={"CallSid": "CA1"}).status_code == 403, "signature, not CSRF, refuses it"


@time_machine.travel(MONDAY_MORNING, tick=False)
def test_login_records_every_attempt(client, runtime, seeded):
    refused = log_in(client, "operator", "wrong")
    unknown = log_in(client, "nobody", "wrong")
    accepted = log_in(client, "operator")

    assert refused.status_code == 401
    assert "用户名或密码错误" in refused.get_data(as_text=True)
    assert unknown.status_code == 401
    assert accepted.status_code == 302
    with runtime.transaction() as session:
        attempts = session.exec(select(LoginAttempt).order_by(LoginAttempt.id)).all()
        assert [(a.username, a.outcome, a.succeeded) for a in attempts] == [
            ("operator", "bad_password", False), ("nobody", "unknown_user", False), ("operator", "ok", True)]
        assert attempts[2].at == MONDAY_MORNING
        assert attempts[2].remote_addr == "127.0.0.1"


def test_lockout_after_five_failures_for_fifteen_minutes(client, runtime, seeded):
    with time_machine.travel(MONDAY_MORNING, tick=False) as traveller:
        for _ in range(5):
            assert log_in(client, "operator", "wrong").status_code == 401

        locked = log_in(client, "operator")
        assert locked.status_code == 401
        assert "已锁定 15 分钟" in locked.get_data(as_text=True)

        traveller.move_to(MONDAY_MORNING + timedelta(minutes=14, seconds=59))
        assert log_in(client, "operator").status_code == 401

        traveller.move_to(MONDAY_MORNING + timedelta(minutes=15, seconds=1))
        assert log_in(client, "operator").status_code == 302

    with runtime.transaction() as session:
        outcomes = [a.outcome for a in session.exec(select(LoginAttempt).order_by(LoginAttempt.id)).all()]
    assert outcomes == ["bad_password"] * 5 + ["locked", "locked", "ok"]


@time_machine.travel(MONDAY_MORNING, tick=False)
def test_success_clears_earlier_failures(client, seeded):
    for _ in range(4):
        log_in(client, "operator", "wrong")
    assert log_in(client, "operator").status_code == 302
    client.post("/logout", data={"csrf_token": csrf_token(client, "/")})

    for _ in range(4):
        log_in(client, "operator", "wrong")

    assert log_in(client, "operator").status_code == 302


@time_machine.travel(MONDAY_MORNING, tick=False)
def test_lockout_of_one_name_leaves_others_alone(client, seeded):
    for _ in range(5):
        log_in(client, "operator", "wrong")

    assert log_in(client, "supervisor").status_code == 302


@time_machine.travel(MONDAY_MORNING, tick=False)
def test_deactivated_account_logged_out(client, runtime, seeded):
    log_in(client, "operator")
    with runtime.transaction() as session:
        user = session.exec(select(User).where(User.username == "operator")).one()
        user.active = False
        session.add(user)

    assert client.get("/").status_code == 302
    assert log_in(client, "operator").status_code == 401


@pytest.mark.parametrize("target, expected", [
    ("/tickets/new", "/tickets/new"),
    ("https://evil.example/", "/"),
    ("//evil.example/", "/"),
    ("/\\evil.example/", "/"),
])
@time_machine.travel(MONDAY_MORNING, tick=False)
def test_login_goes_back_only_to_this_site(client, seeded, target, expected):
    response = client.post("/login", query_string={"next": target},
                           data={"username": "operator", "password": PASSWORD, "csrf_token": csrf_token(client)})

    assert response.location == expected


@time_machine.travel(MONDAY_MORNING, tick=False)
def test_audit_page_lists_attempts_for_supervisors(client, seeded):
    log_in(client, "nobody", "wrong")
    log_in(client, "supervisor")

    page = client.get("/audit/logins").get_data(as_text=True)

    assert "nobody" in page
    assert "无此用户" in page
    assert "2026-12-07 09:00" in page


@time_machine.travel(MONDAY_MORNING, tick=False)
def test_actions_are_recorded_under_the_logged_in_user(client, runtime, number):
    log_in(client, "supervisor")

    post_form(client, f"/tickets/{number}/claim")

    with runtime.transaction() as session:
        user = session.exec(select(User).where(User.username == "supervisor")).one()
        kinds = session.exec(select(TicketEvent.kind).where(TicketEvent.actor == f"user:{user.id}")).all()
    assert "claimed" in kinds


def test_demo_welcome_prints_the_web_login(capsys, settings):
    from hotline.cli.demo import print_welcome

    print_welcome(settings, {"password": "s3cret-pass", "twilio_auth_token": "t", "tokens": {}}, "127.0.0.1", 5000)

    out = capsys.readouterr().out
    assert "http://127.0.0.1:5000/login" in out
    assert "password s3cret-pass" in out
