"""From language model to assistant: chapters 3.9, 4.6 and 5.14 (the pipeline behind ChatGPT).

* ``tasks``: instructions whose answers a program can check (arithmetic, strings, translation,
  Tang poems, Shakespeare personas), with held-out phrasings
* ``chat``: the chat template (role tokens), response-only SFT targets, replying
* ``models``: the shipped base and instruction-tuned GPTs (load-or-train)
* ``lora``: low-rank adapters from scratch, merge and unmerge
* ``preference``: reward model (Bradley-Terry), DPO and its closed form
* ``rlhf``: policy-gradient RLHF with a KL penalty to the reference model
* ``quantize``: int8 weight-only quantisation for fast, small assistants

Import the submodules by their full path (``from aigc_course.assistant.lora import add_lora``).
"""
