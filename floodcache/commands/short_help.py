"""`--help` that fits one screen: a command's everyday options in full, its rarer ones by
name only, and `--help-all` for every option with its text and default."""

from __future__ import annotations

import click

HELP_ALL = "--help-all"


def _show_everything(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if value and not ctx.resilient_parsing:
        ctx.meta[HELP_ALL] = True
        click.echo(ctx.get_help(), color=ctx.color)
        ctx.exit()


class ShortHelpCommand(click.Command):
    """A click command whose `--help` names the options in `advanced` (parameter names)
    without their text; `--help-all` describes them too. Nothing about parsing changes."""

    def __init__(self, *args, advanced: tuple[str, ...] = (), **kwargs):
        super().__init__(*args, **kwargs)
        self.advanced = frozenset(advanced)
        unknown = self.advanced - {param.name for param in self.params}
        if unknown:  # a renamed option must not fall out of the help unseen
            raise ValueError(f"{self.name}: no options named {sorted(unknown)}")
        self.params.append(
            click.Option(
                [HELP_ALL],
                is_flag=True,
                expose_value=False,
                is_eager=True,
                callback=_show_everything,
                help="Show every option with its text and default.",
            )
        )

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        if ctx.meta.get(HELP_ALL):
            return super().format_options(ctx, formatter)
        common, rare = [], []
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is None:
                continue
            if param.name in self.advanced:
                rare.append(param.opts[0])
            else:
                common.append(record)
        with formatter.section("Options"):
            formatter.write_dl(common)
        if rare:
            with formatter.section(f"Advanced options ({HELP_ALL} describes them)"):
                formatter.write_text(", ".join(rare))


# The reading options of every command that reads a data set: rarer than --data itself.
READING_ADVANCED: tuple[str, ...] = (
    "images",
    "masks",
    "on_mismatch",
    "allow_outside_paths",
    "max_pixels",
)
READING_ADVANCED += ("bands", "scale")
