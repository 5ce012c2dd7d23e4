"""The tokenizer of a GGUF export, carried over from the source model.

- a `.gguf` source (the embedded default model, any GGUF file): every `tokenizer.*` key is
  copied with its exact type (tokens, scores, types, merges, special ids, pre-tokenizer, chat
  template), so llama.cpp tokenizes exactly as it does for the source file;
- a Hugging Face folder with a byte-level BPE `tokenizer.json` (GPT-2 style: Llama 3, Qwen2,
  SmolLM): tokens and merges through the `gguf` package's `BpeVocab` / `SpecialVocab`; its
  pre-tokenizer is written as llama.cpp's `default`, since naming the exact one needs llama.cpp's
  table of tokenizer hashes (recorded in the manifest as a note);
- anything else (e.g. a character-level test tokenizer): no vocabulary (`tokenizer.ggml.model:
  none`); llama.cpp then runs the model on token ids only, and the manifest says so.
"""

from __future__ import annotations

from pathlib import Path

PREFIX = "tokenizer."


def write(writer, source, vocab_size: int) -> dict:
    """Add the tokenizer of `source` (a .gguf file or a HF folder) to `writer`; return a record."""
    source = Path(source)
    if source.suffix.lower() == ".gguf":
        return _copy_gguf(writer, source, vocab_size)
    return _from_hf(writer, source, vocab_size)


def _copy_gguf(writer, path: Path, vocab_size: int) -> dict:
    import gguf

    reader = gguf.GGUFReader(str(path))
    copied = 0
    for key, field in reader.fields.items():
        if not key.startswith(PREFIX):
            continue
        main = field.types[0]
        if main == gguf.GGUFValueType.ARRAY:
            writer.add_key_value(key, field.contents(), main, sub_type=field.types[-1])
        else:
            writer.add_key_value(key, field.contents(), main)
        copied += 1
    tokens = reader.fields.get(PREFIX + "ggml.tokens")
    n = len(tokens.data) if tokens is not None else 0
    if n != vocab_size:
        raise ValueError(f"{path}: its tokenizer has {n} tokens, the model's embedding {vocab_size} rows")
    return {"source": str(path), "kind": "copied from GGUF", "keys": copied, "tokens": n}


def _from_hf(writer, folder: Path, vocab_size: int) -> dict:
    import gguf
    from gguf.vocab import BpeVocab, SpecialVocab

    try:
        vocab = BpeVocab(folder)
    except (FileNotFoundError, KeyError, ValueError) as e:
        writer.add_tokenizer_model("none")
        return {"source": str(folder), "kind": "none", "note": f"no byte-level BPE tokenizer ({e}): token ids only"}
    tokens, _scores, types = [], [], []
    for text, score, kind in vocab.all_tokens():
        tokens.append(text)
        _scores.append(score)
        types.append(kind)
    tokens += [f"[PAD{i}]".encode() for i in range(len(tokens), vocab_size)]
    types += [gguf.TokenType.UNUSED] * (vocab_size - len(types))
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    SpecialVocab(folder, load_merges=True, n_vocab=vocab_size).add_to_gguf(writer)
    return {
        "source": str(folder),
        "kind": "byte-level BPE from tokenizer.json",
        "tokens": len(tokens),
        "note": "pre-tokenizer written as llama.cpp's 'default'",
    }
