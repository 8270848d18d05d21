#!/usr/bin/python3
"""Trains a tiny SentencePiece Unigram model (nmt_nfkc normalization) and writes what
tokenizer_ref.js needs to build an XLM-R style tokenizer.json with a Precompiled
normalizer: the precompiled_charsmap (base64) and the pieces with their scores.

  tokenizer_spm.py corpus.jsonl WORKDIR

Writes WORKDIR/spm.model and WORKDIR/spm.json. Needs python3-sentencepiece.
"""
import base64
import json
import os
import sys

try:
    import sentencepiece as spm
    from sentencepiece import sentencepiece_model_pb2 as model_pb2
except ImportError:
    print("FAIL: python3-sentencepiece missing; run scripts/install-deps.sh", file=sys.stderr)
    sys.exit(1)


def main():
    corpus, work = sys.argv[1:3]
    texts = [json.loads(l) for l in open(corpus, encoding="utf-8") if l.strip()]
    # Same slice as tokenizer_ref.js trains on, so the other lines exercise unknowns.
    sample, budget = [], 600000
    for i in range(0, len(texts), 3):
        if budget <= 0:
            break
        sample.append(texts[i])
        budget -= len(texts[i])
    train = os.path.join(work, "train_spm.txt")
    with open(train, "w", encoding="utf-8") as f:
        f.write("\n".join(sample) + "\n")
    prefix = os.path.join(work, "spm")
    spm.SentencePieceTrainer.train(
        input=train, model_prefix=prefix, vocab_size=2000, model_type="unigram", character_coverage=0.995,
        normalization_rule_name="nmt_nfkc", remove_extra_whitespaces=False,
        hard_vocab_limit=False, num_threads=2, minloglevel=2)
    m = model_pb2.ModelProto()
    with open(prefix + ".model", "rb") as f:
        m.ParseFromString(f.read())
    charsmap = m.normalizer_spec.precompiled_charsmap
    if len(charsmap) < 8:
        print("FAIL: trained model has no precompiled_charsmap", file=sys.stderr)
        return 1
    pieces = [[p.piece, p.score, int(p.type)] for p in m.pieces]
    with open(os.path.join(work, "spm.json"), "w", encoding="utf-8") as f:
        json.dump({"precompiled_charsmap": base64.b64encode(charsmap).decode("ascii"),
                   "pieces": pieces}, f)
    print(f"spm: {len(pieces)} pieces, charsmap {len(charsmap)} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
