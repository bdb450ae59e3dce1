"""Metrics: how good is generated text, a generated image set, a 2D sample, a memorised string?

* ``text``: BLEU (sacrebleu's definition; tokenizers ``zh`` and ``none``), ROUGE, perplexity (3.4, 5.4, 5.12);
* ``image``: FID, KID, Inception Score, precision and recall on the course's own MNIST feature
  network (5.7, 5.9-5.11, 5.13);
* ``toy2d``: MMD, kernel-density likelihood and mode coverage of 2D samples (2.3, 3.5);
* ``memorization``: verbatim overlap with the training text (1.3).
"""
