"""the search: samplers + evaluator + SQLite store --> ranked candidates; leaderboard, Pareto front, plots, HTML report.

Imports: everything before it; nothing from exprsearch.cli.
"""
