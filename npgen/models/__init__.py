"""The three generative models of npgen, each written on the engine alone."""

from .vae import VAE

__all__ = ["VAE"]
