"""Generators and encoders in the official checkpoint layouts (pure PyTorch)."""
