"""compiler: validated expressions --> torch.fx FFN modules (issue 4 fills this package)."""
