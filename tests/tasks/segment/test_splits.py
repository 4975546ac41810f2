"""k-fold splits: every case validated once, and with --group-by no patient on both sides of a split."""

import pytest

from medimg.core.errors import InvalidParameterError
from medimg.train.splits import case_groups, make_splits

HC18_LIKE = ["010_HC", "010_2HC", "011_HC", "012_HC", "012_2HC", "012_3HC", "013_HC", "014_HC", "015_HC", "016_HC"]


def test_grouped_splits_keep_patients_together():
    groups = case_groups(HC18_LIKE, r"^(\d+)_")
    splits = make_splits(HC18_LIKE, 3, 0, groups=groups)
    assert sorted(c for s in splits for c in s["val"]) == sorted(HC18_LIKE)
    for s in splits:
        assert not {groups[c] for c in s["val"]} & {groups[c] for c in s["train"]}
        assert set(s["val"]) | set(s["train"]) == set(HC18_LIKE)


def test_ungrouped_splits_are_repeatable_and_complete():
    a, b = make_splits(HC18_LIKE, 5, 7), make_splits(HC18_LIKE, 5, 7)
    assert a == b
    assert sorted(c for s in a for c in s["val"]) == sorted(HC18_LIKE)


def test_group_pattern_errors_name_the_option():
    with pytest.raises(InvalidParameterError) as e:
        case_groups(HC18_LIKE, r"^(\d+")
    assert e.value.parameter == "--group-by"
    with pytest.raises(InvalidParameterError) as e:
        case_groups(HC18_LIKE + ["abc"], r"^(\d+)_")
    assert "abc" in str(e.value)
    with pytest.raises(InvalidParameterError) as e:  # 7 fetuses cannot fill 8 folds
        make_splits(HC18_LIKE, 8, 0, groups=case_groups(HC18_LIKE, r"^(\d+)_"))
    assert e.value.parameter == "--folds"
