"""Log lines carry no Python reprs: a field without a value is left out."""

from __future__ import annotations

import io
import logging

from reconciler.observability.logs import configure_logging


def test_a_field_without_a_value_is_left_out_of_a_text_line() -> None:
    out = io.StringIO()
    configure_logging("text", stream=out)
    try:
        logging.getLogger("acceld.test").info(
            "Webhook accepted", extra={"repository": "team/app", "tag": None}
        )
    finally:
        configure_logging("text")
    line = out.getvalue()
    assert "repository=team/app" in line
    assert "tag=" not in line
    assert "None" not in line
