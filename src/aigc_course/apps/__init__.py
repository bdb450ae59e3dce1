"""Part 6, applications: the workflows of chapters 6.1-6.7 built on the course's own models.

* 6.1 marketing and advertising: ad creatives, product copy, filters, A/B tests with bandits
* 6.2 games and entertainment: ASCII levels, folk tunes in ABC notation, NPC dialogue
* 6.3 education and training: cloze exercises, a simulated learner, a tutor for regular verse
* 6.4 design and creativity: variations and inpainting with the diffusion samplers
* 6.5 health and medicine: synthetic tabular patient data, utility and privacy
* 6.6 fault tolerance and careers: where generated output can be used, by cost of error
* 6.7 risks and responsible deployment: watermarks, detectors, memorisation, provenance
* ``hub``: the guarded "real thing" sections (open models from the Hugging Face Hub on a GPU,
  and tiny random models of the same classes that run offline in CI)

Each module names the chapter that teaches it; models stay in ``models/``, samplers in
``diffusion/``, metrics in ``metrics/``: the modules here put them together into workflows.
"""
