"""The `hotline` command."""

from __future__ import annotations

import click

from hotline.cli.admin import db, tokens, users
from hotline.cli.agencies import agencies_group
from hotline.cli.demo import demo
from hotline.cli.language import N_, LocalizedGroup
from hotline.cli.replay import replay
from hotline.cli.rules import rules
from hotline.cli.sla import sla


@click.group(cls=LocalizedGroup, help=N_("Ticketing and referral routing for the funeral-service hotline 59200496. "
                                          "Output is in Simplified Chinese; HOTLINE_CLI_LANGUAGE=en or an English "
                                          "locale (LANG=en_US.UTF-8) switches it to English."))
def main() -> None:
    from hotline.logging_setup import configure_logging

    configure_logging()


for command in (demo, replay, db, users, tokens, rules, sla, agencies_group):
    main.add_command(command)
