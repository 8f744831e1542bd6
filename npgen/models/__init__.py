"""The three generative models of npgen, each written on the engine alone."""

from .flow import Coupling, Flow, MaskedCoupling
from .gan import Discriminator, Generator
from .vae import VAE

__all__ = ["VAE", "Discriminator", "Generator", "Coupling", "Flow", "MaskedCoupling"]
