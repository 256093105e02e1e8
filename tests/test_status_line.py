"""The backfill status line on a terminal: log lines scroll above it, never through it."""

from __future__ import annotations

import io
import logging

from reconciler.commands.status_line import ERASE_LINE, StatusLine
from reconciler.commands.wording import human_size, plural
from reconciler.observability.logs import configure_logging


def test_a_log_line_erases_the_status_and_the_status_comes_back_below_it() -> None:
    screen = io.StringIO()
    line = StatusLine(screen)
    configure_logging("text", stream=line)  # type: ignore[arg-type]
    try:
        line.show("[1/3] failed: 0")
        logging.getLogger("acceld.test").warning("converted")
        line.show("[2/3] failed: 0")
        line.done()
    finally:
        configure_logging("text")
    written = screen.getvalue()
    log_start = written.index("time=")
    assert written[:log_start].endswith(ERASE_LINE)
    log_end = written.index("\n", log_start)
    assert written[log_end + 1 :].startswith("[1/3] failed: 0" + ERASE_LINE + "[2/3]")
    assert written.endswith("[2/3] failed: 0\n")
    # Each visible line is whole: a log record or a status, never a mix.
    visible = [part.rsplit(ERASE_LINE, 1)[-1] for part in written.split("\n") if part]
    assert visible[0].startswith("time=")
    assert visible[1] == "[2/3] failed: 0"


def test_sizes_and_counts_read_as_english() -> None:
    assert human_size(512) == "512 B"
    assert human_size(1536) == "1.5 KiB"
    assert human_size(20 << 30) == "20.0 GiB"
    assert plural(1, "project") == "1 project"
    assert plural(3, "repository") == "3 repositories"
    assert plural(2, "enabled policy") == "2 enabled policies"
