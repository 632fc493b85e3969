import pytest

from tests.harness import Lab


@pytest.fixture
async def lab(tmp_path):
    lab = Lab(tmp_path)
    yield lab
    await lab.close()
