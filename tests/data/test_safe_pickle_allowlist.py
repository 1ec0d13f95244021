"""The safe unpickler's allowlist, pinned, and hand-written pickles that would run code (pickle.dumps never
writes these: they are what an attacker writes by hand)."""

from __future__ import annotations

import os
import pickle
import re
import subprocess

import pytest

from facescale.data.safe_pickle import ALLOWED_GLOBALS, safe_loads
from facescale.errors import DataError


def test_the_allowlist_is_exactly_this():
    """Widening it is a security decision: this test makes it a visible one."""
    assert set(ALLOWED_GLOBALS) == {
        ("_codecs", "encode"),
        ("builtins", "bytes"),
        ("builtins", "bytearray"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }


# protocol 0: GLOBAL "module\nname\n", MARK, arguments, TUPLE, REDUCE, STOP
MALICIOUS = {
    "os.system": b"cos\nsystem\n(S'echo pwned'\ntR.",
    "posix.system": b"cposix\nsystem\n(S'echo pwned'\ntR.",
    "builtins.getattr": b"cbuiltins\ngetattr\n(cbuiltins\nlist\nS'append'\ntR.",
    "builtins.eval": b'cbuiltins\neval\n(S\'__import__("os").system("echo pwned")\'\ntR.',
    "subprocess.Popen": b"csubprocess\nPopen\n((S'echo'\nS'pwned'\nltR.",
    # Python 2's name for builtins, mapped as pickle maps it: still refused
    "builtins.eval (as __builtin__)": b"c__builtin__\neval\n(S'1'\ntR.",
    # protocol 4: SHORT_BINUNICODE module, SHORT_BINUNICODE name, STACK_GLOBAL, arg, TUPLE1, REDUCE
    "os.system (STACK_GLOBAL)": b"\x80\x04\x8c\x02os\x8c\x06system\x93\x8c\x0aecho pwned\x85R.",
    # the same inside a verification-bin shaped tuple: (images, issame) with a payload among the images
    "os.system (inside a bin)": b"(]q\x00(C\x03jpgcos\nsystem\n(S'echo pwned'\ntRe]q\x01\x88at.",
}


@pytest.fixture
def no_code_runs(monkeypatch):
    calls = []

    def record(*args, **kwargs):
        calls.append(args)
        raise AssertionError("code ran while unpickling")

    monkeypatch.setattr(os, "system", record)
    monkeypatch.setattr(subprocess, "Popen", record)
    return calls


@pytest.mark.parametrize("name", sorted(MALICIOUS))
def test_hand_written_code_running_pickles_are_refused(name, no_code_runs):
    payload = MALICIOUS[name]
    global_name = re.escape(name.split(" ")[0])
    with pytest.raises(DataError, match=rf"evil.bin: the pickle asks for {global_name}"):
        safe_loads(payload, "evil.bin")
    assert no_code_runs == []


def test_the_payloads_are_real_pickles(monkeypatch):
    """Each payload does call its global under the plain unpickler (so the test above means something)."""
    called = []
    monkeypatch.setattr(os, "system", lambda *a: called.append(a) or 0)
    assert pickle.loads(MALICIOUS["os.system"]) == 0 and called == [("echo pwned",)]
    assert pickle.loads(MALICIOUS["os.system (STACK_GLOBAL)"]) == 0 and len(called) == 2
