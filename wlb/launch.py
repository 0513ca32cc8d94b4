"""Launch helpers the shell launchers call: Slurm host lists, without ``scontrol``.

    python -m wlb.launch hostnames 'node[01-03,07],login'   # one host per line

Pure Python with no imports beyond the standard library, so the sbatch script can run it with
any ``python3`` on the head node.
"""

from __future__ import annotations

import re
import sys

_RANGE = re.compile(r"^(\d+)-(\d+)$")


def _split_top_level(spec: str) -> list[str]:
    """Split at the commas that are not inside brackets."""
    parts, depth, cur = [], 0, []
    for ch in spec:
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
            if depth < 0:
                raise ValueError(f"host list {spec!r}: unbalanced ']'")
        if ch == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    if depth:
        raise ValueError(f"host list {spec!r}: unbalanced '['")
    parts.append("".join(cur))
    return parts


def _expand_name(name: str, spec: str) -> list[str]:
    """Every host of one name with bracket groups: the cartesian product, left to right."""
    start = name.find("[")
    if start < 0:
        return [name]
    end = name.index("]", start)
    prefix, body, rest = name[:start], name[start + 1:end], name[end + 1:]
    tails = _expand_name(rest, spec)
    out = []
    for item in body.split(","):
        m = _RANGE.match(item)
        if m:
            lo, hi = m.groups()
            if int(hi) < int(lo):
                raise ValueError(f"host list {spec!r}: range {item!r} runs backwards")
            values = [str(i).zfill(len(lo)) for i in range(int(lo), int(hi) + 1)]
        elif item.isdigit():
            values = [item]
        else:
            raise ValueError(f"host list {spec!r}: {item!r} is not a number or a range")
        out += [prefix + v + t for v in values for t in tails]
    return out


def expand_hostlist(spec: str) -> list[str]:
    """The hosts of a Slurm host list, in order (what ``scontrol show hostnames`` prints).

    Example: ``expand_hostlist("gpu[08-10],cpu[1,3]-ib") == ["gpu08", "gpu09", "gpu10",
    "cpu1-ib", "cpu3-ib"]``.
    """
    spec = spec.strip()
    if not spec:
        raise ValueError("host list is empty")
    hosts = []
    for part in _split_top_level(spec):
        if not part:
            raise ValueError(f"host list {spec!r}: empty host name")
        hosts += _expand_name(part, spec)
    return hosts


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2 or argv[0] != "hostnames":
        print("usage: python -m wlb.launch hostnames HOSTLIST", file=sys.stderr)
        return 2
    try:
        print("\n".join(expand_hostlist(argv[1])))
    except ValueError as e:
        print(f"wlb.launch: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
