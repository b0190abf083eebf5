"""Problem records: what is wrong with an input, and where.

Importers collect every problem instead of stopping at the first, so a user fixes a file in one pass; nothing
is written while any problem remains.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from exlpose_data.errors import InputError

__all__ = ["Problem", "ProblemLog", "AnnotationProblems"]


@dataclass(frozen=True)
class Problem:
    """One problem of an input file.

    Attributes:
        file: the input file.
        place: where in the file (``images[3] (id 17)``, ``task 12, result 'aB3x'``).
        field: the field concerned (``bbox``, ``keypoints[4]``, ``file_name``), or ``""``.
        message: what is wrong.
    """

    file: str
    place: str
    field: str
    message: str

    def __str__(self) -> str:
        parts = [self.file, self.place] + ([self.field] if self.field else [])
        return ": ".join(p for p in parts if p) + f": {self.message}"


@dataclass
class ProblemLog:
    """Collects the problems of one input file."""

    file: str
    problems: list[Problem] = field(default_factory=list)

    def add(self, place: str, field_name: str, message: str) -> None:
        self.problems.append(Problem(self.file, place, field_name, message))

    def __bool__(self) -> bool:
        return bool(self.problems)

    def raise_if_any(self) -> None:
        """Raise :class:`AnnotationProblems` when anything was logged."""
        if self.problems:
            raise AnnotationProblems(self.file, list(self.problems))


class AnnotationProblems(InputError):
    """An input has problems; ``problems`` lists each with its place. The message is one line."""

    def __init__(self, file: str, problems: list[Problem]) -> None:
        self.file = file
        self.problems = problems
        first = str(problems[0]) if problems else ""
        more = f" (and {len(problems) - 1} more problem(s))" if len(problems) > 1 else ""
        super().__init__(f"{first}{more}; nothing was written")
