"""Ticketing and referral routing for Qingpu District's funeral-service hotline 59200496."""

from __future__ import annotations

from flask import Flask, jsonify
from flask_wtf.csrf import CSRFProtect
from werkzeug.middleware.proxy_fix import ProxyFix

from hotline.json_provider import OrjsonProvider
from hotline.request_body import BodyLimitedRequest
from hotline.row_ids import RowIdConverter
from hotline.runtime import Runtime
from hotline.web.sessions import CookieSessionInterface


def create_app(runtime: Runtime | None = None) -> Flask:
    """Build the web app on `runtime` (by default one built from the environment)."""
    from hotline import ratelimit, text_guard
    from hotline.api import agencies as agency_api
    from hotline.api import checklists as checklist_api
    from hotline.api import dispatch as dispatch_api
    from hotline.api import kb as kb_api
    from hotline.api import merge as merge_api
    from hotline.api import open311, openapi, twilio, v1
    from hotline.api import platform as platform_api
    from hotline.api.auth import close_request_connection
    from hotline.api.errors import register_error_handlers
    from hotline.i18n import init_babel
    from hotline.runtime import build_runtime, install
    from hotline.web import (
        agency_pages,
        auth,
        dashboard,
        dispatch_panel,
        exports,
        offers,
        portal,
        queue,
        ticket_pages,
        tokens_admin,
        users_admin,
    )
    from hotline.web import kb as kb_pages

    runtime = install(runtime or build_runtime())
    settings = runtime.settings

    app = Flask(__name__, instance_path=str(settings.instance_dir))
    app.request_class = BodyLimitedRequest
    # Before any blueprint is registered, so every <int:...> route uses the bounded converter.
    app.url_map.converters["int"] = RowIdConverter
    app.config.update(
        SECRET_KEY=settings.secret_key,
        MAX_CONTENT_LENGTH=settings.max_request_bytes,
        JSON_SORT_KEYS=False,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        # Behind an https address the browser must never send the session over plain http.
        SESSION_COOKIE_SECURE=(settings.public_base_url or "").lower().startswith("https://"),
        # A form stays valid for a whole shift; the token is still bound to the login session.
        WTF_CSRF_TIME_LIMIT=12 * 3600,
    )
    app.session_interface = CookieSessionInterface()
    app.json = OrjsonProvider(app)
    app.json.ensure_ascii = False
    app.json.sort_keys = False
    if settings.trusted_proxy_hops:
        hops = settings.trusted_proxy_hops
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops, x_port=hops)

    app.extensions["hotline"] = runtime
    init_babel(app)
    register_error_handlers(app)
    app.teardown_appcontext(close_request_connection)
    text_guard.init_app(app)
    for blueprint in (v1.bp, twilio.bp, offers.bp, auth.bp, queue.bp, ticket_pages.bp, dashboard.bp, exports.bp):
        app.register_blueprint(blueprint)
    app.register_blueprint(agency_api.bp)
    for blueprint in (checklist_api.bp, kb_api.bp, kb_pages.bp):
        app.register_blueprint(blueprint)
    app.register_blueprint(portal.bp)
    app.register_blueprint(tokens_admin.bp)
    app.register_blueprint(dispatch_api.bp)
    app.register_blueprint(dispatch_panel.bp)
    for blueprint in (platform_api.bp, open311.bp, openapi.bp):
        app.register_blueprint(blueprint)
    for blueprint in (merge_api.bp, users_admin.bp, agency_pages.bp):
        app.register_blueprint(blueprint)

    # The JSON API checks bearer tokens, Twilio webhooks their signatures and offer pages their signed
    # links; every other form needs the session's CSRF token.
    csrf = CSRFProtect(app)
    for blueprint in (v1.bp, twilio.bp, offers.bp):
        csrf.exempt(blueprint)
    csrf.exempt(agency_api.bp)
    csrf.exempt(checklist_api.bp)
    csrf.exempt(dispatch_api.bp)
    for blueprint in (platform_api.bp, open311.bp, merge_api.bp):
        csrf.exempt(blueprint)
    ratelimit.init_app(app, settings)
    auth.init_login(app)

    @app.get("/healthz")
    def healthz():
        return jsonify({"status": "ok"})

    return app
