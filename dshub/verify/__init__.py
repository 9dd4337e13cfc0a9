"""Structural verification: findings, checks per format, one dispatcher."""
