"""Training losses. ``mtml_loss`` combines them as the paper's authors did."""
