"""Command-line options made from the option specs of charlm.config: their default, help,
choices and range, and a bad value refused in one line naming the option.

    hidden: Optional[int] = config_option("hidden", level_default=True)
"""

from __future__ import annotations

from collections.abc import Callable

import typer
from typer.core import TyperCommand

from charlm.config import FIELDS, LEVEL_DEFAULTS, spec_of
from charlm.errors import CharlmError, OptionError
from charlm.options import Spec, flag_of

_KIND_NAMES = {int: "int", float: "float", str: "text"}
_TAKES = {int: "an integer", float: "a number", str: "text"}


def config_option(name: str, *decls: str, level_default: bool = False, default=..., **extra):
    """A typer option for the config field (or run option) `name`: its default (None when the
    level chooses it: LEVEL_DEFAULTS), help, choices and range."""
    spec = spec_of(name)
    text = spec.help
    if level_default:
        text += " \\[default: " + ", ".join(f"{d[name]:g} {level}" for level, d in LEVEL_DEFAULTS.items()) + "]"
    if default is ...:
        default = None if level_default else getattr(FIELDS[name][0], name)  # RUN_OPTIONS: given
    return spec_option(spec, default, *decls, flag=flag_of(name, spec), help=text, **extra)


def spec_option(spec: Spec, default, *decls: str, flag: str, help: str | None = None,
                parser: Callable | None = None, **extra):
    """A typer option showing the spec's choices or range; a value outside them exits 2 with
    one line naming `flag`. parser(text) -> value replaces the spec's own parsing."""
    if spec.kind is bool:
        return typer.Option(default, *decls, help=help or spec.help, **extra)
    extra.setdefault("metavar", metavar(spec))
    return typer.Option(default, *decls, help=help or spec.help, parser=parser or value_parser(flag, spec),
                        **extra)


def metavar(spec: Spec) -> str:
    """What the help shows of a value: <lstm|gru>, <float> x>0."""
    if spec.choices:
        return "<" + "|".join(map(str, spec.choices)) + ">"
    kind = f"<{_KIND_NAMES[spec.kind]}>"
    return kind if spec.range is None else f"{kind} {spec.range.formula()}"


def value_parser(flag: str, spec: Spec) -> Callable:
    """text -> a valid value of the option, or OptionError naming it."""
    def parse(value):
        if not isinstance(value, str):  # a default, not a word of the command line
            return value
        try:
            parsed = spec.parse(value)
        except ValueError:
            raise OptionError(f"{flag} takes {_TAKES[spec.kind]}, not {value!r}") from None
        complaint = spec.complaint(flag, parsed)
        if complaint is not None:
            raise OptionError(complaint)
        return parsed

    return parse


class OneLineErrors(TyperCommand):
    """A command whose bad option values (OptionError from a parser, or typer's own checks)
    end it with one line on stderr and exit status 2, as the library's usage errors do."""

    def make_context(self, info_name, args, parent=None, **extra):
        from charlm.cli.common import fail

        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except CharlmError as exc:
            fail(str(exc), exc.exit_code)
        except typer.BadParameter as exc:
            fail(exc.format_message(), exc.exit_code)
