"""Shared core of Spatial GAN Studio: registry, device, cache, images, ops and models."""
