"""The command line has one dispatch: every command names its handler when its parser is built,
and ``main`` looks it up once (no if-chain whose order matters)."""

from __future__ import annotations

import argparse
import inspect

import pytest

from empathic_agent.cli._common import dispatch, handled_by, settings_parent
from empathic_agent.cli.main import COMMAND_MODULES, build_parser, main

CALLS: list[tuple[object, argparse.Namespace]] = []


def record(settings, args):  # a handler, as a command module writes one
    CALLS.append((settings, args))
    return 7


def _leaves(parser: argparse.ArgumentParser, path: tuple[str, ...] = (), handler: str | None = None):
    """(path, parser, effective handler) of every leaf command; a group's handler serves the actions
    that do not name their own (argparse copies the group's defaults first)."""
    handler = parser.get_default("handler") or handler
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield path, parser, handler
        return
    for name, child in subs[0].choices.items():
        yield from _leaves(child, path + (name,), handler)


def test_every_command_names_a_handler_that_takes_settings_and_args():
    leaves = list(_leaves(build_parser()))
    assert len(leaves) > 40  # every action of every group
    for path, _parser, target in leaves:
        assert target, f"`empathic {' '.join(path)}` has no handler"
        module, _, func = target.partition(":")
        fn = getattr(__import__(module, fromlist=[func]), func)
        params = list(inspect.signature(fn).parameters)
        assert len(params) == 2, f"{target} must take (settings, args), takes {params}"


def test_a_group_handler_reaches_its_actions_at_parse_time():
    args = build_parser().parse_args(["api-key", "list"])
    assert args.handler == "empathic_agent.cli.api:run_api_key"
    args = build_parser().parse_args(["bench", "tts"])
    assert args.handler == "empathic_agent.cli.speak:run_bench"


def test_help_lists_the_groups_in_the_documented_order():
    parser = build_parser()
    names = list(next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices)
    assert names[:2] == ["chat", "ui"] and names[-1] == "bench"
    assert {"safety", "judge", "eval", "encoders", "train", "memory", "voice-baseline"} <= set(names)
    assert len({m for m, _ in COMMAND_MODULES}) == len(COMMAND_MODULES) - 1  # speech adds two groups


def test_dispatch_runs_the_named_handler_with_settings_from_the_flags():
    CALLS.clear()
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    handled_by(sub.add_parser("try", parents=[settings_parent()]), f"{__name__}:record")
    args = parser.parse_args(["try", "--max-new-tokens", "17"])
    assert dispatch(args) == 7
    settings, seen = CALLS[0]
    assert settings.max_new_tokens == 17 and seen is args


def test_a_handler_must_be_module_and_function():
    with pytest.raises(ValueError, match="module:function"):
        handled_by(argparse.ArgumentParser(), "empathic_agent.cli.chat.run")
    with pytest.raises(LookupError):
        dispatch(argparse.Namespace(command="nothing"))


def test_main_reports_errors_without_a_traceback(capsys, tmp_path):
    # A real command on bad input: the persona file does not exist.
    code = main(["persona", "show", str(tmp_path / "missing.toml")])
    assert code != 0
    assert "Traceback" not in capsys.readouterr().err


def test_every_benchmark_reports_the_same_machine_block():
    """One home for the machine facts (empathic_agent/machine.py): the CLI benchmarks and the UI,
    API and memory benchmarks all report the same keys."""
    import inspect

    import empathic_agent.api.bench as api_bench
    import empathic_agent.memory.bench as memory_bench
    import empathic_agent.ui.bench as ui_bench
    from empathic_agent.cli import _common
    from empathic_agent.machine import machine_info

    info = machine_info()
    assert set(info) == {"cpu_count", "platform", "python", "load_average_1m"} and info["cpu_count"] >= 1
    assert _common.machine_info is machine_info
    for module in (api_bench, memory_bench, ui_bench):
        source = inspect.getsource(module)
        assert "machine_info()" in source and "getloadavg" not in source, module.__name__


@pytest.mark.parametrize("group", ["safety", "eval", "judge", "memory", "train"])
def test_each_action_of_a_group_has_a_handler_of_its_own(group):
    """A command group routes nothing itself (no ``if cmd == ...`` chain): each action names its own
    handler, and the group's parser names none."""
    parser = build_parser()
    groups = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    assert groups[group].get_default("handler") is None
    leaves = {path[1]: target for path, _p, target in _leaves(parser) if path[0] == group}
    assert leaves and len(set(leaves.values())) == len(leaves), leaves


def test_safety_actions_reach_their_handlers():
    leaves = {path[1]: target for path, _p, target in _leaves(build_parser()) if path[0] == "safety"}
    assert set(leaves) >= {"eval", "check", "train", "combine", "train-scope", "train-second-look", "train-clinical",
                           "bench"}
    args = build_parser().parse_args(["safety", "train-second-look", "--esconv", "x", "--budget-only"])
    assert args.handler == "empathic_agent.cli.safety:run_train_second_look" and args.budget_only
