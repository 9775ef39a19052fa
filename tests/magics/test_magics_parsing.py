"""How a magic line splits into options and a prompt, and a project name from a prompt."""

from __future__ import annotations

import pytest
from IPython.core.error import UsageError

from ecode_jupyter.client.rest import ApiError
from ecode_jupyter.magics import credits_report, name_from_prompt, parse_prompt_line


def test_leading_options_then_the_prompt_as_typed() -> None:
    opts, prompt = parse_prompt_line(
        '--model gpt-4.1 --new "My  App" --detach a Flask API --with "quotes"'
    )
    assert opts.model == "gpt-4.1"
    assert opts.new == "My  App"
    assert opts.detach is True
    assert prompt == 'a Flask API --with "quotes"'


def test_equals_sign_and_single_quotes() -> None:
    opts, prompt = parse_prompt_line("--project=@bob/todo --template 'flask-api' add auth")
    assert (opts.project, opts.template, prompt) == ("@bob/todo", "flask-api", "add auth")


def test_a_bare_double_dash_ends_the_options() -> None:
    opts, prompt = parse_prompt_line("--model m -- --new is part of the prompt")
    assert opts.model == "m" and opts.new is None
    assert prompt == "--new is part of the prompt"


def test_unknown_or_incomplete_options_are_usage_errors() -> None:
    with pytest.raises(UsageError, match="unknown option --colour"):
        parse_prompt_line("--colour red a site")
    with pytest.raises(UsageError, match="--model needs a value"):
        parse_prompt_line("--model")


def test_project_names_from_prompts() -> None:
    assert name_from_prompt("a Flask todo API with tests") == "A Flask todo API with tests"
    assert name_from_prompt("\n\n  build me: a chat app!\nwith rooms") == "Build me: a chat app"
    long = name_from_prompt("word " * 40)
    assert len(long) <= 60 and not long.endswith(" ")
    assert name_from_prompt("!!!") == "Untitled project"


def test_the_credit_report_speaks_credits() -> None:
    account = {
        "user": "alice",
        "balance_micros": 5_000_000,
        "reserved_micros": 500_000,
        "available_micros": 4_500_000,
        "allowance": {
            "monthly_micros": 10_000_000,
            "left_micros": 2_000_000,
            "renews_at": "2025-02-01T00:00:00+00:00",
        },
        "month": {"period": "2025-01", "spent_micros": 8_000_000},
        "budgets": {
            "user": None,
            "projects": [
                {"name": "Todo", "limit_micros": 3_000_000, "left_micros": 1_000_000},
            ],
        },
    }
    report = credits_report(account)
    assert "credits of alice: 4.5 credits available" in report
    assert "balance 5 credits" in report and "0.5 credits" in report
    assert "monthly allowance: 10 credits, 2 credits left, renews 2025-02-01" in report
    assert "spent in 2025-01: 8 credits" in report
    assert "budget of Todo: 1 credit left of 3 credits" in report


def test_a_conflict_names_the_run_in_the_way() -> None:
    busy = ApiError(409, "conflict", "the project already has an active run", {"run_id": "abc"})
    assert "%ecode watch abc" in busy.hint and "%ecode cancel abc" in busy.hint
    broke = ApiError(402, "insufficient_credits", "this run needs 2 credits, 0 left")
    assert broke.hint.startswith("Out of credits — ask your admin")
