"""The traces of the bundled programs and both experiments are exactly those recorded in tests/trace_digests.json."""

import json

from tests import trace_digests


def test_every_trace_is_byte_identical_to_the_recorded_one():
    with open(trace_digests.DIGESTS, encoding="utf-8") as f:
        expected = json.load(f)
    assert trace_digests.current() == expected


def test_the_digest_sees_a_changed_run():
    """The digest depends on what the run did: another argument, another trace."""
    assert trace_digests.digest("touch", ["64"], True, 1) != trace_digests.digest("touch", ["65"], True, 1)
    assert trace_digests.digest("touch", ["64"], True, 1) == trace_digests.digest("touch", ["64"], True, 1)
