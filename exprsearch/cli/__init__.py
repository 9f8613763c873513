"""the edges: the exprsearch command line and the REPL, thin over the library (text is parsed here, or when the store is read).

Imports: anything.
"""
