"""Public helpers for tests: where the shared real data lives, tiny synthetic phantoms, the CLI error check."""

from medimg.testing.cli import one_line_error
from medimg.testing.data import data_root, hippocampus_subset, require_data
from medimg.testing.phantoms import label_phantom, oblique_direction, phantom

__all__ = ["data_root", "require_data", "hippocampus_subset", "phantom", "label_phantom", "oblique_direction",
           "one_line_error"]
