"""Text processing: tokenizers, vocabularies, language-model batches, masking and decoding.

Used from chapter 1.2 on by every chapter that trains or samples a language model.

* ``tokenizers``: the character tokenizer and saving/loading any course tokenizer (1.2-4.1, 5.1-5.3);
* ``bpe``: byte-level BPE trained from scratch and checked against Hugging Face ``tokenizers`` (3.4);
* ``vocab``: word and character vocabularies with ``<pad>``, ``<bos>``, ``<eos>``, ``<unk>`` (3.2, 3.8, 5.4, 5.10-5.12);
* ``batches``: random windows of a token stream, next-token batches, a held-out loss (1.2-3.4, 5.1-5.3);
* ``masking``: masked-token corruption for BERT-style training (2.4, 5.5);
* ``decoding``: greedy, sampling filters and beam search (3.3, and every ``generate``);
* ``watermark``: the green-list watermark, generation with it and its z-test (6.7);
* ``translation``: the English-Chinese pairs, splits, batches and translation (3.2, 5.4);
* ``poems``, ``captions``, ``prompts``: the data of Tang poems (5.3), digit captions (5.12) and
  text-to-image prompts (3.8, 5.10, 5.11, 5.13).
"""
