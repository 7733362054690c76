"""Without flwr: ``ecos_fast.flower`` (the transport-free roles) imports; its Flower apps raise
MissingDependencyError naming ``pip install 'ecos-fast[flower]'`` (issue 15)."""

from __future__ import annotations

import subprocess
import sys

CHECK = """
import sys
sys.modules["flwr"] = None  # as if flwr were not installed: `import flwr...` fails
import ecos_fast.flower
from ecos_fast.errors import MissingDependencyError
assert callable(ecos_fast.flower.answer)
try:
    import ecos_fast.flower.apps
except MissingDependencyError as exc:
    print("MISSING", exc)
else:
    raise SystemExit("ecos_fast.flower.apps imported without flwr")
try:
    import ecos_fast.flower.deploy
except MissingDependencyError as exc:
    print("MISSING", exc)
else:
    raise SystemExit("ecos_fast.flower.deploy imported without flwr")
"""


def test_the_apps_without_flwr_say_which_extra_to_install() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", CHECK], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "pip install 'ecos-fast[flower]'" in proc.stdout
    lines = proc.stdout.splitlines()
    assert len(lines) == 2 and all(
        x.startswith("MISSING ecos_fast.flower needs flwr") for x in lines
    )


def test_a_missing_flwr_is_an_optional_extra_with_its_install_line() -> None:
    """Before: _extras did not know flwr, so a ModuleNotFoundError for it reached the command
    line's framework as a bug (exit 1, a traceback) instead of exit 2 and the pip line."""
    from ecos_fast._extras import EXTRAS, missing_dependency
    from ecos_fast.errors import MissingDependencyError

    assert EXTRAS["flwr"][0] == "flower"
    err = missing_dependency(ModuleNotFoundError("No module named 'flwr.app'", name="flwr.app"))
    assert isinstance(err, MissingDependencyError)
    assert str(err) == "this needs flwr, which is not installed: pip install 'ecos-fast[flower]'"
