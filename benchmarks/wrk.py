"""`wrk` (Debian's package) as the load generator: C, epoll, never the narrow part here.

A Lua script makes wrk send one fixed request (method, path, headers, body) and count every
answer whose status is not the expected one; the summary comes back as JSON from wrk's `done`
hook. An httpx loop in one Python process tops out near the rates it would measure here
(it read plain Serve at 258 req/s where wrk reads 720), so every throughput figure uses this.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from benchmarks.load import check_loopback

_SCRIPT = r"""
wrk.method = %(method)s
wrk.body = %(body)s
%(headers)s
local expected = %(expect)d
local wrong = 0
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  wrong = 0
end

function response(status, headers, body)
  if status ~= expected then wrong = wrong + 1 end
end

function done(summary, latency, requests)
  local unexpected = 0
  for _, thread in ipairs(threads) do unexpected = unexpected + thread:get("wrong") end
  io.write("WRK_JSON ")
  io.write(string.format(
    '{"requests": %%d, "seconds": %%.6f, "unexpected": %%d, "connect": %%d, "read": %%d, ' ..
    '"write": %%d, "timeout": %%d, "p50_us": %%d, "p99_us": %%d}\n',
    summary.requests, summary.duration / 1e6, unexpected, summary.errors.connect,
    summary.errors.read, summary.errors.write, summary.errors.timeout,
    latency:percentile(50), latency:percentile(99)))
end
"""


@dataclass(frozen=True)
class WrkResult:
    requests: int
    seconds: float
    errors: int  # answers with another status, and socket errors
    p50_ms: float
    p99_ms: float

    @property
    def rate(self) -> float:
        """Answers with the expected status, per second."""
        return (self.requests - self.errors) / self.seconds if self.seconds else 0.0


def _lua_string(value: str) -> str:
    return json.dumps(value)  # a JSON string literal is a valid Lua string literal here


def available() -> bool:
    return shutil.which("wrk") is not None


def run(
    url: str,
    *,
    method: str = "GET",
    body: str = "",
    headers: dict[str, str] | None = None,
    expect: int = 200,
    connections: int = 32,
    threads: int = 1,
    seconds: float = 8,
) -> WrkResult:
    """Load `url` with wrk for `seconds`; return what it measured.

    Raises:
        SystemExit: `url` is not on loopback, or wrk is not installed.
    """
    check_loopback(url)
    if not available():
        raise SystemExit("wrk is not installed (Debian: apt-get install wrk)")
    header_lines = "\n".join(
        f"wrk.headers[{_lua_string(k)}] = {_lua_string(v)}" for k, v in (headers or {}).items()
    )
    script = _SCRIPT % {
        "method": _lua_string(method),
        "body": _lua_string(body),
        "headers": header_lines,
        "expect": expect,
    }
    # wrk's thread Lua states are separate: the `wrong` count is read back per thread.
    script = script.replace("local wrong = 0", "wrong = 0")
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as handle:
        handle.write(script)
        path = Path(handle.name)
    try:
        out = subprocess.run(
            [
                "wrk",
                f"-t{threads}",
                f"-c{connections}",
                f"-d{max(1, round(seconds))}s",
                "--timeout",
                "30s",
                "-s",
                str(path),
                url,
            ],
            check=True,
            capture_output=True,
            text=True,
            timeout=seconds + 60,
        ).stdout
    finally:
        path.unlink(missing_ok=True)
    line = next(x for x in out.splitlines() if x.startswith("WRK_JSON "))
    data = json.loads(line.split(" ", 1)[1])
    socket_errors = data["connect"] + data["read"] + data["write"] + data["timeout"]
    return WrkResult(
        requests=data["requests"],
        seconds=data["seconds"],
        errors=data["unexpected"] + socket_errors,
        p50_ms=data["p50_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
    )
