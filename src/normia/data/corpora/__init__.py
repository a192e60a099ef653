"""Public-domain texts shipped with normia for byte-level language-model PoCs."""
