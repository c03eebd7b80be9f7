"""The reliability suite's report: what was injected and what became of it, counted.

Each scenario records its counts into the session's `ReliabilityReport` (the
`reliability_report` fixture of tests/reliability/conftest.py); the conftest prints the report at
the end of the run (even with -q) and writes it to test-output/reliability-report.{json,md}.

    reliability_report.record("faults", jobs_injected=212, faults_injected=6, completed=210,
                              dead_with_reason=2, lost=0, duplicated_effects=0)
    reliability_report.record_fuzz(cases=2_000, server_errors=0)

The API fuzzing (tests/reliability/test_fuzz_api.py) can record its numbers with
`record_fuzz`; if it did not, but ran in this session, the report reads them from the file it
writes (test-output/fuzz-deployed.json).
"""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
COUNTS = ("jobs_injected", "faults_injected", "completed", "dead_with_reason", "lost", "duplicated_effects")
MUST_BE_ZERO = ("lost", "duplicated_effects")


def output_dir() -> Path:
    return Path(os.environ.get("HERALD_TEST_OUTPUT") or ROOT / "test-output")


@dataclass
class Section:
    name: str
    jobs_injected: int = 0
    faults_injected: int = 0
    completed: int = 0
    dead_with_reason: int = 0
    lost: int = 0
    duplicated_effects: int = 0
    notes: list[str] = field(default_factory=list)


@dataclass
class ReliabilityReport:
    sections: dict[str, Section] = field(default_factory=dict)
    fuzz_cases: int | None = None
    fuzz_server_errors: int | None = None
    started: float = field(default_factory=time.time)
    fuzz_ran: bool = False  # the fuzz test ran in this session (its file may then be read)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    # --- recording ---------------------------------------------------------------------------

    def record(self, section: str, *, note: str | None = None, **counts: int) -> Section:
        """Add counts to a section (created on first use); `note` is a line of detail."""
        unknown = set(counts) - set(COUNTS)
        if unknown:
            raise ValueError(f"unknown counts: {', '.join(sorted(unknown))}")
        with self._lock:
            entry = self.sections.setdefault(section, Section(section))
            for name, value in counts.items():
                setattr(entry, name, getattr(entry, name) + int(value))
            if note:
                entry.notes.append(note)
            return entry

    def note(self, section: str, line: str) -> None:
        self.record(section, note=line)

    def record_fuzz(self, cases: int, server_errors: int) -> None:
        with self._lock:
            self.fuzz_cases = (self.fuzz_cases or 0) + int(cases)
            self.fuzz_server_errors = (self.fuzz_server_errors or 0) + int(server_errors)

    # --- reading -----------------------------------------------------------------------------

    @property
    def empty(self) -> bool:
        return not self.sections and self.fuzz_cases is None

    def counted(self) -> list[Section]:
        """Sections with counts (the others only carry notes)."""
        return [s for s in self.sections.values() if any(getattr(s, name) for name in COUNTS)]

    def totals(self) -> dict[str, int]:
        return {name: sum(getattr(s, name) for s in self.sections.values()) for name in COUNTS}

    def _fuzz(self) -> tuple[int | None, int | None]:
        if self.fuzz_cases is not None:
            return self.fuzz_cases, self.fuzz_server_errors
        path = output_dir() / "fuzz-deployed.json"
        if not self.fuzz_ran:
            return None, None
        try:
            if path.stat().st_mtime >= self.started:
                data = json.loads(path.read_text())
                return int(data["cases"]), int(data["server_errors"])
        except (OSError, ValueError, KeyError):
            pass
        return None, None

    def as_dict(self) -> dict[str, Any]:
        cases, errors = self._fuzz()
        return {
            "totals": self.totals(),
            "fuzz_cases_run": cases,
            "fuzz_5xx_seen": errors,
            "sections": {name: asdict(section) for name, section in self.sections.items()},
        }

    def lines(self) -> list[str]:
        totals = self.totals()
        cases, errors = self._fuzz()
        width = max([len(name) for name in self.sections] + [7])
        header = f"  {'':<{width}}  " + "  ".join(f"{name.replace('_', ' '):>18}" for name in COUNTS)
        rows = [
            f"  {section.name:<{width}}  " + "  ".join(f"{getattr(section, name):>18}" for name in COUNTS)
            for section in self.counted()
        ]
        total = f"  {'total':<{width}}  " + "  ".join(f"{totals[name]:>18}" for name in COUNTS)
        lines = ["", "=" * 30 + " Herald reliability report " + "=" * 30, header, *rows, total]
        lines.append(
            f"  fuzz cases run: {cases if cases is not None else 'not run'}; "
            f"5xx seen: {errors if errors is not None else 'not run'}"
        )
        verdicts = [f"{name.replace('_', ' ')} = {totals[name]} (must be 0)" for name in MUST_BE_ZERO]
        lines.append("  " + "; ".join(verdicts))
        for section in self.sections.values():
            lines += [f"  [{section.name}] {note}" for note in section.notes]
        return lines

    def markdown(self) -> str:
        totals = self.totals()
        cases, errors = self._fuzz()
        out = [
            "| scenario | " + " | ".join(n.replace("_", " ") for n in COUNTS) + " |",
            "|---|" + "---:|" * len(COUNTS),
        ]
        for section in self.counted():
            out.append(f"| {section.name} | " + " | ".join(str(getattr(section, n)) for n in COUNTS) + " |")
        out.append("| **total** | " + " | ".join(f"**{totals[n]}**" for n in COUNTS) + " |")
        out.append("")
        out.append(
            f"Fuzz cases run: {cases if cases is not None else 'not run'}; 5xx seen: "
            f"{errors if errors is not None else 'not run'}."
        )
        notes = [f"- {section.name}: {note}" for section in self.sections.values() for note in section.notes]
        return "\n".join(out + (["", *notes] if notes else [])) + "\n"

    def write(self) -> Path:
        out = output_dir()
        out.mkdir(parents=True, exist_ok=True)
        (out / "reliability-report.json").write_text(json.dumps(self.as_dict(), indent=2) + "\n")
        (out / "reliability-report.md").write_text(self.markdown())
        return out / "reliability-report.json"
