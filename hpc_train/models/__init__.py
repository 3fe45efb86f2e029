"""Model families: scikit-learn estimators, the built-in torch MLP, and a user's own factory."""
