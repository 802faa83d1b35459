"""audiorank: embedding effective rank (RankMe) and power-law fits for audio representations."""

__version__ = "0.1.0"
