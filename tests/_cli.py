"""Running the ``hwpareto`` command in-process for tests, with the one check every command's failure must pass."""

from __future__ import annotations

from typer.testing import CliRunner

from hwpareto.cli import app

runner = CliRunner()


def hw(*args: object, ok: bool = True) -> tuple[str, str]:
    """Run ``hwpareto ARGS``; assert success, or (``ok=False``) a user error: exit 1, one ``error:`` line on stderr and
    no traceback; (stdout, stderr)."""
    result = runner.invoke(app, [str(a) for a in args])
    if ok:
        assert result.exit_code == 0, f"exit {result.exit_code}: {result.stdout}{result.stderr}{result.exception!r}"
    else:
        assert result.exit_code == 1, f"expected a user error, got exit {result.exit_code}: {result.output}"
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
        assert "Traceback" not in result.output
    return result.stdout, result.stderr


def hw_text(*args: object, ok: bool = True) -> str:
    """:func:`hw`'s stdout on success, its one-line stderr on a user error."""
    stdout, stderr = hw(*args, ok=ok)
    return stdout if ok else stderr
