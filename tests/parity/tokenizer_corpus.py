#!/usr/bin/python3
"""Writes the tokenizer parity corpus: one JSON string per line, deterministic.

Sources (all from Debian packages that scripts/install-deps.sh installs): translated
messages from /usr/share/locale/*/LC_MESSAGES/*.mo (many scripts and languages),
/usr/share/unicode/emoji/emoji-test.txt, English text from /usr/share/doc, and
hand-written hard cases.

  tokenizer_corpus.py OUT.jsonl [MIN_LINES]
"""
import glob
import gettext
import gzip
import json
import os
import sys

HARD_CASES = [
    "", " ", "   ", "\t\n\r", "a", "Hello, world!", "Héllo, world! tokenization",
    "HELLO WORLD", "don't won't I'm we're they've she'll he'd it's", "''s 's 'S",
    "e\u0301 \u00e9 a\u0300\u0301\u0302 \u0041\u030a \u212b",  # combining marks, NFD/NFC
    "\u0130stanbul \u0131 I\u0307 \u03a3\u03c3\u03c2 \u1e9e \u00df",  # special casing
    "tab\there\u000bvt\u000cff\u0085nel\u00a0nbsp\u2028ls\u2029ps",  # whitespace and controls
    "zero\u200bwidth\u200cjoiner\u200d\ufeffbom\u2060wj", "soft\u00adhyphen",
    "ideographic\u3000space\u3000\u3000x", "\u0000nul\u0001ctrl\u007fdel\ufffdrepl",
    "\ue000private\U000f0000use", "\U000e0001tag\U000e0041\U000e007f",
    "x" * 99, "y" * 100, "z" * 101, "supercalifragilisticexpialidocious" * 5,
    "ab" * 300, "word " * 200, "\u2581meta \u2581\u2581space\u2581", "  leading and trailing  ",
    "mixed日本語text한국어Русскийعربي", "中文字符测试，标点。", "𠀀𪜀𫝀𫠠𬺰 CJK ext", "\uf900\ufa00",
    "👍🏽 👨‍👩‍👧‍👦 🏳️‍🌈 🇫🇷 🥰🫠🧋 ❤️", "emoji😀in😃words", "1234567890 3.14159 -42 1e10 ½ ² ٣ ४",
    "[CLS] [SEP] [MASK] [UNK] [PAD]", "<s> </s> <pad> <unk> <mask>", "a[SEP]b x<s>y",
    "C++ & Python: {json: [1, 2]} <html>&amp;</html> user@example.com http://x.y/z?q=1#f",
    "ﬁ ﬂ ㌀ ① Ⅻ ｈｅｌｌｏ ﾊﾟ ｶﾞ", "\u1100\u1161\u11a8 \uac00", "ა ბ გ Ꭰ ᐁ ᚠ ᛟ", "ℌ𝔢𝔩𝔩𝔬 𝐁𝐨𝐥𝐝",
    "Ελληνικά Ἀθῆναι", "עִבְרִית", "हिन्दी ग़", "தமிழ்", "ไทย ภาษา", "ພາສາລາວ", "မြန်မာ",
    "line1\nline2\n\nline4", "\r\n", "....!!!???", "--", "a--b__c", "₹100 €5 $3 ¥8 £2",
    # Runs of spaces for XLM-R's Replace(Regex " {2,}", " "), also ones made by the
    # Precompiled normalizer (U+3000, U+00A0 → " ") and next to tabs/newlines/specials.
    "two  spaces", "three   spaces and    four", "  lead2", "trail2  ", " a  b   c    d ",
    "x" + " " * 37 + "y", " " * 64, "tab \t  \t mix", "nl  \n  nl", "日本  語   テスト",
    "nbsp\u00a0\u00a0x \u00a0 y", "ideo\u3000\u3000 \u3000z", "é  ü   ñ", "<s>  </s>   <mask>",
    "a  [SEP]  b", "emoji  👍   🏽", "ﬁ  ﬂ   ①",
]


def mo_lines():
    out = []
    for path in sorted(glob.glob("/usr/share/locale/*/LC_MESSAGES/*.mo")):
        try:
            with open(path, "rb") as f:
                cat = gettext.GNUTranslations(f)._catalog
        except Exception:
            continue
        for key in sorted(cat, key=lambda k: str(k)):
            val = cat[key]
            if isinstance(val, str) and val.strip():
                out.append(val)
    return out


def emoji_lines():
    path = "/usr/share/unicode/emoji/emoji-test.txt"
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as f:
        return [l.rstrip("\n") for l in f if l.strip()]


def doc_lines():
    out = []
    for path in sorted(glob.glob("/usr/share/doc/*/copyright"))[:400]:
        try:
            with open(path, encoding="utf-8") as f:
                out.extend(l.rstrip("\n") for l in f if l.strip())
        except (UnicodeDecodeError, OSError):
            continue
    return out


def main():
    out_path = sys.argv[1]
    min_lines = int(sys.argv[2]) if len(sys.argv) > 2 else 50000
    mo = mo_lines()
    lines = list(HARD_CASES) + emoji_lines()
    # Spread the translated messages evenly over all languages, then add English docs.
    want = max(min_lines - len(lines), 0)
    step = max(len(mo) // max(want * 6 // 5, 1), 1)
    lines += mo[::step]
    lines += doc_lines()[: max(min_lines - len(lines), 0) + 2000]
    seen, uniq = set(), []
    for l in lines:
        if l not in seen:
            seen.add(l)
            uniq.append(l)
    with open(out_path, "w", encoding="utf-8") as f:
        for l in uniq:
            f.write(json.dumps(l, ensure_ascii=True) + "\n")
    print(f"corpus: {len(uniq)} lines ({len(mo)} translated messages available)")


if __name__ == "__main__":
    main()
