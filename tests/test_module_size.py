"""No module of the packages grows past about 400 lines (issue 14): a module that does
is doing two things, and the second one wants a home of its own."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("domain", "projections", "realtime", "inference", "darkroom")
MOST_LINES = 410  # "about 400": domain/task.py, one aggregate with its 12 events, is 408


def test_no_module_of_the_packages_is_much_over_400_lines() -> None:
    sizes = {
        str(path.relative_to(ROOT)): len(path.read_text().splitlines())
        for package in PACKAGES
        for path in (ROOT / package).rglob("*.py")
    }
    assert len(sizes) > 100  # the packages were found
    too_long = {name: lines for name, lines in sizes.items() if lines > MOST_LINES}
    assert too_long == {}, f"split these modules: {too_long}"
