"""Ready-made data for the standard's use cases, made by the package itself.

No file from the user and no network: the credit-risk scenario (Appendix A.1)
draws on scikit-learn's bundled breast-cancer set and on a generated,
credit-like population with partial id overlap between the parties.
"""
