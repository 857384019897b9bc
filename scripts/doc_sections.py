"""Generated sections of the docs: a table between two marker lines, rewritten by the script that generates it
(scripts/sass_audit.py, bench/roofline.py)."""
import sys


def with_section(text, begin, end, body, what):
    """`text` with what lies between the lines `begin` and `end` replaced by `body`; exits naming `what` when
    the markers are missing."""
    if begin not in text or end not in text:
        sys.exit(f"{what}: no generated-section markers ({begin!r} ... {end!r})")
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    return head + begin + "\n" + body + end + tail
