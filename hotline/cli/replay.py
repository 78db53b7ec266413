"""`hotline replay FILE --base-url URL`: send a day of traffic to a running hotline."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
import requests

from hotline import replay as replay_module
from hotline.cli.demo import CREDENTIALS_FILE
from hotline.cli.language import N_, LocalizedCommand, gettext
from hotline.config import load_settings

TIMEOUT_SECONDS = 30


class HttpTransport:
    """Requests to a live service at `base_url`."""

    def __init__(self, base_url: str):
        self.base_url = base_url
        self.session = requests.Session()

    def post(self, path: str, *, form=None, json_body=None, headers: dict[str, str]) -> tuple[int, Any]:
        response = self.session.post(self.base_url + path, data=form, json=json_body, headers=headers,
                                     timeout=TIMEOUT_SECONDS)
        return response.status_code, _body(response)

    def get(self, path: str, *, headers: dict[str, str]) -> tuple[int, Any]:
        response = self.session.get(self.base_url + path, headers=headers, timeout=TIMEOUT_SECONDS)
        return response.status_code, _body(response)


def _body(response: requests.Response) -> Any:
    if response.headers.get("Content-Type", "").startswith("application/json"):
        return response.json()
    return response.text


@click.command(cls=LocalizedCommand,
               help=N_("Send a recorded day of requests (JSON lines) to a running hotline and print a summary."))
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--base-url", default="http://127.0.0.1:5000", show_default=True,
              help=N_("Where the hotline listens."))
@click.option("--credentials", type=click.Path(dir_okay=False, path_type=Path),
              help=N_("JSON file with tokens and the Twilio auth token; defaults to the demo's instance file."))
@click.option("--token", "tokens", multiple=True, metavar="NAME=TOKEN",
              help=N_("API token for a source (elderly_advisor, ...) or 'operator'; overrides the credentials "
                      "file."))
@click.option("--twilio-auth-token", help=N_("Auth token that signs the Twilio webhooks."))
@click.option("--accept-offers", is_flag=True,
              help=N_("After the replay, accept every pending offer as its agency would, by SMS reply."))
def replay(file: Path, base_url: str, credentials: Path | None, tokens: tuple[str, ...],
           twilio_auth_token: str | None, accept_offers: bool) -> None:
    base_url = base_url.rstrip("/")
    settings = load_settings()
    saved = _read_credentials(credentials or settings.instance_dir / CREDENTIALS_FILE, explicit=credentials)
    token_map = dict(saved.get("tokens", {}))
    for item in tokens:
        name, _, value = item.partition("=")
        if not value:
            raise click.BadParameter(gettext("%(item)s is not NAME=TOKEN.", item=item), param_hint="--token")
        token_map[name] = value
    auth_token = twilio_auth_token or settings.twilio_auth_token or saved.get("twilio_auth_token")
    if not auth_token:
        raise click.UsageError(gettext("No Twilio auth token: pass --twilio-auth-token or set "
                                       "HOTLINE_TWILIO_AUTH_TOKEN."))
    if "operator" not in token_map:
        raise click.UsageError(gettext("No operator token to read the results: pass --token operator=TOKEN."))

    transport = HttpTransport(base_url)
    records = replay_module.read_lines(file.read_text(encoding="utf-8").splitlines())
    try:
        counts = replay_module.send_all(records, transport, base_url, auth_token, token_map)
        tickets = replay_module.collect_tickets(transport, token_map["operator"])
        if accept_offers:
            replay_module.accept_pending_offers(transport, base_url, auth_token, token_map["operator"], tickets,
                                                settings.hotline_number)
            tickets = replay_module.collect_tickets(transport, token_map["operator"])
    except requests.ConnectionError as error:
        raise click.ClickException(gettext("Cannot reach %(url)s: %(error)s; is `hotline demo` running?",
                                           url=base_url, error=error)) from None
    # NOTE: the summary is English in both languages, as README.md and README.zh-CN.md quote it.
    click.echo(replay_module.summarise(counts, tickets))
    if counts.errors:
        raise SystemExit(1)


def _read_credentials(path: Path, explicit: Path | None) -> dict:
    if not path.exists():
        if explicit is not None:
            raise click.BadParameter(gettext("%(path)s does not exist.", path=path), param_hint="--credentials")
        return {}
    return json.loads(path.read_text(encoding="utf-8"))
