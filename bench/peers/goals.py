"""The issue's goals for ec2-terminal, judged on a run's summary: met, missed or not measured."""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from bench.peers.servers import Peer

US = str(Peer.EC2_TERMINAL)
#: A stalled session's memory is flat when its last quarter's median PSS is at most this much
#: above its second quarter's.
FLAT_KIB = 1024
#: Idle sessions add at most this much each (KiB).
IDLE_KIB = 200


class Verdict(StrEnum):
    """How a goal fared in a run."""

    MET = "met"
    MISSED = "**missed**"
    UNMEASURED = "not measured"


@dataclass(frozen=True)
class Outcome:
    """One goal, the figure it was judged on, and the verdict."""

    goal: str
    measured: str
    verdict: Verdict


Cells = dict[str, dict[str, dict[str, Any]]]


def _cells(summary: list[dict[str, Any]]) -> Cells:
    """figure -> peer -> cell (median, ratios ..., and the figure's unit) from a run's summary."""
    return {
        row["figure"]: {peer: cell | {"unit": row["unit"]} for peer, cell in row["peers"].items()}
        for row in summary
    }


def _ours(cells: Cells, figure: str) -> dict[str, Any] | None:
    cell: dict[str, Any] | None = cells.get(figure, {}).get(US)
    return cell


def _ratio_goal(
    cells: Cells, goal: str, figure: str, key: str, fits: Callable[[float], bool]
) -> Outcome:
    """A goal on one ratio of ec2-terminal's median (`ratio_ssh` or `ratio_best`)."""
    cell = _ours(cells, figure)
    if cell is None or cell.get(key) is None:
        return Outcome(goal, "-", Verdict.UNMEASURED)
    ratio = float(cell[key])
    against = "`ssh -tt`" if key == "ratio_ssh" else "the best peer"
    measured = f"{figure}: {cell['median']:.3g} {cell['unit']}, {ratio:.2f}x {against}"
    return Outcome(goal, measured, Verdict.MET if fits(ratio) else Verdict.MISSED)


def _all_of(cells: Cells, figure: str) -> tuple[str, Verdict]:
    """A yes/no figure of ours: how many rounds said yes, and whether all did."""
    cell = _ours(cells, figure)
    if cell is None:
        return "-", Verdict.UNMEASURED
    yes = round(cell["mean"] * cell["n"])
    met = cell["low"] == 1.0
    return f"{yes}/{cell['n']}", Verdict.MET if met else Verdict.MISSED


def _quarter_median(samples: list[float], quarter: int) -> float:
    size = len(samples)
    return statistics.median(samples[size * quarter // 4 : max(size * (quarter + 1) // 4, 1)])


def stall_trend_kib(trials: list[dict[str, Any]]) -> float | None:
    """ec2-terminal's largest PSS trend over a stall: its last quarter's median less its second's.

    Medians of quarters, not the peak: a brief spike that falls back is not growth, a rise that
    stays is.
    """
    trends = []
    for trial in trials:
        series = trial["details"].get("memory_series")
        if trial["peer"] != US or trial["workload"] != "stall" or not series:
            continue
        stalled = [s["pss_kib"] for s in series[:-1]]  # the last is taken after reading it all
        trends.append(_quarter_median(stalled, 3) - _quarter_median(stalled, 1))
    return max(trends) if trends else None


def _stall(cells: Cells, trials: list[dict[str, Any]]) -> Outcome:
    goal = "a client stalled: flat server memory, the session kept, every byte delivered"
    kept, kept_ok = _all_of(cells, "stall: session kept")
    whole, whole_ok = _all_of(cells, "stall: every byte delivered")
    growth = _ours(cells, "stall: server memory growth, peak while stalled")
    trend = stall_trend_kib(trials)
    if growth is None or trend is None:
        return Outcome(goal, "-", Verdict.UNMEASURED)
    flat = trend <= FLAT_KIB
    measured = (
        f"kept {kept}, every byte {whole}; memory {growth['median']:+.1f} MiB at its peak, "
        f"{trend / 1024:+.2f} MiB from the stall's second quarter to its last (medians)"
    )
    verdicts = {kept_ok, whole_ok, Verdict.MET if flat else Verdict.MISSED}
    if Verdict.UNMEASURED in verdicts:
        return Outcome(goal, measured, Verdict.UNMEASURED)
    return Outcome(goal, measured, Verdict.MISSED if Verdict.MISSED in verdicts else Verdict.MET)


def _idle(cells: Cells) -> Outcome:
    goal = f"< {IDLE_KIB} KiB of server memory per additional idle session"
    prefix = "idle: memory per session, "
    counts = sorted(
        int(name.removeprefix(prefix).split()[0]) for name in cells if name.startswith(prefix)
    )
    measured = [
        (n, cell["median"])
        for n in counts
        if (cell := _ours(cells, f"{prefix}{n} sessions")) is not None
    ]
    if not measured:
        return Outcome(goal, "-", Verdict.UNMEASURED)
    text = ", ".join(f"{v:.0f} KiB at {n}" for n, v in measured)
    # The largest count is the marginal cost; one session also pays what is loaded once.
    met = measured[-1][1] < IDLE_KIB
    return Outcome(goal, text, Verdict.MET if met else Verdict.MISSED)


def _flood(cells: Cells) -> Outcome:
    goal = "Chromium renders the flood within 1.2x xterm.js's own parse time"
    cell = _ours(cells, "flood: page / parse alone")
    if cell is None:
        return Outcome(goal, "-", Verdict.UNMEASURED)
    ratio = float(cell["median"])
    measured = f"{ratio:.2f}x ({cell['low']:.2f}..{cell['high']:.2f})"
    # Where the bytes reach the page more slowly than xterm.js parses them, no page meets the
    # goal: the slower of the two says what the page itself adds.
    slower = _ours(cells, "flood: page / slower of parse and delivery")
    if slower is not None:
        measured += (
            f"; {float(slower['median']):.2f}x ({slower['low']:.2f}..{slower['high']:.2f})"
            " the slower of parse alone and delivery alone"
        )
    return Outcome(goal, measured, Verdict.MET if ratio <= 1.2 else Verdict.MISSED)


def check(summary: list[dict[str, Any]], trials: list[dict[str, Any]]) -> list[Outcome]:
    """Every goal of the issue the peer suite measures, judged on one run."""
    cells = _cells(summary)
    return [
        _ratio_goal(
            cells,
            "throughput >= 1.0x `ssh -tt`",
            "throughput",
            "ratio_ssh",
            lambda r: r >= 1.0,
        ),
        _ratio_goal(
            cells,
            "throughput ahead of every peer",
            "throughput",
            "ratio_best",
            lambda r: r > 1.0,
        ),
        _ratio_goal(
            cells,
            "server CPU per MiB <= 0.5x the best peer's",
            "throughput: server CPU per MiB",
            "ratio_best",
            lambda r: r <= 0.5,
        ),
        _ratio_goal(
            cells, "echo p50 <= 1.5x `ssh -tt`", "echo p50", "ratio_ssh", lambda r: r <= 1.5
        ),
        _ratio_goal(
            cells, "echo p99 <= 1.5x `ssh -tt`", "echo p99", "ratio_ssh", lambda r: r <= 1.5
        ),
        _stall(cells, trials),
        _idle(cells),
        _flood(cells),
    ]


def markdown(outcomes: list[Outcome]) -> list[str]:
    """The goals as markdown lines: a table of goal, what was measured, verdict."""
    lines = ["| goal | measured (medians) | verdict |", "|---|---|---|"]
    lines += [f"| {o.goal} | {o.measured} | {o.verdict} |" for o in outcomes]
    return lines
