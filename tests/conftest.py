import pytest

from medimg.testing import data_root


@pytest.fixture(scope="session")
def shared_data():
    root = data_root()
    if root is None:
        pytest.skip("shared real data not found: set MEDIMG_DATA or place it at ../shared/data")
    return root
