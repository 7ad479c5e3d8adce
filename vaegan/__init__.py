"""vaegan: train small VAE-GAN image generators and deploy them to the edge.

Importing this package imports nothing heavy: `vaegan.runtime` must stay torch-free.
"""

__version__ = "0.1.0"
