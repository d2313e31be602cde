#!/usr/bin/env python3
"""Writes the fuzz seed corpus from the LSTI-1 vectors (tests/data/lsti1.json).

parser gets every vector's `message` (the bytes after the length prefix); frame_decoder gets
every vector's `framed` (the same with the prefix, and the negative framing cases). Run it from
anywhere; it rewrites seeds/ beside this file. The seeds are committed, so run it again only
when the vectors change.
"""

import json
import pathlib

HERE = pathlib.Path(__file__).resolve().parent
VECTORS = HERE.parent / "tests" / "data" / "lsti1.json"


def main() -> None:
    vectors = json.loads(VECTORS.read_text())
    targets = {"parser": "message", "frame_decoder": "framed"}
    for target, key in targets.items():
        folder = HERE / "seeds" / target
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.iterdir():
            old.unlink()
        for kind in ("positive", "negative"):
            for vector in vectors[kind]:
                data = bytes.fromhex(vector.get(key) or "")
                if data:
                    (folder / vector["name"]).write_bytes(data)


if __name__ == "__main__":
    main()
