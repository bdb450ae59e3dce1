"""Helpers of the background and core-concept chapters (parts 1 and 2).

* ``landmarks``: the timeline of generative AI and the compute of landmark models (1.1, 1.3);
* ``feedback``: preference data, a reward model and the KL-to-reference term of RLHF (2.5, 3.4);
* ``retrieval``: a triple store and a TF-IDF retriever (2.6);
* ``graphs``: drawing knowledge graphs and concept maps with matplotlib alone (2.6).
"""
