"""Augmentation papers: Deep AutoAugment."""
