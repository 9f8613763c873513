"""the search space: counting, uniform sampling and enumeration of valid expressions; mutation, crossover; the samplers that propose candidates.

Imports: exprsearch.lang.
"""
