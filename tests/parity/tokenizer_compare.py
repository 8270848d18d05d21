#!/usr/bin/python3
"""Compares HF's and our encodings line by line: ids and offsets must both match, on a
corpus of at least MIN_LINES lines (a corpus that shrank is a failure, not a pass).

  tokenizer_compare.py NAME corpus.jsonl hf.txt ours.txt [MIN_LINES]
"""
import json
import sys


def main():
    name, corpus, hf_path, ours_path = sys.argv[1:5]
    min_lines = int(sys.argv[5]) if len(sys.argv) > 5 else 50000
    texts = [json.loads(l) for l in open(corpus, encoding="utf-8") if l.strip()]
    if len(texts) < min_lines:
        print(f"FAIL {name}: the corpus has {len(texts)} lines, fewer than {min_lines}")
        return 1
    hf = open(hf_path, encoding="utf-8").read().split("\n")[: len(texts)]
    ours = open(ours_path, encoding="utf-8").read().split("\n")[: len(texts)]
    if len(hf) != len(texts) or len(ours) != len(texts):
        print(f"FAIL {name}: line counts differ: corpus {len(texts)} hf {len(hf)} ours {len(ours)}")
        return 1
    id_bad, off_bad, first_off = 0, 0, None
    for i, (t, h, o) in enumerate(zip(texts, hf, ours)):
        h_ids, h_off = h.split("\t")
        if o.startswith("ERROR") or o.split("\t")[0] != h_ids:
            id_bad += 1
            if id_bad == 1:
                print(f"FAIL {name}: first id mismatch at corpus line {i + 1}: {json.dumps(t)[:300]}")
                print(f"  hf:   {h_ids[:400]}")
                print(f"  ours: {o.split(chr(9))[0][:400]}")
            continue
        if o.split("\t")[1] != h_off:
            off_bad += 1
            if first_off is None:
                first_off = (i, t, h_off, o.split("\t")[1])
    print(f"{name}: {len(texts)} lines, {id_bad} id mismatches, {off_bad} offset mismatches")
    if first_off:
        i, t, h, o = first_off
        print(f"  first offset mismatch at line {i + 1}: {json.dumps(t)[:200]}\n  hf:   {h[:300]}\n"
              f"  ours: {o[:300]}")
    return 1 if id_bad or off_bad else 0


if __name__ == "__main__":
    sys.exit(main())
