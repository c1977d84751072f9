"""``make bench``: run every ``bench/bench_*.py``, print one table, save it as JSON.

    .venv/bin/python bench/run.py                    # quick sizes (~10-15 min on an idle 2-core box)
    BENCH_FULL=1 .venv/bin/python bench/run.py       # 1M products, 10M audit events (much longer)
    .venv/bin/python bench/run.py --only audit,catalog
    .venv/bin/python bench/run.py --publish          # also bench/results/latest.json + the table
                                                     # in docs/performance.md
    BENCH_PROFILE=1 ...                              # py-spy samples every server, prints where time goes

Each script runs in its own process group with ``SLUICE_BENCH_REPORT`` naming the file its
rows go to (``bench/report.py``); when it ends (or times out, or you press Ctrl-C) the whole
group is killed, so no server outlives the run. The JSON under ``bench/results/`` records the
machine (CPU model and count, load average before and after each script), date, commit,
back ends and load generator, then the rows: machine-readable for later comparisons.
Environment: ``BENCH_BACKENDS`` (default ``postgresql``), ``SLUICE_BENCH_POSTGRES_URL``,
``BENCH_LOADGEN=python`` (force the Python generator), ``BENCH_SCRIPT_TIMEOUT`` (seconds).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from bench import common, load  # noqa: E402
from bench.report import Row, table_lines  # noqa: E402

RESULTS = HERE / "results"
DOC = ROOT / "docs" / "performance.md"
TABLE_START, TABLE_END = "<!-- bench-table:start -->", "<!-- bench-table:end -->"


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def git(*args: str) -> str:
    out = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False)
    return out.stdout.strip()


def loadgen_description() -> str:
    if load.tool() == "wrk":
        version = subprocess.run(["wrk", "-v"], capture_output=True, text=True, check=False)
        first = (version.stdout or version.stderr).split("[")[0].split()
        return f"wrk {first[1] if len(first) > 1 else shutil.which('wrk')}"
    return "python (bench/load.py in a separate process)"


def machine() -> dict[str, Any]:
    return {
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def run_script(script: Path, timeout: float) -> dict[str, Any]:
    """Run one benchmark script in its own process group; return its rows and bookkeeping."""
    with tempfile.NamedTemporaryFile(prefix="sluice-bench-report-", suffix=".json", delete=False) as f:
        report_path = Path(f.name)
    env = {**os.environ, "SLUICE_BENCH_REPORT": str(report_path), "PYTHONUNBUFFERED": "1"}
    info: dict[str, Any] = {"script": str(script.relative_to(ROOT)), "load_before": load_average()}
    start = time.monotonic()
    proc = subprocess.Popen([sys.executable, str(script)], cwd=ROOT, env=env, start_new_session=True)
    try:
        info["returncode"] = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        info["returncode"] = None
        info["error"] = f"timed out after {timeout:.0f}s"
    finally:
        kill_group(proc)
    info["seconds"] = round(time.monotonic() - start, 1)
    info["load_after"] = load_average()
    try:
        data = json.loads(report_path.read_text() or "{}")
    except (OSError, ValueError):
        data = {}
    finally:
        report_path.unlink(missing_ok=True)
    info["rows"] = data.get("rows", [])
    info["notes"] = data.get("notes", [])
    info["bench"] = data.get("bench", script.stem.removeprefix("bench_"))
    return info


def kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the script's process group (servers it started included), then SIGKILL."""
    for sig, grace in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 0.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            try:
                os.killpg(proc.pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)


def publish(result: dict[str, Any], lines: list[str]) -> None:
    """Commit-ready copies: bench/results/latest.json and the table in docs/performance.md."""
    (RESULTS / "latest.json").write_text(json.dumps(result, indent=2) + "\n")
    if not DOC.exists():
        return
    text = DOC.read_text()
    if TABLE_START not in text or TABLE_END not in text:
        print(f"{DOC} has no {TABLE_START} ... {TABLE_END} block; table not written there")
        return
    block = "\n".join([TABLE_START, "", header_line(result), "", *lines, "", TABLE_END])
    DOC.write_text(re.sub(re.escape(TABLE_START) + ".*?" + re.escape(TABLE_END),
                          lambda _: block, text, flags=re.S))


def header_line(result: dict[str, Any]) -> str:
    m = result["machine"]
    return (f"`make bench` {'(BENCH_FULL=1) ' if result['full'] else ''}at {result['date']}, commit "
            f"`{result['commit'][:10]}{'+dirty' if result['dirty'] else ''}`, {m['cpu_count']} × "
            f"{m['cpu_model']}, load average {result['load_average']['before'][0]} before / "
            f"{result['load_average']['after'][0]} after (1 min), back ends "
            f"{', '.join(result['backends'])}, load generator {result['loadgen']}.")


def _interrupt(signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main() -> int:
    # SIGTERM/SIGHUP end the run like Ctrl-C: the running script's process group is killed.
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGHUP, _interrupt)
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--only", help="comma list of scripts by name (audit,catalog,...)")
    p.add_argument("--publish", action="store_true",
                   help="also write bench/results/latest.json and the table in docs/performance.md")
    args = p.parse_args()
    scripts = sorted(HERE.glob("bench_*.py"))
    if args.only:
        wanted = set(args.only.split(","))
        scripts = [s for s in scripts if s.stem.removeprefix("bench_") in wanted]
    timeout = float(os.environ.get("BENCH_SCRIPT_TIMEOUT", 5400 if common.full() else 900))
    loadgen = loadgen_description()
    print(f"==> load generator: {loadgen}")
    if load.tool() != "wrk":
        print(f"    ({load.WRK_HINT})")
    print(f"==> sizes: {'BENCH_FULL=1 (large)' if common.full() else 'quick (BENCH_FULL=1 for large)'}; "
          f"back ends: {','.join(common.backends())}; load average now {load_average()}")
    result: dict[str, Any] = {
        "schema": 1, "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": git("rev-parse", "HEAD"),
        "dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
        "machine": machine(), "backends": common.backends(), "loadgen": loadgen, "full": common.full(),
        "load_average": {"before": load_average()}, "scripts": [], "rows": [],
    }
    interrupted = False
    for script in scripts:
        print(f"==> {script.relative_to(ROOT)} (load average {load_average()[0]})", flush=True)
        try:
            info = run_script(script, timeout)
        except KeyboardInterrupt:
            interrupted = True
            break
        if not info["rows"]:
            reason = info.get("error") or f"exit status {info['returncode']}"
            if info["returncode"] != 0:
                info["rows"] = [asdict(Row(bench=info["bench"], path=f"{info['bench']}: the script failed",
                                           figure=None, unit="", details={"error": reason}))]
            else:
                info["notes"].append(f"{info['script']} reported no rows (printed figures only)")
        result["rows"] += info.pop("rows")
        result["scripts"].append(info)
    result["load_average"]["after"] = load_average()
    result["interrupted"] = interrupted
    rows = [Row(**r) for r in result["rows"]]
    lines = table_lines(rows)
    print()
    print(header_line(result))
    print()
    print("\n".join(lines))
    for info in result["scripts"]:
        for note in info["notes"]:
            print(f"  note ({info['bench']}): {note}")
        print(f"  {info['script']}: {info['seconds']}s, load average {info['load_before'][0]} → "
              f"{info['load_after'][0]}" + (f", {info['error']}" if info.get("error") else ""))
    RESULTS.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = RESULTS / f"{stamp}-{result['commit'][:8] or 'nocommit'}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwritten: {out.relative_to(ROOT)}")
    if args.publish and not interrupted:
        publish(result, lines)
        print("published: bench/results/latest.json and the table in docs/performance.md")
    return 130 if interrupted else 0


if __name__ == "__main__":
    sys.exit(main())
