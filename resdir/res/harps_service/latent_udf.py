"""ADQL user-defined functions over the latent space (filled in by the latent layer)."""
