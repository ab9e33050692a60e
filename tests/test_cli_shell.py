"""The CLI shell: version, fast help, and the user-error-to-exit-code contract."""

import subprocess
import sys

import pytest
import typer

from cce_bench import __version__
from cce_bench.cli import app, main
from cce_bench.errors import CceBenchError

#: A hang guard for a subprocess, generous for the slowest machine under load; not a speed check.
HANG_GUARD_S = 300


def _cli(*args: str) -> subprocess.CompletedProcess:
    code = "from cce_bench.cli import main; main()"
    return subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=HANG_GUARD_S
    )


def test_version_prints_package_version():
    result = _cli("--version")
    assert result.returncode == 0
    assert __version__ in result.stdout


def test_help_imports_no_heavy_library():
    """``--help`` answers at once because it imports neither torch, Ray, Optuna nor timm (each
    takes seconds); the check is on what it imports, which holds on any machine, not on time."""
    code = (
        "import sys\n"
        "from cce_bench.cli import main\n"
        "try:\n"
        "    main(['--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "heavy = [name for name in ('torch', 'ray', 'optuna', 'timm') if name in sys.modules]\n"
        "print('HEAVY', heavy)\n"
    )
    probe = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=HANG_GUARD_S
    )
    assert "Usage" in probe.stdout
    assert "HEAVY []" in probe.stdout


def test_user_error_exits_2_with_one_red_line(capsys):
    @app.command("_raise-user-error", hidden=True)
    def _raise() -> None:
        raise CceBenchError("study file studies/x.toml: no such file;\n pass an existing path")

    with pytest.raises(SystemExit) as exit_info:
        main(["_raise-user-error"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "studies/x.toml" in err


def test_unexpected_exception_keeps_traceback():
    @app.command("_raise-bug", hidden=True)
    def _bug() -> None:
        raise RuntimeError("a bug")

    with pytest.raises(RuntimeError, match="a bug"):
        main(["_raise-bug"])


def test_typer_exit_code_passes_through():
    @app.command("_exit-3", hidden=True)
    def _exit() -> None:
        raise typer.Exit(3)

    with pytest.raises(SystemExit) as exit_info:
        main(["_exit-3"])
    assert exit_info.value.code == 3


def test_unknown_option_is_a_usage_error_with_exit_2():
    result = _cli("--no-such-option")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "no-such-option" in result.stderr


def test_python_dash_m_runs_the_same_cli():
    result = subprocess.run(
        [sys.executable, "-m", "cce_bench", "--version"],
        capture_output=True,
        text=True,
        timeout=HANG_GUARD_S,
    )
    assert result.returncode == 0
    assert __version__ in result.stdout


def test_shell_completion_can_be_installed():
    assert "--install-completion" in _cli("--help").stdout


COMMANDS = ("run", "tune", "evaluate", "status", "dashboard", "train", "report",
            "data check", "data prepare", "data synth")  # fmt: skip


@pytest.mark.parametrize("command", COMMANDS)
def test_every_commands_help_ends_with_an_example(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([*command.split(), "--help"])
    assert exit_info.value.code == 0
    help_text = capsys.readouterr().out
    assert f"Example: cce-bench {command}" in " ".join(help_text.split())
