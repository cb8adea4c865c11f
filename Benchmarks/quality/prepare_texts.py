"""Texts for the fidelity benchmark on the MiniLM/KJV development pair.

Writes, into OUT_DIR:
- calibration.jsonl: the pair's 64 calibration samples (calibration.txt), one {"text"} a line;
- heldout.jsonl: every held-out chapter (the pair's own split, sha1(name) % 100 < 6) that none of
  the calibration samples comes from, one {"text", "chapter"} a line. These chapters were seen
  neither in fine-tuning nor in calibration. Needs Debian's `bible-kjv` (the pair's text source).

Usage: python3 prepare_texts.py PAIR_DIR OUT_DIR
"""
import json
import os
import re
import sys


def calibration_samples(path):
    """(chapter, text) of each `### sample k: CHAPTER chars a-b (...)` block of calibration.txt."""
    header = re.compile(r"^### sample (\d+): (.+) chars (\d+)-(\d+) \(")
    samples, current = [], None
    with open(path, encoding="utf-8") as f:
        for line in f.read().split("\n"):
            m = header.match(line)
            if m:
                if current:
                    samples.append(current)
                current = [m.group(2), []]
            elif current is not None:
                current[1].append(line)
    if current:
        samples.append(current)
    out = [(chapter, "\n".join(lines).strip("\n")) for chapter, lines in samples]
    if len(out) != 64 or any(not t for _, t in out):
        sys.exit(f"{path}: expected 64 non-empty calibration samples, found {len(out)}")
    return out


def write_jsonl(path, rows):
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    os.replace(tmp, path)


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    pair, out = sys.argv[1], sys.argv[2]
    os.makedirs(out, exist_ok=True)
    samples = calibration_samples(os.path.join(pair, "calibration.txt"))
    write_jsonl(os.path.join(out, "calibration.jsonl"), [{"text": t, "chapter": c} for c, t in samples])

    sys.path.insert(0, pair)
    import make_dev_pair  # the pair's own script: chapter loading and the held-out split

    used = {c for c, _ in samples}
    held = [(name, text) for name, text in make_dev_pair.load_chapters()
            if make_dev_pair.is_heldout(name) and name not in used]
    if not held:
        sys.exit("no held-out chapter left outside the calibration samples")
    write_jsonl(os.path.join(out, "heldout.jsonl"), [{"text": t, "chapter": n} for n, t in held])
    words = sum(len(t.split()) for _, t in held)
    print(f"calibration: {len(samples)} samples from {len(used)} chapters; "
          f"held out: {len(held)} chapters, {words} words", file=sys.stderr)


if __name__ == "__main__":
    main()
