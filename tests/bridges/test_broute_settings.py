"""The B-route bridge refuses to start without its credentials — also when `.env` has them empty (compose
passes `BROUTE_ID=` through as an empty string, which must not become an empty secret sent to the meter)."""

from __future__ import annotations

import pytest

from bridges.broute import BrouteSession
from pipeline.settings import BrouteSettings


@pytest.mark.parametrize(("broute_id", "password"), [(None, "pw"), ("", "pw"), ("0" * 32, ""), ("0" * 32, None)])
def test_missing_or_empty_credentials_are_refused(broute_id: str | None, password: str | None) -> None:
    settings = BrouteSettings.model_validate({"id": broute_id, "password": password})
    with pytest.raises(ValueError, match="needs WATTSTREAM_BROUTE_ID and WATTSTREAM_BROUTE_PASSWORD"):
        BrouteSession("/dev/null", settings)


def test_given_credentials_are_taken() -> None:
    assert BrouteSession("/dev/null", BrouteSettings.model_validate({"id": "0" * 32, "password": "pw"}))
