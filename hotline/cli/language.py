"""The language of the `hotline` command: Simplified Chinese unless the environment requests English.

Messages and help texts are English message ids, marked with gettext() or N_() so that `make messages`
extracts them, and translated with the zh_Hans_CN catalogue in hotline/translations that Flask-Babel
serves the pages from. The language comes from, in order:

1. HOTLINE_CLI_LANGUAGE (zh or en), which wins over the system locale
2. the first of LANGUAGE, LC_ALL, LC_MESSAGES and LANG that is set, the order Python's gettext module
   reads them in; LANGUAGE may list several languages separated by colons
3. otherwise Simplified Chinese, also for locales of other languages and for C, C.UTF-8 and POSIX.

A value that starts with en selects English, and one that starts with zh selects Chinese.

Click keeps help texts as plain strings on its command and option objects. The entry points
(LocalizedGroup and LocalizedCommand) therefore write the translations into the whole command tree in
main(), before click parses the arguments. The message ids stay in attributes such as `help_msgid`.

NOTE: click's own words stay English: "Usage:", "Options:", the --help option, "Error:", the
"[default: ...]" and "[required]" marks, and the messages of its own parameter checks (a missing option,
a value that is not one of the choices). Click also wraps help by characters, not by display columns, so
a line of Chinese help can be up to twice as wide as the terminal.
"""

from __future__ import annotations

import os
from functools import cache
from typing import Any, Literal

import click
from babel.support import NullTranslations, Translations

from hotline import vocabulary
from hotline.i18n import DEFAULT_LOCALE, ENGLISH, TRANSLATIONS_DIR, locale_for_tag
from hotline.validation import N_

__all__ = ["N_", "LocalizedCommand", "LocalizedGroup", "cli_language", "error_message", "gettext", "join",
           "label", "ngettext"]

LANGUAGE_VARIABLE = "HOTLINE_CLI_LANGUAGE"
LOCALE_VARIABLES = ("LANGUAGE", "LC_ALL", "LC_MESSAGES", "LANG")
# Attributes of commands and options that hold text for people, translated by localize_help.
TEXT_ATTRIBUTES = ("help", "prompt", "confirmation_prompt")


def cli_locale() -> str:
    """Return the catalogue the environment selects: zh_Hans_CN or en."""
    chosen = _locale_of(os.environ.get(LANGUAGE_VARIABLE, ""))
    if chosen is not None:
        return chosen

    for name in LOCALE_VARIABLES:
        value = os.environ.get(name)
        if not value:
            continue
        for entry in value.split(":"):
            chosen = _locale_of(entry)
            if chosen is not None:
                return chosen
        return DEFAULT_LOCALE
    return DEFAULT_LOCALE


def _locale_of(value: str) -> str | None:
    """Map a locale name such as "en_US.UTF-8", "zh_CN.GB18030@stroke" or "en" to a catalogue, or None."""
    tag = value.split(".", 1)[0].split("@", 1)[0]
    return locale_for_tag(tag) if tag else None


def cli_language() -> Literal["zh", "en"]:
    """Return "zh" or "en", to pick from the (Chinese, English) label pairs of hotline.vocabulary."""
    return "en" if cli_locale() == ENGLISH else "zh"


@cache
def _catalogue(locale: str) -> NullTranslations:
    if locale == ENGLISH:
        return NullTranslations()
    # NOTE: without compiled .mo files (`make venv` compiles them) this returns NullTranslations, so the
    # output falls back to the English message ids.
    return Translations.load(str(TRANSLATIONS_DIR), [locale])


def gettext(message: str, **params: Any) -> str:
    """Translate `message` into the CLI language and fill in its %(name)s parameters, as Flask-Babel does."""
    text = _catalogue(cli_locale()).gettext(message)
    return text % params if params else text


def ngettext(singular: str, plural: str, num: int, **params: Any) -> str:
    """Translate the form of a message that fits `num`, which is available as %(num)d."""
    params.setdefault("num", num)
    text = _catalogue(cli_locale()).ngettext(singular, plural, num)
    return text % params


def label(mapping: dict[str, tuple[str, str]], code: str) -> str:
    """Return the label of `code` in the CLI language, or the code itself when it has none."""
    return vocabulary.label(mapping, code, cli_language())


def join(items) -> str:
    """Join items into one list for the CLI language: with 、 in Chinese and with commas in English."""
    return ("、" if cli_language() == "zh" else ", ").join(str(item) for item in items)


def error_message(error: Exception) -> str:
    """Translate an error that carries an N_-marked `template` and its `params`, such as InputError."""
    template = getattr(error, "template", None)
    if template is None:
        return str(error)
    return gettext(template, **getattr(error, "params", {}))


def localize_help(command: click.Command) -> None:
    """Write the CLI language's help texts and prompts into `command`, its options and its subcommands."""
    for item in (command, *command.params):
        for attribute in TEXT_ATTRIBUTES:
            source = item.__dict__.setdefault(f"{attribute}_msgid", getattr(item, attribute, None))
            if isinstance(source, str) and source:
                setattr(item, attribute, gettext(source))

    if isinstance(command, click.Group):
        for subcommand in command.commands.values():
            localize_help(subcommand)


class LocalizedCommand(click.Command):
    """A command whose help is translated into the CLI language each time it runs as the entry point."""

    def main(self, *args: Any, **kwargs: Any) -> Any:
        localize_help(self)
        return super().main(*args, **kwargs)


class LocalizedGroup(click.Group):
    """A group whose help, and that of every subcommand, is translated each time it runs as the entry point."""

    command_class = LocalizedCommand
    group_class = type

    def main(self, *args: Any, **kwargs: Any) -> Any:
        localize_help(self)
        return super().main(*args, **kwargs)
