"""The multilingual text set the tokenizer fidelity tests feed both tokenizers (Chinese, Japanese, code, emoji,
numbers, whitespace runs, special tokens)."""

TEXTS = [
    "Hello world! The quick brown fox jumps over the lazy dog.",
    "DeepSeek-V3 在中文文本上表现很好。日本語のテキストもカタカナもひらがなも。",
    "def main():\n    x = [i ** 2 for i in range(10)]\n\treturn {'a': x}  # comment\r\n",
    "1234567890 3.14159 1,000,000 0x7fff 2024-01-31",
    "emoji 😀🎉👍🏽 and symbols ∑∫√ — “quotes” ‘single’ … «guillemets»",
    "<｜begin▁of▁sentence｜>You are helpful.<｜User｜>What is 12+30?<｜Assistant｜><think>\nLet me add.</think>42<｜end▁of▁sentence｜>",
    "   leading spaces\n\n\nmany newlines   trailing   ",
    "Ünïcödé façade naïve coöperate Ελληνικά Русский текст العربية हिन्दी 한국어",
]
