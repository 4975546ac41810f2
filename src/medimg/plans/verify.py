"""The report a dataset check returns (every task's ``verify``): problems that would break training, warnings worth
a look, and one error naming the first problem."""

from __future__ import annotations

from dataclasses import dataclass, field

from medimg.core.errors import InvalidParameterError

__all__ = ["VerifyReport"]


@dataclass
class VerifyReport:
    """What :func:`verify_dataset` found.

    Attributes:
        problems: (case, what, fix) for each thing that would break training.
        warnings: (case, what, fix) for each thing worth a look (empty label maps, probable instance maps).
        shapes: case -> spatial shape (Z, Y, X) of the cases that loaded.
        n_checked: number of cases looked at.
    """

    root: str
    n_cases: int
    n_checked: int = 0
    problems: list[tuple[str, str, str]] = field(default_factory=list)
    warnings: list[tuple[str, str, str]] = field(default_factory=list)
    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_text_header(self) -> list[str]:
        """The summary lines above the problems (a task's report adds its own facts here)."""
        return [f"dataset {self.root}: {self.n_checked} of {self.n_cases} cases checked, "
                f"{len(self.problems)} problems, {len(self.warnings)} warnings"]

    def to_text(self) -> str:
        lines = self.to_text_header()
        lines += [f"PROBLEM {case}: {what}. Fix: {fix}" for case, what, fix in self.problems]
        lines += [f"warning {case}: {what}. Fix: {fix}" for case, what, fix in self.warnings]
        return "\n".join(lines)

    #: What one entry of the dataset is called in messages ("case", "sample").
    UNIT = "case"

    def list_hint(self) -> str:
        """How the user lists every problem (the end of :meth:`raise_if_bad`'s fix)."""
        return f"`medimg verify {self.root}`"

    def raise_if_bad(self) -> None:
        """Raise :class:`InvalidParameterError` naming the first problem and the number of problems."""
        if self.problems:
            case, what, fix = self.problems[0]
            raise InvalidParameterError(
                f"dataset has {len(self.problems)} problem(s); first: {self.UNIT} '{case}': {what}",
                parameter="dataset", expected="a dataset that verifies cleanly",
                found=f"{len(self.problems)} problems in {self.root}",
                fix=f"{fix}; list every problem with {self.list_hint()}",
            )


