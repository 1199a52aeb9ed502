"""keep_freed_memory: glibc's malloc serves large blocks from its heap and keeps them."""

import platform
import subprocess
import sys
import textwrap

import pytest

from relational_rnn import keep_freed_memory

GLIBC = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"

# Run in a fresh process, whose malloc has its default settings: a 16 MiB tensor gets a
# mapping of its own, unmapped when freed; after keep_freed_memory it comes from the
# heap, and freeing it leaves it there.
SCRIPT = textwrap.dedent(
    """
    import ctypes
    import torch
    from relational_rnn import keep_freed_memory

    class MallInfo2(ctypes.Structure):
        _fields_ = [(name, ctypes.c_size_t) for name in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd",
            "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]

    libc = ctypes.CDLL(None)
    libc.mallinfo2.restype = MallInfo2
    MIB = 1 << 20

    def mapped_and_heap_free_with_a_16_mib_tensor():
        mapped = libc.mallinfo2().hblkhd
        tensor = torch.ones(4 * MIB)  # float32: 16 MiB
        grown = libc.mallinfo2().hblkhd - mapped
        del tensor
        return grown // MIB, libc.mallinfo2().fordblks // MIB

    print(*mapped_and_heap_free_with_a_16_mib_tensor())
    print(keep_freed_memory())
    print(*mapped_and_heap_free_with_a_16_mib_tensor())
    """
)


def test_large_blocks_come_from_the_heap_and_stay_there():
    if not GLIBC:
        assert keep_freed_memory() is False
        return
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, check=True
    )
    default, accepted, kept = result.stdout.split("\n")[:3]
    mapped, _ = map(int, default.split())
    assert mapped >= 16  # glibc's default: a mapping of its own
    assert accepted == "True"
    mapped, heap_free = map(int, kept.split())
    assert mapped == 0 and heap_free >= 16


@pytest.mark.parametrize("top_pad_mib", [-1, 2048, 1.5, True, "64"])
def test_a_bad_top_pad_is_refused(top_pad_mib):
    with pytest.raises(ValueError, match="top_pad_mib must be"):
        keep_freed_memory(top_pad_mib)
