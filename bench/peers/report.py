"""Medians, spreads and ratios of a run's trials, as JSON and as a markdown table."""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass, field
from typing import Any

from bench.peers import goals
from bench.peers.figures import Better, Figure
from bench.peers.servers import COMPETITORS, Peer


@dataclass
class Trial:
    """One workload on one peer in one round: its figures, or why it failed."""

    workload: str
    peer: Peer
    round: int
    figures: list[Figure] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    def as_json(self) -> dict[str, Any]:
        return asdict(self) | {"peer": str(self.peer)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Trial:
        """The trial as `as_json` wrote it."""
        figures = [Figure(**f | {"better": Better(f["better"])}) for f in data["figures"]]
        return cls(
            data["workload"],
            Peer(data["peer"]),
            data["round"],
            figures,
            data["details"],
            data["error"],
        )


@dataclass(frozen=True)
class Cell:
    """One figure of one peer over its rounds."""

    median: float
    mean: float
    low: float
    high: float
    n: int
    ratio_ssh: float | None
    ratio_best: float | None


@dataclass(frozen=True)
class Row:
    """One figure across the peers."""

    name: str
    unit: str
    better: Better
    cells: dict[Peer, Cell]
    best: Peer | None


def _best(values: dict[Peer, float], better: Better) -> Peer | None:
    competing = {p: v for p, v in values.items() if p in COMPETITORS and v >= 0}
    if not competing or better is Better.NONE:
        return None
    pick = max if better is Better.HIGHER else min
    return pick(competing, key=lambda p: competing[p])


def _ratio(value: float, reference: float | None) -> float | None:
    # A growth can be negative (memory freed, a session dropped): no ratio means anything then.
    if reference is None or reference <= 0 or value < 0:
        return None
    return value / reference


def summarize(trials: list[Trial], peers: list[Peer]) -> list[Row]:
    """Each figure's median, range and ratios per peer, in the order the figures first appear."""
    values: dict[str, dict[Peer, list[float]]] = {}
    meta: dict[str, Figure] = {}
    for trial in trials:
        for figure in trial.figures:
            meta.setdefault(figure.name, figure)
            values.setdefault(figure.name, {}).setdefault(trial.peer, []).append(figure.value)
    rows = []
    for name, by_peer in values.items():
        figure = meta[name]
        medians = {p: statistics.median(v) for p, v in by_peer.items()}
        best = _best(medians, figure.better)
        compared = figure.better is not Better.NONE
        ssh = medians.get(Peer.SSH) if compared else None
        best_value = medians[best] if best else None
        cells = {
            p: Cell(
                median=medians[p],
                mean=statistics.fmean(by_peer[p]),
                low=min(by_peer[p]),
                high=max(by_peer[p]),
                n=len(by_peer[p]),
                ratio_ssh=_ratio(medians[p], ssh) if p is not Peer.SSH else None,
                ratio_best=_ratio(medians[p], best_value) if p is not Peer.SSH else None,
            )
            for p in peers
            if p in by_peer
        }
        rows.append(Row(name, figure.unit, figure.better, cells, best))
    return rows


def rows_json(rows: list[Row]) -> list[dict[str, Any]]:
    return [
        {
            "figure": row.name,
            "unit": row.unit,
            "better": str(row.better),
            "best_peer": str(row.best) if row.best else None,
            "peers": {str(p): asdict(c) for p, c in row.cells.items()},
        }
        for row in rows
    ]


def fmt(value: float) -> str:
    """A figure with three significant digits or so."""
    magnitude = abs(value)
    if magnitude >= 100:
        return f"{value:.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    if magnitude >= 1:
        return f"{value:.2f}"
    return f"{value:.3g}"


def _cell(cell: Cell | None, unit: str) -> str:
    if cell is None:
        return "-"
    text = f"{fmt(cell.median)}"
    if unit == "yes":
        text = (
            f"{round(cell.mean * cell.n)}/{cell.n}"
            if cell.n > 1
            else ("yes" if cell.median else "**no**")
        )
    ratios = []
    if unit == "yes":
        return text
    if cell.ratio_ssh is not None:
        ratios.append(f"{fmt(cell.ratio_ssh)}x")
    if cell.ratio_best is not None:
        ratios.append(f"b{fmt(cell.ratio_best)}x")
    return text + (f" ({', '.join(ratios)})" if ratios else "")


def _spread(cell: Cell | None) -> str:
    if cell is None:
        return "-"
    if cell.n == 1:
        return f"{fmt(cell.median)} (n=1)"
    return f"{fmt(cell.low)}..{fmt(cell.high)} (n={cell.n})"


def _worse(ratio: float, higher_is_better: bool) -> bool:
    return ratio < 1 if higher_is_better else ratio > 1


def losses(rows: list[Row], us: Peer = Peer.EC2_TERMINAL) -> list[str]:
    """Each compared figure where `us` is worse than `ssh -tt` or than the best peer."""
    found = []
    for row in rows:
        cell = row.cells.get(us)
        if cell is None or row.better is Better.NONE:
            continue
        higher = row.better is Better.HIGHER
        if cell.ratio_best is not None and _worse(cell.ratio_best, higher):
            found.append(
                f"{row.name}: {fmt(cell.median)} {row.unit} against {row.best}'s "
                f"{fmt(row.cells[row.best].median) if row.best else '?'} ({fmt(cell.ratio_best)}x)"
            )
        if cell.ratio_ssh is not None and _worse(cell.ratio_ssh, higher):
            ssh = row.cells[Peer.SSH].median
            found.append(
                f"{row.name}: {fmt(cell.median)} {row.unit} against `ssh -tt`'s "
                f"{fmt(ssh)} ({fmt(cell.ratio_ssh)}x)"
            )
    return found


def _load(values: list[float]) -> str:
    return " / ".join(f"{v:.2f}" for v in values)


def markdown(result: dict[str, Any], rows: list[Row], peers: list[Peer]) -> str:
    """The run as markdown: machine, peers, the table of medians with ratios, spreads, failures."""
    machine = result["machine"]
    lines = [
        f"# Peer benchmark, {result['started']}",
        "",
        f"Machine: {machine['cpu']}, {machine['cores']} cores, {machine['memory']} of memory, "
        f"kernel {machine['kernel']}, Python {machine['python']}. Load average (1, 5, 15 min): "
        f"{_load(result['load_start'])} at the start, {_load(result['load_end'])} at the end. "
        f"Run took {result['duration_s'] / 60:.1f} min.",
        "",
        "Sizes: " + ", ".join(f"{k} {v}" for k, v in result["sizes"].items()) + ".",
        "",
        "| peer | version | how it runs |",
        "|---|---|---|",
    ]
    for peer in peers:
        info = result["peers"][str(peer)]
        lines.append(f"| {peer} | {info.get('version', '')} | {info.get('settings', '')} |")
    header = "| figure | unit | " + " | ".join(str(p) for p in peers) + " |"
    rule = "|---|---|" + "---|" * len(peers)
    lines += [
        "",
        "## Medians",
        "",
        "In brackets: `1.2x` is the ratio to `ssh -tt`'s median; `b1.2x` the ratio to the "
        "best median of ttyd, gotty, webssh and wetty on that figure.",
        "",
        header,
        rule,
    ]
    for row in rows:
        cells = " | ".join(_cell(row.cells.get(p), row.unit) for p in peers)
        lines.append(f"| {row.name} | {row.unit} | {cells} |")
    lines += ["", "## Spread (lowest..highest over the rounds)", "", header, rule]
    for row in rows:
        cells = " | ".join(_spread(row.cells.get(p)) for p in peers)
        lines.append(f"| {row.name} | {row.unit} | {cells} |")
    lines += ["", "## Against the issue's goals", ""]
    lines += goals.markdown(goals.check(result["summary"], result["trials"]))
    lost = losses(rows)
    lines += ["", "## Where ec2-terminal loses", ""]
    lines += [f"- {line}" for line in lost] or ["- nowhere in this run"]
    incomplete = [t for t in result["trials"] if t["details"].get("failure")]
    lines += ["", "## Runs that did not complete", ""]
    lines += [
        f"- {t['workload']} / {t['peer']} / round {t['round'] + 1}: {t['details']['failure']}"
        for t in incomplete
    ] or ["- none"]
    failed = [t for t in result["trials"] if t["error"]]
    lines += ["", "## Failed trials", ""]
    lines += [
        f"- {t['workload']} / {t['peer']} / round {t['round'] + 1}: {t['error']}" for t in failed
    ] or ["- none"]
    return "\n".join(lines) + "\n"
