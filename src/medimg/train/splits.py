"""k-fold splits shared by every task's trainer: by case, or by patient (a group pattern), reproducible by seed.

Classification adds stratification by class on top (:func:`medimg.tasks.classify.data.make_classification_splits`);
segmentation and registration split cases with :func:`make_splits`. A model folder keeps its folds in
``splits.json`` (:class:`medimg.train.run.TrainingRun`).
"""

from __future__ import annotations

import re
from typing import Sequence

import numpy as np

from medimg.core.errors import InvalidParameterError

__all__ = ["case_groups", "make_splits"]


def case_groups(cases: Sequence[str], pattern: str | None) -> dict[str, str]:
    """Group id of each case: the first capture group (or the whole match) of ``pattern`` searched in the case id.

    With ``pattern=None`` every case is its own group. Used to keep the images of one patient in one fold, e.g.
    ``r"^(\\d+)_"`` puts HC18's ``010_HC`` and ``010_2HC`` (the same fetus) together.

    Raises:
        InvalidParameterError: ``pattern`` is not a valid regular expression, or does not match a case id.

    Example:
        >>> case_groups(["010_HC", "010_2HC", "011_HC"], r"^(\\d+)_")
        {'010_HC': '010', '010_2HC': '010', '011_HC': '011'}
    """
    if pattern is None:
        return {c: c for c in cases}
    try:
        rx = re.compile(pattern)
    except re.error as err:
        raise InvalidParameterError("not a regular expression", parameter="--group-by", found=pattern,
                                    expected="a Python regex, e.g. '^(\\d+)_'", fix=f"fix the pattern ({err})") from err
    out = {}
    for case in cases:
        m = rx.search(case)
        if m is None:
            raise InvalidParameterError("group pattern does not match a case id", parameter="--group-by",
                                        expected=f"a match in every case id, e.g. in '{case}'", found=pattern,
                                        fix="write a pattern that matches every case, with the patient id as "
                                        "its first group")
        out[case] = m.group(1) if rx.groups else m.group(0)
    return out


def make_splits(cases: Sequence[str], n_folds: int, seed: int, *,
                groups: dict[str, str] | None = None) -> list[dict[str, list[str]]]:
    """k-fold split by case id (shuffled with ``seed``); every case is validated exactly once.

    With ``groups`` (case id -> group id, see :func:`case_groups`) whole groups go to one fold, so no patient has
    images on both sides of a split.
    """
    group_of = groups or {c: c for c in cases}
    keys = sorted({group_of[c] for c in cases})
    if n_folds < 2 or n_folds > len(keys):
        raise InvalidParameterError("bad number of folds", parameter="--folds",
                                    expected=f"2..{len(keys)} (number of {'groups' if groups else 'cases'})",
                                    found=n_folds, fix="use --folds 5, or --fold all to train on every case")
    np.random.default_rng(seed).shuffle(keys)
    fold_of = {g: k % n_folds for k, g in enumerate(keys)}
    folds = [sorted(c for c in cases if fold_of[group_of[c]] == k) for k in range(n_folds)]
    return [{"train": sorted(c for j, f in enumerate(folds) if j != k for c in f), "val": folds[k]}
            for k in range(n_folds)]
