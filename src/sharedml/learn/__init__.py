"""Algorithms, each written as party roles over a Session."""
