"""Data package holding ``ffn.lark``; installed as ``exprsearch._grammar`` (see pyproject.toml)."""
