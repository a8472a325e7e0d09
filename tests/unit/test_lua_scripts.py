"""Redis scripts are `.lua` files: loaded with their includes, documented, none left in Python."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from app.core.lifecycle import ERROR_DEADLINE, FINAL_STATES, NO_RECORD, TaskStatus
from app.core.redis_scripts import load_script

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = sorted(p for p in (ROOT / "app").rglob("lua/*.lua"))
INCLUDES = sorted(p for p in (ROOT / "app").rglob("lua/includes/*.lua"))


def test_includes_are_inlined_once_each(tmp_path):
    lua = tmp_path / "lua"
    (lua / "includes").mkdir(parents=True)
    (lua / "includes" / "a.lua").write_text("local A = 1\n")
    (lua / "includes" / "b.lua").write_text('--- @include "a.lua"\nlocal B = A + 1\n')
    (lua / "op.lua").write_text(
        '--- @include "includes/a.lua"\n--- @include "includes/b.lua"\nreturn B\n'
    )
    script = load_script(str(tmp_path / "module.py"), "op")
    assert script.source.count("local A = 1") == 1
    assert (
        script.source.index("local A")
        < script.source.index("local B")
        < script.source.index("return B")
    )
    assert script.name == "op" and len(script.sha) == 40


def test_a_missing_include_fails_at_load(tmp_path):
    (tmp_path / "lua").mkdir()
    (tmp_path / "lua" / "op.lua").write_text('--- @include "includes/nowhere.lua"\nreturn 1\n')
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_script(str(tmp_path / "module.py"), "op")


@pytest.mark.parametrize("path", SCRIPTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_script_says_what_it_takes_and_returns_and_is_loaded(path):
    header = "".join(line for line in path.read_text().splitlines(True) if line.startswith("--"))
    assert header.startswith(f"-- {path.stem}:"), "first line: `-- <name>: what it does`"
    assert "Returns" in header
    if "KEYS" not in header:
        pytest.fail("the header lists the KEYS the script touches")
    callers = [
        p
        for p in path.parent.parent.glob("*.py")
        if f'load_script(__file__, "{path.stem}")' in p.read_text()
    ]
    assert callers, f"no module beside {path.parent} loads {path.stem}"


def test_no_lua_is_left_inside_python_strings():
    offenders = [
        str(p.relative_to(ROOT))
        for top in ("app", "deployments", "registry")
        for p in (ROOT / top).rglob("*.py")
        if re.search(r"redis\.call\(", p.read_text())
    ]
    assert not offenders


def test_the_scripts_task_states_are_the_lifecycles():
    text = (ROOT / "app/tasks/lua/includes/states.lua").read_text()
    names = dict(re.findall(r"^local ([A-Z_]+) = '([^']*)'$", text, re.MULTILINE))
    assert names.pop("NO_RECORD") == NO_RECORD
    assert names.pop("ERROR_DEADLINE") == ERROR_DEADLINE
    assert names == {status.name: status.value for status in TaskStatus}
    final = re.search(r"^local FINAL = \{(.*)\}$", text, re.MULTILINE)
    assert final is not None
    assert set(re.findall(r"\[([A-Z]+)\] = true", final.group(1))) == {s.name for s in FINAL_STATES}


def test_every_include_is_used():
    sources = "".join(p.read_text() for p in SCRIPTS + INCLUDES)
    for include in INCLUDES:
        assert f'{include.name}"' in sources, include
