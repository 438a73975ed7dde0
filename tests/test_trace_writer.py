"""The C trace writer: its lines are orjson's lines for the same event, byte for byte."""

import io

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from vmgames.kernel.vmmeter import record
from vmgames.tools import trace
from vmgames.tools.cli import main

from tests.programs import FORK_AND_WRITE

NEWLINE = orjson.OPT_APPEND_NEWLINE

# What events carry (None, bools, 64-bit ints, any text, lists, tuples, str-keyed dicts), and what the
# writer leaves to orjson (floats).
_scalars = st.none() | st.booleans() | st.integers(-2**63, 2**64 - 1) | st.text() | st.floats(allow_nan=False)
_values = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=4) | st.tuples(inner, inner)
                       | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)
_fields = st.dictionaries(st.text(max_size=10).filter(lambda k: k not in ("t", "cpu", "pid", "type", "kind")), _values,
                          max_size=6)


def _lines(*events, types=None) -> list[bytes]:
    stream = io.BytesIO()
    sink = trace.writer(stream, {"format": "test"}, types)
    for event in events:
        sink(*event)
    sink.flush()
    return stream.getvalue().splitlines(keepends=True)[1:]


@given(t=st.integers(0, 2**64 - 1), cpu=st.integers(0, 7), pid=st.integers(0, 2**31), type_=st.text(),
       kind=st.text(), fields=_fields)
def test_every_line_is_what_orjson_writes_for_the_event(t, cpu, pid, type_, kind, fields):
    assert _lines((t, cpu, pid, type_, kind, fields)) == [
        orjson.dumps(record(t, cpu, pid, type_, kind, fields), option=NEWLINE)]


def test_escapes_and_the_ends_of_the_64_bit_range_are_written_as_orjson_writes_them():
    fields = {"path": 'a"b\\c\n\t\r\b\f\x00\x1f\x7f é \u2028 \U0001F600', "old": 2**64 - 1, "new": -2**63,
              "nested": [{"x": ()}, [], {}], "none": None, "yes": True, "no": False}
    expected = orjson.dumps(record(0, 0, 1, "proc", "exec", fields), option=NEWLINE)
    assert _lines((0, 0, 1, "proc", "exec", fields)) == [expected]


def test_a_guest_string_that_is_not_utf8_is_written_with_its_bytes_escaped():
    # exec keeps a guest's argv with surrogate escapes; orjson refuses those, the trace must not.
    [line] = _lines((3, 0, 1, "proc", "exec", {"argv": ["a\udc80b"]}))
    assert orjson.loads(line)["argv"] == ["a\\x80b"]


def test_an_int_past_64_bits_fails_as_orjson_fails_and_the_writer_goes_on():
    stream = io.BytesIO()
    sink = trace.writer(stream, {})
    with pytest.raises(TypeError, match="64-bit"):
        sink(1, 0, 1, "pte", "write", {"new": 2**64})
    sink(2, 1, 1, "pte", "write", {"new": 5})
    sink.flush()
    assert stream.getvalue() == b'{}\n{"t":2,"cpu":1,"pid":1,"type":"pte","kind":"write","new":5}\n'


def test_only_the_chosen_types_are_written():
    lines = _lines((1, 0, 1, "pte", "write", {}), (2, 0, 1, "fault", "zero-fill", {}), types={"fault"})
    assert lines == [b'{"t":2,"cpu":0,"pid":1,"type":"fault","kind":"zero-fill"}\n']


def test_lines_are_held_until_flush_and_written_in_order_past_a_megabyte():
    stream = io.BytesIO()
    sink = trace.writer(stream, {})
    for t in range(20000):   # about 1.3 MB of lines: one write on the way, the rest at flush
        sink(t, 0, 1, "page", "zero", {"frame": t, "pad": "x" * 40})
    written_before_flush = len(stream.getvalue())
    sink.flush()
    lines = stream.getvalue().splitlines()[1:]
    assert 3 < written_before_flush < len(stream.getvalue())
    assert [orjson.loads(line)["t"] for line in lines] == list(range(20000))


def test_a_real_trace_reads_back_to_the_same_bytes(build, tmp_path):
    path = tmp_path / "t.jsonl"
    assert main(["run", "--trace", str(path), build(FORK_AND_WRITE)]) == 82
    lines = path.read_bytes().splitlines(keepends=True)
    assert len(lines) > 100
    assert [orjson.dumps(orjson.loads(line), option=NEWLINE) for line in lines] == lines


def test_a_field_named_as_an_event_part_is_written_as_orjson_merges_it():
    fields = {"kind": "shadowed", "frame": 3, "cpu": 5}
    assert _lines((1, 0, 2, "page", "zero", fields)) == [
        orjson.dumps(record(1, 0, 2, "page", "zero", fields), option=NEWLINE)]


def test_a_failed_write_does_not_stop_the_run_and_flush_says_what_failed():
    def full_disk(data: bytes) -> None:
        raise OSError(28, "No space left on device")

    sink = trace.LineWriter(full_disk, lambda *event: b"")
    for t in range(20000):   # past the megabyte at which the first write is made
        sink(t, 0, 1, "page", "zero", {"frame": t, "pad": "x" * 40})
    with pytest.raises(OSError, match="No space left"):
        sink.flush()
