"""ship: a searched spec --> a distilled student a user can ship (the last arrow).

``hf.py`` writes a Hugging Face model directory that loads without exprsearch (config with
``auto_map``, weights, tokenizer, a generated modeling file); ``card.py`` the model card;
``distill.py`` runs the final protocol over seeds and puts it all together (``exprsearch distill``).
"""
