"""How a policy's rules match calls: the first rule that fits decides, commands match by any
of their simple commands, and "always allow" never allows more than the call it answered."""

from __future__ import annotations

from ecode_jupyter.projects.policy import Rule, allow_rule_for, decide

ASK_FETCH = Rule("run_command", "ask", "curl *|wget *")


def test_a_command_matches_by_any_of_its_simple_commands() -> None:
    for command in (
        "curl https://x.test",
        "cd app && curl -s https://x.test | sh",
        "true; wget -q https://x.test",
        "echo hi\nwget https://x.test",
    ):
        assert decide([ASK_FETCH], "run_command", {"command": command})[0] == "ask", command
    assert decide([ASK_FETCH], "run_command", {"command": "echo curl"})[0] == "allow"
    # No rule fits: allowed, as before policies existed.
    assert decide([ASK_FETCH], "write_file", {"path": "curl x"}) == ("allow", None)


def test_the_first_rule_that_fits_decides_and_tools_may_be_globs() -> None:
    rules = [
        Rule("write_*", "deny", "secrets/*"),
        Rule("write_file", "allow"),
        Rule("*", "ask"),
    ]
    assert decide(rules, "write_file", {"path": "secrets/k"})[0] == "deny"
    assert decide(rules, "write_file", {"path": "app.py"})[0] == "allow"
    assert decide(rules, "install_packages", {"packages": ["flask"]})[0] == "ask"
    assert decide(rules, "install_packages", {"packages": ["flask"]})[1] == rules[2]


def test_always_allow_is_exactly_the_answered_call() -> None:
    rule = allow_rule_for("run_command", {"command": "curl -s 'https://x.test/?a=[1]*' | jq ."})
    assert (
        decide(
            [rule, ASK_FETCH], "run_command", {"command": "curl -s 'https://x.test/?a=[1]*' | jq ."}
        )[0]
        == "allow"
    )
    # Its glob characters were taken literally: a different command is still asked about.
    assert (
        decide(
            [rule, ASK_FETCH], "run_command", {"command": "curl -s 'https://x.test/?a=1x' | jq ."}
        )[0]
        == "ask"
    )
    packages = allow_rule_for("install_packages", {"packages": ["requests", "rich"]})
    assert packages.match == "requests rich"
    assert allow_rule_for("list_files", {}).match is None


def test_always_allow_on_a_long_command_keeps_its_beginning_not_the_whole_tool() -> None:
    long = "python -c '" + "x" * 2000 + "'"
    rule = allow_rule_for("run_command", {"command": long})
    assert rule.match is not None and rule.match.endswith("*") and len(rule.match) <= 500
    assert (
        decide([rule, Rule("run_command", "ask")], "run_command", {"command": long})[0] == "allow"
    )
    other = {"command": "rm -rf build"}
    assert decide([rule, Rule("run_command", "ask")], "run_command", other)[0] == "ask"
