"""Embodiments: robot kinematics from URDFs and (with the guidance issue) differentiable tracking costs."""
