"""the expression language: text --> parse tree --> typed, interned AST --> validity --> canonical form, fingerprint, dedup classes, DAG.

Imports: exprsearch.errors only (the first layer).
"""
