"""CLI errors print literally: rich markup in a message is not interpreted."""

from __future__ import annotations

import pytest
import typer

from unillm.cli.messages import fail, print_warning


def test_an_install_command_in_an_error_keeps_its_brackets(capsys):
    exit_ = fail("unillm serve needs the serve extra: pip install 'unillm[serve]' [/] [bold]x")
    assert isinstance(exit_, typer.Exit) and exit_.exit_code == 2
    err = capsys.readouterr().err
    assert "error: unillm serve needs the serve extra: pip install 'unillm[serve]' [/] [bold]x" in err


def test_warnings_print_literally_too(capsys):
    print_warning("-e bnb: pip install \"unillm[bnb]\"")
    assert 'warning: -e bnb: pip install "unillm[bnb]"' in capsys.readouterr().err


@pytest.mark.parametrize("values, shown", [([10.0, 10.0, 10.0], "10 ±0%"),
                                           ([9.0, 10.0, 11.0], "10 ±10%"),
                                           ([5.0], "5")])
def test_the_demo_shows_each_figure_with_its_spread(values, shown):
    from unillm.cli.demo import spread

    assert spread(values, "{:.0f}") == shown


def test_bench_progress_messages_print_literally():
    import io

    from unillm.cli.report import RichReporter, reporter

    with reporter() as report:
        assert isinstance(report, RichReporter)
        buffer = io.StringIO()
        report.progress.console.file = buffer
        report.message("retrying: pip install 'unillm[bench]' [/] [bold]x")
    assert "pip install 'unillm[bench]' [/] [bold]x" in buffer.getvalue()
