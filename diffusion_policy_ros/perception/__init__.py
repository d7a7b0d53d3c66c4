"""Perception: depth → point clouds, image preparation, wrench filtering, RealSense source."""
